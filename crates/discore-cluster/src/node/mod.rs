//! A gateway process of a cluster: a thin lease layer over one
//! `ShardManager`. It holds shard leases, has the manager adopt the shard of
//! every lease it claims and release the shard of every lease it gives up,
//! checkpoints sessions, publishes the shards' status, and (with an event
//! bus) publishes their events and serves their commands.
//!
//! `config.rs` is [`NodeConfig`]; `store.rs` the session store the manager
//! sees (fenced by the leases).

mod config;
mod store;

pub use config::{NodeConfig, ShardAssignment};

use crate::{
    bus::{EventPublisher, FlushPublisher, PublishLedger, serve_commands},
    error::ClusterError,
    identify::RedisIdentifyQueue,
    lease::LeaseClient,
    lease_holder::{Claim, LeaseHolder},
    redis_conn::ClusterRedis,
    session_store::RedisSessionStore,
    status::{self, ClusterShardReport, LeaseState},
};
use actix::{
    Actor, ActorContext as _, ActorFutureExt as _, Addr, AsyncContext as _, Context, Handler,
    Message, ResponseActFuture, WrapFuture as _,
};
use discore_gateway::{EventFilter, IdentifyQueue, SessionStartLimit, StopMode};
use discore_http::{BotConnectionInfo, RestClient};
use discore_manager::{
    AdoptShard, DiscoveryConfig, GetFleetStatus, IdentifyConfig, IdentifyQueueChoice, ReleaseShard,
    ReshardMode, SessionConfig, ShardCount, ShardManager, ShutdownFleet,
};
use discore_protocol::ShardId;
use std::{
    collections::BTreeMap,
    fmt,
    sync::Arc,
    time::{Duration, Instant, SystemTime},
};
use store::{FencedStore, Fences};
use tokio::{sync::oneshot, task::JoinHandle};

enum Run {
    /// Its session is looked up and the manager asked to adopt it.
    Adopting,
    Running,
    /// Handing over: the manager releases it, then the lease goes.
    Releasing,
}

struct Owned {
    run: Run,
    commands: Option<JoinHandle<()>>,
    /// Its session was active at the last status: handing it over now
    /// costs a resume, not an identify.
    active: bool,
}

impl Owned {
    fn lease_state(&self) -> LeaseState {
        match self.run {
            Run::Adopting => LeaseState::Starting,
            Run::Running => LeaseState::Running,
            Run::Releasing => LeaseState::Releasing,
        }
    }

    fn stop_commands(&mut self) {
        if let Some(task) = self.commands.take() {
            task.abort();
        }
    }
}

/// What a node holds, for tests and status pages.
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct NodeStatus {
    /// The node's id.
    pub node: String,
    /// `(shard id, fencing token, lease state)` of every lease held.
    pub shards: Vec<(u32, u64, LeaseState)>,
    /// How many shards the node should hold (fair share), or its range's size.
    pub target: u32,
    /// Live nodes, this one included, at the last renewal.
    pub members: u32,
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

/// A gateway process of a cluster. See the crate documentation and
/// `docs/cluster.md`.
pub struct ClusterNode {
    node_id: String,
    total: u32,
    claim: Claim,
    rebalances: bool,
    status_interval: Duration,
    /// Saved sessions older than this are not resumed.
    max_age: Duration,
    redis: ClusterRedis,
    leases: LeaseHolder,
    store: Arc<RedisSessionStore>,
    fences: Arc<Fences>,
    manager: Addr<ShardManager>,
    bus: Option<crate::bus::EventBus>,
    publisher: Option<Addr<EventPublisher>>,
    ledger: Option<Arc<PublishLedger>>,
    shards: BTreeMap<u32, Owned>,
    stopping: Option<NodeShutdownReport>,
    stop_waiters: Vec<oneshot::Sender<NodeShutdownReport>>,
}

impl fmt::Debug for ClusterNode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClusterNode")
            .field("node", &self.node_id)
            .field("shards", &self.shards.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl ClusterNode {
    /// Starts a node: asks Discord for the gateway once (unless the
    /// manager configuration has the answer), builds the Redis identify
    /// queue and session store, starts its manager with no shard, and
    /// starts claiming leases. Call it inside the actix system.
    ///
    /// # Errors
    ///
    /// [`ClusterError::Discovery`] when `GET /gateway/bot` fails,
    /// [`ClusterError::InvalidConfig`] for a range outside the total or a
    /// manager configuration that cannot work.
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
        let info = gateway_info(&config).await?;
        let queue = identify_queue(&config, &redis, &info);
        let store = Arc::new(RedisSessionStore::batched(
            &redis,
            config.checkpoint_interval,
        ));
        let client = LeaseClient::new(
            &redis,
            format!("shards-{}", config.total),
            config.node_id.clone(),
            config.lease_ttl,
            config.total,
        );
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
        let fences = Arc::<Fences>::default();
        let max_age = config
            .manager
            .session_settings()
            .map_or(Duration::from_secs(5 * 60), |s| s.max_age);
        let fenced = FencedStore {
            store: Arc::clone(&store),
            fences: Arc::clone(&fences),
            leases: client.clone(),
            ledger: ledger.clone(),
        };
        let identify = IdentifyConfig {
            queue: IdentifyQueueChoice::Given(queue),
            ..config.manager.identify_settings().clone()
        };
        let mut manager = config
            .manager
            .clone()
            .shard_count(ShardCount::Adopted {
                total: config.total,
            })
            .resharding(ReshardMode::Disabled)
            .discovery(DiscoveryConfig {
                gateway_bot: Some(info),
                ..config.manager.discovery_settings().clone()
            })
            .identify(identify)
            .sessions(SessionConfig {
                max_age,
                checkpoint_interval: Some(config.checkpoint_interval),
                ..SessionConfig::new(Arc::new(fenced))
            });
        if let Some(publisher) = &publisher {
            manager = manager.subscribe(publisher.clone().recipient(), EventFilter::all());
        }
        let manager = ShardManager::launch(manager)
            .await
            .map_err(|error| ClusterError::InvalidConfig(format!("the node's manager: {error}")))?;
        log::info!(
            "node {}: {} of {} shards, lease ttl {:?}",
            config.node_id,
            match &config.assignment {
                ShardAssignment::Range(r) => format!("range {r:?}"),
                ShardAssignment::FairShare => "a fair share".to_owned(),
            },
            config.total,
            config.lease_ttl
        );
        let (claim, rebalances) = match &config.assignment {
            ShardAssignment::Range(range) => (Claim::Fixed(range.clone().collect()), false),
            ShardAssignment::FairShare => (Claim::Share, true),
        };
        Ok(Actor::start(Self {
            node_id: config.node_id,
            total: config.total,
            claim,
            rebalances,
            status_interval: config.status_interval,
            max_age,
            redis,
            leases: LeaseHolder::new(client),
            store,
            fences,
            manager,
            bus: config.bus,
            publisher,
            ledger,
            shards: BTreeMap::new(),
            stopping: None,
            stop_waiters: Vec::new(),
        }))
    }

    fn shard(&self, number: u32) -> ShardId {
        ShardId::new(number, self.total)
    }

    fn tick(&mut self, ctx: &mut Context<Self>) {
        let leaving = self.stopping.is_some();
        let Some(call) = self.leases.start_tick(&self.claim, leaving) else {
            return;
        };
        ctx.spawn(call.into_actor(self).map(move |(sent, result), node, ctx| {
            let leaving = node.stopping.is_some();
            match node.leases.finish_tick(sent, result, leaving) {
                Ok(changes) => {
                    for number in changes.lost {
                        node.lose(number, "its lease was taken or expired");
                    }
                    for (number, token) in changes.claimed {
                        node.adopt(number, token, ctx);
                    }
                    if !leaving && node.rebalances {
                        node.rebalance(ctx);
                    }
                }
                Err(error) => log::warn!("node {}: lease renewal failed: {error}", node.node_id),
            }
        }));
    }

    /// Hands over shards above the fair share, highest ids first, among
    /// those whose session is active (one still identifying would have to
    /// identify again elsewhere).
    fn rebalance(&mut self, ctx: &mut Context<Self>) {
        let kept = self
            .shards
            .values()
            .filter(|o| !matches!(o.run, Run::Releasing))
            .count();
        let excess = kept.saturating_sub(self.leases.target() as usize);
        if excess == 0 {
            return;
        }
        let chosen: Vec<u32> = self
            .shards
            .iter()
            .rev()
            .filter(|(_, o)| matches!(o.run, Run::Running) && o.active)
            .map(|(n, _)| *n)
            .take(excess)
            .collect();
        for number in chosen {
            log::info!(
                "node {}: handing shard {number} over ({} nodes, share {})",
                self.node_id,
                self.leases.members(),
                self.leases.target()
            );
            self.release(number, ctx);
        }
    }

    /// Has the manager adopt the shard of a lease just claimed, resuming
    /// its saved session when there is a fresh one.
    fn adopt(&mut self, number: u32, token: u64, ctx: &mut Context<Self>) {
        log::info!(
            "node {}: shard {number} claimed (fencing token {token})",
            self.node_id
        );
        self.fences.set(number, Some(token));
        self.shards.insert(
            number,
            Owned {
                run: Run::Adopting,
                commands: None,
                active: false,
            },
        );
        let shard = self.shard(number);
        let lookup = self.store.load_one(shard);
        let ledger = self.ledger.clone();
        let manager = self.manager.clone();
        let max_age = self.max_age;
        ctx.spawn(
            async move {
                let session = match lookup.await {
                    Ok(saved) => saved
                        .filter(|s| s.age(SystemTime::now()) <= max_age)
                        .map(|s| s.session),
                    Err(error) => {
                        log::warn!("shard {shard}: its saved session could not be read, it identifies: {error}");
                        None
                    }
                };
                if let Some(ledger) = &ledger {
                    // Before its first event: the publisher deduplicates
                    // the replay by session and sequence.
                    match &session {
                        Some(session) => ledger.set_session(shard, &session.id),
                        None => ledger.claim(shard),
                    }
                }
                manager
                    .send(AdoptShard { shard, session })
                    .await
                    .map_err(|_| ClusterError::Stopped)
                    .and_then(|answer| {
                        answer.map_err(|error| ClusterError::InvalidConfig(error.to_string()))
                    })
            }
            .into_actor(self)
            .map(move |result, node, _| node.adopted(number, token, result)),
        );
    }

    fn adopted(
        &mut self,
        number: u32,
        token: u64,
        result: Result<discore_manager::Adopted, ClusterError>,
    ) {
        let ours = self.leases.holds(number, token)
            && self
                .shards
                .get(&number)
                .is_some_and(|o| matches!(o.run, Run::Adopting));
        match (ours, result) {
            (true, Ok(how)) => {
                log::debug!("node {}: shard {number} adopted ({how:?})", self.node_id);
                let commands = self.bus.as_ref().map(|bus| {
                    actix_rt::spawn(serve_commands(bus.clone(), number, self.manager.clone()))
                });
                if let Some(owned) = self.shards.get_mut(&number) {
                    owned.run = Run::Running;
                    owned.commands = commands;
                }
            }
            (true, Err(error)) => {
                log::error!(
                    "node {}: shard {number} was not adopted, lease released: {error}",
                    self.node_id
                );
                self.forget(number);
                self.leases.release(number);
            }
            (false, Ok(_)) => {
                // The lease went while the shard started: stop it (its
                // fence is gone, so nothing of it is saved, and nothing
                // more of it is published).
                if let Some(ledger) = &self.ledger {
                    ledger.forget(self.shard(number));
                }
                self.manager.do_send(ReleaseShard(self.shard(number)));
            }
            (false, Err(_)) => {}
        }
    }

    /// Forgets what this node knows of a shard (not the lease).
    fn forget(&mut self, number: u32) -> Option<Owned> {
        self.fences.set(number, None);
        if let Some(ledger) = &self.ledger {
            ledger.forget(self.shard(number));
        }
        let mut owned = self.shards.remove(&number)?;
        owned.stop_commands();
        Some(owned)
    }

    /// The lease is gone: stop the shard at once. Its fence goes first, so
    /// the release saves nothing; the session stays resumable on Discord's
    /// side for whoever holds the lease now.
    fn lose(&mut self, number: u32, why: &str) {
        self.leases.forget(number);
        let Some(owned) = self.forget(number) else {
            return;
        };
        log::warn!("node {}: shard {number} stopped, {why}", self.node_id);
        if !matches!(owned.run, Run::Adopting) {
            self.manager.do_send(ReleaseShard(self.shard(number)));
        }
        // An adoption under way sees the lease gone when it answers.
        self.maybe_finished();
    }

    /// Hands a shard over: the manager releases it (4000, session saved
    /// under the lease's fence), the publisher catches up, then the lease
    /// is released for the next owner.
    fn release(&mut self, number: u32, ctx: &mut Context<Self>) {
        let Some(owned) = self.shards.get_mut(&number) else {
            return;
        };
        if !matches!(owned.run, Run::Running) {
            return;
        }
        owned.stop_commands();
        owned.run = Run::Releasing;
        let Some(token) = self.leases.token(number) else {
            return;
        };
        let shard = self.shard(number);
        let manager = self.manager.clone();
        let publisher = self.publisher.clone();
        ctx.spawn(
            async move {
                let released = manager.send(ReleaseShard(shard)).await;
                if let Some(publisher) = publisher {
                    let _ = publisher.send(FlushPublisher).await;
                }
                released
            }
            .into_actor(self)
            .map(move |released, node, _| {
                let saved = match released {
                    Ok(Ok(released)) => {
                        if let Some(error) = &released.store_error {
                            log::warn!("shard {number}: session not saved on hand-over: {error}");
                        }
                        usize::from(released.saved)
                    }
                    _ => 0,
                };
                if !node.leases.holds(number, token) {
                    return;
                }
                node.forget(number);
                node.leases.release(number);
                log::info!("shard {number}: handed over ({saved} session saved)");
                if let Some(report) = &mut node.stopping {
                    report.shards_released += 1;
                    report.sessions_saved += saved;
                }
                node.maybe_finished();
            }),
        );
    }

    /// Stops every shard whose lease could have expired.
    fn enforce_deadlines(&mut self) {
        for number in self.leases.expired(Instant::now()) {
            self.lose(number, "its lease could not be renewed in time");
        }
    }

    fn publish_status(&mut self, ctx: &mut Context<Self>) {
        let node = self.node_id.clone();
        let total = self.total;
        let owned: Vec<(u32, u64, LeaseState)> = self
            .shards
            .iter()
            .filter_map(|(n, o)| Some((*n, self.leases.token(*n)?, o.lease_state())))
            .collect();
        let redis = self.redis.clone();
        let ttl = (self.status_interval * 3).max(self.leases.ttl());
        let manager = self.manager.clone();
        ctx.spawn(
            async move {
                let fleet = manager.send(GetFleetStatus).await.ok();
                let reports: Vec<ClusterShardReport> = owned
                    .into_iter()
                    .map(|(number, token, lease)| {
                        let report = fleet
                            .as_ref()
                            .and_then(|f| f.shards.iter().find(|r| r.shard.number() == number));
                        ClusterShardReport::from_manager(
                            &node,
                            token,
                            lease,
                            report,
                            ShardId::new(number, total),
                        )
                    })
                    .collect();
                if let Err(error) = status::publish(&redis, &node, &reports, ttl).await {
                    log::debug!("node {node}: publishing status failed: {error}");
                }
                reports
            }
            .into_actor(self)
            .map(|reports, node, _| {
                for report in reports {
                    let number = report.shard.number();
                    if node.leases.holds(number, report.fencing_token)
                        && let Some(owned) = node.shards.get_mut(&number)
                    {
                        owned.active = report.state.as_deref() == Some("Active");
                    }
                }
            }),
        );
    }

    fn maybe_finished(&mut self) {
        if self.stopping.is_none() || !self.shards.is_empty() {
            return;
        }
        let report = self.stopping.clone().unwrap_or_default();
        for waiter in self.stop_waiters.drain(..) {
            let _ = waiter.send(report.clone());
        }
    }

    fn status(&self) -> NodeStatus {
        NodeStatus {
            node: self.node_id.clone(),
            shards: self
                .shards
                .iter()
                .filter_map(|(n, o)| Some((*n, self.leases.token(*n)?, o.lease_state())))
                .collect(),
            target: self.leases.target(),
            members: self.leases.members(),
        }
    }
}

/// `GET /gateway/bot`, once for the node, unless the configuration has it.
async fn gateway_info(config: &NodeConfig) -> Result<BotConnectionInfo, ClusterError> {
    let discovery = config.manager.discovery_settings();
    if let Some(info) = &discovery.gateway_bot {
        return Ok(info.clone());
    }
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
        let ttl = self.leases.ttl();
        self.tick(ctx);
        ctx.run_interval(ttl / 3, |node, ctx| node.tick(ctx));
        ctx.run_interval((ttl / 20).max(Duration::from_millis(5)), |node, _| {
            node.enforce_deadlines();
        });
        ctx.run_interval(self.status_interval, |node, ctx| {
            node.publish_status(ctx);
        });
    }

    fn stopped(&mut self, _: &mut Context<Self>) {
        for number in self.shards.keys().copied().collect::<Vec<_>>() {
            self.lose(number, "the node stopped");
        }
        self.manager.do_send(ShutdownFleet(StopMode::HandOff));
        log::info!("node {} stopped", self.node_id);
    }
}

impl Handler<GetNodeStatus> for ClusterNode {
    type Result = actix::MessageResult<GetNodeStatus>;

    /// Answers what the node holds.
    fn handle(&mut self, _: GetNodeStatus, _: &mut Context<Self>) -> Self::Result {
        actix::MessageResult(self.status())
    }
}

impl Handler<ShutdownNode> for ClusterNode {
    type Result = ResponseActFuture<Self, Result<NodeShutdownReport, ClusterError>>;

    /// Hands every shard over, leaves the cluster and stops.
    fn handle(&mut self, _: ShutdownNode, ctx: &mut Context<Self>) -> Self::Result {
        if self.stopping.is_none() {
            log::info!("node {}: shutting down", self.node_id);
            self.stopping = Some(NodeShutdownReport::default());
        }
        let (done, finished) = oneshot::channel();
        self.stop_waiters.push(done);
        // Shards still being adopted are handed over once they run.
        ctx.run_interval(Duration::from_millis(20), |node, ctx| {
            let running: Vec<u32> = node
                .shards
                .iter()
                .filter(|(_, o)| matches!(o.run, Run::Running))
                .map(|(n, _)| *n)
                .collect();
            for number in running {
                node.release(number, ctx);
            }
        });
        self.maybe_finished();
        let leave = self.leases.leave();
        let redis = self.redis.clone();
        let store = Arc::clone(&self.store);
        let node_id = self.node_id.clone();
        let publisher = self.publisher.clone();
        let manager = self.manager.clone();
        Box::pin(
            async move {
                let report = finished.await.map_err(|_| ClusterError::Stopped)?;
                if let Some(publisher) = publisher {
                    let _ = publisher.send(FlushPublisher).await;
                }
                if let Err(error) = store.flush().await {
                    log::warn!("node {node_id}: final checkpoint failed: {error}");
                }
                if let Err(error) = leave.await {
                    log::warn!("node {node_id}: leaving the cluster failed: {error}");
                }
                if let Err(error) = status::withdraw(&redis, &node_id).await {
                    log::debug!("node {node_id}: withdrawing status failed: {error}");
                }
                // It runs no shard any more.
                let _ = manager.send(ShutdownFleet(StopMode::HandOff)).await;
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
