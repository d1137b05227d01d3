//! storaged's wire contract: request and response types, and typed clients.
//!
//! - [`objects`]: the internal object API (GET with ranges, HEAD, PUT create/overwrite/update,
//!   DELETE, LIST, COPY), and [`RemoteStore`], an `object_store::ObjectStore` over it, so
//!   queryd and compactord run unchanged on a remote or a direct store.
//! - [`catalog`]: dataset creation and listing, and [`StoragedClient`].
//! - [`deltas`]: the delta ingest route queryd forwards writes to, and [`DeltaClient`].
//! - [`runs`]: the run history of imports, uploads and delta commits.

pub mod catalog;
pub mod deltas;
pub mod objects;
mod remote_store;
pub mod runs;

pub use catalog::StoragedClient;
pub use deltas::{
    ARROW_STREAM_CONTENT_TYPE, DELTAS_ROUTE, DeltaClient, DeltaCommitted, IDEMPOTENCY_KEY_HEADER,
    PARQUET_CONTENT_TYPE, idempotency_key,
};
pub use remote_store::{NoInternalToken, RemoteStore};

pub use strata_daemon::client::ClientError;
pub(crate) use strata_daemon::client::send_json;
