//! Bugs found at the size users run, each pinned by the request that showed it.

use std::sync::Arc;

use arrow::array::{Float64Array, Int32Array, Int64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use object_store::ObjectStore;
use object_store::memory::InMemory;
use serde_json::json;
use strata_daemon::config::Config;

use crate::common::{Queryd, create_dataset};

/// The table of the report: 1M rows in 8 files, `state` with 50 values, `city` with 2 000.
fn events(part: i64, rows: i64) -> RecordBatch {
    let schema = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("state", DataType::Utf8, true),
        Field::new("severity", DataType::Int32, true),
        Field::new("city", DataType::Utf8, true),
        Field::new("amount", DataType::Float64, true),
    ]));
    let ids: Vec<i64> = (part * rows..(part + 1) * rows).collect();
    let mix = |i: i64, m: i64| (i.wrapping_mul(2_654_435_761) >> 7).rem_euclid(m);
    RecordBatch::try_new(
        schema,
        vec![
            Arc::new(Int64Array::from(ids.clone())),
            Arc::new(StringArray::from_iter_values(
                ids.iter().map(|&i| format!("S{}", mix(i, 50))),
            )),
            Arc::new(Int32Array::from_iter_values(
                ids.iter().map(|&i| mix(i, 5) as i32 + 1),
            )),
            Arc::new(StringArray::from_iter_values(
                ids.iter().map(|&i| format!("city {}", mix(i, 2_000))),
            )),
            Arc::new(Float64Array::from_iter_values(
                ids.iter().map(|&i| mix(i, 1_000_000) as f64 / 100.0),
            )),
        ],
    )
    .unwrap()
}

/// `order_by` on an in-memory table of many chunks answered 500 ("Dictionary key bigger
/// than the key type"): each chunk had its own dictionary.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ordered_pages_of_a_million_resident_rows() {
    let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let parts: Vec<RecordBatch> = (0..8).map(|p| events(p, 125_000)).collect();
    create_dataset(&store, "events", &parts, &["id"]).await;
    let q = Queryd::new(store, Config::default());
    let (status, body) = q
        .post("/api/v1/cache/pin", &json!({"dataset": "events"}), true)
        .await;
    assert_eq!(
        (status, &body["residency"]),
        (200, &json!("memory")),
        "{body}"
    );
    for request in [
        json!({"predicates": [{"col": "amount", "op": "lt", "val": 10}], "order_by": [{"col": "amount", "dir": "desc"}], "page_size": 50}),
        json!({"columns": ["id", "state", "city"], "order_by": [{"col": "severity", "dir": "asc"}], "page_size": 50}),
        json!({"order_by": [{"col": "city", "dir": "desc"}], "page_size": 50}),
    ] {
        let (status, body) = q
            .post("/api/v1/datasets/events/query", &request, false)
            .await;
        assert_eq!(status, 200, "{request}: {body}");
        assert_eq!(body["data"].as_array().map(Vec::len), Some(50), "{request}");
    }
}
