//! Random requests: literals drawn from the base table's values, so predicates select
//! something, over every shape of the query language ([`super::request`]).

use arrow::array::{Array, RecordBatch};
use rand::Rng;
use rand::rngs::StdRng;
use rand::seq::IndexedRandom;

use super::compare::{Cell, Mode, cell};
use super::request::{Agg, Having, Pred, Query, Shape};
use super::table::{COLUMNS, Kind};

/// Draws literals from the base table's values, so predicates select something.
pub struct Sampler<'a> {
    pub base: &'a RecordBatch,
}

impl Sampler<'_> {
    /// A value of `column` from a random row (never null: `None` after a few nulls).
    fn value(&self, rng: &mut StdRng, column: usize) -> Option<Cell> {
        let array = self.base.column(column);
        (0..8).find_map(|_| {
            let c = cell(array.as_ref(), rng.random_range(0..array.len()));
            (c != Cell::Null).then_some(c)
        })
    }

    pub fn query(&self, rng: &mut StdRng) -> Query {
        // One request in twenty is a bare key lookup (the whole key by `eq`, rows, no order):
        // the shape the cold key path answers, which the mix below reaches a few times a run.
        if rng.random_bool(0.05) {
            return self.lookup(rng);
        }
        let n = COLUMNS.len();
        let shape_roll = rng.random_range(0..100);
        // About a third of the grouped requests group by dictionary-encoded string columns
        // with comparison filters on other columns only: the shape the dictionary route
        // (`group::dict`) answers, which the unbiased mix reaches a few times a run.
        let dictionary = shape_roll >= 70 && rng.random_bool(0.35);
        let mut filters = Vec::new();
        // Key lookups (hot and cold key paths) in about one request of six.
        if !dictionary && rng.random_bool(0.16) {
            filters.push(self.key_pred(rng));
        }
        let extra = *[0, 0, 1, 1, 1, 2, 2, 3].choose(rng).unwrap();
        for _ in 0..extra {
            if dictionary {
                filters.extend(self.comparison(rng));
            } else {
                let column = rng.random_range(1..n);
                filters.extend(self.pred(rng, column));
            }
        }
        let mut query = Query {
            columns: None,
            filters,
            shape: Shape::Rows,
            order_by: Vec::new(),
            limit: rng
                .random_bool(0.25)
                .then(|| *[1, 7, 100, 1000, 5000, 50_000].choose(rng).unwrap()),
            page: None,
            page_size: None,
            upper: rng.random_bool(0.05),
        };
        match rng.random_range(0..10) {
            0..=4 => {}
            5..=7 => {
                query.page_size = Some(*[1, 5, 20, 50, 100, 500].choose(rng).unwrap());
                query.page = Some(rng.random_range(0..6));
            }
            8 => {
                // Deep pages.
                query.page_size = Some(50);
                query.page = Some(rng.random_range(100..2_000));
            }
            _ => query.page_size = Some(rng.random_range(1..3_000)),
        }
        if shape_roll < 55 {
            if rng.random_bool(0.6) {
                let count = rng.random_range(1..7);
                query.columns = Some(self.columns(rng, count));
            }
            let keys = *[0, 0, 1, 1, 2].choose(rng).unwrap();
            query.order_by = (0..keys)
                .map(|_| {
                    (
                        COLUMNS[rng.random_range(0..n)].name.to_owned(),
                        rng.random_bool(0.5),
                    )
                })
                .collect();
            dedup_keys(&mut query.order_by);
        } else if shape_roll < 70 {
            query.shape = Shape::Distinct;
            let groupable: Vec<usize> = (1..n).filter(|&c| COLUMNS[c].kind.groupable()).collect();
            let count = rng.random_range(1..3);
            let mut columns: Vec<usize> = groupable.choose_multiple(rng, count).copied().collect();
            columns.dedup();
            query.order_by = self.output_keys(
                rng,
                &columns
                    .iter()
                    .map(|&c| COLUMNS[c].name.to_owned())
                    .collect::<Vec<_>>(),
            );
            query.columns = Some(columns);
        } else {
            query.shape = self.grouped(rng, dictionary);
            if let Shape::Grouped { group, aggs, .. } = &query.shape {
                // Not by an aggregate added in floating point: two groups equal but for the
                // rounding of their summation order (which neither engine fixes, and a
                // parallel aggregation varies) may come in either order.
                let outputs: Vec<String> = group
                    .iter()
                    .map(|&c| COLUMNS[c].name.to_owned())
                    .chain(
                        aggs.iter()
                            .filter(|a| a.mode() != Mode::Approx)
                            .map(Agg::name),
                    )
                    .collect();
                query.order_by = self.output_keys(rng, &outputs);
            }
        }
        query
    }

    fn output_keys(&self, rng: &mut StdRng, outputs: &[String]) -> Vec<(String, bool)> {
        let keys = *[0, 1, 1, 2].choose(rng).unwrap();
        let mut keys: Vec<(String, bool)> = (0..keys)
            .map(|_| (outputs.choose(rng).unwrap().clone(), rng.random_bool(0.5)))
            .collect();
        dedup_keys(&mut keys);
        keys
    }

    fn columns(&self, rng: &mut StdRng, count: usize) -> Vec<usize> {
        let all: Vec<usize> = (0..COLUMNS.len()).collect();
        all.choose_multiple(rng, count).copied().collect()
    }

    /// A key lookup alone: some of the columns, maybe a page of it.
    fn lookup(&self, rng: &mut StdRng) -> Query {
        let columns = rng.random_bool(0.5).then(|| {
            let count = rng.random_range(1..4);
            self.columns(rng, count)
        });
        Query {
            columns,
            filters: vec![Pred {
                column: 0,
                op: "eq",
                values: vec![self.key(rng)],
            }],
            shape: Shape::Rows,
            order_by: Vec::new(),
            limit: None,
            page: rng.random_bool(0.2).then(|| rng.random_range(0..3)),
            page_size: None,
            upper: false,
        }
    }

    /// A key of the table, or sometimes one that is not there.
    fn key(&self, rng: &mut StdRng) -> Cell {
        match self.value(rng, 0) {
            Some(Cell::Int(k)) if rng.random_bool(0.9) => Cell::Int(k),
            _ => Cell::Int(rng.random_range(-(1i128 << 43)..(1i128 << 43))),
        }
    }

    fn key_pred(&self, rng: &mut StdRng) -> Pred {
        let key = |rng: &mut StdRng| self.key(rng);
        if rng.random_bool(0.7) {
            Pred {
                column: 0,
                op: "eq",
                values: vec![key(rng)],
            }
        } else {
            let values = (0..rng.random_range(1..6)).map(|_| key(rng)).collect();
            Pred {
                column: 0,
                op: "in",
                values,
            }
        }
    }

    fn pred(&self, rng: &mut StdRng, column: usize) -> Option<Pred> {
        let kind = COLUMNS[column].kind;
        let mut ops = vec![
            "eq",
            "eq",
            "neq",
            "gt",
            "gte",
            "lt",
            "lte",
            "in",
            "in",
            "is_null",
            "is_not_null",
        ];
        if kind.is_string() {
            ops.extend(["like", "like", "ilike", "ilike"]);
        }
        let op = *ops.choose(rng).unwrap();
        let values = match op {
            "is_null" | "is_not_null" => Vec::new(),
            "in" => (0..rng.random_range(1..5))
                .filter_map(|_| self.value(rng, column))
                .collect(),
            "like" | "ilike" => {
                let Cell::Str(s) = self.value(rng, column)? else {
                    return None;
                };
                vec![Cell::Str(pattern(rng, &s, op == "ilike"))]
            }
            _ => vec![self.value(rng, column)?],
        };
        if values.is_empty() && !op.starts_with("is_") {
            return None;
        }
        Some(Pred { column, op, values })
    }

    /// A comparison on a column that is not a string (see [`Sampler::query`]'s `dictionary`).
    fn comparison(&self, rng: &mut StdRng) -> Option<Pred> {
        let columns: Vec<usize> = (0..COLUMNS.len())
            .filter(|&c| !COLUMNS[c].kind.is_string())
            .collect();
        let column = *columns.choose(rng).unwrap();
        let op = *["eq", "neq", "gt", "gte", "lt", "lte"].choose(rng).unwrap();
        Some(Pred {
            column,
            op,
            values: vec![self.value(rng, column)?],
        })
    }

    /// A grouped shape; `dictionary`: by dictionary-encoded string columns, with the
    /// aggregates the dictionary route computes (counts, sums and averages of numbers, and
    /// the minimum and maximum of integers and decimals).
    fn grouped(&self, rng: &mut StdRng, dictionary: bool) -> Shape {
        let n = COLUMNS.len();
        let groupable: Vec<usize> = (1..n)
            .filter(|&c| match COLUMNS[c].kind {
                Kind::Pool(_) | Kind::Cased => true,
                kind => !dictionary && kind.groupable(),
            })
            .collect();
        let count = *[1, 1, 1, 2].choose(rng).unwrap();
        let group: Vec<usize> = groupable.choose_multiple(rng, count).copied().collect();
        let mut aggs: Vec<Agg> = Vec::new();
        for _ in 0..rng.random_range(0..4) {
            let column = rng.random_range(1..n);
            let kind = COLUMNS[column].kind;
            let mut ops = match dictionary {
                false => vec!["count", "min", "max"],
                true if kind.is_integer() || kind == Kind::Dec => vec!["count", "min", "max"],
                true => vec!["count"],
            };
            if kind.is_numeric() {
                ops.extend(["sum", "sum", "avg", "avg"]);
            }
            let op = *ops.choose(rng).unwrap();
            let column = (op != "count" || rng.random_bool(0.7)).then_some(column);
            let alias = match rng.random_range(0..10) {
                0 => Some(format!("total {}", aggs.len())),
                1 => Some(format!("é \"q\" {}", aggs.len())),
                _ => None,
            };
            let agg = Agg { op, column, alias };
            let name = agg.name();
            let taken = group.iter().any(|&c| COLUMNS[c].name == name)
                || aggs.iter().any(|a| a.name() == name);
            if !taken {
                aggs.push(agg);
            }
        }
        if aggs.is_empty() {
            // What Strata does without aggregations: count(*) as `count`.
            aggs.push(Agg {
                op: "count",
                column: None,
                alias: None,
            });
        }
        let mut having = Vec::new();
        if rng.random_bool(0.3) {
            let a = aggs.choose(rng).unwrap();
            let op = *["gt", "gte", "lt", "lte"].choose(rng).unwrap();
            let value = match (a.op, a.column) {
                ("count", _) => Some(Cell::Int(rng.random_range(0..20_000))),
                // Literals are cast to the aggregate's type: a uint64 sum takes no negative.
                ("sum", Some(c)) if COLUMNS[c].kind == Kind::U64 => {
                    Some(Cell::Int(rng.random_range(0..u64::MAX.into())))
                }
                ("sum", Some(c)) if COLUMNS[c].kind.is_integer() => {
                    Some(Cell::Int(rng.random_range(-1_000_000_000..1_000_000_000)))
                }
                ("sum", Some(c)) if COLUMNS[c].kind == Kind::Dec => Some(Cell::Str(format!(
                    "{}.00",
                    rng.random_range(-1_000_000..1_000_000)
                ))),
                ("sum" | "avg", Some(_)) => Some(Cell::Float(rng.random_range(-1e6..1e6))),
                (_, Some(c)) => self.value(rng, c),
                _ => None,
            };
            if let Some(value) = value {
                having.push(Having {
                    output: a.name(),
                    op,
                    value,
                    sql_type: a.sql_type(),
                });
            }
        }
        if rng.random_bool(0.15) {
            let c = *group.choose(rng).unwrap();
            if let Some(value) = self.value(rng, c) {
                having.push(Having {
                    output: COLUMNS[c].name.to_owned(),
                    op: "neq",
                    value,
                    sql_type: COLUMNS[c].kind.sql_type(),
                });
            }
        }
        Shape::Grouped {
            group,
            aggs,
            having,
        }
    }
}

/// Keeps the first key of each name.
fn dedup_keys(keys: &mut Vec<(String, bool)>) {
    let mut seen = std::collections::HashSet::new();
    keys.retain(|(n, _)| seen.insert(n.clone()));
}

/// A LIKE pattern matching `value` (usually): a prefix, a suffix, a middle part or the
/// whole value with one character as `_`; special characters escaped with `\`.
fn pattern(rng: &mut StdRng, value: &str, ilike: bool) -> String {
    let chars: Vec<char> = value.chars().collect();
    let escape = |part: &[char]| -> String {
        part.iter()
            .flat_map(|&c| match c {
                '%' | '_' | '\\' => vec!['\\', c],
                c => vec![c],
            })
            .collect()
    };
    let len = chars.len();
    let cut = if len == 0 {
        0
    } else {
        rng.random_range(0..=len)
    };
    let pattern = match rng.random_range(0..4) {
        0 => format!("{}%", escape(&chars[..cut])),
        1 => format!("%{}", escape(&chars[cut..])),
        2 => {
            let end = if cut == len {
                len
            } else {
                rng.random_range(cut..=len)
            };
            format!("%{}%", escape(&chars[cut..end]))
        }
        _ if len > 0 => {
            let at = rng.random_range(0..len);
            format!("{}_{}", escape(&chars[..at]), escape(&chars[at + 1..]))
        }
        _ => String::new(),
    };
    if !ilike {
        return pattern;
    }
    match rng.random_range(0..3) {
        0 => pattern.to_uppercase(),
        1 => pattern.to_lowercase(),
        _ => pattern,
    }
}
