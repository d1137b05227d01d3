//! Export and content negotiation against the real `strata up` binary: `…/export` streams the
//! merged table of a version (or a query's rows) as Parquet, Arrow IPC, CSV or NDJSON, each
//! read back with its own reader and equal to the rows queries answer, in storage order;
//! `/query` answers in the format `Accept` (or `?format=`) asks for, and a 406 when it
//! cannot, never JSON the client did not ask for.

use arrow::array::{AsArray, RecordBatch};
use arrow::datatypes::Int64Type;
use bytes::Bytes;
use serde_json::{Map, Value, json};
use strata_queryd_api::QuerydClient;
use strata_testkit::TestCluster;

use crate::deltas_model::{self, Item};

const FILLER: i64 = 50_000;

async fn start(dir: &std::path::Path) -> TestCluster {
    deltas_model::items_up(dir, FILLER, "[compactord]\ncheck_interval = \"0s\"\n").await
}

/// The status, content type, dataset version and body of a request.
async fn send(request: reqwest::RequestBuilder) -> (u16, String, Option<u64>, Bytes) {
    let response = request.send().await.unwrap();
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let content_type = header("content-type").unwrap_or_default();
    let version = header("x-dataset-version").and_then(|v| v.parse().ok());
    let status = response.status().as_u16();
    (
        status,
        content_type,
        version,
        response.bytes().await.unwrap(),
    )
}

/// Every row of `version` as JSON objects, in storage order (the query API's answer).
async fn all_rows(queryd: &QuerydClient, extra: Value) -> Vec<Map<String, Value>> {
    let mut request = json!({"page_size": 100_000});
    if let (Value::Object(r), Value::Object(e)) = (&mut request, extra) {
        r.extend(e);
    }
    queryd.query("items", &request).await.unwrap().body.data
}

fn ids_of(batches: &[RecordBatch]) -> Vec<i64> {
    batches
        .iter()
        .flat_map(|b| {
            let ids = b.column_by_name("id").unwrap().as_primitive::<Int64Type>();
            (0..ids.len()).map(|i| ids.value(i)).collect::<Vec<_>>()
        })
        .collect()
}

fn ids_of_json(rows: &[Map<String, Value>]) -> Vec<i64> {
    rows.iter().map(|r| r["id"].as_i64().unwrap()).collect()
}

fn parquet_batches(body: Bytes) -> Vec<RecordBatch> {
    parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(body)
        .unwrap()
        .build()
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

fn arrow_batches(body: Bytes) -> Vec<RecordBatch> {
    arrow::ipc::reader::StreamReader::try_new(std::io::Cursor::new(body), None)
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

fn ndjson_rows(body: &[u8]) -> Vec<Map<String, Value>> {
    std::str::from_utf8(body)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// CSV lines as fields (the test's values hold no commas, quotes or newlines).
fn csv_lines(body: &[u8]) -> Vec<Vec<String>> {
    std::str::from_utf8(body)
        .unwrap()
        .lines()
        .map(|l| l.split(',').map(str::to_owned).collect())
        .collect()
}

/// The CSV text of a JSON row's value (nulls are empty).
fn csv_text(value: &Value) -> String {
    match value {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exports_read_back_equal_to_the_query_answers_in_every_format() {
    let dir = tempfile::tempdir().unwrap();
    let strata = start(dir.path()).await;
    let url = strata.queryd_url(0);
    let queryd = QuerydClient::new(&url, Some(strata.admin_token()));
    let http = reqwest::Client::new();
    let v0_rows = all_rows(&queryd, json!({})).await;
    assert_eq!(v0_rows.len() as i64, 2_000 + FILLER);

    // Deltas: the export merges them (storage order puts rewritten rows last).
    let filler = deltas_model::filler_items(FILLER);
    let upserts: Vec<Map<String, Value>> = (0..300)
        .map(|i| {
            Item::json(&filler[(i * 7) as usize])
                .into_iter()
                .map(|(k, v)| (k.clone(), if k == "val" { json!(-i) } else { v }))
                .collect()
        })
        .collect();
    let deletes: Vec<Value> = (0..100).map(|i| json!({"id": i * 2})).collect();
    let committed = queryd
        .post_deltas(
            "items",
            &json!({"upserts": upserts, "deletes": deletes}),
            None,
        )
        .await
        .unwrap();
    let latest = committed.body.version;
    let rows = all_rows(&queryd, json!({"min_version": latest})).await;
    assert_eq!(rows.len() as i64, 2_000 + FILLER - 100);
    let export = format!("{url}/api/v1/datasets/items/export");

    // Parquet is the default; the file names itself.
    let response = http.get(&export).send().await.unwrap();
    assert_eq!(
        response.headers()["content-disposition"],
        "attachment; filename=\"items.parquet\""
    );
    let (status, content_type, version, body) = send(http.get(&export)).await;
    assert_eq!(
        (status, content_type.as_str()),
        (200, "application/vnd.apache.parquet")
    );
    assert_eq!(version, Some(latest));
    let batches = parquet_batches(body);
    assert_eq!(ids_of(&batches), ids_of_json(&rows));
    let vals: Vec<i64> = batches
        .iter()
        .flat_map(|b| {
            let c = b.column_by_name("val").unwrap().as_primitive::<Int64Type>();
            (0..c.len()).map(|i| c.value(i)).collect::<Vec<_>>()
        })
        .collect();
    let expected: Vec<i64> = rows.iter().map(|r| r["val"].as_i64().unwrap()).collect();
    assert_eq!(vals, expected);

    ranges_of_the_spooled_parquet(&http, &export, latest, &rows).await;

    // Arrow IPC and NDJSON: the same rows, the same values.
    let (status, content_type, _, body) = send(http.get(format!("{export}?format=arrow"))).await;
    assert_eq!(
        (status, content_type.as_str()),
        (200, "application/vnd.apache.arrow.stream")
    );
    assert_eq!(ids_of(&arrow_batches(body)), ids_of_json(&rows));
    let (status, content_type, _, body) = send(http.get(format!("{export}?format=ndjson"))).await;
    assert_eq!(
        (status, content_type.as_str()),
        (200, "application/x-ndjson")
    );
    assert_eq!(ndjson_rows(&body), rows);

    // CSV: a header, then one line per row with the query's values.
    let (status, content_type, _, body) = send(http.get(format!("{export}?format=csv"))).await;
    assert_eq!((status, content_type.as_str()), (200, "text/csv"));
    let lines = csv_lines(&body);
    assert_eq!(lines[0], ["id", "grp", "val", "note"]);
    assert_eq!(lines.len(), rows.len() + 1);
    for (line, row) in lines[1..].iter().zip(&rows) {
        let expected: Vec<String> = ["id", "grp", "val", "note"]
            .iter()
            .map(|c| csv_text(&row[*c]))
            .collect();
        assert_eq!(line, &expected);
    }

    // An older version, by number.
    let (status, _, version, body) =
        send(http.get(format!("{export}?format=ndjson&version=0"))).await;
    assert_eq!((status, version), (200, Some(0)));
    assert_eq!(ndjson_rows(&body), v0_rows);

    // A query's rows (columns, predicates, order, limit), as POST.
    let request = json!({
        "columns": ["id", "val"],
        "predicates": [{"col": "grp", "op": "eq", "val": "north"}],
        "order_by": [{"col": "val", "dir": "desc"}],
        "limit": 5_000,
    });
    let (status, content_type, _, body) =
        send(http.post(format!("{export}?format=csv")).json(&request)).await;
    assert_eq!((status, content_type.as_str()), (200, "text/csv"));
    let mut page = request.clone();
    page["page_size"] = json!(5_000);
    let expected = queryd.query("items", &page).await.unwrap().body.data;
    let lines = csv_lines(&body);
    assert_eq!(lines.len(), expected.len() + 1);
    assert_eq!(lines[0], ["id", "val"]);
    for (line, row) in lines[1..].iter().zip(&expected) {
        assert_eq!(line, &[csv_text(&row["id"]), csv_text(&row["val"])]);
    }

    // An empty answer is a valid file of each format.
    let nothing = json!({"predicates": [{"col": "id", "op": "lt", "val": -1}]});
    let (_, _, _, body) = send(http.post(format!("{export}?format=parquet")).json(&nothing)).await;
    assert_eq!(ids_of(&parquet_batches(body)), Vec::<i64>::new());
    let (_, _, _, body) = send(http.post(format!("{export}?format=csv")).json(&nothing)).await;
    assert_eq!(csv_lines(&body), vec![vec!["id", "grp", "val", "note"]]);

    // Refusals: a format no export has, and a version that does not exist.
    for (query, status) in [
        ("format=json", 400),
        ("format=xml", 400),
        ("version=999", 404),
    ] {
        let (got, content_type, _, body) = send(http.get(format!("{export}?{query}"))).await;
        assert_eq!(got, status, "{query}: {}", String::from_utf8_lossy(&body));
        assert_eq!(content_type, "application/json");
    }
}

/// The Parquet export is one file with a length, an ETag and byte ranges: every answer
/// is the same bytes (spooled once), ranges are slices of them, and a reader of remote
/// Parquet (Polars, which asks for the length and then reads ranges) reads the table.
async fn ranges_of_the_spooled_parquet(
    http: &reqwest::Client,
    export: &str,
    latest: u64,
    rows: &[Map<String, Value>],
) {
    let whole = http.get(export).send().await.unwrap();
    assert_eq!(whole.status().as_u16(), 200);
    let headers = whole.headers().clone();
    let body = whole.bytes().await.unwrap();
    let len = body.len() as u64;
    assert_eq!(headers["content-length"], len.to_string().as_str());
    assert_eq!(headers["accept-ranges"], "bytes");
    let etag = headers["etag"].to_str().unwrap().to_owned();
    let head = http.head(export).send().await.unwrap();
    assert_eq!(head.status().as_u16(), 200);
    assert_eq!(head.headers()["content-length"], len.to_string().as_str());
    assert_eq!(head.headers()["etag"], etag.as_str());

    let range = |spec: &str, if_range: Option<&str>| {
        let mut request = http.get(export).header("range", spec);
        if let Some(tag) = if_range {
            request = request.header("if-range", tag);
        }
        async move {
            let response = request.send().await.unwrap();
            let status = response.status().as_u16();
            let content_range = response
                .headers()
                .get("content-range")
                .map(|v| v.to_str().unwrap().to_owned());
            (status, content_range, response.bytes().await.unwrap())
        }
    };
    // The footer, as readers ask for it first, then a slice, then an open-ended range.
    let (status, content_range, tail) = range("bytes=-8", None).await;
    assert_eq!(status, 206);
    assert_eq!(
        content_range.unwrap(),
        format!("bytes {}-{}/{len}", len - 8, len - 1)
    );
    assert_eq!(tail, body.slice(len as usize - 8..));
    assert_eq!(&tail[4..], b"PAR1");
    let (status, _, slice) = range("bytes=4-99", Some(&etag)).await;
    assert_eq!((status, slice), (206, body.slice(4..100)));
    let (status, _, rest) = range(&format!("bytes={}-", len - 100), None).await;
    assert_eq!((status, rest), (206, body.slice(len as usize - 100..)));
    // A stale validator gets the whole (current) file; past the end is a 416.
    let (status, content_range, all) = range("bytes=0-9", Some("\"stale\"")).await;
    assert_eq!((status, content_range, all), (200, None, body.clone()));
    let (status, content_range, _) = range(&format!("bytes={len}-"), None).await;
    assert_eq!(
        (status, content_range),
        (416, Some(format!("bytes */{len}")))
    );

    // Polars reads the table over HTTP (length, then ranges).
    let ids: i64 = rows.iter().map(|r| r["id"].as_i64().unwrap()).sum();
    let script = format!(
        "import polars as pl, json\n\
         df = pl.scan_parquet('{export}?version={latest}').select(pl.len().alias('n'), \
         pl.col('id').sum().alias('ids')).collect()\n\
         print(json.dumps(df.row(0)))"
    );
    let python = crate::queryd_binary::client_python();
    let output = tokio::task::spawn_blocking(move || {
        std::process::Command::new(python)
            .arg("-c")
            .arg(script)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(
        output.status.success(),
        "polars failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let read: (u64, i64) = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(read, (rows.len() as u64, ids));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_query_answers_in_the_format_accept_asks_for_or_406() {
    let dir = tempfile::tempdir().unwrap();
    let strata = start(dir.path()).await;
    let url = format!("{}/api/v1/datasets/items/query", strata.queryd_url(0));
    let http = reqwest::Client::new();
    let body = json!({"predicates": [{"col": "id", "op": "lt", "val": 40}], "page_size": 10});
    let post = |accept: Option<&str>, query: &str| {
        let request = http.post(format!("{url}{query}")).json(&body);
        match accept {
            Some(a) => request.header("accept", a),
            None => request,
        }
    };
    let (status, content_type, _, json_page) = send(post(None, "")).await;
    assert_eq!((status, content_type.as_str()), (200, "application/json"));
    let rows: Vec<Map<String, Value>> =
        serde_json::from_slice::<Value>(&json_page).unwrap()["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r.as_object().unwrap().clone())
            .collect();
    assert_eq!(rows.len(), 10);

    for (accept, expected) in [
        ("*/*", "application/json"),
        ("application/json", "application/json"),
        (
            "text/html, application/xhtml+xml, */*;q=0.8",
            "application/json",
        ),
        ("text/csv", "text/csv"),
        ("text/*", "text/csv"),
        ("application/json;q=0, text/csv", "text/csv"),
        ("application/x-ndjson", "application/x-ndjson"),
        (
            "application/vnd.apache.arrow.stream",
            "application/vnd.apache.arrow.stream",
        ),
        ("application/x-parquet", "application/vnd.apache.parquet"),
    ] {
        let (status, content_type, _, body) = send(post(Some(accept), "")).await;
        assert_eq!(
            (status, content_type.as_str()),
            (200, expected),
            "Accept: {accept}"
        );
        let ids: Vec<i64> = match expected {
            "text/csv" => csv_lines(&body)[1..]
                .iter()
                .map(|l| l[0].parse().unwrap())
                .collect(),
            "application/x-ndjson" => ids_of_json(&ndjson_rows(&body)),
            "application/vnd.apache.arrow.stream" => ids_of(&arrow_batches(body)),
            "application/vnd.apache.parquet" => ids_of(&parquet_batches(body)),
            _ => ids_of_json(
                &serde_json::from_slice::<Value>(&body).unwrap()["data"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|r| r.as_object().unwrap().clone())
                    .collect::<Vec<_>>(),
            ),
        };
        assert_eq!(ids, ids_of_json(&rows), "Accept: {accept}");
    }

    // `?format=` wins over Accept.
    let (status, content_type, _, _) = send(post(Some("text/csv"), "?format=ndjson")).await;
    assert_eq!(
        (status, content_type.as_str()),
        (200, "application/x-ndjson")
    );
    // Nothing acceptable: a 406 JSON error, never a JSON page.
    for accept in ["text/html", "image/png", "application/json;q=0"] {
        let (status, content_type, _, body) = send(post(Some(accept), "")).await;
        assert_eq!(
            (status, content_type.as_str()),
            (406, "application/json"),
            "{accept}"
        );
        let error: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(error["kind"], "not_acceptable", "{error}");
    }
    let (status, _, _, _) = send(post(None, "?format=xml")).await;
    assert_eq!(status, 400);
}
