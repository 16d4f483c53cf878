//! Why starting a fleet, or routing a command, failed.

use crate::{ReshardMode, event::ShardFailure};
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
    #[error(
        "asking Discord for the gateway (GET /gateway/bot) failed, so the fleet did not start: fix the cause that follows"
    )]
    Discovery(#[from] HttpError),
    /// The configuration cannot work.
    #[error("invalid manager configuration: {0}")]
    InvalidConfig(ConfigError),
    /// A [`Reshard`](crate::Reshard) request this manager cannot carry out.
    #[error("cannot re-shard: {0}")]
    ReshardRefused(ReshardRefusal),
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
    /// An [`AdoptShard`](crate::AdoptShard) request this manager cannot
    /// carry out.
    #[error("cannot adopt shard {shard}: {refusal}")]
    AdoptRefused {
        /// The shard.
        shard: ShardId,
        /// Why.
        refusal: AdoptRefusal,
    },
    /// The manager was shut down.
    #[error("the manager has stopped: start a new ShardManager to go on")]
    Stopped,
}

/// Why an [`AdoptShard`](crate::AdoptShard) request was refused.
#[derive(Clone, Copy, Debug, Eq, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum AdoptRefusal {
    /// The shard's total is not the serving fleet's.
    #[error("the fleet has {fleet} shards in all")]
    OtherTotal {
        /// The serving fleet's total.
        fleet: u32,
    },
    /// The manager is re-sharding by itself; its fleets are its own.
    #[error("the manager is re-sharding")]
    Resharding,
    /// A release of the shard is under way; adopt it once that answered.
    #[error("it is being released")]
    Releasing,
}

/// Why a [`ManagerConfig`](crate::ManagerConfig) cannot work.
#[derive(Clone, Debug, Eq, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// `ShardCount::Fixed(0)`.
    #[error("a fleet needs at least one shard: use ShardCount::Auto, or a count above 0")]
    NoShards,
    /// A `ShardCount::Range` that is empty or exceeds its total.
    #[error(
        "shard range {ids:?} of {total} is empty or exceeds the total: pick ids from 0 to {total} (excluded)"
    )]
    RangeOutsideTotal {
        /// The shard ids.
        ids: Range<u32>,
        /// The total.
        total: u32,
    },
    /// A `ShardCount::Range` with a re-sharding mode other than
    /// [`ReshardMode::Disabled`]: a process that runs part of a bot cannot
    /// re-shard it alone.
    #[error(
        "shards {ids:?} of {total} are part of a bot, which re-shards as a whole: \
         a range needs ReshardMode::Disabled, not {mode:?}"
    )]
    RangeReshards {
        /// The shard ids.
        ids: Range<u32>,
        /// The total.
        total: u32,
        /// The mode configured.
        mode: ReshardMode,
    },
    /// The gateway URL is not a `ws://` or `wss://` URL with a host.
    #[error(
        "gateway url {0} is not a ws:// or wss:// url: give one with a host, such as wss://gateway.discord.gg"
    )]
    GatewayUrl(String),
}

/// Why a [`Reshard`](crate::Reshard) request was refused.
#[derive(Clone, Debug, Eq, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum ReshardRefusal {
    /// The manager runs part of the bot (a `ShardCount::Range`).
    #[error(
        "this manager runs shards {ids:?} of {total}, part of a bot that re-shards as a whole: \
         restart every process of the bot with the new total"
    )]
    PartOfBot {
        /// The shard ids it runs.
        ids: Range<u32>,
        /// The total.
        total: u32,
    },
    /// The fleet already has that many shards, or the count is 0.
    #[error(
        "the fleet has {current} shards, so {requested} is not a new count: ask for another count above 0"
    )]
    NotANewCount {
        /// The fleet's count.
        current: u32,
        /// The count asked for.
        requested: u32,
    },
}

/// A command could not be routed or queued.
#[derive(Clone, Debug, Eq, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum RouteError {
    /// The shard belongs to another process.
    #[error(
        "shard {shard} is not run by this manager (it runs {owned:?}): send it to the process that runs it"
    )]
    NotOwned {
        /// The shard the command was for.
        shard: u32,
        /// The shard ids this manager runs: from the lowest to the highest
        /// (adopted shards may leave gaps).
        owned: Range<u32>,
    },
    /// The shard is restarting or has failed.
    #[error("shard {shard} is not running (restarting or failed): retry once it is back")]
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
    #[error("the manager is stopping: send to the fleet that replaces it")]
    Stopping,
}

#[cfg(test)]
mod tests {
    use super::{ManagerError, RouteError};
    use discore_gateway::CommandError;
    use discore_http::HttpError;
    use discore_protocol::ErrorChain;

    #[test]
    fn messages_do_not_repeat_their_sources() {
        let errors: [&(dyn std::error::Error + 'static); 2] = [
            &ManagerError::Discovery(HttpError::Unauthorized),
            &RouteError::Refused {
                shard: 1,
                error: CommandError::ShardStopped,
            },
        ];
        for error in errors {
            let messages = ErrorChain(error).messages();
            for pair in messages.windows(2) {
                assert!(!pair[0].contains(&pair[1]), "{messages:?}");
            }
        }
        let discovery = ErrorChain(&ManagerError::Discovery(HttpError::Unauthorized)).messages();
        assert_eq!(discovery.len(), 2, "the HTTP error is the source");
    }
}
