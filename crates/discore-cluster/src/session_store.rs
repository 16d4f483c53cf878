//! Sessions in Redis: one hash per bot, checkpointed in batches.

use crate::redis_conn::{ClusterRedis, Keys, bounded};
use discore_manager::session_store::{SavedSession, SessionStore, SessionStoreError, StoreFuture};
use discore_protocol::{ErrorChain, ShardId};
use redis::Script;
use std::{collections::BTreeMap, fmt, sync::LazyLock, time::Duration};
use tokio::sync::{mpsc, oneshot};

const CALL_LIMIT: Duration = Duration::from_secs(5);

/// Writes sessions, each only if its fence (a lease key holding the
/// expected value) still holds.
///
/// KEYS: the sessions hash. ARGV: count, then per session: field, json,
/// fence key ('' for none), fence value. Returns how many were written.
static WRITE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local n = tonumber(ARGV[1])
local written = 0
for i = 0, n - 1 do
  local base = 2 + i * 4
  local fence_key = ARGV[base + 2]
  if fence_key == '' or redis.call('GET', fence_key) == ARGV[base + 3] then
    redis.call('HSET', KEYS[1], ARGV[base], ARGV[base + 1])
    written = written + 1
  end
end
return written
",
    )
});

/// A lease that must still be held for a write to land: the fencing check.
#[derive(Clone, Debug, Eq, PartialEq)]
pub(crate) struct Fence {
    pub(crate) key: String,
    pub(crate) value: String,
}

/// One session to write.
#[derive(Clone, Debug)]
pub(crate) struct Entry {
    pub(crate) saved: SavedSession,
    pub(crate) fence: Option<Fence>,
}

type Reply = oneshot::Sender<Result<(), SessionStoreError>>;

enum Job {
    Save(Vec<Entry>, Reply),
    Flush(Reply),
}

/// A [`SessionStore`] in Redis: session id, sequence and resume URL of every
/// shard of a bot in one hash, so a restarted process, or another machine,
/// resumes instead of identifying.
///
/// [`RedisSessionStore::batched`] coalesces saves: they are written together
/// every interval (one round trip for all of them, whatever the number of
/// shards), and each save answers once its batch is written. Give it to
/// `ManagerConfig::session_store` with `ManagerConfig::checkpoint_interval`:
/// the manager then checkpoints every shard every interval and on shutdown,
/// never per event.
///
/// ```no_run
/// use discore_cluster::{ClusterRedis, RedisSessionStore};
/// use std::{sync::Arc, time::Duration};
///
/// # async fn run() -> Result<(), discore_cluster::ClusterError> {
/// let redis = ClusterRedis::connect("redis://127.0.0.1:6379", "my-bot").await?;
/// let store = Arc::new(RedisSessionStore::batched(&redis, Duration::from_millis(500)));
/// // ManagerConfig::sessions(SessionConfig { checkpoint_interval: Some(Duration::from_secs(1)), ..SessionConfig::new(store) })
/// # drop(store);
/// # Ok(())
/// # }
/// ```
pub struct RedisSessionStore {
    redis: ClusterRedis,
    batch: Option<(Duration, mpsc::UnboundedSender<Job>)>,
}

impl fmt::Debug for RedisSessionStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisSessionStore")
            .field("namespace", &self.redis.namespace())
            .field("batch_interval", &self.batch.as_ref().map(|(i, _)| *i))
            .finish()
    }
}

impl RedisSessionStore {
    /// A store that writes every save at once.
    pub fn new(redis: &ClusterRedis) -> Self {
        Self {
            redis: redis.clone(),
            batch: None,
        }
    }

    /// A store that writes saves together every `interval`. Build it inside
    /// the actix system: it spawns the task that writes.
    pub fn batched(redis: &ClusterRedis, interval: Duration) -> Self {
        let interval = interval.max(Duration::from_millis(1));
        let (sender, receiver) = mpsc::unbounded_channel();
        actix_rt::spawn(run_batches(redis.clone(), interval, receiver));
        Self {
            redis: redis.clone(),
            batch: Some((interval, sender)),
        }
    }

    /// Writes the saves waiting for their batch now.
    ///
    /// # Errors
    ///
    /// What the write failed with.
    pub async fn flush(&self) -> Result<(), SessionStoreError> {
        let Some((_, jobs)) = &self.batch else {
            return Ok(());
        };
        let (reply, done) = oneshot::channel();
        jobs.send(Job::Flush(reply)).map_err(|_| gone())?;
        done.await.map_err(|_| gone())?
    }

    /// Saves with fences: the batch path, or at once.
    pub(crate) fn save_entries(&self, entries: Vec<Entry>) -> StoreFuture<()> {
        if entries.is_empty() {
            return Box::pin(async { Ok(()) });
        }
        match &self.batch {
            Some((_, jobs)) => {
                let (reply, done) = oneshot::channel();
                let sent = jobs.send(Job::Save(entries, reply));
                Box::pin(async move {
                    sent.map_err(|_| gone())?;
                    done.await.map_err(|_| gone())?
                })
            }
            None => {
                let redis = self.redis.clone();
                Box::pin(async move { write(&redis, entries).await.map(drop) })
            }
        }
    }

    /// The session of one shard.
    pub(crate) fn load_one(&self, shard: ShardId) -> StoreFuture<Option<SavedSession>> {
        let redis = self.redis.clone();
        let flushed = self.flush_future();
        Box::pin(async move {
            flushed.await?;
            let mut conn = redis.conn();
            let mut command = redis::cmd("HGET");
            command
                .arg(redis.keys().sessions())
                .arg(Keys::session_field(shard));
            let call = command.query_async::<Option<String>>(&mut conn);
            let json = bounded("HGET sessions", CALL_LIMIT, call)
                .await
                .map_err(backend)?;
            json.map(|json| parse(&json)).transpose()
        })
    }

    fn flush_future(&self) -> StoreFuture<()> {
        let jobs = self.batch.as_ref().map(|(_, jobs)| jobs.clone());
        Box::pin(async move {
            let Some(jobs) = jobs else {
                return Ok(());
            };
            let (reply, done) = oneshot::channel();
            jobs.send(Job::Flush(reply)).map_err(|_| gone())?;
            done.await.map_err(|_| gone())?
        })
    }
}

impl SessionStore for RedisSessionStore {
    fn save(&self, sessions: Vec<SavedSession>) -> StoreFuture<()> {
        self.save_entries(
            sessions
                .into_iter()
                .map(|saved| Entry { saved, fence: None })
                .collect(),
        )
    }

    fn load(&self) -> StoreFuture<Vec<SavedSession>> {
        let redis = self.redis.clone();
        let flushed = self.flush_future();
        Box::pin(async move {
            flushed.await?;
            let mut conn = redis.conn();
            let mut command = redis::cmd("HGETALL");
            command.arg(redis.keys().sessions());
            let call = command.query_async::<BTreeMap<String, String>>(&mut conn);
            let all = bounded("HGETALL sessions", CALL_LIMIT, call)
                .await
                .map_err(backend)?;
            let mut sessions = all
                .values()
                .map(|json| parse(json))
                .collect::<Result<Vec<_>, _>>()?;
            sessions.sort_by_key(|s| (s.shard.total(), s.shard.number()));
            Ok(sessions)
        })
    }

    fn remove(&self, shards: Vec<ShardId>) -> StoreFuture<()> {
        let redis = self.redis.clone();
        let flushed = self.flush_future();
        Box::pin(async move {
            flushed.await?;
            if shards.is_empty() {
                return Ok(());
            }
            let fields: Vec<String> = shards.into_iter().map(Keys::session_field).collect();
            let mut conn = redis.conn();
            let mut command = redis::cmd("HDEL");
            command.arg(redis.keys().sessions()).arg(&fields);
            let call = command.query_async::<u64>(&mut conn);
            bounded("HDEL sessions", CALL_LIMIT, call)
                .await
                .map(drop)
                .map_err(backend)
        })
    }
}

/// Writes entries in one script call; answers how many passed their fence.
async fn write(redis: &ClusterRedis, entries: Vec<Entry>) -> Result<u64, SessionStoreError> {
    let mut invocation = WRITE.key(redis.keys().sessions());
    invocation.arg(entries.len());
    for entry in &entries {
        let json = serde_json::to_string(&entry.saved)
            .map_err(|e| SessionStoreError::Corrupt(format!("session does not serialize: {e}")))?;
        let (key, value) = entry
            .fence
            .as_ref()
            .map_or(("", ""), |f| (f.key.as_str(), f.value.as_str()));
        invocation
            .arg(Keys::session_field(entry.saved.shard))
            .arg(json)
            .arg(key)
            .arg(value);
    }
    let mut conn = redis.conn();
    let written = bounded(
        "session write",
        CALL_LIMIT,
        invocation.invoke_async::<u64>(&mut conn),
    )
    .await
    .map_err(backend)?;
    let refused = entries.len() as u64 - written.min(entries.len() as u64);
    if refused > 0 {
        log::info!("{refused} session checkpoints refused: their shards' leases moved on");
    }
    Ok(written)
}

/// The batch writer: collects saves (the latest per shard wins) and writes
/// them every interval, or at once on a flush.
async fn run_batches(
    redis: ClusterRedis,
    interval: Duration,
    mut jobs: mpsc::UnboundedReceiver<Job>,
) {
    let mut pending: BTreeMap<(u32, u32), Entry> = BTreeMap::new();
    let mut waiters: Vec<Reply> = Vec::new();
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let flush_now = tokio::select! {
            job = jobs.recv() => match job {
                Some(Job::Save(entries, reply)) => {
                    for entry in entries {
                        let shard = entry.saved.shard;
                        pending.insert((shard.total(), shard.number()), entry);
                    }
                    waiters.push(reply);
                    false
                }
                Some(Job::Flush(reply)) => {
                    waiters.push(reply);
                    true
                }
                None => {
                    // The store was dropped: write what is left.
                    flush(&redis, &mut pending, &mut waiters).await;
                    return;
                }
            },
            _ = ticks.tick() => true,
        };
        if flush_now {
            flush(&redis, &mut pending, &mut waiters).await;
        }
    }
}

async fn flush(
    redis: &ClusterRedis,
    pending: &mut BTreeMap<(u32, u32), Entry>,
    waiters: &mut Vec<Reply>,
) {
    let entries: Vec<Entry> = std::mem::take(pending).into_values().collect();
    let result = if entries.is_empty() {
        Ok(())
    } else {
        log::debug!("checkpoint: writing {} sessions", entries.len());
        write(redis, entries).await.map(drop)
    };
    if let Err(error) = &result {
        log::warn!("session checkpoint failed: {}", ErrorChain(error));
    }
    for waiter in waiters.drain(..) {
        let _ = waiter.send(result.clone());
    }
}

fn parse(json: &str) -> Result<SavedSession, SessionStoreError> {
    serde_json::from_str(json)
        .map_err(|e| SessionStoreError::Corrupt(format!("saved session in redis: {e}")))
}

fn backend(error: crate::ClusterError) -> SessionStoreError {
    SessionStoreError::Backend(error.to_string())
}

fn gone() -> SessionStoreError {
    SessionStoreError::Backend("the session batch task is gone".into())
}
