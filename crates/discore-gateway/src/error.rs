//! Why starting a shard failed.

use discore_protocol::ShardFailureReason;
use std::fmt;

/// Starting a shard failed.
#[derive(Clone, Debug, Eq, PartialEq)]
#[non_exhaustive]
pub enum ShardStartError {
    /// The gateway refused the shard for good.
    Failed(ShardFailureReason),
    /// The gateway URL is not a `ws://` or `wss://` URL.
    InvalidGatewayUrl(String),
    /// Every one of this many connection attempts failed before READY.
    Unreachable {
        /// Attempts made.
        attempts: u32,
    },
    /// The shard was stopped before its first READY.
    Stopped,
    /// The Identify this configuration makes (its presence and client
    /// properties) is over the gateway's 4096-byte limit; the gateway would
    /// close every connection with 4002.
    IdentifyTooLarge {
        /// The encoded size in bytes.
        size: usize,
    },
}

impl ShardStartError {
    /// The failure reason, when the gateway refused the shard.
    pub const fn reason(&self) -> Option<ShardFailureReason> {
        match self {
            Self::Failed(reason) => Some(*reason),
            _ => None,
        }
    }
}

impl fmt::Display for ShardStartError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Failed(reason) => write!(f, "the gateway refused the shard: {reason}"),
            Self::InvalidGatewayUrl(reason) => write!(f, "invalid gateway url: {reason}"),
            Self::Unreachable { attempts } => {
                write!(f, "the gateway could not be reached in {attempts} attempts")
            }
            Self::Stopped => f.write_str("the shard was stopped before it was ready"),
            Self::IdentifyTooLarge { size } => write!(
                f,
                "the identify payload is {size} bytes, over the gateway's 4096-byte limit"
            ),
        }
    }
}

impl std::error::Error for ShardStartError {}
