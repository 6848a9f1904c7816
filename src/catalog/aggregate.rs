//! Aggregates (`GET /{v}/{resource}/aggregate`): the request parsed against the resource and
//! the caller's mask, planned as a dialect-neutral `Aggregate` over the stored form, and the
//! groups it answers served in API shape.

use serde_json::{Map, Value as Json};

use super::access::FieldMask;
use super::query::{self, Place, QueryError, QuerySpec};
use super::Resource;
use crate::config::{DateFormat, FieldType};
use crate::source::select::{Aggregate, Bucket, Condition, GroupTerm, Measure, MeasureKind};
use crate::source::{ColumnType, Dialect, Value};

/// The most groups one answer holds when the request names no `limit` (or less, the
/// resource's `max_limit`).
pub const DEFAULT_GROUPS: usize = 1000;

/// The parameters an aggregate takes beside the list's filters.
pub const PARAMETERS: [&str; 7] = ["group_by", "count", "sum", "avg", "min", "max", "limit"];

/// How a date field is cut into groups.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DatePart {
    /// `YYYY`.
    Year,
    /// `YYYY-MM`.
    Month,
    /// `YYYY-MM-DD`.
    Day,
}

impl DatePart {
    fn name(self) -> &'static str {
        match self {
            DatePart::Year => "year",
            DatePart::Month => "month",
            DatePart::Day => "day",
        }
    }
}

/// One `group_by` term: a field, and for a date how it is bucketed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GroupSpec {
    /// Field index.
    pub field: usize,
    /// Day, month or year of a date field.
    pub part: Option<DatePart>,
    /// How the stored value is cut.
    pub bucket: Bucket,
}

/// A client's aggregate request, validated against its resource.
#[derive(Debug, Clone)]
pub struct AggregateSpec {
    /// The list's filters (`status=open`, `due_on[gte]=…`).
    pub filters: QuerySpec,
    /// Group terms, in the order given.
    pub groups: Vec<GroupSpec>,
    /// `count=true`: rows per group.
    pub count: bool,
    /// Fields summed.
    pub sum: Vec<usize>,
    /// Fields averaged.
    pub avg: Vec<usize>,
    /// Fields whose smallest value is given.
    pub min: Vec<usize>,
    /// Fields whose largest value is given.
    pub max: Vec<usize>,
    /// Most groups answered.
    pub limit: usize,
}

impl AggregateSpec {
    /// The request as the cache knows it: parsed, so spellings of one request share an entry.
    pub fn cache_key(&self) -> String {
        use std::fmt::Write as _;
        let mut out = self.filters.filters_key();
        out.push('|');
        for g in &self.groups {
            let _ = write!(out, "{}:{},", g.field, g.part.map_or("", DatePart::name));
        }
        let _ = write!(out, "|{}|", self.count);
        for list in [&self.sum, &self.avg, &self.min, &self.max] {
            for f in list {
                let _ = write!(out, "{f},");
            }
            out.push('|');
        }
        let _ = write!(out, "{}", self.limit);
        out
    }
}

fn bad(parameter: &str, message: impl Into<String>) -> QueryError {
    QueryError {
        place: Place::Query,
        parameter: parameter.to_string(),
        message: message.into(),
    }
}

/// Parses an aggregate request for `resource`; fields `mask` hides are unknown to it (a
/// hidden field is refused like a missing one, naming the parameter).
pub fn parse(
    resource: &Resource,
    raw_query: &str,
    mask: &FieldMask,
) -> Result<AggregateSpec, QueryError> {
    let mut rest: Vec<&str> = Vec::new();
    let mut spec = AggregateSpec {
        filters: QuerySpec::unfiltered(1),
        groups: Vec::new(),
        count: false,
        sum: Vec::new(),
        avg: Vec::new(),
        min: Vec::new(),
        max: Vec::new(),
        limit: DEFAULT_GROUPS.min(resource.max_limit),
    };
    let mut seen: Vec<String> = Vec::new();
    for raw in raw_query.split('&').filter(|p| !p.is_empty()) {
        let (name, value) = match query::pairs(raw)?.into_iter().next() {
            Some(pair) => pair,
            None => continue,
        };
        if !PARAMETERS.contains(&name.as_str()) {
            if ["cursor", "sort", "fields"].contains(&name.as_str()) {
                return Err(bad(
                    &name,
                    "does not apply to an aggregate (groups come sorted by their values)",
                ));
            }
            rest.push(raw);
            continue;
        }
        if seen.contains(&name) {
            return Err(bad(&name, "is given more than once"));
        }
        seen.push(name.clone());
        match name.as_str() {
            "group_by" => spec.groups = parse_groups(resource, &value, mask)?,
            "count" => {
                spec.count = match value.as_str() {
                    "true" => true,
                    "false" => false,
                    _ => return Err(bad("count", "must be true or false")),
                }
            }
            "limit" => spec.limit = query::parse_limit(resource, &value)?,
            op => {
                let fields = parse_measured(resource, op, &value, mask)?;
                match op {
                    "sum" => spec.sum = fields,
                    "avg" => spec.avg = fields,
                    "min" => spec.min = fields,
                    _ => spec.max = fields,
                }
            }
        }
    }
    if !spec.count
        && spec.sum.is_empty()
        && spec.avg.is_empty()
        && spec.min.is_empty()
        && spec.max.is_empty()
    {
        return Err(bad(
            "count",
            "or one of sum, avg, min, max is required: say what to compute per group",
        ));
    }
    spec.filters = query::parse(resource, &rest.join("&"), mask)?;
    Ok(spec)
}

/// Whether a field can be grouped: its type has an equality (not a binary float, not bytes).
pub fn groupable(resource: &Resource, index: usize) -> bool {
    let f = &resource.fields[index];
    f.field_type != FieldType::Number
        && !matches!(f.column_type, ColumnType::Binary | ColumnType::Float)
}

/// Whether a field can be summed and averaged: a whole number, a decimal or money.
pub fn summable(resource: &Resource, index: usize) -> bool {
    matches!(
        resource.fields[index].field_type,
        FieldType::Integer | FieldType::Decimal | FieldType::Money
    )
}

/// Whether a field has a smallest and largest value: its stored order is its API order.
pub fn orderable(resource: &Resource, index: usize) -> bool {
    let f = &resource.fields[index];
    f.order_preserving && f.column_type != ColumnType::Binary
}

fn parse_groups(
    resource: &Resource,
    value: &str,
    mask: &FieldMask,
) -> Result<Vec<GroupSpec>, QueryError> {
    let mut groups: Vec<GroupSpec> = Vec::new();
    for term in value.split(',') {
        let (name, part) = match term.split_once(':') {
            Some((name, part)) => {
                let part = match part {
                    "day" => DatePart::Day,
                    "month" => DatePart::Month,
                    "year" => DatePart::Year,
                    _ => {
                        return Err(bad(
                            "group_by",
                            format!("buckets `{name}` by `{part}`; buckets: day, month, year"),
                        ))
                    }
                };
                (name, Some(part))
            }
            None => (term, None),
        };
        let field = visible(resource, "group_by", name, mask)?;
        if !groupable(resource, field) {
            return Err(bad(
                "group_by",
                format!(
                    "names `{name}`, which cannot be grouped: a binary float or bytes has no \
                     exact equality"
                ),
            ));
        }
        if groups.iter().any(|g| g.field == field) {
            return Err(bad("group_by", format!("names `{name}` twice")));
        }
        let bucket = match part {
            None => Bucket::Value,
            Some(part) => date_bucket(resource, field, part)
                .map_err(|why| bad("group_by", format!("cannot bucket `{name}`: {why}")))?,
        };
        groups.push(GroupSpec {
            field,
            part,
            bucket,
        });
    }
    Ok(groups)
}

/// Whether a date field can be bucketed by `part` (`day`, `month`, `year`).
pub fn buckets(resource: &Resource, index: usize, part: &str) -> bool {
    let part = match part {
        "day" => DatePart::Day,
        "month" => DatePart::Month,
        _ => DatePart::Year,
    };
    date_bucket(resource, index, part).is_ok()
}

/// How a date field's stored form is cut into `part`s, keeping its order; `Err` says why it
/// cannot be.
fn date_bucket(resource: &Resource, index: usize, part: DatePart) -> Result<Bucket, String> {
    let f = &resource.fields[index];
    if f.field_type != FieldType::Date {
        return Err("day, month and year buckets apply to date fields".into());
    }
    let text = matches!(
        f.column_type,
        ColumnType::Char(_)
            | ColumnType::Varchar
            | ColumnType::NChar(_)
            | ColumnType::NVarchar
            | ColumnType::Oem(_)
    );
    let number = matches!(f.column_type, ColumnType::Integer | ColumnType::Decimal);
    Ok(match (f.date_format, part) {
        (DateFormat::MmDdYyyy, _) => {
            return Err(
                "it is stored as MM/DD/YYYY text, which does not sort like its dates, \
                        so no part of it is a day, month or year in order"
                    .into(),
            )
        }
        (DateFormat::Yyyymmdd | DateFormat::Cyymmdd, DatePart::Day) => Bucket::Value,
        (DateFormat::Yyyymmdd, part) if text => Bucket::TextPrefix(match part {
            DatePart::Year => 4,
            _ => 6,
        }),
        (DateFormat::Cyymmdd, part) if text => Bucket::TextPrefix(match part {
            DatePart::Year => 3,
            _ => 5,
        }),
        (DateFormat::Yyyymmdd | DateFormat::Cyymmdd, part) if number => {
            Bucket::Divide(match part {
                DatePart::Year => 10000,
                _ => 100,
            })
        }
        (DateFormat::Iso, part) => {
            let n = match part {
                DatePart::Year => 4,
                DatePart::Month => 7,
                DatePart::Day => 10,
            };
            match f.column_type {
                ColumnType::Date if part == DatePart::Day => Bucket::Value,
                ColumnType::Date | ColumnType::Timestamp => Bucket::DateText(n),
                _ if text => Bucket::TextPrefix(n),
                _ => return Err("its column is neither a date nor ISO text".into()),
            }
        }
        _ => return Err("its column is neither text nor a whole number".into()),
    })
}

fn visible(
    resource: &Resource,
    parameter: &str,
    name: &str,
    mask: &FieldMask,
) -> Result<usize, QueryError> {
    resource.visible_field(name, mask).ok_or_else(|| {
        bad(
            parameter,
            format!(
                "names unknown field `{name}`; fields: {}",
                resource.field_names(mask)
            ),
        )
    })
}

fn parse_measured(
    resource: &Resource,
    op: &str,
    value: &str,
    mask: &FieldMask,
) -> Result<Vec<usize>, QueryError> {
    let mut fields = Vec::new();
    for name in value.split(',') {
        let i = visible(resource, op, name, mask)?;
        let fits = match op {
            "sum" | "avg" => summable(resource, i),
            _ => orderable(resource, i),
        };
        if !fits {
            let why = match op {
                "sum" | "avg" => "only integer, decimal and money fields are summed",
                _ => {
                    "its stored form does not sort like its values (a code map or MM/DD/YYYY text)"
                }
            };
            return Err(bad(op, format!("names `{name}`: {why}")));
        }
        if fields.contains(&i) {
            return Err(bad(op, format!("names `{name}` twice")));
        }
        fields.push(i);
    }
    Ok(fields)
}

/// A planned aggregate: what to run, and where each asked value is in its rows.
#[derive(Debug, Clone)]
pub struct AggregatePlan {
    /// What to run (one group more than asked, to learn whether the answer was cut).
    pub aggregate: Aggregate,
    /// Decimal places of the scaled sum of each summed or averaged field (`None`: exact).
    scales: Vec<(usize, Option<u32>)>,
}

/// The decimal places a sum of `field` is served at.
fn served_scale(field: &super::Field) -> Option<u32> {
    match field.field_type {
        FieldType::Integer => Some(0),
        _ => field.scale.or(field.limits.digits.map(|(_, scale)| scale)),
    }
}

/// Whether `field` is a decimal the database keeps as a binary double (SQLite's DECIMAL).
fn binary_decimal(field: &super::Field, dialect: Dialect) -> bool {
    dialect == Dialect::Sqlite
        && matches!(field.column_type, ColumnType::Decimal | ColumnType::Money)
        && field.field_type != FieldType::Integer
}

/// Plans `spec` under `extra` conditions (the grant's row policies) for a source of `dialect`.
pub fn plan(
    resource: &Resource,
    spec: &AggregateSpec,
    extra: Vec<Condition>,
    dialect: Dialect,
) -> Result<AggregatePlan, QueryError> {
    let listing = super::plan::list(resource, &spec.filters, extra, &FieldMask::default(), "")?;
    let groups = spec
        .groups
        .iter()
        .map(|g| {
            let f = &resource.fields[g.field];
            // A binary double (SQLite's DECIMAL) is grouped at the field's scale: doubles that
            // differ only past it (`0.1 + 0.2`, `0.3`) are served as one value, so one group.
            let bucket = match g.bucket {
                Bucket::Value if binary_decimal(f, dialect) => {
                    Bucket::Round(served_scale(f).unwrap_or(4))
                }
                other => other,
            };
            GroupTerm {
                column: f.column.clone(),
                column_type: f.column_type,
                sentinels: f.null_sentinels(),
                bucket,
            }
        })
        .collect();
    let measure = |index: usize, kind: MeasureKind| {
        let f = &resource.fields[index];
        Measure {
            column: f.column.clone(),
            column_type: f.column_type,
            sentinels: f.null_sentinels(),
            kind,
        }
    };
    let mut measures = Vec::new();
    let mut scales = Vec::new();
    for &i in spec.sum.iter().chain(&spec.avg) {
        if scales.iter().any(|(j, _)| *j == i) {
            continue;
        }
        let f = &resource.fields[i];
        // A binary double (SQLite's DECIMAL, a float column) is summed as whole numbers of
        // its last decimal place, exactly.
        let binary = f.column_type == ColumnType::Float || binary_decimal(f, dialect);
        let scaled =
            (binary && f.field_type != FieldType::Integer).then(|| served_scale(f).unwrap_or(4));
        scales.push((i, scaled));
        measures.push(measure(i, MeasureKind::Sum { scaled }));
        measures.push(measure(i, MeasureKind::Count));
    }
    for &i in &spec.min {
        measures.push(measure(i, MeasureKind::Min));
    }
    for &i in &spec.max {
        measures.push(measure(i, MeasureKind::Max));
    }
    Ok(AggregatePlan {
        aggregate: Aggregate {
            relation: resource.relation.clone(),
            filter: listing.select.filter,
            groups,
            measures,
            limit: spec.limit + 1,
        },
        scales,
    })
}

/// The answer: `{"data": [{"group": {...}, "count": n, "sum": {...}, "avg": {...},
/// "min": {...}, "max": {...}}], "truncated": bool}`, each key present when asked for.
pub fn render(
    resource: &Resource,
    spec: &AggregateSpec,
    plan: &AggregatePlan,
    rows: &[Vec<Value>],
) -> Json {
    let truncated = rows.len() > spec.limit;
    let data: Vec<Json> = rows
        .iter()
        .take(spec.limit)
        .map(|row| render_group(resource, spec, plan, row))
        .collect();
    serde_json::json!({ "data": data, "truncated": truncated })
}

fn render_group(
    resource: &Resource,
    spec: &AggregateSpec,
    plan: &AggregatePlan,
    row: &[Value],
) -> Json {
    let null = Value::Null;
    let at = |i: usize| row.get(i).unwrap_or(&null);
    let mut out = Map::new();
    let mut group = Map::new();
    for (i, g) in spec.groups.iter().enumerate() {
        let f = &resource.fields[g.field];
        group.insert(f.name.clone(), group_value(f, g, at(i)));
    }
    out.insert("group".into(), Json::Object(group));
    let mut next = spec.groups.len();
    if spec.count {
        out.insert("count".into(), number(at(next)));
    }
    next += 1;
    let mut sums = Map::new();
    let mut avgs = Map::new();
    for &(i, scaled) in &plan.scales {
        let f = &resource.fields[i];
        let scale = served_scale(f);
        let sum = decimal_of(at(next), scaled);
        let counted = match at(next + 1) {
            Value::Int(n) => *n,
            _ => 0,
        };
        next += 2;
        if spec.sum.contains(&i) {
            let served = sum.map(|(m, places)| decimal_text(m, places, scale.unwrap_or(places)));
            sums.insert(f.name.clone(), served.map_or(Json::Null, Json::String));
        }
        if spec.avg.contains(&i) {
            let served = sum
                .filter(|_| counted > 0)
                .map(|(m, places)| average(m, places, counted, scale.unwrap_or(places) + 2));
            avgs.insert(f.name.clone(), served.map_or(Json::Null, Json::String));
        }
    }
    if !spec.sum.is_empty() {
        out.insert("sum".into(), Json::Object(sums));
    }
    if !spec.avg.is_empty() {
        out.insert("avg".into(), Json::Object(avgs));
    }
    for (key, fields) in [("min", &spec.min), ("max", &spec.max)] {
        if fields.is_empty() {
            continue;
        }
        let mut values = Map::new();
        for &i in fields {
            let f = &resource.fields[i];
            values.insert(f.name.clone(), f.read(at(next)));
            next += 1;
        }
        out.insert(key.into(), Json::Object(values));
    }
    Json::Object(out)
}

fn number(value: &Value) -> Json {
    match value {
        Value::Int(n) => Json::from(*n),
        Value::Decimal(d) => d.parse::<i64>().map_or(Json::Null, Json::from),
        _ => Json::Null,
    }
}

/// A group's value in API shape: a plain group is read like the field (codes served as
/// their values); a date bucket as `YYYY`, `YYYY-MM` or `YYYY-MM-DD`.
fn group_value(field: &super::Field, group: &GroupSpec, value: &Value) -> Json {
    if *value == Value::Null {
        return Json::Null;
    }
    let Some(part) = group.part else {
        return field.read(value);
    };
    if group.bucket == Bucket::Value {
        return field.read(value);
    }
    let text = match value {
        Value::Int(n) => n.to_string(),
        Value::Text(bytes) => String::from_utf8_lossy(bytes).trim().to_string(),
        Value::Decimal(d) | Value::Date(d) | Value::Timestamp(d) => d.clone(),
        _ => return Json::Null,
    };
    let served = match (field.date_format, group.bucket) {
        (_, Bucket::DateText(_)) => Some(text),
        (DateFormat::Iso, _) => Some(text),
        // Stored text that is no date (legacy garbage, not only digits) is no bucket either.
        (DateFormat::Yyyymmdd, _) if text.bytes().all(|b| b.is_ascii_digit()) => {
            let width = if part == DatePart::Year { 4 } else { 6 };
            let digits = format!("{text:0>width$}");
            Some(match part {
                DatePart::Year => digits,
                _ => format!("{}-{}", &digits[..4], &digits[4..]),
            })
        }
        (DateFormat::Yyyymmdd, _) => None,
        (DateFormat::Cyymmdd, _) => {
            // C is the century past 1900: CYY is the year less 1900.
            let n: i64 = text.parse().unwrap_or(-1);
            match part {
                DatePart::Year if n >= 0 => Some(format!("{:04}", 1900 + n)),
                _ if n >= 0 => Some(format!("{:04}-{:02}", 1900 + n / 100, n % 100)),
                _ => None,
            }
        }
        (DateFormat::MmDdYyyy, _) => None,
    };
    served.map_or(Json::Null, Json::String)
}

/// A summed value as a whole number and its decimal places.
fn decimal_of(value: &Value, scaled: Option<u32>) -> Option<(i128, u32)> {
    let text = match value {
        Value::Null => return None,
        Value::Int(n) => n.to_string(),
        Value::Decimal(d) => d.clone(),
        Value::Text(bytes) => String::from_utf8_lossy(bytes).trim().to_string(),
        Value::Float(f) => format!("{f}"),
        _ => return None,
    };
    let (negative, body) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text.as_str()),
    };
    let (int, frac) = body.split_once('.').unwrap_or((body, ""));
    let mantissa: i128 = format!("0{int}{frac}").parse().ok()?;
    let mantissa = if negative { -mantissa } else { mantissa };
    Some(match scaled {
        // Whole numbers of the last place: the point goes back in.
        Some(places) if frac.is_empty() => (mantissa, places),
        _ => (mantissa, frac.len() as u32),
    })
}

/// `mantissa` × 10^-`places` written with exactly `scale` places (rounded half away from zero).
fn decimal_text(mantissa: i128, places: u32, scale: u32) -> String {
    crate::source::memory::scaled_text(rescale(mantissa, places, scale), scale)
}

fn rescale(mantissa: i128, from: u32, to: u32) -> i128 {
    if to >= from {
        mantissa.saturating_mul(10i128.saturating_pow(to - from))
    } else {
        let divisor = 10i128.saturating_pow(from - to);
        let (q, r) = (mantissa / divisor, mantissa % divisor);
        if r.abs() * 2 >= divisor {
            q + mantissa.signum()
        } else {
            q
        }
    }
}

/// The mean of `count` values summing to `mantissa` × 10^-`places`, at `scale` places.
fn average(mantissa: i128, places: u32, count: i64, scale: u32) -> String {
    // One more place than served, then rounded half away from zero.
    let numerator = rescale(mantissa, places, scale + 1);
    let quotient = numerator / i128::from(count);
    decimal_text(quotient, scale + 1, scale)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_keep_their_scale_and_averages_round_half_away_from_zero() {
        assert_eq!(decimal_text(123450, 2, 2), "1234.50");
        assert_eq!(decimal_text(-5, 2, 2), "-0.05");
        assert_eq!(decimal_text(1234, 0, 2), "1234.00");
        assert_eq!(decimal_text(12345, 3, 2), "12.35");
        assert_eq!(average(100, 2, 3, 4), "0.3333");
        assert_eq!(average(200, 2, 3, 4), "0.6667");
        assert_eq!(average(-200, 2, 3, 4), "-0.6667");
        assert_eq!(decimal_of(&Value::Int(30), Some(2)), Some((30, 2)));
        assert_eq!(
            decimal_of(&Value::Decimal("12.5".into()), None),
            Some((125, 1))
        );
    }
}
