//! The paths every Portico serves beside its versions: the version list, health, metrics and
//! administration (cache, webhook subscriptions, deliveries), with the bodies they answer.
//! The test suite validates every answer these paths give against this description.

use serde_json::{json, Value};
use utoipa::openapi::{Components, Paths};

/// An operation's answers: `ok` plus the named problem responses.
fn answers(ok: Value, problems: &[&str]) -> Value {
    let mut out = ok;
    for name in problems {
        if let Some(status) = super::responses::problem_status(name) {
            out[status.to_string()] = json!({ "$ref": format!("#/components/responses/{name}") });
        }
    }
    out
}

fn body(description: &str, schema: &str) -> Value {
    json!({
        "description": description,
        "content": { "application/json": { "schema": { "$ref": format!("#/components/schemas/{schema}") } } }
    })
}

fn literals(admin_scope: Option<&str>) -> (Value, Value) {
    let (admin_security, admin_note, admin_errors): (Value, &str, &[&str]) = match admin_scope {
        Some(scope) => (
            json!([{ super::BEARER: [scope] }]),
            "Needs the admin scope.",
            &[
                "Unauthorized",
                "Forbidden",
                "RateLimited",
                "MethodNotAllowed",
            ],
        ),
        None => (
            json!([{}]),
            "Accepted only from loopback (no [auth] is configured).",
            &["Forbidden", "MethodNotAllowed"],
        ),
    };
    let open = |id: &str, summary: &str, description: &str, ok: Value, tag: &str| {
        json!({
            "get": {
                "operationId": id, "summary": summary, "description": description, "tags": [tag],
                "security": [],
                "responses": answers(ok, &["MethodNotAllowed"]),
            }
        })
    };
    let admin = |method: &str,
                 id: &str,
                 summary: &str,
                 ok: Value,
                 errors: &[&str],
                 extra: Value| {
        let mut all: Vec<&str> = admin_errors.to_vec();
        all.extend(errors);
        let mut operation = json!({
            "operationId": id, "summary": summary, "description": admin_note, "tags": ["service"],
            "security": admin_security.clone(),
            "responses": answers(ok, &all),
        });
        if let (Some(operation), Some(extra)) = (operation.as_object_mut(), extra.as_object()) {
            operation.extend(extra.clone());
        }
        (method.to_string(), operation)
    };
    let item = |operations: Vec<(String, Value)>| -> Value {
        Value::Object(operations.into_iter().collect())
    };
    let path_param = |name: &str, description: &str, schema: Value| json!({ "name": name, "in": "path", "required": true, "description": description, "schema": schema });
    let subscription_name = path_param(
        "name",
        "The subscription's name.",
        json!({ "type": "string", "pattern": "^[A-Za-z0-9_-]{1,64}$" }),
    );
    let delivery_id = path_param(
        "id",
        "A delivery's id.",
        json!({ "type": "integer", "format": "int64", "minimum": 1 }),
    );
    let query = |name: &str, description: &str, schema: Value| json!({ "name": name, "in": "query", "required": false, "description": description, "schema": schema });
    let delivery_filters = json!({ "parameters": [
        query("subscription", "Only this subscription's deliveries.", json!({ "type": "string", "minLength": 1 })),
        query("status", "Only deliveries in this state.", json!({ "type": "string", "enum": ["pending", "delivered", "dead"] })),
        query("before", "`next_before` of the previous page.", json!({ "type": "integer", "format": "int64" })),
        query("limit", "Deliveries per page (default 100).", json!({ "type": "integer", "minimum": 1, "maximum": 1000 })),
    ]});
    let paths = json!({
        "/": open("listVersions", "The versions", "The versions served, their status and where their documents are.",
            json!({ "200": body("The versions.", "VersionList") }), "service"),
        "/healthz": open("healthz", "Liveness", "Answers while the process runs; never touches a database.",
            json!({ "200": body("Portico is running.", "Health") }), "service"),
        "/readyz": open("readyz", "Readiness", "Every source answers a trivial query (at most once a second, whoever asks) and, with `[server] ready_max_feed_lag`, no change feed is further behind the database than that.",
            json!({
                "200": body("Every source answers (and every feed is within the bound).", "Readiness"),
                "503": body("Some source does not answer, or some feed is behind.", "Readiness"),
            }), "service"),
        "/metrics": open("metrics", "Metrics", "OpenMetrics text: requests, sources, cache, feeds and deliveries.",
            json!({ "200": {
                "description": "The metrics.",
                "content": { "application/openmetrics-text; version=1.0.0; charset=utf-8": { "schema": { "type": "string" } } }
            }}), "service"),
        "/admin/cache": item(vec![admin("delete", "purgeCache", "Drop every cached response",
            json!({ "200": body("Every cached response is dropped.", "Purged") }), &[], json!({}))]),
        "/admin/cache/{resource}": item(vec![admin("delete", "purgeResourceCache", "Drop one resource's cached responses (every version)",
            json!({ "200": body("The resource's cached responses are dropped.", "Purged") }), &["NotFound"],
            json!({ "parameters": [path_param("resource", "A resource name, in any version.", json!({ "type": "string", "minLength": 1 }))] }))]),
        "/admin/reload": item(vec![admin("post", "reloadConfiguration", "Read the configuration file again and swap it in",
            json!({ "200": body("Swapped in; what changed.", "Reloaded") }), &["ConfigurationRefused", "Conflict"], json!({}))]),
        "/admin/subscriptions": item(vec![
            admin("get", "listSubscriptions", "Webhook subscriptions",
                json!({ "200": body("Every subscription (configured and created here).", "SubscriptionList") }), &["NotFound"], json!({})),
            admin("post", "createSubscription", "Subscribe a URL to events",
                json!({ "201": {
                    "description": "Created; the answer holds the signing secret, this once.",
                    "headers": { "Location": { "description": "Where the subscription is served.", "schema": { "type": "string" } } },
                    "content": { "application/json": { "schema": { "$ref": "#/components/schemas/SubscriptionWithSecret" } } }
                }}),
                &["BadParameter", "NotFound", "Conflict", "Invalid", "PayloadTooLarge", "UnsupportedMediaType", "RequestTimeout"],
                json!({ "requestBody": { "required": true, "content": { "application/json": { "schema": { "$ref": "#/components/schemas/NewSubscription" } } } } })),
        ]),
        "/admin/subscriptions/{name}": item(vec![
            admin("get", "getSubscription", "One subscription",
                json!({ "200": body("The subscription.", "Subscription") }), &["NotFound"],
                json!({ "parameters": [subscription_name.clone()] })),
            admin("delete", "deleteSubscription", "Remove a subscription and its deliveries",
                json!({ "204": { "description": "Removed." } }), &["NotFound", "Conflict"],
                json!({ "parameters": [subscription_name.clone()] })),
        ]),
        "/admin/subscriptions/{name}/{action}": item(vec![admin("post", "actOnSubscription",
            "Disable, enable, rotate the secret of, or recover the dead letters of a subscription",
            json!({ "200": body("The subscription after `disable`/`enable`, it and its new secret after `rotate`, or `{\"recovered\": n}` after `recover`.", "SubscriptionAction") }),
            &["BadParameter", "NotFound", "Conflict"],
            json!({ "parameters": [
                subscription_name,
                path_param("action", "What to do.", json!({ "type": "string", "enum": ["disable", "enable", "rotate", "recover"] })),
                query("since", "For `recover` (required there): dead letters created since, as Unix seconds or an RFC 3339 UTC time.", json!({ "type": "string", "minLength": 1 })),
            ]}))]),
        "/admin/deliveries": item(vec![admin("get", "listDeliveries", "Webhook deliveries, newest first",
            json!({ "200": body("A page of deliveries.", "DeliveryPage") }), &["BadParameter", "NotFound"], delivery_filters.clone())]),
        "/admin/dead-letters": item(vec![admin("get", "listDeadLetters", "Deliveries that gave up, newest first",
            json!({ "200": body("A page of dead letters.", "DeliveryPage") }), &["BadParameter", "NotFound"], delivery_filters)]),
        "/admin/deliveries/{id}": item(vec![admin("get", "getDelivery", "One delivery and its attempts",
            json!({ "200": body("The delivery.", "DeliveryWithAttempts") }), &["NotFound"],
            json!({ "parameters": [delivery_id.clone()] }))]),
        "/admin/deliveries/{id}/resend": item(vec![admin("post", "resendDelivery", "Deliver again now, with a fresh retry schedule",
            json!({ "202": body("Due again.", "Resent") }), &["NotFound"],
            json!({ "parameters": [delivery_id] }))]),
        "/admin/overview": item(vec![admin("get", "getOverview", "What an operator watches: sources, cache, feeds, subscriptions, versions",
            json!({ "200": body("The overview (the console reads it).", "Overview") }), &[], json!({}))]),
    });
    let text = json!({ "type": "string" });
    let nullable_text = json!({ "type": ["string", "null"] });
    let time = json!({ "type": "string", "format": "date-time" });
    let subscription_properties = json!({
        "name": text, "url": { "type": "string", "format": "uri" }, "version": text,
        "events": { "type": "array", "items": text },
        "scopes": { "type": "array", "items": text },
        "claims": { "type": "object", "description": "The claims deliveries are read with (row policies)." },
        "enabled": { "type": "boolean" },
        "disabled_reason": { "type": ["string", "null"], "description": "Why Portico disabled it (the endpoint answered 410 Gone); null otherwise. `enable` clears it." },
        "ordered": { "type": "boolean", "description": "A key's later events wait while an earlier one is being retried." },
        "origin": { "type": "string", "enum": ["config", "api"] },
        "created_at": time,
        "signing_secrets": { "type": "integer", "minimum": 0, "description": "Secrets signing now (two during a rotation's grace period)." },
    });
    let subscription_required = json!([
        "name",
        "url",
        "version",
        "events",
        "scopes",
        "claims",
        "enabled",
        "disabled_reason",
        "ordered",
        "origin",
        "created_at",
        "signing_secrets"
    ]);
    let with = |extra: Value, required: &[&str]| {
        let mut properties = subscription_properties.clone();
        if let (Some(p), Some(e)) = (properties.as_object_mut(), extra.as_object()) {
            p.extend(e.clone());
        }
        let mut all = subscription_required
            .as_array()
            .cloned()
            .unwrap_or_default();
        all.extend(required.iter().map(|r| json!(r)));
        json!({ "type": "object", "properties": properties, "required": all, "additionalProperties": false })
    };
    let delivery_properties = json!({
        "id": { "type": "integer", "format": "int64" }, "event_id": text, "subscription": text,
        "status": { "type": "string", "enum": ["pending", "delivered", "dead"] },
        "attempts": { "type": "integer", "minimum": 0 },
        "next_attempt_at": { "type": ["string", "null"], "format": "date-time" },
        "created_at": time, "last_error": nullable_text,
        "event": { "type": ["object", "null"], "description": "The event as delivered (a change event)." },
    });
    let delivery_required = json!([
        "id",
        "event_id",
        "subscription",
        "status",
        "attempts",
        "next_attempt_at",
        "created_at",
        "last_error",
        "event"
    ]);
    let mut delivery_with_attempts = delivery_properties.clone();
    delivery_with_attempts["attempt_log"] = json!({ "type": "array", "items": {
        "type": "object", "additionalProperties": false,
        "required": ["at", "status", "error", "duration_ms"],
        "properties": {
            "at": time, "status": { "type": ["integer", "null"], "description": "The receiver's HTTP status, if it answered." },
            "error": nullable_text, "duration_ms": { "type": "integer", "minimum": 0 },
        }
    }});
    let mut attempts_required = delivery_required.clone();
    if let Some(list) = attempts_required.as_array_mut() {
        list.push(json!("attempt_log"));
    }
    let components = json!({ "schemas": {
        "VersionList": { "type": "object", "additionalProperties": false, "required": ["versions"], "properties": {
            "versions": { "type": "array", "items": { "type": "object", "additionalProperties": false,
                "required": ["name", "description", "status", "deprecated", "sunset", "links"],
                "properties": {
                    "name": text, "description": nullable_text,
                    "status": { "type": "string", "enum": ["current", "deprecated"] },
                    "deprecated": { "type": ["string", "null"], "format": "date" },
                    "sunset": { "type": ["string", "null"], "format": "date" },
                    "links": { "type": "object", "additionalProperties": false, "required": ["self", "openapi"],
                        "properties": { "self": text, "openapi": text } },
                } } } } },
        "Health": { "type": "object", "additionalProperties": false, "required": ["status"],
            "properties": { "status": { "type": "string", "enum": ["ok"] } } },
        "Readiness": { "type": "object", "additionalProperties": false, "required": ["status", "sources"], "properties": {
            "status": { "type": "string", "enum": ["ready", "unavailable"] },
            "sources": { "type": "object", "description": "Each source's answer.",
                "additionalProperties": { "type": "string", "enum": ["ok", "unavailable"] } },
            "feeds": { "type": "object", "description": "With `ready_max_feed_lag`: each polled change feed, and whether it is within the bound.",
                "additionalProperties": { "type": "object", "additionalProperties": false, "required": ["status", "lag_seconds"], "properties": {
                    "status": { "type": "string", "enum": ["ok", "behind"] },
                    "lag_seconds": { "type": "integer", "minimum": 0, "description": "Seconds since the feed's last completed poll began reading (since polling started, before one completed)." } } } } } },
        "Reloaded": { "type": "object", "additionalProperties": false,
            "required": ["generation", "changed", "sources_kept", "sources_rebuilt", "sources_added", "sources_removed", "caches_dropped", "feeds_started", "feeds_stopped", "feeds_kept"],
            "properties": {
                "generation": { "type": "integer", "minimum": 2, "description": "The configuration's generation now serving (1 at start)." },
                "changed": { "type": "boolean", "description": "Whether the file differs from the running configuration." },
                "sources_kept": { "type": "array", "items": text, "description": "Sources whose settings did not change: their pools were kept." },
                "sources_rebuilt": { "type": "array", "items": text, "description": "Sources whose settings changed: built afresh." },
                "sources_added": { "type": "array", "items": text },
                "sources_removed": { "type": "array", "items": text },
                "caches_dropped": { "type": "array", "items": text, "description": "Resources whose cached answers were dropped." },
                "feeds_started": { "type": "array", "items": text },
                "feeds_stopped": { "type": "array", "items": text },
                "feeds_kept": { "type": "array", "items": text } } },
        "Purged": { "type": "object", "additionalProperties": false, "required": ["purged"],
            "properties": { "purged": { "type": "string", "description": "`all`, or the resource's name." } } },
        "NewSubscription": { "type": "object", "additionalProperties": false, "required": ["name", "url", "version"], "properties": {
            "name": { "type": "string", "pattern": "^[A-Za-z0-9_-]{1,64}$" },
            "url": { "type": "string", "format": "uri", "description": "A public https or http URL (private addresses need `[webhooks] allow_private`)." },
            "version": text,
            "events": { "type": "array", "items": text, "description": "Event patterns (`jobs.*`, `*`); every event by default." },
            "scopes": { "type": "array", "items": text, "description": "The scopes deliveries are read with." },
            "claims": { "type": "object", "description": "The claims deliveries are read with (row policies)." },
            "ordered": { "type": "boolean", "description": "Per-key order: a key's later events wait while an earlier one is being retried (default false)." },
        } },
        "Subscription": with(json!({}), &[]),
        "SubscriptionWithSecret": with(json!({ "secret": text }), &["secret"]),
        "SubscriptionAction": { "oneOf": [
            with(json!({}), &[]),
            with(json!({ "secret": text, "previous_secrets_valid_until": time }), &["secret", "previous_secrets_valid_until"]),
            { "type": "object", "additionalProperties": false, "required": ["recovered"],
                "properties": { "recovered": { "type": "integer", "minimum": 0 } } },
        ] },
        "SubscriptionList": { "type": "object", "additionalProperties": false, "required": ["data"],
            "properties": { "data": { "type": "array", "items": { "$ref": "#/components/schemas/Subscription" } } } },
        "Delivery": { "type": "object", "additionalProperties": false, "required": delivery_required, "properties": delivery_properties },
        "DeliveryWithAttempts": { "type": "object", "additionalProperties": false, "required": attempts_required, "properties": delivery_with_attempts },
        "DeliveryPage": { "type": "object", "additionalProperties": false, "required": ["data", "next_before"], "properties": {
            "data": { "type": "array", "items": { "$ref": "#/components/schemas/Delivery" } },
            "next_before": { "type": ["integer", "null"], "format": "int64", "description": "Pass as `before` for the next page; null on the last." } } },
        "Overview": overview_schema(),
        "Resent": { "type": "object", "additionalProperties": false, "required": ["resent"],
            "properties": { "resent": { "type": "integer", "format": "int64" } } },
    }});
    (paths, components)
}

/// The body of `GET /admin/overview`.
fn overview_schema() -> Value {
    let count = json!({ "type": "integer", "minimum": 0 });
    let text = json!({ "type": "string" });
    let time = json!({ "type": "string", "format": "date-time" });
    let maybe_ms = json!({ "type": ["number", "null"], "minimum": 0 });
    let date = json!({ "type": ["string", "null"], "format": "date" });
    let object = |required: &[&str], properties: Value| json!({ "type": "object", "additionalProperties": false, "required": required, "properties": properties });
    let source = object(
        &[
            "name",
            "dialect",
            "health",
            "breaker",
            "connections_in_use",
            "connections_max",
            "waiting",
            "shed",
            "statements",
            "latency_mean_ms",
            "latency_p95_ms",
        ],
        json!({
            "name": text, "dialect": { "type": "string", "enum": ["sqlite", "postgres", "mysql", "tsql", "generic"] },
            "health": { "type": "string", "enum": ["ok", "unavailable", "unknown"], "description": "The last readiness probe's answer (at most a second old)." },
            "breaker": { "type": "string", "enum": ["closed", "open", "half_open"] },
            "connections_in_use": count, "connections_max": count, "waiting": count,
            "shed": count, "statements": count,
            "latency_mean_ms": maybe_ms, "latency_p95_ms": maybe_ms,
        }),
    );
    let cache = object(
        &[
            "hits",
            "misses",
            "hit_rate",
            "stale_served",
            "entries",
            "bytes",
        ],
        json!({
            "hits": count, "misses": count,
            "hit_rate": { "type": ["number", "null"], "minimum": 0, "maximum": 1 },
            "stale_served": count, "entries": count, "bytes": count,
        }),
    );
    let feed = object(
        &[
            "name",
            "resources",
            "strategy",
            "lag_seconds",
            "last_poll_at",
            "poll_errors",
            "last_error",
        ],
        json!({
            "name": text, "resources": { "type": "array", "items": text },
            "strategy": { "type": "string", "enum": ["high_water_mark", "snapshot_diff", "change_tracking", "rowversion"] },
            "lag_seconds": { "type": ["integer", "null"], "minimum": 0 },
            "last_poll_at": { "type": ["string", "null"], "format": "date-time" },
            "poll_errors": count,
            "last_error": { "oneOf": [{ "type": "null" }, object(&["at", "kind"], json!({ "at": time, "kind": text }))] },
        }),
    );
    let subscription = object(
        &[
            "name",
            "version",
            "enabled",
            "disabled_reason",
            "delivered",
            "pending",
            "retrying",
            "dead_letters",
        ],
        json!({
            "name": text, "version": text, "enabled": { "type": "boolean" },
            "disabled_reason": { "type": ["string", "null"] },
            "delivered": count, "pending": count, "retrying": count, "dead_letters": count,
        }),
    );
    let version = object(
        &["name", "status", "deprecated", "sunset"],
        json!({ "name": text, "status": { "type": "string", "enum": ["current", "deprecated"] }, "deprecated": date, "sunset": date }),
    );
    object(
        &[
            "generated_at",
            "sources",
            "cache",
            "feeds",
            "subscriptions",
            "versions",
        ],
        json!({
            "generated_at": time,
            "sources": { "type": "array", "items": source },
            "cache": cache,
            "feeds": { "type": "array", "items": feed },
            "subscriptions": { "type": "array", "items": subscription },
            "versions": { "type": "array", "items": version },
        }),
    )
}

/// The service paths and the schemas they use; `admin_scope` when bearer tokens are on.
pub fn paths_and_schemas(admin_scope: Option<&str>) -> (Paths, Components) {
    let (paths, components) = literals(admin_scope);
    // Both literals above are written in OpenAPI's own shape (a unit test reads them back).
    (
        serde_json::from_value(paths).unwrap_or_default(),
        serde_json::from_value(components).unwrap_or_default(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_service_description_is_well_formed_openapi() {
        for scope in [None, Some("portico:admin")] {
            let (paths, components) = literals(scope);
            let paths: Paths = serde_json::from_value(paths).expect("paths");
            for (name, schema) in components["schemas"].as_object().unwrap() {
                let parsed: Result<utoipa::openapi::RefOr<utoipa::openapi::schema::Schema>, _> =
                    serde_json::from_value(schema.clone());
                assert!(parsed.is_ok(), "{name}: {:?}", parsed.err());
            }
            let components: Components = serde_json::from_value(components).expect("components");
            assert!(paths
                .paths
                .contains_key("/admin/subscriptions/{name}/{action}"));
            assert!(components.schemas.contains_key("DeliveryWithAttempts"));
        }
    }
}
