//! The errors of the cluster crate.

use std::fmt;

/// A cluster operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClusterError {
    /// Redis could not be reached at all.
    #[error("redis at {url} is not reachable")]
    RedisUnreachable {
        /// The URL, with any password removed.
        url: String,
        /// Why.
        #[source]
        source: redis::RedisError,
    },
    /// A Redis command failed.
    #[error("redis {operation} failed")]
    Redis {
        /// What was being done.
        operation: &'static str,
        /// Why.
        #[source]
        source: redis::RedisError,
    },
    /// A Redis command took longer than allowed.
    #[error("redis {operation} timed out")]
    RedisTimeout {
        /// What was being done.
        operation: &'static str,
    },
    /// NATS could not be reached.
    #[error("nats at {url} is not reachable")]
    NatsUnreachable {
        /// The URL.
        url: String,
        /// Why.
        #[source]
        source: async_nats::ConnectError,
    },
    /// A NATS or JetStream operation failed.
    #[error("nats {operation} failed: {detail}")]
    Nats {
        /// What was being done.
        operation: &'static str,
        /// Why.
        detail: String,
    },
    /// Data read from Redis or NATS could not be understood.
    #[error("corrupt {what}: {detail}")]
    Corrupt {
        /// What was read.
        what: &'static str,
        /// Why it is wrong.
        detail: String,
    },
    /// A configuration that cannot work.
    #[error("invalid cluster configuration: {0}")]
    InvalidConfig(String),
    /// `GET /gateway/bot` failed.
    #[error("gateway discovery failed")]
    Discovery(#[source] discore_http::HttpError),
    /// Starting the shards of a lease failed.
    #[error("shard manager failed")]
    Manager(#[from] discore_manager::ManagerError),
    /// The node or event source stopped.
    #[error("the cluster node stopped")]
    Stopped,
    /// A re-sharding was not started.
    #[error("re-sharding refused: {0}")]
    ReshardRefused(String),
}

impl ClusterError {
    pub(crate) fn redis(operation: &'static str) -> impl FnOnce(redis::RedisError) -> Self {
        move |source| Self::Redis { operation, source }
    }

    pub(crate) fn nats(operation: &'static str) -> impl FnOnce(&dyn fmt::Display) -> Self {
        move |error| Self::Nats {
            operation,
            detail: error.to_string(),
        }
    }
}

/// A command sent over the event bus was not queued by its shard.
#[derive(Clone, Debug, Eq, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum RemoteCommandError {
    /// No process runs the shard (nobody listens on its command subject).
    #[error("no process runs shard {shard}")]
    NoOwner {
        /// The shard id.
        shard: u32,
    },
    /// The owner did not answer in time.
    #[error("shard {shard} did not answer in time")]
    Timeout {
        /// The shard id.
        shard: u32,
    },
    /// The shard refused the command.
    #[error("shard {shard} refused the command: {reason}")]
    Refused {
        /// The shard id.
        shard: u32,
        /// The shard's reason.
        reason: String,
    },
    /// The command could not be encoded.
    #[error("the command cannot be encoded: {0}")]
    Encode(String),
    /// NATS failed.
    #[error("nats request failed: {0}")]
    Transport(String),
}

#[cfg(test)]
mod tests {
    use super::ClusterError;
    use discore_protocol::ErrorChain;

    #[test]
    fn messages_do_not_repeat_their_sources() {
        let redis = || redis::RedisError::from((redis::ErrorKind::Io, "connection refused"));
        let errors = [
            ClusterError::RedisUnreachable {
                url: "redis://127.0.0.1:1".into(),
                source: redis(),
            },
            ClusterError::Redis {
                operation: "EVALSHA",
                source: redis(),
            },
            ClusterError::NatsUnreachable {
                url: "nats://127.0.0.1:1".into(),
                source: async_nats::ConnectError::from(async_nats::ConnectErrorKind::TimedOut),
            },
            ClusterError::Discovery(discore_http::HttpError::Unauthorized),
            ClusterError::Manager(discore_manager::ManagerError::Discovery(
                discore_http::HttpError::Unauthorized,
            )),
        ];
        for error in errors {
            let messages = ErrorChain(&error).messages();
            assert!(messages.len() > 1, "{messages:?} has its source");
            for pair in messages.windows(2) {
                assert!(!pair[0].contains(&pair[1]), "{messages:?}");
            }
        }
    }
}
