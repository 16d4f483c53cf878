//! What bots change through REST: messages and their reactions, roles,
//! members' nicknames and roles, application commands, interactions and
//! their responses.
//!
//! The world (`world.rs`) is a pure function of its seed; this is the part
//! that is not. Each kind is bounded, so an emulator that runs for days
//! stays bounded too. Messages of the traffic generator and the flood are
//! never stored (they would only fill it); messages a bot creates and those
//! posted with [`MockServer::post_message`](crate::MockServer::post_message)
//! are.

use crate::{
    payloads::Author,
    world::{World, unix_ms_now},
};
use serde_json::{Value, json};
use std::collections::{HashMap, VecDeque};

/// Messages kept at most; the oldest goes first.
const MAX_MESSAGES: usize = 100_000;
/// Interactions kept at most (their tokens stay valid that long).
const MAX_INTERACTIONS: usize = 10_000;
/// Discord's epoch (2015-01-01) in unix milliseconds.
const DISCORD_EPOCH_MS: u64 = 1_420_070_400_000;

/// One stored message.
#[derive(Clone, Debug)]
pub(crate) struct Message {
    pub(crate) guild: usize,
    pub(crate) channel: u64,
    /// Who wrote it (the bot may edit only its own).
    pub(crate) author: Author,
    /// The message object as REST returns it (no `guild_id`, `member`).
    pub(crate) value: Value,
    pub(crate) reactions: Vec<Reaction>,
}

/// The reactions with one emoji on one message.
#[derive(Clone, Debug)]
pub(crate) struct Reaction {
    /// `{"id": …, "name": …}`, as events carry it.
    pub(crate) emoji: Value,
    /// Who reacted, in order.
    pub(crate) users: Vec<u64>,
}

/// A member's changes made through REST.
#[derive(Clone, Debug, Default)]
pub(crate) struct MemberPatch {
    /// `Some(None)`: the nickname was removed.
    pub(crate) nick: Option<Option<String>>,
    pub(crate) roles: Option<Vec<String>>,
}

impl MemberPatch {
    /// Applies the changes to a member object.
    pub(crate) fn apply(&self, member: &mut Value) {
        let Some(map) = member.as_object_mut() else {
            return;
        };
        if let Some(nick) = &self.nick {
            map.insert("nick".to_owned(), json!(nick));
        }
        if let Some(roles) = &self.roles {
            map.insert("roles".to_owned(), json!(roles));
        }
    }
}

/// An interaction the emulator dispatched and what the bot answered.
#[derive(Clone, Debug)]
pub(crate) struct Interaction {
    pub(crate) token: String,
    pub(crate) guild: usize,
    pub(crate) channel: u64,
    /// The member who ran the command, and its name (a response's
    /// `interaction_metadata` names both).
    pub(crate) user_id: u64,
    pub(crate) command: String,
    /// The callback type the bot answered with, once it did.
    pub(crate) responded: Option<u64>,
    /// The response message (`@original`), once there is one.
    pub(crate) original: Option<u64>,
}

/// The changes to one guild a new session's GUILD_CREATE must show.
#[derive(Clone, Debug, Default)]
pub(crate) struct GuildOverlay {
    pub(crate) roles: Option<Vec<Value>>,
    pub(crate) members: Vec<(u64, MemberPatch)>,
}

impl GuildOverlay {
    /// Applies the changes to GUILD_CREATE's data.
    pub(crate) fn apply(&self, guild_create: &mut Value) {
        if let Some(roles) = &self.roles {
            guild_create["roles"] = json!(roles);
        }
        if let Some(members) = guild_create
            .get_mut("members")
            .and_then(Value::as_array_mut)
        {
            for member in members {
                let id = member
                    .pointer("/user/id")
                    .and_then(Value::as_str)
                    .and_then(|id| id.parse::<u64>().ok());
                if let Some((_, patch)) = self.members.iter().find(|(user, _)| Some(*user) == id) {
                    patch.apply(member);
                }
                if let Some(roles) = &self.roles
                    && let Some(held) = member.get_mut("roles").and_then(Value::as_array_mut)
                {
                    held.retain(|id| roles.iter().any(|r| r["id"] == *id));
                }
            }
        }
    }
}

/// The store.
#[derive(Debug, Default)]
pub(crate) struct Store {
    messages: HashMap<u64, Message>,
    message_order: VecDeque<u64>,
    roles: HashMap<usize, Vec<Value>>,
    members: HashMap<(usize, u64), MemberPatch>,
    /// `None`: global commands; `Some(guild id)`: a guild's.
    commands: HashMap<Option<u64>, Vec<Value>>,
    interactions: HashMap<u64, Interaction>,
    interaction_order: VecDeque<u64>,
    counter: u64,
}

impl Store {
    /// A new snowflake for an object created now (roles, commands).
    pub(crate) fn new_id(&mut self) -> u64 {
        self.counter += 1;
        let ms = unix_ms_now().saturating_sub(DISCORD_EPOCH_MS);
        (ms << 22) | (self.counter & 0x3F_FFFF)
    }

    // ----- messages -----

    pub(crate) fn insert_message(&mut self, id: u64, message: Message) {
        if self.messages.len() >= MAX_MESSAGES
            && let Some(oldest) = self.message_order.pop_front()
        {
            self.messages.remove(&oldest);
        }
        if self.messages.insert(id, message).is_none() {
            self.message_order.push_back(id);
        }
    }

    /// The message `id` of channel `channel`.
    pub(crate) fn message(&self, channel: u64, id: u64) -> Option<&Message> {
        self.messages.get(&id).filter(|m| m.channel == channel)
    }

    pub(crate) fn message_mut(&mut self, channel: u64, id: u64) -> Option<&mut Message> {
        self.messages.get_mut(&id).filter(|m| m.channel == channel)
    }

    pub(crate) fn remove_message(&mut self, channel: u64, id: u64) -> Option<Message> {
        self.message(channel, id)?;
        self.message_order.retain(|m| *m != id);
        self.messages.remove(&id)
    }

    /// A channel's messages, newest first, as `GET /channels/{id}/messages`
    /// pages them: before `before`, after `after`, at most `limit`.
    pub(crate) fn channel_messages(
        &self,
        channel: u64,
        before: Option<u64>,
        after: Option<u64>,
        limit: usize,
    ) -> Vec<&Message> {
        let mut ids: Vec<u64> = self
            .messages
            .iter()
            .filter(|(id, m)| {
                m.channel == channel
                    && before.is_none_or(|b| **id < b)
                    && after.is_none_or(|a| **id > a)
            })
            .map(|(id, _)| *id)
            .collect();
        if after.is_some() {
            // The ones right after `after`, still returned newest first.
            ids.sort_unstable();
            ids.truncate(limit);
            ids.reverse();
        } else {
            ids.sort_unstable_by(|a, b| b.cmp(a));
            ids.truncate(limit);
        }
        ids.iter().filter_map(|id| self.messages.get(id)).collect()
    }

    // ----- roles -----

    /// A guild's roles: as changed, or the world's.
    pub(crate) fn roles(&self, world: &World, guild: usize) -> Vec<Value> {
        self.roles
            .get(&guild)
            .cloned()
            .unwrap_or_else(|| world.roles(guild))
    }

    /// A guild's roles to change.
    pub(crate) fn roles_mut(&mut self, world: &World, guild: usize) -> &mut Vec<Value> {
        self.roles
            .entry(guild)
            .or_insert_with(|| world.roles(guild))
    }

    // ----- members -----

    /// A member of `guild` (`user_id` the bot's or a member's), with its
    /// changes and its user; `None` when not a member.
    pub(crate) fn member(&self, world: &World, guild: usize, user_id: u64) -> Option<Value> {
        let mut member = if user_id == world.bot_id {
            world.bot_member(guild, true)
        } else {
            world.member(guild, world.member_index(guild, user_id)?, true)
        };
        if let Some(patch) = self.members.get(&(guild, user_id)) {
            patch.apply(&mut member);
        }
        if let Some(roles) = self.roles.get(&guild) {
            // A deleted role leaves every member.
            if let Some(held) = member.get_mut("roles").and_then(Value::as_array_mut) {
                held.retain(|id| roles.iter().any(|r| r["id"] == *id));
            }
        }
        Some(member)
    }

    pub(crate) fn member_patch_mut(&mut self, guild: usize, user_id: u64) -> &mut MemberPatch {
        self.members.entry((guild, user_id)).or_default()
    }

    /// Removes a deleted role from every member changed so far; the world's
    /// members keep their generated roles only while it exists.
    pub(crate) fn forget_role(&mut self, guild: usize, role: &str) {
        for ((g, _), patch) in &mut self.members {
            if *g == guild
                && let Some(roles) = &mut patch.roles
            {
                roles.retain(|r| r != role);
            }
        }
    }

    /// The changes a guild's GUILD_CREATE must show, when there are any.
    pub(crate) fn overlay(&self, guild: usize) -> Option<GuildOverlay> {
        let roles = self.roles.get(&guild).cloned();
        let members: Vec<(u64, MemberPatch)> = self
            .members
            .iter()
            .filter(|((g, _), _)| *g == guild)
            .map(|((_, user), patch)| (*user, patch.clone()))
            .collect();
        (roles.is_some() || !members.is_empty()).then_some(GuildOverlay { roles, members })
    }

    // ----- commands -----

    /// Global (`None`) or a guild's commands.
    pub(crate) fn commands(&self, guild: Option<u64>) -> &[Value] {
        self.commands.get(&guild).map_or(&[], Vec::as_slice)
    }

    pub(crate) fn commands_mut(&mut self, guild: Option<u64>) -> &mut Vec<Value> {
        self.commands.entry(guild).or_default()
    }

    // ----- interactions -----

    pub(crate) fn insert_interaction(&mut self, id: u64, interaction: Interaction) {
        if self.interactions.len() >= MAX_INTERACTIONS
            && let Some(oldest) = self.interaction_order.pop_front()
        {
            self.interactions.remove(&oldest);
        }
        self.interactions.insert(id, interaction);
        self.interaction_order.push_back(id);
    }

    pub(crate) fn interaction_mut(&mut self, id: u64) -> Option<&mut Interaction> {
        self.interactions.get_mut(&id)
    }

    /// The interaction whose token this is.
    pub(crate) fn interaction_by_token(&mut self, token: &str) -> Option<&mut Interaction> {
        self.interactions.values_mut().find(|i| i.token == token)
    }
}

#[cfg(test)]
mod tests {
    use super::{Author, Message, Store};
    use serde_json::json;

    fn message(id: u64, channel: u64) -> Message {
        Message {
            guild: 0,
            channel,
            author: Author::Bot,
            value: json!({ "n": id }),
            reactions: Vec::new(),
        }
    }

    #[test]
    fn channel_pages_newest_first() {
        let mut store = Store::default();
        for id in 1..=10 {
            store.insert_message(id, message(id, if id % 2 == 0 { 7 } else { 8 }));
        }
        let ids = |page: Vec<&Message>| -> Vec<u64> {
            page.iter()
                .map(|m| m.value["n"].as_u64().unwrap_or_default())
                .collect()
        };
        assert_eq!(
            ids(store.channel_messages(7, None, None, 50)),
            [10, 8, 6, 4, 2]
        );
        assert_eq!(ids(store.channel_messages(7, Some(6), None, 50)), [4, 2]);
        assert_eq!(ids(store.channel_messages(7, None, Some(2), 2)), [6, 4]);
        assert!(store.message(8, 2).is_none());
        assert!(store.remove_message(7, 2).is_some());
        assert!(store.message(7, 2).is_none());
    }
}
