//! The aggregate operation of a resource (`GET /{v}/{resource}/aggregate`): which fields can
//! be grouped, summed, averaged, min'ed and max'ed, as enums, and the answer's schema.

use serde_json::{json, Map, Value as Json};
use utoipa::openapi::content::ContentBuilder;
use utoipa::openapi::path::{HttpMethod, OperationBuilder, Parameter, PathItem};
use utoipa::openapi::response::ResponseBuilder;
use utoipa::openapi::schema::{Ref, Schema};
use utoipa::openapi::RefOr;

use super::responses::{deprecated, responses, security, JSON};
use super::schema::{self, pascal};
use crate::catalog::aggregate::{self, DEFAULT_GROUPS};
use crate::catalog::{Resource, Version};
use crate::config::FieldType;

/// Component name of a resource's aggregate answer (`JobAggregate`).
pub fn answer_name(resource: &Resource) -> String {
    format!("{}Aggregate", schema::row_name(resource))
}

/// The answer's schema: `{"data": [{"group", "count", "sum", "avg", "min", "max"}],
/// "truncated"}`.
pub fn answer(resource: &Resource) -> RefOr<Schema> {
    let fields = |fits: &dyn Fn(usize) -> bool, value: &dyn Fn(usize) -> Json| {
        let mut properties = Map::new();
        for (i, f) in resource.fields.iter().enumerate() {
            if fits(i) {
                properties.insert(f.name.clone(), value(i));
            }
        }
        json!({ "type": "object", "properties": properties, "additionalProperties": false })
    };
    let field_schema = |i: usize| {
        serde_json::to_value(schema::field(&resource.fields[i], None)).unwrap_or_default()
    };
    let decimal = |_| {
        json!({ "type": ["string", "null"], "pattern": r"^-?[0-9]+(\.[0-9]+)?$",
                "description": "An exact decimal at the field's scale (an average: two places more)." })
    };
    let group_value = |i: usize| match resource.fields[i].field_type {
        // A bucket of a date is `YYYY`, `YYYY-MM` or `YYYY-MM-DD`.
        FieldType::Date => json!({ "type": ["string", "null"] }),
        _ => field_schema(i),
    };
    let value = json!({
        "type": "object",
        "required": ["group"],
        "additionalProperties": false,
        "properties": {
            "group": fields(&|i| aggregate::groupable(resource, i), &group_value),
            "count": { "type": "integer", "minimum": 0, "description": "Rows in the group (`count=true`)." },
            "sum": fields(&|i| aggregate::summable(resource, i), &decimal),
            "avg": fields(&|i| aggregate::summable(resource, i), &decimal),
            "min": fields(&|i| aggregate::orderable(resource, i), &field_schema),
            "max": fields(&|i| aggregate::orderable(resource, i), &field_schema),
        }
    });
    let answer = json!({
        "type": "object",
        "required": ["data", "truncated"],
        "additionalProperties": false,
        "properties": {
            "data": { "type": "array", "items": value },
            "truncated": { "type": "boolean", "description": "More groups exist than `limit`: the answer holds the first ones in group order." }
        }
    });
    serde_json::from_value(answer).unwrap_or_else(|_| RefOr::T(Schema::default()))
}

/// `/{v}/{resource}/aggregate`, unless the resource gives the path back to its keys.
pub fn path_item(version: &Version, resource: &Resource, auth: bool) -> Option<(String, PathItem)> {
    if !resource.aggregates {
        return None;
    }
    let names = |fits: &dyn Fn(usize) -> bool| -> Vec<String> {
        (0..resource.fields.len())
            .filter(|&i| fits(i))
            .map(|i| resource.fields[i].name.clone())
            .collect()
    };
    let mut groups = names(&|i| aggregate::groupable(resource, i));
    for (i, f) in resource.fields.iter().enumerate() {
        if f.field_type == FieldType::Date && aggregate::groupable(resource, i) {
            for part in ["day", "month", "year"] {
                if aggregate::buckets(resource, i, part) {
                    groups.push(format!("{}:{part}", f.name));
                }
            }
        }
    }
    let list = |name: &str, allowed: Vec<String>, description: &str| -> Option<Parameter> {
        (!allowed.is_empty()).then(|| {
            serde_json::from_value(json!({
                "name": name, "in": "query", "required": false, "style": "form", "explode": false,
                "schema": { "type": "array", "minItems": 1, "uniqueItems": true, "items": { "type": "string", "enum": allowed } },
                "description": description,
            }))
            .ok()
        })?
    };
    let mut parameters: Vec<Parameter> = [
        list("group_by", groups, "Comma-separated fields to group by, in order; a date field as `field:day`, `field:month` or `field:year` (served `YYYY-MM-DD`, `YYYY-MM`, `YYYY`). Grouped on the stored form (a code by its code, served as its value); null and the legacy null sentinels form the null group. Without it, one group of every row."),
        list("sum", names(&|i| aggregate::summable(resource, i)), "Fields summed per group, exactly, as decimal strings at the field's scale."),
        list("avg", names(&|i| aggregate::summable(resource, i)), "Fields averaged per group (nulls skipped), as decimal strings at the field's scale plus two places."),
        list("min", names(&|i| aggregate::orderable(resource, i)), "Fields whose smallest value per group is given."),
        list("max", names(&|i| aggregate::orderable(resource, i)), "Fields whose largest value per group is given."),
    ]
    .into_iter()
    .flatten()
    .collect();
    let extra: Vec<Parameter> = [
        json!({ "name": "count", "in": "query", "required": false, "schema": { "type": "boolean" },
                "description": "Rows per group. At least one of count, sum, avg, min, max is required." }),
        json!({ "name": "limit", "in": "query", "required": false,
                "schema": { "type": "integer", "minimum": 1, "maximum": resource.max_limit, "default": DEFAULT_GROUPS.min(resource.max_limit) },
                "description": "Most groups answered, in group order; `truncated` says whether more exist." }),
    ]
    .into_iter()
    .filter_map(|p| serde_json::from_value(p).ok())
    .collect();
    parameters.extend(extra);
    parameters.extend(
        super::operations::query_parameters(resource)
            .into_iter()
            .filter(|p| !["limit", "cursor", "sort", "fields", "count"].contains(&p.name.as_str())),
    );
    let ok = ResponseBuilder::new()
        .description(format!("Groups of {}.", resource.name))
        .content(
            JSON,
            ContentBuilder::new()
                .schema(Some(Ref::from_schema_name(answer_name(resource))))
                .build(),
        )
        .build();
    let operation = OperationBuilder::new()
        .operation_id(Some(format!("aggregate{}", pascal(&resource.name))))
        .summary(Some(format!("Aggregate {}", resource.name)))
        .description(Some(format!(
            "Grouped counts, exact sums, averages, min and max of the {} the filters and the \
             caller's row policies let through, computed by the database in one GROUP BY. \
             Fields the caller may not see are refused (400). A row whose key is `aggregate` \
             is not reachable here (`aggregates = false` gives the path back).",
            resource.name
        )))
        .tag(&resource.name)
        .parameters(Some(parameters))
        .responses(responses(ok, &["BadParameter", "NotFound"], auth))
        .securities(security(resource, auth))
        .deprecated(deprecated(version));
    Some((
        format!("/{}/{}/aggregate", version.name, resource.name),
        PathItem::new(HttpMethod::Get, operation),
    ))
}
