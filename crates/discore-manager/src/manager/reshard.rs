//! Re-sharding: a new shard count after 4011 Sharding Required or 4010
//! Invalid Shard, or on request.
//!
//! Zero-downtime (see `docs/shard-manager.md` for the exact semantics):
//! 1. ask `GET /gateway/bot` for the count (or take the requested one);
//! 2. the serving fleet's relays start recording what they deliver; a new
//!    fleet with the new total starts, its relays holding events back;
//! 3. when every new shard is READY with all its guilds, the new relays
//!    tell where each guild's stream begins (its first held event); each
//!    old relay keeps delivering its guilds until it reaches those points
//!    (so nothing sent before the new sessions began is lost), then falls
//!    silent and hands its record over; each new relay delivers its held
//!    events minus those the old fleet delivered (and minus the new
//!    sessions' READY and initial GUILD_CREATEs of known guilds);
//! 4. the old shards close with 1000 and their saved sessions are dropped.
//!
//! An attempt that fails (the count did not change, a new shard is refused
//! or crashes too often) is abandoned: the new fleet stops, the old one goes
//! back to plain delivery, and another attempt follows after a delay, up to
//! the configured number.

use super::{Fleet, Role, ShardManager, SlotState};
use crate::{
    align::{History, Key},
    config::ReshardMode,
    event::{FleetEvent, ShardFailure},
    relay::{Drain, Relay, Release, StartRecording, StopRecording, TakeHeads},
};
use actix::{ActorFutureExt as _, Addr, AsyncContext as _, Context, WrapFuture as _};
use discore_gateway::{Dispatch, ShardFailureReason, StopMode};
use discore_protocol::{ShardId, shard_for_guild};
use futures_util::future::join_all;
use std::{collections::HashMap, sync::Arc};

/// A re-sharding under way.
#[derive(Debug)]
pub(crate) struct Resharding {
    /// The total being replaced.
    pub(crate) from: u32,
    /// A total asked for explicitly, instead of `GET /gateway/bot`'s.
    pub(crate) requested: Option<u32>,
    /// The attempt, from 1.
    pub(crate) attempt: u32,
    pub(crate) stage: Stage,
}

/// Where a re-sharding is.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub(crate) enum Stage {
    /// Asking for the new count.
    Discovering,
    /// The new fleet is starting.
    Starting {
        /// The new total.
        to: u32,
    },
    /// Delivery is being switched.
    Switching {
        /// The new total.
        to: u32,
    },
    /// Waiting before the next attempt.
    Waiting,
}

impl Resharding {
    /// The new total, once known.
    pub(crate) fn to(&self) -> Option<u32> {
        match self.stage {
            Stage::Starting { to } | Stage::Switching { to } => Some(to),
            Stage::Discovering | Stage::Waiting => None,
        }
    }
}

impl ShardManager {
    /// A serving shard was refused with 4011 or 4010.
    pub(crate) fn resharding_needed(
        &mut self,
        shard: ShardId,
        reason: ShardFailureReason,
        ctx: &mut Context<Self>,
    ) {
        if self.config.resharding.mode == ReshardMode::Disabled {
            log::error!(
                shard = shard.number(), total = shard.total(),
                close_code = reason.close_code().code();
                "shard {shard}: {reason}; re-sharding is not automatic here"
            );
            self.notify(FleetEvent::ReshardingRequired { shard, reason });
            return;
        }
        self.begin_resharding(None, ctx);
    }

    /// Starts a re-sharding, unless one is under way.
    pub(crate) fn begin_resharding(&mut self, requested: Option<u32>, ctx: &mut Context<Self>) {
        if self.reshard.is_some() || self.stopping {
            return;
        }
        log::info!(
            total = self.active.total;
            "re-sharding: the fleet of {} shards needs a new count", self.active.total
        );
        self.reshard = Some(Resharding {
            from: self.active.total,
            requested,
            attempt: 1,
            stage: Stage::Discovering,
        });
        self.discover(ctx);
    }

    /// Finds the new total.
    fn discover(&mut self, ctx: &mut Context<Self>) {
        let Some(reshard) = &mut self.reshard else {
            return;
        };
        reshard.stage = Stage::Discovering;
        if let Some(total) = reshard.requested {
            self.new_total(total, ctx);
            return;
        }
        let rest = self.rest.clone();
        let ask = async move { rest.gateway_bot().await };
        ctx.spawn(ask.into_actor(self).map(|result, manager, ctx| {
            if manager.reshard.is_none() || manager.stopping {
                return;
            }
            match result {
                Ok(info) => manager.new_total(info.shards, ctx),
                Err(error) => {
                    manager.reshard_attempt_failed(None, format!("GET /gateway/bot: {error}"), ctx);
                }
            }
        }));
    }

    fn new_total(&mut self, to: u32, ctx: &mut Context<Self>) {
        let from = self.active.total;
        if to == 0 || to == from {
            self.reshard_attempt_failed(
                Some(to),
                format!("the shard count is still {to}; Discord has not caught up yet"),
                ctx,
            );
            return;
        }
        log::info!(from, to; "re-sharding from {from} to {to} shards");
        self.notify(FleetEvent::ReshardingStarted { from, to });
        match self.config.resharding.mode {
            ReshardMode::StopTheWorld => self.stop_the_world(to, ctx),
            ReshardMode::ZeroDowntime | ReshardMode::Disabled => self.start_next(to, ctx),
        }
    }

    /// Stops the serving fleet, then starts the new one.
    fn stop_the_world(&mut self, to: u32, ctx: &mut Context<Self>) {
        let from = self.active.total;
        let mut old =
            std::mem::replace(&mut self.active, Fleet::new(to, 0..to, &mut HashMap::new()));
        Self::stop_fleet(&self.queue, &mut old, StopMode::End);
        self.forget_saved(&old, ctx);
        self.reshard = None;
        self.launch_fleet(Role::Active, ctx);
        self.notify(FleetEvent::Resharded { from, to });
    }

    /// Starts the new fleet next to the serving one.
    fn start_next(&mut self, to: u32, ctx: &mut Context<Self>) {
        if let Some(reshard) = &mut self.reshard {
            reshard.stage = Stage::Starting { to };
        }
        let capacity = self.config.resharding.history;
        for slot in self.active.slots.values() {
            if let Some(relay) = &slot.relay {
                relay.do_send(StartRecording(capacity));
            }
        }
        self.next = Some(Fleet::new(to, 0..to, &mut HashMap::new()));
        self.launch_fleet(Role::Next, ctx);
    }

    /// Every shard of the new fleet is ready: switch delivery. First learn
    /// where each guild's stream begins in the new fleet.
    pub(crate) fn next_fleet_ready(&mut self, ctx: &mut Context<Self>) {
        let Some(reshard) = &mut self.reshard else {
            return;
        };
        let Stage::Starting { to } = reshard.stage else {
            return;
        };
        reshard.stage = Stage::Switching { to };
        log::info!(to; "re-sharding: the fleet of {to} is ready, switching delivery");
        let Some(next) = &self.next else {
            return;
        };
        let relays: Vec<_> = next
            .slots
            .values()
            .filter_map(|s| s.relay.clone())
            .collect();
        let requests = join_all(relays.iter().map(|relay| relay.send(TakeHeads)));
        ctx.spawn(requests.into_actor(self).map(move |results, manager, ctx| {
            let mut heads: HashMap<Key, Arc<Dispatch>> = HashMap::new();
            for found in results.into_iter().flatten() {
                heads.extend(found);
            }
            manager.drain_old_fleet(to, heads, ctx);
        }));
    }

    /// Lets each old relay deliver up to the heads of its guilds, then
    /// collects what they delivered.
    fn drain_old_fleet(
        &mut self,
        to: u32,
        heads: HashMap<Key, Arc<Dispatch>>,
        ctx: &mut Context<Self>,
    ) {
        if !self.switching_to(to) || self.stopping {
            return;
        }
        let total = self.active.total;
        let timeout = self.config.resharding.drain_timeout;
        let drains: Vec<(u32, Addr<Relay>, Drain)> = self
            .active
            .slots
            .iter()
            .filter_map(|(number, slot)| {
                let relay = slot.relay.clone()?;
                let mine: HashMap<Key, Arc<Dispatch>> = if slot.addr().is_some() {
                    heads
                        .iter()
                        .filter(|(key, _)| match key {
                            Some(guild) => shard_for_guild(*guild, total) == *number,
                            None => *number == 0,
                        })
                        .map(|(key, head)| (*key, Arc::clone(head)))
                        .collect()
                } else {
                    // Its shard is gone: nothing more will come.
                    HashMap::new()
                };
                Some((
                    *number,
                    relay,
                    Drain {
                        heads: mine,
                        timeout,
                    },
                ))
            })
            .collect();
        let numbers: Vec<u32> = drains.iter().map(|(n, _, _)| *n).collect();
        let requests = join_all(
            drains
                .into_iter()
                .map(|(_, relay, drain)| relay.send(drain)),
        );
        ctx.spawn(requests.into_actor(self).map(move |results, manager, ctx| {
            let histories: Vec<(u32, History)> = numbers
                .into_iter()
                .zip(results)
                .map(|(number, history)| (number, history.unwrap_or_default()))
                .collect();
            manager.complete_switch(to, histories, ctx);
        }));
    }

    /// Whether delivery is being switched to the fleet of `to` shards.
    pub(crate) fn switching_to(&self, to: u32) -> bool {
        self.reshard
            .as_ref()
            .is_some_and(|r| r.stage == Stage::Switching { to })
    }

    /// Whether delivery is being switched.
    pub(crate) fn switching(&self) -> bool {
        self.reshard
            .as_ref()
            .is_some_and(|r| matches!(r.stage, Stage::Switching { .. }))
    }

    /// The old fleet is silent and its records are in: release the new one.
    fn complete_switch(
        &mut self,
        to: u32,
        histories: Vec<(u32, History)>,
        ctx: &mut Context<Self>,
    ) {
        if !self.switching_to(to) || self.stopping {
            return;
        }
        let Some(next) = self.next.take() else {
            return;
        };
        let from = self.active.total;
        let mut per_shard = distribute(histories, to);
        let window = self.config.resharding.alignment_window;
        for (number, slot) in &next.slots {
            if let Some(relay) = &slot.relay {
                relay.do_send(Release {
                    history: per_shard.remove(number).unwrap_or_default(),
                    window,
                });
            }
        }
        let mut old = std::mem::replace(&mut self.active, next);
        Self::stop_fleet(&self.queue, &mut old, StopMode::End);
        self.forget_saved(&old, ctx);
        self.reshard = None;
        log::info!(from, to; "re-sharding: delivery switched from {from} to {to} shards");
        self.notify(FleetEvent::Resharded { from, to });
        let progress = self.active.progress;
        if progress.is_ready() {
            self.fleet_ready(progress);
        } else {
            self.active.ready = false;
            self.ensure_polling(ctx);
        }
        // A new shard refused during the switch asks for another count.
        let refused = self
            .active
            .slots
            .values()
            .find_map(|slot| match slot.state {
                SlotState::Failed(ShardFailure::Fatal(reason)) if reason.needs_resharding() => {
                    Some((slot.id, reason))
                }
                _ => None,
            });
        if let Some((shard, reason)) = refused {
            self.resharding_needed(shard, reason, ctx);
        }
    }

    /// An attempt failed: abandon it and maybe try again.
    pub(crate) fn reshard_attempt_failed(
        &mut self,
        to: Option<u32>,
        error: String,
        ctx: &mut Context<Self>,
    ) {
        let Some(reshard) = &mut self.reshard else {
            return;
        };
        if matches!(reshard.stage, Stage::Switching { .. }) {
            // Part of the old fleet may be silent already: finish the
            // switch; a shard the new fleet lost is dealt with after it.
            log::warn!("re-sharding: {error}; finishing the switch first");
            return;
        }
        reshard.attempt += 1;
        let will_retry = reshard.attempt <= self.config.resharding.attempts;
        reshard.stage = Stage::Waiting;
        log::warn!("re-sharding attempt failed: {error}");
        if let Some(mut next) = self.next.take() {
            Self::stop_fleet(&self.queue, &mut next, StopMode::End);
        }
        for slot in self.active.slots.values() {
            if let Some(relay) = &slot.relay {
                relay.do_send(StopRecording);
            }
        }
        self.notify(FleetEvent::ReshardingFailed {
            to,
            error,
            will_retry,
        });
        if !will_retry {
            log::error!("re-sharding given up; the fleet keeps running with its failed shards");
            self.reshard = None;
            return;
        }
        ctx.run_later(self.config.resharding.retry_delay, |manager, ctx| {
            if manager
                .reshard
                .as_ref()
                .is_some_and(|r| r.stage == Stage::Waiting)
            {
                manager.discover(ctx);
            }
        });
    }

    /// The sessions of a replaced fleet are of no use any more.
    fn forget_saved(&self, old: &Fleet, ctx: &mut Context<Self>) {
        let Some(store) = self.store() else {
            return;
        };
        let shards: Vec<ShardId> = old.slots.values().map(|s| s.id).collect();
        ctx.spawn(actix::fut::wrap_future(async move {
            if let Err(error) = store.remove(shards).await {
                log::warn!("forgetting the old fleet's sessions failed: {error}");
            }
        }));
    }
}

/// Sends each guild's record to the new shard that holds the guild, and
/// guildless events' record from old shard 0 to new shard 0.
fn distribute(histories: Vec<(u32, History)>, to: u32) -> HashMap<u32, History> {
    let mut per_shard: HashMap<u32, History> = HashMap::new();
    for (old_number, history) in histories {
        for (key, events) in history {
            let target = match key {
                Some(guild) => shard_for_guild(guild, to),
                None if old_number == 0 => 0,
                // Guildless events of other shards are sent to every shard
                // by Discord; they are not aligned.
                None => continue,
            };
            per_shard
                .entry(target)
                .or_default()
                .insert(key as Key, events);
        }
    }
    per_shard
}

#[cfg(test)]
mod tests {
    use super::distribute;
    use crate::align::History;
    use std::collections::VecDeque;

    #[test]
    fn records_follow_their_guilds_to_the_new_shards() {
        let guild = |ts: u64| Some(ts << 22);
        let old_zero: History = [
            (guild(0), VecDeque::new()),
            (guild(2), VecDeque::new()),
            (None, VecDeque::new()),
        ]
        .into_iter()
        .collect();
        let old_one: History = [(guild(1), VecDeque::new()), (None, VecDeque::new())]
            .into_iter()
            .collect();
        let per_shard = distribute(vec![(0, old_zero), (1, old_one)], 3);
        assert!(per_shard[&0].contains_key(&guild(0)));
        assert!(per_shard[&0].contains_key(&None));
        assert!(per_shard[&1].contains_key(&guild(1)));
        assert!(per_shard[&2].contains_key(&guild(2)));
        assert_eq!(per_shard.values().map(|h| h.len()).sum::<usize>(), 4);
    }
}
