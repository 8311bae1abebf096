//! Multivariant and Media Playlists (RFC 8216bis §4.4) and their text form.
//!
//! Durations are seconds as `f64`; they are written with 5 decimals (EXTINF, EXT-X-PART DURATION),
//! which keeps 90 kHz timestamps exact to 1/100 000 s.

use std::fmt::Write as _;
use std::time::SystemTime;

use chrono::{DateTime, SecondsFormat, Utc};

/// A variant stream (EXT-X-STREAM-INF, §4.4.6.2).
#[derive(Debug, Clone, PartialEq)]
pub struct Variant {
    /// URI of its Media Playlist, relative to the Multivariant Playlist.
    pub uri: String,
    /// Peak bits per second of all its renditions together (BANDWIDTH).
    pub bandwidth: u64,
    /// Average bits per second (AVERAGE-BANDWIDTH), when measured.
    pub average_bandwidth: Option<u64>,
    /// RFC 6381 codec strings of every rendition it uses, e.g. `avc1.64001f,mp4a.40.2`.
    pub codecs: Vec<String>,
    /// Width and height in pixels.
    pub resolution: Option<(u32, u32)>,
    /// Frames per second.
    pub frame_rate: Option<f64>,
    /// GROUP-ID of its audio renditions (AUDIO attribute).
    pub audio_group: Option<String>,
}

/// An audio rendition (EXT-X-MEDIA TYPE=AUDIO, §4.4.6.1).
#[derive(Debug, Clone, PartialEq)]
pub struct AudioMedia {
    /// GROUP-ID.
    pub group_id: String,
    /// NAME.
    pub name: String,
    /// URI of its Media Playlist.
    pub uri: String,
    /// CHANNELS (the channel count as a string), when known.
    pub channels: Option<u16>,
    /// DEFAULT=YES and AUTOSELECT=YES.
    pub default: bool,
}

/// EXT-X-CONTENT-STEERING (§4.4.6.6): where a client fetches the Steering Manifest, and the
/// pathway this playlist's variants belong to.
#[derive(Debug, Clone, PartialEq)]
pub struct ContentSteering {
    /// SERVER-URI of the Steering Manifest (absolute).
    pub server_uri: String,
    /// PATHWAY-ID of every variant and audio rendition of this playlist (the node serving it).
    pub pathway_id: String,
}

/// The Multivariant Playlist (§4.4.6).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct MultivariantPlaylist {
    /// Audio renditions.
    pub audio: Vec<AudioMedia>,
    /// Variant streams, highest bandwidth first.
    pub variants: Vec<Variant>,
    /// Content Steering, when a steering server ranks the pathways. With it every variant gets
    /// `PATHWAY-ID` and a `STABLE-VARIANT-ID`, every audio rendition a `STABLE-RENDITION-ID`: the
    /// first path segment of its URI (the rendition name for `NAME/index.m3u8`), which the Steering
    /// Manifest's pathway clones map to other servers' URIs.
    pub content_steering: Option<ContentSteering>,
}

/// One rendition as [`MultivariantPlaylist::from_renditions`] groups it.
#[derive(Debug, Clone, PartialEq)]
pub struct RenditionEntry {
    /// Name (NAME of an audio rendition).
    pub name: String,
    /// URI of its Media Playlist, relative to the Multivariant Playlist.
    pub uri: String,
    /// True for video.
    pub is_video: bool,
    /// RFC 6381 codec string.
    pub codec: String,
    /// Width and height in pixels (video).
    pub resolution: Option<(u32, u32)>,
    /// Frames per second (video).
    pub frame_rate: Option<f64>,
    /// Audio channels (audio).
    pub channels: Option<u16>,
    /// Peak bits per second (a segment's bytes × 8 / its duration, the largest).
    pub peak: u64,
    /// Average bits per second.
    pub average: u64,
}

/// GROUP-ID of the audio renditions.
const AUDIO_GROUP: &str = "audio";

/// The stable id of a Media Playlist URI: its first path segment (`source` for `source/index.m3u8`).
pub fn stable_id(uri: &str) -> &str {
    uri.split('/').next().unwrap_or(uri)
}

impl MultivariantPlaylist {
    /// The usual shape of a ladder: every video rendition a variant (highest bandwidth first)
    /// that uses the audio renditions as one group (the first one DEFAULT); BANDWIDTH is the
    /// video's plus the largest audio's (§4.4.6.2: every rendition the variant may play). An
    /// audio-only broadcast has its first audio rendition as the one variant.
    pub fn from_renditions(renditions: &[RenditionEntry]) -> Self {
        let audio: Vec<&RenditionEntry> = renditions.iter().filter(|r| !r.is_video).collect();
        let audio_peak = audio.iter().map(|a| a.peak).max().unwrap_or(0);
        let audio_avg = audio.iter().map(|a| a.average).max().unwrap_or(0);
        let audio_codec = audio.first().map(|a| a.codec.clone());
        let mut m = MultivariantPlaylist {
            audio: audio
                .iter()
                .enumerate()
                .map(|(n, a)| AudioMedia { group_id: AUDIO_GROUP.into(), name: a.name.clone(), uri: a.uri.clone(), channels: a.channels, default: n == 0 })
                .collect(),
            variants: Vec::new(),
            content_steering: None,
        };
        for v in renditions.iter().filter(|r| r.is_video) {
            let mut codecs = vec![v.codec.clone()];
            codecs.extend(audio_codec.clone());
            m.variants.push(Variant {
                uri: v.uri.clone(),
                bandwidth: v.peak + audio_peak,
                average_bandwidth: Some(v.average + audio_avg),
                codecs,
                resolution: v.resolution,
                frame_rate: v.frame_rate,
                audio_group: audio_codec.as_ref().map(|_| AUDIO_GROUP.to_string()),
            });
        }
        if m.variants.is_empty() {
            if let Some(a) = audio.first() {
                m.audio.clear();
                m.variants.push(Variant {
                    uri: a.uri.clone(),
                    bandwidth: a.peak,
                    average_bandwidth: Some(a.average),
                    codecs: vec![a.codec.clone()],
                    resolution: None,
                    frame_rate: None,
                    audio_group: None,
                });
            }
        }
        m.variants.sort_by_key(|v| std::cmp::Reverse(v.bandwidth));
        m
    }

    /// The playlist text.
    pub fn render(&self) -> String {
        let mut out = String::from("#EXTM3U\n#EXT-X-VERSION:6\n#EXT-X-INDEPENDENT-SEGMENTS\n");
        if let Some(cs) = &self.content_steering {
            let _ = writeln!(out, "#EXT-X-CONTENT-STEERING:SERVER-URI=\"{}\",PATHWAY-ID=\"{}\"", cs.server_uri, cs.pathway_id);
        }
        for a in &self.audio {
            let _ = write!(out, "#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID=\"{}\",NAME=\"{}\"", a.group_id, a.name);
            let yes_no = if a.default { "YES" } else { "NO" };
            let _ = write!(out, ",DEFAULT={yes_no},AUTOSELECT={yes_no}");
            if let Some(c) = a.channels {
                let _ = write!(out, ",CHANNELS=\"{c}\"");
            }
            if let Some(cs) = &self.content_steering {
                let _ = write!(out, ",STABLE-RENDITION-ID=\"{}\",PATHWAY-ID=\"{}\"", stable_id(&a.uri), cs.pathway_id);
            }
            let _ = writeln!(out, ",URI=\"{}\"", a.uri);
        }
        for v in &self.variants {
            let _ = write!(out, "#EXT-X-STREAM-INF:BANDWIDTH={}", v.bandwidth);
            if let Some(avg) = v.average_bandwidth {
                let _ = write!(out, ",AVERAGE-BANDWIDTH={avg}");
            }
            let _ = write!(out, ",CODECS=\"{}\"", v.codecs.join(","));
            if let Some((w, h)) = v.resolution {
                let _ = write!(out, ",RESOLUTION={w}x{h}");
            }
            if let Some(fps) = v.frame_rate {
                let _ = write!(out, ",FRAME-RATE={fps:.3}");
            }
            if let Some(g) = &v.audio_group {
                let _ = write!(out, ",AUDIO=\"{g}\"");
            }
            if let Some(cs) = &self.content_steering {
                let _ = write!(out, ",STABLE-VARIANT-ID=\"{}\",PATHWAY-ID=\"{}\"", stable_id(&v.uri), cs.pathway_id);
            }
            let _ = writeln!(out, "\n{}", v.uri);
        }
        out
    }
}

/// EXT-X-SERVER-CONTROL (§4.4.3.8).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ServerControl {
    /// CAN-BLOCK-RELOAD=YES.
    pub can_block_reload: bool,
    /// PART-HOLD-BACK in seconds (≥ 2 × PART-TARGET; 3 × recommended).
    pub part_hold_back: f64,
    /// HOLD-BACK in seconds (≥ 3 × TARGETDURATION).
    pub hold_back: f64,
    /// CAN-SKIP-UNTIL in seconds (≥ 6 × TARGETDURATION) when delta updates are offered.
    pub can_skip_until: Option<f64>,
}

impl ServerControl {
    /// The values this server uses: PART-HOLD-BACK = 3 × part target, HOLD-BACK = 3 × TD,
    /// CAN-SKIP-UNTIL = 6 × TD.
    pub fn for_targets(target_duration: u32, part_target: f64) -> Self {
        ServerControl {
            can_block_reload: true,
            part_hold_back: 3.0 * part_target,
            hold_back: 3.0 * f64::from(target_duration),
            can_skip_until: Some(6.0 * f64::from(target_duration)),
        }
    }
}

/// A Partial Segment line (EXT-X-PART, §4.4.4.9).
#[derive(Debug, Clone, PartialEq)]
pub struct PartEntry {
    /// URI of the part.
    pub uri: String,
    /// DURATION in seconds.
    pub duration: f64,
    /// INDEPENDENT=YES: starts with a key frame.
    pub independent: bool,
}

/// A sub-range of a resource (EXT-X-BYTERANGE §4.4.4.2, EXT-X-MAP BYTERANGE §4.4.4.5), bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteRange {
    /// Length in bytes.
    pub length: u64,
    /// Offset of its first byte from the start of the resource.
    pub offset: u64,
}

impl ByteRange {
    /// The HTTP `Range` header value for it (RFC 9110 §14.1.2): `bytes=FIRST-LAST`.
    pub fn http_range(&self) -> String {
        format!("bytes={}-{}", self.offset, self.offset + self.length.max(1) - 1)
    }
}

/// A Media Segment with its parts.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct MediaSegment {
    /// EXT-X-DISCONTINUITY before it (§4.4.4.3): timestamps or encoding changed.
    pub discontinuity: bool,
    /// URI of its init segment; an EXT-X-MAP (§4.4.4.5) is written wherever it (or its range) changes.
    pub init_uri: String,
    /// The init segment's range within `init_uri`, when it is not the whole resource.
    pub init_range: Option<ByteRange>,
    /// EXT-X-PROGRAM-DATE-TIME of its first sample.
    pub program_date_time: Option<SystemTime>,
    /// EXTINF duration in seconds.
    pub duration: f64,
    /// Segment URI; `None` while the segment is still being built (only its parts are listed).
    pub uri: Option<String>,
    /// The segment's range within `uri` (EXT-X-BYTERANGE, always with an explicit offset), when
    /// it is not the whole resource: a recorded segment inside an archive file.
    pub byte_range: Option<ByteRange>,
    /// Its parts; listed only for segments near the live edge.
    pub parts: Vec<PartEntry>,
}

/// EXT-X-RENDITION-REPORT (§4.4.5.4).
#[derive(Debug, Clone, PartialEq)]
pub struct RenditionReport {
    /// URI of the other rendition's Media Playlist, relative to this one.
    pub uri: String,
    /// LAST-MSN.
    pub last_msn: u64,
    /// LAST-PART.
    pub last_part: u32,
}

/// EXT-X-PLAYLIST-TYPE (§4.4.3.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlaylistType {
    /// `EVENT`: segments are only ever appended (a recording still going on).
    Event,
    /// `VOD`: the playlist never changes (a past broadcast, a clip).
    Vod,
}

/// A Media Playlist (§4.4.3–§4.4.5) with the Low-Latency extensions.
#[derive(Debug, Clone, PartialEq)]
pub struct MediaPlaylist {
    /// EXT-X-TARGETDURATION, whole seconds.
    pub target_duration: u32,
    /// EXT-X-MEDIA-SEQUENCE: MSN of the first segment (counting skipped ones).
    pub media_sequence: u64,
    /// EXT-X-DISCONTINUITY-SEQUENCE (§4.4.3.3): discontinuities before the first segment.
    pub discontinuity_sequence: u64,
    /// EXT-X-PLAYLIST-TYPE; `None` for a live sliding window.
    pub playlist_type: Option<PlaylistType>,
    /// EXT-X-PART-INF PART-TARGET in seconds, when parts are listed.
    pub part_target: Option<f64>,
    /// EXT-X-SERVER-CONTROL.
    pub server_control: Option<ServerControl>,
    /// EXT-X-MAP URI used when the playlist has no segment yet (otherwise each segment's `init_uri`).
    pub map_uri: String,
    /// EXT-X-SKIP SKIPPED-SEGMENTS, for a delta update (§4.4.5.2).
    pub skipped_segments: u64,
    /// Segments after the skipped ones.
    pub segments: Vec<MediaSegment>,
    /// EXT-X-PRELOAD-HINT TYPE=PART URI (§4.4.5.3).
    pub preload_hint: Option<String>,
    /// EXT-X-RENDITION-REPORT lines.
    pub rendition_reports: Vec<RenditionReport>,
    /// EXT-X-ENDLIST.
    pub endlist: bool,
}

impl MediaPlaylist {
    /// Turns this playlist into a delta update (§6.2.5.1): replaces the segments that lie wholly
    /// before the Skip Boundary (`can_skip_until` seconds before the end of the playlist) with
    /// EXT-X-SKIP. Returns how many segments were skipped.
    pub fn skip_older_than(&mut self, can_skip_until: f64) -> u64 {
        let mut remaining: f64 = self.segments.iter().map(|s| s.duration).sum();
        let mut n = 0;
        for s in &self.segments {
            if remaining - s.duration >= can_skip_until {
                remaining -= s.duration;
                n += 1;
            } else {
                break;
            }
        }
        self.segments.drain(..n);
        self.skipped_segments += n as u64;
        n as u64
    }

    /// The playlist text. Version 9 when EXT-X-SKIP is present, otherwise 6 (EXT-X-MAP, §7).
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(256 + 200 * self.segments.len());
        let version = if self.skipped_segments > 0 { 9 } else { 6 };
        let _ = writeln!(out, "#EXTM3U\n#EXT-X-VERSION:{version}");
        let _ = writeln!(out, "#EXT-X-TARGETDURATION:{}", self.target_duration);
        let _ = writeln!(out, "#EXT-X-MEDIA-SEQUENCE:{}", self.media_sequence);
        if self.discontinuity_sequence > 0 {
            let _ = writeln!(out, "#EXT-X-DISCONTINUITY-SEQUENCE:{}", self.discontinuity_sequence);
        }
        match self.playlist_type {
            Some(PlaylistType::Event) => out.push_str("#EXT-X-PLAYLIST-TYPE:EVENT\n"),
            Some(PlaylistType::Vod) => out.push_str("#EXT-X-PLAYLIST-TYPE:VOD\n"),
            None => {}
        }
        out.push_str("#EXT-X-INDEPENDENT-SEGMENTS\n");
        if let Some(sc) = &self.server_control {
            out.push_str("#EXT-X-SERVER-CONTROL:");
            let mut attrs = Vec::new();
            if let Some(skip) = sc.can_skip_until {
                attrs.push(format!("CAN-SKIP-UNTIL={skip:.3}"));
            }
            if sc.can_block_reload {
                attrs.push("CAN-BLOCK-RELOAD=YES".into());
            }
            attrs.push(format!("PART-HOLD-BACK={:.3}", sc.part_hold_back));
            attrs.push(format!("HOLD-BACK={:.3}", sc.hold_back));
            let _ = writeln!(out, "{}", attrs.join(","));
        }
        if let Some(pt) = self.part_target {
            let _ = writeln!(out, "#EXT-X-PART-INF:PART-TARGET={pt:.5}");
        }
        let mut map = self.segments.first().map_or((self.map_uri.as_str(), None), |s| (s.init_uri.as_str(), s.init_range));
        write_map(&mut out, map);
        if self.skipped_segments > 0 {
            let _ = writeln!(out, "#EXT-X-SKIP:SKIPPED-SEGMENTS={}", self.skipped_segments);
        }
        for seg in &self.segments {
            if seg.discontinuity {
                out.push_str("#EXT-X-DISCONTINUITY\n");
            }
            if (seg.init_uri.as_str(), seg.init_range) != map {
                map = (seg.init_uri.as_str(), seg.init_range);
                write_map(&mut out, map);
            }
            if let Some(pdt) = seg.program_date_time {
                let dt: DateTime<Utc> = pdt.into();
                let _ = writeln!(out, "#EXT-X-PROGRAM-DATE-TIME:{}", dt.to_rfc3339_opts(SecondsFormat::Millis, true));
            }
            for p in &seg.parts {
                let _ = write!(out, "#EXT-X-PART:DURATION={:.5},URI=\"{}\"", p.duration, p.uri);
                if p.independent {
                    out.push_str(",INDEPENDENT=YES");
                }
                out.push('\n');
            }
            if let Some(uri) = &seg.uri {
                let _ = writeln!(out, "#EXTINF:{:.5},", seg.duration);
                if let Some(r) = seg.byte_range {
                    let _ = writeln!(out, "#EXT-X-BYTERANGE:{}@{}", r.length, r.offset);
                }
                let _ = writeln!(out, "{uri}");
            }
        }
        if let Some(hint) = &self.preload_hint {
            if !self.endlist {
                let _ = writeln!(out, "#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"{hint}\"");
            }
        }
        for r in &self.rendition_reports {
            let _ = writeln!(out, "#EXT-X-RENDITION-REPORT:URI=\"{}\",LAST-MSN={},LAST-PART={}", r.uri, r.last_msn, r.last_part);
        }
        if self.endlist {
            out.push_str("#EXT-X-ENDLIST\n");
        }
        out
    }
}

/// Writes EXT-X-MAP for an init segment (`uri`, its range if not the whole resource).
fn write_map(out: &mut String, (uri, range): (&str, Option<ByteRange>)) {
    match range {
        Some(r) => {
            let _ = writeln!(out, "#EXT-X-MAP:URI=\"{uri}\",BYTERANGE=\"{}@{}\"", r.length, r.offset);
        }
        None => {
            let _ = writeln!(out, "#EXT-X-MAP:URI=\"{uri}\"");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    fn playlist() -> MediaPlaylist {
        let pdt = UNIX_EPOCH + Duration::from_millis(1_700_000_000_123);
        let seg = |n: u64, complete: bool| MediaSegment {
            discontinuity: false,
            init_uri: "init.mp4".into(),
            init_range: None,
            byte_range: None,
            program_date_time: Some(pdt + Duration::from_secs(2 * n)),
            duration: if complete { 2.0 } else { 0.4 },
            uri: complete.then(|| format!("seg{n}.m4s")),
            parts: (0..if complete { 10 } else { 2 })
                .map(|i| PartEntry { uri: format!("part{}.m4s", n * 10 + i), duration: 0.2, independent: i == 0 })
                .collect(),
        };
        MediaPlaylist {
            target_duration: 2,
            media_sequence: 0,
            discontinuity_sequence: 0,
            playlist_type: None,
            part_target: Some(0.2),
            server_control: Some(ServerControl::for_targets(2, 0.2)),
            map_uri: "init.mp4".into(),
            skipped_segments: 0,
            segments: (0..8).map(|n| seg(n, n < 7)).collect(),
            preload_hint: Some("part72.m4s".into()),
            rendition_reports: vec![RenditionReport { uri: "../audio/index.m3u8".into(), last_msn: 7, last_part: 1 }],
            endlist: false,
        }
    }

    #[test]
    fn renders_ll_hls_tags() {
        let text = playlist().render();
        assert!(text.starts_with("#EXTM3U\n#EXT-X-VERSION:6\n#EXT-X-TARGETDURATION:2\n#EXT-X-MEDIA-SEQUENCE:0\n"));
        assert!(text.contains("#EXT-X-SERVER-CONTROL:CAN-SKIP-UNTIL=12.000,CAN-BLOCK-RELOAD=YES,PART-HOLD-BACK=0.600,HOLD-BACK=6.000\n"));
        assert!(text.contains("#EXT-X-PART-INF:PART-TARGET=0.20000\n"));
        assert!(text.contains("#EXT-X-PROGRAM-DATE-TIME:2023-11-14T22:13:20.123Z\n"));
        assert!(text.contains("#EXT-X-PART:DURATION=0.20000,URI=\"part70.m4s\",INDEPENDENT=YES\n#EXT-X-PART:DURATION=0.20000,URI=\"part71.m4s\"\n"));
        assert!(text.contains("#EXTINF:2.00000,\nseg6.m4s\n"));
        assert!(text.ends_with("#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"part72.m4s\"\n#EXT-X-RENDITION-REPORT:URI=\"../audio/index.m3u8\",LAST-MSN=7,LAST-PART=1\n"));
        let mut ended = playlist();
        ended.endlist = true;
        let text = ended.render();
        assert!(text.ends_with("#EXT-X-ENDLIST\n") && !text.contains("PRELOAD-HINT"));
    }

    #[test]
    fn discontinuity_and_new_map() {
        let mut p = playlist();
        p.segments[5].discontinuity = true;
        for s in &mut p.segments[5..] {
            s.init_uri = "init1.mp4".into();
        }
        p.discontinuity_sequence = 2;
        let text = p.render();
        assert!(text.contains("#EXT-X-DISCONTINUITY-SEQUENCE:2\n"));
        assert!(text.contains("seg4.m4s\n#EXT-X-DISCONTINUITY\n#EXT-X-MAP:URI=\"init1.mp4\"\n#EXT-X-PROGRAM-DATE-TIME:"));
        assert_eq!(text.matches("#EXT-X-MAP:").count(), 2);
        // A delta update that skips the old init's segments names the new init up front.
        p.segments.truncate(7);
        p.skip_older_than(2.0);
        assert!(p.render().contains("#EXT-X-MAP:URI=\"init1.mp4\"\n#EXT-X-SKIP"));
    }

    #[test]
    fn byte_ranges_of_recorded_segments() {
        let mut p = playlist();
        for (n, s) in p.segments[..2].iter_mut().enumerate() {
            s.init_uri = "../vod/b/files/source/0000000000.mp4".into();
            s.init_range = Some(ByteRange { length: 700, offset: 0 });
            s.uri = Some("../vod/b/files/source/0000000000.mp4".into());
            s.byte_range = Some(ByteRange { length: 1000, offset: 800 + 1100 * n as u64 });
            s.parts.clear();
        }
        let text = p.render();
        assert!(text.contains("#EXT-X-MAP:URI=\"../vod/b/files/source/0000000000.mp4\",BYTERANGE=\"700@0\"\n#EXT-X-PROGRAM-DATE-TIME:"), "{text}");
        assert!(text.contains("#EXTINF:2.00000,\n#EXT-X-BYTERANGE:1000@1900\n../vod/b/files/source/0000000000.mp4\n"), "{text}");
        // The live segments' init follows with a map of its own.
        assert!(text.contains("0000000000.mp4\n#EXT-X-MAP:URI=\"init.mp4\"\n"), "{text}");
        assert_eq!(MediaPlaylist::parse(&text).expect("parses").segments, p.segments, "round trip");
        assert_eq!(ByteRange { length: 1000, offset: 1900 }.http_range(), "bytes=1900-2899");
    }

    #[test]
    fn delta_update_skips_old_segments() {
        let mut p = playlist();
        // 7 × 2 s + 0.4 s = 14.4 s; keep at least 12 s: skip only the first segment.
        assert_eq!(p.skip_older_than(12.0), 1);
        let text = p.render();
        assert!(text.contains("#EXT-X-VERSION:9\n") && text.contains("#EXT-X-SKIP:SKIPPED-SEGMENTS=1\n"));
        assert!(!text.contains("seg0.m4s") && text.contains("seg1.m4s"));
    }

    #[test]
    fn multivariant() {
        let m = MultivariantPlaylist {
            audio: vec![AudioMedia { group_id: "aac".into(), name: "audio".into(), uri: "audio/index.m3u8".into(), channels: Some(2), default: true }],
            variants: vec![Variant {
                uri: "source/index.m3u8".into(),
                bandwidth: 2_800_000,
                average_bandwidth: Some(2_600_000),
                codecs: vec!["avc1.64001f".into(), "mp4a.40.2".into()],
                resolution: Some((1280, 720)),
                frame_rate: Some(25.0),
                audio_group: Some("aac".into()),
            }],
            content_steering: None,
        };
        assert_eq!(
            m.render(),
            "#EXTM3U\n#EXT-X-VERSION:6\n#EXT-X-INDEPENDENT-SEGMENTS\n\
             #EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID=\"aac\",NAME=\"audio\",DEFAULT=YES,AUTOSELECT=YES,CHANNELS=\"2\",URI=\"audio/index.m3u8\"\n\
             #EXT-X-STREAM-INF:BANDWIDTH=2800000,AVERAGE-BANDWIDTH=2600000,CODECS=\"avc1.64001f,mp4a.40.2\",RESOLUTION=1280x720,FRAME-RATE=25.000,AUDIO=\"aac\"\n\
             source/index.m3u8\n"
        );
        let steered = MultivariantPlaylist {
            content_steering: Some(ContentSteering { server_uri: "http://usher/api/v1/steering/demo?base=edge-1".into(), pathway_id: "edge-1".into() }),
            ..m
        };
        let text = steered.render();
        assert!(text.contains("#EXT-X-CONTENT-STEERING:SERVER-URI=\"http://usher/api/v1/steering/demo?base=edge-1\",PATHWAY-ID=\"edge-1\"\n"), "{text}");
        assert!(text.contains(",AUDIO=\"aac\",STABLE-VARIANT-ID=\"source\",PATHWAY-ID=\"edge-1\"\nsource/index.m3u8"), "{text}");
        assert!(text.contains(",STABLE-RENDITION-ID=\"audio\",PATHWAY-ID=\"edge-1\",URI=\"audio/index.m3u8\""), "{text}");
        assert_eq!(MultivariantPlaylist::parse(&text).expect("parses"), steered, "round trip");
    }
}
