//! What the manager tells fleet subscribers.

use actix::Message;
use discore_gateway::{ShardFailureReason, StopMode};
use discore_protocol::ShardId;
use std::{fmt, time::Duration};

/// Startup progress of a fleet: shards ready and guilds loaded.
#[derive(Clone, Copy, Debug, Default, Eq, PartialEq)]
pub struct FleetProgress {
    /// The fleet's shard total (all processes).
    pub total: u32,
    /// Shards this manager runs in the fleet.
    pub shards: u32,
    /// Of those, shards with an active session.
    pub shards_ready: u32,
    /// Guilds the active sessions' READY listed.
    pub guilds_expected: u64,
    /// Of those, guilds whose GUILD_CREATE has arrived.
    pub guilds_loaded: u64,
    /// Shards whose guilds have all arrived (or that waited long enough).
    pub shards_loaded: u32,
}

impl FleetProgress {
    /// Every shard is ready and has received all its guilds.
    pub const fn is_ready(&self) -> bool {
        self.shards > 0 && self.shards_loaded == self.shards
    }
}

impl fmt::Display for FleetProgress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}/{} shards ready, {}/{} guilds loaded",
            self.shards_ready, self.shards, self.guilds_loaded, self.guilds_expected
        )
    }
}

/// Why a shard was stopped for good.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
#[non_exhaustive]
pub enum ShardFailure {
    /// The gateway closed it with a code that forbids reconnecting.
    Fatal(ShardFailureReason),
    /// It crashed more often than the restart policy allows.
    RestartIntensity {
        /// Restarts within the window before this crash.
        restarts: u32,
        /// The policy's window.
        window: Duration,
    },
}

impl fmt::Display for ShardFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Fatal(reason) => write!(f, "{reason}"),
            Self::RestartIntensity { restarts, window } => write!(
                f,
                "crashed again after {restarts} restarts within {window:?}, so it is not \
                 restarted: find the crash in the log, or relax SupervisionConfig's restart policy"
            ),
        }
    }
}

/// Why the whole fleet stopped.
#[derive(Clone, Debug, Eq, PartialEq)]
#[non_exhaustive]
pub enum FleetStop {
    /// A shutdown was requested.
    Shutdown(StopMode),
    /// A failure every shard would share (a rejected token, disallowed
    /// intents): restarting could only fail the same way.
    Fatal(ShardFailureReason),
    /// A shard could not use the configured gateway URL.
    InvalidGatewayUrl(String),
}

/// A change in the fleet, for subscribers added with
/// [`ManagerConfig::subscribe_fleet`](crate::ManagerConfig::subscribe_fleet)
/// or [`SubscribeFleet`](crate::SubscribeFleet).
#[derive(Clone, Debug, Eq, Message, PartialEq)]
#[rtype(result = "()")]
#[non_exhaustive]
pub enum FleetEvent {
    /// A starting fleet made progress (also the new fleet of a re-sharding).
    Progress(FleetProgress),
    /// Every shard is READY and has received all its guilds. Sent again
    /// after a shard had to start a new session and has loaded again.
    Ready(FleetProgress),
    /// A crashed shard is being restarted, resuming its session if it had one.
    ShardRestarted {
        /// The shard.
        shard: ShardId,
        /// Restarts within the policy's window, this one included.
        attempt: u32,
        /// Whether it resumes its session (no identify).
        resuming: bool,
    },
    /// A shard stopped for good; the rest of the fleet goes on.
    ShardFailed {
        /// The shard.
        shard: ShardId,
        /// Why.
        failure: ShardFailure,
    },
    /// The gateway wants another shard count and this manager does not
    /// re-shard by itself (a shard range, or re-sharding disabled). The
    /// shard has stopped.
    ReshardingRequired {
        /// The shard that was refused.
        shard: ShardId,
        /// 4011 or 4010.
        reason: ShardFailureReason,
    },
    /// A re-sharding began: a fleet of `to` shards is starting.
    ReshardingStarted {
        /// The current total.
        from: u32,
        /// The new total.
        to: u32,
    },
    /// Delivery switched to the new fleet; the old one is stopping.
    Resharded {
        /// The old total.
        from: u32,
        /// The new total.
        to: u32,
    },
    /// A re-sharding attempt failed; `will_retry` tells whether another
    /// follows. The current fleet keeps running.
    ReshardingFailed {
        /// The total that was tried, if one was found.
        to: Option<u32>,
        /// What went wrong.
        error: String,
        /// Whether the manager tries again.
        will_retry: bool,
    },
    /// The whole fleet stopped; the manager is gone.
    Stopped(FleetStop),
}
