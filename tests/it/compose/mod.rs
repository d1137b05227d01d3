//! The deployment users run — `docker-compose.yml` — on a real Docker engine: storaged,
//! compactord, queryd replicas behind HAProxy, and SeaweedFS, as containers on one network,
//! from images built on this machine (`scripts/compose-images.sh`: no registry).
//!
//! Each test brings up its own compose project, loads data through the load balancer (the
//! only published port), and breaks something the way a machine or a network does: `docker
//! kill`, `docker pause`, `docker network disconnect`. Writers post deltas meanwhile, each
//! with an idempotency key, retrying until acknowledged; afterwards the table must equal the
//! model of the acknowledged writes, and every container must be healthy again by itself.
//!
//! These tests need a Docker engine and the images: `scripts/test.sh` runs them (they are
//! `#[ignore]`d in the main run) when `docker info` answers, and says why when it does not.

use std::collections::BTreeMap;
use std::process::{Command, Output};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};
use strata_testkit::free_port;

use crate::deltas_crash::Writer;

mod walkthrough;
use crate::deltas_model::{
    Client, Item, KEY_SPACE, base_items, batch, filler_items, random_request,
};

const ADMIN: &str = "compose-admin";
const ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/..");

/// One compose project; `docker-compose down -v` when dropped.
struct Stack {
    project: String,
    port: u16,
    http: reqwest::Client,
}

impl Stack {
    async fn up(name: &str, queryd_replicas: usize) -> Self {
        let stack = Self {
            project: format!("strata-ct-{name}"),
            port: free_port(),
            http: reqwest::Client::new(),
        };
        // Leftovers of an interrupted run of the same test.
        stack.compose(&["down", "-v", "--remove-orphans", "-t", "1"]);
        let scale = format!("queryd={queryd_replicas}");
        stack.compose_ok(&["up", "-d", "--no-build", "--scale", &scale]);
        stack.wait_healthy(Duration::from_secs(180)).await;
        stack
    }

    fn compose(&self, args: &[&str]) -> Output {
        Command::new("docker-compose")
            .current_dir(ROOT)
            .args(["-p", &self.project, "-f", "docker-compose.yml"])
            .args(["-f", "deploy/offline/docker-compose.offline.yml"])
            .args(args)
            .env("STRATA_ADMIN_TOKEN", ADMIN)
            .env("STRATA_INTERNAL_TOKEN", "compose-internal")
            .env("STRATA_PORT", self.port.to_string())
            .env("RUST_LOG", "info")
            .output()
            .expect("docker-compose runs")
    }

    fn compose_ok(&self, args: &[&str]) -> String {
        let out = self.compose(args);
        assert!(
            out.status.success(),
            "docker-compose {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The ids of `service`'s containers (all of the project's with `None`), in creation order.
    fn containers(&self, service: Option<&str>) -> Vec<String> {
        let mut args = vec!["ps", "-q"];
        args.extend(service);
        self.compose_ok(&args)
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(str::to_owned)
            .collect()
    }

    fn container(&self, service: &str) -> String {
        self.containers(Some(service))
            .into_iter()
            .next()
            .unwrap_or_else(|| panic!("no {service} container"))
    }

    /// Waits until every container of the project is running and healthy.
    async fn wait_healthy(&self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            let states: Vec<String> = self
                .containers(None)
                .iter()
                .map(|id| {
                    // A stopped container keeps its last health status: running too.
                    let format = "{{.Name}} {{.State.Running}} {{.State.Health.Status}}";
                    docker(&["inspect", "-f", format, id])
                })
                .collect();
            if states.iter().all(|s| s.trim().ends_with(" true healthy")) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "not healthy after {timeout:?}: {states:?}\n{}",
                self.logs()
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    fn logs(&self) -> String {
        let out = self.compose(&["logs", "--no-color", "--tail", "60"]);
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The load balancer, as a client outside the deployment reaches it.
    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// A container's own address on the project's network (for one replica, or one
    /// compactord, directly).
    fn address(&self, container: &str, port: u16) -> String {
        let ip = docker(&[
            "inspect",
            "-f",
            "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}",
            container,
        ]);
        format!("http://{}:{port}", ip.trim())
    }

    fn client(&self) -> Client {
        Client::new(&self.url(), ADMIN)
    }

    /// Creates `items` by uploading its base (the model's rows plus `filler` more) as Parquet
    /// through the load balancer.
    async fn create_items(&self, filler: i64) -> BTreeMap<i64, Item> {
        let mut items = base_items();
        items.extend(filler_items(filler));
        let batch = batch(&items);
        let body = strata_shared::parquet_io::encode(batch.schema(), &[batch]).unwrap();
        let response = self
            .http
            .post(format!("{}/api/v1/datasets", self.url()))
            .query(&[("name", "items"), ("primary_key", "id")])
            .header("x-admin-token", ADMIN)
            .header("content-type", "application/vnd.apache.parquet")
            .body(body)
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        let answer: Value = response.json().await.unwrap();
        assert_eq!(status, 201, "{answer}");
        assert_eq!(answer["base_rows"], items.len());
        items.into_iter().map(|i| (i.id, i)).collect()
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        self.compose(&["down", "-v", "--remove-orphans", "-t", "1"]);
    }
}

fn docker(args: &[&str]) -> String {
    let out = Command::new("docker")
        .args(args)
        .output()
        .expect("docker runs");
    assert!(
        out.status.success(),
        "docker {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Posts one delta with `key` until it is acknowledged (the same key makes every retry the
/// same write); the committed version. A 4xx other than 429 is a bug: the body is valid.
async fn write_acked(
    http: &reqwest::Client,
    url: &str,
    request: &(Vec<Item>, Vec<i64>),
    key: &str,
) -> u64 {
    let body = json!({
        "upserts": request.0.iter().map(Item::json).collect::<Vec<_>>(),
        "deletes": request.1.iter().map(|id| json!({"id": id})).collect::<Vec<_>>(),
    });
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let sent = http
            .post(format!("{url}/api/v1/datasets/items/deltas"))
            .header("x-admin-token", ADMIN)
            .header("idempotency-key", key)
            .timeout(Duration::from_secs(30))
            .json(&body)
            .send()
            .await;
        let last = match sent {
            Ok(response) => {
                let status = response.status().as_u16();
                let answer: Value = response.json().await.unwrap_or(Value::Null);
                if status == 200 {
                    return answer["version"].as_u64().unwrap();
                }
                assert!(
                    status >= 500 || status == 429,
                    "write {key} refused: {status} {answer}"
                );
                format!("{status} {answer}")
            }
            Err(e) => e.to_string(),
        };
        assert!(
            Instant::now() < deadline,
            "write {key} not acknowledged in 180 s; last answer: {last}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Writers posting random deltas through the load balancer, each on its own keys, until
/// stopped; each finishes its current write (retrying until acknowledged) before it stops.
struct Writers {
    models: Vec<Arc<tokio::sync::Mutex<Writer>>>,
    newest: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Writers {
    fn start(stack: &Stack, count: i64, seed: u64) -> Self {
        let models: Vec<Arc<tokio::sync::Mutex<Writer>>> =
            (0..count).map(|_| Default::default()).collect();
        let newest = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let tasks = (0..count)
            .map(|w| {
                let (model, newest, stop) =
                    (models[w as usize].clone(), newest.clone(), stop.clone());
                let (http, url) = (stack.http.clone(), stack.url());
                tokio::spawn(async move {
                    let mut rng = StdRng::seed_from_u64(seed * 100 + w as u64);
                    let mut round = 0;
                    while !stop.load(Ordering::Relaxed) {
                        let request = random_request(&mut rng, round, |id| id % count == w);
                        let key = format!("writer-{seed}-{w}-{round}");
                        let version = write_acked(&http, &url, &request, &key).await;
                        newest.fetch_max(version, Ordering::Relaxed);
                        Writer::apply(&mut model.lock().await.acked, &request.0, &request.1);
                        round += 1;
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                })
            })
            .collect();
        Self {
            models,
            newest,
            stop,
            tasks,
        }
    }

    /// Stops the writers; the newest acknowledged version.
    async fn finish(self) -> (Vec<Arc<tokio::sync::Mutex<Writer>>>, u64) {
        self.stop.store(true, Ordering::Relaxed);
        for task in self.tasks {
            task.await.unwrap();
        }
        (self.models, self.newest.load(Ordering::Relaxed))
    }
}

/// The table, read through the load balancer at `version` or newer, equals the base with
/// every acknowledged write applied.
async fn check_table(
    stack: &Stack,
    base: &BTreeMap<i64, Item>,
    writers: &[Arc<tokio::sync::Mutex<Writer>>],
    version: u64,
) {
    let mut expected: BTreeMap<i64, Option<Item>> =
        base.iter().map(|(id, i)| (*id, Some(i.clone()))).collect();
    let mut acked = 0;
    for writer in writers {
        let writer = writer.lock().await;
        acked += writer.acked.len();
        for (id, item) in &writer.acked {
            expected.insert(*id, item.clone());
        }
    }
    assert!(
        acked > 20,
        "only {acked} keys were written: the test wrote too little"
    );
    let client = stack.client();
    let (served_version, rows) = client
        .rows(json!({
            "predicates": [{"col": "id", "op": "lt", "val": KEY_SPACE}],
            "order_by": [{"col": "id"}], "page_size": 100_000, "min_version": version,
        }))
        .await;
    assert!(served_version >= version);
    let want: Vec<_> = expected
        .iter()
        .filter(|(id, _)| **id < KEY_SPACE)
        .filter_map(|(_, item)| item.as_ref().map(Item::json))
        .collect();
    let got: Vec<_> = rows.into_iter().collect();
    assert_eq!(got.len(), want.len(), "live keys");
    for (g, w) in got.iter().zip(&want) {
        assert_eq!(g, w);
    }
    let count = client
        .queryd
        .count("items", &json!({"min_version": version}))
        .await
        .unwrap();
    let live = expected.values().filter(|i| i.is_some()).count();
    assert_eq!(count.body.count, live as u64, "rows in all");
}

/// Scale-out: three replicas on one store behind HAProxy. Writes through the balancer are
/// read on every replica with `min_version`; caches are per replica and say which; the demo
/// profile loads data through the public API; a replica killed under load costs at most the
/// requests it held, and comes back by itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a Docker engine and the offline images: scripts/test.sh runs it"]
async fn replicas_behind_the_load_balancer() {
    let stack = Stack::up("replicas", 3).await;
    let base = stack.create_items(0).await;
    let replicas: Vec<String> = stack
        .containers(Some("queryd"))
        .iter()
        .map(|c| stack.address(c, 8080))
        .collect();
    assert_eq!(replicas.len(), 3);
    let http = &stack.http;

    // Each replica names itself, and the names differ.
    let mut names = std::collections::BTreeSet::new();
    for replica in &replicas {
        let response = http.get(format!("{replica}/health")).send().await.unwrap();
        names.insert(
            response.headers()["x-strata-instance"]
                .to_str()
                .unwrap()
                .to_owned(),
        );
    }
    assert_eq!(names.len(), 3, "{names:?}");

    // Read your writes on every replica, whichever one took the write.
    let mut rng = StdRng::seed_from_u64(11);
    let mut model = Writer::default();
    for round in 0..12 {
        let request = random_request(&mut rng, round, |_| true);
        let version = write_acked(http, &stack.url(), &request, &format!("rw-{round}")).await;
        Writer::apply(&mut model.acked, &request.0, &request.1);
        let probe = request
            .0
            .first()
            .map(|i| i.id)
            .or(request.1.first().copied())
            .unwrap();
        let expected = model.acked[&probe].as_ref().map(Item::json);
        for replica in &replicas {
            let body = json!({"predicates": [{"col": "id", "op": "eq", "val": probe}],
                              "min_version": version});
            let answer: Value = http
                .post(format!("{replica}/api/v1/datasets/items/query"))
                .json(&body)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            let row = answer["data"].as_array().unwrap().first().cloned();
            assert_eq!(
                row.map(|r| r.as_object().unwrap().clone()),
                expected,
                "replica {replica} at version {version}: {answer}"
            );
        }
    }
    let writer = Arc::new(tokio::sync::Mutex::new(model));
    check_table(&stack, &base, std::slice::from_ref(&writer), 0).await;

    // Caches are per replica: an evict on one leaves the others resident, and says where.
    for replica in &replicas {
        wait_resident(replica).await;
    }
    let evicted = http
        .post(format!("{}/api/v1/cache/evict", replicas[0]))
        .header("x-admin-token", ADMIN)
        .json(&json!({"dataset": "items"}))
        .send()
        .await
        .unwrap();
    assert_eq!(evicted.status().as_u16(), 200);
    let evicted_by = evicted.headers()["x-strata-instance"]
        .to_str()
        .unwrap()
        .to_owned();
    let first = cache_stats(&replicas[0]).await;
    assert_eq!(first["instance"], evicted_by.as_str());
    assert_ne!(residency(&first), "memory", "{first}");
    assert_eq!(residency(&cache_stats(&replicas[1]).await), "memory");

    // The demo profile: a one-shot container uploads the demo dataset through lb.
    stack.compose_ok(&["--profile", "demo", "run", "--rm", "demo"]);
    let count = stack
        .client()
        .queryd
        .count("demo", &json!({}))
        .await
        .unwrap();
    assert_eq!(count.body.count, 100_000);

    // A replica dies under load: only the requests it held may fail.
    const READERS: usize = 8;
    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let failed_late = Arc::new(AtomicUsize::new(0));
    let late = Arc::new(AtomicBool::new(false));
    let readers: Vec<_> = (0..READERS)
        .map(|r| {
            let (http, url) = (http.clone(), stack.url());
            let (stop, ok, failed) = (stop.clone(), ok.clone(), failed.clone());
            let (late, failed_late) = (late.clone(), failed_late.clone());
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    let body =
                        json!({"predicates": [{"col": "id", "op": "eq", "val": (r * 2) as i64}]});
                    let answer = http
                        .post(format!("{url}/api/v1/datasets/items/query"))
                        .json(&body)
                        .timeout(Duration::from_secs(30))
                        .send()
                        .await;
                    if answer.is_ok_and(|a| a.status().is_success()) {
                        ok.fetch_add(1, Ordering::Relaxed);
                    } else {
                        failed.fetch_add(1, Ordering::Relaxed);
                        if late.load(Ordering::Relaxed) {
                            failed_late.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let victim = stack.containers(Some("queryd"))[2].clone();
    docker(&["kill", &victim]);
    // HAProxy's checks (every second, two failures) take the replica out.
    tokio::time::sleep(Duration::from_secs(4)).await;
    late.store(true, Ordering::Relaxed);
    tokio::time::sleep(Duration::from_secs(3)).await;
    stop.store(true, Ordering::Relaxed);
    for reader in readers {
        reader.await.unwrap();
    }
    let (ok, failed) = (ok.load(Ordering::Relaxed), failed.load(Ordering::Relaxed));
    eprintln!("replica killed under load: {ok} reads answered, {failed} failed");
    assert!(ok > 100, "{ok} reads answered");
    assert!(
        failed <= READERS,
        "{failed} reads failed: more than the {READERS} that can have been in flight"
    );
    assert_eq!(
        failed_late.load(Ordering::Relaxed),
        0,
        "reads failed after the replica was out"
    );
    docker(&["start", &victim]);
    stack.wait_healthy(Duration::from_secs(120)).await;
    check_table(&stack, &base, std::slice::from_ref(&writer), 0).await;
    walkthrough::cli_walkthrough(&stack, &replicas).await;
}

/// storaged killed in the middle of ingest and restarted, then cut off from the network for
/// 20 s: reads keep being served, writes fail with a clear 503 and succeed after; no
/// acknowledged write is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a Docker engine and the offline images: scripts/test.sh runs it"]
async fn storaged_killed_and_partitioned_under_writes() {
    let stack = Stack::up("storaged", 1).await;
    let base = stack.create_items(0).await;
    let writers = Writers::start(&stack, 3, 1);
    let storaged = stack.container("storaged");
    let mut rng = StdRng::seed_from_u64(5);
    // First a crash (the process dies: SIGKILL from the host, as the OOM killer would);
    // the restart policy brings storaged back by itself. Then `docker kill` and a restart.
    tokio::time::sleep(Duration::from_millis(rng.random_range(1000..3000))).await;
    let pid = docker(&["inspect", "-f", "{{.State.Pid}}", &storaged]);
    let killed = Command::new("kill")
        .args(["-9", pid.trim()])
        .status()
        .unwrap();
    assert!(killed.success());
    tokio::time::sleep(Duration::from_secs(1)).await;
    stack.wait_healthy(Duration::from_secs(120)).await;
    let restarts = docker(&["inspect", "-f", "{{.RestartCount}}", &storaged]);
    assert_eq!(
        restarts.trim(),
        "1",
        "the crash was restarted by the policy"
    );
    tokio::time::sleep(Duration::from_millis(rng.random_range(1000..3000))).await;
    docker(&["kill", &storaged]);
    tokio::time::sleep(Duration::from_secs(1)).await;
    docker(&["start", &storaged]);
    stack.wait_healthy(Duration::from_secs(120)).await;

    let network = docker(&[
        "inspect",
        "-f",
        "{{range $name, $_ := .NetworkSettings.Networks}}{{$name}}{{end}}",
        &storaged,
    ]);
    let network = network.trim();
    // Reads during the cut are answered from queryd's memory, so the cut starts with `items`
    // in memory and no compaction about to commit. Under the default `rebuild =
    // "release_first"`, a compaction committed just before the cut would leave the dataset
    // cold until its rebuild reads the new base files, which only storaged serves: cold reads
    // then wait for storaged like writes do (docs/decisions.md, "Compose"). compactord is
    // paused for the cut (it could not commit during it anyway) and resumed after.
    let compactord = stack.container("compactord");
    docker(&["pause", &compactord]);
    wait_resident(&stack.url()).await;
    docker(&["network", "disconnect", network, &storaged]);
    let cut = Instant::now();
    // One write of our own while storaged is away, beside the writers: a clear 503, at once
    // when the name no longer resolves, or after the forward's 30 s answer timeout when a
    // pooled connection went silent.
    let probe = {
        let (http, url) = (stack.http.clone(), stack.url());
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(1)).await;
            let started = Instant::now();
            let response = http
                .post(format!("{url}/api/v1/datasets/items/deltas"))
                .header("x-admin-token", ADMIN)
                .timeout(Duration::from_secs(60))
                .json(&json!({"deletes": [{"id": KEY_SPACE + 1}]}))
                .send()
                .await
                .unwrap();
            let status = response.status().as_u16();
            let answer: Value = response.json().await.unwrap();
            (status, answer, started.elapsed())
        })
    };
    // Reads keep being answered from queryd's memory all along.
    let client = stack.client();
    let mut reads = 0;
    while cut.elapsed() < Duration::from_secs(20) {
        let (version, rows) = client
            .rows(json!({"predicates": [{"col": "id", "op": "lt", "val": 100}]}))
            .await;
        assert!(version > 0 && !rows.is_empty());
        reads += 1;
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(reads >= 20, "{reads} reads in 20 s");
    eprintln!("partition: {reads} reads answered");
    let (status, answer, took) = probe.await.unwrap();
    assert_eq!(status, 503, "{answer}");
    assert!(
        answer["error"]
            .as_str()
            .is_some_and(|e| e.contains("storaged")),
        "{answer}"
    );
    assert!(took < Duration::from_secs(35), "the refusal took {took:?}");
    eprintln!("partition: a write refused with 503 after {took:?}");
    docker(&[
        "network", "connect", "--alias", "storaged", network, &storaged,
    ]);
    docker(&["unpause", &compactord]);
    // Writers carry on (their retries succeed now) for a while before they stop.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let (models, version) = writers.finish().await;
    stack.wait_healthy(Duration::from_secs(120)).await;
    check_table(&stack, &base, &models, version).await;
}

/// compactord killed in the middle of compactions and restarted; then one paused mid-run
/// while a second compactord compacts: the paused one, resumed, is fenced. No acknowledged
/// write is lost, and the final compaction merges everything.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a Docker engine and the offline images: scripts/test.sh runs it"]
async fn compactord_killed_and_paused_under_writes() {
    let stack = Stack::up("compactord", 1).await;
    // Bulk rows make a compaction take long enough to be caught in the middle.
    let base = stack.create_items(150_000).await;
    let writers = Writers::start(&stack, 2, 2);
    let compact = |url: String| {
        let http = stack.http.clone();
        tokio::spawn(async move {
            let response = http
                .post(format!("{url}/api/v1/datasets/items/compact"))
                .header("x-admin-token", ADMIN)
                .timeout(Duration::from_secs(120))
                .send()
                .await;
            match response {
                Ok(r) => r.json::<Value>().await.unwrap_or(Value::Null),
                Err(e) => json!({"transport": e.to_string()}),
            }
        })
    };
    let compactord = stack.container("compactord");
    // How long one compaction takes here, so the kills below land inside runs.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let started = Instant::now();
    let first = compact(stack.url()).await.unwrap();
    assert_eq!(first["outcome"], "committed", "{first}");
    let took = started.elapsed();
    let mut rng = StdRng::seed_from_u64(9);
    let mut interrupted = 0;
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let run = compact(stack.url());
        tokio::time::sleep(took.mul_f64(rng.random_range(0.1..0.7))).await;
        docker(&["kill", &compactord]);
        let answer = run.await.unwrap();
        if !matches!(answer["outcome"].as_str(), Some("committed" | "noop")) {
            interrupted += 1;
        }
        docker(&["start", &compactord]);
        stack.wait_healthy(Duration::from_secs(120)).await;
    }
    eprintln!("{interrupted} of 3 compactions (of {took:?}) killed before they answered");
    assert!(
        interrupted > 0,
        "every kill came after its compaction had finished"
    );

    // A second compactord; the first is paused in the middle of a run of its own.
    stack.compose_ok(&[
        "up",
        "-d",
        "--no-build",
        "--no-recreate",
        "--scale",
        "compactord=2",
    ]);
    stack.wait_healthy(Duration::from_secs(120)).await;
    let (first, second) = {
        let all = stack.containers(Some("compactord"));
        let second = all.iter().find(|c| **c != compactord).unwrap().clone();
        (
            stack.address(&compactord, 7002),
            stack.address(&second, 7002),
        )
    };
    const ATTEMPTS: u32 = 8;
    let mut fenced = None;
    // Runs after the first are often faster than it (warm caches), and a loaded machine
    // stretches the first: the pause starts early in the run and moves later each attempt.
    // A pause before the run started only costs an attempt (the run then commits).
    for attempt in 0..ATTEMPTS {
        let paused_run = compact(first.clone());
        // Into the run: a growing fraction of the compaction's measured time.
        tokio::time::sleep(took.mul_f64(0.05 + 0.1 * attempt as f64)).await;
        docker(&["pause", &compactord]);
        let other = compact(second.clone()).await.unwrap();
        docker(&["unpause", &compactord]);
        let paused = paused_run.await.unwrap();
        assert!(
            matches!(other["outcome"].as_str(), Some("committed" | "noop")),
            "{other}"
        );
        match paused["outcome"].as_str() {
            Some("fenced") => fenced = Some(attempt + 1),
            // It finished before the pause: try again, pausing later in the next run.
            Some("committed" | "noop") => {}
            _ => panic!("the paused compactord answered {paused}"),
        }
        if fenced.is_some() {
            break;
        }
    }
    let fenced = fenced.expect("no run was caught by the pause in any attempt");
    eprintln!("the paused compactord was fenced (attempt {fenced})");
    stack.compose_ok(&[
        "up",
        "-d",
        "--no-build",
        "--no-recreate",
        "--scale",
        "compactord=1",
    ]);

    let (models, _) = writers.finish().await;
    let run = compact(stack.url()).await.unwrap();
    assert!(
        matches!(run["outcome"].as_str(), Some("committed" | "noop")),
        "{run}"
    );
    let version = run["version"].as_u64().unwrap_or(0);
    stack.wait_healthy(Duration::from_secs(120)).await;
    check_table(&stack, &base, &models, version).await;
    // Everything was merged: another compaction has nothing to do.
    let again = compact(stack.url()).await.unwrap();
    assert_eq!(again["outcome"], "noop", "{again}");
}

/// `GET /api/v1/cache/stats` of the queryd at `url`.
async fn cache_stats(url: &str) -> Value {
    reqwest::get(format!("{url}/api/v1/cache/stats"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// The residency of the first (only) dataset in `stats`.
fn residency(stats: &Value) -> String {
    stats["datasets"][0]["residency"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// Waits until the queryd at `url` holds its dataset in memory.
async fn wait_resident(url: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while residency(&cache_stats(url).await) != "memory" {
        assert!(Instant::now() < deadline, "{url} never loaded its dataset");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
