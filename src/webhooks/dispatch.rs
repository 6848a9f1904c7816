//! The dispatcher: reads due deliveries from the state store, POSTs them signed, records
//! each attempt, and reschedules or dead-letters what failed. Deliveries are only ever read
//! from the store, so what was committed is delivered after any crash (with the same
//! `webhook-id`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use tokio::sync::Semaphore;
use tracing::Instrument;

use super::sign::signature_header;
use super::Webhooks;
use crate::changes::render::rfc3339;
use crate::state::{off_thread, AttemptRecord, AttemptResult, DeliveryRecord, DueClaim};
use crate::telemetry::change_metrics::DeliveryLabels;
use crate::telemetry::traces::trace_headers;

/// Attempts in flight: delivery id → subscription.
type InFlight = Arc<Mutex<HashMap<i64, String>>>;

/// Runs until the process ends.
pub async fn run(hub: Arc<Webhooks>) {
    let in_flight: InFlight = Arc::default();
    let slots = Arc::new(Semaphore::new(hub.delivery.max_in_flight));
    loop {
        if let Err(e) = dispatch_due(&hub, &in_flight, &slots).await {
            tracing::warn!(error = %e, "cannot read due deliveries");
        }
        tokio::select! {
            _ = hub.wake.notified() => {}
            _ = tokio::time::sleep(hub.delivery.dispatch_interval) => {}
        }
    }
}

async fn dispatch_due(
    hub: &Arc<Webhooks>,
    in_flight: &InFlight,
    slots: &Arc<Semaphore>,
) -> Result<(), String> {
    let free = slots.available_permits();
    if free == 0 {
        return Ok(());
    }
    let skip: Vec<i64> = in_flight
        .lock()
        .map(|m| m.keys().copied().collect())
        .unwrap_or_default();
    let subscriptions = hub.subscriptions();
    let enabled = subscriptions.iter().filter(|s| s.record.enabled);
    let ordered: Vec<String> = enabled
        .clone()
        .filter(|s| s.record.ordered)
        .map(|s| s.record.name.clone())
        .collect();
    let enabled: Vec<String> = enabled.map(|s| s.record.name.clone()).collect();
    let now = crate::state::unix_now_ms();
    let (holder, lease_ms) = (
        hub.delivery.replica.clone(),
        hub.delivery.claim_lease.as_millis() as i64,
    );
    let per_subscription = hub.delivery.per_subscription;
    // Claimed in the store, so no other replica sends them while this one does; the store
    // counts every replica's claims against each subscription's limit.
    let due = off_thread(&hub.store, move |s| {
        s.claim_due(&DueClaim {
            now_ms: now,
            limit: free,
            subscriptions: &enabled,
            ordered: &ordered,
            skip: &skip,
            holder: &holder,
            lease_ms,
            per_subscription,
        })
    })
    .await
    .map_err(|e| e.to_string())?;
    for delivery in due {
        if let Ok(mut held) = in_flight.lock() {
            held.insert(delivery.id, delivery.subscription.clone());
        }
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            if let Ok(mut held) = in_flight.lock() {
                held.remove(&delivery.id);
            }
            break;
        };
        let (hub, in_flight) = (hub.clone(), in_flight.clone());
        tokio::spawn(async move {
            let id = delivery.id;
            attempt(&hub, delivery).await;
            if let Ok(mut held) = in_flight.lock() {
                held.remove(&id);
            }
            drop(permit);
            hub.wake();
        });
    }
    Ok(())
}

/// Sends one attempt and records it, in the attempt's span (named to the receiver by the
/// POST's `traceparent`).
async fn attempt(hub: &Arc<Webhooks>, delivery: DeliveryRecord) {
    let span = crate::telemetry::traces::exported_span!(
        "webhook.attempt",
        otel.name = "webhook attempt",
        otel.kind = "client",
        otel.status_code = tracing::field::Empty,
        subscription = %delivery.subscription,
        attempt = delivery.attempts + 1,
        http.response.status_code = tracing::field::Empty,
    );
    attempt_in(hub, delivery, &span)
        .instrument(span.clone())
        .await
}

/// [`attempt`] inside its span.
async fn attempt_in(hub: &Arc<Webhooks>, delivery: DeliveryRecord, span: &tracing::Span) {
    let Some(subscription) = hub.subscription(&delivery.subscription) else {
        return; // deleted meanwhile; its deliveries went with it
    };
    let record = &subscription.record;
    let now_ms = crate::state::unix_now_ms();
    let timestamp = now_ms / 1000;
    let started = Instant::now();
    let secrets = subscription.signing_secrets(now_ms);
    let target = match hub.delivery.guard.check_url(&record.url) {
        // A proxy resolves the target itself: check what the name resolves to now.
        Ok(url) if hub.delivery.via_proxy => {
            hub.delivery.guard.check_resolved(&url).await.map(|()| url)
        }
        checked => checked,
    };
    let answer = match target {
        Err(refused) => Err(refused),
        Ok(_) if secrets.is_empty() => Err("the subscription has no valid secret".to_string()),
        Ok(url) => trace_headers(span)
            .into_iter()
            .fold(hub.delivery.client.post(url), |post, (name, value)| {
                post.header(name, value)
            })
            .header("content-type", "application/json")
            .header("webhook-id", &delivery.event_id)
            .header("webhook-timestamp", timestamp.to_string())
            .header(
                "webhook-signature",
                signature_header(&secrets, &delivery.event_id, timestamp, &delivery.body),
            )
            .body(delivery.body.clone())
            .send()
            .await
            .map_err(|e| describe(&e)),
    };
    let (status, retry_after, error) = match &answer {
        Ok(response) => {
            let status = response.status();
            let retry_after = response
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| super::schedule::retry_after(v, now_ms));
            let error = (!status.is_success()).then(|| format!("answered {}", status.as_u16()));
            (Some(status.as_u16()), retry_after, error)
        }
        Err(e) => (None, None, Some(e.clone())),
    };
    if let Some(status) = status {
        span.record("http.response.status_code", status);
    }
    if error.is_some() {
        span.record("otel.status_code", "error");
    }
    let made = delivery.attempts as usize + 1;
    let result = match &error {
        None => AttemptResult::Delivered,
        // Standard Webhooks: 410 means the endpoint is gone and the sender should stop.
        Some(_) if status == Some(410) => AttemptResult::Held,
        Some(_) => match hub.delivery.schedule.after_failure(made, retry_after) {
            Some(wait) => AttemptResult::RetryAt(now_ms + wait.as_millis() as i64),
            None => AttemptResult::Dead,
        },
    };
    let outcome = match result {
        AttemptResult::Delivered => "delivered",
        AttemptResult::RetryAt(_) => "retrying",
        AttemptResult::Dead => "dead",
        AttemptResult::Held => "gone",
    };
    hub.metrics
        .deliveries
        .get_or_create(&DeliveryLabels {
            subscription: record.name.clone(),
            outcome,
        })
        .inc();
    if let Some(error) = &error {
        tracing::info!(subscription = %record.name, event = %delivery.event_id, attempt = made, %error, outcome, "webhook attempt failed");
    }
    let attempt = AttemptRecord {
        delivery: delivery.id,
        at_ms: now_ms,
        status,
        error,
        duration_ms: started.elapsed().as_millis() as i64,
    };
    // A 410 disables the subscription before the attempt frees the delivery's claim, so no
    // replica picks the delivery up for an endpoint that is gone.
    if result == AttemptResult::Held {
        let reason = format!("the endpoint answered 410 Gone at {}", rfc3339(now_ms));
        tracing::warn!(subscription = %record.name, event = %delivery.event_id, "{reason}: subscription disabled; its deliveries wait until it is enabled again");
        let (owner, name) = (hub.clone(), record.name.clone());
        let disabled = tokio::task::spawn_blocking(move || owner.disable_gone(&name, reason))
            .await
            .map_err(|e| e.to_string())
            .and_then(|done| done.map_err(|e| e.to_string()));
        if let Err(error) = disabled {
            // The next attempt gets the 410 again and tries again.
            tracing::warn!(subscription = %record.name, %error, "cannot disable the subscription");
        }
    }
    let recorded = off_thread(&hub.store, move |s| s.record_attempt(&attempt, result)).await;
    if let Err(error) = recorded {
        // The delivery stays pending and is attempted again: at least once, never lost.
        tracing::warn!(delivery = delivery.id, %error, "cannot record a webhook attempt");
    }
}

/// A transport error in a sentence (the cause chain without URLs' query strings).
fn describe(error: &reqwest::Error) -> String {
    let mut text = if error.is_timeout() {
        "timed out".to_string()
    } else if error.is_connect() {
        "cannot connect".to_string()
    } else {
        "request failed".to_string()
    };
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
