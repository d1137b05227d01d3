//! Separate daemon processes: writes go through one queryd; the others converge — by
//! storaged's notification, by polling the manifest, or at once when a query asks for
//! `min_version`.

use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use strata_testkit::{ChildProcess, free_port, strata_bin, wait_http_ok, write_parquet};

use crate::common::people;

const ADMIN: &str = "cluster-admin";

/// The version `queryd` serves `people` at, and its rows' ids.
async fn served(
    http: &reqwest::Client,
    queryd: &str,
    min_version: Option<u64>,
) -> (u16, u64, Value) {
    let mut body = json!({"columns": ["id", "name"]});
    if let Some(v) = min_version {
        body["min_version"] = json!(v);
    }
    let response = http
        .post(format!("{queryd}/api/v1/datasets/people/query"))
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let version = response
        .headers()
        .get("x-dataset-version")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    (status, version, response.json().await.unwrap())
}

async fn wait_version(
    http: &reqwest::Client,
    queryd: &str,
    version: u64,
    log: &ChildProcess,
) -> Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (status, served, body) = served(http, queryd, None).await;
        assert_eq!(status, 200, "{body}");
        if served >= version {
            return body["data"].clone();
        }
        assert!(
            Instant::now() < deadline,
            "{queryd} stuck at {served} < {version}\n{}",
            log.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queryd_processes_converge_by_notification_polling_and_min_version() {
    let dir = tempfile::tempdir().unwrap();
    write_parquet(
        &dir.path().join("src/people.parquet"),
        &[people(&[10, 20, 30])],
    )
    .unwrap();
    let (s, a, b, c) = (free_port(), free_port(), free_port(), free_port());
    let url = |p: u16| format!("http://127.0.0.1:{p}");
    // One file per process: they differ in queryd's port and polling. storaged notifies a
    // (the writer's queryd) and c (which never polls); b hears nothing and polls.
    let config = |queryd: u16, poll_ms: u64| {
        format!(
            "[store]\nurl = \"file://data\"\n\
             [storaged]\nlisten = \"127.0.0.1:{s}\"\nnotify_urls = [\"{}\", \"{}\"]\n\
             [queryd]\nlisten = \"127.0.0.1:{queryd}\"\npoll_interval_ms = {poll_ms}\nrequest_timeout_ms = 6000\n\
             [auth]\nadmin_token = \"{ADMIN}\"\n\
             [[datasets]]\nname = \"people\"\nsource = \"src/people.parquet\"\nprimary_key = [\"id\"]\n",
            url(a),
            url(c)
        )
    };
    let spawn = |daemon: &str, name: &str, text: String| {
        let path = dir.path().join(format!("{name}.toml"));
        std::fs::write(&path, text).unwrap();
        let mut command = Command::new(strata_bin());
        command
            .arg(daemon)
            .arg("--config")
            .arg(&path)
            .env("STRATA_INTERNAL_TOKEN", "tok")
            .env_remove("STRATA_ADMIN_TOKEN")
            .current_dir(dir.path());
        ChildProcess::spawn(name, command, &dir.path().join(format!("{name}.log"))).unwrap()
    };
    let storaged = spawn("storaged", "storaged", config(a, 0));
    wait_http_ok(&format!("{}/health", url(s)), Duration::from_secs(30))
        .await
        .unwrap();
    let qa = spawn("queryd", "queryd-a", config(a, 0));
    let qb = spawn("queryd", "queryd-b", config(b, 300));
    let qc = spawn("queryd", "queryd-c", config(c, 0));
    for (port, p) in [(a, &qa), (b, &qb), (c, &qc)] {
        if let Err(e) =
            wait_http_ok(&format!("{}/health", url(port)), Duration::from_secs(30)).await
        {
            panic!("{e}\n{}\n{}", p.log(), storaged.log());
        }
    }
    let http = reqwest::Client::new();
    for (port, p) in [(a, &qa), (b, &qb), (c, &qc)] {
        wait_version(&http, &url(port), 0, p).await;
    }

    let post = |body: Value| {
        http.post(format!("{}/api/v1/datasets/people/deltas", url(a)))
            .header("x-admin-token", ADMIN)
            .json(&body)
            .send()
    };
    let answer: Value =
        post(json!({"upserts": [{"id": 40, "name": "forty"}], "deletes": [{"id": 10}]}))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
    let v1 = answer["version"]
        .as_u64()
        .unwrap_or_else(|| panic!("{answer}\n{}", storaged.log()));
    let want = json!([{"id": 20, "name": "person 20"}, {"id": 30, "name": "person 30"}, {"id": 40, "name": "forty"}]);
    // The writer's queryd serves it already; c by notification; b by its poll.
    let (_, served_a, body) = served(&http, &url(a), None).await;
    assert_eq!((served_a, &body["data"]), (v1, &want));
    assert_eq!(wait_version(&http, &url(c), v1, &qc).await, want);
    assert_eq!(wait_version(&http, &url(b), v1, &qb).await, want);

    // min_version: b catches up before answering, whatever its poll is doing.
    let answer: Value = post(json!({"upserts": [{"id": 20, "name": "twenty"}]}))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let v2 = answer["version"].as_u64().unwrap();
    let (status, served_b, body) = served(&http, &url(b), Some(v2)).await;
    assert_eq!((status, served_b), (200, v2), "{body}");
    // Storage order: rows deltas wrote follow the untouched base rows, in the order they
    // were written.
    assert_eq!(
        body["data"],
        json!([{"id": 30, "name": "person 30"}, {"id": 40, "name": "forty"}, {"id": 20, "name": "twenty"}])
    );
    // A version nobody wrote is a 503 with Retry-After, within the request's time limit.
    let response = http
        .post(format!("{}/api/v1/datasets/people/count", url(b)))
        .json(&json!({"min_version": v2 + 100}))
        .timeout(Duration::from_secs(60))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 503);
    assert!(response.headers().contains_key("retry-after"));
}
