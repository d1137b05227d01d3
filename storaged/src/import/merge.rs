//! The k-way merge of sorted runs: one cursor per run holds the run's current batch and its
//! keys in arrow's row format (byte-comparable in key order); a binary heap of cursors,
//! ordered by (current key, run), picks the next row. Picked rows are copied into an output
//! batch by `interleave` once the batch is full, or as soon as the batch a pick came from is
//! used up (a cursor moves to its next batch only after every row picked from its current one
//! is copied out).
//!
//! The heap is over cursor indices with the comparison done here: `BinaryHeap` would need the
//! keys owned by its entries, a copy per row.
//!
//! Equal keys are not refused here: they come out adjacent, where the sorted stream's check
//! (`sort::Unique`) names them. An intermediate merge (more runs than [`super::sort::Limits`]
//! lets one merge hold) keeps them too, so the final stream names the smallest duplicate.

use std::fs::File;
use std::io::BufReader;

use arrow::array::{ArrayRef, RecordBatch};
use arrow::datatypes::SchemaRef;
use arrow::ipc::reader::StreamReader;
use arrow::row::{RowConverter, Rows, SortField};

use super::progress::Progress;
use super::sort::{RunWriter, SpillDir, SpilledRun};
use super::{ImportError, Result};

pub struct Merge {
    cursors: Vec<Cursor>,
    /// Indices of the cursors that have rows left: a binary min-heap by [`Self::less`].
    heap: Vec<usize>,
    converter: RowConverter,
    key: Vec<usize>,
    batch_rows: usize,
}

struct Cursor {
    /// `None` once the run is read to its end.
    reader: Option<StreamReader<BufReader<File>>>,
    batch: RecordBatch,
    rows: Rows,
    /// The next row of `batch` to pick.
    pos: usize,
    /// The run's file, removed as soon as the run is read to its end.
    run: Option<SpilledRun>,
}

impl Merge {
    /// A merge of `runs`. When there are more than `fan_in`, the first `fan_in` are merged
    /// into a new run (written to `spill`) until `fan_in` are left: every row is merged about
    /// log_fan_in(runs) times, and never more than `fan_in` runs are open at once.
    pub fn runs(
        mut runs: Vec<SpilledRun>,
        schema: &SchemaRef,
        key: &[usize],
        fan_in: usize,
        batch_rows: usize,
        spill: &mut SpillDir,
        progress: &Progress,
    ) -> Result<Self> {
        let fan_in = fan_in.max(2);
        while runs.len() > fan_in {
            let group: Vec<SpilledRun> = runs.drain(..fan_in).collect();
            let rows: u64 = group.iter().map(|r| r.rows).sum();
            tracing::info!(
                runs = group.len(),
                rows,
                runs_left = runs.len(),
                "import: merging runs into a longer run"
            );
            let mut merge = Self::open(group, schema, key, batch_rows)?;
            let mut writer = RunWriter::create(spill.next_path(), schema)?;
            while let Some(batch) = merge.next_batch()? {
                progress.check_cancelled()?;
                writer.write(&batch)?;
            }
            // The group's files go here, before the next group is read.
            drop(merge);
            runs.push(writer.finish()?);
        }
        tracing::info!(runs = runs.len(), "import: merging runs");
        Self::open(runs, schema, key, batch_rows)
    }

    fn open(
        runs: Vec<SpilledRun>,
        schema: &SchemaRef,
        key: &[usize],
        batch_rows: usize,
    ) -> Result<Self> {
        let fields = key
            .iter()
            .map(|&i| SortField::new(schema.field(i).data_type().clone()))
            .collect();
        let converter = RowConverter::new(fields)?;
        let mut cursors = Vec::with_capacity(runs.len());
        for run in runs {
            if let Some(cursor) = Cursor::open(run, &converter, key)? {
                cursors.push(cursor);
            }
        }
        let mut merge = Self {
            heap: (0..cursors.len()).collect(),
            cursors,
            converter,
            key: key.to_vec(),
            batch_rows: batch_rows.max(1),
        };
        for i in (0..merge.heap.len() / 2).rev() {
            merge.sift_down(i);
        }
        Ok(merge)
    }

    /// The next rows in key order (at most `batch_rows`), `None` after the last.
    pub fn next_batch(&mut self) -> Result<Option<RecordBatch>> {
        let mut picks: Vec<(usize, usize)> = Vec::with_capacity(self.batch_rows);
        while picks.len() < self.batch_rows {
            let Some(&top) = self.heap.first() else {
                break;
            };
            let cursor = &mut self.cursors[top];
            picks.push((top, cursor.pos));
            cursor.pos += 1;
            if cursor.pos < cursor.batch.num_rows() {
                self.sift_down(0);
                continue;
            }
            // The top cursor's batch is used up: copy the picks out while every batch they
            // refer to is loaded, then move the cursor on.
            let out = self.build(&picks)?;
            if !self.cursors[top].advance(&self.converter, &self.key)? {
                self.heap.swap_remove(0);
            }
            self.sift_down(0);
            return Ok(Some(out));
        }
        if picks.is_empty() {
            return Ok(None);
        }
        self.build(&picks).map(Some)
    }

    fn build(&self, picks: &[(usize, usize)]) -> Result<RecordBatch> {
        let batches: Vec<&RecordBatch> = self.cursors.iter().map(|c| &c.batch).collect();
        super::sort::interleave(&batches, picks)
    }

    /// Cursor `a`'s current key sorts before `b`'s; equal keys by run order, so the merge is
    /// deterministic.
    fn less(&self, a: usize, b: usize) -> bool {
        let (ca, cb) = (&self.cursors[a], &self.cursors[b]);
        ca.rows
            .row(ca.pos)
            .cmp(&cb.rows.row(cb.pos))
            .then(a.cmp(&b))
            .is_lt()
    }

    fn sift_down(&mut self, mut i: usize) {
        let n = self.heap.len();
        loop {
            let left = 2 * i + 1;
            if left >= n {
                return;
            }
            let right = left + 1;
            let child = if right < n && self.less(self.heap[right], self.heap[left]) {
                right
            } else {
                left
            };
            if !self.less(self.heap[child], self.heap[i]) {
                return;
            }
            self.heap.swap(i, child);
            i = child;
        }
    }
}

impl Cursor {
    /// A cursor on the run's first batch; `None` for an empty run.
    fn open(run: SpilledRun, converter: &RowConverter, key: &[usize]) -> Result<Option<Self>> {
        let file = File::open(&run.path).map_err(|source| ImportError::Spill {
            path: run.path.clone(),
            source,
        })?;
        let reader = StreamReader::try_new(BufReader::with_capacity(1 << 16, file), None)?;
        let batch = RecordBatch::new_empty(reader.schema());
        let mut cursor = Self {
            reader: Some(reader),
            batch,
            rows: converter.empty_rows(0, 0),
            pos: 0,
            run: Some(run),
        };
        Ok(cursor.advance(converter, key)?.then_some(cursor))
    }

    /// Loads the run's next non-empty batch. At the end of the run: `false`, with the batch
    /// and the file let go.
    fn advance(&mut self, converter: &RowConverter, key: &[usize]) -> Result<bool> {
        while let Some(reader) = &mut self.reader {
            match reader.next() {
                Some(batch) => {
                    let batch = batch?;
                    if batch.num_rows() == 0 {
                        continue;
                    }
                    let columns: Vec<ArrayRef> =
                        key.iter().map(|&i| batch.column(i).clone()).collect();
                    self.rows = converter.convert_columns(&columns)?;
                    self.batch = batch;
                    self.pos = 0;
                    return Ok(true);
                }
                None => self.reader = None,
            }
        }
        self.batch = RecordBatch::new_empty(self.batch.schema());
        self.rows = converter.empty_rows(0, 0);
        self.run = None;
        Ok(false)
    }
}
