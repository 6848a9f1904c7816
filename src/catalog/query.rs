//! Client query strings parsed into a typed `QuerySpec`, checked against the resource.

use super::access::FieldMask;
use super::cursor::Cursor;
use super::Resource;
use crate::source::select::CmpOp;
use crate::source::{Param, Value};

/// Largest number of values an `in` or `nin` filter may carry.
pub const MAX_IN_VALUES: usize = 100;

/// Longest filter value, in bytes (a `LIKE` pattern past what a database takes would be its
/// error, not the client's).
pub const MAX_VALUE_BYTES: usize = 4000;

/// How much one list request may ask of the database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueryLimits {
    /// Filter parameters.
    pub max_filter_terms: usize,
    /// Values the filters bind, `in` values each counted.
    pub max_bound_parameters: usize,
    /// Parameters one `prefix` filter binds in the source's dialect (two where the pattern is
    /// matched twice, under the collation and then exactly: MySQL, T-SQL).
    pub prefix_parameters: usize,
}

/// A filter condition with its values already in legacy form.
#[derive(Debug, Clone)]
pub enum FilterKind {
    /// `eq ne lt lte gt gte`.
    Compare(CmpOp, Param),
    /// One of a comma-separated list (`\,` a comma inside a value, `\\` a backslash).
    In(Vec<Param>),
    /// None of a list written as `In`'s (a null matches no value filter, as with `ne`).
    NotIn(Vec<Param>),
    /// Text starts with these bytes (in the column's code page).
    Prefix(Vec<u8>),
    /// Is null (`true`) or is not null (`false`), sentinels included.
    Null(bool),
}

impl FilterKind {
    /// The operator as a client names it (`eq` for `field=` too).
    pub fn operator(&self) -> &'static str {
        match self {
            FilterKind::Compare(op, _) => match op {
                CmpOp::Eq => "eq",
                CmpOp::Ne => "ne",
                CmpOp::Lt => "lt",
                CmpOp::Lte => "lte",
                CmpOp::Gt => "gt",
                CmpOp::Gte => "gte",
            },
            FilterKind::In(_) => "in",
            FilterKind::NotIn(_) => "nin",
            FilterKind::Prefix(_) => "prefix",
            FilterKind::Null(_) => "null",
        }
    }

    /// How many parameters it binds under `limits` (a `prefix` may bind its pattern twice).
    pub fn bound_values(&self, limits: &QueryLimits) -> usize {
        match self {
            FilterKind::Compare(..) => 1,
            FilterKind::Prefix(_) => limits.prefix_parameters,
            FilterKind::In(values) | FilterKind::NotIn(values) => values.len(),
            FilterKind::Null(_) => 0,
        }
    }

    /// Why a second filter of this operator on one field is refused, and what to send instead.
    fn repeat_advice(&self) -> &'static str {
        match self {
            FilterKind::Compare(CmpOp::Ne, _) => {
                "to exclude several values, send them together with `nin`"
            }
            FilterKind::Compare(CmpOp::Lt | CmpOp::Lte | CmpOp::Gt | CmpOp::Gte, _) => {
                "one bound per operator; a range is two operators (`gte` and `lt`)"
            }
            FilterKind::In(_) | FilterKind::NotIn(_) => "send every value in one list",
            FilterKind::Compare(CmpOp::Eq, _) => "give it once (`field=` is `field[eq]=`)",
            FilterKind::Prefix(_) | FilterKind::Null(_) => "give it once",
        }
    }
}

/// A client filter on one field.
#[derive(Debug, Clone)]
pub struct Filter {
    /// Field index.
    pub field: usize,
    /// Condition.
    pub kind: FilterKind,
}

/// A client's list query, validated against its resource.
#[derive(Debug, Clone)]
pub struct QuerySpec {
    /// Filters, all of which must hold.
    pub filters: Vec<Filter>,
    /// Sort terms: field index and descending (key terms appended by the planner).
    pub sort: Vec<(usize, bool)>,
    /// Fields to return; all when absent.
    pub fields: Option<Vec<usize>>,
    /// Page size.
    pub limit: usize,
    /// Keyset position.
    pub cursor: Option<Cursor>,
    /// `count=exact|estimated`: the page carries the listing's `total`.
    pub count: Option<CountMode>,
}

/// How a listing's `total` is counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CountMode {
    /// `COUNT(*)` of the rows the filters and row policies let through.
    Exact,
    /// The database's statistics where it keeps a cheap estimate and the listing is
    /// unfiltered; counted exactly otherwise.
    Estimated,
}

impl QuerySpec {
    /// The request as the cache knows it: two spellings of the same query (order of
    /// parameters, percent-encoding, `status` or `status[eq]`) give the same text. Compact and
    /// written without formatting machinery: it is built on every cached read.
    pub fn cache_key(&self) -> String {
        use std::fmt::Write as _;
        let mut out = self.filters_key();
        out.push('|');
        for (field, descending) in &self.sort {
            let _ = write!(out, "{}{field},", if *descending { "-" } else { "" });
        }
        out.push('|');
        match &self.fields {
            Some(fields) => fields.iter().for_each(|f| {
                let _ = write!(out, "{f},");
            }),
            None => out.push('*'),
        }
        let _ = write!(out, "|{}|", self.limit);
        if let Some(cursor) = &self.cursor {
            out.push_str(&cursor.encode());
        }
        match self.count {
            Some(CountMode::Exact) => out.push_str("|count=exact"),
            Some(CountMode::Estimated) => out.push_str("|count=estimated"),
            None => {}
        }
        out
    }

    /// The filters, canonical (order-free), each with its parsed value.
    pub fn filters_key(&self) -> String {
        use std::fmt::Write as _;
        let mut filters: Vec<String> = self
            .filters
            .iter()
            .map(|f| {
                let mut key = String::with_capacity(16);
                let _ = write!(key, "{}", f.field);
                match &f.kind {
                    FilterKind::Compare(op, param) => {
                        key.push_str(op.sql());
                        push_key_value(&mut key, &param.value);
                    }
                    FilterKind::In(params) | FilterKind::NotIn(params) => {
                        key.push_str(f.kind.operator());
                        for param in params {
                            push_key_value(&mut key, &param.value);
                        }
                    }
                    FilterKind::Prefix(bytes) => {
                        key.push_str("prefix");
                        push_key_value(&mut key, &Value::Text(bytes.clone()));
                    }
                    FilterKind::Null(is_null) => {
                        key.push_str(if *is_null { "null" } else { "set" })
                    }
                }
                key
            })
            .collect();
        filters.sort_unstable();
        let mut out = String::with_capacity(32 + filters.iter().map(String::len).sum::<usize>());
        for filter in &filters {
            out.push_str(filter);
            out.push(';');
        }
        out
    }

    /// Every row in the default order, `limit` at a time.
    pub fn unfiltered(limit: usize) -> Self {
        Self {
            filters: Vec::new(),
            sort: Vec::new(),
            fields: None,
            limit,
            cursor: None,
            count: None,
        }
    }
}

/// Appends a legacy value to a cache key: its kind, its length and its content, so that no two
/// values (nor two lists of values) give the same text.
pub fn push_key_value(out: &mut String, value: &Value) {
    use std::fmt::Write as _;
    let (tag, text): (char, std::borrow::Cow<'_, str>) = match value {
        Value::Null => ('n', "".into()),
        Value::Int(i) => ('i', i.to_string().into()),
        Value::Float(f) => ('f', f.to_bits().to_string().into()),
        Value::Decimal(d) => ('d', d.as_str().into()),
        Value::Date(d) => ('D', d.as_str().into()),
        Value::Timestamp(t) => ('T', t.as_str().into()),
        Value::Bool(b) => ('b', if *b { "1" } else { "0" }.into()),
        Value::Text(bytes) => match std::str::from_utf8(bytes) {
            Ok(text) => ('s', text.into()),
            // Code-page bytes: hex, which no UTF-8 text with the `x` tag can spell.
            Err(_) => (
                'x',
                bytes
                    .iter()
                    .map(|b| format!("{b:02x}"))
                    .collect::<String>()
                    .into(),
            ),
        },
    };
    let _ = write!(out, "{tag}{}:", text.len());
    out.push_str(&text);
}

/// Where a bad parameter was written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Place {
    /// The query string.
    Query,
    /// A key in the path.
    Path,
    /// A request header.
    Header,
}

impl std::fmt::Display for Place {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Place::Query => "query parameter",
            Place::Path => "path key",
            Place::Header => "header",
        })
    }
}

/// A bad parameter, named with where it was written.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{place} `{parameter}` {message}")]
pub struct QueryError {
    /// Query string, path or header.
    pub place: Place,
    /// The parameter as the client wrote it.
    pub parameter: String,
    /// What is wrong with it.
    pub message: String,
}

fn bad(parameter: &str, message: impl Into<String>) -> QueryError {
    QueryError {
        place: Place::Query,
        parameter: parameter.to_string(),
        message: message.into(),
    }
}

/// Splits and percent-decodes a query string (`+` is a space). A value that does not decode
/// is blamed on its parameter's name; a name that does not decode, on the name as written.
pub fn pairs(query: &str) -> Result<Vec<(String, String)>, QueryError> {
    let decode = |raw: &str| -> Option<String> {
        let spaced = raw.replace('+', " ");
        percent_encoding::percent_decode_str(&spaced)
            .decode_utf8()
            .map(|s| s.into_owned())
            .ok()
    };
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            let name = decode(k)
                .ok_or_else(|| bad(k, "is a name that is not valid percent-encoded UTF-8"))?;
            let value = decode(v)
                .ok_or_else(|| bad(&name, "has a value that is not valid percent-encoded UTF-8"))?;
            Ok((name, value))
        })
        .collect()
}

/// Parses a list query for `resource`; fields `mask` hides are unknown to it.
pub fn parse(resource: &Resource, query: &str, mask: &FieldMask) -> Result<QuerySpec, QueryError> {
    let mut spec = QuerySpec::unfiltered(resource.default_limit);
    let mut seen = std::collections::HashSet::new();
    // One filter per field and operator: a second `id[gt]` is a mistake, not an AND (a range
    // is two operators, `gte` and `lt`); `status` and `status[eq]` are one operator.
    let mut filtered: Vec<(usize, &'static str)> = Vec::new();
    let mut cursor_text = None;
    let limits = resource.query_limits;
    let mut bound = 0;
    for (key, value) in pairs(query)? {
        let special = ["limit", "cursor", "sort", "fields", "count"].contains(&key.as_str());
        if special && !seen.insert(key.clone()) {
            return Err(bad(&key, "is given more than once"));
        }
        match key.as_str() {
            "limit" => spec.limit = parse_limit(resource, &value)?,
            "cursor" => cursor_text = Some(value),
            "sort" => spec.sort = parse_sort(resource, &value, mask)?,
            "fields" => spec.fields = Some(parse_fields(resource, &value, mask)?),
            "count" => {
                spec.count = Some(match value.as_str() {
                    "exact" => CountMode::Exact,
                    "estimated" => CountMode::Estimated,
                    _ => return Err(bad("count", "must be `exact` or `estimated`")),
                })
            }
            _ => {
                if spec.filters.len() == limits.max_filter_terms {
                    return Err(bad(
                        &key,
                        format!(
                            "is one filter too many: at most {} filters per request",
                            limits.max_filter_terms
                        ),
                    ));
                }
                let filter = parse_filter(resource, &key, &value, mask)?;
                let pair = (filter.field, filter.kind.operator());
                if filtered.contains(&pair) {
                    return Err(bad(
                        &key,
                        format!(
                            "is given more than once: one `{}` filter on `{}` per request ({})",
                            pair.1,
                            resource.fields[filter.field].name,
                            filter.kind.repeat_advice()
                        ),
                    ));
                }
                filtered.push(pair);
                bound += filter.kind.bound_values(&limits);
                if bound > limits.max_bound_parameters {
                    return Err(bad(
                        &key,
                        format!(
                            "brings the filters' values to {bound}; at most {} per request",
                            limits.max_bound_parameters
                        ),
                    ));
                }
                spec.filters.push(filter);
            }
        }
    }
    if let Some(text) = cursor_text {
        let cursor = Cursor::decode(&text)
            .ok_or_else(|| bad("cursor", "is not a cursor this API issued"))?;
        spec.cursor = Some(cursor);
    }
    Ok(spec)
}

/// A `limit` value: a whole number from 1 to the resource's `max_limit`.
pub(crate) fn parse_limit(resource: &Resource, value: &str) -> Result<usize, QueryError> {
    let n: usize = value
        .parse()
        .map_err(|_| bad("limit", "must be a whole number"))?;
    if n == 0 || n > resource.max_limit {
        return Err(bad(
            "limit",
            format!("must be between 1 and {}", resource.max_limit),
        ));
    }
    Ok(n)
}

fn parse_sort(
    resource: &Resource,
    value: &str,
    mask: &FieldMask,
) -> Result<Vec<(usize, bool)>, QueryError> {
    let mut terms: Vec<(usize, bool)> = Vec::new();
    for term in value.split(',') {
        let (descending, name) = match term.strip_prefix('-') {
            Some(n) => (true, n),
            None => (false, term),
        };
        let i = resource.visible_field(name, mask).ok_or_else(|| {
            bad(
                "sort",
                format!(
                    "names unknown field `{name}`; fields: {}",
                    resource.field_names(mask)
                ),
            )
        })?;
        if !resource.fields[i].sortable {
            return Err(bad("sort", format!("field `{name}` is not sortable")));
        }
        if terms.iter().any(|(j, _)| *j == i) {
            return Err(bad("sort", format!("names `{name}` twice")));
        }
        terms.push((i, descending));
    }
    Ok(terms)
}

fn parse_fields(
    resource: &Resource,
    value: &str,
    mask: &FieldMask,
) -> Result<Vec<usize>, QueryError> {
    // A row always carries its key, so a client can address it (and the schema requires it).
    let mut out = resource.key.clone();
    for name in value.split(',') {
        let i = resource.visible_field(name, mask).ok_or_else(|| {
            bad(
                "fields",
                format!(
                    "names unknown field `{name}`; fields: {}",
                    resource.field_names(mask)
                ),
            )
        })?;
        if !out.contains(&i) {
            out.push(i);
        }
    }
    Ok(out)
}

fn parse_filter(
    resource: &Resource,
    key: &str,
    value: &str,
    mask: &FieldMask,
) -> Result<Filter, QueryError> {
    let (name, op) = match key.split_once('[') {
        Some((name, rest)) => {
            let op = rest
                .strip_suffix(']')
                .ok_or_else(|| bad(key, "is malformed; write `field[op]=value`"))?;
            (name, op)
        }
        None => (key, "eq"),
    };
    let compare = match op {
        "eq" => Some(CmpOp::Eq),
        "ne" => Some(CmpOp::Ne),
        "lt" => Some(CmpOp::Lt),
        "lte" => Some(CmpOp::Lte),
        "gt" => Some(CmpOp::Gt),
        "gte" => Some(CmpOp::Gte),
        "in" | "nin" | "prefix" | "null" => None,
        other => {
            return Err(bad(
                key,
                format!("uses unknown operator `{other}`; operators: eq, ne, lt, lte, gt, gte, in, nin, prefix, null"),
            ))
        }
    };
    let index = resource.visible_field(name, mask).ok_or_else(|| {
        bad(
            key,
            format!(
                "is not a parameter or field; fields: {}",
                resource.field_names(mask)
            ),
        )
    })?;
    let field = &resource.fields[index];
    if !field.filterable {
        return Err(bad(key, format!("field `{name}` is not filterable")));
    }
    let is_range = matches!(
        compare,
        Some(CmpOp::Lt | CmpOp::Lte | CmpOp::Gt | CmpOp::Gte)
    );
    if is_range && !field.order_preserving {
        return Err(bad(
            key,
            format!("field `{name}` is stored in a form that does not sort like its values (a code map or MM/DD/YYYY text), so range filters cannot use the legacy index; use eq, ne, in or nin"),
        ));
    }
    // A text value longer than its column can never match: refused before the database sees it.
    let fits = |v: &str| -> Result<(), QueryError> {
        if v.len() > MAX_VALUE_BYTES {
            return Err(bad(key, format!("is longer than {MAX_VALUE_BYTES} bytes")));
        }
        match field.limits.max_chars {
            Some(max)
                if field.field_type == crate::config::FieldType::String
                    && field.codes.is_empty()
                    && v.chars().count() > max as usize =>
            {
                Err(bad(
                    key,
                    format!("is longer than the column's {max} characters"),
                ))
            }
            _ => Ok(()),
        }
    };
    let convert = |v: &str| {
        fits(v)?;
        field.to_legacy(v).map_err(|m| bad(key, m))
    };
    let kind = match (compare, op) {
        (Some(cmp), _) => FilterKind::Compare(cmp, convert(value)?),
        (None, "null") => FilterKind::Null(match value {
            "true" => true,
            "false" => false,
            _ => return Err(bad(key, "must be true or false")),
        }),
        (None, "in" | "nin") => {
            let values = split_in_values(value).map_err(|m| bad(key, m))?;
            if values.len() > MAX_IN_VALUES {
                return Err(bad(key, format!("lists more than {MAX_IN_VALUES} values")));
            }
            let params = values
                .iter()
                .map(|v| convert(v))
                .collect::<Result<_, _>>()?;
            match op {
                "in" => FilterKind::In(params),
                _ => FilterKind::NotIn(params),
            }
        }
        _ => {
            if field.field_type != crate::config::FieldType::String || !field.codes.is_empty() {
                return Err(bad(
                    key,
                    format!("prefix filters apply to text fields; `{name}` is not one"),
                ));
            }
            fits(value)?;
            FilterKind::Prefix(field.legacy_prefix(value).map_err(|m| bad(key, m))?)
        }
    };
    Ok(Filter { field: index, kind })
}

/// The values of an `in` or `nin` filter: separated by commas, where `\,` is a comma inside a value and
/// `\\` a backslash (percent-decoding has already turned `%2C` into a comma, so it cannot
/// tell the two apart). Any other backslash is a mistake, refused rather than guessed.
pub fn split_in_values(list: &str) -> Result<Vec<String>, String> {
    let mut values = vec![String::new()];
    let mut chars = list.chars().enumerate();
    while let Some((at, c)) = chars.next() {
        match c {
            ',' => values.push(String::new()),
            '\\' => match chars.next() {
                Some((_, escaped @ (',' | '\\'))) => {
                    if let Some(last) = values.last_mut() {
                        last.push(escaped);
                    }
                }
                other => {
                    let found = other.map_or("the end".to_string(), |(_, c)| format!("`{c}`"));
                    return Err(format!(
                        "has a backslash before {found} at character {}: in an `in` list `\\,` is \
                         a comma inside a value and `\\\\` a backslash",
                        at + 1
                    ));
                }
            },
            _ => {
                if let Some(last) = values.last_mut() {
                    last.push(c);
                }
            }
        }
    }
    Ok(values)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(values: &[Value]) -> String {
        let mut out = String::new();
        values.iter().for_each(|v| push_key_value(&mut out, v));
        out
    }

    #[test]
    fn in_lists_split_at_commas_that_are_not_escaped() {
        let split = |s: &str| split_in_values(s).unwrap();
        assert_eq!(split("a,b"), ["a", "b"]);
        assert_eq!(split(r"Smith\, Jones,b"), ["Smith, Jones", "b"]);
        assert_eq!(split(r"a\\,b"), ["a\\", "b"]);
        assert_eq!(split(r"a\\\,b"), [r"a\,b"]);
        assert_eq!(split(""), [""]);
        assert_eq!(split(","), ["", ""]);
        let error = split_in_values(r"a\b").unwrap_err();
        assert!(error.contains("before `b` at character 2"), "{error}");
        let error = split_in_values("a,b\\").unwrap_err();
        assert!(error.contains("before the end at character 4"), "{error}");
    }

    #[test]
    fn nin_and_prefix_count_the_parameters_they_bind() {
        let param = |i| Param {
            value: Value::Int(i),
            column_type: crate::source::ColumnType::Integer,
        };
        let limits = |prefix_parameters| QueryLimits {
            max_filter_terms: 32,
            max_bound_parameters: 500,
            prefix_parameters,
        };
        let nin = FilterKind::NotIn(vec![param(1), param(2), param(3)]);
        assert_eq!((nin.operator(), nin.bound_values(&limits(1))), ("nin", 3));
        let prefix = FilterKind::Prefix(b"Co".to_vec());
        assert_eq!(prefix.bound_values(&limits(1)), 1);
        assert_eq!(prefix.bound_values(&limits(2)), 2);
        assert!(FilterKind::Compare(CmpOp::Ne, param(1))
            .repeat_advice()
            .contains("`nin`"));
        assert!(!FilterKind::Compare(CmpOp::Gt, param(1))
            .repeat_advice()
            .contains("`in`"));
    }

    #[test]
    fn cache_key_values_never_run_into_each_other() {
        // Lengths keep lists apart: ["ab", "c"] is not ["a", "bc"].
        let text = |s: &str| Value::Text(s.as_bytes().to_vec());
        assert_ne!(key(&[text("ab"), text("c")]), key(&[text("a"), text("bc")]));
        // Kinds keep types apart; code-page bytes are not their hex spelled as text.
        assert_ne!(key(&[Value::Int(10)]), key(&[text("10")]));
        assert_ne!(key(&[Value::Text(vec![0xE9])]), key(&[text("e9")]));
        assert_eq!(
            key(&[Value::Null, Value::Bool(true)]),
            key(&[Value::Null, Value::Bool(true)])
        );
    }
}
