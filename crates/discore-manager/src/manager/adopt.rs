//! Shards joining and leaving a running fleet.
//!
//! A process that runs part of a bot under leases (a cluster node) does not
//! know at start which shards it will run: it claims leases as processes
//! come and go. It runs one manager and asks it to adopt each shard it
//! claims, and to release each shard it hands over. An adopted shard resumes from its saved session when there is
//! a fresh one, and identifies through the manager's identify queue (shared
//! by every process of the bot, when the queue is) otherwise. A released
//! shard closes with 4000 and its session is saved for whoever adopts it
//! next.

use super::{Role, ShardManager, Slot, SlotState};
use crate::{
    error::{AdoptRefusal, ManagerError},
    session_store::SavedSession,
};
use actix::{ActorFutureExt as _, Context, Handler, Message, ResponseActFuture, WrapFuture as _};
use discore_gateway::{Shutdown, StopMode};
use discore_protocol::{Session, ShardId};
use std::time::SystemTime;

/// Runs one more shard of the serving fleet's total in this manager.
///
/// The shard resumes `session` when given; otherwise the manager looks for
/// a fresh saved session in its session store (younger than
/// `SessionConfig::max_age`), and identifies through its identify queue
/// when there is none. Answers once the shard was started (it then
/// connects; [`WaitUntilReady`](crate::WaitUntilReady) and the fleet status
/// tell when it is active).
///
/// Refused ([`ManagerError::AdoptRefused`]) for a shard of another total,
/// while the manager re-shards by itself, and while a release of the same
/// shard is under way. Any manager accepts it; a manager started with
/// [`ShardCount::Adopted`](crate::ShardCount::Adopted) starts with none.
#[derive(Clone, Debug, Message)]
#[rtype(result = "Result<Adopted, ManagerError>")]
pub struct AdoptShard {
    /// The shard.
    pub shard: ShardId,
    /// The session to resume; `None` looks in the session store.
    pub session: Option<Session>,
}

impl AdoptShard {
    /// Adopts `shard`, resuming its saved session if the store has one.
    pub fn new(shard: ShardId) -> Self {
        Self {
            shard,
            session: None,
        }
    }

    /// Adopts `shard`, resuming `session`.
    pub fn resuming(shard: ShardId, session: Session) -> Self {
        Self {
            shard,
            session: Some(session),
        }
    }
}

/// How an adopted shard started.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub enum Adopted {
    /// It resumes a session.
    Resuming,
    /// It identifies (through the identify queue).
    Identifying,
    /// The manager already ran it; nothing changed.
    AlreadyRunning,
}

/// Stops running one shard in this manager and hands its session over: the
/// shard closes with 4000 (so the session stays resumable), and the session
/// is saved to the session store, if the manager has one, for the process
/// that adopts the shard next. A shard the manager does not run answers a
/// default [`Released`].
#[derive(Clone, Copy, Debug, Message)]
#[rtype(result = "Result<Released, ManagerError>")]
pub struct ReleaseShard(pub ShardId);

/// What a release did.
#[derive(Clone, Debug, Default, Eq, PartialEq)]
pub struct Released {
    /// The manager ran the shard (running, restarting or failed).
    pub was_running: bool,
    /// The session handed over, if the shard had one.
    pub session: Option<Session>,
    /// The session was saved to the session store.
    pub saved: bool,
    /// The store failed, if it did.
    pub store_error: Option<String>,
}

impl Handler<AdoptShard> for ShardManager {
    type Result = ResponseActFuture<Self, Result<Adopted, ManagerError>>;

    /// Adds the shard's slot and starts it, once its session is known.
    fn handle(&mut self, message: AdoptShard, _: &mut Context<Self>) -> Self::Result {
        let AdoptShard { shard, session } = message;
        if let Err(error) = self.adoptable(shard) {
            return Box::pin(actix::fut::ready(Err(error)));
        }
        let number = shard.number();
        if let Some(slot) = self.active.slots.get(&number) {
            match slot.state {
                SlotState::Running(_) | SlotState::Restarting => {
                    return Box::pin(actix::fut::ready(Ok(Adopted::AlreadyRunning)));
                }
                SlotState::Stopping => {
                    return Box::pin(actix::fut::ready(Err(ManagerError::AdoptRefused {
                        shard,
                        refusal: AdoptRefusal::Releasing,
                    })));
                }
                // A shard that failed, or stopped, starts afresh.
                SlotState::Waiting | SlotState::Failed(_) | SlotState::Stopped => {}
            }
        }
        // The slot waits in `Restarting` while its session is looked up, so
        // a second adoption answers `AlreadyRunning` and a release removes
        // it.
        let mut slot = Slot::new(shard, None);
        slot.state = SlotState::Restarting;
        self.active.slots.insert(number, slot);
        self.active.ready = false;
        let lookup = match (session, self.store()) {
            (Some(session), _) => Lookup::Given(session),
            (None, Some(store)) => Lookup::Store(store, self.max_session_age()),
            (None, None) => Lookup::Nothing,
        };
        Box::pin(
            async move { lookup.session(shard).await }
                .into_actor(self)
                .map(move |session, manager, ctx| {
                    let waiting =
                        manager.active.slots.get_mut(&number).filter(|s| {
                            matches!(s.state, SlotState::Restarting) && s.instance == 0
                        });
                    let Some(slot) = waiting else {
                        // Released while its session was looked up.
                        return Err(ManagerError::AdoptRefused {
                            shard,
                            refusal: AdoptRefusal::Releasing,
                        });
                    };
                    let adopted = if session.is_some() {
                        Adopted::Resuming
                    } else {
                        Adopted::Identifying
                    };
                    slot.session = session;
                    log::info!(
                        "shard {shard}: adopted, {}",
                        match adopted {
                            Adopted::Resuming => "resuming its session",
                            _ => "identifying",
                        }
                    );
                    manager.spawn(Role::Active, number, ctx);
                    manager.ensure_polling(ctx);
                    Ok(adopted)
                }),
        )
    }
}

impl Handler<ReleaseShard> for ShardManager {
    type Result = ResponseActFuture<Self, Result<Released, ManagerError>>;

    /// Stops the shard with 4000, saves its session, removes its slot.
    fn handle(&mut self, ReleaseShard(shard): ReleaseShard, _: &mut Context<Self>) -> Self::Result {
        if self.stopping {
            return Box::pin(actix::fut::ready(Err(ManagerError::Stopped)));
        }
        let number = shard.number();
        if self.role_of(shard) != Some(Role::Active) {
            return Box::pin(actix::fut::ready(Ok(Released::default())));
        }
        self.queue.forget(shard);
        let store = self.store();
        let Some(slot) = self.active.slots.get_mut(&number) else {
            return Box::pin(actix::fut::ready(Ok(Released::default())));
        };
        let running = match &slot.state {
            SlotState::Running(addr) => Some(addr.clone()),
            SlotState::Stopping => {
                // Already on its way out (a second release).
                return Box::pin(actix::fut::ready(Ok(Released::default())));
            }
            SlotState::Waiting
            | SlotState::Restarting
            | SlotState::Failed(_)
            | SlotState::Stopped => None,
        };
        let left = slot.session.take();
        if running.is_some() {
            slot.state = SlotState::Stopping;
        } else {
            self.active.slots.remove(&number);
        }
        Box::pin(
            async move {
                let session = match running {
                    Some(addr) => addr.send(Shutdown(StopMode::HandOff)).await.ok().flatten(),
                    None => left,
                };
                let mut released = Released {
                    was_running: true,
                    session,
                    ..Released::default()
                };
                if let (Some(store), Some(session)) = (store, &released.session) {
                    match store
                        .save(vec![SavedSession::new(shard, session.clone())])
                        .await
                    {
                        Ok(()) => released.saved = true,
                        Err(error) => {
                            log::warn!(
                                "shard {shard}: saving its session on release failed: {error}"
                            );
                            released.store_error = Some(error.to_string());
                        }
                    }
                }
                released
            }
            .into_actor(self)
            .map(move |released, manager, _| {
                let gone =
                    manager.active.slots.get(&number).is_some_and(|s| {
                        matches!(s.state, SlotState::Stopping | SlotState::Stopped)
                    });
                if gone {
                    manager.active.slots.remove(&number);
                }
                log::info!(
                    "shard {shard}: released ({})",
                    if released.saved {
                        "session saved"
                    } else {
                        "no session saved"
                    }
                );
                Ok(released)
            }),
        )
    }
}

impl ShardManager {
    /// Whether `shard` may join the serving fleet.
    fn adoptable(&self, shard: ShardId) -> Result<(), ManagerError> {
        if self.stopping {
            return Err(ManagerError::Stopped);
        }
        let refusal = if self.next.is_some() {
            Some(AdoptRefusal::Resharding)
        } else if shard.total() != self.active.total {
            Some(AdoptRefusal::OtherTotal {
                fleet: self.active.total,
            })
        } else {
            None
        };
        match refusal {
            Some(refusal) => Err(ManagerError::AdoptRefused { shard, refusal }),
            None => Ok(()),
        }
    }

    fn max_session_age(&self) -> std::time::Duration {
        self.config
            .sessions
            .as_ref()
            .map_or(std::time::Duration::ZERO, |s| s.max_age)
    }
}

/// Where an adopted shard's session comes from.
enum Lookup {
    Given(Session),
    Store(
        std::sync::Arc<dyn crate::session_store::SessionStore>,
        std::time::Duration,
    ),
    Nothing,
}

impl Lookup {
    /// The session to resume; a failing store only costs an identify.
    async fn session(self, shard: ShardId) -> Option<Session> {
        match self {
            Self::Given(session) => Some(session),
            Self::Nothing => None,
            Self::Store(store, max_age) => match store.load().await {
                Ok(saved) => {
                    let now = SystemTime::now();
                    saved
                        .into_iter()
                        .filter(|s| s.shard == shard && s.age(now) <= max_age)
                        .max_by_key(|s| s.saved_at_ms)
                        .map(|s| s.session)
                }
                Err(error) => {
                    log::warn!(
                        "shard {shard}: loading its saved session failed, it identifies: {error}"
                    );
                    None
                }
            },
        }
    }
}
