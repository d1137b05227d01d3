//! The commit protocol and latest-version discovery (`docs/architecture.md`, "Table format").
//!
//! Every writer (ingest, compaction, epoch bumps) commits through [`Table::commit`]:
//! 1. load the latest manifest; if it already records the transaction id, return that version
//!    (an earlier attempt landed: idempotency and lost-response resolution in one rule);
//! 2. apply the mutation to a draft of version N+1;
//! 3. put-if-absent `{N+1:020}.json`; the store's put-if-absent is the only mutual exclusion;
//! 4. on `AlreadyExists` or an unknown outcome (timeout, 5xx) back off and go to 1.
//!
//! A write is acknowledged only when step 3 succeeded or step 1 found its id, so an
//! acknowledged write is in the manifest. Nothing here depends on a process-local lock.
//!
//! Latest-version discovery never trusts listing order: it starts from the advisory
//! `_latest` hint (or, without one, the largest version a listing shows) and then probes
//! `HEAD {v+1}`, `{v+2}`, `{v+4}`, … followed by a binary search. That is valid because the
//! versions that exist always form a contiguous range `[oldest retained, latest]`: commits
//! only ever add `latest + 1`, and manifest expiry removes the oldest first.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::TryStreamExt;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};
use rand::Rng;
use serde::{Deserialize, Serialize};

use crate::layout::{self, DatasetName};
use crate::manifest::{Manifest, Operation, Txn};
use crate::{Error, Result};

/// How hard a committer retries before it reports contention.
#[derive(Clone, Debug)]
pub struct RetryPolicy {
    pub max_attempts: u32,
    pub base_delay: Duration,
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 30,
            base_delay: Duration::from_millis(5),
            max_delay: Duration::from_millis(500),
        }
    }
}

impl RetryPolicy {
    /// Exponential backoff with full jitter, so racing committers spread out.
    fn delay(&self, attempt: u32) -> Duration {
        let exp = self
            .base_delay
            .saturating_mul(1u32 << attempt.min(16))
            .min(self.max_delay);
        let jitter = rand::rng().random_range(0..=exp.as_micros() as u64);
        Duration::from_micros(jitter)
    }
}

/// The result of a commit.
#[derive(Clone, Debug)]
pub struct CommitOutcome {
    /// The manifest that holds the transaction.
    pub manifest: Manifest,
    /// False when the transaction had already been committed by an earlier attempt or request.
    pub newly_committed: bool,
}

#[derive(Serialize, Deserialize)]
struct LatestHint {
    version: u64,
}

/// One dataset's manifests in one object store.
#[derive(Clone, Debug)]
pub struct Table {
    store: Arc<dyn ObjectStore>,
    name: DatasetName,
    retry: RetryPolicy,
}

impl Table {
    pub fn new(store: Arc<dyn ObjectStore>, name: DatasetName) -> Self {
        Self {
            store,
            name,
            retry: RetryPolicy::default(),
        }
    }

    pub fn with_retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    pub fn name(&self) -> &DatasetName {
        &self.name
    }

    pub fn store(&self) -> &Arc<dyn ObjectStore> {
        &self.store
    }

    /// Writes the first version of a new dataset: version 0, or, where an earlier dataset of
    /// the same name was dropped, the version after its tombstone (with
    /// [`Manifest::incarnation`] set to it and the tombstone's compactor epoch, so versions
    /// and epochs never go back for a follower). Fails with [`Error::DatasetExists`] if a live
    /// dataset holds the name. `manifest` is a version-0 draft ([`Manifest::initial`]).
    pub async fn create(&self, manifest: &Manifest) -> Result<Manifest> {
        debug_assert_eq!(manifest.version, 0);
        for _ in 0..self.retry.max_attempts {
            // The head decides the version: after a tombstone, version 0 may have expired, and
            // writing it again would break the contiguous range discovery relies on.
            let mut next = manifest.clone();
            match self.load_head().await {
                Err(Error::DatasetNotFound(_)) => {}
                Ok(head) if head.is_dropped() => {
                    next.version = head.version + 1;
                    next.incarnation = next.version;
                    next.compactor_epoch = head.compactor_epoch;
                    for txn in &mut next.recent_txns {
                        txn.version = next.version;
                    }
                }
                Ok(_) => return Err(Error::DatasetExists(self.name.clone())),
                Err(e) => return Err(e),
            }
            match self.put_manifest(&next).await? {
                Ok(()) => return Ok(next),
                // Another creation (or commit) took the version: look at the head again.
                Err(object_store::Error::AlreadyExists { .. }) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Err(Error::CommitContention {
            dataset: self.name.clone(),
            attempts: self.retry.max_attempts,
            last: "every version tried was taken by another commit".into(),
        })
    }

    /// Puts `manifest` as its version, if no manifest holds that version yet (the one
    /// mutual exclusion of every commit), then moves the `_latest` hint. The outer error is
    /// the manifest's encoding; the inner one the store's answer (`AlreadyExists`: taken).
    async fn put_manifest(
        &self,
        manifest: &Manifest,
    ) -> Result<std::result::Result<(), object_store::Error>> {
        let path = layout::manifest_path(&self.name, manifest.version);
        let body = PutPayload::from(manifest.to_json_bytes()?);
        let put = self
            .store
            .put_opts(&path, body, PutOptions::from(PutMode::Create))
            .await;
        if put.is_ok() {
            self.write_hint(manifest.version).await;
        }
        Ok(put.map(|_| ()))
    }

    /// Drops the dataset: commits an [`Operation::Drop`] tombstone that references no file
    /// (garbage collection deletes the files once no retained manifest holds them).
    /// [`Error::DatasetNotFound`] if it is absent or dropped already.
    pub async fn drop_dataset(&self, txn_id: &str) -> Result<Manifest> {
        let outcome = self
            .commit(txn_id, Operation::Drop, |draft| {
                draft.base_files.clear();
                draft.deltas.clear();
                Ok(())
            })
            .await?;
        Ok(outcome.manifest)
    }

    pub async fn read_manifest(&self, version: u64) -> Result<Manifest> {
        let path = layout::manifest_path(&self.name, version);
        match self.store.get(&path).await {
            Ok(got) => {
                let bytes = got.bytes().await?;
                Manifest::from_json_bytes(path.as_ref(), &bytes)
            }
            Err(object_store::Error::NotFound { .. }) => Err(Error::ManifestNotFound {
                dataset: self.name.clone(),
                version,
            }),
            Err(e) => Err(e.into()),
        }
    }

    async fn version_exists(&self, version: u64) -> Result<bool> {
        match self
            .store
            .head(&layout::manifest_path(&self.name, version))
            .await
        {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    async fn read_hint(&self) -> Option<u64> {
        let got = self
            .store
            .get(&layout::latest_hint_path(&self.name))
            .await
            .ok()?;
        let bytes = got.bytes().await.ok()?;
        serde_json::from_slice::<LatestHint>(&bytes)
            .ok()
            .map(|h| h.version)
    }

    /// Best effort: the hint only shortens discovery, so a failure is logged and ignored.
    async fn write_hint(&self, version: u64) {
        let Ok(body) = serde_json::to_vec(&LatestHint { version }) else {
            return;
        };
        let path = layout::latest_hint_path(&self.name);
        if let Err(e) = self.store.put(&path, Bytes::from(body).into()).await {
            tracing::debug!(dataset = %self.name, version, error = %e, "could not write _latest hint");
        }
    }

    /// Every version whose manifest is in the store, ascending: the retained versions.
    /// Garbage collection expires only a prefix, so they are one contiguous range.
    pub async fn listed_versions(&self) -> Result<Vec<u64>> {
        let mut versions: Vec<u64> = self
            .store
            .list(Some(&layout::manifest_dir(&self.name)))
            .map_ok(|m| m.location)
            .try_collect::<Vec<_>>()
            .await?
            .iter()
            .filter_map(|p| p.filename().and_then(layout::parse_manifest_file_name))
            .collect();
        versions.sort_unstable();
        Ok(versions)
    }

    /// The largest version present in a listing: only a starting point for probing.
    async fn listed_max_version(&self) -> Result<Option<u64>> {
        let listing = self
            .store
            .list_with_delimiter(Some(&layout::manifest_dir(&self.name)))
            .await?;
        Ok(listing
            .objects
            .iter()
            .filter_map(|o| o.location.filename())
            .filter_map(layout::parse_manifest_file_name)
            .max())
    }

    /// The newest committed version. [`Error::DatasetNotFound`] if the dataset has none.
    pub async fn latest_version(&self) -> Result<u64> {
        let start = match self.read_hint().await {
            Some(v) if self.version_exists(v).await? => v,
            _ => match self.listed_max_version().await? {
                Some(v) if self.version_exists(v).await? => v,
                _ => return Err(Error::DatasetNotFound(self.name.clone())),
            },
        };
        // Gallop: lo exists; find a hi that does not.
        let mut lo = start;
        let mut step = 1u64;
        let mut hi = loop {
            let probe = lo.saturating_add(step);
            if probe == lo || !self.version_exists(probe).await? {
                break probe;
            }
            lo = probe;
            step = step.saturating_mul(2);
        };
        while hi - lo > 1 {
            let mid = lo + (hi - lo) / 2;
            if self.version_exists(mid).await? {
                lo = mid;
            } else {
                hi = mid;
            }
        }
        Ok(lo)
    }

    /// The latest manifest of the live dataset: [`Error::DatasetNotFound`] if it has none, or
    /// if the latest is a drop's tombstone. Every reader and committer starts here, so a
    /// dropped dataset takes no more writes.
    pub async fn load_latest(&self) -> Result<Manifest> {
        let head = self.load_head().await?;
        if head.is_dropped() {
            return Err(Error::DatasetNotFound(self.name.clone()));
        }
        Ok(head)
    }

    /// The latest manifest, a drop's tombstone included: for garbage collection and creation.
    pub async fn load_head(&self) -> Result<Manifest> {
        // A version found by discovery can vanish only through manifest expiry racing with a
        // very stale reader; retry discovery once in that case.
        for _ in 0..2 {
            let version = self.latest_version().await?;
            match self.read_manifest(version).await {
                Err(Error::ManifestNotFound { .. }) => continue,
                other => return other,
            }
        }
        Err(Error::DatasetNotFound(self.name.clone()))
    }

    /// Commits a new version produced by `mutate` from a draft of the next version (see the
    /// module docs). `mutate` may run several times (once per attempt) and must be a pure
    /// function of the draft it is given; an `Err` from it aborts the commit with nothing written.
    pub async fn commit<F>(
        &self,
        txn_id: &str,
        operation: Operation,
        mutate: F,
    ) -> Result<CommitOutcome>
    where
        F: FnMut(&mut Manifest) -> Result<()>,
    {
        self.commit_txns(std::slice::from_ref(&Txn::id(txn_id)), operation, mutate)
            .await
    }

    /// As [`Table::commit`], for a group of transactions that land together in one version
    /// (every id is recorded with that version, with its row counts).
    ///
    /// Resolution by id (step 1) treats the group as one transaction: if every id is already
    /// recorded, the group landed (an earlier attempt, or each member separately) and the
    /// outcome is the manifest of the newest of those versions, which records them all. If only
    /// some are recorded, they were committed by other requests, so committing the group would
    /// apply them twice: that is [`Error::TxnsPartlyCommitted`], and the caller regroups
    /// without them.
    pub async fn commit_txns<F>(
        &self,
        txns: &[Txn],
        operation: Operation,
        mutate: F,
    ) -> Result<CommitOutcome>
    where
        F: FnMut(&mut Manifest) -> Result<()>,
    {
        self.commit_txns_from(None, txns, operation, mutate).await
    }

    /// As [`Table::commit_txns`], with a first attempt on `start`, a manifest the caller has
    /// just read or committed, which saves the discovery of the latest version. A stale
    /// `start` costs one failed put-if-absent (its successor exists), then the protocol goes on
    /// as usual from the real latest version: correctness never rests on `start`.
    pub async fn commit_txns_from<F>(
        &self,
        start: Option<Manifest>,
        txns: &[Txn],
        operation: Operation,
        mut mutate: F,
    ) -> Result<CommitOutcome>
    where
        F: FnMut(&mut Manifest) -> Result<()>,
    {
        let mut start = start;
        let started_from_hint = start.is_some();
        if txns.is_empty() {
            return Err(Error::InvalidInput(
                "a commit needs a transaction id".into(),
            ));
        }
        let mut last_error = String::from("no attempt made");
        for attempt in 0..self.retry.max_attempts {
            // A failed attempt on the caller's `start` retries at once: nothing raced yet.
            if attempt > 0 && !(attempt == 1 && started_from_hint) {
                tokio::time::sleep(self.retry.delay(attempt)).await;
            }
            let current = match start.take() {
                Some(m) => m,
                None => match self.load_latest().await {
                    Ok(m) => m,
                    Err(e @ (Error::DatasetNotFound(_) | Error::InvalidManifest { .. })) => {
                        return Err(e);
                    }
                    Err(e) => {
                        last_error = e.to_string();
                        continue;
                    }
                },
            };
            if let Some(found) = self.resolve_txns(&current, txns).await? {
                return Ok(found);
            }
            let mut next = current.successor_of(txns, operation.clone());
            mutate(&mut next)?;
            match self.put_manifest(&next).await? {
                Ok(()) => {
                    return Ok(CommitOutcome {
                        manifest: next,
                        newly_committed: true,
                    });
                }
                Err(object_store::Error::AlreadyExists { .. }) => {
                    last_error = format!("version {} was taken by another commit", next.version);
                }
                // Unknown outcome: the manifest may or may not have landed. The next attempt
                // resolves it by transaction id.
                Err(e) => last_error = e.to_string(),
            }
        }
        // One last resolution, so a final attempt whose response was lost is still acknowledged.
        if let Ok(current) = self.load_latest().await
            && let Some(found) = self.resolve_txns(&current, txns).await?
        {
            return Ok(found);
        }
        Err(Error::CommitContention {
            dataset: self.name.clone(),
            attempts: self.retry.max_attempts,
            last: last_error,
        })
    }

    async fn resolve_txns(
        &self,
        current: &Manifest,
        txns: &[Txn],
    ) -> Result<Option<CommitOutcome>> {
        let found: Vec<Option<u64>> = txns.iter().map(|t| current.find_txn(&t.id)).collect();
        if found.iter().all(Option::is_none) {
            return Ok(None);
        }
        if found.iter().any(Option::is_none) {
            return Err(Error::TxnsPartlyCommitted {
                ids: txns
                    .iter()
                    .zip(&found)
                    .filter(|(_, v)| v.is_some())
                    .map(|(t, _)| t.id.clone())
                    .collect(),
            });
        }
        // Records are only ever appended, so the newest of these versions records them all.
        let version = found.into_iter().flatten().max().unwrap_or(current.version);
        let manifest = if version == current.version {
            current.clone()
        } else {
            self.read_manifest(version).await?
        };
        Ok(Some(CommitOutcome {
            manifest,
            newly_committed: false,
        }))
    }
}

/// Names of all datasets in the store (those with a `_manifest` directory).
pub async fn list_datasets(store: &dyn ObjectStore) -> Result<Vec<DatasetName>> {
    let listing = store
        .list_with_delimiter(Some(&layout::datasets_root()))
        .await?;
    let mut names: Vec<DatasetName> = listing
        .common_prefixes
        .iter()
        .filter_map(|p| p.filename())
        .filter_map(|n| DatasetName::new(n).ok())
        .collect();
    names.sort();
    Ok(names)
}

#[cfg(test)]
mod tests;
