//! The in-process identify queue: a line per bucket, one permit out per
//! bucket at a time, Identifies spaced by when they were sent.

use super::{
    ConnectTurn, ConnectTurnFuture, IDENTIFY_MARGIN, IdentifyFuture, IdentifyPermit, IdentifyQueue,
    PERMIT_ANSWER_TIMEOUT, PermitReport,
};
use discore_protocol::{ShardId, limits::IDENTIFY_WINDOW};
use futures_util::future::{Either, select};
use std::{
    collections::VecDeque,
    fmt,
    sync::{Arc, Mutex, MutexGuard, PoisonError},
    time::{Duration, Instant},
};
use tokio::sync::{Notify, Semaphore};

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

/// How long the budget lasts after a reset: Discord's day.
const RESET_PERIOD: Duration = Duration::from_secs(24 * 60 * 60);

/// The in-memory queue: correct for every shard of one process.
///
/// Each bucket has a line in request order and lets one permit out at a
/// time. The next one goes when the previous Identify was reported sent
/// and a window plus [`IDENTIFY_MARGIN`] has passed since; at once when the
/// previous permit came back unused; and a window after the previous
/// permit's expiry when it was not reported by then (a report that comes
/// later still pushes the next slot back). Shards requesting in id
/// order therefore start bucket by bucket, `max_concurrency` at a time.
///
/// Connect turns ([`IdentifyQueue::connect_turn`]) are counted per bucket
/// and handed out in request order: at most `1 + connect_ahead` shards of
/// a bucket hold a connection that waits for (or has just sent) its
/// Identify; by default 2, the one identifying and the next one.
pub struct InMemoryIdentifyQueue {
    max_concurrency: u32,
    window: Duration,
    answer_timeout: Duration,
    shared: Arc<Shared>,
    /// Per bucket, the connect turns; `None` when nothing is spaced.
    turns: Option<Arc<[Arc<Semaphore>]>>,
}

/// Shards of a bucket that may connect ahead of the one identifying, by
/// default.
const CONNECT_AHEAD: u32 = 1;

fn turn_gates(buckets: u32, connect_ahead: u32) -> Arc<[Arc<Semaphore>]> {
    let per_bucket = usize::try_from(connect_ahead)
        .unwrap_or(usize::MAX)
        .saturating_add(1)
        .min(Semaphore::MAX_PERMITS);
    (0..buckets)
        .map(|_| Arc::new(Semaphore::new(per_bucket)))
        .collect()
}

impl fmt::Debug for InMemoryIdentifyQueue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InMemoryIdentifyQueue")
            .field("max_concurrency", &self.max_concurrency)
            .field("window", &self.window)
            .field("answer_timeout", &self.answer_timeout)
            .field(
                "connect_turns_free",
                &self.turns.as_ref().map(|gates| {
                    gates
                        .iter()
                        .map(|gate| gate.available_permits())
                        .sum::<usize>()
                }),
            )
            .finish_non_exhaustive()
    }
}

struct Shared {
    /// The window plus the margin: the least time between two sends of a bucket.
    spacing: Duration,
    state: Mutex<State>,
}

struct State {
    buckets: Vec<Bucket>,
    budget: Option<Budget>,
}

#[derive(Default)]
struct Bucket {
    next_ticket: u64,
    /// Requests not yet granted, in order, each with what wakes it.
    line: VecDeque<(u64, Arc<Notify>)>,
    /// The permit out, if any.
    holder: Option<Holder>,
    /// The earliest time the next permit of this bucket may go out.
    next_allowed: Option<Instant>,
    /// The last permit that expired unreported: its report may still come.
    expired: Option<u64>,
}

struct Holder {
    ticket: u64,
    expires_at: Instant,
}

struct Budget {
    remaining: u32,
    reserve: u32,
    total: u32,
    resets_at: Instant,
}

/// Why the front of a line cannot have a permit yet.
enum Wait {
    /// Until this time, or until something changes.
    Until(Instant),
    /// Until something changes (the request is not at the front).
    Turn,
}

impl Bucket {
    fn wake_front(&self) {
        if let Some((_, notify)) = self.line.front() {
            notify.notify_one();
        }
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic elsewhere while holding the lock leaves consistent data:
        // every update is a single assignment.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Grants `ticket` a permit now, or tells how long to wait.
    fn try_grant(
        &self,
        bucket: usize,
        ticket: u64,
        now: Instant,
        answer_timeout: Duration,
    ) -> Result<Instant, Wait> {
        let mut state = self.lock();
        let State { buckets, budget } = &mut *state;
        let line = &mut buckets[bucket];
        if line.line.front().map(|(t, _)| *t) != Some(ticket) {
            return Err(Wait::Turn);
        }
        if let Some(holder) = &line.holder {
            if now < holder.expires_at {
                return Err(Wait::Until(holder.expires_at));
            }
            // Never reported: assume it went out at the last moment.
            let assumed = holder.expires_at + self.spacing;
            line.next_allowed = Some(line.next_allowed.map_or(assumed, |n| n.max(assumed)));
            line.expired = Some(holder.ticket);
            line.holder = None;
        }
        if let Some(next) = line.next_allowed
            && now < next
        {
            return Err(Wait::Until(next));
        }
        if let Some(budget) = budget {
            if now >= budget.resets_at {
                budget.remaining = budget.total;
                budget.resets_at = now + RESET_PERIOD;
            }
            if budget.remaining <= budget.reserve {
                log::warn!(
                    "identify budget down to its reserve of {}: bucket {bucket} waits {:?} for the daily reset",
                    budget.reserve,
                    budget.resets_at.saturating_duration_since(now)
                );
                return Err(Wait::Until(budget.resets_at));
            }
            budget.remaining -= 1;
        }
        line.line.pop_front();
        let expires_at = now + answer_timeout;
        line.holder = Some(Holder { ticket, expires_at });
        Ok(expires_at)
    }

    /// The permit `ticket` was sent at `at`.
    fn sent(&self, bucket: usize, ticket: u64, at: Instant) {
        let mut state = self.lock();
        let line = &mut state.buckets[bucket];
        let holds = line.holder.as_ref().is_some_and(|h| h.ticket == ticket);
        if holds || line.expired == Some(ticket) {
            if holds {
                line.holder = None;
            } else {
                line.expired = None;
            }
            let next = at + self.spacing;
            line.next_allowed = Some(line.next_allowed.map_or(next, |n| n.max(next)));
            line.wake_front();
        }
    }

    /// The permit `ticket` came back unused: its slot and budget return.
    fn unused(&self, bucket: usize, ticket: u64) {
        let mut state = self.lock();
        let State { buckets, budget } = &mut *state;
        let line = &mut buckets[bucket];
        if line.holder.as_ref().is_some_and(|h| h.ticket == ticket) {
            line.holder = None;
            if let Some(budget) = budget {
                budget.remaining = budget.remaining.saturating_add(1).min(budget.total);
            }
            line.wake_front();
        }
    }

    /// A request was dropped before its grant: it leaves the line.
    fn leave(&self, bucket: usize, ticket: u64) {
        let mut state = self.lock();
        let line = &mut state.buckets[bucket];
        let was_front = line.line.front().is_some_and(|(t, _)| *t == ticket);
        line.line.retain(|(t, _)| *t != ticket);
        if was_front {
            line.wake_front();
        }
    }
}

/// Reports a permit of the in-memory queue.
struct Report {
    shared: Arc<Shared>,
    bucket: usize,
    ticket: u64,
}

impl PermitReport for Report {
    fn sent(self: Box<Self>, at: Instant) {
        self.shared.sent(self.bucket, self.ticket, at);
    }

    fn unused(self: Box<Self>) {
        self.shared.unused(self.bucket, self.ticket);
    }
}

/// Takes a request out of its line if it is dropped before its grant.
struct Place {
    shared: Arc<Shared>,
    bucket: usize,
    ticket: u64,
    granted: bool,
}

impl Drop for Place {
    fn drop(&mut self) {
        if !self.granted {
            self.shared.leave(self.bucket, self.ticket);
        }
    }
}

impl InMemoryIdentifyQueue {
    /// A queue for `max_concurrency` buckets and Discord's 5 s window.
    pub fn new(max_concurrency: u32) -> Self {
        Self::with_window(max_concurrency, IDENTIFY_WINDOW)
    }

    /// A queue with a custom window (tests scale it down).
    pub fn with_window(max_concurrency: u32, window: Duration) -> Self {
        let buckets = max_concurrency.max(1);
        // A zero window spaces nothing: no margin either.
        let spacing = if window.is_zero() {
            Duration::ZERO
        } else {
            window + IDENTIFY_MARGIN
        };
        Self {
            max_concurrency: buckets,
            window,
            answer_timeout: PERMIT_ANSWER_TIMEOUT,
            turns: (!window.is_zero()).then(|| turn_gates(buckets, CONNECT_AHEAD)),
            shared: Arc::new(Shared {
                spacing,
                state: Mutex::new(State {
                    buckets: (0..buckets).map(|_| Bucket::default()).collect(),
                    budget: None,
                }),
            }),
        }
    }

    /// How long a permit is good for before the queue assumes it was sent
    /// (default [`PERMIT_ANSWER_TIMEOUT`]; tests scale it down).
    #[must_use]
    pub fn with_answer_timeout(mut self, timeout: Duration) -> Self {
        self.answer_timeout = timeout;
        self
    }

    /// How many shards per bucket may connect ahead of the one identifying
    /// (default 1). `u32::MAX` lets every shard connect at once.
    #[must_use]
    pub fn with_connect_ahead(mut self, connect_ahead: u32) -> Self {
        if self.turns.is_some() {
            self.turns = (connect_ahead != u32::MAX)
                .then(|| turn_gates(self.max_concurrency, connect_ahead));
        }
        self
    }

    /// Tracks the daily budget and pauses before it would fall to `reserve`.
    #[must_use]
    pub fn with_session_start_limit(self, limit: SessionStartLimit) -> Self {
        self.shared.lock().budget = Some(Budget {
            remaining: limit.remaining,
            reserve: limit.reserve,
            total: limit.total,
            resets_at: Instant::now() + limit.reset_after,
        });
        self
    }

    /// The number of buckets.
    pub const fn max_concurrency(&self) -> u32 {
        self.max_concurrency
    }

    /// The window between two Identifies of a bucket (without the margin).
    pub const fn window(&self) -> Duration {
        self.window
    }

    /// Identifies left in the daily budget, if tracked.
    pub fn remaining(&self) -> Option<u32> {
        self.shared.lock().budget.as_ref().map(|b| b.remaining)
    }

    /// Takes a place in the shard's bucket line.
    fn join(&self, shard: ShardId) -> (Place, Arc<Notify>) {
        let bucket = (shard.number() % self.max_concurrency) as usize;
        let notify = Arc::new(Notify::new());
        let mut state = self.shared.lock();
        let line = &mut state.buckets[bucket];
        let ticket = line.next_ticket;
        line.next_ticket += 1;
        line.line.push_back((ticket, Arc::clone(&notify)));
        drop(state);
        let place = Place {
            shared: Arc::clone(&self.shared),
            bucket,
            ticket,
            granted: false,
        };
        (place, notify)
    }
}

impl IdentifyQueue for InMemoryIdentifyQueue {
    fn acquire(&self, shard: ShardId) -> IdentifyFuture {
        let (mut place, notify) = self.join(shard);
        let answer_timeout = self.answer_timeout;
        Box::pin(async move {
            // Each round ends in a grant or a wait for a change or a time;
            // a round happens only when the line moved or a time came.
            for _ in 0..u64::MAX {
                let woken = notify.notified();
                futures_util::pin_mut!(woken);
                woken.as_mut().enable();
                match place.shared.try_grant(
                    place.bucket,
                    place.ticket,
                    Instant::now(),
                    answer_timeout,
                ) {
                    Ok(expires_at) => {
                        place.granted = true;
                        let report = Report {
                            shared: Arc::clone(&place.shared),
                            bucket: place.bucket,
                            ticket: place.ticket,
                        };
                        return IdentifyPermit::new(shard, expires_at, Box::new(report));
                    }
                    Err(Wait::Turn) => woken.await,
                    Err(Wait::Until(at)) => {
                        let timer = actix_rt::time::sleep_until(at.into());
                        futures_util::pin_mut!(timer);
                        if let Either::Left(((), _)) = select(timer, woken).await {
                            log::trace!("shard {shard}: identify wait ended at its time");
                        }
                    }
                }
            }
            unreachable_wait(shard).await
        })
    }

    fn connect_turn(&self, shard: ShardId) -> ConnectTurnFuture {
        let bucket = (shard.number() % self.max_concurrency) as usize;
        let Some(gate) = self.turns.as_ref().and_then(|t| t.get(bucket)).cloned() else {
            return Box::pin(std::future::ready(ConnectTurn::unlimited()));
        };
        Box::pin(async move {
            // Fair: turns go out in request order. The gate is never
            // closed, so the error cannot happen; a turn nothing counts is
            // the safe answer if it did.
            match gate.acquire_owned().await {
                Ok(permit) => ConnectTurn::new(move || drop(permit)),
                Err(_) => ConnectTurn::unlimited(),
            }
        })
    }
}

/// After `u64::MAX` rounds (never, in practice) the request stops asking.
async fn unreachable_wait(shard: ShardId) -> IdentifyPermit {
    log::error!("shard {shard}: identify queue gave up waiting");
    std::future::pending().await
}

#[cfg(test)]
mod tests {
    use super::{IDENTIFY_MARGIN, InMemoryIdentifyQueue, SessionStartLimit};
    use crate::identify::IdentifyQueue as _;
    use discore_protocol::ShardId;
    use futures_util::FutureExt as _;
    use std::time::{Duration, Instant};

    const WINDOW: Duration = Duration::from_millis(40);
    const BOUND: Duration = Duration::from_secs(10);

    async fn granted(
        queue: &InMemoryIdentifyQueue,
        shard: u32,
        total: u32,
    ) -> crate::identify::IdentifyPermit {
        actix_rt::time::timeout(BOUND, queue.acquire(ShardId::new(shard, total)))
            .await
            .expect("granted in time")
    }

    #[actix_rt::test]
    async fn the_next_identify_waits_a_window_after_the_send() {
        let queue = InMemoryIdentifyQueue::with_window(1, WINDOW);
        let first = granted(&queue, 0, 2).await;
        let second = queue.acquire(ShardId::new(1, 2));
        // The first shard takes a while to send: the window counts from then.
        actix_rt::time::sleep(WINDOW / 2).await;
        let sent = Instant::now();
        first.sent(sent);
        let second = actix_rt::time::timeout(BOUND, second)
            .await
            .expect("granted");
        assert!(
            Instant::now() >= sent + WINDOW + IDENTIFY_MARGIN,
            "granted {:?} after the send",
            sent.elapsed()
        );
        drop(second);
    }

    #[actix_rt::test]
    async fn an_unused_permit_gives_its_slot_back_at_once() {
        let queue = InMemoryIdentifyQueue::with_window(1, Duration::from_secs(3600));
        let first = granted(&queue, 0, 2).await;
        let second = queue.acquire(ShardId::new(1, 2));
        drop(first);
        let second = actix_rt::time::timeout(BOUND, second)
            .await
            .expect("the returned slot goes to the next in line");
        second.sent(Instant::now());
    }

    #[actix_rt::test]
    async fn an_unreported_permit_counts_as_sent_at_its_expiry() {
        let answer = Duration::from_millis(30);
        let queue = InMemoryIdentifyQueue::with_window(1, WINDOW).with_answer_timeout(answer);
        let start = Instant::now();
        let first = granted(&queue, 0, 3).await;
        let second = actix_rt::time::timeout(BOUND, queue.acquire(ShardId::new(1, 3)))
            .await
            .expect("granted after the expiry");
        assert!(start.elapsed() >= answer + WINDOW, "{:?}", start.elapsed());
        // The first one's answer came late: the bucket's next slot moves
        // to a window after it.
        let late = Instant::now();
        first.sent(late);
        drop(second);
        let _third = granted(&queue, 2, 3).await;
        assert!(
            Instant::now() >= late + WINDOW + IDENTIFY_MARGIN,
            "granted {:?} after a late report",
            late.elapsed()
        );
    }

    #[actix_rt::test]
    async fn buckets_go_together_and_lines_keep_request_order() {
        let queue = InMemoryIdentifyQueue::with_window(2, WINDOW);
        let requests: Vec<_> = [2, 0, 1, 3]
            .into_iter()
            .map(|n| queue.acquire(ShardId::new(n, 4)))
            .collect();
        let mut order = Vec::new();
        for request in requests {
            let permit = actix_rt::time::timeout(BOUND, request)
                .await
                .expect("granted");
            order.push(permit.shard().number());
            permit.sent(Instant::now());
        }
        assert_eq!(order, [2, 0, 1, 3], "each bucket serves in request order");
    }

    #[actix_rt::test]
    async fn budget_pauses_at_the_reserve_and_unused_permits_refund() {
        let queue = InMemoryIdentifyQueue::with_window(16, WINDOW).with_session_start_limit(
            SessionStartLimit {
                remaining: 3,
                reset_after: Duration::from_secs(3600),
                total: 1000,
                reserve: 1,
            },
        );
        let a = granted(&queue, 0, 4).await;
        drop(a);
        assert_eq!(queue.remaining(), Some(3), "an unused permit refunds");
        granted(&queue, 0, 4).await.sent(Instant::now());
        granted(&queue, 1, 4).await.sent(Instant::now());
        assert_eq!(queue.remaining(), Some(1));
        let third = actix_rt::time::timeout(WINDOW * 3, queue.acquire(ShardId::new(2, 4))).await;
        assert!(third.is_err(), "the reserve is not spent before the reset");
    }

    #[actix_rt::test]
    async fn connect_turns_go_two_per_bucket_in_request_order() {
        let queue = InMemoryIdentifyQueue::with_window(2, WINDOW);
        let turn = |n: u32| queue.connect_turn(ShardId::new(n, 8));
        // Bucket 0: shards 0 and 2 connect, 4 and 6 wait in that order.
        let first = turn(0).await;
        let second = turn(2).await;
        let mut fourth = turn(4);
        let mut sixth = turn(6);
        assert!((&mut fourth).now_or_never().is_none());
        assert!((&mut sixth).now_or_never().is_none());
        // Bucket 1 is counted on its own.
        let _other = actix_rt::time::timeout(BOUND, turn(1))
            .await
            .expect("bucket 1 free");
        drop(first);
        let _fourth = actix_rt::time::timeout(BOUND, fourth)
            .await
            .expect("4 goes next");
        assert!((&mut sixth).now_or_never().is_none(), "6 still waits");
        drop(second);
        let _sixth = actix_rt::time::timeout(BOUND, sixth).await.expect("then 6");
    }

    #[actix_rt::test]
    async fn a_queue_that_spaces_nothing_or_is_told_so_counts_no_turns() {
        let unspaced = InMemoryIdentifyQueue::with_window(1, Duration::ZERO);
        let all = InMemoryIdentifyQueue::with_window(1, WINDOW).with_connect_ahead(u32::MAX);
        for queue in [unspaced, all] {
            let mut held = Vec::new();
            for n in 0..64 {
                let turn = actix_rt::time::timeout(BOUND, queue.connect_turn(ShardId::new(n, 64)));
                held.push(turn.await.expect("never waits"));
            }
        }
    }
}
