//! Shared set-up: storaged or queryd alone in this process (a [`TestCluster`]), raw HTTP to
//! queryd for the wire-contract tests, and small fixtures.

use std::sync::Arc;

use arrow::array::{Int64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use object_store::ObjectStore;
use strata_daemon::config::Config;
use strata_testkit::{TestCluster, TestClusterBuilder};

pub use strata_testkit::{ADMIN_TOKEN as ADMIN, INTERNAL_TOKEN as INTERNAL};

/// storaged alone, in this process, over `store` with `config`'s settings.
pub async fn start_storaged(store: Arc<dyn ObjectStore>, config: Config) -> TestCluster {
    TestCluster::builder()
        .object_store(store)
        .daemons(true, 0, false)
        .config(config)
        .start()
        .await
        .unwrap()
}

/// `batch` as an Arrow IPC stream (a delta body).
pub fn arrow_stream(batch: &RecordBatch) -> Vec<u8> {
    let mut buffer = Vec::new();
    let mut writer =
        arrow::ipc::writer::StreamWriter::try_new(&mut buffer, &batch.schema()).unwrap();
    writer.write(batch).unwrap();
    writer.finish().unwrap();
    drop(writer);
    buffer
}

/// A small keyed table: `id` (Int64) and `name` (Utf8, "person {id}").
pub fn people(ids: &[i64]) -> RecordBatch {
    named(ids, "person")
}

/// The `people` table with names "{tag} {id}", so a test can tell which write a row came from.
pub fn named(ids: &[i64], tag: &str) -> RecordBatch {
    let schema = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("name", DataType::Utf8, true),
    ]));
    let names: Vec<String> = ids.iter().map(|i| format!("{tag} {i}")).collect();
    RecordBatch::try_new(
        schema,
        vec![
            Arc::new(Int64Array::from(ids.to_vec())),
            Arc::new(StringArray::from(names)),
        ],
    )
    .unwrap()
}

/// Creates dataset `name` directly in `store`: each of `parts` (already in key order) becomes
/// one base file of version 0, as storaged's import would write them.
pub async fn create_dataset(
    store: &Arc<dyn ObjectStore>,
    name: &str,
    parts: &[RecordBatch],
    primary_key: &[&str],
) -> strata_shared::manifest::Manifest {
    use strata_shared::{
        commit::Table, layout, manifest::DataFile, manifest::Manifest, parquet_io,
    };
    let name = layout::DatasetName::new(name).unwrap();
    let compaction = layout::new_compaction_id();
    let mut files = Vec::new();
    for (n, part) in parts.iter().enumerate() {
        let path = layout::base_file_path(&name, &compaction, n);
        let bytes = parquet_io::encode(part.schema(), std::slice::from_ref(part)).unwrap();
        let size = bytes.len() as u64;
        parquet_io::put_new(store.as_ref(), &path, bytes)
            .await
            .unwrap();
        files.push(DataFile {
            path: path.to_string(),
            rows: part.num_rows() as u64,
            bytes: size,
            key_min: None,
            key_max: None,
        });
    }
    let schema = parts[0].schema().as_ref().clone();
    let pk = primary_key.iter().map(|s| s.to_string()).collect();
    let manifest = Manifest::initial(name.clone(), schema, pk, files, "test-create");
    Table::new(store.clone(), name)
        .create(&manifest)
        .await
        .unwrap();
    manifest
}

/// Commits one delta directly in `store`, as storaged's ingest writes it: `table` holds full
/// rows for `upserts` (the table's columns) and `deletes` are keys (every key column takes the
/// same integer). Returns the new version.
pub async fn commit_delta(
    store: &Arc<dyn ObjectStore>,
    name: &str,
    upserts: &RecordBatch,
    deletes: &[i64],
) -> u64 {
    use arrow::array::{UInt8Array, new_null_array};
    use strata_shared::manifest::{DeltaFile, Operation};
    use strata_shared::{commit::Table, delta, layout, parquet_io};
    let name = layout::DatasetName::new(name).unwrap();
    let table = Table::new(store.clone(), name.clone());
    let manifest = table.load_latest().await.unwrap();
    let schema = manifest.arrow_schema();
    let dschema = delta::delta_schema(&schema, &manifest.primary_key);
    let n_up = upserts.num_rows();
    let total = n_up + deletes.len();
    let mut columns = Vec::new();
    for (i, field) in schema.fields().iter().enumerate() {
        let up = upserts.column(i).clone();
        let del = if manifest.primary_key.contains(field.name()) {
            let keys = Int64Array::from(deletes.to_vec());
            arrow::compute::cast(&keys, field.data_type()).unwrap()
        } else {
            new_null_array(field.data_type(), deletes.len())
        };
        columns.push(arrow::compute::concat(&[up.as_ref(), del.as_ref()]).unwrap());
    }
    let ops: Vec<u8> = (0..total).map(|r| u8::from(r >= n_up)).collect();
    columns.push(Arc::new(UInt8Array::from(ops)));
    let batch = RecordBatch::try_new(dschema.clone(), columns).unwrap();
    let batch = delta::prepare(&batch, &manifest.primary_key).unwrap();
    let path = layout::delta_file_path(&name, chrono::Utc::now(), uuid::Uuid::now_v7());
    let bytes = parquet_io::encode(dschema, &[batch]).unwrap();
    let size = bytes.len() as u64;
    parquet_io::put_new(store.as_ref(), &path, bytes)
        .await
        .unwrap();
    let txn = format!("test-{}", uuid::Uuid::now_v7());
    let outcome = table
        .commit(&txn, Operation::Ingest, |m| {
            m.deltas.push(DeltaFile {
                path: path.to_string(),
                seq: m.version,
                rows: total as u64,
                bytes: size,
                upserts: n_up as u64,
                deletes: deletes.len() as u64,
                created_at: chrono::Utc::now(),
            });
            Ok(())
        })
        .await
        .unwrap();
    outcome.manifest.version
}

/// queryd alone, in this process, over `store` (no storaged: it reads the store directly),
/// and raw HTTP to it: for the tests of queryd's wire contract, which send what a typed client
/// would not (no content type, bad paths, any header).
pub struct Queryd {
    pub cluster: TestCluster,
    http: reqwest::Client,
}

impl Queryd {
    pub async fn new(store: Arc<dyn ObjectStore>, config: Config) -> Self {
        Self::start(TestCluster::builder().object_store(store).config(config)).await
    }

    /// queryd alone as `builder` sets it up otherwise.
    pub async fn start(builder: TestClusterBuilder) -> Self {
        let cluster = builder.daemons(false, 1, false).start().await.unwrap();
        Self {
            cluster,
            http: reqwest::Client::new(),
        }
    }

    /// A request to `path` on this queryd, with nothing set.
    pub fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.http
            .request(method, format!("{}{path}", self.cluster.queryd_url(0)))
    }

    /// Sends a request; returns status, headers and body.
    pub async fn send(
        &self,
        request: reqwest::RequestBuilder,
    ) -> (u16, reqwest::header::HeaderMap, bytes::Bytes) {
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        (status, headers, response.bytes().await.unwrap())
    }

    pub async fn get(&self, path: &str) -> (u16, serde_json::Value) {
        let (status, _, body) = self.send(self.request(reqwest::Method::GET, path)).await;
        (
            status,
            serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null),
        )
    }

    /// POSTs JSON (with the admin token when `admin`).
    pub async fn post(
        &self,
        path: &str,
        body: &serde_json::Value,
        admin: bool,
    ) -> (u16, serde_json::Value) {
        let (status, _, body) = self.post_raw(path, body.to_string(), &[], admin).await;
        (
            status,
            serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null),
        )
    }

    pub async fn post_raw(
        &self,
        path: &str,
        body: String,
        headers: &[(&str, &str)],
        admin: bool,
    ) -> (u16, reqwest::header::HeaderMap, bytes::Bytes) {
        let mut request = self
            .request(reqwest::Method::POST, path)
            .header("content-type", "application/json");
        for (k, v) in headers {
            request = request.header(*k, *v);
        }
        if admin {
            request = request.header("x-admin-token", ADMIN);
        }
        self.send(request.body(body)).await
    }
}

/// A daemon's `GET /metrics` text.
pub async fn metrics_text(http: &reqwest::Client, url: &str) -> String {
    http.get(format!("{url}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}
