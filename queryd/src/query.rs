//! The query service: picks the source (memory or cold), validates the request into a plan,
//! decides its [`Route`] once, runs it — on the HTTP worker when the route is a bounded
//! index answer, on the query runtime otherwise — and encodes the result. Handlers only
//! extract, call and map.

use std::sync::Arc;
use std::time::Duration;

use arrow::array::RecordBatch;
use arrow::datatypes::{Schema, SchemaRef};
use bytes::Bytes;
use futures::StreamExt;
use strata_queryd_api::{ChangesQuery, QueryRequest, VersionInfo, VersionsQuery, VersionsResponse};
use strata_shared::commit::Table;
use strata_shared::manifest::Operation;

use strata_shared::parquet_io::Footers;

use crate::cache::Memcache;
use crate::delta_cache::DeltaCache;
use crate::encode::{self, Encoder, Encoding, Format, Selection};
use crate::engine::{self, Engine, Input};
use crate::error::QueryError;
use crate::executor::Executor;
use crate::history::{self, At, History};
use crate::plan::{self, Plan, Shape};
use crate::route::Route;
use crate::source::Source;
use crate::{cold, fast, group, ordered};

/// Most versions one `versions` call lists (each is counted).
const MAX_VERSIONS_LISTED: usize = 100;
/// Longest a change-feed follower waits for a new version in one call.
const MAX_CHANGES_WAIT: Duration = Duration::from_secs(60);

/// Limits from the config.
#[derive(Clone, Debug)]
pub struct Limits {
    pub max_page_size: u64,
    pub timeout: Duration,
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
    engine: Arc<dyn Engine>,
    /// Parsed Parquet footers for the cold key lookups ([`cold`]).
    footers: Arc<Footers>,
    executor: Executor,
    limits: Limits,
}

/// What a plan is validated against: its dataset's logical schema and key, at the version
/// the source holds.
struct Dataset {
    version: u64,
    schema: SchemaRef,
    primary_key: Vec<String>,
}

impl Dataset {
    fn of(source: &Source) -> Self {
        let (schema, primary_key) = match source {
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
            version: source.version(),
            schema,
            primary_key,
        }
    }
}

impl QueryService {
    pub fn new(
        cache: Arc<Memcache>,
        engine: Arc<dyn Engine>,
        executor: Executor,
        limits: Limits,
    ) -> Self {
        Self {
            cache,
            engine,
            footers: Arc::default(),
            executor,
            limits,
        }
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

    /// What a time-travel read of `name` reads: the in-memory state when it holds exactly
    /// that version, else the version's manifest, answered by the cold paths.
    async fn source_at(&self, name: &str, at: At) -> Result<Source, QueryError> {
        let slot = self.cache.slot(name).await?;
        let wanted = match at {
            At::Version(v) => Some(v),
            At::AsOf(_) => None,
        };
        if let Some(state) = slot.resident().filter(|s| Some(s.version) == wanted) {
            return Ok(Source::Memory(state));
        }
        let history = history_of(&self.cache, &slot);
        let manifest = history.manifest(at).await?;
        match slot.resident() {
            Some(state) if state.version == manifest.version => Ok(Source::Memory(state)),
            _ => Ok(Source::Cold(Arc::new(manifest))),
        }
    }

    /// The retained versions of `name`, newest first, each with its exact row count.
    pub async fn versions(
        &self,
        name: &str,
        query: &VersionsQuery,
    ) -> Result<VersionsResponse, QueryError> {
        let limit = query.limit.unwrap_or(10);
        if !(1..=MAX_VERSIONS_LISTED).contains(&limit) {
            return Err(QueryError::BadRequest(format!(
                "limit must be 1..={MAX_VERSIONS_LISTED}"
            )));
        }
        let slot = self.cache.slot(name).await?;
        let history = history_of(&self.cache, &slot);
        let retained = history.retained().await?;
        let (oldest, latest) = (retained[0], retained[retained.len() - 1]);
        let mut versions = Vec::new();
        for &v in retained
            .iter()
            .rev()
            .filter(|&&v| query.before.is_none_or(|b| v < b))
            .take(limit)
        {
            let manifest = history.manifest(At::Version(v)).await?;
            let request = QueryRequest {
                version: Some(v),
                ..Default::default()
            };
            let (rows, _) = self.count(name, &request).await?;
            versions.push(VersionInfo {
                version: v,
                committed_at: manifest
                    .created_at
                    .to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true),
                kind: match manifest.operation {
                    Operation::Create => "create",
                    Operation::Ingest => "ingest",
                    Operation::Compact => "compaction",
                    Operation::BumpEpoch => "epoch",
                    // Never listed: a tombstone ends the history of the dataset it dropped.
                    Operation::Drop => "drop",
                }
                .into(),
                rows,
                base_files: manifest.base_files.len(),
                deltas: manifest.deltas.len(),
            });
        }
        Ok(VersionsResponse {
            dataset: slot.name.to_string(),
            latest,
            oldest,
            versions,
        })
    }

    /// The change feed of `name` (see [`crate::history`]): every row change committed after
    /// `since` up to `until`, in version order (by key within a version), streamed as NDJSON
    /// or one Arrow IPC stream. The version is `until`: the `since` of the next call.
    pub async fn changes(
        &self,
        name: &str,
        query: &ChangesQuery,
        encoding: Encoding,
    ) -> Result<Streamed, QueryError> {
        let since = query
            .since
            .ok_or_else(|| QueryError::BadRequest("since is required".into()))?;
        let wait = Duration::from_secs(query.wait.unwrap_or(0));
        if wait > MAX_CHANGES_WAIT {
            return Err(QueryError::BadRequest(format!(
                "wait is at most {} seconds",
                MAX_CHANGES_WAIT.as_secs()
            )));
        }
        let slot = self.cache.slot(name).await?;
        let history = history_of(&self.cache, &slot);
        let (since, mut until) = history.feed_range(since, query.until).await?;
        if query.until.is_none() && until == since && !wait.is_zero() {
            until = history::await_change(&history, since, wait).await?;
        }
        let (manifest, files) = history.deltas_between(since, until).await?;
        let table = manifest.arrow_schema();
        let schema = history::change_schema(&table);
        let deltas = self.cache.deltas().clone();
        let (schema_, table_) = (schema.clone(), table.clone());
        // One delta file at a time: the feed's memory is one file's, however long it is.
        let batches: engine::Batches = futures::stream::iter(files)
            .then(move |file| {
                let (deltas, schema, table) = (deltas.clone(), schema_.clone(), table_.clone());
                async move {
                    let loaded = deltas.read(std::slice::from_ref(&file)).await?;
                    let delta = loaded.first().ok_or_else(|| {
                        QueryError::Internal("a delta file read as nothing".into())
                    })?;
                    history::change_batch(&schema, &table, &file, delta)
                }
            })
            .boxed();
        self.spawn_streamed(until, move |tx| async move {
            send_encoded(schema.clone(), batches, &schema, encoding, &tx).await
        })
        .await
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

    /// Validates `request` and runs `work` on it within the time limit: right here when the
    /// route says so ([`Route::is_inline`]), else on the query runtime.
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
            if run.route.is_inline(&run.plan) {
                return work(run).await;
            }
            self.executor.run(work(run)).await
        })
        .await
    }

    /// The newest version committed to `name` in the store, which this replica may not serve
    /// yet (a replica learns of commits by notification and poll).
    pub async fn latest_committed(&self, name: &str) -> Result<u64, QueryError> {
        let slot = self.cache.slot(name).await?;
        history_of(&self.cache, &slot).latest().await
    }

    /// The source of `request` (at its `min_version` or newer), its validated plan and its
    /// route.
    async fn prepare(&self, name: &str, request: &QueryRequest) -> Result<Run, QueryError> {
        let source = match At::of(request)? {
            // Boxed, as every path off the hot one: see `run_page`.
            Some(at) => Box::pin(self.source_at(name, at)).await?,
            None => {
                if let Some(min) = request.min_version {
                    Box::pin(self.await_version(name, min)).await?;
                }
                self.cache.source(name).await?
            }
        };
        let dataset = Dataset::of(&source);
        let plan = plan::plan(request, &dataset.schema, self.limits.max_page_size)?;
        let route = Route::decide(source, &plan, self.limits.hot_paths);
        self.cache.metrics().routed(route.index());
        Ok(Run {
            dataset,
            plan,
            route,
            engine: self.engine.clone(),
            deltas: self.cache.deltas().clone(),
            footers: self.footers.clone(),
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
            let Run { dataset, plan, .. } = run;
            let body = match format {
                Format::Json => encode::json_page(&rows, plan.page, plan.page_size)?,
                Format::Rows(encoding) => {
                    let batches = rows
                        .into_iter()
                        .map(Selection::into_batch)
                        .collect::<Result<Vec<_>, _>>()?;
                    encode::encode_all(
                        encoding,
                        encode::logical_schema(&schema, &dataset.schema),
                        &batches,
                    )?
                }
            };
            Ok(Page {
                version: dataset.version,
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
            let n = match &run.route {
                Route::Index { state, probe } | Route::Ordered { state, probe } => {
                    fast::count(state, &run.plan, &probe.candidates(state, &run.plan))
                }
                // Boxed: see `run_page`.
                _ => Box::pin(count_general(&run)).await?,
            };
            Ok((n, run.dataset.version))
        })
        .await
    }

    /// Every row of the query (paging ignored, `limit` honoured), encoded as one stream
    /// (`…/query/stream`: Arrow IPC; `…/export`: any [`Encoding`]).
    pub async fn stream(
        &self,
        name: &str,
        request: &QueryRequest,
        encoding: Encoding,
    ) -> Result<Streamed, QueryError> {
        let run = self.timed(self.prepare(name, request)).await?;
        let version = run.dataset.version;
        self.spawn_streamed(version, move |tx| async move {
            produce_stream(&run, encoding, &tx).await
        })
        .await
    }

    /// Runs `produce` on the query runtime, sending the body's chunks through a channel, and
    /// waits for its first chunk: an error before it (while planning or making the first
    /// batch) is answered with its status, not as a broken stream.
    async fn spawn_streamed<F, Fut>(&self, version: u64, produce: F) -> Result<Streamed, QueryError>
    where
        F: FnOnce(tokio::sync::mpsc::Sender<Result<Bytes, QueryError>>) -> Fut,
        Fut: Future<Output = Result<(), QueryError>> + Send + 'static,
    {
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Result<Bytes, QueryError>>(4);
        let errors = tx.clone();
        let work = produce(tx);
        self.executor
            .spawn(async move {
                if let Err(e) = work.await {
                    let _ = errors.send(Err(e)).await;
                }
            })
            .await?;
        let first = match self.timed(async { Ok(rx.recv().await) }).await? {
            Some(Ok(bytes)) => bytes,
            Some(Err(e)) => return Err(e),
            None => {
                return Err(QueryError::Internal(
                    "stream ended before its first chunk".into(),
                ));
            }
        };
        let rest = futures::stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|item| {
                // The error itself inside: a reader of the whole stream (the export spool)
                // answers with its status.
                let item = item.map_err(std::io::Error::other);
                (item, rx)
            })
        });
        Ok(Streamed {
            version,
            // Fused: a body may be polled again after its end (tower-http's compression
            // does), and `unfold` panics when it is.
            chunks: futures::stream::once(async { Ok(first) })
                .chain(rest)
                .fuse()
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
    dataset: Dataset,
    plan: Plan,
    route: Route,
    engine: Arc<dyn Engine>,
    deltas: Arc<DeltaCache>,
    footers: Arc<Footers>,
}

/// The history of the dataset `slot` serves, from the version that created it (a dropped
/// namesake's versions are not its history).
fn history_of(cache: &Memcache, slot: &crate::cache::Slot) -> History {
    let table = Table::new(cache.store().clone(), slot.name.clone());
    History::new(table, slot.manifest().incarnation)
}

impl Run {
    fn query(&self) -> engine::Query<'_> {
        engine::Query {
            plan: &self.plan,
            schema: &self.dataset.schema,
            primary_key: &self.dataset.primary_key,
        }
    }

    /// What the engine runs the plan over, on the routes that end in the engine.
    fn engine_input(&self) -> Result<Input<'_>, QueryError> {
        match &self.route {
            Route::Groups { state } => {
                let (schema, groups) = group::grouped(state, &self.plan)?;
                Ok(Input::Groups(schema, groups))
            }
            Route::Engine { source }
            | Route::ColdTopK { source, .. }
            | Route::ColdCount { source } => Ok(Input::Dataset(source)),
            Route::Index { .. } | Route::Ordered { .. } | Route::ColdKey { .. } => Err(
                QueryError::Internal("the engine was asked to answer an index route".into()),
            ),
        }
    }

    /// The row a cold key lookup finds ([`Route::ColdKey`]), with its schema.
    async fn cold_row(&self) -> Result<(SchemaRef, Option<RecordBatch>), QueryError> {
        let Route::ColdKey { manifest } = &self.route else {
            return Err(QueryError::Internal("not a cold key lookup".into()));
        };
        cold::key_row(&self.deltas, &self.footers, manifest, &self.plan).await
    }
}

/// One page of the plan with its schema (as produced, possibly dictionary-encoded).
///
/// The other routes are boxed. A future holds the state of every path it may take, and the
/// engine and cold ones are about 18 KiB; inline, every request's future would be that
/// big, and moving it through the handler and the tower layers (a memcpy each time) was
/// most of a key lookup's instructions. `query_futures_stay_small` guards this.
async fn run_page(run: &Run) -> Result<(SchemaRef, Vec<Selection>), QueryError> {
    match &run.route {
        Route::Index { state, probe } => {
            let rows = fast::page(state, &run.plan, &probe.candidates(state, &run.plan))?;
            return Ok((projected_schema(&state.mem_schema, &run.plan), rows));
        }
        Route::Ordered { state, probe } => {
            let page = ordered::page(state, &run.plan, probe.candidates(state, &run.plan))?;
            return Ok((page.schema(), vec![Selection::all(page)]));
        }
        _ => {}
    }
    let (schema, batches) = Box::pin(run_general_page(run)).await?;
    Ok((schema, batches.into_iter().map(Selection::all).collect()))
}

/// [`run_page`] off [`Route::Index`].
async fn run_general_page(run: &Run) -> Result<(SchemaRef, Vec<RecordBatch>), QueryError> {
    let (skip, fetch) = run.plan.window();
    match &run.route {
        Route::ColdKey { .. } => {
            let (schema, row) = run.cold_row().await?;
            let row = row.filter(|_| skip == 0 && fetch > 0);
            Ok((schema, row.into_iter().collect()))
        }
        Route::ColdTopK {
            source: source @ Source::Cold(manifest),
            narrow,
        } => {
            let ranking = Plan {
                shape: Shape::Rows {
                    columns: narrow.clone(),
                },
                ..run.plan.clone()
            };
            let query = engine::Query {
                plan: &ranking,
                ..run.query()
            };
            let (_, ranked) = run
                .engine
                .page(Input::Dataset(source), query, skip, fetch)
                .await?;
            tracing::debug!(
                dataset = %manifest.dataset,
                rows = ranked.iter().map(RecordBatch::num_rows).sum::<usize>(),
                "late top-K: ranked, reading the rows by key"
            );
            cold::rows_by_key(
                &run.deltas,
                &run.footers,
                manifest,
                &run.plan,
                narrow,
                &ranked,
            )
            .await
        }
        Route::Groups { state } if !has_having(&run.plan) => {
            let groups = group::answered(state, &run.plan)?;
            let start = usize::try_from(skip)
                .unwrap_or(usize::MAX)
                .min(groups.num_rows());
            let len = usize::try_from(fetch)
                .unwrap_or(usize::MAX)
                .min(groups.num_rows() - start);
            let page = engine::narrow_sums(groups.slice(start, len), &run.plan)?;
            Ok((page.schema(), vec![page]))
        }
        _ => {
            run.engine
                .page(run.engine_input()?, run.query(), skip, fetch)
                .await
        }
    }
}

/// [`QueryService::count`] off [`Route::Index`].
async fn count_general(run: &Run) -> Result<u64, QueryError> {
    match &run.route {
        Route::ColdKey { .. } => {
            let n = u64::from(run.cold_row().await?.1.is_some());
            Ok(run.plan.limit.map_or(n, |l| l.min(n)))
        }
        Route::ColdCount {
            source: Source::Cold(manifest),
        } => {
            let n = cold::count::count(
                &run.deltas,
                &run.footers,
                manifest,
                &run.plan,
                crate::cores(),
            )
            .await?;
            Ok(run.plan.limit.map_or(n, |l| l.min(n)))
        }
        _ => run.engine.count(run.engine_input()?, run.query()).await,
    }
}

fn has_having(plan: &Plan) -> bool {
    matches!(&plan.shape, Shape::Grouped { having, .. } if !having.is_empty())
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
    encoding: Encoding,
    tx: &tokio::sync::mpsc::Sender<Result<Bytes, QueryError>>,
) -> Result<(), QueryError> {
    let (schema, batches): (SchemaRef, engine::Batches) = match &run.route {
        Route::Index { state, probe } => {
            let candidates = probe.candidates(state, &run.plan);
            let batches = fast::all(state, &run.plan, &candidates)?;
            let schema = projected_schema(&state.mem_schema, &run.plan);
            (
                schema,
                futures::stream::iter(batches.into_iter().map(Ok)).boxed(),
            )
        }
        Route::Ordered { state, probe } => {
            let batches = ordered::all(state, &run.plan, probe.candidates(state, &run.plan))?;
            let schema = match batches.first() {
                Some(batch) => batch.schema(),
                None => ordered::schema(state, &run.plan)?,
            };
            (
                schema,
                futures::stream::iter(batches.into_iter().map(Ok)).boxed(),
            )
        }
        Route::ColdKey { .. } => {
            let (schema, row) = run.cold_row().await?;
            let row = row.filter(|_| run.plan.limit != Some(0));
            (schema, futures::stream::iter(row.map(Ok)).boxed())
        }
        _ => run.engine.stream(run.engine_input()?, run.query()).await?,
    };
    send_encoded(schema, batches, &run.dataset.schema, encoding, tx).await
}

/// Sends `batches` encoded as `encoding`, a chunk per batch. The first batch is made before
/// anything goes out: an error in it (a sum that overflows) is then answered with its
/// status, not as a broken stream.
async fn send_encoded(
    schema: SchemaRef,
    mut batches: engine::Batches,
    dataset: &Schema,
    encoding: Encoding,
    tx: &tokio::sync::mpsc::Sender<Result<Bytes, QueryError>>,
) -> Result<(), QueryError> {
    // `false`: the client went away; stop producing.
    let send = |bytes: Bytes| async move { tx.send(Ok(bytes)).await.is_ok() };
    let first = batches.next().await.transpose()?;
    let (mut encoder, head) = Encoder::new(encoding, encode::logical_schema(&schema, dataset))?;
    // Always sent, even empty: the receiver waits for a first chunk.
    if !send(head).await {
        return Ok(());
    }
    if let Some(first) = first
        && !send(encoder.write(&first)?).await
    {
        return Ok(());
    }
    while let Some(batch) = batches.next().await {
        let bytes = encoder.write(&batch?)?;
        if !bytes.is_empty() && !send(bytes).await {
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
