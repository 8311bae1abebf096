//! The chat's view of the cluster: which rooms this node hosts and where a joiner goes
//! ([`onair_chat::placement`] over the registry view Usher ranks from), remembering the joiners
//! this node sent to each room since its host's last report.

use std::sync::Weak;

use onair_chat::placement::{self, Recent};
use onair_chat::ChatCluster;

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
        let Some(me) = cluster.local.as_ref().map(|l| l.info.id.clone()) else { return true };
        let nodes = cluster.view.read().unwrap_or_else(|e| e.into_inner()).nodes.clone();
        placement::host(&nodes, channel, room).is_none_or(|host| host.info.id == me)
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
