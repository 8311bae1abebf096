//! Where a client is: its address (from the socket, or from `X-Forwarded-For` when the socket's
//! peer is a trusted proxy) and the region of that address (a CIDR → region table from the
//! configuration, longest prefix first).

use std::net::IpAddr;

use ipnet::IpNet;

/// CIDR → region, matched by longest prefix.
#[derive(Debug, Clone, Default)]
pub struct RegionTable {
    /// Sorted by prefix length, longest first.
    entries: Vec<(IpNet, String)>,
}

impl RegionTable {
    /// A table from `(network, region)` pairs in any order.
    pub fn new(entries: impl IntoIterator<Item = (IpNet, String)>) -> Self {
        let mut entries: Vec<(IpNet, String)> = entries.into_iter().collect();
        entries.sort_by_key(|e| std::cmp::Reverse(e.0.prefix_len()));
        RegionTable { entries }
    }

    /// The region of `ip` (IPv4-mapped IPv6 counts as IPv4), or `None` when no network holds it.
    pub fn region(&self, ip: IpAddr) -> Option<&str> {
        let ip = ip.to_canonical();
        self.entries.iter().find(|(net, _)| net.contains(&ip)).map(|(_, r)| r.as_str())
    }

    /// True when the table is empty (no locality).
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// The client's address: `peer` itself, unless `peer` is in `trusted` (a CDN, a load balancer),
/// in which case the rightmost address of `X-Forwarded-For` (`forwarded`, the header values in
/// order) that is not itself trusted; the leftmost entries are the client's own claim and are
/// believed only through a chain of trusted proxies. Unparseable entries end the walk at the
/// last trusted hop.
pub fn client_ip<'a>(peer: IpAddr, forwarded: impl IntoIterator<Item = &'a str>, trusted: &[IpNet]) -> IpAddr {
    let is_trusted = |ip: IpAddr| trusted.iter().any(|n| n.contains(&ip.to_canonical()));
    let peer = peer.to_canonical();
    if !is_trusted(peer) {
        return peer;
    }
    let hops: Vec<&str> = forwarded.into_iter().flat_map(|v| v.split(',')).map(str::trim).filter(|s| !s.is_empty()).collect();
    let mut client = peer;
    for hop in hops.iter().rev() {
        let Ok(ip) = hop.parse::<IpAddr>() else { break };
        client = ip.to_canonical();
        if !is_trusted(client) {
            break;
        }
    }
    client
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    fn nets(list: &[&str]) -> Vec<IpNet> {
        list.iter().map(|n| n.parse().expect("cidr")).collect()
    }

    #[test]
    fn longest_prefix_wins() {
        let t = RegionTable::new([("10.0.0.0/8".parse().expect("net"), "eu".to_string()), ("10.1.0.0/16".parse().expect("net"), "us".to_string())]);
        assert_eq!(t.region(ip("10.1.2.3")), Some("us"));
        assert_eq!(t.region(ip("10.2.2.3")), Some("eu"));
        assert_eq!(t.region(ip("::ffff:10.1.0.1")), Some("us"));
        assert_eq!(t.region(ip("192.0.2.1")), None);
        assert!(!t.is_empty() && RegionTable::default().is_empty());
    }

    #[test]
    fn forwarded_for_only_behind_trusted_proxies() {
        let trusted = nets(&["127.0.0.1/32", "10.0.0.0/8"]);
        // An untrusted peer's header is ignored.
        assert_eq!(client_ip(ip("192.0.2.9"), ["1.2.3.4"], &trusted), ip("192.0.2.9"));
        // Behind a trusted proxy: the rightmost untrusted hop.
        assert_eq!(client_ip(ip("127.0.0.1"), ["1.2.3.4, 198.51.100.7"], &trusted), ip("198.51.100.7"));
        // Through two trusted proxies (a CDN, then a load balancer).
        assert_eq!(client_ip(ip("127.0.0.1"), ["198.51.100.7, 10.0.0.5"], &trusted), ip("198.51.100.7"));
        // Header split over several lines counts as one list.
        assert_eq!(client_ip(ip("127.0.0.1"), ["198.51.100.7", "10.0.0.5"], &trusted), ip("198.51.100.7"));
        // A forged leftmost entry cannot skip past an untrusted hop.
        assert_eq!(client_ip(ip("127.0.0.1"), ["10.9.9.9, 203.0.113.1"], &trusted), ip("203.0.113.1"));
        // Garbage stops at the last trusted hop; no header leaves the proxy's own address.
        assert_eq!(client_ip(ip("127.0.0.1"), ["nonsense"], &trusted), ip("127.0.0.1"));
        assert_eq!(client_ip(ip("127.0.0.1"), std::iter::empty::<&str>(), &trusted), ip("127.0.0.1"));
    }
}
