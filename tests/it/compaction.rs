//! Compaction end to end: the shared core over storaged's remote object API on a local
//! directory (logical state unchanged row for row in storage order, files' key ranges
//! recorded, deltas committed during a run survive, two compactors at once), and compactord on a real socket (manual runs, history,
//! no-op runs, tokens, cron and threshold triggers, queryd notification).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::Int64Type;
use bytes::Bytes;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};
use strata_compactord::compact::{self, CompactOptions, CompactOutcome};
use strata_compactord_api::{CompactionRun, GcResponse, RunOutcome, Trigger};
use strata_daemon::config::Config;
use strata_queryd_api::internal::{NOTIFY_ROUTE, NotifyVersion};
use strata_shared::commit::Table;
use strata_shared::layout::DatasetName;
use strata_shared::manifest::{Manifest, Operation};
use strata_shared::{merge, parquet_io};
use strata_storaged_api::DeltaClient;
use tokio::net::TcpListener;
use tokio::sync::Barrier;

use strata_queryd_api::QuerydClient;
use strata_testkit::{Mode, Store, TestCluster};

use crate::common::{ADMIN, INTERNAL, commit_delta, create_dataset, named, people};

type State = BTreeMap<i64, Option<String>>;

fn storaged_config() -> Config {
    let mut config = Config::default();
    config.storaged.notify_urls = Some(vec![]);
    config
}

/// storaged alone, in this process, over a fresh directory.
async fn local_storaged() -> TestCluster {
    TestCluster::builder()
        .store(Store::LocalDir)
        .daemons(true, 0, false)
        .config(storaged_config())
        .start()
        .await
        .unwrap()
}

/// A table as compactord sees it: through storaged's internal object API.
fn remote_table(storaged: &TestCluster, name: &str) -> Table {
    let store: Arc<dyn ObjectStore> = Arc::new(storaged.remote_store());
    Table::new(store, DatasetName::new(name).unwrap())
}

fn rows_of(batch: &RecordBatch) -> Vec<(i64, Option<String>)> {
    let ids = batch.column(0).as_primitive::<Int64Type>();
    let names = batch.column(1).as_string::<i32>();
    (0..batch.num_rows())
        .map(|r| {
            (
                ids.value(r),
                names.is_valid(r).then(|| names.value(r).to_owned()),
            )
        })
        .collect()
}

async fn state(table: &Table) -> State {
    let manifest = table.load_latest().await.unwrap();
    let batch = merge::load_state(table.store().as_ref(), &manifest)
        .await
        .unwrap();
    rows_of(&batch).into_iter().collect()
}

/// The base files' rows in manifest order, asserting the `DataFile` figures right (rows, and
/// the smallest and largest key).
async fn base_in_storage_order(table: &Table, manifest: &Manifest) -> Vec<(i64, Option<String>)> {
    let mut all: Vec<(i64, Option<String>)> = Vec::new();
    for file in &manifest.base_files {
        let (_, batches) =
            parquet_io::read(table.store().as_ref(), &Path::parse(&file.path).unwrap())
                .await
                .unwrap();
        let rows: Vec<_> = batches.iter().flat_map(rows_of).collect();
        assert_eq!(file.rows, rows.len() as u64);
        let ids = rows.iter().map(|r| r.0);
        assert_eq!(file.key_min, ids.clone().min().map(|k| vec![k.into()]));
        assert_eq!(file.key_max, ids.max().map(|k| vec![k.into()]));
        all.extend(rows);
    }
    all
}

fn committed_version(outcome: &CompactOutcome) -> u64 {
    match outcome {
        CompactOutcome::Committed { version } => *version,
        other => panic!("expected a commit, got {other:?}"),
    }
}

#[tokio::test]
async fn compaction_over_the_remote_store_keeps_the_logical_state() {
    let storaged = local_storaged().await;
    let store = storaged.store();
    let mut rng = StdRng::seed_from_u64(7);
    // Base: multiples of 3 below 3000, in four files.
    let base: Vec<i64> = (0..1000).map(|i| i * 3).collect();
    let parts: Vec<RecordBatch> = base.chunks(250).map(people).collect();
    create_dataset(&store, "people", &parts, &["id"]).await;
    for round in 0..6 {
        let mut ids: Vec<i64> = (0..200).map(|_| rng.random_range(-50..3100)).collect();
        ids.sort_unstable();
        ids.dedup();
        let (ups, dels): (Vec<i64>, Vec<i64>) = ids.into_iter().partition(|_| rng.random_bool(0.6));
        commit_delta(
            &store,
            "people",
            &named(&ups, &format!("round {round}")),
            &dels,
        )
        .await;
    }
    let table = remote_table(&storaged, "people");
    let before = table.load_latest().await.unwrap();
    let expected = state(&table).await;
    let in_order = rows_of(&merge::load_state(store.as_ref(), &before).await.unwrap());

    let options = CompactOptions {
        target_file_bytes: 8 * 1024,
        batch_rows: 100,
    };
    let report = compact::compact(&table, &options).await.unwrap();
    let version = committed_version(&report.outcome);
    let after = table.load_latest().await.unwrap();
    assert_eq!(
        (after.version, after.operation.clone()),
        (version, Operation::Compact)
    );
    assert!(after.deltas.is_empty());
    let s = before.deltas.iter().map(|d| d.seq).max().unwrap();
    assert_eq!(after.base_watermark_seq, s);
    assert!(after.compactor_epoch > before.compactor_epoch);
    assert!(after.base_files.len() > 1, "the small target rolls over");
    assert!(report.stats.peak_batch_rows <= 100);
    // Row for row, in storage order, the reference state (invariants 5 and 7).
    assert_eq!(base_in_storage_order(&table, &after).await, in_order);
    assert_eq!(state(&table).await, expected);
    // Compaction deletes nothing: the old base and the merged deltas are still there.
    for path in before.referenced_paths() {
        store.head(&Path::parse(path).unwrap()).await.unwrap();
    }
}

#[tokio::test]
async fn a_delta_posted_during_compaction_survives_and_stays_visible() {
    let storaged = local_storaged().await;
    create_dataset(
        &storaged.store(),
        "people",
        &[people(&[1, 2, 3, 4])],
        &["id"],
    )
    .await;
    let deltas = DeltaClient::new(&storaged.storaged_url(), INTERNAL);
    let post = |body: Value| {
        let deltas = deltas.clone();
        async move {
            deltas
                .post_deltas(
                    "people",
                    "application/json",
                    Bytes::from(body.to_string()),
                    None,
                )
                .await
                .unwrap()
        }
    };
    post(json!({"upserts": [{"id": 2, "name": "two"}], "deletes": [{"id": 3}]})).await;
    let table = remote_table(&storaged, "people");
    let report = compact::compact_with(&table, &CompactOptions::default(), || async {
        // Lands after the merge read its inputs and before the compaction commit.
        let late =
            post(json!({"upserts": [{"id": 3, "name": "back"}], "deletes": [{"id": 1}]})).await;
        assert!(late.version > 0);
    })
    .await
    .unwrap();
    committed_version(&report.outcome);
    let after = table.load_latest().await.unwrap();
    assert_eq!(after.deltas.len(), 1, "the late delta is kept");
    assert!(after.deltas[0].seq > after.base_watermark_seq);
    let expected: State = [
        (2, Some("two".to_string())),
        (3, Some("back".to_string())),
        (4, Some("person 4".to_string())),
    ]
    .into();
    assert_eq!(state(&table).await, expected);
}

#[tokio::test]
async fn of_two_compactors_at_once_exactly_one_commits_and_the_other_is_fenced() {
    let storaged = local_storaged().await;
    let store = storaged.store();
    create_dataset(&store, "people", &[people(&[1, 2, 3])], &["id"]).await;
    commit_delta(&store, "people", &named(&[4], "new"), &[1]).await;
    let expected = state(&remote_table(&storaged, "people")).await;
    let first_version = Table::new(store.clone(), DatasetName::new("people").unwrap())
        .latest_version()
        .await
        .unwrap();

    // Both bump the epoch, both merge the same deltas, and only then do both try to commit.
    let barrier = Arc::new(Barrier::new(2));
    let run = |table: Table, barrier: Arc<Barrier>| async move {
        compact::compact_with(&table, &CompactOptions::default(), || async move {
            barrier.wait().await;
        })
        .await
        .unwrap()
    };
    let (a, b) = tokio::join!(
        run(remote_table(&storaged, "people"), barrier.clone()),
        run(remote_table(&storaged, "people"), barrier.clone()),
    );
    let outcomes = [&a.outcome, &b.outcome];
    let committed = outcomes
        .iter()
        .filter(|o| matches!(o, CompactOutcome::Committed { .. }))
        .count();
    let fenced = outcomes
        .iter()
        .filter(|o| matches!(o, CompactOutcome::Fenced { .. }))
        .count();
    assert_eq!((committed, fenced), (1, 1), "{outcomes:?}");
    // The loser wrote no compaction manifest: exactly one Compact version exists.
    let table = remote_table(&storaged, "people");
    let latest = table.latest_version().await.unwrap();
    let mut compactions = 0;
    for v in first_version + 1..=latest {
        if table.read_manifest(v).await.unwrap().operation == Operation::Compact {
            compactions += 1;
        }
    }
    assert_eq!(compactions, 1);
    assert_eq!(state(&table).await, expected);
}

/// compactord alone, in this process, reaching objects through `storaged`.
async fn start_compactord(storaged: &TestCluster, config: Config) -> TestCluster {
    TestCluster::builder()
        .daemons(false, 0, true)
        .storaged_at(&storaged.storaged_url())
        .config(config)
        .start()
        .await
        .unwrap()
}

/// Polls compactord's history (every 50 ms, up to 20 s) for a committed run of `trigger`.
async fn wait_for_run(compactord: &TestCluster, dataset: &str, trigger: Trigger) -> CompactionRun {
    let client = compactord.compactord();
    for _ in 0..400 {
        let runs = client.runs(Some(dataset)).await.unwrap();
        if let Some(run) = runs
            .into_iter()
            .find(|r| r.trigger == trigger && r.outcome == RunOutcome::Committed)
        {
            return run;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("no committed {trigger:?} run of {dataset} appeared");
}

/// compactord's config with no automatic triggers unless a test sets them.
fn compactord_config(extra_toml: &str) -> Config {
    let mut config = Config::parse(extra_toml).unwrap();
    config.compactord.check_interval = Duration::ZERO;
    config.storaged.notify_urls = Some(vec![]);
    config
}

/// A stand-in queryd that reports every notification it receives.
async fn notify_receiver() -> (String, tokio::sync::mpsc::UnboundedReceiver<(String, u64)>) {
    async fn notified(
        axum::extract::State(seen): axum::extract::State<
            tokio::sync::mpsc::UnboundedSender<(String, u64)>,
        >,
        axum::extract::Path(name): axum::extract::Path<String>,
        axum::Json(body): axum::Json<NotifyVersion>,
    ) {
        let _ = seen.send((name, body.version));
    }
    let (seen, received) = tokio::sync::mpsc::unbounded_channel();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let app = axum::Router::new()
        .route(NOTIFY_ROUTE, axum::routing::post(notified))
        .with_state(seen);
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, received)
}

#[tokio::test]
async fn compactord_compacts_on_demand_records_runs_and_notifies_queryd() {
    let storaged = local_storaged().await;
    create_dataset(&storaged.store(), "people", &[people(&[1, 2, 3])], &["id"]).await;
    commit_delta(&storaged.store(), "people", &named(&[2, 9], "new"), &[1]).await;
    let expected = state(&remote_table(&storaged, "people")).await;
    let (queryd_url, mut notified) = notify_receiver().await;
    let mut config = compactord_config("");
    config.storaged.notify_urls = Some(vec![queryd_url]);
    let compactord = start_compactord(&storaged, config).await;
    let http = reqwest::Client::new();
    let compact_url = format!(
        "{}/api/v1/datasets/people/compact",
        compactord.compactord_url()
    );

    // The admin route answers the finished run.
    let response = http
        .post(&compact_url)
        .header("x-admin-token", ADMIN)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    let run: CompactionRun = response.json().await.unwrap();
    assert_eq!(
        (run.trigger, run.outcome, run.dataset.as_str()),
        (Trigger::Manual, RunOutcome::Committed, "people")
    );
    assert_eq!((run.deltas_merged, run.rows_in, run.rows_out), (1, 6, 3));
    assert!(run.bytes_written > 0 && run.error.is_none());
    let version = run.version.unwrap();
    let table = remote_table(&storaged, "people");
    assert_eq!(table.latest_version().await.unwrap(), version);
    assert_eq!(state(&table).await, expected);
    let got = tokio::time::timeout(Duration::from_secs(20), notified.recv())
        .await
        .expect("queryd is notified")
        .unwrap();
    assert_eq!(got, ("people".to_string(), version));

    // Nothing left to merge: a no-op run through the internal twin, recorded and answered.
    let noop = compactord.compactord().compact("people").await.unwrap();
    assert_eq!((noop.outcome, noop.version), (RunOutcome::Noop, None));
    assert_eq!(
        table.latest_version().await.unwrap(),
        version,
        "a no-op writes nothing"
    );

    // History, newest first, on both routes.
    let runs = compactord.compactord().runs(Some("people")).await.unwrap();
    assert_eq!(runs, vec![noop.clone(), run.clone()]);
    assert!(
        compactord
            .compactord()
            .runs(Some("other"))
            .await
            .unwrap()
            .is_empty()
    );
    let response = http
        .get(format!(
            "{}/api/v1/compactions",
            compactord.compactord_url()
        ))
        .header("x-admin-token", ADMIN)
        .send()
        .await
        .unwrap();
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["runs"].as_array().unwrap().len(), 2);
    assert_eq!(body["runs"][1]["outcome"], "committed");

    // Refusals are JSON errors and start no run.
    let status = |r: reqwest::Response| r.status().as_u16();
    assert_eq!(status(http.post(&compact_url).send().await.unwrap()), 401);
    let wrong = http.post(&compact_url).header("x-admin-token", "nope");
    assert_eq!(status(wrong.send().await.unwrap()), 403);
    let unknown = compactord.compactord().compact("nope").await.unwrap_err();
    assert_eq!(unknown.status(), Some(404));
    let invalid = compactord.compactord().compact("_bad").await.unwrap_err();
    assert_eq!(invalid.status(), Some(400));
    assert_eq!(compactord.compactord().runs(None).await.unwrap().len(), 2);
}

#[tokio::test]
async fn compactord_cron_schedules_compact_and_a_dataset_schedule_replaces_the_global_one() {
    let storaged = local_storaged().await;
    for name in ["animals", "people"] {
        create_dataset(&storaged.store(), name, &[people(&[1, 2, 3])], &["id"]).await;
        commit_delta(&storaged.store(), name, &named(&[4], "new"), &[]).await;
    }
    // `animals` has its own schedule (once a year), so the global one leaves it alone.
    let config = compactord_config(
        r#"
        [compactord]
        schedule = "*/1 * * * * *"
        [[datasets]]
        name = "animals"
        source = "unused.parquet"
        compact_schedule = "0 0 0 1 1 *"
        "#,
    );
    let compactord = start_compactord(&storaged, config).await;
    let run = wait_for_run(&compactord, "people", Trigger::Schedule).await;
    assert_eq!(run.deltas_merged, 1);
    // The global job visits datasets in name order, so it had passed `animals` by now.
    let animals = remote_table(&storaged, "animals")
        .load_latest()
        .await
        .unwrap();
    assert_eq!(animals.deltas.len(), 1);
    assert!(
        compactord
            .compactord()
            .runs(Some("animals"))
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn compactord_compacts_when_a_threshold_is_crossed() {
    let storaged = local_storaged().await;
    create_dataset(&storaged.store(), "people", &[people(&[1, 2, 3])], &["id"]).await;
    let mut config = compactord_config("");
    config.compactord.check_interval = Duration::from_millis(200);
    config.compactord.max_deltas = 2;
    config.compactord.max_delta_ratio = 1e9;
    config.compactord.max_delta_age = Duration::from_secs(1_000_000);
    let compactord = start_compactord(&storaged, config).await;
    commit_delta(&storaged.store(), "people", &named(&[4], "a"), &[]).await;
    commit_delta(&storaged.store(), "people", &named(&[5], "b"), &[1]).await;
    let run = wait_for_run(&compactord, "people", Trigger::Threshold).await;
    assert_eq!(run.deltas_merged, 2);
    let after = remote_table(&storaged, "people")
        .load_latest()
        .await
        .unwrap();
    assert!(after.deltas.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strata_up_serves_the_same_rows_in_the_same_order_after_compaction() {
    let dir = tempfile::tempdir().unwrap();
    strata_testkit::write_parquet(
        &dir.path().join("src/people.parquet"),
        &[people(&[10, 20, 30, 40, 50, 60, 70, 80])],
    )
    .unwrap();
    let declared = "[[datasets]]\nname = \"people\"\nsource = \"src/people.parquet\"\nprimary_key = [\"id\"]\n";
    let strata = TestCluster::builder()
        .mode(Mode::Up)
        .store(Store::LocalDir)
        .dir(dir.path())
        .toml(declared)
        .start()
        .await
        .unwrap();
    let queryd = strata.queryd();
    let written = queryd
        .post_deltas(
            "people",
            &json!({"upserts": [{"id": 5, "name": "five"}, {"id": 20, "name": "twenty"}],
                      "deletes": [{"id": 30}]}),
            None,
        )
        .await
        .unwrap();
    let query = |min_version: u64| {
        let queryd = queryd.clone();
        async move {
            let answer = queryd
                .query("people", &json!({"min_version": min_version}))
                .await
                .unwrap();
            answer.body.data
        }
    };
    let ids = |rows: &[serde_json::Map<String, Value>]| -> Vec<i64> {
        rows.iter().map(|r| r["id"].as_i64().unwrap()).collect()
    };
    let before = query(written.body.version).await;
    assert_eq!(
        ids(&before),
        vec![10, 40, 50, 60, 70, 80, 5, 20],
        "storage order: base, then delta rows"
    );

    // Through queryd, which forwards to compactord.
    let run = queryd.compact("people").await.unwrap();
    assert_eq!(run.outcome, RunOutcome::Committed, "{run:?}");
    let version = run.version.unwrap();
    let after = query(version).await;
    assert_eq!(
        after, before,
        "the same rows in the same order (invariant 7)"
    );
    // queryd carried its state over to the compacted version: no state was built but the
    // first load, and the answer came from memory.
    let metric = |text: &str, name: &str| -> u64 {
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
            .unwrap_or_else(|| panic!("{name} is exported"))
    };
    let metrics = reqwest::get(format!("{}/metrics", queryd.url()))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(metric(&metrics, "strata_compactions_carried_total"), 1);
    assert_eq!(metric(&metrics, "strata_state_builds_total"), 1);
    // The compacted files answer the same, in the same order: read cold after an evict, and
    // loaded from them by a reload.
    queryd.evict("people").await.unwrap();
    assert_eq!(query(version).await, before, "from the compacted files");
    queryd.reload("people").await.unwrap();
    assert_eq!(query(version).await, before, "from a state built from them");

    // The run history, through queryd, per dataset.
    let runs = queryd.compactions("people").await.unwrap();
    assert_eq!(runs.runs[0].id, run.id, "{runs:?}");
    let refused = QuerydClient::new(queryd.url(), None)
        .compact("people")
        .await
        .unwrap_err();
    assert_eq!(refused.status(), Some(401), "compaction is an admin call");
}

#[tokio::test]
async fn gc_deletes_what_no_retained_manifest_references_and_nothing_else() {
    let storaged = local_storaged().await;
    create_dataset(&storaged.store(), "people", &[people(&[1, 2, 3])], &["id"]).await;
    commit_delta(&storaged.store(), "people", &named(&[2, 9], "new"), &[1]).await;
    commit_delta(&storaged.store(), "people", &named(&[3], "again"), &[]).await;
    let table = remote_table(&storaged, "people");
    let before = table.load_latest().await.unwrap();
    let expected = state(&table).await;
    // An orphan: a delta file whose commit never happened.
    let orphan = strata_shared::layout::delta_file_path(
        table.name(),
        chrono::Utc::now(),
        uuid::Uuid::now_v7(),
    );
    storaged
        .store()
        .put(&orphan, bytes::Bytes::from_static(b"partial").into())
        .await
        .unwrap();

    // With the default grace period nothing is young enough to go.
    let compactord = start_compactord(&storaged, compactord_config("")).await;
    let http = reqwest::Client::new();
    let gc = |url: String| {
        let http = http.clone();
        async move {
            let response = http
                .post(format!("{url}/api/v1/gc"))
                .header("x-admin-token", ADMIN)
                .send()
                .await
                .unwrap();
            assert_eq!(response.status().as_u16(), 200);
            response.json::<GcResponse>().await.unwrap()
        }
    };
    let run: CompactionRun = http
        .post(format!(
            "{}/api/v1/datasets/people/compact",
            compactord.compactord_url()
        ))
        .header("x-admin-token", ADMIN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(run.outcome, RunOutcome::Committed, "{run:?}");
    let report = gc(compactord.compactord_url()).await;
    assert_eq!(report.datasets[0].files_deleted, 0, "{report:?}");
    drop(compactord);

    // With no grace and one manifest kept (the epoch bump before the compaction still lists the
    // old files, so it must expire too): the old base, the merged deltas and the orphan go;
    // every file of the retained manifests stays and the state reads back the same.
    let mut config = compactord_config("[compactord]\ngc_grace = \"0s\"\ngc_keep_manifests = 1\n");
    config.compactord.gc_schedule = None;
    let compactord = start_compactord(&storaged, config).await;
    let report = gc(compactord.compactord_url()).await;
    let people = &report.datasets[0];
    assert!(!people.fenced && people.error.is_none(), "{report:?}");
    let old_files = before.base_files.len() + before.deltas.len() + 1;
    assert_eq!(people.files_deleted as usize, old_files, "{report:?}");
    assert!(people.manifests_deleted > 0);
    for path in before.referenced_paths().chain([orphan.as_ref()]) {
        let gone = storaged
            .store()
            .head(&object_store::path::Path::from(path))
            .await;
        assert!(gone.is_err(), "{path} should be gone");
    }
    let latest = table.load_latest().await.unwrap();
    for path in latest.referenced_paths() {
        storaged
            .store()
            .head(&object_store::path::Path::from(path))
            .await
            .unwrap_or_else(|e| panic!("{path} is referenced: {e}"));
    }
    assert_eq!(state(&table).await, expected);
    // Again: nothing left, and that is fine.
    let report = gc(compactord.compactord_url()).await;
    assert_eq!(report.datasets[0].files_deleted, 0);
}
