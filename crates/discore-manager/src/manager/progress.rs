//! Readiness: shard statuses are collected while a fleet is starting, and
//! turned into progress and readiness notifications.

use super::{Fleet, Role, ShardManager, SlotState};
use crate::{event::FleetEvent, event::FleetProgress, session_store::SavedSession};
use actix::{ActorFutureExt as _, Addr, AsyncContext as _, Context, WrapFuture as _};
use discore_gateway::{GetShardStatus, Shard, ShardState};
use futures_util::future::join_all;
use std::time::{Duration, Instant};

impl ShardManager {
    /// Collects statuses again after the status interval, while a fleet is
    /// starting.
    pub(crate) fn ensure_polling(&mut self, ctx: &mut Context<Self>) {
        if self.polling || self.stopping || (self.active.ready && self.next.is_none()) {
            return;
        }
        self.polling = true;
        ctx.run_later(self.config.supervision.status_interval, |manager, ctx| {
            manager.poll(ctx)
        });
    }

    /// Every running shard of both fleets.
    pub(crate) fn running(&self) -> Vec<(Role, u32, Addr<Shard>)> {
        [Role::Active, Role::Next]
            .into_iter()
            .filter_map(|role| self.fleet(role).map(|fleet| (role, fleet)))
            .flat_map(|(role, fleet)| {
                fleet.slots.iter().filter_map(move |(number, slot)| {
                    slot.addr().map(|a| (role, *number, a.clone()))
                })
            })
            .collect()
    }

    fn poll(&mut self, ctx: &mut Context<Self>) {
        if self.stopping {
            self.polling = false;
            return;
        }
        let targets = self.running();
        let requests = join_all(targets.iter().map(|(_, _, addr)| addr.send(GetShardStatus)));
        ctx.spawn(requests.into_actor(self).map(move |results, manager, ctx| {
            manager.polling = false;
            for ((role, number, _), result) in targets.into_iter().zip(results) {
                let Ok(status) = result else { continue };
                if let Some(slot) = manager.slot_mut(role, number)
                    && matches!(slot.state, SlotState::Running(_))
                {
                    slot.status = Some(status);
                }
            }
            manager.evaluate(ctx);
            // Shards that stopped or were released while connecting.
            manager.launch_more_everywhere(ctx);
            manager.ensure_polling(ctx);
        }));
    }

    /// Turns the collected statuses into progress and readiness.
    pub(crate) fn evaluate(&mut self, ctx: &mut Context<Self>) {
        let now = Instant::now();
        let timeout = self.config.supervision.guild_load_timeout;
        for role in [Role::Active, Role::Next] {
            let Some(fleet) = self.fleet_mut(role) else {
                continue;
            };
            let progress = measure(fleet, now, timeout);
            let changed = progress != fleet.progress;
            fleet.progress = progress;
            let starting = !fleet.ready;
            if changed && starting {
                self.notify(FleetEvent::Progress(progress));
            }
            match role {
                Role::Active => {
                    if progress.is_ready() && !self.active.ready {
                        self.fleet_ready(progress);
                    }
                }
                Role::Next => {
                    if progress.is_ready() {
                        self.next_fleet_ready(ctx);
                    }
                }
            }
        }
    }

    /// The serving fleet is ready.
    pub(crate) fn fleet_ready(&mut self, progress: FleetProgress) {
        self.active.ready = true;
        log::info!(
            total = progress.total, shards = progress.shards,
            guilds = progress.guilds_loaded;
            "fleet ready: {progress}"
        );
        self.notify(FleetEvent::Ready(progress));
        for waiter in self.waiters.drain(..) {
            let _ = waiter.send(Ok(progress));
        }
    }

    /// Saves every active session to the store.
    pub(crate) fn checkpoint(&mut self, ctx: &mut Context<Self>) {
        if self.stopping || self.config.sessions.is_none() {
            return;
        }
        let targets: Vec<_> = self
            .active
            .slots
            .values()
            .filter_map(|slot| slot.addr().map(|addr| (slot.id, addr.clone())))
            .collect();
        let requests = join_all(targets.iter().map(|(_, addr)| addr.send(GetShardStatus)));
        ctx.spawn(requests.into_actor(self).map(move |results, manager, ctx| {
            let sessions: Vec<SavedSession> = targets
                .iter()
                .zip(results)
                .filter_map(|((id, _), status)| {
                    let session = status.ok()?.session?;
                    Some(SavedSession::new(*id, session))
                })
                .collect();
            log::debug!("checkpoint: saving {} sessions", sessions.len());
            manager.save_sessions(sessions, ctx);
        }));
    }
}

/// The progress of a fleet from its last statuses.
pub(crate) fn measure(fleet: &Fleet, now: Instant, load_timeout: Duration) -> FleetProgress {
    let mut progress = FleetProgress {
        total: fleet.total,
        shards: u32::try_from(fleet.slots.len()).unwrap_or(u32::MAX),
        ..FleetProgress::default()
    };
    for slot in fleet.slots.values() {
        let (SlotState::Running(_), Some(status)) = (&slot.state, &slot.status) else {
            continue;
        };
        let active = matches!(status.state, ShardState::Active);
        if !active {
            continue;
        }
        progress.shards_ready += 1;
        progress.guilds_expected += status.guilds as u64;
        progress.guilds_loaded += status.guilds_loaded.min(status.guilds) as u64;
        let waited = slot
            .active_since
            .is_some_and(|since| now.saturating_duration_since(since) >= load_timeout);
        if status.is_fully_loaded() || waited {
            progress.shards_loaded += 1;
        }
    }
    progress
}
