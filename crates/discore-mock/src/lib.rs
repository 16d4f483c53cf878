//! A faithful local emulator of Discord's Gateway and the REST routes around
//! it, so a bot (or a gateway library) is tested offline.
//!
//! One port serves the WebSocket gateway (`/`, and `/resume/` as READY's
//! `resume_gateway_url`) and REST (`/api/v10/...`). The emulator follows the
//! Gateway protocol as `docs/protocol.md` describes it: Hello, heartbeats and ACKs,
//! Identify validation with Discord's close codes, identify buckets and the
//! daily budget, READY and GUILD_CREATE for exactly the shard's guilds,
//! intents and message-content filtering, Resume with replay, transport
//! compression, member chunking, voice, soundboard and channel info. It
//! records what clients do, including every protocol violation, and injects
//! faults on demand.
//!
//! ```
//! use discore_mock::{MockConfig, MockServer};
//! use std::time::Duration;
//!
//! # actix_rt::System::new().block_on(async {
//! let mock = MockServer::start(
//!     MockConfig::new()
//!         .guilds(4)
//!         .heartbeat_interval(Duration::from_millis(100)),
//! )
//! .await?;
//! println!("gateway {} rest {}", mock.gateway_url(), mock.rest_url());
//! // ... point the bot at mock.rest_url() / mock.gateway_url() ...
//! mock.wait_until(Duration::from_millis(10), |seen| seen.identifies_total() == 0)
//!     .await
//!     .expect("nothing identified yet");
//! assert!(mock.observed().violations.is_empty());
//! mock.stop().await;
//! # Ok::<(), discore_mock::MockError>(())
//! # }).expect("runs");
//! ```
//!
//! See `docs/emulator.md` in the repository for the full guide.

// GUILD_CREATE is one large `json!` literal.
#![recursion_limit = "256"]

mod config;
mod control;
mod error;
mod event;
mod gateway;
mod observe;
mod payloads;
mod rest;
mod server;
mod state;
mod traffic;
mod transport;
mod world;

pub use config::{BadSequenceBehaviour, MockConfig, RestRateLimit};
pub use control::{Fault, Target};
pub use discore_protocol::Intents;
pub use error::{MockError, WaitTimeout};
pub use observe::{
    Compression, ConnectionEnd, ConnectionId, ConnectionRecord, HeartbeatRecord, IdentifyOutcome,
    IdentifyRecord, InteractionCallbackRecord, MAX_RECORDS, Observed, ReceivedPayload,
    RefusedUpgrade, RestRecord, ResumeOutcome, ResumeRecord, SessionRecord, Violation,
    ViolationKind,
};
pub use server::{CreatedInteraction, FloodHandle, FloodReport, MockServer};
pub use state::Delivery;
pub use traffic::{TrafficConfig, TrafficMix};
