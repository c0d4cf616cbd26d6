//! The driver on real loopback sockets: it answers, reports its addresses when ready, and
//! returns when its shutdown input completes.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use runtime::calls::EngineConfig;
use runtime::sip_transport::TransportConfig;
use runtime::{Control, RuntimeConfig};
use std::net::SocketAddr;
use std::time::Duration;
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot};

#[tokio::test]
async fn answers_options_and_stops_on_shutdown() {
    let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let config = RuntimeConfig {
        dns_servers: Vec::new(),
        media_address: None,
        transport: TransportConfig::new(vec![any], vec![]),
        engine: EngineConfig::default(),
    };
    let (_control, control_rx) = mpsc::channel::<Control>(1);
    let (stop, stopped) = oneshot::channel::<()>();
    let (ready_tx, ready_rx) = oneshot::channel();
    let driver = tokio::spawn(runtime::run(
        config,
        control_rx,
        async {
            let _ = stopped.await;
        },
        move |addrs| {
            let _ = ready_tx.send(addrs.to_vec());
        },
    ));
    let addrs = ready_rx.await.unwrap();
    let server = addrs[0].1;
    assert_ne!(server.port(), 0, "ready reports the bound port");

    let client = UdpSocket::bind(any).await.unwrap();
    let me = client.local_addr().unwrap();
    let options = format!(
        "OPTIONS sip:{server} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bKdrv1\r\n\
         Max-Forwards: 70\r\nFrom: <sip:t@{me}>;tag=1\r\nTo: <sip:{server}>\r\n\
         Call-ID: drv-1\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
    );
    client.send_to(options.as_bytes(), server).await.unwrap();
    let mut buf = vec![0u8; 4096];
    let (n, from) = tokio::time::timeout(Duration::from_secs(5), client.recv_from(&mut buf))
        .await
        .expect("an answer within 5 s")
        .unwrap();
    assert_eq!(from, server);
    let answer = String::from_utf8_lossy(&buf[..n]);
    assert!(answer.starts_with("SIP/2.0 200 OK\r\n"), "{answer}");
    assert!(answer.contains("Call-ID: drv-1\r\n"));

    stop.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(5), driver)
        .await
        .expect("run returns after shutdown")
        .unwrap()
        .unwrap();
    // The socket is released.
    UdpSocket::bind(server).await.unwrap();
}

#[tokio::test]
async fn bind_failure_is_an_error_not_a_panic() {
    let taken = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let config = RuntimeConfig {
        dns_servers: Vec::new(),
        media_address: None,
        transport: TransportConfig::new(vec![taken.local_addr().unwrap()], vec![]),
        engine: EngineConfig::default(),
    };
    let (_control, control_rx) = mpsc::channel::<Control>(1);
    let result = runtime::run(config, control_rx, std::future::pending(), |_| {}).await;
    assert!(
        matches!(result, Err(runtime::RuntimeError::Bind(_))),
        "{result:?}"
    );
}
