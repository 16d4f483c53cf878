//! Payloads a client sends (`docs/protocol.md`, "Identify and READY",
//! "Resuming", "Commands"), encoded as the `{"op": N, "d": ...}` JSON text
//! the gateway expects.

use crate::{OpCode, Token, limits::MAX_CLIENT_PAYLOAD_BYTES};
use serde::{Deserialize, Serialize};
use std::fmt;
use twilight_model::{
    gateway::{Intents, ShardId, payload::outgoing::update_presence::UpdatePresencePayload},
    id::{Id, marker::GuildMarker},
};

pub use twilight_model::gateway::payload::outgoing::identify::IdentifyProperties;

#[derive(Serialize)]
struct Frame<'a, T> {
    op: u8,
    d: &'a T,
}

/// Encodes `{"op": op, "d": data}`.
///
/// # Errors
///
/// Only if `data`'s `Serialize` implementation fails.
pub fn encode<T: Serialize>(op: OpCode, data: &T) -> Result<String, serde_json::Error> {
    serde_json::to_string(&Frame {
        op: op.code(),
        d: data,
    })
}

/// Why a frame the shard itself sends (Identify, Resume) was not encoded.
#[derive(Debug)]
#[non_exhaustive]
pub enum EncodeError {
    /// The frame is over the gateway's 4096-byte limit: sent, it would be
    /// answered with close code 4002. A long presence or long client
    /// properties in Identify, or an oversized session id in Resume.
    TooLarge {
        /// The encoded size in bytes.
        size: usize,
    },
    /// A value failed to serialize.
    Json(serde_json::Error),
}

impl fmt::Display for EncodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::TooLarge { size } => write!(
                f,
                "payload is {size} bytes, over the gateway's {MAX_CLIENT_PAYLOAD_BYTES}-byte limit"
            ),
            Self::Json(_) => f.write_str("payload failed to serialize"),
        }
    }
}

impl std::error::Error for EncodeError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::TooLarge { .. } => None,
            Self::Json(error) => Some(error),
        }
    }
}

/// Encodes a frame the shard sends itself, refusing one over the limit.
fn encode_checked<T: Serialize>(op: OpCode, data: &T) -> Result<String, EncodeError> {
    let frame = encode(op, data).map_err(EncodeError::Json)?;
    if frame.len() > MAX_CLIENT_PAYLOAD_BYTES {
        return Err(EncodeError::TooLarge { size: frame.len() });
    }
    Ok(frame)
}

/// The heartbeat frame carrying the last dispatch sequence, or `null`.
pub fn heartbeat(sequence: Option<u64>) -> String {
    match sequence {
        Some(sequence) => format!(r#"{{"op":1,"d":{sequence}}}"#),
        None => r#"{"op":1,"d":null}"#.to_owned(),
    }
}

/// The fields of an Identify (op 2).
#[derive(Clone, Debug)]
pub struct Identify<'a> {
    /// The bot token.
    pub token: &'a Token,
    /// `[shard_id, num_shards]`.
    pub shard: ShardId,
    /// The gateway intents.
    pub intents: Intents,
    /// Members above which offline members are left out, 50–250.
    pub large_threshold: u64,
    /// Client properties: os, browser, device.
    pub properties: &'a IdentifyProperties,
    /// The presence to start the session with.
    pub presence: Option<&'a UpdatePresencePayload>,
}

#[derive(Serialize)]
struct IdentifyData<'a> {
    token: &'a str,
    properties: &'a IdentifyProperties,
    compress: bool,
    large_threshold: u64,
    shard: [u32; 2],
    #[serde(skip_serializing_if = "Option::is_none")]
    presence: Option<&'a UpdatePresencePayload>,
    intents: u64,
}

impl Identify<'_> {
    /// Encodes the frame. Payload compression stays off: discore uses
    /// transport compression, and the two cannot be combined.
    ///
    /// # Errors
    ///
    /// [`EncodeError::TooLarge`] when the frame is over 4096 bytes (a long
    /// presence or long properties), [`EncodeError::Json`] if the presence
    /// fails to serialize.
    pub fn encode(&self) -> Result<String, EncodeError> {
        encode_checked(
            OpCode::Identify,
            &IdentifyData {
                token: self.token.expose(),
                properties: self.properties,
                compress: false,
                large_threshold: self.large_threshold,
                shard: [self.shard.number(), self.shard.total()],
                presence: self.presence,
                intents: self.intents.bits(),
            },
        )
    }
}

#[derive(Serialize)]
struct ResumeData<'a> {
    token: &'a str,
    session_id: &'a str,
    seq: u64,
}

/// The Resume frame (op 6). The field is `seq`, not `s`.
///
/// # Errors
///
/// [`EncodeError::TooLarge`] when the session id (which comes from the
/// gateway's READY) makes the frame longer than 4096 bytes.
pub fn resume(token: &Token, session_id: &str, sequence: u64) -> Result<String, EncodeError> {
    encode_checked(
        OpCode::Resume,
        &ResumeData {
            token: token.expose(),
            session_id,
            seq: sequence,
        },
    )
}

/// Request Soundboard Sounds (op 31): one SOUNDBOARD_SOUNDS reply per guild.
#[derive(Clone, Debug, Deserialize, Eq, PartialEq, Serialize)]
pub struct RequestSoundboardSounds {
    /// The guilds whose sounds are wanted.
    pub guild_ids: Vec<Id<GuildMarker>>,
}

/// A field Request Channel Info (op 43) can ask for.
#[derive(Clone, Copy, Debug, Deserialize, Eq, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ChannelInfoField {
    /// The voice channel status text.
    Status,
    /// When the voice channel's call started.
    VoiceStartTime,
}

/// Request Channel Info (op 43): a CHANNEL_INFO reply.
#[derive(Clone, Debug, Deserialize, Eq, PartialEq, Serialize)]
pub struct RequestChannelInfo {
    /// The guild whose channels are asked about.
    pub guild_id: Id<GuildMarker>,
    /// Which fields to return.
    pub fields: Vec<ChannelInfoField>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Envelope;
    use serde_json::{Value, json};

    fn token() -> Token {
        Token::new("tok").expect("valid")
    }

    #[test]
    fn heartbeat_carries_sequence_or_null() {
        assert_eq!(heartbeat(Some(7)), r#"{"op":1,"d":7}"#);
        assert_eq!(heartbeat(None), r#"{"op":1,"d":null}"#);
    }

    #[test]
    fn resume_uses_seq() {
        let frame = resume(&token(), "sess", 9).expect("encodes");
        let value: Value = serde_json::from_str(&frame).expect("json");
        assert_eq!(
            value,
            json!({"op": 6, "d": {"token": "tok", "session_id": "sess", "seq": 9}})
        );
    }

    #[test]
    fn identify_shape() {
        let properties = IdentifyProperties::new("discore", "discore", "linux");
        let frame = Identify {
            token: &token(),
            shard: ShardId::new(2, 4),
            intents: Intents::GUILDS | Intents::GUILD_MESSAGES,
            large_threshold: 50,
            properties: &properties,
            presence: None,
        }
        .encode()
        .expect("encodes");
        let value: Value = serde_json::from_str(&frame).expect("json");
        assert_eq!(value["op"], 2);
        assert_eq!(value["d"]["intents"], 513);
        assert_eq!(value["d"]["shard"], json!([2, 4]));
        assert_eq!(value["d"]["compress"], false);
        assert_eq!(value["d"]["properties"]["browser"], "discore");
        assert!(value["d"].get("presence").is_none());
        assert_eq!(
            Envelope::peek(&frame).expect("envelope").op,
            OpCode::Identify
        );
    }

    /// Found by the commands fuzz target: long values made an Identify or
    /// a Resume the gateway would close with 4002.
    #[test]
    fn identify_and_resume_over_the_limit_are_refused() {
        let properties = IdentifyProperties::new("discore", "discore", "o".repeat(4000));
        let identify = Identify {
            token: &token(),
            shard: ShardId::new(0, 1),
            intents: Intents::GUILDS,
            large_threshold: 50,
            properties: &properties,
            presence: None,
        };
        assert!(matches!(
            identify.encode(),
            Err(EncodeError::TooLarge { size }) if size > MAX_CLIENT_PAYLOAD_BYTES
        ));
        let fits = IdentifyProperties::new("discore", "discore", "o".repeat(3800));
        let frame = Identify {
            properties: &fits,
            ..identify
        }
        .encode()
        .expect("just under the limit");
        assert!(frame.len() <= MAX_CLIENT_PAYLOAD_BYTES);
        let error = resume(&token(), &"s".repeat(5000), 1).expect_err("too large");
        assert!(error.to_string().contains("4096"), "{error}");
    }

    #[test]
    fn soundboard_and_channel_info() {
        let frame = encode(
            OpCode::RequestSoundboardSounds,
            &RequestSoundboardSounds {
                guild_ids: vec![Id::new(5)],
            },
        )
        .expect("encodes");
        assert_eq!(frame, r#"{"op":31,"d":{"guild_ids":["5"]}}"#);
        let frame = encode(
            OpCode::RequestChannelInfo,
            &RequestChannelInfo {
                guild_id: Id::new(5),
                fields: vec![ChannelInfoField::Status, ChannelInfoField::VoiceStartTime],
            },
        )
        .expect("encodes");
        assert_eq!(
            frame,
            r#"{"op":43,"d":{"guild_id":"5","fields":["status","voice_start_time"]}}"#
        );
    }
}
