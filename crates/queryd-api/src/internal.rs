//! queryd's internal routes (token `X-Internal-Token`), called by the other daemons.
//!
//! | method | route | body | answer |
//! |---|---|---|---|
//! | POST | `/internal/v1/datasets/{name}/notify` | [`NotifyVersion`] | 2xx; queryd loads that version (or a newer one) soon |
//!
//! storaged notifies every configured queryd after each commit. A notification is only a hint
//! to refresh early: queryd also polls the manifest, so a lost one delays freshness, nothing more.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use strata_daemon::auth::INTERNAL_TOKEN_HEADER;

/// axum 0.8 path syntax; `{name}` is the dataset.
pub const NOTIFY_ROUTE: &str = "/internal/v1/datasets/{name}/notify";

/// How long a notification may take before the sender gives up on it.
pub const NOTIFY_TIMEOUT: Duration = Duration::from_secs(2);

/// Body of a notification: the dataset's newest committed version.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotifyVersion {
    pub version: u64,
}

/// Why a notification did not arrive.
#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    #[error("notifying {url} failed: {source}")]
    Transport {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("notifying {url} answered {status}")]
    Status { url: String, status: u16 },
}

/// Sends notifications to queryd instances; cheap to clone (one connection pool).
#[derive(Clone, Debug)]
pub struct NotifyClient {
    token: String,
    http: reqwest::Client,
}

impl NotifyClient {
    /// `internal_token` is the cluster's internal token.
    pub fn new(internal_token: &str) -> Self {
        Self {
            token: internal_token.to_owned(),
            http: reqwest::Client::builder()
                .timeout(NOTIFY_TIMEOUT)
                .build()
                .unwrap_or_default(),
        }
    }

    /// Tells the queryd at `url` (`http://host:port`) that `dataset` has `version`.
    pub async fn notify(&self, url: &str, dataset: &str, version: u64) -> Result<(), NotifyError> {
        let url = format!(
            "{}{}",
            url.trim_end_matches('/'),
            NOTIFY_ROUTE.replace("{name}", dataset)
        );
        let response = self
            .http
            .post(&url)
            .header(INTERNAL_TOKEN_HEADER, &self.token)
            .json(&NotifyVersion { version })
            .send()
            .await
            .map_err(|source| NotifyError::Transport {
                url: url.clone(),
                source,
            })?;
        let status = response.status();
        if status.is_success() {
            Ok(())
        } else {
            Err(NotifyError::Status {
                url,
                status: status.as_u16(),
            })
        }
    }
}

/// Tells every queryd in `storaged.notify_urls` about new versions (storaged after ingest,
/// compactord after a compaction): fire and forget, never failing the caller. queryd also
/// polls, so a lost notification only delays it.
#[derive(Clone, Debug)]
pub struct Notifier {
    client: Option<NotifyClient>,
    urls: std::sync::Arc<[String]>,
}

impl Notifier {
    /// Notifies `config.notify_urls()` with the internal token; nobody without a token
    /// (queryd's internal route would refuse the call anyway).
    pub fn from_config(config: &strata_daemon::config::Config) -> Self {
        let client = config
            .auth
            .internal_token
            .as_deref()
            .filter(|t| !t.is_empty())
            .map(NotifyClient::new);
        Self {
            client,
            urls: config.notify_urls().into(),
        }
    }

    /// Sends the notifications in the background (needs a Tokio runtime).
    pub fn notify(&self, dataset: &str, version: u64) {
        let Some(client) = &self.client else { return };
        for url in self.urls.iter() {
            let (client, url, dataset) = (client.clone(), url.clone(), dataset.to_owned());
            tokio::spawn(async move {
                let sent =
                    tokio::time::timeout(NOTIFY_TIMEOUT, client.notify(&url, &dataset, version))
                        .await;
                match sent {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => tracing::debug!(%dataset, version, error = %e, "notify failed"),
                    Err(_) => tracing::debug!(%dataset, version, %url, "notify timed out"),
                }
            });
        }
    }
}
