//! Compaction of one dataset (`ARCHITECTURE.md` §4): fold a prefix of the deltas into new base
//! files and commit a version whose logical state is unchanged (invariant 5).
//!
//! A run:
//! 1. reads the newest manifest; without deltas it is a no-op and writes nothing;
//! 2. **fences** older compactors: it commits an [`Operation::BumpEpoch`] version and remembers
//!    the epoch it set. That version is the run's snapshot; `S` is its largest delta `seq`, and
//!    the run merges exactly the deltas with `seq <= S` (all of the snapshot's deltas);
//! 3. merges them into the base by a **streaming sorted merge on the primary key**: base files
//!    are sorted by key with ascending, non-overlapping ranges in manifest order, so reading them
//!    one after the other in bounded batches (parquet's async reader) yields every base row in
//!    key order. The delta side is combined in memory first: the newest entry of each key among
//!    the merged deltas, decided by [`merge::supersedes`], tombstones kept so they can drop base
//!    rows. Where a key is on both sides, [`merge::supersedes`] decides against the base row's
//!    sequence (`base_watermark_seq`), exactly as readers do; surviving tombstones drop the row;
//! 4. writes the merged rows, still in key order, with a rolling writer: a new file whenever the
//!    current one reaches [`CompactOptions::target_file_bytes`], under a new compaction id, each
//!    file put-if-absent with its row count, size and key range;
//! 5. commits [`Operation::Compact`] on the newest manifest. The mutation re-checks everything it
//!    relies on against that manifest: the epoch is still the run's (else [`Error::Fenced`]),
//!    the base files and watermark are the snapshot's and every merged delta is still listed
//!    (else [`Error::CompactionAborted`]). Then it removes exactly the merged deltas, keeps every
//!    delta with `seq > S` (deltas committed during the run survive), sets
//!    `base_watermark_seq = S` and replaces the base files.
//!
//! Nothing is ever deleted here: a fenced or aborted run leaves its files unreferenced, for GC.
//!
//! **Memory** is bounded by the merge, not by the table: one base batch of at most
//! [`CompactOptions::batch_rows`] rows, one output batch of at most as many rows, the encoded
//! output file in progress (at most about `target_file_bytes` plus one batch), and the delta
//! side (every merged delta row, once). [`CompactStats::peak_batch_rows`] records the largest
//! batch held, so tests can prove the bound.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, RecordBatch};
use arrow::compute::{concat_batches, interleave};
use arrow::datatypes::SchemaRef;
use arrow::row::{OwnedRow, RowConverter, Rows, SortField};
use futures::TryStreamExt;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};
use parquet::arrow::ArrowWriter;
use parquet::arrow::async_reader::{ParquetObjectReader, ParquetRecordBatchStreamBuilder};

use crate::commit::Table;
use crate::delta::{self, Op};
use crate::layout::{self, DatasetName};
use crate::manifest::{DataFile, DeltaFile, Manifest, Operation};
use crate::merge::{self, Entry};
use crate::{Error, Result, keys, parquet_io};

/// Default size at which the rolling writer starts a new base file. A file is encoded in
/// memory and put whole (put-if-absent is one PUT), so this bounds compaction's memory: 16 MiB
/// keeps a compaction's peak flat from 1M to 10M rows (`benches/compact`), at the cost of more
/// files (about 14 for 10M rows of the benchmark table).
pub const DEFAULT_TARGET_FILE_BYTES: u64 = 16 * 1024 * 1024;
/// Default number of rows per batch read from the base and written to the output.
pub const DEFAULT_BATCH_ROWS: usize = 8 * 1024;

/// How a compaction writes.
#[derive(Clone, Debug)]
pub struct CompactOptions {
    /// A base file is closed once its encoded size reaches this many bytes.
    pub target_file_bytes: u64,
    /// Rows per batch on the base and output side: the unit of memory of the merge.
    pub batch_rows: usize,
}

impl Default for CompactOptions {
    fn default() -> Self {
        Self {
            target_file_bytes: DEFAULT_TARGET_FILE_BYTES,
            batch_rows: DEFAULT_BATCH_ROWS,
        }
    }
}

/// What a run did, whatever its outcome.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CompactStats {
    /// Delta files merged (those with `seq <= S`).
    pub deltas_merged: u64,
    /// Base rows read plus delta rows read.
    pub rows_in: u64,
    /// Rows written to the new base files.
    pub rows_out: u64,
    /// Bytes of the new base files.
    pub bytes_written: u64,
    /// New base files (zero when the deltas deleted every row).
    pub files_written: u64,
    /// The largest number of rows held in one base or output batch: at most
    /// [`CompactOptions::batch_rows`], however large the table.
    pub peak_batch_rows: usize,
}

/// How a run ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CompactOutcome {
    /// The compaction version was committed.
    Committed { version: u64 },
    /// There were no deltas to merge; nothing was written.
    Noop,
    /// Another compactor bumped the epoch after this run did; nothing was committed.
    Fenced { epoch: u64, current: u64 },
    /// A merged input vanished or the base changed under the run; nothing was committed.
    Aborted { reason: String },
}

/// The result of [`compact`].
#[derive(Clone, Debug)]
pub struct CompactReport {
    pub outcome: CompactOutcome,
    /// `S`: the merged deltas are those with `seq <= S` (0 for a no-op).
    pub watermark: u64,
    /// The compactor epoch this run set (0 for a no-op, which bumps nothing).
    pub epoch: u64,
    pub stats: CompactStats,
}

/// Compacts the dataset of `table` (see the module docs).
///
/// `Ok` for every outcome of [`CompactOutcome`]; `Err` when the store, a file or the manifest
/// failed (also then nothing was committed unless the commit itself had an unknown outcome,
/// which the commit protocol resolves by transaction id before it gives up).
/// Commits a new compactor epoch and returns the manifest holding it: from then on, a commit
/// by any holder of an older epoch is fenced.
pub async fn bump_epoch(table: &Table) -> Result<Manifest> {
    let txn = format!("compact-epoch-{}", uuid::Uuid::now_v7());
    let outcome = table
        .commit(&txn, Operation::BumpEpoch, |draft| {
            draft.compactor_epoch = draft.compactor_epoch.saturating_add(1);
            Ok(())
        })
        .await?;
    Ok(outcome.manifest)
}

pub async fn compact(table: &Table, options: &CompactOptions) -> Result<CompactReport> {
    compact_with(table, options, || async {}).await
}

/// As [`compact`], calling `before_commit` after the new base files are written and before the
/// compaction commit: a hook for tests (commit a delta or run another compactor mid-run).
pub async fn compact_with<F, Fut>(
    table: &Table,
    options: &CompactOptions,
    before_commit: F,
) -> Result<CompactReport>
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = ()>,
{
    if options.batch_rows == 0 || options.target_file_bytes == 0 {
        return Err(Error::InvalidInput(
            "compaction needs batch_rows and target_file_bytes above zero".into(),
        ));
    }
    let noop = CompactReport {
        outcome: CompactOutcome::Noop,
        watermark: 0,
        epoch: 0,
        stats: CompactStats::default(),
    };
    // A run without deltas writes nothing, not even an epoch bump: schedules may fire often.
    if table.load_latest().await?.deltas.is_empty() {
        return Ok(noop);
    }
    let run = uuid::Uuid::now_v7();
    let snapshot = bump_epoch(table).await?;
    let epoch = snapshot.compactor_epoch;
    // Another compactor may have merged everything between the first read and the bump.
    let Some(watermark) = snapshot.deltas.iter().map(|d| d.seq).max() else {
        return Ok(CompactReport { epoch, ..noop });
    };
    if snapshot.primary_key.is_empty() {
        return Err(Error::Conflict(format!(
            "dataset {} has deltas but no primary key",
            snapshot.dataset
        )));
    }
    let merged: Vec<DeltaFile> = snapshot
        .deltas
        .iter()
        .filter(|d| d.seq <= watermark)
        .cloned()
        .collect();

    let compaction_id = layout::new_compaction_id();
    let (files, stats) =
        merge_and_write(table.store(), &snapshot, &merged, options, &compaction_id).await?;
    before_commit().await;

    let committed = table
        .commit(&format!("compact-{run}"), Operation::Compact, |draft| {
            apply(draft, &snapshot, &merged, epoch, watermark, &files)
        })
        .await;
    let outcome = match committed {
        Ok(done) => CompactOutcome::Committed {
            version: done.manifest.version,
        },
        Err(Error::Fenced { epoch, current, .. }) => CompactOutcome::Fenced { epoch, current },
        Err(Error::CompactionAborted { reason, .. }) => CompactOutcome::Aborted { reason },
        Err(e) => return Err(e),
    };
    Ok(CompactReport {
        outcome,
        watermark,
        epoch,
        stats,
    })
}

/// The compaction mutation on a draft of the newest manifest. Pure: the commit may call it
/// once per attempt.
fn apply(
    draft: &mut Manifest,
    snapshot: &Manifest,
    merged: &[DeltaFile],
    epoch: u64,
    watermark: u64,
    files: &[DataFile],
) -> Result<()> {
    let aborted = |reason: String| Error::CompactionAborted {
        dataset: draft.dataset.clone(),
        reason,
    };
    if draft.compactor_epoch != epoch {
        return Err(Error::Fenced {
            dataset: draft.dataset.clone(),
            epoch,
            current: draft.compactor_epoch,
        });
    }
    if draft.schema != snapshot.schema || draft.primary_key != snapshot.primary_key {
        return Err(aborted("the schema changed".into()));
    }
    if draft.base_files != snapshot.base_files
        || draft.base_watermark_seq != snapshot.base_watermark_seq
    {
        return Err(aborted("the base files changed".into()));
    }
    if let Some(gone) = merged.iter().find(|m| {
        !draft
            .deltas
            .iter()
            .any(|d| d.seq == m.seq && d.path == m.path)
    }) {
        return Err(aborted(format!(
            "merged delta {} (seq {}) is no longer in the manifest",
            gone.path, gone.seq
        )));
    }
    draft.deltas.retain(|d| d.seq > watermark);
    draft.base_files = files.to_vec();
    draft.base_watermark_seq = watermark;
    Ok(())
}

/// Streams the base through the merge with the delta side and writes the result.
async fn merge_and_write(
    store: &Arc<dyn ObjectStore>,
    snapshot: &Manifest,
    merged: &[DeltaFile],
    options: &CompactOptions,
    compaction_id: &str,
) -> Result<(Vec<DataFile>, CompactStats)> {
    let schema = snapshot.arrow_schema();
    let key = keys::key_indices(&schema, &snapshot.primary_key)?;
    let converter = RowConverter::new(
        key.iter()
            .map(|&i| SortField::new(schema.field(i).data_type().clone()))
            .collect(),
    )?;
    let deltas = DeltaSide::load(store.as_ref(), &schema, &key, &converter, merged).await?;
    let mut stats = CompactStats {
        deltas_merged: merged.len() as u64,
        rows_in: deltas.rows_read,
        ..CompactStats::default()
    };
    let mut out = Emitter {
        schema: schema.clone(),
        batch_rows: options.batch_rows,
        picks: Vec::with_capacity(options.batch_rows),
        writer: RollingWriter::new(
            store.clone(),
            &snapshot.dataset,
            compaction_id,
            schema.clone(),
            key.clone(),
            options.target_file_bytes,
        ),
    };
    let base_seq = snapshot.base_watermark_seq;
    let mut next = 0; // the first delta winner not yet emitted
    let mut last_base_key: Option<OwnedRow> = None;

    for file in &snapshot.base_files {
        let path = Path::parse(&file.path)?;
        // HEAD for the size: the manifest's figure is informative, the reader needs the truth.
        let size = store.head(&path).await?.size;
        let reader = ParquetObjectReader::new(store.clone(), path).with_file_size(size);
        let mut batches = ParquetRecordBatchStreamBuilder::new(reader)
            .await?
            .with_batch_size(options.batch_rows)
            .build()?;
        while let Some(batch) = batches.try_next().await? {
            let batch = RecordBatch::try_new(schema.clone(), batch.columns().to_vec())?;
            stats.rows_in += batch.num_rows() as u64;
            stats.peak_batch_rows = stats.peak_batch_rows.max(batch.num_rows());
            let columns: Vec<ArrayRef> = key.iter().map(|&i| batch.column(i).clone()).collect();
            let rows = converter.convert_columns(&columns)?;
            check_ascending(&rows, last_base_key.as_ref(), &batch, &key)?;
            if rows.num_rows() > 0 {
                last_base_key = Some(rows.row(rows.num_rows() - 1).owned());
            }
            for r in 0..rows.num_rows() {
                let base_key = rows.row(r);
                // Delta keys below this base key are inserts (or deletes of missing keys).
                while next < deltas.len() && deltas.keys[next].row() < base_key {
                    out.delta(&deltas, next, &batch, &mut stats).await?;
                    next += 1;
                }
                if next < deltas.len() && deltas.keys[next].row() == base_key {
                    if merge::supersedes(deltas.entries[next].seq, base_seq) {
                        out.delta(&deltas, next, &batch, &mut stats).await?;
                    } else {
                        out.pick(Source::Base, r, &deltas, &batch, &mut stats)
                            .await?;
                    }
                    next += 1;
                } else {
                    out.pick(Source::Base, r, &deltas, &batch, &mut stats)
                        .await?;
                }
            }
            // Picks refer to this batch by position: write them before it is dropped.
            out.flush(&deltas, &batch, &mut stats).await?;
            // Decoding, merging and encoding a batch is CPU work without an await point that
            // waits; give other tasks of the runtime (queryd under `strata up`) their turn.
            tokio::task::yield_now().await;
        }
    }
    let empty = RecordBatch::new_empty(schema.clone());
    while next < deltas.len() {
        out.delta(&deltas, next, &empty, &mut stats).await?;
        next += 1;
    }
    out.flush(&deltas, &empty, &mut stats).await?;
    let files = out.writer.finish().await?;
    stats.files_written = files.len() as u64;
    stats.bytes_written = files.iter().map(|f| f.bytes).sum();
    Ok((files, stats))
}

/// Fails unless every key of `rows` is above its predecessor (and the first above `previous`):
/// the merge is only correct on a base sorted by key without duplicates.
fn check_ascending(
    rows: &Rows,
    previous: Option<&OwnedRow>,
    batch: &RecordBatch,
    key: &[usize],
) -> Result<()> {
    let first_bad = (0..rows.num_rows()).find(|&r| {
        let before = if r == 0 {
            previous.map(OwnedRow::row)
        } else {
            Some(rows.row(r - 1))
        };
        before.is_some_and(|b| b >= rows.row(r))
    });
    match first_bad {
        None => Ok(()),
        Some(r) => Err(Error::Conflict(format!(
            "base files are not sorted by primary key without duplicates (at {})",
            keys::describe_key(batch, key, r)
        ))),
    }
}

/// The merged deltas, combined: one winning entry per key, sorted by key.
struct DeltaSide {
    keys: Vec<OwnedRow>,
    /// Sequence and op of each winner, and its row in `upserts` if it is an upsert.
    entries: Vec<Entry<Option<usize>>>,
    /// The winning upsert rows in key order (table columns, all nullable).
    upserts: RecordBatch,
    rows_read: u64,
}

impl DeltaSide {
    async fn load(
        store: &dyn ObjectStore,
        schema: &SchemaRef,
        key: &[usize],
        converter: &RowConverter,
        merged: &[DeltaFile],
    ) -> Result<Self> {
        let mut tables = Vec::with_capacity(merged.len());
        let mut latest: HashMap<OwnedRow, Entry<(usize, usize)>> = HashMap::new();
        let mut rows_read = 0;
        for (i, file) in merged.iter().enumerate() {
            let (file_schema, batches) = parquet_io::read(store, &Path::parse(&file.path)?).await?;
            let batch = concat_batches(&file_schema, &batches)?;
            let table = delta::table_part(&batch, schema)?;
            let ops = delta::op_column(&batch)?;
            let columns: Vec<ArrayRef> = key.iter().map(|&c| table.column(c).clone()).collect();
            let rows = converter.convert_columns(&columns)?;
            rows_read += table.num_rows() as u64;
            for r in 0..table.num_rows() {
                let entry = Entry {
                    seq: file.seq,
                    op: Op::try_from(ops.value(r))?,
                    value: (i, r),
                };
                match latest.entry(rows.row(r).owned()) {
                    std::collections::hash_map::Entry::Vacant(v) => {
                        v.insert(entry);
                    }
                    std::collections::hash_map::Entry::Occupied(mut o) => {
                        if merge::supersedes(entry.seq, o.get().seq) {
                            o.insert(entry);
                        }
                    }
                }
            }
            tables.push(table);
        }
        let mut winners: Vec<(OwnedRow, Entry<(usize, usize)>)> = latest.into_iter().collect();
        winners.sort_unstable_by(|a, b| a.0.cmp(&b.0));

        let mut positions = Vec::new();
        let mut keys = Vec::with_capacity(winners.len());
        let mut entries = Vec::with_capacity(winners.len());
        for (k, e) in winners {
            let upsert_row = (e.op == Op::Upsert).then(|| {
                positions.push(e.value);
                positions.len() - 1
            });
            keys.push(k);
            entries.push(Entry {
                seq: e.seq,
                op: e.op,
                value: upsert_row,
            });
        }
        let upserts = match tables.first() {
            Some(first) => {
                let refs: Vec<&RecordBatch> = tables.iter().collect();
                let picked = arrow::compute::interleave_record_batch(&refs, &positions)?;
                RecordBatch::try_new(first.schema(), picked.columns().to_vec())?
            }
            None => RecordBatch::new_empty(schema.clone()),
        };
        Ok(Self {
            keys,
            entries,
            upserts,
            rows_read,
        })
    }

    fn len(&self) -> usize {
        self.keys.len()
    }
}

#[derive(Clone, Copy)]
enum Source {
    Base,
    Upsert,
}

/// Collects output rows as positions in the current base batch or the delta upserts, and turns
/// them into batches of at most `batch_rows` rows for the writer.
struct Emitter {
    schema: SchemaRef,
    batch_rows: usize,
    picks: Vec<(usize, usize)>,
    writer: RollingWriter,
}

impl Emitter {
    /// Emits delta winner `i`: its row if it is an upsert, nothing for a tombstone.
    async fn delta(
        &mut self,
        deltas: &DeltaSide,
        i: usize,
        base: &RecordBatch,
        stats: &mut CompactStats,
    ) -> Result<()> {
        match deltas.entries[i].value {
            Some(row) => self.pick(Source::Upsert, row, deltas, base, stats).await,
            None => Ok(()),
        }
    }

    async fn pick(
        &mut self,
        source: Source,
        row: usize,
        deltas: &DeltaSide,
        base: &RecordBatch,
        stats: &mut CompactStats,
    ) -> Result<()> {
        let source = match source {
            Source::Base => 0,
            Source::Upsert => 1,
        };
        self.picks.push((source, row));
        if self.picks.len() >= self.batch_rows {
            self.flush(deltas, base, stats).await?;
        }
        Ok(())
    }

    async fn flush(
        &mut self,
        deltas: &DeltaSide,
        base: &RecordBatch,
        stats: &mut CompactStats,
    ) -> Result<()> {
        if self.picks.is_empty() {
            return Ok(());
        }
        let columns = (0..self.schema.fields().len())
            .map(|c| {
                let sources: [&dyn Array; 2] =
                    [base.column(c).as_ref(), deltas.upserts.column(c).as_ref()];
                interleave(&sources, &self.picks)
            })
            .collect::<std::result::Result<Vec<_>, _>>()?;
        // The table schema proves the delta rows fill the table's non-nullable columns.
        let batch = RecordBatch::try_new(self.schema.clone(), columns)?;
        self.picks.clear();
        stats.rows_out += batch.num_rows() as u64;
        stats.peak_batch_rows = stats.peak_batch_rows.max(batch.num_rows());
        self.writer.write(&batch).await
    }
}

/// Writes key-ordered batches as base files of about `target` bytes each.
struct RollingWriter {
    store: Arc<dyn ObjectStore>,
    dataset: DatasetName,
    compaction_id: String,
    schema: SchemaRef,
    key: Vec<usize>,
    target: u64,
    open: Option<OpenFile>,
    files: Vec<DataFile>,
}

struct OpenFile {
    writer: ArrowWriter<Vec<u8>>,
    rows: u64,
    key_min: Vec<serde_json::Value>,
    key_max: Vec<serde_json::Value>,
}

impl RollingWriter {
    fn new(
        store: Arc<dyn ObjectStore>,
        dataset: &DatasetName,
        compaction_id: &str,
        schema: SchemaRef,
        key: Vec<usize>,
        target: u64,
    ) -> Self {
        Self {
            store,
            dataset: dataset.clone(),
            compaction_id: compaction_id.to_owned(),
            schema,
            key,
            target,
            open: None,
            files: Vec::new(),
        }
    }

    async fn write(&mut self, batch: &RecordBatch) -> Result<()> {
        let n = batch.num_rows();
        if n == 0 {
            return Ok(());
        }
        let open = match &mut self.open {
            Some(open) => open,
            None => self.open.insert(OpenFile {
                writer: ArrowWriter::try_new(
                    Vec::new(),
                    self.schema.clone(),
                    Some(parquet_io::writer_properties()),
                )?,
                rows: 0,
                key_min: keys::key_json(batch, &self.key, 0),
                key_max: Vec::new(),
            }),
        };
        open.writer.write(batch)?;
        open.rows += n as u64;
        open.key_max = keys::key_json(batch, &self.key, n - 1);
        let size = open.writer.bytes_written() + open.writer.in_progress_size();
        if size as u64 >= self.target {
            self.close().await?;
        }
        Ok(())
    }

    /// Finishes the open file and puts it (put-if-absent: invariant 1).
    async fn close(&mut self) -> Result<()> {
        let Some(open) = self.open.take() else {
            return Ok(());
        };
        let bytes = bytes::Bytes::from(open.writer.into_inner()?);
        let path = layout::base_file_path(&self.dataset, &self.compaction_id, self.files.len());
        let size = bytes.len() as u64;
        parquet_io::put_new(self.store.as_ref(), &path, bytes).await?;
        self.files.push(DataFile {
            path: path.to_string(),
            rows: open.rows,
            bytes: size,
            key_min: Some(open.key_min),
            key_max: Some(open.key_max),
        });
        Ok(())
    }

    async fn finish(mut self) -> Result<Vec<DataFile>> {
        self.close().await?;
        Ok(self.files)
    }
}

#[cfg(test)]
#[path = "compact_tests.rs"]
mod tests;
