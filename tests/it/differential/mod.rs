//! Differential testing: random requests over the whole query language, answered by Strata
//! and by DuckDB on the same data, compared answer by answer.
//!
//! The table ([`table`]) has a million rows (`STRATA_DIFF_ROWS`) of every column type, keys
//! in random order, nulls everywhere they may be. Strata runs as real binaries: storaged,
//! compactord and four queryd processes, one per execution path —
//!
//! - `hot`: in memory, index hot paths on;
//! - `general`: in memory, every request through DataFusion;
//! - `cold`: never in memory (`cache_bytes = 1`): the cold key path, late top-K pages,
//!   Strata's own counts (`queryd::cold::count`) and DataFusion over Parquet;
//! - `cold-general`: never in memory, every request through DataFusion over Parquet, with
//!   the engine's memory (`query_memory_bytes`, 256 MiB) below the table's, so whole-table sorts
//!   and large aggregations spill to disk.
//!
//! The requests run in phases: the imported base; after deltas (upserts of existing keys,
//! new keys, deletes, re-inserts; Parquet, Arrow and JSON bodies); after a compaction; after
//! an evict (hot, answered cold while it reloads) and a reload (general); and, last, time
//! travel: every request reads version 0 (`"version": 0`, the files of a version three
//! deltas and a compaction ago) against the oracle's copy of the imported table. DuckDB
//! (`tests/python/duckdb_oracle.py`) reads the same source and delta Parquet files and
//! applies the same changes. Each request is checked as a JSON page and, in turn, as an
//! Arrow page, a count or a stream. The rules the SQL encodes are in [`request`]'s doc.
//!
//! At the end, each queryd's route counters (`strata_query_routes_total`) must show every
//! route its path exists for, and none it must not take: a comparison covers a route only if
//! requests reach it.
//!
//! `STRATA_DIFF_SEED` (default 1) and `STRATA_DIFF_QUERIES` (default 1024, spread over the
//! phases and paths) run longer campaigns. A failure prints a reproducer: its number, the
//! phase and path, the request body, the SQL with its parameters, and the first difference;
//! `STRATA_DIFF_ONLY=<number>` (or `<from>..<to>`) with the same seed, size and count sends
//! only those requests.

mod compare;
mod oracle;
mod request;
mod sampler;
pub(crate) mod table;

use std::collections::HashSet;
use std::path::Path;
use std::time::{Duration, Instant};

use arrow::array::RecordBatch;
use rand::rngs::StdRng;
use rand::seq::{IndexedRandom, SliceRandom};
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};
use strata_queryd::route::ROUTE_NAMES;
use strata_testkit::{ADMIN_TOKEN as ADMIN, Mode, Store, TestCluster, write_parquet};

use compare::{Cell, Mismatch, Table, difference};
use oracle::Oracle;
use request::Query;
pub(crate) use sampler::Sampler;

const DATASET: &str = "diff";
const PATHS: [&str; 4] = ["hot", "general", "cold", "cold-general"];

fn setting(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// storaged, compactord and one queryd per path (in [`PATHS`] order), as separate processes
/// on one local store in `dir`.
async fn start(dir: &Path) -> TestCluster {
    let mut builder = TestCluster::builder()
        .mode(Mode::Processes)
        .store(Store::LocalDir)
        .dir(dir)
        .daemons(true, PATHS.len(), true)
        .log_level("warn")
        .toml(
            "[queryd]\npoll_interval = \"500ms\"\nrequest_timeout = \"5m\"\n\
             [compactord]\ncheck_interval = \"0s\"\ngc_schedule = \"\"\n",
        );
    for (index, path) in PATHS.iter().enumerate() {
        let settings = match *path {
            "general" => "hot_paths = false\n",
            "cold" => "cache_bytes = 1\n",
            "cold-general" => {
                "cache_bytes = 1\nhot_paths = false\nquery_memory_bytes = 268435456\n"
            }
            _ => "",
        };
        builder = builder.queryd_toml(index, &format!("[queryd]\n{settings}"));
    }
    builder.start().await.unwrap()
}

/// What the requests covered: printed, and checked so that the test cannot pass on
/// requests that select nothing.
#[derive(Debug, Default)]
struct Tally {
    rows: u64,
    distinct: u64,
    grouped: u64,
    filtered: u64,
    nonempty: u64,
    overflows: u64,
    arrow: u64,
    counts: u64,
    streams: u64,
}

impl Tally {
    fn add(&mut self, query: &Query, format: &str, checked: &Checked) {
        match query.shape {
            request::Shape::Rows => self.rows += 1,
            request::Shape::Distinct => self.distinct += 1,
            request::Shape::Grouped { .. } => self.grouped += 1,
        }
        self.filtered += u64::from(!query.filters.is_empty());
        self.nonempty += u64::from(checked.rows > 0);
        self.overflows += u64::from(checked.overflow);
        match format {
            "arrow" => self.arrow += 1,
            "count" => self.counts += 1,
            _ => self.streams += u64::from(checked.streamed),
        }
    }
}

/// What one check saw.
#[derive(Default)]
struct Checked {
    /// Rows on the oracle's page.
    rows: usize,
    /// The page held a sum Strata must refuse.
    overflow: bool,
    /// The whole answer was streamed and compared.
    streamed: bool,
}

/// The test's side of the table: the oracle, the keys alive, and the version.
struct Model {
    oracle: Oracle,
    live: Vec<i64>,
    version: u64,
    /// Requests read this version (`version`) instead of the newest (`min_version`).
    at: Option<u64>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_path_answers_like_duckdb() {
    let rows = setting("STRATA_DIFF_ROWS", 1_000_000);
    let seed = setting("STRATA_DIFF_SEED", 1);
    let total = setting("STRATA_DIFF_QUERIES", 1024);
    // Replays request #N (or #N..M) of a campaign (the number its reproducer shows) alone.
    let only: Option<std::ops::Range<u64>> = std::env::var("STRATA_DIFF_ONLY").ok().map(|v| {
        let (from, to) = v.split_once("..").unwrap_or((&v, ""));
        let from: u64 = from.parse().expect("STRATA_DIFF_ONLY=N or N..M");
        from..to.parse().unwrap_or(from + 1)
    });
    let started = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("src/table.parquet");
    let keys: Vec<i64> = (0..rows).map(table::key).collect();
    let base = table::rows(&keys, 0, seed);
    // Several row groups and files' worth of rows: write in slices.
    let slices: Vec<RecordBatch> = (0..base.num_rows())
        .step_by(131_072)
        .map(|start| base.slice(start, 131_072.min(base.num_rows() - start)))
        .collect();
    write_parquet(&source, &slices).unwrap();
    eprintln!(
        "differential: {rows} rows written ({:?})",
        started.elapsed()
    );

    let cluster = start(dir.path()).await;
    let queryds: Vec<(&str, String)> = PATHS
        .iter()
        .enumerate()
        .map(|(index, path)| (*path, cluster.queryd_url(index)))
        .collect();
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(600))
        .build()
        .unwrap();
    let created = admin(
        &http,
        &format!("{}/api/v1/datasets", cluster.storaged_url()),
        json!({"name": DATASET, "source": source, "primary_key": [table::KEY]}),
    )
    .await;
    assert_eq!(created["version"], 0, "{created}");
    let mut model = Model {
        oracle: Oracle::start(),
        live: keys.clone(),
        version: 0,
        at: None,
    };
    model.oracle.execute(
        "CREATE TABLE t AS SELECT *, 0::BIGINT AS _seq FROM read_parquet(?)",
        &[json!(source)],
    );
    eprintln!("differential: imported ({:?})", started.elapsed());

    let sampler = Sampler { base: &base };
    let mut rng = StdRng::seed_from_u64(seed);
    let phases = ["base", "deltas", "compacted", "evicted", "version 0"];
    let per_cell = total.div_ceil((phases.len() * PATHS.len()) as u64).max(1);
    let mut failures = Vec::new();
    let mut checked = 0;
    let mut tally = Tally::default();
    for phase in phases {
        match phase {
            "deltas" => {
                // Version 0 as the oracle keeps it for the time-travel phase.
                model
                    .oracle
                    .execute("CREATE TABLE t0 AS SELECT * FROM t", &[]);
                post_deltas(&http, &cluster, &mut model, dir.path(), seed).await
            }
            "version 0" => {
                model
                    .oracle
                    .execute("ALTER TABLE t RENAME TO t_latest", &[]);
                model.oracle.execute("ALTER TABLE t0 RENAME TO t", &[]);
                model.at = Some(0);
            }
            "compacted" => {
                let run = admin(
                    &http,
                    &format!(
                        "{}/api/v1/datasets/{DATASET}/compact",
                        cluster.queryd_url(0)
                    ),
                    json!({}),
                )
                .await;
                assert_eq!(run["outcome"], "committed", "{run}");
                model.version = run["version"].as_u64().unwrap();
                // A compaction keeps storage order (invariant 7): `_seq` stays as it was.
            }
            "evicted" => {
                let evicted = admin(
                    &http,
                    &format!("{}/api/v1/cache/evict", cluster.queryd_url(0)),
                    json!({"dataset": DATASET}),
                )
                .await;
                assert_eq!(evicted["residency"], "cold", "{evicted}");
                let reload = admin(
                    &http,
                    &format!("{}/api/v1/datasets/{DATASET}/reload", cluster.queryd_url(1)),
                    json!({}),
                )
                .await;
                assert_eq!(reload["version"], model.version, "{reload}");
            }
            _ => {}
        }
        for (path, url) in &queryds {
            // The in-memory paths answer from memory (the evicted one on purpose not).
            if matches!(*path, "hot" | "general")
                && !(phase == "evicted" && *path == "hot")
                && model.at.is_none()
            {
                resident(&http, url, model.version).await;
            }
            for _ in 0..per_cell {
                let number = checked;
                checked += 1;
                let query = sampler.query(&mut rng);
                let format = *["arrow", "count", "stream"].choose(&mut rng).unwrap();
                // Replaying one request: the others are drawn (the sequence stays the same)
                // but not sent.
                if only.as_ref().is_some_and(|only| !only.contains(&number)) {
                    continue;
                }
                let label = format!("[#{number} {phase} / {path}]");
                match check(&http, url, &query, format, &mut model, &label).await {
                    Ok(seen) => tally.add(&query, format, &seen),
                    Err(e) => {
                        eprintln!("{e}\n");
                        failures.push(e);
                    }
                }
            }
        }
        eprintln!(
            "differential: phase {phase} done, {checked} requests, {} failures ({:?})",
            failures.len(),
            started.elapsed()
        );
    }
    eprintln!("differential: {tally:?}");
    assert!(
        failures.is_empty(),
        "{} of {checked} requests differ from DuckDB (seed {seed}); the first:\n{}",
        failures.len(),
        failures[0]
    );
    if only.is_some() {
        return;
    }
    // The requests selected something: a generator that drifted into empty answers would
    // compare nothing.
    let n = checked;
    assert!(tally.nonempty * 2 > n, "most pages hold rows: {tally:?}");
    assert!(
        tally.rows * 4 > n && tally.distinct * 20 > n && tally.grouped * 10 > n,
        "every shape is drawn: {tally:?}"
    );
    assert!(tally.filtered * 2 > n, "most requests filter: {tally:?}");
    // Each path answered through the routes it exists for (queryd's route counters): the
    // comparison above covers a route only if requests reached it.
    for (path, url) in &queryds {
        let taken = routes(&http, url).await;
        eprintln!("differential: routes of {path}: {taken:?}");
        // Routes each path must have taken, and routes it must never take: the general
        // paths every route but the engine.
        let not_engine: Vec<&str> = ROUTE_NAMES.into_iter().filter(|&r| r != "engine").collect();
        let (must, never): (&[&str], &[&str]) = match *path {
            "hot" => (&["index", "ordered", "groups", "engine"], &[]),
            "cold" => (
                &["cold_key", "cold_top_k", "cold_count", "engine"],
                &["index", "ordered", "groups"],
            ),
            _ => (&["engine"], &not_engine),
        };
        let n = |route: &str| taken.get(route).copied().unwrap_or(0);
        // A shorter campaign than the default may miss a rare route (the default's `cold`
        // path takes a cold key lookup about 20 times).
        let must: &[&str] = if total >= 1024 { must } else { &[] };
        for route in must {
            assert!(n(route) > 0, "{path} never took route {route}: {taken:?}");
        }
        for route in never {
            assert_eq!(n(route), 0, "{path} took route {route}: {taken:?}");
        }
    }
}

/// queryd's `strata_query_routes_total` by route.
async fn routes(http: &reqwest::Client, url: &str) -> std::collections::BTreeMap<String, u64> {
    crate::common::metrics_text(http, url)
        .await
        .lines()
        .filter_map(|line| line.strip_prefix("strata_query_routes_total{route=\""))
        .filter_map(|rest| {
            let (route, n) = rest.split_once("\"} ")?;
            Some((route.to_owned(), n.parse().ok()?))
        })
        .collect()
}

/// POSTs `body` with the admin token; the JSON answer, which must be a success.
async fn admin(http: &reqwest::Client, url: &str, body: Value) -> Value {
    let response = http
        .post(url)
        .header("x-admin-token", ADMIN)
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = response.status();
    let answer: Value = response.json().await.unwrap_or(Value::Null);
    assert!(status.is_success(), "{url}: {status} {answer}");
    answer
}

/// Waits until `url` serves the dataset from memory at `version` (pinning loads it).
async fn resident(http: &reqwest::Client, url: &str, version: u64) {
    let pinned = admin(
        http,
        &format!("{url}/api/v1/cache/pin"),
        json!({"dataset": DATASET}),
    )
    .await;
    let deadline = Instant::now() + Duration::from_secs(300);
    let mut last = pinned;
    while Instant::now() < deadline {
        let list: Value = http
            .get(format!("{url}/api/v1/datasets"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if let Some(d) = list["datasets"]
            .as_array()
            .and_then(|a| a.iter().find(|d| d["name"] == DATASET))
        {
            if d["residency"] == "memory" && d["version"] == version {
                return;
            }
            last = d.clone();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{url} did not serve {DATASET} from memory at version {version}: {last}");
}

/// Three deltas through the hot queryd: upserts of existing keys with new values (and
/// new dictionary values), new keys, deletes (also of missing keys), re-inserts of deleted
/// keys; as Parquet, Arrow IPC and JSON bodies. The oracle applies each as DuckDB statements.
async fn post_deltas(
    http: &reqwest::Client,
    cluster: &TestCluster,
    model: &mut Model,
    dir: &Path,
    seed: u64,
) {
    let mut rng = StdRng::seed_from_u64(seed ^ 0xDE17A);
    let mut deleted: Vec<i64> = Vec::new();
    let mut next_key = model.live.len() as u64 + 1_000;
    for (generation, (updates, inserts, deletes, body)) in [
        (5_000, 5_000, 2_000, "parquet"),
        (3_000, 1_000, 1_000, "arrow"),
        (300, 100, 200, "json"),
    ]
    .into_iter()
    .enumerate()
    {
        let generation = generation as u64 + 1;
        model.live.shuffle(&mut rng);
        let mut upsert_keys: Vec<i64> = model.live[..updates].to_vec();
        upsert_keys.extend((0..inserts).map(|i| table::key(next_key + i as u64)));
        next_key += inserts as u64;
        // Re-insert some keys an earlier delta deleted.
        upsert_keys.extend(deleted.drain(..deleted.len().min(200)));
        let mut delete_keys: Vec<i64> = model.live[updates..updates + deletes].to_vec();
        delete_keys.extend((0..10).map(|_| rng.random_range(-(1i64 << 50)..-(1i64 << 45))));
        let upserts = table::rows(&upsert_keys, generation, seed);
        let delta = table::delta(&upserts, &delete_keys);
        let file = dir.join(format!("deltas/{generation}.parquet"));
        write_parquet(&file, std::slice::from_ref(&delta)).unwrap();
        let (content_type, bytes) = match body {
            "arrow" => (
                "application/vnd.apache.arrow.stream",
                crate::common::arrow_stream(&delta),
            ),
            "json" => ("application/json", json_delta(&upserts, &delete_keys)),
            _ => (
                "application/vnd.apache.parquet",
                std::fs::read(&file).unwrap(),
            ),
        };
        let response = http
            .post(format!(
                "{}/api/v1/datasets/{DATASET}/deltas",
                cluster.queryd_url(0)
            ))
            .header("x-admin-token", ADMIN)
            .header("content-type", content_type)
            .body(bytes)
            .send()
            .await
            .unwrap();
        let status = response.status();
        let answer: Value = response.json().await.unwrap_or(Value::Null);
        assert_eq!(status, 200, "delta {generation}: {answer}");
        model.version = answer["version"].as_u64().unwrap();
        let file = json!(file);
        model.oracle.execute(
            &format!(
                "DELETE FROM t WHERE {} IN (SELECT {0} FROM read_parquet(?))",
                request::ident(table::KEY)
            ),
            std::slice::from_ref(&file),
        );
        model.oracle.execute(
            "INSERT INTO t SELECT * EXCLUDE (_op), ?::BIGINT FROM read_parquet(?) WHERE _op = 0",
            &[json!(model.version), file],
        );
        let gone: HashSet<i64> = delete_keys.iter().copied().collect();
        model.live.retain(|k| !gone.contains(k));
        deleted.extend(delete_keys.iter().filter(|k| **k >= -(1i64 << 44)));
        let live: HashSet<i64> = model.live.iter().copied().collect();
        model
            .live
            .extend(upsert_keys.iter().filter(|k| !live.contains(k)).copied());
    }
}

/// A JSON delta body: each value written as a query literal is (numbers; strings for
/// decimals, dates and timestamps).
pub(crate) fn json_delta(upserts: &RecordBatch, deletes: &[i64]) -> Vec<u8> {
    let schema = upserts.schema();
    let rows: Vec<Value> = (0..upserts.num_rows())
        .map(|r| {
            let row: serde_json::Map<String, Value> = schema
                .fields()
                .iter()
                .zip(upserts.columns())
                .map(|(f, c)| (f.name().clone(), compare::cell(c.as_ref(), r).to_json()))
                .collect();
            Value::Object(row)
        })
        .collect();
    let deletes: Vec<Value> = deletes.iter().map(|k| json!({table::KEY: k})).collect();
    json!({"upserts": rows, "deletes": deletes})
        .to_string()
        .into_bytes()
}

/// Checks one request on one queryd: the JSON page, then the page as Arrow, the count or
/// the stream. `Err` is a reproducer.
async fn check(
    http: &reqwest::Client,
    url: &str,
    query: &Query,
    format: &str,
    model: &mut Model,
    label: &str,
) -> Result<Checked, Mismatch> {
    let mut body = query.body();
    match model.at {
        Some(version) => body["version"] = version.into(),
        None => body["min_version"] = model.version.into(),
    }
    let (sql, params) = query.sql();
    let expected = query.expected();
    let repro = |what: &str, detail: String| {
        Mismatch(format!(
            "{label} {what}: {detail}\n  request: {body}\n  sql: {sql}\n  params: {}",
            Value::from(params.clone())
        ))
    };
    let oracle = |model: &mut Model, sql: &str| -> Result<Table, Mismatch> {
        let (schema, batches) = model
            .oracle
            .query(sql, &params)
            .map_err(|e| repro("oracle failed", e.0))?;
        Ok(Table::from_batches(&schema, &batches))
    };
    let count_sql = format!("SELECT count(*) FROM ({sql})");
    let total = match oracle(model, &count_sql)?.rows[0][0] {
        Cell::Int(n) => n as u64,
        ref other => return Err(repro("oracle count", format!("{other:?}"))),
    };
    let (skip, fetch) = query.window();
    let page = oracle(model, &format!("{sql} LIMIT {fetch} OFFSET {skip}"))?;
    let mut seen = Checked {
        rows: page.rows.len(),
        overflow: overflows(&page, &expected),
        streamed: false,
    };
    let post = |path: &str| {
        http.post(format!("{url}/api/v1/datasets/{DATASET}/{path}"))
            .json(&body)
            .send()
    };

    // The JSON page.
    let response = post("query")
        .await
        .map_err(|e| repro("json", e.to_string()))?;
    let status = response.status().as_u16();
    let bytes = response
        .bytes()
        .await
        .map_err(|e| repro("json", e.to_string()))?;
    if let Some(e) = status_difference(status, &bytes, overflows(&page, &expected)) {
        return Err(repro("json", e));
    }
    if status == 200 {
        let answer: Value =
            serde_json::from_slice(&bytes).map_err(|e| repro("json", e.to_string()))?;
        let rows = answer["data"].as_array().cloned().unwrap_or_default();
        let got = Table::from_json_rows(&expected.names, &rows).map_err(|e| repro("json", e.0))?;
        if let Some(d) = difference(
            &got,
            &page_with_names(page.rows.clone(), &expected.names),
            &expected.modes,
        ) {
            return Err(repro("json", d));
        }
    }

    match format {
        "arrow" => {
            let response = http
                .post(format!(
                    "{url}/api/v1/datasets/{DATASET}/query?format=arrow"
                ))
                .json(&body)
                .send()
                .await
                .map_err(|e| repro("arrow", e.to_string()))?;
            let status = response.status().as_u16();
            let bytes = response
                .bytes()
                .await
                .map_err(|e| repro("arrow", e.to_string()))?;
            if let Some(e) = status_difference(status, &bytes, overflows(&page, &expected)) {
                return Err(repro("arrow", e));
            }
            if status == 200 {
                let got = arrow_table(&bytes).map_err(|e| repro("arrow", e.0))?;
                if let Some(d) = difference(
                    &got,
                    &page_with_names(page.rows, &expected.names),
                    &expected.modes,
                ) {
                    return Err(repro("arrow", d));
                }
            }
        }
        "count" => {
            let response = post("count")
                .await
                .map_err(|e| repro("count", e.to_string()))?;
            let status = response.status().as_u16();
            let answer: Value = response.json().await.unwrap_or(Value::Null);
            let want = query.limit.map_or(total, |l| l.min(total));
            if status != 200 || answer["count"] != want {
                return Err(repro(
                    "count",
                    format!("{status} {answer}, expected {want}"),
                ));
            }
        }
        _ => {
            // Every row (paging ignored, `limit` kept): only for answers of modest size.
            let rows = query.limit.map_or(total, |l| l.min(total));
            if rows > 20_000 {
                return Ok(seen);
            }
            seen.streamed = true;
            let all = oracle(model, &format!("{sql} LIMIT {rows}"))?;
            let response = post("query/stream")
                .await
                .map_err(|e| repro("stream", e.to_string()))?;
            let status = response.status().as_u16();
            let bytes = response.bytes().await;
            let broken = overflows(&all, &expected);
            match (status, bytes, broken) {
                // An overflow past the first batch can only end the stream early.
                (200, Err(_), true) => {}
                (status, Ok(bytes), broken) => {
                    if let Some(e) = status_difference(status, &bytes, broken) {
                        return Err(repro("stream", e));
                    }
                    if status == 200 {
                        let got = arrow_table(&bytes).map_err(|e| repro("stream", e.0))?;
                        if let Some(d) = difference(
                            &got,
                            &page_with_names(all.rows, &expected.names),
                            &expected.modes,
                        ) {
                            return Err(repro("stream", d));
                        }
                    }
                }
                (status, Err(e), _) => return Err(repro("stream", format!("{status}: {e}"))),
            }
        }
    }
    Ok(seen)
}

/// The oracle's rows under the names Strata must answer with.
fn page_with_names(rows: Vec<Vec<Cell>>, names: &[String]) -> Table {
    Table {
        names: names.to_vec(),
        rows,
    }
}

/// Whether a sum in `rows` does not fit the type Strata answers it in.
fn overflows(rows: &Table, expected: &request::Expected) -> bool {
    rows.rows.iter().any(|row| {
        row.iter()
            .zip(&expected.ranges)
            .any(|(cell, range)| match (cell, range) {
                (Cell::Int(v), Some((lo, hi))) => v < lo || v > hi,
                _ => false,
            })
    })
}

/// A wrong status: 200 where the oracle's answer fits, 422 `overflow` where it does not.
fn status_difference(status: u16, body: &[u8], overflow: bool) -> Option<String> {
    let text = || String::from_utf8_lossy(&body[..body.len().min(2_000)]).into_owned();
    match (status, overflow) {
        (200, false) => None,
        (422, true) => {
            let error: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
            (error["kind"] != "overflow").then(|| format!("422 without kind overflow: {}", text()))
        }
        (status, true) => Some(format!("{status}, expected a 422 overflow: {}", text())),
        (status, false) => Some(format!("{status}: {}", text())),
    }
}

fn arrow_table(bytes: &[u8]) -> Result<Table, Mismatch> {
    let unreadable = |e: arrow::error::ArrowError| Mismatch(format!("unreadable Arrow: {e}"));
    let reader =
        arrow::ipc::reader::StreamReader::try_new(std::io::Cursor::new(bytes.to_vec()), None)
            .map_err(unreadable)?;
    let schema = reader.schema();
    let batches = reader.collect::<Result<Vec<_>, _>>().map_err(unreadable)?;
    Ok(Table::from_batches(&schema, &batches))
}
