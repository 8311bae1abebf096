//! Ingest settings, one section each in the server's configuration file: `[ingest]` (every
//! protocol), `[rtmp]`, `[srt]` and `[transcode]`. Values are plain data; `onair`'s configuration
//! loads them (defaults, TOML, `ONAIR_*` environment, flags) and validates their ranges.

use serde::{Deserialize, Serialize};

/// Ingest behaviour shared by every protocol.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IngestConfig {
    /// How long a channel whose publisher dropped stays live waiting for it to come back on the
    /// same key, ms. Within it, viewers see a discontinuity and keep playing; after it, the
    /// playlists end. 0 ends them at once. Default 10 000. An encoder that stops deliberately
    /// (FCUnpublish/deleteStream) ends the broadcast at once.
    pub reconnect_grace_ms: u64,
    /// Most channels publishing at once, server-wide; further publishers are refused. Default 100.
    pub max_publishers: usize,
    /// Highest average ingest bit rate per connection, kbit/s over 5 s; a publisher above it is
    /// disconnected. 0 disables the cap. Default 50 000 (50 Mbit/s).
    pub max_bitrate_kbps: u64,
    /// A publisher with the right key takes a live channel over from the one attached (which is
    /// disconnected) instead of being refused. Default false.
    pub takeover: bool,
    /// Longest key-frame interval (segment) accepted, ms; a publisher that sends no key frame for
    /// longer is disconnected. Default 10 000, like hosted services that reject long intervals.
    pub max_gop_ms: u64,
    /// Track configuration changes (new sequence headers) a publisher may make per minute; one
    /// more disconnects it. Default 6.
    pub max_reconfigurations_per_minute: usize,
}

impl Default for IngestConfig {
    fn default() -> Self {
        IngestConfig {
            reconnect_grace_ms: 10_000,
            max_publishers: 100,
            max_bitrate_kbps: 50_000,
            takeover: false,
            max_gop_ms: 10_000,
            max_reconfigurations_per_minute: 6,
        }
    }
}


/// Transcoding: the ABR ladder encoded from the source (the source rendition always passes through).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TranscodeConfig {
    /// Encode the ladder. Default true.
    pub enabled: bool,
    /// libx264 preset. Default `veryfast`.
    pub preset: String,
    /// libx264 tune. Default `zerolatency`.
    pub tune: String,
    /// Rungs; those at or above the source's height are skipped. Default 720p30 3 Mbit/s,
    /// 480p30 1.2 Mbit/s, 360p30 600 kbit/s. Under load the last rungs shed frames first.
    pub ladder: Vec<onair_transcoder::Rung>,
    /// Most rungs encoded at once, server-wide; a channel that starts when they are taken gets
    /// fewer rungs (its cheapest ones), or the source only. Default 3 per CPU core.
    pub max_rungs: usize,
    /// x264 threads per rung. Default 1.
    pub threads_per_rung: u32,
}

impl Default for TranscodeConfig {
    fn default() -> Self {
        TranscodeConfig {
            enabled: true,
            preset: "veryfast".into(),
            tune: "zerolatency".into(),
            ladder: onair_transcoder::Rung::default_ladder(),
            max_rungs: 3 * std::thread::available_parallelism().map_or(2, |n| n.get()),
            threads_per_rung: 1,
        }
    }
}


/// RTMP ingest settings and per-connection limits.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RtmpConfig {
    /// Application name publishers must use (`rtmp://HOST/live`). Default `live`.
    pub app: String,
    /// Largest chunk size a publisher may set, bytes. Default 1 MiB.
    pub max_chunk_size: u32,
    /// Largest message, bytes. Default 8 MiB.
    pub max_message_size: u32,
    /// Most chunk streams per connection. Default 64.
    pub max_chunk_streams: usize,
    /// Time allowed to finish the handshake and start publishing, ms. Default 10 000.
    pub handshake_timeout_ms: u64,
    /// A connection that sends nothing for this long is closed, ms. Default 30 000.
    pub idle_timeout_ms: u64,
    /// Most simultaneous RTMP connections. Default 1000.
    pub max_connections: usize,
}

impl Default for RtmpConfig {
    fn default() -> Self {
        RtmpConfig {
            app: "live".into(),
            max_chunk_size: 1 << 20,
            max_message_size: 8 << 20,
            max_chunk_streams: 64,
            handshake_timeout_ms: 10_000,
            idle_timeout_ms: 30_000,
            max_connections: 1000,
        }
    }
}


/// SRT ingest settings and per-connection limits (the bit-rate cap is `ingest.max_bitrate_kbps`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SrtConfig {
    /// Application in the `streamid` (`publish:live/KEY`). Default `live`.
    pub app: String,
    /// Most simultaneous SRT connections (handshaking or publishing). Default 1000.
    pub max_connections: usize,
    /// Time allowed for the caller to finish the SRT handshake (and prove the passphrase), ms. Default 10 000.
    pub handshake_timeout_ms: u64,
    /// A publisher that sends nothing for this long is disconnected, ms. Default 30 000.
    pub idle_timeout_ms: u64,
}

impl Default for SrtConfig {
    fn default() -> Self {
        SrtConfig { app: "live".into(), max_connections: 1000, handshake_timeout_ms: 10_000, idle_timeout_ms: 30_000 }
    }
}
