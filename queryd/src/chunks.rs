//! The in-memory columns of a dataset: record batches cut into chunks of at most
//! [`MAX_CHUNK_ROWS`] rows, addressed by a global row id. The bottom of queryd's in-memory
//! layers: indexes, states and every path over them build on this module, which imports
//! none of them.

use std::collections::HashSet;

use arrow::array::{ArrayRef, RecordBatch};
use arrow::compute::cast;
use arrow::datatypes::SchemaRef;

use crate::error::QueryError;

/// The most rows a chunk holds: equality indexes keep rows as 16-bit offsets within their
/// chunk. Larger batches are sliced (no copy) into chunks of this size.
pub const MAX_CHUNK_ROWS: usize = 1 << 16;

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

/// Bytes of the distinct buffers behind `batches`: slices of one buffer count once.
pub fn buffer_bytes(batches: &[RecordBatch]) -> usize {
    arrays_buffer_bytes(batches.iter().flat_map(|b| b.columns()))
}

/// Bytes of the distinct buffers behind `arrays`: slices of one buffer count once.
pub fn arrays_buffer_bytes<'a>(arrays: impl IntoIterator<Item = &'a ArrayRef>) -> usize {
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
    for array in arrays {
        visit(&array.to_data(), &mut seen, &mut total);
    }
    total
}

/// Casts `batch` to `schema` (same columns; types differ only by dictionary encoding).
pub fn to_schema(batch: &RecordBatch, schema: &SchemaRef) -> Result<RecordBatch, QueryError> {
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
        .collect::<Result<Vec<_>, _>>()?;
    Ok(RecordBatch::try_new(schema.clone(), columns)?)
}

/// Rows for the unit tests of the in-memory layers: `id` (the ids given), `color` (red,
/// green, blue in turn: low cardinality) and `note` (one value per row).
#[cfg(test)]
pub(crate) fn colored_batch(ids: std::ops::Range<i64>) -> RecordBatch {
    use std::sync::Arc;

    use arrow::array::{Int64Array, StringArray};
    use arrow::datatypes::{DataType, Field, Schema};

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

#[cfg(test)]
mod tests {
    use arrow::array::AsArray;

    use super::*;

    fn batch(ids: std::ops::Range<i64>) -> RecordBatch {
        colored_batch(ids)
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
    fn slices_of_one_buffer_count_once() {
        let b = batch(0..1000);
        let whole = buffer_bytes(std::slice::from_ref(&b));
        let sliced = buffer_bytes(&[b.slice(0, 500), b.slice(500, 500)]);
        assert_eq!(whole, sliced);
    }
}
