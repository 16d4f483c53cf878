//! Per-event costs of the steps of the event path, in isolation, on the
//! captured flood: where a single-shard event's time can go.

use crate::{
    capture::Capture,
    decode::{Codec, MinizDecoder, StreamDecoder, text},
    limit,
    report::Section,
    stats,
};
use anyhow::Context as _;
use discore_gateway::{Dispatch, EventType};
use discore_protocol::Envelope;
use serde::de::{DeserializeSeed as _, IgnoredAny};
use serde_json::value::RawValue;
use std::{
    hint::black_box,
    time::{Duration, Instant},
};
use twilight_model::{
    channel::Message,
    gateway::{
        event::{DispatchEvent, GatewayEvent, GatewayEventDeserializer},
        payload::incoming::MessageCreate,
    },
};

/// CPU nanoseconds per item of the fastest of `runs` passes of `pass`.
///
/// CPU time, not wall time: on a shared machine other processes take turns
/// on the cores, which stretches wall time but not the CPU time a pass
/// uses. A pass too short for the 10 ms CPU clock falls back to wall time.
fn per_item(
    runs: usize,
    items: usize,
    mut pass: impl FnMut() -> anyhow::Result<usize>,
) -> anyhow::Result<f64> {
    let mut best = f64::INFINITY;
    for _ in 0..runs.max(1) {
        let cpu = stats::cpu_time();
        let started = Instant::now();
        black_box(pass()?);
        let wall = started.elapsed();
        let cpu = stats::cpu_time().saturating_sub(cpu);
        let spent = if cpu >= Duration::from_millis(200) {
            cpu
        } else {
            wall
        };
        best = best.min(spent.as_secs_f64() * 1e9 / items.max(1) as f64);
    }
    Ok(best)
}

fn inflate_pass(capture: &Capture) -> anyhow::Result<usize> {
    let mut decoder = StreamDecoder::new(capture.codec)?;
    for frame in &capture.setup {
        decoder.decode(frame)?;
    }
    let mut bytes = 0;
    for frame in &capture.flood {
        bytes += decoder.decode(frame)?.len();
    }
    Ok(bytes)
}

fn miniz_pass(capture: &Capture) -> anyhow::Result<usize> {
    let mut decoder = MinizDecoder::new();
    for frame in &capture.setup {
        decoder.decode(frame)?;
    }
    let mut bytes = 0;
    for frame in &capture.flood {
        bytes += decoder.decode(frame)?.len();
    }
    Ok(bytes)
}

/// The limit's parse through simd-json: the envelope from `json`, the
/// event from `buffer` (a copy simd-json may rewrite in place).
fn simd_parse(json: &str, buffer: &mut [u8]) -> anyhow::Result<usize> {
    let envelope = GatewayEventDeserializer::from_json(json).context("no envelope")?;
    let mut deserializer = simd_json::Deserializer::from_slice(buffer)?;
    match envelope.deserialize(&mut deserializer)? {
        GatewayEvent::Dispatch(_, DispatchEvent::MessageCreate(message)) => {
            Ok(message.content.len())
        }
        _ => anyhow::bail!("not a MESSAGE_CREATE"),
    }
}

/// Runs every step over the captures and returns the table.
pub fn run(captures: &[Capture], runs: usize) -> anyhow::Result<Section> {
    let plain = captures
        .iter()
        .find(|c| c.codec == Codec::None)
        .context("the micro measurements need the uncompressed capture")?;
    let payloads = plain.payloads()?;
    let n = payloads.len();
    let mean_len = payloads.iter().map(String::len).sum::<usize>() as f64 / n.max(1) as f64;
    let mut section = Section::new(
        "Per-event cost of each step (micro: CPU time, best of runs, tight loop)",
        &["step", "ns/event", "what it does"],
    );
    let mut step = |name: &str, what: &str, ns: f64| {
        section.row(vec![name.to_owned(), format!("{ns:.0}"), what.to_owned()]);
    };
    for capture in captures.iter().filter(|c| c.codec != Codec::None) {
        let ns = per_item(runs, capture.flood.len(), || inflate_pass(capture))?;
        let what = format!(
            "{:.0} wire bytes to {mean_len:.0} JSON bytes, one context, reused buffer",
            capture.mean_frame_len()
        );
        match capture.codec {
            Codec::Zlib => {
                step("inflate zlib-stream (flate2, zlib-rs)", &what, ns);
                let ns = per_item(runs, capture.flood.len(), || miniz_pass(capture))?;
                step(
                    "inflate zlib-stream (miniz_oxide)",
                    "flate2's default backend, what a bot gets without zlib-rs",
                    ns,
                );
            }
            _ => step("inflate zstd-stream", &what, ns),
        }
    }
    step(
        "UTF-8 check",
        "std::str::from_utf8",
        per_item(runs, n, || {
            Ok(payloads
                .iter()
                .map(|p| std::str::from_utf8(p.as_bytes()).map_or(0, str::len))
                .sum())
        })?,
    );
    step(
        "envelope peek (discore)",
        "Envelope::peek: a byte scan for op, s, t; d located, not read",
        per_item(runs, n, || {
            payloads.iter().try_fold(0, |sum, p| {
                Ok(sum + Envelope::peek(p)?.sequence.map_or(0, |_| 1))
            })
        })?,
    );
    step(
        "envelope peek, strict (discore)",
        "Envelope::peek_strict: serde_json, d validated as a RawValue",
        per_item(runs, n, || {
            payloads.iter().try_fold(0, |sum, p| {
                Ok(sum + Envelope::peek_strict(p)?.sequence.map_or(0, |_| 1))
            })
        })?,
    );
    step(
        "envelope scan (twilight-model)",
        "GatewayEventDeserializer::from_json: string search for op, s, t",
        per_item(runs, n, || {
            Ok(payloads
                .iter()
                .filter_map(|p| GatewayEventDeserializer::from_json(p))
                .count())
        })?,
    );
    step(
        "JSON validation only",
        "serde_json into IgnoredAny: the grammar, no values built",
        per_item(runs, n, || {
            payloads.iter().try_fold(0, |sum, p| {
                serde_json::from_str::<IgnoredAny>(p)?;
                Ok(sum + 1)
            })
        })?,
    );
    step(
        "event type lookup",
        "EventType::try_from(\"MESSAGE_CREATE\")",
        per_item(runs, n, || {
            Ok((0..n)
                .filter(|_| EventType::try_from(black_box("MESSAGE_CREATE")).is_ok())
                .count())
        })?,
    );
    step(
        "typed parse, one pass (the limit's)",
        "GatewayEventDeserializer + serde_json into DispatchEvent",
        per_item(runs, n, || {
            payloads.iter().try_fold(0, |sum, p| {
                Ok(sum + limit::parse_message(p).context("did not parse")?)
            })
        })?,
    );
    step(
        "typed parse, discore's path",
        "peek + event type + Dispatch::from_data(d) + Arc::new",
        per_item(runs, n, || {
            payloads.iter().try_fold(0, |sum, p| {
                Ok(sum + limit::parse_message_discore(p)?.unwrap_or(0))
            })
        })?,
    );
    // The data alone, to split the typed parse from the envelope.
    let datas: Vec<&str> = payloads
        .iter()
        .map(|p| {
            Envelope::peek(p)
                .ok()
                .and_then(|e| e.data)
                .map_or("null", |d| d.text())
        })
        .collect();
    let raw_datas = datas
        .iter()
        .map(|d| serde_json::from_str::<&RawValue>(d))
        .collect::<Result<Vec<_>, _>>()?;
    step(
        "typed parse, one pass, simd-json",
        "the limit's parse with simd-json's serde deserializer (on a mutable copy)",
        per_item(runs, n, || {
            let mut buffer = Vec::with_capacity(1 << 16);
            payloads.iter().try_fold(0, |sum, p| {
                buffer.clear();
                buffer.extend_from_slice(p.as_bytes());
                Ok(sum + simd_parse(p, &mut buffer)?)
            })
        })?,
    );
    step(
        "typed parse of d: MessageCreate",
        "twilight-model's MessageCreate: serde(flatten) buffers d into Content first",
        per_item(runs, n, || {
            datas.iter().try_fold(0, |sum, d| {
                Ok(sum + serde_json::from_str::<MessageCreate>(d)?.content.len())
            })
        })?,
    );
    step(
        "typed parse of d: Message",
        "the same d into Message directly (no flatten; channel_type not read)",
        per_item(runs, n, || {
            datas.iter().try_fold(0, |sum, d| {
                Ok(sum + serde_json::from_str::<Message>(d)?.content.len())
            })
        })?,
    );
    step(
        "typed parse of d: discore's MessageCreate",
        "Dispatch::parse: Message straight from d, channel_type taken out as it streams past",
        per_item(runs, n, || {
            raw_datas.iter().try_fold(0, |sum, d| {
                let dispatch = Dispatch::parse("MESSAGE_CREATE", Some(EventType::MessageCreate), d);
                Ok(sum + dispatch.typed().map_or(0, |_| 1))
            })
        })?,
    );
    step(
        "text copy",
        "String::from(&str) of the payload (what an owned-String path costs)",
        per_item(runs, n, || {
            Ok(payloads
                .iter()
                .map(|p| black_box(String::from(text(p.as_bytes()).unwrap_or_default())).len())
                .sum())
        })?,
    );
    section.note(format!(
        "{n} MESSAGE_CREATE payloads of {mean_len:.0} bytes on average; `Dispatch` is {} bytes, `DispatchEvent` {} bytes.",
        std::mem::size_of::<Dispatch>(),
        std::mem::size_of::<twilight_model::gateway::event::DispatchEvent>()
    ));
    Ok(section)
}
