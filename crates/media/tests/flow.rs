//! AudioVideoFlow media on a virtual clock and a virtual wire: tones measured with a
//! Goertzel filter after a G.711 round trip, WAV recordings read back, DTMF digits with
//! their durations, echo, hold, RTCP, symmetric RTP, media timeouts and the N-party
//! conference.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use media::flow::{AudioFlow, FlowConfig, FlowEvent, FlowIdentity};
use media::{Conference, G711, MediaError, SampleSink, ToneSpec, load_wav_file, tone_level_dbm0};
use rtp_session::{Datagram, MediaMachine, SocketId, parse_rtp};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A recorder into memory.
#[derive(Debug, Clone, Default)]
struct Tape(Arc<Mutex<Vec<i16>>>);

impl SampleSink for Tape {
    fn write(&mut self, samples: &[i16]) -> Result<(), MediaError> {
        self.0.lock().unwrap().extend_from_slice(samples);
        Ok(())
    }
    fn finish(self: Box<Self>) -> Result<u64, MediaError> {
        Ok(self.0.lock().unwrap().len() as u64)
    }
}

impl Tape {
    fn samples(&self) -> Vec<i16> {
        self.0.lock().unwrap().clone()
    }
}

#[allow(clippy::large_enum_variant)]
enum Machine {
    Flow(AudioFlow),
    Conference(Conference),
}

impl Machine {
    fn flow(&mut self) -> &mut AudioFlow {
        match self {
            Machine::Flow(f) => f,
            Machine::Conference(_) => panic!("not a flow"),
        }
    }
    fn handle_datagram(&mut self, now: Instant, s: SocketId, from: SocketAddr, d: &[u8]) {
        match self {
            Machine::Flow(f) => f.handle_datagram(now, s, from, d),
            Machine::Conference(c) => c.handle_datagram(now, s, from, d),
        }
    }
    fn handle_timeout(&mut self, now: Instant) {
        match self {
            Machine::Flow(f) => f.handle_timeout(now),
            Machine::Conference(c) => c.handle_timeout(now),
        }
    }
    fn poll_transmit(&mut self) -> Option<Datagram> {
        match self {
            Machine::Flow(f) => f.poll_transmit(),
            Machine::Conference(c) => c.poll_transmit(),
        }
    }
    fn poll_timeout(&self) -> Option<Instant> {
        match self {
            Machine::Flow(f) => f.poll_timeout(),
            Machine::Conference(c) => c.poll_timeout(),
        }
    }
    fn poll_event(&mut self) -> Option<FlowEvent> {
        match self {
            Machine::Flow(f) => f.poll_event(),
            Machine::Conference(c) => c.poll_event().map(|(_, e)| e),
        }
    }
}

/// Machines on a virtual wire: each (machine, socket) has an address; a datagram to an
/// address arrives `latency` later from the sender's address (or the `nat` address that
/// stands in for it).
struct Wire {
    start: Instant,
    now: Instant,
    machines: Vec<Machine>,
    addrs: BTreeMap<SocketAddr, (usize, SocketId)>,
    by_socket: BTreeMap<(usize, SocketId), SocketAddr>,
    /// Source rewriting: packets from this address appear to come from that one.
    nat: BTreeMap<SocketAddr, SocketAddr>,
    in_flight: BTreeMap<(Instant, u64), (SocketAddr, SocketAddr, Vec<u8>)>,
    seq: u64,
    latency: Duration,
    loss_every: Option<u64>,
    sent: u64,
    events: Vec<Vec<(Duration, FlowEvent)>>,
    /// Every RTP datagram each machine sent: (time, to, bytes).
    rtp_log: Vec<Vec<(Duration, SocketAddr, Vec<u8>)>>,
}

fn addr(text: &str) -> SocketAddr {
    text.parse().unwrap()
}

fn identity(seed: u64) -> FlowIdentity {
    FlowIdentity {
        cname: format!("flow-{seed}@test"),
        seed,
        since_unix_epoch: Duration::from_secs(1_800_000_000),
    }
}

impl Wire {
    fn new() -> Wire {
        let now = Instant::now();
        Wire {
            start: now,
            now,
            machines: Vec::new(),
            addrs: BTreeMap::new(),
            by_socket: BTreeMap::new(),
            nat: BTreeMap::new(),
            in_flight: BTreeMap::new(),
            seq: 0,
            latency: Duration::from_millis(5),
            loss_every: None,
            sent: 0,
            events: Vec::new(),
            rtp_log: Vec::new(),
        }
    }

    fn add(&mut self, machine: Machine, sockets: &[(SocketId, &str)]) -> usize {
        let i = self.machines.len();
        self.machines.push(machine);
        self.events.push(Vec::new());
        self.rtp_log.push(Vec::new());
        for (s, a) in sockets {
            self.addrs.insert(addr(a), (i, *s));
            self.by_socket.insert((i, *s), addr(a));
        }
        i
    }

    /// A flow on `ip` with RTP on `port`, RTCP on `port + 1`, sending to `remote`.
    fn flow(&mut self, ip: &str, port: u16, remote: &str, seed: u64) -> usize {
        let rtp = format!("{ip}:{port}");
        let rtcp = format!("{ip}:{}", port + 1);
        let config = FlowConfig::pcmu(SocketId(0), SocketId(1), Some(addr(remote)));
        let flow = AudioFlow::new(self.now, config, identity(seed));
        self.add(
            Machine::Flow(flow),
            &[(SocketId(0), rtp.as_str()), (SocketId(1), rtcp.as_str())],
        )
    }

    fn elapsed(&self) -> Duration {
        self.now - self.start
    }

    fn collect(&mut self) {
        for i in 0..self.machines.len() {
            while let Some(d) = self.machines[i].poll_transmit() {
                let Some(&from) = self.by_socket.get(&(i, d.socket)) else {
                    panic!("unknown socket {:?}", d.socket);
                };
                if parse_rtp(&d.data).is_ok() && from.port() % 2 == 0 {
                    let at = self.elapsed();
                    self.rtp_log[i].push((at, d.to, d.data.to_vec()));
                }
                self.sent += 1;
                if self.loss_every.is_some_and(|n| self.sent.is_multiple_of(n)) {
                    continue;
                }
                let from = self.nat.get(&from).copied().unwrap_or(from);
                self.seq += 1;
                self.in_flight.insert(
                    (self.now + self.latency, self.seq),
                    (from, d.to, d.data.to_vec()),
                );
            }
            while let Some(e) = self.machines[i].poll_event() {
                let at = self.elapsed();
                self.events[i].push((at, e));
            }
        }
    }

    fn run_for(&mut self, d: Duration) {
        let until = self.now + d;
        loop {
            self.collect();
            let next_msg = self.in_flight.keys().next().map(|(t, _)| *t);
            let next_timer = self.machines.iter().filter_map(|m| m.poll_timeout()).min();
            let Some(next) = [next_msg, next_timer].into_iter().flatten().min() else {
                break;
            };
            if next > until {
                break;
            }
            self.now = self.now.max(next);
            let now = self.now;
            if next_msg == Some(next) {
                let key = *self.in_flight.keys().next().unwrap();
                let (from, to, data) = self.in_flight.remove(&key).unwrap();
                // To a NATed address: the machine behind it.
                let to = self
                    .nat
                    .iter()
                    .find(|(_, public)| **public == to)
                    .map_or(to, |(private, _)| *private);
                if let Some(&(m, s)) = self.addrs.get(&to) {
                    self.machines[m].handle_datagram(now, s, from, &data);
                }
            } else {
                for m in &mut self.machines {
                    if m.poll_timeout().is_some_and(|t| t <= now) {
                        m.handle_timeout(now);
                    }
                }
            }
        }
        self.now = until;
        self.collect();
    }

    fn events(&self, i: usize) -> Vec<FlowEvent> {
        self.events[i].iter().map(|(_, e)| e.clone()).collect()
    }
}

/// Two flows on 127.0.0.1:40000 and 127.0.0.2:40002 sending to each other.
fn pair() -> (Wire, usize, usize) {
    let mut w = Wire::new();
    let a = w.flow("127.0.0.1", 40000, "127.0.0.2:40002", 1);
    let b = w.flow("127.0.0.2", 40002, "127.0.0.1:40000", 2);
    (w, a, b)
}

#[test]
fn a_1khz_tone_arrives_at_its_level_and_is_recorded_to_wav() {
    let (mut w, a, b) = pair();
    w.machines[a]
        .flow()
        .play_tone(ToneSpec::single(1000.0, -10.0, None));
    let dir = std::env::temp_dir().join(format!("tandem-flow-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("tone.wav");
    let recorder = media::create_recording(&path).unwrap();
    w.machines[b].flow().record(Box::new(recorder)).unwrap();
    w.run_for(Duration::from_secs(2));
    let written = w.machines[b].flow().stop_recording().unwrap();
    assert!(
        (15_900..=16_000).contains(&written),
        "2 s of 8 kHz audio recorded, less the first packet's latency: {written}"
    );

    let samples = load_wav_file(&path).unwrap();
    assert_eq!(samples.len() as u64, written);
    // Skip the first 100 ms; measure 1 s.
    let window = &samples[800..8800];
    let level = tone_level_dbm0(window, 1000.0);
    println!("1 kHz sent at -10.0 dBm0, received at {level:.2} dBm0 (G.711 µ-law round trip)");
    assert!((level - -10.0).abs() < 0.5, "{level}");
    let off = tone_level_dbm0(window, 1400.0);
    println!("at 1.4 kHz: {off:.2} dBm0");
    assert!(off < level - 30.0, "{off}");

    // B saw RTP arrive once; A's stream is continuous: 20 ms apart, sequence +1,
    // timestamp +160.
    assert!(
        matches!(w.events(b)[0], FlowEvent::Receiving { from } if from == addr("127.0.0.1:40000"))
    );
    let log = &w.rtp_log[a];
    assert!(log.len() >= 99, "{}", log.len());
    for pair in log.windows(2) {
        let (h0, _) = parse_rtp(&pair[0].2).unwrap();
        let (h1, _) = parse_rtp(&pair[1].2).unwrap();
        assert_eq!(pair[1].0 - pair[0].0, Duration::from_millis(20));
        assert_eq!(h1.sequence, h0.sequence.wrapping_add(1));
        assert_eq!(h1.timestamp, h0.timestamp.wrapping_add(160));
        assert_eq!(h1.ssrc, h0.ssrc);
        assert_eq!(h1.payload_type, 0);
        assert_eq!(pair[1].2.len(), 12 + 160);
    }
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn pcma_and_a_30ms_ptime_are_honoured() {
    let mut w = Wire::new();
    let mut config = FlowConfig::pcmu(SocketId(0), SocketId(1), Some(addr("127.0.0.2:40002")));
    config.codec = G711::Pcma;
    config.payload_type = 8;
    config.ptime = Duration::from_millis(30);
    let a = AudioFlow::new(w.now, config.clone(), identity(1));
    let a = w.add(
        Machine::Flow(a),
        &[
            (SocketId(0), "127.0.0.1:40000"),
            (SocketId(1), "127.0.0.1:40001"),
        ],
    );
    config.remote = Some(addr("127.0.0.1:40000"));
    let b = AudioFlow::new(w.now, config, identity(2));
    let b = w.add(
        Machine::Flow(b),
        &[
            (SocketId(0), "127.0.0.2:40002"),
            (SocketId(1), "127.0.0.2:40003"),
        ],
    );
    w.machines[a]
        .flow()
        .play_tone(ToneSpec::single(1000.0, -10.0, None));
    let tape = Tape::default();
    w.machines[b].flow().record(Box::new(tape.clone())).unwrap();
    w.run_for(Duration::from_secs(1));
    let log = &w.rtp_log[a];
    let (h, range) = parse_rtp(&log[5].2).unwrap();
    assert_eq!((h.payload_type, range.len()), (8, 240));
    assert_eq!(log[6].0 - log[5].0, Duration::from_millis(30));
    let level = tone_level_dbm0(&tape.samples()[800..7200], 1000.0);
    println!("1 kHz over A-law, 30 ms packets: {level:.2} dBm0");
    assert!((level - -10.0).abs() < 0.5, "{level}");
}

#[test]
fn dtmf_digits_arrive_with_their_durations() {
    let (mut w, a, b) = pair();
    w.machines[a]
        .flow()
        .send_dtmf(
            "0123456789*#ABCD",
            Duration::from_millis(100),
            Duration::from_millis(60),
        )
        .unwrap();
    w.run_for(Duration::from_secs(5));
    let tones: Vec<(char, Duration)> = w
        .events(b)
        .into_iter()
        .filter_map(|e| match e {
            FlowEvent::Tone(t) => Some((t.digit.unwrap(), t.duration)),
            _ => None,
        })
        .collect();
    let digits: String = tones.iter().map(|(d, _)| *d).collect();
    assert_eq!(digits, "0123456789*#ABCD");
    for (digit, duration) in &tones {
        assert_eq!(*duration, Duration::from_millis(100), "{digit}");
    }
    assert!(w.events(a).contains(&FlowEvent::DtmfCompleted));
    // On the negotiated payload type (101 here), never as audio.
    let events: Vec<_> = w.rtp_log[a]
        .iter()
        .filter_map(|(_, _, p)| parse_rtp(p).ok())
        .filter(|(h, _)| h.payload_type == 101)
        .collect();
    assert!(!events.is_empty());
}

#[test]
fn dtmf_needs_telephone_event_negotiated() {
    let mut w = Wire::new();
    let mut config = FlowConfig::pcmu(SocketId(0), SocketId(1), Some(addr("127.0.0.2:40002")));
    config.telephone_event = None;
    let mut flow = AudioFlow::new(w.now, config, identity(1));
    let error = flow
        .send_dtmf("1", Duration::from_millis(100), Duration::from_millis(50))
        .unwrap_err();
    assert!(error.to_string().contains("telephone-event"), "{error}");
    // A bad digit is refused by name.
    let mut ok = AudioFlow::new(
        w.now,
        FlowConfig::pcmu(SocketId(0), SocketId(1), Some(addr("127.0.0.2:40002"))),
        identity(1),
    );
    let error = ok
        .send_dtmf("12x", Duration::from_millis(100), Duration::from_millis(50))
        .unwrap_err();
    assert!(error.to_string().contains('x'), "{error}");
    w.now += Duration::from_millis(1);
}

#[test]
fn echo_sends_back_what_comes_in() {
    let (mut w, a, b) = pair();
    w.machines[b].flow().set_echo(true);
    w.machines[a]
        .flow()
        .play_tone(ToneSpec::single(700.0, -12.0, None));
    let tape = Tape::default();
    w.machines[a].flow().record(Box::new(tape.clone())).unwrap();
    w.run_for(Duration::from_secs(2));
    let back = tape.samples();
    let level = tone_level_dbm0(&back[1600..9600], 700.0);
    println!("700 Hz at -12 dBm0, echoed back at {level:.2} dBm0");
    assert!((level - -12.0).abs() < 0.6, "{level}");
}

#[test]
fn a_player_plays_to_its_end_or_loops() {
    let (mut w, a, _b) = pair();
    let samples: Arc<[i16]> = (0..4000).map(|i| ((i % 80) * 100) as i16).collect();
    w.machines[a]
        .flow()
        .play(media::Player::new(samples.clone(), false));
    w.run_for(Duration::from_secs(1));
    assert!(w.events(a).contains(&FlowEvent::PlayCompleted));
    assert!(!w.machines[a].flow().is_playing());

    w.machines[a].flow().play(media::Player::new(samples, true));
    w.run_for(Duration::from_secs(2));
    let completed = w
        .events(a)
        .iter()
        .filter(|e| **e == FlowEvent::PlayCompleted)
        .count();
    assert_eq!(completed, 1, "a looping player never completes");
    assert!(w.machines[a].flow().is_playing());
    w.machines[a].flow().stop_playing();
    assert!(!w.machines[a].flow().is_playing());
}

#[test]
fn hold_stops_packets_and_keeps_the_timestamp_running() {
    let (mut w, a, b) = pair();
    w.run_for(Duration::from_secs(1));
    let mut held = w.machines[a].flow().config().clone();
    held.send = false;
    let now = w.now;
    w.machines[a].flow().reconfigure(now, held.clone());
    let before = w.rtp_log[a].len();
    w.run_for(Duration::from_secs(1));
    assert_eq!(w.rtp_log[a].len(), before, "nothing sent on hold");
    held.send = true;
    let now = w.now;
    w.machines[a].flow().reconfigure(now, held);
    w.run_for(Duration::from_millis(100));
    let log = &w.rtp_log[a];
    let (last, _) = parse_rtp(&log[before - 1].2).unwrap();
    let (next, _) = parse_rtp(&log[before].2).unwrap();
    assert_eq!(
        next.sequence,
        last.sequence.wrapping_add(1),
        "no sequence gap"
    );
    let gap = next.timestamp.wrapping_sub(last.timestamp);
    let elapsed = log[before].0 - log[before - 1].0;
    assert_eq!(
        u128::from(gap),
        elapsed.as_millis() * 8,
        "timestamps follow media time across the hold"
    );
    // B's flow saw no loss (the sequence continued).
    assert_eq!(w.machines[b].flow().stats().received.packets_lost, 0);
}

#[test]
fn rtcp_reports_flow_both_ways_and_loss_is_seen() {
    let (mut w, a, b) = pair();
    w.loss_every = Some(10);
    w.run_for(Duration::from_secs(30));
    let sa = w.machines[a].flow().stats();
    let sb = w.machines[b].flow().stats();
    println!("A: {sa:?}\nB: {sb:?}");
    assert!(sa.rtcp_sent >= 3 && sb.rtcp_sent >= 3, "RTCP every ~5 s");
    assert!(sa.rtcp_sent <= 12, "not more often than RFC 3550 allows");
    // About one packet in ten lost (RTP and RTCP share the loss).
    let lost = sb.received.packets_lost as f64 / sb.received.packets_expected as f64;
    assert!((0.07..0.13).contains(&lost), "{lost}");
    let view = sa.remote.expect("B reported on A's stream");
    assert!(view.packets_lost > 0);
    assert!(
        view.round_trip
            .is_some_and(|rtt| rtt >= Duration::from_millis(10))
    );
}

#[test]
fn symmetric_rtp_answers_where_the_peer_really_sends_from() {
    let (mut w, a, b) = pair();
    // A is behind a NAT: its packets come from 192.0.2.1:9000, and what is sent there
    // reaches A; B's SDP says 127.0.0.1:40000, which is wrong.
    w.nat
        .insert(addr("127.0.0.1:40000"), addr("192.0.2.1:9000"));
    w.run_for(Duration::from_secs(1));
    assert_eq!(
        w.machines[b].flow().stats().destination,
        Some(addr("192.0.2.1:9000"))
    );
    let to_a: Vec<_> = w.rtp_log[b].iter().map(|(_, to, _)| *to).collect();
    assert!(
        to_a.iter()
            .rev()
            .take(10)
            .all(|t| *t == addr("192.0.2.1:9000"))
    );
    assert!(
        w.events(a)
            .iter()
            .any(|e| matches!(e, FlowEvent::Receiving { .. }))
    );
}

#[test]
fn silence_from_the_peer_times_out_and_rtp_again_resumes() {
    let (mut w, a, b) = pair();
    let mut config = w.machines[b].flow().config().clone();
    config.media_timeout = Some(Duration::from_secs(3));
    let now = w.now;
    w.machines[b].flow().reconfigure(now, config);
    w.run_for(Duration::from_secs(1));
    // A stops sending.
    let mut off = w.machines[a].flow().config().clone();
    off.send = false;
    let now = w.now;
    w.machines[a].flow().reconfigure(now, off.clone());
    w.run_for(Duration::from_secs(5));
    let timeouts: Vec<Duration> = w.events[b]
        .iter()
        .filter(|(_, e)| matches!(e, FlowEvent::Timeout { .. }))
        .map(|(at, _)| *at)
        .collect();
    assert_eq!(timeouts.len(), 1);
    let at = timeouts[0];
    assert!(
        at >= Duration::from_secs(4) && at <= Duration::from_millis(4100),
        "3 s after the last packet: {at:?}"
    );
    off.send = true;
    let now = w.now;
    w.machines[a].flow().reconfigure(now, off);
    w.run_for(Duration::from_secs(1));
    let receiving = w
        .events(b)
        .iter()
        .filter(|e| matches!(e, FlowEvent::Receiving { .. }))
        .count();
    assert_eq!(receiving, 2, "receiving again after the timeout");
    // A peer that holds us (it does not send) is not timed out.
    let mut held = w.machines[b].flow().config().clone();
    held.receive = false;
    let now = w.now;
    w.machines[b].flow().reconfigure(now, held);
    let mut off = w.machines[a].flow().config().clone();
    off.send = false;
    w.machines[a].flow().reconfigure(now, off);
    w.run_for(Duration::from_secs(10));
    let timeouts = w
        .events(b)
        .iter()
        .filter(|e| matches!(e, FlowEvent::Timeout { .. }))
        .count();
    assert_eq!(timeouts, 1);
}

#[test]
fn garbage_on_the_sockets_is_dropped_and_counted() {
    let (mut w, _a, b) = pair();
    let now = w.now;
    let flow = w.machines[b].flow();
    for data in [
        &b""[..],
        &b"\x80"[..],
        &[0x40u8; 20][..],
        &[0x80, 0x00, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1, 0xff][..],
        &[0x80, 200, 0, 1][..],
        &[0xff; 300][..],
    ] {
        flow.handle_datagram(now, SocketId(0), addr("127.0.0.1:40000"), data);
        flow.handle_datagram(now, SocketId(1), addr("127.0.0.1:40001"), data);
    }
    assert!(flow.stats().dropped >= 5, "{:?}", flow.stats());
}

#[test]
fn conference_each_hears_the_others_and_not_itself() {
    let mut w = Wire::new();
    let tones = [500.0, 1100.0, 1700.0];
    let mut conference = Conference::new();
    let mut phones = Vec::new();
    for (i, _) in tones.iter().enumerate() {
        let port = 41000 + 2 * i as u16;
        let phone_port = 42000 + 2 * i as u16;
        let config = FlowConfig::pcmu(
            SocketId(2 * i as u32),
            SocketId(2 * i as u32 + 1),
            Some(addr(&format!("127.0.0.2:{phone_port}"))),
        );
        conference.join(
            w.now,
            i as u32,
            AudioFlow::new(w.now, config, identity(i as u64)),
        );
        phones.push((port, phone_port));
    }
    let sockets: Vec<(SocketId, String)> = (0..3)
        .flat_map(|i| {
            [
                (SocketId(2 * i), format!("127.0.0.1:{}", 41000 + 2 * i)),
                (SocketId(2 * i + 1), format!("127.0.0.1:{}", 41001 + 2 * i)),
            ]
        })
        .collect();
    let refs: Vec<(SocketId, &str)> = sockets.iter().map(|(s, a)| (*s, a.as_str())).collect();
    w.add(Machine::Conference(conference), &refs);
    let mut tapes = Vec::new();
    let mut ids = Vec::new();
    for (i, (port, phone_port)) in phones.iter().enumerate() {
        let id = w.flow(
            "127.0.0.2",
            *phone_port,
            &format!("127.0.0.1:{port}"),
            10 + i as u64,
        );
        w.machines[id]
            .flow()
            .play_tone(ToneSpec::single(tones[i], -15.0, None));
        let tape = Tape::default();
        w.machines[id]
            .flow()
            .record(Box::new(tape.clone()))
            .unwrap();
        tapes.push(tape);
        ids.push(id);
    }
    w.run_for(Duration::from_secs(2));
    for (i, tape) in tapes.iter().enumerate() {
        let heard = tape.samples();
        let window = &heard[2400..10400];
        let levels: Vec<f64> = tones.iter().map(|f| tone_level_dbm0(window, *f)).collect();
        println!("phone {i} ({} Hz) hears {levels:.1?} dBm0", tones[i]);
        for (j, level) in levels.iter().enumerate() {
            if i == j {
                assert!(*level < -55.0, "phone {i} hears itself at {level}");
            } else {
                assert!(
                    (level - -15.0).abs() < 1.0,
                    "phone {i} hears {j} at {level}"
                );
            }
        }
    }
}

#[test]
fn a_participant_leaving_leaves_no_gap_for_the_others() {
    let mut w = Wire::new();
    let mut conference = Conference::new();
    for i in 0..3u32 {
        let config = FlowConfig::pcmu(
            SocketId(2 * i),
            SocketId(2 * i + 1),
            Some(addr(&format!("127.0.0.2:{}", 42000 + 2 * i))),
        );
        conference.join(
            w.now,
            i,
            AudioFlow::new(w.now, config, identity(u64::from(i))),
        );
    }
    let sockets: Vec<(SocketId, String)> = (0..3)
        .flat_map(|i| {
            [
                (SocketId(2 * i), format!("127.0.0.1:{}", 41000 + 2 * i)),
                (SocketId(2 * i + 1), format!("127.0.0.1:{}", 41001 + 2 * i)),
            ]
        })
        .collect();
    let refs: Vec<(SocketId, &str)> = sockets.iter().map(|(s, a)| (*s, a.as_str())).collect();
    let conf = w.add(Machine::Conference(conference), &refs);
    let mut phones = Vec::new();
    for i in 0..3u16 {
        let id = w.flow(
            "127.0.0.2",
            42000 + 2 * i,
            &format!("127.0.0.1:{}", 41000 + 2 * i),
            20 + u64::from(i),
        );
        w.machines[id].flow().play_tone(ToneSpec::single(
            400.0 + 300.0 * f64::from(i),
            -15.0,
            None,
        ));
        phones.push(id);
    }
    let tape = Tape::default();
    w.machines[phones[0]]
        .flow()
        .record(Box::new(tape.clone()))
        .unwrap();
    w.run_for(Duration::from_secs(1));
    let Machine::Conference(c) = &mut w.machines[conf] else {
        panic!()
    };
    let left = c.leave(2).unwrap();
    assert_eq!(c.len(), 2);
    assert_eq!(left.config().rtp, SocketId(4));
    w.run_for(Duration::from_secs(1));
    // Phone 0 received a packet every 20 ms throughout (no gap), and 700 Hz (phone 1)
    // is there after the leave while 1000 Hz (phone 2) is gone.
    let heard = tape.samples();
    assert!(heard.len() >= 15_800, "{}", heard.len());
    let after = &heard[heard.len() - 4000..];
    assert!((tone_level_dbm0(after, 700.0) - -15.0).abs() < 1.0);
    assert!(tone_level_dbm0(after, 1000.0) < -50.0);
    let rtp_to_phone0: Vec<Duration> = w.rtp_log[conf]
        .iter()
        .filter(|(_, to, _)| *to == addr("127.0.0.2:42000"))
        .map(|(at, _, _)| *at)
        .collect();
    for pair in rtp_to_phone0.windows(2) {
        assert_eq!(pair[1] - pair[0], Duration::from_millis(20));
    }
}

#[test]
fn a_stalled_conference_skips_frames_but_keeps_its_timestamps_on_the_clock() {
    let start = Instant::now();
    let mut conference = Conference::new();
    for i in 0..2u32 {
        let config = FlowConfig::pcmu(
            SocketId(2 * i),
            SocketId(2 * i + 1),
            Some(addr(&format!("127.0.0.2:{}", 43000 + 2 * i))),
        );
        conference.join(
            start,
            i,
            AudioFlow::new(start, config, identity(20 + u64::from(i))),
        );
    }
    let timestamps = |conference: &mut Conference| {
        let mut by_port: BTreeMap<u16, Vec<u32>> = BTreeMap::new();
        while let Some(datagram) = conference.poll_transmit() {
            if let Ok((header, _)) = parse_rtp(&datagram.data) {
                by_port
                    .entry(datagram.to.port())
                    .or_default()
                    .push(header.timestamp);
            }
        }
        by_port
    };
    // 200 ms late: frames 0..=10 are due; five are sent at once, six skipped.
    conference.handle_timeout(start + Duration::from_millis(200));
    let stalled = timestamps(&mut conference);
    assert_eq!(stalled.len(), 2);
    // Frame 11, on time: its timestamp is 11 frames after frame 0's.
    let next = conference.poll_timeout().unwrap();
    assert_eq!(next, start + Duration::from_millis(220));
    conference.handle_timeout(next);
    let after = timestamps(&mut conference);
    for (port, sent) in &stalled {
        assert_eq!(sent.len(), 5, "port {port}: five frames caught up");
        let steps: Vec<u32> = sent.windows(2).map(|w| w[1].wrapping_sub(w[0])).collect();
        assert_eq!(steps, [160; 4]);
        let following = &after[port];
        assert_eq!(following.len(), 1);
        assert_eq!(following[0].wrapping_sub(sent[0]), 11 * 160);
    }
}
