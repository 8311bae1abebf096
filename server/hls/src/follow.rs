//! The sans-IO playlist follower: one rendition's Media Playlist as a client following it sees it
//! (the OnAir player's loader, and the relay pulling from an upstream): where each part lies in
//! time, where to start, what to fetch next (a part, the Preload Hint with a parallel blocking
//! reload, a whole segment, or a reload), and how a delta update merges into the previous playlist.
//! The caller does the fetching and feeds each playlist back with [`TrackPlaylist::update`].
//!
//! Positions are `(Media Sequence Number, part index within that segment)`. Times are wall-clock
//! milliseconds from EXT-X-PROGRAM-DATE-TIME (RFC 8216bis §4.4.4.6), extrapolated over segments
//! that carry none; a playlist without any PROGRAM-DATE-TIME counts from 0.

use crate::{Directives, MediaPlaylist, MediaSegment};
use std::time::UNIX_EPOCH;

/// A place in a rendition: a segment's MSN and a part index in it (0 = the segment's start).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Position {
    /// Media Sequence Number (§4.4.3.2).
    pub msn: u64,
    /// Part index within the segment.
    pub part: u32,
}

/// What the loader should do next for a track.
#[derive(Debug, Clone, PartialEq)]
pub enum Next {
    /// Fetch a whole (complete) segment: catching up, or a server that lists no parts there.
    Segment {
        /// The segment.
        msn: u64,
        /// Its URI, relative to the Media Playlist.
        uri: String,
        /// The bytes of `uri` it is (a `Range` request), when not the whole resource.
        range: Option<crate::ByteRange>,
    },
    /// Fetch a listed Partial Segment.
    Part {
        /// The part.
        pos: Position,
        /// Its URI.
        uri: String,
    },
    /// The wanted part is the Preload Hint (§4.4.5.3): fetch it now, and reload the playlist with
    /// these directives in parallel (§6.2.5.2) to learn its duration and the next hint.
    Hint {
        /// The hinted part.
        pos: Position,
        /// Its URI.
        uri: String,
        /// `_HLS_msn` / `_HLS_part` for the parallel blocking reload.
        reload: Directives,
    },
    /// Nothing to fetch yet: reload the playlist, blocking on these directives when the server
    /// can (CAN-BLOCK-RELOAD), else after about a part (or half a target duration).
    Reload(Directives),
    /// The wanted position is older than the playlist's first segment: start again.
    Behind,
    /// EXT-X-ENDLIST and everything was fetched.
    Ended,
}

/// One part (or a part-less segment) with its time.
#[derive(Debug, Clone, PartialEq)]
pub struct TimedPart {
    /// Where it is.
    pub pos: Position,
    /// Wall-clock start in ms (PROGRAM-DATE-TIME based).
    pub start_ms: f64,
    /// Duration in ms.
    pub duration_ms: f64,
    /// INDEPENDENT=YES, or the start of a segment (EXT-X-INDEPENDENT-SEGMENTS).
    pub independent: bool,
}

/// A merged Media Playlist with the questions the loader asks of it.
#[derive(Debug, Clone)]
pub struct TrackPlaylist {
    /// The playlist, with any EXT-X-SKIP already filled from the previous one.
    pub playlist: MediaPlaylist,
}

/// A delta update (§6.2.5.1) that cannot be merged: the skipped segments were never seen.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("delta update skips segment {0}, which the previous playlist does not have")]
pub struct MergeError(pub u64);

fn pdt_ms(seg: &MediaSegment) -> Option<f64> {
    seg.program_date_time.and_then(|t| t.duration_since(UNIX_EPOCH).ok()).map(|d| d.as_secs_f64() * 1000.0)
}

impl TrackPlaylist {
    /// Wraps a full playlist, or merges a delta update into `previous`.
    /// Errors: [`MergeError`] when the delta skips segments `previous` does not hold.
    pub fn update(previous: Option<&TrackPlaylist>, mut new: MediaPlaylist) -> Result<Self, MergeError> {
        if new.skipped_segments > 0 {
            let first = new.media_sequence;
            let Some(prev) = previous else { return Err(MergeError(first)) };
            let mut kept = Vec::with_capacity(new.skipped_segments as usize + new.segments.len());
            for msn in first..first + new.skipped_segments {
                kept.push(prev.segment(msn).ok_or(MergeError(msn))?.clone());
            }
            kept.append(&mut new.segments);
            new.segments = kept;
            new.skipped_segments = 0;
        }
        Ok(TrackPlaylist { playlist: new })
    }

    /// MSN of the first listed segment.
    pub fn first_msn(&self) -> u64 {
        self.playlist.media_sequence
    }

    /// MSN of the last listed segment (complete or open); `None` when empty.
    pub fn last_msn(&self) -> Option<u64> {
        (self.playlist.segments.len() as u64).checked_sub(1).map(|n| self.playlist.media_sequence + n)
    }

    /// The segment with this MSN.
    pub fn segment(&self, msn: u64) -> Option<&MediaSegment> {
        let i = msn.checked_sub(self.playlist.media_sequence)?;
        self.playlist.segments.get(usize::try_from(i).ok()?)
    }

    /// True when the server holds playlist requests (CAN-BLOCK-RELOAD=YES).
    pub fn can_block(&self) -> bool {
        self.playlist.server_control.is_some_and(|s| s.can_block_reload)
    }

    /// The Discontinuity Sequence Number of segment `msn` (§4.4.3.3): EXT-X-DISCONTINUITY-SEQUENCE
    /// plus the EXT-X-DISCONTINUITY tags up to and including it.
    pub fn discontinuity_sequence(&self, msn: u64) -> u64 {
        let upto = msn.saturating_sub(self.playlist.media_sequence) as usize;
        let tags = self.playlist.segments.iter().take(upto + 1).filter(|s| s.discontinuity).count() as u64;
        self.playlist.discontinuity_sequence + tags
    }

    /// Every part in order with its time. Segments listed without parts count as one part.
    pub fn timed_parts(&self) -> Vec<TimedPart> {
        let mut out = Vec::new();
        let mut clock: Option<f64> = None;
        for (i, seg) in self.playlist.segments.iter().enumerate() {
            let msn = self.playlist.media_sequence + i as u64;
            let mut t = pdt_ms(seg).or(clock).unwrap_or(0.0);
            if seg.parts.is_empty() {
                out.push(TimedPart { pos: Position { msn, part: 0 }, start_ms: t, duration_ms: seg.duration * 1000.0, independent: true });
                t += seg.duration * 1000.0;
            } else {
                let seg_start = t;
                for (j, p) in seg.parts.iter().enumerate() {
                    let independent = p.independent || j == 0;
                    out.push(TimedPart { pos: Position { msn, part: j as u32 }, start_ms: t, duration_ms: p.duration * 1000.0, independent });
                    t += p.duration * 1000.0;
                }
                if seg.uri.is_some() {
                    t = seg_start + seg.duration * 1000.0;
                }
            }
            clock = Some(t);
        }
        out
    }

    /// Wall-clock time (ms) of the end of the newest listed media: the live edge.
    pub fn live_edge_ms(&self) -> Option<f64> {
        self.timed_parts().last().map(|p| p.start_ms + p.duration_ms)
    }

    /// Wall-clock start (ms) of a position, if listed.
    pub fn start_ms(&self, pos: Position) -> Option<f64> {
        let parts = self.timed_parts();
        parts.iter().find(|p| p.pos == pos).map(|p| p.start_ms).or_else(|| {
            // A whole segment fetched as one: its start is its first part's.
            parts.iter().find(|p| p.pos.msn == pos.msn).map(|p| p.start_ms)
        })
    }

    /// Where to start playing `hold_back_ms` behind the live edge: the newest independent part
    /// that starts at least that far back (or the oldest one when the playlist is shorter).
    /// `any_part` treats every part as independent (audio: every AAC frame is a sync sample).
    pub fn start_position(&self, hold_back_ms: f64, any_part: bool) -> Option<Position> {
        let parts = self.timed_parts();
        let edge = parts.last().map(|p| p.start_ms + p.duration_ms)?;
        let eligible = parts.iter().filter(|p| any_part || p.independent);
        let mut best = None;
        for p in eligible {
            if best.is_none() || p.start_ms <= edge - hold_back_ms {
                best = Some(p.pos);
            }
        }
        best
    }

    /// The position whose media covers wall-clock `at_ms`: the newest part (independent only,
    /// unless `any_part`) starting at or before `at_ms + slack_ms`. Used to start the audio track
    /// where the video starts and to continue on another server after a failover.
    pub fn position_at(&self, at_ms: f64, slack_ms: f64, any_part: bool) -> Option<Position> {
        let parts = self.timed_parts();
        let mut best = None;
        for p in parts.iter().filter(|p| any_part || p.independent) {
            if p.start_ms <= at_ms + slack_ms || best.is_none() {
                best = Some(p.pos);
            }
        }
        best
    }

    /// The position after `pos`, given whether `pos` was fetched as a whole segment.
    pub fn after(&self, pos: Position, whole_segment: bool) -> Position {
        if whole_segment {
            return Position { msn: pos.msn + 1, part: 0 };
        }
        let next = Position { msn: pos.msn, part: pos.part + 1 };
        match self.segment(pos.msn) {
            Some(seg) if seg.uri.is_some() && next.part as usize >= seg.parts.len() => Position { msn: pos.msn + 1, part: 0 },
            _ => next,
        }
    }

    /// What to do to get `want`. With `catch_up`, a complete segment wanted from its start is
    /// fetched whole (one request instead of one per part).
    pub fn next(&self, want: Position, catch_up: bool) -> Next {
        let p = &self.playlist;
        if want.msn < p.media_sequence {
            return Next::Behind;
        }
        let newest_complete = p.segments.iter().rposition(|s| s.uri.is_some()).map(|i| p.media_sequence + i as u64);
        if let Some(seg) = self.segment(want.msn) {
            if let Some(uri) = &seg.uri {
                let whole = seg.parts.is_empty() || (catch_up && Some(want.msn) <= newest_complete);
                if want.part == 0 && whole {
                    return Next::Segment { msn: want.msn, uri: uri.clone(), range: seg.byte_range };
                }
            }
            if let Some(part) = seg.parts.get(want.part as usize) {
                return Next::Part { pos: want, uri: part.uri.clone() };
            }
            if seg.uri.is_some() {
                // Past the last part of a complete segment.
                return self.next(Position { msn: want.msn + 1, part: 0 }, catch_up);
            }
            if want.part as usize == seg.parts.len() {
                return self.hint_or_reload(want);
            }
            return Next::Reload(Directives { msn: Some(want.msn), part: Some(want.part), ..Default::default() });
        }
        if p.endlist {
            return Next::Ended;
        }
        // Beyond the list: the next segment's first part may be hinted.
        let after_last = self.last_msn().map_or(want.msn, |m| m + 1);
        if want.msn == after_last && want.part == 0 {
            return self.hint_or_reload(want);
        }
        Next::Reload(Directives { msn: Some(want.msn), part: (want.part > 0 || p.part_target.is_some()).then_some(want.part), ..Default::default() })
    }

    fn hint_or_reload(&self, want: Position) -> Next {
        let p = &self.playlist;
        let reload = Directives {
            msn: Some(want.msn),
            part: p.part_target.is_some().then_some(want.part),
            ..Default::default()
        };
        match &p.preload_hint {
            Some(uri) if !p.endlist => Next::Hint { pos: want, uri: uri.clone(), reload },
            _ => Next::Reload(reload),
        }
    }
}

/// The query string of a playlist request with these directives (RFC 8216bis §6.2.5):
/// `_HLS_msn`, `_HLS_part`, `_HLS_skip=YES` when `skip`. Empty when there are none.
pub fn directive_query(d: &Directives, skip: bool) -> String {
    let mut q = Vec::new();
    if let Some(m) = d.msn {
        q.push(format!("_HLS_msn={m}"));
        if let Some(p) = d.part {
            q.push(format!("_HLS_part={p}"));
        }
    }
    if skip {
        q.push("_HLS_skip=YES".into());
    }
    if q.is_empty() {
        String::new()
    } else {
        format!("?{}", q.join("&"))
    }
}

/// Resolves a playlist-relative URI against the URL of its playlist (RFC 3986 §5.2, for the
/// forms playlists use: absolute URLs, absolute paths and relative paths with `../`).
pub fn resolve(base: &str, uri: &str) -> String {
    if uri.contains("://") {
        return uri.to_string();
    }
    let base = base.split(['?', '#']).next().unwrap_or(base);
    let (origin, path) = match base.find("://").and_then(|s| base[s + 3..].find('/').map(|p| s + 3 + p)) {
        Some(i) => (&base[..i], &base[i..]),
        None => (base, "/"),
    };
    if uri.starts_with('/') {
        return format!("{origin}{uri}");
    }
    let mut segs: Vec<&str> = path.split('/').collect();
    segs.pop();
    for s in uri.split('/') {
        match s {
            ".." => {
                if segs.len() > 1 {
                    segs.pop();
                }
            }
            "." => {}
            s => segs.push(s),
        }
    }
    format!("{origin}{}", segs.join("/"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn playlist(text: &str) -> TrackPlaylist {
        TrackPlaylist::update(None, MediaPlaylist::parse(text).expect("parses")).expect("full playlist")
    }

    const LIVE: &str = "#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXT-X-MEDIA-SEQUENCE:5\n\
#EXT-X-SERVER-CONTROL:CAN-SKIP-UNTIL=12.0,CAN-BLOCK-RELOAD=YES,PART-HOLD-BACK=0.6,HOLD-BACK=6.0\n\
#EXT-X-PART-INF:PART-TARGET=0.2\n#EXT-X-MAP:URI=\"init.mp4\"\n\
#EXT-X-PROGRAM-DATE-TIME:2023-11-14T22:13:20.000Z\n#EXTINF:2.0,\nseg5.m4s\n\
#EXT-X-PART:DURATION=0.2,URI=\"part60.m4s\",INDEPENDENT=YES\n#EXT-X-PART:DURATION=0.2,URI=\"part61.m4s\"\n\
#EXT-X-PART:DURATION=0.2,URI=\"part62.m4s\"\n#EXTINF:0.6,\nseg6.m4s\n\
#EXT-X-PART:DURATION=0.2,URI=\"part63.m4s\",INDEPENDENT=YES\n#EXT-X-PART:DURATION=0.2,URI=\"part64.m4s\"\n\
#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"part65.m4s\"\n";

    const T0: f64 = 1_700_000_000_000.0;

    #[test]
    fn times_and_edge() {
        let p = playlist(LIVE);
        let parts = p.timed_parts();
        assert_eq!(parts.len(), 1 + 3 + 2);
        assert_eq!(parts[0].start_ms, T0);
        assert_eq!(parts[1].start_ms, T0 + 2000.0);
        assert!((parts[5].start_ms - (T0 + 2800.0)).abs() < 1e-6);
        assert!((p.live_edge_ms().expect("edge") - (T0 + 3000.0)).abs() < 1e-6);
        assert_eq!(p.last_msn(), Some(7));
    }

    #[test]
    fn start_is_an_independent_part_far_enough_back() {
        let p = playlist(LIVE);
        // Edge is 3.0 s after seg5's start; 0.6 s back is 2.4 s: newest independent start ≤ 2.4 s is seg6 (2.0 s).
        assert_eq!(p.start_position(600.0, false), Some(Position { msn: 6, part: 0 }));
        // Holding back 0.3 s: seg7's part 0 (2.6 s) is still not ≤ 2.7? 2.6 ≤ 2.7, so seg7.
        assert_eq!(p.start_position(300.0, false), Some(Position { msn: 7, part: 0 }));
        // Audio: any part.
        assert_eq!(p.start_position(600.0, true), Some(Position { msn: 6, part: 2 }));
        // Longer than the playlist: the oldest.
        assert_eq!(p.start_position(60_000.0, false), Some(Position { msn: 5, part: 0 }));
        assert_eq!(p.position_at(T0 + 2450.0, 0.0, true), Some(Position { msn: 6, part: 2 }));
    }

    #[test]
    fn next_walks_segments_parts_and_the_hint() {
        let p = playlist(LIVE);
        assert_eq!(p.next(Position { msn: 4, part: 0 }, false), Next::Behind);
        assert_eq!(p.next(Position { msn: 5, part: 0 }, false), Next::Segment { msn: 5, uri: "seg5.m4s".into(), range: None });
        assert_eq!(p.next(Position { msn: 6, part: 0 }, true), Next::Segment { msn: 6, uri: "seg6.m4s".into(), range: None });
        assert_eq!(p.next(Position { msn: 6, part: 1 }, false), Next::Part { pos: Position { msn: 6, part: 1 }, uri: "part61.m4s".into() });
        assert_eq!(p.next(Position { msn: 6, part: 3 }, false), Next::Part { pos: Position { msn: 7, part: 0 }, uri: "part63.m4s".into() });
        assert_eq!(p.after(Position { msn: 6, part: 2 }, false), Position { msn: 7, part: 0 });
        assert_eq!(p.after(Position { msn: 7, part: 1 }, false), Position { msn: 7, part: 2 });
        assert_eq!(
            p.next(Position { msn: 7, part: 2 }, false),
            Next::Hint {
                pos: Position { msn: 7, part: 2 },
                uri: "part65.m4s".into(),
                reload: Directives { msn: Some(7), part: Some(2), ..Default::default() }
            }
        );
        assert!(matches!(p.next(Position { msn: 7, part: 3 }, false), Next::Reload(d) if d.msn == Some(7) && d.part == Some(3)));
        assert!(matches!(p.next(Position { msn: 9, part: 0 }, false), Next::Reload(d) if d.msn == Some(9)));
    }

    #[test]
    fn delta_updates_merge() {
        let full = playlist(LIVE);
        let delta = "#EXTM3U\n#EXT-X-VERSION:9\n#EXT-X-TARGETDURATION:2\n#EXT-X-MEDIA-SEQUENCE:5\n\
#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,PART-HOLD-BACK=0.6\n#EXT-X-PART-INF:PART-TARGET=0.2\n\
#EXT-X-MAP:URI=\"init.mp4\"\n#EXT-X-SKIP:SKIPPED-SEGMENTS=1\n#EXTINF:0.6,\nseg6.m4s\n#EXTINF:0.6,\nseg7.m4s\n";
        let merged = TrackPlaylist::update(Some(&full), MediaPlaylist::parse(delta).expect("parses")).expect("merges");
        assert_eq!(merged.first_msn(), 5);
        assert_eq!(merged.segment(5).and_then(|s| s.uri.clone()).as_deref(), Some("seg5.m4s"));
        assert_eq!(merged.timed_parts()[0].start_ms, T0);
        assert_eq!(TrackPlaylist::update(None, MediaPlaylist::parse(delta).expect("parses")).err(), Some(MergeError(5)));
    }

    #[test]
    fn discontinuity_sequence_counts_tags() {
        let text = "#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXT-X-MEDIA-SEQUENCE:3\n#EXT-X-DISCONTINUITY-SEQUENCE:2\n\
#EXTINF:2,\na\n#EXT-X-DISCONTINUITY\n#EXTINF:2,\nb\n#EXTINF:2,\nc\n#EXT-X-ENDLIST\n";
        let p = playlist(text);
        assert_eq!([3, 4, 5].map(|m| p.discontinuity_sequence(m)), [2, 3, 3]);
        assert_eq!(p.next(Position { msn: 6, part: 0 }, false), Next::Ended);
    }

    #[test]
    fn uris_resolve() {
        let base = "http://h:8080/hls/demo/source/index.m3u8?_HLS_msn=3";
        assert_eq!(resolve(base, "part1.m4s"), "http://h:8080/hls/demo/source/part1.m4s");
        assert_eq!(resolve(base, "../audio/index.m3u8"), "http://h:8080/hls/demo/audio/index.m3u8");
        assert_eq!(resolve(base, "/x.m3u8"), "http://h:8080/x.m3u8");
        assert_eq!(resolve(base, "https://cdn/x"), "https://cdn/x");
        assert_eq!(directive_query(&Directives { msn: Some(3), part: Some(1), ..Default::default() }, true), "?_HLS_msn=3&_HLS_part=1&_HLS_skip=YES");
    }
}
