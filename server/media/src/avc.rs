//! H.264 decoder configuration (AVCDecoderConfigurationRecord, ISO/IEC 14496-15 §5.3.3.1).

use bytes::Bytes;
use h264_reader::nal::sps::SeqParameterSet;
use h264_reader::rbsp::{decode_nal, BitReader};
use mp4_atom::{Atom, Avcc};

use crate::MediaError;

/// An H.264 track's configuration, parsed from the AVCDecoderConfigurationRecord that an encoder sends
/// (in FLV: the AVC sequence header, E.4.3.1 of the FLV spec).
#[derive(Debug, Clone, PartialEq)]
pub struct AvcConfig {
    /// The record, decoded; written back as the `avcC` box of the init segment.
    pub avcc: Avcc,
    /// The record's bytes as received.
    pub record: Bytes,
    /// Coded picture width in pixels, after SPS cropping.
    pub width: u32,
    /// Coded picture height in pixels, after SPS cropping.
    pub height: u32,
    /// Frames per second from the SPS VUI timing info, when the encoder signals it.
    pub frame_rate: Option<f64>,
}

/// A real AVCDecoderConfigurationRecord, written by Debian's FFmpeg 5.1 with libx264 for 1280x720
/// High@3.1 (the `avcC` box of an mp4). For tests and examples in every crate.
pub const SAMPLE_AVCC_720P: &[u8] = &[
    0x01, 0x64, 0x00, 0x1f, 0xff, 0xe1, 0x00, 0x1a, 0x67, 0x64, 0x00, 0x1f, 0xac, 0xd9, 0x40, 0x50, 0x05, 0xbb, 0x01,
    0x10, 0x00, 0x00, 0x03, 0x00, 0x10, 0x00, 0x00, 0x03, 0x03, 0xc0, 0xf1, 0x83, 0x19, 0x60, 0x01, 0x00, 0x04, 0x68,
    0xef, 0x8f, 0xcb, 0xfd, 0xf8, 0xf8, 0x00,
];

impl AvcConfig {
    /// Parses an AVCDecoderConfigurationRecord and its first SPS (ITU-T H.264 §7.3.2.1.1).
    ///
    /// Errors: [`MediaError::AvcConfig`] for a truncated or malformed record, [`MediaError::MissingSps`]
    /// when it has no SPS, [`MediaError::Sps`] when the SPS cannot be parsed.
    pub fn parse(record: &[u8]) -> Result<Self, MediaError> {
        let mut buf = record;
        let avcc = Avcc::decode_body(&mut buf).map_err(|e| MediaError::AvcConfig(e.to_string()))?;
        let sps_nal = avcc.sequence_parameter_sets.first().ok_or(MediaError::MissingSps)?;
        let rbsp = decode_nal(sps_nal).map_err(|e| MediaError::Sps(e.to_string()))?;
        let sps = SeqParameterSet::from_bits(BitReader::new(&*rbsp)).map_err(|e| MediaError::Sps(format!("{e:?}")))?;
        let (width, height) = sps.pixel_dimensions().map_err(|e| MediaError::Sps(format!("{e:?}")))?;
        let frame_rate = sps.fps().filter(|f| f.is_finite() && *f > 0.0 && *f <= 1000.0);
        Ok(AvcConfig { avcc, record: Bytes::copy_from_slice(record), width, height, frame_rate })
    }

    /// RFC 6381 §3.3 codec string: `avc1.` followed by profile_idc, constraint flags and level_idc in hex.
    pub fn codec_string(&self) -> String {
        format!(
            "avc1.{:02x}{:02x}{:02x}",
            self.avcc.avc_profile_indication, self.avcc.profile_compatibility, self.avcc.avc_level_indication
        )
    }

    /// Size in bytes of the NAL unit length prefix used in samples (1, 2 or 4).
    pub fn nal_length_size(&self) -> u8 {
        self.avcc.length_size
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_x264_record() {
        let cfg = AvcConfig::parse(SAMPLE_AVCC_720P).expect("parse");
        assert_eq!((cfg.width, cfg.height), (1280, 720));
        assert_eq!(cfg.codec_string(), "avc1.64001f");
        assert_eq!(cfg.nal_length_size(), 4);
    }

    #[test]
    fn rejects_truncated_record() {
        assert!(AvcConfig::parse(&SAMPLE_AVCC_720P[..10]).is_err());
        assert!(AvcConfig::parse(&[]).is_err());
    }
}
