//! The base files of an import: rows arrive in key order (or in source order for a table
//! without a key) and are encoded into parts of about [`TARGET_PART_BYTES`] each; a part is
//! put (put-if-absent, invariant 1) as soon as it is full, before the next is started.
//!
//! Memory: one part's encoded bytes (its buffer is reserved up front, so growing it never
//! holds two copies) and the encoder's open row group; never more than one part.

use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use object_store::ObjectStore;
use parquet::arrow::ArrowWriter;
use strata_shared::layout::{self, DatasetName};
use strata_shared::manifest::DataFile;
use strata_shared::{keys, parquet_io};
use tokio::runtime::Handle;

use super::Result;
use super::progress::Progress;
use super::sort::memory_size;

/// A part is closed once the Arrow memory of its rows, or its encoded size, reaches this:
/// parts small enough for queryd to load several in parallel.
pub const TARGET_PART_BYTES: usize = 128 * 1024 * 1024;

pub struct BaseWriter {
    store: Arc<dyn ObjectStore>,
    dataset: DatasetName,
    compaction_id: String,
    /// The table schema (key columns non-nullable): every batch is checked against it.
    schema: SchemaRef,
    key: Vec<usize>,
    /// See [`TARGET_PART_BYTES`].
    target: usize,
    runtime: Handle,
    open: Option<Part>,
    files: Vec<DataFile>,
    progress: Arc<Progress>,
}

struct Part {
    writer: ArrowWriter<Vec<u8>>,
    rows: u64,
    arrow_bytes: usize,
    key_min: Option<Vec<serde_json::Value>>,
    key_max: Option<Vec<serde_json::Value>>,
}

impl BaseWriter {
    pub fn new(
        store: Arc<dyn ObjectStore>,
        dataset: &DatasetName,
        schema: SchemaRef,
        key: Vec<usize>,
        target: usize,
        runtime: Handle,
        progress: Arc<Progress>,
    ) -> Self {
        Self {
            store,
            dataset: dataset.clone(),
            compaction_id: layout::new_compaction_id(),
            schema,
            key,
            target: target.max(1),
            runtime,
            open: None,
            files: Vec::new(),
            progress,
        }
    }

    /// Appends rows that follow every row written so far in key order.
    pub fn write(&mut self, batch: RecordBatch) -> Result<()> {
        let rows = batch.num_rows();
        if rows == 0 {
            return Ok(());
        }
        // The table schema: same fields, key columns declared non-nullable (the rows were
        // checked non-null; try_new checks again).
        let batch = RecordBatch::try_new(self.schema.clone(), batch.columns().to_vec())?;
        let has_key = !self.key.is_empty();
        let part = match &mut self.open {
            Some(part) => part,
            None => self.open.insert(Part {
                writer: ArrowWriter::try_new(
                    Vec::with_capacity(self.target.saturating_add(self.target / 8)),
                    self.schema.clone(),
                    Some(parquet_io::writer_properties()),
                )?,
                rows: 0,
                arrow_bytes: 0,
                key_min: has_key.then(|| keys::key_json(&batch, &self.key, 0)),
                key_max: None,
            }),
        };
        part.writer.write(&batch)?;
        part.rows += rows as u64;
        part.arrow_bytes += memory_size(&batch);
        if has_key {
            part.key_max = Some(keys::key_json(&batch, &self.key, rows - 1));
        }
        self.progress.written(rows);
        let encoded = part.writer.bytes_written() + part.writer.in_progress_size();
        if part.arrow_bytes >= self.target || encoded >= self.target {
            self.close()?;
        }
        Ok(())
    }

    /// Finishes the open part and puts it; returns when the store has it.
    fn close(&mut self) -> Result<()> {
        let Some(part) = self.open.take() else {
            return Ok(());
        };
        let bytes = bytes::Bytes::from(part.writer.into_inner()?);
        let path = layout::base_file_path(&self.dataset, &self.compaction_id, self.files.len());
        let size = bytes.len() as u64;
        self.runtime
            .block_on(parquet_io::put_new(self.store.as_ref(), &path, bytes))?;
        tracing::info!(
            part = self.files.len(),
            rows = part.rows,
            bytes = size,
            "import: base part written"
        );
        self.files.push(DataFile {
            path: path.to_string(),
            rows: part.rows,
            bytes: size,
            key_min: part.key_min,
            key_max: part.key_max,
        });
        Ok(())
    }

    /// Closes the last part; the parts in key order.
    pub fn finish(mut self) -> Result<Vec<DataFile>> {
        self.close()?;
        Ok(self.files)
    }
}
