//! Point indexes over a dataset's in-memory chunks: the primary-key index (key → row) and
//! equality indexes (value → ascending row ids).
//!
//! Rows are addressed by their global row id (`u32`, see [`Chunks`]). Indexes store only row ids, never values: a hash table of row ids
//! whose entries are verified against the rows themselves, so an index costs ~5 bytes per
//! row (primary key) or ~4 bytes per row plus a few bytes per distinct value (equality).
//!
//! Values are compared as [`KeyRef`]s: every integer-like type (ints, dates, times,
//! timestamps, booleans) by its raw integer, strings by their bytes whatever the encoding
//! (Utf8, LargeUtf8, Utf8View, dictionary). Probe literals go through the same accessor
//! after being cast to the column's type, so a probe and a row compare alike by
//! construction. Floats, decimals and nested types are not indexed (queries on them run in
//! DataFusion).

use std::hash::{BuildHasher, Hash, Hasher};

use arrow::array::{Array, AsArray};
use arrow::datatypes::{self as t, DataType};
use datafusion::common::ScalarValue;
use hashbrown::{DefaultHashBuilder, HashTable};

use crate::chunks::Chunks;

/// One cell's value as an index compares it.
/// Ordered like Arrow sorts: integers numerically, strings by their bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum KeyRef<'a> {
    Null,
    Int(i64),
    UInt(u64),
    Str(&'a str),
}

/// Reads cells of one array as [`KeyRef`]s.
pub type Accessor<'a> = Box<dyn Fn(usize) -> KeyRef<'a> + 'a>;

/// A literal as an index compares it (`None` for types that are not [`indexable`]).
/// Literals are already cast to their column's type, so this agrees with [`accessor`] on
/// that column by construction.
pub fn key_of(value: &ScalarValue) -> Option<KeyRef<'_>> {
    use ScalarValue as S;
    let int = |v: Option<i64>| Some(v.map_or(KeyRef::Null, KeyRef::Int));
    match value {
        S::Boolean(v) => int(v.map(i64::from)),
        S::Int8(v) => int(v.map(i64::from)),
        S::Int16(v) => int(v.map(i64::from)),
        S::Int32(v) | S::Date32(v) | S::Time32Second(v) | S::Time32Millisecond(v) => {
            int(v.map(i64::from))
        }
        S::Int64(v)
        | S::Date64(v)
        | S::Time64Microsecond(v)
        | S::Time64Nanosecond(v)
        | S::TimestampSecond(v, _)
        | S::TimestampMillisecond(v, _)
        | S::TimestampMicrosecond(v, _)
        | S::TimestampNanosecond(v, _) => int(*v),
        S::UInt8(v) => int(v.map(i64::from)),
        S::UInt16(v) => int(v.map(i64::from)),
        S::UInt32(v) => int(v.map(i64::from)),
        S::UInt64(v) => Some(v.map_or(KeyRef::Null, KeyRef::UInt)),
        S::Utf8(v) | S::LargeUtf8(v) | S::Utf8View(v) => {
            Some(v.as_deref().map_or(KeyRef::Null, KeyRef::Str))
        }
        _ => None,
    }
}

/// Whether values of this type can be indexed.
pub fn indexable(data_type: &DataType) -> bool {
    use DataType as D;
    match data_type {
        D::Boolean
        | D::Int8
        | D::Int16
        | D::Int32
        | D::Int64
        | D::UInt8
        | D::UInt16
        | D::UInt32
        | D::UInt64
        | D::Date32
        | D::Date64
        | D::Time32(_)
        | D::Time64(_)
        | D::Timestamp(_, _)
        | D::Utf8
        | D::LargeUtf8
        | D::Utf8View => true,
        D::Dictionary(_, value) => matches!(**value, D::Utf8 | D::LargeUtf8 | D::Utf8View),
        _ => false,
    }
}

/// An accessor for `array`, or `None` if its type is not [`indexable`].
pub fn accessor(array: &dyn Array) -> Option<Accessor<'_>> {
    use DataType as D;
    macro_rules! int {
        ($t:ty) => {{
            let a = array.as_primitive::<$t>();
            Box::new(move |i| {
                if a.is_null(i) {
                    KeyRef::Null
                } else {
                    KeyRef::Int(a.value(i) as i64)
                }
            })
        }};
    }
    macro_rules! string {
        ($a:expr) => {{
            let a = $a;
            Box::new(move |i| {
                if a.is_null(i) {
                    KeyRef::Null
                } else {
                    KeyRef::Str(a.value(i))
                }
            })
        }};
    }
    let accessor: Accessor<'_> = match array.data_type() {
        D::Boolean => {
            let a = array.as_boolean();
            Box::new(move |i| {
                if a.is_null(i) {
                    KeyRef::Null
                } else {
                    KeyRef::Int(a.value(i) as i64)
                }
            })
        }
        D::Int8 => int!(t::Int8Type),
        D::Int16 => int!(t::Int16Type),
        D::Int32 => int!(t::Int32Type),
        D::Int64 => int!(t::Int64Type),
        D::UInt8 => int!(t::UInt8Type),
        D::UInt16 => int!(t::UInt16Type),
        D::UInt32 => int!(t::UInt32Type),
        D::UInt64 => {
            let a = array.as_primitive::<t::UInt64Type>();
            Box::new(move |i| {
                if a.is_null(i) {
                    KeyRef::Null
                } else {
                    KeyRef::UInt(a.value(i))
                }
            })
        }
        D::Date32 => int!(t::Date32Type),
        D::Date64 => int!(t::Date64Type),
        D::Time32(t::TimeUnit::Second) => int!(t::Time32SecondType),
        D::Time32(_) => int!(t::Time32MillisecondType),
        D::Time64(t::TimeUnit::Microsecond) => int!(t::Time64MicrosecondType),
        D::Time64(_) => int!(t::Time64NanosecondType),
        D::Timestamp(t::TimeUnit::Second, _) => int!(t::TimestampSecondType),
        D::Timestamp(t::TimeUnit::Millisecond, _) => int!(t::TimestampMillisecondType),
        D::Timestamp(t::TimeUnit::Microsecond, _) => int!(t::TimestampMicrosecondType),
        D::Timestamp(t::TimeUnit::Nanosecond, _) => int!(t::TimestampNanosecondType),
        D::Utf8 => string!(array.as_string::<i32>()),
        D::LargeUtf8 => string!(array.as_string::<i64>()),
        D::Utf8View => string!(array.as_string_view()),
        D::Dictionary(key_type, value_type) if indexable(value_type) => {
            let (keys, values) = dictionary_parts(array, key_type)?;
            let values = accessor(values)?;
            Box::new(move |i| match keys(i) {
                Some(k) => values(k),
                None => KeyRef::Null,
            })
        }
        _ => return None,
    };
    Some(accessor)
}

/// Reads a dictionary's key at a row (`None` for null).
pub type KeyFn<'a> = Box<dyn Fn(usize) -> Option<usize> + 'a>;

/// A dictionary array's keys (as a reader) and its values array, or `None` for a key type
/// that is not an integer.
pub fn dictionary_parts<'a>(
    array: &'a dyn Array,
    key_type: &DataType,
) -> Option<(KeyFn<'a>, &'a dyn Array)> {
    macro_rules! dict {
        ($t:ty) => {{
            let d = array.as_dictionary::<$t>();
            let keys = d.keys();
            let f: KeyFn<'a> = Box::new(move |i| keys.is_valid(i).then(|| keys.value(i) as usize));
            Some((f, d.values().as_ref()))
        }};
    }
    match key_type {
        DataType::Int8 => dict!(t::Int8Type),
        DataType::Int16 => dict!(t::Int16Type),
        DataType::Int32 => dict!(t::Int32Type),
        DataType::Int64 => dict!(t::Int64Type),
        DataType::UInt8 => dict!(t::UInt8Type),
        DataType::UInt16 => dict!(t::UInt16Type),
        DataType::UInt32 => dict!(t::UInt32Type),
        DataType::UInt64 => dict!(t::UInt64Type),
        _ => None,
    }
}

/// Hashes a (possibly multi-column) key.
fn hash_key<'a>(hasher: &DefaultHashBuilder, key: impl IntoIterator<Item = KeyRef<'a>>) -> u64 {
    let mut h = hasher.build_hasher();
    for part in key {
        part.hash(&mut h);
    }
    h.finish()
}

/// Accessors for `columns` of every chunk (`None` if a column is not indexable).
fn chunk_accessors<'a>(chunks: &'a Chunks, columns: &[usize]) -> Option<Vec<Vec<Accessor<'a>>>> {
    chunks
        .batches()
        .iter()
        .map(|chunk| {
            columns
                .iter()
                .map(|&c| accessor(chunk.column(c).as_ref()))
                .collect()
        })
        .collect()
}

/// Primary key → row id. Keys are unique (the table format guarantees it).
pub enum KeyIndex {
    /// A one-column key whose rows are in strictly ascending key order — the usual case:
    /// base files are sorted by key. Binary search over the rows themselves; no memory.
    Sorted { column: usize },
    /// Any other key: a hash table of row ids.
    Hashed {
        columns: Vec<usize>,
        hasher: DefaultHashBuilder,
        table: HashTable<u32>,
    },
}

impl KeyIndex {
    /// Builds the index over `chunks`, or `None` if a key column is not indexable.
    pub fn build(chunks: &Chunks, columns: &[usize]) -> Option<Self> {
        let accessors = chunk_accessors(chunks, columns)?;
        if let [column] = columns
            && is_ascending(chunks, &accessors)
        {
            return Some(Self::Sorted { column: *column });
        }
        let hasher = DefaultHashBuilder::default();
        let rows = chunks.rows();
        // Hashes are kept while building so that growing the table never re-reads rows.
        // Row ids are assigned in order, so a row's hash sits at `hashes[id]`.
        let mut hashes: Vec<u64> = Vec::with_capacity(rows);
        let mut table = HashTable::with_capacity(rows);
        for (c, chunk_accessors) in accessors.iter().enumerate() {
            for r in 0..chunks.batches()[c].num_rows() {
                let hash = hash_key(&hasher, chunk_accessors.iter().map(|a| a(r)));
                hashes.push(hash);
                table.insert_unique(hash, chunks.row_id(c, r), |&id: &u32| hashes[id as usize]);
            }
        }
        Some(Self::Hashed {
            columns: columns.to_vec(),
            hasher,
            table,
        })
    }

    /// The row holding `key` (one value per key column), if any.
    pub fn get(&self, chunks: &Chunks, key: &[KeyRef<'_>]) -> Option<u32> {
        match self {
            Self::Sorted { column } => {
                let [probe] = key else { return None };
                sorted_get(chunks, *column, *probe)
            }
            Self::Hashed {
                columns,
                hasher,
                table,
            } => {
                let hash = hash_key(hasher, key.iter().copied());
                table
                    .find(hash, |&id| row_equals(chunks, columns, id, key))
                    .copied()
            }
        }
    }

    pub fn memory_bytes(&self) -> usize {
        match self {
            Self::Sorted { .. } => 0,
            // One u32 slot plus one control byte per bucket.
            Self::Hashed { table, .. } => table.capacity() * (size_of::<u32>() + 1),
        }
    }
}

/// Whether the (one-column) key strictly ascends over all rows.
fn is_ascending(chunks: &Chunks, accessors: &[Vec<Accessor<'_>>]) -> bool {
    let mut previous: Option<KeyRef<'_>> = None;
    for (c, acc) in accessors.iter().enumerate() {
        for r in 0..chunks.batches()[c].num_rows() {
            let key = acc[0](r);
            if key == KeyRef::Null || previous.is_some_and(|p| p >= key) {
                return false;
            }
            previous = Some(key);
        }
    }
    true
}

/// Binary search in key-ordered chunks: first the chunk, then the row.
fn sorted_get(chunks: &Chunks, column: usize, probe: KeyRef<'_>) -> Option<u32> {
    let batches = chunks.batches();
    // The common key, int64, searched in the value slices themselves. (A sorted key has
    // no nulls, and no chunk is empty.)
    if let KeyRef::Int(probe) = probe
        && batches
            .first()
            .is_some_and(|b| b.column(column).data_type() == &DataType::Int64)
    {
        fn values(b: &arrow::array::RecordBatch, column: usize) -> &[i64] {
            b.column(column).as_primitive::<t::Int64Type>().values()
        }
        let chunk = batches
            .partition_point(|b| values(b, column)[0] <= probe)
            .checked_sub(1)?;
        return search_ascending(values(&batches[chunk], column), probe)
            .map(|row| chunks.row_id(chunk, row));
    }
    let first_key = |c: usize| accessor(batches[c].column(column).as_ref()).map(|a| a(0));
    // The last chunk whose first key is <= probe.
    let (mut lo, mut hi) = (0usize, batches.len());
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        if first_key(mid)? <= probe {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    let chunk = lo.checked_sub(1)?;
    let read = accessor(batches[chunk].column(column).as_ref())?;
    let (mut lo, mut hi) = (0usize, batches[chunk].num_rows());
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        match read(mid).cmp(&probe) {
            std::cmp::Ordering::Less => lo = mid + 1,
            std::cmp::Ordering::Greater => hi = mid,
            std::cmp::Ordering::Equal => return Some(chunks.row_id(chunk, mid)),
        }
    }
    None
}

/// The position of `probe` in strictly ascending `values`.
///
/// A few interpolation steps first, then a binary search of what is left: keys are mostly
/// dense (ids), where the first guess is the row, and most steps of a binary search over a
/// 64 Ki-row chunk are a cache miss each (key lookups spent ~5% of their time there).
fn search_ascending(values: &[i64], probe: i64) -> Option<usize> {
    let (mut lo, mut hi) = (0, values.len()); // the probe, if present, is in lo..hi
    for _ in 0..3 {
        if hi - lo < 16 {
            break;
        }
        let (first, last) = (values[lo], values[hi - 1]);
        if probe < first || probe > last {
            return None;
        }
        // first < last (strictly ascending, at least 16 values), and the offset fits: it is
        // at most (hi - 1 - lo).
        let offset = (i128::from(probe) - i128::from(first)) * (hi - 1 - lo) as i128
            / (i128::from(last) - i128::from(first));
        let guess = lo + offset as usize;
        match values[guess].cmp(&probe) {
            std::cmp::Ordering::Equal => return Some(guess),
            std::cmp::Ordering::Less => lo = guess + 1,
            std::cmp::Ordering::Greater => hi = guess,
        }
    }
    values[lo..hi].binary_search(&probe).ok().map(|i| lo + i)
}

fn row_equals(chunks: &Chunks, columns: &[usize], id: u32, key: &[KeyRef<'_>]) -> bool {
    let (c, r) = chunks.locate(id);
    let chunk = &chunks.batches()[c];
    columns
        .iter()
        .zip(key)
        .all(|(&col, probe)| cell_equals(chunk.column(col).as_ref(), r, probe))
}

/// Whether the cell at row `r` equals `probe`. The common key types are read directly: a
/// probe compares one cell, and boxing an [`accessor`] for it costs more than the comparison.
fn cell_equals(array: &dyn Array, r: usize, probe: &KeyRef<'_>) -> bool {
    match (array.data_type(), probe) {
        (DataType::Int64, KeyRef::Int(v)) => {
            array.is_valid(r) && array.as_primitive::<t::Int64Type>().value(r) == *v
        }
        (DataType::Utf8, KeyRef::Str(v)) => {
            array.is_valid(r) && array.as_string::<i32>().value(r) == *v
        }
        _ => accessor(array).is_some_and(|a| a(r) == *probe),
    }
}

/// Value → ascending row ids, for one column (nulls included, as [`KeyRef::Null`]).
///
/// Rows are kept as 16-bit offsets within their chunk (a chunk holds at most
/// [`crate::chunks::MAX_CHUNK_ROWS`] rows), grouped by value, then by chunk: half the memory
/// of 32-bit row ids, and the lists are most of an index.
pub struct EqIndex {
    column: usize,
    hasher: DefaultHashBuilder,
    /// Group ids, hashed by value; verified against the group's first row.
    table: HashTable<u32>,
    first_row: Vec<u32>,
    /// Group `g`'s rows in chunk `c` are `rows[bounds[g * (chunks + 1) + c]..][..next]`, up
    /// to the following bound; each group's `chunks + 1` bounds ascend.
    bounds: Vec<u32>,
    rows: Vec<u16>,
}

impl EqIndex {
    /// Builds the index, or `None` if the column is not indexable or has more than
    /// `max_distinct` distinct values.
    pub fn build(chunks: &Chunks, column: usize, max_distinct: usize) -> Option<Self> {
        let accessors = chunk_accessors(chunks, &[column])?;
        let hasher = DefaultHashBuilder::default();
        let total = chunks.rows();
        let mut table: HashTable<u32> = HashTable::new();
        let mut group_hash: Vec<u64> = Vec::new();
        let mut first_row: Vec<u32> = Vec::new();
        let mut group_of_row: Vec<u32> = Vec::with_capacity(total);
        // The group of the value at chunk `c`, row `r`: found by hash, or a new group
        // numbered in order of first appearance (`None` past `max_distinct`).
        let mut group_of = |c: usize, r: usize, value: KeyRef<'_>| -> Option<u32> {
            let hash = hash_key(&hasher, [value]);
            let found = table.find(hash, |&g| {
                let (gc, gr) = chunks.locate(first_row[g as usize]);
                accessors[gc][0](gr) == value
            });
            if let Some(&g) = found {
                return Some(g);
            }
            if first_row.len() >= max_distinct {
                return None;
            }
            let g = first_row.len() as u32;
            first_row.push(chunks.row_id(c, r));
            group_hash.push(hash);
            table.insert_unique(hash, g, |&g| group_hash[g as usize]);
            Some(g)
        };
        for (c, acc) in accessors.iter().enumerate() {
            let acc = &acc[0];
            let array = chunks.batches()[c].column(column).as_ref();
            let rows = array.len();
            match array.data_type() {
                // A dictionary column hashes each of its keys once per chunk, not each row.
                DataType::Dictionary(key_type, _) => {
                    let (keys, values) = dictionary_parts(array, key_type)?;
                    let null = values.len();
                    let mut cached = vec![u32::MAX; null + 1];
                    for r in 0..rows {
                        let slot = keys(r).unwrap_or(null);
                        if cached[slot] == u32::MAX {
                            cached[slot] = group_of(c, r, acc(r))?;
                        }
                        group_of_row.push(cached[slot]);
                    }
                }
                _ => {
                    for r in 0..rows {
                        group_of_row.push(group_of(c, r, acc(r))?);
                    }
                }
            }
        }
        drop(accessors);
        // Counting sort by (group, chunk); rows are visited in order, so each run ascends.
        let stride = chunks.batches().len() + 1;
        let mut bounds = vec![0u32; first_row.len() * stride];
        for (c, batch) in chunks.batches().iter().enumerate() {
            let start = chunks.row_id(c, 0) as usize;
            for &g in &group_of_row[start..start + batch.num_rows()] {
                bounds[g as usize * stride + c + 1] += 1;
            }
        }
        // Counts to bounds: each entry becomes the running total of the entries up to it.
        let mut position = 0u32;
        for bound in bounds.iter_mut() {
            position += *bound;
            *bound = position;
        }
        let mut next: Vec<u32> = bounds.clone();
        let mut rows = vec![0u16; total];
        for (c, batch) in chunks.batches().iter().enumerate() {
            let start = chunks.row_id(c, 0) as usize;
            for (r, &g) in group_of_row[start..start + batch.num_rows()]
                .iter()
                .enumerate()
            {
                let slot = &mut next[g as usize * stride + c];
                // `Chunks` caps chunks at 2^16 rows, so `r` fits.
                rows[*slot as usize] = r as u16;
                *slot += 1;
            }
        }
        Some(Self {
            column,
            hasher,
            table,
            first_row,
            bounds,
            rows,
        })
    }

    pub fn column(&self) -> usize {
        self.column
    }

    pub fn distinct(&self) -> usize {
        self.first_row.len()
    }

    /// The rows holding `value` (empty if none).
    pub fn rows<'s>(&'s self, chunks: &'s Chunks, value: KeyRef<'_>) -> Postings<'s> {
        let hash = hash_key(&self.hasher, [value]);
        let group = self.table.find(hash, |&g| {
            row_equals(chunks, &[self.column], self.first_row[g as usize], &[value])
        });
        match group {
            Some(&g) => self.postings(chunks, g as usize),
            None => Postings::EMPTY,
        }
    }

    /// Every group as (its first row, all its rows); the null group included.
    pub fn groups<'s>(&'s self, chunks: &'s Chunks) -> impl Iterator<Item = (u32, Postings<'s>)> {
        self.first_row
            .iter()
            .enumerate()
            .map(move |(g, &first)| (first, self.postings(chunks, g)))
    }

    fn postings<'s>(&'s self, chunks: &'s Chunks, group: usize) -> Postings<'s> {
        let stride = chunks.batches().len() + 1;
        let bounds = &self.bounds[group * stride..(group + 1) * stride];
        Postings {
            rows: &self.rows[bounds[0] as usize..bounds[stride - 1] as usize],
            bounds,
            starts: chunks.starts(),
        }
    }

    pub fn memory_bytes(&self) -> usize {
        self.table.capacity() * (size_of::<u32>() + 1)
            + (self.first_row.capacity() + self.bounds.capacity()) * size_of::<u32>()
            + self.rows.capacity() * size_of::<u16>()
    }
}

/// One value's rows in an [`EqIndex`], ascending: per chunk, offsets within the chunk.
#[derive(Clone, Copy)]
pub struct Postings<'a> {
    /// All of the value's offsets, chunk after chunk.
    rows: &'a [u16],
    /// Chunk `c`'s offsets are `rows[bounds[c] - bounds[0]..bounds[c + 1] - bounds[0]]`.
    bounds: &'a [u32],
    /// Row id of each chunk's first row.
    starts: &'a [u32],
}

impl<'a> Postings<'a> {
    pub const EMPTY: Postings<'static> = Postings {
        rows: &[],
        bounds: &[],
        starts: &[],
    };

    pub fn len(&self) -> usize {
        self.rows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// (chunk, the offsets in it), chunk by chunk; chunks without rows are skipped.
    pub fn runs(self) -> impl Iterator<Item = (usize, &'a [u16])> {
        let base = self.bounds.first().copied().unwrap_or(0);
        self.bounds
            .windows(2)
            .enumerate()
            .filter(|(_, w)| w[0] < w[1])
            .map(move |(c, w)| {
                (
                    c,
                    &self.rows[(w[0] - base) as usize..(w[1] - base) as usize],
                )
            })
    }

    /// The offsets in chunk `c` (empty past the last chunk).
    pub fn in_chunk(self, c: usize) -> &'a [u16] {
        match self.bounds.get(c..c + 2) {
            Some(&[from, to]) => {
                let base = self.bounds[0];
                &self.rows[(from - base) as usize..(to - base) as usize]
            }
            _ => &[],
        }
    }

    /// (row id of the chunk's first row, the offsets in it), chunk by chunk.
    pub fn chunk_runs(self) -> impl Iterator<Item = (u32, &'a [u16])> {
        let starts = self.starts;
        self.runs().map(move |(c, rows)| (starts[c], rows))
    }

    /// The row ids, ascending.
    pub fn ids(self) -> impl Iterator<Item = u32> + 'a {
        let starts = self.starts;
        self.runs()
            .flat_map(move |(c, rows)| rows.iter().map(move |&r| starts[c] + u32::from(r)))
    }

    /// The row ids at positions `[start, end)` of the list (clamped to its length).
    pub fn window(self, start: usize, end: usize) -> Vec<u32> {
        let end = end.min(self.len());
        if start >= end {
            return Vec::new();
        }
        let base = self.bounds[0] as usize;
        // The chunk holding position `start`: the last whose run begins at or before it.
        let first = self
            .bounds
            .partition_point(|&b| b as usize - base <= start)
            .saturating_sub(1);
        let mut out = Vec::with_capacity(end - start);
        let mut position = start;
        for c in first..self.bounds.len() - 1 {
            let (from, to) = (
                self.bounds[c] as usize - base,
                self.bounds[c + 1] as usize - base,
            );
            while position < to && position < end {
                debug_assert!(position >= from);
                out.push(self.starts[c] + u32::from(self.rows[position]));
                position += 1;
            }
            if position == end {
                break;
            }
        }
        out
    }
}

/// Sorted union of ascending row-id lists (for `in`).
pub fn union_sorted(lists: &[&[u32]]) -> Vec<u32> {
    let mut out: Vec<u32> = lists.iter().flat_map(|l| l.iter().copied()).collect();
    out.sort_unstable();
    out.dedup();
    out
}

/// Intersection of two ascending row-id lists.
pub fn intersect_sorted(a: &[u32], b: &[u32]) -> Vec<u32> {
    let (small, large) = if a.len() <= b.len() { (a, b) } else { (b, a) };
    let mut out = Vec::with_capacity(small.len());
    // Galloping would be faster for very skewed sizes; a binary search per element of the
    // small side is simple and good enough for index candidate lists.
    if small.len() * 16 < large.len() {
        for &x in small {
            if large.binary_search(&x).is_ok() {
                out.push(x);
            }
        }
        return out;
    }
    let (mut i, mut j) = (0, 0);
    while i < small.len() && j < large.len() {
        match small[i].cmp(&large[j]) {
            std::cmp::Ordering::Less => i += 1,
            std::cmp::Ordering::Greater => j += 1,
            std::cmp::Ordering::Equal => {
                out.push(small[i]);
                i += 1;
                j += 1;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests;
