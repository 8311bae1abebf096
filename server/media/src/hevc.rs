//! H.265/HEVC decoder configuration (HEVCDecoderConfigurationRecord, ISO/IEC 14496-15 §8.3.3.1),
//! as Enhanced RTMP carries it in a `hvc1` SequenceStart and CMAF in the `hvcC` box.
//!
//! The record is decoded with `mp4-atom` (so it is written back unchanged); picture size and frame
//! rate come from its first SPS (ITU-T H.265 §7.3.2.2), parsed with `scuffle-h265`.

use bytes::Bytes;
use mp4_atom::{Atom, Hvcc};


use crate::MediaError;

/// HEVC NAL unit types used here (ITU-T H.265 Table 7-1).
pub mod nal_type {
    /// First IRAP type (BLA_W_LP); IRAP pictures are types 16..=23.
    pub const BLA_W_LP: u8 = 16;
    /// Last reserved IRAP type.
    pub const RSV_IRAP_23: u8 = 23;
    /// Video parameter set.
    pub const VPS: u8 = 32;
    /// Sequence parameter set.
    pub const SPS: u8 = 33;
    /// Picture parameter set.
    pub const PPS: u8 = 34;
    /// Access unit delimiter.
    pub const AUD: u8 = 35;
}

/// The NAL unit type of an HEVC NAL unit (6 bits after the forbidden zero bit, §7.3.1.2).
pub fn hevc_nal_type(nal: &[u8]) -> Option<u8> {
    nal.first().map(|b| (b >> 1) & 0x3f)
}

/// A real HEVCDecoderConfigurationRecord from Debian's FFmpeg 5.1 with libx265 3.5, 1280x720 Main@L3.1
/// (the `hvcC` box of an mp4, VPS + SPS + PPS). For tests in every crate.
pub const SAMPLE_HVCC_720P: &[u8] = &[
    0x01, 0x01, 0x60, 0x00, 0x00, 0x00, 0x90, 0x00, 0x00, 0x00, 0x00, 0x00, 0x5d, 0xf0, 0x00, 0xfc, 0xfd, 0xf8, 0xf8,
    0x00, 0x00, 0x0f, 0x03, 0xa0, 0x00, 0x01, 0x00, 0x18, 0x40, 0x01, 0x0c, 0x01, 0xff, 0xff, 0x01, 0x60, 0x00, 0x00,
    0x03, 0x00, 0x90, 0x00, 0x00, 0x03, 0x00, 0x00, 0x03, 0x00, 0x5d, 0x95, 0x98, 0x09, 0xa1, 0x00, 0x01, 0x00, 0x2b,
    0x42, 0x01, 0x01, 0x01, 0x60, 0x00, 0x00, 0x03, 0x00, 0x90, 0x00, 0x00, 0x03, 0x00, 0x00, 0x03, 0x00, 0x5d, 0xa0,
    0x02, 0x80, 0x80, 0x2d, 0x16, 0x59, 0x59, 0xa4, 0x93, 0x2b, 0xc0, 0x5a, 0x02, 0x00, 0x00, 0x03, 0x00, 0x02, 0x00,
    0x00, 0x03, 0x00, 0x32, 0x10, 0xa2, 0x00, 0x01, 0x00, 0x07, 0x44, 0x01, 0xc1, 0x72, 0xb4, 0x62, 0x40,
];

/// An HEVC track's configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct HevcConfig {
    /// The record, decoded; written back as the `hvcC` box of the init segment.
    pub hvcc: Hvcc,
    /// The record's bytes as received.
    pub record: Bytes,
    /// Picture width in pixels, after the SPS conformance window.
    pub width: u32,
    /// Picture height in pixels, after the SPS conformance window.
    pub height: u32,
    /// Frames per second from the SPS VUI timing info, when the encoder signals it.
    pub frame_rate: Option<f64>,
}

impl HevcConfig {
    /// Parses an HEVCDecoderConfigurationRecord and its first SPS.
    ///
    /// Errors: [`MediaError::HevcConfig`] for a truncated or malformed record,
    /// [`MediaError::MissingSps`] when it holds no SPS, [`MediaError::Sps`] when the SPS cannot be parsed.
    pub fn parse(record: &[u8]) -> Result<Self, MediaError> {
        let mut buf = record;
        let hvcc = Hvcc::decode_body(&mut buf).map_err(|e| MediaError::HevcConfig(e.to_string()))?;
        let sps_nal = hvcc
            .arrays
            .iter()
            .filter(|a| a.nal_unit_type == nal_type::SPS)
            .flat_map(|a| a.nalus.iter())
            .next()
            .ok_or(MediaError::MissingSps)?;
        let sps = sps_facts(sps_nal)?;
        let (width, height) = match (u32::try_from(sps.width), u32::try_from(sps.height)) {
            (Ok(w), Ok(h)) if (1..=16_384).contains(&w) && (1..=16_384).contains(&h) => (w, h),
            _ => return Err(MediaError::Sps(format!("picture size {}x{} out of range", sps.width, sps.height))),
        };
        let frame_rate = sps.frame_rate.filter(|f| f.is_finite() && *f > 0.0 && *f <= 1000.0);
        Ok(HevcConfig { hvcc, record: Bytes::copy_from_slice(record), width, height, frame_rate })
    }

    /// Builds the configuration from one VPS, SPS and PPS NAL unit (each with its 2-byte NAL header,
    /// without start code), as an encoder emits them in Annex B (MPEG-TS over SRT). The record's
    /// profile, tier, level and constraint fields are the SPS's general_profile_tier_level (H.265
    /// §7.3.3), which starts byte-aligned at the third byte of the SPS RBSP.
    ///
    /// Errors: as [`HevcConfig::parse`]; [`MediaError::Sps`] when the SPS is too short.
    pub fn from_parameter_sets(vps: &[u8], sps: &[u8], pps: &[u8]) -> Result<Self, MediaError> {
        let rbsp = unescape(sps);
        let ptl = rbsp.get(3..15).ok_or_else(|| MediaError::Sps(format!("SPS of {} bytes is too short", sps.len())))?;
        let parsed = sps_facts(sps)?;
        let mut compat = [0u8; 4];
        compat.copy_from_slice(&ptl[1..5]);
        let mut constraints = [0u8; 6];
        constraints.copy_from_slice(&ptl[5..11]);
        let array = |nal_unit_type: u8, nal: &[u8]| mp4_atom::HvcCArray { completeness: true, nal_unit_type, nalus: vec![nal.to_vec()] };
        let hvcc = Hvcc {
            configuration_version: 1,
            general_profile_space: ptl[0] >> 6,
            general_tier_flag: (ptl[0] >> 5) & 1 == 1,
            general_profile_idc: ptl[0] & 0x1f,
            general_profile_compatibility_flags: compat,
            general_constraint_indicator_flags: constraints,
            general_level_idc: ptl[11],
            min_spatial_segmentation_idc: 0,
            parallelism_type: 0,
            chroma_format_idc: parsed.chroma_format_idc,
            bit_depth_luma_minus8: parsed.bit_depth_luma_minus8,
            bit_depth_chroma_minus8: parsed.bit_depth_chroma_minus8,
            avg_frame_rate: 0,
            constant_frame_rate: 0,
            num_temporal_layers: parsed.max_sub_layers_minus1 + 1,
            temporal_id_nested: parsed.temporal_id_nesting,
            length_size_minus_one: 3,
            arrays: vec![array(nal_type::VPS, vps), array(nal_type::SPS, sps), array(nal_type::PPS, pps)],
        };
        let mut record = Vec::new();
        hvcc.encode_body(&mut record).map_err(|e| MediaError::HevcConfig(e.to_string()))?;
        Self::parse(&record)
    }

    /// The RFC 6381 codec string of ISO/IEC 14496-15 Annex E.3, e.g. `hvc1.1.6.L93.90`: profile
    /// space and profile, the 32 compatibility flags in reverse bit order (hex), tier and level,
    /// then the constraint-indicator bytes without trailing zero bytes.
    pub fn codec_string(&self) -> String {
        let h = &self.hvcc;
        let space = ["", "A", "B", "C"][usize::from(h.general_profile_space & 3)];
        let compat = u32::from_be_bytes(h.general_profile_compatibility_flags).reverse_bits();
        let tier = if h.general_tier_flag { 'H' } else { 'L' };
        let mut out = format!("hvc1.{space}{}.{compat:X}.{tier}{}", h.general_profile_idc, h.general_level_idc);
        let constraints = &h.general_constraint_indicator_flags;
        let used = constraints.iter().rposition(|b| *b != 0).map_or(0, |i| i + 1);
        for b in &constraints[..used] {
            out.push_str(&format!(".{b:X}"));
        }
        out
    }

    /// Size in bytes of the NAL unit length prefix used in samples (1, 2 or 4).
    pub fn nal_length_size(&self) -> u8 {
        self.hvcc.length_size_minus_one + 1
    }
}

/// What OnAir needs from an HEVC SPS.
struct SpsFacts {
    width: u64,
    height: u64,
    frame_rate: Option<f64>,
    chroma_format_idc: u8,
    bit_depth_luma_minus8: u8,
    bit_depth_chroma_minus8: u8,
    max_sub_layers_minus1: u8,
    temporal_id_nesting: bool,
}

/// Reads an SPS NAL unit with `scuffle-h265`. That crate subtracts unchecked on some malformed
/// fields (found by the `hevc_config` fuzz target: in `cropped_width`, around
/// `max_transform_hierarchy_depth_*` in its sps/mod.rs, and in scuffle-expgolomb), which panics where overflow checks are
/// on; such a panic becomes [`MediaError::Sps`], so a bad encoder can never take the ingest task down.
fn sps_facts(nal: &[u8]) -> Result<SpsFacts, MediaError> {
    let read = || {
        let sps = scuffle_h265::SpsNALUnit::parse(std::io::Cursor::new(nal)).map_err(|e| MediaError::Sps(e.to_string()))?;
        let r = &sps.rbsp;
        Ok(SpsFacts {
            width: r.cropped_width(),
            height: r.cropped_height(),
            frame_rate: r
                .vui_parameters
                .as_ref()
                .and_then(|v| v.vui_timing_info.as_ref())
                .map(|t| f64::from(t.time_scale.get()) / f64::from(t.num_units_in_tick.get())),
            chroma_format_idc: r.chroma_format_idc,
            bit_depth_luma_minus8: r.bit_depth_luma_minus8,
            bit_depth_chroma_minus8: r.bit_depth_chroma_minus8,
            max_sub_layers_minus1: r.sps_max_sub_layers_minus1,
            temporal_id_nesting: r.sps_temporal_id_nesting_flag,
        })
    };
    std::panic::catch_unwind(read).map_err(|_| MediaError::Sps("malformed SPS (the parser gave up)".into()))?
}

/// The RBSP of a NAL unit: emulation_prevention_three_byte removed (H.265 §7.3.1.1).
fn unescape(nal: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(nal.len());
    let mut zeros = 0;
    for &b in nal {
        if zeros >= 2 && b == 3 {
            zeros = 0;
            continue;
        }
        zeros = if b == 0 { zeros + 1 } else { 0 };
        out.push(b);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_real_record() {
        let c = HevcConfig::parse(SAMPLE_HVCC_720P).expect("x265 record");
        assert_eq!((c.width, c.height), (1280, 720));
        assert_eq!(c.codec_string(), "hvc1.1.6.L93.90");
        assert_eq!(c.nal_length_size(), 4);
        assert_eq!(c.frame_rate, Some(25.0));
    }

    #[test]
    fn builds_the_record_from_annex_b_parameter_sets() {
        let c = HevcConfig::parse(SAMPLE_HVCC_720P).expect("x265 record");
        let nal = |t: u8| c.hvcc.arrays.iter().find(|a| a.nal_unit_type == t).and_then(|a| a.nalus.first()).expect("set").clone();
        let rebuilt = HevcConfig::from_parameter_sets(&nal(nal_type::VPS), &nal(nal_type::SPS), &nal(nal_type::PPS)).expect("rebuilt");
        assert_eq!(rebuilt.codec_string(), c.codec_string());
        assert_eq!((rebuilt.width, rebuilt.height), (1280, 720));
        assert_eq!(rebuilt.hvcc.chroma_format_idc, c.hvcc.chroma_format_idc);
        assert!(HevcConfig::from_parameter_sets(&[], &[0x42, 0x01], &[]).is_err());
        assert_eq!(unescape(&[0, 0, 3, 1, 0, 0, 3]), vec![0, 0, 1, 0, 0]);
    }

    /// Regression inputs of the `hevc_config` fuzz target (tests/fuzz/regressions/hevc_config).
    #[test]
    fn an_sps_that_makes_the_parser_overflow_is_an_error() {
        for input in [
            &include_bytes!("../../../tests/fuzz/regressions/hevc_config/sps-transform-size-underflow.bin")[..],
            &include_bytes!("../../../tests/fuzz/regressions/hevc_config/sps-cropped-width-overflow.bin")[..],
            &include_bytes!("../../../tests/fuzz/regressions/hevc_config/sps-expgolomb-overflow.bin")[..],
        ] {
            assert!(matches!(HevcConfig::parse(input), Err(MediaError::Sps(_))));
        }
    }

    #[test]
    fn rejects_bad_records() {
        assert!(matches!(HevcConfig::parse(&[]), Err(MediaError::HevcConfig(_))));
        assert!(matches!(HevcConfig::parse(&SAMPLE_HVCC_720P[..30]), Err(MediaError::HevcConfig(_))));
        // A record with no arrays.
        let mut none = SAMPLE_HVCC_720P[..23].to_vec();
        none[22] = 0;
        assert!(matches!(HevcConfig::parse(&none), Err(MediaError::MissingSps)));
        assert_eq!(hevc_nal_type(&[0x42, 0x01]), Some(nal_type::SPS));
    }
}
