//! Configuration: built-in defaults, then a TOML file, then `ONAIR_*` environment variables, then
//! command-line flags, each overriding the one before (via `figment`).
//!
//! Environment names: top-level keys as `ONAIR_HTTP_ADDR`, `ONAIR_RTMP_ADDR`, `ONAIR_DATA_DIR`;
//! nested keys with a double underscore, e.g. `ONAIR_HLS__PART_TARGET_MS=250`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use figment::providers::{Env, Format, Serialized, Toml};
use figment::Figment;
use onair_ingest::config::{IngestConfig, RtmpConfig, SrtConfig, TranscodeConfig};
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
    /// Directory for the channel database. Default `onair-data`.
    pub data_dir: PathBuf,
    /// Public host name printed in the OBS settings; default: derived from the listen addresses.
    pub public_host: Option<String>,
    /// No RTMP or SRT listeners: a pure edge that only relays (`--no-ingest`, `onair edge`).
    pub no_ingest: bool,
    /// Pulling channels from other nodes (`--upstream`, `ONAIR_RELAY__UPSTREAMS`).
    pub relay: RelayConfig,
    /// HTTP connection limits and timeouts.
    pub http: HttpConfig,
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
    /// Key (any string) that signs playback tokens; share it with the peers. Default: random at
    /// each start, so tokens do not survive a restart.
    pub token_secret: Option<String>,
    /// Lifetime of a playback token in seconds. Default 6 h.
    pub token_ttl_s: u64,
    /// Refuse Multivariant Playlist requests without a valid `token` (403). Default false.
    pub require_token: bool,
}

impl Default for PlaybackConfig {
    fn default() -> Self {
        PlaybackConfig { public_url: None, peers: Vec::new(), token_secret: None, token_ttl_s: 6 * 3600, require_token: false }
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
            public_host: None,
            no_ingest: false,
            relay: RelayConfig::default(),
            http: HttpConfig::default(),
            hls: HlsConfig::default(),
            rtmp: RtmpConfig::default(),
            srt: SrtConfig::default(),
            transcode: TranscodeConfig::default(),
            ingest: IngestConfig::default(),
            playback: PlaybackConfig::default(),
            web: WebConfig::default(),
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
    /// `--no-ingest`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub no_ingest: Option<bool>,
    /// `--upstream` (repeatable): replaces `relay.upstreams`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub relay: Option<RelayOverrides>,
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
            Ok(())
        });
    }
}
