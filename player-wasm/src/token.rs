//! Playback tokens that expire: when to ask the playback API for a fresh one, and which of the
//! new candidate URLs is the server in use (the token sits in the URL path: `/t/{token}/hls/…`).

/// Longest lead before expiry at which a token is renewed, ms.
const MAX_LEAD_MS: f64 = 60_000.0;
/// Shortest wait before a renewal, ms (an answer that is already expired is not asked again at once).
const MIN_WAIT_MS: f64 = 1_000.0;

/// Wall-clock ms at which to renew a token that expires at `expires_at_ms` (server clock),
/// asked at `now_ms` (server clock): a quarter of its remaining life early, at most a minute,
/// and not sooner than one second from now.
pub fn renew_at_ms(expires_at_ms: f64, now_ms: f64) -> f64 {
    let life = (expires_at_ms - now_ms).max(0.0);
    (expires_at_ms - (life / 4.0).min(MAX_LEAD_MS)).max(now_ms + MIN_WAIT_MS)
}

/// `scheme://host:port` of an absolute URL, if it has one.
fn origin(url: &str) -> Option<&str> {
    let after_scheme = url.find("://")? + 3;
    let end = url[after_scheme..].find('/').map_or(url.len(), |i| after_scheme + i);
    Some(&url[..end])
}

/// Index in `fresh` of the URL on the same server (scheme, host and port) as `current`.
pub fn same_server(current: &str, fresh: &[String]) -> Option<usize> {
    let here = origin(current)?;
    fresh.iter().position(|u| origin(u) == Some(here))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renews_a_quarter_of_the_life_early_at_most_a_minute() {
        // 20 s left: renew 5 s early.
        assert_eq!(renew_at_ms(120_000.0, 100_000.0), 115_000.0);
        // 6 h left: one minute early.
        assert_eq!(renew_at_ms(21_600_000.0, 0.0), 21_540_000.0);
        // Already expired (or a skewed clock): in a second, not in a loop.
        assert_eq!(renew_at_ms(50_000.0, 100_000.0), 101_000.0);
    }

    #[test]
    fn finds_the_server_in_use_among_fresh_urls() {
        let fresh = vec!["http://b:8080/t/new/hls/demo/master.m3u8".to_string(), "http://a:8080/t/new/hls/demo/master.m3u8".to_string()];
        assert_eq!(same_server("http://a:8080/t/old/hls/demo/master.m3u8", &fresh), Some(1));
        assert_eq!(same_server("http://a:9090/t/old/hls/demo/master.m3u8", &fresh), None);
        assert_eq!(same_server("not a url", &fresh), None);
    }
}
