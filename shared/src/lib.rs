//! The Strata table format, shared by every daemon.
//!
//! A dataset is a sequence of immutable manifest versions over immutable data files in an
//! object store (see `ARCHITECTURE.md` §2). This crate owns:
//! - [`layout`]: where every object lives,
//! - [`manifest`]: the versioned full-snapshot manifest,
//! - [`commit`]: the put-if-absent commit protocol and latest-version discovery,
//! - [`compact`]: compaction, a streaming sorted merge of deltas into new base files,
//! - [`delta`]: the delta file schema (`_op`),
//! - [`delta_input`]: client delta bodies (JSON, Arrow IPC, Parquet) validated into delta batches,
//! - [`merge`]: the one merge rule readers and compaction share, and the reference
//!   materialisation of `state(V)`,
//! - [`selftest`]: the startup proof that the store enforces put-if-absent,
//! - [`keys`]: primary-key helpers (sorting, uniqueness, key ranges),
//! - [`untrusted`]: decoding client bytes without trusting their declared lengths or panics.

pub mod commit;
pub mod compact;
pub mod delta;
pub mod delta_input;
pub mod error;
pub mod gc;
mod json_rows;
pub mod json_text;
pub mod keys;
pub mod layout;
pub mod manifest;
pub mod merge;
pub mod parquet_io;
mod parquet_pages;
pub mod selftest;
pub mod untrusted;

pub use error::{Error, Result};

#[cfg(any(test, feature = "testing"))]
pub mod testing;
