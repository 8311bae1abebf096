//! Conversions from RTMP's millisecond timeline to track timescales, without drift.
//!
//! RTMP timestamps are 32-bit milliseconds that wrap after ~49.7 days (RTMP spec §5.3.1.2.1).
//! Video is converted exactly (1 ms = 90 ticks). AAC frames are exactly 1024 samples long but their
//! RTMP timestamps are rounded to milliseconds, so audio timestamps are counted in samples and only
//! re-anchored when the encoder's clock jumps (a gap or a restart), never drift with rounding.

/// Extends wrapping 32-bit millisecond timestamps to a monotonic-ish 64-bit timeline.
#[derive(Debug, Default, Clone)]
pub struct RtmpClock {
    last: Option<u64>,
}

impl RtmpClock {
    /// Maps a 32-bit RTMP timestamp (ms) to 64-bit ms, adding 2^32 each time the value wraps.
    /// A backwards step of less than 2^31 ms is taken as out-of-order, not as a wrap.
    pub fn extend(&mut self, ts: u32) -> u64 {
        let ts = u64::from(ts);
        let out = match self.last {
            None => ts,
            Some(last) => {
                let epoch = last & !0xFFFF_FFFF;
                let candidates = [epoch.wrapping_sub(1 << 32), epoch, epoch + (1 << 32)];
                candidates
                    .iter()
                    .filter(|e| **e <= u64::MAX - ts)
                    .map(|e| e + ts)
                    .min_by_key(|c| c.abs_diff(last))
                    .unwrap_or(ts)
            }
        };
        self.last = Some(out);
        out
    }
}

/// Converts milliseconds to 90 kHz ticks (exact).
pub fn ms_to_90khz(ms: u64) -> u64 {
    ms * 90
}

/// Sample-exact timestamps for a stream of fixed-length audio frames.
#[derive(Debug, Clone)]
pub struct AudioClock {
    sample_rate: u32,
    frame_samples: u32,
    next: Option<u64>,
}

impl AudioClock {
    /// A clock for frames of `frame_samples` samples at `sample_rate` Hz.
    pub fn new(sample_rate: u32, frame_samples: u32) -> Self {
        AudioClock { sample_rate, frame_samples, next: None }
    }

    /// Returns the decode time, in samples, of the frame whose RTMP timestamp is `ms`.
    ///
    /// The result is the previous frame's time plus one frame, unless that differs from `ms` by more
    /// than two frames (an encoder gap or clock jump); then it re-anchors on `ms`.
    pub fn next_dts(&mut self, ms: u64) -> u64 {
        let from_ms = ms * u64::from(self.sample_rate) / 1000;
        let dts = match self.next {
            Some(expected) if expected.abs_diff(from_ms) <= 2 * u64::from(self.frame_samples) => expected,
            _ => from_ms,
        };
        self.next = Some(dts + u64::from(self.frame_samples));
        dts
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rtmp_clock_wraps() {
        let mut c = RtmpClock::default();
        assert_eq!(c.extend(0xFFFF_FF00), 0xFFFF_FF00);
        assert_eq!(c.extend(0x10), (1 << 32) + 0x10);
        assert_eq!(c.extend(0x08), (1 << 32) + 0x08);
    }

    #[test]
    fn audio_clock_does_not_drift_at_44k1() {
        let mut c = AudioClock::new(44100, 1024);
        let mut last = 0;
        for n in 0..10_000u64 {
            let ms = (n * 1024 * 1000) / 44100; // what an encoder puts in RTMP: rounded down
            last = c.next_dts(ms);
            assert_eq!(last, n * 1024);
        }
        assert_eq!(last, 9999 * 1024);
    }

    #[test]
    fn audio_clock_reanchors_after_gap() {
        let mut c = AudioClock::new(48000, 1024);
        assert_eq!(c.next_dts(0), 0);
        assert_eq!(c.next_dts(21), 1024);
        assert_eq!(c.next_dts(5000), 240_000);
    }
}
