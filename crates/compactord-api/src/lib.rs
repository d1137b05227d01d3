//! compactord's wire contract: routes, request and response types, and a typed client, so
//! queryd (which forwards `POST /api/v1/datasets/{name}/compact`) needs no dependency on
//! compactord itself.
//!
//! | method | route | token | answer |
//! |---|---|---|---|
//! | POST | `/api/v1/datasets/{name}/compact` | `X-Admin-Token` | the finished [`CompactionRun`] |
//! | POST | `/internal/v1/datasets/{name}/compact` | `X-Internal-Token` | the same |
//! | GET | `/api/v1/compactions[?dataset=name]` | `X-Admin-Token` | [`RunsResponse`], newest first |
//! | GET | `/internal/v1/compactions[?dataset=name]` | `X-Internal-Token` | the same |
//! | POST | `/api/v1/gc` | `X-Admin-Token` | [`GcResponse`]: garbage collection, now |
//! | POST | `/internal/v1/gc` | `X-Internal-Token` | the same |
//!
//! A compaction request answers once the run finished, whatever its outcome (200 with
//! `outcome` `committed`, `noop`, `fenced` or `failed`); a request that starts no run is an
//! error envelope: 400 invalid name, 401/403 token, 404 unknown dataset.

mod client;
pub mod runs;

pub use client::CompactordClient;
pub use runs::{
    COMPACT_ROUTE, CompactionRun, GC_ROUTE, GcDataset, GcResponse, INTERNAL_COMPACT_ROUTE,
    INTERNAL_GC_ROUTE, INTERNAL_RUNS_ROUTE, RUNS_ROUTE, RunOutcome, RunsQuery, RunsResponse,
    Trigger,
};

pub use strata_daemon::client::ClientError;
