//! Reading and writing Parquet objects. Base and delta files are written here so every
//! writer uses the same properties.

use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::array::{Array, ArrayRef, BooleanArray, Scalar};
use arrow::compute::kernels::cmp::{gt_eq, lt_eq};
use arrow::datatypes::SchemaRef;
use bytes::Bytes;
use futures::TryStreamExt;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};
use parquet::arrow::ArrowWriter;
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::statistics::StatisticsConverter;
use parquet::arrow::arrow_reader::{
    ArrowPredicateFn, ArrowReaderMetadata, ArrowReaderOptions, ParquetRecordBatchReader,
    ParquetRecordBatchReaderBuilder, RowFilter, RowSelection, RowSelector,
};
use parquet::arrow::async_reader::{
    ParquetObjectReader, ParquetRecordBatchStream, ParquetRecordBatchStreamBuilder,
};
use parquet::basic::Compression;
use parquet::file::metadata::PageIndexPolicy;
use parquet::file::properties::WriterProperties;

use crate::Result;

/// Row groups small enough to decode in parallel and to prune, large enough to compress well.
pub const ROW_GROUP_ROWS: usize = 128 * 1024;

/// A column chunk's dictionary stops growing at this size and the chunk goes on plain-encoded.
/// Low-cardinality columns (categories, countries, small counts) stay well below it, so they
/// keep their dictionaries; unique or nearly unique ones (keys, timestamps, amounts, free text)
/// fall back after a few thousand values instead of at parquet's default of 1 MiB, which for
/// 8-byte values is the whole 128 Ki-row group: every value hashed and interned for a
/// dictionary as large as the data, the largest single cost of compaction in `benches/compact`
/// (about a third of compactord's CPU). Row-group statistics are unaffected.
pub const DICTIONARY_PAGE_BYTES: usize = 64 * 1024;

/// Rows per data page (at most; a page also ends at parquet's 1 MiB). A reader that needs a
/// few rows of a row group — a key lookup, a selective filter's other columns, a top-K past
/// its threshold — decompresses and decodes only the pages holding them (the page index
/// says where they are). With the byte limit alone, a numeric column's row group was one
/// page, so one wanted row cost the whole column chunk of every column.
pub const PAGE_ROWS: usize = 8 * 1024;

pub fn writer_properties() -> WriterProperties {
    WriterProperties::builder()
        .set_compression(Compression::SNAPPY)
        .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
        .set_data_page_row_count_limit(PAGE_ROWS)
        .set_dictionary_page_size_limit(DICTIONARY_PAGE_BYTES)
        .build()
}

/// Encodes batches (all of `schema`) as one Parquet file in memory.
pub fn encode(schema: SchemaRef, batches: &[RecordBatch]) -> Result<Bytes> {
    let mut buffer = Vec::new();
    let mut writer = ArrowWriter::try_new(&mut buffer, schema, Some(writer_properties()))?;
    for batch in batches {
        writer.write(batch)?;
    }
    writer.close()?;
    Ok(Bytes::from(buffer))
}

/// Decodes a whole Parquet file held in memory.
pub fn decode(bytes: Bytes) -> Result<(SchemaRef, Vec<RecordBatch>)> {
    let builder = ParquetRecordBatchReaderBuilder::try_new(bytes)?;
    let schema = builder.schema().clone();
    let reader = builder.with_batch_size(64 * 1024).build()?;
    let batches = reader.collect::<Result<Vec<_>, _>>()?;
    Ok((schema, batches))
}

/// Reads a whole Parquet object. Decoding runs on the blocking pool: it is CPU work.
pub async fn read(store: &dyn ObjectStore, path: &Path) -> Result<(SchemaRef, Vec<RecordBatch>)> {
    let bytes = store.get(path).await?.bytes().await?;
    match tokio::task::spawn_blocking(move || decode(bytes)).await {
        Ok(result) => result,
        Err(join) => Err(crate::Error::InvalidInput(format!(
            "decoding {path} failed: {join}"
        ))),
    }
}

/// The suffix [`RowGroups::open`] reads first: the footer of our files (a few KiB per row
/// group) in one request.
const FOOTER_HINT_BYTES: usize = 64 * 1024;

/// A Parquet object read one row group at a time: [`Self::next`] fetches a row group's bytes
/// (async I/O) and hands back a reader that decodes them, CPU work for the blocking pool. At
/// most one row group of encoded bytes is held, not the whole object.
pub struct RowGroups {
    stream: ParquetRecordBatchStream<ParquetObjectReader>,
}

impl RowGroups {
    /// Opens `path` (its footer is read here), decoding in batches of at most `batch_rows`.
    /// The footer comes in one suffix read, without a HEAD for the size first (a manifest's
    /// size is informative; the reader needs the truth, and the suffix read gets it).
    pub async fn open(store: Arc<dyn ObjectStore>, path: &Path, batch_rows: usize) -> Result<Self> {
        let reader =
            ParquetObjectReader::new(store, path.clone()).with_footer_size_hint(FOOTER_HINT_BYTES);
        let stream = ParquetRecordBatchStreamBuilder::new(reader)
            .await?
            .with_batch_size(batch_rows)
            .build()?;
        Ok(Self { stream })
    }

    /// The Arrow schema of the object's rows (from its footer).
    pub fn schema(&self) -> &SchemaRef {
        self.stream.schema()
    }

    /// The next row group's decoder, `None` after the last.
    pub async fn next(&mut self) -> Result<Option<ParquetRecordBatchReader>> {
        Ok(self.stream.next_row_group().await?)
    }
}

/// Parsed footers, page indexes included, of Parquet objects by path, for repeated point
/// reads ([`read_equal`]) and queryd's own scans. Objects are immutable (invariant 1), so an entry never goes stale.
/// Bounded by [`MAX_FOOTERS`] entries: when full it starts over (simple; the next reads parse
/// their footers again).
#[derive(Default)]
pub struct Footers {
    entries: std::sync::Mutex<std::collections::HashMap<Path, ArrowReaderMetadata>>,
}

/// The most footers [`Footers`] keeps (a footer of a 16 MiB file with its page index is a
/// few tens of KiB).
pub const MAX_FOOTERS: usize = 256;

impl Footers {
    /// The footer of `path`, read (HEAD for the size, then the footer and page index) unless
    /// known.
    pub async fn get(
        &self,
        store: &Arc<dyn ObjectStore>,
        path: &Path,
    ) -> Result<ArrowReaderMetadata> {
        let known = self.lock().get(path).cloned();
        if let Some(meta) = known {
            return Ok(meta);
        }
        // The size, for the page index: read by suffix, it lies before the footer's bytes and
        // parquet refuses it ("index data range exceeds remainder length").
        let size = store.head(path).await?.size;
        let mut reader = ParquetObjectReader::new(store.clone(), path.clone())
            .with_file_size(size)
            .with_footer_size_hint(FOOTER_HINT_BYTES);
        let options = ArrowReaderOptions::new().with_page_index_policy(PageIndexPolicy::Optional);
        let meta = ArrowReaderMetadata::load_async(&mut reader, options).await?;
        let mut entries = self.lock();
        if entries.len() >= MAX_FOOTERS {
            entries.clear();
        }
        entries.insert(path.clone(), meta.clone());
        Ok(meta)
    }

    fn lock(
        &self,
    ) -> std::sync::MutexGuard<'_, std::collections::HashMap<Path, ArrowReaderMetadata>> {
        // Inserts and clears are single operations: a poisoned map is still consistent.
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The rows of a Parquet object whose columns equal the given values: `wanted` pairs a
/// top-level column with a one-element array of its type (a primary key's columns, say).
/// Row groups whose statistics exclude any value are not read, and the comparison runs while
/// those columns decode, so the other columns decode only the matching rows (with the page
/// index, only their pages are fetched). For point lookups on a file: a few small reads and a
/// few KiB decoded, not whole row groups.
pub async fn read_equal(
    store: Arc<dyn ObjectStore>,
    footers: &Footers,
    path: &Path,
    wanted: &[(usize, ArrayRef)],
) -> Result<Vec<RecordBatch>> {
    let meta = footers.get(&store, path).await?;
    let reader = ParquetObjectReader::new(store, path.clone());
    let groups = meta.metadata().row_groups();
    // A missing statistic (null) excludes nothing.
    let holds = |b: &BooleanArray, g: usize| b.is_null(g) || b.value(g);
    let mut candidates: Vec<usize> = (0..groups.len()).collect();
    for (column, value) in wanted {
        let name = meta.schema().field(*column).name();
        let stats = StatisticsConverter::try_new(name, meta.schema(), meta.parquet_schema())?;
        let value = Scalar::new(value.clone());
        let from_min = lt_eq(&stats.row_group_mins(groups)?, &value)?;
        let to_max = gt_eq(&stats.row_group_maxes(groups)?, &value)?;
        candidates.retain(|&g| holds(&from_min, g) && holds(&to_max, g));
    }
    if candidates.is_empty() {
        return Ok(Vec::new());
    }
    // Within those, the pages whose statistics may hold the first column's value: the key's
    // first column, sorted in a base file, so one page of each column is decoded, not the
    // row group's whole column chunks.
    let selection = match wanted.first() {
        Some((column, value)) => page_selection(&meta, &candidates, *column, value)?,
        None => None,
    };
    if selection.as_ref().is_some_and(|s| !s.selects_any()) {
        return Ok(Vec::new());
    }
    // The predicate's batch holds the masked columns in the file's order.
    let mut wanted = wanted.to_vec();
    wanted.sort_by_key(|(column, _)| *column);
    let mask = ProjectionMask::roots(meta.parquet_schema(), wanted.iter().map(|(c, _)| *c));
    let values: Vec<ArrayRef> = wanted.into_iter().map(|(_, value)| value).collect();
    let predicate = ArrowPredicateFn::new(mask, move |batch: RecordBatch| {
        crate::keys::rows_equal(batch.num_rows(), batch.columns().iter().zip(&values))
    });
    let mut builder = ParquetRecordBatchStreamBuilder::new_with_metadata(reader, meta)
        .with_row_groups(candidates)
        .with_row_filter(RowFilter::new(vec![Box::new(predicate)]));
    if let Some(selection) = selection {
        builder = builder.with_row_selection(selection);
    }
    let batches: Vec<RecordBatch> = builder.build()?.try_collect().await?;
    Ok(batches.into_iter().filter(|b| b.num_rows() > 0).collect())
}

/// The rows of the `candidates` row groups (ascending) whose data pages may hold `value` in
/// `column`, by the page index (the pages' min and max); `None` when the file has no page
/// index for it. A page without statistics is kept.
fn page_selection(
    meta: &ArrowReaderMetadata,
    candidates: &[usize],
    column: usize,
    value: &ArrayRef,
) -> Result<Option<RowSelection>> {
    let file = meta.metadata();
    let (Some(pages), Some(offsets)) = (file.column_index(), file.offset_index()) else {
        return Ok(None);
    };
    let name = meta.schema().field(column).name();
    let stats = StatisticsConverter::try_new(name, meta.schema(), meta.parquet_schema())?;
    let Some(rows) = stats.data_page_row_counts(offsets, file.row_groups(), candidates)? else {
        return Ok(None);
    };
    let mins = stats.data_page_mins(pages, offsets, candidates)?;
    let maxes = stats.data_page_maxes(pages, offsets, candidates)?;
    if rows.null_count() > 0 || mins.len() != rows.len() || maxes.len() != rows.len() {
        return Ok(None);
    }
    let value = Scalar::new(value.clone());
    let (from_min, to_max) = (lt_eq(&mins, &value)?, gt_eq(&maxes, &value)?);
    let holds = |b: &BooleanArray, p: usize| b.is_null(p) || b.value(p);
    let selectors: Vec<RowSelector> = (0..rows.len())
        .map(|p| {
            let n = usize::try_from(rows.value(p)).unwrap_or(usize::MAX);
            if holds(&from_min, p) && holds(&to_max, p) {
                RowSelector::select(n)
            } else {
                RowSelector::skip(n)
            }
        })
        .collect();
    Ok(Some(RowSelection::from(selectors)))
}

/// Writes an immutable object: put-if-absent, so nothing is ever overwritten (invariant 1).
///
/// For names the writer alone chose (a fresh id): an object already there holding exactly
/// these bytes is this write's own earlier attempt — its response was lost and the store
/// client retried it — and counts as written. Answering that as "already exists" made a
/// client drop a write that was never committed. Other bytes there are a true conflict.
pub async fn put_new(store: &dyn ObjectStore, path: &Path, bytes: Bytes) -> Result<()> {
    let put = store
        .put_opts(
            path,
            PutPayload::from(bytes.clone()),
            PutOptions::from(PutMode::Create),
        )
        .await;
    match put {
        Err(already @ object_store::Error::AlreadyExists { .. }) => {
            let there = store.get(path).await?.bytes().await?;
            if there == bytes {
                Ok(())
            } else {
                Err(already.into())
            }
        }
        other => other.map(|_| ()).map_err(Into::into),
    }
}

#[cfg(test)]
mod tests {
    use arrow::array::{AsArray, Int64Array, StringArray};

    #[tokio::test]
    async fn a_put_whose_response_was_lost_counts_as_written_but_other_bytes_conflict() {
        let store = object_store::memory::InMemory::new();
        let path = Path::from("deltas/one.parquet");
        let bytes = Bytes::from_static(b"delta bytes");
        super::put_new(&store, &path, bytes.clone()).await.unwrap();
        // The retry of a put that landed: the same bytes.
        super::put_new(&store, &path, bytes).await.unwrap();
        let other = super::put_new(&store, &path, Bytes::from_static(b"other")).await;
        assert!(
            matches!(
                other,
                Err(crate::Error::ObjectStore(
                    object_store::Error::AlreadyExists { .. }
                ))
            ),
            "{other:?}"
        );
    }
    use arrow::datatypes::{DataType, Field, Int64Type, Schema};
    use object_store::memory::InMemory;

    use super::*;

    /// 300 000 rows in three row groups, several MiB: the footer and the page index are
    /// well beyond the first suffix read.
    async fn big_file(store: &Arc<dyn ObjectStore>, path: &Path) {
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("note", DataType::Utf8, true),
        ]));
        let n = 300_000;
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(Int64Array::from_iter_values(0..n)),
                Arc::new(StringArray::from_iter_values(
                    (0..n).map(|i| format!("note number {i}")),
                )),
            ],
        )
        .unwrap();
        let bytes = encode(schema, &[batch]).unwrap();
        assert!(bytes.len() > 4 * FOOTER_HINT_BYTES);
        put_new(store.as_ref(), path, bytes).await.unwrap();
    }

    #[tokio::test]
    async fn read_equal_finds_the_row_in_any_row_group_and_nothing_else() {
        let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        let path = Path::from("t/part-0.parquet");
        big_file(&store, &path).await;
        let footers = Footers::default();
        // Rows at row group boundaries, and at page boundaries (pages of PAGE_ROWS rows),
        // where the page index picks the page.
        let page = PAGE_ROWS as i64;
        let ids = [
            0_i64,
            131_071,
            131_072,
            299_999,
            page - 1,
            page,
            131_072 + page,
        ];
        for id in ids {
            let value: ArrayRef = Arc::new(Int64Array::from(vec![id]));
            let rows = read_equal(store.clone(), &footers, &path, &[(0, value)])
                .await
                .unwrap();
            assert_eq!(rows.iter().map(|b| b.num_rows()).sum::<usize>(), 1, "{id}");
            assert_eq!(rows[0].column(0).as_primitive::<Int64Type>().value(0), id);
            assert_eq!(
                rows[0].column(1).as_string::<i32>().value(0),
                format!("note number {id}")
            );
        }
        let missing: ArrayRef = Arc::new(Int64Array::from(vec![300_000]));
        assert!(
            read_equal(store.clone(), &footers, &path, &[(0, missing)])
                .await
                .unwrap()
                .is_empty()
        );
        // Several columns (a composite key), named in any order: every one must match.
        let (id, note) = (131_072_i64, "note number 131072");
        let both = |note: &str| -> Vec<(usize, ArrayRef)> {
            vec![
                (1, Arc::new(StringArray::from(vec![note.to_owned()]))),
                (0, Arc::new(Int64Array::from(vec![id]))),
            ]
        };
        let rows = read_equal(store.clone(), &footers, &path, &both(note))
            .await
            .unwrap();
        assert_eq!(rows.iter().map(|b| b.num_rows()).sum::<usize>(), 1);
        assert_eq!(rows[0].column(0).as_primitive::<Int64Type>().value(0), id);
        let other = read_equal(store.clone(), &footers, &path, &both("note number 7"))
            .await
            .unwrap();
        assert!(other.is_empty(), "the id matches, the note does not");
        assert_eq!(footers.lock().len(), 1, "one footer read, then reused");
    }

    #[tokio::test]
    async fn a_lookup_reads_only_the_page_that_may_hold_the_key() {
        let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        let path = Path::from("t/part-0.parquet");
        big_file(&store, &path).await;
        let meta = Footers::default().get(&store, &path).await.unwrap();
        let id = 131_072 + PAGE_ROWS as i64 + 5;
        let value: ArrayRef = Arc::new(Int64Array::from(vec![id]));
        let selection = page_selection(&meta, &[1], 0, &value)
            .unwrap()
            .expect("the writer writes a page index");
        assert_eq!(
            selection.row_count(),
            PAGE_ROWS,
            "one page of the row group"
        );
        let absent: ArrayRef = Arc::new(Int64Array::from(vec![-1]));
        let none = page_selection(&meta, &[0, 1], 0, &absent).unwrap().unwrap();
        assert!(!none.selects_any());
    }

    #[tokio::test]
    async fn row_groups_stream_a_big_file_whole() {
        let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        let path = Path::from("t/part-0.parquet");
        big_file(&store, &path).await;
        let mut groups = RowGroups::open(store.clone(), &path, 50_000).await.unwrap();
        let (mut rows, mut next_id) = (0, 0);
        while let Some(group) = groups.next().await.unwrap() {
            for batch in group {
                let batch = batch.unwrap();
                assert!(batch.num_rows() <= 50_000);
                let ids = batch.column(0).as_primitive::<Int64Type>();
                assert_eq!(ids.value(0), next_id, "in order, nothing skipped");
                next_id += batch.num_rows() as i64;
                rows += batch.num_rows();
            }
        }
        assert_eq!(rows, 300_000);
    }
}
