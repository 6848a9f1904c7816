//! The OpenAPI 3.1 document of each version, built at runtime from the catalog with utoipa's
//! builders (resources come from configuration, so nothing here can be derived).

pub mod diff;
mod operations;
pub mod schema;

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{ComponentsBuilder, InfoBuilder, OpenApi, OpenApiBuilder, PathsBuilder};

use crate::catalog::Version;

/// Name of the bearer security scheme.
pub const BEARER: &str = "bearer";

/// The document of `version`; `auth` says whether bearer tokens are configured.
pub fn document(version: &Version, auth: bool) -> OpenApi {
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
    for resource in version.resources.values() {
        components = components
            .schema(schema::row_name(resource), schema::row(resource))
            .schema(schema::page_name(resource), schema::page(resource));
        for (path, item) in operations::path_items(version, resource, auth) {
            paths = paths.path(path, item);
        }
    }
    components = components.schema("Problem", schema::problem());
    for (name, response) in operations::problem_responses() {
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
    OpenApiBuilder::new()
        .info(info)
        .paths(paths)
        .components(Some(components.build()))
        .build()
}

/// The document as the pretty JSON Portico serves and publishes.
pub fn to_json(document: &OpenApi) -> String {
    let mut text = document.to_pretty_json().unwrap_or_default();
    text.push('\n');
    text
}
