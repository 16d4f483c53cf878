//! The payloads clients send, as the emulator reads them.

use serde::Deserialize;
use serde_json::Value;

#[derive(Deserialize)]
pub(super) struct IdentifyData {
    pub(super) token: String,
    pub(super) properties: IdentifyProperties,
    #[serde(default)]
    #[allow(dead_code)]
    pub(super) compress: Option<bool>,
    #[serde(default)]
    pub(super) large_threshold: Option<u64>,
    #[serde(default)]
    pub(super) shard: Option<[u64; 2]>,
    #[serde(default)]
    pub(super) presence: Option<Value>,
    pub(super) intents: u64,
}

#[derive(Deserialize)]
#[allow(dead_code)]
pub(super) struct IdentifyProperties {
    #[serde(alias = "$os")]
    pub(super) os: String,
    #[serde(alias = "$browser")]
    pub(super) browser: String,
    #[serde(alias = "$device")]
    pub(super) device: String,
}

#[derive(Deserialize)]
pub(super) struct ResumeData {
    pub(super) token: String,
    pub(super) session_id: String,
    pub(super) seq: u64,
}

#[derive(Deserialize)]
pub(super) struct PresenceData {
    pub(super) since: Option<u64>,
    pub(super) activities: Vec<ActivityData>,
    pub(super) status: String,
    pub(super) afk: bool,
}

#[derive(Deserialize)]
#[allow(dead_code)]
pub(super) struct ActivityData {
    pub(super) name: String,
    #[serde(rename = "type")]
    pub(super) kind: u8,
}

#[derive(Deserialize)]
pub(super) struct VoiceStateData {
    #[serde(with = "crate::control::snowflake")]
    pub(super) guild_id: u64,
    pub(super) channel_id: Option<String>,
    pub(super) self_mute: bool,
    pub(super) self_deaf: bool,
}

/// A snowflake as sent in `user_ids`: a string, or (the quirk) a number.
#[derive(Deserialize, Clone)]
#[serde(untagged)]
pub(super) enum LooseId {
    Number(u64),
    Text(String),
}

#[derive(Deserialize)]
#[serde(untagged)]
pub(super) enum OneOrMany {
    Many(Vec<LooseId>),
    One(LooseId),
}

#[derive(Deserialize)]
pub(super) struct RequestMembersData {
    #[serde(with = "crate::control::snowflake")]
    pub(super) guild_id: u64,
    pub(super) query: Option<String>,
    pub(super) limit: Option<u64>,
    #[serde(default)]
    pub(super) presences: Option<bool>,
    pub(super) user_ids: Option<OneOrMany>,
    pub(super) nonce: Option<String>,
}

pub(super) fn validate_presence(value: &Value) -> bool {
    let Ok(presence) = PresenceData::deserialize(value) else {
        return false;
    };
    let _ = presence.since;
    let _ = presence.afk;
    let _ = presence.activities.len();
    matches!(
        presence.status.as_str(),
        "online" | "dnd" | "idle" | "invisible" | "offline"
    )
}
