//! Media frame and track types shared by ingest, packaging and the origin.
//!
//! Everything here is plain data plus parsers for codec configuration records; nothing does I/O.
//! Timestamps are integers in a track's *timescale* (ticks per second): [`VIDEO_TIMESCALE`]
//! (90 kHz) for video and the sample rate for audio, so converting from RTMP's millisecond
//! timeline is exact (see [`timing`]).

pub mod aac;
pub mod av1;
pub mod avc;
pub mod hevc;
pub mod timing;
pub mod vp9;

use std::time::Instant;

use bytes::Bytes;

pub use aac::AacConfig;
pub use av1::Av1Config;
pub use avc::AvcConfig;
pub use hevc::HevcConfig;
pub use vp9::Vp9Config;

/// Timescale of every video track: 90 kHz, as in MPEG-TS and most CMAF video (ISO/IEC 23000-19 §9.2).
pub const VIDEO_TIMESCALE: u32 = 90_000;

/// Errors from parsing codec configuration carried in-band by an encoder.
#[derive(Debug, thiserror::Error)]
pub enum MediaError {
    /// The AVCDecoderConfigurationRecord (ISO/IEC 14496-15 §5.3.3.1) could not be parsed.
    #[error("invalid AVCDecoderConfigurationRecord: {0}")]
    AvcConfig(String),
    /// The HEVCDecoderConfigurationRecord (ISO/IEC 14496-15 §8.3.3.1) could not be parsed.
    #[error("invalid HEVCDecoderConfigurationRecord: {0}")]
    HevcConfig(String),
    /// The AV1CodecConfigurationRecord (AV1 ISOBMFF binding §2.3) could not be parsed.
    #[error("invalid AV1CodecConfigurationRecord: {0}")]
    Av1Config(String),
    /// The VPCodecConfigurationRecord (VP codec ISOBMFF binding §2.2) or the first key frame's
    /// header could not be parsed.
    #[error("invalid VP9 configuration: {0}")]
    Vp9Config(String),
    /// The record parsed but holds no sequence parameter set (AV1: no sequence header OBU).
    #[error("AVCDecoderConfigurationRecord has no SPS")]
    MissingSps,
    /// The SPS (ITU-T H.264 §7.3.2.1.1 or H.265 §7.3.2.2) could not be parsed.
    #[error("invalid SPS: {0}")]
    Sps(String),
    /// The AudioSpecificConfig (ISO/IEC 14496-3 §1.6.2.1) could not be parsed.
    #[error("invalid AudioSpecificConfig: {0}")]
    AudioSpecificConfig(String),
}

/// Whether a track carries video or audio.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TrackKind {
    /// A video track (timescale [`VIDEO_TIMESCALE`]).
    Video,
    /// An audio track (timescale = sample rate).
    Audio,
}

/// Codec configuration of one track, as needed to write its init segment and its CODECS string.
#[derive(Debug, Clone, PartialEq)]
pub enum TrackConfig {
    /// H.264 video.
    Avc(AvcConfig),
    /// H.265/HEVC video (Enhanced RTMP `hvc1`, or MPEG-TS stream type 0x24).
    Hevc(HevcConfig),
    /// AV1 video (Enhanced RTMP `av01`).
    Av1(Av1Config),
    /// VP9 video (Enhanced RTMP `vp09`).
    Vp9(Vp9Config),
    /// AAC audio.
    Aac(AacConfig),
}

impl TrackConfig {
    /// Video or audio.
    pub fn kind(&self) -> TrackKind {
        match self {
            TrackConfig::Avc(_) | TrackConfig::Hevc(_) | TrackConfig::Av1(_) | TrackConfig::Vp9(_) => TrackKind::Video,
            TrackConfig::Aac(_) => TrackKind::Audio,
        }
    }

    /// Ticks per second of this track's timestamps: 90 000 for video, the sample rate for audio.
    pub fn timescale(&self) -> u32 {
        match self {
            TrackConfig::Avc(_) | TrackConfig::Hevc(_) | TrackConfig::Av1(_) | TrackConfig::Vp9(_) => VIDEO_TIMESCALE,
            TrackConfig::Aac(a) => a.sample_rate,
        }
    }

    /// Picture size in pixels, for video.
    pub fn resolution(&self) -> Option<(u32, u32)> {
        match self {
            TrackConfig::Avc(v) => Some((v.width, v.height)),
            TrackConfig::Hevc(v) => Some((v.width, v.height)),
            TrackConfig::Av1(v) => Some((v.width, v.height)),
            TrackConfig::Vp9(v) => Some((v.width, v.height)),
            TrackConfig::Aac(_) => None,
        }
    }

    /// Frames per second signalled in the SPS, for video.
    pub fn frame_rate(&self) -> Option<f64> {
        match self {
            TrackConfig::Avc(v) => v.frame_rate,
            TrackConfig::Hevc(v) => v.frame_rate,
            TrackConfig::Av1(v) => v.frame_rate,
            TrackConfig::Vp9(_) => None,
            TrackConfig::Aac(_) => None,
        }
    }

    /// Channel count, for audio.
    pub fn channels(&self) -> Option<u16> {
        match self {
            TrackConfig::Aac(a) => Some(a.channel_count()),
            TrackConfig::Avc(_) | TrackConfig::Hevc(_) | TrackConfig::Av1(_) | TrackConfig::Vp9(_) => None,
        }
    }

    /// The RFC 6381 codec string for the CODECS attribute (RFC 8216bis §4.4.6.2), e.g.
    /// `avc1.64001f` or `mp4a.40.2`.
    pub fn codec_string(&self) -> String {
        match self {
            TrackConfig::Avc(v) => v.codec_string(),
            TrackConfig::Hevc(v) => v.codec_string(),
            TrackConfig::Av1(v) => v.codec_string(),
            TrackConfig::Vp9(v) => v.codec_string(),
            TrackConfig::Aac(a) => a.codec_string(),
        }
    }
}

/// One access unit (a video picture or an AAC frame) on its track's timeline.
#[derive(Debug, Clone)]
pub struct Frame {
    /// Decode timestamp in the track's timescale (90 kHz ticks for video, samples for audio).
    pub dts: u64,
    /// Composition offset: presentation time minus decode time, in the same ticks (ISO/IEC 14496-12 §8.6.1.3).
    pub cts_offset: i32,
    /// True for an IDR picture (a random access point); always true for audio.
    pub keyframe: bool,
    /// For H.264 and HEVC: length-prefixed NAL units (4-byte lengths); for AV1: OBUs with obu_size,
    /// without temporal delimiters; for VP9: one frame or superframe; for AAC: one raw frame
    /// without ADTS header.
    pub data: Bytes,
    /// When the ingest received the message that carried this frame; used for ingest-to-part latency.
    pub received: Instant,
}
