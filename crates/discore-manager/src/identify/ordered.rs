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
//! The wrapper passes permits through untouched: the inner queue spaces
//! Identifies by when they were sent, and a permit that comes back unused
//! returns to it. A shard whose Identify was refused (op 9) asks again and
//! gets a slot again, like any later request.

use discore_gateway::{IdentifyFuture, IdentifyQueue};
use discore_protocol::ShardId;
use std::{
    collections::{HashMap, VecDeque},
    fmt,
    sync::{Arc, Mutex, MutexGuard, PoisonError},
    time::Duration,
};
use tokio::sync::oneshot;

/// An identify queue that admits each launched shard's first request in
/// shard id order. See the module documentation.
pub(crate) struct OrderedIdentifyQueue {
    inner: Arc<dyn IdentifyQueue>,
    straggler_timeout: Duration,
    state: Arc<Mutex<Order>>,
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
    pub(crate) fn new(inner: Arc<dyn IdentifyQueue>, straggler_timeout: Duration) -> Self {
        Self {
            inner,
            straggler_timeout,
            state: Arc::default(),
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
        let mut order = lock(&self.state);
        if !order.expected.contains(&shard) {
            drop(order);
            return self.inner.acquire(shard);
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
        })
    }
}

#[cfg(test)]
mod tests {
    use super::OrderedIdentifyQueue;
    use discore_gateway::{IdentifyFuture, IdentifyPermit, IdentifyQueue};
    use discore_protocol::ShardId;
    use std::{
        sync::{Arc, Mutex},
        time::{Duration, Instant},
    };

    /// Records the order in which the inner queue is asked; grants at once.
    #[derive(Debug, Default)]
    struct Recorder(Mutex<Vec<u32>>);

    impl IdentifyQueue for Recorder {
        fn acquire(&self, shard: ShardId) -> IdentifyFuture {
            self.0.lock().expect("lock").push(shard.number());
            let permit = IdentifyPermit::unreported(shard, Instant::now() + Duration::from_secs(2));
            Box::pin(async move { permit })
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
        drop(first.await);
        for permit in late {
            drop(permit.await);
        }
        // A second request of a launched shard goes straight through.
        drop(queue.acquire(ShardId::new(2, 8)).await);
        assert_eq!(*recorder.0.lock().expect("lock"), [0, 1, 2, 3, 2]);
    }

    #[actix_rt::test]
    async fn a_straggler_is_skipped_after_the_timeout() {
        let recorder = Arc::new(Recorder::default());
        let queue = Arc::new(OrderedIdentifyQueue::new(
            recorder.clone(),
            Duration::from_millis(20),
        ));
        queue.launch(ids(0..3));
        // Shard 0 never asks; 1 and 2 go after the timeout, in order.
        let two = queue.acquire(ShardId::new(2, 8));
        let one = queue.acquire(ShardId::new(1, 8));
        drop(futures_util::future::join(one, two).await);
        assert_eq!(*recorder.0.lock().expect("lock"), [1, 2]);
        // The straggler, when it finally asks, goes directly.
        drop(queue.acquire(ShardId::new(0, 8)).await);
        assert_eq!(*recorder.0.lock().expect("lock"), [1, 2, 0]);
    }

    #[actix_rt::test]
    async fn forgetting_a_shard_releases_the_ones_behind_it() {
        let recorder = Arc::new(Recorder::default());
        let queue = OrderedIdentifyQueue::new(recorder.clone(), Duration::from_secs(30));
        queue.launch(ids(0..2));
        let one = queue.acquire(ShardId::new(1, 8));
        queue.forget(ShardId::new(0, 8));
        drop(one.await);
        assert_eq!(*recorder.0.lock().expect("lock"), [1]);
    }

    #[actix_rt::test]
    async fn unlaunched_shards_pass_straight_through() {
        let recorder = Arc::new(Recorder::default());
        let queue = OrderedIdentifyQueue::new(recorder.clone(), Duration::from_secs(30));
        queue.launch(ids(4..6));
        drop(queue.acquire(ShardId::new(7, 8)).await);
        assert_eq!(*recorder.0.lock().expect("lock"), [7]);
    }
}
