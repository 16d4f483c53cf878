//! What the admin server shows: a [`FleetSnapshot`] of shards, built from a
//! manager's [`FleetStatus`] or from single shards' [`ShardStatus`].

use discore_gateway::{Latency, ShardState, ShardStatus};
use discore_manager::{FleetStatus, ShardReport, ShardRunState};
use serde::Serialize;
use std::{collections::BTreeMap, time::Duration};

/// A shard's state as the admin server shows it: the connection state while
/// its actor runs, or what its supervisor knows otherwise.
#[derive(Clone, Copy, Debug, Eq, Hash, Ord, PartialEq, PartialOrd, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum TileState {
    /// Not connected; a connection is scheduled.
    Disconnected,
    /// Opening the WebSocket.
    Connecting,
    /// Connected, waiting for Hello.
    AwaitingHello,
    /// Identifying, possibly waiting in the identify queue.
    Identifying,
    /// Resuming its session.
    Resuming,
    /// Events flow.
    Active,
    /// Crashed; its supervisor restarts it.
    Restarting,
    /// Stopped for good by the gateway or its supervisor.
    Failed,
    /// Stopped on purpose.
    Stopped,
    /// Its actor runs but did not answer.
    Unknown,
}

impl TileState {
    /// Every state, in the order the page and the metrics list them.
    pub const ALL: [Self; 10] = [
        Self::Active,
        Self::Identifying,
        Self::Resuming,
        Self::Connecting,
        Self::AwaitingHello,
        Self::Disconnected,
        Self::Restarting,
        Self::Failed,
        Self::Stopped,
        Self::Unknown,
    ];

    /// The snake_case name used in labels and JSON.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Disconnected => "disconnected",
            Self::Connecting => "connecting",
            Self::AwaitingHello => "awaiting_hello",
            Self::Identifying => "identifying",
            Self::Resuming => "resuming",
            Self::Active => "active",
            Self::Restarting => "restarting",
            Self::Failed => "failed",
            Self::Stopped => "stopped",
            Self::Unknown => "unknown",
        }
    }

    /// The state of a running shard's connection.
    pub const fn of(state: ShardState) -> Self {
        match state {
            ShardState::Disconnected => Self::Disconnected,
            ShardState::Connecting => Self::Connecting,
            ShardState::AwaitingHello => Self::AwaitingHello,
            ShardState::Identifying => Self::Identifying,
            ShardState::Resuming => Self::Resuming,
            ShardState::Active => Self::Active,
            ShardState::Failed(_) => Self::Failed,
            ShardState::Stopped => Self::Stopped,
        }
    }
}

/// Heartbeat round trips of one shard.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LatencySnapshot {
    /// The most recent round trip.
    pub last: Option<Duration>,
    /// The moving average.
    pub average: Option<Duration>,
    /// ACKs measured.
    pub samples: u64,
    /// Samples per bucket of [`Latency::BUCKETS_MS`], the last one unbounded
    /// (not cumulative).
    pub buckets: Vec<u64>,
    /// The sum of every round trip, when the source reports it (the
    /// histogram's `_sum`).
    pub sum: Option<Duration>,
}

impl From<&Latency> for LatencySnapshot {
    fn from(latency: &Latency) -> Self {
        Self {
            last: latency.last(),
            average: latency.average(),
            samples: latency.samples(),
            buckets: latency.histogram().to_vec(),
            sum: Some(latency.sum()),
        }
    }
}

/// One shard as the admin server shows it.
#[derive(Clone, Debug, PartialEq)]
pub struct ShardSnapshot {
    /// Its id.
    pub id: u32,
    /// The shard total it belongs to.
    pub total: u32,
    /// Its state.
    pub state: TileState,
    /// Why it failed, when it did.
    pub failure: Option<String>,
    /// Heartbeat round trips; `None` when its actor did not answer.
    pub latency: Option<LatencySnapshot>,
    /// Guilds its READY listed.
    pub guilds: u64,
    /// Of those, guilds whose GUILD_CREATE arrived.
    pub guilds_loaded: u64,
    /// Dispatches received.
    pub events: u64,
    /// Dispatches received, by event name.
    pub events_by_type: BTreeMap<String, u64>,
    /// Reconnects after a lost connection.
    pub reconnects: u64,
    /// Successful resumes.
    pub resumes: u64,
    /// Reconnects that resumed the session. Exact for shard statuses;
    /// lifecycle notifications (the built-in sources do); otherwise
    /// estimated from `reconnects` and `resumes`.
    pub reconnects_resumed: u64,
    /// Reconnects that had to start a new session.
    pub reconnects_new_session: u64,
    /// Identifies sent.
    pub identifies: u64,
    /// Restarts by its supervisor after crashes.
    pub restarts: u64,
    /// The last close code the gateway sent.
    pub last_close_code: Option<u16>,
    /// Close codes the gateway sent, with how often.
    pub close_codes: BTreeMap<u16, u64>,
    /// Times a command waited for the rate limiter.
    pub rate_limit_waits: u64,
    /// Commands waiting to be sent.
    pub commands_queued: u64,
    /// Delivered events subscribers still hold.
    pub events_outstanding: u64,
    /// Bytes read from the socket (compressed, when compression is on).
    pub inbound_wire_bytes: u64,
    /// Payload bytes after decompression.
    pub inbound_inflated_bytes: u64,
}

impl ShardSnapshot {
    /// A shard whose actor does not run or did not answer: only its id and
    /// state are known.
    pub fn bare(id: u32, total: u32, state: TileState) -> Self {
        Self {
            id,
            total,
            state,
            failure: None,
            latency: None,
            guilds: 0,
            guilds_loaded: 0,
            events: 0,
            events_by_type: BTreeMap::new(),
            reconnects: 0,
            resumes: 0,
            reconnects_resumed: 0,
            reconnects_new_session: 0,
            identifies: 0,
            restarts: 0,
            last_close_code: None,
            close_codes: BTreeMap::new(),
            rate_limit_waits: 0,
            commands_queued: 0,
            events_outstanding: 0,
            inbound_wire_bytes: 0,
            inbound_inflated_bytes: 0,
        }
    }

    /// A running shard's own status.
    pub fn from_status(status: &ShardStatus) -> Self {
        let failure = match status.state {
            ShardState::Failed(reason) => Some(reason.to_string()),
            _ => None,
        };
        Self {
            failure,
            latency: Some(LatencySnapshot::from(&status.latency)),
            guilds: status.guilds as u64,
            guilds_loaded: status.guilds_loaded as u64,
            events: status.events_received,
            events_by_type: status.events_by_type.clone(),
            reconnects: status.reconnects,
            resumes: status.resumes,
            reconnects_resumed: status.reconnects
                - status.reconnects_new_session.min(status.reconnects),
            reconnects_new_session: status.reconnects_new_session,
            identifies: status.identifies,
            last_close_code: status.last_close_code,
            close_codes: status.close_codes.clone(),
            rate_limit_waits: status.rate_limit_waits,
            commands_queued: status.commands_queued as u64,
            events_outstanding: status.events_outstanding as u64,
            inbound_wire_bytes: status.inbound_bytes,
            inbound_inflated_bytes: status.inflated_bytes,
            ..Self::bare(
                status.shard.number(),
                status.shard.total(),
                TileState::of(status.state),
            )
        }
    }

    /// A shard of a manager's fleet.
    pub fn from_report(report: &ShardReport) -> Self {
        let (number, total) = (report.shard.number(), report.shard.total());
        let mut shard = match (&report.state, &report.status) {
            (ShardRunState::Running, Some(status)) => Self::from_status(status),
            (ShardRunState::Running, None) => Self::bare(number, total, TileState::Unknown),
            (ShardRunState::Restarting, _) => Self::bare(number, total, TileState::Restarting),
            // Not connected yet; the launch starts it in its turn.
            (ShardRunState::Waiting, _) => Self::bare(number, total, TileState::Disconnected),
            (ShardRunState::Failed(failure), _) => Self {
                failure: Some(failure.to_string()),
                ..Self::bare(number, total, TileState::Failed)
            },
            (_, _) => Self::bare(number, total, TileState::Stopped),
        };
        shard.restarts = u64::from(report.restarts);
        shard
    }
}

/// The identify queue's numbers, when the source knows them (see
/// [`MeteredIdentifyQueue`](crate::MeteredIdentifyQueue)).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct IdentifySnapshot {
    /// Identify slots granted since the process started.
    pub granted: u64,
    /// Shards waiting for a slot now.
    pub waiting: u64,
    /// Time spent waiting for a slot: samples per bucket of
    /// [`IDENTIFY_WAIT_BUCKETS`](crate::IDENTIFY_WAIT_BUCKETS), the last one
    /// unbounded (not cumulative).
    pub wait_buckets: Vec<u64>,
    /// The sum of every wait.
    pub wait_sum: Duration,
    /// Identifies left in the daily budget, if known.
    pub budget_remaining: Option<u32>,
    /// The daily budget after a reset, if known.
    pub budget_total: Option<u32>,
}

/// A re-sharding under way.
#[derive(Clone, Copy, Debug, Eq, PartialEq, Serialize)]
pub struct ReshardSnapshot {
    /// The total being replaced.
    pub from: u32,
    /// The new total, once known.
    pub to: Option<u32>,
    /// New fleet shards with a session.
    pub shards_ready: u32,
}

/// Everything the admin server shows, as one consistent snapshot.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct FleetSnapshot {
    /// The shard total of the fleet (every process).
    pub total: u32,
    /// Whether every shard here is ready with all its guilds.
    pub ready: bool,
    /// The shards this process runs, by id.
    pub shards: Vec<ShardSnapshot>,
    /// A re-sharding under way.
    pub resharding: Option<ReshardSnapshot>,
    /// The identify queue's numbers, if known.
    pub identify: Option<IdentifySnapshot>,
}

impl FleetSnapshot {
    /// The serving fleet of a manager.
    pub fn from_fleet(status: &FleetStatus) -> Self {
        Self {
            total: status.total,
            ready: status.ready,
            shards: status
                .shards
                .iter()
                .map(ShardSnapshot::from_report)
                .collect(),
            resharding: status.resharding.as_ref().map(|r| ReshardSnapshot {
                from: r.from,
                to: r.to,
                shards_ready: r.progress.shards_ready,
            }),
            identify: None,
        }
    }

    /// Shards that are not managed by a `ShardManager`.
    pub fn from_shards(statuses: &[ShardStatus]) -> Self {
        let shards: Vec<ShardSnapshot> = statuses.iter().map(ShardSnapshot::from_status).collect();
        Self {
            total: statuses.first().map_or(0, |s| s.shard.total()),
            ready: !statuses.is_empty() && statuses.iter().all(ShardStatus::is_fully_loaded),
            shards,
            resharding: None,
            identify: None,
        }
    }
}
