//! Ordered pages over an in-memory state without planning ([`crate::route::Route::Ordered`]):
//! the candidates (every live row, or what the indexes find) are ordered by a partial sort
//! that keeps only the first `end` rows of each chunk, then of their union. A top-50 of a
//! million rows compares each row a few times and copies 50.
//!
//! The order is the engine contract's ([`crate::engine`]): the `order_by` keys (ascending
//! with nulls last, descending with nulls first), then the primary key ascending, which
//! makes it total — this route only runs on datasets with a primary key, so every path
//! answers the same rows in the same order (the differential test holds it). Comparisons are
//! arrow's (`lexsort_to_indices`), as DataFusion's sort uses.
//!
//! Dictionary-encoded columns (the state's low-cardinality strings) are decoded on the few
//! rows taken from each chunk before anything is joined across chunks: chunks have their own
//! dictionaries, and joining them could overflow the narrow keys.

use std::cmp::Ordering;
use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, ArrowPrimitiveType, PrimitiveArray, RecordBatch, UInt32Array,
    downcast_primitive_array,
};
use arrow::compute::{SortColumn, SortOptions, cast, interleave, lexsort_to_indices, take};
use arrow::datatypes::ArrowNativeTypeOp;
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};

use crate::error::QueryError;
use crate::fast::Candidates;
use crate::plan::{Plan, Shape};
use crate::state::DatasetState;

/// Largest `page × page_size` (or `limit`) this route orders; deeper windows go to the
/// engine, which sorts everything anyway.
pub const MAX_ORDERED_WINDOW: u64 = 100_000;

/// Whether `plan`'s order can be taken here: row plans with `order_by` on a dataset with a
/// primary key, every sort column of a type arrow compares, and a bounded window.
pub fn applies(state: &DatasetState, plan: &Plan) -> bool {
    let (skip, fetch) = plan.window();
    matches!(plan.shape, Shape::Rows { .. })
        && !plan.order_by.is_empty()
        && !state.primary_key.is_empty()
        && skip.saturating_add(fetch) <= MAX_ORDERED_WINDOW
        && sort_keys(state, plan).is_some_and(|keys| {
            keys.iter()
                .all(|k| sortable(state.mem_schema.field(k.column).data_type()))
        })
}

/// One sort key, resolved to a column of the state.
struct Key {
    column: usize,
    options: SortOptions,
}

/// The plan's `order_by`, then the primary-key columns not in it (ascending).
fn sort_keys(state: &DatasetState, plan: &Plan) -> Option<Vec<Key>> {
    let schema = &state.mem_schema;
    let mut keys = Vec::new();
    for key in &plan.order_by {
        keys.push(Key {
            column: schema.index_of(&key.name).ok()?,
            options: SortOptions {
                descending: key.descending,
                nulls_first: key.descending,
            },
        });
    }
    for &column in &state.primary_key {
        if !keys.iter().any(|k| k.column == column) {
            keys.push(Key {
                column,
                options: SortOptions {
                    descending: false,
                    nulls_first: false,
                },
            });
        }
    }
    Some(keys)
}

fn sortable(data_type: &DataType) -> bool {
    match data_type {
        DataType::Dictionary(_, values) => sortable(values),
        t => {
            t.is_primitive()
                || matches!(
                    t,
                    DataType::Boolean
                        | DataType::Utf8
                        | DataType::LargeUtf8
                        | DataType::Utf8View
                        | DataType::Binary
                        | DataType::LargeBinary
                        | DataType::BinaryView
                        | DataType::FixedSizeBinary(_)
                )
        }
    }
}

/// The plan's page of `candidates` in its order, as one batch (dictionaries decoded).
pub fn page(
    state: &DatasetState,
    plan: &Plan,
    candidates: Candidates<'_>,
) -> Result<RecordBatch, QueryError> {
    let (skip, fetch) = plan.window();
    let start = usize::try_from(skip).unwrap_or(usize::MAX);
    let end = usize::try_from(skip.saturating_add(fetch)).unwrap_or(usize::MAX);
    let positions = ordered(state, plan, candidates, end)?;
    let window = &positions[start.min(positions.len())..];
    rows_at(state, plan, window)
}

/// Every candidate (within `limit`) in the plan's order, in batches of at most
/// [`STREAM_BATCH_ROWS`] rows (dictionaries decoded).
pub fn all(
    state: &DatasetState,
    plan: &Plan,
    candidates: Candidates<'_>,
) -> Result<Vec<RecordBatch>, QueryError> {
    let end = plan
        .limit
        .map_or(usize::MAX, |l| usize::try_from(l).unwrap_or(usize::MAX));
    let positions = ordered(state, plan, candidates, end)?;
    positions
        .chunks(STREAM_BATCH_ROWS)
        .map(|part| rows_at(state, plan, part))
        .collect()
}

/// Rows per batch of an ordered stream.
const STREAM_BATCH_ROWS: usize = 8192;

/// The first `end` candidates in the plan's order, as (chunk, row) positions.
fn ordered(
    state: &DatasetState,
    plan: &Plan,
    candidates: Candidates<'_>,
    end: usize,
) -> Result<Vec<(usize, usize)>, QueryError> {
    let keys = sort_keys(state, plan)
        .ok_or_else(|| QueryError::Internal("an ordered route without its columns".into()))?;
    if end == 0 {
        return Ok(Vec::new());
    }
    let every_row = matches!(candidates, Candidates::All) && state.deleted().is_none();
    let ids = if every_row {
        Vec::new()
    } else {
        candidates.into_rows(state)
    };
    // Each chunk's first `end` rows in order: no row past them can be in the answer.
    let batches = state.chunks.batches();
    // Every row: first drop the rows whose first key cannot make the cut.
    let kept = if every_row {
        let first: Vec<&dyn Array> = batches
            .iter()
            .map(|b| b.column(keys[0].column).as_ref())
            .collect();
        prefilter(&first, keys[0].options, end)
    } else {
        None
    };
    let mut winners: Vec<(usize, UInt32Array)> = Vec::new();
    let mut next = 0;
    for (chunk, batch) in batches.iter().enumerate() {
        let local: Option<UInt32Array> = if every_row {
            kept.as_ref().map(|k| k[chunk].clone())
        } else {
            let first = state.chunks.row_id(chunk, 0);
            let last = first + batch.num_rows() as u32;
            let from = next;
            while next < ids.len() && ids[next] < last {
                next += 1;
            }
            if from == next {
                continue;
            }
            Some(ids[from..next].iter().map(|id| id - first).collect())
        };
        let rows = local.as_ref().map_or(batch.num_rows(), UInt32Array::len);
        if rows == 0 {
            continue;
        }
        let columns = keys
            .iter()
            .map(|k| {
                let column = batch.column(k.column);
                let values = match &local {
                    Some(local) => take(column.as_ref(), local, None)?,
                    None => column.clone(),
                };
                Ok(SortColumn {
                    values,
                    options: Some(k.options),
                })
            })
            .collect::<Result<Vec<_>, arrow::error::ArrowError>>()?;
        let order = lexsort_to_indices(&columns, Some(end.min(rows)))?;
        let top = match &local {
            Some(local) => take(local, &order, None)?
                .as_any()
                .downcast_ref::<UInt32Array>()
                .cloned()
                .ok_or_else(|| QueryError::Internal("row ids are not u32".into()))?,
            None => order,
        };
        winners.push((chunk, top));
    }
    if winners.is_empty() {
        // No candidate row passed the filters (`interleave` refuses no arrays at all).
        return Ok(Vec::new());
    }
    // The winners of every chunk, ordered together.
    let taken: Vec<RecordBatch> = winners
        .iter()
        .map(|(chunk, rows)| {
            let columns: Vec<usize> = keys.iter().map(|k| k.column).collect();
            let batch = batches[*chunk].project(&columns)?;
            decoded(&batch, rows, &decoded_schema(&batch.schema()))
        })
        .collect::<Result<_, QueryError>>()?;
    let positions: Vec<(usize, usize)> = taken
        .iter()
        .enumerate()
        .flat_map(|(i, batch)| (0..batch.num_rows()).map(move |row| (i, row)))
        .collect();
    let columns = keys
        .iter()
        .enumerate()
        .map(|(i, k)| {
            let arrays: Vec<&dyn arrow::array::Array> =
                taken.iter().map(|b| b.column(i).as_ref()).collect();
            Ok(SortColumn {
                values: interleave(&arrays, &positions)?,
                options: Some(k.options),
            })
        })
        .collect::<Result<Vec<_>, arrow::error::ArrowError>>()?;
    let order = lexsort_to_indices(&columns, Some(end.min(positions.len())))?;
    Ok(order
        .values()
        .iter()
        .map(|&i| {
            let (winner, row) = positions[i as usize];
            let (chunk, rows) = &winners[winner];
            (*chunk, rows.value(row) as usize)
        })
        .collect())
}

/// Largest `end` a [`prefilter`] prunes for.
const PREFILTER_MAX_ROWS: usize = 10_000;

/// Rows per block of a [`prefilter`], at most.
const PREFILTER_BLOCK: usize = 64;

/// Per chunk, the rows of `columns` (one column, chunk by chunk) that can be among its first
/// `end` in `options`' order: those whose value is at least as good as a bound no better
/// than the `end`-th best value, and the nulls when nulls come first. `None` (every row)
/// when the column is not primitive, `end` is large next to the column, or too few rows have
/// a value.
///
/// The bound: cut the column into at least `16 × end` blocks (at most
/// [`PREFILTER_BLOCK`] rows, never across chunks) and take the best value of each; the
/// `end`-th best of those is a value that `end` rows (one per block) reach, so every row of
/// the first `end` reaches it too. One pass over every value, one comparison each; the rows
/// are then read only in the blocks whose best reaches the bound. The bound is the whole
/// column's, not each chunk's: a top-50 of six million random values keeps about fifty rows,
/// of six million sorted ones (a key in storage order) about fifty blocks' worth.
fn prefilter(columns: &[&dyn Array], options: SortOptions, end: usize) -> Option<Vec<UInt32Array>> {
    let rows: usize = columns.iter().map(|c| c.len()).sum();
    if end == 0 || end > PREFILTER_MAX_ROWS || rows < end.saturating_mul(16) {
        return None;
    }
    let first = *columns.first()?;
    downcast_primitive_array!(
        first => prefilter_primitive(&like(first, columns)?, options, end),
        _ => None
    )
}

/// `columns` as primitive arrays of `first`'s type (`None` if one is not).
fn like<'a, T: ArrowPrimitiveType>(
    _first: &PrimitiveArray<T>,
    columns: &[&'a dyn Array],
) -> Option<Vec<&'a PrimitiveArray<T>>> {
    columns
        .iter()
        .map(|c| c.as_any().downcast_ref::<PrimitiveArray<T>>())
        .collect()
}

/// Rows from which [`prefilter`]'s pass is split between the cores: a million values take
/// milliseconds, a thread starts in tens of microseconds.
const PARALLEL_MIN_ROWS: usize = 1_000_000;

/// `f` of each item, in order, computed in up to `parts` contiguous runs of items on as many
/// threads (the caller's and scoped ones).
fn in_parts<I: Sync, R: Send>(items: &[I], parts: usize, f: impl Fn(&I) -> R + Sync) -> Vec<R> {
    let per_part = items.len().div_ceil(parts.max(1)).max(1);
    if per_part >= items.len() {
        return items.iter().map(&f).collect();
    }
    let f = &f;
    std::thread::scope(|scope| {
        let mut runs = items.chunks(per_part);
        let first = runs.next().unwrap_or_default();
        let others: Vec<_> = runs
            .map(|run| scope.spawn(move || run.iter().map(f).collect::<Vec<R>>()))
            .collect();
        let mut all: Vec<R> = first.iter().map(f).collect();
        for other in others {
            match other.join() {
                Ok(results) => all.extend(results),
                // A panic in `f` is the caller's: raise it here as it would have been.
                Err(panic) => std::panic::resume_unwind(panic),
            }
        }
        all
    })
}

/// [`prefilter`] of one primitive type.
fn prefilter_primitive<T: ArrowPrimitiveType>(
    columns: &[&PrimitiveArray<T>],
    options: SortOptions,
    end: usize,
) -> Option<Vec<UInt32Array>> {
    // `better(a, b)`: a sorts before b (both non-null), by arrow's total order.
    let better = |a: T::Native, b: T::Native| {
        let order = a.compare(b);
        if options.descending {
            order == Ordering::Greater
        } else {
            order == Ordering::Less
        }
    };
    let rows: usize = columns.iter().map(|c| c.len()).sum();
    let values_count: usize = columns.iter().map(|c| c.len() - c.null_count()).sum();
    if values_count < end {
        return None; // nulls may make the cut when they come last: no pruning
    }
    let block = (rows / end.saturating_mul(16)).clamp(1, PREFILTER_BLOCK);
    // Per chunk, the best value of each block (`None`: a block of nulls).
    let bests_of = |column: &&PrimitiveArray<T>| -> Vec<Option<T::Native>> {
        let values = column.values();
        let nulls = column.nulls().filter(|n| n.null_count() > 0);
        (0..column.len())
            .step_by(block)
            .map(|start| {
                let stop = (start + block).min(column.len());
                let pick = |best: Option<T::Native>, v: T::Native| match best {
                    Some(b) if !better(v, b) => Some(b),
                    _ => Some(v),
                };
                match nulls {
                    None => values[start..stop].iter().fold(None, |b, &v| pick(b, v)),
                    Some(n) => (start..stop)
                        .filter(|&i| n.is_valid(i))
                        .fold(None, |b, i| pick(b, values[i])),
                }
            })
            .collect()
    };
    // The pass over every value is most of an ordered page's time: on a large table the
    // chunks are split between the cores.
    let parts = if rows >= PARALLEL_MIN_ROWS {
        crate::cores()
    } else {
        1
    };
    let bests: Vec<Vec<Option<T::Native>>> = in_parts(columns, parts, bests_of);
    let mut all: Vec<T::Native> = bests.iter().flatten().flatten().copied().collect();
    if all.len() < end {
        return None;
    }
    let rank = |a: &T::Native, b: &T::Native| {
        if better(*a, *b) {
            Ordering::Less
        } else if better(*b, *a) {
            Ordering::Greater
        } else {
            Ordering::Equal
        }
    };
    let (_, &mut cut, _) = all.select_nth_unstable_by(end - 1, rank);
    let kept = columns
        .iter()
        .zip(&bests)
        .map(|(column, bests)| {
            let values = column.values();
            let mut keep = Vec::new();
            for (b, best) in bests.iter().enumerate() {
                let start = b * block;
                let stop = (start + block).min(column.len());
                // Only blocks with nulls can hold rows that sort first as nulls.
                let null_rows = options.nulls_first && column.null_count() > 0;
                if !null_rows && best.is_none_or(|v| better(cut, v)) {
                    continue; // no row of the block reaches the bound
                }
                keep.extend(
                    (start..stop)
                        .filter(|&i| {
                            if column.is_valid(i) {
                                !better(cut, values[i])
                            } else {
                                options.nulls_first
                            }
                        })
                        .map(|i| i as u32),
                );
            }
            UInt32Array::from(keep)
        })
        .collect();
    Some(kept)
}

/// The plan's columns of the rows at `positions`, in that order, as one batch.
fn rows_at(
    state: &DatasetState,
    plan: &Plan,
    positions: &[(usize, usize)],
) -> Result<RecordBatch, QueryError> {
    let Shape::Rows { columns } = &plan.shape else {
        return Err(QueryError::Internal(
            "an ordered route on a non-row plan".into(),
        ));
    };
    let batches = state.chunks.batches();
    // Per chunk: its rows, taken and decoded; then one interleave in the answer's order.
    let mut slot_of_chunk = vec![usize::MAX; batches.len()];
    let mut per_chunk: Vec<Vec<u32>> = Vec::new();
    let mut order = Vec::with_capacity(positions.len());
    for &(chunk, row) in positions {
        if slot_of_chunk[chunk] == usize::MAX {
            slot_of_chunk[chunk] = per_chunk.len();
            per_chunk.push(Vec::new());
        }
        let slot = slot_of_chunk[chunk];
        order.push((slot, per_chunk[slot].len()));
        per_chunk[slot].push(row as u32);
    }
    let chunk_of_slot: Vec<usize> = {
        let mut v = vec![0; per_chunk.len()];
        for (chunk, &slot) in slot_of_chunk.iter().enumerate() {
            if slot != usize::MAX {
                v[slot] = chunk;
            }
        }
        v
    };
    let schema = schema(state, plan)?;
    let taken: Vec<RecordBatch> = per_chunk
        .into_iter()
        .enumerate()
        .map(|(slot, rows)| {
            let batch = batches[chunk_of_slot[slot]].project(columns)?;
            decoded(&batch, &UInt32Array::from(rows), &schema)
        })
        .collect::<Result<_, QueryError>>()?;
    if taken.is_empty() {
        return Ok(RecordBatch::new_empty(schema));
    }
    let arrays = (0..schema.fields().len())
        .map(|i| {
            let parts: Vec<&dyn arrow::array::Array> =
                taken.iter().map(|b| b.column(i).as_ref()).collect();
            interleave(&parts, &order)
        })
        .collect::<Result<Vec<ArrayRef>, _>>()?;
    Ok(RecordBatch::try_new(schema, arrays)?)
}

/// The schema of the route's answers: the plan's columns in their logical types (the
/// dataset's, as every path answers them).
pub fn schema(state: &DatasetState, plan: &Plan) -> Result<SchemaRef, QueryError> {
    let Shape::Rows { columns } = &plan.shape else {
        return Err(QueryError::Internal(
            "an ordered route on a non-row plan".into(),
        ));
    };
    Ok(Arc::new(state.schema.project(columns)?))
}

/// `batch`'s `rows` in `schema`, whose types are `batch`'s with dictionary columns decoded
/// (to their logical types, or to their values' types).
fn decoded(
    batch: &RecordBatch,
    rows: &UInt32Array,
    schema: &SchemaRef,
) -> Result<RecordBatch, QueryError> {
    let columns = batch
        .columns()
        .iter()
        .zip(schema.fields())
        .map(|(column, field)| {
            let taken = take(column.as_ref(), rows, None)?;
            match taken.data_type() {
                DataType::Dictionary(..) => cast(&taken, field.data_type()),
                _ => Ok(taken),
            }
        })
        .collect::<Result<Vec<ArrayRef>, _>>()?;
    Ok(RecordBatch::try_new(schema.clone(), columns)?)
}

/// `schema` with dictionary types replaced by their value types.
fn decoded_schema(schema: &Schema) -> SchemaRef {
    let fields: Vec<Field> = schema
        .fields()
        .iter()
        .map(|f| match f.data_type() {
            DataType::Dictionary(_, values) => f.as_ref().clone().with_data_type(*values.clone()),
            _ => f.as_ref().clone(),
        })
        .collect();
    Arc::new(Schema::new_with_metadata(fields, schema.metadata().clone()))
}

#[cfg(test)]
mod tests {
    use arrow::array::{Float64Array, Int64Array};

    use super::*;

    /// Results come back in the items' order, whatever the split.
    #[test]
    fn parts_keep_the_items_order() {
        let items: Vec<u64> = (0..37).collect();
        for parts in [0, 1, 2, 3, 8, 37, 100] {
            let squares = in_parts(&items, parts, |i| i * i);
            assert_eq!(squares, items.iter().map(|i| i * i).collect::<Vec<_>>());
        }
        assert!(in_parts(&[] as &[u64], 4, |i| *i).is_empty());
    }

    /// The first `end` of `column` in `options`' order, row ids breaking ties: by a full
    /// sort, and through the prefilter.
    fn first<A: Array + Clone + 'static>(
        column: &A,
        options: SortOptions,
        end: usize,
    ) -> [Vec<u32>; 2] {
        let ids = UInt32Array::from((0..column.len() as u32).collect::<Vec<_>>());
        let sort = |rows: &UInt32Array| -> Vec<u32> {
            let values = take(column, rows, None).unwrap();
            let row_ids = take(&ids, rows, None).unwrap();
            let columns = [
                SortColumn {
                    values,
                    options: Some(options),
                },
                SortColumn {
                    values: row_ids.clone(),
                    options: None,
                },
            ];
            let order = lexsort_to_indices(&columns, Some(end.min(rows.len()))).unwrap();
            let sorted = take(row_ids.as_ref(), &order, None).unwrap();
            sorted
                .as_any()
                .downcast_ref::<UInt32Array>()
                .unwrap()
                .values()
                .to_vec()
        };
        [
            sort(&ids),
            sort(&kept_rows(column, options, end).unwrap_or_else(|| ids.clone())),
        ]
    }

    /// The rows [`prefilter`] keeps of `column` cut into chunks of 700 rows, as row ids.
    fn kept_rows(column: &dyn Array, options: SortOptions, end: usize) -> Option<UInt32Array> {
        let starts: Vec<usize> = (0..column.len()).step_by(700).collect();
        let chunks: Vec<ArrayRef> = starts
            .iter()
            .map(|&s| column.slice(s, 700.min(column.len() - s)))
            .collect();
        let chunks: Vec<&dyn Array> = chunks.iter().map(|c| c.as_ref()).collect();
        let kept = prefilter(&chunks, options, end)?;
        Some(
            kept.iter()
                .zip(&starts)
                .flat_map(|(rows, &start)| rows.values().iter().map(move |r| r + start as u32))
                .collect(),
        )
    }

    #[test]
    fn the_prefilter_keeps_every_row_that_can_make_the_cut() {
        // Ties, nulls and NaN, in every order, at cuts that fall inside runs of ties.
        let ints: Int64Array = (0..5_000)
            .map(|i: i64| (i % 7 != 0).then_some((i * 7919) % 113))
            .collect();
        let floats: Float64Array = (0..5_000)
            .map(|i: i64| match i % 11 {
                0 => None,
                1 => Some(f64::NAN),
                2 => Some(-0.0),
                3 => Some(0.0),
                _ => Some(((i * 31) % 97) as f64 / 3.0),
            })
            .collect();
        for descending in [false, true] {
            let options = SortOptions {
                descending,
                nulls_first: descending,
            };
            for end in [1, 7, 50, 333, 1_000] {
                let [full, pruned] = first(&ints, options, end);
                assert_eq!(full, pruned, "ints, descending {descending}, end {end}");
                let [full, pruned] = first(&floats, options, end);
                assert_eq!(full, pruned, "floats, descending {descending}, end {end}");
            }
        }
        // It prunes, sorted data included: a top 10 of 100 000 ascending values keeps one
        // block's worth per block of the bound (blocks of 64 rows), not 100 000 or a cut per
        // chunk.
        let distinct = Int64Array::from((0..100_000).collect::<Vec<i64>>());
        let options = SortOptions {
            descending: true,
            nulls_first: true,
        };
        let kept = kept_rows(&distinct, options, 10).unwrap();
        assert!(kept.len() <= 10 * 64, "{}", kept.len());
        let [full, pruned] = first(&distinct, options, 10);
        assert_eq!(full, pruned);
        // Too few values besides nulls that come last: no pruning.
        let sparse: Int64Array = (0..100).map(|i| (i < 5).then_some(i)).collect();
        let ascending = SortOptions {
            descending: false,
            nulls_first: false,
        };
        assert!(kept_rows(&sparse, ascending, 10).is_none());
    }
}
