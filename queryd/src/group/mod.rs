//! Grouped queries answered without planning ([`crate::route::Route::Groups`]), two ways:
//! - on one indexed column, from its equality index (this module): the index already holds
//!   every group's rows, so counts are list lengths and other aggregates read only the
//!   aggregated column;
//! - on dictionary-encoded columns, by their keys ([`dict`]), with comparison filters and
//!   deltas.
//!
//! Without `having`, the groups (one row per group) are sorted here too ([`answered`]), in
//! the order `engine::finish_groups` gives them: no query planning at all. With `having`,
//! they go through that DataFusion tail.
//!
//! On the index, taken only with no row filters and aggregates this module computes exactly
//! like DataFusion: counts, integer sums/min/max, and averages of integers (exact sums
//! divided once). Float sums and averages are taken too; floating-point addition is not associative,
//! so they may differ from DataFusion's in the last bits — as DataFusion's own parallel
//! aggregation differs from run to run.

use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, Decimal128Array, Float64Array, Int64Array, RecordBatch,
};
use arrow::compute::{SortColumn, SortOptions, interleave, lexsort_to_indices, take_record_batch};
use arrow::datatypes::{self as t, ArrowPrimitiveType, DataType, Field, Schema, SchemaRef};

use crate::chunks::Chunks;
use crate::engine::EXACT_SUM;
use crate::error::QueryError;
use crate::index::{EqIndex, Postings};
use crate::plan::{AggOp, Aggregate, Plan, Shape};
use crate::state::DatasetState;

mod dict;

/// Whether this module computes `plan`'s groups on `state` (the route's choice): one group
/// column with an equality index, no row filters, no deltas, aggregates it computes exactly;
/// or group columns that are all dictionary-encoded ([`dict`]).
pub fn applies(state: &DatasetState, plan: &Plan) -> bool {
    parts(state, plan).is_some() || dict::applies(state, plan)
}

/// The group column, its index, the aggregates and how each reads its column.
fn parts<'s, 'p>(
    state: &'s DatasetState,
    plan: &'p Plan,
) -> Option<(usize, &'s EqIndex, &'p [Aggregate], Vec<Kind>)> {
    let Shape::Grouped {
        group_by,
        aggregates,
        ..
    } = &plan.shape
    else {
        return None;
    };
    let ([column], true) = (group_by.as_slice(), plan.filters.is_empty()) else {
        return None;
    };
    // With deltas the index lists hold replaced rows and miss the overlay's: the dictionary
    // groups (or DataFusion) aggregate the live rows instead.
    if state.overlay.is_some() {
        return None;
    }
    let index = state.base.eq_indexes.get(column)?;
    let kinds: Vec<Kind> = aggregates
        .iter()
        .map(|a| Kind::of(a, &state.mem_schema))
        .collect::<Option<_>>()?;
    Some((*column, index, aggregates, kinds))
}

/// One row per group (group column, then aggregates), unsorted. Only where [`applies`].
pub fn grouped(state: &DatasetState, plan: &Plan) -> Result<(SchemaRef, RecordBatch), QueryError> {
    match parts(state, plan) {
        Some((column, index, aggregates, kinds)) => {
            compute(state, column, index, aggregates, &kinds)
        }
        None => dict::grouped(state, plan),
    }
}

/// The whole answer of a grouped plan without `having`, where [`applies`]: the groups in
/// the order the engine gives them (the plan's sort keys, then the group column), before
/// paging.
pub fn answered(state: &DatasetState, plan: &Plan) -> Result<RecordBatch, QueryError> {
    let (_, batch) = grouped(state, plan)?;
    sort(&batch, plan)
}

/// A few rows sorted by Arrow's kernel, which orders values and nulls as DataFusion's sort
/// does (ascending: nulls last; descending: first).
fn sort(batch: &RecordBatch, plan: &Plan) -> Result<RecordBatch, QueryError> {
    let schema = batch.schema();
    let Shape::Grouped { group_by, .. } = &plan.shape else {
        return Err(QueryError::Internal("groups of a plan without them".into()));
    };
    // (column, descending); the group columns come first and are unique per group together,
    // so the order is total once they are keys.
    let mut keys: Vec<(usize, bool)> = plan
        .order_by
        .iter()
        .map(|k| Ok((schema.index_of(&k.name)?, k.descending)))
        .collect::<Result<_, arrow::error::ArrowError>>()?;
    for g in 0..group_by.len() {
        if !keys.iter().any(|&(c, _)| c == g) {
            keys.push((g, false));
        }
    }
    let columns: Vec<SortColumn> = keys
        .into_iter()
        .map(|(c, descending)| SortColumn {
            values: batch.column(c).clone(),
            options: Some(SortOptions {
                descending,
                nulls_first: descending,
            }),
        })
        .collect();
    let order = lexsort_to_indices(&columns, None)?;
    Ok(take_record_batch(batch, &order)?)
}

/// How an aggregate reads its column.
#[derive(Clone, Copy)]
enum Kind {
    CountRows,
    CountValues,
    /// Sum/avg/min/max over integers (read as i128).
    Int,
    /// Sum/avg over floats.
    Float,
}

impl Kind {
    fn of(a: &Aggregate, schema: &Schema) -> Option<Self> {
        let data_type = a.column.map(|c| schema.field(c).data_type());
        Some(match (a.op, data_type) {
            (AggOp::Count, None) => Kind::CountRows,
            (AggOp::Count, Some(_)) => Kind::CountValues,
            (_, Some(t)) if t.is_integer() => Kind::Int,
            (AggOp::Sum | AggOp::Avg, Some(t)) if t.is_floating() => Kind::Float,
            _ => return None,
        })
    }
}

fn compute(
    state: &DatasetState,
    column: usize,
    index: &EqIndex,
    aggregates: &[Aggregate],
    kinds: &[Kind],
) -> Result<(SchemaRef, RecordBatch), QueryError> {
    let chunks = &state.chunks;
    let groups: Vec<(u32, Postings<'_>)> = index.groups(chunks).collect();

    // The group column: each group's first row, gathered across chunks.
    let sources: Vec<&dyn Array> = chunks
        .batches()
        .iter()
        .map(|b| b.column(column).as_ref())
        .collect();
    let picks: Vec<(usize, usize)> = groups
        .iter()
        .map(|(first, _)| chunks.locate(*first))
        .collect();
    let mut columns: Vec<ArrayRef> = vec![interleave(&sources, &picks)?];
    let mut fields = vec![state.mem_schema.field(column).clone()];

    let postings: Vec<Postings<'_>> = groups.iter().map(|&(_, rows)| rows).collect();
    for (a, kind) in aggregates.iter().zip(kinds) {
        let values = a.column.map(|c| Values::new(chunks, c));
        let array: ArrayRef = match (kind, a.op, &values) {
            (Kind::CountRows, _, _) => Arc::new(Int64Array::from_iter_values(
                postings.iter().map(|rows| rows.len() as i64),
            )),
            (Kind::CountValues, _, Some(v)) => {
                Arc::new(Int64Array::from_iter_values(v.count(&postings)))
            }
            (Kind::Int, op, Some(v)) => {
                match op {
                    AggOp::Avg => Arc::new(Float64Array::from_iter(v.int_avg(&postings))),
                    // Exact, as on the DataFusion path: `engine::narrow_sums`.
                    AggOp::Sum => Arc::new(
                        Decimal128Array::from_iter(v.int_sum(&postings)).with_data_type(EXACT_SUM),
                    ),
                    // min/max keep the column's type (read exactly, as i128: a uint64
                    // beyond i64::MAX too).
                    _ => {
                        let exact = Decimal128Array::from_iter(v.int_extreme(&postings, op))
                            .with_data_type(EXACT_SUM);
                        arrow::compute::cast(&exact, &a.data_type)?
                    }
                }
            }
            (Kind::Float, op, Some(v)) => {
                Arc::new(Float64Array::from_iter(v.float_fold(&postings, op)))
            }
            _ => return Err(QueryError::Internal("aggregate without its column".into())),
        };
        fields.push(Field::new(&a.alias, array.data_type().clone(), true));
        columns.push(array);
    }
    let schema = Arc::new(Schema::new(fields));
    Ok((schema.clone(), RecordBatch::try_new(schema, columns)?))
}

/// One column's values, read through the index's postings: each chunk's array is downcast
/// once, and its values read in a typed loop (a million rows are a million slice reads, not
/// a million calls through a boxed reader).
struct Values<'a> {
    arrays: Vec<&'a ArrayRef>,
}

/// Calls `f(group, value)` with each non-null value at each group's rows of the `T`-typed
/// chunks `arrays`.
///
/// Chunk by chunk, then group by group: a chunk's values stay in cache while every group
/// reads its rows of them (group by group, each group would read the whole column from
/// memory again: 20 groups, 20 passes). Each group still sees its values in ascending row
/// order, so a float sum adds them in the same order either way.
fn each_value<T: ArrowPrimitiveType>(
    arrays: &[&ArrayRef],
    groups: &[Postings<'_>],
    mut f: impl FnMut(usize, T::Native),
) {
    for (chunk, array) in arrays.iter().enumerate() {
        let array = array.as_primitive::<T>();
        let values = array.values();
        let nulls = array.nulls().filter(|n| n.null_count() > 0);
        for (g, rows) in groups.iter().enumerate() {
            let offsets = rows.in_chunk(chunk);
            match nulls {
                None => offsets.iter().for_each(|&r| f(g, values[usize::from(r)])),
                Some(nulls) => offsets
                    .iter()
                    .map(|&r| usize::from(r))
                    .filter(|&r| nulls.is_valid(r))
                    .for_each(|r| f(g, values[r])),
            }
        }
    }
}

impl<'a> Values<'a> {
    fn new(chunks: &'a Chunks, column: usize) -> Self {
        Self {
            arrays: chunks.batches().iter().map(|b| b.column(column)).collect(),
        }
    }

    /// Each group's count of non-null values.
    fn count(&self, groups: &[Postings<'_>]) -> Vec<i64> {
        groups
            .iter()
            .map(|rows| {
                rows.runs()
                    .map(|(chunk, offsets)| {
                        match self.arrays[chunk].nulls().filter(|n| n.null_count() > 0) {
                            Some(nulls) => offsets
                                .iter()
                                .filter(|&&r| nulls.is_valid(usize::from(r)))
                                .count(),
                            None => offsets.len(),
                        }
                    })
                    .sum::<usize>() as i64
            })
            .collect()
    }

    /// Calls `f(group, value)` with each non-null value of each group, exactly, as i128
    /// (`Kind::of` admits only integer columns here; a uint64 beyond i64::MAX stays exact).
    fn ints(&self, groups: &[Postings<'_>], mut f: impl FnMut(usize, i128)) {
        macro_rules! ints {
            ($t:ty) => {
                each_value::<$t>(&self.arrays, groups, |g, v| f(g, v as i128))
            };
        }
        match self.arrays.first().map(|a| a.data_type()) {
            Some(DataType::Int8) => ints!(t::Int8Type),
            Some(DataType::Int16) => ints!(t::Int16Type),
            Some(DataType::Int32) => ints!(t::Int32Type),
            Some(DataType::UInt8) => ints!(t::UInt8Type),
            Some(DataType::UInt16) => ints!(t::UInt16Type),
            Some(DataType::UInt32) => ints!(t::UInt32Type),
            Some(DataType::UInt64) => ints!(t::UInt64Type),
            Some(_) => ints!(t::Int64Type),
            None => {}
        }
    }

    /// Calls `f(group, value)` with each non-null value of each group as f64 (`Kind::of`
    /// admits only float columns here).
    fn floats(&self, groups: &[Postings<'_>], mut f: impl FnMut(usize, f64)) {
        match self.arrays.first().map(|a| a.data_type()) {
            Some(DataType::Float16) => {
                each_value::<t::Float16Type>(&self.arrays, groups, |g, v| f(g, v.to_f64()))
            }
            Some(DataType::Float32) => {
                each_value::<t::Float32Type>(&self.arrays, groups, |g, v| f(g, f64::from(v)))
            }
            Some(_) => each_value::<t::Float64Type>(&self.arrays, groups, f),
            None => {}
        }
    }

    fn int_sum(&self, groups: &[Postings<'_>]) -> Vec<Option<i128>> {
        let mut sums: Vec<Option<i128>> = vec![None; groups.len()];
        self.ints(groups, |g, v| *sums[g].get_or_insert(0) += v);
        sums
    }

    /// Avg of an integer column (exact sum, one division, as DataFusion).
    fn int_avg(&self, groups: &[Postings<'_>]) -> Vec<Option<f64>> {
        let mut sums = vec![(0i128, 0u64); groups.len()];
        self.ints(groups, |g, v| {
            sums[g].0 += v;
            sums[g].1 += 1;
        });
        sums.into_iter()
            .map(|(sum, n)| (n > 0).then(|| sum as f64 / n as f64))
            .collect()
    }

    fn int_extreme(&self, groups: &[Postings<'_>], op: AggOp) -> Vec<Option<i128>> {
        let mut best: Vec<Option<i128>> = vec![None; groups.len()];
        self.ints(groups, |g, v| {
            best[g] = Some(match (best[g], op) {
                (None, _) => v,
                (Some(b), AggOp::Min) => b.min(v),
                (Some(b), _) => b.max(v),
            });
        });
        best
    }

    fn float_fold(&self, groups: &[Postings<'_>], op: AggOp) -> Vec<Option<f64>> {
        let mut sums = vec![(0f64, 0u64); groups.len()];
        self.floats(groups, |g, v| {
            sums[g].0 += v;
            sums[g].1 += 1;
        });
        sums.into_iter()
            .map(|(sum, n)| match op {
                _ if n == 0 => None,
                AggOp::Avg => Some(sum / n as f64),
                _ => Some(sum),
            })
            .collect()
    }
}
