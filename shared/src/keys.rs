//! Primary-key helpers: resolve key columns, sort by key, prove keys non-null and unique,
//! and describe key values for error messages and manifest key ranges.

use arrow::array::{Array, ArrayRef, AsArray, BooleanArray, RecordBatch, Scalar};
use arrow::compute::kernels::cmp::eq;
use arrow::compute::{SortColumn, and, lexsort_to_indices, take_record_batch};
use arrow::datatypes::{DataType, Schema};
use arrow::error::ArrowError;
use arrow::row::{RowConverter, Rows, SortField};
use arrow::util::display::{ArrayFormatter, FormatOptions};

use crate::{Error, Result};

/// The rows (of `rows`) where every column of `pairs` equals its value, a one-element array
/// of the column's type: a composite key's lookup mask.
pub fn rows_equal<'a>(
    rows: usize,
    pairs: impl IntoIterator<Item = (&'a ArrayRef, &'a ArrayRef)>,
) -> std::result::Result<BooleanArray, ArrowError> {
    let mut matches = BooleanArray::from(vec![true; rows]);
    for (column, value) in pairs {
        matches = and(&matches, &eq(column, &Scalar::new(value.clone()))?)?;
    }
    Ok(matches)
}

/// Indices of the key columns in `schema`, in key order.
pub fn key_indices(schema: &Schema, primary_key: &[String]) -> Result<Vec<usize>> {
    primary_key
        .iter()
        .map(|c| {
            schema
                .index_of(c)
                .map_err(|_| Error::UnknownKeyColumn { column: c.clone() })
        })
        .collect()
}

/// Sorts a batch by its key columns (ascending, nulls first: nulls are refused later anyway).
pub fn sort_by_key(batch: &RecordBatch, key: &[usize]) -> Result<RecordBatch> {
    if key.is_empty() || batch.num_rows() < 2 {
        return Ok(batch.clone());
    }
    let columns: Vec<SortColumn> = key
        .iter()
        .map(|&i| SortColumn {
            values: batch.column(i).clone(),
            options: None,
        })
        .collect();
    let indices = lexsort_to_indices(&columns, None)?;
    Ok(take_record_batch(batch, &indices)?)
}

/// Row-format encoding of the key columns: byte-comparable in key order, hashable.
pub fn key_rows(batch: &RecordBatch, key: &[usize]) -> Result<(RowConverter, Rows)> {
    let fields = key
        .iter()
        .map(|&i| SortField::new(batch.schema().field(i).data_type().clone()))
        .collect();
    let converter = RowConverter::new(fields)?;
    let columns: Vec<ArrayRef> = key.iter().map(|&i| batch.column(i).clone()).collect();
    let rows = converter.convert_columns(&columns)?;
    Ok((converter, rows))
}

/// Fails with the first null key value.
pub fn check_non_null(batch: &RecordBatch, key: &[usize]) -> Result<()> {
    for &i in key {
        let column = batch.column(i);
        if column.null_count() > 0 {
            let row = (0..column.len()).find(|&r| column.is_null(r)).unwrap_or(0);
            return Err(Error::NullKey {
                column: batch.schema().field(i).name().clone(),
                row,
            });
        }
    }
    Ok(())
}

/// For a batch sorted by key: fails with the first key that appears twice.
pub fn check_unique_sorted(batch: &RecordBatch, key: &[usize]) -> Result<()> {
    if key.is_empty() || batch.num_rows() < 2 {
        return Ok(());
    }
    let (_, rows) = key_rows(batch, key)?;
    for r in 1..rows.num_rows() {
        if rows.row(r) == rows.row(r - 1) {
            return Err(Error::DuplicateKey {
                key: describe_key(batch, key, r),
            });
        }
    }
    Ok(())
}

/// `col=value, col=value` for the key of one row, for error messages.
pub fn describe_key(batch: &RecordBatch, key: &[usize], row: usize) -> String {
    let schema = batch.schema();
    key.iter()
        .map(|&i| {
            let value = display_value(batch.column(i), row);
            format!("{}={}", schema.field(i).name(), value)
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// One cell as error messages show it (`null` for a null; `?` if the type has no display).
pub fn display_value(array: &ArrayRef, row: usize) -> String {
    let options = FormatOptions::default().with_null("null");
    match ArrayFormatter::try_new(array.as_ref(), &options) {
        Ok(f) => f.value(row).to_string(),
        Err(_) => "?".to_owned(),
    }
}

/// One cell as a JSON value: numbers and booleans natively, everything else as its display
/// string. Used for manifest key ranges, which are informative (pruning compares typed
/// values read back through the schema).
pub fn json_value(array: &ArrayRef, row: usize) -> serde_json::Value {
    use serde_json::Value;
    if array.is_null(row) {
        return Value::Null;
    }
    macro_rules! prim {
        ($t:ty) => {
            Value::from(array.as_primitive::<$t>().value(row))
        };
    }
    use arrow::datatypes as t;
    match array.data_type() {
        DataType::Int8 => prim!(t::Int8Type),
        DataType::Int16 => prim!(t::Int16Type),
        DataType::Int32 => prim!(t::Int32Type),
        DataType::Int64 => prim!(t::Int64Type),
        DataType::UInt8 => prim!(t::UInt8Type),
        DataType::UInt16 => prim!(t::UInt16Type),
        DataType::UInt32 => prim!(t::UInt32Type),
        DataType::UInt64 => prim!(t::UInt64Type),
        DataType::Float32 => prim!(t::Float32Type),
        DataType::Float64 => prim!(t::Float64Type),
        DataType::Boolean => Value::from(array.as_boolean().value(row)),
        _ => Value::from(display_value(array, row)),
    }
}

/// The key of one row as JSON values.
pub fn key_json(batch: &RecordBatch, key: &[usize], row: usize) -> Vec<serde_json::Value> {
    key.iter()
        .map(|&i| json_value(batch.column(i), row))
        .collect()
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{Int64Array, StringArray};
    use arrow::datatypes::Field;

    use super::*;

    fn batch(ids: Vec<Option<i64>>, names: Vec<&str>) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, true),
            Field::new("name", DataType::Utf8, false),
        ]));
        RecordBatch::try_new(
            schema,
            vec![
                Arc::new(Int64Array::from(ids)),
                Arc::new(StringArray::from(names)),
            ],
        )
        .unwrap()
    }

    #[test]
    fn sorts_and_checks_unique() {
        let b = batch(vec![Some(3), Some(1), Some(2)], vec!["c", "a", "b"]);
        let key = key_indices(&b.schema(), &["id".into()]).unwrap();
        let sorted = sort_by_key(&b, &key).unwrap();
        let ids = sorted
            .column(0)
            .as_primitive::<arrow::datatypes::Int64Type>();
        assert_eq!(ids.values(), &[1, 2, 3]);
        check_unique_sorted(&sorted, &key).unwrap();
        assert_eq!(key_json(&sorted, &key, 2), vec![serde_json::json!(3)]);
    }

    #[test]
    fn names_the_first_duplicate_and_null() {
        let b = batch(vec![Some(5), Some(7), Some(5)], vec!["x", "y", "z"]);
        let key = key_indices(&b.schema(), &["id".into()]).unwrap();
        let sorted = sort_by_key(&b, &key).unwrap();
        match check_unique_sorted(&sorted, &key) {
            Err(Error::DuplicateKey { key }) => assert_eq!(key, "id=5"),
            other => panic!("expected duplicate, got {other:?}"),
        }
        let b = batch(vec![Some(1), None], vec!["x", "y"]);
        match check_non_null(&b, &key) {
            Err(Error::NullKey { column, row }) => assert_eq!((column.as_str(), row), ("id", 1)),
            other => panic!("expected null key, got {other:?}"),
        }
        assert!(matches!(
            key_indices(&b.schema(), &["nope".into()]),
            Err(Error::UnknownKeyColumn { .. })
        ));
    }

    #[test]
    fn composite_keys() {
        let b = batch(vec![Some(1), Some(1), Some(0)], vec!["b", "a", "z"]);
        let key = key_indices(&b.schema(), &["id".into(), "name".into()]).unwrap();
        let sorted = sort_by_key(&b, &key).unwrap();
        check_unique_sorted(&sorted, &key).unwrap();
        assert_eq!(describe_key(&sorted, &key, 0), "id=0, name=z");
        assert_eq!(describe_key(&sorted, &key, 1), "id=1, name=a");
    }
}
