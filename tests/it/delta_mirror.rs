//! The Delta Lake view of a table (`delta_mirror`), read by Delta readers no one here wrote —
//! the `deltalake` package (delta-rs), polars' `scan_delta` and DuckDB's `delta_scan`, offline
//! (`tests/python/delta_readers.py`) — each compared row for row with Strata's own answer:
//! at creation, behind deltas (the documented lag: the view holds the base), after each
//! compaction, and after a garbage collection with no grace period. Also: a log that missed a
//! compaction is caught up by compactord's periodic check, and tables Delta Lake cannot hold
//! are refused at creation, naming the column.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, Date32Array, Decimal128Array, Float64Array, Int32Array,
    Int64Array, RecordBatch, StringArray, TimestampMicrosecondArray, UInt8Array, UInt64Array,
    new_null_array,
};
use arrow::datatypes::{
    DataType, Date32Type, Field, Float64Type, Int32Type, Int64Type, Schema, SchemaRef, TimeUnit,
    TimestampMicrosecondType,
};
use arrow::util::display::{ArrayFormatter, FormatOptions};
use object_store::ObjectStoreExt;
use serde_json::{Value, json};
use strata_compactord::compact::{self, CompactOptions};
use strata_compactord_api::RunOutcome;
use strata_shared::commit::Table;
use strata_shared::delta_log::{self, LogState};
use strata_shared::layout::DatasetName;
use strata_shared::parquet_io;
use strata_testkit::{Store, TestCluster};

use crate::common::{ADMIN, arrow_stream, commit_delta};

const PARQUET: &str = "application/vnd.apache.parquet";
const ARROW: &str = "application/vnd.apache.arrow.stream";
const COLUMNS: [&str; 8] = [
    "id", "name", "amount", "active", "day", "ts", "qty", "price",
];
const BASE_ROWS: i64 = 120_000;

fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("name", DataType::Utf8, true),
        Field::new("amount", DataType::Float64, true),
        Field::new("active", DataType::Boolean, true),
        Field::new("day", DataType::Date32, true),
        Field::new(
            "ts",
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            true,
        ),
        Field::new("qty", DataType::Int32, true),
        Field::new("price", DataType::Decimal128(12, 2), true),
    ]))
}

/// Rows `ids` of the test table, their values a function of the id and `tag` (a later write of
/// the same id with another tag changes every column), with nulls scattered in every column
/// but the key.
fn rows(ids: &[i64], tag: i64) -> RecordBatch {
    let null = |id: i64, every: i64| (id + tag) % every == 0;
    let column = |every: i64, value: &dyn Fn(i64) -> i64| -> Vec<Option<i64>> {
        ids.iter()
            .map(|&id| (!null(id, every)).then(|| value(id)))
            .collect()
    };
    let names: Vec<Option<String>> = ids
        .iter()
        .map(|&id| (!null(id, 7)).then(|| format!("név {id}/{tag}")))
        .collect();
    let amounts: Vec<Option<f64>> = ids
        .iter()
        .map(|&id| (!null(id, 11)).then(|| id as f64 * 0.37 - 1000.0 + tag as f64 / 3.0))
        .collect();
    let active: Vec<Option<bool>> = ids
        .iter()
        .map(|&id| (!null(id, 13)).then_some((id + tag) % 2 == 0))
        .collect();
    let day = column(17, &|id| 19_000 + id % 1000 + tag);
    let ts = column(19, &|id| 1_700_000_000_000_000 + id * 1_000_003 + tag);
    let qty = column(23, &|id| id % 1000 - 500 + tag);
    let price = column(29, &|id| id * 7 - 300 + tag);
    let columns: Vec<ArrayRef> = vec![
        Arc::new(Int64Array::from(ids.to_vec())),
        Arc::new(StringArray::from(names)),
        Arc::new(Float64Array::from(amounts)),
        Arc::new(BooleanArray::from(active)),
        Arc::new(Date32Array::from(
            day.iter().map(|d| d.map(|d| d as i32)).collect::<Vec<_>>(),
        )),
        Arc::new(TimestampMicrosecondArray::from(ts).with_timezone("UTC")),
        Arc::new(Int32Array::from(
            qty.iter().map(|q| q.map(|q| q as i32)).collect::<Vec<_>>(),
        )),
        Arc::new(
            Decimal128Array::from(price.iter().map(|p| p.map(i128::from)).collect::<Vec<_>>())
                .with_precision_and_scale(12, 2)
                .unwrap(),
        ),
    ];
    RecordBatch::try_new(schema(), columns).unwrap()
}

/// A delta body (Arrow IPC): `upserts` written with `tag`, and `deletes` (the key only).
fn delta_body(upserts: &[i64], tag: i64, deletes: &[i64]) -> Vec<u8> {
    let up = rows(upserts, tag);
    let mut columns: Vec<ArrayRef> = Vec::new();
    for (i, field) in schema().fields().iter().enumerate() {
        let del: ArrayRef = if i == 0 {
            Arc::new(Int64Array::from(deletes.to_vec()))
        } else {
            new_null_array(field.data_type(), deletes.len())
        };
        columns.push(arrow::compute::concat(&[up.column(i).as_ref(), del.as_ref()]).unwrap());
    }
    let ops: Vec<u8> = (0..upserts.len() + deletes.len())
        .map(|r| u8::from(r >= upserts.len()))
        .collect();
    columns.push(Arc::new(UInt8Array::from(ops)));
    let mut fields: Vec<Field> = schema()
        .fields()
        .iter()
        .map(|f| f.as_ref().clone())
        .collect();
    fields.push(Field::new("_op", DataType::UInt8, false));
    let batch = RecordBatch::try_new(Arc::new(Schema::new(fields)), columns).unwrap();
    arrow_stream(&batch)
}

/// Rows in the readers' canonical form (`tests/python/delta_readers.py`), sorted by key.
fn canonical(batches: &[RecordBatch]) -> Vec<Vec<Value>> {
    let mut out = Vec::new();
    for batch in batches {
        let columns: Vec<ArrayRef> = COLUMNS
            .iter()
            .map(|c| {
                let column = batch.column_by_name(c).unwrap();
                match column.data_type() {
                    // However queryd holds strings in memory, they are strings.
                    DataType::Dictionary(..) | DataType::Utf8View | DataType::LargeUtf8 => {
                        arrow::compute::cast(column, &DataType::Utf8).unwrap()
                    }
                    _ => column.clone(),
                }
            })
            .collect();
        for row in 0..batch.num_rows() {
            out.push(columns.iter().map(|c| cell(c, row)).collect());
        }
    }
    out.sort_by_key(|row: &Vec<Value>| row[0].as_i64().unwrap());
    out
}

fn cell(array: &ArrayRef, row: usize) -> Value {
    if array.is_null(row) {
        return Value::Null;
    }
    match array.data_type() {
        DataType::Int64 => array.as_primitive::<Int64Type>().value(row).into(),
        DataType::Int32 => array.as_primitive::<Int32Type>().value(row).into(),
        DataType::Utf8 => array.as_string::<i32>().value(row).into(),
        DataType::Boolean => array.as_boolean().value(row).into(),
        // The bits, as the readers' side writes them: no float formatting to disagree on.
        DataType::Float64 => {
            Value::from(array.as_primitive::<Float64Type>().value(row).to_bits() as i64)
        }
        DataType::Date32 => array.as_primitive::<Date32Type>().value(row).into(),
        DataType::Timestamp(TimeUnit::Microsecond, _) => array
            .as_primitive::<TimestampMicrosecondType>()
            .value(row)
            .into(),
        DataType::Decimal128(..) => {
            let formatter = ArrayFormatter::try_new(array.as_ref(), &FormatOptions::default());
            formatter.unwrap().value(row).to_string().into()
        }
        other => panic!("no canonical form for {other}"),
    }
}

/// What Strata's `query` answers at `version` (all rows, as an Arrow stream), canonical.
async fn strata_rows(cluster: &TestCluster, name: &str, version: u64) -> Vec<Vec<Value>> {
    let response = reqwest::Client::new()
        .post(format!(
            "{}/api/v1/datasets/{name}/query/stream",
            cluster.queryd_url(0)
        ))
        .json(&json!({"min_version": version}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    let answered: u64 = response.headers()["x-dataset-version"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(answered, version, "nothing else writes to {name}");
    let bytes = response.bytes().await.unwrap();
    let reader =
        arrow::ipc::reader::StreamReader::try_new(std::io::Cursor::new(bytes), None).unwrap();
    let batches: Vec<RecordBatch> = reader.map(|b| b.unwrap()).collect();
    canonical(&batches)
}

/// What each Delta reader reads from `table_dir`.
struct Read {
    /// delta-rs's idea of the newest log version.
    log_version: u64,
    /// (reader, rows) for every reader that ran.
    readers: Vec<(String, Vec<Vec<Value>>)>,
}

async fn delta_readers(table_dir: PathBuf) -> Read {
    let python = crate::queryd_binary::client_python();
    let duckdb_dir = python
        .parent()
        .and_then(Path::parent)
        .unwrap()
        .join("duckdb-delta");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("python/delta_readers.py");
    let output = tokio::task::spawn_blocking(move || {
        Command::new(python)
            .arg(script)
            .arg(&table_dir)
            .arg("id")
            .arg(COLUMNS.join(","))
            .arg(duckdb_dir)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(
        output.status.success(),
        "delta readers failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let mut answer: Value = serde_json::from_slice(&output.stdout).unwrap();
    let rows =
        |v: &mut Value| -> Vec<Vec<Value>> { serde_json::from_value(v["rows"].take()).unwrap() };
    let mut readers = vec![
        ("deltalake".to_owned(), rows(&mut answer["deltalake"])),
        ("polars".to_owned(), rows(&mut answer["polars"])),
    ];
    match answer["duckdb"].get("skipped") {
        // Recorded, and only this reader skipped: the other two still decide.
        Some(why) => eprintln!("DuckDB's delta_scan skipped: {why}"),
        None => readers.push(("duckdb".to_owned(), rows(&mut answer["duckdb"]))),
    }
    eprintln!("Delta readers: {}", answer["versions"]);
    Read {
        log_version: answer["deltalake"]["version"].as_u64().unwrap(),
        readers,
    }
}

/// Every reader reads exactly `expected`, and delta-rs sees log version `log_version`.
async fn assert_readers_see(
    table_dir: &Path,
    log_version: u64,
    expected: &[Vec<Value>],
    when: &str,
) {
    let read = delta_readers(table_dir.to_path_buf()).await;
    assert_eq!(read.log_version, log_version, "{when}: the log version");
    for (reader, rows) in &read.readers {
        if let Some(at) = (0..rows.len().min(expected.len())).find(|&i| rows[i] != expected[i]) {
            panic!(
                "{when}: {reader} differs at row {at}: {:?}\nStrata: {:?}",
                rows[at], expected[at]
            );
        }
        assert_eq!(rows.len(), expected.len(), "{when}: {reader}'s row count");
    }
}

/// The log's snapshot, checked against the manifest's base files.
async fn log_matches_base(cluster: &TestCluster, name: &str) -> LogState {
    let store = cluster.store();
    let name = DatasetName::new(name).unwrap();
    let log = delta_log::replay(store.as_ref(), &name).await.unwrap();
    let manifest = Table::new(store.clone(), name.clone())
        .load_latest()
        .await
        .unwrap();
    let base: Vec<String> = manifest
        .base_files
        .iter()
        .map(|f| {
            f.path
                .trim_start_matches(&format!("datasets/{name}/"))
                .to_owned()
        })
        .collect();
    assert_eq!(log.files.keys().cloned().collect::<Vec<_>>(), {
        let mut sorted = base;
        sorted.sort();
        sorted
    });
    log
}

async fn post_deltas(cluster: &TestCluster, name: &str, body: Vec<u8>) -> u64 {
    let response = reqwest::Client::new()
        .post(format!(
            "{}/api/v1/datasets/{name}/deltas",
            cluster.queryd_url(0)
        ))
        .header("x-admin-token", ADMIN)
        .header("content-type", ARROW)
        .body(body)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let answer: Value = response.json().await.unwrap();
    assert_eq!(status, 200, "{answer}");
    answer["version"].as_u64().unwrap()
}

async fn compact_now(cluster: &TestCluster, name: &str) -> u64 {
    let run = cluster.queryd().compact(name).await.unwrap();
    assert_eq!(run.outcome, RunOutcome::Committed, "{run:?}");
    assert_eq!(run.delta_log_error, None, "{run:?}");
    run.version.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delta_readers_read_strata_s_rows_through_deltas_compactions_and_gc() {
    let cluster = TestCluster::builder()
        .store(Store::LocalDir)
        .toml("[compactord]\ngc_grace = \"0s\"\ngc_keep_manifests = 1\ngc_schedule = \"\"\n")
        .start()
        .await
        .unwrap();
    let table_dir = cluster.dir().join("data/datasets/events");
    let base_ids: Vec<i64> = (0..BASE_ROWS).map(|i| i * 2).collect();
    let body = parquet_io::encode(schema(), &[rows(&base_ids, 0)]).unwrap();
    let response = reqwest::Client::new()
        .post(format!(
            "{}/api/v1/datasets?name=events&primary_key=id&delta_mirror=true",
            cluster.queryd_url(0)
        ))
        .header("x-admin-token", ADMIN)
        .header("content-type", PARQUET)
        .body(body.to_vec())
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let created: Value = response.json().await.unwrap();
    assert_eq!(
        (status, &created["delta_mirror"]),
        (201, &json!(true)),
        "{created}"
    );

    // Version 0: the log is there at once, and every reader reads Strata's rows.
    assert!(
        table_dir
            .join("_delta_log/00000000000000000000.json")
            .is_file()
    );
    log_matches_base(&cluster, "events").await;
    let at_create = strata_rows(&cluster, "events", 0).await;
    assert_eq!(at_create.len(), BASE_ROWS as usize);
    assert_readers_see(&table_dir, 0, &at_create, "at creation").await;

    // Deltas: changed rows, new rows, deleted rows. The Delta view still holds the base.
    let changed: Vec<i64> = (0..3000).map(|i| i * 40).collect();
    let added: Vec<i64> = (0..2000).map(|i| i * 60 + 1).collect();
    let deleted: Vec<i64> = (0..1500).map(|i| i * 40 + 22).collect();
    post_deltas(&cluster, "events", delta_body(&changed, 1, &[])).await;
    let version = post_deltas(&cluster, "events", delta_body(&added, 1, &deleted)).await;
    let with_deltas = strata_rows(&cluster, "events", version).await;
    assert_eq!(with_deltas.len(), (BASE_ROWS + 2000 - 1500) as usize);
    assert_readers_see(
        &table_dir,
        0,
        &at_create,
        "behind deltas (the documented lag)",
    )
    .await;

    // A compaction brings the view to Strata's rows.
    let compacted = compact_now(&cluster, "events").await;
    let log = log_matches_base(&cluster, "events").await;
    assert_eq!(
        (log.version, log.strata_version),
        (Some(1), Some(compacted))
    );
    let after_first = strata_rows(&cluster, "events", compacted).await;
    assert_eq!(after_first, with_deltas, "a compaction changes no row");
    assert_readers_see(&table_dir, 1, &after_first, "after the first compaction").await;

    // More deltas (rows changed again, added rows deleted, deleted rows back), compacted again.
    let again: Vec<i64> = (0..2500).map(|i| i * 48).collect();
    let back: Vec<i64> = deleted.iter().copied().step_by(3).collect();
    let gone: Vec<i64> = added.iter().copied().step_by(2).collect();
    post_deltas(&cluster, "events", delta_body(&again, 2, &gone)).await;
    post_deltas(&cluster, "events", delta_body(&back, 3, &[])).await;
    let compacted = compact_now(&cluster, "events").await;
    log_matches_base(&cluster, "events").await;
    let after_second = strata_rows(&cluster, "events", compacted).await;
    assert_ne!(after_second, after_first);
    assert_readers_see(&table_dir, 2, &after_second, "after the second compaction").await;

    // GC with no grace period and one manifest kept: the files the log's snapshot names
    // survive; those it removed, as old as the grace period, go.
    let response = reqwest::Client::new()
        .post(format!("{}/api/v1/gc", cluster.compactord_url()))
        .header("x-admin-token", ADMIN)
        .send()
        .await
        .unwrap();
    let gc: Value = response.json().await.unwrap();
    assert_eq!(gc["datasets"][0]["error"], Value::Null, "{gc}");
    assert!(
        gc["datasets"][0]["files_deleted"].as_u64().unwrap() > 0,
        "{gc}"
    );
    let log = log_matches_base(&cluster, "events").await;
    for file in log.files.keys() {
        assert!(
            table_dir.join(file).is_file(),
            "{file} is in the log's snapshot"
        );
    }
    for file in log.removed.keys() {
        assert!(
            !table_dir.join(file).exists(),
            "{file} left the log and was collected"
        );
    }
    assert_readers_see(&table_dir, 2, &after_second, "after GC").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_log_behind_its_base_is_caught_up_and_unmirrorable_tables_are_refused() {
    let cluster = TestCluster::builder()
        .store(Store::LocalDir)
        .toml(
            "[compactord]\ncheck_interval = \"200ms\"\nmax_deltas = 1000000\n\
             max_delta_ratio = 1e9\nmax_delta_age = \"1000h\"\n",
        )
        .start()
        .await
        .unwrap();
    let api = reqwest::Client::new();
    let upload = |query: &str, batch: RecordBatch| {
        let request = api
            .post(format!("{}/api/v1/datasets?{query}", cluster.queryd_url(0)))
            .header("x-admin-token", ADMIN)
            .header("content-type", PARQUET)
            .body(
                parquet_io::encode(batch.schema(), &[batch])
                    .unwrap()
                    .to_vec(),
            );
        async move {
            let response = request.send().await.unwrap();
            let status = response.status().as_u16();
            (status, response.json::<Value>().await.unwrap())
        }
    };
    let ids: Vec<i64> = (0..100).collect();
    let (status, created) =
        upload("name=small&primary_key=id&delta_mirror=true", rows(&ids, 0)).await;
    assert_eq!(status, 201, "{created}");

    // A compaction committed behind compactord's back (as if it crashed between the commit
    // and the log write): the log lags until the periodic check catches it up.
    let store = cluster.store();
    let upserts = rows(&[1000, 1001], 5);
    commit_delta(&store, "small", &upserts, &[3, 4]).await;
    let table = Table::new(store.clone(), DatasetName::new("small").unwrap());
    let report = compact::compact(&table, &CompactOptions::default())
        .await
        .unwrap();
    assert!(
        matches!(report.outcome, compact::CompactOutcome::Committed { .. }),
        "{report:?}"
    );
    let mut log = delta_log::replay(store.as_ref(), table.name())
        .await
        .unwrap();
    for _ in 0..200 {
        if log.version == Some(1) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        log = delta_log::replay(store.as_ref(), table.name())
            .await
            .unwrap();
    }
    assert_eq!(log.version, Some(1), "compactord's check caught the log up");
    log_matches_base(&cluster, "small").await;
    let latest = table.load_latest().await.unwrap();
    let expected = strata_rows(&cluster, "small", latest.version).await;
    assert_eq!(expected.len(), 100);
    let table_dir = cluster.dir().join("data/datasets/small");
    assert_readers_see(&table_dir, 1, &expected, "caught up").await;

    // Refused before anything is written, naming the column: an upload and a JSON source.
    let big = RecordBatch::try_new(
        Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("big", DataType::UInt64, true),
        ])),
        vec![
            Arc::new(Int64Array::from(vec![1, 2])),
            Arc::new(UInt64Array::from(vec![u64::MAX, 0])),
        ],
    )
    .unwrap();
    let (status, refused) = upload("name=big&primary_key=id&delta_mirror=true", big.clone()).await;
    assert_eq!(status, 400, "{refused}");
    assert!(
        refused["error"].as_str().unwrap().contains("\"big\""),
        "{refused}"
    );
    let (status, _) = upload("name=big&primary_key=id", big).await;
    assert_eq!(status, 201, "without delta_mirror the table is fine");

    let nanos = RecordBatch::try_new(
        Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("at", DataType::Timestamp(TimeUnit::Nanosecond, None), true),
        ])),
        vec![
            Arc::new(Int64Array::from(vec![1])),
            Arc::new(arrow::array::TimestampNanosecondArray::from(vec![1_001])),
        ],
    )
    .unwrap();
    let source = cluster.dir().join("src/nanos.parquet");
    strata_testkit::write_parquet(&source, &[nanos]).unwrap();
    let response = api
        .post(format!("{}/api/v1/datasets", cluster.queryd_url(0)))
        .header("x-admin-token", ADMIN)
        .json(
            &json!({"name": "nanos", "source": source.display().to_string(),
                      "primary_key": ["id"], "delta_mirror": true}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 400);
    let refused: Value = response.json().await.unwrap();
    assert!(
        refused["error"].as_str().unwrap().contains("\"at\""),
        "{refused}"
    );
    let missing = cluster.storaged().dataset("nanos").await.unwrap_err();
    assert_eq!(missing.status(), Some(404), "nothing was created");
    assert!(
        cluster
            .store()
            .head(&strata_shared::layout::delta_commit_path(
                &DatasetName::new("nanos").unwrap(),
                0
            ))
            .await
            .is_err()
    );
}
