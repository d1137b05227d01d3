//! Row filters evaluated with arrow's kernels, the ones DataFusion's filters call, so a path
//! that filters rows itself ([`crate::group`], [`crate::cold::count`]) answers as the engine
//! does. A filter's answer is a bitmap of the rows where it is true (neither false nor null).

use arrow::array::{Array, ArrayRef, AsArray, BooleanArray, Scalar};
use arrow::buffer::BooleanBuffer;
use arrow::compute::kernels::{cmp, comparison};
use arrow::datatypes::{DataType, Int32Type};
use datafusion::common::ScalarValue;

use crate::error::QueryError;
use crate::plan::{CmpOp, FilterOp};

/// The rows (of `rows`) for which every filter is true.
pub fn passing(
    rows: usize,
    filters: &[(&ArrayRef, &FilterOp)],
) -> Result<BooleanBuffer, QueryError> {
    let mut keep = BooleanBuffer::new_set(rows);
    for (column, op) in filters {
        keep = &keep & &truth(column, op)?;
    }
    Ok(keep)
}

/// Where `op` is true on `column`. A dictionary's values are tested once each and each row
/// takes its key's answer (a null key is a null value): a string equality on a column of 7
/// distinct values costs 7 comparisons and a table lookup per row.
pub fn truth(column: &ArrayRef, op: &FilterOp) -> Result<BooleanBuffer, QueryError> {
    if let Some(dictionary) = column.as_any_dictionary_opt() {
        let values = truth(dictionary.values(), op)?;
        let on_null = matches!(op, FilterOp::IsNull);
        return Ok(
            match (
                column.as_dictionary_opt::<Int32Type>(),
                dictionary.keys().nulls(),
            ) {
                // The common case (a Parquet string column read as a dictionary, no nulls, at
                // most 64 values): the values' answers as the bits of one word.
                (Some(d), None) if values.len() <= 64 => {
                    let bits = values.set_indices().fold(0u64, |bits, v| bits | (1 << v));
                    let keys = d.keys().values();
                    BooleanBuffer::collect_bool(keys.len(), |r| (bits >> (keys[r] & 63)) & 1 == 1)
                }
                (_, nulls) => {
                    let keys = dictionary.normalized_keys();
                    BooleanBuffer::collect_bool(keys.len(), |r| match nulls {
                        Some(n) if n.is_null(r) => on_null,
                        _ => values.value(keys[r]),
                    })
                }
            },
        );
    }
    let answer = match op {
        FilterOp::Cmp(op, value) => compare(column, *op, value)?,
        FilterOp::In(values) => {
            let mut any = BooleanBuffer::new_unset(column.len());
            for value in values {
                any = &any | &truthy(&compare(column, CmpOp::Eq, value)?);
            }
            return Ok(any);
        }
        FilterOp::Like {
            pattern,
            case_insensitive,
        } => {
            let pattern = ScalarValue::Utf8(Some(pattern.clone())).cast_to(column.data_type())?;
            let pattern = Scalar::new(pattern.to_array()?);
            if *case_insensitive {
                comparison::ilike(column, &pattern)?
            } else {
                comparison::like(column, &pattern)?
            }
        }
        FilterOp::IsNull => arrow::compute::is_null(column)?,
        FilterOp::IsNotNull => arrow::compute::is_not_null(column)?,
    };
    Ok(truthy(&answer))
}

/// `column op value`, null where the column is. The literal is of the column's type, or of
/// another string type (a dictionary page's strings are `Utf8`, the column's may be views):
/// strings compare byte by byte whatever their layout.
pub fn compare(
    column: &dyn arrow::array::Datum,
    op: CmpOp,
    value: &ScalarValue,
) -> Result<BooleanArray, QueryError> {
    let (array, _) = column.get();
    let value = match (value.data_type(), array.data_type()) {
        (literal, column) if &literal != column && is_string(&literal) && is_string(column) => {
            value.cast_to(column)?
        }
        _ => value.clone(),
    };
    let literal = Scalar::new(value.to_array()?);
    Ok(match op {
        CmpOp::Eq => cmp::eq(column, &literal)?,
        CmpOp::NotEq => cmp::neq(column, &literal)?,
        CmpOp::Gt => cmp::gt(column, &literal)?,
        CmpOp::GtEq => cmp::gt_eq(column, &literal)?,
        CmpOp::Lt => cmp::lt(column, &literal)?,
        CmpOp::LtEq => cmp::lt_eq(column, &literal)?,
    })
}

fn is_string(data_type: &DataType) -> bool {
    matches!(
        data_type,
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View
    )
}

/// The true bits of `answer`: set and not null.
pub fn truthy(answer: &BooleanArray) -> BooleanBuffer {
    match answer.nulls() {
        Some(nulls) => answer.values() & nulls.inner(),
        None => answer.values().clone(),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{DictionaryArray, Int8Array, Int32Array, StringArray};
    use arrow::datatypes::{DataType, Int8Type};

    use super::*;

    fn utf8(s: &str) -> ScalarValue {
        ScalarValue::Utf8(Some(s.into()))
    }

    fn ops() -> Vec<FilterOp> {
        let mut ops: Vec<FilterOp> = [
            CmpOp::Eq,
            CmpOp::NotEq,
            CmpOp::Gt,
            CmpOp::GtEq,
            CmpOp::Lt,
            CmpOp::LtEq,
        ]
        .into_iter()
        .map(|op| FilterOp::Cmp(op, utf8("MAIL")))
        .collect();
        ops.push(FilterOp::In(vec![utf8("AIR"), utf8("SHIP"), utf8("none")]));
        for case_insensitive in [false, true] {
            ops.push(FilterOp::Like {
                pattern: "%ai%".into(),
                case_insensitive,
            });
        }
        ops.extend([FilterOp::IsNull, FilterOp::IsNotNull]);
        ops
    }

    /// A dictionary column answers each filter as its plain strings do: null keys and null
    /// values alike are nulls, whatever the key type.
    #[test]
    fn a_dictionary_answers_as_its_values_unpacked() {
        let values: ArrayRef = Arc::new(StringArray::from(vec![
            Some("AIR"),
            Some("MAIL"),
            None,
            Some("SHIP"),
            Some("mail"),
        ]));
        let keys = Int32Array::from(vec![
            Some(0),
            Some(1),
            None,
            Some(2),
            Some(3),
            Some(4),
            Some(1),
        ]);
        let wide: ArrayRef = Arc::new(DictionaryArray::new(keys, values.clone()));
        let keys = Int8Array::from(vec![Some(4), None, Some(0), Some(2), Some(3)]);
        let narrow: ArrayRef = Arc::new(DictionaryArray::<Int8Type>::new(keys, values.clone()));
        // No null key (the word-of-bits case), and more than 64 values.
        let keys = Int32Array::from(vec![4, 0, 2, 3, 1, 1]);
        let no_null_key: ArrayRef = Arc::new(DictionaryArray::new(keys, values.clone()));
        let many = StringArray::from_iter((0..100).map(|i| (i % 3 > 0).then(|| format!("v{i}"))));
        let keys = Int32Array::from_iter_values((0..300).map(|i| (i * 7) % 100));
        let wide_values: ArrayRef = Arc::new(DictionaryArray::new(keys, Arc::new(many)));
        for dictionary in [wide, narrow, no_null_key, wide_values] {
            let plain = arrow::compute::cast(&dictionary, &DataType::Utf8).unwrap();
            for op in ops() {
                assert_eq!(
                    truth(&dictionary, &op).unwrap(),
                    truth(&plain, &op).unwrap(),
                    "{op:?} on {:?}",
                    dictionary.data_type()
                );
            }
        }
    }

    #[test]
    fn a_row_passes_when_every_filter_is_true_and_never_on_null() {
        let plain: ArrayRef = Arc::new(StringArray::from(vec![Some("AIR"), None, Some("MAIL")]));
        let numbers: ArrayRef = Arc::new(Int32Array::from(vec![Some(1), Some(2), None]));
        let eq = FilterOp::Cmp(CmpOp::NotEq, utf8("MAIL"));
        let gt = FilterOp::Cmp(CmpOp::Gt, ScalarValue::Int32(Some(0)));
        let keep = passing(3, &[(&plain, &eq), (&numbers, &gt)]).unwrap();
        assert_eq!(keep.iter().collect::<Vec<_>>(), [true, false, false]);
        assert_eq!(passing(3, &[]).unwrap().count_set_bits(), 3);
    }
}
