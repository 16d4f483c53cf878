//! The payloads a client sends: the envelope and the connection-wide rules
//! (size, send rate, authentication), then one handler per opcode, each an
//! `impl Connection` block in a file of its own.

mod channel_info;
mod heartbeat;
mod identify;
mod presence;
mod request_members;
mod resume;
mod soundboard;
mod voice_state;

use super::{
    connection::{Connection, Exit},
    inbound::{self, Quirks},
};
use crate::{limits, observe::ViolationKind, opcode};
use std::time::Instant;

impl Connection {
    /// One complete client payload (a text or binary message, reassembled).
    pub(in crate::gateway) fn on_payload(&mut self, raw: &[u8]) -> Option<Exit> {
        let now = Instant::now();
        if raw.len() > limits::MAX_CLIENT_PAYLOAD_BYTES {
            self.record(None, &raw[..256.min(raw.len())]);
            self.violation(
                ViolationKind::PayloadTooLarge,
                format!("payload of {} bytes", raw.len()),
            );
            return Some(Exit::Close(4002, "payload too large".to_owned()));
        }
        let mut quirks = Quirks::default();
        let envelope = inbound::envelope(raw, &mut quirks);
        let op = envelope
            .as_ref()
            .ok()
            .and_then(|e| e.op)
            .and_then(|op| u8::try_from(op).ok());
        self.record(op, raw);
        if !self.send_limit.admit(now) {
            let config = &self.shared.config;
            self.violation(
                ViolationKind::SendRateExceeded,
                format!(
                    "more than {} payloads in {:?}",
                    config.send_limit, config.send_window
                ),
            );
            return Some(Exit::Close(4008, "rate limited".to_owned()));
        }
        let envelope = match envelope {
            Ok(envelope) => envelope,
            Err(undecodable) => {
                self.violation(ViolationKind::MalformedPayload, undecodable.describe());
                return Some(Exit::Close(4002, "decode error".to_owned()));
            }
        };
        let data = &envelope.data;
        let exit = match envelope.op {
            Some(opcode::HEARTBEAT) => self.on_heartbeat(data),
            Some(code @ (opcode::IDENTIFY | opcode::RESUME)) if self.authenticated() => {
                self.violation(
                    ViolationKind::AlreadyAuthenticated,
                    format!("opcode {code} on an authenticated connection"),
                );
                Some(Exit::Close(4005, "already authenticated".to_owned()))
            }
            Some(opcode::IDENTIFY) => self.on_identify(data, &mut quirks),
            Some(opcode::RESUME) => self.on_resume(envelope.data.clone(), &mut quirks),
            Some(
                code @ (opcode::PRESENCE_UPDATE
                | opcode::VOICE_STATE_UPDATE
                | opcode::REQUEST_GUILD_MEMBERS
                | opcode::REQUEST_SOUNDBOARD_SOUNDS
                | opcode::REQUEST_CHANNEL_INFO),
            ) if !self.authenticated() => {
                self.violation(
                    ViolationKind::PayloadBeforeIdentify,
                    format!("opcode {code} before identify"),
                );
                Some(Exit::Close(4003, "not authenticated".to_owned()))
            }
            Some(opcode::PRESENCE_UPDATE) => self.on_presence(data, now, &mut quirks),
            Some(opcode::VOICE_STATE_UPDATE) => self.on_voice_state(data, &mut quirks),
            Some(opcode::REQUEST_GUILD_MEMBERS) => self.on_request_members(data, now, &mut quirks),
            Some(opcode::REQUEST_SOUNDBOARD_SOUNDS) => self.on_soundboard(data, &mut quirks),
            Some(opcode::REQUEST_CHANNEL_INFO) => self.on_channel_info(data, &mut quirks),
            Some(other) => {
                self.violation(ViolationKind::UnknownOpcode, format!("opcode {other}"));
                Some(Exit::Close(4001, "unknown opcode".to_owned()))
            }
            None => {
                self.violation(
                    ViolationKind::UnknownOpcode,
                    "no integer opcode in the envelope",
                );
                Some(Exit::Close(4001, "unknown opcode".to_owned()))
            }
        };
        self.note_quirks(op, quirks);
        exit
    }
}
