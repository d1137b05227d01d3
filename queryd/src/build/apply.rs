//! Read-time merge of deltas (`docs/architecture.md`, "The path of a write"): a version with deltas is its base layer
//! plus an [`Overlay`] — the rows deltas wrote, as segments appended one per applied batch of
//! deltas, each with its own indexes — and a bitmap of the rows (base or overlay) that a
//! newer delta replaced or deleted.
//!
//! Applying a new version copies only what its deltas touch: the base layer and the older
//! segments are shared by `Arc`, the bitmap copies only the 64Ki-row blocks it changes, and
//! the new segment holds just the new rows. Trailing segments are merged when the newest is
//! no smaller than half the one before it (dropping their deleted rows), so there are
//! O(log n) segments and each row is copied O(log n) times over its life in the overlay.
//!
//! Storage order with deltas: untouched base rows in base order, then the surviving delta
//! rows in the order they were committed — by sequence number, and by key within one
//! sequence (`strata_shared::merge::materialize` defines the same). Which entry of a key wins
//! is decided by `strata_shared::merge::supersedes`, the rule every reader and the compactor
//! share.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, BooleanArray, RecordBatch};
use arrow::compute::{cast, concat_batches, filter_record_batch};
use arrow::datatypes::{DataType, SchemaRef};
use strata_shared::manifest::{DeltaFile, Manifest};

use crate::chunks::{self, Chunks};
use crate::deltas::{LoadedDelta, combine};
use crate::error::QueryError;
use crate::index::{KeyRef, accessor};
use crate::state::{DatasetState, Deleted, Layer, Overlay, Segment};

/// The deltas of `manifest` that `state` has not applied, if `state` can be brought to
/// `manifest` by applying them (same base files, and the deltas it applied are still the
/// manifest's first ones). `None`: rebuild from the files.
pub fn pending<'m>(state: &DatasetState, manifest: &'m Manifest) -> Option<&'m [DeltaFile]> {
    let same_base = manifest.base_files.len() == state.base_files.len()
        && manifest
            .base_files
            .iter()
            .zip(state.base_files.iter())
            .all(|(f, p)| &f.path == p);
    let applied = state.overlay.as_ref().map_or(&[][..], |o| &o.applied[..]);
    let prefix = manifest.deltas.get(..applied.len())?;
    (same_base
        && manifest.version >= state.version
        && prefix.iter().zip(applied).all(|(d, p)| &d.path == p))
    .then(|| &manifest.deltas[applied.len()..])
}

/// `state` with `deltas` (a manifest's next delta files, ascending seq) applied: the state
/// of `version`.
pub fn apply(
    state: &DatasetState,
    version: u64,
    deltas: Vec<LoadedDelta>,
) -> Result<DatasetState, QueryError> {
    let key = &state.primary_key;
    let previous = state.overlay.as_ref();
    let mut applied = previous.map_or_else(Vec::new, |o| o.applied.clone());
    applied.extend(deltas.iter().map(|d| d.path.clone()));
    let mut segments = previous.map_or_else(Vec::new, |o| o.segments.clone());
    let mut deleted = previous.map(|o| o.deleted.clone()).unwrap_or_default();
    if !deltas.is_empty() {
        if state.base.key_index.is_none() {
            return Err(QueryError::Internal(format!(
                "dataset version {version} has deltas but its key cannot be indexed"
            )));
        }
        let combined = combine(&state.schema, key, &deltas)?;
        // Every key a delta names leaves wherever it lives now; upserts come back in the new
        // segment.
        let readers = key
            .iter()
            .map(|&c| accessor(combined.rows.column(c).as_ref()))
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| QueryError::Internal("key column is not indexable".into()))?;
        let mut probe: Vec<KeyRef<'_>> = Vec::with_capacity(key.len());
        for r in 0..combined.rows.num_rows() {
            probe.clear();
            probe.extend(readers.iter().map(|read| read(r)));
            if let Some(id) = state.base.get(&probe) {
                deleted.insert(id);
            }
            for segment in &segments {
                if let Some(id) = segment.layer.get(&probe) {
                    deleted.insert(segment.offset + id);
                }
            }
        }
        let end = segments
            .last()
            .map_or(state.base.rows(), |s| s.offset as usize + s.layer.rows());
        let offset = u32::try_from(end)
            .map_err(|_| QueryError::TooLarge("a dataset holds at most 2^32-1 rows".into()))?;
        let upserts = combined.upserts()?;
        if upserts.num_rows() > 0 {
            segments.push(Segment {
                layer: Arc::new(Layer::build(
                    Chunks::new(encode_like(&state.mem_schema, &upserts)?)?,
                    key,
                    &overlay_eq_columns(state),
                )),
                offset,
            });
            merge_trailing(state, &mut segments, &mut deleted)?;
        }
    }
    let chunks = Chunks::new(
        state
            .base
            .chunks
            .batches()
            .iter()
            .chain(segments.iter().flat_map(|s| s.layer.chunks.batches()))
            .cloned()
            .collect(),
    )?;
    let bytes = state.base.bytes
        + segments.iter().map(|s| s.layer.bytes).sum::<usize>()
        + deleted.memory_bytes();
    Ok(DatasetState {
        version,
        schema: state.schema.clone(),
        mem_schema: state.mem_schema.clone(),
        primary_key: key.clone(),
        base: state.base.clone(),
        base_files: state.base_files.clone(),
        overlay: Some(Overlay {
            segments,
            deleted,
            applied,
        }),
        chunks,
        bytes,
    })
}

/// Merges trailing segments while the newest is at least half the size of the one before
/// it: their live rows, concatenated in order (so storage order is kept), become one segment.
/// Only the tail changes, so no other row id moves.
fn merge_trailing(
    state: &DatasetState,
    segments: &mut Vec<Segment>,
    deleted: &mut Deleted,
) -> Result<(), QueryError> {
    // Sizes count deleted rows too: cheap, and close enough for the shape of the tiers.
    let mut from = segments.len() - 1;
    let mut size = segments[from].layer.rows();
    while from > 0 {
        let before = segments[from - 1].layer.rows();
        if before > 2 * size {
            break;
        }
        from -= 1;
        size += before;
    }
    if from == segments.len() - 1 {
        return Ok(());
    }
    let mut parts = Vec::new();
    for segment in &segments[from..] {
        let mut start = segment.offset;
        for batch in segment.layer.chunks.batches() {
            let keep: BooleanArray = (0..batch.num_rows() as u32)
                .map(|r| Some(!deleted.contains(start + r)))
                .collect();
            parts.push(filter_record_batch(batch, &keep)?);
            start += batch.num_rows() as u32;
        }
    }
    let offset = segments[from].offset;
    // The parts share the in-memory schema, so they usually concatenate as they are (arrow
    // merges their dictionaries). Only where a narrow dictionary key would overflow do they
    // go through plain strings, cut into pieces whose dictionaries fit.
    let merged = match concat_batches(&state.mem_schema, &parts) {
        Ok(merged) => vec![merged],
        Err(_) => encode_like(&state.mem_schema, &concat_plain(&state.mem_schema, &parts)?)?,
    };
    deleted.clear_from(offset);
    segments.truncate(from);
    segments.push(Segment {
        layer: Arc::new(Layer::build(
            Chunks::new(merged)?,
            &state.primary_key,
            &overlay_eq_columns(state),
        )),
        offset,
    });
    Ok(())
}

/// The overlay indexes the same columns as the base, with no distinct-value cap (it is
/// small, and its lists must exist wherever the base's do).
fn overlay_eq_columns(state: &DatasetState) -> Vec<(usize, usize)> {
    state
        .base
        .eq_indexes
        .keys()
        .map(|&c| (c, usize::MAX))
        .collect()
}

/// Concatenates batches after casting each to `schema` (dictionary key widths may differ).
fn concat_plain(schema: &SchemaRef, parts: &[RecordBatch]) -> Result<RecordBatch, QueryError> {
    let plain = Arc::new(arrow::datatypes::Schema::new(
        schema
            .fields()
            .iter()
            .map(|f| {
                let t = match f.data_type() {
                    DataType::Dictionary(_, value) => value.as_ref().clone(),
                    other => other.clone(),
                };
                f.as_ref().clone().with_data_type(t).with_nullable(true)
            })
            .collect::<Vec<_>>(),
    ));
    let parts = parts
        .iter()
        .map(|p| chunks::to_schema(p, &plain))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(concat_batches(&plain, &parts)?)
}

/// `batch` in the in-memory schema, split where a dictionary column would hold more
/// distinct values than its key type can number (the base chose narrow keys).
fn encode_like(
    mem_schema: &SchemaRef,
    batch: &RecordBatch,
) -> Result<Vec<RecordBatch>, QueryError> {
    // Usually the values fit the keys: one cast, no counting.
    if let Ok(whole) = chunks::to_schema(batch, mem_schema) {
        return Ok(vec![whole]);
    }
    let limits: Vec<(usize, usize)> = mem_schema
        .fields()
        .iter()
        .enumerate()
        .filter_map(|(i, f)| match f.data_type() {
            DataType::Dictionary(k, _) => Some((
                i,
                match k.as_ref() {
                    DataType::Int8 => i8::MAX as usize,
                    DataType::Int16 => i16::MAX as usize,
                    _ => i32::MAX as usize,
                },
            )),
            _ => None,
        })
        .collect();
    // Piece boundaries: a new piece starts where a column's distinct count would overflow.
    let mut cuts = vec![0usize];
    if !limits.is_empty() {
        let strings: Vec<(usize, ArrayRef)> = limits
            .iter()
            .map(|&(i, limit)| Ok((limit, cast(batch.column(i), &DataType::Utf8)?)))
            .collect::<Result<_, QueryError>>()?;
        let mut seen: Vec<std::collections::HashSet<&str>> = vec![Default::default(); limits.len()];
        for r in 0..batch.num_rows() {
            let overflow = strings.iter().zip(&seen).any(|((limit, a), s)| {
                let a = a.as_string::<i32>();
                a.is_valid(r) && !s.contains(a.value(r)) && s.len() >= *limit
            });
            if overflow {
                cuts.push(r);
                seen.iter_mut().for_each(|s| s.clear());
            }
            for ((_, a), s) in strings.iter().zip(seen.iter_mut()) {
                let a = a.as_string::<i32>();
                if a.is_valid(r) {
                    s.insert(a.value(r));
                }
            }
        }
    }
    cuts.push(batch.num_rows());
    cuts.windows(2)
        .filter(|w| w[1] > w[0])
        .map(|w| chunks::to_schema(&batch.slice(w[0], w[1] - w[0]), mem_schema))
        .collect()
}

#[cfg(test)]
mod tests {
    use arrow::array::{Int64Array, StringArray, UInt8Array};
    use arrow::datatypes::{Field, Schema};
    use strata_daemon::config::IndexPolicy;
    use strata_shared::delta::Op;

    use super::*;
    use crate::build::{IndexSpec, from_batches};

    /// Ids `0..n` with colors red, green, blue in turn; `color` has an equality index.
    fn colored(n: i64) -> DatasetState {
        let schema = colored_schema();
        let colors = ["red", "green", "blue"];
        let base = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(Int64Array::from_iter_values(0..n)),
                Arc::new(StringArray::from_iter_values(
                    (0..n).map(|i| colors[i as usize % 3]),
                )),
            ],
        )
        .unwrap();
        let spec = IndexSpec {
            policy: IndexPolicy::List,
            columns: vec!["color".into()],
        };
        from_batches(0, schema, vec![0], vec![base], &spec).unwrap()
    }

    fn colored_schema() -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("color", DataType::Utf8, true),
        ]))
    }

    /// A delta of `colored`'s table at `version`: `ids` with `colors`, all with `op`.
    fn colored_delta(version: u64, ids: Vec<i64>, colors: Vec<String>, op: Op) -> LoadedDelta {
        let delta_schema = strata_shared::delta::delta_schema(&colored_schema(), &["id".into()]);
        let n = ids.len();
        let batch = RecordBatch::try_new(
            delta_schema,
            vec![
                Arc::new(Int64Array::from(ids)),
                Arc::new(StringArray::from(colors)),
                Arc::new(UInt8Array::from(vec![op as u8; n])),
            ],
        )
        .unwrap();
        LoadedDelta {
            seq: version,
            path: format!("d{version}"),
            batch,
        }
    }

    #[test]
    fn merged_segments_keep_every_value_when_narrow_dictionary_keys_overflow() {
        // 3 colors in the base: `color` is dictionary-encoded with 8-bit keys (<= 127 values).
        let mut state = colored(300);
        assert_eq!(
            state.mem_schema.field(1).data_type(),
            &DataType::Dictionary(Box::new(DataType::Int8), Box::new(DataType::Utf8))
        );
        // Each version inserts 60 rows with 60 new colors; merged segments hold more colors
        // than 8-bit keys number.
        let mut expected: Vec<(i64, String)> = Vec::new();
        for version in 1..=6u64 {
            let ids: Vec<i64> = (0..60).map(|i| 1000 * version as i64 + i).collect();
            let names: Vec<String> = ids.iter().map(|id| format!("c{id}")).collect();
            expected.extend(ids.iter().copied().zip(names.iter().cloned()));
            let delta = colored_delta(version, ids, names, Op::Upsert);
            state = apply(&state, version, vec![delta]).unwrap();
        }
        let overlay = state.overlay.as_ref().unwrap();
        assert!(
            overlay
                .segments
                .iter()
                .any(|s| s.layer.chunks.batches().len() > 1),
            "some merged segment was cut where its dictionary would overflow"
        );
        assert_eq!(state.rows(), 300 + 360);
        for (id, color) in &expected {
            let row = state.lookup(&[KeyRef::Int(*id)]).unwrap();
            let (c, r) = state.chunks.locate(row);
            let cell = accessor(state.chunks.batches()[c].column(1).as_ref()).unwrap()(r);
            assert_eq!(cell, KeyRef::Str(color), "row of id {id}");
            let found: Vec<u32> = state.eq_rows(1, KeyRef::Str(color)).live(&state).collect();
            assert_eq!(found, [row], "index entry of {color}");
        }
    }

    #[test]
    fn deleted_blocks_are_copied_on_write_and_cleared_from_an_id() {
        let mut a = Deleted::default();
        for id in [3, 70_000, 70_001, 200_000] {
            a.insert(id);
        }
        a.insert(3);
        assert_eq!(a.len(), 4, "inserting twice counts once");
        let b = a.clone();
        a.insert(5);
        assert!(
            a.contains(5) && !b.contains(5),
            "the clone kept its own block"
        );
        assert!(a.any_in(69_990, 20) && !a.any_in(100, 1000));
        a.clear_from(70_001);
        assert_eq!(a.len(), 3);
        assert!(a.contains(70_000) && !a.contains(70_001) && !a.contains(200_000));
        assert_eq!(b.len(), 4);
    }

    #[test]
    fn live_windows_skip_deleted_rows_across_base_and_overlay() {
        let mut state = colored(150_000); // three base chunks
        let n = 150_000_i64;
        // Every 7th id rewritten (as red), every 11th deleted, in two versions.
        for (version, step, op) in [(1_u64, 7_i64, Op::Upsert), (2, 11, Op::Delete)] {
            let ids: Vec<i64> = (0..n).step_by(step as usize).collect();
            let reds = vec!["red".to_owned(); ids.len()];
            let delta = colored_delta(version, ids, reds, op);
            state = apply(&state, version, vec![delta]).unwrap();
        }
        let red = state.eq_rows(1, KeyRef::Str("red"));
        let all: Vec<u32> = red.live(&state).collect();
        assert!(all.len() > 50_000);
        for (start, end) in [
            (0, 100),
            (4_900, 5_000),
            (49_990, 50_100),
            (all.len() - 3, all.len() + 10),
            (all.len() + 5, all.len() + 9),
            (7, 7),
        ] {
            let want: Vec<u32> = all
                .iter()
                .copied()
                .skip(start)
                .take(end.saturating_sub(start))
                .collect();
            assert_eq!(red.live_window(&state, start, end), want, "{start}..{end}");
        }
    }
}
