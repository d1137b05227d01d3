//! End-to-end tests: daemons on real sockets on 127.0.0.1, in-process and as the real `strata`
//! binary, against every kind of store (memory, local directory, SeaweedFS S3).

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test here

mod binary;
mod catalog;
mod cli;
mod common;
mod compaction;
mod compaction_crash;
mod compose;
mod create_api;
mod delta_mirror;
mod deltas_cluster;
mod deltas_crash;
mod deltas_model;
mod deltas_storaged;
mod differential;
mod drop;
mod export;
mod hostile;
mod import_scale;
mod lost_response;
mod metrics;
mod object_api;
mod openapi;
mod query_conformance;
mod queryd_api;
mod queryd_binary;
mod queryd_rebuild;
mod queryd_restart;
mod regressions;
mod sources;
mod versions;
