//! storaged: owns the backing object store, the dataset catalog and every manifest commit for
//! ingest (delta writes, group-committed per dataset: [`ingest`]). The other daemons reach
//! objects only through its internal object API ([`strata_storaged_api::RemoteStore`]), so
//! only storaged holds store credentials.
//!
//! Start-up: open the store, prove it enforces put-if-absent (writers refuse to run
//! otherwise), create the datasets the config declares that are missing, then serve.

mod budget;
mod catalog;
mod catalog_api;
pub mod delta_input;
mod deltas_api;
mod drop;
mod error;
mod import;
pub mod ingest;
pub mod metrics;
mod objects;
mod routes;
pub mod runs;
pub mod store;
mod untrusted;

use std::future::Future;
use std::sync::Arc;

use object_store::ObjectStore;
use strata_daemon::config::Config;
use tokio::net::TcpListener;

pub use catalog::Catalog;
pub use error::StoragedError;
pub use ingest::Ingest;
pub use routes::router;

/// What the handlers share.
#[derive(Clone)]
pub struct AppState {
    pub store: Arc<dyn ObjectStore>,
    pub catalog: Catalog,
    pub ingest: Ingest,
    pub metrics: Arc<metrics::Metrics>,
    pub runs: runs::RunLog,
    /// Tells the queryds about versions storaged committed.
    pub notifier: strata_queryd_api::internal::Notifier,
}

/// Opens the store named by the config and serves on `listener` until `shutdown`.
pub async fn serve(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), StoragedError> {
    let store = store::open(&config)?;
    serve_with_store(config, store, listener, shutdown).await
}

/// As [`serve`], on a store the caller opened (the all-in-one binary shares one store).
pub async fn serve_with_store(
    config: Config,
    store: Arc<dyn ObjectStore>,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), StoragedError> {
    let state = prepare(&config, store).await?;
    let router = router(state, &config);
    tracing::info!(addr = %listener.local_addr()?, store = %config.store.url, "storaged serving");
    strata_daemon::serve::serve(listener, router, shutdown).await?;
    Ok(())
}

/// How long start-up waits for the store to answer its self-test: in a deployment the store
/// may start after storaged (compose starts them together).
const STORE_WAIT: std::time::Duration = std::time::Duration::from_secs(120);

/// The put-if-absent self-test, retried while the store does not answer (or answers with an
/// error) until [`STORE_WAIT`] has passed. A store that answers but does not enforce
/// put-if-absent fails at once: waiting cannot fix it.
async fn verify_store(store: &Arc<dyn ObjectStore>) -> Result<(), StoragedError> {
    let deadline = tokio::time::Instant::now() + STORE_WAIT;
    let mut pause = std::time::Duration::from_millis(250);
    loop {
        match strata_shared::selftest::verify_put_if_absent(store.clone()).await {
            Ok(()) => return Ok(()),
            Err(e @ strata_shared::Error::PutIfAbsentUnsupported(_)) => return Err(e.into()),
            Err(e) if tokio::time::Instant::now() + pause < deadline => {
                tracing::warn!(error = %e, retry_in_ms = pause.as_millis() as u64,
                    "the store's self-test failed; retrying");
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(std::time::Duration::from_secs(5));
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// The start-up checks and catalog bootstrap, without serving.
pub async fn prepare(
    config: &Config,
    store: Arc<dyn ObjectStore>,
) -> Result<AppState, StoragedError> {
    verify_store(&store).await?;
    tracing::info!("store enforces put-if-absent");
    let budget = budget::DecodeBudget::new(config.storaged.decode_budget_bytes);
    let catalog = Catalog::new(store.clone(), config.clone(), budget.clone());
    catalog.create_declared().await?;
    let metrics = Arc::new(metrics::Metrics::default());
    let runs = runs::RunLog::default();
    let notifier = strata_queryd_api::internal::Notifier::from_config(config);
    let ingest = Ingest::new(
        store.clone(),
        notifier.clone(),
        budget,
        metrics.clone(),
        runs.clone(),
    );
    Ok(AppState {
        store,
        catalog,
        ingest,
        metrics,
        runs,
        notifier,
    })
}
