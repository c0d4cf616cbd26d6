//! Helpers shared by the loopback tests: bounded waits on the inbound channel and on
//! client sockets, and message builders.
#![allow(dead_code)]

pub mod pki;

use bytes::Bytes;
use sip_transaction::{Flow, Transmit};
use sip_transport::{Inbound, TransportConfig, Transports};
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::sync::mpsc;
use tokio::time::timeout;

pub const WAIT: Duration = Duration::from_secs(5);
pub const QUIET: Duration = Duration::from_millis(200);

pub fn any_port() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

pub async fn bind(config: TransportConfig) -> (Transports, mpsc::Receiver<Inbound>) {
    Transports::bind(config).await.expect("bind")
}

/// An OPTIONS request with a Content-Length, as a stream peer writes it.
pub fn message(tag: &str, body: &str) -> String {
    format!(
        "OPTIONS sip:{tag}@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/TCP 127.0.0.1;branch=z9hG4bK{tag}\r\n\
         Call-ID: {tag}\r\nCSeq: 1 OPTIONS\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

pub async fn next(rx: &mut mpsc::Receiver<Inbound>) -> Inbound {
    timeout(WAIT, rx.recv())
        .await
        .expect("timed out waiting for inbound")
        .expect("inbound channel closed")
}

pub async fn next_message(rx: &mut mpsc::Receiver<Inbound>) -> (Flow, Bytes) {
    match next(rx).await {
        Inbound::Message { flow, data } => (flow, data),
        other => panic!("expected a message, got {other:?}"),
    }
}

/// Asserts nothing arrives for a short while.
pub async fn quiet(rx: &mut mpsc::Receiver<Inbound>) {
    if let Ok(item) = timeout(QUIET, rx.recv()).await {
        panic!("expected nothing, got {item:?}");
    }
}

pub fn transmit(flow: Flow, payload: impl Into<Bytes>) -> Transmit {
    Transmit {
        flow,
        payload: payload.into(),
    }
}

/// Reads exactly `want` bytes, within the wait bound.
pub async fn read_exact_bytes<S: AsyncRead + Unpin>(stream: &mut S, want: usize) -> Vec<u8> {
    let mut out = vec![0u8; want];
    timeout(WAIT, stream.read_exact(&mut out))
        .await
        .expect("timed out reading")
        .expect("read");
    out
}

/// True once the peer closed the connection (EOF or reset).
pub async fn closed_by_peer<S: AsyncRead + Unpin>(stream: &mut S) -> bool {
    let mut buf = [0u8; 1024];
    loop {
        match timeout(WAIT, stream.read(&mut buf)).await {
            Err(_) => return false,
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => continue,
        }
    }
}
