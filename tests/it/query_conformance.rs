//! The engine conformance suite: query cases whose expected answers are computed here, in
//! plain Rust over the generated rows (an oracle independent of Arrow, DataFusion and the
//! indexes), run against every execution path queryd has:
//!
//! - `hot`: in memory, hot paths on (indexes, direct pages, O(1) counts);
//! - `general`: in memory, every query through DataFusion;
//! - `cold`: not in memory (the cache is too small): primary-key `eq` lookups read the files
//!   directly (`queryd::cold`), counts under simple filters are Strata's own scan
//!   (`queryd::cold::count`), everything else runs in DataFusion over the Parquet files;
//! - `cold-general`: not in memory, every query through DataFusion.
//!
//! Each case checks the JSON page, the same page as Arrow IPC, `…/count` and `…/query/stream`
//! — the same rows in the same order everywhere. A new engine (DuckDB) joins by adding a path.

use std::sync::Arc;

use arrow::array::{
    ArrayRef, BooleanArray, Date32Array, Float64Array, Int32Array, Int64Array, RecordBatch,
    StringArray, TimestampMicrosecondArray,
};
use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use object_store::ObjectStore;
use object_store::memory::InMemory;
use serde_json::{Map, Value, json};
use strata_daemon::config::Config;

use crate::common::{Queryd, commit_delta, create_dataset};

const ROWS: i64 = 3000;
const CATEGORIES: [Option<&str>; 5] = [
    Some("alpha"),
    Some("beta"),
    None,
    Some("gamma"),
    Some("delta"),
];
/// 2024-01-01T00:00:00 in microseconds.
const T0: i64 = 1_704_067_200_000_000;
/// 2024-01-01 in days.
const D0: i32 = 19_723;

#[derive(Clone, Debug)]
struct Row {
    id: i64,
    name: String,
    severity: i32,
    score: Option<f64>,
    active: bool,
    ts: i64,
    category: Option<&'static str>,
    day: i32,
}

fn rows() -> Vec<Row> {
    (1..=ROWS)
        .map(|i| Row {
            id: i,
            name: if i % 5 == 0 {
                format!("name_{i:04}")
            } else {
                format!("Name_{i:04}")
            },
            severity: ((i * 7) % 4 + 1) as i32,
            score: (i % 11 != 0).then(|| ((i * 37) % 1000) as f64 / 4.0),
            active: i % 3 != 0,
            ts: T0 + i * 97_000_000 + (i % 7) * 123,
            category: CATEGORIES[((i * 13) % 5) as usize],
            day: D0 + (i % 10) as i32,
        })
        .collect()
}

fn batch(rows: &[Row]) -> RecordBatch {
    let schema = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("name", DataType::Utf8, false),
        Field::new("severity", DataType::Int32, false),
        Field::new("score", DataType::Float64, true),
        Field::new("active", DataType::Boolean, false),
        Field::new(
            "ts",
            DataType::Timestamp(TimeUnit::Microsecond, None),
            false,
        ),
        Field::new("category", DataType::Utf8, true),
        Field::new("day", DataType::Date32, false),
    ]));
    let columns: Vec<ArrayRef> = vec![
        Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.id))),
        Arc::new(StringArray::from_iter_values(
            rows.iter().map(|r| r.name.as_str()),
        )),
        Arc::new(Int32Array::from_iter_values(
            rows.iter().map(|r| r.severity),
        )),
        Arc::new(Float64Array::from_iter(rows.iter().map(|r| r.score))),
        Arc::new(BooleanArray::from_iter(rows.iter().map(|r| Some(r.active)))),
        Arc::new(TimestampMicrosecondArray::from_iter_values(
            rows.iter().map(|r| r.ts),
        )),
        Arc::new(StringArray::from_iter(rows.iter().map(|r| r.category))),
        Arc::new(Date32Array::from_iter_values(rows.iter().map(|r| r.day))),
    ];
    RecordBatch::try_new(schema, columns).unwrap()
}

const ALL: [&str; 8] = [
    "id", "name", "severity", "score", "active", "ts", "category", "day",
];

/// A cell as the JSON encoding renders it (formatted with chrono, not Arrow).
fn cell(r: &Row, column: &str) -> Value {
    match column {
        "id" => json!(r.id),
        "name" => json!(r.name),
        "severity" => json!(r.severity),
        "score" => r.score.map_or(Value::Null, |s| json!(s)),
        "active" => json!(r.active),
        "ts" => json!(
            chrono::DateTime::from_timestamp_micros(r.ts)
                .unwrap()
                .naive_utc()
                .format("%Y-%m-%dT%H:%M:%S%.f")
                .to_string()
        ),
        "category" => r.category.map_or(Value::Null, |c| json!(c)),
        "day" => json!(
            (chrono::NaiveDate::from_ymd_opt(1970, 1, 1).unwrap()
                + chrono::Duration::days(r.day as i64))
            .to_string()
        ),
        other => panic!("no column {other}"),
    }
}

fn project(rows: &[&Row], columns: &[&str]) -> Vec<Map<String, Value>> {
    rows.iter()
        .map(|r| {
            columns
                .iter()
                .map(|c| (c.to_string(), cell(r, c)))
                .collect()
        })
        .collect()
}

fn object(pairs: Vec<(&str, Value)>) -> Map<String, Value> {
    pairs.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
}

/// Ascending with nulls last (the API's order for `asc`).
fn nulls_last<T: Ord>(a: &Option<T>, b: &Option<T>) -> std::cmp::Ordering {
    match (a, b) {
        (Some(a), Some(b)) => a.cmp(b),
        (None, None) => std::cmp::Ordering::Equal,
        (None, _) => std::cmp::Ordering::Greater,
        (_, None) => std::cmp::Ordering::Less,
    }
}

mod cases;
use cases::cases;

/// Equal rows, except that floats may differ in their last bits: an average of integers
/// is a float sum, and DataFusion's partial aggregation adds in an order that depends on
/// how rows fall into batches.
fn assert_same(got: &[Map<String, Value>], want: &[Map<String, Value>], label: &str) {
    let close = |a: &Value, b: &Value| match (a.as_f64(), b.as_f64()) {
        (Some(x), Some(y)) if a.is_f64() || b.is_f64() => {
            (x - y).abs() <= 1e-12 * x.abs().max(y.abs())
        }
        _ => a == b,
    };
    let same = got.len() == want.len()
        && got.iter().zip(want).all(|(g, w)| {
            g.len() == w.len() && g.iter().all(|(k, v)| w.get(k).is_some_and(|x| close(v, x)))
        });
    assert!(same, "{label}\n got: {got:?}\nwant: {want:?}");
}

/// The rows of a JSON page body.
fn data(body: &[u8]) -> Vec<Map<String, Value>> {
    let v: Value = serde_json::from_slice(body).unwrap();
    serde_json::from_value(v["data"].clone()).unwrap()
}

/// Arrow IPC → the same JSON rows the JSON encoding would produce.
fn arrow_rows(body: &[u8]) -> (arrow::datatypes::SchemaRef, Vec<Map<String, Value>>) {
    let reader =
        arrow::ipc::reader::StreamReader::try_new(std::io::Cursor::new(body.to_vec()), None)
            .unwrap();
    let schema = reader.schema();
    let batches: Vec<RecordBatch> = reader.map(|b| b.unwrap()).collect();
    let mut out = Vec::new();
    strata_queryd::encode::json_rows(&batches, &mut out).unwrap();
    (schema, serde_json::from_slice(&out).unwrap())
}

async fn path(name: &str, store: Arc<dyn ObjectStore>) -> Queryd {
    let mut config = Config::default();
    match name {
        "hot" => {}
        "general" => config.queryd.hot_paths = false,
        // Too small for any dataset: every request is answered from Parquet.
        "cold" => config.queryd.cache_bytes = 1,
        "cold-general" => {
            config.queryd.cache_bytes = 1;
            config.queryd.hot_paths = false;
        }
        other => panic!("unknown path {other}"),
    }
    let queryd = Queryd::new(store, config).await;
    if !name.starts_with("cold") {
        let (status, body) = queryd
            .post("/api/v1/cache/pin", &json!({"dataset": "events"}), true)
            .await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["residency"], "memory");
    }
    queryd
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_path_returns_the_oracles_rows_in_the_oracles_order() {
    let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let all = rows();
    // Three base files, so order across files is exercised too.
    let parts: Vec<RecordBatch> = all.chunks(1000).map(batch).collect();
    create_dataset(&store, "events", &parts, &["id"]).await;

    for path_name in ["hot", "general", "cold", "cold-general"] {
        let queryd = path(path_name, store.clone()).await;
        check_cases(&queryd, path_name, &all, 0).await;
    }
}

/// The same cases over a dataset whose deltas update, delete and re-insert rows: every path
/// returns the merged state (`merge::materialize`'s order) — in memory both when the deltas
/// arrive after the load (applied incrementally) and when they are there before it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_path_merges_deltas_like_the_oracle() {
    let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let base = rows();
    let parts: Vec<RecordBatch> = base.chunks(1000).map(batch).collect();
    create_dataset(&store, "events", &parts, &["id"]).await;
    // Loaded before the deltas: they are applied to the resident state.
    let incremental = path("hot", store.clone()).await;
    let incremental_general = path("general", store.clone()).await;

    let mut model: std::collections::BTreeMap<i64, Row> =
        base.iter().map(|r| (r.id, r.clone())).collect();
    let changed = |r: &Row, k: i64| Row {
        name: format!("changed_{k}_{}", r.id),
        severity: ((r.id + k) % 4 + 1) as i32,
        score: Some(k as f64),
        category: CATEGORIES[((r.id + k) % 5) as usize],
        ..r.clone()
    };
    let fresh = |id: i64, k: i64| Row {
        id,
        name: format!("new_{k}_{id}"),
        severity: (id % 4 + 1) as i32,
        score: (id % 2 == 0).then_some(id as f64 / 8.0),
        active: id % 2 == 1,
        ts: T0 + id,
        // Many new category values: more than the base's one-byte dictionary keys number.
        category: Some(Box::leak(format!("cat_{}", id % 300).into_boxed_str())),
        day: D0 + (id % 3) as i32,
    };
    let steps: Vec<(Vec<Row>, Vec<i64>)> = vec![
        (
            (10..20)
                .map(|id| changed(&model[&id], 1))
                .chain((5000..5400).map(|id| fresh(id, 1)))
                .collect(),
            (30..40).chain([99_999]).collect(),
        ),
        (
            [15, 35, 5003]
                .iter()
                .map(|&id| fresh(id, 2))
                .chain(
                    (1..3000)
                        .step_by(97)
                        .map(|id| changed(&base[id as usize - 1], 2)),
                )
                .collect(),
            vec![5004, 5005, 12, 2999],
        ),
        (vec![fresh(12, 3)], vec![15, 5000]),
    ];
    let mut version = 0;
    // The version that last wrote each key a delta touched.
    let mut written: std::collections::BTreeMap<i64, u64> = Default::default();
    for (upserts, deletes) in &steps {
        version = commit_delta(&store, "events", &batch(upserts), deletes).await;
        for id in deletes {
            model.remove(id);
            written.insert(*id, version);
        }
        for r in upserts {
            model.insert(r.id, r.clone());
            written.insert(r.id, version);
        }
    }
    // Storage order: untouched base rows in base order, then the surviving rows deltas
    // wrote, by the version that wrote them, then by key.
    let mut rewritten: Vec<Row> = model
        .values()
        .filter(|r| written.contains_key(&r.id))
        .cloned()
        .collect();
    rewritten.sort_by_key(|r| (written[&r.id], r.id));
    let merged: Vec<Row> = base
        .iter()
        .filter(|r| !written.contains_key(&r.id))
        .cloned()
        .chain(rewritten)
        .collect();

    for queryd in [&incremental, &incremental_general] {
        let (status, body) = queryd
            .post("/api/v1/datasets/events/reload", &json!({}), true)
            .await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["version"], version);
        assert_eq!(body["rows"], merged.len());
    }
    check_cases(&incremental, "hot, applied", &merged, version).await;
    check_cases(&incremental_general, "general, applied", &merged, version).await;
    for path_name in ["hot", "general", "cold", "cold-general"] {
        let queryd = path(path_name, store.clone()).await;
        check_cases(&queryd, path_name, &merged, version).await;
    }
}

/// Runs every case on `queryd` and compares with the oracle over `all` (in storage order).
async fn check_cases(queryd: &Queryd, path_name: &str, all: &[Row], version: u64) {
    for case in cases() {
        let label = format!("[{path_name}] {}", case.name);
        let everything = (case.expect)(all);
        let page = case.request["page"].as_u64().unwrap_or(1).max(1) as usize;
        let size = case.request["page_size"].as_u64().unwrap_or(1000) as usize;
        let want: Vec<_> = everything
            .iter()
            .skip((page - 1) * size)
            .take(size)
            .cloned()
            .collect();

        let q = "/api/v1/datasets/events/query";
        let (status, headers, body) = queryd
            .post_raw(q, case.request.to_string(), &[], false)
            .await;
        assert_eq!(status, 200, "{label}: {}", String::from_utf8_lossy(&body));
        assert_eq!(
            headers["x-dataset-version"],
            version.to_string().as_str(),
            "{label}"
        );
        let got = data(&body);
        assert_eq!(got.len(), want.len(), "{label}: row count");
        assert_same(&got, &want, &label);

        let (status, headers, body) = queryd
            .post_raw(
                &format!("{q}?format=arrow"),
                case.request.to_string(),
                &[],
                false,
            )
            .await;
        assert_eq!(status, 200, "{label} (arrow)");
        assert_eq!(headers["x-page"], page.to_string().as_str(), "{label}");
        let (schema, arrow) = arrow_rows(&body);
        assert_same(&arrow, &want, &format!("{label} (arrow)"));
        assert!(
            !schema
                .fields()
                .iter()
                .any(|f| matches!(f.data_type(), DataType::Dictionary(..))),
            "{label}: Arrow answers carry the logical types"
        );

        let (status, count) = queryd
            .post("/api/v1/datasets/events/count", &case.request, false)
            .await;
        assert_eq!(status, 200, "{label} (count)");
        assert_eq!(count["count"], everything.len(), "{label} (count)");

        let (status, _, body) = queryd
            .post_raw(&format!("{q}/stream"), case.request.to_string(), &[], false)
            .await;
        assert_eq!(status, 200, "{label} (stream)");
        assert_same(
            &arrow_rows(&body).1,
            &everything,
            &format!("{label} (stream)"),
        );
    }
}

/// Lookups of a composite primary key (`severity`, `id`: two columns of two types), with the
/// key's filters in either order, answer the model's row on every path — the cold path reads
/// the files directly (`queryd::cold`), with base rows a delta rewrote and rows it added.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn composite_key_lookups_find_the_row_on_every_path() {
    let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let base = rows();
    let parts: Vec<RecordBatch> = base.chunks(1000).map(batch).collect();
    create_dataset(&store, "events", &parts, &["severity", "id"]).await;
    let mut model: std::collections::BTreeMap<i64, Row> =
        base.iter().map(|r| (r.id, r.clone())).collect();
    let upserts: Vec<Row> = (10..20)
        .map(|id| Row {
            name: format!("changed_{id}"),
            ..model[&id].clone()
        })
        .chain((5000..5010).map(|id| Row {
            id,
            name: format!("new_{id}"),
            ..model[&(id - 4000)].clone()
        }))
        .collect();
    let version = commit_delta(&store, "events", &batch(&upserts), &[]).await;
    for r in upserts {
        model.insert(r.id, r);
    }
    let probes: Vec<(i64, i32)> = [1, 999, 1000, 1001, 2999, 3000, 15, 5005]
        .iter()
        .map(|id| (*id, model[id].severity))
        // Another row's severity with this id, and an id no row has.
        .chain([(100, model[&100].severity % 4 + 1), (7777, 1)])
        .collect();
    for path_name in ["hot", "general", "cold", "cold-general"] {
        let queryd = path(path_name, store.clone()).await;
        for (n, (id, severity)) in probes.iter().enumerate() {
            let mut predicates = vec![
                json!({"col": "id", "op": "eq", "val": id}),
                json!({"col": "severity", "op": "eq", "val": severity}),
            ];
            if n % 2 == 1 {
                predicates.reverse();
            }
            let request = json!({ "predicates": predicates });
            let (status, headers, body) = queryd
                .post_raw(
                    "/api/v1/datasets/events/query",
                    request.to_string(),
                    &[],
                    false,
                )
                .await;
            let label = format!("[{path_name}] {request}");
            assert_eq!(status, 200, "{label}: {}", String::from_utf8_lossy(&body));
            assert_eq!(headers["x-dataset-version"], version.to_string().as_str());
            let found: Vec<&Row> = model
                .get(id)
                .filter(|r| r.severity == *severity)
                .into_iter()
                .collect();
            assert_same(&data(&body), &project(&found, &ALL), &label);
        }
    }
}
