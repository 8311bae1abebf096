//! Server selection: rank the candidate servers the playback API returned by what probes saw,
//! and decide when the current one must be left.

/// What probing one candidate found.
#[derive(Debug, Clone, PartialEq)]
pub struct Probe {
    /// Candidate base URL, e.g. `http://edge1.example:8080`.
    pub base_url: String,
    /// Round-trip time of the probe request in ms; `None` when it failed or timed out.
    pub rtt_ms: Option<f64>,
    /// True when the candidate answered the channel's Multivariant Playlist with 200.
    pub has_stream: bool,
    /// Wall-clock ms (PROGRAM-DATE-TIME based) of its live edge, when a Media Playlist was read.
    pub live_edge_ms: Option<f64>,
}

/// A candidate whose live edge is this far (ms) behind the freshest one counts as lagging.
pub const LAG_MS: f64 = 1500.0;

/// Candidates that can serve, best first: those with the stream, not lagging, by round-trip time.
pub fn rank(probes: &[Probe]) -> Vec<usize> {
    let freshest = probes.iter().filter_map(|p| p.live_edge_ms).fold(f64::MIN, f64::max);
    let mut ok: Vec<usize> = (0..probes.len()).filter(|&i| probes[i].has_stream && probes[i].rtt_ms.is_some()).collect();
    let key = |i: usize| {
        let p = &probes[i];
        let lagging = p.live_edge_ms.is_some_and(|e| freshest - e > LAG_MS);
        (lagging, p.rtt_ms.unwrap_or(f64::MAX))
    };
    ok.sort_by(|&a, &b| key(a).partial_cmp(&key(b)).unwrap_or(std::cmp::Ordering::Equal));
    ok
}

/// True when the current server's live edge lags the best other candidate's by more than [`LAG_MS`].
pub fn lags(current_edge_ms: f64, others: &[Probe]) -> bool {
    others.iter().filter(|p| p.has_stream).filter_map(|p| p.live_edge_ms).any(|e| e - current_edge_ms > LAG_MS)
}

/// Counts request failures on the current server and says when to fail over: after
/// `max_errors` consecutive failures (network errors, timeouts, 5xx, a vanished stream).
#[derive(Debug, Clone)]
pub struct Health {
    consecutive: u32,
    max_errors: u32,
}

impl Health {
    /// A tracker that fails over after `max_errors` consecutive failures.
    pub fn new(max_errors: u32) -> Self {
        Health { consecutive: 0, max_errors }
    }

    /// A request succeeded.
    pub fn ok(&mut self) {
        self.consecutive = 0;
    }

    /// A request failed; returns true when it is time to move to another server.
    pub fn failed(&mut self) -> bool {
        self.consecutive += 1;
        self.consecutive >= self.max_errors
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn probe(url: &str, rtt: Option<f64>, has: bool, edge: Option<f64>) -> Probe {
        Probe { base_url: url.into(), rtt_ms: rtt, has_stream: has, live_edge_ms: edge }
    }

    #[test]
    fn ranks_by_stream_lag_and_rtt() {
        let probes = [
            probe("a", Some(5.0), true, Some(10_000.0)),
            probe("b", Some(1.0), false, None),
            probe("c", None, true, None),
            probe("d", Some(9.0), true, Some(10_100.0)),
            probe("e", Some(2.0), true, Some(7_000.0)),
        ];
        assert_eq!(rank(&probes), vec![0, 3, 4]);
        assert!(lags(7_000.0, &probes[..1]));
        assert!(!lags(9_000.0, &probes[..1]));
    }

    #[test]
    fn health_fails_over_after_consecutive_errors() {
        let mut h = Health::new(2);
        assert!(!h.failed());
        h.ok();
        assert!(!h.failed());
        assert!(h.failed());
    }
}
