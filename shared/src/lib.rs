//! The Strata table format, shared by every daemon: what is in the object store and the rules
//! every reader and writer of it follows, and nothing a single daemon does with it.
//!
//! A dataset is a sequence of immutable manifest versions over immutable data files in an
//! object store (see `docs/architecture.md`, "Table format"). This crate owns:
//! - [`layout`]: where every object lives,
//! - [`manifest`]: the versioned full-snapshot manifest,
//! - [`commit`]: the put-if-absent commit protocol and latest-version discovery,
//! - [`delta`]: the delta file schema (`_op`),
//! - [`merge`]: the one merge rule readers and compaction share, and the reference
//!   materialisation of `state(V)`,
//! - [`keys`]: primary-key helpers (sorting, uniqueness, key ranges, how key values display),
//! - [`parquet_io`]: how data files are encoded, read and put,
//! - [`delta_log`]: the Delta Lake transaction log of a dataset with `delta_mirror`,
//! - [`selftest`]: the startup proof that the store enforces put-if-absent,
//! - [`error`]: the format's errors.
//!
//! What daemons do with the format lives with them: compaction and garbage collection in
//! compactord (`strata_compactord::{compact, collect}`), client delta bodies and untrusted
//! decoding in storaged (`strata_storaged::{delta_input, untrusted}`).

pub mod commit;
pub mod delta;
pub mod delta_log;
pub mod error;
pub mod keys;
pub mod layout;
pub mod manifest;
pub mod merge;
pub mod parquet_io;
pub mod selftest;

pub use error::{Error, Result};

#[cfg(any(test, feature = "testing"))]
pub mod testing;
