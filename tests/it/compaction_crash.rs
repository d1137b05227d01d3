//! The compaction crash matrix, with real processes: storaged, queryd and compactord run as
//! separate `strata` processes; writers post deltas through queryd while compactord (which
//! compacts whenever a dataset has a few deltas) is killed with SIGKILL at random moments
//! and restarted, many times over. Afterwards, and after a final compaction, every
//! acknowledged write is there and nothing else changed — on a local directory and on
//! SeaweedFS S3.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};
use strata_testkit::{ChildProcess, SeaweedFs, free_port, strata_bin, wait_http_ok, write_parquet};

use crate::deltas_crash::{Writer, check_writers};
use crate::deltas_model::{Client, base_items, batch, random_request};

const ADMIN: &str = "crash-admin";
const WRITERS: i64 = 3;

struct Cluster {
    dir: std::path::PathBuf,
    envs: Vec<(&'static str, String)>,
    queryd: String,
    storaged: String,
    compactord_url: String,
    compactord: Option<ChildProcess>,
    restarts: u32,
    _storaged: ChildProcess,
    _queryd: ChildProcess,
}

/// Starts `strata {daemon}` with the cluster's config and waits for its `/health`.
async fn spawn(
    dir: &Path,
    envs: &[(&'static str, String)],
    daemon: &str,
    log: &str,
    url: &str,
) -> ChildProcess {
    let mut command = Command::new(strata_bin());
    command
        .arg(daemon)
        .arg("--config")
        .arg(dir.join("strata.toml"))
        .env("STRATA_INTERNAL_TOKEN", "tok")
        .env("RUST_LOG", "info")
        .env_remove("STRATA_ADMIN_TOKEN")
        .current_dir(dir);
    for (k, v) in envs {
        command.env(k, v);
    }
    let process = ChildProcess::spawn(daemon, command, &dir.join(log)).unwrap();
    if let Err(e) = wait_http_ok(&format!("{url}/health"), Duration::from_secs(60)).await {
        panic!("{e}\n{}", process.log());
    }
    process
}

impl Cluster {
    async fn start(dir: &Path, store_url: &str, envs: Vec<(&'static str, String)>) -> Self {
        write_parquet(&dir.join("src/items.parquet"), &[batch(&base_items())]).unwrap();
        let (s, q, c) = (free_port(), free_port(), free_port());
        // compactord compacts as soon as a dataset has 3 deltas, checking every 50 ms, so
        // kills land in every phase of a run. GC is off: this matrix is about compaction.
        let text = format!(
            "[store]\nurl = \"{store_url}\"\n\
             [storaged]\nlisten = \"127.0.0.1:{s}\"\n\
             [queryd]\nlisten = \"127.0.0.1:{q}\"\npoll_interval_ms = 200\n\
             [compactord]\nlisten = \"127.0.0.1:{c}\"\ncheck_interval_ms = 50\nmax_deltas = 3\ngc_schedule = \"\"\n\
             [auth]\nadmin_token = \"{ADMIN}\"\n\
             [[datasets]]\nname = \"items\"\nsource = \"src/items.parquet\"\nprimary_key = [\"id\"]\npin = true\n"
        );
        std::fs::write(dir.join("strata.toml"), text).unwrap();
        let storaged = spawn(
            dir,
            &envs,
            "storaged",
            "storaged.log",
            &format!("http://127.0.0.1:{s}"),
        )
        .await;
        let queryd_url = format!("http://127.0.0.1:{q}");
        let queryd = spawn(dir, &envs, "queryd", "queryd.log", &queryd_url).await;
        let mut cluster = Self {
            dir: dir.to_owned(),
            envs,
            queryd: queryd_url,
            storaged: format!("http://127.0.0.1:{s}"),
            compactord_url: format!("http://127.0.0.1:{c}"),
            compactord: None,
            restarts: 0,
            _storaged: storaged,
            _queryd: queryd,
        };
        cluster.restart_compactord().await;
        cluster
    }

    /// Every log of `daemon` processes so far, in order.
    fn logs(&self, daemon: &str) -> String {
        let mut names: Vec<_> = std::fs::read_dir(&self.dir)
            .unwrap()
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter(|n| n.starts_with(daemon) && n.ends_with(".log"))
            .collect();
        names.sort();
        names
            .iter()
            .map(|n| {
                format!(
                    "--- {n}\n{}",
                    std::fs::read_to_string(self.dir.join(n)).unwrap_or_default()
                )
            })
            .collect()
    }

    /// SIGKILL (whatever it is doing), then a fresh compactord.
    async fn restart_compactord(&mut self) {
        if let Some(mut old) = self.compactord.take() {
            old.kill();
        }
        self.restarts += 1;
        // Each process keeps its own log, for the story of a failure.
        let log = format!("compactord-{}.log", self.restarts);
        let url = self.compactord_url.clone();
        self.compactord = Some(spawn(&self.dir, &self.envs, "compactord", &log, &url).await);
    }
}

async fn crash_matrix(store_url: &str, envs: Vec<(&'static str, String)>, trials: u64) {
    let dir = tempfile::tempdir().unwrap();
    let mut cluster = Cluster::start(dir.path(), store_url, envs).await;
    let client = Arc::new(Client {
        http: reqwest::Client::new(),
        queryd: cluster.queryd.clone(),
        token: ADMIN.into(),
    });
    client.rows(json!({"page_size": 1})).await;
    let base: BTreeMap<i64, _> = base_items().into_iter().map(|r| (r.id, r)).collect();
    let writers: Vec<Arc<tokio::sync::Mutex<Writer>>> =
        (0..WRITERS).map(|_| Default::default()).collect();
    let stop = Arc::new(AtomicBool::new(false));
    let tasks: Vec<_> = (0..WRITERS)
        .map(|w| {
            let (client, writer, stop) =
                (client.clone(), writers[w as usize].clone(), stop.clone());
            tokio::spawn(async move {
                let mut rng = StdRng::seed_from_u64(w as u64 + 7);
                let mut round = 0;
                while !stop.load(Ordering::Relaxed) {
                    let request = random_request(&mut rng, round, |id| id % WRITERS == w);
                    writer.lock().await.in_flight = Some(request.clone());
                    // storaged and queryd stay up: every write must be acknowledged.
                    let version = client.try_delta(&request.0, &request.1).await;
                    assert!(
                        version.is_some(),
                        "a write failed while only compactord died"
                    );
                    let mut writer = writer.lock().await;
                    writer.in_flight = None;
                    Writer::apply(&mut writer.acked, &request.0, &request.1);
                    round += 1;
                }
            })
        })
        .collect();

    let manifest = |cluster: &Cluster| {
        let client = strata_storaged_api::StoragedClient::new(&cluster.storaged, Some(ADMIN));
        async move { client.manifest("items", None).await.unwrap() }
    };
    // First let one compaction commit under the writers (how long one takes depends on the
    // machine), then kill at random moments: before, during and after runs.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while manifest(&cluster).await.base_watermark_seq == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "no compaction committed under the writers:\n{}",
            cluster.logs("compactord")
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut rng = StdRng::seed_from_u64(trials);
    for _ in 0..trials {
        tokio::time::sleep(Duration::from_millis(rng.random_range(50..1000))).await;
        cluster.restart_compactord().await;
    }
    stop.store(true, Ordering::Relaxed);
    for task in tasks {
        task.await.unwrap();
    }

    // A final compaction (through queryd), then every acknowledged write must be there.
    let (status, _, run) = client
        .post("/api/v1/datasets/items/compact", &json!({}))
        .await;
    assert_eq!(status, 200, "{run}");
    assert!(
        matches!(run["outcome"].as_str(), Some("committed" | "noop")),
        "{run}\n{}",
        cluster.compactord.as_ref().unwrap().log()
    );
    let history: Value = client
        .http
        .get(format!(
            "{}/api/v1/datasets/items/compactions",
            cluster.queryd
        ))
        .header("x-admin-token", ADMIN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(history["runs"].as_array().is_some_and(|r| !r.is_empty()));
    let latest = run["version"].as_u64();
    if let Some(version) = latest {
        let (served, _) = client
            .rows(json!({"page_size": 1, "min_version": version}))
            .await;
        assert!(served >= version);
    }
    check_writers(&client, &base, &writers, trials).await;
    let last = manifest(&cluster).await;
    assert!(
        last.deltas.is_empty(),
        "the final compaction merged every delta"
    );
    let acked: usize =
        futures::future::join_all(writers.iter().map(|w| async { w.lock().await.acked.len() }))
            .await
            .into_iter()
            .sum();
    assert!(
        acked > 50,
        "only {acked} keys were acknowledged: the test wrote too little"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_compactord_never_loses_a_write_local_store() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    crash_matrix(&format!("file://{}", data.display()), vec![], 10).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_compactord_never_loses_a_write_seaweedfs() {
    let seaweed = SeaweedFs::start().await.unwrap();
    let url = format!("s3://{}/crash", seaweed.bucket);
    crash_matrix(&url, seaweed.env(), 6).await;
}
