//! Imports in progress: one runs at a time (the import memory is one budget, not one per
//! request), and each is listed in the catalog while it runs, with its phase and row counts.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use strata_shared::layout::DatasetName;
use strata_shared::{Error, Result};
use strata_storaged_api::catalog::{ImportInfo, ImportPhase, ImportState};
use tokio::sync::OwnedMutexGuard;

/// The imports of one storaged.
#[derive(Clone, Default)]
pub struct Imports {
    running: Arc<Mutex<BTreeMap<String, Arc<Progress>>>>,
    /// Held by the import that runs; the others wait for it in [`Ticket::turn`].
    turn: Arc<tokio::sync::Mutex<()>>,
}

impl Imports {
    /// Registers an import of `name`. A second import of a name already importing is a
    /// conflict (409): only one of them could commit version 0.
    pub fn start(&self, name: &DatasetName) -> Result<Ticket> {
        let progress = Arc::new(Progress::new());
        let mut running = self.lock();
        if running.contains_key(name.as_str()) {
            return Err(Error::Conflict(format!(
                "dataset {name} is being created by an import that is still running"
            )));
        }
        running.insert(name.to_string(), progress.clone());
        Ok(Ticket {
            imports: self.clone(),
            name: name.to_string(),
            progress,
        })
    }

    /// The imports running or waiting, by name.
    pub fn list(&self) -> Vec<ImportInfo> {
        self.lock()
            .iter()
            .map(|(name, p)| ImportInfo {
                name: name.clone(),
                state: ImportState::Importing,
                phase: p.phase(),
                rows_read: p.rows_read(),
                rows_written: p.rows_written.load(Ordering::Relaxed),
                runs_spilled: p.runs_spilled(),
                started_at: p.started_at,
            })
            .collect()
    }

    fn lock(&self) -> MutexGuard<'_, BTreeMap<String, Arc<Progress>>> {
        // Inserts and removes are single operations: a poisoned map is still consistent.
        self.running.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// An import's place in the list; dropping it (the import ended, or its request went away)
/// removes the entry and tells the import's thread to stop.
pub struct Ticket {
    imports: Imports,
    name: String,
    progress: Arc<Progress>,
}

impl Ticket {
    /// Waits until no other import runs. The turn is held for as long as the returned guard
    /// lives: the import moves it onto its thread, so that a cancelled import keeps the turn
    /// until its thread has actually stopped.
    pub async fn turn(&self) -> Turn {
        let guard = self.imports.turn.clone().lock_owned().await;
        self.progress.set_phase(ImportPhase::Reading);
        Turn(guard)
    }

    pub fn progress(&self) -> &Arc<Progress> {
        &self.progress
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        self.progress.cancel();
        self.imports.lock().remove(&self.name);
    }
}

/// The right to run (see [`Ticket::turn`]).
pub struct Turn(#[allow(dead_code)] OwnedMutexGuard<()>);

/// What an import has done so far; updated by its thread, read by the catalog list.
#[derive(Debug)]
pub struct Progress {
    phase: AtomicU8,
    rows_read: AtomicU64,
    rows_written: AtomicU64,
    runs_spilled: AtomicU64,
    /// Set when the import's request went away: its thread stops at the next batch.
    cancelled: AtomicBool,
    started_at: chrono::DateTime<chrono::Utc>,
}

impl Default for Progress {
    fn default() -> Self {
        Self::new()
    }
}

const PHASES: [ImportPhase; 4] = [
    ImportPhase::Queued,
    ImportPhase::Reading,
    ImportPhase::Sorting,
    ImportPhase::Writing,
];

impl Progress {
    pub fn new() -> Self {
        Self {
            phase: AtomicU8::new(0),
            rows_read: AtomicU64::new(0),
            rows_written: AtomicU64::new(0),
            runs_spilled: AtomicU64::new(0),
            cancelled: AtomicBool::new(false),
            started_at: chrono::Utc::now(),
        }
    }

    pub fn phase(&self) -> ImportPhase {
        let i = usize::from(self.phase.load(Ordering::Relaxed));
        PHASES.get(i).copied().unwrap_or(ImportPhase::Queued)
    }

    pub fn set_phase(&self, phase: ImportPhase) {
        let i = PHASES.iter().position(|p| *p == phase).unwrap_or(0);
        self.phase.store(i as u8, Ordering::Relaxed);
    }

    pub fn read(&self, rows: usize) {
        self.rows_read.fetch_add(rows as u64, Ordering::Relaxed);
    }

    pub fn written(&self, rows: usize) {
        self.rows_written.fetch_add(rows as u64, Ordering::Relaxed);
    }

    pub fn spilled(&self) -> u64 {
        self.runs_spilled.fetch_add(1, Ordering::Relaxed) + 1
    }

    pub fn rows_read(&self) -> u64 {
        self.rows_read.load(Ordering::Relaxed)
    }

    pub fn runs_spilled(&self) -> u64 {
        self.runs_spilled.load(Ordering::Relaxed)
    }

    /// Tells the import's thread to stop (its request went away).
    pub fn cancel(&self) {
        self.cancelled.store(true, Ordering::Relaxed);
    }

    /// Fails once the import's request went away (the import's thread checks between batches).
    pub fn check_cancelled(&self) -> Result<()> {
        if self.cancelled.load(Ordering::Relaxed) {
            return Err(Error::InvalidInput(
                "the import was cancelled: its request went away".into(),
            ));
        }
        Ok(())
    }
}
