//! Result encodings: the JSON page envelope and Arrow IPC streams.
//!
//! JSON values follow datap-rs: integers exact (even beyond 2^53), floats with a decimal
//! point (`1.0`) and `null` for NaN/±inf, booleans, strings; every other type (temporal,
//! decimal, binary, nested) as its Arrow display string, e.g. `"2024-01-01T13:00:00.000123"`.
//! Column names are JSON-escaped like any string.
//!
//! Arrow results carry the dataset's logical types: columns dictionary-encoded in memory are
//! decoded back, so the memory and cold paths produce identical streams, and an empty result
//! still carries its schema.

use std::io::Write;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, RecordBatch};
use arrow::datatypes::{self as t, DataType, Field, Schema, SchemaRef};
use arrow::ipc::writer::StreamWriter;
use arrow::util::display::{ArrayFormatter, FormatOptions};
use bytes::Bytes;

use crate::chunks::to_schema;
use crate::error::QueryError;
use crate::index::dictionary_parts;

mod stream;
pub use stream::{Encoder, Encoding, Format, NotOffered, encode_all};

/// Rows of one batch to encode: all of them, or those at `ids` (ascending positions in the
/// batch). A page of scattered rows is written straight from the resident chunks this way;
/// gathering them into a new batch first (`take`) would copy every value once more.
#[derive(Clone, Debug)]
pub struct Selection {
    pub batch: RecordBatch,
    pub ids: Option<Vec<u32>>,
}

impl Selection {
    /// Every row of `batch`.
    pub fn all(batch: RecordBatch) -> Self {
        Self { batch, ids: None }
    }

    pub fn num_rows(&self) -> usize {
        self.ids.as_ref().map_or(self.batch.num_rows(), Vec::len)
    }

    /// The selected rows as one batch (gathered with `take` when they are scattered).
    pub fn into_batch(self) -> Result<RecordBatch, QueryError> {
        let Some(ids) = self.ids else {
            return Ok(self.batch);
        };
        let indices = arrow::array::UInt32Array::from(ids);
        let columns = self
            .batch
            .columns()
            .iter()
            .map(|c| arrow::compute::take(c.as_ref(), &indices, None))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(RecordBatch::try_new(self.batch.schema(), columns)?)
    }
}

/// `{"data":[…],"page":p,"page_size":n}`.
pub fn json_page(rows: &[Selection], page: u64, page_size: u64) -> Result<Vec<u8>, QueryError> {
    let count: usize = rows.iter().map(Selection::num_rows).sum();
    let columns = rows.first().map_or(0, |r| r.batch.num_columns());
    // About 24 bytes per value (key, quotes, value): one allocation for most pages.
    let mut out = Vec::with_capacity(64 + count * columns * 24);
    out.extend_from_slice(b"{\"data\":");
    write_array(rows, &mut out)?;
    out.extend_from_slice(b",\"page\":");
    out.extend_from_slice(itoa::Buffer::new().format(page).as_bytes());
    out.extend_from_slice(b",\"page_size\":");
    out.extend_from_slice(itoa::Buffer::new().format(page_size).as_bytes());
    out.push(b'}');
    Ok(out)
}

/// The rows of `batches` as a JSON array of objects.
pub fn json_rows(batches: &[RecordBatch], out: &mut Vec<u8>) -> Result<(), QueryError> {
    let rows: Vec<Selection> = batches.iter().cloned().map(Selection::all).collect();
    write_array(&rows, out)
}

/// The rows of `batch` as newline-delimited JSON: one object per line.
pub fn ndjson_rows(batch: &RecordBatch, out: &mut Vec<u8>) -> Result<(), QueryError> {
    write_rows(
        &Selection::all(batch.clone()),
        &mut true,
        Layout::Lines,
        out,
    )
}

/// The selected rows as a JSON array of objects.
fn write_array(rows: &[Selection], out: &mut Vec<u8>) -> Result<(), QueryError> {
    out.push(b'[');
    let mut first_row = true;
    for selection in rows {
        write_rows(selection, &mut first_row, Layout::Array, out)?;
    }
    out.push(b']');
    Ok(())
}

/// How rows are separated: commas in an array, newlines in NDJSON.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Layout {
    Array,
    Lines,
}

/// Appends the selected rows as JSON objects: in an array, each preceded by a comma unless it
/// is the first row (`first_row`, updated); as lines, each followed by a newline.
fn write_rows(
    selection: &Selection,
    first_row: &mut bool,
    layout: Layout,
    out: &mut Vec<u8>,
) -> Result<(), QueryError> {
    let batch = &selection.batch;
    // Each value is preceded by its escaped key and the separator before it, prepared once
    // per batch in one buffer: `{"name":` for the first column, `,"name":` for the others.
    let schema = batch.schema_ref();
    let mut keys = Vec::with_capacity(schema.fields().iter().map(|f| f.name().len() + 4).sum());
    let mut spans = Vec::with_capacity(schema.fields().len());
    for (i, field) in schema.fields().iter().enumerate() {
        let start = keys.len();
        keys.push(if i == 0 { b'{' } else { b',' });
        write_json_str(field.name(), &mut keys);
        keys.push(b':');
        spans.push(start..keys.len());
    }
    let prefixes: Vec<&[u8]> = spans.into_iter().map(|span| &keys[span]).collect();
    let writers = batch
        .columns()
        .iter()
        .map(|c| value_writer(c, selection.num_rows()))
        .collect::<Result<Vec<_>, _>>()?;
    let mut write_row = |row: usize| {
        if !std::mem::take(first_row) && layout == Layout::Array {
            out.push(b',');
        }
        if writers.is_empty() {
            out.push(b'{');
        }
        for (prefix, write) in prefixes.iter().zip(&writers) {
            out.extend_from_slice(prefix);
            write(row, out);
        }
        out.push(b'}');
        if layout == Layout::Lines {
            out.push(b'\n');
        }
    };
    match &selection.ids {
        None => (0..batch.num_rows()).for_each(&mut write_row),
        Some(ids) => {
            for rows in ids.chunks(TOUCH_ROWS) {
                touch_rows(batch.columns(), rows);
                rows.iter().for_each(|&i| write_row(i as usize));
            }
        }
    }
    Ok(())
}

/// Rows of a selection whose values are loaded ahead of writing them ([`touch_rows`]).
const TOUCH_ROWS: usize = 16;

/// Loads the values at `rows` of each column and does nothing with them. Scattered rows (a
/// key lookup, an index page) miss the cache in every column; these loads do not depend on
/// each other, so the core waits for all the misses at once, and the writers then find the
/// lines in cache, instead of waiting for one column's miss after another.
fn touch_rows(columns: &[ArrayRef], rows: &[u32]) {
    use std::hint::black_box;
    let rows = || rows.iter().map(|&r| r as usize);
    for array in columns {
        if let Some(nulls) = array.nulls() {
            rows().for_each(|r| {
                black_box(nulls.is_valid(r));
            });
        }
        arrow::array::downcast_primitive_array!(
            array => rows().for_each(|r| { black_box(array.values()[r]); }),
            DataType::Boolean => {
                let values = array.as_boolean().values();
                rows().for_each(|r| { black_box(values.value(r)); });
            }
            DataType::Utf8 => {
                let offsets = array.as_string::<i32>().value_offsets();
                rows().for_each(|r| { black_box(offsets[r]); });
            }
            DataType::LargeUtf8 => {
                let offsets = array.as_string::<i64>().value_offsets();
                rows().for_each(|r| { black_box(offsets[r]); });
            }
            DataType::Utf8View => {
                let views = array.as_string_view().views();
                rows().for_each(|r| { black_box(views[r]); });
            }
            DataType::Dictionary(_, _) => arrow::array::downcast_dictionary_array!(
                array => {
                    let keys = array.keys().values();
                    rows().for_each(|r| { black_box(keys[r]); });
                }
                _ => {}
            ),
            _ => {}
        );
    }
}

type ValueWriter<'a> = Box<dyn Fn(usize, &mut Vec<u8>) + 'a>;

/// The writer of `array`'s values, for a page that writes `rows` of them.
fn value_writer(array: &ArrayRef, rows: usize) -> Result<ValueWriter<'_>, QueryError> {
    macro_rules! int {
        ($t:ty) => {{
            let a = array.as_primitive::<$t>();
            Box::new(move |i, out: &mut Vec<u8>| {
                if a.is_null(i) {
                    out.extend_from_slice(b"null");
                } else {
                    out.extend_from_slice(itoa::Buffer::new().format(a.value(i)).as_bytes());
                }
            })
        }};
    }
    macro_rules! float {
        ($t:ty, $write:expr) => {{
            let a = array.as_primitive::<$t>();
            Box::new(move |i, out: &mut Vec<u8>| {
                let v = a.value(i);
                if a.is_null(i) || !v.is_finite() {
                    out.extend_from_slice(b"null");
                } else {
                    $write(v, out);
                }
            })
        }};
    }
    macro_rules! string {
        ($a:expr) => {{
            let a = $a;
            Box::new(move |i, out: &mut Vec<u8>| {
                if a.is_null(i) {
                    out.extend_from_slice(b"null");
                } else {
                    write_json_str(a.value(i), out);
                }
            })
        }};
    }
    let writer: ValueWriter<'_> = match array.data_type() {
        DataType::Int8 => int!(t::Int8Type),
        DataType::Int16 => int!(t::Int16Type),
        DataType::Int32 => int!(t::Int32Type),
        DataType::Int64 => int!(t::Int64Type),
        DataType::UInt8 => int!(t::UInt8Type),
        DataType::UInt16 => int!(t::UInt16Type),
        DataType::UInt32 => int!(t::UInt32Type),
        DataType::UInt64 => int!(t::UInt64Type),
        DataType::Float32 => float!(t::Float32Type, |v: f32, out: &mut Vec<u8>| {
            out.extend_from_slice(ryu::Buffer::new().format_finite(v).as_bytes())
        }),
        DataType::Float64 => float!(t::Float64Type, write_f64),
        DataType::Boolean => {
            let a = array.as_boolean();
            Box::new(move |i, out: &mut Vec<u8>| {
                out.extend_from_slice(match (a.is_null(i), a.is_valid(i) && a.value(i)) {
                    (true, _) => b"null",
                    (false, true) => b"true",
                    (false, false) => b"false",
                });
            })
        }
        DataType::Utf8 => string!(array.as_string::<i32>()),
        DataType::LargeUtf8 => string!(array.as_string::<i64>()),
        DataType::Utf8View => string!(array.as_string_view()),
        DataType::Dictionary(key, value) if matches!(**value, DataType::Utf8) => {
            // Decode through the dictionary without materialising the column.
            let (keys, values) = dictionary_parts(array.as_ref(), key).ok_or_else(|| {
                QueryError::Internal(format!("unsupported dictionary key type {key}"))
            })?;
            let values = values.as_string::<i32>();
            let cached = (values.len() <= DictionaryJson::MAX_VALUES
                && rows >= DictionaryJson::MIN_ROWS)
                .then(|| std::cell::RefCell::new(DictionaryJson::new(values.len())));
            Box::new(move |i, out: &mut Vec<u8>| match keys(i) {
                Some(k) if values.is_valid(k) => match &cached {
                    Some(cached) => cached.borrow_mut().write(values, k, out),
                    None => write_json_str(values.value(k), out),
                },
                _ => out.extend_from_slice(b"null"),
            })
        }
        DataType::Timestamp(unit, tz) if tz.as_deref().is_none_or(is_utc) => {
            let (unit, utc) = (*unit, tz.is_some());
            let values: &[i64] = match unit {
                t::TimeUnit::Second => array.as_primitive::<t::TimestampSecondType>().values(),
                t::TimeUnit::Millisecond => {
                    array.as_primitive::<t::TimestampMillisecondType>().values()
                }
                t::TimeUnit::Microsecond => {
                    array.as_primitive::<t::TimestampMicrosecondType>().values()
                }
                t::TimeUnit::Nanosecond => {
                    array.as_primitive::<t::TimestampNanosecondType>().values()
                }
            };
            // Arrow's formatter only for years outside 0..=9999, made on first use: building
            // one costs more than writing a small page.
            let fallback = std::cell::OnceCell::new();
            let last_day = DayCache::default();
            Box::new(move |i, out: &mut Vec<u8>| {
                if array.is_null(i) {
                    out.extend_from_slice(b"null");
                } else if !write_timestamp(out, values[i], unit, utc, &last_day) {
                    let formatter = fallback.get_or_init(|| {
                        ArrayFormatter::try_new(array.as_ref(), &FormatOptions::default()).ok()
                    });
                    out.push(b'"');
                    if let Some(f) = formatter {
                        let _ = write!(out, "{}", f.value(i));
                    }
                    out.push(b'"');
                }
            })
        }
        // Dates, times, timestamps and decimals display as digits and `-:.TZ+`: nothing to
        // escape, so they are written straight into the output.
        t if t.is_temporal()
            || matches!(t, DataType::Decimal128(..) | DataType::Decimal256(..)) =>
        {
            let formatter = ArrayFormatter::try_new(array.as_ref(), &FormatOptions::default())?;
            Box::new(move |i, out: &mut Vec<u8>| {
                if array.is_null(i) {
                    out.extend_from_slice(b"null");
                } else {
                    out.push(b'"');
                    let _ = write!(out, "{}", formatter.value(i));
                    out.push(b'"');
                }
            })
        }
        _ => {
            let formatter = ArrayFormatter::try_new(array.as_ref(), &FormatOptions::default())?;
            Box::new(move |i, out: &mut Vec<u8>| {
                if array.is_null(i) {
                    out.extend_from_slice(b"null");
                } else {
                    write_json_str(&formatter.value(i).to_string(), out);
                }
            })
        }
    };
    Ok(writer)
}

/// Writes a finite `v` exactly as ryu does: the shortest digits that read back as `v`, and
/// `1.0` for integers.
///
/// Values with at most two decimals (prices, rates: the common case) are written without
/// ryu's search. Below 2^46 the doubles are closer together than 0.01, so at most one number
/// with two decimals reads back as `v`, and any shorter candidate would have at most two
/// decimals too: when `cents / 100` reads back as `v`, it is ryu's answer. (The division is
/// correctly rounded, so it equals reading the decimal.)
fn write_f64(v: f64, out: &mut Vec<u8>) {
    const LIMIT: f64 = (1u64 << 46) as f64;
    if v != 0.0 && v.abs() < LIMIT {
        let cents = (v * 100.0).round();
        if cents / 100.0 == v {
            if v < 0.0 {
                out.push(b'-');
            }
            let cents = cents.abs() as u64;
            out.extend_from_slice(itoa::Buffer::new().format(cents / 100).as_bytes());
            let (tenths, hundredths) = ((cents / 10 % 10) as u8, (cents % 10) as u8);
            if hundredths == 0 {
                out.extend_from_slice(&[b'.', b'0' + tenths]);
            } else {
                out.extend_from_slice(&[b'.', b'0' + tenths, b'0' + hundredths]);
            }
            return;
        }
    }
    out.extend_from_slice(ryu::Buffer::new().format_finite(v).as_bytes());
}

fn is_utc(tz: &str) -> bool {
    matches!(tz, "UTC" | "+00:00")
}

/// The last day [`write_timestamp`] converted to a date: a page's timestamps are often on
/// one day, and the calendar arithmetic is most of a timestamp's cost.
type DayCache = std::cell::Cell<Option<(i64, (i64, u32, u32))>>;

/// Writes a timestamp as Arrow displays it (`2024-01-01T13:00:00.000123`, then `Z` for UTC),
/// quoted, without allocating: the fraction has 0, 3, 6 or 9 digits, as many as needed.
/// Returns false (writing nothing) for years outside 0..=9999, which Arrow shows otherwise.
fn write_timestamp(
    out: &mut Vec<u8>,
    value: i64,
    unit: t::TimeUnit,
    utc: bool,
    last_day: &DayCache,
) -> bool {
    let (per_second, nanos_per_tick) = match unit {
        t::TimeUnit::Second => (1, 0),
        t::TimeUnit::Millisecond => (1_000, 1_000_000),
        t::TimeUnit::Microsecond => (1_000_000, 1_000),
        t::TimeUnit::Nanosecond => (1_000_000_000, 1),
    };
    let seconds = value.div_euclid(per_second);
    let nanos = (value.rem_euclid(per_second) * nanos_per_tick) as u64;
    let (days, second_of_day) = (seconds.div_euclid(86_400), seconds.rem_euclid(86_400));
    let (year, month, day) = match last_day.get() {
        Some((cached, date)) if cached == days => date,
        _ => {
            let date = civil_from_days(days);
            last_day.set(Some((days, date)));
            date
        }
    };
    if !(0..=9999).contains(&year) {
        return false;
    }
    // `"YYYY-MM-DDTHH:MM:SS` then up to `.nnnnnnnnn` and `Z"`, built on the stack and
    // appended once: this runs for every timestamp of every page.
    let mut buf = *b"\"0000-00-00T00:00:00.000000000Z\"";
    digits(&mut buf[1..5], year as u64);
    digits(&mut buf[6..8], u64::from(month));
    digits(&mut buf[9..11], u64::from(day));
    digits(&mut buf[12..14], (second_of_day / 3600) as u64);
    digits(&mut buf[15..17], (second_of_day / 60 % 60) as u64);
    digits(&mut buf[18..20], (second_of_day % 60) as u64);
    let mut len = 20;
    let fraction = if nanos == 0 {
        None
    } else if nanos.is_multiple_of(1_000_000) {
        Some((nanos / 1_000_000, 3))
    } else if nanos.is_multiple_of(1_000) {
        Some((nanos / 1_000, 6))
    } else {
        Some((nanos, 9))
    };
    if let Some((value, width)) = fraction {
        buf[len] = b'.';
        digits(&mut buf[len + 1..len + 1 + width], value);
        len += 1 + width;
    }
    if utc {
        buf[len] = b'Z';
        len += 1;
    }
    buf[len] = b'"';
    out.extend_from_slice(&buf[..=len]);
    true
}

/// The two decimal digits of each number below 100, `00` to `99`.
const DIGIT_PAIRS: [u8; 200] = {
    let mut pairs = [0u8; 200];
    let mut i = 0;
    while i < 100 {
        pairs[2 * i] = b'0' + (i / 10) as u8;
        pairs[2 * i + 1] = b'0' + (i % 10) as u8;
        i += 1;
    }
    pairs
};

/// Fills `slot` with the last `slot.len()` decimal digits of `value`, zero-padded, two at
/// a time (one division per pair: this runs for every field of every timestamp).
fn digits(slot: &mut [u8], mut value: u64) {
    let mut end = slot.len();
    while end >= 2 {
        let pair = (value % 100) as usize * 2;
        slot[end - 2..end].copy_from_slice(&DIGIT_PAIRS[pair..pair + 2]);
        value /= 100;
        end -= 2;
    }
    if end == 1 {
        slot[0] = b'0' + (value % 10) as u8;
    }
}

/// The JSON of a string dictionary's values, each escaped on its first use and copied after
/// that: a page repeats a few values of a low-cardinality column many times.
struct DictionaryJson {
    /// Where value `k`'s JSON is in `json`; empty until it is first written (a JSON string
    /// is never empty: it has its quotes).
    spans: Vec<std::ops::Range<usize>>,
    json: Vec<u8>,
}

impl DictionaryJson {
    /// Dictionaries up to this size get a cache (its spans are allocated per page)…
    const MAX_VALUES: usize = 4096;
    /// …on pages of at least this many rows: for a key lookup's one row, setting up the
    /// cache costs more than it saves.
    const MIN_ROWS: usize = 16;

    fn new(values: usize) -> Self {
        Self {
            spans: vec![0..0; values],
            json: Vec::new(),
        }
    }

    fn write(&mut self, values: &arrow::array::StringArray, k: usize, out: &mut Vec<u8>) {
        if self.spans[k].is_empty() {
            let start = self.json.len();
            write_json_str(values.value(k), &mut self.json);
            self.spans[k] = start..self.json.len();
        }
        out.extend_from_slice(&self.json[self.spans[k].clone()]);
    }
}

/// (year, month, day) of a day count since 1970-01-01 (Howard Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

fn write_json_str(s: &str, out: &mut Vec<u8>) {
    // Most strings need no escaping: copied as they are. Otherwise serde_json escapes
    // exactly as JSON requires (control characters, quote, backslash); writing to a Vec
    // cannot fail.
    if s.bytes().all(|b| b >= 0x20 && b != b'"' && b != b'\\') {
        out.reserve(s.len() + 2);
        out.push(b'"');
        out.extend_from_slice(s.as_bytes());
        out.push(b'"');
    } else {
        let _ = serde_json::to_writer(&mut *out, s);
    }
}

/// The schema results are answered with: `names` of output columns, each with its logical
/// type (the dataset column's type when the name is a dataset column, else the value type
/// of a dictionary).
pub fn logical_schema(batch_schema: &Schema, dataset: &Schema) -> SchemaRef {
    let fields: Vec<Field> = batch_schema
        .fields()
        .iter()
        .map(|f| match dataset.field_with_name(f.name()) {
            Ok(d) if is_dictionary(f.data_type()) && !is_dictionary(d.data_type()) => {
                f.as_ref().clone().with_data_type(d.data_type().clone())
            }
            _ => match f.data_type() {
                DataType::Dictionary(_, value) => {
                    f.as_ref().clone().with_data_type((**value).clone())
                }
                _ => f.as_ref().clone(),
            },
        })
        .collect();
    Arc::new(Schema::new(fields))
}

fn is_dictionary(data_type: &DataType) -> bool {
    matches!(data_type, DataType::Dictionary(..))
}

/// Writes an Arrow IPC stream batch by batch; each call returns the bytes produced so far.
pub struct IpcEncoder {
    writer: StreamWriter<Vec<u8>>,
    schema: SchemaRef,
}

impl IpcEncoder {
    pub fn new(schema: SchemaRef) -> Result<Self, QueryError> {
        Ok(Self {
            writer: StreamWriter::try_new(Vec::new(), &schema)?,
            schema,
        })
    }

    pub fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    /// Encodes one batch (cast to the stream's schema) and takes the pending bytes.
    pub fn write(&mut self, batch: &RecordBatch) -> Result<Bytes, QueryError> {
        let batch = to_schema(batch, &self.schema)?;
        self.writer.write(&batch)?;
        Ok(self.take())
    }

    /// Ends the stream and takes the remaining bytes.
    pub fn finish(mut self) -> Result<Bytes, QueryError> {
        self.writer.finish()?;
        Ok(self.take())
    }

    /// Takes the bytes written so far (after `new`: the schema message).
    pub fn take(&mut self) -> Bytes {
        Bytes::from(std::mem::take(self.writer.get_mut()))
    }
}

#[cfg(test)]
mod tests;
