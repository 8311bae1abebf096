//! FLV tag bodies, as RTMP carries them in audio (type 8) and video (type 9) messages.
//!
//! Source: Adobe "Video File Format Specification" v10.1, Annex E.4.2 (AUDIODATA) and E.4.3
//! (VIDEODATA), and the Enhanced RTMP extended video header (veovera "Enhanced RTMP": IsExHeader,
//! FourCC). H.264 (legacy or `avc1`), HEVC (`hvc1`), AV1 (`av01`), VP9 (`vp09`) and AAC are
//! decoded; other FourCCs, multitrack packets and enhanced audio are reported as unsupported.

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

/// A video codec that passes through OnAir.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VideoCodec {
    /// H.264: legacy CodecID 7, or Enhanced RTMP FourCC `avc1`.
    Avc,
    /// H.265/HEVC: Enhanced RTMP FourCC `hvc1`.
    Hevc,
    /// AV1: Enhanced RTMP FourCC `av01` (frames are OBUs, no composition time).
    Av1,
    /// VP9: Enhanced RTMP FourCC `vp09` (no composition time).
    Vp9,
}

/// A decoded VIDEODATA body: legacy (E.4.3.1) or Enhanced RTMP (ExVideoTagHeader).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VideoTag {
    /// The decoder configuration record: AVCDecoderConfigurationRecord (ISO/IEC 14496-15 §5.3.3.1)
    /// for H.264 (AVCPacketType 0 / PacketType SequenceStart), HEVCDecoderConfigurationRecord
    /// (§8.3.3.1) for HEVC.
    SequenceHeader {
        /// Which codec.
        codec: VideoCodec,
        /// The record's bytes.
        record: Bytes,
    },
    /// One access unit as length-prefixed NAL units (AVCPacketType 1, or PacketType CodedFrames /
    /// CodedFramesX).
    Frame {
        /// Which codec.
        codec: VideoCodec,
        /// FrameType 1 (key frame).
        keyframe: bool,
        /// CompositionTime: presentation minus decode time, in ms (signed 24-bit; 0 for CodedFramesX).
        cts_ms: i32,
        /// The NAL units, each behind its big-endian length.
        data: Bytes,
    },
    /// End of sequence (AVCPacketType 2 / PacketType SequenceEnd).
    EndOfSequence,
    /// FrameType 5 (a video info/command frame) or PacketType Metadata: carries no picture.
    Command,
    /// Any other codec or packet: a legacy CodecID (e.g. 2 = Sorenson), an Enhanced RTMP FourCC
    /// other than `avc1`/`hvc1`/`av01`/`vp09`, a multitrack / ModEx packet, or AV1's
    /// MPEG2TSSequenceStart.
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

/// Parses a VIDEODATA body, legacy or Enhanced RTMP. Errors: [`FlvError::Truncated`].
pub fn parse_video(body: &Bytes) -> Result<VideoTag, FlvError> {
    let first = *body.first().ok_or(FlvError::Truncated { kind: "video", len: 0, needed: 1 })?;
    if first & 0x80 != 0 {
        return parse_enhanced_video(body, first);
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
    let cts_ms = si24(&body[2..5]);
    Ok(match body[1] {
        0 => VideoTag::SequenceHeader { codec: VideoCodec::Avc, record: body.slice(5..) },
        1 => VideoTag::Frame { codec: VideoCodec::Avc, keyframe: frame_type == 1, cts_ms, data: body.slice(5..) },
        _ => VideoTag::EndOfSequence,
    })
}

/// A signed 24-bit big-endian integer (SI24).
fn si24(b: &[u8]) -> i32 {
    let raw = u32::from(b[0]) << 16 | u32::from(b[1]) << 8 | u32::from(b[2]);
    ((raw << 8) as i32) >> 8
}

/// Enhanced RTMP (veovera "Enhanced RTMP" v1/v2, ExVideoTagHeader):
/// `[IsExHeader:1][FrameType:3][PacketType:4][FourCC:4]`, then per PacketType: 0 SequenceStart
/// (the codec's configuration record), 1 CodedFrames (for `avc1`/`hvc1` an SI24 composition time,
/// then data; for `av01` and `vp09` data only), 2 SequenceEnd, 3 CodedFramesX (data, composition time 0), 4 Metadata,
/// 5 MPEG2TSSequenceStart, 6 Multitrack, 7 ModEx.
fn parse_enhanced_video(body: &Bytes, first: u8) -> Result<VideoTag, FlvError> {
    let frame_type = (first >> 4) & 0x07;
    let packet_type = first & 0x0f;
    if packet_type == 6 || packet_type == 7 {
        return Ok(VideoTag::Unsupported(format!("enhanced RTMP video packet type {packet_type} (multitrack/ModEx)")));
    }
    if body.len() < 5 {
        return Err(FlvError::Truncated { kind: "video", len: body.len(), needed: 5 });
    }
    let codec = match &body[1..5] {
        b"avc1" => VideoCodec::Avc,
        b"hvc1" => VideoCodec::Hevc,
        b"av01" => VideoCodec::Av1,
        b"vp09" => VideoCodec::Vp9,
        other => return Ok(VideoTag::Unsupported(format!("enhanced RTMP video '{}'", String::from_utf8_lossy(other)))),
    };
    if frame_type == 5 && packet_type != 4 {
        return Ok(VideoTag::Command);
    }
    let keyframe = frame_type == 1;
    Ok(match packet_type {
        0 => VideoTag::SequenceHeader { codec, record: body.slice(5..) },
        // Only avc1 and hvc1 carry a composition time; AV1 and VP9 have no reordering at this level.
        1 if matches!(codec, VideoCodec::Av1 | VideoCodec::Vp9) => VideoTag::Frame { codec, keyframe, cts_ms: 0, data: body.slice(5..) },
        1 => {
            if body.len() < 8 {
                return Err(FlvError::Truncated { kind: "video", len: body.len(), needed: 8 });
            }
            VideoTag::Frame { codec, keyframe, cts_ms: si24(&body[5..8]), data: body.slice(8..) }
        }
        2 => VideoTag::EndOfSequence,
        3 => VideoTag::Frame { codec, keyframe, cts_ms: 0, data: body.slice(5..) },
        4 => VideoTag::Command,
        other => VideoTag::Unsupported(format!("enhanced RTMP video packet type {other}")),
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
        assert_eq!(parse_video(&b), Ok(VideoTag::SequenceHeader { codec: VideoCodec::Avc, record: Bytes::from_static(&[1, 2, 3]) }));
        let b = Bytes::from_static(&[0x27, 0x01, 0xff, 0xff, 0xd8, 9]);
        assert_eq!(
            parse_video(&b),
            Ok(VideoTag::Frame { codec: VideoCodec::Avc, keyframe: false, cts_ms: -40, data: Bytes::from_static(&[9]) })
        );
        let b = Bytes::from_static(&[0x17, 0x01, 0x00, 0x00, 0x50]);
        assert!(matches!(parse_video(&b), Ok(VideoTag::Frame { keyframe: true, cts_ms: 80, .. })));
        assert!(matches!(parse_video(&Bytes::from_static(&[0x12, 0])), Ok(VideoTag::Unsupported(_))));
        assert!(parse_video(&Bytes::from_static(&[0x17, 0x01])).is_err());
        assert!(parse_video(&Bytes::new()).is_err());
    }

    #[test]
    fn enhanced_rtmp_video_tags() {
        // Key frame (1), SequenceStart (0), hvc1.
        let b = Bytes::from_static(b"\x90hvc1\x01\x02");
        assert_eq!(parse_video(&b), Ok(VideoTag::SequenceHeader { codec: VideoCodec::Hevc, record: Bytes::from_static(&[1, 2]) }));
        // Inter frame (2), CodedFrames (1) with SI24 composition time 80 ms.
        let b = Bytes::from_static(b"\xa1hvc1\x00\x00\x50\x00\x00\x00\x01\x02");
        assert_eq!(
            parse_video(&b),
            Ok(VideoTag::Frame { codec: VideoCodec::Hevc, keyframe: false, cts_ms: 80, data: Bytes::from_static(&[0, 0, 0, 1, 2]) })
        );
        // Key frame, CodedFramesX (3): no composition time.
        let b = Bytes::from_static(b"\x93hvc1\x07");
        assert_eq!(parse_video(&b), Ok(VideoTag::Frame { codec: VideoCodec::Hevc, keyframe: true, cts_ms: 0, data: Bytes::from_static(&[7]) }));
        // avc1 through the enhanced header is plain H.264.
        assert!(matches!(parse_video(&Bytes::from_static(b"\x90avc1\x01")), Ok(VideoTag::SequenceHeader { codec: VideoCodec::Avc, .. })));
        assert_eq!(parse_video(&Bytes::from_static(b"\x92hvc1")), Ok(VideoTag::EndOfSequence));
        assert_eq!(parse_video(&Bytes::from_static(b"\x94hvc1\x02")), Ok(VideoTag::Command));
        assert_eq!(parse_video(&Bytes::from_static(b"\x90av01\x81")), Ok(VideoTag::SequenceHeader { codec: VideoCodec::Av1, record: Bytes::from_static(&[0x81]) }));
        assert_eq!(
            parse_video(&Bytes::from_static(b"\x91av01\x12\x00")),
            Ok(VideoTag::Frame { codec: VideoCodec::Av1, keyframe: true, cts_ms: 0, data: Bytes::from_static(&[0x12, 0]) })
        );
        assert_eq!(parse_video(&Bytes::from_static(b"\x90vp09\x01")), Ok(VideoTag::SequenceHeader { codec: VideoCodec::Vp9, record: Bytes::from_static(&[1]) }));
        assert!(matches!(parse_video(&Bytes::from_static(b"\x90vvc1\x01")), Ok(VideoTag::Unsupported(s)) if s.contains("vvc1")));
        assert!(matches!(parse_video(&Bytes::from_static(b"\x96\x00hvc1")), Ok(VideoTag::Unsupported(s)) if s.contains("multitrack")));
        assert!(parse_video(&Bytes::from_static(b"\x91hvc1\x00")).is_err());
        assert!(parse_video(&Bytes::from_static(b"\x90hv")).is_err());
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
