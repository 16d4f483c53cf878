//! Close codes and the one policy table that decides what follows a close
//! (`docs/protocol.md`, "Close codes").

use crate::intents::PRIVILEGED_INTENTS;
use std::fmt;
use twilight_model::gateway::Intents;

/// A WebSocket close code as seen by a Gateway client.
///
/// Gateway codes 4000–4014 are named; any other value (1000, 1006, a code a
/// newer gateway adds) is carried as [`CloseCode::Other`].
#[derive(Clone, Copy, Debug, Eq, Hash, PartialEq)]
pub enum CloseCode {
    /// 4000: unknown error; try reconnecting.
    UnknownError,
    /// 4001: an invalid opcode or payload was sent.
    UnknownOpcode,
    /// 4002: a payload could not be decoded (bad JSON, over 4096 bytes).
    DecodeError,
    /// 4003: a payload was sent before identifying.
    NotAuthenticated,
    /// 4004: the token is wrong.
    AuthenticationFailed,
    /// 4005: more than one Identify on a connection.
    AlreadyAuthenticated,
    /// 4007: the sequence sent in Resume was invalid.
    InvalidSequence,
    /// 4008: payloads were sent too fast.
    RateLimited,
    /// 4009: the session timed out.
    SessionTimedOut,
    /// 4010: the shard tuple in Identify was invalid.
    InvalidShard,
    /// 4011: the session would hold too many guilds.
    ShardingRequired,
    /// 4012: the `v` query parameter was invalid.
    InvalidApiVersion,
    /// 4013: the intents bitfield had undocumented bits.
    InvalidIntents,
    /// 4014: a privileged intent was not granted.
    DisallowedIntents,
    /// Any other code: 1000, 1001, 1006, a code a newer gateway adds.
    Other(u16),
}

impl CloseCode {
    /// Every named gateway close code, in numeric order.
    pub const GATEWAY_CODES: [CloseCode; 14] = [
        Self::UnknownError,
        Self::UnknownOpcode,
        Self::DecodeError,
        Self::NotAuthenticated,
        Self::AuthenticationFailed,
        Self::AlreadyAuthenticated,
        Self::InvalidSequence,
        Self::RateLimited,
        Self::SessionTimedOut,
        Self::InvalidShard,
        Self::ShardingRequired,
        Self::InvalidApiVersion,
        Self::InvalidIntents,
        Self::DisallowedIntents,
    ];

    /// The numeric value on the wire.
    pub const fn code(self) -> u16 {
        match self {
            Self::UnknownError => 4000,
            Self::UnknownOpcode => 4001,
            Self::DecodeError => 4002,
            Self::NotAuthenticated => 4003,
            Self::AuthenticationFailed => 4004,
            Self::AlreadyAuthenticated => 4005,
            Self::InvalidSequence => 4007,
            Self::RateLimited => 4008,
            Self::SessionTimedOut => 4009,
            Self::InvalidShard => 4010,
            Self::ShardingRequired => 4011,
            Self::InvalidApiVersion => 4012,
            Self::InvalidIntents => 4013,
            Self::DisallowedIntents => 4014,
            Self::Other(code) => code,
        }
    }

    /// What a client does after the server closed with this code.
    ///
    /// This is the single place that decides it. The derivation
    /// (`docs/protocol.md`, "Close codes"):
    /// codes Discord marks "don't reconnect" are fatal; 4003, 4007 and 4009 say
    /// the session is gone, so a new one is identified; everything else,
    /// including 1000/1001 sent by the server and codes this crate does not
    /// know, tries to resume, and a failed resume falls back to Identify.
    pub const fn action(self) -> CloseAction {
        match self {
            Self::NotAuthenticated | Self::InvalidSequence | Self::SessionTimedOut => {
                CloseAction::NewSession
            }
            Self::AuthenticationFailed => {
                CloseAction::Fatal(ShardFailureReason::AuthenticationFailed)
            }
            Self::InvalidShard => CloseAction::Fatal(ShardFailureReason::ShardInvalid),
            Self::ShardingRequired => CloseAction::Fatal(ShardFailureReason::ShardingRequired),
            Self::InvalidApiVersion => CloseAction::Fatal(ShardFailureReason::InvalidApiVersion),
            Self::InvalidIntents => CloseAction::Fatal(ShardFailureReason::InvalidIntents),
            Self::DisallowedIntents => CloseAction::Fatal(ShardFailureReason::DisallowedIntents {
                requested: Intents::empty(),
            }),
            Self::UnknownError
            | Self::UnknownOpcode
            | Self::DecodeError
            | Self::AlreadyAuthenticated
            | Self::RateLimited
            | Self::Other(_) => CloseAction::Resume,
        }
    }
}

impl From<u16> for CloseCode {
    fn from(code: u16) -> Self {
        match code {
            4000 => Self::UnknownError,
            4001 => Self::UnknownOpcode,
            4002 => Self::DecodeError,
            4003 => Self::NotAuthenticated,
            4004 => Self::AuthenticationFailed,
            4005 => Self::AlreadyAuthenticated,
            4007 => Self::InvalidSequence,
            4008 => Self::RateLimited,
            4009 => Self::SessionTimedOut,
            4010 => Self::InvalidShard,
            4011 => Self::ShardingRequired,
            4012 => Self::InvalidApiVersion,
            4013 => Self::InvalidIntents,
            4014 => Self::DisallowedIntents,
            other => Self::Other(other),
        }
    }
}

impl fmt::Display for CloseCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Other(code) => write!(f, "close code {code}"),
            named => write!(f, "{named:?} ({})", named.code()),
        }
    }
}

/// What follows a close, decided by [`CloseCode::action`].
#[derive(Clone, Copy, Debug, Eq, Hash, PartialEq)]
pub enum CloseAction {
    /// Reconnect to the resume URL and resume the session, if there is one.
    Resume,
    /// Forget the session, reconnect to the discovery URL and identify.
    NewSession,
    /// Stop: reconnecting would fail the same way.
    Fatal(ShardFailureReason),
}

/// Why a shard stopped for good: the fatal close codes, by what they mean
/// for the bot (see `docs/protocol.md`, "Close codes").
#[derive(Clone, Copy, Debug, Eq, Hash, PartialEq, serde::Serialize, serde::Deserialize)]
#[non_exhaustive]
pub enum ShardFailureReason {
    /// 4004: the token was rejected. Every shard of the bot fails the same way.
    AuthenticationFailed,
    /// 4010 Invalid Shard: the shard id or total is not valid for this bot.
    ShardInvalid,
    /// 4011: the shard would hold too many guilds; more shards are needed.
    ShardingRequired,
    /// 4012: the gateway does not accept the configured API version.
    InvalidApiVersion,
    /// 4013: the intents contain undocumented bits.
    InvalidIntents,
    /// 4014: a privileged intent is not enabled for the application.
    DisallowedIntents {
        /// The privileged intents the shard asked for (one or more of them
        /// is not enabled); empty where the intents are not known, as in
        /// [`CloseCode::action`]. A shard fills them in
        /// ([`ShardFailureReason::with_intents`]).
        requested: Intents,
    },
}

impl ShardFailureReason {
    /// The close code that carries this reason.
    pub const fn close_code(self) -> CloseCode {
        match self {
            Self::AuthenticationFailed => CloseCode::AuthenticationFailed,
            Self::ShardInvalid => CloseCode::InvalidShard,
            Self::ShardingRequired => CloseCode::ShardingRequired,
            Self::InvalidApiVersion => CloseCode::InvalidApiVersion,
            Self::InvalidIntents => CloseCode::InvalidIntents,
            Self::DisallowedIntents { .. } => CloseCode::DisallowedIntents,
        }
    }

    /// The same reason, told with the intents the shard identified with:
    /// [`ShardFailureReason::DisallowedIntents`] keeps their privileged
    /// ones, so its text names them. Other reasons are unchanged.
    pub const fn with_intents(self, intents: Intents) -> Self {
        match self {
            Self::DisallowedIntents { .. } => Self::DisallowedIntents {
                requested: intents.intersection(PRIVILEGED_INTENTS),
            },
            other => other,
        }
    }

    /// Whether every shard of the bot would fail the same way, so a fleet
    /// should stop rather than restart this shard.
    pub const fn affects_whole_bot(self) -> bool {
        matches!(
            self,
            Self::AuthenticationFailed
                | Self::InvalidApiVersion
                | Self::InvalidIntents
                | Self::DisallowedIntents { .. }
        )
    }

    /// Whether a new shard count from `GET /gateway/bot` can cure it.
    pub const fn needs_resharding(self) -> bool {
        matches!(self, Self::ShardInvalid | Self::ShardingRequired)
    }
}

/// One line each: what the gateway refused, its close code, and what to do
/// next (`docs/protocol.md`, "Close codes").
impl fmt::Display for ShardFailureReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::AuthenticationFailed => {
                f.write_str("the bot's token was refused (4004): check DISCORD_TOKEN")
            }
            Self::ShardInvalid => f.write_str(
                "the shard id or shard count was refused (4010): \
                 use the count GET /gateway/bot recommends (ShardCount::Auto)",
            ),
            Self::ShardingRequired => f.write_str(
                "this shard would hold too many guilds (4011): \
                 start more shards (ShardCount::Auto, or re-shard)",
            ),
            Self::InvalidApiVersion => f.write_str(
                "the gateway refused the API version (4012): \
                 check the gateway URL's v= parameter, or update discore",
            ),
            Self::InvalidIntents => f.write_str(
                "the intents have undocumented bits (4013): \
                 build them from Intents' named flags only",
            ),
            Self::DisallowedIntents { requested } => {
                let names: Vec<&str> = requested.iter_names().map(|(name, _)| name).collect();
                match names.as_slice() {
                    [] => f.write_str(
                        "a privileged intent (GUILD_MEMBERS, GUILD_PRESENCES or MESSAGE_CONTENT) \
                         is not enabled for this bot (4014): \
                         enable it in the Developer Portal, or drop the intent",
                    ),
                    [one] => write!(
                        f,
                        "privileged intent {one} not enabled for this bot (4014): \
                         enable it in the Developer Portal, or drop the intent"
                    ),
                    several => write!(
                        f,
                        "privileged intents {} requested, not all enabled for this bot (4014): \
                         enable them in the Developer Portal, or drop the ones not enabled",
                        several.join(", ")
                    ),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{CloseAction, CloseCode, ShardFailureReason};

    /// The whole policy, one row per code: a change to any decision shows here.
    #[test]
    fn policy_table() {
        use CloseAction::{Fatal, NewSession, Resume};
        use ShardFailureReason as R;
        let table = [
            (1000, Resume),
            (1001, Resume),
            (1006, Resume),
            (1011, Resume),
            (4000, Resume),
            (4001, Resume),
            (4002, Resume),
            (4003, NewSession),
            (4004, Fatal(R::AuthenticationFailed)),
            (4005, Resume),
            (4006, Resume),
            (4007, NewSession),
            (4008, Resume),
            (4009, NewSession),
            (4010, Fatal(R::ShardInvalid)),
            (4011, Fatal(R::ShardingRequired)),
            (4012, Fatal(R::InvalidApiVersion)),
            (4013, Fatal(R::InvalidIntents)),
            (
                4014,
                Fatal(R::DisallowedIntents {
                    requested: twilight_model::gateway::Intents::empty(),
                }),
            ),
            (4015, Resume),
        ];
        for (code, expected) in table {
            assert_eq!(
                CloseCode::from(code).action(),
                expected,
                "close code {code}"
            );
        }
    }

    #[test]
    fn codes_round_trip() {
        for code in 0..=u16::MAX {
            assert_eq!(CloseCode::from(code).code(), code);
        }
        for named in CloseCode::GATEWAY_CODES {
            assert!(!matches!(named, CloseCode::Other(_)));
        }
    }

    #[test]
    fn every_fatal_reason_maps_back_to_its_code() {
        for code in CloseCode::GATEWAY_CODES {
            if let CloseAction::Fatal(reason) = code.action() {
                assert_eq!(reason.close_code(), code);
            }
        }
    }

    #[test]
    fn bot_wide_and_resharding_reasons_are_disjoint() {
        for code in CloseCode::GATEWAY_CODES {
            if let CloseAction::Fatal(reason) = code.action() {
                assert!(
                    reason.affects_whole_bot() ^ reason.needs_resharding(),
                    "{reason:?}"
                );
            }
        }
    }
}
