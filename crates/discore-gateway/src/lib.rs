//! One Discord Gateway connection as an actix actor.
//!
//! A [`Shard`] connects, identifies (or resumes a saved [`Session`]),
//! heartbeats, reconnects and resumes by itself, and delivers every dispatch
//! to the subscribed actors as a typed [`GatewayEvent`]. The protocol rules
//! live in an IO-free state machine that takes time as input; the actor only
//! does IO.
//!
//! ```no_run
//! use actix::prelude::*;
//! use discore_gateway::{EventFilter, GatewayEvent, Shard, ShardConfig};
//! use discore_protocol::{Intents, ShardId, Token};
//!
//! struct Bot;
//! impl Actor for Bot {
//!     type Context = Context<Self>;
//! }
//! impl Handler<GatewayEvent> for Bot {
//!     type Result = ();
//!     fn handle(&mut self, event: GatewayEvent, _: &mut Context<Self>) {
//!         println!("shard {} got {}", event.shard, event.name());
//!     }
//! }
//!
//! #[actix::main]
//! async fn main() -> Result<(), Box<dyn std::error::Error>> {
//!     let token = Token::new(std::env::var("DISCORD_TOKEN")?)?;
//!     let bot = Bot.start();
//!     let config = ShardConfig::new(Intents::GUILDS | Intents::GUILD_MESSAGES);
//!     let _shard = Shard::new(token, ShardId::new(0, 1), config)
//!         .subscribe(bot.recipient(), EventFilter::all())
//!         .start()
//!         .await?;
//!     actix_rt::signal::ctrl_c().await?;
//!     Ok(())
//! }
//! ```

mod backoff;
mod command;
mod config;
mod delivery;
mod error;
mod event;
mod identify;
// The inflater and the protocol state machine are public only with the
// `unstable-internals` feature, for the fuzz targets: not the supported API.
#[cfg(feature = "unstable-internals")]
pub mod inflate;
#[cfg(not(feature = "unstable-internals"))]
mod inflate;
#[cfg(feature = "unstable-internals")]
pub mod machine;
#[cfg(not(feature = "unstable-internals"))]
mod machine;
mod ratelimit;
mod shard;
mod transport;

pub use backoff::Backoff;
/// The shared byte buffer of [`GatewayEvent::raw_data_shared`].
pub use bytes::Bytes;

pub use command::{Command, CommandError, EncodedCommand, RequestGuildMembers, SendCommand};
pub use config::{DISCORD_GATEWAY_URL, ShardConfig};
pub use discore_protocol::{Intents, Session, ShardFailureReason, ShardId, Token};
pub use error::ShardStartError;
pub use event::{Dispatch, EventFilter, GatewayEvent, RawDispatch, RawReason, ShardLifecycle};
pub use identify::{
    ConnectTurn, ConnectTurnFuture, IDENTIFY_MARGIN, IdentifyFuture, IdentifyPermit, IdentifyQueue,
    InMemoryIdentifyQueue, PERMIT_ANSWER_TIMEOUT, PermitReport, SessionStartLimit,
    default_queue_for,
};
pub use inflate::Compression;
pub use machine::{Latency, Lifecycle, ShardState, StopMode};
pub use shard::{
    ExitCause, GetShardStatus, Shard, ShardExited, ShardStatus, Shutdown, Subscribe,
    SubscribeLifecycle, Unsubscribe,
};
pub use transport::tls_with_roots;
pub use twilight_model::gateway::event::{DispatchEvent, EventType};
