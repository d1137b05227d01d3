//! Dropping a dataset (`DELETE /api/v1/datasets/{name}` on queryd, forwarded to storaged's
//! catalog) on a cluster of storaged, two queryds and compactord over a local directory:
//! the dataset is gone for readers and writers on both replicas, its Delta log goes at once,
//! garbage collection takes its files (and only its files), and the name can be created again
//! with versions going on from the tombstone and none of the old dataset's history.

use std::collections::BTreeSet;
use std::time::Duration;

use futures::TryStreamExt;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};
use serde_json::json;
use strata_queryd_api::{QuerydClient, VersionsQuery};
use strata_storaged_api::catalog::UploadQuery;
use strata_testkit::{Store, TestCluster};

use crate::common::{named, people};

const PARQUET: &str = "application/vnd.apache.parquet";

fn parquet(batch: &arrow::array::RecordBatch) -> Vec<u8> {
    strata_shared::parquet_io::encode(batch.schema(), std::slice::from_ref(batch))
        .unwrap()
        .to_vec()
}

async fn count(queryd: &QuerydClient, name: &str) -> Result<u64, Option<u16>> {
    queryd
        .count(name, &json!({}))
        .await
        .map(|a| a.body.count)
        .map_err(|e| e.status())
}

/// Polls `queryd` (every 50 ms, up to 20 s) until `name` counts `expected` (`Err(404)`:
/// absent); the last answer otherwise.
async fn await_count(
    queryd: &QuerydClient,
    name: &str,
    expected: Result<u64, Option<u16>>,
) -> Result<u64, Option<u16>> {
    let mut last = count(queryd, name).await;
    for _ in 0..400 {
        if last == expected {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        last = count(queryd, name).await;
    }
    last
}

/// The objects under `datasets/{name}/{dir}` in the store.
async fn objects(store: &dyn ObjectStore, name: &str, dir: &str) -> BTreeSet<String> {
    store
        .list(Some(&Path::from(format!("datasets/{name}/{dir}"))))
        .map_ok(|m| m.location.to_string())
        .try_collect()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_dataset_is_gone_everywhere_and_its_name_starts_again() {
    let cluster = TestCluster::builder()
        .store(Store::LocalDir)
        .daemons(true, 2, true)
        .toml(
            "[queryd]\npoll_interval_ms = 200\n\
             [compactord]\ngc_grace = \"0s\"\ncheck_interval = \"0s\"\n",
        )
        .configure(|c| c.compactord.gc_schedule = None)
        .start()
        .await
        .unwrap();
    let (q0, q1) = (cluster.queryd_at(0), cluster.queryd_at(1));
    let store = cluster.store();

    // A dataset with a Delta log, a delta, a compaction and another delta: base files of two
    // generations, delta files, a log with two versions.
    let query = UploadQuery::new(&["id".into()]).with_delta_mirror(true);
    let ids: Vec<i64> = (1..=1_000).collect();
    q0.upload_dataset_with("t", &query, PARQUET, parquet(&people(&ids)))
        .await
        .unwrap();
    q0.post_deltas(
        "t",
        &json!({"upserts": [{"id": 5_000, "name": "new"}]}),
        None,
    )
    .await
    .unwrap();
    q0.compact("t").await.unwrap();
    q0.post_deltas("t", &json!({"deletes": [{"id": 1}]}), None)
        .await
        .unwrap();
    assert_eq!(count(&q0, "t").await, Ok(1_000));
    assert_eq!(await_count(&q1, "t", Ok(1_000)).await, Ok(1_000));
    assert!(!objects(store.as_ref(), "t", "_delta_log").await.is_empty());
    let old_files: BTreeSet<String> = ["base", "deltas"]
        .iter()
        .map(|d| objects(store.as_ref(), "t", d))
        .collect::<futures::future::JoinAll<_>>()
        .await
        .into_iter()
        .flatten()
        .collect();
    // A second dataset, which the drop and the GC must leave alone.
    q0.upload_dataset(
        "other",
        &["id".into()],
        PARQUET,
        parquet(&people(&[1, 2, 3])),
    )
    .await
    .unwrap();
    let other_files = objects(store.as_ref(), "other", "base").await;

    // Without the admin token: refused, nothing dropped.
    let anonymous = QuerydClient::new(&cluster.queryd_url(0), None);
    let refused = anonymous.drop_dataset("t").await.unwrap_err();
    assert_eq!(refused.status(), Some(401), "{refused}");
    assert_eq!(count(&q0, "t").await, Ok(1_000));

    let dropped = q0.drop_dataset("t").await.unwrap();
    assert_eq!(dropped.name, "t");
    let tombstone = dropped.version;

    // Gone on this replica at once, and on the other one soon (notification or poll).
    assert_eq!(count(&q0, "t").await, Err(Some(404)));
    assert_eq!(await_count(&q1, "t", Err(Some(404))).await, Err(Some(404)));
    for queryd in [&q0, &q1] {
        let names: Vec<String> = queryd
            .datasets()
            .await
            .unwrap()
            .datasets
            .into_iter()
            .map(|d| d.name)
            .collect();
        assert_eq!(names, ["other"]);
        assert_eq!(queryd.schema("t").await.unwrap_err().status(), Some(404));
    }
    let names: Vec<String> = cluster
        .storaged()
        .list_datasets()
        .await
        .unwrap()
        .datasets
        .into_iter()
        .map(|d| d.name)
        .collect();
    assert_eq!(names, ["other"]);
    // It takes no writes, no compaction and no second drop; its Delta log is gone.
    let write = q0
        .post_deltas("t", &json!({"upserts": [{"id": 7, "name": "late"}]}), None)
        .await
        .unwrap_err();
    assert_eq!(write.status(), Some(404), "{write}");
    assert_eq!(q0.compact("t").await.unwrap_err().status(), Some(404));
    assert_eq!(q0.drop_dataset("t").await.unwrap_err().status(), Some(404));
    assert!(objects(store.as_ref(), "t", "_delta_log").await.is_empty());
    // The files stay until garbage collection takes them.
    for file in &old_files {
        store.head(&Path::from(file.as_str())).await.unwrap();
    }

    // GC (no grace): every file of the dropped dataset goes, its manifests but the tombstone
    // go; the other dataset keeps all of its files.
    // (The refused write left its delta file behind, never committed: an orphan for GC.)
    let mut files = objects(store.as_ref(), "t", "base").await;
    files.extend(objects(store.as_ref(), "t", "deltas").await);
    assert!(files.is_superset(&old_files));
    let report = cluster.compactord().gc().await.unwrap();
    let t = report.datasets.iter().find(|d| d.dataset == "t").unwrap();
    assert!(t.error.is_none(), "{report:?}");
    assert_eq!(t.files_deleted as usize, files.len(), "{report:?}");
    assert!(objects(store.as_ref(), "t", "base").await.is_empty());
    assert!(objects(store.as_ref(), "t", "deltas").await.is_empty());
    assert_eq!(
        objects(store.as_ref(), "t", "_manifest").await,
        BTreeSet::from([
            format!("datasets/t/_manifest/{tombstone:020}.json"),
            "datasets/t/_manifest/_latest".to_owned()
        ])
    );
    assert_eq!(objects(store.as_ref(), "other", "base").await, other_files);
    assert_eq!(count(&q0, "other").await, Ok(3));

    // The name again, with other rows: versions go on after the tombstone, and the history
    // holds none of the dropped dataset's versions.
    let created = q0
        .upload_dataset(
            "t",
            &["id".into()],
            PARQUET,
            parquet(&named(&[10, 11], "again")),
        )
        .await
        .unwrap();
    assert_eq!(created.version, tombstone + 1);
    assert_eq!(count(&q0, "t").await, Ok(2));
    assert_eq!(await_count(&q1, "t", Ok(2)).await, Ok(2));
    let versions = q0
        .versions(
            "t",
            &VersionsQuery {
                before: None,
                limit: Some(100),
            },
        )
        .await
        .unwrap();
    let listed: Vec<u64> = versions.versions.iter().map(|v| v.version).collect();
    assert_eq!(listed, [tombstone + 1]);
    let old = q0.count("t", &json!({"version": 1})).await.unwrap_err();
    assert_eq!(old.status(), Some(404), "{old}");
    let row = q0
        .query(
            "t",
            &json!({"predicates": [{"col": "id", "op": "eq", "val": 10}]}),
        )
        .await
        .unwrap();
    assert_eq!(row.body.data[0]["name"], "again 10", "{:?}", row.body);
}
