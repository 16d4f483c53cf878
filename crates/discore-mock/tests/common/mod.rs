//! A plain awc WebSocket client for driving the emulator in tests, with
//! zlib-stream and zstd-stream inflation (one context per connection).

#![allow(dead_code, clippy::missing_panics_doc)]

pub mod raw;

use awc::{
    BoxedSocket,
    ws::{self, Codec, Frame, Message},
};
use discore_mock::{MockConfig, MockServer};
use flate2::{Decompress, FlushDecompress};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use std::time::Duration;

pub const TOKEN: &str = "mock-token";
/// Generous: a busy 2-core machine can be slow, and a passing test never
/// waits this long.
pub const TIMEOUT: Duration = Duration::from_secs(10);

/// The identify window of [`config`]: short, so a test may identify many
/// times, but enforced like any other. [`Client::ready`] keeps to it.
pub const IDENTIFY_WINDOW: Duration = Duration::from_millis(1);

/// A config for tests: slow heartbeats (tests that do not heartbeat are not
/// cut off), a 1 ms identify window (many identifies per test).
pub fn config() -> MockConfig {
    MockConfig::new()
        .heartbeat_interval(Duration::from_secs(30))
        .identify_window(IDENTIFY_WINDOW)
        .reconnect_close_after(Some(Duration::from_secs(5)))
}

/// The session id of a READY payload.
pub fn session_id(ready: &Value) -> String {
    ready["d"]["session_id"]
        .as_str()
        .expect("READY carries a session id")
        .to_owned()
}

/// The shard `[_, total]` a guild's events go to:
/// `(guild_id >> 22) % total`, as Discord documents it.
pub fn shard_of(guild_id: u64, total: u32) -> u32 {
    u32::try_from((guild_id >> 22) % u64::from(total)).expect("below total")
}

pub async fn start(config: MockConfig) -> MockServer {
    MockServer::start(config)
        .await
        .expect("the emulator starts")
}

enum Inflater {
    None,
    Zlib {
        context: Box<Decompress>,
        buffer: Vec<u8>,
    },
    Zstd(Box<zstd::stream::raw::Decoder<'static>>),
}

/// What the client read.
#[derive(Debug)]
pub enum Received {
    /// A gateway payload.
    Payload(Value),
    /// A close frame with its code.
    Close(Option<u16>),
    /// The TCP stream ended without a close frame.
    Ended,
    /// A frame that did not decode (bad compression, bad JSON).
    Undecodable(String),
}

pub struct Client {
    framed: actix_codec::Framed<BoxedSocket, Codec>,
    inflater: Inflater,
    /// The last dispatch sequence seen.
    pub seq: Option<u64>,
}

/// Connects to `base` (a gateway URL, bare like Discord's) with `query`
/// (e.g. `v=10&encoding=json`), as most libraries do: `{base}/?{query}`.
pub async fn connect(base: &str, query: &str) -> Client {
    try_connect(base, query).await.expect("websocket connects")
}

pub async fn try_connect(base: &str, query: &str) -> Result<Client, String> {
    let url = format!("{}/?{query}", base.trim_end_matches('/'));
    let client = awc::Client::builder()
        .max_http_version(awc::http::Version::HTTP_11)
        .timeout(TIMEOUT)
        .finish();
    let (_, framed) = client
        .ws(url)
        .max_frame_size(64 * 1024 * 1024)
        .connect()
        .await
        .map_err(|e| e.to_string())?;
    let inflater = if query.contains("compress=zlib-stream") {
        Inflater::Zlib {
            context: Box::new(Decompress::new(true)),
            buffer: Vec::new(),
        }
    } else if query.contains("compress=zstd-stream") {
        Inflater::Zstd(Box::new(
            zstd::stream::raw::Decoder::new().expect("zstd decoder"),
        ))
    } else {
        Inflater::None
    };
    Ok(Client {
        framed,
        inflater,
        seq: None,
    })
}

/// Connects with `v=10&encoding=json`.
pub async fn connect_json(base: &str) -> Client {
    connect(base, "v=10&encoding=json").await
}

pub fn identify(intents: u64, shard: Option<[u32; 2]>) -> Value {
    let mut d = json!({
        "token": TOKEN,
        "intents": intents,
        "properties": { "os": "linux", "browser": "test", "device": "test" },
    });
    if let Some(shard) = shard {
        d["shard"] = json!(shard);
    }
    json!({ "op": 2, "d": d })
}

pub fn resume(session_id: &str, seq: u64) -> Value {
    json!({ "op": 6, "d": { "token": TOKEN, "session_id": session_id, "seq": seq } })
}

impl Client {
    pub async fn send(&mut self, payload: &Value) {
        self.send_text(&payload.to_string()).await;
    }

    pub async fn send_text(&mut self, text: &str) {
        self.framed
            .send(Message::Text(text.to_owned().into()))
            .await
            .expect("frame sent");
    }

    /// Closes with `code` (no wait for the reply).
    pub async fn close(&mut self, code: u16) {
        let reason = ws::CloseReason {
            code: ws::CloseCode::from(code),
            description: None,
        };
        let _ = self.framed.send(Message::Close(Some(reason))).await;
    }

    /// Reads the next frame (payload, close, end), with a timeout.
    pub async fn recv(&mut self) -> Received {
        let deadline = tokio::time::Instant::now() + TIMEOUT;
        loop {
            let frame = tokio::time::timeout_at(deadline, self.framed.next())
                .await
                .expect("a frame within the timeout");
            match frame {
                None | Some(Err(_)) => return Received::Ended,
                Some(Ok(Frame::Close(reason))) => {
                    return Received::Close(reason.map(|r| u16::from(r.code)));
                }
                Some(Ok(Frame::Text(bytes))) => match serde_json::from_slice::<Value>(&bytes) {
                    Ok(value) => return self.payload(value),
                    Err(e) => return Received::Undecodable(e.to_string()),
                },
                Some(Ok(Frame::Binary(bytes))) => match self.inflate(&bytes) {
                    Ok(Some(text)) => match serde_json::from_slice::<Value>(&text) {
                        Ok(value) => return self.payload(value),
                        Err(e) => return Received::Undecodable(e.to_string()),
                    },
                    Ok(None) => {}
                    Err(e) => return Received::Undecodable(e),
                },
                Some(Ok(_)) => {}
            }
        }
    }

    fn payload(&mut self, value: Value) -> Received {
        if let Some(s) = value.get("s").and_then(Value::as_u64) {
            self.seq = Some(s);
        }
        Received::Payload(value)
    }

    fn inflate(&mut self, bytes: &[u8]) -> Result<Option<Vec<u8>>, String> {
        match &mut self.inflater {
            Inflater::None => Err("binary frame on an uncompressed connection".to_owned()),
            Inflater::Zlib { context, buffer } => {
                buffer.extend_from_slice(bytes);
                if !buffer.ends_with(&[0, 0, 0xFF, 0xFF]) {
                    return Ok(None);
                }
                let mut out = Vec::with_capacity(buffer.len() * 8 + 1024);
                let mut input = &buffer[..];
                for _ in 0..100_000 {
                    let before = context.total_in();
                    context
                        .decompress_vec(input, &mut out, FlushDecompress::Sync)
                        .map_err(|e| e.to_string())?;
                    let used = usize::try_from(context.total_in() - before).expect("fits");
                    input = &input[used..];
                    if input.is_empty() && out.len() < out.capacity() {
                        break;
                    }
                    out.reserve(out.capacity().max(4096));
                }
                buffer.clear();
                Ok(Some(out))
            }
            Inflater::Zstd(decoder) => {
                use zstd::stream::raw::{InBuffer, Operation, OutBuffer};
                let mut input = InBuffer::around(bytes);
                let mut out = Vec::new();
                let mut chunk = vec![0; 256 * 1024];
                for _ in 0..100_000 {
                    let mut output = OutBuffer::around(&mut chunk[..]);
                    decoder
                        .run(&mut input, &mut output)
                        .map_err(|e| e.to_string())?;
                    let n = output.pos();
                    out.extend_from_slice(&chunk[..n]);
                    if input.pos() >= bytes.len() && n < chunk.len() {
                        break;
                    }
                }
                Ok(Some(out))
            }
        }
    }

    /// The next payload; panics on a close or the end.
    pub async fn payload_next(&mut self) -> Value {
        match self.recv().await {
            Received::Payload(value) => value,
            other => panic!("expected a payload, got {other:?}"),
        }
    }

    /// Reads Hello and returns its interval.
    pub async fn hello(&mut self) -> u64 {
        let hello = self.payload_next().await;
        assert_eq!(hello["op"], 10, "{hello}");
        hello["d"]["heartbeat_interval"].as_u64().expect("interval")
    }

    /// Skips payloads until the close frame; returns its code.
    pub async fn close_code(&mut self) -> Option<u16> {
        for _ in 0..100_000 {
            match self.recv().await {
                Received::Payload(_) | Received::Undecodable(_) => {}
                Received::Close(code) => return code,
                Received::Ended => panic!("the connection ended without a close frame"),
            }
        }
        panic!("no close frame")
    }

    /// Skips payloads until one with opcode `op`.
    pub async fn until_op(&mut self, op: u64) -> Value {
        for _ in 0..100_000 {
            let payload = self.payload_next().await;
            if payload["op"] == op {
                return payload;
            }
        }
        panic!("no op {op}")
    }

    /// Skips payloads until the dispatch `name`.
    pub async fn until_event(&mut self, name: &str) -> Value {
        for _ in 0..100_000 {
            let payload = self.payload_next().await;
            if payload["t"] == name {
                return payload;
            }
        }
        panic!("no {name}")
    }

    /// Sends Identify as a well-behaved client does: after the identify
    /// window, since another Identify of the same bucket may have come
    /// moments ago and the emulator enforces the window (on a quiet machine
    /// two Identifies can be well under 1 ms apart).
    pub async fn identify_in_turn(&mut self, intents: u64, shard: Option<[u32; 2]>) {
        actix_rt::time::sleep(IDENTIFY_WINDOW * 2).await;
        self.send(&identify(intents, shard)).await;
    }

    /// Hello, Identify, READY: returns READY's payload.
    pub async fn ready(&mut self, intents: u64, shard: Option<[u32; 2]>) -> Value {
        self.hello().await;
        self.identify_in_turn(intents, shard).await;
        let ready = self.payload_next().await;
        assert_eq!(ready["t"], "READY", "{ready}");
        ready
    }

    /// Reads `n` dispatches (skipping other opcodes).
    pub async fn dispatches(&mut self, n: usize) -> Vec<Value> {
        let mut out = Vec::new();
        while out.len() < n {
            let payload = self.payload_next().await;
            if payload["op"] == 0 {
                out.push(payload);
            }
        }
        out
    }
}

/// GUILDS | GUILD_MESSAGES | MESSAGE_CONTENT | GUILD_MEMBERS | GUILD_PRESENCES
/// | GUILD_VOICE_STATES | reactions | typing.
pub const ALL_USEFUL: u64 = 1 | 2 | 128 | 256 | 512 | 1024 | 2048 | 32768;
