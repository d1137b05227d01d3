//! Hot paths over an in-memory state that skip query planning: pages without predicates,
//! primary-key lookups, `eq`/`in`/`is_null` on indexed columns, and counts. Each answers
//! with row ids in storage order, so its rows and their order are exactly what the
//! DataFusion path returns for the same plan (the engine conformance tests check this).

use std::sync::Arc;

use arrow::array::{ArrayRef, RecordBatch, UInt32Array};
use arrow::compute::take;
use arrow::datatypes::{Field, Schema};

use crate::error::QueryError;
use crate::index::{KeyRef, accessor, intersect_sorted, union_sorted};
use crate::plan::{CmpOp, FilterOp, Plan, Shape};
use crate::state::DatasetState;

/// The rows matching a plan's filters, found without a scan.
pub enum Candidates {
    /// Every row (no filters).
    All,
    /// These row ids, ascending.
    Rows(Vec<u32>),
}

impl Candidates {
    pub fn len(&self, state: &DatasetState) -> usize {
        match self {
            Candidates::All => state.rows(),
            Candidates::Rows(rows) => rows.len(),
        }
    }
}

/// Index answers for `plan` on `state`, or `None` if the plan needs the general path
/// (ordering, grouping, distinct, or a filter no index answers).
pub fn candidates(state: &DatasetState, plan: &Plan) -> Option<Candidates> {
    if !matches!(plan.shape, Shape::Rows { .. }) || !plan.order_by.is_empty() {
        return None;
    }
    let mut result: Option<Vec<u32>> = None;
    let mut used = vec![false; plan.filters.len()];

    // The primary key answers `eq` on every key column (or `in` on a one-column key).
    if let Some(index) = &state.key_index {
        let key = &state.primary_key;
        let mut probes: Vec<Vec<&datafusion::common::ScalarValue>> = Vec::new();
        let mut complete = true;
        for &k in key {
            let found = plan.filters.iter().enumerate().find(|(i, f)| {
                !used[*i]
                    && f.column == k
                    && (matches!(f.op, FilterOp::Cmp(CmpOp::Eq, _))
                        || (key.len() == 1 && matches!(f.op, FilterOp::In(_))))
            });
            match found {
                Some((i, f)) => {
                    used[i] = true;
                    probes.push(match &f.op {
                        FilterOp::Cmp(_, v) => vec![v],
                        FilterOp::In(values) => values.iter().collect(),
                        _ => unreachable_probe(),
                    });
                }
                None => {
                    complete = false;
                    break;
                }
            }
        }
        if complete && !key.is_empty() {
            let mut rows = Vec::new();
            // One-column keys may probe several values; composite keys probe exactly one.
            let n = probes.first().map_or(0, Vec::len);
            for p in 0..n {
                let arrays: Vec<ArrayRef> = probes
                    .iter()
                    .map(|values| values[p.min(values.len() - 1)].to_array())
                    .collect::<Result<_, _>>()
                    .ok()?;
                let parts: Option<Vec<KeyRef<'_>>> = arrays
                    .iter()
                    .map(|a| accessor(a.as_ref()).map(|acc| acc(0)))
                    .collect();
                if let Some(row) = index.get(&state.chunks, &parts?) {
                    rows.push(row);
                }
            }
            rows.sort_unstable();
            rows.dedup();
            result = Some(rows);
        } else {
            used.iter_mut().for_each(|u| *u = false);
        }
    }

    for (i, filter) in plan.filters.iter().enumerate() {
        if used[i] {
            continue;
        }
        let index = state.eq_indexes.get(&filter.column)?;
        let values: Vec<&datafusion::common::ScalarValue> = match &filter.op {
            FilterOp::Cmp(CmpOp::Eq, v) => vec![v],
            FilterOp::In(values) => values.iter().collect(),
            FilterOp::IsNull => Vec::new(),
            _ => return None,
        };
        let rows = if values.is_empty() {
            index.rows(&state.chunks, KeyRef::Null).to_vec()
        } else {
            let arrays: Vec<ArrayRef> = values
                .iter()
                .map(|v| v.to_array())
                .collect::<Result<_, _>>()
                .ok()?;
            let mut lists: Vec<&[u32]> = Vec::with_capacity(arrays.len());
            for a in &arrays {
                let probe = accessor(a.as_ref())?(0);
                lists.push(index.rows(&state.chunks, probe));
            }
            if lists.len() == 1 {
                lists[0].to_vec()
            } else {
                union_sorted(&lists)
            }
        };
        result = Some(match result {
            None => rows,
            Some(previous) => intersect_sorted(&previous, &rows),
        });
    }
    Some(match result {
        None => Candidates::All,
        Some(rows) => Candidates::Rows(rows),
    })
}

fn unreachable_probe() -> Vec<&'static datafusion::common::ScalarValue> {
    // Only `eq` and `in` filters are selected above.
    Vec::new()
}

/// The plan's page of `candidates` as record batches of the plan's columns.
pub fn page(
    state: &DatasetState,
    plan: &Plan,
    candidates: &Candidates,
) -> Result<Vec<RecordBatch>, QueryError> {
    let (skip, fetch) = plan.window();
    let total = candidates.len(state) as u64;
    let start = skip.min(total) as usize;
    let end = skip.saturating_add(fetch).min(total) as usize;
    rows(state, plan, candidates, start, end)
}

/// Every candidate (within `limit`), in batches of at most one chunk.
pub fn all(
    state: &DatasetState,
    plan: &Plan,
    candidates: &Candidates,
) -> Result<Vec<RecordBatch>, QueryError> {
    let total = candidates.len(state) as u64;
    let end = plan.limit.map_or(total, |l| l.min(total)) as usize;
    rows(state, plan, candidates, 0, end)
}

fn rows(
    state: &DatasetState,
    plan: &Plan,
    candidates: &Candidates,
    start: usize,
    end: usize,
) -> Result<Vec<RecordBatch>, QueryError> {
    let Shape::Rows { columns } = &plan.shape else {
        return Err(QueryError::Internal("fast path on a non-row plan".into()));
    };
    let schema = Arc::new(Schema::new(
        columns
            .iter()
            .map(|&c| state.mem_schema.field(c).clone())
            .collect::<Vec<Field>>(),
    ));
    let project =
        |batch: &RecordBatch| -> Result<RecordBatch, QueryError> { Ok(batch.project(columns)?) };
    match candidates {
        Candidates::All => state.chunks.slice(start, end).iter().map(project).collect(),
        Candidates::Rows(ids) => {
            let ids = &ids[start.min(ids.len())..end.min(ids.len())];
            let mut out = Vec::new();
            let mut i = 0;
            while i < ids.len() {
                // Ids are ascending: gather each chunk's run with one `take` per column.
                let (chunk, _) = state.chunks.locate(ids[i]);
                let chunk_start = state.chunks.row_id(chunk, 0);
                let mut local = Vec::new();
                while i < ids.len() && state.chunks.locate(ids[i]).0 == chunk {
                    local.push(ids[i] - chunk_start);
                    i += 1;
                }
                let indices = UInt32Array::from(local);
                let batch = &state.chunks.batches()[chunk];
                let arrays = columns
                    .iter()
                    .map(|&c| take(batch.column(c).as_ref(), &indices, None))
                    .collect::<Result<Vec<_>, _>>()?;
                out.push(RecordBatch::try_new(schema.clone(), arrays)?);
            }
            Ok(out)
        }
    }
}

/// The count of matching rows (after `limit`) if indexes answer it.
pub fn count(state: &DatasetState, plan: &Plan) -> Option<u64> {
    let n = candidates(state, plan)?.len(state) as u64;
    Some(plan.limit.map_or(n, |l| l.min(n)))
}
