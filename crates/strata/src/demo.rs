//! The demo dataset: a deterministic table of orders so a newcomer sees data at once.
//!
//! Columns: `id` (Int64, primary key), `ts` (timestamp, µs UTC), `category` (8 values),
//! `country` (20 values), `amount` (Float64), `quantity` (Int32), `active` (Boolean),
//! `note` (nullable Utf8).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use arrow::array::{
    ArrayRef, BooleanArray, Float64Array, Int32Array, Int64Array, RecordBatch, StringArray,
    TimestampMicrosecondArray,
};
use arrow::datatypes::{DataType, Field, Schema, TimeUnit};

pub const NAME: &str = "demo";

const CATEGORIES: [&str; 8] = [
    "books", "games", "garden", "music", "outdoor", "kitchen", "toys", "tools",
];
const COUNTRIES: [&str; 20] = [
    "AR", "AU", "BR", "CA", "CN", "DE", "EG", "ES", "FR", "GB", "ID", "IN", "IT", "JP", "KR", "MX",
    "NG", "NL", "US", "ZA",
];
/// 2026-01-01T00:00:00Z in microseconds.
const EPOCH_US: i64 = 1_767_225_600_000_000;

/// A small deterministic generator (SplitMix64), so the demo is the same everywhere.
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

pub fn schema() -> Arc<Schema> {
    Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new(
            "ts",
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            false,
        ),
        Field::new("category", DataType::Utf8, false),
        Field::new("country", DataType::Utf8, false),
        Field::new("amount", DataType::Float64, false),
        Field::new("quantity", DataType::Int32, false),
        Field::new("active", DataType::Boolean, false),
        Field::new("note", DataType::Utf8, true),
    ]))
}

/// Rows `first_id..first_id + rows` of the demo table, in id order.
pub fn batch(first_id: i64, rows: usize, seed: u64) -> RecordBatch {
    let mut rng = SplitMix(seed);
    let ids: Vec<i64> = (0..rows as i64).map(|i| first_id + i).collect();
    let ts: Vec<i64> = ids
        .iter()
        .map(|id| EPOCH_US + id * 1_000_000 + rng.below(1_000_000) as i64)
        .collect();
    let category: Vec<&str> = (0..rows)
        .map(|_| CATEGORIES[rng.below(CATEGORIES.len() as u64) as usize])
        .collect();
    let country: Vec<&str> = (0..rows)
        .map(|_| COUNTRIES[rng.below(COUNTRIES.len() as u64) as usize])
        .collect();
    let amount: Vec<f64> = (0..rows)
        .map(|_| (rng.below(100_000) as f64) / 100.0)
        .collect();
    let quantity: Vec<i32> = (0..rows).map(|_| 1 + rng.below(20) as i32).collect();
    let active: Vec<bool> = (0..rows).map(|_| rng.below(10) != 0).collect();
    let note: Vec<Option<String>> = ids
        .iter()
        .map(|id| (rng.below(4) == 0).then(|| format!("note for order {id}")))
        .collect();
    let columns: Vec<ArrayRef> = vec![
        Arc::new(Int64Array::from(ids)),
        Arc::new(TimestampMicrosecondArray::from(ts).with_timezone("UTC")),
        Arc::new(StringArray::from(category)),
        Arc::new(StringArray::from(country)),
        Arc::new(Float64Array::from(amount)),
        Arc::new(Int32Array::from(quantity)),
        Arc::new(BooleanArray::from(active)),
        Arc::new(StringArray::from(note)),
    ];
    RecordBatch::try_new(schema(), columns).expect("demo columns match the demo schema")
}

/// `rows` demo rows as the bytes of one Parquet file.
pub fn encode(rows: usize) -> anyhow::Result<bytes::Bytes> {
    const CHUNK: usize = 64 * 1024;
    let batches: Vec<RecordBatch> = (0..rows)
        .step_by(CHUNK)
        .enumerate()
        .map(|(i, start)| batch(start as i64 + 1, CHUNK.min(rows - start), i as u64))
        .collect();
    Ok(strata_shared::parquet_io::encode(schema(), &batches)?)
}

/// Writes `rows` demo rows as one Parquet file.
pub fn write_file(path: &Path, rows: usize) -> anyhow::Result<()> {
    let bytes = encode(rows)?;
    let tmp = path.with_extension("parquet.tmp");
    std::fs::write(&tmp, &bytes).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

/// The demo source file in `dir`, generated if it is not there yet.
pub fn ensure_file(dir: &Path, rows: usize) -> anyhow::Result<PathBuf> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let path = dir.join(format!("demo-{rows}.parquet"));
    if !path.exists() {
        write_file(&path, rows)?;
    }
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deterministic_and_keyed() {
        let a = batch(1, 1000, 7);
        let b = batch(1, 1000, 7);
        assert_eq!(a, b);
        assert_eq!(a.num_rows(), 1000);
        let dir = tempfile::tempdir().unwrap();
        let path = ensure_file(dir.path(), 70_000).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        let (_, batches) = strata_shared::parquet_io::decode(bytes.into()).unwrap();
        assert_eq!(batches.iter().map(|b| b.num_rows()).sum::<usize>(), 70_000);
    }
}
