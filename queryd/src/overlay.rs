//! Read-time merge of deltas (`ARCHITECTURE.md` §3): a version with deltas is its base layer
//! plus an [`Overlay`] — the rows deltas wrote, as segments appended one per applied batch of
//! deltas, each with its own indexes — and a bitmap of the rows (base or overlay) that a
//! newer delta replaced or deleted.
//!
//! Applying a new version copies only what its deltas touch: the base layer and the older
//! segments are shared by `Arc`, the bitmap copies only the 64Ki-row blocks it changes, and
//! the new segment holds just the new rows. Trailing segments are merged when the newest is
//! no smaller than half the one before it (dropping their deleted rows), so there are
//! O(log n) segments and each row is copied O(log n) times over its life in the overlay.
//!
//! Storage order with deltas: untouched base rows in base order, then the surviving delta
//! rows in the order they were committed — by sequence number, and by key within one
//! sequence (`strata_shared::merge::materialize` defines the same). Which entry of a key wins
//! is decided by `strata_shared::merge::supersedes`, the rule every reader and the compactor
//! share.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, BooleanArray, RecordBatch, UInt8Array, UInt32Array};
use arrow::compute::{cast, concat_batches, filter_record_batch, take, take_record_batch};
use arrow::datatypes::{DataType, SchemaRef};
use strata_shared::delta::{self, Op};
use strata_shared::keys;
use strata_shared::manifest::{DeltaFile, Manifest};
use strata_shared::merge::supersedes;

use crate::encode;
use crate::error::QueryError;
use crate::index::{KeyRef, accessor};
use crate::state::{Chunks, DatasetState, Layer};

/// Rows per bitmap block: a delta copies the blocks it touches, not the whole bitmap.
const BLOCK_BITS: usize = 1 << 16;
const BLOCK_WORDS: usize = BLOCK_BITS / 64;

/// Base row ids that deltas replaced or deleted (copy-on-write blocks of 64Ki bits).
#[derive(Clone, Default)]
pub struct Deleted {
    blocks: Vec<Option<Arc<[u64; BLOCK_WORDS]>>>,
    len: usize,
}

impl Deleted {
    /// How many rows are deleted.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn contains(&self, id: u32) -> bool {
        let id = id as usize;
        match self.blocks.get(id / BLOCK_BITS) {
            Some(Some(block)) => block[(id % BLOCK_BITS) / 64] & (1 << (id % 64)) != 0,
            _ => false,
        }
    }

    /// Marks `id` deleted (copying its block if another version shares it).
    fn insert(&mut self, id: u32) {
        let id = id as usize;
        let b = id / BLOCK_BITS;
        if self.blocks.len() <= b {
            self.blocks.resize(b + 1, None);
        }
        let block = self.blocks[b].get_or_insert_with(|| Arc::new([0; BLOCK_WORDS]));
        let word = &mut Arc::make_mut(block)[(id % BLOCK_BITS) / 64];
        let bit = 1 << (id % 64);
        if *word & bit == 0 {
            *word |= bit;
            self.len += 1;
        }
    }

    /// Forgets every deleted id from `start` on (those rows were dropped by a merge).
    fn clear_from(&mut self, start: u32) {
        for id in start as usize..self.blocks.len() * BLOCK_BITS {
            let (b, w, bit) = (id / BLOCK_BITS, (id % BLOCK_BITS) / 64, 1u64 << (id % 64));
            let Some(block) = &mut self.blocks[b] else {
                continue;
            };
            if block[w] & bit != 0 {
                Arc::make_mut(block)[w] &= !bit;
                self.len -= 1;
            }
        }
    }

    /// Whether any of the `len` rows from `start` is deleted.
    pub fn any_in(&self, start: u32, len: usize) -> bool {
        (start as usize..start as usize + len).any(|id| self.contains(id as u32))
    }

    fn memory_bytes(&self) -> usize {
        self.blocks.iter().flatten().count() * BLOCK_WORDS * 8
    }
}

/// What a version's deltas changed over its base.
pub struct Overlay {
    /// The rows deltas wrote, oldest first; row ids continue after the base's.
    pub segments: Vec<Segment>,
    /// Rows (base or overlay) a newer delta replaced or deleted.
    pub deleted: Deleted,
    /// Paths of the delta files applied, in sequence order.
    pub applied: Vec<String>,
}

/// Rows written by one or more consecutive deltas, in (sequence, key) order.
#[derive(Clone)]
pub struct Segment {
    pub layer: Arc<Layer>,
    /// Row id of the segment's first row.
    pub offset: u32,
}

/// The deltas of `manifest` that `state` has not applied, if `state` can be brought to
/// `manifest` by applying them (same base files, and the deltas it applied are still the
/// manifest's first ones). `None`: rebuild from the files.
pub fn pending<'m>(state: &DatasetState, manifest: &'m Manifest) -> Option<&'m [DeltaFile]> {
    let same_base = manifest.base_files.len() == state.base_files.len()
        && manifest
            .base_files
            .iter()
            .zip(state.base_files.iter())
            .all(|(f, p)| &f.path == p);
    let applied = state.overlay.as_ref().map_or(&[][..], |o| &o.applied[..]);
    let prefix = manifest.deltas.get(..applied.len())?;
    (same_base
        && manifest.version >= state.version
        && prefix.iter().zip(applied).all(|(d, p)| &d.path == p))
    .then(|| &manifest.deltas[applied.len()..])
}

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

/// `state` with `deltas` (a manifest's next delta files, ascending seq) applied: the state
/// of `version`.
pub fn apply(
    state: &DatasetState,
    version: u64,
    deltas: Vec<LoadedDelta>,
) -> Result<DatasetState, QueryError> {
    let key = &state.primary_key;
    let previous = state.overlay.as_ref();
    let mut applied = previous.map_or_else(Vec::new, |o| o.applied.clone());
    applied.extend(deltas.iter().map(|d| d.path.clone()));
    let mut segments = previous.map_or_else(Vec::new, |o| o.segments.clone());
    let mut deleted = previous.map(|o| o.deleted.clone()).unwrap_or_default();
    if !deltas.is_empty() {
        if state.base.key_index.is_none() {
            return Err(QueryError::Internal(format!(
                "dataset version {version} has deltas but its key cannot be indexed"
            )));
        }
        let combined = combine(&state.schema, key, &deltas)?;
        // Every key a delta names leaves wherever it lives now; upserts come back in the new
        // segment.
        let readers = key
            .iter()
            .map(|&c| accessor(combined.rows.column(c).as_ref()))
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| QueryError::Internal("key column is not indexable".into()))?;
        let mut probe: Vec<KeyRef<'_>> = Vec::with_capacity(key.len());
        for r in 0..combined.rows.num_rows() {
            probe.clear();
            probe.extend(readers.iter().map(|read| read(r)));
            if let Some(id) = state.base.get(&probe) {
                deleted.insert(id);
            }
            for segment in &segments {
                if let Some(id) = segment.layer.get(&probe) {
                    deleted.insert(segment.offset + id);
                }
            }
        }
        let end = segments
            .last()
            .map_or(state.base.rows(), |s| s.offset as usize + s.layer.rows());
        let offset = u32::try_from(end)
            .map_err(|_| QueryError::TooLarge("a dataset holds at most 2^32-1 rows".into()))?;
        let upserts = combined.upserts()?;
        if upserts.num_rows() > 0 {
            segments.push(Segment {
                layer: Arc::new(Layer::build(
                    Chunks::new(encode_like(&state.mem_schema, &upserts)?)?,
                    key,
                    &overlay_eq_columns(state),
                )),
                offset,
            });
            merge_trailing(state, &mut segments, &mut deleted)?;
        }
    }
    let chunks = Chunks::new(
        state
            .base
            .chunks
            .batches()
            .iter()
            .chain(segments.iter().flat_map(|s| s.layer.chunks.batches()))
            .cloned()
            .collect(),
    )?;
    let bytes = state.base.bytes
        + segments.iter().map(|s| s.layer.bytes).sum::<usize>()
        + deleted.memory_bytes();
    Ok(DatasetState {
        version,
        schema: state.schema.clone(),
        mem_schema: state.mem_schema.clone(),
        primary_key: key.clone(),
        base: state.base.clone(),
        base_files: state.base_files.clone(),
        overlay: Some(Overlay {
            segments,
            deleted,
            applied,
        }),
        chunks,
        bytes,
    })
}

/// Merges trailing segments while the newest is at least half the size of the one before
/// it: their live rows, concatenated in order (so storage order is kept), become one segment.
/// Only the tail changes, so no other row id moves.
fn merge_trailing(
    state: &DatasetState,
    segments: &mut Vec<Segment>,
    deleted: &mut Deleted,
) -> Result<(), QueryError> {
    // Sizes count deleted rows too: cheap, and close enough for the shape of the tiers.
    let mut from = segments.len() - 1;
    let mut size = segments[from].layer.rows();
    while from > 0 {
        let before = segments[from - 1].layer.rows();
        if before > 2 * size {
            break;
        }
        from -= 1;
        size += before;
    }
    if from == segments.len() - 1 {
        return Ok(());
    }
    let mut parts = Vec::new();
    for segment in &segments[from..] {
        let mut start = segment.offset;
        for batch in segment.layer.chunks.batches() {
            let keep: BooleanArray = (0..batch.num_rows() as u32)
                .map(|r| Some(!deleted.contains(start + r)))
                .collect();
            parts.push(filter_record_batch(batch, &keep)?);
            start += batch.num_rows() as u32;
        }
    }
    let offset = segments[from].offset;
    // The parts share the in-memory schema, so they usually concatenate as they are (arrow
    // merges their dictionaries). Only where a narrow dictionary key would overflow do they
    // go through plain strings, cut into pieces whose dictionaries fit.
    let merged = match concat_batches(&state.mem_schema, &parts) {
        Ok(merged) => vec![merged],
        Err(_) => encode_like(&state.mem_schema, &concat_plain(&state.mem_schema, &parts)?)?,
    };
    deleted.clear_from(offset);
    segments.truncate(from);
    segments.push(Segment {
        layer: Arc::new(Layer::build(
            Chunks::new(merged)?,
            &state.primary_key,
            &overlay_eq_columns(state),
        )),
        offset,
    });
    Ok(())
}

/// The overlay indexes the same columns as the base, with no distinct-value cap (it is
/// small, and its lists must exist wherever the base's do).
fn overlay_eq_columns(state: &DatasetState) -> Vec<(usize, usize)> {
    state
        .base
        .eq_indexes
        .keys()
        .map(|&c| (c, usize::MAX))
        .collect()
}

/// Concatenates batches after casting each to `schema` (dictionary key widths may differ).
fn concat_plain(schema: &SchemaRef, parts: &[RecordBatch]) -> Result<RecordBatch, QueryError> {
    let plain = Arc::new(arrow::datatypes::Schema::new(
        schema
            .fields()
            .iter()
            .map(|f| {
                let t = match f.data_type() {
                    DataType::Dictionary(_, value) => value.as_ref().clone(),
                    other => other.clone(),
                };
                f.as_ref().clone().with_data_type(t).with_nullable(true)
            })
            .collect::<Vec<_>>(),
    ));
    let parts = parts
        .iter()
        .map(|p| encode::to_schema(p, &plain))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(concat_batches(&plain, &parts)?)
}

/// `batch` in the in-memory schema, split where a dictionary column would hold more
/// distinct values than its key type can number (the base chose narrow keys).
fn encode_like(
    mem_schema: &SchemaRef,
    batch: &RecordBatch,
) -> Result<Vec<RecordBatch>, QueryError> {
    // Usually the values fit the keys: one cast, no counting.
    if let Ok(whole) = encode::to_schema(batch, mem_schema) {
        return Ok(vec![whole]);
    }
    let limits: Vec<(usize, usize)> = mem_schema
        .fields()
        .iter()
        .enumerate()
        .filter_map(|(i, f)| match f.data_type() {
            DataType::Dictionary(k, _) => Some((
                i,
                match k.as_ref() {
                    DataType::Int8 => i8::MAX as usize,
                    DataType::Int16 => i16::MAX as usize,
                    _ => i32::MAX as usize,
                },
            )),
            _ => None,
        })
        .collect();
    // Piece boundaries: a new piece starts where a column's distinct count would overflow.
    let mut cuts = vec![0usize];
    if !limits.is_empty() {
        let strings: Vec<(usize, ArrayRef)> = limits
            .iter()
            .map(|&(i, limit)| Ok((limit, cast(batch.column(i), &DataType::Utf8)?)))
            .collect::<Result<_, QueryError>>()?;
        let mut seen: Vec<std::collections::HashSet<&str>> = vec![Default::default(); limits.len()];
        for r in 0..batch.num_rows() {
            let overflow = strings.iter().zip(&seen).any(|((limit, a), s)| {
                let a = a.as_string::<i32>();
                a.is_valid(r) && !s.contains(a.value(r)) && s.len() >= *limit
            });
            if overflow {
                cuts.push(r);
                seen.iter_mut().for_each(|s| s.clear());
            }
            for ((_, a), s) in strings.iter().zip(seen.iter_mut()) {
                let a = a.as_string::<i32>();
                if a.is_valid(r) {
                    s.insert(a.value(r));
                }
            }
        }
    }
    cuts.push(batch.num_rows());
    cuts.windows(2)
        .filter(|w| w[1] > w[0])
        .map(|w| encode::to_schema(&batch.slice(w[0], w[1] - w[0]), mem_schema))
        .collect()
}

#[cfg(test)]
mod tests {
    use arrow::array::{Int64Array, StringArray};
    use arrow::datatypes::{Field, Schema};
    use strata_daemon::config::IndexPolicy;

    use super::*;
    use crate::state::IndexSpec;

    /// Ids `0..n` with colors red, green, blue in turn; `color` has an equality index.
    fn colored(n: i64) -> DatasetState {
        let schema = colored_schema();
        let colors = ["red", "green", "blue"];
        let base = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(Int64Array::from_iter_values(0..n)),
                Arc::new(StringArray::from_iter_values(
                    (0..n).map(|i| colors[i as usize % 3]),
                )),
            ],
        )
        .unwrap();
        let spec = IndexSpec {
            policy: IndexPolicy::List,
            columns: vec!["color".into()],
        };
        DatasetState::build(0, schema, vec![0], vec![base], &spec).unwrap()
    }

    fn colored_schema() -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("color", DataType::Utf8, true),
        ]))
    }

    /// A delta of `colored`'s table at `version`: `ids` with `colors`, all with `op`.
    fn colored_delta(version: u64, ids: Vec<i64>, colors: Vec<String>, op: Op) -> LoadedDelta {
        let delta_schema = strata_shared::delta::delta_schema(&colored_schema(), &["id".into()]);
        let n = ids.len();
        let batch = RecordBatch::try_new(
            delta_schema,
            vec![
                Arc::new(Int64Array::from(ids)),
                Arc::new(StringArray::from(colors)),
                Arc::new(UInt8Array::from(vec![op as u8; n])),
            ],
        )
        .unwrap();
        LoadedDelta {
            seq: version,
            path: format!("d{version}"),
            batch,
        }
    }

    #[test]
    fn merged_segments_keep_every_value_when_narrow_dictionary_keys_overflow() {
        // 3 colors in the base: `color` is dictionary-encoded with 8-bit keys (<= 127 values).
        let mut state = colored(300);
        assert_eq!(
            state.mem_schema.field(1).data_type(),
            &DataType::Dictionary(Box::new(DataType::Int8), Box::new(DataType::Utf8))
        );
        // Each version inserts 60 rows with 60 new colors; merged segments hold more colors
        // than 8-bit keys number.
        let mut expected: Vec<(i64, String)> = Vec::new();
        for version in 1..=6u64 {
            let ids: Vec<i64> = (0..60).map(|i| 1000 * version as i64 + i).collect();
            let names: Vec<String> = ids.iter().map(|id| format!("c{id}")).collect();
            expected.extend(ids.iter().copied().zip(names.iter().cloned()));
            let delta = colored_delta(version, ids, names, Op::Upsert);
            state = apply(&state, version, vec![delta]).unwrap();
        }
        let overlay = state.overlay.as_ref().unwrap();
        assert!(
            overlay
                .segments
                .iter()
                .any(|s| s.layer.chunks.batches().len() > 1),
            "some merged segment was cut where its dictionary would overflow"
        );
        assert_eq!(state.rows(), 300 + 360);
        for (id, color) in &expected {
            let row = state.lookup(&[KeyRef::Int(*id)]).unwrap();
            let (c, r) = state.chunks.locate(row);
            let cell = accessor(state.chunks.batches()[c].column(1).as_ref()).unwrap()(r);
            assert_eq!(cell, KeyRef::Str(color), "row of id {id}");
            let found: Vec<u32> = state.eq_rows(1, KeyRef::Str(color)).live(&state).collect();
            assert_eq!(found, [row], "index entry of {color}");
        }
    }

    #[test]
    fn deleted_blocks_are_copied_on_write_and_cleared_from_an_id() {
        let mut a = Deleted::default();
        for id in [3, 70_000, 70_001, 200_000] {
            a.insert(id);
        }
        a.insert(3);
        assert_eq!(a.len(), 4, "inserting twice counts once");
        let b = a.clone();
        a.insert(5);
        assert!(
            a.contains(5) && !b.contains(5),
            "the clone kept its own block"
        );
        assert!(a.any_in(69_990, 20) && !a.any_in(100, 1000));
        a.clear_from(70_001);
        assert_eq!(a.len(), 3);
        assert!(a.contains(70_000) && !a.contains(70_001) && !a.contains(200_000));
        assert_eq!(b.len(), 4);
    }

    #[test]
    fn live_windows_skip_deleted_rows_across_base_and_overlay() {
        let mut state = colored(150_000); // three base chunks
        let n = 150_000_i64;
        // Every 7th id rewritten (as red), every 11th deleted, in two versions.
        for (version, step, op) in [(1_u64, 7_i64, Op::Upsert), (2, 11, Op::Delete)] {
            let ids: Vec<i64> = (0..n).step_by(step as usize).collect();
            let reds = vec!["red".to_owned(); ids.len()];
            let delta = colored_delta(version, ids, reds, op);
            state = apply(&state, version, vec![delta]).unwrap();
        }
        let red = state.eq_rows(1, KeyRef::Str("red"));
        let all: Vec<u32> = red.live(&state).collect();
        assert!(all.len() > 50_000);
        for (start, end) in [
            (0, 100),
            (4_900, 5_000),
            (49_990, 50_100),
            (all.len() - 3, all.len() + 10),
            (all.len() + 5, all.len() + 9),
            (7, 7),
        ] {
            let want: Vec<u32> = all
                .iter()
                .copied()
                .skip(start)
                .take(end.saturating_sub(start))
                .collect();
            assert_eq!(red.live_window(&state, start, end), want, "{start}..{end}");
        }
    }
}
