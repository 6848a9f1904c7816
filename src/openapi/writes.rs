//! Write operations of a resource in its version's document: request bodies with required
//! fields and column limits, `If-Match` and `Idempotency-Key`, and every answer a write gets.

use utoipa::openapi::content::ContentBuilder;
use utoipa::openapi::header::HeaderBuilder;
use utoipa::openapi::link::LinkBuilder;
use utoipa::openapi::path::{
    HttpMethod, Operation, OperationBuilder, ParameterBuilder, ParameterIn, PathItem,
};
use utoipa::openapi::request_body::RequestBodyBuilder;
use utoipa::openapi::response::{ResponseBuilder, ResponsesBuilder};
use utoipa::openapi::schema::{AdditionalProperties, ObjectBuilder, Ref, Schema, Type};
use utoipa::openapi::security::SecurityRequirement;
use utoipa::openapi::{Deprecated, RefOr, Required};

use super::rules;
use super::schema::{self, pascal, singular};
use super::BEARER;
use crate::catalog::{Field, Resource, Version};
use crate::config::WriteOp;

/// Names of the request body schemas.
pub fn create_name(resource: &Resource) -> String {
    format!("{}Create", pascal(&singular(&resource.name)))
}

/// See `create_name`.
pub fn patch_name(resource: &Resource) -> String {
    format!("{}Patch", pascal(&singular(&resource.name)))
}

/// The request body schemas of a resource that takes writes.
pub fn body_schemas(resource: &Resource) -> Vec<(String, Schema)> {
    let Some(rules) = &resource.writes else {
        return Vec::new();
    };
    let writable: Vec<(usize, &Field)> = resource
        .fields
        .iter()
        .enumerate()
        .filter(|(i, f)| {
            !f.read_only && !resource.fields[..*i].iter().any(|e| e.column == f.column)
        })
        .collect();
    let mut out = Vec::new();
    if rules.allows(WriteOp::Create) {
        let mut body = object(&format!(
            "A new {}. Fields not given get the database's default.",
            singular(&resource.name)
        ));
        for &(i, f) in &writable {
            body = body.property(&f.name, input(resource, i, f));
            if f.required_on_create() {
                body = body.required(&f.name);
            }
        }
        out.push((create_name(resource), body.build().into()));
    }
    if rules.allows(WriteOp::Update) {
        let mut body =
            object("A JSON merge patch (RFC 7396): the fields to change; `null` clears a field.");
        for &(i, f) in writable.iter().filter(|(_, f)| !f.is_key) {
            body = body.property(&f.name, input(resource, i, f));
        }
        out.push((patch_name(resource), body.build().into()));
    }
    out
}

fn object(description: &str) -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(Type::Object)
        .description(Some(description.to_string()))
        .additional_properties(Some(AdditionalProperties::FreeForm(false)))
}

/// A field as a client writes it (every rule of `catalog::write::body`, see
/// `rules::written`), and the scope writing it needs (a rule per token, which a schema cannot
/// express).
fn input(resource: &Resource, index: usize, f: &Field) -> Schema {
    let mut schema = rules::written(f);
    let access = &resource.access;
    // A field hidden from a token (`requires_scope`) is no field of its writes either.
    let scopes = access.masks.iter().chain(&access.write_masks);
    for (_, scope) in scopes.filter(|(i, _)| *i == index) {
        if let Schema::Object(object) = &mut schema {
            rules::describe(
                object,
                format!(
                    "Written only by tokens with the scope `{scope}`; others get a 422 at this field."
                ),
            );
        }
    }
    schema
}

/// Adds POST to the collection's item and PATCH/DELETE to the row's item.
pub fn add_operations(
    version: &Version,
    resource: &Resource,
    auth: bool,
    collection: &mut PathItem,
    row: &mut PathItem,
) {
    let Some(rules) = &resource.writes else {
        return;
    };
    let noun = pascal(&singular(&resource.name));
    let deprecated = version.deprecated.map(|_| Deprecated::True);
    let security = security(resource, auth);
    let finish = |builder: OperationBuilder| -> Operation {
        builder
            .tag(&resource.name)
            .securities(security.clone())
            .deprecated(deprecated.clone())
            .build()
    };
    if rules.allows(WriteOp::Create) {
        let created = ResponseBuilder::new()
            .description(format!(
                "Created; the {} as stored.",
                singular(&resource.name)
            ))
            .header("Location", text_header("Where the new row is served."))
            .header("ETag", etag_header())
            .content("application/json", row_content(resource))
            .build();
        let operation = OperationBuilder::new()
            .operation_id(Some(format!("create{noun}")))
            .summary(Some(format!("Create a {}", singular(&resource.name))))
            .description(Some(
                "Every field is checked against its column's rules (a 422 lists each problem \
                 at its pointer) before one transaction writes the row; the answer is the row \
                 as stored.",
            ))
            .parameter(
                ParameterBuilder::new()
                    .name("Idempotency-Key")
                    .parameter_in(ParameterIn::Header)
                    .required(Required::False)
                    .schema(Some(
                        ObjectBuilder::new()
                            .schema_type(Type::String)
                            .min_length(Some(1))
                            .max_length(Some(255))
                            .pattern(Some("^[!-~]+$")),
                    ))
                    .description(Some(
                        "Retrying with the same key and body returns the first response without writing again.",
                    )),
            )
            .request_body(Some(body(&create_name(resource), &["application/json"])))
            .responses(responses(
                "201",
                created,
                &[
                    "BadParameter",
                    "RequestTimeout",
                    "Conflict",
                    "PayloadTooLarge",
                    "UnsupportedMediaType",
                    "Invalid",
                ],
                auth,
            ));
        *collection = merge(collection, HttpMethod::Post, finish(operation));
    }
    if rules.allows(WriteOp::Update) {
        let ok = ResponseBuilder::new()
            .description(format!(
                "Updated; the {} as stored.",
                singular(&resource.name)
            ))
            .header("ETag", etag_header())
            .content("application/json", row_content(resource))
            .build();
        let operation = OperationBuilder::new()
            .operation_id(Some(format!("update{noun}")))
            .summary(Some(format!(
                "Change fields of a {}",
                singular(&resource.name)
            )))
            .description(Some(
                "A JSON merge patch: the fields given are checked against their columns' rules \
                 and written in one transaction, guarded by `If-Match` when given (or \
                 required); the answer is the row as stored.",
            ))
            .request_body(Some(body(
                &patch_name(resource),
                &["application/merge-patch+json", "application/json"],
            )))
            .responses(responses(
                "200",
                ok,
                &[
                    "BadParameter",
                    "NotFound",
                    "RequestTimeout",
                    "Conflict",
                    "PreconditionFailed",
                    "PayloadTooLarge",
                    "UnsupportedMediaType",
                    "Invalid",
                    "PreconditionRequired",
                ],
                auth,
            ));
        let mut operation = finish(operation);
        operation.parameters = Some(key_and_if_match(row, rules.require_if_match));
        *row = merge(row, HttpMethod::Patch, operation);
    }
    if rules.allows(WriteOp::Delete) {
        let operation = OperationBuilder::new()
            .operation_id(Some(format!("delete{noun}")))
            .summary(Some(format!("Delete a {}", singular(&resource.name))))
            .description(Some(
                "Deletes the row, guarded by `If-Match` when given (or required).",
            ))
            .responses(responses(
                "204",
                ResponseBuilder::new().description("Deleted.").build(),
                &[
                    "BadParameter",
                    "NotFound",
                    "Conflict",
                    "PreconditionFailed",
                    "PreconditionRequired",
                ],
                auth,
            ));
        let mut operation = finish(operation);
        operation.parameters = Some(key_and_if_match(row, rules.require_if_match));
        *row = merge(row, HttpMethod::Delete, operation);
    }
}

/// OpenAPI links from every answer that carries a row (GET, POST, PATCH) to the writes that
/// take its key and its `ETag` as `If-Match`, so a client (or a generator) follows them.
pub fn link_writes(resource: &Resource, collection: &mut PathItem, row: &mut PathItem) {
    let Some(rules) = &resource.writes else {
        return;
    };
    let noun = pascal(&singular(&resource.name));
    let mut links = Vec::new();
    for (op, name, verb) in [
        (WriteOp::Update, "update", "Change"),
        (WriteOp::Delete, "delete", "Delete"),
    ] {
        if !rules.allows(op) {
            continue;
        }
        let mut link = LinkBuilder::new()
            .operation_id(format!("{name}{noun}"))
            .description(format!(
                "{verb} this {}: its key from the body, its ETag as If-Match.",
                singular(&resource.name)
            ))
            .parameter("If-Match", "$response.header.ETag");
        for &i in &resource.key {
            let key = &resource.fields[i].name;
            link = link.parameter(key, format!("$response.body#/{key}"));
        }
        links.push((name.to_string(), link.build()));
    }
    let answers = [
        (row.get.as_mut(), "200"),
        (row.patch.as_mut(), "200"),
        (collection.post.as_mut(), "201"),
    ];
    for (operation, status) in answers {
        let Some(operation) = operation else { continue };
        if let Some(RefOr::T(response)) = operation.responses.responses.get_mut(status) {
            for (name, link) in &links {
                response.links.insert(name.clone(), RefOr::T(link.clone()));
            }
        }
    }
}

fn merge(item: &PathItem, method: HttpMethod, operation: Operation) -> PathItem {
    let mut merged = item.clone();
    merged.merge_operations(PathItem::new(method, operation));
    merged
}

/// The row's key parameters (from its GET, whose `expand` a write does not take) and
/// `If-Match`.
fn key_and_if_match(
    row: &PathItem,
    required: bool,
) -> Vec<utoipa::openapi::RefOr<utoipa::openapi::path::Parameter>> {
    let mut parameters: Vec<_> = row
        .get
        .as_ref()
        .and_then(|get| get.parameters.clone())
        .unwrap_or_default()
        .into_iter()
        .filter(
            |p| matches!(p, utoipa::openapi::RefOr::T(p) if p.parameter_in == ParameterIn::Path),
        )
        .collect();
    parameters.push(
        ParameterBuilder::new()
            .name("If-Match")
            .parameter_in(ParameterIn::Header)
            .required(if required { Required::True } else { Required::False })
            .schema(Some(ObjectBuilder::new().schema_type(Type::String)))
            .description(Some(
                "The ETag of the row as last read: the write happens only if the row still has it (412 otherwise).",
            ))
            .build()
            .into(),
    );
    parameters
}

fn body(schema_name: &str, media_types: &[&str]) -> utoipa::openapi::request_body::RequestBody {
    let mut builder = RequestBodyBuilder::new().required(Some(Required::True));
    for media in media_types {
        builder = builder.content(
            *media,
            ContentBuilder::new()
                .schema(Some(Ref::from_schema_name(schema_name)))
                .build(),
        );
    }
    builder.build()
}

fn row_content(resource: &Resource) -> utoipa::openapi::content::Content {
    ContentBuilder::new()
        .schema(Some(Ref::from_schema_name(schema::row_name(resource))))
        .build()
}

fn text_header(description: &str) -> utoipa::openapi::header::Header {
    HeaderBuilder::new()
        .schema(Some(ObjectBuilder::new().schema_type(Type::String)))
        .description(Some(description.to_string()))
        .build()
}

fn etag_header() -> utoipa::openapi::header::Header {
    text_header("The row's version; send it as `If-Match` on the next write.")
}

fn responses(
    status: &str,
    ok: utoipa::openapi::response::Response,
    errors: &[&str],
    auth: bool,
) -> utoipa::openapi::Responses {
    let mut builder = ResponsesBuilder::new().response(status, ok);
    let mut names: Vec<&str> = errors.to_vec();
    if auth {
        names.extend(["Unauthorized", "Forbidden", "RateLimited"]);
    }
    names.extend(["UnsupportedBySource", "SourceError", "Unavailable"]);
    for name in names {
        if let Some(status) = super::responses::problem_status(name) {
            builder = builder.response(status.to_string(), Ref::from_response_name(name));
        }
    }
    builder.build()
}

/// Writes need a token with the write scope; without `[auth]` no operation needs one (`[]`).
fn security(resource: &Resource, auth: bool) -> Option<Vec<SecurityRequirement>> {
    Some(if auth {
        let scopes: Vec<String> = resource.access.write_scope.iter().cloned().collect();
        vec![SecurityRequirement::new(BEARER, scopes)]
    } else {
        Vec::new()
    })
}
