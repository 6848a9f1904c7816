//! JSON schemas of fields, rows, pages and problems, exactly as Portico renders them.

use crate::source::ColumnType;
use utoipa::openapi::schema::{
    AdditionalProperties, ArrayBuilder, KnownFormat, ObjectBuilder, Ref, Schema, SchemaFormat, Type,
};
use utoipa::openapi::RefOr;

use indexmap::IndexMap;

use crate::catalog::{Field, Resource};
use crate::config::FieldType;

/// Component name of a resource's row schema (`Job` for `jobs`).
pub fn row_name(resource: &Resource) -> String {
    pascal(&singular(&resource.name))
}

/// Component name of a resource's page schema (`JobPage`).
pub fn page_name(resource: &Resource) -> String {
    format!("{}Page", row_name(resource))
}

/// `jobs` → `job`, `categories` → `category`; other names stay as they are.
pub fn singular(name: &str) -> String {
    if let Some(stem) = name.strip_suffix("ies") {
        format!("{stem}y")
    } else if let Some(stem) = name.strip_suffix('s').filter(|s| !s.ends_with('s')) {
        stem.to_string()
    } else {
        name.to_string()
    }
}

/// `job_operations` → `JobOperations`.
pub fn pascal(name: &str) -> String {
    name.split(['_', '-'])
        .map(|part| {
            let mut chars = part.chars();
            chars
                .next()
                .map(|c| c.to_ascii_uppercase().to_string() + chars.as_str())
                .unwrap_or_default()
        })
        .collect()
}

/// The schema of one field's API value; keys are never null, other fields may be.
pub fn field(field: &Field, masked_by: Option<&str>) -> Schema {
    if field.field_type == FieldType::Money {
        return money(field, masked_by);
    }
    let (kind, format, pattern, note) = match field.field_type {
        FieldType::String => (Type::String, None, None, None),
        FieldType::Integer => (
            Type::Integer,
            Some(SchemaFormat::KnownFormat(KnownFormat::Int64)),
            None,
            None,
        ),
        FieldType::Number => (
            Type::Number,
            Some(SchemaFormat::KnownFormat(KnownFormat::Double)),
            None,
            None,
        ),
        FieldType::Decimal | FieldType::Money => (
            Type::String,
            Some(SchemaFormat::Custom("decimal".into())),
            Some(r"^-?[0-9]+(\.[0-9]+)?$"),
            Some("An exact decimal, written as a string so no digit is lost."),
        ),
        FieldType::Boolean => (Type::Boolean, None, None, None),
        FieldType::Date => (
            Type::String,
            Some(SchemaFormat::KnownFormat(KnownFormat::Date)),
            None,
            None,
        ),
        FieldType::Datetime if field.column_type == ColumnType::TimestampOffset => (
            Type::String,
            Some(SchemaFormat::KnownFormat(KnownFormat::DateTime)),
            Some(
                r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?[+-][0-9]{2}:[0-9]{2}$",
            ),
            Some("A date and time with its UTC offset."),
        ),
        FieldType::Datetime => (
            Type::String,
            Some(SchemaFormat::Custom("local-date-time".into())),
            Some(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?$"),
            Some("A date and time without offset, as the legacy database keeps it."),
        ),
    };
    let description = [
        field.description.as_deref(),
        note,
        masked_by
            .map(|scope| format!("Present only for tokens with the scope `{scope}`."))
            .as_deref(),
    ]
    .into_iter()
    .flatten()
    .collect::<Vec<_>>()
    .join(" ");
    let types: Vec<Type> = if field.is_key {
        vec![kind]
    } else {
        vec![kind, Type::Null]
    };
    let mut builder = ObjectBuilder::new()
        .schema_type(
            types
                .into_iter()
                .collect::<utoipa::openapi::schema::SchemaType>(),
        )
        .format(format)
        .pattern(pattern)
        .description((!description.is_empty()).then_some(description));
    builder = builder.examples([example(field)]);
    if !field.codes.is_empty() {
        let mut values: Vec<serde_json::Value> = field
            .codes
            .iter()
            .map(|(_, api)| api.clone().into())
            .collect();
        if !field.is_key {
            values.push(serde_json::Value::Null);
        }
        builder = builder.enum_values(Some(values));
    }
    builder.build().into()
}

/// A value of the field that every rule of its column allows (an example for the document).
pub fn example(field: &Field) -> serde_json::Value {
    use serde_json::json;
    let decimal = || -> String {
        let (whole, places) = match (field.limits.digits, field.scale) {
            (Some((precision, scale)), _) => (precision.saturating_sub(scale), scale),
            (None, scale) => (2, scale.unwrap_or(2)),
        };
        let int = if whole >= 2 {
            "12"
        } else if whole == 1 {
            "1"
        } else {
            "0"
        };
        let frac: String = "50"
            .chars()
            .chain(std::iter::repeat('0'))
            .take(places as usize)
            .collect();
        if frac.is_empty() {
            int.to_string()
        } else {
            format!("{int}.{frac}")
        }
    };
    match field.field_type {
        FieldType::String => match field.codes.first() {
            Some((_, api)) => json!(api),
            None => {
                let text = if field.is_key { "A100" } else { "Text" };
                let max = field.limits.max_chars.unwrap_or(u32::MAX) as usize;
                json!(text.chars().take(max.max(1)).collect::<String>())
            }
        },
        FieldType::Integer => {
            let (low, high) = field.limits.range.unwrap_or((i64::MIN, i64::MAX));
            json!(42_i64.clamp(low, high))
        }
        FieldType::Number => json!(12.5),
        FieldType::Decimal => json!(decimal()),
        FieldType::Money => json!({ "value": decimal(), "currency": field.currency }),
        FieldType::Boolean => json!(true),
        FieldType::Date => json!("2024-01-05"),
        FieldType::Datetime if field.column_type == ColumnType::TimestampOffset => {
            json!("2024-01-05T10:30:00+01:00")
        }
        FieldType::Datetime => json!("2024-01-05T10:30:00"),
    }
}

/// A row of the resource made of each field's example.
pub fn row_example(resource: &Resource) -> serde_json::Value {
    resource
        .fields
        .iter()
        .map(|f| (f.name.clone(), example(f)))
        .collect::<serde_json::Map<_, _>>()
        .into()
}

/// `{"value": "12.50", "currency": "USD"}`.
fn money(field: &Field, masked_by: Option<&str>) -> Schema {
    let mut amount = field.clone();
    amount.field_type = FieldType::Decimal;
    amount.is_key = true;
    amount.description = Some("The amount.".into());
    let currency = ObjectBuilder::new()
        .schema_type(Type::String)
        .enum_values(field.currency.as_ref().map(|c| [c.clone()]))
        .description(Some("ISO 4217 currency code."));
    let types: Vec<Type> = if field.is_key {
        vec![Type::Object]
    } else {
        vec![Type::Object, Type::Null]
    };
    let description = [
        field.description.clone(),
        masked_by.map(|scope| format!("Present only for tokens with the scope `{scope}`.")),
    ]
    .into_iter()
    .flatten()
    .collect::<Vec<_>>()
    .join(" ");
    ObjectBuilder::new()
        .schema_type(
            types
                .into_iter()
                .collect::<utoipa::openapi::schema::SchemaType>(),
        )
        .property("value", self::field(&amount, None))
        .property("currency", currency)
        .required("value")
        .required("currency")
        .additional_properties(Some(AdditionalProperties::FreeForm(false)))
        .description((!description.is_empty()).then_some(description))
        .examples([example(field)])
        .build()
        .into()
}

/// A row: every field; the key is required (a row always carries it, whatever `fields=`
/// asks for), the others not, since `fields=` and masks leave some out. Its relations are
/// optional members, the related rows written out (not referenced: relations may form a
/// cycle, and `expand` goes two levels deep at most).
pub fn row(resource: &Resource, version: &IndexMap<String, Resource>) -> Schema {
    row_to_depth(resource, version, crate::catalog::expand::MAX_DEPTH)
}

/// A row with its relations `depth` levels down.
fn row_to_depth(resource: &Resource, version: &IndexMap<String, Resource>, depth: usize) -> Schema {
    let mut builder = ObjectBuilder::new()
        .schema_type(Type::Object)
        .description(resource.description.clone())
        .additional_properties(Some(AdditionalProperties::FreeForm(false)));
    for &i in &resource.key {
        builder = builder.required(&resource.fields[i].name);
    }
    for (i, f) in resource.fields.iter().enumerate() {
        let masked_by = resource
            .access
            .masks
            .iter()
            .find(|(index, _)| *index == i)
            .map(|(_, scope)| scope.as_str());
        builder = builder.property(&f.name, field(f, masked_by));
    }
    let relations = resource
        .relations
        .iter()
        .filter(|_| depth > 0)
        .filter_map(|(name, r)| Some((name, r, version.get(&r.resource)?)));
    for (name, relationship, related) in relations {
        let related_row = row_to_depth(related, version, depth - 1);
        builder = match relationship.many {
            None => builder.property(
                name,
                utoipa::openapi::schema::OneOfBuilder::new()
                    .item(related_row)
                    .item(ObjectBuilder::new().schema_type(Type::Null))
                    .description(Some(format!(
                        "With `expand={name}`: the related {} row, or null when it is missing \
                         or hidden from this token.",
                        relationship.resource
                    ))),
            ),
            Some(limit) => builder
                .property(
                    name,
                    ArrayBuilder::new()
                        .items(RefOr::T(related_row))
                        .max_items(Some(limit))
                        .description(Some(format!(
                            "With `expand={name}`: the related {} rows this token sees, in \
                             their default order, at most {limit}.",
                            relationship.resource
                        ))),
                )
                .property(
                    format!("{name}_truncated"),
                    ObjectBuilder::new()
                        .schema_type(Type::Boolean)
                        .enum_values(Some([true]))
                        .description(Some(format!(
                            "Present (true) only when `{name}` was cut at {limit} rows."
                        ))),
                ),
        };
    }
    builder.build().into()
}

/// A page of rows: `{"data": [...], "next_cursor": "..." | null}`.
pub fn page(resource: &Resource) -> Schema {
    let cursor = ObjectBuilder::new()
        .schema_type(
            [Type::String, Type::Null]
                .into_iter()
                .collect::<utoipa::openapi::schema::SchemaType>(),
        )
        .description(Some(
            "Pass as `cursor` to get the next page; null on the last page.",
        ));
    ObjectBuilder::new()
        .schema_type(Type::Object)
        .property(
            "data",
            ArrayBuilder::new().items(Ref::from_schema_name(row_name(resource))),
        )
        .property("next_cursor", cursor)
        .property(
            "total",
            ObjectBuilder::new()
                .schema_type(Type::Integer)
                .minimum(Some(0))
                .description(Some(
                    "With `count`: the rows matching the filters and row policies, on every page.",
                )),
        )
        .property(
            "total_estimated",
            ObjectBuilder::new()
                .schema_type(Type::Boolean)
                .description(Some(
                    "With `count`: whether `total` is the database's estimate (`count=estimated` \
                 on an unfiltered table) rather than counted.",
                )),
        )
        .required("data")
        .required("next_cursor")
        .additional_properties(Some(AdditionalProperties::FreeForm(false)))
        .build()
        .into()
}

/// RFC 9457 problem details as Portico writes them.
pub fn problem() -> RefOr<Schema> {
    let text = |description: &str| {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .description(Some(description.to_string()))
    };
    ObjectBuilder::new()
        .schema_type(Type::Object)
        .property(
            "type",
            text("Stable URI reference of the kind of problem, e.g. `/problems/bad-parameter`."),
        )
        .property("title", text("Short summary of the kind."))
        .property(
            "status",
            ObjectBuilder::new()
                .schema_type(Type::Integer)
                .format(Some(SchemaFormat::KnownFormat(KnownFormat::Int32))),
        )
        .property("detail", text("What happened this time."))
        .property(
            "parameter",
            text("The query parameter to blame, when there is one."),
        )
        .property(
            "errors",
            ArrayBuilder::new()
                .items(
                    ObjectBuilder::new()
                        .schema_type(Type::Object)
                        .property(
                            "pointer",
                            text("JSON pointer (RFC 6901) into the request body."),
                        )
                        .property("detail", text("What is wrong there."))
                        .required("pointer")
                        .required("detail"),
                )
                .description(Some("Every problem of an invalid request body.")),
        )
        .required("type")
        .required("title")
        .required("status")
        .required("detail")
        .build()
        .into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_a_generated_client_would_want() {
        assert_eq!(singular("jobs"), "job");
        assert_eq!(singular("categories"), "category");
        assert_eq!(singular("address"), "address");
        assert_eq!(pascal("job_operations"), "JobOperations");
    }
}
