//! Serving a router on an already-bound listener until a shutdown future resolves (the
//! mini-redis shape: tests bind port 0 and pass the socket in).

use std::future::Future;

use axum::Router;
use axum::routing::get;
use serde_json::json;
use tokio::net::TcpListener;

use crate::error::{json_errors, route_not_found};

/// Adds what every daemon's router has: health and version routes, JSON 404/405 answers.
pub fn finish(service: &'static str, router: Router) -> Router {
    let health = move || async move { axum::Json(json!({"status": "ok", "service": service})) };
    router
        .route("/health", get(health))
        .route("/healthz", get(health))
        .route("/readyz", get(health))
        .route(
            "/version",
            get(move || async move {
                axum::Json(json!({"service": service, "version": env!("CARGO_PKG_VERSION")}))
            }),
        )
        .fallback(route_not_found)
        .layer(axum::middleware::from_fn(json_errors))
}

/// Serves until `shutdown` resolves, then drains in-flight requests.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router)
        .with_graceful_shutdown(shutdown)
        .await
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = terminate => {},
    }
    tracing::info!("shutdown signal received");
}
