//! Read-time merge of deltas (`ARCHITECTURE.md` §3): a version with deltas is its base layer
//! plus an [`Overlay`] — the surviving upsert rows of every delta, in key order, with their
//! own indexes — and a bitmap of the base rows those deltas replaced or deleted.
//!
//! Applying a new version's deltas copies only what they touch: the base layer (rows and
//! indexes) is shared by `Arc`, the bitmap copies only the 64Ki-row blocks a delta hits, and
//! the overlay is rebuilt from the previous overlay plus the new rows (its size is the rows
//! living in deltas, which compaction keeps small). Which entry of a key wins is decided by
//! `strata_shared::merge::supersedes`, the rule every reader and the compactor share.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, BooleanArray, RecordBatch, UInt8Array, UInt32Array};
use arrow::compute::{cast, concat_batches, filter_record_batch, take, take_record_batch};
use arrow::datatypes::{DataType, SchemaRef};
use object_store::ObjectStore;
use object_store::path::Path;
use strata_shared::delta::{self, Op};
use strata_shared::manifest::{DeltaFile, Manifest};
use strata_shared::merge::supersedes;
use strata_shared::{keys, parquet_io};

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
    /// The newest upsert of every key some delta touched, unless deleted since; key order.
    pub layer: Arc<Layer>,
    pub deleted: Deleted,
    /// Row id of the overlay's first row: the base's row count.
    pub offset: u32,
    /// Paths of the delta files applied, in sequence order.
    pub applied: Vec<String>,
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

/// Reads delta files as `(seq, batch with _op)`.
pub async fn read_deltas(
    store: &dyn ObjectStore,
    deltas: &[DeltaFile],
) -> Result<Vec<(u64, String, RecordBatch)>, QueryError> {
    let mut out = Vec::with_capacity(deltas.len());
    for d in deltas {
        let path = Path::parse(&d.path).map_err(strata_shared::Error::from)?;
        let (schema, batches) = parquet_io::read(store, &path).await?;
        out.push((d.seq, d.path.clone(), concat_batches(&schema, &batches)?));
    }
    Ok(out)
}

/// The newest entry of every key over `deltas`, in key order: the table's columns (non-key
/// columns nullable: deletes carry only their key) and the winning `_op` of each key.
pub fn combine(
    schema: &SchemaRef,
    primary_key: &[usize],
    deltas: &[(u64, String, RecordBatch)],
) -> Result<(RecordBatch, UInt8Array), QueryError> {
    let mut tables = Vec::with_capacity(deltas.len());
    let mut ops: Vec<u8> = Vec::new();
    let mut seqs: Vec<u64> = Vec::new();
    for (seq, _, batch) in deltas {
        tables.push(delta::table_part(batch, schema)?);
        let column = delta::op_column(batch)?;
        ops.extend(column.values().iter());
        seqs.extend(std::iter::repeat_n(*seq, batch.num_rows()));
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
    let indices = UInt32Array::from(winners);
    let combined = take_record_batch(&all, &indices)?;
    let ops = take(&UInt8Array::from(ops), &indices, None)?;
    Ok((combined, ops.as_primitive().clone()))
}

/// `state` with `deltas` (a manifest's next delta files, ascending seq) applied: the state
/// of `version`.
pub fn apply(
    state: &DatasetState,
    version: u64,
    deltas: Vec<(u64, String, RecordBatch)>,
) -> Result<DatasetState, QueryError> {
    let key = &state.primary_key;
    let previous = state.overlay.as_ref();
    let mut applied = previous.map_or_else(Vec::new, |o| o.applied.clone());
    applied.extend(deltas.iter().map(|(_, path, _)| path.clone()));
    if deltas.is_empty() {
        return Ok(DatasetState {
            version,
            schema: state.schema.clone(),
            mem_schema: state.mem_schema.clone(),
            primary_key: key.clone(),
            base: state.base.clone(),
            base_files: state.base_files.clone(),
            overlay: previous.map(|o| Overlay {
                layer: o.layer.clone(),
                deleted: o.deleted.clone(),
                offset: o.offset,
                applied,
            }),
            chunks: state.chunks.clone(),
            bytes: state.bytes,
        });
    }
    if state.base.key_index.is_none() {
        return Err(QueryError::Internal(format!(
            "dataset version {version} has deltas but its key cannot be indexed"
        )));
    }
    let (combined, ops) = combine(&state.schema, key, &deltas)?;

    // Every key a delta names leaves the base and the previous overlay; upserts come back
    // in the new overlay.
    let mut deleted = previous.map(|o| o.deleted.clone()).unwrap_or_default();
    let mut dropped = vec![false; previous.map_or(0, |o| o.layer.rows())];
    {
        let readers = key
            .iter()
            .map(|&c| accessor(combined.column(c).as_ref()))
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| QueryError::Internal("key column is not indexable".into()))?;
        let mut probe: Vec<KeyRef<'_>> = Vec::with_capacity(key.len());
        for r in 0..combined.num_rows() {
            probe.clear();
            probe.extend(readers.iter().map(|read| read(r)));
            if let Some(id) = state.base.get(&probe) {
                deleted.insert(id);
            }
            if let Some(id) = previous.and_then(|o| o.layer.get(&probe)) {
                dropped[id as usize] = true;
            }
        }
    }
    let upserts: BooleanArray = ops
        .values()
        .iter()
        .map(|&op| Some(op == Op::Upsert as u8))
        .collect();
    let upserts = filter_record_batch(&combined, &upserts)?;
    let mut parts = Vec::new();
    if let Some(o) = previous {
        let keep: BooleanArray = dropped.iter().map(|d| Some(!d)).collect();
        let kept = concat_batches(&state.mem_schema, o.layer.chunks.batches())?;
        parts.push(filter_record_batch(&kept, &keep)?);
    }
    parts.push(upserts);
    let merged = concat_plain(&state.mem_schema, &parts)?;
    let sorted = keys::sort_by_key(&merged, key)?;
    let layer = Arc::new(Layer::build(
        Chunks::new(encode_like(&state.mem_schema, &sorted)?)?,
        key,
        &overlay_eq_columns(state),
    ));
    let offset = u32::try_from(state.base.rows())
        .map_err(|_| QueryError::TooLarge("a dataset holds at most 2^32-1 rows".into()))?;
    let chunks = Chunks::new(
        state
            .base
            .chunks
            .batches()
            .iter()
            .chain(layer.chunks.batches())
            .cloned()
            .collect(),
    )?;
    let bytes = state.base.bytes + layer.bytes + deleted.memory_bytes();
    Ok(DatasetState {
        version,
        schema: state.schema.clone(),
        mem_schema: state.mem_schema.clone(),
        primary_key: key.clone(),
        base: state.base.clone(),
        base_files: state.base_files.clone(),
        overlay: Some(Overlay {
            layer,
            deleted,
            offset,
            applied,
        }),
        chunks,
        bytes,
    })
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
        .map(|p| cast_batch(p, &plain))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(concat_batches(&plain, &parts)?)
}

fn cast_batch(batch: &RecordBatch, schema: &SchemaRef) -> Result<RecordBatch, QueryError> {
    let columns = batch
        .columns()
        .iter()
        .zip(schema.fields())
        .map(|(c, f)| {
            if c.data_type() == f.data_type() {
                Ok(c.clone())
            } else {
                cast(c, f.data_type())
            }
        })
        .collect::<Result<Vec<ArrayRef>, _>>()?;
    Ok(RecordBatch::try_new(schema.clone(), columns)?)
}

/// `batch` in the in-memory schema, split where a dictionary column would hold more
/// distinct values than its key type can number (the base chose narrow keys).
fn encode_like(
    mem_schema: &SchemaRef,
    batch: &RecordBatch,
) -> Result<Vec<RecordBatch>, QueryError> {
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
        .map(|w| cast_batch(&batch.slice(w[0], w[1] - w[0]), mem_schema))
        .collect()
}
