//! What users can ask of a [`ShardManager`].
//!
//! Subscriptions reuse the gateway's messages: [`Subscribe`] and
//! [`Unsubscribe`] for events (each recipient with its own filter), and
//! [`SubscribeLifecycle`] for every shard's lifecycle.

use super::{Role, ShardManager, SlotState};
use crate::{
    error::{ManagerError, ReshardRefusal, RouteError},
    event::{FleetEvent, FleetProgress, FleetStop},
    relay::Subscriber,
    routing::{self, CommandTarget},
    session_store::SavedSession,
    status::{FleetStatus, ReshardingStatus, ShardReport, ShardRunState},
};
use actix::{
    ActorFutureExt as _, Context, Handler, Message, Recipient, ResponseActFuture, ResponseFuture,
    WrapFuture as _,
};
use discore_gateway::{
    Command, GetShardStatus, SendCommand, ShardStatus, Shutdown, StopMode, Subscribe,
    SubscribeLifecycle, Unsubscribe,
};
use discore_protocol::ShardId;
use futures_util::future::join_all;
use twilight_model::id::{Id, marker::GuildMarker};

/// Tells `recipient` about the fleet: progress, readiness, restarts,
/// failures, re-sharding.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct SubscribeFleet(pub Recipient<FleetEvent>);

/// Sends a command to one shard, to the shard of a guild, or to every shard.
///
/// Answers how many shards queued it. Commands go to the serving fleet; a
/// command still queued in a shard of an old fleet when a re-sharding
/// switches is dropped with that shard.
#[derive(Clone, Debug, Message)]
#[rtype(result = "Result<usize, RouteError>")]
pub struct SendCommandTo {
    /// Where it goes.
    pub target: CommandTarget,
    /// The command.
    pub command: Command,
}

impl SendCommandTo {
    /// To shard `id`.
    pub fn shard(id: u32, command: impl Into<Command>) -> Self {
        Self {
            target: CommandTarget::Shard(id),
            command: command.into(),
        }
    }

    /// To the shard holding `guild`.
    pub fn guild(guild: Id<GuildMarker>, command: impl Into<Command>) -> Self {
        Self {
            target: CommandTarget::Guild(guild),
            command: command.into(),
        }
    }

    /// To every shard; a presence sent this way is also the presence of
    /// every later session (restarts, a new fleet).
    pub fn all(command: impl Into<Command>) -> Self {
        Self {
            target: CommandTarget::AllShards,
            command: command.into(),
        }
    }

    /// Where the command itself says: a member request or voice state to
    /// its guild's shard, a presence to all shards; `None` for a command
    /// without a guild.
    pub fn routed(command: Command) -> Option<Self> {
        CommandTarget::of(&command).map(|target| Self { target, command })
    }
}

/// Asks for the status of every shard and of the fleet.
#[derive(Clone, Copy, Debug, Message)]
#[rtype(result = "FleetStatus")]
pub struct GetFleetStatus;

/// Resolves when the serving fleet is ready: every shard READY with all its
/// guilds. Answers at once if it is.
///
/// Fails with [`ManagerError::ShardFailed`] when a shard stops for good
/// meanwhile, and [`ManagerError::Fatal`] or [`ManagerError::Stopped`] when
/// the fleet stops.
#[derive(Clone, Copy, Debug, Message)]
#[rtype(result = "Result<FleetProgress, ManagerError>")]
pub struct WaitUntilReady;

/// Re-shards now: to this total, or to the count `GET /gateway/bot`
/// recommends. Answers once the re-sharding began (or was already under
/// way); [`FleetEvent::Resharded`] tells when it is done.
#[derive(Clone, Copy, Debug, Message)]
#[rtype(result = "Result<(), ManagerError>")]
pub struct Reshard(pub Option<u32>);

/// Stops the fleet and the manager.
///
/// [`StopMode::End`] closes every session with 1000 and forgets saved ones;
/// [`StopMode::HandOff`] closes with 4000 and saves every session to the
/// session store, for the next manager to resume.
#[derive(Clone, Copy, Debug, Message)]
#[rtype(result = "Result<ShutdownReport, ManagerError>")]
pub struct ShutdownFleet(pub StopMode);

/// What a shutdown did.
#[derive(Clone, Debug, Default, Eq, PartialEq)]
pub struct ShutdownReport {
    /// Shards that were running and stopped.
    pub shards_stopped: usize,
    /// Sessions saved to the store (hand-off).
    pub sessions_saved: usize,
    /// The store failed, if it did; the sessions are then lost.
    pub store_error: Option<String>,
}

impl Handler<Subscribe> for ShardManager {
    type Result = ();

    /// Adds an event recipient with its filter (replacing its earlier filter).
    fn handle(&mut self, Subscribe { recipient, filter }: Subscribe, _: &mut Context<Self>) {
        self.subscribers.retain(|s| s.recipient != recipient);
        self.subscribers.push(Subscriber { recipient, filter });
        self.subscribers_changed();
    }
}

impl Handler<Unsubscribe> for ShardManager {
    type Result = ();

    /// Removes an event recipient.
    fn handle(&mut self, Unsubscribe(recipient): Unsubscribe, _: &mut Context<Self>) {
        self.subscribers.retain(|s| s.recipient != recipient);
        self.subscribers_changed();
    }
}

impl Handler<SubscribeLifecycle> for ShardManager {
    type Result = ();

    /// Adds a recipient of every shard's lifecycle.
    fn handle(&mut self, SubscribeLifecycle(recipient): SubscribeLifecycle, _: &mut Context<Self>) {
        self.lifecycle.push(recipient);
    }
}

impl Handler<SubscribeFleet> for ShardManager {
    type Result = ();

    /// Adds a recipient of fleet events.
    fn handle(&mut self, SubscribeFleet(recipient): SubscribeFleet, _: &mut Context<Self>) {
        self.fleet_subscribers.push(recipient);
    }
}

impl Handler<SendCommandTo> for ShardManager {
    type Result = ResponseFuture<Result<usize, RouteError>>;

    /// Routes a command to its shards and queues it there.
    fn handle(&mut self, message: SendCommandTo, _: &mut Context<Self>) -> Self::Result {
        if self.stopping {
            return Box::pin(async { Err(RouteError::Stopping) });
        }
        let owned = self.active.ids();
        let numbers = match routing::resolve(message.target, self.active.total, &owned) {
            Ok(numbers) => numbers,
            Err(error) => return Box::pin(async move { Err(error) }),
        };
        if let (CommandTarget::AllShards, Command::UpdatePresence(presence)) =
            (message.target, &message.command)
        {
            self.presence = Some(presence.clone());
        }
        let broadcast = message.target == CommandTarget::AllShards;
        let mut targets = Vec::with_capacity(numbers.len());
        for number in numbers {
            let Some(slot) = self.active.slots.get(&number) else {
                // A gap among adopted shards: another process runs it.
                if broadcast {
                    continue;
                }
                return Box::pin(async move {
                    Err(RouteError::NotOwned {
                        shard: number,
                        owned,
                    })
                });
            };
            match slot.addr() {
                Some(addr) => targets.push((number, addr.clone())),
                None if broadcast => {
                    log::debug!("shard {number} is not running; it misses a broadcast command");
                }
                None => {
                    return Box::pin(async move { Err(RouteError::Unavailable { shard: number }) });
                }
            }
        }
        let command = message.command;
        Box::pin(async move {
            let sends = targets
                .iter()
                .map(|(_, addr)| addr.send(SendCommand(command.clone())));
            let results = join_all(sends).await;
            let mut queued = 0;
            for ((shard, _), result) in targets.iter().zip(results) {
                match result {
                    Ok(Ok(())) => queued += 1,
                    Ok(Err(error)) if !broadcast => {
                        return Err(RouteError::Refused {
                            shard: *shard,
                            error,
                        });
                    }
                    Err(_) if !broadcast => return Err(RouteError::Unavailable { shard: *shard }),
                    Ok(Err(error)) => {
                        log::warn!("shard {shard} refused a broadcast command: {error}")
                    }
                    Err(_) => log::debug!("shard {shard} stopped before a broadcast command"),
                }
            }
            Ok(queued)
        })
    }
}

impl Handler<GetFleetStatus> for ShardManager {
    type Result = ResponseActFuture<Self, FleetStatus>;

    /// Collects every running shard's status.
    fn handle(&mut self, _: GetFleetStatus, _: &mut Context<Self>) -> Self::Result {
        let targets = self.running();
        let requests = join_all(targets.iter().map(|(_, _, addr)| addr.send(GetShardStatus)));
        Box::pin(requests.into_actor(self).map(move |results, manager, _| {
            let mut fresh: Vec<((Role, u32), ShardStatus)> = Vec::new();
            for ((role, number, _), result) in targets.into_iter().zip(results) {
                if let Ok(status) = result {
                    fresh.push(((role, number), status));
                }
            }
            let reports = |role: Role| -> Vec<ShardReport> {
                let Some(fleet) = manager.fleet(role) else {
                    return Vec::new();
                };
                fleet
                    .slots
                    .iter()
                    .map(|(number, slot)| ShardReport {
                        shard: slot.id,
                        state: match &slot.state {
                            SlotState::Waiting => ShardRunState::Waiting,
                            SlotState::Running(_) => ShardRunState::Running,
                            SlotState::Restarting => ShardRunState::Restarting,
                            SlotState::Failed(failure) => ShardRunState::Failed(*failure),
                            SlotState::Stopping | SlotState::Stopped => ShardRunState::Stopped,
                        },
                        status: fresh
                            .iter()
                            .find(|(key, _)| *key == (role, *number))
                            .map(|(_, status)| status.clone()),
                        restarts: slot.restarts,
                        arbiter: slot.arbiter,
                    })
                    .collect()
            };
            let shards = reports(Role::Active);
            let resharding = manager.reshard.as_ref().map(|reshard| ReshardingStatus {
                from: reshard.from,
                to: reshard.to(),
                attempt: reshard.attempt,
                progress: manager
                    .next
                    .as_ref()
                    .map(|n| n.progress)
                    .unwrap_or_default(),
                shards: reports(Role::Next),
            });
            FleetStatus {
                total: manager.active.total,
                shard_ids: manager.active.ids(),
                shards,
                progress: manager.active.progress,
                ready: manager.active.ready,
                resharding,
            }
        }))
    }
}

impl Handler<WaitUntilReady> for ShardManager {
    type Result = ResponseFuture<Result<FleetProgress, ManagerError>>;

    /// Waits for the serving fleet's readiness.
    fn handle(&mut self, _: WaitUntilReady, _: &mut Context<Self>) -> Self::Result {
        if self.stopping {
            return Box::pin(async { Err(ManagerError::Stopped) });
        }
        if self.active.ready {
            let progress = self.active.progress;
            return Box::pin(async move { Ok(progress) });
        }
        let (sender, receiver) = tokio::sync::oneshot::channel();
        self.waiters.push(sender);
        Box::pin(async move { receiver.await.unwrap_or(Err(ManagerError::Stopped)) })
    }
}

impl Handler<Reshard> for ShardManager {
    type Result = Result<(), ManagerError>;

    /// Starts a re-sharding.
    fn handle(&mut self, Reshard(total): Reshard, ctx: &mut Context<Self>) -> Self::Result {
        if self.stopping {
            return Err(ManagerError::Stopped);
        }
        if let Some((ids, total)) = self.config.shard_count.range() {
            return Err(ManagerError::ReshardRefused(ReshardRefusal::PartOfBot {
                ids,
                total,
            }));
        }
        if let Some(requested) = total
            && (requested == 0 || requested == self.active.total)
        {
            return Err(ManagerError::ReshardRefused(ReshardRefusal::NotANewCount {
                current: self.active.total,
                requested,
            }));
        }
        self.begin_resharding(total, ctx);
        Ok(())
    }
}

impl Handler<ShutdownFleet> for ShardManager {
    type Result = ResponseActFuture<Self, Result<ShutdownReport, ManagerError>>;

    /// Stops every shard, saving or ending sessions, then the manager.
    fn handle(
        &mut self,
        ShutdownFleet(mode): ShutdownFleet,
        _: &mut Context<Self>,
    ) -> Self::Result {
        if self.stopping {
            return Box::pin(actix::fut::ready(Err(ManagerError::Stopped)));
        }
        self.stopping = true;
        if let Some(mut next) = self.next.take() {
            Self::stop_fleet(&self.queue, &mut next, StopMode::End);
        }
        self.reshard = None;
        let mut running: Vec<(ShardId, actix::Addr<discore_gateway::Shard>)> = Vec::new();
        let mut leftover: Vec<SavedSession> = Vec::new();
        for slot in self.active.slots.values_mut() {
            match &slot.state {
                SlotState::Running(addr) => {
                    running.push((slot.id, addr.clone()));
                    slot.state = SlotState::Stopping;
                }
                SlotState::Restarting => {
                    if let Some(session) = slot.session.take() {
                        leftover.push(SavedSession::new(slot.id, session));
                    }
                    slot.state = SlotState::Stopped;
                }
                SlotState::Waiting => slot.state = SlotState::Stopped,
                _ => {}
            }
            self.queue.forget(slot.id);
        }
        let all: Vec<ShardId> = self.active.slots.values().map(|s| s.id).collect();
        let store = self.store();
        let work = async move {
            let answers = join_all(running.iter().map(|(_, addr)| addr.send(Shutdown(mode)))).await;
            let mut report = ShutdownReport {
                shards_stopped: running.len(),
                ..ShutdownReport::default()
            };
            let mut sessions = leftover;
            for ((shard, _), answer) in running.iter().zip(answers) {
                if let Ok(Some(session)) = answer {
                    sessions.push(SavedSession::new(*shard, session));
                }
            }
            let Some(store) = store else {
                return report;
            };
            let outcome = match mode {
                StopMode::HandOff => {
                    let count = sessions.len();
                    store.save(sessions).await.map(|()| count)
                }
                StopMode::End => store.remove(all).await.map(|()| 0),
            };
            match outcome {
                Ok(saved) => report.sessions_saved = saved,
                Err(error) => {
                    log::error!("the session store failed during shutdown: {error}");
                    report.store_error = Some(error.to_string());
                }
            }
            report
        };
        Box::pin(work.into_actor(self).map(move |report, manager, ctx| {
            log::info!(
                "fleet shut down ({mode:?}): {} shards stopped, {} sessions saved",
                report.shards_stopped,
                report.sessions_saved
            );
            manager.finish(FleetStop::Shutdown(mode), ctx);
            Ok(report)
        }))
    }
}
