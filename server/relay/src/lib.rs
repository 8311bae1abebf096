//! The edge tier: a node pulls the channels it does not ingest from its upstreams (origins or
//! other relays, so trees of any depth), over LL-HLS itself, into its own in-RAM store, where the
//! same origin routes serve them.
//!
//! - **On demand**: the first request for a channel fetches its Multivariant Playlist from the
//!   first upstream that has it (mirrored as it is: BANDWIDTH and CODECS as the origin measured
//!   them); the first request for a rendition starts its pull, and every concurrent request waits
//!   for that one pull. A rendition nobody asked for within `release_after_ms` is released, and the
//!   channel with its last one.
//! - **One fetch per part, as soon as it exists**: each pulled rendition follows the upstream's
//!   Media Playlist with blocking reloads and requests the Preload Hint in parallel
//!   (RFC 8216bis §6.2.5.2), so a part crosses each tier once, the moment it is produced; viewers
//!   blocked on this node wake when it lands in the store.
//! - **Same numbering**: parts are imported at the upstream's Media Sequence Number, part id,
//!   discontinuity sequence and init id ([`onair_store::Placement::At`]); durations come from the
//!   `moof` itself. A player may move between the origin and any relay mid-stream.
//! - **Upstream failure**: a transport error, a 5xx, or a blocked request that outlives
//!   `block_timeout_ms` on an upstream that no longer answers moves the channel to the next
//!   upstream that has it; relays of one origin share its numbering, so the pull continues
//!   where it was. With no upstream left, blocked viewers get 503 and no EXT-X-ENDLIST.
//!
//! Metrics: `onair_relay_upstream_requests_total{kind,outcome}`, `onair_relay_upstream_bytes_total{kind}`,
//! `onair_relay_failovers_total`, `onair_relay_errors_total{kind}`, `onair_relay_part_delay_seconds`
//! (import time − origin production time), `onair_relay_coalesced_waits_total`,
//! `onair_relay_channels`, `onair_relay_renditions`, `onair_relay_held_bytes` (media the relayed
//! channels hold), `onair_relay_memory_releases_total` (channels released over `max_memory_mb`).
//!
//! - **Bounded memory**: at `max_memory_mb` of relayed media a request for one more channel gets
//!   503 (`onair_relay_errors_total{kind="memory_full"}`); over it, the least recently requested
//!   channels are released, never the last one, until the others fit.

mod channel;
pub mod config;
mod fetch;
mod pull;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use futures::future::BoxFuture;
use onair_hls::{MultivariantPlaylist, RenditionReport};
use onair_origin::{Held, Unavailable, Upstream};
use onair_store::Store;
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

pub use config::RelayConfig;
pub use fetch::{FetchError, MAX_BODY};

use channel::{ChannelPull, Master, RenditionPull};

/// Longest a viewer request waits for a cold channel or rendition to arrive from upstream.
const COLD_WAIT: Duration = Duration::from_secs(5);
/// How often master playlists are refreshed from upstream (BANDWIDTH is re-measured there).
const MASTER_REFRESH: Duration = Duration::from_secs(10);
/// How long a channel no upstream has is remembered as missing (so a crowd asking for it costs
/// one upstream request per interval).
const NEGATIVE_TTL: Duration = Duration::from_secs(1);
/// How long a channel the upstream ended is kept before the relay lets a new broadcast in.
const ENDED_LINGER: Duration = Duration::from_secs(5);
/// How often the media held by relayed channels is measured against `max_memory_mb`.
const MEMORY_CHECK: Duration = Duration::from_secs(1);

pub(crate) fn count_error(kind: &'static str) {
    metrics::counter!("onair_relay_errors_total", "kind" => kind).increment(1);
}

/// Where a channel may be pulled from besides the configured upstreams: the control plane's
/// answer (the cluster registry's holders of the channel, best parent first). Asked each time a
/// channel looks for an upstream (its first pull, and every failover); its answer is tried before
/// the configured list.
pub trait Routes: Send + Sync + std::fmt::Debug {
    /// Base URLs (`http://host:port`) that hold `channel` now, best first.
    fn upstreams_for(&self, channel: &str) -> Vec<String>;
}

/// Authorises this relay's upstream requests when upstreams require playback tokens.
pub trait UpstreamAuth: Send + Sync + std::fmt::Debug {
    /// A playback token for `channel` (a JWT, URL-safe), put in the path prefix `/t/{token}`.
    fn token(&self, channel: &str) -> Option<String>;
}

/// What every relayed channel shares.
#[derive(Debug)]
pub(crate) struct Shared {
    pub store: Arc<Store>,
    pub fetcher: fetch::Fetcher,
    pub config: RelayConfig,
    upstreams: RwLock<Arc<Vec<String>>>,
    routes: RwLock<Option<Arc<dyn Routes>>>,
    auth: RwLock<Option<Arc<dyn UpstreamAuth>>>,
    pub shutdown: CancellationToken,
    channels: Mutex<HashMap<String, Arc<ChannelPull>>>,
    directory: tokio::sync::Mutex<Option<(Instant, Vec<DirectoryEntry>)>>,
    epoch: Instant,
    /// Bytes of media the relayed channels held at the last check (see [`guard_memory`]).
    held_bytes: AtomicU64,
}

/// A channel an upstream lists as live (its `GET /api/v1/channels`).
#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
pub struct DirectoryEntry {
    /// Channel name.
    pub channel: String,
    /// `live` or `reconnecting`.
    pub state: String,
    /// Start of the broadcast, Unix ms.
    pub started_at_ms: u64,
    /// Rendition names.
    pub renditions: Vec<String>,
}

impl DirectoryEntry {
    /// True while its publisher is attached.
    pub fn is_live(&self) -> bool {
        self.state == "live"
    }
}

/// How long an upstream's channel directory is reused.
const DIRECTORY_TTL: Duration = Duration::from_secs(1);

impl Shared {
    pub fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    pub fn upstreams(&self) -> Arc<Vec<String>> {
        self.upstreams.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// `{base}[/t/{token}]/hls/{channel}/{rest}`: the URL of `rest` under the channel upstream.
    pub fn channel_url(&self, base: &str, channel: &str, rest: &str) -> String {
        let auth = self.auth.read().unwrap_or_else(|e| e.into_inner()).clone();
        match auth.and_then(|a| a.token(channel)) {
            Some(token) => format!("{base}/t/{token}/hls/{channel}/{rest}"),
            None => format!("{base}/hls/{channel}/{rest}"),
        }
    }

    /// Upstreams for `channel`: the routes' answer, then the configured list, without repeats.
    pub fn upstreams_for(&self, channel: &str) -> Vec<String> {
        let routes = self.routes.read().unwrap_or_else(|e| e.into_inner()).clone();
        let mut list: Vec<String> = routes.map(|r| r.upstreams_for(channel)).unwrap_or_default();
        list.retain(|u| normalize(std::slice::from_ref(u)).is_ok());
        for u in self.upstreams().iter() {
            if !list.contains(u) {
                list.push(u.clone());
            }
        }
        list
    }

    /// Time allowed for a request the upstream answers at once (a playlist, a listed part).
    pub fn probe_timeout(&self) -> Duration {
        Duration::from_millis(self.config.connect_timeout_ms + self.config.block_timeout_ms)
    }

    /// Time allowed for a blocked request: the configured bound, and at least 3 parts.
    pub fn block_timeout(&self, part_target_s: Option<f64>) -> Duration {
        let parts = Duration::from_secs_f64(3.0 * part_target_s.unwrap_or(1.0).clamp(0.05, 10.0));
        Duration::from_millis(self.config.block_timeout_ms).max(parts)
    }

    fn channels(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<ChannelPull>>> {
        self.channels.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Errors from creating a relay.
#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    /// An upstream is not an `http://` or `https://` base URL.
    #[error("relay upstream {0:?} is not an http:// or https:// URL")]
    BadUpstream(String),
    /// The HTTP client could not be built (or `relay.upstream_ca` holds no usable certificate).
    #[error("relay HTTP client: {0}")]
    Client(#[from] reqwest::Error),
    /// `relay.upstream_ca` cannot be read: (path, why).
    #[error("relay.upstream_ca {0}: {1}")]
    UpstreamCa(String, String),
}

/// The relay of a node: implements [`Upstream`] for the origin routes.
#[derive(Debug, Clone)]
pub struct Relay {
    shared: Arc<Shared>,
}

fn normalize(upstreams: &[String]) -> Result<Vec<String>, RelayError> {
    upstreams
        .iter()
        .map(|u| {
            let u = u.trim().trim_end_matches('/');
            if (u.starts_with("http://") || u.starts_with("https://")) && u.len() > 8 {
                Ok(u.to_string())
            } else {
                Err(RelayError::BadUpstream(u.to_string()))
            }
        })
        .collect()
}

impl Relay {
    /// A relay importing into `store` from `config.upstreams`; its pulls and its memory guard
    /// stop when `shutdown` is cancelled. Call within a Tokio runtime. Errors: [`RelayError`].
    pub fn new(store: Arc<Store>, config: RelayConfig, shutdown: CancellationToken) -> Result<Self, RelayError> {
        let upstreams = normalize(&config.upstreams)?;
        let roots = match &config.upstream_ca {
            Some(path) => Some(std::fs::read(path).map_err(|e| RelayError::UpstreamCa(path.display().to_string(), e.to_string()))?),
            None => None,
        };
        let fetcher = fetch::Fetcher::new(Duration::from_millis(config.connect_timeout_ms), roots.as_deref())?;
        let shared = Arc::new(Shared {
            store,
            fetcher,
            config,
            upstreams: RwLock::new(Arc::new(upstreams)),
            routes: RwLock::new(None),
            auth: RwLock::new(None),
            shutdown,
            channels: Mutex::new(HashMap::new()),
            directory: tokio::sync::Mutex::new(None),
            epoch: Instant::now(),
            held_bytes: AtomicU64::new(0),
        });
        tokio::spawn(guard_memory(shared.clone()));
        Ok(Relay { shared })
    }

    /// The upstreams now, in the order tried.
    pub fn upstreams(&self) -> Vec<String> {
        self.shared.upstreams().to_vec()
    }

    /// Replaces the upstream list (the control plane re-parents the relay). Channels being pulled
    /// stay on their upstream while it works, and fail over within the new list. Errors:
    /// [`RelayError::BadUpstream`].
    pub fn set_upstreams(&self, upstreams: &[String]) -> Result<(), RelayError> {
        let list = normalize(upstreams)?;
        tracing::info!(upstreams = ?list, "relay upstreams changed");
        *self.shared.upstreams.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(list);
        Ok(())
    }

    /// Installs the control plane's routes (tried before the configured upstreams).
    pub fn set_routes(&self, routes: Arc<dyn Routes>) {
        *self.shared.routes.write().unwrap_or_else(|e| e.into_inner()) = Some(routes);
    }

    /// Installs what signs this relay's upstream requests (upstreams that require tokens).
    pub fn set_upstream_auth(&self, auth: Arc<dyn UpstreamAuth>) {
        *self.shared.auth.write().unwrap_or_else(|e| e.into_inner()) = Some(auth);
    }

    /// The upstream base URL each relayed channel comes from now (empty while it looks for one).
    pub fn channel_upstreams(&self) -> HashMap<String, String> {
        self.shared.channels().iter().map(|(c, p)| (c.clone(), p.upstream())).collect()
    }

    /// Warms `channel` ahead of its viewers (the control plane assigned this relay to it): pulls
    /// its Multivariant Playlist and every rendition it lists, and resolves once each holds its
    /// init segment and first parts. Unwatched, they are released as usual
    /// (`relay.release_after_ms`). Errors: [`Unavailable`] when no upstream has the channel.
    pub async fn warm(&self, channel: &str) -> Result<(), Unavailable> {
        let master = self.multivariant(channel).await?;
        let names: Vec<String> = master
            .variants
            .iter()
            .map(|v| v.uri.as_str())
            .chain(master.audio.iter().map(|a| a.uri.as_str()))
            .filter_map(|u| u.strip_suffix("/index.m3u8").map(str::to_string))
            .collect();
        let pulls = names.iter().map(|n| self.rendition(channel, n));
        for r in futures::future::join_all(pulls).await {
            r?;
        }
        Ok(())
    }

    /// Channels being relayed now.
    pub fn channels(&self) -> Vec<String> {
        let mut v: Vec<String> = self.shared.channels().keys().cloned().collect();
        v.sort();
        v
    }

    /// The channels the first answering upstream lists as live (cached for a second; empty when
    /// none answers), so that a relay's directory shows what it can relay.
    pub async fn upstream_directory(&self) -> Vec<DirectoryEntry> {
        let mut cached = self.shared.directory.lock().await;
        if let Some((at, list)) = cached.as_ref() {
            if at.elapsed() < DIRECTORY_TTL {
                return list.clone();
            }
        }
        let mut list = Vec::new();
        for base in self.shared.upstreams().iter() {
            let url = format!("{base}/api/v1/channels");
            if let Ok(f) = self.shared.fetcher.get(&url, self.shared.probe_timeout(), "directory").await {
                match serde_json::from_slice::<Vec<DirectoryEntry>>(&f.body) {
                    Ok(l) => {
                        list = l;
                        break;
                    }
                    Err(e) => {
                        count_error("bad_directory");
                        tracing::warn!(upstream = base, error = %e, "upstream channel directory is unreadable");
                    }
                }
            }
        }
        *cached = Some((Instant::now(), list.clone()));
        list
    }

    /// The relayed channel `name`, started if new. Errors: [`Unavailable::NotFound`] when the
    /// channel is ingested here (or there is no upstream for it), [`Unavailable::Full`] at
    /// `relay.max_channels` or `relay.max_memory_mb` (counted in
    /// `onair_relay_errors_total{kind="full"|"memory_full"}`).
    fn channel(&self, name: &str) -> Result<Arc<ChannelPull>, Unavailable> {
        let mut map = self.shared.channels();
        if let Some(c) = map.get(name) {
            return Ok(c.clone());
        }
        if self.shared.store.get(name).is_some_and(|b| !b.is_ended()) || self.shared.upstreams_for(name).is_empty() {
            return Err(Unavailable::NotFound);
        }
        if map.len() >= self.shared.config.max_channels {
            count_error("full");
            tracing::warn!(channel = name, max = self.shared.config.max_channels, "relay at its channel limit; request refused");
            return Err(Unavailable::Full);
        }
        let held = self.shared.held_bytes.load(Ordering::Relaxed);
        if held >= memory_cap(&self.shared.config) {
            count_error("memory_full");
            tracing::warn!(channel = name, held_mib = held >> 20, max_mib = self.shared.config.max_memory_mb, "relay at its memory cap; request refused");
            return Err(Unavailable::Full);
        }
        let c = Arc::new(ChannelPull::new(name, self.shared.clone()));
        map.insert(name.to_string(), c.clone());
        metrics::gauge!("onair_relay_channels").set(map.len() as f64);
        drop(map);
        tokio::spawn(run_channel(c.clone()));
        Ok(c)
    }

    async fn master(c: &ChannelPull) -> Result<Arc<MultivariantPlaylist>, Unavailable> {
        let mut rx = c.master.subscribe();
        let waited = tokio::time::timeout(COLD_WAIT, rx.wait_for(|m| !matches!(m, Master::Pending))).await;
        match waited.ok().and_then(|r| r.ok()).map(|m| m.clone()) {
            Some(Master::Ready(m)) => Ok(m),
            Some(Master::Failed(why)) => Err(why),
            _ => Err(Unavailable::UpstreamDown),
        }
    }
}

/// A relayed channel's life: find an upstream, start the local broadcast, refresh the mirrored
/// Multivariant Playlist, release idle renditions and, with the last, the channel.
async fn run_channel(c: Arc<ChannelPull>) {
    let shared = c.shared.clone();
    let started = c.find_upstream(None).await.and_then(|m| {
        c.start_session()?;
        Ok(m)
    });
    match started {
        Ok(m) => {
            tracing::info!(channel = c.name, upstream = c.upstream(), "relaying channel");
            c.master.send_replace(Master::Ready(Arc::new(m)));
        }
        Err(why) => {
            c.master.send_replace(Master::Failed(why));
            let _ = tokio::time::timeout(NEGATIVE_TTL, c.stop.cancelled()).await;
            forget(&c);
            return;
        }
    }
    let release_after = shared.config.release_after_ms;
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    let mut refreshed = Instant::now();
    let mut ended_at = None;
    while c.stop.run_until_cancelled(tick.tick()).await.is_some() {
        let now = shared.now_ms();
        let idle = |last: u64| now.saturating_sub(last) > release_after;
        {
            let mut renditions = c.renditions.lock().unwrap_or_else(|e| e.into_inner());
            renditions.retain(|name, p| {
                let failed = matches!(&*p.ready.borrow(), Some(Err(_)));
                let keep = !failed && !idle(p.last_request.load(Ordering::Relaxed));
                if !keep {
                    tracing::info!(channel = c.name, rendition = name, "released rendition");
                    p.stop.cancel();
                }
                keep
            });
            metrics::gauge!("onair_relay_renditions", "channel" => c.name.clone()).set(renditions.len() as f64);
        }
        if c.replaced() {
            tracing::info!(channel = c.name, "a publisher on this node took the channel over: no longer relayed");
            metrics::counter!("onair_relay_taken_over_total").increment(1);
            break;
        }
        let empty = c.renditions.lock().unwrap_or_else(|e| e.into_inner()).is_empty();
        if empty && idle(c.last_request.load(Ordering::Relaxed)) {
            tracing::info!(channel = c.name, "released channel: no viewer requests");
            break;
        }
        if c.ended() {
            // Players got EXT-X-ENDLIST; a new broadcast upstream starts a new pull.
            let since = *ended_at.get_or_insert_with(Instant::now);
            if since.elapsed() >= ENDED_LINGER {
                break;
            }
        }
        if refreshed.elapsed() >= MASTER_REFRESH && !c.ended() {
            refreshed = Instant::now();
            let url = shared.channel_url(&c.upstream(), &c.name, "master.m3u8");
            if let Ok(f) = shared.fetcher.get(&url, shared.probe_timeout(), "playlist").await {
                if let Ok(m) = MultivariantPlaylist::parse(&String::from_utf8_lossy(&f.body)) {
                    if !m.variants.is_empty() {
                        c.master.send_replace(Master::Ready(Arc::new(m)));
                    }
                }
            }
        }
    }
    for p in c.renditions.lock().unwrap_or_else(|e| e.into_inner()).values() {
        p.stop.cancel();
    }
    c.release();
    forget(&c);
}

/// `relay.max_memory_mb` in bytes.
fn memory_cap(config: &RelayConfig) -> u64 {
    config.max_memory_mb.saturating_mul(1 << 20)
}

/// Every [`MEMORY_CHECK`]: measures the media the relayed channels hold (`onair_relay_held_bytes`,
/// and the admission check in [`Relay::channel`]) and, over `relay.max_memory_mb`, releases the
/// least recently requested channels, never the last one, until the others fit.
async fn guard_memory(shared: Arc<Shared>) {
    let cap = memory_cap(&shared.config);
    let mut tick = tokio::time::interval(MEMORY_CHECK);
    while shared.shutdown.run_until_cancelled(tick.tick()).await.is_some() {
        let channels: Vec<Arc<ChannelPull>> = shared.channels().values().cloned().collect();
        let mut held: Vec<(u64, u64, Arc<ChannelPull>)> = channels
            .into_iter()
            .map(|c| (c.last_request.load(Ordering::Relaxed), shared.store.get(&c.name).map_or(0, |b| b.bytes_held()), c))
            .collect();
        let total: u64 = held.iter().map(|(_, bytes, _)| bytes).sum();
        shared.held_bytes.store(total, Ordering::Relaxed);
        metrics::gauge!("onair_relay_held_bytes").set(total as f64);
        if total <= cap {
            continue;
        }
        held.sort_by_key(|(last_request, _, _)| *last_request);
        let mut left = total;
        let spare = held.len().saturating_sub(1);
        for (_, bytes, c) in held.iter().take(spare) {
            if left <= cap {
                break;
            }
            left -= bytes;
            c.stop.cancel();
            metrics::counter!("onair_relay_memory_releases_total").increment(1);
            tracing::warn!(
                channel = c.name,
                channel_mib = bytes >> 20,
                held_mib = total >> 20,
                max_mib = shared.config.max_memory_mb,
                "relay over its memory cap: released the least recently requested channel"
            );
        }
    }
}

fn forget(c: &Arc<ChannelPull>) {
    let mut map = c.shared.channels();
    if map.get(&c.name).is_some_and(|x| Arc::ptr_eq(x, c)) {
        map.remove(&c.name);
    }
    metrics::gauge!("onair_relay_channels").set(map.len() as f64);
}

impl Upstream for Relay {
    fn multivariant<'a>(&'a self, channel: &'a str) -> BoxFuture<'a, Result<MultivariantPlaylist, Unavailable>> {
        Box::pin(async move {
            let c = self.channel(channel)?;
            c.touch();
            Relay::master(&c).await.map(|m| (*m).clone())
        })
    }

    fn rendition<'a>(&'a self, channel: &'a str, rendition: &'a str) -> BoxFuture<'a, Result<Held, Unavailable>> {
        Box::pin(async move {
            let c = self.channel(channel)?;
            c.touch();
            Relay::master(&c).await?;
            let pull = {
                let mut map = c.renditions.lock().unwrap_or_else(|e| e.into_inner());
                match map.get(rendition) {
                    Some(p) => {
                        if p.ready.borrow().is_none() {
                            metrics::counter!("onair_relay_coalesced_waits_total").increment(1);
                        }
                        p.clone()
                    }
                    None => {
                        let p = Arc::new(RenditionPull {
                            ready: watch::Sender::new(None),
                            last_request: c.shared.now_ms().into(),
                            stop: c.stop.child_token(),
                        });
                        map.insert(rendition.to_string(), p.clone());
                        tokio::spawn(pull::run(c.clone(), rendition.to_string(), p.clone()));
                        p
                    }
                }
            };
            pull.last_request.store(c.shared.now_ms(), Ordering::Relaxed);
            let mut rx = pull.ready.subscribe();
            let ready = tokio::time::timeout(COLD_WAIT, rx.wait_for(|r| r.is_some())).await;
            let r = match ready.ok().and_then(|r| r.ok()).and_then(|r| r.clone()) {
                Some(r) => r?,
                None => return Err(Unavailable::UpstreamDown),
            };
            let b = self.shared.store.get(channel).ok_or(Unavailable::UpstreamDown)?;
            Ok((b, r))
        })
    }

    fn touch(&self, channel: &str, rendition: &str) {
        let Some(c) = self.shared.channels().get(channel).cloned() else { return };
        c.touch();
        let renditions = c.renditions.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(p) = renditions.get(rendition) {
            p.last_request.store(self.shared.now_ms(), Ordering::Relaxed);
        }
    }

    fn reports(&self, channel: &str) -> Vec<RenditionReport> {
        self.shared.channels().get(channel).map(|c| c.reports()).unwrap_or_default()
    }

    fn upstream_url(&self, channel: &str, rest: &str, token: Option<&str>) -> Option<String> {
        let pulled = self.shared.channels().get(channel).map(|c| c.upstream());
        let base = pulled.or_else(|| self.shared.upstreams_for(channel).into_iter().next())?;
        Some(match token {
            Some(t) => format!("{}/t/{t}/hls/{channel}/{rest}", base.trim_end_matches('/')),
            None => self.shared.channel_url(base.trim_end_matches('/'), channel, rest),
        })
    }
}
