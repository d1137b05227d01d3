//! The dataset catalog: create datasets from sources (Parquet, CSV, NDJSON, Arrow IPC streams,
//! Delta tables) or uploads as manifest version 0, list them
//! and read their manifests. A dataset exists iff its version 0 (or a later one) does.
//!
//! A dataset created with `delta_mirror` gets its Delta Lake log (`strata_shared::delta_log`)
//! right after version 0 lands; a table Delta Lake cannot hold is refused before anything is
//! written.

use std::sync::Arc;

use futures::TryStreamExt;
use object_store::ObjectStore;
use strata_daemon::ApiError;
use strata_daemon::config::{Config, SourceFormat};
use strata_shared::commit::{self, Table};
use strata_shared::layout::{self, DatasetName};
use strata_shared::manifest::{IndexHint, Manifest};
use strata_shared::{Error, Result, delta_log};
use strata_storaged_api::catalog::{
    CreateDatasetRequest, ImportInfo, ManifestVersions, UploadQuery,
};

use crate::StoragedError;
use crate::budget::{Busy, DecodeBudget};
use crate::import::upload::SpoolError;
use crate::import::{self, ImportError, Imports, Rows, Source, Ticket, Turn};
use crate::untrusted;

/// Why an upload was refused.
#[derive(Debug, thiserror::Error)]
pub enum UploadError {
    #[error(transparent)]
    Table(#[from] Error),
    #[error(transparent)]
    Busy(#[from] Busy),
    #[error(transparent)]
    Import(#[from] ImportError),
    #[error(transparent)]
    Spool(#[from] SpoolError),
}

impl From<UploadError> for ApiError {
    fn from(e: UploadError) -> Self {
        match e {
            UploadError::Table(e) => ApiError::from(e),
            UploadError::Busy(e) => ApiError::from(e),
            UploadError::Import(e) => ApiError::from(e),
            UploadError::Spool(e @ SpoolError::TooLarge { .. }) => {
                ApiError::body_rejected(axum::http::StatusCode::PAYLOAD_TOO_LARGE, e.to_string())
            }
            UploadError::Spool(e @ SpoolError::Body(_)) => ApiError::bad_request(e.to_string()),
            UploadError::Spool(e @ SpoolError::Disk { .. }) => {
                tracing::error!(error = %e, "spooling an upload failed");
                ApiError::internal(
                    "spooling the upload failed on storaged (its log has the reason)",
                )
            }
        }
    }
}

/// What a new dataset is besides its rows.
#[derive(Clone)]
struct New<'a> {
    primary_key: &'a [String],
    delta_mirror: bool,
    index: Option<IndexHint>,
}

/// What an uploaded body is (its `Content-Type`). CSV (with a header line) and NDJSON have
/// their column types inferred from their first rows, as a source's are.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UploadFormat {
    Parquet,
    ArrowStream,
    Csv,
    Ndjson,
}

impl UploadFormat {
    /// The source format its spool file is read as.
    fn source_format(self) -> SourceFormat {
        match self {
            UploadFormat::Parquet => SourceFormat::Parquet,
            UploadFormat::ArrowStream => SourceFormat::Arrow,
            UploadFormat::Csv => SourceFormat::Csv,
            UploadFormat::Ndjson => SourceFormat::Ndjson,
        }
    }
}

/// What opening an upload reads at most, admitted against the decode budget: a text
/// sample's bytes ([`import`]'s inference), or a Parquet footer.
const UPLOAD_OPEN_BYTES: u64 = 16 << 20;

#[derive(Clone)]
pub struct Catalog {
    store: Arc<dyn ObjectStore>,
    config: Arc<Config>,
    budget: DecodeBudget,
    imports: Imports,
    import_settings: import::Settings,
}

impl Catalog {
    pub fn new(store: Arc<dyn ObjectStore>, config: Config, budget: DecodeBudget) -> Self {
        Self {
            store,
            import_settings: import::Settings::from_config(&config),
            config: Arc::new(config),
            budget,
            imports: Imports::default(),
        }
    }

    fn table(&self, name: &DatasetName) -> Table {
        Table::new(self.store.clone(), name.clone())
    }

    /// Creates a dataset from its source. [`Error::DatasetExists`] if it is already there:
    /// the check before reading saves the work, the put-if-absent of version 0 decides.
    /// Listed as importing ([`Self::importing`]) from the start, while it waits for its turn
    /// (one import runs at a time) and while it runs.
    pub async fn create(
        &self,
        request: &CreateDatasetRequest,
    ) -> std::result::Result<Manifest, ImportError> {
        let name = self.absent(&request.name).await?;
        let source = Source::parse(
            &request.source,
            request.format,
            request.schema.clone(),
            &self.config,
        )?;
        let ticket = self.imports.start(&name)?;
        let turn = ticket.turn().await;
        let opened = source.open(self.import_settings.memory).await?;
        let new = New {
            primary_key: &request.primary_key,
            delta_mirror: request.delta_mirror,
            index: request.index_hint(),
        };
        self.commit_new(name, Rows::Source(Box::new(opened)), new, &ticket, turn)
            .await
    }

    /// Creates a dataset from an uploaded body (a Parquet file, an Arrow IPC stream, CSV or
    /// NDJSON; a JSON body describes a source instead: [`Self::create`]). The body is spooled
    /// to a file in the spill directory as it arrives (up to `storaged.max_upload_bytes`),
    /// then imported as a local source of its format, so its size costs disk, not memory; the
    /// file is deleted however the upload ends. It is untrusted input: a Parquet file's pages
    /// are checked before it is decoded ([`untrusted::parquet_pages`]), an Arrow stream is
    /// read through its framing checks, and every decoder runs under
    /// [`untrusted::contain`]. Opening it (the footer, or a text sample whose types are
    /// inferred) is admitted against the decode budget.
    pub async fn upload<S, E>(
        &self,
        name: &str,
        query: &UploadQuery,
        format: UploadFormat,
        body: S,
    ) -> std::result::Result<Manifest, UploadError>
    where
        S: futures::Stream<Item = std::result::Result<bytes::Bytes, E>> + Unpin,
        E: std::fmt::Display,
    {
        let name = self.absent(name).await?;
        let ticket = self.imports.start(&name)?;
        let spool = import::upload::spool(
            body,
            &self.import_settings.spill_dir,
            self.config.storaged.max_upload_bytes,
        )
        .await?;
        let turn = ticket.turn().await;
        let opened = {
            let sample = spool.bytes().min(UPLOAD_OPEN_BYTES);
            let _room = self
                .budget
                .admit(usize::try_from(sample).unwrap_or(usize::MAX), format)
                .await?;
            if format == UploadFormat::Parquet {
                let path = spool.path().to_path_buf();
                tokio::task::spawn_blocking(move || {
                    untrusted::contain("Parquet file", || {
                        let file = std::fs::File::open(&path).map_err(|e| {
                            Error::InvalidInput(format!("invalid Parquet file: {e}"))
                        })?;
                        untrusted::parquet_pages::check_file(&file)
                    })
                })
                .await
                .map_err(|e| Error::InvalidInput(format!("checking the upload failed: {e}")))??;
            }
            let source = Source::spooled(spool.path(), format.source_format());
            source.open(self.import_settings.memory).await?
        };
        let new = New {
            primary_key: &query.primary_key(),
            delta_mirror: query.delta_mirror(),
            index: query.index_hint(),
        };
        let created = self
            .commit_new(name, Rows::Source(Box::new(opened)), new, &ticket, turn)
            .await;
        drop(spool);
        Ok(created?)
    }

    /// `name`, validated, if no dataset of that name exists yet.
    async fn absent(&self, name: &str) -> Result<DatasetName> {
        let name = DatasetName::new(name)?;
        // A dropped namesake's tombstone does not hold the name.
        match self.table(&name).load_latest().await {
            Ok(_) => Err(Error::DatasetExists(name)),
            Err(Error::DatasetNotFound(_)) => Ok(name),
            Err(e) => Err(e),
        }
    }

    /// Writes `rows` as the base files of a new dataset and commits its version 0; then,
    /// with `delta_mirror`, writes its Delta log. The ticket stays listed until the commit.
    async fn commit_new(
        &self,
        name: DatasetName,
        rows: Rows,
        new: New<'_>,
        ticket: &Ticket,
        turn: Turn,
    ) -> std::result::Result<Manifest, ImportError> {
        let started = std::time::Instant::now();
        if new.delta_mirror {
            // Refused before anything is written (a 400 naming the column).
            delta_log::DeltaLakeSchema::of(rows.schema())?;
        }
        if let Some(index) = &new.index
            && let Some(missing) = index
                .columns
                .iter()
                .find(|c| rows.schema().field_with_name(c).is_err())
        {
            return Err(Error::InvalidInput(format!(
                "index_columns names {missing:?}, which the table does not have"
            ))
            .into());
        }
        let (schema, files) = import::write_base(
            &self.store,
            &name,
            rows,
            new.primary_key,
            &self.import_settings,
            ticket,
            turn,
        )
        .await?;
        let txn = format!("create-{}", uuid::Uuid::now_v7());
        let mut draft = Manifest::initial(name, schema, new.primary_key.to_vec(), files, &txn);
        draft.delta_mirror = new.delta_mirror;
        draft.index = new.index;
        // Version 0, or the version after a dropped namesake's tombstone.
        let manifest = self.table(&draft.dataset).create(&draft).await?;
        tracing::info!(
            dataset = %manifest.dataset,
            rows = manifest.base_rows(),
            files = manifest.base_files.len(),
            delta_mirror = manifest.delta_mirror,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "dataset created"
        );
        // The dataset exists now, so a failure here does not fail the creation (a retry would
        // find the name taken): compactord's periodic check writes the log it missed.
        if let Err(e) = delta_log::sync(self.store.as_ref(), &manifest).await {
            tracing::warn!(dataset = %manifest.dataset, error = %e,
                "the Delta log of the new dataset was not written; compactord will write it");
        }
        Ok(manifest)
    }

    /// Creates the datasets the config declares that do not exist yet; existing ones are left
    /// alone (their data may have changed since the source was read).
    pub async fn create_declared(&self) -> Result<(), StoragedError> {
        for declared in &self.config.datasets {
            let request = CreateDatasetRequest {
                name: declared.name.clone(),
                source: declared.source.clone(),
                format: declared.format,
                schema: None,
                primary_key: declared.primary_key.clone(),
                delta_mirror: declared.delta_mirror,
                index: None,
                index_columns: Vec::new(),
            };
            match self.create(&request).await {
                Ok(_) => {}
                Err(ImportError::Table(Error::DatasetExists(_))) => {
                    tracing::info!(dataset = %declared.name, "declared dataset exists; left alone");
                }
                Err(source) => {
                    return Err(StoragedError::Declared {
                        name: declared.name.clone(),
                        source,
                    });
                }
            }
        }
        Ok(())
    }

    /// The imports running or waiting for their turn, by name. Read before [`Self::list`], a
    /// dataset being created is in one of the two lists (or briefly both), never neither.
    pub fn importing(&self) -> Vec<ImportInfo> {
        self.imports.list()
    }

    /// The latest manifest of every dataset, by name.
    pub async fn list(&self) -> Result<Vec<Manifest>> {
        let mut out = Vec::new();
        for name in commit::list_datasets(self.store.as_ref()).await? {
            match self.table(&name).load_latest().await {
                Ok(m) => out.push(m),
                // A directory without a committed version: a creation that never finished.
                Err(Error::DatasetNotFound(_)) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }

    pub async fn manifest(&self, name: &str, version: Option<u64>) -> Result<Manifest> {
        let table = self.table(&DatasetName::new(name)?);
        match version {
            Some(v) => table.read_manifest(v).await,
            None => table.load_latest().await,
        }
    }

    pub async fn versions(&self, name: &str) -> Result<ManifestVersions> {
        let name = DatasetName::new(name)?;
        // The live dataset's versions: none of a dropped namesake's.
        let head = self.table(&name).load_latest().await?;
        let (latest, first) = (head.version, head.incarnation);
        let listed: Vec<_> = self
            .store
            .list(Some(&layout::manifest_dir(&name)))
            .try_collect()
            .await?;
        let mut versions: Vec<u64> = listed
            .iter()
            .filter_map(|m| m.location.filename())
            .filter_map(layout::parse_manifest_file_name)
            .filter(|v| (first..=latest).contains(v))
            .collect();
        versions.sort_unstable();
        Ok(ManifestVersions {
            dataset: name.to_string(),
            versions,
            latest,
        })
    }
}
