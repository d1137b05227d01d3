//! One file of a source, read batch by batch on the import's blocking thread: Parquet a row
//! group at a time, CSV and NDJSON in bounded batches ([`super::text`]), Arrow IPC streams a
//! message at a time through the framing checks of [`crate::untrusted`].

use std::io::Read;
use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use bytes::{Buf, Bytes};
use futures::StreamExt;
use futures::stream::BoxStream;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};
use parquet::arrow::arrow_reader::ParquetRecordBatchReader;
use strata_shared::parquet_io::RowGroups;
use tokio::runtime::Handle;

use super::Unreadable;
use super::text::{TextFormat, TextRows};
use crate::untrusted;

/// Rows per batch decoded from a Parquet file: small enough that a batch is a sliver of the
/// import's memory, large enough to keep per-batch costs low.
pub const READ_BATCH_ROWS: usize = 8 * 1024;

/// What a file of a source holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileFormat {
    Parquet,
    Text(TextFormat),
    /// An Arrow IPC stream.
    Arrow,
}

impl FileFormat {
    pub fn name(self) -> &'static str {
        match self {
            FileFormat::Parquet => "Parquet",
            FileFormat::Text(t) => t.name(),
            FileFormat::Arrow => "Arrow IPC stream",
        }
    }

    /// The format a file name says, if it says one.
    pub fn of_name(name: &str) -> Option<Self> {
        let lower = name.to_ascii_lowercase();
        let ext = lower.rsplit_once('.').map(|(_, e)| e)?;
        Some(match ext {
            "parquet" | "parq" => FileFormat::Parquet,
            "csv" => FileFormat::Text(TextFormat::Csv),
            "ndjson" | "jsonl" | "json" => FileFormat::Text(TextFormat::Ndjson),
            "arrows" => FileFormat::Arrow,
            _ => return None,
        })
    }
}

/// The bytes of an object as a [`Read`], for decoders that run on a blocking thread: each
/// chunk of the store's stream is awaited with `block_on`.
pub struct ObjectReader {
    stream: BoxStream<'static, object_store::Result<Bytes>>,
    chunk: Bytes,
    runtime: Handle,
}

impl ObjectReader {
    /// Starts reading `path`; called on the blocking thread. Returns the reader and the
    /// object's size.
    pub fn open(
        store: &Arc<dyn ObjectStore>,
        path: &Path,
        runtime: &Handle,
    ) -> object_store::Result<(Self, u64)> {
        let got = runtime.block_on(store.get(path))?;
        let size = got.meta.size;
        Ok((
            Self {
                stream: got.into_stream(),
                chunk: Bytes::new(),
                runtime: runtime.clone(),
            },
            size,
        ))
    }
}

impl Read for ObjectReader {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        while self.chunk.is_empty() {
            match self.runtime.block_on(self.stream.next()) {
                Some(Ok(chunk)) => self.chunk = chunk,
                Some(Err(e)) => {
                    // The store's error names server paths and endpoints: logged only.
                    tracing::warn!(error = %e, "reading a source object failed");
                    return Err(std::io::Error::other(
                        "the store failed to read it (storaged's log has the reason)",
                    ));
                }
                None => return Ok(0),
            }
        }
        let n = out.len().min(self.chunk.len());
        out[..n].copy_from_slice(&self.chunk[..n]);
        self.chunk.advance(n);
        Ok(n)
    }
}

/// An open file of a source.
pub enum FileRows {
    Parquet {
        groups: Box<RowGroups>,
        decoder: Option<Box<ParquetRecordBatchReader>>,
    },
    Text(Box<TextRows>),
    Arrow(Box<arrow::ipc::reader::StreamReader<untrusted::CheckedIpc<ObjectReader>>>),
}

impl FileRows {
    /// Opens `path` as `format` (for text, decoded with `schema`); on the blocking thread.
    /// The error is why, for the caller to name the file.
    pub fn open(
        store: &Arc<dyn ObjectStore>,
        path: &Path,
        format: FileFormat,
        schema: &SchemaRef,
        runtime: &Handle,
        message_cap: usize,
    ) -> Result<Self, Unreadable> {
        match format {
            FileFormat::Parquet => {
                let groups = runtime
                    .block_on(RowGroups::open(store.clone(), path, READ_BATCH_ROWS))
                    .map_err(|e| Unreadable(e.to_string()))?;
                Ok(FileRows::Parquet {
                    groups: Box::new(groups),
                    decoder: None,
                })
            }
            FileFormat::Text(text) => {
                let (reader, _) = ObjectReader::open(store, path, runtime)
                    .map_err(|e| Unreadable(e.to_string()))?;
                let rows = TextRows::new(text, schema.clone(), Box::new(reader))
                    .map_err(|e| Unreadable(e.to_string()))?;
                Ok(FileRows::Text(Box::new(rows)))
            }
            FileFormat::Arrow => {
                let (reader, size) = ObjectReader::open(store, path, runtime)
                    .map_err(|e| Unreadable(e.to_string()))?;
                let checked = untrusted::CheckedIpc::new(reader, size, message_cap);
                let stream = untrusted::contain("Arrow IPC stream", || {
                    arrow::ipc::reader::StreamReader::try_new(checked, None)
                        .map_err(|e| invalid(Unreadable(e.to_string())))
                })
                .map_err(|e| match e {
                    strata_shared::Error::InvalidInput(why) => why,
                    other => other.to_string(),
                })?;
                Ok(FileRows::Arrow(Box::new(stream)))
            }
        }
    }

    /// The schema the file's batches come in (Parquet's footer, the stream's schema message;
    /// text: the schema it is decoded with).
    pub fn schema(&self, text_schema: &SchemaRef) -> SchemaRef {
        match self {
            FileRows::Parquet { groups, .. } => groups.schema().clone(),
            FileRows::Text(_) => text_schema.clone(),
            FileRows::Arrow(stream) => stream.schema(),
        }
    }

    /// The next batch, `None` after the last; decoding runs under [`untrusted::contain`]: a
    /// panic of a decoder on a corrupt file is an error, not a dead import.
    pub fn next_batch(&mut self, runtime: &Handle) -> Result<Option<RecordBatch>, Unreadable> {
        untrusted::contain("file", || self.next_inner(runtime).map_err(invalid))
            .map_err(Unreadable::from)
    }

    fn next_inner(&mut self, runtime: &Handle) -> Result<Option<RecordBatch>, Unreadable> {
        match self {
            FileRows::Parquet { groups, decoder } => loop {
                if let Some(reader) = decoder {
                    match reader.next() {
                        Some(batch) => {
                            return batch.map(Some).map_err(|e| Unreadable(e.to_string()));
                        }
                        None => *decoder = None,
                    }
                    continue;
                }
                match runtime.block_on(groups.next()) {
                    Ok(Some(next)) => *decoder = Some(Box::new(next)),
                    Ok(None) => return Ok(None),
                    Err(e) => return Err(Unreadable(e.to_string())),
                }
            },
            FileRows::Text(rows) => rows.next_batch(),
            FileRows::Arrow(stream) => stream
                .next()
                .transpose()
                .map_err(|e| Unreadable(e.to_string())),
        }
    }
}

fn invalid(reason: Unreadable) -> strata_shared::Error {
    strata_shared::Error::InvalidInput(reason.0)
}
