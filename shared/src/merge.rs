//! The merge rule, and the reference materialisation of `state(V)`.
//!
//! The rule (invariants 4–5): among the entries of one primary key, the entry with the highest
//! sequence number wins; if the winner is a delete, the key is absent. Base rows take part
//! with sequence `base_watermark_seq` (every delta in a manifest has a higher one). Readers
//! (queryd's overlay), compaction's sorted merge and the test oracles all decide through
//! [`supersedes`] / [`resolve`], so they cannot disagree.

use std::collections::HashMap;

use arrow::array::{BooleanArray, RecordBatch};
use arrow::compute::{concat_batches, filter_record_batch, interleave_record_batch};
use arrow::datatypes::SchemaRef;
use arrow::row::OwnedRow;
use object_store::ObjectStore;
use object_store::path::Path;

use crate::Result;
use crate::delta::{self, Op};
use crate::keys;
use crate::manifest::Manifest;
use crate::parquet_io;

/// One entry of a key: where it comes from in sequence order and what it does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Entry<T> {
    pub seq: u64,
    pub op: Op,
    pub value: T,
}

/// THE rule: does an entry at `candidate` replace one at `current`? Sequence numbers of one
/// key never tie (a key is at most once per delta file and each file has its own sequence).
pub fn supersedes(candidate: u64, current: u64) -> bool {
    candidate > current
}

/// The surviving value of one key among all its entries, or `None` if it was deleted.
pub fn resolve<T>(entries: impl IntoIterator<Item = Entry<T>>) -> Option<T> {
    let mut winner: Option<Entry<T>> = None;
    for entry in entries {
        match &winner {
            Some(w) if !supersedes(entry.seq, w.seq) => {}
            _ => winner = Some(entry),
        }
    }
    winner.and_then(|w| match w.op {
        Op::Upsert => Some(w.value),
        Op::Delete => None,
    })
}

/// `state(V)` from its parts: base rows that no delta touched, in base order, then the
/// surviving delta upserts in the order they were committed — by sequence number, and by key
/// within one sequence ("storage order"). `deltas` holds `(seq, batch with
/// _op)`. This is the straightforward reference; queryd keeps the same result incrementally.
pub fn materialize(
    schema: &SchemaRef,
    primary_key: &[String],
    base: &[RecordBatch],
    deltas: &[(u64, RecordBatch)],
) -> Result<RecordBatch> {
    let key = keys::key_indices(schema, primary_key)?;
    let base = concat_batches(schema, base)?;
    if deltas.is_empty() {
        return Ok(base);
    }

    // Latest entry per key over all deltas: (seq, op, delta index, row).
    let tables: Vec<RecordBatch> = deltas
        .iter()
        .map(|(_, d)| delta::table_part(d, schema))
        .collect::<Result<_>>()?;
    let mut latest: HashMap<OwnedRow, Entry<(usize, usize)>> = HashMap::new();
    for (i, ((seq, batch), table)) in deltas.iter().zip(&tables).enumerate() {
        let ops = delta::op_column(batch)?;
        let (_, rows) = keys::key_rows(table, &key)?;
        for r in 0..table.num_rows() {
            let entry = Entry {
                seq: *seq,
                op: Op::try_from(ops.value(r))?,
                value: (i, r),
            };
            let slot = latest.entry(rows.row(r).owned());
            match slot {
                std::collections::hash_map::Entry::Occupied(mut o) => {
                    if let Some(winner) = resolve_pair(*o.get(), entry) {
                        o.insert(winner);
                    }
                }
                std::collections::hash_map::Entry::Vacant(v) => {
                    v.insert(entry);
                }
            }
        }
    }

    // Base rows survive unless some delta names their key.
    let keep = if base.num_rows() == 0 {
        BooleanArray::from(Vec::<bool>::new())
    } else {
        let (_, base_rows) = keys::key_rows(&base, &key)?;
        (0..base.num_rows())
            .map(|r| Some(!latest.contains_key(&base_rows.row(r).owned())))
            .collect()
    };
    let kept = filter_record_batch(&base, &keep)?;

    let mut overlay: Vec<(u64, OwnedRow, (usize, usize))> = latest
        .into_iter()
        .filter_map(|(k, e)| resolve([e]).map(|pos| (e.seq, k, pos)))
        .collect();
    overlay.sort_by(|a, b| (a.0, &a.1).cmp(&(b.0, &b.1)));
    let positions: Vec<(usize, usize)> = overlay.into_iter().map(|(_, _, p)| p).collect();
    let table_refs: Vec<&RecordBatch> = tables.iter().collect();
    let overlay = interleave_record_batch(&table_refs, &positions)?;
    let overlay = RecordBatch::try_new(schema.clone(), overlay.columns().to_vec())?;
    Ok(concat_batches(schema, [&kept, &overlay])?)
}

/// The winner of two entries of one key, as an entry (tombstones kept: more deltas may follow).
fn resolve_pair<T: Copy>(current: Entry<T>, candidate: Entry<T>) -> Option<Entry<T>> {
    supersedes(candidate.seq, current.seq).then_some(candidate)
}

/// Reads every file of a manifest and materialises its state. The reference reader: simple,
/// whole-table, used by tests and as the oracle for faster paths.
pub async fn load_state(store: &dyn ObjectStore, manifest: &Manifest) -> Result<RecordBatch> {
    let schema = manifest.arrow_schema();
    let mut base = Vec::new();
    for file in &manifest.base_files {
        let (_, batches) = parquet_io::read(store, &Path::parse(&file.path)?).await?;
        for b in batches {
            base.push(RecordBatch::try_new(schema.clone(), b.columns().to_vec())?);
        }
    }
    let mut deltas = Vec::new();
    for d in &manifest.deltas {
        let (delta_schema, batches) = parquet_io::read(store, &Path::parse(&d.path)?).await?;
        deltas.push((d.seq, concat_batches(&delta_schema, &batches)?));
    }
    materialize(&schema, &manifest.primary_key, &base, &deltas)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{AsArray, Int64Array, UInt8Array};
    use arrow::datatypes::{DataType, Field, Int64Type, Schema};

    use super::*;

    #[test]
    fn highest_sequence_wins_and_tombstones_drop() {
        let e = |seq, op, value| Entry { seq, op, value };
        assert_eq!(
            resolve([
                e(1, Op::Upsert, "a"),
                e(3, Op::Upsert, "c"),
                e(2, Op::Upsert, "b")
            ]),
            Some("c")
        );
        assert_eq!(resolve([e(1, Op::Upsert, "a"), e(2, Op::Delete, "")]), None);
        assert_eq!(
            resolve([e(2, Op::Delete, ""), e(3, Op::Upsert, "again")]),
            Some("again")
        );
        assert_eq!(resolve(Vec::<Entry<&str>>::new()), None);
    }

    #[test]
    fn materialize_applies_deltas_in_sequence_order() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("v", DataType::Int64, false),
        ]));
        let pk = vec!["id".to_string()];
        let base = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(Int64Array::from(vec![1, 2, 3, 4])),
                Arc::new(Int64Array::from(vec![10, 20, 30, 40])),
            ],
        )
        .unwrap();
        let dschema = delta::delta_schema(&schema, &pk);
        let delta = |ids: Vec<i64>, vs: Vec<Option<i64>>, ops: Vec<u8>| {
            RecordBatch::try_new(
                dschema.clone(),
                vec![
                    Arc::new(Int64Array::from(ids)),
                    Arc::new(Int64Array::from(vs)),
                    Arc::new(UInt8Array::from(ops)),
                ],
            )
            .unwrap()
        };
        // seq 2: update 2, delete 3, insert 7 and 9; seq 3: delete 9, insert 5, re-update 2.
        // Passed out of order on purpose: sequence decides, not position.
        let deltas = vec![
            (
                3,
                delta(vec![2, 5, 9], vec![Some(22), Some(50), None], vec![0, 0, 1]),
            ),
            (
                2,
                delta(
                    vec![2, 3, 7, 9],
                    vec![Some(21), None, Some(70), Some(90)],
                    vec![0, 1, 0, 0],
                ),
            ),
        ];
        let state = materialize(&schema, &pk, &[base], &deltas).unwrap();
        let ids = state
            .column(0)
            .as_primitive::<Int64Type>()
            .values()
            .to_vec();
        let vs = state
            .column(1)
            .as_primitive::<Int64Type>()
            .values()
            .to_vec();
        // Delta rows by sequence, then key: 7 (seq 2) before 2 and 5 (seq 3).
        assert_eq!(ids, vec![1, 4, 7, 2, 5]);
        assert_eq!(vs, vec![10, 40, 70, 22, 50]);
        assert_eq!(state.schema(), schema);
    }

    /// Invariant 7: storage order is a fold, so a compaction — folding the deltas up to some
    /// `S` into the base — keeps it: materialising the rest of the deltas over the compacted
    /// base gives the state row for row, in the same order, as materialising them all.
    #[test]
    fn folding_a_prefix_of_the_deltas_into_the_base_keeps_storage_order() {
        use rand::rngs::StdRng;
        use rand::{Rng, SeedableRng};

        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("v", DataType::Int64, true),
        ]));
        let pk = vec!["id".to_string()];
        let dschema = delta::delta_schema(&schema, &pk);
        for seed in 0..50u64 {
            let mut rng = StdRng::seed_from_u64(seed);
            // A base out of key order (a compaction's output is), keys unique.
            let mut ids: Vec<i64> = (0..60).map(|i| i * 3).collect();
            ids.swap(0, 59);
            let base = RecordBatch::try_new(
                schema.clone(),
                vec![
                    Arc::new(Int64Array::from(ids.clone())),
                    Arc::new(Int64Array::from(ids.clone())),
                ],
            )
            .unwrap();
            let deltas: Vec<(u64, RecordBatch)> = (1..=rng.random_range(2..7u64))
                .map(|seq| {
                    let mut keys: Vec<i64> = (0..rng.random_range(1..25))
                        .map(|_| rng.random_range(-10..200))
                        .collect();
                    keys.sort_unstable();
                    keys.dedup();
                    let ops: Vec<u8> = keys.iter().map(|_| rng.random_bool(0.3) as u8).collect();
                    let vs: Vec<Option<i64>> = keys
                        .iter()
                        .zip(&ops)
                        .map(|(_, &op)| (op == 0).then(|| rng.random_range(0..1000)))
                        .collect();
                    let batch = RecordBatch::try_new(
                        dschema.clone(),
                        vec![
                            Arc::new(Int64Array::from(keys)),
                            Arc::new(Int64Array::from(vs)),
                            Arc::new(UInt8Array::from(ops)),
                        ],
                    )
                    .unwrap();
                    (seq, batch)
                })
                .collect();
            let whole = materialize(&schema, &pk, std::slice::from_ref(&base), &deltas).unwrap();
            for split in 0..=deltas.len() {
                let compacted =
                    materialize(&schema, &pk, std::slice::from_ref(&base), &deltas[..split])
                        .unwrap();
                let rest = materialize(&schema, &pk, &[compacted], &deltas[split..]).unwrap();
                assert_eq!(
                    rest, whole,
                    "seed {seed}: deltas up to {split} folded first"
                );
            }
        }
    }
}
