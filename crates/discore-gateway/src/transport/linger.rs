//! After the close frame: reading until the server closes the connection.
//!
//! A shard that closes stops reading at once, while the gateway may still be
//! sending it events. Were the socket dropped then, the kernel would reset
//! the connection because of the unread data, and a server busy writing
//! sees its next write fail before it reads the close frame waiting in its
//! buffer: the close (1000 ends the session, 4000 keeps it) would be lost,
//! and the session would stay online until its heartbeats time out.
//! RFC 6455 §7.1.1 asks a client to wait for the server to close the TCP
//! connection; so the read half goes back to the connection's writer task
//! when the reader is dropped, and once the writer has sent the close frame
//! and shut its side, it reads and discards what is left until the server
//! closes, within the connection's timeout.

use actix_codec::{AsyncRead, ReadBuf};
use std::{
    io,
    pin::Pin,
    task::{Context, Poll},
    time::Duration,
};
use tokio::{io::AsyncReadExt as _, sync::oneshot};

/// A read half that goes back to the writer task when dropped.
pub(super) struct HandedBack<R> {
    /// Taken only when dropped.
    read: Option<R>,
    back: Option<oneshot::Sender<R>>,
}

/// Wraps `read`; the receiver gets it back when the wrapper is dropped.
pub(super) fn hand_back<R>(read: R) -> (HandedBack<R>, oneshot::Receiver<R>) {
    let (back, receiver) = oneshot::channel();
    let read = HandedBack {
        read: Some(read),
        back: Some(back),
    };
    (read, receiver)
}

impl<R: AsyncRead + Unpin> AsyncRead for HandedBack<R> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buffer: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match &mut self.get_mut().read {
            Some(read) => Pin::new(read).poll_read(cx, buffer),
            // Unreachable while the wrapper lives; reads as the end.
            None => Poll::Ready(Ok(())),
        }
    }
}

impl<R> Drop for HandedBack<R> {
    fn drop(&mut self) {
        if let (Some(read), Some(back)) = (self.read.take(), self.back.take()) {
            // The writer task may be gone already: then so is the socket.
            let _ = back.send(read);
        }
    }
}

/// Waits for the read half and discards what arrives until the server
/// closes the connection, it fails, or `timeout` passes.
pub(super) async fn drain<R: AsyncRead + Unpin>(read: oneshot::Receiver<R>, timeout: Duration) {
    let _ = actix_rt::time::timeout(timeout, async {
        let Ok(mut read) = read.await else {
            return;
        };
        // Allocated only now: a connection keeps no buffer while it runs.
        let mut sink = vec![0; 4096];
        while let Ok(1..) = read.read(&mut sink).await {}
    })
    .await;
}

#[cfg(test)]
mod tests {
    use super::{super::outbox::outbox, super::writer, drain, hand_back};
    use actix_codec::Decoder as _;
    use actix_http::ws::{CloseCode, CloseReason, Codec, Frame, Message};
    use bytes::BytesMut;
    use std::time::Duration;
    use tokio::{
        io::{AsyncReadExt as _, AsyncWriteExt as _},
        net::{TcpListener, TcpStream},
    };

    /// The server is still sending when the client closes, and reads only
    /// after the client has finished writing: it still gets the close
    /// frame, then the end of the stream, and no reset.
    #[actix_rt::test]
    async fn the_close_reaches_a_server_that_is_still_sending() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bound");
        let address = listener.local_addr().expect("address");
        let client = TcpStream::connect(address).await.expect("connected");
        let (mut server, _) = listener.accept().await.expect("accepted");

        let (read, write) = tokio::io::split(client);
        let (read, read_back) = hand_back(read);
        let (sender, outbox) = outbox();
        let timeout = Duration::from_secs(10);
        let client = actix_rt::spawn(async move {
            writer::run(write, Codec::new().client_mode(), outbox, timeout).await;
            drain(read_back, timeout).await;
        });
        // Events the client will never read, then the shard stops reading
        // and closes.
        server.write_all(&[b'x'; 32 * 1024]).await.expect("sent");
        drop(read);
        let reason = CloseReason {
            code: CloseCode::Normal,
            description: None,
        };
        assert!(sender.send(Message::Close(Some(reason))));
        drop(sender);

        // The server goes on sending for a while, as a gateway with events
        // queued would; a reset would fail these writes.
        for _ in 0..20 {
            server.write_all(&[b'y'; 1024]).await.expect("no reset");
            actix_rt::time::sleep(Duration::from_millis(2)).await;
        }
        let mut wire = Vec::new();
        actix_rt::time::timeout(timeout, server.read_to_end(&mut wire))
            .await
            .expect("the client shut its side")
            .expect("no reset");
        let mut frames = BytesMut::from(wire.as_slice());
        let frame = Codec::new().decode(&mut frames).expect("a client frame");
        assert!(matches!(frame, Some(Frame::Close(Some(r))) if r.code == CloseCode::Normal));
        // The server closes: the client's linger ends.
        drop(server);
        actix_rt::time::timeout(timeout, client)
            .await
            .expect("the linger ends when the server closes")
            .expect("the client task");
    }
}
