//! The writer task of one connection.

use super::Outgoing;
use actix_codec::{AsyncWrite, Encoder as _};
use actix_http::ws::{Codec, Message};
use bytes::BytesMut;
use std::time::{Duration, Instant};
use tokio::{io::AsyncWriteExt as _, sync::mpsc};

/// A frame buffer grown past this by a large command is let go after the
/// write, so an idle connection keeps a small one.
const KEPT_CAPACITY: usize = 1024;

/// Encodes and writes every queued message, in order, until a close frame
/// is written, a write fails or takes longer than `timeout`, or the sending
/// side is dropped; then shuts the socket down. An Identify's permit is
/// reported sent when its frame is written, and a permit that expired
/// before its turn ends the connection unsent.
pub(super) async fn run<W: AsyncWrite + Unpin>(
    mut io: W,
    mut codec: Codec,
    mut outbox: mpsc::UnboundedReceiver<Outgoing>,
    timeout: Duration,
) {
    let mut buffer = BytesMut::new();
    while let Some(Outgoing { message, permit }) = outbox.recv().await {
        if let Some(permit) = &permit
            && !permit.is_usable(Instant::now())
        {
            log::warn!(
                "shard {}: identify permit expired before the write; closing to ask again",
                permit.shard()
            );
            break;
        }
        let closing = matches!(message, Message::Close(_));
        buffer.clear();
        if let Err(error) = codec.encode(message, &mut buffer) {
            log::warn!("websocket frame not encoded: {error}");
            break;
        }
        let written = actix_rt::time::timeout(timeout, async {
            io.write_all(&buffer).await?;
            io.flush().await
        })
        .await;
        if let Some(permit) = permit {
            // Written or not, once the write began the frame may have
            // reached the gateway: count it as sent.
            permit.sent(Instant::now());
        }
        if buffer.capacity() > KEPT_CAPACITY {
            buffer = BytesMut::new();
        }
        if closing || !matches!(written, Ok(Ok(()))) {
            break;
        }
    }
    let _ = actix_rt::time::timeout(timeout, io.shutdown()).await;
}

#[cfg(test)]
mod tests {
    use super::run;
    use actix_codec::Decoder as _;
    use actix_http::ws::{CloseCode, CloseReason, Codec, Frame, Message};
    use bytes::BytesMut;
    use std::time::Duration;
    use tokio::sync::mpsc;

    #[actix_rt::test]
    async fn writes_masked_frames_in_order_and_stops_after_close() {
        let (sender, outbox) = mpsc::unbounded_channel::<super::Outgoing>();
        sender
            .send(Message::Text("one".into()).into())
            .expect("open");
        sender
            .send(Message::Text("two".into()).into())
            .expect("open");
        let reason = CloseReason {
            code: CloseCode::from(4000),
            description: None,
        };
        sender
            .send(Message::Close(Some(reason)).into())
            .expect("open");
        sender
            .send(Message::Text("after close".into()).into())
            .expect("open");
        let mut wire = Vec::new();
        run(
            &mut wire,
            Codec::new().client_mode(),
            outbox,
            Duration::from_secs(5),
        )
        .await;
        // The server side of the codec refuses unmasked frames.
        let mut server = Codec::new();
        let mut bytes = BytesMut::from(wire.as_slice());
        let mut frames = Vec::new();
        while let Some(frame) = server.decode(&mut bytes).expect("masked client frames") {
            frames.push(frame);
        }
        assert_eq!(frames.len(), 3);
        assert!(matches!(&frames[0], Frame::Text(t) if t.as_ref() == b"one"));
        assert!(matches!(&frames[1], Frame::Text(t) if t.as_ref() == b"two"));
        assert!(matches!(&frames[2], Frame::Close(Some(r)) if u16::from(r.code) == 4000));
    }
}
