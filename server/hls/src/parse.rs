//! Reading playlists back: the text of RFC 8216bis §4 into the [`crate::playlist`] model.
//!
//! The player (wasm) reads OnAir's playlists and any other LL-HLS server's with this. It keeps
//! what a live client needs: every tag the server writes, EXT-X-PROGRAM-DATE-TIME, and segments
//! without parts (a non-LL server). Unknown tags are ignored (§4.1: "clients MUST ignore any tag
//! that they do not recognize"); segments and init
//! segments may be byte ranges (EXT-X-BYTERANGE with an explicit offset, EXT-X-MAP BYTERANGE); BYTERANGE
//! parts and hints are not supported and are skipped.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::playlist::{ByteRange, ContentSteering, PlaylistType, 
    AudioMedia, MediaPlaylist, MediaSegment, MultivariantPlaylist, PartEntry, RenditionReport, ServerControl, Variant,
};

/// Why a playlist could not be read.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ParseError {
    /// The first line is not `#EXTM3U` (§4.4.1.1).
    #[error("not a playlist: first line is not #EXTM3U")]
    NotM3u,
    /// A required attribute or value is missing or malformed; the string names the tag and attribute.
    #[error("line {line}: {what}")]
    Bad {
        /// 1-based line number.
        line: usize,
        /// The tag and attribute at fault.
        what: &'static str,
    },
    /// An EXT-X-STREAM-INF with no URI line after it (§4.4.6.2).
    #[error("EXT-X-STREAM-INF at line {0} has no URI")]
    StreamInfWithoutUri(usize),
}

/// An attribute list (§4.2): `NAME=value` pairs, values quoted or not; quotes are removed.
fn attributes(list: &str) -> Vec<(&str, &str)> {
    let mut out = Vec::new();
    let mut rest = list;
    while !rest.is_empty() {
        let Some(eq) = rest.find('=') else { break };
        let name = rest[..eq].trim();
        let after = &rest[eq + 1..];
        let (value, next) = if let Some(quoted) = after.strip_prefix('"') {
            match quoted.find('"') {
                Some(end) => (&quoted[..end], quoted[end + 1..].trim_start_matches(',')),
                None => (quoted, ""),
            }
        } else {
            match after.find(',') {
                Some(end) => (&after[..end], &after[end + 1..]),
                None => (after, ""),
            }
        };
        out.push((name, value));
        rest = next;
    }
    out
}

fn attr<'a>(attrs: &[(&'a str, &'a str)], name: &str) -> Option<&'a str> {
    attrs.iter().find(|(n, _)| *n == name).map(|(_, v)| *v)
}

fn number<T: std::str::FromStr>(value: Option<&str>, line: usize, what: &'static str) -> Result<T, ParseError> {
    value.and_then(|v| v.trim().parse().ok()).ok_or(ParseError::Bad { line, what })
}

fn lines(text: &str) -> Result<impl Iterator<Item = (usize, &str)>, ParseError> {
    let mut it = text.lines().map(str::trim).enumerate().map(|(i, l)| (i + 1, l)).peekable();
    match it.peek() {
        Some((_, first)) if first.trim_start_matches('\u{feff}') == "#EXTM3U" => Ok(it.filter(|(_, l)| !l.is_empty())),
        _ => Err(ParseError::NotM3u),
    }
}

/// Parses an ISO 8601 date (EXT-X-PROGRAM-DATE-TIME, §4.4.4.6) to a wall-clock time: RFC 3339
/// (`2023-11-14T22:13:20.123Z`, `+00:00`) and the basic offset form FFmpeg writes (`+0000`).
pub fn parse_date(value: &str) -> Option<SystemTime> {
    let value = value.trim();
    let dt = chrono::DateTime::parse_from_rfc3339(value)
        .or_else(|_| chrono::DateTime::parse_from_str(value, "%Y-%m-%dT%H:%M:%S%.f%z"))
        .ok()?;
    let ms = dt.timestamp_millis();
    u64::try_from(ms).ok().map(|ms| UNIX_EPOCH + Duration::from_millis(ms))
}

impl MultivariantPlaylist {
    /// Reads a Multivariant Playlist (§4.4.6). Keeps EXT-X-STREAM-INF variants (in file order),
    /// EXT-X-MEDIA TYPE=AUDIO renditions that have a URI, and EXT-X-CONTENT-STEERING (PATHWAY-ID
    /// defaults to "." as §4.4.6.6 says). Errors: [`ParseError`].
    pub fn parse(text: &str) -> Result<Self, ParseError> {
        let mut m = MultivariantPlaylist::default();
        let mut pending: Option<(usize, Variant)> = None;
        for (n, line) in lines(text)? {
            if let Some(list) = line.strip_prefix("#EXT-X-MEDIA:") {
                let a = attributes(list);
                if attr(&a, "TYPE") == Some("AUDIO") {
                    if let Some(uri) = attr(&a, "URI") {
                        m.audio.push(AudioMedia {
                            group_id: attr(&a, "GROUP-ID").ok_or(ParseError::Bad { line: n, what: "EXT-X-MEDIA GROUP-ID" })?.into(),
                            name: attr(&a, "NAME").unwrap_or_default().into(),
                            uri: uri.into(),
                            channels: attr(&a, "CHANNELS").and_then(|c| c.split('/').next()?.parse().ok()),
                            default: attr(&a, "DEFAULT") == Some("YES"),
                        });
                    }
                }
            } else if let Some(list) = line.strip_prefix("#EXT-X-CONTENT-STEERING:") {
                let a = attributes(list);
                let server_uri = attr(&a, "SERVER-URI").ok_or(ParseError::Bad { line: n, what: "EXT-X-CONTENT-STEERING SERVER-URI" })?;
                m.content_steering = Some(ContentSteering { server_uri: server_uri.into(), pathway_id: attr(&a, "PATHWAY-ID").unwrap_or(".").into() });
            } else if let Some(list) = line.strip_prefix("#EXT-X-STREAM-INF:") {
                if let Some((at, _)) = pending {
                    return Err(ParseError::StreamInfWithoutUri(at));
                }
                let a = attributes(list);
                let resolution = attr(&a, "RESOLUTION").and_then(|r| {
                    let (w, h) = r.split_once('x')?;
                    Some((w.parse().ok()?, h.parse().ok()?))
                });
                pending = Some((
                    n,
                    Variant {
                        uri: String::new(),
                        bandwidth: number(attr(&a, "BANDWIDTH"), n, "EXT-X-STREAM-INF BANDWIDTH")?,
                        average_bandwidth: attr(&a, "AVERAGE-BANDWIDTH").and_then(|v| v.parse().ok()),
                        codecs: attr(&a, "CODECS")
                            .map(|c| c.split(',').map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect())
                            .unwrap_or_default(),
                        resolution,
                        frame_rate: attr(&a, "FRAME-RATE").and_then(|v| v.parse().ok()),
                        audio_group: attr(&a, "AUDIO").map(str::to_string),
                    },
                ));
            } else if !line.starts_with('#') {
                if let Some((_, mut v)) = pending.take() {
                    v.uri = line.to_string();
                    m.variants.push(v);
                }
            }
        }
        match pending {
            Some((at, _)) => Err(ParseError::StreamInfWithoutUri(at)),
            None => Ok(m),
        }
    }
}

/// `LENGTH@OFFSET` (§4.4.4.2). A range without its offset (continuing the previous one) is not
/// supported: `None`, like a malformed one.
fn byte_range(value: &str) -> Option<ByteRange> {
    let (length, offset) = value.trim().split_once('@')?;
    Some(ByteRange { length: length.parse().ok()?, offset: offset.parse().ok()? })
}

impl MediaPlaylist {
    /// Reads a Media Playlist (§4.4.3–§4.4.5) with the Low-Latency tags. Each segment gets the
    /// EXT-X-MAP in force at its position; `program_date_time` is set only where a tag gives it
    /// (extrapolating is the client's business). A trailing open segment (parts with no EXTINF)
    /// becomes a segment with `uri: None` whose duration is the sum of its parts.
    /// Errors: [`ParseError`].
    pub fn parse(text: &str) -> Result<Self, ParseError> {
        let mut p = MediaPlaylist {
            target_duration: 0,
            media_sequence: 0,
            discontinuity_sequence: 0,
            playlist_type: None,
            part_target: None,
            server_control: None,
            map_uri: String::new(),
            skipped_segments: 0,
            segments: Vec::new(),
            preload_hint: None,
            rendition_reports: Vec::new(),
            endlist: false,
        };
        let mut next = MediaSegment::default();
        let mut map_seen = false;
        let mut current_map = String::new();
        let mut current_map_range: Option<ByteRange> = None;
        let mut extinf: Option<f64> = None;
        for (n, line) in lines(text)? {
            let Some(tag) = line.strip_prefix('#') else {
                // A segment URI closes the segment being built.
                let mut seg = std::mem::take(&mut next);
                seg.uri = Some(line.to_string());
                seg.duration = extinf.take().ok_or(ParseError::Bad { line: n, what: "segment URI without EXTINF" })?;
                seg.init_uri = current_map.clone();
                seg.init_range = current_map_range;
                p.segments.push(seg);
                continue;
            };
            let (name, value) = tag.split_once(':').unwrap_or((tag, ""));
            match name {
                "EXT-X-TARGETDURATION" => p.target_duration = number(Some(value), n, "EXT-X-TARGETDURATION")?,
                "EXT-X-MEDIA-SEQUENCE" => p.media_sequence = number(Some(value), n, "EXT-X-MEDIA-SEQUENCE")?,
                "EXT-X-PLAYLIST-TYPE" => {
                    p.playlist_type = match value.trim() {
                        "EVENT" => Some(PlaylistType::Event),
                        "VOD" => Some(PlaylistType::Vod),
                        _ => return Err(ParseError::Bad { line: n, what: "EXT-X-PLAYLIST-TYPE (EVENT or VOD)" }),
                    }
                }
                "EXT-X-DISCONTINUITY-SEQUENCE" => {
                    p.discontinuity_sequence = number(Some(value), n, "EXT-X-DISCONTINUITY-SEQUENCE")?
                }
                "EXT-X-PART-INF" => {
                    p.part_target = Some(number(attr(&attributes(value), "PART-TARGET"), n, "EXT-X-PART-INF PART-TARGET")?)
                }
                "EXT-X-SERVER-CONTROL" => {
                    let a = attributes(value);
                    p.server_control = Some(ServerControl {
                        can_block_reload: attr(&a, "CAN-BLOCK-RELOAD") == Some("YES"),
                        part_hold_back: attr(&a, "PART-HOLD-BACK").and_then(|v| v.parse().ok()).unwrap_or(0.0),
                        hold_back: attr(&a, "HOLD-BACK").and_then(|v| v.parse().ok()).unwrap_or(0.0),
                        can_skip_until: attr(&a, "CAN-SKIP-UNTIL").and_then(|v| v.parse().ok()),
                    });
                }
                "EXT-X-MAP" => {
                    let a = attributes(value);
                    let uri = attr(&a, "URI").ok_or(ParseError::Bad { line: n, what: "EXT-X-MAP URI" })?;
                    current_map_range = match attr(&a, "BYTERANGE") {
                        Some(r) => Some(byte_range(r).ok_or(ParseError::Bad { line: n, what: "EXT-X-MAP BYTERANGE" })?),
                        None => None,
                    };
                    if !map_seen {
                        p.map_uri = uri.to_string();
                        map_seen = true;
                    }
                    current_map = uri.to_string();
                }
                "EXT-X-SKIP" => {
                    p.skipped_segments = number(attr(&attributes(value), "SKIPPED-SEGMENTS"), n, "EXT-X-SKIP SKIPPED-SEGMENTS")?
                }
                "EXT-X-DISCONTINUITY" => next.discontinuity = true,
                "EXT-X-BYTERANGE" => {
                    next.byte_range = Some(byte_range(value).ok_or(ParseError::Bad { line: n, what: "EXT-X-BYTERANGE (LENGTH@OFFSET)" })?)
                }
                // An unreadable date only costs the client its latency measurement: ignore it.
                "EXT-X-PROGRAM-DATE-TIME" => next.program_date_time = parse_date(value),
                "EXT-X-PART" => {
                    let a = attributes(value);
                    if attr(&a, "BYTERANGE").is_none() {
                        next.parts.push(PartEntry {
                            uri: attr(&a, "URI").ok_or(ParseError::Bad { line: n, what: "EXT-X-PART URI" })?.into(),
                            duration: number(attr(&a, "DURATION"), n, "EXT-X-PART DURATION")?,
                            independent: attr(&a, "INDEPENDENT") == Some("YES"),
                        });
                    }
                }
                "EXTINF" => {
                    let d = value.split(',').next();
                    extinf = Some(number(d, n, "EXTINF duration")?);
                }
                "EXT-X-PRELOAD-HINT" => {
                    let a = attributes(value);
                    if attr(&a, "TYPE") == Some("PART") && attr(&a, "BYTERANGE-START").is_none() {
                        p.preload_hint = attr(&a, "URI").map(str::to_string);
                    }
                }
                "EXT-X-RENDITION-REPORT" => {
                    let a = attributes(value);
                    p.rendition_reports.push(RenditionReport {
                        uri: attr(&a, "URI").ok_or(ParseError::Bad { line: n, what: "EXT-X-RENDITION-REPORT URI" })?.into(),
                        last_msn: number(attr(&a, "LAST-MSN"), n, "EXT-X-RENDITION-REPORT LAST-MSN")?,
                        last_part: attr(&a, "LAST-PART").and_then(|v| v.parse().ok()).unwrap_or(0),
                    });
                }
                "EXT-X-ENDLIST" => p.endlist = true,
                _ => {}
            }
        }
        if !next.parts.is_empty() {
            next.duration = next.parts.iter().map(|x| x.duration).sum();
            next.init_uri = current_map.clone();
            next.init_range = current_map_range;
            p.segments.push(next);
        }
        Ok(p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIVE: &str = "#EXTM3U\n#EXT-X-VERSION:9\n#EXT-X-TARGETDURATION:2\n#EXT-X-MEDIA-SEQUENCE:10\n\
#EXT-X-DISCONTINUITY-SEQUENCE:1\n#EXT-X-INDEPENDENT-SEGMENTS\n\
#EXT-X-SERVER-CONTROL:CAN-SKIP-UNTIL=12.000,CAN-BLOCK-RELOAD=YES,PART-HOLD-BACK=0.600,HOLD-BACK=6.000\n\
#EXT-X-PART-INF:PART-TARGET=0.20000\n#EXT-X-MAP:URI=\"init.mp4\"\n#EXT-X-SKIP:SKIPPED-SEGMENTS=3\n\
#EXT-X-PROGRAM-DATE-TIME:2023-11-14T22:13:20.123Z\n#EXTINF:2.00000,\nseg13.m4s\n\
#EXT-X-DISCONTINUITY\n#EXT-X-MAP:URI=\"init1.mp4\"\n#EXT-X-PROGRAM-DATE-TIME:2023-11-14T22:13:40.000Z\n\
#EXT-X-PART:DURATION=0.20000,URI=\"part140.m4s\",INDEPENDENT=YES\n#EXT-X-PART:DURATION=0.18000,URI=\"part141.m4s\"\n\
#EXTINF:0.38000,\nseg14.m4s\n#EXT-X-PART:DURATION=0.20000,URI=\"part142.m4s\",INDEPENDENT=YES\n\
#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"part143.m4s\"\n\
#EXT-X-RENDITION-REPORT:URI=\"../audio/index.m3u8\",LAST-MSN=15,LAST-PART=0\n";

    #[test]
    fn reads_every_ll_hls_tag() {
        let p = MediaPlaylist::parse(LIVE).expect("parses");
        assert_eq!((p.target_duration, p.media_sequence, p.discontinuity_sequence, p.skipped_segments), (2, 10, 1, 3));
        let sc = p.server_control.expect("server control");
        assert!(sc.can_block_reload && (sc.part_hold_back - 0.6).abs() < 1e-9 && sc.can_skip_until == Some(12.0));
        assert_eq!(p.part_target, Some(0.2));
        assert_eq!(p.segments.len(), 3);
        assert_eq!(p.segments[0].uri.as_deref(), Some("seg13.m4s"));
        assert_eq!(p.segments[0].init_uri, "init.mp4");
        assert_eq!(p.segments[0].program_date_time, Some(UNIX_EPOCH + Duration::from_millis(1_700_000_000_123)));
        assert!(p.segments[1].discontinuity && p.segments[1].init_uri == "init1.mp4");
        assert_eq!(p.segments[1].parts.len(), 2);
        assert!(p.segments[1].parts[0].independent && !p.segments[1].parts[1].independent);
        // The open segment: parts only.
        assert_eq!(p.segments[2].uri, None);
        assert!((p.segments[2].duration - 0.2).abs() < 1e-9 && p.segments[2].init_uri == "init1.mp4");
        assert_eq!(p.preload_hint.as_deref(), Some("part143.m4s"));
        assert_eq!(p.rendition_reports, vec![RenditionReport { uri: "../audio/index.m3u8".into(), last_msn: 15, last_part: 0 }]);
        assert!(!p.endlist);
    }

    #[test]
    fn round_trips_the_writer() {
        let text = LIVE;
        let once = MediaPlaylist::parse(text).expect("parses").render();
        let twice = MediaPlaylist::parse(&once).expect("parses again").render();
        assert_eq!(once, twice);
        assert!(once.contains("#EXT-X-SKIP:SKIPPED-SEGMENTS=3") && once.contains("PRELOAD-HINT"));
    }

    #[test]
    fn non_ll_playlist_and_endlist() {
        let p = MediaPlaylist::parse("#EXTM3U\n#EXT-X-TARGETDURATION:6\n#EXTINF:6.0,title\na.ts\n#EXTINF:5.5,\nb.ts\n#EXT-X-ENDLIST\n")
            .expect("parses");
        assert_eq!(p.segments.len(), 2);
        assert!(p.endlist && p.server_control.is_none() && p.part_target.is_none());
        assert_eq!(p.segments[1].duration, 5.5);
    }

    #[test]
    fn dates_in_the_forms_servers_write() {
        let t = UNIX_EPOCH + Duration::from_millis(1_700_000_000_123);
        assert_eq!(parse_date("2023-11-14T22:13:20.123Z"), Some(t));
        assert_eq!(parse_date("2023-11-14T23:13:20.123+01:00"), Some(t));
        // FFmpeg's HLS muxer.
        assert_eq!(parse_date("2023-11-14T22:13:20.123+0000"), Some(t));
        assert_eq!(parse_date("yesterday"), None);
        let p = MediaPlaylist::parse("#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXTINF:2.0,\n#EXT-X-PROGRAM-DATE-TIME:2023-11-14T22:13:20.123+0000\na.m4s\n")
            .expect("PDT after EXTINF, as FFmpeg writes it");
        assert_eq!(p.segments[0].program_date_time, Some(t));
    }

    #[test]
    fn errors_are_reported() {
        assert_eq!(MediaPlaylist::parse("hello"), Err(ParseError::NotM3u));
        assert!(matches!(MediaPlaylist::parse("#EXTM3U\nseg.ts\n"), Err(ParseError::Bad { line: 2, .. })));
        assert!(matches!(MediaPlaylist::parse("#EXTM3U\n#EXT-X-PART:URI=\"a\"\n"), Err(ParseError::Bad { line: 2, .. })));
        assert_eq!(
            MultivariantPlaylist::parse("#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1\n"),
            Err(ParseError::StreamInfWithoutUri(2))
        );
    }

    #[test]
    fn multivariant_round_trip() {
        let text = "#EXTM3U\n#EXT-X-VERSION:6\n#EXT-X-INDEPENDENT-SEGMENTS\n\
#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID=\"aac\",NAME=\"audio\",DEFAULT=YES,AUTOSELECT=YES,CHANNELS=\"2\",URI=\"audio/index.m3u8\"\n\
#EXT-X-STREAM-INF:BANDWIDTH=2800000,AVERAGE-BANDWIDTH=2600000,CODECS=\"avc1.64001f,mp4a.40.2\",RESOLUTION=1280x720,FRAME-RATE=25.000,AUDIO=\"aac\"\n\
source/index.m3u8\n#EXT-X-STREAM-INF:BANDWIDTH=800000,CODECS=\"avc1.4d401e,mp4a.40.2\",RESOLUTION=640x360,AUDIO=\"aac\"\n360p/index.m3u8\n";
        let m = MultivariantPlaylist::parse(text).expect("parses");
        assert_eq!(m.variants.len(), 2);
        assert_eq!(m.variants[0].codecs, vec!["avc1.64001f", "mp4a.40.2"]);
        assert_eq!(m.variants[0].resolution, Some((1280, 720)));
        assert_eq!(m.variants[1].uri, "360p/index.m3u8");
        assert_eq!(m.audio[0].channels, Some(2));
        assert_eq!(MultivariantPlaylist::parse(&m.render()).expect("round trip"), m);
    }
}
