//! Which MSE SourceBuffers a variant needs, and which audio rendition goes with it
//! (RFC 8216bis §4.4.6.2 AUDIO attribute, §4.4.6.1 EXT-X-MEDIA GROUP-ID/DEFAULT).

use onair_hls::MultivariantPlaylist;

/// The MIME types of the main and audio SourceBuffers for variant `variant` (an index into
/// `master.variants`, which must be valid): video codecs (or everything, for a muxed variant) in
/// the main one; audio in its own when the variant's AUDIO group has an EXT-X-MEDIA rendition.
pub fn mime_types(master: &MultivariantPlaylist, variant: usize) -> (String, Option<String>) {
    let v = &master.variants[variant];
    let is_audio = |c: &str| c.starts_with("mp4a") || c.starts_with("opus") || c.starts_with("ac-3") || c.starts_with("ec-3");
    let separate_audio = v.audio_group.as_ref().is_some_and(|g| master.audio.iter().any(|a| &a.group_id == g));
    let video: Vec<&str> = v.codecs.iter().map(String::as_str).filter(|c| !is_audio(c)).collect();
    let audio: Vec<&str> = v.codecs.iter().map(String::as_str).filter(|c| is_audio(c)).collect();
    let audio_codecs = if audio.is_empty() { "mp4a.40.2".to_string() } else { audio.join(",") };
    if separate_audio {
        (format!("video/mp4; codecs=\"{}\"", video.join(",")), Some(format!("audio/mp4; codecs=\"{audio_codecs}\"")))
    } else if video.is_empty() {
        (format!("audio/mp4; codecs=\"{audio_codecs}\""), None)
    } else {
        (format!("video/mp4; codecs=\"{}\"", v.codecs.join(",")), None)
    }
}

/// The URI of the audio rendition for a variant's AUDIO group: the DEFAULT=YES one, else the first.
pub fn audio_uri(master: &MultivariantPlaylist, variant: usize) -> Option<String> {
    let group = master.variants.get(variant)?.audio_group.as_ref()?;
    let mut media = master.audio.iter().filter(|a| &a.group_id == group);
    let first = media.clone().next()?;
    Some(media.find(|a| a.default).unwrap_or(first).uri.clone())
}


#[cfg(test)]
mod tests {
    use super::*;
    use onair_hls::{AudioMedia, Variant};

    fn variant(codecs: &[&str], audio_group: Option<&str>) -> Variant {
        Variant {
            uri: "v/index.m3u8".into(),
            bandwidth: 1,
            average_bandwidth: None,
            codecs: codecs.iter().map(|c| c.to_string()).collect(),
            resolution: None,
            frame_rate: None,
            audio_group: audio_group.map(String::from),
        }
    }

    #[test]
    fn separate_muxed_and_audio_only() {
        let audio = |id: &str, uri: &str, default: bool| AudioMedia { group_id: id.into(), name: uri.into(), uri: uri.into(), channels: None, default };
        let m = MultivariantPlaylist {
            audio: vec![audio("aac", "a1/index.m3u8", false), audio("aac", "a2/index.m3u8", true)],
            variants: vec![variant(&["avc1.64001f", "mp4a.40.2"], Some("aac")), variant(&["avc1.4d401e", "mp4a.40.2"], None), variant(&["mp4a.40.5"], None)],
            content_steering: None,
        };
        assert_eq!(mime_types(&m, 0), ("video/mp4; codecs=\"avc1.64001f\"".into(), Some("audio/mp4; codecs=\"mp4a.40.2\"".into())));
        assert_eq!(mime_types(&m, 1), ("video/mp4; codecs=\"avc1.4d401e,mp4a.40.2\"".into(), None));
        assert_eq!(mime_types(&m, 2), ("audio/mp4; codecs=\"mp4a.40.5\"".into(), None));
        assert_eq!(audio_uri(&m, 0).as_deref(), Some("a2/index.m3u8"));
        assert_eq!(audio_uri(&m, 1), None);
    }
}
