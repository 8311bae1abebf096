//! VP9 decoder configuration (VPCodecConfigurationRecord, "VP Codec ISO Media File Format Binding"
//! §2.2), as Enhanced RTMP carries it in a `vp09` SequenceStart and CMAF in the `vpcC` box.
//!
//! The record has no picture size: it comes from the first key frame's uncompressed header
//! (VP9 bitstream spec §6.2), read here with `bitstream-io`.

use bitstream_io::{BigEndian, BitRead, BitReader};
use bytes::Bytes;
use mp4_atom::{Atom, VpcC};

use crate::MediaError;

/// A VP9 track's configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Vp9Config {
    /// The record, decoded; written back as the `vpcC` box of the init segment.
    pub vpcc: VpcC,
    /// The record's bytes as received (version and flags first, as in the box).
    pub record: Bytes,
    /// Picture width of the first key frame, pixels.
    pub width: u32,
    /// Picture height of the first key frame, pixels.
    pub height: u32,
}

impl Vp9Config {
    /// Parses a VPCodecConfigurationRecord (with its FullBox version and flags) and takes the
    /// picture size from `keyframe`, the first key frame's data.
    ///
    /// Errors: [`MediaError::Vp9Config`] for a malformed record or a frame that is not a readable
    /// key frame.
    pub fn parse(record: &[u8], keyframe: &[u8]) -> Result<Self, MediaError> {
        let mut buf = record;
        let vpcc = VpcC::decode_body(&mut buf).map_err(|e| MediaError::Vp9Config(e.to_string()))?;
        let (width, height) = keyframe_size(keyframe).ok_or_else(|| MediaError::Vp9Config("first frame is not a readable key frame".into()))?;
        Ok(Vp9Config { vpcc, record: Bytes::copy_from_slice(record), width, height })
    }

    /// The RFC 6381 codec string of the VP codec ISOBMFF binding (§5): `vp09.PP.LL.DD`, e.g.
    /// `vp09.00.21.08` (profile, level, bit depth).
    pub fn codec_string(&self) -> String {
        let v = &self.vpcc;
        format!("vp09.{:02}.{:02}.{:02}", v.profile, v.level, v.bit_depth)
    }
}

/// Width and height of a VP9 key frame, from its uncompressed header (VP9 spec §6.2:
/// frame_marker, profile, show_existing_frame, frame_type, show_frame, error_resilient_mode,
/// frame_sync_code, color_config, frame_size). `None` for inter frames or unreadable data.
pub fn keyframe_size(frame: &[u8]) -> Option<(u32, u32)> {
    let mut r = BitReader::endian(frame, BigEndian);
    if r.read::<2, u8>().ok()? != 2 {
        return None; // frame_marker
    }
    let low = u8::from(r.read_bit().ok()?);
    let high = u8::from(r.read_bit().ok()?);
    let profile = (high << 1) | low;
    if profile == 3 {
        r.read_bit().ok()?; // reserved_zero
    }
    if r.read_bit().ok()? {
        return None; // show_existing_frame
    }
    if r.read_bit().ok()? {
        return None; // frame_type 1: not a key frame
    }
    r.read_bit().ok()?; // show_frame
    r.read_bit().ok()?; // error_resilient_mode
    if r.read::<24, u32>().ok()? != 0x49_83_42 {
        return None; // frame_sync_code
    }
    if profile >= 2 {
        r.read_bit().ok()?; // ten_or_twelve_bit
    }
    let color_space = r.read::<3, u8>().ok()?;
    if color_space != 7 {
        r.read_bit().ok()?; // color_range
        if profile == 1 || profile == 3 {
            r.read::<3, u8>().ok()?; // subsampling_x, subsampling_y, reserved_zero
        }
    } else if profile == 1 || profile == 3 {
        r.read_bit().ok()?; // reserved_zero
    }
    let width = r.read::<16, u32>().ok()? + 1;
    let height = r.read::<16, u32>().ok()? + 1;
    Some((width, height))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The start of a real VP9 key frame from Debian's FFmpeg 5.1 with libvpx-vp9, 640x360, profile 0.
    const KEYFRAME_640X360: &[u8] = &[0x82, 0x49, 0x83, 0x42, 0x00, 0x27, 0xf0, 0x16, 0x76, 0x06, 0x38, 0x24];

    #[test]
    fn reads_the_key_frame_size() {
        assert_eq!(keyframe_size(KEYFRAME_640X360), Some((640, 360)));
        // An inter frame (frame_type 1) and garbage.
        assert_eq!(keyframe_size(&[0x86, 0x00]), None);
        assert_eq!(keyframe_size(&[0x00; 8]), None);
        assert_eq!(keyframe_size(&[]), None);
    }

    #[test]
    fn parses_a_record() {
        // version 1, flags 0, profile 0, level 21 (2.1), 8 bit 4:2:0 colocated, BT.709, no init data.
        let record = [1, 0, 0, 0, 0, 21, 0x82, 1, 1, 1, 0, 0];
        let c = Vp9Config::parse(&record, KEYFRAME_640X360).expect("record");
        assert_eq!(c.codec_string(), "vp09.00.21.08");
        assert_eq!((c.width, c.height), (640, 360));
        assert!(Vp9Config::parse(&record[..5], KEYFRAME_640X360).is_err());
        assert!(Vp9Config::parse(&record, &[0x86]).is_err());
    }
}
