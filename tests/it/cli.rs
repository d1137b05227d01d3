//! The `strata` client commands, run as the real binary against `strata up`: create a dataset
//! from a local Parquet file, read it (schema, query in each output, count), change it
//! (upserts from Parquet and NDJSON in batches, deletes; a rerun writes nothing again),
//! export it, compact, list versions and changes, and manage the cache — each command's
//! output checked against the same call through the typed client.

use std::path::Path;
use std::process::{Command, Output};

use serde_json::{Map, Value, json};
use strata_queryd_api::QuerydClient;
use strata_testkit::{Mode, Store, TestCluster, strata_bin, write_parquet};

use crate::deltas_model::{self, Item};

const ROWS: i64 = 20_000;

/// Runs `strata ARGS` against `strata`'s queryd, with or without the admin token.
fn run(strata: &TestCluster, token: bool, args: &[&str]) -> Output {
    let mut command = Command::new(strata_bin());
    command
        .args(args)
        .env("STRATA_URL", strata.queryd_url(0))
        .env("RUST_LOG", "warn")
        .env_remove("STRATA_ADMIN_TOKEN");
    if token {
        command.env("STRATA_ADMIN_TOKEN", strata.admin_token());
    }
    command.output().unwrap()
}

/// stdout of a command that must succeed.
fn ok(strata: &TestCluster, args: &[&str]) -> String {
    let output = run(strata, true, args);
    assert!(
        output.status.success(),
        "strata {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

/// stderr of a command that must fail.
fn fails(strata: &TestCluster, token: bool, args: &[&str]) -> String {
    let output = run(strata, token, args);
    assert!(!output.status.success(), "strata {args:?} succeeded");
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn ndjson(text: &str) -> Vec<Map<String, Value>> {
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn write_ndjson(path: &Path, rows: &[Value]) {
    let text: String = rows.iter().map(|r| format!("{r}\n")).collect();
    std::fs::write(path, text).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_client_command_against_the_real_binary() {
    let dir = tempfile::tempdir().unwrap();
    let strata = TestCluster::builder()
        .mode(Mode::Up)
        .store(Store::LocalDir)
        .dir(dir.path())
        .toml("[compactord]\ncheck_interval = \"0s\"\n")
        .start()
        .await
        .unwrap();
    let queryd = QuerydClient::new(&strata.queryd_url(0), Some(strata.admin_token()));
    let items = deltas_model::filler_items(ROWS);
    let file = dir.path().join("items.parquet");
    write_parquet(&file, &[deltas_model::batch(&items)]).unwrap();
    let path = |p: &Path| p.to_str().unwrap().to_owned();

    // Create from a local file (uploaded), then it is listed and has its schema.
    let created: Value = serde_json::from_str(&ok(
        &strata,
        &[
            "create",
            "items",
            "--from",
            &path(&file),
            "--primary-key",
            "id",
        ],
    ))
    .unwrap();
    assert_eq!(
        (created["version"].as_u64(), created["base_rows"].as_i64()),
        (Some(0), Some(ROWS))
    );
    let listed: Value = serde_json::from_str(&ok(&strata, &["datasets"])).unwrap();
    assert!(
        listed["datasets"]
            .as_array()
            .unwrap()
            .iter()
            .any(|d| d["name"] == "items")
    );
    let schema: Value = serde_json::from_str(&ok(&strata, &["schema", "items"])).unwrap();
    assert_eq!(schema["primary_key"], json!(["id"]), "{schema}");

    // A query from flags: the same page the API answers for the same body.
    let flags = [
        "query",
        "items",
        "--where",
        "grp eq north",
        "--where",
        "val gt 500",
        "--order-by",
        "val:desc",
        "--columns",
        "id,val",
        "--page-size",
        "7",
    ];
    let body = json!({
        "columns": ["id", "val"],
        "predicates": [{"col": "grp", "op": "eq", "val": "north"}, {"col": "val", "op": "gt", "val": 500}],
        "order_by": [{"col": "val", "dir": "desc"}],
        "page": 1, "page_size": 7,
    });
    let expected = queryd.query("items", &body).await.unwrap().body.data;
    assert_eq!(expected.len(), 7);
    let mut json_args = flags.to_vec();
    json_args.extend(["--format", "json"]);
    let answer: Value = serde_json::from_str(&ok(&strata, &json_args)).unwrap();
    assert_eq!(answer["data"], json!(expected));
    let ndjson_args: Vec<&str> = flags
        .iter()
        .copied()
        .chain(["--format", "ndjson"])
        .collect();
    assert_eq!(ndjson(&ok(&strata, &ndjson_args)), expected);
    // The table: a header in the asked column order, then the rows.
    let table = ok(&strata, &flags);
    let header = table.lines().find(|l| l.contains("id")).unwrap();
    assert!(
        header.find("id").unwrap() < header.find("val").unwrap(),
        "{table}"
    );
    for row in &expected {
        assert!(table.contains(&row["id"].to_string()), "{table}");
    }
    let count = ok(&strata, &["count", "items", "--where", "val gt 500"]);
    let want = queryd
        .count(
            "items",
            &json!({"predicates": [{"col": "val", "op": "gt", "val": 500}]}),
        )
        .await
        .unwrap()
        .body
        .count;
    assert_eq!(count.trim(), want.to_string());
    // A body from a file, with a flag added.
    let body_file = dir.path().join("body.json");
    std::fs::write(
        &body_file,
        r#"{"predicates": [{"col": "grp", "op": "eq", "val": "east"}]}"#,
    )
    .unwrap();
    let east = ok(
        &strata,
        &[
            "count",
            "items",
            "--body",
            &format!("@{}", path(&body_file)),
            "--where",
            "val lt 10",
        ],
    );
    let want = queryd
        .count(
            "items",
            &json!({"predicates": [{"col": "grp", "op": "eq", "val": "east"}, {"col": "val", "op": "lt", "val": 10}]}),
        )
        .await
        .unwrap()
        .body
        .count;
    assert_eq!(east.trim(), want.to_string());

    // Upserts from Parquet, in batches of 1 000: 2 500 rows are 3 requests, one version each.
    let changed: Vec<Item> = items[..2_500].to_vec();
    let upserts_file = dir.path().join("changed.parquet");
    let mut batch = deltas_model::batch(&changed);
    // Every changed row gets val = -1.
    batch = arrow::array::RecordBatch::try_new(
        batch.schema(),
        vec![
            batch.column(0).clone(),
            batch.column(1).clone(),
            std::sync::Arc::new(arrow::array::Int64Array::from(vec![-1; 2_500])),
            batch.column(3).clone(),
        ],
    )
    .unwrap();
    write_parquet(&upserts_file, &[batch]).unwrap();
    let args = [
        "upsert",
        "items",
        &path(&upserts_file),
        "--batch-rows",
        "1000",
    ];
    let first: Value = serde_json::from_str(&ok(&strata, &args)).unwrap();
    assert_eq!(
        (first["rows"].as_u64(), first["batches"].as_u64()),
        (Some(2_500), Some(3))
    );
    let version = first["version"].as_u64().unwrap();
    assert_eq!(version, 3);
    // Run again (an interrupted run resumed): every batch is answered from its first commit.
    let again: Value = serde_json::from_str(&ok(&strata, &args)).unwrap();
    assert_eq!(again["version"].as_u64(), Some(version));
    assert_eq!(
        queryd
            .versions("items", &Default::default())
            .await
            .unwrap()
            .latest,
        version
    );
    let minus = queryd
        .count(
            "items",
            &json!({"predicates": [{"col": "val", "op": "eq", "val": -1}], "min_version": version}),
        )
        .await
        .unwrap()
        .body
        .count;
    assert_eq!(minus, 2_500);

    // NDJSON: an upsert of new rows and deletes by key.
    let new_rows: Vec<Value> = (0..10)
        .map(|i| json!({"id": -1 - i, "grp": "north", "val": i, "note": null}))
        .collect();
    let new_file = dir.path().join("new.ndjson");
    write_ndjson(&new_file, &new_rows);
    ok(&strata, &["upsert", "items", &path(&new_file)]);
    let gone: Vec<Value> = items[..100].iter().map(|r| json!({"id": r.id})).collect();
    let gone_file = dir.path().join("gone.jsonl");
    write_ndjson(&gone_file, &gone);
    let deleted: Value =
        serde_json::from_str(&ok(&strata, &["delete", "items", &path(&gone_file)])).unwrap();
    let latest = deleted["version"].as_u64().unwrap();
    let total = queryd
        .count("items", &json!({"min_version": latest}))
        .await
        .unwrap()
        .body
        .count;
    assert_eq!(total, ROWS as u64 + 10 - 100);

    // Export: NDJSON to a file equals every row the API answers; CSV to stdout.
    let out = dir.path().join("items.ndjson");
    ok(
        &strata,
        &["export", "items", "--format", "ndjson", "-o", &path(&out)],
    );
    let exported = ndjson(&std::fs::read_to_string(&out).unwrap());
    let all = queryd
        .query(
            "items",
            &json!({"page_size": 100_000, "min_version": latest}),
        )
        .await
        .unwrap()
        .body
        .data;
    assert_eq!(exported, all);
    let csv = ok(
        &strata,
        &["export", "items", "--format", "csv", "--version", "0"],
    );
    assert_eq!(csv.lines().count(), ROWS as usize + 1);
    assert_eq!(csv.lines().next(), Some("id,grp,val,note"));

    // Compaction, its run, the versions and the changes.
    let run: Value = serde_json::from_str(&ok(&strata, &["compact", "items"])).unwrap();
    assert_eq!(run["outcome"], "committed", "{run}");
    // The run history: the compaction, the delta commits and the upload, newest first.
    let runs: Value = serde_json::from_str(&ok(&strata, &["runs", "items"])).unwrap();
    assert_eq!(runs["runs"][0]["id"], run["id"], "{runs}");
    assert_eq!(runs["runs"][0]["kind"], "compaction", "{runs}");
    let kinds: Vec<&str> = runs["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["kind"].as_str().unwrap())
        .collect();
    // Three upsert batches, a rerun answered without a commit, one NDJSON upsert, one delete.
    assert_eq!(
        kinds,
        [
            "compaction",
            "ingest",
            "ingest",
            "ingest",
            "ingest",
            "ingest",
            "upload"
        ],
        "{runs}"
    );
    let ingest: Value = serde_json::from_str(&ok(
        &strata,
        &["runs", "items", "--kind", "ingest", "--limit", "2"],
    ))
    .unwrap();
    let last_two: Vec<(u64, u64)> = ingest["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["rows"].as_u64().unwrap(), r["version"].as_u64().unwrap()))
        .collect();
    assert_eq!(last_two, [(100, latest), (10, latest - 1)], "{ingest}");
    assert_eq!(runs["runs"][6]["rows"], ROWS, "{runs}");
    let versions: Value = serde_json::from_str(&ok(&strata, &["versions", "items"])).unwrap();
    assert_eq!(versions["latest"], run["version"]);
    assert_eq!(versions["versions"][0]["rows"].as_u64(), Some(total));
    let changes = ndjson(&ok(&strata, &["changes", "items", "--since", "0"]));
    assert_eq!(changes.len(), 2_500 + 10 + 100);
    assert!(changes.iter().filter(|c| c["_op"] == "delete").count() == 100);

    // The cache.
    let pinned: Value = serde_json::from_str(&ok(&strata, &["pin", "items"])).unwrap();
    assert_eq!(pinned["pinned"], true, "{pinned}");
    ok(&strata, &["unpin", "items"]);
    let evicted: Value = serde_json::from_str(&ok(&strata, &["evict", "items"])).unwrap();
    assert_eq!(evicted["residency"], "cold", "{evicted}");
    let stats: Value = serde_json::from_str(&ok(&strata, &["cache"])).unwrap();
    assert!(stats["capacity_bytes"].as_u64().is_some(), "{stats}");

    // A CSV file (header line) and an NDJSON file become datasets, column types inferred.
    let csv_file = dir.path().join("people.csv");
    std::fs::write(
        &csv_file,
        "id,name,score,active,day\n1,ann,1.5,true,2024-01-02\n2,bob,,false,2024-01-03\n\
         3,\"c, d\",2.25,true,2024-01-04\n",
    )
    .unwrap();
    // Written by hand: the columns take the order of the keys in the file.
    let ndjson_file = dir.path().join("people.ndjson");
    std::fs::write(
        &ndjson_file,
        "{\"id\": 1, \"name\": \"ann\", \"score\": 1.5, \"active\": true}\n\
         {\"id\": 2, \"name\": \"bob\", \"score\": null, \"active\": false}\n\
         {\"id\": 3, \"name\": \"c, d\", \"score\": 2.25, \"active\": true}\n",
    )
    .unwrap();
    for (name, file) in [("people_csv", &csv_file), ("people_ndjson", &ndjson_file)] {
        let created: Value = serde_json::from_str(&ok(
            &strata,
            &["create", name, "--from", &path(file), "--primary-key", "id"],
        ))
        .unwrap();
        assert_eq!(created["base_rows"], 3, "{created}");
        let schema: Value = serde_json::from_str(&ok(&strata, &["schema", name])).unwrap();
        let logical: Vec<(&str, &str)> = schema["columns"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| (c["name"].as_str().unwrap(), c["logical"].as_str().unwrap()))
            .collect();
        assert_eq!(
            &logical[..4],
            &[
                ("id", "int"),
                ("name", "utf8"),
                ("score", "float"),
                ("active", "bool")
            ],
            "{schema}"
        );
        let rows = ok(
            &strata,
            &[
                "query",
                name,
                "--where",
                "name eq c, d",
                "--format",
                "ndjson",
            ],
        );
        let rows = ndjson(&rows);
        assert_eq!(
            (
                rows.len(),
                rows[0]["id"].as_i64(),
                rows[0]["score"].as_f64()
            ),
            (1, Some(3), Some(2.25))
        );
        assert_eq!(
            ok(&strata, &["count", name, "--where", "score is_null"]).trim(),
            "1"
        );
    }
    let csv_day: Value = serde_json::from_str(&ok(&strata, &["schema", "people_csv"])).unwrap();
    assert_eq!(csv_day["columns"][4]["logical"], "temporal", "{csv_day}");
    // A malformed CSV is refused and creates nothing.
    let bad = dir.path().join("bad.csv");
    std::fs::write(&bad, "id,name\n1,ann\n2,bob,extra\n").unwrap();
    assert!(
        fails(
            &strata,
            true,
            &[
                "create",
                "bad",
                "--from",
                &path(&bad),
                "--primary-key",
                "id"
            ]
        )
        .contains("400")
    );
    assert!(fails(&strata, true, &["schema", "bad"]).contains("404"));

    // Drop: gone at once (and a second drop is a 404); only an admin drops; the name is free
    // again, for a dataset that goes on from the drop's version.
    assert!(fails(&strata, false, &["drop", "people_ndjson"]).contains("401"));
    let dropped: Value = serde_json::from_str(&ok(&strata, &["drop", "people_ndjson"])).unwrap();
    assert_eq!(dropped["name"], "people_ndjson", "{dropped}");
    let tombstone = dropped["version"].as_u64().unwrap();
    assert!(fails(&strata, true, &["schema", "people_ndjson"]).contains("404"));
    assert!(fails(&strata, true, &["drop", "people_ndjson"]).contains("404"));
    let again: Value = serde_json::from_str(&ok(
        &strata,
        &[
            "create",
            "people_ndjson",
            "--from",
            &path(&ndjson_file),
            "--primary-key",
            "id",
            "--index-columns",
            "name",
        ],
    ))
    .unwrap();
    assert_eq!(again["version"].as_u64(), Some(tombstone + 1), "{again}");
    assert_eq!(ok(&strata, &["count", "people_ndjson"]).trim(), "3");
    // Indexed as created (`--index-columns`), not by the automatic policy, once loaded.
    let mut indexed = Value::Null;
    for _ in 0..200 {
        let schema: Value =
            serde_json::from_str(&ok(&strata, &["schema", "people_ndjson"])).unwrap();
        indexed = schema["indexed"].clone();
        if indexed == json!(["name"]) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(indexed, json!(["name"]));
    let unknown = fails(
        &strata,
        true,
        &[
            "create",
            "people_idx",
            "--from",
            &path(&ndjson_file),
            "--index-columns",
            "nosuch",
        ],
    );
    assert!(
        unknown.contains("400") && unknown.contains("nosuch"),
        "{unknown}"
    );
    assert!(fails(&strata, true, &["schema", "people_idx"]).contains("404"));

    // Refusals say why, on stderr, with a failing exit.
    assert!(fails(&strata, true, &["query", "nosuch"]).contains("not found"));
    assert!(fails(&strata, true, &["upsert", "items", &path(&body_file)]).contains("body.json"));
    let unknown = dir.path().join("rows.txt");
    std::fs::write(&unknown, "1\n").unwrap();
    assert!(
        fails(&strata, true, &["upsert", "items", &path(&unknown)]).contains("unknown file type")
    );
    assert!(fails(&strata, false, &["upsert", "items", &path(&new_file)]).contains("401"));
    assert!(fails(&strata, true, &["query", "items", "--where", "val"]).contains("COL OP VALUE"));
}
