//! The key layout under the store root (`docs/architecture.md`, "Table format"):
//!
//! ```text
//! datasets/{name}/_manifest/{version:020}.json   immutable, written with PutMode::Create
//! datasets/{name}/_manifest/_latest              advisory hint {"version": N}, best effort
//! datasets/{name}/base/{compaction_id}/part-{n}.parquet
//! datasets/{name}/deltas/{yyyy-mm-dd}/{uuidv7}.parquet
//! datasets/{name}/_delta_log/{version:020}.json    the Delta Lake view (`delta_mirror` only)
//! ```
//!
//! Every path a daemon reads or writes is built here and nowhere else.

use std::fmt;

use chrono::{DateTime, Utc};
use object_store::path::Path;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::{Error, Result};

/// Root prefix of all datasets.
pub const DATASETS: &str = "datasets";
/// Name prefix of the scratch objects the store self-test writes and deletes. They sit at the
/// root, not in a directory, because stores with real directories (a local disk, SeaweedFS's
/// filer) keep an emptied directory around.
pub const SELFTEST: &str = "_strata_selftest";

/// A validated dataset name: 1–64 characters of `[A-Za-z0-9_-]`, not starting with `_` or `-`.
///
/// The restriction keeps names safe as a single object-path segment, a URL path segment and a
/// SQL identifier, so no layer needs to escape them.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct DatasetName(String);

impl DatasetName {
    pub fn new(name: impl Into<String>) -> Result<Self> {
        let name = name.into();
        let reason = if name.is_empty() || name.len() > 64 {
            Some("must be 1 to 64 characters")
        } else if !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        {
            Some("only letters, digits, '_' and '-' are allowed")
        } else if name.starts_with('_') || name.starts_with('-') {
            Some("must not start with '_' or '-'")
        } else {
            None
        };
        match reason {
            Some(reason) => Err(Error::InvalidName { name, reason }),
            None => Ok(Self(name)),
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for DatasetName {
    type Error = Error;
    fn try_from(value: String) -> Result<Self> {
        Self::new(value)
    }
}

impl From<DatasetName> for String {
    fn from(value: DatasetName) -> Self {
        value.0
    }
}

impl fmt::Display for DatasetName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

pub fn datasets_root() -> Path {
    Path::from(DATASETS)
}

pub fn dataset_root(name: &DatasetName) -> Path {
    Path::from_iter([DATASETS, name.as_str()])
}

pub fn manifest_dir(name: &DatasetName) -> Path {
    Path::from_iter([DATASETS, name.as_str(), "_manifest"])
}

/// Zero-padded to 20 digits so lexical and numeric order agree (u64::MAX has 20 digits).
pub fn manifest_path(name: &DatasetName, version: u64) -> Path {
    manifest_dir(name).join(format!("{version:020}.json"))
}

pub fn latest_hint_path(name: &DatasetName) -> Path {
    manifest_dir(name).join("_latest")
}

/// Parses the version out of a manifest file name; `None` for anything else in the directory.
pub fn parse_manifest_file_name(file_name: &str) -> Option<u64> {
    let digits = file_name.strip_suffix(".json")?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

pub fn base_file_path(name: &DatasetName, compaction_id: &str, part: usize) -> Path {
    Path::from_iter([
        DATASETS,
        name.as_str(),
        "base",
        compaction_id,
        &format!("part-{part:05}.parquet"),
    ])
}

pub fn delta_file_path(name: &DatasetName, at: DateTime<Utc>, id: Uuid) -> Path {
    Path::from_iter([
        DATASETS,
        name.as_str(),
        "deltas",
        &at.format("%Y-%m-%d").to_string(),
        &format!("{id}.parquet"),
    ])
}

/// The Delta Lake transaction log of a dataset that mirrors itself as a Delta table
/// ([`crate::delta_log`]): beside the data files, so the dataset's directory is the Delta table.
pub fn delta_log_dir(name: &DatasetName) -> Path {
    Path::from_iter([DATASETS, name.as_str(), DELTA_LOG])
}

/// Directory name of the Delta log inside a dataset's directory (fixed by the Delta protocol).
pub const DELTA_LOG: &str = "_delta_log";

/// One Delta commit: zero-padded to 20 digits, as the Delta protocol names them.
pub fn delta_commit_path(name: &DatasetName, version: u64) -> Path {
    delta_log_dir(name).join(format!("{version:020}.json"))
}

/// Parses the version out of a Delta commit file name (the same 20 digits as a manifest's);
/// `None` for checkpoints and anything else in the log directory.
pub fn parse_delta_commit_file_name(file_name: &str) -> Option<u64> {
    parse_manifest_file_name(file_name)
}

/// A path relative to the dataset's directory (the Delta table's root), as a Delta `add`
/// action names a file; `None` for a path outside the dataset.
pub fn table_relative<'a>(name: &DatasetName, path: &'a str) -> Option<&'a str> {
    path.strip_prefix(DATASETS)?
        .strip_prefix('/')?
        .strip_prefix(name.as_str())?
        .strip_prefix('/')
        .filter(|rest| !rest.is_empty())
}

/// A new compaction id: time-ordered (UUIDv7) so base directories sort by creation.
pub fn new_compaction_id() -> String {
    Uuid::now_v7().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_validated() {
        assert!(DatasetName::new("events").is_ok());
        assert!(DatasetName::new("Events_2024-x").is_ok());
        for bad in ["", "_hidden", "-x", "a/b", "a b", "ä", &"x".repeat(65)] {
            assert!(DatasetName::new(bad).is_err(), "{bad:?} must be refused");
        }
    }

    #[test]
    fn manifest_paths_sort_numerically_and_parse_back() {
        let n = DatasetName::new("t").unwrap();
        let p9 = manifest_path(&n, 9).to_string();
        let p10 = manifest_path(&n, 10).to_string();
        assert!(p9 < p10);
        assert_eq!(p10, "datasets/t/_manifest/00000000000000000010.json");
        assert_eq!(
            parse_manifest_file_name("00000000000000000010.json"),
            Some(10)
        );
        assert_eq!(parse_manifest_file_name("_latest"), None);
        assert_eq!(parse_manifest_file_name("10.json"), None);
        assert_eq!(
            parse_manifest_file_name(&format!("{:020}.json", u64::MAX)),
            Some(u64::MAX)
        );
    }

    #[test]
    fn delta_log_paths() {
        let n = DatasetName::new("t").unwrap();
        assert_eq!(
            delta_commit_path(&n, 12).to_string(),
            "datasets/t/_delta_log/00000000000000000012.json"
        );
        assert_eq!(
            table_relative(&n, "datasets/t/base/c/part-00000.parquet"),
            Some("base/c/part-00000.parquet")
        );
        for outside in [
            "datasets/tt/base/x",
            "datasets/t/",
            "other/t/base/x",
            "datasets/t",
        ] {
            assert_eq!(table_relative(&n, outside), None, "{outside}");
        }
    }

    #[test]
    fn data_paths() {
        let n = DatasetName::new("t").unwrap();
        assert_eq!(
            base_file_path(&n, "c1", 3).to_string(),
            "datasets/t/base/c1/part-00003.parquet"
        );
        let at = DateTime::parse_from_rfc3339("2026-01-02T03:04:05Z")
            .unwrap()
            .with_timezone(&Utc);
        let id = Uuid::nil();
        assert_eq!(
            delta_file_path(&n, at, id).to_string(),
            format!("datasets/t/deltas/2026-01-02/{id}.parquet")
        );
    }
}
