//! Reading WebSocket frames without a read buffer per idle connection.
//!
//! A `Framed` codec stream keeps an 8 KiB read buffer (and an 8 KiB write
//! buffer) for the life of every connection, although an idle shard
//! receives a heartbeat ACK every ~41 s. Here each read lands in one scratch buffer per
//! thread (an arbiter runs many shards on one thread, one at a time), and
//! only the bytes of frames not yet complete are kept per connection, in an
//! allocation released as soon as they are consumed.

use actix_codec::{AsyncRead, Decoder as _, ReadBuf};
use actix_http::ws::{Codec, Frame, ProtocolError};
use bytes::BytesMut;
use futures_util::Stream;
use std::{
    cell::RefCell,
    io,
    pin::Pin,
    task::{Context, Poll, ready},
};

/// Bytes read from a socket per call: the largest read a flood gets.
const SCRATCH_SIZE: usize = 64 * 1024;

thread_local! {
    static SCRATCH: RefCell<Box<[u8]>> = RefCell::new(vec![0; SCRATCH_SIZE].into_boxed_slice());
}

/// The frames of one connection, decoded by the WebSocket codec.
pub(crate) struct FrameReader<R> {
    io: R,
    codec: Codec,
    /// Read and not yet decoded: empty (and unallocated) between messages.
    pending: BytesMut,
    eof: bool,
}

impl<R: AsyncRead + Unpin> FrameReader<R> {
    /// `pending` holds bytes read together with the handshake response.
    pub(crate) const fn new(io: R, codec: Codec, pending: BytesMut) -> Self {
        Self {
            io,
            codec,
            pending,
            eof: false,
        }
    }

    /// Reads once into the thread's scratch buffer and keeps what arrived.
    fn poll_read_more(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        SCRATCH.with_borrow_mut(|scratch| {
            let mut buffer = ReadBuf::new(scratch);
            ready!(Pin::new(&mut self.io).poll_read(cx, &mut buffer))?;
            self.pending.extend_from_slice(buffer.filled());
            Poll::Ready(Ok(buffer.filled().len()))
        })
    }
}

impl<R: AsyncRead + Unpin> Stream for FrameReader<R> {
    type Item = Result<Frame, ProtocolError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        loop {
            if !this.pending.is_empty() {
                match this.codec.decode(&mut this.pending) {
                    Ok(Some(frame)) => {
                        if this.pending.is_empty() {
                            // Let go of the allocation: the frame's payload
                            // keeps what it needs of it.
                            this.pending = BytesMut::new();
                        }
                        return Poll::Ready(Some(Ok(frame)));
                    }
                    Ok(None) => {}
                    Err(error) => return Poll::Ready(Some(Err(error))),
                }
            }
            if this.eof {
                if this.pending.is_empty() {
                    return Poll::Ready(None);
                }
                this.pending = BytesMut::new();
                let error =
                    io::Error::new(io::ErrorKind::UnexpectedEof, "connection ended mid-frame");
                return Poll::Ready(Some(Err(ProtocolError::Io(error))));
            }
            match ready!(this.poll_read_more(cx)) {
                Ok(0) => this.eof = true,
                Ok(_) => {}
                Err(error) => {
                    this.eof = true;
                    this.pending = BytesMut::new();
                    return Poll::Ready(Some(Err(ProtocolError::Io(error))));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::FrameReader;
    use actix_codec::Encoder as _;
    use actix_http::ws::{Codec, Frame, Message};
    use bytes::{Bytes, BytesMut};
    use futures_util::StreamExt as _;

    fn server_frames(messages: Vec<Message>) -> Vec<u8> {
        let mut codec = Codec::new();
        let mut wire = BytesMut::new();
        for message in messages {
            codec.encode(message, &mut wire).expect("encodes");
        }
        wire.to_vec()
    }

    #[actix_rt::test]
    async fn frames_split_across_reads_and_handshake_leftovers_are_decoded() {
        let wire = server_frames(vec![
            Message::Text("first".into()),
            Message::Text("x".repeat(100_000).into()),
            Message::Ping(Bytes::from_static(b"p")),
        ]);
        // The first three bytes arrived with the handshake response.
        let (leftover, rest) = wire.split_at(3);
        let codec = Codec::new().client_mode().max_size(1 << 20);
        let reader = FrameReader::new(rest, codec, BytesMut::from(leftover));
        let frames: Vec<_> = reader.collect().await;
        assert_eq!(frames.len(), 3);
        assert!(matches!(&frames[0], Ok(Frame::Text(t)) if t.as_ref() == b"first"));
        assert!(matches!(&frames[1], Ok(Frame::Text(t)) if t.len() == 100_000));
        assert!(matches!(&frames[2], Ok(Frame::Ping(_))));
    }

    #[actix_rt::test]
    async fn a_connection_ending_mid_frame_is_an_error_then_the_end() {
        let wire = server_frames(vec![
            Message::Text("complete".into()),
            Message::Text("cut".into()),
        ]);
        let cut = &wire[..wire.len() - 1];
        let mut reader = FrameReader::new(cut, Codec::new().client_mode(), BytesMut::new());
        assert!(matches!(reader.next().await, Some(Ok(Frame::Text(_)))));
        assert!(matches!(reader.next().await, Some(Err(_))));
        assert!(reader.next().await.is_none());
    }

    #[actix_rt::test]
    async fn an_oversized_frame_is_an_error() {
        let wire = server_frames(vec![Message::Text("y".repeat(2048).into())]);
        let mut reader = FrameReader::new(
            wire.as_slice(),
            Codec::new().client_mode().max_size(1024),
            BytesMut::new(),
        );
        assert!(matches!(reader.next().await, Some(Err(_))));
    }
}
