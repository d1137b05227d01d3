//! storaged's and compactord's `/metrics` (queryd's are in `queryd_api`), against the real
//! `strata up` binary: each counts what it did — deltas committed and refused, rows, group
//! commits, uploads; compaction runs, garbage collection — and the requests of its routes.

use serde_json::json;
use strata_queryd_api::QuerydClient;

use crate::deltas_model;

/// The value of the sample `line` starts (`name{labels}`), if present.
fn sample(text: &str, line: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(line)?.trim().parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn storaged_and_compactord_count_what_they_did() {
    let dir = tempfile::tempdir().unwrap();
    let settings = "[compactord]\ncheck_interval = \"0s\"\ngc_schedule = \"\"\n";
    let strata = deltas_model::items_up(dir.path(), 1_000, settings).await;
    let queryd = QuerydClient::new(&strata.queryd_url(0), Some(strata.admin_token()));
    let http = reqwest::Client::new();
    let metrics = |url: String| {
        let http = http.clone();
        async move {
            let response = http.get(format!("{url}/metrics")).send().await.unwrap();
            assert_eq!(response.status(), 200);
            response.text().await.unwrap()
        }
    };

    queryd
        .post_deltas(
            "items",
            &json!({"upserts": [{"id": 1, "grp": "north", "val": 1, "note": null},
                                {"id": 3, "grp": "south", "val": 3, "note": "x"}],
                    "deletes": [{"id": 2}]}),
            None,
        )
        .await
        .unwrap();
    let refused = queryd
        .post_deltas(
            "items",
            &json!({"upserts": [{"id": 5, "colour": "red"}]}),
            None,
        )
        .await
        .unwrap_err();
    assert_eq!(refused.status(), Some(400));
    queryd
        .upload_dataset(
            "people",
            &["id".to_owned()],
            "text/csv",
            "id,name\n1,ann\n2,bob\n",
        )
        .await
        .unwrap();
    let run = queryd.compact("items").await.unwrap();
    assert!(run.version.is_some(), "{run:?}");
    let gc = http
        .post(format!("{}/api/v1/gc", strata.compactord_url()))
        .header("x-admin-token", strata.admin_token())
        .send()
        .await
        .unwrap();
    assert_eq!(gc.status(), 200);

    let storaged = metrics(strata.storaged_url()).await;
    for (line, want) in [
        ("strata_deltas_committed_total ", 1.0),
        ("strata_deltas_refused_total ", 1.0),
        ("strata_delta_rows_upserted_total ", 2.0),
        ("strata_delta_rows_deleted_total ", 1.0),
        ("strata_ingest_versions_total ", 1.0),
        ("strata_imports_total ", 1.0),
        ("strata_rows_imported_total ", 2.0),
        ("strata_ingest_commit_duration_seconds_count ", 1.0),
    ] {
        assert_eq!(sample(&storaged, line), Some(want), "{line}\n{storaged}");
    }
    assert!(
        storaged.contains(
            "strata_http_requests_total{route=\"/internal/v1/datasets/{name}/deltas\",method=\"POST\",status=\"200\"} 1"
        ),
        "{storaged}"
    );

    let compactord = metrics(strata.compactord_url()).await;
    for (line, want) in [
        ("strata_compaction_runs_total{outcome=\"committed\"} ", 1.0),
        ("strata_compaction_deltas_merged_total ", 1.0),
        // 3 000 rows, two new keys, one deleted.
        ("strata_compaction_rows_written_total ", 3_001.0),
        ("strata_compaction_duration_seconds_count ", 1.0),
        ("strata_delta_log_failures_total ", 0.0),
    ] {
        assert_eq!(
            sample(&compactord, line),
            Some(want),
            "{line}\n{compactord}"
        );
    }
    // Two datasets collected.
    assert_eq!(
        sample(&compactord, "strata_gc_runs_total "),
        Some(2.0),
        "{compactord}"
    );
}
