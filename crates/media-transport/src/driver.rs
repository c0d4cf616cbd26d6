//! The tokio task that drives one sans-IO media machine over its sockets: datagrams in,
//! `poll_transmit` out with non-blocking sends, events to a bounded channel, the machine's
//! timer on a tokio sleep, commands from the owner through an unbounded channel.
//!
//! The media path never awaits: a full socket buffer or a full event channel drops and
//! counts, so one slow consumer cannot stall the packets of a call.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use rtp_session::{MediaMachine, SocketId};
use tokio::io::ReadBuf;
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::Sleep;

use crate::TransportError;

/// Datagrams read from one socket per wake before the task yields to the others.
const RECV_BATCH: usize = 32;
/// Commands run per wake before the task yields.
const COMMAND_BATCH: usize = 64;
/// Timeouts handled per wake before the task yields (a machine whose deadline stays in the
/// past cannot spin the thread).
const TIMER_BATCH: usize = 16;
/// Room for events the owner has not read yet.
const EVENT_CAPACITY: usize = 1024;
/// Large enough for any RTP packet on an Ethernet path.
const RECV_BUFFER: usize = 2048;

type Job<M> = Box<dyn FnOnce(&mut M, Instant) + Send>;

enum Command<M> {
    Run(Job<M>),
    AddSocket(SocketId, UdpSocket),
    RemoveSocket(SocketId),
    TakeSocket(SocketId, oneshot::Sender<Option<UdpSocket>>),
    Stop,
}

/// What the driver counted (the machine keeps its own statistics).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DriverStats {
    /// Datagrams read from the sockets and fed to the machine.
    pub received: u64,
    /// Datagrams sent.
    pub sent: u64,
    /// Datagrams dropped because the socket's send buffer was full (`WouldBlock`).
    pub send_dropped: u64,
    /// Datagrams not sent for another reason (an unknown socket, an unreachable address).
    pub send_errors: u64,
    /// Errors reading a socket.
    pub receive_errors: u64,
    /// Events dropped because the owner's channel was full.
    pub events_dropped: u64,
}

#[derive(Debug, Default)]
struct Counters {
    received: AtomicU64,
    sent: AtomicU64,
    send_dropped: AtomicU64,
    send_errors: AtomicU64,
    receive_errors: AtomicU64,
    events_dropped: AtomicU64,
}

impl Counters {
    fn snapshot(&self) -> DriverStats {
        DriverStats {
            received: self.received.load(Ordering::Relaxed),
            sent: self.sent.load(Ordering::Relaxed),
            send_dropped: self.send_dropped.load(Ordering::Relaxed),
            send_errors: self.send_errors.load(Ordering::Relaxed),
            receive_errors: self.receive_errors.load(Ordering::Relaxed),
            events_dropped: self.events_dropped.load(Ordering::Relaxed),
        }
    }
}

fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

/// Tokio's clock, so a test's paused clock drives the machine too.
fn now() -> Instant {
    tokio::time::Instant::now().into_std()
}

/// Drives a sans-IO media machine over its sockets in one tokio task. Must be called
/// inside a tokio runtime; outside one the machine is dropped and the handle is closed
/// (every call answers [`TransportError::Closed`]).
///
/// The task ends on [`MediaHandle::stop`], or when the handle and every
/// [`MediaController`] are dropped.
pub fn spawn<M>(machine: M, sockets: Vec<(SocketId, UdpSocket)>) -> MediaHandle<M>
where
    M: MediaMachine + Send + 'static,
    M::Event: Send + 'static,
{
    let (commands, command_rx) = mpsc::unbounded_channel();
    let (event_tx, events) = mpsc::channel(EVENT_CAPACITY);
    let counters = Arc::new(Counters::default());
    let task = match tokio::runtime::Handle::try_current() {
        Ok(runtime) => {
            let driver = Driver {
                machine,
                sockets,
                commands: command_rx,
                events: event_tx,
                counters: Arc::clone(&counters),
                buffer: vec![0; RECV_BUFFER],
                sleep: Box::pin(tokio::time::sleep(Duration::ZERO)),
                armed: None,
            };
            {
                // The task logs in the span it was started in (the call's `call_id`).
                use tracing::Instrument as _;
                Some(runtime.spawn(driver.run().in_current_span()))
            }
        }
        Err(_) => {
            tracing::warn!("media task not started: no tokio runtime");
            None
        }
    };
    MediaHandle {
        controller: MediaController { commands, counters },
        events,
        task,
    }
}

struct Driver<M: MediaMachine> {
    machine: M,
    sockets: Vec<(SocketId, UdpSocket)>,
    commands: mpsc::UnboundedReceiver<Command<M>>,
    events: mpsc::Sender<M::Event>,
    counters: Arc<Counters>,
    buffer: Vec<u8>,
    sleep: Pin<Box<Sleep>>,
    /// The deadline `sleep` is set to, when armed.
    armed: Option<Instant>,
}

impl<M: MediaMachine> Driver<M> {
    async fn run(mut self) -> M {
        tracing::debug!(sockets = self.sockets.len(), "media task started");
        std::future::poll_fn(|cx| self.poll(cx)).await;
        tracing::debug!("media task stopped");
        self.machine
    }

    /// One wake: commands, then every socket, then the timer. Ready when the task must end.
    fn poll(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let mut again = false;

        let mut commands = 0;
        loop {
            if commands == COMMAND_BATCH {
                again = true;
                break;
            }
            match self.commands.poll_recv(cx) {
                Poll::Ready(Some(Command::Stop)) | Poll::Ready(None) => {
                    // What the commands before the stop asked to send (an RTCP BYE)
                    // still goes out.
                    self.flush();
                    return Poll::Ready(());
                }
                Poll::Ready(Some(command)) => {
                    commands += 1;
                    self.run_command(command);
                }
                Poll::Pending => break,
            }
        }
        self.flush();

        for index in 0..self.sockets.len() {
            for read in 0..=RECV_BATCH {
                if read == RECV_BATCH {
                    again = true;
                    break;
                }
                let Some((id, socket)) = self.sockets.get(index) else {
                    break;
                };
                let mut buf = ReadBuf::new(&mut self.buffer);
                match socket.poll_recv_from(cx, &mut buf) {
                    Poll::Ready(Ok(from)) => {
                        bump(&self.counters.received);
                        self.machine.handle_datagram(now(), *id, from, buf.filled());
                        self.flush();
                    }
                    Poll::Ready(Err(error)) => {
                        bump(&self.counters.receive_errors);
                        tracing::debug!(socket = id.0, %error, "media socket read failed");
                    }
                    Poll::Pending => break,
                }
            }
        }

        let mut fired = 0;
        loop {
            let Some(deadline) = self.machine.poll_timeout() else {
                self.armed = None;
                break;
            };
            if fired == TIMER_BATCH {
                again = true;
                break;
            }
            if self.armed != Some(deadline) {
                self.sleep
                    .as_mut()
                    .reset(tokio::time::Instant::from_std(deadline));
                self.armed = Some(deadline);
            }
            match self.sleep.as_mut().poll(cx) {
                Poll::Ready(()) => {
                    fired += 1;
                    self.armed = None;
                    self.machine.handle_timeout(now());
                    self.flush();
                }
                Poll::Pending => break,
            }
        }

        if again {
            cx.waker().wake_by_ref();
        }
        Poll::Pending
    }

    fn run_command(&mut self, command: Command<M>) {
        match command {
            Command::Run(job) => job(&mut self.machine, now()),
            Command::AddSocket(id, socket) => {
                self.sockets.retain(|(existing, _)| *existing != id);
                self.sockets.push((id, socket));
            }
            Command::RemoveSocket(id) => self.sockets.retain(|(existing, _)| *existing != id),
            Command::TakeSocket(id, reply) => {
                let socket = self
                    .sockets
                    .iter()
                    .position(|(existing, _)| *existing == id)
                    .map(|index| self.sockets.remove(index).1);
                // Nobody waits any more: the socket is closed.
                let _ = reply.send(socket);
            }
            Command::Stop => {}
        }
    }

    /// Sends what the machine has to send and passes its events on; never waits.
    fn flush(&mut self) {
        while let Some(datagram) = self.machine.poll_transmit() {
            let Some((_, socket)) = self.sockets.iter().find(|(id, _)| *id == datagram.socket)
            else {
                bump(&self.counters.send_errors);
                continue;
            };
            match socket.try_send_to(&datagram.data, datagram.to) {
                Ok(_) => bump(&self.counters.sent),
                Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => {
                    bump(&self.counters.send_dropped);
                }
                Err(error) => {
                    bump(&self.counters.send_errors);
                    tracing::debug!(socket = datagram.socket.0, to = %datagram.to, %error, "media send failed");
                }
            }
        }
        while let Some(event) = self.machine.poll_event() {
            if self.events.try_send(event).is_err() {
                bump(&self.counters.events_dropped);
            }
        }
    }
}

/// The owner's side of a media task: commands, queries, sockets, and the machine's events.
pub struct MediaHandle<M: MediaMachine> {
    controller: MediaController<M>,
    events: mpsc::Receiver<M::Event>,
    task: Option<JoinHandle<M>>,
}

impl<M: MediaMachine> fmt::Debug for MediaHandle<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MediaHandle")
            .field(
                "running",
                &self.task.as_ref().is_some_and(|t| !t.is_finished()),
            )
            .field("stats", &self.controller.counters.snapshot())
            .finish()
    }
}

impl<M> MediaHandle<M>
where
    M: MediaMachine + Send + 'static,
{
    /// Runs `f` on the machine inside its task (then the task sends what the machine has
    /// to send, passes its events on and re-arms its timer).
    pub fn command(
        &self,
        f: impl FnOnce(&mut M, Instant) + Send + 'static,
    ) -> Result<(), TransportError> {
        self.controller.command(f)
    }

    /// Like [`MediaHandle::command`], returning a value (statistics...).
    pub async fn query<R: Send + 'static>(
        &self,
        f: impl FnOnce(&mut M, Instant) -> R + Send + 'static,
    ) -> Result<R, TransportError> {
        self.controller.query(f).await
    }

    /// Adds a socket (a conference participant joins); the machine learns the [`SocketId`]
    /// through a command. A socket with the same id is replaced.
    pub fn add_socket(&self, id: SocketId, socket: UdpSocket) -> Result<(), TransportError> {
        self.controller.add_socket(id, socket)
    }

    /// Removes (and closes) a socket.
    pub fn remove_socket(&self, id: SocketId) -> Result<(), TransportError> {
        self.controller.remove_socket(id)
    }

    /// Takes a socket out of the task, open, to give it to another task (a call's stream
    /// joining a relay: the peer keeps sending to the same port, and what the kernel has
    /// queued on the socket is read by its new owner). `None`: the task holds no socket
    /// with that id. Commands given before this one run first.
    pub async fn take_socket(&self, id: SocketId) -> Result<Option<UdpSocket>, TransportError> {
        self.controller.take_socket(id).await
    }

    /// The machine's events, in order; None once the task has ended. The channel is
    /// bounded: when it is full the task drops events and counts them
    /// ([`DriverStats::events_dropped`]) rather than stall the media.
    pub async fn next_event(&mut self) -> Option<M::Event> {
        self.events.recv().await
    }

    /// A clonable handle for commands, queries and sockets, without the events.
    pub fn controller(&self) -> MediaController<M> {
        self.controller.clone()
    }

    /// What the driver has counted.
    pub fn stats(&self) -> DriverStats {
        self.controller.stats()
    }

    /// Stops the task (its sockets are closed) and gives the machine back; None when the
    /// task was never started or has failed.
    pub async fn stop(mut self) -> Option<M> {
        let task = self.task.take()?;
        // The task may have ended already (every sender dropped cannot happen while we
        // hold one, so only a failure): then joining says so.
        let _ = self.controller.commands.send(Command::Stop);
        task.await.ok()
    }
}

/// A clonable sender-side handle on a media task: commands, queries, sockets; no events.
pub struct MediaController<M: MediaMachine> {
    commands: mpsc::UnboundedSender<Command<M>>,
    counters: Arc<Counters>,
}

impl<M: MediaMachine> Clone for MediaController<M> {
    fn clone(&self) -> Self {
        Self {
            commands: self.commands.clone(),
            counters: Arc::clone(&self.counters),
        }
    }
}

impl<M: MediaMachine> fmt::Debug for MediaController<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MediaController")
            .field("closed", &self.commands.is_closed())
            .field("stats", &self.counters.snapshot())
            .finish()
    }
}

impl<M> MediaController<M>
where
    M: MediaMachine + Send + 'static,
{
    /// See [`MediaHandle::command`].
    pub fn command(
        &self,
        f: impl FnOnce(&mut M, Instant) + Send + 'static,
    ) -> Result<(), TransportError> {
        self.send(Command::Run(Box::new(f)))
    }

    /// See [`MediaHandle::query`].
    pub async fn query<R: Send + 'static>(
        &self,
        f: impl FnOnce(&mut M, Instant) -> R + Send + 'static,
    ) -> Result<R, TransportError> {
        let (tx, rx) = oneshot::channel();
        self.command(move |machine, now| {
            let _ = tx.send(f(machine, now));
        })?;
        rx.await.map_err(|_| TransportError::Closed)
    }

    /// See [`MediaHandle::add_socket`].
    pub fn add_socket(&self, id: SocketId, socket: UdpSocket) -> Result<(), TransportError> {
        self.send(Command::AddSocket(id, socket))
    }

    /// See [`MediaHandle::remove_socket`].
    pub fn remove_socket(&self, id: SocketId) -> Result<(), TransportError> {
        self.send(Command::RemoveSocket(id))
    }

    /// See [`MediaHandle::take_socket`].
    pub async fn take_socket(&self, id: SocketId) -> Result<Option<UdpSocket>, TransportError> {
        let (tx, rx) = oneshot::channel();
        self.send(Command::TakeSocket(id, tx))?;
        rx.await.map_err(|_| TransportError::Closed)
    }

    /// What the driver has counted.
    pub fn stats(&self) -> DriverStats {
        self.counters.snapshot()
    }

    fn send(&self, command: Command<M>) -> Result<(), TransportError> {
        self.commands
            .send(command)
            .map_err(|_| TransportError::Closed)
    }
}
