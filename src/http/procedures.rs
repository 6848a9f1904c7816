//! `POST /{version}/procedures/{name}`: a stored procedure with validated, typed inputs; its
//! output parameters and result sets as JSON; audited; a writing one invalidates the cache.

use std::sync::Arc;

use actix_web::http::Method;
use actix_web::{web, HttpMessage, HttpRequest, HttpResponse, ResponseError};
use serde_json::{Map, Value as Json};

use super::access::{self, AUDIT};
use super::problem::ApiError;
use super::request::{not_served, raw_segment, read_json};
use super::{AppState, Current};
use crate::auth::{AuthError, Principal};
use crate::catalog::procedure::Procedure;
use crate::catalog::write::{legacy_value, FieldError};
use crate::catalog::Field;
use crate::config::Direction;
use crate::source::call::{Call, CallOutcome, CallParam, ResultSet};
use crate::source::{SourceError, Value};

/// Rows of one result set a call returns at most.
const MAX_ROWS: usize = 10_000;

/// Calls the procedure named in the path.
pub async fn call(
    req: HttpRequest,
    state: Current,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let procedure = state
        .catalog
        .versions
        .get(raw_segment(&req, 0))
        .and_then(|v| v.procedures.get(raw_segment(&req, 2)))
        .ok_or_else(|| not_served(&req))?;
    if req.method() != Method::POST {
        return Err(ApiError::MethodNotAllowed("POST".into()));
    }
    let result = run(&req, &state, payload, procedure).await;
    let status = match &result {
        Ok(response) => response.status().as_u16(),
        Err(e) => e.status_code().as_u16(),
    };
    let who = req
        .extensions()
        .get::<Arc<Principal>>()
        .map_or("unverified".to_string(), |p| p.name().to_string());
    tracing::info!(
        target: AUDIT,
        event = "procedure",
        who,
        client = %req.peer_addr().map(|a| a.ip().to_string()).unwrap_or_default(),
        procedure = %procedure.name,
        writes = procedure.writes,
        status,
        "procedure call"
    );
    result
}

async fn run(
    req: &HttpRequest,
    state: &AppState,
    payload: web::Payload,
    procedure: &Procedure,
) -> Result<HttpResponse, ApiError> {
    let principal = access::principal(req, state).await?;
    if !principal.authenticated {
        return Err(AuthError::Missing.into());
    }
    if !principal.has_scope(&procedure.scope) {
        return Err(ApiError::InsufficientScope(
            procedure.scope.clone(),
            principal.scope_hint(&procedure.scope),
        ));
    }
    let body = read_json(req, payload, &["application/json"]).await?;
    let params = inputs(procedure, &body).map_err(ApiError::Invalid)?;
    let source = state.sources.get(&procedure.source).ok_or_else(|| {
        ApiError::Internal(format!("source `{}` is not configured", procedure.source))
    })?;
    let call = Call {
        sql: source.dialect().call(&procedure.procedure, params.len()),
        params,
        result_types: procedure
            .result
            .iter()
            .map(|f| (f.column.clone(), f.column_type))
            .collect(),
        max_rows: MAX_ROWS,
        commit: procedure.writes,
    };
    let outcome = source.call(call).await.map_err(|e| match e {
        SourceError::Constraint {
            violation, detail, ..
        } => {
            tracing::info!(procedure = %procedure.name, %detail, "a procedure broke a constraint");
            ApiError::Conflict(format!("the procedure {}", violation.detail(None)))
        }
        other => other.into(),
    })?;
    if procedure.writes {
        for resource in &procedure.invalidates {
            state.cache.invalidate_resource(resource);
        }
        state
            .tell_replicas(crate::state::Notice::Invalidate(
                procedure.invalidates.clone(),
            ))
            .await;
    }
    Ok(HttpResponse::Ok().json(render(procedure, outcome)))
}

/// The call's parameters from the body: every input checked and transformed, every problem
/// reported with its pointer.
fn inputs(procedure: &Procedure, body: &Json) -> Result<Vec<CallParam>, Vec<FieldError>> {
    let at = |name: &str, detail: String| FieldError::at(name, detail);
    let Json::Object(map) = body else {
        return Err(vec![FieldError {
            pointer: String::new(),
            detail: "must be a JSON object of parameters".into(),
        }]);
    };
    let mut errors = Vec::new();
    for name in map.keys() {
        match procedure.parameters.iter().find(|(f, _)| f.name == *name) {
            None => errors.push(at(
                name,
                format!(
                    "is not a parameter of this procedure (parameters: {})",
                    names(procedure, Direction::In)
                ),
            )),
            Some((_, Direction::Out)) => errors.push(at(name, "is an output parameter".into())),
            Some(_) => {}
        }
    }
    let mut params = Vec::new();
    for (field, direction) in &procedure.parameters {
        match (direction, map.get(&field.name)) {
            (Direction::Out, _) => params.push(CallParam::Out(field.column_type)),
            (Direction::In, None) if field.required => {
                errors.push(at(&field.name, "is required".into()))
            }
            (Direction::In, None) => params.push(CallParam::In(field.null_for_write())),
            (Direction::In, Some(json)) => match legacy_value(field, json) {
                Ok(param) => params.push(CallParam::In(param)),
                Err(detail) => errors.push(at(&field.name, detail)),
            },
        }
    }
    if errors.is_empty() {
        Ok(params)
    } else {
        Err(errors)
    }
}

fn names(procedure: &Procedure, direction: Direction) -> String {
    procedure
        .parameters
        .iter()
        .filter(|(_, d)| *d == direction)
        .map(|(f, _)| f.name.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// `{"output": {...}, "rows": [...], "more_results": [[...]]}`.
fn render(procedure: &Procedure, outcome: CallOutcome) -> Json {
    let output: Map<String, Json> = procedure
        .parameters
        .iter()
        .filter(|(_, d)| *d == Direction::Out)
        .zip(outcome.outputs)
        .map(|((field, _), value)| (field.name.clone(), field.read(&value)))
        .collect();
    let mut sets = outcome.result_sets.into_iter();
    let rows = sets
        .next()
        .map(|set| typed_rows(&procedure.result, &set))
        .unwrap_or_default();
    let more: Vec<Json> = sets.map(|set| Json::Array(typed_rows(&[], &set))).collect();
    serde_json::json!({ "output": output, "rows": rows, "more_results": more })
}

/// Rows as objects: the configured fields in order, or every column as text.
fn typed_rows(fields: &[Field], set: &ResultSet) -> Vec<Json> {
    set.rows
        .iter()
        .map(|row| {
            let object: Map<String, Json> = if fields.is_empty() {
                set.columns
                    .iter()
                    .zip(row)
                    .map(|(name, value)| (name.clone(), text(value)))
                    .collect()
            } else {
                fields
                    .iter()
                    .map(|f| {
                        let value = set
                            .columns
                            .iter()
                            .position(|c| c.eq_ignore_ascii_case(&f.column))
                            .and_then(|i| row.get(i))
                            .map_or(Json::Null, |v| f.read(v));
                        (f.name.clone(), value)
                    })
                    .collect()
            };
            Json::Object(object)
        })
        .collect()
}

fn text(value: &Value) -> Json {
    match value {
        Value::Null => Json::Null,
        Value::Text(bytes) => Json::from(String::from_utf8_lossy(bytes).trim_end().to_string()),
        other => Json::from(format!("{other:?}")),
    }
}
