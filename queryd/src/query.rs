//! The query service: picks the source (memory or cold), validates the request into a plan,
//! runs it on the query runtime — through a hot path when indexes answer it, DataFusion
//! otherwise — and encodes the result. Handlers only extract, call and map.

use std::sync::Arc;
use std::time::Duration;

use arrow::array::RecordBatch;
use arrow::datatypes::{Schema, SchemaRef};
use bytes::Bytes;
use futures::StreamExt;
use strata_queryd_api::QueryRequest;

use crate::cache::{Memcache, Source};
use crate::encode::{self, IpcEncoder, Selection};
use crate::engine::{self, Engine, Runtime};
use crate::error::QueryError;
use crate::executor::Executor;
use crate::plan::{self, Plan, Shape};
use crate::{cold, fast, group};

/// Response encodings of a query page.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Json,
    Arrow,
}

/// Limits from the config.
#[derive(Clone, Debug)]
pub struct Limits {
    pub max_page_size: u64,
    pub timeout: Duration,
    /// DataFusion partitions for grouped and sorted queries (the core count).
    pub partitions: usize,
    /// Use the index hot paths where they apply.
    pub hot_paths: bool,
}

/// An encoded page.
pub struct Page {
    pub version: u64,
    pub body: Vec<u8>,
    pub page: u64,
    pub page_size: u64,
}

/// A streamed answer: the version and the body chunks (the first one is already produced,
/// so errors found while planning are reported with a status, not mid-stream).
pub struct Streamed {
    pub version: u64,
    pub chunks: futures::stream::BoxStream<'static, Result<Bytes, std::io::Error>>,
}

pub struct QueryService {
    pub cache: Arc<Memcache>,
    runtime: Arc<Runtime>,
    executor: Executor,
    limits: Limits,
}

/// What a plan runs on: the source and the dataset's logical schema and key.
#[derive(Clone)]
struct Target {
    source: Source,
    schema: SchemaRef,
    primary_key: Vec<String>,
}

impl Target {
    fn new(source: Source) -> Self {
        let (schema, primary_key) = match &source {
            Source::Memory(s) => (
                s.schema.clone(),
                s.primary_key
                    .iter()
                    .map(|&c| s.schema.field(c).name().clone())
                    .collect(),
            ),
            Source::Cold(m) => (m.arrow_schema(), m.primary_key.clone()),
        };
        Self {
            source,
            schema,
            primary_key,
        }
    }
}

impl QueryService {
    pub fn new(cache: Arc<Memcache>, runtime: Runtime, executor: Executor, limits: Limits) -> Self {
        Self {
            cache,
            runtime: Arc::new(runtime),
            executor,
            limits,
        }
    }

    /// The source of `name` at `min_version` or newer.
    async fn target(&self, name: &str, min_version: Option<u64>) -> Result<Target, QueryError> {
        if let Some(min) = min_version {
            // Boxed, as every path off the hot one: see `run_page`.
            Box::pin(self.await_version(name, min)).await?;
        }
        Ok(Target::new(self.cache.source(name).await?))
    }

    /// Brings `name` to `version` or newer, or answers 503 at once. A catch-up reads the
    /// manifest of `version` straight from the store when it exists, and a version is answered
    /// to a writer only once its manifest landed: if the catch-up stays below, nobody has
    /// committed `version` yet, and holding the connection until the time limit (as until
    /// 2026-12-04) helps no one. The client retries after `Retry-After`.
    pub async fn await_version(&self, name: &str, version: u64) -> Result<(), QueryError> {
        if self.cache.source(name).await?.version() >= version {
            return Ok(());
        }
        let served = self.cache.catch_up_to(name, Some(version)).await?;
        if served >= version {
            return Ok(());
        }
        Err(QueryError::Unavailable(format!(
            "dataset {name} is at version {served}; version {version} has not been committed"
        )))
    }

    /// Bounds `work` by the request timeout. Work that finished, but not within the limit,
    /// is over it too: the answer does not depend on whether the timer fired first.
    async fn timed<T>(
        &self,
        work: impl Future<Output = Result<T, QueryError>>,
    ) -> Result<T, QueryError> {
        let started = tokio::time::Instant::now();
        match tokio::time::timeout(self.limits.timeout, work).await {
            Ok(result) if started.elapsed() < self.limits.timeout => result,
            _ => Err(QueryError::Timeout(self.limits.timeout.as_millis() as u64)),
        }
    }

    /// Validates `request` and runs `work` on it within the time limit: on the query runtime,
    /// or right here when a hot path bounds the work by a small page (`fast::is_bounded`).
    async fn execute<T, F, Fut>(
        &self,
        name: &str,
        request: &QueryRequest,
        work: F,
    ) -> Result<T, QueryError>
    where
        F: FnOnce(Run) -> Fut,
        Fut: Future<Output = Result<T, QueryError>> + Send + 'static,
        T: Send + 'static,
    {
        self.timed(async {
            let run = self.prepare(name, request).await?;
            if run
                .hot()
                .is_some_and(|state| fast::is_bounded(state, &run.plan))
            {
                return work(run).await;
            }
            self.executor.run(work(run)).await
        })
        .await
    }

    /// The source and the validated plan of `request`.
    async fn prepare(&self, name: &str, request: &QueryRequest) -> Result<Run, QueryError> {
        let target = self.target(name, request.min_version).await?;
        let plan = plan::plan(request, &target.schema, self.limits.max_page_size)?;
        Ok(Run {
            target,
            plan,
            runtime: self.runtime.clone(),
            limits: self.limits.clone(),
        })
    }

    /// One page of a query, encoded.
    pub async fn query(
        &self,
        name: &str,
        request: &QueryRequest,
        format: Format,
    ) -> Result<Page, QueryError> {
        self.execute(name, request, move |run| async move {
            let (schema, rows) = run_page(&run).await?;
            let Run { target, plan, .. } = run;
            let body = match format {
                Format::Json => encode::json_page(&rows, plan.page, plan.page_size)?,
                Format::Arrow => {
                    let batches = rows
                        .into_iter()
                        .map(Selection::into_batch)
                        .collect::<Result<Vec<_>, _>>()?;
                    encode::arrow_stream(&batches, encode::logical_schema(&schema, &target.schema))?
                }
            };
            Ok(Page {
                version: target.source.version(),
                body,
                page: plan.page,
                page_size: plan.page_size,
            })
        })
        .await
    }

    /// The number of rows the query returns without paging (`limit` applies), and the
    /// version counted.
    pub async fn count(
        &self,
        name: &str,
        request: &QueryRequest,
    ) -> Result<(u64, u64), QueryError> {
        self.execute(name, request, |run| async move {
            let version = run.target.source.version();
            if let Some(state) = run.hot()
                && let Some(n) = fast::count(state, &run.plan)
            {
                return Ok((n, version));
            }
            // Boxed: see `run_page`.
            let n = Box::pin(async { engine::count_rows(run.frame().await?).await }).await?;
            Ok((run.plan.limit.map_or(n, |l| l.min(n)), version))
        })
        .await
    }

    /// Every row of the query (paging ignored, `limit` honoured) as one Arrow IPC stream.
    pub async fn stream(&self, name: &str, request: &QueryRequest) -> Result<Streamed, QueryError> {
        let run = self.timed(self.prepare(name, request)).await?;
        let version = run.target.source.version();
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Result<Bytes, QueryError>>(4);
        self.executor
            .spawn(async move {
                if let Err(e) = produce_stream(&run, &tx).await {
                    let _ = tx.send(Err(e)).await;
                }
            })
            .await?;
        // The first chunk (the schema) or the planning error.
        let first = match self.timed(async { Ok(rx.recv().await) }).await? {
            Some(Ok(bytes)) => bytes,
            Some(Err(e)) => return Err(e),
            None => {
                return Err(QueryError::Internal(
                    "stream ended before its schema".into(),
                ));
            }
        };
        let rest = futures::stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|item| {
                let item = item.map_err(|e| std::io::Error::other(e.to_string()));
                (item, rx)
            })
        });
        Ok(Streamed {
            version,
            chunks: futures::stream::once(async { Ok(first) })
                .chain(rest)
                .boxed(),
        })
    }

    /// The first row of a dataset as a JSON object (the schema endpoint's sample).
    pub async fn sample(
        &self,
        name: &str,
    ) -> Result<Option<serde_json::Map<String, serde_json::Value>>, QueryError> {
        let request = QueryRequest {
            page_size: Some(1),
            ..Default::default()
        };
        let page = self.query(name, &request, Format::Json).await?;
        let parsed: strata_queryd_api::QueryResponse =
            serde_json::from_slice(&page.body).map_err(|e| QueryError::Internal(e.to_string()))?;
        Ok(parsed.data.into_iter().next())
    }
}

/// Everything one execution needs, moved onto the query runtime.
struct Run {
    target: Target,
    plan: Plan,
    runtime: Arc<Runtime>,
    limits: Limits,
}

impl Run {
    /// The in-memory state, when hot paths may be tried on it.
    fn hot(&self) -> Option<&Arc<crate::state::DatasetState>> {
        match &self.target.source {
            Source::Memory(state) if self.limits.hot_paths => Some(state),
            _ => None,
        }
    }

    /// The plan (without paging) as a DataFusion frame over the source.
    async fn frame(&self) -> Result<datafusion::prelude::DataFrame, QueryError> {
        // Grouped, distinct and sorted queries use every core; row scans stay in one
        // partition so storage order is kept.
        let partitions = match self.plan.shape {
            Shape::Rows { .. } if self.plan.order_by.is_empty() => 1,
            _ => self.limits.partitions,
        };
        let engine = Engine::new(&self.runtime, partitions);
        if let Some(state) = self.hot()
            && let Some(groups) = group::grouped(state, &self.plan)
        {
            let (schema, batch) = groups?;
            let frame = engine::frame_of(&engine, schema, vec![batch])?;
            return engine::finish_groups(frame, &self.plan, &self.target.schema);
        }
        let frame = engine.frame(&self.target.source).await?;
        engine::apply(
            frame,
            &self.plan,
            &self.target.schema,
            &self.target.primary_key,
        )
    }
}

/// One page of the plan with its schema (as produced, possibly dictionary-encoded).
///
/// The general path is boxed. A future holds the state of every path it may take, and the
/// DataFusion and cold ones are about 18 KiB; inline, every request's future would be that
/// big, and moving it through the handler and the tower layers (a memcpy each time) was
/// most of a key lookup's instructions. `query_futures_stay_small` guards this.
async fn run_page(run: &Run) -> Result<(SchemaRef, Vec<Selection>), QueryError> {
    if let Some(state) = run.hot()
        && let Some(candidates) = fast::candidates(state, &run.plan)
    {
        let rows = fast::page(state, &run.plan, &candidates)?;
        return Ok((projected_schema(&state.mem_schema, &run.plan), rows));
    }
    let (schema, batches) = Box::pin(run_general_page(run)).await?;
    Ok((schema, batches.into_iter().map(Selection::all).collect()))
}

/// [`run_page`] off the index hot paths: cold key lookups, answered groups, DataFusion.
async fn run_general_page(run: &Run) -> Result<(SchemaRef, Vec<RecordBatch>), QueryError> {
    if let Source::Cold(manifest) = &run.target.source
        && run.limits.hot_paths
        && let Some(page) = cold::key_lookup(
            run.runtime.deltas(),
            run.runtime.footers(),
            manifest,
            &run.plan,
        )
        .await
    {
        return page;
    }
    let (skip, fetch) = run.plan.window();
    if let Some(state) = run.hot()
        && let Some(groups) = group::answered(state, &run.plan)
    {
        let groups = groups?;
        let start = usize::try_from(skip)
            .unwrap_or(usize::MAX)
            .min(groups.num_rows());
        let len = usize::try_from(fetch)
            .unwrap_or(usize::MAX)
            .min(groups.num_rows() - start);
        let page = engine::narrow_sums(groups.slice(start, len), &run.plan)?;
        return Ok((page.schema(), vec![page]));
    }
    let frame = run.frame().await?;
    let empty = RecordBatch::new_empty(Arc::new(frame.schema().as_arrow().clone()));
    let schema = engine::narrow_sums(empty, &run.plan)?.schema();
    let batches = engine::collect_window(frame, skip, fetch)
        .await?
        .into_iter()
        .map(|batch| engine::narrow_sums(batch, &run.plan))
        .collect::<Result<_, _>>()?;
    Ok((schema, batches))
}

fn projected_schema(schema: &SchemaRef, plan: &Plan) -> SchemaRef {
    if plan.rows_of_every_column(schema.fields().len()) {
        return schema.clone();
    }
    match &plan.shape {
        Shape::Rows { columns } => {
            Arc::new(schema.project(columns).unwrap_or_else(|_| Schema::empty()))
        }
        _ => Arc::new(Schema::empty()),
    }
}

async fn produce_stream(
    run: &Run,
    tx: &tokio::sync::mpsc::Sender<Result<Bytes, QueryError>>,
) -> Result<(), QueryError> {
    // `false`: the client went away; stop producing.
    let send = |bytes: Bytes| async move { tx.send(Ok(bytes)).await.is_ok() };
    if let Some(state) = run.hot()
        && let Some(candidates) = fast::candidates(state, &run.plan)
    {
        let schema = encode::logical_schema(
            &projected_schema(&state.mem_schema, &run.plan),
            &run.target.schema,
        );
        let mut encoder = IpcEncoder::new(schema)?;
        if !send(encoder.take()).await {
            return Ok(());
        }
        for batch in fast::all(state, &run.plan, &candidates)? {
            if !send(encoder.write(&batch)?).await {
                return Ok(());
            }
        }
        send(encoder.finish()?).await;
        return Ok(());
    }
    let (schema, mut batches) = engine::stream(run.frame().await?, run.plan.limit).await?;
    let schema = engine::narrow_sums(RecordBatch::new_empty(schema), &run.plan)?.schema();
    // The first batch is made before the schema goes out: an error in it (a sum that
    // overflows) is then answered with its status, not as a broken stream.
    let first = match batches.next().await {
        Some(batch) => Some(engine::narrow_sums(batch?, &run.plan)?),
        None => None,
    };
    let mut encoder = IpcEncoder::new(encode::logical_schema(&schema, &run.target.schema))?;
    if !send(encoder.take()).await {
        return Ok(());
    }
    if let Some(first) = first
        && !send(encoder.write(&first)?).await
    {
        return Ok(());
    }
    while let Some(batch) = batches.next().await {
        if !send(encoder.write(&engine::narrow_sums(batch?, &run.plan)?)?).await {
            return Ok(());
        }
    }
    send(encoder.finish()?).await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every request's future is moved (copied) several times on its way through the handler
    /// and the tower layers, so the paths off the hot one are boxed (see [`run_page`]).
    #[tokio::test]
    async fn query_futures_stay_small() {
        let store = Arc::new(object_store::memory::InMemory::new());
        let app = crate::app_state(&strata_daemon::config::Config::default(), store).unwrap();
        let request = QueryRequest::default();
        let query = app.service.query("d", &request, Format::Json);
        let count = app.service.count("d", &request);
        // About 2 KiB today; with the DataFusion path inline it was about 20 KiB.
        for (what, size) in [
            ("query", size_of_val(&query)),
            ("count", size_of_val(&count)),
        ] {
            assert!(size <= 4096, "the {what} future is {size} bytes");
        }
    }
}
