//! The identify queue (`docs/protocol.md`, "Identify rate limits"): one Identify per bucket
//! `shard_id % max_concurrency` per window, and the daily session budget.

use discore_protocol::{ShardId, limits::IDENTIFY_WINDOW};
use std::{
    fmt,
    future::Future,
    pin::Pin,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

/// A future the identify queue returns.
pub type IdentifyFuture = Pin<Box<dyn Future<Output = ()> + Send + 'static>>;

/// Decides when a shard may identify. Shared by every shard of a bot (and,
/// with a distributed implementation, by every process).
///
/// Resumes never go through the queue.
pub trait IdentifyQueue: Send + Sync + fmt::Debug + 'static {
    /// Resolves when `shard` may send Identify. Callers that no longer need
    /// the slot simply drop the future.
    fn acquire(&self, shard: ShardId) -> IdentifyFuture;
}

/// The daily session start budget, from `GET /gateway/bot`.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub struct SessionStartLimit {
    /// Identifies left.
    pub remaining: u32,
    /// When the budget refills, from now.
    pub reset_after: Duration,
    /// The budget after a reset.
    pub total: u32,
    /// Identifies kept back: the queue pauses instead of spending them,
    /// because running out resets the bot's token.
    pub reserve: u32,
}

/// The in-memory queue: correct for every shard of one process.
///
/// Slots are handed out in request order per bucket, each `window` after the
/// previous one in the same bucket; shards requesting in id order therefore
/// start bucket by bucket, `max_concurrency` at a time.
#[derive(Debug)]
pub struct InMemoryIdentifyQueue {
    max_concurrency: u32,
    window: Duration,
    state: Arc<Mutex<QueueState>>,
}

#[derive(Debug)]
struct QueueState {
    /// Per bucket: the earliest time its next identify may go out.
    next_free: Vec<Instant>,
    /// Per bucket: when the last identify was actually let go. Slots are
    /// reserved ahead; after a process stall several reserved slots may be
    /// overdue at once, and this keeps them a window apart anyway.
    last_granted: Vec<Option<Instant>>,
    budget: Option<Budget>,
}

#[derive(Debug)]
struct Budget {
    remaining: u32,
    reserve: u32,
    total: u32,
    resets_at: Instant,
    reset_period: Duration,
}

impl InMemoryIdentifyQueue {
    /// A queue for `max_concurrency` buckets and Discord's 5 s window.
    pub fn new(max_concurrency: u32) -> Self {
        Self::with_window(max_concurrency, IDENTIFY_WINDOW)
    }

    /// A queue with a custom window (tests scale it down).
    pub fn with_window(max_concurrency: u32, window: Duration) -> Self {
        let buckets = max_concurrency.max(1);
        let now = Instant::now();
        Self {
            max_concurrency: buckets,
            window,
            state: Arc::new(Mutex::new(QueueState {
                next_free: vec![now; buckets as usize],
                last_granted: vec![None; buckets as usize],
                budget: None,
            })),
        }
    }

    /// Tracks the daily budget and pauses before it would fall to `reserve`.
    #[must_use]
    pub fn with_session_start_limit(self, limit: SessionStartLimit) -> Self {
        if let Ok(mut state) = self.state.lock() {
            state.budget = Some(Budget {
                remaining: limit.remaining,
                reserve: limit.reserve,
                total: limit.total,
                resets_at: Instant::now() + limit.reset_after,
                reset_period: Duration::from_secs(24 * 60 * 60),
            });
        }
        self
    }

    /// The number of buckets.
    pub const fn max_concurrency(&self) -> u32 {
        self.max_concurrency
    }

    /// Identifies left in the daily budget, if tracked.
    pub fn remaining(&self) -> Option<u32> {
        self.state.lock().ok()?.budget.as_ref().map(|b| b.remaining)
    }

    /// Reserves the next slot of the shard's bucket and returns its time.
    fn reserve(&self, shard: ShardId, now: Instant) -> Instant {
        let bucket = (shard.number() % self.max_concurrency) as usize;
        let Ok(mut state) = self.state.lock() else {
            // A poisoned lock means a panic elsewhere; wait a full window to
            // stay on the safe side of Discord's limit.
            return now + self.window;
        };
        let mut earliest = state.next_free[bucket].max(now);
        if let Some(budget) = &mut state.budget {
            if earliest >= budget.resets_at {
                budget.remaining = budget.total;
                budget.resets_at = earliest + budget.reset_period;
            }
            if budget.remaining <= budget.reserve {
                log::warn!(
                    "identify budget down to its reserve of {}: shard {shard} waits {:?} for the daily reset",
                    budget.reserve,
                    budget.resets_at.saturating_duration_since(now)
                );
                earliest = budget.resets_at;
                budget.remaining = budget.total;
                budget.resets_at = earliest + budget.reset_period;
            }
            budget.remaining = budget.remaining.saturating_sub(1);
        }
        state.next_free[bucket] = earliest + self.window;
        earliest
    }
}

impl IdentifyQueue for InMemoryIdentifyQueue {
    fn acquire(&self, shard: ShardId) -> IdentifyFuture {
        let mut at = self.reserve(shard, Instant::now());
        let bucket = (shard.number() % self.max_concurrency) as usize;
        let state = Arc::clone(&self.state);
        let window = self.window;
        Box::pin(async move {
            // Each round either grants or sleeps until a later time.
            for _ in 0..1000 {
                actix_rt::time::sleep_until(at.into()).await;
                let now = Instant::now();
                let Ok(mut state) = state.lock() else {
                    return;
                };
                match state.last_granted[bucket].map(|last| last + window) {
                    Some(earliest) if earliest > now => at = earliest,
                    _ => {
                        state.last_granted[bucket] = Some(now);
                        return;
                    }
                }
            }
        })
    }
}

impl<Q: IdentifyQueue + ?Sized> IdentifyQueue for Arc<Q> {
    fn acquire(&self, shard: ShardId) -> IdentifyFuture {
        (**self).acquire(shard)
    }
}

#[cfg(test)]
mod tests {
    use super::{InMemoryIdentifyQueue, SessionStartLimit};
    use discore_protocol::ShardId;
    use std::time::{Duration, Instant};

    const WINDOW: Duration = Duration::from_secs(5);

    #[test]
    fn buckets_start_together_then_window_by_window() {
        let queue = InMemoryIdentifyQueue::with_window(4, WINDOW);
        let now = Instant::now();
        let slots: Vec<Duration> = (0..12)
            .map(|id| {
                queue
                    .reserve(ShardId::new(id, 12), now)
                    .saturating_duration_since(now)
            })
            .collect();
        for (id, slot) in slots.iter().enumerate() {
            let window = id as u32 / 4;
            assert_eq!(*slot, WINDOW * window, "shard {id}");
        }
    }

    #[test]
    fn one_identify_per_bucket_per_window() {
        let queue = InMemoryIdentifyQueue::with_window(1, WINDOW);
        let now = Instant::now();
        let first = queue.reserve(ShardId::new(0, 2), now);
        let second = queue.reserve(ShardId::new(1, 2), now);
        let again = queue.reserve(ShardId::new(0, 2), now);
        assert_eq!(second - first, WINDOW);
        assert_eq!(again - second, WINDOW);
    }

    /// Slots reserved ahead that all fell due during a stall still go out a
    /// window apart.
    #[actix_rt::test]
    async fn overdue_slots_are_spaced_when_granted() {
        use super::IdentifyQueue as _;
        let window = Duration::from_millis(50);
        let queue = InMemoryIdentifyQueue::with_window(1, window);
        let permits: Vec<_> = (0..3)
            .map(|id| queue.acquire(ShardId::new(id, 3)))
            .collect();
        // A stall: nobody polls the permits until every slot is overdue.
        std::thread::sleep(window * 4);
        let mut granted = Vec::new();
        for permit in permits {
            permit.await;
            granted.push(Instant::now());
        }
        for pair in granted.windows(2) {
            assert!(pair[1] - pair[0] >= window, "{:?}", pair[1] - pair[0]);
        }
    }

    #[test]
    fn budget_pauses_at_the_reserve_until_reset() {
        let queue = InMemoryIdentifyQueue::with_window(16, WINDOW).with_session_start_limit(
            SessionStartLimit {
                remaining: 3,
                reset_after: Duration::from_secs(3600),
                total: 1000,
                reserve: 1,
            },
        );
        let now = Instant::now();
        let a = queue.reserve(ShardId::new(0, 4), now);
        let b = queue.reserve(ShardId::new(1, 4), now);
        assert!(a <= now + Duration::from_millis(1) && b <= now + Duration::from_millis(1));
        assert_eq!(queue.remaining(), Some(1));
        let c = queue.reserve(ShardId::new(2, 4), now);
        assert!(c >= now + Duration::from_secs(3599), "waits for the reset");
        assert_eq!(queue.remaining(), Some(999));
    }
}
