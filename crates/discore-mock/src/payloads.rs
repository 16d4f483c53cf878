//! Builders of dispatch data (`d`) in Discord's shapes (`docs/protocol.md`,
//! "Identify and READY", "Commands"; Discord's Gateway Events page).

use crate::world::{ChannelKind, INTERACTION_BASE, MESSAGE_BASE, World, iso8601, mix, unix_ms_now};
use serde_json::{Value, json};

/// Who wrote a message.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Author {
    /// Member `n` of the guild.
    Member(u32),
    /// The bot itself (REST-created messages).
    Bot,
}

/// A message id from a counter: snowflakes increase like real ones.
pub(crate) fn message_id(counter: u64) -> u64 {
    ((MESSAGE_BASE + counter) << 22) | (counter & 0xFFF)
}

/// An interaction id from a counter.
pub(crate) fn interaction_id(counter: u64) -> u64 {
    ((INTERACTION_BASE + counter) << 22) | (counter & 0xFFF)
}

/// A message object; `gateway` adds MESSAGE_CREATE's `guild_id` and
/// `member` (REST responses carry neither). Mentions come from the content.
pub(crate) fn message(
    world: &World,
    guild: usize,
    channel: ChannelKind,
    author: Author,
    content: &str,
    id: u64,
    gateway: bool,
) -> Value {
    let (author_json, member_json) = match author {
        Author::Member(m) => (world.user(guild, m), world.member(guild, m, false)),
        Author::Bot => (world.bot_user(), world.bot_member(guild, false)),
    };
    let mentions = mentions_in(world, guild, content);
    let mut value = json!({
        "type": 0,
        "tts": false,
        "timestamp": iso8601(unix_ms_now()),
        "pinned": false,
        "nonce": format!("{}", id.wrapping_add(17)),
        "mentions": mentions,
        "mention_roles": [],
        "mention_everyone": false,
        "id": id.to_string(),
        "flags": 0,
        "embeds": [],
        "edited_timestamp": null,
        "content": content,
        "components": [],
        "channel_id": world.channel_id(guild, channel).to_string(),
        "author": author_json,
        "attachments": [],
    });
    if gateway && let Some(map) = value.as_object_mut() {
        map.insert(
            "guild_id".to_owned(),
            Value::String(world.guild_id(guild).to_string()),
        );
        map.insert("member".to_owned(), member_json);
        map.insert("channel_type".to_owned(), json!(0));
    }
    value
}

/// A MESSAGE_CREATE from a member, about 1 KB like Discord's.
pub(crate) fn member_message(world: &World, guild: usize, counter: u64) -> Value {
    let h = mix(counter, 21, guild as u64);
    let members = world.members_per_guild().max(1);
    let member = (h % u64::from(members)) as u32;
    let channel = ChannelKind::Text(((h >> 8) % u64::from(world.channels_per_guild())) as u32);
    let words = 8 + ((h >> 24) % 24) as usize;
    let mut content = world.message_words(h, words);
    if (h >> 16).is_multiple_of(4) && members > 1 {
        content = format!(
            "<@{}> {content}",
            world.user_id(guild, (member + 1) % members)
        );
    }
    message(
        world,
        guild,
        channel,
        Author::Member(member),
        &content,
        message_id(counter),
        true,
    )
}

/// The users mentioned as `<@id>` or `<@!id>` in `content`, each with a
/// partial member, as MESSAGE_CREATE's `mentions` carries them.
pub(crate) fn mentions_in(world: &World, guild: usize, content: &str) -> Vec<Value> {
    let mut mentions: Vec<Value> = Vec::new();
    let mut seen = Vec::new();
    for piece in content.split("<@").skip(1).take(100) {
        let Some(end) = piece.find('>') else { continue };
        let Ok(id) = piece[..end].trim_start_matches('!').parse::<u64>() else {
            continue;
        };
        if seen.contains(&id) {
            continue;
        }
        seen.push(id);
        let (mut user, member) = if id == world.bot_id {
            (world.bot_user(), world.bot_member(guild, false))
        } else if let Some(m) = world.member_index(guild, id) {
            (world.user(guild, m), world.member(guild, m, false))
        } else {
            continue;
        };
        if let Some(map) = user.as_object_mut() {
            map.insert("member".to_owned(), member);
        }
        mentions.push(user);
    }
    mentions
}

/// TYPING_START.
pub(crate) fn typing_start(world: &World, guild: usize, member: u32, channel: u32) -> Value {
    json!({
        "user_id": world.user_id(guild, member).to_string(),
        "timestamp": unix_ms_now() / 1000,
        "member": world.member(guild, member, true),
        "channel_id": world.channel_id(guild, ChannelKind::Text(channel)).to_string(),
        "guild_id": world.guild_id(guild).to_string(),
    })
}

/// MESSAGE_REACTION_ADD.
pub(crate) fn reaction_add(
    world: &World,
    guild: usize,
    member: u32,
    channel: u32,
    counter: u64,
) -> Value {
    let emoji = ["🔥", "👍", "😂", "🎉", "❤️"][(counter % 5) as usize];
    json!({
        "user_id": world.user_id(guild, member).to_string(),
        "type": 0,
        "message_id": message_id(counter.saturating_sub(1)).to_string(),
        "message_author_id": world.user_id(guild, (member + 1) % world.members_per_guild().max(1)).to_string(),
        "member": world.member(guild, member, true),
        "emoji": { "id": null, "name": emoji },
        "channel_id": world.channel_id(guild, ChannelKind::Text(channel)).to_string(),
        "burst": false,
        "burst_colors": [],
        "guild_id": world.guild_id(guild).to_string(),
    })
}

/// PRESENCE_UPDATE with a status that changes over time.
pub(crate) fn presence_update(world: &World, guild: usize, member: u32, counter: u64) -> Value {
    let mut value = world.presence(guild, member);
    let status = ["online", "idle", "dnd", "online"][(counter % 4) as usize];
    if let Some(map) = value.as_object_mut() {
        map.insert("status".to_owned(), json!(status));
        map.insert("client_status".to_owned(), json!({ "desktop": status }));
    }
    value
}

/// GUILD_MEMBER_UPDATE.
pub(crate) fn member_update(world: &World, guild: usize, member: u32, counter: u64) -> Value {
    let mut value = world.member(guild, member, true);
    if let Some(map) = value.as_object_mut() {
        map.insert(
            "guild_id".to_owned(),
            json!(world.guild_id(guild).to_string()),
        );
        map.insert("nick".to_owned(), json!(format!("nick-{counter}")));
    }
    value
}

/// VOICE_STATE_UPDATE for the bot.
pub(crate) fn voice_state(
    world: &World,
    guild: usize,
    channel_id: Option<u64>,
    self_mute: bool,
    self_deaf: bool,
    session_id: &str,
) -> Value {
    json!({
        "member": world.bot_member(guild, true),
        "user_id": world.bot_id.to_string(),
        "suppress": false,
        "session_id": session_id,
        "self_video": false,
        "self_mute": self_mute,
        "self_deaf": self_deaf,
        "request_to_speak_timestamp": null,
        "mute": false,
        "guild_id": world.guild_id(guild).to_string(),
        "deaf": false,
        "channel_id": channel_id.map(|c| c.to_string()),
    })
}

/// VOICE_SERVER_UPDATE.
pub(crate) fn voice_server(world: &World, guild: usize, token: &str) -> Value {
    json!({
        "token": token,
        "guild_id": world.guild_id(guild).to_string(),
        "endpoint": "voice.discore-mock.invalid:443",
    })
}

/// INTERACTION_CREATE for a slash command run by a member.
#[allow(clippy::too_many_arguments)]
pub(crate) fn interaction(
    world: &World,
    guild: usize,
    channel: u32,
    member: u32,
    id: u64,
    token: &str,
    command: &str,
    options: &Value,
) -> Value {
    let mut member_json = world.member(guild, member, true);
    if let Some(map) = member_json.as_object_mut() {
        map.insert("permissions".to_owned(), json!("2147483647"));
    }
    let guild_id = world.guild_id(guild).to_string();
    let mut channel_json = world.channel_object(guild, ChannelKind::Text(channel), true);
    if let Some(map) = channel_json.as_object_mut() {
        map.insert("permissions".to_owned(), json!("2147483647"));
    }
    json!({
        "version": 1,
        "type": 2,
        "token": token,
        "member": member_json,
        "locale": "en-US",
        "id": id.to_string(),
        "guild_locale": "en-US",
        "guild_id": guild_id,
        "guild": { "locale": "en-US", "id": guild_id, "features": ["COMMUNITY"] },
        "entitlements": [],
        "entitlement_sku_ids": [],
        "data": {
            "type": 1,
            "name": command,
            "id": (mix(id, 31, 0) >> 1).to_string(),
            "options": options,
        },
        "context": 0,
        "channel_id": world.channel_id(guild, ChannelKind::Text(channel)).to_string(),
        "channel": channel_json,
        "authorizing_integration_owners": { "0": guild_id },
        "attachment_size_limit": 10_485_760,
        "application_id": world.bot_id.to_string(),
        "app_permissions": "2248473465835073",
    })
}

/// RATE_LIMITED for an all-members request, in Discord's documented shape.
pub(crate) fn rate_limited(guild_id: u64, retry_after: f64, nonce: Option<&str>) -> Value {
    let mut meta = json!({ "guild_id": guild_id.to_string() });
    if let (Some(nonce), Some(map)) = (nonce, meta.as_object_mut()) {
        map.insert("nonce".to_owned(), json!(nonce));
    }
    json!({ "opcode": 8, "retry_after": retry_after, "meta": meta })
}

/// SOUNDBOARD_SOUNDS for one guild.
pub(crate) fn soundboard_sounds(world: &World, guild: usize) -> Value {
    json!({
        "guild_id": world.guild_id(guild).to_string(),
        "soundboard_sounds": [world.soundboard_sound(guild, 0), world.soundboard_sound(guild, 1)],
    })
}

/// CHANNEL_INFO for the voice channels of one guild.
pub(crate) fn channel_info(world: &World, guild: usize, status: bool, start_time: bool) -> Value {
    let mut channel = json!({ "id": world.channel_id(guild, ChannelKind::Voice).to_string() });
    if let Some(map) = channel.as_object_mut() {
        if status {
            map.insert("status".to_owned(), json!("Chatting in the mock"));
        }
        if start_time {
            map.insert(
                "voice_start_time".to_owned(),
                json!(unix_ms_now() / 1000 - 600),
            );
        }
    }
    json!({ "guild_id": world.guild_id(guild).to_string(), "channels": [channel] })
}

/// READY's `d`.
pub(crate) fn ready(
    world: &World,
    version: u8,
    session_id: &str,
    resume_url: &str,
    shard: Option<[u32; 2]>,
    guilds: &[usize],
) -> Value {
    let guilds: Vec<Value> = guilds
        .iter()
        .map(|g| json!({ "id": world.guild_id(*g).to_string(), "unavailable": true }))
        .collect();
    let mut value = json!({
        "v": version,
        "user_settings": {},
        "user": world.bot_user(),
        "session_type": "normal",
        "session_id": session_id,
        "resume_gateway_url": resume_url,
        "relationships": [],
        "private_channels": [],
        "presences": [],
        "guilds": guilds,
        "guild_join_requests": [],
        "geo_ordered_rtc_regions": ["rotterdam", "frankfurt", "madrid", "milan", "stockholm"],
        "auth": {},
        "application": { "id": world.bot_id.to_string(), "flags": world.application_flags },
        "_trace": ["[\"discore-mock\",{\"micros\":0}]"],
    });
    if let (Some(shard), Some(map)) = (shard, value.as_object_mut()) {
        map.insert("shard".to_owned(), json!(shard));
    }
    value
}

/// A random-looking hex string (session ids, voice tokens).
pub(crate) fn hex_id(seed: u64, counter: u64) -> String {
    format!(
        "{:016x}{:016x}",
        mix(seed, 41, counter),
        mix(seed, 42, counter)
    )
}
