//! The catalog API of an in-process storaged on a local directory: creating datasets from
//! Parquet files, directories and globs; every bad request is a JSON 4xx that commits nothing.

use std::path::Path;
use std::sync::Arc;

use arrow::array::{AsArray, Int64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Int64Type, Schema};
use object_store::local::LocalFileSystem;
use strata_daemon::config::Config;
use strata_shared::commit::Table;
use strata_shared::layout::DatasetName;
use strata_storaged_api::catalog::CreateDatasetRequest;
use strata_testkit::write_parquet;

use strata_testkit::TestCluster;

use crate::common::{ADMIN, people, start_storaged};

struct Fixture {
    dir: tempfile::TempDir,
    storaged: TestCluster,
}

async fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let store_dir = dir.path().join("store");
    std::fs::create_dir_all(&store_dir).unwrap();
    let store = Arc::new(LocalFileSystem::new_with_prefix(&store_dir).unwrap());
    let storaged = start_storaged(store, Config::default()).await;
    Fixture { dir, storaged }
}

fn request(name: &str, source: &Path, key: &[&str]) -> CreateDatasetRequest {
    CreateDatasetRequest {
        name: name.into(),
        source: source.display().to_string(),
        format: Default::default(),
        schema: None,
        primary_key: key.iter().map(|k| k.to_string()).collect(),
        delta_mirror: false,
        index: None,
        index_columns: Vec::new(),
    }
}

async fn assert_absent(f: &Fixture, name: &str) {
    let err = f.storaged.storaged().dataset(name).await.unwrap_err();
    assert_eq!(err.status(), Some(404), "{err}");
}

#[tokio::test]
async fn creates_sorted_version_zero_from_a_file() {
    let f = fixture().await;
    let source = f.dir.path().join("people.parquet");
    write_parquet(&source, &[people(&[5, 3, 9]), people(&[1, 7])]).unwrap();

    let info = f
        .storaged
        .storaged()
        .create_dataset(&request("people", &source, &["id"]))
        .await
        .unwrap();
    assert_eq!((info.version, info.base_rows, info.delta_rows), (0, 5, 0));
    assert_eq!(info.primary_key, vec!["id"]);
    assert!(!info.columns[0].nullable, "key columns become non-nullable");

    let manifest = f
        .storaged
        .storaged()
        .manifest("people", Some(0))
        .await
        .unwrap();
    assert_eq!(manifest.base_files.len(), 1);
    let file = &manifest.base_files[0];
    assert_eq!(file.key_min, Some(vec![1.into()]));
    assert_eq!(file.key_max, Some(vec![9.into()]));
    assert_eq!(manifest.deltas.len(), 0);
    assert_eq!(manifest.compactor_epoch, 0);

    // The base file holds the rows sorted by key.
    let state = strata_shared::merge::load_state(f.storaged.store().as_ref(), &manifest)
        .await
        .unwrap();
    let ids = state
        .column(0)
        .as_primitive::<Int64Type>()
        .values()
        .to_vec();
    assert_eq!(ids, vec![1, 3, 5, 7, 9]);
    let names = state.column(1).as_string::<i32>();
    assert_eq!(names.value(0), "person 1");

    let latest = f
        .storaged
        .storaged()
        .manifest("people", None)
        .await
        .unwrap();
    assert_eq!(latest, manifest);
    let versions = f
        .storaged
        .storaged()
        .manifest_versions("people")
        .await
        .unwrap();
    assert_eq!((versions.versions, versions.latest), (vec![0], 0));
    let list = f.storaged.storaged().list_datasets().await.unwrap();
    assert_eq!(list.datasets.len(), 1);
    assert_eq!(list.datasets[0].name, "people");
}

#[tokio::test]
async fn creates_from_directories_and_globs() {
    let f = fixture().await;
    let dir = f.dir.path().join("parts");
    write_parquet(&dir.join("a.parquet"), &[people(&[1, 2])]).unwrap();
    write_parquet(&dir.join("b.parquet"), &[people(&[3])]).unwrap();
    write_parquet(&dir.join("nested/c.parquet"), &[people(&[4])]).unwrap();
    std::fs::write(dir.join("README.txt"), "not parquet").unwrap();
    let client = f.storaged.storaged();

    let info = client
        .create_dataset(&request("whole_dir", &dir, &["id"]))
        .await
        .unwrap();
    assert_eq!(
        info.base_rows, 4,
        "a directory takes every .parquet below it"
    );
    let info = client
        .create_dataset(&request("glob", &dir.join("*.parquet"), &["id"]))
        .await
        .unwrap();
    assert_eq!(info.base_rows, 3, "* does not cross directories");
    let info = client
        .create_dataset(&request("deep_glob", &dir.join("**/*.parquet"), &["id"]))
        .await
        .unwrap();
    assert_eq!(info.base_rows, 4);
    let info = client
        .create_dataset(&request("no_key", &dir.join("a.parquet"), &[]))
        .await
        .unwrap();
    assert!(info.primary_key.is_empty());

    let err = client
        .create_dataset(&request("nothing", &dir.join("*.csv"), &["id"]))
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(400), "{err}");
    assert!(
        err.to_string().contains("matched no Parquet files"),
        "{err}"
    );
}

#[tokio::test]
async fn relative_sources_resolve_against_the_source_root_and_errors_say_where() {
    let dir = tempfile::tempdir().unwrap();
    let store_dir = dir.path().join("store");
    std::fs::create_dir_all(&store_dir).unwrap();
    let root = dir.path().join("sources");
    write_parquet(&root.join("events/a.parquet"), &[people(&[1, 2])]).unwrap();
    let mut config = Config::default();
    config.storaged.source_root = Some(root.clone());
    let store = Arc::new(LocalFileSystem::new_with_prefix(&store_dir).unwrap());
    let storaged = start_storaged(store, config).await;
    let client = storaged.storaged();
    let relative = |name: &str, source: &str| CreateDatasetRequest {
        name: name.into(),
        source: source.into(),
        format: Default::default(),
        schema: None,
        primary_key: vec!["id".into()],
        delta_mirror: false,
        index: None,
        index_columns: Vec::new(),
    };
    let info = client
        .create_dataset(&relative("events", "events/*.parquet"))
        .await
        .unwrap();
    assert_eq!(info.base_rows, 2);
    let err = client
        .create_dataset(&relative("nothing", "missing/*.parquet"))
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(400), "{err}");
    let tried = root.join("missing/*.parquet");
    assert!(
        err.to_string().contains(&tried.display().to_string()),
        "{err}"
    );
}

#[tokio::test]
async fn bad_keys_are_refused_naming_the_first_offender_and_commit_nothing() {
    let f = fixture().await;
    let client = f.storaged.storaged();

    let dup = f.dir.path().join("dup.parquet");
    write_parquet(&dup, &[people(&[4, 5, 6]), people(&[9, 5])]).unwrap();
    let err = client
        .create_dataset(&request("dup", &dup, &["id"]))
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(400), "{err}");
    assert!(
        err.to_string().contains("duplicate primary key id=5"),
        "{err}"
    );
    assert_absent(&f, "dup").await;

    let schema = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, true),
        Field::new("name", DataType::Utf8, true),
    ]));
    let with_null = RecordBatch::try_new(
        schema,
        vec![
            Arc::new(Int64Array::from(vec![Some(1), None, Some(3)])),
            Arc::new(StringArray::from(vec!["a", "b", "c"])),
        ],
    )
    .unwrap();
    let nulls = f.dir.path().join("nulls.parquet");
    write_parquet(&nulls, &[with_null]).unwrap();
    let err = client
        .create_dataset(&request("nulls", &nulls, &["id"]))
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(400));
    assert!(err.to_string().contains("\"id\" is null at row 1"), "{err}");
    assert_absent(&f, "nulls").await;

    let err = client
        .create_dataset(&request("nokey", &nulls, &["nope"]))
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(400));
    assert!(err.to_string().contains("nope"), "{err}");

    // Composite keys: unique as a pair is fine.
    let pair = f.dir.path().join("pair.parquet");
    write_parquet(&pair, &[people(&[1, 1, 2])]).unwrap();
    let err = client
        .create_dataset(&request("pair", &pair, &["id"]))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("id=1"), "{err}");
}

#[tokio::test]
async fn existing_datasets_and_bad_requests_are_refused() {
    let f = fixture().await;
    let source = f.dir.path().join("p.parquet");
    write_parquet(&source, &[people(&[1, 2])]).unwrap();
    let client = f.storaged.storaged();
    client
        .create_dataset(&request("p", &source, &["id"]))
        .await
        .unwrap();
    let err = client
        .create_dataset(&request("p", &source, &["id"]))
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(409), "{err}");
    let table = Table::new(f.storaged.store(), DatasetName::new("p").unwrap());
    assert_eq!(
        table.latest_version().await.unwrap(),
        0,
        "a refused create moves nothing"
    );

    let err = client
        .create_dataset(&request("bad/name", &source, &["id"]))
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(400));

    let http = reqwest::Client::new();
    let url = format!("{}/api/v1/datasets", f.storaged.storaged_url());
    let cases: Vec<(reqwest::RequestBuilder, u16)> = vec![
        (
            http.post(&url)
                .header("x-admin-token", ADMIN)
                .header("content-type", "application/json")
                .body("{not json"),
            400,
        ),
        (
            http.post(&url)
                .header("x-admin-token", ADMIN)
                .header("content-type", "application/json")
                .body(r#"{"name": 3, "source": "x"}"#),
            400,
        ),
        (
            http.post(&url)
                .header("x-admin-token", ADMIN)
                .header("content-type", "application/json")
                .body(r#"{"name": "x", "source": "y", "bogus": 1}"#),
            400,
        ),
        (
            http.post(&url)
                .header("x-admin-token", ADMIN)
                .body(r#"{"name": "x", "source": "y"}"#),
            415,
        ),
        (
            http.post(&url)
                .json(&serde_json::json!({"name": "x", "source": "y"})),
            401,
        ),
        (
            http.post(&url)
                .header("x-admin-token", "wrong")
                .json(&serde_json::json!({"name": "x", "source": "y"})),
            403,
        ),
        (
            http.get(format!("{url}/missing"))
                .header("x-admin-token", ADMIN),
            404,
        ),
        (
            http.get(format!("{url}/p/manifests/7"))
                .header("x-admin-token", ADMIN),
            404,
        ),
        (
            http.get(format!("{url}/p/manifests/seven"))
                .header("x-admin-token", ADMIN),
            400,
        ),
        (http.delete(&url).header("x-admin-token", ADMIN), 405),
        (
            http.get(format!("{}/no/such/route", f.storaged.storaged_url())),
            404,
        ),
    ];
    for (i, (builder, status)) in cases.into_iter().enumerate() {
        let response = builder.send().await.unwrap();
        assert_eq!(response.status().as_u16(), status, "case {i}");
        let body: serde_json::Value = response
            .json()
            .await
            .unwrap_or_else(|e| panic!("case {i}: not JSON: {e}"));
        assert!(body["error"].is_string(), "case {i}: {body}");
    }
    let list = client.list_datasets().await.unwrap();
    assert_eq!(list.datasets.len(), 1, "nothing but p was created");
}

/// A source on an S3-compatible endpoint with no credentials configured is read anonymously:
/// storaged never reaches for the cloud's instance-metadata address (which off the cloud
/// held the request for minutes), and a bucket it may not read is a 4xx naming the source.
#[tokio::test]
async fn s3_sources_without_credentials_are_read_anonymously() {
    let seaweed = strata_testkit::SeaweedFs::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(LocalFileSystem::new_with_prefix(dir.path()).unwrap());
    let mut config = Config::default();
    config.store.s3.endpoint = Some(seaweed.endpoint.clone());
    config.store.s3.region = Some("us-east-1".into());
    let storaged = start_storaged(store, config).await;
    let client = storaged.storaged();
    let request = CreateDatasetRequest {
        name: "anon".into(),
        source: "s3://nobucket/x.parquet".into(),
        format: Default::default(),
        schema: None,
        primary_key: vec![],
        delta_mirror: false,
        index: None,
        index_columns: Vec::new(),
    };
    let create = client.create_dataset(&request);
    // A guard against the hang this test exists for, not a measure of speed.
    let err = tokio::time::timeout(std::time::Duration::from_secs(60), create)
        .await
        .expect("the create hung (credentials looked up elsewhere?)")
        .unwrap_err();
    let status = err.status().unwrap_or(0);
    assert!((400..500).contains(&status), "{err}");
    assert!(err.to_string().contains("s3://nobucket/x.parquet"), "{err}");
}
