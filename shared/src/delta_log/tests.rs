use std::sync::Arc;

use arrow::datatypes::Field;
use object_store::memory::InMemory;
use object_store::path::Path;

use super::*;
use crate::manifest::Operation;

fn schema() -> Schema {
    Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("name", DataType::Utf8, true),
        Field::new(
            "ts",
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            true,
        ),
    ])
}

/// Puts a base file of `bytes` bytes (sync never reads its contents) and describes it.
async fn put_file(
    store: &dyn ObjectStore,
    name: &DatasetName,
    id: &str,
    keys: (i64, i64),
) -> DataFile {
    let path = layout::base_file_path(name, id, 0);
    let bytes = vec![7u8; 100 + keys.0 as usize];
    let size = bytes.len() as u64;
    store.put(&path, PutPayload::from(bytes)).await.unwrap();
    DataFile {
        path: path.to_string(),
        rows: (keys.1 - keys.0 + 1) as u64,
        bytes: size,
        key_min: Some(vec![keys.0.into()]),
        key_max: Some(vec![keys.1.into()]),
    }
}

/// Version 0 of a mirrored dataset `t` with one base file, in a fresh store.
async fn dataset() -> (Arc<dyn ObjectStore>, Manifest) {
    let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let name = DatasetName::new("t").unwrap();
    let file = put_file(store.as_ref(), &name, "c0", (1, 10)).await;
    let mut m = Manifest::initial(name, schema(), vec!["id".into()], vec![file], "create");
    m.delta_mirror = true;
    (store, m)
}

/// `m`'s successor after a compaction that replaced the base with `files`.
fn compacted(m: &Manifest, files: Vec<DataFile>) -> Manifest {
    let mut next = m.successor(&format!("compact-{}", m.version), Operation::Compact);
    next.base_watermark_seq = next.version;
    next.base_files = files;
    next
}

/// Every action of log version `version`, one JSON value per line.
async fn commit(store: &dyn ObjectStore, version: u64) -> Vec<Value> {
    let name = DatasetName::new("t").unwrap();
    let bytes = store
        .get(&layout::delta_commit_path(&name, version))
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    std::str::from_utf8(&bytes)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn action<'a>(actions: &'a [Value], kind: &str) -> Vec<&'a Value> {
    actions.iter().filter_map(|a| a.get(kind)).collect()
}

#[test]
fn schemas_map_to_delta_types_and_refusals_name_the_column() {
    let ok = Schema::new(vec![
        Field::new("a", DataType::Int8, false),
        Field::new("b", DataType::UInt32, true),
        Field::new("c", DataType::Decimal128(12, 2), true),
        Field::new(
            "d",
            DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8)),
            true,
        ),
        Field::new("e", DataType::Date32, true),
        Field::new(
            "f",
            DataType::Timestamp(TimeUnit::Millisecond, Some("+01:00".into())),
            true,
        ),
    ]);
    let delta = DeltaLakeSchema::of(&ok).unwrap();
    assert!(!delta.timestamp_ntz);
    let parsed: Value = serde_json::from_str(&delta.schema_string).unwrap();
    let types: Vec<&str> = parsed["fields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["type"].as_str().unwrap())
        .collect();
    assert_eq!(
        types,
        [
            "byte",
            "long",
            "decimal(12,2)",
            "string",
            "date",
            "timestamp"
        ]
    );
    assert_eq!(parsed["fields"][0]["nullable"], false);
    assert_eq!(delta.protocol()["minReaderVersion"], 1);

    let naive = Schema::new(vec![Field::new(
        "at",
        DataType::Timestamp(TimeUnit::Microsecond, None),
        true,
    )]);
    let delta = DeltaLakeSchema::of(&naive).unwrap();
    assert!(delta.timestamp_ntz);
    assert_eq!(delta.protocol()["readerFeatures"], json!(["timestampNtz"]));

    let refused = [
        Field::new("big", DataType::UInt64, true),
        Field::new(
            "nanos",
            DataType::Timestamp(TimeUnit::Nanosecond, None),
            true,
        ),
        Field::new(
            "tags",
            DataType::List(Arc::new(Field::new("item", DataType::Utf8, true))),
            true,
        ),
        Field::new("two words", DataType::Int64, true),
    ];
    for field in refused {
        let name = field.name().clone();
        let schema = Schema::new(vec![Field::new("id", DataType::Int64, false), field]);
        match DeltaLakeSchema::of(&schema) {
            Err(e @ Error::InvalidInput(_)) => {
                assert!(e.is_invalid_input());
                assert!(e.to_string().contains(&format!("{name:?}")), "{e}");
            }
            other => panic!("{name} must be refused, got {other:?}"),
        }
    }
    let cased = Schema::new(vec![
        Field::new("Id", DataType::Int64, false),
        Field::new("id", DataType::Int64, true),
    ]);
    let e = DeltaLakeSchema::of(&cased).unwrap_err();
    assert!(e.to_string().contains("\"id\""), "{e}");
}

#[tokio::test]
async fn the_first_sync_writes_version_0_and_a_second_writes_nothing() {
    let (store, m) = dataset().await;
    assert_eq!(sync(store.as_ref(), &m).await.unwrap(), Some(0));
    let actions = commit(store.as_ref(), 0).await;
    assert_eq!(action(&actions, "commitInfo")[0]["strataVersion"], 0);
    assert_eq!(action(&actions, "protocol")[0]["minWriterVersion"], 2);
    let meta = action(&actions, "metaData")[0];
    assert_eq!(meta["partitionColumns"], json!([]));
    assert_eq!(
        meta["schemaString"],
        DeltaLakeSchema::of(&schema()).unwrap().schema_string
    );
    let adds = action(&actions, "add");
    assert_eq!(adds.len(), 1);
    assert_eq!(adds[0]["path"], "base/c0/part-00000.parquet");
    assert_eq!(adds[0]["size"], 101, "the size the store reports");
    assert_eq!(adds[0]["dataChange"], true);
    let stats: Value = serde_json::from_str(adds[0]["stats"].as_str().unwrap()).unwrap();
    assert_eq!(
        stats,
        json!({"numRecords": 10, "nullCount": {"id": 0},
               "minValues": {"id": 1}, "maxValues": {"id": 10}})
    );

    // Idempotent: the same base again, or a later manifest with the same base, writes nothing.
    assert_eq!(sync(store.as_ref(), &m).await.unwrap(), None);
    let ingest = m.successor("ingest-1", Operation::Ingest);
    assert_eq!(sync(store.as_ref(), &ingest).await.unwrap(), None);
    let state = replay(store.as_ref(), &m.dataset).await.unwrap();
    assert_eq!(state.version, Some(0));
    assert_eq!(
        state.files.keys().collect::<Vec<_>>(),
        ["base/c0/part-00000.parquet"]
    );
}

#[tokio::test]
async fn a_new_base_is_a_commit_of_removes_and_adds() {
    let (store, m0) = dataset().await;
    sync(store.as_ref(), &m0).await.unwrap();
    let name = m0.dataset.clone();
    let files = vec![
        put_file(store.as_ref(), &name, "c1", (1, 5)).await,
        put_file(store.as_ref(), &name, "c2", (6, 12)).await,
    ];
    let m1 = compacted(&m0, files);
    let before = Utc::now().timestamp_millis();
    assert_eq!(sync(store.as_ref(), &m1).await.unwrap(), Some(1));
    let actions = commit(store.as_ref(), 1).await;
    assert!(action(&actions, "metaData").is_empty() && action(&actions, "protocol").is_empty());
    let info = action(&actions, "commitInfo")[0];
    assert_eq!(
        (
            info["strataVersion"].as_u64(),
            info["strataStateVersion"].as_u64()
        ),
        (Some(1), Some(1))
    );
    let removes = action(&actions, "remove");
    assert_eq!(removes.len(), 1);
    assert_eq!(removes[0]["path"], "base/c0/part-00000.parquet");
    assert_eq!(removes[0]["size"], 101);
    assert!(removes[0]["deletionTimestamp"].as_i64().unwrap() >= before);
    let added: Vec<&str> = action(&actions, "add")
        .iter()
        .map(|a| a["path"].as_str().unwrap())
        .collect();
    assert_eq!(
        added,
        ["base/c1/part-00000.parquet", "base/c2/part-00000.parquet"]
    );

    let state = replay(store.as_ref(), &name).await.unwrap();
    assert_eq!((state.version, state.strata_version), (Some(1), Some(1)));
    assert_eq!(state.files.len(), 2);
    assert_eq!(
        state.removed.keys().collect::<Vec<_>>(),
        ["base/c0/part-00000.parquet"]
    );

    // An older manifest never takes the view back, even one with other files.
    assert_eq!(sync(store.as_ref(), &m0).await.unwrap(), None);
    assert_eq!(replay(store.as_ref(), &name).await.unwrap(), state);

    // Every row deleted: an empty base is an empty Delta table, not a missing one.
    let m2 = compacted(&m1, Vec::new());
    assert_eq!(sync(store.as_ref(), &m2).await.unwrap(), Some(2));
    let state = replay(store.as_ref(), &name).await.unwrap();
    assert!(state.files.is_empty());
    assert_eq!(state.removed.len(), 3);
}

#[tokio::test]
async fn racing_writers_agree_on_one_log() {
    let (store, m0) = dataset().await;
    let name = m0.dataset.clone();
    let store = store.as_ref();
    // The same manifest twice: the loser of version 0 replays and finds nothing to do.
    let mut first = true;
    let outcome = sync_with(store, &m0, |_| {
        let go = std::mem::take(&mut first);
        let m0 = &m0;
        async move {
            if go {
                assert_eq!(sync(store, m0).await.unwrap(), Some(0));
            }
        }
    })
    .await
    .unwrap();
    assert_eq!(outcome, None);
    assert_eq!(replay(store, &name).await.unwrap().version, Some(0));

    // A newer manifest takes the version an older one wanted: the older one stops.
    let m1 = compacted(&m0, vec![put_file(store, &name, "c1", (1, 9)).await]);
    let m2 = compacted(&m1, vec![put_file(store, &name, "c2", (1, 8)).await]);
    let mut first = true;
    let outcome = sync_with(store, &m1, |_| {
        let go = std::mem::take(&mut first);
        let m2 = &m2;
        async move {
            if go {
                assert_eq!(sync(store, m2).await.unwrap(), Some(1));
            }
        }
    })
    .await
    .unwrap();
    assert_eq!(outcome, None);
    let state = replay(store, &name).await.unwrap();
    assert_eq!((state.version, state.strata_version), (Some(1), Some(2)));

    // An older manifest takes the version a newer one wanted: the newer one writes the next.
    let m3 = compacted(&m2, vec![put_file(store, &name, "c3", (1, 7)).await]);
    let m4 = compacted(&m3, vec![put_file(store, &name, "c4", (1, 6)).await]);
    let mut first = true;
    let outcome = sync_with(store, &m4, |_| {
        let go = std::mem::take(&mut first);
        let m3 = &m3;
        async move {
            if go {
                assert_eq!(sync(store, m3).await.unwrap(), Some(2));
            }
        }
    })
    .await
    .unwrap();
    assert_eq!(outcome, Some(3));
    let state = replay(store, &name).await.unwrap();
    assert_eq!(
        state.files.keys().collect::<Vec<_>>(),
        ["base/c4/part-00000.parquet"]
    );
}

#[tokio::test]
async fn nothing_is_written_without_the_flag_or_for_a_missing_file() {
    let (store, mut m) = dataset().await;
    m.delta_mirror = false;
    assert_eq!(sync(store.as_ref(), &m).await.unwrap(), None);
    assert_eq!(
        replay(store.as_ref(), &m.dataset).await.unwrap(),
        LogState::default()
    );

    m.delta_mirror = true;
    m.base_files[0].path = "datasets/t/base/gone/part-00000.parquet".into();
    assert!(
        sync(store.as_ref(), &m).await.is_err(),
        "the log never names a missing file"
    );
    assert_eq!(
        replay(store.as_ref(), &m.dataset).await.unwrap().version,
        None
    );

    m.base_files[0].path = "datasets/other/base/c/part-00000.parquet".into();
    assert!(matches!(
        sync(store.as_ref(), &m).await,
        Err(Error::DeltaLog { .. })
    ));
}

#[tokio::test]
async fn a_gap_in_the_log_is_an_error() {
    let (store, m) = dataset().await;
    sync(store.as_ref(), &m).await.unwrap();
    store
        .put(
            &layout::delta_commit_path(&m.dataset, 2),
            PutPayload::from_static(b"{}\n"),
        )
        .await
        .unwrap();
    let e = replay(store.as_ref(), &m.dataset).await.unwrap_err();
    assert!(e.to_string().contains("version 1 is missing"), "{e}");
    // A checkpoint or any other file in the directory is not a commit.
    store
        .delete(&layout::delta_commit_path(&m.dataset, 2))
        .await
        .unwrap();
    let other = Path::from("datasets/t/_delta_log/00000000000000000001.checkpoint.parquet");
    store
        .put(&other, PutPayload::from_static(b"x"))
        .await
        .unwrap();
    assert_eq!(
        replay(store.as_ref(), &m.dataset).await.unwrap().version,
        Some(0)
    );
}

#[test]
fn retained_paths_are_the_snapshot_and_recent_removals() {
    let name = DatasetName::new("t").unwrap();
    let now = Utc::now();
    let ms = now.timestamp_millis();
    let state = LogState {
        version: Some(3),
        files: [("base/new/part-00000.parquet".to_owned(), 10)].into(),
        removed: [
            (
                "base/recent/part-00000.parquet".to_owned(),
                Some(ms - 1_000),
            ),
            ("base/old/part-00000.parquet".to_owned(), Some(ms - 10_000)),
            ("base/unknown/part-00000.parquet".to_owned(), None),
        ]
        .into(),
        strata_version: Some(9),
    };
    let mut kept = state.retained_paths(&name, now, Duration::from_secs(5));
    kept.sort();
    assert_eq!(
        kept,
        [
            "datasets/t/base/new/part-00000.parquet",
            "datasets/t/base/recent/part-00000.parquet",
            "datasets/t/base/unknown/part-00000.parquet",
        ]
    );
    assert_eq!(
        state.retained_paths(&name, now, Duration::ZERO).len(),
        2,
        "with no grace only the snapshot and removals of unknown time stay"
    );
}
