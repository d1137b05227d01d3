//! Filters evaluated on a column chunk's encoded pages, for [`super::count`]: when every data
//! page of the chunk is dictionary-encoded, the filters are evaluated once per dictionary
//! value, and each row's answer is its index's, read straight off the pages' run-length /
//! bit-packed indices. No value is decoded per row, and no Arrow array is built.
//!
//! Why: decoding lineitem's `l_shipdate` (dictionary pages of 2,526 dates) into a `Date32`
//! array and comparing it was most of a count's time after the string columns were read as
//! dictionaries; DuckDB evaluates such filters on the dictionary too.
//!
//! The answers are the same kernels' ([`crate::filter::truth`] on the dictionary values), so
//! they are the engine's. Only operators false on null take this path (a null row has no
//! index: its answer is false).

use std::sync::Arc;

use arrow::array::{ArrayRef, ArrowPrimitiveType, PrimitiveArray, StringArray};
use arrow::buffer::{BooleanBuffer, Buffer, ScalarBuffer};
use arrow::datatypes::{
    DataType, Date32Type, Date64Type, Float32Type, Float64Type, Int32Type, Int64Type, TimeUnit,
    TimestampMicrosecondType, TimestampMillisecondType, TimestampNanosecondType,
    TimestampSecondType, UInt32Type, UInt64Type,
};
use bytes::Bytes;
use parquet::basic::{Encoding, Type as Physical};
use parquet::column::page::{Page, PageReader};
use parquet::file::metadata::ColumnChunkMetaData;
use parquet::file::reader::{ChunkReader, Length};
use parquet::file::serialized_reader::SerializedPageReader;

use crate::error::QueryError;
use crate::filter;
use crate::plan::FilterOp;

/// Whether `ops` (on one column of Arrow type `data_type`) are evaluated on `chunk`'s pages:
/// a top-level column whose every data page is dictionary-encoded, values this module decodes
/// for that type, and operators false on null.
pub fn applies(chunk: &ColumnChunkMetaData, data_type: &DataType, ops: &[&FilterOp]) -> bool {
    let descr = chunk.column_descr();
    let dictionary_only = chunk.dictionary_page_offset().is_some()
        && chunk.page_encoding_stats_mask().is_some_and(|mask| {
            mask.is_only(Encoding::PLAIN_DICTIONARY) || mask.is_only(Encoding::RLE_DICTIONARY)
        });
    dictionary_only
        && descr.max_rep_level() == 0
        && descr.max_def_level() <= 1
        && decodable(chunk.column_type(), data_type)
        && ops
            .iter()
            .all(|op| !matches!(op, FilterOp::IsNull | FilterOp::IsNotNull))
}

/// Where every one of `ops` is true over the chunk's `rows` rows; `bytes` holds the chunk
/// (its `byte_range`). Dictionary values are decoded as `data_type` ([`applies`]).
pub fn truth(
    bytes: Bytes,
    chunk: &ColumnChunkMetaData,
    rows: usize,
    data_type: &DataType,
    ops: &[&FilterOp],
) -> Result<BooleanBuffer, QueryError> {
    let (start, _) = chunk.byte_range();
    let reader = Arc::new(Chunk { start, bytes });
    let mut pages = SerializedPageReader::new(reader, chunk, rows, None)?;
    let nullable = chunk.column_descr().max_def_level() == 1;
    // Each dictionary value's answer (an index past it is a corrupt file, refused).
    let mut answers: Option<Vec<bool>> = None;
    let mut out = Bits::with_capacity(rows);
    while let Some(page) = pages.get_next_page()? {
        let (levels, values, count) = match &page {
            Page::DictionaryPage {
                buf, num_values, ..
            } => {
                let values = dictionary(buf, *num_values as usize, chunk.column_type(), data_type)?;
                let mut all = BooleanBuffer::new_set(values.len());
                for op in ops {
                    all = &all & &filter::truth(&values, op)?;
                }
                answers = Some(all.iter().collect());
                continue;
            }
            // V1: the definition levels (if any) lead the buffer, after their byte length.
            Page::DataPage {
                buf,
                num_values,
                def_level_encoding,
                ..
            } => {
                if !nullable {
                    (None, buf.as_ref(), *num_values as usize)
                } else if *def_level_encoding != Encoding::RLE {
                    return Err(corrupt("definition levels not RLE-encoded"));
                } else {
                    let (len, rest) = buf
                        .split_first_chunk::<4>()
                        .ok_or_else(|| corrupt("short page"))?;
                    let len = u32::from_le_bytes(*len) as usize;
                    let (levels, values) = rest
                        .split_at_checked(len)
                        .ok_or_else(|| corrupt("short page"))?;
                    (Some(levels), values, *num_values as usize)
                }
            }
            // V2: repetition, then definition levels, each of a known length.
            Page::DataPageV2 {
                buf,
                num_values,
                def_levels_byte_len,
                rep_levels_byte_len,
                ..
            } => {
                let from = *rep_levels_byte_len as usize;
                let to = from + *def_levels_byte_len as usize;
                let levels = buf.get(from..to).ok_or_else(|| corrupt("short page"))?;
                let values = buf.get(to..).ok_or_else(|| corrupt("short page"))?;
                (nullable.then_some(levels), values, *num_values as usize)
            }
        };
        let answers = answers
            .as_deref()
            .ok_or_else(|| corrupt("a data page before the dictionary"))?;
        page_truth(levels, values, count, answers, &mut out)?;
    }
    if out.len != rows {
        return Err(corrupt("pages hold another number of rows"));
    }
    Ok(out.finish())
}

/// Appends one data page's answers: `values` is a bit width byte and the dictionary indices
/// of the page's non-null values; `levels` (nullable columns) their definition levels, 1 for
/// a value and 0 for a null.
fn page_truth(
    levels: Option<&[u8]>,
    values: &[u8],
    count: usize,
    answers: &[bool],
    out: &mut Bits,
) -> Result<(), QueryError> {
    let Some(levels) = levels else {
        return indices(values, count, answers, out);
    };
    let mut present = Bits::with_capacity(count);
    hybrid(levels, 1, count, |run| {
        present
            .run(run, &[false, true])
            .then_some(())
            .ok_or_else(|| corrupt("a definition level past 1"))
    })?;
    let present = present.finish();
    let mut hits = Bits::with_capacity(present.count_set_bits());
    indices(values, present.count_set_bits(), answers, &mut hits)?;
    let hits = hits.finish();
    let mut next = hits.iter();
    for row in present.iter() {
        out.push(u64::from(row && next.next().unwrap_or(false)), 1);
    }
    Ok(())
}

/// Appends the answers of `count` dictionary indices (a bit width byte, then the indices).
fn indices(
    values: &[u8],
    count: usize,
    answers: &[bool],
    out: &mut Bits,
) -> Result<(), QueryError> {
    if count == 0 {
        return Ok(());
    }
    let (&width, data) = values.split_first().ok_or_else(|| corrupt("short page"))?;
    hybrid(data, width, count, |run| {
        out.run(run, answers)
            .then_some(())
            .ok_or_else(|| corrupt("an index past the dictionary"))
    })
}

/// A run of a RLE / bit-packed hybrid stream.
enum Run<'a> {
    /// `count` times `value`.
    Repeated { value: usize, count: usize },
    /// The first `count` of the values bit-packed in `bytes`, `width` bits each, LSB first.
    Packed {
        bytes: &'a [u8],
        width: u8,
        count: usize,
    },
}

/// Calls `each` with the runs of the first `count` values of a RLE / bit-packed hybrid
/// stream of `width`-bit values (Parquet's encoding of levels and dictionary indices).
fn hybrid<'a>(
    mut data: &'a [u8],
    width: u8,
    mut count: usize,
    mut each: impl FnMut(Run<'a>) -> Result<(), QueryError>,
) -> Result<(), QueryError> {
    if width > 32 {
        return Err(corrupt("a bit width over 32"));
    }
    while count > 0 {
        let header = uleb128(&mut data)?;
        let n = usize::try_from(header >> 1).map_err(|_| corrupt("a run too long"))?;
        if n == 0 {
            return Err(corrupt("an empty run"));
        }
        if header & 1 == 0 {
            let size = usize::from(width).div_ceil(8);
            let (value, rest) = data
                .split_at_checked(size)
                .ok_or_else(|| corrupt("short run"))?;
            let value = value
                .iter()
                .rev()
                .fold(0usize, |v, b| (v << 8) | usize::from(*b));
            data = rest;
            let n = n.min(count);
            each(Run::Repeated { value, count: n })?;
            count -= n;
        } else {
            // `n` groups of 8 values; the last group's bytes may be cut short.
            let size = n.saturating_mul(usize::from(width)).min(data.len());
            let (bytes, rest) = data.split_at(size);
            data = rest;
            let n = n.saturating_mul(8).min(count);
            each(Run::Packed {
                bytes,
                width,
                count: n,
            })?;
            count -= n;
        }
    }
    Ok(())
}

fn uleb128(data: &mut &[u8]) -> Result<u64, QueryError> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let (&byte, rest) = data
            .split_first()
            .ok_or_else(|| corrupt("short run header"))?;
        *data = rest;
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Ok(value);
        }
    }
    Err(corrupt("a run header too long"))
}

/// A growing bitmap, written a word at a time.
struct Bits {
    words: Vec<u64>,
    len: usize,
}

impl Bits {
    fn with_capacity(bits: usize) -> Self {
        Self {
            words: Vec::with_capacity(bits.div_ceil(64)),
            len: 0,
        }
    }

    /// Appends the low `n` (≤ 64) bits of `bits`.
    fn push(&mut self, bits: u64, n: usize) {
        if n == 0 {
            return;
        }
        let bits = if n == 64 { bits } else { bits & ((1 << n) - 1) };
        let offset = self.len % 64;
        if offset == 0 {
            self.words.push(bits);
        } else {
            if let Some(last) = self.words.last_mut() {
                *last |= bits << offset;
            }
            if offset + n > 64 {
                self.words.push(bits >> (64 - offset));
            }
        }
        self.len += n;
    }

    /// Appends the answers of a run's values; false if a value has none.
    fn run(&mut self, run: Run<'_>, answers: &[bool]) -> bool {
        match run {
            Run::Repeated { value, count } => {
                let Some(&bit) = answers.get(value) else {
                    return false;
                };
                let word = if bit { u64::MAX } else { 0 };
                let mut left = count;
                while left > 0 {
                    let n = left.min(64);
                    self.push(word, n);
                    left -= n;
                }
                true
            }
            Run::Packed {
                bytes,
                width,
                count,
            } => {
                if width == 0 {
                    return self.run(Run::Repeated { value: 0, count }, answers);
                }
                // A group of 8 values is `width` bytes; bytes past a short last group read
                // as zero.
                let size = usize::from(width);
                let (mut offset, mut left) = (0, count);
                while left > 0 {
                    let n = left.min(8);
                    let Some(byte) = group_answers(bytes, offset, width, n, answers) else {
                        return false;
                    };
                    self.push(byte, n);
                    offset += size;
                    left -= n;
                }
                true
            }
        }
    }

    fn finish(self) -> BooleanBuffer {
        BooleanBuffer::new(Buffer::from_vec(self.words), 0, self.len)
    }
}

/// The answers of the first `n` (≤ 8) values of the bit-packed group at `offset` of
/// `bytes`, as the low bits of a word; `None` if a value has none.
fn group_answers(
    bytes: &[u8],
    offset: usize,
    width: u8,
    n: usize,
    answers: &[bool],
) -> Option<u64> {
    let width = usize::from(width);
    let mask = (1u64 << width) - 1;
    let answer = |value: u64| answers.get(value as usize).map(|&a| u64::from(a));
    // The group's bytes from `offset` (zeros past the end), as one little-endian word of
    // `N` bytes.
    fn load<const N: usize>(bytes: &[u8], offset: usize) -> [u8; N] {
        match bytes.get(offset..offset + N) {
            Some(b) => b.try_into().unwrap_or([0; N]),
            None => {
                let mut buf = [0; N];
                let tail = bytes.get(offset..).unwrap_or_default();
                let len = tail.len().min(N);
                buf[..len].copy_from_slice(&tail[..len]);
                buf
            }
        }
    }
    let mut byte = 0u64;
    if width <= 8 {
        let x = u64::from_le_bytes(load::<8>(bytes, offset));
        for j in 0..n {
            byte |= answer((x >> (j * width)) & mask)? << j;
        }
    } else if width <= 16 {
        let x = u128::from_le_bytes(load::<16>(bytes, offset));
        for j in 0..n {
            byte |= answer((x >> (j * width)) as u64 & mask)? << j;
        }
    } else {
        let buf = load::<40>(bytes, offset);
        for j in 0..n {
            let bit = j * width;
            let mut word = [0u8; 8];
            word.copy_from_slice(&buf[bit / 8..bit / 8 + 8]);
            byte |= answer((u64::from_le_bytes(word) >> (bit % 8)) & mask)? << j;
        }
    }
    Some(byte)
}

/// Whether [`dictionary`] decodes values of `physical` type as `data_type`: strings, and
/// primitives stored at their own width (not the narrow integers, which Parquet stores as
/// INT32, nor decimals).
fn decodable(physical: Physical, data_type: &DataType) -> bool {
    use DataType::*;
    match physical {
        Physical::BYTE_ARRAY => matches!(data_type, Utf8 | LargeUtf8 | Utf8View),
        Physical::INT32 => matches!(data_type, Int32 | UInt32 | Date32),
        Physical::INT64 => matches!(data_type, Int64 | UInt64 | Date64 | Timestamp(..)),
        Physical::FLOAT => matches!(data_type, Float32),
        Physical::DOUBLE => matches!(data_type, Float64),
        _ => false,
    }
}

/// A dictionary page's `count` PLAIN-encoded values as an array of `data_type` (strings as
/// `Utf8`, the type filters on string columns compare with here).
fn dictionary(
    buf: &[u8],
    count: usize,
    physical: Physical,
    data_type: &DataType,
) -> Result<ArrayRef, QueryError> {
    use DataType::*;
    if physical == Physical::BYTE_ARRAY {
        let mut strings = Vec::with_capacity(count);
        let mut rest = buf;
        for _ in 0..count {
            let (len, tail) = rest
                .split_first_chunk::<4>()
                .ok_or_else(|| corrupt("short dictionary"))?;
            let (value, tail) = tail
                .split_at_checked(u32::from_le_bytes(*len) as usize)
                .ok_or_else(|| corrupt("short dictionary"))?;
            strings.push(std::str::from_utf8(value).map_err(|_| corrupt("a string not UTF-8"))?);
            rest = tail;
        }
        return Ok(Arc::new(StringArray::from(strings)));
    }
    Ok(match (physical, data_type) {
        (Physical::INT32, Int32) => primitive::<Int32Type>(buf, count, data_type)?,
        (Physical::INT32, UInt32) => primitive::<UInt32Type>(buf, count, data_type)?,
        (Physical::INT32, Date32) => primitive::<Date32Type>(buf, count, data_type)?,
        (Physical::INT64, Int64) => primitive::<Int64Type>(buf, count, data_type)?,
        (Physical::INT64, UInt64) => primitive::<UInt64Type>(buf, count, data_type)?,
        (Physical::INT64, Date64) => primitive::<Date64Type>(buf, count, data_type)?,
        (Physical::INT64, Timestamp(TimeUnit::Second, _)) => {
            primitive::<TimestampSecondType>(buf, count, data_type)?
        }
        (Physical::INT64, Timestamp(TimeUnit::Millisecond, _)) => {
            primitive::<TimestampMillisecondType>(buf, count, data_type)?
        }
        (Physical::INT64, Timestamp(TimeUnit::Microsecond, _)) => {
            primitive::<TimestampMicrosecondType>(buf, count, data_type)?
        }
        (Physical::INT64, Timestamp(TimeUnit::Nanosecond, _)) => {
            primitive::<TimestampNanosecondType>(buf, count, data_type)?
        }
        (Physical::FLOAT, Float32) => primitive::<Float32Type>(buf, count, data_type)?,
        (Physical::DOUBLE, Float64) => primitive::<Float64Type>(buf, count, data_type)?,
        _ => return Err(corrupt("a dictionary of another type")),
    })
}

/// `count` little-endian values of `T` (the dictionary page's bytes, as Parquet stores
/// them), typed `data_type` (a timestamp's unit and zone).
fn primitive<T: ArrowPrimitiveType>(
    buf: &[u8],
    count: usize,
    data_type: &DataType,
) -> Result<ArrayRef, QueryError> {
    let size = std::mem::size_of::<T::Native>();
    let bytes = buf
        .get(..count.saturating_mul(size))
        .ok_or_else(|| corrupt("short dictionary"))?;
    let values = ScalarBuffer::<T::Native>::new(Buffer::from(bytes), 0, count);
    Ok(Arc::new(
        PrimitiveArray::<T>::new(values, None).with_data_type(data_type.clone()),
    ))
}

fn corrupt(what: &str) -> QueryError {
    QueryError::Internal(format!("a column chunk read by page: {what}"))
}

/// A column chunk's bytes, read at the file offsets the page reader asks for.
struct Chunk {
    start: u64,
    bytes: Bytes,
}

impl Length for Chunk {
    fn len(&self) -> u64 {
        self.start + self.bytes.len() as u64
    }
}

impl ChunkReader for Chunk {
    type T = bytes::buf::Reader<Bytes>;

    fn get_read(&self, start: u64) -> parquet::errors::Result<Self::T> {
        use bytes::Buf;
        Ok(self.get_bytes(start, self.bytes.len())?.reader())
    }

    fn get_bytes(&self, start: u64, length: usize) -> parquet::errors::Result<Bytes> {
        let from = start
            .checked_sub(self.start)
            .and_then(|f| usize::try_from(f).ok())
            .filter(|f| *f <= self.bytes.len())
            .ok_or_else(|| {
                parquet::errors::ParquetError::EOF(format!("offset {start} outside the chunk"))
            })?;
        let to = from.saturating_add(length).min(self.bytes.len());
        Ok(self.bytes.slice(from..to))
    }
}

#[cfg(test)]
mod tests {
    use arrow::array::{Date32Array, Int64Array, RecordBatch};
    use arrow::datatypes::{Field, Schema};
    use datafusion::common::ScalarValue;
    use parquet::arrow::ArrowWriter;
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    use parquet::file::metadata::ParquetMetaDataReader;
    use parquet::file::properties::{WriterProperties, WriterVersion};

    use super::*;
    use crate::plan::CmpOp;

    const ROWS: usize = 200_000;

    /// Strings of 7 values with nulls, random days, 100,000 distinct integers with nulls
    /// (17-bit indices), and long runs of one string (RLE runs).
    fn table() -> RecordBatch {
        // xorshift: random enough, the same every run.
        let mut x = 7u64;
        let mut random = move |n: u64| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x % n
        };
        let modes = ["AIR", "MAIL", "RAIL", "SHIP", "TRUCK", "FOB", "REG AIR"];
        let mode = StringArray::from_iter(
            (0..ROWS).map(|_| (random(10) > 0).then(|| modes[random(7) as usize])),
        );
        let day = Date32Array::from_iter_values((0..ROWS).map(|_| 8000 + random(2526) as i32));
        let big = Int64Array::from_iter(
            (0..ROWS).map(|_| (random(20) > 0).then(|| random(100_000) as i64)),
        );
        let run = StringArray::from_iter_values((0..ROWS).map(|i| modes[(i / 30_000) % 7]));
        let schema = Schema::new(vec![
            Field::new("mode", DataType::Utf8, true),
            Field::new("day", DataType::Date32, false),
            Field::new("big", DataType::Int64, true),
            Field::new("run", DataType::Utf8View, false),
        ]);
        let run = arrow::compute::cast(&run, &DataType::Utf8View).unwrap();
        RecordBatch::try_new(
            Arc::new(schema),
            vec![Arc::new(mode), Arc::new(day), Arc::new(big), run],
        )
        .unwrap()
    }

    fn write(batch: &RecordBatch, version: WriterVersion, dictionary_bytes: usize) -> Bytes {
        let props = WriterProperties::builder()
            .set_writer_version(version)
            .set_max_row_group_row_count(Some(128 * 1024))
            .set_data_page_row_count_limit(8 * 1024)
            .set_dictionary_page_size_limit(dictionary_bytes)
            .set_compression(parquet::basic::Compression::SNAPPY)
            .build();
        let mut out = Vec::new();
        let mut writer = ArrowWriter::try_new(&mut out, batch.schema(), Some(props)).unwrap();
        writer.write(batch).unwrap();
        writer.close().unwrap();
        Bytes::from(out)
    }

    fn ops(column: &str) -> Vec<FilterOp> {
        let value = |v: &str| match column {
            "day" => ScalarValue::Date32(Some(v.parse().unwrap())),
            "big" => ScalarValue::Int64(Some(v.parse().unwrap())),
            _ => ScalarValue::Utf8(Some(v.into())),
        };
        let (a, b) = match column {
            "day" => ("9000", "10000"),
            "big" => ("500", "77777"),
            _ => ("MAIL", "SHIP"),
        };
        let mut ops: Vec<FilterOp> = [CmpOp::Eq, CmpOp::NotEq, CmpOp::Gt, CmpOp::LtEq]
            .into_iter()
            .map(|op| FilterOp::Cmp(op, value(a)))
            .collect();
        ops.push(FilterOp::In(vec![value(a), value(b)]));
        if matches!(column, "mode" | "run") {
            ops.push(FilterOp::Like {
                pattern: "%AI%".into(),
                case_insensitive: false,
            });
        }
        ops
    }

    /// Every filter answers on the pages as on the decoded column, in data pages of both
    /// versions, for nullable and required columns, bit-packed indices of 3 to 17 bits and
    /// RLE runs.
    #[test]
    fn filters_on_pages_answer_as_on_decoded_columns() {
        let batch = table();
        for version in [WriterVersion::PARQUET_1_0, WriterVersion::PARQUET_2_0] {
            let bytes = write(&batch, version, 4 << 20);
            let meta = ParquetMetaDataReader::new()
                .parse_and_finish(&bytes)
                .unwrap();
            for (g, row_group) in meta.row_groups().iter().enumerate() {
                let rows = row_group.num_rows() as usize;
                let decoded = ParquetRecordBatchReaderBuilder::try_new(bytes.clone())
                    .unwrap()
                    .with_row_groups(vec![g])
                    .with_batch_size(rows)
                    .build()
                    .unwrap()
                    .next()
                    .unwrap()
                    .unwrap();
                for (c, field) in batch.schema().fields().iter().enumerate() {
                    let chunk = row_group.column(c);
                    let (start, len) = chunk.byte_range();
                    let chunk_bytes = bytes.slice(start as usize..(start + len) as usize);
                    for op in ops(field.name()) {
                        assert!(
                            applies(chunk, field.data_type(), &[&op]),
                            "{version:?} {} {op:?}",
                            field.name()
                        );
                        let paged =
                            truth(chunk_bytes.clone(), chunk, rows, field.data_type(), &[&op])
                                .unwrap();
                        let expected = filter::truth(decoded.column(c), &op).unwrap();
                        assert_eq!(
                            paged,
                            expected,
                            "{version:?} group {g} {} {op:?}",
                            field.name()
                        );
                    }
                    // Two filters on one column: both hold.
                    let both = ops(field.name());
                    let both: Vec<&FilterOp> = both.iter().take(3).skip(1).collect();
                    let paged = truth(chunk_bytes, chunk, rows, field.data_type(), &both).unwrap();
                    let expected = &filter::truth(decoded.column(c), both[0]).unwrap()
                        & &filter::truth(decoded.column(c), both[1]).unwrap();
                    assert_eq!(paged, expected, "{version:?} {} two filters", field.name());
                }
            }
        }
    }

    /// A chunk that fell back to plain pages, and null tests, are for the decoder.
    #[test]
    fn plain_chunks_and_null_tests_are_decoded() {
        let bytes = write(&table(), WriterVersion::PARQUET_1_0, 64 * 1024);
        let meta = ParquetMetaDataReader::new()
            .parse_and_finish(&bytes)
            .unwrap();
        let chunk = meta.row_group(0).column(2);
        let eq = FilterOp::Cmp(CmpOp::Eq, ScalarValue::Int64(Some(5)));
        assert!(!applies(chunk, &DataType::Int64, &[&eq]));
        let mode = meta.row_group(0).column(0);
        assert!(!applies(mode, &DataType::Utf8, &[&FilterOp::IsNull]));
        // A narrow integer is stored as INT32: not decoded here.
        assert!(!decodable(Physical::INT32, &DataType::Int16));
    }

    #[test]
    fn a_corrupt_stream_is_an_error_not_a_panic() {
        let answers = [true, false];
        let mut out = Bits::with_capacity(16);
        // An index past the dictionary, a run with no values, a cut header.
        assert!(indices(&[1, 0b10, 5], 1, &answers, &mut out).is_err());
        assert!(indices(&[1, 0], 4, &answers, &mut out).is_err());
        assert!(indices(&[1, 0x80], 4, &answers, &mut out).is_err());
        assert!(indices(&[40, 0b11], 8, &answers, &mut out).is_err());
    }
}
