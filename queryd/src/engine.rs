//! The general path: a [`Plan`] run by DataFusion (DataFrame API, no SQL text) over either
//! the in-memory chunks or, cold, the manifest's exact Parquet files.
//!
//! Order guarantees (the same on every path):
//! - row queries without `order_by` return storage order: the scan is one partition
//!   (`target_partitions = 1`) and filters, projections and limits preserve order;
//! - with `order_by`, ties are broken by the primary key (or by every output column when
//!   there is none, where tied rows are indistinguishable anyway), so pages are stable;
//! - grouped and distinct queries without `order_by` are sorted by their group columns.

use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::{Schema, SchemaRef};
use datafusion::catalog::MemTable;
use datafusion::common::ScalarValue;
use datafusion::execution::SendableRecordBatchStream;
use datafusion::functions_aggregate::expr_fn::{avg, count, max, min, sum};
use datafusion::logical_expr::{Expr, SortExpr, ident, lit};
use datafusion::prelude::{DataFrame, ParquetReadOptions, SessionConfig, SessionContext};
use object_store::ObjectStore;
use strata_shared::manifest::Manifest;
use url::Url;

use crate::cache::Source;
use crate::error::QueryError;
use crate::plan::{AggOp, CmpOp, FilterOp, Plan, Shape, SortKey};

/// The URL under which the dataset store is registered with DataFusion.
const STORE_URL: &str = "strata://store";

/// A DataFusion session over one source.
pub struct Engine {
    ctx: SessionContext,
}

impl Engine {
    /// `partitions`: 1 for order-preserving row queries, the core count for aggregations.
    pub fn new(store: Arc<dyn ObjectStore>, partitions: usize) -> Result<Self, QueryError> {
        let config = SessionConfig::new()
            .with_target_partitions(partitions.max(1))
            .with_batch_size(8192)
            .with_information_schema(false);
        let ctx = SessionContext::new_with_config(config);
        let url = Url::parse(STORE_URL).map_err(|e| QueryError::Internal(e.to_string()))?;
        ctx.register_object_store(&url, store);
        Ok(Self { ctx })
    }

    /// The dataset as a DataFrame: its in-memory chunks, or the manifest's Parquet files.
    pub async fn frame(&self, source: &Source) -> Result<DataFrame, QueryError> {
        match source {
            Source::Memory(state) => {
                let table = MemTable::try_new(
                    state.mem_schema.clone(),
                    vec![state.chunks.batches().to_vec()],
                )?;
                Ok(self.ctx.read_table(Arc::new(table))?)
            }
            Source::Cold(manifest) => self.parquet_frame(manifest).await,
        }
    }

    /// The cold path. DataFusion reads files in path order, which is manifest order: base
    /// files of one manifest are parts `part-00000…` of one compaction (see `layout`).
    async fn parquet_frame(&self, manifest: &Manifest) -> Result<DataFrame, QueryError> {
        let schema = manifest.arrow_schema();
        if !manifest.deltas.is_empty() {
            // Merging deltas into the cold path arrives with read-time merge.
            return Err(QueryError::Unavailable(format!(
                "dataset {} is loading",
                manifest.dataset
            )));
        }
        if manifest.base_files.is_empty() {
            let table = MemTable::try_new(schema.clone(), vec![vec![]])?;
            return Ok(self.ctx.read_table(Arc::new(table))?);
        }
        let paths: Vec<String> = manifest
            .base_files
            .iter()
            .map(|f| format!("{STORE_URL}/{}", f.path))
            .collect();
        let options = ParquetReadOptions {
            schema: Some(schema.as_ref()),
            ..Default::default()
        };
        Ok(self.ctx.read_parquet(paths, options).await?)
    }
}

/// Applies `plan` to `frame`, without paging (the caller adds the window it needs).
pub fn apply(
    frame: DataFrame,
    plan: &Plan,
    schema: &Schema,
    primary_key: &[String],
) -> Result<DataFrame, QueryError> {
    let mut frame = frame;
    for filter in &plan.filters {
        frame = frame.filter(filter_expr(
            ident(schema.field(filter.column).name()),
            &filter.op,
        ))?;
    }
    let name = |i: &usize| schema.field(*i).name().clone();
    match &plan.shape {
        Shape::Rows { columns } => {
            if !plan.order_by.is_empty() {
                // Sort before projecting: the order may use columns not returned.
                let mut keys = plan.order_by.clone();
                let tiebreak: Vec<String> = if primary_key.is_empty() {
                    columns.iter().map(name).collect()
                } else {
                    primary_key.to_vec()
                };
                add_tiebreak(&mut keys, tiebreak);
                frame = frame.sort(sort_exprs(&keys))?;
            }
            frame = frame.select(columns.iter().map(|c| ident(name(c))).collect::<Vec<_>>())?;
        }
        Shape::Distinct { columns } => {
            let names: Vec<String> = columns.iter().map(name).collect();
            frame = frame
                .select(names.iter().map(ident).collect::<Vec<_>>())?
                .distinct()?;
            let mut keys = plan.order_by.clone();
            add_tiebreak(&mut keys, names);
            frame = frame.sort(sort_exprs(&keys))?;
        }
        Shape::Grouped {
            group_by,
            aggregates,
            ..
        } => {
            let groups: Vec<String> = group_by.iter().map(name).collect();
            let aggs: Vec<Expr> = aggregates
                .iter()
                .map(|a| {
                    let arg = a.column.map(|c| ident(name(&c)));
                    let expr = match (a.op, arg) {
                        (AggOp::Count, None) => count(lit(1i64)),
                        (AggOp::Count, Some(e)) => count(e),
                        (AggOp::Sum, Some(e)) => sum(e),
                        (AggOp::Avg, Some(e)) => avg(e),
                        (AggOp::Min, Some(e)) => min(e),
                        (AggOp::Max, Some(e)) => max(e),
                        (op, None) => {
                            return Err(QueryError::Internal(format!("{op:?} without a column")));
                        }
                    };
                    Ok(expr.alias(&a.alias))
                })
                .collect::<Result<_, QueryError>>()?;
            frame = frame.aggregate(groups.iter().map(ident).collect(), aggs)?;
            return finish_groups(frame, plan, schema);
        }
    }
    limit(frame, plan)
}

/// The part of a grouped plan after aggregation: `having`, the order (group columns break
/// ties), `limit`. `frame` holds one row per group: group columns, then aggregates.
pub fn finish_groups(
    mut frame: DataFrame,
    plan: &Plan,
    schema: &Schema,
) -> Result<DataFrame, QueryError> {
    let Shape::Grouped {
        group_by, having, ..
    } = &plan.shape
    else {
        return Err(QueryError::Internal("not a grouped plan".into()));
    };
    for h in having {
        frame = frame.filter(filter_expr(ident(&h.output), &h.op))?;
    }
    let mut keys = plan.order_by.clone();
    add_tiebreak(
        &mut keys,
        group_by
            .iter()
            .map(|&c| schema.field(c).name().clone())
            .collect(),
    );
    frame = frame.sort(sort_exprs(&keys))?;
    limit(frame, plan)
}

fn limit(frame: DataFrame, plan: &Plan) -> Result<DataFrame, QueryError> {
    Ok(match plan.limit {
        Some(limit) => frame.limit(0, Some(usize::try_from(limit).unwrap_or(usize::MAX)))?,
        None => frame,
    })
}

/// A DataFrame over batches already in memory (one partition, order kept).
pub fn frame_of(
    engine: &Engine,
    schema: SchemaRef,
    batches: Vec<RecordBatch>,
) -> Result<DataFrame, QueryError> {
    let table = MemTable::try_new(schema, vec![batches])?;
    Ok(engine.ctx.read_table(Arc::new(table))?)
}

/// Appends `columns` not already sorted on, ascending, so the order is total.
fn add_tiebreak(keys: &mut Vec<SortKey>, columns: Vec<String>) {
    for name in columns {
        if !keys.iter().any(|k| k.name == name) {
            keys.push(SortKey {
                name,
                descending: false,
            });
        }
    }
}

/// Ascending sorts put nulls last, descending ones first (PostgreSQL's and datap-rs's order).
fn sort_exprs(keys: &[SortKey]) -> Vec<SortExpr> {
    keys.iter()
        .map(|k| ident(&k.name).sort(!k.descending, k.descending))
        .collect()
}

fn filter_expr(column: Expr, op: &FilterOp) -> Expr {
    match op {
        FilterOp::Cmp(op, value) => {
            let value = lit(value.clone());
            match op {
                CmpOp::Eq => column.eq(value),
                CmpOp::NotEq => column.not_eq(value),
                CmpOp::Gt => column.gt(value),
                CmpOp::GtEq => column.gt_eq(value),
                CmpOp::Lt => column.lt(value),
                CmpOp::LtEq => column.lt_eq(value),
            }
        }
        FilterOp::Like {
            pattern,
            case_insensitive,
        } => {
            let pattern = lit(ScalarValue::Utf8(Some(pattern.clone())));
            if *case_insensitive {
                column.ilike(pattern)
            } else {
                column.like(pattern)
            }
        }
        FilterOp::In(values) => column.in_list(values.iter().cloned().map(lit).collect(), false),
        FilterOp::IsNull => column.is_null(),
        FilterOp::IsNotNull => column.is_not_null(),
    }
}

/// Runs `frame` with a page window and collects the result.
pub async fn collect_window(
    frame: DataFrame,
    skip: u64,
    fetch: u64,
) -> Result<Vec<RecordBatch>, QueryError> {
    if fetch == 0 {
        return Ok(Vec::new());
    }
    let skip = usize::try_from(skip).unwrap_or(usize::MAX);
    let fetch = usize::try_from(fetch).unwrap_or(usize::MAX);
    Ok(frame.limit(skip, Some(fetch))?.collect().await?)
}

/// Runs `frame` to a stream of every result row.
pub async fn stream(
    frame: DataFrame,
) -> Result<(SchemaRef, SendableRecordBatchStream), QueryError> {
    let schema = Arc::new(frame.schema().as_arrow().clone());
    Ok((schema, frame.execute_stream().await?))
}

/// Counts the rows of `frame`.
pub async fn count_rows(frame: DataFrame) -> Result<u64, QueryError> {
    Ok(frame.count().await? as u64)
}
