//! queryd in the real `strata` binary: the read API over HTTP on 127.0.0.1, answers checked
//! against the Parquet file itself, the memcache admin calls, and the published datap-rs
//! Python client driven against it unchanged.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use arrow::array::{AsArray, RecordBatch};
use arrow::compute::concat_batches;
use serde_json::{Value, json};
use strata_testkit::{Mode, Store, TestCluster};

const ROWS: usize = 20_000;

/// `strata up` on a local directory in `dir`, serving `source` as `orders`.
async fn strata_up(dir: &Path, source: &Path) -> TestCluster {
    TestCluster::builder()
        .mode(Mode::Up)
        .store(Store::LocalDir)
        .dir(dir)
        .toml(&declared(source))
        .start()
        .await
        .unwrap()
}

fn declared(source: &Path) -> String {
    format!(
        r#"
[[datasets]]
name = "orders"
source = "{}"
primary_key = ["id"]
index = "list"
index_columns = ["category", "country"]
"#,
        source.display()
    )
}

/// The generated orders table, as written to `path`.
fn orders(path: &Path) -> RecordBatch {
    strata::demo::write_file(path, ROWS).unwrap();
    let file = std::fs::File::open(path).unwrap();
    let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
        .unwrap()
        .build()
        .unwrap();
    let batches: Vec<RecordBatch> = reader.map(|b| b.unwrap()).collect();
    concat_batches(&batches[0].schema(), &batches).unwrap()
}

async fn wait_resident(client: &reqwest::Client, queryd: &str, dataset: &str) {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let stats: Value = client
            .get(format!("{queryd}/api/v1/cache/stats"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let resident = stats["datasets"]
            .as_array()
            .unwrap()
            .iter()
            .any(|d| d["dataset"] == dataset && d["residency"] == "memory");
        if resident {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{dataset} never loaded: {stats}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn post(client: &reqwest::Client, url: &str, body: Value) -> (u16, Value) {
    let response = client.post(url).json(&body).send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_read_api_over_the_real_binary() {
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("src/orders.parquet");
    std::fs::create_dir_all(source.parent().unwrap()).unwrap();
    let table = orders(&source);
    let strata = strata_up(dir.path(), &source).await;
    let client = reqwest::Client::new();
    let q = &strata.queryd_url(0);
    let api = format!("{q}/api/v1/datasets/orders");

    // Answers computed from the file itself.
    let category = table.column_by_name("category").unwrap().as_string::<i32>();
    let books: Vec<i64> = (0..table.num_rows())
        .filter(|&i| category.value(i) == "books")
        .map(|i| {
            table
                .column(0)
                .as_primitive::<arrow::datatypes::Int64Type>()
                .value(i)
        })
        .collect();

    // The first answers may come from Parquet (cold) while the dataset loads; then from memory.
    for round in ["first", "resident"] {
        let (status, body) = post(
            &client,
            &format!("{api}/count"),
            json!({"predicates": [{"col": "category", "op": "eq", "val": "books"}]}),
        )
        .await;
        assert_eq!(
            (status, body["count"].as_u64()),
            (200, Some(books.len() as u64)),
            "{round}"
        );
        let (status, body) = post(
            &client,
            &format!("{api}/query"),
            json!({"columns": ["id"], "predicates": [{"col": "category", "op": "eq", "val": "books"}], "page": 2, "page_size": 10}),
        )
        .await;
        assert_eq!(status, 200, "{round}: {body}");
        let ids: Vec<i64> = body["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["id"].as_i64().unwrap())
            .collect();
        assert_eq!(ids, books[10..20], "{round}");
        wait_resident(&client, q, "orders").await;
    }

    // Arrow by Accept header, with paging headers and the version.
    let response = client
        .post(format!("{api}/query"))
        .header("accept", "application/vnd.apache.arrow.stream")
        .json(&json!({"columns": ["id", "country"], "page_size": 5}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["x-page-size"], "5");
    assert_eq!(response.headers()["x-dataset-version"], "0");
    let bytes = response.bytes().await.unwrap();
    let reader =
        arrow::ipc::reader::StreamReader::try_new(std::io::Cursor::new(bytes.to_vec()), None)
            .unwrap();
    let rows: usize = reader.map(|b| b.unwrap().num_rows()).sum();
    assert_eq!(rows, 5);

    // Admin: reload answers with the shape datap-rs clients expect; pin, evict, stats.
    let admin = |path: &str, body: Value| {
        let request = client
            .post(format!("{q}{path}"))
            .header("x-admin-token", strata.admin_token())
            .json(&body);
        async move { request.send().await.unwrap().json::<Value>().await.unwrap() }
    };
    let reload = admin("/api/v1/datasets/orders/reload", json!({})).await;
    assert_eq!(reload["rows"], ROWS);
    assert_eq!(reload["version"], 0);
    let evicted = admin("/api/v1/cache/evict", json!({"dataset": "orders"})).await;
    assert_eq!(evicted["residency"], "cold");
    let (status, body) = post(&client, &format!("{api}/count"), json!({})).await;
    assert_eq!((status, body["count"].as_u64()), (200, Some(ROWS as u64)));
    let pinned = admin("/api/v1/cache/pin", json!({"dataset": "orders"})).await;
    assert_eq!(
        (pinned["pinned"].clone(), pinned["residency"].clone()),
        (json!(true), json!("memory"))
    );
    let unauthenticated = client
        .post(format!("{q}/api/v1/cache/evict"))
        .json(&json!({"dataset": "orders"}))
        .send()
        .await
        .unwrap();
    assert_eq!(unauthenticated.status(), 401);

    let metrics = crate::common::metrics_text(&client, q).await;
    assert!(metrics.contains("strata_cache_hits_total"), "{metrics}");
    assert!(
        metrics.contains("route=\"/api/v1/datasets/{name}/count\""),
        "{metrics}"
    );
}

/// The Python with `datap_rs_client`, `pyarrow` and `duckdb` (installed by
/// scripts/install-test-tools.sh).
pub(crate) fn client_python() -> PathBuf {
    let venv = std::env::var_os("STRATA_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var("HOME").unwrap()).join(".cache/strata-venv")
        });
    let python = venv.join("bin/python");
    assert!(
        python.exists(),
        "{} is missing: run scripts/install-test-tools.sh",
        python.display()
    );
    python
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_published_datap_rs_client_works_unchanged() {
    let python = client_python();
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("src/orders.parquet");
    std::fs::create_dir_all(source.parent().unwrap()).unwrap();
    orders(&source);
    let strata = strata_up(dir.path(), &source).await;
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("python/datap_client_check.py");
    let output = tokio::task::spawn_blocking(move || {
        Command::new(python)
            .arg(script)
            .args([strata.queryd_url(0).as_str(), "orders"])
            .arg(&source)
            .arg(strata.admin_token())
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "client check failed:\n{stdout}\n{stderr}"
    );
    assert!(stdout.contains("all checks passed"), "{stdout}");
}
