//! The real `strata` binary: `strata up` creates the datasets its config declares and serves
//! manifest v0, on a local directory and on SeaweedFS; `--demo`; graceful SIGTERM; a restart
//! leaves existing datasets alone; separate daemons refuse to start without what they need.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use arrow::array::AsArray;
use arrow::datatypes::Int64Type;
use object_store::ObjectStore;
use strata_testkit::{
    ChildProcess, Mode, Store, TestCluster, free_port, strata_bin, wait_http_ok, write_parquet,
};

use crate::common::people;

const DECLARED: &str = r#"
[[datasets]]
name = "people"
source = "src/people.parquet"
primary_key = ["id"]
"#;

/// Starts `strata up` on `store` (plus `settings`), checks the declared dataset's manifest
/// v0 and its rows (read back from the store directly), stops it with SIGTERM and starts it
/// again. Returns the running cluster.
async fn declared_dataset_round_trip(dir: &Path, store: Store, settings: &str) -> TestCluster {
    write_parquet(&dir.join("src/people.parquet"), &[people(&[30, 10, 20])]).unwrap();
    let mut strata = TestCluster::builder()
        .mode(Mode::Up)
        .store(store)
        .dir(dir)
        .toml(DECLARED)
        .toml(settings)
        .start()
        .await
        .unwrap();
    let client = strata.storaged();

    let manifest = client.manifest("people", Some(0)).await.unwrap();
    assert_eq!(manifest.version, 0);
    assert_eq!(manifest.base_rows(), 3);
    assert_eq!(manifest.primary_key, vec!["id"]);
    let state = strata_shared::merge::load_state(strata.store().as_ref(), &manifest)
        .await
        .unwrap();
    assert_eq!(
        state.column(0).as_primitive::<Int64Type>().values(),
        &[10, 20, 30]
    );

    let process = strata.process("strata").unwrap();
    let status = process.terminate(Duration::from_secs(10)).unwrap();
    assert!(
        status.success(),
        "SIGTERM is a clean exit: {status:?}\n{}",
        process.log()
    );

    // Restart with a changed source: the existing dataset is left alone.
    write_parquet(&dir.join("src/people.parquet"), &[people(&[1, 2, 3, 4])]).unwrap();
    strata.restart("strata").await.unwrap();
    let info = strata.storaged().dataset("people").await.unwrap();
    assert_eq!(
        (info.version, info.base_rows),
        (0, 3),
        "{}",
        strata.log("strata")
    );
    strata
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn up_on_a_local_directory() {
    let dir = tempfile::tempdir().unwrap();
    // A relative file:// URL resolves against the config file's directory.
    let relative = "[store]\nurl = \"file://data\"\n";
    declared_dataset_round_trip(dir.path(), Store::LocalDir, relative).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn up_on_seaweedfs() {
    let dir = tempfile::tempdir().unwrap();
    let strata = declared_dataset_round_trip(dir.path(), Store::SeaweedFs, "").await;
    let seaweed = strata.seaweed().unwrap();

    // A dataset from an s3:// glob source, read with the store's S3 settings.
    let bucket = seaweed.store().unwrap();
    for (key, ids) in [
        ("src/a.parquet", &[3i64, 1][..]),
        ("src/b.parquet", &[2][..]),
    ] {
        let bytes =
            strata_shared::parquet_io::encode(people(ids).schema(), &[people(ids)]).unwrap();
        object_store::ObjectStoreExt::put(bucket.as_ref(), &key.into(), bytes.into())
            .await
            .unwrap();
    }
    let client = strata.storaged();
    let request = strata_storaged_api::catalog::CreateDatasetRequest {
        name: "from_s3".into(),
        source: format!("s3://{}/src/*.parquet", seaweed.bucket),
        format: Default::default(),
        schema: None,
        primary_key: vec!["id".into()],
        delta_mirror: false,
        index: None,
        index_columns: Vec::new(),
    };
    let info = client.create_dataset(&request).await.unwrap();
    assert_eq!(info.base_rows, 3);
    let manifest = client.manifest("from_s3", None).await.unwrap();
    let state = strata_shared::merge::load_state(strata.store().as_ref(), &manifest)
        .await
        .unwrap();
    assert_eq!(
        state.column(0).as_primitive::<Int64Type>().values(),
        &[1, 2, 3]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn up_with_demo_serves_a_demo_dataset() {
    let strata = TestCluster::builder()
        .mode(Mode::Up)
        .store(Store::LocalDir)
        .arg("--demo")
        .start()
        .await
        .unwrap();
    let info = strata.storaged().dataset("demo").await.unwrap();
    assert_eq!(info.base_rows, 100_000);
    assert_eq!(info.primary_key, vec!["id"]);
    assert!(info.columns.iter().any(|c| c.name == "category"));
    for base in [strata.queryd_url(0), strata.compactord_url()] {
        let v: serde_json::Value = reqwest::get(format!("{base}/version"))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert!(v["version"].is_string());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn separate_daemons() {
    let dir = tempfile::tempdir().unwrap();
    let (s, q) = (free_port(), free_port());
    let config = format!(
        "[store]\nurl = \"file://data\"\n[storaged]\nlisten = \"127.0.0.1:{s}\"\n[queryd]\nlisten = \"127.0.0.1:{q}\"\n{DECLARED}"
    );
    write_parquet(
        &dir.path().join("src/people.parquet"),
        &[people(&[30, 10, 20])],
    )
    .unwrap();
    let path = dir.path().join("strata.toml");
    std::fs::write(&path, config).unwrap();

    // queryd without an internal token cannot reach storaged: it refuses to start, clearly.
    let output = Command::new(strata_bin())
        .args(["queryd", "--config"])
        .arg(&path)
        .env_remove("STRATA_INTERNAL_TOKEN")
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("internal_token"), "{stderr}");

    let daemon = |name: &str| {
        let mut command = Command::new(strata_bin());
        command
            .arg(name)
            .arg("--config")
            .arg(&path)
            .env("STRATA_INTERNAL_TOKEN", "tok");
        ChildProcess::spawn(name, command, &dir.path().join(format!("{name}.log"))).unwrap()
    };
    let storaged = daemon("storaged");
    let queryd = daemon("queryd");
    for (url, p) in [
        (format!("http://127.0.0.1:{s}/health"), &storaged),
        (format!("http://127.0.0.1:{q}/health"), &queryd),
    ] {
        if let Err(e) = wait_http_ok(&url, Duration::from_secs(30)).await {
            panic!("{e}\n{}", p.log());
        }
    }
    // storaged's object API answers queryd's token.
    let remote = strata_storaged_api::RemoteStore::new(&format!("http://127.0.0.1:{s}"), "tok");
    let listed = remote.list_with_delimiter(None).await.unwrap();
    assert!(listed.objects.is_empty());

    // queryd reads the dataset storaged created through that API.
    let body: serde_json::Value = reqwest::Client::new()
        .post(format!("http://127.0.0.1:{q}/api/v1/datasets/people/query"))
        .json(&serde_json::json!({"columns": ["id"]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        body["data"],
        serde_json::json!([{"id": 10}, {"id": 20}, {"id": 30}]),
        "{}",
        queryd.log()
    );
}
