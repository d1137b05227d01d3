//! Validation: a [`QueryRequest`] checked against a dataset's schema becomes a [`Plan`] with
//! resolved columns and literals already cast to their column's type. Everything a caller
//! can get wrong is found here, before any index or engine runs, so every execution path
//! sees the same typed plan (and `severity eq 3.0` means exactly `severity eq 3`).

use arrow::array::{ArrayRef, Float64Array, Int64Array, StringArray, UInt64Array};
use arrow::compute::{CastOptions, cast_with_options};
use arrow::datatypes::{DataType, Schema};
use datafusion::common::ScalarValue;
use serde_json::Value;
use strata_queryd_api::{Aggregation, OrderBy, Predicate, QueryRequest};

use crate::error::QueryError;

/// Rows per page when the request names none (datap-rs's default).
pub const DEFAULT_PAGE_SIZE: u64 = 1000;

/// A validated query.
#[derive(Clone, Debug)]
pub struct Plan {
    /// ANDed row filters.
    pub filters: Vec<Filter>,
    pub shape: Shape,
    /// Resolved sort keys (empty: the default order of the shape).
    pub order_by: Vec<SortKey>,
    pub limit: Option<u64>,
    /// 1-based.
    pub page: u64,
    pub page_size: u64,
}

#[derive(Clone, Debug)]
pub enum Shape {
    /// Rows of these dataset columns, in this order.
    Rows { columns: Vec<usize> },
    /// Distinct combinations of these columns.
    Distinct { columns: Vec<usize> },
    /// One row per group: group columns, then aggregates; `having` filters groups.
    Grouped {
        group_by: Vec<usize>,
        aggregates: Vec<Aggregate>,
        having: Vec<HavingFilter>,
    },
}

#[derive(Clone, Debug)]
pub struct Filter {
    pub column: usize,
    pub op: FilterOp,
}

#[derive(Clone, Debug)]
pub enum FilterOp {
    Cmp(CmpOp, ScalarValue),
    Like {
        pattern: String,
        case_insensitive: bool,
    },
    /// Non-empty.
    In(Vec<ScalarValue>),
    IsNull,
    IsNotNull,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CmpOp {
    Eq,
    NotEq,
    Gt,
    GtEq,
    Lt,
    LtEq,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AggOp {
    Count,
    Sum,
    Avg,
    Min,
    Max,
}

#[derive(Clone, Debug)]
pub struct Aggregate {
    pub op: AggOp,
    /// `None`: count(*).
    pub column: Option<usize>,
    pub alias: String,
    /// Type of the result column.
    pub data_type: DataType,
}

/// A `having` filter on an output column (group column or aggregate alias).
#[derive(Clone, Debug)]
pub struct HavingFilter {
    pub output: String,
    pub op: FilterOp,
}

/// A sort key on an output-visible name (dataset column, group column or alias).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SortKey {
    pub name: String,
    pub descending: bool,
}

impl Plan {
    /// Rows to skip for the requested page.
    pub fn offset(&self) -> u64 {
        (self.page - 1).saturating_mul(self.page_size)
    }

    /// Rows to return for the requested page after `limit`, as (skip, fetch).
    pub fn window(&self) -> (u64, u64) {
        let skip = self.offset();
        let fetch = match self.limit {
            Some(limit) => self.page_size.min(limit.saturating_sub(skip)),
            None => self.page_size,
        };
        (skip, fetch)
    }

    /// Whether the plan returns rows of all `width` dataset columns, in dataset order: the
    /// resident batches and their schema are then used as they are, not projected.
    pub fn rows_of_every_column(&self, width: usize) -> bool {
        matches!(&self.shape, Shape::Rows { columns }
            if columns.len() == width && columns.iter().enumerate().all(|(i, &c)| i == c))
    }

    /// Names of the output columns, in order.
    pub fn output_names(&self, schema: &Schema) -> Vec<String> {
        let name = |i: &usize| schema.field(*i).name().clone();
        match &self.shape {
            Shape::Rows { columns } | Shape::Distinct { columns } => {
                columns.iter().map(name).collect()
            }
            Shape::Grouped {
                group_by,
                aggregates,
                ..
            } => group_by
                .iter()
                .map(name)
                .chain(aggregates.iter().map(|a| a.alias.clone()))
                .collect(),
        }
    }
}

/// Validates `request` against `schema`. `max_page_size` clamps `page_size`.
pub fn plan(
    request: &QueryRequest,
    schema: &Schema,
    max_page_size: u64,
) -> Result<Plan, QueryError> {
    let filters = request
        .predicates
        .iter()
        .map(|p| {
            let column = resolve(schema, &p.col)?;
            let op = filter_op(p, schema.field(column).data_type())?;
            Ok(Filter { column, op })
        })
        .collect::<Result<Vec<_>, QueryError>>()?;

    let grouped = !request.group_by.is_empty();
    if !grouped && !request.aggregations.is_empty() {
        return Err(bad("aggregations require group_by"));
    }
    if !grouped && !request.having.is_empty() {
        return Err(bad("having requires group_by"));
    }
    if grouped && request.distinct {
        return Err(bad("distinct cannot be combined with group_by"));
    }

    let shape = if grouped {
        grouped_shape(request, schema)?
    } else {
        let columns = match &request.columns {
            None => (0..schema.fields().len()).collect(),
            Some(names) if names.is_empty() => return Err(bad("columns must not be empty")),
            Some(names) => {
                let mut columns: Vec<usize> = Vec::with_capacity(names.len());
                for name in names {
                    let c = resolve(schema, name)?;
                    // A column listed twice is returned once (a JSON object has one value per key).
                    if !columns.contains(&c) {
                        columns.push(c);
                    }
                }
                columns
            }
        };
        if request.distinct {
            Shape::Distinct { columns }
        } else {
            Shape::Rows { columns }
        }
    };

    let order_by = request
        .order_by
        .iter()
        .map(|o| sort_key(o, &shape, schema))
        .collect::<Result<Vec<_>, _>>()?;

    Ok(Plan {
        filters,
        shape,
        order_by,
        limit: request.limit,
        page: request.page.unwrap_or(1).max(1),
        page_size: request
            .page_size
            .unwrap_or(DEFAULT_PAGE_SIZE)
            .clamp(1, max_page_size.max(1)),
    })
}

fn bad(message: impl Into<String>) -> QueryError {
    QueryError::BadRequest(message.into())
}

/// A dataset column by exact name, else by a unique case-insensitive match.
pub fn resolve(schema: &Schema, name: &str) -> Result<usize, QueryError> {
    if let Ok(i) = schema.index_of(name) {
        return Ok(i);
    }
    let mut matches = schema
        .fields()
        .iter()
        .enumerate()
        .filter(|(_, f)| f.name().eq_ignore_ascii_case(name));
    match (matches.next(), matches.next()) {
        (Some((i, _)), None) => Ok(i),
        _ => Err(bad(format!("unknown column: {name}"))),
    }
}

fn grouped_shape(request: &QueryRequest, schema: &Schema) -> Result<Shape, QueryError> {
    let mut group_by: Vec<usize> = Vec::new();
    for name in &request.group_by {
        let c = resolve(schema, name)?;
        if group_by.contains(&c) {
            return Err(bad(format!("group_by lists {name:?} twice")));
        }
        group_by.push(c);
    }
    let aggregates = if request.aggregations.is_empty() {
        vec![Aggregate {
            op: AggOp::Count,
            column: None,
            alias: "count".into(),
            data_type: DataType::Int64,
        }]
    } else {
        request
            .aggregations
            .iter()
            .map(|a| aggregate(a, schema))
            .collect::<Result<Vec<_>, _>>()?
    };
    let mut names: Vec<&str> = group_by
        .iter()
        .map(|&c| schema.field(c).name().as_str())
        .collect();
    for a in &aggregates {
        if names.contains(&a.alias.as_str()) {
            return Err(bad(format!(
                "output column {:?} appears twice: give the aggregation another alias",
                a.alias
            )));
        }
        names.push(&a.alias);
    }
    let having = request
        .having
        .iter()
        .map(|p| {
            let data_type = if let Some(a) = aggregates.iter().find(|a| a.alias == p.col) {
                a.data_type.clone()
            } else {
                let c = resolve(schema, &p.col)?;
                if !group_by.contains(&c) {
                    return Err(bad(format!(
                        "having: unknown column: {} (must be a group_by column or aggregation alias)",
                        p.col
                    )));
                }
                schema.field(c).data_type().clone()
            };
            let output = aggregates
                .iter()
                .find(|a| a.alias == p.col)
                .map(|a| a.alias.clone())
                .unwrap_or_else(|| {
                    // Resolved above, so the group column exists.
                    resolve(schema, &p.col)
                        .map(|c| schema.field(c).name().clone())
                        .unwrap_or_else(|_| p.col.clone())
                });
            Ok(HavingFilter {
                output,
                op: filter_op(p, &data_type)?,
            })
        })
        .collect::<Result<Vec<_>, QueryError>>()?;
    Ok(Shape::Grouped {
        group_by,
        aggregates,
        having,
    })
}

fn aggregate(a: &Aggregation, schema: &Schema) -> Result<Aggregate, QueryError> {
    let op = match a.op.to_ascii_lowercase().as_str() {
        "count" => AggOp::Count,
        "sum" => AggOp::Sum,
        "avg" => AggOp::Avg,
        "min" => AggOp::Min,
        "max" => AggOp::Max,
        other => {
            return Err(bad(format!(
                "unknown aggregation op {other:?} (expected count|sum|avg|min|max)"
            )));
        }
    };
    let column = match &a.col {
        Some(name) => Some(resolve(schema, name)?),
        None if op == AggOp::Count => None,
        None => return Err(bad(format!("aggregation {:?} requires a 'col'", a.op))),
    };
    let column_type = column.map(|c| logical_value_type(schema.field(c).data_type()));
    let data_type = match (op, &column_type) {
        (AggOp::Count, _) => DataType::Int64,
        (AggOp::Sum | AggOp::Avg, Some(t)) if !t.is_numeric() => {
            return Err(bad(format!(
                "aggregation {:?} needs a numeric column, {:?} is {t}",
                a.op,
                a.col.as_deref().unwrap_or_default()
            )));
        }
        (AggOp::Avg, _) => DataType::Float64,
        (AggOp::Sum, Some(t)) if t.is_floating() => DataType::Float64,
        (AggOp::Sum, Some(DataType::UInt64)) => DataType::UInt64,
        (AggOp::Sum, Some(t)) if t.is_integer() => DataType::Int64,
        // DataFusion's (and DuckDB's) widening: ten more digits, the same scale.
        (AggOp::Sum, Some(DataType::Decimal128(precision, scale))) => {
            DataType::Decimal128((*precision + 10).min(38), *scale)
        }
        (_, Some(t)) => t.clone(),
        (_, None) => DataType::Null,
    };
    let alias = match (&a.alias, &a.col) {
        (Some(alias), _) if alias.is_empty() => return Err(bad("an alias must not be empty")),
        (Some(alias), _) => alias.clone(),
        (None, None) => "count".into(),
        (None, Some(_)) => format!(
            "{}_{}",
            a.op.to_ascii_lowercase(),
            column
                .map(|c| schema.field(c).name().clone())
                .unwrap_or_default()
        ),
    };
    Ok(Aggregate {
        op,
        column,
        alias,
        data_type,
    })
}

/// The value type of a possibly dictionary-encoded type.
pub fn logical_value_type(data_type: &DataType) -> DataType {
    match data_type {
        DataType::Dictionary(_, value) => (**value).clone(),
        other => other.clone(),
    }
}

fn sort_key(o: &OrderBy, shape: &Shape, schema: &Schema) -> Result<SortKey, QueryError> {
    let descending = match o.dir.as_deref().map(str::to_ascii_lowercase).as_deref() {
        None | Some("asc") => false,
        Some("desc") => true,
        Some(other) => {
            return Err(bad(format!(
                "order_by direction must be 'asc' or 'desc' (got {other:?})"
            )));
        }
    };
    let name = match shape {
        Shape::Rows { .. } => schema.field(resolve(schema, &o.col)?).name().clone(),
        Shape::Distinct { columns } => {
            let c = resolve(schema, &o.col)?;
            if !columns.contains(&c) {
                return Err(bad(format!(
                    "order_by {:?}: a distinct query can only be ordered by its columns",
                    o.col
                )));
            }
            schema.field(c).name().clone()
        }
        Shape::Grouped {
            group_by,
            aggregates,
            ..
        } => {
            if let Some(a) = aggregates.iter().find(|a| a.alias == o.col) {
                a.alias.clone()
            } else {
                match resolve(schema, &o.col) {
                    Ok(c) if group_by.contains(&c) => schema.field(c).name().clone(),
                    _ => {
                        return Err(bad(format!(
                            "unknown column: {} (must be a group_by column or aggregation alias)",
                            o.col
                        )));
                    }
                }
            }
        }
    };
    Ok(SortKey { name, descending })
}

fn filter_op(p: &Predicate, data_type: &DataType) -> Result<FilterOp, QueryError> {
    let value = || match &p.val {
        None | Some(Value::Null) => Err(bad(format!("'{}' requires a value", p.op))),
        Some(v) => literal(v, data_type, &p.col),
    };
    let cmp = |op| Ok(FilterOp::Cmp(op, value()?));
    match p.op.as_str() {
        "eq" => cmp(CmpOp::Eq),
        "neq" => cmp(CmpOp::NotEq),
        "gt" => cmp(CmpOp::Gt),
        "gte" => cmp(CmpOp::GtEq),
        "lt" => cmp(CmpOp::Lt),
        "lte" => cmp(CmpOp::LtEq),
        "like" | "ilike" => {
            if !is_string(data_type) {
                return Err(bad(format!(
                    "'{}' needs a string column, {:?} is {data_type}",
                    p.op, p.col
                )));
            }
            match &p.val {
                Some(Value::String(pattern)) => Ok(FilterOp::Like {
                    pattern: pattern.clone(),
                    case_insensitive: p.op == "ilike",
                }),
                _ => Err(bad(format!("'{}' needs a string pattern", p.op))),
            }
        }
        "in" => match &p.val {
            Some(Value::Array(items)) if !items.is_empty() => Ok(FilterOp::In(
                items
                    .iter()
                    .map(|v| {
                        if v.is_null() {
                            Err(bad("'in' values must not be null (use is_null)"))
                        } else {
                            literal(v, data_type, &p.col)
                        }
                    })
                    .collect::<Result<_, _>>()?,
            )),
            _ => Err(bad("'in' needs a non-empty array")),
        },
        "is_null" | "is_not_null" => match &p.val {
            None | Some(Value::Null) => Ok(if p.op == "is_null" {
                FilterOp::IsNull
            } else {
                FilterOp::IsNotNull
            }),
            Some(_) => Err(bad(format!("'{}' takes no value", p.op))),
        },
        other => Err(bad(format!("unknown operator: {other}"))),
    }
}

fn is_string(data_type: &DataType) -> bool {
    matches!(
        logical_value_type(data_type),
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View
    )
}

/// A JSON literal as a value of `data_type`, or a 400 saying why it is not one.
///
/// Numbers go to numeric columns (an integral float such as `3.0` to an integer column),
/// strings to string, temporal and decimal columns (parsed strictly), booleans to boolean
/// columns. Nothing else converts: `"2"` is not an integer.
pub fn literal(
    value: &Value,
    data_type: &DataType,
    column: &str,
) -> Result<ScalarValue, QueryError> {
    let target = logical_value_type(data_type);
    let mismatch = || {
        bad(format!(
            "value {value} does not fit column {column:?} of type {target}"
        ))
    };
    let array: ArrayRef = match value {
        // The common case needs no conversion.
        Value::Number(n) if target == DataType::Int64 && n.is_i64() => {
            return Ok(ScalarValue::Int64(n.as_i64()));
        }
        Value::Bool(b) if target == DataType::Boolean => {
            return Ok(ScalarValue::Boolean(Some(*b)));
        }
        Value::Number(n) if target.is_integer() => {
            if let Some(i) = n.as_i64() {
                std::sync::Arc::new(Int64Array::from(vec![i]))
            } else if let Some(u) = n.as_u64() {
                std::sync::Arc::new(UInt64Array::from(vec![u]))
            } else {
                let f = n.as_f64().ok_or_else(mismatch)?;
                if f.fract() != 0.0 || !f.is_finite() || f.abs() > 9.007_199_254_740_992e15 {
                    return Err(bad(format!(
                        "value {value} is not an integer, column {column:?} is {target}"
                    )));
                }
                std::sync::Arc::new(Int64Array::from(vec![f as i64]))
            }
        }
        Value::Number(n) if target.is_floating() || is_decimal(&target) => {
            if is_decimal(&target) {
                std::sync::Arc::new(StringArray::from(vec![n.to_string()]))
            } else {
                std::sync::Arc::new(Float64Array::from(vec![n.as_f64().ok_or_else(mismatch)?]))
            }
        }
        Value::String(s) if is_string(&target) => {
            return Ok(match target {
                DataType::LargeUtf8 => ScalarValue::LargeUtf8(Some(s.clone())),
                DataType::Utf8View => ScalarValue::Utf8View(Some(s.clone())),
                _ => ScalarValue::Utf8(Some(s.clone())),
            });
        }
        Value::String(s) if target.is_temporal() || is_decimal(&target) => {
            std::sync::Arc::new(StringArray::from(vec![s.as_str()]))
        }
        _ => return Err(mismatch()),
    };
    let options = CastOptions {
        safe: false,
        ..Default::default()
    };
    let cast = cast_with_options(&array, &target, &options).map_err(|_| mismatch())?;
    ScalarValue::try_from_array(&cast, 0).map_err(|_| mismatch())
}

fn is_decimal(data_type: &DataType) -> bool {
    matches!(
        data_type,
        DataType::Decimal32(..)
            | DataType::Decimal64(..)
            | DataType::Decimal128(..)
            | DataType::Decimal256(..)
    )
}

#[cfg(test)]
mod tests {
    use arrow::datatypes::{Field, TimeUnit};
    use serde_json::json;

    use super::*;

    fn schema() -> Schema {
        Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("severity", DataType::Int32, true),
            Field::new("score", DataType::Float64, true),
            Field::new("name", DataType::Utf8, true),
            Field::new("ts", DataType::Timestamp(TimeUnit::Microsecond, None), true),
            Field::new("day", DataType::Date32, true),
            Field::new("ok", DataType::Boolean, true),
        ])
    }

    fn request(v: Value) -> QueryRequest {
        serde_json::from_value(v).unwrap()
    }

    fn err(v: Value) -> String {
        match plan(&request(v), &schema(), 100_000) {
            Err(QueryError::BadRequest(m)) => m,
            other => panic!("expected a bad request, got {other:?}"),
        }
    }

    #[test]
    fn integral_floats_equal_integers_and_strings_do_not() {
        let s = schema();
        let three = literal(&json!(3), s.field(1).data_type(), "severity").unwrap();
        let three_f = literal(&json!(3.0), s.field(1).data_type(), "severity").unwrap();
        assert_eq!(three, ScalarValue::Int32(Some(3)));
        assert_eq!(three, three_f);
        assert!(literal(&json!(3.5), s.field(1).data_type(), "severity").is_err());
        assert!(literal(&json!("3"), s.field(1).data_type(), "severity").is_err());
        assert!(literal(&json!(1i64 << 40), s.field(1).data_type(), "severity").is_err());
        assert!(literal(&json!(true), s.field(0).data_type(), "id").is_err());
        assert!(literal(&json!(3), s.field(3).data_type(), "name").is_err());
    }

    #[test]
    fn double_literals_parse_exactly() {
        // serde_json's default parse reads this one a unit in the last place off.
        let body = r#"{"predicates": [{"col": "score", "op": "eq", "val": 0.9313448545125593}]}"#;
        let request: QueryRequest = serde_json::from_str(body).unwrap();
        let p = plan(&request, &schema(), 10).unwrap();
        let FilterOp::Cmp(CmpOp::Eq, ScalarValue::Float64(Some(value))) = &p.filters[0].op else {
            panic!("{:?}", p.filters[0].op);
        };
        assert_eq!(value.to_bits(), 0.9313448545125593f64.to_bits());
    }

    #[test]
    fn temporal_literals_parse_strictly() {
        let s = schema();
        let ts = literal(&json!("2024-01-02T06:00:00"), s.field(4).data_type(), "ts").unwrap();
        assert_eq!(
            ts,
            ScalarValue::TimestampMicrosecond(Some(1_704_175_200_000_000), None)
        );
        let spaced = literal(&json!("2024-01-02 06:00:00"), s.field(4).data_type(), "ts").unwrap();
        assert_eq!(ts, spaced);
        assert!(literal(&json!("yesterday"), s.field(4).data_type(), "ts").is_err());
        let day = literal(&json!("2024-02-29"), s.field(5).data_type(), "day").unwrap();
        assert_eq!(day, ScalarValue::Date32(Some(19_782)));
        assert!(literal(&json!(19782), s.field(5).data_type(), "day").is_err());
    }

    #[test]
    fn shapes_defaults_and_paging() {
        let p = plan(&request(json!({})), &schema(), 100_000).unwrap();
        assert!(matches!(&p.shape, Shape::Rows { columns } if columns.len() == 7));
        assert_eq!((p.page, p.page_size), (1, DEFAULT_PAGE_SIZE));
        let p = plan(
            &request(json!({"page": 0, "page_size": 1_000_000, "limit": 150_000})),
            &schema(),
            100_000,
        )
        .unwrap();
        assert_eq!((p.page, p.page_size), (1, 100_000));
        let p = plan(
            &request(json!({"page": 2, "page_size": 100_000, "limit": 150_000})),
            &schema(),
            100_000,
        )
        .unwrap();
        assert_eq!(p.window(), (100_000, 50_000));
        let p = plan(&request(json!({"page_size": 0})), &schema(), 100_000).unwrap();
        assert_eq!(p.page_size, 1);
        let p = plan(
            &request(json!({"group_by": ["severity"], "aggregations": [
                {"op": "SUM", "col": "score"}, {"op": "count", "col": "id"}, {"op": "avg", "col": "id", "alias": "a"}
            ]})),
            &schema(),
            100_000,
        )
        .unwrap();
        assert_eq!(
            p.output_names(&schema()),
            vec!["severity", "sum_score", "count_id", "a"]
        );
        let p = plan(&request(json!({"columns": ["ID", "id"]})), &schema(), 10).unwrap();
        assert!(matches!(&p.shape, Shape::Rows { columns } if columns == &[0]));
    }

    #[test]
    fn refusals_name_the_problem() {
        assert!(err(json!({"columns": ["nope"]})).contains("unknown column: nope"));
        assert!(
            err(json!({"predicates": [{"col": "id", "op": "between", "val": 1}]}))
                .contains("unknown operator")
        );
        assert!(
            err(json!({"predicates": [{"col": "id", "op": "in", "val": []}]}))
                .contains("non-empty")
        );
        assert!(
            err(json!({"predicates": [{"col": "id", "op": "eq"}]})).contains("requires a value")
        );
        assert!(
            err(json!({"predicates": [{"col": "id", "op": "like", "val": "1%"}]}))
                .contains("string column")
        );
        assert!(err(json!({"aggregations": [{"op": "count"}]})).contains("require group_by"));
        assert!(err(json!({"having": [{"col": "id", "op": "gt", "val": 1}]})).contains("group_by"));
        assert!(err(json!({"group_by": ["name"], "distinct": true})).contains("distinct"));
        assert!(
            err(json!({"group_by": ["name"], "aggregations": [{"op": "median", "col": "id"}]}))
                .contains("median")
        );
        assert!(
            err(json!({"group_by": ["name"], "aggregations": [{"op": "sum", "col": "name"}]}))
                .contains("numeric")
        );
        assert!(
            err(json!({"group_by": ["name"], "order_by": [{"col": "id"}]}))
                .contains("group_by column")
        );
        assert!(err(json!({"order_by": [{"col": "id", "dir": "down"}]})).contains("direction"));
        assert!(
            err(json!({"predicates": [{"col": "severity", "op": "eq", "val": "3"}]}))
                .contains("does not fit")
        );
    }
}
