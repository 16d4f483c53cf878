//! The identify queue shared by every process of a bot, in Redis.

use crate::redis_conn::{ClusterRedis, bounded};
use discore_gateway::{
    IDENTIFY_MARGIN, IdentifyFuture, IdentifyPermit, IdentifyQueue, InMemoryIdentifyQueue,
    PERMIT_ANSWER_TIMEOUT, PermitReport, SessionStartLimit,
};
use discore_protocol::{ErrorChain, ShardId, limits::IDENTIFY_WINDOW};
use redis::Script;
use std::{
    fmt,
    sync::{
        Arc, LazyLock,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};
use tokio::sync::{mpsc, watch};

/// How long the budget lasts after a reset: Discord's day.
const RESET_PERIOD: Duration = Duration::from_secs(24 * 60 * 60);
/// The longest a Redis call may take before it is retried.
const CALL_LIMIT: Duration = Duration::from_secs(3);
/// Attempts at telling Redis what became of a permit. When all fail, the
/// permit's lease runs out in Redis instead: slower, never unsafe.
const REPORT_ATTEMPTS: u32 = 4;

/// Grants the bucket's slot to `token` if it is free, or tells how long to
/// wait. The slot is free when no lease is out (or the last one ran out,
/// which counts as an Identify sent at its end, and whose report may still
/// come) and the spacing has passed since the last Identify reported sent.
///
/// KEYS: bucket, budget. ARGV: token, answer ms, spacing ms, reset period
/// ms, longest poll ms. Returns 0 when granted, else the wait in ms
/// (Redis's clock).
static GRANT: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local answer = tonumber(ARGV[2])
local spacing = tonumber(ARGV[3])
local period = tonumber(ARGV[4])
local poll = tonumber(ARGV[5])
local h = redis.call('HMGET', KEYS[1], 'holder', 'holder_until', 'next_allowed')
local next_allowed = tonumber(h[3]) or 0
if h[1] then
  local holder_until = tonumber(h[2]) or 0
  if holder_until > now then
    local wait = holder_until - now
    if wait > poll then wait = poll end
    return wait
  end
  if holder_until + spacing > next_allowed then next_allowed = holder_until + spacing end
  redis.call('HDEL', KEYS[1], 'holder', 'holder_until')
  redis.call('HSET', KEYS[1], 'next_allowed', next_allowed, 'expired', h[1])
end
if now < next_allowed then return next_allowed - now end
if redis.call('EXISTS', KEYS[2]) == 1 then
  local b = redis.call('HMGET', KEYS[2], 'remaining', 'reserve', 'total', 'resets_at')
  local remaining = tonumber(b[1]) or 0
  local reserve = tonumber(b[2]) or 0
  local total = tonumber(b[3]) or 0
  local resets_at = tonumber(b[4]) or now
  if now >= resets_at then
    remaining = total
    resets_at = now + period
  end
  if remaining <= reserve then
    redis.call('HSET', KEYS[2], 'remaining', remaining, 'resets_at', resets_at)
    return resets_at - now
  end
  remaining = remaining - 1
  redis.call('HSET', KEYS[2], 'remaining', remaining, 'resets_at', resets_at)
  redis.call('PEXPIRE', KEYS[2], resets_at - now + period)
end
redis.call('HSET', KEYS[1], 'holder', ARGV[1], 'holder_until', now + answer,
  'next_allowed', next_allowed)
redis.call('PEXPIRE', KEYS[1], answer + spacing + 60000)
return 0
",
    )
});

/// `token`'s Identify was sent: the bucket's next slot is a spacing after
/// now (the report's arrival, which is no earlier than the send). A report
/// for a lease that already ran out still pushes the next slot back.
///
/// KEYS: bucket. ARGV: token, spacing ms.
static SENT: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local h = redis.call('HMGET', KEYS[1], 'holder', 'next_allowed', 'expired')
if h[1] ~= ARGV[1] and h[3] ~= ARGV[1] then return 0 end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local spacing = tonumber(ARGV[2])
local next_allowed = now + spacing
local previous = tonumber(h[2]) or 0
if previous > next_allowed then next_allowed = previous end
if h[1] == ARGV[1] then
  redis.call('HDEL', KEYS[1], 'holder', 'holder_until')
else
  redis.call('HDEL', KEYS[1], 'expired')
end
redis.call('HSET', KEYS[1], 'next_allowed', next_allowed)
redis.call('PEXPIRE', KEYS[1], next_allowed - now + 60000)
return 1
",
    )
});

/// `token`'s permit was not used: the slot is free and the budget gets its
/// identify back.
///
/// KEYS: bucket, budget. ARGV: token.
static UNUSED: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
if redis.call('HGET', KEYS[1], 'holder') ~= ARGV[1] then return 0 end
redis.call('HDEL', KEYS[1], 'holder', 'holder_until')
if redis.call('EXISTS', KEYS[2]) == 1 then
  redis.call('HINCRBY', KEYS[2], 'remaining', 1)
end
return 1
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
    /// Record the budget, then mark it recorded.
    Budget(SessionStartLimit, watch::Sender<bool>),
    Report {
        bucket: String,
        token: String,
        outcome: Outcome,
    },
}

enum Outcome {
    /// Sent; the local permit is reported once Redis knows.
    Sent(IdentifyPermit, Instant),
    /// Not used; the local permit is dropped once Redis knows.
    Unused(IdentifyPermit),
}

/// An [`IdentifyQueue`] in Redis, shared by every process of a bot: per
/// bucket `shard_id % max_concurrency` one Identify per window plus
/// [`IDENTIFY_MARGIN`] *as sent*, across all processes, and the daily
/// session start budget counted once for the whole bot, with a reserve it
/// never spends (running out resets the bot's token).
///
/// A grant is a lease in Redis that the shard's report ends: sent (the
/// bucket's next slot is a window after the report reached Redis, which is
/// no earlier than the send), or unused (the slot is free at once and the
/// budget gets its identify back). A lease not reported within the answer
/// timeout ([`PERMIT_ANSWER_TIMEOUT`]) counts as sent at its end; the
/// shard does not send after it. Within a process, requests keep their
/// order per bucket and one lease per bucket is out at a time; across
/// processes, whoever asks first when the slot frees gets it. Times come
/// from Redis's clock, so the processes' clocks need not agree. While
/// Redis is unreachable no identify is granted (resumes do not use the
/// queue) and the call is retried.
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
    answer_timeout: Duration,
    redis: ClusterRedis,
    /// This process's line per bucket: request order, one lease out.
    local: Arc<InMemoryIdentifyQueue>,
    /// Makes lease tokens unique across processes.
    process: u64,
    next_token: Arc<AtomicU64>,
    jobs: mpsc::UnboundedSender<Job>,
    /// Whether the budget given is recorded in Redis: no grant before.
    budget_recorded: watch::Receiver<bool>,
}

impl fmt::Debug for RedisIdentifyQueue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisIdentifyQueue")
            .field("max_concurrency", &self.max_concurrency)
            .field("window", &self.window)
            .field("answer_timeout", &self.answer_timeout)
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
        actix_rt::spawn(
            Driver {
                redis: redis.clone(),
            }
            .run(receiver, window),
        );
        Self {
            max_concurrency,
            window,
            answer_timeout: PERMIT_ANSWER_TIMEOUT,
            redis: redis.clone(),
            local: Arc::new(local_line(max_concurrency, window, PERMIT_ANSWER_TIMEOUT)),
            process: fastrand::u64(..),
            next_token: Arc::default(),
            jobs,
            budget_recorded: watch::channel(true).1,
        }
    }

    /// How long a permit is good for before the queue treats it as sent
    /// (default [`PERMIT_ANSWER_TIMEOUT`]; tests scale it down).
    #[must_use]
    pub fn with_answer_timeout(mut self, timeout: Duration) -> Self {
        self.answer_timeout = timeout;
        self.local = Arc::new(local_line(self.max_concurrency, self.window, timeout));
        self
    }

    /// Tracks the daily budget for the whole bot and pauses before it would
    /// fall to `limit.reserve`. A budget another process already tracks for
    /// the current period keeps the lower count.
    #[must_use]
    pub fn with_session_start_limit(mut self, limit: SessionStartLimit) -> Self {
        let (recorded, budget_recorded) = watch::channel(false);
        if self.jobs.send(Job::Budget(limit, recorded)).is_err() {
            log::error!("identify queue task is gone: the budget is not tracked");
            return self;
        }
        self.budget_recorded = budget_recorded;
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
        // The local line is joined now, so requests keep their call order.
        let local = self.local.acquire(shard);
        let keys = self.redis.keys();
        let bucket = keys
            .identify_bucket(self.max_concurrency, shard.number() % self.max_concurrency)
            + ":sent";
        let budget = keys.identify_budget();
        let redis = self.redis.clone();
        let jobs = self.jobs.clone();
        let token = format!(
            "{:x}-{}",
            self.process,
            self.next_token.fetch_add(1, Ordering::Relaxed)
        );
        let answer = self.answer_timeout;
        let spacing = spacing(self.window);
        // A lease held by another process is looked at again this often.
        let poll = (self.window / 20).clamp(Duration::from_millis(2), Duration::from_millis(250));
        let mut budget_recorded = self.budget_recorded.clone();
        Box::pin(async move {
            let local = local.await;
            // The budget is recorded with retries until Redis answers; a
            // driver gone meanwhile leaves it unrecorded and Redis untracked.
            let _ = budget_recorded.wait_for(|recorded| *recorded).await;
            for attempt in 0..u32::MAX {
                let asked = Instant::now();
                let mut invocation = GRANT.key(&bucket);
                invocation
                    .key(&budget)
                    .arg(&token)
                    .arg(millis(answer))
                    .arg(millis(spacing))
                    .arg(millis(RESET_PERIOD))
                    .arg(millis(poll));
                let mut conn = redis.conn();
                let call = invocation.invoke_async::<i64>(&mut conn);
                match bounded("identify grant", CALL_LIMIT, call).await {
                    Ok(0) => {
                        let report = RedisReport {
                            local: Some(local),
                            bucket,
                            token,
                            jobs,
                        };
                        // Redis's lease began no earlier than `asked`.
                        return IdentifyPermit::new(shard, asked + answer, Box::new(report));
                    }
                    Ok(wait_ms) => {
                        let wait = Duration::from_millis(u64::try_from(wait_ms).unwrap_or(0));
                        log::trace!("shard {shard}: identify slot in {wait:?}");
                        actix_rt::time::sleep(wait).await;
                    }
                    Err(error) => {
                        log::warn!(
                            "shard {shard}: asking for an identify slot failed (attempt {attempt}), retrying: {}",
                            ErrorChain(&error)
                        );
                        actix_rt::time::sleep(backoff(attempt)).await;
                    }
                }
            }
            log::error!("shard {shard}: identify queue gave up asking Redis");
            std::future::pending().await
        })
    }
}

/// This process's line per bucket: request order, one request at Redis at
/// a time. Its hold on a bucket outlasts the lease (an unreported lease
/// plus the spacing after it), so within a process the line moves only
/// when Redis can grant; a request that waits longer on Redis (another
/// process's turn, the daily reset) lets the next local one ask too, and
/// Redis still decides.
fn local_line(max_concurrency: u32, window: Duration, answer: Duration) -> InMemoryIdentifyQueue {
    InMemoryIdentifyQueue::with_window(max_concurrency, Duration::ZERO)
        .with_answer_timeout(answer * 2 + spacing(window))
}

/// Tells the driver what became of a lease.
struct RedisReport {
    local: Option<IdentifyPermit>,
    bucket: String,
    token: String,
    jobs: mpsc::UnboundedSender<Job>,
}

impl RedisReport {
    fn send(mut self, outcome: impl FnOnce(IdentifyPermit) -> Outcome) {
        let Some(local) = self.local.take() else {
            return;
        };
        let job = Job::Report {
            bucket: std::mem::take(&mut self.bucket),
            token: std::mem::take(&mut self.token),
            outcome: outcome(local),
        };
        if self.jobs.send(job).is_err() {
            log::warn!("identify queue task is gone: the lease runs out in Redis instead");
        }
    }
}

impl PermitReport for RedisReport {
    fn sent(self: Box<Self>, at: Instant) {
        self.send(|local| Outcome::Sent(local, at));
    }

    fn unused(self: Box<Self>) {
        self.send(Outcome::Unused);
    }
}

/// Records the budget and reports, one at a time.
struct Driver {
    redis: ClusterRedis,
}

impl Driver {
    async fn run(self, mut jobs: mpsc::UnboundedReceiver<Job>, window: Duration) {
        while let Some(job) = jobs.recv().await {
            match job {
                Job::Budget(limit, recorded) => {
                    self.track_budget(limit).await;
                    let _ = recorded.send(true);
                }
                Job::Report {
                    bucket,
                    token,
                    outcome,
                } => self.report(&bucket, &token, outcome, window).await,
            }
        }
    }

    async fn track_budget(&self, limit: SessionStartLimit) {
        let budget = self.redis.keys().identify_budget();
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

    /// Tells Redis, then lets this process's next request of the bucket go.
    async fn report(&self, bucket: &str, token: &str, outcome: Outcome, window: Duration) {
        let budget = self.redis.keys().identify_budget();
        for attempt in 0..REPORT_ATTEMPTS {
            let mut conn = self.redis.conn();
            let call = match &outcome {
                Outcome::Sent(..) => {
                    let mut invocation = SENT.key(bucket);
                    invocation.arg(token).arg(millis(spacing(window)));
                    bounded(
                        "identify report",
                        CALL_LIMIT,
                        invocation.invoke_async::<i64>(&mut conn),
                    )
                    .await
                }
                Outcome::Unused(_) => {
                    let mut invocation = UNUSED.key(bucket);
                    invocation.key(&budget).arg(token);
                    bounded(
                        "identify report",
                        CALL_LIMIT,
                        invocation.invoke_async::<i64>(&mut conn),
                    )
                    .await
                }
            };
            match call {
                Ok(_) => break,
                Err(error) => {
                    log::warn!(
                        "reporting an identify lease failed (attempt {attempt}): {}",
                        ErrorChain(&error)
                    );
                    actix_rt::time::sleep(backoff(attempt)).await;
                }
            }
        }
        match outcome {
            Outcome::Sent(local, at) => local.sent(at),
            Outcome::Unused(local) => drop(local),
        }
    }
}

/// The spacing of one bucket's Identifies: the window plus the margin, at
/// least 2 % of the window (Redis counts whole milliseconds).
fn spacing(window: Duration) -> Duration {
    window + (window / 50).max(IDENTIFY_MARGIN)
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

fn backoff(attempt: u32) -> Duration {
    Duration::from_millis(100u64.saturating_mul(1 << attempt.min(4)))
}
