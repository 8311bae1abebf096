//! Maps wall-clock time (EXT-X-PROGRAM-DATE-TIME) onto the media element's timeline.
//!
//! Each track's fragments carry their own decode times (`tfdt`, ISO/IEC 14496-12 §8.8.12) that
//! restart at a discontinuity (RFC 8216bis §4.4.4.3) and differ between servers. The player puts
//! everything on one timeline `t` (seconds, the media element's `currentTime`): within a
//! *domain* (one discontinuity sequence on one server) `t = t0 + (pdt − pdt0) / 1000`. When a
//! track enters a domain its SourceBuffer's `timestampOffset` becomes `t(pdt) − tfdt`, so audio
//! and video line up by PROGRAM-DATE-TIME and a new domain starts where the last one ended. The
//! same mapping turns `currentTime` back into a wall-clock time to measure latency.

/// Identifies a domain: a server generation (bumped at each failover) and a Discontinuity
/// Sequence Number on that server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DomainKey {
    /// Which server connection (0, then +1 per failover).
    pub server: u32,
    /// Discontinuity Sequence Number (§4.4.3.3).
    pub discontinuity: u64,
}

#[derive(Debug, Clone, Copy, PartialEq)]
struct Domain {
    key: DomainKey,
    t0: f64,
    pdt0_ms: f64,
}

/// Where the first domain starts on the media timeline (seconds). Not 0: audio may begin a
/// little before video and must not land at negative times.
pub const FIRST_T: f64 = 10.0;

/// The domains seen so far, in timeline order.
#[derive(Debug, Clone, Default)]
pub struct Timeline {
    domains: Vec<Domain>,
}

impl Timeline {
    /// No domain yet.
    pub fn new() -> Self {
        Timeline::default()
    }

    /// Media time of wall-clock `pdt_ms` in domain `key`. A new domain starts at `end_t` (the end
    /// of what is buffered, seconds) or at [`FIRST_T`], anchored at `pdt_ms`.
    pub fn t_of(&mut self, key: DomainKey, pdt_ms: f64, end_t: Option<f64>) -> f64 {
        let d = match self.domains.iter().find(|d| d.key == key) {
            Some(d) => *d,
            None => {
                let d = Domain { key, t0: end_t.unwrap_or(FIRST_T), pdt0_ms: pdt_ms };
                self.domains.push(d);
                d
            }
        };
        d.t0 + (pdt_ms - d.pdt0_ms) / 1000.0
    }

    /// Makes `key` (a new server's domain) share the mapping of `like` (the domain playing now):
    /// both servers stamp PROGRAM-DATE-TIME from the same wall clock, so the media continues.
    pub fn alias(&mut self, key: DomainKey, like: DomainKey) {
        if let Some(d) = self.domains.iter().find(|d| d.key == like).copied() {
            self.domains.retain(|d| d.key != key);
            self.domains.push(Domain { key, ..d });
        }
    }

    /// Wall-clock ms of media time `t`: by the domain that starts last at or before `t`.
    pub fn pdt_at(&self, t: f64) -> Option<f64> {
        self.domains
            .iter()
            .filter(|d| d.t0 <= t)
            .max_by(|a, b| a.t0.total_cmp(&b.t0))
            .map(|d| d.pdt0_ms + (t - d.t0) * 1000.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A0: DomainKey = DomainKey { server: 0, discontinuity: 0 };

    #[test]
    fn maps_both_ways_and_continues_after_a_discontinuity() {
        let mut tl = Timeline::new();
        assert_eq!(tl.t_of(A0, 1_000_000.0, None), FIRST_T);
        assert_eq!(tl.t_of(A0, 1_002_500.0, None), FIRST_T + 2.5);
        assert_eq!(tl.pdt_at(FIRST_T + 1.0), Some(1_001_000.0));
        // The publisher came back 8 s later: the new domain starts where the buffer ends.
        let a1 = DomainKey { server: 0, discontinuity: 1 };
        assert_eq!(tl.t_of(a1, 1_012_000.0, Some(14.0)), 14.0);
        assert_eq!(tl.pdt_at(15.0), Some(1_013_000.0));
        assert_eq!(tl.pdt_at(13.0), Some(1_003_000.0));
        assert_eq!(tl.pdt_at(1.0), None);
    }

    #[test]
    fn a_failover_domain_shares_the_mapping() {
        let mut tl = Timeline::new();
        tl.t_of(A0, 5_000.0, None);
        let b = DomainKey { server: 1, discontinuity: 7 };
        tl.alias(b, A0);
        assert_eq!(tl.t_of(b, 6_000.0, Some(99.0)), FIRST_T + 1.0);
    }
}
