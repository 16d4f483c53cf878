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

/// One line each, ending in what to do next.
impl fmt::Display for ShardStartError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Failed(reason) => write!(f, "the gateway refused the shard: {reason}"),
            Self::InvalidGatewayUrl(reason) => write!(
                f,
                "invalid gateway url ({reason}): give a ws:// or wss:// url with a host, \
                 such as wss://gateway.discord.gg"
            ),
            Self::Unreachable { attempts } => write!(
                f,
                "the gateway could not be reached in {attempts} attempts: \
                 check the network and the gateway url"
            ),
            Self::Stopped => f.write_str(
                "the shard was stopped before it was ready: start a new one if the stop was not meant",
            ),
            Self::IdentifyTooLarge { size } => write!(
                f,
                "the identify payload is {size} bytes, over the gateway's 4096-byte limit: \
                 shorten the presence or the client properties"
            ),
        }
    }
}

impl std::error::Error for ShardStartError {}
