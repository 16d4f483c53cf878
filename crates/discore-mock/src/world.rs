//! The deterministic synthetic world: the bot user, the application, guilds
//! with channels, roles and members, built from a seed.
//!
//! Nothing per member is stored: every object is a pure function of the seed
//! and its indices, so a world of 5,000 guilds costs a few kilobytes and any
//! object can be rebuilt on demand. Ids are real snowflakes whose timestamp
//! part encodes the indices, which makes every lookup O(1).

use serde_json::{Value, json};

/// Discord's epoch (2015-01-01) in unix milliseconds.
const DISCORD_EPOCH_MS: u64 = 1_420_070_400_000;

// Snowflake timestamp bases (ms since the Discord epoch), one range per kind.
const USER_BASE: u64 = 40_000_000_000;
const BOT_TS: u64 = 190_000_000_000;
const GUILD_BASE: u64 = 200_000_000_000;
const CHANNEL_BASE: u64 = 220_000_000_000;
const ROLE_BASE: u64 = 240_000_000_000;
const SOUND_BASE: u64 = 250_000_000_000;
pub(crate) const MESSAGE_BASE: u64 = 290_000_000_000;
pub(crate) const INTERACTION_BASE: u64 = 300_000_000_000;
/// Channels slots reserved per guild (category, texts, voice).
const CHANNEL_SLOTS: u64 = 64;
/// Users addressable before the user range would reach the bot's.
const MAX_USERS: u64 = BOT_TS - USER_BASE;

const ADJECTIVES: [&str; 16] = [
    "Amber", "Brave", "Calm", "Dusty", "Eager", "Fuzzy", "Gentle", "Hidden", "Icy", "Jolly",
    "Keen", "Lucky", "Mellow", "Nimble", "Odd", "Proud",
];
const NOUNS: [&str; 16] = [
    "Otters", "Falcons", "Gardens", "Pixels", "Harbor", "Lanterns", "Meadow", "Comets", "Foxes",
    "Rangers", "Voyagers", "Wizards", "Badgers", "Pirates", "Cactus", "Orbit",
];
const NAMES: [&str; 20] = [
    "alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi", "ivan", "judy", "kim",
    "leo", "mallory", "nina", "oscar", "peggy", "quinn", "rupert", "sybil", "trent",
];
const WORDS: [&str; 32] = [
    "the",
    "gateway",
    "shard",
    "resume",
    "heartbeat",
    "ready",
    "guild",
    "message",
    "quick",
    "brown",
    "fox",
    "jumps",
    "over",
    "lazy",
    "dog",
    "and",
    "then",
    "sends",
    "another",
    "packet",
    "through",
    "the",
    "socket",
    "while",
    "zlib",
    "streams",
    "keep",
    "flowing",
    "in",
    "order",
    "again",
    "today",
];
const ACTIVITIES: [&str; 8] = [
    "Rocket League",
    "Minecraft",
    "Visual Studio Code",
    "Spotify",
    "Factorio",
    "Stardew Valley",
    "Chess",
    "Celeste",
];

/// A stable 64-bit mix of the seed and some indices (splitmix64 steps).
pub(crate) fn mix(seed: u64, a: u64, b: u64) -> u64 {
    let mut z =
        seed ^ a.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ b.wrapping_mul(0xC2B2_AE3D_27D4_EB4F);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn snowflake(timestamp: u64, low: u64) -> u64 {
    (timestamp << 22) | (low & 0x3F_FFFF)
}

/// The shard of `[id, total]` that a guild's events go to: Discord's
/// `shard_id = (guild_id >> 22) % num_shards`
/// (<https://discord.com/developers/docs/events/gateway#sharding>).
pub(crate) fn shard_of(guild_id: u64, total: u32) -> u32 {
    // Less than `total`, so it fits.
    ((guild_id >> 22) % u64::from(total.max(1))) as u32
}

/// Unix milliseconds of a snowflake.
pub(crate) fn snowflake_unix_ms(id: u64) -> u64 {
    (id >> 22) + DISCORD_EPOCH_MS
}

/// ISO 8601 with microseconds and `+00:00`, as Discord writes timestamps.
pub(crate) fn iso8601(unix_ms: u64) -> String {
    let secs = unix_ms / 1000;
    let micros = (unix_ms % 1000) * 1000;
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let (hour, minute, second) = (rem / 3600, (rem % 3600) / 60, rem % 60);
    // Howard Hinnant's days-to-civil.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}T{hour:02}:{minute:02}:{second:02}.{micros:06}+00:00")
}

/// Unix milliseconds now.
pub(crate) fn unix_ms_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// A member's presence status.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub(crate) enum Status {
    Online,
    Idle,
    Dnd,
    Offline,
}

impl Status {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Online => "online",
            Self::Idle => "idle",
            Self::Dnd => "dnd",
            Self::Offline => "offline",
        }
    }
}

/// What a channel id points at.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub(crate) enum ChannelKind {
    Category,
    Text(u32),
    Voice,
}

/// A resolved channel: its guild index and kind.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ChannelRef {
    pub(crate) guild: usize,
    pub(crate) kind: ChannelKind,
}

/// The world. Cloned (cheaply: a vector of ids) when guilds are added.
#[derive(Clone, Debug)]
pub(crate) struct World {
    seed: u64,
    guild_base: u64,
    /// Guild ids by index.
    pub(crate) guilds: Vec<u64>,
    members_per_guild: u32,
    channels_per_guild: u32,
    pub(crate) bot_id: u64,
    pub(crate) application_flags: u64,
}

impl World {
    pub(crate) fn new(
        seed: u64,
        guilds: u64,
        members_per_guild: u32,
        channels_per_guild: u32,
        application_flags: u64,
    ) -> Self {
        let mut world = Self {
            seed,
            guild_base: GUILD_BASE + (seed % 1000) * 10_000_000,
            guilds: Vec::new(),
            members_per_guild,
            channels_per_guild,
            bot_id: snowflake(BOT_TS + seed % 1_000_000, mix(seed, 1, 0)),
            application_flags,
        };
        world.add_guilds(guilds);
        world
    }

    /// Adds guilds; returns their ids. Consecutive timestamps make the
    /// `(id >> 22) % total` routing round-robin, so every shard of a
    /// recommended count holds at most `ceil(guilds / total)` guilds.
    pub(crate) fn add_guilds(&mut self, count: u64) -> Vec<u64> {
        let users_per_guild = u64::from(self.members_per_guild).max(1);
        let start = self.guilds.len() as u64;
        let mut added = Vec::new();
        for index in start..start.saturating_add(count) {
            if (index + 1) * users_per_guild >= MAX_USERS || index >= 9_000_000 {
                break;
            }
            let id = snowflake(self.guild_base + index, mix(self.seed, 2, index));
            self.guilds.push(id);
            added.push(id);
        }
        added
    }

    pub(crate) fn guild_index(&self, guild_id: u64) -> Option<usize> {
        let ts = guild_id >> 22;
        let index = usize::try_from(ts.checked_sub(self.guild_base)?).ok()?;
        (self.guilds.get(index) == Some(&guild_id)).then_some(index)
    }

    pub(crate) fn guild_id(&self, index: usize) -> u64 {
        self.guilds.get(index).copied().unwrap_or_default()
    }

    pub(crate) fn members_per_guild(&self) -> u32 {
        self.members_per_guild
    }

    pub(crate) fn channels_per_guild(&self) -> u32 {
        self.channels_per_guild
    }

    /// Guild indices owned by shard `[id, total]`.
    pub(crate) fn guilds_of_shard(&self, shard: [u32; 2]) -> Vec<usize> {
        self.guilds
            .iter()
            .enumerate()
            .filter(|(_, id)| shard_of(**id, shard[1]) == shard[0])
            .map(|(index, _)| index)
            .collect()
    }

    // ----- ids -----

    pub(crate) fn channel_id(&self, guild: usize, kind: ChannelKind) -> u64 {
        let slot = match kind {
            ChannelKind::Category => 0,
            ChannelKind::Text(k) => 1 + u64::from(k),
            ChannelKind::Voice => 1 + u64::from(self.channels_per_guild),
        };
        let ts = CHANNEL_BASE + (guild as u64) * CHANNEL_SLOTS + slot;
        snowflake(ts, mix(self.seed, 3, ts))
    }

    pub(crate) fn channel(&self, channel_id: u64) -> Option<ChannelRef> {
        let offset = (channel_id >> 22).checked_sub(CHANNEL_BASE)?;
        let guild = usize::try_from(offset / CHANNEL_SLOTS).ok()?;
        let slot = offset % CHANNEL_SLOTS;
        if guild >= self.guilds.len() {
            return None;
        }
        let kind = match slot {
            0 => ChannelKind::Category,
            s if s <= u64::from(self.channels_per_guild) => {
                ChannelKind::Text(u32::try_from(s - 1).ok()?)
            }
            s if s == u64::from(self.channels_per_guild) + 1 => ChannelKind::Voice,
            _ => return None,
        };
        (self.channel_id(guild, kind) == channel_id).then_some(ChannelRef { guild, kind })
    }

    fn role_id(&self, guild: usize, role: u64) -> u64 {
        if role == 0 {
            return self.guild_id(guild);
        }
        let ts = ROLE_BASE + (guild as u64) * 4 + role;
        snowflake(ts, mix(self.seed, 4, ts))
    }

    pub(crate) fn user_id(&self, guild: usize, member: u32) -> u64 {
        let ts = USER_BASE + (guild as u64) * u64::from(self.members_per_guild) + u64::from(member);
        snowflake(ts, mix(self.seed, 5, ts))
    }

    /// The member index of `user_id` in `guild`, if it is a member.
    pub(crate) fn member_index(&self, guild: usize, user_id: u64) -> Option<u32> {
        let offset = (user_id >> 22).checked_sub(USER_BASE)?;
        let per = u64::from(self.members_per_guild);
        if per == 0 || offset / per != guild as u64 {
            return None;
        }
        let member = u32::try_from(offset % per).ok()?;
        (self.user_id(guild, member) == user_id).then_some(member)
    }

    fn sound_id(&self, guild: usize, sound: u64) -> u64 {
        let ts = SOUND_BASE + (guild as u64) * 4 + sound;
        snowflake(ts, mix(self.seed, 6, ts))
    }

    pub(crate) fn username(&self, member: u32) -> String {
        format!("{}{member}", NAMES[member as usize % NAMES.len()])
    }

    pub(crate) fn status(&self, guild: usize, member: u32) -> Status {
        match mix(self.seed, 7, (guild as u64) << 32 | u64::from(member)) % 10 {
            0..=3 => Status::Online,
            4 => Status::Idle,
            5 => Status::Dnd,
            _ => Status::Offline,
        }
    }

    pub(crate) fn guild_name(&self, guild: usize) -> String {
        let h = mix(self.seed, 8, guild as u64);
        format!(
            "{} {} {guild}",
            ADJECTIVES[(h % 16) as usize],
            NOUNS[((h >> 8) % 16) as usize]
        )
    }

    // ----- objects -----

    /// The bot as a user object (READY's `user`, `/users/@me`).
    pub(crate) fn bot_user(&self) -> Value {
        json!({
            "id": self.bot_id.to_string(),
            "username": "discore-mock",
            "global_name": null,
            "discriminator": "0",
            "avatar": null,
            "bot": true,
            "verified": true,
            "mfa_enabled": false,
            "email": null,
            "flags": 0,
            "public_flags": 0,
            "premium_type": 0,
            "banner": null,
            "accent_color": null,
            "avatar_decoration_data": null,
        })
    }

    /// A member's user object.
    pub(crate) fn user(&self, guild: usize, member: u32) -> Value {
        let id = self.user_id(guild, member);
        let name = self.username(member);
        let h = mix(self.seed, 9, id);
        json!({
            "id": id.to_string(),
            "username": name,
            "global_name": capitalize(&name),
            "discriminator": "0",
            "avatar": if h.is_multiple_of(3) { Value::Null } else { Value::String(format!("{h:032x}")) },
            "public_flags": 0,
            "flags": 0,
            "banner": null,
            "accent_color": null,
            "avatar_decoration_data": null,
            "collectibles": null,
            "primary_guild": null,
        })
    }

    fn joined_at(&self, guild: usize, user_id: u64) -> String {
        let guild_ms = snowflake_unix_ms(self.guild_id(guild));
        let user_ms = snowflake_unix_ms(user_id);
        iso8601(guild_ms.max(user_ms) + mix(self.seed, 10, user_id) % 86_400_000)
    }

    fn member_roles(&self, guild: usize, member: u32) -> Vec<String> {
        let mut roles = Vec::new();
        if member.is_multiple_of(7) {
            roles.push(self.role_id(guild, 1).to_string());
        }
        if member.is_multiple_of(2) {
            roles.push(self.role_id(guild, 2).to_string());
        }
        roles
    }

    /// A guild member object; `with_user` false gives MESSAGE_CREATE's
    /// partial member.
    pub(crate) fn member(&self, guild: usize, member: u32, with_user: bool) -> Value {
        let id = self.user_id(guild, member);
        let mut value = json!({
            "nick": if member.is_multiple_of(5) { Value::String(format!("{} the {}", capitalize(&self.username(member)), NOUNS[member as usize % 16].to_lowercase())) } else { Value::Null },
            "avatar": null,
            "banner": null,
            "roles": self.member_roles(guild, member),
            "joined_at": self.joined_at(guild, id),
            "premium_since": null,
            "deaf": false,
            "mute": false,
            "flags": 0,
            "pending": false,
            "communication_disabled_until": null,
            "avatar_decoration_data": null,
            "collectibles": null,
        });
        if with_user && let Some(map) = value.as_object_mut() {
            map.insert("user".to_owned(), self.user(guild, member));
        }
        value
    }

    /// The bot as a member of `guild`.
    pub(crate) fn bot_member(&self, guild: usize, with_user: bool) -> Value {
        let mut value = json!({
            "nick": null,
            "avatar": null,
            "banner": null,
            "roles": [self.role_id(guild, 3).to_string()],
            "joined_at": iso8601(snowflake_unix_ms(self.guild_id(guild)) + 3_600_000),
            "premium_since": null,
            "deaf": false,
            "mute": false,
            "flags": 0,
            "pending": false,
            "communication_disabled_until": null,
        });
        if with_user && let Some(map) = value.as_object_mut() {
            map.insert("user".to_owned(), self.bot_user());
        }
        value
    }

    /// A presence for a member (status other than offline).
    pub(crate) fn presence(&self, guild: usize, member: u32) -> Value {
        let id = self.user_id(guild, member);
        let status = self.status(guild, member);
        let h = mix(self.seed, 11, id);
        let activities = if h.is_multiple_of(2) {
            json!([{
                "name": ACTIVITIES[(h >> 4) as usize % ACTIVITIES.len()],
                "type": 0,
                "id": format!("{:016x}", h),
                "created_at": 1_700_000_000_000_u64 + h % 10_000_000_000,
            }])
        } else {
            json!([])
        };
        let platform = ["desktop", "mobile", "web"][(h >> 12) as usize % 3];
        json!({
            "user": { "id": id.to_string() },
            "guild_id": self.guild_id(guild).to_string(),
            "status": status.as_str(),
            "activities": activities,
            "client_status": { platform: status.as_str() },
        })
    }

    /// A guild's roles: @everyone (whose id is the guild's), Moderator,
    /// Member and the bot's managed role.
    pub(crate) fn roles(&self, guild: usize) -> Vec<Value> {
        (0..4).map(|role| self.role(guild, role)).collect()
    }

    fn role(&self, guild: usize, role: u64) -> Value {
        let (name, permissions, color, hoist, position) = match role {
            0 => ("@everyone", "1071698660929", 0, false, 0),
            1 => ("Moderator", "1099511627775", 0x00E6_7E22, true, 3),
            2 => ("Member", "1071698660929", 0x0034_98DB, false, 1),
            _ => ("discore-mock", "1126140186737728", 0, false, 2),
        };
        let mut value = json!({
            "id": self.role_id(guild, role).to_string(),
            "name": name,
            "color": color,
            "colors": { "primary_color": color, "secondary_color": null, "tertiary_color": null },
            "hoist": hoist,
            "icon": null,
            "unicode_emoji": null,
            "position": position,
            "permissions": permissions,
            "managed": role == 3,
            "mentionable": role == 1,
            "flags": 0,
        });
        if role == 3
            && let Some(map) = value.as_object_mut()
        {
            map.insert(
                "tags".to_owned(),
                json!({ "bot_id": self.bot_id.to_string() }),
            );
        }
        value
    }

    /// A channel object, with `guild_id` when `with_guild` (CHANNEL_* events;
    /// GUILD_CREATE's channels omit it).
    pub(crate) fn channel_object(
        &self,
        guild: usize,
        kind: ChannelKind,
        with_guild: bool,
    ) -> Value {
        let id = self.channel_id(guild, kind).to_string();
        let category = self.channel_id(guild, ChannelKind::Category).to_string();
        let mut value = match kind {
            ChannelKind::Category => json!({
                "id": id, "type": 4, "name": "Text Channels", "position": 0,
                "permission_overwrites": [], "nsfw": false, "flags": 0,
            }),
            ChannelKind::Text(k) => json!({
                "id": id, "type": 0,
                "name": if k == 0 { "general".to_owned() } else { format!("chat-{k}") },
                "position": k + 1, "permission_overwrites": [], "rate_limit_per_user": 0,
                "nsfw": false, "topic": format!("Topic of channel {k}"), "last_message_id": null,
                "parent_id": category, "default_auto_archive_duration": 1440, "flags": 0,
            }),
            ChannelKind::Voice => json!({
                "id": id, "type": 2, "name": "Voice", "position": 0,
                "permission_overwrites": [], "nsfw": false, "bitrate": 64000, "user_limit": 0,
                "rtc_region": null, "parent_id": null, "rate_limit_per_user": 0,
                "last_message_id": null, "flags": 0,
            }),
        };
        if with_guild && let Some(map) = value.as_object_mut() {
            map.insert(
                "guild_id".to_owned(),
                Value::String(self.guild_id(guild).to_string()),
            );
        }
        value
    }

    /// A guild soundboard sound.
    pub(crate) fn soundboard_sound(&self, guild: usize, sound: u64) -> Value {
        let name = ["Yay", "Airhorn", "Drumroll"][sound as usize % 3];
        let emoji = ["🎉", "📯", "🥁"][sound as usize % 3];
        json!({
            "name": name,
            "sound_id": self.sound_id(guild, sound).to_string(),
            "volume": 1.0,
            "emoji_id": null,
            "emoji_name": emoji,
            "guild_id": self.guild_id(guild).to_string(),
            "available": true,
            "user": self.user(guild, 0),
        })
    }

    /// GUILD_CREATE's `d`. Members and presences follow the documented rules:
    /// without GUILD_PRESENCES only the bot is listed; a guild larger than
    /// `large_threshold` lists only members who are not offline.
    pub(crate) fn guild_create(&self, guild: usize, intents: u64, large_threshold: u64) -> Value {
        let id = self.guild_id(guild);
        let member_count = u64::from(self.members_per_guild) + 1;
        let large = member_count > large_threshold;
        let presences_intent = intents & crate::intents::GUILD_PRESENCES != 0;
        let mut members = vec![self.bot_member(guild, true)];
        let mut presences = Vec::new();
        if presences_intent {
            for member in 0..self.members_per_guild {
                let status = self.status(guild, member);
                if status != Status::Offline {
                    presences.push(self.presence(guild, member));
                }
                if !large || status != Status::Offline {
                    members.push(self.member(guild, member, true));
                }
            }
        }
        let mut channels = vec![self.channel_object(guild, ChannelKind::Category, false)];
        for k in 0..self.channels_per_guild {
            channels.push(self.channel_object(guild, ChannelKind::Text(k), false));
        }
        channels.push(self.channel_object(guild, ChannelKind::Voice, false));
        let h = mix(self.seed, 12, guild as u64);
        json!({
            "id": id.to_string(),
            "name": self.guild_name(guild),
            "icon": if h.is_multiple_of(2) { Value::String(format!("{h:032x}")) } else { Value::Null },
            "icon_hash": null,
            "splash": null,
            "discovery_splash": null,
            "banner": null,
            "description": null,
            "owner_id": self.user_id(guild, 0).to_string(),
            "application_id": null,
            "region": "deprecated",
            "afk_channel_id": null,
            "afk_timeout": 300,
            "widget_enabled": false,
            "widget_channel_id": null,
            "verification_level": 1,
            "default_message_notifications": 1,
            "explicit_content_filter": 2,
            "features": ["COMMUNITY", "NEWS", "SOUNDBOARD"],
            "mfa_level": 0,
            "system_channel_id": self.channel_id(guild, ChannelKind::Text(0)).to_string(),
            "system_channel_flags": 0,
            "rules_channel_id": null,
            "public_updates_channel_id": null,
            "safety_alerts_channel_id": null,
            "max_presences": null,
            "max_members": 500_000,
            "max_video_channel_users": 25,
            "max_stage_video_channel_users": 50,
            "vanity_url_code": null,
            "premium_tier": 0,
            "premium_subscription_count": 0,
            "premium_progress_bar_enabled": false,
            "preferred_locale": "en-US",
            "nsfw_level": 0,
            "nsfw": false,
            "hub_type": null,
            "incidents_data": null,
            "latest_onboarding_question_id": null,
            "home_header": null,
            "inventory_settings": null,
            "emojis": [],
            "stickers": [],
            "roles": self.roles(guild),
            "joined_at": iso8601(snowflake_unix_ms(id) + 3_600_000),
            "large": large,
            "unavailable": false,
            "member_count": member_count,
            "lazy": true,
            "voice_states": [],
            "members": members,
            "channels": channels,
            "threads": [],
            "presences": presences,
            "stage_instances": [],
            "guild_scheduled_events": [],
            "soundboard_sounds": [self.soundboard_sound(guild, 0), self.soundboard_sound(guild, 1)],
            "embedded_activities": [],
            "activity_instances": [],
            "application_command_counts": {},
            "version": 1_700_000_000_000_u64,
        })
    }

    /// A realistic message body of about 1 KB: some words, sometimes a
    /// mention. Returns the content and the mentioned member, if any.
    pub(crate) fn message_words(&self, salt: u64, words: usize) -> String {
        let mut content = String::new();
        for w in 0..words {
            if w > 0 {
                content.push(' ');
            }
            content.push_str(
                WORDS[mix(self.seed, 13, salt.wrapping_add(w as u64)) as usize % WORDS.len()],
            );
        }
        content
    }
}

fn capitalize(name: &str) -> String {
    let mut chars = name.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn world() -> World {
        World::new(42, 10, 30, 3, 0)
    }

    #[test]
    fn same_seed_same_world() {
        let a = World::new(7, 5, 3, 3, 0);
        let b = World::new(7, 5, 3, 3, 0);
        assert_eq!(a.guilds, b.guilds);
        assert_eq!(a.guild_create(2, 0, 50), b.guild_create(2, 0, 50));
        assert_ne!(World::new(8, 5, 3, 3, 0).guilds, a.guilds);
    }

    #[test]
    fn lookups_invert_ids() {
        let world = world();
        for guild in 0..10 {
            assert_eq!(world.guild_index(world.guild_id(guild)), Some(guild));
            for kind in [
                ChannelKind::Category,
                ChannelKind::Text(2),
                ChannelKind::Voice,
            ] {
                let channel = world
                    .channel(world.channel_id(guild, kind))
                    .expect("channel");
                assert_eq!((channel.guild, channel.kind), (guild, kind));
            }
            assert_eq!(
                world.member_index(guild, world.user_id(guild, 29)),
                Some(29)
            );
        }
        assert!(world.channel(world.guild_id(0)).is_none());
        assert!(world.member_index(1, world.user_id(0, 3)).is_none());
    }

    #[test]
    fn routing_is_round_robin() {
        let world = world();
        for total in 1..=10 {
            let mut counts = vec![0; total as usize];
            for id in &world.guilds {
                counts[shard_of(*id, total) as usize] += 1;
            }
            let (min, max) = (counts.iter().min(), counts.iter().max());
            assert!(
                max.zip(min).is_some_and(|(max, min)| max - min <= 1),
                "{counts:?}"
            );
        }
    }

    #[test]
    fn timestamps() {
        assert_eq!(iso8601(0), "1970-01-01T00:00:00.000000+00:00");
        assert_eq!(
            iso8601(1_499_794_027_299),
            "2017-07-11T17:27:07.299000+00:00"
        );
        assert_eq!(iso8601(951_782_400_000), "2000-02-29T00:00:00.000000+00:00");
    }
}
