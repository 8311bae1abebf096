//! Channel-wide chat events between nodes: each node holds the rooms of the users connected to it,
//! and what must reach every room of a channel (broadcaster and moderator messages, deletions,
//! bans, timeouts, slow mode) is applied to the local rooms and published once per event on Redis
//! pub/sub (`onair:chat:{channel}`), so each other node applies it once to its own rooms. In one
//! process (no registry) there is no bus: the local rooms are every room.
//!
//! Delivery is at most once (Redis pub/sub): a node that is disconnected from Redis misses the
//! events of that time (`onair_chat_bus_errors_total`); bans are also in the database.

use std::time::Duration;

use futures::StreamExt;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::protocol::ChatMessage;
use crate::store::Ban;

/// Prefix of the Redis pub/sub channels.
pub const TOPIC: &str = "onair:chat:";
/// Events waiting to be published; beyond, new ones are dropped and counted.
const QUEUE: usize = 4096;

/// An event every room of a channel gets.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum ChannelEvent {
    /// A broadcaster's or moderator's message.
    Message {
        /// The message (`room` none).
        message: ChatMessage,
    },
    /// A message deleted.
    Deleted {
        /// Its id.
        id: String,
    },
    /// A ban (`timeout` false) or timeout.
    Ban {
        /// Who, and until when.
        ban: Ban,
        /// A timeout: the user stays connected, read-only.
        timeout: bool,
    },
    /// A ban or timeout lifted.
    Unban {
        /// The user's name.
        user: String,
    },
    /// Slow mode set (0: off).
    Slow {
        /// Seconds between a viewer's messages.
        seconds: u32,
    },
}

/// An event on the wire: which node sent it, for which channel.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct Wire {
    node: String,
    channel: String,
    event: ChannelEvent,
}

/// This node's side of the bus: publishes in order through one task.
#[derive(Debug)]
pub struct Bus {
    node: String,
    tx: mpsc::Sender<(String, ChannelEvent)>,
}

/// The events other nodes published: (channel, event).
pub type Incoming = mpsc::Receiver<(String, ChannelEvent)>;

impl Bus {
    /// A bus on the Redis at `url` for node `node`; publishes and subscribes (reconnecting) until
    /// `cancel`. Errors: a malformed URL.
    pub fn redis(url: &str, node: &str, cancel: CancellationToken) -> Result<(Bus, Incoming), redis::RedisError> {
        let client = redis::Client::open(url)?;
        let (tx, mut outgoing) = mpsc::channel::<(String, ChannelEvent)>(QUEUE);
        let (incoming_tx, incoming) = mpsc::channel(QUEUE);
        let (publisher, me, stop) = (client.clone(), node.to_string(), cancel.clone());
        tokio::spawn(async move {
            let mut conn = None;
            while let Some(Some((channel, event))) = stop.run_until_cancelled(outgoing.recv()).await {
                let payload = serde_json::to_string(&Wire { node: me.clone(), channel: channel.clone(), event }).unwrap_or_default();
                for _attempt in 0..2 {
                    if conn.is_none() {
                        conn = tokio::time::timeout(Duration::from_secs(2), publisher.get_multiplexed_async_connection()).await.ok().and_then(Result::ok);
                    }
                    let Some(c) = conn.as_mut() else { continue };
                    let sent = tokio::time::timeout(Duration::from_secs(2), redis::cmd("PUBLISH").arg(format!("{TOPIC}{channel}")).arg(&payload).query_async::<i64>(c)).await;
                    if matches!(sent, Ok(Ok(_))) {
                        metrics::counter!("onair_chat_bus_published_total").increment(1);
                        break;
                    }
                    conn = None;
                    metrics::counter!("onair_chat_bus_errors_total").increment(1);
                }
            }
        });
        let me = node.to_string();
        tokio::spawn(async move {
            loop {
                let subscribed = match client.get_async_pubsub().await {
                    Ok(mut pubsub) => pubsub.psubscribe(format!("{TOPIC}*")).await.map(|()| pubsub),
                    Err(e) => Err(e),
                };
                match subscribed {
                    Ok(mut pubsub) => {
                        let mut messages = pubsub.on_message();
                        while let Some(Some(m)) = cancel.run_until_cancelled(messages.next()).await {
                            let Ok(wire) = m.get_payload::<String>().map(|p| serde_json::from_str::<Wire>(&p)) else { continue };
                            match wire {
                                Ok(w) if w.node != me => {
                                    if incoming_tx.try_send((w.channel, w.event)).is_err() {
                                        metrics::counter!("onair_chat_bus_errors_total").increment(1);
                                    }
                                }
                                Ok(_) => {}
                                Err(e) => tracing::debug!(error = %e, "chat bus: a message that is not an event"),
                            }
                        }
                    }
                    Err(e) => tracing::debug!(error = %e, "chat bus: cannot subscribe; retrying"),
                }
                if cancel.is_cancelled() {
                    return;
                }
                metrics::counter!("onair_chat_bus_errors_total").increment(1);
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        });
        Ok((Bus { node: node.to_string(), tx }, incoming))
    }

    /// Queues `event` of `channel` for the other nodes (dropped and counted when the queue is full).
    pub fn publish(&self, channel: &str, event: ChannelEvent) {
        if self.tx.try_send((channel.to_string(), event)).is_err() {
            metrics::counter!("onair_chat_bus_errors_total").increment(1);
            tracing::warn!(node = %self.node, channel, "chat bus: publish queue full; event not sent to other nodes");
        }
    }
}
