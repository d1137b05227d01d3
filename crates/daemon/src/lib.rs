//! Plumbing every Strata daemon shares: the cluster config, tracing, token auth, the one
//! mapping from error kinds to HTTP statuses and the JSON error envelope, and serving a router
//! on a bound listener until shutdown.

pub mod auth;
pub mod client;
pub mod config;
pub mod error;
pub mod serve;
pub mod telemetry;

pub use error::{ApiError, ApiJson, ErrorCode};
