//! Hostile input, seeded and bounded: mutations of valid delta bodies (Arrow IPC, Parquet,
//! JSON) and of valid query bodies. Every answer must be a clean refusal or a success:
//! never a panic that escapes, never a 5xx, never an allocation the input dictated.
//!
//! `STRATA_HOSTILE_CASES` (default 3 000 per body format, 3 000 queries) and
//! `STRATA_HOSTILE_SEED` (default 24) run longer and other campaigns.

use std::sync::Arc;

use bytes::Bytes;
use object_store::ObjectStore;
use object_store::memory::InMemory;
use rand::rngs::StdRng;
use rand::seq::IndexedRandom;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};
use strata_daemon::config::Config;
use strata_daemon::error::ApiError;
use strata_shared::testing::peak_rss;
use strata_storaged::delta_input::{self, DeltaFormat};

use crate::common::{Queryd, arrow_stream, create_dataset};
use crate::differential::{Sampler, table};

fn cases() -> usize {
    std::env::var("STRATA_HOSTILE_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3_000)
}

fn seed() -> u64 {
    std::env::var("STRATA_HOSTILE_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(24)
}

/// 1–4 random changes: a byte set, a bit flipped, a cut, a slice repeated.
fn mutate(rng: &mut StdRng, valid: &[u8]) -> Vec<u8> {
    let mut body = valid.to_vec();
    for _ in 0..rng.random_range(1..=4) {
        if body.is_empty() {
            break;
        }
        let at = rng.random_range(0..body.len());
        match rng.random_range(0..10) {
            0..=3 => body[at] = rng.random(),
            4..=6 => body[at] ^= 1 << rng.random_range(0..8),
            7 => body[at] = *[0x00, 0x7f, 0x80, 0xff].choose(rng).unwrap(),
            8 => body.truncate(at),
            _ => {
                let end = (at + rng.random_range(1..64)).min(body.len());
                let slice = body[at..end].to_vec();
                body.splice(at..at, slice);
            }
        }
    }
    body
}

#[test]
fn mutated_delta_bodies_are_refused_cleanly_and_cheaply() {
    let mut rng = StdRng::seed_from_u64(seed());
    let keys: Vec<i64> = (0..20).map(table::key).collect();
    let upserts = table::rows(&keys, 1, 24);
    let delta = table::delta(&upserts, &[table::key(100), table::key(101)]);
    let schema = table::schema();
    let key = vec![table::KEY.to_owned()];
    let bodies = [
        (DeltaFormat::ArrowStream, arrow_stream(&delta)),
        (
            DeltaFormat::Parquet,
            strata_shared::parquet_io::encode(delta.schema(), std::slice::from_ref(&delta))
                .unwrap()
                .to_vec(),
        ),
        (
            DeltaFormat::Json,
            crate::differential::json_delta(&upserts, &[table::key(100)]),
        ),
    ];
    let before = peak_rss();
    // The reported bombs: a length prefix of 2 GiB, and JSON sent as Arrow (its first bytes
    // read as a 1.9 GB length). Each cost 1.9–2.4 GB of RSS before it was refused.
    for bomb in [&b"\xff\xff\xff\x7f"[..], &bodies[2].1[..]] {
        let e = delta_input::parse(
            DeltaFormat::ArrowStream,
            Bytes::copy_from_slice(bomb),
            &schema,
            &key,
        )
        .unwrap_err();
        assert_eq!(ApiError::from(&e).status(), 400, "{e}");
    }
    for (format, valid) in &bodies {
        let parsed = delta_input::parse(*format, Bytes::from(valid.clone()), &schema, &key);
        assert!(parsed.is_ok(), "{format:?}: the valid body: {parsed:?}");
        let (mut accepted, mut refused) = (0, 0);
        for case in 0..cases() {
            let body = mutate(&mut rng, valid);
            match delta_input::parse(*format, Bytes::from(body.clone()), &schema, &key) {
                Ok(_) => accepted += 1,
                Err(e) => {
                    let status = ApiError::from(&e).status();
                    assert!(
                        status.is_client_error(),
                        "{format:?} case {case}: {status} {e}\n  body: {body:02x?}"
                    );
                    refused += 1;
                }
            }
        }
        eprintln!("{format:?}: {accepted} mutations accepted, {refused} refused");
        assert!(refused > 0, "{format:?}: no mutation was refused");
    }
    let grown = peak_rss().saturating_sub(before);
    assert!(
        grown < 256 << 20,
        "decoding mutated bodies raised the peak RSS by {} MiB",
        grown >> 20
    );
}

/// Values that break naive handling: extremes, wrong types, odd strings.
fn nasty(rng: &mut StdRng) -> Value {
    let numbers = [
        "-9223372036854775809",
        "9223372036854775808",
        "18446744073709551616",
        "1e400",
        "-1e-400",
        "1e308",
        "0.1",
        "-0",
        "3.0",
        "-1",
        "0",
    ];
    match rng.random_range(0..8) {
        0 => serde_json::from_str(numbers.choose(rng).unwrap()).unwrap_or(Value::Null),
        1 => Value::Null,
        2 => json!(["a", 1, null]),
        3 => json!({"col": "id"}),
        4 => json!(
            *[
                "",
                "%",
                "\\",
                "é\u{0}",
                "2024-13-45",
                "NaN",
                "asc",
                "desc",
                "ID"
            ]
            .choose(rng)
            .unwrap()
        ),
        5 => json!(rng.random::<bool>()),
        6 => json!("x".repeat(rng.random_range(0..5_000))),
        _ => json!(rng.random::<i64>()),
    }
}

/// Replaces one random node of `value` (or removes a member, or adds an unknown one).
fn mutate_json(rng: &mut StdRng, value: &mut Value) {
    let descend = rng.random_bool(0.7);
    match value {
        Value::Object(map) if !map.is_empty() && descend => {
            let keys: Vec<String> = map.keys().cloned().collect();
            let key = keys.choose(rng).unwrap().clone();
            match rng.random_range(0..6) {
                0 => {
                    map.remove(&key);
                }
                1 => {
                    map.insert("unexpected".into(), nasty(rng));
                }
                _ => mutate_json(rng, map.get_mut(&key).unwrap()),
            }
        }
        Value::Array(items) if !items.is_empty() && descend => {
            let at = rng.random_range(0..items.len());
            mutate_json(rng, &mut items[at]);
        }
        other => *other = nasty(rng),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutated_query_bodies_get_a_json_answer_and_never_a_5xx() {
    let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let mut keys: Vec<i64> = (0..5_000).map(table::key).collect();
    keys.sort_unstable();
    let base = table::rows(&keys, 0, 24);
    create_dataset(&store, "t", std::slice::from_ref(&base), &[table::KEY]).await;
    let memory = Queryd::new(store.clone(), Config::default()).await;
    let (status, body) = memory
        .post("/api/v1/cache/pin", &json!({"dataset": "t"}), true)
        .await;
    assert_eq!(status, 200, "{body}");
    let mut cold = Config::default();
    cold.queryd.cache_bytes = 1;
    let cold = Queryd::new(store, cold).await;

    // Found by longer runs of this test, each once a 500: a limit that DataFusion's top-k
    // tables were sized by.
    for body in [
        json!({"columns": ["severity"], "distinct": true, "limit": 6_957_903_459_595_230_353u64,
               "order_by": [{"col": "severity", "dir": "asc"}]}),
        json!({"group_by": ["state"], "limit": u64::MAX, "order_by": [{"col": "count", "dir": "desc"}]}),
    ] {
        for queryd in [&memory, &cold] {
            let (status, answer) = queryd.post("/api/v1/datasets/t/query", &body, false).await;
            assert_eq!(status, 200, "{body}: {answer}");
        }
    }
    let sampler = Sampler { base: &base };
    let mut rng = StdRng::seed_from_u64(seed());
    let (mut ok, mut refused) = (0, 0);
    for case in 0..cases() {
        let mut body = sampler.query(&mut rng).body();
        for _ in 0..rng.random_range(1..=3) {
            mutate_json(&mut rng, &mut body);
        }
        let queryd = if case % 2 == 0 { &memory } else { &cold };
        let route = ["query", "count", "query/stream", "query?format=arrow"][case % 4];
        let (status, headers, answer) = queryd
            .post_raw(
                &format!("/api/v1/datasets/t/{route}"),
                body.to_string(),
                &[],
                false,
            )
            .await;
        assert!(
            status < 500,
            "case {case} {route}: {status} {}\n  body: {body}",
            String::from_utf8_lossy(&answer)
        );
        if status >= 400 {
            let error: Value = serde_json::from_slice(&answer).unwrap_or(Value::Null);
            assert!(
                error["error"].is_string() && error["kind"].is_string(),
                "case {case} {route}: {status} without a JSON error ({headers:?}): {}",
                String::from_utf8_lossy(&answer)
            );
            refused += 1;
        } else {
            ok += 1;
        }
    }
    eprintln!("queries: {ok} answered, {refused} refused");
    assert!(ok > 0 && refused > 0, "{ok} answered, {refused} refused");
}

/// The same mutations over HTTP, through the routes that take bodies — storaged's delta route
/// and its upload route — against a running storaged: every answer is a success or a JSON
/// 4xx (never a 5xx), and a refused body commits nothing: the table's version moves once per
/// accepted delta, and the catalog holds one dataset per accepted upload.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutated_bodies_over_http_commit_nothing_when_refused() {
    let mut rng = StdRng::seed_from_u64(seed() + 1);
    let cases = (cases() / 10).max(50);
    let storaged =
        crate::common::start_storaged(Arc::new(InMemory::new()), Config::default()).await;
    let http = reqwest::Client::new();
    let keys: Vec<i64> = (0..20).map(table::key).collect();
    let base = table::rows(&keys, 0, 7);
    let upload = |name: String, content_type: &'static str, body: Vec<u8>| {
        http.post(format!(
            "{}/api/v1/datasets/{name}/upload",
            storaged.storaged_url()
        ))
        .query(&[("primary_key", table::KEY)])
        .header("x-admin-token", crate::common::ADMIN)
        .header("content-type", content_type)
        .body(body)
        .send()
    };
    let parquet = |batch: &arrow::array::RecordBatch| {
        strata_shared::parquet_io::encode(batch.schema(), std::slice::from_ref(batch))
            .unwrap()
            .to_vec()
    };
    let created = upload(
        "items".into(),
        "application/vnd.apache.parquet",
        parquet(&base),
    )
    .await
    .unwrap();
    assert_eq!(created.status().as_u16(), 201);

    let upserts = table::rows(&keys[..5], 1, 24);
    let delta = table::delta(&upserts, &[table::key(100)]);
    let bodies: [(&'static str, Vec<u8>); 3] = [
        ("application/vnd.apache.arrow.stream", arrow_stream(&delta)),
        ("application/vnd.apache.parquet", parquet(&delta)),
        (
            "application/json",
            crate::differential::json_delta(&upserts, &[table::key(100)]),
        ),
    ];
    let before = peak_rss();
    let answer = |response: reqwest::Response| async move {
        let status = response.status().as_u16();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        (status, body)
    };
    let mut commits = 0u64;
    for (content_type, valid) in &bodies {
        for case in 0..cases {
            let body = mutate(&mut rng, valid);
            let response = http
                .post(format!(
                    "{}/internal/v1/datasets/items/deltas",
                    storaged.storaged_url()
                ))
                .header("x-internal-token", crate::common::INTERNAL)
                .header("content-type", *content_type)
                .body(body.clone())
                .send()
                .await
                .unwrap();
            let (status, answer) = answer(response).await;
            match status {
                200 => commits += 1,
                400..=499 => assert!(
                    answer["error"].is_string(),
                    "{content_type} {case}: {answer}"
                ),
                _ => panic!("{content_type} case {case}: {status} {answer}\n  body: {body:02x?}"),
            }
        }
    }
    let table = strata_shared::commit::Table::new(
        storaged.store(),
        strata_shared::layout::DatasetName::new("items").unwrap(),
    );
    assert_eq!(
        table.latest_version().await.unwrap(),
        commits,
        "only accepted deltas moved the version"
    );

    let mut uploaded = 1;
    for (content_type, valid) in [&bodies[0], &bodies[1]]
        .map(|(t, _)| *t)
        .into_iter()
        .zip([arrow_stream(&base), parquet(&base)])
    {
        for case in 0..cases {
            let body = mutate(&mut rng, &valid);
            let name = format!("up{uploaded}x{case}");
            let (status, answer) =
                answer(upload(name, content_type, body.clone()).await.unwrap()).await;
            match status {
                201 => uploaded += 1,
                400..=499 => assert!(
                    answer["error"].is_string(),
                    "{content_type} {case}: {answer}"
                ),
                _ => panic!("{content_type} case {case}: {status} {answer}\n  body: {body:02x?}"),
            }
        }
    }
    let listed = storaged.storaged().list_datasets().await.unwrap();
    assert_eq!(
        listed.datasets.len(),
        uploaded,
        "only accepted uploads created datasets"
    );
    eprintln!(
        "over HTTP: {commits} mutated deltas and {} mutated uploads accepted",
        uploaded - 1
    );
    let grown = peak_rss().saturating_sub(before);
    assert!(grown < 256 << 20, "peak RSS grew by {} MiB", grown >> 20);
}

/// Strings a hostile client puts where names, paths and sources go.
fn hostile_string(rng: &mut StdRng) -> String {
    let picks: [&dyn Fn(&mut StdRng) -> String; 14] = [
        &|_| String::new(),
        &|_| "/".into(),
        &|_| "//".into(),
        &|_| "../../etc/passwd".into(),
        &|_| "hostile/../../outside".into(),
        &|_| "/etc/hostname".into(),
        &|_| "a\0b".into(),
        &|_| "hostile/\u{202e}\u{1F600}é".into(),
        &|r| "x".repeat(r.random_range(1_000..6_000)),
        &|_| "hostile/./a//b".into(),
        &|_| " \t\n".into(),
        &|_| "C:\\windows\\system32".into(),
        &|r| {
            let bytes: Vec<u8> = (0..r.random_range(1..40)).map(|_| r.random()).collect();
            String::from_utf8_lossy(&bytes).into_owned()
        },
        &|r| format!("hostile/{}", r.random::<u32>()),
    ];
    picks.choose(rng).unwrap()(rng)
}

/// `s` percent-encoded for a path segment, or sometimes raw (a `%ff`, a NUL escape, a slash
/// the router must not take for its own).
fn segment(rng: &mut StdRng, s: &str) -> String {
    match rng.random_range(0..6) {
        0 => ["%ff", "%00", "%2e%2e", "a%2fb", "%", "%zz"]
            .choose(rng)
            .unwrap()
            .to_string(),
        _ => s
            .bytes()
            .map(|b| match b {
                b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' => (b as char).to_string(),
                _ => format!("%{b:02X}"),
            })
            .collect(),
    }
}

/// The routes no other campaign reaches — storaged's internal object API, its catalog (JSON
/// create, dataset and manifest reads), compactord's routes and their internal twins, and
/// queryd's routes with hostile names (reads, cache calls, reload, compaction, deltas, create)
/// — with
/// hostile names, paths, sources, query strings, headers, bodies and tokens, on a local
/// directory store: every answer is a success or a JSON 4xx (`{"error","kind"}`; a HEAD has no
/// body), never a 5xx but the documented 501 of a conditional update the store cannot do; no
/// path that leaves the store or names no object is accepted; no answer carries the store's
/// absolute path; a refused create creates nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_requests_on_object_catalog_and_compaction_routes_get_json_refusals() {
    use strata_testkit::{Mode, Store, TestCluster};

    let mut rng = StdRng::seed_from_u64(seed() + 2);
    let cases = (cases() / 2).max(200);
    let dir = tempfile::tempdir().unwrap();
    let cluster = TestCluster::builder()
        .mode(Mode::InProcess)
        .store(Store::LocalDir)
        .dir(dir.path())
        .daemons(true, 1, true)
        .start()
        .await
        .unwrap();
    let secret = dir.path().join("data").display().to_string();
    let (s, c, q) = (
        cluster.storaged_url(),
        cluster.compactord_url(),
        cluster.queryd_url(0),
    );
    let http = reqwest::Client::new();
    // One real dataset, with a delta, so compaction and manifest routes have something to do.
    let keys: Vec<i64> = (0..20).map(table::key).collect();
    let base = table::rows(&keys, 0, 7);
    let body = strata_shared::parquet_io::encode(base.schema(), std::slice::from_ref(&base))
        .unwrap()
        .to_vec();
    let created = http
        .post(format!("{s}/api/v1/datasets/items/upload"))
        .query(&[("primary_key", table::KEY)])
        .header("x-admin-token", crate::common::ADMIN)
        .header("content-type", "application/vnd.apache.parquet")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(created.status().as_u16(), 201);
    let delta = table::delta(&table::rows(&keys[..3], 1, 24), &[]);
    let posted = http
        .post(format!("{s}/internal/v1/datasets/items/deltas"))
        .header("x-internal-token", crate::common::INTERNAL)
        .header("content-type", "application/vnd.apache.arrow.stream")
        .body(arrow_stream(&delta))
        .send()
        .await
        .unwrap();
    assert_eq!(posted.status().as_u16(), 200);
    let valid_create =
        json!({"name": "made", "source": "nope/*.parquet", "primary_key": [table::KEY]});

    let token =
        |rng: &mut StdRng, name: &'static str, right: &'static str| match rng.random_range(0..8) {
            0 => None,
            1 => Some((name, "wrong".to_owned())),
            _ => Some((name, right.to_owned())),
        };
    let mut accepted_creates = 0;
    let mut statuses = std::collections::BTreeMap::<(&str, u16), usize>::new();
    let before = peak_rss();
    for case in 0..cases {
        let hostile = hostile_string(&mut rng);
        let seg = segment(&mut rng, &hostile);
        let mut object_path = None;
        let mut sent = String::new();
        let (kind, request, update) = match rng.random_range(0..11) {
            0..=2 => {
                // The object API: a hostile path, under `hostile/` or bare.
                let path = if rng.random_bool(0.5) {
                    format!("hostile/{hostile}")
                } else {
                    hostile.clone()
                };
                let mode = *["overwrite", "create", "update", "bogus"]
                    .choose(&mut rng)
                    .unwrap();
                let url = format!("{s}/internal/v1/object");
                let method = rng.random_range(0..4);
                let r = match method {
                    0 => http.get(&url),
                    1 => http.head(&url),
                    2 => http
                        .put(&url)
                        .query(&[("mode", mode)])
                        .body(vec![7u8; rng.random_range(0..64)]),
                    _ => http.delete(&url),
                };
                let r = r.query(&[("path", path.as_str())]);
                object_path = Some(path);
                let r = match rng.random_range(0..5) {
                    0 => r.header(
                        "range",
                        ["bytes=5-1", "bytes=-0", "bytes=x", "items=0-1"]
                            .choose(&mut rng)
                            .unwrap()
                            .to_string(),
                    ),
                    1 => r.header("if-match", "\"nope\""),
                    2 => r.header(strata_storaged_api::objects::IF_MODIFIED_SINCE, "yesterday"),
                    3 => r.header(
                        strata_storaged_api::objects::VERSION,
                        hostile.replace(['\0', '\n'], ""),
                    ),
                    _ => r,
                };
                let r = match token(&mut rng, "x-internal-token", crate::common::INTERNAL) {
                    Some((h, v)) => r.header(h, v),
                    None => r,
                };
                ("object", r, method == 2 && mode == "update")
            }
            3 => {
                let q: Vec<(&str, String)> = vec![
                    ("prefix", hostile.clone()),
                    ("offset", hostile_string(&mut rng)),
                    (
                        "delimiter",
                        ["true", "yes", ""].choose(&mut rng).unwrap().to_string(),
                    ),
                ];
                let r = http
                    .get(format!("{s}/internal/v1/list"))
                    .query(&q)
                    .header("x-internal-token", crate::common::INTERNAL);
                ("list", r, false)
            }
            4 => {
                let mut body = json!({"from": format!("hostile/{hostile}"), "to": hostile_string(&mut rng), "mode": "create"});
                mutate_json(&mut rng, &mut body);
                let r = http
                    .post(format!("{s}/internal/v1/copy"))
                    .header("x-internal-token", crate::common::INTERNAL)
                    .json(&body);
                ("copy", r, false)
            }
            5 => {
                let mut body = valid_create.clone();
                let field = *["name", "source", "format", "primary_key"]
                    .choose(&mut rng)
                    .unwrap();
                body[field] = json!(hostile);
                if rng.random_bool(0.3) {
                    mutate_json(&mut rng, &mut body);
                }
                sent = body.to_string();
                let r = http.post(format!("{s}/api/v1/datasets")).json(&body);
                let r = match token(&mut rng, "x-admin-token", crate::common::ADMIN) {
                    Some((h, v)) => r.header(h, v),
                    None => r,
                };
                ("create", r, false)
            }
            6 => {
                let tail = [
                    "",
                    "/manifests",
                    "/manifests/1",
                    "/manifests/x",
                    "/manifests/99999999999999999999",
                ]
                .choose(&mut rng)
                .unwrap();
                let name = if rng.random_bool(0.3) {
                    "items".into()
                } else {
                    seg.clone()
                };
                let r = http
                    .get(format!("{s}/api/v1/datasets/{name}{tail}"))
                    .header("x-admin-token", crate::common::ADMIN);
                ("catalog", r, false)
            }
            7 => {
                let (prefix, header, right) = if rng.random_bool(0.5) {
                    ("api", "x-admin-token", crate::common::ADMIN)
                } else {
                    ("internal", "x-internal-token", crate::common::INTERNAL)
                };
                let name = if rng.random_bool(0.2) {
                    "items".into()
                } else {
                    seg.clone()
                };
                let r = http
                    .post(format!("{c}/{prefix}/v1/datasets/{name}/compact"))
                    .body(hostile.clone());
                let r = match token(&mut rng, header, right) {
                    Some((h, v)) => r.header(h, v),
                    None => r,
                };
                ("compact", r, false)
            }
            9 | 10 => {
                // queryd's routes with a hostile dataset name, body or content type; its
                // admin calls forward to storaged and compactord.
                let name = if rng.random_bool(0.3) {
                    "items".into()
                } else {
                    seg.clone()
                };
                let mut body = json!({"dataset": hostile, "predicates": [{"col": "id", "op": "eq", "val": hostile}]});
                mutate_json(&mut rng, &mut body);
                let text = body.to_string();
                let content_type = *[
                    "application/json",
                    "text/csv",
                    "application/vnd.apache.arrow.stream",
                    "application/vnd.apache.parquet",
                    "",
                ]
                .choose(&mut rng)
                .unwrap();
                let r = match rng.random_range(0..9) {
                    0 => http.get(format!("{q}/api/v1/datasets/{name}/schema")),
                    1 => http.get(format!("{q}/api/v1/datasets/{name}/status")),
                    2 => http
                        .post(format!(
                            "{q}/api/v1/datasets/{name}/{}",
                            ["query", "query/stream", "count"].choose(&mut rng).unwrap()
                        ))
                        .body(text),
                    3 => http
                        .post(format!(
                            "{q}/api/v1/cache/{}",
                            ["pin", "unpin", "evict"].choose(&mut rng).unwrap()
                        ))
                        .body(text),
                    4 => http
                        .post(format!(
                            "{q}/api/v1/datasets/{name}/{}",
                            ["reload", "compact"].choose(&mut rng).unwrap()
                        ))
                        .body(text),
                    5 => http.get(format!("{q}/api/v1/datasets/{name}/compactions")),
                    6 => http
                        .post(format!("{q}/api/v1/datasets/{name}/deltas"))
                        .body(text),
                    // History: hostile parameters (never a long `wait`: it would only
                    // slow the campaign down).
                    7 => http
                        .get(format!(
                            "{q}/api/v1/datasets/{name}/{}",
                            ["versions", "changes"].choose(&mut rng).unwrap()
                        ))
                        .query(&[
                            (
                                *["since", "until", "before", "limit", "format", "as_of"]
                                    .choose(&mut rng)
                                    .unwrap(),
                                hostile.as_str(),
                            ),
                            (
                                "since",
                                *["0", "-1", "x", "99999999999999999999", "1"]
                                    .choose(&mut rng)
                                    .unwrap(),
                            ),
                        ]),
                    _ => http
                        .post(format!("{q}/api/v1/datasets"))
                        .query(&[("name", hostile.as_str()), ("primary_key", "id")])
                        .body(text),
                };
                let r = if content_type.is_empty() {
                    r
                } else {
                    r.header("content-type", content_type)
                };
                let r = match token(&mut rng, "x-admin-token", crate::common::ADMIN) {
                    Some((h, v)) => r.header(h, v),
                    None => r,
                };
                ("queryd", r, false)
            }
            _ => {
                let (prefix, header, right) = if rng.random_bool(0.5) {
                    ("api", "x-admin-token", crate::common::ADMIN)
                } else {
                    ("internal", "x-internal-token", crate::common::INTERNAL)
                };
                let r = if rng.random_bool(0.5) {
                    http.get(format!("{c}/{prefix}/v1/compactions")).query(&[
                        ("dataset", hostile.as_str()),
                        (
                            "limit",
                            ["-1", "x", "99999999999999999999", "5"]
                                .choose(&mut rng)
                                .unwrap(),
                        ),
                    ])
                } else {
                    http.post(format!("{c}/{prefix}/v1/gc"))
                        .body(hostile.clone())
                };
                let r = match token(&mut rng, header, right) {
                    Some((h, v)) => r.header(h, v),
                    None => r,
                };
                ("compactord", r, false)
            }
        };
        // A header value no HTTP client can send (a control character) is not a request.
        let Ok(request) = request.build() else {
            continue;
        };
        let (method, url) = (request.method().clone(), request.url().to_string());
        let response = http.execute(request).await.unwrap();
        let status = response.status().as_u16();
        let text = response.text().await.unwrap_or_default();
        *statuses.entry((kind, status)).or_default() += 1;
        let context = || format!("case {case}: {method} {url} {sent} -> {status} {text}");
        assert!(status < 500 || (status == 501 && update), "{}", context());
        assert!(
            !text.contains(&secret),
            "the store's path leaked: {}",
            context()
        );
        if status >= 400 && method != reqwest::Method::HEAD {
            let body: Value =
                serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON: {}", context()));
            assert!(
                body["error"].is_string() && body["kind"].is_string(),
                "{}",
                context()
            );
        }
        if let Some(path) = object_path.filter(|_| (200..300).contains(&status)) {
            // Accepted paths name an object inside the store, never the store itself or
            // anything outside it.
            assert!(
                !path.trim_matches('/').is_empty() && !path.split('/').any(|seg| seg == ".."),
                "{}",
                context()
            );
        }
        if (kind == "create" || url.contains("/api/v1/datasets?")) && (200..300).contains(&status) {
            accepted_creates += 1;
        }
    }
    let listed = cluster.storaged().list_datasets().await.unwrap();
    assert_eq!(
        listed.datasets.len(),
        1 + accepted_creates,
        "only accepted creates made datasets"
    );
    let grown = peak_rss().saturating_sub(before);
    assert!(grown < 256 << 20, "peak RSS grew by {} MiB", grown >> 20);
    eprintln!("hostile routes: {statuses:?}");
}
