//! compactord: compacts datasets (deltas merged into new base files with primary-key dedup),
//! on demand, on cron schedules and when thresholds are crossed; keeps a bounded history of
//! runs; tells queryd about every compaction it commits; collects garbage.
//!
//! - [`compact`]: one compaction of one dataset, the streaming sorted merge and its commit;
//! - [`service`]: runs compactions, one at a time per dataset in this process, and records them;
//! - [`triggers`]: the cron schedules and the threshold checker;
//! - [`api`] / [`routes`]: the HTTP surface (wire types in `strata_compactord_api`);
//! - [`history`]: the run history (queryd is notified through
//!   `strata_queryd_api::internal::Notifier`, as storaged does);
//! - [`collect`]: what garbage collection deletes in one dataset (manifests, files, staging);
//! - [`gc`]: garbage collection runs over every dataset, on their schedule and on demand;
//! - [`mirror`]: the Delta Lake log of datasets with `delta_mirror`, written after compactions.
//!
//! Correctness never depends on this process: two compactors (two processes, or a zombie)
//! are fenced by the compactor epoch in the manifest, and the per-dataset lock here only
//! avoids wasted work.

pub mod api;
pub mod collect;
pub mod compact;
pub mod gc;
pub mod history;
pub mod metrics;
pub mod mirror;
pub mod routes;
pub mod service;
pub mod triggers;

use std::future::Future;
use std::sync::Arc;

use object_store::ObjectStore;
use strata_daemon::config::Config;
use tokio::net::TcpListener;

pub use service::Compactor;

#[derive(Debug, thiserror::Error)]
pub enum CompactordError {
    #[error(transparent)]
    NoInternalToken(#[from] strata_storaged_api::NoInternalToken),
    #[error("invalid cron schedule {schedule:?} of {owner}: {source}")]
    Schedule {
        schedule: String,
        owner: String,
        #[source]
        source: tokio_cron_scheduler::JobSchedulerError,
    },
    #[error("cron scheduler: {0}")]
    Scheduler(#[source] tokio_cron_scheduler::JobSchedulerError),
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// What the handlers share.
#[derive(Clone)]
pub struct AppState {
    pub store: Arc<dyn ObjectStore>,
    pub compactor: Compactor,
}

/// Reaches objects through storaged's internal object API and serves on `listener` until
/// `shutdown`.
pub async fn serve(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), CompactordError> {
    let store = Arc::new(strata_storaged_api::RemoteStore::from_config(&config)?);
    serve_with_store(config, store, listener, shutdown).await
}

/// As [`serve`], on a store the caller opened (the all-in-one binary shares one store).
pub async fn serve_with_store(
    config: Config,
    store: Arc<dyn ObjectStore>,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), CompactordError> {
    let compactor = Compactor::from_config(&config, store.clone());
    let triggers = triggers::Triggers::start(&config, compactor.clone()).await?;
    let router = routes::router(AppState { store, compactor }, &config);
    tracing::info!(addr = %listener.local_addr()?, "compactord serving");
    let served = strata_daemon::serve::serve(listener, router, shutdown).await;
    triggers.stop().await;
    served?;
    Ok(())
}
