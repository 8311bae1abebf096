//! The latency controller: keeps the live latency near a target by nudging `playbackRate`,
//! jumps when it falls too far behind, and holds a little more back after each stall.
//!
//! Latency is the wall-clock time (corrected to the server's clock) minus the
//! EXT-X-PROGRAM-DATE-TIME of the frame on screen (RFC 8216bis §4.4.4.6). The default target is
//! the playlist's PART-HOLD-BACK (§4.4.3.8), the closest to live a client may start.

/// Tuning of the controller. Times in seconds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LatencyConfig {
    /// Latency to converge on.
    pub target: f64,
    /// Lowest playback rate used to fall back (slower than real time builds buffer).
    pub min_rate: f64,
    /// Highest playback rate used to catch up.
    pub max_rate: f64,
    /// Beyond `target + max_drift` the player seeks forward instead of speeding up.
    pub max_drift: f64,
    /// No correction while the error is within ± this.
    pub deadband: f64,
    /// Rate change per second of latency error (proportional gain).
    pub gain: f64,
    /// Largest change of the rate per update: keeps the audio pitch change gentle.
    pub max_step: f64,
    /// Never speed up with less than this much media buffered ahead.
    pub min_buffer: f64,
    /// Added to the target after each stall, up to `max_extra`.
    pub stall_penalty: f64,
    /// The most the stall penalties may add to the target.
    pub max_extra: f64,
}

impl LatencyConfig {
    /// The defaults for a target (seconds): rates 0.95–1.5, seek beyond target + 3 s.
    pub fn for_target(target: f64) -> Self {
        LatencyConfig {
            target,
            min_rate: 0.95,
            max_rate: 1.5,
            max_drift: 3.0,
            deadband: 0.04,
            gain: 1.0,
            max_step: 0.05,
            min_buffer: 0.12,
            stall_penalty: 0.2,
            max_extra: 1.0,
        }
    }
}

/// What the player should do after an update.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Correction {
    /// Set `playbackRate` to this.
    Rate(f64),
    /// Seek the media element to this `currentTime` (seconds), then play at 1.0.
    Seek(f64),
}

/// The controller's state.
#[derive(Debug, Clone)]
pub struct LatencyController {
    config: LatencyConfig,
    extra: f64,
    rate: f64,
    calm_since: Option<f64>,
}

impl LatencyController {
    /// A controller at rate 1.0.
    pub fn new(config: LatencyConfig) -> Self {
        LatencyController { config, extra: 0.0, rate: 1.0, calm_since: None }
    }

    /// The target in force: the configured one plus stall penalties.
    pub fn target(&self) -> f64 {
        self.config.target + self.extra
    }

    /// Changes the configured target (seconds).
    pub fn set_target(&mut self, target: f64) {
        self.config.target = target;
    }

    /// Records a stall: the target grows by `stall_penalty` (up to `max_extra`), so the player
    /// rebuffers a little more instead of stalling again.
    pub fn on_stall(&mut self, now: f64) {
        self.extra = (self.extra + self.config.stall_penalty).min(self.config.max_extra);
        self.calm_since = Some(now);
    }

    /// One control step.
    /// - `now`: a monotonic clock in seconds (penalties decay after 30 s without a stall);
    /// - `latency`: measured latency in seconds;
    /// - `current_time` and `buffered_end`: the media element's position and the end of the
    ///   buffered range that contains it, in seconds.
    pub fn update(&mut self, now: f64, latency: f64, current_time: f64, buffered_end: f64) -> Correction {
        let c = self.config;
        if let Some(since) = self.calm_since {
            if now - since > 30.0 && self.extra > 0.0 {
                self.extra = (self.extra - c.stall_penalty / 2.0).max(0.0);
                self.calm_since = Some(now);
            }
        }
        let target = self.target();
        let ahead = (buffered_end - current_time).max(0.0);
        let error = latency - target;
        if error > c.max_drift {
            // Too far behind: jump to `target` behind the live edge, but keep the minimum buffer.
            let to = (current_time + error).min(buffered_end - c.min_buffer);
            if to > current_time + 0.5 {
                self.rate = 1.0;
                return Correction::Seek(to);
            }
        }
        let mut wanted = if error.abs() <= c.deadband { 1.0 } else { 1.0 + c.gain * (error - c.deadband * error.signum()) };
        if ahead < c.min_buffer {
            wanted = wanted.min(1.0);
        }
        wanted = wanted.clamp(c.min_rate, c.max_rate);
        let step = (wanted - self.rate).clamp(-c.max_step, c.max_step);
        self.rate = ((self.rate + step) * 1000.0).round() / 1000.0;
        Correction::Rate(self.rate)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rate(c: Correction) -> f64 {
        match c {
            Correction::Rate(r) => r,
            Correction::Seek(t) => panic!("unexpected seek to {t}"),
        }
    }

    #[test]
    fn speeds_up_smoothly_when_behind_and_settles_on_target() {
        let mut l = LatencyController::new(LatencyConfig::for_target(0.6));
        let mut latency = 1.4;
        let mut last = 1.0;
        let mut t = 0.0;
        for _ in 0..200 {
            let r = rate(l.update(t, latency, 10.0, 11.0));
            assert!((r - last).abs() <= 0.05 + 1e-9, "rate steps are gentle");
            assert!((0.95..=1.5).contains(&r));
            // 100 ms of playback at rate r: latency falls by (r − 1) × 0.1 s.
            latency -= (r - 1.0) * 0.1;
            last = r;
            t += 0.1;
        }
        assert!((latency - 0.6).abs() < 0.06, "converged to {latency}");
        assert!((last - 1.0).abs() < 0.06);
    }

    #[test]
    fn slows_down_when_ahead_of_target_and_never_speeds_up_on_an_empty_buffer() {
        let mut l = LatencyController::new(LatencyConfig::for_target(1.0));
        for _ in 0..10 {
            l.update(0.0, 0.5, 10.0, 10.5);
        }
        assert_eq!(rate(l.update(0.0, 0.5, 10.0, 10.5)), 0.95);
        let mut l = LatencyController::new(LatencyConfig::for_target(0.6));
        assert_eq!(rate(l.update(0.0, 2.0, 10.0, 10.05)), 1.0);
    }

    #[test]
    fn seeks_when_far_behind() {
        let mut l = LatencyController::new(LatencyConfig::for_target(0.6));
        match l.update(0.0, 8.0, 10.0, 17.6) {
            Correction::Seek(to) => assert!((to - 17.4).abs() < 1e-9, "to {to}"),
            other => panic!("{other:?}"),
        }
        // Far behind but nothing buffered ahead to seek into: speed up instead.
        assert!(matches!(l.update(0.0, 8.0, 10.0, 10.2), Correction::Rate(_)));
    }

    #[test]
    fn stalls_raise_the_target_then_it_decays() {
        let mut l = LatencyController::new(LatencyConfig::for_target(0.6));
        l.on_stall(0.0);
        l.on_stall(1.0);
        assert!((l.target() - 1.0).abs() < 1e-9);
        for i in 0..10 {
            l.on_stall(2.0 + f64::from(i));
        }
        assert!((l.target() - 1.6).abs() < 1e-9, "capped");
        l.update(100.0, 1.6, 0.0, 1.0);
        assert!(l.target() < 1.6);
    }
}
