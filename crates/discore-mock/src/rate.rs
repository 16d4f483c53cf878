//! A sliding-window rate limit, the way Discord counts a client's gateway
//! payloads: at most `limit` in any span of `window`, not per fixed window
//! (a client cannot send `limit` at the end of one window and `limit` more
//! at the start of the next). IO-free: time is an input.

use std::{
    collections::VecDeque,
    time::{Duration, Instant},
};

/// The instants of the last `limit` admitted events.
#[derive(Debug)]
pub(crate) struct SlidingWindow {
    limit: usize,
    window: Duration,
    recent: VecDeque<Instant>,
}

impl SlidingWindow {
    pub(crate) fn new(limit: u32, window: Duration) -> Self {
        let limit = usize::try_from(limit).unwrap_or(usize::MAX).max(1);
        Self {
            limit,
            window,
            recent: VecDeque::with_capacity(limit.min(128)),
        }
    }

    /// Counts an event at `now`; `false` when it is one more than `limit`
    /// within the last `window` (it is not counted then).
    pub(crate) fn admit(&mut self, now: Instant) -> bool {
        while self
            .recent
            .front()
            .is_some_and(|t| now.saturating_duration_since(*t) >= self.window)
        {
            self.recent.pop_front();
        }
        if self.recent.len() >= self.limit {
            return false;
        }
        self.recent.push_back(now);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::SlidingWindow;
    use std::time::{Duration, Instant};

    #[test]
    fn no_burst_across_a_window_boundary() {
        let start = Instant::now();
        let mut limit = SlidingWindow::new(3, Duration::from_secs(60));
        let at = |s: u64| start + Duration::from_secs(s);
        // Three at the end of the first minute...
        assert!(limit.admit(at(57)));
        assert!(limit.admit(at(58)));
        assert!(limit.admit(at(59)));
        // ...and none more at the start of the next: a fixed window that
        // began at 0 would have reset at 60.
        assert!(!limit.admit(at(61)));
        assert!(!limit.admit(at(116)));
        // One frees up 60 s after each admitted event.
        assert!(limit.admit(at(117)));
        assert!(!limit.admit(at(117)));
        assert!(limit.admit(at(118)));
        assert!(limit.admit(at(119)));
        assert!(!limit.admit(at(119)));
    }
}
