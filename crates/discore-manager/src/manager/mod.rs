//! The `ShardManager` actor.
//!
//! `mod.rs` holds its state, the start and the placement of shards;
//! `supervise.rs` reacts to shard lifecycles and exits (restarts, fatal
//! codes); `progress.rs` collects statuses for readiness; `reshard.rs`
//! re-shards; `messages.rs` is what users can ask of the manager;
//! `adopt.rs` adds and removes single shards at run time; `launch.rs` starts
//! a fleet, pacing its connections.

mod adopt;
mod launch;
mod messages;
mod progress;
mod reshard;
mod supervise;

pub use adopt::{AdoptShard, Adopted, ReleaseShard, Released};
pub use messages::{
    GetFleetStatus, Reshard, SendCommandTo, ShutdownFleet, ShutdownReport, SubscribeFleet,
    WaitUntilReady,
};

use crate::{
    align::{KnownGuilds, Recorder, union_filter},
    arbiters::Arbiters,
    config::{IdentifyLimits, IdentifyQueueChoice, ManagerConfig, SessionConfig, ShardCount},
    error::ManagerError,
    event::{FleetEvent, FleetProgress, FleetStop, ShardFailure},
    identify::OrderedIdentifyQueue,
    intensity::RestartIntensity,
    relay::{Mode, Relay, SetSubscribers, Subscriber},
    session_store::{SavedSession, SessionStore},
};
use actix::{Actor, ActorContext as _, Addr, AsyncContext as _, Context, Recipient};
use discore_gateway::{
    EventFilter, GatewayEvent, IdentifyQueue, InMemoryIdentifyQueue, SessionStartLimit, Shard,
    ShardConfig, ShardLifecycle, ShardStatus, Subscribe, Unsubscribe,
};
use discore_http::{BotConnectionInfo, RestClient};
use discore_protocol::{Session, ShardId};
use reshard::Resharding;
use std::{
    collections::{BTreeMap, HashMap, VecDeque},
    fmt,
    ops::Range,
    sync::Arc,
    time::{Duration, Instant, SystemTime},
};
use tokio::sync::oneshot;
use twilight_model::gateway::payload::outgoing::update_presence::UpdatePresencePayload;

/// Which of the (at most two) fleets.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub(crate) enum Role {
    /// The fleet that serves events and commands.
    Active,
    /// The fleet a zero-downtime re-sharding is starting.
    Next,
}

/// What the manager knows of one shard slot.
pub(crate) enum SlotState {
    /// A launch has not started it yet: it waits for its turn to connect.
    Waiting,
    Running(Addr<Shard>),
    Restarting,
    /// Shutdown was sent; its exit is expected.
    Stopping,
    Failed(ShardFailure),
    Stopped,
}

pub(crate) struct Slot {
    pub(crate) id: ShardId,
    pub(crate) state: SlotState,
    pub(crate) relay: Option<Addr<Relay>>,
    pub(crate) arbiter: usize,
    pub(crate) intensity: RestartIntensity,
    pub(crate) restarts: u32,
    /// The session to start with: saved, or left by a crash.
    pub(crate) session: Option<Session>,
    /// The last status collected.
    pub(crate) status: Option<ShardStatus>,
    /// When the current session became active.
    pub(crate) active_since: Option<Instant>,
    /// Counts starts, so a restart timer of an older start is ignored.
    pub(crate) instance: u64,
}

impl Slot {
    fn new(id: ShardId, session: Option<Session>) -> Self {
        Self {
            id,
            state: SlotState::Stopped,
            relay: None,
            arbiter: 0,
            intensity: RestartIntensity::default(),
            restarts: 0,
            session,
            status: None,
            active_since: None,
            instance: 0,
        }
    }

    pub(crate) fn addr(&self) -> Option<&Addr<Shard>> {
        match &self.state {
            SlotState::Running(addr) => Some(addr),
            _ => None,
        }
    }
}

/// A set of shards with one total.
pub(crate) struct Fleet {
    pub(crate) total: u32,
    pub(crate) slots: BTreeMap<u32, Slot>,
    /// Readiness was announced and still holds.
    pub(crate) ready: bool,
    pub(crate) progress: FleetProgress,
    /// The shards its launch has yet to start.
    pub(crate) launch: launch::Launch,
}

impl Fleet {
    fn new(total: u32, ids: Range<u32>, sessions: &mut HashMap<u32, Session>) -> Self {
        let slots = ids
            .map(|n| (n, Slot::new(ShardId::new(n, total), sessions.remove(&n))))
            .collect();
        Self {
            total,
            slots,
            ready: false,
            progress: FleetProgress::default(),
            launch: launch::Launch::default(),
        }
    }

    pub(crate) fn ids(&self) -> Range<u32> {
        let first = self.slots.keys().next().copied().unwrap_or(0);
        let last = self.slots.keys().next_back().map_or(first, |n| n + 1);
        first..last
    }
}

/// Runs a bot's fleet of [`Shard`]s: starts them under the identify rate
/// limits, spreads them over arbiters, delivers their events to the
/// subscribed recipients, routes commands, restarts crashed shards, stops
/// on fatal codes, re-shards without downtime and hands sessions off on
/// shutdown. See `docs/shard-manager.md`.
///
/// ```no_run
/// use actix::prelude::*;
/// use discore_gateway::GatewayEvent;
/// use discore_manager::{ManagerConfig, ShardManager, WaitUntilReady};
/// use discore_protocol::{Intents, Token};
///
/// struct Bot;
/// impl Actor for Bot {
///     type Context = Context<Self>;
/// }
/// impl Handler<GatewayEvent> for Bot {
///     type Result = ();
///     fn handle(&mut self, event: GatewayEvent, _: &mut Context<Self>) {
///         println!("shard {}: {}", event.shard, event.name());
///     }
/// }
///
/// #[actix::main]
/// async fn main() -> Result<(), Box<dyn std::error::Error>> {
///     let token = Token::new(std::env::var("DISCORD_TOKEN")?)?;
///     let bot = Bot.start();
///     let manager = ShardManager::start(
///         ManagerConfig::new(token, Intents::GUILDS | Intents::GUILD_MESSAGES),
///         bot.recipient(),
///     )
///     .await?;
///     let progress = manager.send(WaitUntilReady).await??;
///     println!("fleet ready: {progress}");
///     actix_rt::signal::ctrl_c().await?;
///     Ok(())
/// }
/// ```
pub struct ShardManager {
    /// The configuration it was started with; its subscribers moved to
    /// the fields below.
    pub(crate) config: ManagerConfig,
    /// The gateway URL shards connect to.
    pub(crate) gateway_url: String,
    pub(crate) rest: RestClient,
    pub(crate) queue: Arc<OrderedIdentifyQueue>,
    /// How many shards of a launch may connect before they are READY.
    pub(crate) connect_limit: usize,
    pub(crate) arbiters: Arbiters,
    pub(crate) subscribers: Vec<Subscriber>,
    pub(crate) lifecycle: Vec<Recipient<ShardLifecycle>>,
    pub(crate) fleet_subscribers: Vec<Recipient<FleetEvent>>,
    pub(crate) known: Arc<KnownGuilds>,
    pub(crate) active: Fleet,
    pub(crate) next: Option<Fleet>,
    pub(crate) reshard: Option<Resharding>,
    /// The presence last sent to all shards: new sessions identify with it.
    pub(crate) presence: Option<UpdatePresencePayload>,
    pub(crate) waiters: Vec<oneshot::Sender<Result<FleetProgress, ManagerError>>>,
    pub(crate) polling: bool,
    pub(crate) stopping: bool,
}

impl fmt::Debug for ShardManager {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ShardManager")
            .field("total", &self.active.total)
            .field("shards", &self.active.slots.len())
            .field("ready", &self.active.ready)
            .field("resharding", &self.next.as_ref().map(|n| n.total))
            .field("subscribers", &self.subscribers.len())
            .finish_non_exhaustive()
    }
}

impl ShardManager {
    /// Starts a fleet that delivers every event to `recipient`, as in
    /// `ShardManager::start(ManagerConfig::new(token, intents), bot.recipient())`.
    ///
    /// Completes once the shard count is known and every shard has been
    /// started; the shards then connect and identify under the identify
    /// queue. [`WaitUntilReady`] or a fleet subscriber tells when all are
    /// ready.
    ///
    /// # Errors
    ///
    /// [`ManagerError::Discovery`] when `GET /gateway/bot` fails (a rejected
    /// token is [`discore_http::HttpError::Unauthorized`]), and
    /// [`ManagerError::InvalidConfig`] for a configuration that cannot work.
    pub async fn start(
        config: ManagerConfig,
        recipient: Recipient<GatewayEvent>,
    ) -> Result<Addr<Self>, ManagerError> {
        Self::launch(config.subscribe(recipient, EventFilter::all())).await
    }

    /// Starts a fleet with the subscribers the configuration names (none is
    /// fine: add them later with [`Subscribe`]). See [`ShardManager::start`].
    ///
    /// # Errors
    ///
    /// As [`ShardManager::start`].
    pub async fn launch(config: ManagerConfig) -> Result<Addr<Self>, ManagerError> {
        config.validate().map_err(ManagerError::InvalidConfig)?;
        let mut config = config.normalized();
        let discovery = &config.discovery;
        let rest = RestClient::builder(config.token.clone())
            .base_url(discovery.rest_url.clone())
            .max_attempts(discovery.rest_attempts)
            .build()
            .map_err(ManagerError::Discovery)?;
        let info = match discovery.gateway_bot.clone() {
            Some(info) => info,
            None => rest.gateway_bot().await?,
        };
        let saved = load_sessions(config.sessions.as_ref()).await;
        let (total, ids) = shard_layout(&config.shard_count, &info, &saved);
        let mut sessions: HashMap<u32, Session> = saved
            .into_iter()
            .filter(|s| s.shard.total() == total && ids.contains(&s.shard.number()))
            .map(|s| (s.shard.number(), s.session))
            .collect();
        log::info!(
            total, shards = ids.len(), saved_sessions = sessions.len();
            "starting shards {ids:?} of {total} ({} with a saved session to resume)",
            sessions.len()
        );
        let (inner, buckets) = match &config.identify.queue {
            IdentifyQueueChoice::Given(queue) => (
                Arc::clone(queue),
                u32::from(info.session_start_limit.max_concurrency).max(1),
            ),
            IdentifyQueueChoice::InMemory(limits) => {
                let buckets = max_concurrency(limits, &info);
                (in_memory_queue(limits, buckets, &info), buckets)
            }
        };
        let connect_limit = usize::try_from(
            u64::from(buckets).saturating_mul(1 + u64::from(config.identify.connect_ahead)),
        )
        .unwrap_or(usize::MAX);
        let queue = Arc::new(OrderedIdentifyQueue::new(
            inner,
            config.identify.order_timeout,
        ));
        let gateway_url = config.discovery.gateway_url.clone().unwrap_or(info.url);
        let subscribers = std::mem::take(&mut config.subscribers);
        let manager = Self {
            rest,
            queue,
            connect_limit,
            arbiters: Arbiters::new(&config.placement),
            gateway_url,
            subscribers: subscribers
                .events
                .into_iter()
                .map(|(recipient, filter)| Subscriber { recipient, filter })
                .collect(),
            lifecycle: subscribers.lifecycle,
            fleet_subscribers: subscribers.fleet,
            known: Arc::default(),
            active: Fleet::new(total, ids, &mut sessions),
            next: None,
            reshard: None,
            presence: None,
            waiters: Vec::new(),
            polling: false,
            stopping: false,
            config,
        };
        Ok(Actor::start(manager))
    }

    /// The fleet in `role`.
    pub(crate) fn fleet(&self, role: Role) -> Option<&Fleet> {
        match role {
            Role::Active => Some(&self.active),
            Role::Next => self.next.as_ref(),
        }
    }

    pub(crate) fn fleet_mut(&mut self, role: Role) -> Option<&mut Fleet> {
        match role {
            Role::Active => Some(&mut self.active),
            Role::Next => self.next.as_mut(),
        }
    }

    /// The fleet a shard id belongs to: the totals of the two fleets differ.
    pub(crate) fn role_of(&self, shard: ShardId) -> Option<Role> {
        if self.active.total == shard.total() && self.active.slots.contains_key(&shard.number()) {
            Some(Role::Active)
        } else if self
            .next
            .as_ref()
            .is_some_and(|n| n.total == shard.total() && n.slots.contains_key(&shard.number()))
        {
            Some(Role::Next)
        } else {
            None
        }
    }

    pub(crate) fn slot_mut(&mut self, role: Role, number: u32) -> Option<&mut Slot> {
        self.fleet_mut(role)?.slots.get_mut(&number)
    }

    /// Tells every fleet subscriber.
    pub(crate) fn notify(&mut self, event: FleetEvent) {
        log::debug!("fleet: {event:?}");
        self.fleet_subscribers.retain(Recipient::connected);
        for subscriber in &self.fleet_subscribers {
            subscriber.do_send(event.clone());
        }
    }

    /// The subscribers as relays hold them.
    pub(crate) fn shared_subscribers(&self) -> Arc<[Subscriber]> {
        self.subscribers.iter().cloned().collect()
    }

    /// The filter shards are subscribed with.
    pub(crate) fn shard_filter(&self) -> EventFilter {
        union_filter(self.subscribers.iter().map(|s| &s.filter))
    }

    /// Tells relays and shards about a change of subscribers.
    pub(crate) fn subscribers_changed(&mut self) {
        self.subscribers.retain(|s| s.recipient.connected());
        let shared = self.shared_subscribers();
        let filter = self.shard_filter();
        for fleet in [Some(&self.active), self.next.as_ref()]
            .into_iter()
            .flatten()
        {
            for slot in fleet.slots.values() {
                let Some(relay) = &slot.relay else { continue };
                relay.do_send(SetSubscribers(Arc::clone(&shared)));
                if let Some(shard) = slot.addr() {
                    // Unsubscribe and Subscribe reach the shard back to back.
                    let recipient = relay.clone().recipient();
                    shard.do_send(Unsubscribe(recipient.clone()));
                    shard.do_send(Subscribe {
                        recipient,
                        filter: filter.clone(),
                    });
                }
            }
        }
    }

    /// The relay mode for a (re)started shard of `role`.
    fn relay_mode(&self, role: Role) -> Mode {
        match role {
            Role::Next => Mode::Staging(VecDeque::new()),
            Role::Active if self.recording() => {
                Mode::Recording(Recorder::new(self.config.resharding.history))
            }
            Role::Active => Mode::Live,
        }
    }

    /// The shard configuration of one slot.
    fn shard_config(&self, session: Option<Session>) -> ShardConfig {
        let queue: Arc<dyn IdentifyQueue> = Arc::clone(&self.queue) as Arc<dyn IdentifyQueue>;
        let mut config = self
            .config
            .shard_config
            .clone()
            .intents(self.config.intents)
            .gateway_url(self.gateway_url.clone())
            .identify_queue(queue);
        if let Some(presence) = &self.presence {
            config = config.presence(presence.clone());
        }
        if let Some(session) = session {
            config = config.session(session);
        }
        config
    }

    /// Starts the shard of a slot (and its relay, unless it still runs) on
    /// the slot's arbiter.
    pub(crate) fn spawn(&mut self, role: Role, number: u32, ctx: &mut Context<Self>) {
        let (index, arbiter) = self.arbiters.for_shard(number);
        let mode = self.relay_mode(role);
        let shared = self.shared_subscribers();
        let filter = self.shard_filter();
        let known = Arc::clone(&self.known);
        let lifecycle = ctx.address().recipient::<ShardLifecycle>();
        let exit = ctx.address().recipient::<discore_gateway::ShardExited>();
        let Some(slot) = self.fleet(role).and_then(|f| f.slots.get(&number)) else {
            return;
        };
        let id = slot.id;
        let session = slot.session.clone();
        let config = self.shard_config(session);
        let relay = match slot.relay.clone().filter(Addr::connected) {
            Some(relay) => relay,
            None => Relay::start_in_arbiter(&arbiter, move |_| Relay::new(id, shared, mode, known)),
        };
        let relay_recipient = relay.clone().recipient();
        let token = self.config.token.clone();
        let shard = <Shard as Actor>::start_in_arbiter(&arbiter, move |_| {
            Shard::new(token, id, config)
                .subscribe(relay_recipient, filter)
                .subscribe_lifecycle(lifecycle)
                .on_exit(exit)
        });
        let Some(slot) = self.slot_mut(role, number) else {
            return;
        };
        log::debug!(
            shard = id.number(), total = id.total(), arbiter = index;
            "shard {id}: started on arbiter {index}"
        );
        slot.session = None;
        slot.status = None;
        slot.active_since = None;
        slot.arbiter = index;
        slot.relay = Some(relay);
        slot.instance += 1;
        slot.state = SlotState::Running(shard);
    }

    /// Stops every shard of a fleet (their exits are expected) and the
    /// fleet's relays with them.
    pub(crate) fn stop_fleet(
        queue: &OrderedIdentifyQueue,
        fleet: &mut Fleet,
        mode: discore_gateway::StopMode,
    ) {
        fleet.launch = launch::Launch::default();
        for slot in fleet.slots.values_mut() {
            queue.forget(slot.id);
            if let SlotState::Running(addr) = &slot.state {
                addr.do_send(discore_gateway::Shutdown(mode));
                slot.state = SlotState::Stopping;
            } else if !matches!(slot.state, SlotState::Failed(_)) {
                slot.state = SlotState::Stopped;
            }
            slot.relay = None;
        }
    }

    /// Ends the manager: tells subscribers and waiters, stops the actor.
    pub(crate) fn finish(&mut self, stop: FleetStop, ctx: &mut Context<Self>) {
        self.stopping = true;
        let error = match &stop {
            FleetStop::Fatal(reason) => ManagerError::Fatal(*reason),
            _ => ManagerError::Stopped,
        };
        for waiter in self.waiters.drain(..) {
            let _ = waiter.send(Err(error.clone()));
        }
        self.notify(FleetEvent::Stopped(stop));
        ctx.stop();
    }

    /// Saves sessions to the store, if there is one, in the background.
    pub(crate) fn save_sessions(&self, sessions: Vec<SavedSession>, ctx: &mut Context<Self>) {
        let Some(store) = self.store() else {
            return;
        };
        if sessions.is_empty() {
            return;
        }
        ctx.spawn(actix::fut::wrap_future(async move {
            if let Err(error) = store.save(sessions).await {
                log::warn!("saving sessions failed: {error}");
            }
        }));
    }

    /// The session store, if sessions are kept.
    pub(crate) fn store(&self) -> Option<Arc<dyn SessionStore>> {
        self.config.sessions.as_ref().map(|s| Arc::clone(&s.store))
    }

    /// Whether the active fleet's relays record (a re-sharding is starting
    /// the next fleet).
    pub(crate) fn recording(&self) -> bool {
        self.next.is_some()
    }
}

impl Actor for ShardManager {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        self.launch_fleet(Role::Active, ctx);
        if let Some(interval) = self
            .config
            .sessions
            .as_ref()
            .and_then(|s| s.checkpoint_interval)
        {
            ctx.run_interval(interval, |manager, ctx| manager.checkpoint(ctx));
        }
    }

    fn stopped(&mut self, _ctx: &mut Self::Context) {
        for fleet in [Some(&self.active), self.next.as_ref()]
            .into_iter()
            .flatten()
        {
            for slot in fleet.slots.values() {
                if let Some(addr) = slot.addr() {
                    addr.do_send(discore_gateway::Shutdown(
                        discore_gateway::StopMode::HandOff,
                    ));
                }
            }
        }
        // Let the shards' close frames go out before their threads stop.
        let mut arbiters = std::mem::replace(&mut self.arbiters, Arbiters::empty());
        let grace = self.config.supervision.shutdown_grace;
        actix_rt::spawn(async move {
            actix_rt::time::sleep(grace).await;
            arbiters.stop_owned();
        });
        log::info!("shard manager stopped");
    }
}

/// Fresh sessions from the store; a failing store only costs identifies.
async fn load_sessions(sessions: Option<&SessionConfig>) -> Vec<SavedSession> {
    let Some(sessions) = sessions else {
        return Vec::new();
    };
    match sessions.store.load().await {
        Ok(saved) => {
            let now = SystemTime::now();
            saved
                .into_iter()
                .filter(|s| s.age(now) <= sessions.max_age)
                .collect()
        }
        Err(error) => {
            log::warn!("loading saved sessions failed, every shard identifies: {error}");
            Vec::new()
        }
    }
}

/// The total and the shard ids this process runs.
fn shard_layout(
    count: &ShardCount,
    info: &BotConnectionInfo,
    saved: &[SavedSession],
) -> (u32, Range<u32>) {
    let total = match count {
        ShardCount::Range { ids, total } => return (*total, ids.clone()),
        ShardCount::Adopted { total } => return (*total, 0..0),
        ShardCount::Fixed(total) => *total,
        ShardCount::Auto => complete_saved_total(saved).unwrap_or(info.shards.max(1)),
    };
    (total, 0..total)
}

/// The total of a complete set of saved sessions (one for every shard id),
/// the most recently saved if there are several.
fn complete_saved_total(saved: &[SavedSession]) -> Option<u32> {
    let mut by_total: BTreeMap<u32, (Vec<bool>, u64)> = BTreeMap::new();
    for s in saved {
        let total = s.shard.total();
        let entry = by_total
            .entry(total)
            .or_insert_with(|| (vec![false; total as usize], 0));
        if let Some(seen) = entry.0.get_mut(s.shard.number() as usize) {
            *seen = true;
        }
        entry.1 = entry.1.max(s.saved_at_ms);
    }
    by_total
        .into_iter()
        .filter(|(_, (seen, _))| seen.iter().all(|s| *s))
        .max_by_key(|(_, (_, at))| *at)
        .map(|(total, _)| total)
}

/// The identify concurrency: configured, or from `/gateway/bot`.
fn max_concurrency(limits: &IdentifyLimits, info: &BotConnectionInfo) -> u32 {
    limits
        .max_concurrency
        .unwrap_or(u32::from(info.session_start_limit.max_concurrency))
        .max(1)
}

/// An in-memory queue with these limits, sized from `/gateway/bot`.
fn in_memory_queue(
    limits: &IdentifyLimits,
    max_concurrency: u32,
    info: &BotConnectionInfo,
) -> Arc<dyn IdentifyQueue> {
    let limit = &info.session_start_limit;
    let reserve = limits.reserve.unwrap_or_else(|| (limit.total / 20).max(1));
    Arc::new(
        InMemoryIdentifyQueue::with_window(max_concurrency, limits.window)
            .with_session_start_limit(SessionStartLimit {
                remaining: limit.remaining,
                reset_after: Duration::from_millis(limit.reset_after),
                total: limit.total,
                reserve,
            }),
    )
}

#[cfg(test)]
mod tests {
    use super::complete_saved_total;
    use crate::session_store::SavedSession;
    use discore_protocol::{Session, ShardId};
    use std::time::{Duration, SystemTime};

    fn saved(number: u32, total: u32, age: u64) -> SavedSession {
        SavedSession::at(
            ShardId::new(number, total),
            Session::new(format!("s{number}"), 1, None),
            SystemTime::now() - Duration::from_secs(age),
        )
    }

    #[test]
    fn a_complete_saved_set_decides_the_total() {
        assert_eq!(complete_saved_total(&[]), None);
        let partial = [saved(0, 3, 1), saved(2, 3, 1)];
        assert_eq!(complete_saved_total(&partial), None);
        let complete = [saved(0, 2, 10), saved(1, 2, 10), saved(0, 3, 1)];
        assert_eq!(complete_saved_total(&complete), Some(2));
        let two_sets = [saved(0, 1, 50), saved(0, 2, 5), saved(1, 2, 5)];
        assert_eq!(complete_saved_total(&two_sets), Some(2));
    }
}
