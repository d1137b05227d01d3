//! Answers as comparable cells, written here from the documented JSON encoding (README,
//! `queryd/src/encode.rs`'s module doc) and not from Strata's code: integers exact, floats
//! as the shortest digits that read back (an `f32` as its own shortest digits), decimals,
//! dates and timestamps as their display strings (`2024-01-01T13:00:00.000123`, `Z` for a
//! UTC time zone; a fraction of 0, 3, 6 or 9 digits, as few as the value needs).

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{self as t, DataType, TimeUnit};
use serde_json::Value;

/// How a column's cells compare.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Exact,
    /// A `float32`: its JSON digits are the shortest that read back as the same `f32`, and
    /// where two are as short (a tie) either may be written; compared as `f32`.
    Float32,
    /// An aggregate computed in floating point: equal up to the rounding of another
    /// summation order (relative 1e-9).
    Approx,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Cell {
    Null,
    Bool(bool),
    Int(i128),
    Float(f64),
    Str(String),
}

impl Cell {
    /// The cell as a query literal (JSON): strings for dates, timestamps and decimals.
    pub fn to_json(&self) -> Value {
        match self {
            Cell::Null => Value::Null,
            Cell::Bool(b) => Value::Bool(*b),
            Cell::Int(i) => match (i64::try_from(*i), u64::try_from(*i)) {
                (Ok(v), _) => Value::from(v),
                (_, Ok(v)) => Value::from(v),
                _ => Value::String(i.to_string()),
            },
            Cell::Float(f) => Value::from(*f),
            Cell::Str(s) => Value::String(s.clone()),
        }
    }

    pub fn from_json(value: &Value) -> Cell {
        match value {
            Value::Null => Cell::Null,
            Value::Bool(b) => Cell::Bool(*b),
            Value::Number(n) if n.is_f64() => Cell::Float(n.as_f64().unwrap_or(f64::NAN)),
            Value::Number(n) => n
                .as_i64()
                .map(i128::from)
                .or_else(|| n.as_u64().map(i128::from))
                .map_or(Cell::Null, Cell::Int),
            Value::String(s) => Cell::Str(s.clone()),
            other => Cell::Str(other.to_string()),
        }
    }

    pub fn matches(&self, other: &Cell, mode: Mode) -> bool {
        match (self, other, mode) {
            (Cell::Float(a), Cell::Float(b), Mode::Approx) => {
                a == b || (a - b).abs() <= 1e-9 * a.abs().max(b.abs())
            }
            (Cell::Float(a), Cell::Float(b), Mode::Float32) => *a as f32 == *b as f32,
            (a, b, _) => a == b,
        }
    }
}

/// Row `row` of `array` as a cell.
pub fn cell(array: &dyn Array, row: usize) -> Cell {
    if array.is_null(row) {
        return Cell::Null;
    }
    macro_rules! int {
        ($t:ty) => {
            Cell::Int(i128::from(array.as_primitive::<$t>().value(row)))
        };
    }
    match array.data_type() {
        DataType::Int8 => int!(t::Int8Type),
        DataType::Int16 => int!(t::Int16Type),
        DataType::Int32 => int!(t::Int32Type),
        DataType::Int64 => int!(t::Int64Type),
        DataType::UInt8 => int!(t::UInt8Type),
        DataType::UInt16 => int!(t::UInt16Type),
        DataType::UInt32 => int!(t::UInt32Type),
        DataType::UInt64 => int!(t::UInt64Type),
        DataType::Float32 => Cell::Float(array.as_primitive::<t::Float32Type>().value(row).into()),
        DataType::Float64 => Cell::Float(array.as_primitive::<t::Float64Type>().value(row)),
        // DuckDB's exact integer sums (HUGEINT) arrive as decimals of scale 0.
        DataType::Decimal128(_, 0) => {
            Cell::Int(array.as_primitive::<t::Decimal128Type>().value(row))
        }
        DataType::Decimal128(_, scale) => Cell::Str(decimal(
            array.as_primitive::<t::Decimal128Type>().value(row),
            *scale as u32,
        )),
        DataType::Boolean => Cell::Bool(array.as_boolean().value(row)),
        DataType::Date32 => {
            let days = array.as_primitive::<t::Date32Type>().value(row);
            let date = chrono::NaiveDate::from_ymd_opt(1970, 1, 1).unwrap()
                + chrono::Duration::days(days.into());
            Cell::Str(date.format("%Y-%m-%d").to_string())
        }
        DataType::Timestamp(unit, tz) => {
            let (value, nanos_per) = match unit {
                TimeUnit::Second => (
                    array.as_primitive::<t::TimestampSecondType>().value(row),
                    1_000_000_000,
                ),
                TimeUnit::Millisecond => (
                    array
                        .as_primitive::<t::TimestampMillisecondType>()
                        .value(row),
                    1_000_000,
                ),
                TimeUnit::Microsecond => (
                    array
                        .as_primitive::<t::TimestampMicrosecondType>()
                        .value(row),
                    1_000,
                ),
                TimeUnit::Nanosecond => (
                    array
                        .as_primitive::<t::TimestampNanosecondType>()
                        .value(row),
                    1,
                ),
            };
            Cell::Str(timestamp(i128::from(value) * nanos_per, tz.is_some()))
        }
        DataType::Utf8 => Cell::Str(array.as_string::<i32>().value(row).to_owned()),
        DataType::LargeUtf8 => Cell::Str(array.as_string::<i64>().value(row).to_owned()),
        DataType::Utf8View => Cell::Str(array.as_string_view().value(row).to_owned()),
        DataType::Dictionary(_, _) => {
            let plain = arrow::compute::cast(&array.slice(row, 1), &DataType::Utf8).unwrap();
            cell(plain.as_ref(), 0)
        }
        other => panic!("no cell for {other}"),
    }
}

fn decimal(value: i128, scale: u32) -> String {
    let unit = 10i128.pow(scale);
    let sign = if value < 0 { "-" } else { "" };
    let (whole, fraction) = (value.abs() / unit, value.abs() % unit);
    format!("{sign}{whole}.{fraction:0width$}", width = scale as usize)
}

fn timestamp(nanos: i128, utc: bool) -> String {
    let seconds = nanos.div_euclid(1_000_000_000) as i64;
    let fraction = nanos.rem_euclid(1_000_000_000) as u32;
    let at = chrono::DateTime::from_timestamp(seconds, fraction)
        .unwrap()
        .naive_utc();
    let mut out = at.format("%Y-%m-%dT%H:%M:%S").to_string();
    if fraction != 0 {
        if fraction.is_multiple_of(1_000_000) {
            out += &format!(".{:03}", fraction / 1_000_000);
        } else if fraction.is_multiple_of(1_000) {
            out += &format!(".{:06}", fraction / 1_000);
        } else {
            out += &format!(".{fraction:09}");
        }
    }
    if utc {
        out.push('Z');
    }
    out
}

/// Why an answer differs from the oracle's or could not be read, in words: the test prints
/// it as (part of) a reproducer.
#[derive(Debug)]
pub struct Mismatch(pub String);

impl std::fmt::Display for Mismatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// An answer: its column names and rows of cells.
#[derive(Debug, Default)]
pub struct Table {
    pub names: Vec<String>,
    pub rows: Vec<Vec<Cell>>,
}

impl Table {
    pub fn from_batches(schema: &arrow::datatypes::Schema, batches: &[RecordBatch]) -> Self {
        Self {
            names: schema.fields().iter().map(|f| f.name().clone()).collect(),
            rows: batches
                .iter()
                .flat_map(|b| {
                    (0..b.num_rows())
                        .map(move |r| b.columns().iter().map(|c| cell(c.as_ref(), r)).collect())
                })
                .collect(),
        }
    }

    /// JSON rows (objects) in the order of `names`; a missing or extra key is a difference.
    pub fn from_json_rows(names: &[String], rows: &[Value]) -> Result<Self, Mismatch> {
        let rows = rows
            .iter()
            .map(|row| {
                let object = row
                    .as_object()
                    .ok_or_else(|| Mismatch("a row is not an object".into()))?;
                if object.len() != names.len() || names.iter().any(|n| !object.contains_key(n)) {
                    return Err(Mismatch(format!(
                        "row keys {:?}, expected {names:?}",
                        object.keys().collect::<Vec<_>>()
                    )));
                }
                Ok(names.iter().map(|n| Cell::from_json(&object[n])).collect())
            })
            .collect::<Result<_, Mismatch>>()?;
        Ok(Self {
            names: names.to_vec(),
            rows,
        })
    }
}

/// The first difference between `got` and `want`, if any, comparing column `c` by
/// `modes[c]`.
pub fn difference(got: &Table, want: &Table, modes: &[Mode]) -> Option<String> {
    if got.names != want.names {
        return Some(format!(
            "columns {:?}, expected {:?}",
            got.names, want.names
        ));
    }
    for (r, (g, w)) in got.rows.iter().zip(&want.rows).enumerate() {
        for (c, (a, b)) in g.iter().zip(w).enumerate() {
            if !a.matches(b, modes.get(c).copied().unwrap_or(Mode::Exact)) {
                return Some(format!(
                    "row {r}, column {:?}: got {a:?}, expected {b:?}\n  got row:      {g:?}\n  expected row: {w:?}",
                    want.names[c]
                ));
            }
        }
    }
    if got.rows.len() != want.rows.len() {
        let extra = if got.rows.len() > want.rows.len() {
            format!("first extra row: {:?}", got.rows[want.rows.len()])
        } else {
            format!("first missing row: {:?}", want.rows[got.rows.len()])
        };
        return Some(format!(
            "{} rows, expected {}; {extra}",
            got.rows.len(),
            want.rows.len()
        ));
    }
    None
}
