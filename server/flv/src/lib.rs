//! FLV tag bodies, as RTMP carries them in audio (type 8) and video (type 9) messages.
//!
//! Source: Adobe "Video File Format Specification" v10.1, Annex E.4.2 (AUDIODATA) and E.4.3
//! (VIDEODATA). Only H.264 and AAC are decoded here; the Enhanced RTMP extended header
//! (IsExHeader, FourCC codecs) is recognised and reported as unsupported.

use bytes::Bytes;

/// Errors from malformed tag bodies.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FlvError {
    /// The body is shorter than its fixed header (in bytes: `needed`).
    #[error("{kind} tag body of {len} bytes is shorter than its {needed}-byte header")]
    Truncated {
        /// "video" or "audio".
        kind: &'static str,
        /// Body length in bytes.
        len: usize,
        /// Header length in bytes.
        needed: usize,
    },
}

/// A decoded VIDEODATA body (E.4.3.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VideoTag {
    /// AVCPacketType 0: an AVCDecoderConfigurationRecord (ISO/IEC 14496-15 §5.3.3.1).
    AvcSequenceHeader(Bytes),
    /// AVCPacketType 1: one access unit as length-prefixed NAL units.
    AvcNalus {
        /// FrameType 1 (key frame).
        keyframe: bool,
        /// CompositionTime: presentation minus decode time, in ms (signed 24-bit).
        cts_ms: i32,
        /// The NAL units, each behind its big-endian length.
        data: Bytes,
    },
    /// AVCPacketType 2: end of sequence.
    AvcEndOfSequence,
    /// FrameType 5: a video info/command frame, carries no picture.
    Command,
    /// Any other codec: legacy CodecID (e.g. 2 = Sorenson) or an Enhanced RTMP FourCC.
    Unsupported(String),
}

/// A decoded AUDIODATA body (E.4.2.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AudioTag {
    /// AACPacketType 0: an AudioSpecificConfig (ISO/IEC 14496-3 §1.6.2.1).
    AacSequenceHeader(Bytes),
    /// AACPacketType 1: one raw AAC frame.
    AacRaw(Bytes),
    /// Any other SoundFormat (e.g. 2 = MP3) or an Enhanced RTMP audio FourCC.
    Unsupported(String),
}

/// Parses a VIDEODATA body. Errors: [`FlvError::Truncated`].
pub fn parse_video(body: &Bytes) -> Result<VideoTag, FlvError> {
    let first = *body.first().ok_or(FlvError::Truncated { kind: "video", len: 0, needed: 1 })?;
    if first & 0x80 != 0 {
        // Enhanced RTMP: [IsExHeader:1][FrameType:3][PacketType:4][FourCC:4 bytes]
        let fourcc = body.get(1..5).map(|f| String::from_utf8_lossy(f).into_owned()).unwrap_or_default();
        return Ok(VideoTag::Unsupported(format!("enhanced RTMP video '{fourcc}'")));
    }
    let frame_type = first >> 4;
    let codec_id = first & 0x0f;
    if frame_type == 5 {
        return Ok(VideoTag::Command);
    }
    if codec_id != 7 {
        return Ok(VideoTag::Unsupported(format!("FLV video codec id {codec_id}")));
    }
    if body.len() < 5 {
        return Err(FlvError::Truncated { kind: "video", len: body.len(), needed: 5 });
    }
    let raw = u32::from(body[2]) << 16 | u32::from(body[3]) << 8 | u32::from(body[4]);
    // Sign-extend the 24-bit composition time.
    let cts_ms = ((raw << 8) as i32) >> 8;
    Ok(match body[1] {
        0 => VideoTag::AvcSequenceHeader(body.slice(5..)),
        1 => VideoTag::AvcNalus { keyframe: frame_type == 1, cts_ms, data: body.slice(5..) },
        _ => VideoTag::AvcEndOfSequence,
    })
}

/// Parses an AUDIODATA body. Errors: [`FlvError::Truncated`].
pub fn parse_audio(body: &Bytes) -> Result<AudioTag, FlvError> {
    let first = *body.first().ok_or(FlvError::Truncated { kind: "audio", len: 0, needed: 1 })?;
    let format = first >> 4;
    if format == 9 {
        let fourcc = body.get(1..5).map(|f| String::from_utf8_lossy(f).into_owned()).unwrap_or_default();
        return Ok(AudioTag::Unsupported(format!("enhanced RTMP audio '{fourcc}'")));
    }
    if format != 10 {
        return Ok(AudioTag::Unsupported(format!("FLV sound format {format}")));
    }
    if body.len() < 2 {
        return Err(FlvError::Truncated { kind: "audio", len: body.len(), needed: 2 });
    }
    Ok(match body[1] {
        0 => AudioTag::AacSequenceHeader(body.slice(2..)),
        _ => AudioTag::AacRaw(body.slice(2..)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn video_tags() {
        let b = Bytes::from_static(&[0x17, 0x00, 0, 0, 0, 1, 2, 3]);
        assert_eq!(parse_video(&b), Ok(VideoTag::AvcSequenceHeader(Bytes::from_static(&[1, 2, 3]))));
        let b = Bytes::from_static(&[0x27, 0x01, 0xff, 0xff, 0xd8, 9]);
        assert_eq!(parse_video(&b), Ok(VideoTag::AvcNalus { keyframe: false, cts_ms: -40, data: Bytes::from_static(&[9]) }));
        let b = Bytes::from_static(&[0x17, 0x01, 0x00, 0x00, 0x50]);
        assert!(matches!(parse_video(&b), Ok(VideoTag::AvcNalus { keyframe: true, cts_ms: 80, .. })));
        assert!(matches!(parse_video(&Bytes::from_static(&[0x12, 0])), Ok(VideoTag::Unsupported(_))));
        assert!(matches!(parse_video(&Bytes::from_static(b"\x90hvc1")), Ok(VideoTag::Unsupported(s)) if s.contains("hvc1")));
        assert!(parse_video(&Bytes::from_static(&[0x17, 0x01])).is_err());
        assert!(parse_video(&Bytes::new()).is_err());
    }

    #[test]
    fn audio_tags() {
        let b = Bytes::from_static(&[0xaf, 0x00, 0x11, 0x90]);
        assert_eq!(parse_audio(&b), Ok(AudioTag::AacSequenceHeader(Bytes::from_static(&[0x11, 0x90]))));
        let b = Bytes::from_static(&[0xaf, 0x01, 0x21]);
        assert_eq!(parse_audio(&b), Ok(AudioTag::AacRaw(Bytes::from_static(&[0x21]))));
        assert!(matches!(parse_audio(&Bytes::from_static(&[0x2f, 0x01])), Ok(AudioTag::Unsupported(_))));
        assert!(parse_audio(&Bytes::from_static(&[0xaf])).is_err());
    }
}
