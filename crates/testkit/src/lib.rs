//! Test harness shared by the end-to-end tests and benchmarks: free ports, real child
//! processes (the `strata` binary, a SeaweedFS S3 server) that are killed when dropped, and
//! Parquet fixtures.

mod process;
mod seaweed;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use process::{ChildProcess, StrataProcess};
pub use seaweed::SeaweedFs;

/// A TCP port free on 127.0.0.1 right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("the OS hands out an ephemeral port")
}

/// The `strata` binary cargo built next to the test executable (`STRATA_BIN` overrides).
pub fn strata_bin() -> PathBuf {
    if let Some(path) = std::env::var_os("STRATA_BIN") {
        return PathBuf::from(path);
    }
    // Test executables live in target/<profile>/deps; binaries in target/<profile>.
    let exe = std::env::current_exe().expect("test executable path");
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("test executable lives in target/<profile>/deps");
    let bin = profile_dir.join("strata");
    assert!(
        bin.exists(),
        "{} not found: build it first (cargo build -p strata) or set STRATA_BIN",
        bin.display()
    );
    bin
}

/// Polls `url` until it answers 2xx, or fails after `timeout`.
pub async fn wait_http_ok(url: &str, timeout: Duration) -> anyhow::Result<()> {
    let client = reqwest::Client::new();
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Ok(r) = client.get(url).send().await
            && r.status().is_success()
        {
            return Ok(());
        }
        if tokio::time::Instant::now() > deadline {
            anyhow::bail!("{url} did not answer 2xx within {timeout:?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Writes batches as one Parquet file.
pub fn write_parquet(path: &Path, batches: &[arrow::array::RecordBatch]) -> anyhow::Result<()> {
    let schema = batches
        .first()
        .map(|b| b.schema())
        .ok_or_else(|| anyhow::anyhow!("no batches to write"))?;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(path, strata_shared::parquet_io::encode(schema, batches)?)?;
    Ok(())
}
