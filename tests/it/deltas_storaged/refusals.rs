//! Every bad request to storaged's delta route is a JSON error that commits nothing
//! (`deltas_storaged`'s fixture and helpers).

use super::*;

/// What, dataset, content type, body, token, expected status, expected part of the message.
type BadCase<'a> = (
    &'a str,
    &'a str,
    Option<&'a str>,
    Vec<u8>,
    Option<&'a str>,
    u16,
    &'a str,
);

#[tokio::test]
async fn every_bad_request_is_a_json_error_that_commits_nothing() {
    let f = Fixture::new(config()).await;
    let url = f.storaged.storaged_url();
    let op7 = arrow_stream(&people_delta(
        &[5],
        &[Some("x")],
        Arc::new(UInt8Array::from(vec![7])),
    ));
    let too_big = json!({"upserts": [{"id": 5, "name": "x".repeat(MAX_DELTA_BYTES)}]}).to_string();
    let cases: Vec<BadCase> = vec![
        (
            "malformed JSON",
            "people",
            Some(JSON),
            b"{\"upserts\": [".to_vec(),
            Some(INTERNAL),
            400,
            "invalid JSON body",
        ),
        (
            "empty body",
            "people",
            Some(JSON),
            vec![],
            Some(INTERNAL),
            400,
            "the body is empty",
        ),
        (
            "no rows",
            "people",
            Some(JSON),
            b"{}".to_vec(),
            Some(INTERNAL),
            400,
            "no upserts and no deletes",
        ),
        (
            "unknown field",
            "people",
            Some(JSON),
            br#"{"upsert": []}"#.to_vec(),
            Some(INTERNAL),
            400,
            "unknown field",
        ),
        (
            "unknown column",
            "people",
            Some(JSON),
            br#"{"upserts": [{"id": 5, "nmae": "x"}]}"#.to_vec(),
            Some(INTERNAL),
            400,
            "upserts[0]: unknown column \"nmae\"",
        ),
        (
            "wrong type",
            "people",
            Some(JSON),
            br#"{"upserts": [{"id": "5"}]}"#.to_vec(),
            Some(INTERNAL),
            400,
            "upserts[0]: column \"id\" (Int64) expects an integer, got \"5\"",
        ),
        (
            "fraction into int",
            "orders",
            Some(JSON),
            br#"{"upserts": [{"id": 5, "qty": 3.5}]}"#.to_vec(),
            Some(INTERNAL),
            400,
            "column \"qty\" (Int32) expects an integer, got 3.5",
        ),
        (
            "missing non-nullable",
            "orders",
            Some(JSON),
            br#"{"upserts": [{"id": 5, "note": "n"}]}"#.to_vec(),
            Some(INTERNAL),
            400,
            "upserts[0]: column \"qty\" is not nullable",
        ),
        (
            "null key",
            "people",
            Some(JSON),
            br#"{"upserts": [{"id": 5}, {"id": null}]}"#.to_vec(),
            Some(INTERNAL),
            400,
            "upserts[1]: primary key column \"id\" is null or missing",
        ),
        (
            "duplicate key",
            "people",
            Some(JSON),
            br#"{"upserts": [{"id": 5}], "deletes": [{"id": 5}]}"#.to_vec(),
            Some(INTERNAL),
            400,
            "duplicate primary key id=5",
        ),
        (
            "delete with extra column",
            "people",
            Some(JSON),
            br#"{"deletes": [{"id": 1, "name": "x"}]}"#.to_vec(),
            Some(INTERNAL),
            400,
            "deletes[0]: column \"name\" is not a primary key column",
        ),
        (
            "_op = 7",
            "people",
            Some(ARROW_STREAM_CONTENT_TYPE),
            op7,
            Some(INTERNAL),
            400,
            "row 0, column \"_op\": must be 0 (upsert) or 1 (delete), got 7",
        ),
        (
            "broken Parquet",
            "people",
            Some(PARQUET_CONTENT_TYPE),
            b"PAR1 nope".to_vec(),
            Some(INTERNAL),
            400,
            "invalid Parquet file",
        ),
        (
            // Read as 0.0 by serde_json: it deleted id 0 (issue 24).
            "a key that underflows to zero",
            "people",
            Some(JSON),
            br#"{"deletes": [{"id": 1e-400}]}"#.to_vec(),
            Some(INTERNAL),
            400,
            "too small for any column",
        ),
        (
            "invalid name",
            "_x",
            Some(JSON),
            br#"{"deletes": [{"id": 1}]}"#.to_vec(),
            Some(INTERNAL),
            400,
            "invalid dataset name",
        ),
        (
            "unknown dataset",
            "nope",
            Some(JSON),
            br#"{"deletes": [{"id": 1}]}"#.to_vec(),
            Some(INTERNAL),
            404,
            "dataset nope not found",
        ),
        (
            "no primary key",
            "keyless",
            Some(JSON),
            br#"{"deletes": [{"id": 1}]}"#.to_vec(),
            Some(INTERNAL),
            409,
            "has no primary key",
        ),
        (
            "wrong content type",
            "people",
            Some("text/plain"),
            br#"{"deletes": [{"id": 1}]}"#.to_vec(),
            Some(INTERNAL),
            415,
            "is not a delta format",
        ),
        (
            "no content type",
            "people",
            None,
            br#"{"deletes": [{"id": 1}]}"#.to_vec(),
            Some(INTERNAL),
            415,
            "is not a delta format",
        ),
        (
            "too big",
            "people",
            Some(JSON),
            too_big.into_bytes(),
            Some(INTERNAL),
            413,
            "",
        ),
        (
            "no token",
            "people",
            Some(JSON),
            br#"{"deletes": [{"id": 1}]}"#.to_vec(),
            None,
            401,
            "missing x-internal-token",
        ),
        (
            "wrong token",
            "people",
            Some(JSON),
            br#"{"deletes": [{"id": 1}]}"#.to_vec(),
            Some("nope"),
            403,
            "wrong x-internal-token",
        ),
    ];
    for (what, dataset, content_type, body, token, status, message) in cases {
        let (got, error) = post_raw(&url, dataset, content_type, body, token).await;
        assert_eq!(got, status, "{what}: {error}");
        let text = error["error"]
            .as_str()
            .unwrap_or_else(|| panic!("{what}: not a JSON error: {error}"));
        assert!(
            text.contains(message),
            "{what}: expected {message:?} in {text:?}"
        );
    }
    for dataset in ["people", "orders", "keyless"] {
        let manifest = f.latest(dataset).await;
        assert_eq!(
            (manifest.version, manifest.deltas.len()),
            (0, 0),
            "{dataset}"
        );
    }
    // The typed client passes status, kind and message through.
    let err = f
        .client()
        .post_deltas(
            "nope",
            JSON,
            Bytes::from_static(b"{\"deletes\":[{\"id\":1}]}"),
            None,
        )
        .await
        .unwrap_err();
    match err {
        strata_storaged_api::ClientError::Status {
            status,
            kind,
            message,
            ..
        } => {
            assert_eq!((status, kind.as_deref()), (404, Some("not_found")));
            assert!(message.contains("nope"), "{message}");
        }
        other => panic!("expected a status error, got {other:?}"),
    }
}
