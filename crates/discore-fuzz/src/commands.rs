//! Every payload a client sends, built from arbitrary values: the shard's
//! own Identify, Resume and Heartbeat, and the user commands of
//! `SendCommand`. Whatever the values, the encoder either produces JSON
//! that reads back as what was meant, within the gateway's 4096-byte limit,
//! or refuses with a typed error.
//!
//! Input layout: a selector byte (`% 9`, see [`Kind`]), then the values the
//! payload needs, in the order the code below reads them.

use crate::input::{Input, Output};
use discore_gateway::{Command, CommandError};
use discore_protocol::{
    Envelope, Intents, OpCode, ShardId, Token,
    commands::{
        self, ChannelInfoField, EncodeError, Identify, IdentifyProperties, RequestChannelInfo,
        RequestSoundboardSounds,
    },
    limits::{MAX_CLIENT_PAYLOAD_BYTES, MAX_NONCE_BYTES},
};
use serde_json::Value;
use twilight_model::{
    gateway::{
        payload::outgoing::{
            RequestGuildMembers, update_presence::UpdatePresencePayload,
            update_voice_state::UpdateVoiceStateInfo,
        },
        presence::{Activity, ActivityType, MinimalActivity, Status},
    },
    id::Id,
};

/// Which payload a commands input builds, by its selector byte (`% 9`).
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
#[repr(u8)]
pub enum Kind {
    /// Identify (op 2).
    Identify = 0,
    /// Resume (op 6).
    Resume = 1,
    /// Heartbeat (op 1).
    Heartbeat = 2,
    /// `Command::UpdatePresence` (op 3).
    UpdatePresence = 3,
    /// `Command::RequestGuildMembers` (op 8).
    RequestGuildMembers = 4,
    /// `Command::UpdateVoiceState` (op 4).
    UpdateVoiceState = 5,
    /// `Command::RequestSoundboardSounds` (op 31).
    RequestSoundboardSounds = 6,
    /// `Command::RequestChannelInfo` (op 43).
    RequestChannelInfo = 7,
    /// `Command::Raw`.
    Raw = 8,
}

/// Starts a commands input for `kind`; append its values with the
/// [`Output`] methods.
pub fn start(kind: Kind) -> Output {
    Output::new().u8(kind as u8)
}

/// Fuzz body: one outgoing payload built from arbitrary values.
pub fn commands(data: &[u8]) {
    let mut input = Input::new(data);
    match input.u8() % 9 {
        0 => identify(&mut input),
        1 => resume(&mut input),
        2 => {
            let sequence = input.bool().then(|| input.u64());
            let frame = commands::heartbeat(sequence);
            let value = read_back(&frame, OpCode::Heartbeat);
            assert_eq!(value["d"].as_u64(), sequence);
        }
        3 => user_command(Command::UpdatePresence(presence(&mut input))),
        4 => user_command(members(&mut input)),
        5 => {
            let guild = Id::new(input.u64().max(1));
            let channel = Id::new_checked(input.u64());
            let (deaf, mute) = (input.bool(), input.bool());
            user_command(Command::UpdateVoiceState(UpdateVoiceStateInfo::new(
                guild, channel, deaf, mute,
            )));
        }
        6 => {
            let count = usize::from(input.u16() % 1024);
            let guild_ids = (0..count).map(|_| Id::new(input.u64().max(1))).collect();
            user_command(Command::RequestSoundboardSounds(RequestSoundboardSounds {
                guild_ids,
            }));
        }
        7 => {
            let guild_id = Id::new(input.u64().max(1));
            let count = usize::from(input.u16() % 1024);
            let fields = (0..count)
                .map(|_| {
                    if input.bool() {
                        ChannelInfoField::Status
                    } else {
                        ChannelInfoField::VoiceStartTime
                    }
                })
                .collect();
            user_command(Command::RequestChannelInfo(RequestChannelInfo {
                guild_id,
                fields,
            }));
        }
        _ => user_command(Command::Raw(
            String::from_utf8_lossy(input.rest()).into_owned(),
        )),
    }
}

/// Parses a frame back: JSON, an envelope with `op`, `d` present.
fn read_back(frame: &str, op: OpCode) -> Value {
    let value: Value = serde_json::from_str(frame).expect("the frame is JSON");
    assert_eq!(
        Envelope::peek(frame).expect("the frame is an envelope").op,
        op
    );
    assert_eq!(value["op"].as_u64(), Some(u64::from(op.code())));
    value
}

fn presence(input: &mut Input<'_>) -> UpdatePresencePayload {
    let count = usize::from(input.u8() % 16).max(1);
    let activities: Vec<Activity> = (0..count)
        .map(|_| {
            MinimalActivity {
                kind: ActivityType::from(input.u8()),
                name: input.string(),
                url: input.bool().then(|| input.string()),
            }
            .into()
        })
        .collect();
    let status = match input.u8() % 5 {
        0 => Status::Online,
        1 => Status::Idle,
        2 => Status::DoNotDisturb,
        3 => Status::Invisible,
        _ => Status::Offline,
    };
    let afk = input.bool();
    let since = input.bool().then(|| input.u64());
    UpdatePresencePayload::new(activities, afk, since, status).expect("one activity at least")
}

fn members(input: &mut Input<'_>) -> Command {
    let mut builder = RequestGuildMembers::builder(Id::new(input.u64().max(1)));
    if input.bool() {
        builder = builder.nonce(input.string());
    }
    if input.bool() {
        builder = builder.presences(input.bool());
    }
    let request = match input.u8() % 3 {
        0 => builder.query(input.string(), input.bool().then(|| input.u64())),
        1 => builder.user_id(Id::new(input.u64().max(1))),
        _ => {
            let count = usize::from(input.u8());
            let ids: Vec<_> = (0..count).map(|_| Id::new(input.u64().max(1))).collect();
            match builder.user_ids(ids) {
                Ok(request) => request,
                // Over 100 ids: refused by the builder, a typed error.
                Err(_) => return Command::Raw(String::new()),
            }
        }
    };
    Command::from(request)
}

/// A user command: refused with a typed error, or a payload within the
/// limit that reads back as the command.
fn user_command(command: Command) {
    let expected = match &command {
        Command::UpdatePresence(p) => Some((OpCode::PresenceUpdate, to_value(p))),
        Command::RequestGuildMembers(r) => Some((OpCode::RequestGuildMembers, to_value(r))),
        Command::UpdateVoiceState(v) => Some((OpCode::VoiceStateUpdate, to_value(v))),
        Command::RequestSoundboardSounds(r) => Some((OpCode::RequestSoundboardSounds, to_value(r))),
        Command::RequestChannelInfo(r) => Some((OpCode::RequestChannelInfo, to_value(r))),
        _ => None,
    };
    match command.encode() {
        Ok(encoded) => {
            let frame = encoded.frame();
            assert!(
                frame.len() <= MAX_CLIENT_PAYLOAD_BYTES,
                "{} bytes",
                frame.len()
            );
            let op = Envelope::peek(frame).expect("an envelope").op;
            let value = read_back(frame, op);
            assert!(op.is_sent_by_client());
            assert!(!matches!(
                op,
                OpCode::Heartbeat | OpCode::Identify | OpCode::Resume
            ));
            assert_eq!(encoded.is_presence(), op == OpCode::PresenceUpdate);
            match (&command, expected) {
                (Command::Raw(raw), _) => assert_eq!(frame, raw),
                (_, Some((expected_op, data))) => {
                    assert_eq!(op, expected_op);
                    assert_eq!(value["d"], data, "the data reads back");
                }
                (_, None) => panic!("every typed command has its expectation"),
            }
        }
        Err(CommandError::TooLarge { size }) => assert!(size > MAX_CLIENT_PAYLOAD_BYTES),
        Err(CommandError::NonceTooLong { bytes }) => {
            // Discord drops a longer nonce: refused before it is sent.
            assert!(bytes > MAX_NONCE_BYTES, "{bytes} bytes refused");
            assert!(matches!(
                command,
                Command::RequestGuildMembers(_) | Command::Raw(_)
            ));
        }
        Err(CommandError::InvalidRaw(reason)) => {
            assert!(
                matches!(command, Command::Raw(_)),
                "only raw payloads: {reason}"
            );
        }
        Err(other) => panic!("encoding {command:?} failed: {other}"),
    }
}

fn to_value<T: serde::Serialize>(data: &T) -> Value {
    serde_json::to_value(data).expect("serializes")
}

fn identify(input: &mut Input<'_>) {
    let Ok(token) = Token::new(input.string()) else {
        // Whitespace, control characters or empty: refused, typed.
        return;
    };
    let Some(shard) = ShardId::new_checked(input.u32(), input.u32()) else {
        return;
    };
    let intents = Intents::from_bits_retain(input.u64());
    let large_threshold = input.u64();
    let properties = IdentifyProperties::new(input.string(), input.string(), input.string());
    let presence = input.bool().then(|| presence(input));
    let identify = Identify {
        token: &token,
        shard,
        intents,
        large_threshold,
        properties: &properties,
        presence: presence.as_ref(),
    };
    let Some(frame) = within_limit(identify.encode()) else {
        return;
    };
    let value = read_back(&frame, OpCode::Identify);
    let d = &value["d"];
    assert_eq!(d["token"].as_str(), Some(token.expose()));
    assert_eq!(
        d["shard"],
        serde_json::json!([shard.number(), shard.total()])
    );
    assert_eq!(d["intents"].as_u64(), Some(intents.bits()));
    assert_eq!(d["properties"], to_value(&properties));
    assert_eq!(
        d["presence"],
        presence.as_ref().map_or(Value::Null, to_value)
    );
}

/// A frame the shard sends itself: within the limit, or refused as too
/// large (never any other error).
fn within_limit(encoded: Result<String, EncodeError>) -> Option<String> {
    match encoded {
        Ok(frame) => {
            assert!(
                frame.len() <= MAX_CLIENT_PAYLOAD_BYTES,
                "{} bytes",
                frame.len()
            );
            Some(frame)
        }
        Err(EncodeError::TooLarge { size }) => {
            assert!(size > MAX_CLIENT_PAYLOAD_BYTES);
            None
        }
        Err(other) => panic!("encoding failed: {other}"),
    }
}

fn resume(input: &mut Input<'_>) {
    let Ok(token) = Token::new(input.string()) else {
        return;
    };
    let session_id = input.string();
    let sequence = input.u64();
    let Some(frame) = within_limit(commands::resume(&token, &session_id, sequence)) else {
        return;
    };
    let value = read_back(&frame, OpCode::Resume);
    assert_eq!(value["d"]["token"].as_str(), Some(token.expose()));
    assert_eq!(value["d"]["session_id"].as_str(), Some(&session_id[..]));
    assert_eq!(value["d"]["seq"].as_u64(), Some(sequence));
}

#[cfg(test)]
mod tests {
    use super::{Kind, commands, start};

    #[test]
    fn every_kind() {
        for kind in 0..9 {
            commands(&[kind]);
            commands(&[kind, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]);
        }
        commands(
            &start(Kind::Resume)
                .chunk(b"token")
                .chunk(b"session")
                .u64(42)
                .finish(),
        );
        commands(&start(Kind::Raw).raw(br#"{"op":3,"d":{}}"#).finish());
    }
}
