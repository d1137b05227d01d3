//! Versions as a feature, against the real `strata up` binary: random writes and compactions,
//! then every retained version read back (`version`, `as_of`; JSON pages, counts, key
//! lookups) equal to the model's replay at that version and, row for row in storage order,
//! to what the live dataset answered when that version was the newest; the change feed
//! replayed onto the oldest retained version equals the newest (NDJSON and Arrow agree); a
//! follower's long poll wakes up on a new commit; versions garbage collection expired answer
//! 410 naming the oldest retained one.

use std::collections::BTreeMap;
use std::time::Duration;

use arrow::array::AsArray;
use arrow::datatypes::UInt64Type;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Map, Value, json};
use strata_queryd_api::{ChangesQuery, ClientError, QuerydClient, VersionsQuery};

use crate::deltas_model::{self, Item, KEY_SPACE};

/// Rows the writes never touch (keys from `KEY_SPACE` up): the table is big enough for its
/// files to have several row groups, and every version must still count them.
const FILLER: i64 = 100_000;

/// Rows of the writable key range (`id < KEY_SPACE`), as JSON objects, in the order given.
type Rows = Vec<Map<String, Value>>;

/// GC only on demand, keeping 6 versions with no grace: the test decides when history is
/// cut. Thresholds off: compactions happen when the test asks.
const SETTINGS: &str = r#"
[compactord]
check_interval = "0s"
gc_schedule = ""
gc_grace = "0s"
gc_keep_manifests = 6
"#;

fn writable(extra: Value) -> Value {
    let mut request = json!({
        "predicates": [{"col": "id", "op": "lt", "val": KEY_SPACE}],
        "page_size": 100_000,
    });
    if let (Value::Object(r), Value::Object(e)) = (&mut request, extra) {
        r.extend(e);
    }
    request
}

/// The writable rows of `request`'s version, in storage order, and the version answered.
async fn rows(queryd: &QuerydClient, extra: Value) -> (u64, Rows) {
    let request = writable(extra);
    let answer = queryd
        .query("items", &request)
        .await
        .unwrap_or_else(|e| panic!("{request}: {e}"));
    (answer.version.unwrap(), answer.body.data)
}

fn model_rows(model: &BTreeMap<i64, Item>) -> Rows {
    model.values().map(Item::json).collect()
}

fn sorted(mut rows: Rows) -> Rows {
    rows.sort_by_key(|r| r["id"].as_i64());
    rows
}

fn delta_body(upserts: &[Item], deletes: &[i64]) -> Value {
    json!({
        "upserts": upserts.iter().map(Item::json).collect::<Vec<_>>(),
        "deletes": deletes.iter().map(|id| json!({"id": id})).collect::<Vec<_>>(),
    })
}

fn status_of(e: ClientError) -> (u16, String, String) {
    match e {
        ClientError::Status {
            status,
            kind,
            message,
            ..
        } => (status, kind.unwrap_or_default(), message),
        other => panic!("not a refusal: {other}"),
    }
}

/// What the live dataset answered at one version the test committed.
struct Seen {
    kind: &'static str,
    rows: Rows,
    model: BTreeMap<i64, Item>,
}

/// The state at `version`: that of the newest version the test committed at or before it
/// (a compaction's epoch bump, committed by compactord, changes no row).
fn state_at(seen: &BTreeMap<u64, Seen>, version: u64) -> &Seen {
    seen.range(..=version).next_back().map(|(_, s)| s).unwrap()
}

/// The feed's lines replayed onto `rows` (keyed by id).
fn replay(rows: &BTreeMap<i64, Item>, feed: &[u8]) -> Rows {
    let mut replayed: BTreeMap<i64, Map<String, Value>> =
        rows.iter().map(|(&id, r)| (id, r.json())).collect();
    for line in std::str::from_utf8(feed).unwrap().lines() {
        let mut change: Map<String, Value> = serde_json::from_str(line).unwrap();
        let id = change["id"].as_i64().unwrap();
        let op = change.remove("_op").unwrap();
        change.remove("_version").unwrap();
        change.remove("_committed_at").unwrap();
        match op.as_str().unwrap() {
            "delete" => replayed.remove(&id),
            "upsert" => replayed.insert(id, change),
            other => panic!("unknown op {other}"),
        };
    }
    replayed.into_values().collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_retained_version_reads_as_it_was_and_the_feed_replays_to_the_newest() {
    let dir = tempfile::tempdir().unwrap();
    let strata = deltas_model::items_up(dir.path(), FILLER, SETTINGS).await;
    let queryd = QuerydClient::new(&strata.queryd_url(0), Some(strata.admin_token()));
    let mut rng = StdRng::seed_from_u64(0x7e25_1017);
    let mut model: BTreeMap<i64, Item> = deltas_model::base_items()
        .into_iter()
        .map(|r| (r.id, r))
        .collect();

    let mut seen: BTreeMap<u64, Seen> = BTreeMap::new();
    let (v0, live) = rows(&queryd, json!({})).await;
    assert_eq!(v0, 0);
    assert_eq!(sorted(live.clone()), model_rows(&model));
    seen.insert(
        0,
        Seen {
            kind: "create",
            rows: live,
            model: model.clone(),
        },
    );

    for round in 0..24 {
        let (kind, version) = if round % 8 == 7 {
            // A compaction: a new version with the same rows in the same order.
            let run = queryd.compact("items").await.unwrap();
            ("compaction", run.version.unwrap())
        } else {
            let (upserts, deletes) = deltas_model::random_request(&mut rng, round, |_| true);
            let committed = queryd
                .post_deltas("items", &delta_body(&upserts, &deletes), None)
                .await
                .unwrap();
            for id in &deletes {
                model.remove(id);
            }
            for item in upserts {
                model.insert(item.id, item);
            }
            ("ingest", committed.body.version)
        };
        let (at, live) = rows(&queryd, json!({"min_version": version})).await;
        assert_eq!(at, version, "round {round}");
        assert_eq!(sorted(live.clone()), model_rows(&model), "round {round}");
        seen.insert(
            version,
            Seen {
                kind,
                rows: live,
                model: model.clone(),
            },
        );
    }
    let latest = *seen.keys().last().unwrap();

    // Every version, read back exactly: the same rows in the same order as when it was live,
    // the same count (filler included), and key lookups (the cold key path) that agree.
    for (&v, then) in &seen {
        let (at, back) = rows(&queryd, json!({"version": v})).await;
        assert_eq!(at, v);
        assert_eq!(back, then.rows, "version {v} reads as it was");
        let count = queryd.count("items", &json!({"version": v})).await.unwrap();
        assert_eq!(count.version, Some(v));
        assert_eq!(
            count.body.count,
            then.model.len() as u64 + FILLER as u64,
            "version {v}"
        );
        for _ in 0..5 {
            let id = rng.random_range(0..KEY_SPACE);
            let one = queryd
                .query(
                    "items",
                    &json!({"predicates": [{"col": "id", "op": "eq", "val": id}], "version": v}),
                )
                .await
                .unwrap();
            let expected: Rows = then.model.get(&id).map(Item::json).into_iter().collect();
            assert_eq!(one.body.data, expected, "key {id} at version {v}");
        }
    }

    // The listing: newest first, every version (the compactions' epoch bumps too), each with
    // its kind and exact row count.
    let listed = queryd
        .versions(
            "items",
            &VersionsQuery {
                before: None,
                limit: Some(100),
            },
        )
        .await
        .unwrap();
    assert_eq!((listed.oldest, listed.latest), (0, latest));
    let numbers: Vec<u64> = listed.versions.iter().map(|v| v.version).collect();
    assert_eq!(numbers, (0..=latest).rev().collect::<Vec<_>>());
    for info in &listed.versions {
        let then = state_at(&seen, info.version);
        assert_eq!(
            info.rows,
            then.model.len() as u64 + FILLER as u64,
            "{info:?}"
        );
        let kind = seen.get(&info.version).map_or("epoch", |s| s.kind);
        assert_eq!(info.kind, kind, "{info:?}");
    }
    let page = queryd
        .versions(
            "items",
            &VersionsQuery {
                before: Some(5),
                limit: Some(2),
            },
        )
        .await
        .unwrap();
    let numbers: Vec<u64> = page.versions.iter().map(|v| v.version).collect();
    assert_eq!(numbers, vec![4, 3]);

    // `as_of` a version's commit time is that version; before the dataset existed is a 404.
    for info in listed.versions.iter().step_by(5) {
        let (at, back) = rows(&queryd, json!({"as_of": info.committed_at})).await;
        assert_eq!(at, info.version);
        assert_eq!(back, state_at(&seen, info.version).rows);
    }
    let before = queryd
        .query("items", &json!({"as_of": "2001-01-01T00:00:00Z"}))
        .await
        .unwrap_err();
    assert_eq!(status_of(before).0, 404);

    // The change feed since version 0, replayed onto version 0, is the newest version; NDJSON
    // and Arrow carry the same changes in version order.
    let feed = queryd
        .changes(
            "items",
            &ChangesQuery {
                since: Some(0),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(feed.version, Some(latest));
    let changes: Vec<Map<String, Value>> = std::str::from_utf8(&feed.body)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let ndjson_versions: Vec<u64> = changes
        .iter()
        .map(|c| c["_version"].as_u64().unwrap())
        .collect();
    assert!(ndjson_versions.is_sorted() && ndjson_versions.iter().all(|&v| v > 0 && v <= latest));
    assert_eq!(
        replay(&seen[&0].model, &feed.body),
        model_rows(&seen[&latest].model)
    );
    let arrow = queryd
        .changes(
            "items",
            &ChangesQuery {
                since: Some(0),
                format: Some("arrow".into()),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let reader =
        arrow::ipc::reader::StreamReader::try_new(std::io::Cursor::new(arrow.body), None).unwrap();
    let mut arrow_versions = Vec::new();
    for batch in reader {
        let batch = batch.unwrap();
        let column = batch
            .column_by_name("_version")
            .unwrap()
            .as_primitive::<UInt64Type>();
        arrow_versions.extend((0..column.len()).map(|i| column.value(i)));
    }
    assert_eq!(arrow_versions, ndjson_versions);

    // A follower at the newest version waits for the next commit.
    let writer = {
        let queryd = queryd.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(500)).await;
            queryd
                .post_deltas(
                    "items",
                    &json!({"upserts": [], "deletes": [{"id": 1}]}),
                    None,
                )
                .await
                .unwrap()
                .body
                .version
        })
    };
    let followed = queryd
        .changes(
            "items",
            &ChangesQuery {
                since: Some(latest),
                wait: Some(30),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let next = writer.await.unwrap();
    assert_eq!(followed.version, Some(next));
    let line: Value = serde_json::from_slice(followed.body.trim_ascii()).unwrap();
    assert_eq!(
        (
            line["_op"].as_str(),
            line["id"].as_i64(),
            line["_version"].as_u64()
        ),
        (Some("delete"), Some(1), Some(next))
    );

    // Refusals: each a JSON error with its status.
    for (request, status) in [
        (json!({"version": 1, "min_version": 1}), 400),
        (json!({"version": 1, "as_of": "2026-01-01T00:00:00Z"}), 400),
        (json!({"as_of": "yesterday"}), 400),
        (json!({"version": next + 1}), 404),
    ] {
        let refused = queryd.query("items", &request).await.unwrap_err();
        assert_eq!(status_of(refused).0, status, "{request}");
    }
    for (query, status) in [
        (ChangesQuery::default(), 400),
        (
            ChangesQuery {
                since: Some(3),
                until: Some(2),
                ..Default::default()
            },
            400,
        ),
        (
            ChangesQuery {
                since: Some(0),
                until: Some(next + 1),
                ..Default::default()
            },
            404,
        ),
        (
            ChangesQuery {
                since: Some(0),
                format: Some("xml".into()),
                ..Default::default()
            },
            400,
        ),
        (
            ChangesQuery {
                since: Some(0),
                wait: Some(61),
                ..Default::default()
            },
            400,
        ),
    ] {
        let refused = queryd.changes("items", &query).await.unwrap_err();
        assert_eq!(status_of(refused).0, status, "{query:?}");
    }

    // Garbage collection keeps the newest six versions: older ones are 410, naming the
    // oldest retained; the retained ones still read as they were, across the compactions.
    let http = reqwest::Client::new();
    let gc = http
        .post(format!("{}/api/v1/gc", strata.compactord_url()))
        .header("x-admin-token", strata.admin_token())
        .send()
        .await
        .unwrap();
    assert_eq!(gc.status().as_u16(), 200);
    let listed = queryd
        .versions("items", &VersionsQuery::default())
        .await
        .unwrap();
    let oldest = next - 5;
    assert_eq!((listed.oldest, listed.latest), (oldest, next));
    let (status, kind, message) = status_of(
        queryd
            .query("items", &json!({"version": 0}))
            .await
            .unwrap_err(),
    );
    assert_eq!((status, kind.as_str()), (410, "gone"));
    assert!(
        message.contains(&format!("oldest retained version is {oldest}")),
        "{message}"
    );
    let (status, _, message) = status_of(
        queryd
            .changes(
                "items",
                &ChangesQuery {
                    since: Some(oldest - 1),
                    ..Default::default()
                },
            )
            .await
            .unwrap_err(),
    );
    assert_eq!(status, 410);
    assert!(message.contains(&oldest.to_string()), "{message}");
    for v in oldest..=latest {
        let (_, back) = rows(&queryd, json!({"version": v})).await;
        assert_eq!(back, state_at(&seen, v).rows, "version {v} after GC");
    }
    let feed = queryd
        .changes(
            "items",
            &ChangesQuery {
                since: Some(oldest),
                until: Some(latest),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(feed.version, Some(latest));
    assert_eq!(
        replay(&state_at(&seen, oldest).model, &feed.body),
        model_rows(&seen[&latest].model)
    );
}
