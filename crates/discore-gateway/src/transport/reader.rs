//! Reading WebSocket frames without a read buffer per idle connection.
//!
//! A `Framed` codec stream keeps an 8 KiB read buffer (and an 8 KiB write
//! buffer) for the life of every connection, although an idle shard
//! receives a heartbeat ACK every ~41 s. Here a quiet connection reads into
//! one scratch buffer per thread (an arbiter runs many shards on one
//! thread, one at a time), and only the bytes of frames not yet complete
//! are kept per connection, in an allocation released as soon as they are
//! consumed.
//!
//! A busy connection, one whose last read nearly filled the scratch buffer
//! because the socket had a backlog, reads straight into its own buffer
//! instead: every byte of a flood would otherwise be copied twice (by the
//! kernel, then out of the scratch buffer), and the second copy also
//! doubles the memory a read walks through before the frames are parsed.
//! It goes back to the scratch buffer as soon as a read finds the socket
//! empty, and then holds nothing.

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
const READ_SIZE: usize = 64 * 1024;

/// A read at least this long found a backlog: the next reads go straight
/// into the connection's buffer.
const BUSY_READ: usize = READ_SIZE / 2;

thread_local! {
    static SCRATCH: RefCell<Box<[u8]>> = RefCell::new(vec![0; READ_SIZE].into_boxed_slice());
}

/// The frames of one connection, decoded by the WebSocket codec.
pub(crate) struct FrameReader<R> {
    io: R,
    codec: Codec,
    /// Read and not yet decoded: empty (and unallocated) between messages.
    pending: BytesMut,
    /// The last read found a backlog (see the module's notes).
    busy: bool,
    eof: bool,
}

impl<R: AsyncRead + Unpin> FrameReader<R> {
    /// `pending` holds bytes read together with the handshake response.
    pub(crate) const fn new(io: R, codec: Codec, pending: BytesMut) -> Self {
        Self {
            io,
            codec,
            pending,
            busy: false,
            eof: false,
        }
    }

    /// Reads once and keeps what arrived.
    fn poll_read_more(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        let read = if self.busy {
            self.poll_read_direct(cx)
        } else {
            self.poll_read_scratch(cx)
        };
        match &read {
            Poll::Ready(Ok(read)) => self.busy = *read >= BUSY_READ,
            Poll::Ready(Err(_)) => self.busy = false,
            Poll::Pending => {}
        }
        read
    }

    /// Reads into the thread's scratch buffer and copies what arrived.
    fn poll_read_scratch(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        SCRATCH.with_borrow_mut(|scratch| {
            let mut buffer = ReadBuf::new(scratch);
            ready!(Pin::new(&mut self.io).poll_read(cx, &mut buffer))?;
            self.pending.extend_from_slice(buffer.filled());
            Poll::Ready(Ok(buffer.filled().len()))
        })
    }

    /// Reads straight into `pending`, after room for a whole read.
    fn poll_read_direct(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        self.pending.reserve(READ_SIZE);
        let read = tokio_util::io::poll_read_buf(Pin::new(&mut self.io), cx, &mut self.pending);
        if read.is_pending() {
            // The backlog is gone: wait holding nothing.
            self.busy = false;
            if self.pending.is_empty() {
                self.pending = BytesMut::new();
            }
        }
        read
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
                        if this.pending.is_empty() && !this.busy {
                            // Let go of the allocation: the frame's payload
                            // keeps what it needs of it. A busy connection
                            // keeps it for its next read, which reuses it
                            // once the frames read into it are dropped.
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
    use super::{FrameReader, READ_SIZE};
    use actix_codec::{AsyncRead, Encoder as _, ReadBuf};
    use actix_http::ws::{Codec, Frame, Message};
    use bytes::{Bytes, BytesMut};
    use futures_util::{Stream as _, StreamExt as _};
    use std::{
        collections::VecDeque,
        io,
        pin::Pin,
        task::{Context, Poll},
    };

    /// A socket that has `backlog` to give, then nothing for now.
    struct Backlog {
        backlog: VecDeque<u8>,
    }

    impl AsyncRead for Backlog {
        fn poll_read(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
            buffer: &mut ReadBuf<'_>,
        ) -> Poll<io::Result<()>> {
            if self.backlog.is_empty() {
                return Poll::Pending;
            }
            let take = buffer.remaining().min(self.backlog.len());
            let chunk: Vec<u8> = self.backlog.drain(..take).collect();
            buffer.put_slice(&chunk);
            Poll::Ready(Ok(()))
        }
    }

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

    #[test]
    fn a_backlog_is_read_straight_into_the_buffer_and_an_empty_socket_holds_nothing() {
        // Three reads' worth of frames whose ends fall mid-frame.
        let messages: Vec<String> = (0..300).map(|i| format!("{i:04}").repeat(150)).collect();
        let wire = server_frames(
            messages
                .iter()
                .map(|m| Message::Text(m.as_str().into()))
                .collect(),
        );
        assert!(wire.len() > 2 * READ_SIZE);
        let socket = Backlog {
            backlog: wire.into(),
        };
        let codec = Codec::new().client_mode().max_size(1 << 20);
        let mut reader = FrameReader::new(socket, codec, BytesMut::new());
        let waker = futures_util::task::noop_waker();
        let mut cx = Context::from_waker(&waker);
        let mut read = Vec::new();
        let mut read_directly = false;
        loop {
            match Pin::new(&mut reader).poll_next(&mut cx) {
                Poll::Ready(Some(Ok(Frame::Text(text)))) => read.push(text),
                Poll::Ready(other) => panic!("unexpected {other:?}"),
                Poll::Pending => break,
            }
            read_directly |= reader.busy;
            assert!(read.len() <= messages.len(), "no more frames than sent");
        }
        assert!(read_directly, "a full read marks the connection busy");
        assert_eq!(read.len(), messages.len());
        for (got, sent) in read.iter().zip(&messages) {
            assert_eq!(got.as_ref(), sent.as_bytes());
        }
        assert!(!reader.busy, "an empty socket ends the busy spell");
        assert_eq!(reader.pending.capacity(), 0, "waiting holds no buffer");
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
