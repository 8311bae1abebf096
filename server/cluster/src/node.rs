//! What a node says about itself in the registry: who it is ([`NodeInfo`], fixed for its life)
//! and, every report interval, its load and the channels it holds ([`NodeReport`]).
//!
//! Reports travel as JSON (in Redis, and in `GET /api/v1/cluster`), so every field is plain data.

use serde::{Deserialize, Serialize};

/// What a node may do. A node with neither role still reports (it is visible), but is offered to
/// no viewer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Roles {
    /// It accepts publishers (RTMP/SRT): it is an origin for the channels published to it.
    pub ingest: bool,
    /// It serves viewers any channel, relaying the ones it does not ingest. A node without this
    /// role serves viewers only the channels it already holds.
    pub relay: bool,
    /// It serves chat (`[chat] enabled`): chat rooms may be placed on it.
    #[serde(default)]
    pub chat: bool,
}

/// A node's identity and limits, fixed for its life.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeInfo {
    /// Unique within the cluster, e.g. the host name. 1–64 bytes of `[A-Za-z0-9._-]`.
    pub id: String,
    /// Base URL players use, e.g. `https://edge-1.example.com`; `None` on a node that does not
    /// know it (the embedded default), which the node answering a request replaces with the
    /// request's own `Host` when it ranks itself.
    pub base_url: Option<String>,
    /// Region name (any string, matched against the region of the client's network).
    pub region: String,
    /// Availability zone within the region.
    pub zone: String,
    /// What it does.
    pub roles: Roles,
    /// Most viewers it may serve; it is never offered beyond this.
    pub capacity_viewers: u64,
    /// Most egress it may send, Mbit/s; it is never offered beyond this.
    pub capacity_egress_mbps: f64,
    /// Relative cost of a viewer here (e.g. bandwidth price): among otherwise equal nodes the
    /// cheaper one is preferred, and the rendezvous hash weighs nodes by `1 / cost`. > 0.
    pub cost: f64,
}

/// A node's load when it reported.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct Load {
    /// Viewers (playback sessions, see [`crate::viewers`]) over all channels.
    pub viewers: u64,
    /// HTTP bytes sent over the last report interval, in Mbit/s.
    pub egress_mbps: f64,
    /// The node process's CPU use over the last report interval, as a fraction of the machine's
    /// cores, 0.0–1.0.
    pub cpu: f64,
}

/// A channel a node holds in its RAM store (ingested or relayed).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HeldChannel {
    /// Channel name.
    pub channel: String,
    /// Rendition names it holds.
    pub renditions: Vec<String>,
    /// True when a publisher is attached here (this node is the channel's origin).
    pub origin: bool,
    /// False while the publisher is gone but may come back (the reconnect grace period).
    pub live: bool,
    /// Viewers of this channel here.
    pub viewers: u64,
    /// When the broadcast started, Unix ms.
    pub started_at_ms: u64,
    /// Base URL of the node it pulls the channel from (`None` on the origin).
    pub upstream: Option<String>,
}

/// A chat room a node hosts: every member of the room is connected to that node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostedRoom {
    /// Channel name.
    pub channel: String,
    /// Room number (1, 2, …).
    pub room: u32,
    /// Members connected.
    pub members: u64,
}

/// One report: the node, its load and its channels.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeReport {
    /// Who.
    pub info: NodeInfo,
    /// Load.
    pub load: Load,
    /// Channels held, sorted by name.
    pub channels: Vec<HeldChannel>,
    /// Chat rooms hosted here, sorted by (channel, room).
    #[serde(default)]
    pub chat_rooms: Vec<HostedRoom>,
    /// When the node made this report, Unix ms (its own clock).
    pub reported_at_ms: u64,
}

impl NodeReport {
    /// The channel if this node holds it.
    pub fn held(&self, channel: &str) -> Option<&HeldChannel> {
        self.channels.binary_search_by(|c| c.channel.as_str().cmp(channel)).ok().map(|i| &self.channels[i])
    }

    /// Load as a fraction of capacity, 0.0 (idle) to ≥ 1.0 (full), with `extra_viewers` placed
    /// since the report: the largest of the viewer share, the egress share and CPU use.
    pub fn load_fraction(&self, extra_viewers: u64) -> f64 {
        let viewers = (self.load.viewers + extra_viewers) as f64 / self.info.capacity_viewers.max(1) as f64;
        let egress = if self.info.capacity_egress_mbps > 0.0 { self.load.egress_mbps / self.info.capacity_egress_mbps } else { 1.0 };
        viewers.max(egress).max(self.load.cpu)
    }

    /// True when one more viewer (after `extra_viewers` placed since the report) would exceed
    /// the node's viewer or egress capacity. CPU alone never makes a node full: it only ranks it.
    pub fn at_capacity(&self, extra_viewers: u64) -> bool {
        self.load.viewers + extra_viewers >= self.info.capacity_viewers || self.load.egress_mbps >= self.info.capacity_egress_mbps
    }
}

/// True for a valid node id: 1–64 bytes of `[A-Za-z0-9._-]` (it is part of Redis keys and URLs).
pub fn valid_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 64 && id.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A relay-role node report for tests.
    pub fn node(id: &str, region: &str, viewers: u64, capacity: u64, channels: &[&str]) -> NodeReport {
        NodeReport {
            info: NodeInfo {
                id: id.into(),
                base_url: Some(format!("http://{id}")),
                region: region.into(),
                zone: format!("{region}-a"),
                roles: Roles { ingest: false, relay: true, chat: true },
                capacity_viewers: capacity,
                capacity_egress_mbps: 10_000.0,
                cost: 1.0,
            },
            load: Load { viewers, egress_mbps: 0.0, cpu: 0.0 },
            channels: channels
                .iter()
                .map(|c| HeldChannel { channel: (*c).into(), renditions: vec!["source".into()], origin: false, live: true, viewers: 0, started_at_ms: 0, upstream: None })
                .collect(),
            chat_rooms: Vec::new(),
            reported_at_ms: 0,
        }
    }

    #[test]
    fn load_and_capacity() {
        let mut n = node("a", "eu", 50, 100, &["x", "y"]);
        assert!(n.held("x").is_some() && n.held("z").is_none());
        assert!((n.load_fraction(0) - 0.5).abs() < 1e-9);
        assert!((n.load_fraction(25) - 0.75).abs() < 1e-9);
        assert!(!n.at_capacity(49) && n.at_capacity(50));
        n.load.cpu = 0.9;
        assert!((n.load_fraction(0) - 0.9).abs() < 1e-9);
        assert!(!n.at_capacity(0), "CPU ranks, never excludes");
        n.load.egress_mbps = 10_000.0;
        assert!(n.at_capacity(0));
        assert!(valid_id("edge-1.eu") && !valid_id("") && !valid_id("a b") && !valid_id(&"x".repeat(65)));
    }
}
