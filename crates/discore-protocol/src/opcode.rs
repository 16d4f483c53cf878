//! Gateway opcodes (`docs/protocol.md`, "Opcodes").

use std::fmt;

/// A Gateway opcode.
///
/// The set is open: an opcode this crate does not know is carried as
/// [`OpCode::Unknown`] so that a newer gateway never makes a client fail.
#[derive(Clone, Copy, Debug, Eq, Hash, PartialEq)]
pub enum OpCode {
    /// 0, receive: an event was dispatched.
    Dispatch,
    /// 1, send and receive: keep-alive, or the server asking for one now.
    Heartbeat,
    /// 2, send: start a new session.
    Identify,
    /// 3, send: update the client's presence.
    PresenceUpdate,
    /// 4, send: join, move or leave a voice channel.
    VoiceStateUpdate,
    /// 6, send: resume a previous session.
    Resume,
    /// 7, receive: reconnect and resume immediately.
    Reconnect,
    /// 8, send: request members of a guild.
    RequestGuildMembers,
    /// 9, receive: the session is invalid; `d` says whether it may be resumed.
    InvalidSession,
    /// 10, receive: first frame of a connection, with the heartbeat interval.
    Hello,
    /// 11, receive: a heartbeat was acknowledged.
    HeartbeatAck,
    /// 31, send: request the soundboard sounds of guilds.
    RequestSoundboardSounds,
    /// 43, send: request ephemeral channel information.
    RequestChannelInfo,
    /// Any other value.
    Unknown(u8),
}

impl OpCode {
    /// The numeric value sent on the wire.
    pub const fn code(self) -> u8 {
        match self {
            Self::Dispatch => 0,
            Self::Heartbeat => 1,
            Self::Identify => 2,
            Self::PresenceUpdate => 3,
            Self::VoiceStateUpdate => 4,
            Self::Resume => 6,
            Self::Reconnect => 7,
            Self::RequestGuildMembers => 8,
            Self::InvalidSession => 9,
            Self::Hello => 10,
            Self::HeartbeatAck => 11,
            Self::RequestSoundboardSounds => 31,
            Self::RequestChannelInfo => 43,
            Self::Unknown(code) => code,
        }
    }

    /// Whether a client may send this opcode.
    pub const fn is_sent_by_client(self) -> bool {
        matches!(
            self,
            Self::Heartbeat
                | Self::Identify
                | Self::PresenceUpdate
                | Self::VoiceStateUpdate
                | Self::Resume
                | Self::RequestGuildMembers
                | Self::RequestSoundboardSounds
                | Self::RequestChannelInfo
        )
    }
}

impl From<u8> for OpCode {
    fn from(code: u8) -> Self {
        match code {
            0 => Self::Dispatch,
            1 => Self::Heartbeat,
            2 => Self::Identify,
            3 => Self::PresenceUpdate,
            4 => Self::VoiceStateUpdate,
            6 => Self::Resume,
            7 => Self::Reconnect,
            8 => Self::RequestGuildMembers,
            9 => Self::InvalidSession,
            10 => Self::Hello,
            11 => Self::HeartbeatAck,
            31 => Self::RequestSoundboardSounds,
            43 => Self::RequestChannelInfo,
            other => Self::Unknown(other),
        }
    }
}

impl From<OpCode> for u8 {
    fn from(op: OpCode) -> Self {
        op.code()
    }
}

impl fmt::Display for OpCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Unknown(code) => write!(f, "unknown opcode {code}"),
            known => write!(f, "{known:?} ({})", known.code()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::OpCode;

    #[test]
    fn every_value_round_trips() {
        for code in 0..=u8::MAX {
            assert_eq!(OpCode::from(code).code(), code);
        }
    }

    #[test]
    fn undocumented_values_are_unknown() {
        for code in [5, 12, 30, 32, 42, 44, 255] {
            assert_eq!(OpCode::from(code), OpCode::Unknown(code));
        }
    }

    #[test]
    fn only_send_opcodes_are_client_opcodes() {
        let sent: Vec<u8> = (0..=u8::MAX)
            .filter(|code| OpCode::from(*code).is_sent_by_client())
            .collect();
        assert_eq!(sent, [1, 2, 3, 4, 6, 8, 31, 43]);
    }
}
