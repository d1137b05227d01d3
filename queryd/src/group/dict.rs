//! Grouped queries whose group columns are all dictionary-encoded in memory (the state's
//! low-cardinality strings): a row's group is a small number made from its dictionary keys,
//! so grouping is an array index rather than a hash of row-encoded values. DataFusion groups
//! dictionary columns through its row format (`GroupValuesRows`), which spent 150 ms of a
//! 6M-row group-by on TPC-H's `l_returnflag` encoding and comparing rows.
//!
//! Taken with row filters that are comparisons of primitive columns with a literal (arrow's
//! comparison kernels, which DataFusion's filters use too), over every live row (deltas
//! included: deleted rows are skipped, overlay chunks bring their own dictionaries), and
//! aggregates computed exactly as the engine computes them: counts, integer and decimal
//! sums, min and max (exact, as i128), averages as doubles. Float sums and averages are
//! added in row order, as on the index path (see the module above).

use std::collections::HashMap;
use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, ArrowPrimitiveType, AsArray, Decimal128Array, Float64Array, Int64Array,
    PrimitiveArray, RecordBatch, StringArray,
};
use arrow::buffer::BooleanBuffer;
use arrow::datatypes::{self as t, DataType, Field, Schema, SchemaRef};

use crate::engine::EXACT_SUM;
use crate::error::QueryError;
use crate::plan::{AggOp, Aggregate, Filter, FilterOp, Plan, Shape};
use crate::state::DatasetState;

/// Most combinations of dictionary keys (nulls included) a chunk may have: the table that
/// maps them to groups is this long.
const MAX_CODES: usize = 1 << 16;

/// How an aggregate reads its column.
#[derive(Clone, Copy)]
enum Kind {
    CountRows,
    CountValues,
    /// Integers and decimals, read exactly as i128.
    Exact,
    /// Floats (sum, avg), and averages of decimals (as the engine's cast to double).
    Float,
}

struct Parts<'p> {
    group_by: &'p [usize],
    filters: &'p [Filter],
    aggregates: &'p [Aggregate],
    kinds: Vec<Kind>,
}

/// Whether this module computes `plan`'s groups on `state`.
pub fn applies(state: &DatasetState, plan: &Plan) -> bool {
    parts(state, plan).is_some()
}

fn parts<'p>(state: &DatasetState, plan: &'p Plan) -> Option<Parts<'p>> {
    let Shape::Grouped {
        group_by,
        aggregates,
        ..
    } = &plan.shape
    else {
        return None;
    };
    let schema = &state.mem_schema;
    let dictionary = |c: &usize| match schema.field(*c).data_type() {
        DataType::Dictionary(key, _) => matches!(
            **key,
            DataType::Int8
                | DataType::Int16
                | DataType::Int32
                | DataType::UInt8
                | DataType::UInt16
                | DataType::UInt32
        ),
        _ => false,
    };
    if group_by.is_empty() || !group_by.iter().all(dictionary) {
        return None;
    }
    // Every chunk's key combinations must fit the code table.
    for batch in state.chunks.batches() {
        let mut codes = 1usize;
        for &c in group_by {
            let values = batch.column(c).as_any_dictionary_opt()?.values().len();
            codes = codes.checked_mul(values + 1)?;
        }
        if codes > MAX_CODES {
            return None;
        }
    }
    let filters_ok = plan.filters.iter().all(|f| {
        let data_type = schema.field(f.column).data_type();
        matches!(f.op, FilterOp::Cmp(..))
            && (data_type.is_primitive() || data_type == &DataType::Boolean)
    });
    if !filters_ok {
        return None;
    }
    let kinds = aggregates
        .iter()
        .map(|a| {
            let data_type = a.column.map(|c| schema.field(c).data_type());
            Some(match (a.op, data_type) {
                (AggOp::Count, None) => Kind::CountRows,
                (AggOp::Count, Some(_)) => Kind::CountValues,
                (AggOp::Avg, Some(DataType::Decimal128(..))) => Kind::Float,
                (_, Some(t)) if t.is_integer() || matches!(t, DataType::Decimal128(..)) => {
                    Kind::Exact
                }
                (AggOp::Sum | AggOp::Avg, Some(t)) if t.is_floating() => Kind::Float,
                _ => return None,
            })
        })
        .collect::<Option<Vec<_>>>()?;
    Some(Parts {
        group_by,
        filters: &plan.filters,
        aggregates,
        kinds,
    })
}

/// The distinct values of one group column over every chunk, numbered from 1 (0 is null).
#[derive(Default)]
struct Values {
    ids: HashMap<String, u32>,
    values: Vec<Option<String>>,
    /// The last dictionary numbered, and its numbers: the base's chunks share one
    /// dictionary (`build::layout`), so it is numbered once, not once per chunk.
    last: Option<(ArrayRef, Vec<u32>)>,
}

impl Values {
    /// Per dictionary key of `values` (a chunk's dictionary, `Utf8` as the layout makes
    /// them), the value's number here, after 0 for a null key.
    fn numbers(&mut self, values: &ArrayRef) -> Result<&[u32], QueryError> {
        if self.values.is_empty() {
            self.values.push(None);
        }
        if !self
            .last
            .as_ref()
            .is_some_and(|(a, _)| Arc::ptr_eq(a, values))
        {
            let text = values.as_string_opt::<i32>().ok_or_else(|| {
                QueryError::Internal(format!("dictionary values of type {}", values.data_type()))
            })?;
            let mut numbers = vec![0];
            for v in text.iter() {
                numbers.push(match v {
                    None => 0,
                    Some(v) => match self.ids.get(v) {
                        Some(&id) => id,
                        None => {
                            let id = self.values.len() as u32;
                            self.ids.insert(v.to_owned(), id);
                            self.values.push(Some(v.to_owned()));
                            id
                        }
                    },
                });
            }
            self.last = Some((values.clone(), numbers));
        }
        Ok(self.last.as_ref().map_or(&[], |(_, n)| n.as_slice()))
    }
}

/// One aggregate's state per group.
#[derive(Default)]
struct Acc {
    n: Vec<u64>,
    exact: Vec<i128>,
    best: Vec<Option<i128>>,
    float: Vec<f64>,
}

impl Acc {
    fn grow(&mut self, groups: usize) {
        self.n.resize(groups, 0);
        self.exact.resize(groups, 0);
        self.best.resize(groups, None);
        self.float.resize(groups, 0.0);
    }
}

/// One row per group (group columns in their logical types, then aggregates; integer sums
/// as [`EXACT_SUM`]), unsorted. Only where [`applies`].
pub fn grouped(state: &DatasetState, plan: &Plan) -> Result<(SchemaRef, RecordBatch), QueryError> {
    let parts = parts(state, plan).ok_or_else(|| {
        QueryError::Internal("dictionary groups on a plan they do not answer".into())
    })?;
    let mut columns: Vec<Values> = parts.group_by.iter().map(|_| Values::default()).collect();
    // A group is its columns' value numbers.
    let mut group_of: HashMap<Vec<u32>, u32> = HashMap::new();
    let mut groups: Vec<Vec<u32>> = Vec::new();
    let mut accs: Vec<Acc> = parts.aggregates.iter().map(|_| Acc::default()).collect();
    let deleted = state.deleted();
    // Reused from chunk to chunk: fresh buffers of a chunk's length each time cost more in
    // page faults than the loops that fill them.
    let (mut code_of_row, mut gids) = (Vec::new(), Vec::new());
    for (chunk, batch) in state.chunks.batches().iter().enumerate() {
        let rows = batch.num_rows();
        let keep = kept(batch, parts.filters, state, chunk, deleted)?;
        // A row's code: its keys (+1, 0 for null) in mixed radix, column by column.
        code_of_row.clear();
        code_of_row.resize(rows, 0u32);
        let mut stride = 1usize;
        // Per column: per key (+1), the value's number; and the column's stride.
        let mut numbers: Vec<(Vec<u32>, usize)> = Vec::new();
        for (g, &c) in parts.group_by.iter().enumerate() {
            let dictionary = batch
                .column(c)
                .as_any_dictionary_opt()
                .ok_or_else(|| QueryError::Internal("a group column is not a dictionary".into()))?;
            add_codes(dictionary.keys(), stride as u32, &mut code_of_row)?;
            let per_key = columns[g].numbers(dictionary.values())?.to_vec();
            let len = per_key.len();
            numbers.push((per_key, stride));
            stride *= len;
        }
        // Codes of this chunk to groups, as they are met.
        let mut group_of_code = vec![u32::MAX; stride];
        gids.clear();
        gids.resize(rows, u32::MAX);
        for r in keep.set_indices() {
            let code = code_of_row[r] as usize;
            if group_of_code[code] == u32::MAX {
                let key: Vec<u32> = numbers
                    .iter()
                    .map(|(per_key, stride)| per_key[(code / stride) % per_key.len()])
                    .collect();
                let next = groups.len() as u32;
                let id = *group_of.entry(key.clone()).or_insert(next);
                if id == next {
                    groups.push(key);
                }
                group_of_code[code] = id;
            }
            gids[r] = group_of_code[code];
        }
        for acc in &mut accs {
            acc.grow(groups.len());
        }
        for ((a, kind), acc) in parts.aggregates.iter().zip(&parts.kinds).zip(&mut accs) {
            accumulate(batch, a, *kind, &gids, acc)?;
        }
    }
    finish(state, &parts, &columns, &groups, &accs)
}

/// Adds `(key + 1) × stride` to each row's code (nothing for a null key).
fn add_codes(keys: &dyn Array, stride: u32, codes: &mut [u32]) -> Result<(), QueryError> {
    macro_rules! add {
        ($t:ty) => {{
            let keys = keys.as_primitive::<$t>();
            let values = keys.values();
            match keys.nulls().filter(|n| n.null_count() > 0) {
                None => {
                    for (code, &k) in codes.iter_mut().zip(values.iter()) {
                        *code += (k as u32 + 1) * stride;
                    }
                }
                Some(nulls) => {
                    for (r, (code, &k)) in codes.iter_mut().zip(values.iter()).enumerate() {
                        if nulls.is_valid(r) {
                            *code += (k as u32 + 1) * stride;
                        }
                    }
                }
            }
        }};
    }
    match keys.data_type() {
        DataType::Int8 => add!(t::Int8Type),
        DataType::Int16 => add!(t::Int16Type),
        DataType::Int32 => add!(t::Int32Type),
        DataType::UInt8 => add!(t::UInt8Type),
        DataType::UInt16 => add!(t::UInt16Type),
        DataType::UInt32 => add!(t::UInt32Type),
        other => {
            return Err(QueryError::Internal(format!(
                "dictionary keys of type {other}"
            )));
        }
    }
    Ok(())
}

/// The rows of chunk `chunk` that pass every filter and are live.
fn kept(
    batch: &RecordBatch,
    filters: &[Filter],
    state: &DatasetState,
    chunk: usize,
    deleted: Option<&crate::state::Deleted>,
) -> Result<BooleanBuffer, QueryError> {
    let rows = batch.num_rows();
    let mut keep = BooleanBuffer::new_set(rows);
    for filter in filters {
        keep = &keep & &crate::filter::truth(batch.column(filter.column), &filter.op)?;
    }
    if let Some(deleted) = deleted {
        let start = state.chunks.row_id(chunk, 0);
        if deleted.any_in(start, rows) {
            let live: BooleanBuffer = (0..rows)
                .map(|r| !deleted.contains(start + r as u32))
                .collect();
            keep = &keep & &live;
        }
    }
    Ok(keep)
}

/// Calls `f(group, value)` for each non-null value of a kept row (`gids[r] != u32::MAX`).
fn each<T: ArrowPrimitiveType>(
    array: &PrimitiveArray<T>,
    gids: &[u32],
    mut f: impl FnMut(usize, T::Native),
) {
    let values = array.values();
    let nulls = array.nulls().filter(|n| n.null_count() > 0);
    for (r, &g) in gids.iter().enumerate() {
        if g != u32::MAX && nulls.is_none_or(|n| n.is_valid(r)) {
            f(g as usize, values[r]);
        }
    }
}

fn accumulate(
    batch: &RecordBatch,
    a: &Aggregate,
    kind: Kind,
    gids: &[u32],
    acc: &mut Acc,
) -> Result<(), QueryError> {
    let Some(c) = a.column else {
        gids.iter()
            .filter(|&&g| g != u32::MAX)
            .for_each(|&g| acc.n[g as usize] += 1);
        return Ok(());
    };
    let array = batch.column(c).as_ref();
    match kind {
        Kind::CountRows | Kind::CountValues => {
            for (r, &g) in gids.iter().enumerate() {
                if g != u32::MAX && array.is_valid(r) {
                    acc.n[g as usize] += 1;
                }
            }
        }
        Kind::Exact => {
            // One loop per operation: a match per value cost a third of a group-by.
            let max = a.op == AggOp::Max;
            macro_rules! exact {
                ($t:ty) => {{
                    let array = array.as_primitive::<$t>();
                    match a.op {
                        AggOp::Min | AggOp::Max => each(array, gids, |g, v| {
                            let v = v as i128;
                            let best = &mut acc.best[g];
                            *best = Some(match *best {
                                None => v,
                                Some(b) if max => b.max(v),
                                Some(b) => b.min(v),
                            });
                            acc.n[g] += 1;
                        }),
                        _ => each(array, gids, |g, v| {
                            acc.exact[g] += v as i128;
                            acc.n[g] += 1;
                        }),
                    }
                }};
            }
            match array.data_type() {
                DataType::Int8 => exact!(t::Int8Type),
                DataType::Int16 => exact!(t::Int16Type),
                DataType::Int32 => exact!(t::Int32Type),
                DataType::Int64 => exact!(t::Int64Type),
                DataType::UInt8 => exact!(t::UInt8Type),
                DataType::UInt16 => exact!(t::UInt16Type),
                DataType::UInt32 => exact!(t::UInt32Type),
                DataType::UInt64 => exact!(t::UInt64Type),
                DataType::Decimal128(..) => exact!(t::Decimal128Type),
                other => {
                    return Err(QueryError::Internal(format!("exact aggregate of {other}")));
                }
            }
        }
        Kind::Float => {
            let mut add = |g: usize, v: f64| {
                acc.n[g] += 1;
                acc.float[g] += v;
            };
            match array.data_type() {
                // As the engine's `cast(col AS DOUBLE)` converts a decimal.
                DataType::Decimal128(_, scale) => {
                    let div = 10_f64.powi(i32::from(*scale));
                    // Through i64 where the value fits (the same double, without the
                    // slow i128 conversion).
                    each(array.as_primitive::<t::Decimal128Type>(), gids, |g, v| {
                        let v = i64::try_from(v).map_or_else(|_| v as f64, |v| v as f64);
                        add(g, v / div)
                    })
                }
                DataType::Float16 => each(array.as_primitive::<t::Float16Type>(), gids, |g, v| {
                    add(g, v.to_f64())
                }),
                DataType::Float32 => each(array.as_primitive::<t::Float32Type>(), gids, |g, v| {
                    add(g, f64::from(v))
                }),
                _ => each(array.as_primitive::<t::Float64Type>(), gids, add),
            }
        }
    }
    Ok(())
}

fn finish(
    state: &DatasetState,
    parts: &Parts<'_>,
    columns: &[Values],
    groups: &[Vec<u32>],
    accs: &[Acc],
) -> Result<(SchemaRef, RecordBatch), QueryError> {
    let mut fields = Vec::new();
    let mut arrays: Vec<ArrayRef> = Vec::new();
    for (g, &c) in parts.group_by.iter().enumerate() {
        let values: StringArray = groups
            .iter()
            .map(|key| columns[g].values[key[g] as usize].as_deref())
            .collect();
        let field = state.schema.field(c);
        arrays.push(arrow::compute::cast(&values, field.data_type())?);
        fields.push(field.clone().with_nullable(true));
    }
    for ((a, kind), acc) in parts.aggregates.iter().zip(&parts.kinds).zip(accs) {
        let some = |g: usize| acc.n[g] > 0;
        let n = groups.len();
        let array: ArrayRef = match (kind, a.op) {
            (Kind::CountRows | Kind::CountValues, _) => Arc::new(Int64Array::from_iter_values(
                acc.n.iter().map(|&v| v as i64),
            )),
            (Kind::Float, AggOp::Avg) => Arc::new(Float64Array::from_iter(
                (0..n).map(|g| some(g).then(|| acc.float[g] / acc.n[g] as f64)),
            )),
            (Kind::Float, _) => Arc::new(Float64Array::from_iter(
                (0..n).map(|g| some(g).then_some(acc.float[g])),
            )),
            (Kind::Exact, AggOp::Avg) => Arc::new(Float64Array::from_iter(
                (0..n).map(|g| some(g).then(|| acc.exact[g] as f64 / acc.n[g] as f64)),
            )),
            (Kind::Exact, op) => {
                let exact = |g: usize| match op {
                    AggOp::Sum => some(g).then_some(acc.exact[g]),
                    _ => acc.best[g],
                };
                let decimal = Decimal128Array::from_iter((0..n).map(exact));
                match (&a.data_type, op) {
                    // Integer sums stay exact until `narrow_sums`.
                    (t, AggOp::Sum) if t.is_integer() => {
                        Arc::new(decimal.with_data_type(EXACT_SUM))
                    }
                    (DataType::Decimal128(..), _) => {
                        Arc::new(decimal.with_data_type(a.data_type.clone()))
                    }
                    (t, _) => arrow::compute::cast(&decimal.with_data_type(EXACT_SUM), t)?,
                }
            }
        };
        fields.push(Field::new(&a.alias, array.data_type().clone(), true));
        arrays.push(array);
    }
    let schema = Arc::new(Schema::new(fields));
    Ok((schema.clone(), RecordBatch::try_new(schema, arrays)?))
}
