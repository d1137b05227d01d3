//! Tests of `index` (a file of their own: `index.rs` is long enough).

use std::sync::Arc;

use arrow::array::{DictionaryArray, Int64Array, RecordBatch, StringArray};
use arrow::datatypes::{Field, Int32Type, Schema};

use super::*;
use crate::chunks::colored_batch;

fn chunks() -> Chunks {
    let schema = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("c", DataType::Utf8, true),
        Field::new(
            "d",
            DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8)),
            true,
        ),
    ]));
    let batch = |ids: Vec<i64>, c: Vec<Option<&str>>| {
        let d: DictionaryArray<Int32Type> = c.iter().copied().collect();
        RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(Int64Array::from(ids)),
                Arc::new(StringArray::from(c)),
                Arc::new(d),
            ],
        )
        .unwrap()
    };
    Chunks::new(vec![
        batch(vec![10, 5, 7], vec![Some("a"), None, Some("b")]),
        batch(vec![1, 99], vec![Some("b"), Some("a")]),
    ])
    .unwrap()
}

#[test]
fn sorted_keys_need_no_table() {
    let schema = Arc::new(Schema::new(vec![Field::new("id", DataType::Int64, false)]));
    let batch = |ids: Vec<i64>| {
        RecordBatch::try_new(schema.clone(), vec![Arc::new(Int64Array::from(ids))]).unwrap()
    };
    let chunks = Chunks::new(vec![batch(vec![1, 3, 5]), batch(vec![8, 13])]).unwrap();
    let index = KeyIndex::build(&chunks, &[0]).unwrap();
    assert!(matches!(index, KeyIndex::Sorted { .. }));
    assert_eq!(index.memory_bytes(), 0);
    for (key, row) in [(1, Some(0)), (5, Some(2)), (8, Some(3)), (13, Some(4))] {
        assert_eq!(index.get(&chunks, &[KeyRef::Int(key)]), row, "{key}");
    }
    for missing in [0, 2, 6, 9, 14] {
        assert_eq!(
            index.get(&chunks, &[KeyRef::Int(missing)]),
            None,
            "{missing}"
        );
    }
}

#[test]
fn key_index_finds_every_row_and_nothing_else() {
    let chunks = chunks();
    let index = KeyIndex::build(&chunks, &[0]).unwrap();
    assert!(
        matches!(index, KeyIndex::Hashed { .. }),
        "ids are not sorted"
    );
    for (key, expected) in [(10, 0), (7, 2), (99, 4)] {
        assert_eq!(index.get(&chunks, &[KeyRef::Int(key)]), Some(expected));
    }
    assert_eq!(index.get(&chunks, &[KeyRef::Int(2)]), None);
    assert_eq!(index.get(&chunks, &[KeyRef::Str("10")]), None);
}

#[test]
fn eq_index_groups_rows_ascending_for_plain_and_dictionary_strings() {
    let chunks = chunks();
    for column in [1, 2] {
        let index = EqIndex::build(&chunks, column, 100).unwrap();
        assert_eq!(index.distinct(), 3);
        let ids = |value| index.rows(&chunks, value).ids().collect::<Vec<_>>();
        assert_eq!(ids(KeyRef::Str("a")), [0, 4]);
        assert_eq!(ids(KeyRef::Str("b")), [2, 3]);
        assert_eq!(ids(KeyRef::Null), [1]);
        assert!(index.rows(&chunks, KeyRef::Str("z")).is_empty());
        let a = index.rows(&chunks, KeyRef::Str("a"));
        assert_eq!(a.window(0, 9), [0, 4]);
        assert_eq!(a.window(1, 2), [4]);
        assert!(a.window(2, 3).is_empty());
    }
    assert!(EqIndex::build(&chunks, 0, 4).is_none(), "5 distinct > 4");
}

#[test]
fn dictionary_keys_with_equal_or_null_values_share_one_group() {
    use arrow::array::Int32Array;
    // Keys 0 and 2 both hold "x"; key 3's value is null, like a null key; key 4 is unused.
    let values = StringArray::from(vec![Some("x"), Some("y"), Some("x"), None, Some("z")]);
    let keys = Int32Array::from(vec![Some(0), Some(1), Some(2), None, Some(3), Some(1)]);
    let d = DictionaryArray::<Int32Type>::try_new(keys, Arc::new(values)).unwrap();
    let schema = Arc::new(Schema::new(vec![Field::new(
        "d",
        d.data_type().clone(),
        true,
    )]));
    let chunks = Chunks::new(vec![
        RecordBatch::try_new(schema, vec![Arc::new(d)]).unwrap(),
    ])
    .unwrap();
    let index = EqIndex::build(&chunks, 0, 100).unwrap();
    let groups: Vec<(u32, Vec<u32>)> = index
        .groups(&chunks)
        .map(|(first, rows)| (first, rows.ids().collect()))
        .collect();
    assert_eq!(
        groups,
        [(0, vec![0, 2]), (1, vec![1, 5]), (3, vec![3, 4])],
        "groups in order of first appearance"
    );
    assert_eq!(
        index.rows(&chunks, KeyRef::Null).ids().collect::<Vec<_>>(),
        [3, 4]
    );
    assert!(index.rows(&chunks, KeyRef::Str("z")).is_empty());
}

#[test]
fn literals_compare_like_the_cells_of_their_type() {
    use arrow::array::{ArrayRef, Date32Array, TimestampMicrosecondArray, UInt64Array};
    let cases: Vec<(ScalarValue, ArrayRef)> = vec![
        (
            ScalarValue::Int64(Some(-7)),
            Arc::new(Int64Array::from(vec![-7])),
        ),
        (
            ScalarValue::Utf8(Some("x".into())),
            Arc::new(StringArray::from(vec!["x"])),
        ),
        (
            ScalarValue::Date32(Some(19_782)),
            Arc::new(Date32Array::from(vec![19_782])),
        ),
        (
            ScalarValue::TimestampMicrosecond(Some(5), Some("UTC".into())),
            Arc::new(TimestampMicrosecondArray::from(vec![5]).with_timezone("UTC")),
        ),
        (
            ScalarValue::UInt64(Some(u64::MAX)),
            Arc::new(UInt64Array::from(vec![u64::MAX])),
        ),
        (
            ScalarValue::Boolean(Some(true)),
            Arc::new(arrow::array::BooleanArray::from(vec![true])),
        ),
    ];
    for (literal, array) in cases {
        let cell = accessor(array.as_ref()).unwrap()(0);
        assert_eq!(key_of(&literal), Some(cell), "{literal:?}");
    }
    assert_eq!(key_of(&ScalarValue::Float64(Some(1.0))), None);
}

#[test]
fn sorted_list_operations() {
    assert_eq!(
        union_sorted(&[&[1, 5, 9], &[2, 5, 10]]),
        vec![1, 2, 5, 9, 10]
    );
    assert_eq!(intersect_sorted(&[1, 5, 9], &[2, 5, 9, 10]), vec![5, 9]);
    let large: Vec<u32> = (0..1000).collect();
    assert_eq!(intersect_sorted(&[3, 2000], &large), vec![3]);
}

#[test]
fn ascending_search_finds_what_binary_search_finds() {
    // Dense, gapped, skewed (a jump in the middle) and extreme keys; every probe around them.
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let dense: Vec<i64> = (1..=1000).collect();
    let gapped: Vec<i64> = (0..1000).map(|i| i * 7 + (i % 3)).collect();
    let mut skewed: Vec<i64> = (0..500).collect();
    skewed.extend((0..500).map(|i| 1_000_000_000 + i));
    let extreme = vec![i64::MIN, i64::MIN + 1, -5, 0, 3, i64::MAX - 1, i64::MAX];
    let mut random: Vec<i64> = (0..2000).map(|_| next() as i64).collect();
    random.sort_unstable();
    random.dedup();
    for values in [dense, gapped, skewed, extreme, random, vec![], vec![4]] {
        let mut probes: Vec<i64> = values
            .iter()
            .flat_map(|&v| [v.saturating_sub(1), v, v.saturating_add(1)])
            .collect();
        probes.extend([i64::MIN, i64::MAX, 0]);
        probes.extend((0..200).map(|_| next() as i64));
        for probe in probes {
            assert_eq!(
                search_ascending(&values, probe),
                values.binary_search(&probe).ok(),
                "{probe} in {} values",
                values.len()
            );
        }
    }
}

#[test]
fn large_batches_are_cut_into_chunks_the_index_lists_cross() {
    // 3 batches: 10, 150 000 (cut into 65 536 + 65 536 + 18 928) and 5 rows.
    let n = 150_000;
    let chunks = Chunks::new(vec![
        colored_batch(0..10),
        colored_batch(10..10 + n),
        colored_batch(10 + n..15 + n),
    ])
    .unwrap();
    let sizes: Vec<usize> = chunks.batches().iter().map(|b| b.num_rows()).collect();
    assert_eq!(sizes, [10, 65_536, 65_536, 18_928, 5]);
    let index = EqIndex::build(&chunks, 1, 10).unwrap();
    let red = index.rows(&chunks, KeyRef::Str("red"));
    let want: Vec<u32> = (0..(n as u32 + 15)).filter(|i| i % 3 == 0).collect();
    assert_eq!(red.len(), want.len());
    assert_eq!(red.ids().collect::<Vec<_>>(), want);
    // Windows starting in, ending in and spanning the cut chunks.
    for (start, end) in [(0, 5), (21_840, 21_850), (3, 50_003), (49_990, 60_000)] {
        assert_eq!(
            red.window(start, end),
            want[start..end.min(want.len())],
            "{start}..{end}"
        );
    }
    // Each group's rows chunk by chunk (the group-by's reading order) are its rows.
    for (_, rows) in index.groups(&chunks) {
        let by_chunk: Vec<u32> = (0..chunks.batches().len())
            .flat_map(|c| {
                let start = chunks.row_id(c, 0);
                rows.in_chunk(c).iter().map(move |&r| start + u32::from(r))
            })
            .collect();
        assert_eq!(by_chunk, rows.ids().collect::<Vec<_>>());
        assert!(rows.in_chunk(chunks.batches().len()).is_empty());
    }
}
