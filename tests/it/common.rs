//! Shared set-up: an in-process storaged on a bound port-0 socket, and small fixtures.

use std::sync::Arc;

use arrow::array::{Int64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use object_store::ObjectStore;
use strata_daemon::config::Config;
use tokio::net::TcpListener;
use tokio::sync::oneshot;

pub const ADMIN: &str = "admin-secret";
pub const INTERNAL: &str = "internal-secret";

/// storaged serving in this process; stops when dropped.
pub struct Storaged {
    pub url: String,
    pub store: Arc<dyn ObjectStore>,
    _stop: oneshot::Sender<()>,
}

impl Storaged {
    /// Starts storaged over `store` with both tokens set.
    pub async fn start(store: Arc<dyn ObjectStore>, mut config: Config) -> Self {
        config.auth.admin_token = Some(ADMIN.into());
        config.auth.internal_token = Some(INTERNAL.into());
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let (stop, stopped) = oneshot::channel::<()>();
        let state = strata_storaged::prepare(&config, store.clone())
            .await
            .unwrap();
        let router = strata_storaged::router(state, &config);
        tokio::spawn(async move {
            let shutdown = async {
                let _ = stopped.await;
            };
            strata_daemon::serve::serve(listener, router, shutdown)
                .await
                .unwrap();
        });
        Self {
            url,
            store,
            _stop: stop,
        }
    }

    pub fn remote_store(&self) -> strata_storaged_api::RemoteStore {
        strata_storaged_api::RemoteStore::new(&self.url, INTERNAL)
    }

    pub fn client(&self) -> strata_storaged_api::StoragedClient {
        strata_storaged_api::StoragedClient::new(&self.url, Some(ADMIN))
    }
}

/// A small keyed table: `id` (Int64) and `name` (Utf8).
pub fn people(ids: &[i64]) -> RecordBatch {
    let schema = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("name", DataType::Utf8, true),
    ]));
    let names: Vec<String> = ids.iter().map(|i| format!("person {i}")).collect();
    RecordBatch::try_new(
        schema,
        vec![
            Arc::new(Int64Array::from(ids.to_vec())),
            Arc::new(StringArray::from(names)),
        ],
    )
    .unwrap()
}
