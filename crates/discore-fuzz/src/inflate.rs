//! One connection's decompressor fed a sequence of WebSocket messages, as
//! the shard's reader does it: every complete payload goes on to
//! [`envelope()`](crate::envelope()), the first error ends the connection, and
//! the output buffer is recycled after each message.
//!
//! Input layout (see [`frames`]): one settings byte, then messages, each
//! with a two-byte little-endian length.
//!
//! - settings bits 0–1: the inbound maximum, one of [`MAXIMA`];
//! - bit 2 clear: the messages are compressed bytes, fed as they are (any
//!   garbage: nothing may panic, no payload may pass the maximum);
//! - bit 2 set: the messages are payloads, compressed here with the real
//!   compressor (level from bits 3–6) the way the gateway sends them, one
//!   sync-flushed (zlib) or flushed (zstd) block each, and must come out
//!   exactly. The first byte of each such message says where to split its
//!   compressed bytes into two WebSocket messages (zlib-stream only: the
//!   inflater must wait for the suffix); 0 means no split;
//! - bit 7 set: two connections on the thread take the messages in turn,
//!   as on an arbiter running many shards (they share the thread's spare
//!   output buffer through `Inflater::recycle`).

use crate::input::{Input, Output};
use discore_gateway::inflate::{Compression, InflateError, Inflater};
use std::io::Write as _;

/// The inbound maxima the settings byte chooses from (100,000 is not a
/// power of two: buffer growth must not overshoot it).
pub const MAXIMA: [usize; 4] = [256, 4096, 100_000, 1 << 20];

/// Messages read from one input at most.
const MAX_MESSAGES: usize = 64;

/// The end of every complete zlib-stream message.
const ZLIB_SUFFIX: [u8; 4] = [0x00, 0x00, 0xff, 0xff];

/// Fuzz body: a `compress=zlib-stream` connection.
pub fn zlib_stream(data: &[u8]) {
    run(Compression::ZlibStream, data);
}

/// Fuzz body: a `compress=zstd-stream` connection.
pub fn zstd_stream(data: &[u8]) {
    run(Compression::ZstdStream, data);
}

/// Builds an input in the layout the two inflater targets read: the
/// settings byte, then each message with its length.
pub fn frames<'a>(settings: u8, messages: impl IntoIterator<Item = &'a [u8]>) -> Vec<u8> {
    messages
        .into_iter()
        .fold(Output::new().u8(settings), Output::chunk)
        .finish()
}

fn run(kind: Compression, data: &[u8]) {
    let mut input = Input::new(data);
    let settings = input.u8();
    let max = MAXIMA[usize::from(settings & 3)];
    let mut messages = Vec::new();
    while !input.is_empty() && messages.len() < MAX_MESSAGES {
        messages.push(input.chunk());
    }
    let connections = if settings & 0x80 == 0 { 1 } else { 2 };
    if settings & 4 == 0 {
        compressed(kind, max, connections, &messages);
    } else {
        let level = u32::from((settings >> 3) & 0x0f);
        round_trip(kind, max, level, connections, &messages);
    }
}

/// Arbitrary bytes as they come off the socket.
fn compressed(kind: Compression, max: usize, connections: usize, messages: &[&[u8]]) {
    let mut open: Vec<Option<Inflater>> = (0..connections)
        .map(|_| Some(Inflater::new(kind, max).expect("a decompression context")))
        .collect();
    for (index, message) in messages.iter().enumerate() {
        let slot = &mut open[index % connections];
        let Some(inflater) = slot else {
            continue;
        };
        let failed = match inflater.push(message) {
            Ok(Some(payload)) => {
                assert!(payload.len() <= max, "{} bytes over {max}", payload.len());
                crate::envelope(payload);
                false
            }
            Ok(None) => {
                assert_eq!(kind, Compression::ZlibStream, "only zlib-stream buffers");
                false
            }
            Err(error) => {
                assert!(!error.to_string().is_empty());
                true
            }
        };
        inflater.recycle();
        if failed {
            // The context is out of step: the shard drops the connection.
            *slot = None;
        }
    }
}

/// One connection of [`round_trip`]: the server's compressor and the
/// client's inflater.
struct Connection {
    inflater: Inflater,
    zlib: flate2::write::ZlibEncoder<Vec<u8>>,
    zstd: Option<zstd::stream::write::Encoder<'static, Vec<u8>>>,
}

impl Connection {
    fn new(kind: Compression, max: usize, level: u32) -> Self {
        let zstd = (kind == Compression::ZstdStream).then(|| {
            zstd::stream::write::Encoder::new(Vec::new(), i32::try_from(level % 4).unwrap_or(1))
                .expect("a zstd compressor")
        });
        Self {
            inflater: Inflater::new(kind, max).expect("a decompression context"),
            zlib: flate2::write::ZlibEncoder::new(
                Vec::new(),
                flate2::Compression::new(level.min(9)),
            ),
            zstd,
        }
    }

    /// The payload as the gateway sends it on this connection.
    fn compress(&mut self, payload: &[u8]) -> Vec<u8> {
        match &mut self.zstd {
            Some(encoder) => {
                encoder.write_all(payload).expect("compresses");
                encoder.flush().expect("flushes");
                std::mem::take(encoder.get_mut())
            }
            None => {
                self.zlib.write_all(payload).expect("compresses");
                self.zlib.flush().expect("flushes");
                std::mem::take(self.zlib.get_mut())
            }
        }
    }
}

/// Payloads compressed as the gateway does: every one must come back.
fn round_trip(kind: Compression, max: usize, level: u32, connections: usize, messages: &[&[u8]]) {
    let mut open: Vec<Option<Connection>> = (0..connections)
        .map(|_| Some(Connection::new(kind, max, level)))
        .collect();
    for (index, message) in messages.iter().enumerate() {
        let slot = &mut open[index % connections];
        let Some(connection) = slot else {
            continue;
        };
        let Some((&split, payload)) = message.split_first() else {
            continue;
        };
        if payload.is_empty() {
            // The gateway never sends an empty payload.
            continue;
        }
        let compressed = connection.compress(payload);
        if !deliver(
            &mut connection.inflater,
            kind,
            max,
            split,
            payload,
            &compressed,
        ) {
            *slot = None;
        }
    }
}

/// Feeds one compressed payload, split in two if `split` says so; `false`
/// when the connection ends (a payload over the maximum).
fn deliver(
    inflater: &mut Inflater,
    kind: Compression,
    max: usize,
    split: u8,
    payload: &[u8],
    compressed: &[u8],
) -> bool {
    let mut parts = vec![compressed];
    let at = compressed.len() * usize::from(split) / 256;
    if kind == Compression::ZlibStream
        && split != 0
        && (1..compressed.len()).contains(&at)
        && !compressed[..at].ends_with(&ZLIB_SUFFIX)
    {
        parts = vec![&compressed[..at], &compressed[at..]];
    }
    let (last, first) = parts.split_last().expect("one part at least");
    for part in first {
        let result = inflater.push(part).map(|o| o.map(<[u8]>::len));
        inflater.recycle();
        match result {
            Ok(None) => {}
            Err(InflateError::TooLarge { .. }) if compressed.len() > max => return false,
            other => panic!("a message without its suffix must wait: {other:?}"),
        }
    }
    let kept = match inflater.push(last) {
        Ok(Some(inflated)) => {
            assert!(
                payload.len() <= max,
                "{} bytes passed the maximum {max}",
                payload.len()
            );
            assert!(inflated == payload, "the payload changed in transit");
            crate::envelope(inflated);
            true
        }
        Err(InflateError::TooLarge { .. }) => {
            let input_too_large = kind == Compression::ZlibStream && compressed.len() > max;
            assert!(
                payload.len() > max || input_too_large,
                "a {}-byte payload refused under the maximum {max}",
                payload.len()
            );
            false
        }
        other => panic!(
            "a valid stream failed: {:?}",
            other.map(|o| o.map(<[u8]>::len))
        ),
    };
    inflater.recycle();
    kept
}

#[cfg(test)]
mod tests {
    use super::{frames, zlib_stream, zstd_stream};

    #[test]
    fn round_trips_and_garbage() {
        let hello = b"\x00{\"op\":10,\"d\":{\"heartbeat_interval\":41250}}";
        let split = b"\x80{\"op\":0,\"s\":1,\"t\":\"X\",\"d\":\"aaaaaaaaaaaaaaaaaaaaaaaa\"}";
        let big = [b'0'; 5000];
        for settings in [4 | 1, 4 | 2 | (6 << 3), 4, 0x80 | 4 | 1, 0x80 | 4 | 3] {
            let input = frames(settings, [&hello[..], &split[..], &big[..]]);
            zlib_stream(&input);
            zstd_stream(&input);
        }
        let garbage = frames(
            1,
            [&b"\x78\x9c\x00\x00\xff\xff"[..], b"\x28\xb5\x2f\xfd", b""],
        );
        zlib_stream(&garbage);
        zstd_stream(&garbage);
        let both = frames(
            0x80 | 3,
            [&b"\x78\x9c\x00\x00\xff\xff"[..], b"\x28\xb5\x2f\xfd"],
        );
        zlib_stream(&both);
        zstd_stream(&both);
        zlib_stream(&[]);
        zstd_stream(&[4]);
    }
}
