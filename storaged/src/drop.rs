//! Dropping a dataset (`DELETE /api/v1/datasets/{name}`): storaged commits a tombstone version
//! ([`strata_shared::manifest::Operation::Drop`]), deletes the dataset's Delta log, and tells
//! the queryds. From the tombstone on the dataset is absent to every reader and writer; its
//! files are garbage collection's, once no retained manifest references them and the grace
//! period has passed (compactord's `collect`), so reads already running finish. A new dataset
//! may take the name at once: it is created as the version after the tombstone.

use axum::Json;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use strata_daemon::ApiError;
use strata_shared::commit::Table;
use strata_shared::delta_log;
use strata_shared::layout::DatasetName;
use strata_storaged_api::catalog::DroppedDataset;
use strata_storaged_api::runs::RunKind;

use crate::AppState;
use crate::runs::Ended;

pub async fn drop_dataset(
    State(state): State<AppState>,
    name: Result<Path<String>, PathRejection>,
) -> Result<Json<DroppedDataset>, ApiError> {
    let Path(name) = name.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let started_at = chrono::Utc::now();
    let dropped = commit_drop(&state, &name).await;
    let ended = match &dropped {
        Ok(d) => Ended::Committed {
            version: d.version,
            rows: 0,
            bytes: 0,
            requests: 1,
        },
        Err(e) => Ended::Failed {
            requests: 1,
            error: e.to_string(),
        },
    };
    // A drop of a name that holds no dataset did nothing: no run.
    if !matches!(dropped, Err(strata_shared::Error::DatasetNotFound(_))) {
        state.runs.record(&name, RunKind::Drop, started_at, ended);
    }
    Ok(Json(dropped?))
}

async fn commit_drop(state: &AppState, name: &str) -> strata_shared::Result<DroppedDataset> {
    let name = DatasetName::new(name)?;
    let table = Table::new(state.store.clone(), name.clone());
    let txn = format!("drop-{}", uuid::Uuid::now_v7());
    let tombstone = table.drop_dataset(&txn).await?;
    tracing::info!(dataset = %name, version = tombstone.version, "dataset dropped");
    // The tombstone decides; the log is cleanup. A log left behind (a failed delete) is
    // deleted by garbage collection, which also treats the dataset as dropped.
    match delta_log::delete_log(state.store.as_ref(), &name).await {
        Ok(0) => {}
        Ok(n) => tracing::info!(dataset = %name, objects = n, "Delta log deleted"),
        Err(e) => tracing::warn!(dataset = %name, error = %e,
            "the Delta log of the dropped dataset was not deleted; gc will"),
    }
    state.notifier.notify(name.as_str(), tombstone.version);
    Ok(DroppedDataset {
        name: name.to_string(),
        version: tombstone.version,
        dropped_at: tombstone.created_at,
    })
}
