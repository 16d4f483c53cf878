//! Measuring the identify queue: [`MeteredIdentifyQueue`] wraps any
//! [`IdentifyQueue`] and records how long shards wait for a slot.

use crate::snapshot::IdentifySnapshot;
use discore_gateway::{ConnectTurnFuture, IdentifyFuture, IdentifyQueue, InMemoryIdentifyQueue};
use discore_protocol::ShardId;
use std::{
    fmt,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

/// Upper bounds of the identify wait histogram's buckets, in seconds.
pub const IDENTIFY_WAIT_BUCKETS: [f64; 10] =
    [0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0];

type Remaining = Box<dyn Fn() -> Option<u32> + Send + Sync>;

/// The numbers a [`MeteredIdentifyQueue`] records; share it with a
/// [`ManagerSource`](crate::ManagerSource) to publish them.
pub struct IdentifyMeter {
    granted: AtomicU64,
    waiting: AtomicU64,
    waits: Mutex<Waits>,
    remaining: Option<Remaining>,
    budget_total: Option<u32>,
}

#[derive(Default)]
struct Waits {
    buckets: [u64; IDENTIFY_WAIT_BUCKETS.len() + 1],
    sum: Duration,
}

impl fmt::Debug for IdentifyMeter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IdentifyMeter")
            .field("granted", &self.granted.load(Ordering::Relaxed))
            .field("waiting", &self.waiting.load(Ordering::Relaxed))
            .field("budget_total", &self.budget_total)
            .finish_non_exhaustive()
    }
}

impl IdentifyMeter {
    fn new(remaining: Option<Remaining>, budget_total: Option<u32>) -> Self {
        Self {
            granted: AtomicU64::new(0),
            waiting: AtomicU64::new(0),
            waits: Mutex::new(Waits::default()),
            remaining,
            budget_total,
        }
    }

    fn record(&self, waited: Duration) {
        self.granted.fetch_add(1, Ordering::Relaxed);
        let seconds = waited.as_secs_f64();
        let bucket = IDENTIFY_WAIT_BUCKETS
            .iter()
            .position(|bound| seconds <= *bound)
            .unwrap_or(IDENTIFY_WAIT_BUCKETS.len());
        if let Ok(mut waits) = self.waits.lock() {
            waits.buckets[bucket] += 1;
            waits.sum += waited;
        }
    }

    /// What was measured so far.
    pub fn snapshot(&self) -> IdentifySnapshot {
        let (wait_buckets, wait_sum) = match self.waits.lock() {
            Ok(waits) => (waits.buckets.to_vec(), waits.sum),
            Err(_) => (vec![0; IDENTIFY_WAIT_BUCKETS.len() + 1], Duration::ZERO),
        };
        IdentifySnapshot {
            granted: self.granted.load(Ordering::Relaxed),
            waiting: self.waiting.load(Ordering::Relaxed),
            wait_buckets,
            wait_sum,
            budget_remaining: self.remaining.as_ref().and_then(|f| f()),
            budget_total: self.budget_total,
        }
    }
}

/// An [`IdentifyQueue`] that measures another: slots granted, shards waiting,
/// how long they waited, and (for the in-memory queue) the daily budget
/// left. Give it to the manager (`IdentifyConfig::queue`) and its
/// [`meter`](Self::meter) to the [`ManagerSource`](crate::ManagerSource).
///
/// ```
/// use discore_admin::MeteredIdentifyQueue;
/// use discore_gateway::InMemoryIdentifyQueue;
///
/// let queue = MeteredIdentifyQueue::in_memory(InMemoryIdentifyQueue::new(1), Some(1000));
/// let meter = queue.meter();
/// assert_eq!(meter.snapshot().granted, 0);
/// ```
#[derive(Debug)]
pub struct MeteredIdentifyQueue {
    inner: Arc<dyn IdentifyQueue>,
    meter: Arc<IdentifyMeter>,
}

impl MeteredIdentifyQueue {
    /// Measures `inner`; the daily budget is unknown.
    pub fn new(inner: Arc<dyn IdentifyQueue>) -> Self {
        Self {
            inner,
            meter: Arc::new(IdentifyMeter::new(None, None)),
        }
    }

    /// Measures an in-memory queue, publishing the identifies it has left
    /// and `budget_total`, the daily budget after a reset (from
    /// `GET /gateway/bot`).
    pub fn in_memory(queue: InMemoryIdentifyQueue, budget_total: Option<u32>) -> Self {
        let queue = Arc::new(queue);
        let reader = Arc::clone(&queue);
        Self {
            inner: queue,
            meter: Arc::new(IdentifyMeter::new(
                Some(Box::new(move || reader.remaining())),
                budget_total,
            )),
        }
    }

    /// The numbers, to publish.
    pub fn meter(&self) -> Arc<IdentifyMeter> {
        Arc::clone(&self.meter)
    }
}

/// Decrements the waiting gauge however the wait ends (granted or dropped).
struct Waiting(Arc<IdentifyMeter>);

impl Drop for Waiting {
    fn drop(&mut self) {
        self.0.waiting.fetch_sub(1, Ordering::Relaxed);
    }
}

impl IdentifyQueue for MeteredIdentifyQueue {
    fn acquire(&self, shard: ShardId) -> IdentifyFuture {
        let meter = Arc::clone(&self.meter);
        meter.waiting.fetch_add(1, Ordering::Relaxed);
        let waiting = Waiting(Arc::clone(&meter));
        let slot = self.inner.acquire(shard);
        let asked = Instant::now();
        Box::pin(async move {
            let permit = slot.await;
            drop(waiting);
            let waited = asked.elapsed();
            log::trace!("shard {shard}: identify slot after {waited:?}");
            meter.record(waited);
            permit
        })
    }

    fn connect_turn(&self, shard: ShardId) -> ConnectTurnFuture {
        self.inner.connect_turn(shard)
    }
}

#[cfg(test)]
mod tests {
    use super::{IDENTIFY_WAIT_BUCKETS, MeteredIdentifyQueue};
    use discore_gateway::{IdentifyQueue, InMemoryIdentifyQueue, SessionStartLimit};
    use discore_protocol::ShardId;
    use std::time::Duration;

    #[actix_rt::test]
    async fn counts_grants_waits_and_the_budget() {
        let inner = InMemoryIdentifyQueue::with_window(1, Duration::from_millis(20))
            .with_session_start_limit(SessionStartLimit {
                remaining: 10,
                reset_after: Duration::from_secs(3600),
                total: 1000,
                reserve: 1,
            });
        let queue = MeteredIdentifyQueue::in_memory(inner, Some(1000));
        let meter = queue.meter();
        let first = queue.acquire(ShardId::new(0, 2));
        let second = queue.acquire(ShardId::new(1, 2));
        assert_eq!(meter.snapshot().waiting, 2);
        first.await.sent(std::time::Instant::now());
        second.await.sent(std::time::Instant::now());
        let seen = meter.snapshot();
        assert_eq!(seen.granted, 2);
        assert_eq!(seen.waiting, 0);
        assert_eq!(seen.wait_buckets.len(), IDENTIFY_WAIT_BUCKETS.len() + 1);
        assert_eq!(seen.wait_buckets.iter().sum::<u64>(), 2);
        // The second shard waited a window behind the first.
        assert!(seen.wait_sum >= Duration::from_millis(20), "{seen:?}");
        assert_eq!(seen.budget_remaining, Some(8));
        assert_eq!(seen.budget_total, Some(1000));
    }

    #[actix_rt::test]
    async fn a_dropped_wait_is_no_longer_waiting() {
        let queue = MeteredIdentifyQueue::new(std::sync::Arc::new(InMemoryIdentifyQueue::new(1)));
        let meter = queue.meter();
        let wait = queue.acquire(ShardId::new(0, 1));
        assert_eq!(meter.snapshot().waiting, 1);
        drop(wait);
        assert_eq!(meter.snapshot().waiting, 0);
        assert_eq!(meter.snapshot().granted, 0);
    }
}
