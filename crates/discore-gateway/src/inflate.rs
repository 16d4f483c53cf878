//! Transport decompression (`docs/protocol.md`, "Transport compression"): one context per
//! connection, output into a reused buffer, bounded by the inbound maximum so
//! a decompression bomb is an error and never unbounded memory.

use bytes::{Bytes, BytesMut};
use flate2::{Decompress, FlushDecompress, Status};
use std::{
    cell::{Cell, RefCell},
    fmt,
};
use zstd::stream::raw::{Decoder as ZstdDecoder, InBuffer, Operation, OutBuffer};

/// Transport compression of a connection.
#[derive(Clone, Copy, Debug, Default, Eq, Hash, PartialEq)]
pub enum Compression {
    /// Plain JSON text frames.
    None,
    /// `compress=zlib-stream`: one zlib stream per connection.
    #[default]
    ZlibStream,
    /// `compress=zstd-stream`: one zstd stream per connection.
    ZstdStream,
}

impl Compression {
    /// The value of the `compress` query parameter, if any.
    pub const fn query_value(self) -> Option<&'static str> {
        match self {
            Self::None => None,
            Self::ZlibStream => Some("zlib-stream"),
            Self::ZstdStream => Some("zstd-stream"),
        }
    }
}

/// The end of every complete zlib-stream message (a sync flush).
const ZLIB_SUFFIX: [u8; 4] = [0x00, 0x00, 0xff, 0xff];

/// The first output buffer; it grows on demand up to the inbound maximum.
const INITIAL_OUTPUT: usize = 32 * 1024;

/// Output buffers up to this capacity go back to the thread's spare slot;
/// a larger one (a huge GUILD_CREATE) is freed instead.
const SPARE_OUTPUT_MAX: usize = 1024 * 1024;

/// The size of a payload block: inflated payloads are copied into one,
/// one after the other (see [`Inflater::push_shared`]).
const PAYLOAD_BLOCK: usize = 64 * 1024;

thread_local! {
    /// What is left of the thread's current payload block. Its filled part
    /// belongs to the payloads split off it; the block is freed when the
    /// last of them is and this has moved on to a new one.
    static PAYLOADS: RefCell<BytesMut> = RefCell::new(BytesMut::new());
    /// One output buffer per thread, shared by the connections inflating on
    /// it (an arbiter runs many shards on one thread, one message at a
    /// time), so an idle connection holds no output buffer.
    static SPARE_OUTPUT: Cell<Vec<u8>> = const { Cell::new(Vec::new()) };
}

/// Why a compressed frame could not be read. The connection cannot continue:
/// its decompression context is no longer in step with the server's.
#[derive(Debug)]
pub enum InflateError {
    /// The stream is corrupt.
    Corrupt(String),
    /// The message inflates past the configured maximum.
    TooLarge {
        /// The maximum in bytes.
        max: usize,
    },
}

impl fmt::Display for InflateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Corrupt(reason) => write!(f, "corrupt compressed stream: {reason}"),
            Self::TooLarge { max } => write!(f, "message inflates past the maximum of {max} bytes"),
        }
    }
}

impl std::error::Error for InflateError {}

/// The decompressor of one connection.
pub struct Inflater {
    kind: Kind,
    /// Buffered compressed input (zlib-stream waits for the suffix).
    input: Vec<u8>,
    output: Vec<u8>,
    max: usize,
    /// The length of the last inflated message: the size of a fresh output
    /// buffer when the last one went along with its payload.
    last_len: usize,
}

enum Kind {
    None,
    Zlib(Box<Decompress>),
    Zstd(Box<ZstdDecoder<'static>>),
}

impl fmt::Debug for Inflater {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.kind {
            Kind::None => "none",
            Kind::Zlib(_) => "zlib-stream",
            Kind::Zstd(_) => "zstd-stream",
        };
        f.debug_struct("Inflater")
            .field("kind", &kind)
            .field("max", &self.max)
            .finish()
    }
}

impl Inflater {
    /// A fresh context for a new connection; messages may inflate to `max` bytes.
    ///
    /// # Errors
    ///
    /// If zstd cannot allocate its context.
    pub fn new(compression: Compression, max: usize) -> Result<Self, InflateError> {
        let kind = match compression {
            Compression::None => Kind::None,
            Compression::ZlibStream => Kind::Zlib(Box::new(Decompress::new(true))),
            Compression::ZstdStream => Kind::Zstd(Box::new(
                ZstdDecoder::new().map_err(|e| InflateError::Corrupt(e.to_string()))?,
            )),
        };
        Ok(Self {
            kind,
            input: Vec::new(),
            output: Vec::new(),
            max,
            last_len: 0,
        })
    }

    /// Whether this connection is compressed.
    pub const fn is_compressed(&self) -> bool {
        !matches!(self.kind, Kind::None)
    }

    /// Feeds one binary WebSocket message. Returns the inflated payload once
    /// a whole gateway message is complete, `None` while more input is needed.
    ///
    /// # Errors
    ///
    /// [`InflateError`] for a corrupt stream or a payload over the maximum.
    pub fn push<'a>(&'a mut self, message: &'a [u8]) -> Result<Option<&'a [u8]>, InflateError> {
        if self.output.capacity() == 0 && self.is_compressed() {
            self.output = SPARE_OUTPUT.take();
            if self.output.capacity() == 0 && self.last_len > 0 {
                // Sized like the last message, with a quarter more: most
                // messages of a stream are alike, and a larger one grows it.
                let hint = self.last_len + self.last_len / 4 + 64;
                self.output = Vec::with_capacity(hint.min(self.max.saturating_add(1)));
            }
        }
        match &mut self.kind {
            Kind::None => Ok(Some(message)),
            Kind::Zlib(decompress) => {
                if self.input.len() + message.len() > self.max {
                    self.input.clear();
                    return Err(InflateError::TooLarge { max: self.max });
                }
                let complete = if self.input.is_empty() {
                    message.ends_with(&ZLIB_SUFFIX)
                } else {
                    self.input.extend_from_slice(message);
                    self.input.ends_with(&ZLIB_SUFFIX)
                };
                if !complete {
                    if self.input.is_empty() {
                        self.input.extend_from_slice(message);
                    }
                    return Ok(None);
                }
                // Inflate straight from the message when nothing was buffered.
                let input = if self.input.is_empty() {
                    message
                } else {
                    &self.input[..]
                };
                let result = inflate_zlib(decompress, input, &mut self.output, self.max);
                self.input.clear();
                result.map(|()| Some(&self.output[..]))
            }
            Kind::Zstd(decoder) => {
                inflate_zstd(decoder, message, &mut self.output, self.max)?;
                Ok(Some(&self.output[..]))
            }
        }
    }
}

impl Inflater {
    /// As [`push`](Self::push), for a message in a shared buffer: returns
    /// the payload as a shared buffer too, so that slices of it (the data
    /// of a dispatch) can outlive the call. An uncompressed message is
    /// returned as it is, not copied. An inflated one is copied out of the
    /// output buffer, which stays for the next message, into the thread's
    /// current payload block (64 KiB, filled one payload after the other
    /// and replaced when full); a payload over a quarter of a block gets a
    /// buffer of its own. So a connection under load allocates once per
    /// block, not once per message, and whoever keeps a slice keeps that
    /// block, as a slice of an uncompressed frame keeps its socket read.
    ///
    /// # Errors
    ///
    /// As [`push`](Self::push).
    pub fn push_shared(&mut self, message: Bytes) -> Result<Option<Bytes>, InflateError> {
        if !self.is_compressed() {
            return Ok(Some(message));
        }
        let Some(payload) = self.push(&message)? else {
            return Ok(None);
        };
        let shared = PAYLOADS.with_borrow_mut(|payloads| share(payloads, payload));
        self.last_len = shared.len();
        Ok(Some(shared))
    }

    /// Hands the output buffer to the thread's spare slot once the payload
    /// [`push`](Self::push) returned has been consumed; the next `push` on
    /// this thread, for any connection, takes it back. Optional: without
    /// it, each connection keeps its own buffer.
    pub fn recycle(&mut self) {
        let output = std::mem::take(&mut self.output);
        if output.capacity() == 0 || output.capacity() > SPARE_OUTPUT_MAX {
            return;
        }
        let spare = SPARE_OUTPUT.take();
        SPARE_OUTPUT.set(if spare.capacity() >= output.capacity() {
            spare
        } else {
            output
        });
    }
}

/// `payload` copied into the thread's current block `payloads`, as a
/// shared slice of it; a large one into a buffer of its own, exactly.
fn share(payloads: &mut BytesMut, payload: &[u8]) -> Bytes {
    if payload.len() > PAYLOAD_BLOCK / 4 {
        return Bytes::copy_from_slice(payload);
    }
    if payloads.capacity() < payload.len() {
        *payloads = BytesMut::with_capacity(PAYLOAD_BLOCK);
    }
    payloads.extend_from_slice(payload);
    payloads.split().freeze()
}

/// Makes room in `output` for more inflated bytes, refusing to pass `max`.
///
/// The buffer never grows past `max + 1` bytes: a message of exactly `max`
/// bytes then still leaves the decoder room to show it is complete, and one
/// that fills the extra byte is over the maximum. The growth is exact
/// (`reserve_exact`): amortized growth could double the buffer past `max`
/// and let a larger message through.
fn grow(output: &mut Vec<u8>, max: usize) -> Result<(), InflateError> {
    if output.len() > max {
        return Err(InflateError::TooLarge { max });
    }
    let limit = max.saturating_add(1);
    let wanted = output
        .capacity()
        .max(INITIAL_OUTPUT)
        .min(limit - output.len());
    output.reserve_exact(wanted.max(1));
    Ok(())
}

/// The inflated message, unless it is over the maximum.
fn within(output: &[u8], max: usize) -> Result<(), InflateError> {
    if output.len() > max {
        return Err(InflateError::TooLarge { max });
    }
    Ok(())
}

fn inflate_zlib(
    decompress: &mut Decompress,
    mut input: &[u8],
    output: &mut Vec<u8>,
    max: usize,
) -> Result<(), InflateError> {
    output.clear();
    loop {
        if output.len() == output.capacity() {
            grow(output, max)?;
        }
        let before = decompress.total_in();
        let status = decompress
            .decompress_vec(input, output, FlushDecompress::Sync)
            .map_err(|e| InflateError::Corrupt(e.to_string()))?;
        let consumed = usize::try_from(decompress.total_in() - before).unwrap_or(input.len());
        input = &input[consumed.min(input.len())..];
        let room_left = output.len() < output.capacity();
        match status {
            Status::StreamEnd => return within(output, max),
            Status::Ok | Status::BufError if input.is_empty() && room_left => {
                return within(output, max);
            }
            Status::BufError if consumed == 0 && room_left => {
                return Err(InflateError::Corrupt("truncated zlib input".to_owned()));
            }
            Status::Ok | Status::BufError => {}
        }
    }
}

fn inflate_zstd(
    decoder: &mut ZstdDecoder<'static>,
    message: &[u8],
    output: &mut Vec<u8>,
    max: usize,
) -> Result<(), InflateError> {
    output.clear();
    let mut input = InBuffer::around(message);
    loop {
        if output.len() == output.capacity() {
            grow(output, max)?;
        }
        let position = output.len();
        let mut out = OutBuffer::around_pos(output, position);
        decoder
            .run(&mut input, &mut out)
            .map_err(|e| InflateError::Corrupt(e.to_string()))?;
        let written = out.pos();
        // The frame never ends on zstd-stream: the message is complete when
        // all input is consumed and the decoder had room left to flush.
        if input.pos() == message.len() && written < output.capacity() {
            return within(output, max);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{Compression, InflateError, Inflater};
    use flate2::{Compress, FlushCompress};
    use std::io::Write as _;

    fn zlib_messages(messages: &[&[u8]]) -> Vec<Vec<u8>> {
        let mut compress = Compress::new(flate2::Compression::default(), true);
        messages
            .iter()
            .map(|message| {
                let mut out = Vec::with_capacity(message.len() + 1024);
                compress
                    .compress_vec(message, &mut out, FlushCompress::Sync)
                    .expect("compresses");
                out
            })
            .collect()
    }

    fn zstd_messages(messages: &[&[u8]]) -> Vec<Vec<u8>> {
        let mut encoder = zstd::stream::write::Encoder::new(Vec::new(), 3).expect("encoder");
        messages
            .iter()
            .map(|message| {
                encoder.write_all(message).expect("writes");
                encoder.flush().expect("flushes");
                std::mem::take(encoder.get_mut())
            })
            .collect()
    }

    #[test]
    fn zlib_stream_shares_one_context_across_messages() {
        let payloads: Vec<Vec<u8>> = (0..20)
            .map(|i| {
                format!(
                    r#"{{"op":0,"s":{i},"t":"X","d":"{}"}}"#,
                    "y".repeat(i * 100)
                )
                .into_bytes()
            })
            .collect();
        let refs: Vec<&[u8]> = payloads.iter().map(Vec::as_slice).collect();
        let mut inflater = Inflater::new(Compression::ZlibStream, 1 << 20).expect("inflater");
        for (frame, expected) in zlib_messages(&refs).iter().zip(&payloads) {
            assert_eq!(inflater.push(frame).expect("inflates"), Some(&expected[..]));
        }
    }

    /// Connections on one thread share the output buffer between messages
    /// and each still inflates its own stream, within its own maximum.
    #[test]
    fn recycled_output_is_shared_between_connections_on_a_thread() {
        let big = "b".repeat(50_000);
        let small = "s".repeat(2_000);
        let a_frames = zlib_messages(&[big.as_bytes(), small.as_bytes()]);
        let b_frames = zstd_messages(&[small.as_bytes(), big.as_bytes()]);
        let mut a = Inflater::new(Compression::ZlibStream, 1 << 20).expect("inflater");
        let mut b = Inflater::new(Compression::ZstdStream, 10_000).expect("inflater");
        assert_eq!(
            a.push(&a_frames[0]).expect("inflates"),
            Some(big.as_bytes())
        );
        a.recycle();
        assert_eq!(
            b.push(&b_frames[0]).expect("inflates"),
            Some(small.as_bytes())
        );
        b.recycle();
        assert_eq!(
            a.push(&a_frames[1]).expect("inflates"),
            Some(small.as_bytes())
        );
        a.recycle();
        // b's maximum holds although the shared buffer is larger.
        assert!(matches!(
            b.push(&b_frames[1]),
            Err(InflateError::TooLarge { max: 10_000 })
        ));
    }

    #[test]
    fn zlib_stream_buffers_until_the_suffix() {
        let payload = "z".repeat(100_000);
        let frames = zlib_messages(&[payload.as_bytes()]);
        let frame = &frames[0];
        let mut inflater = Inflater::new(Compression::ZlibStream, 1 << 20).expect("inflater");
        let (head, tail) = frame.split_at(frame.len() / 2);
        assert_eq!(inflater.push(head).expect("buffers"), None);
        assert_eq!(
            inflater.push(tail).expect("inflates"),
            Some(payload.as_bytes())
        );
    }

    #[test]
    fn zlib_large_message_grows_the_buffer() {
        let payload: String = (0..5 * 1024 * 1024)
            .map(|i| char::from(b'a' + (i % 26) as u8))
            .collect();
        let frames = zlib_messages(&[payload.as_bytes()]);
        let mut inflater = Inflater::new(Compression::ZlibStream, 8 << 20).expect("inflater");
        assert_eq!(
            inflater
                .push(&frames[0])
                .expect("inflates")
                .map(<[u8]>::len),
            Some(payload.len())
        );
    }

    #[test]
    fn decompression_bomb_is_refused() {
        let bomb = vec![b'0'; 10 << 20];
        for frames in [zlib_messages(&[&bomb]), zstd_messages(&[&bomb])] {
            assert!(frames[0].len() < 64 * 1024, "a small frame");
            let kind = if frames[0].starts_with(&[0x78]) {
                Compression::ZlibStream
            } else {
                Compression::ZstdStream
            };
            let mut inflater = Inflater::new(kind, 1 << 20).expect("inflater");
            assert!(matches!(
                inflater.push(&frames[0]),
                Err(InflateError::TooLarge { max: 1_048_576 })
            ));
        }
    }

    /// Found by the zlib_stream fuzz target: a message of exactly the
    /// maximum was refused. And a maximum that is not a power of two must
    /// not let a larger message through a buffer grown past it.
    #[test]
    fn the_maximum_is_exact() {
        for max in [256, 4096, 100_000, 1 << 20] {
            for (len, fits) in [(max, true), (max + 1, false), (max + max / 10, false)] {
                let payload: Vec<u8> = (0..len).map(|i| b'a' + (i % 23) as u8).collect();
                for (kind, frames) in [
                    (Compression::ZlibStream, zlib_messages(&[&payload])),
                    (Compression::ZstdStream, zstd_messages(&[&payload])),
                ] {
                    let mut inflater = Inflater::new(kind, max).expect("inflater");
                    let result = inflater.push(&frames[0]).map(|o| o.map(<[u8]>::len));
                    if fits {
                        assert_eq!(result.ok(), Some(Some(len)), "{kind:?} {len} of {max}");
                    } else {
                        assert!(
                            matches!(result, Err(InflateError::TooLarge { .. })),
                            "{kind:?} {len} of {max}: {result:?}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn corrupt_zlib_is_an_error() {
        let frames = zlib_messages(&[b"hello", b"world"]);
        let mut inflater = Inflater::new(Compression::ZlibStream, 1 << 20).expect("inflater");
        inflater.push(&frames[0]).expect("first is fine");
        let mut corrupt = frames[1].clone();
        let body = corrupt.len() - 4;
        for byte in corrupt.iter_mut().take(body) {
            *byte ^= 0x5a;
        }
        let result = inflater.push(&corrupt).map(|o| o.map(<[u8]>::to_vec));
        assert!(
            !matches!(result, Ok(Some(ref out)) if out == b"world"),
            "corruption must not pass unnoticed: {result:?}"
        );
    }

    #[test]
    fn garbage_is_an_error_for_both() {
        for kind in [Compression::ZlibStream, Compression::ZstdStream] {
            let mut inflater = Inflater::new(kind, 1 << 20).expect("inflater");
            let garbage = [0x13, 0x37, 0xde, 0xad, 0xbe, 0xef, 0x00, 0x00, 0xff, 0xff];
            assert!(inflater.push(&garbage).is_err(), "{kind:?}");
        }
    }

    #[test]
    fn zstd_stream_messages_inflate_one_by_one() {
        let payloads: Vec<Vec<u8>> = (0..20)
            .map(|i| format!(r#"{{"op":0,"s":{i},"d":"{}"}}"#, "q".repeat(i * 500)).into_bytes())
            .collect();
        let refs: Vec<&[u8]> = payloads.iter().map(Vec::as_slice).collect();
        let mut inflater = Inflater::new(Compression::ZstdStream, 1 << 20).expect("inflater");
        for (frame, expected) in zstd_messages(&refs).iter().zip(&payloads) {
            assert_eq!(inflater.push(frame).expect("inflates"), Some(&expected[..]));
        }
    }

    /// A shared payload is exactly the inflated message, whatever its
    /// neighbours in the block do; small ones share blocks, a large one
    /// gets its own buffer; a plain one is the message itself, not a copy.
    #[test]
    fn shared_payloads_are_exact_slices_of_blocks_and_large_ones_their_own() {
        let payloads: Vec<Vec<u8>> = (0..200)
            .map(|i| format!(r#"{{"op":0,"s":{i},"d":"{}"}}"#, "w".repeat(i * 97)).into_bytes())
            .collect();
        let refs: Vec<&[u8]> = payloads.iter().map(Vec::as_slice).collect();
        for (kind, frames) in [
            (Compression::ZlibStream, zlib_messages(&refs)),
            (Compression::ZstdStream, zstd_messages(&refs)),
        ] {
            let mut inflater = Inflater::new(kind, 1 << 20).expect("inflater");
            let (mut whole, mut thirds) = (Vec::new(), Vec::new());
            for (i, (frame, expected)) in frames.iter().zip(&payloads).enumerate() {
                let payload = inflater
                    .push_shared(bytes::Bytes::copy_from_slice(frame))
                    .expect("inflates")
                    .expect("complete");
                assert_eq!(&payload[..], &expected[..], "{kind:?}");
                if i % 3 == 0 {
                    thirds.push(payload.slice(1..payload.len() - 1));
                }
                inflater.recycle();
                whole.push(payload);
            }
            // Later payloads, written after these into the same blocks,
            // left them as they were.
            for (kept, expected) in whole.iter().zip(&payloads) {
                assert_eq!(&kept[..], &expected[..], "{kind:?}");
            }
            for (slice, expected) in thirds.iter().zip(payloads.iter().step_by(3)) {
                assert_eq!(&slice[..], &expected[1..expected.len() - 1], "{kind:?}");
            }
            // Neighbours in one block: the end of one is the start of the
            // next. Payloads 1 to 3 fit in one block with room to spare, so
            // at most one of the two pairs straddles a new block (the
            // thread's block may be part full from an earlier test).
            let follows = |a: &bytes::Bytes, b: &bytes::Bytes| a.as_ptr_range().end == b.as_ptr();
            assert!(
                follows(&whole[1], &whole[2]) || follows(&whole[2], &whole[3]),
                "{kind:?}"
            );
        }
        let large = format!(
            r#"{{"op":0,"d":"{}"}}"#,
            "x".repeat(super::PAYLOAD_BLOCK / 2)
        );
        let mut inflater = Inflater::new(Compression::ZstdStream, 1 << 20).expect("inflater");
        let frame = &zstd_messages(&[large.as_bytes()])[0];
        let payload = inflater
            .push_shared(bytes::Bytes::copy_from_slice(frame))
            .expect("inflates")
            .expect("complete");
        assert_eq!(&payload[..], large.as_bytes());
        assert!(
            payload.try_into_mut().is_ok(),
            "a large payload is the only holder of its buffer"
        );
        let mut plain = Inflater::new(Compression::None, 1 << 10).expect("inflater");
        let message = bytes::Bytes::from_static(b"{}");
        let payload = plain.push_shared(message.clone()).expect("plain");
        assert_eq!(payload.map(|p| p.as_ptr()), Some(message.as_ptr()));
    }

    #[test]
    fn plain_passes_through() {
        let mut inflater = Inflater::new(Compression::None, 10).expect("inflater");
        assert!(!inflater.is_compressed());
        assert_eq!(inflater.push(b"abc").expect("plain"), Some(&b"abc"[..]));
    }
}
