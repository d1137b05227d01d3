//! The cases of the engine conformance suite (`query_conformance`): a request and the oracle
//! that computes, from the generated rows, every row it returns.

use serde_json::{Map, Value, json};

use super::*;

pub(super) type Rows = Vec<Map<String, Value>>;
/// Computes every row a case returns, from the generated rows.
type Oracle = Box<dyn Fn(&[Row]) -> Rows>;

pub(super) struct Case {
    pub(super) name: &'static str,
    pub(super) request: Value,
    /// Every row the query returns before paging (after `limit`).
    pub(super) expect: Oracle,
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

pub(super) fn cases() -> Vec<Case> {
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
