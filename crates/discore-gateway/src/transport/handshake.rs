//! The WebSocket opening handshake (RFC 6455, section 4) on a socket of our
//! own: one request written from a short string, and the response read
//! into a buffer that starts small and grows only as far as the response.
//!
//! An HTTP client library allocates its usual buffers for this (awc: an
//! 8 KiB read and an 8 KiB write buffer per connection). When a fleet of
//! shards connects at once, those buffers of every shard are live at the
//! same time, and the memory they leave behind stays with the process
//! between the allocations that outlive them: the handshake is where most
//! of a shard's memory went, although an open connection needs none of it.

use super::ConnectError;
use actix_codec::{AsyncRead, AsyncWrite};
use actix_http::{Uri, ws::hash_key};
use base64::{Engine as _, engine::general_purpose::STANDARD as BASE64};
use bytes::BytesMut;
use rustls::pki_types::ServerName;
use std::sync::Arc;
use tokio::{
    io::{AsyncReadExt as _, AsyncWriteExt as _},
    net::TcpStream,
};

/// A connected socket, plain or TLS.
pub(crate) trait Socket: AsyncRead + AsyncWrite + Unpin + 'static {}

impl<T: AsyncRead + AsyncWrite + Unpin + 'static> Socket for T {}

/// The first read of the response; the emulator's fits in it, a longer
/// one (Discord's carries a few more headers) grows the buffer once.
const FIRST_READ: usize = 512;
/// The largest response head accepted.
const MAX_HEAD: usize = 16 * 1024;
/// The most response headers read.
const MAX_HEADERS: usize = 32;

/// Where a `ws://` or `wss://` URL points.
struct Target<'a> {
    host: &'a str,
    port: u16,
    tls: bool,
    authority: &'a str,
    request_target: &'a str,
}

impl<'a> Target<'a> {
    fn of(uri: &'a Uri) -> Result<Self, ConnectError> {
        let tls = match uri.scheme_str() {
            Some("wss") => true,
            Some("ws") => false,
            other => return Err(ConnectError(format!("scheme {other:?} is not ws or wss"))),
        };
        let authority = uri
            .authority()
            .ok_or_else(|| ConnectError("the url has no host".to_owned()))?;
        // An IPv6 literal is written in brackets in a URL, not in a socket address.
        let host = authority
            .host()
            .trim_start_matches('[')
            .trim_end_matches(']');
        Ok(Self {
            host,
            port: authority.port_u16().unwrap_or(if tls { 443 } else { 80 }),
            tls,
            authority: authority.as_str(),
            request_target: uri.path_and_query().map_or("/", |p| p.as_str()),
        })
    }
}

/// Opens `url` and completes the opening handshake. Returns the socket and
/// the bytes that arrived after the response (the first frames, if the
/// server was quick).
pub(crate) async fn open(
    url: &str,
    tls: Arc<rustls::ClientConfig>,
) -> Result<(Box<dyn Socket>, BytesMut), ConnectError> {
    let uri: Uri = url.parse().map_err(|e| ConnectError(format!("{e}")))?;
    let target = Target::of(&uri)?;
    let tcp = TcpStream::connect((target.host, target.port))
        .await
        .map_err(|e| ConnectError(format!("connecting to {}: {e}", target.authority)))?;
    // Gateway payloads are small and each should leave at once.
    tcp.set_nodelay(true)
        .map_err(|e| ConnectError(format!("setting TCP_NODELAY: {e}")))?;
    let mut socket: Box<dyn Socket> = if target.tls {
        let name = ServerName::try_from(target.host.to_owned())
            .map_err(|e| ConnectError(format!("{}: {e}", target.host)))?;
        let stream = tokio_rustls::TlsConnector::from(tls)
            .connect(name, tcp)
            .await
            .map_err(|e| ConnectError(format!("TLS: {e}")))?;
        Box::new(stream)
    } else {
        Box::new(tcp)
    };
    let key = BASE64.encode(fastrand::u128(..).to_le_bytes());
    let request = format!(
        "GET {} HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n",
        target.request_target, target.authority
    );
    socket
        .write_all(request.as_bytes())
        .await
        .map_err(|e| ConnectError(format!("sending the handshake: {e}")))?;
    socket
        .flush()
        .await
        .map_err(|e| ConnectError(format!("sending the handshake: {e}")))?;
    drop(request);
    let rest = read_response(&mut socket, &key).await?;
    Ok((socket, rest))
}

/// Reads the response head and checks it accepts the upgrade for `key`.
async fn read_response(socket: &mut Box<dyn Socket>, key: &str) -> Result<BytesMut, ConnectError> {
    let mut head = BytesMut::with_capacity(FIRST_READ);
    // Bounded: every pass reads at least one byte, and at most MAX_HEAD
    // bytes are read.
    loop {
        if head.len() == head.capacity() {
            if head.len() >= MAX_HEAD {
                return Err(ConnectError(format!(
                    "handshake response over {MAX_HEAD} bytes"
                )));
            }
            head.reserve(head.len().min(MAX_HEAD - head.len()));
        }
        let read = socket
            .read_buf(&mut head)
            .await
            .map_err(|e| ConnectError(format!("reading the handshake response: {e}")))?;
        if read == 0 {
            return Err(ConnectError(
                "the connection closed during the handshake".to_owned(),
            ));
        }
        if let Some(length) = check_response(&head, key)? {
            // The leftover is copied out so the head's buffer goes now.
            let rest = &head[length..];
            return Ok(if rest.is_empty() {
                BytesMut::new()
            } else {
                BytesMut::from(rest)
            });
        }
    }
}

/// The length of the response head once it is complete and accepts the
/// upgrade; `None` while more bytes are needed.
fn check_response(head: &[u8], key: &str) -> Result<Option<usize>, ConnectError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut response = httparse::Response::new(&mut headers);
    let length = match response.parse(head) {
        Ok(httparse::Status::Complete(length)) => length,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(e) => return Err(ConnectError(format!("invalid handshake response: {e}"))),
    };
    let code = response.code.unwrap_or_default();
    if code != 101 {
        return Err(ConnectError(format!(
            "the gateway answered {code} {} instead of switching protocols",
            response.reason.unwrap_or_default()
        )));
    }
    let header = |name: &str| {
        response
            .headers
            .iter()
            .find(|header| header.name.eq_ignore_ascii_case(name))
            .map(|header| header.value)
    };
    let upgrade = header("upgrade").is_some_and(|v| v.eq_ignore_ascii_case(b"websocket"));
    let connection = header("connection").is_some_and(|value| {
        value
            .split(|&b| b == b',')
            .any(|token| token.trim_ascii().eq_ignore_ascii_case(b"upgrade"))
    });
    if !upgrade || !connection {
        return Err(ConnectError(
            "the handshake response does not upgrade to a WebSocket".to_owned(),
        ));
    }
    let accept = hash_key(key.as_bytes());
    if header("sec-websocket-accept").map(<[u8]>::trim_ascii) != Some(&accept[..]) {
        return Err(ConnectError(
            "the handshake response has the wrong Sec-WebSocket-Accept".to_owned(),
        ));
    }
    Ok(Some(length))
}

#[cfg(test)]
mod tests {
    use super::{Target, check_response};
    use actix_http::{Uri, ws::hash_key};

    const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";

    fn response(accept: &str, extra: &str) -> String {
        format!(
            "HTTP/1.1 101 Switching Protocols\r\nupgrade: WebSocket\r\nConnection: keep-alive, Upgrade\r\n\
             Sec-WebSocket-Accept: {accept}\r\n{extra}\r\n"
        )
    }

    #[test]
    fn the_accept_of_rfc_6455s_example() {
        // RFC 6455, section 1.3.
        assert_eq!(&hash_key(KEY.as_bytes()), b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
        let head = response("s3pPLMBiTxaQ9kYGzzhZRbK+xOo=", "");
        let with_frame = format!("{head}\u{81}\u{2}hi");
        let length = check_response(with_frame.as_bytes(), KEY).expect("accepted");
        assert_eq!(length, Some(head.len()));
        assert_eq!(
            check_response(&head.as_bytes()[..head.len() - 3], KEY).expect("partial"),
            None
        );
    }

    #[test]
    fn refusals_are_errors() {
        for head in [
            response("wrong", ""),
            "HTTP/1.1 403 Forbidden\r\ncontent-length: 0\r\n\r\n".to_owned(),
            "HTTP/1.1 101 Switching Protocols\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n"
                .to_owned(),
            "not http at all\r\n\r\n".to_owned(),
        ] {
            assert!(check_response(head.as_bytes(), KEY).is_err(), "{head}");
        }
    }

    #[test]
    fn targets() {
        let cases = [
            (
                "ws://127.0.0.1:3000/?v=10&encoding=json",
                ("127.0.0.1", 3000, false, "/?v=10&encoding=json"),
            ),
            (
                "wss://gateway.discord.gg/?v=10",
                ("gateway.discord.gg", 443, true, "/?v=10"),
            ),
            ("ws://[::1]:9/", ("::1", 9, false, "/")),
            ("ws://localhost", ("localhost", 80, false, "/")),
        ];
        for (url, (host, port, tls, request_target)) in cases {
            let uri: Uri = url.parse().expect("a uri");
            let target = Target::of(&uri).expect("a target");
            assert_eq!(
                (target.host, target.port, target.tls, target.request_target),
                (host, port, tls, request_target),
                "{url}"
            );
        }
        let uri: Uri = "http://example.com/".parse().expect("a uri");
        assert!(Target::of(&uri).is_err());
    }
}
