use crate::harness::*;
use discore::{ShardStartError, tls_with_roots};
use discore_mock::MockServer;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use std::{net::SocketAddr, sync::Arc};
use tokio::net::{TcpListener, TcpStream};

/// A TLS front for the emulator with a self-signed certificate for 127.0.0.1.
async fn tls_front(upstream: SocketAddr) -> (u16, CertificateDer<'static>) {
    let generated =
        rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned()]).expect("a certificate");
    let certificate = generated.cert.der().clone();
    let key = PrivateKeyDer::from(PrivatePkcs8KeyDer::from(
        generated.signing_key.serialize_der(),
    ));
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_no_client_auth()
        .with_single_cert(vec![certificate.clone()], key)
        .expect("server config");
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("address").port();
    // Runs until the test's system stops; every accepted stream is proxied.
    actix_rt::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            actix_rt::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                if let Ok(mut plain) = TcpStream::connect(upstream).await {
                    let _ = tokio::io::copy_bidirectional(&mut tls, &mut plain).await;
                }
            });
        }
    });
    (port, certificate)
}

/// `wss://` verifies certificates: a self-signed gateway is refused, unless
/// the user explicitly trusts its certificate.
#[actix_rt::test]
async fn self_signed_gateway_is_refused_unless_trusted() {
    let mock = MockServer::start(mock_config()).await.expect("emulator");
    let (port, certificate) = tls_front(mock.addr()).await;
    let url = format!("wss://127.0.0.1:{port}");

    let config = shard_config(&mock).gateway_url(&url).start_attempts(2);
    let error = shard(config, &Recorded::start())
        .start()
        .await
        .expect_err("untrusted");
    assert_eq!(error, ShardStartError::Unreachable { attempts: 2 });
    assert!(
        mock.observed().connections.is_empty(),
        "the TLS handshake failed first"
    );

    let mut roots = rustls::RootCertStore::empty();
    roots.add(certificate).expect("a valid certificate");
    let trusted = Arc::new(tls_with_roots(roots).expect("a TLS config"));
    let config = shard_config(&mock).gateway_url(&url).tls_config(trusted);
    let recorded = Recorded::start();
    let _shard = shard(config, &recorded)
        .start()
        .await
        .expect("trusted: connects");
    recorded.wait_for_event("GUILD_CREATE", 3).await;
}
