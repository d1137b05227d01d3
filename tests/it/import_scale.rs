//! Creating a dataset larger than storaged's import memory (issue 19 item 1): storaged as a
//! real process with `import_memory_bytes` = 32 MiB imports a source whose rows take more
//! than that plus the 256 MiB the bound allows on top, from several files, keys scrambled.
//! Every row must come through, in key order, and storaged's peak RSS must stay below its RSS
//! before the import plus the budget plus 256 MiB. A memory bound, not a timing. Also: the
//! catalog lists the import while it runs, each step is logged, the spill directory is left
//! empty, and a request whose client gives up cancels its import.

use std::sync::Arc;
use std::time::Duration;

use arrow::array::{AsArray, Float64Array, Int64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Float64Type, Int64Type, Schema, SchemaRef};
use object_store::path::Path;
use strata_daemon::auth::ADMIN_TOKEN_HEADER;
use strata_shared::parquet_io::RowGroups;
use strata_storaged_api::catalog::{CreateDatasetRequest, DATASETS_ROUTE, ImportPhase};
use strata_testkit::{Mode, Store, TestCluster, write_parquet};

/// Enough rows that the table in Arrow memory (about 110 bytes a row) exceeds the budget
/// plus the allowance by a margin: an import that held the table once would fail the bound.
const ROWS: i64 = 4_000_000;
const FILES: i64 = 5;
const BUDGET: u64 = 32 << 20;
const ALLOWANCE: u64 = 256 << 20;
/// A prime that divides no `ROWS`: `i * STEP % ROWS` visits every id once, scrambled.
const STEP: i64 = 7_919;

fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("value", DataType::Float64, true),
        Field::new("tag", DataType::Utf8, true),
    ]))
}

/// The row of `id`: the test checks every column of every row against this. Mostly hex of a
/// hash, which Snappy cannot shrink much: the base parts are near their size in memory, as
/// the bound must allow for (the writer holds one part's encoded bytes).
fn tag(id: i64) -> String {
    let mix = |x: u64| {
        // splitmix64's finalizer.
        let x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        let x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        x ^ (x >> 31)
    };
    let id = id as u64;
    let word = |k: u64| mix(id + k * ROWS as u64);
    format!(
        "{id:08} {:016x}{:016x}{:016x}{:016x}{:016x}",
        word(0),
        word(1),
        word(2),
        word(3),
        word(4)
    )
}

fn value(id: i64) -> f64 {
    id as f64 * 0.5
}

/// The rows `from..to` of the source, as scrambled ids; returns their Arrow memory.
fn source_batches(from: i64, to: i64) -> (Vec<RecordBatch>, u64) {
    let mut batches = Vec::new();
    let mut bytes = 0;
    let mut start = from;
    while start < to {
        let end = (start + 65_536).min(to);
        let ids: Vec<i64> = (start..end).map(|i| i * STEP % ROWS).collect();
        let batch = RecordBatch::try_new(
            schema(),
            vec![
                Arc::new(Int64Array::from(ids.clone())),
                Arc::new(Float64Array::from_iter_values(
                    ids.iter().map(|&i| value(i)),
                )),
                Arc::new(StringArray::from_iter_values(ids.iter().map(|&i| tag(i)))),
            ],
        )
        .unwrap();
        // The data's size, not the builders' spare capacity.
        bytes += batch
            .columns()
            .iter()
            .map(|c| c.to_data().get_slice_memory_size().unwrap() as u64)
            .sum::<u64>();
        batches.push(batch);
        start = end;
    }
    (batches, bytes)
}

/// `VmRSS` or `VmHWM` of process `pid`, in bytes.
fn memory(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kb = status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .unwrap_or_else(|| panic!("{field} not in /proc/{pid}/status"));
    kb * 1024
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_import_larger_than_its_memory_is_sorted_on_disk_within_its_budget() {
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("source");
    let mut arrow_bytes = 0;
    for f in 0..FILES {
        let (batches, bytes) = source_batches(f * ROWS / FILES, (f + 1) * ROWS / FILES);
        write_parquet(&source.join(format!("part-{f}.parquet")), &batches).unwrap();
        arrow_bytes += bytes;
    }
    assert!(
        arrow_bytes > BUDGET + ALLOWANCE + (64 << 20),
        "the table ({} MiB) must not fit in the bound it is held to",
        arrow_bytes >> 20
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

    // Create it, and watch the catalog list the import while it runs.
    let client = cluster.storaged();
    let request = |name: &str| CreateDatasetRequest {
        name: name.into(),
        source: source.display().to_string(),
        format: Default::default(),
        schema: None,
        primary_key: vec!["id".into()],
        delta_mirror: false,
        index: None,
        index_columns: Vec::new(),
    };
    let create = tokio::spawn({
        let request = request("big");
        let client = client.clone();
        async move { client.create_dataset(&request).await }
    });
    let mut seen = Vec::new();
    while !create.is_finished() {
        let list = client.list_datasets().await.unwrap();
        seen.extend(list.importing.into_iter().filter(|i| i.name == "big"));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let info = create.await.unwrap().unwrap();
    let peak = memory(pid, "VmHWM:");
    let log = cluster.log("storaged");
    let source_bytes: u64 = std::fs::read_dir(&source)
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len())
        .sum();
    eprintln!(
        "import of {ROWS} rows ({} MiB in Arrow memory, {FILES} files of {} MiB in all): \
         {} runs spilled, {} base parts; storaged RSS before {} MiB, peak {} MiB, budget {} MiB",
        arrow_bytes >> 20,
        source_bytes >> 20,
        log.matches("import: sorted run spilled").count(),
        log.matches("import: base part written").count(),
        before >> 20,
        peak >> 20,
        BUDGET >> 20
    );
    assert_eq!(info.base_rows, ROWS as u64);
    assert!(
        peak <= before + BUDGET + ALLOWANCE,
        "peak RSS {} MiB above {} MiB before + {} MiB budget + {} MiB",
        peak >> 20,
        before >> 20,
        BUDGET >> 20,
        ALLOWANCE >> 20
    );

    // Progress was visible, and each step logged.
    assert!(
        seen.iter()
            .any(|i| i.phase == ImportPhase::Reading && i.rows_read > 0),
        "the list showed the import reading: {seen:?}"
    );
    assert!(seen.iter().any(|i| i.runs_spilled > 0), "{seen:?}");
    for step in [
        "import: reading the source",
        "import: sorted run spilled",
        "import: merging runs",
        "import: base part written",
        "dataset created",
    ] {
        assert!(log.contains(step), "no {step:?} in the log:\n{log}");
    }
    assert!(
        std::fs::read_dir(&spill).unwrap().next().is_none(),
        "the spill directory is left empty"
    );
    assert!(
        client.list_datasets().await.unwrap().importing.is_empty(),
        "a finished import is listed as a dataset only"
    );

    // Every row, exactly once, in key order across the base files, each file's range right.
    let manifest = client.manifest("big", Some(0)).await.unwrap();
    assert!(manifest.base_files.len() > 1, "parts roll over");
    let store = cluster.store();
    let mut next = 0_i64;
    for file in &manifest.base_files {
        assert_eq!(file.key_min, Some(vec![next.into()]));
        let mut groups = RowGroups::open(store.clone(), &Path::from(file.path.as_str()), 65_536)
            .await
            .unwrap();
        while let Some(group) = groups.next().await.unwrap() {
            for batch in group {
                let batch = batch.unwrap();
                let ids = batch.column(0).as_primitive::<Int64Type>();
                let values = batch.column(1).as_primitive::<Float64Type>();
                let tags = batch.column(2).as_string::<i32>();
                for r in 0..batch.num_rows() {
                    assert_eq!(ids.value(r), next, "in key order, none missing or repeated");
                    assert_eq!(values.value(r), value(next));
                    assert_eq!(tags.value(r), tag(next));
                    next += 1;
                }
            }
        }
        assert_eq!(file.key_max, Some(vec![(next - 1).into()]));
    }
    assert_eq!(next, ROWS);

    // A request that goes away (its client gave up) cancels its import: the import stops,
    // leaves the list and commits nothing.
    let impatient = reqwest::Client::builder()
        .timeout(Duration::from_secs(1))
        .build()
        .unwrap();
    let gone = impatient
        .post(format!("{}{DATASETS_ROUTE}", cluster.storaged_url()))
        .header(ADMIN_TOKEN_HEADER, cluster.admin_token())
        .json(&request("gone"))
        .send()
        .await;
    assert!(gone.is_err_and(|e| e.is_timeout()));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !cluster.log("storaged").contains("the import was cancelled") {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the import was not cancelled"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(client.list_datasets().await.unwrap().importing.is_empty());
    assert_eq!(
        client.dataset("gone").await.unwrap_err().status(),
        Some(404)
    );
}
