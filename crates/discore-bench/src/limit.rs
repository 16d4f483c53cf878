//! The limit for the same work: inflate the captured stream and parse every
//! payload into the same typed event (twilight-model's `DispatchEvent`),
//! then touch it, in a tight loop with no sockets, tasks or actors.
//!
//! Two parsers, both measured:
//! - [`Parser::TwilightModel`], the reference: the cheapest correct
//!   parse serde_json and twilight-model offer, one pass over the payload
//!   with twilight-model's `GatewayEventDeserializer` (a quick scan for
//!   `op`, `s` and `t`, then a single deserialization into the typed event).
//! - [`Parser::Discore`], discore's own event path without the socket and
//!   the actors: `Envelope::peek` (a byte scan), then `Dispatch::from_data`
//!   (one pass, no serde flatten buffer for MESSAGE_CREATE) and the `Arc`
//!   subscribers share. discore's client beats the first limit because its
//!   parser is faster; the second is the limit for discore itself.

use crate::{
    capture::Capture,
    decode::{StreamDecoder, text},
    stats::{self, Throughput},
};
use anyhow::Context as _;
use discore_gateway::{Dispatch, EventType};
use discore_protocol::Envelope;
use serde::de::DeserializeSeed as _;
use std::{hint::black_box, sync::Arc, time::Instant};
use twilight_model::gateway::event::{DispatchEvent, GatewayEvent, GatewayEventDeserializer};

/// Which parse the tight loop runs.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub enum Parser {
    /// serde_json into twilight-model's `DispatchEvent`, one pass.
    TwilightModel,
    /// discore's envelope scan and one-pass `Dispatch::from_data`.
    Discore,
}

impl Parser {
    fn parse(self, json: &str) -> Option<usize> {
        match self {
            Self::TwilightModel => parse_message(json),
            Self::Discore => parse_message_discore(json).ok().flatten(),
        }
    }
}

/// discore's parse of one payload: the envelope scan, the event type, the
/// one-pass typed parse of `d` and the `Arc` subscribers share; returns the
/// content length of a MESSAGE_CREATE.
///
/// # Errors
///
/// When the payload is not a Gateway payload.
pub fn parse_message_discore(json: &str) -> anyhow::Result<Option<usize>> {
    let envelope = Envelope::peek(json)?;
    let name = envelope.event_name.as_deref().unwrap_or_default();
    let kind = EventType::try_from(name).ok();
    let dispatch = Arc::new(Dispatch::from_data(name, kind, envelope.data)?);
    Ok(match dispatch.typed() {
        Some(DispatchEvent::MessageCreate(message)) => Some(message.content.len()),
        _ => None,
    })
}

/// Parses one payload into its typed event and returns the content length
/// of a MESSAGE_CREATE.
pub fn parse_message(json: &str) -> Option<usize> {
    let envelope = GatewayEventDeserializer::from_json(json)?;
    let mut deserializer = serde_json::Deserializer::from_str(json);
    match envelope.deserialize(&mut deserializer).ok()? {
        GatewayEvent::Dispatch(_, DispatchEvent::MessageCreate(message)) => {
            Some(message.content.len())
        }
        _ => None,
    }
}

/// One timed pass over the flood.
pub fn run_once(capture: &Capture, parser: Parser) -> anyhow::Result<Throughput> {
    let mut decoder = StreamDecoder::new(capture.codec)?;
    for frame in &capture.setup {
        decoder.decode(frame)?;
    }
    let cpu = stats::cpu_time();
    let started = Instant::now();
    let mut content = 0;
    for frame in &capture.flood {
        let json = text(decoder.decode(frame)?)?;
        content += parser
            .parse(json)
            .context("a flood payload did not parse")?;
    }
    let elapsed = started.elapsed();
    let cpu = stats::cpu_time().saturating_sub(cpu);
    black_box(content);
    Ok(Throughput::client_only(
        capture.flood.len() as u64,
        elapsed,
        cpu,
    ))
}

/// The best of `runs` passes.
pub fn best(capture: &Capture, runs: usize, parser: Parser) -> anyhow::Result<Throughput> {
    let runs = (0..runs.max(1))
        .map(|_| run_once(capture, parser))
        .collect::<anyhow::Result<Vec<_>>>()?;
    Ok(Throughput::best(&runs))
}

#[cfg(test)]
mod tests {
    use super::{parse_message, parse_message_discore};

    #[test]
    fn a_message_create_parses_and_other_payloads_do_not_count() {
        let message = r#"{"t":"MESSAGE_CREATE","s":7,"op":0,"d":{"type":0,"tts":false,"timestamp":"2024-01-01T00:00:00.000000+00:00","pinned":false,"mentions":[],"mention_roles":[],"mention_everyone":false,"id":"1","flags":0,"embeds":[],"edited_timestamp":null,"content":"hello","components":[],"channel_id":"2","author":{"id":"3","username":"a","discriminator":"0","avatar":null},"attachments":[]}}"#;
        assert_eq!(parse_message(message), Some(5));
        assert_eq!(parse_message(r#"{"op":11,"d":null}"#), None);
        assert_eq!(parse_message("not json"), None);
        assert_eq!(parse_message_discore(message).ok(), Some(Some(5)));
        assert_eq!(
            parse_message_discore(r#"{"op":11,"d":null}"#).ok(),
            Some(None)
        );
        assert!(parse_message_discore("not json").is_err());
    }
}
