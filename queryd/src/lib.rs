//! queryd: the public HTTP API. It reaches objects only through storaged (a
//! [`RemoteStore`](strata_storaged_api::RemoteStore)) or, in the all-in-one binary, the store
//! storaged opened.
//!
//! Built so far: the daemon shell (health, version, JSON errors, graceful shutdown). The
//! dataset read API, cache and read-time merge are the next issue.

use std::future::Future;
use std::sync::Arc;

use object_store::ObjectStore;
use strata_daemon::config::Config;
use tokio::net::TcpListener;

#[derive(Debug, thiserror::Error)]
pub enum QuerydError {
    #[error(transparent)]
    NoInternalToken(#[from] strata_storaged_api::NoInternalToken),
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// What the handlers share.
#[derive(Clone)]
pub struct AppState {
    pub store: Arc<dyn ObjectStore>,
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
    _config: Config,
    store: Arc<dyn ObjectStore>,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), QuerydError> {
    let router = router(AppState { store });
    tracing::info!(addr = %listener.local_addr()?, "queryd serving");
    strata_daemon::serve::serve(listener, router, shutdown).await?;
    Ok(())
}

pub fn router(state: AppState) -> axum::Router {
    strata_daemon::serve::finish("queryd", axum::Router::new().with_state(state))
}
