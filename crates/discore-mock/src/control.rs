//! Faults on demand and the targets they apply to. Both are serde types: the
//! same values drive the Rust API and the `/_mock/...` HTTP endpoints.

use crate::observe::ConnectionId;
use serde::{Deserialize, Serialize};

/// Which connections (for faults) or sessions (for dispatches) something
/// applies to.
///
/// In JSON: `"all"`, `{"shard": 0}`, `{"connection": 3}`, `{"guild": "123"}`.
#[derive(Clone, Debug, Eq, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Target {
    /// Everything live.
    All,
    /// Every live session (or connection) whose shard id is this, whatever
    /// its total.
    Shard(u32),
    /// One connection.
    Connection(ConnectionId),
    /// Every session whose `[id, total]` owns this guild.
    Guild(#[serde(with = "snowflake")] u64),
}

/// A fault the emulator injects into live connections.
///
/// In JSON the variant is the `type` field: `{"type": "close", "code": 4000}`.
#[derive(Clone, Debug, Eq, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Fault {
    /// Send op 7 Reconnect (then close with 4000 after
    /// `reconnect_close_after` unless the client closed first).
    Reconnect,
    /// Send op 9 Invalid Session. With `resumable: false` the session is
    /// destroyed and the connection must identify again.
    InvalidSession {
        /// The `d` of op 9.
        resumable: bool,
    },
    /// Send a close frame with this code, then end the connection. The
    /// session stays resumable exactly when the code's policy is "resume".
    Close {
        /// The close code.
        code: u16,
        /// The close reason; a default one when absent.
        #[serde(default)]
        reason: Option<String>,
    },
    /// End the TCP connection without a close frame.
    DropTcp,
    /// Stop (`false`) or resume (`true`) acknowledging heartbeats.
    HeartbeatAcks {
        /// Whether heartbeats are acknowledged.
        enabled: bool,
    },
    /// Send op 1 to ask for an immediate heartbeat.
    RequestHeartbeat,
    /// Hold every outbound frame for this long, then release them in order.
    Stall {
        /// How long, in milliseconds.
        millis: u64,
    },
    /// Delay each outbound frame by `millis` for the next `for_millis`.
    Delay {
        /// The added latency, in milliseconds.
        millis: u64,
        /// How long the delay stays in force, in milliseconds.
        for_millis: u64,
    },
    /// Replace the next frame with bytes no decompressor accepts (on an
    /// uncompressed connection: a binary frame of garbage).
    CorruptNextFrame,
    /// Send a text frame that is not valid JSON (compressed like any other
    /// frame on a compressed connection).
    MalformedJson,
    /// Send a MESSAGE_CREATE whose envelope is well formed and whose data
    /// is not JSON, numbered with the session's next sequence number (which
    /// the next real dispatch then carries too). A client that counted the
    /// broken one would skip the real one as a duplicate.
    MalformedDispatchData,
    /// Send these bytes as one message, exactly as given (compressed like
    /// any other message on a compressed connection, a text frame
    /// otherwise): whatever no other fault sends, such as invalid UTF-8, a
    /// sequence number out of range or an opcode over 255.
    Payload {
        /// The message; in JSON an array of byte values.
        bytes: Vec<u8>,
    },
}

/// Snowflakes as strings (Discord's way), accepting numbers too.
pub(crate) mod snowflake {
    use serde::{Deserialize, Deserializer, Serializer, de::Error};

    pub(crate) fn serialize<S: Serializer>(id: &u64, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&id.to_string())
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<u64, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Id {
            Number(u64),
            Text(String),
        }
        match Id::deserialize(deserializer)? {
            Id::Number(n) => Ok(n),
            Id::Text(s) => s.parse().map_err(D::Error::custom),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{Fault, Target};
    use crate::observe::ConnectionId;
    use serde_json::json;

    #[test]
    fn json_shapes() {
        let target: Target = serde_json::from_value(json!("all")).expect("all");
        assert_eq!(target, Target::All);
        let target: Target = serde_json::from_value(json!({"shard": 2})).expect("shard");
        assert_eq!(target, Target::Shard(2));
        let target: Target = serde_json::from_value(json!({"connection": 7})).expect("connection");
        assert_eq!(target, Target::Connection(ConnectionId(7)));
        let target: Target =
            serde_json::from_value(json!({"guild": "41771983423143937"})).expect("guild");
        assert_eq!(target, Target::Guild(41_771_983_423_143_937));
        let fault: Fault =
            serde_json::from_value(json!({"type": "close", "code": 4000})).expect("close");
        assert_eq!(
            fault,
            Fault::Close {
                code: 4000,
                reason: None
            }
        );
        let fault: Fault =
            serde_json::from_value(json!({"type": "invalid_session", "resumable": true}))
                .expect("op 9");
        assert_eq!(fault, Fault::InvalidSession { resumable: true });
    }
}
