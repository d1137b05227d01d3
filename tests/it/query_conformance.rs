//! The engine conformance suite: query cases whose expected answers are computed here, in
//! plain Rust over the generated rows (an oracle independent of Arrow, DataFusion and the
//! indexes), run against every execution path queryd has:
//!
//! - `hot`: in memory, hot paths on (indexes, direct pages, O(1) counts);
//! - `general`: in memory, every query through DataFusion;
//! - `cold`: not in memory (the cache is too small): primary-key `eq` lookups read the files
//!   directly (`queryd::cold`), everything else runs in DataFusion over the Parquet files;
//! - `cold-general`: not in memory, every query through DataFusion.
//!
//! Each case checks the JSON page, the same page as Arrow IPC, `…/count` and `…/query/stream`
//! — the same rows in the same order everywhere. A new engine (DuckDB) joins by adding a path.

use std::sync::Arc;

use arrow::array::{
    ArrayRef, BooleanArray, Date32Array, Float64Array, Int32Array, Int64Array, RecordBatch,
    StringArray, TimestampMicrosecondArray,
};
use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use object_store::ObjectStore;
use object_store::memory::InMemory;
use serde_json::{Map, Value, json};
use strata_daemon::config::Config;

use crate::common::{Queryd, commit_delta, create_dataset};

const ROWS: i64 = 3000;
const CATEGORIES: [Option<&str>; 5] = [
    Some("alpha"),
    Some("beta"),
    None,
    Some("gamma"),
    Some("delta"),
];
/// 2024-01-01T00:00:00 in microseconds.
const T0: i64 = 1_704_067_200_000_000;
/// 2024-01-01 in days.
const D0: i32 = 19_723;

#[derive(Clone, Debug)]
struct Row {
    id: i64,
    name: String,
    severity: i32,
    score: Option<f64>,
    active: bool,
    ts: i64,
    category: Option<&'static str>,
    day: i32,
}

fn rows() -> Vec<Row> {
    (1..=ROWS)
        .map(|i| Row {
            id: i,
            name: if i % 5 == 0 {
                format!("name_{i:04}")
            } else {
                format!("Name_{i:04}")
            },
            severity: ((i * 7) % 4 + 1) as i32,
            score: (i % 11 != 0).then(|| ((i * 37) % 1000) as f64 / 4.0),
            active: i % 3 != 0,
            ts: T0 + i * 97_000_000 + (i % 7) * 123,
            category: CATEGORIES[((i * 13) % 5) as usize],
            day: D0 + (i % 10) as i32,
        })
        .collect()
}

fn batch(rows: &[Row]) -> RecordBatch {
    let schema = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("name", DataType::Utf8, false),
        Field::new("severity", DataType::Int32, false),
        Field::new("score", DataType::Float64, true),
        Field::new("active", DataType::Boolean, false),
        Field::new(
            "ts",
            DataType::Timestamp(TimeUnit::Microsecond, None),
            false,
        ),
        Field::new("category", DataType::Utf8, true),
        Field::new("day", DataType::Date32, false),
    ]));
    let columns: Vec<ArrayRef> = vec![
        Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.id))),
        Arc::new(StringArray::from_iter_values(
            rows.iter().map(|r| r.name.as_str()),
        )),
        Arc::new(Int32Array::from_iter_values(
            rows.iter().map(|r| r.severity),
        )),
        Arc::new(Float64Array::from_iter(rows.iter().map(|r| r.score))),
        Arc::new(BooleanArray::from_iter(rows.iter().map(|r| Some(r.active)))),
        Arc::new(TimestampMicrosecondArray::from_iter_values(
            rows.iter().map(|r| r.ts),
        )),
        Arc::new(StringArray::from_iter(rows.iter().map(|r| r.category))),
        Arc::new(Date32Array::from_iter_values(rows.iter().map(|r| r.day))),
    ];
    RecordBatch::try_new(schema, columns).unwrap()
}

const ALL: [&str; 8] = [
    "id", "name", "severity", "score", "active", "ts", "category", "day",
];

/// A cell as the JSON encoding renders it (formatted with chrono, not Arrow).
fn cell(r: &Row, column: &str) -> Value {
    match column {
        "id" => json!(r.id),
        "name" => json!(r.name),
        "severity" => json!(r.severity),
        "score" => r.score.map_or(Value::Null, |s| json!(s)),
        "active" => json!(r.active),
        "ts" => json!(
            chrono::DateTime::from_timestamp_micros(r.ts)
                .unwrap()
                .naive_utc()
                .format("%Y-%m-%dT%H:%M:%S%.f")
                .to_string()
        ),
        "category" => r.category.map_or(Value::Null, |c| json!(c)),
        "day" => json!(
            (chrono::NaiveDate::from_ymd_opt(1970, 1, 1).unwrap()
                + chrono::Duration::days(r.day as i64))
            .to_string()
        ),
        other => panic!("no column {other}"),
    }
}

fn project(rows: &[&Row], columns: &[&str]) -> Vec<Map<String, Value>> {
    rows.iter()
        .map(|r| {
            columns
                .iter()
                .map(|c| (c.to_string(), cell(r, c)))
                .collect()
        })
        .collect()
}

fn object(pairs: Vec<(&str, Value)>) -> Map<String, Value> {
    pairs.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
}

/// Ascending with nulls last (the API's order for `asc`).
fn nulls_last<T: Ord>(a: &Option<T>, b: &Option<T>) -> std::cmp::Ordering {
    match (a, b) {
        (Some(a), Some(b)) => a.cmp(b),
        (None, None) => std::cmp::Ordering::Equal,
        (None, _) => std::cmp::Ordering::Greater,
        (_, None) => std::cmp::Ordering::Less,
    }
}

type Rows = Vec<Map<String, Value>>;
/// Computes every row a case returns, from the generated rows.
type Oracle = Box<dyn Fn(&[Row]) -> Rows>;

struct Case {
    name: &'static str,
    request: Value,
    /// Every row the query returns before paging (after `limit`).
    expect: Oracle,
}

fn case(name: &'static str, request: Value, expect: impl Fn(&[Row]) -> Rows + 'static) -> Case {
    Case {
        name,
        request,
        expect: Box::new(expect),
    }
}

fn filtered(rows: &[Row], keep: impl Fn(&Row) -> bool) -> Vec<&Row> {
    rows.iter().filter(|r| keep(r)).collect()
}

fn cases() -> Vec<Case> {
    vec![
        case("all rows, default page", json!({}), |rows| {
            project(&filtered(rows, |_| true), &ALL)
        }),
        case(
            "projection and page 2",
            json!({"columns": ["name", "id"], "page": 2, "page_size": 7}),
            |rows| project(&filtered(rows, |_| true), &["name", "id"]),
        ),
        case(
            "primary-key lookup",
            json!({"predicates": [{"col": "id", "op": "eq", "val": 1234}]}),
            |rows| project(&filtered(rows, |r| r.id == 1234), &ALL),
        ),
        // Keys the deltas suite rewrites (12), deletes after re-inserting (15) and inserts
        // (5001), a key no version has, and a page past the one row.
        case(
            "primary-key lookup of a rewritten key",
            json!({"columns": ["name", "id"], "predicates": [{"col": "id", "op": "eq", "val": 12}]}),
            |rows| project(&filtered(rows, |r| r.id == 12), &["name", "id"]),
        ),
        case(
            "primary-key lookup of a deleted key",
            json!({"predicates": [{"col": "id", "op": "eq", "val": 15}]}),
            |rows| project(&filtered(rows, |r| r.id == 15), &ALL),
        ),
        case(
            "primary-key lookup of an inserted key",
            json!({"predicates": [{"col": "id", "op": "eq", "val": 5001}]}),
            |rows| project(&filtered(rows, |r| r.id == 5001), &ALL),
        ),
        case(
            "primary-key lookup of a missing key",
            json!({"predicates": [{"col": "id", "op": "eq", "val": 987_654}]}),
            |rows| project(&filtered(rows, |r| r.id == 987_654), &ALL),
        ),
        case(
            "primary-key lookup, page 2",
            json!({"predicates": [{"col": "id", "op": "eq", "val": 1234}], "page": 2}),
            |rows| project(&filtered(rows, |r| r.id == 1234), &ALL),
        ),
        case(
            "primary-key in, storage order",
            json!({"columns": ["id", "category"], "predicates": [{"col": "id", "op": "in", "val": [2999, 5, 99999, 17]}]}),
            |rows| {
                project(
                    &filtered(rows, |r| [2999, 5, 17].contains(&r.id)),
                    &["id", "category"],
                )
            },
        ),
        case(
            "primary key and another filter",
            json!({"predicates": [{"col": "id", "op": "eq", "val": 40}, {"col": "severity", "op": "eq", "val": 1}]}),
            |rows| project(&filtered(rows, |r| r.id == 40 && r.severity == 1), &ALL),
        ),
        case(
            "indexed eq, page 3",
            json!({"columns": ["id", "category"], "predicates": [{"col": "category", "op": "eq", "val": "beta"}], "page": 3, "page_size": 50}),
            |rows| {
                project(
                    &filtered(rows, |r| r.category == Some("beta")),
                    &["id", "category"],
                )
            },
        ),
        case(
            "indexed in and eq intersected",
            json!({"columns": ["id", "severity", "category"], "predicates": [
                {"col": "category", "op": "in", "val": ["alpha", "gamma"]},
                {"col": "severity", "op": "eq", "val": 2}]}),
            |rows| {
                project(
                    &filtered(rows, |r| {
                        matches!(r.category, Some("alpha" | "gamma")) && r.severity == 2
                    }),
                    &["id", "severity", "category"],
                )
            },
        ),
        case(
            "integral float literal on an integer column",
            json!({"columns": ["id"], "predicates": [{"col": "severity", "op": "eq", "val": 3.0}], "page_size": 100000}),
            |rows| project(&filtered(rows, |r| r.severity == 3), &["id"]),
        ),
        case(
            "is_null",
            json!({"columns": ["id", "category"], "predicates": [{"col": "category", "op": "is_null"}]}),
            |rows| {
                project(
                    &filtered(rows, |r| r.category.is_none()),
                    &["id", "category"],
                )
            },
        ),
        case(
            "is_not_null with limit",
            json!({"columns": ["id"], "predicates": [{"col": "score", "op": "is_not_null"}], "limit": 10}),
            |rows| project(&filtered(rows, |r| r.score.is_some())[..10], &["id"]),
        ),
        case(
            "range filters on a float column",
            json!({"columns": ["id", "score"], "predicates": [
                {"col": "score", "op": "gte", "val": 100}, {"col": "score", "op": "lt", "val": 120.5},
                {"col": "severity", "op": "neq", "val": 3}]}),
            |rows| {
                project(
                    &filtered(rows, |r| {
                        r.score.is_some_and(|s| (100.0..120.5).contains(&s)) && r.severity != 3
                    }),
                    &["id", "score"],
                )
            },
        ),
        case(
            "gt and lte on the key",
            json!({"columns": ["id"], "predicates": [{"col": "id", "op": "gt", "val": 2990}, {"col": "id", "op": "lte", "val": 2995}]}),
            |rows| project(&filtered(rows, |r| r.id > 2990 && r.id <= 2995), &["id"]),
        ),
        case(
            "like is case-sensitive",
            json!({"columns": ["id", "name"], "predicates": [{"col": "name", "op": "like", "val": "name_1%"}]}),
            |rows| {
                project(
                    &filtered(rows, |r| r.name.starts_with("name_1")),
                    &["id", "name"],
                )
            },
        ),
        case(
            "ilike ignores case",
            json!({"columns": ["id", "name"], "predicates": [{"col": "name", "op": "ilike", "val": "NAME_2_0_"}]}),
            |rows| {
                project(
                    &filtered(rows, |r| {
                        let n = r.name.to_lowercase();
                        n.len() == 9 && n.starts_with("name_2") && &n[7..8] == "0"
                    }),
                    &["id", "name"],
                )
            },
        ),
        case(
            "timestamp and date literals",
            json!({"columns": ["id", "ts", "day"], "predicates": [
                {"col": "ts", "op": "gte", "val": "2024-01-02 00:00:00"},
                {"col": "ts", "op": "lt", "val": "2024-01-02T06:00:00"},
                {"col": "day", "op": "eq", "val": "2024-01-04"}]}),
            |rows| {
                let lo = T0 + 86_400_000_000;
                let hi = lo + 6 * 3_600_000_000;
                project(
                    &filtered(rows, |r| r.ts >= lo && r.ts < hi && r.day == D0 + 3),
                    &["id", "ts", "day"],
                )
            },
        ),
        case(
            "bool eq",
            json!({"columns": ["id"], "predicates": [{"col": "active", "op": "eq", "val": false}], "page": 4, "page_size": 100}),
            |rows| project(&filtered(rows, |r| !r.active), &["id"]),
        ),
        case(
            "order by a float desc with nulls first, page 2",
            json!({"columns": ["id", "score"], "order_by": [{"col": "score", "dir": "desc"}], "page": 2, "page_size": 25}),
            |rows| {
                let mut v = filtered(rows, |_| true);
                // Descending puts nulls first; ties by the key.
                v.sort_by(|a, b| {
                    let by_score = match (a.score, b.score) {
                        (None, None) => std::cmp::Ordering::Equal,
                        (None, Some(_)) => std::cmp::Ordering::Less,
                        (Some(_), None) => std::cmp::Ordering::Greater,
                        (Some(x), Some(y)) => y.total_cmp(&x),
                    };
                    by_score.then(a.id.cmp(&b.id))
                });
                project(&v, &["id", "score"])
            },
        ),
        case(
            "order by two columns (nulls last ascending)",
            json!({"columns": ["id", "category", "name"], "order_by": [{"col": "category"}, {"col": "name", "dir": "DESC"}], "limit": 300}),
            |rows| {
                let mut v = filtered(rows, |_| true);
                v.sort_by(|a, b| nulls_last(&a.category, &b.category).then(b.name.cmp(&a.name)));
                project(&v[..300], &["id", "category", "name"])
            },
        ),
        case(
            "order by a non-projected column",
            json!({"columns": ["id"], "predicates": [{"col": "category", "op": "eq", "val": "delta"}], "order_by": [{"col": "ts", "dir": "desc"}], "page_size": 30}),
            |rows| {
                let mut v = filtered(rows, |r| r.category == Some("delta"));
                v.sort_by(|a, b| b.ts.cmp(&a.ts).then(a.id.cmp(&b.id)));
                project(&v, &["id"])
            },
        ),
        case(
            "group by with the default count, sorted by the group",
            json!({"group_by": ["category"]}),
            |rows| {
                let mut groups: Vec<(Option<&str>, i64)> = Vec::new();
                let named: std::collections::BTreeSet<&str> =
                    rows.iter().filter_map(|r| r.category).collect();
                // Ascending, nulls last.
                for c in named.into_iter().map(Some).chain([None]) {
                    let n = rows.iter().filter(|r| r.category == c).count() as i64;
                    groups.push((c, n));
                }
                groups
                    .into_iter()
                    .map(|(c, n)| {
                        object(vec![
                            ("category", c.map_or(Value::Null, |c| json!(c))),
                            ("count", json!(n)),
                        ])
                    })
                    .collect()
            },
        ),
        case(
            "group by, sorted by the group descending (nulls first)",
            json!({"group_by": ["category"], "order_by": [{"col": "category", "dir": "desc"}]}),
            |rows| {
                let named: std::collections::BTreeSet<&str> =
                    rows.iter().filter_map(|r| r.category).collect();
                [None]
                    .into_iter()
                    .chain(named.into_iter().rev().map(Some))
                    .map(|c| {
                        let n = rows.iter().filter(|r| r.category == c).count() as i64;
                        object(vec![
                            ("category", c.map_or(Value::Null, |c| json!(c))),
                            ("count", json!(n)),
                        ])
                    })
                    .collect()
            },
        ),
        case(
            "group by one indexed column, ordered by an aggregate, limit and page",
            json!({
                "group_by": ["severity"],
                "aggregations": [{"op": "count", "alias": "n"}, {"op": "max", "col": "id"}],
                "order_by": [{"col": "max_id", "dir": "asc"}],
                "limit": 3, "page": 2, "page_size": 2}),
            |rows| {
                let mut out: Vec<(i64, Map<String, Value>)> = (1..=4)
                    .map(|severity| {
                        let g = filtered(rows, |r| r.severity == severity);
                        let max = g.iter().map(|r| r.id).max().unwrap();
                        (
                            max,
                            object(vec![
                                ("severity", json!(severity)),
                                ("n", json!(g.len())),
                                ("max_id", json!(max)),
                            ]),
                        )
                    })
                    .collect();
                out.sort_by_key(|o| o.0);
                // limit 3 (the check pages it: page 2 of 2 rows holds the third group only).
                out.into_iter().take(3).map(|(_, o)| o).collect()
            },
        ),
        case(
            "group by two columns with aggregations, having and order",
            json!({
                "predicates": [{"col": "score", "op": "is_not_null"}],
                "group_by": ["severity", "active"],
                "aggregations": [
                    {"op": "count", "alias": "n"},
                    {"op": "sum", "col": "severity"},
                    {"op": "avg", "col": "id", "alias": "mean_id"},
                    {"op": "min", "col": "name"},
                    {"op": "max", "col": "day", "alias": "last_day"}],
                "having": [{"col": "n", "op": "gt", "val": 200}],
                "order_by": [{"col": "n", "dir": "desc"}]}),
            |rows| {
                let mut out = Vec::new();
                for severity in 1..=4 {
                    for active in [false, true] {
                        let g = filtered(rows, |r| {
                            r.score.is_some() && r.severity == severity && r.active == active
                        });
                        if g.len() <= 200 {
                            continue;
                        }
                        let n = g.len() as i64;
                        let sum: i64 = g.iter().map(|r| r.severity as i64).sum();
                        let mean = g.iter().map(|r| r.id).sum::<i64>() as f64 / n as f64;
                        let min = g.iter().map(|r| r.name.clone()).min().unwrap();
                        let last = g.iter().max_by_key(|r| r.day).unwrap();
                        out.push((
                            n,
                            severity,
                            active,
                            object(vec![
                                ("severity", json!(severity)),
                                ("active", json!(active)),
                                ("n", json!(n)),
                                ("sum_severity", json!(sum)),
                                ("mean_id", json!(mean)),
                                ("min_name", json!(min)),
                                ("last_day", cell(last, "day")),
                            ]),
                        ));
                    }
                }
                // n descending, then the group columns ascending.
                out.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)).then(a.2.cmp(&b.2)));
                out.into_iter().map(|(_, _, _, o)| o).collect()
            },
        ),
        case(
            "group by one indexed column, every integer aggregate, having, order",
            json!({
                "group_by": ["severity"],
                "aggregations": [
                    {"op": "count", "alias": "n"},
                    {"op": "count", "col": "score"},
                    {"op": "sum", "col": "id"},
                    {"op": "avg", "col": "severity"},
                    {"op": "min", "col": "id"},
                    {"op": "max", "col": "id", "alias": "top"}],
                "having": [{"col": "n", "op": "gte", "val": 750}],
                "order_by": [{"col": "sum_id", "dir": "desc"}]}),
            |rows| {
                let mut out = Vec::new();
                for severity in 1..=4 {
                    let g = filtered(rows, |r| r.severity == severity);
                    if g.len() < 750 {
                        continue;
                    }
                    let sum: i64 = g.iter().map(|r| r.id).sum();
                    out.push((
                        sum,
                        object(vec![
                            ("severity", json!(severity)),
                            ("n", json!(g.len())),
                            (
                                "count_score",
                                json!(g.iter().filter(|r| r.score.is_some()).count()),
                            ),
                            ("sum_id", json!(sum)),
                            ("avg_severity", json!(severity as f64)),
                            ("min_id", json!(g.iter().map(|r| r.id).min().unwrap())),
                            ("top", json!(g.iter().map(|r| r.id).max().unwrap())),
                        ]),
                    ));
                }
                out.sort_by_key(|o| std::cmp::Reverse(o.0));
                out.into_iter().map(|(_, o)| o).collect()
            },
        ),
        case(
            "distinct, sorted by its columns",
            json!({"columns": ["category"], "distinct": true}),
            |rows| {
                let named: std::collections::BTreeSet<&str> =
                    rows.iter().filter_map(|r| r.category).collect();
                named
                    .into_iter()
                    .map(Some)
                    .chain([None])
                    .map(|c| object(vec![("category", c.map_or(Value::Null, |c| json!(c)))]))
                    .collect()
            },
        ),
        case(
            "distinct with order_by desc",
            json!({"columns": ["severity", "active"], "distinct": true, "order_by": [{"col": "severity", "dir": "desc"}]}),
            |_| {
                let mut v = Vec::new();
                for s in (1..=4).rev() {
                    for a in [false, true] {
                        v.push(object(vec![("severity", json!(s)), ("active", json!(a))]));
                    }
                }
                v
            },
        ),
        case(
            "limit across pages",
            json!({"columns": ["id"], "limit": 15, "page": 2, "page_size": 10}),
            |rows| project(&filtered(rows, |_| true)[..15], &["id"]),
        ),
        case(
            "empty result",
            json!({"columns": ["id", "ts"], "predicates": [{"col": "id", "op": "lt", "val": 0}]}),
            |_| Vec::new(),
        ),
        case(
            "page past the end",
            json!({"columns": ["id"], "page": 1000, "page_size": 100}),
            |rows| project(&filtered(rows, |_| true), &["id"]),
        ),
    ]
}

/// Equal rows, except that floats may differ in their last bits: an average of integers
/// is a float sum, and DataFusion's partial aggregation adds in an order that depends on
/// how rows fall into batches.
fn assert_same(got: &[Map<String, Value>], want: &[Map<String, Value>], label: &str) {
    let close = |a: &Value, b: &Value| match (a.as_f64(), b.as_f64()) {
        (Some(x), Some(y)) if a.is_f64() || b.is_f64() => {
            (x - y).abs() <= 1e-12 * x.abs().max(y.abs())
        }
        _ => a == b,
    };
    let same = got.len() == want.len()
        && got.iter().zip(want).all(|(g, w)| {
            g.len() == w.len() && g.iter().all(|(k, v)| w.get(k).is_some_and(|x| close(v, x)))
        });
    assert!(same, "{label}\n got: {got:?}\nwant: {want:?}");
}

/// The rows of a JSON page body.
fn data(body: &[u8]) -> Vec<Map<String, Value>> {
    let v: Value = serde_json::from_slice(body).unwrap();
    serde_json::from_value(v["data"].clone()).unwrap()
}

/// Arrow IPC → the same JSON rows the JSON encoding would produce.
fn arrow_rows(body: &[u8]) -> (arrow::datatypes::SchemaRef, Vec<Map<String, Value>>) {
    let reader =
        arrow::ipc::reader::StreamReader::try_new(std::io::Cursor::new(body.to_vec()), None)
            .unwrap();
    let schema = reader.schema();
    let batches: Vec<RecordBatch> = reader.map(|b| b.unwrap()).collect();
    let mut out = Vec::new();
    strata_queryd::encode::json_rows(&batches, &mut out).unwrap();
    (schema, serde_json::from_slice(&out).unwrap())
}

async fn path(name: &str, store: Arc<dyn ObjectStore>) -> Queryd {
    let mut config = Config::default();
    match name {
        "hot" => {}
        "general" => config.queryd.hot_paths = false,
        // Too small for any dataset: every request is answered from Parquet.
        "cold" => config.queryd.cache_bytes = 1,
        "cold-general" => {
            config.queryd.cache_bytes = 1;
            config.queryd.hot_paths = false;
        }
        other => panic!("unknown path {other}"),
    }
    let queryd = Queryd::new(store, config);
    if !name.starts_with("cold") {
        let (status, body) = queryd
            .post("/api/v1/cache/pin", &json!({"dataset": "events"}), true)
            .await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["residency"], "memory");
    }
    queryd
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_path_returns_the_oracles_rows_in_the_oracles_order() {
    let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let all = rows();
    // Three base files, so order across files is exercised too.
    let parts: Vec<RecordBatch> = all.chunks(1000).map(batch).collect();
    create_dataset(&store, "events", &parts, &["id"]).await;

    for path_name in ["hot", "general", "cold", "cold-general"] {
        let queryd = path(path_name, store.clone()).await;
        check_cases(&queryd, path_name, &all, 0).await;
    }
}

/// The same cases over a dataset whose deltas update, delete and re-insert rows: every path
/// returns the merged state (`merge::materialize`'s order) — in memory both when the deltas
/// arrive after the load (applied incrementally) and when they are there before it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_path_merges_deltas_like_the_oracle() {
    let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let base = rows();
    let parts: Vec<RecordBatch> = base.chunks(1000).map(batch).collect();
    create_dataset(&store, "events", &parts, &["id"]).await;
    // Loaded before the deltas: they are applied to the resident state.
    let incremental = path("hot", store.clone()).await;
    let incremental_general = path("general", store.clone()).await;

    let mut model: std::collections::BTreeMap<i64, Row> =
        base.iter().map(|r| (r.id, r.clone())).collect();
    let changed = |r: &Row, k: i64| Row {
        name: format!("changed_{k}_{}", r.id),
        severity: ((r.id + k) % 4 + 1) as i32,
        score: Some(k as f64),
        category: CATEGORIES[((r.id + k) % 5) as usize],
        ..r.clone()
    };
    let fresh = |id: i64, k: i64| Row {
        id,
        name: format!("new_{k}_{id}"),
        severity: (id % 4 + 1) as i32,
        score: (id % 2 == 0).then_some(id as f64 / 8.0),
        active: id % 2 == 1,
        ts: T0 + id,
        // Many new category values: more than the base's one-byte dictionary keys number.
        category: Some(Box::leak(format!("cat_{}", id % 300).into_boxed_str())),
        day: D0 + (id % 3) as i32,
    };
    let steps: Vec<(Vec<Row>, Vec<i64>)> = vec![
        (
            (10..20)
                .map(|id| changed(&model[&id], 1))
                .chain((5000..5400).map(|id| fresh(id, 1)))
                .collect(),
            (30..40).chain([99_999]).collect(),
        ),
        (
            [15, 35, 5003]
                .iter()
                .map(|&id| fresh(id, 2))
                .chain(
                    (1..3000)
                        .step_by(97)
                        .map(|id| changed(&base[id as usize - 1], 2)),
                )
                .collect(),
            vec![5004, 5005, 12, 2999],
        ),
        (vec![fresh(12, 3)], vec![15, 5000]),
    ];
    let mut version = 0;
    // The version that last wrote each key a delta touched.
    let mut written: std::collections::BTreeMap<i64, u64> = Default::default();
    for (upserts, deletes) in &steps {
        version = commit_delta(&store, "events", &batch(upserts), deletes).await;
        for id in deletes {
            model.remove(id);
            written.insert(*id, version);
        }
        for r in upserts {
            model.insert(r.id, r.clone());
            written.insert(r.id, version);
        }
    }
    // Storage order: untouched base rows in base order, then the surviving rows deltas
    // wrote, by the version that wrote them, then by key.
    let mut rewritten: Vec<Row> = model
        .values()
        .filter(|r| written.contains_key(&r.id))
        .cloned()
        .collect();
    rewritten.sort_by_key(|r| (written[&r.id], r.id));
    let merged: Vec<Row> = base
        .iter()
        .filter(|r| !written.contains_key(&r.id))
        .cloned()
        .chain(rewritten)
        .collect();

    for queryd in [&incremental, &incremental_general] {
        let (status, body) = queryd
            .post("/api/v1/datasets/events/reload", &json!({}), true)
            .await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["version"], version);
        assert_eq!(body["rows"], merged.len());
    }
    check_cases(&incremental, "hot, applied", &merged, version).await;
    check_cases(&incremental_general, "general, applied", &merged, version).await;
    for path_name in ["hot", "general", "cold", "cold-general"] {
        let queryd = path(path_name, store.clone()).await;
        check_cases(&queryd, path_name, &merged, version).await;
    }
}

/// Runs every case on `queryd` and compares with the oracle over `all` (in storage order).
async fn check_cases(queryd: &Queryd, path_name: &str, all: &[Row], version: u64) {
    for case in cases() {
        let label = format!("[{path_name}] {}", case.name);
        let everything = (case.expect)(all);
        let page = case.request["page"].as_u64().unwrap_or(1).max(1) as usize;
        let size = case.request["page_size"].as_u64().unwrap_or(1000) as usize;
        let want: Vec<_> = everything
            .iter()
            .skip((page - 1) * size)
            .take(size)
            .cloned()
            .collect();

        let q = "/api/v1/datasets/events/query";
        let (status, headers, body) = queryd
            .post_raw(q, case.request.to_string(), &[], false)
            .await;
        assert_eq!(status, 200, "{label}: {}", String::from_utf8_lossy(&body));
        assert_eq!(
            headers["x-dataset-version"],
            version.to_string().as_str(),
            "{label}"
        );
        let got = data(&body);
        assert_eq!(got.len(), want.len(), "{label}: row count");
        assert_same(&got, &want, &label);

        let (status, headers, body) = queryd
            .post_raw(
                &format!("{q}?format=arrow"),
                case.request.to_string(),
                &[],
                false,
            )
            .await;
        assert_eq!(status, 200, "{label} (arrow)");
        assert_eq!(headers["x-page"], page.to_string().as_str(), "{label}");
        let (schema, arrow) = arrow_rows(&body);
        assert_same(&arrow, &want, &format!("{label} (arrow)"));
        assert!(
            !schema
                .fields()
                .iter()
                .any(|f| matches!(f.data_type(), DataType::Dictionary(..))),
            "{label}: Arrow answers carry the logical types"
        );

        let (status, count) = queryd
            .post("/api/v1/datasets/events/count", &case.request, false)
            .await;
        assert_eq!(status, 200, "{label} (count)");
        assert_eq!(count["count"], everything.len(), "{label} (count)");

        let (status, _, body) = queryd
            .post_raw(&format!("{q}/stream"), case.request.to_string(), &[], false)
            .await;
        assert_eq!(status, 200, "{label} (stream)");
        assert_same(
            &arrow_rows(&body).1,
            &everything,
            &format!("{label} (stream)"),
        );
    }
}
