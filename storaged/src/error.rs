use strata_daemon::config::ConfigError;

/// Why storaged could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum StoragedError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("opening store {url}: {source}")]
    OpenStore {
        url: String,
        #[source]
        source: object_store::Error,
    },
    #[error("invalid store url {url:?}: {reason}")]
    StoreUrl { url: String, reason: String },
    #[error("creating declared dataset {name}: {source}")]
    Declared {
        name: String,
        #[source]
        source: crate::import::ImportError,
    },
    #[error(transparent)]
    Table(#[from] strata_shared::Error),
    #[error(transparent)]
    Io(#[from] std::io::Error),
}
