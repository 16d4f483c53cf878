//! The two halves of a connection's socket as actix hands them over: the
//! response body that carries the emulator's frames (or aborts TCP), and
//! the reader that decodes the client's frames from the request payload.

use crate::state::Shared;
use actix_http::ws::{Codec, Frame, ProtocolError};
use actix_web::web;
use bytes::{Bytes, BytesMut};
use futures_util::{Stream, StreamExt};
use std::{
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    task::{Context, Poll},
};
use tokio::sync::mpsc;

/// The body stream error that makes actix drop the TCP connection.
#[derive(Debug, thiserror::Error)]
#[error("connection aborted by the emulator")]
pub(super) struct Aborted;

/// Encoded frames on their way from the connection task to the socket.
pub(super) struct Outbound {
    pub(super) bytes: Bytes,
    /// The session's shard and the first and last dispatch sequence in
    /// `bytes`, for the send clock; `None` for frames without dispatches.
    pub(super) dispatches: Option<(u32, (u64, u64))>,
}

/// The response body: frames from the connection task, or an abort.
///
/// actix's HTTP/1 dispatcher pulls the body in the same turn in which it
/// writes to the socket, so the send clock notes a dispatch here, as the
/// writer takes it: the time the frame spent between the connection task
/// and the writer (both tasks on one worker, behind the other connections
/// of a burst) is the emulator's own, as its compression is.
pub(super) struct Outgoing {
    pub(super) rx: mpsc::Receiver<Outbound>,
    pub(super) abort: Arc<AtomicBool>,
    pub(super) shared: Arc<Shared>,
}

impl Stream for Outgoing {
    type Item = Result<Bytes, Aborted>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.abort.load(Ordering::Acquire) {
            return Poll::Ready(Some(Err(Aborted)));
        }
        self.rx.poll_recv(cx).map(|outbound| {
            outbound.map(|outbound| {
                if let Some((shard, sequences)) = outbound.dispatches {
                    self.shared.send_clock.note(shard, sequences);
                }
                Ok(outbound.bytes)
            })
        })
    }
}

/// Client frames decoded from the request payload.
pub(super) struct Incoming {
    pub(super) payload: web::Payload,
    pub(super) buf: BytesMut,
    pub(super) codec: Codec,
}

impl Incoming {
    /// The next frame; cancel-safe (bytes stay in `buf`).
    pub(super) async fn next(&mut self) -> Option<Result<Frame, ProtocolError>> {
        use actix_codec::Decoder as _;
        for _ in 0..1_000_000 {
            match self.codec.decode(&mut self.buf) {
                Ok(Some(frame)) => return Some(Ok(frame)),
                Ok(None) => {}
                Err(e) => return Some(Err(e)),
            }
            match self.payload.next().await {
                Some(Ok(bytes)) => self.buf.extend_from_slice(&bytes),
                Some(Err(_)) | None => return None,
            }
        }
        None
    }
}
