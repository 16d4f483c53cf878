//! discore: an actor-model framework for Discord's Gateway, on actix.
//!
//! A bot implements `Handler<GatewayEvent>` in its own actor and subscribes
//! it to a [`ShardManager`] (a supervised fleet) or a single [`Shard`];
//! discore keeps the shards connected, identified within Discord's rate
//! limits and resumed after every hiccup. This crate is the one door: every
//! type a bot uses has exactly one path here.
//!
//! - The root: shards, the shard manager and its configuration, events,
//!   commands, errors.
//! - [`identify`]: the identify queue, for sharing it between processes or
//!   measuring it.
//! - [`session_store`]: where sessions wait between two processes.
//! - [`http`]: the REST client the manager asks `GET /gateway/bot` with.
//! - [`protocol`]: the wire layer (opcodes, close codes, limits, frames).
//! - [`model`]: twilight-model, Discord's types.
//! - `admin` (feature `admin`): the admin HTTP server, with Prometheus
//!   metrics and a live shard status page.
//! - `progress` (feature `progress`): fleet start and re-sharding as an
//!   indicatif progress bar.
//!
//! ```no_run
//! use actix::prelude::*;
//! use discore::{DispatchEvent, GatewayEvent, Intents, ManagerConfig, ShardManager, Token, WaitUntilReady};
//!
//! struct Bot;
//! impl Actor for Bot {
//!     type Context = Context<Self>;
//! }
//! impl Handler<GatewayEvent> for Bot {
//!     type Result = ();
//!     fn handle(&mut self, event: GatewayEvent, _: &mut Context<Self>) {
//!         if let Some(DispatchEvent::MessageCreate(message)) = event.typed() {
//!             println!("shard {}: {}", event.shard, message.content);
//!         }
//!     }
//! }
//!
//! #[actix::main]
//! async fn main() -> Result<(), Box<dyn std::error::Error>> {
//!     let token = Token::new(std::env::var("DISCORD_TOKEN")?)?;
//!     let intents = Intents::GUILDS | Intents::GUILD_MESSAGES | Intents::MESSAGE_CONTENT;
//!     let manager = ShardManager::start(ManagerConfig::new(token, intents), Bot.start().recipient()).await?;
//!     println!("ready: {}", manager.send(WaitUntilReady).await??);
//!     actix_rt::signal::ctrl_c().await?;
//!     Ok(())
//! }
//! ```
//!
//! The guides are in `docs/`: `shards.md` for one shard, `shard-manager.md`
//! for a fleet, `protocol.md` for the Gateway rules discore follows.

#[cfg(feature = "admin")]
pub use discore_admin as admin;
#[cfg(feature = "progress")]
pub mod progress;
pub use twilight_model as model;

// One shard.
pub use discore_gateway::{
    Backoff, Bytes, Command, CommandError, Compression, DISCORD_GATEWAY_URL, Dispatch,
    DispatchEvent, EncodedCommand, EventFilter, EventType, ExitCause, GatewayEvent, GetShardStatus,
    Latency, Lifecycle, RawDispatch, RawReason, RequestGuildMembers, SendCommand, Shard,
    ShardConfig, ShardExited, ShardLifecycle, ShardStartError, ShardState, ShardStatus, Shutdown,
    StopMode, Subscribe, SubscribeLifecycle, Unsubscribe, tls_with_roots,
};
pub use discore_protocol::{
    ErrorChain, Intents, InvalidToken, Session, ShardFailureReason, ShardId, Token,
};

// A fleet.
pub use discore_manager::{
    AdoptRefusal, AdoptShard, Adopted, CommandTarget, ConfigError, DiscoveryConfig, FleetEvent,
    FleetProgress, FleetStatus, FleetStop, GetFleetStatus, IdentifyConfig, IdentifyLimits,
    IdentifyQueueChoice, ManagerConfig, ManagerError, Placement, ReleaseShard, Released, Reshard,
    ReshardConfig, ReshardMode, ReshardRefusal, ReshardingStatus, RestartPolicy, RouteError,
    SendCommandTo, SessionConfig, ShardCount, ShardFailure, ShardManager, ShardReport,
    ShardRunState, ShutdownFleet, ShutdownReport, SubscribeFleet, SupervisionConfig,
    WaitUntilReady,
};

pub use discore_manager::session_store;

/// The identify queue every shard asks before identifying: one Identify
/// per bucket per window and the daily budget (`docs/protocol.md`,
/// "Identify rate limits"). The manager builds an in-memory one unless
/// [`IdentifyConfig::queue`] gives it another, such as a queue shared by
/// several processes; any implementation must pass
/// [`identify::conformance::run`].
pub mod identify {
    pub use discore_gateway::{
        ConnectTurn, ConnectTurnFuture, IDENTIFY_MARGIN, IdentifyFuture, IdentifyPermit,
        IdentifyQueue, InMemoryIdentifyQueue, PERMIT_ANSWER_TIMEOUT, PermitReport,
        SessionStartLimit, default_queue_for,
    };
    pub use discore_manager::identify::conformance;
}

/// The REST client the manager discovers the gateway with (`GET
/// /gateway/bot`). Its answers are twilight-model types, under
/// [`model`].
pub mod http {
    pub use discore_http::{DISCORD_API_URL, HttpError, RestClient, RestClientBuilder};
}

/// The Gateway wire layer, IO-free: the envelope, opcodes, close codes with
/// the policy that follows each, the limits Discord enforces and the frames
/// a client sends (`docs/protocol.md`).
pub mod protocol {
    pub use discore_protocol::{
        CloseAction, CloseCode, Envelope, EnvelopeError, OpCode, PayloadData, commands, inbound,
        intents, limits, shard_for_guild,
    };
}
