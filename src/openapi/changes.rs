//! The pull feed of a watched resource: `GET /{v}/{resource}/changes`.

use utoipa::openapi::content::ContentBuilder;
use utoipa::openapi::path::{
    HttpMethod, OperationBuilder, ParameterBuilder, ParameterIn, PathItem,
};
use utoipa::openapi::response::ResponseBuilder;
use utoipa::openapi::schema::{ArrayBuilder, ObjectBuilder, Ref, Schema, SchemaFormat, Type};
use utoipa::openapi::{KnownFormat, RefOr, Required};

use super::responses::{deprecated, responses, security, JSON};
use super::schema::{pascal, row_name, singular};
use crate::catalog::{Resource, Version};

fn event_name(resource: &Resource) -> String {
    format!("{}ChangeEvent", row_name(resource))
}

fn page_name(resource: &Resource) -> String {
    format!("{}ChangePage", row_name(resource))
}

fn string() -> ObjectBuilder {
    ObjectBuilder::new().schema_type(Type::String)
}

/// The event and page schemas of a watched resource.
pub fn schemas(resource: &Resource) -> Vec<(String, RefOr<Schema>)> {
    if !resource.changes {
        return Vec::new();
    }
    let types = ["created", "updated", "deleted"].map(|k| format!("{}.{k}", resource.name));
    let event = ObjectBuilder::new()
        .description(Some(format!(
            "A change to a {} noticed in the legacy database; `id` is stable (the `webhook-id` \
             of its deliveries). A deleted row carries its last known values.",
            singular(&resource.name)
        )))
        .property("id", string().description(Some("Stable event id.")))
        .property("type", string().enum_values(Some(types)))
        .property(
            "timestamp",
            string().format(Some(SchemaFormat::KnownFormat(KnownFormat::DateTime))),
        )
        .property(
            "data",
            ObjectBuilder::new()
                .property(
                    "key",
                    string().description(Some("The row's key as in its URL.")),
                )
                .property(
                    "sequence",
                    ObjectBuilder::new()
                        .schema_type(Type::Integer)
                        .format(Some(SchemaFormat::KnownFormat(KnownFormat::Int64)))
                        .minimum(Some(1))
                        .description(Some(
                            "The key's change counter: it grows with each change of the key, \
                             deletes included. Retries and resends can deliver events out of \
                             order: apply an event only if its sequence is greater than the last \
                             one applied for its key. Absent only on events stored before \
                             Portico kept the counter.",
                        )),
                )
                .property("row", Ref::from_schema_name(row_name(resource)))
                .required("key")
                .required("row"),
        )
        .required("id")
        .required("type")
        .required("timestamp")
        .required("data");
    let page = ObjectBuilder::new()
        .property(
            "data",
            ArrayBuilder::new().items(Ref::from_schema_name(event_name(resource))),
        )
        .property(
            "next_cursor",
            string().description(Some("Where to resume: pass it as `after` (always given).")),
        )
        .property(
            "has_more",
            ObjectBuilder::new()
                .schema_type(Type::Boolean)
                .description(Some("More events wait: fetch again at once.")),
        )
        .required("data")
        .required("next_cursor")
        .required("has_more");
    vec![
        (event_name(resource), event.build().into()),
        (page_name(resource), page.build().into()),
    ]
}

/// `/{v}/{resource}/changes`, when a feed watches the resource's table.
pub fn path_item(version: &Version, resource: &Resource, auth: bool) -> Option<(String, PathItem)> {
    if !resource.changes {
        return None;
    }
    let parameters = vec![
        ParameterBuilder::new()
            .name("after")
            .parameter_in(ParameterIn::Query)
            .required(Required::False)
            .description(Some(
                "A `next_cursor` of an earlier page; from the oldest event kept without it.",
            ))
            .schema(Some(string().pattern(Some("^[0-9]{1,18}$"))))
            .build(),
        ParameterBuilder::new()
            .name("limit")
            .parameter_in(ParameterIn::Query)
            .required(Required::False)
            .description(Some("Events per page (default 100)."))
            .schema(Some(
                ObjectBuilder::new()
                    .schema_type(Type::Integer)
                    .minimum(Some(1))
                    .maximum(Some(1000)),
            ))
            .build(),
    ];
    let ok = ResponseBuilder::new()
        .description(format!(
            "Changes to {} in order; row policies and field masks apply as to a read.",
            resource.name
        ))
        .content(
            JSON,
            ContentBuilder::new()
                .schema(Some(Ref::from_schema_name(page_name(resource))))
                .build(),
        )
        .build();
    let operation = OperationBuilder::new()
        .operation_id(Some(format!(
            "list{}Changes",
            pascal(&singular(&resource.name))
        )))
        .summary(Some(format!("Changes to {}", resource.name)))
        .description(Some(
            "Events in the order they were seen, from `after` on; each page's `next_cursor` \
             resumes where it ended.",
        ))
        .tag(&resource.name)
        .parameters(Some(parameters))
        .responses(responses(
            ok,
            &["BadParameter", "NotFound", "CursorExpired"],
            auth,
        ))
        .securities(security(resource, auth))
        .deprecated(deprecated(version));
    Some((
        format!("/{}/{}/changes", version.name, resource.name),
        PathItem::new(HttpMethod::Get, operation),
    ))
}
