//! The numbers Discord enforces on a gateway client, from its documentation
//! (<https://discord.com/developers/docs/events/gateway>,
//! <https://discord.com/developers/docs/events/gateway-events>).
//!
//! The emulator's own copy: it judges clients by these, so it does not take
//! them from the client it judges. Every one can be scaled down through
//! [`MockConfig`](crate::MockConfig) where a test needs it.

use std::{ops::RangeInclusive, time::Duration};

/// Largest payload a client may send; a larger one closes with 4002
/// ("Gateway Events": "payloads ... must not exceed 4096 bytes").
pub(crate) const MAX_CLIENT_PAYLOAD_BYTES: usize = 4096;

/// Payloads a client may send per [`SEND_WINDOW`] on one connection; one
/// more closes with 4008 ("Rate Limiting": 120 gateway events per 60 s).
pub(crate) const SEND_LIMIT: u32 = 120;
/// The window of [`SEND_LIMIT`].
pub(crate) const SEND_WINDOW: Duration = Duration::from_secs(60);

/// Presence updates a client may send per [`PRESENCE_WINDOW`] ("Activity
/// Object": "update their game status 5 times per 20 seconds").
pub(crate) const PRESENCE_LIMIT: u32 = 5;
/// The window of [`PRESENCE_LIMIT`].
pub(crate) const PRESENCE_WINDOW: Duration = Duration::from_secs(20);

/// One Identify per `shard_id % max_concurrency` bucket per this window
/// ("Session Start Limit": `max_concurrency` identifies per 5 seconds).
pub(crate) const IDENTIFY_WINDOW: Duration = Duration::from_secs(5);

/// Guilds one shard may hold before Identify closes with 4011.
pub(crate) const MAX_GUILDS_PER_SHARD: u64 = 2500;

/// Members in one GUILD_MEMBERS_CHUNK at most.
pub(crate) const MEMBERS_PER_CHUNK: usize = 1000;
/// Members a prefix query or a `user_ids` request returns at most.
pub(crate) const MAX_QUERY_MEMBERS: usize = 100;
/// Longest valid Request Guild Members nonce, in bytes.
pub(crate) const MAX_NONCE_BYTES: usize = 32;
/// One all-members Request Guild Members per guild per this window; more
/// get a RATE_LIMITED dispatch.
pub(crate) const ALL_MEMBERS_WINDOW: Duration = Duration::from_secs(30);

/// `large_threshold` values Identify accepts.
pub(crate) const LARGE_THRESHOLD_RANGE: RangeInclusive<u64> = 50..=250;
/// `large_threshold` when Identify has none.
pub(crate) const DEFAULT_LARGE_THRESHOLD: u64 = 50;

/// The API version a connection without a valid `v` is answered in (it is
/// closed with 4012 right after Hello).
pub(crate) const API_VERSION: u8 = 10;

/// Longest message content a bot may send.
pub(crate) const MAX_MESSAGE_CONTENT: usize = 2000;
