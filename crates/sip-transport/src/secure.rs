//! The handshakes of accepted TLS, WS and WSS connections, bounded by
//! [`TransportConfig::handshake_timeout`](crate::TransportConfig::handshake_timeout):
//! a client that is slow or silent is dropped, and a handshake never holds the
//! accept loop.

use crate::error::TransportError;
use crate::layer::{Inbound, Inner};
use crate::stats::inc;
use crate::stream::{Pending, adopt, byte_halves, log_adopted};
use crate::ws;
use sip_message::Transport;
use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tracing::debug;

/// Why an accepted connection did not become a SIP connection.
enum Failure {
    /// The TLS handshake failed.
    Tls(std::io::Error),
    /// The HTTP Upgrade was refused or broke off.
    Upgrade(ws::UpgradeError),
    /// No TLS configuration (cannot happen: `bind` refuses such listeners).
    NotConfigured,
    /// The connection table filled up meanwhile.
    Adopt(TransportError),
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::Tls(e) => write!(f, "TLS handshake failed: {e}"),
            Failure::Upgrade(e) => write!(f, "WebSocket upgrade failed: {e}"),
            Failure::NotConfigured => f.write_str("no TLS configuration"),
            Failure::Adopt(e) => write!(f, "{e}"),
        }
    }
}

/// Makes the handshake of an accepted connection, then hands it to the layer.
pub(crate) async fn accept(
    inner: Arc<Inner>,
    transport: Transport,
    stream: TcpStream,
    local: SocketAddr,
    remote: SocketAddr,
    tx: mpsc::Sender<Inbound>,
    pending: Pending,
) {
    let mut shutdown = inner.shutdown.subscribe();
    let limit = inner.config.handshake_timeout;
    let handshake = async {
        let inner = &inner;
        let adopted = match transport {
            Transport::Ws => {
                let ws = upgrade(inner, stream).await?;
                drop(pending);
                let halves = ws::halves(ws, inner.config.limits);
                adopt(inner, transport, halves, local, remote, tx, true)
            }
            Transport::Wss => {
                let tls = tls_accept(inner, stream).await?;
                let ws = upgrade(inner, tls).await?;
                drop(pending);
                let halves = ws::halves(ws, inner.config.limits);
                adopt(inner, transport, halves, local, remote, tx, true)
            }
            _ => {
                let tls = tls_accept(inner, stream).await?;
                drop(pending);
                adopt(
                    inner,
                    transport,
                    byte_halves(tls, inner),
                    local,
                    remote,
                    tx,
                    true,
                )
            }
        };
        adopted.map_err(Failure::Adopt)
    };
    let result = tokio::select! {
        r = tokio::time::timeout(limit, handshake) => r,
        _ = shutdown.wait_for(|s| *s) => return,
    };
    match result {
        Ok(Ok(id)) => log_adopted(transport, local, remote, &Ok(id)),
        Ok(Err(Failure::Adopt(e))) => log_adopted(transport, local, remote, &Err(e)),
        Ok(Err(failure)) => {
            debug!(transport = %transport, %local, %remote, error = %failure, "handshake failed");
        }
        Err(_) => {
            inc(&inner.stats.handshake_timeouts);
            debug!(transport = %transport, %local, %remote, timeout = ?limit, "handshake timed out");
        }
    }
}

async fn tls_accept(
    inner: &Inner,
    stream: TcpStream,
) -> Result<tokio_rustls::server::TlsStream<TcpStream>, Failure> {
    let acceptor = inner
        .tls_acceptor
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    let Some(acceptor) = acceptor else {
        return Err(Failure::NotConfigured);
    };
    match acceptor.accept(stream).await {
        Ok(tls) => {
            inc(&inner.stats.tls_handshakes);
            Ok(tls)
        }
        Err(e) => {
            inc(&inner.stats.tls_handshake_failures);
            Err(Failure::Tls(e))
        }
    }
}

async fn upgrade<S>(
    inner: &Inner,
    stream: S,
) -> Result<tokio_tungstenite::WebSocketStream<S>, Failure>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    match ws::upgrade(stream, &inner.config.limits).await {
        Ok(ws) => {
            inc(&inner.stats.ws_upgrades);
            Ok(ws)
        }
        Err(e) => {
            if matches!(e, ws::UpgradeError::Refused { .. }) {
                inc(&inner.stats.ws_upgrades_rejected);
            }
            Err(Failure::Upgrade(e))
        }
    }
}
