//! Delta ingest: validate a request's delta, commit it as one delta file plus one manifest
//! version, and acknowledge only after the manifest landed.
//!
//! **Group commit.** Each dataset has one committer task fed by a queue. The committer takes the
//! first waiting request and every request that queued up behind it (at most
//! [`MAX_GROUP_REQUESTS`] requests and about [`MAX_GROUP_ROWS`] rows), merges their deltas into
//! one file (for a key touched by several of them, the request that arrived last wins: they
//! were concurrent, so any order is a valid one, and arrival order is the one we promise) and
//! commits one version that records every member's transaction id. While that commit is in
//! flight, new requests queue for the next group. A request is validated before it queues, so
//! a bad request never holds up or fails a group.
//!
//! **Idempotency.** A request's transaction id is `client-{Idempotency-Key}`, or a fresh
//! `ingest-{uuidv7}`. The id is recorded in the manifest (`recent_txns`, with the request's
//! counts), so a retry is answered from there, also after a restart: before the request joins
//! a group (its key is looked up in the newest manifest storaged knows), again by the
//! committer just before it writes (a retry that raced the original into the queue is not
//! written twice), and by the commit protocol itself (a retry committed elsewhere).
//! Reusing a key with a different body is not detected: the first body wins.
//!
//! The committer task is process-local, but correctness never depends on it: the commit
//! protocol's put-if-absent decides between processes, and resolution by transaction id
//! answers lost responses (`strata_shared::commit`).
//!
//! **The latest manifest** a request is validated against, and a group's commit starts from,
//! is the newest one this process read or committed ([`Latest`]), not one discovered anew for
//! every request (four store requests). It is a hint: when another process (compactord, a
//! second storaged) committed since, the first put-if-absent fails and the protocol reads the
//! real latest version; a retry the hint does not know as committed is resolved by
//! transaction id at commit. So a stale hint costs one failed put, never a wrong answer.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use bytes::Bytes;
use chrono::Utc;
use object_store::ObjectStore;
use strata_queryd_api::internal::Notifier;
use strata_shared::commit::Table;
use strata_shared::delta::{self, Op};
use strata_shared::layout::{self, DatasetName};
use strata_shared::manifest::{DeltaFile, Manifest, Operation, Txn, TxnRecord};
use strata_shared::{Error, parquet_io};
use strata_storaged_api::deltas::{DeltaCommitted, MAX_IDEMPOTENCY_KEY_BYTES};
use tokio::sync::{mpsc, oneshot};

use crate::budget::{Busy, DecodeBudget};
use crate::delta_input::{self, DeltaFormat};
use crate::metrics::Metrics;
use crate::runs::{Ended, RunLog};
use strata_storaged_api::runs::RunKind;

/// At most this many requests share one commit.
pub const MAX_GROUP_REQUESTS: usize = 64;
/// A group stops growing at this many rows (a single larger request still commits alone).
pub const MAX_GROUP_ROWS: usize = 1 << 20;
/// Requests waiting for a dataset's committer; more wait to enqueue (back-pressure).
const QUEUE_DEPTH: usize = 1024;
/// How often a committer regroups when members turn out to be committed by other requests.
const MAX_REGROUPS: usize = 4;

/// Why a delta request failed.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// This request's own failure (unknown dataset, invalid body, …).
    #[error(transparent)]
    Table(#[from] Error),
    /// A failure of the group commit this request was part of, shared by every member.
    #[error(transparent)]
    Group(Arc<GroupError>),
    /// A blocking task that decoded the body panicked: a bug, not bad input.
    #[error("{0}")]
    TaskFailed(String),
    #[error("invalid Idempotency-Key: {0}")]
    InvalidKey(&'static str),
    #[error("the committer of dataset {0} stopped before answering")]
    CommitterStopped(DatasetName),
    #[error(transparent)]
    Busy(#[from] Busy),
}

/// Why a group commit failed.
#[derive(Debug, thiserror::Error)]
pub enum GroupError {
    #[error(transparent)]
    Table(#[from] Error),
    /// The blocking task that encoded the group's delta file panicked: a bug.
    #[error("{0}")]
    TaskFailed(String),
}

/// One delta request as the handler hands it over.
pub struct DeltaRequest {
    pub dataset: String,
    pub format: DeltaFormat,
    pub body: Bytes,
    pub idempotency_key: Option<String>,
}

/// A validated request waiting for its group.
struct Job {
    txn: Txn,
    delta: RecordBatch,
    /// The table shape the delta was validated against; a group shares one.
    schema: SchemaRef,
    primary_key: Vec<String>,
    reply: oneshot::Sender<Result<DeltaCommitted, Arc<GroupError>>>,
}

/// The ingest service: one committer per dataset, started on first use. Cheap to clone.
#[derive(Clone)]
pub struct Ingest {
    store: Arc<dyn ObjectStore>,
    budget: DecodeBudget,
    metrics: Arc<Metrics>,
    runs: RunLog,
    committers: Arc<Mutex<HashMap<DatasetName, mpsc::Sender<Job>>>>,
    latest: Latest,
    notifier: Notifier,
}

/// The newest manifest this process read or committed, per dataset (see the module docs).
#[derive(Clone, Default)]
struct Latest(Arc<Mutex<HashMap<DatasetName, Arc<Manifest>>>>);

impl Latest {
    /// The hint for `table`, read from the store the first time.
    async fn get(&self, table: &Table) -> Result<Arc<Manifest>, Error> {
        if let Some(manifest) = self.lock().get(table.name()) {
            return Ok(manifest.clone());
        }
        Ok(self.set(table.load_latest().await?))
    }

    /// Records `manifest` unless a newer one is known already.
    fn set(&self, manifest: Manifest) -> Arc<Manifest> {
        let mut known = self.lock();
        match known.get(&manifest.dataset) {
            Some(newer) if newer.version >= manifest.version => newer.clone(),
            _ => {
                let manifest = Arc::new(manifest);
                known.insert(manifest.dataset.clone(), manifest.clone());
                manifest
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<DatasetName, Arc<Manifest>>> {
        // Every operation is one lookup or insert: the map stays consistent after a panic.
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl Ingest {
    pub fn new(
        store: Arc<dyn ObjectStore>,
        notifier: Notifier,
        budget: DecodeBudget,
        metrics: Arc<Metrics>,
        runs: RunLog,
    ) -> Self {
        Self {
            store,
            budget,
            metrics,
            runs,
            committers: Arc::default(),
            latest: Latest::default(),
            notifier,
        }
    }

    /// Validates, commits (possibly together with concurrent requests) and answers once the
    /// manifest holding the delta landed.
    pub async fn submit(&self, request: DeltaRequest) -> Result<DeltaCommitted, IngestError> {
        let result = self.commit(request).await;
        match &result {
            Ok(c) => self.metrics.delta_committed(c.upserts, c.deletes),
            Err(_) => self.metrics.delta_refused(),
        }
        result
    }

    async fn commit(&self, request: DeltaRequest) -> Result<DeltaCommitted, IngestError> {
        let name = DatasetName::new(request.dataset)?;
        let txn_id = match &request.idempotency_key {
            Some(key) => format!("client-{}", checked_key(key)?),
            None => format!("ingest-{}", uuid::Uuid::now_v7()),
        };
        let manifest = self
            .latest
            .get(&Table::new(self.store.clone(), name.clone()))
            .await?;
        if manifest.primary_key.is_empty() {
            return Err(Error::Conflict(format!(
                "dataset {name} has no primary key, so it takes no deltas"
            ))
            .into());
        }
        if let Some(record) = manifest.txn_record(&txn_id) {
            return Ok(answer(&name, record, None));
        }

        let schema = manifest.arrow_schema();
        let primary_key = manifest.primary_key.clone();
        let input = {
            let (schema, primary_key) = (schema.clone(), primary_key.clone());
            let (format, body) = (request.format, request.body);
            // Room to decode, from the global budget, held until the rows are parsed.
            let _room = self.budget.admit(body.len(), format).await?;
            // Parsing and sorting are CPU work: keep them off the async workers.
            tokio::task::spawn_blocking(move || {
                delta_input::parse(format, body, &schema, &primary_key)
            })
            .await
            .map_err(|e| IngestError::TaskFailed(task_failed(e)))??
        };

        let (reply, answered) = oneshot::channel();
        let job = Job {
            txn: Txn::ingest(txn_id, input.upserts, input.deletes),
            delta: input.batch,
            schema,
            primary_key,
            reply,
        };
        self.enqueue(&name, job).await?;
        match answered.await {
            Ok(result) => result.map_err(IngestError::Group),
            Err(_) => Err(IngestError::CommitterStopped(name)),
        }
    }

    async fn enqueue(&self, name: &DatasetName, job: Job) -> Result<(), IngestError> {
        let mut job = job;
        // A committer only stops by panicking; a second one is started once, then we give up.
        for _ in 0..2 {
            let sender = self.committer(name);
            match sender.send(job).await {
                Ok(()) => return Ok(()),
                Err(mpsc::error::SendError(returned)) => {
                    job = returned;
                    self.lock_committers().remove(name);
                }
            }
        }
        Err(IngestError::CommitterStopped(name.clone()))
    }

    fn lock_committers(
        &self,
    ) -> std::sync::MutexGuard<'_, HashMap<DatasetName, mpsc::Sender<Job>>> {
        // The map stays consistent even if a holder panicked: every operation is one insert
        // or remove.
        self.committers
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn committer(&self, name: &DatasetName) -> mpsc::Sender<Job> {
        let mut committers = self.lock_committers();
        if let Some(sender) = committers.get(name)
            && !sender.is_closed()
        {
            return sender.clone();
        }
        let (sender, receiver) = mpsc::channel(QUEUE_DEPTH);
        let table = Table::new(self.store.clone(), name.clone());
        tokio::spawn(run_committer(
            table,
            receiver,
            self.latest.clone(),
            self.notifier.clone(),
            self.metrics.clone(),
            self.runs.clone(),
        ));
        committers.insert(name.clone(), sender.clone());
        sender
    }
}

/// A blocking task that panicked is a bug, not bad input: it answers as an internal error.
fn task_failed(e: tokio::task::JoinError) -> String {
    format!("a blocking task of the delta ingest failed: {e}")
}

/// An idempotency key is 1–256 bytes of visible ASCII (it is stored in every manifest that
/// remembers it).
fn checked_key(key: &str) -> Result<&str, IngestError> {
    if key.is_empty() || key.len() > MAX_IDEMPOTENCY_KEY_BYTES {
        return Err(IngestError::InvalidKey("it must be 1 to 256 bytes"));
    }
    if !key.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(IngestError::InvalidKey("only visible ASCII is allowed"));
    }
    Ok(key)
}

/// The answer for a recorded transaction. Ingest records carry their counts; `job` fills in
/// for a record that has none.
fn answer(name: &DatasetName, record: &TxnRecord, job: Option<&Txn>) -> DeltaCommitted {
    let fallback = |f: fn(&Txn) -> Option<u64>| job.and_then(f).unwrap_or(0);
    DeltaCommitted {
        dataset: name.to_string(),
        version: record.version,
        upserts: record.upserts.unwrap_or_else(|| fallback(|t| t.upserts)),
        deletes: record.deletes.unwrap_or_else(|| fallback(|t| t.deletes)),
    }
}

/// One dataset's committer: takes a group off the queue, commits it, answers its members.
async fn run_committer(
    table: Table,
    mut queue: mpsc::Receiver<Job>,
    latest: Latest,
    notifier: Notifier,
    metrics: Arc<Metrics>,
    runs: RunLog,
) {
    let mut held: Option<Job> = None;
    loop {
        let first = match held.take() {
            Some(job) => job,
            None => match queue.recv().await {
                Some(job) => job,
                None => return,
            },
        };
        let mut rows = first.delta.num_rows();
        let mut group = vec![first];
        while group.len() < MAX_GROUP_REQUESTS && rows < MAX_GROUP_ROWS {
            let Ok(job) = queue.try_recv() else { break };
            let fits = job.schema == group[0].schema
                && job.primary_key == group[0].primary_key
                && rows + job.delta.num_rows() <= MAX_GROUP_ROWS;
            if !fits {
                // It starts the next group (validated against another schema, or too big).
                held = Some(job);
                break;
            }
            rows += job.delta.num_rows();
            group.push(job);
        }
        let started = std::time::Instant::now();
        let started_at = chrono::Utc::now();
        let (results, landed) = commit_group(&table, &latest, &group, &metrics).await;
        metrics.group_commit(started.elapsed(), landed.is_some());
        let requests = group.len() as u64;
        let failure = results.values().find_map(|r| r.as_ref().err());
        // A group whose members were all committed before (retries) wrote nothing: no run.
        let ended = match (&landed, failure) {
            (Some(landed), _) => Some(Ended::Committed {
                version: landed.version,
                rows: landed.rows,
                bytes: landed.bytes,
                requests,
            }),
            (None, Some(e)) => Some(Ended::Failed {
                requests,
                error: e.to_string(),
            }),
            (None, None) => None,
        };
        if let Some(ended) = ended {
            runs.record(table.name().as_str(), RunKind::Ingest, started_at, ended);
        }
        if let Some(landed) = landed {
            notifier.notify(table.name().as_str(), landed.version);
        }
        for job in group {
            // Members with one transaction id (a retry queued next to its original) share
            // its result. A missing result would be a bug in commit_group.
            let result = results.get(&job.txn.id).cloned().unwrap_or_else(|| {
                Err(Arc::new(GroupError::Table(Error::Conflict(
                    "the group commit lost this request; send it again".into(),
                ))))
            });
            // Ignored: the client went away; its delta is committed all the same.
            let _ = job.reply.send(result);
        }
    }
}

type Results = HashMap<String, Result<DeltaCommitted, Arc<GroupError>>>;

/// What a group commit committed: its version and its delta file's rows and bytes.
struct Landed {
    version: u64,
    rows: u64,
    bytes: u64,
}

/// Commits a group: every member not yet committed lands in one delta file and one version.
/// Returns each transaction id's result and the version this group committed, if it did.
async fn commit_group(
    table: &Table,
    hint: &Latest,
    group: &[Job],
    metrics: &Metrics,
) -> (Results, Option<Landed>) {
    let name = table.name();
    let mut results = Results::new();
    // Members still to commit: the first member of each transaction id (a retry that queued
    // next to its original shares the original's result).
    let mut pending: Vec<&Job> = Vec::new();
    for job in group {
        if !pending.iter().any(|p| p.txn.id == job.txn.id) {
            pending.push(job);
        }
    }
    let fail = |results: &mut Results, pending: &mut Vec<&Job>, e: Arc<GroupError>| {
        for job in pending.drain(..) {
            results.insert(job.txn.id.clone(), Err(e.clone()));
        }
    };
    for attempt in 0..MAX_REGROUPS {
        // Members an earlier request already committed are answered from their record. The
        // first attempt starts from the hint; a regroup reads the store again.
        let latest = match attempt {
            0 => hint.get(table).await.map(|m| m.as_ref().clone()),
            _ => table
                .load_latest()
                .await
                .map(|m| hint.set(m).as_ref().clone()),
        };
        let latest = match latest {
            Ok(m) => m,
            Err(e) => {
                fail(&mut results, &mut pending, Arc::new(e.into()));
                break;
            }
        };
        pending.retain(|job| match latest.txn_record(&job.txn.id) {
            Some(record) => {
                let committed = answer(name, record, Some(&job.txn));
                results.insert(job.txn.id.clone(), Ok(committed));
                false
            }
            None => true,
        });
        if pending.is_empty() {
            break;
        }
        match write_and_commit(table, &pending, latest).await {
            Ok(manifest) => {
                hint.set(manifest.clone());
                for job in pending.drain(..) {
                    let committed = match manifest.txn_record(&job.txn.id) {
                        Some(record) => answer(name, record, Some(&job.txn)),
                        None => DeltaCommitted {
                            dataset: name.to_string(),
                            version: manifest.version,
                            upserts: job.txn.upserts.unwrap_or(0),
                            deletes: job.txn.deletes.unwrap_or(0),
                        },
                    };
                    results.insert(job.txn.id.clone(), Ok(committed));
                }
                // The file this commit added is the newest delta it names.
                let (rows, bytes) = manifest.deltas.last().map_or((0, 0), |d| (d.rows, d.bytes));
                let landed = Landed {
                    version: manifest.version,
                    rows,
                    bytes,
                };
                return (results, Some(landed));
            }
            // Another request committed some members meanwhile: regroup without them.
            Err(GroupError::Table(Error::TxnsPartlyCommitted { .. }))
                if attempt + 1 < MAX_REGROUPS =>
            {
                metrics.regroup();
            }
            Err(e) => {
                fail(&mut results, &mut pending, Arc::new(e));
                break;
            }
        }
    }
    (results, None)
}

/// Writes the merged delta file of `jobs` (put-if-absent) and commits the version that adds
/// it and records every job's transaction. A failed commit leaves the file unreferenced, for GC.
async fn write_and_commit(
    table: &Table,
    jobs: &[&Job],
    latest: Manifest,
) -> Result<Manifest, GroupError> {
    let Some(first) = jobs.first() else {
        return Err(Error::InvalidInput("an empty group has nothing to commit".into()).into());
    };
    let schema = first.schema.clone();
    let primary_key = first.primary_key.clone();
    let batches: Vec<RecordBatch> = jobs.iter().map(|j| j.delta.clone()).collect();
    let key = primary_key.clone();
    let (bytes, rows, deletes) = tokio::task::spawn_blocking(move || -> Result<_, Error> {
        // Jobs are in arrival order, so the latest request's row of a shared key wins.
        let merged = delta::merge_in_order(&batches, &key)?;
        let deletes = delta::op_column(&merged)?
            .values()
            .iter()
            .filter(|op| **op == Op::Delete as u8)
            .count() as u64;
        let bytes = parquet_io::encode(merged.schema(), std::slice::from_ref(&merged))?;
        Ok((bytes, merged.num_rows() as u64, deletes))
    })
    .await
    .map_err(|e| GroupError::TaskFailed(task_failed(e)))??;

    // The file holds no sequence number: its seq is the version that adds it, known only
    // when that commit attempt drafts it.
    let created_at = Utc::now();
    let path = layout::delta_file_path(table.name(), created_at, uuid::Uuid::now_v7());
    let size = bytes.len() as u64;
    parquet_io::put_new(table.store().as_ref(), &path, bytes).await?;

    let txns: Vec<Txn> = jobs.iter().map(|j| j.txn.clone()).collect();
    let outcome = table
        // `latest` was read just now: the commit's first attempt starts from it.
        .commit_txns_from(Some(latest), &txns, Operation::Ingest, |draft| {
            if draft.schema != *schema || draft.primary_key != primary_key {
                return Err(Error::Conflict(format!(
                    "the schema of dataset {} changed while the delta waited; send it again",
                    draft.dataset
                )));
            }
            draft.deltas.push(DeltaFile {
                path: path.to_string(),
                seq: draft.version,
                rows,
                bytes: size,
                upserts: rows - deletes,
                deletes,
                created_at,
            });
            Ok(())
        })
        .await?;
    Ok(outcome.manifest)
}
