//! The cold path's one hot path: a primary-key `eq` lookup on a dataset that is not in memory
//! (never loaded, evicted, too big for the cache, or being rebuilt after a compaction) is
//! answered from its files without DataFusion. The key's newest delta entry decides if there
//! is one (an upsert is the row, a delete means no row); otherwise the base files are searched
//! with [`parquet_io::read_equal`], which skips row groups by their statistics and decodes the
//! other columns only for the matching row; footers are parsed once per file ([`Footers`]).
//!
//! Why: DataFusion answers the same lookup by planning a scan and decoding whole row groups,
//! ~10 ms and ~10 MB of transient memory per lookup, and its first run maps ~26 MiB of code
//! that stays resident. Both showed as queryd's peak while it rebuilt a dataset after a
//! compaction and answered lookups cold meanwhile (`benches/compact`).
//!
//! The answer is the one DataFusion gives (the engine conformance suite runs its cases on the
//! cold path too): at most one row, since a key is unique in a version.

use std::sync::Arc;

use arrow::array::{Array, RecordBatch, Scalar};
use arrow::compute::kernels::cmp::eq;
use arrow::datatypes::SchemaRef;
use datafusion::common::ScalarValue;
use object_store::path::Path;
use strata_shared::delta::{self, Op};
use strata_shared::keys;
use strata_shared::manifest::{DataFile, Manifest};
use strata_shared::merge::supersedes;
use strata_shared::parquet_io::{self, Footers};

use crate::delta_cache::DeltaCache;
use crate::deltas::LoadedDelta;
use crate::error::QueryError;
use crate::plan::{CmpOp, FilterOp, Plan, Shape};

/// The looked-up key column and value, if `plan` is a lookup of a one-column primary key by
/// `eq` (nothing else filtered, no order).
fn key_value<'p>(manifest: &Manifest, plan: &'p Plan) -> Option<(usize, &'p ScalarValue)> {
    let Shape::Rows { .. } = &plan.shape else {
        return None;
    };
    let key = keys::key_indices(&manifest.arrow_schema(), &manifest.primary_key).ok()?;
    match (key.as_slice(), plan.filters.as_slice()) {
        ([key], [filter]) if filter.column == *key && plan.order_by.is_empty() => {
            match &filter.op {
                FilterOp::Cmp(CmpOp::Eq, value) if !value.is_null() => Some((*key, value)),
                _ => None,
            }
        }
        _ => None,
    }
}

/// Whether `plan` is a key lookup this module answers (the route's choice).
pub fn applies(manifest: &Manifest, plan: &Plan) -> bool {
    key_value(manifest, plan).is_some()
}

/// The row a key lookup ([`applies`]) finds, projected to the plan's columns, with their
/// schema (stored types). Paging and `limit` are the caller's.
pub async fn key_row(
    deltas: &DeltaCache,
    footers: &Footers,
    manifest: &Manifest,
    plan: &Plan,
) -> Result<(SchemaRef, Option<RecordBatch>), QueryError> {
    let (Shape::Rows { columns }, Some((key, value))) = (&plan.shape, key_value(manifest, plan))
    else {
        return Err(QueryError::Internal(
            "a cold key lookup of another plan".into(),
        ));
    };
    let schema = manifest.arrow_schema();
    let projected = Arc::new(schema.project(columns)?);
    let row = find(deltas, footers, manifest, &schema, key, value).await?;
    Ok((projected, row.map(|r| r.project(columns)).transpose()?))
}

/// The live row holding `value` in the key column `key`, in the table schema.
async fn find(
    cache: &DeltaCache,
    footers: &Footers,
    manifest: &Manifest,
    schema: &SchemaRef,
    key: usize,
    value: &ScalarValue,
) -> Result<Option<RecordBatch>, QueryError> {
    let wanted = value.to_array()?;
    if !manifest.deltas.is_empty() {
        // The key's entries in the delta files (at most one per file): the newest wins. No
        // combining of every delta row (a sort of all of them) for one key.
        let deltas = cache.read(&manifest.deltas).await?;
        let name = schema.field(key).name();
        let mut newest: Option<(u64, &LoadedDelta, usize)> = None;
        for d in &deltas {
            let column = d.batch.column_by_name(name).ok_or_else(|| {
                QueryError::Internal(format!("delta {} has no column {name}", d.path))
            })?;
            let hits = eq(column, &Scalar::new(wanted.clone()))?;
            if let Some(r) = (0..hits.len()).find(|&r| hits.is_valid(r) && hits.value(r))
                && newest.is_none_or(|(seq, _, _)| supersedes(d.seq, seq))
            {
                newest = Some((d.seq, d, r));
            }
        }
        if let Some((_, d, r)) = newest {
            if delta::op_column(&d.batch)?.value(r) != Op::Upsert as u8 {
                return Ok(None);
            }
            let row = delta::table_part(&d.batch.slice(r, 1), schema)?;
            return Ok(Some(RecordBatch::try_new(
                schema.clone(),
                row.columns().to_vec(),
            )?));
        }
    }
    for file in manifest.base_files.iter().filter(|f| may_hold(f, value)) {
        let path = Path::parse(&file.path).map_err(strata_shared::Error::from)?;
        let batches =
            parquet_io::read_equal(cache.store().clone(), footers, &path, key, wanted.clone())
                .await?;
        if let Some(batch) = batches.first() {
            return Ok(Some(RecordBatch::try_new(
                schema.clone(),
                batch.slice(0, 1).columns().to_vec(),
            )?));
        }
    }
    Ok(None)
}

/// False when the file's recorded key range excludes `value` (integer and string keys);
/// true when it may hold it or the range cannot tell.
fn may_hold(file: &DataFile, value: &ScalarValue) -> bool {
    let bound = |b: &Option<Vec<serde_json::Value>>| b.as_ref().and_then(|b| b.first().cloned());
    let (Some(min), Some(max)) = (bound(&file.key_min), bound(&file.key_max)) else {
        return true;
    };
    let int = |v: &serde_json::Value| v.as_i64().map(i128::from);
    let wanted: Option<i128> = match value {
        ScalarValue::Int8(v) => v.map(i128::from),
        ScalarValue::Int16(v) => v.map(i128::from),
        ScalarValue::Int32(v) => v.map(i128::from),
        ScalarValue::Int64(v) => v.map(i128::from),
        ScalarValue::UInt8(v) => v.map(i128::from),
        ScalarValue::UInt16(v) => v.map(i128::from),
        ScalarValue::UInt32(v) => v.map(i128::from),
        ScalarValue::UInt64(v) => v.map(i128::from),
        ScalarValue::Utf8(Some(s)) => {
            return match (min.as_str(), max.as_str()) {
                (Some(lo), Some(hi)) => lo <= s.as_str() && s.as_str() <= hi,
                _ => true,
            };
        }
        _ => None,
    };
    match (wanted, int(&min), int(&max)) {
        (Some(v), Some(lo), Some(hi)) => lo <= v && v <= hi,
        _ => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(min: serde_json::Value, max: serde_json::Value) -> DataFile {
        DataFile {
            path: "datasets/x/base/c/part-00000.parquet".into(),
            rows: 10,
            bytes: 100,
            key_min: Some(vec![min]),
            key_max: Some(vec![max]),
        }
    }

    #[test]
    fn recorded_key_ranges_exclude_files() {
        let ints = file(10.into(), 20.into());
        assert!(may_hold(&ints, &ScalarValue::Int64(Some(10))));
        assert!(may_hold(&ints, &ScalarValue::Int32(Some(20))));
        assert!(!may_hold(&ints, &ScalarValue::Int64(Some(21))));
        assert!(!may_hold(&ints, &ScalarValue::UInt64(Some(9))));
        let strings = file("b".into(), "d".into());
        assert!(may_hold(&strings, &ScalarValue::Utf8(Some("c".into()))));
        assert!(!may_hold(&strings, &ScalarValue::Utf8(Some("e".into()))));
        // What the range cannot tell about is never excluded.
        assert!(may_hold(&ints, &ScalarValue::Utf8(Some("e".into()))));
        let unknown = DataFile {
            key_min: None,
            ..ints.clone()
        };
        assert!(may_hold(&unknown, &ScalarValue::Int64(Some(99))));
    }
}
