//! Adaptive bit rate: a bandwidth estimate from part downloads and the choice of video rendition.
//!
//! Parts are small (~200 ms of media), so one download says little; the estimator keeps two
//! exponentially weighted moving averages of throughput, weighted by transfer time (a fast one,
//! half-life 2 s, and a slow one, 8 s), and reports the lower, as Shaka Player and hls.js do. A
//! download's time is measured from response headers to the last byte, so time a blocking request
//! spends waiting for the part to exist does not count as slowness.

/// One exponentially weighted moving average with a half-life in seconds of transfer time.
#[derive(Debug, Clone, Copy)]
struct Ewma {
    half_life: f64,
    estimate: f64,
    total_weight: f64,
}

impl Ewma {
    fn new(half_life: f64) -> Self {
        Ewma { half_life, estimate: 0.0, total_weight: 0.0 }
    }

    fn sample(&mut self, weight: f64, value: f64) {
        let alpha = 0.5f64.powf(weight / self.half_life);
        self.estimate = value * (1.0 - alpha) + alpha * self.estimate;
        self.total_weight += weight;
    }

    /// The estimate corrected for the zero start (bias correction, as in Adam/Shaka).
    fn value(&self) -> f64 {
        let zero_factor = 1.0 - 0.5f64.powf(self.total_weight / self.half_life);
        if zero_factor > 0.0 {
            self.estimate / zero_factor
        } else {
            0.0
        }
    }
}

/// Throughput estimator over downloads.
#[derive(Debug, Clone)]
pub struct BandwidthEstimator {
    fast: Ewma,
    slow: Ewma,
    bytes: u64,
}

impl Default for BandwidthEstimator {
    fn default() -> Self {
        Self::new()
    }
}

/// Downloads smaller than this (bytes) are too small to say anything about throughput.
pub const MIN_SAMPLE_BYTES: u64 = 4_000;
/// Transfer times are floored to this (ms): timers in browsers are coarse.
pub const MIN_SAMPLE_MS: f64 = 2.0;

impl BandwidthEstimator {
    /// No samples yet.
    pub fn new() -> Self {
        BandwidthEstimator { fast: Ewma::new(2.0), slow: Ewma::new(8.0), bytes: 0 }
    }

    /// Records a download of `bytes` that took `transfer_ms` from headers to last byte.
    pub fn sample(&mut self, bytes: u64, transfer_ms: f64) {
        if bytes < MIN_SAMPLE_BYTES {
            return;
        }
        let secs = transfer_ms.max(MIN_SAMPLE_MS) / 1000.0;
        let bps = bytes as f64 * 8.0 / secs;
        self.fast.sample(secs, bps);
        self.slow.sample(secs, bps);
        self.bytes += bytes;
    }

    /// Estimated bits per second; `None` before 64 KB have been measured.
    pub fn estimate_bps(&self) -> Option<f64> {
        (self.bytes >= 64_000).then(|| self.fast.value().min(self.slow.value()))
    }
}

/// Picks a video rendition. `bandwidths` are the variants' BANDWIDTH (bits/s) in any order;
/// `current` is the index playing now. Switches up only when the estimate covers the candidate
/// with 30% to spare; switches down when it no longer covers the current one with 10% to spare,
/// or at once to the lowest when the buffer ahead is under `panic_buffer` seconds.
pub fn choose_variant(bandwidths: &[u64], estimate_bps: Option<f64>, current: usize, buffer_ahead: f64, panic_buffer: f64) -> usize {
    let Some(estimate) = estimate_bps else { return current };
    if bandwidths.is_empty() {
        return current;
    }
    let lowest = (0..bandwidths.len()).min_by_key(|&i| bandwidths[i]).unwrap_or(0);
    let current_bw = bandwidths.get(current).copied().unwrap_or(u64::MAX) as f64;
    let best_fitting = |share: f64| {
        (0..bandwidths.len()).filter(|&i| bandwidths[i] as f64 <= estimate * share).max_by_key(|&i| bandwidths[i])
    };
    if buffer_ahead < panic_buffer && current_bw > estimate {
        return best_fitting(0.7).unwrap_or(lowest);
    }
    if current_bw > estimate * 0.9 {
        return best_fitting(0.9).unwrap_or(lowest);
    }
    match best_fitting(0.7) {
        Some(up) if bandwidths[up] as f64 > current_bw => up,
        _ => current,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn estimate_follows_throughput() {
        let mut e = BandwidthEstimator::new();
        assert_eq!(e.estimate_bps(), None);
        for _ in 0..20 {
            e.sample(50_000, 100.0); // 4 Mbit/s
        }
        let est = e.estimate_bps().expect("estimate");
        assert!((est - 4_000_000.0).abs() < 1.0, "{est}");
        // Throughput halves: the fast average reacts, the minimum follows it down quickly.
        for _ in 0..10 {
            e.sample(50_000, 200.0);
        }
        assert!(e.estimate_bps().expect("estimate") < 2_800_000.0);
        for _ in 0..20 {
            e.sample(50_000, 200.0);
        }
        let est = e.estimate_bps().expect("estimate");
        assert!(est < 2_200_000.0, "{est}");
        // Tiny downloads are ignored.
        e.sample(100, 0.0);
        assert!((e.estimate_bps().expect("estimate") - est).abs() < 1e-6);
    }

    #[test]
    fn chooses_with_hysteresis() {
        let ladder = [3_000_000, 1_200_000, 600_000];
        assert_eq!(choose_variant(&ladder, None, 1, 1.0, 0.2), 1);
        assert_eq!(choose_variant(&ladder, Some(10_000_000.0), 2, 1.0, 0.2), 0);
        // 3.5 Mbit/s is not 30% more than 3 Mbit/s: stay on 1.2 Mbit/s.
        assert_eq!(choose_variant(&ladder, Some(3_500_000.0), 1, 1.0, 0.2), 1);
        // Current no longer fits with 10% to spare: down.
        assert_eq!(choose_variant(&ladder, Some(3_100_000.0), 0, 1.0, 0.2), 1);
        assert_eq!(choose_variant(&ladder, Some(500_000.0), 0, 1.0, 0.2), 2);
        // Panic: buffer almost empty and current over the estimate.
        assert_eq!(choose_variant(&ladder, Some(1_500_000.0), 0, 0.05, 0.2), 2);
    }
}
