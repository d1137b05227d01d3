//! A Delta Lake table as a source: its current snapshot, read from `_delta_log/`. The newest
//! complete Parquet checkpoint (if any) is read, then every JSON commit after it in order;
//! the snapshot's files are the `add`s no later `remove` took away, each with its
//! `partitionValues`, typed by the table's `metaData.schemaString`.
//!
//! Refused (a 400 naming what): reader versions above 3, reader features other than
//! `timestampNtz`, `typeWidening`, `vacuumProtocolCheck` (and `deletionVectors` /
//! `columnMapping` while no file has a deletion vector and the mapping mode is `none`),
//! files with deletion vectors, column mapping, nested column types, absolute file paths,
//! a log with a gap in its versions.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use futures::TryStreamExt;
use object_store::ObjectStore;
use object_store::ObjectStoreExt;
use object_store::path::{Path, PathPart};
use serde::Deserialize;
use strata_shared::parquet_io::RowGroups;

use super::hive::percent_decode;

/// The reader features whose tables this reader reads right.
const KNOWN_FEATURES: &[&str] = &[
    "timestampNtz",
    "typeWidening",
    "typeWidening-preview",
    "vacuumProtocolCheck",
    "deletionVectors",
    "columnMapping",
];

/// The snapshot of a Delta table.
pub struct Snapshot {
    pub version: u64,
    /// The table's columns, partition columns included, in the table's order.
    pub schema: Schema,
    pub partition_columns: Vec<String>,
    /// The data files, sorted by path, with their partition values by column.
    pub files: Vec<(Path, HashMap<String, Option<String>>)>,
}

#[derive(Deserialize)]
struct Action {
    #[serde(default)]
    add: Option<Add>,
    #[serde(default)]
    remove: Option<Remove>,
    #[serde(default, rename = "metaData")]
    meta_data: Option<MetaData>,
    #[serde(default)]
    protocol: Option<Protocol>,
}

#[derive(Deserialize)]
struct Add {
    path: String,
    #[serde(default, rename = "partitionValues")]
    partition_values: HashMap<String, Option<String>>,
    #[serde(default, rename = "deletionVector")]
    deletion_vector: Option<serde_json::Value>,
}

#[derive(Deserialize)]
struct Remove {
    path: String,
}

#[derive(Clone, Deserialize)]
struct MetaData {
    #[serde(rename = "schemaString")]
    schema_string: String,
    #[serde(default, rename = "partitionColumns")]
    partition_columns: Vec<String>,
    #[serde(default)]
    configuration: HashMap<String, Option<String>>,
}

#[derive(Clone, Deserialize)]
struct Protocol {
    #[serde(rename = "minReaderVersion")]
    min_reader_version: i64,
    #[serde(default, rename = "readerFeatures")]
    reader_features: Option<Vec<String>>,
}

/// Whether `root` holds a Delta log.
pub async fn is_table(store: &dyn ObjectStore, root: &Path) -> object_store::Result<bool> {
    let log = log_dir(root);
    let mut listed = store.list(Some(&log));
    Ok(listed.try_next().await?.is_some())
}

fn log_dir(root: &Path) -> Path {
    root.clone().join("_delta_log")
}

/// What a file in `_delta_log/` is.
enum LogFile {
    Commit(u64),
    /// A checkpoint part: version and how many parts it has.
    Checkpoint(u64, u32),
}

fn log_file(name: &str) -> Option<LogFile> {
    let (version, rest) = name.split_at_checked(20)?;
    let version: u64 = version
        .bytes()
        .all(|b| b.is_ascii_digit())
        .then(|| version.parse().ok())??;
    match rest {
        ".json" => Some(LogFile::Commit(version)),
        ".checkpoint.parquet" => Some(LogFile::Checkpoint(version, 1)),
        _ => {
            let parts = rest
                .strip_prefix(".checkpoint.")?
                .strip_suffix(".parquet")?;
            let (part, of) = parts.split_once('.')?;
            part.parse::<u32>().ok()?;
            Some(LogFile::Checkpoint(version, of.parse().ok()?))
        }
    }
}

/// Why a Delta table's snapshot could not be read.
#[derive(Debug, thiserror::Error)]
pub enum DeltaLogError {
    /// The store failed a read: the store's problem, or the source's (the caller decides, as
    /// for any source file).
    #[error("{what} failed: {source}")]
    Store {
        what: String,
        #[source]
        source: object_store::Error,
    },
    /// The log is malformed, or uses what this reader does not support.
    #[error("{0}")]
    Invalid(String),
}

/// Reads the snapshot of the table at `root`. The error says what is wrong or unsupported.
pub async fn snapshot(
    store: &Arc<dyn ObjectStore>,
    root: &Path,
) -> Result<Snapshot, DeltaLogError> {
    let log = log_dir(root);
    let depth = log.parts().count() + 1;
    let listed: Vec<object_store::ObjectMeta> = store
        .list(Some(&log))
        .try_collect()
        .await
        .map_err(|source| DeltaLogError::Store {
            what: "listing its _delta_log".into(),
            source,
        })?;
    let mut commits = Vec::new();
    let mut checkpoints: BTreeMap<u64, (u32, Vec<Path>)> = BTreeMap::new();
    for meta in listed {
        if meta.location.parts().count() != depth {
            continue;
        }
        match meta.location.filename().and_then(log_file) {
            Some(LogFile::Commit(v)) => commits.push(v),
            Some(LogFile::Checkpoint(v, of)) => {
                let entry = checkpoints.entry(v).or_insert((of, Vec::new()));
                entry.1.push(meta.location);
            }
            None => {}
        }
    }
    commits.sort_unstable();
    let latest = commits
        .last()
        .copied()
        .or_else(|| checkpoints.keys().next_back().copied())
        .ok_or_else(|| DeltaLogError::Invalid("its _delta_log holds no commits".into()))?;
    // The newest checkpoint with all its parts.
    let checkpoint = checkpoints
        .into_iter()
        .rev()
        .find(|(_, (of, parts))| parts.len() == *of as usize);
    let mut state = State::default();
    let first = match &checkpoint {
        Some((version, (_, parts))) => {
            let mut parts = parts.clone();
            parts.sort();
            for part in &parts {
                for line in checkpoint_actions(store, part).await? {
                    state.apply(&line, &format!("checkpoint {version}"))?;
                }
            }
            version + 1
        }
        None => 0,
    };
    for version in first..=latest {
        if commits.binary_search(&version).is_err() {
            return Err(DeltaLogError::Invalid(format!(
                "its _delta_log has no commit {version} (the log runs to {latest}; cleaned \
                 up without a checkpoint?)"
            )));
        }
        let path = log.clone().join(format!("{version:020}.json"));
        let reading = |source| DeltaLogError::Store {
            what: format!("reading commit {version}"),
            source,
        };
        let bytes = store
            .get(&path)
            .await
            .map_err(reading)?
            .bytes()
            .await
            .map_err(reading)?;
        for line in bytes.split(|b| *b == b'\n') {
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            state.apply(line, &format!("commit {version}"))?;
        }
    }
    state.finish(root, latest)
}

#[derive(Default)]
struct State {
    protocol: Option<Protocol>,
    meta_data: Option<MetaData>,
    files: BTreeMap<String, HashMap<String, Option<String>>>,
}

impl State {
    fn apply(&mut self, line: &[u8], at: &str) -> Result<(), DeltaLogError> {
        let action: Action = serde_json::from_slice(line)
            .map_err(|e| DeltaLogError::Invalid(format!("{at} does not parse: {e}")))?;
        if let Some(add) = action.add {
            if add.deletion_vector.as_ref().is_some_and(|dv| !dv.is_null()) {
                return Err(DeltaLogError::Invalid(format!(
                    "file {} has a deletion vector ({at}): deletion vectors are not supported \
                     (rewrite the table without them, e.g. OPTIMIZE / REORG PURGE)",
                    add.path
                )));
            }
            self.files.insert(add.path, add.partition_values);
        }
        if let Some(remove) = action.remove {
            self.files.remove(&remove.path);
        }
        if action.meta_data.is_some() {
            self.meta_data = action.meta_data;
        }
        if action.protocol.is_some() {
            self.protocol = action.protocol;
        }
        Ok(())
    }

    fn finish(self, root: &Path, version: u64) -> Result<Snapshot, DeltaLogError> {
        let protocol = self
            .protocol
            .ok_or_else(|| DeltaLogError::Invalid("its log has no protocol action".into()))?;
        let meta = self
            .meta_data
            .ok_or_else(|| DeltaLogError::Invalid("its log has no metaData action".into()))?;
        if protocol.min_reader_version > 3 {
            return Err(DeltaLogError::Invalid(format!(
                "it needs a Delta reader of version {}; Strata reads up to 3",
                protocol.min_reader_version
            )));
        }
        if let Some(unknown) = protocol
            .reader_features
            .iter()
            .flatten()
            .find(|f| !KNOWN_FEATURES.contains(&f.as_str()))
        {
            return Err(DeltaLogError::Invalid(format!(
                "reader feature {unknown:?} is not supported"
            )));
        }
        let mapping = meta
            .configuration
            .get("delta.columnMapping.mode")
            .cloned()
            .flatten();
        if mapping.as_deref().is_some_and(|m| m != "none") {
            return Err(DeltaLogError::Invalid(format!(
                "column mapping (delta.columnMapping.mode = {:?}) is not supported",
                mapping.unwrap_or_default()
            )));
        }
        let schema = table_schema(&meta.schema_string)?;
        for column in &meta.partition_columns {
            if schema.field_with_name(column).is_err() {
                return Err(DeltaLogError::Invalid(format!(
                    "partition column {column:?} is not in its schema"
                )));
            }
        }
        let mut files = Vec::with_capacity(self.files.len());
        for (relative, values) in self.files {
            if relative.contains("://") || relative.starts_with('/') {
                return Err(DeltaLogError::Invalid(format!(
                    "file {relative:?} is an absolute path (a shallow clone?): not supported"
                )));
            }
            let decoded = percent_decode(&relative);
            let parts = root.parts().chain(
                decoded
                    .split('/')
                    .filter(|s| !s.is_empty())
                    .map(PathPart::from),
            );
            files.push((Path::from_iter(parts), values));
        }
        Ok(Snapshot {
            version,
            schema,
            partition_columns: meta.partition_columns,
            files,
        })
    }
}

/// The actions of a Parquet checkpoint as JSON lines, the form a commit has: its rows
/// written by arrow's JSON writer (nulls left out, maps as objects).
async fn checkpoint_actions(
    store: &Arc<dyn ObjectStore>,
    path: &Path,
) -> Result<Vec<Vec<u8>>, DeltaLogError> {
    let name = path.filename().unwrap_or_default().to_owned();
    let fail = |e: &dyn std::fmt::Display| {
        DeltaLogError::Invalid(format!("checkpoint {name} cannot be read: {e}"))
    };
    let mut groups = RowGroups::open(store.clone(), path, 8 * 1024)
        .await
        .map_err(|e| fail(&e))?;
    let mut lines = Vec::new();
    while let Some(reader) = groups.next().await.map_err(|e| fail(&e))? {
        for batch in reader {
            let batch = batch.map_err(|e| fail(&e))?;
            let mut out = Vec::new();
            let mut writer = arrow::json::LineDelimitedWriter::new(&mut out);
            writer.write(&batch).map_err(|e| fail(&e))?;
            writer.finish().map_err(|e| fail(&e))?;
            drop(writer);
            lines.extend(
                out.split(|b| *b == b'\n')
                    .filter(|l| !l.is_empty())
                    .map(<[u8]>::to_vec),
            );
        }
    }
    Ok(lines)
}

#[derive(Deserialize)]
struct DeltaField {
    name: String,
    #[serde(rename = "type")]
    data_type: serde_json::Value,
    #[serde(default = "yes")]
    nullable: bool,
}

fn yes() -> bool {
    true
}

#[derive(Deserialize)]
struct DeltaStruct {
    fields: Vec<DeltaField>,
}

/// The Arrow schema of `metaData.schemaString`: primitive types only.
fn table_schema(schema_string: &str) -> Result<Schema, DeltaLogError> {
    let parsed: DeltaStruct = serde_json::from_str(schema_string)
        .map_err(|e| DeltaLogError::Invalid(format!("its schemaString does not parse: {e}")))?;
    let mut fields = Vec::with_capacity(parsed.fields.len());
    for field in parsed.fields {
        let refuse = |why: &str| DeltaLogError::Invalid(format!("column {:?}: {why}", field.name));
        let Some(name) = field.data_type.as_str() else {
            return Err(refuse(
                "nested types (struct, array, map) are not supported",
            ));
        };
        let data_type = match name {
            "boolean" => DataType::Boolean,
            "byte" => DataType::Int8,
            "short" => DataType::Int16,
            "integer" => DataType::Int32,
            "long" => DataType::Int64,
            "float" => DataType::Float32,
            "double" => DataType::Float64,
            "string" => DataType::Utf8,
            "binary" => DataType::Binary,
            "date" => DataType::Date32,
            "timestamp" => DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            "timestamp_ntz" => DataType::Timestamp(TimeUnit::Microsecond, None),
            other => match decimal(other) {
                Some((p, s)) => DataType::Decimal128(p, s),
                None => return Err(refuse(&format!("type {other:?} is not supported"))),
            },
        };
        fields.push(Field::new(field.name, data_type, field.nullable));
    }
    Ok(Schema::new(fields))
}

/// `decimal(p,s)`.
fn decimal(text: &str) -> Option<(u8, i8)> {
    let inner = text.strip_prefix("decimal(")?.strip_suffix(')')?;
    let (p, s) = inner.split_once(',')?;
    Some((p.trim().parse().ok()?, s.trim().parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_file_names() {
        assert!(matches!(
            log_file("00000000000000000003.json"),
            Some(LogFile::Commit(3))
        ));
        assert!(matches!(
            log_file("00000000000000000010.checkpoint.parquet"),
            Some(LogFile::Checkpoint(10, 1))
        ));
        assert!(matches!(
            log_file("00000000000000000010.checkpoint.0000000002.0000000003.parquet"),
            Some(LogFile::Checkpoint(10, 3))
        ));
        assert!(log_file("_last_checkpoint").is_none());
        assert!(log_file("00000000000000000003.crc").is_none());
    }

    #[test]
    fn schemas() {
        let s = table_schema(
            r#"{"type":"struct","fields":[{"name":"a","type":"long","nullable":true,"metadata":{}},
            {"name":"d","type":"decimal(10,2)","nullable":false,"metadata":{}}]}"#,
        )
        .unwrap();
        assert_eq!(s.field(1).data_type(), &DataType::Decimal128(10, 2));
        let nested = r#"{"type":"struct","fields":[{"name":"n","type":{"type":"struct","fields":[]},"nullable":true,"metadata":{}}]}"#;
        assert!(
            table_schema(nested)
                .unwrap_err()
                .to_string()
                .contains("nested")
        );
    }
}
