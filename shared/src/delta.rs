//! The delta file format: the table's columns plus `_op` (UInt8: 0 upsert, 1 delete), sorted
//! by key, key columns non-null, each key at most once per file (invariant 4). A delete row
//! carries its key; its other columns are null.

use std::sync::Arc;

use arrow::array::{Array, AsArray, RecordBatch, UInt8Array};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, UInt8Type};

use crate::keys;
use crate::{Error, Result};

pub const OP_COLUMN: &str = "_op";

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Op {
    Upsert = 0,
    Delete = 1,
}

impl TryFrom<u8> for Op {
    type Error = Error;
    fn try_from(value: u8) -> Result<Self> {
        match value {
            0 => Ok(Op::Upsert),
            1 => Ok(Op::Delete),
            other => Err(Error::InvalidInput(format!(
                "{OP_COLUMN} must be 0 (upsert) or 1 (delete), got {other}"
            ))),
        }
    }
}

/// The schema of a delta file for a table. Non-key columns become nullable, because a delete
/// row carries only its key.
pub fn delta_schema(table: &Schema, primary_key: &[String]) -> SchemaRef {
    let mut fields: Vec<Field> = table
        .fields()
        .iter()
        .map(|f| {
            let is_key = primary_key.iter().any(|k| k == f.name());
            f.as_ref().clone().with_nullable(!is_key)
        })
        .collect();
    fields.push(Field::new(OP_COLUMN, DataType::UInt8, false));
    Arc::new(Schema::new(fields))
}

/// The `_op` column of a delta batch.
pub fn op_column(delta: &RecordBatch) -> Result<&UInt8Array> {
    let column = delta
        .column_by_name(OP_COLUMN)
        .ok_or_else(|| Error::InvalidInput(format!("delta has no {OP_COLUMN} column")))?;
    column
        .as_primitive_opt::<UInt8Type>()
        .ok_or_else(|| Error::InvalidInput(format!("{OP_COLUMN} must be UInt8")))
}

/// The table columns of a delta batch (everything but `_op`), with the table's schema.
pub fn table_part(delta: &RecordBatch, table: &SchemaRef) -> Result<RecordBatch> {
    let columns = table
        .fields()
        .iter()
        .map(|f| {
            delta
                .column_by_name(f.name())
                .cloned()
                .ok_or_else(|| Error::InvalidInput(format!("delta lacks column {:?}", f.name())))
        })
        .collect::<Result<Vec<_>>>()?;
    // Delete rows hold nulls in non-key columns, so validate against a nullable variant.
    let relaxed = Arc::new(Schema::new(
        table
            .fields()
            .iter()
            .map(|f| f.as_ref().clone().with_nullable(true))
            .collect::<Vec<_>>(),
    ));
    Ok(RecordBatch::try_new(relaxed, columns)?)
}

/// Prepares a delta batch for writing: checks `_op` values and keys, sorts by key and proves
/// each key appears once.
pub fn prepare(delta: &RecordBatch, primary_key: &[String]) -> Result<RecordBatch> {
    if primary_key.is_empty() {
        return Err(Error::Conflict(
            "dataset has no primary key, so it takes no deltas".into(),
        ));
    }
    let ops = op_column(delta)?;
    if ops.null_count() > 0 {
        return Err(Error::InvalidInput(format!("{OP_COLUMN} must not be null")));
    }
    for value in ops.values().iter() {
        Op::try_from(*value)?;
    }
    let key = keys::key_indices(&delta.schema(), primary_key)?;
    keys::check_non_null(delta, &key)?;
    let sorted = keys::sort_by_key(delta, &key)?;
    keys::check_unique_sorted(&sorted, &key)?;
    Ok(sorted)
}

/// Merges prepared delta batches (each sorted and unique, all of one schema) into one
/// prepared batch in which a key that occurs in several batches keeps only its row from the
/// latest batch: the batches are in arrival order, and the latest request wins.
pub fn merge_in_order(batches: &[RecordBatch], primary_key: &[String]) -> Result<RecordBatch> {
    let Some(first) = batches.first() else {
        return Err(Error::InvalidInput("nothing to merge".into()));
    };
    if batches.len() == 1 {
        return Ok(first.clone());
    }
    let all = arrow::compute::concat_batches(&first.schema(), batches)?;
    let key = keys::key_indices(&all.schema(), primary_key)?;
    let (_, rows) = keys::key_rows(&all, &key)?;
    // Later rows overwrite earlier ones: concatenation kept arrival order.
    let mut last: std::collections::HashMap<arrow::row::Row<'_>, u32> =
        std::collections::HashMap::with_capacity(all.num_rows());
    for r in 0..all.num_rows() {
        last.insert(rows.row(r), r as u32);
    }
    let mut keep: Vec<u32> = last.into_values().collect();
    keep.sort_unstable();
    let kept = arrow::compute::take_record_batch(&all, &arrow::array::UInt32Array::from(keep))?;
    prepare(&kept, primary_key)
}

#[cfg(test)]
mod tests {
    use arrow::array::Int64Array;

    use super::*;

    #[test]
    fn prepare_sorts_and_validates() {
        let table = Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("v", DataType::Int64, false),
        ]);
        let pk = vec!["id".to_string()];
        let schema = delta_schema(&table, &pk);
        assert!(schema.field_with_name("v").unwrap().is_nullable());
        assert!(!schema.field_with_name("id").unwrap().is_nullable());
        let make = |ids: Vec<i64>, ops: Vec<u8>| {
            let n = ids.len();
            RecordBatch::try_new(
                schema.clone(),
                vec![
                    Arc::new(Int64Array::from(ids)),
                    Arc::new(Int64Array::from(vec![Some(1); n])),
                    Arc::new(UInt8Array::from(ops)),
                ],
            )
            .unwrap()
        };
        let sorted = prepare(&make(vec![3, 1], vec![0, 1]), &pk).unwrap();
        assert_eq!(
            sorted
                .column(0)
                .as_primitive::<arrow::datatypes::Int64Type>()
                .values(),
            &[1, 3]
        );
        assert_eq!(op_column(&sorted).unwrap().values(), &[1, 0]);
        assert!(prepare(&make(vec![1, 1], vec![0, 0]), &pk).is_err());
        assert!(prepare(&make(vec![1], vec![7]), &pk).is_err());
        assert!(matches!(
            prepare(&make(vec![1], vec![0]), &[]),
            Err(Error::Conflict(_))
        ));
    }

    #[test]
    fn merge_keeps_the_latest_batch_per_key() {
        let table = Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("v", DataType::Int64, false),
        ]);
        let pk = vec!["id".to_string()];
        let schema = delta_schema(&table, &pk);
        let make = |ids: Vec<i64>, vs: Vec<Option<i64>>, ops: Vec<u8>| {
            let batch = RecordBatch::try_new(
                schema.clone(),
                vec![
                    Arc::new(Int64Array::from(ids)),
                    Arc::new(Int64Array::from(vs)),
                    Arc::new(UInt8Array::from(ops)),
                ],
            )
            .unwrap();
            prepare(&batch, &pk).unwrap()
        };
        let first = make(
            vec![1, 2, 3],
            vec![Some(10), Some(20), Some(30)],
            vec![0, 0, 0],
        );
        let second = make(vec![2, 4], vec![None, Some(40)], vec![1, 0]);
        let third = make(vec![3], vec![Some(33)], vec![0]);
        let merged = merge_in_order(&[first, second, third], &pk).unwrap();
        let ids = merged
            .column(0)
            .as_primitive::<arrow::datatypes::Int64Type>();
        let vs = merged
            .column(1)
            .as_primitive::<arrow::datatypes::Int64Type>();
        assert_eq!(ids.values(), &[1, 2, 3, 4]);
        assert_eq!(
            (0..4)
                .map(|r| vs.is_valid(r).then(|| vs.value(r)))
                .collect::<Vec<_>>(),
            vec![Some(10), None, Some(33), Some(40)]
        );
        assert_eq!(op_column(&merged).unwrap().values(), &[0, 1, 0, 0]);
        assert!(merge_in_order(&[], &pk).is_err());
    }
}
