//! AAC decoder configuration (AudioSpecificConfig, ISO/IEC 14496-3 §1.6.2.1).

use bitstream_io::{BigEndian, BitRead, BitReader};
use bytes::Bytes;

use crate::MediaError;

/// Sampling frequencies by `samplingFrequencyIndex` (ISO/IEC 14496-3 Table 1.18).
const SAMPLE_RATES: [u32; 13] = [96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000, 7350];

/// Lowest sampling rate accepted, Hz (the lowest of Table 1.18).
pub const MIN_SAMPLE_RATE: u32 = 7350;

/// Samples per AAC frame (AAC-LC, HE-AAC core): every access unit decodes to 1024 samples per channel.
pub const AAC_FRAME_SAMPLES: u32 = 1024;

/// An AAC track's configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AacConfig {
    /// The AudioSpecificConfig bytes as received; written into the `esds` DecoderSpecificInfo.
    pub asc: Bytes,
    /// audioObjectType (2 = AAC-LC, 5 = SBR, 29 = PS).
    pub object_type: u8,
    /// Sampling rate in Hz; also the track's timescale.
    pub sample_rate: u32,
    /// channelConfiguration (1 = mono, 2 = stereo, 6 = 5.1); 0 means defined in-band.
    pub channels: u8,
}

impl AacConfig {
    /// Parses an AudioSpecificConfig: audioObjectType (with the escape for values ≥ 31),
    /// samplingFrequencyIndex (with the explicit 24-bit frequency for index 15) and channelConfiguration.
    ///
    /// Errors: [`MediaError::AudioSpecificConfig`] when truncated or when the frequency index is reserved.
    pub fn parse(asc: &[u8]) -> Result<Self, MediaError> {
        let err = |what: &str| MediaError::AudioSpecificConfig(what.to_string());
        let mut r = BitReader::endian(asc, BigEndian);
        let mut object_type: u8 = r.read::<5, u8>().map_err(|_| err("truncated object type"))?;
        if object_type == 31 {
            object_type = 32 + r.read::<6, u8>().map_err(|_| err("truncated object type escape"))?;
        }
        let freq_index: u8 = r.read::<4, u8>().map_err(|_| err("truncated frequency index"))?;
        let sample_rate = match freq_index {
            15 => r.read::<24, u32>().map_err(|_| err("truncated explicit frequency"))?,
            i => *SAMPLE_RATES.get(usize::from(i)).ok_or_else(|| err("reserved frequency index"))?,
        };
        // Below the lowest table rate every 1024-sample frame lasts over 139 ms and ms-based
        // clocks round durations to 0 (1-29 Hz): refuse instead of building endless parts.
        if sample_rate < MIN_SAMPLE_RATE {
            return Err(err("explicit sampling frequency below 7350 Hz"));
        }
        let channels: u8 = r.read::<4, u8>().map_err(|_| err("truncated channel configuration"))?;
        Ok(AacConfig { asc: Bytes::copy_from_slice(asc), object_type, sample_rate, channels })
    }

    /// RFC 6381 §3.3 codec string `mp4a.40.<audioObjectType>`.
    pub fn codec_string(&self) -> String {
        format!("mp4a.40.{}", self.object_type)
    }

    /// Number of output channels for the `mp4a` sample entry (channelConfiguration 7 means 8 channels).
    pub fn channel_count(&self) -> u16 {
        match self.channels {
            0 => 2,
            7 => 8,
            n => u16::from(n),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_lc_stereo_48k() {
        let c = AacConfig::parse(&[0x11, 0x90]).expect("parse");
        assert_eq!((c.object_type, c.sample_rate, c.channels), (2, 48000, 2));
        assert_eq!(c.codec_string(), "mp4a.40.2");
    }

    #[test]
    fn parses_lc_51_44k1() {
        let c = AacConfig::parse(&[0x12, 0x30]).expect("parse");
        assert_eq!((c.object_type, c.sample_rate, c.channels), (2, 44100, 6));
    }

    #[test]
    fn rejects_bad_input() {
        assert!(AacConfig::parse(&[]).is_err());
        assert!(AacConfig::parse(&[0x17, 0x80]).is_err()); // frequency index 14 is reserved
    }

    /// AAC-LC stereo with an explicit (index 15) sampling frequency of `hz`.
    fn explicit(hz: u32) -> Vec<u8> {
        let bits: u64 = (2 << 35) | (15 << 31) | (u64::from(hz) << 7) | (2 << 3);
        bits.to_be_bytes()[3..].to_vec()
    }

    #[test]
    fn explicit_frequencies_below_the_table_are_refused() {
        for hz in [1, 20, 29, 7349] {
            assert!(AacConfig::parse(&explicit(hz)).is_err(), "{hz} Hz");
        }
        let ok = AacConfig::parse(&explicit(8000)).expect("8 kHz");
        assert_eq!((ok.sample_rate, ok.channels), (8000, 2));
    }
}
