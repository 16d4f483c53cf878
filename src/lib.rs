//! discore: an actor-model framework for Discord's Gateway, on actix.
//!
//! A bot implements `Handler<GatewayEvent>` in its own actor and subscribes
//! it to shards; discore keeps them connected, identified within Discord's
//! rate limits and resumed after every hiccup. The guides are in `docs/`.
//!
//! - [`manager`]: the `ShardManager`, a supervised fleet of shards.
//! - [`gateway`]: one connection, the `Shard` actor.
//! - [`http`]: the few REST calls the gateway needs (`GET /gateway/bot`).
//! - [`protocol`]: the wire layer shared with the emulator.
//! - [`model`]: twilight-model, Discord's types.
//! - `admin` (feature `admin`): the admin HTTP server, with Prometheus
//!   metrics and a live shard status page.

#[cfg(feature = "admin")]
pub use discore_admin as admin;
pub use discore_gateway as gateway;
pub use discore_http as http;
pub use discore_manager as manager;
pub use discore_protocol as protocol;
pub use twilight_model as model;

pub use discore_gateway::{
    Command, EventFilter, GatewayEvent, Intents, SendCommand, Shard, ShardConfig, ShardId,
    ShardLifecycle, ShardStartError, Token,
};
pub use discore_manager::{ManagerConfig, ShardManager};

/// The guides' code blocks, compiled as doc tests so they stay true.
#[cfg(doctest)]
mod guides {
    #[doc = include_str!("../docs/shards.md")]
    mod shards {}
}
