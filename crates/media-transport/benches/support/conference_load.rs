//! The conference load test shared by the benchmark (benches/conference.rs) and its smoke
//! test (tests/conference_bench_smoke.rs): M three-party [`Conference`]s on loopback, every
//! conference on ONE thread (a current_thread tokio runtime), each participant an
//! [`AudioFlow`] in the conference's external-clock mode on its own RTP/RTCP port pair.
//! The phones' generator runs on a second thread, sending each phone's G.711 frame (a
//! 172-byte PCMU packet, RFC 3551 §4.5.14) every 20 ms to its port of the conference; the
//! phones' receivers run on a third, reading the mixed packets each conference sends back
//! (the sum of the two others, every 20 ms).
//!
//! Timing. Conference `i` of `M` is started with its packet clock at
//! `origin(i) = start + 20 ms × i / M` (the conferences' ticks spread evenly over the
//! 20 ms period, as calls starting at random times would be), so its mixed frame `k` is
//! due at `origin(i) + k × 20 ms`: the conference's own 20 ms grid, known exactly. The
//! phone numbers the frames it receives by their RTP timestamp (RFC 3550 §5.1: 160 per
//! frame), counting from the first one it receives, which is frame 0, sent at the origin
//! (before the phones send, so before any load of that conference). A mixed packet is
//! *late* when it reaches its phone more than 20 ms after its frame was due, that is when
//! the conference thread was a whole frame behind its clock. Phone `j` of a conference
//! sends its frame `k` at `origin(i) + j × 20 ms / 3 + k × 20 ms`.
//!
//! Counting. Each phone sends `K = ⌈duration / 20 ms⌉` frames, and expects the mixed
//! frames `0..K` of its conference (the conference's packet rate: one per 20 ms per
//! participant); frames after `K` (the conference runs until stopped) are not counted.
//! Lost = expected − received: mixed frames never sent, or dropped on a full socket
//! buffer (the conference's, also counted as `conference_send_dropped`, or the phone's).
//! A conference more than five frames behind its clock mixes five at once and skips the
//! rest (`Conference::handle_timeout`); a skipped frame's media time still passes in the
//! RTP timestamps, so it shows here as lost and the frames after it keep their due times.
//!
//! No RTCP: the phones send none, and the flows are given no RTCP address, so the
//! conferences send only RTP (an RTCP report every ~5 s per flow would add < 0.1 % of
//! the packets).
// Test code: fixed offsets into fixed-size packet buffers; shared by the benchmark and its
// smoke test, each of which uses part of it.
#![allow(clippy::indexing_slicing, dead_code)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc as std_mpsc;
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use media::{AudioFlow, Conference, FlowConfig, FlowIdentity, ulaw_encode};
use media_transport::{MediaHandle, PortPool, PortRange, spawn};
use rtp_session::SocketId;
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot};

use crate::relay_load::{LOOPBACK, thread_cpu};

/// The conference's frame, and the phones' packet interval.
pub const PERIOD: Duration = Duration::from_millis(20);
/// Participants per conference.
pub const PARTIES: usize = 3;
/// RTP header + 160 bytes of PCMU.
pub const PACKET_LEN: usize = 172;
const SAMPLES: u32 = 160;
/// Late: a mixed packet reaching its phone more than this after its frame was due.
pub const LATE_AFTER: Duration = Duration::from_millis(20);
/// File descriptors per conference: 2 conference sockets and 1 phone socket per party.
pub const FDS_PER_CONFERENCE: u64 = 3 * PARTIES as u64;
/// Ports per conference (an RTP/RTCP pair per party).
pub const PORTS_PER_CONFERENCE: usize = 2 * PARTIES;
/// Lateness histogram: 1 ms buckets, the last one for everything beyond.
const HISTOGRAM_MS: usize = 1000;

/// One load step.
#[derive(Debug, Clone)]
pub struct StepConfig {
    pub conferences: usize,
    pub duration: Duration,
}

/// What a step measured.
#[derive(Debug, Clone, Default)]
pub struct StepResult {
    pub conferences: usize,
    pub duration: Duration,
    /// Packets the phones were due to send (PARTIES × M × K).
    pub scheduled: u64,
    /// Packets the phones sent.
    pub sent: u64,
    /// Packets the phones could not send (their socket buffer full).
    pub send_failed: u64,
    /// Mixed frames the phones were due to get (PARTIES × M × K).
    pub expected: u64,
    /// Mixed frames `0..K` that reached a phone.
    pub received: u64,
    /// Of those, more than 20 ms after their frame was due.
    pub late: u64,
    /// The 99th percentile and the maximum of (arrival − due) over the received frames.
    pub delay_p99: Duration,
    pub delay_max: Duration,
    /// What the conferences' drivers counted from their start to their stop: datagrams
    /// read, mixed packets sent, and mixed packets dropped on a full socket buffer.
    pub conference_received: u64,
    pub conference_sent: u64,
    pub conference_send_dropped: u64,
    /// Mixed packets sent while the phones sent (the CPU window).
    pub mixed_in_window: u64,
    /// CPU time of the conference thread while the phones sent, and the wall time.
    pub conference_cpu: Duration,
    pub wall: Duration,
    /// How far behind its schedule the generator fell at worst.
    pub generator_max_lag: Duration,
}

impl StepResult {
    pub fn late_percent(&self) -> f64 {
        percent(self.late, self.received)
    }
    pub fn lost_percent(&self) -> f64 {
        percent(self.expected.saturating_sub(self.received), self.expected)
    }
    pub fn conference_cpu_percent(&self) -> f64 {
        100.0 * self.conference_cpu.as_secs_f64() / self.wall.as_secs_f64().max(1e-9)
    }
    /// Mixed packets the conferences sent per second while the phones sent.
    pub fn mixed_per_second(&self) -> f64 {
        self.mixed_in_window as f64 / self.wall.as_secs_f64().max(1e-9)
    }
    /// Conferences one core would carry at this step's cost per conference: M over the
    /// share of a core the conference thread used.
    pub fn conferences_per_core(&self) -> f64 {
        let share = self.conference_cpu.as_secs_f64() / self.wall.as_secs_f64().max(1e-9);
        self.conferences as f64 / share.max(1e-9)
    }
}

fn percent(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        100.0 * part as f64 / whole as f64
    }
}

/// Frames in a step of `duration`: one per 20 ms, ⌈duration / 20 ms⌉.
pub fn frames(duration: Duration) -> u64 {
    u64::try_from(duration.as_nanos().div_ceil(PERIOD.as_nanos())).unwrap_or(0)
}

/// Where conference `i` of `m` starts its packet clock, after the step's start.
pub fn origin_offset(i: usize, m: usize) -> Duration {
    PERIOD.mul_f64(i as f64 / m.max(1) as f64)
}

/// When party `j` of conference `i` of `m` sends its first frame, after the step's start.
pub fn phone_offset(i: usize, j: usize, m: usize) -> Duration {
    origin_offset(i, m) + PERIOD.mul_f64(j as f64 / PARTIES as f64)
}

// ---- the conference thread ----

/// The conference thread's CPU time and its conferences' driver counters at one instant.
#[derive(Debug, Clone, Copy)]
struct Sample {
    cpu: Duration,
    sent: u64,
}

/// What the conference thread counted when it stopped the conferences.
struct Totals {
    received: u64,
    sent: u64,
    send_dropped: u64,
}

enum Request {
    /// Starts one conference per entry: its phones' addresses and its origin; answers each
    /// conference's RTP address per party.
    Start {
        conferences: Vec<([SocketAddr; PARTIES], Instant)>,
        reply: std_mpsc::Sender<Result<Vec<[SocketAddr; PARTIES]>, String>>,
    },
    /// The thread's CPU time, and the mixed packets sent so far.
    Sample {
        reply: std_mpsc::Sender<Sample>,
    },
    Stop {
        reply: std_mpsc::Sender<Totals>,
    },
}

/// The thread every conference runs on.
pub struct ConferenceThread {
    requests: mpsc::UnboundedSender<Request>,
    thread: Option<thread::JoinHandle<()>>,
}

impl ConferenceThread {
    pub fn start(range: PortRange) -> Result<Self, String> {
        let (requests, mut rx) = mpsc::unbounded_channel::<Request>();
        let pool = PortPool::new(LOOPBACK, range).map_err(|e| e.to_string())?;
        let thread = thread::Builder::new()
            .name("conferences".into())
            .spawn(move || {
                let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                else {
                    return;
                };
                runtime.block_on(async move {
                    let mut running: Vec<MediaHandle<Conference>> = Vec::new();
                    let mut seed = 0u64;
                    while let Some(request) = rx.recv().await {
                        match request {
                            Request::Start { conferences, reply } => {
                                let mut addrs = Vec::with_capacity(conferences.len());
                                let mut failed = None;
                                for (phones, origin) in conferences {
                                    match start_conference(&pool, phones, origin, &mut seed) {
                                        Ok((handle, ports)) => {
                                            running.push(handle);
                                            addrs.push(ports);
                                        }
                                        Err(e) => {
                                            failed = Some(e);
                                            break;
                                        }
                                    }
                                }
                                let _ = reply.send(failed.map_or(Ok(addrs), Err));
                            }
                            Request::Sample { reply } => {
                                let _ = reply.send(Sample {
                                    cpu: thread_cpu(),
                                    sent: running.iter().map(|h| h.stats().sent).sum(),
                                });
                            }
                            Request::Stop { reply } => {
                                let mut totals = Totals {
                                    received: 0,
                                    sent: 0,
                                    send_dropped: 0,
                                };
                                for handle in running.drain(..) {
                                    let stats = handle.stats();
                                    totals.received += stats.received;
                                    totals.sent += stats.sent;
                                    totals.send_dropped += stats.send_dropped;
                                    let _ = handle.stop().await;
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
            .map_err(|_| "conference thread gone".to_owned())?;
        rx.recv().map_err(|_| "conference thread gone".to_owned())
    }
}

impl Drop for ConferenceThread {
    fn drop(&mut self) {
        let (closed, _) = mpsc::unbounded_channel();
        self.requests = closed;
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// One conference of three, its packet clock starting at `origin`; each party's RTP goes
/// to its phone (symmetric, RFC 4961), no RTCP address.
fn start_conference(
    pool: &PortPool,
    phones: [SocketAddr; PARTIES],
    origin: Instant,
    seed: &mut u64,
) -> Result<(MediaHandle<Conference>, [SocketAddr; PARTIES]), String> {
    let since_unix_epoch = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let mut conference = Conference::new();
    let mut sockets = Vec::with_capacity(2 * PARTIES);
    let mut ports = [phones[0]; PARTIES];
    for (j, phone) in phones.into_iter().enumerate() {
        let pair = pool.bind_pair().map_err(|e| e.to_string())?;
        ports[j] = pair.rtp.local_addr().map_err(|e| e.to_string())?;
        let rtp = SocketId(2 * j as u32);
        let rtcp = SocketId(2 * j as u32 + 1);
        let mut config = FlowConfig::pcmu(rtp, rtcp, Some(phone));
        config.remote_rtcp = None;
        *seed += 1;
        let flow = AudioFlow::new(
            origin,
            config,
            FlowIdentity {
                cname: format!("conference-bench-{seed}"),
                seed: *seed,
                since_unix_epoch,
            },
        );
        conference.join(origin, j as u32, flow);
        sockets.push((rtp, pair.rtp));
        sockets.push((rtcp, pair.rtcp));
    }
    Ok((spawn(conference, sockets), ports))
}

// ---- the phones ----

/// Counters shared by every phone's receive task.
struct Received {
    packets: AtomicU64,
    late: AtomicU64,
    /// (arrival − due) in 1 ms buckets.
    delay_ms: Vec<AtomicU64>,
}

impl Received {
    fn new() -> Self {
        Self {
            packets: AtomicU64::new(0),
            late: AtomicU64::new(0),
            delay_ms: (0..=HISTOGRAM_MS).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    /// The delay under which `share` of the packets arrived (bucket upper bound).
    fn quantile(&self, share: f64) -> Duration {
        let total: u64 = self
            .delay_ms
            .iter()
            .map(|b| b.load(Ordering::Relaxed))
            .sum();
        if total == 0 {
            return Duration::ZERO;
        }
        let want = (share * total as f64).ceil() as u64;
        let mut seen = 0;
        for (ms, bucket) in self.delay_ms.iter().enumerate() {
            seen += bucket.load(Ordering::Relaxed);
            if seen >= want {
                return Duration::from_millis(ms as u64 + 1);
            }
        }
        Duration::from_millis(HISTOGRAM_MS as u64 + 1)
    }
}

/// The worst delay seen, in ns (shared; a max by compare-and-swap).
struct MaxDelay(AtomicU64);

impl MaxDelay {
    fn record(&self, delay: Duration) {
        let ns = u64::try_from(delay.as_nanos()).unwrap_or(u64::MAX);
        self.0.fetch_max(ns, Ordering::Relaxed);
    }
}

struct Receivers {
    sockets: Vec<Arc<UdpSocket>>,
    counts: Arc<Received>,
    max_delay: Arc<MaxDelay>,
    /// Starts the receive tasks: each conference's origin, and the frames counted.
    listen: oneshot::Sender<(Vec<Instant>, u64)>,
    stop: oneshot::Sender<()>,
    thread: thread::JoinHandle<()>,
}

/// Binds `PARTIES × conferences` phone sockets on a receiver thread (in order, `PARTIES`
/// per conference); once told the conferences' origins ([`Receivers::listen`]) reads them
/// there, conference `i`'s phones numbering frames from `origins[i]`.
fn start_receivers(conferences: usize) -> Result<Receivers, String> {
    let (sockets_tx, sockets_rx) = std_mpsc::channel();
    let (listen, listen_rx) = oneshot::channel::<(Vec<Instant>, u64)>();
    let (stop, stop_rx) = oneshot::channel::<()>();
    let counts = Arc::new(Received::new());
    let max_delay = Arc::new(MaxDelay(AtomicU64::new(0)));
    let task_counts = Arc::clone(&counts);
    let task_max = Arc::clone(&max_delay);
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
                let mut sockets = Vec::with_capacity(conferences * PARTIES);
                for _ in 0..conferences * PARTIES {
                    match UdpSocket::bind((LOOPBACK, 0)).await {
                        Ok(socket) => sockets.push(Arc::new(socket)),
                        Err(e) => {
                            let _ = sockets_tx.send(Err(format!("phone socket: {e}")));
                            return;
                        }
                    }
                }
                let _ = sockets_tx.send(Ok(sockets.clone()));
                let Ok((origins, frames)) = listen_rx.await else {
                    return;
                };
                for (socket, origin) in sockets
                    .iter()
                    .zip(origins.iter().flat_map(|o| [*o; PARTIES]))
                {
                    tokio::spawn(receive(
                        Arc::clone(socket),
                        origin,
                        frames,
                        Arc::clone(&task_counts),
                        Arc::clone(&task_max),
                    ));
                }
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
        max_delay,
        listen,
        stop,
        thread,
    })
}

/// One phone's receiver: numbers the mixed frames by RTP timestamp from the first one
/// (frame 0, due at `origin`), and counts frames `0..frames` and the late ones.
async fn receive(
    socket: Arc<UdpSocket>,
    origin: Instant,
    frames: u64,
    counts: Arc<Received>,
    max_delay: Arc<MaxDelay>,
) {
    let mut buf = [0u8; 512];
    let mut first_timestamp: Option<u32> = None;
    while let Ok(n) = socket.recv(&mut buf).await {
        let arrived = Instant::now();
        // RTP version 2, payload type 0 (PCMU): the mixed audio.
        if n < 12 || buf[0] >> 6 != 2 || buf[1] & 0x7f != 0 {
            continue;
        }
        let timestamp = u32::from_be_bytes([buf[4], buf[5], buf[6], buf[7]]);
        let first = *first_timestamp.get_or_insert(timestamp);
        let frame = u64::from(timestamp.wrapping_sub(first) / SAMPLES);
        if frame >= frames {
            // After the window: the conference runs on until stopped.
            continue;
        }
        counts.packets.fetch_add(1, Ordering::Relaxed);
        let due = origin + PERIOD * u32::try_from(frame).unwrap_or(u32::MAX);
        let delay = arrived.saturating_duration_since(due);
        if delay > LATE_AFTER {
            counts.late.fetch_add(1, Ordering::Relaxed);
        }
        let bucket = usize::try_from(delay.as_millis())
            .unwrap_or(HISTOGRAM_MS)
            .min(HISTOGRAM_MS);
        counts.delay_ms[bucket].fetch_add(1, Ordering::Relaxed);
        max_delay.record(delay);
    }
}

/// 160 bytes of a 1 kHz tone at about −10 dBm0 in µ-law (8 samples a cycle, so every
/// 20 ms frame is the same): what each phone says, so the mix is not silence.
fn tone_payload() -> [u8; SAMPLES as usize] {
    let mut payload = [0u8; SAMPLES as usize];
    for (n, byte) in payload.iter_mut().enumerate() {
        let phase = 2.0 * std::f64::consts::PI * 1000.0 * n as f64 / 8000.0;
        *byte = ulaw_encode((7000.0 * phase.sin()) as i16);
    }
    payload
}

struct Phone {
    socket: Arc<UdpSocket>,
    to: SocketAddr,
    /// When its frame 0 is due, after the step's start.
    first: Duration,
    ssrc: u32,
}

struct Generated {
    sent: u64,
    failed: u64,
    max_lag: Duration,
}

/// Sends every phone's `frames` frames on schedule: phone `p`'s frame `k` at
/// `start + first(p) + k × 20 ms`. Round `r` covers `[r × 20 ms, (r + 1) × 20 ms)` after
/// the start; inside a round the phones go in order of their phase, so the schedule is
/// walked in time order and the generator sleeps until each packet is due.
fn generate(mut phones: Vec<Phone>, start: Instant, frames: u64) -> Generated {
    let period = PERIOD.as_nanos();
    phones.sort_by_key(|p| p.first.as_nanos() % period);
    let last_round = phones
        .iter()
        .map(|p| u64::try_from(p.first.as_nanos() / period).unwrap_or(0))
        .max()
        .unwrap_or(0)
        + frames;
    let mut packet = [0u8; PACKET_LEN];
    packet[0] = 0x80; // RTP version 2, PT 0 (PCMU)
    packet[12..].copy_from_slice(&tone_payload());
    let mut generated = Generated {
        sent: 0,
        failed: 0,
        max_lag: Duration::ZERO,
    };
    for round in 0..last_round {
        for phone in &phones {
            let skip = u64::try_from(phone.first.as_nanos() / period).unwrap_or(0);
            let Some(frame) = round.checked_sub(skip).filter(|k| *k < frames) else {
                continue;
            };
            let frame32 = u32::try_from(frame).unwrap_or(u32::MAX);
            let due = start + phone.first + PERIOD * frame32;
            let now = Instant::now();
            if due > now + Duration::from_micros(500) {
                thread::sleep(due - now);
            } else {
                generated.max_lag = generated.max_lag.max(now.saturating_duration_since(due));
            }
            packet[2..4].copy_from_slice(&((frame32 & 0xffff) as u16).to_be_bytes());
            packet[4..8].copy_from_slice(&frame32.wrapping_mul(SAMPLES).to_be_bytes());
            packet[8..12].copy_from_slice(&phone.ssrc.to_be_bytes());
            match phone.socket.try_send_to(&packet, phone.to) {
                Ok(_) => generated.sent += 1,
                Err(_) => generated.failed += 1,
            }
        }
    }
    generated
}

/// Runs one step on `conferences`: starts the phones and M conferences, sends for
/// `duration`, waits for the mixed frames in flight (up to a second), stops everything
/// and counts.
pub fn run_step(conferences: &ConferenceThread, config: &StepConfig) -> Result<StepResult, String> {
    let m = config.conferences;
    let frames = frames(config.duration);
    let receivers = start_receivers(m)?;
    let phone_addrs: Vec<[SocketAddr; PARTIES]> = receivers
        .sockets
        .chunks(PARTIES)
        .map(|party| {
            let mut addrs = [SocketAddr::from((LOOPBACK, 0)); PARTIES];
            for (addr, socket) in addrs.iter_mut().zip(party) {
                *addr = socket.local_addr().map_err(|e| e.to_string())?;
            }
            Ok(addrs)
        })
        .collect::<Result<_, String>>()?;
    // Setting up the conferences (binding six ports each) takes a while: their clocks
    // start once every one is up.
    let setup = Duration::from_millis(200)
        + Duration::from_millis(1) * u32::try_from(m).unwrap_or(u32::MAX);
    let start = Instant::now() + setup;
    let origins: Vec<Instant> = (0..m).map(|i| start + origin_offset(i, m)).collect();
    let requests = phone_addrs
        .into_iter()
        .zip(origins.iter().copied())
        .collect();
    let ports = conferences.ask(|reply| Request::Start {
        conferences: requests,
        reply,
    })??;
    if Instant::now() > start {
        return Err(format!(
            "setting up {m} conferences took longer than {setup:?}"
        ));
    }
    receivers
        .listen
        .send((origins, frames))
        .map_err(|_| "receiver thread gone".to_owned())?;
    let mut phones = Vec::with_capacity(m * PARTIES);
    for (i, (party, conference_ports)) in receivers.sockets.chunks(PARTIES).zip(&ports).enumerate()
    {
        for (j, (socket, to)) in party.iter().zip(conference_ports).enumerate() {
            phones.push(Phone {
                socket: Arc::clone(socket),
                to: *to,
                first: phone_offset(i, j, m),
                ssrc: u32::try_from(i * PARTIES + j).unwrap_or(u32::MAX),
            });
        }
    }

    let generator = thread::Builder::new()
        .name("phones-tx".into())
        .spawn(move || generate(phones, start, frames))
        .map_err(|e| e.to_string())?;
    // The conference thread's CPU from when the conferences' clocks start.
    thread::sleep(start.saturating_duration_since(Instant::now()));
    let before = conferences.ask(|reply| Request::Sample { reply })?;
    let wall_before = Instant::now();
    let generated = generator
        .join()
        .map_err(|_| "generator panicked".to_owned())?;
    let after = conferences.ask(|reply| Request::Sample { reply })?;
    let wall = wall_before.elapsed();

    // The frames in flight: wait until all arrive, or a second.
    let expected = (m * PARTIES) as u64 * frames;
    let drain_until = Instant::now() + Duration::from_secs(1);
    while receivers.counts.packets.load(Ordering::Relaxed) < expected
        && Instant::now() < drain_until
    {
        thread::sleep(Duration::from_millis(20));
    }
    let totals = conferences.ask(|reply| Request::Stop { reply })?;
    let _ = receivers.stop.send(());
    receivers
        .thread
        .join()
        .map_err(|_| "receiver thread panicked".to_owned())?;

    Ok(StepResult {
        conferences: m,
        duration: config.duration,
        scheduled: expected,
        sent: generated.sent,
        send_failed: generated.failed,
        expected,
        received: receivers.counts.packets.load(Ordering::Relaxed),
        late: receivers.counts.late.load(Ordering::Relaxed),
        delay_p99: receivers.counts.quantile(0.99),
        delay_max: Duration::from_nanos(receivers.max_delay.0.load(Ordering::Relaxed)),
        conference_received: totals.received,
        conference_sent: totals.sent,
        conference_send_dropped: totals.send_dropped,
        mixed_in_window: after.sent.saturating_sub(before.sent),
        conference_cpu: after.cpu.saturating_sub(before.cpu),
        wall,
        generator_max_lag: generated.max_lag,
    })
}
