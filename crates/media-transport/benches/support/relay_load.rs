//! The relay load test shared by the benchmark (benches/relay.rs) and its smoke test
//! (tests/bench_smoke.rs): N relayed G.711 calls on loopback, each a [`Relay`] with two
//! legs, both phones sending a 172-byte packet every 20 ms (RFC 3551 §4.5.14: 160 bytes of
//! PCMU per 20 ms), so 100 packets/s per call go through the relay.
//!
//! Threads: every relay runs on ONE thread (a current_thread tokio runtime), the phones'
//! generator on another, the phones' receivers on a third. A packet is late when it
//! reaches its phone more than 20 ms after it was due to be sent: pacing is measured
//! against the schedule, not the actual send, so a generator falling behind shows too.
// Test code: fixed offsets into fixed-size packet buffers; shared by the benchmark and its
// smoke test, each of which uses part of it.
#![allow(clippy::indexing_slicing, dead_code)]

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc as std_mpsc;
use std::thread;
use std::time::{Duration, Instant};

use media_transport::{MediaHandle, PortPool, PortRange, spawn};
use rtp_session::{Leg, Relay, RelayConfig, RelayLeg, SocketId};
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot};

pub const LOOPBACK: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
/// G.711 at 20 ms.
pub const PERIOD: Duration = Duration::from_millis(20);
pub const PACKET_LEN: usize = 172;
/// Late: reaching the phone more than this after the packet was due.
pub const LATE_AFTER: Duration = Duration::from_millis(20);
/// File descriptors per call: 4 relay sockets, 2 phone sockets.
pub const FDS_PER_STREAM: u64 = 6;

/// One load step.
#[derive(Debug, Clone)]
pub struct StepConfig {
    pub streams: usize,
    pub duration: Duration,
}

/// What a step measured.
#[derive(Debug, Clone, Default)]
pub struct StepResult {
    pub streams: usize,
    pub duration: Duration,
    /// Packets the generator was due to send.
    pub scheduled: u64,
    /// Packets the phones sent.
    pub sent: u64,
    /// Packets the phones could not send (their socket buffer full).
    pub send_failed: u64,
    /// Packets that reached a phone.
    pub received: u64,
    /// Of those, more than 20 ms after they were due.
    pub late: u64,
    /// What the relays counted.
    pub relay_received: u64,
    pub relay_forwarded: u64,
    pub relay_send_dropped: u64,
    /// CPU time of the relay thread while the generator ran, and the wall time.
    pub relay_cpu: Duration,
    pub wall: Duration,
    /// How far behind its schedule the generator fell at worst.
    pub generator_max_lag: Duration,
}

impl StepResult {
    pub fn relayed_per_second(&self) -> f64 {
        self.relay_forwarded as f64 / self.duration.as_secs_f64()
    }
    pub fn late_percent(&self) -> f64 {
        percent(self.late, self.received)
    }
    pub fn lost_percent(&self) -> f64 {
        percent(self.sent.saturating_sub(self.received), self.sent)
    }
    /// Packets relayed per second of relay-thread CPU: what one core would carry.
    pub fn relayed_per_cpu_second(&self) -> f64 {
        self.relay_forwarded as f64 / self.relay_cpu.as_secs_f64().max(1e-9)
    }
    pub fn relay_cpu_percent(&self) -> f64 {
        100.0 * self.relay_cpu.as_secs_f64() / self.wall.as_secs_f64().max(1e-9)
    }
}

fn percent(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        100.0 * part as f64 / whole as f64
    }
}

/// When stream `i` of `n` first sends, within a 20 ms period (spread evenly).
fn offset(i: usize, n: usize) -> Duration {
    PERIOD.mul_f64(i as f64 / n.max(1) as f64)
}

/// The packets a step is due to send: for each call and each direction, one per 20 ms
/// from the call's offset until the end.
pub fn expected_packets(streams: usize, duration: Duration) -> u64 {
    (0..streams)
        .map(|i| {
            let first = offset(i, streams);
            if first >= duration {
                0
            } else {
                let rounds = (duration - first).as_nanos().div_ceil(PERIOD.as_nanos());
                2 * u64::try_from(rounds).unwrap_or(0)
            }
        })
        .sum()
}

/// This thread's CPU time: /proc/thread-self/schedstat (ns) when the kernel keeps it, else
/// utime + stime from /proc/thread-self/stat in clock ticks (USER_HZ, 100 on Linux).
/// A benchmark's settings from its arguments (`--secs S --steps a,b,c`) or the environment
/// (`<PREFIX>_SECS`, `<PREFIX>_STEPS`): seconds per step (0.5–10, default 5) and the steps.
pub fn bench_settings(prefix: &str, default_steps: &[usize]) -> (f64, Vec<usize>) {
    let args: Vec<String> = std::env::args().collect();
    let arg = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1).cloned())
    };
    let secs = arg("--secs")
        .or_else(|| std::env::var(format!("{prefix}_SECS")).ok())
        .and_then(|s| s.parse::<f64>().ok())
        .unwrap_or(5.0)
        .clamp(0.5, 10.0);
    let steps = arg("--steps")
        .or_else(|| std::env::var(format!("{prefix}_STEPS")).ok())
        .map(|s| s.split(',').filter_map(|n| n.trim().parse().ok()).collect())
        .unwrap_or_else(|| default_steps.to_vec());
    (secs, steps)
}

pub fn thread_cpu() -> Duration {
    if let Ok(text) = std::fs::read_to_string("/proc/thread-self/schedstat")
        && let Some(ns) = text
            .split_whitespace()
            .next()
            .and_then(|f| f.parse::<u64>().ok())
        && ns > 0
    {
        return Duration::from_nanos(ns);
    }
    let Ok(text) = std::fs::read_to_string("/proc/thread-self/stat") else {
        return Duration::ZERO;
    };
    // After the command name in parentheses: state is field 3, utime 14, stime 15.
    let Some((_, rest)) = text.rsplit_once(") ") else {
        return Duration::ZERO;
    };
    let fields: Vec<u64> = rest
        .split_whitespace()
        .map(|f| f.parse().unwrap_or(0))
        .collect();
    let ticks = fields.get(11).copied().unwrap_or(0) + fields.get(12).copied().unwrap_or(0);
    Duration::from_millis(ticks * 10)
}

/// The soft limit on open files, from /proc/self/limits.
pub fn open_files_limit() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = text.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

/// The machine, for the report.
pub fn machine_description() -> String {
    let cpus = thread::available_parallelism().map_or(0, |n| n.get());
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|text| {
            text.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, m)| m.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".to_owned());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|k| k.trim().to_owned())
        .unwrap_or_default();
    let load = std::fs::read_to_string("/proc/loadavg")
        .ok()
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default();
    format!("nproc {cpus}, {model}, Linux {kernel}, load average {load}")
}

// ---- the relay thread ----

struct Totals {
    received: u64,
    forwarded: u64,
    send_dropped: u64,
}

enum Request {
    /// Starts one relay per (phone A, phone B); answers each relay's (A RTP, B RTP) address.
    Start {
        phones: Vec<(SocketAddr, SocketAddr)>,
        reply: std_mpsc::Sender<Result<Vec<(SocketAddr, SocketAddr)>, String>>,
    },
    Cpu {
        reply: std_mpsc::Sender<Duration>,
    },
    Stop {
        reply: std_mpsc::Sender<Totals>,
    },
}

/// The thread every relay runs on.
pub struct RelayThread {
    requests: mpsc::UnboundedSender<Request>,
    thread: Option<thread::JoinHandle<()>>,
}

impl RelayThread {
    pub fn start(range: PortRange) -> Result<Self, String> {
        let (requests, mut rx) = mpsc::unbounded_channel::<Request>();
        let pool = PortPool::new(LOOPBACK, range).map_err(|e| e.to_string())?;
        let thread = thread::Builder::new()
            .name("relays".into())
            .spawn(move || {
                let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                else {
                    return;
                };
                runtime.block_on(async move {
                    let mut relays: Vec<MediaHandle<Relay>> = Vec::new();
                    while let Some(request) = rx.recv().await {
                        match request {
                            Request::Start { phones, reply } => {
                                let mut addrs = Vec::with_capacity(phones.len());
                                let mut failed = None;
                                for (seed, (phone_a, phone_b)) in phones.into_iter().enumerate() {
                                    match start_relay(&pool, phone_a, phone_b, seed as u64) {
                                        Ok((handle, a, b)) => {
                                            relays.push(handle);
                                            addrs.push((a, b));
                                        }
                                        Err(e) => {
                                            failed = Some(e);
                                            break;
                                        }
                                    }
                                }
                                let _ = reply.send(failed.map_or(Ok(addrs), Err));
                            }
                            Request::Cpu { reply } => {
                                let _ = reply.send(thread_cpu());
                            }
                            Request::Stop { reply } => {
                                let mut totals = Totals {
                                    received: 0,
                                    forwarded: 0,
                                    send_dropped: 0,
                                };
                                for handle in relays.drain(..) {
                                    totals.send_dropped += handle.stats().send_dropped;
                                    if let Some(relay) = handle.stop().await {
                                        for leg in [Leg::A, Leg::B] {
                                            totals.received += relay.stats(leg).received;
                                            totals.forwarded += relay.stats(leg).forwarded;
                                        }
                                    }
                                }
                                let _ = reply.send(totals);
                            }
                        }
                    }
                });
            })
            .map_err(|e| e.to_string())?;
        Ok(Self {
            requests,
            thread: Some(thread),
        })
    }

    fn ask<T>(&self, request: impl FnOnce(std_mpsc::Sender<T>) -> Request) -> Result<T, String> {
        let (tx, rx) = std_mpsc::channel();
        self.requests
            .send(request(tx))
            .map_err(|_| "relay thread gone".to_owned())?;
        rx.recv().map_err(|_| "relay thread gone".to_owned())
    }
}

impl Drop for RelayThread {
    fn drop(&mut self) {
        let (closed, _) = mpsc::unbounded_channel();
        self.requests = closed;
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn start_relay(
    pool: &PortPool,
    phone_a: SocketAddr,
    phone_b: SocketAddr,
    seed: u64,
) -> Result<(MediaHandle<Relay>, SocketAddr, SocketAddr), String> {
    let a = pool.bind_pair().map_err(|e| e.to_string())?;
    let b = pool.bind_pair().map_err(|e| e.to_string())?;
    let a_addr = a.rtp.local_addr().map_err(|e| e.to_string())?;
    let b_addr = b.rtp.local_addr().map_err(|e| e.to_string())?;
    let leg = |rtp, rtcp, remote| RelayLeg {
        rtp: SocketId(rtp),
        rtcp: SocketId(rtcp),
        remote: Some(remote),
        remote_rtcp: None,
        symmetric: true,
        clock_rate: 8000,
    };
    let relay = Relay::new(
        tokio::time::Instant::now().into_std(),
        leg(0, 1, phone_a),
        leg(2, 3, phone_b),
        RelayConfig {
            media_timeout: None,
            seed,
            ..RelayConfig::default()
        },
    );
    let handle = spawn(
        relay,
        vec![
            (SocketId(0), a.rtp),
            (SocketId(1), a.rtcp),
            (SocketId(2), b.rtp),
            (SocketId(3), b.rtcp),
        ],
    );
    Ok((handle, a_addr, b_addr))
}

// ---- the phones ----

#[derive(Default)]
struct Received {
    packets: AtomicU64,
    late: AtomicU64,
}

struct Receivers {
    sockets: Vec<Arc<UdpSocket>>,
    counts: Arc<Received>,
    stop: oneshot::Sender<()>,
    thread: thread::JoinHandle<()>,
}

/// Binds `count` phone sockets on a receiver thread and reads them there; `epoch` is what
/// the packets' due times count from.
fn start_receivers(count: usize, epoch: Instant) -> Result<Receivers, String> {
    let (sockets_tx, sockets_rx) = std_mpsc::channel();
    let (stop, stop_rx) = oneshot::channel::<()>();
    let counts = Arc::new(Received::default());
    let task_counts = Arc::clone(&counts);
    let thread = thread::Builder::new()
        .name("phones-rx".into())
        .spawn(move || {
            let runtime = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(runtime) => runtime,
                Err(e) => {
                    let _ = sockets_tx.send(Err(e.to_string()));
                    return;
                }
            };
            runtime.block_on(async move {
                let mut sockets = Vec::with_capacity(count);
                for _ in 0..count {
                    match UdpSocket::bind((LOOPBACK, 0)).await {
                        Ok(socket) => sockets.push(Arc::new(socket)),
                        Err(e) => {
                            let _ = sockets_tx.send(Err(format!("phone socket: {e}")));
                            return;
                        }
                    }
                }
                for socket in &sockets {
                    tokio::spawn(receive(Arc::clone(socket), epoch, Arc::clone(&task_counts)));
                }
                let _ = sockets_tx.send(Ok(sockets));
                let _ = stop_rx.await;
            });
        })
        .map_err(|e| e.to_string())?;
    let sockets = sockets_rx
        .recv()
        .map_err(|_| "receiver thread gone".to_owned())??;
    Ok(Receivers {
        sockets,
        counts,
        stop,
        thread,
    })
}

async fn receive(socket: Arc<UdpSocket>, epoch: Instant, counts: Arc<Received>) {
    let mut buf = [0u8; 512];
    while let Ok(n) = socket.recv(&mut buf).await {
        let arrived = Instant::now();
        let Some(due) = buf
            .get(12..20)
            .filter(|_| n >= 20)
            .and_then(|b| <[u8; 8]>::try_from(b).ok())
            .map(u64::from_be_bytes)
        else {
            continue;
        };
        counts.packets.fetch_add(1, Ordering::Relaxed);
        let due = epoch + Duration::from_nanos(due);
        if arrived.saturating_duration_since(due) > LATE_AFTER {
            counts.late.fetch_add(1, Ordering::Relaxed);
        }
    }
}

struct Generated {
    sent: u64,
    failed: u64,
    max_lag: Duration,
}

/// Sends every call's packets on schedule: call `i` at `start + offset(i) + k × 20 ms`,
/// from phone A to the relay's A socket and from phone B to its B socket. Each payload
/// carries its due time (ns since `start`).
fn generate(
    calls: &[(Arc<UdpSocket>, SocketAddr, Arc<UdpSocket>, SocketAddr)],
    start: Instant,
    duration: Duration,
) -> Generated {
    let n = calls.len();
    let mut packet = [0u8; PACKET_LEN];
    packet[0] = 0x80; // RTP version 2, PT 0 (PCMU)
    let mut generated = Generated {
        sent: 0,
        failed: 0,
        max_lag: Duration::ZERO,
    };
    for round in 0u32.. {
        for (i, (phone_a, relay_a, phone_b, relay_b)) in calls.iter().enumerate() {
            let due_after = PERIOD * round + offset(i, n);
            if due_after >= duration {
                return generated;
            }
            let due = start + due_after;
            let now = Instant::now();
            if due > now + Duration::from_micros(500) {
                thread::sleep(due - now);
            } else {
                generated.max_lag = generated.max_lag.max(now.saturating_duration_since(due));
            }
            let sequence = (round & 0xffff) as u16;
            packet[2..4].copy_from_slice(&sequence.to_be_bytes());
            packet[4..8].copy_from_slice(&(round.wrapping_mul(160)).to_be_bytes());
            let due_ns = u64::try_from(due_after.as_nanos()).unwrap_or(u64::MAX);
            packet[12..20].copy_from_slice(&due_ns.to_be_bytes());
            for (direction, (socket, to)) in [(phone_a, relay_a), (phone_b, relay_b)]
                .into_iter()
                .enumerate()
            {
                let ssrc = ((i as u32) << 1) | direction as u32;
                packet[8..12].copy_from_slice(&ssrc.to_be_bytes());
                match socket.try_send_to(&packet, *to) {
                    Ok(_) => generated.sent += 1,
                    Err(_) => generated.failed += 1,
                }
            }
        }
    }
    generated
}

/// Runs one step on `relays`: starts the phones and the relays, sends for `duration`,
/// waits for the packets in flight (up to a second), stops everything and counts.
pub fn run_step(relays: &RelayThread, config: &StepConfig) -> Result<StepResult, String> {
    let streams = config.streams;
    let start = Instant::now() + Duration::from_millis(300);
    let receivers = start_receivers(2 * streams, start)?;
    let phones: Vec<(SocketAddr, SocketAddr)> = receivers
        .sockets
        .chunks(2)
        .filter_map(|pair| match pair {
            [a, b] => Some((a.local_addr().ok()?, b.local_addr().ok()?)),
            _ => None,
        })
        .collect();
    let relay_addrs = relays.ask(|reply| Request::Start { phones, reply })??;
    let calls: Vec<_> = receivers
        .sockets
        .chunks(2)
        .zip(&relay_addrs)
        .filter_map(|(pair, (relay_a, relay_b))| match pair {
            [a, b] => Some((Arc::clone(a), *relay_a, Arc::clone(b), *relay_b)),
            _ => None,
        })
        .collect();

    let duration = config.duration;
    let generator = thread::Builder::new()
        .name("phones-tx".into())
        .spawn(move || generate(&calls, start, duration))
        .map_err(|e| e.to_string())?;
    // The relay thread's CPU from when the phones start sending.
    thread::sleep(start.saturating_duration_since(Instant::now()));
    let cpu_before = relays.ask(|reply| Request::Cpu { reply })?;
    let wall_before = Instant::now();
    let generated = generator
        .join()
        .map_err(|_| "generator panicked".to_owned())?;
    let cpu_after = relays.ask(|reply| Request::Cpu { reply })?;
    let wall = wall_before.elapsed();

    // The packets in flight: wait until all arrive, or a second.
    let drain_until = Instant::now() + Duration::from_secs(1);
    while receivers.counts.packets.load(Ordering::Relaxed) < generated.sent
        && Instant::now() < drain_until
    {
        thread::sleep(Duration::from_millis(20));
    }
    let totals = relays.ask(|reply| Request::Stop { reply })?;
    let _ = receivers.stop.send(());
    receivers
        .thread
        .join()
        .map_err(|_| "receiver thread panicked".to_owned())?;

    Ok(StepResult {
        streams,
        duration,
        scheduled: expected_packets(streams, duration),
        sent: generated.sent,
        send_failed: generated.failed,
        received: receivers.counts.packets.load(Ordering::Relaxed),
        late: receivers.counts.late.load(Ordering::Relaxed),
        relay_received: totals.received,
        relay_forwarded: totals.forwarded,
        relay_send_dropped: totals.send_dropped,
        relay_cpu: cpu_after.saturating_sub(cpu_before),
        wall,
        generator_max_lag: generated.max_lag,
    })
}
