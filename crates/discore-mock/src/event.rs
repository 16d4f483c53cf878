//! A dispatch ready to route: its name, its pre-encoded data, the variant
//! with message content blanked, and the intent it needs (<https://discord.com/developers/docs/events/gateway#gateway-intents>).

use crate::intents::{
    AUTO_MODERATION_CONFIGURATION, AUTO_MODERATION_EXECUTION, DIRECT_MESSAGE_POLLS,
    DIRECT_MESSAGE_REACTIONS, DIRECT_MESSAGE_TYPING, DIRECT_MESSAGES, GUILD_EXPRESSIONS,
    GUILD_INTEGRATIONS, GUILD_INVITES, GUILD_MEMBERS, GUILD_MESSAGE_POLLS, GUILD_MESSAGE_REACTIONS,
    GUILD_MESSAGE_TYPING, GUILD_MESSAGES, GUILD_MODERATION, GUILD_PRESENCES,
    GUILD_SCHEDULED_EVENTS, GUILD_VOICE_STATES, GUILD_WEBHOOKS, GUILDS, MESSAGE_CONTENT,
};
use bytes::Bytes;
use serde_json::Value;
use std::{
    cell::RefCell,
    sync::{Arc, OnceLock},
};

/// The intent an event needs, or 0 when it is always sent. `in_guild` picks
/// between the guild and the direct-message intent of message events.
pub(crate) fn required_intent(name: &str, in_guild: bool) -> u64 {
    let pick = |guild: u64, direct: u64| if in_guild { guild } else { direct };
    match name {
        "GUILD_CREATE"
        | "GUILD_UPDATE"
        | "GUILD_DELETE"
        | "GUILD_ROLE_CREATE"
        | "GUILD_ROLE_UPDATE"
        | "GUILD_ROLE_DELETE"
        | "CHANNEL_CREATE"
        | "CHANNEL_UPDATE"
        | "CHANNEL_DELETE"
        | "THREAD_CREATE"
        | "THREAD_UPDATE"
        | "THREAD_DELETE"
        | "THREAD_LIST_SYNC"
        | "THREAD_MEMBER_UPDATE"
        | "THREAD_MEMBERS_UPDATE"
        | "STAGE_INSTANCE_CREATE"
        | "STAGE_INSTANCE_UPDATE"
        | "STAGE_INSTANCE_DELETE"
        | "VOICE_CHANNEL_STATUS_UPDATE"
        | "VOICE_CHANNEL_START_TIME_UPDATE" => GUILDS,
        "CHANNEL_PINS_UPDATE" => pick(GUILDS, DIRECT_MESSAGES),
        "GUILD_MEMBER_ADD" | "GUILD_MEMBER_UPDATE" | "GUILD_MEMBER_REMOVE" => GUILD_MEMBERS,
        "GUILD_AUDIT_LOG_ENTRY_CREATE" | "GUILD_BAN_ADD" | "GUILD_BAN_REMOVE" => GUILD_MODERATION,
        "GUILD_EMOJIS_UPDATE"
        | "GUILD_STICKERS_UPDATE"
        | "GUILD_SOUNDBOARD_SOUND_CREATE"
        | "GUILD_SOUNDBOARD_SOUND_UPDATE"
        | "GUILD_SOUNDBOARD_SOUND_DELETE"
        | "GUILD_SOUNDBOARD_SOUNDS_UPDATE" => GUILD_EXPRESSIONS,
        "GUILD_INTEGRATIONS_UPDATE"
        | "INTEGRATION_CREATE"
        | "INTEGRATION_UPDATE"
        | "INTEGRATION_DELETE" => GUILD_INTEGRATIONS,
        "WEBHOOKS_UPDATE" => GUILD_WEBHOOKS,
        "INVITE_CREATE" | "INVITE_DELETE" => GUILD_INVITES,
        "VOICE_STATE_UPDATE" | "VOICE_CHANNEL_EFFECT_SEND" => GUILD_VOICE_STATES,
        "PRESENCE_UPDATE" => GUILD_PRESENCES,
        "MESSAGE_CREATE" | "MESSAGE_UPDATE" | "MESSAGE_DELETE" | "MESSAGE_DELETE_BULK" => {
            pick(GUILD_MESSAGES, DIRECT_MESSAGES)
        }
        "MESSAGE_REACTION_ADD"
        | "MESSAGE_REACTION_REMOVE"
        | "MESSAGE_REACTION_REMOVE_ALL"
        | "MESSAGE_REACTION_REMOVE_EMOJI" => {
            pick(GUILD_MESSAGE_REACTIONS, DIRECT_MESSAGE_REACTIONS)
        }
        "TYPING_START" => pick(GUILD_MESSAGE_TYPING, DIRECT_MESSAGE_TYPING),
        "GUILD_SCHEDULED_EVENT_CREATE"
        | "GUILD_SCHEDULED_EVENT_UPDATE"
        | "GUILD_SCHEDULED_EVENT_DELETE"
        | "GUILD_SCHEDULED_EVENT_USER_ADD"
        | "GUILD_SCHEDULED_EVENT_USER_REMOVE" => GUILD_SCHEDULED_EVENTS,
        "AUTO_MODERATION_RULE_CREATE"
        | "AUTO_MODERATION_RULE_UPDATE"
        | "AUTO_MODERATION_RULE_DELETE" => AUTO_MODERATION_CONFIGURATION,
        "AUTO_MODERATION_ACTION_EXECUTION" => AUTO_MODERATION_EXECUTION,
        "MESSAGE_POLL_VOTE_ADD" | "MESSAGE_POLL_VOTE_REMOVE" => {
            pick(GUILD_MESSAGE_POLLS, DIRECT_MESSAGE_POLLS)
        }
        _ => 0,
    }
}

/// One dispatch, encoded once and shared by every session it goes to.
#[derive(Clone, Debug)]
pub(crate) struct Event {
    pub(crate) name: Arc<str>,
    pub(crate) data: Bytes,
    /// `data` with message content blanked, for sessions without
    /// MESSAGE_CONTENT: `None` when the content is exempt or absent, an
    /// empty cell until the first such session needs it. Most bots that
    /// read messages hold the intent, so the copy is made only on demand.
    pub(crate) blanked: Option<OnceLock<Bytes>>,
    /// Intent bits of which the session needs one; 0 for always.
    pub(crate) intent: u64,
    /// The guild it belongs to (routing); `None` goes to shard 0.
    pub(crate) guild: Option<u64>,
}

/// A serialization larger than this is not kept as the thread's scratch
/// buffer, so one large event leaves no large buffer behind.
const SCRATCH_KEPT: usize = 64 * 1024;

thread_local! {
    static SCRATCH: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// `value` as JSON text, in a buffer of exactly its length.
///
/// `serde_json` writes into the thread's scratch buffer, and the text is
/// copied out once: serializing into a fresh `Vec` grew it three or four
/// times for a message (128 bytes, doubled), each a `realloc`, which showed
/// when a benchmark dispatched 50,000 events a second. (`Value`'s `Display`
/// goes through the formatting machinery, a few times slower still.)
fn json_bytes(value: &Value) -> Bytes {
    let serialized = SCRATCH.try_with(|scratch| {
        let mut scratch = scratch.borrow_mut();
        scratch.clear();
        // Serializing a `Value` cannot fail: its map keys are strings.
        let bytes = serde_json::to_writer(&mut *scratch, value)
            .ok()
            .map(|()| Bytes::copy_from_slice(&scratch));
        if scratch.capacity() > SCRATCH_KEPT {
            *scratch = Vec::new();
        }
        bytes
    });
    match serialized {
        Ok(Some(bytes)) => bytes,
        // The thread is ending (or the impossible error): no scratch.
        _ => serde_json::to_vec(value).map_or_else(|_| Bytes::from(value.to_string()), Bytes::from),
    }
}

impl Event {
    /// Builds an event from JSON, deriving guild, intent and the blanked
    /// variant from the data, as Discord would.
    pub(crate) fn from_value(name: &str, data: &Value, bot_id: u64) -> Self {
        let guild = data.get("guild_id").and_then(|g| {
            g.as_str()
                .and_then(|s| s.parse().ok())
                .or_else(|| g.as_u64())
        });
        let mut intent = required_intent(name, guild.is_some());
        // GUILD_MEMBER_UPDATE about the bot itself comes without GUILD_MEMBERS.
        if name == "GUILD_MEMBER_UPDATE"
            && data.pointer("/user/id").and_then(Value::as_str) == Some(bot_id.to_string().as_str())
        {
            intent = 0;
        }
        Self {
            name: Arc::from(name),
            data: json_bytes(data),
            blanked: content_rule_applies(name, data, bot_id).then(OnceLock::new),
            intent,
            guild,
        }
    }

    /// An event that needs no intent and has no content to blank.
    pub(crate) fn plain(name: &str, data: &Value, guild: Option<u64>) -> Self {
        Self {
            name: Arc::from(name),
            data: json_bytes(data),
            blanked: None,
            intent: 0,
            guild,
        }
    }

    /// Whether a session with `intents` receives it.
    pub(crate) fn allowed(&self, intents: u64) -> bool {
        self.intent == 0 || intents & self.intent != 0
    }

    /// The data a session with `intents` receives.
    pub(crate) fn data_for(&self, intents: u64) -> &Bytes {
        match &self.blanked {
            Some(blanked) if intents & MESSAGE_CONTENT == 0 => {
                blanked.get_or_init(|| blanked_copy(&self.name, &self.data))
            }
            _ => &self.data,
        }
    }
}

/// Whether the MESSAGE_CONTENT rule (<https://discord.com/developers/docs/events/gateway#gateway-intents>)
/// applies to an event: sessions without the intent receive `content`,
/// `embeds`, `attachments` and `components` empty and no `poll`, except in
/// the app's own messages, DMs, and messages that mention the app.
pub(crate) fn content_rule_applies(name: &str, data: &Value, bot_id: u64) -> bool {
    match name {
        "MESSAGE_CREATE" | "MESSAGE_UPDATE" => {
            let bot = bot_id.to_string();
            let in_guild = data.get("guild_id").is_some_and(|g| !g.is_null());
            let own = data.pointer("/author/id").and_then(Value::as_str) == Some(bot.as_str());
            let mentioned = data
                .get("mentions")
                .and_then(Value::as_array)
                .is_some_and(|m| {
                    m.iter()
                        .any(|u| u.get("id").and_then(Value::as_str) == Some(bot.as_str()))
                });
            in_guild && !own && !mentioned && data.is_object()
        }
        "AUTO_MODERATION_ACTION_EXECUTION" => data.is_object(),
        _ => false,
    }
}

/// Blanks the content of `data`, an event [`content_rule_applies`] to.
fn blank_content(name: &str, data: &mut Value) {
    let Some(map) = data.as_object_mut() else {
        return;
    };
    if name == "AUTO_MODERATION_ACTION_EXECUTION" {
        map.insert("content".to_owned(), Value::String(String::new()));
        if map.contains_key("matched_content") {
            map.insert("matched_content".to_owned(), Value::Null);
        }
        return;
    }
    for (key, empty) in [
        ("content", Value::String(String::new())),
        ("embeds", Value::Array(Vec::new())),
        ("attachments", Value::Array(Vec::new())),
        ("components", Value::Array(Vec::new())),
    ] {
        if map.contains_key(key) {
            map.insert(key.to_owned(), empty);
        }
    }
    map.remove("poll");
}

/// The blanked copy of an event's encoded data, made from the encoding
/// (which the emulator wrote itself, so it parses).
fn blanked_copy(name: &str, data: &Bytes) -> Bytes {
    match serde_json::from_slice::<Value>(data) {
        Ok(mut value) => {
            blank_content(name, &mut value);
            json_bytes(&value)
        }
        Err(error) => {
            log::error!("{name}: the emulator's own encoding does not parse ({error}); sent as is");
            data.clone()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// The scratch buffer gives each event exactly its own text, not a
    /// view of the buffer a later event overwrites, and one large event
    /// leaves no large buffer on the thread.
    #[test]
    fn serialized_data_is_exact_and_outlives_the_scratch() {
        let small = json!({"id": "1", "content": "hello \"world\"", "n": [1, 2.5, null]});
        let first = json_bytes(&small);
        let large = json!({"content": "x".repeat(SCRATCH_KEPT * 2)});
        let second = json_bytes(&large);
        let third = json_bytes(&json!({"id": "3"}));
        assert_eq!(first, serde_json::to_vec(&small).expect("serializes"));
        assert_eq!(second, serde_json::to_vec(&large).expect("serializes"));
        assert_eq!(&third[..], br#"{"id":"3"}"#);
        let kept = SCRATCH.with(|scratch| scratch.borrow().capacity());
        assert!(kept <= SCRATCH_KEPT, "scratch kept {kept} bytes");
    }

    #[test]
    fn message_intents_depend_on_guild() {
        assert_eq!(required_intent("MESSAGE_CREATE", true), GUILD_MESSAGES);
        assert_eq!(required_intent("MESSAGE_CREATE", false), DIRECT_MESSAGES);
        assert_eq!(required_intent("READY", true), 0);
        assert_eq!(required_intent("INTERACTION_CREATE", true), 0);
        assert_eq!(required_intent("SOMETHING_NEW", true), 0);
    }

    #[test]
    fn content_blanked_unless_exempt() {
        let message = json!({"guild_id": "1", "author": {"id": "5"}, "content": "hi", "embeds": [1], "mentions": [], "poll": {}});
        let event = Event::from_value("MESSAGE_CREATE", &message, 9);
        assert_eq!(event.intent, GUILD_MESSAGES);
        // The blanked copy is made when a session first needs it.
        assert!(event.blanked.as_ref().is_some_and(|b| b.get().is_none()));
        let blanked: Value = serde_json::from_slice(event.data_for(GUILD_MESSAGES)).expect("json");
        assert_eq!(blanked["content"], "");
        assert_eq!(blanked["embeds"], json!([]));
        assert!(blanked.get("poll").is_none());
        let full: Value =
            serde_json::from_slice(event.data_for(GUILD_MESSAGES | MESSAGE_CONTENT)).expect("json");
        assert_eq!(full["content"], "hi");

        let mention = json!({"guild_id": "1", "author": {"id": "5"}, "content": "hi", "mentions": [{"id": "9"}]});
        assert!(!content_rule_applies("MESSAGE_CREATE", &mention, 9));
        let own = json!({"guild_id": "1", "author": {"id": "9"}, "content": "hi"});
        assert!(!content_rule_applies("MESSAGE_CREATE", &own, 9));
        let dm = json!({"author": {"id": "5"}, "content": "hi"});
        assert!(!content_rule_applies("MESSAGE_CREATE", &dm, 9));
        let exempt = Event::from_value("MESSAGE_CREATE", &dm, 9);
        assert_eq!(exempt.data_for(0), &exempt.data);
    }

    #[test]
    fn auto_moderation_content_is_blanked() {
        let execution =
            json!({"guild_id": "1", "content": "bad", "matched_content": "bad", "rule_id": "2"});
        let event = Event::from_value("AUTO_MODERATION_ACTION_EXECUTION", &execution, 9);
        let blanked: Value = serde_json::from_slice(event.data_for(0)).expect("json");
        assert_eq!(blanked["content"], "");
        assert_eq!(blanked["matched_content"], Value::Null);
        assert_eq!(blanked["rule_id"], "2");
    }

    #[test]
    fn member_update_of_the_bot_needs_no_intent() {
        let own = json!({"guild_id": "1", "user": {"id": "9"}});
        assert_eq!(Event::from_value("GUILD_MEMBER_UPDATE", &own, 9).intent, 0);
        let other = json!({"guild_id": "1", "user": {"id": "8"}});
        assert_eq!(
            Event::from_value("GUILD_MEMBER_UPDATE", &other, 9).intent,
            GUILD_MEMBERS
        );
    }
}
