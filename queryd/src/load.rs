//! How a version's base files become in-memory chunks: read one Parquet row group at a time,
//! each decoded batch turned into its in-memory layout at once. A load therefore holds the
//! finished chunks plus one row group in flight, not the whole file's bytes next to every
//! decoded plain string column next to its dictionary-encoded copy — that transient was what
//! raised queryd's peak memory during a load or a rebuild after a compaction
//! (`benches/compact`).

use std::collections::HashSet;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, RecordBatch, StringArray};
use arrow::compute::cast;
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use object_store::ObjectStore;
use object_store::path::Path;
use strata_shared::manifest::DataFile;
use strata_shared::parquet_io::RowGroups;
use tokio::runtime::Handle;

use crate::error::QueryError;
use crate::executor;
use crate::state::MAX_CHUNK_ROWS;

/// A string column is dictionary-encoded in memory when it has at most this many distinct
/// values and at most half as many as rows. Its logical type (schema, Arrow output) is
/// unchanged.
pub const DICTIONARY_MAX_DISTINCT: usize = 1 << 16;

/// Streams `files` (all of the layout's schema, in manifest order) into `layout`. I/O runs
/// here; decoding and encoding each row group run on `compute` ([`executor::compute`]).
pub(crate) async fn read_base(
    store: &Arc<dyn ObjectStore>,
    files: &[DataFile],
    mut layout: MemLayout,
    compute: &Handle,
) -> Result<MemLayout, QueryError> {
    for file in files {
        let path = Path::parse(&file.path).map_err(strata_shared::Error::from)?;
        let mut groups = RowGroups::open(store.clone(), &path, MAX_CHUNK_ROWS).await?;
        while let Some(group) = groups.next().await? {
            layout = executor::compute(compute, "decoding a row group", move || {
                for batch in group {
                    layout.push(batch?)?;
                }
                Ok(layout)
            })
            .await?;
        }
    }
    Ok(layout)
}

/// Batches of one schema, collected in their in-memory layout: low-cardinality string
/// columns (not key columns) dictionary-encoded, each batch with its own dictionary, keys as
/// narrow as the column's distinct count allows.
///
/// Whether a column qualifies is known only at the end, so a candidate column is encoded
/// from its first batch on while its distinct values are counted (up to the cap); a column
/// that passes the cap goes back to plain strings in every batch seen so far and stays plain.
/// Keys are chosen for the distinct count seen so far and widened in [`Self::finish`] where
/// a later batch brought more values.
pub(crate) struct MemLayout {
    schema: SchemaRef,
    /// The most distinct values a dictionary column may have.
    cap: usize,
    /// Per column: `Some(distinct values seen)` while it is dictionary-encoded.
    dictionaries: Vec<Option<HashSet<Box<str>>>>,
    /// The columns of every batch pushed so far.
    batches: Vec<Vec<ArrayRef>>,
}

impl MemLayout {
    /// For batches of `schema` holding `rows` rows in all (the cap depends on it).
    pub fn new(schema: &SchemaRef, primary_key: &[usize], rows: usize) -> Self {
        let dictionaries = schema
            .fields()
            .iter()
            .enumerate()
            .map(|(i, f)| {
                (f.data_type() == &DataType::Utf8 && !primary_key.contains(&i)).then(HashSet::new)
            })
            .collect();
        Self {
            schema: schema.clone(),
            cap: DICTIONARY_MAX_DISTINCT.min(rows / 2),
            dictionaries,
            batches: Vec::new(),
        }
    }

    /// Adds a batch of the schema's columns (checked; field names and metadata are the
    /// schema's whatever the batch says).
    pub fn push(&mut self, batch: RecordBatch) -> Result<(), QueryError> {
        let mut columns = RecordBatch::try_new(self.schema.clone(), batch.columns().to_vec())?
            .columns()
            .to_vec();
        for (i, dictionary) in self.dictionaries.iter_mut().enumerate() {
            let Some(seen) = dictionary else { continue };
            if count_distinct(seen, columns[i].as_string::<i32>(), self.cap) {
                columns[i] = cast(&columns[i], &dictionary_type(seen.len()))?;
            } else {
                *dictionary = None;
                for batch in &mut self.batches {
                    batch[i] = cast(&batch[i], &DataType::Utf8)?;
                }
            }
        }
        if columns.first().is_some_and(|c| !c.is_empty()) {
            self.batches.push(columns);
        }
        Ok(())
    }

    /// The in-memory schema (the logical one with dictionary types where chosen) and the
    /// batches in it.
    pub fn finish(self) -> Result<(SchemaRef, Vec<RecordBatch>), QueryError> {
        let types: Vec<Option<DataType>> = self
            .dictionaries
            .iter()
            .map(|d| d.as_ref().map(|seen| dictionary_type(seen.len())))
            .collect();
        if types.iter().all(Option::is_none) {
            let batches = self.batches.into_iter().map(|columns| {
                RecordBatch::try_new(self.schema.clone(), columns).map_err(QueryError::from)
            });
            return Ok((self.schema.clone(), batches.collect::<Result<_, _>>()?));
        }
        let fields: Vec<Field> = self
            .schema
            .fields()
            .iter()
            .zip(&types)
            .map(|(f, t)| match t {
                Some(t) => f.as_ref().clone().with_data_type(t.clone()),
                None => f.as_ref().clone(),
            })
            .collect();
        let mem_schema = Arc::new(Schema::new_with_metadata(
            fields,
            self.schema.metadata().clone(),
        ));
        let batches = self
            .batches
            .into_iter()
            .map(|columns| {
                let columns = columns
                    .into_iter()
                    .zip(&types)
                    .map(|(c, t)| match t {
                        Some(t) if c.data_type() != t => cast(&c, t),
                        _ => Ok(c),
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                Ok(RecordBatch::try_new(mem_schema.clone(), columns)?)
            })
            .collect::<Result<Vec<_>, QueryError>>()?;
        Ok((mem_schema, batches))
    }
}

/// Adds `array`'s values to `seen`; false once `seen` holds more than `cap` (it stops there).
fn count_distinct(seen: &mut HashSet<Box<str>>, array: &StringArray, cap: usize) -> bool {
    for value in array.iter().flatten() {
        if !seen.contains(value) {
            seen.insert(value.into());
            if seen.len() > cap {
                return false;
            }
        }
    }
    true
}

/// A string dictionary with keys wide enough for `distinct` values.
fn dictionary_type(distinct: usize) -> DataType {
    let key = if distinct <= i8::MAX as usize {
        DataType::Int8
    } else if distinct <= i16::MAX as usize {
        DataType::Int16
    } else {
        DataType::Int32
    };
    DataType::Dictionary(Box::new(key), Box::new(DataType::Utf8))
}

#[cfg(test)]
mod tests {
    use arrow::array::Int64Array;

    use super::*;

    fn schema() -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("tag", DataType::Utf8, true),
        ]))
    }

    fn batch(ids: std::ops::Range<i64>, tag: impl Fn(i64) -> String) -> RecordBatch {
        RecordBatch::try_new(
            schema(),
            vec![
                Arc::new(Int64Array::from_iter_values(ids.clone())),
                Arc::new(StringArray::from_iter_values(ids.map(tag))),
            ],
        )
        .unwrap()
    }

    fn tags(batches: &[RecordBatch]) -> Vec<String> {
        batches
            .iter()
            .flat_map(|b| {
                let plain = cast(b.column(1), &DataType::Utf8).unwrap();
                let plain = plain.as_string::<i32>();
                (0..plain.len())
                    .map(|r| plain.value(r).to_owned())
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    #[test]
    fn keys_widen_when_a_later_batch_brings_more_values() {
        // 100 distinct values in the first batch (Int8 keys), 300 by the end (Int16).
        let mut layout = MemLayout::new(&schema(), &[0], 3_000);
        let first = batch(0..1_000, |i| format!("t{}", i % 100));
        let second = batch(1_000..3_000, |i| format!("t{}", i % 300));
        let want = tags(&[first.clone(), second.clone()]);
        layout.push(first).unwrap();
        layout.push(second).unwrap();
        let (mem_schema, batches) = layout.finish().unwrap();
        let dictionary = dictionary_type(300);
        assert_eq!(mem_schema.field(1).data_type(), &dictionary);
        assert_eq!(mem_schema.field(0).data_type(), &DataType::Int64);
        assert!(
            batches
                .iter()
                .all(|b| b.column(1).data_type() == &dictionary)
        );
        assert_eq!(tags(&batches), want, "values survive the re-encoding");
    }

    #[test]
    fn a_column_past_the_cap_is_plain_in_every_batch() {
        // Few values at first, then unique ones: 2 000 rows allow at most 1 000 distinct.
        let mut layout = MemLayout::new(&schema(), &[0], 2_000);
        let first = batch(0..1_000, |i| format!("t{}", i % 3));
        let second = batch(1_000..2_000, |i| format!("unique {i}"));
        let want = tags(&[first.clone(), second.clone()]);
        layout.push(first).unwrap();
        layout.push(second).unwrap();
        let (mem_schema, batches) = layout.finish().unwrap();
        assert_eq!(mem_schema, schema());
        assert!(
            batches
                .iter()
                .all(|b| b.column(1).data_type() == &DataType::Utf8)
        );
        assert_eq!(tags(&batches), want);
    }

    #[test]
    fn key_columns_stay_plain_and_empty_batches_are_dropped() {
        let schema = Arc::new(Schema::new(vec![Field::new("k", DataType::Utf8, false)]));
        let keys = |n: usize| {
            RecordBatch::try_new(
                schema.clone(),
                vec![Arc::new(StringArray::from_iter_values(
                    (0..n).map(|i| format!("k{}", i % 2)),
                ))],
            )
            .unwrap()
        };
        let mut layout = MemLayout::new(&schema, &[0], 10);
        layout.push(keys(10)).unwrap();
        layout.push(keys(0)).unwrap();
        let (mem_schema, batches) = layout.finish().unwrap();
        assert_eq!(mem_schema, schema);
        assert_eq!(batches.len(), 1);
    }
}
