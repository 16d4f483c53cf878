//! Captures the emulator's flood on one connection exactly as it arrives:
//! the frames of the setup (Hello, READY, GUILD_CREATEs) and of the flood.
//! The tight-loop limit replays these bytes, so it inflates the same stream
//! and parses the same payloads as the clients.
//!
//! The capture client only reads frames (it neither inflates nor parses
//! during the flood), so its rate is the emulator's ceiling on this machine.

use crate::{
    decode::{Codec, StreamDecoder, text},
    emulator::{Emulator, TOKEN},
    stats,
};
use actix_codec::Framed;
use actix_http::ws::{self, Frame, Message, ProtocolError};
use anyhow::{Context as _, anyhow, bail};
use awc::BoxedSocket;
use bytes::Bytes;
use futures_util::{SinkExt as _, Stream, StreamExt as _};
use std::time::{Duration, Instant};

/// One captured connection.
#[derive(Debug)]
pub struct Capture {
    /// Its transport compression.
    pub codec: Codec,
    /// Frames before the flood.
    pub setup: Vec<Bytes>,
    /// One frame per MESSAGE_CREATE.
    pub flood: Vec<Bytes>,
    /// Frames per second the capture client received (no decoding).
    pub receive_rate: f64,
}

impl Capture {
    /// Wire bytes per flood frame, on average.
    pub fn mean_frame_len(&self) -> f64 {
        self.flood.iter().map(Bytes::len).sum::<usize>() as f64 / self.flood.len().max(1) as f64
    }

    /// The decoded flood payloads (one owned copy each).
    pub fn payloads(&self) -> anyhow::Result<Vec<String>> {
        let mut decoder = StreamDecoder::new(self.codec)?;
        for frame in &self.setup {
            decoder.decode(frame)?;
        }
        self.flood
            .iter()
            .map(|frame| Ok(text(decoder.decode(frame)?)?.to_owned()))
            .collect()
    }
}

/// The identify a plain client sends: guild messages with content.
pub fn identify_json() -> String {
    format!(
        r#"{{"op":2,"d":{{"token":"{TOKEN}","intents":{},"shard":[0,1],"properties":{{"os":"linux","browser":"discore-bench","device":"discore-bench"}}}}}}"#,
        crate::intents().bits()
    )
}

async fn next_frame<S>(socket: &mut S) -> anyhow::Result<Frame>
where
    S: Stream<Item = Result<Frame, ProtocolError>> + Unpin,
{
    match actix_rt::time::timeout(Duration::from_secs(30), socket.next()).await {
        Ok(Some(frame)) => Ok(frame?),
        Ok(None) => bail!("the emulator ended the connection"),
        Err(_) => bail!("no frame within 30 s"),
    }
}

/// A connection past its setup, ready for a flood.
pub struct Session {
    /// The WebSocket.
    pub socket: Framed<BoxedSocket, ws::Codec>,
    /// The stream's decoder, past the setup frames.
    pub decoder: StreamDecoder,
    /// The setup frames as received.
    pub setup: Vec<Bytes>,
}

/// Connects, identifies and waits for the `guilds` GUILD_CREATEs.
pub async fn open_session(
    emulator: &Emulator,
    codec: Codec,
    guilds: usize,
) -> anyhow::Result<Session> {
    // The gateway URL is bare (ws://host:port), as Discord's is.
    let mut url = format!("{}/?v=10&encoding=json", emulator.gateway_url());
    if let Some(compress) = codec.query() {
        url.push_str("&compress=");
        url.push_str(compress);
    }
    let (_, mut socket) = awc::Client::new()
        .ws(url)
        .max_frame_size(64 << 20)
        .connect()
        .await
        .map_err(|e| anyhow!("capture connection: {e}"))?;
    socket.send(Message::Text(identify_json().into())).await?;
    let mut decoder = StreamDecoder::new(codec)?;
    let mut setup = Vec::new();
    let mut guild_creates = 0;
    while guild_creates < guilds {
        let bytes = match next_frame(&mut socket).await? {
            Frame::Text(bytes) | Frame::Binary(bytes) => bytes,
            Frame::Close(reason) => bail!("the emulator closed the capture: {reason:?}"),
            _ => continue,
        };
        let payload = text(decoder.decode(&bytes)?)?;
        if payload.contains(r#""t":"GUILD_CREATE""#) {
            guild_creates += 1;
        }
        setup.push(bytes);
        if setup.len() > guilds + 100 {
            bail!("no {guilds} GUILD_CREATEs in the first frames");
        }
    }
    Ok(Session {
        socket,
        decoder,
        setup,
    })
}

/// Connects, identifies, waits for the `guilds` GUILD_CREATEs, floods
/// `events` MESSAGE_CREATEs and keeps every frame.
pub async fn capture(
    emulator: &mut Emulator,
    codec: Codec,
    events: u64,
    guilds: usize,
) -> anyhow::Result<Capture> {
    let Session {
        mut socket, setup, ..
    } = open_session(emulator, codec, guilds).await?;
    let started = Instant::now();
    emulator.send(&format!("flood {events}"))?;
    let mut flood = Vec::with_capacity(usize::try_from(events)?);
    while (flood.len() as u64) < events {
        match next_frame(&mut socket).await? {
            Frame::Text(bytes) | Frame::Binary(bytes) => flood.push(bytes),
            Frame::Close(reason) => bail!("the emulator closed the capture: {reason:?}"),
            _ => {}
        }
    }
    let receive_rate = stats::rate(events, started.elapsed());
    emulator
        .reply(Duration::from_secs(60))
        .await
        .context("flood report")?;
    let _ = socket.send(Message::Close(None)).await;
    drop(socket);
    emulator.settle(0, Duration::from_secs(5)).await?;
    let capture = Capture {
        codec,
        setup,
        flood,
        receive_rate,
    };
    // Every flood frame must be one whole MESSAGE_CREATE.
    for payload in capture.payloads()? {
        if !payload.contains(r#""t":"MESSAGE_CREATE""#) {
            bail!("a flood frame that is not one MESSAGE_CREATE");
        }
    }
    Ok(capture)
}
