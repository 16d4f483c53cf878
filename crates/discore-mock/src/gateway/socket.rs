//! The two halves of a connection's socket as actix hands them over: the
//! response body that carries the emulator's frames (or aborts TCP), and
//! the reader that decodes the client's frames from the request payload.

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

/// The response body: frames from the connection task, or an abort.
pub(super) struct Outgoing {
    pub(super) rx: mpsc::Receiver<Bytes>,
    pub(super) abort: Arc<AtomicBool>,
}

impl Stream for Outgoing {
    type Item = Result<Bytes, Aborted>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.abort.load(Ordering::Acquire) {
            return Poll::Ready(Some(Err(Aborted)));
        }
        self.rx.poll_recv(cx).map(|frame| frame.map(Ok))
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
