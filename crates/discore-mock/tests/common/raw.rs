//! A raw WebSocket client on a plain TCP stream: the handshake by hand and
//! frames exactly as they arrive (FIN bit, opcode, payload), with the read
//! and write halves apart so a test can stop reading while it keeps writing.

use flate2::{Decompress, FlushDecompress};
use serde_json::Value;
use std::time::Duration;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{
        TcpStream,
        tcp::{OwnedReadHalf, OwnedWriteHalf},
    },
};

/// One frame as it came off the wire.
#[derive(Clone, Debug)]
pub struct RawFrame {
    pub fin: bool,
    pub opcode: u8,
    pub payload: Vec<u8>,
}

/// The read half: frames one at a time.
pub struct RawReader {
    read: OwnedReadHalf,
    buf: Vec<u8>,
    /// The zlib-stream context, when the connection asked for it.
    zlib: Option<Box<Decompress>>,
}

/// The write half: masked client frames.
pub struct RawWriter {
    write: OwnedWriteHalf,
    mask: u32,
}

/// Connects to `base` (`ws://127.0.0.1:PORT/...`) with `query` and performs
/// the upgrade; `receive_buffer` shrinks the socket's receive buffer (set
/// before connecting, so the advertised window is small too).
pub async fn connect(
    base: &str,
    query: &str,
    receive_buffer: Option<u32>,
) -> (RawReader, RawWriter) {
    let rest = base.strip_prefix("ws://").expect("a ws:// URL");
    let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
    let addr: std::net::SocketAddr = host.parse().expect("an address");
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    if let Some(size) = receive_buffer {
        socket.set_recv_buffer_size(size).expect("receive buffer");
    }
    let stream: TcpStream = tokio::time::timeout(super::TIMEOUT, socket.connect(addr))
        .await
        .expect("connects in time")
        .expect("connects");
    stream.set_nodelay(true).expect("nodelay");
    let (read, mut write) = stream.into_split();
    let request = format!(
        "GET /{path}?{query} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\n\
         Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
         Sec-WebSocket-Version: 13\r\n\r\n"
    );
    write
        .write_all(request.as_bytes())
        .await
        .expect("request sent");
    let mut reader = RawReader {
        read,
        buf: Vec::new(),
        zlib: query
            .contains("compress=zlib-stream")
            .then(|| Box::new(Decompress::new(true))),
    };
    let head_end = loop {
        if let Some(end) = reader.buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break end + 4;
        }
        assert!(
            reader.fill().await,
            "the connection ended during the handshake"
        );
    };
    let head = String::from_utf8_lossy(&reader.buf[..head_end]).into_owned();
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    reader.buf.drain(..head_end);
    (
        reader,
        RawWriter {
            write,
            mask: 0x1234_5678,
        },
    )
}

impl RawReader {
    /// Reads more bytes; `false` at the end of the stream.
    async fn fill(&mut self) -> bool {
        self.buf.reserve(64 * 1024);
        let read = tokio::time::timeout(super::TIMEOUT, self.read.read_buf(&mut self.buf))
            .await
            .expect("bytes within the timeout");
        match read {
            Ok(n) => n > 0,
            Err(e) => {
                eprintln!("raw client: read failed: {e}");
                false
            }
        }
    }

    /// The next frame, or `None` when the stream ends.
    pub async fn frame(&mut self) -> Option<RawFrame> {
        loop {
            if let Some((frame, used)) = parse(&self.buf) {
                self.buf.drain(..used);
                return Some(frame);
            }
            if !self.fill().await {
                return None;
            }
        }
    }

    /// The frames of the next message, checked for RFC 6455 order (a text
    /// or binary frame, then continuations, FIN on the last); control
    /// frames other than close are skipped, a close is returned alone.
    pub async fn message_frames(&mut self) -> Option<Vec<RawFrame>> {
        let mut frames: Vec<RawFrame> = Vec::new();
        loop {
            let frame = self.frame().await?;
            if frame.opcode == 0x8 {
                assert!(frames.is_empty(), "a close inside a fragmented message");
                return Some(vec![frame]);
            }
            if frame.opcode >= 0x8 {
                assert!(frame.fin, "control frames are never fragmented");
                continue;
            }
            match (frames.is_empty(), frame.opcode) {
                (true, 0x1 | 0x2) | (false, 0x0) => {}
                (first, opcode) => panic!("frame out of order: opcode {opcode}, first {first}"),
            }
            let fin = frame.fin;
            frames.push(frame);
            if fin {
                return Some(frames);
            }
        }
    }

    /// The next whole message (continuations joined), skipping control
    /// frames other than close: its opcode, its data and how many frames
    /// carried it.
    pub async fn message(&mut self) -> Option<(u8, Vec<u8>, usize)> {
        let frames = self.message_frames().await?;
        let opcode = frames[0].opcode;
        let count = frames.len();
        let data = frames.into_iter().flat_map(|f| f.payload).collect();
        Some((opcode, data, count))
    }

    /// The next gateway payload: a text message, or a binary one inflated
    /// with the connection's zlib context.
    pub async fn json(&mut self) -> Value {
        self.try_json().await.expect("a message")
    }

    /// [`json`](Self::json), or `None` when the stream ended.
    pub async fn try_json(&mut self) -> Option<Value> {
        let (opcode, data, _) = self.message().await?;
        Some(self.decode(opcode, data))
    }

    /// Decodes a message's data: text as it is, binary through the
    /// connection's zlib context.
    pub fn decode(&mut self, opcode: u8, data: Vec<u8>) -> Value {
        let text = match (opcode, self.zlib.as_mut()) {
            (0x1, None) => data,
            (0x2, Some(zlib)) => inflate(zlib, &data),
            _ => panic!(
                "unexpected message (opcode {opcode}): {}",
                String::from_utf8_lossy(&data)
            ),
        };
        serde_json::from_slice(&text).expect("JSON")
    }
}

/// Inflates one zlib-stream message (it ends with a sync flush).
pub fn inflate(zlib: &mut Decompress, data: &[u8]) -> Vec<u8> {
    assert!(
        data.ends_with(&[0, 0, 0xFF, 0xFF]),
        "a sync-flushed message"
    );
    let mut out = Vec::with_capacity(data.len() * 4 + 1024);
    let mut input = data;
    for _ in 0..100_000 {
        let before = zlib.total_in();
        zlib.decompress_vec(input, &mut out, FlushDecompress::Sync)
            .expect("inflates");
        let used = usize::try_from(zlib.total_in() - before).expect("fits");
        input = &input[used..];
        if input.is_empty() && out.len() < out.capacity() {
            return out;
        }
        out.reserve(out.capacity().max(4096));
    }
    panic!("inflate made no progress")
}

/// One frame from the front of `buf` and the bytes it took.
fn parse(buf: &[u8]) -> Option<(RawFrame, usize)> {
    if buf.len() < 2 {
        return None;
    }
    let fin = buf[0] & 0x80 != 0;
    let opcode = buf[0] & 0x0F;
    assert_eq!(buf[1] & 0x80, 0, "server frames are not masked");
    let (len, start) = match buf[1] & 0x7F {
        126 if buf.len() >= 4 => (usize::from(u16::from_be_bytes([buf[2], buf[3]])), 4),
        127 if buf.len() >= 10 => {
            let mut bytes = [0; 8];
            bytes.copy_from_slice(&buf[2..10]);
            (
                usize::try_from(u64::from_be_bytes(bytes)).expect("fits"),
                10,
            )
        }
        126 | 127 => return None,
        n => (usize::from(n), 2),
    };
    if buf.len() < start + len {
        return None;
    }
    let frame = RawFrame {
        fin,
        opcode,
        payload: buf[start..start + len].to_vec(),
    };
    Some((frame, start + len))
}

impl RawWriter {
    /// Sends one masked text frame.
    pub async fn text(&mut self, text: &str) {
        let data = text.as_bytes();
        let mut frame = vec![0x81];
        match data.len() {
            n if n < 126 => frame.push(0x80 | n as u8),
            n => {
                frame.push(0x80 | 126);
                frame.extend_from_slice(&u16::try_from(n).expect("small").to_be_bytes());
            }
        }
        self.mask = self.mask.rotate_left(7) ^ 0x9E37_79B9;
        let mask = self.mask.to_be_bytes();
        frame.extend_from_slice(&mask);
        frame.extend(data.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        tokio::time::timeout(Duration::from_secs(10), self.write.write_all(&frame))
            .await
            .expect("written in time")
            .expect("written");
    }

    /// Sends a JSON payload.
    pub async fn send(&mut self, payload: &Value) {
        self.text(&payload.to_string()).await;
    }
}
