//! The OpenAPI 3.1 document of each version, built at runtime from the catalog with utoipa's
//! builders (resources come from configuration, so nothing here can be derived).

mod aggregates;
mod changes;
pub mod diff;
mod operations;
mod procedures;
mod responses;
mod rules;
pub mod schema;
mod service;
mod writes;

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::server::ServerBuilder;
use utoipa::openapi::tag::TagBuilder;
use utoipa::openapi::{ComponentsBuilder, InfoBuilder, OpenApi, OpenApiBuilder, PathsBuilder};

use crate::catalog::Version;

/// Name of the bearer security scheme.
pub const BEARER: &str = "bearer";

/// The document of `version`, with the service paths every Portico serves (version list,
/// health, metrics, administration); `admin_scope` is set when bearer tokens are configured.
pub fn document(version: &Version, admin_scope: Option<&str>) -> OpenApi {
    let auth = admin_scope.is_some();
    let status = match (version.deprecated, version.sunset) {
        (Some(_), Some(sunset)) => format!(
            "\n\n**Deprecated**: this version is removed on {}; responses carry `Deprecation` and `Sunset`.",
            sunset.iso()
        ),
        (Some(_), None) => "\n\n**Deprecated**: responses carry a `Deprecation` header.".into(),
        _ => String::new(),
    };
    let description = format!(
        "{}\n\nServed by Portico from a legacy database. Lists page with an opaque `cursor`; \
         errors are RFC 9457 `application/problem+json`.{status}",
        version.description.as_deref().unwrap_or("")
    );
    let info = InfoBuilder::new()
        .title(format!("Portico API {}", version.name))
        .version(version.name.clone())
        .description(Some(description.trim().to_string()))
        .build();
    let mut paths = PathsBuilder::new();
    let mut components = ComponentsBuilder::new();
    let mut tags = vec![TagBuilder::new()
        .name("service")
        .description(Some("Versions, health, metrics and administration."))
        .build()];
    for resource in version.resources.values() {
        components = components
            .schema(
                schema::row_name(resource),
                schema::row(resource, &version.resources),
            )
            .schema(schema::page_name(resource), schema::page(resource))
            .schemas_from_iter(writes::body_schemas(resource))
            .schemas_from_iter(changes::schemas(resource));
        for (path, item) in operations::path_items(version, resource, auth) {
            paths = paths.path(path, item);
        }
        if let Some((path, item)) = aggregates::path_item(version, resource, auth) {
            components = components.schema(
                aggregates::answer_name(resource),
                aggregates::answer(resource),
            );
            paths = paths.path(path, item);
        }
        tags.push(
            TagBuilder::new()
                .name(&resource.name)
                .description(Some(
                    resource
                        .description
                        .clone()
                        .unwrap_or_else(|| format!("The {} resource.", resource.name)),
                ))
                .build(),
        );
    }
    for procedure in version.procedures.values() {
        components = components.schemas_from_iter(procedures::schemas(procedure));
        let (path, item) = procedures::path_item(version, procedure, auth);
        paths = paths.path(path, item);
        if !tags.iter().any(|t| t.name == "procedures") {
            tags.push(
                TagBuilder::new()
                    .name("procedures")
                    .description(Some("Stored procedures."))
                    .build(),
            );
        }
    }
    components = components.schema("Problem", schema::problem());
    for (name, response) in responses::problem_responses() {
        components = components.response(name, response);
    }
    if auth {
        components = components.security_scheme(
            BEARER,
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .description(Some(
                        "A JWT from the identity provider. Each operation lists the scope it needs.",
                    ))
                    .build(),
            ),
        );
    }
    let (service_paths, service_components) = service::paths_and_schemas(admin_scope);
    let mut document = OpenApiBuilder::new()
        .info(info)
        // Relative: the document is served by the API it describes, wherever that is.
        .servers(Some([ServerBuilder::new()
            .url("/")
            .description(Some("The server that serves this document."))
            .build()]))
        .paths(paths)
        .components(Some(components.build()))
        .tags(Some(tags))
        .build();
    document.paths.paths.extend(service_paths.paths);
    // Only the problem responses some operation refers to (a read-only version has no 412).
    let used = serde_json::to_string(&document.paths).unwrap_or_default();
    if let Some(components) = document.components.as_mut() {
        components.schemas.extend(service_components.schemas);
        components
            .responses
            .retain(|name, _| used.contains(&format!("\"#/components/responses/{name}\"")));
    }
    document
}

/// A document rendered the ways Portico serves it.
#[derive(Debug, Clone)]
pub struct Rendered {
    /// Pretty JSON, as published in `openapi/`.
    pub json: String,
    /// YAML.
    pub yaml: String,
}

impl Rendered {
    /// Renders `document` once.
    pub fn new(document: &OpenApi) -> Self {
        let mut json = document.to_pretty_json().unwrap_or_default();
        json.push('\n');
        Self {
            json,
            yaml: document.to_yaml().unwrap_or_default(),
        }
    }
}
