//! The status of a whole cluster: every process publishes its shards'
//! reports to Redis, anyone reads them merged.

use crate::{
    error::ClusterError,
    redis_conn::{ClusterRedis, bounded},
};
use discore_manager::{ShardReport, ShardRunState};
use discore_protocol::ShardId;
use serde::{Deserialize, Serialize};
use std::{
    collections::BTreeMap,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

const CALL_LIMIT: Duration = Duration::from_secs(5);

/// Where a shard stands with its lease.
#[derive(Clone, Copy, Debug, Deserialize, Eq, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum LeaseState {
    /// Claimed; its shard manager is starting.
    Starting,
    /// Claimed and running.
    Running,
    /// Being handed over: the shard stops, saves its session, then the
    /// lease is released.
    Releasing,
}

/// One shard of the cluster, as the process holding its lease reported it.
#[derive(Clone, Debug, Deserialize, Eq, PartialEq, Serialize)]
pub struct ClusterShardReport {
    /// The shard, `[id, total]`.
    pub shard: ShardId,
    /// The process (node id) that runs it.
    pub node: String,
    /// The lease's fencing token.
    pub fencing_token: u64,
    /// The lease.
    pub lease: LeaseState,
    /// The manager's view: `running`, `restarting`, `failed: …`, `stopped`.
    pub run_state: String,
    /// The connection state, such as `Active` or `Resuming`.
    pub state: Option<String>,
    /// The session id.
    pub session_id: Option<String>,
    /// The last sequence number received.
    pub sequence: Option<u64>,
    /// Average heartbeat round trip in milliseconds.
    pub latency_ms: Option<u64>,
    /// Guilds READY listed.
    pub guilds: usize,
    /// GUILD_CREATEs received since READY.
    pub guilds_loaded: usize,
    /// Dispatches received.
    pub events_received: u64,
    /// Identifies sent by this process.
    pub identifies: u64,
    /// Resumes completed by this process.
    pub resumes: u64,
    /// Reconnects after a lost connection.
    pub reconnects: u64,
    /// Restarts after crashes.
    pub restarts: u32,
    /// When the report was written, ms since the Unix epoch.
    pub updated_at_ms: u64,
}

impl ClusterShardReport {
    pub(crate) fn from_manager(
        node: &str,
        fencing_token: u64,
        lease: LeaseState,
        report: Option<&ShardReport>,
        shard: ShardId,
    ) -> Self {
        let status = report.and_then(|r| r.status.as_ref());
        let run_state = match report.map(|r| r.state) {
            Some(ShardRunState::Waiting) => "waiting".to_owned(),
            Some(ShardRunState::Running) => "running".to_owned(),
            Some(ShardRunState::Restarting) => "restarting".to_owned(),
            Some(ShardRunState::Failed(failure)) => format!("failed: {failure:?}"),
            Some(ShardRunState::Stopped) => "stopped".to_owned(),
            Some(other) => format!("{other:?}").to_lowercase(),
            None => "starting".to_owned(),
        };
        Self {
            shard,
            node: node.to_owned(),
            fencing_token,
            lease,
            run_state,
            state: status.map(|s| format!("{:?}", s.state)),
            session_id: status.and_then(|s| s.session.as_ref().map(|s| s.id.clone())),
            sequence: status.and_then(|s| s.session.as_ref().map(|s| s.sequence)),
            latency_ms: status
                .and_then(|s| s.latency.average())
                .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
            guilds: status.map_or(0, |s| s.guilds),
            guilds_loaded: status.map_or(0, |s| s.guilds_loaded),
            events_received: status.map_or(0, |s| s.events_received),
            identifies: status.map_or(0, |s| s.identifies),
            resumes: status.map_or(0, |s| s.resumes),
            reconnects: status.map_or(0, |s| s.reconnects),
            restarts: report.map_or(0, |r| r.restarts),
            updated_at_ms: now_ms(),
        }
    }
}

/// Replaces the reports of `node` (they expire after `ttl` unless written
/// again, so a dead process disappears from the status).
pub(crate) async fn publish(
    redis: &ClusterRedis,
    node: &str,
    reports: &[ClusterShardReport],
    ttl: Duration,
) -> Result<(), ClusterError> {
    let key = redis.keys().status(node);
    let mut pipe = redis::pipe();
    pipe.atomic().del(&key).ignore();
    if !reports.is_empty() {
        let mut fields = Vec::with_capacity(reports.len());
        for report in reports {
            let json = serde_json::to_string(report).map_err(|e| ClusterError::Corrupt {
                what: "shard report",
                detail: e.to_string(),
            })?;
            fields.push((
                format!("{}:{}", report.shard.total(), report.shard.number()),
                json,
            ));
        }
        pipe.hset_multiple(&key, &fields)
            .ignore()
            .pexpire(&key, i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX))
            .ignore();
    }
    let mut conn = redis.conn();
    bounded(
        "status publish",
        CALL_LIMIT,
        pipe.query_async::<()>(&mut conn),
    )
    .await
}

/// Removes the reports of `node` (a clean shutdown).
pub(crate) async fn withdraw(redis: &ClusterRedis, node: &str) -> Result<(), ClusterError> {
    let mut conn = redis.conn();
    bounded(
        "status withdraw",
        CALL_LIMIT,
        redis::cmd("DEL")
            .arg(redis.keys().status(node))
            .query_async::<u64>(&mut conn),
    )
    .await
    .map(drop)
}

/// Every shard report of the cluster, merged from all live processes and
/// sorted by `(total, id)`: what a status page or `/api/shards` shows.
///
/// During a hand-over a shard may briefly appear twice (the releasing and
/// the claiming process); both reports are kept, with their fencing tokens.
///
/// # Errors
///
/// [`ClusterError::Redis`] when Redis fails, [`ClusterError::Corrupt`] for
/// a report that does not parse.
pub async fn cluster_status(redis: &ClusterRedis) -> Result<Vec<ClusterShardReport>, ClusterError> {
    let mut conn = redis.conn();
    let pattern = format!("{}*", redis.keys().status(""));
    let mut keys = Vec::new();
    let mut cursor: u64 = 0;
    for _ in 0..10_000 {
        let (next, batch): (u64, Vec<String>) = bounded(
            "status scan",
            CALL_LIMIT,
            redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(&pattern)
                .arg("COUNT")
                .arg(200)
                .query_async(&mut conn),
        )
        .await?;
        keys.extend(batch);
        cursor = next;
        if cursor == 0 {
            break;
        }
    }
    let mut reports = Vec::new();
    for key in keys {
        let fields: BTreeMap<String, String> = bounded(
            "status read",
            CALL_LIMIT,
            redis::cmd("HGETALL").arg(&key).query_async(&mut conn),
        )
        .await?;
        for json in fields.values() {
            let report: ClusterShardReport =
                serde_json::from_str(json).map_err(|e| ClusterError::Corrupt {
                    what: "shard report",
                    detail: e.to_string(),
                })?;
            reports.push(report);
        }
    }
    reports.sort_by(|a, b| {
        (a.shard.total(), a.shard.number(), a.fencing_token).cmp(&(
            b.shard.total(),
            b.shard.number(),
            b.fencing_token,
        ))
    });
    Ok(reports)
}

pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}
