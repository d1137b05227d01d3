//! A client's delta body (JSON, Arrow IPC stream or Parquet) turned into a prepared delta batch
//! for one table ([`strata_shared::delta`]: the table's columns plus `_op`, sorted by key, each key
//! once). Every rule a delta must satisfy is checked here, before anything is written, and each
//! refusal is an [`Error::InvalidInput`] naming the row and the column (or an
//! [`Error::DuplicateKey`] naming the key).
//!
//! The rules, shared by all formats:
//! - an upsert replaces the whole row: a column it leaves out is null, which is refused for a
//!   non-nullable column; key columns are present and non-null in every row;
//! - a delete carries exactly the key; its other columns are null in the delta file;
//! - a key appears at most once per body, across upserts and deletes;
//! - unknown columns are refused, and so is a body without rows.
//!
//! JSON (`{"upserts":[{col: value}], "deletes":[{key: value}]}`) takes: integers into integer
//! columns (range-checked; an integral float such as `3.0` counts as an integer), numbers into
//! float columns, strings into Utf8 / LargeUtf8 / Utf8View and dictionary-of-string columns,
//! booleans, RFC 3339 strings into timestamps of any unit (an offset is required unless the
//! column is naive or UTC, where a string without offset is read as UTC; sub-unit precision is
//! refused rather than truncated), `YYYY-MM-DD` into Date32 / Date64, and numbers or plain
//! numeric strings into Decimal128 (no exponent; no more fractional digits than the scale).
//! Any other column type takes only null from JSON.
//!
//! Arrow IPC and Parquet bodies carry the table's columns (any subset that includes the key)
//! plus `_op` (any integer type, 0 upsert / 1 delete). A column of another type is cast with
//! arrow's safe cast; a value the cast turns into null, or (between numeric and temporal types,
//! other than into floats) one that does not survive the round trip, is refused.

mod json_rows;

use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, BooleanBuilder, Date32Array, Date64Array,
    Decimal128Array, Float32Array, Float64Array, PrimitiveBuilder, RecordBatch, StringArray,
    TimestampMicrosecondArray, TimestampMillisecondArray, TimestampNanosecondArray,
    TimestampSecondArray, UInt8Array, new_null_array,
};
use arrow::compute::kernels::cast_utils::parse_decimal;
use arrow::compute::{CastOptions, can_cast_types, cast, cast_with_options, nullif};
use arrow::datatypes::{
    ArrowPrimitiveType, DataType, Decimal128Type, Field, Int8Type, Int16Type, Int32Type, Int64Type,
    Schema, TimeUnit, UInt8Type, UInt16Type, UInt32Type, UInt64Type,
};
use bytes::Bytes;
use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
use serde_json::Value;
use strata_shared::delta::{self, OP_COLUMN, Op};
use strata_shared::{Error, Result, keys};

use crate::untrusted;
use json_rows::{Cell, JsonRows};

/// The encodings a delta body may come in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeltaFormat {
    Json,
    ArrowStream,
    Parquet,
}

/// A validated delta: the prepared batch (delta schema, sorted by key, each key once) and
/// how many of its rows are upserts and deletes.
#[derive(Clone, Debug)]
pub struct DeltaInput {
    pub batch: RecordBatch,
    pub upserts: u64,
    pub deletes: u64,
}

/// Parses and validates a delta body for the table `schema` keyed by `primary_key`.
/// [`Error::Conflict`] if the table has no key (it takes no deltas).
pub fn parse(
    format: DeltaFormat,
    body: Bytes,
    schema: &Schema,
    primary_key: &[String],
) -> Result<DeltaInput> {
    if primary_key.is_empty() {
        return Err(Error::Conflict(
            "dataset has no primary key, so it takes no deltas".into(),
        ));
    }
    if body.is_empty() {
        return Err(invalid("the body is empty"));
    }
    // Decoding and validation both run under `contain`: a panic on a body is that body's
    // fault, answered as invalid input (see `untrusted`). So is an Arrow or Parquet error
    // here (a cast to a decimal(12, 46) the body declared): nothing but the body is read.
    let (what, parsed) = match format {
        DeltaFormat::Json => (
            "JSON body",
            untrusted::contain("JSON body", || from_json(&body, schema, primary_key)),
        ),
        DeltaFormat::ArrowStream => {
            let (input, batches) = untrusted::arrow_stream(body)?;
            (
                "Arrow IPC stream",
                untrusted::contain("Arrow IPC stream", || {
                    from_batches(&input, &batches, schema, primary_key)
                }),
            )
        }
        DeltaFormat::Parquet => {
            let (input, batches) = untrusted::parquet(body)?;
            (
                "Parquet file",
                untrusted::contain("Parquet file", || {
                    from_batches(&input, &batches, schema, primary_key)
                }),
            )
        }
    };
    parsed.map_err(|e| match e {
        Error::Arrow(e) => invalid(format!("invalid {what}: {e}")),
        Error::Parquet(e) => invalid(format!("invalid {what}: {e}")),
        other => other,
    })
}

fn invalid(message: impl Into<String>) -> Error {
    Error::InvalidInput(message.into())
}

/// How error messages name a row: `upserts[3]` / `deletes[0]` for JSON, `row 7` otherwise.
enum Rows {
    Json { upserts: usize },
    Flat,
}

impl Rows {
    fn label(&self, row: usize) -> String {
        match self {
            Rows::Json { upserts } if row < *upserts => format!("upserts[{row}]"),
            Rows::Json { upserts } => format!("deletes[{}]", row - upserts),
            Rows::Flat => format!("row {row}"),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// JSON

fn from_json(body: &[u8], schema: &Schema, primary_key: &[String]) -> Result<DeltaInput> {
    if let Some(number) = strata_daemon::json_text::underflowing_number(body) {
        return Err(invalid(format!(
            "the number {number} is too small for any column: it would read as 0"
        )));
    }
    let JsonRows {
        upserts: mut cells,
        deletes,
    } = json_rows::read(body, schema)?;
    let width = schema.fields().len();
    let n_up = cells.len() / width;
    let n = n_up + deletes.len() / width;
    if n == 0 {
        return Err(invalid("the body has no upserts and no deletes"));
    }
    let rows = Rows::Json { upserts: n_up };
    // A delete names exactly the key.
    let key_columns = keys::key_indices(schema, primary_key)?;
    for (i, row) in deletes.chunks(width).enumerate() {
        let at = rows.label(n_up + i);
        if let Some(c) = (0..width).find(|c| row[*c].is_some() && !key_columns.contains(c)) {
            return Err(invalid(format!(
                "{at}: column {:?} is not a primary key column; a delete names exactly the key \
                 ({})",
                schema.field(c).name(),
                primary_key.join(", ")
            )));
        }
        if let Some(&c) = key_columns.iter().find(|&&c| row[c].is_none()) {
            return Err(invalid(format!(
                "{at}: missing primary key column {:?}",
                schema.field(c).name()
            )));
        }
    }
    // Upserts, then deletes: `cells[row * width + column]`.
    cells.extend(deletes);

    let mut columns = Vec::with_capacity(width);
    for (c, field) in schema.fields().iter().enumerate() {
        // Delete rows hold only the key; JSON null is the same as leaving the column out.
        let values: Vec<Option<&Cell<'_>>> = (0..n)
            .map(|r| cells[r * width + c].as_ref().filter(|v| !v.is_null()))
            .collect();
        columns.push(json_column(field, &values, &rows)?);
    }
    let ops = UInt8Array::from_iter_values(
        std::iter::repeat_n(Op::Upsert as u8, n_up)
            .chain(std::iter::repeat_n(Op::Delete as u8, n - n_up)),
    );
    finish(schema, primary_key, columns, ops, &rows)
}

/// One column from JSON values (`None`: null or absent).
fn json_column(field: &Field, values: &[Option<&Cell<'_>>], rows: &Rows) -> Result<ArrayRef> {
    if values.iter().all(Option::is_none) {
        return Ok(new_null_array(field.data_type(), values.len()));
    }
    let ctx = Ctx { field, rows };
    let array: ArrayRef = match field.data_type() {
        DataType::Int8 => Arc::new(ctx.ints::<Int8Type>(values)?),
        DataType::Int16 => Arc::new(ctx.ints::<Int16Type>(values)?),
        DataType::Int32 => Arc::new(ctx.ints::<Int32Type>(values)?),
        DataType::Int64 => Arc::new(ctx.ints::<Int64Type>(values)?),
        DataType::UInt8 => Arc::new(ctx.ints::<UInt8Type>(values)?),
        DataType::UInt16 => Arc::new(ctx.ints::<UInt16Type>(values)?),
        DataType::UInt32 => Arc::new(ctx.ints::<UInt32Type>(values)?),
        DataType::UInt64 => Arc::new(ctx.ints::<UInt64Type>(values)?),
        DataType::Float64 => {
            Arc::new(ctx.map(values, "a number", |v| v.other()?.as_f64().map(Ok))?)
                as Arc<Float64Array>
        }
        DataType::Float32 => Arc::new(ctx.map(values, "a number", |v| {
            v.other()?.as_f64().map(|f| {
                let narrow = f as f32;
                if narrow.is_finite() {
                    Ok(narrow)
                } else {
                    Err(Refusal::OutOfRange)
                }
            })
        })?) as Arc<Float32Array>,
        DataType::Boolean => {
            let mut builder = BooleanBuilder::with_capacity(values.len());
            for (row, value) in values.iter().enumerate() {
                match value {
                    None => builder.append_null(),
                    Some(v) => builder.append_value(
                        v.other()
                            .and_then(Value::as_bool)
                            .ok_or_else(|| ctx.expected(row, v, "true or false"))?,
                    ),
                }
            }
            Arc::new(builder.finish())
        }
        DataType::Utf8 => Arc::new(ctx.strings(values)?),
        t @ (DataType::LargeUtf8 | DataType::Utf8View) => cast(&ctx.strings(values)?, t)?,
        t @ DataType::Dictionary(_, value)
            if matches!(
                value.as_ref(),
                DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View
            ) =>
        {
            cast(&ctx.strings(values)?, t).map_err(|e| {
                invalid(format!(
                    "column {:?} ({t}) cannot hold these values: {e}",
                    field.name()
                ))
            })?
        }
        DataType::Timestamp(unit, tz) => ctx.timestamps(values, *unit, tz.clone())?,
        DataType::Date32 => Arc::new(ctx.map(values, "a date YYYY-MM-DD", |v| {
            v.as_str().map(|s| {
                parse_date(s).and_then(|days| i32::try_from(days).map_err(|_| Refusal::OutOfRange))
            })
        })?) as Arc<Date32Array>,
        DataType::Date64 => Arc::new(ctx.map(values, "a date YYYY-MM-DD", |v| {
            v.as_str().map(|s| {
                parse_date(s)
                    .and_then(|days| days.checked_mul(86_400_000).ok_or(Refusal::OutOfRange))
            })
        })?) as Arc<Date64Array>,
        DataType::Decimal128(precision, scale) => {
            let (precision, scale) = (*precision, *scale);
            let array: Decimal128Array = ctx.map(values, "a number or numeric string", |v| {
                let text = match v {
                    Cell::Other(Value::Number(n)) => n.to_string(),
                    Cell::Str(s) => s.to_string(),
                    Cell::Other(_) => return None,
                };
                Some(parse_plain_decimal(&text, precision, scale))
            })?;
            Arc::new(array.with_precision_and_scale(precision, scale)?)
        }
        other => {
            return Err(invalid(format!(
                "column {:?} has type {other}, which JSON deltas do not support (only null)",
                field.name()
            )));
        }
    };
    Ok(array)
}

/// Why a value of the right JSON type is refused (the message follows the value).
#[derive(Debug, thiserror::Error)]
enum Refusal {
    #[error("is out of range")]
    OutOfRange,
    #[error("has no UTC offset, which this column's time zone needs")]
    NoOffset,
    #[error("is not an RFC 3339 timestamp")]
    NotTimestamp,
    #[error("is more precise than the column's unit ({0:?})")]
    TooPrecise(TimeUnit),
    #[error("is not a date YYYY-MM-DD")]
    NotDate,
    #[error("is not a plain decimal number")]
    NotPlainDecimal,
    #[error("has more than {0} fractional digits")]
    TooManyFractionalDigits(i8),
    #[error("does not fit precision {0}")]
    TooManyDigits(u8),
}

/// Where a conversion happens, for its error messages.
struct Ctx<'a> {
    field: &'a Field,
    rows: &'a Rows,
}

impl Ctx<'_> {
    fn expected(&self, row: usize, value: &Cell<'_>, what: &str) -> Error {
        invalid(format!(
            "{}: column {:?} ({}) expects {what}, got {}",
            self.rows.label(row),
            self.field.name(),
            self.field.data_type(),
            short(value)
        ))
    }

    fn refused(&self, row: usize, value: &Cell<'_>, why: Refusal) -> Error {
        invalid(format!(
            "{}: column {:?} ({}): {} {why}",
            self.rows.label(row),
            self.field.name(),
            self.field.data_type(),
            short(value)
        ))
    }

    /// Builds a primitive array: `convert` answers `None` for a wrong JSON type and
    /// `Some(Err(why))` for a right type with an unacceptable value.
    fn map<T, F>(
        &self,
        values: &[Option<&Cell<'_>>],
        what: &str,
        convert: F,
    ) -> Result<arrow::array::PrimitiveArray<T>>
    where
        T: ArrowPrimitiveType,
        F: Fn(&Cell<'_>) -> Option<std::result::Result<T::Native, Refusal>>,
    {
        let mut builder = PrimitiveBuilder::<T>::with_capacity(values.len());
        for (row, value) in values.iter().enumerate() {
            match value {
                None => builder.append_null(),
                Some(v) => match convert(v) {
                    None => return Err(self.expected(row, v, what)),
                    Some(Err(why)) => return Err(self.refused(row, v, why)),
                    Some(Ok(x)) => builder.append_value(x),
                },
            }
        }
        Ok(builder.finish())
    }

    fn ints<T>(&self, values: &[Option<&Cell<'_>>]) -> Result<arrow::array::PrimitiveArray<T>>
    where
        T: ArrowPrimitiveType,
        T::Native: TryFrom<i128>,
    {
        self.map(values, "an integer", |v| {
            json_integer(v).map(|i| T::Native::try_from(i).map_err(|_| Refusal::OutOfRange))
        })
    }

    fn strings(&self, values: &[Option<&Cell<'_>>]) -> Result<StringArray> {
        let mut out = Vec::with_capacity(values.len());
        for (row, value) in values.iter().enumerate() {
            out.push(match value {
                None => None,
                Some(v) => Some(
                    v.as_str()
                        .ok_or_else(|| self.expected(row, v, "a string"))?,
                ),
            });
        }
        Ok(StringArray::from(out))
    }

    fn timestamps(
        &self,
        values: &[Option<&Cell<'_>>],
        unit: TimeUnit,
        tz: Option<Arc<str>>,
    ) -> Result<ArrayRef> {
        let naive_is_utc = tz.as_deref().is_none_or(is_utc);
        let what = "an RFC 3339 timestamp string";
        let convert = |v: &Cell<'_>| {
            v.as_str()
                .map(|s| parse_timestamp(s, naive_is_utc).and_then(|t| in_unit(t, unit)))
        };
        Ok(match unit {
            TimeUnit::Second => Arc::new(
                self.map::<arrow::datatypes::TimestampSecondType, _>(values, what, convert)?
                    .with_timezone_opt(tz),
            ) as Arc<TimestampSecondArray>,
            TimeUnit::Millisecond => Arc::new(
                self.map::<arrow::datatypes::TimestampMillisecondType, _>(values, what, convert)?
                    .with_timezone_opt(tz),
            ) as Arc<TimestampMillisecondArray>,
            TimeUnit::Microsecond => Arc::new(
                self.map::<arrow::datatypes::TimestampMicrosecondType, _>(values, what, convert)?
                    .with_timezone_opt(tz),
            ) as Arc<TimestampMicrosecondArray>,
            TimeUnit::Nanosecond => Arc::new(
                self.map::<arrow::datatypes::TimestampNanosecondType, _>(values, what, convert)?
                    .with_timezone_opt(tz),
            ) as Arc<TimestampNanosecondArray>,
        })
    }
}

/// A JSON value as text for an error message, cut short.
fn short(value: &Cell<'_>) -> String {
    let text = value.to_string();
    match text.char_indices().nth(40) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text,
    }
}

/// An integer, or an integral float (`3.0`), as i128; `None` for anything else (`3.5`, "3").
fn json_integer(value: &Cell<'_>) -> Option<i128> {
    let n = value.other()?.as_number()?;
    if let Some(i) = n.as_i64() {
        return Some(i.into());
    }
    if let Some(u) = n.as_u64() {
        return Some(u.into());
    }
    // A number that is neither an i64 nor a u64 came as a double: taken only while doubles
    // are exact integers (|f| ≤ 2^53). Beyond, the double may be another number rounded:
    // -9223372036854775809 reads as -2^63 and was stored as i64::MIN.
    let f = n.as_f64()?;
    (f.is_finite() && f.fract() == 0.0 && f.abs() <= 2f64.powi(53)).then_some(f as i128)
}

fn is_utc(tz: &str) -> bool {
    ["UTC", "Etc/UTC", "Z", "+00:00", "+0000", "+00", "GMT"]
        .iter()
        .any(|u| u.eq_ignore_ascii_case(tz))
}

/// RFC 3339 (`T` or a space between date and time). Without an offset the string is read as
/// UTC when `naive_is_utc`, else refused: in a column with another zone it would be ambiguous.
fn parse_timestamp(text: &str, naive_is_utc: bool) -> std::result::Result<DateTime<Utc>, Refusal> {
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Ok(t.with_timezone(&Utc));
    }
    let naive = ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M:%S%.f"]
        .iter()
        .find_map(|f| NaiveDateTime::parse_from_str(text, f).ok());
    match naive {
        Some(t) if naive_is_utc => Ok(t.and_utc()),
        Some(_) => Err(Refusal::NoOffset),
        None => Err(Refusal::NotTimestamp),
    }
}

/// The instant in `unit` since the epoch; refuses precision the unit cannot hold.
fn in_unit(t: DateTime<Utc>, unit: TimeUnit) -> std::result::Result<i64, Refusal> {
    let nanos = t.timestamp_subsec_nanos();
    let (per_unit, value) = match unit {
        TimeUnit::Second => (1_000_000_000, Some(t.timestamp())),
        TimeUnit::Millisecond => (1_000_000, Some(t.timestamp_millis())),
        TimeUnit::Microsecond => (1_000, Some(t.timestamp_micros())),
        TimeUnit::Nanosecond => (1, t.timestamp_nanos_opt()),
    };
    if !nanos.is_multiple_of(per_unit) {
        return Err(Refusal::TooPrecise(unit));
    }
    value.ok_or(Refusal::OutOfRange)
}

/// Days since 1970-01-01 of a `YYYY-MM-DD` date.
fn parse_date(text: &str) -> std::result::Result<i64, Refusal> {
    let date = NaiveDate::parse_from_str(text, "%Y-%m-%d").map_err(|_| Refusal::NotDate)?;
    Ok(date.signed_duration_since(NaiveDate::default()).num_days())
}

/// A plain decimal (`-12.340`): arrow's parser truncates extra fractional digits and takes
/// exponents, so both are refused here first rather than silently changing the value.
fn parse_plain_decimal(text: &str, precision: u8, scale: i8) -> std::result::Result<i128, Refusal> {
    let unsigned = text.strip_prefix(['-', '+']).unwrap_or(text);
    let (int, frac) = unsigned.split_once('.').unwrap_or((unsigned, ""));
    let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if int.is_empty() || !digits(int) || !digits(frac) {
        return Err(Refusal::NotPlainDecimal);
    }
    let significant = frac.trim_end_matches('0').len();
    if significant > usize::try_from(scale.max(0)).unwrap_or(0) {
        return Err(Refusal::TooManyFractionalDigits(scale));
    }
    parse_decimal::<Decimal128Type>(text, precision, scale)
        .map_err(|_| Refusal::TooManyDigits(precision))
}

// ---------------------------------------------------------------------------------------------
// Arrow IPC and Parquet

fn from_batches(
    input: &Schema,
    batches: &[RecordBatch],
    schema: &Schema,
    primary_key: &[String],
) -> Result<DeltaInput> {
    let mut seen = std::collections::HashSet::new();
    for field in input.fields() {
        let name = field.name();
        if !seen.insert(name.as_str()) {
            return Err(invalid(format!("column {name:?} appears twice")));
        }
        if name != OP_COLUMN && schema.index_of(name).is_err() {
            return Err(invalid(format!("unknown column {name:?}")));
        }
    }
    let all = arrow::compute::concat_batches(&Arc::new(input.clone()), batches)?;
    if all.num_rows() == 0 {
        return Err(invalid("the body has no rows"));
    }
    let rows = Rows::Flat;
    let ops = op_values(&all, &rows)?;
    let mut columns = Vec::with_capacity(schema.fields().len());
    for field in schema.fields() {
        let column = match all.column_by_name(field.name()) {
            Some(column) => cast_column(column, field, &rows)?,
            None if primary_key.contains(field.name()) => {
                return Err(invalid(format!(
                    "missing primary key column {:?}",
                    field.name()
                )));
            }
            None => new_null_array(field.data_type(), all.num_rows()),
        };
        columns.push(column);
    }
    finish(schema, primary_key, columns, ops, &rows)
}

/// `_op` of any integer type as UInt8, every value 0 or 1.
fn op_values(batch: &RecordBatch, rows: &Rows) -> Result<UInt8Array> {
    let Some(column) = batch.column_by_name(OP_COLUMN) else {
        return Err(invalid(format!(
            "missing column {OP_COLUMN:?} (UInt8: 0 upsert, 1 delete)"
        )));
    };
    if !column.data_type().is_integer() {
        return Err(invalid(format!(
            "column {OP_COLUMN:?} must be an integer (0 upsert, 1 delete), got {}",
            column.data_type()
        )));
    }
    let wide = cast(column, &DataType::Int64)?;
    let wide = wide.as_primitive::<Int64Type>();
    for row in 0..wide.len() {
        if wide.is_null(row) {
            return Err(invalid(format!(
                "{}, column {OP_COLUMN:?}: must not be null",
                rows.label(row)
            )));
        }
        let value = wide.value(row);
        if value != Op::Upsert as i64 && value != Op::Delete as i64 {
            return Err(invalid(format!(
                "{}, column {OP_COLUMN:?}: must be 0 (upsert) or 1 (delete), got {value}",
                rows.label(row)
            )));
        }
    }
    Ok(UInt8Array::from_iter_values(
        wide.values().iter().map(|v| *v as u8),
    ))
}

/// A body column in the table's type, refusing any value the conversion would lose.
fn cast_column(column: &ArrayRef, field: &Field, rows: &Rows) -> Result<ArrayRef> {
    let (from, to) = (column.data_type(), field.data_type());
    if from == to {
        return Ok(column.clone());
    }
    let name = field.name();
    if !can_cast_types(from, to) {
        return Err(invalid(format!(
            "column {name:?} is {from}, which cannot be converted to the table's {to}"
        )));
    }
    let options = CastOptions {
        safe: true,
        ..Default::default()
    };
    let cast_to = cast_with_options(column, to, &options).map_err(|e| {
        invalid(format!(
            "column {name:?}: cannot convert {from} to {to}: {e}"
        ))
    })?;
    let lost_at = |row: usize| {
        invalid(format!(
            "{}, column {name:?}: value {} cannot be represented as {to}",
            rows.label(row),
            keys::display_value(column, row)
        ))
    };
    if let Some(row) = (0..column.len()).find(|&r| column.is_valid(r) && cast_to.is_null(r)) {
        return Err(lost_at(row));
    }
    // Safe casts still truncate (3.5 → 3, ns → s): between numeric and temporal types a value
    // must come back unchanged. Into floats rounding is the nature of the type and accepted.
    if from.is_primitive() && to.is_primitive() && !to.is_floating() {
        let back = cast(&cast_to, from)?;
        let changed = arrow::compute::kernels::cmp::distinct(&back, column)?;
        if let Some(row) = (0..changed.len()).find(|&r| changed.value(r)) {
            return Err(lost_at(row));
        }
    }
    Ok(cast_to)
}

// ---------------------------------------------------------------------------------------------
// Both

/// The checks every format shares, then the delta batch: delete rows lose their non-key
/// values, keys are non-null, upserts fill every non-nullable column, each key once.
fn finish(
    schema: &Schema,
    primary_key: &[String],
    mut columns: Vec<ArrayRef>,
    ops: UInt8Array,
    rows: &Rows,
) -> Result<DeltaInput> {
    let deletes: BooleanArray = ops
        .values()
        .iter()
        .map(|op| Some(*op == Op::Delete as u8))
        .collect();
    for (field, column) in schema.fields().iter().zip(columns.iter_mut()) {
        let is_key = primary_key.contains(field.name());
        if is_key {
            if let Some(row) = (0..column.len()).find(|&r| column.is_null(r)) {
                return Err(invalid(format!(
                    "{}: primary key column {:?} is null or missing",
                    rows.label(row),
                    field.name()
                )));
            }
            continue;
        }
        if column.null_count() < column.len() {
            *column = nullif(column.as_ref(), &deletes)?;
        }
        if !field.is_nullable()
            && let Some(row) = (0..column.len()).find(|&r| column.is_null(r) && !deletes.value(r))
        {
            return Err(invalid(format!(
                "{}: column {:?} is not nullable, but the upsert leaves it null (an upsert \
                 replaces the whole row)",
                rows.label(row),
                field.name()
            )));
        }
    }
    let delete_count = deletes.true_count() as u64;
    let upsert_count = ops.len() as u64 - delete_count;
    columns.push(Arc::new(ops));
    let batch = RecordBatch::try_new(delta::delta_schema(schema, primary_key), columns)?;
    Ok(DeltaInput {
        batch: delta::prepare(&batch, primary_key)?,
        upserts: upsert_count,
        deletes: delete_count,
    })
}

#[cfg(test)]
mod tests;
