//! The delta side of a compaction: every merged delta file read whole and combined into one
//! winning entry per key (decided by [`merge::supersedes`], tombstones kept). The winners'
//! keys are sorted (the merge asks whether a base key has one); their upserts are in storage
//! order (sequence, then key), the order in which the run appends them after the base.

use arrow::array::{ArrayRef, RecordBatch};
use arrow::compute::concat_batches;
use arrow::datatypes::SchemaRef;
use arrow::row::{Row, RowConverter, Rows};
use futures::{StreamExt, TryStreamExt};
use object_store::ObjectStore;
use object_store::path::Path;

use strata_shared::delta::{self, Op};
use strata_shared::manifest::DeltaFile;
use strata_shared::merge::{self, Entry};
use strata_shared::{Result, parquet_io};

/// Delta files fetched and decoded at a time while the side is built: enough that fetches
/// overlap each other and the decoding; a file's raw bytes live only until it is decoded.
const DELTA_READ_AHEAD: usize = 4;

async fn read_delta(
    store: &dyn ObjectStore,
    file: &DeltaFile,
) -> Result<(SchemaRef, Vec<RecordBatch>)> {
    parquet_io::read(store, &Path::parse(&file.path)?).await
}

/// The merged deltas, combined: one winning entry per key.
pub(super) struct DeltaSide {
    /// The key of every delta row read, in one buffer (no allocation per row).
    rows: Rows,
    /// For each winner, in key order: its row in `rows`.
    keys: Vec<usize>,
    /// The winning upsert rows in storage order: by sequence, then key (table columns, all
    /// nullable) — `strata_shared::merge::materialize`'s order of surviving delta rows.
    pub(super) upserts: RecordBatch,
    pub(super) rows_read: u64,
}

impl DeltaSide {
    pub(super) async fn load(
        store: &dyn ObjectStore,
        schema: &SchemaRef,
        key: &[usize],
        converter: &RowConverter,
        merged: &[DeltaFile],
    ) -> Result<Self> {
        let mut tables = Vec::with_capacity(merged.len());
        let mut rows = converter.empty_rows(0, 0);
        // Per delta row, in the order of `rows`: its entry, valued by (file, row in file).
        let mut candidates: Vec<Entry<(usize, usize)>> = Vec::new();
        // The futures are made up front (they do nothing until polled): a stream mapping with
        // a closure would not prove `Send` for the run's future.
        let reads: Vec<_> = merged.iter().map(|f| read_delta(store, f)).collect();
        let mut files = futures::stream::iter(reads).buffered(DELTA_READ_AHEAD);
        let mut i = 0;
        while let Some((file_schema, batches)) = files.try_next().await? {
            let seq = merged[i].seq;
            let batch = concat_batches(&file_schema, &batches)?;
            let table = delta::table_part(&batch, schema)?;
            let ops = delta::op_column(&batch)?;
            let columns: Vec<ArrayRef> = key.iter().map(|&c| table.column(c).clone()).collect();
            converter.append(&mut rows, &columns)?;
            for r in 0..table.num_rows() {
                candidates.push(Entry {
                    seq,
                    op: Op::try_from(ops.value(r))?,
                    value: (i, r),
                });
            }
            tables.push(table);
            i += 1;
        }
        let rows_read = candidates.len() as u64;

        // Candidates in key order. Each file is sorted by key already (`delta::prepare`), and
        // a stable sort merges such runs in about n·log(files) comparisons.
        let mut order: Vec<usize> = (0..candidates.len()).collect();
        order.sort_by(|&a, &b| rows.row(a).cmp(&rows.row(b)));

        // Upsert winners as (seq, position in the files); their key order is kept by the
        // stable sort on `seq` below.
        let mut upserts: Vec<(u64, (usize, usize))> = Vec::new();
        let mut keys = Vec::new();
        let mut at = 0;
        while at < order.len() {
            // One key: the candidates `order[at..end]`; the winner by THE rule.
            let mut end = at + 1;
            while end < order.len() && rows.row(order[end]) == rows.row(order[at]) {
                end += 1;
            }
            let mut winner = order[at];
            for &c in &order[at + 1..end] {
                if merge::supersedes(candidates[c].seq, candidates[winner].seq) {
                    winner = c;
                }
            }
            let e = &candidates[winner];
            if e.op == Op::Upsert {
                upserts.push((e.seq, e.value));
            }
            keys.push(winner);
            at = end;
        }
        upserts.sort_by_key(|&(seq, _)| seq);
        let positions: Vec<(usize, usize)> = upserts.into_iter().map(|(_, p)| p).collect();
        let upserts = match tables.first() {
            Some(first) => {
                let refs: Vec<&RecordBatch> = tables.iter().collect();
                let picked = arrow::compute::interleave_record_batch(&refs, &positions)?;
                RecordBatch::try_new(first.schema(), picked.columns().to_vec())?
            }
            None => RecordBatch::new_empty(schema.clone()),
        };
        Ok(Self {
            rows,
            keys,
            upserts,
            rows_read,
        })
    }

    /// Whether a merged delta names `key` (as an upsert or a delete): then the base row with
    /// that key does not survive the merge. Every merged delta is newer than the base (the
    /// caller checks), so its entry supersedes the base row ([`merge::supersedes`]).
    pub(super) fn names(&self, key: Row<'_>) -> bool {
        self.keys
            .binary_search_by(|&k| self.rows.row(k).cmp(&key))
            .is_ok()
    }
}
