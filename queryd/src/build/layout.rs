//! How a version's base files become in-memory chunks: read one Parquet row group at a time,
//! each decoded batch turned into its in-memory layout at once. A load therefore holds the
//! finished chunks plus one row group in flight, not the whole file's bytes next to every
//! decoded plain string column next to its dictionary-encoded copy — that transient was what
//! raised queryd's peak memory during a load or a rebuild after a compaction
//! (`benches/compact`).

use std::collections::HashMap;
use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, DictionaryArray, Int32Array, RecordBatch, StringArray,
};
use arrow::compute::cast;
use arrow::datatypes::{DataType, Field, Int8Type, Int16Type, Int32Type, Schema, SchemaRef};
use object_store::ObjectStore;
use object_store::path::Path;
use strata_shared::manifest::DataFile;
use strata_shared::parquet_io::RowGroups;
use tokio::runtime::Handle;

use crate::chunks::{MAX_CHUNK_ROWS, arrays_buffer_bytes};
use crate::error::QueryError;
use crate::executor;

/// A string column (Utf8, LargeUtf8 or Utf8View) is dictionary-encoded in memory, with Utf8
/// values, when it has at most this many distinct values and at most half as many as rows.
/// Its logical type (schema, Arrow output) is unchanged. A Utf8View cell costs 16 bytes
/// before its text: TPC-H's `l_shipmode` (7 values, 6M rows) takes 91 MiB as views and 6 MiB
/// as 8-bit keys.
pub const DICTIONARY_MAX_DISTINCT: usize = 1 << 16;

/// Streams `files` (all of the layout's schema, in manifest order) into `layout`. I/O runs
/// here; decoding and encoding each row group run on `compute` ([`executor::compute`]).
/// `None` once the layout holds more than `limit` bytes ([`MemLayout::min_bytes`]): the state
/// would not fit, and reading on would only hold more of it.
pub(crate) async fn read_base(
    store: &Arc<dyn ObjectStore>,
    files: &[DataFile],
    mut layout: MemLayout,
    compute: &Handle,
    limit: Option<usize>,
) -> Result<Option<MemLayout>, QueryError> {
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
            if limit.is_some_and(|limit| layout.min_bytes > limit) {
                return Ok(None);
            }
        }
    }
    Ok(Some(layout))
}

/// Batches of one schema, collected in their in-memory layout: low-cardinality string
/// columns (not key columns) dictionary-encoded, with keys as narrow as the column's
/// distinct count allows.
///
/// Invariant: every batch of a dictionary column shares **one** values array (the same
/// buffers), so Arrow's kernels that combine chunks — `concat`, `interleave`, DataFusion's
/// sorts and merges — see a single dictionary and reuse it. With one dictionary per batch
/// each such kernel must merge or concatenate the dictionaries, and a concatenation of 16
/// chunks' 50-value dictionaries (800 entries) does not fit 8-bit keys: a report had every
/// `order_by` on a 1M-row in-memory table answer 500 "Dictionary key bigger than the key
/// type" (not reproduced here; one dictionary removes the class and the merging work).
///
/// Whether a column qualifies is known only at the end, so a candidate column's values are
/// numbered from its first batch on (up to the cap); a column that passes the cap goes back
/// to plain strings in every batch seen so far and stays plain. Keys are held as `i32` while
/// loading and narrowed in [`Self::finish`].
pub(crate) struct MemLayout {
    schema: SchemaRef,
    /// The most distinct values a dictionary column may have.
    cap: usize,
    /// Per column: `Some` while it is a dictionary candidate.
    dictionaries: Vec<Option<Dictionary>>,
    /// The columns of every batch pushed so far (candidates as `i32` keys into their
    /// [`Dictionary`]).
    batches: Vec<Vec<ArrayRef>>,
    /// A lower bound of the finished chunks' bytes: plain columns' buffers, and a byte per
    /// row of each candidate (its narrowest keys). A load past a limit stops on it, so it must
    /// never exceed what [`Self::finish`] holds: a state that fits is never refused.
    pub min_bytes: usize,
}

/// The distinct values of one column, numbered in order of first appearance.
#[derive(Default)]
struct Dictionary {
    ids: HashMap<Box<str>, i32>,
    values: Vec<Box<str>>,
}

impl Dictionary {
    /// The keys of `array`'s values (any string type), numbering new ones; `None` once the
    /// column holds more than `cap` distinct values.
    fn keys(&mut self, array: &dyn Array, cap: usize) -> Option<Int32Array> {
        match array.data_type() {
            DataType::Utf8 => self.keys_of(array.as_string::<i32>().iter(), cap),
            DataType::LargeUtf8 => self.keys_of(array.as_string::<i64>().iter(), cap),
            DataType::Utf8View => self.keys_of(array.as_string_view().iter(), cap),
            _ => None,
        }
    }

    fn keys_of<'v>(
        &mut self,
        values: impl ExactSizeIterator<Item = Option<&'v str>>,
        cap: usize,
    ) -> Option<Int32Array> {
        let mut keys = Vec::with_capacity(values.len());
        for value in values {
            keys.push(match value {
                None => None,
                Some(v) => Some(match self.ids.get(v) {
                    Some(&id) => id,
                    None => {
                        if self.values.len() >= cap {
                            return None;
                        }
                        let id = i32::try_from(self.values.len()).ok()?;
                        self.ids.insert(v.into(), id);
                        self.values.push(v.into());
                        id
                    }
                }),
            });
        }
        Some(Int32Array::from(keys))
    }

    fn values(&self) -> ArrayRef {
        Arc::new(StringArray::from_iter_values(self.values.iter()))
    }
}

impl MemLayout {
    /// For batches of `schema` holding `rows` rows in all (the cap depends on it).
    pub fn new(schema: &SchemaRef, primary_key: &[usize], rows: usize) -> Self {
        let dictionaries = schema
            .fields()
            .iter()
            .enumerate()
            .map(|(i, f)| {
                let string = matches!(
                    f.data_type(),
                    DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View
                );
                (string && !primary_key.contains(&i)).then(Dictionary::default)
            })
            .collect();
        Self {
            schema: schema.clone(),
            cap: DICTIONARY_MAX_DISTINCT.min(rows / 2),
            dictionaries,
            batches: Vec::new(),
            min_bytes: 0,
        }
    }

    /// Adds a batch of the schema's columns (checked; field names and metadata are the
    /// schema's whatever the batch says).
    pub fn push(&mut self, batch: RecordBatch) -> Result<(), QueryError> {
        let mut columns = RecordBatch::try_new(self.schema.clone(), batch.columns().to_vec())?
            .columns()
            .to_vec();
        for (i, candidate) in self.dictionaries.iter_mut().enumerate() {
            let Some(dictionary) = candidate else {
                continue;
            };
            if let Some(keys) = dictionary.keys(columns[i].as_ref(), self.cap) {
                columns[i] = Arc::new(keys);
                continue;
            }
            // Past the cap: back to plain strings, in the batches seen so far too.
            let values = dictionary.values();
            let logical = self.schema.field(i).data_type();
            for batch in &mut self.batches {
                let keys = batch[i].len();
                batch[i] = plain(&batch[i], &values, logical)?;
                self.min_bytes += arrays_buffer_bytes([&batch[i]]).saturating_sub(keys);
            }
            *candidate = None;
        }
        if columns.first().is_some_and(|c| !c.is_empty()) {
            self.min_bytes += columns
                .iter()
                .zip(&self.dictionaries)
                .map(|(column, candidate)| match candidate {
                    Some(_) => column.len(),
                    None => arrays_buffer_bytes([column]),
                })
                .sum::<usize>();
            self.batches.push(columns);
        }
        Ok(())
    }

    /// The in-memory schema (the logical one with dictionary types where chosen) and the
    /// batches in it.
    pub fn finish(self) -> Result<(SchemaRef, Vec<RecordBatch>), QueryError> {
        // Per column: the key type and the one values array every batch shares.
        let dictionaries: Vec<Option<(DataType, ArrayRef)>> = self
            .dictionaries
            .iter()
            .map(|d| d.as_ref().map(|d| (key_type(d.values.len()), d.values())))
            .collect();
        if dictionaries.iter().all(Option::is_none) {
            let batches = self.batches.into_iter().map(|columns| {
                RecordBatch::try_new(self.schema.clone(), columns).map_err(QueryError::from)
            });
            return Ok((self.schema.clone(), batches.collect::<Result<_, _>>()?));
        }
        let fields: Vec<Field> = self
            .schema
            .fields()
            .iter()
            .zip(&dictionaries)
            .map(|(f, d)| match d {
                Some((key, _)) => f.as_ref().clone().with_data_type(DataType::Dictionary(
                    Box::new(key.clone()),
                    Box::new(DataType::Utf8),
                )),
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
                    .zip(&dictionaries)
                    .map(|(c, d)| match d {
                        Some((key, values)) => shared_dictionary(&c, key, values),
                        None => Ok(c),
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                Ok(RecordBatch::try_new(mem_schema.clone(), columns)?)
            })
            .collect::<Result<Vec<_>, QueryError>>()?;
        Ok((mem_schema, batches))
    }
}

/// `i32` keys into `values` as plain strings of the column's own type.
fn plain(keys: &ArrayRef, values: &ArrayRef, logical: &DataType) -> Result<ArrayRef, QueryError> {
    let keys = keys.as_primitive::<Int32Type>().clone();
    let dictionary = DictionaryArray::<Int32Type>::try_new(keys, values.clone())?;
    Ok(cast(&dictionary, logical)?)
}

/// `i32` keys narrowed to `key` over the shared `values`.
fn shared_dictionary(
    keys: &ArrayRef,
    key: &DataType,
    values: &ArrayRef,
) -> Result<ArrayRef, QueryError> {
    // Every key is below the values' length, which `key_type` chose the width for.
    let narrow = cast(keys, key)?;
    Ok(match key {
        DataType::Int8 => Arc::new(DictionaryArray::<Int8Type>::try_new(
            narrow.as_primitive::<Int8Type>().clone(),
            values.clone(),
        )?),
        DataType::Int16 => Arc::new(DictionaryArray::<Int16Type>::try_new(
            narrow.as_primitive::<Int16Type>().clone(),
            values.clone(),
        )?),
        _ => Arc::new(DictionaryArray::<Int32Type>::try_new(
            narrow.as_primitive::<Int32Type>().clone(),
            values.clone(),
        )?),
    })
}

/// Keys wide enough to number `distinct` values.
fn key_type(distinct: usize) -> DataType {
    if distinct <= i8::MAX as usize {
        DataType::Int8
    } else if distinct <= i16::MAX as usize {
        DataType::Int16
    } else {
        DataType::Int32
    }
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
        let dictionary = DataType::Dictionary(Box::new(key_type(300)), Box::new(DataType::Utf8));
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
    fn every_batch_shares_one_dictionary_so_chunks_combine() {
        // 20 batches of the same 100 values: 2 000 dictionary entries if each batch had its
        // own, far more than 8-bit keys number once a kernel combines the batches.
        let mut layout = MemLayout::new(&schema(), &[0], 20_000);
        let parts: Vec<RecordBatch> = (0..20)
            .map(|b| batch(b * 1_000..(b + 1) * 1_000, |i| format!("t{}", i % 100)))
            .collect();
        let want = tags(&parts);
        for part in parts {
            layout.push(part).unwrap();
        }
        let (mem_schema, batches) = layout.finish().unwrap();
        assert_eq!(
            mem_schema.field(1).data_type(),
            &DataType::Dictionary(Box::new(DataType::Int8), Box::new(DataType::Utf8))
        );
        let columns: Vec<&dyn Array> = batches.iter().map(|b| b.column(1).as_ref()).collect();
        let all = arrow::compute::concat(&columns).unwrap();
        assert_eq!(
            all.as_any_dictionary().values().len(),
            100,
            "one dictionary"
        );
        let picks: Vec<(usize, usize)> = (0..20).map(|b| (19 - b, b)).collect();
        let mixed = arrow::compute::interleave(&columns, &picks).unwrap();
        assert_eq!(mixed.len(), 20);
        assert_eq!(tags(&batches), want);
    }

    #[test]
    fn min_bytes_never_exceeds_the_finished_chunks() {
        // A load stops once `min_bytes` passes the cache: it must be a lower bound of what
        // `finish` holds (else a state that fits is refused), and near it (keys wider than a
        // byte are counted as one).
        let scenarios: [(&str, Vec<RecordBatch>); 3] = [
            (
                "8-bit keys",
                vec![batch(0..50_000, |i| format!("t{}", i % 7))],
            ),
            (
                "widened keys",
                vec![
                    batch(0..10_000, |i| format!("t{}", i % 100)),
                    batch(10_000..40_000, |i| format!("t{}", i % 300)),
                ],
            ),
            (
                "past the cap",
                vec![
                    batch(0..10_000, |i| format!("t{}", i % 3)),
                    batch(10_000..20_000, |i| format!("unique {i}")),
                ],
            ),
        ];
        for (name, parts) in scenarios {
            let rows = parts.iter().map(|b| b.num_rows()).sum();
            let mut layout = MemLayout::new(&schema(), &[0], rows);
            for part in parts {
                layout.push(part).unwrap();
            }
            let bound = layout.min_bytes;
            let (_, batches) = layout.finish().unwrap();
            let held = crate::chunks::buffer_bytes(&batches);
            assert!(bound <= held, "{name}: {bound} > {held}");
            assert!(bound * 5 >= held * 4, "{name}: {bound} is far below {held}");
        }
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
    fn view_and_large_strings_are_encoded_and_fall_back_to_their_own_type() {
        use arrow::array::{LargeStringArray, StringViewArray};
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("mode", DataType::Utf8View, true),
            Field::new("note", DataType::LargeUtf8, true),
        ]));
        let rows = 2_000;
        let mode = |i: i64| (i % 9 != 0).then(|| format!("a mode longer than twelve {}", i % 7));
        let batch = |ids: std::ops::Range<i64>| {
            RecordBatch::try_new(
                schema.clone(),
                vec![
                    Arc::new(Int64Array::from_iter_values(ids.clone())),
                    Arc::new(StringViewArray::from_iter(ids.clone().map(mode))),
                    Arc::new(LargeStringArray::from_iter_values(
                        ids.map(|i| format!("unique {i}")),
                    )),
                ],
            )
            .unwrap()
        };
        let mut layout = MemLayout::new(&schema, &[0], rows);
        layout.push(batch(0..1_000)).unwrap();
        layout.push(batch(1_000..2_000)).unwrap();
        let (mem_schema, batches) = layout.finish().unwrap();
        assert_eq!(
            mem_schema.field(1).data_type(),
            &DataType::Dictionary(Box::new(DataType::Int8), Box::new(DataType::Utf8)),
            "7 values of a view column: 8-bit keys"
        );
        assert_eq!(
            mem_schema.field(2).data_type(),
            &DataType::LargeUtf8,
            "past the cap: back to its own type"
        );
        for (b, part) in batches.iter().enumerate() {
            let ids = (b as i64 * 1_000)..((b as i64 + 1) * 1_000);
            let modes = cast(part.column(1), &DataType::Utf8View).unwrap();
            let want: StringViewArray = ids.clone().map(mode).collect();
            assert_eq!(modes.as_string_view(), &want);
            assert_eq!(
                part.column(2).as_string::<i64>().value(0),
                format!("unique {}", ids.start)
            );
        }
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
