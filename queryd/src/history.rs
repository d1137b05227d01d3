//! A dataset's history in the store: which versions are retained, the manifest a time-travel
//! read names (`version` or `as_of`), and the delta files of the change feed between two
//! versions.
//!
//! Every manifest version is a full snapshot (invariant 3) and garbage collection expires
//! only a prefix of them (invariant 6), so the retained versions are one range
//! `oldest..=latest`, and a retained manifest's files are all still in the store. A read of
//! version V is therefore the cold path over manifest V, with the answers the live state gave
//! at V (storage order is the same on every path).
//!
//! The change feed after V is the delta files with a sequence number in `(V, W]`: a delta's
//! sequence is the version that committed it (invariant 4), and its file holds exactly what
//! was written (one entry per key). Manifest W names the deltas above its watermark; the
//! ones a compaction merged are named by the manifest at that watermark (the version that
//! committed the newest merged delta), and so on back: one manifest read per compaction
//! crossed, all of them retained when V is.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::array::{ArrayRef, RecordBatch, StringArray, TimestampMillisecondArray, UInt64Array};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use chrono::{DateTime, Utc};
use strata_queryd_api::QueryRequest;
use strata_shared::commit::Table;
use strata_shared::delta::{self, Op};
use strata_shared::manifest::{DeltaFile, Manifest};

use crate::deltas::LoadedDelta;
use crate::error::QueryError;

/// Which version a time-travel read asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum At {
    Version(u64),
    /// The newest version committed at or before this time.
    AsOf(DateTime<Utc>),
}

impl At {
    /// The time-travel target of `request`, if it has one. `version`, `as_of` and
    /// `min_version` exclude each other: each names the version to read differently.
    pub fn of(request: &QueryRequest) -> Result<Option<At>, QueryError> {
        let at = match (request.version, request.as_of.as_deref()) {
            (None, None) => return Ok(None),
            (Some(v), None) => At::Version(v),
            (None, Some(t)) => At::AsOf(parse_time(t)?),
            (Some(_), Some(_)) => {
                return Err(QueryError::BadRequest(
                    "give either version or as_of, not both".into(),
                ));
            }
        };
        if request.min_version.is_some() {
            return Err(QueryError::BadRequest(
                "min_version cannot be combined with version or as_of (they name the exact version to read)"
                    .into(),
            ));
        }
        Ok(Some(at))
    }
}

fn parse_time(text: &str) -> Result<DateTime<Utc>, QueryError> {
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| {
            QueryError::BadRequest(format!(
                "as_of {text:?} is not an RFC 3339 time such as 2026-12-04T10:00:00Z: {e}"
            ))
        })
}

/// One dataset's history, read from the store: the versions of the live dataset, from its
/// creation ([`Manifest::incarnation`]: a dropped namesake's versions are not its history).
pub struct History {
    table: Table,
    /// The version that created the live dataset.
    first: u64,
}

impl History {
    /// The history of `table`'s live dataset, created at version `first` (the served
    /// manifest's [`Manifest::incarnation`]).
    pub fn new(table: Table, first: u64) -> Self {
        Self { table, first }
    }

    /// The retained versions, ascending (never empty for an existing dataset).
    pub async fn retained(&self) -> Result<Vec<u64>, QueryError> {
        let mut versions = self.table.listed_versions().await?;
        versions.retain(|v| *v >= self.first);
        if versions.is_empty() {
            return Err(QueryError::DatasetNotFound(self.table.name().to_string()));
        }
        Ok(versions)
    }

    pub async fn latest(&self) -> Result<u64, QueryError> {
        match self.table.latest_version().await {
            Err(strata_shared::Error::DatasetNotFound(name)) => {
                Err(QueryError::DatasetNotFound(name.to_string()))
            }
            other => Ok(other?),
        }
    }

    /// The manifest `at` names: 404 for a version never committed (or a time before the
    /// dataset existed), 410 naming the oldest retained version for one GC expired.
    pub async fn manifest(&self, at: At) -> Result<Manifest, QueryError> {
        match at {
            At::Version(v) => self.read(v).await,
            At::AsOf(time) => {
                let versions = self.retained().await?;
                // Commit times grow with versions (each commit reads the one before it), so
                // the newest version at or before `time` is found by bisection.
                let (mut lo, mut hi) = (0, versions.len());
                while lo < hi {
                    let mid = (lo + hi) / 2;
                    if self.read(versions[mid]).await?.created_at <= time {
                        lo = mid + 1;
                    } else {
                        hi = mid;
                    }
                }
                if lo > 0 {
                    return self.read(versions[lo - 1]).await;
                }
                let oldest = self.read(versions[0]).await?;
                let message = format!(
                    "{} has no version at {time}: its oldest retained version {} was committed at {}",
                    self.table.name(),
                    oldest.version,
                    oldest.created_at.to_rfc3339()
                );
                Err(if oldest.version == self.first {
                    QueryError::NoSuchVersion(message)
                } else {
                    QueryError::Gone(message)
                })
            }
        }
    }

    /// Manifest `version`, or why there is none.
    async fn read(&self, version: u64) -> Result<Manifest, QueryError> {
        if version < self.first {
            return Err(QueryError::NoSuchVersion(format!(
                "{} has no version {version}: it was created at version {} (the versions before \
                 are a dropped dataset's of the same name)",
                self.table.name(),
                self.first
            )));
        }
        match self.table.read_manifest(version).await {
            Ok(m) => Ok(m),
            Err(strata_shared::Error::ManifestNotFound { .. }) => Err(self.missing(version).await),
            Err(e) => Err(e.into()),
        }
    }

    /// Why `version` has no manifest: not committed yet, or expired.
    async fn missing(&self, version: u64) -> QueryError {
        let name = self.table.name();
        let latest = match self.latest().await {
            Ok(latest) => latest,
            Err(e) => return e,
        };
        if version > latest {
            return QueryError::NoSuchVersion(format!(
                "{name} has no version {version}: its latest is {latest}"
            ));
        }
        match self.retained().await {
            Ok(versions) => QueryError::Gone(format!(
                "version {version} of {name} was expired by garbage collection; the oldest retained version is {}",
                versions[0]
            )),
            Err(e) => e,
        }
    }

    /// The version range of a change feed: `until` defaults to the latest; `since` must be
    /// retained (the feed is meant to be replayed onto version `since`).
    pub async fn feed_range(
        &self,
        since: u64,
        until: Option<u64>,
    ) -> Result<(u64, u64), QueryError> {
        let name = self.table.name();
        let latest = self.latest().await?;
        let until = until.unwrap_or(latest);
        if until > latest {
            return Err(QueryError::NoSuchVersion(format!(
                "{name} has no version {until}: its latest is {latest}"
            )));
        }
        if since > until {
            return Err(QueryError::BadRequest(format!(
                "since ({since}) is after until ({until})"
            )));
        }
        let oldest = self.retained().await?[0];
        if since < oldest {
            return Err(QueryError::Gone(format!(
                "changes since version {since} of {name} are no longer retained; the oldest retained version is {oldest}"
            )));
        }
        Ok((since, until))
    }

    /// Manifest `until` and the delta files committed in `(since, until]`, by sequence (see
    /// the module comment).
    pub async fn deltas_between(
        &self,
        since: u64,
        until: u64,
    ) -> Result<(Manifest, Vec<DeltaFile>), QueryError> {
        let last = self.read(until).await?;
        let mut found = BTreeMap::new();
        let mut upper = until;
        let mut at = until;
        while upper > since {
            let manifest = if at == until {
                last.clone()
            } else {
                self.read(at).await?
            };
            for d in &manifest.deltas {
                if d.seq > since && d.seq <= upper {
                    found.insert(d.seq, d.clone());
                }
            }
            // Deltas at or below the watermark were merged: the manifest at the watermark
            // (the version that committed the newest of them) names them.
            upper = manifest.base_watermark_seq.min(upper);
            at = upper;
        }
        Ok((last, found.into_values().collect()))
    }
}

/// The schema of the change feed: `_version`, `_committed_at`, `_op` (`upsert` or
/// `delete`), then the table's columns, nullable (a delete carries only its key).
pub fn change_schema(table: &Schema) -> SchemaRef {
    let mut fields = vec![
        Field::new("_version", DataType::UInt64, false),
        Field::new(
            "_committed_at",
            DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())),
            false,
        ),
        Field::new("_op", DataType::Utf8, false),
    ];
    fields.extend(
        table
            .fields()
            .iter()
            .map(|f| f.as_ref().clone().with_nullable(true)),
    );
    Arc::new(Schema::new(fields))
}

/// One delta file as rows of the change feed (`schema` from [`change_schema`]).
pub fn change_batch(
    schema: &SchemaRef,
    table: &SchemaRef,
    file: &DeltaFile,
    delta: &LoadedDelta,
) -> Result<RecordBatch, QueryError> {
    let rows = delta.batch.num_rows();
    let ops = delta::op_column(&delta.batch)?;
    let op_names: StringArray = ops
        .values()
        .iter()
        .map(|&op| {
            Some(if op == Op::Delete as u8 {
                "delete"
            } else {
                "upsert"
            })
        })
        .collect();
    let mut columns: Vec<ArrayRef> = vec![
        Arc::new(UInt64Array::from_value(file.seq, rows)),
        Arc::new(
            TimestampMillisecondArray::from_value(file.created_at.timestamp_millis(), rows)
                .with_timezone("UTC"),
        ),
        Arc::new(op_names),
    ];
    columns.extend(
        delta::table_part(&delta.batch, table)?
            .columns()
            .iter()
            .cloned(),
    );
    Ok(RecordBatch::try_new(schema.clone(), columns)?)
}

/// Versions committed after `since`, waited for up to `wait` (a follower's long poll): the
/// latest version once it passes `since`, or `since` when the wait ends first.
pub async fn await_change(
    history: &History,
    since: u64,
    wait: std::time::Duration,
) -> Result<u64, QueryError> {
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let latest = history.latest().await?;
        if latest > since || tokio::time::Instant::now() >= deadline {
            return Ok(latest);
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}
