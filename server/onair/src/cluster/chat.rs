//! The chat's view of the cluster: which rooms this node hosts and where a joiner goes
//! ([`onair_chat::placement`] over the registry view Usher ranks from), remembering the joiners
//! this node sent to each room since its host's last report.

use std::sync::Weak;

use onair_chat::placement::{self, Recent};
use onair_chat::ChatCluster;
use onair_cluster::node::{Load, NodeReport};

use super::{now_ms, Cluster};

/// [`ChatCluster`] over this node's registry view. Holds the cluster weakly (the cluster holds
/// the chat through its local node).
#[derive(Debug)]
pub struct ChatRooms {
    cluster: Weak<Cluster>,
    recent: Recent,
}

impl ChatRooms {
    /// The chat's view of `cluster`.
    pub fn new(cluster: Weak<Cluster>) -> Self {
        ChatRooms { cluster, recent: Recent::default() }
    }
}

impl ChatCluster for ChatRooms {
    fn hosts_here(&self, channel: &str, room: u32) -> bool {
        let Some(cluster) = self.cluster.upgrade() else { return true };
        let Some(local) = cluster.local.as_ref() else { return true };
        let nodes = cluster.view.read().unwrap_or_else(|e| e.into_inner()).nodes.clone();
        let me = local.info.id.as_str();
        if nodes.iter().any(|n| n.info.id == me) {
            return placement::host(&nodes, channel, room).is_none_or(|host| host.info.id == me);
        }
        // Not in the view yet (just started): this node counts as a chat node, with no rooms.
        let mut with_me = Vec::with_capacity(nodes.len() + 1);
        with_me.extend(nodes.iter().cloned());
        with_me.push(NodeReport { info: local.info.clone(), load: Load::default(), channels: Vec::new(), chat_rooms: Vec::new(), reported_at_ms: now_ms() });
        placement::host(&with_me, channel, room).is_none_or(|host| host.info.id == me)
    }

    fn place(&self, channel: &str, capacity: usize, requested: Option<u32>) -> Option<(u32, String)> {
        let cluster = self.cluster.upgrade()?;
        let nodes = cluster.view.read().unwrap_or_else(|e| e.into_inner()).nodes.clone();
        let placed = placement::place(&nodes, channel, capacity, requested, &self.recent)?;
        self.recent.record(channel, placed.room, now_ms());
        tracing::debug!(channel, room = placed.room, node = %placed.host.info.id, "chat room placed");
        Some((placed.room, placed.host.info.base_url.clone()?))
    }
}
