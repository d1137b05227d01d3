//! What a request reads, as the cache hands it out: a version's in-memory state, or (cold)
//! its manifest, whose files the cold paths read. Below the paths that answer from it.

use std::sync::Arc;

use strata_shared::manifest::Manifest;

use crate::state::DatasetState;

/// What a request reads: the in-memory state, or (cold path) the manifest's files.
#[derive(Clone)]
pub enum Source {
    Memory(Arc<DatasetState>),
    Cold(Arc<Manifest>),
}

impl Source {
    pub fn version(&self) -> u64 {
        match self {
            Source::Memory(s) => s.version,
            Source::Cold(m) => m.version,
        }
    }
}
