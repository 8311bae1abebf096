//! Configuration: built-in defaults, then a TOML file, then `ONAIR_*` environment variables, then
//! command-line flags, each overriding the one before (via `figment`).
//!
//! Environment names: top-level keys as `ONAIR_HTTP_ADDR`, `ONAIR_RTMP_ADDR`, `ONAIR_DATA_DIR`;
//! nested keys with a double underscore, e.g. `ONAIR_HLS__PART_TARGET_MS=250`.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use figment::providers::{Env, Format, Serialized, Toml};
use figment::Figment;
use onair_ingest::config::{IngestConfig, RtmpConfig, SrtConfig, TranscodeConfig};
use onair_archive::ArchiveConfig;
use onair_chat::ChatConfig;
use onair_relay::RelayConfig;
use serde::{Deserialize, Serialize};

/// The whole configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// HTTP listen address (origin, metrics, pages). Default `0.0.0.0:8080`.
    pub http_addr: SocketAddr,
    /// RTMP listen address. Default `0.0.0.0:1935`.
    pub rtmp_addr: SocketAddr,
    /// SRT listen address (UDP). Default `0.0.0.0:9000`.
    pub srt_addr: SocketAddr,
    /// Directory for the embedded database (`onair.db`). Default `onair-data`.
    pub data_dir: PathBuf,
    /// Database shared by nodes (`--database`, `ONAIR_DATABASE`):
    /// `postgres://USER:PASSWORD@HOST:PORT/DB` (`?sslmode=require` for TLS). Default none: the
    /// embedded SQLite file in `data_dir`.
    pub database: Option<String>,
    /// Public host name printed in the OBS settings; default: derived from the listen addresses.
    pub public_host: Option<String>,
    /// No RTMP or SRT listeners: a pure edge that only relays (`--no-ingest`, `onair edge`).
    pub no_ingest: bool,
    /// Pulling channels from other nodes (`--upstream`, `ONAIR_RELAY__UPSTREAMS`).
    pub relay: RelayConfig,
    /// HTTP connection limits and timeouts.
    pub http: HttpConfig,
    /// HTTPS (HTTP/2 and HTTP/1.1 over TLS) beside plain HTTP.
    pub tls: TlsConfig,
    /// LL-HLS packaging.
    pub hls: HlsConfig,
    /// RTMP ingest limits.
    pub rtmp: RtmpConfig,
    /// SRT ingest limits.
    pub srt: SrtConfig,
    /// The ABR ladder.
    pub transcode: TranscodeConfig,
    /// Protocol-independent ingest behaviour.
    pub ingest: IngestConfig,
    /// What the playback API tells players.
    pub playback: PlaybackConfig,
    /// The web pages and the player files.
    pub web: WebConfig,
    /// This node in a cluster, the registry, and Usher's placement of viewers.
    pub cluster: ClusterConfig,
    /// The admin API (drain).
    pub admin: AdminConfig,
    /// Recording of broadcasts published here, past broadcasts (`ONAIR_ARCHIVE__ENABLED=false` turns it off).
    pub archive: ArchiveConfig,
    /// Chat in rooms (`/api/v1/chat/…`; `ONAIR_CHAT__ENABLED=false` turns it off).
    pub chat: ChatConfig,
}

/// The admin API (`/admin/v1/…`, `onair drain`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdminConfig {
    /// Bearer token every admin request must carry; `None` turns the admin API off. Default none.
    pub token: Option<String>,
    /// Networks admin requests may come from. Default loopback only (`127.0.0.0/8`, `::1/128`).
    pub allow: Vec<ipnet::IpNet>,
    /// `onair drain` waits this long for the node to stop, s. Default 30.
    pub drain_timeout_s: u64,
}

impl Default for AdminConfig {
    fn default() -> Self {
        let loopback = ["127.0.0.0/8", "::1/128"].iter().filter_map(|n| n.parse().ok()).collect();
        AdminConfig { token: None, allow: loopback, drain_timeout_s: 30 }
    }
}

/// What a node may do in the cluster (`cluster.roles`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Accepts publishers: an origin (only with ingest listeners, i.e. not `no_ingest`).
    Ingest,
    /// Serves viewers (relaying channels it does not ingest).
    Relay,
}

/// The cluster: this node's identity and limits, the registry, and Usher's settings. See
/// `onair-cluster` for the placement rules.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClusterConfig {
    /// Where nodes report: `None` = in this process only (the embedded default); a Redis URL
    /// (`redis://[:PASSWORD@]HOST[:PORT][/DB]`, `rediss://` for TLS) shared by every node and
    /// Usher (`--registry`, `ONAIR_CLUSTER__REGISTRY`).
    pub registry: Option<String>,
    /// This node's id, unique in the cluster: 1-64 of `A-Z a-z 0-9 . _ -`. Default: the host
    /// name and the HTTP port, e.g. `host1-8080`.
    pub node_id: Option<String>,
    /// Region of this node, matched against the client's region (`regions`). Default `default`.
    pub region: String,
    /// Availability zone. Default `default`.
    pub zone: String,
    /// Roles. Default both; `ingest` is dropped on a node without ingest listeners. An origin of
    /// a cluster with relays usually has only `ingest`: Usher then sends it no viewers.
    pub roles: Vec<Role>,
    /// Most viewers Usher sends here. Default 10 000.
    pub capacity_viewers: u64,
    /// Most egress, Mbit/s, before Usher stops sending viewers here. Default 10 000.
    pub capacity_egress_mbps: f64,
    /// Relative cost of serving a viewer here (> 0). Default 1.
    pub cost: f64,
    /// How often this node reports, ms. Default 1000.
    pub report_interval_ms: u64,
    /// A report expires this long after it was made, ms (a node killed -9 leaves the registry
    /// this long after its last report). Default 3000.
    pub entry_ttl_ms: u64,
    /// How often the playback API's view of the registry is refreshed, ms. Default 500.
    pub view_refresh_ms: u64,
    /// Candidates in a playback answer, 1-8. Default 3.
    pub candidates: usize,
    /// A node holding the channel at or above this load fraction ranks after nodes that do not
    /// hold it yet. Default 0.9.
    pub fill_target: f64,
    /// Bounded-load factor of the rendezvous hash (> 1). Default 1.25.
    pub bounded_load: f64,
    /// Most relays pulling a channel from one node before the next relay pulls from a relay
    /// (the tree deepens instead of the origin feeding every relay). Default 4.
    pub max_fanout: u32,
    /// The replication tree grows ahead of the viewers: when a channel's holders have less room
    /// left than its viewer arrivals per second × this many seconds, Usher asks the next node to
    /// warm the channel (pull it before any viewer is sent there). 0 turns it off. Default 5.
    pub warm_lookahead_s: f64,
    /// The tree shrinks after this many seconds of a relay holder not being needed (its viewers
    /// fit twice into the room the channel's other relay holders have): Usher stops offering it
    /// for the channel and players move on (`onair_cluster::shrink`). 0 turns it off. Default 60.
    pub shrink_after_s: u64,
    /// Client networks by region: `{ eu = ["192.0.2.0/24"], us = ["198.51.100.0/24"] }`. The client
    /// address is the socket's, or `X-Forwarded-For`'s behind a proxy in `http.trusted`.
    pub regions: BTreeMap<String, Vec<ipnet::IpNet>>,
    /// Base URL of a CDN in front of the cluster (it pulls from the origin or relays, which send
    /// RFC 8216bis Appendix B cache headers), offered first when the best node is loaded at or
    /// above `cdn_overflow_load`, or when every node is full. Default none.
    pub cdn_url: Option<String>,
    /// Load fraction of the best node from which viewers spill to the CDN. Default 0.8.
    pub cdn_overflow_load: f64,
    /// Content Steering: with a shared registry, every Multivariant Playlist names a Steering
    /// Manifest ranking the servers for its client (hls.js, Shaka, Safari and the OnAir player
    /// follow it). Default true.
    pub steering: bool,
    /// Base URL of the server answering the Steering Manifest (`/api/v1/steering/{channel}`),
    /// e.g. Usher's. Default: this node's `playback.public_url` (every node answers it).
    pub steering_url: Option<String>,
    /// The Steering Manifest's TTL, s: how often clients ask again. Default 10.
    pub steering_ttl_s: u32,
    /// Playback-API requests per second per client address (trusted networks exempt). Default 10.
    pub playback_rate_per_s: u32,
    /// Burst of playback-API requests a client may make at once. Default 20.
    pub playback_burst: u32,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        ClusterConfig {
            registry: None,
            node_id: None,
            region: "default".into(),
            zone: "default".into(),
            roles: vec![Role::Ingest, Role::Relay],
            capacity_viewers: 10_000,
            capacity_egress_mbps: 10_000.0,
            cost: 1.0,
            report_interval_ms: 1000,
            entry_ttl_ms: 3000,
            view_refresh_ms: 500,
            candidates: 3,
            fill_target: 0.9,
            bounded_load: 1.25,
            max_fanout: 4,
            warm_lookahead_s: 5.0,
            shrink_after_s: 60,
            regions: BTreeMap::new(),
            cdn_url: None,
            cdn_overflow_load: 0.8,
            steering: true,
            steering_url: None,
            steering_ttl_s: 10,
            playback_rate_per_s: 10,
            playback_burst: 20,
        }
    }
}

/// The playback API (`GET /api/v1/playback/{channel}`) and its tokens.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PlaybackConfig {
    /// This server's base URL as players reach it, e.g. `https://live.example.com`. Default: from
    /// the request's `Host` header, over `http`.
    pub public_url: Option<String>,
    /// Other servers that carry the same channels (base URLs); players fail over to them.
    pub peers: Vec<String>,
    /// HS256 key (any string) that signs and checks playback tokens (JWTs); share it with every
    /// node and Usher. Default: random at each start, so tokens do not survive a restart.
    pub token_secret: Option<String>,
    /// ES256 instead: the P-256 private key (PEM, PKCS#8) of the nodes that sign (Usher, and
    /// relays that sign their own upstream requests). Needs `token_public_key`.
    pub token_private_key: Option<PathBuf>,
    /// ES256: the public key (PEM) every node checks tokens with.
    pub token_public_key: Option<PathBuf>,
    /// Lifetime of a playback token in seconds. Default 6 h.
    pub token_ttl_s: u64,
    /// Expiries are rounded up to a multiple of this many seconds, so every viewer of a channel
    /// within one bucket gets the same token (one CDN cache entry per channel per bucket).
    /// Default 300.
    pub token_bucket_s: u64,
    /// Every playlist, part, segment and init segment needs a valid token in the path,
    /// `/t/{token}/hls/…` (403 otherwise); the playback API hands tokens out. Default false.
    pub require_token: bool,
}

impl Default for PlaybackConfig {
    fn default() -> Self {
        PlaybackConfig {
            public_url: None,
            peers: Vec::new(),
            token_secret: None,
            token_private_key: None,
            token_public_key: None,
            token_ttl_s: 6 * 3600,
            token_bucket_s: 300,
            require_token: false,
        }
    }
}

/// Web pages and the Wasm player.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WebConfig {
    /// Directory of the built player (`wasm-pack build --target web` output), served at
    /// `/player/`. Default: `player-wasm/pkg` of the source tree this binary was built from.
    pub player_dir: PathBuf,
}

impl Default for WebConfig {
    fn default() -> Self {
        WebConfig { player_dir: Path::new(env!("CARGO_MANIFEST_DIR")).join("../../player-wasm/pkg") }
    }
}

/// HTTP connection limits and timeouts (see `serve.rs`). Blocking playlist reloads and hinted
/// parts keep their own 3 × target-duration bound.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// A request head must arrive within this, ms, counted from the connection's start or the
    /// end of the previous response: it bounds slowloris peers and idle keep-alive connections.
    /// Default 10 000.
    pub header_read_timeout_ms: u64,
    /// A connection on which no byte moves for this long while the server waits on it is closed,
    /// ms: a peer that stops reading a response, a stalled HTTP/2 connection. Default 60 000.
    pub idle_timeout_ms: u64,
    /// Time to answer a non-blocking request (pages, API, metrics, player files), ms. Default 10 000.
    pub request_timeout_ms: u64,
    /// Most open connections, server-wide; more are answered 503 and closed. Default 20 000.
    pub max_connections: usize,
    /// Most open connections from one client address. Default 100.
    pub max_connections_per_ip: usize,
    /// Most concurrent HTTP/2 streams per connection. Default 100.
    pub max_streams_per_connection: u32,
    /// Networks exempt from the connection caps (relays, CDNs, load generators), as CIDRs, e.g.
    /// `["10.0.0.0/8", "127.0.0.1/32"]`. Default none.
    pub trusted: Vec<ipnet::IpNet>,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            header_read_timeout_ms: 10_000,
            idle_timeout_ms: 60_000,
            request_timeout_ms: 10_000,
            max_connections: 20_000,
            max_connections_per_ip: 100,
            max_streams_per_connection: 100,
            trusted: Vec::new(),
        }
    }
}

/// The HTTPS listener (`[tls]`): the same routes as plain HTTP, over TLS 1.2/1.3 with ALPN `h2`
/// and `http/1.1`, so browsers get HTTP/2 (they speak h2 only over TLS). On when both `cert` and
/// `key` are set. Plain HTTP keeps serving on `http_addr` (relays, a CDN, h2c with prior knowledge).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TlsConfig {
    /// HTTPS listen address (`--https-addr`, `ONAIR_TLS__ADDR`). Default `0.0.0.0:8443`.
    pub addr: SocketAddr,
    /// PEM certificate chain, leaf first (`--tls-cert`, `ONAIR_TLS__CERT`), e.g. Let's Encrypt's
    /// `fullchain.pem`. Read at start, and again when it or the key changes. Default none (no HTTPS).
    pub cert: Option<PathBuf>,
    /// PEM private key of that certificate (`--tls-key`, `ONAIR_TLS__KEY`), e.g. `privkey.pem`.
    pub key: Option<PathBuf>,
    /// How often the modification times of `cert` and `key` are checked, in ms
    /// (`ONAIR_TLS__RELOAD_CHECK_MS`); a change loads the pair again and new handshakes get it
    /// (a renewal needs no restart; a pair that does not load is logged and the old one kept).
    /// 0 = read at start only. Default 10,000.
    pub reload_check_ms: u64,
}

impl Default for TlsConfig {
    fn default() -> Self {
        TlsConfig { addr: ([0, 0, 0, 0], 8443).into(), cert: None, key: None, reload_check_ms: 10_000 }
    }
}

impl TlsConfig {
    /// The certificate and key files when HTTPS is on.
    pub fn files(&self) -> Option<(&Path, &Path)> {
        Some((self.cert.as_deref()?, self.key.as_deref()?))
    }
}

/// LL-HLS packaging settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HlsConfig {
    /// Part target duration (PART-TARGET), ms. Default 200.
    pub part_target_ms: u32,
    /// A segment ends at the first IDR after this much media, ms. Default 1000.
    pub min_segment_ms: u32,
    /// Lower bound for EXT-X-TARGETDURATION, s. Default 2; raised when the encoder's GOP is longer.
    pub min_target_duration_s: u32,
    /// Segments listed in each Media Playlist. Default 12.
    pub window_segments: usize,
    /// Close a part on the arrival of its last frame when the frame rate is steady, instead of
    /// on the next frame's (one frame interval less latency), for the source and audio
    /// renditions; ladder rungs always wait for the next frame. Default true.
    pub close_parts_early: bool,
}

impl Default for HlsConfig {
    fn default() -> Self {
        HlsConfig { part_target_ms: 200, min_segment_ms: 1000, min_target_duration_s: 2, window_segments: 12, close_parts_early: true }
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            http_addr: ([0, 0, 0, 0], 8080).into(),
            rtmp_addr: ([0, 0, 0, 0], 1935).into(),
            srt_addr: ([0, 0, 0, 0], 9000).into(),
            data_dir: PathBuf::from("onair-data"),
            database: None,
            public_host: None,
            no_ingest: false,
            relay: RelayConfig::default(),
            http: HttpConfig::default(),
            tls: TlsConfig::default(),
            hls: HlsConfig::default(),
            rtmp: RtmpConfig::default(),
            srt: SrtConfig::default(),
            transcode: TranscodeConfig::default(),
            ingest: IngestConfig::default(),
            playback: PlaybackConfig::default(),
            web: WebConfig::default(),
            cluster: ClusterConfig::default(),
            admin: AdminConfig::default(),
            archive: ArchiveConfig::default(),
            chat: ChatConfig::default(),
        }
    }
}

/// Values given on the command line; `None` leaves the lower layers' value.
#[derive(Debug, Clone, Default, Serialize)]
pub struct CliOverrides {
    /// `--http-addr`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub http_addr: Option<SocketAddr>,
    /// `--rtmp-addr`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rtmp_addr: Option<SocketAddr>,
    /// `--srt-addr`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub srt_addr: Option<SocketAddr>,
    /// `--data-dir`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data_dir: Option<PathBuf>,
    /// `--database`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub database: Option<String>,
    /// `--no-ingest`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub no_ingest: Option<bool>,
    /// `--upstream` (repeatable): replaces `relay.upstreams`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub relay: Option<RelayOverrides>,
    /// `--registry`, `--node-id`.
    #[serde(skip_serializing_if = "ClusterOverrides::is_empty")]
    pub cluster: ClusterOverrides,
    /// `--https-addr`, `--tls-cert`, `--tls-key`.
    #[serde(skip_serializing_if = "TlsOverrides::is_empty")]
    pub tls: TlsOverrides,
}

/// The HTTPS settings a command line can set.
#[derive(Debug, Clone, Default, Serialize)]
pub struct TlsOverrides {
    /// HTTPS listen address.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub addr: Option<SocketAddr>,
    /// Certificate chain file.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cert: Option<PathBuf>,
    /// Private key file.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<PathBuf>,
}

impl TlsOverrides {
    fn is_empty(&self) -> bool {
        self.addr.is_none() && self.cert.is_none() && self.key.is_none()
    }
}

/// The cluster settings a command line can set.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ClusterOverrides {
    /// Registry URL.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub registry: Option<String>,
    /// Node id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node_id: Option<String>,
}

impl ClusterOverrides {
    fn is_empty(&self) -> bool {
        self.registry.is_none() && self.node_id.is_none()
    }
}

/// The relay settings a command line can set.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RelayOverrides {
    /// Upstream base URLs.
    pub upstreams: Vec<String>,
}

/// Errors from loading the configuration.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A file, variable or flag had a wrong key or value (figment names which).
    #[error("configuration: {0}")]
    Invalid(#[from] Box<figment::Error>),
    /// A value is out of range.
    #[error("configuration: {0}")]
    OutOfRange(String),
}

impl Config {
    /// Loads defaults ← `file` (if given; else `onair.toml` in the working directory if present)
    /// ← `ONAIR_*` environment ← `cli`. Errors: [`ConfigError`].
    pub fn load(file: Option<&Path>, cli: &CliOverrides) -> Result<Config, ConfigError> {
        let mut fig = Figment::from(Serialized::defaults(Config::default()));
        match file {
            Some(f) => fig = fig.merge(Toml::file_exact(f)),
            None => fig = fig.merge(Toml::file("onair.toml")),
        }
        let fig = fig
            .merge(Env::prefixed("ONAIR_").split("__").ignore(&["config", "log"]))
            .merge(Serialized::globals(cli));
        let cfg: Config = fig.extract().map_err(Box::new)?;
        cfg.validate()?;
        Ok(cfg)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        if !(50..=5000).contains(&self.hls.part_target_ms) {
            return Err(ConfigError::OutOfRange("hls.part_target_ms must be within 50..=5000".into()));
        }
        if self.relay.max_memory_mb == 0 {
            return Err(ConfigError::OutOfRange("relay.max_memory_mb must be at least 1".into()));
        }
        if self.ingest.max_gop_ms < 1000 {
            return Err(ConfigError::OutOfRange("ingest.max_gop_ms must be at least 1000".into()));
        }
        if self.hls.window_segments < 3 {
            return Err(ConfigError::OutOfRange("hls.window_segments must be at least 3".into()));
        }
        for r in &self.transcode.ladder {
            let ok_name = !r.name.is_empty() && r.name.len() <= 32 && r.name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
            if !ok_name || r.name == "source" || r.name == "audio" || r.bitrate_kbps == 0 || r.max_fps == 0 {
                return Err(ConfigError::OutOfRange(format!("transcode.ladder rung {:?}: name of a-z 0-9 _ - (not source/audio), bitrate_kbps > 0, max_fps > 0", r.name)));
            }
        }
        if self.playback.token_bucket_s == 0 || self.playback.token_ttl_s == 0 {
            return Err(ConfigError::OutOfRange("playback.token_ttl_s and token_bucket_s must be > 0".into()));
        }
        let db = self.database.as_deref();
        if db.is_some_and(|u| !(u.starts_with("postgres://") || u.starts_with("postgresql://") || u.starts_with("sqlite:"))) {
            return Err(ConfigError::OutOfRange("database must be a postgres://… (or sqlite://…) URL".into()));
        }
        let c = &self.cluster;
        if c.node_id.as_deref().is_some_and(|id| !onair_cluster::node::valid_id(id) || id == onair_cluster::usher::CDN) {
            return Err(ConfigError::OutOfRange("cluster.node_id: 1-64 of A-Z a-z 0-9 . _ - (and not \"cdn\")".into()));
        }
        let http_url = |u: &String| u.starts_with("http://") || u.starts_with("https://");
        if c.steering_url.as_ref().is_some_and(|u| !http_url(u)) || c.steering_ttl_s == 0 {
            return Err(ConfigError::OutOfRange("cluster.steering_url must be an http(s) URL; steering_ttl_s > 0".into()));
        }
        if c.cdn_url.as_deref().is_some_and(|u| !(u.starts_with("http://") || u.starts_with("https://"))) || c.cdn_overflow_load.is_nan() || c.cdn_overflow_load <= 0.0 {
            return Err(ConfigError::OutOfRange("cluster.cdn_url must be an http(s) URL; cdn_overflow_load > 0".into()));
        }
        let in_range = c.cost.is_finite() && c.cost > 0.0 && c.bounded_load > 1.0 && c.fill_target > 0.0 && c.fill_target <= 1.0;
        let in_range = in_range && c.warm_lookahead_s.is_finite() && c.warm_lookahead_s >= 0.0;
        if !in_range || !(1..=8).contains(&c.candidates) || c.max_fanout == 0 {
            return Err(ConfigError::OutOfRange("cluster: cost > 0, bounded_load > 1, 0 < fill_target <= 1, warm_lookahead_s >= 0, candidates 1-8, max_fanout > 0".into()));
        }
        if c.report_interval_ms < 100 || c.entry_ttl_ms < 2 * c.report_interval_ms || c.view_refresh_ms < 50 || c.playback_rate_per_s == 0 || c.playback_burst == 0 {
            return Err(ConfigError::OutOfRange(
                "cluster: report_interval_ms >= 100, entry_ttl_ms >= 2 x report_interval_ms, view_refresh_ms >= 50, playback rate and burst > 0".into(),
            ));
        }
        if self.tls.cert.is_some() != self.tls.key.is_some() {
            return Err(ConfigError::OutOfRange("tls.cert and tls.key go together: set both for HTTPS, or neither".into()));
        }
        if self.rtmp.max_chunk_size < 128 || self.rtmp.max_message_size < 1024 {
            return Err(ConfigError::OutOfRange("rtmp.max_chunk_size >= 128 and rtmp.max_message_size >= 1024".into()));
        }
        Ok(())
    }

    /// The configuration as TOML, for `onair config`.
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).unwrap_or_else(|e| format!("# cannot render configuration: {e}\n"))
    }
}

#[cfg(test)]
#[allow(clippy::result_large_err)] // figment::Jail's closures return figment::Error
mod tests {
    use super::*;

    #[test]
    fn precedence_file_env_cli() {
        figment::Jail::expect_with(|jail| {
            jail.create_file("my.toml", "http_addr = \"127.0.0.1:1111\"\ndata_dir = \"from-file\"\n[hls]\npart_target_ms = 300\n")?;
            jail.set_env("ONAIR_DATA_DIR", "from-env");
            jail.set_env("ONAIR_HLS__WINDOW_SEGMENTS", "20");
            let cli = CliOverrides { rtmp_addr: Some(([127, 0, 0, 1], 2222).into()), ..Default::default() };
            let cfg = Config::load(Some(Path::new("my.toml")), &cli).expect("loads");
            assert_eq!(cfg.http_addr, ([127, 0, 0, 1], 1111).into());
            assert_eq!(cfg.rtmp_addr, ([127, 0, 0, 1], 2222).into());
            assert_eq!(cfg.data_dir, PathBuf::from("from-env"));
            assert_eq!(cfg.hls.part_target_ms, 300);
            assert_eq!(cfg.hls.window_segments, 20);
            let cli = CliOverrides { data_dir: Some("from-cli".into()), ..Default::default() };
            let cfg = Config::load(Some(Path::new("my.toml")), &cli).expect("loads");
            assert_eq!(cfg.data_dir, PathBuf::from("from-cli"));
            Ok(())
        });
    }

    #[test]
    fn rejects_unknown_keys_and_bad_values() {
        figment::Jail::expect_with(|jail| {
            jail.create_file("bad.toml", "htp_addr = \"x\"\n")?;
            assert!(Config::load(Some(Path::new("bad.toml")), &CliOverrides::default()).is_err());
            jail.create_file("range.toml", "[hls]\npart_target_ms = 1\n")?;
            assert!(Config::load(Some(Path::new("range.toml")), &CliOverrides::default()).is_err());
            jail.create_file("half-tls.toml", "[tls]\ncert = \"fullchain.pem\"\n")?;
            let half = Config::load(Some(Path::new("half-tls.toml")), &CliOverrides::default());
            assert!(half.is_err_and(|e| e.to_string().contains("tls.cert and tls.key")));
            Ok(())
        });
    }

    #[test]
    fn tls_from_file_env_and_flags() {
        figment::Jail::expect_with(|jail| {
            jail.create_file("tls.toml", "[tls]\ncert = \"a.pem\"\nkey = \"a-key.pem\"\n")?;
            jail.set_env("ONAIR_TLS__ADDR", "127.0.0.1:9443");
            let cli = CliOverrides { tls: TlsOverrides { key: Some("b-key.pem".into()), ..Default::default() }, ..Default::default() };
            let cfg = Config::load(Some(Path::new("tls.toml")), &cli).expect("config");
            assert_eq!(cfg.tls.addr, ([127, 0, 0, 1], 9443).into());
            assert_eq!(cfg.tls.files(), Some((Path::new("a.pem"), Path::new("b-key.pem"))));
            assert_eq!(Config::default().tls.files(), None, "HTTPS is off by default");
            Ok(())
        });
    }
}
