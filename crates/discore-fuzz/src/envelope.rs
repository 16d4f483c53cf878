//! A text frame turned into a typed event, as the shard's reader does it
//! (`crates/discore-gateway/src/shard/io.rs`, `on_payload` and
//! `on_dispatch`): UTF-8, the envelope, then per opcode the data the shard
//! reads, and for a dispatch the typed parse its subscribers get.

use discore_gateway::{Dispatch, EventType, RawReason};
use discore_protocol::{
    Envelope, OpCode,
    inbound::{Hello, ReadySession},
};
use serde_json::value::RawValue;

/// Fuzz body: one received (inflated) payload.
///
/// Invariants: nothing panics; a malformed frame is an `EnvelopeError` with
/// a message; the fast `Envelope::peek` reads what the strict serde parser
/// (`Envelope::peek_strict`) reads whenever that one accepts the frame; a
/// dispatch becomes
/// a [`Dispatch`] under its own name, raw exactly when twilight-model does
/// not know the name or the payload does not match the model, and an error
/// only for a frame that is not JSON.
pub fn envelope(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let strict = Envelope::peek_strict(text);
    let envelope = match Envelope::peek(text) {
        Ok(envelope) => envelope,
        Err(error) => {
            assert!(error.is_malformed(), "{error}");
            assert!(!error.to_string().is_empty());
            assert!(strict.is_err(), "the strict parser reads what peek refused");
            return;
        }
    };
    agrees_with_strict(&envelope, strict.as_ref().ok());
    match envelope.op {
        OpCode::Dispatch => dispatch(&envelope, strict.is_ok()),
        OpCode::InvalidSession => {
            let _resumable = envelope.data_as::<bool>().unwrap_or(false);
        }
        OpCode::Hello => {
            if let Ok(hello) = envelope.data_as::<Hello>() {
                let _interval = std::time::Duration::from_millis(hello.heartbeat_interval);
            }
        }
        other => assert!(!other.to_string().is_empty()),
    }
}

/// The fast peek is an optimisation of the strict one, never a different
/// reading of the frame.
fn agrees_with_strict(fast: &Envelope<'_>, strict: Option<&Envelope<'_>>) {
    let data = fast.data.map(|data| data.raw());
    let Some(strict) = strict else {
        // The scan reads `op`, `s`, `t`, validates any other member (since
        // `{"t":"X","s":1,"op":0,"x":{"a":}}`, found by this target) and
        // only locates `d`, so a frame malformed only in `d` is accepted,
        // like the data of an event nobody wants. What it does read must
        // still be right: data that reads is the data, and data that does
        // not is reported as malformed.
        if let Some(Err(error)) = data {
            assert!(error.is_malformed(), "{error}");
        }
        return;
    };
    assert_eq!(fast.op, strict.op);
    assert_eq!(fast.sequence, strict.sequence);
    assert_eq!(fast.event_name, strict.event_name);
    let fast_text = data.map(|raw| raw.expect("valid data reads").get());
    let strict_text = strict.data.map(|data| data.text());
    assert_eq!(fast_text, strict_text, "the same data");
}

fn dispatch(envelope: &Envelope<'_>, valid_json: bool) {
    let name = envelope.event_name.as_deref().unwrap_or_default();
    if envelope.sequence.is_none() {
        // The shard treats it as a protocol error and reconnects.
        return;
    }
    if name == "READY" {
        // Without a session id the shard starts over and delivers nothing.
        let Ok(ready) = envelope.data_as::<ReadySession>() else {
            return;
        };
        let _ = (
            ready.guild_count(),
            ready.session_id,
            ready.resume_gateway_url,
        );
    }
    // Every dispatch, READY and RESUMED included, is parsed for the
    // subscribers that want it.
    let kind = EventType::try_from(name).ok();
    let event = match Dispatch::from_data(name, kind, envelope.data) {
        Ok(event) => event,
        Err(error) => {
            assert!(
                error.is_malformed(),
                "only a frame that is not JSON: {error}"
            );
            assert!(!valid_json, "a valid frame refused: {error}");
            return;
        }
    };
    assert_eq!(event.name(), name, "a dispatch keeps its name");
    match &event {
        Dispatch::Known { .. } => assert!(kind.is_some(), "typed only when the name is known"),
        Dispatch::Raw(raw) => {
            let sent = envelope
                .data
                .map_or(Ok(RawValue::NULL), |data| data.raw())
                .expect("delivered data is valid");
            assert_eq!(raw.data.get(), sent.get(), "raw data is kept as received");
            match &raw.reason {
                RawReason::UnknownEvent => {
                    assert!(kind.is_none() || kind.and_then(EventType::name).is_none())
                }
                RawReason::ModelMismatch(reason) => {
                    assert!(kind.is_some());
                    assert!(!reason.is_empty());
                }
            }
        }
    }
    let _ = format!("{event:?}");
}

#[cfg(test)]
mod tests {
    use super::envelope;

    #[test]
    fn frames_of_every_kind() {
        for frame in [
            &br#"{"op":10,"d":{"heartbeat_interval":41250}}"#[..],
            br#"{"op":11}"#,
            br#"{"op":9,"d":true}"#,
            br#"{"op":7,"d":null}"#,
            br#"{"op":0,"s":1,"t":"READY","d":{"session_id":"a","guilds":[]}}"#,
            br#"{"op":0,"s":2,"t":"TYPING_START","d":{"channel_id":"1","user_id":"2","timestamp":1}}"#,
            br#"{"op":0,"s":3,"t":"MESSAGE_CREATE","d":{"unexpected":true}}"#,
            br#"{"op":0,"s":4,"t":"NOT_AN_EVENT","d":[1,2]}"#,
            br#"{"op":0,"t":"NO_SEQUENCE"}"#,
            br#"{"op":300}"#,
            b"\xff\xfe",
            b"",
        ] {
            envelope(frame);
        }
    }
}
