//! The conformance suite every [`IdentifyQueue`] implementation must pass.
//!
//! ```
//! use discore_gateway::InMemoryIdentifyQueue;
//! use discore_manager::identify::conformance;
//! use std::sync::Arc;
//!
//! # #[actix_rt::main]
//! # async fn main() {
//! conformance::run(|spec| {
//!     let queue = InMemoryIdentifyQueue::with_window(spec.max_concurrency, spec.window)
//!         .with_answer_timeout(spec.answer_timeout);
//!     let queue = match spec.session_start_limit {
//!         Some(limit) => queue.with_session_start_limit(limit),
//!         None => queue,
//!     };
//!     Arc::new(queue)
//! })
//! .await
//! .expect("the in-memory queue conforms");
//! # }
//! ```
//!
//! The checks use short windows (tens of milliseconds) and assert order and
//! lower bounds on time only, so they hold on a busy machine: a late timer
//! can only make a grant later, never earlier. They play the shard's part:
//! a permit is reported sent when the check says, or dropped unused.

use discore_gateway::{IdentifyQueue, SessionStartLimit};
use discore_protocol::ShardId;
use futures_util::future::join_all;
use std::{
    cell::RefCell,
    fmt,
    rc::Rc,
    sync::Arc,
    time::{Duration, Instant},
};

/// What a queue under test must be built for.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub struct QueueSpec {
    /// Buckets: `shard_id % max_concurrency`.
    pub max_concurrency: u32,
    /// One identify per bucket per this window.
    pub window: Duration,
    /// The daily budget to track, if any.
    pub session_start_limit: Option<SessionStartLimit>,
    /// How long a permit is good for before the queue treats it as sent.
    pub answer_timeout: Duration,
}

/// A check the queue failed.
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct ConformanceError {
    /// The check's name.
    pub check: &'static str,
    /// What went wrong.
    pub detail: String,
}

impl fmt::Display for ConformanceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "identify queue check `{}` failed: {}",
            self.check, self.detail
        )
    }
}

impl std::error::Error for ConformanceError {}

/// The window the checks use.
const WINDOW: Duration = Duration::from_millis(60);
/// The longest any single grant may take where one is due promptly.
const GENEROUS: Duration = Duration::from_secs(10);
/// How long the checks' permits are good for.
const ANSWER: Duration = Duration::from_secs(2);

/// Runs every check, each on a fresh queue from `make`. Call it inside an
/// actix (or tokio) runtime.
///
/// # Errors
///
/// The first check that failed.
pub async fn run<F>(make: F) -> Result<(), ConformanceError>
where
    F: Fn(QueueSpec) -> Arc<dyn IdentifyQueue>,
{
    buckets_start_window_by_window_in_order(&make).await?;
    a_bucket_waits_a_window_between_identifies(&make).await?;
    the_window_counts_from_the_send(&make).await?;
    an_unused_permit_returns_its_slot(&make).await?;
    an_unreported_permit_counts_as_sent_at_its_expiry(&make).await?;
    a_late_report_still_holds_the_bucket(&make).await?;
    budget_pauses_at_the_reserve_until_the_reset(&make).await?;
    no_budget_means_no_pause(&make).await?;
    abandoned_requests_do_not_break_the_queue(&make).await?;
    Ok(())
}

fn fail(check: &'static str, detail: impl Into<String>) -> ConformanceError {
    ConformanceError {
        check,
        detail: detail.into(),
    }
}

/// Acquires for `shards` (asked in this order), polls them all together and
/// returns `(shard, time since start)` in completion order; each permit is
/// reported sent when granted. `start` is taken before the queue was built,
/// so that durations are never underestimated.
async fn grants(
    check: &'static str,
    queue: &dyn IdentifyQueue,
    shards: &[ShardId],
    start: Instant,
    limit: Duration,
) -> Result<Vec<(u32, Duration)>, ConformanceError> {
    let done = Rc::new(RefCell::new(Vec::new()));
    let futures = shards.iter().map(|shard| {
        let permit = queue.acquire(*shard);
        let done = Rc::clone(&done);
        let number = shard.number();
        async move {
            let permit = permit.await;
            permit.sent(Instant::now());
            done.borrow_mut().push((number, start.elapsed()));
        }
    });
    let all = join_all(futures.collect::<Vec<_>>());
    if actix_rt::time::timeout(limit, all).await.is_err() {
        return Err(fail(
            check,
            format!(
                "only {} of {} grants within {limit:?}",
                done.borrow().len(),
                shards.len()
            ),
        ));
    }
    Ok(done.take())
}

/// 12 shards, 4 buckets: shards 0–3 first, then 4–7 no sooner than one
/// window later, then 8–11 no sooner than two windows later.
async fn buckets_start_window_by_window_in_order<F>(make: &F) -> Result<(), ConformanceError>
where
    F: Fn(QueueSpec) -> Arc<dyn IdentifyQueue>,
{
    const CHECK: &str = "buckets start window by window, in order";
    let start = Instant::now();
    let queue = make(QueueSpec {
        max_concurrency: 4,
        window: WINDOW,
        session_start_limit: None,
        answer_timeout: ANSWER,
    });
    let shards: Vec<ShardId> = (0..12).map(|n| ShardId::new(n, 12)).collect();
    let granted = grants(CHECK, &*queue, &shards, start, GENEROUS).await?;
    for (index, (shard, at)) in granted.iter().enumerate() {
        let window = shard / 4;
        if index / 4 != window as usize {
            return Err(fail(
                CHECK,
                format!("grant order {granted:?}: shard {shard} is out of its window's turn"),
            ));
        }
        if *at < WINDOW * window {
            return Err(fail(
                CHECK,
                format!("shard {shard} granted after {at:?}, before window {window} began"),
            ));
        }
    }
    Ok(())
}

/// Two shards of one bucket are a window apart; a shard of another bucket
/// asked after them is not held behind them.
async fn a_bucket_waits_a_window_between_identifies<F>(make: &F) -> Result<(), ConformanceError>
where
    F: Fn(QueueSpec) -> Arc<dyn IdentifyQueue>,
{
    const CHECK: &str = "a bucket waits a window between identifies";
    let start = Instant::now();
    let queue = make(QueueSpec {
        max_concurrency: 2,
        window: WINDOW,
        session_start_limit: None,
        answer_timeout: ANSWER,
    });
    let shards = [ShardId::new(0, 4), ShardId::new(2, 4), ShardId::new(1, 4)];
    let granted = grants(CHECK, &*queue, &shards, start, GENEROUS).await?;
    let order: Vec<u32> = granted.iter().map(|(shard, _)| *shard).collect();
    if order.last() != Some(&2) {
        return Err(fail(
            CHECK,
            format!("shard 2 shares bucket 0 with shard 0 and must go last, order {order:?}"),
        ));
    }
    let second = granted[2].1;
    if second < WINDOW {
        return Err(fail(
            CHECK,
            format!("shard 2 granted after {second:?}, within shard 0's window"),
        ));
    }
    Ok(())
}

/// With 3 identifies left and a reserve of 1, two go at once and the third
/// waits for the budget's reset.
async fn budget_pauses_at_the_reserve_until_the_reset<F>(make: &F) -> Result<(), ConformanceError>
where
    F: Fn(QueueSpec) -> Arc<dyn IdentifyQueue>,
{
    const CHECK: &str = "the budget pauses at its reserve until the reset";
    let reset_after = WINDOW * 5;
    let start = Instant::now();
    let queue = make(QueueSpec {
        max_concurrency: 16,
        window: Duration::from_millis(10),
        session_start_limit: Some(SessionStartLimit {
            remaining: 3,
            reset_after,
            total: 1000,
            reserve: 1,
        }),
        answer_timeout: ANSWER,
    });
    let shards = [ShardId::new(0, 3), ShardId::new(1, 3), ShardId::new(2, 3)];
    let granted = grants(CHECK, &*queue, &shards, start, GENEROUS + reset_after).await?;
    let order: Vec<u32> = granted.iter().map(|(shard, _)| *shard).collect();
    if order.last() != Some(&2) {
        return Err(fail(
            CHECK,
            format!("the identify into the reserve must go last, order {order:?}"),
        ));
    }
    if granted[2].1 < reset_after {
        return Err(fail(
            CHECK,
            format!(
                "shard 2 spent the reserve after {:?}, before the reset at {reset_after:?}",
                granted[2].1
            ),
        ));
    }
    Ok(())
}

/// Without a tracked budget, 20 shards in 20 buckets are granted at once.
async fn no_budget_means_no_pause<F>(make: &F) -> Result<(), ConformanceError>
where
    F: Fn(QueueSpec) -> Arc<dyn IdentifyQueue>,
{
    const CHECK: &str = "no budget means no pause";
    let queue = make(QueueSpec {
        max_concurrency: 20,
        window: Duration::from_secs(3600),
        session_start_limit: None,
        answer_timeout: ANSWER,
    });
    let shards: Vec<ShardId> = (0..20).map(|n| ShardId::new(n, 20)).collect();
    grants(CHECK, &*queue, &shards, Instant::now(), GENEROUS)
        .await
        .map(drop)
}

/// A request dropped before its grant does not let the next request of its
/// bucket in early, and does not block the queue.
async fn abandoned_requests_do_not_break_the_queue<F>(make: &F) -> Result<(), ConformanceError>
where
    F: Fn(QueueSpec) -> Arc<dyn IdentifyQueue>,
{
    const CHECK: &str = "abandoned requests do not break the queue";
    let queue = make(QueueSpec {
        max_concurrency: 1,
        window: WINDOW,
        session_start_limit: None,
        answer_timeout: ANSWER,
    });
    let start = Instant::now();
    let first = bounded(CHECK, queue.acquire(ShardId::new(0, 2))).await?;
    first.sent(Instant::now());
    // Asked and abandoned: the shard's connection closed meanwhile.
    drop(queue.acquire(ShardId::new(1, 2)));
    let granted = grants(CHECK, &*queue, &[ShardId::new(0, 2)], start, GENEROUS).await?;
    let at = start.elapsed();
    if at < WINDOW || granted.len() != 1 {
        return Err(fail(
            CHECK,
            format!("a second identify of bucket 0 was granted after {at:?}, within one window"),
        ));
    }
    Ok(())
}

/// Awaits one grant, within [`GENEROUS`].
async fn bounded(
    check: &'static str,
    permit: discore_gateway::IdentifyFuture,
) -> Result<discore_gateway::IdentifyPermit, ConformanceError> {
    actix_rt::time::timeout(GENEROUS, permit)
        .await
        .map_err(|_| fail(check, format!("no grant within {GENEROUS:?}")))
}

/// A permit reported sent half a window after its grant holds its bucket
/// for a window after the send, not after the grant.
async fn the_window_counts_from_the_send<F>(make: &F) -> Result<(), ConformanceError>
where
    F: Fn(QueueSpec) -> Arc<dyn IdentifyQueue>,
{
    const CHECK: &str = "the window counts from the send";
    let queue = make(QueueSpec {
        max_concurrency: 1,
        window: WINDOW,
        session_start_limit: None,
        answer_timeout: ANSWER,
    });
    let first = bounded(CHECK, queue.acquire(ShardId::new(0, 2))).await?;
    let second = queue.acquire(ShardId::new(1, 2));
    actix_rt::time::sleep(WINDOW / 2).await;
    let sent = Instant::now();
    first.sent(sent);
    let second = bounded(CHECK, second).await?;
    let gap = sent.elapsed();
    second.sent(Instant::now());
    if gap < WINDOW {
        return Err(fail(
            CHECK,
            format!("the next permit came {gap:?} after the send, within the window"),
        ));
    }
    Ok(())
}

/// A permit whose report comes after its expiry (a slow answer from the
/// gateway) still holds its bucket for a window after the report.
async fn a_late_report_still_holds_the_bucket<F>(make: &F) -> Result<(), ConformanceError>
where
    F: Fn(QueueSpec) -> Arc<dyn IdentifyQueue>,
{
    const CHECK: &str = "a late report still holds the bucket";
    let answer = WINDOW / 2;
    let queue = make(QueueSpec {
        max_concurrency: 1,
        window: WINDOW,
        session_start_limit: None,
        answer_timeout: answer,
    });
    let first = bounded(CHECK, queue.acquire(ShardId::new(0, 3))).await?;
    // The lease runs out and a window passes: the line moves on.
    let second = bounded(CHECK, queue.acquire(ShardId::new(1, 3))).await?;
    let late = Instant::now();
    first.sent(late);
    // A distributed queue hears of reports asynchronously: give it time.
    actix_rt::time::sleep(WINDOW / 4).await;
    drop(second);
    let third = bounded(CHECK, queue.acquire(ShardId::new(2, 3))).await?;
    let gap = late.elapsed();
    third.sent(Instant::now());
    if gap < WINDOW {
        return Err(fail(
            CHECK,
            format!("the next permit came {gap:?} after a late report, within the window"),
        ));
    }
    Ok(())
}

/// A permit dropped unused lets the next request of its bucket go at once,
/// long before a window (an hour here) has passed.
async fn an_unused_permit_returns_its_slot<F>(make: &F) -> Result<(), ConformanceError>
where
    F: Fn(QueueSpec) -> Arc<dyn IdentifyQueue>,
{
    const CHECK: &str = "an unused permit returns its slot";
    let queue = make(QueueSpec {
        max_concurrency: 1,
        window: Duration::from_secs(3600),
        session_start_limit: None,
        answer_timeout: ANSWER,
    });
    let first = bounded(CHECK, queue.acquire(ShardId::new(0, 2))).await?;
    let second = queue.acquire(ShardId::new(1, 2));
    // The shard's connection closed before it could identify.
    drop(first);
    let second = bounded(CHECK, second).await?;
    second.sent(Instant::now());
    Ok(())
}

/// A permit never reported holds its bucket until its expiry and a window
/// after, then the line moves on.
async fn an_unreported_permit_counts_as_sent_at_its_expiry<F>(
    make: &F,
) -> Result<(), ConformanceError>
where
    F: Fn(QueueSpec) -> Arc<dyn IdentifyQueue>,
{
    const CHECK: &str = "an unreported permit counts as sent at its expiry";
    let answer = WINDOW;
    let queue = make(QueueSpec {
        max_concurrency: 1,
        window: WINDOW,
        session_start_limit: None,
        answer_timeout: answer,
    });
    let first = bounded(CHECK, queue.acquire(ShardId::new(0, 2))).await?;
    let granted = Instant::now();
    let second = bounded(CHECK, queue.acquire(ShardId::new(1, 2))).await?;
    let gap = granted.elapsed();
    second.sent(Instant::now());
    drop(first);
    if gap < answer + WINDOW {
        return Err(fail(
            CHECK,
            format!(
                "the next permit came {gap:?} after an unreported one, before its expiry and a window"
            ),
        ));
    }
    Ok(())
}
