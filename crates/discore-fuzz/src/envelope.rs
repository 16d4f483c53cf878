//! A text frame turned into a typed event, as the shard's reader does it
//! (`crates/discore-gateway/src/shard/io.rs`, `on_payload` and
//! `on_dispatch`): UTF-8, the envelope, then per opcode the data the shard
//! reads, and for a dispatch the typed parse its subscribers get.

use discore_gateway::{Dispatch, EventType, RawReason};
use discore_protocol::{
    Envelope, OpCode,
    inbound::{Hello, ReadySession},
};
use serde::de::DeserializeSeed as _;
use serde_json::value::RawValue;
use twilight_model::gateway::event::{
    DispatchEventWithTypeDeserializer, GatewayEvent, GatewayEventDeserializer,
};

/// Fuzz body: one received (inflated) payload.
///
/// Invariants: nothing panics; a malformed frame is an `EnvelopeError` with
/// a message; the fast `Envelope::peek` reads what the strict serde parser
/// (`Envelope::peek_strict`) reads whenever that one accepts the frame; a
/// dispatch becomes
/// a [`Dispatch`] under its own name, raw exactly when twilight-model does
/// not know the name or the payload does not match the model, and an error
/// only for a frame that is not JSON; and the typed event is exactly
/// twilight-model's parse of the same data.
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
        OpCode::Dispatch => dispatch(text, &envelope, strict.is_ok()),
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

fn dispatch(frame: &str, envelope: &Envelope<'_>, valid_json: bool) {
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
    if valid_json {
        agrees_with_twilight(frame, envelope, name, kind, &event);
    }
    let _ = format!("{event:?}");
}

/// discore's one-pass typed parse gives exactly twilight-model's result
/// for the same data: the same event where twilight-model reads one, and
/// raw data where it refuses the data. Whole-frame parses are compared too
/// when twilight-model's envelope scan (a string search) reads the same
/// `op`, `s` and `t` as the strict parser.
fn agrees_with_twilight(
    frame: &str,
    envelope: &Envelope<'_>,
    name: &str,
    kind: Option<EventType>,
    event: &Dispatch,
) {
    let Some(known_name) = kind.and_then(EventType::name) else {
        return;
    };
    let data = envelope
        .data
        .map_or(Ok(RawValue::NULL), |data| data.raw())
        .expect("valid data reads");
    let mut json = serde_json::Deserializer::from_str(data.get());
    let theirs = DispatchEventWithTypeDeserializer::new(known_name)
        .deserialize(&mut json)
        .and_then(|event| json.end().map(|()| event));
    match (&theirs, event) {
        (Ok(theirs), Dispatch::Known { event: ours, .. }) => {
            assert_eq!(theirs, ours, "{name}: the same event as twilight-model's");
        }
        (Err(_), Dispatch::Raw(_)) => {}
        (theirs, ours) => panic!("{name}: twilight-model {theirs:?}, discore {ours:?}"),
    }
    let Some(scan) = GatewayEventDeserializer::from_json(frame) else {
        return;
    };
    let same_envelope = scan.op() == 0
        && scan.sequence() == envelope.sequence
        && scan.event_type() == envelope.event_name.as_deref();
    if !same_envelope {
        return;
    }
    let mut json = serde_json::Deserializer::from_str(frame);
    if let Ok(GatewayEvent::Dispatch(_, whole)) = scan.deserialize(&mut json)
        && let Dispatch::Known { event: ours, .. } = event
    {
        assert_eq!(
            &whole, ours,
            "{name}: the same event as twilight-model's whole-frame parse"
        );
    }
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
