//! Commands a user sends through a shard (`docs/protocol.md`, "Commands"), encoded and
//! checked when they are submitted so a bad one is refused to the caller,
//! not discovered on the socket.

use actix::Message;
use discore_protocol::{
    Envelope, OpCode,
    commands::{self, RequestChannelInfo, RequestSoundboardSounds},
    limits::{MAX_CLIENT_PAYLOAD_BYTES, MAX_NONCE_BYTES},
};
use std::fmt;
use twilight_model::gateway::payload::outgoing::{
    request_guild_members::RequestGuildMembersInfo, update_presence::UpdatePresencePayload,
    update_voice_state::UpdateVoiceStateInfo,
};

pub use twilight_model::gateway::payload::outgoing::RequestGuildMembers;

/// A Gateway command.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum Command {
    /// Update Presence (op 3). Also becomes the presence of the next
    /// Identify, so a new session keeps it.
    UpdatePresence(UpdatePresencePayload),
    /// Request Guild Members (op 8).
    RequestGuildMembers(RequestGuildMembersInfo),
    /// Update Voice State (op 4).
    UpdateVoiceState(UpdateVoiceStateInfo),
    /// Request Soundboard Sounds (op 31).
    RequestSoundboardSounds(RequestSoundboardSounds),
    /// Request Channel Info (op 43).
    RequestChannelInfo(RequestChannelInfo),
    /// A complete payload `{"op": N, "d": ...}` for a send opcode.
    Raw(String),
}

impl From<RequestGuildMembers> for Command {
    fn from(request: RequestGuildMembers) -> Self {
        Self::RequestGuildMembers(request.d)
    }
}

impl Command {
    /// Encodes and checks the command.
    ///
    /// # Errors
    ///
    /// [`CommandError`] for a payload over 4096 bytes, a raw payload that is
    /// not a client opcode, a Request Guild Members nonce over 32 bytes, or
    /// data that fails to serialize.
    pub fn encode(&self) -> Result<EncodedCommand, CommandError> {
        self.check_nonce()?;
        let (op, frame) = match self {
            Self::UpdatePresence(p) => (
                OpCode::PresenceUpdate,
                commands::encode(OpCode::PresenceUpdate, p),
            ),
            Self::RequestGuildMembers(r) => (
                OpCode::RequestGuildMembers,
                commands::encode(OpCode::RequestGuildMembers, r),
            ),
            Self::UpdateVoiceState(v) => (
                OpCode::VoiceStateUpdate,
                commands::encode(OpCode::VoiceStateUpdate, v),
            ),
            Self::RequestSoundboardSounds(r) => (
                OpCode::RequestSoundboardSounds,
                commands::encode(OpCode::RequestSoundboardSounds, r),
            ),
            Self::RequestChannelInfo(r) => (
                OpCode::RequestChannelInfo,
                commands::encode(OpCode::RequestChannelInfo, r),
            ),
            Self::Raw(json) => {
                // The envelope peek may leave `d` unread, and reads an array
                // as a tuple of the fields; what goes to the gateway must be
                // a JSON object throughout, numbers in range (or it closes
                // with 4002). Parsed in full: a user command is small.
                serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(json)
                    .map_err(|e| CommandError::InvalidRaw(e.to_string()))?;
                let op = Envelope::peek(json)
                    .map_err(|e| CommandError::InvalidRaw(e.to_string()))?
                    .op;
                // Heartbeat, Identify and Resume belong to the shard: a user
                // sending them would break the session's bookkeeping.
                if !op.is_sent_by_client()
                    || matches!(op, OpCode::Heartbeat | OpCode::Identify | OpCode::Resume)
                {
                    return Err(CommandError::InvalidRaw(format!(
                        "{op} is not a user command"
                    )));
                }
                (op, Ok(json.clone()))
            }
        };
        let frame = frame.map_err(|e| CommandError::Encode(e.to_string()))?;
        if frame.len() > MAX_CLIENT_PAYLOAD_BYTES {
            return Err(CommandError::TooLarge { size: frame.len() });
        }
        Ok(EncodedCommand {
            frame,
            is_presence: op == OpCode::PresenceUpdate,
        })
    }
}

impl Command {
    /// Refuses a Request Guild Members nonce over Discord's 32 bytes: the
    /// gateway drops such a nonce, its chunks come back without it, and a
    /// caller waiting for chunks with that nonce would wait forever.
    fn check_nonce(&self) -> Result<(), CommandError> {
        let bytes = match self {
            Self::RequestGuildMembers(request) => request.nonce.as_ref().map(String::len),
            Self::Raw(json) => raw_members_nonce_len(json),
            _ => None,
        };
        match bytes {
            Some(bytes) if bytes > MAX_NONCE_BYTES => Err(CommandError::NonceTooLong { bytes }),
            _ => Ok(()),
        }
    }
}

/// The nonce length of a raw Request Guild Members payload, if it has one.
/// Anything else (another opcode, invalid JSON) is judged by `encode`.
fn raw_members_nonce_len(json: &str) -> Option<usize> {
    let value: serde_json::Value = serde_json::from_str(json).ok()?;
    if value.get("op")?.as_u64()? != u64::from(u8::from(OpCode::RequestGuildMembers)) {
        return None;
    }
    value.get("d")?.get("nonce")?.as_str().map(str::len)
}

/// A command ready for the socket.
#[derive(Clone, Debug)]
pub struct EncodedCommand {
    pub(crate) frame: String,
    pub(crate) is_presence: bool,
}

impl EncodedCommand {
    /// The JSON text that goes on the socket.
    pub fn frame(&self) -> &str {
        &self.frame
    }

    /// Whether it is a presence update (which has its own rate limit).
    pub const fn is_presence(&self) -> bool {
        self.is_presence
    }
}

/// Sends a command through a shard. Answers once the command is queued: it
/// goes out in order, when the session is active and the rate limit allows.
#[derive(Debug, Message)]
#[rtype(result = "Result<(), CommandError>")]
pub struct SendCommand(pub Command);

/// Why a command was refused. The command was not sent.
#[derive(Clone, Debug, Eq, PartialEq)]
#[non_exhaustive]
pub enum CommandError {
    /// The encoded payload is over Discord's 4096-byte limit.
    TooLarge {
        /// The encoded size in bytes.
        size: usize,
    },
    /// The shard's command queue is full.
    QueueFull {
        /// The queue's capacity.
        capacity: usize,
    },
    /// A raw payload is not JSON or not a user command opcode.
    InvalidRaw(String),
    /// A Request Guild Members nonce is longer than Discord's 32 bytes
    /// (Discord would drop it and the chunks would come back without it).
    NonceTooLong {
        /// The nonce's length in bytes.
        bytes: usize,
    },
    /// The command failed to serialize.
    Encode(String),
    /// The shard has stopped.
    ShardStopped,
}

/// One line each, ending in what to do next.
impl fmt::Display for CommandError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::TooLarge { size } => write!(
                f,
                "command payload is {size} bytes, over the gateway's \
                 {MAX_CLIENT_PAYLOAD_BYTES}-byte limit: split it into smaller commands"
            ),
            Self::QueueFull { capacity } => write!(
                f,
                "command queue is full ({capacity} commands waiting): send more slowly, \
                 or raise ShardConfig::command_queue_capacity"
            ),
            Self::InvalidRaw(reason) => write!(
                f,
                "invalid raw command ({reason}): send a JSON object with a user command's \
                 op and its d"
            ),
            Self::Encode(reason) => write!(
                f,
                "command failed to encode ({reason}): check the command's fields"
            ),
            Self::ShardStopped => f.write_str(
                "the shard has stopped: send to a running shard (its exit cause says why it stopped)",
            ),
            Self::NonceTooLong { bytes } => write!(
                f,
                "request guild members nonce is {bytes} bytes, over the gateway's \
                 {MAX_NONCE_BYTES}-byte limit: use a shorter nonce"
            ),
        }
    }
}

impl std::error::Error for CommandError {}

#[cfg(test)]
mod tests {
    use super::{Command, CommandError};
    use discore_protocol::commands::RequestSoundboardSounds;
    use twilight_model::{
        gateway::{
            payload::outgoing::{
                RequestGuildMembers, update_presence::UpdatePresencePayload,
                update_voice_state::UpdateVoiceStateInfo,
            },
            presence::{ActivityType, MinimalActivity, Status},
        },
        id::Id,
    };

    #[test]
    fn a_nonce_over_32_bytes_is_refused() {
        let at_limit = RequestGuildMembers::builder(Id::new(1))
            .nonce("n".repeat(32))
            .query("", None);
        assert!(Command::from(at_limit).encode().is_ok());
        let over = RequestGuildMembers::builder(Id::new(1))
            .nonce("n".repeat(33))
            .query("", None);
        let error = Command::from(over).encode().expect_err("refused");
        assert_eq!(error, CommandError::NonceTooLong { bytes: 33 });
        assert!(error.to_string().contains("32-byte"), "{error}");
        let raw = format!(
            r#"{{"op":8,"d":{{"guild_id":"1","query":"","limit":0,"nonce":"{}"}}}}"#,
            "n".repeat(40)
        );
        assert_eq!(
            Command::Raw(raw).encode().expect_err("refused"),
            CommandError::NonceTooLong { bytes: 40 }
        );
    }

    #[test]
    fn presence_is_flagged_for_its_own_limit() {
        let activity = MinimalActivity {
            kind: ActivityType::Playing,
            name: "tests".into(),
            url: None,
        };
        let presence =
            UpdatePresencePayload::new(vec![activity.into()], false, None, Status::Online)
                .expect("valid presence");
        let encoded = Command::UpdatePresence(presence).encode().expect("encodes");
        assert!(encoded.is_presence);
        assert!(encoded.frame.starts_with(r#"{"op":3,"d":"#));
    }

    #[test]
    fn members_request_with_nonce() {
        let request = RequestGuildMembers::builder(Id::new(1))
            .nonce("n1")
            .presences(true)
            .user_ids(vec![Id::new(2), Id::new(3)])
            .expect("valid ids");
        let encoded = Command::from(request).encode().expect("encodes");
        let value: serde_json::Value = serde_json::from_str(&encoded.frame).expect("json");
        assert_eq!(value["op"], 8);
        assert_eq!(value["d"]["nonce"], "n1");
        assert_eq!(value["d"]["presences"], true);
        assert_eq!(value["d"]["user_ids"], serde_json::json!(["2", "3"]));
    }

    #[test]
    fn voice_and_soundboard() {
        let voice =
            Command::UpdateVoiceState(UpdateVoiceStateInfo::new(Id::new(1), None, false, true));
        assert!(
            voice
                .encode()
                .expect("encodes")
                .frame
                .starts_with(r#"{"op":4,"#)
        );
        let sounds = Command::RequestSoundboardSounds(RequestSoundboardSounds {
            guild_ids: vec![Id::new(1)],
        });
        assert!(
            sounds
                .encode()
                .expect("encodes")
                .frame
                .starts_with(r#"{"op":31,"#)
        );
    }

    #[test]
    fn oversized_payload_is_refused() {
        let raw = format!(r#"{{"op":3,"d":{{"x":"{}"}}}}"#, "a".repeat(5000));
        assert!(matches!(
            Command::Raw(raw).encode(),
            Err(CommandError::TooLarge { .. })
        ));
    }

    #[test]
    fn raw_must_be_a_user_command() {
        for raw in [
            r#"{"op":2,"d":{}}"#,
            r#"{"op":1,"d":null}"#,
            r#"{"op":0,"d":{}}"#,
            "nope",
            // Found by the commands fuzz target: a control character in a
            // key of `d`, which a peek that skips `d` does not see.
            "{\"op\":43,\"d\":{\"guild_\u{3}id\":\"1\"}}",
            r#"{"op":3,"d":{"since":}}"#,
            // Also found by it: an array reads as the envelope's fields.
            "[4]",
            r#"[3,{"since":null,"activities":[],"status":"online","afk":false}]"#,
            // And a number no JSON parser can hold.
            r#"{"op":4,"fd":1e505}"#,
        ] {
            assert!(
                matches!(
                    Command::Raw(raw.into()).encode(),
                    Err(CommandError::InvalidRaw(_))
                ),
                "{raw}"
            );
        }
        assert!(
            Command::Raw(r#"{"op":8,"d":{"guild_id":"1","query":"","limit":0}}"#.into())
                .encode()
                .is_ok()
        );
    }
}
