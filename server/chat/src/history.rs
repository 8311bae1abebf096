//! A room's recent messages kept in Redis beside the hosting node's memory, so a room that moves
//! to another node (its host restarted or died, [`crate::placement`]) keeps its history: the new
//! host loads it when it opens the room.
//!
//! Each room is one Redis list, `onair:chat:history:{channel}:{room}`, of the messages as the
//! protocol's JSON (oldest first), trimmed to the configured `history` length and expiring
//! [`KEEP_FOR`] after its last message. Writes go through one task and a bounded queue (the
//! room never waits on Redis; a full queue or a failed write is counted in
//! `onair_chat_history_errors_total` and logged, and that message is missing from the copy in
//! Redis only); a load that fails or takes over [`LOAD_TIMEOUT`] opens the room without history.

use std::time::Duration;

use redis::aio::MultiplexedConnection;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::protocol::ChatMessage;

/// Prefix of the history keys.
pub const KEY_PREFIX: &str = "onair:chat:history:";
/// A room's history in Redis expires this long after its last message.
pub const KEEP_FOR: Duration = Duration::from_secs(24 * 3600);
/// Longest wait for a room's history when a node opens the room.
pub const LOAD_TIMEOUT: Duration = Duration::from_secs(1);
/// Writes waiting for Redis; beyond, new ones are dropped and counted.
const QUEUE: usize = 8192;
/// Longest wait for one Redis command.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(2);

enum Write {
    Append { key: String, json: String },
    Remove { key: String, json: String },
}

/// The rooms' history in Redis. Cheap to share behind the hub.
pub struct RedisHistory {
    client: redis::Client,
    connection: tokio::sync::Mutex<Option<MultiplexedConnection>>,
    writes: mpsc::Sender<Write>,
}

impl std::fmt::Debug for RedisHistory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisHistory").field("queued", &(QUEUE - self.writes.capacity())).finish_non_exhaustive()
    }
}

fn key(channel: &str, room: u32) -> String {
    format!("{KEY_PREFIX}{channel}:{room}")
}

fn json(message: &ChatMessage) -> String {
    serde_json::to_string(message).unwrap_or_default()
}

fn failed(what: &'static str, error: &dyn std::fmt::Display) {
    metrics::counter!("onair_chat_history_errors_total", "op" => what).increment(1);
    tracing::warn!(op = what, error = %error, "chat history in Redis");
}

async fn connect(client: &redis::Client) -> Option<MultiplexedConnection> {
    match tokio::time::timeout(COMMAND_TIMEOUT, client.get_multiplexed_async_connection()).await {
        Ok(Ok(c)) => Some(c),
        Ok(Err(e)) => {
            failed("connect", &e);
            None
        }
        Err(_) => {
            failed("connect", &"timed out");
            None
        }
    }
}

impl RedisHistory {
    /// History on the Redis at `url`, each room trimmed to its last `keep` messages; writes until
    /// `cancel`. Errors: a malformed URL.
    pub fn new(url: &str, keep: usize, cancel: CancellationToken) -> Result<RedisHistory, redis::RedisError> {
        let client = redis::Client::open(url)?;
        let (writes, mut queue) = mpsc::channel::<Write>(QUEUE);
        let writer = client.clone();
        let keep = keep.max(1) as isize;
        tokio::spawn(async move {
            let mut conn: Option<MultiplexedConnection> = None;
            while let Some(Some(write)) = cancel.run_until_cancelled(queue.recv()).await {
                if conn.is_none() {
                    conn = connect(&writer).await;
                }
                let Some(c) = conn.as_mut() else { continue };
                let mut pipe = redis::pipe();
                let what = match &write {
                    Write::Append { key, json } => {
                        pipe.rpush(key, json).ignore().ltrim(key, -keep, -1).ignore().pexpire(key, KEEP_FOR.as_millis() as i64).ignore();
                        "append"
                    }
                    Write::Remove { key, json } => {
                        pipe.lrem(key, 0, json).ignore();
                        "remove"
                    }
                };
                match tokio::time::timeout(COMMAND_TIMEOUT, pipe.query_async::<()>(c)).await {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => {
                        failed(what, &e);
                        conn = None;
                    }
                    Err(_) => {
                        failed(what, &"timed out");
                        conn = None;
                    }
                }
            }
        });
        Ok(RedisHistory { client, connection: tokio::sync::Mutex::new(None), writes })
    }

    fn queue(&self, write: Write) {
        if self.writes.try_send(write).is_err() {
            failed("queue", &"the write queue is full");
        }
    }

    /// Queues `message`, just kept in `room` of `channel`.
    pub fn append(&self, channel: &str, room: u32, message: &ChatMessage) {
        self.queue(Write::Append { key: key(channel, room), json: json(message) });
    }

    /// Queues the removal of `message` (deleted by a moderator) from `room` of `channel`.
    pub fn remove(&self, channel: &str, room: u32, message: &ChatMessage) {
        self.queue(Write::Remove { key: key(channel, room), json: json(message) });
    }

    /// The history of `room` of `channel`, oldest first; empty when there is none, or Redis
    /// fails or is slower than [`LOAD_TIMEOUT`] (counted and logged).
    pub async fn load(&self, channel: &str, room: u32) -> Vec<ChatMessage> {
        let loaded = tokio::time::timeout(LOAD_TIMEOUT, async {
            let mut slot = self.connection.lock().await;
            if slot.is_none() {
                *slot = connect(&self.client).await;
            }
            let mut conn = slot.clone()?;
            drop(slot);
            match redis::cmd("LRANGE").arg(key(channel, room)).arg(0).arg(-1).query_async::<Vec<String>>(&mut conn).await {
                Ok(list) => Some(list),
                Err(e) => {
                    failed("load", &e);
                    *self.connection.lock().await = None;
                    None
                }
            }
        })
        .await;
        let list = match loaded {
            Ok(Some(list)) => list,
            Ok(None) => return Vec::new(),
            Err(_) => {
                failed("load", &"timed out");
                return Vec::new();
            }
        };
        list.iter().filter_map(|j| serde_json::from_str::<ChatMessage>(j).ok()).collect()
    }
}
