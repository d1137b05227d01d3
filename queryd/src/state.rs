//! `DatasetState`: one dataset version in memory — Arrow chunks, a primary-key index,
//! equality indexes — immutable once built and shared behind an `Arc`, so a request that
//! holds it finishes on it whatever reloads or evictions happen meanwhile.
//!
//! Rows are addressed by a global row id (`u32`, the row's position in storage order);
//! [`Chunks`] maps it to (chunk, row). Storage order is the order of the manifest's state
//! (base files in manifest order, then surviving delta rows in key order: see
//! `strata_shared::merge`), and every query path returns rows in it when no `order_by` is
//! given.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use arrow::array::{Array, RecordBatch};
use arrow::datatypes::{DataType, Schema, SchemaRef};
use strata_daemon::config::IndexPolicy;
use strata_shared::manifest::Manifest;

use crate::delta_cache::DeltaCache;
use crate::error::QueryError;
use crate::executor;
use crate::index::{EqIndex, KeyIndex, KeyRef, Postings, indexable};
use crate::load::{self, MemLayout};
use crate::overlay::{self, Deleted, Overlay};

/// The most rows a chunk holds: equality indexes keep rows as 16-bit offsets within their
/// chunk. Larger batches are sliced (no copy) into chunks of this size.
pub const MAX_CHUNK_ROWS: usize = 1 << 16;

/// Under `index = "auto"`, a column gets an equality index when it has at most this many
/// distinct values and at most a quarter as many as rows (low cardinality: the index then
/// answers `eq`/`in` with long row lists, which is where it beats a scan).
pub const AUTO_INDEX_MAX_DISTINCT: usize = 1 << 16;

/// How a dataset is indexed (from the `[[datasets]]` config entry; `Auto` otherwise).
#[derive(Clone, Debug, Default)]
pub struct IndexSpec {
    pub policy: IndexPolicy,
    pub columns: Vec<String>,
}

/// Record batches with a row-id → (chunk, row) map.
#[derive(Clone)]
pub struct Chunks {
    batches: Vec<RecordBatch>,
    /// `offsets[c]` is the row id of chunk `c`'s first row; one extra entry holds the total.
    offsets: Vec<u32>,
}

impl Chunks {
    pub fn new(batches: Vec<RecordBatch>) -> Result<Self, QueryError> {
        let batches: Vec<RecordBatch> = batches
            .into_iter()
            .flat_map(|b| {
                let n = b.num_rows();
                (0..n)
                    .step_by(MAX_CHUNK_ROWS)
                    .map(move |start| b.slice(start, MAX_CHUNK_ROWS.min(n - start)))
            })
            .collect();
        let mut offsets = Vec::with_capacity(batches.len() + 1);
        let mut total: u64 = 0;
        offsets.push(0);
        for b in &batches {
            total += b.num_rows() as u64;
            let end = u32::try_from(total)
                .map_err(|_| QueryError::TooLarge("a dataset holds at most 2^32-1 rows".into()))?;
            offsets.push(end);
        }
        Ok(Self { batches, offsets })
    }

    pub fn batches(&self) -> &[RecordBatch] {
        &self.batches
    }

    pub fn rows(&self) -> usize {
        self.offsets.last().copied().unwrap_or(0) as usize
    }

    /// The row id of each chunk's first row, then the total.
    pub fn starts(&self) -> &[u32] {
        &self.offsets
    }

    /// (chunk, row in chunk) of a row id; the id must be < `rows()`.
    pub fn locate(&self, id: u32) -> (usize, usize) {
        let chunk = self.offsets.partition_point(|&start| start <= id) - 1;
        (chunk, (id - self.offsets[chunk]) as usize)
    }

    /// Row id of `row` in `chunk`.
    pub fn row_id(&self, chunk: usize, row: usize) -> u32 {
        self.offsets[chunk] + row as u32
    }

    /// The rows `[start, end)` as slices of the chunks (zero-copy).
    pub fn slice(&self, start: usize, end: usize) -> Vec<RecordBatch> {
        let mut out = Vec::new();
        if start >= end {
            return out;
        }
        let (first, _) = self.locate(start as u32);
        for c in first..self.batches.len() {
            let chunk_start = self.offsets[c] as usize;
            if chunk_start >= end {
                break;
            }
            let from = start.saturating_sub(chunk_start);
            let to = (end - chunk_start).min(self.batches[c].num_rows());
            out.push(self.batches[c].slice(from, to - from));
        }
        out
    }
}

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
        let bytes = buffer_bytes(chunks.batches())
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
    /// The base files' paths: a version with other base files (a compaction) is rebuilt.
    pub base_files: Arc<[String]>,
    /// What the version's deltas changed; `None` when it has none.
    pub overlay: Option<Overlay>,
    /// The base's chunks, then the overlay's: every row id, live or not.
    pub chunks: Chunks,
    /// Accounted memory (the base's is shared between versions but counted in each).
    pub bytes: usize,
}

impl DatasetState {
    /// Reads every file of `manifest` and builds the state. Base files stream in one row
    /// group at a time ([`load::read_base`]); the CPU work runs on `compute`
    /// ([`executor::compute`]).
    pub async fn load(
        deltas: &DeltaCache,
        manifest: &Manifest,
        spec: &IndexSpec,
        compute: &tokio::runtime::Handle,
    ) -> Result<Self, QueryError> {
        let schema = manifest.arrow_schema();
        let primary_key = strata_shared::keys::key_indices(&schema, &manifest.primary_key)?;
        let layout = MemLayout::new(&schema, &primary_key, manifest.base_rows() as usize);
        let layout = load::read_base(deltas.store(), &manifest.base_files, layout, compute).await?;
        let deltas = deltas.read(&manifest.deltas).await?;
        let base_version = manifest.base_watermark_seq;
        let base_files: Arc<[String]> =
            manifest.base_files.iter().map(|f| f.path.clone()).collect();
        let (version, spec) = (manifest.version, spec.clone());
        executor::compute(compute, "building a state", move || {
            let base = Self::from_layout(base_version, schema, primary_key, layout, &spec)?;
            let base = Self { base_files, ..base };
            if deltas.is_empty() {
                return Ok(Self { version, ..base });
            }
            overlay::apply(&base, version, deltas)
        })
        .await
    }

    /// Builds the in-memory structures over `batches` (all of `schema`, storage order), with
    /// no deltas.
    pub fn build(
        version: u64,
        schema: SchemaRef,
        primary_key: Vec<usize>,
        batches: Vec<RecordBatch>,
        spec: &IndexSpec,
    ) -> Result<Self, QueryError> {
        let rows: usize = batches.iter().map(|b| b.num_rows()).sum();
        let mut layout = MemLayout::new(&schema, &primary_key, rows);
        for batch in batches {
            layout.push(batch)?;
        }
        Self::from_layout(version, schema, primary_key, layout, spec)
    }

    /// Indexes the rows collected in `layout` (no deltas).
    fn from_layout(
        version: u64,
        schema: SchemaRef,
        primary_key: Vec<usize>,
        layout: MemLayout,
        spec: &IndexSpec,
    ) -> Result<Self, QueryError> {
        let (mem_schema, batches) = layout.finish()?;
        let chunks = Chunks::new(batches)?;
        let eq_columns = index_columns(&schema, &primary_key, spec, chunks.rows())?;
        let base = Layer::build(chunks, &primary_key, &eq_columns);
        Ok(Self {
            version,
            schema,
            mem_schema,
            primary_key,
            chunks: Chunks::new(base.chunks.batches().to_vec())?,
            bytes: base.bytes,
            base: Arc::new(base),
            base_files: Arc::from([]),
            overlay: None,
        })
    }

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

    /// The live rows in storage order, for DataFusion, with their schema. With deltas,
    /// dictionary columns get 32-bit keys: the overlay may bring values beyond what the
    /// base's narrow keys number, and DataFusion merges the chunks' dictionaries.
    pub fn live_batches(&self) -> Result<(SchemaRef, Vec<RecordBatch>), QueryError> {
        let Some(overlay) = &self.overlay else {
            return Ok((self.mem_schema.clone(), self.chunks.batches().to_vec()));
        };
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
        let deleted = &overlay.deleted;
        let mut out = Vec::with_capacity(self.chunks.batches().len());
        for (c, batch) in self.chunks.batches().iter().enumerate() {
            let start = self.chunks.row_id(c, 0);
            let batch = if deleted.any_in(start, batch.num_rows()) {
                let keep: arrow::array::BooleanArray = (0..batch.num_rows())
                    .map(|r| Some(!deleted.contains(start + r as u32)))
                    .collect();
                arrow::compute::filter_record_batch(batch, &keep)?
            } else {
                batch.clone()
            };
            out.push(crate::encode::to_schema(&batch, &schema)?);
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

/// Which columns to index and with what distinct-value cap.
pub(crate) fn index_columns(
    schema: &Schema,
    primary_key: &[usize],
    spec: &IndexSpec,
    rows: usize,
) -> Result<Vec<(usize, usize)>, QueryError> {
    match spec.policy {
        IndexPolicy::None => Ok(Vec::new()),
        IndexPolicy::List => spec
            .columns
            .iter()
            .map(|name| {
                let i = schema.index_of(name).map_err(|_| {
                    QueryError::BadRequest(format!("index column {name:?} is not in the schema"))
                })?;
                Ok((i, usize::MAX))
            })
            .collect(),
        IndexPolicy::Auto => {
            let cap = AUTO_INDEX_MAX_DISTINCT.min(rows / 4).max(1);
            Ok((0..schema.fields().len())
                .filter(|i| !(primary_key.len() == 1 && primary_key[0] == *i))
                .filter(|&i| indexable(schema.field(i).data_type()))
                .map(|i| (i, cap))
                .collect())
        }
    }
}

/// Bytes of the distinct buffers behind `batches`: slices of one buffer count once.
pub fn buffer_bytes(batches: &[RecordBatch]) -> usize {
    fn visit(data: &arrow::array::ArrayData, seen: &mut HashSet<usize>, total: &mut usize) {
        for buffer in data.buffers() {
            if seen.insert(buffer.data_ptr().as_ptr() as usize) {
                *total += buffer.capacity();
            }
        }
        if let Some(nulls) = data.nulls() {
            let buffer = nulls.buffer();
            if seen.insert(buffer.data_ptr().as_ptr() as usize) {
                *total += buffer.capacity();
            }
        }
        for child in data.child_data() {
            visit(child, seen, total);
        }
    }
    let mut seen = HashSet::new();
    let mut total = 0;
    for batch in batches {
        for column in batch.columns() {
            visit(&column.to_data(), &mut seen, &mut total);
        }
    }
    total
}

#[cfg(test)]
mod tests {
    use arrow::array::{AsArray, Int64Array, StringArray};
    use arrow::datatypes::Field;

    use super::*;

    fn batch(ids: std::ops::Range<i64>) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("color", DataType::Utf8, true),
            Field::new("note", DataType::Utf8, true),
        ]));
        let colors = ["red", "green", "blue"];
        RecordBatch::try_new(
            schema,
            vec![
                Arc::new(Int64Array::from_iter_values(ids.clone())),
                Arc::new(StringArray::from_iter_values(
                    ids.clone().map(|i| colors[i as usize % 3]),
                )),
                Arc::new(StringArray::from_iter_values(
                    ids.map(|i| format!("note {i}")),
                )),
            ],
        )
        .unwrap()
    }

    #[test]
    fn chunks_locate_and_slice_across_uneven_chunks() {
        let chunks = Chunks::new(vec![batch(0..3), batch(3..3), batch(3..8)]).unwrap();
        assert_eq!(chunks.rows(), 8);
        assert_eq!(chunks.batches().len(), 2, "empty batches are dropped");
        assert_eq!(chunks.locate(0), (0, 0));
        assert_eq!(chunks.locate(2), (0, 2));
        assert_eq!(chunks.locate(3), (1, 0));
        assert_eq!(chunks.locate(7), (1, 4));
        let ids: Vec<i64> = chunks
            .slice(2, 6)
            .iter()
            .flat_map(|b| {
                b.column(0)
                    .as_primitive::<arrow::datatypes::Int64Type>()
                    .values()
                    .to_vec()
            })
            .collect();
        assert_eq!(ids, vec![2, 3, 4, 5]);
        assert!(chunks.slice(5, 5).is_empty());
    }

    #[test]
    fn large_batches_are_cut_into_chunks_the_index_lists_cross() {
        // 3 batches: 10, 150 000 (cut into 65 536 + 65 536 + 18 928) and 5 rows.
        let n = 150_000;
        let chunks =
            Chunks::new(vec![batch(0..10), batch(10..10 + n), batch(10 + n..15 + n)]).unwrap();
        let sizes: Vec<usize> = chunks.batches().iter().map(|b| b.num_rows()).collect();
        assert_eq!(sizes, [10, 65_536, 65_536, 18_928, 5]);
        let index = EqIndex::build(&chunks, 1, 10).unwrap();
        let red = index.rows(&chunks, KeyRef::Str("red"));
        let want: Vec<u32> = (0..(n as u32 + 15)).filter(|i| i % 3 == 0).collect();
        assert_eq!(red.len(), want.len());
        assert_eq!(red.ids().collect::<Vec<_>>(), want);
        // Windows starting in, ending in and spanning the cut chunks.
        for (start, end) in [(0, 5), (21_840, 21_850), (3, 50_003), (49_990, 60_000)] {
            assert_eq!(
                red.window(start, end),
                want[start..end.min(want.len())],
                "{start}..{end}"
            );
        }
    }

    #[test]
    fn low_cardinality_strings_are_dictionary_encoded_and_indexed() {
        let b = batch(0..100);
        let schema = b.schema();
        let state = DatasetState::build(3, schema.clone(), vec![0], vec![b], &IndexSpec::default())
            .unwrap();
        assert_eq!(state.rows(), 100);
        assert!(matches!(
            state.mem_schema.field(1).data_type(),
            DataType::Dictionary(_, _)
        ));
        assert_eq!(state.mem_schema.field(2).data_type(), &DataType::Utf8);
        assert_eq!(state.schema, schema, "the logical schema is unchanged");
        assert_eq!(state.indexed_columns(), vec!["color".to_string()]);
        assert_eq!(state.lookup(&[KeyRef::Int(42)]), Some(42));
        assert!(state.bytes > 100 * 8);
    }

    #[test]
    fn listed_index_columns_must_exist() {
        let b = batch(0..10);
        let spec = IndexSpec {
            policy: IndexPolicy::List,
            columns: vec!["nope".into()],
        };
        assert!(DatasetState::build(0, b.schema(), vec![0], vec![b], &spec).is_err());
    }

    #[test]
    fn slices_of_one_buffer_count_once() {
        let b = batch(0..1000);
        let whole = buffer_bytes(std::slice::from_ref(&b));
        let sliced = buffer_bytes(&[b.slice(0, 500), b.slice(500, 500)]);
        assert_eq!(whole, sliced);
    }
}
