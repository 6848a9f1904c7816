//! Breaking changes between two OpenAPI documents of one version: what a client generated from
//! the old document would trip over when served by the new one.

use std::collections::BTreeSet;

use serde_json::Value;

/// What changed, by location.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Report {
    /// Changes that break a client of the old document.
    pub breaking: Vec<String>,
    /// Additions, which old clients ignore.
    pub additions: Vec<String>,
}

/// Compares `old` with `new`.
pub fn diff(old: &Value, new: &Value) -> Report {
    let mut report = Report::default();
    let docs = Docs { old, new };
    let empty = serde_json::Map::new();
    let old_paths = old["paths"].as_object().unwrap_or(&empty);
    let new_paths = new["paths"].as_object().unwrap_or(&empty);
    for (path, old_item) in old_paths {
        let Some(new_item) = new_paths.get(path) else {
            report.breaking.push(format!("{path}: path removed"));
            continue;
        };
        for method in [
            "get", "put", "post", "delete", "options", "head", "patch", "trace",
        ] {
            let at = format!("{} {path}", method.to_uppercase());
            match (old_item.get(method), new_item.get(method)) {
                (Some(o), Some(n)) => docs.operation(&at, o, n, &mut report),
                (Some(_), None) => report.breaking.push(format!("{at}: operation removed")),
                (None, Some(_)) => report.additions.push(format!("{at}: operation added")),
                (None, None) => {}
            }
        }
    }
    for path in new_paths.keys().filter(|p| !old_paths.contains_key(*p)) {
        report.additions.push(format!("{path}: path added"));
    }
    report
}

/// Whether a schema is read by clients (a response) or written by them (a request).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Direction {
    Request,
    Response,
}

struct Docs<'a> {
    old: &'a Value,
    new: &'a Value,
}

impl Docs<'_> {
    fn operation(&self, at: &str, old: &Value, new: &Value, report: &mut Report) {
        let old_params: Vec<&Value> = list(&old["parameters"]);
        let new_params: Vec<&Value> = list(&new["parameters"]);
        for op in &old_params {
            let op = resolve(op, self.old);
            let name = op["name"].as_str().unwrap_or("");
            let place = op["in"].as_str().unwrap_or("");
            let found = new_params
                .iter()
                .map(|p| resolve(p, self.new))
                .find(|p| p["name"] == op["name"] && p["in"] == op["in"]);
            let where_ = format!("{at}: parameter `{name}` ({place})");
            match found {
                None => report.breaking.push(format!("{where_} removed")),
                Some(np) => {
                    if !is_true(&op["required"]) && is_true(&np["required"]) {
                        report.breaking.push(format!("{where_} became required"));
                    }
                    self.schema(
                        &where_,
                        &op["schema"],
                        &np["schema"],
                        Direction::Request,
                        report,
                        0,
                    );
                }
            }
        }
        for np in &new_params {
            let np = resolve(np, self.new);
            let known = old_params
                .iter()
                .map(|p| resolve(p, self.old))
                .any(|p| p["name"] == np["name"] && p["in"] == np["in"]);
            if !known {
                let name = np["name"].as_str().unwrap_or("");
                if is_true(&np["required"]) {
                    report
                        .breaking
                        .push(format!("{at}: required parameter `{name}` added"));
                } else {
                    report
                        .additions
                        .push(format!("{at}: parameter `{name}` added"));
                }
            }
        }
        let old_body = resolve(&old["requestBody"], self.old)["content"].as_object();
        let new_body = resolve(&new["requestBody"], self.new)["content"].as_object();
        for (media, old_media) in old_body.into_iter().flatten() {
            let where_ = format!("{at}: request body {media}");
            match new_body.and_then(|c| c.get(media)) {
                None => report.breaking.push(format!("{where_} removed")),
                Some(new_media) => self.schema(
                    &where_,
                    &old_media["schema"],
                    &new_media["schema"],
                    Direction::Request,
                    report,
                    0,
                ),
            }
        }
        let empty = serde_json::Map::new();
        let old_responses = old["responses"].as_object().unwrap_or(&empty);
        let new_responses = new["responses"].as_object().unwrap_or(&empty);
        for (status, old_response) in old_responses {
            let where_ = format!("{at}: response {status}");
            let Some(new_response) = new_responses.get(status) else {
                if status.starts_with('2') {
                    report.breaking.push(format!("{where_} removed"));
                }
                continue;
            };
            let old_content = resolve(old_response, self.old)["content"].as_object();
            let new_content = resolve(new_response, self.new)["content"].as_object();
            for (media, old_media) in old_content.into_iter().flatten() {
                match new_content.and_then(|c| c.get(media)) {
                    None => report.breaking.push(format!("{where_}: {media} removed")),
                    Some(new_media) => self.schema(
                        &format!("{where_} {media}"),
                        &old_media["schema"],
                        &new_media["schema"],
                        Direction::Response,
                        report,
                        0,
                    ),
                }
            }
        }
    }

    fn schema(
        &self,
        at: &str,
        old: &Value,
        new: &Value,
        direction: Direction,
        report: &mut Report,
        depth: usize,
    ) {
        if depth > 32 {
            return;
        }
        let (old, new) = (resolve(old, self.old), resolve(new, self.new));
        let (old_types, new_types) = (types(old), types(new));
        let strip_null = |t: &BTreeSet<String>| -> BTreeSet<String> {
            t.iter().filter(|t| *t != "null").cloned().collect()
        };
        if strip_null(&old_types) != strip_null(&new_types) && !old_types.is_empty() {
            report.breaking.push(format!(
                "{at}: type changed from {old_types:?} to {new_types:?}"
            ));
        } else if direction == Direction::Response
            && !old_types.contains("null")
            && new_types.contains("null")
        {
            report.breaking.push(format!("{at}: became nullable"));
        } else if direction == Direction::Request
            && old_types.contains("null")
            && !new_types.contains("null")
        {
            report.breaking.push(format!("{at}: no longer takes null"));
        }
        if old.get("format") != new.get("format") && old.get("format").is_some() {
            report.breaking.push(format!(
                "{at}: format changed from {} to {}",
                old["format"], new["format"]
            ));
        }
        if let Some(old_enum) = old["enum"].as_array() {
            let new_enum = new["enum"].as_array();
            let missing: Vec<&Value> = old_enum
                .iter()
                .filter(|v| new_enum.is_some_and(|n| !n.contains(v)))
                .collect();
            if !missing.is_empty() {
                report
                    .breaking
                    .push(format!("{at}: enum narrowed, {missing:?} removed"));
            }
        }
        if direction == Direction::Request {
            tightened(at, old, new, report);
        }
        // Object properties.
        let empty = serde_json::Map::new();
        let old_props = old["properties"].as_object().unwrap_or(&empty);
        let new_props = new["properties"].as_object().unwrap_or(&empty);
        for (name, old_prop) in old_props {
            let where_ = format!("{at}.{name}");
            match new_props.get(name) {
                None => report.breaking.push(format!("{where_}: field removed")),
                Some(new_prop) => {
                    self.schema(&where_, old_prop, new_prop, direction, report, depth + 1)
                }
            }
        }
        for name in new_props.keys().filter(|n| !old_props.contains_key(*n)) {
            report.additions.push(format!("{at}.{name}: field added"));
        }
        if direction == Direction::Request {
            let required = |s: &Value| -> BTreeSet<String> {
                list(&s["required"])
                    .iter()
                    .filter_map(|v| v.as_str().map(str::to_string))
                    .collect()
            };
            for name in required(new).difference(&required(old)) {
                report
                    .breaking
                    .push(format!("{at}.{name}: became required"));
            }
        }
        if old.get("items").is_some() {
            self.schema(
                &format!("{at}[]"),
                &old["items"],
                &new["items"],
                direction,
                report,
                depth + 1,
            );
        }
    }
}

/// A bound a client's value must now meet that it did not have to before.
fn tightened(at: &str, old: &Value, new: &Value, report: &mut Report) {
    let number = |v: &Value, k: &str| v.get(k).and_then(Value::as_f64);
    for (key, lower_is_tighter) in [
        ("maximum", true),
        ("exclusiveMaximum", true),
        ("maxLength", true),
        ("maxItems", true),
        ("minimum", false),
        ("exclusiveMinimum", false),
        ("minLength", false),
        ("minItems", false),
    ] {
        let tighter = match (number(old, key), number(new, key)) {
            (None, Some(_)) => true,
            (Some(o), Some(n)) => (n < o) == lower_is_tighter && n != o,
            _ => false,
        };
        if tighter {
            report.breaking.push(format!(
                "{at}: {key} tightened from {} to {}",
                old.get(key).unwrap_or(&Value::Null),
                new[key]
            ));
        }
    }
    if new.get("pattern").is_some() && old.get("pattern") != new.get("pattern") {
        report
            .breaking
            .push(format!("{at}: pattern changed to {}", new["pattern"]));
    }
}

fn is_true(value: &Value) -> bool {
    value.as_bool() == Some(true)
}

fn list(value: &Value) -> Vec<&Value> {
    value
        .as_array()
        .map(|a| a.iter().collect())
        .unwrap_or_default()
}

/// The JSON types a schema allows (`type` as a string or a list).
fn types(schema: &Value) -> BTreeSet<String> {
    match &schema["type"] {
        Value::String(t) => [t.clone()].into(),
        Value::Array(ts) => ts
            .iter()
            .filter_map(|t| t.as_str().map(str::to_string))
            .collect(),
        _ => BTreeSet::new(),
    }
}

/// Follows local `$ref`s (`#/components/...`) within `document`.
fn resolve<'a>(mut node: &'a Value, document: &'a Value) -> &'a Value {
    for _ in 0..16 {
        let Some(reference) = node.get("$ref").and_then(Value::as_str) else {
            return node;
        };
        let Some(pointer) = reference.strip_prefix('#') else {
            return node;
        };
        match document.pointer(pointer) {
            Some(target) => node = target,
            None => return node,
        }
    }
    node
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn base() -> Value {
        let ok = |schema: &str| json!({"description": "ok", "content": {"application/json": {"schema": {"$ref": format!("#/components/schemas/{schema}")}}}});
        json!({
            "openapi": "3.1.0",
            "paths": {
                "/v1/jobs": {"get": {
                    "parameters": [
                        {"name": "limit", "in": "query", "required": false,
                         "schema": {"type": "integer", "minimum": 1, "maximum": 500}},
                        {"name": "status", "in": "query",
                         "schema": {"type": "string", "enum": ["open", "held"]}}
                    ],
                    "responses": {"200": ok("Job"), "404": {"$ref": "#/components/responses/NotFound"}}
                }},
                "/v1/customers": {"get": {"responses": {"200": ok("Customer")}}}
            },
            "components": {
                "schemas": {"Customer": {"type": "object", "properties": {"id": {"type": "string"}}},
                "Job": {"type": "object", "properties": {
                    "id": {"type": "string"},
                    "amount": {"type": ["string", "null"], "format": "decimal"},
                    "status": {"type": ["string", "null"], "enum": ["open", "held", null]},
                    "priority": {"type": ["integer", "null"], "format": "int64"}
                }}},
                "responses": {"NotFound": {"description": "missing"}}
            }
        })
    }

    /// The single breaking change `change` makes, which must mention `what`.
    fn breaks(what: &str, change: impl FnOnce(&mut Value)) {
        let old = base();
        let mut new = base();
        change(&mut new);
        let report = diff(&old, &new);
        assert_eq!(report.breaking.len(), 1, "{what}: {report:?}");
        assert!(report.breaking[0].contains(what), "{what}: {report:?}");
    }

    fn job(doc: &mut Value) -> &mut Value {
        &mut doc["components"]["schemas"]["Job"]["properties"]
    }

    fn param(doc: &mut Value, i: usize) -> &mut Value {
        &mut doc["paths"]["/v1/jobs"]["get"]["parameters"][i]
    }

    #[test]
    fn an_unchanged_document_has_nothing_to_report() {
        assert_eq!(diff(&base(), &base()), Report::default());
    }

    #[test]
    fn a_removed_path() {
        breaks("path removed", |d| {
            d["paths"].as_object_mut().unwrap().remove("/v1/customers");
        });
    }

    #[test]
    fn a_removed_operation() {
        breaks("operation removed", |d| {
            let item = d["paths"]["/v1/customers"].as_object_mut().unwrap();
            let get = item.remove("get").unwrap();
            item.insert("post".into(), get);
        });
    }

    #[test]
    fn a_removed_field() {
        breaks("field removed", |d| {
            job(d).as_object_mut().unwrap().remove("id");
        });
    }

    #[test]
    fn a_removed_parameter() {
        breaks("parameter `status` (query) removed", |d| {
            d["paths"]["/v1/jobs"]["get"]["parameters"]
                .as_array_mut()
                .unwrap()
                .pop();
        });
    }

    #[test]
    fn a_changed_type() {
        breaks("type changed", |d| {
            job(d)["priority"]["type"] = json!(["string", "null"])
        });
    }

    #[test]
    fn a_changed_format() {
        breaks("format changed", |d| {
            job(d)["amount"]["format"] = json!("double")
        });
    }

    #[test]
    fn a_narrowed_enum() {
        breaks("enum narrowed", |d| {
            param(d, 1)["schema"]["enum"] = json!(["open"])
        });
        breaks("enum narrowed", |d| {
            job(d)["status"]["enum"] = json!(["open", null])
        });
    }

    #[test]
    fn a_field_that_became_nullable_in_a_response() {
        breaks("became nullable", |d| {
            job(d)["id"]["type"] = json!(["string", "null"])
        });
    }

    #[test]
    fn a_parameter_that_became_required() {
        breaks("became required", |d| param(d, 0)["required"] = json!(true));
        breaks("required parameter `customer` added", |d| {
            d["paths"]["/v1/jobs"]["get"]["parameters"]
                .as_array_mut()
                .unwrap()
                .push(json!({"name": "customer", "in": "query", "required": true, "schema": {"type": "string"}}));
        });
    }

    #[test]
    fn a_tightened_bound() {
        breaks("maximum tightened", |d| {
            param(d, 0)["schema"]["maximum"] = json!(100)
        });
        breaks("minimum tightened", |d| {
            param(d, 0)["schema"]["minimum"] = json!(5)
        });
        breaks("maxLength tightened", |d| {
            param(d, 1)["schema"]["maxLength"] = json!(4)
        });
    }

    #[test]
    fn a_tightened_request_body() {
        fn body(doc: &mut Value) -> &mut Value {
            &mut doc["paths"]["/v1/jobs"]["post"]["requestBody"]["content"]["application/json"]
                ["schema"]["properties"]["name"]
        }
        let mut old = base();
        *body(&mut old) = json!({"type": ["string", "null"]});
        for (what, change) in [
            ("no longer takes null", json!({"type": ["string"]})),
            (
                "maxLength tightened",
                json!({"type": ["string", "null"], "maxLength": 30}),
            ),
            (
                "pattern changed",
                json!({"type": ["string", "null"], "pattern": "^[^ ]*$"}),
            ),
        ] {
            let mut new = old.clone();
            *body(&mut new) = change;
            let report = diff(&old, &new);
            assert!(
                report.breaking.iter().any(|b| b.contains(what)),
                "{what}: {report:?}"
            );
        }
    }

    #[test]
    fn additions_and_loosenings_pass() {
        let old = base();
        let mut new = base();
        new["paths"]["/v1/operations"] = new["paths"]["/v1/customers"].clone();
        job(&mut new)["note"] = json!({"type": ["string", "null"]});
        param(&mut new, 0)["schema"]["maximum"] = json!(1000);
        param(&mut new, 1)["schema"]["enum"] = json!(["open", "held", "closed"]);
        job(&mut new)["amount"]["type"] = json!("string");
        new["paths"]["/v1/jobs"]["get"]["parameters"]
            .as_array_mut()
            .unwrap()
            .push(json!({"name": "sort", "in": "query", "schema": {"type": "string"}}));
        let report = diff(&old, &new);
        assert!(report.breaking.is_empty(), "{report:?}");
        assert_eq!(report.additions.len(), 3, "{report:?}");
    }
}
