//! Tells queryd instances about compacted versions, so they reload: fire and forget, as
//! storaged does after ingest (the same `notify_urls` and `NotifyClient`). queryd also polls,
//! so a lost notification only delays the reload.

use std::sync::Arc;

use strata_daemon::config::Config;
use strata_queryd_api::internal::{NOTIFY_TIMEOUT, NotifyClient};
use strata_shared::layout::DatasetName;

#[derive(Clone, Debug)]
pub struct Notifier {
    client: Option<NotifyClient>,
    urls: Arc<[String]>,
}

impl Notifier {
    /// Notifies `config.notify_urls()` with the internal token; nobody without a token.
    pub fn from_config(config: &Config) -> Self {
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

    pub fn notify(&self, dataset: &DatasetName, version: u64) {
        let Some(client) = &self.client else { return };
        for url in self.urls.iter() {
            let (client, url, dataset) = (client.clone(), url.clone(), dataset.to_string());
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
