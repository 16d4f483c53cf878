//! Server-side WebSocket frames and transport compression (`docs/protocol.md`,
//! "Transport compression").
//!
//! Frames are written straight into a byte buffer: a gateway message is
//! given as a list of slices (envelope pieces around pre-encoded data), so a
//! dispatch is never assembled twice. One compressor lives per connection.
//! A message larger than the configured frame payload goes out fragmented
//! (RFC 6455 §5.4): its opcode on the first frame, continuation frames
//! after it, FIN on the last one only.
//!
//! Compressors are reused: a connection that ends gives its compressor,
//! reset, back to a small per-thread pool, and the next connection on that
//! thread takes it. A zlib or zstd compressor is a few hundred KiB in
//! blocks above glibc's mmap threshold; creating and freeing one per
//! connection made glibc raise that threshold and then keep the freed
//! blocks, and a long chaos soak (42,000 connections in 10 minutes) grew
//! the emulator by about 16 KB per connection until the pool came.

use crate::observe::Compression;
use bytes::{BufMut, BytesMut};
use flate2::{Compress, FlushCompress};
use std::{cell::RefCell, io};
use zstd::stream::raw::{InBuffer, Operation, OutBuffer};

const OP_CONTINUATION: u8 = 0x0;
const OP_TEXT: u8 = 0x1;
const OP_BINARY: u8 = 0x2;
const OP_CLOSE: u8 = 0x8;
const OP_PONG: u8 = 0xA;

/// zlib level 1 and zstd level 1: fast, so the emulator is never the
/// bottleneck of a benchmark.
const ZLIB_LEVEL: u32 = 1;
const ZSTD_LEVEL: i32 = 1;

/// Compression failed (a bug or memory exhaustion, never client input).
#[derive(Debug, thiserror::Error)]
#[error("transport compression failed: {0}")]
pub(crate) struct EncodeError(String);

/// The header of an unfragmented frame (FIN set).
fn header(out: &mut BytesMut, opcode: u8, len: usize) {
    frame_header(out, true, opcode, len);
}

fn frame_header(out: &mut BytesMut, fin: bool, opcode: u8, len: usize) {
    out.reserve(len + 10);
    out.put_u8(if fin { 0x80 } else { 0 } | opcode);
    if len < 126 {
        out.put_u8(len as u8);
    } else if let Ok(len) = u16::try_from(len) {
        out.put_u8(126);
        out.put_u16(len);
    } else {
        out.put_u8(127);
        out.put_u64(len as u64);
    }
}

enum Codec {
    Plain,
    Zlib(Box<Compress>),
    Zstd(Box<ZstdEncoder>),
}

type ZstdEncoder = zstd::stream::raw::Encoder<'static>;

/// Idle compressors kept per thread, of each kind: about as many as
/// connections end at once on one worker, so a burst of reconnections
/// reuses them, and an idle emulator holds a bounded few.
const POOLED_PER_THREAD: usize = 8;

thread_local! {
    static ZLIB_POOL: RefCell<Vec<Compress>> = const { RefCell::new(Vec::new()) };
    static ZSTD_POOL: RefCell<Vec<ZstdEncoder>> = const { RefCell::new(Vec::new()) };
}

impl Codec {
    /// A compressor at the start of a new stream: a pooled one, or a new one.
    fn take(compression: Compression) -> io::Result<Self> {
        Ok(match compression {
            Compression::None => Self::Plain,
            Compression::ZlibStream => Self::Zlib(Box::new(
                ZLIB_POOL
                    .try_with(|pool| pool.borrow_mut().pop())
                    .ok()
                    .flatten()
                    .unwrap_or_else(|| Compress::new(flate2::Compression::new(ZLIB_LEVEL), true)),
            )),
            Compression::ZstdStream => {
                let pooled = ZSTD_POOL
                    .try_with(|pool| pool.borrow_mut().pop())
                    .ok()
                    .flatten();
                match pooled {
                    Some(encoder) => Self::Zstd(Box::new(encoder)),
                    None => Self::Zstd(Box::new(ZstdEncoder::new(ZSTD_LEVEL)?)),
                }
            }
        })
    }

    /// Resets the compressor and keeps it for the next connection on this
    /// thread, unless the pool is full (or the thread is ending).
    fn give_back(self) {
        match self {
            Self::Plain => {}
            Self::Zlib(mut compress) => {
                compress.reset();
                let _ = ZLIB_POOL.try_with(|pool| {
                    let mut pool = pool.borrow_mut();
                    if pool.len() < POOLED_PER_THREAD {
                        pool.push(*compress);
                    }
                });
            }
            Self::Zstd(mut encoder) => {
                // A compressor that cannot start a new stream is dropped.
                if encoder.reinit().is_ok() {
                    let _ = ZSTD_POOL.try_with(|pool| {
                        let mut pool = pool.borrow_mut();
                        if pool.len() < POOLED_PER_THREAD {
                            pool.push(*encoder);
                        }
                    });
                }
            }
        }
    }
}

/// Writes one message, the concatenation of `parts`, as one frame, or as
/// frames of at most `max_payload` bytes when it is larger.
fn data_frames(out: &mut BytesMut, opcode: u8, parts: &[&[u8]], max_payload: usize) {
    let len: usize = parts.iter().map(|p| p.len()).sum();
    if len <= max_payload {
        header(out, opcode, len);
        for part in parts {
            out.extend_from_slice(part);
        }
        return;
    }
    let frames = len.div_ceil(max_payload);
    out.reserve(len + frames * 10);
    let mut remaining = len;
    let mut parts = parts.iter().copied().filter(|p| !p.is_empty());
    let mut current: &[u8] = &[];
    let mut opcode = opcode;
    while remaining > 0 {
        let size = remaining.min(max_payload);
        remaining -= size;
        frame_header(out, remaining == 0, opcode, size);
        opcode = OP_CONTINUATION;
        let mut left = size;
        while left > 0 {
            if current.is_empty() {
                match parts.next() {
                    Some(part) => current = part,
                    // Unreachable: the parts hold `len` bytes.
                    None => return,
                }
            }
            let take = left.min(current.len());
            out.extend_from_slice(&current[..take]);
            current = &current[take..];
            left -= take;
        }
    }
}

/// Encodes gateway messages into WebSocket frames for one connection.
pub(crate) struct Encoder {
    codec: Codec,
    scratch: Vec<u8>,
    zstd_out: Vec<u8>,
    max_frame_payload: usize,
}

impl Encoder {
    /// An encoder for `compression` whose frames carry at most
    /// `max_frame_payload` bytes (`usize::MAX`: one frame per message).
    pub(crate) fn new(compression: Compression, max_frame_payload: usize) -> io::Result<Self> {
        let codec = Codec::take(compression)?;
        // Only zstd needs an output window; idle plain connections stay small.
        let zstd_out = if matches!(codec, Codec::Zstd(_)) {
            vec![0; 64 * 1024]
        } else {
            Vec::new()
        };
        Ok(Self {
            codec,
            scratch: Vec::new(),
            zstd_out,
            max_frame_payload: max_frame_payload.max(1),
        })
    }

    /// Writes one gateway message, the concatenation of `parts`: one frame,
    /// or a fragmented message when it is larger than the frame limit.
    pub(crate) fn message(
        &mut self,
        parts: &[&[u8]],
        out: &mut BytesMut,
    ) -> Result<(), EncodeError> {
        match &mut self.codec {
            Codec::Plain => data_frames(out, OP_TEXT, parts, self.max_frame_payload),
            Codec::Zlib(compress) => {
                self.scratch.clear();
                for part in parts {
                    deflate(compress, part, &mut self.scratch, false)?;
                }
                deflate(compress, &[], &mut self.scratch, true)?;
                data_frames(out, OP_BINARY, &[&self.scratch], self.max_frame_payload);
            }
            Codec::Zstd(encoder) => {
                self.scratch.clear();
                for part in parts {
                    let mut input = InBuffer::around(part);
                    for _ in 0..100_000 {
                        if input.pos() >= part.len() {
                            break;
                        }
                        let mut output = OutBuffer::around(&mut self.zstd_out[..]);
                        encoder
                            .run(&mut input, &mut output)
                            .map_err(|e| EncodeError(e.to_string()))?;
                        let written = output.pos();
                        self.scratch.extend_from_slice(&self.zstd_out[..written]);
                    }
                }
                for _ in 0..100_000 {
                    let mut output = OutBuffer::around(&mut self.zstd_out[..]);
                    let remaining = encoder
                        .flush(&mut output)
                        .map_err(|e| EncodeError(e.to_string()))?;
                    let written = output.pos();
                    self.scratch.extend_from_slice(&self.zstd_out[..written]);
                    if remaining == 0 {
                        break;
                    }
                }
                data_frames(out, OP_BINARY, &[&self.scratch], self.max_frame_payload);
            }
        }
        Ok(())
    }

    /// Writes bytes no decompressor (and no JSON parser) accepts.
    pub(crate) fn garbage(&self, out: &mut BytesMut) {
        // 0xFF starts a deflate block of the reserved type 3, a zstd block of
        // the reserved type 3, and is not valid UTF-8 either.
        let mut bytes = vec![0xFF; 16];
        if matches!(self.codec, Codec::Zlib(_)) {
            bytes.extend_from_slice(&[0x00, 0x00, 0xFF, 0xFF]);
        }
        header(out, OP_BINARY, bytes.len());
        out.extend_from_slice(&bytes);
    }
}

impl Drop for Encoder {
    fn drop(&mut self) {
        std::mem::replace(&mut self.codec, Codec::Plain).give_back();
    }
}

fn deflate(
    compress: &mut Compress,
    mut input: &[u8],
    out: &mut Vec<u8>,
    sync: bool,
) -> Result<(), EncodeError> {
    let flush = if sync {
        FlushCompress::Sync
    } else {
        FlushCompress::None
    };
    for _ in 0..100_000 {
        if out.capacity() - out.len() < 64 {
            out.reserve(input.len().max(4096));
        }
        let before = compress.total_in();
        compress
            .compress_vec(input, out, flush)
            .map_err(|e| EncodeError(e.to_string()))?;
        let consumed = usize::try_from(compress.total_in() - before).unwrap_or(input.len());
        input = &input[consumed.min(input.len())..];
        // Done when the input is consumed and, for a flush, the output had
        // room left (so the flush marker is out).
        if input.is_empty() && (!sync || out.len() < out.capacity()) {
            return Ok(());
        }
    }
    Err(EncodeError("deflate made no progress".to_owned()))
}

/// A close frame: code then a reason of at most 123 bytes.
pub(crate) fn close_frame(code: u16, reason: &str, out: &mut BytesMut) {
    let mut end = reason.len().min(123);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    header(out, OP_CLOSE, 2 + end);
    out.put_u16(code);
    out.extend_from_slice(&reason.as_bytes()[..end]);
}

/// A pong answering a ping.
pub(crate) fn pong_frame(payload: &[u8], out: &mut BytesMut) {
    let payload = &payload[..payload.len().min(125)];
    header(out, OP_PONG, payload.len());
    out.extend_from_slice(payload);
}

/// Appends the decimal digits of `n` (no allocation).
pub(crate) fn write_u64(n: u64, buf: &mut [u8; 20]) -> &[u8] {
    let mut i = buf.len();
    let mut n = n;
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    &buf[i..]
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::{Decompress, FlushDecompress};

    fn payload(frame: &[u8]) -> &[u8] {
        match frame[1] {
            126 => &frame[4..],
            127 => &frame[10..],
            _ => &frame[2..],
        }
    }

    #[test]
    fn plain_frames_carry_the_parts() {
        let mut encoder = Encoder::new(Compression::None, usize::MAX).expect("encoder");
        let mut out = BytesMut::new();
        encoder
            .message(&[b"{\"op\":", b"11}"], &mut out)
            .expect("encode");
        assert_eq!(&out[..], b"\x81\x09{\"op\":11}");
        let big = vec![b'x'; 70_000];
        let mut out = BytesMut::new();
        encoder.message(&[&big], &mut out).expect("encode");
        assert_eq!(out[1], 127);
        assert_eq!(payload(&out).len(), 70_000);
    }

    #[test]
    fn zlib_messages_end_with_sync_marker_and_inflate_with_one_context() {
        let mut encoder = Encoder::new(Compression::ZlibStream, usize::MAX).expect("encoder");
        let mut inflate = Decompress::new(true);
        for i in 0..50 {
            let text = format!("{{\"op\":0,\"s\":{i},\"d\":\"{}\"}}", "abc".repeat(i * 100));
            let mut out = BytesMut::new();
            encoder
                .message(&[text.as_bytes()], &mut out)
                .expect("encode");
            let data = payload(&out);
            assert!(data.ends_with(&[0, 0, 0xFF, 0xFF]), "message {i}");
            let mut plain = Vec::with_capacity(text.len() + 64);
            inflate
                .decompress_vec(data, &mut plain, FlushDecompress::Sync)
                .expect("inflate");
            assert_eq!(plain, text.as_bytes());
        }
    }

    #[test]
    fn zstd_messages_decode_with_one_context() {
        let mut encoder = Encoder::new(Compression::ZstdStream, usize::MAX).expect("encoder");
        let mut decoder = zstd::stream::raw::Decoder::new().expect("decoder");
        for i in 0..20 {
            let text = format!("{{\"op\":0,\"s\":{i},\"d\":\"{}\"}}", "xyz".repeat(i * 500));
            let mut out = BytesMut::new();
            encoder
                .message(&[text.as_bytes()], &mut out)
                .expect("encode");
            let data = payload(&out);
            let mut input = InBuffer::around(data);
            let mut plain = vec![0; text.len() + 1024];
            let mut output = OutBuffer::around(&mut plain[..]);
            while input.pos() < data.len() {
                decoder.run(&mut input, &mut output).expect("decode");
            }
            let n = output.pos();
            assert_eq!(&plain[..n], text.as_bytes());
        }
    }

    /// A compressor a finished connection gave back starts a new stream: the
    /// next connection's frames are byte for byte those of a new one, for
    /// zlib (header included) and zstd alike.
    #[test]
    fn a_reused_compressor_starts_a_new_stream() {
        for compression in [Compression::ZlibStream, Compression::ZstdStream] {
            let encode = |encoder: &mut Encoder| {
                let mut out = BytesMut::new();
                for i in 0..3 {
                    let text = format!("{{\"op\":0,\"s\":{i},\"d\":\"{}\"}}", "q".repeat(i * 40));
                    encoder
                        .message(&[text.as_bytes()], &mut out)
                        .expect("encode");
                }
                out
            };
            // A fresh compressor, used and given back mid-stream...
            let mut first = Encoder::new(compression, usize::MAX).expect("encoder");
            let fresh = encode(&mut first);
            drop(first);
            // ...is taken by the next connection on this thread.
            let mut second = Encoder::new(compression, usize::MAX).expect("encoder");
            assert_eq!(encode(&mut second), fresh, "{compression:?}");
        }
    }

    /// Splits `bytes` into frames: (FIN, opcode, payload).
    fn frames(mut bytes: &[u8]) -> Vec<(bool, u8, Vec<u8>)> {
        let mut frames = Vec::new();
        while !bytes.is_empty() {
            let start = match bytes[1] {
                126 => 4,
                127 => 10,
                _ => 2,
            };
            let len = match bytes[1] {
                126 => usize::from(u16::from_be_bytes([bytes[2], bytes[3]])),
                127 => usize::try_from(u64::from_be_bytes(
                    bytes[2..10].try_into().expect("eight bytes"),
                ))
                .expect("fits"),
                n => usize::from(n),
            };
            frames.push((
                bytes[0] & 0x80 != 0,
                bytes[0] & 0x0F,
                bytes[start..start + len].to_vec(),
            ));
            bytes = &bytes[start + len..];
        }
        frames
    }

    #[test]
    fn large_messages_are_fragmented_across_part_boundaries() {
        let mut encoder = Encoder::new(Compression::None, 4).expect("encoder");
        let mut out = BytesMut::new();
        encoder
            .message(&[b"{\"op\":", b"", b"11,\"d\":null}"], &mut out)
            .expect("encode");
        let frames = frames(&out);
        assert_eq!(frames.len(), 5);
        assert_eq!((frames[0].0, frames[0].1), (false, OP_TEXT));
        for frame in &frames[1..4] {
            assert_eq!((frame.0, frame.1), (false, OP_CONTINUATION));
        }
        assert_eq!((frames[4].0, frames[4].1), (true, OP_CONTINUATION));
        let joined: Vec<u8> = frames.iter().flat_map(|f| f.2.clone()).collect();
        assert_eq!(joined, b"{\"op\":11,\"d\":null}");
        assert!(frames.iter().all(|f| f.2.len() <= 4));
        // Exactly the limit: one frame.
        let mut out = BytesMut::new();
        encoder.message(&[b"1234"], &mut out).expect("encode");
        assert_eq!(&out[..], b"\x81\x041234");
    }

    #[test]
    fn compressed_messages_are_fragmented_as_binary() {
        let mut encoder = Encoder::new(Compression::ZlibStream, 7).expect("encoder");
        let mut inflate = Decompress::new(true);
        let text = "{\"op\":0,\"d\":\"fragmented and compressed\"}";
        let mut out = BytesMut::new();
        encoder
            .message(&[text.as_bytes()], &mut out)
            .expect("encode");
        let frames = frames(&out);
        assert!(frames.len() > 1);
        assert_eq!((frames[0].0, frames[0].1), (false, OP_BINARY));
        assert!(frames[1..].iter().all(|f| f.1 == OP_CONTINUATION));
        assert!(frames.iter().rev().skip(1).all(|f| !f.0) && frames[frames.len() - 1].0);
        let joined: Vec<u8> = frames.iter().flat_map(|f| f.2.clone()).collect();
        let mut plain = Vec::with_capacity(text.len() + 64);
        inflate
            .decompress_vec(&joined, &mut plain, FlushDecompress::Sync)
            .expect("inflate");
        assert_eq!(plain, text.as_bytes());
    }

    #[test]
    fn close_frames_truncate_reasons_on_char_boundaries() {
        let mut out = BytesMut::new();
        close_frame(4000, &"é".repeat(100), &mut out);
        assert_eq!(out[1] as usize, 2 + 122);
        assert_eq!(&out[2..4], &4000u16.to_be_bytes());
    }

    #[test]
    fn digits() {
        let mut buf = [0; 20];
        assert_eq!(write_u64(0, &mut buf), b"0");
        assert_eq!(
            write_u64(u64::MAX, &mut buf),
            u64::MAX.to_string().as_bytes()
        );
    }
}
