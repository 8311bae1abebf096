//! Where a channel's chat rooms live in a cluster (sans-IO, over the registry's node reports).
//!
//! Every member of a room is connected to one node, the room's *host*, so a room's messages never
//! cross nodes (only channel-wide events do, [`crate::bus`]). The host of a room is the node that
//! reports hosting it (the one with the most members, should two report it after a registry
//! outage split it); a room nobody hosts goes to the chat node with the highest weighted
//! rendezvous score of (`channel#room`, node), so every node computes the same answer from the
//! same view without coordinating, and a node joining the cluster takes only new rooms. A node
//! that dies takes its rooms' connections with it: the members ask again and land on the
//! rendezvous choice among the live nodes, which loads the room's recent history from Redis
//! ([`crate::history`]).

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use onair_cluster::node::NodeReport;
use onair_cluster::usher::rendezvous;

/// The node hosting `room` of `channel` in `view`, or the one that should host it (see the
/// module). `None` when no node of the view serves chat.
pub fn host<'a>(view: &'a [NodeReport], channel: &str, room: u32) -> Option<&'a NodeReport> {
    let hosting = view
        .iter()
        .filter_map(|n| n.chat_rooms.iter().find(|r| r.room == room && r.members > 0 && r.channel == channel).map(|r| (n, r.members)))
        .max_by(|(a, am), (b, bm)| am.cmp(bm).then_with(|| b.info.id.cmp(&a.info.id)));
    if let Some((n, _)) = hosting {
        return Some(n);
    }
    let key = format!("{channel}#{room}");
    view.iter()
        .filter(|n| n.info.roles.chat)
        .max_by(|a, b| rendezvous(&key, &a.info.id, a.info.cost).total_cmp(&rendezvous(&key, &b.info.id, b.info.cost)))
}

/// Joiners this node sent to each room recently, so that it does not overfill a room between two
/// reports of the room's host. Entries older than 10 s are forgotten (a report covers them by then).
#[derive(Debug, Default)]
pub struct Recent {
    placed: Mutex<HashMap<(String, u32), VecDeque<u64>>>,
}

/// How long a placement is remembered, ms.
const MEMORY_MS: u64 = 10_000;

impl Recent {
    /// Records a joiner sent to `room` of `channel` at `now_ms` (Unix ms); forgets old entries.
    pub fn record(&self, channel: &str, room: u32, now_ms: u64) {
        let mut placed = self.placed.lock().unwrap_or_else(|e| e.into_inner());
        placed.retain(|_, q| q.back().is_some_and(|&t| t + MEMORY_MS >= now_ms));
        let q = placed.entry((channel.to_string(), room)).or_default();
        while q.front().is_some_and(|&t| t + MEMORY_MS < now_ms) {
            q.pop_front();
        }
        q.push_back(now_ms);
    }

    /// Per room of `channel`: joiners sent there after `since(room)` (its host's report time, Unix ms).
    fn pending(&self, channel: &str, since: impl Fn(u32) -> u64) -> Vec<(u32, u64)> {
        let placed = self.placed.lock().unwrap_or_else(|e| e.into_inner());
        placed
            .iter()
            .filter(|((c, _), _)| c == channel)
            .map(|((_, room), q)| (*room, q.iter().rev().take_while(|&&t| t > since(*room)).count() as u64))
            .filter(|(_, n)| *n > 0)
            .collect()
    }
}

/// A room chosen for a joiner, and its host.
#[derive(Debug, Clone, Copy)]
pub struct Placed<'a> {
    /// The room (1, 2, …).
    pub room: u32,
    /// The node the joiner connects to.
    pub host: &'a NodeReport,
}

/// Places a joiner of `channel` in the cluster: each room's members summed over the reports of
/// `view`, plus the joiners `recent` sent there since its host's report, go through
/// [`crate::rooms::place`] with `capacity` and `requested`; the room's [`host`] is where to
/// connect. `None` when no node of the view serves chat.
pub fn place<'a>(view: &'a [NodeReport], channel: &str, capacity: usize, requested: Option<u32>, recent: &Recent) -> Option<Placed<'a>> {
    let mut members: HashMap<u32, u64> = HashMap::new();
    for r in view.iter().flat_map(|n| n.chat_rooms.iter()).filter(|r| r.channel == channel && r.members > 0) {
        *members.entry(r.room).or_default() += r.members;
    }
    let since = |room: u32| host(view, channel, room).map_or(0, |h| h.reported_at_ms);
    for (room, n) in recent.pending(channel, since) {
        *members.entry(room).or_default() += n;
    }
    let rooms: Vec<(u32, usize)> = members.into_iter().map(|(r, n)| (r, n as usize)).collect();
    let room = crate::rooms::place(&rooms, capacity, requested);
    Some(Placed { room, host: host(view, channel, room)? })
}

#[cfg(test)]
mod tests {
    use onair_cluster::node::{HostedRoom, Load, NodeInfo, Roles};

    use super::*;

    fn node(id: &str, rooms: &[(u32, u64)], reported_at_ms: u64) -> NodeReport {
        NodeReport {
            info: NodeInfo {
                id: id.into(),
                base_url: Some(format!("http://{id}")),
                region: "eu".into(),
                zone: "eu-a".into(),
                roles: Roles { ingest: false, relay: true, chat: true },
                capacity_viewers: 100,
                capacity_egress_mbps: 1000.0,
                cost: 1.0,
            },
            load: Load::default(),
            channels: Vec::new(),
            chat_rooms: rooms.iter().map(|&(room, members)| HostedRoom { channel: "demo".into(), room, members }).collect(),
            reported_at_ms,
        }
    }

    #[test]
    fn a_hosted_room_stays_on_its_host_and_new_rooms_spread_by_rendezvous() {
        let view = vec![node("a", &[(1, 3)], 0), node("b", &[(2, 1)], 0), node("c", &[], 0)];
        assert_eq!(host(&view, "demo", 1).map(|n| n.info.id.as_str()), Some("a"));
        assert_eq!(host(&view, "demo", 2).map(|n| n.info.id.as_str()), Some("b"));
        // Unhosted rooms spread over the three nodes, the same answer every time.
        let hosts: std::collections::BTreeSet<String> = (3..40).filter_map(|r| host(&view, "demo", r)).map(|n| n.info.id.clone()).collect();
        assert_eq!(hosts.len(), 3, "{hosts:?}");
        assert_eq!(host(&view, "demo", 7).map(|n| &n.info.id), host(&view, "demo", 7).map(|n| &n.info.id));
        // A node without chat hosts nothing new; a view without chat nodes places nowhere.
        let mut no_chat = view.clone();
        no_chat[2].info.roles.chat = false;
        assert!((3..40).all(|r| host(&no_chat, "demo", r).is_some_and(|n| n.info.id != "c")));
        no_chat.iter_mut().for_each(|n| n.info.roles.chat = false);
        assert!(host(&no_chat, "demo", 9).is_none());
        // A room split over two nodes (after an outage) goes on with the larger part.
        let split = vec![node("a", &[(1, 3)], 0), node("b", &[(1, 5)], 0)];
        assert_eq!(host(&split, "demo", 1).map(|n| n.info.id.as_str()), Some("b"));
    }

    #[test]
    fn joiners_fill_rooms_across_nodes_counting_placements_since_the_hosts_report() {
        let recent = Recent::default();
        let view = vec![node("a", &[(1, 4)], 1_000), node("b", &[], 1_000)];
        let first = place(&view, "demo", 5, None, &recent).expect("placed");
        assert_eq!((first.room, first.host.info.id.as_str()), (1, "a"));
        recent.record("demo", 1, 1_500);
        // Room 1 holds 4 reported + 1 sent since: full; the next joiner opens room 2.
        let second = place(&view, "demo", 5, None, &recent).expect("placed");
        assert_eq!(second.room, 2);
        assert_eq!(second.host.info.id, host(&view, "demo", 2).expect("host").info.id);
        // A placement older than the host's report is counted by the report already.
        let later = vec![node("a", &[(1, 4)], 2_000), node("b", &[], 2_000)];
        assert_eq!(place(&later, "demo", 5, None, &recent).expect("placed").room, 1);
        // A requested room is honoured up to a quarter over.
        assert_eq!(place(&view, "demo", 5, Some(1), &recent).expect("placed").room, 1);
        assert!(place(&[], "demo", 5, None, &recent).is_none());
    }
}
