//! Test harness shared by the end-to-end tests and benchmarks: [`TestCluster`], the one way
//! tests start daemons (in this process or as `strata` processes, on memory, a local
//! directory or SeaweedFS); free ports; real child processes (the `strata` binary, a SeaweedFS
//! S3 server) that are killed when dropped; a fault-injecting proxy; Parquet fixtures.
//!
//! A dev helper: it depends on the daemon libraries, and they never on it (except as a
//! dev-dependency).

mod cluster;
mod fault_proxy;
mod process;
mod seaweed;

use std::collections::BTreeSet;
use std::hash::{BuildHasher, RandomState};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

pub use cluster::{
    ADMIN_TOKEN, Daemon, INTERNAL_TOKEN, Mode, Store, TestCluster, TestClusterBuilder,
};
pub use fault_proxy::FaultProxy;
pub use process::ChildProcess;
pub use seaweed::SeaweedFs;

/// A TCP port free on 127.0.0.1 right now, never the same twice in one process.
///
/// Chosen at random *below* the kernel's ephemeral range, not by binding port 0. Port 0 hands
/// out ports from the ephemeral range, which every outgoing connection on the machine draws
/// from too (SeaweedFS's components and the tests' clients connect constantly); between this
/// check and the daemon's own bind, a connecting socket can take the port, and a listener
/// cannot share its port with it: CI failed on exactly that ("Address already in use"). Below
/// the range only listeners compete, and the tests' listeners pick here at random.
pub fn free_port() -> u16 {
    static HANDED_OUT: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());
    let mut handed_out = HANDED_OUT.lock().unwrap_or_else(|e| e.into_inner());
    const LOWEST: u16 = 10_000;
    let below = ephemeral_range_start().unwrap_or(32_768);
    let random = RandomState::new();
    for attempt in 0..10_000u32 {
        let port = if below > LOWEST + 1_000 {
            LOWEST + (random.hash_one(attempt) % u64::from(below - LOWEST)) as u16
        } else {
            // No room below the range on this machine: fall back to the OS's choice.
            TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .map(|a| a.port())
                .expect("the OS hands out an ephemeral port")
        };
        if !handed_out.contains(&port) && TcpListener::bind(("127.0.0.1", port)).is_ok() {
            handed_out.insert(port);
            return port;
        }
    }
    panic!("no free TCP port on 127.0.0.1 after 10 000 attempts")
}

/// The first port of the kernel's ephemeral range (`net.ipv4.ip_local_port_range`).
fn ephemeral_range_start() -> Option<u16> {
    let range = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range").ok()?;
    range.split_whitespace().next()?.parse().ok()
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
