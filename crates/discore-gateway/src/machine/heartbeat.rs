//! Heartbeat bookkeeping (`docs/protocol.md`, "Heartbeats"): the schedule, the ACK flag
//! that detects zombie connections, and latency statistics.

use std::time::{Duration, Instant};

/// The heartbeat schedule of one connection.
#[derive(Clone, Debug)]
pub(crate) struct Heartbeat {
    pub(crate) interval: Duration,
    pub(crate) next_due: Instant,
    /// A heartbeat went out and no ACK has come back since.
    pub(crate) awaiting_ack: bool,
    pub(crate) last_sent: Option<Instant>,
}

impl Heartbeat {
    /// Starts after Hello: the first beat after `interval * jitter`.
    pub(crate) fn after_hello(interval: Duration, jitter: f64, now: Instant) -> Self {
        Self {
            interval,
            next_due: now + interval.mul_f64(jitter.clamp(0.0, 1.0)),
            awaiting_ack: false,
            last_sent: None,
        }
    }

    pub(crate) fn record_sent(&mut self, now: Instant) {
        self.awaiting_ack = true;
        self.last_sent = Some(now);
    }
}

/// Heartbeat round-trip times, as the ACKs measured them.
#[derive(Clone, Copy, Debug, Default, Eq, PartialEq)]
pub struct Latency {
    last: Option<Duration>,
    average: Option<Duration>,
    samples: u64,
    sum: Duration,
    /// Samples per bucket of [`Latency::BUCKETS_MS`], the last one unbounded.
    histogram: [u64; Latency::BUCKETS_MS.len() + 1],
}

impl Latency {
    /// Samples averaged over, at most: older ones fade out.
    const WINDOW: u32 = 16;

    /// Upper bounds of the histogram buckets, in milliseconds.
    pub const BUCKETS_MS: [u64; 10] = [5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000];

    pub(crate) fn record(&mut self, sample: Duration) {
        self.samples += 1;
        self.sum = self.sum.saturating_add(sample);
        let millis = sample.as_millis();
        let bucket = Self::BUCKETS_MS
            .iter()
            .position(|bound| millis <= u128::from(*bound))
            .unwrap_or(Self::BUCKETS_MS.len());
        self.histogram[bucket] += 1;
        self.last = Some(sample);
        self.average = Some(match self.average {
            None => sample,
            // An exponential moving average over about WINDOW samples.
            Some(average) => (average * (Self::WINDOW - 1) + sample) / Self::WINDOW,
        });
    }

    /// The most recent round trip.
    pub const fn last(&self) -> Option<Duration> {
        self.last
    }

    /// The moving average of recent round trips.
    pub const fn average(&self) -> Option<Duration> {
        self.average
    }

    /// The total of every measured round trip (a histogram's `_sum`).
    pub const fn sum(&self) -> Duration {
        self.sum
    }

    /// How many ACKs were measured.
    pub const fn samples(&self) -> u64 {
        self.samples
    }

    /// Samples per bucket: bucket `i` counts round trips up to
    /// `BUCKETS_MS[i]` (and above the previous bound); the last counts the rest.
    pub const fn histogram(&self) -> &[u64; Self::BUCKETS_MS.len() + 1] {
        &self.histogram
    }
}

#[cfg(test)]
mod tests {
    use super::{Heartbeat, Latency};
    use std::time::{Duration, Instant};

    #[test]
    fn first_beat_is_jittered_within_the_interval() {
        let now = Instant::now();
        let interval = Duration::from_millis(1000);
        assert_eq!(Heartbeat::after_hello(interval, 0.0, now).next_due, now);
        assert_eq!(
            Heartbeat::after_hello(interval, 0.25, now).next_due,
            now + Duration::from_millis(250)
        );
    }

    #[test]
    fn latency_average_moves_towards_samples() {
        let mut latency = Latency::default();
        assert_eq!(latency.last(), None);
        latency.record(Duration::from_millis(100));
        assert_eq!(latency.average(), Some(Duration::from_millis(100)));
        for _ in 0..100 {
            latency.record(Duration::from_millis(20));
        }
        assert_eq!(latency.last(), Some(Duration::from_millis(20)));
        let average = latency.average().expect("has samples");
        assert!(average < Duration::from_millis(21), "{average:?}");
        assert_eq!(latency.samples(), 101);
        assert_eq!(latency.sum(), Duration::from_millis(100 + 100 * 20));
        // 100 ms falls in the 100 ms bucket, 20 ms in the 25 ms one.
        assert_eq!(latency.histogram()[4], 1);
        assert_eq!(latency.histogram()[2], 100);
        latency.record(Duration::from_secs(60));
        assert_eq!(latency.histogram()[10], 1);
    }
}
