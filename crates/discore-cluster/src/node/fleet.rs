//! One shard generation of a node: a thin lease layer over one
//! `ShardManager` with a fixed total. It holds shard leases in the pool of
//! its total, has the manager adopt the shard of every lease it claims and
//! release the shard of every lease it gives up, checkpoints sessions and
//! publishes the shards' status. A node runs one fleet, two while the
//! cluster re-shards (`super::reshard`).

use super::{
    NodeShutdownReport,
    store::{FencedStore, Fences},
};
use crate::{
    bus::{
        EventBus, EventPublisher, FlushPublisher, GateCall, Gated, PublishLedger, serve_commands,
    },
    error::ClusterError,
    lease::LeaseClient,
    lease_holder::{Claim, LeaseHolder},
    redis_conn::ClusterRedis,
    session_store::RedisSessionStore,
    status::{self, ClusterShardReport, LeaseState},
};
use actix::{
    Actor, ActorContext as _, ActorFutureExt as _, Addr, AsyncContext as _, Context, Handler,
    Message, Recipient, ResponseActFuture, WrapFuture as _,
};
use discore_gateway::{EventFilter, IdentifyQueue, StopMode};
use discore_http::BotConnectionInfo;
use discore_manager::session_store::SessionStore as _;
use discore_manager::{
    AdoptShard, DiscoveryConfig, FleetEvent, GetFleetStatus, IdentifyConfig, IdentifyQueueChoice,
    ManagerConfig, ReleaseShard, ReshardMode, SessionConfig, ShardCount, ShardManager,
    ShutdownFleet,
};
use discore_protocol::ShardId;
use std::{
    collections::BTreeMap,
    fmt,
    sync::Arc,
    time::{Duration, Instant, SystemTime},
};
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
    /// Active with all its guilds at the last status.
    ready: bool,
    /// Its manager gave it up (refused by the gateway, or too many crashes).
    failed: bool,
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

/// What a fleet shares with its node, and how it runs.
pub(crate) struct FleetParts {
    pub(crate) node_id: String,
    pub(crate) total: u32,
    pub(crate) claim: Claim,
    pub(crate) rebalances: bool,
    pub(crate) lease_ttl: Duration,
    pub(crate) checkpoint_interval: Duration,
    pub(crate) status_interval: Duration,
    pub(crate) manager: ManagerConfig,
    pub(crate) info: BotConnectionInfo,
    pub(crate) queue: Arc<dyn IdentifyQueue>,
    pub(crate) redis: ClusterRedis,
    pub(crate) store: Arc<RedisSessionStore>,
    pub(crate) bus: Option<EventBus>,
    pub(crate) publisher: Option<Addr<EventPublisher>>,
    pub(crate) ledger: Option<Arc<PublishLedger>>,
    /// Told when a shard is refused with 4011 or 4010.
    pub(crate) resharding: Recipient<ReshardingRequired>,
}

/// A shard of a fleet was refused with 4011 or 4010: the cluster needs
/// another total.
#[derive(Clone, Copy, Debug, Message)]
#[rtype(result = "()")]
pub(crate) struct ReshardingRequired {
    pub(crate) shard: ShardId,
}

/// One shard generation of a node.
pub(crate) struct FleetNode {
    node_id: String,
    /// The key its status is published under: one per node and total.
    status_key: String,
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
    bus: Option<EventBus>,
    publisher: Option<Addr<EventPublisher>>,
    ledger: Option<Arc<PublishLedger>>,
    resharding: Recipient<ReshardingRequired>,
    shards: BTreeMap<u32, Owned>,
    stopping: Option<NodeShutdownReport>,
    /// Stopping for good: the generation was switched away from.
    retiring: bool,
    stop_waiters: Vec<oneshot::Sender<NodeShutdownReport>>,
}

impl fmt::Debug for FleetNode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FleetNode")
            .field("node", &self.node_id)
            .field("total", &self.total)
            .field("shards", &self.shards.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl FleetNode {
    /// Starts the fleet's manager with no shard and starts claiming leases
    /// in the pool of its total. Call it inside the actix system.
    ///
    /// # Errors
    ///
    /// [`ClusterError::InvalidConfig`] for a manager configuration that
    /// cannot work.
    pub(crate) async fn start(parts: FleetParts) -> Result<Addr<Self>, ClusterError> {
        let FleetParts {
            node_id,
            total,
            claim,
            rebalances,
            lease_ttl,
            checkpoint_interval,
            status_interval,
            manager: config,
            info,
            queue,
            redis,
            store,
            bus,
            publisher,
            ledger,
            resharding,
        } = parts;
        let client = LeaseClient::new(
            &redis,
            format!("shards-{total}"),
            node_id.clone(),
            lease_ttl,
            total,
        );
        let fences = Arc::<Fences>::default();
        let max_age = config
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
            ..config.identify_settings().clone()
        };
        let mut manager = config
            .clone()
            .shard_count(ShardCount::Adopted { total })
            .resharding(ReshardMode::Disabled)
            .discovery(DiscoveryConfig {
                gateway_bot: Some(info),
                ..config.discovery_settings().clone()
            })
            .identify(identify)
            .sessions(SessionConfig {
                max_age,
                checkpoint_interval: Some(checkpoint_interval),
                ..SessionConfig::new(Arc::new(fenced))
            });
        if let Some(publisher) = &publisher {
            manager = manager.subscribe(publisher.clone().recipient(), EventFilter::all());
        }
        // The manager tells the fleet of refused shards: its address is
        // needed before the manager starts.
        let context = Context::new();
        let manager = manager.subscribe_fleet(context.address().recipient());
        let manager = ShardManager::launch(manager)
            .await
            .map_err(|error| ClusterError::InvalidConfig(format!("the node's manager: {error}")))?;
        Ok(context.run(Self {
            status_key: format!("{node_id}@{total}"),
            node_id,
            total,
            claim,
            rebalances,
            status_interval,
            max_age,
            redis,
            leases: LeaseHolder::new(client),
            store,
            fences,
            manager,
            bus,
            publisher,
            ledger,
            resharding,
            shards: BTreeMap::new(),
            stopping: None,
            retiring: false,
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
                ready: false,
                failed: false,
            },
        );
        let shard = self.shard(number);
        let lookup = self.store.load_one(shard);
        let ledger = self.ledger.clone();
        let publisher = self.publisher.clone();
        let manager = self.manager.clone();
        let max_age = self.max_age;
        ctx.spawn(
            async move {
                if let Some(publisher) = &publisher {
                    // Whatever a re-sharding gate held of an earlier run is
                    // replayed.
                    let _ = publisher.send(Gated(GateCall::Forget(shard))).await;
                }
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
        let key = self.status_key.clone();
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
                if let Err(error) = status::publish(&redis, &key, &reports, ttl).await {
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
                        owned.ready = owned.active && report.guilds_loaded >= report.guilds;
                        owned.failed = report.run_state.starts_with("failed");
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

    fn part(&self) -> FleetPart {
        FleetPart {
            total: self.total,
            shards: self
                .shards
                .iter()
                .filter_map(|(n, o)| {
                    Some(FleetShard {
                        number: *n,
                        token: self.leases.token(*n)?,
                        lease: o.lease_state(),
                        ready: o.ready,
                        failed: o.failed,
                    })
                })
                .collect(),
            target: self.leases.target(),
            members: self.leases.members(),
        }
    }
}

impl Actor for FleetNode {
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
        let mode = if self.retiring {
            StopMode::End
        } else {
            StopMode::HandOff
        };
        self.manager.do_send(ShutdownFleet(mode));
        log::info!(
            "node {}: fleet of {} shards stopped",
            self.node_id,
            self.total
        );
    }
}

/// A fleet's shards as its node sees them.
#[derive(Clone, Debug)]
pub(crate) struct FleetShard {
    pub(crate) number: u32,
    pub(crate) token: u64,
    pub(crate) lease: LeaseState,
    /// Live with all its guilds at the last status.
    pub(crate) ready: bool,
    /// Given up by its manager.
    pub(crate) failed: bool,
}

/// What a fleet holds.
#[derive(Clone, Debug)]
pub(crate) struct FleetPart {
    pub(crate) total: u32,
    pub(crate) shards: Vec<FleetShard>,
    pub(crate) target: u32,
    pub(crate) members: u32,
}

/// Asks a fleet what it holds.
#[derive(Clone, Copy, Debug, Message)]
#[rtype(result = "FleetPart")]
pub(crate) struct GetFleetPart;

impl Handler<GetFleetPart> for FleetNode {
    type Result = actix::MessageResult<GetFleetPart>;

    fn handle(&mut self, _: GetFleetPart, _: &mut Context<Self>) -> Self::Result {
        actix::MessageResult(self.part())
    }
}

impl Handler<FleetEvent> for FleetNode {
    type Result = ();

    /// Passes a refused shard on to the node, which re-shards the cluster.
    fn handle(&mut self, event: FleetEvent, _: &mut Context<Self>) {
        if let FleetEvent::ReshardingRequired { shard, reason } = event {
            log::warn!("node {}: shard {shard} refused ({reason})", self.node_id);
            self.resharding.do_send(ReshardingRequired { shard });
        }
    }
}

/// Stops a fleet for good after the cluster switched to another total:
/// its sessions end (1000), nothing of them is saved, its leases and its
/// status go.
#[derive(Clone, Copy, Debug, Message)]
#[rtype(result = "()")]
pub(crate) struct RetireFleet;

impl Handler<RetireFleet> for FleetNode {
    type Result = ResponseActFuture<Self, ()>;

    fn handle(&mut self, _: RetireFleet, _: &mut Context<Self>) -> Self::Result {
        log::info!(
            "node {}: the fleet of {} shards retires",
            self.node_id,
            self.total
        );
        self.retiring = true;
        self.stopping = Some(NodeShutdownReport::default());
        let numbers: Vec<u32> = self.shards.keys().copied().collect();
        let ended: Vec<ShardId> = numbers.iter().map(|n| self.shard(*n)).collect();
        for number in numbers {
            // The fence goes first: nothing of the old session is saved.
            self.forget(number);
            // Left to expire, not released: the other nodes retire their
            // old fleets when they see the new total served, a status
            // interval or so apart, and one that has not yet would claim a
            // released lease and identify the old shard again. (A new
            // fleet given up retires this way too: a later attempt at the
            // same total waits at most a TTL for its leases.)
            self.leases.forget(number);
        }
        let leave = self.leases.leave();
        let redis = self.redis.clone();
        let key = self.status_key.clone();
        let manager = self.manager.clone();
        let store = Arc::clone(&self.store);
        Box::pin(
            async move {
                let _ = manager.send(ShutdownFleet(StopMode::End)).await;
                // The ended sessions' checkpoints are of no use to anyone.
                if let Err(error) = store.remove(ended).await {
                    log::debug!("removing the old generation's sessions failed: {error}");
                }
                if let Err(error) = leave.await {
                    log::debug!("leaving the old generation's pool failed: {error}");
                }
                let _ = status::withdraw(&redis, &key).await;
            }
            .into_actor(self)
            .map(|(), _, ctx| ctx.stop()),
        )
    }
}

/// Hands every shard of a fleet over and stops it (a node's clean stop).
#[derive(Clone, Copy, Debug, Message)]
#[rtype(result = "Result<NodeShutdownReport, ClusterError>")]
pub(crate) struct HandOverFleet;

impl Handler<HandOverFleet> for FleetNode {
    type Result = ResponseActFuture<Self, Result<NodeShutdownReport, ClusterError>>;

    /// Hands every shard over, leaves the pool and stops.
    fn handle(&mut self, _: HandOverFleet, ctx: &mut Context<Self>) -> Self::Result {
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
        let key = self.status_key.clone();
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
                if let Err(error) = status::withdraw(&redis, &key).await {
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
