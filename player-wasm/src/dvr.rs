//! Seeking back into a live stream's DVR window (an OnAir server's `/hls/{channel}/dvr.m3u8`:
//! the live playlist with the recorded segments before its RAM window) and back to live: which
//! playlist to load and where to go.

/// The DVR Multivariant Playlist of an OnAir live one: `…/hls/{channel}/master.m3u8` →
/// `…/hls/{channel}/dvr.m3u8`, with any `/t/{token}` path prefix and query kept. `None` for a
/// URL of another shape (another server, or already the DVR one).
pub fn dvr_url(master_url: &str) -> Option<String> {
    swap(master_url, "/master.m3u8", "/dvr.m3u8")
}

/// The live Multivariant Playlist of a DVR one (the inverse of [`dvr_url`]).
pub fn live_url(dvr_url: &str) -> Option<String> {
    swap(dvr_url, "/dvr.m3u8", "/master.m3u8")
}

/// True for an OnAir DVR Multivariant or Media Playlist URL.
pub fn is_dvr(url: &str) -> bool {
    url.split(['?', '#']).next().is_some_and(|p| p.ends_with("/dvr.m3u8"))
}

fn swap(url: &str, from: &str, to: &str) -> Option<String> {
    let (path, rest) = url.find(['?', '#']).map_or((url, ""), |i| url.split_at(i));
    path.contains("/hls/").then_some(())?;
    path.strip_suffix(from).map(|p| format!("{p}{to}{rest}"))
}

/// Where `seekBack(back_s)` goes, wall-clock ms: `back_s` seconds behind the live edge
/// (`edge_ms`), but not before the oldest media of the window (`window_start_ms`, when known).
pub fn seek_target_ms(edge_ms: f64, back_s: f64, window_start_ms: Option<f64>) -> f64 {
    let at = edge_ms - back_s.max(0.0) * 1000.0;
    window_start_ms.map_or(at, |start| at.max(start))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn playlist_urls() {
        assert_eq!(dvr_url("http://a:8080/t/abc.def/hls/demo/master.m3u8").as_deref(), Some("http://a:8080/t/abc.def/hls/demo/dvr.m3u8"));
        assert_eq!(dvr_url("/hls/demo/master.m3u8?x=1").as_deref(), Some("/hls/demo/dvr.m3u8?x=1"));
        assert_eq!(dvr_url("http://cdn/live/demo.m3u8"), None);
        assert_eq!(dvr_url("http://a/hls/demo/dvr.m3u8"), None);
        assert_eq!(live_url("http://a/hls/demo/dvr.m3u8").as_deref(), Some("http://a/hls/demo/master.m3u8"));
        assert!(is_dvr("http://a/hls/demo/source/dvr.m3u8?_HLS_msn=3") && !is_dvr("http://a/hls/demo/source/index.m3u8"));
    }

    #[test]
    fn seek_targets() {
        assert_eq!(seek_target_ms(100_000.0, 30.0, None), 70_000.0);
        assert_eq!(seek_target_ms(100_000.0, 30.0, Some(80_000.0)), 80_000.0, "not before the window");
        assert_eq!(seek_target_ms(100_000.0, -5.0, Some(0.0)), 100_000.0);
    }
}
