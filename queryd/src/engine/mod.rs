//! Engines: what answers a plan that no index path answers — the [`Engine`] arm of
//! [`crate::route::Route`]. [`datafusion::DataFusion`] is the one engine today; another
//! (DuckDB) joins by implementing [`Engine`] and passing the conformance suite's paths.
//!
//! The contract, for every engine and every input:
//! - **In**: a validated [`Plan`] (columns, filters, shape, `order_by`, `limit`) over an
//!   [`Input`]: the dataset as the cache serves it (in memory, or its manifest's files with
//!   the deltas merged), or groups an index already computed, of which only the tail
//!   (`having`, order, `limit`) remains.
//! - **Out**: Arrow batches in their answer types: integer sums narrowed by [`narrow_sums`]
//!   (an overflow is [`QueryError::Overflow`], never a wrapped number); dictionary-encoded
//!   columns may stay so (the encoders answer logical types).
//! - **Order** (the same on every path, so pages are stable across paths and replicas):
//!   rows without `order_by` come in storage order (base files in manifest order, then the
//!   deltas' surviving rows by sequence, then key); with `order_by`, ties are broken by the
//!   primary key (or by every output column when there is none); grouped and distinct
//!   answers without `order_by` are sorted by their group columns.
//! - `limit` caps the rows before paging; `skip`/`fetch` is the page window after it.

pub mod datafusion;
pub mod pool;

use std::sync::Arc;

use arrow::array::{ArrayRef, AsArray, Int64Array, RecordBatch, UInt64Array};
use arrow::datatypes::{DataType, Decimal128Type, Field, Schema, SchemaRef};
use futures::future::BoxFuture;
use futures::stream::BoxStream;

use crate::error::QueryError;
use crate::plan::{AggOp, Plan, Shape};
use crate::source::Source;

/// What an engine runs a plan over.
pub enum Input<'a> {
    /// The dataset: its in-memory state, or its files (cold).
    Dataset(&'a Source),
    /// One row per group (group column, then aggregates, sums as [`EXACT_SUM`]), computed
    /// from an index ([`crate::group`]); the engine applies `having`, the order and `limit`.
    Groups(SchemaRef, RecordBatch),
}

/// A plan with what it needs to know of its dataset.
#[derive(Clone, Copy)]
pub struct Query<'a> {
    pub plan: &'a Plan,
    /// The dataset's logical schema (the plan's column indices refer to it).
    pub schema: &'a Schema,
    /// Primary-key column names (the tie-break of `order_by`); empty without one.
    pub primary_key: &'a [String],
}

/// Batches of an answer, as they are produced.
pub type Batches = BoxStream<'static, Result<RecordBatch, QueryError>>;

/// A query engine (see the module doc for the contract every method keeps).
pub trait Engine: Send + Sync {
    /// Rows `[skip, skip + fetch)` of the answer, with their schema.
    fn page<'a>(
        &'a self,
        input: Input<'a>,
        query: Query<'a>,
        skip: u64,
        fetch: u64,
    ) -> BoxFuture<'a, Result<(SchemaRef, Vec<RecordBatch>), QueryError>>;

    /// How many rows the answer has (after `limit`).
    fn count<'a>(
        &'a self,
        input: Input<'a>,
        query: Query<'a>,
    ) -> BoxFuture<'a, Result<u64, QueryError>>;

    /// Every row of the answer (after `limit`), batch by batch, with its schema.
    fn stream<'a>(
        &'a self,
        input: Input<'a>,
        query: Query<'a>,
    ) -> BoxFuture<'a, Result<(SchemaRef, Batches), QueryError>>;
}

/// The type integer sums are computed in: exact for any row count a dataset can have
/// (2^32 rows of 64-bit values stay far below 10^38).
pub const EXACT_SUM: DataType = DataType::Decimal128(38, 0);

/// A grouped answer with its integer sums in their plan type (`Int64`, `UInt64` for a
/// `uint64` column). Sums are computed exactly ([`EXACT_SUM`], so `having` and `order_by`
/// compare exact values) and narrowed only here, as they are answered: a sum that does not
/// fit is a [`QueryError::Overflow`], never a wrapped number. Other shapes pass unchanged.
pub fn narrow_sums(batch: RecordBatch, plan: &Plan) -> Result<RecordBatch, QueryError> {
    let Shape::Grouped { aggregates, .. } = &plan.shape else {
        return Ok(batch);
    };
    let schema = batch.schema();
    let mut fields: Vec<Field> = schema.fields().iter().map(|f| f.as_ref().clone()).collect();
    let mut columns = batch.columns().to_vec();
    for a in aggregates {
        let (Ok(i), AggOp::Sum) = (schema.index_of(&a.alias), a.op) else {
            continue;
        };
        // Integer sums only: a decimal(28, 0) column's sum is a decimal(38, 0) too, and stays.
        let integer = matches!(a.data_type, DataType::Int64 | DataType::UInt64);
        if !integer || columns[i].data_type() != &EXACT_SUM {
            continue;
        }
        let exact = columns[i].as_primitive::<Decimal128Type>();
        let overflow = |v: i128| {
            QueryError::Overflow(format!(
                "the sum {:?} is {v}, which does not fit its type {}",
                a.alias, a.data_type
            ))
        };
        let narrowed: ArrayRef = match a.data_type {
            DataType::UInt64 => Arc::new(
                exact
                    .iter()
                    .map(|v| {
                        v.map(|v| u64::try_from(v).map_err(|_| overflow(v)))
                            .transpose()
                    })
                    .collect::<Result<UInt64Array, _>>()?,
            ),
            _ => Arc::new(
                exact
                    .iter()
                    .map(|v| {
                        v.map(|v| i64::try_from(v).map_err(|_| overflow(v)))
                            .transpose()
                    })
                    .collect::<Result<Int64Array, _>>()?,
            ),
        };
        fields[i] = fields[i]
            .clone()
            .with_data_type(narrowed.data_type().clone());
        columns[i] = narrowed;
    }
    let schema = Arc::new(Schema::new_with_metadata(fields, schema.metadata().clone()));
    Ok(RecordBatch::try_new(schema, columns)?)
}

#[cfg(test)]
mod tests {
    use arrow::array::Decimal128Array;
    use arrow::datatypes::{Field, Int64Type};

    use super::*;

    #[test]
    fn only_integer_sums_are_narrowed_and_one_that_does_not_fit_is_refused() {
        let schema = Schema::new(vec![
            Field::new("g", DataType::Int64, false),
            Field::new("n", DataType::Int64, true),
            Field::new("d", DataType::Decimal128(28, 0), true),
        ]);
        let request: strata_queryd_api::QueryRequest = serde_json::from_value(serde_json::json!({
            "group_by": ["g"],
            "aggregations": [{"op": "sum", "col": "n"}, {"op": "sum", "col": "d"}]
        }))
        .unwrap();
        let plan = crate::plan::plan(&request, &schema, 100).unwrap();
        let exact = |values: Vec<i128>| {
            Arc::new(Decimal128Array::from(values).with_data_type(EXACT_SUM)) as ArrayRef
        };
        let answer = RecordBatch::try_new(
            Arc::new(Schema::new(vec![
                Field::new("g", DataType::Int64, false),
                Field::new("sum_n", EXACT_SUM, true),
                Field::new("sum_d", EXACT_SUM, true),
            ])),
            vec![
                Arc::new(Int64Array::from(vec![1, 2])),
                exact(vec![5, i128::from(i64::MAX) + 1]),
                exact(vec![7, 8]),
            ],
        )
        .unwrap();
        let first = narrow_sums(answer.slice(0, 1), &plan).unwrap();
        assert_eq!(first.column(1).as_primitive::<Int64Type>().value(0), 5);
        assert_eq!(
            first.schema().field(2).data_type(),
            &EXACT_SUM,
            "a decimal sum stays"
        );
        assert!(matches!(
            narrow_sums(answer, &plan),
            Err(QueryError::Overflow(_))
        ));
    }
}
