//! Asking the identify queue in shard id order.
//!
//! The shards of a fleet connect at the same time and reach the point where
//! they may identify (Hello received) in whatever order their connections
//! complete. Queues hand out slots in request order, so without help shard 5
//! could take the first slot of bucket 1 and shard 1 the second: buckets
//! would not start in order. This wrapper passes the first request of every
//! shard of a launch to the inner queue in shard id order. A shard that has
//! not asked within `straggler_timeout` while later ones wait is skipped (it
//! asks the inner queue directly when it comes), so a slow connection cannot
//! hold the fleet back for long. Every later request (a reconnect that needs
//! a new session) goes straight to the inner queue.
//!
//! When the manager built the inner queue itself it knows its buckets and
//! window, and also spaces grants: a bucket's grant never follows the
//! previous one by less than the window, measured when granted. A queue
//! that reserves slots in advance would otherwise hand out several overdue
//! slots at once after the process stalled (a busy machine), and the
//! identifies would reach Discord back to back.

use discore_gateway::{IdentifyFuture, IdentifyQueue};
use discore_protocol::ShardId;
use std::{
    collections::{HashMap, VecDeque},
    fmt,
    sync::{Arc, Mutex, MutexGuard, PoisonError},
    time::{Duration, Instant},
};
use tokio::sync::oneshot;

/// An identify queue that admits each launched shard's first request in
/// shard id order. See the module documentation.
pub(crate) struct OrderedIdentifyQueue {
    inner: Arc<dyn IdentifyQueue>,
    straggler_timeout: Duration,
    state: Arc<Mutex<Order>>,
    spacing: Option<Arc<Spacing>>,
}

/// The last grant of each bucket, to space grants by the window.
#[derive(Debug)]
pub(crate) struct Spacing {
    max_concurrency: u32,
    window: Duration,
    last: Mutex<HashMap<u32, Instant>>,
}

impl Spacing {
    pub(crate) fn new(max_concurrency: u32, window: Duration) -> Self {
        Self {
            max_concurrency: max_concurrency.max(1),
            window,
            last: Mutex::default(),
        }
    }

    /// Waits until `shard`'s bucket had no grant for a window, and records
    /// this grant.
    async fn pace(&self, shard: ShardId) {
        let bucket = shard.number() % self.max_concurrency;
        loop {
            let wait = {
                let mut last = self.last.lock().unwrap_or_else(PoisonError::into_inner);
                let now = Instant::now();
                match last.get(&bucket) {
                    Some(previous) if now < *previous + self.window => {
                        Some(*previous + self.window - now)
                    }
                    _ => {
                        last.insert(bucket, now);
                        None
                    }
                }
            };
            match wait {
                Some(wait) => {
                    log::debug!("shard {shard}: identify held {wait:?} to keep its bucket's pace");
                    actix_rt::time::sleep(wait).await;
                }
                None => return,
            }
        }
    }
}

#[derive(Default)]
struct Order {
    /// Launched shards whose first request has not been passed on, in order.
    expected: VecDeque<ShardId>,
    /// Requests waiting for their turn.
    waiting: HashMap<ShardId, oneshot::Sender<IdentifyFuture>>,
}

impl fmt::Debug for OrderedIdentifyQueue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let order = lock(&self.state);
        f.debug_struct("OrderedIdentifyQueue")
            .field("inner", &self.inner)
            .field("expected", &order.expected.len())
            .field("waiting", &order.waiting.len())
            .field("spacing", &self.spacing)
            .finish()
    }
}

fn lock(state: &Mutex<Order>) -> MutexGuard<'_, Order> {
    state.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Order {
    /// Passes waiting requests on, in order, as far as they are contiguous.
    fn advance(&mut self, inner: &dyn IdentifyQueue) {
        while let Some(front) = self.expected.front().copied() {
            let Some(waiter) = self.waiting.remove(&front) else {
                break;
            };
            self.expected.pop_front();
            // Asking the inner queue now, in order, is what reserves the
            // slots in order.
            if let Err(permit) = waiter.send(inner.acquire(front)) {
                // The shard stopped waiting (its connection closed); it asks
                // again directly. The slot is wasted, never doubled.
                drop(permit);
            }
        }
    }

    /// Skips shards ahead of `shard` that have not asked yet.
    fn skip_stragglers_before(&mut self, shard: ShardId) {
        let Some(position) = self.expected.iter().position(|s| *s == shard) else {
            return;
        };
        let mut kept = VecDeque::with_capacity(self.expected.len());
        for (index, id) in self.expected.drain(..).enumerate() {
            if index < position && !self.waiting.contains_key(&id) {
                log::info!("shard {id}: has not asked to identify in time; later shards go first");
            } else {
                kept.push_back(id);
            }
        }
        self.expected = kept;
    }
}

impl OrderedIdentifyQueue {
    pub(crate) fn new(
        inner: Arc<dyn IdentifyQueue>,
        straggler_timeout: Duration,
        spacing: Option<Spacing>,
    ) -> Self {
        Self {
            inner,
            straggler_timeout,
            state: Arc::default(),
            spacing: spacing.map(Arc::new),
        }
    }

    /// Announces a launch: the first requests of `shards` are passed on in
    /// this order.
    pub(crate) fn launch(&self, shards: impl IntoIterator<Item = ShardId>) {
        let mut order = lock(&self.state);
        for shard in shards {
            if !order.expected.contains(&shard) {
                order.expected.push_back(shard);
            }
        }
    }

    /// A shard stopped for good: nobody waits for it any more.
    pub(crate) fn forget(&self, shard: ShardId) {
        let mut order = lock(&self.state);
        order.expected.retain(|s| *s != shard);
        order.waiting.remove(&shard);
        order.advance(&*self.inner);
    }
}

impl IdentifyQueue for OrderedIdentifyQueue {
    fn acquire(&self, shard: ShardId) -> IdentifyFuture {
        let spacing = self.spacing.clone();
        let mut order = lock(&self.state);
        if !order.expected.contains(&shard) {
            drop(order);
            let permit = self.inner.acquire(shard);
            return Box::pin(async move {
                permit.await;
                if let Some(spacing) = spacing {
                    spacing.pace(shard).await;
                }
            });
        }
        let (sender, mut receiver) = oneshot::channel();
        // A repeated request replaces an abandoned one.
        order.waiting.insert(shard, sender);
        order.advance(&*self.inner);
        drop(order);
        let state = Arc::clone(&self.state);
        let inner = Arc::clone(&self.inner);
        let timeout = self.straggler_timeout;
        Box::pin(async move {
            let permit = match actix_rt::time::timeout(timeout, &mut receiver).await {
                Ok(Ok(permit)) => Some(permit),
                // Forgotten meanwhile: ask directly.
                Ok(Err(_)) => None,
                Err(_elapsed) => {
                    {
                        let mut order = lock(&state);
                        order.skip_stragglers_before(shard);
                        order.advance(&*inner);
                    }
                    receiver.await.ok()
                }
            };
            match permit {
                Some(permit) => permit.await,
                None => inner.acquire(shard).await,
            }
            if let Some(spacing) = spacing {
                spacing.pace(shard).await;
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::OrderedIdentifyQueue;
    use discore_gateway::{IdentifyFuture, IdentifyQueue};
    use discore_protocol::ShardId;
    use std::{
        sync::{Arc, Mutex},
        time::Duration,
    };

    /// Records the order in which the inner queue is asked; grants at once.
    #[derive(Debug, Default)]
    struct Recorder(Mutex<Vec<u32>>);

    impl IdentifyQueue for Recorder {
        fn acquire(&self, shard: ShardId) -> IdentifyFuture {
            self.0.lock().expect("lock").push(shard.number());
            Box::pin(async {})
        }
    }

    fn ids(numbers: impl IntoIterator<Item = u32>) -> Vec<ShardId> {
        numbers.into_iter().map(|n| ShardId::new(n, 8)).collect()
    }

    #[actix_rt::test]
    async fn first_requests_reach_the_inner_queue_in_id_order() {
        let recorder = Arc::new(Recorder::default());
        let queue = Arc::new(OrderedIdentifyQueue::new(
            recorder.clone(),
            Duration::from_secs(30),
            None,
        ));
        queue.launch(ids(0..4));
        // Requests arrive out of order; none passes before shard 0 asked.
        let late: Vec<_> = [3, 1, 2]
            .into_iter()
            .map(|n| queue.acquire(ShardId::new(n, 8)))
            .collect();
        assert!(recorder.0.lock().expect("lock").is_empty());
        let first = queue.acquire(ShardId::new(0, 8));
        assert_eq!(*recorder.0.lock().expect("lock"), [0, 1, 2, 3]);
        first.await;
        for permit in late {
            permit.await;
        }
        // A second request of a launched shard goes straight through.
        queue.acquire(ShardId::new(2, 8)).await;
        assert_eq!(*recorder.0.lock().expect("lock"), [0, 1, 2, 3, 2]);
    }

    #[actix_rt::test]
    async fn a_straggler_is_skipped_after_the_timeout() {
        let recorder = Arc::new(Recorder::default());
        let queue = Arc::new(OrderedIdentifyQueue::new(
            recorder.clone(),
            Duration::from_millis(20),
            None,
        ));
        queue.launch(ids(0..3));
        // Shard 0 never asks; 1 and 2 go after the timeout, in order.
        let two = queue.acquire(ShardId::new(2, 8));
        let one = queue.acquire(ShardId::new(1, 8));
        futures_util::future::join(one, two).await;
        assert_eq!(*recorder.0.lock().expect("lock"), [1, 2]);
        // The straggler, when it finally asks, goes directly.
        queue.acquire(ShardId::new(0, 8)).await;
        assert_eq!(*recorder.0.lock().expect("lock"), [1, 2, 0]);
    }

    #[actix_rt::test]
    async fn forgetting_a_shard_releases_the_ones_behind_it() {
        let recorder = Arc::new(Recorder::default());
        let queue = OrderedIdentifyQueue::new(recorder.clone(), Duration::from_secs(30), None);
        queue.launch(ids(0..2));
        let one = queue.acquire(ShardId::new(1, 8));
        queue.forget(ShardId::new(0, 8));
        one.await;
        assert_eq!(*recorder.0.lock().expect("lock"), [1]);
    }

    #[actix_rt::test]
    async fn unlaunched_shards_pass_straight_through() {
        let recorder = Arc::new(Recorder::default());
        let queue = OrderedIdentifyQueue::new(recorder.clone(), Duration::from_secs(30), None);
        queue.launch(ids(4..6));
        queue.acquire(ShardId::new(7, 8)).await;
        assert_eq!(*recorder.0.lock().expect("lock"), [7]);
    }
}

#[cfg(test)]
mod spacing_tests {
    use super::{OrderedIdentifyQueue, Spacing};
    use discore_gateway::{IdentifyFuture, IdentifyQueue};
    use discore_protocol::ShardId;
    use std::{
        sync::Arc,
        time::{Duration, Instant},
    };

    /// Grants everything at once, as a queue whose slots all fell due
    /// while the process stalled.
    #[derive(Debug)]
    struct AllDue;

    impl IdentifyQueue for AllDue {
        fn acquire(&self, _: ShardId) -> IdentifyFuture {
            Box::pin(async {})
        }
    }

    #[actix_rt::test]
    async fn overdue_grants_of_a_bucket_are_spaced_by_the_window() {
        let window = Duration::from_millis(40);
        let queue = OrderedIdentifyQueue::new(
            Arc::new(AllDue),
            Duration::from_secs(30),
            Some(Spacing::new(2, window)),
        );
        let start = Instant::now();
        // Shards 0, 2 and 4 share bucket 0; shard 1 is alone in bucket 1.
        let mut times = Vec::new();
        for n in [0, 1, 2, 4] {
            queue.acquire(ShardId::new(n, 6)).await;
            times.push((n, start.elapsed()));
        }
        assert!(times[1].1 < window, "bucket 1 is not held back: {times:?}");
        assert!(times[2].1 >= window, "{times:?}");
        assert!(times[3].1 >= window * 2, "{times:?}");
    }
}
