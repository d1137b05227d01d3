//! queryd moving a dataset in memory to a version with new base files (after a compaction). A
//! [`GatedStore`] holds base-file reads back, so the tests look at queryd while it would read
//! them. A state that applied every merged delta is carried over without reading anything
//! (invariant 7); one with too many dead rows is rebuilt, in both `rebuild` modes: with
//! `release_first` the new version is answered cold at once and later versions follow without
//! waiting for the build; with `beside` the old state keeps answering. Either way the served
//! version never goes back, and the order of rows is the same before and after.

use std::sync::Arc;
use std::time::Duration;

use object_store::ObjectStore;
use object_store::memory::InMemory;
use serde_json::{Value, json};
use strata_compactord::compact::{CompactOptions, CompactOutcome, compact};
use strata_daemon::config::{Config, Rebuild};
use strata_shared::commit::Table;
use strata_shared::layout::DatasetName;
use strata_shared::testing::GatedStore;

use crate::common::{Queryd, commit_delta, create_dataset, people};

const QUERY: &str = "/api/v1/datasets/people/query";
const STATUS: &str = "/api/v1/datasets/people/status";

struct Setup {
    store: Arc<dyn ObjectStore>,
    gate: Arc<GatedStore>,
    queryd: Arc<Queryd>,
}

/// people 1..=5 in memory at version 0, then a delta (upsert 6, delete 2 and 3: a third of
/// the rows held are dead, so a compaction is not carried over) applied incrementally, then
/// compacted in the store (queryd not told yet). Returns the compaction's version.
async fn setup(rebuild: Rebuild) -> (Setup, u64) {
    setup_with(rebuild, &[1, 2, 3, 4, 5], &[2, 3]).await
}

async fn setup_with(rebuild: Rebuild, base: &[i64], deleted: &[i64]) -> (Setup, u64) {
    let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    create_dataset(&store, "people", &[people(base)], &["id"]).await;
    let gate = Arc::new(GatedStore::new(store.clone(), "/base/"));
    let mut config = Config::default();
    config.queryd.rebuild = rebuild;
    config.queryd.poll_interval = std::time::Duration::ZERO;
    let queryd = Arc::new(Queryd::new(gate.clone(), config).await);
    let s = Setup {
        store,
        gate,
        queryd,
    };
    let (status, _) = s
        .queryd
        .post("/api/v1/cache/pin", &json!({"dataset": "people"}), true)
        .await;
    assert_eq!(status, 200);
    let delta = commit_delta(&s.store, "people", &people(&[6]), deleted).await;
    let (_, version) = ids(&s.queryd, delta).await;
    assert_eq!(version, delta);
    assert_eq!(residency(&s.queryd).await, ("memory".into(), delta));

    let table = Table::new(s.store.clone(), DatasetName::new("people").unwrap());
    let report = compact(&table, &CompactOptions::default()).await.unwrap();
    let CompactOutcome::Committed { version } = report.outcome else {
        panic!("{report:?}");
    };
    (s, version)
}

/// The ids of a query at `min_version` (storage order) and the version that answered.
async fn ids(q: &Queryd, min_version: u64) -> (Vec<i64>, u64) {
    let body = json!({"min_version": min_version}).to_string();
    let (status, headers, body) = q.post_raw(QUERY, body, &[], false).await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let body: Value = serde_json::from_slice(&body).unwrap();
    let ids = body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_i64().unwrap())
        .collect();
    let version = headers["x-dataset-version"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    (ids, version)
}

async fn residency(q: &Queryd) -> (String, u64) {
    let (_, status) = q.get(STATUS).await;
    let (_, stats) = q.get("/api/v1/cache/stats").await;
    let version = stats["datasets"][0]["version"].as_u64().unwrap();
    (status["residency"].as_str().unwrap().to_owned(), version)
}

/// Waits until the dataset is in memory at `version` or newer.
async fn until_in_memory(q: &Queryd, version: u64) {
    for _ in 0..500 {
        let (residency, at) = residency(q).await;
        if residency == "memory" && at >= version {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!(
        "not in memory at version {version}: {:?}",
        residency(q).await
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_compaction_of_applied_deltas_is_carried_over_without_reading_its_files() {
    for rebuild in [Rebuild::ReleaseFirst, Rebuild::Beside] {
        // Two dead rows (2, and 6 rewritten) of nine held.
        let (s, compacted) = setup_with(rebuild, &[1, 2, 3, 4, 5, 6, 7, 8], &[2]).await;
        // Base files cannot be read: a rebuild would hang (beside) or answer cold (release
        // first); the carried-over state answers from memory at once.
        s.gate.close();
        let order = vec![1, 3, 4, 5, 7, 8, 6];
        assert_eq!(ids(&s.queryd, compacted).await, (order.clone(), compacted));
        assert_eq!(residency(&s.queryd).await, ("memory".into(), compacted));
        // Later deltas apply to it as to any state.
        let later = commit_delta(&s.store, "people", &people(&[9]), &[3]).await;
        assert_eq!(
            ids(&s.queryd, later).await,
            (vec![1, 4, 5, 7, 8, 6, 9], later)
        );
        assert_eq!(residency(&s.queryd).await, ("memory".into(), later));
        // The compacted files hold the same rows in the same order: a reload from them
        // answers the same.
        s.gate.open();
        let (status, body) = s
            .queryd
            .post("/api/v1/datasets/people/reload", &json!({}), true)
            .await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(
            ids(&s.queryd, later).await,
            (vec![1, 4, 5, 7, 8, 6, 9], later)
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn release_first_answers_the_new_version_cold_at_once_and_rebuilds_in_the_background() {
    let (s, compacted) = setup(Rebuild::ReleaseFirst).await;
    s.gate.close();

    // The compacted version is answered at once, from its files: same rows, same order.
    let (cold, version) = ids(&s.queryd, compacted).await;
    assert_eq!((cold.clone(), version), (vec![1, 4, 5, 6], compacted));
    assert_eq!(residency(&s.queryd).await, ("loading".into(), compacted));

    // A write during the rebuild is served at once too, without waiting for the build.
    let later = commit_delta(&s.store, "people", &people(&[7]), &[4]).await;
    assert_eq!(ids(&s.queryd, later).await, (vec![1, 5, 6, 7], later));
    assert_eq!(residency(&s.queryd).await, ("loading".into(), later));

    // The build (of the compacted version) catches up before it publishes: never back.
    s.gate.open();
    until_in_memory(&s.queryd, later).await;
    assert_eq!(ids(&s.queryd, 0).await, (vec![1, 5, 6, 7], later));
    let (_, status) = s.queryd.get(STATUS).await;
    assert_eq!(
        status["consecutive_failures"], 0,
        "a release-first rebuild is not a failure: {status}"
    );
    let (_, stats) = s.queryd.get("/api/v1/cache/stats").await;
    assert_eq!(
        stats["datasets"][0]["pinned"], true,
        "still pinned: {stats}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn beside_keeps_answering_from_the_old_state_until_the_new_one_is_built() {
    let (s, compacted) = setup(Rebuild::Beside).await;
    s.gate.close();
    let waiting = {
        let q = s.queryd.clone();
        tokio::spawn(async move { ids(&q, compacted).await })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!waiting.is_finished(), "the new version needs the build");
    // Meanwhile the old state answers, in its storage order (base rows, then delta rows).
    let before = compacted - 2; // the delta's version (the compaction bumped the epoch first)
    assert_eq!(ids(&s.queryd, 0).await, (vec![1, 4, 5, 6], before));
    assert_eq!(residency(&s.queryd).await, ("memory".into(), before));

    s.gate.open();
    assert_eq!(waiting.await.unwrap(), (vec![1, 4, 5, 6], compacted));
    assert_eq!(residency(&s.queryd).await, ("memory".into(), compacted));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_explicit_reload_builds_beside_whatever_the_mode() {
    let (s, compacted) = setup(Rebuild::ReleaseFirst).await;
    let (status, body) = s
        .queryd
        .post("/api/v1/datasets/people/reload", &json!({}), true)
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        (body["version"].as_u64(), body["rows"].as_u64()),
        (Some(compacted), Some(4))
    );
    assert_eq!(residency(&s.queryd).await, ("memory".into(), compacted));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_evicted_dataset_answers_cold_at_the_version_it_served_in_memory() {
    let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    create_dataset(&store, "people", &[people(&[1, 2, 3])], &["id"]).await;
    let q = Queryd::new(store.clone(), Config::default()).await;
    q.post("/api/v1/cache/pin", &json!({"dataset": "people"}), true)
        .await;
    // Applied incrementally to the state in memory.
    let version = commit_delta(&store, "people", &people(&[4]), &[1]).await;
    assert_eq!(ids(&q, version).await, (vec![2, 3, 4], version));
    let (status, _) = q
        .post("/api/v1/cache/evict", &json!({"dataset": "people"}), true)
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        ids(&q, 0).await,
        (vec![2, 3, 4], version),
        "cold, same version"
    );
}
