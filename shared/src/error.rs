//! Errors of the table format. Daemons map these kinds to HTTP statuses in one place
//! (`strata-daemon`), so every variant says what kind of failure it is.

use crate::layout::DatasetName;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid dataset name {name:?}: {reason}")]
    InvalidName { name: String, reason: &'static str },

    #[error("dataset {0} not found")]
    DatasetNotFound(DatasetName),

    #[error("dataset {0} already exists")]
    DatasetExists(DatasetName),

    #[error("manifest {version} of dataset {dataset} not found")]
    ManifestNotFound { dataset: DatasetName, version: u64 },

    #[error("invalid manifest {path}: {source}")]
    InvalidManifest {
        path: String,
        #[source]
        source: serde_json::Error,
    },

    #[error("invalid input: {0}")]
    InvalidInput(String),

    #[error("primary key column {column:?} is not in the schema")]
    UnknownKeyColumn { column: String },

    #[error("primary key column {column:?} is null at row {row}")]
    NullKey { column: String, row: usize },

    #[error("duplicate primary key {key}")]
    DuplicateKey { key: String },

    #[error("commit on dataset {dataset} gave up after {attempts} attempts: {last}")]
    CommitContention {
        dataset: DatasetName,
        attempts: u32,
        last: String,
    },

    #[error("mutation refused: {0}")]
    Conflict(String),

    /// Some transactions of a group commit were already committed by other requests.
    #[error("transactions {ids:?} were already committed by another request")]
    TxnsPartlyCommitted { ids: Vec<String> },

    /// The Delta Lake log of a `delta_mirror` dataset is not one this build wrote or can read.
    #[error("delta log of dataset {dataset}: {reason}")]
    DeltaLog {
        dataset: DatasetName,
        reason: String,
    },

    #[error("the object store does not enforce put-if-absent ({0}); refusing to run writers on it")]
    PutIfAbsentUnsupported(String),

    #[error("object store: {0}")]
    ObjectStore(#[from] object_store::Error),

    #[error("object path: {0}")]
    Path(#[from] object_store::path::Error),

    #[error("arrow: {0}")]
    Arrow(#[from] arrow::error::ArrowError),

    #[error("parquet: {0}")]
    Parquet(#[from] parquet::errors::ParquetError),

    #[error("json: {0}")]
    Json(#[from] serde_json::Error),
}

impl Error {
    /// True if the error says the caller's input was wrong (as opposed to the store or a bug).
    pub fn is_invalid_input(&self) -> bool {
        matches!(
            self,
            Error::InvalidName { .. }
                | Error::InvalidInput(_)
                | Error::UnknownKeyColumn { .. }
                | Error::NullKey { .. }
                | Error::DuplicateKey { .. }
        )
    }
}
