//! The DataFusion [`Engine`]: a [`Plan`] run as DataFrames (no SQL text) over either the
//! in-memory chunks or, cold, the manifest's exact Parquet files.
//!
//! How it keeps the order rules of the engine contract ([`super`]):
//! - row queries without `order_by` return storage order: the scan is one partition
//!   (`target_partitions = 1`) and filters, projections and limits preserve order;
//! - with `order_by`, ties are broken by the primary key (or by every output column when
//!   there is none, where tied rows are indistinguishable anyway), so pages are stable;
//! - grouped and distinct queries without `order_by` are sorted by their group columns.

use std::num::NonZeroUsize;
use std::path::PathBuf;
use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::{DataType, Schema, SchemaRef};
use datafusion::catalog::MemTable;
use datafusion::common::ScalarValue;
use datafusion::execution::cache::cache_manager::CacheManagerConfig;
use datafusion::execution::memory_pool::TrackConsumersPool;
use datafusion::execution::runtime_env::{RuntimeEnv, RuntimeEnvBuilder};
use datafusion::functions_aggregate::expr_fn::{avg, count, max, min, sum};
use datafusion::logical_expr::{Expr, JoinType, SortExpr, ident, lit};
use datafusion::prelude::{DataFrame, ParquetReadOptions, SessionConfig, SessionContext, cast};
use futures::StreamExt;
use futures::future::BoxFuture;
use futures::stream::BoxStream;
use strata_shared::manifest::Manifest;
use url::Url;

use super::pool::HalfSpillPool;
use super::{Batches, EXACT_SUM, Engine, Input, Query, narrow_sums};
use crate::delta_cache::DeltaCache;
use crate::deltas;
use crate::error::QueryError;
use crate::plan::{AggOp, CmpOp, FilterOp, Plan, Shape, SortKey};
use crate::source::Source;

/// The URL under which the dataset store is registered with DataFusion.
const STORE_URL: &str = "strata://store";

/// What every query's DataFusion session shares: the store, registered once, the delta
/// files, and one cache of Parquet metadata (footers and page indexes), so cold queries do
/// not fetch them from the store every time. Data files are immutable, so cached metadata
/// never goes stale.
pub struct Runtime {
    env: Arc<RuntimeEnv>,
    deltas: Arc<DeltaCache>,
    /// What each sort partition reserves up front to merge its spilled runs: DataFusion's
    /// 10 MiB, or less under a small pool. The reservation cannot spill, so a fixed 10 MiB a
    /// partition made a sort under a 32 MiB pool fail (found by the differential test).
    sort_merge_bytes: usize,
}

/// A refusal of the engine's memory names its biggest holders, for whoever reads the 503.
const TRACKED_CONSUMERS: NonZeroUsize = NonZeroUsize::MIN.saturating_add(2);

/// Bound of the Parquet metadata cache (least recently used entries go first).
const METADATA_CACHE_BYTES: usize = 32 << 20;

impl Runtime {
    /// `memory`: what every query's operators may hold together (sorts, aggregations and
    /// joins reserve from it); `spill_dir`: where sorts and aggregations past their share
    /// write their runs. Spilling operators share half of it equally ([`HalfSpillPool`]), so
    /// one deep sort neither starves the requests beside it nor what cannot spill.
    pub fn new(
        deltas: Arc<DeltaCache>,
        memory: usize,
        spill_dir: PathBuf,
    ) -> Result<Self, QueryError> {
        let env = RuntimeEnvBuilder::new()
            .with_cache_manager(
                CacheManagerConfig::default().with_metadata_cache_limit(METADATA_CACHE_BYTES),
            )
            .with_memory_pool(Arc::new(TrackConsumersPool::new(
                HalfSpillPool::new(memory),
                TRACKED_CONSUMERS,
            )))
            .with_temp_file_path(spill_dir)
            .build_arc()?;
        let url = Url::parse(STORE_URL).map_err(|e| QueryError::Internal(e.to_string()))?;
        env.register_object_store(&url, deltas.store().clone());
        Ok(Self {
            env,
            deltas,
            sort_merge_bytes: (memory / 32).min(10 << 20),
        })
    }
}

/// The DataFusion engine.
pub struct DataFusion {
    runtime: Runtime,
    /// Partitions for grouped, distinct and sorted plans (the core count).
    partitions: usize,
}

impl DataFusion {
    pub fn new(runtime: Runtime, partitions: usize) -> Self {
        Self {
            runtime,
            partitions,
        }
    }

    /// The plan (without paging) as a frame over `input`. `wide_keys`: dictionary columns of
    /// an in-memory dataset with 32-bit keys (`DatasetState::live_batches`). `ordered`: the
    /// rows' order matters (pages and streams; a count's does not).
    async fn frame(
        &self,
        input: Input<'_>,
        query: Query<'_>,
        wide_keys: bool,
        ordered: bool,
    ) -> Result<DataFrame, QueryError> {
        // Row scans whose order matters stay in one partition so storage order is kept;
        // grouped, distinct and sorted plans, and counts, use every core.
        let rows = matches!(query.plan.shape, Shape::Rows { .. }) && ordered;
        let partitions = if rows && query.plan.order_by.is_empty() {
            1
        } else {
            self.partitions
        };
        let session = Session::new(&self.runtime, partitions, rows);
        match input {
            Input::Groups(schema, batch) => finish_groups(
                session.table(schema, vec![batch])?,
                query.plan,
                query.schema,
            ),
            Input::Dataset(source) => {
                let frame = session.frame(source, wide_keys).await?;
                apply(frame, query.plan, query.schema, query.primary_key)
            }
        }
    }
}

impl Engine for DataFusion {
    fn page<'a>(
        &'a self,
        input: Input<'a>,
        query: Query<'a>,
        skip: u64,
        fetch: u64,
    ) -> BoxFuture<'a, Result<(SchemaRef, Vec<RecordBatch>), QueryError>> {
        Box::pin(async move {
            let window = skip.saturating_add(fetch);
            let top_k = sorted(query.plan) && window <= MAX_ENGINE_LIMIT;
            let frame = self.frame(input, query, top_k, true).await?;
            let frame = if top_k {
                frame.limit(0, Some(window as usize))?
            } else {
                frame
            };
            let empty = RecordBatch::new_empty(Arc::new(frame.schema().as_arrow().clone()));
            let schema = narrow_sums(empty, query.plan)?.schema();
            let batches = collect_window(frame, skip, fetch)
                .await?
                .into_iter()
                .map(|batch| narrow_sums(batch, query.plan))
                .collect::<Result<_, _>>()?;
            Ok((schema, batches))
        })
    }

    fn count<'a>(
        &'a self,
        input: Input<'a>,
        query: Query<'a>,
    ) -> BoxFuture<'a, Result<u64, QueryError>> {
        Box::pin(async move {
            let n = self
                .frame(input, query, false, false)
                .await?
                .count()
                .await? as u64;
            Ok(query.plan.limit.map_or(n, |l| l.min(n)))
        })
    }

    fn stream<'a>(
        &'a self,
        input: Input<'a>,
        query: Query<'a>,
    ) -> BoxFuture<'a, Result<(SchemaRef, Batches), QueryError>> {
        Box::pin(async move {
            let frame = self.frame(input, query, false, true).await?;
            let (schema, batches) = stream(frame, query.plan.limit).await?;
            let schema = narrow_sums(RecordBatch::new_empty(schema), query.plan)?.schema();
            let plan = query.plan.clone();
            let batches = batches
                .map(move |batch| batch.and_then(|b| narrow_sums(b, &plan)))
                .boxed();
            Ok((schema, batches))
        })
    }
}

/// A DataFusion session over one source.
struct Session {
    ctx: SessionContext,
    deltas: Arc<DeltaCache>,
}

impl Session {
    /// `partitions`: 1 for order-preserving row queries, the core count for aggregations.
    /// `late`: filters run while Parquet decodes, and the other columns are decoded for the
    /// matching rows only (late materialization).
    ///
    /// On for pages and streams of rows: a page of a selective filter decodes its other
    /// columns for 50 rows, and a top-K's growing threshold skips what cannot enter it
    /// (lineitem SF1 cold: filter page 632 → 48 ms, top-50 632 → 435 ms). Off for counts and
    /// aggregations, which read few columns beyond the filters' and most rows: building the
    /// row selections cost more than the decoding they saved (count 157 → 103 ms, Q1 367 →
    /// 268 ms; `benches/scale`, 2026-12-05).
    fn new(runtime: &Runtime, partitions: usize, late: bool) -> Self {
        let config = SessionConfig::new()
            .with_target_partitions(partitions.max(1))
            .with_batch_size(8192)
            .with_information_schema(false)
            .with_sort_spill_reservation_bytes(runtime.sort_merge_bytes)
            .set_bool("datafusion.execution.parquet.pushdown_filters", late)
            .set_bool("datafusion.execution.parquet.reorder_filters", true)
            // The cold path's anti-join keeps the base's order only on its probe side
            // (`parquet_frame`): the optimizer must not swap the sides.
            .set_bool("datafusion.optimizer.join_reordering", false);
        Self {
            ctx: SessionContext::new_with_config_rt(config, runtime.env.clone()),
            deltas: runtime.deltas.clone(),
        }
    }

    /// `batches` as a DataFrame.
    fn table(&self, schema: SchemaRef, batches: Vec<RecordBatch>) -> Result<DataFrame, QueryError> {
        let table = MemTable::try_new(schema, vec![batches])?;
        Ok(self.ctx.read_table(Arc::new(table))?)
    }

    /// The dataset as a DataFrame: its in-memory chunks, or the manifest's Parquet files.
    async fn frame(&self, source: &Source, wide_keys: bool) -> Result<DataFrame, QueryError> {
        match source {
            Source::Memory(state) => {
                let (schema, batches) = state.live_batches(wide_keys)?;
                let table = MemTable::try_new(schema, vec![batches])?;
                Ok(self.ctx.read_table(Arc::new(table))?)
            }
            Source::Cold(manifest) => self.parquet_frame(manifest).await,
        }
    }

    /// The cold path. DataFusion reads files in path order, which is manifest order: base
    /// files of one manifest are parts `part-00000…` of one compaction (see `layout`).
    /// Deltas merge by an anti-join that streams the base (order kept): base rows whose key a
    /// delta names drop out, and the surviving upserts (the deltas' newest entry per key)
    /// follow by sequence, then key — storage order, as in memory. Only the small delta side
    /// is deduplicated.
    async fn parquet_frame(&self, manifest: &Manifest) -> Result<DataFrame, QueryError> {
        let schema = manifest.arrow_schema();
        let base = if manifest.base_files.is_empty() {
            let table = MemTable::try_new(schema.clone(), vec![vec![]])?;
            self.ctx.read_table(Arc::new(table))?
        } else {
            let paths: Vec<String> = manifest
                .base_files
                .iter()
                .map(|f| format!("{STORE_URL}/{}", f.path))
                .collect();
            let options = ParquetReadOptions {
                schema: Some(schema.as_ref()),
                ..Default::default()
            };
            self.ctx.read_parquet(paths, options).await?
        };
        if manifest.deltas.is_empty() {
            return Ok(base);
        }
        let key = strata_shared::keys::key_indices(&schema, &manifest.primary_key)?;
        let deltas = self.deltas.read(&manifest.deltas).await?;
        let combined = deltas::combine(&schema, &key, &deltas)?;
        // The deltas' keys, renamed so the join's two sides share no column name.
        let key_names: Vec<String> = (0..key.len())
            .map(|i| format!("__strata_key_{i}"))
            .collect();
        let key_schema = Arc::new(Schema::new(
            key.iter()
                .zip(&key_names)
                .map(|(&c, n)| schema.field(c).as_ref().clone().with_name(n))
                .collect::<Vec<_>>(),
        ));
        let keys = RecordBatch::try_new(
            key_schema.clone(),
            key.iter()
                .map(|&c| combined.rows.column(c).clone())
                .collect(),
        )?;
        let keys = self
            .ctx
            .read_table(Arc::new(MemTable::try_new(key_schema, vec![vec![keys]])?))?;
        // The deltas' keys are the join's build side and the base rows its probe side: a
        // hash join streams its probe side in order, and keeps no promise about the order of
        // its build side's unmatched rows (a `LeftAnti` with the base on the left answered a
        // page of base rows out of storage order; found by the differential test). Join
        // reordering is off (`Session::new`), so the sides stay as written.
        let base = keys.join(
            base,
            JoinType::RightAnti,
            &key_names.iter().map(String::as_str).collect::<Vec<_>>(),
            &manifest
                .primary_key
                .iter()
                .map(String::as_str)
                .collect::<Vec<_>>(),
            None,
        )?;
        let upserts = combined.upserts()?;
        let upserts = RecordBatch::try_new(schema.clone(), upserts.columns().to_vec())?;
        let overlay = self
            .ctx
            .read_table(Arc::new(MemTable::try_new(schema, vec![vec![upserts]])?))?;
        Ok(base.union(overlay)?)
    }
}

/// Applies `plan` to `frame`, without paging (the caller adds the window it needs).
fn apply(
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
            // `limit` is left to the reader (`collect_window`, `stream`, the count): a limit
            // node would merge the partitions of a cold read with deltas out of order.
            return Ok(frame);
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
                    let column_type = a.column.map(|c| schema.field(c).data_type());
                    let expr = match (a.op, arg) {
                        (AggOp::Count, None) => count(lit(1i64)),
                        (AggOp::Count, Some(e)) => count(e),
                        // Exact: see `narrow_sums`.
                        (AggOp::Sum, Some(e)) if column_type.is_some_and(DataType::is_integer) => {
                            sum(cast(e, EXACT_SUM))
                        }
                        (AggOp::Sum, Some(e)) => sum(e),
                        // An average is a double whatever the column (DataFusion's own
                        // average of a decimal is a decimal).
                        (AggOp::Avg, Some(e)) => avg(cast(e, DataType::Float64)),
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
fn finish_groups(
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

/// The most rows a `limit` node may ask DataFusion for. The readers apply `limit` anyway
/// (`collect_window`, `stream`, the count), so the node is only an optimization (top-k sorts
/// and aggregations), and those size their tables by it: a `limit` of 7e18 on a distinct
/// query made DataFusion's top-k hash table overflow computing its capacity (a panic, 500),
/// and one of 10^8 would have allocated gigabytes. Found by `hostile.rs`.
const MAX_ENGINE_LIMIT: u64 = 10_000;

fn limit(frame: DataFrame, plan: &Plan) -> Result<DataFrame, QueryError> {
    Ok(match plan.limit {
        Some(limit) if limit <= MAX_ENGINE_LIMIT => frame.limit(0, Some(limit as usize))?,
        _ => frame,
    })
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

/// Whether `plan`'s answer is sorted (`order_by`, and every grouped or distinct answer). A
/// sorted answer ends in one ordered partition, so a page of it puts a limit node of `skip +
/// fetch` rows on it (`page`): DataFusion then keeps a top-k heap of that many rows instead of
/// sorting every row (a full sort of 1M rows for a page of 50 took ~440 ms, `benches/read`
/// `topk_order`). Unsorted frames are left to the reader (a cold read with deltas has
/// partitions a limit node would merge out of order).
fn sorted(plan: &Plan) -> bool {
    !matches!(plan.shape, Shape::Rows { .. }) || !plan.order_by.is_empty()
}

/// Runs `frame` with a page window and collects the result.
async fn collect_window(
    frame: DataFrame,
    skip: u64,
    fetch: u64,
) -> Result<Vec<RecordBatch>, QueryError> {
    if fetch == 0 {
        return Ok(Vec::new());
    }
    let (_, mut batches) = stream(frame, Some(skip.saturating_add(fetch))).await?;
    let mut skip = usize::try_from(skip).unwrap_or(usize::MAX);
    let mut out = Vec::new();
    while let Some(batch) = batches.next().await {
        let batch = batch?;
        if skip >= batch.num_rows() {
            skip -= batch.num_rows();
            continue;
        }
        out.push(batch.slice(skip, batch.num_rows() - skip));
        skip = 0;
    }
    Ok(out)
}

/// Runs `frame` to a stream of its first `limit` rows (all without one), in order: the
/// partitions one after the other. A frame has several partitions only as a cold read
/// with deltas (base rows, then the overlay's); sorted and grouped plans end in one.
async fn stream(
    frame: DataFrame,
    limit: Option<u64>,
) -> Result<
    (
        SchemaRef,
        BoxStream<'static, Result<RecordBatch, QueryError>>,
    ),
    QueryError,
> {
    let schema = Arc::new(frame.schema().as_arrow().clone());
    let partitions = frame.execute_stream_partitioned().await?;
    let left = limit.map_or(usize::MAX, |l| usize::try_from(l).unwrap_or(usize::MAX));
    // The stream ends (and is dropped, which stops the scan) once `limit` rows went out.
    let batches = futures::stream::iter(partitions)
        .flatten()
        .scan(left, |left, batch| {
            if *left == 0 {
                return futures::future::ready(None);
            }
            let batch = batch.map_err(QueryError::from).map(|batch| {
                let n = batch.num_rows().min(*left);
                *left -= n;
                batch.slice(0, n)
            });
            futures::future::ready(Some(batch))
        })
        .boxed();
    Ok((schema, batches))
}

#[cfg(test)]
mod tests {
    use arrow::array::{AsArray, Int64Array};
    use arrow::datatypes::{DataType, Field, Int64Type};
    use object_store::memory::InMemory;

    use super::*;

    fn ids(batches: &[RecordBatch]) -> Vec<i64> {
        batches
            .iter()
            .flat_map(|b| b.column(0).as_primitive::<Int64Type>().values().to_vec())
            .collect()
    }

    #[tokio::test]
    async fn windows_and_limits_are_applied_by_the_reader_in_order() {
        let schema = Arc::new(Schema::new(vec![Field::new("id", DataType::Int64, false)]));
        let batches: Vec<RecordBatch> = (0..10)
            .map(|b| {
                let values = Int64Array::from_iter_values(b * 100..(b + 1) * 100);
                RecordBatch::try_new(schema.clone(), vec![Arc::new(values)]).unwrap()
            })
            .collect();
        let deltas = DeltaCache::new(Arc::new(InMemory::new()), 0, Arc::default());
        let session = Session::new(
            &Runtime::new(Arc::new(deltas), 64 << 20, std::env::temp_dir()).unwrap(),
            1,
            true,
        );
        let frame = || session.table(schema.clone(), batches.clone()).unwrap();

        let page = collect_window(frame(), 150, 100).await.unwrap();
        assert_eq!(ids(&page), (150..250).collect::<Vec<_>>());
        let (_, stream) = stream(frame(), Some(250)).await.unwrap();
        let all: Vec<RecordBatch> = stream.map(|b| b.unwrap()).collect().await;
        assert_eq!(ids(&all), (0..250).collect::<Vec<_>>());
        assert!(
            collect_window(frame(), 990, 100)
                .await
                .unwrap()
                .iter()
                .map(|b| b.num_rows())
                .sum::<usize>()
                == 10
        );
    }
}
