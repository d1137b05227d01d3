//! Compaction of one dataset (`docs/architecture.md`, "The path of a compaction"): fold a prefix of the deltas into new base
//! files and commit a version whose logical state is unchanged (invariant 5).
//!
//! A run:
//! 1. reads the newest manifest; without deltas it is a no-op and writes nothing;
//! 2. **fences** older compactors: it commits an [`Operation::BumpEpoch`] version and remembers
//!    the epoch it set. That version is the run's snapshot; `S` is its largest delta `seq`, and
//!    the run merges exactly the deltas with `seq <= S` (all of the snapshot's deltas);
//! 3. merges them into the base **in storage order**: the base rows that no merged delta names,
//!    in base order (streamed from the base files in manifest order, in bounded batches by
//!    parquet's async reader), then the surviving delta upserts by sequence, then key — exactly
//!    `strata_shared::merge::materialize` of the snapshot up to `S`. The delta side is combined
//!    in memory first: the newest entry of each key among the merged deltas, decided by
//!    [`merge::supersedes`], tombstones kept so they can drop base rows. Every merged delta is
//!    newer than the base (`seq > base_watermark_seq`, a manifest invariant the run checks), so
//!    a key named by a merged delta drops its base row. The base rows between two dropped ones
//!    pass through as one run; each output batch is copied once, one range copy per run;
//! 4. writes the merged rows, in that order, with a rolling writer: a new file whenever the
//!    current one reaches [`CompactOptions::target_file_bytes`], under a new compaction id, each
//!    file put-if-absent with its row count, size and key range (smallest and largest key);
//! 5. commits [`Operation::Compact`] on the newest manifest. The mutation re-checks everything it
//!    relies on against that manifest: the epoch is still the run's (else the run is
//!    [`CompactOutcome::Fenced`]), the base files and watermark are the snapshot's and every
//!    merged delta is still listed (else [`CompactOutcome::Aborted`]). Then it removes exactly
//!    the merged deltas, keeps every delta with `seq > S` (deltas committed during the run
//!    survive), sets `base_watermark_seq = S` and replaces the base files.
//!
//! Nothing is ever deleted here: a fenced or aborted run leaves its files unreferenced, for GC.
//!
//! **Storage order** (invariant 7, `docs/architecture.md`): a compaction changes no answer, not
//! even the order of rows without `order_by`. Storage order is a fold — base rows that no delta
//! touched, then the surviving delta rows by (sequence, key) — and folding a prefix of the
//! deltas into the base keeps the fold of all of them. So a reader holding the state of a
//! version before the compaction already holds the compacted version's rows, in its order:
//! queryd moves its resident state to the new version without reading the new files
//! (`queryd/src/build/apply.rs`, `pending`), and its tail stays flat while a compaction
//! commits. The price: base files are no longer sorted by key across files once a compaction
//! appended delta rows (each file records its smallest and largest key; readers prune by them
//! and by row-group statistics).
//!
//! **Pipeline.** Steps 3 and 4 run as three stages at once, so that decoding, merging and
//! encoding use both cores and the PUTs overlap the encoding:
//! read and decode (a task: parquet decodes in its polls) → merge (the run's own task) →
//! encode and put (a blocking thread, `write.rs`; each finished file's PUT is a task that
//! runs while the next file is encoded). The stages are joined by channels of
//! `PIPELINE_DEPTH` (2) batches. A failing stage fails the run before the commit: the read
//! stage's error reaches the merge when its channel closes (the merge awaits the stage's result
//! before it treats a closed channel as the end of the base), the write stage's when the merge's
//! next send fails; either way no stage outlives the run and nothing is committed.
//!
//! **Memory** is bounded by the batch and the file size, not by the table: base batches of at
//! most [`CompactOptions::batch_rows`] rows (one being decoded, up to `PIPELINE_DEPTH` queued,
//! one being merged), output batches of at most as many rows (one being built, up to
//! `PIPELINE_DEPTH` queued, one being encoded), two encoded output files (the one being encoded,
//! at most about `target_file_bytes` plus one batch, and the previous one while it is put: a
//! file's PUT starts only after the previous PUT ended), and the delta side (every merged delta
//! row, once). [`CompactStats::peak_batch_rows`] records the largest batch, base or output,
//! that any stage held, so tests can prove the bound.

mod deltas;
mod write;

use std::future::Future;
use std::sync::Arc;

use arrow::array::{ArrayRef, MutableArrayData, RecordBatch, make_array};
use arrow::datatypes::SchemaRef;
use arrow::row::{RowConverter, SortField};
use futures::TryStreamExt;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};
use parquet::arrow::async_reader::{ParquetObjectReader, ParquetRecordBatchStreamBuilder};
use strata_shared::commit::Table;
use strata_shared::layout;
use strata_shared::manifest::{DataFile, DeltaFile, Manifest, Operation};
use strata_shared::{Error, keys, merge};
use tokio::runtime::Handle;
use tokio::sync::mpsc;

use deltas::DeltaSide;
use write::{RollingWriter, ToWriter, WriteEnd};

/// Why a compaction failed. Fenced and aborted runs are not failures: they are outcomes
/// ([`CompactOutcome`]), in an `Ok`.
#[derive(Debug, thiserror::Error)]
pub enum CompactError {
    /// The table format's error: the store, a file, the manifest or the commit failed.
    #[error(transparent)]
    Table(#[from] Error),

    /// A stage of the pipeline (reader, writer, a PUT) panicked or was cancelled.
    #[error("compaction stage {stage} stopped: {reason}")]
    Stage { stage: &'static str, reason: String },
}

pub type Result<T, E = CompactError> = std::result::Result<T, E>;

/// The store's, Arrow's and Parquet's errors are the format's: the same message as when the
/// format's own code meets them.
macro_rules! through_table_error {
    ($($source:ty),*) => {$(
        impl From<$source> for CompactError {
            fn from(e: $source) -> Self {
                CompactError::Table(e.into())
            }
        }
    )*};
}
through_table_error!(
    object_store::Error,
    object_store::path::Error,
    arrow::error::ArrowError,
    parquet::errors::ParquetError
);

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

/// Commits a new compactor epoch and returns the manifest holding it: from then on, a commit
/// by any holder of an older epoch is fenced.
pub async fn bump_epoch(table: &Table) -> strata_shared::Result<Manifest> {
    let txn = format!("compact-epoch-{}", uuid::Uuid::now_v7());
    let outcome = table
        .commit(&txn, Operation::BumpEpoch, |draft| {
            draft.compactor_epoch = draft.compactor_epoch.saturating_add(1);
            Ok(())
        })
        .await?;
    Ok(outcome.manifest)
}

/// Compacts the dataset of `table` (see the module docs).
///
/// `Ok` for every outcome of [`CompactOutcome`]; `Err` when the store, a file or the manifest
/// failed (also then nothing was committed unless the commit itself had an unknown outcome,
/// which the commit protocol resolves by transaction id before it gives up).
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
        )
        .into());
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
        ))
        .into());
    }
    let merged: Vec<DeltaFile> = snapshot
        .deltas
        .iter()
        .filter(|d| d.seq <= watermark)
        .cloned()
        .collect();
    // The merge drops every base row a merged delta names: right only for deltas newer than
    // the base, which every manifest promises.
    if let Some(stale) = merged
        .iter()
        .find(|d| !merge::supersedes(d.seq, snapshot.base_watermark_seq))
    {
        return Err(Error::Conflict(format!(
            "delta {} (seq {}) is not newer than the base (watermark {})",
            stale.path, stale.seq, snapshot.base_watermark_seq
        ))
        .into());
    }

    let compaction_id = layout::new_compaction_id();
    let (files, stats) =
        merge_and_write(table.store(), &snapshot, &merged, options, &compaction_id).await?;
    before_commit().await;

    // A refusal of the mutation ends the commit at once, as a conflict of the format; the
    // refusal itself, kept here, is the run's outcome.
    let mut refused = None;
    let committed = table
        .commit(&format!("compact-{run}"), Operation::Compact, |draft| {
            apply(draft, &snapshot, &merged, epoch, watermark, &files).map_err(|refusal| {
                let conflict = Error::Conflict(refusal.to_string());
                refused = Some(refusal);
                conflict
            })
        })
        .await;
    let outcome = match (committed, refused) {
        (Ok(done), _) => CompactOutcome::Committed {
            version: done.manifest.version,
        },
        (Err(_), Some(Refusal::Fenced { epoch, current })) => {
            CompactOutcome::Fenced { epoch, current }
        }
        (Err(_), Some(Refusal::Aborted(reason))) => CompactOutcome::Aborted { reason },
        (Err(e), None) => return Err(e.into()),
    };
    Ok(CompactReport {
        outcome,
        watermark,
        epoch,
        stats,
    })
}

/// Why the compaction mutation refused the newest manifest: the run's outcome, not a failure.
#[derive(Debug, thiserror::Error)]
enum Refusal {
    /// Another compactor bumped the epoch after this run did.
    #[error(
        "compaction fenced: it holds compactor epoch {epoch}, the newest manifest has {current}"
    )]
    Fenced { epoch: u64, current: u64 },
    /// A merged input vanished or the base changed under the run.
    #[error("compaction aborted: {0}")]
    Aborted(String),
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
) -> Result<(), Refusal> {
    if draft.compactor_epoch != epoch {
        return Err(Refusal::Fenced {
            epoch,
            current: draft.compactor_epoch,
        });
    }
    if draft.schema != snapshot.schema || draft.primary_key != snapshot.primary_key {
        return Err(Refusal::Aborted("the schema changed".into()));
    }
    if draft.base_files != snapshot.base_files
        || draft.base_watermark_seq != snapshot.base_watermark_seq
    {
        return Err(Refusal::Aborted("the base files changed".into()));
    }
    if let Some(gone) = merged.iter().find(|m| {
        !draft
            .deltas
            .iter()
            .any(|d| d.seq == m.seq && d.path == m.path)
    }) {
        return Err(Refusal::Aborted(format!(
            "merged delta {} (seq {}) is no longer in the manifest",
            gone.path, gone.seq
        )));
    }
    draft.deltas.retain(|d| d.seq > watermark);
    draft.base_files = files.to_vec();
    draft.base_watermark_seq = watermark;
    Ok(())
}

/// How many batches may wait between two stages of the pipeline: enough to keep both cores busy
/// across batches of uneven cost, few enough that memory stays a handful of batches.
const PIPELINE_DEPTH: usize = 2;

/// Streams the base through the merge with the delta side and writes the result, as three
/// stages that run at the same time (module docs, "Pipeline"): read and decode (a task),
/// merge (this task), encode and put (a blocking thread), joined by bounded channels.
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

    let (base_tx, base_rx) = mpsc::channel(PIPELINE_DEPTH);
    let reader = AbortOnDrop(tokio::spawn(read_base(
        store.clone(),
        snapshot.base_files.clone(),
        schema.clone(),
        options.batch_rows,
        base_tx,
    )));
    let (out_tx, out_rx) = mpsc::channel(PIPELINE_DEPTH);
    let writer = RollingWriter::new(
        store.clone(),
        &snapshot.dataset,
        compaction_id,
        schema.clone(),
        key.clone(),
        options.target_file_bytes,
    )?;
    let runtime = Handle::current();
    let write_stage = tokio::task::spawn_blocking(move || writer.run(&runtime, out_rx));

    let mut merge = Merge {
        key: &key,
        converter: &converter,
        deltas: &deltas,
        out: Emitter {
            schema: schema.clone(),
            batch_rows: options.batch_rows,
            runs: Vec::new(),
            rows: 0,
            tx: out_tx,
        },
    };
    let merged = merge.run(base_rx, reader, &mut stats).await;
    // The merge owned the only sender: the write stage has seen `Finish` or a closed channel,
    // so it ends, and every PUT it started has ended when it does.
    drop(merge);
    let written = write_stage
        .await
        .map_err(|e| write::stage_failed("write", e))?;
    let files = match (merged, written) {
        (Ok(()), WriteEnd::Files(files)) => files,
        // A send failed because the write stage stopped: its error is the cause.
        (Ok(()) | Err(Stop::WriterGone), WriteEnd::Failed(e)) => return Err(e),
        (Err(Stop::Failed(e)), _) => return Err(e),
        // Unreachable: the writer reports files only after `Finish`, which the merge sends
        // last, and stops on its own only with an error.
        (Ok(()), WriteEnd::MergeStopped) | (Err(Stop::WriterGone), _) => {
            return Err(CompactError::Stage {
                stage: "write",
                reason: "the merge and the write stage disagree on how the run ended".into(),
            });
        }
    };
    stats.files_written = files.len() as u64;
    stats.bytes_written = files.iter().map(|f| f.bytes).sum();
    Ok((files, stats))
}

/// Aborts a spawned stage when the run stops early, so no stage outlives it.
struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The read stage: every base file in manifest order (storage order, module docs), in
/// decoded batches of at most `batch_rows` rows labelled with the table schema. Parquet
/// decoding is CPU work done in this task's polls, so it runs beside the merge on the other
/// core. `Ok` also when the merge stopped receiving: then the merge's error is the one to report.
async fn read_base(
    store: Arc<dyn ObjectStore>,
    files: Vec<DataFile>,
    schema: SchemaRef,
    batch_rows: usize,
    tx: mpsc::Sender<RecordBatch>,
) -> Result<()> {
    for file in &files {
        let path = Path::parse(&file.path)?;
        // HEAD for the size: the manifest's figure is informative, the reader needs the truth.
        let size = store.head(&path).await?.size;
        let reader = ParquetObjectReader::new(store.clone(), path).with_file_size(size);
        let mut batches = ParquetRecordBatchStreamBuilder::new(reader)
            .await?
            .with_batch_size(batch_rows)
            .build()?;
        while let Some(batch) = batches.try_next().await? {
            // Also proves the file's types are the table's, which the merge relies on.
            let batch = RecordBatch::try_new(schema.clone(), batch.columns().to_vec())?;
            if tx.send(batch).await.is_err() {
                return Ok(());
            }
            // Decoding a batch is CPU work without an await point that waits; give other
            // tasks of the runtime (queryd under `strata up`) their turn.
            tokio::task::yield_now().await;
        }
    }
    Ok(())
}

/// Why the merge stopped early.
enum Stop {
    /// The merge, or the read stage feeding it, failed.
    Failed(CompactError),
    /// A send to the write stage failed: it stopped, and its result says why.
    WriterGone,
}

impl From<CompactError> for Stop {
    fn from(e: CompactError) -> Self {
        Stop::Failed(e)
    }
}

impl From<Error> for Stop {
    fn from(e: Error) -> Self {
        Stop::Failed(e.into())
    }
}

/// The merge stage: passes the base batches through in order, dropping the rows whose key a
/// merged delta names, then appends the surviving delta upserts in storage order. The output
/// is `state(S)` in storage order (module docs, "Storage order").
struct Merge<'a> {
    key: &'a [usize],
    converter: &'a RowConverter,
    deltas: &'a DeltaSide,
    out: Emitter,
}

impl Merge<'_> {
    async fn run(
        &mut self,
        mut base: mpsc::Receiver<RecordBatch>,
        reader: AbortOnDrop<Result<()>>,
        stats: &mut CompactStats,
    ) -> std::result::Result<(), Stop> {
        while let Some(batch) = base.recv().await {
            stats.rows_in += batch.num_rows() as u64;
            stats.peak_batch_rows = stats.peak_batch_rows.max(batch.num_rows());
            self.merge_batch(&batch, stats).await?;
        }
        // The channel closes when the read stage returns; only its result says whether it
        // read the whole base, so the tail below must not run before it is known.
        let mut reader = reader;
        (&mut reader.0)
            .await
            .map_err(|e| write::stage_failed("read", e))??;
        // The surviving delta rows, after every base row.
        let empty = RecordBatch::new_empty(self.out.schema.clone());
        let upserts = self.deltas.upserts.num_rows();
        self.out
            .push(UPSERTS, 0, upserts, &empty, self.deltas, stats)
            .await?;
        self.out.flush(&empty, self.deltas, stats).await?;
        self.out
            .tx
            .send(ToWriter::Finish)
            .await
            .map_err(|_| Stop::WriterGone)
    }

    /// Passes one base batch through: the rows between two dropped ones go out as one run.
    async fn merge_batch(
        &mut self,
        batch: &RecordBatch,
        stats: &mut CompactStats,
    ) -> std::result::Result<(), Stop> {
        let columns: Vec<ArrayRef> = self.key.iter().map(|&i| batch.column(i).clone()).collect();
        let rows = self
            .converter
            .convert_columns(&columns)
            .map_err(Error::from)?;
        // Invariant: base rows before `run_start` are emitted or dropped.
        let mut run_start = 0;
        for r in 0..rows.num_rows() {
            if self.deltas.names(rows.row(r)) {
                self.out
                    .push(BASE, run_start, r, batch, self.deltas, stats)
                    .await?;
                run_start = r + 1;
            }
        }
        self.out
            .push(BASE, run_start, rows.num_rows(), batch, self.deltas, stats)
            .await?;
        // Runs refer to this batch by position: write them before it is dropped.
        self.out.flush(batch, self.deltas, stats).await
    }
}

/// Index of the current base batch among the sources of a run.
const BASE: usize = 0;
/// Index of the delta upserts among the sources of a run.
const UPSERTS: usize = 1;

/// Output rows `start..end` of source `source` ([`BASE`] or [`UPSERTS`]).
#[derive(Clone, Copy, Debug)]
struct Run {
    source: usize,
    start: usize,
    end: usize,
}

/// Collects output rows as runs of the current base batch or of the delta upserts, and turns
/// them into batches of at most `batch_rows` rows for the write stage, each copied once with
/// one range copy per run.
struct Emitter {
    schema: SchemaRef,
    batch_rows: usize,
    runs: Vec<Run>,
    /// Rows in `runs`: at most `batch_rows`.
    rows: usize,
    tx: mpsc::Sender<ToWriter>,
}

impl Emitter {
    /// Appends rows `start..end` of `source`, extending the last run where they follow it,
    /// and sends a batch whenever `batch_rows` rows are collected.
    async fn push(
        &mut self,
        source: usize,
        mut start: usize,
        end: usize,
        base: &RecordBatch,
        deltas: &DeltaSide,
        stats: &mut CompactStats,
    ) -> std::result::Result<(), Stop> {
        while start < end {
            let take = (end - start).min(self.batch_rows - self.rows);
            match self.runs.last_mut() {
                Some(last) if last.source == source && last.end == start => last.end += take,
                _ => self.runs.push(Run {
                    source,
                    start,
                    end: start + take,
                }),
            }
            self.rows += take;
            start += take;
            if self.rows >= self.batch_rows {
                self.flush(base, deltas, stats).await?;
            }
        }
        Ok(())
    }

    async fn flush(
        &mut self,
        base: &RecordBatch,
        deltas: &DeltaSide,
        stats: &mut CompactStats,
    ) -> std::result::Result<(), Stop> {
        if self.runs.is_empty() {
            return Ok(());
        }
        let sources = [base, &deltas.upserts];
        let columns: Vec<ArrayRef> = match self.runs.as_slice() {
            // One run: a zero-copy slice.
            [run] => sources[run.source]
                .slice(run.start, run.end - run.start)
                .columns()
                .to_vec(),
            runs => (0..self.schema.fields().len())
                .map(|c| {
                    // Both sources hold the table's types (checked as each was built), which
                    // `MutableArrayData` requires.
                    let data = [base.column(c).to_data(), deltas.upserts.column(c).to_data()];
                    let mut out = MutableArrayData::new(vec![&data[0], &data[1]], false, self.rows);
                    for run in runs {
                        out.extend(run.source, run.start, run.end);
                    }
                    make_array(out.freeze())
                })
                .collect(),
        };
        // The table schema proves the delta rows fill the table's non-nullable columns.
        let batch = RecordBatch::try_new(self.schema.clone(), columns).map_err(Error::from)?;
        self.runs.clear();
        self.rows = 0;
        stats.rows_out += batch.num_rows() as u64;
        stats.peak_batch_rows = stats.peak_batch_rows.max(batch.num_rows());
        self.tx
            .send(ToWriter::Batch(batch))
            .await
            .map_err(|_| Stop::WriterGone)
    }
}

#[cfg(test)]
mod tests;
