//! Playlists of recorded broadcasts, pure functions of the index rows: a Media Playlist whose
//! segments are byte ranges of chunk files (RFC 8216bis §4.4.4.2 EXT-X-BYTERANGE, §4.4.4.5
//! EXT-X-MAP with BYTERANGE), `EXT-X-PLAYLIST-TYPE:VOD` with EXT-X-ENDLIST once the broadcast
//! ended (`EVENT` while it still records), EXT-X-PROGRAM-DATE-TIME on every segment and
//! EXT-X-DISCONTINUITY where the encoder reconnected or the archive has a gap.

use std::time::{Duration, UNIX_EPOCH};

use onair_hls::{ByteRange, MediaPlaylist, MediaSegment, PlaylistType};

use crate::index::SegmentRow;

/// A chunk file as a playlist names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileRef {
    /// Path relative to the archive directory (the index's `path`).
    pub path: String,
    /// URI of the file relative to the Media Playlist.
    pub uri: String,
    /// Length of its init segment at offset 0.
    pub init_len: u64,
}

/// (peak, average) bits per second over `segments`: the largest segment rate, and all bytes over
/// all time. `(0, 0)` without segments.
pub fn bitrate(segments: &[SegmentRow]) -> (u64, u64) {
    let rate = |bytes: u64, us: i64| if us <= 0 { 0.0 } else { bytes as f64 * 8.0 * 1e6 / us as f64 };
    let peak = segments.iter().map(|s| rate(s.length, s.duration_us)).fold(0.0, f64::max);
    let total = rate(segments.iter().map(|s| s.length).sum(), segments.iter().map(|s| s.duration_us).sum());
    (peak.ceil() as u64, total.ceil() as u64)
}

/// The Media Playlist of one rendition's `segments` (in Media Sequence order), each in the file
/// `file(path)` names. `ended`: VOD with EXT-X-ENDLIST; otherwise EVENT (the recording goes on).
/// Segments whose file is unknown are left out, with a discontinuity where they were.
pub fn media_playlist(segments: &[SegmentRow], ended: bool, file: impl Fn(&str) -> Option<FileRef>) -> String {
    let longest = segments.iter().map(|s| s.duration_us).max().unwrap_or(0);
    let mut listed: Vec<MediaSegment> = Vec::with_capacity(segments.len());
    let mut missing = false;
    for s in segments {
        let Some(f) = file(&s.path) else {
            missing = true;
            continue;
        };
        listed.push(MediaSegment {
            discontinuity: !listed.is_empty() && (s.discontinuity || s.gap_before || missing),
            init_uri: f.uri.clone(),
            init_range: Some(ByteRange { length: f.init_len, offset: 0 }),
            program_date_time: Some(UNIX_EPOCH + Duration::from_millis(s.pdt_ms.max(0) as u64)),
            duration: s.duration_us as f64 / 1e6,
            uri: Some(f.uri),
            byte_range: Some(ByteRange { length: s.length, offset: s.offset }),
            parts: Vec::new(),
        });
        missing = false;
    }
    let playlist = MediaPlaylist {
        target_duration: ((longest as f64 / 1e6).round() as u32).max(1),
        media_sequence: 0,
        discontinuity_sequence: 0,
        playlist_type: Some(if ended { PlaylistType::Vod } else { PlaylistType::Event }),
        part_target: None,
        server_control: None,
        map_uri: listed.first().map(|s| s.init_uri.clone()).unwrap_or_default(),
        skipped_segments: 0,
        segments: listed,
        preload_hint: None,
        rendition_reports: Vec::new(),
        endlist: ended,
    };
    playlist.render()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seg(msn: u64, path: &str, offset: u64, discontinuity: bool) -> SegmentRow {
        SegmentRow { msn, pdt_ms: 1_764_806_400_000 + msn as i64 * 2000, duration_us: 2_000_000, discontinuity, gap_before: false, path: path.into(), offset, length: 1000, parts: vec![(500, 1_000_000), (500, 1_000_000)] }
    }

    #[test]
    fn byte_ranges_maps_and_discontinuities() {
        let segs = [seg(4, "a/4.mp4", 700, false), seg(5, "a/4.mp4", 1800, false), seg(6, "a/6.mp4", 900, true)];
        let file = |p: &str| Some(FileRef { path: p.into(), uri: format!("files/{p}"), init_len: if p == "a/4.mp4" { 650 } else { 850 } });
        let text = media_playlist(&segs, true, file);
        let expect = "#EXTM3U\n#EXT-X-VERSION:6\n#EXT-X-TARGETDURATION:2\n#EXT-X-MEDIA-SEQUENCE:0\n#EXT-X-PLAYLIST-TYPE:VOD\n#EXT-X-INDEPENDENT-SEGMENTS\n\
#EXT-X-MAP:URI=\"files/a/4.mp4\",BYTERANGE=\"650@0\"\n#EXT-X-PROGRAM-DATE-TIME:2025-12-04T00:00:08.000Z\n#EXTINF:2.00000,\n#EXT-X-BYTERANGE:1000@700\nfiles/a/4.mp4\n\
#EXT-X-PROGRAM-DATE-TIME:2025-12-04T00:00:10.000Z\n#EXTINF:2.00000,\n#EXT-X-BYTERANGE:1000@1800\nfiles/a/4.mp4\n\
#EXT-X-DISCONTINUITY\n#EXT-X-MAP:URI=\"files/a/6.mp4\",BYTERANGE=\"850@0\"\n#EXT-X-PROGRAM-DATE-TIME:2025-12-04T00:00:12.000Z\n#EXTINF:2.00000,\n#EXT-X-BYTERANGE:1000@900\nfiles/a/6.mp4\n\
#EXT-X-ENDLIST\n";
        assert_eq!(text, expect);
        let open = media_playlist(&segs, false, file);
        assert!(open.contains("PLAYLIST-TYPE:EVENT") && !open.contains("ENDLIST"));
        assert_eq!(bitrate(&segs), (4000, 4000));
    }
}
