//! Counters, updated with relaxed atomics and read as a [`TransportStats`] snapshot.

use std::sync::atomic::{AtomicU64, Ordering};

/// A snapshot of the transport layer's counters (monotonic unless noted).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct TransportStats {
    /// UDP datagrams handed to the core.
    pub datagrams_in: u64,
    /// UDP datagrams sent.
    pub datagrams_out: u64,
    /// UDP datagrams dropped on receipt: empty, keep-alive only (CRLF), or oversize.
    pub datagrams_dropped: u64,
    /// Framed stream messages handed to the core.
    pub messages_in: u64,
    /// Messages written to stream connections.
    pub messages_out: u64,
    /// Bytes received, all transports (keep-alives included).
    pub bytes_in: u64,
    /// Bytes sent, all transports (keep-alives included).
    pub bytes_out: u64,
    /// Stream connections open now, including those still connecting (a gauge).
    pub connections_open: u64,
    /// Stream connections accepted from peers.
    pub connections_accepted: u64,
    /// Stream connections we opened (connect succeeded).
    pub connections_connected: u64,
    /// Stream connections refused because the table was full.
    pub connections_rejected: u64,
    /// Stream connections closed, for any reason.
    pub connections_closed: u64,
    /// Connections closed because the byte stream could not be framed.
    pub framing_errors: u64,
    /// Connections closed because they were idle too long.
    pub idle_timeouts: u64,
    /// Keep-alive pings answered: CRLFCRLF with a CRLF pong (RFC 5626 §3.5.1),
    /// and WebSocket pings with a pong (RFC 6455 §5.5.2).
    pub keepalive_pings: u64,
    /// Connect attempts that failed or timed out.
    pub connect_errors: u64,
    /// Sends that failed (datagram send errors, write errors, messages lost with a connection).
    pub send_errors: u64,
    /// Receive/accept errors that did not stop the socket.
    pub recv_errors: u64,
    /// TCP connections open now (a gauge, like the three below).
    pub tcp_open: u64,
    /// TLS connections open now.
    pub tls_open: u64,
    /// WebSocket connections open now.
    pub ws_open: u64,
    /// Secure WebSocket connections open now.
    pub wss_open: u64,
    /// Accepted connections still in their TLS handshake or WebSocket upgrade (a gauge).
    pub handshakes_pending: u64,
    /// TLS handshakes completed, accepted and opened (TLS and WSS).
    pub tls_handshakes: u64,
    /// TLS handshakes that failed (bad certificate, not TLS, peer closed).
    pub tls_handshake_failures: u64,
    /// Accepted connections dropped because the TLS handshake or WebSocket
    /// upgrade did not finish within the handshake timeout.
    pub handshake_timeouts: u64,
    /// WebSocket upgrades accepted (101 with `Sec-WebSocket-Protocol: sip`, RFC 7118 §4.1).
    pub ws_upgrades: u64,
    /// WebSocket upgrades refused (HTTP 400/426: not an upgrade, no `sip` subprotocol, ...).
    pub ws_upgrades_rejected: u64,
}

#[derive(Debug, Default)]
pub(crate) struct Stats {
    pub datagrams_in: AtomicU64,
    pub datagrams_out: AtomicU64,
    pub datagrams_dropped: AtomicU64,
    pub messages_in: AtomicU64,
    pub messages_out: AtomicU64,
    pub bytes_in: AtomicU64,
    pub bytes_out: AtomicU64,
    pub connections_open: AtomicU64,
    pub connections_accepted: AtomicU64,
    pub connections_connected: AtomicU64,
    pub connections_rejected: AtomicU64,
    pub connections_closed: AtomicU64,
    pub framing_errors: AtomicU64,
    pub idle_timeouts: AtomicU64,
    pub keepalive_pings: AtomicU64,
    pub connect_errors: AtomicU64,
    pub send_errors: AtomicU64,
    pub recv_errors: AtomicU64,
    pub handshakes_pending: AtomicU64,
    pub tls_handshakes: AtomicU64,
    pub tls_handshake_failures: AtomicU64,
    pub handshake_timeouts: AtomicU64,
    pub ws_upgrades: AtomicU64,
    pub ws_upgrades_rejected: AtomicU64,
}

/// Adds one to a counter.
pub(crate) fn inc(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

/// Adds `n` to a counter.
pub(crate) fn add(counter: &AtomicU64, n: usize) {
    counter.fetch_add(u64::try_from(n).unwrap_or(u64::MAX), Ordering::Relaxed);
}

/// Subtracts one from a gauge, saturating at zero.
pub(crate) fn dec(counter: &AtomicU64) {
    let _ = counter.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| v.checked_sub(1));
}

impl Stats {
    /// The counters; the per-transport open gauges are left at zero for the
    /// caller, who counts them in the connection table.
    pub(crate) fn snapshot(&self) -> TransportStats {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        TransportStats {
            datagrams_in: get(&self.datagrams_in),
            datagrams_out: get(&self.datagrams_out),
            datagrams_dropped: get(&self.datagrams_dropped),
            messages_in: get(&self.messages_in),
            messages_out: get(&self.messages_out),
            bytes_in: get(&self.bytes_in),
            bytes_out: get(&self.bytes_out),
            connections_open: get(&self.connections_open),
            connections_accepted: get(&self.connections_accepted),
            connections_connected: get(&self.connections_connected),
            connections_rejected: get(&self.connections_rejected),
            connections_closed: get(&self.connections_closed),
            framing_errors: get(&self.framing_errors),
            idle_timeouts: get(&self.idle_timeouts),
            keepalive_pings: get(&self.keepalive_pings),
            connect_errors: get(&self.connect_errors),
            send_errors: get(&self.send_errors),
            recv_errors: get(&self.recv_errors),
            tcp_open: 0,
            tls_open: 0,
            ws_open: 0,
            wss_open: 0,
            handshakes_pending: get(&self.handshakes_pending),
            tls_handshakes: get(&self.tls_handshakes),
            tls_handshake_failures: get(&self.tls_handshake_failures),
            handshake_timeouts: get(&self.handshake_timeouts),
            ws_upgrades: get(&self.ws_upgrades),
            ws_upgrades_rejected: get(&self.ws_upgrades_rejected),
        }
    }
}
