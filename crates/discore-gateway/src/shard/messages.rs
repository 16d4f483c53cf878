//! What other actors can ask of a shard.

use super::{Shard, Subscriber};
use crate::{
    command::{Command, CommandError, SendCommand},
    event::{EventFilter, GatewayEvent, ShardLifecycle},
    machine::{Latency, ShardState, StopMode},
};
use actix::{ActorContext as _, Context, Handler, Message, Recipient};
use discore_protocol::{Session, ShardId, commands::EncodeError};
use std::collections::BTreeMap;

/// Delivers the dispatches `filter` selects to `recipient`; for a recipient
/// already subscribed, replaces its filter.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct Subscribe {
    /// Who receives the events.
    pub recipient: Recipient<GatewayEvent>,
    /// Which events.
    pub filter: EventFilter,
}

/// Stops delivering events to `recipient`.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct Unsubscribe(pub Recipient<GatewayEvent>);

/// Tells `recipient` about lifecycle changes.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct SubscribeLifecycle(pub Recipient<ShardLifecycle>);

/// Asks for the shard's status.
#[derive(Clone, Copy, Debug, Message)]
#[rtype(result = "ShardStatus")]
pub struct GetShardStatus;

/// Stops the shard. Answers with the session for [`StopMode::HandOff`], so
/// another shard (maybe in another process) can resume it.
#[derive(Clone, Copy, Debug, Message)]
#[rtype(result = "Option<Session>")]
pub struct Shutdown(pub StopMode);

/// A snapshot of a shard.
#[derive(Clone, Debug)]
pub struct ShardStatus {
    /// The shard.
    pub shard: ShardId,
    /// Its state.
    pub state: ShardState,
    /// Heartbeat round trips.
    pub latency: Latency,
    /// The resumable session, if any.
    pub session: Option<Session>,
    /// Guilds READY listed for this shard.
    pub guilds: usize,
    /// GUILD_CREATEs received since READY, up to `guilds`.
    pub guilds_loaded: usize,
    /// Dispatches received.
    pub events_received: u64,
    /// Reconnects after a lost connection.
    pub reconnects: u64,
    /// Of those, the ones that had to start a new session (the rest resumed).
    pub reconnects_new_session: u64,
    /// Successful resumes.
    pub resumes: u64,
    /// Identifies sent.
    pub identifies: u64,
    /// The last close code the gateway sent.
    pub last_close_code: Option<u16>,
    /// Close codes the gateway sent, with how often.
    pub close_codes: BTreeMap<u16, u64>,
    /// Dispatches received by event name.
    pub events_by_type: BTreeMap<String, u64>,
    /// Times a command had to wait for the rate limiter.
    pub rate_limit_waits: u64,
    /// Commands waiting to be sent.
    pub commands_queued: usize,
    /// Delivered event messages subscribers have not dropped yet.
    pub events_outstanding: usize,
    /// Bytes received on the socket (compressed, if compression is on).
    pub inbound_bytes: u64,
    /// Payload bytes after decompression.
    pub inflated_bytes: u64,
}

impl ShardStatus {
    /// READY arrived and every guild it listed has been created.
    pub fn is_fully_loaded(&self) -> bool {
        matches!(self.state, ShardState::Active) && self.guilds_loaded >= self.guilds
    }
}

impl Handler<SendCommand> for Shard {
    type Result = Result<(), CommandError>;

    /// Queues a command; it goes out in order once the session is active.
    fn handle(
        &mut self,
        SendCommand(command): SendCommand,
        ctx: &mut Context<Self>,
    ) -> Self::Result {
        if self.machine.state().is_terminal() {
            return Err(CommandError::ShardStopped);
        }
        let encoded = command.encode()?;
        let capacity = self.config.command_queue_capacity;
        if self.commands.len() >= capacity {
            return Err(CommandError::QueueFull { capacity });
        }
        if let Command::UpdatePresence(presence) = command {
            // A new session identifies with the presence set last, so it
            // must fit in an Identify too, or no new session could start.
            if let Err(EncodeError::TooLarge { size }) = self.identify(Some(&presence)) {
                return Err(CommandError::TooLarge { size });
            }
            self.presence = Some(presence);
        }
        self.commands.push_back(encoded);
        self.flush_commands(ctx);
        Ok(())
    }
}

impl Handler<Subscribe> for Shard {
    type Result = ();

    /// Adds an event subscriber, or replaces the filter of one already
    /// subscribed (in one step, so no event falls between two messages).
    fn handle(&mut self, message: Subscribe, _ctx: &mut Context<Self>) {
        match self
            .subscribers
            .iter_mut()
            .find(|s| s.recipient == message.recipient)
        {
            Some(existing) => existing.filter = message.filter,
            None => self.subscribers.push(Subscriber {
                recipient: message.recipient,
                filter: message.filter,
            }),
        }
    }
}

impl Handler<Unsubscribe> for Shard {
    type Result = ();

    /// Removes an event subscriber.
    fn handle(&mut self, Unsubscribe(recipient): Unsubscribe, _ctx: &mut Context<Self>) {
        self.subscribers.retain(|s| s.recipient != recipient);
    }
}

impl Handler<SubscribeLifecycle> for Shard {
    type Result = ();

    /// Adds a lifecycle subscriber.
    fn handle(&mut self, SubscribeLifecycle(recipient): SubscribeLifecycle, _: &mut Context<Self>) {
        self.lifecycle.push(recipient);
    }
}

impl Handler<GetShardStatus> for Shard {
    type Result = actix::MessageResult<GetShardStatus>;

    /// Reports the shard's status.
    fn handle(&mut self, _: GetShardStatus, _ctx: &mut Context<Self>) -> Self::Result {
        actix::MessageResult(ShardStatus {
            shard: self.id,
            state: self.machine.state(),
            latency: *self.machine.latency(),
            session: self.machine.session().cloned(),
            guilds: self.stats.guilds_expected,
            guilds_loaded: self.stats.guilds_loaded,
            events_received: self.stats.events,
            reconnects: self.stats.reconnects,
            reconnects_new_session: self.stats.new_sessions,
            resumes: self.stats.resumes,
            identifies: self.stats.identifies,
            last_close_code: self.stats.last_close_code,
            close_codes: self.stats.close_codes.clone(),
            events_by_type: self
                .stats
                .events_by_type
                .iter()
                .map(|(name, count)| (name.to_string(), *count))
                .collect(),
            rate_limit_waits: self.stats.rate_limit_waits,
            commands_queued: self.commands.len(),
            events_outstanding: self.credits.outstanding(),
            inbound_bytes: self.stats.inbound_bytes,
            inflated_bytes: self.stats.inflated_bytes,
        })
    }
}

impl Handler<Shutdown> for Shard {
    type Result = Option<Session>;

    /// Closes the connection (1000, or 4000 for a hand-off) and stops.
    fn handle(&mut self, Shutdown(mode): Shutdown, ctx: &mut Context<Self>) -> Option<Session> {
        let session = self.machine.stop(mode);
        self.exit_cause = Some(super::ExitCause::Shutdown);
        self.run_actions(ctx);
        self.resolve_start(Err(crate::error::ShardStartError::Stopped));
        ctx.stop();
        session
    }
}
