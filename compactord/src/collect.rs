//! What garbage collection deletes in one dataset, and the deleting (invariant 6): old
//! manifests expire, and data files that no retained manifest references are deleted once
//! older than a grace period. The runs over every dataset, on the schedule and on demand, are
//! [`crate::gc`]'s.
//!
//! Rules, in the order they are applied to one dataset:
//! - A manifest is retained if it is among the newest `keep_manifests` or younger than the
//!   grace period; the latest is always retained. Expired manifests are deleted oldest first,
//!   so the versions that exist stay one contiguous range (latest-version discovery relies on
//!   it) and a crash midway leaves a valid prefix deleted.
//! - A data file (under `base/` or `deltas/`) is deleted when no retained manifest references
//!   it and it is older than the grace period. The grace period protects files of a commit in
//!   progress (written before their manifest) and readers still on a manifest that just
//!   expired: every manifest younger than the grace period is retained, and so are its files.
//! - The Delta log of a dataset with `delta_mirror` (`strata_shared::delta_log`) has readers
//!   of its own: the files of its current snapshot are retained, and so are the files it
//!   removed until their `remove.deletionTimestamp` is older than the grace period (Delta's
//!   tombstone retention), so a reader on the previous log version still finds its files. The
//!   log itself (`_delta_log/`) is collected only with its dataset (below).
//! - A dropped dataset (its latest manifest is a drop's tombstone) keeps only the tombstone
//!   and the manifests younger than the grace period, whatever `keep_manifests` says, and its
//!   Delta log (which its drop deletes) protects nothing and is deleted if any is left: once
//!   the grace period has passed, everything but the tombstone goes. The tombstone stays, so
//!   a new dataset of that name goes on from the next version.
//! - Before deleting anything the run checks that the dataset's compactor epoch is still the
//!   one the caller holds: a newer compactor (or GC) fences this one, as for compaction.
//! - A delete that finds nothing counts as done (another GC got there first).

use std::collections::HashSet;
use std::path::Path as FsPath;
use std::time::{Duration, SystemTime};

use chrono::Utc;
use futures::TryStreamExt;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};
use strata_shared::commit::Table;
use strata_shared::{Error, Result, delta_log, layout};

#[derive(Clone, Debug)]
pub struct GcPolicy {
    /// Files and manifests younger than this are never collected.
    pub grace: Duration,
    /// How many of the newest manifests are always retained (at least 1: the latest).
    pub keep_manifests: usize,
}

impl Default for GcPolicy {
    fn default() -> Self {
        Self {
            grace: Duration::from_secs(3600),
            keep_manifests: 10,
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GcReport {
    pub manifests_deleted: u64,
    pub files_deleted: u64,
    pub bytes_deleted: u64,
    /// The compactor epoch moved on: nothing was deleted.
    pub fenced: bool,
}

/// Collects one dataset's garbage, as the holder of compactor epoch `epoch`.
pub async fn collect(table: &Table, policy: &GcPolicy, epoch: u64) -> Result<GcReport> {
    let store = table.store().clone();
    let name = table.name().clone();
    let now = Utc::now();
    let grace = chrono::Duration::from_std(policy.grace).unwrap_or(chrono::Duration::MAX);
    let head = table.load_head().await?;
    let (latest, dropped) = (head.version, head.is_dropped());
    let versions: Vec<u64> = table
        .listed_versions()
        .await?
        .into_iter()
        .filter(|&v| v <= latest)
        .collect();

    // Newest first: retained while among the newest K or young; the first too old (and
    // beyond K) ends the retained range, so expiry only ever removes a prefix.
    let keep = if dropped {
        1
    } else {
        policy.keep_manifests.max(1)
    };
    let mut retained = Vec::new();
    let mut expired = Vec::new();
    for (i, &version) in versions.iter().rev().enumerate() {
        if !expired.is_empty() {
            expired.push(version);
            continue;
        }
        let manifest = match table.read_manifest(version).await {
            Ok(m) => m,
            // Expired by a concurrent GC between the listing and this read.
            Err(Error::ManifestNotFound { .. }) => continue,
            Err(e) => return Err(e),
        };
        if i < keep || now - manifest.created_at < grace {
            retained.push(manifest);
        } else {
            expired.push(version);
        }
    }
    expired.sort_unstable();

    let mut referenced: HashSet<String> = retained
        .iter()
        .flat_map(|m| m.referenced_paths().map(str::to_owned))
        .collect();
    // Read for every dataset (one listing when there is no log): a log is honoured whatever
    // the manifest says, so no flag can make GC pull files from under its readers.
    if !dropped {
        let log = delta_log::replay(store.as_ref(), &name).await?;
        referenced.extend(log.retained_paths(&name, now, policy.grace));
    }
    let mut orphans = Vec::new();
    for dir in ["base", "deltas"] {
        let prefix = layout::dataset_root(&name).join(dir);
        let listed: Vec<_> = store.list(Some(&prefix)).try_collect().await?;
        for meta in listed {
            if !referenced.contains(meta.location.as_ref()) && now - meta.last_modified >= grace {
                orphans.push(meta);
            }
        }
    }

    if table.load_head().await?.compactor_epoch != epoch {
        return Ok(GcReport {
            fenced: true,
            ..GcReport::default()
        });
    }
    let mut report = GcReport::default();
    for version in expired {
        if delete(store.as_ref(), &layout::manifest_path(&name, version)).await? {
            report.manifests_deleted += 1;
        }
    }
    if dropped {
        report.files_deleted += delta_log::delete_log(store.as_ref(), &name).await?;
    }
    for meta in orphans {
        if delete(store.as_ref(), &meta.location).await? {
            report.files_deleted += 1;
            report.bytes_deleted += meta.size;
        }
    }
    Ok(report)
}

/// Deletes `path`; `false` if it was already gone.
async fn delete(store: &dyn ObjectStore, path: &Path) -> Result<bool> {
    match store.delete(path).await {
        Ok(()) => Ok(true),
        Err(object_store::Error::NotFound { .. }) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// On a local store: deletes the staging files an interrupted put leaves beside its target
/// (`name#N`, which listings never show) when older than `grace`. Returns how many.
pub fn sweep_staging(root: &FsPath, grace: Duration) -> std::io::Result<u64> {
    let datasets = root.join(layout::datasets_root().as_ref());
    let mut removed = 0;
    let mut stack = vec![datasets];
    while let Some(dir) = stack.pop() {
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        for entry in entries {
            let entry = entry?;
            let meta = entry.metadata()?;
            if meta.is_dir() {
                stack.push(entry.path());
                continue;
            }
            let staging = entry
                .file_name()
                .to_str()
                .and_then(|n| n.rsplit_once('#'))
                .is_some_and(|(_, n)| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()));
            let old = meta
                .modified()
                .ok()
                .and_then(|t| SystemTime::now().duration_since(t).ok())
                .is_some_and(|age| age >= grace);
            if staging && old {
                match std::fs::remove_file(entry.path()) {
                    Ok(()) => removed += 1,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => return Err(e),
                }
            }
        }
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{Int64Array, RecordBatch};
    use arrow::datatypes::{DataType, Field, Schema};
    use object_store::PutPayload;
    use object_store::memory::InMemory;
    use strata_shared::layout::DatasetName;
    use strata_shared::manifest::{DataFile, Manifest, Operation};
    use strata_shared::parquet_io;

    use super::*;

    fn schema() -> Arc<Schema> {
        Arc::new(Schema::new(vec![Field::new("id", DataType::Int64, false)]))
    }

    async fn put_file(store: &Arc<dyn ObjectStore>, path: &Path) -> DataFile {
        let batch =
            RecordBatch::try_new(schema(), vec![Arc::new(Int64Array::from(vec![1, 2]))]).unwrap();
        let bytes = parquet_io::encode(schema(), &[batch]).unwrap();
        let size = bytes.len() as u64;
        store.put(path, PutPayload::from(bytes)).await.unwrap();
        DataFile {
            path: path.to_string(),
            rows: 2,
            bytes: size,
            key_min: None,
            key_max: None,
        }
    }

    /// A dataset whose base was replaced twice (versions 0, 1, 2), plus an orphan delta file
    /// no manifest ever referenced.
    async fn dataset() -> (Table, Vec<DataFile>, Path) {
        let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        let name = DatasetName::new("t").unwrap();
        let table = Table::new(store.clone(), name.clone());
        let mut files = Vec::new();
        for part in 0..3 {
            files.push(
                put_file(
                    &store,
                    &layout::base_file_path(&name, &format!("c{part}"), 0),
                )
                .await,
            );
        }
        let m = Manifest::initial(
            name.clone(),
            schema().as_ref().clone(),
            vec!["id".into()],
            vec![files[0].clone()],
            "create",
        );
        table.create(&m).await.unwrap();
        for file in &files[1..] {
            table
                .commit(&format!("compact-{}", file.path), Operation::Compact, |m| {
                    m.base_files = vec![file.clone()];
                    Ok(())
                })
                .await
                .unwrap();
        }
        let orphan = layout::delta_file_path(&name, Utc::now(), uuid::Uuid::now_v7());
        put_file(&store, &orphan).await;
        (table, files, orphan)
    }

    async fn exists(table: &Table, path: &Path) -> bool {
        table.store().head(path).await.is_ok()
    }

    #[tokio::test]
    async fn young_files_and_manifests_are_kept() {
        let (table, files, orphan) = dataset().await;
        let report = collect(&table, &GcPolicy::default(), 0).await.unwrap();
        assert_eq!(report, GcReport::default());
        assert!(exists(&table, &orphan).await);
        assert!(exists(&table, &Path::from(files[0].path.as_str())).await);
    }

    #[tokio::test]
    async fn expired_manifests_and_unreferenced_files_go() {
        let (table, files, orphan) = dataset().await;
        let policy = GcPolicy {
            grace: Duration::ZERO,
            keep_manifests: 2,
        };
        let report = collect(&table, &policy, 0).await.unwrap();
        assert_eq!(report.manifests_deleted, 1, "version 0 expired");
        assert_eq!(
            report.files_deleted, 2,
            "version 0's base file and the orphan"
        );
        assert!(!exists(&table, &orphan).await);
        assert!(!exists(&table, &Path::from(files[0].path.as_str())).await);
        for file in &files[1..] {
            assert!(
                exists(&table, &Path::from(file.path.as_str())).await,
                "referenced"
            );
        }
        assert!(table.read_manifest(0).await.is_err());
        assert_eq!(table.latest_version().await.unwrap(), 2);
        // Again: nothing left to do, and deletes that find nothing are fine.
        assert_eq!(
            collect(&table, &policy, 0).await.unwrap(),
            GcReport::default()
        );
    }

    #[tokio::test]
    async fn the_latest_manifest_is_never_expired() {
        let (table, files, _) = dataset().await;
        let policy = GcPolicy {
            grace: Duration::ZERO,
            keep_manifests: 0,
        };
        let report = collect(&table, &policy, 0).await.unwrap();
        assert_eq!(report.manifests_deleted, 2);
        assert_eq!(table.load_latest().await.unwrap().version, 2);
        assert!(exists(&table, &Path::from(files[2].path.as_str())).await);
    }

    #[tokio::test]
    async fn a_newer_epoch_fences_gc() {
        let (table, _, orphan) = dataset().await;
        table
            .commit("bump", Operation::BumpEpoch, |m| {
                m.compactor_epoch += 1;
                Ok(())
            })
            .await
            .unwrap();
        let policy = GcPolicy {
            grace: Duration::ZERO,
            keep_manifests: 1,
        };
        let report = collect(&table, &policy, 0).await.unwrap();
        assert!(report.fenced);
        assert!(exists(&table, &orphan).await, "a fenced GC deletes nothing");
        assert!(!collect(&table, &policy, 1).await.unwrap().fenced);
        assert!(!exists(&table, &orphan).await);
    }

    /// A Delta log's readers keep their files whatever the manifests say: its snapshot always,
    /// the files it removed until the removal is older than the grace period.
    #[tokio::test]
    async fn files_of_the_delta_log_outlive_the_manifests_that_named_them() {
        let (table, files, orphan) = dataset().await;
        let store = table.store().clone();
        let mut mirrored = Vec::new();
        for version in 0..3 {
            let mut m = table.read_manifest(version).await.unwrap();
            m.delta_mirror = true;
            mirrored.push(m);
        }
        let grace = Duration::from_millis(300);
        let policy = GcPolicy {
            grace,
            keep_manifests: 1,
        };
        let past_grace = || tokio::time::sleep(grace + Duration::from_millis(100));
        let path = |i: usize| Path::from(files[i].path.as_str());
        // Every file and manifest is older than the grace period; the log lags the manifests:
        // it moved from file 0 to file 1 just now and never saw file 2.
        past_grace().await;
        assert_eq!(
            delta_log::sync(store.as_ref(), &mirrored[0]).await.unwrap(),
            Some(0)
        );
        assert_eq!(
            delta_log::sync(store.as_ref(), &mirrored[1]).await.unwrap(),
            Some(1)
        );
        let report = collect(&table, &policy, 0).await.unwrap();
        assert_eq!(report.manifests_deleted, 2, "{report:?}");
        assert_eq!(report.files_deleted, 1, "only the orphan: {report:?}");
        assert!(!exists(&table, &orphan).await);
        for i in 0..3 {
            assert!(exists(&table, &path(i)).await, "file {i}");
        }

        // The removal of file 0 is older than the grace period now: it goes. File 1 is the
        // log's snapshot, which no retained manifest names: it stays.
        past_grace().await;
        let report = collect(&table, &policy, 0).await.unwrap();
        assert_eq!(report.files_deleted, 1, "{report:?}");
        assert!(!exists(&table, &path(0)).await);
        assert!(exists(&table, &path(1)).await && exists(&table, &path(2)).await);

        // The log catches up: file 1 is removed now and kept for the grace period.
        assert_eq!(
            delta_log::sync(store.as_ref(), &mirrored[2]).await.unwrap(),
            Some(2)
        );
        assert_eq!(collect(&table, &policy, 0).await.unwrap().files_deleted, 0);
        assert!(exists(&table, &path(1)).await);
        past_grace().await;
        assert_eq!(collect(&table, &policy, 0).await.unwrap().files_deleted, 1);
        assert!(!exists(&table, &path(1)).await && exists(&table, &path(2)).await);
        // The log itself is never collected.
        let state = delta_log::replay(store.as_ref(), table.name())
            .await
            .unwrap();
        assert_eq!(state.version, Some(2));
    }

    #[test]
    fn staging_files_are_swept_when_old() {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().join("datasets/t/base/c");
        std::fs::create_dir_all(&base).unwrap();
        std::fs::write(base.join("part-00000.parquet"), b"data").unwrap();
        std::fs::write(base.join("part-00001.parquet#3"), b"partial").unwrap();
        assert_eq!(
            sweep_staging(dir.path(), Duration::from_secs(3600)).unwrap(),
            0
        );
        assert_eq!(sweep_staging(dir.path(), Duration::ZERO).unwrap(), 1);
        assert!(base.join("part-00000.parquet").exists());
        assert!(!base.join("part-00001.parquet#3").exists());
    }
}
