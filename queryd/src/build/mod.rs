//! Building the state of a version: from its files ([`load`]: base row groups streamed
//! into their in-memory layout by [`layout`], then the deltas applied), from batches
//! ([`from_batches`]), or from an older state of the same base files plus the newer deltas
//! ([`apply`]). Above [`crate::state`]: the state knows nothing of how it was made.

pub mod apply;
pub mod layout;

use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::{Schema, SchemaRef};
use strata_daemon::config::IndexPolicy;
use strata_shared::manifest::Manifest;

use crate::chunks::Chunks;
use crate::delta_cache::DeltaCache;
use crate::error::QueryError;
use crate::executor;
use crate::index::indexable;
use crate::state::{DatasetState, Layer};
use layout::MemLayout;

pub use apply::{apply, pending};

/// Under `index = "auto"`, a column gets an equality index when it has at most this many
/// distinct values and at most a quarter as many as rows (low cardinality: the index then
/// answers `eq`/`in` with long row lists, which is where it beats a scan).
pub const AUTO_INDEX_MAX_DISTINCT: usize = 1 << 16;

/// How a dataset is indexed (from the `[[datasets]]` config entry, else the policy it was
/// created with, else `Auto`).
#[derive(Clone, Debug, Default)]
pub struct IndexSpec {
    pub policy: IndexPolicy,
    pub columns: Vec<String>,
}

/// Reads every file of `manifest` and builds its state. Base files stream in one row group
/// at a time ([`layout::read_base`]); the CPU work runs on `compute` ([`executor::compute`]).
pub async fn load(
    deltas: &DeltaCache,
    manifest: &Manifest,
    spec: &IndexSpec,
    compute: &tokio::runtime::Handle,
    limit: Option<usize>,
) -> Result<Option<DatasetState>, QueryError> {
    let schema = manifest.arrow_schema();
    let primary_key = strata_shared::keys::key_indices(&schema, &manifest.primary_key)?;
    let layout = MemLayout::new(&schema, &primary_key, manifest.base_rows() as usize);
    let files = &manifest.base_files;
    let Some(layout) = layout::read_base(deltas.store(), files, layout, compute, limit).await?
    else {
        return Ok(None);
    };
    let deltas = deltas.read(&manifest.deltas).await?;
    let base_files: Arc<[String]> = manifest.base_files.iter().map(|f| f.path.clone()).collect();
    let (manifest, spec) = (manifest.clone(), spec.clone());
    executor::compute(compute, "building a state", move || {
        let base = from_layout(manifest.version, schema, primary_key, layout, &spec)?;
        let base = DatasetState {
            base_files,
            watermark: manifest.base_watermark_seq,
            ..base
        };
        if deltas.is_empty() {
            return Ok(Some(base));
        }
        apply(&base, &manifest, deltas).map(Some)
    })
    .await
}

/// The state over `batches` (all of `schema`, storage order), with no deltas.
pub fn from_batches(
    version: u64,
    schema: SchemaRef,
    primary_key: Vec<usize>,
    batches: Vec<RecordBatch>,
    spec: &IndexSpec,
) -> Result<DatasetState, QueryError> {
    let rows: usize = batches.iter().map(|b| b.num_rows()).sum();
    let mut layout = MemLayout::new(&schema, &primary_key, rows);
    for batch in batches {
        layout.push(batch)?;
    }
    from_layout(version, schema, primary_key, layout, spec)
}

/// Indexes the rows collected in `layout` (no deltas).
fn from_layout(
    version: u64,
    schema: SchemaRef,
    primary_key: Vec<usize>,
    layout: MemLayout,
    spec: &IndexSpec,
) -> Result<DatasetState, QueryError> {
    let (mem_schema, batches) = layout.finish()?;
    let chunks = Chunks::new(batches)?;
    let eq_columns = index_columns(&schema, &primary_key, spec, chunks.rows())?;
    let base = Layer::build(chunks, &primary_key, &eq_columns);
    Ok(DatasetState {
        version,
        schema,
        mem_schema,
        primary_key,
        chunks: Chunks::new(base.chunks.batches().to_vec())?,
        bytes: base.bytes,
        base: Arc::new(base),
        base_files: Arc::from([]),
        watermark: 0,
        overlay: None,
    })
}

/// Which columns to index and with what distinct-value cap.
pub(crate) fn index_columns(
    schema: &Schema,
    primary_key: &[usize],
    spec: &IndexSpec,
    rows: usize,
) -> Result<Vec<(usize, usize)>, QueryError> {
    match spec.policy {
        IndexPolicy::None => Ok(Vec::new()),
        IndexPolicy::List => spec
            .columns
            .iter()
            .map(|name| {
                let i = schema.index_of(name).map_err(|_| {
                    QueryError::BadRequest(format!("index column {name:?} is not in the schema"))
                })?;
                Ok((i, usize::MAX))
            })
            .collect(),
        IndexPolicy::Auto => {
            let cap = AUTO_INDEX_MAX_DISTINCT.min(rows / 4).max(1);
            Ok((0..schema.fields().len())
                .filter(|i| !(primary_key.len() == 1 && primary_key[0] == *i))
                .filter(|&i| indexable(schema.field(i).data_type()))
                .map(|i| (i, cap))
                .collect())
        }
    }
}

#[cfg(test)]
mod tests {
    use arrow::datatypes::DataType;

    use super::*;
    use crate::chunks::colored_batch as batch;
    use crate::index::KeyRef;

    #[test]
    fn low_cardinality_strings_are_dictionary_encoded_and_indexed() {
        let b = batch(0..100);
        let schema = b.schema();
        let state =
            from_batches(3, schema.clone(), vec![0], vec![b], &IndexSpec::default()).unwrap();
        assert_eq!(state.rows(), 100);
        assert!(matches!(
            state.mem_schema.field(1).data_type(),
            DataType::Dictionary(_, _)
        ));
        assert_eq!(state.mem_schema.field(2).data_type(), &DataType::Utf8);
        assert_eq!(state.schema, schema, "the logical schema is unchanged");
        assert_eq!(state.indexed_columns(), vec!["color".to_string()]);
        assert_eq!(state.lookup(&[KeyRef::Int(42)]), Some(42));
        assert!(state.bytes > 100 * 8);
    }

    #[test]
    fn listed_index_columns_must_exist() {
        let b = batch(0..10);
        let spec = IndexSpec {
            policy: IndexPolicy::List,
            columns: vec!["nope".into()],
        };
        assert!(from_batches(0, b.schema(), vec![0], vec![b], &spec).is_err());
    }
}
