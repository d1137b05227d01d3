//! Every rule of a delta body, with the message a client sees.

use arrow::array::{
    Float64Array, Int32Array, Int64Array, ListArray, StringArray, TimestampSecondArray,
};
use arrow::datatypes::{Date32Type, Float64Type, TimestampMicrosecondType};
use serde_json::json;

use super::*;

fn table() -> Schema {
    Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("name", DataType::Utf8, true),
        Field::new("qty", DataType::Int32, false),
        Field::new("price", DataType::Float64, true),
        Field::new("active", DataType::Boolean, true),
        Field::new(
            "ts",
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            true,
        ),
        Field::new("day", DataType::Date32, true),
        Field::new(
            "kind",
            DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8)),
            true,
        ),
        Field::new("amount", DataType::Decimal128(10, 2), true),
        Field::new(
            "tags",
            DataType::List(Arc::new(Field::new("item", DataType::Utf8, true))),
            true,
        ),
    ])
}

fn pk() -> Vec<String> {
    vec!["id".to_string()]
}

fn json_delta(body: serde_json::Value) -> Result<DeltaInput> {
    parse(
        DeltaFormat::Json,
        Bytes::from(body.to_string()),
        &table(),
        &pk(),
    )
}

/// The message of a refused JSON body; fails the test if it was accepted.
fn json_error(body: serde_json::Value) -> String {
    match json_delta(body.clone()) {
        Ok(_) => panic!("accepted {body}"),
        Err(e) => {
            assert!(e.is_invalid_input(), "{e:?} must be a 400 kind");
            e.to_string()
        }
    }
}

fn assert_refused(body: serde_json::Value, expected: &str) {
    let message = json_error(body);
    assert!(
        message.contains(expected),
        "expected {expected:?} in {message:?}"
    );
}

fn ids(batch: &RecordBatch) -> Vec<i64> {
    batch
        .column(0)
        .as_primitive::<Int64Type>()
        .values()
        .to_vec()
}

#[test]
fn members_in_any_order_and_repeated_names_read_as_one_object() {
    let parse_raw = |body: &str| {
        parse(
            DeltaFormat::Json,
            Bytes::from(body.to_string()),
            &table(),
            &pk(),
        )
        .unwrap()
    };
    // Schema order (one comparison per member), shuffled (looked up by name), and a name
    // given twice: the last value counts, as when a JSON object is read.
    let in_order =
        parse_raw(r#"{"upserts":[{"id":1,"name":"a","qty":2},{"id":2,"name":"b","qty":3}]}"#);
    let shuffled = parse_raw(
        r#"{"upserts":[{"qty":2,"id":1,"name":"a"},{"name":"x","qty":3,"id":2,"name":"b"}]}"#,
    );
    assert_eq!(in_order.batch, shuffled.batch);
    assert_eq!(in_order.upserts, 2);
}

#[test]
fn escaped_names_and_strings_read_like_plain_ones() {
    // Strings without escapes are borrowed from the body; with escapes they are decoded.
    let body = r#"{"upserts":[{"id":1,"n\u0061me":"tab\there \"q\" \u00e9","qty":2,"kind":"k\/1"}],
                  "deletes":[{"\u0069d":2}]}"#;
    let input = parse(DeltaFormat::Json, Bytes::from(body), &table(), &pk()).unwrap();
    assert_eq!(ids(&input.batch), [1, 2]);
    assert_eq!(
        input.batch.column(1).as_string::<i32>().value(0),
        "tab\there \"q\" \u{e9}"
    );
    let kind = cast(input.batch.column(7), &DataType::Utf8).unwrap();
    assert_eq!(kind.as_string::<i32>().value(0), "k/1");
    assert_refused(
        json!({"upserts": [{"id": 1, "qty": 1, "name": ["a"]}]}),
        "upserts[0]: column \"name\" (Utf8) expects a string, got [\"a\"]",
    );
}

#[test]
fn json_upserts_and_deletes_become_one_sorted_delta() {
    let delta = json_delta(json!({
        "upserts": [
            {"id": 3, "name": "c", "qty": 3, "price": 1, "active": true,
             "ts": "2026-01-02T03:04:05.123456+02:00", "day": "2026-01-02",
             "kind": "x", "amount": "12.3", "tags": null},
            {"id": 1, "qty": 1, "price": 2.5, "amount": 7}
        ],
        "deletes": [{"id": 2}]
    }))
    .unwrap();
    assert_eq!((delta.upserts, delta.deletes), (2, 1));
    let b = &delta.batch;
    assert_eq!(b.schema(), delta::delta_schema(&table(), &pk()));
    assert_eq!(ids(b), vec![1, 2, 3]);
    assert_eq!(delta::op_column(b).unwrap().values(), &[0, 1, 0]);
    let names = b.column(1).as_string::<i32>();
    assert!(names.is_null(0) && names.is_null(1), "left out is null");
    assert_eq!(names.value(2), "c");
    let qty = b.column(2).as_primitive::<Int32Type>();
    assert!(qty.is_null(1), "a delete row carries only its key");
    assert_eq!((qty.value(0), qty.value(2)), (1, 3));
    let price = b.column(3).as_primitive::<Float64Type>();
    assert_eq!((price.value(0), price.value(2)), (2.5, 1.0));
    assert!(b.column(4).as_boolean().value(2));
    let ts = b.column(5).as_primitive::<TimestampMicrosecondType>();
    let expected = DateTime::parse_from_rfc3339("2026-01-02T01:04:05.123456Z").unwrap();
    assert_eq!(ts.value(2), expected.timestamp_micros());
    let day = b.column(6).as_primitive::<Date32Type>();
    assert_eq!(day.value(2), 20_455);
    let kind = cast(b.column(7), &DataType::Utf8).unwrap();
    assert_eq!(kind.as_string::<i32>().value(2), "x");
    let amount = b.column(8).as_primitive::<Decimal128Type>();
    assert_eq!((amount.value(0), amount.value(2)), (700, 1230));
    assert_eq!(b.column(9).null_count(), 3, "null is fine for any type");
}

#[test]
fn json_body_shape_is_strict() {
    assert_refused(
        json!({"upserts": [{"id": 1, "qty": 1}], "extra": 1}),
        "unknown field `extra`",
    );
    assert_refused(json!({}), "the body has no upserts and no deletes");
    assert_refused(
        json!({"upserts": [], "deletes": []}),
        "no upserts and no deletes",
    );
    assert_refused(json!({"upserts": [1]}), "invalid JSON body");
    assert_refused(json!([]), "invalid JSON body");
    let malformed = parse(
        DeltaFormat::Json,
        Bytes::from("{\"upserts\": ["),
        &table(),
        &pk(),
    );
    assert!(
        malformed
            .unwrap_err()
            .to_string()
            .contains("invalid JSON body")
    );
    let raw_error = |body: &'static str| {
        parse(DeltaFormat::Json, Bytes::from(body), &table(), &pk())
            .unwrap_err()
            .to_string()
    };
    let twice = raw_error(r#"{"upserts": [{"id": 1, "qty": 1}], "upserts": []}"#);
    assert!(twice.contains("duplicate field `upserts`"), "{twice}");
    let trailing = raw_error(r#"{"deletes": [{"id": 1}]} x"#);
    assert!(
        trailing.contains("invalid JSON body: trailing characters"),
        "{trailing}"
    );
    // Rows are named by their list and index, whichever list comes first in the body.
    let unknown = raw_error(r#"{"deletes": [{"id": 1}], "upserts": [{"id": 2, "x": 1}]}"#);
    assert_eq!(unknown, "invalid input: upserts[0]: unknown column \"x\"");
    let empty = parse(DeltaFormat::Json, Bytes::new(), &table(), &pk());
    assert!(empty.unwrap_err().to_string().contains("the body is empty"));
    let keyless = parse(DeltaFormat::Json, Bytes::from("{}"), &table(), &[]);
    assert!(matches!(keyless, Err(Error::Conflict(_))));
}

#[test]
fn json_columns_and_nullability() {
    assert_refused(
        json!({"upserts": [{"id": 1, "qty": 1}, {"id": 2, "qty": 1, "nme": "x"}]}),
        "upserts[1]: unknown column \"nme\"",
    );
    assert_refused(
        json!({"upserts": [{"id": 1, "name": "x"}]}),
        "upserts[0]: column \"qty\" is not nullable, but the upsert leaves it null",
    );
    assert_refused(
        json!({"upserts": [{"id": 1, "qty": null}]}),
        "upserts[0]: column \"qty\" is not nullable",
    );
    assert_refused(
        json!({"upserts": [{"qty": 1}]}),
        "upserts[0]: primary key column \"id\" is null or missing",
    );
    assert_refused(
        json!({"upserts": [{"id": null, "qty": 1}]}),
        "upserts[0]: primary key column \"id\" is null or missing",
    );
    assert_refused(
        json!({"deletes": [{"id": 1, "name": "x"}]}),
        "deletes[0]: column \"name\" is not a primary key column",
    );
    assert_refused(
        json!({"deletes": [{"id": 1}, {}]}),
        "deletes[1]: missing primary key column \"id\"",
    );
    assert_refused(
        json!({"deletes": [{"idd": 1}]}),
        "deletes[0]: unknown column \"idd\"",
    );
    assert_refused(
        json!({"upserts": [{"id": 1, "qty": 1}], "deletes": [{"id": null}]}),
        "deletes[0]: primary key column \"id\" is null or missing",
    );
    assert_refused(
        json!({"upserts": [{"id": 1, "qty": 1}], "deletes": [{"id": "1"}]}),
        "deletes[0]: column \"id\" (Int64) expects an integer, got \"1\"",
    );
}

#[test]
fn json_keys_are_unique_across_upserts_and_deletes() {
    let err = json_delta(json!({
        "upserts": [{"id": 1, "qty": 1}, {"id": 5, "qty": 1}],
        "deletes": [{"id": 5}]
    }))
    .unwrap_err();
    assert!(
        matches!(&err, Error::DuplicateKey { key } if key == "id=5"),
        "{err:?}"
    );
    let err =
        json_delta(json!({"upserts": [{"id": 2, "qty": 1}, {"id": 2, "qty": 2}]})).unwrap_err();
    assert_eq!(err.to_string(), "duplicate primary key id=2");
}

#[test]
fn json_types_are_checked() {
    let up = |col: &str, value: serde_json::Value| {
        let mut row = json!({"id": 1, "qty": 1});
        row[col] = value;
        json!({ "upserts": [row] })
    };
    assert_refused(
        up("qty", json!("3")),
        "upserts[0]: column \"qty\" (Int32) expects an integer, got \"3\"",
    );
    assert_refused(
        up("qty", json!(3.5)),
        "column \"qty\" (Int32) expects an integer, got 3.5",
    );
    assert_refused(
        up("qty", json!(3_000_000_000u64)),
        "column \"qty\" (Int32): 3000000000 is out of range",
    );
    assert_refused(up("qty", json!(1e300)), "expects an integer");
    // Beyond what a double holds exactly: refused, not rounded to i64::MIN.
    let beyond = r#"{"upserts": [{"id": -9223372036854775809, "qty": 1}]}"#;
    assert_refused(serde_json::from_str(beyond).unwrap(), "expects an integer");
    json_delta(up("qty", json!(3.0))).expect("an integral float is an integer");
    json_delta(up("qty", json!(-2147483648i64))).unwrap();
    assert_refused(
        up("price", json!("1.5")),
        "column \"price\" (Float64) expects a number",
    );
    assert_refused(
        up("name", json!(5)),
        "column \"name\" (Utf8) expects a string, got 5",
    );
    assert_refused(
        up("active", json!(1)),
        "column \"active\" (Boolean) expects true or false",
    );
    assert_refused(up("kind", json!(["x"])), "column \"kind\"");
    assert_refused(up("day", json!("2026/01/02")), "is not a date YYYY-MM-DD");
    assert_refused(up("day", json!(20455)), "expects a date YYYY-MM-DD");
    assert_refused(
        up("amount", json!("12.345")),
        "has more than 2 fractional digits",
    );
    assert_refused(up("amount", json!("1e3")), "is not a plain decimal");
    assert_refused(
        up("amount", json!("123456789012")),
        "does not fit precision 10",
    );
    assert_refused(
        up("amount", json!(true)),
        "expects a number or numeric string",
    );
    json_delta(up("amount", json!("-12.50"))).unwrap();
    assert_refused(
        up("tags", json!(["a"])),
        "column \"tags\" has type List(Utf8), which JSON deltas do not support",
    );
}

#[test]
fn json_timestamps_respect_the_column() {
    let ts = |col: &str, value: &str| json!({"upserts": [{"id": 1, "qty": 1, col: value}]});
    let micros = |delta: DeltaInput| {
        delta
            .batch
            .column(5)
            .as_primitive::<TimestampMicrosecondType>()
            .value(0)
    };
    // A naive string in a UTC column is UTC; an offset converts; a space separator is fine.
    let naive = micros(json_delta(ts("ts", "2026-01-02T03:04:05")).unwrap());
    let zulu = micros(json_delta(ts("ts", "2026-01-02T03:04:05Z")).unwrap());
    let offset = micros(json_delta(ts("ts", "2026-01-02 05:04:05+02:00")).unwrap());
    assert_eq!((naive, offset), (zulu, zulu));
    assert_refused(ts("ts", "yesterday"), "is not an RFC 3339 timestamp");
    assert_refused(
        ts("ts", "2026-01-02T03:04:05.1234567Z"),
        "is more precise than the column's unit",
    );

    // A column in another zone needs the offset; a second-unit column refuses fractions;
    // nanoseconds end in 2262.
    let zoned = Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new(
            "at",
            DataType::Timestamp(TimeUnit::Second, Some("+01:00".into())),
            true,
        ),
        Field::new("ns", DataType::Timestamp(TimeUnit::Nanosecond, None), true),
    ]);
    let run = |row: serde_json::Value| {
        parse(
            DeltaFormat::Json,
            Bytes::from(json!({"upserts": [row]}).to_string()),
            &zoned,
            &pk(),
        )
    };
    let err = run(json!({"id": 1, "at": "2026-01-02T03:04:05"})).unwrap_err();
    assert!(err.to_string().contains("has no UTC offset"), "{err}");
    let err = run(json!({"id": 1, "at": "2026-01-02T03:04:05.5+01:00"})).unwrap_err();
    assert!(err.to_string().contains("more precise"), "{err}");
    let ok = run(
        json!({"id": 1, "at": "2026-01-02T03:04:05+01:00", "ns": "2026-01-02T03:04:05.000000001"}),
    )
    .unwrap();
    let at = ok
        .batch
        .column(1)
        .as_any()
        .downcast_ref::<TimestampSecondArray>()
        .unwrap();
    assert_eq!(
        at.value(0),
        DateTime::parse_from_rfc3339("2026-01-02T02:04:05Z")
            .unwrap()
            .timestamp()
    );
    assert_eq!(at.timezone(), Some("+01:00"));
    let err = run(json!({"id": 1, "ns": "2300-01-01T00:00:00Z"})).unwrap_err();
    assert!(err.to_string().contains("is out of range"), "{err}");
}

#[test]
fn json_string_columns_of_every_encoding() {
    let schema = Schema::new(vec![
        Field::new("id", DataType::Utf8, false),
        Field::new("large", DataType::LargeUtf8, true),
        Field::new("view", DataType::Utf8View, true),
        Field::new(
            "small_dict",
            DataType::Dictionary(Box::new(DataType::UInt8), Box::new(DataType::Utf8)),
            true,
        ),
    ]);
    let key = vec!["id".to_string()];
    let body = json!({"upserts": [{"id": "b", "large": "l", "view": "v", "small_dict": "d"}],
                      "deletes": [{"id": "a"}]});
    let delta = parse(
        DeltaFormat::Json,
        Bytes::from(body.to_string()),
        &schema,
        &key,
    )
    .unwrap();
    assert_eq!(delta.batch.column(0).as_string::<i32>().value(0), "a");
    assert_eq!(delta.batch.column(1).as_string::<i64>().value(1), "l");
    assert_eq!(delta.batch.column(2).as_string_view().value(1), "v");
    // More distinct values than the dictionary's key type holds is a 400, not a panic.
    let rows: Vec<_> = (0..300)
        .map(|i| json!({"id": format!("k{i}"), "small_dict": format!("v{i}")}))
        .collect();
    let body = json!({ "upserts": rows });
    let err = parse(
        DeltaFormat::Json,
        Bytes::from(body.to_string()),
        &schema,
        &key,
    )
    .unwrap_err();
    assert!(err.to_string().contains("column \"small_dict\""), "{err}");
}

#[test]
fn composite_keys_name_every_key_column() {
    let schema = Schema::new(vec![
        Field::new("region", DataType::Utf8, false),
        Field::new("id", DataType::Int64, false),
        Field::new("v", DataType::Int64, true),
    ]);
    let key = vec!["region".to_string(), "id".to_string()];
    let run = |body: serde_json::Value| {
        parse(
            DeltaFormat::Json,
            Bytes::from(body.to_string()),
            &schema,
            &key,
        )
    };
    let ok = run(
        json!({"upserts": [{"region": "eu", "id": 1, "v": 1}, {"region": "us", "id": 1}],
                        "deletes": [{"region": "eu", "id": 2}]}),
    )
    .unwrap();
    assert_eq!((ok.upserts, ok.deletes), (2, 1));
    let err = run(json!({"deletes": [{"region": "eu"}]})).unwrap_err();
    assert!(
        err.to_string()
            .contains("deletes[0]: missing primary key column \"id\""),
        "{err}"
    );
    let err = run(
        json!({"upserts": [{"region": "eu", "id": 1}], "deletes": [{"region": "eu", "id": 1}]}),
    )
    .unwrap_err();
    assert_eq!(err.to_string(), "duplicate primary key region=eu, id=1");
}

// ---- Arrow IPC and Parquet ------------------------------------------------------------------

fn arrow_bytes(batch: &RecordBatch) -> Bytes {
    let mut buffer = Vec::new();
    let mut writer =
        arrow::ipc::writer::StreamWriter::try_new(&mut buffer, &batch.schema()).unwrap();
    writer.write(batch).unwrap();
    writer.finish().unwrap();
    Bytes::from(buffer)
}

fn body(columns: Vec<(&str, ArrayRef)>) -> RecordBatch {
    RecordBatch::try_from_iter(columns).unwrap()
}

fn arrow_delta(batch: &RecordBatch) -> Result<DeltaInput> {
    parse(
        DeltaFormat::ArrowStream,
        arrow_bytes(batch),
        &table(),
        &pk(),
    )
}

fn arrow_error(batch: &RecordBatch, expected: &str) {
    let err = arrow_delta(batch).expect_err("must be refused");
    assert!(err.is_invalid_input(), "{err:?}");
    assert!(
        err.to_string().contains(expected),
        "expected {expected:?} in {err}"
    );
}

fn int64(values: Vec<Option<i64>>) -> ArrayRef {
    Arc::new(Int64Array::from(values))
}

#[test]
fn arrow_bodies_with_op_of_any_integer_type() {
    let b = body(vec![
        ("id", int64(vec![Some(3), Some(1), Some(2)])),
        // Int64 quantities cast to the table's Int32; the delete row's value is dropped.
        ("qty", int64(vec![Some(30), Some(10), Some(99)])),
        (
            "name",
            Arc::new(StringArray::from(vec![Some("c"), None, Some("gone")])),
        ),
        ("_op", Arc::new(Int32Array::from(vec![0, 0, 1]))),
    ]);
    let delta = arrow_delta(&b).unwrap();
    assert_eq!((delta.upserts, delta.deletes), (2, 1));
    assert_eq!(ids(&delta.batch), vec![1, 2, 3]);
    assert_eq!(delta::op_column(&delta.batch).unwrap().values(), &[0, 1, 0]);
    let qty = delta.batch.column(2).as_primitive::<Int32Type>();
    assert_eq!((qty.value(0), qty.is_null(1), qty.value(2)), (10, true, 30));
    assert!(
        delta.batch.column(1).is_null(1),
        "delete rows carry only the key"
    );
    assert_eq!(
        delta.batch.column(3).null_count(),
        3,
        "missing columns are null"
    );

    // The same through Parquet.
    let parquet = strata_shared::parquet_io::encode(b.schema(), std::slice::from_ref(&b)).unwrap();
    let via_parquet = parse(DeltaFormat::Parquet, parquet, &table(), &pk()).unwrap();
    assert_eq!(via_parquet.batch, delta.batch);
}

#[test]
fn arrow_op_column_is_checked() {
    let with_op = |op: ArrayRef| {
        body(vec![
            ("id", int64(vec![Some(1), Some(2)])),
            ("qty", int64(vec![Some(1), Some(1)])),
            ("_op", op),
        ])
    };
    arrow_error(
        &with_op(Arc::new(UInt8Array::from(vec![0, 7]))),
        "row 1, column \"_op\": must be 0 (upsert) or 1 (delete), got 7",
    );
    arrow_error(
        &with_op(Arc::new(Int64Array::from(vec![Some(0), None]))),
        "row 1, column \"_op\": must not be null",
    );
    arrow_error(
        &with_op(Arc::new(StringArray::from(vec!["0", "1"]))),
        "column \"_op\" must be an integer",
    );
    arrow_error(
        &body(vec![
            ("id", int64(vec![Some(1)])),
            ("qty", int64(vec![Some(1)])),
        ]),
        "missing column \"_op\"",
    );
    arrow_delta(&with_op(Arc::new(arrow::array::Int8Array::from(vec![
        1, 0,
    ]))))
    .unwrap();
}

#[test]
fn arrow_columns_and_values_are_checked() {
    let op0 = || Arc::new(UInt8Array::from(vec![0, 0])) as ArrayRef;
    arrow_error(
        &body(vec![
            ("id", int64(vec![Some(1), Some(2)])),
            ("qty", int64(vec![Some(1), Some(1)])),
            ("colour", int64(vec![Some(1), Some(1)])),
            ("_op", op0()),
        ]),
        "unknown column \"colour\"",
    );
    arrow_error(
        &body(vec![("qty", int64(vec![Some(1), Some(1)])), ("_op", op0())]),
        "missing primary key column \"id\"",
    );
    arrow_error(
        &body(vec![
            ("id", int64(vec![Some(1), None])),
            ("qty", int64(vec![Some(1), Some(1)])),
            ("_op", op0()),
        ]),
        "row 1: primary key column \"id\" is null or missing",
    );
    arrow_error(
        &body(vec![("id", int64(vec![Some(1), Some(2)])), ("_op", op0())]),
        "row 0: column \"qty\" is not nullable, but the upsert leaves it null",
    );
    arrow_error(
        &body(vec![
            ("id", int64(vec![Some(1), Some(2)])),
            ("qty", int64(vec![Some(1), Some(3_000_000_000)])),
            ("_op", op0()),
        ]),
        "row 1, column \"qty\": value 3000000000 cannot be represented as Int32",
    );
    arrow_error(
        &body(vec![
            ("id", Arc::new(Float64Array::from(vec![1.0, 3.5]))),
            ("qty", int64(vec![Some(1), Some(1)])),
            ("_op", op0()),
        ]),
        "row 1, column \"id\": value 3.5 cannot be represented as Int64",
    );
    arrow_error(
        &body(vec![
            ("id", int64(vec![Some(1), Some(2)])),
            ("qty", Arc::new(StringArray::from(vec!["1", "x"]))),
            ("_op", op0()),
        ]),
        "row 1, column \"qty\": value x cannot be represented as Int32",
    );
    arrow_error(
        &body(vec![
            ("id", int64(vec![Some(1), Some(2)])),
            (
                "qty",
                Arc::new(ListArray::new_null(
                    Arc::new(Field::new("item", DataType::Int64, true)),
                    2,
                )),
            ),
            ("_op", op0()),
        ]),
        "column \"qty\" is List(Int64), which cannot be converted to the table's Int32",
    );
    let dup = arrow_delta(&body(vec![
        ("id", int64(vec![Some(4), Some(4)])),
        ("qty", int64(vec![Some(1), None])),
        ("_op", Arc::new(UInt8Array::from(vec![0, 1]))),
    ]))
    .unwrap_err();
    assert_eq!(dup.to_string(), "duplicate primary key id=4");
    // Integral floats and numeric strings convert exactly; a delete row needs no value.
    arrow_delta(&body(vec![
        ("id", Arc::new(Float64Array::from(vec![1.0, 2.0]))),
        ("qty", Arc::new(StringArray::from(vec![Some("7"), None]))),
        ("_op", Arc::new(UInt8Array::from(vec![0, 1]))),
    ]))
    .unwrap();
}

#[test]
fn broken_and_empty_binary_bodies() {
    let err = parse(
        DeltaFormat::ArrowStream,
        Bytes::from_static(b"nope"),
        &table(),
        &pk(),
    )
    .unwrap_err();
    assert!(
        err.to_string().contains("invalid Arrow IPC stream"),
        "{err}"
    );
    let err = parse(
        DeltaFormat::Parquet,
        Bytes::from_static(b"nope"),
        &table(),
        &pk(),
    )
    .unwrap_err();
    assert!(err.to_string().contains("invalid Parquet file"), "{err}");
    let empty = body(vec![
        ("id", int64(vec![])),
        ("_op", Arc::new(UInt8Array::from(Vec::<u8>::new()))),
    ]);
    arrow_error(&empty, "the body has no rows");
}
