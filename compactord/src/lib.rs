//! compactord: merges deltas into new base files with primary-key dedup and collects garbage.
//!
//! Built so far: the daemon shell (health, version, JSON errors, graceful shutdown). Compaction,
//! its triggers and GC are a later issue.

use std::future::Future;
use std::sync::Arc;

use object_store::ObjectStore;
use strata_daemon::config::Config;
use tokio::net::TcpListener;

#[derive(Debug, thiserror::Error)]
pub enum CompactordError {
    #[error(transparent)]
    NoInternalToken(#[from] strata_storaged_api::NoInternalToken),
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

#[derive(Clone)]
pub struct AppState {
    pub store: Arc<dyn ObjectStore>,
}

pub async fn serve(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), CompactordError> {
    let store = Arc::new(strata_storaged_api::RemoteStore::from_config(&config)?);
    serve_with_store(config, store, listener, shutdown).await
}

pub async fn serve_with_store(
    _config: Config,
    store: Arc<dyn ObjectStore>,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), CompactordError> {
    let router = strata_daemon::serve::finish(
        "compactord",
        axum::Router::new().with_state(AppState { store }),
    );
    tracing::info!(addr = %listener.local_addr()?, "compactord serving");
    strata_daemon::serve::serve(listener, router, shutdown).await?;
    Ok(())
}
