//! Acknowledged writes survive SIGKILL: writers post through queryd while the whole
//! `strata up` process is killed at random moments and restarted; every acknowledged write is
//! there afterwards, and a request in flight at the kill landed wholly or not at all. The
//! writer model here is shared with the compaction crash matrix (`compaction_crash`).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Map, Value, json};

use crate::deltas_model::{Client, Item, base_items, random_request, start};

/// What one writer knows: the last acknowledged value of every key it wrote (`None`:
/// deleted), and the request it was sending when the server died.
#[derive(Default)]
pub(crate) struct Writer {
    pub(crate) acked: BTreeMap<i64, Option<Item>>,
    pub(crate) in_flight: Option<(Vec<Item>, Vec<i64>)>,
}

impl Writer {
    pub(crate) fn apply(
        state: &mut BTreeMap<i64, Option<Item>>,
        upserts: &[Item],
        deletes: &[i64],
    ) {
        for id in deletes {
            state.insert(*id, None);
        }
        for item in upserts {
            state.insert(item.id, Some(item.clone()));
        }
    }
}

/// Writers post while `strata up` is killed with SIGKILL at a random moment, several times
/// over; after each restart every acknowledged write is there. A request that was in flight
/// at the kill may or may not have landed — but wholly or not at all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_writes_survive_sigkill() {
    const WRITERS: i64 = 4;
    let dir = tempfile::tempdir().unwrap();
    let mut rng = StdRng::seed_from_u64(0x0c0f_fee5);
    let base: BTreeMap<i64, Item> = base_items().into_iter().map(|r| (r.id, r)).collect();
    let writers: Vec<Arc<tokio::sync::Mutex<Writer>>> =
        (0..WRITERS).map(|_| Default::default()).collect();
    for trial in 0..3 {
        let mut strata = start(dir.path()).await;
        let client = Arc::new(Client::new(&strata.queryd_url(0), strata.admin_token()));
        check_writers(&client, &base, &writers, trial).await;

        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let tasks: Vec<_> = (0..WRITERS)
            .map(|w| {
                let (client, writer, stop) =
                    (client.clone(), writers[w as usize].clone(), stop.clone());
                let mut rng = StdRng::seed_from_u64(trial * 100 + w as u64);
                tokio::spawn(async move {
                    let mut round = 0;
                    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                        let request = random_request(&mut rng, round, |id| id % WRITERS == w);
                        writer.lock().await.in_flight = Some(request.clone());
                        match client.try_delta(&request.0, &request.1).await {
                            Some(_) => {
                                let mut writer = writer.lock().await;
                                writer.in_flight = None;
                                Writer::apply(&mut writer.acked, &request.0, &request.1);
                            }
                            None => return,
                        }
                        round += 1;
                    }
                })
            })
            .collect();
        tokio::time::sleep(std::time::Duration::from_millis(rng.random_range(200..900))).await;
        strata.kill("strata");
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        for task in tasks {
            task.await.unwrap();
        }
    }
    let strata = start(dir.path()).await;
    let client = Client::new(&strata.queryd_url(0), strata.admin_token());
    check_writers(&client, &base, &writers, 3).await;
    let acked: usize =
        futures::future::join_all(writers.iter().map(|w| async { w.lock().await.acked.len() }))
            .await
            .into_iter()
            .sum();
    assert!(
        acked > 100,
        "only {acked} keys were acknowledged: the test wrote too little"
    );
}

/// The served rows equal the base with every writer's acknowledged writes, each writer's
/// in-flight request applied wholly or not at all (which one is then remembered as acked).
pub(crate) async fn check_writers(
    client: &Client,
    base: &BTreeMap<i64, Item>,
    writers: &[Arc<tokio::sync::Mutex<Writer>>],
    trial: u64,
) {
    let (_, rows) = client.rows(json!({"page_size": 100_000})).await;
    let served: BTreeMap<i64, Map<String, Value>> = rows
        .into_iter()
        .map(|r| (r["id"].as_i64().unwrap(), r))
        .collect();
    let served_of = |id: i64| served.get(&id).cloned();
    let expect = |state: &BTreeMap<i64, Option<Item>>, id: i64| match state.get(&id) {
        Some(v) => v.as_ref().map(Item::json),
        None => base.get(&id).map(Item::json),
    };
    let mut touched = BTreeSet::new();
    for writer in writers {
        let mut writer = writer.lock().await;
        let mut landed = writer.acked.clone();
        let mut keys: BTreeSet<i64> = writer.acked.keys().copied().collect();
        if let Some((upserts, deletes)) = writer.in_flight.take() {
            Writer::apply(&mut landed, &upserts, &deletes);
            keys.extend(upserts.iter().map(|r| r.id).chain(deletes.iter().copied()));
            let all_acked = keys
                .iter()
                .all(|&id| served_of(id) == expect(&writer.acked, id));
            let all_landed = keys.iter().all(|&id| served_of(id) == expect(&landed, id));
            assert!(
                all_acked || all_landed,
                "trial {trial}: a write was lost or torn"
            );
            if all_landed {
                writer.acked = landed;
            }
        }
        for &id in &keys {
            assert_eq!(
                served_of(id),
                expect(&writer.acked, id),
                "trial {trial}: key {id}"
            );
        }
        touched.extend(keys);
    }
    for (id, item) in base {
        if !touched.contains(id) {
            assert_eq!(
                served_of(*id),
                Some(item.json()),
                "trial {trial}: untouched {id}"
            );
        }
    }
    let extra = served
        .keys()
        .filter(|id| !touched.contains(id) && !base.contains_key(id))
        .count();
    assert_eq!(extra, 0, "trial {trial}: rows nobody wrote");
}
