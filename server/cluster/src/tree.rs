//! A channel's replication tree, read from the registry view (sans-IO): the origin (the node
//! with the publisher) at the root, each relay under the node it pulls from (its reported
//! upstream), and the choice of a parent for a relay about to pull the channel: the shallowest
//! holder with fewer than `max_fanout` children, least loaded first, so the tree deepens instead of
//! the origin feeding every relay.

use std::collections::HashMap;

use serde::Serialize;

use crate::node::NodeReport;

/// One node of a channel's tree.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TreeNode {
    /// Node id.
    pub node: String,
    /// Its base URL.
    pub base_url: Option<String>,
    /// True for the origin (a publisher is attached there).
    pub origin: bool,
    /// The node it pulls from (`None` for the origin, or when its upstream is not in the view,
    /// e.g. a static upstream outside the cluster).
    pub parent: Option<String>,
    /// Hops from the origin (0 for the origin); `None` when not connected to it.
    pub depth: Option<u32>,
    /// Relays pulling from it.
    pub children: u32,
    /// Its viewers of the channel.
    pub viewers: u64,
    /// Its load fraction.
    pub load: f64,
}

/// The tree of `channel`: every node of `view` holding it, in view order.
pub fn tree(view: &[NodeReport], channel: &str) -> Vec<TreeNode> {
    let by_url: HashMap<&str, &str> = view.iter().filter_map(|n| Some((n.info.base_url.as_deref()?, n.info.id.as_str()))).collect();
    let holders: Vec<(&NodeReport, &crate::node::HeldChannel)> = view.iter().filter_map(|n| Some((n, n.held(channel)?))).collect();
    let parent_of: HashMap<&str, Option<&str>> = holders
        .iter()
        .map(|(n, c)| (n.info.id.as_str(), if c.origin { None } else { c.upstream.as_deref().and_then(|u| by_url.get(u.trim_end_matches('/')).copied()) }))
        .collect();
    let depth = |id: &str| -> Option<u32> {
        let (mut at, mut hops) = (id, 0u32);
        loop {
            let (n, c) = holders.iter().find(|(n, _)| n.info.id == at)?;
            if c.origin {
                return Some(hops);
            }
            at = parent_of.get(n.info.id.as_str()).copied().flatten()?;
            hops += 1;
            if hops as usize > holders.len() {
                return None;
            }
        }
    };
    holders
        .iter()
        .map(|(n, c)| {
            let id = n.info.id.as_str();
            TreeNode {
                node: id.to_string(),
                base_url: n.info.base_url.clone(),
                origin: c.origin,
                parent: parent_of.get(id).copied().flatten().map(str::to_string),
                depth: depth(id),
                children: parent_of.values().filter(|p| **p == Some(id)).count() as u32,
                viewers: c.viewers,
                load: n.load_fraction(0),
            }
        })
        .collect()
}

/// Base URLs a relay `me` should pull `channel` from, best first: holders connected to the
/// origin, not below `me` (no cycles), with fewer than `max_fanout` children before the others,
/// then shallowest, then fewest children, then least loaded.
pub fn parents(view: &[NodeReport], channel: &str, me: &str, max_fanout: u32) -> Vec<String> {
    let t = tree(view, channel);
    let below_me = |id: &str| {
        let mut at = Some(id.to_string());
        for _ in 0..=t.len() {
            match at {
                Some(ref a) if a == me => return true,
                Some(a) => at = t.iter().find(|n| n.node == a).and_then(|n| n.parent.clone()),
                None => return false,
            }
        }
        true
    };
    let mut candidates: Vec<&TreeNode> = t.iter().filter(|n| n.node != me && n.base_url.is_some() && n.depth.is_some() && !below_me(&n.node)).collect();
    candidates.sort_by(|a, b| {
        (a.children >= max_fanout)
            .cmp(&(b.children >= max_fanout))
            .then(a.depth.cmp(&b.depth))
            .then(a.children.cmp(&b.children))
            .then(a.load.total_cmp(&b.load))
            .then(a.node.cmp(&b.node))
    });
    candidates.into_iter().filter_map(|n| n.base_url.clone()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node::tests::node;

    /// `id` holding `demo`, pulling from `parent` (`None`: the origin).
    fn holder(id: &str, parent: Option<&str>) -> NodeReport {
        let mut n = node(id, "eu", 0, 100, &["demo"]);
        n.channels[0].origin = parent.is_none();
        n.channels[0].upstream = parent.map(|p| format!("http://{p}"));
        n
    }

    #[test]
    fn the_tree_deepens_past_the_fanout() {
        let mut view = vec![holder("o", None), holder("r1", Some("o")), holder("r2", Some("o")), holder("r3", Some("r1")), node("new", "eu", 0, 100, &[])];
        let t = tree(&view, "demo");
        let get = |id: &str| t.iter().find(|n| n.node == id).cloned().expect("node");
        assert_eq!((get("o").depth, get("o").children), (Some(0), 2));
        assert_eq!((get("r3").depth, get("r3").parent.as_deref()), (Some(2), Some("r1")));
        assert_eq!(t.len(), 4, "non-holders are not in the tree");
        // With room at the origin, a new relay pulls from it.
        assert_eq!(parents(&view, "demo", "new", 4)[0], "http://o");
        // The origin full (fan-out 2): the depth-1 relay with fewer children.
        let p = parents(&view, "demo", "new", 2);
        assert_eq!(p[0], "http://r2", "{p:?}");
        assert_eq!(p.last().map(String::as_str), Some("http://o"));
        // A relay never pulls from below itself.
        let p = parents(&view, "demo", "r1", 4);
        assert!(!p.contains(&"http://r3".to_string()) && p[0] == "http://o", "{p:?}");
        // A relay whose upstream is outside the view is not connected: not a parent.
        view.push(holder("stray", Some("elsewhere")));
        assert!(!parents(&view, "demo", "new", 4).contains(&"http://stray".to_string()));
        assert_eq!(tree(&view, "demo").iter().find(|n| n.node == "stray").and_then(|n| n.depth), None);
    }
}
