//! The write path's client side: queryd forwards delta bodies to storaged unchanged, and
//! storaged validates and commits them. queryd keeps no write state of its own.

use bytes::Bytes;
use strata_daemon::config::Config;
use strata_storaged_api::{ClientError, DeltaClient, DeltaCommitted};

use crate::error::QueryError;

#[derive(Clone)]
pub struct Writer {
    /// `None` without an internal token: this queryd cannot reach storaged's write API.
    client: Option<DeltaClient>,
}

impl Writer {
    pub fn new(config: &Config) -> Self {
        let client = config
            .auth
            .internal_token
            .as_deref()
            .filter(|t| !t.is_empty())
            .map(|token| DeltaClient::new(&config.storaged.url(), token));
        Self { client }
    }

    pub async fn post(
        &self,
        dataset: &str,
        content_type: &str,
        body: Bytes,
        idempotency_key: Option<&str>,
    ) -> Result<DeltaCommitted, QueryError> {
        let Some(client) = &self.client else {
            return Err(QueryError::Unavailable(
                "this queryd has no internal token, so it cannot forward writes to storaged".into(),
            ));
        };
        client
            .post_deltas(dataset, content_type, body, idempotency_key)
            .await
            .map_err(|e| match e {
                ClientError::Status {
                    status, message, ..
                } => QueryError::Upstream { status, message },
                other => QueryError::Unavailable(format!("storaged: {other}")),
            })
    }
}
