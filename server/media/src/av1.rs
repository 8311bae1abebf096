//! AV1 decoder configuration (AV1CodecConfigurationRecord, "AV1 Codec ISO Media File Format
//! Binding" §2.3), as Enhanced RTMP carries it in an `av01` SequenceStart and CMAF in the `av1C`
//! box, plus the OBU framing rule CMAF samples follow (§2.4: no temporal delimiter OBUs).
//!
//! The record is decoded with `mp4-atom`; picture size and frame rate come from the sequence
//! header OBU in its configOBUs (AV1 spec §5.5), parsed with `scuffle-av1`.

use bytes::Bytes;
use mp4_atom::{Atom, Av1c};

use crate::MediaError;

/// A real AV1CodecConfigurationRecord from Debian's FFmpeg 5.1 with SVT-AV1 1.4.1, 640x360 Main
/// (the `av1C` box of an mp4, with its sequence header OBU). For tests in every crate.
pub const SAMPLE_AV1C_360P: &[u8] = &[0x81, 0x01, 0x0c, 0x00, 0x0a, 0x0b, 0x00, 0x00, 0x00, 0x0c, 0xc4, 0xff, 0x67, 0x00, 0xbe, 0x00, 0x10];

/// An AV1 track's configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Av1Config {
    /// The record, decoded; written back as the `av1C` box of the init segment.
    pub av1c: Av1c,
    /// The record's bytes as received.
    pub record: Bytes,
    /// max_frame_width_minus_1 + 1 of the sequence header, pixels.
    pub width: u32,
    /// max_frame_height_minus_1 + 1 of the sequence header, pixels.
    pub height: u32,
    /// Frames per second from the sequence header's timing_info, when present.
    pub frame_rate: Option<f64>,
}

impl Av1Config {
    /// Parses an AV1CodecConfigurationRecord and the sequence header OBU in its configOBUs.
    ///
    /// Errors: [`MediaError::Av1Config`] for a malformed record, [`MediaError::MissingSps`] when
    /// it carries no sequence header, [`MediaError::Sps`] when that cannot be parsed.
    pub fn parse(record: &[u8]) -> Result<Self, MediaError> {
        let mut buf = record;
        let av1c = Av1c::decode_body(&mut buf).map_err(|e| MediaError::Av1Config(e.to_string()))?;
        let obus = av1c.config_obus.clone();
        // scuffle-av1 is a third-party bit reader: keep a malformed header from panicking ingest.
        let header = std::panic::catch_unwind(move || sequence_header(&obus))
            .map_err(|_| MediaError::Sps("malformed AV1 sequence header (the parser gave up)".into()))??;
        let size = |v: u64| u32::try_from(v).ok().filter(|v| (1..=65_536).contains(v));
        let (Some(width), Some(height)) = (size(header.max_frame_width), size(header.max_frame_height)) else {
            return Err(MediaError::Sps(format!("picture size {}x{} out of range", header.max_frame_width, header.max_frame_height)));
        };
        let frame_rate = header
            .timing_info
            .as_ref()
            .filter(|t| t.num_units_in_display_tick > 0)
            .map(|t| f64::from(t.time_scale) / f64::from(t.num_units_in_display_tick))
            .filter(|f| f.is_finite() && *f > 0.0 && *f <= 1000.0);
        Ok(Av1Config { av1c, record: Bytes::copy_from_slice(record), width, height, frame_rate })
    }

    /// The RFC 6381 codec string of the AV1 ISOBMFF binding (Codecs Parameter String):
    /// `av01.P.LLT.DD`, e.g. `av01.0.08M.08` (profile, level and tier, bit depth).
    pub fn codec_string(&self) -> String {
        let c = &self.av1c;
        let depth = match (c.high_bitdepth, c.twelve_bit) {
            (false, _) => 8,
            (true, false) => 10,
            (true, true) => 12,
        };
        let tier = if c.seq_tier_0 { 'H' } else { 'M' };
        format!("av01.{}.{:02}{tier}.{depth:02}", c.seq_profile, c.seq_level_idx_0)
    }
}

/// The first sequence header OBU among `obus` (each with obu_has_size_field set, as configOBUs must).
fn sequence_header(obus: &[u8]) -> Result<scuffle_av1::seq::SequenceHeaderObu, MediaError> {
    let mut cursor = std::io::Cursor::new(obus);
    while (cursor.position() as usize) < obus.len() {
        let header = scuffle_av1::ObuHeader::parse(&mut cursor).map_err(|e| MediaError::Av1Config(e.to_string()))?;
        let size = header.size.ok_or_else(|| MediaError::Av1Config("configOBUs without obu_size".into()))?;
        let start = cursor.position() as usize;
        let end = start.checked_add(usize::try_from(size).unwrap_or(usize::MAX)).filter(|e| *e <= obus.len());
        let end = end.ok_or_else(|| MediaError::Av1Config("OBU runs past the record".into()))?;
        if header.obu_type == scuffle_av1::ObuType::SequenceHeader {
            let mut body = &obus[start..end];
            return scuffle_av1::seq::SequenceHeaderObu::parse(header, &mut body).map_err(|e| MediaError::Sps(e.to_string()));
        }
        cursor.set_position(end as u64);
    }
    Err(MediaError::MissingSps)
}

/// Removes temporal delimiter OBUs (obu_type 2) from a temporal unit, as CMAF samples must not
/// carry them (AV1 ISOBMFF binding §2.4). Data whose OBUs lack obu_size, or that does not parse,
/// is returned unchanged.
pub fn strip_temporal_delimiters(data: &Bytes) -> Bytes {
    let mut keep: Vec<(usize, usize)> = Vec::new();
    let mut dropped = false;
    let mut pos = 0;
    while pos < data.len() {
        let head = data[pos];
        let obu_type = (head >> 3) & 0x0f;
        let ext = (head >> 2) & 1 == 1;
        if (head >> 1) & 1 == 0 {
            return data.clone(); // no obu_size: cannot walk
        }
        let mut at = pos + 1 + usize::from(ext);
        let mut size: u64 = 0;
        for i in 0..8 {
            let Some(&b) = data.get(at) else { return data.clone() };
            at += 1;
            size |= u64::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                break;
            }
        }
        let end = match usize::try_from(size).ok().and_then(|s| at.checked_add(s)).filter(|e| *e <= data.len()) {
            Some(e) => e,
            None => return data.clone(),
        };
        if obu_type == 2 {
            dropped = true;
        } else {
            keep.push((pos, end));
        }
        pos = end;
    }
    if !dropped {
        return data.clone();
    }
    let mut out = Vec::with_capacity(data.len());
    for (s, e) in keep {
        out.extend_from_slice(&data[s..e]);
    }
    Bytes::from(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn temporal_delimiters_are_removed() {
        // TD (type 2, size 0), then a padding OBU (type 15) of 2 bytes.
        let tu = Bytes::from_static(&[0x12, 0x00, 0x7a, 0x02, 0xaa, 0xbb]);
        assert_eq!(strip_temporal_delimiters(&tu), Bytes::from_static(&[0x7a, 0x02, 0xaa, 0xbb]));
        // Nothing to remove, or not walkable: unchanged.
        let plain = Bytes::from_static(&[0x7a, 0x01, 0xaa]);
        assert_eq!(strip_temporal_delimiters(&plain), plain);
        let truncated = Bytes::from_static(&[0x12, 0x05, 0x00]);
        assert_eq!(strip_temporal_delimiters(&truncated), truncated);
    }

    #[test]
    fn parses_a_real_record() {
        let c = Av1Config::parse(SAMPLE_AV1C_360P).expect("SVT-AV1 record");
        assert_eq!((c.width, c.height), (640, 360));
        assert_eq!(c.codec_string(), "av01.0.01M.08");
    }

    #[test]
    fn rejects_bad_records() {
        assert!(matches!(Av1Config::parse(&[]), Err(MediaError::Av1Config(_))));
        // A valid 4-byte header with no configOBUs.
        assert!(matches!(Av1Config::parse(&[0x81, 0x08, 0x0c, 0x00]), Err(MediaError::MissingSps)));
    }
}
