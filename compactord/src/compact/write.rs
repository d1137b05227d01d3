//! The write stage of a compaction: encodes the merged batches, in storage order, into base
//! files of about `target_file_bytes` each on a blocking thread, and puts each finished file
//! while the next one is encoded. Each file records its smallest and largest key (the rows are
//! not in key order once a compaction appended delta rows).
//!
//! Invariants:
//! - at most **two encoded files** are in memory: the one being encoded and the one being put.
//!   Before a finished file's PUT starts, the previous PUT is awaited;
//! - the files are put, and listed in the result, in storage order (part numbers ascend with it);
//! - nothing is finished unless the merge says so ([`ToWriter::Finish`]): if the merge stops
//!   (its sender is dropped without `Finish`), the open file is dropped unwritten. Files put
//!   before that stay unreferenced, for GC, as with any failed run.

use std::sync::Arc;

use arrow::array::{ArrayRef, RecordBatch};
use arrow::datatypes::SchemaRef;
use arrow::row::{OwnedRow, RowConverter, SortField};
use object_store::ObjectStore;
use parquet::arrow::ArrowWriter;
use strata_shared::layout::{self, DatasetName};
use strata_shared::manifest::DataFile;
use strata_shared::{keys, parquet_io};
use tokio::runtime::Handle;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::{CompactError, Result};

/// What the merge sends the write stage.
pub(super) enum ToWriter {
    /// The next merged rows, in storage order, at most `batch_rows` of them.
    Batch(RecordBatch),
    /// Every row was sent: close the last file and report the files.
    Finish,
}

/// How the write stage ended.
pub(super) enum WriteEnd {
    /// Every file was put; in storage order.
    Files(Vec<DataFile>),
    /// The merge went away without [`ToWriter::Finish`]: its own error is the one to report.
    MergeStopped,
    /// Encoding or a PUT failed; the merge sees its next send fail.
    Failed(CompactError),
}

/// Maps a stage's join failure (a panic, or the runtime shutting down) to an error.
pub(super) fn stage_failed(stage: &'static str, join: tokio::task::JoinError) -> CompactError {
    CompactError::Stage {
        stage,
        reason: join.to_string(),
    }
}

/// Writes batches as base files of about `target` bytes each.
pub(super) struct RollingWriter {
    store: Arc<dyn ObjectStore>,
    dataset: DatasetName,
    compaction_id: String,
    schema: SchemaRef,
    key: Vec<usize>,
    /// Encodes keys byte-comparably, for each file's key range.
    converter: RowConverter,
    target: u64,
    open: Option<OpenFile>,
    /// Part number of the next file to close.
    next_part: usize,
    /// The PUT of the last closed file, if not awaited yet.
    in_flight: Option<JoinHandle<strata_shared::Result<DataFile>>>,
    files: Vec<DataFile>,
}

struct OpenFile {
    writer: ArrowWriter<Vec<u8>>,
    rows: u64,
    /// The smallest and the largest key written so far, with their JSON form.
    key_min: Option<(OwnedRow, Vec<serde_json::Value>)>,
    key_max: Option<(OwnedRow, Vec<serde_json::Value>)>,
}

/// The most a file buffer reserves up front, whatever the target.
const MAX_RESERVE: u64 = 1 << 30;

/// Bytes to reserve for a file that is closed once it reaches `target` bytes: the target plus
/// an eighth for the row group and footer that take it past the target. Reserved up front so
/// the buffer never grows by reallocation: growing a 16 MiB buffer briefly holds the old and
/// the new one (a 1.4x peak between 1M and 10M rows in `benches/compact`), while capacity that
/// is never written is never resident.
fn file_capacity(target: u64) -> usize {
    let bytes = target.saturating_add(target / 8).min(MAX_RESERVE);
    usize::try_from(bytes).unwrap_or(usize::MAX)
}

impl RollingWriter {
    pub(super) fn new(
        store: Arc<dyn ObjectStore>,
        dataset: &DatasetName,
        compaction_id: &str,
        schema: SchemaRef,
        key: Vec<usize>,
        target: u64,
    ) -> Result<Self> {
        let converter = RowConverter::new(
            key.iter()
                .map(|&i| SortField::new(schema.field(i).data_type().clone()))
                .collect(),
        )?;
        Ok(Self {
            store,
            dataset: dataset.clone(),
            compaction_id: compaction_id.to_owned(),
            schema,
            key,
            converter,
            target,
            open: None,
            next_part: 0,
            in_flight: None,
            files: Vec::new(),
        })
    }

    /// The stage's body, on a blocking thread: encodes what arrives until [`ToWriter::Finish`].
    /// Dropping `batches`' receiver on return is what makes the merge's next send fail.
    pub(super) fn run(
        mut self,
        runtime: &Handle,
        mut batches: mpsc::Receiver<ToWriter>,
    ) -> WriteEnd {
        let end = loop {
            match batches.blocking_recv() {
                Some(ToWriter::Batch(batch)) => {
                    if let Err(e) = self.write(runtime, &batch) {
                        break WriteEnd::Failed(e);
                    }
                }
                Some(ToWriter::Finish) => match self.finish(runtime) {
                    Ok(files) => break WriteEnd::Files(files),
                    Err(e) => break WriteEnd::Failed(e),
                },
                None => break WriteEnd::MergeStopped,
            }
        };
        // No PUT outlives the stage, whatever happened: the caller may go on to use the store.
        if let Some(put) = self.in_flight.take() {
            let _ = runtime.block_on(put);
        }
        end
    }

    fn write(&mut self, runtime: &Handle, batch: &RecordBatch) -> Result<()> {
        let n = batch.num_rows();
        if n == 0 {
            return Ok(());
        }
        let open = match &mut self.open {
            Some(open) => open,
            None => self.open.insert(OpenFile {
                writer: ArrowWriter::try_new(
                    Vec::with_capacity(file_capacity(self.target)),
                    self.schema.clone(),
                    Some(parquet_io::writer_properties()),
                )?,
                rows: 0,
                key_min: None,
                key_max: None,
            }),
        };
        open.writer.write(batch)?;
        open.rows += n as u64;
        let columns: Vec<ArrayRef> = self.key.iter().map(|&i| batch.column(i).clone()).collect();
        let rows = self.converter.convert_columns(&columns)?;
        let (mut min, mut max) = (0, 0);
        for r in 1..n {
            if rows.row(r) < rows.row(min) {
                min = r;
            }
            if rows.row(r) > rows.row(max) {
                max = r;
            }
        }
        if open
            .key_min
            .as_ref()
            .is_none_or(|(k, _)| rows.row(min) < k.row())
        {
            open.key_min = Some((rows.row(min).owned(), keys::key_json(batch, &self.key, min)));
        }
        if open
            .key_max
            .as_ref()
            .is_none_or(|(k, _)| rows.row(max) > k.row())
        {
            open.key_max = Some((rows.row(max).owned(), keys::key_json(batch, &self.key, max)));
        }
        let size = open.writer.bytes_written() + open.writer.in_progress_size();
        if size as u64 >= self.target {
            self.close(runtime)?;
        }
        Ok(())
    }

    /// Finishes the open file and starts its PUT (put-if-absent: invariant 1), once the
    /// previous file's PUT has succeeded.
    fn close(&mut self, runtime: &Handle) -> Result<()> {
        let Some(open) = self.open.take() else {
            return Ok(());
        };
        let bytes = bytes::Bytes::from(open.writer.into_inner()?);
        self.await_in_flight(runtime)?;
        let path = layout::base_file_path(&self.dataset, &self.compaction_id, self.next_part);
        self.next_part += 1;
        let file = DataFile {
            path: path.to_string(),
            rows: open.rows,
            bytes: bytes.len() as u64,
            key_min: open.key_min.map(|(_, json)| json),
            key_max: open.key_max.map(|(_, json)| json),
        };
        let store = self.store.clone();
        self.in_flight = Some(runtime.spawn(async move {
            parquet_io::put_new(store.as_ref(), &path, bytes).await?;
            Ok(file)
        }));
        Ok(())
    }

    fn await_in_flight(&mut self, runtime: &Handle) -> Result<()> {
        if let Some(put) = self.in_flight.take() {
            let file = runtime
                .block_on(put)
                .map_err(|e| stage_failed("put", e))??;
            self.files.push(file);
        }
        Ok(())
    }

    fn finish(&mut self, runtime: &Handle) -> Result<Vec<DataFile>> {
        self.close(runtime)?;
        self.await_in_flight(runtime)?;
        Ok(std::mem::take(&mut self.files))
    }
}
