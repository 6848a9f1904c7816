//! Stored procedures in a version's document: `POST /{v}/procedures/{name}` with its input
//! schema, and the output parameters and rows it answers with.

use utoipa::openapi::content::ContentBuilder;
use utoipa::openapi::path::{HttpMethod, OperationBuilder, PathItem};
use utoipa::openapi::request_body::RequestBodyBuilder;
use utoipa::openapi::response::{ResponseBuilder, ResponsesBuilder};
use utoipa::openapi::schema::{
    AdditionalProperties, ArrayBuilder, ObjectBuilder, Ref, Schema, Type,
};
use utoipa::openapi::security::SecurityRequirement;
use utoipa::openapi::{Deprecated, Required};

use super::schema::{self, pascal};
use super::BEARER;
use crate::catalog::procedure::Procedure;
use crate::catalog::Version;
use crate::config::Direction;

fn input_name(procedure: &Procedure) -> String {
    format!("{}Input", pascal(&procedure.name))
}

fn result_name(procedure: &Procedure) -> String {
    format!("{}Result", pascal(&procedure.name))
}

/// The input and result schemas of a procedure.
pub fn schemas(procedure: &Procedure) -> Vec<(String, Schema)> {
    let closed = |description: &str| {
        ObjectBuilder::new()
            .schema_type(Type::Object)
            .description(Some(description.to_string()))
            .additional_properties(Some(AdditionalProperties::FreeForm(false)))
    };
    let mut input = closed("The procedure's input parameters.");
    let mut output = closed("The procedure's output parameters.");
    for (field, direction) in &procedure.parameters {
        match direction {
            Direction::In => {
                input = input.property(&field.name, super::rules::written(field));
                if field.required {
                    input = input.required(&field.name);
                }
            }
            Direction::Out => {
                output = output
                    .property(&field.name, schema::field(field, None))
                    .required(&field.name);
            }
        }
    }
    let row: Schema = if procedure.result.is_empty() {
        ObjectBuilder::new()
            .schema_type(Type::Object)
            .description(Some(
                "A row: every column as text, by the name the database gives it.".to_string(),
            ))
            .build()
            .into()
    } else {
        let mut typed = closed("A row of the first result set.");
        for f in &procedure.result {
            typed = typed
                .property(&f.name, schema::field(f, None))
                .required(&f.name);
        }
        typed.build().into()
    };
    let untyped = ArrayBuilder::new().items(ObjectBuilder::new().schema_type(Type::Object));
    let result = closed("What the call returned.")
        .property("output", output)
        .property(
            "rows",
            ArrayBuilder::new()
                .items(utoipa::openapi::RefOr::T(row))
                .description(Some("The first result set.")),
        )
        .property(
            "more_results",
            ArrayBuilder::new()
                .items(untyped)
                .description(Some("Further result sets, each rows of text columns.")),
        )
        .required("output")
        .required("rows")
        .required("more_results");
    vec![
        (input_name(procedure), input.build().into()),
        (result_name(procedure), result.build().into()),
    ]
}

/// `/{v}/procedures/{name}` and its POST.
pub fn path_item(version: &Version, procedure: &Procedure, auth: bool) -> (String, PathItem) {
    let ok = ResponseBuilder::new()
        .description("The output parameters and result sets.")
        .content(
            "application/json",
            ContentBuilder::new()
                .schema(Some(Ref::from_schema_name(result_name(procedure))))
                .build(),
        )
        .build();
    let mut responses = ResponsesBuilder::new().response("200", ok);
    let mut problems = vec![
        "BadParameter",
        "NotFound",
        "RequestTimeout",
        "Conflict",
        "PayloadTooLarge",
        "UnsupportedMediaType",
        "Invalid",
    ];
    if auth {
        problems.extend(["Unauthorized", "Forbidden", "RateLimited"]);
    }
    problems.extend(["SourceError", "Unavailable"]);
    for name in problems {
        if let Some(status) = super::responses::problem_status(name) {
            responses = responses.response(status.to_string(), Ref::from_response_name(name));
        }
    }
    let operation = OperationBuilder::new()
        .operation_id(Some(format!("call{}", pascal(&procedure.name))))
        .summary(Some(format!(
            "Call the stored procedure {}",
            procedure.procedure
        )))
        .description(procedure.description.clone())
        .tag("procedures")
        .request_body(Some(
            RequestBodyBuilder::new()
                .required(Some(Required::True))
                .content(
                    "application/json",
                    ContentBuilder::new()
                        .schema(Some(Ref::from_schema_name(input_name(procedure))))
                        .build(),
                )
                .build(),
        ))
        .responses(responses.build())
        .securities(Some(if auth {
            vec![SecurityRequirement::new(BEARER, [procedure.scope.clone()])]
        } else {
            Vec::new()
        }))
        .deprecated(version.deprecated.map(|_| Deprecated::True));
    (
        format!("/{}/procedures/{}", version.name, procedure.name),
        PathItem::new(HttpMethod::Post, operation),
    )
}
