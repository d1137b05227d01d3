//! queryd's HTTP contract, queryd alone in this process over a memory store: shapes, strictness (every bad
//! input is a JSON error with the right status), admin auth, the memcache's pin/evict/LRU
//! behaviour, reload, compression and metrics.

use std::sync::Arc;

use arrow::array::{Int64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use object_store::ObjectStore;
use object_store::memory::InMemory;
use serde_json::{Value, json};
use strata_daemon::config::Config;

use crate::common::{Queryd, create_dataset, people};

/// `n` rows of a table with awkward column names.
fn odd_names(n: i64) -> RecordBatch {
    let schema = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("we\"ird\\name", DataType::Utf8, true),
    ]));
    RecordBatch::try_new(
        schema,
        vec![
            Arc::new(Int64Array::from_iter_values(1..=n)),
            Arc::new(StringArray::from_iter_values(
                (1..=n).map(|i| format!("v{i}")),
            )),
        ],
    )
    .unwrap()
}

async fn setup(config: Config) -> (Arc<dyn ObjectStore>, Queryd) {
    let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    create_dataset(&store, "people", &[people(&[1, 2, 3, 4, 5])], &["id"]).await;
    create_dataset(&store, "odd", &[odd_names(3)], &["id"]).await;
    let queryd = Queryd::new(store.clone(), config).await;
    (store, queryd)
}

const QUERY: &str = "/api/v1/datasets/people/query";

#[tokio::test]
async fn list_schema_and_status_have_datap_rs_shapes() {
    let (_, q) = setup(Config::default()).await;
    let (status, list) = q.get("/api/v1/datasets").await;
    assert_eq!(status, 200);
    let names: Vec<&str> = list["datasets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["odd", "people"]);
    let people = &list["datasets"][1];
    for field in [
        "state",
        "kind",
        "residency",
        "columns",
        "rows",
        "lazy",
        "version",
    ] {
        assert!(
            !people[field].is_null(),
            "list entry lacks {field}: {people}"
        );
    }
    assert_eq!(people["rows"], 5);

    q.post("/api/v1/cache/pin", &json!({"dataset": "people"}), true)
        .await;
    let (status, schema) = q.get("/api/v1/datasets/people/schema").await;
    assert_eq!(status, 200);
    assert_eq!(schema["rows"], 5);
    assert_eq!(schema["primary_key"], json!(["id"]));
    assert_eq!(
        schema["columns"][0],
        json!({"name": "id", "logical": "int", "sql_type": "Int64", "nullable": false})
    );
    assert_eq!(schema["columns"][1]["logical"], "utf8");
    assert_eq!(schema["sample"], json!({"id": 1, "name": "person 1"}));

    let (status, st) = q.get("/api/v1/datasets/people/status").await;
    assert_eq!(status, 200);
    assert_eq!(st["name"], "people");
    assert_eq!(st["residency"], "memory");

    for path in [
        "/api/v1/datasets/nope/schema",
        "/api/v1/datasets/nope/status",
    ] {
        let (status, body) = q.get(path).await;
        assert_eq!(status, 404, "{path}");
        assert!(body["error"].as_str().unwrap().contains("nope"));
    }
}

#[tokio::test]
async fn bad_requests_are_json_errors_with_the_right_status() {
    let (_, q) = setup(Config::default()).await;
    let cases: Vec<(&str, String, u16)> = vec![
        ("malformed json", "{\"columns\": [".into(), 400),
        ("wrong type", json!({"page": "2"}).to_string(), 400),
        ("negative page", json!({"page": -1}).to_string(), 400),
        ("unknown field", json!({"predicate": []}).to_string(), 400),
        (
            "unknown column",
            json!({"columns": ["nope"]}).to_string(),
            400,
        ),
        (
            "unknown operator",
            json!({"predicates": [{"col": "id", "op": "EQ", "val": 1}]}).to_string(),
            400,
        ),
        (
            "string for an int",
            json!({"predicates": [{"col": "id", "op": "eq", "val": "1"}]}).to_string(),
            400,
        ),
        (
            "fraction for an int",
            json!({"predicates": [{"col": "id", "op": "eq", "val": 1.5}]}).to_string(),
            400,
        ),
        (
            // Read as 0.0 by serde_json: it matched the zeros (issue 24).
            "a number that underflows to zero",
            r#"{"predicates": [{"col": "id", "op": "eq", "val": 1e-400}]}"#.into(),
            400,
        ),
        (
            "empty in",
            json!({"predicates": [{"col": "id", "op": "in", "val": []}]}).to_string(),
            400,
        ),
        (
            "aggregations without group_by",
            json!({"aggregations": [{"op": "count"}]}).to_string(),
            400,
        ),
        (
            "like on an int",
            json!({"predicates": [{"col": "id", "op": "like", "val": "1%"}]}).to_string(),
            400,
        ),
    ];
    for path in [
        QUERY,
        "/api/v1/datasets/people/count",
        "/api/v1/datasets/people/query/stream",
    ] {
        for (label, body, want) in &cases {
            let (status, headers, body) = q.post_raw(path, body.clone(), &[], false).await;
            assert_eq!(
                status,
                *want,
                "{label} on {path}: {}",
                String::from_utf8_lossy(&body)
            );
            assert_eq!(headers["content-type"], "application/json", "{label}");
            let error: Value = serde_json::from_slice(&body).unwrap();
            assert!(error["error"].is_string(), "{label}: {error}");
        }
    }

    // No content type: 415; too big: 413; unknown dataset: 404.
    let request = q.request(reqwest::Method::POST, QUERY).body("{}");
    let (status, _, body) = q.send(request).await;
    assert_eq!(status, 415, "{}", String::from_utf8_lossy(&body));
    let huge = json!({"columns": vec!["id"; 300_000]}).to_string();
    assert!(huge.len() > 1 << 20);
    let (status, _, _) = q.post_raw(QUERY, huge, &[], false).await;
    assert_eq!(status, 413);
    let (status, body) = q
        .post("/api/v1/datasets/nope/query", &json!({}), false)
        .await;
    assert_eq!((status, body["error"].is_string()), (404, true));
    let (status, _) = q
        .post(&format!("{QUERY}?format=xml"), &json!({}), false)
        .await;
    assert_eq!(status, 400);
}

#[tokio::test]
async fn column_names_are_escaped_and_empty_arrow_results_keep_their_schema() {
    let (_, q) = setup(Config::default()).await;
    let (status, body) = q
        .post("/api/v1/datasets/odd/query", &json!({}), false)
        .await;
    assert_eq!(status, 200);
    assert_eq!(body["data"][2]["we\"ird\\name"], "v3");

    let (status, _, bytes) = q
        .post_raw(
            "/api/v1/datasets/odd/query",
            json!({"predicates": [{"col": "id", "op": "gt", "val": 100}]}).to_string(),
            &[("accept", "application/vnd.apache.arrow.stream")],
            false,
        )
        .await;
    assert_eq!(status, 200);
    let reader =
        arrow::ipc::reader::StreamReader::try_new(std::io::Cursor::new(bytes.to_vec()), None)
            .unwrap();
    assert_eq!(reader.schema().fields().len(), 2);
    assert_eq!(reader.schema().field(1).name(), "we\"ird\\name");
}

#[tokio::test]
async fn paging_is_clamped_and_echoed() {
    let (_, q) = setup(Config::default()).await;
    let (_, body) = q
        .post(QUERY, &json!({"page": 0, "page_size": 1_000_000}), false)
        .await;
    assert_eq!(
        (body["page"].clone(), body["page_size"].clone()),
        (json!(1), json!(100_000))
    );
    let (_, body) = q.post(QUERY, &json!({"page_size": 0}), false).await;
    assert_eq!(body["page_size"], 1);
    assert_eq!(body["data"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn admin_calls_need_the_token() {
    let (_, q) = setup(Config::default()).await;
    let reload = "/api/v1/datasets/people/reload";
    let (status, body) = q.post(reload, &json!({}), false).await;
    assert_eq!(status, 401, "{body}");
    let (status, _, _) = q
        .post_raw(reload, "{}".into(), &[("x-admin-token", "wrong")], false)
        .await;
    assert_eq!(status, 403);
    let (status, body) = q.post(reload, &json!({}), true).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["dataset"], "people");
    assert_eq!(body["rows"], 5);
    assert_eq!(body["version"], 0);
    assert!(body["elapsed_ms"].is_u64());
    for path in [
        "/api/v1/cache/pin",
        "/api/v1/cache/unpin",
        "/api/v1/cache/evict",
    ] {
        let (status, _) = q.post(path, &json!({"dataset": "people"}), false).await;
        assert_eq!(status, 401, "{path}");
    }

    // With no admin token configured at all, admin calls are refused.
    let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let open = Queryd::start(
        strata_testkit::TestCluster::builder()
            .object_store(store)
            .configure(|config| config.auth.admin_token = None),
    )
    .await;
    let (status, _) = open.post(reload, &json!({}), true).await;
    assert_eq!(status, 403);
}

#[tokio::test]
async fn pin_evict_and_lru_by_bytes() {
    let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let big = |first: i64| people(&(first..first + 20_000).collect::<Vec<_>>());
    create_dataset(&store, "a", &[big(0)], &["id"]).await;
    create_dataset(&store, "b", &[big(0)], &["id"]).await;
    // Room for one of the two.
    let probe = Queryd::new(store.clone(), Config::default()).await;
    let (_, entry) = probe
        .post("/api/v1/cache/pin", &json!({"dataset": "a"}), true)
        .await;
    let one = entry["bytes"].as_u64().unwrap();
    assert!(one > 20_000 * 8, "accounted bytes: {entry}");
    let mut config = Config::default();
    config.queryd.cache_bytes = one + one / 2;
    let q = Queryd::new(store, config).await;

    let entry = |stats: &Value, name: &str| {
        stats["datasets"]
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d["dataset"] == name)
            .cloned()
            .unwrap()
    };

    // Loading b after a evicts a (least recently used).
    q.post("/api/v1/datasets/a/reload", &json!({}), true).await;
    q.post("/api/v1/datasets/b/reload", &json!({}), true).await;
    let s = stats(&q).await;
    assert_eq!(entry(&s, "a")["residency"], "cold");
    assert_eq!(entry(&s, "b")["residency"], "memory");
    assert_eq!(s["evictions"], 1);
    assert!(s["used_bytes"].as_u64().unwrap() <= s["capacity_bytes"].as_u64().unwrap());

    // A pinned dataset stays; the other one does not fit and is served cold.
    let (status, pinned) = q
        .post("/api/v1/cache/pin", &json!({"dataset": "a"}), true)
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        (pinned["pinned"].clone(), pinned["residency"].clone()),
        (json!(true), json!("memory"))
    );
    let s = stats(&q).await;
    assert_eq!(entry(&s, "b")["residency"], "cold");
    q.post("/api/v1/datasets/b/reload", &json!({}), true).await;
    let s = stats(&q).await;
    assert_eq!(entry(&s, "a")["residency"], "memory");
    assert_eq!(entry(&s, "b")["residency"], "cold");
    // Cold datasets still answer, with the same rows.
    let (status, body) = q
        .post(
            "/api/v1/datasets/b/count",
            &json!({"predicates": [{"col": "id", "op": "lt", "val": 10}]}),
            false,
        )
        .await;
    assert_eq!((status, body["count"].clone()), (200, json!(10)));

    // Evicting a pinned dataset unpins it.
    let (_, evicted) = q
        .post("/api/v1/cache/evict", &json!({"dataset": "a"}), true)
        .await;
    assert_eq!(
        (evicted["pinned"].clone(), evicted["residency"].clone()),
        (json!(false), json!("cold"))
    );
    let s = stats(&q).await;
    assert_eq!(s["used_bytes"], 0);
    assert!(entry(&s, "a")["hits"].as_u64().is_some());
    let (status, _) = q
        .post("/api/v1/cache/pin", &json!({"dataset": "nope"}), true)
        .await;
    assert_eq!(status, 404);
}

async fn stats(q: &Queryd) -> Value {
    q.get("/api/v1/cache/stats").await.1
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eviction_and_reload_never_break_requests_in_flight() {
    let (_, q) = setup(Config::default()).await;
    let q = Arc::new(q);
    let mut tasks = Vec::new();
    for i in 0..64 {
        let reader = q.clone();
        tasks.push(tokio::spawn(async move {
            let q = reader;
            let filter = json!({"predicates": [{"col": "id", "op": "gte", "val": (i % 5) + 1}]});
            let (status, body) = q
                .post("/api/v1/datasets/people/count", &filter, false)
                .await;
            assert_eq!(status, 200, "{body}");
            assert_eq!(body["count"], 5 - (i % 5));
        }));
        let admin = match i % 3 {
            0 => "/api/v1/cache/evict",
            1 => "/api/v1/cache/pin",
            _ => "/api/v1/datasets/people/reload",
        };
        let body = json!({"dataset": "people"});
        let q = q.clone();
        tasks.push(tokio::spawn(async move {
            let (status, body) = q.post(admin, &body, true).await;
            assert_eq!(status, 200, "{admin}: {body}");
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
}

#[tokio::test]
async fn json_is_compressed_on_request_and_arrow_never() {
    let (_, q) = setup(Config::default()).await;
    let body = json!({"page_size": 1000}).to_string();
    let (_, headers, _) = q
        .post_raw(QUERY, body.clone(), &[("accept-encoding", "gzip")], false)
        .await;
    assert_eq!(headers["content-encoding"], "gzip");
    let (_, headers, _) = q
        .post_raw(QUERY, body.clone(), &[("accept-encoding", "zstd")], false)
        .await;
    assert_eq!(headers["content-encoding"], "zstd");
    let (_, headers, _) = q
        .post_raw(
            QUERY,
            body,
            &[
                ("accept-encoding", "gzip"),
                ("accept", "application/vnd.apache.arrow.stream"),
            ],
            false,
        )
        .await;
    assert!(headers.get("content-encoding").is_none());
    assert_eq!(
        headers["content-type"],
        "application/vnd.apache.arrow.stream"
    );
}

#[tokio::test]
async fn metrics_count_routes_statuses_and_cache() {
    let (_, q) = setup(Config::default()).await;
    q.post(QUERY, &json!({}), false).await;
    q.post(QUERY, &json!({"columns": ["nope"]}), false).await;
    q.post("/api/v1/datasets/people/reload", &json!({}), true)
        .await;
    let request = q.request(reqwest::Method::GET, "/metrics");
    let (status, _, body) = q.send(request).await;
    assert_eq!(status, 200);
    let text = String::from_utf8(body.to_vec()).unwrap();
    for line in [
        "strata_http_requests_total{route=\"/api/v1/datasets/{name}/query\",method=\"POST\",status=\"200\"} 1",
        "strata_http_requests_total{route=\"/api/v1/datasets/{name}/query\",method=\"POST\",status=\"400\"} 1",
        "strata_http_request_duration_seconds_count{route=\"/api/v1/datasets/{name}/query\"} 2",
        "strata_reload_duration_seconds_count",
        "strata_cache_misses_total",
        "strata_cache_used_bytes",
    ] {
        assert!(text.contains(line), "missing {line:?} in\n{text}");
    }
}

#[tokio::test]
async fn a_request_over_the_time_limit_is_a_504() {
    let mut config = Config::default();
    // Zero: no query can finish in time (work that finishes at all takes some time).
    config.queryd.request_timeout = std::time::Duration::ZERO;
    let (_, q) = setup(config).await;
    let (status, body) = q.post(QUERY, &json!({"group_by": ["name"]}), false).await;
    assert_eq!(status, 504, "{body}");
    assert!(body["error"].as_str().unwrap().contains("timed out"));
}

/// What datap-rs's clients and probes rely on: `/readyz` with the dataset count once the
/// catalog is known (503 before), `/version` naming the service and its engine, and a bare
/// `POST …/count` counting every row.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_version_and_a_bare_count_answer_as_datap_rs_does() {
    // Nothing listens there: the catalog cannot be read.
    let nowhere = format!("http://127.0.0.1:{}", strata_testkit::free_port());
    let store = strata_storaged_api::RemoteStore::new(&nowhere, "token");
    let unready = Queryd::new(Arc::new(store), Config::default()).await;
    let (status, body) = unready.get("/readyz").await;
    assert_eq!(
        (status, &body["status"]),
        (503, &json!("not ready")),
        "{body}"
    );
    assert_eq!(body["kind"], "unavailable", "{body}");
    assert!(!body.to_string().contains("127.0.0.1"), "{body}");
    // So are reads: a 503 to retry, not a 502, and the endpoint stays in the log.
    let (status, headers, body) = unready
        .post_raw("/api/v1/datasets/people/count", "{}".into(), &[], false)
        .await;
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    assert_eq!(
        (status, &body["kind"]),
        (503, &json!("unavailable")),
        "{body}"
    );
    assert!(headers.contains_key("retry-after"), "{headers:?}");
    assert!(!body.to_string().contains("127.0.0.1"), "{body}");

    let (_, q) = setup(Config::default()).await;
    let (status, body) = q.get("/readyz").await;
    assert_eq!(
        (status, body),
        (200, json!({"status": "ready", "datasets": 2}))
    );
    let (_, version) = q.get("/version").await;
    assert_eq!(
        (&version["name"], &version["service"], &version["backend"]),
        (&json!("strata"), &json!("queryd"), &json!("datafusion")),
        "{version}"
    );
    assert!(version["version"].is_string(), "{version}");

    let bare = q.request(reqwest::Method::POST, "/api/v1/datasets/people/count");
    let (status, _, body) = q.send(bare).await;
    let body: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!((status, body), (200, json!({"count": 5})));
    let (status, _, body) = q
        .post_raw(
            "/api/v1/datasets/people/count",
            "{\"predicates\":".into(),
            &[],
            false,
        )
        .await;
    let body: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(
        (status, &body["kind"]),
        (400, &json!("bad_request")),
        "{body}"
    );
}

/// axum's own refusals answer in the JSON envelope too: a path segment that is not UTF-8, a
/// body over the limit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn framework_refusals_are_json_errors() {
    let mut config = Config::default();
    config.queryd.max_body_bytes = 1024;
    config.queryd.max_delta_bytes = 1024;
    let (_, q) = setup(config).await;
    let request = q
        .request(reqwest::Method::POST, "/api/v1/datasets/%ff/query")
        .header("content-type", "application/json")
        .body("{}");
    let (status, headers, body) = q.send(request).await;
    let error: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    assert_eq!(
        (status, &error["kind"]),
        (400, &json!("bad_request")),
        "{headers:?} {body:?}"
    );
    assert!(error["error"].is_string(), "{error}");

    // A query body goes through the JSON extractor; a delta body is read as bytes (axum's
    // own 413).
    let big = json!({"columns": ["x".repeat(2048)]}).to_string();
    for (route, admin) in [("query", false), ("deltas", true)] {
        let (status, _, body) = q
            .post_raw(
                &format!("/api/v1/datasets/people/{route}"),
                big.clone(),
                &[],
                admin,
            )
            .await;
        let error: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        assert_eq!(
            (status, &error["kind"]),
            (413, &json!("too_large")),
            "{route}: {body:?}"
        );
    }
}
