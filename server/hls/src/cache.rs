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
/// `immutable` for successful media (complete parts and segments never change), and for
/// playlists `stale-while-revalidate=0, stale-if-error=0` (RFC 5861): a live playlist past its
/// lifetime is wrong, so a shared cache must not serve it stale while it refetches or when the
/// fetch fails (Varnish, for one, takes its grace period from `stale-while-revalidate`, 10 s
/// otherwise, which would hold a viewer seconds behind the live edge).
pub fn cache_control(response: Response, ok: bool, td: u32) -> String {
    let secs = (max_age(response, ok, td).floor() as u64).max(1);
    match response {
        Response::Media if ok => format!("public, max-age={secs}, immutable"),
        Response::Media => format!("public, max-age={secs}"),
        Response::Playlist | Response::BlockingPlaylist => format!("public, max-age={secs}, stale-while-revalidate=0, stale-if-error=0"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn appendix_b_values() {
        let no_stale = ", stale-while-revalidate=0, stale-if-error=0";
        assert_eq!(cache_control(Response::BlockingPlaylist, true, 2), format!("public, max-age=12{no_stale}"));
        assert_eq!(cache_control(Response::BlockingPlaylist, false, 2), format!("public, max-age=8{no_stale}"));
        assert_eq!(cache_control(Response::Playlist, true, 2), format!("public, max-age=1{no_stale}"));
        assert_eq!(cache_control(Response::Playlist, false, 2), format!("public, max-age=2{no_stale}"));
        assert_eq!(cache_control(Response::Media, true, 2), "public, max-age=12, immutable");
        assert_eq!(cache_control(Response::Media, false, 3), "public, max-age=3");
    }
}
