//! The README's CSV walkthrough, run with the `strata` binary against the deployment.

use std::process::Command;
use std::time::Duration;

use serde_json::Value;

use super::{ADMIN, Stack};

/// The README's walkthrough for a user with a CSV file, as the `strata` binary on this
/// machine runs it against the deployment's load balancer: create, query, change, export,
/// drop. The drop reaches every replica.
pub(super) async fn cli_walkthrough(stack: &Stack, replicas: &[String]) {
    let dir = tempfile::tempdir().unwrap();
    let strata = |args: &[&str]| {
        let output = Command::new(strata_testkit::strata_bin())
            .args(args)
            .env("STRATA_URL", stack.url())
            .env("STRATA_ADMIN_TOKEN", ADMIN)
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "strata {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).unwrap()
    };
    let csv = dir.path().join("cities.csv");
    std::fs::write(
        &csv,
        "id,city,population
1,Lyon,522000
2,Nantes,320000
3,Lille,236000
",
    )
    .unwrap();
    let created: Value = serde_json::from_str(&strata(&[
        "create",
        "cities",
        "--from",
        csv.to_str().unwrap(),
        "--primary-key",
        "id",
    ]))
    .unwrap();
    assert_eq!(created["base_rows"], 3, "{created}");
    let big = strata(&[
        "query",
        "cities",
        "--where",
        "population gt 300000",
        "--format",
        "csv",
    ]);
    assert_eq!(big, "id,city,population\n1,Lyon,522000\n2,Nantes,320000\n");
    let changes = dir.path().join("changes.ndjson");
    std::fs::write(
        &changes,
        "{\"id\": 3, \"city\": \"Lille\", \"population\": 237000}\n\
                              {\"id\": 4, \"city\": \"Brest\", \"population\": 139000}\n",
    )
    .unwrap();
    let upserted: Value =
        serde_json::from_str(&strata(&["upsert", "cities", changes.to_str().unwrap()])).unwrap();
    let version = upserted["version"].as_u64().unwrap().to_string();
    // Read your write, whichever replica answers.
    let brest = strata(&[
        "query",
        "cities",
        "--where",
        "id eq 4",
        "--min-version",
        &version,
        "--format",
        "csv",
    ]);
    assert_eq!(brest, "id,city,population\n4,Brest,139000\n");
    let out = dir.path().join("cities-export.csv");
    strata(&[
        "export",
        "cities",
        "--format",
        "csv",
        "-o",
        out.to_str().unwrap(),
    ]);
    assert_eq!(
        std::fs::read_to_string(&out).unwrap(),
        "id,city,population\n1,Lyon,522000\n2,Nantes,320000\n3,Lille,237000\n4,Brest,139000\n"
    );
    strata(&["drop", "cities"]);
    // Every replica forgets it (storaged's notification, or the replica's poll).
    for replica in replicas {
        let mut status = 0;
        for _ in 0..100 {
            status = stack
                .http
                .get(format!("{replica}/api/v1/datasets/cities/schema"))
                .send()
                .await
                .unwrap()
                .status()
                .as_u16();
            if status == 404 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(status, 404, "{replica} still serves the dropped dataset");
    }
}
