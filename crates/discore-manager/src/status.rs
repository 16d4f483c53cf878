//! What [`GetFleetStatus`](crate::GetFleetStatus) answers.

use crate::event::{FleetProgress, ShardFailure};
use discore_gateway::{ShardState, ShardStatus};
use discore_protocol::ShardId;
use std::ops::Range;

/// Where a shard of the fleet is, from the manager's point of view.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
#[non_exhaustive]
pub enum ShardRunState {
    /// The fleet's launch has not started it yet: it waits for its turn
    /// to connect (`IdentifyConfig::connect_ahead`).
    Waiting,
    /// Its actor runs (see its [`ShardStatus`] for the connection).
    Running,
    /// It crashed and waits for its restart.
    Restarting,
    /// It stopped for good.
    Failed(ShardFailure),
    /// It was stopped on purpose.
    Stopped,
}

/// One shard in a [`FleetStatus`].
#[derive(Clone, Debug)]
pub struct ShardReport {
    /// The shard.
    pub shard: ShardId,
    /// The manager's view.
    pub state: ShardRunState,
    /// The shard's own status (state, latency, session, guilds, counters,
    /// last close code), when its actor runs and answered.
    pub status: Option<ShardStatus>,
    /// Restarts after crashes since the manager started.
    pub restarts: u32,
    /// The arbiter it runs on (index into the manager's arbiters).
    pub arbiter: usize,
}

impl ShardReport {
    /// Whether the shard's actor runs and its session is live (READY or
    /// RESUMED received, not reconnecting).
    pub fn is_active(&self) -> bool {
        self.status
            .as_ref()
            .is_some_and(|status| status.state == ShardState::Active)
    }
}

/// The status of a fleet.
#[derive(Clone, Debug)]
pub struct FleetStatus {
    /// The shard total of the serving fleet.
    pub total: u32,
    /// The shard ids this manager runs.
    pub shard_ids: Range<u32>,
    /// Every shard this manager runs, by id.
    pub shards: Vec<ShardReport>,
    /// Readiness of the serving fleet.
    pub progress: FleetProgress,
    /// Whether the serving fleet is ready (all shards READY, all guilds in).
    pub ready: bool,
    /// The fleet being started by a re-sharding, if one is under way.
    pub resharding: Option<ReshardingStatus>,
}

impl FleetStatus {
    /// How many of this manager's shards are active (see
    /// [`ShardReport::is_active`]).
    pub fn active_shards(&self) -> usize {
        self.shards.iter().filter(|shard| shard.is_active()).count()
    }
}

/// A re-sharding under way.
#[derive(Clone, Debug)]
pub struct ReshardingStatus {
    /// The total being replaced.
    pub from: u32,
    /// The new total, once known.
    pub to: Option<u32>,
    /// The attempt, from 1.
    pub attempt: u32,
    /// The new fleet's progress.
    pub progress: FleetProgress,
    /// The new fleet's shards.
    pub shards: Vec<ShardReport>,
}
