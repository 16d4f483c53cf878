//! Running a discore bot over several processes and machines.
//!
//! - **Coordination on Redis** ([`ClusterRedis`]): a [`RedisIdentifyQueue`]
//!   shared by every process (buckets, windows and the daily budget with
//!   its reserve), a [`RedisSessionStore`] checkpointed in batches, shard
//!   leases with fencing tokens, and the cluster's merged status
//!   ([`cluster_status`]). A [`ClusterNode`] ties them together: it claims a
//!   fixed range or a fair share of the shards, runs them, hands them over
//!   on shutdown or rebalancing (resumed, not identified) and takes over the
//!   shards of a process that died. When Discord asks for more shards
//!   (4011) or an operator does ([`ReshardCluster`],
//!   [`CommandClient::reshard`]), the cluster re-shards without downtime:
//!   the new total's fleet starts beside the old one and delivery switches
//!   with no event lost or published twice.
//! - **An event bus on NATS JetStream** ([`EventBus`]): gateway nodes
//!   publish every dispatch ([`EventPublisher`]); worker processes consume
//!   them with an [`EventSource`] that delivers the same [`GatewayEvent`]
//!   messages, so one `Handler<GatewayEvent>` works in one process and in a
//!   worker fleet; a [`CommandClient`] sends commands back to the process
//!   that owns the shard.
//!
//! The guide, with the guarantees, their limits and Kubernetes manifests,
//! is `docs/cluster.md`.
//!
//! ```no_run
//! use discore_cluster::{ClusterNode, ClusterRedis, EventBus, NodeConfig, ShutdownNode};
//! use discore_gateway::{Intents, Token};
//! use discore_manager::ManagerConfig;
//!
//! #[actix::main]
//! async fn main() -> Result<(), Box<dyn std::error::Error>> {
//!     let token = Token::new(std::env::var("DISCORD_TOKEN")?)?;
//!     let redis = ClusterRedis::connect("redis://127.0.0.1:6379", "my-bot").await?;
//!     let bus = EventBus::connect("nats://127.0.0.1:4222", "my-bot").await?;
//!     bus.ensure_stream(Default::default()).await?;
//!     let node = ClusterNode::start(
//!         NodeConfig::new(
//!             ManagerConfig::new(token, Intents::GUILDS | Intents::GUILD_MESSAGES),
//!             24,
//!         )
//!         .event_bus(bus),
//!         redis,
//!     )
//!     .await?;
//!     actix_rt::signal::ctrl_c().await?;
//!     node.send(ShutdownNode).await??;
//!     Ok(())
//! }
//! ```
//!
//! [`GatewayEvent`]: discore_gateway::GatewayEvent

mod bus;
mod error;
mod identify;
mod lease;
mod lease_holder;
mod namespace;
mod node;
mod redis_conn;
mod reshard;
mod session_store;
mod status;

pub use bus::{
    CommandClient, EventBus, EventPublisher, EventSource, EventSourceConfig, EventSourceStats,
    FlushPublisher, GetPublisherStats, GetSourceStats, HEADER_EVENT, HEADER_SEQUENCE,
    HEADER_SESSION, HEADER_SHARD, PublishLedger, PublisherStats, StopSource, StreamSettings,
    encode_command,
};
pub use error::{ClusterError, RemoteCommandError};
pub use identify::RedisIdentifyQueue;
pub use node::{
    ClusterNode, GetNodeStatus, IncomingFleet, NodeConfig, NodeShutdownReport, NodeStatus,
    ReshardCluster, ShardAssignment, ShutdownNode,
};
pub use redis_conn::ClusterRedis;
pub use session_store::RedisSessionStore;
pub use status::{ClusterShardReport, LeaseState, cluster_status};

/// The README's code, compiled as a doc test so it stays true.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
mod readme {}
