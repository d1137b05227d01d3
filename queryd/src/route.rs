//! The one decision, per request, of which path answers it: made once from the plan and
//! the source the cache gives ([`Route::decide`]), in one `match`; every operation (a page,
//! a count, a stream) then takes its route's arm. The routes are the paths the engine
//! conformance suite (`tests/it/query_conformance.rs`) and the differential test run:
//!
//! | route | suite path | what answers |
//! |---|---|---|
//! | [`Route::Index`] | `hot` | the state's indexes find the rows ([`crate::fast`]) |
//! | [`Route::Groups`] | `hot` | a group-by on one indexed column, off its index, or on dictionary-encoded columns, by their keys ([`crate::group`]); `having` is the engine's |
//! | [`Route::Ordered`] | `hot` | the indexes (or every row) find the rows, a partial sort orders the page ([`crate::ordered`]) |
//! | [`Route::ColdKey`] | `cold` | a primary-key `eq` lookup read from the files ([`crate::cold`]) |
//! | [`Route::ColdTopK`] | `cold` | a top-K page of few rows: the engine ranks the order's and the key's columns, the rows are read by key ([`crate::cold`]); its counts and streams are the engine's |
//! | [`Route::ColdCount`] | `cold` | rows under filters arrow's kernels evaluate: a count is Strata's scan of the filter columns ([`crate::cold::count`]); pages and streams are the engine's |
//! | [`Route::Engine`] | `general`, `cold-general`, and whatever the others do not answer | the [`crate::engine::Engine`] over the dataset |
//!
//! Every route answers the same rows in the same order (the engine contract's order rules).

use std::sync::Arc;

use strata_shared::manifest::Manifest;

use crate::fast::Probe;
use crate::plan::Plan;
use crate::source::Source;
use crate::state::DatasetState;
use crate::{cold, group, ordered};

/// How one request is answered.
pub enum Route {
    /// In memory: the indexes find the rows.
    Index {
        state: Arc<DatasetState>,
        probe: Probe,
    },
    /// In memory: the indexes (or every row) find the rows; a partial sort orders the page.
    Ordered {
        state: Arc<DatasetState>,
        probe: Probe,
    },
    /// In memory: the groups of one indexed column, read off its index, or of dictionary
    /// columns, by their keys.
    Groups { state: Arc<DatasetState> },
    /// Not in memory: a primary-key `eq` lookup, read straight from the files.
    ColdKey { manifest: Arc<Manifest> },
    /// Not in memory: a top-K page of few rows, materialized late. The engine ranks the
    /// `narrow` columns (the order's and the key's) over `source`, then the page's rows are
    /// read by key ([`cold::rows_by_key`]).
    ColdTopK { source: Source, narrow: Vec<usize> },
    /// Not in memory: rows under filters [`cold::count`] evaluates. A count is its scan of
    /// the filter columns; pages and streams are the engine's over `source`.
    ColdCount { source: Source },
    /// The engine over the dataset (in memory or its files).
    Engine { source: Source },
}

/// The routes' names, as the `strata_query_routes_total` metric labels them, at
/// [`Route::index`].
pub const ROUTE_NAMES: [&str; 7] = [
    "index",
    "ordered",
    "groups",
    "cold_key",
    "cold_top_k",
    "cold_count",
    "engine",
];

impl Route {
    /// The route of `plan` over `source`; with `hot_paths` off (a setting, and the suite's
    /// `general` paths), always the engine.
    pub fn decide(source: Source, plan: &Plan, hot_paths: bool) -> Self {
        match source {
            source if !hot_paths => Route::Engine { source },
            Source::Memory(state) => match Probe::of(&state, plan) {
                Some(probe) => Route::Index { state, probe },
                None if ordered::applies(&state, plan) => match Probe::of_filters(&state, plan) {
                    Some(probe) => Route::Ordered { state, probe },
                    None => Route::Engine {
                        source: Source::Memory(state),
                    },
                },
                None if group::applies(&state, plan) => Route::Groups { state },
                None => Route::Engine {
                    source: Source::Memory(state),
                },
            },
            Source::Cold(manifest) if cold::applies(&manifest, plan) => Route::ColdKey { manifest },
            Source::Cold(manifest) => match cold::top_k_columns(&manifest, plan) {
                Some(narrow) => Route::ColdTopK {
                    source: Source::Cold(manifest),
                    narrow,
                },
                None if cold::count::applies(&manifest, plan) => Route::ColdCount {
                    source: Source::Cold(manifest),
                },
                None => Route::Engine {
                    source: Source::Cold(manifest),
                },
            },
        }
    }

    /// This route's place in [`ROUTE_NAMES`].
    pub fn index(&self) -> usize {
        match self {
            Route::Index { .. } => 0,
            Route::Ordered { .. } => 1,
            Route::Groups { .. } => 2,
            Route::ColdKey { .. } => 3,
            Route::ColdTopK { .. } => 4,
            Route::ColdCount { .. } => 5,
            Route::Engine { .. } => 6,
        }
    }

    /// Whether the answer costs so little that it is made on the HTTP worker that parsed
    /// the request (the hop to the query runtime would cost more than the work).
    pub fn is_inline(&self, plan: &Plan) -> bool {
        matches!(self, Route::Index { probe, .. } if probe.is_bounded(plan))
    }
}
