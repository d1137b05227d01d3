//! `DatasetState`: one dataset version in memory — Arrow chunks, a primary-key index,
//! equality indexes, and the overlay of the version's deltas — immutable once built and
//! shared behind an `Arc`, so a request that holds it finishes on it whatever reloads or
//! evictions happen meanwhile. How a state is built or brought to a newer version is
//! [`crate::build`]'s business; this module is what the read paths see.
//!
//! Rows are addressed by a global row id (`u32`, the row's position in storage order);
//! [`Chunks`] maps it to (chunk, row). Storage order is the order of the manifest's state
//! (base files in manifest order, then surviving delta rows in key order: see
//! `strata_shared::merge`), and every query path returns rows in it when no `order_by` is
//! given.

mod overlay;

use std::collections::HashMap;
use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::{DataType, Schema, SchemaRef};

use crate::chunks::{self, Chunks};
use crate::error::QueryError;
use crate::index::{EqIndex, KeyIndex, KeyRef, Postings};

pub use overlay::{Applied, Deleted, Overlay, Segment};

/// Rows with their indexes: the base files of a version, or the overlay of its deltas.
pub struct Layer {
    pub chunks: Chunks,
    pub key_index: Option<KeyIndex>,
    /// Column index → equality index.
    pub eq_indexes: HashMap<usize, EqIndex>,
    /// Accounted memory: distinct Arrow buffers plus index structures.
    pub bytes: usize,
}

impl Layer {
    /// Indexes `chunks`: the key (if any) and `eq_columns` with their distinct-value caps.
    pub fn build(chunks: Chunks, primary_key: &[usize], eq_columns: &[(usize, usize)]) -> Self {
        let key_index = if primary_key.is_empty() {
            None
        } else {
            KeyIndex::build(&chunks, primary_key)
        };
        let mut eq_indexes = HashMap::new();
        for &(column, max_distinct) in eq_columns {
            if let Some(index) = EqIndex::build(&chunks, column, max_distinct) {
                eq_indexes.insert(column, index);
            }
        }
        let bytes = chunks::buffer_bytes(chunks.batches())
            + key_index.as_ref().map_or(0, KeyIndex::memory_bytes)
            + eq_indexes
                .values()
                .map(EqIndex::memory_bytes)
                .sum::<usize>();
        Self {
            chunks,
            key_index,
            eq_indexes,
            bytes,
        }
    }

    pub fn rows(&self) -> usize {
        self.chunks.rows()
    }

    /// The row holding `key`, in this layer's own row ids.
    pub fn get(&self, key: &[KeyRef<'_>]) -> Option<u32> {
        self.key_index.as_ref()?.get(&self.chunks, key)
    }

    /// The rows (this layer's own ids) holding `value` in `column`.
    pub fn eq_rows(&self, column: usize, value: KeyRef<'_>) -> Postings<'_> {
        self.eq_indexes
            .get(&column)
            .map_or(Postings::EMPTY, |index| index.rows(&self.chunks, value))
    }
}

/// One dataset version in memory: the base layer, and the overlay of the version's deltas.
///
/// Row ids: the base's rows keep their ids; each overlay segment's rows follow (`offset +
/// own id`). A row is live unless a newer delta replaced or deleted it (`overlay.deleted`).
/// Storage order is row-id order over live rows — the order
/// `strata_shared::merge::materialize` defines.
pub struct DatasetState {
    pub version: u64,
    /// The dataset's schema as stored (and as answered).
    pub schema: SchemaRef,
    /// The chunks' schema: like `schema` with low-cardinality strings dictionary-encoded.
    pub mem_schema: SchemaRef,
    /// Column indices of the primary key (empty without one).
    pub primary_key: Vec<usize>,
    /// The base files' rows and indexes, shared by every version over the same base files.
    pub base: Arc<Layer>,
    /// The version's base files' paths (`build::pending` tells from them and `watermark`
    /// whether a newer version can be applied, or must be rebuilt).
    pub base_files: Arc<[String]>,
    /// The version's `base_watermark_seq`: every delta up to it is in the base files.
    pub watermark: u64,
    /// What the version's deltas changed; `None` when it has none.
    pub overlay: Option<Overlay>,
    /// The base's chunks, then the overlay's: every row id, live or not.
    pub chunks: Chunks,
    /// Accounted memory (the base's is shared between versions but counted in each).
    pub bytes: usize,
}

impl DatasetState {
    /// Live rows.
    pub fn rows(&self) -> usize {
        self.chunks.rows() - self.deleted().map_or(0, Deleted::len)
    }

    /// The base rows deltas replaced or deleted, if there are any.
    pub fn deleted(&self) -> Option<&Deleted> {
        self.overlay
            .as_ref()
            .map(|o| &o.deleted)
            .filter(|d| !d.is_empty())
    }

    /// Every live row id, ascending.
    pub fn live_ids(&self) -> impl Iterator<Item = u32> + '_ {
        let deleted = self.deleted();
        (0..self.chunks.rows() as u32).filter(move |&id| deleted.is_none_or(|d| !d.contains(id)))
    }

    pub fn is_live(&self, id: u32) -> bool {
        self.deleted().is_none_or(|d| !d.contains(id))
    }

    pub fn has_key_index(&self) -> bool {
        self.base.key_index.is_some()
    }

    pub fn has_eq_index(&self, column: usize) -> bool {
        self.base.eq_indexes.contains_key(&column)
    }

    /// The live row holding `key`. Only with a key index ([`Self::has_key_index`]).
    pub fn lookup(&self, key: &[KeyRef<'_>]) -> Option<u32> {
        if let Some(id) = self.base.get(key)
            && self.is_live(id)
        {
            return Some(id);
        }
        let overlay = self.overlay.as_ref()?;
        // A key is live in at most one place; the newest segments are the likeliest.
        overlay.segments.iter().rev().find_map(|s| {
            s.layer
                .get(key)
                .map(|id| s.offset + id)
                .filter(|&id| self.is_live(id))
        })
    }

    /// The rows holding `value` in an indexed column ([`Self::has_eq_index`]).
    pub fn eq_rows(&self, column: usize, value: KeyRef<'_>) -> RowList<'_> {
        let mut parts = vec![(self.base.eq_rows(column, value), 0)];
        if let Some(overlay) = &self.overlay {
            parts.extend(
                overlay
                    .segments
                    .iter()
                    .map(|s| (s.layer.eq_rows(column, value), s.offset)),
            );
        }
        RowList { parts }
    }

    /// The live rows in storage order, for DataFusion, with their schema. With deltas, or
    /// when `wide_keys` asks for it, dictionary columns get 32-bit keys: the overlay may bring
    /// values beyond what the base's narrow keys number, and DataFusion merges the chunks'
    /// dictionaries — as its top-k does when it gathers rows of several chunks (it failed
    /// with "Dictionary key bigger than the key type" on 16-bit keys: the differential test).
    pub fn live_batches(
        &self,
        wide_keys: bool,
    ) -> Result<(SchemaRef, Vec<RecordBatch>), QueryError> {
        let deleted = self.overlay.as_ref().map(|o| &o.deleted);
        if deleted.is_none() && !wide_keys {
            return Ok((self.mem_schema.clone(), self.chunks.batches().to_vec()));
        }
        let wide = |t: &DataType| match t {
            DataType::Dictionary(_, value) => {
                DataType::Dictionary(Box::new(DataType::Int32), value.clone())
            }
            other => other.clone(),
        };
        let schema = Arc::new(Schema::new_with_metadata(
            self.mem_schema
                .fields()
                .iter()
                .map(|f| f.as_ref().clone().with_data_type(wide(f.data_type())))
                .collect::<Vec<_>>(),
            self.mem_schema.metadata().clone(),
        ));
        let mut out = Vec::with_capacity(self.chunks.batches().len());
        for (c, batch) in self.chunks.batches().iter().enumerate() {
            let start = self.chunks.row_id(c, 0);
            let batch = if let Some(deleted) = deleted
                && deleted.any_in(start, batch.num_rows())
            {
                let keep: arrow::array::BooleanArray = (0..batch.num_rows())
                    .map(|r| Some(!deleted.contains(start + r as u32)))
                    .collect();
                arrow::compute::filter_record_batch(batch, &keep)?
            } else {
                batch.clone()
            };
            out.push(chunks::to_schema(&batch, &schema)?);
        }
        Ok((schema, out))
    }

    /// Names of the columns with an equality index, in schema order.
    pub fn indexed_columns(&self) -> Vec<String> {
        let mut columns: Vec<usize> = self.base.eq_indexes.keys().copied().collect();
        columns.sort_unstable();
        columns
            .into_iter()
            .map(|c| self.schema.field(c).name().clone())
            .collect()
    }
}

/// The rows of one equality-index value: one ascending list per layer (the base's, then
/// each overlay segment's) with the row id its layer starts at. Every id of a later part is
/// above every id of an earlier one. Deleted rows are still in the lists; readers skip them.
#[derive(Clone)]
pub struct RowList<'a> {
    pub parts: Vec<(Postings<'a>, u32)>,
}

impl<'a> RowList<'a> {
    /// The live row ids, ascending.
    pub fn live(&self, state: &'a DatasetState) -> impl Iterator<Item = u32> + 'a {
        let deleted = state.deleted();
        self.parts
            .clone()
            .into_iter()
            .flat_map(|(ids, offset)| ids.ids().map(move |id| offset + id))
            .filter(move |&id| deleted.is_none_or(|d| !d.contains(id)))
    }

    pub fn live_len(&self, state: &DatasetState) -> usize {
        match state.deleted() {
            None => self.parts.iter().map(|(ids, _)| ids.len()).sum(),
            Some(_) => self.live(state).count(),
        }
    }

    /// The live ids at positions `[start, end)` of the list (clamped to how many there are):
    /// without walking the ones before where [`Self::window`] can, else by one plain loop
    /// over the lists that tests each id against the deletion bitmap (a page deep into a
    /// long list walks thousands of ids; an iterator chain per id cost ~10% of such a
    /// request, `benches/deltas`).
    pub fn live_window(&self, state: &DatasetState, start: usize, end: usize) -> Vec<u32> {
        if let Some(ids) = self.window(state, start, end) {
            return ids;
        }
        let wanted = end.saturating_sub(start);
        let deleted = state.deleted();
        let mut out = Vec::with_capacity(wanted.min(1 << 16));
        let mut position = 0;
        for &(postings, offset) in &self.parts {
            for (chunk_start, rows) in postings.chunk_runs() {
                for &r in rows {
                    let id = offset + chunk_start + u32::from(r);
                    if deleted.is_some_and(|d| d.contains(id)) {
                        continue;
                    }
                    if position >= start {
                        if out.len() == wanted {
                            return out;
                        }
                        out.push(id);
                    }
                    position += 1;
                }
            }
        }
        out
    }

    /// The live ids at positions `[start, end)` without walking the ones before, when the
    /// value lives in one layer only and nothing is deleted.
    pub fn window(&self, state: &DatasetState, start: usize, end: usize) -> Option<Vec<u32>> {
        if state.deleted().is_some() {
            return None;
        }
        let mut nonempty = self.parts.iter().filter(|(ids, _)| !ids.is_empty());
        match (nonempty.next(), nonempty.next()) {
            (None, _) => Some(Vec::new()),
            (Some((ids, offset)), None) => Some(
                ids.window(start, end)
                    .into_iter()
                    .map(|id| offset + id)
                    .collect(),
            ),
            _ => None,
        }
    }
}
