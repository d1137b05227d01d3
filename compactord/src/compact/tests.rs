//! Compaction unit tests on an in-memory store: the result equals the reference
//! materialisation row for row in storage order (over several compactions), files record their
//! key ranges, memory stays within batches, deltas committed mid-run survive, and a fenced or
//! aborted run commits nothing.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::array::{Array, AsArray, Int64Array, UInt8Array};
use arrow::datatypes::{DataType, Field, Int64Type, Schema};
use object_store::memory::InMemory;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use strata_shared::layout::DatasetName;
use strata_shared::{delta, parquet_io};

use super::*;

type State = BTreeMap<i64, Option<i64>>;

fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("v", DataType::Int64, true),
    ]))
}

fn pk() -> Vec<String> {
    vec!["id".to_string()]
}

fn rows(ids: &[i64], value: impl Fn(i64) -> i64) -> RecordBatch {
    let vs: Vec<Option<i64>> = ids.iter().map(|&i| Some(value(i))).collect();
    RecordBatch::try_new(
        schema(),
        vec![
            Arc::new(Int64Array::from(ids.to_vec())),
            Arc::new(Int64Array::from(vs)),
        ],
    )
    .unwrap()
}

/// A dataset whose base is `parts` (keys unique across all of them), one file each.
async fn create(store: &Arc<dyn ObjectStore>, parts: &[Vec<i64>]) -> Table {
    let name = DatasetName::new("t").unwrap();
    let id = layout::new_compaction_id();
    let mut files = Vec::new();
    for (n, ids) in parts.iter().enumerate() {
        let batch = rows(ids, |i| i * 10);
        let path = layout::base_file_path(&name, &id, n);
        let bytes = parquet_io::encode(schema(), &[batch]).unwrap();
        let size = bytes.len() as u64;
        parquet_io::put_new(store.as_ref(), &path, bytes)
            .await
            .unwrap();
        files.push(DataFile {
            path: path.to_string(),
            rows: ids.len() as u64,
            bytes: size,
            key_min: None,
            key_max: None,
        });
    }
    let manifest = Manifest::initial(name.clone(), schema().as_ref().clone(), pk(), files, "c");
    let table = Table::new(store.clone(), name);
    table.create(&manifest).await.unwrap();
    table
}

/// Commits one delta: `upserts` as (id, v), `deletes` as ids. Returns its seq.
async fn commit_delta(table: &Table, upserts: &[(i64, i64)], deletes: &[i64]) -> u64 {
    let mut ids: Vec<i64> = upserts.iter().map(|u| u.0).collect();
    let mut vs: Vec<Option<i64>> = upserts.iter().map(|u| Some(u.1)).collect();
    let mut ops = vec![0u8; upserts.len()];
    ids.extend(deletes);
    vs.extend(deletes.iter().map(|_| None));
    ops.extend(deletes.iter().map(|_| 1u8));
    let dschema = delta::delta_schema(&schema(), &pk());
    let batch = RecordBatch::try_new(
        dschema.clone(),
        vec![
            Arc::new(Int64Array::from(ids)),
            Arc::new(Int64Array::from(vs)),
            Arc::new(UInt8Array::from(ops)),
        ],
    )
    .unwrap();
    let batch = delta::prepare(&batch, &pk()).unwrap();
    let rows = batch.num_rows() as u64;
    let path = layout::delta_file_path(table.name(), chrono::Utc::now(), uuid::Uuid::now_v7());
    let bytes = parquet_io::encode(dschema, &[batch]).unwrap();
    let size = bytes.len() as u64;
    parquet_io::put_new(table.store().as_ref(), &path, bytes)
        .await
        .unwrap();
    let txn = uuid::Uuid::now_v7().to_string();
    let done = table
        .commit(&txn, Operation::Ingest, |m| {
            m.deltas.push(DeltaFile {
                path: path.to_string(),
                seq: m.version,
                rows,
                bytes: size,
                upserts: upserts.len() as u64,
                deletes: deletes.len() as u64,
                created_at: chrono::Utc::now(),
            });
            Ok(())
        })
        .await
        .unwrap();
    done.manifest.version
}

fn to_pairs(batch: &RecordBatch) -> Vec<(i64, Option<i64>)> {
    let ids = batch.column(0).as_primitive::<Int64Type>();
    let vs = batch.column(1).as_primitive::<Int64Type>();
    (0..batch.num_rows())
        .map(|r| (ids.value(r), vs.is_valid(r).then(|| vs.value(r))))
        .collect()
}

async fn state(table: &Table) -> State {
    let manifest = table.load_latest().await.unwrap();
    let batch = merge::load_state(table.store().as_ref(), &manifest)
        .await
        .unwrap();
    to_pairs(&batch).into_iter().collect()
}

/// The compacted base read file by file, in manifest order, with each file's rows.
async fn base_rows(table: &Table) -> Vec<Vec<(i64, Option<i64>)>> {
    let manifest = table.load_latest().await.unwrap();
    let mut out = Vec::new();
    for f in &manifest.base_files {
        let (_, batches) = parquet_io::read(table.store().as_ref(), &Path::parse(&f.path).unwrap())
            .await
            .unwrap();
        out.push(batches.iter().flat_map(to_pairs).collect());
    }
    out
}

/// No empty files, and each file's `DataFile` figures right: rows, bytes, smallest and largest
/// key.
async fn assert_base_well_formed(table: &Table) {
    let manifest = table.load_latest().await.unwrap();
    let files = base_rows(table).await;
    for (file, rows) in manifest.base_files.iter().zip(&files) {
        assert!(!rows.is_empty(), "no empty base files");
        assert_eq!(file.rows, rows.len() as u64);
        let ids = rows.iter().map(|(id, _)| *id);
        assert_eq!(file.key_min, ids.clone().min().map(|k| vec![k.into()]));
        assert_eq!(file.key_max, ids.max().map(|k| vec![k.into()]));
        let meta = table
            .store()
            .head(&Path::parse(&file.path).unwrap())
            .await
            .unwrap();
        assert_eq!(file.bytes, meta.size);
    }
}

fn memory() -> Arc<dyn ObjectStore> {
    Arc::new(InMemory::new())
}

fn small(batch_rows: usize) -> CompactOptions {
    CompactOptions {
        batch_rows,
        ..CompactOptions::default()
    }
}

#[tokio::test]
async fn compaction_of_random_deltas_keeps_the_state_in_storage_order() {
    for seed in 0..8u64 {
        let mut rng = StdRng::seed_from_u64(seed);
        let store = memory();
        // Base: even ids 0..400 in up to 4 files (some files may be empty-range gaps).
        let base: Vec<i64> = (0..200).map(|i| i * 2).collect();
        let cuts = [0, 37, 90, 150, 200];
        let parts: Vec<Vec<i64>> = cuts.windows(2).map(|w| base[w[0]..w[1]].to_vec()).collect();
        let table = create(&store, &parts).await;
        // Several compactions: the later ones merge into a base that earlier ones left out of
        // key order (their delta rows appended after the base rows).
        for round in 0..3 {
            for _ in 0..rng.random_range(1..8) {
                // Updates, deletes, re-inserts and deletes of missing keys, over a wider range.
                let mut ids: Vec<i64> = (0..rng.random_range(1..60))
                    .map(|_| rng.random_range(-20..450))
                    .collect();
                ids.sort_unstable();
                ids.dedup();
                let (mut up, mut del) = (Vec::new(), Vec::new());
                for id in ids {
                    if rng.random_bool(0.4) {
                        del.push(id);
                    } else {
                        up.push((id, rng.random_range(0..1_000_000)));
                    }
                }
                commit_delta(&table, &up, &del).await;
            }
            let before = table.load_latest().await.unwrap();
            let reference = merge::load_state(store.as_ref(), &before).await.unwrap();
            let expected = to_pairs(&reference);

            let report = compact(&table, &small(16)).await.unwrap();
            let version = match report.outcome {
                CompactOutcome::Committed { version } => version,
                other => panic!("seed {seed}, round {round}: {other:?}"),
            };
            let after = table.load_latest().await.unwrap();
            assert_eq!(after.version, version);
            assert_eq!(after.operation, Operation::Compact);
            assert!(after.deltas.is_empty());
            let s = before.deltas.iter().map(|d| d.seq).max().unwrap();
            assert_eq!((after.base_watermark_seq, report.watermark), (s, s));
            assert_eq!(report.stats.deltas_merged, before.deltas.len() as u64);
            let got: Vec<(i64, Option<i64>)> = base_rows(&table).await.concat();
            assert_eq!(
                got, expected,
                "seed {seed}, round {round}: row for row, in storage order"
            );
            assert_eq!(report.stats.rows_out, expected.len() as u64);
            assert_base_well_formed(&table).await;
        }
    }
}

#[tokio::test]
async fn compaction_without_deltas_is_a_noop_that_writes_nothing() {
    let store = memory();
    let table = create(&store, &[vec![1, 2, 3]]).await;
    let report = compact(&table, &CompactOptions::default()).await.unwrap();
    assert_eq!(report.outcome, CompactOutcome::Noop);
    assert_eq!(
        table.latest_version().await.unwrap(),
        0,
        "not even an epoch bump"
    );
}

#[tokio::test]
async fn compaction_deleting_every_row_leaves_an_empty_base() {
    let store = memory();
    let table = create(&store, &[vec![1, 2], vec![5, 9]]).await;
    commit_delta(&table, &[(3, 30)], &[1, 9]).await;
    commit_delta(&table, &[], &[2, 3, 5, 7]).await;
    let report = compact(&table, &CompactOptions::default()).await.unwrap();
    assert!(matches!(report.outcome, CompactOutcome::Committed { .. }));
    let after = table.load_latest().await.unwrap();
    assert!(after.base_files.is_empty() && after.deltas.is_empty());
    assert_eq!(report.stats.files_written, 0);
    assert!(state(&table).await.is_empty());
    // And the empty table takes deltas and compacts again.
    commit_delta(&table, &[(4, 40)], &[]).await;
    compact(&table, &CompactOptions::default()).await.unwrap();
    assert_eq!(state(&table).await, State::from([(4, Some(40))]));
}

#[tokio::test]
async fn a_tiny_target_file_size_rolls_over_into_several_files() {
    let store = memory();
    let table = create(&store, &[(0..500).collect()]).await;
    let ups: Vec<(i64, i64)> = (490..560).map(|i| (i, -i)).collect();
    commit_delta(&table, &ups, &[0, 3]).await;
    let expected = state(&table).await;
    let options = CompactOptions {
        target_file_bytes: 1024,
        batch_rows: 50,
    };
    let report = compact(&table, &options).await.unwrap();
    assert!(report.stats.files_written >= 3, "{:?}", report.stats);
    let after = table.load_latest().await.unwrap();
    assert_eq!(after.base_files.len() as u64, report.stats.files_written);
    assert_base_well_formed(&table).await;
    assert_eq!(state(&table).await, expected);
}

#[tokio::test]
async fn a_table_many_batches_long_compacts_in_bounded_batches() {
    let store = memory();
    let parts: Vec<Vec<i64>> = (0..10)
        .map(|p| (p * 1000..(p + 1) * 1000).collect())
        .collect();
    let table = create(&store, &parts).await;
    // Inserts everywhere, including a long run past the end of the base.
    let ups: Vec<(i64, i64)> = (9_500..12_000).step_by(3).map(|i| (i, 1)).collect();
    commit_delta(&table, &ups, &[5, 999, 1000]).await;
    let expected = state(&table).await;
    let report = compact(&table, &small(64)).await.unwrap();
    let stats = &report.stats;
    assert_eq!(stats.rows_in, 10_000 + ups.len() as u64 + 3);
    assert!(stats.rows_out > 10_000);
    assert!(
        stats.peak_batch_rows <= 64,
        "at most one batch of rows held per side: {stats:?}"
    );
    assert_eq!(state(&table).await, expected);
}

#[tokio::test]
async fn a_delta_committed_during_compaction_survives() {
    let store = memory();
    let table = create(&store, &[vec![1, 2, 3]]).await;
    commit_delta(&table, &[(2, 22)], &[3]).await;
    let during = table.clone();
    let report = compact_with(&table, &CompactOptions::default(), || async move {
        commit_delta(&during, &[(1, 11), (3, 33)], &[2]).await;
    })
    .await
    .unwrap();
    assert!(matches!(report.outcome, CompactOutcome::Committed { .. }));
    let after = table.load_latest().await.unwrap();
    assert_eq!(after.deltas.len(), 1, "the late delta stays");
    assert!(after.deltas[0].seq > after.base_watermark_seq);
    assert_eq!(
        state(&table).await,
        State::from([(1, Some(11)), (3, Some(33))])
    );
    assert_eq!(
        base_rows(&table).await.concat(),
        vec![(1, Some(10)), (2, Some(22))]
    );
}

#[tokio::test]
async fn a_compactor_whose_epoch_was_bumped_is_fenced_and_commits_nothing() {
    let store = memory();
    let table = create(&store, &[vec![1, 2, 3]]).await;
    commit_delta(&table, &[(2, 22)], &[]).await;
    let zombie_maker = table.clone();
    let report = compact_with(&table, &CompactOptions::default(), || async move {
        zombie_maker
            .commit("newer-compactor", Operation::BumpEpoch, |m| {
                m.compactor_epoch += 1;
                Ok(())
            })
            .await
            .unwrap();
    })
    .await
    .unwrap();
    assert_eq!(
        report.outcome,
        CompactOutcome::Fenced {
            epoch: report.epoch,
            current: report.epoch + 1
        }
    );
    let after = table.load_latest().await.unwrap();
    assert_eq!(after.operation, Operation::BumpEpoch);
    assert_eq!(after.deltas.len(), 1);
}

#[tokio::test]
async fn of_two_compactors_on_one_snapshot_exactly_one_commits() {
    let store = memory();
    let table = create(&store, &[vec![1, 2, 3]]).await;
    commit_delta(&table, &[(4, 44)], &[1]).await;
    let expected = state(&table).await;
    let second = table.clone();
    // The second compactor runs whole while the first sits between its merge and its commit.
    let first = compact_with(&table, &CompactOptions::default(), || async move {
        let report = compact(&second, &CompactOptions::default()).await.unwrap();
        assert!(matches!(report.outcome, CompactOutcome::Committed { .. }));
    })
    .await
    .unwrap();
    assert!(matches!(first.outcome, CompactOutcome::Fenced { .. }));
    let versions = table.latest_version().await.unwrap();
    let mut compactions = 0;
    for v in 0..=versions {
        if table.read_manifest(v).await.unwrap().operation == Operation::Compact {
            compactions += 1;
        }
    }
    assert_eq!(compactions, 1);
    assert_eq!(state(&table).await, expected);
}

#[tokio::test]
async fn a_vanished_input_aborts_the_commit() {
    let store = memory();
    let table = create(&store, &[vec![1, 2, 3]]).await;
    commit_delta(&table, &[(2, 22)], &[]).await;
    let meddler = table.clone();
    let report = compact_with(&table, &CompactOptions::default(), || async move {
        // Something other than a compactor drops the delta (no epoch change).
        meddler
            .commit("drop", Operation::Ingest, |m| {
                m.deltas.clear();
                Ok(())
            })
            .await
            .unwrap();
    })
    .await
    .unwrap();
    assert!(
        matches!(&report.outcome, CompactOutcome::Aborted { reason } if reason.contains("no longer")),
        "{report:?}"
    );
    assert_eq!(
        table.load_latest().await.unwrap().operation,
        Operation::Ingest
    );
}

/// Fails every put of a base file after the first `allowed` (other writes go through).
#[derive(Debug)]
struct FailingBasePuts {
    inner: Arc<dyn ObjectStore>,
    allowed: usize,
    seen: std::sync::atomic::AtomicUsize,
}

impl std::fmt::Display for FailingBasePuts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "FailingBasePuts({})", self.inner)
    }
}

#[async_trait::async_trait]
impl ObjectStore for FailingBasePuts {
    async fn put_opts(
        &self,
        location: &Path,
        payload: object_store::PutPayload,
        opts: object_store::PutOptions,
    ) -> object_store::Result<object_store::PutResult> {
        if location.as_ref().contains("/base/")
            && self.seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst) >= self.allowed
        {
            return Err(object_store::Error::Generic {
                store: "FailingBasePuts",
                source: "injected: base file put failed".into(),
            });
        }
        self.inner.put_opts(location, payload, opts).await
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: object_store::PutMultipartOptions,
    ) -> object_store::Result<Box<dyn object_store::MultipartUpload>> {
        self.inner.put_multipart_opts(location, opts).await
    }

    async fn get_opts(
        &self,
        location: &Path,
        options: object_store::GetOptions,
    ) -> object_store::Result<object_store::GetResult> {
        self.inner.get_opts(location, options).await
    }

    fn delete_stream(
        &self,
        locations: futures::stream::BoxStream<'static, object_store::Result<Path>>,
    ) -> futures::stream::BoxStream<'static, object_store::Result<Path>> {
        self.inner.delete_stream(locations)
    }

    fn list(
        &self,
        prefix: Option<&Path>,
    ) -> futures::stream::BoxStream<'static, object_store::Result<object_store::ObjectMeta>> {
        self.inner.list(prefix)
    }

    async fn list_with_delimiter(
        &self,
        prefix: Option<&Path>,
    ) -> object_store::Result<object_store::ListResult> {
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(
        &self,
        from: &Path,
        to: &Path,
        options: object_store::CopyOptions,
    ) -> object_store::Result<()> {
        self.inner.copy_opts(from, to, options).await
    }
}

/// Asserts that the run committed nothing: the newest version is its epoch bump, the deltas
/// are all still there and the logical state is unchanged.
async fn assert_nothing_committed(table: &Table, deltas: usize, expected: &State) {
    let after = table.load_latest().await.unwrap();
    assert_eq!(after.operation, Operation::BumpEpoch);
    assert_eq!(after.deltas.len(), deltas);
    assert_eq!(&state(table).await, expected);
}

#[tokio::test]
async fn a_failing_put_of_the_write_stage_fails_the_run_and_commits_nothing() {
    let inner = memory();
    let parts: Vec<Vec<i64>> = (0..4).map(|p| (p * 500..(p + 1) * 500).collect()).collect();
    create(&inner, &parts).await;
    let faulty: Arc<dyn ObjectStore> = Arc::new(FailingBasePuts {
        inner: inner.clone(),
        allowed: 1,
        seen: Default::default(),
    });
    let table = Table::new(faulty, DatasetName::new("t").unwrap());
    let ups: Vec<(i64, i64)> = (0..2_000).step_by(7).map(|i| (i, -i)).collect();
    commit_delta(&table, &ups, &[1, 2, 3]).await;
    let expected = state(&table).await;
    // Small files and batches: the failing second PUT overlaps the encoding of later files.
    let options = CompactOptions {
        target_file_bytes: 2048,
        batch_rows: 50,
    };
    let err = compact(&table, &options).await.unwrap_err();
    assert!(err.to_string().contains("base file put failed"), "{err}");
    assert_nothing_committed(&table, 1, &expected).await;
}

#[tokio::test]
async fn a_failing_read_stage_fails_the_run_and_commits_nothing() {
    let store = memory();
    let table = create(&store, &[(0..300).collect(), (300..600).collect()]).await;
    commit_delta(&table, &[(5, 55), (450, 1)], &[10]).await;
    let expected = state(&table).await;
    // The second base file vanishes (as if its store lost it): the reader fails midway,
    // after the merge has already sent the first file's rows to the write stage.
    let second = Path::parse(&table.load_latest().await.unwrap().base_files[1].path).unwrap();
    let bytes = store.get(&second).await.unwrap().bytes().await.unwrap();
    store.delete(&second).await.unwrap();
    let err = compact(&table, &small(16)).await.unwrap_err();
    assert!(
        matches!(
            err,
            CompactError::Table(Error::ObjectStore(object_store::Error::NotFound { .. }))
        ),
        "{err}"
    );
    // Put the file back: the logical state is the one before the run.
    parquet_io::put_new(store.as_ref(), &second, bytes)
        .await
        .unwrap();
    assert_nothing_committed(&table, 1, &expected).await;
}

#[tokio::test]
async fn a_base_out_of_key_order_compacts_in_its_own_order() {
    let store = memory();
    // Files whose key ranges descend, and a file whose rows descend: storage order, not key
    // order, is what a compaction keeps.
    let table = create(&store, &[(100..150).collect(), (0..50).rev().collect()]).await;
    commit_delta(&table, &[(7, 70), (120, 1), (300, 3)], &[49, 100]).await;
    commit_delta(&table, &[(-5, 5), (7, 71)], &[]).await;
    let before = table.load_latest().await.unwrap();
    let expected = to_pairs(&merge::load_state(store.as_ref(), &before).await.unwrap());
    let report = compact(&table, &small(16)).await.unwrap();
    assert!(matches!(report.outcome, CompactOutcome::Committed { .. }));
    assert_eq!(base_rows(&table).await.concat(), expected);
    assert_eq!(
        &expected[expected.len() - 4..],
        &[(120, Some(1)), (300, Some(3)), (-5, Some(5)), (7, Some(71))],
        "the delta rows come last, by sequence, then key"
    );
    assert_base_well_formed(&table).await;
}
