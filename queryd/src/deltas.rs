//! Delta files as queryd reads them, and the one rule for combining them: the newest entry
//! of each key ([`strata_shared::merge::supersedes`]) wins. Both the in-memory overlay
//! ([`crate::build::apply`]) and the engine's cold path over Parquet use [`combine`].

use arrow::array::{AsArray, RecordBatch, UInt8Array, UInt32Array};
use arrow::compute::{concat_batches, take, take_record_batch};
use arrow::datatypes::SchemaRef;
use strata_shared::delta::{self, Op};
use strata_shared::keys;
use strata_shared::merge::supersedes;

use crate::error::QueryError;

/// One delta file, read (cheap to clone: the batch's buffers are shared).
#[derive(Clone)]
pub struct LoadedDelta {
    pub seq: u64,
    pub path: String,
    /// The table's columns plus `_op`.
    pub batch: RecordBatch,
}

/// The newest entry of every key over `deltas`, in key order: the table's columns (non-key
/// columns nullable: deletes carry only their key), the winning `_op` and the sequence number
/// of each key.
pub fn combine(
    schema: &SchemaRef,
    primary_key: &[usize],
    deltas: &[LoadedDelta],
) -> Result<Combined, QueryError> {
    let mut tables = Vec::with_capacity(deltas.len());
    let mut ops: Vec<u8> = Vec::new();
    let mut seqs: Vec<u64> = Vec::new();
    for d in deltas {
        tables.push(delta::table_part(&d.batch, schema)?);
        ops.extend(delta::op_column(&d.batch)?.values().iter());
        seqs.extend(std::iter::repeat_n(d.seq, d.batch.num_rows()));
    }
    let relaxed = match tables.first() {
        Some(t) => t.schema(),
        None => return Err(QueryError::Internal("combining no deltas".into())),
    };
    let all = concat_batches(&relaxed, &tables)?;
    let (_, rows) = keys::key_rows(&all, primary_key)?;
    let mut order: Vec<u32> = (0..all.num_rows() as u32).collect();
    order.sort_by(|&a, &b| rows.row(a as usize).cmp(&rows.row(b as usize)));
    // One winner per run of equal keys.
    let mut winners: Vec<u32> = Vec::new();
    for &i in &order {
        match winners.last_mut() {
            Some(w) if rows.row(*w as usize) == rows.row(i as usize) => {
                if supersedes(seqs[i as usize], seqs[*w as usize]) {
                    *w = i;
                }
            }
            _ => winners.push(i),
        }
    }
    let seqs = winners.iter().map(|&w| seqs[w as usize]).collect();
    let indices = UInt32Array::from(winners);
    let rows = take_record_batch(&all, &indices)?;
    let ops = take(&UInt8Array::from(ops), &indices, None)?;
    Ok(Combined {
        rows,
        ops: ops.as_primitive().clone(),
        seqs,
    })
}

/// The newest entry of each key over some deltas, in key order.
pub struct Combined {
    pub rows: RecordBatch,
    pub ops: UInt8Array,
    pub seqs: Vec<u64>,
}

impl Combined {
    /// The surviving upserts in storage order: by sequence, then key.
    pub fn upserts(&self) -> Result<RecordBatch, QueryError> {
        let mut order: Vec<u32> = (0..self.rows.num_rows() as u32)
            .filter(|&r| self.ops.value(r as usize) == Op::Upsert as u8)
            .collect();
        // Stable: rows are in key order already.
        order.sort_by_key(|&r| self.seqs[r as usize]);
        Ok(take_record_batch(&self.rows, &UInt32Array::from(order))?)
    }
}
