//! A minimal transport decompressor for captured streams: one context per
//! stream, output into one reused buffer. It is the reference for the
//! tight-loop limit, so it does only what any client must do.

use anyhow::{Context as _, bail};
use flate2::{Decompress, FlushDecompress};
use zstd::stream::raw::{Decoder as ZstdDecoder, InBuffer, Operation as _, OutBuffer};

/// Transport compression of a connection.
#[derive(Clone, Copy, Debug, Eq, Hash, PartialEq, clap::ValueEnum)]
pub enum Codec {
    /// Plain JSON text frames.
    None,
    /// zlib-stream.
    Zlib,
    /// zstd-stream.
    Zstd,
}

impl Codec {
    /// All three, in table order.
    pub const ALL: [Self; 3] = [Self::None, Self::Zlib, Self::Zstd];

    /// The `compress` query value.
    pub const fn query(self) -> Option<&'static str> {
        match self {
            Self::None => None,
            Self::Zlib => Some("zlib-stream"),
            Self::Zstd => Some("zstd-stream"),
        }
    }

    /// The name in tables.
    pub const fn label(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Zlib => "zlib-stream",
            Self::Zstd => "zstd-stream",
        }
    }

    /// discore's setting for it.
    pub const fn discore(self) -> discore_gateway::Compression {
        match self {
            Self::None => discore_gateway::Compression::None,
            Self::Zlib => discore_gateway::Compression::ZlibStream,
            Self::Zstd => discore_gateway::Compression::ZstdStream,
        }
    }
}

/// The end of every complete zlib-stream message.
const ZLIB_SUFFIX: [u8; 4] = [0x00, 0x00, 0xff, 0xff];

/// Decompresses one connection's frames, each a whole gateway message.
pub enum StreamDecoder {
    /// Frames are the payloads.
    Plain,
    /// flate2 (whatever backend this build unified on).
    Zlib(Box<Decompress>, Vec<u8>),
    /// zstd through libzstd.
    Zstd(Box<ZstdDecoder<'static>>, Vec<u8>),
}

impl StreamDecoder {
    /// A fresh context.
    pub fn new(codec: Codec) -> anyhow::Result<Self> {
        Ok(match codec {
            Codec::None => Self::Plain,
            Codec::Zlib => Self::Zlib(Box::new(Decompress::new(true)), Vec::with_capacity(1 << 15)),
            Codec::Zstd => Self::Zstd(Box::new(ZstdDecoder::new()?), Vec::with_capacity(1 << 15)),
        })
    }

    /// The payload of one frame.
    pub fn decode<'a>(&'a mut self, frame: &'a [u8]) -> anyhow::Result<&'a [u8]> {
        match self {
            Self::Plain => Ok(frame),
            Self::Zlib(inflate, out) => {
                if !frame.ends_with(&ZLIB_SUFFIX) {
                    bail!("a zlib-stream frame without the sync suffix");
                }
                out.clear();
                let mut input = frame;
                for _ in 0..1_000 {
                    if out.len() == out.capacity() {
                        out.reserve(out.capacity().max(1 << 15));
                    }
                    let before = inflate.total_in();
                    inflate.decompress_vec(input, out, FlushDecompress::Sync)?;
                    let consumed = usize::try_from(inflate.total_in() - before)?;
                    input = &input[consumed..];
                    if input.is_empty() && out.len() < out.capacity() {
                        return Ok(out);
                    }
                }
                bail!("zlib made no progress")
            }
            Self::Zstd(decoder, out) => {
                out.clear();
                let mut input = InBuffer::around(frame);
                for _ in 0..1_000 {
                    if out.len() == out.capacity() {
                        out.reserve(out.capacity().max(1 << 15));
                    }
                    let position = out.len();
                    let mut output = OutBuffer::around_pos(out, position);
                    decoder.run(&mut input, &mut output)?;
                    if input.pos() == frame.len() && out.len() < out.capacity() {
                        return Ok(out);
                    }
                }
                bail!("zstd made no progress")
            }
        }
    }
}

/// zlib through miniz_oxide directly (flate2's default backend, which a bot
/// without another crate enabling zlib-rs gets), for comparison.
pub struct MinizDecoder {
    state: Box<miniz_oxide::inflate::stream::InflateState>,
    out: Vec<u8>,
}

impl MinizDecoder {
    /// A fresh context.
    pub fn new() -> Self {
        Self {
            state: miniz_oxide::inflate::stream::InflateState::new_boxed(
                miniz_oxide::DataFormat::Zlib,
            ),
            out: vec![0; 1 << 16],
        }
    }

    /// The payload of one frame.
    pub fn decode(&mut self, frame: &[u8]) -> anyhow::Result<&[u8]> {
        let mut input = frame;
        let mut written = 0;
        for _ in 0..1_000 {
            if written == self.out.len() {
                self.out.resize(self.out.len() * 2, 0);
            }
            let result = miniz_oxide::inflate::stream::inflate(
                &mut self.state,
                input,
                &mut self.out[written..],
                miniz_oxide::MZFlush::Sync,
            );
            result
                .status
                .map_err(|e| anyhow::anyhow!("miniz_oxide: {e:?}"))?;
            input = &input[result.bytes_consumed..];
            written += result.bytes_written;
            if input.is_empty() && written < self.out.len() {
                return Ok(&self.out[..written]);
            }
        }
        bail!("miniz_oxide made no progress")
    }
}

/// Checks that a decoded payload is UTF-8 (every client must).
pub fn text(payload: &[u8]) -> anyhow::Result<&str> {
    std::str::from_utf8(payload).context("payload is not UTF-8")
}

#[cfg(test)]
mod tests {
    use super::{Codec, MinizDecoder, StreamDecoder};
    use flate2::{Compress, FlushCompress};

    #[test]
    fn zlib_frames_decode_with_both_backends() {
        let mut compress = Compress::new(flate2::Compression::new(1), true);
        let mut flate = StreamDecoder::new(Codec::Zlib).expect("decoder");
        let mut miniz = MinizDecoder::new();
        for i in 0..50 {
            let text = format!(r#"{{"op":0,"s":{i},"d":"{}"}}"#, "ab".repeat(i * 400));
            let mut frame = Vec::with_capacity(text.len() + 1024);
            compress
                .compress_vec(text.as_bytes(), &mut frame, FlushCompress::Sync)
                .expect("compresses");
            assert_eq!(flate.decode(&frame).expect("flate2"), text.as_bytes());
            assert_eq!(miniz.decode(&frame).expect("miniz"), text.as_bytes());
        }
    }

    #[test]
    fn zstd_frames_decode() {
        use std::io::Write as _;
        let mut encoder = zstd::stream::write::Encoder::new(Vec::new(), 1).expect("encoder");
        let mut decoder = StreamDecoder::new(Codec::Zstd).expect("decoder");
        for i in 0..20 {
            let text = format!(r#"{{"op":0,"s":{i},"d":"{}"}}"#, "xy".repeat(i * 900));
            encoder.write_all(text.as_bytes()).expect("writes");
            encoder.flush().expect("flushes");
            let frame = std::mem::take(encoder.get_mut());
            assert_eq!(decoder.decode(&frame).expect("zstd"), text.as_bytes());
        }
    }
}
