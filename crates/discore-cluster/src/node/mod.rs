//! A gateway process of a cluster: it serves the cluster's current shard
//! generation with one fleet (a thin lease layer over one `ShardManager`),
//! and while the cluster re-shards it runs the new generation's fleet
//! beside it and takes its part in the switch. It publishes the shards'
//! events and serves their commands when given an event bus.
//!
//! `config.rs` is [`NodeConfig`]; `fleet.rs` one generation's fleet;
//! `reshard.rs` the node's part in a re-sharding; `store.rs` the session
//! store a fleet's manager sees (fenced by the leases).

mod config;
mod fleet;
mod reshard;
mod store;

pub use config::{NodeConfig, ShardAssignment};
pub(crate) use reshard::{ReshardAnswer, ReshardRequest};

use crate::{
    bus::{EventPublisher, FlushPublisher, PublishLedger},
    error::ClusterError,
    identify::RedisIdentifyQueue,
    lease_holder::Claim,
    redis_conn::ClusterRedis,
    reshard::state,
    session_store::RedisSessionStore,
    status::LeaseState,
};
use actix::{
    Actor, ActorContext as _, ActorFutureExt as _, Addr, AsyncContext as _, Context, Handler,
    Message, ResponseActFuture, WrapFuture as _,
};
use discore_gateway::{IdentifyQueue, SessionStartLimit};
use discore_http::{BotConnectionInfo, RestClient};
use discore_manager::IdentifyQueueChoice;
use fleet::{FleetNode, FleetParts, GetFleetPart, HandOverFleet, ReshardingRequired};
use std::{fmt, sync::Arc, time::Duration};
use tokio::task::JoinHandle;

/// What a node holds, for tests and status pages.
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct NodeStatus {
    /// The node's id.
    pub node: String,
    /// The shard total the node serves.
    pub total: u32,
    /// `(shard id, fencing token, lease state)` of every lease held.
    pub shards: Vec<(u32, u64, LeaseState)>,
    /// How many shards the node should hold (fair share), or its range's size.
    pub target: u32,
    /// Live nodes, this one included, at the last renewal.
    pub members: u32,
    /// While the cluster re-shards: the new generation's part on this node.
    pub incoming: Option<IncomingFleet>,
}

/// A node's part of the generation a re-sharding is starting.
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct IncomingFleet {
    /// The new total.
    pub total: u32,
    /// `(shard id, fencing token, lease state)` of every lease held in it.
    pub shards: Vec<(u32, u64, LeaseState)>,
}

/// Asks a node what it holds.
#[derive(Clone, Copy, Debug, Message)]
#[rtype(result = "NodeStatus")]
pub struct GetNodeStatus;

/// Stops the node cleanly: every shard closes with 4000 and saves its
/// session (fenced by its lease), the events published so far are
/// acknowledged, then the leases are released, so the nodes that take the
/// shards over resume them: a rolling restart costs no identify.
#[derive(Clone, Copy, Debug, Message)]
#[rtype(result = "Result<NodeShutdownReport, ClusterError>")]
pub struct ShutdownNode;

/// What a clean shutdown did.
#[derive(Clone, Debug, Default, Eq, PartialEq)]
pub struct NodeShutdownReport {
    /// Shards handed over.
    pub shards_released: usize,
    /// Sessions saved for them.
    pub sessions_saved: usize,
}

/// Asks the cluster to re-shard to `shards` shards, without downtime
/// (`docs/cluster.md`, "Re-sharding"). Any node can be asked; the first
/// request wins and the others are refused while it runs. The cluster
/// re-shards by itself when a shard is refused with 4011 or 4010; this is
/// for an operator (or a worker, through
/// [`CommandClient::reshard`](crate::CommandClient::reshard)).
#[derive(Clone, Copy, Debug, Message)]
#[rtype(result = "Result<(), ClusterError>")]
pub struct ReshardCluster {
    /// The new total; more than the current one.
    pub shards: u32,
}

/// One shard generation run by this node.
#[derive(Clone, Debug)]
struct Generation {
    total: u32,
    fleet: Addr<FleetNode>,
}

/// What every fleet of a node shares.
struct Shared {
    config: NodeConfig,
    redis: ClusterRedis,
    info: BotConnectionInfo,
    queue: Arc<dyn IdentifyQueue>,
    store: Arc<RedisSessionStore>,
    publisher: Option<Addr<EventPublisher>>,
    ledger: Option<Arc<PublishLedger>>,
}

/// A gateway process of a cluster. See the crate documentation and
/// `docs/cluster.md`.
pub struct ClusterNode {
    shared: Shared,
    serving: Generation,
    /// The new generation while the cluster re-shards.
    incoming: Option<Generation>,
    /// A fleet being started.
    starting: Option<u32>,
    reshard: reshard::Progress,
    /// A re-sharding step is under way.
    stepping: bool,
    /// A refused shard's `GET /gateway/bot` is under way.
    discovering: bool,
    stopping: bool,
    /// Serves re-sharding requests from the bus.
    control: Option<JoinHandle<()>>,
}

impl fmt::Debug for ClusterNode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClusterNode")
            .field("node", &self.shared.config.node_id)
            .field("total", &self.serving.total)
            .field("incoming", &self.incoming.as_ref().map(|g| g.total))
            .finish_non_exhaustive()
    }
}

impl ClusterNode {
    /// Starts a node: asks Discord for the gateway once (unless the
    /// manager configuration has the answer), builds the Redis identify
    /// queue and session store, reads which shard total the cluster serves
    /// (the configured total for a new cluster; the cluster's own after a
    /// re-sharding), starts its fleet with no shard, and starts claiming
    /// leases. Call it inside the actix system.
    ///
    /// # Errors
    ///
    /// [`ClusterError::Discovery`] when `GET /gateway/bot` fails,
    /// [`ClusterError::InvalidConfig`] for a range outside the total or a
    /// manager configuration that cannot work, a Redis error when the
    /// generation record cannot be read.
    pub async fn start(
        config: NodeConfig,
        redis: ClusterRedis,
    ) -> Result<Addr<Self>, ClusterError> {
        if let ShardAssignment::Range(range) = &config.assignment
            && (range.is_empty() || range.end > config.total)
        {
            return Err(ClusterError::InvalidConfig(format!(
                "shard range {range:?} is empty or outside 0..{}",
                config.total
            )));
        }
        let info = match &config.manager.discovery_settings().gateway_bot {
            Some(info) => info.clone(),
            None => gateway_info(&config).await?,
        };
        let queue = identify_queue(&config, &redis, &info);
        let store = Arc::new(RedisSessionStore::batched(
            &redis,
            config.checkpoint_interval,
        ));
        let ledger = config
            .bus
            .as_ref()
            .map(|_| Arc::new(PublishLedger::default()));
        let publisher = match (&config.bus, &ledger) {
            (Some(bus), Some(ledger)) => {
                Some(EventPublisher::new(bus.clone(), Arc::clone(ledger)).start())
            }
            _ => None,
        };
        let generation = state::read_or_init(&redis, config.total).await?;
        if generation.total != config.total {
            log::info!(
                "node {}: the cluster serves {} shards (configured {}), joining it",
                config.node_id,
                generation.total,
                config.total
            );
        }
        let shared = Shared {
            config,
            redis,
            info,
            queue,
            store,
            publisher,
            ledger,
        };
        let context = Context::new();
        let fleet =
            FleetNode::start(shared.fleet_parts(generation.total, context.address())).await?;
        log::info!(
            "node {}: {} of {} shards, lease ttl {:?}",
            shared.config.node_id,
            match &shared.config.assignment {
                ShardAssignment::Range(r) => format!("range {r:?}"),
                ShardAssignment::FairShare => "a fair share".to_owned(),
            },
            generation.total,
            shared.config.lease_ttl
        );
        let node = Self {
            shared,
            serving: Generation {
                total: generation.total,
                fleet,
            },
            incoming: None,
            starting: None,
            reshard: reshard::Progress::default(),
            stepping: false,
            discovering: false,
            stopping: false,
            control: None,
        };
        Ok(context.run(node))
    }

    fn serve_control(&mut self, ctx: &mut Context<Self>) {
        if let Some(bus) = &self.shared.config.bus {
            let task = actix_rt::spawn(reshard::serve_requests(bus.clone(), ctx.address()));
            self.control = Some(task);
        }
    }
}

impl Shared {
    /// What a fleet of `total` shards of this node needs.
    fn fleet_parts(&self, total: u32, node: Addr<ClusterNode>) -> FleetParts {
        let (claim, rebalances) = match &self.config.assignment {
            ShardAssignment::Range(range) => (
                Claim::Fixed(scale_range(range, self.config.total, total).collect()),
                false,
            ),
            ShardAssignment::FairShare => (Claim::Share, true),
        };
        FleetParts {
            node_id: self.config.node_id.clone(),
            total,
            claim,
            rebalances,
            lease_ttl: self.config.lease_ttl,
            checkpoint_interval: self.config.checkpoint_interval,
            status_interval: self.config.status_interval,
            manager: self.config.manager.clone(),
            info: self.info.clone(),
            queue: Arc::clone(&self.queue),
            redis: self.redis.clone(),
            store: Arc::clone(&self.store),
            bus: self.config.bus.clone(),
            publisher: self.publisher.clone(),
            ledger: self.ledger.clone(),
            resharding: node.recipient(),
        }
    }
}

/// A fixed range of `configured` shards, carried over to `total` shards in
/// proportion, so that the ranges of all nodes still cover every shard.
fn scale_range(range: &std::ops::Range<u32>, configured: u32, total: u32) -> std::ops::Range<u32> {
    if configured == total || configured == 0 {
        return range.clone();
    }
    let scale = |n: u32| u32::try_from(u64::from(n) * u64::from(total) / u64::from(configured));
    match (scale(range.start), scale(range.end)) {
        (Ok(start), Ok(end)) => start..end.min(total),
        _ => range.clone(),
    }
}

/// `GET /gateway/bot`.
async fn gateway_info(config: &NodeConfig) -> Result<BotConnectionInfo, ClusterError> {
    let discovery = config.manager.discovery_settings();
    let rest = RestClient::builder(config.manager.token().clone())
        .base_url(discovery.rest_url.clone())
        .max_attempts(discovery.rest_attempts)
        .build()
        .map_err(ClusterError::Discovery)?;
    rest.gateway_bot().await.map_err(ClusterError::Discovery)
}

/// The identify queue every process of the bot shares: Redis, with the
/// manager configuration's limits; a queue the configuration gives is used
/// as it is.
fn identify_queue(
    config: &NodeConfig,
    redis: &ClusterRedis,
    info: &BotConnectionInfo,
) -> Arc<dyn IdentifyQueue> {
    let limits = match &config.manager.identify_settings().queue {
        IdentifyQueueChoice::Given(queue) => return Arc::clone(queue),
        IdentifyQueueChoice::InMemory(limits) => limits,
    };
    let limit = &info.session_start_limit;
    let max_concurrency = limits
        .max_concurrency
        .unwrap_or(u32::from(limit.max_concurrency))
        .max(1);
    let reserve = limits.reserve.unwrap_or_else(|| (limit.total / 20).max(1));
    Arc::new(
        RedisIdentifyQueue::with_window(redis, max_concurrency, limits.window)
            .with_session_start_limit(SessionStartLimit {
                remaining: limit.remaining,
                reset_after: Duration::from_millis(limit.reset_after),
                total: limit.total,
                reserve,
            }),
    )
}

impl Actor for ClusterNode {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        self.serve_control(ctx);
        self.follow(ctx);
        ctx.run_interval(self.shared.config.status_interval, |node, ctx| {
            node.follow(ctx);
        });
        // While a re-sharding runs its steps follow each other quickly: the
        // old shards are silent between their records and the switch.
        let quick = (self.shared.config.status_interval / 10)
            .clamp(Duration::from_millis(50), Duration::from_millis(250));
        ctx.run_interval(quick, |node, ctx| {
            if node.incoming.is_some() {
                node.follow(ctx);
            }
        });
    }

    fn stopped(&mut self, _: &mut Context<Self>) {
        if let Some(task) = self.control.take() {
            task.abort();
        }
        log::info!("node {} stopped", self.shared.config.node_id);
    }
}

impl Handler<GetNodeStatus> for ClusterNode {
    type Result = ResponseActFuture<Self, NodeStatus>;

    /// Answers what the node holds.
    fn handle(&mut self, _: GetNodeStatus, _: &mut Context<Self>) -> Self::Result {
        let node = self.shared.config.node_id.clone();
        let serving = self.serving.clone();
        let incoming = self.incoming.clone();
        Box::pin(
            async move {
                let part = serving.fleet.send(GetFleetPart).await.ok();
                let next = match incoming {
                    Some(generation) => generation.fleet.send(GetFleetPart).await.ok(),
                    None => None,
                };
                let leases = |shards: &[fleet::FleetShard]| {
                    shards
                        .iter()
                        .map(|s| (s.number, s.token, s.lease))
                        .collect::<Vec<_>>()
                };
                NodeStatus {
                    node,
                    total: serving.total,
                    shards: part.as_ref().map(|p| leases(&p.shards)).unwrap_or_default(),
                    target: part.as_ref().map_or(0, |p| p.target),
                    members: part.as_ref().map_or(0, |p| p.members),
                    incoming: next.map(|p| IncomingFleet {
                        total: p.total,
                        shards: leases(&p.shards),
                    }),
                }
            }
            .into_actor(self),
        )
    }
}

impl Handler<ShutdownNode> for ClusterNode {
    type Result = ResponseActFuture<Self, Result<NodeShutdownReport, ClusterError>>;

    /// Hands every shard over, leaves the cluster and stops.
    fn handle(&mut self, _: ShutdownNode, _: &mut Context<Self>) -> Self::Result {
        log::info!("node {}: shutting down", self.shared.config.node_id);
        self.stopping = true;
        let fleets: Vec<Addr<FleetNode>> = self
            .incoming
            .iter()
            .chain(std::iter::once(&self.serving))
            .map(|g| g.fleet.clone())
            .collect();
        let publisher = self.shared.publisher.clone();
        let store = Arc::clone(&self.shared.store);
        let node_id = self.shared.config.node_id.clone();
        Box::pin(
            async move {
                let mut report = NodeShutdownReport::default();
                for fleet in fleets {
                    let part = fleet
                        .send(HandOverFleet)
                        .await
                        .map_err(|_| ClusterError::Stopped)??;
                    report.shards_released += part.shards_released;
                    report.sessions_saved += part.sessions_saved;
                }
                if let Some(publisher) = publisher {
                    let _ = publisher.send(FlushPublisher).await;
                }
                if let Err(error) = store.flush().await {
                    log::warn!("node {node_id}: final checkpoint failed: {error}");
                }
                Ok(report)
            }
            .into_actor(self)
            .map(|result, _, ctx| {
                ctx.stop();
                result
            }),
        )
    }
}

impl Handler<ReshardingRequired> for ClusterNode {
    type Result = ();

    /// A shard was refused with 4011 or 4010: asks Discord for the count
    /// and starts a re-sharding to it.
    fn handle(&mut self, refused: ReshardingRequired, ctx: &mut Context<Self>) {
        self.resharding_required(refused.shard, ctx);
    }
}

impl Handler<ReshardCluster> for ClusterNode {
    type Result = ResponseActFuture<Self, Result<(), ClusterError>>;

    /// Starts a re-sharding of the cluster to `shards`.
    fn handle(&mut self, request: ReshardCluster, _: &mut Context<Self>) -> Self::Result {
        let from = self.serving.total;
        let redis = self.shared.redis.clone();
        Box::pin(reshard::request(redis, from, request.shards).into_actor(self))
    }
}

#[cfg(test)]
mod tests {
    use super::scale_range;

    #[test]
    fn ranges_scale_to_cover_the_new_total() {
        let ranges = [0..3, 3..6, 6..8];
        let scaled: Vec<_> = ranges.iter().map(|r| scale_range(r, 8, 12)).collect();
        assert_eq!(scaled, vec![0..4, 4..9, 9..12]);
        assert_eq!(scale_range(&(2..5), 8, 8), 2..5);
    }
}
