//! The writer task of one connection.

use super::outbox::{OutboxReceiver, Outgoing};
use actix_codec::{AsyncWrite, Encoder as _};
use actix_http::ws::{Codec, Message};
use bytes::BytesMut;
use std::time::{Duration, Instant};
use tokio::io::AsyncWriteExt as _;

/// Encodes and writes every queued message, in order, until a close frame
/// is written, a write fails or takes longer than `timeout`, or the sending
/// side is dropped; then shuts the socket down. An Identify's permit is
/// kept, once its frame is written, until the gateway answers it (see
/// `WrittenIdentify`), and a permit that expired before its turn ends the
/// connection unsent (the shard asks again).
pub(super) async fn run<W: AsyncWrite + Unpin>(
    mut io: W,
    mut codec: Codec,
    mut outbox: OutboxReceiver,
    timeout: Duration,
) {
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
        // A buffer per frame: an idle connection keeps none between its
        // heartbeats, ~41 s apart.
        let mut buffer = BytesMut::new();
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
            // Once the write began the frame may have reached the gateway,
            // written in full or not: count it as sent, when answered.
            outbox.identify_written(permit);
        }
        if closing || !matches!(written, Ok(Ok(()))) {
            break;
        }
    }
    let _ = actix_rt::time::timeout(timeout, io.shutdown()).await;
}

#[cfg(test)]
mod tests {
    use super::{super::outbox::outbox, run};
    use actix_codec::Decoder as _;
    use actix_http::ws::{CloseCode, CloseReason, Codec, Frame, Message};
    use bytes::BytesMut;
    use std::time::Duration;

    #[actix_rt::test]
    async fn writes_masked_frames_in_order_and_stops_after_close() {
        let (sender, outbox) = outbox();
        assert!(sender.send(Message::Text("one".into())));
        assert!(sender.send(Message::Text("two".into())));
        let reason = CloseReason {
            code: CloseCode::from(4000),
            description: None,
        };
        assert!(sender.send(Message::Close(Some(reason))));
        assert!(sender.send(Message::Text("after close".into())));
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
