//! `POST /{v}/{resource}`, `PATCH /{v}/{resource}/{key}`, `DELETE /{v}/{resource}/{key}`:
//! validated, in one transaction, guarded by `If-Match`, idempotent with `Idempotency-Key`,
//! audited, and followed by cache invalidation.

use std::sync::Arc;

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::Value as Json;
use sha2::{Digest, Sha256};

use super::access::{self, AUDIT};
use super::problem::ApiError;
use super::render::{render_row, row_response, stored_response};
use super::request::{
    idempotency_key, if_match, key_plan, names_no_version, no_parameters, raw_segment, read_json,
    split_key, strong_match,
};
use super::{AppState, Current};
use crate::auth::Principal;
use crate::catalog::access::Grant;
use crate::catalog::plan::{self, Plan};
use crate::catalog::write::{self as rules, WriteRules};
use crate::catalog::{query, Resource};
use crate::config::WriteOp;
use crate::source::constraint::Violation;
use crate::source::select::Condition;
use crate::source::write::{Rollback, Step, WriteOutcome};
use crate::source::{Param, Rows, Source, SourceError};
use crate::state::Notice;
use crate::state::{Claim, StoredResponse};

/// The methods a resource's collection or item path answers, for `Allow`.
pub fn allowed(resource: &crate::catalog::Resource, item: bool) -> String {
    let mut methods = vec!["GET", "HEAD"];
    if let Some(w) = &resource.writes {
        if !item && w.allows(WriteOp::Create) {
            methods.push("POST");
        }
        if item && w.allows(WriteOp::Update) {
            methods.push("PATCH");
        }
        if item && w.allows(WriteOp::Delete) {
            methods.push("DELETE");
        }
    }
    methods.join(", ")
}

/// Runs one write and writes its audit line, whatever the outcome.
pub async fn write(
    req: HttpRequest,
    state: Current,
    payload: web::Payload,
    resource: &Resource,
    op: WriteOp,
) -> Result<HttpResponse, ApiError> {
    let result = async {
        // A method the path does not take is a 405 whatever else the request carries.
        let rules = resource
            .writes
            .as_ref()
            .filter(|w| w.allows(op))
            .ok_or_else(|| ApiError::MethodNotAllowed(allowed(resource, op != WriteOp::Create)))?;
        no_parameters(&req)?;
        let principal = access::principal(&req, &state).await?;
        let grant = access::write_grant(resource, &principal)?;
        let source = state.source(resource)?;
        let call = Call {
            req: &req,
            state: &state,
            resource,
            rules,
            principal: &principal,
            grant: &grant,
            source: source.as_ref(),
        };
        match op {
            WriteOp::Create => call.create(payload).await,
            WriteOp::Update => call.update(payload).await,
            WriteOp::Delete => call.delete().await,
        }
    }
    .await;
    audit(&req, resource, op, &result);
    result
}

fn audit(
    req: &HttpRequest,
    resource: &Resource,
    op: WriteOp,
    result: &Result<HttpResponse, ApiError>,
) {
    use actix_web::{HttpMessage, ResponseError};
    let status = match result {
        Ok(response) => response.status().as_u16(),
        Err(e) => e.status_code().as_u16(),
    };
    let extensions = req.extensions();
    let who = extensions
        .get::<Arc<Principal>>()
        .map_or("unverified", |p| p.name());
    let key = match op {
        WriteOp::Create => result
            .as_ref()
            .ok()
            .and_then(|r| r.headers().get(header::LOCATION))
            .and_then(|l| l.to_str().ok())
            .and_then(|l| l.rsplit('/').next())
            .unwrap_or_default()
            .to_string(),
        _ => raw_segment(req, 2).to_string(),
    };
    tracing::info!(
        target: AUDIT,
        event = "write",
        who,
        client = %req.peer_addr().map(|a| a.ip().to_string()).unwrap_or_default(),
        op = ?op,
        version = %resource.version,
        resource = %resource.name,
        key = %key,
        status,
        outcome = if status < 300 { "written" } else { "refused" },
        "write"
    );
}

/// Everything one write needs.
struct Call<'a> {
    req: &'a HttpRequest,
    state: &'a AppState,
    resource: &'a Resource,
    rules: &'a WriteRules,
    principal: &'a Principal,
    grant: &'a Grant,
    source: &'a dyn Source,
}

impl Call<'_> {
    async fn create(&self, payload: web::Payload) -> Result<HttpResponse, ApiError> {
        let body = read_json(self.req, payload, &["application/json"]).await?;
        let idempotency = match idempotency_key(self.req.headers())? {
            Some(key) => Some(self.claim(key, &body).await?),
            None => None,
        };
        if let Some(Idempotency::Replay(stored)) = idempotency {
            return Ok(stored_response(stored, true));
        }
        let result = self.insert(&body).await;
        if let Some(Idempotency::Owned { scope, key }) = idempotency {
            self.settle(&scope, &key, &result).await;
        }
        result.map(|created| stored_response(created, false))
    }

    async fn insert(&self, body: &Json) -> Result<StoredResponse, ApiError> {
        let r = self.resource;
        let values = rules::create_values(r, body, self.grant).map_err(ApiError::Invalid)?;
        let mut key_conditions = Vec::new();
        for &k in &r.key {
            let condition = match values.iter().find(|(i, _)| *i == k) {
                Some((_, param)) => equals(&r.fields[k].column, param.clone()),
                None if self.rules.generated_key == Some(k) => Condition::LastInsertId {
                    column: r.fields[k].column.clone(),
                },
                None => {
                    return Err(ApiError::Invalid(vec![rules::FieldError {
                        pointer: format!("/{}", r.fields[k].name),
                        detail: "is required".into(),
                    }]))
                }
            };
            key_conditions.push(condition);
        }
        let mut columns: Vec<(String, Param)> = values
            .into_iter()
            .map(|(i, p)| (r.fields[i].column.clone(), p))
            .collect();
        columns.extend(self.fixed(WriteOp::Create)?);
        let readback = self.readback(key_conditions)?;
        let dialect = self.source.dialect();
        let statement = dialect.select(&readback.select);
        let steps = rules::create_steps(dialect, &self.rules.table, columns, statement);
        let rows = self.commit(steps).await?;
        let (body, etag) = self.render(&readback, &rows)?;
        let location = format!(
            "/{}/{}/{}",
            r.version,
            r.name,
            self.location_key(&readback, &rows)
        );
        Ok(StoredResponse {
            status: 201,
            headers: vec![
                (header::LOCATION.to_string(), location),
                (header::ETAG.to_string(), etag),
            ],
            body,
        })
    }

    async fn update(&self, payload: web::Payload) -> Result<HttpResponse, ApiError> {
        let if_match = self.if_match()?;
        let body = read_json(
            self.req,
            payload,
            &["application/merge-patch+json", "application/json"],
        )
        .await?;
        let (key, key_params) = self.key()?;
        let values = rules::update_values(self.resource, &body, self.grant, &key_params)
            .map_err(ApiError::Invalid)?;
        let (current, plan) = self.current(&key).await?;
        let guard = self.precondition(if_match.as_deref(), &plan, &current)?;
        if values.is_empty() {
            // Nothing to change: the row as it is.
            let (body, etag) = self.render(&plan, &vec![current])?;
            return Ok(row_response(body, etag));
        }
        let r = self.resource;
        let mut set: Vec<(String, Param)> = values
            .into_iter()
            .map(|(i, p)| (r.fields[i].column.clone(), p))
            .collect();
        set.extend(self.fixed(WriteOp::Update)?);
        let (filter, missing) = self.filter(&key_params, guard);
        let dialect = self.source.dialect();
        let readback = dialect.select(&plan.select);
        let steps = rules::update_steps(dialect, &self.rules.table, set, filter, missing, readback);
        let rows = self.commit(steps).await?;
        let (body, etag) = self.render(&plan, &rows)?;
        Ok(row_response(body, etag))
    }

    async fn delete(&self) -> Result<HttpResponse, ApiError> {
        let if_match = self.if_match()?;
        let (key, key_params) = self.key()?;
        let guard = match &if_match {
            Some(tags) => {
                let (current, plan) = self.current(&key).await?;
                self.precondition(Some(tags), &plan, &current)?
            }
            None => None,
        };
        let (filter, missing) = self.filter(&key_params, guard);
        let steps = rules::delete_steps(self.source.dialect(), &self.rules.table, filter, missing);
        self.commit(steps).await?;
        Ok(HttpResponse::NoContent().finish())
    }

    /// `If-Match`, or 428 when the resource requires it.
    fn if_match(&self) -> Result<Option<String>, ApiError> {
        let value = if_match(self.req)?;
        // `*` (any version) would defeat the rule the operator asked for.
        let any_version = value.as_deref().is_some_and(names_no_version);
        if (value.is_none() || any_version) && self.rules.require_if_match {
            return Err(ApiError::PreconditionRequired(format!(
                "{} needs If-Match with the ETag of the row as last read",
                self.resource.name
            )));
        }
        Ok(value)
    }

    /// The key from the URL: raw parts and their legacy values by field index.
    fn key(&self) -> Result<(Vec<String>, KeyParams), ApiError> {
        let r = self.resource;
        let parts = split_key(raw_segment(self.req, 2))?;
        let conditions = plan::key_conditions(r, &parts)?;
        let params = r
            .key
            .iter()
            .zip(conditions)
            .filter_map(|(&k, c)| match c {
                Condition::Compare { param, .. } => Some((k, param)),
                _ => None,
            })
            .collect();
        Ok((parts, params))
    }

    /// The row as the caller sees it now (404 when absent or hidden), with its plan.
    async fn current(&self, key: &[String]) -> Result<(Vec<crate::source::Value>, Plan), ApiError> {
        let plan = key_plan(self.resource, key, self.grant)?;
        let row = self
            .source
            .select(plan.select.clone())
            .await?
            .into_iter()
            .next();
        let row = row.ok_or_else(|| {
            ApiError::NotFound(format!(
                "no {} with key `{}`",
                self.resource.name,
                raw_segment(self.req, 2)
            ))
        })?;
        Ok((row, plan))
    }

    /// Checks `If-Match` against the row read; the compare-and-set conditions that keep the
    /// check true until the write commits.
    fn precondition(
        &self,
        if_match: Option<&str>,
        plan: &Plan,
        row: &[crate::source::Value],
    ) -> Result<Option<Vec<Condition>>, ApiError> {
        let Some(tags) = if_match else {
            return Ok(None);
        };
        // `*` asks only that the row exists, which reading it proved: no version to hold.
        if names_no_version(tags) {
            return Ok(None);
        }
        let etag = rules::row_etag(self.resource, plan, row);
        if !strong_match(tags, &etag) {
            return Err(ApiError::PreconditionFailed(format!(
                "the row changed since its ETag was read; read {} again and retry",
                self.resource.name
            )));
        }
        Ok(Some(rules::cas_conditions(
            self.source.dialect(),
            self.resource,
            plan,
            row,
        )))
    }

    /// The rows a change may touch: the key, the caller's row policies, the compare-and-set.
    fn filter(
        &self,
        key: &[(usize, Param)],
        guard: Option<Vec<Condition>>,
    ) -> (Vec<Condition>, Rollback) {
        let r = self.resource;
        let mut filter: Vec<Condition> = key
            .iter()
            .map(|(k, p)| equals(&r.fields[*k].column, p.clone()))
            .collect();
        filter.extend(self.grant.conditions.iter().cloned());
        let missing = match guard {
            Some(cas) => {
                filter.extend(cas);
                Rollback::Changed
            }
            None => Rollback::NotFound,
        };
        (filter, missing)
    }

    fn fixed(&self, op: WriteOp) -> Result<Vec<(String, Param)>, ApiError> {
        self.rules
            .fixed
            .iter()
            .filter(|f| f.on.contains(&op))
            .map(|f| {
                f.resolve(self.principal)
                    .map(|p| (f.column.clone(), p))
                    .map_err(ApiError::Forbidden)
            })
            .collect()
    }

    fn readback(&self, mut conditions: Vec<Condition>) -> Result<Plan, ApiError> {
        conditions.extend(self.grant.conditions.iter().cloned());
        Ok(plan::list(
            self.resource,
            &query::QuerySpec::unfiltered(1),
            conditions,
            &self.grant.mask,
            "",
        )?)
    }

    /// Runs the steps; a deliberate rollback becomes its problem. Every committed write
    /// invalidates the cached answers it can change.
    async fn commit(&self, steps: Vec<Step>) -> Result<Rows, ApiError> {
        let name = &self.resource.name;
        let outcome = self.source.write(steps).await.map_err(|e| match e {
            SourceError::Constraint {
                violation, detail, ..
            } => {
                tracing::info!(resource = %name, %detail, "a write broke a constraint");
                ApiError::Conflict(self.conflict(&violation))
            }
            other => other.into(),
        })?;
        match outcome {
            WriteOutcome::Committed(rows) => {
                let affected = self
                    .state
                    .catalog
                    .affected_by_write(&self.resource.source, &self.rules.table);
                for resource in &affected {
                    self.state.cache.invalidate_resource(resource);
                }
                self.state.tell_replicas(Notice::Invalidate(affected)).await;
                Ok(rows)
            }
            WriteOutcome::RolledBack(Rollback::NotFound) => Err(ApiError::NotFound(format!(
                "no {name} with key `{}`",
                raw_segment(self.req, 2)
            ))),
            WriteOutcome::RolledBack(Rollback::Changed) => Err(ApiError::PreconditionFailed(
                format!("the row changed since its ETag was read; read {name} again and retry"),
            )),
            WriteOutcome::RolledBack(Rollback::Hidden) => Err(ApiError::Forbidden(format!(
                "the written {name} would be outside the rows this token may see; nothing was written"
            ))),
        }
    }

    /// Which rule a write broke, naming the field rather than the column where one matches.
    fn conflict(&self, violation: &Violation) -> String {
        let field = violation.column.as_ref().and_then(|column| {
            self.resource
                .fields
                .iter()
                .find(|f| f.column.eq_ignore_ascii_case(column))
                .map(|f| f.name.as_str())
        });
        format!("the write {}", violation.detail(field))
    }

    fn render(&self, plan: &Plan, rows: &Rows) -> Result<(Vec<u8>, String), ApiError> {
        let row = rows
            .first()
            .ok_or_else(|| ApiError::Internal("a written row was not read back".into()))?;
        let body = render_row(self.resource, plan, row)?;
        Ok((body, rules::row_etag(self.resource, plan, row)))
    }

    /// The key of the row read back, as written in URLs.
    fn location_key(&self, plan: &Plan, rows: &Rows) -> String {
        let r = self.resource;
        let row = rows.first().map(Vec::as_slice).unwrap_or_default();
        r.key
            .iter()
            .map(|&k| {
                let value = plan
                    .output
                    .iter()
                    .find(|(f, _)| *f == k)
                    .and_then(|(_, p)| row.get(*p))
                    .map(|v| r.fields[k].read(v))
                    .unwrap_or(Json::Null);
                let text = match value {
                    Json::String(s) => s,
                    other => other.to_string(),
                };
                let encoded = percent_encoding::utf8_percent_encode(
                    &text,
                    percent_encoding::NON_ALPHANUMERIC,
                )
                .to_string();
                // `/v1/jobs/changes` is the change feed: the row `changes` is `%63hanges`.
                match encoded.strip_prefix('c') {
                    Some(rest) if r.changes && encoded == "changes" => format!("%63{rest}"),
                    _ => encoded,
                }
            })
            .collect::<Vec<_>>()
            .join(",")
    }

    async fn claim(&self, key: String, body: &Json) -> Result<Idempotency, ApiError> {
        let store = self
            .state
            .state_store
            .clone()
            .ok_or_else(|| ApiError::Internal("no state store for idempotency keys".into()))?;
        // Keys are the caller's own: the token's issuer and subject, and the rows it may see
        // (two tenants behind one service account have different row policies).
        let subject = self.principal.subject.as_deref().ok_or_else(|| {
            ApiError::BadParameter(query::QueryError {
                place: query::Place::Header,
                parameter: "Idempotency-Key".into(),
                message: "needs a token with a `sub` claim: keys are kept per caller, and this \
                          token names none"
                    .into(),
            })
        })?;
        let issuer = self.principal.claims.get("iss").and_then(Json::as_str);
        let resource = (&self.resource.version, &self.resource.name);
        let scope = serde_json::to_string(&(issuer, subject, &self.grant.identity, resource))
            .map_err(|e| ApiError::Internal(e.to_string()))?;
        let fingerprints = fingerprints(body)?;
        let retention = self.state.idempotency_retention.as_secs() as i64;
        let lease = self.state.idempotency_lease.as_millis() as i64;
        let (scope2, key2) = (scope.clone(), key.clone());
        let claim = web::block(move || {
            store.claim_idempotency(&scope2, &key2, &fingerprints, retention, lease)
        })
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?
        .map_err(|e| ApiError::Internal(e.to_string()))?;
        match claim {
            Claim::Fresh => Ok(Idempotency::Owned { scope, key }),
            Claim::Replay(stored) => Ok(Idempotency::Replay(stored)),
            Claim::InFlight => Err(ApiError::Conflict(
                "a request with this Idempotency-Key is still being processed; retry shortly"
                    .into(),
            )),
            Claim::Mismatch => Err(ApiError::IdempotencyKeyReused(
                "this Idempotency-Key was already used with a different request body".into(),
            )),
        }
    }

    /// Remembers a successful response for its key; frees the key of a failed one.
    async fn settle(&self, scope: &str, key: &str, result: &Result<StoredResponse, ApiError>) {
        let Some(store) = self.state.state_store.clone() else {
            return;
        };
        let (scope, key) = (scope.to_string(), key.to_string());
        let stored = result.as_ref().ok().cloned();
        let done = web::block(move || match stored {
            Some(response) => store.complete_idempotency(&scope, &key, &response),
            None => store.release_idempotency(&scope, &key),
        })
        .await;
        if !matches!(done, Ok(Ok(()))) {
            tracing::error!("could not record the outcome of an idempotent request");
        }
    }
}

/// Legacy values of a key's fields, by field index.
type KeyParams = Vec<(usize, Param)>;

enum Idempotency {
    Owned { scope: String, key: String },
    Replay(StoredResponse),
}

fn equals(column: &str, param: Param) -> Condition {
    Condition::Compare {
        column: column.to_string(),
        op: crate::source::select::CmpOp::Eq,
        param,
    }
}

/// The hash an `Idempotency-Key` is remembered with: of the body's canonical JSON, so a retry
/// that sends the same members in another order is the same request. Numbers keep their parsed
/// form: `7` and `7.0` stay different bodies.
fn fingerprint(body: &Json) -> Result<String, ApiError> {
    hash(&Canonical(body))
}

/// The hashes a stored key of this body may carry: the canonical one (stored for a new key),
/// then the body in the order it was sent, which is what versions before the canonical form
/// stored (a retry across an upgrade, within the retention, still replays).
fn fingerprints(body: &Json) -> Result<Vec<String>, ApiError> {
    Ok(vec![fingerprint(body)?, hash(body)?])
}

fn hash(body: &impl serde::Serialize) -> Result<String, ApiError> {
    let bytes = serde_json::to_vec(body)
        .map_err(|e| ApiError::Internal(format!("cannot hash the body: {e}")))?;
    Ok(Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}

/// A JSON value serialized with the members of every object in sorted order (the parsed
/// objects keep the order they were sent in).
struct Canonical<'a>(&'a Json);

impl serde::Serialize for Canonical<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        match self.0 {
            Json::Object(object) => {
                let mut members: Vec<(&String, &Json)> = object.iter().collect();
                members.sort_unstable_by(|a, b| a.0.cmp(b.0));
                let mut map = serializer.serialize_map(Some(members.len()))?;
                for (name, value) in members {
                    map.serialize_entry(name, &Canonical(value))?;
                }
                map.end()
            }
            Json::Array(items) => serializer.collect_seq(items.iter().map(Canonical)),
            other => other.serialize(serializer),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fingerprint_ignores_member_order_at_every_depth() {
        let parse = |text: &str| crate::http::request::strict_json(text.as_bytes()).unwrap();
        let first = parse(
            r#"{"id": "C9", "credit": {"value": "1.50", "currency": "USD"}, "tags": [{"a": 1, "b": 2}]}"#,
        );
        let reordered = parse(
            r#"{"tags": [{"b": 2, "a": 1}], "credit": {"currency": "USD", "value": "1.50"}, "id": "C9"}"#,
        );
        assert_eq!(
            fingerprint(&first).unwrap(),
            fingerprint(&reordered).unwrap()
        );
        for other in [
            r#"{"id": "C9", "credit": {"value": "1.5", "currency": "USD"}, "tags": [{"a": 1, "b": 2}]}"#,
            r#"{"id": "C9", "credit": {"value": "1.50", "currency": "USD"}, "tags": [{"a": 1.0, "b": 2}]}"#,
            r#"{"id": "C9", "credit": {"value": "1.50", "currency": "USD"}, "tags": [{"b": 2}, {"a": 1}]}"#,
        ] {
            assert_ne!(
                fingerprint(&first).unwrap(),
                fingerprint(&parse(other)).unwrap(),
                "{other}"
            );
        }
    }

    #[test]
    fn a_key_stored_before_the_canonical_form_is_still_recognized() {
        let body: Json = serde_json::from_str(r#"{"name":"Acme","city":"Turku"}"#).unwrap();
        // What earlier versions stored: the hash of the body in the order it was sent.
        let earlier: String = Sha256::digest(serde_json::to_vec(&body).unwrap())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let accepted = fingerprints(&body).unwrap();
        assert_eq!(accepted[0], fingerprint(&body).unwrap());
        assert_ne!(accepted[0], earlier, "the members are not in sorted order");
        assert!(accepted.contains(&earlier));
    }
}
