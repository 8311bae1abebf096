//! Cache-Control lifetimes for LL-HLS responses (RFC 8216bis Appendix B, Apple LL-HLS guidance).

/// What a response is, for choosing its lifetime.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Response {
    /// A playlist request carrying `_HLS_msn` (blocking reload).
    BlockingPlaylist,
    /// A playlist request without Delivery Directives.
    Playlist,
    /// A segment, part or init segment.
    Media,
}

/// The `max-age` in seconds for `response` with status success (`ok`) or error, given the target
/// duration `td` in seconds:
/// blocking playlist 6 × TD (404: 4 × TD); non-blocking playlist 0.5 × TD (error: 1 × TD);
/// media 6 × TD (error: 1 × TD).
pub fn max_age(response: Response, ok: bool, td: u32) -> f64 {
    let td = f64::from(td);
    match (response, ok) {
        (Response::BlockingPlaylist, true) => 6.0 * td,
        (Response::BlockingPlaylist, false) => 4.0 * td,
        (Response::Playlist, true) => 0.5 * td,
        (Response::Playlist, false) | (Response::Media, false) => td,
        (Response::Media, true) => 6.0 * td,
    }
}

/// The Cache-Control header value: `max-age` rounded down to whole seconds (at least 1), plus
/// `immutable` for successful media (complete parts and segments never change).
pub fn cache_control(response: Response, ok: bool, td: u32) -> String {
    let secs = (max_age(response, ok, td).floor() as u64).max(1);
    if ok && response == Response::Media {
        format!("public, max-age={secs}, immutable")
    } else {
        format!("public, max-age={secs}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn appendix_b_values() {
        assert_eq!(cache_control(Response::BlockingPlaylist, true, 2), "public, max-age=12");
        assert_eq!(cache_control(Response::BlockingPlaylist, false, 2), "public, max-age=8");
        assert_eq!(cache_control(Response::Playlist, true, 2), "public, max-age=1");
        assert_eq!(cache_control(Response::Playlist, false, 2), "public, max-age=2");
        assert_eq!(cache_control(Response::Media, true, 2), "public, max-age=12, immutable");
        assert_eq!(cache_control(Response::Media, false, 3), "public, max-age=3");
    }
}
