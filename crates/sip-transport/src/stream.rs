//! Stream transports: the connection table, accept and connect, and the
//! per-connection tasks (RFC 3261 §18.3, RFC 5626 §3.5.1).
//!
//! A connection is a [`MessageRead`] half and a [`MessageWrite`] half. TCP and
//! TLS are byte streams framed by Content-Length ([`ByteReader`],
//! [`ByteWriter`]); a WebSocket carries one message per WebSocket message
//! (RFC 7118 §5.1, `crate::ws`). Everything else (the connection table,
//! reuse, idle timeout, keep-alive, write queue, flush on close, counters) is
//! the same for all of them.

use crate::error::TransportError;
use crate::framing::{Frame, StreamFramer};
use crate::layer::{CloseReason, Inbound, Inner, deliver, lock};
use crate::stats::{add, dec, inc};
use bytes::Bytes;
use rustls_pki_types::ServerName;
use sip_message::Transport;
use sip_transaction::{ConnectionId, Flow, Transmit};
use socket2::{Domain, Protocol, Socket, Type};
use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};
use tokio_rustls::TlsConnector;
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

    /// How many connections of `transport` are open (or opening).
    pub(crate) fn count(&self, transport: Transport) -> u64 {
        let n = self
            .by_id
            .values()
            .filter(|e| e.flow.transport == transport)
            .count();
        u64::try_from(n).unwrap_or(u64::MAX)
    }

    pub(crate) fn flows(&self) -> Vec<Flow> {
        let mut flows: Vec<Flow> = self.by_id.values().map(|e| e.flow).collect();
        flows.sort_by_key(|f| f.connection);
        flows
    }
}

// ---------------------------------------------------------------- codecs

/// What one read from a connection gave.
#[derive(Debug)]
pub(crate) enum Received {
    /// Bytes arrived; no whole message yet.
    Bytes(usize),
    /// One whole message. `wire`: bytes not counted yet by a `Bytes` report.
    Message { data: Bytes, wire: usize },
    /// A keep-alive ping, to answer with a pong.
    Ping { wire: usize },
    /// Traffic that asks for nothing (a pong, an empty message).
    Other { wire: usize },
}

/// The receiving half of a connection: yields messages one at a time.
///
/// `next` must be cancel-safe: the reader drops it to serve a timer or
/// shutdown, and calls it again.
pub(crate) trait MessageRead: Send {
    /// The next thing that arrived; `Err` says why the connection must end.
    fn next(&mut self) -> impl Future<Output = Result<Received, CloseReason>> + Send;
}

/// The sending half of a connection.
pub(crate) trait MessageWrite: Send {
    /// Writes one whole message (maybe buffered until [`flush`](Self::flush)).
    fn write_message(&mut self, payload: Bytes) -> impl Future<Output = io::Result<()>> + Send;
    /// Answers a keep-alive ping; returns the bytes written.
    fn pong(&mut self) -> impl Future<Output = io::Result<usize>> + Send;
    /// Pushes buffered writes out.
    fn flush(&mut self) -> impl Future<Output = io::Result<()>> + Send;
    /// Closes our side; `reason` is why the connection ends, if the reader ended it.
    fn close(&mut self, reason: Option<&CloseReason>) -> impl Future<Output = ()> + Send;
}

/// Reads a byte stream (TCP, TLS) and frames it by Content-Length (RFC 3261 §18.3).
pub(crate) struct ByteReader<R> {
    reader: R,
    framer: StreamFramer,
    buf: Vec<u8>,
}

/// Writes messages to a byte stream (TCP, TLS) as they are.
pub(crate) struct ByteWriter<W> {
    writer: W,
}

/// Splits a byte stream into its two halves.
pub(crate) fn byte_halves<S>(
    stream: S,
    inner: &Inner,
) -> (ByteReader<ReadHalf<S>>, ByteWriter<WriteHalf<S>>)
where
    S: AsyncRead + AsyncWrite + Send,
{
    let (reader, writer) = tokio::io::split(stream);
    let reader = ByteReader {
        reader,
        framer: StreamFramer::new(inner.config.limits),
        buf: vec![0u8; READ_CHUNK],
    };
    (reader, ByteWriter { writer })
}

impl<R: AsyncRead + Unpin + Send> MessageRead for ByteReader<R> {
    async fn next(&mut self) -> Result<Received, CloseReason> {
        // What is already buffered first; the read below is cancel-safe.
        match self.framer.next_frame() {
            Ok(Some(Frame::Message(data))) => return Ok(Received::Message { data, wire: 0 }),
            Ok(Some(Frame::Ping)) => return Ok(Received::Ping { wire: 0 }),
            Ok(Some(_)) => return Ok(Received::Other { wire: 0 }), // a pong to our ping
            Ok(None) => {}
            Err(e) => return Err(CloseReason::Framing(e)),
        }
        match self.reader.read(&mut self.buf).await {
            Ok(0) => Err(CloseReason::PeerClosed),
            Ok(n) => {
                self.framer.push(self.buf.get(..n).unwrap_or_default());
                Ok(Received::Bytes(n))
            }
            Err(e) => Err(CloseReason::Io(e.kind())),
        }
    }
}

impl<W: AsyncWrite + Unpin + Send> MessageWrite for ByteWriter<W> {
    async fn write_message(&mut self, payload: Bytes) -> io::Result<()> {
        self.writer.write_all(&payload).await
    }

    async fn pong(&mut self) -> io::Result<usize> {
        self.writer.write_all(PONG).await.map(|()| PONG.len())
    }

    async fn flush(&mut self) -> io::Result<()> {
        self.writer.flush().await
    }

    async fn close(&mut self, _reason: Option<&CloseReason>) {
        let _ = self.writer.shutdown().await;
    }
}

// ---------------------------------------------------------------- accept

/// Binds a stream listener (SO_REUSEADDR, so a restart need not wait out TIME_WAIT).
pub(crate) fn bind_tcp(
    addr: SocketAddr,
    transport: Transport,
) -> Result<TcpListener, TransportError> {
    let fail = |e: io::Error| TransportError::Bind {
        transport,
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

/// Accepts connections until shutdown. Errors never stop the listener. TCP
/// connections start at once; TLS, WS and WSS ones first finish their
/// handshake in a task of their own, within
/// [`TransportConfig::handshake_timeout`](crate::TransportConfig::handshake_timeout).
pub(crate) async fn accept_loop(
    inner: Arc<Inner>,
    listener: TcpListener,
    local: SocketAddr,
    transport: Transport,
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
                if transport == Transport::Tcp {
                    let adopted = adopt(
                        &inner,
                        transport,
                        byte_halves(stream, &inner),
                        local,
                        remote,
                        tx.clone(),
                        true,
                    );
                    log_adopted(transport, local, remote, &adopted);
                    continue;
                }
                match Pending::start(&inner) {
                    Some(pending) => {
                        let task = crate::secure::accept(
                            Arc::clone(&inner),
                            transport,
                            stream,
                            local,
                            remote,
                            tx.clone(),
                            pending,
                        );
                        inner.spawn(task);
                    }
                    None => {
                        inc(&inner.stats.connections_rejected);
                        warn!(transport = %transport, %local, %remote,
                              limit = inner.config.max_connections, "connection refused: too many connections");
                    }
                }
            }
            Err(e) => {
                inc(&inner.stats.recv_errors);
                warn!(transport = %transport, %local, error = %e, "accept failed");
                tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
            }
        }
    }
    debug!(transport = %transport, %local, "listener stopped");
}

/// Logs the outcome of adopting an accepted connection.
pub(crate) fn log_adopted(
    transport: Transport,
    local: SocketAddr,
    remote: SocketAddr,
    adopted: &Result<ConnectionId, TransportError>,
) {
    match adopted {
        Ok(id) => debug!(transport = %transport, %local, %remote, connection = id.0, "accepted"),
        Err(e) => warn!(transport = %transport, %local, %remote, error = %e, "connection refused"),
    }
}

/// An accepted connection still in its handshake: counted against
/// `max_connections` until it is dropped.
pub(crate) struct Pending {
    inner: Arc<Inner>,
}

impl Pending {
    /// Takes a place for a handshake, if the table has room for one more.
    fn start(inner: &Arc<Inner>) -> Option<Pending> {
        let open = lock(&inner.conns).len();
        let pending = inner.stats.handshakes_pending.load(Ordering::Relaxed);
        let limit = inner.config.max_connections;
        if u64::try_from(open)
            .unwrap_or(u64::MAX)
            .saturating_add(pending)
            >= u64::try_from(limit).unwrap_or(u64::MAX)
        {
            return None;
        }
        inc(&inner.stats.handshakes_pending);
        Some(Pending {
            inner: Arc::clone(inner),
        })
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        dec(&self.inner.stats.handshakes_pending);
    }
}

/// Registers an established connection and starts its tasks.
pub(crate) fn adopt<R, W>(
    inner: &Arc<Inner>,
    transport: Transport,
    (reader, writer): (R, W),
    local: SocketAddr,
    remote: SocketAddr,
    tx: mpsc::Sender<Inbound>,
    accepted: bool,
) -> Result<ConnectionId, TransportError>
where
    R: MessageRead + 'static,
    W: MessageWrite + 'static,
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
        reader,
        writer,
        flow,
        queue,
        rx,
        tx,
    ));
    Ok(id)
}

// ---------------------------------------------------------------- connect

/// Registers a connection about to be opened, with `transmit` queued on it,
/// and returns the task that opens and then runs it (TCP, or TLS over TCP
/// when `tls` names the connector and the name to verify). Later sends to the
/// same peer queue behind it meanwhile.
pub(crate) fn open(
    inner: &Arc<Inner>,
    table: &mut ConnTable,
    local: SocketAddr,
    transmit: Transmit,
    tls: Option<(TlsConnector, ServerName<'static>)>,
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
    Ok(connect_task(Arc::clone(inner), flow, queue, rx, tls))
}

/// A connection we opened.
enum Opened {
    Tcp(TcpStream),
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

/// Opens the TCP connection and, for TLS, makes the handshake.
async fn connect(
    remote: SocketAddr,
    tls: Option<(TlsConnector, ServerName<'static>)>,
) -> Result<(Opened, Option<SocketAddr>), TransportError> {
    let stream = TcpStream::connect(remote)
        .await
        .map_err(|e| TransportError::Connect {
            remote,
            source: Arc::new(e),
        })?;
    if let Err(e) = stream.set_nodelay(true) {
        debug!(%remote, error = %e, "cannot set TCP_NODELAY");
    }
    let local = stream.local_addr().ok();
    let Some((connector, name)) = tls else {
        return Ok((Opened::Tcp(stream), local));
    };
    let stream =
        connector
            .connect(name, stream)
            .await
            .map_err(|e| TransportError::TlsHandshake {
                remote,
                source: Arc::new(e),
            })?;
    Ok((Opened::Tls(Box::new(stream)), local))
}

/// Opens a connection for a queued first message, then runs it. On failure
/// every message queued meanwhile is reported as a transport error.
async fn connect_task(
    inner: Arc<Inner>,
    flow: Flow,
    queue: mpsc::Sender<Outgoing>,
    mut rx: mpsc::Receiver<Outgoing>,
    tls: Option<(TlsConnector, ServerName<'static>)>,
) {
    let Some(id) = flow.connection else {
        return;
    };
    let remote = flow.remote;
    let mut shutdown = inner.shutdown.subscribe();
    let attempt = tokio::time::timeout(inner.config.tcp_connect_timeout, connect(remote, tls));
    let result = tokio::select! {
        r = attempt => r,
        _ = shutdown.wait_for(|s| *s) => {
            close_entry(&inner, id);
            return;
        }
    };
    let error = match result {
        Ok(Ok((opened, local))) => {
            let local = local.unwrap_or(flow.local);
            lock(&inner.conns).set_established(id, local);
            inc(&inner.stats.connections_connected);
            if matches!(opened, Opened::Tls(_)) {
                inc(&inner.stats.tls_handshakes);
            }
            info!(transport = %flow.transport, %local, %remote, connection = id.0, "connected");
            let Some(tx) = inner.inbound_sender() else {
                close_entry(&inner, id);
                return;
            };
            let flow = Flow { local, ..flow };
            match opened {
                Opened::Tcp(stream) => {
                    let (reader, writer) = byte_halves(stream, &inner);
                    run_connection(inner, reader, writer, flow, queue, rx, tx).await;
                }
                Opened::Tls(stream) => {
                    let (reader, writer) = byte_halves(stream, &inner);
                    run_connection(inner, reader, writer, flow, queue, rx, tx).await;
                }
            }
            return;
        }
        Ok(Err(e)) => e,
        Err(_) => TransportError::ConnectTimeout { remote },
    };
    if matches!(error, TransportError::TlsHandshake { .. }) {
        inc(&inner.stats.tls_handshake_failures);
    }
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

// ---------------------------------------------------------------- run

/// What the two sides of a connection share.
struct Shared {
    /// Last traffic either way, in ms since `Inner::epoch` (the idle timeout).
    activity: AtomicU64,
    /// Why the reader ended the connection, for the writer's close.
    closing: OnceLock<CloseReason>,
}

/// Runs one connection: a reader (messages, keep-alive, idle timeout) and a
/// writer (the queue) side by side. When the reader ends, the connection
/// leaves the table; the writer then flushes what is queued and closes.
async fn run_connection<R, W>(
    inner: Arc<Inner>,
    reader: R,
    writer: W,
    flow: Flow,
    queue: mpsc::Sender<Outgoing>,
    rx: mpsc::Receiver<Outgoing>,
    tx: mpsc::Sender<Inbound>,
) where
    R: MessageRead,
    W: MessageWrite,
{
    let shared = Shared {
        activity: AtomicU64::new(inner.now_ms()),
        closing: OnceLock::new(),
    };
    let (failed_tx, failed_rx) = oneshot::channel();
    let read = async {
        let reason = read_side(&inner, reader, flow, queue, &tx, &shared, failed_rx).await;
        let _ = shared.closing.set(reason.clone());
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
    let write = write_side(&inner, writer, flow, rx, &tx, &shared, failed_tx);
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
    shared: &Shared,
    mut write_failed: oneshot::Receiver<io::ErrorKind>,
) -> CloseReason
where
    R: MessageRead,
{
    let stats = &inner.stats;
    let activity = &shared.activity;
    let mut shutdown = inner.shutdown.subscribe();
    let idle = inner.config.tcp_idle_timeout;
    let epoch = tokio::time::Instant::from_std(inner.epoch);
    let seen = |wire: usize| {
        if wire > 0 {
            activity.store(inner.now_ms(), Ordering::Relaxed);
            add(&stats.bytes_in, wire);
        }
    };
    loop {
        let last = Duration::from_millis(activity.load(Ordering::Relaxed));
        let idle_deadline = epoch + last + idle.unwrap_or(Duration::ZERO);
        let received = tokio::select! {
            r = reader.next() => r,
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
        match received {
            Ok(Received::Bytes(n)) => seen(n),
            Ok(Received::Message { data, wire }) => {
                seen(wire);
                inc(&stats.messages_in);
                trace!(transport = %flow.transport, remote = %flow.remote,
                       connection = flow.connection.map(|c| c.0), bytes = data.len(), "received");
                let item = Inbound::Message { flow, data };
                if !deliver(tx, &mut shutdown, item).await {
                    return CloseReason::Shutdown;
                }
            }
            Ok(Received::Ping { wire }) => {
                seen(wire);
                inc(&stats.keepalive_pings);
                trace!(remote = %flow.remote, "keep-alive ping");
                // A full queue already carries traffic the peer will see.
                let _ = queue.try_send(Outgoing::Pong);
            }
            Ok(Received::Other { wire }) => seen(wire),
            Err(reason) => {
                if let CloseReason::Framing(e) = &reason {
                    inc(&stats.framing_errors);
                    debug!(transport = %flow.transport, remote = %flow.remote, error = %e, "framing error");
                }
                return reason;
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
    shared: &Shared,
    failed: oneshot::Sender<io::ErrorKind>,
) where
    W: MessageWrite,
{
    let stats = &inner.stats;
    let mut shutdown = inner.shutdown.subscribe();
    let mut failure: Option<(io::ErrorKind, TransportError)> = None;
    while let Some(item) = rx.recv().await {
        let (flow, mut result) = match item {
            Outgoing::Message(t) => {
                let len = t.payload.len();
                let written = writer.write_message(t.payload).await.map(|()| len);
                (Some(t.flow), written)
            }
            Outgoing::Pong => (None, writer.pong().await),
        };
        if result.is_ok()
            && rx.is_empty()
            && let Err(e) = writer.flush().await
        {
            result = Err(e);
        }
        match result {
            Ok(n) => {
                add(&stats.bytes_out, n);
                shared.activity.store(inner.now_ms(), Ordering::Relaxed);
                if flow.is_some() {
                    inc(&stats.messages_out);
                    trace!(transport = %conn.transport, remote = %conn.remote,
                           connection = conn.connection.map(|c| c.0), bytes = n, "sent");
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
        None => writer.close(shared.closing.get()).await,
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
