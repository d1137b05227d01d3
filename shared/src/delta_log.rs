//! The Delta Lake view of a table (`delta_mirror`): a Delta transaction log beside the
//! dataset's files, `datasets/{name}/_delta_log/{version:020}.json`, so the dataset's directory
//! is also a Delta table that Delta readers (delta-rs, DuckDB's `delta_scan`, polars'
//! `scan_delta`, Spark) read without Strata.
//!
//! **What the Delta table holds.** Its snapshot is always exactly a manifest's `base_files`:
//! the table as of its last compaction (or its creation), that is Strata's state at version
//! `base_watermark_seq` (invariant 5: a compaction folds the deltas up to that sequence into
//! the base). Rows still in deltas are not in the Delta view: it lags Strata by them until the
//! next compaction, which is the "periodically written merged snapshot" of a Delta table with
//! pending changes. Deletion vectors were the other way; `docs/decisions.md` says why not.
//!
//! **Writing it.** [`sync`] replays the log and, when the Delta file set differs from the
//! manifest's base files, writes the next commit with put-if-absent: version 0 carries the
//! protocol and the table's metadata (its schema, [`DeltaLakeSchema`]), every commit `remove`s
//! the files that left the base and `add`s the new ones, with their row counts and the first
//! key column's smallest and largest values as statistics. `commitInfo.strataVersion` names
//! the manifest version the commit was made from; a log already made from a newer manifest is
//! left alone, so a late caller holding an older manifest never takes the view back. A
//! commit is a function of the base file set (timestamps aside), so two writers racing for
//! one version agree: the loser replays and finds nothing left to do. Only Strata writes the
//! log; other Delta writers (and VACUUM) must stay away from it.
//!
//! **What GC keeps** (`strata_compactord::collect`): the files of the log's current snapshot,
//! and the files the log removed until their `remove.deletionTimestamp` is older than the GC
//! grace period (Delta's tombstone retention), so a reader on the previous log version still
//! finds them. The log files are never deleted (no checkpoints or log cleanup yet).

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::future::Future;
use std::time::Duration;

use arrow::datatypes::{DataType, Schema, TimeUnit};
use chrono::{DateTime, Utc};
use futures::TryStreamExt;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::layout::{self, DatasetName};
use crate::manifest::{DataFile, Manifest};
use crate::{Error, Result};

/// How often [`sync`] replays and retries after losing a version to another writer.
const MAX_ATTEMPTS: u32 = 16;

/// Characters Delta Lake refuses in column names unless the table uses column mapping (a
/// table feature this log does not use, so every reader can read it).
const INVALID_NAME_CHARS: &[char] = &[' ', ',', ';', '{', '}', '(', ')', '\n', '\t', '='];

/// A table schema as Delta Lake writes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeltaLakeSchema {
    /// `metaData.schemaString`.
    pub schema_string: String,
    /// A column is a timestamp without a time zone: the table needs the `timestampNtz`
    /// feature (reader version 3, writer version 7).
    pub timestamp_ntz: bool,
}

impl DeltaLakeSchema {
    /// The schema of a Strata table, or [`Error::InvalidInput`] naming the first column Delta
    /// Lake cannot hold faithfully (its name or its type).
    pub fn of(schema: &Schema) -> Result<Self> {
        let mut fields = Vec::with_capacity(schema.fields().len());
        let mut timestamp_ntz = false;
        let mut seen = HashSet::new();
        for field in schema.fields() {
            let name = field.name();
            let refuse = |why: &str| {
                Error::InvalidInput(format!(
                    "delta_mirror: column {name:?} ({}) cannot be mirrored as Delta Lake: {why}",
                    field.data_type()
                ))
            };
            if name.is_empty() || name.contains(INVALID_NAME_CHARS) {
                return Err(refuse(
                    "Delta Lake refuses empty column names and names with any of ' ,;{}()=', \
                     a tab or a newline",
                ));
            }
            // Delta resolves column names without regard to case.
            if !seen.insert(name.to_lowercase()) {
                return Err(refuse(
                    "another column has the same name but for case, and Delta Lake \
                     resolves names without regard to case",
                ));
            }
            let delta_type = delta_type(field.data_type()).map_err(refuse)?;
            timestamp_ntz |= delta_type == "timestamp_ntz";
            fields.push(json!({
                "name": name,
                "type": delta_type,
                "nullable": field.is_nullable(),
                "metadata": {},
            }));
        }
        let schema = json!({"type": "struct", "fields": fields});
        Ok(Self {
            schema_string: serde_json::to_string(&schema)?,
            timestamp_ntz,
        })
    }

    /// The protocol action: the lowest versions that read this schema.
    fn protocol(&self) -> Value {
        if self.timestamp_ntz {
            json!({
                "minReaderVersion": 3,
                "minWriterVersion": 7,
                "readerFeatures": ["timestampNtz"],
                "writerFeatures": ["timestampNtz"],
            })
        } else {
            json!({"minReaderVersion": 1, "minWriterVersion": 2})
        }
    }
}

/// The Delta type of an Arrow type, or why there is none. Each mapping was checked with the
/// readers the tests run (`tests/it/delta_mirror.rs`): every reader widens the unsigned types
/// from the Parquet files to the signed Delta type, and reads millisecond and second
/// timestamps as the microseconds Delta holds, without loss.
fn delta_type(data_type: &DataType) -> std::result::Result<String, &'static str> {
    use DataType as D;
    let name = match data_type {
        D::Boolean => "boolean",
        D::Int8 => "byte",
        D::Int16 | D::UInt8 => "short",
        D::Int32 | D::UInt16 => "integer",
        D::Int64 | D::UInt32 => "long",
        D::UInt64 => return Err("Delta Lake has no unsigned types and a long cannot hold it"),
        D::Float32 => "float",
        D::Float64 => "double",
        D::Utf8 | D::LargeUtf8 | D::Utf8View => "string",
        D::Binary | D::LargeBinary | D::BinaryView => "binary",
        D::Date32 => "date",
        D::Timestamp(TimeUnit::Nanosecond, _) => {
            return Err("Delta Lake timestamps hold microseconds: nanoseconds would be cut");
        }
        D::Timestamp(_, Some(_)) => "timestamp",
        D::Timestamp(_, None) => "timestamp_ntz",
        D::Decimal128(precision, scale) if *scale >= 0 => {
            return Ok(format!("decimal({precision},{scale})"));
        }
        D::Decimal128(..) => return Err("Delta Lake decimals have no negative scale"),
        D::Dictionary(_, value) => return delta_type(value),
        _ => return Err("Delta Lake has no type that holds it"),
    };
    Ok(name.to_owned())
}

/// A Delta log replayed: the snapshot of its newest version.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LogState {
    /// The newest commit; `None` when the dataset has no log.
    pub version: Option<u64>,
    /// The files of the snapshot, relative to the table root, with their sizes.
    pub files: BTreeMap<String, u64>,
    /// Files a commit removed (and none re-added), with their `deletionTimestamp` in
    /// milliseconds since the epoch (`None`: the remove had none).
    pub removed: BTreeMap<String, Option<i64>>,
    /// `commitInfo.strataVersion` of the newest commit: the manifest version it was made from.
    pub strata_version: Option<u64>,
}

impl LogState {
    /// The store paths garbage collection must keep for the log's readers at `now`: every file
    /// of the snapshot, and every file removed less than `grace` ago (or at an unknown time).
    pub fn retained_paths(
        &self,
        name: &DatasetName,
        now: DateTime<Utc>,
        grace: Duration,
    ) -> Vec<String> {
        let grace_ms = i64::try_from(grace.as_millis()).unwrap_or(i64::MAX);
        let now_ms = now.timestamp_millis();
        let recently_removed = self.removed.iter().filter(|(_, at)| match at {
            Some(at) => now_ms.saturating_sub(*at) < grace_ms,
            None => true,
        });
        self.files
            .keys()
            .chain(recently_removed.map(|(path, _)| path))
            .map(|relative| format!("{}/{relative}", layout::dataset_root(name)))
            .collect()
    }
}

/// One line of a commit file: the actions this module reads (others are skipped).
#[derive(Deserialize)]
struct ActionIn {
    #[serde(default)]
    add: Option<AddIn>,
    #[serde(default)]
    remove: Option<RemoveIn>,
    #[serde(default, rename = "commitInfo")]
    commit_info: Option<CommitInfoIn>,
    #[serde(default, rename = "metaData")]
    meta_data: Option<serde::de::IgnoredAny>,
}

#[derive(Deserialize)]
struct AddIn {
    path: String,
    #[serde(default)]
    size: u64,
}

#[derive(Deserialize)]
struct RemoveIn {
    path: String,
    #[serde(default, rename = "deletionTimestamp")]
    deletion_timestamp: Option<i64>,
}

#[derive(Deserialize)]
struct CommitInfoIn {
    #[serde(default, rename = "strataVersion")]
    strata_version: Option<u64>,
}

/// Replays the Delta log of `name` (an empty [`LogState`] when there is none). The versions
/// must run from 0 without a gap: log files are written one version after another and never
/// deleted.
pub async fn replay(store: &dyn ObjectStore, name: &DatasetName) -> Result<LogState> {
    let listed: Vec<object_store::ObjectMeta> = store
        .list(Some(&layout::delta_log_dir(name)))
        .try_collect()
        .await?;
    let mut versions: Vec<u64> = listed
        .iter()
        .filter_map(|m| m.location.filename())
        .filter_map(layout::parse_delta_commit_file_name)
        .collect();
    versions.sort_unstable();
    let mut state = LogState::default();
    for (expected, &version) in versions.iter().enumerate() {
        if version != expected as u64 {
            return Err(Error::DeltaLog {
                dataset: name.clone(),
                reason: format!("version {expected} is missing, but version {version} exists"),
            });
        }
        let path = layout::delta_commit_path(name, version);
        let bytes = store.get(&path).await?.bytes().await?;
        let mut has_metadata = false;
        state.strata_version = None;
        for line in bytes.split(|b| *b == b'\n') {
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            let action: ActionIn = serde_json::from_slice(line).map_err(|e| Error::DeltaLog {
                dataset: name.clone(),
                reason: format!("{path} does not parse: {e}"),
            })?;
            if let Some(add) = action.add {
                state.removed.remove(&add.path);
                state.files.insert(add.path, add.size);
            }
            if let Some(remove) = action.remove {
                state.files.remove(&remove.path);
                state.removed.insert(remove.path, remove.deletion_timestamp);
            }
            if let Some(info) = action.commit_info {
                state.strata_version = info.strata_version;
            }
            has_metadata |= action.meta_data.is_some();
        }
        if version == 0 && !has_metadata {
            return Err(Error::DeltaLog {
                dataset: name.clone(),
                reason: format!("{path} has no metaData action"),
            });
        }
        state.version = Some(version);
    }
    Ok(state)
}

/// Deletes the Delta log of `name` (a dropped dataset's: Delta readers must no longer find a
/// table there), newest commit first, so a crash midway leaves a log that still replays (a
/// prefix of versions). Returns how many objects it deleted.
pub async fn delete_log(store: &dyn ObjectStore, name: &DatasetName) -> Result<u64> {
    let mut listed: Vec<object_store::path::Path> = store
        .list(Some(&layout::delta_log_dir(name)))
        .map_ok(|m| m.location)
        .try_collect()
        .await?;
    let version =
        |p: &object_store::path::Path| p.filename().and_then(layout::parse_delta_commit_file_name);
    // Commits newest first, anything else (none is written today) after them.
    listed.sort_by_key(|p| std::cmp::Reverse(version(p)));
    let mut deleted = 0;
    for path in listed {
        match store.delete(&path).await {
            Ok(()) => deleted += 1,
            Err(object_store::Error::NotFound { .. }) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(deleted)
}

/// Brings the Delta log of `manifest`'s dataset to the manifest's base files (module docs),
/// if the dataset has `delta_mirror`. Returns the log version written, `None` when there was
/// nothing to write (the log already holds these files, or was made from a newer manifest).
pub async fn sync(store: &dyn ObjectStore, manifest: &Manifest) -> Result<Option<u64>> {
    sync_with(store, manifest, |_| async {}).await
}

/// As [`sync`], calling `before_put` with the version about to be written, before each put:
/// a hook for tests (another writer takes the version first).
async fn sync_with<F, Fut>(
    store: &dyn ObjectStore,
    manifest: &Manifest,
    mut before_put: F,
) -> Result<Option<u64>>
where
    F: FnMut(u64) -> Fut,
    Fut: Future<Output = ()>,
{
    if !manifest.delta_mirror {
        return Ok(None);
    }
    let name = &manifest.dataset;
    let schema = DeltaLakeSchema::of(&manifest.schema)?;
    let mut target: BTreeMap<&str, &DataFile> = BTreeMap::new();
    for file in &manifest.base_files {
        target.insert(relative_path(name, &file.path)?, file);
    }
    let mut last = String::from("no attempt made");
    for _ in 0..MAX_ATTEMPTS {
        let log = replay(store, name).await?;
        if log.strata_version.is_some_and(|v| v >= manifest.version) {
            return Ok(None);
        }
        let current: BTreeSet<&str> = log.files.keys().map(String::as_str).collect();
        if log.version.is_some() && current.iter().eq(target.keys()) {
            return Ok(None);
        }
        let version = log.version.map_or(0, |v| v + 1);
        let now = Utc::now().timestamp_millis();
        let mut actions = vec![json!({"commitInfo": {
            "timestamp": now,
            "operation": "WRITE",
            "operationParameters": {"mode": if version == 0 { "ErrorIfExists" } else { "Overwrite" }},
            "isBlindAppend": false,
            "engineInfo": concat!("strata/", env!("CARGO_PKG_VERSION")),
            "strataVersion": manifest.version,
            // The Strata version whose rows this snapshot holds.
            "strataStateVersion": manifest.base_watermark_seq,
        }})];
        if version == 0 {
            actions.push(json!({"protocol": schema.protocol()}));
            actions.push(json!({"metaData": {
                "id": uuid::Uuid::new_v4().to_string(),
                "name": name.as_str(),
                "format": {"provider": "parquet", "options": {}},
                "schemaString": schema.schema_string,
                "partitionColumns": [],
                "configuration": {},
                "createdTime": now,
            }}));
        }
        for (path, size) in &log.files {
            if !target.contains_key(path.as_str()) {
                actions.push(json!({"remove": {
                    "path": path,
                    "deletionTimestamp": now,
                    "dataChange": true,
                    "extendedFileMetadata": true,
                    "partitionValues": {},
                    "size": size,
                }}));
            }
        }
        for (path, file) in &target {
            if !current.contains(path) {
                actions.push(add_action(store, manifest, path, file).await?);
            }
        }
        let mut body = Vec::new();
        for action in &actions {
            serde_json::to_writer(&mut body, action)?;
            body.push(b'\n');
        }
        before_put(version).await;
        let path = layout::delta_commit_path(name, version);
        match store
            .put_opts(
                &path,
                PutPayload::from(body),
                PutOptions::from(PutMode::Create),
            )
            .await
        {
            Ok(_) => {
                tracing::info!(dataset = %name, version, strata_version = manifest.version,
                    files = target.len(), "delta log written");
                return Ok(Some(version));
            }
            // Another writer took the version: replay what it wrote and decide again.
            Err(object_store::Error::AlreadyExists { .. }) => {
                last = format!("delta log version {version} was taken by another writer");
            }
            Err(e) => return Err(e.into()),
        }
    }
    Err(Error::CommitContention {
        dataset: name.clone(),
        attempts: MAX_ATTEMPTS,
        last,
    })
}

/// `path` relative to the table root, as `add` names it. Dataset names and compaction ids are
/// plain ASCII (`[A-Za-z0-9_-]`, UUIDs), so the path needs no URI escaping; anything else is
/// refused rather than written wrong.
fn relative_path<'a>(name: &DatasetName, path: &'a str) -> Result<&'a str> {
    layout::table_relative(name, path)
        .filter(|p| {
            p.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'/' | b'.' | b'_' | b'-'))
        })
        .ok_or_else(|| Error::DeltaLog {
            dataset: name.clone(),
            reason: format!("base file {path:?} cannot be named in the log"),
        })
}

/// The `add` action of one base file. Its size and time come from the store (a HEAD), which
/// also proves the file is there before the log names it; readers seek the footer by size.
async fn add_action(
    store: &dyn ObjectStore,
    manifest: &Manifest,
    relative: &str,
    file: &DataFile,
) -> Result<Value> {
    let meta = store
        .head(&object_store::path::Path::parse(&file.path)?)
        .await?;
    Ok(json!({"add": {
        "path": relative,
        "partitionValues": {},
        "size": meta.size,
        "modificationTime": meta.last_modified.timestamp_millis(),
        "dataChange": true,
        "stats": serde_json::to_string(&stats(manifest, file))?,
    }}))
}

/// `add.stats`: the row count; for key columns the null count (0: keys are never null); for the
/// first key column its smallest and largest value, from the manifest's key range (the range of
/// whole keys, so only its first column is a range of that column), when the column's Delta
/// type takes that JSON value as it is (integers, strings, dates).
fn stats(manifest: &Manifest, file: &DataFile) -> Value {
    let mut stats = json!({"numRecords": file.rows});
    if manifest.primary_key.is_empty() {
        return stats;
    }
    let null_count: serde_json::Map<String, Value> = manifest
        .primary_key
        .iter()
        .map(|c| (c.clone(), Value::from(0)))
        .collect();
    stats["nullCount"] = Value::Object(null_count);
    let first = &manifest.primary_key[0];
    let (Some(min), Some(max)) = (
        file.key_min.as_ref().and_then(|k| k.first()),
        file.key_max.as_ref().and_then(|k| k.first()),
    ) else {
        return stats;
    };
    let Ok(field) = manifest.schema.field_with_name(first) else {
        return stats;
    };
    if stat_value_fits(field.data_type(), min) && stat_value_fits(field.data_type(), max) {
        let one =
            |value: &Value| Value::Object([(first.clone(), value.clone())].into_iter().collect());
        stats["minValues"] = one(min);
        stats["maxValues"] = one(max);
    }
    stats
}

/// True when `value` is a key-range value Delta readers compare right for `data_type`: a
/// wrong statistic would make a reader skip a file it needs, so anything else is left out.
fn stat_value_fits(data_type: &DataType, value: &Value) -> bool {
    use DataType as D;
    match data_type {
        D::Int8 | D::Int16 | D::Int32 | D::Int64 => value.is_i64(),
        D::UInt8 | D::UInt16 | D::UInt32 => value.is_u64(),
        D::Utf8 | D::LargeUtf8 | D::Utf8View => value.is_string(),
        // The manifest writes dates as `YYYY-MM-DD`, the form Delta's statistics use.
        D::Date32 => value.as_str().is_some_and(|s| {
            s.len() == 10
                && s.bytes().enumerate().all(|(i, b)| {
                    if i == 4 || i == 7 {
                        b == b'-'
                    } else {
                        b.is_ascii_digit()
                    }
                })
        }),
        D::Dictionary(_, inner) => stat_value_fits(inner, value),
        _ => false,
    }
}

#[cfg(test)]
mod tests;
