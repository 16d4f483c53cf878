//! The payload envelope `{op, d, s, t}` (protocol digest §1), read without
//! parsing the event data.

use crate::OpCode;
use serde::Deserialize;
use serde_json::value::RawValue;
use std::{borrow::Cow, fmt};

/// One received Gateway payload with its data left as raw JSON.
///
/// Peeking costs a scan of the frame but no allocation for `d`, which is
/// borrowed from the input; the caller deserializes it only if somebody wants
/// the event.
#[derive(Debug)]
pub struct Envelope<'a> {
    /// The opcode.
    pub op: OpCode,
    /// The sequence number; set only on dispatches.
    pub sequence: Option<u64>,
    /// The event name; set only on dispatches.
    pub event_name: Option<Cow<'a, str>>,
    /// The event data, `None` when absent or `null`.
    pub data: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct WireEnvelope<'a> {
    op: u8,
    #[serde(borrow, default)]
    d: Option<&'a RawValue>,
    #[serde(default)]
    s: Option<u64>,
    #[serde(borrow, default)]
    t: Option<Cow<'a, str>>,
}

impl<'a> Envelope<'a> {
    /// Reads the envelope of one JSON text payload.
    ///
    /// # Errors
    ///
    /// [`EnvelopeError`] when the text is not a JSON object with an integer
    /// `op` in 0..=255. Unknown opcodes, unknown event names and unknown
    /// fields are not errors.
    pub fn peek(json: &'a str) -> Result<Self, EnvelopeError> {
        let wire: WireEnvelope<'a> = serde_json::from_str(json).map_err(EnvelopeError)?;
        // `"d": null` arrives as a raw `null`: treat it like an absent field.
        let data = wire.d.filter(|raw| raw.get() != "null");
        Ok(Self {
            op: OpCode::from(wire.op),
            sequence: wire.s,
            event_name: wire.t,
            data,
        })
    }

    /// Deserializes the data into `T`, treating absent data as JSON `null`.
    ///
    /// # Errors
    ///
    /// [`EnvelopeError`] when the data does not have the shape of `T`.
    pub fn data_as<T: Deserialize<'a>>(&self) -> Result<T, EnvelopeError> {
        let raw = self.data.map_or("null", RawValue::get);
        serde_json::from_str(raw).map_err(EnvelopeError)
    }
}

/// A payload that is not a Gateway envelope.
#[derive(Debug)]
pub struct EnvelopeError(serde_json::Error);

impl fmt::Display for EnvelopeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "malformed gateway payload: {}", self.0)
    }
}

impl std::error::Error for EnvelopeError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::Envelope;
    use crate::OpCode;

    #[test]
    fn dispatch_keeps_data_raw() {
        let frame =
            r#"{"t":"MESSAGE_CREATE","s":42,"op":0,"d":{"content":"hi","nested":[1,{"a":null}]}}"#;
        let envelope = Envelope::peek(frame).expect("valid envelope");
        assert_eq!(envelope.op, OpCode::Dispatch);
        assert_eq!(envelope.sequence, Some(42));
        assert_eq!(envelope.event_name.as_deref(), Some("MESSAGE_CREATE"));
        assert_eq!(
            envelope.data.map(|d| d.get()),
            Some(r#"{"content":"hi","nested":[1,{"a":null}]}"#)
        );
    }

    #[test]
    fn ack_without_data_and_with_null_data() {
        for frame in [r#"{"op":11}"#, r#"{"op":11,"d":null,"s":null,"t":null}"#] {
            let envelope = Envelope::peek(frame).expect("valid envelope");
            assert_eq!(envelope.op, OpCode::HeartbeatAck);
            assert!(envelope.data.is_none());
            assert!(envelope.sequence.is_none());
        }
    }

    #[test]
    fn unknown_opcode_and_fields_are_data() {
        let envelope = Envelope::peek(r#"{"op":99,"d":{"x":1},"extra":[true]}"#)
            .expect("unknown opcode is not an error");
        assert_eq!(envelope.op, OpCode::Unknown(99));
    }

    #[test]
    fn malformed_payloads_are_errors_not_panics() {
        for frame in [
            "",
            "{",
            "null",
            "[]",
            r#"{"d":1}"#,
            r#"{"op":"1"}"#,
            r#"{"op":256}"#,
        ] {
            assert!(Envelope::peek(frame).is_err(), "{frame:.40}");
        }
    }

    #[test]
    fn deeply_nested_data_is_skipped_then_refused_when_parsed() {
        let nested = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
        let frame = format!(r#"{{"op":0,"s":1,"t":"X","d":{nested}}}"#);
        let envelope = Envelope::peek(&frame).expect("the peek does not recurse into d");
        assert!(envelope.data_as::<serde_json::Value>().is_err());
    }

    #[test]
    fn typed_data() {
        #[derive(serde::Deserialize)]
        struct Hello {
            heartbeat_interval: u64,
        }
        let envelope = Envelope::peek(r#"{"op":10,"d":{"heartbeat_interval":41250}}"#)
            .expect("valid envelope");
        let hello: Hello = envelope.data_as().expect("hello data");
        assert_eq!(hello.heartbeat_interval, 41250);
        let invalid = Envelope::peek(r#"{"op":9,"d":true}"#).expect("valid envelope");
        assert_eq!(invalid.data_as::<bool>().ok(), Some(true));
    }
}
