//! Which shard a guild belongs to (`docs/protocol.md`, "Sharding"), and
//! which guild a dispatch belongs to.

use serde::Deserialize;

/// The shard of `guild_id` among `total` shards: `(guild_id >> 22) % total`.
///
/// Guildless events (DMs, entitlements) belong to shard 0. A `total` of 0 is
/// treated as 1 rather than dividing by zero.
pub const fn shard_for_guild(guild_id: u64, total: u32) -> u32 {
    let total = if total == 0 { 1 } else { total as u64 };
    ((guild_id >> 22) % total) as u32
}

/// A snowflake as Discord sends it: a string (or, rarely, a number).
#[derive(Deserialize)]
#[serde(untagged)]
enum Snowflake {
    Text(String),
    Number(u64),
}

impl Snowflake {
    fn get(&self) -> Option<u64> {
        match self {
            Self::Text(text) => text.parse().ok(),
            Self::Number(number) => Some(*number),
        }
    }
}

#[derive(Deserialize)]
struct GuildFields {
    #[serde(default)]
    guild_id: Option<Snowflake>,
    #[serde(default)]
    id: Option<Snowflake>,
}

/// The guild a dispatch named `event` with data `data` (its `d`) belongs
/// to, read from the JSON: `id` for the guild events themselves
/// (GUILD_CREATE, GUILD_UPDATE, GUILD_DELETE), `guild_id` for every other
/// one. `None` for guildless events and data that is not a JSON object.
pub fn guild_of_dispatch(event: &str, data: &[u8]) -> Option<u64> {
    // Only an object names a guild (serde would read an array as the
    // fields in order).
    if data.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return None;
    }
    let fields: GuildFields = serde_json::from_slice(data).ok()?;
    let field = if names_its_guild_id(event) {
        fields.id
    } else {
        fields.guild_id
    };
    field.as_ref().and_then(Snowflake::get)
}

/// [`guild_of_dispatch`] for data already parsed.
pub fn guild_of_dispatch_value(event: &str, data: &serde_json::Value) -> Option<u64> {
    let field = if names_its_guild_id(event) {
        "id"
    } else {
        "guild_id"
    };
    match data.get(field)? {
        serde_json::Value::String(text) => text.parse().ok(),
        serde_json::Value::Number(number) => number.as_u64(),
        _ => None,
    }
}

/// The guild events name their guild `id`, every other event `guild_id`.
fn names_its_guild_id(event: &str) -> bool {
    matches!(event, "GUILD_CREATE" | "GUILD_UPDATE" | "GUILD_DELETE")
}

#[cfg(test)]
mod tests {
    use super::{guild_of_dispatch, guild_of_dispatch_value, shard_for_guild};

    #[test]
    fn the_guild_of_a_dispatch() {
        assert_eq!(
            guild_of_dispatch("MESSAGE_CREATE", br#"{"id":"1","guild_id":"7"}"#),
            Some(7)
        );
        assert_eq!(guild_of_dispatch("GUILD_CREATE", br#"{"id":"9"}"#), Some(9));
        assert_eq!(guild_of_dispatch("X", br#"{"guild_id":12}"#), Some(12));
        assert_eq!(
            guild_of_dispatch("TYPING_START", br#"{"user_id":"1"}"#),
            None
        );
        assert_eq!(guild_of_dispatch("X", b"[1]"), None);
        assert_eq!(guild_of_dispatch("X", b" \n[\"7\"]"), None);
        for (event, data) in [
            ("MESSAGE_CREATE", r#"{"id":"1","guild_id":"7"}"#),
            ("GUILD_CREATE", r#"{"id":"9"}"#),
            ("X", r#"{"guild_id":12}"#),
            ("TYPING_START", r#"{"user_id":"1"}"#),
        ] {
            let value: serde_json::Value = serde_json::from_str(data).expect("JSON");
            assert_eq!(
                guild_of_dispatch_value(event, &value),
                guild_of_dispatch(event, data.as_bytes()),
                "{event} {data}"
            );
        }
    }

    #[test]
    fn formula() {
        // A guild created at timestamp offset t lands on shard t % total.
        assert_eq!(shard_for_guild(41_771_983_423_143_937, 1), 0);
        assert_eq!(shard_for_guild(7 << 22, 4), 3);
        assert_eq!(shard_for_guild((8 << 22) | 0x3F_FFFF, 4), 0);
        assert_eq!(
            shard_for_guild(u64::MAX, 1000),
            ((u64::MAX >> 22) % 1000) as u32
        );
        assert_eq!(shard_for_guild(5 << 22, 0), 0);
    }
}
