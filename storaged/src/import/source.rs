//! A source of an import: a file, directory or glob, local or S3, resolved to files and read
//! one bounded batch at a time; or an upload's spool file, read the same way.
//!
//! The format ([`SourceFormat`]) is the request's, or told by the source: a directory holding
//! `_delta_log/` is a Delta table ([`super::delta`]); otherwise each file's extension
//! ([`FileFormat::of_name`]), a file with none being Parquet. A directory is listed for the
//! files of its format, skipping paths with a segment starting with `_` or `.` (Spark's and
//! Delta's bookkeeping, `_SUCCESS`, hidden files). `k=v` directories below the source's root
//! become columns ([`super::hive`]).

use std::sync::Arc;

use arrow::array::{ArrayRef, RecordBatch, StringArray, new_null_array};
use arrow::datatypes::{DataType, Field, Fields, Schema, SchemaRef};
use futures::TryStreamExt;
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};
use strata_daemon::config::{Config, SourceFormat};
use strata_shared::{Error, Result};
use strata_storaged_api::catalog::SourceColumn;
use tokio::runtime::Handle;

use super::files::{FileFormat, FileRows};
use super::text::{self, TextFormat};
use super::{Unreadable, delta, hive};
use crate::store;

/// Where a source's files live.
pub struct Source {
    store: Arc<dyn ObjectStore>,
    /// Literal leading part of the source path.
    prefix: Path,
    /// Glob over the remainder, if the source had one.
    pattern: Option<glob::Pattern>,
    display: String,
    /// How errors name it: `source "…"`, or `the upload`.
    label: String,
    /// What the source resolved to (a local path against `storaged.source_root`), for the
    /// errors: they say what was tried.
    looked_in: String,
    /// A file on storaged's machine (not `s3://`): whatever fails reading it is the source's
    /// problem, not a passing fault of a store.
    local: bool,
    format: SourceFormat,
    /// The columns of a CSV or NDJSON source, given by the request.
    columns: Option<Vec<SourceColumn>>,
    /// An upload's spool file: its name means nothing to the client.
    upload: bool,
}

impl Source {
    pub fn parse(
        source: &str,
        format: SourceFormat,
        columns: Option<Vec<SourceColumn>>,
        config: &Config,
    ) -> Result<Self> {
        let invalid = |reason: String| Error::InvalidInput(format!("source {source:?}: {reason}"));
        let (store, path): (Arc<dyn ObjectStore>, String) = if source.starts_with("s3://") {
            let rest = source.trim_start_matches("s3://");
            let (bucket, key) = rest.split_once('/').unwrap_or((rest, ""));
            let store = store::s3_store(bucket, &config.store.s3, source)
                .map_err(|e| invalid(e.to_string()))?;
            (store, key.to_owned())
        } else {
            let local = normalize(&config.resolve_source(source.trim_start_matches("file://")))
                .map_err(|e| invalid(e.to_string()))?;
            let text = local.to_string_lossy().into_owned();
            (Arc::new(LocalFileSystem::new()), text)
        };
        let local = !source.starts_with("s3://");
        let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
        if local && segments.is_empty() {
            return Err(invalid("it names the whole file system".into()));
        }
        let first_glob = segments
            .iter()
            .position(|s| s.contains(['*', '?', '[']))
            .unwrap_or(segments.len());
        let prefix = Path::from_iter(segments[..first_glob].iter().copied());
        let pattern = if first_glob < segments.len() {
            let glob_text = segments[first_glob..].join("/");
            Some(glob::Pattern::new(&glob_text).map_err(|e| invalid(e.to_string()))?)
        } else {
            None
        };
        let looked_in = if local {
            format!("/{path}", path = path.trim_start_matches('/'))
        } else {
            source.to_owned()
        };
        if columns.is_some()
            && !matches!(
                format,
                SourceFormat::Auto | SourceFormat::Csv | SourceFormat::Ndjson
            )
        {
            return Err(invalid(
                "schema is for CSV and NDJSON sources; the other formats carry their own".into(),
            ));
        }
        Ok(Self {
            store,
            prefix,
            pattern,
            display: source.to_owned(),
            label: format!("source {source:?}"),
            looked_in,
            local,
            format,
            columns,
            upload: false,
        })
    }

    /// An upload spooled to `path`, of `format`.
    pub fn spooled(path: &std::path::Path, format: SourceFormat) -> Self {
        let text = path.to_string_lossy().into_owned();
        Self {
            store: Arc::new(LocalFileSystem::new()),
            prefix: Path::from_iter(text.split('/').filter(|s| !s.is_empty())),
            pattern: None,
            display: "the upload".into(),
            label: "the upload".into(),
            looked_in: text,
            local: true,
            format,
            columns: None,
            upload: true,
        }
    }

    /// The files of a source that is not a Delta table, sorted by path, with their format.
    async fn listing(&self) -> Result<Vec<(Path, FileFormat)>> {
        let explicit = match self.format {
            SourceFormat::Parquet => Some(FileFormat::Parquet),
            SourceFormat::Csv => Some(FileFormat::Text(TextFormat::Csv)),
            SourceFormat::Ndjson => Some(FileFormat::Text(TextFormat::Ndjson)),
            SourceFormat::Arrow => Some(FileFormat::Arrow),
            SourceFormat::Auto | SourceFormat::Delta => None,
        };
        let by_name = |name: &str, matched: bool| match (explicit, FileFormat::of_name(name)) {
            (Some(format), _) if matched => Some(format),
            (Some(format), Some(named)) => (named == format).then_some(format),
            (Some(_), None) => None,
            (None, Some(named)) => Some(named),
            // Named by a glob or as the file itself, without an extension: Parquet, as
            // sources always were.
            (None, None) => matched.then_some(FileFormat::Parquet),
        };
        let mut files = Vec::new();
        if self.pattern.is_none() {
            match self.store.head(&self.prefix).await {
                Ok(meta) => {
                    let name = meta.location.filename().unwrap_or_default().to_owned();
                    if let Some(format) = by_name(&name, true) {
                        files.push((meta.location, format));
                    }
                }
                Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(self.refused(e)),
            }
        }
        if files.is_empty() {
            let listed: Vec<_> = self
                .store
                .list(Some(&self.prefix))
                .try_collect()
                .await
                .map_err(|e| self.refused(e))?;
            let options = glob::MatchOptions {
                require_literal_separator: true,
                ..Default::default()
            };
            let prefix_parts = self.prefix.parts().count();
            for meta in listed {
                let rest: Vec<String> = meta
                    .location
                    .parts()
                    .skip(prefix_parts)
                    .map(|p| p.as_ref().to_owned())
                    .collect();
                if rest.iter().any(|p| p.starts_with(['_', '.'])) {
                    continue;
                }
                let matched = match &self.pattern {
                    Some(pattern) => {
                        if !pattern.matches_with(&rest.join("/"), options) {
                            continue;
                        }
                        true
                    }
                    None => false,
                };
                let name = meta.location.filename().unwrap_or_default().to_owned();
                if let Some(format) = by_name(&name, matched) {
                    files.push((meta.location, format));
                }
            }
        }
        files.sort_by(|a, b| a.0.cmp(&b.0));
        let Some((_, first)) = files.first() else {
            let what = match explicit {
                Some(format) => format!("{} files", format.name()),
                None => "Parquet files (nor CSV, NDJSON or Arrow IPC stream files)".into(),
            };
            return Err(Error::InvalidInput(format!(
                "{} matched no {what} (looked for {})",
                self.label, self.looked_in
            )));
        };
        if let Some((other, format)) = files.iter().find(|(_, f)| f != first) {
            return Err(Error::InvalidInput(format!(
                "{} mixes {} and {} files ({}): give its format",
                self.label,
                first.name(),
                format.name(),
                other.filename().unwrap_or_default()
            )));
        }
        Ok(files)
    }

    /// A store's refusal to let this source be read is the request's problem (400 naming the
    /// source, without the store's endpoint, which is logged); so is any failure to read a
    /// local source (a directory it cannot enter, a file it cannot open: the answer names the
    /// source, the log has the server path). Other failures of a remote source stay the
    /// store's (a 5xx: retry).
    fn refused(&self, e: object_store::Error) -> Error {
        if self.local && !matches!(e, object_store::Error::NotFound { .. }) {
            tracing::warn!(source = %self.display, error = %e, "source unreadable");
            return Error::InvalidInput(format!(
                "{} cannot be read (storaged's log has the reason)",
                self.label
            ));
        }
        match e {
            object_store::Error::PermissionDenied { .. }
            | object_store::Error::Unauthenticated { .. } => {
                tracing::warn!(source = %self.display, error = %e, "source refused");
                Error::InvalidInput(format!(
                    "{}: the store refused access (are credentials configured for it?)",
                    self.label
                ))
            }
            other => other.into(),
        }
    }

    /// Lists the source's files (or replays its Delta log) and opens the first file (its
    /// schema is the one every file must have); rows are read later, a batch at a time
    /// ([`SourceRows`]). `message_cap` bounds one Arrow IPC message.
    pub async fn open(self, message_cap: usize) -> Result<Opened> {
        let delta = match self.format {
            SourceFormat::Delta => true,
            // A file is not a table; a directory is when it holds a log.
            SourceFormat::Auto if self.pattern.is_none() && !self.upload => {
                match self.store.head(&self.prefix).await {
                    Ok(_) => false,
                    // Whatever stops the look at the log stops the listing too, which
                    // answers it as it always did.
                    Err(object_store::Error::NotFound { .. }) => {
                        delta::is_table(self.store.as_ref(), &self.prefix)
                            .await
                            .unwrap_or(false)
                    }
                    Err(_) => false,
                }
            }
            _ => false,
        };
        if delta {
            return self.open_delta(message_cap).await;
        }
        let listed = self.listing().await?;
        let format = listed[0].1;
        let prefix_parts = self.prefix.parts().count();
        let dirs: Vec<Vec<String>> = listed
            .iter()
            .map(|(path, _)| {
                let parts: Vec<String> = path.parts().map(|p| p.as_ref().to_owned()).collect();
                let end = parts.len().saturating_sub(1);
                parts[prefix_parts.min(end)..end].to_vec()
            })
            .collect();
        let partitions = hive::detect(&dirs)
            .map_err(|why| Error::InvalidInput(format!("{}: {why}", self.label)))?;
        let (partition_fields, values) = match partitions {
            Some(p) => (p.fields, p.values),
            None => (Vec::new(), vec![Vec::new(); listed.len()]),
        };
        let text_schema = match format {
            FileFormat::Text(text) => Some(self.text_schema(text, &listed[0].0).await?),
            _ => None,
        };
        let files: Vec<SourceFile> = listed
            .into_iter()
            .zip(values)
            .map(|((path, format), values)| SourceFile {
                path,
                format,
                values,
            })
            .collect();
        let text_schema = text_schema.unwrap_or_else(|| Arc::new(Schema::empty()));
        let (first, file_schema) = self
            .open_first(&files[0], &text_schema, message_cap)
            .await?;
        let mut fields: Vec<Field> = file_schema
            .fields()
            .iter()
            .map(|f| f.as_ref().clone())
            .collect();
        let mut columns: Vec<Col> = (0..fields.len()).map(Col::File).collect();
        for (k, field) in partition_fields.into_iter().enumerate() {
            if file_schema.field_with_name(field.name()).is_ok() {
                return Err(Error::InvalidInput(format!(
                    "{}: partition column {:?} is also a column of its files",
                    self.label,
                    field.name()
                )));
            }
            fields.push(field);
            columns.push(Col::Partition(k));
        }
        let layout = Layout {
            schema: Arc::new(Schema::new(fields)),
            file_fields: file_schema.fields().clone(),
            columns,
            by_name: false,
            text_schema,
            message_cap,
        };
        Ok(Opened {
            source: self,
            files,
            layout,
            first: Some(first),
        })
    }

    async fn open_delta(self, message_cap: usize) -> Result<Opened> {
        let snapshot = delta::snapshot(&self.store, &self.prefix)
            .await
            .map_err(|e| match e {
                // As for any source file: the source's problem, or a passing fault of a store.
                delta::DeltaLogError::Store { source, .. } => self.refused(source),
                delta::DeltaLogError::Invalid(why) => Error::InvalidInput(format!(
                    "{} is read as a Delta table (looked in {}/_delta_log): {why}",
                    self.label, self.looked_in
                )),
            })?;
        if snapshot.files.is_empty() {
            return Err(Error::InvalidInput(format!(
                "{}: Delta table version {} has no files",
                self.label, snapshot.version
            )));
        }
        let partitions = &snapshot.partition_columns;
        let columns = snapshot
            .schema
            .fields()
            .iter()
            .map(|f| match partitions.iter().position(|p| p == f.name()) {
                Some(k) => Col::Partition(k),
                None => Col::File(usize::MAX),
            })
            .collect();
        let files: Vec<SourceFile> = snapshot
            .files
            .into_iter()
            .map(|(path, mut values)| SourceFile {
                path,
                format: FileFormat::Parquet,
                // Delta writes a null partition value as null (or, older writers, "").
                values: partitions
                    .iter()
                    .map(|p| values.remove(p).flatten().filter(|v| !v.is_empty()))
                    .collect(),
            })
            .collect();
        tracing::info!(source = %self.display, version = snapshot.version, files = files.len(),
            "import: reading a Delta table");
        let layout = Layout {
            schema: Arc::new(snapshot.schema),
            file_fields: Fields::empty(),
            columns,
            by_name: true,
            text_schema: Arc::new(Schema::empty()),
            message_cap,
        };
        Ok(Opened {
            source: self,
            files,
            layout,
            first: None,
        })
    }

    /// The schema of a text source: the request's, or inferred from its first file's start.
    async fn text_schema(&self, format: TextFormat, first: &Path) -> Result<SchemaRef> {
        if let Some(columns) = &self.columns {
            let schema = text::explicit(columns)
                .map_err(|why| Error::InvalidInput(format!("{}: {why}", self.label)))?;
            return Ok(text::shared(schema));
        }
        let meta = self.store.head(first).await.map_err(|e| self.refused(e))?;
        let take = meta.size.min(text::SAMPLE_BYTES as u64);
        let sample = self
            .store
            .get_range(first, 0..take)
            .await
            .map_err(|e| self.refused(e))?;
        let whole = take == meta.size;
        let schema = tokio::task::spawn_blocking(move || {
            crate::untrusted::contain(format.name(), || {
                text::infer(format, &sample, whole).map_err(|why| Error::InvalidInput(why.0))
            })
        })
        .await
        .map_err(|e| Error::InvalidInput(format!("inferring the schema failed: {e}")))?
        .map_err(|e| self.unreadable(first, format.name(), &Unreadable::from(e)))?;
        Ok(text::shared(schema))
    }

    /// Opens `file` on a blocking thread; its reader and its schema.
    async fn open_first(
        &self,
        file: &SourceFile,
        text_schema: &SchemaRef,
        message_cap: usize,
    ) -> Result<(FileRows, SchemaRef)> {
        let store = self.store.clone();
        let (path, format, text_schema) = (file.path.clone(), file.format, text_schema.clone());
        let runtime = Handle::current();
        let opened = tokio::task::spawn_blocking(move || {
            FileRows::open(&store, &path, format, &text_schema, &runtime, message_cap).map(|rows| {
                let schema = rows.schema(&text_schema);
                (rows, schema)
            })
        })
        .await
        .map_err(|e| Error::InvalidInput(format!("opening the source failed: {e}")))?;
        opened.map_err(|why| self.unreadable(&file.path, file.format.name(), &why))
    }

    /// A file of the source that cannot be read as `format`: the request's problem, named by
    /// the file's name within the source (its full path is the server's; the log has it).
    fn unreadable(&self, file: &Path, format: &str, why: &Unreadable) -> Error {
        tracing::warn!(file = %file, error = %why, "reading a source file failed");
        let name = if self.upload {
            String::new()
        } else {
            format!(" {}", file.filename().unwrap_or_default())
        };
        // Parquet's and the store's errors may name server paths: logged, not answered.
        if format == FileFormat::Parquet.name() {
            return Error::InvalidInput(format!(
                "{}:{name} is not a readable Parquet file",
                self.label
            ));
        }
        Error::InvalidInput(format!(
            "{}:{name} is not readable as {format}: {why}",
            self.label
        ))
    }
}

/// A file of an opened source, with its partition values (in the order of the partition
/// columns).
struct SourceFile {
    path: Path,
    format: FileFormat,
    values: Vec<Option<String>>,
}

/// Where each column of the imported rows comes from.
enum Col {
    /// The file's column at this position (by name for a Delta table).
    File(usize),
    /// The partition column with this index.
    Partition(usize),
}

/// How a file's batches become the source's rows.
struct Layout {
    schema: SchemaRef,
    /// What every file's batches must have (not for a Delta table, matched by name).
    file_fields: Fields,
    columns: Vec<Col>,
    /// A Delta table: file columns are found by name, cast to the table's type (type
    /// widening), null when a file lacks one (added later to the table).
    by_name: bool,
    text_schema: SchemaRef,
    message_cap: usize,
}

impl Layout {
    fn assemble(
        &self,
        batch: &RecordBatch,
        values: &[Option<String>],
    ) -> Result<RecordBatch, Unreadable> {
        let rows = batch.num_rows();
        let mut out: Vec<ArrayRef> = Vec::with_capacity(self.columns.len());
        for (field, col) in self.schema.fields().iter().zip(&self.columns) {
            let array = match col {
                Col::File(i) if !self.by_name => batch.column(*i).clone(),
                Col::File(_) => match batch.schema().index_of(field.name()) {
                    Ok(j) if batch.column(j).data_type() == field.data_type() => {
                        batch.column(j).clone()
                    }
                    Ok(j) => arrow::compute::cast(batch.column(j), field.data_type())
                        .map_err(|e| format!("column {:?}: {e}", field.name()))?,
                    Err(_) => new_null_array(field.data_type(), rows),
                },
                Col::Partition(k) => constant(values[*k].as_deref(), field.data_type(), rows)
                    .map_err(|e| format!("partition column {:?}: {e}", field.name()))?,
            };
            out.push(array);
        }
        RecordBatch::try_new_with_options(
            self.schema.clone(),
            out,
            &arrow::array::RecordBatchOptions::new().with_row_count(Some(rows)),
        )
        .map_err(|e| Unreadable(e.to_string()))
    }
}

/// `rows` copies of a partition value, parsed as `data_type`.
fn constant(
    value: Option<&str>,
    data_type: &DataType,
    rows: usize,
) -> Result<ArrayRef, Unreadable> {
    let Some(value) = value else {
        return Ok(new_null_array(data_type, rows));
    };
    let text: ArrayRef = Arc::new(StringArray::from_iter_values(std::iter::repeat_n(
        value, rows,
    )));
    if data_type == &DataType::Utf8 {
        return Ok(text);
    }
    let options = arrow::compute::CastOptions {
        safe: false,
        ..Default::default()
    };
    arrow::compute::cast_with_options(&text, data_type, &options)
        .map_err(|e| Unreadable(format!("{value:?} is not a {data_type}: {e}")))
}

/// A source whose files are listed and whose first file is open.
pub struct Opened {
    source: Source,
    files: Vec<SourceFile>,
    layout: Layout,
    first: Option<FileRows>,
}

impl Opened {
    pub fn schema(&self) -> &SchemaRef {
        &self.layout.schema
    }

    pub fn files(&self) -> usize {
        self.files.len()
    }

    pub fn display(&self) -> &str {
        &self.source.display
    }

    /// The rows, for the import's blocking thread; `runtime` runs the reads.
    pub fn rows(self, runtime: Handle) -> SourceRows {
        let Opened {
            source,
            files,
            layout,
            first,
        } = self;
        let mut files = files.into_iter();
        let current = match first {
            Some(rows) => files.next().map(|file| (file, rows)),
            None => None,
        };
        SourceRows {
            source,
            layout,
            files,
            current,
            runtime,
        }
    }
}

/// The source's rows in file order, then in each file's order, in bounded batches, with the
/// source's schema. Runs on a blocking thread. Holds one file's reader at a time (a Parquet
/// row group's encoded bytes and one decoded batch; a text buffer and one batch).
pub struct SourceRows {
    source: Source,
    layout: Layout,
    /// Files not opened yet.
    files: std::vec::IntoIter<SourceFile>,
    /// The file being read.
    current: Option<(SourceFile, FileRows)>,
    runtime: Handle,
}

impl SourceRows {
    /// The next batch, `None` after the last row of the last file.
    pub fn next_batch(&mut self) -> Result<Option<RecordBatch>> {
        loop {
            let Some((file, rows)) = &mut self.current else {
                match self.files.next() {
                    Some(file) => {
                        let rows = self.open(&file)?;
                        self.current = Some((file, rows));
                        continue;
                    }
                    None => return Ok(None),
                }
            };
            match rows.next_batch(&self.runtime) {
                Ok(Some(batch)) => {
                    return self
                        .layout
                        .assemble(&batch, &file.values)
                        .map(Some)
                        .map_err(|why| {
                            Error::InvalidInput(format!(
                                "{}: {}: {why}",
                                self.source.label,
                                file.path.filename().unwrap_or_default()
                            ))
                        });
                }
                Ok(None) => self.current = None,
                Err(why) => {
                    return Err(self.source.unreadable(&file.path, file.format.name(), &why));
                }
            }
        }
    }

    /// Opens a file after the first, its schema checked against the first file's.
    fn open(&self, file: &SourceFile) -> Result<FileRows> {
        let layout = &self.layout;
        let rows = FileRows::open(
            &self.source.store,
            &file.path,
            file.format,
            &layout.text_schema,
            &self.runtime,
            layout.message_cap,
        )
        .map_err(|why| self.source.unreadable(&file.path, file.format.name(), &why))?;
        if !layout.by_name && rows.schema(&layout.text_schema).fields() != &layout.file_fields {
            return Err(Error::InvalidInput(format!(
                "{}: {} has a different schema from the first file",
                self.source.label,
                file.path.filename().unwrap_or_default()
            )));
        }
        Ok(rows)
    }
}

/// An absolute path with `.` and `..` resolved lexically (the file may not exist: globs).
fn normalize(path: &std::path::Path) -> std::io::Result<std::path::PathBuf> {
    use std::path::Component;
    let mut out = std::path::PathBuf::new();
    for component in std::path::absolute(path)?.components() {
        match component {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            other => out.push(other),
        }
    }
    Ok(out)
}
