//! The cold path's own answers, besides the engine's: key lookups and late top-K pages here,
//! counts in [`count`].
//!
//! The cold path's one hot path: a primary-key lookup (`eq` on each key column) on a dataset
//! that is not in memory (never loaded, evicted, too big for the cache, or being rebuilt after
//! a compaction) is answered from its files without DataFusion. The key's newest delta entry decides if there
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

use arrow::array::{Array, ArrayRef, BooleanArray, RecordBatch};
use arrow::datatypes::SchemaRef;
use datafusion::common::ScalarValue;
use futures::{StreamExt, TryStreamExt};
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

pub mod count;
mod pages;

/// The key's columns and their looked-up values, in key order, if `plan` is a lookup of the
/// whole primary key by `eq` on each of its columns (nothing else filtered, no order).
fn key_values<'p>(manifest: &Manifest, plan: &'p Plan) -> Option<Vec<(usize, &'p ScalarValue)>> {
    let Shape::Rows { .. } = &plan.shape else {
        return None;
    };
    let key = keys::key_indices(&manifest.arrow_schema(), &manifest.primary_key).ok()?;
    // As many filters as key columns, and one on each: exactly one per key column.
    if key.is_empty() || plan.filters.len() != key.len() || !plan.order_by.is_empty() {
        return None;
    }
    key.iter()
        .map(|&column| {
            let filter = plan.filters.iter().find(|f| f.column == column)?;
            match &filter.op {
                FilterOp::Cmp(CmpOp::Eq, value) if !value.is_null() => Some((column, value)),
                _ => None,
            }
        })
        .collect()
}

/// Whether `plan` is a key lookup this module answers (the route's choice).
pub fn applies(manifest: &Manifest, plan: &Plan) -> bool {
    key_values(manifest, plan).is_some()
}

/// The row a key lookup ([`applies`]) finds, projected to the plan's columns, with their
/// schema (stored types). Paging and `limit` are the caller's.
pub async fn key_row(
    deltas: &DeltaCache,
    footers: &Footers,
    manifest: &Manifest,
    plan: &Plan,
) -> Result<(SchemaRef, Option<RecordBatch>), QueryError> {
    let (Shape::Rows { columns }, Some(key)) = (&plan.shape, key_values(manifest, plan)) else {
        return Err(QueryError::Internal(
            "a cold key lookup of another plan".into(),
        ));
    };
    let schema = manifest.arrow_schema();
    let projected = Arc::new(schema.project(columns)?);
    let row = find(deltas, footers, manifest, &schema, &key).await?;
    Ok((projected, row.map(|r| r.project(columns)).transpose()?))
}

/// The most rows a late top-K page ([`top_k_columns`]) reads by key, and the deepest its
/// ranking may go (`skip + fetch`): within them the engine ranks with a top-K heap.
pub const TOP_K_ROWS: u64 = 100;
pub const TOP_K_WINDOW: u64 = 1_000;

/// Base rows per row read by key below which a top-K page is not materialized late: each
/// lookup costs ~3 ms, the ranking saves in proportion to the rows. lineitem top-50 cold:
/// 6M rows 350 → 441 ms late (slower), 60M rows 1,357 → 816 ms (`benches/scale`,
/// 2026-12-05).
pub const TOP_K_ROWS_PER_LOOKUP: u64 = 200_000;

/// Key lookups of a late top-K page in flight at once.
const TOP_K_LOOKUPS: usize = 8;

/// The columns a top-K page of a cold dataset is ranked by before its rows are read by key
/// ([`rows_by_key`]): the order's, then the primary key's. Only for a page of at most
/// [`TOP_K_ROWS`] rows within the first [`TOP_K_WINDOW`] of an `order_by`, of rows with more
/// columns than those, on a dataset with a primary key none of whose columns is floating
/// point (its rows are found again by equality) and with [`TOP_K_ROWS_PER_LOOKUP`] base rows
/// per row of the page.
///
/// Why: a top-K over every column decodes the pages of every column wherever a row passes
/// the heap's threshold, and early in a scan most rows do. lineitem SF10 read from Parquet,
/// top-50 by `l_extendedprice`: 1.36 s, 2.5x DuckDB's Parquet scan, which materializes late
/// itself; 816 ms late (`benches/scale`, 2026-12-05).
pub fn top_k_columns(manifest: &Manifest, plan: &Plan) -> Option<Vec<usize>> {
    let Shape::Rows { columns } = &plan.shape else {
        return None;
    };
    let (skip, fetch) = plan.window();
    if plan.order_by.is_empty()
        || fetch > TOP_K_ROWS
        || skip.saturating_add(fetch) > TOP_K_WINDOW
        || manifest.base_rows() < fetch.saturating_mul(TOP_K_ROWS_PER_LOOKUP)
    {
        return None;
    }
    let schema = manifest.arrow_schema();
    let key = keys::key_indices(&schema, &manifest.primary_key).ok()?;
    if key.is_empty()
        || key
            .iter()
            .any(|&c| schema.field(c).data_type().is_floating())
    {
        return None;
    }
    let mut narrow = Vec::new();
    for k in &plan.order_by {
        narrow.push(schema.index_of(&k.name).ok()?);
    }
    narrow.extend(key);
    let mut seen = std::collections::HashSet::new();
    narrow.retain(|c| seen.insert(*c));
    columns
        .iter()
        .any(|c| !narrow.contains(c))
        .then_some(narrow)
}

/// The rows of a late top-K page ([`top_k_columns`]): `ranked` holds the page as the
/// engine ranked it, in the `narrow` columns; each row is read again by its key, as a key
/// lookup reads it, and answered in the ranked order with `plan`'s columns.
///
/// Same answer as the engine's: a key names one row of a version, and the lookups read the
/// manifest the ranking read.
pub async fn rows_by_key(
    deltas: &DeltaCache,
    footers: &Footers,
    manifest: &Manifest,
    plan: &Plan,
    narrow: &[usize],
    ranked: &[RecordBatch],
) -> Result<(SchemaRef, Vec<RecordBatch>), QueryError> {
    let Shape::Rows { columns } = &plan.shape else {
        return Err(QueryError::Internal("a late top-K of another plan".into()));
    };
    let schema = manifest.arrow_schema();
    let key = keys::key_indices(&schema, &manifest.primary_key)?;
    // Where each key column is among the ranked columns.
    let at =
        key.iter()
            .map(|c| {
                narrow.iter().position(|n| n == c).ok_or_else(|| {
                    QueryError::Internal("a late top-K ranked without its key".into())
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
    let mut wanted = Vec::new();
    for batch in ranked {
        for row in 0..batch.num_rows() {
            let values = at
                .iter()
                .map(|&a| ScalarValue::try_from_array(batch.column(a), row))
                .collect::<Result<Vec<_>, _>>()?;
            wanted.push(values);
        }
    }
    let (key, schema_ref) = (&key, &schema);
    let found: Vec<Option<RecordBatch>> = futures::stream::iter(wanted)
        .map(|values| async move {
            let key: Vec<(usize, &ScalarValue)> = key.iter().copied().zip(&values).collect();
            find(deltas, footers, manifest, schema_ref, &key).await
        })
        .buffered(TOP_K_LOOKUPS)
        .try_collect()
        .await?;
    let projected = Arc::new(schema.project(columns)?);
    let rows = found
        .into_iter()
        .map(|row| {
            row.ok_or_else(|| QueryError::Internal("a ranked row was not found by its key".into()))?
                .project(columns)
                .map_err(QueryError::from)
        })
        .collect::<Result<Vec<_>, _>>()?;
    let page = arrow::compute::concat_batches(&projected, &rows)?;
    Ok((projected, vec![page]))
}

/// The live row whose key columns hold the `key` values (in key order), in the table schema.
async fn find(
    cache: &DeltaCache,
    footers: &Footers,
    manifest: &Manifest,
    schema: &SchemaRef,
    key: &[(usize, &ScalarValue)],
) -> Result<Option<RecordBatch>, QueryError> {
    let wanted = key
        .iter()
        .map(|(column, value)| Ok((*column, value.to_array()?)))
        .collect::<Result<Vec<_>, QueryError>>()?;
    if !manifest.deltas.is_empty() {
        // The key's entries in the delta files (at most one per file): the newest wins. No
        // combining of every delta row (a sort of all of them) for one key.
        let deltas = cache.read(&manifest.deltas).await?;
        let mut newest: Option<(u64, &LoadedDelta, usize)> = None;
        for d in &deltas {
            let hits = matching(d, schema, &wanted)?;
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
    // A file's recorded key range is ordered by the key's first column: its bounds there
    // exclude what lies outside them.
    let first = key.first().map(|(_, value)| *value);
    for file in manifest
        .base_files
        .iter()
        .filter(|f| first.is_none_or(|v| may_hold(f, v)))
    {
        let path = Path::parse(&file.path).map_err(strata_shared::Error::from)?;
        let batches =
            parquet_io::read_equal(cache.store().clone(), footers, &path, &wanted).await?;
        if let Some(batch) = batches.first() {
            return Ok(Some(RecordBatch::try_new(
                schema.clone(),
                batch.slice(0, 1).columns().to_vec(),
            )?));
        }
    }
    Ok(None)
}

/// The rows of delta `d` whose key columns hold the `wanted` values.
fn matching(
    d: &LoadedDelta,
    schema: &SchemaRef,
    wanted: &[(usize, ArrayRef)],
) -> Result<BooleanArray, QueryError> {
    let columns = wanted
        .iter()
        .map(|(column, _)| {
            let name = schema.field(*column).name();
            d.batch.column_by_name(name).ok_or_else(|| {
                QueryError::Internal(format!("delta {} has no column {name}", d.path))
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let values = wanted.iter().map(|(_, value)| value);
    Ok(keys::rows_equal(
        d.batch.num_rows(),
        columns.into_iter().zip(values),
    )?)
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
    use arrow::datatypes::{DataType, Field, Schema};
    use serde_json::json;
    use strata_shared::layout::DatasetName;

    use super::*;

    #[test]
    fn a_lookup_names_each_key_column_once_by_eq_and_nothing_else() {
        let schema = Schema::new(vec![
            Field::new("a", DataType::Int32, false),
            Field::new("b", DataType::Int64, false),
            Field::new("v", DataType::Utf8, true),
        ]);
        let key = vec!["a".to_owned(), "b".to_owned()];
        let name = DatasetName::new("t").unwrap();
        let manifest = Manifest::initial(name, schema.clone(), key, vec![], "test");
        let lookup = |body: serde_json::Value| {
            let request = serde_json::from_value(body).unwrap();
            applies(
                &manifest,
                &crate::plan::plan(&request, &schema, 1000).unwrap(),
            )
        };
        let eq = |col: &str, val: i64| json!({"col": col, "op": "eq", "val": val});
        assert!(lookup(json!({"predicates": [eq("a", 1), eq("b", 2)]})));
        assert!(lookup(
            json!({"predicates": [eq("b", 2), eq("a", 1)], "columns": ["v"]})
        ));
        // Part of the key, a column twice, a range, another filter, an order: not lookups.
        assert!(!lookup(json!({"predicates": [eq("a", 1)]})));
        assert!(!lookup(json!({"predicates": [eq("a", 1), eq("a", 2)]})));
        let range = json!({"col": "b", "op": "gt", "val": 2});
        assert!(!lookup(json!({"predicates": [eq("a", 1), range]})));
        let other = json!({"col": "v", "op": "eq", "val": "x"});
        assert!(!lookup(
            json!({"predicates": [eq("a", 1), eq("b", 2), other]})
        ));
        let ordered = json!({"predicates": [eq("a", 1), eq("b", 2)], "order_by": [{"col": "v"}]});
        assert!(!lookup(ordered));
    }

    #[test]
    fn a_top_k_page_of_few_rows_with_more_columns_is_ranked_first_then_read_by_key() {
        let schema = Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("price", DataType::Float64, true),
            Field::new("note", DataType::Utf8, true),
        ]);
        let name = DatasetName::new("t").unwrap();
        let mut manifest =
            Manifest::initial(name, schema.clone(), vec!["id".into()], vec![], "test");
        manifest.base_files = vec![DataFile {
            rows: 50 * TOP_K_ROWS_PER_LOOKUP,
            ..file(0.into(), 1.into())
        }];
        let narrow = |manifest: &Manifest, body: serde_json::Value| {
            let request = serde_json::from_value(body).unwrap();
            top_k_columns(
                manifest,
                &crate::plan::plan(&request, &schema, 1000).unwrap(),
            )
        };
        let by_price = json!([{"col": "price", "dir": "desc"}]);
        // Ranked by the order's and the key's columns.
        assert_eq!(
            narrow(&manifest, json!({"order_by": by_price, "page_size": 50})),
            Some(vec![1, 0])
        );
        // Nothing to read by key: the page has no other column.
        let narrow_only =
            json!({"order_by": by_price, "page_size": 50, "columns": ["price", "id"]});
        assert_eq!(narrow(&manifest, narrow_only), None);
        // No order; too many rows; too deep; too few base rows per row read.
        assert_eq!(narrow(&manifest, json!({"page_size": 50})), None);
        assert_eq!(
            narrow(&manifest, json!({"order_by": by_price, "page_size": 51})),
            None
        );
        let deep = json!({"order_by": by_price, "page_size": 50, "page": 21});
        assert_eq!(narrow(&manifest, deep), None);
        manifest.base_files[0].rows -= 1;
        assert_eq!(
            narrow(&manifest, json!({"order_by": by_price, "page_size": 50})),
            None
        );
        // A floating-point key is never looked up again by equality.
        manifest.base_files[0].rows += 1;
        let by_id = json!({"order_by": [{"col": "id"}], "page_size": 5});
        assert_eq!(narrow(&manifest, by_id.clone()), Some(vec![0]));
        let mut float_key = manifest.clone();
        float_key.primary_key = vec!["price".into()];
        assert_eq!(narrow(&float_key, by_id), None);
    }

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
