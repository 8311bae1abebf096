//! Usher's placement of a viewer, sans-IO: from a registry view (every live node's last report)
//! and the client's region, the ranked nodes a player should use, with every node's score so a
//! decision can be explained (`?explain=1`).
//!
//! The order, first criterion first:
//! 1. **Locality**: nodes in the client's region (from the CIDR → region table) before the rest.
//!    Locality comes before "already holds the channel": sending a viewer across regions costs
//!    that viewer latency for the whole session, while pulling the channel into a relay of its
//!    region costs one upstream fetch per part.
//! 2. **Holders with headroom**: nodes that already hold the channel and are below the fill
//!    target (load fraction, [`UsherConfig::fill_target`]), least loaded (in 10 % steps) then
//!    cheapest first: holders fill up before the tree grows.
//! 3. **Other nodes**, by a weighted rendezvous hash of (channel, node) with bounded load: the
//!    channel's next node is the one with the highest `-(1 / cost) / ln(h)` for `h` the hash of
//!    (channel, node) in (0, 1), skipping nodes loaded above [`UsherConfig::bounded_load`] × the
//!    mean (+ 5 % of capacity, so that idle nodes' noise does not reorder them). Every Usher replica reading the same registry computes the same order, without
//!    coordinating.
//! 4. Holders above the fill target, least loaded first.
//!
//! With a CDN configured, it comes first when every node that may take the viewer (those of its
//! region, when its region is served) is loaded at or above the overflow load, or full
//! ([`Outcome::Cdn`]); the nodes that still have room follow it.
//!
//! Never offered: nodes without the relay role (origins serve relays and CDNs, not viewers),
//! nodes at capacity ([`NodeReport::at_capacity`]), counting the viewers this
//! Usher placed on them since their last report ([`Placements`]), and a holder retired from the
//! channel as its tree shrinks ([`crate::shrink`]).

use std::cmp::Ordering;
use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::node::NodeReport;

/// Placement settings (`[cluster]` in the configuration).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct UsherConfig {
    /// Candidates returned, 1–8. Default 3.
    pub candidates: usize,
    /// A holder at or above this load fraction ranks after the other nodes. Default 0.9.
    pub fill_target: f64,
    /// A non-holder loaded above this × the mean load fraction is skipped by the rendezvous hash
    /// (consistent hashing with bounded loads). Default 1.25.
    pub bounded_load: f64,
    /// With a CDN configured: the load fraction at or above which every node (of the client's
    /// region, when served) must be for the CDN to be offered first ([`CDN`]). `None`: no CDN.
    pub cdn_overflow: Option<f64>,
}

/// The candidate id that stands for the CDN (`cluster.cdn_url`); no node may take this id.
pub const CDN: &str = "cdn";

impl Default for UsherConfig {
    fn default() -> Self {
        UsherConfig { candidates: 3, fill_target: 0.9, bounded_load: 1.25, cdn_overflow: None }
    }
}

/// Absolute slack of the bounded-load rule (load fraction): nodes a few percent apart (CPU noise
/// on idle nodes) keep their rendezvous order.
const BOUND_SLACK: f64 = 0.05;

/// What a decision came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// The first candidate holds the channel already.
    Holder,
    /// The first candidate does not hold the channel yet: it will pull it on the first request.
    NewHolder,
    /// No node holds the channel: it is not live.
    NotLive,
    /// The channel is live but every node that may serve viewers is full.
    NoCapacity,
    /// The best node is above the CDN overflow load, or every node is full: the CDN comes first.
    Cdn,
}

impl Outcome {
    /// Metric label.
    pub fn label(self) -> &'static str {
        match self {
            Outcome::Holder => "holder",
            Outcome::NewHolder => "new_holder",
            Outcome::NotLive => "not_live",
            Outcome::NoCapacity => "no_capacity",
            Outcome::Cdn => "cdn",
        }
    }
}

/// One node's score in a decision.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Score {
    /// Node id.
    pub node: String,
    /// Why it may not be offered (`no_relay_role`, `full`, `retired`), or `None`.
    pub excluded: Option<&'static str>,
    /// In the client's region.
    pub in_region: bool,
    /// Holds the channel.
    pub holder: bool,
    /// Load fraction including viewers placed since its report.
    pub load: f64,
    /// Viewers placed on it by this Usher since its last report.
    pub placed_since_report: u64,
    /// Weighted rendezvous score for this channel (higher first).
    pub rendezvous: f64,
    /// Skipped by the bounded-load rule.
    pub above_bound: bool,
    /// Its rank among offered nodes (0 = first), `None` when not offered.
    pub rank: Option<usize>,
}

/// Usher's answer for one viewer.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Decision {
    /// What it came to.
    pub outcome: Outcome,
    /// Offered node ids, best first (at most [`UsherConfig::candidates`]); [`CDN`] for the CDN.
    pub candidates: Vec<String>,
    /// Every node's score, in view order.
    pub scores: Vec<Score>,
}

/// Weighted rendezvous score of (channel, node) for a node of cost `cost` (> 0).
pub fn rendezvous(channel: &str, node: &str, cost: f64) -> f64 {
    let digest = Sha256::new().chain_update(channel.as_bytes()).chain_update([0]).chain_update(node.as_bytes()).finalize();
    let mut word = [0u8; 8];
    word.copy_from_slice(&digest[..8]);
    // 53 random bits → (0, 1), never 0 or 1.
    let h = ((u64::from_be_bytes(word) >> 11) as f64 + 0.5) / (1u64 << 53) as f64;
    -(1.0 / cost.max(1e-6)) / h.ln()
}

/// One server offered to a viewer (and, as a pathway, in the Steering Manifest).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Offered {
    /// Node id (the PATHWAY-ID; [`CDN`] for the CDN); empty for a static peer (`playback.peers`).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub node: String,
    /// Its base URL, e.g. `http://edge-1:8080`; the player appends `/hls/{channel}/master.m3u8`.
    pub base_url: String,
}

/// One viewer to place.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Request<'a> {
    /// The channel.
    pub channel: &'a str,
    /// The client's region, when its address is in the region table.
    pub region: Option<&'a str>,
    /// A node known to hold the channel though its last report does not say so yet (the node
    /// answering, which just looked in its own store).
    pub also_held_by: Option<&'a str>,
    /// A holder retired from the channel as the tree shrinks ([`crate::shrink`]): not offered.
    pub retired: Option<&'a str>,
}

impl<'a> Request<'a> {
    /// A viewer of `channel` in `region`.
    pub fn new(channel: &'a str, region: Option<&'a str>) -> Self {
        Request { channel, region, also_held_by: None, retired: None }
    }
}

/// Ranks `view` (live nodes' last reports) for the viewer `request`. `placed(node,
/// reported_at_ms)` is how many viewers were placed on the node since that report.
pub fn rank(view: &[NodeReport], request: &Request<'_>, placed: impl Fn(&str, u64) -> u64, config: &UsherConfig) -> Decision {
    let (channel, region) = (request.channel, request.region);
    let holds = |n: &NodeReport| n.held(channel).is_some() || request.also_held_by == Some(n.info.id.as_str());
    let live = view.iter().any(holds);
    let region_served = region.is_some_and(|r| view.iter().any(|n| n.info.region == r && n.info.roles.relay && !n.at_capacity(placed(&n.info.id, n.reported_at_ms))));
    let mut scores: Vec<Score> = view
        .iter()
        .map(|n| {
            let placed_since_report = placed(&n.info.id, n.reported_at_ms);
            let excluded = if !n.info.roles.relay {
                Some("no_relay_role")
            } else if n.at_capacity(placed_since_report) {
                Some("full")
            } else if request.retired == Some(n.info.id.as_str()) {
                Some("retired")
            } else {
                None
            };
            Score {
                node: n.info.id.clone(),
                excluded,
                in_region: region_served && region == Some(n.info.region.as_str()),
                holder: holds(n),
                load: n.load_fraction(placed_since_report),
                placed_since_report,
                rendezvous: rendezvous(channel, &n.info.id, n.info.cost),
                above_bound: false,
                rank: None,
            }
        })
        .collect();
    let offered: Vec<usize> = (0..scores.len()).filter(|&i| scores[i].excluded.is_none()).collect();
    if !offered.is_empty() {
        let mean = offered.iter().map(|&i| scores[i].load).sum::<f64>() / offered.len() as f64;
        for &i in &offered {
            scores[i].above_bound = !scores[i].holder && scores[i].load > config.bounded_load * mean + BOUND_SLACK;
        }
    }
    let tier = |s: &Score| match (s.holder, s.load < config.fill_target) {
        (true, true) => 0,
        (false, _) => 1,
        (true, false) => 2,
    };
    let bucket = |s: &Score| (s.load * 10.0).floor().min(10.0) as u32;
    let mut order = offered;
    order.sort_by(|&a, &b| {
        let (sa, sb) = (&scores[a], &scores[b]);
        let (ta, tb) = (tier(sa), tier(sb));
        sb.in_region
            .cmp(&sa.in_region)
            .then(ta.cmp(&tb))
            .then_with(|| match ta {
                1 => sa.above_bound.cmp(&sb.above_bound),
                _ => bucket(sa).cmp(&bucket(sb)).then(view[a].info.cost.total_cmp(&view[b].info.cost)),
            })
            .then(sb.rendezvous.partial_cmp(&sa.rendezvous).unwrap_or(Ordering::Equal))
    });
    for (r, &i) in order.iter().enumerate() {
        scores[i].rank = Some(r);
    }
    // Spill when every node that may take the viewer (in its region, if served) is at or above
    // the overflow load: the relays fill up before the CDN takes anyone.
    let spill = config.cdn_overflow.is_some_and(|load| order.iter().filter(|&&i| scores[i].in_region || !region_served).all(|&i| scores[i].load >= load));
    let outcome = match order.first() {
        _ if !live => Outcome::NotLive,
        _ if spill => Outcome::Cdn,
        None => Outcome::NoCapacity,
        Some(&i) if scores[i].holder => Outcome::Holder,
        Some(_) => Outcome::NewHolder,
    };
    let mut candidates: Vec<String> = Vec::new();
    if live {
        if spill {
            candidates.push(CDN.to_string());
        }
        candidates.extend(order.iter().map(|&i| scores[i].node.clone()));
        candidates.truncate(config.candidates.clamp(1, 8));
    }
    Decision { outcome, candidates, scores }
}

/// The node to warm for the channel of `decision` ahead of its viewers (the replication tree
/// grows), if any: when the holders that still take viewers (below the fill target) have less
/// room left, in viewers, than `arrivals_per_s × lookahead_s`, the best-ranked offered node that
/// does not hold the channel yet. `view` gives capacities.
pub fn grow(decision: &Decision, view: &[NodeReport], arrivals_per_s: f64, lookahead_s: f64, config: &UsherConfig) -> Option<String> {
    if decision.outcome == Outcome::NotLive || lookahead_s <= 0.0 {
        return None;
    }
    let capacity = |id: &str| view.iter().find(|n| n.info.id == id).map_or(0.0, |n| n.info.capacity_viewers as f64);
    let offered = decision.scores.iter().filter(|s| s.excluded.is_none());
    let room: f64 = offered.clone().filter(|s| s.holder && s.load < config.fill_target).map(|s| (config.fill_target - s.load) * capacity(&s.node)).sum();
    if room >= arrivals_per_s * lookahead_s {
        return None;
    }
    offered.filter(|s| !s.holder && s.rank.is_some()).min_by_key(|s| s.rank).map(|s| s.node.clone())
}

/// Viewer arrivals per channel (placements), for the tree's growth: how many per second over the
/// last [`ARRIVAL_WINDOW_MS`].
#[derive(Debug, Default)]
pub struct Arrivals {
    seen: Mutex<HashMap<String, VecDeque<u64>>>,
}

/// Window over which arrivals are counted, ms.
pub const ARRIVAL_WINDOW_MS: u64 = 5_000;

impl Arrivals {
    /// Records a viewer of `channel` placed at `now_ms`; returns the channel's arrivals per second.
    pub fn record(&self, channel: &str, now_ms: u64) -> f64 {
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        let q = match seen.get_mut(channel) {
            Some(q) => q,
            None => seen.entry(channel.to_string()).or_default(),
        };
        q.push_back(now_ms);
        while q.front().is_some_and(|&t| t + ARRIVAL_WINDOW_MS < now_ms) {
            q.pop_front();
        }
        q.len() as f64 * 1000.0 / ARRIVAL_WINDOW_MS as f64
    }

    /// Forgets channels with no arrival in the window.
    pub fn prune(&self, now_ms: u64) {
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        seen.retain(|_, q| q.back().is_some_and(|&t| t + ARRIVAL_WINDOW_MS >= now_ms));
    }
}

/// Viewers this Usher placed on each node recently, so that it does not overfill a node between
/// two of its reports. Entries older than 10 s are forgotten (a report covers them by then).
#[derive(Debug, Default)]
pub struct Placements {
    placed: Mutex<HashMap<String, VecDeque<u64>>>,
}

/// How long a placement is remembered, ms.
const PLACEMENT_MEMORY_MS: u64 = 10_000;

impl Placements {
    /// Records a viewer placed on `node` at `now_ms` (Unix ms).
    pub fn record(&self, node: &str, now_ms: u64) {
        let mut placed = self.placed.lock().unwrap_or_else(|e| e.into_inner());
        let q = match placed.get_mut(node) {
            Some(q) => q,
            None => placed.entry(node.to_string()).or_default(),
        };
        while q.front().is_some_and(|&t| t + PLACEMENT_MEMORY_MS < now_ms) {
            q.pop_front();
        }
        q.push_back(now_ms);
    }

    /// Viewers placed on `node` after `since_ms` (a report's time).
    pub fn since(&self, node: &str, since_ms: u64) -> u64 {
        let placed = self.placed.lock().unwrap_or_else(|e| e.into_inner());
        placed.get(node).map_or(0, |q| q.iter().rev().take_while(|&&t| t > since_ms).count() as u64)
    }

    /// Forgets nodes with no placement in the memory window (call now and then).
    pub fn prune(&self, now_ms: u64) {
        let mut placed = self.placed.lock().unwrap_or_else(|e| e.into_inner());
        placed.retain(|_, q| q.back().is_some_and(|&t| t + PLACEMENT_MEMORY_MS >= now_ms));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node::tests::node;

    fn none(_: &str, _: u64) -> u64 {
        0
    }

    #[test]
    fn holders_with_headroom_first_then_rendezvous() {
        let view = vec![node("a", "eu", 10, 100, &[]), node("b", "eu", 50, 100, &["demo"]), node("c", "eu", 10, 100, &[])];
        let d = rank(&view, &Request::new("demo", None), none, &UsherConfig::default());
        assert_eq!(d.outcome, Outcome::Holder);
        assert_eq!(d.candidates[0], "b");
        assert_eq!(d.candidates.len(), 3);
        // The two others follow in rendezvous order.
        let (ra, rc) = (rendezvous("demo", "a", 1.0), rendezvous("demo", "c", 1.0));
        assert_eq!(d.candidates[1], if ra > rc { "a" } else { "c" });
        // Not live anywhere: no candidates.
        let d = rank(&view, &Request::new("other", None), none, &UsherConfig::default());
        assert_eq!(d.outcome, Outcome::NotLive);
        assert!(d.candidates.is_empty());
    }

    #[test]
    fn never_offers_full_or_origin_only_nodes() {
        let mut origin = node("origin", "eu", 0, 100, &["demo"]);
        origin.info.roles.relay = false;
        let full = node("f", "eu", 100, 100, &["demo"]);
        let almost = node("g", "eu", 98, 100, &["demo"]);
        let view = vec![origin, full, almost];
        let d = rank(&view, &Request::new("demo", None), none, &UsherConfig::default());
        assert_eq!(d.candidates, vec!["g"]);
        assert_eq!(d.scores.iter().map(|s| s.excluded).collect::<Vec<_>>(), vec![Some("no_relay_role"), Some("full"), None]);
        // Two viewers placed on g since its report fill it.
        let d = rank(&view, &Request::new("demo", None), |n, _| if n == "g" { 2 } else { 0 }, &UsherConfig::default());
        assert_eq!(d.outcome, Outcome::NoCapacity);
        assert!(d.candidates.is_empty());
    }

    #[test]
    fn locality_before_holding() {
        let view = vec![node("eu1", "eu", 0, 100, &["demo"]), node("us1", "us", 0, 100, &[]), node("us2", "us", 0, 100, &[])];
        let d = rank(&view, &Request::new("demo", Some("us")), none, &UsherConfig::default());
        assert_eq!(d.outcome, Outcome::NewHolder);
        assert!(d.candidates[0].starts_with("us") && d.candidates[1].starts_with("us"));
        assert_eq!(d.candidates[2], "eu1");
        // A region with no node that may serve: everyone is equal on locality.
        let d = rank(&view, &Request::new("demo", Some("asia")), none, &UsherConfig::default());
        assert_eq!(d.candidates[0], "eu1");
        // A region whose only node is full counts as unserved.
        let view = vec![node("eu1", "eu", 0, 100, &["demo"]), node("us1", "us", 100, 100, &[])];
        assert_eq!(rank(&view, &Request::new("demo", Some("us")), none, &UsherConfig::default()).candidates, vec!["eu1"]);
    }

    #[test]
    fn full_holders_after_fresh_nodes_and_load_steps() {
        let view = vec![node("hot", "eu", 95, 100, &["demo"]), node("cool", "eu", 30, 100, &["demo"]), node("new", "eu", 0, 100, &[])];
        let d = rank(&view, &Request::new("demo", None), none, &UsherConfig::default());
        assert_eq!(d.candidates, vec!["cool", "new", "hot"]);
    }

    #[test]
    fn rendezvous_spreads_channels_agrees_and_respects_bounds_and_cost() {
        let view: Vec<NodeReport> = (0..4).map(|i| node(&format!("n{i}"), "eu", 0, 1000, &["x"])).collect();
        // Holding "x" everywhere makes every channel live; count the first choice of 400 others.
        let mut firsts: HashMap<String, usize> = HashMap::new();
        for c in 0..400 {
            let mut v = view.clone();
            for n in &mut v {
                n.channels.clear();
            }
            v[0].channels.push(crate::node::HeldChannel { channel: format!("c{c}"), renditions: vec![], origin: true, live: true, viewers: 0, started_at_ms: 0, upstream: None });
            v[0].info.roles.relay = false;
            let d = rank(&v, &Request::new(&format!("c{c}"), None), none, &UsherConfig::default());
            // Two runs (two Usher replicas) agree.
            assert_eq!(d, rank(&v, &Request::new(&format!("c{c}"), None), none, &UsherConfig::default()));
            *firsts.entry(d.candidates[0].clone()).or_default() += 1;
        }
        assert_eq!(firsts.len(), 3, "{firsts:?}");
        assert!(firsts.values().all(|&n| (90..=180).contains(&n)), "spread: {firsts:?}");
        // Bounded load: a loaded node is skipped for new channels even where it hashes first.
        let mut v: Vec<NodeReport> = (0..3).map(|i| node(&format!("n{i}"), "eu", 0, 1000, &[])).collect();
        let mut origin = node("o", "eu", 0, 10, &["c"]);
        origin.info.roles.relay = false;
        v.push(origin);
        let first = rank(&v, &Request::new("c", None), none, &UsherConfig::default()).candidates[0].clone();
        let i = v.iter().position(|n| n.info.id == first).expect("node");
        v[i].load.viewers = 600;
        let d = rank(&v, &Request::new("c", None), none, &UsherConfig::default());
        assert_ne!(d.candidates[0], first);
        assert_eq!(d.candidates.last(), Some(&first));
        // A cheaper node wins more channels.
        let mut v: Vec<NodeReport> = (0..2).map(|i| node(&format!("n{i}"), "eu", 0, 1000, &[])).collect();
        v[1].info.cost = 4.0;
        let mut origin = node("o", "eu", 0, 10, &[]);
        origin.info.roles.relay = false;
        v.push(origin);
        let mut cheap = 0;
        for c in 0..200 {
            v[2].channels = vec![crate::node::HeldChannel { channel: format!("c{c}"), renditions: vec![], origin: true, live: true, viewers: 0, started_at_ms: 0, upstream: None }];
            if rank(&v, &Request::new(&format!("c{c}"), None), none, &UsherConfig::default()).candidates[0] == "n0" {
                cheap += 1;
            }
        }
        assert!(cheap > 130, "cheap node won {cheap} of 200");
    }

    #[test]
    fn overflow_to_the_cdn() {
        let config = UsherConfig { cdn_overflow: Some(0.8), ..UsherConfig::default() };
        let view = vec![node("a", "eu", 50, 100, &["demo"]), node("b", "eu", 85, 100, &[])];
        let d = rank(&view, &Request::new("demo", None), none, &config);
        assert_eq!((d.outcome, d.candidates.clone()), (Outcome::Holder, vec!["a".to_string(), "b".to_string()]));
        // 30 viewers placed on a since its report: both nodes at or above 0.8.
        let d = rank(&view, &Request::new("demo", None), |n, _| if n == "a" { 30 } else { 0 }, &config);
        assert_eq!((d.outcome, d.candidates), (Outcome::Cdn, vec![CDN.to_string(), "a".to_string(), "b".to_string()]));
        // One node below the overflow load keeps the CDN out, even when it is not ranked first.
        let view = vec![node("a", "eu", 85, 100, &["demo"]), node("b", "eu", 10, 100, &[])];
        assert_eq!(rank(&view, &Request::new("demo", None), none, &config).outcome, Outcome::Holder);
        // Only the client's region counts when it is served.
        let view = vec![node("a", "eu", 85, 100, &["demo"]), node("b", "us", 10, 100, &[])];
        assert_eq!(rank(&view, &Request::new("demo", Some("eu")), none, &config).outcome, Outcome::Cdn);
        // Every node full: the CDN alone.
        let full = vec![node("a", "eu", 100, 100, &["demo"])];
        let d = rank(&full, &Request::new("demo", None), none, &config);
        assert_eq!((d.outcome, d.candidates), (Outcome::Cdn, vec![CDN.to_string()]));
        // Not live: not even the CDN.
        assert!(rank(&full, &Request::new("other", None), none, &config).candidates.is_empty());
    }

    #[test]
    fn the_answering_node_counts_as_a_holder() {
        let view = vec![node("a", "eu", 0, 100, &[]), node("b", "eu", 0, 100, &[])];
        assert_eq!(rank(&view, &Request::new("demo", None), none, &UsherConfig::default()).outcome, Outcome::NotLive);
        let d = rank(&view, &Request { also_held_by: Some("b"), ..Request::new("demo", None) }, none, &UsherConfig::default());
        assert_eq!((d.outcome, d.candidates[0].as_str()), (Outcome::Holder, "b"));
    }

    #[test]
    fn the_tree_grows_when_arrivals_outrun_the_holders_room() {
        let config = UsherConfig::default();
        // One holder at 50 of 100 (room 40 up to the 0.9 fill target), two other nodes.
        let view = vec![node("h", "eu", 50, 100, &["demo"]), node("a", "eu", 0, 100, &[]), node("b", "eu", 0, 100, &[])];
        let d = rank(&view, &Request::new("demo", None), none, &config);
        assert_eq!(grow(&d, &view, 5.0, 5.0, &config), None, "25 arrivals expected, room for 40");
        let next = grow(&d, &view, 10.0, 5.0, &config).expect("50 expected: grow");
        assert_eq!(next, d.candidates[1], "the best-ranked non-holder");
        assert_eq!(grow(&d, &view, 10.0, 0.0, &config), None, "growth off");
        assert_eq!(grow(&rank(&view, &Request::new("other", None), none, &config), &view, 100.0, 5.0, &config), None, "not live");
        let arrivals = Arrivals::default();
        for t in 0..10 {
            arrivals.record("demo", 1000 + t * 100);
        }
        assert!((arrivals.record("demo", 2000) - 11.0 / 5.0).abs() < 1e-9);
        assert!((arrivals.record("demo", 20_000) - 0.2).abs() < 1e-9, "old arrivals leave the window");
        arrivals.prune(60_000);
        assert!((arrivals.record("demo", 60_000) - 0.2).abs() < 1e-9);
    }

    #[test]
    fn placements_count_since_a_report() {
        let p = Placements::default();
        p.record("a", 1000);
        p.record("a", 2000);
        p.record("a", 3000);
        assert_eq!(p.since("a", 1500), 2);
        assert_eq!(p.since("a", 0), 3);
        assert_eq!(p.since("b", 0), 0);
        p.record("a", 20_000);
        assert_eq!(p.since("a", 0), 1, "old placements are forgotten");
        p.prune(40_000);
        assert_eq!(p.since("a", 0), 0);
    }
}
