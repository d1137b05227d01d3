//! Opening the backing store from its URL: `file:///abs`, `file://rel` (against the config
//! directory), `memory://`, `s3://bucket/prefix`. Also opens the stores Parquet sources are
//! read from, with the same S3 settings.

use std::sync::Arc;

use object_store::ObjectStore;
use object_store::aws::AmazonS3Builder;
use object_store::local::LocalFileSystem;
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::prefix::PrefixStore;
use strata_daemon::config::{Config, S3Config};

use crate::StoragedError;

pub fn open(config: &Config) -> Result<Arc<dyn ObjectStore>, StoragedError> {
    let url = config.store.url.as_str();
    if let Some(rest) = url.strip_prefix("file://") {
        let dir = config.resolve_path(rest);
        std::fs::create_dir_all(&dir)?;
        let store =
            LocalFileSystem::new_with_prefix(&dir).map_err(|source| StoragedError::OpenStore {
                url: url.to_owned(),
                source,
            })?;
        // Staging files of interrupted puts are swept by GC, not deleted on drop.
        return Ok(Arc::new(store));
    }
    if url == "memory://" || url == "memory:///" {
        return Ok(Arc::new(InMemory::new()));
    }
    if url.starts_with("s3://") {
        let (bucket, prefix) = split_s3_url(url)?;
        let s3 = s3_store(&bucket, &config.store.s3, url)?;
        return Ok(if prefix.as_ref().is_empty() {
            s3
        } else {
            Arc::new(PrefixStore::new(s3, prefix))
        });
    }
    Err(StoragedError::StoreUrl {
        url: url.to_owned(),
        reason: "use file://, memory:// or s3://".into(),
    })
}

/// `s3://bucket/some/prefix` → (`bucket`, `some/prefix`).
pub fn split_s3_url(url: &str) -> Result<(String, Path), StoragedError> {
    let rest = url.strip_prefix("s3://").unwrap_or(url);
    let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    if bucket.is_empty() {
        return Err(StoragedError::StoreUrl {
            url: url.to_owned(),
            reason: "missing bucket".into(),
        });
    }
    let prefix = Path::parse(prefix.trim_matches('/')).map_err(|e| StoragedError::StoreUrl {
        url: url.to_owned(),
        reason: e.to_string(),
    })?;
    Ok((bucket.to_owned(), prefix))
}

pub fn s3_store(
    bucket: &str,
    s3: &S3Config,
    url: &str,
) -> Result<Arc<dyn ObjectStore>, StoragedError> {
    let mut builder = AmazonS3Builder::new()
        .with_bucket_name(bucket)
        .with_region(s3.region.clone().unwrap_or_else(|| "us-east-1".into()))
        .with_virtual_hosted_style_request(s3.virtual_hosted_style)
        .with_allow_http(s3.allow_http.unwrap_or(false));
    if let Some(endpoint) = &s3.endpoint {
        builder = builder.with_endpoint(endpoint);
        // A plain-http endpoint was asked for explicitly: allow it unless refused outright.
        if endpoint.starts_with("http://") && s3.allow_http.is_none() {
            builder = builder.with_allow_http(true);
        }
    }
    if let Some(key) = &s3.access_key_id {
        builder = builder.with_access_key_id(key);
    }
    if let Some(secret) = &s3.secret_access_key {
        builder = builder.with_secret_access_key(secret);
    }
    // An explicit endpoint without credentials is an S3-compatible server taking anonymous
    // requests: never look for credentials elsewhere — the cloud's instance metadata address,
    // which off the cloud answers nothing and held a catalog request for minutes.
    if s3.endpoint.is_some() && s3.access_key_id.is_none() {
        builder = builder.with_skip_signature(true);
    }
    let store = builder.build().map_err(|source| StoragedError::OpenStore {
        url: url.to_owned(),
        source,
    })?;
    Ok(Arc::new(store))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn s3_urls() {
        let (b, p) = split_s3_url("s3://bkt/a/b/").unwrap();
        assert_eq!((b.as_str(), p.as_ref()), ("bkt", "a/b"));
        let (b, p) = split_s3_url("s3://bkt").unwrap();
        assert_eq!((b.as_str(), p.as_ref()), ("bkt", ""));
        assert!(split_s3_url("s3:///x").is_err());
    }

    #[test]
    fn unknown_scheme_is_refused() {
        let mut c = Config::default();
        c.store.url = "ftp://x".into();
        assert!(matches!(open(&c), Err(StoragedError::StoreUrl { .. })));
    }
}
