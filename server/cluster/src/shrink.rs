//! The replication tree shrinks after a cool-down (sans-IO, over the registry view).
//!
//! A channel's tree grows ahead of its viewers ([`crate::usher::grow`]); when they leave, the
//! relays that pulled it for them stay holders. Once the viewers of one holder would fit, twice
//! over, in the room the channel's other relay holders have left (below the fill target), and
//! that has held for the cool-down, Usher *retires* that holder from the channel: it is no longer
//! offered to the channel's viewers, and the Steering Manifest no longer lists it, so players move
//! to the other holders; with no requests left, the relay releases the channel
//! (`relay.release_after_ms`). The holder retired is a leaf of the tree (no relay pulls from it),
//! with the fewest of the channel's viewers (ties: the lowest rendezvous score, the node the hash
//! would pick last); never the origin. One holder at a time per channel, each after its own
//! cool-down; a retirement ends as soon as the condition fails (the channel needs the relay again).

use std::collections::HashMap;
use std::sync::Mutex;

use crate::node::NodeReport;
use crate::usher::rendezvous;

/// The holder of `channel` that the others could do without now, if any (see the module).
/// `fill_target`: the load fraction holders fill to ([`crate::UsherConfig::fill_target`]).
pub fn surplus(view: &[NodeReport], channel: &str, fill_target: f64) -> Option<String> {
    let holders: Vec<&NodeReport> = view.iter().filter(|n| n.info.roles.relay && n.held(channel).is_some_and(|c| !c.origin)).collect();
    if holders.len() < 2 {
        return None;
    }
    let pulled_from = |n: &NodeReport| {
        let Some(url) = n.info.base_url.as_deref() else { return false };
        view.iter().any(|other| other.held(channel).and_then(|c| c.upstream.as_deref()).is_some_and(|u| u.trim_end_matches('/') == url.trim_end_matches('/')))
    };
    let viewers = |n: &NodeReport| n.held(channel).map_or(0, |c| c.viewers);
    let leaf = holders
        .iter()
        .filter(|n| !pulled_from(n))
        .min_by(|a, b| viewers(a).cmp(&viewers(b)).then_with(|| rendezvous(channel, &a.info.id, a.info.cost).total_cmp(&rendezvous(channel, &b.info.id, b.info.cost))))?;
    let room: f64 = holders
        .iter()
        .filter(|n| n.info.id != leaf.info.id)
        .map(|n| (fill_target * n.info.capacity_viewers as f64 - n.load.viewers as f64).max(0.0))
        .sum();
    (room >= 2.0 * viewers(leaf) as f64 && room >= 1.0).then(|| leaf.info.id.clone())
}

#[derive(Debug, Default)]
struct Cooling {
    /// Since when (Unix ms) `candidate` has been surplus.
    since: u64,
    candidate: String,
    retired: bool,
}

/// Usher's retirements, one per channel at most, updated at each refresh of its view.
#[derive(Debug)]
pub struct Shrink {
    cool_down_ms: u64,
    channels: Mutex<HashMap<String, Cooling>>,
}

impl Shrink {
    /// Retirements after `cool_down_ms` of surplus; 0 turns shrinking off.
    pub fn new(cool_down_ms: u64) -> Self {
        Shrink { cool_down_ms, channels: Mutex::new(HashMap::new()) }
    }

    /// Looks at `view` at `now_ms`: starts, continues or ends each channel's cool-down and
    /// retires holders whose cool-down is over. Returns the retirements made now, (channel, node).
    pub fn update(&self, view: &[NodeReport], now_ms: u64, fill_target: f64) -> Vec<(String, String)> {
        if self.cool_down_ms == 0 {
            return Vec::new();
        }
        let mut names: Vec<&str> = view.iter().flat_map(|n| n.channels.iter().map(|c| c.channel.as_str())).collect();
        names.sort_unstable();
        names.dedup();
        let mut channels = self.channels.lock().unwrap_or_else(|e| e.into_inner());
        channels.retain(|c, _| names.binary_search(&c.as_str()).is_ok());
        let mut retired = Vec::new();
        for channel in names {
            let Some(candidate) = surplus(view, channel, fill_target) else {
                channels.remove(channel);
                continue;
            };
            let cooling = channels.entry(channel.to_string()).or_default();
            if cooling.candidate != candidate {
                // A retired holder that released the channel is gone from the view: the next
                // holder starts its own cool-down.
                *cooling = Cooling { since: now_ms, candidate, retired: false };
            }
            if !cooling.retired && now_ms.saturating_sub(cooling.since) >= self.cool_down_ms {
                cooling.retired = true;
                retired.push((channel.to_string(), cooling.candidate.clone()));
            }
        }
        retired
    }

    /// The node retired from `channel`, if any.
    pub fn retired(&self, channel: &str) -> Option<String> {
        let channels = self.channels.lock().unwrap_or_else(|e| e.into_inner());
        channels.get(channel).filter(|c| c.retired).map(|c| c.candidate.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node::tests::node;

    /// A relay holding `demo` with `viewers` of it (and as its node load), pulling from `upstream`.
    fn holder(id: &str, viewers: u64, upstream: Option<&str>) -> NodeReport {
        let mut n = node(id, "eu", viewers, 100, &["demo"]);
        n.channels[0].viewers = viewers;
        n.channels[0].upstream = upstream.map(|u| format!("http://{u}"));
        n
    }

    fn origin() -> NodeReport {
        let mut n = node("o", "eu", 0, 100, &["demo"]);
        n.info.roles.relay = false;
        n.channels[0].origin = true;
        n
    }

    #[test]
    fn the_holder_with_fewest_viewers_that_the_others_can_absorb_is_surplus() {
        // 30 and 5 viewers on two relays of 100 (fill 90): the 5 fit twice into a's room of 60.
        let view = vec![origin(), holder("a", 30, Some("o")), holder("b", 5, Some("o"))];
        assert_eq!(surplus(&view, "demo", 0.9).as_deref(), Some("b"));
        // 50 cannot move into a's room of 60 twice over: nothing is surplus.
        let view = vec![origin(), holder("a", 30, Some("o")), holder("b", 50, Some("o"))];
        assert_eq!(surplus(&view, "demo", 0.9), None);
        // One relay holder (the origin does not count): nothing to shrink.
        assert_eq!(surplus(&[origin(), holder("a", 0, Some("o"))], "demo", 0.9), None);
        // A relay other relays pull from is not a leaf: c is retired rather than b.
        let view = vec![origin(), holder("a", 10, Some("o")), holder("b", 0, Some("o")), holder("c", 3, Some("b"))];
        assert_eq!(surplus(&view, "demo", 0.9).as_deref(), Some("c"));
        // Full holders have no room for anyone.
        let view = vec![origin(), holder("a", 95, Some("o")), holder("b", 0, Some("o"))];
        assert_eq!(surplus(&view, "demo", 0.9), None);
    }

    #[test]
    fn a_holder_is_retired_after_the_cool_down_and_comes_back_when_needed() {
        let shrink = Shrink::new(60_000);
        let quiet = vec![origin(), holder("a", 30, Some("o")), holder("b", 2, Some("o"))];
        assert!(shrink.update(&quiet, 0, 0.9).is_empty());
        assert!(shrink.update(&quiet, 59_999, 0.9).is_empty());
        assert_eq!(shrink.retired("demo"), None);
        assert_eq!(shrink.update(&quiet, 60_000, 0.9), [("demo".to_string(), "b".to_string())]);
        assert_eq!(shrink.retired("demo").as_deref(), Some("b"));
        assert!(shrink.update(&quiet, 70_000, 0.9).is_empty(), "retired once");
        // Viewers come back: b is needed again, and a new quiet spell starts a new cool-down.
        let busy = vec![origin(), holder("a", 88, Some("o")), holder("b", 2, Some("o"))];
        assert!(shrink.update(&busy, 80_000, 0.9).is_empty());
        assert_eq!(shrink.retired("demo"), None);
        assert!(shrink.update(&quiet, 90_000, 0.9).is_empty());
        assert_eq!(shrink.update(&quiet, 150_000, 0.9).len(), 1);
        // Off.
        assert!(Shrink::new(0).update(&quiet, 1_000_000, 0.9).is_empty());
    }
}
