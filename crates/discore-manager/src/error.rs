//! Why starting a fleet, or routing a command, failed.

use crate::event::ShardFailure;
use discore_gateway::{CommandError, ShardFailureReason};
use discore_http::HttpError;
use discore_protocol::ShardId;
use std::ops::Range;

/// Starting or running the fleet failed.
#[derive(Clone, Debug, Eq, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum ManagerError {
    /// `GET /gateway/bot` failed (a rejected token is
    /// [`HttpError::Unauthorized`]).
    #[error("asking discord for the gateway failed: {0}")]
    Discovery(#[from] HttpError),
    /// The configuration cannot work.
    #[error("invalid manager configuration: {0}")]
    InvalidConfig(String),
    /// The fleet stopped because every shard would fail the same way (a
    /// rejected token, disallowed intents).
    #[error("the fleet stopped: {0}")]
    Fatal(ShardFailureReason),
    /// A shard stopped for good, so the fleet cannot become ready.
    #[error("shard {shard} stopped for good: {failure}")]
    ShardFailed {
        /// The shard.
        shard: ShardId,
        /// Why.
        failure: ShardFailure,
    },
    /// The manager was shut down.
    #[error("the manager has stopped")]
    Stopped,
}

/// A command could not be routed or queued.
#[derive(Clone, Debug, Eq, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum RouteError {
    /// The shard belongs to another process.
    #[error("shard {shard} is not run by this manager (it runs {owned:?})")]
    NotOwned {
        /// The shard the command was for.
        shard: u32,
        /// The shard ids this manager runs.
        owned: Range<u32>,
    },
    /// The shard is restarting or has failed.
    #[error("shard {shard} is not running")]
    Unavailable {
        /// The shard.
        shard: u32,
    },
    /// The shard refused the command.
    #[error("shard {shard} refused the command: {error}")]
    Refused {
        /// The shard.
        shard: u32,
        /// Why.
        error: CommandError,
    },
    /// The manager is stopping.
    #[error("the manager is stopping")]
    Stopping,
}
