//! The startup proof that a store enforces put-if-absent. Every manifest commit relies on it
//! (invariant 2), so a writer must not run on a store where a second create can succeed.

use std::sync::Arc;

use bytes::Bytes;
use futures::future::join_all;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};
use uuid::Uuid;

use crate::layout::SELFTEST;
use crate::{Error, Result};

/// Racing creators in the second check: more than one success means no real exclusion.
const RACERS: usize = 8;

/// Proves put-if-absent: a second create of one key fails with `AlreadyExists` and leaves the
/// first body in place, and of [`RACERS`] concurrent creates exactly one succeeds.
pub async fn verify_put_if_absent(store: Arc<dyn ObjectStore>) -> Result<()> {
    let run = Uuid::now_v7();
    let first_path = Path::from(format!("{SELFTEST}-{run}-a"));
    let create = PutOptions::from(PutMode::Create);

    match store
        .put_opts(
            &first_path,
            PutPayload::from_static(b"first"),
            create.clone(),
        )
        .await
    {
        Ok(_) => {}
        Err(
            e @ (object_store::Error::NotImplemented { .. }
            | object_store::Error::NotSupported { .. }),
        ) => {
            return Err(Error::PutIfAbsentUnsupported(e.to_string()));
        }
        Err(e) => return Err(e.into()),
    }
    let second = store
        .put_opts(
            &first_path,
            PutPayload::from_static(b"second"),
            create.clone(),
        )
        .await;
    let verdict = match second {
        Err(object_store::Error::AlreadyExists { .. }) => {
            let body = store.get(&first_path).await?.bytes().await?;
            if body == Bytes::from_static(b"first") {
                Ok(())
            } else {
                Err(Error::PutIfAbsentUnsupported(
                    "a refused create still replaced the object".into(),
                ))
            }
        }
        Ok(_) => Err(Error::PutIfAbsentUnsupported(
            "a second create of the same key succeeded".into(),
        )),
        Err(e) => Err(Error::PutIfAbsentUnsupported(format!(
            "a second create failed with an unexpected error: {e}"
        ))),
    };
    let _ = store.delete(&first_path).await;
    verdict?;

    let race_path = Path::from(format!("{SELFTEST}-{run}-race"));
    let attempts = (0..RACERS).map(|i| {
        let store = store.clone();
        let path = race_path.clone();
        let create = create.clone();
        async move {
            store
                .put_opts(&path, PutPayload::from(format!("racer {i}")), create)
                .await
        }
    });
    let results = join_all(attempts).await;
    let _ = store.delete(&race_path).await;
    let winners = results.iter().filter(|r| r.is_ok()).count();
    let refused = results
        .iter()
        .filter(|r| matches!(r, Err(object_store::Error::AlreadyExists { .. })))
        .count();
    if winners != 1 || winners + refused != RACERS {
        return Err(Error::PutIfAbsentUnsupported(format!(
            "{RACERS} racing creates: {winners} succeeded, {refused} refused"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use object_store::local::LocalFileSystem;
    use object_store::memory::InMemory;

    use super::*;

    #[tokio::test]
    async fn real_stores_pass() {
        verify_put_if_absent(Arc::new(InMemory::new()))
            .await
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let local = LocalFileSystem::new_with_prefix(dir.path()).unwrap();
        verify_put_if_absent(Arc::new(local)).await.unwrap();
    }

    /// A store that ignores the put mode (like S3 without conditional writes) must be refused.
    #[tokio::test]
    async fn a_store_without_put_if_absent_is_refused() {
        #[derive(Debug)]
        struct IgnoresMode(InMemory);
        impl std::fmt::Display for IgnoresMode {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                write!(f, "IgnoresMode")
            }
        }
        #[async_trait::async_trait]
        impl ObjectStore for IgnoresMode {
            async fn put_opts(
                &self,
                l: &Path,
                p: PutPayload,
                _: PutOptions,
            ) -> object_store::Result<object_store::PutResult> {
                self.0.put_opts(l, p, PutOptions::default()).await
            }
            async fn put_multipart_opts(
                &self,
                l: &Path,
                o: object_store::PutMultipartOptions,
            ) -> object_store::Result<Box<dyn object_store::MultipartUpload>> {
                self.0.put_multipart_opts(l, o).await
            }
            async fn get_opts(
                &self,
                l: &Path,
                o: object_store::GetOptions,
            ) -> object_store::Result<object_store::GetResult> {
                self.0.get_opts(l, o).await
            }
            fn delete_stream(
                &self,
                l: futures::stream::BoxStream<'static, object_store::Result<Path>>,
            ) -> futures::stream::BoxStream<'static, object_store::Result<Path>> {
                self.0.delete_stream(l)
            }
            fn list(
                &self,
                p: Option<&Path>,
            ) -> futures::stream::BoxStream<'static, object_store::Result<object_store::ObjectMeta>>
            {
                self.0.list(p)
            }
            async fn list_with_delimiter(
                &self,
                p: Option<&Path>,
            ) -> object_store::Result<object_store::ListResult> {
                self.0.list_with_delimiter(p).await
            }
            async fn copy_opts(
                &self,
                f: &Path,
                t: &Path,
                o: object_store::CopyOptions,
            ) -> object_store::Result<()> {
                self.0.copy_opts(f, t, o).await
            }
        }
        let err = verify_put_if_absent(Arc::new(IgnoresMode(InMemory::new())))
            .await
            .unwrap_err();
        assert!(matches!(err, Error::PutIfAbsentUnsupported(_)), "{err}");
    }
}
