//! Row-level updates against the real `strata up` binary, checked against a model.
//!
//! Thousands of random upserts and deletes — updates of one key many times, deletes of
//! missing keys, delete then re-insert, concurrent writers — posted to queryd over HTTP.
//! Every answer must be readable at once from the same queryd (read your writes), and at
//! many versions every query path (count, key lookup, indexed `eq`, ordered scan, group-by,
//! Arrow, the cold path after an evict) must equal an in-test model. Idempotent retries and
//! every kind of bad input are checked too: a refused request never moves the version and
//! never takes a daemon down.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use arrow::array::{Int64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Map, Value, json};
use strata_queryd_api::{ClientError, QuerydClient};
use strata_testkit::{Mode, Store, TestCluster, write_parquet};

const BASE_ROWS: i64 = 2_000;
/// Keys are drawn from `0..KEY_SPACE`: about half exist in the base (even ids).
pub(crate) const KEY_SPACE: i64 = 6_000;
const GROUPS: [&str; 5] = ["north", "south", "east", "west", "centre"];

#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Item {
    pub(crate) id: i64,
    grp: &'static str,
    val: i64,
    note: Option<String>,
}

impl Item {
    pub(crate) fn json(&self) -> Map<String, Value> {
        let mut m = Map::new();
        m.insert("id".into(), json!(self.id));
        m.insert("grp".into(), json!(self.grp));
        m.insert("val".into(), json!(self.val));
        m.insert(
            "note".into(),
            self.note.clone().map_or(Value::Null, Value::from),
        );
        m
    }
}

pub(crate) fn base_items() -> Vec<Item> {
    (0..BASE_ROWS)
        .map(|i| Item {
            id: i * 2,
            grp: GROUPS[(i % 5) as usize],
            val: (i * 7919) % 1000,
            note: (i % 3 != 0).then(|| format!("base {i}")),
        })
        .collect()
}

/// `n` more rows, keyed from [`KEY_SPACE`] up, which [`random_request`] never touches: bulk
/// for tests that need a bigger table than the model's keys.
pub(crate) fn filler_items(n: i64) -> Vec<Item> {
    (KEY_SPACE..KEY_SPACE + n)
        .map(|id| Item {
            id,
            grp: GROUPS[(id % 5) as usize],
            val: id % 997,
            note: (id % 4 == 0).then(|| format!("filler {id}")),
        })
        .collect()
}

pub(crate) fn batch(items: &[Item]) -> RecordBatch {
    let schema = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("grp", DataType::Utf8, false),
        Field::new("val", DataType::Int64, false),
        Field::new("note", DataType::Utf8, true),
    ]));
    RecordBatch::try_new(
        schema,
        vec![
            Arc::new(Int64Array::from_iter_values(items.iter().map(|r| r.id))),
            Arc::new(StringArray::from_iter_values(items.iter().map(|r| r.grp))),
            Arc::new(Int64Array::from_iter_values(items.iter().map(|r| r.val))),
            Arc::new(StringArray::from_iter(
                items.iter().map(|r| r.note.as_deref()),
            )),
        ],
    )
    .unwrap()
}

/// The model: the base in storage order, the live rows, and the version that last wrote
/// each key a delta touched.
struct Model {
    base: Vec<Item>,
    rows: BTreeMap<i64, Item>,
    written: BTreeMap<i64, u64>,
}

impl Model {
    fn apply(&mut self, upserts: &[Item], deletes: &[i64], version: u64) {
        for id in deletes {
            self.rows.remove(id);
            self.written.insert(*id, version);
        }
        for item in upserts {
            self.rows.insert(item.id, item.clone());
            self.written.insert(item.id, version);
        }
    }

    /// Storage order: base rows no delta touched, in base order; then the surviving rows
    /// deltas wrote, by the version that wrote them, then by key.
    fn storage_order(&self) -> Vec<&Item> {
        let mut rewritten: Vec<&Item> = self
            .rows
            .values()
            .filter(|r| self.written.contains_key(&r.id))
            .collect();
        rewritten.sort_by_key(|r| (self.written[&r.id], r.id));
        self.base
            .iter()
            .filter(|r| !self.written.contains_key(&r.id))
            .chain(rewritten)
            .collect()
    }
}

/// The model tests' view of one queryd's `items`: the typed client for the requests meant to
/// succeed, raw HTTP ([`Client::send`]) for the ones meant to be refused.
pub(crate) struct Client {
    pub(crate) queryd: QuerydClient,
    pub(crate) http: reqwest::Client,
    token: String,
}

impl Client {
    pub(crate) fn new(url: &str, token: &str) -> Self {
        let http = reqwest::Client::new();
        Self {
            queryd: QuerydClient::with_http(url, Some(token), http.clone()),
            http,
            token: token.to_owned(),
        }
    }

    /// POSTs `body` as it is, with the admin token: status, headers and the JSON answer.
    async fn send(
        &self,
        path: &str,
        body: String,
        content_type: &str,
    ) -> (u16, reqwest::header::HeaderMap, Value) {
        let response = self
            .http
            .post(format!("{}{path}", self.queryd.url()))
            .header("content-type", content_type)
            .header("x-admin-token", &self.token)
            .body(body)
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let bytes = response.bytes().await.unwrap();
        let value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        (status, headers, value)
    }

    /// Posts a delta; the committed version, or `None` if the request failed in transit or
    /// with a 5xx (the server went away: the write may or may not have landed).
    pub(crate) async fn try_delta(&self, upserts: &[Item], deletes: &[i64]) -> Option<u64> {
        match self
            .queryd
            .post_deltas("items", &delta_body(upserts, deletes), None)
            .await
        {
            Ok(committed) => Some(committed.body.version),
            Err(ClientError::Status {
                status, message, ..
            }) => {
                assert!(status >= 500, "{status}: {message}");
                None
            }
            Err(_) => None,
        }
    }

    /// Posts a delta; returns the committed version.
    async fn delta(&self, upserts: &[Item], deletes: &[i64], key: Option<&str>) -> u64 {
        let committed = self
            .queryd
            .post_deltas("items", &delta_body(upserts, deletes), key)
            .await
            .unwrap();
        let answer = committed.body;
        assert_eq!(answer.upserts, upserts.len() as u64);
        assert_eq!(answer.deletes, deletes.len() as u64);
        assert_eq!(committed.version, Some(answer.version));
        answer.version
    }

    pub(crate) async fn rows(&self, request: Value) -> (u64, Vec<Map<String, Value>>) {
        let answer = self
            .queryd
            .query("items", &request)
            .await
            .unwrap_or_else(|e| panic!("{request}: {e}"));
        (answer.version.unwrap(), answer.body.data)
    }

    async fn count(&self, request: &Value) -> u64 {
        self.queryd
            .count("items", request)
            .await
            .unwrap()
            .body
            .count
    }

    async fn version(&self) -> u64 {
        let answer = self.queryd.count("items", &json!({})).await.unwrap();
        answer.version.unwrap()
    }
}

fn delta_body(upserts: &[Item], deletes: &[i64]) -> Value {
    json!({
        "upserts": upserts.iter().map(Item::json).collect::<Vec<_>>(),
        "deletes": deletes.iter().map(|id| json!({"id": id})).collect::<Vec<_>>(),
    })
}

fn as_json(items: &[&Item]) -> Vec<Map<String, Value>> {
    items.iter().map(|r| r.json()).collect()
}

/// Every query path against the model, at `version`.
async fn check_all(client: &Client, model: &Model, version: u64, rng: &mut StdRng, label: &str) {
    let order = model.storage_order();
    let all = json!({"page_size": 100_000});
    let (v, got) = client.rows(all.clone()).await;
    assert!(v >= version, "{label}: served {v}, wrote {version}");
    assert_eq!(got, as_json(&order), "{label}: storage-order scan");

    let count = client.count(&json!({})).await;
    assert_eq!(count, model.rows.len() as u64, "{label}: count");

    let mut by_val: Vec<&Item> = model.rows.values().collect();
    by_val.sort_by(|a, b| b.val.cmp(&a.val).then(a.id.cmp(&b.id)));
    let (_, got) = client
        .rows(json!({"order_by": [{"col": "val", "dir": "desc"}], "page": 2, "page_size": 50}))
        .await;
    let want: Vec<&Item> = by_val.iter().skip(50).take(50).copied().collect();
    assert_eq!(got, as_json(&want), "{label}: ordered page");

    for grp in GROUPS {
        let request =
            json!({"predicates": [{"col": "grp", "op": "eq", "val": grp}], "page_size": 100_000});
        let (_, got) = client.rows(request.clone()).await;
        let want: Vec<&Item> = order.iter().filter(|r| r.grp == grp).copied().collect();
        assert_eq!(got, as_json(&want), "{label}: indexed eq {grp}");
        let count = client.count(&request).await;
        assert_eq!(count, want.len() as u64, "{label}: indexed count {grp}");
    }
    let request = json!({"predicates": [{"col": "grp", "op": "in", "val": ["east", "west"]}, {"col": "val", "op": "lt", "val": 500}], "page": 2, "page_size": 40});
    let (_, got) = client.rows(request).await;
    let want: Vec<&Item> = order
        .iter()
        .filter(|r| matches!(r.grp, "east" | "west") && r.val < 500)
        .skip(40)
        .take(40)
        .copied()
        .collect();
    assert_eq!(got, as_json(&want), "{label}: in + range page");

    for _ in 0..25 {
        let id = rng.random_range(0..KEY_SPACE);
        let (_, got) = client
            .rows(json!({"predicates": [{"col": "id", "op": "eq", "val": id}]}))
            .await;
        let want: Vec<&Item> = model.rows.get(&id).into_iter().collect();
        assert_eq!(got, as_json(&want), "{label}: lookup {id}");
    }

    let (_, got) = client
        .rows(json!({"group_by": ["grp"], "aggregations": [
            {"col": "id", "op": "count", "alias": "count"},
            {"col": "val", "op": "sum", "alias": "total"}
        ]}))
        .await;
    let mut groups: BTreeMap<&str, (i64, i64)> = BTreeMap::new();
    for r in model.rows.values() {
        let g = groups.entry(r.grp).or_default();
        g.0 += 1;
        g.1 += r.val;
    }
    let want: Vec<Value> = groups
        .iter()
        .map(|(grp, (n, total))| json!({"grp": grp, "count": n, "total": total}))
        .collect();
    let got: Vec<Value> = got.into_iter().map(Value::Object).collect();
    assert_eq!(got, want, "{label}: group-by");

    // Arrow: the same rows, in the same order.
    let bytes = client.queryd.query_arrow("items", &all).await.unwrap().body;
    let reader =
        arrow::ipc::reader::StreamReader::try_new(std::io::Cursor::new(bytes), None).unwrap();
    let ids: Vec<i64> = reader
        .flat_map(|b| {
            let b = b.unwrap();
            b.column(0)
                .as_any()
                .downcast_ref::<Int64Array>()
                .unwrap()
                .values()
                .to_vec()
        })
        .collect();
    let want: Vec<i64> = order.iter().map(|r| r.id).collect();
    assert_eq!(ids, want, "{label}: Arrow");
}

async fn check_cold(client: &Client, model: &Model, label: &str) {
    client.queryd.evict("items").await.unwrap();
    let order = model.storage_order();
    let (_, got) = client.rows(json!({"page_size": 100_000})).await;
    assert_eq!(got, as_json(&order), "{label}: cold scan");
    let request = json!({"predicates": [{"col": "grp", "op": "eq", "val": "south"}], "page": 3, "page_size": 25});
    let (_, got) = client.rows(request).await;
    let want: Vec<&Item> = order
        .iter()
        .filter(|r| r.grp == "south")
        .skip(50)
        .take(25)
        .copied()
        .collect();
    assert_eq!(got, as_json(&want), "{label}: cold indexed page");
    client.queryd.pin("items").await.unwrap();
}

fn random_item(rng: &mut StdRng, id: i64, round: usize) -> Item {
    Item {
        id,
        grp: GROUPS[rng.random_range(0..GROUPS.len())],
        val: rng.random_range(0..1000),
        note: rng.random_bool(0.7).then(|| format!("r{round} {id}")),
    }
}

/// A random request: distinct keys, some upserts, some deletes (of present and missing keys).
pub(crate) fn random_request(
    rng: &mut StdRng,
    round: usize,
    keys: impl Fn(i64) -> bool,
) -> (Vec<Item>, Vec<i64>) {
    let n = if rng.random_bool(0.1) {
        rng.random_range(50..200)
    } else {
        rng.random_range(1..12)
    };
    let mut ids = BTreeSet::new();
    while ids.len() < n {
        // A few hot keys are updated again and again.
        let id = if rng.random_bool(0.15) {
            rng.random_range(0..8) * 4
        } else {
            rng.random_range(0..KEY_SPACE)
        };
        if keys(id) {
            ids.insert(id);
        }
    }
    let mut upserts = Vec::new();
    let mut deletes = Vec::new();
    for id in ids {
        if rng.random_bool(0.3) {
            deletes.push(id);
        } else {
            upserts.push(random_item(rng, id, round));
        }
    }
    (upserts, deletes)
}

/// `strata up` on a local directory serving `items` alone (keyed by `id`, pinned): the
/// model's base rows and `filler` more (keys [`random_request`] never touches), with
/// `settings` (TOML) before the declaration.
pub(crate) async fn items_up(dir: &std::path::Path, filler: i64, settings: &str) -> TestCluster {
    let mut items = base_items();
    items.extend(filler_items(filler));
    write_parquet(&dir.join("src/items.parquet"), &[batch(&items)]).unwrap();
    let settings = format!(
        "{settings}\n[[datasets]]\nname = \"items\"\nsource = \"src/items.parquet\"\n\
         primary_key = [\"id\"]\npin = true\n"
    );
    TestCluster::builder()
        .mode(Mode::Up)
        .store(Store::LocalDir)
        .dir(dir)
        .toml(&settings)
        .start()
        .await
        .unwrap()
}

/// `strata up` on a local directory with `items` (keyed, pinned) and `nokey` declared.
/// Threshold compaction is off: it would move rows deltas wrote into the base mid-test,
/// changing the storage order the model follows.
pub(crate) async fn start(dir: &std::path::Path) -> TestCluster {
    write_parquet(&dir.join("src/items.parquet"), &[batch(&base_items())]).unwrap();
    write_parquet(
        &dir.join("src/nokey.parquet"),
        &[batch(&base_items()[..10])],
    )
    .unwrap();
    let settings = r#"
[compactord]
check_interval = "0s"

[[datasets]]
name = "items"
source = "src/items.parquet"
primary_key = ["id"]
pin = true

[[datasets]]
name = "nokey"
source = "src/nokey.parquet"
"#;
    TestCluster::builder()
        .mode(Mode::Up)
        .store(Store::LocalDir)
        .dir(dir)
        .toml(settings)
        .start()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_writes_match_the_model_on_every_path() {
    let dir = tempfile::tempdir().unwrap();
    let strata = start(dir.path()).await;
    let client = Arc::new(Client::new(&strata.queryd_url(0), strata.admin_token()));
    let mut rng = StdRng::seed_from_u64(0x5747_a7a5);
    let mut model = Model {
        base: base_items(),
        rows: base_items().into_iter().map(|r| (r.id, r)).collect(),
        written: BTreeMap::new(),
    };
    check_all(&client, &model, 0, &mut rng, "v0").await;

    let mut version = 0;
    let mut posted = 0usize;
    for round in 0..240 {
        if round % 4 == 3 {
            // Concurrent writers on disjoint keys: they may share a version (group commit).
            let requests: Vec<(Vec<Item>, Vec<i64>)> = (0..4)
                .map(|w| random_request(&mut rng, round, |id| id % 4 == w))
                .collect();
            let tasks: Vec<_> = requests
                .iter()
                .cloned()
                .map(|(upserts, deletes)| {
                    let client = client.clone();
                    tokio::spawn(async move {
                        let v = client.delta(&upserts, &deletes, None).await;
                        // Read your writes: this queryd answered after serving `v`.
                        for item in &upserts {
                            let (served, got) = client
                                .rows(json!({"predicates": [{"col": "id", "op": "eq", "val": item.id}]}))
                                .await;
                            assert!(served >= v);
                            assert_eq!(got, vec![item.json()], "concurrent write of {}", item.id);
                        }
                        v
                    })
                })
                .collect();
            for (task, (upserts, deletes)) in tasks.into_iter().zip(&requests) {
                let v = task.await.unwrap();
                version = version.max(v);
                model.apply(upserts, deletes, v);
                posted += upserts.len() + deletes.len();
            }
        } else {
            let (upserts, deletes) = random_request(&mut rng, round, |_| true);
            let v = client.delta(&upserts, &deletes, None).await;
            assert!(v > version, "versions ascend");
            version = v;
            model.apply(&upserts, &deletes, v);
            posted += upserts.len() + deletes.len();
            // Read your writes, without min_version.
            if let Some(item) = upserts.first() {
                let (_, got) = client
                    .rows(json!({"predicates": [{"col": "id", "op": "eq", "val": item.id}]}))
                    .await;
                assert_eq!(got, vec![item.json()], "read your write of {}", item.id);
            }
            if let Some(id) = deletes.first() {
                let (_, got) = client
                    .rows(json!({"predicates": [{"col": "id", "op": "eq", "val": id}]}))
                    .await;
                assert!(got.is_empty(), "deleted {id} is gone");
            }
        }
        if round % 20 == 19 {
            check_all(
                &client,
                &model,
                version,
                &mut rng,
                &format!("round {round}"),
            )
            .await;
        }
        if round % 60 == 59 {
            check_cold(&client, &model, &format!("round {round}")).await;
        }
    }
    assert!(posted >= 2_000, "posted {posted} row operations");
    check_all(&client, &model, version, &mut rng, "final").await;
    assert!(strata.log("strata").contains("strata is up"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_and_bad_input_never_move_the_version() {
    let dir = tempfile::tempdir().unwrap();
    let mut strata = start(dir.path()).await;
    let client = Client::new(&strata.queryd_url(0), strata.admin_token());

    // An idempotent retry returns the original version and writes nothing.
    let one = [Item {
        id: 1,
        grp: "north",
        val: 1,
        note: None,
    }];
    let v1 = client.delta(&one, &[2], Some("retry-me")).await;
    let two = [Item {
        id: 3,
        grp: "south",
        val: 3,
        note: None,
    }];
    let v2 = client.delta(&two, &[], None).await;
    assert!(v2 > v1);
    assert_eq!(
        client.delta(&one, &[2], Some("retry-me")).await,
        v1,
        "retry"
    );
    assert_eq!(client.version().await, v2, "a retry commits nothing");

    let items = "/api/v1/datasets/items/deltas";
    let bad: Vec<(&str, &str, String, u16)> = vec![
        ("malformed JSON", items, "{\"upserts\": [".into(), 400),
        (
            "unknown column",
            items,
            json!({"upserts": [{"id": 5, "grp": "x", "val": 1, "colour": "red"}]}).to_string(),
            400,
        ),
        (
            "string for an int",
            items,
            json!({"upserts": [{"id": "five", "grp": "x", "val": 1}]}).to_string(),
            400,
        ),
        (
            "float for an int",
            items,
            json!({"upserts": [{"id": 5, "grp": "x", "val": 1.5}]}).to_string(),
            400,
        ),
        (
            "missing non-nullable column",
            items,
            json!({"upserts": [{"id": 5, "val": 1}]}).to_string(),
            400,
        ),
        (
            "null key",
            items,
            json!({"upserts": [{"id": null, "grp": "x", "val": 1}]}).to_string(),
            400,
        ),
        (
            "key twice",
            items,
            json!({"upserts": [{"id": 5, "grp": "x", "val": 1}], "deletes": [{"id": 5}]})
                .to_string(),
            400,
        ),
        (
            "delete without its key",
            items,
            json!({"deletes": [{"grp": "x"}]}).to_string(),
            400,
        ),
        (
            "unknown field",
            items,
            json!({"upserts": [], "inserts": []}).to_string(),
            400,
        ),
        (
            "unknown dataset",
            "/api/v1/datasets/nope/deltas",
            json!({"deletes": [{"id": 1}]}).to_string(),
            404,
        ),
        (
            "dataset without a key",
            "/api/v1/datasets/nokey/deltas",
            json!({"deletes": [{"id": 1}]}).to_string(),
            409,
        ),
    ];
    for (label, path, body, want) in bad {
        let (status, _, answer) = client.send(path, body, "application/json").await;
        assert_eq!(status, want, "{label}: {answer}");
        assert!(
            answer["error"].is_string(),
            "{label}: a JSON error: {answer}"
        );
    }
    let (status, _, answer) = client
        .send(
            items,
            json!({"deletes": [{"id": 1}]}).to_string(),
            "text/plain",
        )
        .await;
    assert_eq!(status, 415, "wrong content type: {answer}");
    // A key queryd cannot forward as text is refused, not dropped (a retry would write twice).
    let response = client
        .http
        .post(format!("{}{items}", client.queryd.url()))
        .header("x-admin-token", &client.token)
        .header(
            "idempotency-key",
            reqwest::header::HeaderValue::from_bytes("café".as_bytes()).unwrap(),
        )
        .json(&json!({"deletes": [{"id": 1}]}))
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let answer: Value = response.json().await.unwrap_or(Value::Null);
    assert_eq!(
        (status, &answer["kind"]),
        (400, &json!("bad_request")),
        "{answer}"
    );
    for (token, want) in [(None, 401), (Some("wrong"), 403)] {
        let mut request = client
            .http
            .post(format!("{}{items}", client.queryd.url()))
            .json(&json!({"deletes": [{"id": 1}]}));
        if let Some(t) = token {
            request = request.header("x-admin-token", t);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status().as_u16(), want);
    }
    assert_eq!(
        client.version().await,
        v2,
        "refused requests commit nothing"
    );
    assert!(
        strata.process("strata").unwrap().try_wait().is_none(),
        "the daemon is alive"
    );
    let (_, got) = client
        .rows(json!({"predicates": [{"col": "id", "op": "in", "val": [1, 2, 3]}]}))
        .await;
    assert_eq!(got, vec![one[0].json(), two[0].json()]);
}
