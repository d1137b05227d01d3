//! Separate daemon processes: writes go through one queryd; the others converge — by
//! storaged's notification, by polling the manifest, or at once when a query asks for
//! `min_version`.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use strata_testkit::{Mode, Store, TestCluster, free_port, write_parquet};

use crate::common::people;

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
    log: &dyn Fn() -> String,
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
            log()
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
    // The queryds' ports are chosen here: storaged notifies a (the writer's queryd) and c
    // (which never polls); b hears nothing and polls.
    let (a, b, c) = (free_port(), free_port(), free_port());
    let url = |p: u16| format!("http://127.0.0.1:{p}");
    let settings = format!(
        "[storaged]\nnotify_urls = [\"{}\", \"{}\"]\n\
         [queryd]\npoll_interval = \"0s\"\nrequest_timeout = \"6s\"\n\
         [[datasets]]\nname = \"people\"\nsource = \"src/people.parquet\"\nprimary_key = [\"id\"]\n",
        url(a),
        url(c)
    );
    let mut builder = TestCluster::builder()
        .mode(Mode::Processes)
        .store(Store::LocalDir)
        .dir(dir.path())
        .daemons(true, 3, false)
        .toml(&settings);
    for (index, (port, poll_ms)) in [(a, 0), (b, 300), (c, 0)].into_iter().enumerate() {
        builder = builder.queryd_toml(
            index,
            &format!("[queryd]\nlisten = \"127.0.0.1:{port}\"\npoll_interval = \"{poll_ms}ms\"\n"),
        );
    }
    let cluster = builder.start().await.unwrap();
    let log = |index: usize| cluster.log(&format!("queryd-{index}"));
    let http = reqwest::Client::new();
    for (index, port) in [a, b, c].into_iter().enumerate() {
        wait_version(&http, &url(port), 0, &|| log(index)).await;
    }

    let post = |body: Value| {
        http.post(format!("{}/api/v1/datasets/people/deltas", url(a)))
            .header("x-admin-token", cluster.admin_token())
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
        .unwrap_or_else(|| panic!("{answer}\n{}", cluster.log("storaged")));
    let want = json!([{"id": 20, "name": "person 20"}, {"id": 30, "name": "person 30"}, {"id": 40, "name": "forty"}]);
    // The writer's queryd serves it already; c by notification; b by its poll.
    let (_, served_a, body) = served(&http, &url(a), None).await;
    assert_eq!((served_a, &body["data"]), (v1, &want));
    assert_eq!(wait_version(&http, &url(c), v1, &|| log(2)).await, want);
    assert_eq!(wait_version(&http, &url(b), v1, &|| log(1)).await, want);

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
