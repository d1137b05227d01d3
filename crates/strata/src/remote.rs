//! The commands a user runs against a running Strata (`strata datasets`, `query`, `upsert`,
//! `export`, …): each is one or a few calls of queryd's public API through
//! [`QuerydClient`], with the URL from `--url` / `STRATA_URL` and the admin token from
//! `--token` / `STRATA_ADMIN_TOKEN`. Answers go to stdout (JSON, a table, or the bytes of the
//! format asked for); progress and errors go to stderr, so stdout stays a clean pipe.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, bail};
use arrow::array::{RecordBatch, UInt8Array};
use arrow::datatypes::{DataType, Field, Schema};
use clap::{Args, Subcommand};
use futures::StreamExt;
use serde_json::{Value, json};
use strata_queryd_api::{
    ChangesQuery, OrderBy, Predicate, QueryRequest, QuerydClient, VersionsQuery,
};
use strata_shared::manifest::IndexPolicy;
use strata_storaged_api::catalog::{CreateDatasetRequest, UploadQuery};
use strata_storaged_api::runs::RunsQuery;

use crate::progress::{Progress, Unit};

/// Where queryd is and who calls it (options of every command; the daemons ignore them).
#[derive(Debug, Args)]
pub struct Remote {
    /// queryd's base URL (client commands).
    #[arg(
        long,
        global = true,
        env = "STRATA_URL",
        default_value = "http://127.0.0.1:8080"
    )]
    pub url: String,
    /// The admin token (client commands: admin and write calls need it).
    #[arg(
        long,
        global = true,
        env = "STRATA_ADMIN_TOKEN",
        hide_env_values = true
    )]
    pub admin_token: Option<String>,
}

impl Remote {
    pub fn client(&self) -> QuerydClient {
        QuerydClient::new(&self.url, self.admin_token.as_deref())
    }
}

/// A dataset's name.
#[derive(Debug, Args)]
pub struct Named {
    pub name: String,
}

/// What to read: a JSON query body, or flags that make one.
#[derive(Debug, Args)]
pub struct Selection {
    /// A whole query body (JSON, or `@FILE`); flags below add to it.
    #[arg(long)]
    pub body: Option<String>,
    /// Columns to return, comma-separated.
    #[arg(long, value_delimiter = ',')]
    pub columns: Vec<String>,
    /// A predicate `COL OP VALUE` (e.g. `amount gt 500`, `country in ["FR","DE"]`,
    /// `note is_null`); repeat for AND. VALUE is JSON when it parses as JSON, else a string.
    #[arg(long = "where", value_name = "PREDICATE")]
    pub predicates: Vec<String>,
    /// Order by `COL` or `COL:desc`; repeat for more.
    #[arg(long)]
    pub order_by: Vec<String>,
    #[arg(long)]
    pub limit: Option<u64>,
    /// Read this retained version (time travel).
    #[arg(long)]
    pub version: Option<u64>,
    /// Read at least this version (the one a write answered): read your writes on any
    /// replica behind a load balancer.
    #[arg(long)]
    pub min_version: Option<u64>,
}

#[derive(Debug, Subcommand)]
pub enum RemoteAction {
    /// List the datasets.
    Datasets,
    /// A dataset's columns, primary key and a sample row.
    Schema(Named),
    /// One page of a query (`--format table` by default: aligned columns).
    Query {
        name: String,
        #[command(flatten)]
        selection: Selection,
        #[arg(long, default_value_t = 1)]
        page: u64,
        #[arg(long, default_value_t = 50)]
        page_size: u64,
        /// table, json, ndjson, csv, arrow or parquet.
        #[arg(long, default_value = "table")]
        format: String,
    },
    /// How many rows a query matches.
    Count {
        name: String,
        #[command(flatten)]
        selection: Selection,
    },
    /// Create a dataset from a local file, uploaded (Parquet, Arrow IPC stream, CSV with a
    /// header line, NDJSON), or from a source storaged reads (`s3://…`, or a path on
    /// storaged's machine with `file://`).
    Create {
        name: String,
        /// The file to upload, or the source URL.
        #[arg(long)]
        from: String,
        /// Primary-key columns, comma-separated (none: a table that takes no deltas).
        #[arg(long, value_delimiter = ',')]
        primary_key: Vec<String>,
        /// Keep a Delta Lake log beside the table.
        #[arg(long)]
        delta_mirror: bool,
        /// Which columns queryd indexes: auto (low-cardinality ones), none, or list.
        #[arg(long)]
        index: Option<String>,
        /// The columns to index (implies `--index list`), comma-separated.
        #[arg(long, value_delimiter = ',')]
        index_columns: Vec<String>,
    },
    /// Drop a dataset: gone for every reader and writer at once; its files are deleted by
    /// garbage collection once its grace period has passed. The name is free again at once.
    Drop(Named),
    /// Upsert the rows of a file (NDJSON: one JSON object per line; Parquet; Arrow IPC).
    Upsert(DeltaArgs),
    /// Delete the rows of a file by key (NDJSON, Parquet or Arrow IPC; key columns suffice
    /// in NDJSON).
    Delete(DeltaArgs),
    /// Write the table (or `--body`'s rows) as parquet, arrow, csv or ndjson.
    Export {
        name: String,
        #[arg(long, default_value = "parquet")]
        format: String,
        /// Export this retained version (default: the latest).
        #[arg(long)]
        version: Option<u64>,
        /// A query body (JSON or `@FILE`): export its rows instead of the whole table.
        #[arg(long)]
        body: Option<String>,
        /// Write here instead of stdout.
        #[arg(long, short)]
        output: Option<PathBuf>,
    },
    /// Compact now; prints the run.
    Compact(Named),
    /// Runs, newest first: imports, uploads, delta commits and compactions.
    Runs {
        /// Only this dataset's.
        name: Option<String>,
        /// import, upload, ingest or compaction.
        #[arg(long)]
        kind: Option<String>,
        #[arg(long)]
        limit: Option<usize>,
    },
    /// The retained versions, newest first, with their row counts.
    Versions(Named),
    /// The row changes after a version, as NDJSON; `--follow` waits for more.
    Changes {
        name: String,
        #[arg(long)]
        since: u64,
        #[arg(long)]
        until: Option<u64>,
        #[arg(long)]
        follow: bool,
    },
    /// Pin a dataset in this queryd's memory.
    Pin(Named),
    Unpin(Named),
    /// Drop a dataset from this queryd's memory (it is answered from its files meanwhile).
    Evict(Named),
    /// This queryd's cache: capacity, bytes used, hits, misses.
    Cache,
}

#[derive(Debug, Args)]
pub struct DeltaArgs {
    pub name: String,
    pub file: PathBuf,
    /// Rows per request.
    #[arg(long, default_value_t = 10_000)]
    pub batch_rows: usize,
}

pub async fn run(remote: &Remote, action: RemoteAction) -> anyhow::Result<()> {
    match call(remote, action).await {
        // stdout closed early (`| head`): the reader has what it wanted.
        Err(e)
            if e.chain().any(|c| {
                c.downcast_ref::<std::io::Error>()
                    .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
            }) =>
        {
            Ok(())
        }
        other => other,
    }
}

async fn call(remote: &Remote, action: RemoteAction) -> anyhow::Result<()> {
    let queryd = remote.client();
    match action {
        RemoteAction::Datasets => print_json(&queryd.datasets().await?),
        RemoteAction::Schema(Named { name }) => print_json(&queryd.schema(&name).await?),
        RemoteAction::Query {
            name,
            selection,
            page,
            page_size,
            format,
        } => {
            let mut request = selection.request()?;
            request.page = Some(page);
            request.page_size = Some(page_size);
            if format == "table" {
                // Arrow keeps the answer's column order and types for the table.
                let answer = queryd.query_as(&name, &request, "arrow").await?;
                let batches = read_batches(answer.body, FileFormat::Arrow)?;
                if batches.iter().all(|b| b.num_rows() == 0) {
                    println!("(no rows)");
                } else {
                    println!("{}", arrow::util::pretty::pretty_format_batches(&batches)?);
                }
                return Ok(());
            }
            let answer = queryd.query_as(&name, &request, &format).await?;
            std::io::stdout().write_all(&answer.body)?;
            Ok(())
        }
        RemoteAction::Count { name, selection } => {
            let answer = queryd.count(&name, &selection.request()?).await?;
            println!("{}", answer.body.count);
            Ok(())
        }
        RemoteAction::Create {
            name,
            from,
            primary_key,
            delta_mirror,
            index,
            index_columns,
        } => {
            let index = index
                .map(|i| serde_json::from_value(Value::String(i)))
                .transpose()
                .context("--index is one of auto, none, list")?;
            let new = New {
                primary_key,
                delta_mirror,
                index,
                index_columns,
            };
            print_json(&create(&queryd, &name, &from, new).await?)
        }
        RemoteAction::Drop(Named { name }) => print_json(&queryd.drop_dataset(&name).await?),
        RemoteAction::Upsert(args) => write_deltas(&queryd, &args, Kind::Upsert).await,
        RemoteAction::Delete(args) => write_deltas(&queryd, &args, Kind::Delete).await,
        RemoteAction::Export {
            name,
            format,
            version,
            body,
            output,
        } => {
            let body = body.as_deref().map(read_body).transpose()?;
            export(&queryd, &name, &format, version, body, output.as_deref()).await
        }
        RemoteAction::Compact(Named { name }) => print_json(&queryd.compact(&name).await?),
        RemoteAction::Runs { name, kind, limit } => {
            let kind = kind
                .map(|k| serde_json::from_value(Value::String(k.clone())))
                .transpose()
                .context("--kind is one of import, upload, ingest, compaction")?;
            let query = RunsQuery {
                dataset: name,
                kind,
                limit,
            };
            print_json(&queryd.runs(&query).await?)
        }
        RemoteAction::Versions(Named { name }) => {
            let query = VersionsQuery {
                before: None,
                limit: Some(100),
            };
            print_json(&queryd.versions(&name, &query).await?)
        }
        RemoteAction::Changes {
            name,
            since,
            until,
            follow,
        } => changes(&queryd, &name, since, until, follow).await,
        RemoteAction::Pin(Named { name }) => print_json(&queryd.pin(&name).await?),
        RemoteAction::Unpin(Named { name }) => print_json(&queryd.unpin(&name).await?),
        RemoteAction::Evict(Named { name }) => print_json(&queryd.evict(&name).await?),
        RemoteAction::Cache => print_json(&queryd.cache_stats().await?),
    }
}

fn print_json(value: &impl serde::Serialize) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

/// JSON text, or the contents of `@FILE`.
fn read_body(text: &str) -> anyhow::Result<Value> {
    let text = match text.strip_prefix('@') {
        Some(path) => std::fs::read_to_string(path).with_context(|| format!("reading {path}"))?,
        None => text.to_owned(),
    };
    serde_json::from_str(&text).context("the query body is not JSON")
}

impl Selection {
    /// The query body: `--body`, with the flags' parts added.
    fn request(&self) -> anyhow::Result<QueryRequest> {
        let mut request: QueryRequest = match &self.body {
            Some(body) => serde_json::from_value(read_body(body)?)
                .context("the query body is not a query (see the README's query body)")?,
            None => QueryRequest::default(),
        };
        if !self.columns.is_empty() {
            request.columns = Some(self.columns.clone());
        }
        for text in &self.predicates {
            request.predicates.push(predicate(text)?);
        }
        for text in &self.order_by {
            let (col, dir) = text.split_once(':').unwrap_or((text, "asc"));
            request.order_by.push(OrderBy {
                col: col.to_owned(),
                dir: Some(dir.to_owned()),
            });
        }
        request.limit = self.limit.or(request.limit);
        request.version = self.version.or(request.version);
        request.min_version = self.min_version.or(request.min_version);
        Ok(request)
    }
}

/// `COL OP [VALUE]`: VALUE is JSON when it parses as JSON (numbers, booleans, arrays for
/// `in`), else the text itself.
fn predicate(text: &str) -> anyhow::Result<Predicate> {
    let mut parts = text.trim().splitn(3, char::is_whitespace);
    let (Some(col), Some(op)) = (parts.next(), parts.next()) else {
        bail!("--where {text:?}: expected COL OP VALUE, e.g. \"amount gt 500\"");
    };
    let value = parts
        .next()
        .map(str::trim)
        .map(|v| serde_json::from_str::<Value>(v).unwrap_or_else(|_| Value::String(v.to_owned())));
    Ok(Predicate::new(col, op, value))
}

/// What a new dataset is besides its rows.
struct New {
    primary_key: Vec<String>,
    delta_mirror: bool,
    index: Option<IndexPolicy>,
    index_columns: Vec<String>,
}

/// A local Parquet or Arrow file is uploaded; anything else is a source storaged reads.
async fn create(
    queryd: &QuerydClient,
    name: &str,
    from: &str,
    new: New,
) -> anyhow::Result<strata_storaged_api::catalog::DatasetInfo> {
    let local = Path::new(from);
    if local.is_file() {
        let content_type = match file_format(local)? {
            FileFormat::Parquet => strata_storaged_api::PARQUET_CONTENT_TYPE,
            FileFormat::Arrow => strata_queryd_api::ARROW_STREAM,
            FileFormat::Csv => "text/csv",
            FileFormat::Ndjson => strata_queryd_api::NDJSON,
        };
        let file = tokio::fs::File::open(local)
            .await
            .with_context(|| format!("opening {from}"))?;
        let size = file.metadata().await.ok().map(|m| m.len());
        let query = UploadQuery {
            index: new.index,
            index_columns: (!new.index_columns.is_empty()).then(|| new.index_columns.join(",")),
            ..UploadQuery::new(&new.primary_key).with_delta_mirror(new.delta_mirror)
        };
        // The bar follows the bytes sent; the import finishes after the last one.
        let progress = std::sync::Arc::new(std::sync::Mutex::new(Progress::new(
            "upload",
            Unit::Bytes,
            size,
        )));
        let counted = progress.clone();
        let body = tokio_util::io::ReaderStream::new(file).inspect(move |chunk| {
            if let (Ok(chunk), Ok(mut progress)) = (chunk, counted.lock()) {
                progress.advance(chunk.len() as u64);
            }
        });
        if let Ok(progress) = progress.lock() {
            progress.line("sending; storaged imports as it arrives");
        }
        let created = queryd
            .upload_dataset_with(name, &query, content_type, reqwest::Body::wrap_stream(body))
            .await;
        if let Ok(progress) = progress.lock() {
            progress.finish();
        }
        return Ok(created?);
    }
    if !from.contains("://") {
        bail!("{from}: no such file (a source storaged reads is a URL: s3://… or file://…)");
    }
    let request = CreateDatasetRequest {
        name: name.to_owned(),
        source: from.to_owned(),
        format: Default::default(),
        schema: None,
        primary_key: new.primary_key,
        delta_mirror: new.delta_mirror,
        index: new.index,
        index_columns: new.index_columns,
    };
    Ok(queryd.create_dataset(&request).await?)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum FileFormat {
    Parquet,
    Arrow,
    Csv,
    Ndjson,
}

fn file_format(path: &Path) -> anyhow::Result<FileFormat> {
    let extension = path
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or("")
        .to_ascii_lowercase();
    Ok(match extension.as_str() {
        "parquet" => FileFormat::Parquet,
        "arrow" | "arrows" | "ipc" => FileFormat::Arrow,
        "ndjson" | "jsonl" | "json" => FileFormat::Ndjson,
        "csv" => FileFormat::Csv,
        other => bail!(
            "{}: unknown file type {other:?} (expected .parquet, .arrow/.arrows, .csv or .ndjson/.jsonl)",
            path.display()
        ),
    })
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Upsert,
    Delete,
}

/// Sends `args.file` in batches of `batch_rows`, each with an idempotency key made of the
/// file's content, the batch size and the batch's number: run again after an interruption,
/// the batches already committed are answered from their first commit and not written twice
/// (as long as they are among the dataset's last 1 024 transactions).
async fn write_deltas(queryd: &QuerydClient, args: &DeltaArgs, kind: Kind) -> anyhow::Result<()> {
    let bytes =
        std::fs::read(&args.file).with_context(|| format!("reading {}", args.file.display()))?;
    let mut hasher = DefaultHasher::new();
    bytes.hash(&mut hasher);
    args.batch_rows.hash(&mut hasher);
    let fingerprint = format!("{:016x}", hasher.finish());
    let label = match kind {
        Kind::Upsert => "upsert",
        Kind::Delete => "delete",
    };
    let batch_rows = args.batch_rows.max(1);
    let bodies: Vec<(usize, DeltaBody)> = match file_format(&args.file)? {
        FileFormat::Ndjson => {
            let rows: Vec<Value> = std::str::from_utf8(&bytes)
                .context("an NDJSON file is UTF-8")?
                .lines()
                .enumerate()
                .filter(|(_, l)| !l.trim().is_empty())
                .map(|(i, l)| {
                    serde_json::from_str(l).with_context(|| {
                        format!("{} line {}: not JSON", args.file.display(), i + 1)
                    })
                })
                .collect::<anyhow::Result<_>>()?;
            rows.chunks(batch_rows)
                .map(|chunk| {
                    let field = match kind {
                        Kind::Upsert => "upserts",
                        Kind::Delete => "deletes",
                    };
                    (chunk.len(), DeltaBody::Json(json!({ field: chunk })))
                })
                .collect()
        }
        format => {
            let batches = read_batches(bytes, format)?;
            let op = match kind {
                Kind::Upsert => 0,
                Kind::Delete => 1,
            };
            rechunk(&batches, batch_rows)?
                .iter()
                .map(|part| {
                    let body = arrow_stream(&with_op(part, op)?)?;
                    Ok((part.num_rows(), DeltaBody::Arrow(body)))
                })
                .collect::<anyhow::Result<_>>()?
        }
    };
    let total = bodies.len();
    let total_rows = bodies.iter().map(|(rows, _)| *rows as u64).sum();
    let mut progress = Progress::new(label, Unit::Rows, Some(total_rows));
    let mut rows_done = 0;
    let mut version = None;
    for (i, (rows, body)) in bodies.into_iter().enumerate() {
        let key = format!("strata-cli-{label}-{fingerprint}-{i}");
        let committed = match body {
            DeltaBody::Json(value) => queryd.post_deltas(&args.name, &value, Some(&key)).await,
            DeltaBody::Arrow(bytes) => {
                queryd
                    .post_delta_bytes(
                        &args.name,
                        strata_queryd_api::ARROW_STREAM,
                        bytes,
                        Some(&key),
                    )
                    .await
            }
        }
        .with_context(|| format!("batch {}/{total} of {}", i + 1, args.file.display()))?;
        rows_done += rows;
        version = Some(committed.body.version);
        progress.advance(rows as u64);
        progress.line(&format!(
            "(batch {}/{total}, version {})",
            i + 1,
            committed.body.version
        ));
    }
    progress.finish();
    println!(
        "{}",
        json!({"dataset": args.name, "rows": rows_done, "batches": total, "version": version})
    );
    Ok(())
}

enum DeltaBody {
    Json(Value),
    Arrow(Vec<u8>),
}

fn read_batches(bytes: Vec<u8>, format: FileFormat) -> anyhow::Result<Vec<RecordBatch>> {
    Ok(match format {
        FileFormat::Parquet => {
            parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(
                bytes::Bytes::from(bytes),
            )?
            .build()?
            .collect::<Result<_, _>>()?
        }
        FileFormat::Arrow => {
            arrow::ipc::reader::StreamReader::try_new(std::io::Cursor::new(bytes), None)?
                .collect::<Result<_, _>>()?
        }
        FileFormat::Ndjson => bail!("NDJSON is sent as JSON, not read as batches"),
        FileFormat::Csv => bail!(
            "CSV rows cannot be upserted or deleted yet (their column types would be guessed): \
             send NDJSON, Parquet or Arrow IPC"
        ),
    })
}

/// `batches` regrouped into batches of `rows` rows (the last one shorter): a file's own
/// batches follow its row groups, not the request size asked for.
fn rechunk(batches: &[RecordBatch], rows: usize) -> anyhow::Result<Vec<RecordBatch>> {
    let Some(first) = batches.first() else {
        return Ok(Vec::new());
    };
    let schema = first.schema();
    let mut out = Vec::new();
    let mut pending: Vec<RecordBatch> = Vec::new();
    let mut pending_rows = 0;
    for batch in batches {
        let mut offset = 0;
        while offset < batch.num_rows() {
            let len = (rows - pending_rows).min(batch.num_rows() - offset);
            pending.push(batch.slice(offset, len));
            pending_rows += len;
            offset += len;
            if pending_rows == rows {
                out.push(arrow::compute::concat_batches(&schema, &pending)?);
                pending.clear();
                pending_rows = 0;
            }
        }
    }
    if pending_rows > 0 {
        out.push(arrow::compute::concat_batches(&schema, &pending)?);
    }
    Ok(out)
}

/// `batch` with the delta `_op` column (0 upsert, 1 delete), unless it has one.
fn with_op(batch: &RecordBatch, op: u8) -> anyhow::Result<RecordBatch> {
    if batch.schema().column_with_name("_op").is_some() {
        return Ok(batch.clone());
    }
    let mut fields: Vec<Field> = batch
        .schema()
        .fields()
        .iter()
        .map(|f| f.as_ref().clone())
        .collect();
    fields.push(Field::new("_op", DataType::UInt8, false));
    let mut columns = batch.columns().to_vec();
    columns.push(Arc::new(UInt8Array::from_value(op, batch.num_rows())));
    Ok(RecordBatch::try_new(
        Arc::new(Schema::new(fields)),
        columns,
    )?)
}

fn arrow_stream(batch: &RecordBatch) -> anyhow::Result<Vec<u8>> {
    let mut out = Vec::new();
    let mut writer = arrow::ipc::writer::StreamWriter::try_new(&mut out, &batch.schema())?;
    writer.write(batch)?;
    writer.finish()?;
    drop(writer);
    Ok(out)
}

/// Streams the export to `output` (or stdout), with the bytes written as progress.
async fn export(
    queryd: &QuerydClient,
    name: &str,
    format: &str,
    version: Option<u64>,
    body: Option<Value>,
    output: Option<&Path>,
) -> anyhow::Result<()> {
    let answer = queryd.export(name, format, version, body.as_ref()).await?;
    let mut response = answer.body;
    let mut sink: Box<dyn Write> = match output {
        Some(path) => Box::new(std::io::BufWriter::new(
            std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?,
        )),
        None => Box::new(std::io::stdout().lock()),
    };
    // A spooled Parquet export has a length; the others stream without one.
    let mut progress = Progress::new("export", Unit::Bytes, response.content_length());
    let mut written: u64 = 0;
    while let Some(chunk) = response.chunk().await.context("reading the export")? {
        sink.write_all(&chunk)?;
        written += chunk.len() as u64;
        progress.advance(chunk.len() as u64);
    }
    sink.flush()?;
    progress.finish();
    if let Some(path) = output {
        eprintln!(
            "export: {name} version {} as {format}: {written} bytes to {}",
            answer.version.map_or("?".into(), |v| v.to_string()),
            path.display()
        );
    }
    Ok(())
}

/// Prints the changes after `since` as NDJSON; with `follow`, keeps asking from the version
/// each answer reaches (a long poll of 30 s) until interrupted.
async fn changes(
    queryd: &QuerydClient,
    name: &str,
    mut since: u64,
    until: Option<u64>,
    follow: bool,
) -> anyhow::Result<()> {
    let mut stdout = std::io::stdout();
    loop {
        let query = ChangesQuery {
            since: Some(since),
            until,
            format: None,
            wait: follow.then_some(30),
        };
        let answer = queryd.changes(name, &query).await?;
        stdout.write_all(&answer.body)?;
        stdout.flush()?;
        if !follow || until.is_some() {
            return Ok(());
        }
        since = answer.version.context("the answer names no version")?;
    }
}
