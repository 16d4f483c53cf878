//! The outgoing rate limiter (`docs/protocol.md`, "Send rate limit"): 120 payloads per
//! 60 s per connection with room kept for heartbeats, and 5 presence updates
//! per 20 s. IO-free: every method takes the current time.

use std::{collections::VecDeque, time::Duration, time::Instant};

/// A sliding-window limit: at most `limit` events in any `window`.
#[derive(Clone, Debug)]
pub struct SlidingWindow {
    limit: u32,
    window: Duration,
    sent: VecDeque<Instant>,
}

impl SlidingWindow {
    /// A window that allows `limit` events per `window`.
    pub fn new(limit: u32, window: Duration) -> Self {
        Self {
            limit,
            window,
            // Grown on demand: an idle shard records a heartbeat or two per
            // window, not `limit` sends.
            sent: VecDeque::new(),
        }
    }

    fn expire(&mut self, now: Instant) {
        while let Some(first) = self.sent.front() {
            if now.saturating_duration_since(*first) >= self.window {
                self.sent.pop_front();
            } else {
                break;
            }
        }
    }

    /// Events recorded in the window ending at `now`.
    pub fn used(&mut self, now: Instant) -> u32 {
        self.expire(now);
        self.sent.len() as u32
    }

    /// When the `n`-th oldest event leaves the window, freeing one slot.
    fn slot_frees_at(&self, n: usize) -> Option<Instant> {
        self.sent.get(n).map(|at| *at + self.window)
    }

    /// Records an event at `now`.
    pub fn record(&mut self, now: Instant) {
        self.sent.push_back(now);
    }

    /// Forgets every recorded event (a new connection starts a new window).
    pub fn clear(&mut self) {
        self.sent.clear();
    }
}

/// The limiter of one connection.
#[derive(Clone, Debug)]
pub struct CommandRateLimiter {
    total: SlidingWindow,
    reserved: u32,
    presence: SlidingWindow,
}

/// The outcome of asking to send a user command.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub enum Permit {
    /// Send now; the send is recorded.
    Granted,
    /// Try again at this time.
    RetryAt(Instant),
}

impl CommandRateLimiter {
    /// A limiter for `limit` payloads per `window`, keeping `reserved` of them
    /// for heartbeats and the handshake, and `presence_limit` presence updates
    /// per `presence_window`.
    pub fn new(
        limit: u32,
        window: Duration,
        reserved: u32,
        presence_limit: u32,
        presence_window: Duration,
    ) -> Self {
        Self {
            total: SlidingWindow::new(limit, window),
            reserved: reserved.min(limit.saturating_sub(1)),
            presence: SlidingWindow::new(presence_limit, presence_window),
        }
    }

    /// How many payloads to keep for heartbeats: the heartbeats one window can
    /// hold, one for a server-requested heartbeat, and one for Identify or Resume.
    pub fn reserve_for(heartbeat_interval: Duration, window: Duration) -> u32 {
        let interval = heartbeat_interval.max(Duration::from_millis(1));
        let heartbeats = window.as_nanos().div_ceil(interval.as_nanos());
        u32::try_from(heartbeats)
            .unwrap_or(u32::MAX)
            .saturating_add(2)
    }

    /// Changes the heartbeat reserve (Hello tells the interval).
    pub fn set_reserved(&mut self, reserved: u32) {
        self.reserved = reserved.min(self.total.limit.saturating_sub(1));
    }

    /// Records a heartbeat, Identify or Resume: these always go out, from the
    /// reserved part of the budget.
    pub fn record_control(&mut self, now: Instant) {
        self.total.record(now);
    }

    /// Asks to send a user command now.
    pub fn try_command(&mut self, now: Instant, is_presence: bool) -> Permit {
        let budget = self.total.limit - self.reserved;
        let used = self.total.used(now);
        let mut retry_at = None;
        if used >= budget {
            // The slot frees when enough old sends expire to get under budget.
            let index = (used - budget) as usize;
            retry_at = self.total.slot_frees_at(index);
        }
        if is_presence && self.presence.used(now) >= self.presence.limit {
            let index = (self.presence.used(now) - self.presence.limit) as usize;
            let presence_at = self.presence.slot_frees_at(index);
            retry_at = retry_at.max(presence_at);
        }
        match retry_at {
            Some(at) => Permit::RetryAt(at),
            None => {
                self.total.record(now);
                if is_presence {
                    self.presence.record(now);
                }
                Permit::Granted
            }
        }
    }

    /// Payloads recorded in the current window.
    #[cfg(test)]
    pub fn used(&mut self, now: Instant) -> u32 {
        self.total.used(now)
    }

    /// Starts afresh for a new connection: Discord counts per connection.
    pub fn reset(&mut self) {
        self.total.clear();
        self.presence.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::{CommandRateLimiter, Permit};
    use std::time::{Duration, Instant};

    fn limiter() -> CommandRateLimiter {
        CommandRateLimiter::new(120, Duration::from_secs(60), 4, 5, Duration::from_secs(20))
    }

    #[test]
    fn commands_leave_the_reserve_for_heartbeats() {
        let start = Instant::now();
        let mut limiter = limiter();
        for i in 0..116 {
            assert_eq!(
                limiter.try_command(start, false),
                Permit::Granted,
                "command {i}"
            );
        }
        assert_eq!(
            limiter.try_command(start, false),
            Permit::RetryAt(start + Duration::from_secs(60))
        );
        for _ in 0..4 {
            limiter.record_control(start);
        }
        assert_eq!(limiter.used(start), 120);
        assert_eq!(
            limiter.try_command(start + Duration::from_secs(60), false),
            Permit::Granted
        );
    }

    #[test]
    fn a_burst_never_exceeds_the_limit_in_any_window() {
        let start = Instant::now();
        let mut limiter = limiter();
        let mut now = start;
        let mut sent = Vec::new();
        let mut heartbeat_due = start;
        while sent.len() < 1000 {
            if now >= heartbeat_due {
                limiter.record_control(now);
                sent.push(now);
                heartbeat_due = now + Duration::from_millis(41_250);
            }
            match limiter.try_command(now, false) {
                Permit::Granted => sent.push(now),
                Permit::RetryAt(at) => now = at.min(heartbeat_due),
            }
        }
        for (i, at) in sent.iter().enumerate() {
            let in_window = sent[i..]
                .iter()
                .take_while(|t| **t < *at + Duration::from_secs(60));
            assert!(in_window.count() <= 120, "window starting at send {i}");
        }
    }

    #[test]
    fn presence_updates_are_limited_separately() {
        let start = Instant::now();
        let mut limiter = limiter();
        for _ in 0..5 {
            assert_eq!(limiter.try_command(start, true), Permit::Granted);
        }
        assert_eq!(
            limiter.try_command(start, true),
            Permit::RetryAt(start + Duration::from_secs(20))
        );
        assert_eq!(limiter.try_command(start, false), Permit::Granted);
    }

    #[test]
    fn reserve_covers_a_window_of_heartbeats_but_never_all_of_it() {
        let reserve =
            CommandRateLimiter::reserve_for(Duration::from_millis(41_250), Duration::from_secs(60));
        assert_eq!(reserve, 4);
        // An absurd interval would reserve everything; one slot stays usable.
        let huge =
            CommandRateLimiter::reserve_for(Duration::from_millis(1), Duration::from_secs(60));
        let mut limiter = limiter();
        limiter.set_reserved(huge);
        let now = Instant::now();
        assert_eq!(limiter.try_command(now, false), Permit::Granted);
        assert!(matches!(
            limiter.try_command(now, false),
            Permit::RetryAt(_)
        ));
    }
}
