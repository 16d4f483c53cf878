//! discore with the Rust Discord ecosystem, as examples and their tests.
//!
//! discore delivers twilight-model types, so the rest of the ecosystem
//! works on its events unchanged:
//!
//! - [`cache`]: every event into `twilight-cache-inmemory`, and what a new
//!   session means for it;
//! - [`ping`]: a command answered through `twilight-http`, on the emulator
//!   or on Discord by configuration alone;
//! - [`slash`]: slash commands, answered with twilight-http's interaction
//!   client;
//! - voice with songbird: the `discore-songbird` crate, shown by the
//!   `voice` example;
//! - [`setup`]: the one configuration (token, REST base URL) both discore
//!   and twilight-http take.
//!
//! Each example runs with one command, on the embedded emulator unless
//! `DISCORD_TOKEN` is set: `cargo run -p discore-ecosystem --example
//! cache_bot` (also `rest_bot`, `slash_command`, `voice`). The guide is
//! `docs/ecosystem.md`.

pub mod cache;
pub mod ping;
pub mod setup;
pub mod slash;

/// What a bot that answers over REST has done: answers it started (decided
/// when the event was handled), and how those requests ended.
#[derive(Clone, Copy, Debug, Default, Eq, PartialEq)]
pub struct Answers {
    /// Requests started.
    pub started: u64,
    /// Requests that succeeded.
    pub answered: u64,
    /// Requests that failed.
    pub failed: u64,
}

/// Asks a bot that answers over REST ([`ping::PingBot`],
/// [`slash::SlashBot`]) what it has answered so far.
#[derive(Clone, Copy, Debug, actix::Message)]
#[rtype(result = "Answers")]
pub struct GetAnswers;

impl Answers {
    /// Whether every started request has ended.
    pub fn settled(&self) -> bool {
        self.answered + self.failed == self.started
    }
}

/// The guide's code blocks, compiled as doc tests so they stay true.
#[cfg(doctest)]
#[doc = include_str!("../../../docs/ecosystem.md")]
mod guide {}
