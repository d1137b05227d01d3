//! Hot paths over an in-memory state that skip query planning: pages without predicates,
//! primary-key lookups, `eq`/`in`/`is_null` on indexed columns, and counts. Each answers
//! with row ids in storage order, so its rows and their order are exactly what the
//! DataFusion path returns for the same plan (the engine conformance tests check this).

use std::borrow::Cow;

use arrow::array::RecordBatch;
use datafusion::common::ScalarValue;

use crate::encode::Selection;
use crate::error::QueryError;
use crate::index::{KeyRef, intersect_sorted, key_of, union_sorted};
use crate::plan::{CmpOp, FilterOp, Plan, Shape};
use crate::state::{DatasetState, RowList};

/// The rows matching a plan's filters, found without a scan.
pub enum Candidates<'a> {
    /// Every live row (no filters).
    All,
    /// These live row ids, ascending.
    Rows(Vec<u32>),
    /// One index list, borrowed, so a page of a long list copies only the page.
    List(RowList<'a>),
}

impl Candidates<'_> {
    pub fn len(&self, state: &DatasetState) -> usize {
        match self {
            Candidates::All => state.rows(),
            Candidates::Rows(rows) => rows.len(),
            Candidates::List(list) => list.live_len(state),
        }
    }

    /// Live row ids, ascending.
    pub fn into_rows(self, state: &DatasetState) -> Vec<u32> {
        match self {
            Candidates::All => state.live_ids().collect(),
            Candidates::Rows(rows) => rows,
            Candidates::List(list) => list.live(state).collect(),
        }
    }
}

/// Which index answers each filter of a plan, decided from the plan and the indexes the
/// state has, without reading them: the route's choice ([`crate::route`]). Then
/// [`Probe::candidates`] reads them.
#[derive(Clone, Debug)]
pub struct Probe {
    /// The filters that pin down the primary key, one per key column in key order.
    key: Option<Vec<usize>>,
    /// The other filters, each answered by its column's equality index.
    eq: Vec<usize>,
}

impl Probe {
    /// The probe of `plan` on `state`, or `None` if the plan needs another path (ordering,
    /// grouping, distinct, or a filter no index answers).
    pub fn of(state: &DatasetState, plan: &Plan) -> Option<Self> {
        if !plan.order_by.is_empty() {
            return None;
        }
        Self::of_filters(state, plan)
    }

    /// As [`Self::of`], whatever the plan's order (the ordered route sorts the candidates).
    pub fn of_filters(state: &DatasetState, plan: &Plan) -> Option<Self> {
        if !matches!(plan.shape, Shape::Rows { .. }) {
            return None;
        }
        let probes = |i: usize| {
            probe_values(&plan.filters[i].op)
                .is_some_and(|values| values.into_iter().all(|v| key_of(v).is_some()))
        };
        // The primary key answers when every key column has an `eq` (or, for a one-column
        // key, an `in`); those filters are then done.
        let key = key_filters(state, plan).filter(|_| state.has_key_index());
        if key.as_ref().is_some_and(|k| !k.iter().all(|&i| probes(i))) {
            return None;
        }
        let mut eq = Vec::new();
        for (i, filter) in plan.filters.iter().enumerate() {
            if key.as_ref().is_some_and(|k| k.contains(&i)) {
                continue;
            }
            if !state.has_eq_index(filter.column)
                || !(matches!(filter.op, FilterOp::IsNull) || probes(i))
            {
                return None;
            }
            eq.push(i);
        }
        Some(Self { key, eq })
    }

    /// Whether answering costs at most about a page of copying: no filters, only
    /// primary-key filters, or one `eq`/`is_null` on an indexed column (no list merging),
    /// with a page of at most [`INLINE_PAGE_ROWS`]. Such requests run where the request was
    /// parsed: the hop to the query runtime would cost more than the work.
    pub fn is_bounded(&self, plan: &Plan) -> bool {
        if plan.page_size > INLINE_PAGE_ROWS {
            return false;
        }
        match (&self.key, self.eq.as_slice()) {
            (None, []) => true,
            (None, &[i]) => matches!(
                plan.filters[i].op,
                FilterOp::Cmp(CmpOp::Eq, _) | FilterOp::IsNull
            ),
            (Some(key), []) => key.iter().all(|&i| match &plan.filters[i].op {
                FilterOp::In(values) => values.len() as u64 <= INLINE_PAGE_ROWS,
                _ => true,
            }),
            _ => false,
        }
    }

    /// The rows matching the plan's filters, read from the indexes.
    pub fn candidates<'s>(&self, state: &'s DatasetState, plan: &Plan) -> Candidates<'s> {
        let mut result: Option<Candidates<'s>> = None;
        let mut narrow = |rows: Candidates<'s>| {
            result = Some(match result.take() {
                None => rows,
                Some(previous) => Candidates::Rows(intersect_sorted(
                    &previous.into_rows(state),
                    &rows.into_rows(state),
                )),
            });
        };
        if let Some(key) = &self.key {
            // `Probe::of` checked that every value is a key.
            let probes: Vec<Vec<&ScalarValue>> = key
                .iter()
                .map(|&i| probe_values(&plan.filters[i].op).unwrap_or_default())
                .collect();
            let mut rows = Vec::new();
            // A composite key has one value per column; a one-column key may have several.
            for p in 0..probes[0].len() {
                let key: Option<Vec<KeyRef<'_>>> = probes
                    .iter()
                    .map(|values| key_of(values[p.min(values.len() - 1)]))
                    .collect();
                rows.extend(key.and_then(|key| state.lookup(&key)));
            }
            rows.sort_unstable();
            rows.dedup();
            narrow(Candidates::Rows(rows));
        }
        for &i in &self.eq {
            let filter = &plan.filters[i];
            let lists: Vec<RowList<'_>> = match &filter.op {
                FilterOp::IsNull => vec![state.eq_rows(filter.column, KeyRef::Null)],
                op => probe_values(op)
                    .unwrap_or_default()
                    .into_iter()
                    .filter_map(key_of)
                    .map(|key| state.eq_rows(filter.column, key))
                    .collect(),
            };
            narrow(match lists.as_slice() {
                [one] => Candidates::List(one.clone()),
                many => {
                    let live: Vec<Vec<u32>> =
                        many.iter().map(|l| l.live(state).collect()).collect();
                    let refs: Vec<&[u32]> = live.iter().map(Vec::as_slice).collect();
                    Candidates::Rows(union_sorted(&refs))
                }
            });
        }
        result.unwrap_or(Candidates::All)
    }
}

/// Largest page answered on the HTTP worker itself (see [`Probe::is_bounded`]).
pub const INLINE_PAGE_ROWS: u64 = 10_000;

/// Indices of the filters that pin down the primary key, one per key column in key order,
/// or `None` if the key is not fully pinned.
fn key_filters(state: &DatasetState, plan: &Plan) -> Option<Vec<usize>> {
    let key = &state.primary_key;
    if key.is_empty() {
        return None;
    }
    key.iter()
        .map(|&column| {
            plan.filters.iter().position(|f| {
                f.column == column
                    && match &f.op {
                        FilterOp::Cmp(CmpOp::Eq, _) => true,
                        FilterOp::In(_) => key.len() == 1,
                        _ => false,
                    }
            })
        })
        .collect()
}

/// The values an `eq` or `in` filter looks up.
fn probe_values(op: &FilterOp) -> Option<Vec<&ScalarValue>> {
    match op {
        FilterOp::Cmp(CmpOp::Eq, value) => Some(vec![value]),
        FilterOp::In(values) => Some(values.iter().collect()),
        _ => None,
    }
}

/// The plan's page of `candidates`: the selected rows of the resident chunks, projected.
pub fn page(
    state: &DatasetState,
    plan: &Plan,
    candidates: &Candidates,
) -> Result<Vec<Selection>, QueryError> {
    // No total is needed: with deleted rows, counting a long list would cost more than the
    // page. Each kind of candidates clamps the window itself.
    let (skip, fetch) = plan.window();
    let start = usize::try_from(skip).unwrap_or(usize::MAX);
    let end = usize::try_from(skip.saturating_add(fetch)).unwrap_or(usize::MAX);
    rows(state, plan, candidates, start, end)
}

/// Every candidate (within `limit`), in batches of at most one chunk.
pub fn all(
    state: &DatasetState,
    plan: &Plan,
    candidates: &Candidates,
) -> Result<Vec<RecordBatch>, QueryError> {
    let end = plan
        .limit
        .map_or(usize::MAX, |l| usize::try_from(l).unwrap_or(usize::MAX));
    rows(state, plan, candidates, 0, end)?
        .into_iter()
        .map(Selection::into_batch)
        .collect()
}

/// Shortest contiguous run of rows that [`rows`] answers with a slice instead of ids.
const SLICE_MIN_ROWS: usize = 64;

/// The candidates in positions `[start, end)` (clamped to how many there are), one
/// selection per chunk they fall in.
fn rows(
    state: &DatasetState,
    plan: &Plan,
    candidates: &Candidates,
    start: usize,
    end: usize,
) -> Result<Vec<Selection>, QueryError> {
    let Shape::Rows { columns } = &plan.shape else {
        return Err(QueryError::Internal("fast path on a non-row plan".into()));
    };
    // Projecting builds a new schema: skipped when every column is asked for, in order.
    let every_column = plan.rows_of_every_column(state.mem_schema.fields().len());
    let project = |batch: &RecordBatch| -> Result<RecordBatch, QueryError> {
        Ok(if every_column {
            batch.clone()
        } else {
            batch.project(columns)?
        })
    };
    let ids: Cow<'_, [u32]> = match candidates {
        Candidates::All if state.deleted().is_none() => {
            let total = state.rows();
            return state
                .chunks
                .slice(start.min(total), end.min(total))
                .iter()
                .map(|b| Ok(Selection::all(project(b)?)))
                .collect();
        }
        Candidates::All => Cow::Owned(
            state
                .live_ids()
                .skip(start)
                .take(end.saturating_sub(start))
                .collect(),
        ),
        Candidates::Rows(ids) => Cow::Borrowed(&ids[start.min(ids.len())..end.min(ids.len())]),
        Candidates::List(list) => Cow::Owned(list.live_window(state, start, end)),
    };
    let mut out = Vec::new();
    let mut i = 0;
    while i < ids.len() {
        // Ids are ascending: each chunk's run becomes one selection.
        let (chunk, _) = state.chunks.locate(ids[i]);
        let chunk_start = state.chunks.row_id(chunk, 0);
        let mut local = Vec::new();
        while i < ids.len() && state.chunks.locate(ids[i]).0 == chunk {
            local.push(ids[i] - chunk_start);
            i += 1;
        }
        let batch = project(&state.chunks.batches()[chunk])?;
        // A long contiguous run (a page between deletions) is a zero-copy slice. A short one
        // (a key lookup's row) keeps its ids: slicing makes a new array per column, which
        // costs more than the answer.
        let (first, last) = (local[0] as usize, local[local.len() - 1] as usize);
        out.push(
            if last - first + 1 == local.len() && local.len() >= SLICE_MIN_ROWS {
                Selection::all(batch.slice(first, local.len()))
            } else {
                Selection {
                    batch,
                    ids: Some(local),
                }
            },
        );
    }
    Ok(out)
}

/// The count of matching rows (after `limit`): O(1) without filters or with one
/// `eq`/`is_null` on an indexed column (its list is borrowed, not copied), else the size of
/// the merged candidate list.
pub fn count(state: &DatasetState, plan: &Plan, candidates: &Candidates) -> u64 {
    let n = candidates.len(state) as u64;
    plan.limit.map_or(n, |l| l.min(n))
}
