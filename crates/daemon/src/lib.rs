//! Plumbing every Strata daemon shares: the cluster config, tracing, token auth, the one
//! mapping from error kinds to HTTP statuses and the JSON error envelope, the check on the text
//! of JSON bodies ([`json_text`]), and serving a router on a bound listener until
//! shutdown.

pub mod auth;
pub mod client;
pub mod config;
pub mod drain;
pub mod error;
pub mod json_text;
pub mod metrics;
pub mod serve;
pub mod telemetry;

pub use error::{ApiError, ApiJson, ErrorCode};
