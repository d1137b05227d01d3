//! compactord's route table: the admin routes and their internal twins (which queryd
//! forwards to), each behind its token.

use axum::Router;
use axum::middleware::from_fn_with_state;
use axum::routing::{get, post};
use strata_compactord_api::{
    COMPACT_ROUTE, GC_ROUTE, INTERNAL_COMPACT_ROUTE, INTERNAL_GC_ROUTE, INTERNAL_RUNS_ROUTE,
    RUNS_ROUTE,
};
use strata_daemon::auth::{TokenGuard, require_token};
use strata_daemon::config::Config;

use crate::{AppState, api};

pub fn router(state: AppState, config: &Config) -> Router {
    let admin = Router::new()
        .route(COMPACT_ROUTE, post(api::compact))
        .route(RUNS_ROUTE, get(api::runs))
        .route(GC_ROUTE, post(api::gc))
        .route_layer(from_fn_with_state(
            TokenGuard::admin(config.auth.admin_token.as_deref()),
            require_token,
        ));
    let internal = Router::new()
        .route(INTERNAL_COMPACT_ROUTE, post(api::compact))
        .route(INTERNAL_RUNS_ROUTE, get(api::runs))
        .route(INTERNAL_GC_ROUTE, post(api::gc))
        .route_layer(from_fn_with_state(
            TokenGuard::internal(config.auth.internal_token.as_deref()),
            require_token,
        ));
    let metrics = state.compactor.metrics.clone();
    strata_daemon::metrics::instrument(
        strata_daemon::serve::finish("compactord", admin.merge(internal).with_state(state)),
        metrics.http.clone(),
        move || metrics.render(),
    )
}
