//! storaged's delta ingest route on a real socket over a local directory: commits and what
//! they read back as, every refusal (a JSON error that commits nothing), idempotent retries
//! across a restart, group commit under concurrent posters, binary bodies, and notifications.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, Int32Array, Int64Array, RecordBatch, StringArray, UInt8Array,
};
use arrow::datatypes::{DataType, Field, Int64Type, Schema};
use bytes::Bytes;
use object_store::ObjectStore;
use object_store::local::LocalFileSystem;
use serde_json::{Value, json};
use strata_daemon::config::Config;
use strata_shared::commit::Table;
use strata_shared::layout::DatasetName;
use strata_shared::manifest::{Manifest, Operation};
use strata_storaged_api::deltas::{DeltaClient, DeltaCommitted, deltas_path};
use strata_storaged_api::{ARROW_STREAM_CONTENT_TYPE, PARQUET_CONTENT_TYPE};

use strata_testkit::TestCluster;

use crate::common::{INTERNAL, arrow_stream, create_dataset, people, start_storaged};

// Every refusal of the route, in a file of its own.
mod refusals;

const JSON: &str = "application/json";
const MAX_DELTA_BYTES: usize = 256 * 1024;

fn config() -> Config {
    let mut config = Config::default();
    config.storaged.max_delta_bytes = MAX_DELTA_BYTES;
    config.storaged.notify_urls = Some(vec![]);
    config
}

fn local_store(dir: &Path) -> Arc<dyn ObjectStore> {
    Arc::new(LocalFileSystem::new_with_prefix(dir).unwrap())
}

struct Fixture {
    dir: tempfile::TempDir,
    storaged: TestCluster,
}

impl Fixture {
    /// storaged over a fresh directory holding `people` (ids 1–3, key `id`), `orders`
    /// (non-nullable `qty`) and `keyless` (no primary key).
    async fn new(config: Config) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let store = local_store(dir.path());
        create_dataset(&store, "people", &[people(&[1, 2, 3])], &["id"]).await;
        create_dataset(&store, "orders", &[orders(&[1])], &["id"]).await;
        create_dataset(&store, "keyless", &[people(&[1])], &[]).await;
        let storaged = start_storaged(store, config).await;
        Self { dir, storaged }
    }

    fn client(&self) -> DeltaClient {
        DeltaClient::new(&self.storaged.storaged_url(), INTERNAL)
    }

    async fn post_json(&self, dataset: &str, body: Value) -> DeltaCommitted {
        self.client()
            .post_deltas(dataset, JSON, Bytes::from(body.to_string()), None)
            .await
            .unwrap()
    }

    async fn latest(&self, dataset: &str) -> Manifest {
        let name = DatasetName::new(dataset).unwrap();
        Table::new(self.storaged.store(), name)
            .load_latest()
            .await
            .unwrap()
    }

    /// `people`'s state at its latest version, as id → name.
    async fn people_state(&self) -> BTreeMap<i64, Option<String>> {
        let manifest = self.latest("people").await;
        let state = strata_shared::merge::load_state(self.storaged.store().as_ref(), &manifest)
            .await
            .unwrap();
        let ids = state.column(0).as_primitive::<Int64Type>();
        let names = state.column(1).as_string::<i32>();
        (0..state.num_rows())
            .map(|r| {
                let name = names.is_valid(r).then(|| names.value(r).to_owned());
                (ids.value(r), name)
            })
            .collect()
    }
}

/// `id` (key), `qty` (Int32, not nullable), `note` (nullable).
fn orders(ids: &[i64]) -> RecordBatch {
    let schema = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("qty", DataType::Int32, false),
        Field::new("note", DataType::Utf8, true),
    ]));
    RecordBatch::try_new(
        schema,
        vec![
            Arc::new(Int64Array::from(ids.to_vec())),
            Arc::new(Int32Array::from(vec![1; ids.len()])),
            Arc::new(StringArray::from(vec![None::<&str>; ids.len()])),
        ],
    )
    .unwrap()
}

fn model(rows: &[(i64, &str)]) -> BTreeMap<i64, Option<String>> {
    rows.iter()
        .map(|(id, name)| (*id, Some((*name).to_owned())))
        .collect()
}

/// A raw POST; answers status and the JSON body (Null if it is not JSON).
async fn post_raw(
    url: &str,
    dataset: &str,
    content_type: Option<&str>,
    body: impl Into<reqwest::Body>,
    token: Option<&str>,
) -> (u16, Value) {
    let mut request = reqwest::Client::new()
        .post(format!("{url}{}", deltas_path(dataset)))
        .body(body);
    if let Some(ct) = content_type {
        request = request.header("content-type", ct);
    }
    if let Some(token) = token {
        request = request.header("x-internal-token", token);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let body = response.json().await.unwrap_or(Value::Null);
    (status, body)
}

fn people_delta(ids: &[i64], names: &[Option<&str>], ops: ArrayRef) -> RecordBatch {
    RecordBatch::try_from_iter(vec![
        ("id", Arc::new(Int64Array::from(ids.to_vec())) as ArrayRef),
        ("name", Arc::new(StringArray::from(names.to_vec()))),
        ("_op", ops),
    ])
    .unwrap()
}

#[tokio::test]
async fn a_json_post_commits_one_delta_that_reads_back() {
    let f = Fixture::new(config()).await;
    let committed = f
        .post_json(
            "people",
            json!({"upserts": [{"id": 4, "name": "four"}, {"id": 2, "name": "TWO"}],
                   "deletes": [{"id": 3}]}),
        )
        .await;
    assert_eq!(
        committed,
        DeltaCommitted {
            dataset: "people".into(),
            version: 1,
            upserts: 2,
            deletes: 1
        }
    );

    let manifest = f.latest("people").await;
    assert_eq!(manifest.version, 1);
    assert_eq!(manifest.deltas.len(), 1);
    let delta = &manifest.deltas[0];
    assert_eq!(
        (delta.seq, delta.rows, delta.upserts, delta.deletes),
        (1, 3, 2, 1)
    );
    let today = chrono::Utc::now().format("%Y-%m-%d").to_string();
    assert!(
        delta
            .path
            .starts_with(&format!("datasets/people/deltas/{today}/"))
            && delta.path.ends_with(".parquet"),
        "{}",
        delta.path
    );
    assert_eq!(
        f.people_state().await,
        model(&[(1, "person 1"), (2, "TWO"), (4, "four")])
    );

    // The file: the table's columns plus _op, sorted by key, no sequence number inside.
    let (schema, batches) = strata_shared::parquet_io::read(
        f.storaged.store().as_ref(),
        &object_store::path::Path::parse(&delta.path).unwrap(),
    )
    .await
    .unwrap();
    let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
    assert_eq!(names, vec!["id", "name", "_op"]);
    let ids = batches[0]
        .column(0)
        .as_primitive::<Int64Type>()
        .values()
        .to_vec();
    assert_eq!(ids, vec![2, 3, 4]);
    let ops = strata_shared::delta::op_column(&batches[0]).unwrap();
    assert_eq!(ops.values(), &[0, 1, 0]);
}

/// An expected `people` row: id and name (`None`: null).
type Row = (i64, Option<&'static str>);

#[tokio::test]
async fn upserts_deletes_and_reinserts_across_requests() {
    let f = Fixture::new(config()).await;
    let steps: Vec<(Value, Vec<Row>)> = vec![
        (
            json!({"upserts": [{"id": 1, "name": "one"}]}),
            vec![
                (1, Some("one")),
                (2, Some("person 2")),
                (3, Some("person 3")),
            ],
        ),
        (
            json!({"deletes": [{"id": 1}, {"id": 2}]}),
            vec![(3, Some("person 3"))],
        ),
        (
            json!({"upserts": [{"id": 1, "name": "back"}, {"id": 9, "name": "nine"}]}),
            vec![(1, Some("back")), (3, Some("person 3")), (9, Some("nine"))],
        ),
        (
            // An upsert that leaves a nullable column out sets it to null.
            json!({"upserts": [{"id": 9}], "deletes": [{"id": 3}]}),
            vec![(1, Some("back")), (9, None)],
        ),
    ];
    for (i, (body, expected)) in steps.into_iter().enumerate() {
        let committed = f.post_json("people", body).await;
        assert_eq!(committed.version, i as u64 + 1);
        let expected: BTreeMap<i64, Option<String>> = expected
            .into_iter()
            .map(|(id, name)| (id, name.map(str::to_owned)))
            .collect();
        assert_eq!(f.people_state().await, expected, "after step {i}");
    }
    let manifest = f.latest("people").await;
    let seqs: Vec<u64> = manifest.deltas.iter().map(|d| d.seq).collect();
    assert_eq!(seqs, vec![1, 2, 3, 4]);
}

#[tokio::test]
async fn a_version_committed_elsewhere_between_posts_is_built_on() {
    let f = Fixture::new(config()).await;
    assert_eq!(
        f.post_json("people", json!({"upserts": [{"id": 1, "name": "one"}]}))
            .await
            .version,
        1
    );
    // Another process (compactord, a second storaged) commits version 2 behind storaged's
    // back: storaged's latest manifest is now stale.
    let table = Table::new(f.storaged.store(), DatasetName::new("people").unwrap());
    let elsewhere = table
        .commit("elsewhere-1", Operation::Ingest, |_| Ok(()))
        .await
        .unwrap();
    assert_eq!(elsewhere.manifest.version, 2);
    let committed = f
        .post_json("people", json!({"upserts": [{"id": 2, "name": "two"}]}))
        .await;
    assert_eq!(committed.version, 3, "the commit lands after the other one");
    let manifest = f.latest("people").await;
    assert_eq!(manifest.version, 3);
    assert!(
        manifest.find_txn("elsewhere-1").is_some(),
        "nothing overwritten"
    );
    assert_eq!(
        f.people_state().await,
        model(&[(1, "one"), (2, "two"), (3, "person 3")])
    );
}

#[tokio::test]
async fn an_idempotency_key_retry_returns_the_original_even_after_a_restart() {
    let f = Fixture::new(config()).await;
    let client = f.client();
    let body = |name: &str| Bytes::from(json!({"upserts": [{"id": 7, "name": name}]}).to_string());
    let first = client
        .post_deltas("people", JSON, body("first"), Some("key-1"))
        .await
        .unwrap();
    assert_eq!((first.version, first.upserts, first.deletes), (1, 1, 0));
    // A retry, even with another body (reuse is not detected: the first body wins).
    let retry = client
        .post_deltas("people", JSON, body("second"), Some("key-1"))
        .await
        .unwrap();
    assert_eq!(retry, first);
    let other = client
        .post_deltas("people", JSON, body("third"), None)
        .await
        .unwrap();
    assert_eq!(other.version, 2);
    assert_eq!(
        client
            .post_deltas("people", JSON, body("again"), Some("key-1"))
            .await
            .unwrap(),
        first
    );
    assert_eq!(f.latest("people").await.deltas.len(), 2);
    // A key that cannot be stored is refused.
    let long = "k".repeat(300);
    let err = client
        .post_deltas("people", JSON, body("x"), Some(&long))
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(400), "{err}");

    // A new storaged on the same directory answers from the manifest.
    let Fixture { dir, storaged } = f;
    drop(storaged);
    let storaged = start_storaged(local_store(dir.path()), config()).await;
    let f = Fixture { dir, storaged };
    let after = f
        .client()
        .post_deltas("people", JSON, body("after restart"), Some("key-1"))
        .await
        .unwrap();
    assert_eq!(after, first);
    let manifest = f.latest("people").await;
    assert_eq!((manifest.version, manifest.deltas.len()), (2, 2));
    assert_eq!(
        f.people_state().await.get(&7),
        Some(&Some("third".to_owned()))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_posters_share_versions_and_match_the_model() {
    const POSTERS: usize = 32;
    const SHARED_KEYS: i64 = 4;
    let f = Fixture::new(config()).await;
    let client = f.client();
    // Poster i writes its own key 1000+i and one of four shared keys; posters 0..4 also have
    // a twin sending the same body with the same idempotency key at the same time.
    let mut tasks = Vec::new();
    for i in 0..POSTERS + 4 {
        let poster = i % POSTERS;
        let client = client.clone();
        tasks.push(tokio::spawn(async move {
            let shared = 100 + poster as i64 % SHARED_KEYS;
            let body = json!({"upserts": [
                {"id": 1000 + poster as i64, "name": format!("own {poster}")},
                {"id": shared, "name": format!("from {poster}")},
            ]});
            let key = (poster < 4).then(|| format!("twin-{poster}"));
            let committed = client
                .post_deltas(
                    "people",
                    JSON,
                    Bytes::from(body.to_string()),
                    key.as_deref(),
                )
                .await
                .unwrap();
            (poster, committed)
        }));
    }
    let mut acked: HashMap<usize, u64> = HashMap::new();
    for task in tasks {
        let (poster, committed) = task.await.unwrap();
        assert_eq!((committed.upserts, committed.deletes), (2, 0));
        if let Some(version) = acked.insert(poster, committed.version) {
            assert_eq!(
                version, committed.version,
                "twins share the original's answer"
            );
        }
    }
    assert_eq!(acked.len(), POSTERS, "every poster acknowledged");

    let manifest = f.latest("people").await;
    let latest = manifest.version;
    assert!(
        latest as usize <= POSTERS,
        "{latest} versions for {POSTERS} posters"
    );
    assert_eq!(latest, *acked.values().max().unwrap());
    // Each version adds one delta whose rows are exactly its posters' rows.
    assert_eq!(manifest.deltas.len() as u64, latest);
    for (n, delta) in manifest.deltas.iter().enumerate() {
        let version = n as u64 + 1;
        assert_eq!(delta.seq, version);
        let posters: Vec<usize> = (0..POSTERS).filter(|p| acked[p] == version).collect();
        assert!(!posters.is_empty(), "version {version} acknowledged nobody");
        let (_, batches) = strata_shared::parquet_io::read(
            f.storaged.store().as_ref(),
            &object_store::path::Path::parse(&delta.path).unwrap(),
        )
        .await
        .unwrap();
        let batch = arrow::compute::concat_batches(&batches[0].schema(), &batches).unwrap();
        let ids = batch.column(0).as_primitive::<Int64Type>();
        let names = batch.column(1).as_string::<i32>();
        let mut expected_ids: Vec<i64> = posters
            .iter()
            .flat_map(|p| [1000 + *p as i64, 100 + *p as i64 % SHARED_KEYS])
            .collect();
        expected_ids.sort_unstable();
        expected_ids.dedup();
        assert_eq!(ids.values().to_vec(), expected_ids, "version {version}");
        for r in 0..batch.num_rows() {
            let id = ids.value(r);
            if id < 1000 {
                let writer: usize = names.value(r)["from ".len()..].parse().unwrap();
                assert!(
                    posters.contains(&writer),
                    "version {version} holds a row of poster {writer}"
                );
                assert_eq!(writer as i64 % SHARED_KEYS, id - 100);
            }
        }
    }
    // Twins were written once.
    for twin in 0..4 {
        let id = format!("client-twin-{twin}");
        assert_eq!(
            manifest.recent_txns.iter().filter(|t| t.id == id).count(),
            1
        );
    }

    // The final state: own keys as written; a shared key holds a value of one of the posters
    // at the highest version that touched it (within a version the later arrival won).
    let state = f.people_state().await;
    for p in 0..POSTERS {
        assert_eq!(state[&(1000 + p as i64)], Some(format!("own {p}")));
    }
    for key in 0..SHARED_KEYS {
        let writers: Vec<usize> = (0..POSTERS)
            .filter(|p| *p as i64 % SHARED_KEYS == key)
            .collect();
        let top = writers.iter().map(|p| acked[p]).max().unwrap();
        let value = state[&(100 + key)].clone().unwrap();
        let writer: usize = value["from ".len()..].parse().unwrap();
        assert!(
            writers.contains(&writer) && acked[&writer] == top,
            "key {} = {value}",
            100 + key
        );
    }
    assert_eq!(state.len(), 3 + POSTERS + SHARED_KEYS as usize);
}

#[tokio::test]
async fn arrow_and_parquet_bodies_with_op() {
    let f = Fixture::new(config()).await;
    let client = f.client();
    let upserts = people_delta(
        &[5, 1],
        &[Some("five"), Some("uno")],
        Arc::new(UInt8Array::from(vec![0, 0])),
    );
    let committed = client
        .post_deltas(
            "people",
            ARROW_STREAM_CONTENT_TYPE,
            Bytes::from(arrow_stream(&upserts)),
            None,
        )
        .await
        .unwrap();
    assert_eq!(
        (committed.version, committed.upserts, committed.deletes),
        (1, 2, 0)
    );

    // Parquet, with an Int32 _op and a value in a delete row (dropped).
    let mixed = people_delta(
        &[2, 6],
        &[Some("ignored"), Some("six")],
        Arc::new(Int32Array::from(vec![1, 0])),
    );
    let parquet =
        strata_shared::parquet_io::encode(mixed.schema(), std::slice::from_ref(&mixed)).unwrap();
    let committed = client
        .post_deltas("people", "application/x-parquet", parquet, None)
        .await
        .unwrap();
    assert_eq!(
        (committed.version, committed.upserts, committed.deletes),
        (2, 1, 1)
    );
    assert_eq!(
        f.people_state().await,
        model(&[(1, "uno"), (3, "person 3"), (5, "five"), (6, "six")])
    );
}

#[tokio::test]
async fn every_commit_notifies_queryd() {
    use axum::extract::{Path as UrlPath, State};
    use axum::http::HeaderMap;
    use strata_queryd_api::internal::{NOTIFY_ROUTE, NotifyVersion};

    type Seen = tokio::sync::mpsc::UnboundedSender<(String, u64, Option<String>)>;
    async fn notified(
        State(seen): State<Seen>,
        UrlPath(name): UrlPath<String>,
        headers: HeaderMap,
        axum::Json(body): axum::Json<NotifyVersion>,
    ) {
        let token = headers
            .get("x-internal-token")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let _ = seen.send((name, body.version, token));
    }
    let (seen, mut received) = tokio::sync::mpsc::unbounded_channel();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let queryd_url = format!("http://{}", listener.local_addr().unwrap());
    let app = axum::Router::new()
        .route(NOTIFY_ROUTE, axum::routing::post(notified))
        .with_state(seen);
    tokio::spawn(async move { axum::serve(listener, app).await });

    let mut config = config();
    // An unreachable queryd next to the real one never fails a write.
    config.storaged.notify_urls = Some(vec!["http://127.0.0.1:9".into(), queryd_url]);
    let f = Fixture::new(config).await;
    for version in 1..=2 {
        let committed = f
            .post_json("people", json!({"deletes": [{"id": version}]}))
            .await;
        assert_eq!(committed.version, version as u64);
        let got = tokio::time::timeout(std::time::Duration::from_secs(20), received.recv())
            .await
            .expect("a notification arrives")
            .unwrap();
        assert_eq!(
            got,
            ("people".into(), version as u64, Some(INTERNAL.into()))
        );
    }
}
