//! Creating a dataset from a Parquet source: resolve the source (file, directory or glob; local
//! or S3) to files, read them, sort by primary key, prove keys non-null and unique (naming the
//! first offending key), and write sorted base files under a fresh compaction id.
//!
//! The whole source is held in memory while it is sorted; sources larger than memory need an
//! external sort (not built yet).

use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::compute::concat_batches;
use arrow::datatypes::{Field, Schema, SchemaRef};
use futures::TryStreamExt;
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};
use strata_daemon::config::Config;
use strata_shared::layout::{self, DatasetName};
use strata_shared::manifest::DataFile;
use strata_shared::{Error, Result, keys, parquet_io};

use crate::store;

/// Approximate in-memory size of one base file part; keeps parts loadable in parallel.
const TARGET_PART_BYTES: usize = 128 * 1024 * 1024;

/// Where a source's files live.
pub struct Source {
    store: Arc<dyn ObjectStore>,
    /// Literal leading part of the source path.
    prefix: Path,
    /// Glob over the remainder, if the source had one.
    pattern: Option<glob::Pattern>,
    display: String,
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
            let local = normalize(&config.resolve_path(source.trim_start_matches("file://")))
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
        Ok(Self {
            store,
            prefix,
            pattern,
            display: source.to_owned(),
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
                "source {:?} matched no Parquet files",
                self.display
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

    /// Reads every file; all must share one schema.
    pub async fn read(&self) -> Result<(SchemaRef, Vec<RecordBatch>)> {
        let mut schema: Option<SchemaRef> = None;
        let mut batches = Vec::new();
        for file in self.files().await? {
            let (file_schema, file_batches) = parquet_io::read(self.store.as_ref(), &file)
                .await
                .map_err(|e| {
                    // The file by its name within the source: its full path is the server's.
                    tracing::warn!(file = %file, error = %e, "reading a source file failed");
                    Error::InvalidInput(format!(
                        "source {:?}: {} is not a readable Parquet file",
                        self.display,
                        file.filename().unwrap_or_default()
                    ))
                })?;
            match &schema {
                None => schema = Some(file_schema),
                Some(s) if s.fields() == file_schema.fields() => {}
                Some(_) => {
                    return Err(Error::InvalidInput(format!(
                        "source {:?}: {} has a different schema from the first file",
                        self.display,
                        file.filename().unwrap_or_default()
                    )));
                }
            }
            batches.extend(file_batches);
        }
        let schema = schema.ok_or_else(|| Error::InvalidInput("empty source".into()))?;
        Ok((schema, batches))
    }
}

/// Sorts and validates the rows, then writes them as base files of a new dataset.
/// Returns the table schema (key columns non-nullable) and the files written.
pub async fn write_base(
    store: &Arc<dyn ObjectStore>,
    name: &DatasetName,
    schema: SchemaRef,
    batches: Vec<RecordBatch>,
    primary_key: &[String],
) -> Result<(Schema, Vec<DataFile>)> {
    let primary_key = primary_key.to_vec();
    // Sorting and checking are CPU work: keep them off the async workers.
    let prepared = tokio::task::spawn_blocking(move || prepare(schema, &batches, &primary_key))
        .await
        .map_err(|e| Error::InvalidInput(format!("import task failed: {e}")))??;
    let (schema, sorted, key) = prepared;

    let compaction_id = layout::new_compaction_id();
    let rows_per_part = rows_per_part(&sorted);
    let mut files = Vec::new();
    for (n, offset) in (0..sorted.num_rows()).step_by(rows_per_part).enumerate() {
        let part = sorted.slice(offset, rows_per_part.min(sorted.num_rows() - offset));
        let path = layout::base_file_path(name, &compaction_id, n);
        let bytes = parquet_io::encode(part.schema(), std::slice::from_ref(&part))?;
        let size = bytes.len() as u64;
        parquet_io::put_new(store.as_ref(), &path, bytes).await?;
        let last = part.num_rows() - 1;
        let has_key = !key.is_empty();
        files.push(DataFile {
            path: path.to_string(),
            rows: part.num_rows() as u64,
            bytes: size,
            key_min: has_key.then(|| keys::key_json(&part, &key, 0)),
            key_max: has_key.then(|| keys::key_json(&part, &key, last)),
        });
    }
    Ok((schema.as_ref().clone(), files))
}

fn prepare(
    schema: SchemaRef,
    batches: &[RecordBatch],
    primary_key: &[String],
) -> Result<(SchemaRef, RecordBatch, Vec<usize>)> {
    let key = keys::key_indices(&schema, primary_key)?;
    // Key columns are non-nullable in the table schema; the check below proves the data agrees.
    let table_schema: SchemaRef = Arc::new(Schema::new(
        schema
            .fields()
            .iter()
            .enumerate()
            .map(|(i, f)| {
                let field: Field = f.as_ref().clone();
                if key.contains(&i) {
                    field.with_nullable(false)
                } else {
                    field
                }
            })
            .collect::<Vec<_>>(),
    ));
    let all = concat_batches(&schema, batches)?;
    keys::check_non_null(&all, &key)?;
    let sorted = keys::sort_by_key(&all, &key)?;
    keys::check_unique_sorted(&sorted, &key)?;
    let sorted = RecordBatch::try_new(table_schema.clone(), sorted.columns().to_vec())?;
    Ok((table_schema, sorted, key))
}

fn rows_per_part(batch: &RecordBatch) -> usize {
    let bytes = batch.get_array_memory_size().max(1);
    let parts = bytes.div_ceil(TARGET_PART_BYTES).max(1);
    batch.num_rows().div_ceil(parts).max(1)
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
