//! Operations of a resource: list, get by key and nested lists, with every query parameter,
//! the responses Portico really sends, and the scope each needs.

use utoipa::openapi::content::ContentBuilder;
use utoipa::openapi::header::HeaderBuilder;
use utoipa::openapi::link::LinkBuilder;
use utoipa::openapi::path::{
    HttpMethod, OperationBuilder, ParameterBuilder, ParameterIn, PathItem,
};
use utoipa::openapi::response::ResponseBuilder;
use utoipa::openapi::schema::{ObjectBuilder, Ref, Schema, Type};
use utoipa::openapi::{RefOr, Required};

use super::responses::{deprecated, responses, security, JSON};
use super::schema::{self, pascal, singular};
use crate::catalog::query::{MAX_IN_VALUES, MAX_VALUE_BYTES};
use crate::catalog::{Resource, Version};
use crate::config::FieldType;

/// `/v1/jobs`, `/v1/jobs/{id}` and, for a resource nested under another,
/// `/v1/{parent}/{parent key}/{resource}`.
pub fn path_items(version: &Version, resource: &Resource, auth: bool) -> Vec<(String, PathItem)> {
    let base = format!("/{}/{}", version.name, resource.name);
    let noun = pascal(&resource.name);
    let mut collection = list(version, resource, format!("list{noun}"), Vec::new(), auth);
    let mut row = get(version, resource, auth);
    super::writes::add_operations(version, resource, auth, &mut collection, &mut row);
    super::writes::link_writes(resource, &mut collection, &mut row);
    let mut items: Vec<(String, PathItem)> = super::changes::path_item(version, resource, auth)
        .into_iter()
        .collect();
    items.extend([
        (base.clone(), collection),
        (format!("{base}/{}", key_template(resource)), row),
    ]);
    if let Some((parent_name, _)) = &resource.parent {
        if let Some(parent) = version.resources.get(parent_name) {
            let path = format!(
                "/{}/{}/{}/{}",
                version.name,
                parent.name,
                key_template(parent),
                resource.name
            );
            let id = format!("list{}{}", pascal(&singular(&parent.name)), noun);
            let item = list(version, resource, id, key_parameters(parent), auth);
            items.push((path, item));
        }
    }
    items
}

/// `{id}`, or `{job_id},{sequence}` for a composite key.
fn key_template(resource: &Resource) -> String {
    resource
        .key
        .iter()
        .map(|&i| format!("{{{}}}", resource.fields[i].name))
        .collect::<Vec<_>>()
        .join(",")
}

fn key_parameters(resource: &Resource) -> Vec<utoipa::openapi::path::Parameter> {
    resource
        .key
        .iter()
        .map(|&i| {
            let f = &resource.fields[i];
            ParameterBuilder::new()
                .name(&f.name)
                .parameter_in(ParameterIn::Path)
                .required(Required::True)
                .description(Some(format!(
                    "Key part `{}` of {}, percent-encoded (a comma is `%2C`).",
                    f.name, resource.name
                )))
                .schema(Some(key_scalar(resource, i)))
                .build()
        })
        .collect()
}

/// A key part in a path: never empty, never wider than its column.
fn key_scalar(resource: &Resource, index: usize) -> RefOr<Schema> {
    let mut schema = scalar(resource, index);
    let f = &resource.fields[index];
    if let RefOr::T(Schema::Object(object)) = &mut schema {
        if f.field_type == FieldType::String && f.codes.is_empty() {
            object.min_length = Some(1);
        }
    }
    schema
}

fn get(version: &Version, resource: &Resource, auth: bool) -> PathItem {
    let ok = ResponseBuilder::new()
        .description(format!("One {}.", singular(&resource.name)))
        .header("ETag", etag_header())
        .content(
            JSON,
            ContentBuilder::new()
                .schema(Some(Ref::from_schema_name(schema::row_name(resource))))
                .example(Some(schema::row_example(resource)))
                .build(),
        )
        .build();
    let operation = OperationBuilder::new()
        .operation_id(Some(format!("get{}", pascal(&singular(&resource.name)))))
        .summary(Some(format!("One {} by key", singular(&resource.name))))
        .description(Some(
            "The row with this key, with its `ETag`; a row the caller's row policy hides is a \
             404 like a missing one.",
        ))
        .tag(&resource.name)
        .parameters(Some(
            key_parameters(resource)
                .into_iter()
                .chain(expand_parameter(version, resource))
                .collect::<Vec<_>>(),
        ))
        .responses(responses(ok, &["BadParameter", "NotFound"], auth))
        .securities(security(resource, auth))
        .deprecated(deprecated(version));
    PathItem::new(HttpMethod::Get, operation)
}

fn list(
    version: &Version,
    resource: &Resource,
    operation_id: String,
    mut parameters: Vec<utoipa::openapi::path::Parameter>,
    auth: bool,
) -> PathItem {
    // The next page: the same operation, the same path keys, the page's `next_cursor`.
    let mut next = LinkBuilder::new()
        .operation_id(operation_id.clone())
        .description(
            "The next page (while `next_cursor` is not null): send the cursor with this \
             request's filters, sort and fields; with others it is a 400.",
        )
        .parameter("cursor", "$response.body#/next_cursor");
    for parameter in &parameters {
        next = next.parameter(
            parameter.name.clone(),
            format!("$request.path.{}", parameter.name),
        );
    }
    parameters.extend(query_parameters(resource));
    parameters.extend(expand_parameter(version, resource));
    let ok = ResponseBuilder::new()
        .link("next", next.build())
        .description(format!(
            "A page of {}, or an export of every row (by `Accept`).",
            resource.name
        ))
        .header("ETag", etag_header())
        .header(
            "Link",
            HeaderBuilder::new()
                .schema(Some(ObjectBuilder::new().schema_type(Type::String)))
                .description(Some("`<url>; rel=\"next\"` while more rows exist."))
                .build(),
        )
        .content(
            JSON,
            ContentBuilder::new()
                .schema(Some(Ref::from_schema_name(schema::page_name(resource))))
                .example(Some(serde_json::json!({
                    "data": [schema::row_example(resource)],
                    "next_cursor": null,
                })))
                .build(),
        )
        .content(
            NDJSON,
            export_content(
                format!(
                    "An export: one `{}` object a line (`\\n`), as the page's `data` holds them.",
                    schema::row_name(resource)
                ),
                ndjson_example(resource),
            ),
        )
        .content(
            CSV,
            export_content(
                "An export, RFC 4180 CSV in UTF-8 with CRLF line ends: a header row of the \
                 fields returned, then a row each; null is an empty cell and an empty text \
                 `\"\"`; a `money` field is two columns (`name.value`, `name.currency`); values \
                 are never altered (a leading `=` stays: import into a spreadsheet as text)."
                    .into(),
                csv_example(resource),
            ),
        )
        .header(
            "Content-Disposition",
            HeaderBuilder::new()
                .schema(Some(ObjectBuilder::new().schema_type(Type::String)))
                .description(Some(format!(
                    "On an export: `attachment; filename=\"{}.csv\"` (`.ndjson`).",
                    resource.name
                )))
                .build(),
        )
        .build();
    let prefix = match resource.query_limits.prefix_parameters {
        1 => String::new(),
        n => format!(", a `prefix` as {n}"),
    };
    let limits = format!(
        "At most {} filter parameters and {} filter values (each `in` and `nin` value \
         counted{prefix}) per request; more is a 400 naming the first one too many.",
        resource.query_limits.max_filter_terms, resource.query_limits.max_bound_parameters
    );
    let export = format!(
        "With `Accept: {NDJSON}` or `Accept: text/csv` the answer is an export: every row the \
         filters and the caller's row policies select (no page size; `limit` is ignored, \
         `cursor` resumes after its position), in the list's sort and `fields`, streamed, never \
         cached. At most {} rows: past them the export ends with a marker carrying \
         `next_cursor` (NDJSON: a last line `{{\"@truncated\": {{\"max_export_rows\": N, \
         \"next_cursor\": \"…\"}}}}`; CSV: a last line `#truncated: max_export_rows=N; \
         next_cursor=…`). An `Accept` that takes none of JSON, NDJSON and CSV is a 406.",
        resource.max_export_rows
    );
    let operation = OperationBuilder::new()
        .operation_id(Some(operation_id))
        .summary(Some(format!("List {}", resource.name)))
        .description(Some(match &resource.description {
            Some(text) => format!("{text}\n\n{limits}\n\n{export}"),
            None => format!("{limits}\n\n{export}"),
        }))
        .tag(&resource.name)
        .parameters(Some(parameters))
        .responses(responses(
            ok,
            &["BadParameter", "NotFound", "NotAcceptable"],
            auth,
        ))
        .securities(security(resource, auth))
        .deprecated(deprecated(version));
    PathItem::new(HttpMethod::Get, operation)
}

/// NDJSON media type of an export.
const NDJSON: &str = "application/x-ndjson";
/// CSV media type of an export.
const CSV: &str = "text/csv";

/// An export's content: text (a stream of lines), described in words, with an example.
fn export_content(description: String, example: String) -> utoipa::openapi::content::Content {
    ContentBuilder::new()
        .schema(Some(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .description(Some(description)),
        ))
        .example(Some(example.into()))
        .build()
}

fn ndjson_example(resource: &Resource) -> String {
    format!("{}\n", schema::row_example(resource))
}

fn csv_example(resource: &Resource) -> String {
    let example = schema::row_example(resource);
    let mut header = Vec::new();
    let mut row = Vec::new();
    for field in &resource.fields {
        let value = &example[&field.name];
        let cell = |v: &serde_json::Value| match v {
            serde_json::Value::Null => String::new(),
            serde_json::Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        if field.field_type == FieldType::Money {
            header.push(format!("{}.value", field.name));
            header.push(format!("{}.currency", field.name));
            row.push(cell(&value["value"]));
            row.push(cell(&value["currency"]));
        } else {
            header.push(field.name.clone());
            row.push(cell(value));
        }
    }
    format!("{}\r\n{}\r\n", header.join(","), row.join(","))
}

/// The relation paths `expand` takes on `resource`: its relations, and theirs one level down.
pub fn expand_paths(version: &Version, resource: &Resource) -> Vec<String> {
    let mut paths = Vec::new();
    for (name, relationship) in &resource.relations {
        paths.push(name.clone());
        if let Some(related) = version.resources.get(&relationship.resource) {
            paths.extend(related.relations.keys().map(|n| format!("{name}.{n}")));
        }
    }
    paths
}

/// `expand=customer,operations.job`, on the operations of a resource with relations.
fn expand_parameter(
    version: &Version,
    resource: &Resource,
) -> Option<utoipa::openapi::path::Parameter> {
    let paths = expand_paths(version, resource);
    if paths.is_empty() {
        return None;
    }
    let items = ObjectBuilder::new()
        .schema_type(Type::String)
        .enum_values(Some(paths));
    Some(
        ParameterBuilder::new()
            .name("expand")
            .parameter_in(ParameterIn::Query)
            .required(Required::False)
            .style(Some(utoipa::openapi::path::ParameterStyle::Form))
            .explode(Some(false))
            .schema(Some(
                utoipa::openapi::schema::ArrayBuilder::new()
                    .items(items)
                    .min_items(Some(1))
                    .unique_items(true),
            ))
            .description(Some(
                "Comma-separated relations whose rows each row carries as a member of the                  relation's name: a to-one relation's row or null (missing, or hidden from this                  token), a to-many relation's rows in the related resource's default order, at                  most its limit, with `{name}_truncated: true` when there were more. `a.b`                  expands `b` of each `a` (two levels at most). The related resource's read                  scope is needed (403 without it), and its row policies and hidden fields                  apply; each relation is one more read of its resource per page.",
            ))
            .build(),
    )
}

fn etag_header() -> utoipa::openapi::header::Header {
    HeaderBuilder::new()
        .schema(Some(ObjectBuilder::new().schema_type(Type::String)))
        .description(Some(
            "Strong validator of the body; send it as `If-None-Match`.",
        ))
        .build()
}

/// The field's schema without null (a query value is never null), as wide as its column.
fn scalar(resource: &Resource, index: usize) -> RefOr<Schema> {
    let f = &resource.fields[index];
    let mut strict = f.clone();
    strict.is_key = true;
    if strict.field_type == FieldType::Money {
        // Filters compare the amount.
        strict.field_type = FieldType::Decimal;
    }
    let mut schema = schema::field(&strict, None);
    if let Schema::Object(object) = &mut schema {
        if f.field_type == FieldType::String && f.codes.is_empty() {
            object.max_length = Some(
                // The server counts bytes; four per character always fits.
                f.max_length().map_or(MAX_VALUE_BYTES / 4, |max| {
                    (max as usize).min(MAX_VALUE_BYTES / 4)
                }),
            );
        }
    }
    schema.into()
}

/// A list's query parameters: paging, sort, fields, count and every filter.
pub(super) fn query_parameters(resource: &Resource) -> Vec<utoipa::openapi::path::Parameter> {
    let query = |name: String, schema: RefOr<Schema>, description: String| {
        ParameterBuilder::new()
            .name(name)
            .parameter_in(ParameterIn::Query)
            .required(Required::False)
            .schema(Some(schema))
            .description(Some(description))
            .build()
    };
    let text = || -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .build()
            .into()
    };
    // An empty `cursor=`, `sort=` or `fields=` is refused: it names nothing.
    let named = || -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .min_length(Some(1))
            .build()
            .into()
    };
    let sortable: Vec<&str> = resource
        .fields
        .iter()
        .filter(|f| f.sortable)
        .map(|f| f.name.as_str())
        .collect();
    let names: Vec<&str> = resource.fields.iter().map(|f| f.name.as_str()).collect();
    let mut parameters = vec![
        query(
            "limit".into(),
            ObjectBuilder::new()
                .schema_type(Type::Integer)
                .minimum(Some(1))
                .maximum(Some(resource.max_limit as u64))
                .default(Some(resource.default_limit.into()))
                .build()
                .into(),
            "Rows per page.".into(),
        ),
        query(
            "cursor".into(),
            named(),
            "`next_cursor` of the previous page, sent with that page's filters and sort (a \
             cursor is bound to them: with others, or on another resource, it is a 400)."
                .into(),
        ),
        query(
            "sort".into(),
            named(),
            format!(
                "Comma-separated fields, `-` for descending; sortable: {}. The key is always appended.",
                sortable.join(", ")
            ),
        ),
        query(
            "fields".into(),
            named(),
            format!(
                "Comma-separated fields to return, of: {}. The key is always returned.",
                names.join(", ")
            ),
        ),
        query(
            "count".into(),
            ObjectBuilder::new()
                .schema_type(Type::String)
                .enum_values(Some(["exact", "estimated"]))
                .build()
                .into(),
            "Adds `total` (the rows matching the filters and the caller's row policies, \
             whatever the cursor and limit: the same on every page) and `total_estimated`. \
             `estimated` reads the database's statistics where it keeps a cheap estimate \
             (PostgreSQL `reltuples`, SQL Server `sys.partitions`) and the listing is \
             unfiltered (no filter, no row policy); otherwise it counts, and \
             `total_estimated` is false."
                .into(),
        ),
    ];
    for (i, f) in resource.fields.iter().enumerate() {
        if !f.filterable {
            continue;
        }
        let name = &f.name;
        parameters.push(query(
            name.clone(),
            scalar(resource, i),
            format!("`{name}` equals."),
        ));
        let mut ops = vec![("ne", "differs from")];
        if f.order_preserving {
            ops.extend([
                ("lt", "is below"),
                ("lte", "is at most"),
                ("gt", "is above"),
                ("gte", "is at least"),
            ]);
        }
        for (op, words) in ops {
            parameters.push(query(
                format!("{name}[{op}]"),
                scalar(resource, i),
                format!("`{name}` {words}."),
            ));
        }
        parameters.push(query(
            format!("{name}[in]"),
            text(),
            format!(
                "`{name}` is one of these comma-separated values (at most {MAX_IN_VALUES}). \
                 Inside a value `\\,` is a comma and `\\\\` a backslash (`%5C%2C`, `%5C%5C`); \
                 `%2C` alone separates values like `,`."
            ),
        ));
        parameters.push(query(
            format!("{name}[nin]"),
            text(),
            format!(
                "`{name}` is none of these values, written as for `{name}[in]` (at most \
                 {MAX_IN_VALUES}); rows where `{name}` is null do not match, as with `ne`."
            ),
        ));
        if f.field_type == FieldType::String && f.codes.is_empty() {
            parameters.push(query(
                format!("{name}[prefix]"),
                text(),
                format!(
                    "`{name}` starts with exactly this text: case counts, and `%`, `_` and `*` \
                     are characters, not wildcards (`eq` and `in` compare under the column's \
                     collation, which on MariaDB and SQL Server usually ignores case)."
                ),
            ));
        }
        parameters.push(query(
            format!("{name}[null]"),
            ObjectBuilder::new()
                .schema_type(Type::Boolean)
                .build()
                .into(),
            format!("`{name}` is (true) or is not (false) null."),
        ));
    }
    parameters
}
