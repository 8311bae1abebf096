//! This node in the cluster, and the Usher behind `GET /api/v1/playback/{channel}`: the node's
//! reporter (every `cluster.report_interval_ms`: its load, viewers and held channels to the
//! registry), the view of the registry the playback API ranks from (refreshed every
//! `cluster.view_refresh_ms`; a registry outage leaves the last view in use, and says so in
//! `onair_registry_up` and `onair_registry_view_age_seconds`), client locality and the
//! per-client rate limit. A standalone `onair usher` has the view and no reporter.

use std::collections::HashMap;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::http::HeaderMap;
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use onair_cluster::locality::{client_ip, RegionTable};
use onair_cluster::node::{HeldChannel, Load, NodeInfo, NodeReport, Roles};
use onair_cluster::usher::{grow, rank, Arrivals, Decision, Offered, Placements, Request, UsherConfig, CDN};
use onair_cluster::viewers::{SessionKey, Sessions};
use onair_cluster::{Registry, RegistryError};
use onair_relay::{Relay, Routes};
use onair_store::Store;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::config::{Config, Role};

mod chat;
pub use chat::ChatRooms;

/// Why the cluster part could not start.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// A shared registry needs to know where players reach this node.
    #[error("cluster.registry is set: playback.public_url must be set too (the URL players use to reach this node)")]
    NoPublicUrl,
    /// `onair usher` needs a shared registry.
    #[error("onair usher needs a shared registry: --registry redis://HOST:PORT (or cluster.registry)")]
    NoRegistry,
    /// The registry URL is unusable.
    #[error(transparent)]
    Registry(#[from] RegistryError),
}

/// The parts of a video node the reporter reads.
#[derive(Debug)]
pub struct LocalNode {
    /// What this node says about itself.
    pub info: NodeInfo,
    /// Its store (held channels).
    pub store: Arc<Store>,
    /// Its relay, when it relays (tells relayed channels from ingested ones).
    pub relay: Option<Relay>,
    /// Its viewer sessions (recorded by the HTTP front).
    pub sessions: Sessions,
    /// HTTP bytes written, counted by every connection (`serve.rs`).
    pub egress: Arc<AtomicU64>,
    /// Its chat, when `[chat] enabled` (the rooms it hosts).
    pub chat: Option<onair_chat::Chat>,
}

/// The registry view the playback API ranks from.
#[derive(Debug, Default)]
struct View {
    nodes: Arc<Vec<NodeReport>>,
    /// When the registry last answered.
    refreshed: Option<Instant>,
    /// Whether the last read of the registry succeeded.
    up: bool,
}

/// The answer for one viewer.
#[derive(Debug)]
pub struct Placed {
    /// Usher's decision with every node's score.
    pub decision: Decision,
    /// The offered servers, best first.
    pub offered: Vec<Offered>,
    /// The client's region, if the region table knows its address.
    pub region: Option<String>,
}

/// This node's cluster membership (or, on `onair usher`, none) and the playback API's Usher.
#[derive(Debug)]
pub struct Cluster {
    registry: Arc<Registry>,
    local: Option<LocalNode>,
    usher: UsherConfig,
    cdn_url: Option<String>,
    regions: RegionTable,
    trusted: Vec<ipnet::IpNet>,
    placements: Placements,
    view: RwLock<View>,
    last_report: Mutex<Option<NodeReport>>,
    limiter: DefaultKeyedRateLimiter<IpAddr>,
    report_interval: Duration,
    entry_ttl: Duration,
    view_refresh: Duration,
    max_fanout: u32,
    /// This node's Content Steering, when on (a shared registry and `cluster.steering`).
    steering: Option<onair_origin::Steering>,
    steering_ttl_s: u32,
    arrivals: Arrivals,
    /// (channel, node asked to warm it) → when: one request per node and channel per 10 s.
    warming: Mutex<HashMap<(String, String), Instant>>,
    warm_lookahead_s: f64,
    /// The holders retired from their channels as the trees shrink.
    shrink: onair_cluster::shrink::Shrink,
    /// Playback tokens, when playback requires them: warm requests carry one.
    playback_signer: std::sync::OnceLock<crate::playback::Signer>,
}

/// A node asked to warm a channel is not asked again for it within this.
const WARM_AGAIN_AFTER: Duration = Duration::from_secs(10);

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// The default node id: host name and HTTP port, cleaned to the id alphabet.
fn default_node_id(http_port: u16) -> String {
    let host = sysinfo::System::host_name().unwrap_or_else(|_| "node".into());
    let host: String = host.chars().map(|c| if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') { c } else { '-' }).take(50).collect();
    format!("{}-{http_port}", if host.is_empty() { "node" } else { &host })
}

/// This process's CPU use as a fraction of the machine's cores (0.0-1.0), between two samples.
/// The process's, not the machine's: nodes sharing a machine (or a container host) each report
/// what they use.
struct CpuMeter {
    system: Option<sysinfo::System>,
    pid: Option<sysinfo::Pid>,
    cores: f64,
}

impl CpuMeter {
    fn new() -> Self {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
        CpuMeter { system: sysinfo::System::new().ok(), pid: sysinfo::get_current_pid().ok(), cores }
    }

    /// Use since the previous call (0 on the first).
    fn sample(&mut self) -> f64 {
        let (Some(system), Some(pid)) = (self.system.as_mut(), self.pid) else { return 0.0 };
        system.refresh_processes_specifics(sysinfo::ProcessesToUpdate::Some(&[pid]), false, sysinfo::ProcessRefreshKind::nothing().with_cpu());
        system.process(pid).map_or(0.0, |p| (f64::from(p.cpu_usage()) / 100.0 / self.cores).clamp(0.0, 1.0))
    }
}

/// This node's identity from the configuration.
pub fn node_info(config: &Config, http_port: u16) -> NodeInfo {
    let c = &config.cluster;
    NodeInfo {
        id: c.node_id.clone().unwrap_or_else(|| default_node_id(http_port)),
        base_url: config.playback.public_url.as_ref().map(|u| u.trim_end_matches('/').to_string()),
        region: c.region.clone(),
        zone: c.zone.clone(),
        roles: Roles { ingest: c.roles.contains(&Role::Ingest) && !config.no_ingest, relay: c.roles.contains(&Role::Relay), chat: config.chat.enabled },
        capacity_viewers: c.capacity_viewers,
        capacity_egress_mbps: c.capacity_egress_mbps,
        cost: c.cost,
    }
}

/// The key of a client in the rate limiter: its IPv4 address, or its IPv6 /64 (one host usually
/// has a whole /64).
fn limiter_key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => IpAddr::V6((u128::from(v6) & !((1u128 << 64) - 1)).into()),
        v4 => v4,
    }
}

impl Cluster {
    /// The cluster part of a node (`local` = `Some`) or of a standalone Usher (`None`). Errors:
    /// [`ClusterError`].
    pub fn new(config: &Config, local: Option<LocalNode>) -> Result<Arc<Cluster>, ClusterError> {
        let c = &config.cluster;
        let registry = match &c.registry {
            Some(url) => Registry::redis(url)?,
            None if local.is_none() => return Err(ClusterError::NoRegistry),
            None => Registry::memory(),
        };
        if c.registry.is_some() && local.as_ref().is_some_and(|l| l.info.base_url.is_none()) {
            return Err(ClusterError::NoPublicUrl);
        }
        let steering = match (&c.registry, &local) {
            (Some(_), Some(l)) if c.steering => c.steering_url.clone().or(l.info.base_url.clone()).map(|base| onair_origin::Steering {
                server: format!("{}/api/v1/steering/", base.trim_end_matches('/')),
                pathway: l.info.id.clone(),
            }),
            _ => None,
        };
        let rate = NonZeroU32::new(c.playback_rate_per_s).unwrap_or(NonZeroU32::MIN);
        let burst = NonZeroU32::new(c.playback_burst).unwrap_or(NonZeroU32::MIN);
        Ok(Arc::new(Cluster {
            registry: Arc::new(registry),
            local,
            usher: UsherConfig {
                candidates: c.candidates,
                fill_target: c.fill_target,
                bounded_load: c.bounded_load,
                cdn_overflow: c.cdn_url.as_ref().map(|_| c.cdn_overflow_load),
            },
            cdn_url: c.cdn_url.as_ref().map(|u| u.trim_end_matches('/').to_string()),
            regions: RegionTable::new(c.regions.iter().flat_map(|(region, nets)| nets.iter().map(move |n| (*n, region.clone())))),
            trusted: config.http.trusted.clone(),
            placements: Placements::default(),
            view: RwLock::new(View::default()),
            last_report: Mutex::new(None),
            limiter: RateLimiter::keyed(Quota::per_second(rate).allow_burst(burst)),
            report_interval: Duration::from_millis(c.report_interval_ms),
            entry_ttl: Duration::from_millis(c.entry_ttl_ms),
            view_refresh: Duration::from_millis(c.view_refresh_ms),
            max_fanout: c.max_fanout,
            steering,
            steering_ttl_s: c.steering_ttl_s,
            arrivals: Arrivals::default(),
            warming: Mutex::new(HashMap::new()),
            warm_lookahead_s: c.warm_lookahead_s,
            shrink: onair_cluster::shrink::Shrink::new(c.shrink_after_s.saturating_mul(1000)),
            playback_signer: std::sync::OnceLock::new(),
        }))
    }

    /// With `playback.require_token`: the signer whose tokens warm requests carry (minted by
    /// Usher, checked by the warmed relay). A second call is ignored.
    pub fn require_tokens(&self, signer: crate::playback::Signer) {
        let _ = self.playback_signer.set(signer);
    }

    /// This node's Content Steering for its Multivariant Playlists (`None`: off).
    pub fn steering(&self) -> Option<onair_origin::Steering> {
        self.steering.clone()
    }

    /// The Steering Manifest for a client of `channel` from `client` on pathway `base`: `None`
    /// when the channel is not live. Counted in `onair_usher_decisions_total` under
    /// `steering_{outcome}`; places no viewer (clients reload it every TTL). A (checked) playback
    /// `token` goes into every URI it hands out, as the `/t/{token}` path prefix.
    pub fn steering_manifest(&self, channel: &str, client: IpAddr, base: &str, token: Option<&str>) -> Option<serde_json::Value> {
        let nodes = self.view.read().unwrap_or_else(|e| e.into_inner()).nodes.clone();
        let region = self.regions.region(client);
        let retired = self.shrink.retired(channel);
        let request = Request { retired: retired.as_deref(), ..Request::new(channel, region) };
        let decision = rank(&nodes, &request, |n, t| self.placements.since(n, t), &self.usher);
        metrics::counter!("onair_steering_decisions_total", "outcome" => decision.outcome.label()).increment(1);
        if decision.outcome == onair_cluster::Outcome::NotLive {
            return None;
        }
        let offered: Vec<Offered> = decision
            .candidates
            .iter()
            .filter_map(|id| {
                // With a token, every URI the manifest hands out carries it in its path prefix.
                let prefix = token.map(|t| format!("/t/{t}")).unwrap_or_default();
                Some(Offered { node: id.clone(), base_url: format!("{}{prefix}", self.base_url(&nodes, id, None)?) })
            })
            .collect();
        // The channel's renditions as its origin (else any holder) reports them.
        let held = nodes.iter().filter_map(|n| n.held(channel)).max_by_key(|c| c.origin)?;
        let reload = format!("/api/v1/steering/{channel}?base={base}{}", token.map(|t| format!("&token={t}")).unwrap_or_default());
        Some(onair_cluster::steering::manifest(&offered, base, channel, &held.renditions, self.steering_ttl_s, &reload))
    }

    /// The registry (shared with the publish leases).
    pub fn registry(&self) -> Arc<Registry> {
        self.registry.clone()
    }

    /// How long a registry entry (and a publish lease) lives after its last renewal.
    pub fn entry_ttl(&self) -> Duration {
        self.entry_ttl
    }

    /// This node, on a video node.
    pub fn local(&self) -> Option<&LocalNode> {
        self.local.as_ref()
    }

    /// The client's address: `peer`, or `X-Forwarded-For`'s rightmost untrusted hop when `peer`
    /// is in `http.trusted`.
    pub fn client_ip(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        let forwarded = headers.get_all("x-forwarded-for").iter().filter_map(|v| v.to_str().ok());
        client_ip(peer, forwarded, &self.trusted)
    }

    /// True when `peer` (the socket's address) is in `http.trusted`.
    pub fn trusted(&self, peer: IpAddr) -> bool {
        let peer = peer.to_canonical();
        self.trusted.iter().any(|n| n.contains(&peer))
    }

    /// Takes one playback-API request from the client's budget; false when over it.
    pub fn allow(&self, client: IpAddr) -> bool {
        self.limiter.check_key(&limiter_key(client)).is_ok()
    }

    /// The playback session of a request from `client` (see `onair_cluster::viewers`); `None` on
    /// `onair usher` and for a relay pulling from this node (User-Agent `onair-relay/…`), which is
    /// not a viewer.
    pub fn session(&self, client: IpAddr, headers: &HeaderMap) -> Option<u64> {
        let local = self.local.as_ref()?;
        let agent = headers.get("user-agent").and_then(|v| v.to_str().ok()).unwrap_or("");
        if agent.starts_with("onair-relay/") {
            return None;
        }
        let key = match headers.get("x-playback-session-id").and_then(|v| v.to_str().ok()).filter(|v| !v.is_empty() && v.len() <= 128) {
            Some(id) => SessionKey::Header(id),
            None => SessionKey::Client(client, agent),
        };
        Some(local.sessions.session(key))
    }

    /// Records the OnAir player's heartbeat for `channel` from `client` with its session `id`
    /// (1–128 of `A-Z a-z 0-9 - _`); false on `onair usher` or for a malformed id.
    pub fn heartbeat(&self, channel: &str, id: &str, client: IpAddr, headers: &HeaderMap) -> bool {
        let Some(local) = &self.local else { return false };
        if id.is_empty() || id.len() > 128 || !id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') {
            return false;
        }
        let agent = headers.get("user-agent").and_then(|v| v.to_str().ok()).unwrap_or("");
        let (session, pair) = (local.sessions.session(SessionKey::Header(id)), local.sessions.session(SessionKey::Client(client, agent)));
        local.sessions.heartbeat(channel, session, pair, Instant::now());
        true
    }

    /// Records a 200 Media Playlist answer of `channel` to `session` ([`Cluster::session`]).
    pub fn seen(&self, channel: &str, session: u64) {
        if let Some(local) = &self.local {
            local.sessions.seen(channel, session, Instant::now());
        }
    }

    /// Places a viewer of `channel` from `client`. `origin` (the request's `scheme://authority`,
    /// [`crate::serve::request_origin`]) stands in for this node's base URL when it has none configured; `held_here` says this node just found
    /// the channel in its own store or upstream.
    pub fn place(&self, channel: &str, client: IpAddr, origin: Option<&str>, held_here: bool) -> Placed {
        let nodes = self.view.read().unwrap_or_else(|e| e.into_inner()).nodes.clone();
        let region = self.regions.region(client).map(str::to_string);
        let local_id = self.local.as_ref().map(|l| l.info.id.as_str());
        let retired = self.shrink.retired(channel);
        let request = Request { channel, region: region.as_deref(), also_held_by: local_id.filter(|_| held_here), retired: retired.as_deref() };
        let decision = rank(&nodes, &request, |n, t| self.placements.since(n, t), &self.usher);
        let offered: Vec<Offered> = decision
            .candidates
            .iter()
            .filter_map(|id| Some(Offered { node: id.clone(), base_url: self.base_url(&nodes, id, origin)? }))
            .collect();
        if let Some(first) = offered.first().filter(|o| o.node != CDN) {
            self.placements.record(&first.node, now_ms());
        }
        if !offered.is_empty() {
            let rate = self.arrivals.record(channel, now_ms());
            if let Some(node) = grow(&decision, &nodes, rate, self.warm_lookahead_s, &self.usher) {
                self.warm(channel, node, rate);
            }
        }
        metrics::counter!("onair_usher_decisions_total", "outcome" => decision.outcome.label()).increment(1);
        tracing::debug!(
            channel,
            %client,
            region = region.as_deref().unwrap_or("-"),
            outcome = decision.outcome.label(),
            scores = %serde_json::to_string(&decision.scores).unwrap_or_default(),
            "usher decision"
        );
        Placed { decision, offered, region }
    }

    /// Asks `node` to warm `channel` (once per [`WARM_AGAIN_AFTER`]), in the background.
    fn warm(&self, channel: &str, node: String, arrivals_per_s: f64) {
        {
            let mut warming = self.warming.lock().unwrap_or_else(|e| e.into_inner());
            warming.retain(|_, at| at.elapsed() < WARM_AGAIN_AFTER);
            let key = (channel.to_string(), node.clone());
            if warming.contains_key(&key) {
                return;
            }
            warming.insert(key, Instant::now());
        }
        metrics::counter!("onair_usher_tree_grown_total").increment(1);
        tracing::info!(channel, node, arrivals_per_s, "the tree grows: asking a node to warm the channel ahead of its viewers");
        // With signed playback the request carries a token, for relays that cannot sign one.
        let token = self.playback_signer.get().and_then(|s| s.sign(channel, SystemTime::now())).map(|(t, _)| t);
        let (registry, request) = (self.registry.clone(), onair_cluster::WarmRequest { channel: channel.to_string(), token });
        tokio::spawn(async move {
            let channel = request.channel.clone();
            if let Err(e) = registry.warm(&node, &request).await {
                metrics::counter!("onair_registry_errors_total", "kind" => "warm").increment(1);
                tracing::warn!(channel, node, error = %e, "cannot send the warm request");
            }
        });
    }

    /// The base URL players use for candidate `id` of a decision: the CDN's, or the node's as it
    /// registered; for this node without a configured one, the request's origin (`None` when
    /// unknown).
    fn base_url(&self, nodes: &[NodeReport], id: &str, origin: Option<&str>) -> Option<String> {
        if id == CDN {
            return self.cdn_url.clone();
        }
        let node = nodes.iter().find(|n| n.info.id == id)?;
        match (&node.info.base_url, origin) {
            (Some(u), _) => Some(u.clone()),
            (None, Some(o)) if self.local.as_ref().is_some_and(|l| l.info.id == id) => Some(o.to_owned()),
            _ => None,
        }
    }

    /// True when some node of the view holds `channel`.
    pub fn is_held(&self, channel: &str) -> bool {
        self.view.read().unwrap_or_else(|e| e.into_inner()).nodes.iter().any(|n| n.held(channel).is_some())
    }

    /// The replication tree of `channel` in the current view.
    pub fn tree(&self, channel: &str) -> Vec<onair_cluster::tree::TreeNode> {
        onair_cluster::tree::tree(&self.view.read().unwrap_or_else(|e| e.into_inner()).nodes, channel)
    }

    /// `GET /api/v1/cluster`: the registry, this node and every node's last report.
    pub fn status(&self) -> serde_json::Value {
        let view = self.view.read().unwrap_or_else(|e| e.into_inner());
        serde_json::json!({
            "registry": self.registry.describe(),
            "node": self.local.as_ref().map(|l| l.info.id.clone()),
            "registry_up": view.up,
            "view_age_ms": view.refreshed.map(|t| t.elapsed().as_millis() as u64),
            "nodes": *view.nodes,
        })
    }

    /// The union of every node's held channels, viewers summed, most viewers first (the channel
    /// directories).
    pub fn channels(&self) -> Vec<HeldChannel> {
        let nodes = self.view.read().unwrap_or_else(|e| e.into_inner()).nodes.clone();
        let mut by_name: HashMap<&str, HeldChannel> = HashMap::new();
        for n in nodes.iter() {
            for c in &n.channels {
                let entry = by_name.entry(c.channel.as_str()).or_insert_with(|| HeldChannel { viewers: 0, ..c.clone() });
                entry.viewers += c.viewers;
                if c.origin {
                    entry.live = c.live;
                    entry.renditions = c.renditions.clone();
                }
            }
        }
        let mut out: Vec<HeldChannel> = by_name.into_values().collect();
        out.sort_by(|a, b| b.viewers.cmp(&a.viewers).then_with(|| a.channel.cmp(&b.channel)));
        out
    }

    /// Spawns the reporter (on a node) and the view refresher into `tasks`; both stop at
    /// `shutdown`, the reporter withdrawing this node from the registry.
    pub fn spawn(self: &Arc<Self>, tasks: &mut JoinSet<&'static str>, shutdown: &CancellationToken) {
        if self.local.is_some() {
            let (me, stop) = (self.clone(), shutdown.clone());
            tasks.spawn(async move {
                me.report_loop(stop).await;
                "cluster reporter"
            });
        }
        let (me, stop) = (self.clone(), shutdown.clone());
        tasks.spawn(async move {
            me.view_loop(stop).await;
            "cluster view"
        });
        if let Some(relay) = self.local.as_ref().and_then(|l| l.relay.clone()) {
            let (me, stop) = (self.clone(), shutdown.clone());
            tasks.spawn(async move {
                stop.run_until_cancelled(me.warm_loop(relay)).await;
                "warm requests"
            });
        }
    }

    /// Warms the channels Usher asks this relay to (until the process stops; in-process, never
    /// asked). Each warm is timed: `onair_relay_warm_seconds`; failures count in
    /// `onair_relay_warm_failures_total`, invalid names in `onair_registry_errors_total{kind="bad_warm_request"}`.
    async fn warm_loop(&self, relay: Relay) {
        let Some(local) = &self.local else { return };
        let Some(mut requests) = self.registry.warm_requests(&local.info.id).await else { return std::future::pending().await };
        while let Some(onair_cluster::WarmRequest { channel, token }) = requests.recv().await {
            if !onair_origin::valid_name(&channel) {
                metrics::counter!("onair_registry_errors_total", "kind" => "bad_warm_request").increment(1);
                tracing::warn!(channel = channel.escape_debug().to_string(), "warm request for an invalid channel name ignored");
                continue;
            }
            // The request's token (checked) is what this relay pulls its upstream with until a
            // viewer brings one (`Signer::upstream_token`).
            if let (Some(token), Some(signer)) = (token, self.playback_signer.get()) {
                if let Err(e) = signer.verify(&channel, Some(&token), SystemTime::now()) {
                    metrics::counter!("onair_registry_errors_total", "kind" => "bad_warm_token").increment(1);
                    tracing::warn!(channel, error = %e, "warm request with a token this node refuses; warming without it");
                }
            }
            let relay = relay.clone();
            tokio::spawn(async move {
                let started = Instant::now();
                match relay.warm(&channel).await {
                    Ok(()) => {
                        metrics::histogram!("onair_relay_warm_seconds").record(started.elapsed().as_secs_f64());
                        tracing::info!(channel, ms = started.elapsed().as_millis() as u64, "warmed the channel ahead of its viewers");
                    }
                    Err(e) => {
                        metrics::counter!("onair_relay_warm_failures_total").increment(1);
                        tracing::warn!(channel, error = ?e, "cannot warm the channel");
                    }
                }
            });
        }
        std::future::pending().await
    }

    async fn report_loop(&self, stop: CancellationToken) {
        let Some(local) = &self.local else { return };
        let mut cpu = CpuMeter::new();
        let mut tick = tokio::time::interval(self.report_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let (mut last_bytes, mut last_at) = (local.egress.load(Ordering::Relaxed), Instant::now());
        let mut healthy = true;
        while stop.run_until_cancelled(tick.tick()).await.is_some() {
            let cpu = cpu.sample();
            let bytes = local.egress.load(Ordering::Relaxed);
            let secs = last_at.elapsed().as_secs_f64().max(0.001);
            let egress_mbps = (bytes.saturating_sub(last_bytes)) as f64 * 8.0 / 1e6 / secs;
            (last_bytes, last_at) = (bytes, Instant::now());
            let report = self.report(local, Load { viewers: 0, egress_mbps, cpu });
            metrics::gauge!("onair_viewers").set(report.load.viewers as f64);
            metrics::gauge!("onair_egress_mbps").set(egress_mbps);
            *self.last_report.lock().unwrap_or_else(|e| e.into_inner()) = Some(report.clone());
            match self.registry.publish(&report, self.entry_ttl, report.reported_at_ms).await {
                Ok(()) if !healthy => {
                    healthy = true;
                    tracing::info!(registry = %self.registry.describe(), "registry reachable again; this node is registered");
                }
                Ok(()) => {}
                Err(e) => {
                    metrics::counter!("onair_registry_errors_total", "kind" => "publish").increment(1);
                    if healthy {
                        tracing::warn!(registry = %self.registry.describe(), error = %e, "cannot report to the registry; retrying every report interval");
                    }
                    healthy = false;
                }
            }
        }
        if let Err(e) = self.registry.withdraw(&local.info.id).await {
            tracing::debug!(error = %e, "could not withdraw from the registry at shutdown");
        }
    }

    fn report(&self, local: &LocalNode, mut load: Load) -> NodeReport {
        let counts: HashMap<String, u64> = local.sessions.counts(Instant::now()).into_iter().collect();
        let relayed: HashMap<String, String> = local.relay.as_ref().map(|r| r.channel_upstreams()).unwrap_or_default();
        let channels: Vec<HeldChannel> = local
            .store
            .list()
            .into_iter()
            .filter(|b| b.live || b.reconnecting)
            .map(|b| HeldChannel {
                origin: !relayed.contains_key(&b.channel),
                upstream: relayed.get(&b.channel).filter(|u| !u.is_empty()).cloned(),
                live: b.live,
                viewers: counts.get(&b.channel).copied().unwrap_or(0),
                started_at_ms: b.started.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64),
                renditions: b.renditions,
                channel: b.channel,
            })
            .collect();
        load.viewers = counts.values().sum();
        let chat_rooms = local.chat.as_ref().map(onair_chat::Chat::hosted).unwrap_or_default();
        NodeReport { info: local.info.clone(), load, channels, chat_rooms, reported_at_ms: now_ms() }
    }

    async fn view_loop(&self, stop: CancellationToken) {
        let mut tick = tokio::time::interval(self.view_refresh);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut healthy = true;
        while stop.run_until_cancelled(tick.tick()).await.is_some() {
            let result = self.registry.snapshot(now_ms()).await;
            let mut view = self.view.write().unwrap_or_else(|e| e.into_inner());
            match result {
                Ok(mut nodes) => {
                    // An empty registry right after a view with live entries is a Redis that
                    // restarted without persistence (or was flushed): keep the entries still
                    // within their ttl (by their own report time) until the nodes' next reports,
                    // rather than answer "not live" for everything meanwhile.
                    if nodes.is_empty() {
                        let now = now_ms();
                        let ttl = self.entry_ttl.as_millis() as u64;
                        nodes = view.nodes.iter().filter(|n| n.reported_at_ms + ttl > now).cloned().collect();
                    }
                    // This node ranks itself from its own last report until the registry has it.
                    if let (Some(local), Some(mine)) = (&self.local, self.last_report.lock().unwrap_or_else(|e| e.into_inner()).as_ref()) {
                        if !nodes.iter().any(|n| n.info.id == local.info.id) {
                            nodes.push(mine.clone());
                        }
                    }
                    metrics::gauge!("onair_cluster_nodes").set(nodes.len() as f64);
                    for (channel, node) in self.shrink.update(&nodes, now_ms(), self.usher.fill_target) {
                        metrics::counter!("onair_usher_tree_shrunk_total").increment(1);
                        tracing::info!(channel, node, "the tree shrinks: the channel's other holders have room for this relay's viewers; it is no longer offered for the channel");
                    }
                    view.nodes = Arc::new(nodes);
                    view.refreshed = Some(Instant::now());
                    if !healthy {
                        tracing::info!(registry = %self.registry.describe(), "registry reachable again; Usher ranks from a fresh view");
                    }
                    healthy = true;
                }
                Err(e) => {
                    metrics::counter!("onair_registry_errors_total", "kind" => "snapshot").increment(1);
                    if healthy {
                        tracing::warn!(registry = %self.registry.describe(), error = %e, "cannot read the registry; Usher answers from its last view");
                    }
                    healthy = false;
                }
            }
            view.up = healthy;
            metrics::gauge!("onair_registry_up").set(if healthy { 1.0 } else { 0.0 });
            metrics::gauge!("onair_registry_view_age_seconds").set(view.refreshed.map_or(f64::INFINITY, |t| t.elapsed().as_secs_f64()));
            drop(view);
            self.placements.prune(now_ms());
            self.arrivals.prune(now_ms());
            self.limiter.retain_recent();
        }
    }
}

/// The relay's routes from the registry: the parents [`onair_cluster::tree::parents`] picks for
/// this node. Holds the cluster weakly (the cluster holds the relay).
#[derive(Debug)]
pub struct ClusterRoutes(pub Weak<Cluster>);

impl Routes for ClusterRoutes {
    fn upstreams_for(&self, channel: &str) -> Vec<String> {
        let Some(cluster) = self.0.upgrade() else { return Vec::new() };
        let Some(me) = cluster.local.as_ref().map(|l| l.info.id.clone()) else { return Vec::new() };
        let nodes = cluster.view.read().unwrap_or_else(|e| e.into_inner()).nodes.clone();
        onair_cluster::tree::parents(&nodes, channel, &me, cluster.max_fanout)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limiter_keys_group_ipv6_by_64() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().expect("ip");
        let b: IpAddr = "2001:db8:1:2:bbbb::2".parse().expect("ip");
        let c: IpAddr = "2001:db8:1:3::1".parse().expect("ip");
        assert_eq!(limiter_key(a), limiter_key(b));
        assert_ne!(limiter_key(a), limiter_key(c));
        let v4: IpAddr = "::ffff:192.0.2.1".parse().expect("ip");
        assert_eq!(limiter_key(v4), "192.0.2.1".parse::<IpAddr>().expect("ip"));
        assert!(default_node_id(8080).ends_with("-8080"));
    }
}
