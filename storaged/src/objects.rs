//! Handlers of the internal object API (protocol in `strata_storaged_api::objects`): each
//! translates HTTP into one `ObjectStore` call and back.

use axum::body::{Body, Bytes};
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, SecondsFormat, Utc};
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};
use object_store::ObjectStoreExt;
use object_store::path::Path;
use object_store::{
    CopyMode, CopyOptions, GetOptions, GetRange, GetResult, GetResultPayload, ObjectMeta, PutMode,
    PutOptions, PutPayload, UpdateVersion,
};
use strata_daemon::error::{find_cause, object_error};
use strata_daemon::{ApiError, ApiJson, ErrorCode};
use strata_storaged_api::objects::{
    self, CopyRequest, ListQuery, ListResponse, ObjectMetaWire, ObjectQuery, PutResponse, WriteMode,
};

use crate::AppState;

/// The longest object key taken, in bytes (S3's limit).
const MAX_KEY_BYTES: usize = 1024;
/// The longest segment of a key (a file name on a local store).
const MAX_SEGMENT_BYTES: usize = 255;

/// An object's key: a valid path that names something (not the root), short enough for
/// every store. A key a store cannot hold is the request's fault (400), not the store's
/// (502, which is what a 5 000-character or empty key answered).
fn parse_path(path: &str) -> Result<Path, ApiError> {
    let key = parse_prefix(path)?;
    if key.parts().next().is_none() {
        return Err(ApiError::bad_request(format!(
            "invalid path {path:?}: it names no object"
        )));
    }
    Ok(key)
}

/// A store error met on `key`, named by the key (a local store's errors name the server
/// path). On a local directory store a key cannot name both an object and a prefix of others
/// (`a` and `a/b`: a file and a directory of one name); such a key is the request's fault,
/// like any key the store cannot hold (400), not a store failure (502).
fn key_error(e: &object_store::Error, key: &str) -> ApiError {
    let io = find_cause::<std::io::Error>(e).map(std::io::Error::kind);
    if let Some(std::io::ErrorKind::IsADirectory | std::io::ErrorKind::NotADirectory) = io {
        return ApiError::new(
            ErrorCode::InvalidPath,
            format!(
                "invalid path {key:?}: the store holds other objects under it or under \
                 one of its prefixes (a local store cannot hold `a` and `a/b` at once)"
            ),
        );
    }
    object_error(e, key)
}

/// A path that may be the root (a listing prefix or offset).
fn parse_prefix(path: &str) -> Result<Path, ApiError> {
    let shown = || path.chars().take(64).collect::<String>();
    let key = Path::parse(path)
        .map_err(|e| ApiError::bad_request(format!("invalid path {:?}: {e}", shown())))?;
    if key.as_ref().len() > MAX_KEY_BYTES
        || key.parts().any(|p| p.as_ref().len() > MAX_SEGMENT_BYTES)
    {
        return Err(ApiError::bad_request(format!(
            "invalid path {:?}…: keys have at most {MAX_KEY_BYTES} bytes, segments \
             {MAX_SEGMENT_BYTES}",
            shown()
        )));
    }
    Ok(key)
}

fn header_text<'a>(headers: &'a HeaderMap, name: &str) -> Result<Option<&'a str>, ApiError> {
    headers
        .get(name)
        .map(|v| {
            v.to_str()
                .map_err(|_| ApiError::bad_request(format!("header {name} is not text")))
        })
        .transpose()
}

fn header_time(headers: &HeaderMap, name: &str) -> Result<Option<DateTime<Utc>>, ApiError> {
    header_text(headers, name)?
        .map(|v| {
            DateTime::parse_from_rfc3339(v)
                .map(|t| t.with_timezone(&Utc))
                .map_err(|_| ApiError::bad_request(format!("header {name} is not RFC 3339")))
        })
        .transpose()
}

/// `bytes=a-b`, `bytes=a-`, `bytes=-n` (one range only).
fn parse_range(value: &str) -> Result<GetRange, ApiError> {
    let bad = || {
        ApiError::new(
            ErrorCode::InvalidRange,
            format!("unsupported range {value:?}"),
        )
    };
    let spec = value.strip_prefix("bytes=").ok_or_else(bad)?;
    let (start, end) = spec.split_once('-').ok_or_else(bad)?;
    let num = |s: &str| s.parse::<u64>().map_err(|_| bad());
    match (start.is_empty(), end.is_empty()) {
        (false, false) => {
            let (a, b) = (num(start)?, num(end)?);
            if b < a {
                return Err(bad());
            }
            Ok(GetRange::Bounded(a..b + 1))
        }
        (false, true) => Ok(GetRange::Offset(num(start)?)),
        (true, false) => Ok(GetRange::Suffix(num(end)?)),
        (true, true) => Err(bad()),
    }
}

fn insert(headers: &mut HeaderMap, name: &'static str, value: String) {
    if let Ok(v) = HeaderValue::from_str(&value) {
        headers.insert(HeaderName::from_static(name), v);
    }
}

fn meta_headers(headers: &mut HeaderMap, meta: &ObjectMeta) {
    insert(headers, objects::SIZE, meta.size.to_string());
    insert(
        headers,
        objects::LAST_MODIFIED,
        meta.last_modified
            .to_rfc3339_opts(SecondsFormat::Nanos, true),
    );
    if let Some(e_tag) = &meta.e_tag {
        insert(headers, "etag", e_tag.clone());
    }
    if let Some(version) = &meta.version {
        insert(headers, objects::VERSION, version.clone());
    }
}

async fn read(
    state: &AppState,
    query: &ObjectQuery,
    headers: &HeaderMap,
    head: bool,
) -> Result<Response, ApiError> {
    let path = parse_path(&query.path)?;
    let options = GetOptions {
        if_match: header_text(headers, header::IF_MATCH.as_str())?.map(str::to_owned),
        if_none_match: header_text(headers, header::IF_NONE_MATCH.as_str())?.map(str::to_owned),
        if_modified_since: header_time(headers, objects::IF_MODIFIED_SINCE)?,
        if_unmodified_since: header_time(headers, objects::IF_UNMODIFIED_SINCE)?,
        range: header_text(headers, header::RANGE.as_str())?
            .map(parse_range)
            .transpose()?,
        version: header_text(headers, objects::VERSION)?.map(str::to_owned),
        head,
        ..Default::default()
    };
    let result = state
        .store
        .get_opts(&path, options)
        .await
        .map_err(|e| key_error(&e, &query.path))?;
    let meta = result.meta.clone();
    let mut response = if head {
        Response::new(Body::empty())
    } else {
        let range = result.range.clone();
        let mut r = Response::new(Body::from_stream(body_stream(result)));
        insert(
            r.headers_mut(),
            objects::RANGE_START,
            range.start.to_string(),
        );
        insert(r.headers_mut(), objects::RANGE_END, range.end.to_string());
        r
    };
    meta_headers(response.headers_mut(), &meta);
    Ok(response)
}

/// Bytes per blocking read of a range of a local file. object_store's own stream of a file
/// reads 8 KiB per trip to the blocking pool: 2 048 trips for a 16 MiB range, which made
/// storaged's share of a compaction mostly thread hand-offs (`benches/compact`, profiled).
/// A response holds one chunk at a time.
const FILE_CHUNK_BYTES: u64 = 1024 * 1024;

/// The body of a GET: local files in chunks of [`FILE_CHUNK_BYTES`], other stores' streams as
/// they come.
fn body_stream(result: GetResult) -> BoxStream<'static, object_store::Result<Bytes>> {
    let GetResult { payload, range, .. } = result;
    match payload {
        GetResultPayload::File(file, path) => file_chunks(file, path, range),
        GetResultPayload::Stream(stream) => stream,
    }
}

fn file_chunks(
    file: std::fs::File,
    path: std::path::PathBuf,
    range: std::ops::Range<u64>,
) -> BoxStream<'static, object_store::Result<Bytes>> {
    let end = range.end;
    futures::stream::try_unfold((file, range.start), move |(mut file, at)| {
        let path = path.clone();
        async move {
            if at >= end {
                return Ok(None);
            }
            let len = (end - at).min(FILE_CHUNK_BYTES);
            let read = tokio::task::spawn_blocking(move || {
                use std::io::{Read, Seek, SeekFrom};
                file.seek(SeekFrom::Start(at))?;
                // `len` is at most FILE_CHUNK_BYTES, so it fits a usize.
                let mut buffer = vec![0; len as usize];
                file.read_exact(&mut buffer)?;
                Ok::<_, std::io::Error>((file, buffer))
            })
            .await;
            let failed =
                |source: Box<dyn std::error::Error + Send + Sync>| object_store::Error::Generic {
                    store: "LocalFileSystem",
                    source: format!("reading {}: {source}", path.display()).into(),
                };
            match read {
                Ok(Ok((file, buffer))) => Ok(Some((Bytes::from(buffer), (file, at + len)))),
                Ok(Err(e)) => Err(failed(Box::new(e))),
                Err(e) => Err(failed(Box::new(e))),
            }
        }
    })
    .boxed()
}

pub async fn get_object(
    State(state): State<AppState>,
    Query(query): Query<ObjectQuery>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    read(&state, &query, &headers, false).await
}

pub async fn head_object(
    State(state): State<AppState>,
    Query(query): Query<ObjectQuery>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    read(&state, &query, &headers, true).await
}

pub async fn put_object(
    State(state): State<AppState>,
    Query(query): Query<ObjectQuery>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<axum::Json<PutResponse>, ApiError> {
    let path = parse_path(&query.path)?;
    let mode = match query.mode.unwrap_or(WriteMode::Overwrite) {
        WriteMode::Overwrite => PutMode::Overwrite,
        WriteMode::Create => PutMode::Create,
        WriteMode::Update => PutMode::Update(UpdateVersion {
            e_tag: header_text(&headers, header::IF_MATCH.as_str())?.map(str::to_owned),
            version: header_text(&headers, objects::VERSION)?.map(str::to_owned),
        }),
    };
    let result = state
        .store
        .put_opts(&path, PutPayload::from(body), PutOptions::from(mode))
        .await
        .map_err(|e| key_error(&e, &query.path))?;
    Ok(axum::Json(PutResponse {
        e_tag: result.e_tag,
        version: result.version,
    }))
}

pub async fn delete_object(
    State(state): State<AppState>,
    Query(query): Query<ObjectQuery>,
) -> Result<StatusCode, ApiError> {
    let path = parse_path(&query.path)?;
    state
        .store
        .delete(&path)
        .await
        .map_err(|e| key_error(&e, &query.path))?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn list(
    State(state): State<AppState>,
    Query(query): Query<ListQuery>,
) -> Result<axum::Json<ListResponse>, ApiError> {
    let prefix = query.prefix.as_deref().map(parse_prefix).transpose()?;
    let response = if query.delimiter {
        let listed = state
            .store
            .list_with_delimiter(prefix.as_ref())
            .await
            .map_err(|e| key_error(&e, query.prefix.as_deref().unwrap_or("")))?;
        ListResponse {
            objects: listed
                .objects
                .into_iter()
                .map(ObjectMetaWire::from)
                .collect(),
            common_prefixes: listed
                .common_prefixes
                .iter()
                .map(|p| p.to_string())
                .collect(),
        }
    } else {
        // The offset is applied here rather than pushed down as S3 `start-after`: SeaweedFS
        // skips whole directories that sort after the offset's prefix (e.g. `a/…` for offset
        // `a`), and correctness beats saving one listing.
        let offset = query.offset.as_deref().map(parse_prefix).transpose()?;
        let objects: Vec<ObjectMeta> = state
            .store
            .list(prefix.as_ref())
            .try_filter(|meta| {
                std::future::ready(offset.as_ref().is_none_or(|o| meta.location > *o))
            })
            .try_collect()
            .await
            .map_err(|e| key_error(&e, query.prefix.as_deref().unwrap_or("")))?;
        ListResponse {
            objects: objects.into_iter().map(ObjectMetaWire::from).collect(),
            common_prefixes: Vec::new(),
        }
    };
    Ok(axum::Json(response))
}

pub async fn copy(
    State(state): State<AppState>,
    ApiJson(request): ApiJson<CopyRequest>,
) -> Result<impl IntoResponse, ApiError> {
    let from = parse_path(&request.from)?;
    let to = parse_path(&request.to)?;
    match request.mode {
        WriteMode::Overwrite => {
            let options = CopyOptions::new().with_mode(CopyMode::Overwrite);
            state
                .store
                .copy_opts(&from, &to, options)
                .await
                .map_err(|e| key_error(&e, &request.from))?;
        }
        // Copy-if-not-exists is a read and a put-if-absent: every store storaged accepts
        // enforces put-if-absent, while native conditional copy needs per-store S3 settings.
        WriteMode::Create => {
            let read = async { state.store.get(&from).await?.bytes().await };
            let body = read.await.map_err(|e| key_error(&e, &request.from))?;
            let create = PutOptions::from(PutMode::Create);
            state
                .store
                .put_opts(&to, PutPayload::from(body), create)
                .await
                .map_err(|e| key_error(&e, &request.to))?;
        }
        WriteMode::Update => return Err(ApiError::bad_request("copy takes overwrite or create")),
    }
    Ok(StatusCode::NO_CONTENT)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        assert_eq!(parse_range("bytes=2-4").unwrap(), GetRange::Bounded(2..5));
        assert_eq!(parse_range("bytes=3-").unwrap(), GetRange::Offset(3));
        assert_eq!(parse_range("bytes=-2").unwrap(), GetRange::Suffix(2));
        for bad in ["2-4", "bytes=4-2", "bytes=-", "bytes=a-b"] {
            assert!(parse_range(bad).is_err(), "{bad}");
        }
    }
}
