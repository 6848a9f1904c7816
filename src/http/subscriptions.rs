//! The webhook admin API (admin scope; loopback only without `[auth]`): subscriptions,
//! deliveries with their attempts, dead letters, resend and recovery.

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::{json, Value as Json};

use super::problem::{ApiError, FieldError};
use super::{access, AppState, Current};
use crate::changes::render::rfc3339;
use crate::state::{
    DeliveryFilter, DeliveryRecord, DeliveryStatus, SecretRecord, StateError, SubscriptionRecord,
};
use crate::webhooks::sign::Secret;
use crate::webhooks::{blind_spot, check_patterns, principal, Webhooks};

/// The body of `POST /admin/subscriptions`.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct NewSubscription {
    name: String,
    url: String,
    version: String,
    #[serde(default = "every_event")]
    events: Vec<String>,
    #[serde(default)]
    scopes: Vec<String>,
    #[serde(default)]
    claims: serde_json::Map<String, Json>,
    #[serde(default)]
    ordered: bool,
}

fn every_event() -> Vec<String> {
    vec!["*".into()]
}

async fn hub<'a>(req: &HttpRequest, state: &'a AppState) -> Result<&'a Webhooks, ApiError> {
    access::admin(req, state).await?;
    state
        .webhooks
        .as_deref()
        .ok_or_else(|| ApiError::NotFound("no resource watches changes: webhooks are off".into()))
}

/// Runs a state store call off the async threads.
async fn stored<T: Send + 'static>(
    hub: &Webhooks,
    work: impl FnOnce(&dyn crate::state::StateStore) -> Result<T, StateError> + Send + 'static,
) -> Result<T, ApiError> {
    crate::state::off_thread(&hub.store, work)
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))
}

fn subscription_json(record: &SubscriptionRecord) -> Json {
    json!({
        "name": record.name,
        "url": record.url,
        "version": record.version,
        "events": record.events,
        "scopes": record.scopes,
        "claims": record.claims,
        "enabled": record.enabled,
        "disabled_reason": record.disabled_reason,
        "ordered": record.ordered,
        "origin": record.origin,
        "created_at": rfc3339(record.created_ms),
        "signing_secrets": record.secrets.len(),
    })
}

fn delivery_json(delivery: &DeliveryRecord) -> Json {
    json!({
        "id": delivery.id,
        "event_id": delivery.event_id,
        "subscription": delivery.subscription,
        "status": delivery.status,
        "attempts": delivery.attempts,
        "next_attempt_at": (delivery.status == DeliveryStatus::Pending).then(|| rfc3339(delivery.next_ms)),
        "created_at": rfc3339(delivery.created_ms),
        "last_error": delivery.last_error,
        "event": serde_json::from_slice::<Json>(&delivery.body).unwrap_or(Json::Null),
    })
}

fn segment<'a>(req: &'a HttpRequest, name: &str) -> &'a str {
    req.match_info().get(name).unwrap_or_default()
}

/// A subscription as the store has it: what any replica's admin API answers, even before the
/// notice of another replica's change reached this one's memory.
async fn find(hub: &Webhooks, name: &str) -> Result<SubscriptionRecord, ApiError> {
    let name = name.to_string();
    let wanted = name.clone();
    stored(hub, move |s| s.subscriptions())
        .await?
        .into_iter()
        .find(|s| s.name == wanted)
        .ok_or_else(|| ApiError::NotFound(format!("no subscription `{name}`")))
}

/// Reloads this replica's subscriptions and tells the others to.
async fn changed(hub: &Webhooks) -> Result<(), ApiError> {
    hub.reload()
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    crate::state::publish(&hub.store, crate::state::Notice::Subscriptions).await;
    Ok(())
}

async fn save(hub: &Webhooks, record: SubscriptionRecord) -> Result<(), ApiError> {
    stored(hub, move |s| s.put_subscription(&record)).await?;
    changed(hub).await
}

/// `GET /admin/subscriptions`.
pub async fn list(req: HttpRequest, state: Current) -> Result<HttpResponse, ApiError> {
    let hub = hub(&req, &state).await?;
    let data: Vec<Json> = stored(hub, |s| s.subscriptions())
        .await?
        .iter()
        .map(subscription_json)
        .collect();
    Ok(HttpResponse::Ok().json(json!({ "data": data })))
}

/// `POST /admin/subscriptions`: the answer holds the signing secret, this once.
pub async fn create(
    req: HttpRequest,
    state: Current,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let hub = hub(&req, &state).await?;
    let body = super::request::read_json(&req, payload, &["application/json"]).await?;
    // serde would take an array as the members by position.
    if !body.is_object() {
        return Err(ApiError::Invalid(vec![FieldError::at(
            "",
            "must be a JSON object with name, url and version (and events, scopes, claims, ordered)",
        )]));
    }
    let new: NewSubscription = serde_json::from_value(body)
        .map_err(|e| ApiError::Invalid(vec![FieldError::at("", e.to_string())]))?;
    let mut errors = Vec::new();
    let valid_name = (1..=64).contains(&new.name.len())
        && new
            .name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if !valid_name {
        errors.push(FieldError::at(
            "name",
            "1 to 64 letters, digits, `-` or `_`",
        ));
    }
    match hub.delivery.guard.check_url(&new.url) {
        Err(message) => errors.push(FieldError::at("url", message)),
        Ok(url) => {
            if let Err(message) = hub.delivery.guard.check_resolved(&url).await {
                errors.push(FieldError::at("url", message));
            }
        }
    }
    if let Err(message) = check_patterns(&new.version, &new.events, &state.catalog, &state.feeds) {
        let at = if state.catalog.versions.contains_key(&new.version) {
            "events"
        } else {
            "version"
        };
        errors.push(FieldError::at(at, message));
    } else {
        let reader = principal(&new.name, &new.scopes, &new.claims);
        let blind = blind_spot(
            &new.version,
            &new.events,
            &reader,
            &state.catalog,
            &state.feeds,
        );
        if let Some(message) = blind {
            errors.push(FieldError::at("scopes", message));
        }
    }
    if !errors.is_empty() {
        return Err(ApiError::Invalid(errors));
    }
    let secret = Secret::generate();
    let record = SubscriptionRecord {
        name: new.name,
        url: new.url,
        version: new.version,
        events: new.events,
        scopes: new.scopes,
        claims: new.claims,
        secrets: vec![SecretRecord {
            secret: secret.expose().to_string(),
            expires_ms: None,
        }],
        enabled: true,
        disabled_reason: None,
        ordered: new.ordered,
        origin: "api".into(),
        created_ms: crate::state::unix_now_ms(),
    };
    let mut body = subscription_json(&record);
    body["secret"] = json!(secret.expose());
    let location = format!("/admin/subscriptions/{}", record.name);
    let (name, audited_url) = (record.name.clone(), record.url.clone());
    // Insert-only: of replicas creating one name at once, one wins and the others say 409.
    if !stored(hub, move |s| s.add_subscription(&record)).await? {
        return Err(ApiError::Conflict(format!(
            "a subscription `{name}` exists"
        )));
    }
    tracing::info!(target: "portico::audit", action = "subscription.create", subscription = ?name, url = ?audited_url, "subscription created");
    changed(hub).await?;
    Ok(HttpResponse::Created()
        .insert_header((header::LOCATION, location))
        .json(body))
}

/// `GET /admin/subscriptions/{name}`.
pub async fn get(req: HttpRequest, state: Current) -> Result<HttpResponse, ApiError> {
    let hub = hub(&req, &state).await?;
    let record = find(hub, segment(&req, "name")).await?;
    Ok(HttpResponse::Ok().json(subscription_json(&record)))
}

/// `DELETE /admin/subscriptions/{name}`: the subscription and its deliveries.
pub async fn delete(req: HttpRequest, state: Current) -> Result<HttpResponse, ApiError> {
    let hub = hub(&req, &state).await?;
    let record = find(hub, segment(&req, "name")).await?;
    if record.origin == "config" {
        return Err(ApiError::Conflict(format!(
            "`{}` is declared in the configuration file; remove it there",
            record.name
        )));
    }
    let name = record.name.clone();
    stored(hub, move |s| s.remove_subscription(&name)).await?;
    changed(hub).await?;
    tracing::info!(target: "portico::audit", action = "subscription.delete", subscription = ?record.name, "subscription deleted");
    Ok(HttpResponse::NoContent().finish())
}

/// `POST /admin/subscriptions/{name}/{action}`: `disable`, `enable`, `rotate` (a new secret;
/// the previous one keeps signing for the grace period) or `recover?since=` (every dead
/// letter created since then is delivered again).
pub async fn act(req: HttpRequest, state: Current) -> Result<HttpResponse, ApiError> {
    let hub = hub(&req, &state).await?;
    let mut record = find(hub, segment(&req, "name")).await?;
    let action = segment(&req, "action").to_string();
    if !["disable", "enable", "rotate", "recover"].contains(&action.as_str()) {
        return Err(ApiError::NotFound(
            "no such action (disable, enable, rotate, recover)".into(),
        ));
    }
    // Only a known action is audited, so the path cannot write the audit line's words.
    tracing::info!(target: "portico::audit", action = ?format!("subscription.{action}"), subscription = ?record.name, "subscription changed");
    match action.as_str() {
        "disable" | "enable" => {
            record.enabled = action == "enable";
            // Only Portico says why it disabled one (410 Gone); an operator's action clears it.
            record.disabled_reason = None;
            let body = subscription_json(&record);
            save(hub, record).await?;
            Ok(HttpResponse::Ok().json(body))
        }
        "rotate" if record.origin == "config" => Err(ApiError::Conflict(format!(
            "`{}` takes its secret from the configuration file; change it there",
            record.name
        ))),
        "rotate" => {
            let now = crate::state::unix_now_ms();
            let until = now + hub.delivery.grace.as_millis() as i64;
            for old in record.secrets.iter_mut().filter(|s| s.expires_ms.is_none()) {
                old.expires_ms = Some(until);
            }
            record
                .secrets
                .retain(|s| s.expires_ms.is_some_and(|at| at > now));
            let secret = Secret::generate();
            record.secrets.insert(
                0,
                SecretRecord {
                    secret: secret.expose().to_string(),
                    expires_ms: None,
                },
            );
            let mut body = subscription_json(&record);
            body["secret"] = json!(secret.expose());
            body["previous_secrets_valid_until"] = json!(rfc3339(until));
            save(hub, record).await?;
            Ok(HttpResponse::Ok().json(body))
        }
        "recover" => {
            let since = since(req.query_string())?;
            let (name, now) = (record.name.clone(), crate::state::unix_now_ms());
            let recovered = stored(hub, move |s| s.recover(&name, since, now)).await?;
            hub.wake();
            Ok(HttpResponse::Ok().json(json!({ "recovered": recovered })))
        }
        _ => Err(ApiError::NotFound(
            "no such action (disable, enable, rotate, recover)".into(),
        )),
    }
}

/// `since=` as Unix seconds or an RFC 3339 UTC time (`2026-11-23T10:00:00Z`), in ms.
fn since(query: &str) -> Result<i64, ApiError> {
    let bad = |message: &str| {
        ApiError::BadParameter(crate::catalog::query::QueryError {
            place: crate::catalog::query::Place::Query,
            parameter: "since".into(),
            message: message.into(),
        })
    };
    let pairs = crate::catalog::query::pairs(query)?;
    let mut given = pairs.iter().filter(|(k, _)| k == "since");
    let text = given
        .next()
        .map(|(_, v)| v.as_str())
        .ok_or_else(|| bad("is required (Unix seconds or an RFC 3339 UTC time)"))?;
    if given.next().is_some() {
        return Err(bad("is given more than once"));
    }
    if let Ok(seconds) = text.parse::<i64>() {
        return Ok(seconds * 1000);
    }
    let date = text
        .get(..10)
        .and_then(crate::value::date::Date::parse_iso)
        .ok_or_else(|| bad("is not Unix seconds or an RFC 3339 UTC time"))?;
    let time: Vec<i64> = text[10..]
        .trim_start_matches('T')
        .trim_end_matches('Z')
        .split(':')
        .map(|p| p.split('.').next().unwrap_or_default().parse())
        .collect::<Result<_, _>>()
        .map_err(|_| bad("is not Unix seconds or an RFC 3339 UTC time"))?;
    let [h, m, s] = time[..] else {
        return Err(bad("is not Unix seconds or an RFC 3339 UTC time"));
    };
    Ok((date.days_since_epoch() * 86_400 + h * 3600 + m * 60 + s) * 1000)
}

/// `GET /admin/deliveries?subscription=&status=&before=&limit=`, newest first.
pub async fn deliveries(req: HttpRequest, state: Current) -> Result<HttpResponse, ApiError> {
    let hub = hub(&req, &state).await?;
    let mut filter = DeliveryFilter {
        limit: 100,
        ..DeliveryFilter::default()
    };
    if req.path().ends_with("/dead-letters") {
        filter.status = Some(DeliveryStatus::Dead);
    }
    let bad = |parameter: &str, message: &str| {
        ApiError::BadParameter(crate::catalog::query::QueryError {
            place: crate::catalog::query::Place::Query,
            parameter: parameter.into(),
            message: message.into(),
        })
    };
    let mut seen: Vec<String> = Vec::new();
    for (name, value) in crate::catalog::query::pairs(req.query_string())? {
        if seen.contains(&name) {
            return Err(bad(&name, "is given more than once"));
        }
        seen.push(name.clone());
        match name.as_str() {
            "subscription" if value.is_empty() => {
                return Err(bad("subscription", "names no subscription"))
            }
            "subscription" => filter.subscription = Some(value),
            "status" => {
                filter.status = Some(
                    serde_json::from_value(json!(value))
                        .map_err(|_| bad("status", "is pending, delivered or dead"))?,
                )
            }
            "before" => {
                filter.before_id = Some(
                    value
                        .parse()
                        .map_err(|_| bad("before", "is a delivery id"))?,
                )
            }
            "limit" => {
                filter.limit = value
                    .parse()
                    .ok()
                    .filter(|n| (1..=1000).contains(n))
                    .ok_or_else(|| bad("limit", "must be a whole number from 1 to 1000"))?
            }
            _ => {
                return Err(bad(
                    &name,
                    "is not a filter (subscription, status, before, limit)",
                ))
            }
        }
    }
    let limit = filter.limit;
    let found = stored(hub, move |s| s.deliveries(&filter)).await?;
    let next = found.last().filter(|_| found.len() == limit).map(|d| d.id);
    let data: Vec<Json> = found.iter().map(delivery_json).collect();
    Ok(HttpResponse::Ok().json(json!({ "data": data, "next_before": next })))
}

fn delivery_id(req: &HttpRequest) -> Result<i64, ApiError> {
    segment(req, "id")
        .parse()
        .map_err(|_| ApiError::NotFound(format!("no delivery `{}`", segment(req, "id"))))
}

/// `GET /admin/deliveries/{id}`: one delivery and its attempts.
pub async fn delivery(req: HttpRequest, state: Current) -> Result<HttpResponse, ApiError> {
    let hub = hub(&req, &state).await?;
    let id = delivery_id(&req)?;
    let found = stored(hub, move |s| Ok((s.delivery(id)?, s.attempts(id)?))).await?;
    let (Some(delivery), attempts) = found else {
        return Err(ApiError::NotFound(format!("no delivery `{id}`")));
    };
    let mut body = delivery_json(&delivery);
    body["attempt_log"] = json!(attempts
        .iter()
        .map(|a| json!({
            "at": rfc3339(a.at_ms),
            "status": a.status,
            "error": a.error,
            "duration_ms": a.duration_ms,
        }))
        .collect::<Vec<_>>());
    Ok(HttpResponse::Ok().json(body))
}

/// `POST /admin/deliveries/{id}/resend`: due again now, with a fresh retry schedule.
pub async fn resend(req: HttpRequest, state: Current) -> Result<HttpResponse, ApiError> {
    let hub = hub(&req, &state).await?;
    let id = delivery_id(&req)?;
    let now = crate::state::unix_now_ms();
    if !stored(hub, move |s| s.resend(id, now)).await? {
        return Err(ApiError::NotFound(format!("no delivery `{id}`")));
    }
    hub.wake();
    tracing::info!(target: "portico::audit", action = "delivery.resend", delivery = id, "delivery resent");
    Ok(HttpResponse::Accepted().json(json!({ "resent": id })))
}
