//! The node registry: each node publishes a [`NodeReport`] every report interval and it expires
//! `entry_ttl` after the last one; Usher reads every live report.
//!
//! Two engines, one enum (no dynamic dispatch on the hot path):
//! - [`Registry::Memory`]: in-process, the embedded default (`onair serve` alone).
//! - [`Registry::Redis`]: a Redis server shared by every node (`--registry redis://HOST:PORT`;
//!   `redis://:PASSWORD@HOST`, `rediss://` for TLS). Layout, under the prefix `onair:`:
//!   - `onair:node:{id}`: the report as JSON, written with `SET … PX ttl`, so Redis itself drops a
//!     node that stops reporting (a kill -9) `ttl` after its last report;
//!   - `onair:nodes`: a sorted set of node ids scored by their expiry (Unix ms, the node's clock),
//!     the index Usher reads (`ZRANGEBYSCORE`, then `MGET`); entries a minute past their expiry are
//!     pruned, and a listed id whose key has expired is skipped, so clock skew between nodes
//!     never revives a dead node.
//!
//! The Redis connection reconnects by itself (a restarted Redis sees every node again at its
//! next report); each command times out after [`COMMAND_TIMEOUT`].

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use redis::aio::{ConnectionManager, ConnectionManagerConfig};

use crate::node::NodeReport;

/// Time one Redis command may take before it fails.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(1);

const NODE_KEY: &str = "onair:node:";
const NODES_INDEX: &str = "onair:nodes";
const LEASE_KEY: &str = "onair:lease:";
const EPOCH_KEY: &str = "onair:epoch:";
const WARM_CHANNEL: &str = "onair:warm:";

/// Takes the lease (KEYS[1]) for ARGV[1] for ARGV[2] ms, bumping the epoch (KEYS[2]) for a new
/// holder; a holder asking again keeps its epoch. Returns {1, epoch} or {0, holder}.
const ACQUIRE: &str = r"
local cur = redis.call('GET', KEYS[1])
if cur then
  local sep = string.find(cur, ' ', 1, true)
  local holder = string.sub(cur, 1, sep - 1)
  if holder ~= ARGV[1] then return {0, holder} end
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return {1, string.sub(cur, sep + 1)}
end
local epoch = redis.call('INCR', KEYS[2])
redis.call('SET', KEYS[1], ARGV[1] .. ' ' .. epoch, 'PX', ARGV[2])
return {1, tostring(epoch)}
";

/// Extends the lease KEYS[1] if ARGV[1] (holder) with epoch ARGV[2] still holds it; re-takes it
/// if it vanished (a Redis restarted without persistence), keeping the epoch counter KEYS[2] at
/// least that epoch. Returns 1 (held) or 0 (lost to another holder).
const RENEW: &str = r"
local mine = ARGV[1] .. ' ' .. ARGV[2]
local cur = redis.call('GET', KEYS[1])
if cur == mine then
  redis.call('PEXPIRE', KEYS[1], ARGV[3])
  return 1
end
if cur then return 0 end
redis.call('SET', KEYS[1], mine, 'PX', ARGV[3])
if tonumber(redis.call('GET', KEYS[2]) or '0') < tonumber(ARGV[2]) then redis.call('SET', KEYS[2], ARGV[2]) end
return 1
";

/// Deletes the lease KEYS[1] if ARGV[1] still holds it.
const RELEASE: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
";
/// Index entries this long past their expiry are pruned, ms.
const PRUNE_AFTER_MS: u64 = 60_000;

/// Usher's request to a node to warm a channel ([`Registry::warm`]).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct WarmRequest {
    /// The channel.
    pub channel: String,
    /// A playback token for the channel, when playback requires one: a relay that only verifies
    /// tokens (an ES256 public key) pulls its upstream with it, having no viewer's yet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
}

/// Why a registry operation failed.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// The registry URL is not a Redis URL.
    #[error("registry URL {url}: {reason}")]
    Url {
        /// The URL with any password hidden.
        url: String,
        /// What is wrong.
        reason: String,
    },
    /// Redis answered with an error or the connection failed.
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    /// Redis did not answer within [`COMMAND_TIMEOUT`].
    #[error("redis: no answer within {COMMAND_TIMEOUT:?}")]
    Timeout,
    /// A report could not be encoded (never expected).
    #[error("report encoding: {0}")]
    Encode(#[from] serde_json::Error),
}

/// In-process registry: reports with their expiry.
#[derive(Debug, Default)]
pub struct MemoryRegistry {
    nodes: Mutex<HashMap<String, (NodeReport, Instant)>>,
    leases: Mutex<MemoryLeases>,
}

/// In-process leases: channel → (holder, epoch, expiry), and the last epoch per channel.
type MemoryLeases = (HashMap<String, (String, u64, Instant)>, HashMap<String, u64>);

/// The answer to a lease request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lease {
    /// This node holds the lease with this fencing epoch (bumped on every new holder).
    Held(u64),
    /// Another node holds it.
    HeldBy(String),
}

/// Redis registry.
#[derive(Clone)]
pub struct RedisRegistry {
    conn: ConnectionManager,
    client: redis::Client,
    url: String,
}

impl std::fmt::Debug for RedisRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisRegistry").field("url", &self.url).finish()
    }
}

/// Where node reports live.
#[derive(Debug)]
pub enum Registry {
    /// In this process only.
    Memory(MemoryRegistry),
    /// In a shared Redis.
    Redis(RedisRegistry),
}

/// `url` with the password (if any) replaced by `***`, for logs.
pub fn redacted(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => format!("{}***{}", &url[..s + 3], &url[at..]),
        _ => url.to_string(),
    }
}

impl Registry {
    /// The in-process registry.
    pub fn memory() -> Self {
        Registry::Memory(MemoryRegistry::default())
    }

    /// A Redis registry at `url` (`redis://[:PASSWORD@]HOST[:PORT][/DB]`, or `rediss://` for TLS).
    /// Connects lazily: a Redis that is down at start is retried at every report. Errors:
    /// [`RegistryError::Url`] for a malformed URL.
    pub fn redis(url: &str) -> Result<Self, RegistryError> {
        let shown = redacted(url);
        let bad = |reason: String| RegistryError::Url { url: shown.clone(), reason };
        if !(url.starts_with("redis://") || url.starts_with("rediss://")) {
            return Err(bad("must start with redis:// or rediss://".into()));
        }
        let client = redis::Client::open(url).map_err(|e| bad(e.to_string()))?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(COMMAND_TIMEOUT))
            .set_response_timeout(Some(COMMAND_TIMEOUT))
            .set_number_of_retries(2)
            .set_max_delay(Duration::from_millis(500));
        let conn = ConnectionManager::new_lazy_with_config(client.clone(), config).map_err(|e| bad(e.to_string()))?;
        Ok(Registry::Redis(RedisRegistry { conn, client, url: shown }))
    }

    /// `"memory"` or the Redis URL without its password.
    pub fn describe(&self) -> String {
        match self {
            Registry::Memory(_) => "memory".into(),
            Registry::Redis(r) => r.url.clone(),
        }
    }

    /// Publishes `report`, valid for `ttl` from `now_ms` (Unix ms). Errors: [`RegistryError`].
    pub async fn publish(&self, report: &NodeReport, ttl: Duration, now_ms: u64) -> Result<(), RegistryError> {
        match self {
            Registry::Memory(m) => {
                let mut nodes = m.nodes.lock().unwrap_or_else(|e| e.into_inner());
                nodes.insert(report.info.id.clone(), (report.clone(), Instant::now() + ttl));
                Ok(())
            }
            Registry::Redis(r) => r.publish(report, ttl, now_ms).await,
        }
    }

    /// Removes node `id` at once (a graceful stop). Errors: [`RegistryError`].
    pub async fn withdraw(&self, id: &str) -> Result<(), RegistryError> {
        match self {
            Registry::Memory(m) => {
                m.nodes.lock().unwrap_or_else(|e| e.into_inner()).remove(id);
                Ok(())
            }
            Registry::Redis(r) => r.withdraw(id).await,
        }
    }

    /// Takes the publish lease of `channel` for node `node` for `ttl` (one publisher per stream
    /// key across the cluster), or keeps it if `node` holds it already. Errors: [`RegistryError`].
    pub async fn acquire(&self, channel: &str, node: &str, ttl: Duration) -> Result<Lease, RegistryError> {
        match self {
            Registry::Memory(m) => {
                let mut guard = m.leases.lock().unwrap_or_else(|e| e.into_inner());
                let (leases, epochs) = &mut *guard;
                let now = Instant::now();
                if let Some((holder, epoch, expires)) = leases.get_mut(channel).filter(|l| l.2 > now) {
                    if holder != node {
                        return Ok(Lease::HeldBy(holder.clone()));
                    }
                    *expires = now + ttl;
                    return Ok(Lease::Held(*epoch));
                }
                let epoch = epochs.entry(channel.to_string()).or_insert(0);
                *epoch += 1;
                leases.insert(channel.to_string(), (node.to_string(), *epoch, now + ttl));
                Ok(Lease::Held(*epoch))
            }
            Registry::Redis(r) => {
                let mut conn = r.conn.clone();
                let script = redis::Script::new(ACQUIRE);
                let mut call = script.key(format!("{LEASE_KEY}{channel}"));
                call.key(format!("{EPOCH_KEY}{channel}")).arg(node).arg(ttl.as_millis() as u64);
                let (held, value): (i64, String) = timed(call.invoke_async(&mut conn)).await?;
                Ok(if held == 1 { Lease::Held(value.parse().unwrap_or(0)) } else { Lease::HeldBy(value) })
            }
        }
    }

    /// Extends `node`'s lease of `channel` (epoch `epoch`) by `ttl`: `true` while it holds it,
    /// `false` when another node took it. Errors: [`RegistryError`].
    pub async fn renew(&self, channel: &str, node: &str, epoch: u64, ttl: Duration) -> Result<bool, RegistryError> {
        match self {
            Registry::Memory(m) => {
                let mut guard = m.leases.lock().unwrap_or_else(|e| e.into_inner());
                let now = Instant::now();
                match guard.0.get_mut(channel) {
                    Some((holder, e, expires)) if holder == node && *e == epoch => {
                        *expires = now + ttl;
                        Ok(true)
                    }
                    Some((_, _, expires)) if *expires > now => Ok(false),
                    _ => {
                        guard.0.insert(channel.to_string(), (node.to_string(), epoch, now + ttl));
                        Ok(true)
                    }
                }
            }
            Registry::Redis(r) => {
                let mut conn = r.conn.clone();
                let script = redis::Script::new(RENEW);
                let mut call = script.key(format!("{LEASE_KEY}{channel}"));
                call.key(format!("{EPOCH_KEY}{channel}")).arg(node).arg(epoch).arg(ttl.as_millis() as u64);
                let held: i64 = timed(call.invoke_async(&mut conn)).await?;
                Ok(held == 1)
            }
        }
    }

    /// Gives up `node`'s lease of `channel` (epoch `epoch`) at once, if it still holds it (its
    /// publisher left: another node may take the key now). Errors: [`RegistryError`].
    pub async fn release(&self, channel: &str, node: &str, epoch: u64) -> Result<(), RegistryError> {
        match self {
            Registry::Memory(m) => {
                let mut guard = m.leases.lock().unwrap_or_else(|e| e.into_inner());
                if guard.0.get(channel).is_some_and(|(h, e, _)| h == node && *e == epoch) {
                    guard.0.remove(channel);
                }
                Ok(())
            }
            Registry::Redis(r) => {
                let mut conn = r.conn.clone();
                let script = redis::Script::new(RELEASE);
                let mut call = script.key(format!("{LEASE_KEY}{channel}"));
                call.arg(format!("{node} {epoch}"));
                timed(call.invoke_async::<i64>(&mut conn)).await.map(|_| ())
            }
        }
    }

    /// Asks node `node` to warm a channel (pull it before its viewers arrive): a message on the
    /// node's command channel (Redis pub/sub `onair:warm:{node}`, the request as JSON); in-process,
    /// nothing to send (one node). Errors: [`RegistryError`].
    pub async fn warm(&self, node: &str, request: &WarmRequest) -> Result<(), RegistryError> {
        match self {
            Registry::Memory(_) => Ok(()),
            Registry::Redis(r) => {
                let mut conn = r.conn.clone();
                let payload = serde_json::to_string(request).unwrap_or_default();
                timed(redis::cmd("PUBLISH").arg(format!("{WARM_CHANNEL}{node}")).arg(payload).query_async::<i64>(&mut conn)).await.map(|_| ())
            }
        }
    }

    /// The warm requests for this node, as they are asked (a dedicated Redis connection,
    /// resubscribed after a reconnect); `None` in-process. A message that is not a request's
    /// JSON is taken as a bare channel name (nodes of an earlier version); the receiver checks
    /// the name. The stream ends when the registry is dropped.
    pub async fn warm_requests(&self, node: &str) -> Option<tokio::sync::mpsc::Receiver<WarmRequest>> {
        let Registry::Redis(r) = self else { return None };
        let (tx, rx) = tokio::sync::mpsc::channel(64);
        let (client, topic) = (r.client.clone(), format!("{WARM_CHANNEL}{node}"));
        tokio::spawn(async move {
            use futures::StreamExt;
            loop {
                match client.get_async_pubsub().await {
                    Ok(mut pubsub) => {
                        if pubsub.subscribe(&topic).await.is_ok() {
                            let mut messages = pubsub.on_message();
                            while let Some(m) = messages.next().await {
                                let Ok(payload) = m.get_payload::<String>() else { continue };
                                let request = serde_json::from_str(&payload).unwrap_or(WarmRequest { channel: payload, token: None });
                                if tx.send(request).await.is_err() {
                                    return;
                                }
                            }
                        }
                    }
                    Err(e) => tracing::debug!(error = %e, "registry: cannot subscribe to warm requests; retrying"),
                }
                if tx.is_closed() {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        });
        Some(rx)
    }

    /// Every unexpired report, sorted by node id. Errors: [`RegistryError`].
    pub async fn snapshot(&self, now_ms: u64) -> Result<Vec<NodeReport>, RegistryError> {
        match self {
            Registry::Memory(m) => {
                let now = Instant::now();
                let mut nodes = m.nodes.lock().unwrap_or_else(|e| e.into_inner());
                nodes.retain(|_, (_, expires)| *expires > now);
                let mut out: Vec<NodeReport> = nodes.values().map(|(r, _)| r.clone()).collect();
                out.sort_by(|a, b| a.info.id.cmp(&b.info.id));
                Ok(out)
            }
            Registry::Redis(r) => r.snapshot(now_ms).await,
        }
    }
}

async fn timed<T>(f: impl std::future::Future<Output = redis::RedisResult<T>>) -> Result<T, RegistryError> {
    match tokio::time::timeout(COMMAND_TIMEOUT, f).await {
        Ok(r) => Ok(r?),
        Err(_) => Err(RegistryError::Timeout),
    }
}

impl RedisRegistry {
    async fn publish(&self, report: &NodeReport, ttl: Duration, now_ms: u64) -> Result<(), RegistryError> {
        let json = serde_json::to_string(report)?;
        let key = format!("{NODE_KEY}{}", report.info.id);
        let ttl_ms = ttl.as_millis() as u64;
        let mut pipe = redis::pipe();
        pipe.atomic()
            .cmd("SET")
            .arg(&key)
            .arg(json)
            .arg("PX")
            .arg(ttl_ms)
            .ignore()
            .cmd("ZADD")
            .arg(NODES_INDEX)
            .arg(now_ms + ttl_ms)
            .arg(&report.info.id)
            .ignore()
            .cmd("ZREMRANGEBYSCORE")
            .arg(NODES_INDEX)
            .arg("-inf")
            .arg(now_ms.saturating_sub(PRUNE_AFTER_MS))
            .ignore();
        let mut conn = self.conn.clone();
        timed(pipe.query_async::<()>(&mut conn)).await
    }

    async fn withdraw(&self, id: &str) -> Result<(), RegistryError> {
        let mut pipe = redis::pipe();
        pipe.atomic().cmd("DEL").arg(format!("{NODE_KEY}{id}")).ignore().cmd("ZREM").arg(NODES_INDEX).arg(id).ignore();
        let mut conn = self.conn.clone();
        timed(pipe.query_async::<()>(&mut conn)).await
    }

    async fn snapshot(&self, now_ms: u64) -> Result<Vec<NodeReport>, RegistryError> {
        let mut conn = self.conn.clone();
        // Listed ids up to a minute past expiry (clock skew); their keys decide.
        let ids: Vec<String> =
            timed(redis::cmd("ZRANGEBYSCORE").arg(NODES_INDEX).arg(now_ms.saturating_sub(PRUNE_AFTER_MS)).arg("+inf").query_async(&mut conn)).await?;
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let keys: Vec<String> = ids.iter().map(|id| format!("{NODE_KEY}{id}")).collect();
        let values: Vec<Option<String>> = timed(redis::cmd("MGET").arg(&keys).query_async(&mut conn)).await?;
        let mut out: Vec<NodeReport> = Vec::with_capacity(values.len());
        for (id, value) in ids.iter().zip(values) {
            let Some(json) = value else { continue };
            match serde_json::from_str::<NodeReport>(&json) {
                Ok(r) => out.push(r),
                Err(e) => {
                    // A node of another version, or a foreign key: skip it, say so.
                    metrics::counter!("onair_registry_errors_total", "kind" => "decode").increment(1);
                    tracing::warn!(node = %id, error = %e, "registry: cannot decode a node report");
                }
            }
        }
        out.sort_by(|a, b| a.info.id.cmp(&b.info.id));
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node::tests::node;

    #[tokio::test]
    async fn memory_registry_expires_entries() {
        let r = Registry::memory();
        r.publish(&node("b", "eu", 0, 10, &[]), Duration::from_millis(200), 0).await.expect("publish");
        r.publish(&node("a", "eu", 0, 10, &[]), Duration::from_secs(60), 0).await.expect("publish");
        let ids = |v: Vec<NodeReport>| v.into_iter().map(|n| n.info.id).collect::<Vec<_>>();
        assert_eq!(ids(r.snapshot(0).await.expect("snapshot")), vec!["a", "b"]);
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(ids(r.snapshot(0).await.expect("snapshot")), vec!["a"]);
        r.withdraw("a").await.expect("withdraw");
        assert!(r.snapshot(0).await.expect("snapshot").is_empty());
        assert_eq!(r.describe(), "memory");
    }

    #[tokio::test]
    async fn memory_leases_are_exclusive_and_bump_the_epoch() {
        let r = Registry::memory();
        let ttl = Duration::from_millis(200);
        assert_eq!(r.acquire("demo", "a", ttl).await.expect("a"), Lease::Held(1));
        assert_eq!(r.acquire("demo", "a", ttl).await.expect("a again"), Lease::Held(1));
        assert_eq!(r.acquire("demo", "b", ttl).await.expect("b"), Lease::HeldBy("a".into()));
        assert!(r.renew("demo", "a", 1, ttl).await.expect("renew"));
        r.release("demo", "a", 1).await.expect("release");
        assert_eq!(r.acquire("demo", "b", ttl).await.expect("b"), Lease::Held(2));
        assert!(!r.renew("demo", "a", 1, ttl).await.expect("a lost it"));
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(r.acquire("demo", "a", ttl).await.expect("expired"), Lease::Held(3));
    }

    #[test]
    fn redis_urls_are_checked_and_passwords_hidden() {
        assert_eq!(redacted("redis://:hunter2@db:6379/0"), "redis://***@db:6379/0");
        assert_eq!(redacted("redis://db:6379"), "redis://db:6379");
        let e = Registry::redis("http://:hunter2@db").expect_err("not redis");
        assert!(!e.to_string().contains("hunter2"), "{e}");
    }
}
