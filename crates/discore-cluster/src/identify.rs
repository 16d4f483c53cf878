//! The identify queue shared by every process of a bot, in Redis.

use crate::redis_conn::{ClusterRedis, Keys, bounded};
use discore_gateway::{IdentifyFuture, IdentifyQueue, SessionStartLimit};
use discore_protocol::{ErrorChain, ShardId, limits::IDENTIFY_WINDOW};
use redis::Script;
use std::{
    fmt,
    sync::LazyLock,
    time::{Duration, Instant},
};
use tokio::sync::{mpsc, oneshot};

/// How long the budget lasts after a reset: Discord's day.
const RESET_PERIOD: Duration = Duration::from_secs(24 * 60 * 60);
/// Slots taken for one identify at most when the process keeps waking up
/// late; the last one is used however late.
const MAX_ATTEMPTS: u32 = 5;
/// The longest a reservation call may take before it is retried.
const CALL_LIMIT: Duration = Duration::from_secs(3);

/// Reserves the next identify slot of a bucket, atomically for every process.
///
/// KEYS: bucket, budget. ARGV: window ms, reset period ms.
/// Returns the wait in ms from now (Redis's clock).
static RESERVE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local window = tonumber(ARGV[1])
local period = tonumber(ARGV[2])
local earliest = now
local next_free = tonumber(redis.call('GET', KEYS[1]) or '0')
if next_free > earliest then earliest = next_free end
if redis.call('EXISTS', KEYS[2]) == 1 then
  local b = redis.call('HMGET', KEYS[2], 'remaining', 'reserve', 'total', 'resets_at')
  local remaining = tonumber(b[1]) or 0
  local reserve = tonumber(b[2]) or 0
  local total = tonumber(b[3]) or 0
  local resets_at = tonumber(b[4]) or now
  if earliest >= resets_at then
    remaining = total
    resets_at = earliest + period
  end
  if remaining <= reserve then
    earliest = resets_at
    remaining = total
    resets_at = earliest + period
  end
  if remaining > 0 then remaining = remaining - 1 end
  redis.call('HSET', KEYS[2], 'remaining', remaining, 'resets_at', resets_at)
  redis.call('PEXPIRE', KEYS[2], resets_at - now + period)
end
redis.call('SET', KEYS[1], earliest + window, 'PX', earliest + window - now + 1000)
return earliest - now
",
    )
});

/// Records the daily budget `GET /gateway/bot` reported. A budget already
/// tracked for the current period keeps the lower `remaining` of the two,
/// so processes that start later never give identifies back.
///
/// KEYS: budget. ARGV: remaining, reset after ms, total, reserve, period ms.
static INIT_BUDGET: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local remaining = tonumber(ARGV[1])
local resets_at = now + tonumber(ARGV[2])
local b = redis.call('HMGET', KEYS[1], 'remaining', 'resets_at')
local stored_remaining = tonumber(b[1])
local stored_resets_at = tonumber(b[2])
if stored_remaining and stored_resets_at and stored_resets_at > now then
  if stored_remaining < remaining then remaining = stored_remaining end
  resets_at = stored_resets_at
end
redis.call('HSET', KEYS[1], 'remaining', remaining, 'resets_at', resets_at,
  'total', tonumber(ARGV[3]), 'reserve', tonumber(ARGV[4]))
redis.call('PEXPIRE', KEYS[1], resets_at - now + tonumber(ARGV[5]))
return remaining
",
    )
});

enum Job {
    Budget(SessionStartLimit),
    Reserve {
        shard: ShardId,
        /// The wait from the slot reservation, and when the reservation was
        /// sent to Redis (the slot is at least `wait` after that).
        grant: oneshot::Sender<(Duration, Instant)>,
    },
}

/// An [`IdentifyQueue`] in Redis, shared by every process of a bot: per
/// bucket `shard_id % max_concurrency` at most one identify per window
/// across all processes, slots handed out in request order, and the daily
/// session start budget counted once for the whole bot, with a reserve it
/// never spends (running out resets the bot's token).
///
/// Requests are reserved in the order [`IdentifyQueue::acquire`] is called
/// (one background task sends them to Redis one after the other); a request
/// dropped before Redis saw it reserves nothing. A grant that reaches the
/// shard more than half a window after its slot (a process stalled, or a
/// slow Redis answer) is not used: another slot is taken, so a late process
/// never identifies too close to the next holder of its bucket. The slot times come from
/// Redis's clock, so the processes' clocks need not agree. While Redis is
/// unreachable no identify is granted (resumes do not use the queue) and
/// the reservation is retried.
///
/// Build it inside the actix system (it spawns its task there); every
/// process of the bot must use the same `max_concurrency` and window.
///
/// ```no_run
/// use discore_cluster::{ClusterRedis, RedisIdentifyQueue};
/// use discore_gateway::SessionStartLimit;
/// use std::{sync::Arc, time::Duration};
///
/// # async fn run() -> Result<(), discore_cluster::ClusterError> {
/// let redis = ClusterRedis::connect("redis://127.0.0.1:6379", "my-bot").await?;
/// let queue = RedisIdentifyQueue::new(&redis, 16).with_session_start_limit(SessionStartLimit {
///     remaining: 1000,
///     reset_after: Duration::from_secs(3600),
///     total: 1000,
///     reserve: 50,
/// });
/// let queue = Arc::new(queue); // ManagerConfig::identify(IdentifyConfig::queue(queue))
/// # drop(queue);
/// # Ok(())
/// # }
/// ```
pub struct RedisIdentifyQueue {
    max_concurrency: u32,
    window: Duration,
    jobs: mpsc::UnboundedSender<Job>,
}

impl fmt::Debug for RedisIdentifyQueue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisIdentifyQueue")
            .field("max_concurrency", &self.max_concurrency)
            .field("window", &self.window)
            .finish_non_exhaustive()
    }
}

impl RedisIdentifyQueue {
    /// A queue for `max_concurrency` buckets and Discord's 5 s window.
    pub fn new(redis: &ClusterRedis, max_concurrency: u32) -> Self {
        Self::with_window(redis, max_concurrency, IDENTIFY_WINDOW)
    }

    /// A queue with a custom window (tests scale it down).
    pub fn with_window(redis: &ClusterRedis, max_concurrency: u32, window: Duration) -> Self {
        let max_concurrency = max_concurrency.max(1);
        let (jobs, receiver) = mpsc::unbounded_channel();
        let driver = Driver {
            redis: redis.clone(),
            max_concurrency,
            window,
        };
        actix_rt::spawn(driver.run(receiver));
        Self {
            max_concurrency,
            window,
            jobs,
        }
    }

    /// Tracks the daily budget for the whole bot and pauses before it would
    /// fall to `limit.reserve`. A budget another process already tracks for
    /// the current period keeps the lower count.
    #[must_use]
    pub fn with_session_start_limit(self, limit: SessionStartLimit) -> Self {
        if self.jobs.send(Job::Budget(limit)).is_err() {
            log::error!("identify queue task is gone: the budget is not tracked");
        }
        self
    }

    /// The number of buckets.
    pub const fn max_concurrency(&self) -> u32 {
        self.max_concurrency
    }

    /// The window between two identifies of one bucket.
    pub const fn window(&self) -> Duration {
        self.window
    }
}

impl IdentifyQueue for RedisIdentifyQueue {
    fn acquire(&self, shard: ShardId) -> IdentifyFuture {
        let jobs = self.jobs.clone();
        let slack = self.window / 2;
        let (grant, granted) = oneshot::channel();
        // Sent now, so slots are reserved in the order `acquire` is called.
        let mut first = jobs
            .send(Job::Reserve { shard, grant })
            .is_ok()
            .then_some(granted);
        Box::pin(async move {
            for attempt in 1.. {
                let granted = match first.take() {
                    Some(first) => first,
                    None => {
                        let (grant, granted) = oneshot::channel();
                        if jobs.send(Job::Reserve { shard, grant }).is_err() {
                            break;
                        }
                        granted
                    }
                };
                let Ok((wait, asked)) = granted.await else {
                    break;
                };
                // The slot is at least `wait` after `asked` (when Redis was
                // asked). The next identify of the bucket may go one window
                // after it, so ours must not go much later than the slot: a
                // process that wakes up late takes another slot instead.
                let latest = asked + wait + slack;
                actix_rt::time::sleep(wait).await;
                let late = Instant::now().saturating_duration_since(latest);
                if late.is_zero() || attempt >= MAX_ATTEMPTS {
                    return;
                }
                log::info!(
                    "shard {shard}: identify slot missed by {late:?} (a busy process), taking the next one"
                );
            }
            log::error!("shard {shard}: identify queue task is gone; no identify is granted");
            std::future::pending::<()>().await;
        })
    }
}

/// Sends reservations to Redis one at a time, in request order.
struct Driver {
    redis: ClusterRedis,
    max_concurrency: u32,
    window: Duration,
}

impl Driver {
    async fn run(self, mut jobs: mpsc::UnboundedReceiver<Job>) {
        while let Some(job) = jobs.recv().await {
            match job {
                Job::Budget(limit) => self.track_budget(limit).await,
                Job::Reserve { shard, grant } => self.reserve(shard, grant).await,
            }
        }
    }

    async fn track_budget(&self, limit: SessionStartLimit) {
        let keys: &Keys = self.redis.keys();
        let budget = keys.identify_budget();
        for attempt in 0..u32::MAX {
            let mut conn = self.redis.conn();
            let mut invocation = INIT_BUDGET.key(&budget);
            invocation
                .arg(limit.remaining)
                .arg(millis(limit.reset_after))
                .arg(limit.total)
                .arg(limit.reserve)
                .arg(millis(RESET_PERIOD));
            let call = invocation.invoke_async::<i64>(&mut conn);
            match bounded("identify budget", CALL_LIMIT, call).await {
                Ok(remaining) => {
                    log::info!(
                        "identify budget: {remaining} left for the whole bot (reserve {})",
                        limit.reserve
                    );
                    return;
                }
                Err(error) => {
                    let error = ErrorChain(&error);
                    log::warn!("recording the identify budget failed (attempt {attempt}): {error}");
                    actix_rt::time::sleep(backoff(attempt)).await;
                }
            }
        }
    }

    async fn reserve(&self, shard: ShardId, grant: oneshot::Sender<(Duration, Instant)>) {
        let bucket = shard.number() % self.max_concurrency;
        let keys = self.redis.keys();
        let bucket_key = keys.identify_bucket(self.max_concurrency, bucket);
        let budget = keys.identify_budget();
        for attempt in 0..u32::MAX {
            if grant.is_closed() {
                // Abandoned before Redis saw it: nothing reserved.
                return;
            }
            let mut conn = self.redis.conn();
            let asked = Instant::now();
            let mut invocation = RESERVE.key(&bucket_key);
            invocation
                .key(&budget)
                .arg(millis(spacing(self.window)))
                .arg(millis(RESET_PERIOD));
            let call = invocation.invoke_async::<i64>(&mut conn);
            match bounded("identify reservation", CALL_LIMIT, call).await {
                Ok(wait_ms) => {
                    let wait = Duration::from_millis(u64::try_from(wait_ms).unwrap_or(0));
                    if wait > self.window {
                        log::info!("shard {shard}: identify slot of bucket {bucket} in {wait:?}");
                    } else {
                        log::debug!("shard {shard}: identify slot of bucket {bucket} in {wait:?}");
                    }
                    // A receiver gone meanwhile wastes the slot, never doubles it.
                    let _ = grant.send((wait, asked));
                    return;
                }
                Err(error) => {
                    log::warn!(
                        "shard {shard}: reserving an identify slot failed (attempt {attempt}), retrying: {error}"
                    );
                    actix_rt::time::sleep(backoff(attempt)).await;
                }
            }
        }
    }
}

/// The spacing of one bucket's slots: the window plus a margin (2%, at
/// least 2 ms). Redis schedules on its own clock in whole milliseconds, and
/// each process learns its slot one reply latency later, so two grants
/// measured where they happen could otherwise land a fraction of a
/// millisecond closer than the window (seen under load: 59.96 ms apart for
/// a 60 ms window).
fn spacing(window: Duration) -> Duration {
    window + (window / 50).max(Duration::from_millis(2))
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

fn backoff(attempt: u32) -> Duration {
    Duration::from_millis(100u64.saturating_mul(1 << attempt.min(4)))
}
