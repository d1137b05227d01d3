//! A response lost between storaged and its S3 store (SeaweedFS behind a proxy that drops
//! it): the delta file's PUT landed, the store client retried it and was told it exists.
//! The write is committed exactly once and answered as such — before, the client got `409
//! …deltas/….parquet already exists` for a write that was never committed, and a client
//! that trusts a 409 dropped it.

use serde_json::json;
use strata_daemon::config::Config;
use strata_storaged_api::{ClientError, DeltaClient};
use strata_testkit::{FaultProxy, SeaweedFs};

use crate::common::{INTERNAL, create_dataset, people, start_storaged};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delta_whose_store_response_was_lost_is_committed_once() {
    let seaweed = SeaweedFs::start().await.unwrap();
    let upstream = seaweed.endpoint.trim_start_matches("http://").to_owned();
    let proxy = FaultProxy::start(&upstream, "PUT", "/deltas/", 1)
        .await
        .unwrap();
    let store = seaweed.store_at(&proxy.endpoint).unwrap();
    create_dataset(&store, "people", &[people(&[1, 2, 3])], &["id"]).await;
    let storaged = start_storaged(store.clone(), Config::default()).await;
    let client = DeltaClient::new(&storaged.storaged_url(), INTERNAL);
    let body = json!({"upserts": [{"id": 4, "name": "four"}], "deletes": [{"id": 1}]});
    let post = || {
        client.post_deltas(
            "people",
            "application/json",
            body.to_string().into(),
            Some("lost-response-1"),
        )
    };
    // Answered as committed; or, if the store client gave up instead of retrying, as a
    // failure to retry — never as a conflict.
    let committed = match post().await {
        Ok(committed) => committed,
        Err(ClientError::Status {
            status, message, ..
        }) if status >= 500 => {
            eprintln!("first attempt: {status} {message}");
            post().await.unwrap()
        }
        Err(e) => panic!("a lost response answered as {e}"),
    };
    assert_eq!(
        proxy.lost(),
        1,
        "the proxy lost the delta file's PUT response"
    );
    assert_eq!(
        (committed.version, committed.upserts, committed.deletes),
        (1, 1, 1)
    );

    // Once: one delta file in version 1, nothing after it; a retry answers without writing.
    let again = post().await.unwrap();
    assert_eq!(again.version, 1);
    let table = strata_shared::commit::Table::new(
        store.clone(),
        strata_shared::layout::DatasetName::new("people").unwrap(),
    );
    let manifest = table.load_latest().await.unwrap();
    assert_eq!((manifest.version, manifest.deltas.len()), (1, 1));
}
