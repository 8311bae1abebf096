//! Starting the all-in-one server: channel database, RTMP listener, HTTP listener.

use std::net::SocketAddr;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;

use onair_store::{Store, TimelineConfig};
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use onair_channels::{Channel, ChannelError, Channels};
use onair_archive::Archive;
use onair_chat::{Chat, ChatStore};
use onair_db::{Database, DbError};
use onair_ingest::gate::{Gate, IngestSettings};
use onair_ingest::rtmp::RtmpIngest;
use onair_ingest::srt::SrtIngest;
use onair_relay::{Relay, RelayError};

use crate::cluster::{Cluster, ClusterError, LocalNode};
use crate::config::Config;
use crate::lease::ClusterLease;
use crate::observability::prometheus;
use crate::playback::{KeyError, Signer};
pub use crate::supervisor::RunError;
use crate::supervisor::Supervisor;
use crate::tls::{Tls, TlsError};

/// Errors from starting the server.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A listen address could not be bound.
    #[error("cannot listen on {addr} ({what}): {source}")]
    Bind {
        /// "HTTP", "RTMP" or "SRT".
        what: &'static str,
        /// The address.
        addr: SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
    /// The database could not be opened or migrated.
    #[error(transparent)]
    Database(#[from] DbError),
    /// The channel database failed.
    #[error(transparent)]
    Channels(#[from] ChannelError),
    /// The relay configuration is unusable.
    #[error(transparent)]
    Relay(#[from] RelayError),
    /// The playback token keys are unusable.
    #[error(transparent)]
    TokenKeys(#[from] KeyError),
    /// The cluster configuration is unusable.
    #[error(transparent)]
    Cluster(#[from] ClusterError),
    /// The TLS certificate or key is unusable.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// The chat bus's Redis URL is unusable.
    #[error("chat bus: {0}")]
    ChatBus(String),
    /// The chat token secret file cannot be read or written.
    #[error("chat token secret in the data directory: {0}")]
    ChatSecret(std::io::Error),
    /// The archive directory or index is unusable.
    #[error(transparent)]
    Archive(#[from] onair_archive::ArchiveError),
}

/// The bound HTTP listener and, with `[tls]`, the HTTPS one, before they serve.
struct Listeners {
    http: TcpListener,
    https: Option<(TcpListener, Tls)>,
}

impl Listeners {
    /// Binds `http_addr` and, when `tls.cert` and `tls.key` are set, loads them and binds
    /// `tls.addr`. Errors: [`StartError::Bind`], [`StartError::Tls`].
    async fn bind(config: &Config) -> Result<Self, StartError> {
        let http = TcpListener::bind(config.http_addr).await.map_err(|source| StartError::Bind { what: "HTTP", addr: config.http_addr, source })?;
        let https = match config.tls.files() {
            None => None,
            Some((cert, key)) => {
                let tls = Tls::from_pem_files(cert, key)?;
                let addr = config.tls.addr;
                Some((TcpListener::bind(addr).await.map_err(|source| StartError::Bind { what: "HTTPS", addr, source })?, tls))
            }
        };
        Ok(Listeners { http, https })
    }

    /// The bound addresses: HTTP, and HTTPS when on.
    fn addrs(&self) -> Result<(SocketAddr, Option<SocketAddr>), StartError> {
        let local = |what: &'static str, l: &TcpListener| l.local_addr().map_err(|source| StartError::Bind { what, addr: ([0, 0, 0, 0], 0).into(), source });
        Ok((local("HTTP", &self.http)?, self.https.as_ref().map(|(l, _)| local("HTTPS", l)).transpose()?))
    }

    /// Serves `app` on each listener until `shutdown`, as supervised tasks.
    /// With HTTPS and a `tls.reload_check_ms`, the certificate files are watched too ([`Tls::watch`]).
    fn spawn(self, app: crate::http::App, config: &Config, egress: Arc<AtomicU64>, shutdown: &CancellationToken, tasks: &mut JoinSet<&'static str>) {
        let (tls_config, config) = (&config.tls, &config.http);
        if let Some((listener, tls)) = self.https {
            if tls_config.reload_check_ms > 0 {
                let (tls, every, stop) = (tls.clone(), Duration::from_millis(tls_config.reload_check_ms), shutdown.clone());
                tasks.spawn(async move {
                    tls.watch(every, stop).await;
                    "TLS certificate watcher"
                });
            }
            let (app, config, stop, egress) = (app.clone(), config.clone(), shutdown.clone(), egress.clone());
            tasks.spawn(async move {
                crate::serve::serve(listener, app, config, stop, egress, Some(tls)).await;
                "HTTPS listener"
            });
        }
        let (config, stop) = (config.clone(), shutdown.clone());
        tasks.spawn(async move {
            crate::serve::serve(self.http, app, config, stop, egress, None).await;
            "HTTP listener"
        });
    }
}

/// A running server. Dropping it stops its tasks.
#[derive(Debug)]
pub struct Running {
    /// Bound HTTP address (useful when configured with port 0).
    pub http_addr: SocketAddr,
    /// Bound HTTPS address, when `[tls]` is on.
    pub https_addr: Option<SocketAddr>,
    /// Bound RTMP address; `None` on a node without ingest (`--no-ingest`, `onair edge`).
    pub rtmp_addr: Option<SocketAddr>,
    /// Bound SRT address (UDP); `None` without ingest.
    pub srt_addr: Option<SocketAddr>,
    /// The relay, when upstreams are configured.
    pub relay: Option<Relay>,
    /// The `demo` channel, created on first start; `Some` only when it was created by this start.
    pub created_demo: Option<Channel>,
    /// The channel database.
    pub channels: Channels,
    /// The in-RAM store.
    pub store: Arc<Store>,
    /// This node in the cluster.
    pub cluster: Arc<Cluster>,
    drain: CancellationToken,
    supervisor: Supervisor,
}

impl Running {
    /// Waits while every essential task runs; returns the first one's failure (each runs until
    /// shutdown, so any end is a failure). Errors: [`RunError`].
    pub async fn wait(&mut self) -> Result<(), RunError> {
        self.supervisor.wait().await
    }

    /// Cancelled when a drain is requested through the admin API (`onair drain`): the caller then
    /// runs [`Running::shutdown`].
    pub fn drain_signal(&self) -> CancellationToken {
        self.drain.clone()
    }

    /// Graceful shutdown: stops accepting publishers and viewers, answers blocked and new playlist
    /// requests with 503 (players fail over; playlists get no EXT-X-ENDLIST), lets in-flight
    /// responses finish, and returns within a few seconds.
    pub async fn shutdown(mut self) {
        tracing::info!("shutting down: refusing new work, draining HTTP");
        self.supervisor.stop().await;
    }
}

/// How often a recording node raises its broadcasts' peak viewers in the archive index.
const PEAK_VIEWERS_EVERY: Duration = Duration::from_secs(2);

/// Raises the open-file limit to its hard limit (every connection is a file descriptor).
fn raise_file_limit() {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(n) => tracing::debug!(limit = n, "open-file limit"),
        Err(e) => tracing::warn!(error = %e, "cannot raise the open-file limit"),
    }
}

/// Channel `demo`, created when there are no channels yet (the first start of a new install);
/// `None` when channels exist, or another node sharing the database created it first.
async fn demo_channel(channels: &Channels) -> Result<Option<Channel>, ChannelError> {
    if !channels.list().await?.is_empty() {
        return Ok(None);
    }
    match channels.create("demo").await {
        Ok(demo) => Ok(Some(demo)),
        Err(ChannelError::Exists(_)) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Opens the channel database (creating channel `demo` if there are no channels yet on a node
/// that ingests: a pure edge publishes nothing), binds the listeners and spawns their tasks.
/// Errors: [`StartError`].
pub async fn start(config: &Config) -> Result<Running, StartError> {
    let _ = prometheus();
    raise_file_limit();
    let db = Database::open(config.database.as_deref(), &config.data_dir).await?;
    let channels = Channels::new(db.clone());
    let created_demo = if config.no_ingest { None } else { demo_channel(&channels).await? };
    let store = Arc::new(Store::new(TimelineConfig {
        part_target: f64::from(config.hls.part_target_ms) / 1000.0,
        min_target_duration: config.hls.min_target_duration_s,
        window_segments: config.hls.window_segments,
        max_segment: Duration::from_millis(config.ingest.max_gop_ms),
    }));
    let listeners = Listeners::bind(config).await?;
    let (http_addr, https_addr) = listeners.addrs()?;
    let shutdown = CancellationToken::new();
    let drain = CancellationToken::new();
    let mut tasks = JoinSet::new();
    // A node relays with static upstreams, or in a shared registry with the relay role (its
    // upstreams then come from the registry: the channel's tree).
    let routed = config.cluster.registry.is_some() && config.cluster.roles.contains(&crate::config::Role::Relay);
    let relay = if config.relay.upstreams.is_empty() && !routed {
        None
    } else {
        Some(Relay::new(store.clone(), config.relay.clone(), shutdown.clone())?)
    };
    let signer = Signer::from_config(&config.playback)?;
    // Upstream requests carry a token only in a cluster that requires them: elsewhere the
    // upstream may not share this node's key (a random one by default) and would refuse it.
    if let Some(relay) = relay.as_ref().filter(|_| config.playback.require_token) {
        relay.set_upstream_auth(Arc::new(signer.clone()));
    }
    let egress = Arc::new(AtomicU64::new(0));
    let info = crate::cluster::node_info(config, http_addr.port());
    let node_id = info.id.clone();
    let chat = if config.chat.enabled {
        let secret = config.chat.secret(&config.data_dir).map_err(StartError::ChatSecret)?;
        let chat = Chat::new(config.chat.clone(), &secret, ChatStore::new(db.clone()));
        let (ticker, stop) = (chat.clone(), shutdown.clone());
        tasks.spawn(async move {
            ticker.run(stop).await;
            "chat"
        });
        // In a cluster, channel-wide events reach the other nodes' rooms over the registry's Redis.
        if let Some(url) = &config.cluster.registry {
            let (bus, incoming) = onair_chat::bus::Bus::redis(url, &node_id, shutdown.clone()).map_err(|e| StartError::ChatBus(e.to_string()))?;
            let member = chat.clone();
            tasks.spawn(async move {
                member.run_bus(bus, incoming).await;
                "chat bus"
            });
        }
        if let Some(addr) = config.chat.irc_addr {
            let listener = tokio::net::TcpListener::bind(addr).await.map_err(|source| StartError::Bind { what: "chat IRC", addr, source })?;
            let (gateway, stop, max) = (chat.clone(), shutdown.clone(), config.chat.max_connections);
            tracing::info!(%addr, "chat IRC gateway");
            tasks.spawn(async move {
                onair_chat::irc::serve(listener, gateway, max, stop).await;
                "chat IRC gateway"
            });
        }
        Some(chat)
    } else {
        None
    };
    let local = LocalNode { info, store: store.clone(), relay: relay.clone(), sessions: Default::default(), egress: egress.clone(), chat: chat.clone() };
    let cluster = Cluster::new(config, Some(local))?;
    if config.playback.require_token {
        cluster.require_tokens(signer.clone());
    }
    // In a cluster, rooms are placed on nodes and their history kept in the registry's Redis.
    if let (Some(chat), Some(url)) = (&chat, &config.cluster.registry) {
        let history = onair_chat::history::RedisHistory::new(url, config.chat.history, shutdown.clone()).map_err(|e| StartError::ChatBus(e.to_string()))?;
        chat.join_cluster(Arc::new(crate::cluster::ChatRooms::new(Arc::downgrade(&cluster))), history);
    }
    cluster.spawn(&mut tasks, &shutdown);
    if let Some(relay) = relay.as_ref().filter(|_| routed) {
        relay.set_routes(Arc::new(crate::cluster::ClusterRoutes(Arc::downgrade(&cluster))));
    }
    // Only a node that ingests records (a relay's channels are recorded by their origin).
    let archive = if config.no_ingest || !config.archive.enabled {
        None
    } else {
        let (archive, recovery) = Archive::open(&config.archive, &config.data_dir, db.clone()).await?;
        let (recorder, store, stop) = (archive.clone(), store.clone(), shutdown.clone());
        tasks.spawn(async move {
            recorder.recorder(store, stop).await;
            "archive recorder"
        });
        let (clipper, stop) = (archive.clone(), shutdown.clone());
        tasks.spawn(async move {
            clipper.clipper(stop).await;
            "archive clipper"
        });
        let (uploader, stop) = (archive.clone(), shutdown.clone());
        tasks.spawn(async move {
            uploader.uploader(stop).await;
            "archive uploader"
        });
        let (retention, stop) = (archive.clone(), shutdown.clone());
        tasks.spawn(async move {
            retention.retention(stop).await;
            "archive retention"
        });
        tracing::info!(dir = %archive.dir().display(), recovered_segments = recovery.segments, torn_bytes = recovery.torn_bytes, "archive recording");
        Some(archive)
    };
    let (rtmp_addr, srt_addr) = if config.no_ingest {
        (None, None)
    } else {
        let lease = ClusterLease::new(cluster.registry(), node_id, cluster.entry_ttl(), store.clone());
        let (keeper, stop) = (lease.clone(), shutdown.clone());
        tasks.spawn(async move {
            keeper.keep(stop).await;
            "publish lease keeper"
        });
        let (rtmp, srt) = start_ingest(config, &channels, &store, lease, &shutdown, &mut tasks).await?;
        (Some(rtmp), Some(srt))
    };
    let web = crate::http::Web {
        chat,
        playback: config.playback.clone(),
        signer: signer.clone(),
        player_dir: config.web.player_dir.clone(),
        request_timeout: Duration::from_millis(config.http.request_timeout_ms),
        shutdown: shutdown.clone(),
        relay: relay.clone(),
        cluster: cluster.clone(),
        admin: crate::admin::Admin { config: config.admin.clone(), drain: drain.clone(), archive: archive.clone(), channels: Some(channels.clone()), relay: relay.clone() },
        archive: archive.as_ref().map(|a| a.routers(token_prefix(&config.playback, &signer))),
        history: archive.as_ref().and_then(Archive::history),
    };
    if !config.web.player_dir.join("onair_player.js").exists() {
        tracing::warn!(dir = %config.web.player_dir.display(), "the Wasm player is not built; the watch page will not play (run: bash infra/setup.sh)");
    }
    if let Some(archive) = archive.clone() {
        // Each broadcast recorded here keeps its peak concurrent viewers (over the cluster).
        let (cluster, store, stop) = (cluster.clone(), store.clone(), shutdown.clone());
        tasks.spawn(async move {
            let mut tick = tokio::time::interval(PEAK_VIEWERS_EVERY);
            while stop.run_until_cancelled(tick.tick()).await.is_some() {
                for c in cluster.channels().into_iter().filter(|c| c.live && c.viewers > 0) {
                    if store.get(&c.channel).is_some_and(|b| !b.is_relayed()) {
                        archive.note_viewers(&c.channel, c.viewers).await;
                    }
                }
            }
            "peak viewers"
        });
    }
    let app = crate::http::app(store.clone(), web);
    let grace = Duration::from_millis(config.ingest.reconnect_grace_ms);
    let (sweeper_store, stop) = (store.clone(), shutdown.clone());
    tasks.spawn(async move {
        // Interrupted broadcasts end after the grace period; ended ones stay readable for a
        // minute so players can finish, then are freed.
        let mut tick = tokio::time::interval(Duration::from_millis(250));
        while stop.run_until_cancelled(tick.tick()).await.is_some() {
            for channel in sweeper_store.sweep(grace, Duration::from_secs(60)) {
                tracing::info!(channel, "publisher did not come back within the grace period; broadcast ended");
                metrics::gauge!("onair_live_channels").set(sweeper_store.live_count() as f64);
            }
        }
        "sweeper"
    });
    listeners.spawn(app, config, egress, &shutdown, &mut tasks);
    tracing::info!(
        %http_addr, ?https_addr, ?rtmp_addr, ?srt_addr, upstreams = ?config.relay.upstreams, data_dir = %config.data_dir.display(),
        node = %cluster.local().map_or("", |l| l.info.id.as_str()), registry = %config.cluster.registry.as_deref().map_or("memory".into(), onair_cluster::registry::redacted),
        "OnAir is up"
    );
    Ok(Running { http_addr, https_addr, rtmp_addr, srt_addr, relay, created_demo, channels, store, cluster, drain, supervisor: Supervisor { shutdown, tasks } })
}

/// A running standalone Usher (`onair usher`). Dropping it stops its tasks.
#[derive(Debug)]
pub struct RunningUsher {
    /// Bound HTTP address.
    pub http_addr: SocketAddr,
    /// Bound HTTPS address, when `[tls]` is on.
    pub https_addr: Option<SocketAddr>,
    /// The registry view and the ranking.
    pub cluster: Arc<Cluster>,
    supervisor: Supervisor,
}

impl RunningUsher {
    /// As [`Running::wait`].
    pub async fn wait(&mut self) -> Result<(), RunError> {
        self.supervisor.wait().await
    }

    /// Stops, letting in-flight answers finish.
    pub async fn shutdown(mut self) {
        self.supervisor.stop().await;
    }
}

/// Starts a standalone Usher: the playback API, `/api/v1/channels` and `/api/v1/cluster` from the
/// shared registry (`cluster.registry` is required), `/metrics` and `/healthz`; no store, no
/// ingest. Errors: [`StartError`].
pub async fn start_usher(config: &Config) -> Result<RunningUsher, StartError> {
    let _ = prometheus();
    raise_file_limit();
    let cluster = Cluster::new(config, None)?;
    let signer = Signer::from_config(&config.playback)?;
    if config.playback.require_token {
        cluster.require_tokens(signer.clone());
    }
    let listeners = Listeners::bind(config).await?;
    let (http_addr, https_addr) = listeners.addrs()?;
    let shutdown = CancellationToken::new();
    let mut tasks = JoinSet::new();
    cluster.spawn(&mut tasks, &shutdown);
    let app = crate::http::usher_app(crate::api::Api {
        cluster: cluster.clone(),
        playback: config.playback.clone(),
        signer,
        local: None,
        request_timeout: Duration::from_millis(config.http.request_timeout_ms),
    });
    listeners.spawn(crate::http::App::router(app), config, Arc::new(AtomicU64::new(0)), &shutdown, &mut tasks);
    tracing::info!(%http_addr, ?https_addr, registry = %config.cluster.registry.as_deref().map_or("", |_| "redis"), "OnAir Usher is up");
    Ok(RunningUsher { http_addr, https_addr, cluster, supervisor: Supervisor { shutdown, tasks } })
}

/// Binds the RTMP and SRT listeners and spawns their tasks; returns their addresses.
async fn start_ingest(
    config: &Config,
    channels: &Channels,
    store: &Arc<Store>,
    lease: Arc<ClusterLease>,
    shutdown: &CancellationToken,
    tasks: &mut JoinSet<&'static str>,
) -> Result<(SocketAddr, SocketAddr), StartError> {
    let bind = |what: &'static str, addr: SocketAddr| move |source| StartError::Bind { what, addr, source };
    let rtmp = TcpListener::bind(config.rtmp_addr).await.map_err(bind("RTMP", config.rtmp_addr))?;
    let rtmp_addr = rtmp.local_addr().map_err(bind("RTMP", config.rtmp_addr))?;
    let (srt_listener, srt_incoming, srt_addr) = onair_ingest::srt::bind(config.srt_addr).await.map_err(bind("SRT", config.srt_addr))?;
    let settings = IngestSettings {
        ingest: config.ingest.clone(),
        rtmp: config.rtmp.clone(),
        srt: config.srt.clone(),
        transcode: config.transcode.clone(),
        packager: onair_cmaf::PackagerConfig {
            part_target_ms: config.hls.part_target_ms,
            min_segment_ms: config.hls.min_segment_ms,
            audio_only_segment_ms: config.hls.min_target_duration_s * 1000,
            predict_durations: config.hls.close_parts_early,
        },
    };
    let gate = Gate::new(settings, channels.clone(), store.clone(), Some(lease));
    let (rtmp_ingest, stop) = (RtmpIngest::new(gate.clone()), shutdown.clone());
    tasks.spawn(async move {
        rtmp_ingest.run(rtmp, stop).await;
        "RTMP listener"
    });
    let (srt, stop) = (SrtIngest::new(gate), shutdown.clone());
    tasks.spawn(async move {
        srt.run(srt_listener, srt_incoming, stop).await;
        "SRT listener"
    });
    Ok((rtmp_addr, srt_addr))
}

/// With `playback.require_token`, the `/t/{token}` prefix (a fresh token for the channel) the
/// archive's playlist URLs need, as the playback API hands out for live ones.
fn token_prefix(playback: &crate::config::PlaybackConfig, signer: &Signer) -> Option<onair_archive::routes::PlaylistPrefix> {
    let signer = signer.clone();
    playback.require_token.then(|| {
        Arc::new(move |channel: &str| signer.sign(channel, std::time::SystemTime::now()).map(|(t, _)| format!("/t/{t}"))) as onair_archive::routes::PlaylistPrefix
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn embedded() -> (Running, tempfile::TempDir) {
        let dir = tempfile::tempdir().expect("tempdir");
        let any = "127.0.0.1:0".parse().expect("addr");
        let config = Config { http_addr: any, rtmp_addr: any, srt_addr: any, data_dir: dir.path().to_path_buf(), ..Config::default() };
        (start(&config).await.expect("starts"), dir)
    }

    /// The listeners and the sweeper share one supervised set: the death of any member (a panic,
    /// or an end before shutdown) makes `wait` fail, so `onair serve` exits with an error instead
    /// of running half a server.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn wait_fails_when_any_essential_task_dies() {
        let (mut running, _dir) = embedded().await;
        let alive = tokio::time::timeout(Duration::from_millis(300), running.wait()).await;
        assert!(alive.is_err(), "a healthy server keeps waiting");
        running.supervisor.tasks.spawn(async { panic!("listener broke") });
        let failed = tokio::time::timeout(Duration::from_secs(5), running.wait()).await.expect("wait returns");
        assert!(matches!(&failed, Err(RunError::TaskPanicked(m)) if m.contains("panicked")), "{failed:?}");

        let (mut running, _dir) = embedded().await;
        running.supervisor.tasks.spawn(async { "sweeper" });
        let failed = tokio::time::timeout(Duration::from_secs(5), running.wait()).await.expect("wait returns");
        assert!(matches!(failed, Err(RunError::TaskStopped("sweeper"))), "{failed:?}");
        running.shutdown().await;
    }
}
