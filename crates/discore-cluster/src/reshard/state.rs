//! The cluster's generation record in Redis, and the shared progress of a
//! re-sharding: who is ready, whose heads and records are written, who has
//! switched. Every step is a set or a hash under `reshard:<to>:…`; stage
//! changes are compare-and-set scripts, so any node may make them and only
//! the first one does.

use super::matching::{Key, Mark, RecordWire, head_field, head_value, parse_head};
use crate::{
    error::ClusterError,
    redis_conn::{ClusterRedis, bounded},
};
use std::{collections::HashMap, sync::LazyLock, time::Duration};

/// Redis calls of the re-sharding fail after this.
const CALL_LIMIT: Duration = Duration::from_secs(5);
/// The re-sharding's keys expire this long after their last write.
const KEEP: Duration = Duration::from_secs(60 * 60);

/// Where the cluster is.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub(crate) enum Stage {
    /// One generation serves.
    Serving,
    /// The new generation is starting; its events are held.
    Starting,
    /// Every new shard is ready: delivery moves to the new generation.
    Switching,
}

impl Stage {
    fn name(self) -> &'static str {
        match self {
            Self::Serving => "serving",
            Self::Starting => "starting",
            Self::Switching => "switching",
        }
    }
}

/// The generation record.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub(crate) struct Generation {
    /// The serving total.
    pub(crate) total: u32,
    /// The total being moved to.
    pub(crate) next: Option<u32>,
    pub(crate) stage: Stage,
}

/// A set of shard ids that marks a step of the re-sharding.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub(crate) enum Step {
    /// New shards READY with all their guilds, their events held.
    Ready,
    /// New shards whose heads are written.
    HeadsWritten,
    /// Old shards silent, their records written.
    RecordsWritten,
    /// New shards publishing.
    Switched,
}

impl Step {
    fn name(self) -> &'static str {
        match self {
            Self::Ready => "ready",
            Self::HeadsWritten => "heads-written",
            Self::RecordsWritten => "records-written",
            Self::Switched => "switched",
        }
    }
}

/// Creates the record with `total` unless there is one; answers the record.
static INIT: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        r"
redis.call('HSETNX', KEYS[1], 'total', ARGV[1])
redis.call('HSETNX', KEYS[1], 'stage', 'serving')
return redis.call('HMGET', KEYS[1], 'total', 'stage', 'next')
",
    )
});

/// Starts a re-sharding from ARGV[1] to ARGV[2] if the cluster serves
/// ARGV[1] and none is under way; clears what an earlier attempt at the
/// same total left (ARGV[3] = the `reshard:<to>:` prefix).
static BEGIN: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        r"
local g = redis.call('HMGET', KEYS[1], 'stage', 'total')
if g[1] ~= 'serving' or g[2] ~= ARGV[1] then return 0 end
for _, step in ipairs({'ready', 'heads-written', 'records-written', 'switched'}) do
  redis.call('DEL', ARGV[3] .. step)
end
for shard = 0, tonumber(ARGV[1]) - 1 do
  redis.call('DEL', ARGV[3] .. 'heads:' .. shard, ARGV[3] .. 'record:' .. shard)
end
redis.call('HSET', KEYS[1], 'stage', 'starting', 'next', ARGV[2])
redis.call('HINCRBY', KEYS[1], 'epoch', 1)
return 1
",
    )
});

/// Moves from stage ARGV[1] (re-sharding to ARGV[2]) to ARGV[4] once the
/// set KEYS[2] has ARGV[3] members; `serving` makes ARGV[2] the total.
static ADVANCE: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        r"
local g = redis.call('HMGET', KEYS[1], 'stage', 'next')
if g[1] ~= ARGV[1] or g[2] ~= ARGV[2] then return 0 end
if redis.call('SCARD', KEYS[2]) < tonumber(ARGV[3]) then return 0 end
if ARGV[4] == 'serving' then
  redis.call('HSET', KEYS[1], 'stage', 'serving', 'total', ARGV[2])
  redis.call('HDEL', KEYS[1], 'next')
else
  redis.call('HSET', KEYS[1], 'stage', ARGV[4])
end
return 1
",
    )
});

fn corrupt(detail: impl Into<String>) -> ClusterError {
    ClusterError::Corrupt {
        what: "generation record",
        detail: detail.into(),
    }
}

/// The stage a record names (none yet: serving).
fn stage_of(name: Option<&str>) -> Result<Stage, ClusterError> {
    match name {
        Some("serving") | None => Ok(Stage::Serving),
        Some("starting") => Ok(Stage::Starting),
        Some("switching") => Ok(Stage::Switching),
        Some(other) => Err(corrupt(format!("unknown stage {other}"))),
    }
}

/// Reads the generation record, creating it with `total` if there is none.
pub(crate) async fn read_or_init(
    redis: &ClusterRedis,
    total: u32,
) -> Result<Generation, ClusterError> {
    let mut conn = redis.conn();
    let (serving, stage, next): (Option<String>, Option<String>, Option<String>) = bounded(
        "generation read",
        CALL_LIMIT,
        INIT.key(redis.keys().generation())
            .arg(total)
            .invoke_async(&mut conn),
    )
    .await?;
    let number = |text: Option<String>| -> Result<Option<u32>, ClusterError> {
        text.map(|t| t.parse().map_err(|_| corrupt(format!("not a total: {t}"))))
            .transpose()
    };
    Ok(Generation {
        stage: stage_of(stage.as_deref())?,
        total: number(serving)?.unwrap_or(total),
        next: number(next)?,
    })
}

/// Reads the generation record without creating it: `None` for a cluster
/// that has none yet (it serves the configured total).
pub(crate) async fn read(redis: &ClusterRedis) -> Result<Option<Generation>, ClusterError> {
    let mut conn = redis.conn();
    let (total, stage, next): (Option<u32>, Option<String>, Option<u32>) = bounded(
        "generation read",
        CALL_LIMIT,
        redis::cmd("HMGET")
            .arg(redis.keys().generation())
            .arg("total")
            .arg("stage")
            .arg("next")
            .query_async(&mut conn),
    )
    .await?;
    let Some(total) = total else {
        return Ok(None);
    };
    let stage = stage_of(stage.as_deref())?;
    Ok(Some(Generation { total, next, stage }))
}

/// Starts a re-sharding from `from` to `to` shards; `false` when the
/// cluster does not serve `from` or one is under way.
pub(crate) async fn begin(redis: &ClusterRedis, from: u32, to: u32) -> Result<bool, ClusterError> {
    let mut conn = redis.conn();
    bounded(
        "re-sharding start",
        CALL_LIMIT,
        BEGIN
            .key(redis.keys().generation())
            .arg(from)
            .arg(to)
            .arg(redis.keys().reshard(to, ""))
            .invoke_async::<bool>(&mut conn),
    )
    .await
}

/// Moves the re-sharding to `to` from stage `from` to `next` once `step`
/// counts `need` shards; `true` when this call moved it.
pub(crate) async fn advance(
    redis: &ClusterRedis,
    to: u32,
    from: Stage,
    step: Step,
    need: u32,
    next: Stage,
) -> Result<bool, ClusterError> {
    let mut conn = redis.conn();
    bounded(
        "re-sharding stage",
        CALL_LIMIT,
        ADVANCE
            .key(redis.keys().generation())
            .key(redis.keys().reshard(to, step.name()))
            .arg(from.name())
            .arg(to)
            .arg(need)
            .arg(next.name())
            .invoke_async::<bool>(&mut conn),
    )
    .await
}

/// Adds shards to a step's set.
pub(crate) async fn mark(
    redis: &ClusterRedis,
    to: u32,
    step: Step,
    shards: &[u32],
) -> Result<(), ClusterError> {
    if shards.is_empty() {
        return Ok(());
    }
    let key = redis.keys().reshard(to, step.name());
    let mut pipe = redis::pipe();
    pipe.sadd(&key, shards)
        .ignore()
        .pexpire(&key, keep_millis())
        .ignore();
    let mut conn = redis.conn();
    bounded(
        "re-sharding step",
        CALL_LIMIT,
        pipe.query_async::<()>(&mut conn),
    )
    .await
}

/// The shards of a step so far.
pub(crate) async fn members(
    redis: &ClusterRedis,
    to: u32,
    step: Step,
) -> Result<Vec<u32>, ClusterError> {
    let mut conn = redis.conn();
    bounded(
        "re-sharding step read",
        CALL_LIMIT,
        redis::cmd("SMEMBERS")
            .arg(redis.keys().reshard(to, step.name()))
            .query_async::<Vec<u32>>(&mut conn),
    )
    .await
}

fn keep_millis() -> i64 {
    i64::try_from(KEEP.as_millis()).unwrap_or(i64::MAX)
}

/// Writes a new shard's heads, grouped by the old shard each guild comes
/// from, and marks the new shard's heads written.
pub(crate) async fn write_heads(
    redis: &ClusterRedis,
    to: u32,
    new_shard: u32,
    by_old_shard: &HashMap<u32, Vec<(Key, Mark)>>,
) -> Result<(), ClusterError> {
    let mut pipe = redis::pipe();
    pipe.atomic();
    for (old, heads) in by_old_shard {
        if heads.is_empty() {
            continue;
        }
        let key = redis.keys().reshard(to, &format!("heads:{old}"));
        let fields: Vec<(String, String)> = heads
            .iter()
            .map(|(k, m)| (head_field(*k), head_value(*m)))
            .collect();
        pipe.hset_multiple(&key, &fields)
            .ignore()
            .pexpire(&key, keep_millis())
            .ignore();
    }
    let done = redis.keys().reshard(to, Step::HeadsWritten.name());
    pipe.sadd(&done, new_shard)
        .ignore()
        .pexpire(&done, keep_millis())
        .ignore();
    let mut conn = redis.conn();
    bounded(
        "re-sharding heads",
        CALL_LIMIT,
        pipe.query_async::<()>(&mut conn),
    )
    .await
}

/// The heads of the guilds of old shard `old`.
pub(crate) async fn read_heads(
    redis: &ClusterRedis,
    to: u32,
    old: u32,
) -> Result<Vec<(Key, Mark)>, ClusterError> {
    let mut conn = redis.conn();
    let fields: HashMap<String, String> = bounded(
        "re-sharding heads read",
        CALL_LIMIT,
        redis::cmd("HGETALL")
            .arg(redis.keys().reshard(to, &format!("heads:{old}")))
            .query_async(&mut conn),
    )
    .await?;
    fields
        .iter()
        .map(|(field, value)| {
            parse_head(field, value).ok_or_else(|| corrupt(format!("a head {field}={value}")))
        })
        .collect()
}

/// Writes old shard `old`'s record and marks it written.
pub(crate) async fn write_record(
    redis: &ClusterRedis,
    to: u32,
    old: u32,
    record: &RecordWire,
) -> Result<(), ClusterError> {
    let json = serde_json::to_string(record).map_err(|e| corrupt(e.to_string()))?;
    let key = redis.keys().reshard(to, &format!("record:{old}"));
    let done = redis.keys().reshard(to, Step::RecordsWritten.name());
    let mut pipe = redis::pipe();
    pipe.atomic()
        .set(&key, json)
        .ignore()
        .pexpire(&key, keep_millis())
        .ignore()
        .sadd(&done, old)
        .ignore()
        .pexpire(&done, keep_millis())
        .ignore();
    let mut conn = redis.conn();
    bounded(
        "re-sharding record",
        CALL_LIMIT,
        pipe.query_async::<()>(&mut conn),
    )
    .await
}

/// Every old shard's record, by old shard id.
pub(crate) async fn read_records(
    redis: &ClusterRedis,
    to: u32,
    from: u32,
) -> Result<Vec<(u32, RecordWire)>, ClusterError> {
    let keys: Vec<String> = (0..from)
        .map(|old| redis.keys().reshard(to, &format!("record:{old}")))
        .collect();
    let mut conn = redis.conn();
    let texts: Vec<Option<String>> = bounded(
        "re-sharding records read",
        CALL_LIMIT,
        redis::cmd("MGET").arg(&keys).query_async(&mut conn),
    )
    .await?;
    let mut records = Vec::with_capacity(texts.len());
    for (old, text) in (0..from).zip(texts) {
        let Some(text) = text else {
            return Err(corrupt(format!("the record of old shard {old} is missing")));
        };
        let wire = serde_json::from_str(&text)
            .map_err(|e| corrupt(format!("the record of old shard {old}: {e}")))?;
        records.push((old, wire));
    }
    Ok(records)
}
