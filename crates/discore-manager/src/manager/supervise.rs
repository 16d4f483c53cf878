//! Supervision: lifecycles, exits, restarts, fatal codes.
//!
//! How actix and the shard end, and what the manager does about it:
//! - A panic in a shard (or its arbiter stopping) drops the actor; its
//!   `Drop` sends [`ShardExited`] with [`ExitCause::Crashed`] and the last
//!   session. The manager restarts it from that session, so it resumes,
//!   within the restart intensity.
//! - A fatal close code leaves the actor alive in `Failed`, having told its
//!   lifecycle subscribers. It is never restarted: the manager shuts it down
//!   and either stops the fleet (a failure every shard shares), re-shards
//!   (4010, 4011), or reports the shard as failed.
//! - A shutdown the manager asked for ends in an expected exit.

use super::{Role, ShardManager, SlotState};
use crate::{
    event::{FleetEvent, FleetStop, ShardFailure},
    intensity::RestartDecision,
    relay::Finish,
    session_store::SavedSession,
};
use actix::{AsyncContext as _, Context, Handler};
use discore_gateway::{
    ExitCause, Lifecycle, ShardExited, ShardFailureReason, ShardLifecycle, ShardStartError,
    Shutdown, StopMode,
};
use discore_protocol::ShardId;
use std::time::Instant;

impl Handler<ShardLifecycle> for ShardManager {
    type Result = ();

    /// Tracks a shard's lifecycle and passes it on to lifecycle subscribers.
    fn handle(&mut self, message: ShardLifecycle, ctx: &mut Context<Self>) {
        self.lifecycle.retain(actix::Recipient::connected);
        for subscriber in &self.lifecycle {
            subscriber.do_send(message.clone());
        }
        let Some(role) = self.role_of(message.shard) else {
            return;
        };
        let number = message.shard.number();
        match message.event {
            Lifecycle::Ready { .. } | Lifecycle::Resumed => {
                let new_session = matches!(message.event, Lifecycle::Ready { .. });
                let Some(fleet) = self.fleet_mut(role) else {
                    return;
                };
                if new_session {
                    // A new session loads its guilds again.
                    fleet.ready = false;
                }
                if let Some(slot) = fleet.slots.get_mut(&number) {
                    slot.active_since = Some(Instant::now());
                    if new_session {
                        slot.status = None;
                    }
                }
                // Its place in the launch goes to the next shard.
                self.launch_more(role, ctx);
                self.ensure_polling(ctx);
            }
            Lifecycle::Failed(reason) => {
                self.shard_failed(role, message.shard, reason, ctx);
                self.launch_more(role, ctx);
            }
            Lifecycle::Connected
            | Lifecycle::Reconnected { .. }
            | Lifecycle::Disconnected { .. } => {}
        }
    }
}

impl Handler<ShardExited> for ShardManager {
    type Result = ();

    /// Restarts a crashed shard, or records an expected exit.
    fn handle(&mut self, exit: ShardExited, ctx: &mut Context<Self>) {
        let Some(role) = self.role_of(exit.shard) else {
            return;
        };
        let number = exit.shard.number();
        let stopping = self.stopping || (role == Role::Active && self.switching());
        let Some(slot) = self.slot_mut(role, number) else {
            return;
        };
        match slot.state {
            SlotState::Running(_) if !stopping => {}
            SlotState::Running(_) | SlotState::Stopping => {
                // During a switch an old shard is not restarted: its relay
                // has everything it will get.
                if let Some(relay) = &slot.relay {
                    relay.do_send(Finish);
                }
                slot.state = SlotState::Stopped;
                return;
            }
            _ => return,
        }
        match exit.cause {
            ExitCause::Crashed
            | ExitCause::StartFailed(
                ShardStartError::Unreachable { .. } | ShardStartError::Stopped,
            ) => {
                log::warn!(
                    shard = exit.shard.number(), total = exit.shard.total(), cause:? = exit.cause;
                    "shard {}: stopped unexpectedly ({:?})", exit.shard, exit.cause
                );
                self.restart(role, exit.shard, exit.session, ctx);
            }
            ExitCause::StartFailed(ShardStartError::Failed(reason)) => {
                slot.state = SlotState::Stopped;
                self.shard_failed(role, exit.shard, reason, ctx);
            }
            ExitCause::StartFailed(ShardStartError::InvalidGatewayUrl(error)) => {
                slot.state = SlotState::Stopped;
                log::error!(
                    shard = exit.shard.number(), total = exit.shard.total();
                    "shard {}: invalid gateway url: {error}", exit.shard
                );
                self.stop_everything(FleetStop::InvalidGatewayUrl(error), ctx);
            }
            ExitCause::Shutdown | ExitCause::StartFailed(_) => {
                // Shut down by someone else holding its address.
                log::info!(
                    shard = exit.shard.number(), total = exit.shard.total();
                    "shard {}: shut down outside the manager", exit.shard
                );
                slot.state = SlotState::Stopped;
            }
        }
        self.launch_more(role, ctx);
    }
}

impl ShardManager {
    /// Restarts a crashed shard within the restart intensity.
    fn restart(
        &mut self,
        role: Role,
        shard: ShardId,
        session: Option<discore_protocol::Session>,
        ctx: &mut Context<Self>,
    ) {
        let policy = self.config.supervision.restart;
        let number = shard.number();
        let Some(slot) = self.slot_mut(role, number) else {
            return;
        };
        let decision = slot
            .intensity
            .on_crash(&policy, Instant::now(), fastrand::f64());
        match decision {
            RestartDecision::Restart { attempt, delay } => {
                slot.state = SlotState::Restarting;
                slot.restarts += 1;
                let resuming = session.is_some();
                slot.session = session;
                slot.status = None;
                let instance = slot.instance;
                log::info!(
                    shard = number, total = shard.total(), attempt, resuming,
                    delay_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX);
                    "shard {shard}: restarting in {delay:?} (restart {attempt} in the window, {})",
                    if resuming { "resuming" } else { "identifying" }
                );
                self.notify(FleetEvent::ShardRestarted {
                    shard,
                    attempt,
                    resuming,
                });
                if delay.is_zero() {
                    self.spawn(role, number, ctx);
                } else {
                    ctx.run_later(delay, move |manager, ctx| {
                        let due = manager
                            .fleet(role)
                            .and_then(|f| f.slots.get(&number))
                            .is_some_and(|s| {
                                s.instance == instance && matches!(s.state, SlotState::Restarting)
                            });
                        if due && !manager.stopping {
                            manager.spawn(role, number, ctx);
                        }
                    });
                }
            }
            RestartDecision::GiveUp { restarts } => {
                let failure = ShardFailure::RestartIntensity {
                    restarts,
                    window: policy.window,
                };
                log::error!(
                    shard = number, total = shard.total(), restarts;
                    "shard {shard}: {failure}"
                );
                slot.state = SlotState::Failed(failure);
                if let Some(session) = session {
                    // Keep it resumable for whoever tries next.
                    self.save_sessions(vec![SavedSession::new(shard, session)], ctx);
                }
                self.queue.forget(shard);
                self.slot_given_up(role, shard, failure, ctx);
            }
        }
    }

    /// A shard was refused by the gateway for good.
    pub(crate) fn shard_failed(
        &mut self,
        role: Role,
        shard: ShardId,
        reason: ShardFailureReason,
        ctx: &mut Context<Self>,
    ) {
        let number = shard.number();
        let Some(slot) = self.slot_mut(role, number) else {
            return;
        };
        if matches!(slot.state, SlotState::Failed(_)) {
            return;
        }
        // The actor idles in `Failed`; shut it down, its exit is expected.
        if let SlotState::Running(addr) = &slot.state {
            addr.do_send(Shutdown(StopMode::End));
        }
        if let Some(relay) = &slot.relay {
            // A relay draining for the switch gets nothing more.
            relay.do_send(Finish);
        }
        let failure = ShardFailure::Fatal(reason);
        slot.state = SlotState::Failed(failure);
        self.queue.forget(shard);
        if reason.affects_whole_bot() {
            log::error!(
                shard = number, total = shard.total(), close_code = reason.close_code().code();
                "shard {shard}: {reason}; every shard would fail the same way, stopping the fleet"
            );
            self.stop_everything(FleetStop::Fatal(reason), ctx);
            return;
        }
        self.notify(FleetEvent::ShardFailed { shard, failure });
        if reason.needs_resharding() {
            match role {
                Role::Active => self.resharding_needed(shard, reason, ctx),
                Role::Next => self.reshard_attempt_failed(
                    Some(shard.total()),
                    format!("shard {shard} of the new fleet was refused: {reason}"),
                    ctx,
                ),
            }
        } else if role == Role::Next {
            self.reshard_attempt_failed(
                Some(shard.total()),
                format!("shard {shard} of the new fleet failed: {reason}"),
                ctx,
            );
        } else {
            self.fail_waiters(shard, failure);
        }
    }

    /// A shard crashed too often.
    fn slot_given_up(
        &mut self,
        role: Role,
        shard: ShardId,
        failure: ShardFailure,
        ctx: &mut Context<Self>,
    ) {
        self.notify(FleetEvent::ShardFailed { shard, failure });
        match role {
            Role::Active => self.fail_waiters(shard, failure),
            Role::Next => self.reshard_attempt_failed(
                Some(shard.total()),
                format!("shard {shard} of the new fleet: {failure}"),
                ctx,
            ),
        }
    }

    /// The active fleet cannot become ready any more.
    fn fail_waiters(&mut self, shard: ShardId, failure: ShardFailure) {
        for waiter in self.waiters.drain(..) {
            let _ = waiter.send(Err(crate::ManagerError::ShardFailed { shard, failure }));
        }
    }

    /// Stops both fleets and the manager.
    pub(crate) fn stop_everything(&mut self, stop: FleetStop, ctx: &mut Context<Self>) {
        if self.stopping {
            return;
        }
        self.stopping = true;
        if let Some(mut next) = self.next.take() {
            Self::stop_fleet(&self.queue, &mut next, StopMode::End);
        }
        self.reshard = None;
        Self::stop_fleet(&self.queue, &mut self.active, StopMode::End);
        self.finish(stop, ctx);
    }
}
