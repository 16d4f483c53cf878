//! An admin HTTP server for discore: Prometheus metrics and a live shard
//! status page.
//!
//! [`AdminServer`] serves, on `127.0.0.1:9299` by default:
//!
//! - `/metrics`: every shard's state, heartbeat latency histogram, events by
//!   type, reconnects by kind, identifies, close codes, command queue,
//!   rate-limit waits and inbound bytes, in the OpenMetrics text format
//!   that Prometheus scrapes, encoded by `prometheus-client`;
//! - `/`: a page with one tile per shard, coloured by state, that refreshes
//!   itself (no external assets; readable at 1,000 shards);
//! - `/api/shards`: the page's data as JSON.
//!
//! Its data comes from a [`StatusSource`]: [`ManagerSource`] for a
//! `ShardManager`, [`ShardSource`] for shards without one, or any closure.
//! A bearer token can be required ([`AdminConfig::bearer_token`]).
//!
//! A bot that exports metrics of its own registers [`FleetMetrics`], a
//! `prometheus-client` collector, in its own registry instead, and needs
//! no admin server for them. The guide is `docs/operations.md`.
//!
//! ```no_run
//! use discore_admin::{AdminConfig, AdminServer, ManagerSource};
//! use discore_gateway::{GatewayEvent, Intents, Token};
//! use discore_manager::{ManagerConfig, ShardManager};
//! # use actix::prelude::*;
//! # struct Bot;
//! # impl Actor for Bot { type Context = Context<Self>; }
//! # impl Handler<GatewayEvent> for Bot {
//! #     type Result = ();
//! #     fn handle(&mut self, _: GatewayEvent, _: &mut Context<Self>) {}
//! # }
//!
//! #[actix::main]
//! async fn main() -> Result<(), Box<dyn std::error::Error>> {
//!     let token = Token::new(std::env::var("DISCORD_TOKEN")?)?;
//!     let manager = ShardManager::start(
//!         ManagerConfig::new(token, Intents::GUILDS),
//!         Bot.start().recipient(),
//!     )
//!     .await?;
//!     let admin = AdminServer::start(AdminConfig::new(), ManagerSource::new(manager))?;
//!     println!("status page: {}", admin.url());
//!     actix_rt::signal::ctrl_c().await?;
//!     Ok(())
//! }
//! ```

mod config;
mod error;
mod identify;
pub mod metrics;
mod server;
mod snapshot;
mod source;
mod view;

pub use config::{AdminConfig, DEFAULT_ADDR};
pub use error::{AdminError, SourceError};
pub use identify::{IDENTIFY_WAIT_BUCKETS, IdentifyMeter, MeteredIdentifyQueue};
pub use metrics::FleetMetrics;
/// The `prometheus-client` crate [`FleetMetrics`] is a collector of, at the
/// version discore builds with: a bot's registry must be of this one.
pub use prometheus_client;
pub use server::AdminServer;
pub use snapshot::{
    FleetSnapshot, IdentifySnapshot, LatencySnapshot, ReshardSnapshot, ShardSnapshot, TileState,
};
pub use source::{ManagerSource, ShardSource, SnapshotFuture, StatusSource};
