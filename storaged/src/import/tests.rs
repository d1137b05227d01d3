//! The external sort against the in-memory sort, its checks, its spill files, and the whole
//! import (sort, parts, progress) on an in-memory store.

use std::path::Path;
use std::sync::Arc;

use arrow::array::{AsArray, Int64Array, RecordBatch, StringArray};
use arrow::compute::concat_batches;
use arrow::datatypes::{DataType, Field, Int64Type, Schema, SchemaRef};
use object_store::memory::InMemory;
use object_store::{ObjectStore, ObjectStoreExt};
use strata_shared::layout::DatasetName;
use strata_shared::{Error, keys, parquet_io};
use strata_storaged_api::catalog::ImportPhase;

use super::progress::{Imports, Progress};
use super::sort::{ExternalSort, Limits};
use super::{ImportError, Rows, Settings, write_base};

fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("region", DataType::Utf8, true),
        Field::new("id", DataType::Int64, true),
        Field::new("note", DataType::Utf8, true),
    ]))
}

/// Rows `(region, id, note)`; `None` ids are null keys.
fn batch(rows: &[(&str, Option<i64>)]) -> RecordBatch {
    let notes: Vec<String> = rows
        .iter()
        .map(|(r, id)| format!("note {r} {id:?}"))
        .collect();
    RecordBatch::try_new(
        schema(),
        vec![
            Arc::new(StringArray::from_iter_values(rows.iter().map(|(r, _)| *r))),
            Arc::new(Int64Array::from_iter(rows.iter().map(|(_, id)| *id))),
            Arc::new(StringArray::from_iter_values(notes)),
        ],
    )
    .unwrap()
}

/// `n` distinct ids in a scrambled order (7919 is prime, `n` is not a multiple of it), cut
/// into batches of `per_batch` rows, regions cycling through three names.
fn scrambled(n: i64, per_batch: usize) -> Vec<RecordBatch> {
    let regions = ["eu", "us", "ap"];
    let rows: Vec<(&str, Option<i64>)> = (0..n)
        .map(|i| {
            let id = (i * 7919) % n;
            (regions[(id % 3) as usize], Some(id))
        })
        .collect();
    rows.chunks(per_batch).map(batch).collect()
}

/// Limits that make runs of a few hundred rows and merge three at a time.
fn tiny() -> Limits {
    Limits {
        run_bytes: 24 << 10,
        batch_bytes: 4 << 10,
        fan_in: 3,
    }
}

fn key(names: &[&str]) -> Vec<usize> {
    let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
    keys::key_indices(&schema(), &names).unwrap()
}

/// Pushes every batch and drains the sorted stream.
fn sort_all(
    batches: &[RecordBatch],
    key: &[usize],
    limits: Limits,
    spill: &Path,
    progress: &Arc<Progress>,
) -> Result<RecordBatch, ImportError> {
    let mut sort = ExternalSort::new(schema(), key.to_vec(), limits, spill, progress.clone());
    for b in batches {
        sort.push(b.clone())?;
    }
    let mut sorted = sort.finish()?;
    let mut out = Vec::new();
    while let Some(b) = sorted.next_batch()? {
        out.push(b);
    }
    Ok(concat_batches(&schema(), &out).unwrap())
}

fn in_memory_sort(batches: &[RecordBatch], key: &[usize]) -> RecordBatch {
    keys::sort_by_key(&concat_batches(&schema(), batches).unwrap(), key).unwrap()
}

fn is_empty_dir(dir: &Path) -> bool {
    std::fs::read_dir(dir).unwrap().next().is_none()
}

#[test]
fn many_small_runs_merge_to_the_in_memory_order() {
    let spill = tempfile::tempdir().unwrap();
    let batches = scrambled(20_000, 700);
    let key = key(&["id"]);
    let progress = Arc::new(Progress::new());
    let sorted = sort_all(&batches, &key, tiny(), spill.path(), &progress).unwrap();
    assert_eq!(sorted, in_memory_sort(&batches, &key));
    let runs = progress.runs_spilled();
    assert!(
        runs > 9,
        "runs: {runs}; more than fan_in² needs two merge passes"
    );
    assert!(is_empty_dir(spill.path()), "the spill directory is gone");
}

#[test]
fn a_source_that_fits_is_sorted_in_memory_without_spilling() {
    let spill = tempfile::tempdir().unwrap();
    let batches = scrambled(5_000, 512);
    let key = key(&["id"]);
    let progress = Arc::new(Progress::new());
    let sorted = sort_all(
        &batches,
        &key,
        Limits::for_budget(64 << 20),
        spill.path(),
        &progress,
    )
    .unwrap();
    assert_eq!(sorted, in_memory_sort(&batches, &key));
    assert_eq!(progress.runs_spilled(), 0);
    assert!(is_empty_dir(spill.path()), "nothing was written");
}

#[test]
fn multi_column_keys_sort_and_merge_by_every_column() {
    let spill = tempfile::tempdir().unwrap();
    // The same ids in each region: unique only as (region, id).
    let mut rows = Vec::new();
    for i in 0..6_000_i64 {
        let id = (i * 7919) % 2_000;
        rows.push((["eu", "us", "ap"][(i % 3) as usize], Some(id)));
    }
    let batches: Vec<RecordBatch> = rows.chunks(333).map(batch).collect();
    let key = key(&["region", "id"]);
    let progress = Arc::new(Progress::new());
    let sorted = sort_all(&batches, &key, tiny(), spill.path(), &progress).unwrap();
    assert_eq!(sorted, in_memory_sort(&batches, &key));
    assert!(progress.runs_spilled() > 3);
    assert_eq!(keys::describe_key(&sorted, &key, 0), "region=ap, id=0");

    // The key as (id, region): a different order of the same rows.
    let key = self::key(&["id", "region"]);
    let sorted = sort_all(&batches, &key, tiny(), spill.path(), &progress).unwrap();
    assert_eq!(sorted, in_memory_sort(&batches, &key));
    assert_eq!(keys::describe_key(&sorted, &key, 1), "id=0, region=eu");
}

#[test]
fn dictionary_columns_spill_and_merge_whatever_their_dictionaries() {
    use arrow::array::DictionaryArray;
    use arrow::datatypes::Int32Type;
    let spill = tempfile::tempdir().unwrap();
    let dict_schema = Arc::new(Schema::new(vec![
        Field::new_dictionary("region", DataType::Int32, DataType::Utf8, true),
        Field::new("id", DataType::Int64, true),
        Field::new("note", DataType::Utf8, true),
    ]));
    // Each batch has its own dictionary: interleaving batches of a run merges them, and a
    // run file's dictionary changes from batch to batch.
    let batches: Vec<RecordBatch> = scrambled(12_000, 500)
        .iter()
        .enumerate()
        .map(|(n, b)| {
            let regions = b.column(0).as_string::<i32>();
            let named: Vec<Option<String>> = regions
                .iter()
                .map(|r| r.map(|r| format!("{r}-{}", n % 7)))
                .collect();
            let region: DictionaryArray<Int32Type> = named.iter().map(Option::as_deref).collect();
            RecordBatch::try_new(
                dict_schema.clone(),
                vec![Arc::new(region), b.column(1).clone(), b.column(2).clone()],
            )
            .unwrap()
        })
        .collect();
    let progress = Arc::new(Progress::new());
    for key in [vec![1], vec![0, 1]] {
        let mut sort = ExternalSort::new(
            dict_schema.clone(),
            key.clone(),
            tiny(),
            spill.path(),
            progress.clone(),
        );
        for b in &batches {
            sort.push(b.clone()).unwrap();
        }
        let mut sorted = sort.finish().unwrap();
        let mut out = Vec::new();
        while let Some(b) = sorted.next_batch().unwrap() {
            out.push(b);
        }
        let all = concat_batches(&dict_schema, &out).unwrap();
        let expected =
            keys::sort_by_key(&concat_batches(&dict_schema, &batches).unwrap(), &key).unwrap();
        // Dictionaries differ; the values must not.
        for c in 0..3 {
            let got = arrow::compute::cast(all.column(c), &DataType::Utf8).unwrap();
            let want = arrow::compute::cast(expected.column(c), &DataType::Utf8).unwrap();
            assert_eq!(&got, &want, "key {key:?}, column {c}");
        }
    }
    assert!(progress.runs_spilled() > 3);
}

fn duplicate_of(result: Result<RecordBatch, ImportError>) -> String {
    match result {
        Err(ImportError::Table(Error::DuplicateKey { key })) => key,
        other => panic!("expected a duplicate key, got {other:?}"),
    }
}

#[test]
fn duplicates_across_runs_and_within_a_run_name_the_smallest_duplicate_key() {
    let spill = tempfile::tempdir().unwrap();
    let key = key(&["id"]);
    let progress = Arc::new(Progress::new());
    // 20 000 distinct ids, then 17 000 again at the very end (another run), then 9 000 again
    // in the middle: the smallest duplicate is 9 000, though 17 000's copy comes first in
    // the sorted order of no run.
    let mut batches = scrambled(20_000, 700);
    batches.insert(10, batch(&[("eu", Some(9_000))]));
    batches.push(batch(&[("us", Some(17_000))]));
    let twice = sort_all(&batches, &key, tiny(), spill.path(), &progress);
    assert_eq!(duplicate_of(twice), "id=9000");
    assert!(
        progress.runs_spilled() > 3,
        "the copies were in different runs"
    );
    assert!(is_empty_dir(spill.path()), "a failed sort leaves no file");

    // Within one batch of one run, spilled (ids beyond the others').
    let mut batches = scrambled(20_000, 700);
    batches[3] = batch(&[
        ("eu", Some(20_005)),
        ("us", Some(20_004)),
        ("ap", Some(20_005)),
    ]);
    let err = sort_all(&batches, &key, tiny(), spill.path(), &progress);
    assert_eq!(duplicate_of(err), "id=20005");

    // Within the one in-memory run.
    let small = [
        batch(&[("eu", Some(4)), ("eu", Some(5))]),
        batch(&[("eu", Some(9)), ("us", Some(5))]),
    ];
    let limits = Limits::for_budget(64 << 20);
    let err = sort_all(&small, &key, limits, spill.path(), &progress);
    assert_eq!(duplicate_of(err), "id=5");

    // Composite keys: equal only when every column is.
    let key = self::key(&["region", "id"]);
    let composite = [
        batch(&[("eu", Some(1)), ("us", Some(1))]),
        batch(&[("us", Some(1))]),
    ];
    let err = sort_all(&composite, &key, tiny(), spill.path(), &progress);
    assert_eq!(duplicate_of(err), "region=us, id=1");
    assert!(is_empty_dir(spill.path()));
}

#[test]
fn a_null_key_names_its_row_in_the_whole_source() {
    let spill = tempfile::tempdir().unwrap();
    let key = key(&["id"]);
    let progress = Arc::new(Progress::new());
    let mut batches = scrambled(20_000, 700);
    // Row 2 of the 12th batch: row 11 * 700 + 2 of the source.
    batches[11] = batch(&[
        ("eu", Some(-1)),
        ("eu", Some(-2)),
        ("eu", None),
        ("eu", None),
    ]);
    match sort_all(&batches, &key, tiny(), spill.path(), &progress) {
        Err(ImportError::Table(Error::NullKey { column, row })) => {
            assert_eq!((column.as_str(), row), ("id", 11 * 700 + 2));
        }
        other => panic!("expected a null key, got {other:?}"),
    }
    assert!(
        is_empty_dir(spill.path()),
        "runs spilled before the null are gone"
    );

    // With two key columns, the first row that has a null in either.
    let key = self::key(&["region", "id"]);
    let schema = schema();
    let nulls = RecordBatch::try_new(
        schema,
        vec![
            Arc::new(StringArray::from(vec![Some("eu"), Some("eu"), None])),
            Arc::new(Int64Array::from(vec![Some(1), None, Some(3)])),
            Arc::new(StringArray::from(vec!["a", "b", "c"])),
        ],
    )
    .unwrap();
    match sort_all(&[nulls], &key, tiny(), spill.path(), &progress) {
        Err(ImportError::Table(Error::NullKey { column, row })) => {
            assert_eq!((column.as_str(), row), ("id", 1));
        }
        other => panic!("expected a null key, got {other:?}"),
    }
}

#[test]
fn a_sort_dropped_half_way_removes_its_spill_files() {
    let spill = tempfile::tempdir().unwrap();
    let progress = Arc::new(Progress::new());
    let mut sort = ExternalSort::new(
        schema(),
        key(&["id"]),
        tiny(),
        spill.path(),
        progress.clone(),
    );
    for b in scrambled(5_000, 500) {
        sort.push(b).unwrap();
    }
    assert!(progress.runs_spilled() > 0);
    let dirs: Vec<_> = std::fs::read_dir(spill.path()).unwrap().collect();
    assert_eq!(dirs.len(), 1, "one directory for the import");
    let dir = dirs[0].as_ref().unwrap().path();
    assert!(
        dir.file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with("strata-import-")
    );
    assert!(
        std::fs::read_dir(&dir).unwrap().count() > 0,
        "runs were spilled"
    );

    // Dropped during the merge, too.
    let mut sorted = sort.finish().unwrap();
    sorted.next_batch().unwrap().unwrap();
    drop(sorted);
    assert!(is_empty_dir(spill.path()));
}

async fn read_part(store: &Arc<dyn ObjectStore>, path: &str) -> RecordBatch {
    let path = object_store::path::Path::from(path);
    let bytes = store.get(&path).await.unwrap().bytes().await.unwrap();
    let (schema, batches) = parquet_io::decode(bytes).unwrap();
    concat_batches(&schema, &batches).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_import_writes_sorted_parts_with_their_ranges_and_shows_progress() {
    let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let spill = tempfile::tempdir().unwrap();
    let name = DatasetName::new("scrambled").unwrap();
    let imports = Imports::default();
    let ticket = imports.start(&name).unwrap();
    let listed = imports.list();
    assert_eq!(listed.len(), 1);
    assert_eq!(
        (listed[0].name.as_str(), listed[0].phase),
        ("scrambled", ImportPhase::Queued)
    );
    assert!(
        matches!(imports.start(&name), Err(Error::Conflict(_))),
        "a second import of the name is refused while the first runs"
    );
    let turn = ticket.turn().await;
    assert_eq!(imports.list()[0].phase, ImportPhase::Reading);

    let settings = Settings {
        memory: 1 << 20,
        spill_dir: spill.path().to_owned(),
        part_bytes: 256 << 10,
    };
    let batches = scrambled(60_000, 4_096);
    let expected = in_memory_sort(&batches, &key(&["id"]));
    let rows = Rows::Batches(schema(), batches);
    let primary_key = vec!["id".to_owned()];
    let (table, files) = write_base(&store, &name, rows, &primary_key, &settings, &ticket, turn)
        .await
        .unwrap();
    assert!(
        !table.field(1).is_nullable(),
        "the key column becomes non-nullable"
    );
    assert!(table.field(0).is_nullable());
    assert!(files.len() > 2, "parts roll at part_bytes: {}", files.len());
    assert!(
        ticket.progress().runs_spilled() > 1,
        "1 MiB holds no 60 000 rows at once"
    );

    let mut parts = Vec::new();
    for file in &files {
        let part = read_part(&store, &file.path).await;
        assert_eq!(part.num_rows() as u64, file.rows);
        let ids = part.column(1).as_primitive::<Int64Type>();
        assert_eq!(file.key_min, Some(vec![ids.value(0).into()]));
        assert_eq!(file.key_max, Some(vec![ids.value(ids.len() - 1).into()]));
        parts.push(part);
    }
    let all = concat_batches(&parts[0].schema(), &parts).unwrap();
    assert_eq!(all.columns(), expected.columns(), "every row, in key order");
    let listed = imports.list();
    assert_eq!(
        (listed[0].rows_read, listed[0].rows_written),
        (60_000, 60_000)
    );
    assert_eq!(listed[0].phase, ImportPhase::Writing);
    drop(ticket);
    assert!(imports.list().is_empty(), "the entry goes with the ticket");
    assert!(is_empty_dir(spill.path()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_import_without_a_key_keeps_source_order_and_a_cancelled_one_stops() {
    let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let spill = tempfile::tempdir().unwrap();
    let settings = Settings {
        memory: 1 << 20,
        spill_dir: spill.path().to_owned(),
        part_bytes: 128 << 10,
    };
    let imports = Imports::default();
    let name = DatasetName::new("unkeyed").unwrap();
    let ticket = imports.start(&name).unwrap();
    let turn = ticket.turn().await;
    let batches = scrambled(20_000, 1_000);
    let source_order = concat_batches(&schema(), &batches).unwrap();
    let rows = Rows::Batches(schema(), batches);
    let (_, files) = write_base(&store, &name, rows, &[], &settings, &ticket, turn)
        .await
        .unwrap();
    assert!(files.len() > 1);
    assert!(
        files
            .iter()
            .all(|f| f.key_min.is_none() && f.key_max.is_none())
    );
    let mut parts = Vec::new();
    for file in &files {
        parts.push(read_part(&store, &file.path).await);
    }
    let all = concat_batches(&parts[0].schema(), &parts).unwrap();
    assert_eq!(all.columns(), source_order.columns());
    drop(ticket);

    // A cancelled import (its request went away: the ticket was dropped) stops at its next
    // batch and writes nothing more.
    let name = DatasetName::new("cancelled").unwrap();
    let ticket = imports.start(&name).unwrap();
    let turn = ticket.turn().await;
    ticket.progress().cancel();
    let rows = Rows::Batches(schema(), scrambled(1_000, 100));
    let primary_key = vec!["id".to_owned()];
    let err = write_base(&store, &name, rows, &primary_key, &settings, &ticket, turn)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("cancelled"), "{err}");
    assert_eq!(ticket.progress().rows_read(), 0);
}

#[test]
fn interleaved_view_columns_hold_only_their_own_strings() {
    use arrow::array::StringViewArray;
    // 20 batches of long strings; a pick of one row from each must not carry every batch's
    // data buffer into the run file (what made lineitem's runs 1.7x its size).
    let schema = Arc::new(Schema::new(vec![Field::new(
        "s",
        DataType::Utf8View,
        false,
    )]));
    let batches: Vec<RecordBatch> = (0..20)
        .map(|b| {
            let values = (0..1_000).map(|r| format!("batch {b} row {r} {}", "x".repeat(40)));
            let strings: StringViewArray = values.map(Some).collect();
            RecordBatch::try_new(schema.clone(), vec![Arc::new(strings)]).unwrap()
        })
        .collect();
    let refs: Vec<&RecordBatch> = batches.iter().collect();
    let picks: Vec<(usize, usize)> = (0..20).map(|b| (b, 999 - b)).collect();
    let out = super::sort::interleave(&refs, &picks).unwrap();
    let strings = out.column(0).as_string_view();
    assert_eq!(
        strings.value(3),
        format!("batch 3 row 996 {}", "x".repeat(40))
    );
    let data: usize = strings.data_buffers().iter().map(|b| b.len()).sum();
    assert!(data < 20 * 64, "{data} bytes of data for 20 strings");
}
