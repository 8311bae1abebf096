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
        // NAL header + profile_idc + constraint flags + level_idc at least. (h264-reader panics on
        // an empty NAL unit: found by the flv_tags fuzz target.)
        if sps_nal.len() < 4 {
            return Err(MediaError::Sps(format!("SPS of {} bytes is too short", sps_nal.len())));
        }
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

    /// Builds the configuration from one SPS and one PPS NAL unit (each with its NAL header byte,
    /// without start code), as an encoder emits them in Annex B.
    ///
    /// Errors: as [`AvcConfig::parse`], or [`MediaError::AvcConfig`] when the SPS is shorter than 4 bytes.
    pub fn from_parameter_sets(sps: &[u8], pps: &[u8]) -> Result<Self, MediaError> {
        let avcc = Avcc::new(sps, pps).map_err(|e| MediaError::AvcConfig(e.to_string()))?;
        let mut record = Vec::new();
        avcc.encode_body(&mut record).map_err(|e| MediaError::AvcConfig(e.to_string()))?;
        Self::parse(&record)
    }

    /// Size in bytes of the NAL unit length prefix used in samples (1, 2 or 4).
    pub fn nal_length_size(&self) -> u8 {
        self.avcc.length_size
    }
}

/// H.264 NAL unit types used here (ITU-T H.264 Table 7-1).
pub mod nal_type {
    /// Coded slice of an IDR picture.
    pub const IDR: u8 = 5;
    /// Sequence parameter set.
    pub const SPS: u8 = 7;
    /// Picture parameter set.
    pub const PPS: u8 = 8;
    /// Access unit delimiter.
    pub const AUD: u8 = 9;
}

/// The NAL units of an Annex B byte stream (ITU-T H.264 Annex B), split on 3- and 4-byte start codes.
/// Trailing zero bytes of a unit (trailing_zero_8bits) are dropped.
pub fn annexb_nal_units(data: &[u8]) -> Vec<&[u8]> {
    let mut starts = Vec::new();
    let mut i = 0;
    while i + 3 <= data.len() {
        if data[i] == 0 && data[i + 1] == 0 && data[i + 2] == 1 {
            starts.push(i + 3);
            i += 3;
        } else {
            i += 1;
        }
    }
    let mut units = Vec::with_capacity(starts.len());
    for (k, &start) in starts.iter().enumerate() {
        let mut end = starts.get(k + 1).map(|n| n - 3).unwrap_or(data.len());
        while end > start && data[end - 1] == 0 {
            end -= 1;
        }
        if end > start {
            units.push(&data[start..end]);
        }
    }
    units
}

/// The NAL units of an AVCC sample (each behind a big-endian length of `length_size` bytes).
///
/// Errors: [`MediaError::AvcConfig`] when a length runs past the end of the sample.
pub fn avcc_nal_units(sample: &[u8], length_size: u8) -> Result<Vec<&[u8]>, MediaError> {
    let n = usize::from(length_size.clamp(1, 4));
    let mut units = Vec::new();
    let mut rest = sample;
    while !rest.is_empty() {
        if rest.len() < n {
            return Err(MediaError::AvcConfig("truncated NAL unit length".into()));
        }
        let len = rest[..n].iter().fold(0usize, |acc, b| (acc << 8) | usize::from(*b));
        rest = &rest[n..];
        if len > rest.len() {
            return Err(MediaError::AvcConfig(format!("NAL unit of {len} bytes overruns the sample")));
        }
        units.push(&rest[..len]);
        rest = &rest[len..];
    }
    Ok(units)
}

/// Writes NAL units as one AVCC sample with 4-byte lengths.
pub fn to_avcc(units: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::with_capacity(units.iter().map(|u| u.len() + 4).sum());
    for u in units {
        out.extend_from_slice(&(u.len() as u32).to_be_bytes());
        out.extend_from_slice(u);
    }
    out
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
    fn annexb_and_avcc_round_trip() {
        let stream = [0, 0, 0, 1, 0x67, 1, 2, 0, 0, 1, 0x68, 3, 0, 0, 0, 1, 0x65, 4, 5, 0];
        let units = annexb_nal_units(&stream);
        assert_eq!(units, vec![&[0x67, 1, 2][..], &[0x68, 3][..], &[0x65, 4, 5][..]]);
        let sample = to_avcc(&units);
        assert_eq!(avcc_nal_units(&sample, 4).expect("split"), units);
        assert!(avcc_nal_units(&sample[..sample.len() - 1], 4).is_err());
    }

    #[test]
    fn config_from_parameter_sets() {
        let parsed = AvcConfig::parse(SAMPLE_AVCC_720P).expect("parse");
        let sps = &parsed.avcc.sequence_parameter_sets[0];
        let pps = &parsed.avcc.picture_parameter_sets[0];
        let built = AvcConfig::from_parameter_sets(sps, pps).expect("build");
        assert_eq!((built.width, built.height, built.codec_string()), (1280, 720, "avc1.64001f".to_string()));
    }

    /// Regression: an avcC with one empty SPS made h264-reader panic (tests/fuzz, flv_tags).
    #[test]
    fn rejects_empty_sps_without_panicking() {
        let record = [0x01, 0x00, 0x00, 0x00, 0xff, 0xe1, 0x00, 0x00, 0x00];
        assert!(matches!(AvcConfig::parse(&record), Err(MediaError::Sps(_)) | Err(MediaError::AvcConfig(_))));
        let body = [0x17, 0x00, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0xff, 0xe1, 0x00, 0x00, 0x00];
        assert!(AvcConfig::parse(&body[5..]).is_err());
    }

    #[test]
    fn rejects_truncated_record() {
        assert!(AvcConfig::parse(&SAMPLE_AVCC_720P[..10]).is_err());
        assert!(AvcConfig::parse(&[]).is_err());
    }
}
