//! Tests of `encode` (a file of their own: `encode.rs` is long enough).

use arrow::array::{
    BooleanArray, Date32Array, DictionaryArray, Float64Array, Int64Array, StringArray,
    TimestampMicrosecondArray,
};
use arrow::datatypes::{Int32Type, TimeUnit};

use super::*;

#[test]
fn selected_rows_encode_as_the_gathered_batch() {
    let batch = RecordBatch::try_from_iter(vec![
        (
            "id",
            Arc::new(Int64Array::from_iter_values(0..10)) as ArrayRef,
        ),
        (
            "s",
            Arc::new(StringArray::from_iter_values(
                (0..10).map(|i| format!("v{i}")),
            )) as ArrayRef,
        ),
    ])
    .unwrap();
    let selected = vec![
        Selection {
            batch: batch.clone(),
            ids: Some(vec![1, 4, 9]),
        },
        Selection::all(batch.slice(2, 2)),
    ];
    let gathered: Vec<Selection> = selected
        .iter()
        .map(|s| Selection::all(s.clone().into_batch().unwrap()))
        .collect();
    assert_eq!(gathered[0].batch.num_rows(), 3);
    let direct = String::from_utf8(json_page(&selected, 1, 5).unwrap()).unwrap();
    assert_eq!(
        direct,
        String::from_utf8(json_page(&gathered, 1, 5).unwrap()).unwrap()
    );
    assert!(direct.starts_with(r#"{"data":[{"id":1,"s":"v1"},{"id":4,"s":"v4"},"#));
}

#[test]
fn doubles_are_written_as_ryu_writes_them() {
    let ryu = |v: f64| ryu::Buffer::new().format_finite(v).to_owned();
    let mine = |v: f64| {
        let mut out = Vec::new();
        write_f64(v, &mut out);
        String::from_utf8(out).unwrap()
    };
    // Every cent up to ±1000.00, then cents, tenths and other values across the range
    // (a fixed-seed LCG), the edges of the two-decimal path, and values beyond it.
    let mut values: Vec<f64> = (-100_000..=100_000).map(|c| c as f64 / 100.0).collect();
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    let mut next = || {
        x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
        x
    };
    for _ in 0..200_000 {
        let r = next();
        let limit = 1u64 << (r % 47);
        values.push((next() % limit) as f64 / 100.0);
        values.push((next() % limit) as f64 / 10.0);
        values.push(-((next() % limit) as f64) / 100.0);
        values.push(f64::from_bits(next() >> 2));
    }
    let edge = (1u64 << 46) as f64;
    values.extend([
        0.0,
        -0.0,
        0.01,
        -0.01,
        0.1,
        0.3,
        0.1 + 0.2,
        1e-7,
        1.5e300,
        f64::MAX,
        f64::MIN_POSITIVE,
        edge,
        edge - 0.01,
        edge - 0.5,
        edge + 1.0,
        edge - 0.25,
        1e15,
        1e16,
        123_456_789.99,
    ]);
    for v in values.into_iter().filter(|v| v.is_finite()) {
        assert_eq!(mine(v), ryu(v), "{v:e}");
    }
}

#[test]
fn json_values_are_encoded_like_datap_rs() {
    let dict: DictionaryArray<Int32Type> = vec![Some("x"), None].into_iter().collect();
    let batch = RecordBatch::try_from_iter(vec![
        (
            "id\"q",
            Arc::new(Int64Array::from(vec![Some(9_007_199_254_740_993), None])) as ArrayRef,
        ),
        (
            "f",
            Arc::new(Float64Array::from(vec![Some(1.0), Some(f64::NAN)])) as ArrayRef,
        ),
        (
            "b",
            Arc::new(BooleanArray::from(vec![Some(true), None])) as ArrayRef,
        ),
        (
            "s",
            Arc::new(StringArray::from(vec![Some("h\u{e9}llo \"q\""), None])) as ArrayRef,
        ),
        ("d", Arc::new(dict) as ArrayRef),
        (
            "ts",
            Arc::new(TimestampMicrosecondArray::from(vec![
                Some(1_704_114_000_000_123),
                Some(1_704_067_200_000_000),
            ])) as ArrayRef,
        ),
        (
            "day",
            Arc::new(Date32Array::from(vec![Some(19_782), None])) as ArrayRef,
        ),
    ])
    .unwrap();
    let json = String::from_utf8(json_page(&[Selection::all(batch)], 2, 5).unwrap()).unwrap();
    assert_eq!(
        json,
        concat!(
            r#"{"data":[{"id\"q":9007199254740993,"f":1.0,"b":true,"s":"héllo \"q\"","d":"x","ts":"2024-01-01T13:00:00.000123","day":"2024-02-29"},"#,
            r#"{"id\"q":null,"f":null,"b":null,"s":null,"d":null,"ts":"2024-01-01T00:00:00","day":null}],"page":2,"page_size":5}"#
        )
    );
    let parsed: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(parsed["data"][0]["id\"q"], 9_007_199_254_740_993u64);
}

#[test]
fn dictionary_strings_are_written_as_their_values() {
    use arrow::array::{DictionaryArray, Int32Array, StringArray};
    // Repeated, escaped, null keys and a null value; then a dictionary too large for
    // the per-page cache.
    let small: Vec<Option<&str>> = vec![Some("DE"), Some("q\"uote"), None, Some("")];
    let large: Vec<String> = (0..DictionaryJson::MAX_VALUES + 1)
        .map(|i| format!("v{i}\n"))
        .collect();
    let large: Vec<Option<&str>> = large.iter().map(|v| Some(v.as_str())).collect();
    for values in [small, large] {
        let n = values.len() as i32;
        let keys = Int32Array::from(vec![
            Some(0),
            Some(1),
            Some(0),
            None,
            Some(2),
            Some(3),
            Some(n - 1),
            Some(1),
            Some(0),
        ]);
        let dictionary = StringArray::from(values.clone());
        let array: ArrayRef =
            Arc::new(DictionaryArray::try_new(keys.clone(), Arc::new(dictionary)).unwrap());
        // A key lookup's page (no cache) and a larger one.
        for rows in [1, DictionaryJson::MIN_ROWS] {
            let write = value_writer(&array, rows).unwrap();
            for (i, key) in keys.iter().enumerate() {
                let mut out = Vec::new();
                write(i, &mut out);
                let want = key.and_then(|k| values[k as usize]);
                assert_eq!(out, serde_json::to_vec(&want).unwrap(), "row {i}");
            }
        }
    }
}

#[test]
fn strings_are_escaped_like_serde_json() {
    for s in [
        "",
        "plain",
        "héllo",
        "q\"uote",
        "back\\slash",
        "tab\there",
        "nl\n",
        "\u{1}",
        "/",
    ] {
        let mut out = Vec::new();
        write_json_str(s, &mut out);
        assert_eq!(out, serde_json::to_vec(s).unwrap(), "{s:?}");
    }
}

#[test]
fn fast_timestamps_match_arrows_display() {
    use arrow::array::{TimestampMillisecondArray, TimestampNanosecondArray, TimestampSecondArray};
    let mut values: Vec<i64> = vec![0, 1, -1, 999, 1_000, 86_399_999, 951_782_400_123];
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    for _ in 0..2000 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        values.push((x % 500_000_000_000_000_000) as i64 - 100_000_000_000_000_000);
        values.push((x % 10) as i64 * 1_000_000_000_000 + (x % 3) as i64 * 1_000);
    }
    let arrays: Vec<ArrayRef> = vec![
        Arc::new(TimestampSecondArray::from(
            values.iter().map(|v| v / 1_000_000_000).collect::<Vec<_>>(),
        )),
        Arc::new(TimestampMillisecondArray::from(
            values.iter().map(|v| v / 1_000_000).collect::<Vec<_>>(),
        )),
        Arc::new(TimestampMicrosecondArray::from(
            values.iter().map(|v| v / 1_000).collect::<Vec<_>>(),
        )),
        Arc::new(TimestampNanosecondArray::from(values.clone())),
        Arc::new(
            TimestampMicrosecondArray::from(values.iter().map(|v| v / 1_000).collect::<Vec<_>>())
                .with_timezone("UTC"),
        ),
    ];
    for array in arrays {
        let formatter = ArrayFormatter::try_new(array.as_ref(), &FormatOptions::default()).unwrap();
        let fast = value_writer(&array, array.len()).unwrap();
        for i in 0..array.len() {
            let mut out = Vec::new();
            fast(i, &mut out);
            let want = serde_json::to_string(&formatter.value(i).to_string()).unwrap();
            assert_eq!(
                String::from_utf8(out).unwrap(),
                want,
                "{:?} #{i}",
                array.data_type()
            );
        }
    }
}

#[test]
fn empty_arrow_results_keep_their_logical_schema() {
    let dataset = Schema::new(vec![
        Field::new("c", DataType::Utf8, true),
        Field::new("ts", DataType::Timestamp(TimeUnit::Microsecond, None), true),
    ]);
    let in_memory = Schema::new(vec![Field::new(
        "c",
        DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8)),
        true,
    )]);
    let schema = logical_schema(&in_memory, &dataset);
    assert_eq!(schema.field(0).data_type(), &DataType::Utf8);
    let bytes = encode_all(Encoding::Arrow, schema.clone(), &[]).unwrap();
    let reader =
        arrow::ipc::reader::StreamReader::try_new(std::io::Cursor::new(bytes), None).unwrap();
    assert_eq!(reader.schema(), schema);
    assert_eq!(reader.count(), 0);
}
