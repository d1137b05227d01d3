//! [`RemoteStore`]: an `object_store::ObjectStore` over storaged's internal object API
//! (see [`crate::objects`] for the protocol). Error kinds survive the round trip, so code
//! written against `Arc<dyn ObjectStore>` behaves the same on a direct store.

use std::fmt;

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use chrono::{DateTime, Utc};
use futures::stream::{self, BoxStream, StreamExt, TryStreamExt};
use http::{HeaderMap, StatusCode, header};
use object_store::path::Path;
use object_store::{
    CopyMode, CopyOptions, GetOptions, GetRange, GetResult, GetResultPayload, ListResult,
    MultipartUpload, ObjectMeta, ObjectStore, PutMode, PutMultipartOptions, PutOptions, PutPayload,
    PutResult, Result, UploadPart,
};
use strata_daemon::auth::INTERNAL_TOKEN_HEADER;

use crate::objects::{
    self, COPY_ROUTE, CopyRequest, LIST_ROUTE, ListQuery, ListResponse, OBJECT_ROUTE, ObjectQuery,
    PutResponse, WriteMode,
};

const STORE: &str = "RemoteStore";

/// A daemon run on its own needs the internal token to reach storaged.
#[derive(Debug, thiserror::Error)]
#[error("auth.internal_token (or STRATA_INTERNAL_TOKEN) is required to reach storaged at {url}")]
pub struct NoInternalToken {
    pub url: String,
}

#[derive(Clone)]
pub struct RemoteStore {
    base_url: String,
    token: String,
    http: reqwest::Client,
}

impl fmt::Debug for RemoteStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RemoteStore")
            .field("base_url", &self.base_url)
            .finish_non_exhaustive()
    }
}

impl fmt::Display for RemoteStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RemoteStore({})", self.base_url)
    }
}

impl RemoteStore {
    /// `base_url` is storaged's URL (`http://host:port`); `token` its internal token.
    pub fn new(base_url: &str, token: &str) -> Self {
        Self {
            base_url: base_url.trim_end_matches('/').to_owned(),
            token: token.to_owned(),
            http: reqwest::Client::new(),
        }
    }

    /// The client the other daemons use: storaged's URL and the internal token from the config.
    pub fn from_config(config: &strata_daemon::config::Config) -> Result<Self, NoInternalToken> {
        let url = config.storaged.url();
        match config.auth.internal_token.as_deref() {
            Some(token) if !token.is_empty() => Ok(Self::new(&url, token)),
            _ => Err(NoInternalToken { url }),
        }
    }

    fn request(&self, method: reqwest::Method, route: &str) -> reqwest::RequestBuilder {
        self.http
            .request(method, format!("{}{route}", self.base_url))
            .header(INTERNAL_TOKEN_HEADER, &self.token)
    }

    async fn send(
        &self,
        builder: reqwest::RequestBuilder,
        path: &str,
    ) -> Result<reqwest::Response> {
        let response = builder.send().await.map_err(generic)?;
        if response.status().is_success() {
            return Ok(response);
        }
        Err(status_error(response, path).await)
    }

    async fn fetch_list(&self, query: ListQuery) -> Result<ListResponse> {
        let path = query.prefix.clone().unwrap_or_default();
        let response = self
            .send(
                self.request(reqwest::Method::GET, LIST_ROUTE).query(&query),
                &path,
            )
            .await?;
        response.json().await.map_err(generic)
    }

    fn list_stream(&self, query: ListQuery) -> BoxStream<'static, Result<ObjectMeta>> {
        let this = self.clone();
        stream::once(async move { this.fetch_list(query).await })
            .map_ok(|list| stream::iter(list.objects.into_iter().map(to_meta)))
            .try_flatten()
            .boxed()
    }
}

fn generic(e: impl std::error::Error + Send + Sync + 'static) -> object_store::Error {
    object_store::Error::Generic {
        store: STORE,
        source: Box::new(e),
    }
}

fn to_meta(wire: objects::ObjectMetaWire) -> Result<ObjectMeta> {
    ObjectMeta::try_from(wire).map_err(|source| object_store::Error::InvalidPath { source })
}

/// Rebuilds the `object_store::Error` kind from the status storaged answered with.
async fn status_error(response: reqwest::Response, path: &str) -> object_store::Error {
    let status = response.status();
    let text = response.text().await.unwrap_or_default();
    let message = serde_json::from_str::<strata_daemon::error::ErrorBody>(&text)
        .map(|b| b.error)
        .unwrap_or(text);
    let source: Box<dyn std::error::Error + Send + Sync> =
        format!("storaged answered {status}: {message}").into();
    let path = path.to_owned();
    match status {
        StatusCode::NOT_FOUND => object_store::Error::NotFound { path, source },
        StatusCode::CONFLICT => object_store::Error::AlreadyExists { path, source },
        StatusCode::PRECONDITION_FAILED => object_store::Error::Precondition { path, source },
        StatusCode::NOT_MODIFIED => object_store::Error::NotModified { path, source },
        StatusCode::NOT_IMPLEMENTED => object_store::Error::NotImplemented {
            operation: message,
            implementer: "storaged".into(),
        },
        StatusCode::UNAUTHORIZED => object_store::Error::Unauthenticated { path, source },
        StatusCode::FORBIDDEN => object_store::Error::PermissionDenied { path, source },
        _ => object_store::Error::Generic {
            store: STORE,
            source,
        },
    }
}

fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

fn header_u64(headers: &HeaderMap, name: &str) -> Result<u64> {
    header_str(headers, name)
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| generic(MissingHeader(name.to_owned())))
}

#[derive(Debug, thiserror::Error)]
#[error("storaged response lacks a valid {0} header")]
struct MissingHeader(String);

fn range_header(range: &GetRange) -> String {
    match range {
        GetRange::Bounded(r) => format!("bytes={}-{}", r.start, r.end.saturating_sub(1)),
        GetRange::Offset(o) => format!("bytes={o}-"),
        GetRange::Suffix(n) => format!("bytes=-{n}"),
    }
}

#[async_trait]
impl ObjectStore for RemoteStore {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> Result<PutResult> {
        let (mode, expected) = match opts.mode {
            PutMode::Overwrite => (WriteMode::Overwrite, None),
            PutMode::Create => (WriteMode::Create, None),
            PutMode::Update(v) => (WriteMode::Update, Some(v)),
        };
        let query = ObjectQuery {
            path: location.to_string(),
            mode: Some(mode),
        };
        let mut builder = self
            .request(reqwest::Method::PUT, OBJECT_ROUTE)
            .query(&query)
            .body(Bytes::from(payload));
        if let Some(v) = expected {
            if let Some(e_tag) = v.e_tag {
                builder = builder.header(header::IF_MATCH, e_tag);
            }
            if let Some(version) = v.version {
                builder = builder.header(objects::VERSION, version);
            }
        }
        let response = self.send(builder, location.as_ref()).await?;
        let put: PutResponse = response.json().await.map_err(generic)?;
        Ok(PutResult {
            e_tag: put.e_tag,
            version: put.version,
        })
    }

    /// Parts are buffered in memory and written with one PUT on completion: the daemons
    /// write files of bounded size (a delta, one rolling base part), and a single PUT keeps
    /// the write atomic without multipart state on the server.
    async fn put_multipart_opts(
        &self,
        location: &Path,
        _opts: PutMultipartOptions,
    ) -> Result<Box<dyn MultipartUpload>> {
        Ok(Box::new(BufferedUpload {
            store: self.clone(),
            location: location.clone(),
            buffer: BytesMut::new(),
        }))
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> Result<GetResult> {
        let method = if options.head {
            reqwest::Method::HEAD
        } else {
            reqwest::Method::GET
        };
        let query = ObjectQuery {
            path: location.to_string(),
            mode: None,
        };
        let mut builder = self.request(method, OBJECT_ROUTE).query(&query);
        if let Some(v) = &options.if_match {
            builder = builder.header(header::IF_MATCH, v);
        }
        if let Some(v) = &options.if_none_match {
            builder = builder.header(header::IF_NONE_MATCH, v);
        }
        if let Some(t) = options.if_modified_since {
            builder = builder.header(objects::IF_MODIFIED_SINCE, t.to_rfc3339());
        }
        if let Some(t) = options.if_unmodified_since {
            builder = builder.header(objects::IF_UNMODIFIED_SINCE, t.to_rfc3339());
        }
        if let Some(v) = &options.version {
            builder = builder.header(objects::VERSION, v);
        }
        if let Some(r) = &options.range {
            builder = builder.header(header::RANGE, range_header(r));
        }
        let response = self.send(builder, location.as_ref()).await?;
        let headers = response.headers();
        let size = header_u64(headers, objects::SIZE)?;
        let last_modified = header_str(headers, objects::LAST_MODIFIED)
            .and_then(|v| DateTime::parse_from_rfc3339(v).ok())
            .map(|t| t.with_timezone(&Utc))
            .ok_or_else(|| generic(MissingHeader(objects::LAST_MODIFIED.into())))?;
        let meta = ObjectMeta {
            location: location.clone(),
            last_modified,
            size,
            e_tag: header_str(headers, header::ETAG.as_str()).map(str::to_owned),
            version: header_str(headers, objects::VERSION).map(str::to_owned),
        };
        let range = match (
            header_u64(headers, objects::RANGE_START),
            header_u64(headers, objects::RANGE_END),
        ) {
            (Ok(start), Ok(end)) => start..end,
            _ => 0..size,
        };
        let body = response.bytes_stream().map_err(generic).boxed();
        Ok(GetResult {
            payload: GetResultPayload::Stream(body),
            meta,
            range,
            attributes: Default::default(),
        })
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, Result<Path>>,
    ) -> BoxStream<'static, Result<Path>> {
        let this = self.clone();
        locations
            .and_then(move |path| {
                let this = this.clone();
                async move {
                    let query = ObjectQuery {
                        path: path.to_string(),
                        mode: None,
                    };
                    this.send(
                        this.request(reqwest::Method::DELETE, OBJECT_ROUTE)
                            .query(&query),
                        path.as_ref(),
                    )
                    .await?;
                    Ok(path)
                }
            })
            .boxed()
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
        self.list_stream(ListQuery {
            prefix: prefix.map(|p| p.to_string()),
            delimiter: false,
            offset: None,
        })
    }

    fn list_with_offset(
        &self,
        prefix: Option<&Path>,
        offset: &Path,
    ) -> BoxStream<'static, Result<ObjectMeta>> {
        self.list_stream(ListQuery {
            prefix: prefix.map(|p| p.to_string()),
            delimiter: false,
            offset: Some(offset.to_string()),
        })
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> Result<ListResult> {
        let list = self
            .fetch_list(ListQuery {
                prefix: prefix.map(|p| p.to_string()),
                delimiter: true,
                offset: None,
            })
            .await?;
        Ok(ListResult {
            objects: list
                .objects
                .into_iter()
                .map(to_meta)
                .collect::<Result<_>>()?,
            common_prefixes: list
                .common_prefixes
                .into_iter()
                .map(|p| {
                    Path::parse(p).map_err(|source| object_store::Error::InvalidPath { source })
                })
                .collect::<Result<_>>()?,
        })
    }

    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> Result<()> {
        let request = CopyRequest {
            from: from.to_string(),
            to: to.to_string(),
            mode: match options.mode {
                CopyMode::Overwrite => WriteMode::Overwrite,
                CopyMode::Create => WriteMode::Create,
            },
        };
        let builder = self
            .request(reqwest::Method::POST, COPY_ROUTE)
            .json(&request);
        // A missing source is reported as NotFound of the source, a taken target as
        // AlreadyExists of the target: name the path the caller will look for.
        self.send(builder, from.as_ref())
            .await
            .map_err(|e| match e {
                object_store::Error::AlreadyExists { source, .. } => {
                    object_store::Error::AlreadyExists {
                        path: to.to_string(),
                        source,
                    }
                }
                other => other,
            })?;
        Ok(())
    }
}

#[derive(Debug)]
struct BufferedUpload {
    store: RemoteStore,
    location: Path,
    buffer: BytesMut,
}

#[async_trait]
impl MultipartUpload for BufferedUpload {
    fn put_part(&mut self, data: PutPayload) -> UploadPart {
        for chunk in &data {
            self.buffer.extend_from_slice(chunk);
        }
        Box::pin(async { Ok(()) })
    }

    async fn complete(&mut self) -> Result<PutResult> {
        let body = std::mem::take(&mut self.buffer).freeze();
        self.store
            .put_opts(
                &self.location,
                PutPayload::from(body),
                PutOptions::default(),
            )
            .await
    }

    async fn abort(&mut self) -> Result<()> {
        self.buffer.clear();
        Ok(())
    }
}
