//! Loopback tests of TLS (RFC 3261 §26.2.1) and SIP over WebSocket (RFC 7118):
//! real sockets on 127.0.0.1, ephemeral ports, a test CA made at test time with
//! rcgen, Rust TLS and WebSocket clients, every wait bounded.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use rustls_pki_types::pem::PemObject;
use sip_message::Transport;
use sip_transaction::Flow;
use sip_transport::rustls::RootCertStore;
use sip_transport::{
    CloseReason, FramingError, Inbound, Limits, TlsConfig, TransportConfig, TransportError,
    Transports,
};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::time::timeout;
use tokio_rustls::{TlsAcceptor, TlsConnector};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{WebSocketStream, client_async};

mod support;

use support::pki::TestPki;
use support::{
    WAIT, any_port, bind, closed_by_peer, message, next, next_message, quiet, read_exact_bytes,
    transmit,
};

// ---------------------------------------------------------------- PKI

/// The test PKI, in a directory of its own.
fn pki(name: &str) -> TestPki {
    TestPki::generate(&std::env::temp_dir().join(format!(
        "sip-transport-secure-{}-{name}",
        std::process::id()
    )))
}

/// Server certificate, and client trust in the test CA.
fn tls_config(pki: &TestPki) -> TlsConfig {
    TlsConfig::from_pem_files(&pki.certificate, &pki.private_key, Some(&pki.ca)).unwrap()
}

/// A client trusting the test CA.
fn connector(pki: &TestPki) -> TlsConnector {
    let mut roots = RootCertStore::empty();
    let ca = std::fs::read(&pki.ca).unwrap();
    for cert in rustls_pki_types::CertificateDer::pem_slice_iter(&ca) {
        roots.add(cert.unwrap()).unwrap();
    }
    TlsConnector::from(Arc::new(sip_transport::client_config(roots).unwrap()))
}

// ---------------------------------------------------------------- helpers

/// No UDP or TCP; the listeners the test asks for.
fn config() -> TransportConfig {
    TransportConfig::new(vec![], vec![])
}

/// The test PKI's TLS configuration and one listener of `transport` (none for UDP).
fn secure_config(pki: &TestPki, transport: Transport) -> TransportConfig {
    let mut cfg = config();
    cfg.tls = Some(tls_config(pki));
    match transport {
        Transport::Tls => cfg.tls_listen = vec![any_port()],
        Transport::Ws => cfg.ws = vec![any_port()],
        Transport::Wss => cfg.wss = vec![any_port()],
        _ => {}
    }
    cfg
}

/// A message as a WebSocket client writes it: no Content-Length (RFC 7118 §5.1
/// framing is the WebSocket message itself), an `.invalid` Via host (§5.2).
fn ws_message(tag: &str) -> String {
    format!(
        "OPTIONS sip:{tag}@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/WS df7jal23ls0d.invalid;branch=z9hG4bK{tag}\r\n\
         Call-ID: {tag}\r\nCSeq: 1 OPTIONS\r\n\r\n"
    )
}

async fn next_closed(rx: &mut mpsc::Receiver<Inbound>) -> (Flow, CloseReason) {
    match next(rx).await {
        Inbound::ConnectionClosed { flow, reason } => (flow, reason),
        other => panic!("expected a close, got {other:?}"),
    }
}

fn flow_to(transport: Transport, remote: SocketAddr) -> Flow {
    Flow {
        transport,
        local: any_port(),
        remote,
        connection: None,
    }
}

async fn wait_for(
    layer: &Transports,
    what: &str,
    done: impl Fn(&sip_transport::TransportStats) -> bool,
) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while !done(&layer.stats()) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}: {:?}",
            layer.stats()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn tls_client(
    pki: &TestPki,
    addr: SocketAddr,
    name: &str,
) -> tokio_rustls::client::TlsStream<TcpStream> {
    let tcp = TcpStream::connect(addr).await.unwrap();
    let name = rustls_pki_types::ServerName::try_from(name.to_owned()).unwrap();
    timeout(WAIT, connector(pki).connect(name, tcp))
        .await
        .unwrap()
        .expect("TLS handshake")
}

/// The WebSocket opening handshake as a SIP client makes it, offering `protocol`.
async fn ws_client<S>(
    stream: S,
    addr: SocketAddr,
    protocol: Option<&str>,
) -> Result<WebSocketStream<S>, tungstenite::Error>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut request = format!("ws://{addr}/").into_client_request().unwrap();
    if let Some(p) = protocol {
        request
            .headers_mut()
            .insert("Sec-WebSocket-Protocol", p.parse().unwrap());
    }
    let (ws, response) = timeout(WAIT, client_async(request, stream))
        .await
        .unwrap()?;
    assert_eq!(
        response
            .headers()
            .get("Sec-WebSocket-Protocol")
            .map(|v| v.to_str().unwrap()),
        Some("sip"),
        "RFC 7118 §4.1: the answer names the sip subprotocol"
    );
    Ok(ws)
}

/// A layer with one WebSocket listener; `edit` changes the rest of the configuration.
async fn ws_layer(
    edit: impl FnOnce(&mut TransportConfig),
) -> (Transports, mpsc::Receiver<Inbound>, SocketAddr) {
    let mut cfg = config();
    cfg.ws = vec![any_port()];
    edit(&mut cfg);
    let (layer, rx) = bind(cfg).await;
    let addr = layer.local_addr(Transport::Ws).unwrap();
    (layer, rx, addr)
}

/// A SIP WebSocket client connected to `addr` over plain TCP.
async fn sip_ws(addr: SocketAddr) -> WebSocketStream<TcpStream> {
    let tcp = TcpStream::connect(addr).await.unwrap();
    ws_client(tcp, addr, Some("sip")).await.unwrap()
}

/// Asserts the upgrade was refused with HTTP 400.
fn assert_refused_400<S>(result: Result<WebSocketStream<S>, tungstenite::Error>) {
    match result {
        Err(tungstenite::Error::Http(response)) => assert_eq!(response.status(), 400),
        Err(other) => panic!("expected an HTTP error, got {other:?}"),
        Ok(_) => panic!("the upgrade was accepted"),
    }
}

async fn ws_next<S: AsyncRead + AsyncWrite + Unpin>(ws: &mut WebSocketStream<S>) -> Message {
    timeout(WAIT, ws.next())
        .await
        .expect("timed out waiting for a WebSocket message")
        .expect("WebSocket ended")
        .expect("WebSocket error")
}

// ---------------------------------------------------------------- TLS

#[tokio::test]
async fn tls_options_in_and_the_answer_back_on_the_same_connection() {
    let pki = pki("tls-rt");
    let (layer, mut rx) = bind(secure_config(&pki, Transport::Tls)).await;
    let listener = layer.local_addr(Transport::Tls).unwrap();

    let mut client = tls_client(&pki, listener, "sip.test").await;
    let client_addr = client.get_ref().0.local_addr().unwrap();
    let request = message("tls", "");
    client.write_all(request.as_bytes()).await.unwrap();
    let (flow, data) = next_message(&mut rx).await;
    assert_eq!(data, request.as_bytes());
    assert_eq!(flow.transport, Transport::Tls);
    assert_eq!(flow.local, listener);
    assert_eq!(flow.remote, client_addr);
    assert!(flow.connection.is_some());

    let response = message("answer", "ok");
    layer.send(transmit(flow, response.clone())).await.unwrap();
    assert_eq!(
        read_exact_bytes(&mut client, response.len()).await,
        response.as_bytes()
    );
    // CRLFCRLF keep-alive works over TLS as over TCP (RFC 5626 §3.5.1).
    client.write_all(b"\r\n\r\n").await.unwrap();
    assert_eq!(read_exact_bytes(&mut client, 2).await, b"\r\n");

    let stats = layer.stats();
    assert_eq!(stats.tls_handshakes, 1);
    assert_eq!(stats.tls_open, 1);
    assert_eq!(stats.tcp_open, 0);
    assert_eq!(stats.connections_accepted, 1);
    assert_eq!(stats.messages_in, 1);
    assert_eq!(stats.messages_out, 1);
    assert_eq!(stats.handshakes_pending, 0);
    layer.shutdown().await;
}

#[tokio::test]
async fn outbound_tls_sends_the_server_name_and_verifies_against_the_ca() {
    let pki = pki("tls-sni");
    let server_config = tls_config(&pki).server;
    let acceptor = TlsAcceptor::from(server_config);
    let listener = TcpListener::bind(any_port()).await.unwrap();
    let server_addr = listener.local_addr().unwrap();
    let first = message("first", "");
    let second = message("second", "");
    let (want_first, want_second) = (first.len(), second.len());
    let server = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let mut tls = acceptor.accept(tcp).await.unwrap();
        let sni = tls.get_ref().1.server_name().map(str::to_owned);
        let got_first = read_exact_bytes(&mut tls, want_first).await;
        tls.write_all(message("answer", "").as_bytes())
            .await
            .unwrap();
        // The second request comes on the same connection (RFC 3261 §18.1.1 reuse).
        let got_second = read_exact_bytes(&mut tls, want_second).await;
        (sni, got_first, got_second)
    });

    let (layer, mut rx) = bind(secure_config(&pki, Transport::Udp)).await;
    layer
        .send_with_server_name(
            transmit(flow_to(Transport::Tls, server_addr), first.clone()),
            "sip.test",
        )
        .await
        .unwrap();
    let (flow, data) = next_message(&mut rx).await;
    assert_eq!(data, message("answer", "").as_bytes());
    assert_eq!(flow.transport, Transport::Tls);
    assert_eq!(flow.remote, server_addr);
    layer
        .send(transmit(
            flow_to(Transport::Tls, server_addr),
            second.clone(),
        ))
        .await
        .unwrap();
    let (sni, got_first, got_second) = timeout(WAIT, server).await.unwrap().unwrap();
    assert_eq!(sni.as_deref(), Some("sip.test"));
    assert_eq!(got_first, first.as_bytes());
    assert_eq!(got_second, second.as_bytes());
    let stats = layer.stats();
    assert_eq!(stats.connections_connected, 1);
    assert_eq!(stats.tls_handshakes, 1);
    layer.shutdown().await;
}

#[tokio::test]
async fn tls_between_two_layers_by_ip_address() {
    let pki = pki("tls-ip");
    let (server, mut server_rx) = bind(secure_config(&pki, Transport::Tls)).await;
    let server_addr = server.local_addr(Transport::Tls).unwrap();
    let (client, mut client_rx) = bind(secure_config(&pki, Transport::Udp)).await;

    // No name: the certificate's IP SAN (127.0.0.1) is verified.
    let request = message("byip", "");
    client
        .send(transmit(
            flow_to(Transport::Tls, server_addr),
            request.clone(),
        ))
        .await
        .unwrap();
    let (flow, data) = next_message(&mut server_rx).await;
    assert_eq!(data, request.as_bytes());
    assert_eq!(flow.transport, Transport::Tls);
    server
        .send(transmit(flow, message("answer", "")))
        .await
        .unwrap();
    let (back, data) = next_message(&mut client_rx).await;
    assert_eq!(data, message("answer", "").as_bytes());
    assert_eq!(back.transport, Transport::Tls);
    assert_eq!(client.connections(), vec![back]);
    client.shutdown().await;
    server.shutdown().await;
}

#[tokio::test]
async fn outbound_tls_to_a_name_the_certificate_lacks_is_a_transport_error() {
    let pki = pki("tls-badname");
    let (server, mut server_rx) = bind(secure_config(&pki, Transport::Tls)).await;
    let server_addr = server.local_addr(Transport::Tls).unwrap();
    let (layer, mut rx) = bind(secure_config(&pki, Transport::Udp)).await;

    layer
        .send_with_server_name(
            transmit(flow_to(Transport::Tls, server_addr), message("x", "")),
            "other.test",
        )
        .await
        .unwrap();
    match next(&mut rx).await {
        Inbound::TransportError { flow, error } => {
            assert_eq!(flow.remote, server_addr);
            assert!(
                matches!(error, TransportError::TlsHandshake { .. }),
                "{error:?}"
            );
            assert!(error.to_string().contains("certificate"), "{error}");
        }
        other => panic!("expected a transport error, got {other:?}"),
    }
    assert_eq!(layer.stats().tls_handshake_failures, 1);
    assert_eq!(layer.stats().connect_errors, 1);
    assert!(layer.connections().is_empty());
    quiet(&mut server_rx).await;
    server.shutdown().await;
    layer.shutdown().await;
}

#[tokio::test]
async fn outbound_tls_needs_a_tls_configuration_and_trusted_roots() {
    let pki = pki("tls-noroots");
    let remote: SocketAddr = "127.0.0.1:5061".parse().unwrap();
    let (bare, _rx) = bind(config()).await;
    let err = bare
        .send(transmit(flow_to(Transport::Tls, remote), message("x", "")))
        .await
        .unwrap_err();
    assert!(
        matches!(err, TransportError::TlsNotConfigured { .. }),
        "{err:?}"
    );

    let mut cfg = config();
    cfg.tls = Some(TlsConfig::from_pem_files(&pki.certificate, &pki.private_key, None).unwrap());
    let (layer, _rx) = bind(cfg).await;
    let err = layer
        .send(transmit(flow_to(Transport::Tls, remote), message("x", "")))
        .await
        .unwrap_err();
    assert!(matches!(err, TransportError::NoTlsRoots { .. }), "{err:?}");
    assert!(err.to_string().contains("no trusted CA"), "{err}");
    let err = layer
        .send_with_server_name(
            transmit(flow_to(Transport::Tls, remote), message("x", "")),
            "bad name!",
        )
        .await
        .unwrap_err();
    assert!(matches!(err, TransportError::NoTlsRoots { .. }), "{err:?}");
    assert!(layer.connections().is_empty());
}

#[tokio::test]
async fn tls_listener_without_a_tls_configuration_is_refused_at_bind() {
    let mut cfg = config();
    cfg.tls_listen = vec![any_port()];
    let err = Transports::bind(cfg).await.unwrap_err();
    assert!(
        matches!(
            err,
            TransportError::TlsNotConfigured {
                transport: Transport::Tls
            }
        ),
        "{err:?}"
    );
    let mut cfg = config();
    cfg.wss = vec![any_port()];
    let err = Transports::bind(cfg).await.unwrap_err();
    assert!(
        matches!(
            err,
            TransportError::TlsNotConfigured {
                transport: Transport::Wss
            }
        ),
        "{err:?}"
    );
}

#[tokio::test]
async fn a_silent_client_is_dropped_after_the_handshake_timeout() {
    let pki = pki("tls-timeout");
    let mut cfg = config();
    cfg.tls_listen = vec![any_port()];
    cfg.ws = vec![any_port()];
    cfg.tls = Some(tls_config(&pki));
    cfg.handshake_timeout = Duration::from_millis(200);
    let (layer, mut rx) = bind(cfg).await;

    let mut silent = TcpStream::connect(layer.local_addr(Transport::Tls).unwrap())
        .await
        .unwrap();
    // A WebSocket client that never finishes its Upgrade request.
    let mut slow = TcpStream::connect(layer.local_addr(Transport::Ws).unwrap())
        .await
        .unwrap();
    slow.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    wait_for(&layer, "two pending handshakes", |s| {
        s.handshakes_pending == 2
    })
    .await;
    assert!(closed_by_peer(&mut silent).await);
    assert!(closed_by_peer(&mut slow).await);
    wait_for(&layer, "the timeouts", |s| s.handshake_timeouts == 2).await;
    let stats = layer.stats();
    assert_eq!(stats.handshakes_pending, 0);
    assert_eq!(stats.connections_accepted, 0);
    assert!(layer.connections().is_empty());
    quiet(&mut rx).await;
    layer.shutdown().await;
}

#[tokio::test]
async fn plain_sip_on_the_tls_port_fails_the_handshake() {
    let pki = pki("tls-plain");
    let (layer, mut rx) = bind(secure_config(&pki, Transport::Tls)).await;
    let mut plain = TcpStream::connect(layer.local_addr(Transport::Tls).unwrap())
        .await
        .unwrap();
    plain
        .write_all(message("plain", "").as_bytes())
        .await
        .unwrap();
    assert!(closed_by_peer(&mut plain).await);
    wait_for(&layer, "the failure", |s| s.tls_handshake_failures == 1).await;
    quiet(&mut rx).await;

    // The listener still serves a real TLS client.
    let mut client = tls_client(&pki, layer.local_addr(Transport::Tls).unwrap(), "sip.test").await;
    client
        .write_all(message("ok", "").as_bytes())
        .await
        .unwrap();
    let (flow, _) = next_message(&mut rx).await;
    assert_eq!(flow.transport, Transport::Tls);
    layer.shutdown().await;
}

#[tokio::test]
async fn handshakes_count_against_max_connections() {
    let pki = pki("tls-limit");
    let mut cfg = secure_config(&pki, Transport::Tls);
    cfg.max_connections = 1;
    let (layer, _rx) = bind(cfg).await;
    let addr = layer.local_addr(Transport::Tls).unwrap();
    let _first = TcpStream::connect(addr).await.unwrap();
    wait_for(&layer, "one pending handshake", |s| {
        s.handshakes_pending == 1
    })
    .await;
    let mut second = TcpStream::connect(addr).await.unwrap();
    assert!(closed_by_peer(&mut second).await);
    assert_eq!(layer.stats().connections_rejected, 1);
    layer.shutdown().await;
}

// ---------------------------------------------------------------- WebSocket

#[tokio::test]
async fn local_addrs_list_every_listener_in_order() {
    let pki = pki("addrs");
    let mut cfg = TransportConfig::new(vec![any_port()], vec![any_port()]);
    cfg.tls_listen = vec![any_port()];
    cfg.ws = vec![any_port()];
    cfg.wss = vec![any_port()];
    cfg.tls = Some(tls_config(&pki));
    let (layer, _rx) = bind(cfg).await;
    let transports: Vec<Transport> = layer.local_addrs().iter().map(|(t, _)| *t).collect();
    assert_eq!(
        transports,
        [
            Transport::Udp,
            Transport::Tcp,
            Transport::Tls,
            Transport::Ws,
            Transport::Wss
        ]
    );
    assert!(layer.local_addrs().iter().all(|(_, a)| a.port() != 0));
    assert_eq!(
        layer.sent_by(Transport::Ws).unwrap().port,
        layer.local_addr(Transport::Ws).unwrap().port()
    );
    layer.shutdown().await;
}

#[tokio::test]
async fn ws_message_in_and_the_answer_back_on_the_same_connection() {
    let (layer, mut rx, addr) = ws_layer(|_| {}).await;
    let tcp = TcpStream::connect(addr).await.unwrap();
    let client_addr = tcp.local_addr().unwrap();
    let mut ws = ws_client(tcp, addr, Some("sip")).await.unwrap();

    // No Content-Length: the WebSocket message is the frame (RFC 7118 §5.1).
    let request = ws_message("ws");
    ws.send(Message::text(request.clone())).await.unwrap();
    let (flow, data) = next_message(&mut rx).await;
    assert_eq!(data, request.as_bytes());
    assert_eq!(flow.transport, Transport::Ws);
    assert_eq!(flow.local, addr);
    assert_eq!(flow.remote, client_addr);
    assert!(flow.connection.is_some());

    // Two messages in two WebSocket messages: two inbound items, in order.
    ws.send(Message::binary(ws_message("b1").into_bytes()))
        .await
        .unwrap();
    ws.send(Message::text(ws_message("b2"))).await.unwrap();
    assert_eq!(next_message(&mut rx).await.1, ws_message("b1").as_bytes());
    assert_eq!(next_message(&mut rx).await.1, ws_message("b2").as_bytes());

    let response = message("answer", "ok");
    layer.send(transmit(flow, response.clone())).await.unwrap();
    match ws_next(&mut ws).await {
        Message::Text(text) => assert_eq!(text.as_str(), response),
        other => panic!("expected a text message, got {other:?}"),
    }
    // A payload that is no UTF-8 goes as a binary message.
    let binary = Bytes::from_static(b"SIP/2.0 200 OK\r\nContent-Length: 1\r\n\r\n\xff");
    layer.send(transmit(flow, binary.clone())).await.unwrap();
    assert_eq!(ws_next(&mut ws).await, Message::Binary(binary));
    // A send with no connection named reuses the open one to that peer.
    let reuse = transmit(flow_to(Transport::Ws, client_addr), message("again", ""));
    layer.send(reuse).await.unwrap();
    assert_eq!(ws_next(&mut ws).await, Message::text(message("again", "")));

    let stats = layer.stats();
    assert_eq!(stats.ws_upgrades, 1);
    assert_eq!(stats.ws_open, 1);
    assert_eq!(stats.messages_in, 3);
    assert_eq!(stats.messages_out, 3);
    layer.shutdown().await;
}

#[tokio::test]
async fn ws_send_without_a_connection_is_unsupported() {
    let (layer, _rx, _) = ws_layer(|_| {}).await;
    let remote: SocketAddr = "127.0.0.1:9".parse().unwrap();
    let err = layer
        .send(transmit(flow_to(Transport::Ws, remote), message("x", "")))
        .await
        .unwrap_err();
    assert!(
        matches!(err, TransportError::Unsupported(Transport::Ws)),
        "{err:?}"
    );
    layer.shutdown().await;
}

#[tokio::test]
async fn ws_upgrade_without_the_sip_subprotocol_gets_400_and_the_socket_closes() {
    let (layer, mut rx, addr) = ws_layer(|_| {}).await;

    // A WebSocket client offering no subprotocol.
    let tcp = TcpStream::connect(addr).await.unwrap();
    assert_refused_400(ws_client(tcp, addr, None).await);
    // One offering another subprotocol only.
    let tcp = TcpStream::connect(addr).await.unwrap();
    assert_refused_400(ws_client(tcp, addr, Some("chat")).await);
    // Plain HTTP, and plain SIP, on the WebSocket port.
    for junk in [
        "GET / HTTP/1.1\r\nHost: sip.test\r\n\r\n".to_owned(),
        message("sip", ""),
    ] {
        let mut raw = TcpStream::connect(addr).await.unwrap();
        raw.write_all(junk.as_bytes()).await.unwrap();
        let mut answer = Vec::new();
        timeout(WAIT, raw.read_to_end(&mut answer))
            .await
            .unwrap()
            .unwrap();
        let answer = String::from_utf8_lossy(&answer);
        assert!(
            answer.starts_with("HTTP/1.1 400 Bad Request\r\n"),
            "{answer}"
        );
    }
    assert_eq!(layer.stats().ws_upgrades_rejected, 4);
    assert_eq!(layer.stats().ws_upgrades, 0);
    assert!(layer.connections().is_empty());
    quiet(&mut rx).await;
    layer.shutdown().await;
}

#[tokio::test]
async fn ws_message_over_the_limits_closes_the_connection_with_1009() {
    let (layer, mut rx, addr) = ws_layer(|cfg| {
        cfg.limits = Limits {
            max_header_bytes: 1024,
            max_body_bytes: 100,
            ..Limits::default()
        };
    })
    .await;

    // Body over max_body_bytes, the whole under tungstenite's cap.
    let mut ws = sip_ws(addr).await;
    let big = format!("{}{}", ws_message("big"), "x".repeat(101));
    ws.send(Message::text(big)).await.unwrap();
    let (_, reason) = next_closed(&mut rx).await;
    assert_eq!(reason, CloseReason::Framing(FramingError::BodyTooLarge));
    match ws_next(&mut ws).await {
        Message::Close(Some(frame)) => assert_eq!(frame.code, CloseCode::Size),
        other => panic!("expected a close, got {other:?}"),
    }

    // Over max_header_bytes + max_body_bytes: refused by the WebSocket reader itself.
    let mut ws = sip_ws(addr).await;
    let huge = "x".repeat(1024 + 100 + 1);
    let _ = ws.send(Message::text(huge)).await;
    let (_, reason) = next_closed(&mut rx).await;
    assert!(matches!(reason, CloseReason::Framing(_)), "{reason:?}");
    quiet(&mut rx).await;
    assert_eq!(layer.stats().framing_errors, 2);
    assert_eq!(layer.stats().messages_in, 0);
    layer.shutdown().await;
}

#[tokio::test]
async fn ws_ping_gets_a_pong_and_a_close_is_answered() {
    let (layer, mut rx, addr) = ws_layer(|_| {}).await;
    let mut ws = sip_ws(addr).await;
    ws.send(Message::Ping(Bytes::from_static(b"k1")))
        .await
        .unwrap();
    assert_eq!(
        ws_next(&mut ws).await,
        Message::Pong(Bytes::from_static(b"k1"))
    );
    assert_eq!(layer.stats().keepalive_pings, 1);

    ws.close(None).await.unwrap();
    let (flow, reason) = next_closed(&mut rx).await;
    assert_eq!(reason, CloseReason::PeerClosed);
    assert_eq!(flow.transport, Transport::Ws);
    // Our answer to the close ends the client's stream.
    let end = timeout(WAIT, async {
        loop {
            match ws.next().await {
                Some(Ok(Message::Close(_))) => continue,
                None | Some(Err(_)) => break,
                Some(Ok(other)) => panic!("unexpected {other:?}"),
            }
        }
    })
    .await;
    assert!(end.is_ok(), "the close was not answered");
    assert!(layer.connections().is_empty());
    layer.shutdown().await;
}

#[tokio::test]
async fn idle_ws_connection_is_closed_going_away() {
    let (layer, mut rx, addr) = ws_layer(|cfg| {
        cfg.tcp_idle_timeout = Some(Duration::from_millis(200));
    })
    .await;
    let mut ws = sip_ws(addr).await;
    let (_, reason) = next_closed(&mut rx).await;
    assert_eq!(reason, CloseReason::Idle);
    match ws_next(&mut ws).await {
        Message::Close(Some(frame)) => assert_eq!(frame.code, CloseCode::Away),
        other => panic!("expected a close, got {other:?}"),
    }
    assert_eq!(layer.stats().idle_timeouts, 1);
    layer.shutdown().await;
}

#[tokio::test]
async fn wss_message_in_and_the_answer_back() {
    let pki = pki("wss");
    let (layer, mut rx) = bind(secure_config(&pki, Transport::Wss)).await;
    let addr = layer.local_addr(Transport::Wss).unwrap();
    let tls = tls_client(&pki, addr, "sip.test").await;
    let client_addr = tls.get_ref().0.local_addr().unwrap();
    let mut ws = ws_client(tls, addr, Some("sip")).await.unwrap();

    let request = ws_message("wss").replace("SIP/2.0/WS ", "SIP/2.0/WSS ");
    ws.send(Message::text(request.clone())).await.unwrap();
    let (flow, data) = next_message(&mut rx).await;
    assert_eq!(data, request.as_bytes());
    assert_eq!(flow.transport, Transport::Wss);
    assert_eq!(flow.remote, client_addr);
    let response = message("answer", "");
    layer.send(transmit(flow, response.clone())).await.unwrap();
    assert_eq!(ws_next(&mut ws).await, Message::text(response));

    // A WebSocket upgrade without TLS on the WSS port fails the TLS handshake.
    let mut plain = TcpStream::connect(addr).await.unwrap();
    plain
        .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    assert!(closed_by_peer(&mut plain).await);

    let stats = layer.stats();
    assert_eq!(stats.wss_open, 1);
    assert_eq!(stats.ws_upgrades, 1);
    assert_eq!(stats.tls_handshakes, 1);
    wait_for(&layer, "the TLS failure", |s| s.tls_handshake_failures == 1).await;
    layer.shutdown().await;
}
