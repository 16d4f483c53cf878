//! The `ShardManager`: a supervised fleet of Discord Gateway shards.
//!
//! [`ShardManager::start`] asks Discord how many shards the bot needs
//! (`GET /gateway/bot`), starts them on arbiters under the identify queue
//! (buckets of `max_concurrency`, in order, within the daily budget) and
//! delivers every event to the recipients subscribed with a filter. It
//! restarts crashed shards from their sessions (so they resume), stops a
//! shard or the fleet on fatal close codes, re-shards without downtime when
//! Discord asks for more shards, routes commands by guild, reports progress
//! and readiness, and on shutdown hands sessions off to a
//! [`SessionStore`](session_store::SessionStore)
//! so the next process resumes them. The guide is `docs/shard-manager.md`.
//!
//! ```no_run
//! use actix::prelude::*;
//! use discore_gateway::{GatewayEvent, Intents, Token};
//! use discore_manager::{ManagerConfig, ShardManager, WaitUntilReady};
//!
//! struct Bot;
//! impl Actor for Bot {
//!     type Context = Context<Self>;
//! }
//! impl Handler<GatewayEvent> for Bot {
//!     type Result = ();
//!     fn handle(&mut self, event: GatewayEvent, _: &mut Context<Self>) {
//!         println!("shard {}: {}", event.shard, event.name());
//!     }
//! }
//!
//! #[actix::main]
//! async fn main() -> Result<(), Box<dyn std::error::Error>> {
//!     let token = Token::new(std::env::var("DISCORD_TOKEN")?)?;
//!     let bot = Bot.start();
//!     let manager = ShardManager::start(
//!         ManagerConfig::new(token, Intents::GUILDS | Intents::GUILD_MESSAGES),
//!         bot.recipient(),
//!     )
//!     .await?;
//!     println!("ready: {}", manager.send(WaitUntilReady).await??);
//!     actix_rt::signal::ctrl_c().await?;
//!     Ok(())
//! }
//! ```

mod align;
mod arbiters;
mod config;
mod error;
mod event;
pub mod identify;
mod intensity;
mod manager;
mod relay;
mod routing;
pub mod session_store;
mod status;

pub use config::{
    DiscoveryConfig, IdentifyConfig, IdentifyLimits, IdentifyQueueChoice, ManagerConfig, Placement,
    ReshardConfig, ReshardMode, SessionConfig, ShardCount, SupervisionConfig,
};
pub use error::{AdoptRefusal, ConfigError, ManagerError, ReshardRefusal, RouteError};
pub use event::{FleetEvent, FleetProgress, FleetStop, ShardFailure};
pub use intensity::RestartPolicy;
pub use manager::{
    AdoptShard, Adopted, GetFleetStatus, ReleaseShard, Released, Reshard, SendCommandTo,
    ShardManager, ShutdownFleet, ShutdownReport, SubscribeFleet, WaitUntilReady,
};
pub use routing::CommandTarget;
pub use status::{FleetStatus, ReshardingStatus, ShardReport, ShardRunState};
