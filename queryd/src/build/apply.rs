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
use crate::state::{Applied, DatasetState, Deleted, Layer, Overlay, Segment};

/// A state holding more dead rows than this fraction of its rows is rebuilt from the files
/// after a compaction rather than carried over (dead base rows are only dropped by a rebuild).
const MAX_DEAD_FRACTION: f64 = 0.25;

/// The deltas of `manifest` that `state` has not applied, if `state` can be brought to
/// `manifest` by applying them: the deltas it applied are still the manifest's first ones,
/// and its base files are the manifest's — or the manifest's are a compaction of rows the
/// state holds ([`compaction_kept`]). `None`: rebuild from the files.
pub fn pending<'m>(state: &DatasetState, manifest: &'m Manifest) -> Option<&'m [DeltaFile]> {
    if manifest.version < state.version {
        return None;
    }
    let same_base = manifest.base_files.len() == state.base_files.len()
        && manifest
            .base_files
            .iter()
            .zip(state.base_files.iter())
            .all(|(f, p)| &f.path == p);
    let applied = state.overlay.as_ref().map_or(&[][..], |o| &o.applied[..]);
    // The applied deltas the manifest must still list, first.
    let listed = if same_base {
        applied
    } else {
        compaction_kept(state, manifest)?
    };
    let prefix = manifest.deltas.get(..listed.len())?;
    prefix
        .iter()
        .zip(listed)
        .all(|(d, a)| d.path == a.path && d.seq == a.seq)
        .then(|| &manifest.deltas[listed.len()..])
}

/// When `manifest`'s base files are a compaction of deltas `state` applied: the applied deltas
/// the compaction did not merge (those above its watermark). The state then already holds the
/// manifest's rows in the manifest's storage order (invariant 7: a compaction freezes storage
/// order, and storage order is a fold over the deltas), so it needs no rebuild — only its dead
/// rows stay in memory, which is why a state with many is rebuilt instead.
///
/// The base files hold `state(S)` for the manifest's watermark `S` (invariant 5). That is the
/// fold of the state's own base with its applied deltas up to `S` when `S` is above the
/// state's watermark (a compaction since its base) and not above its newest applied delta
/// (every merged delta is one the state applied: a manifest lists every delta above its
/// watermark, so the applied ones are all those up to the newest).
fn compaction_kept<'s>(state: &'s DatasetState, manifest: &Manifest) -> Option<&'s [Applied]> {
    let overlay = state.overlay.as_ref()?;
    let newest = overlay.applied.last()?.seq;
    let watermark = manifest.base_watermark_seq;
    if watermark <= state.watermark || watermark > newest {
        return None;
    }
    let held = state.chunks.rows();
    if overlay.deleted.len() as f64 > MAX_DEAD_FRACTION * held as f64 {
        return None;
    }
    // A cheap cross-check of the lineage: with every applied delta merged, the base files
    // hold exactly the state's live rows.
    if watermark == newest && manifest.base_rows() != state.rows() as u64 {
        return None;
    }
    let merged = overlay.applied.partition_point(|a| a.seq <= watermark);
    Some(&overlay.applied[merged..])
}

/// `state` with `deltas` (the delta files of `manifest` it has not applied, ascending seq, as
/// [`pending`] names them) applied: the state of `manifest`.
pub fn apply(
    state: &DatasetState,
    manifest: &Manifest,
    deltas: Vec<LoadedDelta>,
) -> Result<DatasetState, QueryError> {
    let version = manifest.version;
    let key = &state.primary_key;
    let previous = state.overlay.as_ref();
    // Every delta the manifest lists is applied once these are.
    let applied = manifest
        .deltas
        .iter()
        .map(|d| Applied {
            seq: d.seq,
            path: d.path.clone(),
        })
        .collect();
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
        // After a compaction, the manifest's base files and watermark name what the state's
        // base and merged deltas hold (`compaction_kept`); otherwise they are the state's.
        base_files: if manifest.base_watermark_seq == state.watermark {
            state.base_files.clone()
        } else {
            manifest.base_files.iter().map(|f| f.path.clone()).collect()
        },
        watermark: manifest.base_watermark_seq,
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

    fn delta_file(seq: u64, path: &str) -> DeltaFile {
        DeltaFile {
            path: path.to_owned(),
            seq,
            rows: 0,
            bytes: 0,
            upserts: 0,
            deletes: 0,
            created_at: chrono::Utc::now(),
        }
    }

    /// The manifest of `colored`'s table at `version`: base files `base` with `watermark`,
    /// and the deltas `deltas` as (seq, path).
    fn manifest(version: u64, base: &[&str], watermark: u64, deltas: &[(u64, &str)]) -> Manifest {
        let files = base
            .iter()
            .map(|p| strata_shared::manifest::DataFile {
                path: (*p).to_owned(),
                rows: 0,
                bytes: 0,
                key_min: None,
                key_max: None,
            })
            .collect();
        let name = strata_shared::layout::DatasetName::new("t").unwrap();
        let schema = colored_schema().as_ref().clone();
        let mut m = Manifest::initial(name, schema, vec!["id".into()], files, "t");
        m.version = version;
        m.base_watermark_seq = watermark;
        m.deltas = deltas.iter().map(|&(seq, p)| delta_file(seq, p)).collect();
        m
    }

    /// The manifest after `state`'s with `delta` committed (same base files).
    fn next_manifest(state: &DatasetState, delta: &LoadedDelta) -> Manifest {
        let mut deltas: Vec<(u64, &str)> = state
            .overlay
            .iter()
            .flat_map(|o| &o.applied)
            .map(|a| (a.seq, a.path.as_str()))
            .collect();
        deltas.push((delta.seq, &delta.path));
        let base: Vec<&str> = state.base_files.iter().map(String::as_str).collect();
        manifest(delta.seq, &base, state.watermark, &deltas)
    }

    /// The ids of the live rows in storage order.
    fn live_ids(state: &DatasetState) -> Vec<i64> {
        let (_, batches) = state.live_batches(false).unwrap();
        batches
            .iter()
            .flat_map(|b| {
                b.column(0)
                    .as_primitive::<arrow::datatypes::Int64Type>()
                    .values()
                    .to_vec()
            })
            .collect()
    }

    #[test]
    fn a_compaction_of_applied_deltas_is_carried_over_without_a_rebuild() {
        let mut state = colored(1_000);
        let steps = [
            (1, (990..1_010).collect::<Vec<i64>>(), Op::Upsert),
            (2, (0..1_000).step_by(100).collect(), Op::Delete),
            (3, vec![5, 995, 2_000], Op::Upsert),
        ];
        for (seq, ids, op) in steps {
            let colors = vec!["pink".to_owned(); ids.len()];
            let delta = colored_delta(seq, ids, colors, op);
            state = apply(&state, &next_manifest(&state, &delta), vec![delta]).unwrap();
        }
        let before = live_ids(&state);
        let c = ["c/0.parquet"];

        // Compacted up to seq 2: d3 is still listed, and d4 is new.
        let compacted = manifest(5, &c, 2, &[(3, "d3"), (4, "d4")]);
        let new = pending(&state, &compacted).expect("carried over");
        assert_eq!(new.iter().map(|d| d.seq).collect::<Vec<_>>(), [4]);
        let d4 = colored_delta(4, vec![7], vec!["pink".into()], Op::Delete);
        let carried = apply(&state, &compacted, vec![d4]).unwrap();
        assert!(Arc::ptr_eq(&carried.base, &state.base), "no rebuild");
        assert_eq!((carried.version, carried.watermark), (5, 2));
        let expected: Vec<i64> = before.iter().copied().filter(|&id| id != 7).collect();
        assert_eq!(live_ids(&carried), expected, "storage order is unchanged");
        // And the next delta applies to the carried state as to any.
        let d6 = colored_delta(6, vec![1], vec!["x".into()], Op::Upsert);
        assert!(pending(&carried, &next_manifest(&carried, &d6)).is_some());

        // Compacted up to the newest applied delta: the base holds every live row.
        let mut all = manifest(5, &c, 3, &[]);
        all.base_files[0].rows = state.rows() as u64;
        assert_eq!(pending(&state, &all).map(<[_]>::len), Some(0));
        all.base_files[0].rows += 1;
        assert!(pending(&state, &all).is_none(), "row counts disagree");

        // Not carried: deltas the state never applied were merged, or the base changed
        // without merging any, or a listed delta is not the one applied.
        assert!(pending(&state, &manifest(5, &c, 4, &[])).is_none());
        assert!(
            pending(
                &state,
                &manifest(5, &c, 0, &[(1, "d1"), (2, "d2"), (3, "d3")])
            )
            .is_none()
        );
        assert!(pending(&state, &manifest(5, &c, 2, &[(3, "other")])).is_none());
    }

    #[test]
    fn a_state_with_many_dead_rows_is_rebuilt_after_a_compaction() {
        let mut state = colored(100);
        let delta = colored_delta(1, (0..30).collect(), vec!["x".into(); 30], Op::Delete);
        state = apply(&state, &next_manifest(&state, &delta), vec![delta]).unwrap();
        let mut compacted = manifest(2, &["c/0.parquet"], 1, &[]);
        compacted.base_files[0].rows = 70;
        assert!(pending(&state, &compacted).is_none(), "30 of 100 rows dead");
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
            state = apply(&state, &next_manifest(&state, &delta), vec![delta]).unwrap();
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
            state = apply(&state, &next_manifest(&state, &delta), vec![delta]).unwrap();
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
