//! The delta side of a compaction: every merged delta file read whole and combined into one
//! winning entry per key (decided by [`merge::supersedes`], tombstones kept), sorted by key.

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

/// The merged deltas, combined: one winning entry per key, sorted by key.
pub(super) struct DeltaSide {
    /// The key of every delta row read, in one buffer (no allocation per row).
    pub(super) rows: Rows,
    /// For each winner, in key order: its row in `rows`.
    pub(super) keys: Vec<usize>,
    /// Sequence and op of each winner, and its row in `upserts` if it is an upsert.
    pub(super) entries: Vec<Entry<Option<usize>>>,
    /// The winning upsert rows in key order (table columns, all nullable).
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

        let mut positions = Vec::new();
        let mut keys = Vec::new();
        let mut entries = Vec::new();
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
            let upsert_row = (e.op == Op::Upsert).then(|| {
                positions.push(e.value);
                positions.len() - 1
            });
            keys.push(winner);
            entries.push(Entry {
                seq: e.seq,
                op: e.op,
                value: upsert_row,
            });
            at = end;
        }
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
            entries,
            upserts,
            rows_read,
        })
    }

    pub(super) fn len(&self) -> usize {
        self.keys.len()
    }

    /// The key of winner `i`.
    pub(super) fn key(&self, i: usize) -> Row<'_> {
        self.rows.row(self.keys[i])
    }
}
