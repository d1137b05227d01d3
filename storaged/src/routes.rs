//! storaged's route table.

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::middleware::from_fn_with_state;
use axum::routing::{get, post};
use strata_daemon::auth::{TokenGuard, require_token};
use strata_daemon::config::Config;
use strata_storaged_api::catalog::{DATASETS_ROUTE, UPLOAD_ROUTE};
use strata_storaged_api::deltas::DELTAS_ROUTE;
use strata_storaged_api::objects::{COPY_ROUTE, LIST_ROUTE, OBJECT_ROUTE};

use crate::{AppState, catalog_api, deltas_api, drop, objects};

/// The largest object the internal API accepts in one PUT.
const MAX_OBJECT_BYTES: usize = 4 * 1024 * 1024 * 1024;

pub fn router(state: AppState, config: &Config) -> Router {
    let internal = Router::new()
        .route(
            OBJECT_ROUTE,
            get(objects::get_object)
                .head(objects::head_object)
                .put(objects::put_object)
                .delete(objects::delete_object),
        )
        .route(LIST_ROUTE, get(objects::list))
        .route(COPY_ROUTE, post(objects::copy))
        .layer(DefaultBodyLimit::max(MAX_OBJECT_BYTES))
        // Added after the layer above, so only the delta route has the delta limit.
        .route(
            DELTAS_ROUTE,
            post(deltas_api::post_deltas)
                .layer(DefaultBodyLimit::max(config.storaged.max_delta_bytes)),
        )
        .route_layer(from_fn_with_state(
            TokenGuard::internal(config.auth.internal_token.as_deref()),
            require_token,
        ));

    let admin = Router::new()
        .route(
            DATASETS_ROUTE,
            get(catalog_api::list_datasets).post(catalog_api::create_dataset),
        )
        .route(
            &format!("{DATASETS_ROUTE}/{{name}}"),
            get(catalog_api::dataset).delete(drop::drop_dataset),
        )
        .route(
            UPLOAD_ROUTE,
            // The body is streamed to a spool file, which enforces
            // `storaged.max_upload_bytes` as it writes (413); no limit of axum's applies.
            post(catalog_api::upload_dataset).layer(DefaultBodyLimit::disable()),
        )
        .route(
            &format!("{DATASETS_ROUTE}/{{name}}/manifests"),
            get(catalog_api::manifest_versions),
        )
        .route(
            strata_storaged_api::runs::RUNS_ROUTE,
            get(catalog_api::runs),
        )
        .route(
            &format!("{DATASETS_ROUTE}/{{name}}/manifests/{{version}}"),
            get(catalog_api::manifest),
        )
        .route_layer(from_fn_with_state(
            TokenGuard::admin(config.auth.admin_token.as_deref()),
            require_token,
        ));

    let metrics = state.metrics.clone();
    strata_daemon::metrics::instrument(
        strata_daemon::serve::finish("storaged", internal.merge(admin).with_state(state)),
        metrics.http.clone(),
        move || metrics.render(),
    )
}
