//! A faithful local emulator of Discord's Gateway and the REST routes around
//! it, so a bot (or a gateway library, in any language) is tested offline.
//!
//! One listener serves the gateway URL (`ws://127.0.0.1:PORT`, what
//! `/gateway` hands out), REST (`/api/v10/...`) and the control endpoints
//! (`/_mock/...`); a second one is READY's `resume_gateway_url`. It behaves
//! as Discord's documentation says
//! (<https://discord.com/developers/docs/events/gateway>): Hello,
//! heartbeats and ACKs, Identify with Discord's close codes, identify
//! buckets and the daily budget, READY and GUILD_CREATE for exactly the
//! shard's guilds, intents and message-content filtering, Resume with
//! replay, transport compression, member chunking, voice, soundboard and
//! channel info, and the REST routes bots use at login and every day, each
//! followed by its gateway event. It records what clients do, including
//! every rule they break, and injects faults on demand.
//!
//! The emulator is a judge, and an independent one: it reads what clients
//! send and applies Discord's rules with its own code, sharing none with
//! discore's client (`tests/independence.rs` keeps it so).
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
mod control_http;
mod error;
mod event;
mod gateway;
mod intents;
mod limits;
mod observe;
mod opcode;
mod payloads;
mod rate;
mod rest;
mod send_clock;
mod server;
mod session_index;
mod state;
mod store;
mod token;
mod traffic;
mod transport;
mod world;

pub use config::{BadSequenceBehaviour, MockConfig, RestRateLimit};
pub use control::{Fault, Target};
pub use error::{MockError, WaitTimeout};
pub use observe::{
    Compression, ConnectionEnd, ConnectionId, ConnectionRecord, HeartbeatRecord, IdentifyOutcome,
    IdentifyRecord, InteractionCallbackRecord, MAX_RECORDS, Observed, Quirk, ReceivedPayload,
    RefusedUpgrade, RestRecord, ResumeOutcome, ResumeRecord, SessionRecord, Violation,
    ViolationKind,
};
pub use send_clock::{MAX_SEND_TIMES, SendTimes, SentDispatch};
pub use server::{CreatedInteraction, FloodHandle, FloodReport, MockServer};
pub use state::Delivery;
pub use traffic::{TrafficConfig, TrafficMix};
pub use twilight_model::gateway::Intents;
