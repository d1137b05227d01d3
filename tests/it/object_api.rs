//! The object-API client ([`RemoteStore`]) passes one conformance suite — object_store's own
//! integration suite plus Strata's put-if-absent proof — against every backing store:
//! InMemory, LocalFileSystem and a real S3-compatible server (SeaweedFS).

use std::sync::Arc;

use object_store::integration::*;
use object_store::local::LocalFileSystem;
use object_store::memory::InMemory;
use object_store::{ObjectStore, ObjectStoreExt};
use strata_daemon::config::Config;
use strata_shared::commit::Table;
use strata_shared::layout::DatasetName;
use strata_shared::manifest::{Manifest, Operation};
use strata_testkit::SeaweedFs;

use crate::common::{INTERNAL, start_storaged};

/// The suite every backend runs through the client.
async fn conformance(store: &dyn ObjectStore, supports_update: bool) {
    put_get_delete_list(store).await;
    get_opts(store).await;
    put_opts(store, supports_update).await;
    list_uses_directories_correctly(store).await;
    list_with_delimiter(store).await;
    rename_and_copy(store).await;
    copy_if_not_exists(store).await;
    copy_rename_nonexistent_object(store).await;
    stream_get(store).await;
    list_with_offset_exclusivity(store).await;
    get_nonexistent_object(store, None).await.unwrap_err();
}

/// Strata's own checks through the client: put-if-absent holds under a race, and the commit
/// protocol works end to end over the wire.
async fn strata_checks(remote: Arc<dyn ObjectStore>) {
    strata_shared::selftest::verify_put_if_absent(remote.clone())
        .await
        .unwrap();
    let name = DatasetName::new("wire").unwrap();
    let schema = arrow::datatypes::Schema::new(vec![arrow::datatypes::Field::new(
        "id",
        arrow::datatypes::DataType::Int64,
        false,
    )]);
    let table = Table::new(remote.clone(), name.clone());
    table
        .create(&Manifest::initial(
            name,
            schema,
            vec!["id".into()],
            vec![],
            "c",
        ))
        .await
        .unwrap();
    let mut tasks = Vec::new();
    for i in 0..8 {
        let table = table.clone();
        tasks.push(tokio::spawn(async move {
            table
                .commit(&format!("t{i}"), Operation::Ingest, |_| Ok(()))
                .await
                .unwrap()
                .manifest
                .version
        }));
    }
    let mut versions: Vec<u64> = Vec::new();
    for t in tasks {
        versions.push(t.await.unwrap());
    }
    versions.sort_unstable();
    assert_eq!(
        versions,
        (1..=8).collect::<Vec<u64>>(),
        "each commit got its own version"
    );
    assert_eq!(table.load_latest().await.unwrap().recent_txns.len(), 9);
}

async fn run_suite(backing: Arc<dyn ObjectStore>, supports_update: bool) {
    let storaged = start_storaged(backing, Config::default()).await;
    let remote = storaged.remote_store();
    conformance(&remote, supports_update).await;
    strata_checks(Arc::new(remote)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_over_in_memory() {
    run_suite(Arc::new(InMemory::new()), true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_over_local_filesystem() {
    let dir = tempfile::tempdir().unwrap();
    let local = LocalFileSystem::new_with_prefix(dir.path()).unwrap();
    run_suite(Arc::new(local), false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_over_seaweedfs_s3() {
    let seaweed = SeaweedFs::start().await.unwrap();
    let mut config = Config::default();
    config.store.url = format!("s3://{}/conformance", seaweed.bucket);
    config.store.s3 = seaweed.s3_config();
    let store = strata_storaged::store::open(&config).unwrap();
    // SeaweedFS honours If-Match on PUT: conditional updates are supported.
    run_suite(store, true).await;
}

#[tokio::test]
async fn internal_api_needs_the_internal_token() {
    let storaged = start_storaged(Arc::new(InMemory::new()), Config::default()).await;
    let wrong = strata_storaged_api::RemoteStore::new(&storaged.storaged_url(), "wrong");
    let err = wrong
        .get(&object_store::path::Path::from("x"))
        .await
        .unwrap_err();
    assert!(
        matches!(err, object_store::Error::PermissionDenied { .. }),
        "{err}"
    );

    let http = reqwest::Client::new();
    let url = format!("{}/internal/v1/object?path=x", storaged.storaged_url());
    let response = http.get(&url).send().await.unwrap();
    assert_eq!(response.status(), 401);
    let body: serde_json::Value = response.json().await.unwrap();
    assert!(body["error"].as_str().unwrap().contains("x-internal-token"));

    // With the token: a missing object is a JSON 404, a bad path a JSON 400.
    let response = http
        .get(&url)
        .header("x-internal-token", INTERNAL)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 404);
    assert_eq!(
        response.json::<serde_json::Value>().await.unwrap()["kind"],
        "not_found"
    );
    let response = http
        .get(format!(
            "{}/internal/v1/object?path=a//b",
            storaged.storaged_url()
        ))
        .header("x-internal-token", INTERNAL)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    // Keys that name nothing or that no store can hold are the request's fault: 400, not a
    // store error (a 5 000-character key was a 502 on a local directory).
    let long = "k".repeat(5_000);
    for path in ["", "/", long.as_str()] {
        let response = http
            .put(format!("{}/internal/v1/object", storaged.storaged_url()))
            .query(&[("path", path)])
            .header("x-internal-token", INTERNAL)
            .body("x")
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        let body: serde_json::Value = response.json().await.unwrap_or_default();
        assert_eq!(
            (status, &body["kind"]),
            (400, &serde_json::json!("bad_request")),
            "{path:.20}: {body}"
        );
    }
}
