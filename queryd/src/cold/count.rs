//! A count of a cold dataset's rows under simple filters (comparisons, `in`, `like`, null
//! tests), by Strata's own scan of the filter columns ([`crate::route::Route::ColdCount`]).
//!
//! Why: DataFusion decodes a dictionary-encoded string column into one string view per row,
//! evaluates the filters into a filtered batch and counts that. lineitem SF10 read from
//! Parquet, `l_shipmode = X and l_shipdate >= D`: 922 ms, 3.8x DuckDB's Parquet scan, which
//! tests a string equality once per dictionary entry; here 255 ms, 1.42x (`benches/scale`,
//! 2026-12-05). How:
//! - row groups whose statistics exclude a filter are not read, and those where every row
//!   passes every filter are counted from their metadata (with no deltas);
//! - a filter on a column chunk whose data pages are all dictionary-encoded is evaluated on
//!   the pages ([`super::pages`]): once per dictionary value, each row taking its index's
//!   answer; other filters decode their columns;
//! - a filter's answer is a bitmap, the count its set bits: no row is copied;
//! - row groups are counted in parallel, one task per core, each with a second row group's
//!   bytes in flight.
//!
//! The answer is the engine's: the same comparison kernels (arrow's, which DataFusion's
//! filters call), and deltas merged as the engine merges them: a base row whose key a delta
//! names is replaced by the deltas' newest entry for it (an upsert counted if it passes, a
//! delete not at all). The engine conformance suite and the differential test count on this
//! route (their `cold` paths).

use std::collections::HashSet;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, BooleanArray, RecordBatch};
use arrow::buffer::BooleanBuffer;
use arrow::datatypes::{DataType, SchemaRef};
use arrow::row::RowConverter;
use datafusion::common::ScalarValue;
use futures::{StreamExt, TryStreamExt};
use object_store::ObjectStore;
use object_store::path::Path;
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::ArrowReaderMetadata;
use parquet::arrow::arrow_reader::statistics::StatisticsConverter;
use parquet::arrow::async_reader::{ParquetObjectReader, ParquetRecordBatchStreamBuilder};
use strata_shared::keys;
use strata_shared::manifest::Manifest;
use strata_shared::parquet_io::{Footers, ROW_GROUP_ROWS};

use crate::delta_cache::DeltaCache;
use crate::deltas;
use crate::error::QueryError;
use crate::filter::{compare, passing};
use crate::plan::{CmpOp, Filter, FilterOp, Plan, Shape};

use super::pages;

/// The most values of an `in` list evaluated here (a comparison per value per row, or per
/// dictionary value); longer lists are the engine's, which hashes them.
const MAX_IN_VALUES: usize = 16;

/// Footers fetched at once by a count's first look at its files.
const FOOTERS_IN_FLIGHT: usize = 8;

/// Whether `plan` is a count this module answers over `manifest`'s files: rows (not groups or
/// distinct values), every filter one of [`evaluable`]'s.
pub fn applies(manifest: &Manifest, plan: &Plan) -> bool {
    let Shape::Rows { .. } = &plan.shape else {
        return false;
    };
    let schema = manifest.arrow_schema();
    plan.filters
        .iter()
        .all(|f| evaluable(schema.field(f.column).data_type(), &f.op))
}

/// Whether arrow's kernels evaluate `op` on a column of `data_type` as DataFusion does: a
/// literal of the column's own type (the plan converts literals to it; anything else, such
/// as a coercion, is the engine's), of a type the comparison kernels take.
fn evaluable(data_type: &DataType, op: &FilterOp) -> bool {
    let comparable = data_type.is_primitive()
        || matches!(
            data_type,
            DataType::Boolean | DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View
        );
    let literal = |v: &ScalarValue| comparable && !v.is_null() && &v.data_type() == data_type;
    match op {
        FilterOp::Cmp(_, value) => literal(value),
        FilterOp::In(values) => values.len() <= MAX_IN_VALUES && values.iter().all(literal),
        FilterOp::Like { .. } => matches!(data_type, DataType::Utf8 | DataType::Utf8View),
        FilterOp::IsNull | FilterOp::IsNotNull => true,
    }
}

/// The number of rows of `manifest`'s version that pass `plan`'s filters ([`applies`]),
/// before `limit`, counted by `tasks` tasks on the current runtime.
pub async fn count(
    deltas: &DeltaCache,
    footers: &Footers,
    manifest: &Manifest,
    plan: &Plan,
    tasks: usize,
) -> Result<u64, QueryError> {
    let schema = manifest.arrow_schema();
    let key = keys::key_indices(&schema, &manifest.primary_key)?;
    // The deltas: their upserts that pass are counted here; the base rows they name, in the
    // scan, are not.
    let (shadowed, overlay) = if manifest.deltas.is_empty() {
        (None, 0)
    } else {
        let loaded = deltas.read(&manifest.deltas).await?;
        let combined = deltas::combine(&schema, &key, &loaded)?;
        let upserts = combined.upserts()?;
        let filters: Vec<(&ArrayRef, &FilterOp)> = plan
            .filters
            .iter()
            .map(|f| (upserts.column(f.column), &f.op))
            .collect();
        let overlay = passing(upserts.num_rows(), &filters)?.count_set_bits() as u64;
        (Some(Shadowed::new(&combined.rows, &key)?), overlay)
    };
    let scan = Arc::new(Scan::new(&schema, &plan.filters, &key, shadowed));
    let mut units = Vec::new();
    let mut counted = 0u64;
    // The files' footers, a few fetched at once (after the first count they are known).
    let paths = manifest
        .base_files
        .iter()
        .map(|file| Path::parse(&file.path).map_err(strata_shared::Error::from))
        .collect::<Result<Vec<_>, _>>()?;
    let store = deltas.store();
    let footed: Vec<(Path, ArrowReaderMetadata)> = futures::stream::iter(paths)
        .map(|path| async move {
            let meta = footers.get(store, &path).await?;
            Ok::<_, QueryError>((path, meta))
        })
        .buffered(FOOTERS_IN_FLIGHT)
        .try_collect()
        .await?;
    for (path, meta) in footed {
        let verdicts = scan.verdicts(&meta)?;
        for (group, verdict) in verdicts.into_iter().enumerate() {
            match verdict {
                Verdict::None => {}
                Verdict::All(rows) => counted += rows,
                Verdict::Read => units.push((path.clone(), meta.clone(), group)),
            }
        }
    }
    // Row groups dealt round-robin: they are of a size (`ROW_GROUP_ROWS`).
    let tasks = tasks.clamp(1, units.len().max(1));
    let mut shares: Vec<Vec<_>> = (0..tasks).map(|_| Vec::new()).collect();
    for (i, unit) in units.into_iter().enumerate() {
        shares[i % tasks].push(unit);
    }
    let mut running = tokio::task::JoinSet::new();
    for share in shares {
        let (scan, store) = (scan.clone(), deltas.store().clone());
        // Two row groups at a time: one's bytes are fetched while the other's are counted.
        running.spawn(async move {
            futures::stream::iter(share)
                .map(|(path, meta, group)| scan.count_group(store.clone(), path, meta, group))
                .buffered(2)
                .try_fold(0u64, |n, counted| async move { Ok(n + counted) })
                .await
        });
    }
    // Dropping the set (an error, the request's timeout) aborts the other tasks.
    while let Some(done) = running.join_next().await {
        counted +=
            done.map_err(|e| QueryError::Internal(format!("a count task failed: {e}")))??;
    }
    Ok(counted + overlay)
}

/// What a row group's statistics say of the filters.
enum Verdict {
    /// No row passes.
    None,
    /// Every one of its rows passes (and no delta names any).
    All(u64),
    /// Its columns must be read.
    Read,
}

/// One count's scan of the base files.
struct Scan {
    /// The table schema (stored types).
    schema: SchemaRef,
    filters: Vec<Filter>,
    /// The key's columns, in key order.
    key: Vec<usize>,
    shadowed: Option<Shadowed>,
}

impl Scan {
    fn new(
        schema: &SchemaRef,
        filters: &[Filter],
        key: &[usize],
        shadowed: Option<Shadowed>,
    ) -> Self {
        Self {
            schema: schema.clone(),
            filters: filters.to_vec(),
            key: key.to_vec(),
            shadowed,
        }
    }

    /// Each row group's [`Verdict`] from its statistics. Floating-point columns are never
    /// judged (a NaN is in no min or max, and compares above every number), nor are string
    /// columns judged whole (their bounds may be truncated).
    fn verdicts(&self, meta: &ArrowReaderMetadata) -> Result<Vec<Verdict>, QueryError> {
        let groups = meta.metadata().row_groups();
        let mut some = vec![true; groups.len()];
        let mut all = vec![self.shadowed.is_none(); groups.len()];
        for filter in &self.filters {
            let field = self.schema.field(filter.column);
            let (FilterOp::Cmp(op, value), false) = (&filter.op, field.data_type().is_floating())
            else {
                all.fill(false);
                continue;
            };
            let stats =
                StatisticsConverter::try_new(field.name(), meta.schema(), meta.parquet_schema())?;
            let bounds = Bounds {
                mins: stats.row_group_mins(groups)?,
                maxes: stats.row_group_maxes(groups)?,
                value,
            };
            let (may, every) = bounds.judge(*op)?;
            let nulls = stats.row_group_null_counts(groups)?;
            let exact = !matches!(
                field.data_type(),
                DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View
            );
            for g in 0..groups.len() {
                some[g] &= may[g];
                all[g] &= exact && every[g] && nulls.is_valid(g) && nulls.value(g) == 0;
            }
        }
        Ok(groups
            .iter()
            .enumerate()
            .map(|(g, group)| match (some[g], all[g]) {
                (false, _) => Verdict::None,
                (true, true) => Verdict::All(u64::try_from(group.num_rows()).unwrap_or(0)),
                (true, false) => Verdict::Read,
            })
            .collect())
    }

    /// The rows of row group `group` of `path` that pass and that no delta names. Filters
    /// on a dictionary-encoded chunk are evaluated on its pages ([`pages`]); the other
    /// filters' columns, and the key's with deltas, are decoded.
    async fn count_group(
        &self,
        store: Arc<dyn ObjectStore>,
        path: Path,
        meta: ArrowReaderMetadata,
        group: usize,
    ) -> Result<u64, QueryError> {
        let row_group = meta.metadata().row_group(group);
        let rows = usize::try_from(row_group.num_rows()).unwrap_or(0);
        let mut paged = Vec::new();
        let mut decoded: Vec<&Filter> = Vec::new();
        for column in self.filtered_columns() {
            let ops: Vec<&FilterOp> = self
                .filters
                .iter()
                .filter(|f| f.column == column)
                .map(|f| &f.op)
                .collect();
            let data_type = self.schema.field(column).data_type();
            match leaf(&meta, self.schema.field(column).name())
                .map(|leaf| row_group.column(leaf))
                .filter(|chunk| pages::applies(chunk, data_type, &ops))
            {
                Some(chunk) => paged.push((chunk, data_type, ops)),
                None => decoded.extend(self.filters.iter().filter(|f| f.column == column)),
            }
        }
        let ranges: Vec<std::ops::Range<u64>> = paged
            .iter()
            .map(|(chunk, ..)| {
                let (start, len) = chunk.byte_range();
                start..start + len
            })
            .collect();
        let chunks = store
            .get_ranges(&path, &ranges)
            .await
            .map_err(strata_shared::Error::from)?;
        let mut keep = BooleanBuffer::new_set(rows);
        for ((chunk, data_type, ops), bytes) in paged.into_iter().zip(chunks) {
            keep = &keep & &pages::truth(bytes, chunk, rows, data_type, &ops)?;
        }
        let mut read: Vec<usize> = decoded.iter().map(|f| f.column).collect();
        if self.shadowed.is_some() {
            read.extend(&self.key);
        }
        read.sort_unstable();
        read.dedup();
        if read.is_empty() {
            return Ok(keep.count_set_bits() as u64);
        }
        let mask = ProjectionMask::roots(meta.parquet_schema(), read.iter().copied());
        let mut batches = ParquetRecordBatchStreamBuilder::new_with_metadata(
            ParquetObjectReader::new(store, path),
            meta,
        )
        .with_row_groups(vec![group])
        .with_projection(mask)
        .with_batch_size(ROW_GROUP_ROWS)
        .build()?;
        let at = |column: usize| read.iter().position(|&c| c == column).unwrap_or(0);
        let (mut n, mut offset) = (0u64, 0usize);
        while let Some(batch) = batches.try_next().await? {
            let len = batch.num_rows();
            let filters: Vec<(&ArrayRef, &FilterOp)> = decoded
                .iter()
                .map(|f| (batch.column(at(f.column)), &f.op))
                .collect();
            let kept = &keep.slice(offset, len) & &passing(len, &filters)?;
            offset += len;
            n += match &self.shadowed {
                None => kept.count_set_bits() as u64,
                Some(shadowed) => {
                    let key: Vec<ArrayRef> = self
                        .key
                        .iter()
                        .map(|&c| batch.column(at(c)).clone())
                        .collect();
                    shadowed.unnamed(&key, kept)?
                }
            };
        }
        Ok(n)
    }

    /// The filtered columns, each once.
    fn filtered_columns(&self) -> Vec<usize> {
        let mut columns: Vec<usize> = self.filters.iter().map(|f| f.column).collect();
        columns.sort_unstable();
        columns.dedup();
        columns
    }
}

/// The Parquet leaf column of the top-level column `name`, if it is one (not nested).
fn leaf(meta: &ArrowReaderMetadata, name: &str) -> Option<usize> {
    meta.parquet_schema()
        .columns()
        .iter()
        .position(|c| matches!(c.path().parts(), [only] if only == name))
}

/// Row groups' bounds of one column (null where unknown) and a filter's literal.
struct Bounds<'v> {
    mins: ArrayRef,
    maxes: ArrayRef,
    value: &'v ScalarValue,
}

impl Bounds<'_> {
    /// For each row group, whether some row may pass `column op value`, and whether every
    /// non-null row does: an unknown bound rules nothing out and proves nothing.
    fn judge(&self, op: CmpOp) -> Result<(Vec<bool>, Vec<bool>), QueryError> {
        use CmpOp::*;
        let known = |bound: &ArrayRef, op: CmpOp| -> Result<Vec<bool>, QueryError> {
            let answer = compare(bound, op, self.value)?;
            Ok((0..answer.len())
                .map(|g| answer.is_valid(g) && answer.value(g))
                .collect())
        };
        let (mins, maxes) = (&self.mins, &self.maxes);
        let both = |a: Vec<bool>, b: Vec<bool>| a.iter().zip(&b).map(|(a, b)| *a && *b).collect();
        let either = |a: Vec<bool>, b: Vec<bool>| a.iter().zip(&b).map(|(a, b)| *a || *b).collect();
        let not = |a: Vec<bool>| a.into_iter().map(|a| !a).collect();
        Ok(match op {
            Eq => (
                not(either(known(mins, Gt)?, known(maxes, Lt)?)),
                both(known(mins, Eq)?, known(maxes, Eq)?),
            ),
            NotEq => (
                not(both(known(mins, Eq)?, known(maxes, Eq)?)),
                either(known(mins, Gt)?, known(maxes, Lt)?),
            ),
            Gt => (not(known(maxes, LtEq)?), known(mins, Gt)?),
            GtEq => (not(known(maxes, Lt)?), known(mins, GtEq)?),
            Lt => (not(known(mins, GtEq)?), known(maxes, Lt)?),
            LtEq => (not(known(mins, Gt)?), known(maxes, LtEq)?),
        })
    }
}

/// The keys the deltas name, in the row format.
struct Shadowed {
    converter: RowConverter,
    keys: HashSet<Box<[u8]>>,
}

impl Shadowed {
    fn new(rows: &RecordBatch, key: &[usize]) -> Result<Self, QueryError> {
        let (converter, encoded) = keys::key_rows(rows, key)?;
        let keys = encoded.iter().map(|row| row.as_ref().into()).collect();
        Ok(Self { converter, keys })
    }

    /// How many `keep` rows of the key columns `key` have a key no delta names.
    fn unnamed(&self, key: &[ArrayRef], keep: BooleanBuffer) -> Result<u64, QueryError> {
        let keep = BooleanArray::new(keep, None);
        let kept = key
            .iter()
            .map(|column| arrow::compute::filter(column, &keep))
            .collect::<Result<Vec<_>, _>>()?;
        let rows = self.converter.convert_columns(&kept)?;
        Ok(rows
            .iter()
            .filter(|row| !self.keys.contains(row.as_ref()))
            .count() as u64)
    }
}

#[cfg(test)]
mod tests {
    use arrow::array::Int64Array;

    use super::*;

    /// Three row groups' bounds: [10, 20], [20, 20], unknown.
    fn judged(op: CmpOp, value: i64) -> (Vec<bool>, Vec<bool>) {
        let bounds = Bounds {
            mins: Arc::new(Int64Array::from(vec![Some(10), Some(20), None])),
            maxes: Arc::new(Int64Array::from(vec![Some(20), Some(20), None])),
            value: &ScalarValue::Int64(Some(value)),
        };
        bounds.judge(op).unwrap()
    }

    #[test]
    fn statistics_rule_out_row_groups_and_prove_whole_ones() {
        use CmpOp::*;
        // (may some row pass, does every row pass) per row group; an unknown bound rules
        // nothing out and proves nothing.
        let cases = [
            (Eq, 20, [true, true, true], [false, true, false]),
            (Eq, 21, [false, false, true], [false, false, false]),
            (Eq, 9, [false, false, true], [false, false, false]),
            (NotEq, 20, [true, false, true], [false, false, false]),
            (NotEq, 5, [true, true, true], [true, true, false]),
            (Gt, 19, [true, true, true], [false, true, false]),
            (Gt, 20, [false, false, true], [false, false, false]),
            (GtEq, 10, [true, true, true], [true, true, false]),
            (Lt, 10, [false, false, true], [false, false, false]),
            (Lt, 21, [true, true, true], [true, true, false]),
            (LtEq, 10, [true, false, true], [false, false, false]),
            (LtEq, 20, [true, true, true], [true, true, false]),
        ];
        for (op, value, may, every) in cases {
            assert_eq!(
                judged(op, value),
                (may.to_vec(), every.to_vec()),
                "{op:?} {value}"
            );
        }
    }
}
