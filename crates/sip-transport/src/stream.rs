//! Stream transports: the connection table, TCP accept and connect, and the
//! per-connection tasks, generic over `AsyncRead + AsyncWrite` so that TLS
//! plugs in unchanged (RFC 3261 §18.3, RFC 5626 §3.5.1).

use crate::error::TransportError;
use crate::framing::{Frame, StreamFramer};
use crate::layer::{CloseReason, Inbound, Inner, deliver, lock};
use crate::stats::{add, dec, inc};
use bytes::Bytes;
use sip_message::Transport;
use sip_transaction::{ConnectionId, Flow, Transmit};
use socket2::{Domain, Protocol, Socket, Type};
use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};
use tracing::{debug, info, trace, warn};

/// Size of the read buffer of one connection.
const READ_CHUNK: usize = 16 * 1024;
/// Pause after an accept error (e.g. out of file descriptors), so the loop
/// cannot spin while the condition lasts.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(50);
/// How long a closing connection may take to write what is still queued.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(5);
/// The CRLF pong that answers a CRLFCRLF ping (RFC 5626 §3.5.1).
const PONG: &[u8] = b"\r\n";

/// What a connection's writer is asked to write.
#[derive(Debug)]
pub(crate) enum Outgoing {
    Message(Transmit),
    Pong,
}

#[derive(Debug)]
struct ConnEntry {
    flow: Flow,
    queue: mpsc::Sender<Outgoing>,
    established: bool,
}

/// Open (and opening) stream connections, by id and by peer.
#[derive(Debug, Default)]
pub(crate) struct ConnTable {
    by_id: HashMap<ConnectionId, ConnEntry>,
    by_remote: HashMap<(Transport, SocketAddr), Vec<ConnectionId>>,
}

/// The outcome of queueing a message on a connection.
pub(crate) enum Enqueue {
    Queued,
    /// The connection is open but its queue is full.
    Full,
    /// No such open connection: the message is given back.
    Gone(Transmit),
}

impl ConnTable {
    pub(crate) fn len(&self) -> usize {
        self.by_id.len()
    }

    fn insert(&mut self, flow: Flow, queue: mpsc::Sender<Outgoing>, established: bool) -> bool {
        let Some(id) = flow.connection else {
            return false;
        };
        self.by_id.insert(
            id,
            ConnEntry {
                flow,
                queue,
                established,
            },
        );
        self.by_remote
            .entry((flow.transport, flow.remote))
            .or_default()
            .push(id);
        true
    }

    fn remove(&mut self, id: ConnectionId) -> Option<ConnEntry> {
        let entry = self.by_id.remove(&id)?;
        let key = (entry.flow.transport, entry.flow.remote);
        if let Some(ids) = self.by_remote.get_mut(&key) {
            ids.retain(|i| *i != id);
            if ids.is_empty() {
                self.by_remote.remove(&key);
            }
        }
        Some(entry)
    }

    fn set_established(&mut self, id: ConnectionId, local: SocketAddr) {
        if let Some(entry) = self.by_id.get_mut(&id) {
            entry.flow.local = local;
            entry.established = true;
        }
    }

    /// Queues `transmit` on connection `id` if it is open and of `transport`.
    pub(crate) fn enqueue(
        &mut self,
        id: ConnectionId,
        transport: Transport,
        transmit: Transmit,
    ) -> Enqueue {
        let Some(entry) = self.by_id.get(&id) else {
            return Enqueue::Gone(transmit);
        };
        if entry.flow.transport != transport {
            return Enqueue::Gone(transmit);
        }
        match entry.queue.try_send(Outgoing::Message(transmit)) {
            Ok(()) => Enqueue::Queued,
            Err(mpsc::error::TrySendError::Full(_)) => Enqueue::Full,
            Err(mpsc::error::TrySendError::Closed(Outgoing::Message(t))) => Enqueue::Gone(t),
            // Unreachable (we sent a Message), but the type allows it.
            Err(mpsc::error::TrySendError::Closed(Outgoing::Pong)) => Enqueue::Full,
        }
    }

    /// Connections to `remote` over `transport`, established ones first.
    pub(crate) fn to_remote(&self, transport: Transport, remote: SocketAddr) -> Vec<ConnectionId> {
        let mut ids = self
            .by_remote
            .get(&(transport, remote))
            .cloned()
            .unwrap_or_default();
        ids.sort_by_key(|id| {
            let established = self.by_id.get(id).is_some_and(|e| e.established);
            (!established, *id)
        });
        ids
    }

    pub(crate) fn flows(&self) -> Vec<Flow> {
        let mut flows: Vec<Flow> = self.by_id.values().map(|e| e.flow).collect();
        flows.sort_by_key(|f| f.connection);
        flows
    }
}

/// Binds a TCP listener (SO_REUSEADDR, so a restart need not wait out TIME_WAIT).
pub(crate) fn bind_tcp(addr: SocketAddr) -> Result<TcpListener, TransportError> {
    let fail = |e: io::Error| TransportError::Bind {
        transport: Transport::Tcp,
        addr,
        source: Arc::new(e),
    };
    let socket =
        Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP)).map_err(fail)?;
    if addr.is_ipv6() {
        socket.set_only_v6(true).map_err(fail)?;
    }
    socket.set_reuse_address(true).map_err(fail)?;
    socket.set_nonblocking(true).map_err(fail)?;
    socket.bind(&addr.into()).map_err(fail)?;
    socket.listen(1024).map_err(fail)?;
    TcpListener::from_std(socket.into()).map_err(fail)
}

/// Accepts connections until shutdown. Errors never stop the listener.
pub(crate) async fn accept_loop(
    inner: Arc<Inner>,
    listener: TcpListener,
    local: SocketAddr,
    tx: mpsc::Sender<Inbound>,
) {
    let mut shutdown = inner.shutdown.subscribe();
    loop {
        let accepted = tokio::select! {
            r = listener.accept() => r,
            _ = shutdown.wait_for(|s| *s) => break,
        };
        match accepted {
            Ok((stream, remote)) => {
                if let Err(e) = stream.set_nodelay(true) {
                    debug!(%local, %remote, error = %e, "cannot set TCP_NODELAY");
                }
                match adopt(
                    &inner,
                    Transport::Tcp,
                    stream,
                    local,
                    remote,
                    tx.clone(),
                    true,
                ) {
                    Ok(id) => {
                        debug!(transport = "TCP", %local, %remote, connection = id.0, "accepted")
                    }
                    Err(e) => {
                        warn!(transport = "TCP", %local, %remote, error = %e, "connection refused")
                    }
                }
            }
            Err(e) => {
                inc(&inner.stats.recv_errors);
                warn!(transport = "TCP", %local, error = %e, "accept failed");
                tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
            }
        }
    }
    debug!(transport = "TCP", %local, "listener stopped");
}

/// Registers an established stream and starts its tasks.
pub(crate) fn adopt<S>(
    inner: &Arc<Inner>,
    transport: Transport,
    stream: S,
    local: SocketAddr,
    remote: SocketAddr,
    tx: mpsc::Sender<Inbound>,
    accepted: bool,
) -> Result<ConnectionId, TransportError>
where
    S: AsyncRead + AsyncWrite + Send + 'static,
{
    let limit = inner.config.max_connections;
    let mut table = lock(&inner.conns);
    if table.len() >= limit {
        inc(&inner.stats.connections_rejected);
        return Err(TransportError::TooManyConnections { limit });
    }
    let id = inner.next_connection_id();
    let flow = Flow {
        transport,
        local,
        remote,
        connection: Some(id),
    };
    let (queue, rx) = mpsc::channel(inner.config.connection_queue.max(1));
    table.insert(flow, queue.clone(), true);
    drop(table);
    inc(&inner.stats.connections_open);
    if accepted {
        inc(&inner.stats.connections_accepted);
    }
    inner.spawn(run_connection(
        Arc::clone(inner),
        stream,
        flow,
        queue,
        rx,
        tx,
    ));
    Ok(id)
}

/// Registers a TCP connection about to be opened, with `transmit` queued on
/// it, and returns the task that opens and then runs it. Later sends to the
/// same peer queue behind it meanwhile.
pub(crate) fn open(
    inner: &Arc<Inner>,
    table: &mut ConnTable,
    local: SocketAddr,
    transmit: Transmit,
) -> Result<impl Future<Output = ()> + Send + 'static, TransportError> {
    let transport = transmit.flow.transport;
    let remote = transmit.flow.remote;
    let id = inner.next_connection_id();
    let (queue, rx) = mpsc::channel(inner.config.connection_queue.max(1));
    if queue.try_send(Outgoing::Message(transmit)).is_err() {
        // A fresh queue has room; this cannot happen, but never panic.
        return Err(TransportError::ConnectionClosed {
            remote,
            connection: id,
        });
    }
    let flow = Flow {
        transport,
        local,
        remote,
        connection: Some(id),
    };
    table.insert(flow, queue.clone(), false);
    inc(&inner.stats.connections_open);
    debug!(transport = %transport, %remote, connection = id.0, "connecting");
    Ok(connect_task(Arc::clone(inner), flow, queue, rx))
}

/// Opens a TCP connection for a queued first message, then runs it. On
/// failure every message queued meanwhile is reported as a transport error.
async fn connect_task(
    inner: Arc<Inner>,
    flow: Flow,
    queue: mpsc::Sender<Outgoing>,
    mut rx: mpsc::Receiver<Outgoing>,
) {
    let Some(id) = flow.connection else {
        return;
    };
    let remote = flow.remote;
    let mut shutdown = inner.shutdown.subscribe();
    let attempt =
        tokio::time::timeout(inner.config.tcp_connect_timeout, TcpStream::connect(remote));
    let result = tokio::select! {
        r = attempt => r,
        _ = shutdown.wait_for(|s| *s) => {
            close_entry(&inner, id);
            return;
        }
    };
    let error = match result {
        Ok(Ok(stream)) => {
            if let Err(e) = stream.set_nodelay(true) {
                debug!(%remote, error = %e, "cannot set TCP_NODELAY");
            }
            let local = stream.local_addr().unwrap_or(flow.local);
            lock(&inner.conns).set_established(id, local);
            inc(&inner.stats.connections_connected);
            info!(transport = %flow.transport, %local, %remote, connection = id.0, "connected");
            let Some(tx) = inner.inbound_sender() else {
                close_entry(&inner, id);
                return;
            };
            let flow = Flow { local, ..flow };
            run_connection(inner, stream, flow, queue, rx, tx).await;
            return;
        }
        Ok(Err(e)) => TransportError::Connect {
            remote,
            source: Arc::new(e),
        },
        Err(_) => TransportError::ConnectTimeout { remote },
    };
    inc(&inner.stats.connect_errors);
    warn!(transport = %flow.transport, %remote, connection = id.0, error = %error, "connect failed");
    // Out of the table first, so nothing more is queued; then fail the queue.
    close_entry(&inner, id);
    drop(queue);
    rx.close();
    let Some(tx) = inner.inbound_sender() else {
        return;
    };
    while let Some(item) = rx.recv().await {
        if let Outgoing::Message(t) = item {
            inc(&inner.stats.send_errors);
            let flow = Flow {
                connection: Some(id),
                ..t.flow
            };
            let report = Inbound::TransportError {
                flow,
                error: error.clone(),
            };
            if !deliver(&tx, &mut shutdown, report).await {
                return;
            }
        }
    }
}

/// Removes a connection that never opened.
fn close_entry(inner: &Inner, id: ConnectionId) {
    if lock(&inner.conns).remove(id).is_some() {
        dec(&inner.stats.connections_open);
    }
}

/// Runs one connection: a reader (framing, keep-alive, idle timeout) and a
/// writer (the queue) side by side. When the reader ends, the connection
/// leaves the table; the writer then flushes what is queued and closes.
async fn run_connection<S>(
    inner: Arc<Inner>,
    stream: S,
    flow: Flow,
    queue: mpsc::Sender<Outgoing>,
    rx: mpsc::Receiver<Outgoing>,
    tx: mpsc::Sender<Inbound>,
) where
    S: AsyncRead + AsyncWrite + Send + 'static,
{
    let (reader, writer) = tokio::io::split(stream);
    let activity = AtomicU64::new(inner.now_ms());
    let (failed_tx, failed_rx) = oneshot::channel();
    let read = async {
        let reason = read_side(&inner, reader, flow, queue, &tx, &activity, failed_rx).await;
        if let Some(id) = flow.connection
            && lock(&inner.conns).remove(id).is_some()
        {
            dec(&inner.stats.connections_open);
        }
        inc(&inner.stats.connections_closed);
        info!(transport = %flow.transport, local = %flow.local, remote = %flow.remote,
              connection = flow.connection.map(|c| c.0), reason = ?reason, "connection closed");
        if reason != CloseReason::Shutdown {
            let mut shutdown = inner.shutdown.subscribe();
            let _ = deliver(
                &tx,
                &mut shutdown,
                Inbound::ConnectionClosed { flow, reason },
            )
            .await;
        }
    };
    let write = write_side(&inner, writer, flow, rx, &tx, &activity, failed_tx);
    tokio::pin!(read, write);
    let read_ended_first = tokio::select! {
        () = &mut read => true,
        () = &mut write => false,
    };
    if read_ended_first {
        // Flush what is queued, but a peer that stopped reading must not keep
        // the task (and the socket) forever.
        if tokio::time::timeout(FLUSH_TIMEOUT, write).await.is_err() {
            warn!(transport = %flow.transport, remote = %flow.remote,
                  connection = flow.connection.map(|c| c.0), "flush timed out; queued messages dropped");
        }
    } else {
        read.await;
    }
}

async fn read_side<R>(
    inner: &Inner,
    mut reader: R,
    flow: Flow,
    queue: mpsc::Sender<Outgoing>,
    tx: &mpsc::Sender<Inbound>,
    activity: &AtomicU64,
    mut write_failed: oneshot::Receiver<io::ErrorKind>,
) -> CloseReason
where
    R: AsyncRead + Unpin,
{
    let stats = &inner.stats;
    let mut framer = StreamFramer::new(inner.config.limits);
    let mut buf = vec![0u8; READ_CHUNK];
    let mut shutdown = inner.shutdown.subscribe();
    let idle = inner.config.tcp_idle_timeout;
    let epoch = tokio::time::Instant::from_std(inner.epoch);
    loop {
        let last = Duration::from_millis(activity.load(Ordering::Relaxed));
        let idle_deadline = epoch + last + idle.unwrap_or(Duration::ZERO);
        let read = tokio::select! {
            r = reader.read(&mut buf) => r,
            _ = shutdown.wait_for(|s| *s) => return CloseReason::Shutdown,
            kind = &mut write_failed => {
                return CloseReason::Io(kind.unwrap_or(io::ErrorKind::BrokenPipe));
            }
            _ = tokio::time::sleep_until(idle_deadline), if idle.is_some() => {
                let last = Duration::from_millis(activity.load(Ordering::Relaxed));
                if epoch + last + idle.unwrap_or(Duration::ZERO) <= tokio::time::Instant::now() {
                    inc(&stats.idle_timeouts);
                    return CloseReason::Idle;
                }
                continue;
            }
        };
        let n = match read {
            Ok(0) => return CloseReason::PeerClosed,
            Ok(n) => n,
            Err(e) => return CloseReason::Io(e.kind()),
        };
        activity.store(inner.now_ms(), Ordering::Relaxed);
        add(&stats.bytes_in, n);
        framer.push(buf.get(..n).unwrap_or_default());
        loop {
            match framer.next_frame() {
                Ok(None) => break,
                Ok(Some(Frame::Message(data))) => {
                    inc(&stats.messages_in);
                    trace!(transport = %flow.transport, remote = %flow.remote,
                           connection = flow.connection.map(|c| c.0), bytes = data.len(), "received");
                    let item = Inbound::Message { flow, data };
                    if !deliver(tx, &mut shutdown, item).await {
                        return CloseReason::Shutdown;
                    }
                }
                Ok(Some(Frame::Ping)) => {
                    inc(&stats.keepalive_pings);
                    trace!(remote = %flow.remote, "keep-alive ping");
                    // A full queue already carries traffic the peer will see.
                    let _ = queue.try_send(Outgoing::Pong);
                }
                Ok(Some(_)) => {} // a pong to our ping
                Err(e) => {
                    inc(&stats.framing_errors);
                    debug!(transport = %flow.transport, remote = %flow.remote, error = %e, "framing error");
                    return CloseReason::Framing(e);
                }
            }
        }
    }
}

async fn write_side<W>(
    inner: &Inner,
    mut writer: W,
    conn: Flow,
    mut rx: mpsc::Receiver<Outgoing>,
    tx: &mpsc::Sender<Inbound>,
    activity: &AtomicU64,
    failed: oneshot::Sender<io::ErrorKind>,
) where
    W: AsyncWrite + Unpin,
{
    let stats = &inner.stats;
    let mut shutdown = inner.shutdown.subscribe();
    let mut failure: Option<(io::ErrorKind, TransportError)> = None;
    while let Some(item) = rx.recv().await {
        let (payload, flow) = match item {
            Outgoing::Message(t) => (t.payload, Some(t.flow)),
            Outgoing::Pong => (Bytes::from_static(PONG), None),
        };
        let mut result = writer.write_all(&payload).await;
        if result.is_ok() && rx.is_empty() {
            result = writer.flush().await;
        }
        match result {
            Ok(()) => {
                add(&stats.bytes_out, payload.len());
                activity.store(inner.now_ms(), Ordering::Relaxed);
                if flow.is_some() {
                    inc(&stats.messages_out);
                    trace!(transport = %conn.transport, remote = %conn.remote,
                           connection = conn.connection.map(|c| c.0), bytes = payload.len(), "sent");
                }
            }
            Err(e) => {
                debug!(transport = %conn.transport, remote = %conn.remote, error = %e, "write failed");
                let kind = e.kind();
                let error = TransportError::Send {
                    remote: conn.remote,
                    source: Arc::new(e),
                };
                if let Some(flow) = flow {
                    report(stats, tx, &mut shutdown, flow, conn, error.clone()).await;
                }
                failure = Some((kind, error));
                break;
            }
        }
    }
    match failure {
        Some((kind, _)) => {
            let _ = failed.send(kind);
            // Whatever is still queued will never be written.
            rx.close();
            let error = TransportError::ConnectionClosed {
                remote: conn.remote,
                connection: conn.connection.unwrap_or(ConnectionId(0)),
            };
            while let Some(item) = rx.recv().await {
                if let Outgoing::Message(t) = item {
                    report(stats, tx, &mut shutdown, t.flow, conn, error.clone()).await;
                }
            }
        }
        None => {
            let _ = writer.shutdown().await;
        }
    }
}

async fn report(
    stats: &crate::stats::Stats,
    tx: &mpsc::Sender<Inbound>,
    shutdown: &mut tokio::sync::watch::Receiver<bool>,
    flow: Flow,
    conn: Flow,
    error: TransportError,
) {
    inc(&stats.send_errors);
    let flow = Flow {
        connection: conn.connection,
        ..flow
    };
    let _ = deliver(tx, shutdown, Inbound::TransportError { flow, error }).await;
}
