//! A source of an import: a Parquet file, directory or glob, local or S3, resolved to files
//! and read one row group at a time.

use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use futures::TryStreamExt;
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};
use parquet::arrow::arrow_reader::ParquetRecordBatchReader;
use strata_daemon::config::Config;
use strata_shared::parquet_io::RowGroups;
use strata_shared::{Error, Result};
use tokio::runtime::Handle;

use crate::store;

/// Where a source's files live.
pub struct Source {
    store: Arc<dyn ObjectStore>,
    /// Literal leading part of the source path.
    prefix: Path,
    /// Glob over the remainder, if the source had one.
    pattern: Option<glob::Pattern>,
    display: String,
    /// What the source resolved to (a local path against `storaged.source_root`), for the
    /// errors: they say what was tried.
    looked_in: String,
    /// A file on storaged's machine (not `s3://`): whatever fails reading it is the source's
    /// problem, not a passing fault of a store.
    local: bool,
}

impl Source {
    pub fn parse(source: &str, config: &Config) -> Result<Self> {
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
        Ok(Self {
            store,
            prefix,
            pattern,
            display: source.to_owned(),
            looked_in,
            local,
        })
    }

    /// The Parquet files of the source, sorted by path.
    pub async fn files(&self) -> Result<Vec<Path>> {
        let mut files = Vec::new();
        if self.pattern.is_none() {
            match self.store.head(&self.prefix).await {
                Ok(meta) => files.push(meta.location),
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
                let keep = match &self.pattern {
                    Some(pattern) => {
                        let rest: Vec<String> = meta
                            .location
                            .parts()
                            .skip(prefix_parts)
                            .map(|p| p.as_ref().to_owned())
                            .collect();
                        pattern.matches_with(&rest.join("/"), options)
                    }
                    None => meta.location.as_ref().ends_with(".parquet"),
                };
                if keep {
                    files.push(meta.location);
                }
            }
        }
        files.sort();
        if files.is_empty() {
            return Err(Error::InvalidInput(format!(
                "source {:?} matched no Parquet files (looked for {})",
                self.display, self.looked_in
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
                "source {:?} cannot be read (storaged's log has the reason)",
                self.display
            ));
        }
        match e {
            object_store::Error::PermissionDenied { .. }
            | object_store::Error::Unauthenticated { .. } => {
                tracing::warn!(source = %self.display, error = %e, "source refused");
                Error::InvalidInput(format!(
                    "source {:?}: the store refused access (are credentials configured for it?)",
                    self.display
                ))
            }
            other => other.into(),
        }
    }

    /// Lists the source's files and opens the first (its footer gives the schema every file
    /// must have); rows are read later, one row group at a time ([`SourceRows`]).
    pub async fn open(self) -> Result<Opened> {
        let files = self.files().await?;
        let first = files
            .first()
            .cloned()
            .ok_or_else(|| Error::InvalidInput("empty source".into()))?;
        let groups = RowGroups::open(self.store.clone(), &first, READ_BATCH_ROWS)
            .await
            .map_err(|e| self.unreadable(&first, &e))?;
        let schema = groups.schema().clone();
        Ok(Opened {
            source: self,
            files,
            schema,
            first: groups,
        })
    }

    /// A file of the source that cannot be read as Parquet: the request's problem, named by
    /// the file's name within the source (its full path is the server's; the log has it).
    fn unreadable(&self, file: &Path, e: &dyn std::fmt::Display) -> Error {
        tracing::warn!(file = %file, error = %e, "reading a source file failed");
        Error::InvalidInput(format!(
            "source {:?}: {} is not a readable Parquet file",
            self.display,
            file.filename().unwrap_or_default()
        ))
    }
}

/// Rows per batch decoded from a source file: small enough that a batch is a sliver of the
/// import's memory, large enough to keep per-batch costs low.
const READ_BATCH_ROWS: usize = 8 * 1024;

/// A source whose files are listed and whose first file is open.
pub struct Opened {
    source: Source,
    files: Vec<Path>,
    schema: SchemaRef,
    first: RowGroups,
}

impl Opened {
    pub fn schema(&self) -> &SchemaRef {
        &self.schema
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
            schema,
            first,
        } = self;
        let mut files = files.into_iter();
        let current = files.next().map(|path| (path, first));
        SourceRows {
            source,
            schema,
            files,
            current,
            decoder: None,
            runtime,
        }
    }
}

/// The source's rows in file order, then row-group order, in batches of at most
/// [`READ_BATCH_ROWS`] rows, with the schema of the first file. Runs on a blocking thread:
/// fetching a row group's bytes is a `block_on`, decoding them is done here. Holds one row
/// group's encoded bytes and one decoded batch at a time, not a file.
pub struct SourceRows {
    source: Source,
    schema: SchemaRef,
    /// Files not opened yet.
    files: std::vec::IntoIter<Path>,
    /// The file being read and its row groups.
    current: Option<(Path, RowGroups)>,
    /// The row group being decoded.
    decoder: Option<ParquetRecordBatchReader>,
    runtime: Handle,
}

impl SourceRows {
    /// The next batch, `None` after the last row of the last file.
    pub fn next_batch(&mut self) -> Result<Option<RecordBatch>> {
        loop {
            let Some((file, groups)) = &mut self.current else {
                return Ok(None);
            };
            if let Some(decoder) = &mut self.decoder {
                match decoder.next() {
                    // Every file's fields equal the first's (checked when it is opened); the
                    // batch takes the first file's schema so that all batches share one.
                    Some(Ok(batch)) => {
                        return Ok(Some(RecordBatch::try_new(
                            self.schema.clone(),
                            batch.columns().to_vec(),
                        )?));
                    }
                    Some(Err(e)) => return Err(self.source.unreadable(file, &e)),
                    None => self.decoder = None,
                }
                continue;
            }
            match self.runtime.block_on(groups.next()) {
                Ok(Some(decoder)) => self.decoder = Some(decoder),
                Ok(None) => self.current = self.open_next()?,
                Err(e) => return Err(self.source.unreadable(file, &e)),
            }
        }
    }

    /// The next file, opened, its schema checked against the first file's.
    fn open_next(&mut self) -> Result<Option<(Path, RowGroups)>> {
        let Some(file) = self.files.next() else {
            return Ok(None);
        };
        let store = self.source.store.clone();
        let groups = self
            .runtime
            .block_on(RowGroups::open(store, &file, READ_BATCH_ROWS))
            .map_err(|e| self.source.unreadable(&file, &e))?;
        if groups.schema().fields() != self.schema.fields() {
            return Err(Error::InvalidInput(format!(
                "source {:?}: {} has a different schema from the first file",
                self.source.display,
                file.filename().unwrap_or_default()
            )));
        }
        Ok(Some((file, groups)))
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
