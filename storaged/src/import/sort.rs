//! The external sort of an import: rows arrive in batches, in source order; they are gathered
//! into a run until the run's memory reaches [`Limits::run_bytes`], then the run is sorted by
//! key and spilled to a local file (an Arrow IPC stream) in batches of about
//! [`Limits::batch_bytes`]. At the end the runs are merged ([`super::merge`]); a source that
//! fits in one run is sorted in memory and never touches the disk.
//!
//! Checks: a null key fails the push of its batch (naming its row in the whole source, the
//! first row in source order with a null key column); a duplicate key fails the sorted
//! stream where its two rows meet ([`Sorted`]): the first duplicate in key order, the same
//! one an in-memory sort names.
//!
//! Invariants:
//! - what a run holds in memory (its batches, a copy of their key columns for the sort, the
//!   sort's indices: [`SORT_BYTES_PER_ROW`]) stays below `run_bytes`, plus the batch that
//!   crossed it;
//! - every spill file lives in this import's own [`SpillDir`], removed with everything in it
//!   when the sort is dropped: on success, on failure and on cancellation alike.

use std::collections::HashSet;
use std::fs::File;
use std::io::BufWriter;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::{Array, ArrayData, ArrayRef, AsArray, RecordBatch};
use arrow::buffer::ScalarBuffer;
use arrow::compute::{SortColumn, concat, interleave_record_batch, lexsort_to_indices};
use arrow::datatypes::{DataType, SchemaRef};
use arrow::ipc::writer::StreamWriter;
use arrow::row::{RowConverter, SortField};
use strata_shared::{Error, keys};
use strata_storaged_api::catalog::ImportPhase;

use super::merge::Merge;
use super::progress::Progress;
use super::{ImportError, Result};

/// How an import divides its memory (`storaged.import_memory_bytes`).
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// A run is sorted and spilled once its batches, their key copy and the sort's indices
    /// take this many bytes: three quarters of the budget, the rest is for the batch being spilled
    /// (one interleaved batch and its IPC encoding) and for what the accounting misses.
    pub run_bytes: usize,
    /// Target size of the batches written to a run, read back by the merge and handed to the
    /// writer: the merge holds one per run it merges.
    pub batch_bytes: usize,
    /// The most runs merged at once: each holds a batch and its key rows (about two
    /// `batch_bytes`), so a merge holds at most half the budget. More runs are first merged
    /// in groups into longer runs.
    pub fan_in: usize,
}

/// What sorting a run costs per row besides its key copy: arrow's sort builds
/// (index, value) pairs of up to 24 bytes (a `u32` and a slice or a value, padded), and its
/// answer is 4 bytes of `u32` index per row, kept until the run is spilled.
const SORT_BYTES_PER_ROW: usize = 28;

/// Rows per batch are capped: beyond this a batch is no cheaper to handle.
const MAX_BATCH_ROWS: usize = 64 * 1024;
/// Runs open at once are capped too: each is an open file, and a process may have as few as
/// 1 024. (The fan-in is 64 for budgets of 16 MiB to 2 GiB; the cap binds above 8 GiB.)
const MAX_FAN_IN: usize = 256;

impl Limits {
    pub fn for_budget(budget: usize) -> Self {
        let batch_bytes = (budget / 256).clamp(64 << 10, 8 << 20);
        Self {
            run_bytes: budget / 4 * 3,
            batch_bytes,
            fan_in: (budget / 2 / (2 * batch_bytes)).clamp(2, MAX_FAN_IN),
        }
    }
}

/// The bytes `batch`'s buffers hold, each allocation counted once: the columns of a batch
/// read from one IPC message share one allocation, which arrow's own
/// `get_array_memory_size` counts once per column.
pub fn memory_size(batch: &RecordBatch) -> usize {
    fn add(data: &ArrayData, seen: &mut HashSet<usize>, total: &mut usize) {
        let nulls = data.nulls().map(|n| n.buffer());
        for buffer in data.buffers().iter().chain(nulls) {
            if seen.insert(buffer.data_ptr().as_ptr() as usize) {
                *total += buffer.capacity();
            }
        }
        for child in data.child_data() {
            add(child, seen, total);
        }
    }
    let mut seen = HashSet::new();
    let mut total = 0;
    for column in batch.columns() {
        add(&column.to_data(), &mut seen, &mut total);
    }
    total
}

/// The sort: [`push`](Self::push) every batch, then [`finish`](Self::finish).
pub struct ExternalSort {
    schema: SchemaRef,
    key: Vec<usize>,
    limits: Limits,
    spill_root: PathBuf,
    /// Created with the first spilled run.
    spill: Option<SpillDir>,
    runs: Vec<SpilledRun>,
    /// The run being gathered, unsorted, and the memory it takes (see [`Limits::run_bytes`]).
    gathered: Vec<RecordBatch>,
    gathered_bytes: usize,
    /// Rows and batch bytes pushed so far: a null key names its row in the whole source, and
    /// the average row sizes the batches of runs and of the output.
    rows_seen: usize,
    bytes_seen: usize,
    progress: Arc<Progress>,
}

impl ExternalSort {
    /// A sort of rows of `schema` by the columns `key` (not empty), spilling under
    /// `spill_root`.
    pub fn new(
        schema: SchemaRef,
        key: Vec<usize>,
        limits: Limits,
        spill_root: &Path,
        progress: Arc<Progress>,
    ) -> Self {
        Self {
            schema,
            key,
            limits,
            spill_root: spill_root.to_owned(),
            spill: None,
            runs: Vec::new(),
            gathered: Vec::new(),
            gathered_bytes: 0,
            rows_seen: 0,
            bytes_seen: 0,
            progress,
        }
    }

    /// Adds a batch (of the sort's schema); spills the run when it is full.
    pub fn push(&mut self, batch: RecordBatch) -> Result<()> {
        let rows = batch.num_rows();
        if rows == 0 {
            return Ok(());
        }
        check_non_null(&batch, &self.key, self.rows_seen)?;
        self.rows_seen += rows;
        let size = memory_size(&batch);
        self.bytes_seen += size;
        let key_copy: usize = self
            .key
            .iter()
            .map(|&i| batch.column(i).get_array_memory_size())
            .sum();
        self.gathered_bytes += size + key_copy + SORT_BYTES_PER_ROW * rows;
        self.gathered.push(batch);
        if self.gathered_bytes >= self.limits.run_bytes {
            self.spill_run()?;
        }
        Ok(())
    }

    /// Rows per batch of runs and of the output: about [`Limits::batch_bytes`] at the average
    /// row size seen.
    fn batch_rows(&self) -> usize {
        let row_bytes = self.bytes_seen.div_ceil(self.rows_seen.max(1)).max(1);
        (self.limits.batch_bytes / row_bytes).clamp(1, MAX_BATCH_ROWS)
    }

    /// Sorts the gathered run and writes it to a new spill file.
    fn spill_run(&mut self) -> Result<()> {
        let batch_rows = self.batch_rows();
        let run = MemoryRun::sort(std::mem::take(&mut self.gathered), &self.key)?;
        self.gathered_bytes = 0;
        let spill = match &mut self.spill {
            Some(spill) => spill,
            None => self.spill.insert(SpillDir::create(&self.spill_root)?),
        };
        let mut writer = RunWriter::create(spill.next_path(), &self.schema)?;
        let mut from = 0;
        while from < run.rows() {
            let chunk = run.chunk(from, batch_rows)?;
            from += chunk.num_rows();
            writer.write(&chunk)?;
        }
        drop(run);
        let spilled = writer.finish()?;
        let number = self.progress.spilled();
        tracing::info!(
            run = number,
            rows = spilled.rows,
            file_bytes = spilled.bytes,
            "import: sorted run spilled"
        );
        self.runs.push(spilled);
        Ok(())
    }

    /// Every row was pushed: the rows in key order, checked unique.
    pub fn finish(mut self) -> Result<Sorted> {
        self.progress.set_phase(ImportPhase::Sorting);
        let batch_rows = self.batch_rows();
        let unique = Unique::new(&self.schema, &self.key)?;
        if self.runs.is_empty() {
            let run = MemoryRun::sort(std::mem::take(&mut self.gathered), &self.key)?;
            tracing::info!(rows = run.rows(), "import: sorted in memory");
            return Ok(Sorted {
                rows: SortedRows::Memory { run, next: 0 },
                batch_rows,
                unique,
            });
        }
        if !self.gathered.is_empty() {
            self.spill_run()?;
        }
        let mut spill = match self.spill.take() {
            Some(spill) => spill,
            None => SpillDir::create(&self.spill_root)?,
        };
        let merge = Merge::runs(
            std::mem::take(&mut self.runs),
            &self.schema,
            &self.key,
            self.limits.fan_in,
            batch_rows,
            &mut spill,
            &self.progress,
        )?;
        Ok(Sorted {
            rows: SortedRows::Merged {
                merge,
                _spill: spill,
            },
            batch_rows,
            unique,
        })
    }
}

/// Fails with the first row (in source order) that has a null key column; `offset` is the
/// batch's first row in the whole source.
fn check_non_null(batch: &RecordBatch, key: &[usize], offset: usize) -> Result<()> {
    let first_null = key
        .iter()
        .filter_map(|&i| {
            let column = batch.column(i);
            let row = (column.null_count() > 0)
                .then(|| (0..column.len()).find(|&r| column.is_null(r)))
                .flatten()?;
            Some((row, i))
        })
        .min();
    match first_null {
        Some((row, i)) => Err(Error::NullKey {
            column: batch.schema().field(i).name().clone(),
            row: offset + row,
        }
        .into()),
        None => Ok(()),
    }
}

/// Rows of one run in memory, with their order by key.
pub struct MemoryRun {
    batches: Vec<RecordBatch>,
    /// The first row of each batch in the run, and the run's row count last.
    starts: Vec<usize>,
    /// Run rows (numbered across batches) in key order.
    order: ScalarBuffer<u32>,
}

impl MemoryRun {
    /// Sorts by the key columns: the sort sees a copy of the key columns only; the rows are
    /// moved into key order later, a batch at a time ([`Self::chunk`]), so the run is never
    /// held twice.
    pub fn sort(batches: Vec<RecordBatch>, key: &[usize]) -> Result<Self> {
        let mut starts = Vec::with_capacity(batches.len() + 1);
        let mut rows = 0;
        for batch in &batches {
            starts.push(rows);
            rows += batch.num_rows();
        }
        starts.push(rows);
        let order = if batches.is_empty() {
            ScalarBuffer::from(Vec::new())
        } else {
            let columns = key
                .iter()
                .map(|&i| {
                    let parts: Vec<&dyn Array> =
                        batches.iter().map(|b| b.column(i).as_ref()).collect();
                    Ok(SortColumn {
                        values: concat(&parts)?,
                        options: None,
                    })
                })
                .collect::<Result<Vec<_>, ImportError>>()?;
            // A run holds fewer than 2^32 rows (its memory is bounded); lexsort refuses more.
            lexsort_to_indices(&columns, None)?.values().clone()
        };
        Ok(Self {
            batches,
            starts,
            order,
        })
    }

    pub fn rows(&self) -> usize {
        self.order.len()
    }

    /// Up to `rows` rows in key order from position `from`, copied into one batch.
    pub fn chunk(&self, from: usize, rows: usize) -> Result<RecordBatch> {
        let end = (from + rows).min(self.order.len());
        let picks: Vec<(usize, usize)> = self.order[from..end]
            .iter()
            .map(|&row| {
                let row = row as usize;
                // The batch whose first row is the last start at or before `row`.
                let batch = self.starts.partition_point(|&s| s <= row) - 1;
                (batch, row - self.starts[batch])
            })
            .collect();
        let batches: Vec<&RecordBatch> = self.batches.iter().collect();
        interleave(&batches, &picks)
    }
}

/// `interleave_record_batch` with view columns (Utf8View, BinaryView) compacted: an
/// interleaved view column points into every source batch's data buffers, and a spill file
/// or an accounting of the batch would carry those whole. Without it, lineitem SF1 (1.25 GB
/// as Arrow) spilled 2.1 GB of runs.
pub(super) fn interleave(
    batches: &[&RecordBatch],
    picks: &[(usize, usize)],
) -> Result<RecordBatch> {
    let batch = interleave_record_batch(batches, picks)?;
    let view = |t: &DataType| matches!(t, DataType::Utf8View | DataType::BinaryView);
    if !batch.columns().iter().any(|c| view(c.data_type())) {
        return Ok(batch);
    }
    let columns = batch
        .columns()
        .iter()
        .map(|c| match c.data_type() {
            DataType::Utf8View => Arc::new(c.as_string_view().gc()) as ArrayRef,
            DataType::BinaryView => Arc::new(c.as_binary_view().gc()),
            _ => c.clone(),
        })
        .collect();
    Ok(RecordBatch::try_new(batch.schema(), columns)?)
}

/// The sorted rows, in batches of about [`Limits::batch_bytes`], each checked by [`Unique`].
pub struct Sorted {
    rows: SortedRows,
    batch_rows: usize,
    unique: Unique,
}

enum SortedRows {
    Memory {
        run: MemoryRun,
        next: usize,
    },
    /// Field order matters: the merge (and its open run files) is dropped before the
    /// directory is removed.
    Merged {
        merge: Merge,
        _spill: SpillDir,
    },
}

impl Sorted {
    pub fn next_batch(&mut self) -> Result<Option<RecordBatch>> {
        let batch = match &mut self.rows {
            SortedRows::Memory { run, next } => {
                if *next >= run.rows() {
                    return Ok(None);
                }
                let chunk = run.chunk(*next, self.batch_rows)?;
                *next += chunk.num_rows();
                chunk
            }
            SortedRows::Merged { merge, .. } => match merge.next_batch()? {
                Some(batch) => batch,
                None => return Ok(None),
            },
        };
        self.unique.check(&batch)?;
        Ok(Some(batch))
    }
}

/// Checks a stream of batches sorted by key: each key greater than the one before. An equal
/// key is the duplicate (named as `col=value, …`); a smaller one would be a bug of the sort,
/// refused rather than written as a base the manifest would call sorted.
pub struct Unique {
    converter: RowConverter,
    key: Vec<usize>,
    /// The encoded key of the last row checked (a reused buffer).
    last: Vec<u8>,
    seen_any: bool,
}

impl Unique {
    pub fn new(schema: &SchemaRef, key: &[usize]) -> Result<Self> {
        let fields = key
            .iter()
            .map(|&i| SortField::new(schema.field(i).data_type().clone()))
            .collect();
        Ok(Self {
            converter: RowConverter::new(fields)?,
            key: key.to_vec(),
            last: Vec::new(),
            seen_any: false,
        })
    }

    pub fn check(&mut self, batch: &RecordBatch) -> Result<()> {
        if batch.num_rows() == 0 {
            return Ok(());
        }
        let columns: Vec<ArrayRef> = self.key.iter().map(|&i| batch.column(i).clone()).collect();
        let rows = self.converter.convert_columns(&columns)?;
        for r in 0..rows.num_rows() {
            let row = rows.row(r);
            let previous: &[u8] = match r {
                0 if !self.seen_any => continue,
                0 => &self.last,
                _ => rows.row(r - 1).data(),
            };
            match previous.cmp(row.data()) {
                std::cmp::Ordering::Less => {}
                std::cmp::Ordering::Equal => {
                    return Err(Error::DuplicateKey {
                        key: keys::describe_key(batch, &self.key, r),
                    }
                    .into());
                }
                std::cmp::Ordering::Greater => {
                    return Err(ImportError::Unsorted {
                        key: keys::describe_key(batch, &self.key, r),
                    });
                }
            }
        }
        self.last.clear();
        self.last
            .extend_from_slice(rows.row(rows.num_rows() - 1).data());
        self.seen_any = true;
        Ok(())
    }
}

/// This import's directory for spilled runs, `strata-import-{uuid}` under the spill root;
/// removed with its contents when dropped.
pub struct SpillDir {
    path: PathBuf,
    next: usize,
}

impl SpillDir {
    pub fn create(root: &Path) -> Result<Self> {
        let path = root.join(format!("strata-import-{}", uuid::Uuid::now_v7()));
        std::fs::create_dir_all(&path).map_err(|source| ImportError::Spill {
            path: path.clone(),
            source,
        })?;
        Ok(Self { path, next: 0 })
    }

    /// A fresh file name in the directory.
    pub fn next_path(&mut self) -> PathBuf {
        self.next += 1;
        self.path.join(format!("run-{:05}.arrows", self.next))
    }
}

impl Drop for SpillDir {
    fn drop(&mut self) {
        match std::fs::remove_dir_all(&self.path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => tracing::warn!(dir = %self.path.display(), error = %e,
                "an import's spill directory could not be removed"),
        }
    }
}

/// A sorted run on disk; the file is removed when this is dropped (a run merged into a longer
/// one goes as soon as that merge ends).
#[derive(Debug)]
pub struct SpilledRun {
    pub path: PathBuf,
    pub rows: u64,
    pub bytes: u64,
}

impl Drop for SpilledRun {
    fn drop(&mut self) {
        // A failure leaves the file to the directory's removal.
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Writes one sorted run as an Arrow IPC stream. The stream format, not the file format: a
/// dictionary column's dictionary may change from batch to batch (interleaving merges them),
/// which the IPC file format refuses.
pub struct RunWriter {
    writer: StreamWriter<BufWriter<File>>,
    run: SpilledRun,
}

impl RunWriter {
    pub fn create(path: PathBuf, schema: &SchemaRef) -> Result<Self> {
        let io = |source| ImportError::Spill {
            path: path.clone(),
            source,
        };
        let file = File::create(&path).map_err(io)?;
        let writer = StreamWriter::try_new(BufWriter::with_capacity(1 << 16, file), schema)?;
        Ok(Self {
            writer,
            run: SpilledRun {
                path,
                rows: 0,
                bytes: 0,
            },
        })
    }

    pub fn write(&mut self, batch: &RecordBatch) -> Result<()> {
        self.writer.write(batch)?;
        self.run.rows += batch.num_rows() as u64;
        Ok(())
    }

    pub fn finish(self) -> Result<SpilledRun> {
        let Self { writer, mut run } = self;
        let io = |source| ImportError::Spill {
            path: run.path.clone(),
            source,
        };
        // No sync: a spill file is read back by this process or not at all.
        let buffered = writer.into_inner()?;
        buffered.into_inner().map_err(|e| io(e.into_error()))?;
        run.bytes = std::fs::metadata(&run.path).map_err(io)?.len();
        Ok(run)
    }
}
