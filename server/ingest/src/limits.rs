//! Ingest limits that do not belong to a protocol: the per-connection bit-rate cap and the
//! per-listener connection cap.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// At most `limit` connections at once on a listener, counted in the gauge `name`.
#[derive(Debug, Clone)]
pub struct ConnectionLimit {
    active: Arc<AtomicUsize>,
    limit: usize,
    gauge: &'static str,
}

impl ConnectionLimit {
    /// A cap of `limit` connections reported in gauge `gauge` (e.g. `onair_rtmp_connections`).
    pub fn new(limit: usize, gauge: &'static str) -> Self {
        ConnectionLimit { active: Arc::new(AtomicUsize::new(0)), limit, gauge }
    }

    /// A slot for one more connection, or `None` at the cap. The slot is given back when dropped,
    /// also when the connection's task panics.
    pub fn try_take(&self) -> Option<ConnectionSlot> {
        self.active
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| (n < self.limit).then_some(n + 1))
            .ok()?;
        metrics::gauge!(self.gauge).increment(1.0);
        Some(ConnectionSlot(self.clone()))
    }

    /// Connections open now.
    pub fn open(&self) -> usize {
        self.active.load(Ordering::Acquire)
    }

    /// The cap.
    pub fn limit(&self) -> usize {
        self.limit
    }
}

/// One counted connection (see [`ConnectionLimit::try_take`]).
#[derive(Debug)]
pub struct ConnectionSlot(ConnectionLimit);

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        self.0.active.fetch_sub(1, Ordering::AcqRel);
        metrics::gauge!(self.0.gauge).decrement(1.0);
    }
}

/// Average ingest bit rate over a sliding window, checked against a cap.
#[derive(Debug)]
pub struct BitrateLimit {
    max_bits_per_sec: u64,
    window: Duration,
    samples: VecDeque<(Instant, u64)>,
    bytes_in_window: u64,
    started: Option<Instant>,
}

impl BitrateLimit {
    /// A cap of `max_kbps` kbit/s averaged over `window` (0 disables the cap).
    pub fn new(max_kbps: u64, window: Duration) -> Self {
        BitrateLimit { max_bits_per_sec: max_kbps * 1000, window, samples: VecDeque::new(), bytes_in_window: 0, started: None }
    }

    /// Records `bytes` received at `now`; returns the windowed rate in bit/s if it exceeds the cap.
    /// The first window after the connection starts is not judged (encoders burst at start).
    pub fn record(&mut self, now: Instant, bytes: u64) -> Option<u64> {
        if self.max_bits_per_sec == 0 {
            return None;
        }
        let started = *self.started.get_or_insert(now);
        self.samples.push_back((now, bytes));
        self.bytes_in_window += bytes;
        while let Some(&(t, b)) = self.samples.front() {
            if now.duration_since(t) > self.window {
                self.samples.pop_front();
                self.bytes_in_window -= b;
            } else {
                break;
            }
        }
        if now.duration_since(started) < self.window {
            return None;
        }
        let rate = self.bytes_in_window * 8 * 1000 / self.window.as_millis().max(1) as u64;
        (rate > self.max_bits_per_sec).then_some(rate)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_slots_are_capped_and_given_back_even_on_panic() {
        let limit = ConnectionLimit::new(2, "test_connections");
        let a = limit.try_take().expect("first");
        let b = limit.try_take().expect("second");
        assert!(limit.try_take().is_none());
        drop(a);
        let c = limit.try_take().expect("after one left");
        let moved = limit.clone();
        let panicked = std::thread::spawn(move || {
            let _slot = c;
            panic!("connection task panics");
        })
        .join();
        assert!(panicked.is_err());
        assert_eq!(moved.open(), 1, "the panicking task's slot came back");
        drop(b);
        assert_eq!(limit.open(), 0);
    }

    #[test]
    fn flags_sustained_excess_only() {
        let t0 = Instant::now();
        let mut l = BitrateLimit::new(1000, Duration::from_secs(2)); // 1 Mbit/s
        // 10 Mbit/s during the first window: a start-up burst, not judged.
        for i in 0..20u64 {
            assert_eq!(l.record(t0 + Duration::from_millis(i * 100), 125_000), None);
        }
        // Then 800 kbit/s for 4 s: fine once the burst has left the window.
        let mut verdicts = vec![];
        for i in 20..60u64 {
            verdicts.push(l.record(t0 + Duration::from_millis(i * 100), 10_000));
        }
        assert!(verdicts[25..].iter().all(Option::is_none));
        // Then 4 Mbit/s: flagged.
        let mut flagged = None;
        for i in 60..90u64 {
            flagged = flagged.or(l.record(t0 + Duration::from_millis(i * 100), 50_000));
        }
        assert!(flagged.is_some_and(|r| r > 1_000_000));
        assert_eq!(BitrateLimit::new(0, Duration::from_secs(1)).record(t0, u64::MAX / 16), None);
    }
}
