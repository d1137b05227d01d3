//! Creating a dataset's base files: read the rows (a source's files or an upload's spool
//! file, one bounded batch at a time: [`source`]), prove keys non-null and unique (naming the first
//! offending key), sort them by primary key within a fixed memory budget and write them as
//! sorted base files under a fresh compaction id.
//!
//! The budget is `storaged.import_memory_bytes` ([`sort::Limits`] divides it). Rows are
//! gathered into a run until the run fills three quarters of it; a full run is sorted and
//! spilled to a local file ([`sort`]), and the runs are merged by key at the end ([`merge`]);
//! a source that fits in one run is sorted in memory and never spilled. The sorted rows
//! stream into the base writer ([`write`]), which puts each part as soon as it is full.
//!
//! What the budget bounds: the run being gathered and sorted, or the merge's batches. What
//! comes on top: the reader's working set (a Parquet row group's encoded bytes and one
//! decoded batch; a CSV/NDJSON read buffer and one batch of at most 16 MiB of text; one
//! Arrow IPC message, at most the budget) and the writer's open part (up to
//! [`write::TARGET_PART_BYTES`] encoded). An upload is spooled to a file in the spill
//! directory first ([`upload`]) and read as a source, so its size costs disk, not memory.
//! One import runs at a time ([`progress::Imports`]), so the
//! budget is storaged's, not each request's.
//!
//! Work runs on one blocking thread (decoding, sorting and encoding are CPU work); the reads
//! of a source and the puts of parts are `block_on`s there. Its request going away cancels it
//! between batches.

mod delta;
mod files;
mod hive;
mod merge;
mod progress;
mod sort;
mod source;
#[cfg(test)]
mod tests;
mod text;
pub mod upload;
mod write;

/// Why a source's data cannot be read, for the client: the source wraps it with its own
/// name (`Source::unreadable`). Messages never carry server paths (those are logged).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Unreadable(pub String);

impl From<String> for Unreadable {
    fn from(why: String) -> Self {
        Self(why)
    }
}

/// The client's message of an error met while reading (an `InvalidInput`'s own words).
impl From<strata_shared::Error> for Unreadable {
    fn from(e: strata_shared::Error) -> Self {
        match e {
            strata_shared::Error::InvalidInput(why) => Self(why),
            other => Self(other.to_string()),
        }
    }
}

impl From<&str> for Unreadable {
    fn from(why: &str) -> Self {
        Self(why.to_owned())
    }
}

use std::path::PathBuf;
use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::{Field, Schema, SchemaRef};
use object_store::ObjectStore;
use strata_daemon::ApiError;
use strata_daemon::config::Config;
use strata_shared::layout::DatasetName;
use strata_shared::manifest::DataFile;
use strata_shared::{Error, keys};
use strata_storaged_api::catalog::ImportPhase;
use tokio::runtime::Handle;

pub use progress::{Imports, Ticket, Turn};
pub use source::{Opened, Source};

use progress::Progress;
use sort::{ExternalSort, Limits};
use write::BaseWriter;

/// Why an import failed.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// The table format's: a bad key (null, duplicate, unknown), an unreadable source, the
    /// store.
    #[error(transparent)]
    Table(#[from] Error),
    /// Spilling to local disk failed (disk full, spill directory not writable).
    #[error("import spill file {path}: {source}")]
    Spill {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The sorted stream went out of key order: a bug, refused rather than written.
    #[error("the import's sort produced rows out of key order at {key}")]
    Unsorted { key: String },
    /// The import's thread panicked or the runtime shut down under it.
    #[error("the import stopped: {0}")]
    Stopped(String),
}

pub type Result<T, E = ImportError> = std::result::Result<T, E>;

/// Arrow's and Parquet's errors are the format's, as when the format's own code meets them.
impl From<arrow::error::ArrowError> for ImportError {
    fn from(e: arrow::error::ArrowError) -> Self {
        ImportError::Table(e.into())
    }
}

impl From<parquet::errors::ParquetError> for ImportError {
    fn from(e: parquet::errors::ParquetError) -> Self {
        ImportError::Table(e.into())
    }
}

impl From<ImportError> for ApiError {
    fn from(e: ImportError) -> Self {
        match e {
            ImportError::Table(e) => ApiError::from(e),
            // A server path and a server's disk: logged, not answered.
            other => {
                tracing::error!(error = %other, "import failed");
                ApiError::internal("the import failed on storaged (its log has the reason)")
            }
        }
    }
}

/// An import's memory and where it spills, from the config.
#[derive(Clone, Debug)]
pub struct Settings {
    pub memory: usize,
    pub spill_dir: PathBuf,
    /// Where the writer closes a part ([`write::TARGET_PART_BYTES`]; smaller in tests).
    pub part_bytes: usize,
}

impl Settings {
    pub fn from_config(config: &Config) -> Self {
        let spill_dir = match &config.storaged.spill_dir {
            Some(dir) => config.resolve_path(&dir.to_string_lossy()),
            None => std::env::temp_dir(),
        };
        Self {
            memory: config.storaged.import_memory_bytes,
            spill_dir,
            part_bytes: write::TARGET_PART_BYTES,
        }
    }
}

/// The rows of a new dataset.
pub enum Rows {
    /// A source's files (or an upload's spool file), read on the import's thread.
    Source(Box<Opened>),
    /// Batches already in memory, all of one schema; each is let go once the sort has taken
    /// it.
    #[cfg(test)]
    Batches(SchemaRef, Vec<RecordBatch>),
}

impl Rows {
    pub fn schema(&self) -> &SchemaRef {
        match self {
            Rows::Source(opened) => opened.schema(),
            #[cfg(test)]
            Rows::Batches(schema, _) => schema,
        }
    }
}

/// The rows as the import's thread reads them.
enum Input {
    Source(Box<source::SourceRows>),
    #[cfg(test)]
    Batches(std::vec::IntoIter<RecordBatch>),
}

impl Input {
    fn next_batch(&mut self) -> Result<Option<RecordBatch>> {
        match self {
            Input::Source(rows) => Ok(rows.next_batch()?),
            #[cfg(test)]
            Input::Batches(batches) => Ok(batches.next()),
        }
    }
}

/// Sorts and checks the rows, then writes them as base files of a new dataset `name`, within
/// `settings.memory`. `turn` is the right to run ([`Ticket::turn`]), held until the import's
/// thread ends. Returns the table schema (key columns non-nullable) and the files written, in
/// key order.
pub async fn write_base(
    store: &Arc<dyn ObjectStore>,
    name: &DatasetName,
    rows: Rows,
    primary_key: &[String],
    settings: &Settings,
    ticket: &Ticket,
    turn: Turn,
) -> Result<(Schema, Vec<DataFile>)> {
    let schema = rows.schema().clone();
    let key = keys::key_indices(&schema, primary_key)?;
    let table_schema = table_schema(&schema, &key);
    let runtime = Handle::current();
    let input = match rows {
        Rows::Source(opened) => {
            tracing::info!(dataset = %name, source = opened.display(), files = opened.files(),
                memory = settings.memory, "import: reading the source");
            Input::Source(Box::new(opened.rows(runtime.clone())))
        }
        #[cfg(test)]
        Rows::Batches(_, batches) => {
            tracing::info!(dataset = %name, batches = batches.len(), memory = settings.memory,
                "import: reading batches");
            Input::Batches(batches.into_iter())
        }
    };
    let job = Job {
        store: store.clone(),
        name: name.clone(),
        schema,
        table_schema: table_schema.clone(),
        key,
        limits: Limits::for_budget(settings.memory),
        spill_dir: settings.spill_dir.clone(),
        part_bytes: settings.part_bytes,
        progress: ticket.progress().clone(),
        runtime,
    };
    let files = tokio::task::spawn_blocking(move || {
        let _turn = turn;
        // Every step's log line names the dataset.
        let _span = tracing::info_span!("import", dataset = %job.name).entered();
        let result = job.run(input);
        if let Err(e) = &result {
            tracing::info!(error = %e, "import: failed");
        }
        result
    })
    .await
    .map_err(|e| ImportError::Stopped(e.to_string()))??;
    Ok((table_schema.as_ref().clone(), files))
}

/// The schema with the key columns non-nullable (the checks prove the data agrees), without
/// the source's schema metadata.
fn table_schema(schema: &SchemaRef, key: &[usize]) -> SchemaRef {
    let fields: Vec<Field> = schema
        .fields()
        .iter()
        .enumerate()
        .map(|(i, f)| {
            let field = f.as_ref().clone();
            if key.contains(&i) {
                field.with_nullable(false)
            } else {
                field
            }
        })
        .collect();
    Arc::new(Schema::new(fields))
}

/// Everything the import's thread needs.
struct Job {
    store: Arc<dyn ObjectStore>,
    name: DatasetName,
    schema: SchemaRef,
    table_schema: SchemaRef,
    key: Vec<usize>,
    limits: Limits,
    spill_dir: PathBuf,
    part_bytes: usize,
    progress: Arc<Progress>,
    runtime: Handle,
}

impl Job {
    /// On the blocking thread: read, sort, write.
    fn run(self, mut input: Input) -> Result<Vec<DataFile>> {
        let progress = self.progress.clone();
        let mut writer = BaseWriter::new(
            self.store.clone(),
            &self.name,
            self.table_schema.clone(),
            self.key.clone(),
            self.part_bytes,
            self.runtime.clone(),
            progress.clone(),
        );
        if self.key.is_empty() {
            // No key: nothing to sort or check; the rows go to the base in source order.
            progress.set_phase(ImportPhase::Writing);
            while let Some(batch) = input.next_batch()? {
                progress.check_cancelled()?;
                progress.read(batch.num_rows());
                writer.write(batch)?;
            }
            return writer.finish();
        }
        let mut sort = ExternalSort::new(
            self.schema.clone(),
            self.key.clone(),
            self.limits,
            &self.spill_dir,
            progress.clone(),
        );
        while let Some(batch) = input.next_batch()? {
            progress.check_cancelled()?;
            let rows = batch.num_rows();
            sort.push(batch)?;
            progress.read(rows);
        }
        // The reader's buffers go before the merge takes its share.
        drop(input);
        let mut sorted = sort.finish()?;
        progress.set_phase(ImportPhase::Writing);
        while let Some(batch) = sorted.next_batch()? {
            progress.check_cancelled()?;
            writer.write(batch)?;
        }
        writer.finish()
    }
}
