//! Exponential reconnect backoff with jitter, so a fleet that lost its
//! connections does not come back in lockstep.

use std::time::Duration;

/// Backoff settings: `base * 2^(attempt-1)`, capped, with "equal jitter"
/// (half fixed, half random) so delays never collapse to zero.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub struct Backoff {
    /// The delay before the second consecutive attempt (the first is immediate).
    pub base: Duration,
    /// The longest delay.
    pub cap: Duration,
}

impl Default for Backoff {
    /// 1 s doubling up to 60 s.
    fn default() -> Self {
        Self {
            base: Duration::from_secs(1),
            cap: Duration::from_secs(60),
        }
    }
}

impl Backoff {
    /// The delay before attempt number `attempt` (1-based) of a run of
    /// consecutive failures. `jitter` is uniform in [0, 1).
    ///
    /// Attempt 1 follows a healthy connection and goes out at once; later
    /// attempts wait between half and all of `min(cap, base * 2^(attempt-2))`.
    pub fn delay(&self, attempt: u32, jitter: f64) -> Duration {
        if attempt <= 1 {
            return Duration::ZERO;
        }
        let exponent = (attempt - 2).min(31);
        let ceiling = self.base.saturating_mul(1 << exponent).min(self.cap);
        let half = ceiling / 2;
        half + half.mul_f64(jitter.clamp(0.0, 1.0))
    }
}

#[cfg(test)]
mod tests {
    use super::Backoff;
    use std::time::Duration;

    #[test]
    fn first_attempt_is_immediate_then_doubles_to_the_cap() {
        let backoff = Backoff {
            base: Duration::from_millis(100),
            cap: Duration::from_millis(1000),
        };
        assert_eq!(backoff.delay(1, 0.9), Duration::ZERO);
        let ceilings: Vec<_> = (2..=8).map(|a| backoff.delay(a, 0.999_999)).collect();
        let expected = [100, 200, 400, 800, 1000, 1000, 1000];
        for (got, want) in ceilings.iter().zip(expected) {
            assert!(got.as_millis().abs_diff(want) <= 1, "{got:?} vs {want}");
        }
        assert_eq!(backoff.delay(3, 0.0), Duration::from_millis(100));
        assert_eq!(backoff.delay(u32::MAX, 0.5), Duration::from_millis(750));
    }

    #[test]
    fn jitter_spreads_a_fleet() {
        let backoff = Backoff::default();
        let mut rng = fastrand::Rng::with_seed(7);
        let delays: std::collections::BTreeSet<_> =
            (0..100).map(|_| backoff.delay(5, rng.f64())).collect();
        assert!(delays.len() > 90, "delays should differ: {}", delays.len());
        assert!(
            delays
                .iter()
                .all(|d| *d >= Duration::from_secs(4) && *d < Duration::from_secs(8))
        );
    }
}
