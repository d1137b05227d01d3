//! The generated table: every column type Strata accepts, realistic distributions, nulls in
//! every nullable column, string columns on both sides of each dictionary key width, keys
//! in random order (negative ones too). Deltas draw from wider value pools, so new
//! dictionary values arrive after the load.

use std::sync::Arc;

use arrow::array::{
    ArrayRef, BooleanArray, Date32Array, Decimal128Array, Float32Array, Float64Array, Int8Array,
    Int16Array, Int32Array, Int64Array, LargeStringArray, RecordBatch, StringArray,
    StringViewArray, TimestampMicrosecondArray, TimestampMillisecondArray,
    TimestampNanosecondArray, UInt8Array, UInt16Array, UInt32Array, UInt64Array,
};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// The primary key column (column 0).
pub const KEY: &str = "id";

/// What a column holds; decides its Arrow type, its DuckDB type and its values.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Key,
    I8,
    I16,
    /// A severity: 1..=5.
    I32,
    /// Quantities.
    I64,
    /// Values near ±2^62: sums overflow int64.
    Big,
    U8,
    U16,
    U32,
    /// The whole range, beyond i64::MAX too.
    U64,
    F32,
    /// Prices with two decimals.
    Price,
    /// Doubles of every magnitude.
    Wide,
    /// Decimal(12, 2).
    Dec,
    Bool,
    Date,
    /// Timestamp, microseconds, no time zone.
    Ts,
    /// Timestamp, milliseconds, UTC.
    TsUtc,
    /// Timestamp, nanoseconds, no time zone.
    TsNs,
    /// Utf8 from a pool of this many values (more in deltas).
    Pool(usize),
    /// Utf8View, few values differing in case and script (for `ilike`).
    Cased,
    /// LargeUtf8, almost every value distinct, with quotes, backslashes, `%` and `_`.
    Note,
    /// Utf8, almost every value distinct.
    Name,
}

pub struct Column {
    pub name: &'static str,
    pub kind: Kind,
}

pub const COLUMNS: &[Column] = &[
    Column {
        name: KEY,
        kind: Kind::Key,
    },
    Column {
        name: "i8",
        kind: Kind::I8,
    },
    Column {
        name: "i16",
        kind: Kind::I16,
    },
    Column {
        name: "severity",
        kind: Kind::I32,
    },
    Column {
        name: "qty",
        kind: Kind::I64,
    },
    Column {
        name: "big",
        kind: Kind::Big,
    },
    Column {
        name: "u8",
        kind: Kind::U8,
    },
    Column {
        name: "u16",
        kind: Kind::U16,
    },
    Column {
        name: "u32",
        kind: Kind::U32,
    },
    Column {
        name: "u64",
        kind: Kind::U64,
    },
    Column {
        name: "f32",
        kind: Kind::F32,
    },
    Column {
        name: "amount",
        kind: Kind::Price,
    },
    Column {
        name: "ratio",
        kind: Kind::Wide,
    },
    Column {
        name: "dec",
        kind: Kind::Dec,
    },
    Column {
        name: "active",
        kind: Kind::Bool,
    },
    Column {
        name: "day",
        kind: Kind::Date,
    },
    Column {
        name: "ts",
        kind: Kind::Ts,
    },
    Column {
        name: "ts_utc",
        kind: Kind::TsUtc,
    },
    Column {
        name: "ts_ns",
        kind: Kind::TsNs,
    },
    // 8-bit dictionary keys (≤ 127 values), 16-bit (≤ 32 767), 32-bit (more).
    Column {
        name: "state",
        kind: Kind::Pool(50),
    },
    Column {
        name: "city",
        kind: Kind::Pool(2_000),
    },
    Column {
        name: "street",
        kind: Kind::Pool(40_000),
    },
    Column {
        name: "tag",
        kind: Kind::Cased,
    },
    Column {
        name: "note",
        kind: Kind::Note,
    },
    Column {
        name: "name",
        kind: Kind::Name,
    },
];

/// Strings that break naive escaping, quoting, collation or LIKE handling.
const AWKWARD: [&str; 14] = [
    "",
    " leading space",
    "O'Hara",
    "say \"hi\"",
    "back\\slash",
    "50% off",
    "snake_case",
    "tab\there",
    "Île-de-France",
    "日本語",
    "emoji 🎉",
    "zürich",
    "Zürich",
    "line\nbreak",
];

/// `tag`'s values: case and script variants for `ilike`.
const CASED: [&str; 12] = [
    "alpha",
    "Alpha",
    "ALPHA",
    "ärger",
    "Ärger",
    "straße",
    "STRASSE",
    "σίσυφος",
    "Σίσυφος",
    "mixed_Case",
    "MIXED%case",
    "naïve",
];

impl Kind {
    pub fn data_type(self) -> DataType {
        match self {
            Kind::Key | Kind::I64 | Kind::Big => DataType::Int64,
            Kind::I8 => DataType::Int8,
            Kind::I16 => DataType::Int16,
            Kind::I32 => DataType::Int32,
            Kind::U8 => DataType::UInt8,
            Kind::U16 => DataType::UInt16,
            Kind::U32 => DataType::UInt32,
            Kind::U64 => DataType::UInt64,
            Kind::F32 => DataType::Float32,
            Kind::Price | Kind::Wide => DataType::Float64,
            Kind::Dec => DataType::Decimal128(12, 2),
            Kind::Bool => DataType::Boolean,
            Kind::Date => DataType::Date32,
            Kind::Ts => DataType::Timestamp(TimeUnit::Microsecond, None),
            Kind::TsUtc => DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())),
            Kind::TsNs => DataType::Timestamp(TimeUnit::Nanosecond, None),
            Kind::Pool(_) | Kind::Name => DataType::Utf8,
            Kind::Cased => DataType::Utf8View,
            Kind::Note => DataType::LargeUtf8,
        }
    }

    /// The DuckDB type of the column as DuckDB reads it from Parquet.
    pub fn sql_type(self) -> &'static str {
        match self {
            Kind::Key | Kind::I64 | Kind::Big => "BIGINT",
            Kind::I8 => "TINYINT",
            Kind::I16 => "SMALLINT",
            Kind::I32 => "INTEGER",
            Kind::U8 => "UTINYINT",
            Kind::U16 => "USMALLINT",
            Kind::U32 => "UINTEGER",
            Kind::U64 => "UBIGINT",
            Kind::F32 => "FLOAT",
            Kind::Price | Kind::Wide => "DOUBLE",
            Kind::Dec => "DECIMAL(12,2)",
            Kind::Bool => "BOOLEAN",
            Kind::Date => "DATE",
            Kind::Ts => "TIMESTAMP",
            Kind::TsUtc => "TIMESTAMPTZ",
            Kind::TsNs => "TIMESTAMP_NS",
            Kind::Pool(_) | Kind::Cased | Kind::Note | Kind::Name => "VARCHAR",
        }
    }

    pub fn is_integer(self) -> bool {
        self.data_type().is_integer()
    }

    pub fn is_numeric(self) -> bool {
        self.data_type().is_numeric()
    }

    pub fn is_float(self) -> bool {
        self.data_type().is_floating()
    }

    pub fn is_string(self) -> bool {
        matches!(self, Kind::Pool(_) | Kind::Cased | Kind::Note | Kind::Name)
    }

    /// Few enough distinct values to group by on a large table.
    pub fn groupable(self) -> bool {
        matches!(
            self,
            Kind::I8 | Kind::I32 | Kind::U8 | Kind::Bool | Kind::Pool(_) | Kind::Cased | Kind::Date
        )
    }
}

pub fn schema() -> SchemaRef {
    Arc::new(Schema::new(
        COLUMNS
            .iter()
            .map(|c| Field::new(c.name, c.kind.data_type(), c.kind != Kind::Key))
            .collect::<Vec<_>>(),
    ))
}

/// The `n`-th key: `n * A mod 2^44`, shifted to be centred on 0. A bijection on
/// `0..2^44`, so keys are distinct and come in no order.
pub fn key(n: u64) -> i64 {
    const A: u64 = 0x9E37_79B9_7F4A_7C15;
    ((n.wrapping_mul(A)) & ((1 << 44) - 1)) as i64 - (1 << 43)
}

/// Rows with the given keys; `generation` 0 is the base, later ones are deltas (wider
/// pools: new dictionary values). Deterministic in `seed`.
pub fn rows(keys: &[i64], generation: u64, seed: u64) -> RecordBatch {
    let mut rng = StdRng::seed_from_u64(seed ^ generation.wrapping_mul(0x5851_F42D_4C95_7F2D));
    let n = keys.len();
    let columns: Vec<ArrayRef> = COLUMNS
        .iter()
        .map(|c| column(c.kind, keys, generation, &mut rng))
        .collect();
    let batch = RecordBatch::try_new(schema(), columns).unwrap();
    assert_eq!(batch.num_rows(), n);
    batch
}

fn column(kind: Kind, keys: &[i64], generation: u64, rng: &mut StdRng) -> ArrayRef {
    let n = keys.len();
    // About 4% nulls in every nullable column.
    let some = |rng: &mut StdRng| rng.random_range(0..25) != 0;
    macro_rules! values {
        ($array:ty, $f:expr) => {{
            let f = $f;
            Arc::new(
                (0..n)
                    .map(|_| if some(rng) { Some(f(&mut *rng)) } else { None })
                    .collect::<$array>(),
            ) as ArrayRef
        }};
    }
    const DAY_US: i64 = 86_400_000_000;
    // 1960-01-01 .. 2040-01-01 in days.
    let days = -3_653..25_567i64;
    match kind {
        Kind::Key => Arc::new(Int64Array::from(keys.to_vec())),
        Kind::I8 => values!(Int8Array, |r: &mut StdRng| r.random::<i8>()),
        Kind::I16 => values!(Int16Array, |r: &mut StdRng| r.random::<i16>()),
        Kind::I32 => values!(Int32Array, |r: &mut StdRng| r.random_range(1..=5)),
        Kind::I64 => values!(Int64Array, |r: &mut StdRng| r.random_range(-1_000..100_000)),
        Kind::Big => values!(Int64Array, |r: &mut StdRng| r
            .random_range(-(1i64 << 62)..(1i64 << 62))),
        Kind::U8 => values!(UInt8Array, |r: &mut StdRng| r.random::<u8>()),
        Kind::U16 => values!(UInt16Array, |r: &mut StdRng| r.random::<u16>()),
        Kind::U32 => values!(UInt32Array, |r: &mut StdRng| r.random::<u32>()),
        Kind::U64 => values!(UInt64Array, |r: &mut StdRng| r.random::<u64>()),
        Kind::F32 => values!(Float32Array, |r: &mut StdRng| {
            (r.random_range(-100_000..100_000) as f32) / 64.0
        }),
        Kind::Price => values!(Float64Array, |r: &mut StdRng| {
            r.random_range(1..1_000_000) as f64 / 100.0
        }),
        Kind::Wide => values!(Float64Array, |r: &mut StdRng| {
            let magnitude = 10f64.powi(r.random_range(-6..12));
            let v = r.random::<f64>() * magnitude;
            if r.random_bool(0.3) { -v } else { v }
        }),
        Kind::Dec => Arc::new(
            (0..n)
                .map(|_| some(rng).then(|| rng.random_range(-100_000_000_000i128..100_000_000_000)))
                .collect::<Decimal128Array>()
                .with_precision_and_scale(12, 2)
                .unwrap(),
        ),
        Kind::Bool => values!(BooleanArray, |r: &mut StdRng| r.random_bool(0.6)),
        Kind::Date => values!(Date32Array, |r: &mut StdRng| r.random_range(days.clone())
            as i32),
        Kind::Ts => values!(TimestampMicrosecondArray, |r: &mut StdRng| {
            let day = r.random_range(days.clone()) * DAY_US;
            // Whole seconds, milliseconds and microseconds: each fraction width appears.
            match r.random_range(0..3) {
                0 => day + r.random_range(0..86_400) * 1_000_000,
                1 => day + r.random_range(0..86_400_000) * 1_000,
                _ => day + r.random_range(0..DAY_US),
            }
        }),
        Kind::TsUtc => Arc::new(
            (0..n)
                .map(|_| {
                    some(rng).then(|| {
                        rng.random_range(days.clone()) * 86_400_000
                            + rng.random_range(0..86_400_000)
                    })
                })
                .collect::<TimestampMillisecondArray>()
                .with_timezone("UTC"),
        ),
        Kind::TsNs => values!(TimestampNanosecondArray, |r: &mut StdRng| {
            r.random_range(days.clone()) * DAY_US * 1_000 + r.random_range(0..DAY_US * 1_000)
        }),
        Kind::Pool(size) => {
            // Deltas bring values beyond the base's pool (and its dictionary's key width).
            let size = if generation == 0 { size } else { size * 3 };
            let pool = pool(size);
            values!(StringArray, |r: &mut StdRng| pool[r.random_range(0..size)]
                .clone())
        }
        Kind::Cased => Arc::new(
            (0..n)
                .map(|_| some(rng).then(|| CASED[rng.random_range(0..CASED.len())]))
                .collect::<StringViewArray>(),
        ),
        Kind::Note => Arc::new(
            keys.iter()
                .map(|k| {
                    some(rng).then(|| {
                        let awkward = AWKWARD[rng.random_range(0..AWKWARD.len())];
                        format!("{awkward} #{} g{generation}", k.rem_euclid(1_000_003))
                    })
                })
                .collect::<LargeStringArray>(),
        ),
        Kind::Name => values!(StringArray, |r: &mut StdRng| format!(
            "user_{:07}",
            r.random_range(0..10_000_000)
        )),
    }
}

/// `size` distinct strings: the awkward ones first, then generated names.
fn pool(size: usize) -> Vec<String> {
    AWKWARD
        .iter()
        .map(|s| s.to_string())
        .chain((0..).map(|i| format!("v{i:05}")))
        .take(size)
        .collect()
}

/// An `_op` column appended to `rows` (0 upsert, 1 delete): a delta body.
pub fn delta(upserts: &RecordBatch, deletes: &[i64]) -> RecordBatch {
    use arrow::array::new_null_array;
    let schema = schema();
    let mut columns = Vec::new();
    for (i, field) in schema.fields().iter().enumerate() {
        let gone: ArrayRef = if i == 0 {
            Arc::new(Int64Array::from(deletes.to_vec()))
        } else {
            new_null_array(field.data_type(), deletes.len())
        };
        columns.push(arrow::compute::concat(&[upserts.column(i).as_ref(), gone.as_ref()]).unwrap());
    }
    let ops: Vec<u8> = (0..upserts.num_rows() + deletes.len())
        .map(|r| u8::from(r >= upserts.num_rows()))
        .collect();
    columns.push(Arc::new(UInt8Array::from(ops)));
    let mut fields: Vec<Field> = schema.fields().iter().map(|f| f.as_ref().clone()).collect();
    fields.push(Field::new("_op", DataType::UInt8, false));
    RecordBatch::try_new(Arc::new(Schema::new(fields)), columns).unwrap()
}
