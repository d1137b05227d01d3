//! Random requests over the whole query language, each with its DuckDB equivalent.
//!
//! The SQL states Strata's documented semantics explicitly, so the oracle needs no
//! knowledge of Strata's code:
//! - without `order_by`, rows come in storage order: the oracle's table carries `_seq`
//!   (0 for rows of the base, else the version of the delta that wrote the row), and storage
//!   order is `_seq, id`;
//! - `asc` sorts nulls last, `desc` nulls first; ties are broken by the primary key (rows),
//!   by the distinct columns (distinct) or the group columns (grouped), ascending;
//! - `like`/`ilike`: `%`, `_`, and `\` escapes the next character; `ilike` folds case as
//!   Unicode's simple case folding does (σ, ς and Σ are one letter);
//! - integer sums are exact; one that does not fit the answer's type (`int64`, `uint64` for
//!   a `uint64` column) is a 422 `overflow`, never a wrapped number;
//! - averages are doubles; float sums and averages may differ in the last bits (another
//!   summation order), so those columns compare with a relative 1e-9.

use serde_json::{Map, Value, json};

use super::compare::{Cell, Mode};
use super::table::{COLUMNS, KEY, Kind};

/// The most rows a page may have (queryd's default `max_page_size`).
const MAX_PAGE_SIZE: u64 = 100_000;

#[derive(Clone, Debug)]
pub struct Query {
    /// Projection of a row or distinct query (`None`: every column).
    pub columns: Option<Vec<usize>>,
    pub filters: Vec<Pred>,
    pub shape: Shape,
    /// Output name, descending.
    pub order_by: Vec<(String, bool)>,
    pub limit: Option<u64>,
    pub page: Option<u64>,
    pub page_size: Option<u64>,
    /// Name columns in upper case in the request (names resolve case-insensitively).
    pub upper: bool,
}

#[derive(Clone, Debug)]
pub enum Shape {
    Rows,
    Distinct,
    Grouped {
        group: Vec<usize>,
        aggs: Vec<Agg>,
        having: Vec<Having>,
    },
}

#[derive(Clone, Debug)]
pub struct Pred {
    pub column: usize,
    pub op: &'static str,
    /// One value, several for `in`, none for the null tests, the pattern for `like`.
    pub values: Vec<Cell>,
}

#[derive(Clone, Debug)]
pub struct Agg {
    pub op: &'static str,
    pub column: Option<usize>,
    pub alias: Option<String>,
}

impl Agg {
    pub fn name(&self) -> String {
        match (&self.alias, self.column) {
            (Some(alias), _) => alias.clone(),
            (None, None) => "count".into(),
            (None, Some(c)) => format!("{}_{}", self.op, COLUMNS[c].name),
        }
    }

    fn kind(&self) -> Option<Kind> {
        self.column.map(|c| COLUMNS[c].kind)
    }

    /// How the aggregate's values compare: with a tolerance where floats were added.
    pub fn mode(&self) -> Mode {
        match (self.op, self.kind()) {
            ("avg", _) => Mode::Approx,
            ("sum", Some(k)) if k.is_float() => Mode::Approx,
            ("min" | "max", Some(Kind::F32)) => Mode::Float32,
            _ => Mode::Exact,
        }
    }

    /// The range an exact integer sum must fit (Strata's answer type).
    pub fn sum_range(&self) -> Option<(i128, i128)> {
        let kind = self.kind()?;
        (self.op == "sum" && kind.is_integer()).then(|| match kind {
            Kind::U64 => (0, u64::MAX.into()),
            _ => (i64::MIN.into(), i64::MAX.into()),
        })
    }

    fn sql(&self) -> String {
        match self.column {
            None => "count(*)".into(),
            Some(c) => format!("{}({})", self.op, ident(COLUMNS[c].name)),
        }
    }

    /// The DuckDB type a `having` literal on this aggregate is cast to.
    pub fn sql_type(&self) -> &'static str {
        match (self.op, self.kind()) {
            ("count", _) => "BIGINT",
            ("avg", _) => "DOUBLE",
            ("sum", Some(k)) if k.is_integer() => "HUGEINT",
            ("sum", Some(k)) if k.is_float() => "DOUBLE",
            ("sum", Some(_)) => "DECIMAL(38,2)",
            (_, Some(k)) => k.sql_type(),
            _ => "BIGINT",
        }
    }
}

#[derive(Clone, Debug)]
pub struct Having {
    pub output: String,
    pub op: &'static str,
    pub value: Cell,
    pub sql_type: &'static str,
}

/// What the test compares of one request.
pub struct Expected {
    /// Output names, in order.
    pub names: Vec<String>,
    /// Per output column: how its cells compare.
    pub modes: Vec<Mode>,
    /// Per output column: the range an integer sum must fit.
    pub ranges: Vec<Option<(i128, i128)>>,
}

impl Query {
    pub fn body(&self) -> Value {
        let name = |c: usize| {
            let name = COLUMNS[c].name;
            Value::from(if self.upper {
                name.to_uppercase()
            } else {
                name.to_owned()
            })
        };
        let mut body = Map::new();
        if let Some(columns) = &self.columns {
            body.insert("columns".into(), columns.iter().map(|&c| name(c)).collect());
        }
        if !self.filters.is_empty() {
            let preds: Vec<Value> = self
                .filters
                .iter()
                .map(|p| {
                    let mut pred = json!({"col": name(p.column), "op": p.op});
                    match p.op {
                        "is_null" | "is_not_null" => {}
                        "in" => pred["val"] = p.values.iter().map(Cell::to_json).collect(),
                        _ => pred["val"] = p.values[0].to_json(),
                    }
                    pred
                })
                .collect();
            body.insert("predicates".into(), preds.into());
        }
        match &self.shape {
            Shape::Rows => {}
            Shape::Distinct => {
                body.insert("distinct".into(), true.into());
            }
            Shape::Grouped {
                group,
                aggs,
                having,
            } => {
                body.insert("group_by".into(), group.iter().map(|&c| name(c)).collect());
                let aggs: Vec<Value> = aggs
                    .iter()
                    .map(|a| {
                        let mut agg = json!({"op": a.op});
                        if let Some(c) = a.column {
                            agg["col"] = name(c);
                        }
                        if let Some(alias) = &a.alias {
                            agg["alias"] = alias.clone().into();
                        }
                        agg
                    })
                    .collect();
                body.insert("aggregations".into(), aggs.into());
                if !having.is_empty() {
                    let having: Vec<Value> = having
                        .iter()
                        .map(|h| json!({"col": h.output, "op": h.op, "val": h.value.to_json()}))
                        .collect();
                    body.insert("having".into(), having.into());
                }
            }
        }
        if !self.order_by.is_empty() {
            let keys: Vec<Value> = self
                .order_by
                .iter()
                .map(|(n, desc)| json!({"col": n, "dir": if *desc { "desc" } else { "asc" }}))
                .collect();
            body.insert("order_by".into(), keys.into());
        }
        for (key, value) in [
            ("limit", self.limit),
            ("page", self.page),
            ("page_size", self.page_size),
        ] {
            if let Some(v) = value {
                body.insert(key.into(), v.into());
            }
        }
        Value::Object(body)
    }

    /// Rows skipped and returned by the requested page, after `limit`.
    pub fn window(&self) -> (u64, u64) {
        let page = self.page.unwrap_or(1).max(1);
        let size = self.page_size.unwrap_or(1000).clamp(1, MAX_PAGE_SIZE);
        let skip = (page - 1) * size;
        let fetch = match self.limit {
            Some(limit) => size.min(limit.saturating_sub(skip)),
            None => size,
        };
        (skip, fetch)
    }

    pub fn expected(&self) -> Expected {
        let projection = self.projection();
        match &self.shape {
            Shape::Grouped { group, aggs, .. } => Expected {
                names: group
                    .iter()
                    .map(|&c| COLUMNS[c].name.to_owned())
                    .chain(aggs.iter().map(Agg::name))
                    .collect(),
                modes: group
                    .iter()
                    .map(|&c| column_mode(c))
                    .chain(aggs.iter().map(Agg::mode))
                    .collect(),
                ranges: group
                    .iter()
                    .map(|_| None)
                    .chain(aggs.iter().map(Agg::sum_range))
                    .collect(),
            },
            _ => Expected {
                names: projection
                    .iter()
                    .map(|&c| COLUMNS[c].name.to_owned())
                    .collect(),
                modes: projection.iter().map(|&c| column_mode(c)).collect(),
                ranges: vec![None; projection.len()],
            },
        }
    }

    fn projection(&self) -> Vec<usize> {
        self.columns
            .clone()
            .unwrap_or_else(|| (0..COLUMNS.len()).collect())
    }

    /// The query without paging or `limit`, ordered: (SQL, parameters).
    pub fn sql(&self) -> (String, Vec<Value>) {
        let mut params = Vec::new();
        let mut conditions = Vec::new();
        for p in &self.filters {
            let column = ident(COLUMNS[p.column].name);
            let t = COLUMNS[p.column].kind.sql_type();
            let mut bind = |v: &Cell| {
                params.push(v.to_json());
                format!("CAST(? AS {t})")
            };
            conditions.push(match p.op {
                "is_null" => format!("{column} IS NULL"),
                "is_not_null" => format!("{column} IS NOT NULL"),
                "in" => {
                    let values: Vec<String> = p.values.iter().map(&mut bind).collect();
                    format!("{column} IN ({})", values.join(", "))
                }
                "like" => {
                    params.push(p.values[0].to_json());
                    format!("{column} LIKE ? ESCAPE '\\'")
                }
                // Strata's `ilike` folds case as Unicode's simple case folding does (σ, ς and
                // Σ are one letter); DuckDB's ILIKE lowercases, where final ς stays apart.
                // Lowercasing both sides and taking ς as σ is the folding for every letter
                // the generated strings hold.
                "ilike" => {
                    params.push(p.values[0].to_json());
                    format!(
                        "replace(lower({column}), 'ς', 'σ') LIKE replace(lower(?), 'ς', 'σ') ESCAPE '\\'"
                    )
                }
                op => format!("{column} {} {}", sql_op(op), bind(&p.values[0])),
            });
        }
        let filter = if conditions.is_empty() {
            String::new()
        } else {
            format!(" WHERE {}", conditions.join(" AND "))
        };
        let order = |keys: &[(String, bool)], tiebreak: &[String]| {
            let mut terms: Vec<String> = keys
                .iter()
                .map(|(n, desc)| {
                    format!(
                        "{} {}",
                        ident(n),
                        if *desc {
                            "DESC NULLS FIRST"
                        } else {
                            "ASC NULLS LAST"
                        }
                    )
                })
                .collect();
            for n in tiebreak {
                if !keys.iter().any(|(k, _)| k == n) {
                    terms.push(format!("{} ASC NULLS LAST", ident(n)));
                }
            }
            terms.join(", ")
        };
        let projection: Vec<String> = self
            .projection()
            .iter()
            .map(|&c| COLUMNS[c].name.to_owned())
            .collect();
        let select = projection
            .iter()
            .map(|n| ident(n))
            .collect::<Vec<_>>()
            .join(", ");
        let sql = match &self.shape {
            Shape::Rows if self.order_by.is_empty() => {
                format!(
                    "SELECT {select} FROM t{filter} ORDER BY _seq, {}",
                    ident(KEY)
                )
            }
            Shape::Rows => format!(
                "SELECT {select} FROM t{filter} ORDER BY {}",
                order(&self.order_by, &[KEY.to_owned()])
            ),
            Shape::Distinct => format!(
                "SELECT * FROM (SELECT DISTINCT {select} FROM t{filter}) ORDER BY {}",
                order(&self.order_by, &projection)
            ),
            Shape::Grouped {
                group,
                aggs,
                having,
            } => {
                let groups: Vec<String> =
                    group.iter().map(|&c| COLUMNS[c].name.to_owned()).collect();
                let group_list = groups
                    .iter()
                    .map(|n| ident(n))
                    .collect::<Vec<_>>()
                    .join(", ");
                let outputs: Vec<String> = groups
                    .iter()
                    .map(|n| ident(n))
                    .chain(
                        aggs.iter()
                            .map(|a| format!("{} AS {}", a.sql(), ident(&a.name()))),
                    )
                    .collect();
                let mut having_sql = Vec::new();
                for h in having {
                    params.push(h.value.to_json());
                    having_sql.push(format!(
                        "{} {} CAST(? AS {})",
                        ident(&h.output),
                        sql_op(h.op),
                        h.sql_type
                    ));
                }
                let having_sql = if having_sql.is_empty() {
                    String::new()
                } else {
                    format!(" WHERE {}", having_sql.join(" AND "))
                };
                format!(
                    "SELECT * FROM (SELECT {} FROM t{filter} GROUP BY {group_list}){having_sql} ORDER BY {}",
                    outputs.join(", "),
                    order(&self.order_by, &groups)
                )
            }
        };
        (sql, params)
    }
}

fn column_mode(c: usize) -> Mode {
    if COLUMNS[c].kind == Kind::F32 {
        Mode::Float32
    } else {
        Mode::Exact
    }
}

fn sql_op(op: &str) -> &'static str {
    match op {
        "eq" => "=",
        "neq" => "<>",
        "gt" => ">",
        "gte" => ">=",
        "lt" => "<",
        _ => "<=",
    }
}

/// A quoted SQL identifier.
pub fn ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}
