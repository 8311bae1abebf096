//! ADTS framing of AAC (ISO/IEC 14496-3 §1.A.2): split a buffer into raw AAC frames and derive the
//! AudioSpecificConfig that an MP4 track needs.

/// One AAC frame found in an ADTS buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AdtsFrame<'a> {
    /// The 2-byte AudioSpecificConfig equivalent to this header (object type, frequency, channels).
    pub audio_specific_config: [u8; 2],
    /// The raw AAC frame (header and CRC removed).
    pub payload: &'a [u8],
}

/// Splits `data` into ADTS frames. Stops at the first byte that is not a valid header (a
/// truncated or corrupt tail is ignored) and returns what it found.
pub fn frames(data: &[u8]) -> Vec<AdtsFrame<'_>> {
    let mut out = Vec::new();
    let mut rest = data;
    while rest.len() >= 7 {
        if rest[0] != 0xff || rest[1] & 0xf6 != 0xf0 {
            break;
        }
        let protection_absent = rest[1] & 1 == 1;
        let profile = rest[2] >> 6; // audioObjectType - 1
        let freq_index = (rest[2] >> 2) & 0x0f;
        let channels = (rest[2] & 1) << 2 | rest[3] >> 6;
        let frame_len = usize::from(rest[3] & 0x03) << 11 | usize::from(rest[4]) << 3 | usize::from(rest[5] >> 5);
        let header = if protection_absent { 7 } else { 9 };
        if frame_len < header || frame_len > rest.len() || freq_index > 12 {
            break;
        }
        let object_type = profile + 1;
        let asc = [object_type << 3 | freq_index >> 1, (freq_index & 1) << 7 | channels << 3];
        out.push(AdtsFrame { audio_specific_config: asc, payload: &rest[header..frame_len] });
        rest = &rest[frame_len..];
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_frames_and_derives_the_config() {
        // AAC-LC, 48 kHz (index 3), stereo, 10-byte frames (7-byte header + 3 bytes).
        let header = [0xff, 0xf1, 0x4c, 0x80, 0x01, 0x5f, 0xfc];
        let mut data = Vec::new();
        for n in 0..3u8 {
            data.extend_from_slice(&header);
            data.extend_from_slice(&[n; 3]);
        }
        data.extend_from_slice(&[0xff, 0xf1, 0x4c]); // truncated tail
        let f = frames(&data);
        assert_eq!(f.len(), 3);
        assert_eq!(f[0].audio_specific_config, [0x11, 0x90]);
        assert_eq!(f[2].payload, &[2, 2, 2]);
        assert!(frames(&[0u8; 20]).is_empty());
    }
}
