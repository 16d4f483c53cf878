//! Which shard a command goes to (`docs/protocol.md`, "Sharding").

use crate::error::RouteError;
use discore_gateway::Command;
use discore_protocol::shard_for_guild;
use std::ops::Range;
use twilight_model::id::{Id, marker::GuildMarker};

/// Where a command goes.
#[derive(Clone, Copy, Debug, Eq, Hash, PartialEq)]
pub enum CommandTarget {
    /// One shard, by id.
    Shard(u32),
    /// The shard that holds this guild: `(guild_id >> 22) % total`.
    Guild(Id<GuildMarker>),
    /// Every shard this manager runs (a presence update, say).
    AllShards,
}

impl CommandTarget {
    /// The guild a command is about, when it names one, so that
    /// [`SendCommandTo::routed`](crate::SendCommandTo::routed) can route it.
    pub fn of(command: &Command) -> Option<Self> {
        match command {
            Command::RequestGuildMembers(request) => Some(Self::Guild(request.guild_id)),
            Command::UpdateVoiceState(update) => Some(Self::Guild(update.guild_id)),
            Command::UpdatePresence(_) => Some(Self::AllShards),
            _ => None,
        }
    }
}

/// The shard ids a target selects among `total` shards, of which this
/// manager runs `owned`.
pub(crate) fn resolve(
    target: CommandTarget,
    total: u32,
    owned: &Range<u32>,
) -> Result<Vec<u32>, RouteError> {
    let one = |shard: u32| {
        if owned.contains(&shard) {
            Ok(vec![shard])
        } else {
            Err(RouteError::NotOwned {
                shard,
                owned: owned.clone(),
            })
        }
    };
    match target {
        CommandTarget::Shard(shard) => one(shard),
        CommandTarget::Guild(guild) => one(shard_for_guild(guild.get(), total)),
        CommandTarget::AllShards => Ok(owned.clone().collect()),
    }
}

#[cfg(test)]
mod tests {
    use super::{CommandTarget, resolve};
    use crate::error::RouteError;
    use discore_gateway::Command;
    use twilight_model::{gateway::payload::outgoing::RequestGuildMembers, id::Id};

    #[test]
    fn guilds_route_by_the_snowflake_timestamp() {
        let owned = 0..4;
        // (id >> 22) % 4: timestamp 7 -> shard 3, 8 -> shard 0.
        let guild = |ts: u64| CommandTarget::Guild(Id::new((ts << 22) | 0x1234));
        assert_eq!(resolve(guild(7), 4, &owned), Ok(vec![3]));
        assert_eq!(resolve(guild(8), 4, &owned), Ok(vec![0]));
        assert_eq!(resolve(guild(8), 3, &(0..3)), Ok(vec![2]));
    }

    #[test]
    fn shards_of_other_processes_are_refused() {
        let owned = 4..8;
        assert_eq!(resolve(CommandTarget::Shard(5), 8, &owned), Ok(vec![5]));
        assert_eq!(
            resolve(CommandTarget::Shard(2), 8, &owned),
            Err(RouteError::NotOwned {
                shard: 2,
                owned: 4..8
            })
        );
        let guild = CommandTarget::Guild(Id::new(1 << 22));
        assert!(matches!(
            resolve(guild, 8, &owned),
            Err(RouteError::NotOwned { shard: 1, .. })
        ));
    }

    #[test]
    fn all_shards_are_the_owned_ones() {
        assert_eq!(
            resolve(CommandTarget::AllShards, 8, &(2..5)),
            Ok(vec![2, 3, 4])
        );
    }

    #[test]
    fn commands_name_their_target() {
        let members = RequestGuildMembers::builder(Id::new(9 << 22)).query("", None);
        assert_eq!(
            CommandTarget::of(&Command::from(members)),
            Some(CommandTarget::Guild(Id::new(9 << 22)))
        );
        assert_eq!(CommandTarget::of(&Command::Raw("{}".into())), None);
    }
}
