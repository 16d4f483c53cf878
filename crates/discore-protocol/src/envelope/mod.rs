//! The payload envelope `{op, d, s, t}` (`docs/protocol.md`, "Payloads"),
//! read without parsing the event data.

mod data;
mod scan;

pub use data::PayloadData;

use crate::OpCode;
use serde::Deserialize;
use serde_json::value::RawValue;
use std::{borrow::Cow, fmt};

/// One received Gateway payload with its data left unread.
///
/// Peeking reads `op`, `s` and `t` and finds where `d` lies; for a payload
/// in Discord's member order it does not look at `d` at all, so an event
/// nobody wants costs almost nothing. Whoever wants the data parses it
/// through [`PayloadData`], and that parse is the one full pass over it.
#[derive(Debug)]
pub struct Envelope<'a> {
    /// The opcode.
    pub op: OpCode,
    /// The sequence number; set only on dispatches.
    pub sequence: Option<u64>,
    /// The event name; set only on dispatches. Borrowed from the input
    /// unless it contains escapes.
    pub event_name: Option<Cow<'a, str>>,
    /// The event data, `None` when absent or `null`.
    pub data: Option<PayloadData<'a>>,
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
    /// The data is not validated here: [`PayloadData`]'s parsers validate it, and
    /// report a payload that turns out not to be JSON as
    /// [`EnvelopeError::is_malformed`].
    ///
    /// # Errors
    ///
    /// [`EnvelopeError`] when the text is not a JSON object with an integer
    /// `op` in 0..=255. Unknown opcodes, unknown event names and unknown
    /// fields are not errors.
    pub fn peek(json: &'a str) -> Result<Self, EnvelopeError> {
        match scan::scan(json) {
            Some(scanned) => Ok(Self {
                op: OpCode::from(scanned.op),
                sequence: scanned.sequence,
                event_name: scanned.event_name.map(Cow::Borrowed),
                data: scanned.data.map(|span| PayloadData::unchecked(json, span)),
            }),
            None => Self::peek_strict(json),
        }
    }

    /// Reads the envelope with serde_json, validating the whole payload
    /// (`d` included). [`peek`](Self::peek) falls back to this whenever its
    /// scan meets something it does not expect.
    ///
    /// # Errors
    ///
    /// As [`peek`](Self::peek), and also when `d` is not valid JSON.
    pub fn peek_strict(json: &'a str) -> Result<Self, EnvelopeError> {
        let wire: WireEnvelope<'a> =
            serde_json::from_str(json).map_err(EnvelopeError::malformed)?;
        // `"d": null` arrives as a raw `null`: treat it like an absent field.
        let data = wire.d.filter(|raw| raw.get() != "null");
        Ok(Self {
            op: OpCode::from(wire.op),
            sequence: wire.s,
            event_name: wire.t,
            data: data.map(PayloadData::checked),
        })
    }

    /// Deserializes the data into `T`, treating absent data as JSON `null`.
    ///
    /// # Errors
    ///
    /// [`EnvelopeError`] when the data does not have the shape of `T`, or
    /// is not JSON at all ([`EnvelopeError::is_malformed`]).
    pub fn data_as<T: Deserialize<'a>>(&self) -> Result<T, EnvelopeError> {
        match self.data {
            Some(data) => data.deserialize(),
            None => serde_json::from_str("null").map_err(EnvelopeError::mismatch),
        }
    }
}

/// A payload that is not a Gateway envelope, or data that does not have the
/// expected shape.
#[derive(Debug)]
pub struct EnvelopeError {
    error: serde_json::Error,
    malformed: bool,
}

impl EnvelopeError {
    pub(crate) const fn malformed(error: serde_json::Error) -> Self {
        Self {
            error,
            malformed: true,
        }
    }

    pub(crate) const fn mismatch(error: serde_json::Error) -> Self {
        Self {
            error,
            malformed: false,
        }
    }

    /// `true` when the payload is not valid JSON or not an envelope at all;
    /// `false` when it is valid JSON whose data has another shape than the
    /// one asked for.
    pub const fn is_malformed(&self) -> bool {
        self.malformed
    }
}

impl fmt::Display for EnvelopeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The serde error is the source: printed with `ErrorChain`.
        f.write_str(if self.malformed {
            "malformed gateway payload"
        } else {
            "gateway payload data of another shape"
        })
    }
}

impl std::error::Error for EnvelopeError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.error)
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
            envelope.data.map(|d| d.text()),
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
        let strict = Envelope::peek_strict(&frame).expect("nor does the strict peek");
        assert!(strict.data_as::<serde_json::Value>().is_err());
    }

    #[test]
    fn members_after_data_are_found_by_the_strict_parser() {
        let frame = r#"{"t":"X","s":1,"op":0,"d":{"a":[1]},"x":{"d":2}}"#;
        let envelope = Envelope::peek(frame).expect("valid envelope");
        let data = envelope.data.expect("data");
        assert_eq!(data.raw().expect("valid json").get(), r#"{"a":[1]}"#);
        let value: serde_json::Value = data.deserialize().expect("parses");
        assert_eq!(value, serde_json::json!({"a": [1]}));
    }

    /// The exact text of `d` is a slice of the frame: without the
    /// whitespace around it, and found whatever the members' order.
    #[test]
    fn the_exact_data_text_is_a_slice_of_the_frame() {
        for (frame, d) in [
            (
                r#"{"t":"X","s":1,"op":0,"d":{"a":[1, 2]}}"#,
                r#"{"a":[1, 2]}"#,
            ),
            (
                "{\"t\":\"X\",\"s\":1,\"op\":0,\"d\": {\"a\" : 1}\n }",
                r#"{"a" : 1}"#,
            ),
            (r#"{"t":"X","d":{"b":"}"},"s":1,"op":0}"#, r#"{"b":"}"}"#),
            (
                r#"{"t":"X","s":1,"op":0,"d":{"a":1},"x":{"d":2}}"#,
                r#"{"a":1}"#,
            ),
        ] {
            let data = Envelope::peek(frame).expect("valid").data.expect("data");
            let (value, text) = data
                .parse_exact_with(serde_json::from_str::<serde_json::Value>)
                .expect("parses");
            assert_eq!(text, d, "{frame}");
            assert_eq!(
                value,
                serde_json::from_str::<serde_json::Value>(d).expect("json")
            );
            let within = frame.as_bytes().as_ptr_range();
            assert!(
                within.contains(&text.as_ptr()),
                "{frame}: not a slice of it"
            );
        }
    }

    #[test]
    fn malformed_data_is_found_when_read() {
        for frame in [
            r#"{"t":"X","s":1,"op":0,"d":{}"#,
            r#"{"t":"X","s":1,"op":0,"d":{"a":}}"#,
            r#"{"t":"X","s":1,"op":0,"d":{"a":1}}}"#,
        ] {
            let data = Envelope::peek(frame)
                .expect("the envelope itself is read")
                .data
                .expect("data");
            let error = data.deserialize::<serde_json::Value>().expect_err(frame);
            assert!(error.is_malformed(), "{frame}: {error}");
            assert!(data.raw().is_err_and(|e| e.is_malformed()), "{frame}");
        }
    }

    #[test]
    fn data_of_another_shape_is_a_mismatch() {
        let envelope = Envelope::peek(r#"{"t":"X","s":1,"op":0,"d":{"a":1}}"#).expect("valid");
        let error = envelope.data_as::<Vec<u8>>().expect_err("not a list");
        assert!(!error.is_malformed());
    }

    #[test]
    fn escaped_event_names_are_read() {
        let envelope =
            Envelope::peek(r#"{"t":"A\u0042","s":1,"op":0,"d":{}}"#).expect("valid envelope");
        assert_eq!(envelope.event_name.as_deref(), Some("AB"));
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
