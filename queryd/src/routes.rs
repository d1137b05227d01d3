//! queryd's route table.

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderName, HeaderValue};
use axum::middleware::from_fn_with_state;
use axum::middleware::map_response;
use axum::response::Response;
use axum::routing::{delete, get, post};
use strata_daemon::auth::{TokenGuard, require_token};
use strata_daemon::config::Config;
use strata_queryd_api::INSTANCE_HEADER;
use strata_queryd_api::internal::NOTIFY_ROUTE;
use tower_http::compression::CompressionLayer;
use tower_http::compression::predicate::{DefaultPredicate, NotForContentType, Predicate};

use crate::AppState;
use crate::api::{cache, datasets, deltas, export, openapi, query, versions};

pub fn router(state: AppState, config: &Config) -> Router {
    let public = Router::new()
        .route("/api/v1/datasets", get(datasets::list))
        .route("/api/v1/datasets/{name}/schema", get(datasets::schema))
        .route("/api/v1/datasets/{name}/status", get(datasets::status))
        .route("/api/v1/datasets/{name}/query", post(query::query))
        .route("/api/v1/datasets/{name}/query/stream", post(query::stream))
        .route("/api/v1/datasets/{name}/count", post(query::count))
        .route(
            "/api/v1/datasets/{name}/export",
            get(export::export).post(export::export_query),
        )
        .route("/api/v1/datasets/{name}/versions", get(versions::versions))
        .route("/api/v1/datasets/{name}/changes", get(versions::changes))
        .route("/api/v1/cache/stats", get(cache::stats))
        .route("/readyz", get(datasets::ready))
        .route("/metrics", get(metrics_text))
        // The OpenAPI document (`/openapi.json`) and its Swagger UI (`/docs`).
        .merge(openapi::router());

    let admin = Router::new()
        .route("/api/v1/datasets", post(datasets::create))
        .route("/api/v1/datasets/{name}", delete(datasets::drop))
        .route("/api/v1/datasets/{name}/reload", post(cache::reload))
        .route("/api/v1/cache/pin", post(cache::pin))
        .route("/api/v1/cache/unpin", post(cache::unpin))
        .route("/api/v1/cache/evict", post(cache::evict))
        .route("/api/v1/datasets/{name}/compact", post(deltas::compact))
        .route(
            "/api/v1/datasets/{name}/compactions",
            get(deltas::compactions),
        )
        .route("/api/v1/runs", get(deltas::runs))
        .route_layer(from_fn_with_state(
            TokenGuard::admin(config.auth.admin_token.as_deref()),
            require_token,
        ));

    // Delta bodies have their own (larger) limit; storaged checks it again.
    let write = Router::new()
        .route(
            "/api/v1/datasets/{name}/deltas",
            post(deltas::post).layer(DefaultBodyLimit::max(config.queryd.max_delta_bytes)),
        )
        .route_layer(from_fn_with_state(
            TokenGuard::write(
                config.auth.admin_token.as_deref(),
                config.auth.write_token.as_deref(),
            ),
            require_token,
        ));

    let internal = Router::new()
        .route(NOTIFY_ROUTE, post(deltas::notify))
        .route_layer(from_fn_with_state(
            TokenGuard::internal(config.auth.internal_token.as_deref()),
            require_token,
        ));

    // JSON is compressed when the client asks (gzip, br, zstd); Arrow never is: clients
    // read it as a raw IPC stream.
    let compression = CompressionLayer::new().compress_when(DefaultPredicate::new().and(
        NotForContentType::const_new(strata_queryd_api::ARROW_STREAM),
    ));
    let http_metrics = state.metrics.http.clone();
    let instance = HeaderValue::from_str(&state.instance)
        .unwrap_or_else(|_| HeaderValue::from_static("queryd"));
    let routes = public
        .merge(admin)
        .merge(internal)
        .layer(DefaultBodyLimit::max(config.queryd.max_body_bytes))
        .merge(write)
        .with_state(state);
    // datap-rs's `/version` names its engine too.
    let version = serde_json::json!({"backend": "datafusion"});
    strata_daemon::serve::finish_with("queryd", version, routes)
        .layer(compression)
        .route_layer(from_fn_with_state(
            http_metrics,
            strata_daemon::metrics::track,
        ))
        // Every answer names its replica: caches (pin, evict, stats) are per replica.
        .layer(map_response(move |mut response: Response| {
            let instance = instance.clone();
            async move {
                response
                    .headers_mut()
                    .insert(HeaderName::from_static(INSTANCE_HEADER), instance);
                response
            }
        }))
}

async fn metrics_text(
    axum::extract::State(app): axum::extract::State<AppState>,
) -> impl axum::response::IntoResponse {
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4",
        )],
        app.metrics.render(app.service.cache.stats().capacity_bytes),
    )
}
