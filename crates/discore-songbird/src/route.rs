//! Where Update Voice State (op 4) goes: through a `ShardManager` to the
//! shard of the guild, or to one `Shard`.

use actix::{Addr, MailboxError};
use discore_gateway::{
    Command, CommandError, EventFilter, GatewayEvent, SendCommand, Shard, Subscribe,
};
use discore_manager::{RouteError, SendCommandTo, ShardManager};
use std::fmt;
use twilight_model::{
    gateway::payload::outgoing::update_voice_state::UpdateVoiceStateInfo,
    id::{
        Id,
        marker::{ChannelMarker, GuildMarker},
    },
};

/// How voice commands reach Discord: the fleet, or a single shard.
#[derive(Clone)]
pub enum VoiceRoute {
    /// Through a `ShardManager`, which sends the command to the shard of
    /// its guild, `(guild_id >> 22) % total` with the fleet's current total
    /// (so it stays right across a re-sharding).
    Manager(Addr<ShardManager>),
    /// One shard without a manager (a bot that runs a single shard).
    Shard(Addr<Shard>),
}

impl fmt::Debug for VoiceRoute {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Manager(_) => "VoiceRoute::Manager",
            Self::Shard(_) => "VoiceRoute::Shard",
        })
    }
}

impl From<Addr<ShardManager>> for VoiceRoute {
    fn from(manager: Addr<ShardManager>) -> Self {
        Self::Manager(manager)
    }
}

impl From<Addr<Shard>> for VoiceRoute {
    fn from(shard: Addr<Shard>) -> Self {
        Self::Shard(shard)
    }
}

impl VoiceRoute {
    /// Sends Update Voice State for `guild`: join (or move to) `channel`,
    /// or leave with `None`. Resolves once the shard has queued it; it goes
    /// out when the session is active, paced by the shard's rate limiter.
    ///
    /// # Errors
    ///
    /// [`VoiceRouteError`] when no running shard took the command.
    pub async fn update_voice_state(
        &self,
        guild: Id<GuildMarker>,
        channel: Option<Id<ChannelMarker>>,
        self_deaf: bool,
        self_mute: bool,
    ) -> Result<(), VoiceRouteError> {
        let command = Command::UpdateVoiceState(UpdateVoiceStateInfo::new(
            guild, channel, self_deaf, self_mute,
        ));
        match self {
            Self::Manager(manager) => {
                manager.send(SendCommandTo::guild(guild, command)).await??;
            }
            Self::Shard(shard) => shard.send(SendCommand(command)).await??,
        }
        Ok(())
    }

    /// Subscribes `recipient` to the events `filter` selects, on every
    /// shard of the route.
    pub fn subscribe(&self, recipient: actix::Recipient<GatewayEvent>, filter: EventFilter) {
        let message = Subscribe { recipient, filter };
        match self {
            Self::Manager(manager) => manager.do_send(message),
            Self::Shard(shard) => shard.do_send(message),
        }
    }
}

/// Why a voice command was not queued by a shard.
#[derive(Debug)]
#[non_exhaustive]
pub enum VoiceRouteError {
    /// The manager could not route it (the shard is restarting, of another
    /// process, or refused it).
    Route(RouteError),
    /// The shard refused it.
    Command(CommandError),
    /// The manager or shard actor has stopped.
    Stopped(MailboxError),
}

impl fmt::Display for VoiceRouteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Route(_) => f.write_str("voice state update not routed"),
            Self::Command(_) => f.write_str("voice state update refused by the shard"),
            Self::Stopped(_) => f.write_str("the shard or manager has stopped"),
        }
    }
}

impl std::error::Error for VoiceRouteError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Route(error) => Some(error),
            Self::Command(error) => Some(error),
            Self::Stopped(error) => Some(error),
        }
    }
}

impl From<RouteError> for VoiceRouteError {
    fn from(error: RouteError) -> Self {
        Self::Route(error)
    }
}

impl From<CommandError> for VoiceRouteError {
    fn from(error: CommandError) -> Self {
        Self::Command(error)
    }
}

impl From<MailboxError> for VoiceRouteError {
    fn from(error: MailboxError) -> Self {
        Self::Stopped(error)
    }
}

#[cfg(test)]
mod tests {
    use super::VoiceRouteError;
    use actix::MailboxError;
    use discore_gateway::CommandError;
    use discore_manager::RouteError;
    use discore_protocol::ErrorChain;

    #[test]
    fn messages_do_not_repeat_their_sources() {
        for error in [
            VoiceRouteError::Route(RouteError::Stopping),
            VoiceRouteError::Command(CommandError::QueueFull { capacity: 8 }),
            VoiceRouteError::Stopped(MailboxError::Closed),
        ] {
            let messages = ErrorChain(&error).messages();
            assert_eq!(messages.len(), 2, "{messages:?} has its source");
            assert!(!messages[0].contains(&messages[1]), "{messages:?}");
        }
    }
}
