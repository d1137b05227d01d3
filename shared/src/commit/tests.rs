//! Commit protocol tests, including the property test: concurrent committers over a store
//! that fails requests and loses responses leave a gap-free version chain in which every
//! version equals the replay of the transactions acknowledged up to it.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use arrow_schema::{DataType, Field, Schema};
use chrono::Utc;
use object_store::ObjectStore;
use object_store::local::LocalFileSystem;
use object_store::memory::InMemory;

use super::*;
use crate::manifest::DeltaFile;
use crate::testing::FaultyStore;

fn name() -> DatasetName {
    DatasetName::new("t").unwrap()
}

fn initial() -> Manifest {
    let schema = Schema::new(vec![Field::new("id", DataType::Int64, false)]);
    Manifest::initial(name(), schema, vec!["id".into()], vec![], "create")
}

fn fast_retry() -> RetryPolicy {
    RetryPolicy {
        max_attempts: 400,
        base_delay: Duration::from_micros(200),
        max_delay: Duration::from_millis(10),
    }
}

/// The mutation every committer uses: one delta named after the transaction.
fn add_delta(txn: &str) -> impl FnMut(&mut Manifest) -> Result<()> + '_ {
    move |m: &mut Manifest| {
        m.deltas.push(DeltaFile {
            path: txn.to_owned(),
            seq: m.version,
            rows: 1,
            bytes: 1,
            upserts: 1,
            deletes: 0,
            created_at: Utc::now(),
        });
        Ok(())
    }
}

#[tokio::test]
async fn create_is_exclusive_and_discovery_finds_latest() {
    let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let table = Table::new(store.clone(), name());
    assert!(matches!(
        table.latest_version().await,
        Err(Error::DatasetNotFound(_))
    ));
    table.create(&initial()).await.unwrap();
    assert!(matches!(
        table.create(&initial()).await,
        Err(Error::DatasetExists(_))
    ));
    for i in 0..37 {
        let txn = format!("t{i}");
        table
            .commit(&txn, Operation::Ingest, add_delta(&txn))
            .await
            .unwrap();
    }
    assert_eq!(table.latest_version().await.unwrap(), 37);

    // A stale hint, a missing hint and a garbage hint all still find the latest version.
    let hint = layout::latest_hint_path(&name());
    store
        .put(&hint, Bytes::from_static(b"{\"version\":3}").into())
        .await
        .unwrap();
    assert_eq!(table.latest_version().await.unwrap(), 37);
    store.delete(&hint).await.unwrap();
    assert_eq!(table.latest_version().await.unwrap(), 37);
    store
        .put(&hint, Bytes::from_static(b"garbage").into())
        .await
        .unwrap();
    assert_eq!(table.load_latest().await.unwrap().version, 37);
    // A hint pointing past the end (e.g. restored from elsewhere) is not trusted either.
    store
        .put(&hint, Bytes::from_static(b"{\"version\":99}").into())
        .await
        .unwrap();
    assert_eq!(table.latest_version().await.unwrap(), 37);
}

#[tokio::test]
async fn idempotent_retry_returns_the_original_version() {
    let table = Table::new(Arc::new(InMemory::new()), name());
    table.create(&initial()).await.unwrap();
    let first = table
        .commit("a", Operation::Ingest, add_delta("a"))
        .await
        .unwrap();
    table
        .commit("b", Operation::Ingest, add_delta("b"))
        .await
        .unwrap();
    let again = table
        .commit("a", Operation::Ingest, add_delta("a"))
        .await
        .unwrap();
    assert!(first.newly_committed);
    assert!(!again.newly_committed);
    assert_eq!(again.manifest.version, first.manifest.version);
    assert_eq!(table.latest_version().await.unwrap(), 2);
}

#[tokio::test]
async fn a_group_lands_once_and_resolves_as_one_transaction() {
    use crate::manifest::Txn;
    let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    Table::new(store.clone(), name())
        .create(&initial())
        .await
        .unwrap();
    // Every put lands but loses its response: only resolution by id can acknowledge it.
    let lossy = Arc::new(FaultyStore::new(store.clone(), 0.0, 1.0));
    let table = Table::new(lossy, name()).with_retry(fast_retry());
    let group = [Txn::ingest("g1", 2, 0), Txn::ingest("g2", 0, 1)];
    let outcome = table
        .commit_txns(&group, Operation::Ingest, add_delta("group"))
        .await
        .unwrap();
    assert!(!outcome.newly_committed, "acknowledged through resolution");
    assert_eq!(outcome.manifest.version, 1);
    let table = Table::new(store, name());
    assert_eq!(table.latest_version().await.unwrap(), 1, "written once");
    let m = table.load_latest().await.unwrap();
    assert_eq!(m.deltas.len(), 1);
    let g2 = m.txn_record("g2").unwrap();
    assert_eq!((g2.version, g2.upserts, g2.deletes), (1, Some(0), Some(1)));

    // A group of which only some members landed elsewhere is refused, naming them.
    let err = table
        .commit_txns(
            &[Txn::id("new"), Txn::id("g1")],
            Operation::Ingest,
            add_delta("x"),
        )
        .await
        .unwrap_err();
    match err {
        Error::TxnsPartlyCommitted { ids } => assert_eq!(ids, vec!["g1".to_string()]),
        other => panic!("expected TxnsPartlyCommitted, got {other:?}"),
    }
    assert_eq!(table.latest_version().await.unwrap(), 1);
}

#[tokio::test]
async fn a_stale_start_costs_one_attempt_and_lands_on_the_latest() {
    let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let table = Table::new(store, name()).with_retry(fast_retry());
    table.create(&initial()).await.unwrap();
    let v0 = table.read_manifest(0).await.unwrap();
    table
        .commit("a", Operation::Ingest, add_delta("a"))
        .await
        .unwrap();
    // Started from version 0 although version 1 exists: the put of version 1 fails, the
    // protocol rediscovers, and the commit lands as version 2 on top of "a".
    let outcome = table
        .commit_txns_from(
            Some(v0.clone()),
            &[Txn::id("b")],
            Operation::Ingest,
            add_delta("b"),
        )
        .await
        .unwrap();
    assert_eq!(outcome.manifest.version, 2);
    let paths: Vec<&str> = outcome
        .manifest
        .deltas
        .iter()
        .map(|d| d.path.as_str())
        .collect();
    assert_eq!(paths, ["a", "b"]);
    // A start that is the latest commits at once on it.
    let latest = table.load_latest().await.unwrap();
    let outcome = table
        .commit_txns_from(
            Some(latest),
            &[Txn::id("c")],
            Operation::Ingest,
            add_delta("c"),
        )
        .await
        .unwrap();
    assert_eq!(outcome.manifest.version, 3);
    // And a start that already records the transaction resolves it without a commit.
    let outcome = table
        .commit_txns_from(
            Some(v0),
            &[Txn::id("create")],
            Operation::Ingest,
            add_delta("x"),
        )
        .await
        .unwrap();
    assert_eq!(
        (outcome.manifest.version, outcome.newly_committed),
        (0, false)
    );
}

#[tokio::test]
async fn a_failing_mutation_writes_nothing() {
    let table = Table::new(Arc::new(InMemory::new()), name());
    table.create(&initial()).await.unwrap();
    let err = table
        .commit("x", Operation::Ingest, |_| {
            Err(Error::Conflict("no".into()))
        })
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Conflict(_)));
    assert_eq!(table.latest_version().await.unwrap(), 0);
}

#[tokio::test]
async fn committing_to_a_missing_dataset_fails_fast() {
    let table = Table::new(Arc::new(InMemory::new()), name());
    let err = table
        .commit("x", Operation::Ingest, add_delta("x"))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::DatasetNotFound(_)));
}

/// Runs `committers` concurrent tasks of `per_committer` transactions each against `store`
/// wrapped in fault injection, then checks the whole version chain against the replay.
async fn concurrent_commits_match_replay(
    store: Arc<dyn ObjectStore>,
    committers: usize,
    per_committer: usize,
) {
    let faulty = Arc::new(FaultyStore::new(store.clone(), 0.1, 0.1));
    Table::new(store.clone(), name())
        .create(&initial())
        .await
        .unwrap();

    let mut tasks = Vec::new();
    for c in 0..committers {
        let table = Table::new(faulty.clone(), name()).with_retry(fast_retry());
        tasks.push(tokio::spawn(async move {
            let mut results = Vec::new();
            for i in 0..per_committer {
                let txn = format!("c{c}-{i}");
                let outcome = table.commit(&txn, Operation::Ingest, add_delta(&txn)).await;
                // Every third transaction is retried as a client would after a timeout.
                if i % 3 == 0
                    && let Ok(first) = &outcome
                {
                    let retry = table
                        .commit(&txn, Operation::Ingest, add_delta(&txn))
                        .await
                        .expect("an idempotent retry of an acknowledged commit succeeds");
                    assert!(!retry.newly_committed);
                    assert_eq!(retry.manifest.version, first.manifest.version);
                }
                results.push((txn, outcome.map(|o| o.manifest.version)));
            }
            results
        }));
    }
    let mut acked: HashMap<String, u64> = HashMap::new();
    let mut unacked = Vec::new();
    for task in tasks {
        for (txn, result) in task.await.unwrap() {
            match result {
                Ok(version) => {
                    acked.insert(txn, version);
                }
                Err(e) => unacked.push((txn, e.to_string())),
            }
        }
    }
    assert!(
        faulty.injected.load(std::sync::atomic::Ordering::Relaxed) > 0,
        "faults were injected"
    );
    assert!(
        acked.len() * 10 >= committers * per_committer * 9,
        "most commits must be acknowledged; unacked: {unacked:?}"
    );

    // Replay: walk every version; each adds exactly one transaction at seq == version, and
    // the snapshot equals the previous one plus that transaction.
    let table = Table::new(store.clone(), name());
    let latest = table.latest_version().await.unwrap();
    let mut replay: Vec<String> = Vec::new();
    let mut committed_at: HashMap<String, u64> = HashMap::new();
    for version in 0..=latest {
        let m = table.read_manifest(version).await.unwrap();
        assert_eq!(m.version, version);
        if version > 0 {
            let added = m.deltas.last().expect("every ingest version adds a delta");
            assert_eq!(added.seq, version);
            assert!(
                committed_at.insert(added.path.clone(), version).is_none(),
                "transaction {} committed twice",
                added.path
            );
            replay.push(added.path.clone());
            assert_eq!(m.find_txn(&added.path), Some(version));
        }
        let paths: Vec<&String> = m.deltas.iter().map(|d| &d.path).collect();
        assert_eq!(
            paths,
            replay.iter().collect::<Vec<_>>(),
            "version {version} equals the replay"
        );
    }
    for (txn, version) in &acked {
        assert_eq!(
            committed_at.get(txn),
            Some(version),
            "acknowledged transaction {txn} is in the version it was acknowledged with"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn property_concurrent_faulty_commits_in_memory() {
    for _round in 0..5 {
        concurrent_commits_match_replay(Arc::new(InMemory::new()), 8, 25).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn property_concurrent_faulty_commits_local_fs() {
    for _round in 0..3 {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(LocalFileSystem::new_with_prefix(dir.path()).unwrap());
        concurrent_commits_match_replay(store, 8, 20).await;
    }
}

/// A drop is a tombstone version: the dataset is absent to readers and committers, its
/// tombstone stays for GC and creation, and a new dataset of the name goes on from the next
/// version with the tombstone's compactor epoch (never backwards for a follower).
#[tokio::test]
async fn drop_leaves_a_tombstone_and_the_name_is_created_again_after_it() {
    let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let table = Table::new(store.clone(), name());
    table.create(&initial()).await.unwrap();
    table
        .commit("bump", Operation::BumpEpoch, |m| {
            m.compactor_epoch = 7;
            Ok(())
        })
        .await
        .unwrap();
    table
        .commit("t1", Operation::Ingest, add_delta("t1"))
        .await
        .unwrap();

    let tombstone = table.drop_dataset("drop-1").await.unwrap();
    assert_eq!(tombstone.version, 3);
    assert!(tombstone.is_dropped());
    assert!(tombstone.base_files.is_empty() && tombstone.deltas.is_empty());
    assert!(matches!(
        table.load_latest().await,
        Err(Error::DatasetNotFound(_))
    ));
    assert_eq!(table.load_head().await.unwrap().version, 3);
    // Nothing commits on a dropped dataset, a second drop included.
    assert!(matches!(
        table.commit("t2", Operation::Ingest, add_delta("t2")).await,
        Err(Error::DatasetNotFound(_))
    ));
    assert!(matches!(
        table.drop_dataset("drop-2").await,
        Err(Error::DatasetNotFound(_))
    ));
    assert_eq!(table.latest_version().await.unwrap(), 3, "nothing written");

    let created = table.create(&initial()).await.unwrap();
    assert_eq!(created.version, 4);
    assert_eq!(created.incarnation, 4);
    assert_eq!(created.compactor_epoch, 7);
    assert_eq!(created.recent_txns.last().unwrap().version, 4);
    assert_eq!(table.load_latest().await.unwrap(), created);
    assert_eq!(table.read_manifest(4).await.unwrap(), created);
    // The live dataset holds the name again; its successors carry the incarnation.
    assert!(matches!(
        table.create(&initial()).await,
        Err(Error::DatasetExists(_))
    ));
    let next = table
        .commit("t3", Operation::Ingest, add_delta("t3"))
        .await
        .unwrap();
    assert_eq!(next.manifest.incarnation, 4);
}
