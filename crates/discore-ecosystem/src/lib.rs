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

/// The guide's code blocks, compiled as doc tests so they stay true.
#[cfg(doctest)]
#[doc = include_str!("../../../docs/ecosystem.md")]
mod guide {}
