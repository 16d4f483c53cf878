//! The limit over a live socket: one task reads the flood from a real
//! loopback connection and, in the same loop, inflates and parses each
//! frame with discore's parser (as [`limit::Parser::Discore`] does) and
//! drops it. It reads the way a busy discore connection does, 64 KiB at a
//! time straight into one buffer, and decodes frames with the same
//! WebSocket codec; there are no actors, no mailbox, no credits and no
//! bookkeeping.
//!
//! So it splits discore's distance from the tight loop in two: what any
//! client pays to take the events off a socket (the system calls, the
//! kernel's copy, the TCP acknowledgements, the framing, the parse running
//! between reads instead of back to back), and what discore's own event
//! path adds on top of that.
//!
//! [`limit::Parser::Discore`]: crate::limit::Parser::Discore

use crate::{
    capture::{Session, open_session},
    decode::{Codec, text},
    emulator::Emulator,
    limit::parse_message_discore,
    stats::{self, Throughput},
};
use actix_codec::Decoder as _;
use actix_http::ws::Frame;
use anyhow::{Context as _, bail};
use std::{
    hint::black_box,
    time::{Duration, Instant},
};
use tokio::io::AsyncReadExt as _;

/// Room reserved before each read: what a busy discore connection reads.
const READ_SIZE: usize = 64 * 1024;

/// One flood of `events` through the socket loop.
pub async fn run_once(
    emulator: &mut Emulator,
    codec: Codec,
    events: u64,
    guilds: usize,
) -> anyhow::Result<Throughput> {
    let Session {
        socket,
        mut decoder,
        ..
    } = open_session(emulator, codec, guilds).await?;
    let parts = socket.into_parts();
    let (mut io, mut framing, mut buffer) = (parts.io, parts.codec, parts.read_buf);
    let deadline = Instant::now() + crate::harness::flood_deadline(events);
    let cpu = stats::cpu_time();
    let started = Instant::now();
    emulator.send(&format!("flood {events}"))?;
    let mut seen = 0;
    let mut content = 0;
    while seen < events {
        while let Some(frame) = framing.decode(&mut buffer)? {
            let bytes = match frame {
                Frame::Text(bytes) | Frame::Binary(bytes) => bytes,
                Frame::Close(reason) => bail!("the emulator closed the socket loop: {reason:?}"),
                _ => continue,
            };
            let json = text(decoder.decode(&bytes)?)?;
            content += parse_message_discore(json)?.context("a flood payload did not parse")?;
            seen += 1;
        }
        if seen >= events {
            break;
        }
        buffer.reserve(READ_SIZE);
        let remaining = deadline.saturating_duration_since(Instant::now());
        match actix_rt::time::timeout(remaining, io.read_buf(&mut buffer)).await {
            Ok(Ok(0)) => bail!("the emulator ended the socket loop's connection"),
            Ok(Ok(_)) => {}
            Ok(Err(error)) => return Err(error.into()),
            Err(_) => bail!("the socket loop did not receive the flood in time"),
        }
    }
    let elapsed = started.elapsed();
    let cpu = stats::cpu_time().saturating_sub(cpu);
    black_box(content);
    emulator
        .reply(Duration::from_secs(60))
        .await
        .context("flood report")?;
    drop(io);
    emulator.settle(0, Duration::from_secs(5)).await?;
    Ok(Throughput::client_only(events, elapsed, cpu))
}
