//! The numbers Discord enforces (`docs/protocol.md`: "Payloads", "Rate
//! limits", "Sharding", "Commands").

use std::time::Duration;

/// Largest payload a client may send; a larger one closes with 4002.
pub const MAX_CLIENT_PAYLOAD_BYTES: usize = 4096;

/// Payloads a client may send per [`SEND_WINDOW`] on one connection; one more
/// closes with 4008.
pub const SEND_LIMIT: u32 = 120;
/// The window of [`SEND_LIMIT`].
pub const SEND_WINDOW: Duration = Duration::from_secs(60);

/// Presence updates a client may send per [`PRESENCE_WINDOW`].
pub const PRESENCE_LIMIT: u32 = 5;
/// The window of [`PRESENCE_LIMIT`].
pub const PRESENCE_WINDOW: Duration = Duration::from_secs(20);

/// One identify per `shard_id % max_concurrency` bucket per this window.
pub const IDENTIFY_WINDOW: Duration = Duration::from_secs(5);

/// Guilds one shard may hold before the gateway closes with 4011.
pub const MAX_GUILDS_PER_SHARD: u64 = 2500;

/// Members in one GUILD_MEMBERS_CHUNK at most.
pub const MEMBERS_PER_CHUNK: usize = 1000;
/// Members a prefix query or a `user_ids` request returns at most.
pub const MAX_QUERY_MEMBERS: usize = 100;
/// Longest valid Request Guild Members nonce, in bytes.
pub const MAX_NONCE_BYTES: usize = 32;
/// One all-members request per guild per this window; more get RATE_LIMITED.
pub const ALL_MEMBERS_WINDOW: Duration = Duration::from_secs(30);

/// `large_threshold` bounds accepted in Identify.
pub const LARGE_THRESHOLD_RANGE: std::ops::RangeInclusive<u64> = 50..=250;

/// The Gateway API version discore speaks.
pub const API_VERSION: u8 = 10;
