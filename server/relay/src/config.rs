//! The `[relay]` section of the configuration.

use serde::{Deserialize, Serialize};

/// Relay settings. With no upstreams the node relays nothing (a plain origin).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RelayConfig {
    /// Base URLs of the nodes to pull channels from (origins or other relays), e.g.
    /// `http://origin-1:8080`, tried in order: a channel comes from the first that has it, and
    /// moves to the next when that one fails.
    pub upstreams: Vec<String>,
    /// A pulled rendition is released this long after the last request for it, ms; the channel
    /// goes with its last rendition.
    pub release_after_ms: u64,
    /// Time to connect to an upstream, ms.
    pub connect_timeout_ms: u64,
    /// Longest wait for an upstream that holds a request (blocking reload, Preload Hint) before
    /// the relay asks it whether it is alive, ms; a dead upstream is left within about twice this.
    pub block_timeout_ms: u64,
    /// Segments before the live edge imported when a rendition is first pulled, so a player can
    /// start its hold-back behind the edge.
    pub initial_segments: usize,
    /// Channels pulled (or being looked for upstream) at once; a request that would start one more
    /// gets 503, so requests for made-up channel names cannot make the relay flood its upstreams.
    pub max_channels: usize,
    /// Media the relayed channels may hold in RAM, MiB (init segments and downloadable parts).
    /// At the cap a request for one more channel gets 503; over it, the least recently requested
    /// channels are released (never the last one) until the rest fit.
    pub max_memory_mb: u64,
    /// PEM file of certificate authorities trusted for `https://` upstreams besides the system's
    /// (a private CA between a cluster's tiers). Default none.
    pub upstream_ca: Option<std::path::PathBuf>,
}

impl Default for RelayConfig {
    fn default() -> Self {
        RelayConfig {
            upstreams: Vec::new(),
            release_after_ms: 30_000,
            connect_timeout_ms: 1_000,
            block_timeout_ms: 1_000,
            initial_segments: 2,
            max_channels: 1_000,
            max_memory_mb: 4_096,
            upstream_ca: None,
        }
    }
}
