//! The WebSocket under a shard: URL building, connecting over TCP or
//! rustls with a handshake of our own (`handshake.rs`), a frame reader that holds no buffer while the connection is idle
//! (`reader.rs`), and a writer task per connection so that writes never
//! block the actor and a close frame is flushed even after the actor moved
//! on (`writer.rs`); after the close, that task reads until the server
//! closes (`linger.rs`).

mod handshake;
mod linger;
mod outbox;
mod reader;
mod writer;

use crate::{identify::IdentifyPermit, inflate::Compression};
use actix_http::{
    Uri,
    ws::{CloseCode as WsCloseCode, CloseReason, Codec, Frame, Message, ProtocolError},
};
use futures_util::Stream;
use std::{
    sync::{Arc, OnceLock},
    time::Duration,
};

/// The frames read from a connection.
pub(crate) type FrameStream = Box<dyn Stream<Item = Result<Frame, ProtocolError>> + Unpin>;

/// Builds the connection URL: the base with `v`, `encoding` and `compress`.
///
/// Any query on the base is replaced, so a resume URL gets exactly the query
/// of the original connection; a base without a path gets `/`.
pub(crate) fn gateway_url(
    base: &str,
    version: u8,
    compression: Compression,
) -> Result<String, String> {
    let uri: Uri = base.parse().map_err(|e| format!("{e}"))?;
    let scheme = uri.scheme_str().ok_or("the url has no scheme")?;
    if !matches!(scheme, "ws" | "wss") {
        return Err(format!("scheme {scheme} is not ws or wss"));
    }
    let authority = uri.authority().ok_or("the url has no host")?;
    let path = match uri.path() {
        "" => "/",
        path => path,
    };
    let mut url = format!("{scheme}://{authority}{path}?v={version}&encoding=json");
    if let Some(compress) = compression.query_value() {
        url.push_str("&compress=");
        url.push_str(compress);
    }
    Ok(url)
}

/// The default TLS configuration: webpki roots, ring, HTTP/1.1 only (a
/// WebSocket upgrade cannot run over HTTP/2). Built once per process.
pub(crate) fn default_tls() -> Result<Arc<rustls::ClientConfig>, String> {
    static CONFIG: OnceLock<Result<Arc<rustls::ClientConfig>, String>> = OnceLock::new();
    CONFIG
        .get_or_init(|| {
            let roots =
                rustls::RootCertStore::from_iter(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
            tls_with_roots(roots)
                .map(Arc::new)
                .map_err(|e| e.to_string())
        })
        .clone()
}

/// A TLS configuration that trusts exactly `roots`, with full certificate
/// verification. Use it with [`crate::ShardConfig::tls_config`] to trust a
/// private certificate authority.
///
/// # Errors
///
/// If the crypto provider supports none of the safe protocol versions.
pub fn tls_with_roots(roots: rustls::RootCertStore) -> Result<rustls::ClientConfig, rustls::Error> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// Why a connection could not be opened.
#[derive(Debug)]
pub(crate) struct ConnectError(pub(crate) String);

/// The sending half of an open connection.
#[derive(Debug)]
pub(crate) struct Connection {
    writer: outbox::OutboxSender,
}

impl Connection {
    /// Queues a text frame.
    pub(crate) fn send_text(&self, text: String) {
        // A failed send means the writer ended: the read side will notice.
        let _ = self.writer.send(Message::Text(text.into()));
    }

    /// Queues Identify. Once the frame is written its permit waits for the
    /// gateway's answer ([`Connection::identify_answered`]) and is reported
    /// sent at that time, or when the connection ends unanswered; if the
    /// connection ends before the write, the permit is dropped unused (the
    /// slot returns to the queue). A permit expired by then is not used:
    /// the writer closes the connection instead, and the shard reconnects
    /// and asks again.
    pub(crate) fn send_identify(&self, text: String, permit: IdentifyPermit) {
        let _ = self
            .writer
            .send_identify(Message::Text(text.into()), permit);
    }

    /// The gateway answered this connection's Identify (READY or an
    /// Invalid Session) at `at`: its permit is reported sent then.
    pub(crate) fn identify_answered(&self, at: std::time::Instant) {
        self.writer.identify_answered(at);
    }

    /// Answers a ping.
    pub(crate) fn pong(&self, payload: bytes::Bytes) {
        let _ = self.writer.send(Message::Pong(payload));
    }

    /// Sends a close frame. The shard moves on at once; the connection's
    /// task shuts its side and reads until the server closes (`linger.rs`).
    pub(crate) fn close(self, code: u16) {
        let reason = CloseReason {
            code: WsCloseCode::from(code),
            description: None,
        };
        let _ = self.writer.send(Message::Close(Some(reason)));
    }
}

/// Opens a WebSocket to `url`.
pub(crate) async fn connect(
    url: String,
    tls: Arc<rustls::ClientConfig>,
    timeout: Duration,
    max_frame_size: usize,
) -> Result<(Connection, FrameStream), ConnectError> {
    let (socket, rest) = actix_rt::time::timeout(timeout, handshake::open(&url, tls))
        .await
        .map_err(|_| ConnectError(format!("no connection within {timeout:?}")))??;
    let codec = Codec::new().client_mode().max_size(max_frame_size);
    let (read, write) = tokio::io::split(socket);
    let (read, read_back) = linger::hand_back(read);
    let (sender, outbox) = outbox::outbox();
    let writer_codec = codec.clone();
    actix_rt::spawn(async move {
        writer::run(write, writer_codec, outbox, timeout).await;
        linger::drain(read_back, timeout).await;
    });
    let frames = reader::FrameReader::new(read, codec, rest);
    Ok((Connection { writer: sender }, Box::new(frames)))
}

#[cfg(test)]
mod tests {
    use super::gateway_url;
    use crate::inflate::Compression;

    #[test]
    fn urls_get_exactly_our_query() {
        let cases = [
            (
                "wss://gateway.discord.gg",
                "wss://gateway.discord.gg/?v=10&encoding=json",
            ),
            (
                "wss://gateway.discord.gg/",
                "wss://gateway.discord.gg/?v=10&encoding=json",
            ),
            (
                "wss://gateway.discord.gg/?v=6&x=1",
                "wss://gateway.discord.gg/?v=10&encoding=json",
            ),
            (
                "ws://127.0.0.1:3000/resume",
                "ws://127.0.0.1:3000/resume?v=10&encoding=json",
            ),
        ];
        for (base, expected) in cases {
            assert_eq!(
                gateway_url(base, 10, Compression::None).as_deref(),
                Ok(expected)
            );
        }
        assert_eq!(
            gateway_url("ws://h:1", 10, Compression::ZstdStream).as_deref(),
            Ok("ws://h:1/?v=10&encoding=json&compress=zstd-stream")
        );
    }

    #[test]
    fn bad_urls_are_errors() {
        for base in [
            "",
            "not a url",
            "http://example.com",
            "gateway.discord.gg",
            "wss://",
        ] {
            assert!(gateway_url(base, 10, Compression::None).is_err(), "{base}");
        }
    }
}
