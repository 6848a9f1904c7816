//! The listening connection: one connection outside the pool runs `LISTEN portico` and hands
//! other replicas' notices to the store's subscribers. When it drops it reconnects, and then
//! says `Notice::Resync`: what was published meanwhile was missed.

use std::time::Duration;

use futures_util::StreamExt;
use tokio::sync::broadcast::Sender;
use tokio_postgres::AsyncMessage;

use crate::state::{Notice, StateError};
use crate::telemetry::state_metrics::StateMetrics;

/// How often the listening connection is proven alive.
const PING_EVERY: Duration = Duration::from_secs(5);

/// The longest payload sent as it is (PostgreSQL refuses 8000 bytes or more).
pub(super) const MAX_PAYLOAD: usize = 7900;

/// The channel every replica listens on.
pub(super) const CHANNEL: &str = "portico";

/// A notice as it travels: who sent it, and what it says.
#[derive(serde::Serialize, serde::Deserialize)]
struct Envelope {
    from: String,
    notice: Notice,
}

/// The `NOTIFY` payload of `notice` sent by `origin`.
pub(super) fn payload(origin: &str, notice: &Notice) -> Result<String, StateError> {
    serde_json::to_string(&Envelope {
        from: origin.to_string(),
        notice: notice.clone(),
    })
    .map_err(|e| StateError::Failed(e.to_string()))
}

/// Listens until the store is dropped (its runtime ends), reconnecting after a loss.
pub(super) async fn listen(
    config: tokio_postgres::Config,
    notices: Sender<Notice>,
    origin: String,
    metrics: StateMetrics,
) {
    let mut lost = false;
    loop {
        let connected = match super::tls() {
            Ok(tls) => config.connect(tls).await.map_err(super::failed),
            Err(error) => Err(error),
        };
        match connected {
            Ok((client, mut connection)) => {
                let (done, mut ended) = tokio::sync::oneshot::channel::<()>();
                let sender = notices.clone();
                let me = origin.clone();
                let counted = metrics.clone();
                let driver = tokio::spawn(async move {
                    let mut messages =
                        futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
                    while let Some(message) = messages.next().await {
                        match message {
                            Ok(AsyncMessage::Notification(n)) => {
                                if let Ok(envelope) = serde_json::from_str::<Envelope>(n.payload())
                                {
                                    if envelope.from != me {
                                        counted.count_notice("received");
                                        let _ = sender.send(envelope.notice);
                                    }
                                }
                            }
                            Ok(_) => {}
                            Err(error) => {
                                let error = super::failed(error);
                                tracing::warn!(%error, "state store: the listening connection failed");
                                break;
                            }
                        }
                    }
                    let _ = done.send(());
                });
                match client.batch_execute(&format!("LISTEN {CHANNEL}")).await {
                    Ok(()) => {
                        // Also the first time: what was published between this replica
                        // loading its subscriptions and listening would be missed otherwise.
                        if lost {
                            tracing::info!("state store: listening again; caches resync");
                        }
                        let _ = notices.send(Notice::Resync);
                        // Held until the connection ends, or a ping goes unanswered: a
                        // listening connection that died silently would miss every notice.
                        loop {
                            tokio::select! {
                                _ = &mut ended => break,
                                _ = tokio::time::sleep(PING_EVERY) => {
                                    let ping = tokio::time::timeout(PING_EVERY, client.simple_query("SELECT 1")).await;
                                    if !matches!(ping, Ok(Ok(_))) {
                                        tracing::warn!("state store: the listening connection stopped answering");
                                        break;
                                    }
                                }
                            }
                        }
                    }
                    Err(error) => {
                        let error = super::failed(error);
                        tracing::warn!(%error, "state store: cannot LISTEN");
                    }
                }
                driver.abort();
                drop(client);
            }
            Err(error) => {
                tracing::warn!(%error, "state store: cannot open the listening connection");
            }
        }
        lost = true;
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}
