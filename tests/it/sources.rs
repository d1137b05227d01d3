//! Sources beyond Parquet files (issue 22): CSV and NDJSON files, Hive-partitioned
//! directories and Delta Lake tables read by an in-process storaged from real files, each
//! dataset read back row for row; the refusals (unknown format, a Delta feature Strata does
//! not read, bad CSV) as 400s that create nothing; uploads spooled to disk (413 past
//! `storaged.max_upload_bytes`, the spool file gone afterwards), and an upload larger than
//! the import's memory imported by storaged as a real process within a bounded peak RSS.

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use arrow::array::{ArrayRef, Float64Array, Int64Array, RecordBatch};
use arrow::datatypes::{DataType, Field, Schema};
use arrow::util::display::{ArrayFormatter, FormatOptions};
use object_store::local::LocalFileSystem;
use serde_json::{Value, json};
use strata_daemon::config::{Config, SourceFormat};
use strata_storaged_api::catalog::{CreateDatasetRequest, SourceColumn, UploadQuery};
use strata_testkit::{Mode, Store, TestCluster, write_parquet};

use crate::common::{ADMIN, start_storaged};

struct Fixture {
    dir: tempfile::TempDir,
    storaged: TestCluster,
}

async fn fixture(edit: impl FnOnce(&mut Config, &Path)) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let store_dir = dir.path().join("store");
    std::fs::create_dir_all(&store_dir).unwrap();
    let store = Arc::new(LocalFileSystem::new_with_prefix(&store_dir).unwrap());
    let mut config = Config::default();
    edit(&mut config, dir.path());
    let storaged = start_storaged(store, config).await;
    Fixture { dir, storaged }
}

fn request(name: &str, source: &Path, format: SourceFormat, key: &[&str]) -> CreateDatasetRequest {
    CreateDatasetRequest {
        name: name.into(),
        source: source.display().to_string(),
        format,
        schema: None,
        primary_key: key.iter().map(|k| k.to_string()).collect(),
        delta_mirror: false,
        index: None,
        index_columns: Vec::new(),
    }
}

/// The columns (name, type) and rows (each cell as text, `null` for null) of dataset `name`,
/// read from its base files in storage order.
async fn table(f: &Fixture, name: &str) -> (Vec<(String, DataType)>, Vec<Vec<String>>) {
    let manifest = f.storaged.storaged().manifest(name, None).await.unwrap();
    let store = f.storaged.store();
    let columns = manifest
        .schema
        .fields()
        .iter()
        .map(|c| (c.name().clone(), c.data_type().clone()))
        .collect();
    let mut rows = Vec::new();
    for file in &manifest.base_files {
        let path = object_store::path::Path::from(file.path.as_str());
        let (_, batches) = strata_shared::parquet_io::read(store.as_ref(), &path)
            .await
            .unwrap();
        for batch in batches {
            rows.extend(text_rows(&batch));
        }
    }
    (columns, rows)
}

fn text_rows(batch: &RecordBatch) -> Vec<Vec<String>> {
    let options = FormatOptions::default().with_null("null");
    let formatters: Vec<ArrayFormatter> = batch
        .columns()
        .iter()
        .map(|c| ArrayFormatter::try_new(c.as_ref(), &options).unwrap())
        .collect();
    (0..batch.num_rows())
        .map(|r| formatters.iter().map(|f| f.value(r).to_string()).collect())
        .collect()
}

fn names(columns: &[(String, DataType)]) -> Vec<&str> {
    columns.iter().map(|(n, _)| n.as_str()).collect()
}

/// POSTs a raw JSON create to storaged: the status and the answer.
async fn create_raw(f: &Fixture, body: Value) -> (u16, Value) {
    let response = reqwest::Client::new()
        .post(format!("{}/api/v1/datasets", f.storaged.storaged_url()))
        .header("x-admin-token", ADMIN)
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn assert_refused(f: &Fixture, body: Value, needle: &str) {
    let name = body["name"].as_str().unwrap().to_owned();
    let (status, answer) = create_raw(f, body).await;
    assert_eq!(status, 400, "{answer}");
    let error = answer["error"].as_str().unwrap_or_default();
    assert!(error.contains(needle), "{needle:?} not in {error:?}");
    let err = f.storaged.storaged().dataset(&name).await.unwrap_err();
    assert_eq!(err.status(), Some(404), "{name} was created: {err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn csv_and_ndjson_sources_are_inferred_or_given_and_read_in_key_order() {
    let f = fixture(|_, _| {}).await;
    let dir = f.dir.path();
    // CSV: a quoted comma, a quoted newline, an empty field (null), no final newline.
    let csv = dir.join("people.csv");
    std::fs::write(&csv, "id,name,score\n3,\"c, d\",1.5\n1,\"a\nb\",\n2,b,2.5").unwrap();
    let info = f
        .storaged
        .storaged()
        .create_dataset(&request("csv", &csv, SourceFormat::Auto, &["id"]))
        .await
        .unwrap();
    assert_eq!(info.base_rows, 3);
    let (columns, rows) = table(&f, "csv").await;
    assert_eq!(
        columns,
        [
            ("id".into(), DataType::Int64),
            ("name".into(), DataType::Utf8),
            ("score".into(), DataType::Float64)
        ]
    );
    assert_eq!(
        rows,
        [
            ["1", "a\nb", "null"],
            ["2", "b", "2.5"],
            ["3", "c, d", "1.5"]
        ]
    );

    // The same CSV with its columns given: the header line is skipped, the types are these.
    let mut given = request("csv_given", &csv, SourceFormat::Csv, &["id"]);
    given.schema = Some(
        [("id", "int32"), ("name", "string"), ("score", "float64")]
            .iter()
            .map(|(n, t)| SourceColumn {
                name: n.to_string(),
                data_type: t.to_string(),
                nullable: true,
            })
            .collect(),
    );
    f.storaged.storaged().create_dataset(&given).await.unwrap();
    let (columns, rows) = table(&f, "csv_given").await;
    assert_eq!(columns[0].1, DataType::Int32);
    assert_eq!(rows.len(), 3);

    // NDJSON: a directory of two files (and a `_SUCCESS` marker to skip); key order kept.
    let nd = dir.join("events");
    std::fs::create_dir_all(&nd).unwrap();
    std::fs::write(
        nd.join("a.ndjson"),
        "{\"ts\": 5, \"kind\": \"x\", \"n\": 1.5}\n{\"ts\": 2, \"kind\": \"y\"}\n",
    )
    .unwrap();
    std::fs::write(
        nd.join("b.jsonl"),
        "{\"ts\": 9, \"kind\": null, \"n\": 3}\n",
    )
    .unwrap();
    std::fs::write(nd.join("_SUCCESS"), "").unwrap();
    f.storaged
        .storaged()
        .create_dataset(&request("nd", &nd, SourceFormat::Auto, &["ts"]))
        .await
        .unwrap();
    let (columns, rows) = table(&f, "nd").await;
    assert_eq!(names(&columns), ["ts", "kind", "n"], "the file's key order");
    assert_eq!(
        rows,
        [["2", "y", "null"], ["5", "x", "1.5"], ["9", "null", "3.0"]]
    );

    // Refusals: each a 400 naming the problem, each creating nothing.
    let src = |p: &Path| p.display().to_string();
    assert_refused(
        &f,
        json!({"name": "orc", "source": src(&csv), "format": "orc"}),
        "unknown variant",
    )
    .await;
    let bad = dir.join("bad.csv");
    let mut text = String::from("id,amount\n");
    for i in 0..10_001 {
        text.push_str(&format!("{i},{i}\n"));
    }
    text.push_str("10001,lots\n");
    std::fs::write(&bad, &text).unwrap();
    assert_refused(
        &f,
        json!({"name": "bad", "source": src(&bad), "primary_key": ["id"]}),
        "bad.csv is not readable as CSV",
    )
    .await;
    let ragged = dir.join("ragged.csv");
    std::fs::write(&ragged, "id,name\n1,a\n2,b,extra\n").unwrap();
    assert_refused(
        &f,
        json!({"name": "ragged", "source": src(&ragged)}),
        "ragged.csv is not readable as CSV",
    )
    .await;
    assert_refused(
        &f,
        json!({"name": "typed", "source": src(&csv), "format": "parquet",
               "schema": [{"name": "id", "type": "int64"}]}),
        "schema is for CSV and NDJSON sources",
    )
    .await;
    assert_refused(
        &f,
        json!({"name": "vocab", "source": src(&csv),
               "schema": [{"name": "id", "type": "int128"}]}),
        "unknown type",
    )
    .await;
    assert_refused(
        &f,
        json!({"name": "none", "source": src(&dir.join("nothing")), "format": "csv"}),
        "matched no CSV files",
    )
    .await;
}

fn part(ids: &[i64]) -> RecordBatch {
    let schema = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("v", DataType::Float64, true),
    ]));
    let values: Vec<f64> = ids.iter().map(|&i| i as f64 / 2.0).collect();
    RecordBatch::try_new(
        schema,
        vec![
            Arc::new(Int64Array::from(ids.to_vec())) as ArrayRef,
            Arc::new(Float64Array::from(values)),
        ],
    )
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hive_partition_directories_become_typed_columns() {
    let f = fixture(|_, _| {}).await;
    let root = f.dir.path().join("sales");
    write_parquet(
        &root.join("year=2024/country=FR/part-0.parquet"),
        &[part(&[4, 1])],
    )
    .unwrap();
    write_parquet(
        &root.join("year=2025/country=DE/part-0.parquet"),
        &[part(&[2])],
    )
    .unwrap();
    write_parquet(
        &root.join("year=2025/country=__HIVE_DEFAULT_PARTITION__/part-0.parquet"),
        &[part(&[3])],
    )
    .unwrap();
    write_parquet(
        &root.join("year=2025/country=S%C3%A3o/part-1.parquet"),
        &[part(&[5])],
    )
    .unwrap();
    std::fs::write(root.join("_SUCCESS"), "").unwrap();
    f.storaged
        .storaged()
        .create_dataset(&request("sales", &root, SourceFormat::Auto, &["id"]))
        .await
        .unwrap();
    let (columns, rows) = table(&f, "sales").await;
    assert_eq!(
        columns,
        [
            ("id".into(), DataType::Int64),
            ("v".into(), DataType::Float64),
            ("year".into(), DataType::Int64),
            ("country".into(), DataType::Utf8),
        ],
        "partition columns after the file's, year an integer"
    );
    assert_eq!(
        rows,
        [
            ["1", "0.5", "2024", "FR"],
            ["2", "1.0", "2025", "DE"],
            ["3", "1.5", "2025", "null"],
            ["4", "2.0", "2024", "FR"],
            ["5", "2.5", "2025", "São"],
        ]
    );

    // Files in different partition layouts are not one table.
    let mixed = f.dir.path().join("mixed");
    write_parquet(&mixed.join("k=1/a.parquet"), &[part(&[1])]).unwrap();
    write_parquet(&mixed.join("j=1/b.parquet"), &[part(&[2])]).unwrap();
    assert_refused(
        &f,
        json!({"name": "mixed", "source": mixed.display().to_string()}),
        "different partition directories",
    )
    .await;
}

/// The Python with `deltalake` (scripts/install-test-tools.sh).
fn python() -> std::path::PathBuf {
    crate::queryd_binary::client_python()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delta_table_written_by_deltalake_is_read_as_deltalake_reads_it() {
    let f = fixture(|_, _| {}).await;
    let table_dir = f.dir.path().join("lake");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("python/delta_source.py");
    let (python, dir) = (python(), table_dir.clone());
    let output = tokio::task::spawn_blocking(move || {
        Command::new(python).arg(script).arg(dir).output().unwrap()
    })
    .await
    .unwrap();
    assert!(
        output.status.success(),
        "delta_source.py failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let oracle: Value = serde_json::from_slice(&output.stdout).unwrap();
    let expected: Vec<Vec<String>> = oracle["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|row| {
            row.as_array()
                .unwrap()
                .iter()
                .map(|v| match v {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                })
                .collect()
        })
        .collect();
    assert!(
        table_dir
            .join("_delta_log/00000000000000000003.checkpoint.parquet")
            .exists(),
        "the table has a checkpoint to replay from"
    );

    // Told by `_delta_log/` (format auto), and named explicitly: the same rows.
    for (name, format) in [("lake", SourceFormat::Auto), ("lake2", SourceFormat::Delta)] {
        f.storaged
            .storaged()
            .create_dataset(&request(name, &table_dir, format, &["id"]))
            .await
            .unwrap();
        let (columns, rows) = table(&f, name).await;
        assert_eq!(names(&columns), ["id", "name", "score", "country"]);
        assert_eq!(rows.len(), 80, "90 written, 10 deleted");
        assert_eq!(rows, expected, "{name}: row for row as deltalake reads it");
    }

    // A table with a feature Strata does not read is refused, naming it; so is one with a
    // deletion vector or column mapping.
    let log = |dir: &Path, lines: &[Value]| {
        std::fs::create_dir_all(dir.join("_delta_log")).unwrap();
        let text: Vec<String> = lines.iter().map(Value::to_string).collect();
        std::fs::write(
            dir.join("_delta_log/00000000000000000000.json"),
            text.join("\n"),
        )
        .unwrap();
    };
    let schema_string =
        r#"{"type":"struct","fields":[{"name":"id","type":"long","nullable":true,"metadata":{}}]}"#;
    let meta = |configuration: Value| {
        json!({"metaData": {"id": "x", "format": {"provider": "parquet", "options": {}},
            "schemaString": schema_string, "partitionColumns": [], "configuration": configuration}})
    };
    let cases = [
        (
            "v2",
            vec![
                json!({"protocol": {"minReaderVersion": 3, "minWriterVersion": 7,
                    "readerFeatures": ["v2Checkpoint"], "writerFeatures": ["v2Checkpoint"]}}),
                meta(json!({})),
            ],
            "reader feature \"v2Checkpoint\" is not supported",
        ),
        (
            "dv",
            vec![
                json!({"protocol": {"minReaderVersion": 3, "minWriterVersion": 7,
                    "readerFeatures": ["deletionVectors"], "writerFeatures": ["deletionVectors"]}}),
                meta(json!({})),
                json!({"add": {"path": "a.parquet", "partitionValues": {}, "size": 1,
                    "modificationTime": 0, "dataChange": true,
                    "deletionVector": {"storageType": "u", "pathOrInlineDv": "ab",
                        "offset": 1, "sizeInBytes": 36, "cardinality": 2}}}),
            ],
            "deletion vector",
        ),
        (
            "mapped",
            vec![
                json!({"protocol": {"minReaderVersion": 2, "minWriterVersion": 5}}),
                meta(json!({"delta.columnMapping.mode": "name"})),
            ],
            "column mapping",
        ),
    ];
    for (name, lines, needle) in cases {
        let dir = f.dir.path().join(name);
        log(&dir, &lines);
        assert_refused(
            &f,
            json!({"name": name, "source": dir.display().to_string(), "format": "delta"}),
            needle,
        )
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_are_spooled_and_refused_past_the_configured_cap() {
    let f = fixture(|config, dir| {
        config.storaged.spill_dir = Some(dir.join("spill"));
        config.storaged.max_upload_bytes = 4096;
    })
    .await;
    let client = f.storaged.storaged();
    let query = UploadQuery::new(&["id".to_owned()]);
    // A CSV upload within the cap: created, spool file gone.
    let info = client
        .upload_dataset_with("small", &query, "text/csv", "id,name\n2,b\n1,a\n")
        .await
        .unwrap();
    assert_eq!(info.base_rows, 2);
    // NDJSON.
    let info = client
        .upload_dataset_with(
            "lines",
            &query,
            "application/x-ndjson",
            "{\"id\": 1, \"x\": true}\n{\"id\": 2, \"x\": false}\n",
        )
        .await
        .unwrap();
    assert_eq!(info.base_rows, 2);
    // Past the cap: 413, nothing created, nothing left on disk.
    let big = format!("id\n{}", "1\n".repeat(4000));
    let err = client
        .upload_dataset_with("big", &query, "text/csv", big)
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(413), "{err}");
    // Bad CSV: 400.
    let err = client
        .upload_dataset_with("bad", &query, "text/csv", "id,n\n1,2\n2,3,4\n")
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(400), "{err}");
    for name in ["big", "bad"] {
        assert_eq!(client.dataset(name).await.unwrap_err().status(), Some(404));
    }
    let spill = f.dir.path().join("spill");
    let left: Vec<_> = std::fs::read_dir(&spill)
        .map(|d| d.map(|e| e.unwrap().path()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "spool files left: {left:?}");
}

/// A CSV upload whose rows take more memory than the import's budget plus the allowance:
/// storaged (a real process) spools it and imports it within the bound import_scale.rs holds
/// a source to.
const UPLOAD_ROWS: i64 = 3_200_000;
const BUDGET: u64 = 32 << 20;
const ALLOWANCE: u64 = 256 << 20;

fn memory(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kb = status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .unwrap();
    kb * 1024
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_larger_than_the_import_memory_stays_within_its_bound() {
    let dir = tempfile::tempdir().unwrap();
    let body = dir.path().join("big.csv");
    {
        use std::io::Write;
        let mut out = std::io::BufWriter::new(std::fs::File::create(&body).unwrap());
        writeln!(out, "id,tag,value").unwrap();
        for i in 0..UPLOAD_ROWS {
            // Scrambled keys, so the import sorts and spills.
            let id = i * 7_919 % UPLOAD_ROWS;
            writeln!(
                out,
                "{id},{:0>100x},{}",
                (id as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15),
                id / 2
            )
            .unwrap();
        }
    }
    let bytes = std::fs::metadata(&body).unwrap().len();
    assert!(
        bytes > BUDGET + ALLOWANCE,
        "the body ({} MiB) must not fit the bound",
        bytes >> 20
    );
    let spill = dir.path().join("spill");
    let cluster_dir = dir.path().join("cluster");
    std::fs::create_dir_all(&cluster_dir).unwrap();
    let mut cluster = TestCluster::builder()
        .mode(Mode::Processes)
        .store(Store::LocalDir)
        .dir(&cluster_dir)
        .daemons(true, 0, false)
        .toml(&format!(
            "[storaged]\nimport_memory_bytes = {BUDGET}\nspill_dir = \"{}\"\n",
            spill.display()
        ))
        .start()
        .await
        .unwrap();
    let pid = cluster.process("storaged").unwrap().id();
    let before = memory(pid, "VmRSS:");
    let client = cluster.storaged();
    let file = tokio::fs::File::open(&body).await.unwrap();
    let info = tokio::time::timeout(
        Duration::from_secs(1200),
        client.upload_dataset_with(
            "big",
            &UploadQuery::new(&["id".to_owned()]),
            "text/csv",
            file,
        ),
    )
    .await
    .unwrap()
    .unwrap();
    let peak = memory(pid, "VmHWM:");
    eprintln!(
        "upload of {UPLOAD_ROWS} rows ({} MiB of CSV): storaged RSS before {} MiB, peak {} MiB",
        bytes >> 20,
        before >> 20,
        peak >> 20
    );
    assert_eq!(info.base_rows, UPLOAD_ROWS as u64);
    assert!(
        peak <= before + BUDGET + ALLOWANCE,
        "peak RSS {} MiB above {} MiB before + {} MiB budget + {} MiB",
        peak >> 20,
        before >> 20,
        BUDGET >> 20,
        ALLOWANCE >> 20
    );
    assert!(cluster.log("storaged").contains("import: upload spooled"));
    let left: Vec<_> = std::fs::read_dir(&spill)
        .map(|d| d.map(|e| e.unwrap().path()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "spool and spill files left: {left:?}");
    // The first and last rows by key are there, whole.
    let manifest = client.manifest("big", Some(0)).await.unwrap();
    assert_eq!(manifest.base_files[0].key_min, Some(vec![0.into()]));
    assert_eq!(
        manifest.base_files.last().unwrap().key_max,
        Some(vec![(UPLOAD_ROWS - 1).into()])
    );
}
