//! The manifest: one immutable JSON document per dataset version, a full snapshot of the
//! table (`docs/architecture.md`, "Table format", invariant 3). Readers need nothing but the manifest they read:
//! a data file is part of version V iff manifest V lists it.

use std::sync::Arc;

use arrow_schema::{Schema, SchemaRef};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::layout::DatasetName;
use crate::{Error, Result};

/// Bumped when the manifest layout changes incompatibly; readers refuse newer formats.
pub const FORMAT_VERSION: u32 = 1;

/// How many transaction ids a manifest remembers for idempotent retries. A retry of a
/// transaction older than this many commits is no longer recognised.
pub const MAX_RECENT_TXNS: usize = 1024;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub format_version: u32,
    pub dataset: DatasetName,
    pub version: u64,
    pub created_at: DateTime<Utc>,
    /// What produced this version.
    pub operation: Operation,
    /// The table schema (without the delta `_op` column).
    pub schema: Schema,
    /// Primary-key columns, in key order. Empty: the dataset has no key (and takes no deltas).
    pub primary_key: Vec<String>,
    /// Base files in storage order: an import's are sorted by key, a compaction's hold the
    /// state in storage order (invariant 7), so their key ranges may overlap.
    pub base_files: Vec<DataFile>,
    /// Deltas not yet compacted, in ascending `seq`; every `seq` > `base_watermark_seq`.
    pub deltas: Vec<DeltaFile>,
    /// Every delta with `seq <= base_watermark_seq` is already merged into the base files.
    pub base_watermark_seq: u64,
    /// Fencing token of the compactor allowed to commit compactions.
    pub compactor_epoch: u64,
    /// The newest transaction ids and the version each one produced (idempotency).
    pub recent_txns: Vec<TxnRecord>,
    /// Whether the dataset keeps a Delta Lake transaction log beside its files
    /// ([`crate::delta_log`]). Set when the dataset is created; every commit carries it over
    /// (a successor is a copy of the manifest it follows). Absent in manifests without it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub delta_mirror: bool,
    /// The version that created this incarnation of the dataset: 0, or the version after the
    /// [`Operation::Drop`] tombstone of an earlier dataset of the same name. Versions below it
    /// belong to that earlier dataset (time travel and the change feed stop here).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub incarnation: u64,
    /// The indexes the dataset was created with (over the API: `index`, `index_columns`);
    /// queryd builds these unless its config declares the dataset. Absent: the default policy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub index: Option<IndexHint>,
}

/// Which columns queryd indexes for equality and `in` lookups.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IndexPolicy {
    /// Index low-cardinality columns.
    #[default]
    Auto,
    None,
    /// Index exactly the listed columns.
    List,
}

/// A dataset's index policy, as created ([`Manifest::index`]).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexHint {
    pub policy: IndexPolicy,
    /// The columns of [`IndexPolicy::List`].
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub columns: Vec<String>,
}

fn is_zero(v: &u64) -> bool {
    *v == 0
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Operation {
    Create,
    Ingest,
    Compact,
    BumpEpoch,
    /// The dataset was dropped: this version is a tombstone with no files. Readers treat the
    /// dataset as absent ([`crate::commit::Table::load_latest`]); a new dataset of the same name
    /// is created as the next version, so versions stay monotonic for every follower.
    Drop,
}

/// A base Parquet file.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DataFile {
    /// Object path relative to the store root.
    pub path: String,
    pub rows: u64,
    pub bytes: u64,
    /// Smallest and largest primary key in the file (one JSON value per key column).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_min: Option<Vec<serde_json::Value>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_max: Option<Vec<serde_json::Value>>,
}

/// A delta Parquet file: table columns plus `_op`, sorted by key, each key at most once.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DeltaFile {
    pub path: String,
    /// The manifest version that added this delta; last writer wins by `seq`.
    pub seq: u64,
    pub rows: u64,
    pub bytes: u64,
    pub upserts: u64,
    pub deletes: u64,
    pub created_at: DateTime<Utc>,
}

/// A transaction a manifest remembers: its id, the version that committed it, and (for
/// ingest) what it wrote, so a retry can be answered exactly as the original was.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TxnRecord {
    pub id: String,
    pub version: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upserts: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deletes: Option<u64>,
}

/// A transaction a commit is about to record (its version is not known yet).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Txn {
    pub id: String,
    /// Rows upserted and deleted, for ingest transactions.
    pub upserts: Option<u64>,
    pub deletes: Option<u64>,
}

impl Txn {
    /// A transaction that records nothing but its id.
    pub fn id(id: impl Into<String>) -> Self {
        Self {
            id: id.into(),
            upserts: None,
            deletes: None,
        }
    }

    /// An ingest transaction with its row counts.
    pub fn ingest(id: impl Into<String>, upserts: u64, deletes: u64) -> Self {
        Self {
            id: id.into(),
            upserts: Some(upserts),
            deletes: Some(deletes),
        }
    }
}

impl Manifest {
    /// Version 0 of a new dataset.
    pub fn initial(
        dataset: DatasetName,
        schema: Schema,
        primary_key: Vec<String>,
        base_files: Vec<DataFile>,
        txn_id: &str,
    ) -> Self {
        Self {
            format_version: FORMAT_VERSION,
            dataset,
            version: 0,
            created_at: Utc::now(),
            operation: Operation::Create,
            schema,
            primary_key,
            base_files,
            deltas: Vec::new(),
            base_watermark_seq: 0,
            compactor_epoch: 0,
            recent_txns: vec![TxnRecord {
                id: txn_id.to_owned(),
                version: 0,
                upserts: None,
                deletes: None,
            }],
            delta_mirror: false,
            incarnation: 0,
            index: None,
        }
    }

    /// Whether this version is a drop's tombstone.
    pub fn is_dropped(&self) -> bool {
        self.operation == Operation::Drop
    }

    /// The draft of the next version: the same snapshot, one version up, recording `txn_id`.
    /// The commit protocol hands this to a mutation, which changes what it changes.
    pub fn successor(&self, txn_id: &str, operation: Operation) -> Self {
        self.successor_of(std::slice::from_ref(&Txn::id(txn_id)), operation)
    }

    /// As [`Manifest::successor`], recording several transactions in one version (a group
    /// commit: every member is acknowledged with the same version).
    pub fn successor_of(&self, txns: &[Txn], operation: Operation) -> Self {
        let mut next = self.clone();
        next.version = self.version + 1;
        next.created_at = Utc::now();
        next.operation = operation;
        next.recent_txns.extend(txns.iter().map(|t| TxnRecord {
            id: t.id.clone(),
            version: next.version,
            upserts: t.upserts,
            deletes: t.deletes,
        }));
        if next.recent_txns.len() > MAX_RECENT_TXNS {
            let excess = next.recent_txns.len() - MAX_RECENT_TXNS;
            next.recent_txns.drain(..excess);
        }
        next
    }

    /// The version that committed `txn_id`, if it is among the recent transactions.
    pub fn find_txn(&self, txn_id: &str) -> Option<u64> {
        self.txn_record(txn_id).map(|t| t.version)
    }

    /// The record of `txn_id`, if it is among the recent transactions.
    pub fn txn_record(&self, txn_id: &str) -> Option<&TxnRecord> {
        self.recent_txns.iter().rev().find(|t| t.id == txn_id)
    }

    pub fn arrow_schema(&self) -> SchemaRef {
        Arc::new(self.schema.clone())
    }

    pub fn base_rows(&self) -> u64 {
        self.base_files.iter().map(|f| f.rows).sum()
    }

    pub fn delta_rows(&self) -> u64 {
        self.deltas.iter().map(|d| d.rows).sum()
    }

    pub fn total_bytes(&self) -> u64 {
        self.base_files.iter().map(|f| f.bytes).sum::<u64>()
            + self.deltas.iter().map(|d| d.bytes).sum::<u64>()
    }

    /// Every data file this version references.
    pub fn referenced_paths(&self) -> impl Iterator<Item = &str> {
        self.base_files
            .iter()
            .map(|f| f.path.as_str())
            .chain(self.deltas.iter().map(|d| d.path.as_str()))
    }

    /// Compact JSON: every commit reads and writes a whole manifest (with up to
    /// `MAX_RECENT_TXNS` transaction records), so size is latency.
    pub fn to_json_bytes(&self) -> Result<Vec<u8>> {
        Ok(serde_json::to_vec(self)?)
    }

    pub fn from_json_bytes(path: &str, bytes: &[u8]) -> Result<Self> {
        let manifest: Self =
            serde_json::from_slice(bytes).map_err(|source| Error::InvalidManifest {
                path: path.to_owned(),
                source,
            })?;
        if manifest.format_version > FORMAT_VERSION {
            return Err(Error::InvalidInput(format!(
                "manifest {path} has format version {} but this build reads up to {FORMAT_VERSION}",
                manifest.format_version
            )));
        }
        Ok(manifest)
    }
}

#[cfg(test)]
mod tests {
    use arrow_schema::{DataType, Field};

    use super::*;

    fn sample() -> Manifest {
        let schema = Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("name", DataType::Utf8View, true),
        ]);
        Manifest::initial(
            DatasetName::new("t").unwrap(),
            schema,
            vec!["id".into()],
            vec![DataFile {
                path: "datasets/t/base/c/part-00000.parquet".into(),
                rows: 3,
                bytes: 100,
                key_min: Some(vec![1.into()]),
                key_max: Some(vec![3.into()]),
            }],
            "create-1",
        )
    }

    #[test]
    fn json_round_trip_keeps_everything() {
        let m = sample();
        let bytes = m.to_json_bytes().unwrap();
        assert_eq!(Manifest::from_json_bytes("x", &bytes).unwrap(), m);
    }

    #[test]
    fn successor_records_txn_and_bounds_history() {
        let mut m = sample();
        for i in 0..(MAX_RECENT_TXNS + 10) {
            m = m.successor(&format!("t{i}"), Operation::Ingest);
        }
        assert_eq!(m.version, (MAX_RECENT_TXNS + 10) as u64);
        assert_eq!(m.recent_txns.len(), MAX_RECENT_TXNS);
        assert_eq!(m.find_txn("create-1"), None, "oldest ids fall out");
        let last = format!("t{}", MAX_RECENT_TXNS + 9);
        assert_eq!(m.find_txn(&last), Some(m.version));
    }

    #[test]
    fn group_successor_records_every_txn_with_its_counts() {
        let m = sample().successor_of(
            &[Txn::ingest("a", 2, 1), Txn::ingest("b", 0, 3), Txn::id("c")],
            Operation::Ingest,
        );
        assert_eq!(m.version, 1);
        for id in ["a", "b", "c"] {
            assert_eq!(m.find_txn(id), Some(1));
        }
        let b = m.txn_record("b").unwrap();
        assert_eq!((b.upserts, b.deletes), (Some(0), Some(3)));
        assert_eq!(m.txn_record("c").unwrap().upserts, None);
        // Records without counts (written before they existed) still parse, and stay lean.
        let old = r#"{"id":"x","version":4}"#;
        let parsed: TxnRecord = serde_json::from_str(old).unwrap();
        assert_eq!((parsed.upserts, parsed.deletes), (None, None));
        assert_eq!(serde_json::to_string(&parsed).unwrap(), old);
    }

    #[test]
    fn the_delta_mirror_flag_is_carried_over_and_absent_when_off() {
        let off = sample().to_json_bytes().unwrap();
        assert!(!String::from_utf8(off).unwrap().contains("delta_mirror"));
        let mut m = sample();
        m.delta_mirror = true;
        let next = m
            .successor("ingest-1", Operation::Ingest)
            .successor("compact-1", Operation::Compact);
        assert!(next.delta_mirror);
        let bytes = next.to_json_bytes().unwrap();
        assert_eq!(Manifest::from_json_bytes("x", &bytes).unwrap(), next);
    }

    #[test]
    fn newer_format_is_refused() {
        let mut m = sample();
        m.format_version = FORMAT_VERSION + 1;
        let bytes = m.to_json_bytes().unwrap();
        assert!(Manifest::from_json_bytes("x", &bytes).is_err());
    }
}
