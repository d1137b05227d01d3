//! The compaction crash matrix, with real processes: storaged, queryd and compactord run as
//! separate `strata` processes; writers post deltas through queryd while compactord (which
//! compacts whenever a dataset has a few deltas) is killed with SIGKILL at random moments
//! and restarted, many times over. Afterwards, and after a final compaction, every
//! acknowledged write is there and nothing else changed — on a local directory and on
//! SeaweedFS S3.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::json;
use strata_compactord_api::RunOutcome;
use strata_testkit::{Mode, Store, TestCluster, write_parquet};

use crate::deltas_crash::{Writer, check_writers};
use crate::deltas_model::{Client, base_items, batch, random_request};

const WRITERS: i64 = 3;

/// compactord compacts as soon as a dataset has 3 deltas, checking every 50 ms, so kills land
/// in every phase of a run. GC is off: this matrix is about compaction.
const SETTINGS: &str = r#"
[queryd]
poll_interval = "200ms"
[compactord]
check_interval = "50ms"
max_deltas = 3
gc_schedule = ""
[[datasets]]
name = "items"
source = "src/items.parquet"
primary_key = ["id"]
pin = true
"#;

/// storaged, queryd and compactord as separate processes on `store`.
async fn crash_matrix(store: Store, trials: u64) {
    let dir = tempfile::tempdir().unwrap();
    write_parquet(
        &dir.path().join("src/items.parquet"),
        &[batch(&base_items())],
    )
    .unwrap();
    let mut cluster = TestCluster::builder()
        .mode(Mode::Processes)
        .store(store)
        .dir(dir.path())
        .toml(SETTINGS)
        .start()
        .await
        .unwrap();
    let client = Arc::new(Client::new(&cluster.queryd_url(0), cluster.admin_token()));
    client.rows(json!({"page_size": 1})).await;
    let base: BTreeMap<i64, _> = base_items().into_iter().map(|r| (r.id, r)).collect();
    let writers: Vec<Arc<tokio::sync::Mutex<Writer>>> =
        (0..WRITERS).map(|_| Default::default()).collect();
    let stop = Arc::new(AtomicBool::new(false));
    let tasks: Vec<_> = (0..WRITERS)
        .map(|w| {
            let (client, writer, stop) =
                (client.clone(), writers[w as usize].clone(), stop.clone());
            tokio::spawn(async move {
                let mut rng = StdRng::seed_from_u64(w as u64 + 7);
                let mut round = 0;
                while !stop.load(Ordering::Relaxed) {
                    let request = random_request(&mut rng, round, |id| id % WRITERS == w);
                    writer.lock().await.in_flight = Some(request.clone());
                    // storaged and queryd stay up: every write must be acknowledged.
                    let version = client.try_delta(&request.0, &request.1).await;
                    assert!(
                        version.is_some(),
                        "a write failed while only compactord died"
                    );
                    let mut writer = writer.lock().await;
                    writer.in_flight = None;
                    Writer::apply(&mut writer.acked, &request.0, &request.1);
                    round += 1;
                }
            })
        })
        .collect();

    let manifest = |cluster: &TestCluster| {
        let client = cluster.storaged();
        async move { client.manifest("items", None).await.unwrap() }
    };
    // First let one compaction commit under the writers (how long one takes depends on the
    // machine), then kill at random moments: before, during and after runs.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while manifest(&cluster).await.base_watermark_seq == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "no compaction committed under the writers:\n{}",
            cluster.logs("compactord")
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut rng = StdRng::seed_from_u64(trials);
    for _ in 0..trials {
        tokio::time::sleep(Duration::from_millis(rng.random_range(50..1000))).await;
        cluster.restart("compactord").await.unwrap();
    }
    stop.store(true, Ordering::Relaxed);
    for task in tasks {
        task.await.unwrap();
    }

    // A final compaction (through queryd), then every acknowledged write must be there.
    let run = client.queryd.compact("items").await.unwrap();
    assert!(
        matches!(run.outcome, RunOutcome::Committed | RunOutcome::Noop),
        "{run:?}\n{}",
        cluster.log("compactord")
    );
    let history = client.queryd.compactions("items").await.unwrap();
    assert!(!history.runs.is_empty());
    let latest = run.version;
    if let Some(version) = latest {
        let (served, _) = client
            .rows(json!({"page_size": 1, "min_version": version}))
            .await;
        assert!(served >= version);
    }
    check_writers(&client, &base, &writers, trials).await;
    let last = manifest(&cluster).await;
    assert!(
        last.deltas.is_empty(),
        "the final compaction merged every delta"
    );
    let acked: usize =
        futures::future::join_all(writers.iter().map(|w| async { w.lock().await.acked.len() }))
            .await
            .into_iter()
            .sum();
    assert!(
        acked > 50,
        "only {acked} keys were acknowledged: the test wrote too little"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_compactord_never_loses_a_write_local_store() {
    crash_matrix(Store::LocalDir, 10).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_compactord_never_loses_a_write_seaweedfs() {
    crash_matrix(Store::SeaweedFs, 6).await;
}
