//! queryd: the public, datap-rs-compatible dataset API over an LRU memcache.
//!
//! It reaches objects only through storaged (a
//! [`RemoteStore`](strata_storaged_api::RemoteStore)) or, in the all-in-one binary, the store
//! storaged opened. Reads never write: queryd discovers datasets and versions from manifests.
//!
//! Request path: `routes` → `api::*` handlers → [`query::QueryService`] → [`cache::Memcache`]
//! picks the source (in-memory [`state::DatasetState`] or, cold, Parquet) → [`plan`]
//! validates → [`route::Route`] decides the path once: the indexes ([`fast`], [`group`]), a
//! cold key lookup ([`cold`]) or the [`engine`] (DataFusion) on the query runtime
//! ([`executor`]) → [`encode`].
//!
//! A `version` or `as_of` read, the version list and the change feed go through [`history`]
//! (retained manifests, the delta files between two versions).
//!
//! Modules import one way: service ([`query`], [`cache`], [`history`]) → [`route`] → paths ([`fast`],
//! [`group`], [`cold`], [`engine`]) → [`build`] (making states) → [`state`] → [`index`] →
//! [`chunks`].
//!
//! Writes and compactions are [`forward`]ed to storaged and compactord; new versions (from a
//! write's answer, a notification or the poll) are applied to the resident state by
//! [`build::apply`] without copying the base.

pub mod api;
pub mod build;
pub mod cache;
pub mod chunks;
pub mod cold;
pub mod delta_cache;
pub mod deltas;
pub mod encode;
pub mod engine;
pub mod error;
pub mod executor;
pub mod fast;
pub mod filter;
pub mod forward;
pub mod group;
pub mod history;
pub mod index;
pub mod metrics;
pub mod ordered;
pub mod plan;
pub mod query;
pub mod route;
pub mod routes;
pub mod source;
pub mod spool;
pub mod state;

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;

use object_store::ObjectStore;
use strata_daemon::config::Config;
use tokio::net::TcpListener;

pub use error::QueryError;

#[derive(Debug, thiserror::Error)]
pub enum QuerydError {
    #[error(transparent)]
    NoInternalToken(#[from] strata_storaged_api::NoInternalToken),
    #[error(transparent)]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Query(#[from] QueryError),
}

/// What the handlers share, behind one `Arc`: every request clones it (axum hands each
/// handler its own copy).
///
/// Each connection thread gets an `Arc` of its own ([`AppState::for_thread`]). A reference
/// count that both cores' requests change moves its cache line from core to core on every
/// clone and drop; with the fields shared directly that was about 1.7 us of a key lookup's
/// 14 (2 cores, measured with perf).
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

/// The state itself (see [`AppState`]).
#[derive(Clone)]
pub struct Shared {
    pub service: Arc<query::QueryService>,
    pub forward: Arc<forward::Forwarder>,
    pub metrics: Arc<metrics::Metrics>,
    /// This queryd's name in answers (`[queryd] instance`).
    pub instance: Arc<str>,
    /// Parquet exports on local disk (`[queryd] export_spool_bytes`; `None` with 0).
    pub spool: Option<Arc<spool::ExportSpool>>,
}

impl AppState {
    /// The same state under an `Arc` of its own, for one connection thread.
    pub fn for_thread(&self) -> Self {
        Self(Arc::new(Shared::clone(&self.0)))
    }
}

impl std::ops::Deref for AppState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

/// Serves on `listener`, reaching objects through storaged's internal API.
pub async fn serve(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), QuerydError> {
    let store = Arc::new(strata_storaged_api::RemoteStore::from_config(&config)?);
    serve_with_store(config, store, listener, shutdown).await
}

pub async fn serve_with_store(
    config: Config,
    store: Arc<dyn ObjectStore>,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), QuerydError> {
    let state = app_state(&config, store)?;
    // Datasets load in the background; until then requests are answered from Parquet.
    if let Err(e) = state.service.cache.warm_up().await {
        tracing::warn!(error = %e, "could not list datasets at start-up; they load on first use");
    }
    if !config.queryd.poll_interval.is_zero() {
        let (cache, every) = (state.service.cache.clone(), config.queryd.poll_interval);
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(every);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticks.tick().await;
                cache.poll().await;
            }
        });
    }
    tracing::info!(addr = %listener.local_addr()?, "queryd serving");
    let router = move || routes::router(state.for_thread(), &config);
    strata_daemon::serve::serve_per_core(listener, router, cores(), shutdown).await?;
    Ok(())
}

/// The shared state for `config` over `store` (no background work started).
pub fn app_state(config: &Config, store: Arc<dyn ObjectStore>) -> Result<AppState, QuerydError> {
    let q = &config.queryd;
    let threads = q.query_threads.unwrap_or_else(cores);
    let metrics = Arc::new(metrics::Metrics::default());
    let configured: HashMap<String, cache::Declared> = config
        .datasets
        .iter()
        .map(|d| {
            let spec = build::IndexSpec {
                policy: d.index,
                columns: d.index_columns.clone(),
            };
            let declared = cache::Declared {
                spec,
                pinned: d.pin,
            };
            (d.name.clone(), declared)
        })
        .collect();
    let executor =
        executor::Executor::new(threads, q.max_concurrent_queries.unwrap_or(threads * 4))?;
    let deltas = Arc::new(delta_cache::DeltaCache::new(
        store,
        usize::try_from(q.delta_cache_bytes).unwrap_or(usize::MAX),
        metrics.clone(),
    ));
    let cache = cache::Memcache::new(
        deltas.clone(),
        q.cache_bytes,
        q.rebuild,
        configured,
        metrics.clone(),
        executor.handle().clone(),
    );
    let limits = query::Limits {
        max_page_size: q.max_page_size,
        timeout: q.request_timeout,
        hot_paths: q.hot_paths,
    };
    let spool_dir = q.spool_dir.clone().unwrap_or_else(std::env::temp_dir);
    let runtime = engine::datafusion::Runtime::new(
        deltas,
        usize::try_from(q.query_memory_bytes).unwrap_or(usize::MAX),
        spool_dir.clone(),
    )?;
    // Grouped, distinct and sorted plans use every core.
    let engine = engine::datafusion::DataFusion::new(runtime, threads);
    let service = Arc::new(query::QueryService::new(
        cache,
        Arc::new(engine),
        executor,
        limits,
    ));
    Ok(AppState(Arc::new(Shared {
        service,
        forward: Arc::new(forward::Forwarder::new(config)),
        metrics,
        instance: q.instance().into(),
        spool: spool::ExportSpool::new(spool_dir, q.export_spool_bytes).map(Arc::new),
    })))
}

/// The cores this process may use: the default count of connection threads and query
/// threads, and the threads an ordered page's prefilter and the tasks a cold count
/// ([`cold::count`]) are split between. Read once: the
/// standard library reads the cgroup's CPU quota from files on every call.
pub(crate) fn cores() -> usize {
    static CORES: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *CORES.get_or_init(|| std::thread::available_parallelism().map_or(2, |n| n.get()))
}
