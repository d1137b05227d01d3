//! Test support: store wrappers. [`FaultyStore`] injects the failures a network store
//! produces, so the commit protocol can be proven against them without a network;
//! [`GatedStore`] holds some reads back, so a test can look at a daemon mid-load.

use std::fmt;
use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetRange, GetResult, ListResult, MultipartUpload, ObjectMeta,
    ObjectStore, PutMultipartOptions, PutOptions, PutPayload, PutResult, Result,
};
use rand::Rng;

/// Wraps a store; each put fails before it reaches the store with probability `fail_before`,
/// or lands and then loses its response with probability `lose_response` (an unknown outcome).
#[derive(Debug)]
pub struct FaultyStore {
    inner: Arc<dyn ObjectStore>,
    fail_before: f64,
    lose_response: f64,
    pub injected: AtomicU64,
}

impl FaultyStore {
    pub fn new(inner: Arc<dyn ObjectStore>, fail_before: f64, lose_response: f64) -> Self {
        Self {
            inner,
            fail_before,
            lose_response,
            injected: AtomicU64::new(0),
        }
    }

    fn injected_error(&self, what: &str) -> object_store::Error {
        self.injected.fetch_add(1, Ordering::Relaxed);
        object_store::Error::Generic {
            store: "FaultyStore",
            source: format!("injected fault: {what}").into(),
        }
    }
}

impl fmt::Display for FaultyStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "FaultyStore({})", self.inner)
    }
}

#[async_trait]
impl ObjectStore for FaultyStore {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> Result<PutResult> {
        let roll: f64 = rand::rng().random();
        if roll < self.fail_before {
            return Err(self.injected_error("request failed"));
        }
        let result = self.inner.put_opts(location, payload, opts).await;
        if result.is_ok() && roll < self.fail_before + self.lose_response {
            return Err(self.injected_error("response lost"));
        }
        result
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> Result<Box<dyn MultipartUpload>> {
        self.inner.put_multipart_opts(location, opts).await
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> Result<GetResult> {
        self.inner.get_opts(location, options).await
    }

    async fn get_ranges(&self, location: &Path, ranges: &[Range<u64>]) -> Result<Vec<Bytes>> {
        self.inner.get_ranges(location, ranges).await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, Result<Path>>,
    ) -> BoxStream<'static, Result<Path>> {
        self.inner.delete_stream(locations)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
        self.inner.list(prefix)
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> Result<ListResult> {
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> Result<()> {
        self.inner.copy_opts(from, to, options).await
    }
}

/// Wraps a store; while closed, the GETs that open a file without knowing its size — whole
/// objects and suffix ranges — of paths containing `matching` wait until it opens. Bounded
/// ranges and HEADs pass. queryd's loader opens each file by a suffix read of its footer
/// ([`crate::parquet_io::RowGroups`]); its cold path, through DataFusion, learns sizes first
/// and reads bounded ranges. So a test can hold a build back while the cold path answers
/// from the same files.
#[derive(Debug)]
pub struct GatedStore {
    inner: Arc<dyn ObjectStore>,
    matching: String,
    open: tokio::sync::watch::Sender<bool>,
}

impl GatedStore {
    /// An open gate.
    pub fn new(inner: Arc<dyn ObjectStore>, matching: &str) -> Self {
        Self {
            inner,
            matching: matching.to_owned(),
            open: tokio::sync::watch::Sender::new(true),
        }
    }

    pub fn close(&self) {
        self.open.send_replace(false);
    }

    pub fn open(&self) {
        self.open.send_replace(true);
    }

    async fn pass(&self, location: &Path, options: &GetOptions) {
        let opens = matches!(options.range, None | Some(GetRange::Suffix(_)));
        if opens && !options.head && location.as_ref().contains(&self.matching) {
            let mut open = self.open.subscribe();
            // The sender lives as long as `self`: the wait ends when the gate opens.
            let _ = open.wait_for(|open| *open).await;
        }
    }
}

impl fmt::Display for GatedStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "GatedStore({})", self.inner)
    }
}

#[async_trait]
impl ObjectStore for GatedStore {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> Result<PutResult> {
        self.inner.put_opts(location, payload, opts).await
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> Result<Box<dyn MultipartUpload>> {
        self.inner.put_multipart_opts(location, opts).await
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> Result<GetResult> {
        self.pass(location, &options).await;
        self.inner.get_opts(location, options).await
    }

    async fn get_ranges(&self, location: &Path, ranges: &[Range<u64>]) -> Result<Vec<Bytes>> {
        self.inner.get_ranges(location, ranges).await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, Result<Path>>,
    ) -> BoxStream<'static, Result<Path>> {
        self.inner.delete_stream(locations)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
        self.inner.list(prefix)
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> Result<ListResult> {
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> Result<()> {
        self.inner.copy_opts(from, to, options).await
    }
}

/// Peak resident memory of this process so far (`VmHWM`), in bytes; 0 where `/proc` has
/// none. Tests of memory bombs compare it before and after (nextest runs each test in a
/// process of its own).
pub fn peak_rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}
