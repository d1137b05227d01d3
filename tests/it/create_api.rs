//! Creating datasets through queryd's public API (`POST /api/v1/datasets`, forwarded to
//! storaged's catalog) against the real `strata up`: uploads of Parquet and Arrow bodies, a
//! JSON source, and every refusal as a JSON error that creates nothing; and the `strata
//! health` and `strata demo` commands a compose deployment uses.

use std::process::Command;

use serde_json::{Value, json};
use strata_testkit::{Mode, Store, TestCluster, strata_bin};

use crate::common::{arrow_stream, people};

const PARQUET: &str = "application/vnd.apache.parquet";
const ARROW: &str = "application/vnd.apache.arrow.stream";

struct Api {
    http: reqwest::Client,
    queryd: String,
    token: String,
}

impl Api {
    /// `POST /api/v1/datasets{query}` with `body`; the status and the JSON answer.
    async fn create(
        &self,
        query: &str,
        content_type: &str,
        body: Vec<u8>,
        token: Option<&str>,
    ) -> (u16, Value) {
        let mut request = self
            .http
            .post(format!("{}/api/v1/datasets{query}", self.queryd))
            .header("content-type", content_type)
            .body(body);
        if let Some(token) = token.or(Some(&self.token)).filter(|t| !t.is_empty()) {
            request = request.header("x-admin-token", token);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let text = response.text().await.unwrap();
        let answer = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("not JSON ({e}), status {status}: {text}"));
        (status, answer)
    }

    async fn count(&self, name: &str) -> (u16, Value) {
        let response = self
            .http
            .post(format!("{}/api/v1/datasets/{name}/count", self.queryd))
            .json(&json!({}))
            .send()
            .await
            .unwrap();
        (response.status().as_u16(), response.json().await.unwrap())
    }
}

/// A create that must be refused: query, content type, body, token (`None`: the admin
/// token), the status, and the dataset it must not create (empty: none to check).
type Refusal<'a> = (&'a str, &'a str, Vec<u8>, Option<&'a str>, u16, &'a str);

/// `strata up` on a local directory.
async fn strata_up() -> TestCluster {
    TestCluster::builder()
        .mode(Mode::Up)
        .store(Store::LocalDir)
        .start()
        .await
        .unwrap()
}

fn parquet(ids: &[i64]) -> Vec<u8> {
    let batch = people(ids);
    strata_shared::parquet_io::encode(batch.schema(), &[batch])
        .unwrap()
        .to_vec()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn datasets_are_created_through_queryd() {
    let strata = strata_up().await;
    let api = Api {
        http: reqwest::Client::new(),
        queryd: strata.queryd_url(0),
        token: strata.admin_token().into(),
    };

    // An uploaded Parquet file, keyed, is served at once and takes deltas.
    let (status, created) = api
        .create(
            "?name=people&primary_key=id",
            PARQUET,
            parquet(&[3, 1, 2]),
            None,
        )
        .await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(
        (created["name"].as_str(), created["base_rows"].as_u64()),
        (Some("people"), Some(3))
    );
    assert_eq!(created["primary_key"], json!(["id"]));
    assert_eq!(api.count("people").await.1["count"], 3);
    let listed: Value = api
        .http
        .get(format!("{}/api/v1/datasets", api.queryd))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(listed.to_string().contains("\"people\""), "{listed}");
    let delta = api
        .http
        .post(format!("{}/api/v1/datasets/people/deltas", api.queryd))
        .header("x-admin-token", &api.token)
        .json(&json!({"deletes": [{"id": 2}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(delta.status().as_u16(), 200);
    assert_eq!(api.count("people").await.1["count"], 2);

    // An Arrow IPC stream; without a key the dataset is read-only.
    let (status, created) = api
        .create(
            "?name=people_arrow",
            ARROW,
            arrow_stream(&people(&[7, 8])),
            None,
        )
        .await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["primary_key"], json!([]));
    assert_eq!(api.count("people_arrow").await.1["count"], 2);

    // A source storaged reads, described in JSON.
    std::fs::write(
        strata.dir().join("more.parquet"),
        parquet(&[10, 11, 12, 13]),
    )
    .unwrap();
    let source = json!({"name": "more", "source": "more.parquet", "primary_key": ["id"]});
    let (status, created) = api
        .create(
            "",
            "application/json",
            source.to_string().into_bytes(),
            None,
        )
        .await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(api.count("more").await.1["count"], 4);

    // Refusals: each a JSON error with its status, and nothing created.
    let refusals: Vec<Refusal> = vec![
        (
            "?name=people&primary_key=id",
            PARQUET,
            parquet(&[1]),
            None,
            409,
            "people",
        ),
        ("?primary_key=id", PARQUET, parquet(&[1]), None, 400, ""),
        (
            "?name=bad1",
            PARQUET,
            b"PAR1 not a parquet file PAR1".to_vec(),
            None,
            400,
            "bad1",
        ),
        (
            "?name=bad2",
            ARROW,
            vec![0xff, 0xff, 0xff, 0x7f],
            None,
            400,
            "bad2",
        ),
        (
            "?name=bad3&primary_key=id",
            PARQUET,
            parquet(&[1, 1]),
            None,
            400,
            "bad3",
        ),
        (
            "?name=bad4&primary_key=nope",
            PARQUET,
            parquet(&[1]),
            None,
            400,
            "bad4",
        ),
        (
            "?name=bad5",
            "text/plain",
            b"id\n1\n".to_vec(),
            None,
            415,
            "bad5",
        ),
        ("?name=bad6", PARQUET, parquet(&[1]), Some(""), 401, "bad6"),
        (
            "?name=bad7",
            PARQUET,
            parquet(&[1]),
            Some("wrong"),
            403,
            "bad7",
        ),
        ("?name=bad%2F8", PARQUET, parquet(&[1]), None, 400, ""),
        (
            "?name=bad9&colour=red",
            PARQUET,
            parquet(&[1]),
            None,
            400,
            "bad9",
        ),
        (
            "",
            "application/json",
            b"{\"name\": \"bad10\"}".to_vec(),
            None,
            400,
            "bad10",
        ),
    ];
    for (query, content_type, body, token, want, name) in refusals {
        let (status, answer) = api.create(query, content_type, body, token).await;
        assert_eq!(status, want, "{query} {content_type}: {answer}");
        assert!(
            answer["error"].is_string() && answer["kind"].is_string(),
            "{query}: {answer}"
        );
        if !name.is_empty() && name != "people" {
            assert_eq!(api.count(name).await.0, 404, "{query} created {name}");
        }
    }
    assert_eq!(
        api.count("people").await.1["count"],
        2,
        "the 409 left people alone"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_and_demo_commands() {
    let strata = strata_up().await;
    let queryd = strata.queryd_url(0);
    let strata_cmd = |args: &[&str]| {
        Command::new(strata_bin())
            .args(args)
            .env("STRATA_ADMIN_TOKEN", strata.admin_token())
            .env("RUST_LOG", "warn")
            .output()
            .unwrap()
    };
    let healthy = strata_cmd(&["health", &format!("{}/health", queryd)]);
    assert!(healthy.status.success(), "{healthy:?}");
    let missing = strata_cmd(&["health", &format!("{}/no/such/route", queryd)]);
    assert!(!missing.status.success());
    assert!(
        String::from_utf8_lossy(&missing.stderr).contains("404"),
        "{missing:?}"
    );
    let closed = strata_cmd(&["health", "--timeout", "2", "http://127.0.0.1:9/health"]);
    assert!(!closed.status.success());

    let demo = strata_cmd(&["demo", "--url", &queryd, "--rows", "5000"]);
    assert!(demo.status.success(), "{demo:?}");
    assert!(String::from_utf8_lossy(&demo.stdout).contains("created dataset demo"));
    let count: Value = reqwest::Client::new()
        .post(format!("{}/api/v1/datasets/demo/count", queryd))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(count["count"], 5000);
    // Again: the dataset exists, which is success for a one-shot loader.
    let again = strata_cmd(&["demo", "--url", &queryd, "--rows", "5000"]);
    assert!(again.status.success(), "{again:?}");
    assert!(String::from_utf8_lossy(&again.stdout).contains("exists already"));
    let wrong = Command::new(strata_bin())
        .args([
            "demo",
            "--url",
            &queryd,
            "--admin-token",
            "wrong",
            "--wait",
            "1",
        ])
        .output()
        .unwrap();
    assert!(!wrong.status.success(), "{wrong:?}");
}

/// A dataset that fits the cache is loaded right after it is created, and after it changes
/// while out of memory, not by its first read (issue 18): no request reads it here.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dataset_is_loaded_when_created_or_changed_not_on_its_first_read() {
    let strata = strata_up().await;
    let api = Api {
        http: reqwest::Client::new(),
        queryd: strata.queryd_url(0),
        token: strata.admin_token().into(),
    };
    let queryd = strata.queryd();
    let residency = |version: u64| {
        let queryd = queryd.clone();
        async move {
            for _ in 0..500 {
                let stats = queryd.cache_stats().await.unwrap();
                let entry = stats.datasets.iter().find(|d| d.dataset == "fresh");
                if let Some(entry) = entry
                    && entry.residency == "memory"
                    && entry.version >= version
                {
                    return (entry.residency.clone(), entry.hits + entry.misses);
                }
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
            panic!("fresh never reached memory at version {version}");
        }
    };
    let (status, created) = api
        .create(
            "?name=fresh&primary_key=id",
            PARQUET,
            parquet(&[1, 2, 3]),
            None,
        )
        .await;
    assert_eq!(status, 201, "{created}");
    let version = created["version"].as_u64().unwrap();
    assert_eq!(
        residency(version).await,
        ("memory".into(), 0),
        "loaded, never read"
    );

    // Evicted, then changed by a write straight to storaged: its notification to queryd
    // loads the dataset again (a write through queryd would read its own version back).
    let evicted = queryd.evict("fresh").await.unwrap();
    assert_eq!(evicted.residency, "cold");
    let written: Value = api
        .http
        .post(format!(
            "{}/internal/v1/datasets/fresh/deltas",
            strata.storaged_url()
        ))
        .header("x-internal-token", strata.internal_token())
        .json(&json!({"deletes": [{"id": 2}]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let version = written["version"].as_u64().unwrap();
    let (state, reads) = residency(version).await;
    assert_eq!(
        (state.as_str(), reads),
        ("memory", 0),
        "loaded by the write's notification, not a read"
    );
}
