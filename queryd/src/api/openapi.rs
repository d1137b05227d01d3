//! queryd's OpenAPI 3.1 document (`GET /openapi.json`) and its Swagger UI (`GET /docs`).
//!
//! The bodies' schemas are derived from the wire types themselves (`ToSchema` in
//! `strata-queryd-api`, `strata-storaged-api`, `strata-compactord-api` and `strata-daemon`),
//! so a field added there is in the document. The operations are declared here, one
//! `#[utoipa::path]` per route of `routes.rs`, on functions that only carry the declaration:
//! the handlers take axum extractors the generator cannot read, and other work edits them.
//! Each operation's error statuses come from [`ERRORS`], and their descriptions from the one
//! error table ([`ErrorCode`]), so the document says which `kind`s each status carries.
//! `tests/it/openapi.rs` checks the document against the running server with schemathesis.

use axum::Router;
use serde_json::{Map, Value};
use strata_compactord_api::{CompactionRun, RunOutcome, RunsResponse as CompactionRuns, Trigger};
use strata_daemon::config::SourceFormat;
use strata_daemon::error::{ErrorBody, ErrorCode};
use strata_queryd_api::{
    Aggregation, CacheEntry, CacheRequest, CacheStats, ColumnInfo, CountResponse, DatasetList,
    DatasetSummary, OrderBy, Predicate, QueryRequest, QueryResponse, ReloadResponse,
    SchemaResponse, VersionInfo, VersionsQuery, VersionsResponse,
};
use strata_storaged_api::DeltaCommitted;
use strata_storaged_api::catalog::{CreateDatasetRequest, DatasetInfo, DroppedDataset};
use strata_storaged_api::runs::{Run, RunKind, RunsQuery, RunsResponse};
use utoipa::openapi::path::Operation;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, SecurityScheme};
use utoipa::openapi::{ContentBuilder, HttpMethod, Ref, ResponseBuilder};
use utoipa::{IntoParams, Modify, OpenApi, PartialSchema, ToSchema};
use utoipa_swagger_ui::SwaggerUi;

/// Where the document and the UI are served (public: no token).
pub const OPENAPI_ROUTE: &str = "/openapi.json";
pub const DOCS_ROUTE: &str = "/docs";

/// The routes serving the document and the Swagger UI (its assets are compiled in, from the
/// `utoipa-swagger-ui` crate's vendored copy: nothing is fetched, at build time or run time).
pub fn router<S: Clone + Send + Sync + 'static>() -> Router<S> {
    SwaggerUi::new(DOCS_ROUTE)
        .url(OPENAPI_ROUTE, document())
        .into()
}

/// The whole document.
pub fn document() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Strata queryd",
        description = "The public HTTP API of Strata: datasets, queries (JSON pages datap-rs 0.8 \
            compatible, or Arrow IPC, NDJSON, CSV and Parquet), exports, versions and the change \
            feed, deltas, the cache and compaction. Every error is the JSON envelope \
            `{\"error\": …, \"kind\": …}`. Admin calls carry `X-Admin-Token`; delta writes take \
            the admin token or the write token in the same header."
    ),
    paths(
        operations::list_datasets, operations::create_dataset, operations::drop_dataset, operations::dataset_schema, operations::dataset_status, operations::query, operations::query_stream, operations::count, operations::export, operations::export_query, operations::versions, operations::changes, operations::post_deltas, operations::reload, operations::compact, operations::compactions, operations::runs, operations::cache_stats, operations::pin, operations::unpin, operations::evict, operations::readyz, operations::health, operations::healthz, operations::version, operations::metrics,
    ),
    components(schemas(
        ErrorBody, QueryRequest, Predicate, Aggregation, OrderBy, QueryResponse, CountResponse,
        DatasetList, DatasetSummary, SchemaResponse, ColumnInfo, ReloadResponse, CacheRequest,
        CacheEntry, CacheStats, VersionInfo, VersionsResponse, CreateDatasetRequest,
        DatasetInfo, DroppedDataset, SourceFormat, DeltaCommitted, DeltaBody, Run, RunKind, RunsResponse,
        RunOutcome, CompactionRun, CompactionRuns, Trigger, Ready, NotReady, Health, VersionAnswer, PageFormat, ExportFormat, FeedFormat,
    )),
    modifiers(&Security, &Errors),
    tags(
        (name = "datasets", description = "The datasets and their schemas"),
        (name = "query", description = "Pages, streams, counts and exports"),
        (name = "versions", description = "History: retained versions and the change feed"),
        (name = "writes", description = "Deltas (upserts and deletes) and compaction"),
        (name = "cache", description = "This replica's in-memory cache"),
        (name = "service", description = "Health, readiness, version and metrics"),
    )
)]
struct ApiDoc;

/// Raw bytes of a body: Arrow IPC, Parquet, and uploads of CSV or NDJSON (bytes as sent, not
/// a JSON string: any value of any type is some text on the wire).
#[derive(ToSchema)]
#[schema(value_type = String, format = Binary)]
struct Binary(#[allow(dead_code)] Vec<u8>);

/// A JSON delta: rows to upsert (whole rows) and keys to delete; each key at most once per
/// body, at least one row in all.
/// (Deserialize only for its serde attributes: the document refuses unknown fields, as
/// storaged does.)
#[derive(Default, serde::Deserialize, ToSchema)]
#[serde(default, deny_unknown_fields)]
#[allow(dead_code)]
struct DeltaBody {
    upserts: Vec<Map<String, Value>>,
    deletes: Vec<Map<String, Value>>,
}

/// `GET /readyz` once the catalog is known.
#[derive(ToSchema)]
#[allow(dead_code)]
struct Ready {
    /// `ready`.
    status: String,
    /// Datasets in the catalog.
    datasets: u64,
}

/// `GET /readyz` before the catalog is known (datap-rs's shape).
#[derive(ToSchema)]
#[allow(dead_code)]
struct NotReady {
    /// `not ready`.
    status: String,
    error: String,
    kind: String,
}

/// `GET /health`, `/healthz`.
#[derive(ToSchema)]
#[allow(dead_code)]
struct Health {
    status: String,
    service: String,
}

/// `GET /version`.
#[derive(ToSchema)]
#[allow(dead_code)]
struct VersionAnswer {
    name: String,
    service: String,
    version: String,
    /// The query engine (datap-rs names its own).
    backend: String,
}

/// `?format=` of a page: the JSON envelope (default) or the rows in another encoding.
#[derive(ToSchema)]
#[schema(rename_all = "lowercase")]
#[allow(dead_code)]
enum PageFormat {
    Json,
    Arrow,
    Ndjson,
    Csv,
    Parquet,
}

/// `?format=` of an export (Parquet by default).
#[derive(ToSchema)]
#[schema(rename_all = "lowercase")]
#[allow(dead_code)]
enum ExportFormat {
    Parquet,
    Arrow,
    Csv,
    Ndjson,
}

/// `?format=` of the change feed (NDJSON by default).
#[derive(ToSchema)]
#[schema(rename_all = "lowercase")]
#[allow(dead_code)]
enum FeedFormat {
    Ndjson,
    Arrow,
    Csv,
    Parquet,
}

/// The dataset of a `{name}` route.
#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)]
struct DatasetPath {
    /// 1 to 64 letters, digits, `_` and `-`, not starting with `_` or `-`.
    #[param(example = "demo", pattern = "^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")]
    name: String,
}

/// The dataset a drop names. Its example is not the demo dataset, which the other operations
/// read (tests/it/openapi.rs creates this one to be dropped).
#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)]
struct DropPath {
    /// 1 to 64 letters, digits, `_` and `-`, not starting with `_` or `-`.
    #[param(example = "scratch", pattern = "^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")]
    name: String,
}

/// The byte range of a Parquet export (answered from its spooled file; the other formats
/// stream and ignore it, as RFC 9110 allows).
#[derive(IntoParams)]
#[into_params(parameter_in = Header)]
#[allow(dead_code)]
struct RangeHeaders {
    /// One range: `bytes=a-b`, `bytes=a-` or `bytes=-n` (several ranges get the whole file).
    #[param(rename = "Range")]
    range: Option<String>,
    /// The whole file unless this is the export's current `ETag`.
    #[param(rename = "If-Range")]
    if_range: Option<String>,
}

/// The query of `GET …/export`.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
struct ExportParams {
    /// The encoding; wins over `Accept`.
    format: Option<ExportFormat>,
    /// A retained version (time travel); the latest if none.
    version: Option<u64>,
    /// The newest version committed at or before this RFC 3339 time.
    as_of: Option<String>,
}

/// `?format=` of a route answering pages.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
struct PageParams {
    /// The encoding; wins over `Accept`.
    format: Option<PageFormat>,
}

/// `?format=` of `POST …/export`.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
struct ExportQueryParams {
    /// The encoding; wins over `Accept`.
    format: Option<ExportFormat>,
}

/// The query of `GET …/changes`.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
struct ChangesParams {
    /// Changes committed after this version (a retained version).
    #[param(required = true)]
    since: Option<u64>,
    /// Up to this version (default: the latest).
    until: Option<u64>,
    /// The encoding; wins over `Accept`.
    format: Option<FeedFormat>,
    /// Seconds to wait for a change when there is none after `since` yet (long poll; at
    /// most 60).
    wait: Option<u64>,
}

/// The query of an upload (`POST /api/v1/datasets` with a body that is not JSON).
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
struct UploadParams {
    /// The new dataset's name (required with an upload).
    name: Option<String>,
    /// The key columns, comma-separated (none: a table that takes no deltas).
    primary_key: Option<String>,
    /// Keep a Delta Lake log beside the table.
    delta_mirror: Option<bool>,
}

/// `Idempotency-Key` of a delta.
#[derive(IntoParams)]
#[into_params(parameter_in = Header)]
#[allow(dead_code)]
struct DeltaHeaders {
    /// A retry with the same key (visible ASCII, at most 256 bytes) answers the first
    /// commit again instead of writing twice.
    #[param(rename = "Idempotency-Key", max_length = 256)]
    idempotency_key: Option<String>,
}

/// The operations: declarations only (never called), one per route of `routes.rs`. Success
/// answers are declared here; error answers are added by [`Errors`].
#[allow(dead_code)]
mod operations {
    use super::*;

    /// The datasets, with their rows, version, residency and pin.
    #[utoipa::path(get, path = "/api/v1/datasets", tag = "datasets",
        responses((status = 200, description = "The datasets", body = DatasetList)))]
    fn list_datasets() {}

    /// Creates a dataset (admin): a JSON body names a source storaged reads (a file, directory,
    /// glob or `s3://` URL); any other body is the data itself, with the name and key in the query.
    #[utoipa::path(post, path = "/api/v1/datasets", tag = "datasets", params(UploadParams),
        request_body(content(
            (CreateDatasetRequest = "application/json"),
            (Binary = "application/vnd.apache.parquet"),
            (Binary = "application/vnd.apache.arrow.stream"),
            (Binary = "text/csv"),
            (Binary = "application/x-ndjson"),
        )),
        responses((status = 201, description = "Created", body = DatasetInfo)),
        security(("admin_token" = [])))]
    fn create_dataset() {}

    /// Drops a dataset (admin): gone from this version on; its files stay until garbage
    /// collection's grace period has passed, and the name is free at once.
    #[utoipa::path(delete, path = "/api/v1/datasets/{name}", tag = "datasets",
        params(DropPath),
        responses((status = 200, description = "Dropped", body = DroppedDataset)),
        security(("admin_token" = [])))]
    fn drop_dataset() {}

    /// A dataset's columns, key, indexed columns and first row.
    #[utoipa::path(get, path = "/api/v1/datasets/{name}/schema", tag = "datasets",
        params(DatasetPath),
        responses((status = 200, description = "The schema", body = SchemaResponse,
            headers(("x-dataset-version" = u64, description = "The version answered")))))]
    fn dataset_schema() {}

    /// A dataset's summary (as in the list).
    #[utoipa::path(get, path = "/api/v1/datasets/{name}/status", tag = "datasets",
        params(DatasetPath),
        responses((status = 200, description = "The summary", body = DatasetSummary,
            headers(("x-dataset-version" = u64, description = "The version answered")))))]
    fn dataset_status() {}

    /// One page of a query: datap-rs's JSON envelope, or the page's rows in the format asked for
    /// (`?format=` or `Accept`).
    #[utoipa::path(post, path = "/api/v1/datasets/{name}/query", tag = "query",
        params(DatasetPath, PageParams), request_body = QueryRequest,
        responses((status = 200, description = "The page",
            headers(("x-dataset-version" = u64, description = "The version answered")),
            content(
                (QueryResponse = "application/json"),
                (Binary = "application/vnd.apache.arrow.stream"),
                (String = "application/x-ndjson"),
                (String = "text/csv"),
                (Binary = "application/vnd.apache.parquet"),
            ))))]
    fn query() {}

    /// Every row of a query (paging ignored) as one Arrow IPC stream.
    #[utoipa::path(post, path = "/api/v1/datasets/{name}/query/stream", tag = "query",
        params(DatasetPath), request_body = QueryRequest,
        responses((status = 200, description = "The rows",
            headers(("x-dataset-version" = u64, description = "The version answered")),
            content((Binary = "application/vnd.apache.arrow.stream")))))]
    fn query_stream() {}

    /// The rows matching a query (no body: every row).
    #[utoipa::path(post, path = "/api/v1/datasets/{name}/count", tag = "query",
        params(DatasetPath),
        request_body(content = Option<QueryRequest>, content_type = "application/json",
            description = "Optional: an absent body counts every row"),
        responses((status = 200, description = "The count", body = CountResponse,
            headers(("x-dataset-version" = u64, description = "The version answered")))))]
    fn count() {}

    /// The whole table at a version, as a file. Parquet is answered from a spooled file, with
    /// `Content-Length`, an `ETag` and byte ranges; the other formats stream as they are made.
    #[utoipa::path(get, path = "/api/v1/datasets/{name}/export", tag = "query",
        params(DatasetPath, ExportParams, RangeHeaders),
        responses(
            (status = 200, description = "The rows",
                headers(
                    ("x-dataset-version" = u64, description = "The version answered"),
                    ("accept-ranges" = String, description = "`bytes` (a spooled Parquet file)"),
                    ("etag" = String, description = "The spooled Parquet file's"),
                ),
                content(
                    (Binary = "application/vnd.apache.parquet"),
                    (Binary = "application/vnd.apache.arrow.stream"),
                    (String = "text/csv"),
                    (String = "application/x-ndjson"),
                )),
            (status = 206, description = "The byte range asked for of the Parquet file",
                headers(
                    ("content-range" = String, description = "`bytes a-b/len`"),
                    ("x-dataset-version" = u64, description = "The version answered"),
                ),
                content((Binary = "application/vnd.apache.parquet"))),
        ))]
    fn export() {}

    /// The rows of a query (paging ignored), as a file.
    #[utoipa::path(post, path = "/api/v1/datasets/{name}/export", tag = "query",
        params(DatasetPath, ExportQueryParams, RangeHeaders), request_body = QueryRequest,
        responses(
            (status = 200, description = "The rows",
                headers(
                    ("x-dataset-version" = u64, description = "The version answered"),
                    ("accept-ranges" = String, description = "`bytes` (a spooled Parquet file)"),
                    ("etag" = String, description = "The spooled Parquet file's"),
                ),
                content(
                    (Binary = "application/vnd.apache.parquet"),
                    (Binary = "application/vnd.apache.arrow.stream"),
                    (String = "text/csv"),
                    (String = "application/x-ndjson"),
                )),
            (status = 206, description = "The byte range asked for of the Parquet file",
                headers(
                    ("content-range" = String, description = "`bytes a-b/len`"),
                    ("x-dataset-version" = u64, description = "The version answered"),
                ),
                content((Binary = "application/vnd.apache.parquet"))),
        ))]
    fn export_query() {}

    /// Retained versions, newest first.
    #[utoipa::path(get, path = "/api/v1/datasets/{name}/versions", tag = "versions",
        params(DatasetPath, VersionsQuery),
        responses((status = 200, description = "The versions", body = VersionsResponse)))]
    fn versions() {}

    /// The change feed: rows upserted and deleted after `since`, with `_op` and `_version`.
    #[utoipa::path(get, path = "/api/v1/datasets/{name}/changes", tag = "versions",
        params(DatasetPath, ChangesParams),
        responses((status = 200, description = "The changes",
            headers(("x-dataset-version" = u64, description = "The last version in the feed")),
            content(
                (String = "application/x-ndjson"),
                (Binary = "application/vnd.apache.arrow.stream"),
                (String = "text/csv"),
                (Binary = "application/vnd.apache.parquet"),
            ))))]
    fn changes() {}

    /// Upserts and deletes rows (write or admin token in `X-Admin-Token`); answers once this
    /// queryd serves the committed version.
    #[utoipa::path(post, path = "/api/v1/datasets/{name}/deltas", tag = "writes",
        params(DatasetPath, DeltaHeaders),
        request_body(content(
            (DeltaBody = "application/json"),
            (Binary = "application/vnd.apache.arrow.stream"),
            (Binary = "application/vnd.apache.parquet"),
        )),
        responses((status = 200, description = "Committed", body = DeltaCommitted,
            headers(("x-dataset-version" = u64, description = "The version committed")))),
        security(("admin_token" = [])))]
    fn post_deltas() {}

    /// Reloads a dataset into this replica's cache (admin).
    #[utoipa::path(post, path = "/api/v1/datasets/{name}/reload", tag = "cache",
        params(DatasetPath),
        responses((status = 200, description = "Reloaded", body = ReloadResponse,
            headers(("x-dataset-version" = u64, description = "The version loaded")))),
        security(("admin_token" = [])))]
    fn reload() {}

    /// Compacts now (admin): the finished run, whatever its outcome.
    #[utoipa::path(post, path = "/api/v1/datasets/{name}/compact", tag = "writes",
        params(DatasetPath),
        responses((status = 200, description = "The run", body = CompactionRun)),
        security(("admin_token" = [])))]
    fn compact() {}

    /// A dataset's compaction runs, newest first (admin).
    #[utoipa::path(get, path = "/api/v1/datasets/{name}/compactions", tag = "writes",
        params(DatasetPath),
        responses((status = 200, description = "The runs", body = CompactionRuns)),
        security(("admin_token" = [])))]
    fn compactions() {}

    /// Imports, uploads, delta commits and compactions, newest first (admin).
    #[utoipa::path(get, path = "/api/v1/runs", tag = "writes", params(RunsQuery),
        responses((status = 200, description = "The runs", body = RunsResponse)),
        security(("admin_token" = [])))]
    fn runs() {}

    /// This replica's cache: capacity, use, hits and every dataset's entry.
    #[utoipa::path(get, path = "/api/v1/cache/stats", tag = "cache",
        responses((status = 200, description = "The figures", body = CacheStats)))]
    fn cache_stats() {}

    /// Loads a dataset and keeps it resident (admin).
    #[utoipa::path(post, path = "/api/v1/cache/pin", tag = "cache", request_body = CacheRequest,
        responses((status = 200, description = "Pinned", body = CacheEntry)),
        security(("admin_token" = [])))]
    fn pin() {}

    /// Lets a pinned dataset be evicted again (admin).
    #[utoipa::path(post, path = "/api/v1/cache/unpin", tag = "cache", request_body = CacheRequest,
        responses((status = 200, description = "Unpinned", body = CacheEntry)),
        security(("admin_token" = [])))]
    fn unpin() {}

    /// Drops a dataset from this replica's memory (admin).
    #[utoipa::path(post, path = "/api/v1/cache/evict", tag = "cache", request_body = CacheRequest,
        responses((status = 200, description = "Evicted", body = CacheEntry)),
        security(("admin_token" = [])))]
    fn evict() {}

    /// Ready once the catalog of datasets is known.
    #[utoipa::path(get, path = "/readyz", tag = "service",
        responses(
            (status = 200, description = "Ready", body = Ready),
            (status = 503, description = "Not ready yet, or the store cannot be listed",
                body = NotReady),
        ))]
    fn readyz() {}

    /// Liveness.
    #[utoipa::path(get, path = "/health", tag = "service",
        responses((status = 200, description = "Alive", body = Health)))]
    fn health() {}

    /// Liveness (Kubernetes' name).
    #[utoipa::path(get, path = "/healthz", tag = "service",
        responses((status = 200, description = "Alive", body = Health)))]
    fn healthz() {}

    /// The service and its version.
    #[utoipa::path(get, path = "/version", tag = "service",
        responses((status = 200, description = "The version", body = VersionAnswer)))]
    fn version() {}

    /// Prometheus metrics.
    #[utoipa::path(get, path = "/metrics", tag = "service",
        responses((status = 200, description = "Prometheus text format",
            content((String = "text/plain")))))]
    fn metrics() {}
}

/// The error statuses of each operation, by method and path. Every `/api/v1` operation can
/// also fail on the server's side ([`SERVER_ERRORS`]), and every one with a body can be
/// refused for it ([`BODY_ERRORS`]); those are added to these.
// One line per operation: a table.
#[rustfmt::skip]
const ERRORS: &[(&str, &str, &[u16])] = &[
    ("get", "/api/v1/datasets", &[]),
    ("post", "/api/v1/datasets", &[409]),
    ("delete", "/api/v1/datasets/{name}", &[400, 404]),
    ("get", "/api/v1/datasets/{name}/schema", &[400, 404]),
    ("get", "/api/v1/datasets/{name}/status", &[400, 404]),
    ("post", "/api/v1/datasets/{name}/query", &[400, 404, 406, 410, 422, 504]),
    ("post", "/api/v1/datasets/{name}/query/stream", &[400, 404, 410, 422, 504]),
    ("post", "/api/v1/datasets/{name}/count", &[400, 404, 410, 504]),
    ("get", "/api/v1/datasets/{name}/export", &[400, 404, 406, 410, 416, 504]),
    ("post", "/api/v1/datasets/{name}/export", &[400, 404, 406, 410, 416, 422, 504]),
    ("get", "/api/v1/datasets/{name}/versions", &[400, 404]),
    ("get", "/api/v1/datasets/{name}/changes", &[400, 404, 406, 410]),
    ("post", "/api/v1/datasets/{name}/deltas", &[400, 404, 409]),
    ("post", "/api/v1/datasets/{name}/reload", &[400, 404]),
    ("post", "/api/v1/datasets/{name}/compact", &[400, 404, 409]),
    ("get", "/api/v1/datasets/{name}/compactions", &[400, 404]),
    ("get", "/api/v1/runs", &[400]),
    ("get", "/api/v1/cache/stats", &[]),
    ("post", "/api/v1/cache/pin", &[404]),
    ("post", "/api/v1/cache/unpin", &[404]),
    ("post", "/api/v1/cache/evict", &[404]),
];

/// What any `/api/v1` operation may answer when the server side fails: a bug (500), another
/// daemon or the store failing (502), a passing condition (503, with `Retry-After`).
const SERVER_ERRORS: &[u16] = &[500, 502, 503];
/// What a body may be refused for: not of its type (400), too large (413), of a content
/// type the route does not take (415); and the body not read in time (408).
const BODY_ERRORS: &[u16] = &[400, 408, 413, 415];
/// A guarded operation without its token (401) or with a wrong one (403).
const AUTH_ERRORS: &[u16] = &[401, 403];

/// Declares the `X-Admin-Token` scheme.
struct Security;

impl Modify for Security {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "admin_token",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                "X-Admin-Token",
                "The admin token (`auth.admin_token`); delta writes also take the write token \
                 (`auth.write_token`)",
            ))),
        );
    }
}

/// Adds each operation's error answers: [`ERRORS`], plus the server-side, body and token
/// errors that apply, each the error envelope, described with the `kind`s of its status.
struct Errors;

impl Modify for Errors {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        for (path, item) in openapi.paths.paths.iter_mut() {
            for (method, operation) in [
                (HttpMethod::Get, &mut item.get),
                (HttpMethod::Post, &mut item.post),
                (HttpMethod::Delete, &mut item.delete),
            ] {
                if let Some(operation) = operation {
                    add_errors(path, &method, operation);
                }
            }
        }
    }
}

fn add_errors(path: &str, method: &HttpMethod, operation: &mut Operation) {
    let method = match method {
        HttpMethod::Get => "get",
        HttpMethod::Post => "post",
        HttpMethod::Delete => "delete",
        _ => return,
    };
    let mut statuses: Vec<u16> = ERRORS
        .iter()
        .filter(|(m, p, _)| *m == method && *p == path)
        .flat_map(|(_, _, s)| s.iter().copied())
        .collect();
    if path.starts_with("/api/v1/") {
        statuses.extend(SERVER_ERRORS);
    }
    if operation.request_body.is_some() {
        statuses.extend(BODY_ERRORS);
    }
    if operation.security.is_some() {
        statuses.extend(AUTH_ERRORS);
    }
    statuses.sort_unstable();
    statuses.dedup();
    for status in statuses {
        let key = status.to_string();
        if operation.responses.responses.contains_key(&key) {
            continue;
        }
        operation
            .responses
            .responses
            .insert(key, error_response(status).into());
    }
}

/// The error envelope for `status`, described with the kinds the error table gives it.
fn error_response(status: u16) -> utoipa::openapi::Response {
    let kinds: Vec<String> = ErrorCode::ALL
        .iter()
        .filter(|c| c.status().as_u16() == status)
        .map(|c| format!("`{}`", c.kind()))
        .collect();
    let reason = axum::http::StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("Error");
    let description = if kinds.is_empty() {
        reason.to_owned()
    } else {
        format!("{reason}: kind {}", kinds.join(", "))
    };
    let mut response = ResponseBuilder::new().description(description).content(
        "application/json",
        ContentBuilder::new()
            .schema(Some(Ref::from_schema_name("ErrorBody")))
            .build(),
    );
    if status == 503 {
        response = response.header(
            "retry-after",
            utoipa::openapi::HeaderBuilder::new()
                .schema(Some(u64::schema()))
                .description(Some("Seconds to wait before a retry".to_owned()))
                .build(),
        );
    }
    response.build()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_document_is_openapi_3_1_with_every_error_answered_in_the_envelope() {
        let doc = serde_json::to_value(document()).unwrap_or_default();
        assert_eq!(doc["openapi"], "3.1.0");
        let paths = doc["paths"].as_object().cloned().unwrap_or_default();
        assert!(paths.len() >= 20, "{paths:?}");
        for (path, item) in &paths {
            for (method, operation) in item.as_object().into_iter().flatten() {
                let responses = operation["responses"]
                    .as_object()
                    .cloned()
                    .unwrap_or_default();
                for (status, response) in &responses {
                    if status.starts_with('4') || (status.starts_with('5') && path != "/readyz") {
                        assert_eq!(
                            response["content"]["application/json"]["schema"]["$ref"],
                            "#/components/schemas/ErrorBody",
                            "{method} {path} {status}"
                        );
                    }
                }
                if path.starts_with("/api/v1/") {
                    assert!(responses.contains_key("503"), "{method} {path}");
                }
                if operation.get("security").is_some() {
                    assert!(responses.contains_key("401"), "{method} {path}");
                }
            }
        }
        // Every operation of ERRORS is one of the document's: a renamed route is not missed.
        for (method, path, _) in ERRORS {
            assert!(paths[*path].get(*method).is_some(), "{method} {path}");
        }
        assert!(doc["components"]["securitySchemes"]["admin_token"].is_object());
    }
}
