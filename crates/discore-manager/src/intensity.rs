//! OTP-style restart intensity: a crashed shard is restarted with backoff,
//! but more than `max_restarts` restarts within `window` escalate to a
//! failure instead of a restart loop.

use discore_gateway::Backoff;
use std::{
    collections::VecDeque,
    time::{Duration, Instant},
};

/// How crashed shards are restarted.
///
/// A shard actor that panicked, or whose arbiter went away, is restarted from
/// its last session (so it resumes). The first restart in a window is
/// immediate, later ones wait `backoff`. The crash that would be restart
/// number `max_restarts + 1` within `window` is not restarted: the shard is
/// given up and a [`FleetEvent::ShardFailed`](crate::FleetEvent) is sent.
/// Intensity is counted per shard, so one shard's crash loop does not stop
/// the others.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub struct RestartPolicy {
    /// Delay before restart number `n` in the window is `backoff.delay(n)`:
    /// none for the first, then doubling with jitter.
    pub backoff: Backoff,
    /// Restarts allowed within `window`. 0: never restart.
    pub max_restarts: u32,
    /// The sliding window restarts are counted in.
    pub window: Duration,
}

impl Default for RestartPolicy {
    /// 5 restarts per 60 s, backoff 500 ms doubling up to 30 s.
    fn default() -> Self {
        Self {
            backoff: Backoff {
                base: Duration::from_millis(500),
                cap: Duration::from_secs(30),
            },
            max_restarts: 5,
            window: Duration::from_secs(60),
        }
    }
}

/// What to do about a crash.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub(crate) enum RestartDecision {
    /// Restart after `delay`; this is restart number `attempt` in the window.
    Restart { attempt: u32, delay: Duration },
    /// Too many restarts in the window: stop trying.
    GiveUp { restarts: u32 },
}

/// The restarts of one shard within the current window.
#[derive(Clone, Debug, Default)]
pub(crate) struct RestartIntensity {
    recent: VecDeque<Instant>,
}

impl RestartIntensity {
    /// Records a crash at `now` and decides. `jitter` is uniform in [0, 1).
    pub(crate) fn on_crash(
        &mut self,
        policy: &RestartPolicy,
        now: Instant,
        jitter: f64,
    ) -> RestartDecision {
        while self
            .recent
            .front()
            .is_some_and(|at| now.saturating_duration_since(*at) >= policy.window)
        {
            self.recent.pop_front();
        }
        let restarts = u32::try_from(self.recent.len()).unwrap_or(u32::MAX);
        if restarts >= policy.max_restarts {
            return RestartDecision::GiveUp { restarts };
        }
        self.recent.push_back(now);
        let attempt = restarts + 1;
        RestartDecision::Restart {
            attempt,
            delay: policy.backoff.delay(attempt, jitter),
        }
    }

    /// Restarts within the window, as of the last crash.
    #[cfg(test)]
    pub(crate) fn recent(&self) -> u32 {
        u32::try_from(self.recent.len()).unwrap_or(u32::MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::{RestartDecision, RestartIntensity, RestartPolicy};
    use discore_gateway::Backoff;
    use std::time::{Duration, Instant};

    fn policy(max_restarts: u32) -> RestartPolicy {
        RestartPolicy {
            backoff: Backoff {
                base: Duration::from_secs(1),
                cap: Duration::from_secs(8),
            },
            max_restarts,
            window: Duration::from_secs(60),
        }
    }

    #[test]
    fn first_restart_is_immediate_then_backs_off() {
        let policy = policy(5);
        let mut intensity = RestartIntensity::default();
        let t0 = Instant::now();
        let delays: Vec<Duration> = (0..4)
            .map(
                |i| match intensity.on_crash(&policy, t0 + Duration::from_secs(i), 0.0) {
                    RestartDecision::Restart { delay, .. } => delay,
                    other => panic!("unexpected {other:?}"),
                },
            )
            .collect();
        // Equal jitter at 0: half of base * 2^(n-2).
        assert_eq!(
            delays,
            [
                Duration::ZERO,
                Duration::from_millis(500),
                Duration::from_secs(1),
                Duration::from_secs(2)
            ]
        );
    }

    #[test]
    fn too_many_restarts_in_the_window_give_up() {
        let policy = policy(3);
        let mut intensity = RestartIntensity::default();
        let t0 = Instant::now();
        for i in 0..3 {
            assert!(matches!(
                intensity.on_crash(&policy, t0 + Duration::from_secs(i), 0.5),
                RestartDecision::Restart { attempt, .. } if attempt == i as u32 + 1
            ));
        }
        assert_eq!(
            intensity.on_crash(&policy, t0 + Duration::from_secs(10), 0.5),
            RestartDecision::GiveUp { restarts: 3 }
        );
        assert_eq!(intensity.recent(), 3);
    }

    #[test]
    fn restarts_outside_the_window_are_forgotten() {
        let policy = policy(2);
        let mut intensity = RestartIntensity::default();
        let t0 = Instant::now();
        assert!(matches!(
            intensity.on_crash(&policy, t0, 0.0),
            RestartDecision::Restart { attempt: 1, .. }
        ));
        assert!(matches!(
            intensity.on_crash(&policy, t0 + Duration::from_secs(30), 0.0),
            RestartDecision::Restart { attempt: 2, .. }
        ));
        // The first restart is 60 s old now: it no longer counts.
        assert!(matches!(
            intensity.on_crash(&policy, t0 + Duration::from_secs(60), 0.0),
            RestartDecision::Restart { attempt: 2, .. }
        ));
        // Two within the window again (at 30 s and 60 s): a third gives up.
        assert_eq!(
            intensity.on_crash(&policy, t0 + Duration::from_secs(61), 0.0),
            RestartDecision::GiveUp { restarts: 2 }
        );
    }

    #[test]
    fn zero_restarts_means_never() {
        let mut intensity = RestartIntensity::default();
        assert_eq!(
            intensity.on_crash(&policy(0), Instant::now(), 0.0),
            RestartDecision::GiveUp { restarts: 0 }
        );
    }
}
