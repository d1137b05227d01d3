//! A queryd restarted while writes continue, as separate processes (storaged, a queryd that
//! takes the writes, the queryd that restarts): its cold path answers key lookups at once
//! whatever the number of deltas (each delta file is read from the store once), its rebuild converges while the writes go on, and with
//! storaged down a read of a dataset not in memory is a 503 with `Retry-After`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use rand::SeedableRng;
use rand::rngs::StdRng;
use serde_json::{Value, json};
use strata_testkit::{Mode, Store, TestCluster, write_parquet};

use crate::deltas_crash::Writer;
use crate::deltas_model::{
    Client, Item, KEY_SPACE, base_items, batch, filler_items, random_request,
};

const WRITERS: i64 = 3;

/// No compactord and no notifications: the queryds learn of versions by polling.
const SETTINGS: &str = r#"
[storaged]
notify_urls = []
[queryd]
poll_interval = "100ms"
[[datasets]]
name = "items"
source = "src/items.parquet"
primary_key = ["id"]
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_queryd_serves_and_converges_under_writes() {
    let dir = tempfile::tempdir().unwrap();
    let mut items = base_items();
    // Bulk, so the rebuild takes a while and lookups reach the base files.
    items.extend(filler_items(200_000));
    write_parquet(&dir.path().join("src/items.parquet"), &[batch(&items)]).unwrap();
    let base: BTreeMap<i64, Item> = items.into_iter().map(|i| (i.id, i)).collect();
    // storaged, the queryd that takes the writes (`queryd-0`), the one that restarts
    // (`queryd-1`).
    let mut cluster = TestCluster::builder()
        .mode(Mode::Processes)
        .store(Store::LocalDir)
        .dir(dir.path())
        .daemons(true, 2, false)
        .toml(SETTINGS)
        .start()
        .await
        .unwrap();
    let (writes_url, reads_url) = (cluster.queryd_url(0), cluster.queryd_url(1));
    let http = reqwest::Client::new();
    let writer = Client::new(&writes_url, cluster.admin_token());
    let reader = Client::new(&reads_url, cluster.admin_token());

    // Writers post small deltas all along: hundreds of delta files pile up (no compactord).
    let writer = Arc::new(writer);
    let models: Vec<Arc<tokio::sync::Mutex<Writer>>> =
        (0..WRITERS).map(|_| Default::default()).collect();
    let stop = Arc::new(AtomicBool::new(false));
    let tasks: Vec<_> = (0..WRITERS)
        .map(|w| {
            let (client, model, stop) = (writer.clone(), models[w as usize].clone(), stop.clone());
            tokio::spawn(async move {
                let mut rng = StdRng::seed_from_u64(40 + w as u64);
                let mut round = 0;
                let mut newest = 0;
                while !stop.load(Ordering::Relaxed) {
                    let request = random_request(&mut rng, round, |id| id % WRITERS == w);
                    let version = client.try_delta(&request.0, &request.1).await;
                    newest = newest.max(version.expect("the writes' queryd stays up"));
                    Writer::apply(&mut model.lock().await.acked, &request.0, &request.1);
                    round += 1;
                }
                newest
            })
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let (version, _) = writer.rows(json!({"page_size": 1})).await;
        if version >= 500 {
            break;
        }
        assert!(Instant::now() < deadline, "only {version} versions written");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // The restart: lookups are answered (from the files, while the state is rebuilt) and
    // the rebuild reaches memory while the writers go on.
    cluster.restart("queryd-1").await.unwrap();
    let (mut lookups, mut resident) = (0, false);
    let mut slowest = Duration::ZERO;
    let deadline = Instant::now() + Duration::from_secs(120);
    while !resident {
        let id = (lookups * 37) % KEY_SPACE;
        let asked = Instant::now();
        let lookup = json!({"predicates": [{"col": "id", "op": "eq", "val": id}]});
        if let Err(e) = reader.queryd.query("items", &lookup).await {
            panic!(
                "lookup {lookups} of id {id}: {e}\n{}",
                cluster.log("queryd-1")
            );
        }
        slowest = slowest.max(asked.elapsed());
        lookups += 1;
        resident = reader
            .queryd
            .status("items")
            .await
            .is_ok_and(|s| s.residency == "memory");
        assert!(
            Instant::now() < deadline,
            "still {:?} after {lookups} lookups while writes go on\n{}",
            reader.queryd.status("items").await,
            cluster.log("queryd-1")
        );
    }
    eprintln!("restarted: {lookups} lookups answered while it rebuilt, the slowest in {slowest:?}");
    stop.store(true, Ordering::Relaxed);
    let mut newest = 0;
    for task in tasks {
        newest = newest.max(task.await.unwrap());
    }

    // Each delta file was read from the store once, by the lookups and the rebuild together
    // (before, every cold lookup read every delta file of its version: 1 000 versions of
    // writes made the first lookup after a restart a 504 at a 5 s timeout, and every one after).
    let metrics = crate::common::metrics_text(&http, &reads_url).await;
    let files_read: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("strata_delta_files_read_total "))
        .and_then(|n| n.trim().parse().ok())
        .expect("the metric is exported");
    let manifest = cluster.storaged().manifest("items", None).await.unwrap();
    assert!(
        files_read > 0 && files_read <= manifest.deltas.len() as u64,
        "{files_read} delta files read for {} in the manifest, over {lookups} lookups",
        manifest.deltas.len()
    );

    // Every acknowledged write is served by the restarted queryd.
    let (served, rows) = reader
        .rows(
            json!({"predicates": [{"col": "id", "op": "lt", "val": KEY_SPACE}],
                     "order_by": [{"col": "id"}], "page_size": 100_000, "min_version": newest}),
        )
        .await;
    assert!(served >= newest);
    let mut expected: BTreeMap<i64, Option<Item>> = base
        .range(..KEY_SPACE)
        .map(|(id, i)| (*id, Some(i.clone())))
        .collect();
    for model in &models {
        for (id, item) in &model.lock().await.acked {
            expected.insert(*id, item.clone());
        }
    }
    let want: Vec<_> = expected.values().flatten().map(Item::json).collect();
    assert_eq!(rows, want);

    // storaged down: a dataset not in memory is answered with a clear 503 and Retry-After.
    reader.queryd.evict("items").await.unwrap();
    cluster.kill("storaged");
    let response = http
        .post(format!("{reads_url}/api/v1/datasets/items/count"))
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    let (code, retry) = (
        response.status().as_u16(),
        response.headers().contains_key("retry-after"),
    );
    let answer: Value = response.json().await.unwrap();
    assert_eq!((code, retry), (503, true), "{answer}");
    assert_eq!(answer["kind"], "unavailable", "{answer}");
    assert!(
        !answer["error"].as_str().unwrap_or("").contains("127.0.0.1"),
        "{answer}"
    );
    cluster.kill("queryd-1");
}
