//! Loopback tests of the transport layer: real sockets on 127.0.0.1, ephemeral
//! ports, every wait bounded.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use bytes::Bytes;
use sip_message::Transport;
use sip_transaction::{ConnectionId, Flow};
use sip_transport::{CloseReason, Inbound, TransportConfig, TransportError, Transports};
use std::io::ErrorKind;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio::time::timeout;

mod support;

use support::{
    QUIET, WAIT, any_port, bind, closed_by_peer, message, next, next_message, quiet,
    read_exact_bytes, transmit,
};

fn config() -> TransportConfig {
    TransportConfig::new(vec![any_port()], vec![any_port()])
}

fn udp_flow(local: SocketAddr, remote: SocketAddr) -> Flow {
    Flow {
        transport: Transport::Udp,
        local,
        remote,
        connection: None,
    }
}

fn tcp_flow(remote: SocketAddr, connection: Option<ConnectionId>) -> Flow {
    Flow {
        transport: Transport::Tcp,
        local: any_port(),
        remote,
        connection,
    }
}

// ---------------------------------------------------------------- UDP

#[tokio::test]
async fn udp_round_trip_between_two_layers() {
    let (a, mut a_rx) = bind(config()).await;
    let (b, mut b_rx) = bind(config()).await;
    let a_udp = a.local_addr(Transport::Udp).unwrap();
    let b_udp = b.local_addr(Transport::Udp).unwrap();

    let request = message("rt", "");
    a.send(transmit(udp_flow(a_udp, b_udp), request.clone()))
        .await
        .unwrap();
    let (flow, data) = next_message(&mut b_rx).await;
    assert_eq!(data, request.as_bytes());
    assert_eq!(flow, udp_flow(b_udp, a_udp));

    // The response goes back on the flow it came from.
    b.send(transmit(flow, "SIP/2.0 200 OK\r\n\r\n"))
        .await
        .unwrap();
    let (flow, data) = next_message(&mut a_rx).await;
    assert_eq!(data, "SIP/2.0 200 OK\r\n\r\n".as_bytes());
    assert_eq!(flow, udp_flow(a_udp, b_udp));

    let sa = a.stats();
    assert_eq!((sa.datagrams_out, sa.datagrams_in), (1, 1));
    assert_eq!(sa.bytes_out, request.len() as u64);
    let sb = b.stats();
    assert_eq!((sb.datagrams_out, sb.datagrams_in), (1, 1));
    assert_eq!(sb.bytes_in, request.len() as u64);
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test]
async fn udp_inbound_flow_names_local_and_remote() {
    let (layer, mut rx) = bind(config()).await;
    let local = layer.local_addr(Transport::Udp).unwrap();
    let peer = UdpSocket::bind(any_port()).await.unwrap();
    peer.send_to(b"not even SIP", local).await.unwrap();
    let (flow, data) = next_message(&mut rx).await;
    // A malformed datagram is just bytes here.
    assert_eq!(data, "not even SIP".as_bytes());
    assert_eq!(flow.transport, Transport::Udp);
    assert_eq!(flow.local, local);
    assert_eq!(flow.remote, peer.local_addr().unwrap());
    assert_eq!(flow.connection, None);
    layer.shutdown().await;
}

#[tokio::test]
async fn udp_drops_empty_keepalive_and_oversize_datagrams() {
    let mut cfg = config();
    cfg.max_datagram = 100;
    let (layer, mut rx) = bind(cfg).await;
    let local = layer.local_addr(Transport::Udp).unwrap();
    let peer = UdpSocket::bind(any_port()).await.unwrap();
    peer.send_to(b"", local).await.unwrap();
    peer.send_to(b"\r\n\r\n", local).await.unwrap();
    peer.send_to(&[b'x'; 101], local).await.unwrap();
    peer.send_to(&[b'y'; 100], local).await.unwrap();
    let (_, data) = next_message(&mut rx).await;
    assert_eq!(data, vec![b'y'; 100]);
    quiet(&mut rx).await;
    let stats = layer.stats();
    assert_eq!(stats.datagrams_dropped, 3);
    assert_eq!(stats.datagrams_in, 1);

    // The loop is still alive.
    peer.send_to(b"again", local).await.unwrap();
    assert_eq!(next_message(&mut rx).await.1, "again".as_bytes());
    layer.shutdown().await;
}

#[tokio::test]
async fn udp_send_rejects_oversize_payload() {
    let mut cfg = config();
    cfg.max_datagram = 10;
    let (layer, _rx) = bind(cfg).await;
    let local = layer.local_addr(Transport::Udp).unwrap();
    let err = layer
        .send(transmit(udp_flow(local, local), vec![0u8; 11]))
        .await
        .unwrap_err();
    assert!(matches!(
        err,
        TransportError::DatagramTooLarge { len: 11, limit: 10 }
    ));
    layer.shutdown().await;
}

#[tokio::test]
async fn udp_receive_survives_icmp_port_unreachable() {
    let (layer, mut rx) = bind(config()).await;
    let local = layer.local_addr(Transport::Udp).unwrap();
    // A closed UDP port: the ICMP error must not stop the receive loop.
    let closed = {
        let s = std::net::UdpSocket::bind(any_port()).unwrap();
        s.local_addr().unwrap()
    };
    for _ in 0..3 {
        layer
            .send(transmit(udp_flow(local, closed), "x"))
            .await
            .ok();
    }
    let peer = UdpSocket::bind(any_port()).await.unwrap();
    peer.send_to(b"still here", local).await.unwrap();
    assert_eq!(next_message(&mut rx).await.1, "still here".as_bytes());
    layer.shutdown().await;
}

// ---------------------------------------------------------------- TCP

#[tokio::test]
async fn tcp_message_split_across_many_writes_is_framed_once() {
    let (layer, mut rx) = bind(config()).await;
    let listener = layer.local_addr(Transport::Tcp).unwrap();
    let mut client = TcpStream::connect(listener).await.unwrap();
    client.set_nodelay(true).unwrap();
    let msg = message("split", "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\n");
    for chunk in msg.as_bytes().chunks(7) {
        client.write_all(chunk).await.unwrap();
        client.flush().await.unwrap();
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let (flow, data) = next_message(&mut rx).await;
    assert_eq!(data, msg.as_bytes());
    assert_eq!(flow.transport, Transport::Tcp);
    assert_eq!(flow.local, listener);
    assert_eq!(flow.remote, client.local_addr().unwrap());
    assert!(flow.connection.is_some());
    quiet(&mut rx).await;
    assert_eq!(layer.stats().messages_in, 1);
    layer.shutdown().await;
}

#[tokio::test]
async fn tcp_two_messages_in_one_write_give_two_inbound() {
    let (layer, mut rx) = bind(config()).await;
    let listener = layer.local_addr(Transport::Tcp).unwrap();
    let mut client = TcpStream::connect(listener).await.unwrap();
    let first = message("one", "hello");
    let second = message("two", "");
    client
        .write_all(format!("{first}{second}").as_bytes())
        .await
        .unwrap();
    let (f1, d1) = next_message(&mut rx).await;
    let (f2, d2) = next_message(&mut rx).await;
    assert_eq!(d1, first.as_bytes());
    assert_eq!(d2, second.as_bytes());
    assert_eq!(f1, f2);
    quiet(&mut rx).await;
    layer.shutdown().await;
}

#[tokio::test]
async fn tcp_keepalive_ping_gets_pong() {
    let (layer, mut rx) = bind(config()).await;
    let listener = layer.local_addr(Transport::Tcp).unwrap();
    let mut client = TcpStream::connect(listener).await.unwrap();
    client.write_all(b"\r\n\r\n").await.unwrap();
    assert_eq!(read_exact_bytes(&mut client, 2).await, b"\r\n");
    // The connection still carries messages afterwards.
    let msg = message("after-ping", "");
    client.write_all(msg.as_bytes()).await.unwrap();
    assert_eq!(next_message(&mut rx).await.1, msg.as_bytes());
    assert_eq!(layer.stats().keepalive_pings, 1);
    layer.shutdown().await;
}

#[tokio::test]
async fn tcp_framing_error_closes_only_that_connection() {
    let mut cfg = config();
    cfg.limits.max_header_bytes = 1024;
    let (layer, mut rx) = bind(cfg).await;
    let listener = layer.local_addr(Transport::Tcp).unwrap();

    let mut good = TcpStream::connect(listener).await.unwrap();
    let first = message("good-1", "");
    good.write_all(first.as_bytes()).await.unwrap();
    let (good_flow, _) = next_message(&mut rx).await;

    // A header section that never ends: over the limit, the stream is cut.
    let mut bad = TcpStream::connect(listener).await.unwrap();
    let junk = vec![b'A'; 4096];
    let _ = bad.write_all(&junk).await;
    assert!(closed_by_peer(&mut bad).await);
    match next(&mut rx).await {
        Inbound::ConnectionClosed { flow, reason } => {
            assert_ne!(flow.connection, good_flow.connection);
            assert!(matches!(reason, CloseReason::Framing(_)), "{reason:?}");
        }
        other => panic!("expected ConnectionClosed, got {other:?}"),
    }

    // The other connection and the listener carry on.
    let second = message("good-2", "");
    good.write_all(second.as_bytes()).await.unwrap();
    let (flow, data) = next_message(&mut rx).await;
    assert_eq!((flow, data), (good_flow, Bytes::from(second)));
    let mut fresh = TcpStream::connect(listener).await.unwrap();
    let third = message("fresh", "");
    fresh.write_all(third.as_bytes()).await.unwrap();
    assert_eq!(next_message(&mut rx).await.1, third.as_bytes());

    let stats = layer.stats();
    assert_eq!(stats.framing_errors, 1);
    assert_eq!(stats.connections_accepted, 3);
    assert_eq!(stats.connections_closed, 1);
    assert_eq!(stats.connections_open, 2);
    layer.shutdown().await;
}

#[tokio::test]
async fn tcp_missing_content_length_closes_the_connection() {
    let (layer, mut rx) = bind(config()).await;
    let listener = layer.local_addr(Transport::Tcp).unwrap();
    let mut bad = TcpStream::connect(listener).await.unwrap();
    bad.write_all(b"OPTIONS sip:x SIP/2.0\r\nCall-ID: x\r\n\r\n")
        .await
        .unwrap();
    assert!(closed_by_peer(&mut bad).await);
    assert!(matches!(
        next(&mut rx).await,
        Inbound::ConnectionClosed {
            reason: CloseReason::Framing(_),
            ..
        }
    ));
    assert_eq!(layer.stats().framing_errors, 1);
    layer.shutdown().await;
}

#[tokio::test]
async fn tcp_response_goes_back_on_the_same_connection() {
    let (layer, mut rx) = bind(config()).await;
    let listener = layer.local_addr(Transport::Tcp).unwrap();
    let mut client = TcpStream::connect(listener).await.unwrap();
    client
        .write_all(message("req", "").as_bytes())
        .await
        .unwrap();
    let (flow, _) = next_message(&mut rx).await;
    let response = message("resp", "body");
    layer.send(transmit(flow, response.clone())).await.unwrap();
    assert_eq!(
        read_exact_bytes(&mut client, response.len()).await,
        response.as_bytes()
    );
    let stats = layer.stats();
    assert_eq!(stats.messages_out, 1);
    assert_eq!(stats.connections_connected, 0);
    assert_eq!(layer.connections().len(), 1);
    layer.shutdown().await;
}

#[tokio::test]
async fn tcp_connection_is_reused_when_none_is_named() {
    let (a, mut a_rx) = bind(config()).await;
    let (b, mut b_rx) = bind(config()).await;
    let b_tcp = b.local_addr(Transport::Tcp).unwrap();

    // Two requests queued before the connection is even open: one connection.
    a.send(transmit(tcp_flow(b_tcp, None), message("r1", "")))
        .await
        .unwrap();
    a.send(transmit(tcp_flow(b_tcp, None), message("r2", "")))
        .await
        .unwrap();
    let (f1, d1) = next_message(&mut b_rx).await;
    let (f2, d2) = next_message(&mut b_rx).await;
    assert_eq!(d1, message("r1", "").as_bytes());
    assert_eq!(d2, message("r2", "").as_bytes());
    assert_eq!(f1, f2);
    assert_eq!(f1.local, b_tcp);

    // A later one too.
    a.send(transmit(tcp_flow(b_tcp, None), message("r3", "")))
        .await
        .unwrap();
    let (f3, _) = next_message(&mut b_rx).await;
    assert_eq!(f3, f1);

    // B answers to A's address without naming the connection: reused as well
    // (RFC 3261 §18.2.2), no connection opened by B.
    b.send(transmit(tcp_flow(f1.remote, None), message("resp", "")))
        .await
        .unwrap();
    let (af, ad) = next_message(&mut a_rx).await;
    assert_eq!(ad, message("resp", "").as_bytes());
    assert_eq!(af.remote, b_tcp);
    assert_eq!(af.local, f1.remote);

    assert_eq!(a.stats().connections_connected, 1);
    assert_eq!(a.stats().messages_out, 3);
    assert_eq!(b.stats().connections_connected, 0);
    assert_eq!(b.stats().connections_accepted, 1);
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test]
async fn tcp_closed_named_connection_falls_back_to_a_new_one() {
    let (a, mut a_rx) = bind(config()).await;
    let (b, mut b_rx) = bind(config()).await;
    let b_tcp = b.local_addr(Transport::Tcp).unwrap();
    let stale = tcp_flow(b_tcp, Some(ConnectionId(999)));
    a.send(transmit(stale, message("x", ""))).await.unwrap();
    let (flow, _) = next_message(&mut b_rx).await;
    assert_eq!(flow.local, b_tcp);
    assert_eq!(a.stats().connections_connected, 1);
    quiet(&mut a_rx).await;
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test]
async fn tcp_send_to_closed_port_reports_transport_error() {
    let (layer, mut rx) = bind(config()).await;
    let closed = {
        let l = std::net::TcpListener::bind(any_port()).unwrap();
        l.local_addr().unwrap()
    };
    let flow = tcp_flow(closed, None);
    layer
        .send(transmit(flow, message("refused", "")))
        .await
        .unwrap();
    match next(&mut rx).await {
        Inbound::TransportError { flow: f, error } => {
            assert_eq!(f.remote, closed);
            assert_eq!(f.transport, Transport::Tcp);
            assert!(f.connection.is_some());
            assert_eq!(
                error.io_kind(),
                Some(ErrorKind::ConnectionRefused),
                "{error}"
            );
        }
        other => panic!("expected a transport error, got {other:?}"),
    }
    let stats = layer.stats();
    assert_eq!(stats.connect_errors, 1);
    assert_eq!(stats.send_errors, 1);
    assert_eq!(stats.connections_open, 0);
    assert!(layer.connections().is_empty());
    layer.shutdown().await;
}

#[tokio::test]
async fn tcp_idle_connection_is_closed() {
    let mut cfg = config();
    cfg.tcp_idle_timeout = Some(Duration::from_millis(150));
    let (layer, mut rx) = bind(cfg).await;
    let listener = layer.local_addr(Transport::Tcp).unwrap();
    let mut client = TcpStream::connect(listener).await.unwrap();
    assert!(closed_by_peer(&mut client).await);
    assert!(matches!(
        next(&mut rx).await,
        Inbound::ConnectionClosed {
            reason: CloseReason::Idle,
            ..
        }
    ));
    assert_eq!(layer.stats().idle_timeouts, 1);
    assert_eq!(layer.stats().connections_open, 0);
    layer.shutdown().await;
}

#[tokio::test]
async fn tcp_connections_beyond_the_limit_are_refused() {
    let mut cfg = config();
    cfg.max_connections = 1;
    let (layer, mut rx) = bind(cfg).await;
    let listener = layer.local_addr(Transport::Tcp).unwrap();
    let mut first = TcpStream::connect(listener).await.unwrap();
    first.write_all(message("1", "").as_bytes()).await.unwrap();
    next_message(&mut rx).await;
    let mut second = TcpStream::connect(listener).await.unwrap();
    assert!(closed_by_peer(&mut second).await);
    let stats = layer.stats();
    assert_eq!(stats.connections_rejected, 1);
    assert_eq!(stats.connections_open, 1);
    // An outgoing connection is refused too, at once.
    let err = layer
        .send(transmit(
            tcp_flow("127.0.0.1:9".parse().unwrap(), None),
            "x",
        ))
        .await
        .unwrap_err();
    assert!(matches!(
        err,
        TransportError::TooManyConnections { limit: 1 }
    ));
    layer.shutdown().await;
}

#[tokio::test]
async fn peer_close_is_reported_and_forgets_the_connection() {
    let (layer, mut rx) = bind(config()).await;
    let listener = layer.local_addr(Transport::Tcp).unwrap();
    let mut client = TcpStream::connect(listener).await.unwrap();
    client
        .write_all(message("bye", "").as_bytes())
        .await
        .unwrap();
    let (flow, _) = next_message(&mut rx).await;
    drop(client);
    match next(&mut rx).await {
        Inbound::ConnectionClosed { flow: f, reason } => {
            assert_eq!(f, flow);
            assert_eq!(reason, CloseReason::PeerClosed);
        }
        other => panic!("expected ConnectionClosed, got {other:?}"),
    }
    assert!(layer.connections().is_empty());
    let stats = layer.stats();
    assert_eq!((stats.connections_open, stats.connections_closed), (0, 1));
    layer.shutdown().await;
}

// ---------------------------------------------------------------- seams and lifecycle

#[tokio::test]
async fn adopted_stream_is_framed_and_answered_like_tcp() {
    let (layer, mut rx) = bind(TransportConfig::new(vec![], vec![])).await;
    let (mut peer, ours) = tokio::io::duplex(4096);
    let local: SocketAddr = "127.0.0.1:5061".parse().unwrap();
    let remote: SocketAddr = "127.0.0.1:40000".parse().unwrap();
    let id = layer
        .adopt_stream(Transport::Tls, ours, local, remote)
        .unwrap();
    let msg = message("tls", "");
    peer.write_all(msg.as_bytes()).await.unwrap();
    let (flow, data) = next_message(&mut rx).await;
    assert_eq!(data, msg.as_bytes());
    assert_eq!(
        flow,
        Flow {
            transport: Transport::Tls,
            local,
            remote,
            connection: Some(id)
        }
    );
    let answer = message("answer", "ok");
    layer.send(transmit(flow, answer.clone())).await.unwrap();
    let mut got = vec![0u8; answer.len()];
    timeout(WAIT, peer.read_exact(&mut got))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got, answer.as_bytes());
    layer.shutdown().await;
}

#[tokio::test]
async fn sent_by_names_the_listener_or_the_advertised_host() {
    let mut cfg = config();
    let (layer, _rx) = bind(cfg.clone()).await;
    let udp = layer.local_addr(Transport::Udp).unwrap();
    let sent_by = layer.sent_by(Transport::Udp).unwrap();
    assert_eq!(sent_by.to_string(), udp.to_string());
    assert!(layer.sent_by(Transport::Tls).is_none());
    let tcp = layer.local_addr(Transport::Tcp).unwrap();
    let on_flow = layer.sent_by_for(&tcp_flow("127.0.0.1:1".parse().unwrap(), None));
    assert_eq!(on_flow.unwrap().port, tcp.port());
    assert_eq!(layer.local_addrs().len(), 2);
    layer.shutdown().await;

    cfg.advertised_host = Some("sip.example.com".into());
    let (layer, _rx) = bind(cfg).await;
    let sent_by = layer.sent_by(Transport::Tcp).unwrap();
    assert_eq!(sent_by.host, "sip.example.com");
    assert_eq!(
        sent_by.to_string(),
        format!(
            "sip.example.com:{}",
            layer.local_addr(Transport::Tcp).unwrap().port()
        )
    );
    layer.shutdown().await;
}

#[tokio::test]
async fn shutdown_ends_the_inbound_channel_and_refuses_sends() {
    let (layer, mut rx) = bind(config()).await;
    let listener = layer.local_addr(Transport::Tcp).unwrap();
    let udp = layer.local_addr(Transport::Udp).unwrap();
    let mut client = TcpStream::connect(listener).await.unwrap();
    client.write_all(message("s", "").as_bytes()).await.unwrap();
    next_message(&mut rx).await;

    timeout(WAIT, layer.shutdown()).await.unwrap();
    assert!(timeout(WAIT, rx.recv()).await.unwrap().is_none());
    assert!(closed_by_peer(&mut client).await);
    let err = layer
        .send(transmit(udp_flow(udp, udp), "x"))
        .await
        .unwrap_err();
    assert!(matches!(err, TransportError::Shutdown));
    // Listener gone: the port can be bound again.
    let rebind = tokio::net::TcpSocket::new_v4().unwrap();
    rebind.set_reuseaddr(true).unwrap();
    rebind.bind(listener).unwrap();
    std::net::UdpSocket::bind(udp).unwrap();
    // Idempotent.
    timeout(WAIT, layer.shutdown()).await.unwrap();
}

#[tokio::test]
async fn bind_failure_names_the_address() {
    let taken = std::net::UdpSocket::bind(any_port()).unwrap();
    let addr = taken.local_addr().unwrap();
    let err = Transports::bind(TransportConfig::new(vec![addr], vec![]))
        .await
        .unwrap_err();
    match err {
        TransportError::Bind {
            transport, addr: a, ..
        } => {
            assert_eq!(transport, Transport::Udp);
            assert_eq!(a, addr);
        }
        other => panic!("expected Bind, got {other:?}"),
    }
}

/// A stream whose reads never end and whose writes always fail.
struct FailingWrites(tokio::io::DuplexStream);

impl tokio::io::AsyncRead for FailingWrites {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl tokio::io::AsyncWrite for FailingWrites {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
        _: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::task::Poll::Ready(Err(ErrorKind::BrokenPipe.into()))
    }
    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }
    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }
}

#[tokio::test]
async fn write_failure_is_reported_and_closes_the_connection() {
    let (layer, mut rx) = bind(TransportConfig::new(vec![], vec![])).await;
    let (_peer, ours) = tokio::io::duplex(64);
    let remote: SocketAddr = "127.0.0.1:40001".parse().unwrap();
    let id = layer
        .adopt_stream(Transport::Tcp, FailingWrites(ours), any_port(), remote)
        .unwrap();
    let flow = tcp_flow(remote, Some(id));
    layer.send(transmit(flow, message("w", ""))).await.unwrap();
    let mut saw_error = false;
    let mut saw_close = false;
    while !(saw_error && saw_close) {
        match next(&mut rx).await {
            Inbound::TransportError { flow: f, error } => {
                assert_eq!(f.connection, Some(id));
                assert_eq!(error.io_kind(), Some(ErrorKind::BrokenPipe));
                saw_error = true;
            }
            Inbound::ConnectionClosed { flow: f, reason } => {
                assert_eq!(f.connection, Some(id));
                assert_eq!(reason, CloseReason::Io(ErrorKind::BrokenPipe));
                saw_close = true;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert!(layer.connections().is_empty());
    assert_eq!(layer.stats().send_errors, 1);
    layer.shutdown().await;
}

#[tokio::test]
async fn keepalive_pings_hold_off_the_idle_timeout() {
    let mut cfg = config();
    cfg.tcp_idle_timeout = Some(Duration::from_millis(300));
    let (layer, mut rx) = bind(cfg).await;
    let listener = layer.local_addr(Transport::Tcp).unwrap();
    let mut client = TcpStream::connect(listener).await.unwrap();
    for _ in 0..6 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        client.write_all(b"\r\n\r\n").await.unwrap();
        assert_eq!(read_exact_bytes(&mut client, 2).await, b"\r\n");
    }
    assert_eq!(layer.stats().idle_timeouts, 0);
    assert_eq!(layer.connections().len(), 1);
    assert!(closed_by_peer(&mut client).await);
    assert!(matches!(
        next(&mut rx).await,
        Inbound::ConnectionClosed {
            reason: CloseReason::Idle,
            ..
        }
    ));
    layer.shutdown().await;
}

#[tokio::test]
async fn many_messages_over_udp_and_tcp_all_arrive_in_order_per_flow() {
    let (a, _a_rx) = bind(config()).await;
    let (b, mut b_rx) = bind(config()).await;
    let a_udp = a.local_addr(Transport::Udp).unwrap();
    let b_udp = b.local_addr(Transport::Udp).unwrap();
    let b_tcp = b.local_addr(Transport::Tcp).unwrap();
    const N: usize = 100;
    for i in 0..N {
        let m = message(&format!("m{i}"), "");
        a.send(transmit(udp_flow(a_udp, b_udp), m.clone()))
            .await
            .unwrap();
        a.send(transmit(tcp_flow(b_tcp, None), m)).await.unwrap();
    }
    let mut udp = Vec::new();
    let mut tcp = Vec::new();
    while udp.len() + tcp.len() < 2 * N {
        let (flow, data) = next_message(&mut b_rx).await;
        match flow.transport {
            Transport::Udp => udp.push(data),
            _ => tcp.push(data),
        }
    }
    let expected: Vec<Bytes> = (0..N)
        .map(|i| Bytes::from(message(&format!("m{i}"), "")))
        .collect();
    assert_eq!(tcp, expected);
    assert_eq!(udp.len(), N);
    let stats = b.stats();
    assert_eq!(stats.datagrams_in, N as u64);
    assert_eq!(stats.messages_in, N as u64);
    assert_eq!(a.stats().connections_connected, 1);
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test]
async fn dropping_every_handle_stops_the_layer() {
    let (layer, mut rx) = bind(config()).await;
    let udp = layer.local_addr(Transport::Udp).unwrap();
    let clone = layer.clone();
    drop(layer);
    // A clone keeps it running.
    let peer = UdpSocket::bind(any_port()).await.unwrap();
    peer.send_to(b"alive", udp).await.unwrap();
    assert_eq!(next_message(&mut rx).await.1, "alive".as_bytes());
    drop(clone);
    assert!(timeout(WAIT, rx.recv()).await.unwrap().is_none());
}

#[tokio::test]
async fn keepalive_ping_split_across_writes_is_answered_once() {
    let (layer, mut rx) = bind(config()).await;
    let listener = layer.local_addr(Transport::Tcp).unwrap();
    let mut client = TcpStream::connect(listener).await.unwrap();
    client.set_nodelay(true).unwrap();
    client.write_all(b"\r\n").await.unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    client.write_all(b"\r\n").await.unwrap();
    assert_eq!(read_exact_bytes(&mut client, 2).await, b"\r\n");
    // Nothing more than one pong comes back.
    let mut extra = [0u8; 1];
    assert!(timeout(QUIET, client.read(&mut extra)).await.is_err());
    assert_eq!(layer.stats().keepalive_pings, 1);
    quiet(&mut rx).await;
    layer.shutdown().await;
}

#[tokio::test]
async fn tcp_body_over_the_limit_closes_the_connection() {
    let mut cfg = config();
    cfg.limits.max_body_bytes = 16;
    let (layer, mut rx) = bind(cfg).await;
    let listener = layer.local_addr(Transport::Tcp).unwrap();
    let mut client = TcpStream::connect(listener).await.unwrap();
    client
        .write_all(message("big", &"b".repeat(17)).as_bytes())
        .await
        .unwrap();
    assert!(closed_by_peer(&mut client).await);
    match next(&mut rx).await {
        Inbound::ConnectionClosed { reason, .. } => assert_eq!(
            reason,
            CloseReason::Framing(sip_transport::FramingError::BodyTooLarge)
        ),
        other => panic!("expected ConnectionClosed, got {other:?}"),
    }
    layer.shutdown().await;
}

#[tokio::test]
async fn shutdown_is_bounded_by_the_grace_period_when_a_peer_stops_reading() {
    let mut cfg = TransportConfig::new(vec![], vec![]);
    cfg.shutdown_grace = Duration::from_millis(200);
    let (layer, _rx) = bind(cfg).await;
    let (_peer, ours) = tokio::io::duplex(16);
    let remote: SocketAddr = "127.0.0.1:40002".parse().unwrap();
    let id = layer
        .adopt_stream(Transport::Tcp, ours, any_port(), remote)
        .unwrap();
    let flow = tcp_flow(remote, Some(id));
    layer.send(transmit(flow, vec![b'z'; 4096])).await.unwrap();
    let started = std::time::Instant::now();
    timeout(WAIT, layer.shutdown()).await.unwrap();
    assert!(started.elapsed() < Duration::from_secs(2));
}
