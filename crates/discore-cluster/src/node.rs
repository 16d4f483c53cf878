//! A gateway process of a cluster: holds shard leases, runs the leased
//! shards, checkpoints their sessions, publishes their status, and (with an
//! event bus) publishes their events and serves their commands.

use crate::{
    bus::{EventBus, EventPublisher, FlushPublisher, PublishLedger, serve_commands},
    error::ClusterError,
    identify::RedisIdentifyQueue,
    lease::{LeaseClient, Want},
    redis_conn::ClusterRedis,
    session_store::{Entry, RedisSessionStore},
    status::{self, ClusterShardReport, LeaseState},
};
use actix::{
    Actor, ActorContext as _, ActorFutureExt as _, Addr, Arbiter, AsyncContext as _, Context,
    Handler, Message, Recipient, ResponseActFuture, WrapFuture as _,
};
use discore_gateway::{
    EventFilter, GatewayEvent, IdentifyQueue, Intents, SessionStartLimit, ShardConfig, StopMode,
    Token,
};
use discore_http::{BotConnectionInfo, RestClient};
use discore_manager::{
    DiscoveryConfig, GetFleetStatus, IdentifyConfig, ManagerConfig, Placement, ReshardMode,
    SessionConfig, ShardCount, ShardManager, ShutdownFleet,
    session_store::{SavedSession, SessionStore, StoreFuture},
};
use discore_protocol::ShardId;
use std::{
    collections::{BTreeMap, HashMap},
    fmt,
    ops::Range,
    sync::{Arc, Mutex, PoisonError},
    time::{Duration, Instant},
};
use tokio::{sync::oneshot, task::JoinHandle};

/// Which shards a node runs.
#[derive(Clone, Debug, Eq, PartialEq)]
pub enum ShardAssignment {
    /// Exactly these shard ids (a Kubernetes StatefulSet pod's ordinal picks
    /// its range). The node waits for a lease another process still holds.
    Range(Range<u32>),
    /// A fair share of all shards among the live nodes: `total / nodes`,
    /// one more for the first `total % nodes` nodes by id. Nodes that join
    /// or leave make the others hand shards over (resumed, not identified).
    FairShare,
}

type Customize = Arc<dyn Fn(ManagerConfig) -> ManagerConfig + Send + Sync>;

/// How a [`ClusterNode`] runs. Every setter documents its default.
///
/// ```
/// use discore_cluster::{NodeConfig, ShardAssignment};
/// use discore_gateway::{Intents, Token};
/// use std::time::Duration;
///
/// let token = Token::new("token").expect("valid");
/// let config = NodeConfig::new(token, Intents::GUILDS, 24)
///     .node_id("gateway-0")
///     .assignment(ShardAssignment::Range(0..8))
///     .lease_ttl(Duration::from_secs(10));
/// # drop(config);
/// ```
#[derive(Clone)]
#[must_use]
pub struct NodeConfig {
    token: Token,
    intents: Intents,
    total: u32,
    assignment: ShardAssignment,
    node_id: String,
    rest_url: Option<String>,
    gateway_info: Option<BotConnectionInfo>,
    shard_config: Option<ShardConfig>,
    max_concurrency: Option<u32>,
    identify_window: Duration,
    identify_reserve: Option<u32>,
    lease_ttl: Duration,
    checkpoint_interval: Duration,
    status_interval: Duration,
    arbiters: usize,
    subscribers: Vec<(Recipient<GatewayEvent>, EventFilter)>,
    bus: Option<EventBus>,
    customize: Option<Customize>,
}

impl fmt::Debug for NodeConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NodeConfig")
            .field("token", &self.token)
            .field("total", &self.total)
            .field("assignment", &self.assignment)
            .field("node_id", &self.node_id)
            .field("lease_ttl", &self.lease_ttl)
            .field("checkpoint_interval", &self.checkpoint_interval)
            .field("bus", &self.bus)
            .finish_non_exhaustive()
    }
}

impl NodeConfig {
    /// A node of the bot with this token and intents, whose fleet has
    /// `total` shards; it takes a fair share of them.
    pub fn new(token: Token, intents: Intents, total: u32) -> Self {
        Self {
            token,
            intents,
            total: total.max(1),
            assignment: ShardAssignment::FairShare,
            node_id: default_node_id(),
            rest_url: None,
            gateway_info: None,
            shard_config: None,
            max_concurrency: None,
            identify_window: discore_protocol::limits::IDENTIFY_WINDOW,
            identify_reserve: None,
            lease_ttl: Duration::from_secs(10),
            checkpoint_interval: Duration::from_secs(1),
            status_interval: Duration::from_secs(2),
            arbiters: std::thread::available_parallelism().map_or(1, usize::from),
            subscribers: Vec::new(),
            bus: None,
            customize: None,
        }
    }

    /// Which shards. Default [`ShardAssignment::FairShare`].
    pub fn assignment(mut self, assignment: ShardAssignment) -> Self {
        self.assignment = assignment;
        self
    }

    /// The node's id: unique among the live nodes, stable names (a pod
    /// name) read best in the status. Default `HOSTNAME-PID-RANDOM`.
    pub fn node_id(mut self, id: impl Into<String>) -> Self {
        self.node_id = id.into();
        self
    }

    /// The REST base URL. Default Discord's.
    pub fn rest_url(mut self, url: impl Into<String>) -> Self {
        self.rest_url = Some(url.into());
        self
    }

    /// Uses this instead of calling `GET /gateway/bot` once at start.
    pub fn gateway_info(mut self, info: BotConnectionInfo) -> Self {
        self.gateway_info = Some(info);
        self
    }

    /// Every shard's configuration template. Default
    /// `ShardConfig::new(intents)`.
    pub fn shard_config(mut self, config: ShardConfig) -> Self {
        self.shard_config = Some(config);
        self
    }

    /// Identify buckets. Default `max_concurrency` from `GET /gateway/bot`.
    pub fn max_concurrency(mut self, max: u32) -> Self {
        self.max_concurrency = Some(max.max(1));
        self
    }

    /// One identify per bucket per this window, across the cluster.
    /// Default 5 s.
    pub fn identify_window(mut self, window: Duration) -> Self {
        self.identify_window = window;
        self
    }

    /// Identifies of the daily budget never spent. Default 5 % of the total,
    /// at least 1.
    pub fn identify_reserve(mut self, reserve: u32) -> Self {
        self.identify_reserve = Some(reserve);
        self
    }

    /// The lease TTL: a dead node's shards are taken over this long after
    /// its last renewal. Leases are renewed every third of it, and a node
    /// that could not renew stops its shards when four fifths of it have
    /// passed. Default 10 s.
    pub fn lease_ttl(mut self, ttl: Duration) -> Self {
        self.lease_ttl = ttl.max(Duration::from_millis(100));
        self
    }

    /// How often sessions are checkpointed (all shards of the node in one
    /// Redis write). A take-over resumes from the last checkpoint and has
    /// the rest replayed. Default 1 s.
    pub fn checkpoint_interval(mut self, interval: Duration) -> Self {
        self.checkpoint_interval = interval.max(Duration::from_millis(1));
        self
    }

    /// How often the node publishes its shards' status. Default 2 s.
    pub fn status_interval(mut self, interval: Duration) -> Self {
        self.status_interval = interval.max(Duration::from_millis(10));
        self
    }

    /// Arbiters (threads) the shards run on. Default one per core.
    pub fn arbiters(mut self, count: usize) -> Self {
        self.arbiters = count.max(1);
        self
    }

    /// Delivers the events `filter` selects to `recipient`, in this process.
    pub fn subscribe(mut self, recipient: Recipient<GatewayEvent>, filter: EventFilter) -> Self {
        self.subscribers.push((recipient, filter));
        self
    }

    /// Publishes every event to `bus` and serves commands for the shards
    /// this node runs. Default: no bus.
    pub fn event_bus(mut self, bus: EventBus) -> Self {
        self.bus = Some(bus);
        self
    }

    /// Adjusts each shard's manager configuration (restart policy, timeouts,
    /// anything not set here) before it starts. The node sets the range,
    /// identify queue, session store, checkpoints, arbiters and gateway info
    /// after this runs.
    pub fn configure_manager(
        mut self,
        f: impl Fn(ManagerConfig) -> ManagerConfig + Send + Sync + 'static,
    ) -> Self {
        self.customize = Some(Arc::new(f));
        self
    }
}

fn default_node_id() -> String {
    let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "node".to_owned());
    format!("{host}-{}-{:04x}", std::process::id(), fastrand::u16(..))
}

/// Which fencing token each shard's lease holds in this process; saves of a
/// shard whose lease is gone are refused here and again in Redis.
#[derive(Debug, Default)]
struct Fences(Mutex<HashMap<u32, u64>>);

impl Fences {
    fn get(&self, shard: u32) -> Option<u64> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&shard)
            .copied()
    }

    fn set(&self, shard: u32, token: Option<u64>) {
        let mut all = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        match token {
            Some(token) => all.insert(shard, token),
            None => all.remove(&shard),
        };
    }
}

/// The session store one shard's manager sees: its own session only, saves
/// fenced by its lease and bounded by what the event bus acknowledged.
struct ShardStore {
    shard: ShardId,
    store: Arc<RedisSessionStore>,
    fences: Arc<Fences>,
    leases: LeaseClient,
    ledger: Option<Arc<PublishLedger>>,
}

impl fmt::Debug for ShardStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ShardStore")
            .field("shard", &self.shard)
            .finish_non_exhaustive()
    }
}

impl SessionStore for ShardStore {
    fn save(&self, sessions: Vec<SavedSession>) -> StoreFuture<()> {
        let number = self.shard.number();
        let Some(token) = self.fences.get(number) else {
            log::debug!("shard {}: lease gone, checkpoint dropped", self.shard);
            return Box::pin(async { Ok(()) });
        };
        let entries = sessions
            .into_iter()
            .filter(|s| s.shard == self.shard)
            .map(|mut saved| {
                if let Some(ledger) = &self.ledger
                    && let Some(safe) = ledger.safe_sequence(self.shard, &saved.session.id)
                    && safe < saved.session.sequence
                {
                    saved.session.sequence = safe;
                }
                Entry {
                    saved,
                    fence: Some(self.leases.fence(number, token)),
                }
            })
            .collect();
        self.store.save_entries(entries)
    }

    fn load(&self) -> StoreFuture<Vec<SavedSession>> {
        let shard = self.shard;
        let load = self.store.load_one(shard);
        let ledger = self.ledger.clone();
        Box::pin(async move {
            let saved = load.await?;
            if let (Some(ledger), Some(saved)) = (&ledger, &saved) {
                ledger.set_session(shard, &saved.session.id);
            }
            Ok(saved.into_iter().collect())
        })
    }

    fn remove(&self, shards: Vec<ShardId>) -> StoreFuture<()> {
        if self.fences.get(self.shard.number()).is_none() || !shards.contains(&self.shard) {
            return Box::pin(async { Ok(()) });
        }
        self.store.remove(vec![self.shard])
    }
}

enum Run {
    Starting,
    Running(Addr<ShardManager>),
    Releasing(Addr<ShardManager>),
}

struct Owned {
    token: u64,
    run: Run,
    /// Stop the shard at this instant unless the lease is renewed.
    stop_by: Instant,
    commands: Option<JoinHandle<()>>,
    /// Its session was active at the last status: handing it over now
    /// costs a resume, not an identify.
    active: bool,
}

impl Owned {
    fn lease_state(&self) -> LeaseState {
        match self.run {
            Run::Starting => LeaseState::Starting,
            Run::Running(_) => LeaseState::Running,
            Run::Releasing(_) => LeaseState::Releasing,
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
    config: NodeConfig,
    redis: ClusterRedis,
    leases: LeaseClient,
    store: Arc<RedisSessionStore>,
    fences: Arc<Fences>,
    queue: Arc<dyn IdentifyQueue>,
    info: BotConnectionInfo,
    arbiters: Vec<Arbiter>,
    publisher: Option<Addr<EventPublisher>>,
    ledger: Option<Arc<PublishLedger>>,
    shards: BTreeMap<u32, Owned>,
    registered: bool,
    ticking: bool,
    target: u32,
    members: u32,
    stopping: Option<NodeShutdownReport>,
    stop_waiters: Vec<oneshot::Sender<NodeShutdownReport>>,
}

impl fmt::Debug for ClusterNode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClusterNode")
            .field("node", &self.config.node_id)
            .field("shards", &self.shards.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl ClusterNode {
    /// Starts a node: asks Discord for the gateway (unless given), builds
    /// the Redis identify queue and session store, and starts claiming
    /// leases. Call it inside the actix system.
    ///
    /// # Errors
    ///
    /// [`ClusterError::Discovery`] when `GET /gateway/bot` fails,
    /// [`ClusterError::InvalidConfig`] for a range outside the total.
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
        let info = match config.gateway_info.clone() {
            Some(info) => info,
            None => {
                let mut rest = RestClient::builder(config.token.clone());
                if let Some(url) = &config.rest_url {
                    rest = rest.base_url(url.clone());
                }
                let rest = rest.build().map_err(ClusterError::Discovery)?;
                rest.gateway_bot().await.map_err(ClusterError::Discovery)?
            }
        };
        let limit = &info.session_start_limit;
        let max_concurrency = config
            .max_concurrency
            .unwrap_or(u32::from(limit.max_concurrency))
            .max(1);
        let reserve = config
            .identify_reserve
            .unwrap_or_else(|| (limit.total / 20).max(1));
        let queue =
            RedisIdentifyQueue::with_window(&redis, max_concurrency, config.identify_window)
                .with_session_start_limit(SessionStartLimit {
                    remaining: limit.remaining,
                    reset_after: Duration::from_millis(limit.reset_after),
                    total: limit.total,
                    reserve,
                });
        let store = Arc::new(RedisSessionStore::batched(
            &redis,
            config.checkpoint_interval,
        ));
        let leases = LeaseClient::new(
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
        let arbiters = (0..config.arbiters).map(|_| Arbiter::new()).collect();
        log::info!(
            "node {}: {} of {} shards, lease ttl {:?}, {max_concurrency} identify buckets",
            config.node_id,
            match &config.assignment {
                ShardAssignment::Range(r) => format!("range {r:?}"),
                ShardAssignment::FairShare => "a fair share".to_owned(),
            },
            config.total,
            config.lease_ttl
        );
        Ok(Actor::start(Self {
            config,
            redis,
            leases,
            store,
            fences: Arc::default(),
            queue: Arc::new(queue),
            info,
            arbiters,
            publisher,
            ledger,
            shards: BTreeMap::new(),
            registered: false,
            ticking: false,
            target: 0,
            members: 0,
            stopping: None,
            stop_waiters: Vec::new(),
        }))
    }

    fn ttl(&self) -> Duration {
        self.config.lease_ttl
    }

    /// Stop a shard this long before its lease could expire.
    fn margin(&self) -> Duration {
        self.ttl() / 5
    }

    fn held(&self) -> Vec<(u32, u64)> {
        self.shards.iter().map(|(n, o)| (*n, o.token)).collect()
    }

    fn want(&self) -> Want {
        if self.stopping.is_some() {
            Want::Leave
        } else if !self.registered {
            Want::Register
        } else {
            match &self.config.assignment {
                ShardAssignment::Range(range) => Want::Fixed(range.clone().collect()),
                ShardAssignment::FairShare => Want::Share,
            }
        }
    }

    fn tick(&mut self, ctx: &mut Context<Self>) {
        if self.ticking {
            return;
        }
        self.ticking = true;
        let held = self.held();
        let want = self.want();
        let leases = self.leases.clone();
        let sent = Instant::now();
        ctx.spawn(
            async move { leases.tick(&held, &want).await }
                .into_actor(self)
                .map(move |result, node, ctx| {
                    node.ticking = false;
                    match result {
                        Ok(tick) => {
                            node.registered = true;
                            node.on_tick(sent, tick, ctx);
                        }
                        Err(error) => {
                            log::warn!(
                                "node {}: lease renewal failed: {error}",
                                node.config.node_id
                            );
                        }
                    }
                }),
        );
    }

    fn on_tick(&mut self, sent: Instant, tick: crate::lease::Tick, ctx: &mut Context<Self>) {
        let stop_by = sent + self.ttl() - self.margin();
        self.target = tick.target;
        self.members = tick.members;
        for number in &tick.renewed {
            if let Some(owned) = self.shards.get_mut(number) {
                owned.stop_by = stop_by;
            }
        }
        for number in tick.lost {
            self.lose(number, "its lease was taken or expired");
        }
        for (number, token) in tick.claimed {
            if self.stopping.is_some() {
                let leases = self.leases.clone();
                actix_rt::spawn(async move {
                    let _ = leases.release(&[(number, token)]).await;
                });
                continue;
            }
            self.begin(number, token, stop_by, ctx);
        }
        if self.stopping.is_none() && self.config.assignment == ShardAssignment::FairShare {
            self.rebalance(ctx);
        }
    }

    /// Hands over shards above the fair share, highest ids first, among
    /// those whose session is active (one still identifying would have to
    /// identify again elsewhere).
    fn rebalance(&mut self, ctx: &mut Context<Self>) {
        let active = self
            .shards
            .values()
            .filter(|o| !matches!(o.run, Run::Releasing(_)))
            .count();
        let excess = active.saturating_sub(self.target as usize);
        if excess == 0 {
            return;
        }
        let chosen: Vec<u32> = self
            .shards
            .iter()
            .rev()
            .filter(|(_, o)| matches!(o.run, Run::Running(_)) && o.active)
            .map(|(n, _)| *n)
            .take(excess)
            .collect();
        for number in chosen {
            log::info!(
                "node {}: handing shard {number} over ({} nodes, share {})",
                self.config.node_id,
                self.members,
                self.target
            );
            self.release(number, ctx);
        }
    }

    /// Starts the shard of a lease just claimed.
    fn begin(&mut self, number: u32, token: u64, stop_by: Instant, ctx: &mut Context<Self>) {
        log::info!(
            "node {}: shard {number} claimed (fencing token {token})",
            self.config.node_id
        );
        self.fences.set(number, Some(token));
        self.shards.insert(
            number,
            Owned {
                token,
                run: Run::Starting,
                stop_by,
                commands: None,
                active: false,
            },
        );
        let config = self.manager_config(number);
        ctx.spawn(
            async move { ShardManager::launch(config).await }
                .into_actor(self)
                .map(move |result, node, _| node.started(number, token, result)),
        );
    }

    fn started(
        &mut self,
        number: u32,
        token: u64,
        result: Result<Addr<ShardManager>, discore_manager::ManagerError>,
    ) {
        let current = self
            .shards
            .get_mut(&number)
            .filter(|o| o.token == token && matches!(o.run, Run::Starting));
        match (current, result) {
            (Some(owned), Ok(manager)) => {
                if let Some(bus) = &self.config.bus {
                    owned.commands = Some(actix_rt::spawn(serve_commands(
                        bus.clone(),
                        number,
                        manager.clone(),
                    )));
                }
                // During a shutdown, the shutdown loop hands it over.
                owned.run = Run::Running(manager);
            }
            (Some(_), Err(error)) => {
                log::error!(
                    "node {}: shard {number} did not start, lease released: {error}",
                    self.config.node_id
                );
                self.forget(number);
                let leases = self.leases.clone();
                actix_rt::spawn(async move {
                    let _ = leases.release(&[(number, token)]).await;
                });
            }
            (None, Ok(manager)) => {
                // The lease was lost while the manager started.
                manager.do_send(ShutdownFleet(StopMode::HandOff));
            }
            (None, Err(_)) => {}
        }
    }

    fn manager_config(&self, number: u32) -> ManagerConfig {
        let shard = ShardId::new(number, self.config.total);
        let mut config = ManagerConfig::new(self.config.token.clone(), self.config.intents);
        let mut discovery = DiscoveryConfig {
            gateway_bot: Some(self.info.clone()),
            ..DiscoveryConfig::default()
        };
        if let Some(url) = &self.config.rest_url {
            discovery.rest_url.clone_from(url);
        }
        if let Some(template) = &self.config.shard_config {
            config = config.shard_config(template.clone());
        }
        if let Some(customize) = &self.config.customize {
            config = customize(config);
        }
        let store = ShardStore {
            shard,
            store: Arc::clone(&self.store),
            fences: Arc::clone(&self.fences),
            leases: self.leases.clone(),
            ledger: self.ledger.clone(),
        };
        config = config
            .shard_count(ShardCount::Range {
                ids: number..number + 1,
                total: self.config.total,
            })
            .resharding(ReshardMode::Disabled)
            .discovery(discovery)
            .identify(IdentifyConfig::queue(Arc::clone(&self.queue)))
            .sessions(SessionConfig {
                checkpoint_interval: Some(self.config.checkpoint_interval),
                ..SessionConfig::new(Arc::new(store))
            })
            .placement(Placement::Given(
                self.arbiters.iter().map(Arbiter::handle).collect(),
            ));
        for (recipient, filter) in &self.config.subscribers {
            config = config.subscribe(recipient.clone(), filter.clone());
        }
        if let Some(publisher) = &self.publisher {
            config = config.subscribe(publisher.clone().recipient(), EventFilter::all());
        }
        config
    }

    fn forget(&mut self, number: u32) -> Option<Owned> {
        self.fences.set(number, None);
        if let Some(ledger) = &self.ledger {
            ledger.forget(ShardId::new(number, self.config.total));
        }
        let mut owned = self.shards.remove(&number)?;
        owned.stop_commands();
        Some(owned)
    }

    /// The lease is gone: stop the shard at once (its session stays
    /// resumable for whoever claims it next).
    fn lose(&mut self, number: u32, why: &str) {
        let Some(owned) = self.forget(number) else {
            return;
        };
        log::warn!(
            "node {}: shard {number} stopped, {why}",
            self.config.node_id
        );
        match owned.run {
            Run::Running(manager) | Run::Releasing(manager) => {
                manager.do_send(ShutdownFleet(StopMode::HandOff));
            }
            Run::Starting => {}
        }
        self.maybe_finished();
    }

    /// Hands a shard over: stop it saving its session, let the publisher
    /// catch up, then release the lease.
    fn release(&mut self, number: u32, ctx: &mut Context<Self>) {
        let Some(owned) = self.shards.get_mut(&number) else {
            return;
        };
        let Run::Running(manager) = &owned.run else {
            return;
        };
        let manager = manager.clone();
        owned.stop_commands();
        owned.run = Run::Releasing(manager.clone());
        let token = owned.token;
        let publisher = self.publisher.clone();
        ctx.spawn(
            async move {
                let report = manager.send(ShutdownFleet(StopMode::HandOff)).await;
                if let Some(publisher) = publisher {
                    let _ = publisher.send(FlushPublisher).await;
                }
                report
            }
            .into_actor(self)
            .map(move |report, node, _| {
                let saved = match report {
                    Ok(Ok(report)) => {
                        if let Some(error) = &report.store_error {
                            log::warn!("shard {number}: session not saved on hand-over: {error}");
                        }
                        report.sessions_saved
                    }
                    _ => 0,
                };
                let still_ours = node.shards.get(&number).is_some_and(|o| o.token == token);
                if !still_ours {
                    return;
                }
                node.forget(number);
                if let Some(report) = &mut node.stopping {
                    report.shards_released += 1;
                    report.sessions_saved += saved;
                }
                let leases = node.leases.clone();
                actix_rt::spawn(async move {
                    match leases.release(&[(number, token)]).await {
                        Ok(_) => log::info!("shard {number}: handed over ({saved} session saved)"),
                        Err(error) => log::warn!(
                            "shard {number}: releasing the lease failed, it expires instead: {error}"
                        ),
                    }
                });
                node.maybe_finished();
            }),
        );
    }

    /// Stops every shard whose lease could have expired.
    fn enforce_deadlines(&mut self) {
        let now = Instant::now();
        let expired: Vec<u32> = self
            .shards
            .iter()
            .filter(|(_, o)| now >= o.stop_by)
            .map(|(n, _)| *n)
            .collect();
        for number in expired {
            self.lose(number, "its lease could not be renewed in time");
        }
    }

    fn publish_status(&mut self, ctx: &mut Context<Self>) {
        let node = self.config.node_id.clone();
        let total = self.config.total;
        let targets: Vec<(u32, u64, LeaseState, Option<Addr<ShardManager>>)> = self
            .shards
            .iter()
            .map(|(n, o)| {
                let manager = match &o.run {
                    Run::Running(m) | Run::Releasing(m) => Some(m.clone()),
                    Run::Starting => None,
                };
                (*n, o.token, o.lease_state(), manager)
            })
            .collect();
        let redis = self.redis.clone();
        let ttl = (self.config.status_interval * 3).max(self.ttl());
        ctx.spawn(
            async move {
                let mut reports = Vec::with_capacity(targets.len());
                for (number, token, lease, manager) in targets {
                    let fleet = match manager {
                        Some(manager) => manager.send(GetFleetStatus).await.ok(),
                        None => None,
                    };
                    let report = fleet.as_ref().and_then(|f| f.shards.first());
                    reports.push(ClusterShardReport::from_manager(
                        &node,
                        token,
                        lease,
                        report,
                        ShardId::new(number, total),
                    ));
                }
                if let Err(error) = status::publish(&redis, &node, &reports, ttl).await {
                    log::debug!("node {node}: publishing status failed: {error}");
                }
                reports
            }
            .into_actor(self)
            .map(|reports, node, _| {
                for report in reports {
                    if let Some(owned) = node.shards.get_mut(&report.shard.number())
                        && owned.token == report.fencing_token
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
            node: self.config.node_id.clone(),
            shards: self
                .shards
                .iter()
                .map(|(n, o)| (*n, o.token, o.lease_state()))
                .collect(),
            target: self.target,
            members: self.members,
        }
    }
}

impl Actor for ClusterNode {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        let ttl = self.ttl();
        self.tick(ctx);
        ctx.run_interval(ttl / 3, |node, ctx| node.tick(ctx));
        ctx.run_interval((ttl / 20).max(Duration::from_millis(5)), |node, _| {
            node.enforce_deadlines();
        });
        ctx.run_interval(self.config.status_interval, |node, ctx| {
            node.publish_status(ctx);
        });
    }

    fn stopped(&mut self, _: &mut Context<Self>) {
        for number in self.shards.keys().copied().collect::<Vec<_>>() {
            self.lose(number, "the node stopped");
        }
        for arbiter in &self.arbiters {
            arbiter.stop();
        }
        log::info!("node {} stopped", self.config.node_id);
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
            log::info!("node {}: shutting down", self.config.node_id);
            self.stopping = Some(NodeShutdownReport::default());
        }
        let (done, finished) = oneshot::channel();
        self.stop_waiters.push(done);
        // Shards still starting are handed over once they run.
        ctx.run_interval(Duration::from_millis(20), |node, ctx| {
            let running: Vec<u32> = node
                .shards
                .iter()
                .filter(|(_, o)| matches!(o.run, Run::Running(_)))
                .map(|(n, _)| *n)
                .collect();
            for number in running {
                node.release(number, ctx);
            }
        });
        self.maybe_finished();
        let leases = self.leases.clone();
        let redis = self.redis.clone();
        let store = Arc::clone(&self.store);
        let node_id = self.config.node_id.clone();
        let publisher = self.publisher.clone();
        Box::pin(
            async move {
                let report = finished.await.map_err(|_| ClusterError::Stopped)?;
                if let Some(publisher) = publisher {
                    let _ = publisher.send(FlushPublisher).await;
                }
                if let Err(error) = store.flush().await {
                    log::warn!("node {node_id}: final checkpoint failed: {error}");
                }
                if let Err(error) = leases.tick(&[], &Want::Leave).await {
                    log::warn!("node {node_id}: leaving the cluster failed: {error}");
                }
                if let Err(error) = status::withdraw(&redis, &node_id).await {
                    log::debug!("node {node_id}: withdrawing status failed: {error}");
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
