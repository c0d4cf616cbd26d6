//! Port pairs and the media driver on loopback (127.0.0.1). The port ranges are below the
//! ephemeral range and distinct per test, so tests running side by side do not collide.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::collections::VecDeque;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use bytes::Bytes;
use media_transport::{PortPool, PortRange, TransportError, spawn};
use rtp_session::{
    Datagram, Leg, MediaMachine, Relay, RelayConfig, RelayEvent, RelayLeg, RtpHeader, SocketId,
    build_rtp, parse_rtp,
};
use tokio::net::UdpSocket;

const LOOPBACK: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

fn pool(first: u16, last: u16) -> PortPool {
    PortPool::new(LOOPBACK, PortRange { first, last }).unwrap()
}

async fn phone() -> UdpSocket {
    UdpSocket::bind((LOOPBACK, 0)).await.unwrap()
}

async fn recv(socket: &UdpSocket) -> (Vec<u8>, SocketAddr) {
    let mut buf = vec![0; 2048];
    let (n, from) = tokio::time::timeout(Duration::from_secs(5), socket.recv_from(&mut buf))
        .await
        .expect("a datagram within 5 s")
        .unwrap();
    buf.truncate(n);
    (buf, from)
}

async fn nothing_arrives(socket: &UdpSocket) -> bool {
    let mut buf = vec![0; 2048];
    tokio::time::timeout(Duration::from_millis(200), socket.recv_from(&mut buf))
        .await
        .is_err()
}

fn rtp(ssrc: u32, sequence: u16) -> Vec<u8> {
    let header = RtpHeader {
        marker: false,
        payload_type: 0,
        sequence,
        timestamp: u32::from(sequence) * 160,
        ssrc,
    };
    build_rtp(&header, &[0xff; 160]).unwrap().to_vec()
}

// ---- PortPool ----

#[test]
fn pool_refuses_ranges_without_a_pair() {
    for (first, last) in [(21010, 21001), (21001, 21001), (21000, 21000), (0, 100)] {
        assert!(
            matches!(
                PortPool::new(LOOPBACK, PortRange { first, last }),
                Err(TransportError::InvalidRange { .. })
            ),
            "{first}-{last}"
        );
    }
    let odd_start = pool(21001, 21003);
    assert_eq!(odd_start.ip(), LOOPBACK);
}

#[test]
fn pool_needs_a_runtime() {
    let pool = pool(21020, 21029);
    assert!(matches!(pool.bind_pair(), Err(TransportError::NoRuntime)));
    assert!(matches!(
        pool.bind_exact(21020),
        Err(TransportError::NoRuntime)
    ));
}

#[tokio::test]
async fn pool_goes_round_robin_and_never_reuses_a_port_at_once() {
    // Three pairs: 21100, 21102, 21104 (21106 has no 21107 in the range).
    let pool = pool(21099, 21106);
    let first = pool.bind_pair().unwrap();
    assert_eq!(first.rtp_port(), 21100);
    assert_eq!(first.rtcp.local_addr().unwrap().port(), 21101);
    drop(first);
    assert_eq!(
        pool.bind_pair().unwrap().rtp_port(),
        21102,
        "not 21100 again"
    );
    let third = pool.bind_pair().unwrap();
    assert_eq!(third.rtp_port(), 21104);
    // Wraps around to the released 21100, then to 21102 (released too).
    let again = pool.bind_pair().unwrap();
    assert_eq!(again.rtp_port(), 21100);
    assert_eq!(pool.bind_pair().unwrap().rtp_port(), 21102);
}

#[tokio::test]
async fn pool_skips_ports_held_elsewhere_and_says_when_all_are_taken() {
    let pool = pool(21200, 21205);
    // Another process (here: a plain socket) holds the RTCP port of the second pair.
    let squatter = std::net::UdpSocket::bind((LOOPBACK, 21203)).unwrap();
    let a = pool.bind_pair().unwrap();
    let b = pool.bind_pair().unwrap();
    assert_eq!((a.rtp_port(), b.rtp_port()), (21200, 21204));
    // 21202's RTP socket was released when its RTCP bind failed: the RTP port is free.
    drop(std::net::UdpSocket::bind((LOOPBACK, 21202)).unwrap());
    match pool.bind_pair() {
        Err(TransportError::RangeExhausted { range }) => {
            assert_eq!(
                range,
                PortRange {
                    first: 21200,
                    last: 21205
                }
            );
        }
        other => panic!("expected RangeExhausted, got {other:?}"),
    }
    drop(squatter);
    assert_eq!(pool.bind_pair().unwrap().rtp_port(), 21202);
}

#[tokio::test]
async fn pool_binds_an_exact_port() {
    let pool = pool(21300, 21309);
    let pair = pool.bind_exact(21350).unwrap();
    assert_eq!(pair.rtp_port(), 21350);
    assert_eq!(pair.rtcp.local_addr().unwrap().port(), 21351);
    match pool.bind_exact(21350) {
        Err(TransportError::Bind { port, source }) => {
            assert_eq!(port, 21350);
            assert_eq!(source.kind(), std::io::ErrorKind::AddrInUse);
        }
        other => panic!("expected Bind, got {other:?}"),
    }
}

// ---- the driver, with a tiny echo machine ----

/// Sends every datagram back where it came from, from the socket it arrived on; an event
/// per datagram; a timer `tick` after the last datagram.
#[derive(Debug, Default)]
struct Echo {
    seen: u64,
    out: VecDeque<Datagram>,
    events: VecDeque<u64>,
    tick: Option<Duration>,
    deadline: Option<Instant>,
    ticks: u64,
}

impl MediaMachine for Echo {
    type Event = u64;

    fn handle_datagram(&mut self, now: Instant, socket: SocketId, from: SocketAddr, data: &[u8]) {
        self.seen += 1;
        self.out.push_back(Datagram {
            socket,
            to: from,
            data: Bytes::copy_from_slice(data),
        });
        self.events.push_back(self.seen);
        self.deadline = self.tick.map(|tick| now + tick);
    }

    fn handle_timeout(&mut self, now: Instant) {
        if self.deadline.is_some_and(|d| d <= now) {
            self.deadline = None;
            self.ticks += 1;
            self.events.push_back(1000 + self.ticks);
        }
    }

    fn poll_transmit(&mut self) -> Option<Datagram> {
        self.out.pop_front()
    }

    fn poll_timeout(&self) -> Option<Instant> {
        self.deadline
    }

    fn poll_event(&mut self) -> Option<u64> {
        self.events.pop_front()
    }
}

#[tokio::test]
async fn echo_machine_driven_by_spawn() {
    let one = UdpSocket::bind((LOOPBACK, 0)).await.unwrap();
    let one_addr = one.local_addr().unwrap();
    let mut handle = spawn(Echo::default(), vec![(SocketId(1), one)]);
    let client = phone().await;

    client.send_to(b"hello", one_addr).await.unwrap();
    let (data, from) = recv(&client).await;
    assert_eq!((&data[..], from), (&b"hello"[..], one_addr));
    assert_eq!(handle.next_event().await, Some(1));

    // A second socket joins; the machine answers on it too.
    let two = UdpSocket::bind((LOOPBACK, 0)).await.unwrap();
    let two_addr = two.local_addr().unwrap();
    handle.add_socket(SocketId(2), two).unwrap();
    client.send_to(b"again", two_addr).await.unwrap();
    let (data, from) = recv(&client).await;
    assert_eq!((&data[..], from), (&b"again"[..], two_addr));
    assert_eq!(handle.next_event().await, Some(2));

    // Commands and queries run inside the task, in order.
    let controller = handle.controller();
    controller
        .command(|echo, _| echo.tick = Some(Duration::from_millis(50)))
        .unwrap();
    assert_eq!(controller.query(|echo, _| echo.seen).await.unwrap(), 2);

    // The timer: 50 ms after the next datagram.
    client.send_to(b"tick", one_addr).await.unwrap();
    recv(&client).await;
    assert_eq!(handle.next_event().await, Some(3));
    assert_eq!(handle.next_event().await, Some(1001));

    // Removed: its datagrams are no longer read (the socket is closed).
    handle.remove_socket(SocketId(2)).unwrap();
    assert_eq!(handle.query(|echo, _| echo.seen).await.unwrap(), 3);
    client.send_to(b"gone", two_addr).await.unwrap();
    assert!(nothing_arrives(&client).await);

    let stats = handle.stats();
    assert_eq!((stats.received, stats.sent), (3, 3));
    let echo = handle.stop().await.unwrap();
    assert_eq!((echo.seen, echo.ticks), (3, 1));
    assert!(matches!(
        controller.command(|_, _| {}),
        Err(TransportError::Closed)
    ));
    assert!(matches!(
        controller.query(|echo, _| echo.seen).await,
        Err(TransportError::Closed)
    ));
}

#[tokio::test]
async fn a_socket_taken_from_one_task_serves_another_on_the_same_port() {
    let socket = UdpSocket::bind((LOOPBACK, 0)).await.unwrap();
    let addr = socket.local_addr().unwrap();
    let first = spawn(Echo::default(), vec![(SocketId(1), socket)]);
    let client = phone().await;
    client.send_to(b"one", addr).await.unwrap();
    recv(&client).await;

    // A command given before the take runs first; then the socket leaves, open.
    first
        .command(|echo, _| echo.tick = Some(Duration::from_secs(60)))
        .unwrap();
    let taken = first.take_socket(SocketId(1)).await.unwrap().unwrap();
    assert_eq!(taken.local_addr().unwrap(), addr, "the same port");
    assert!(first.take_socket(SocketId(1)).await.unwrap().is_none());
    assert!(first.take_socket(SocketId(9)).await.unwrap().is_none());
    // Meanwhile the peer goes on sending: the datagram waits in the socket.
    client.send_to(b"two", addr).await.unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(first.query(|echo, _| echo.seen).await.unwrap(), 1);

    // Another task takes it over (under another id) and reads what waited.
    let second = spawn(Echo::default(), Vec::new());
    second.add_socket(SocketId(7), taken).unwrap();
    let (data, from) = recv(&client).await;
    assert_eq!((&data[..], from), (&b"two"[..], addr));
    assert_eq!(second.query(|echo, _| echo.seen).await.unwrap(), 1);

    // A stopped task cannot be asked.
    let first_machine = first.stop().await.unwrap();
    assert_eq!(first_machine.tick, Some(Duration::from_secs(60)));
    let controller = second.controller();
    second.stop().await.unwrap();
    assert!(matches!(
        controller.take_socket(SocketId(7)).await,
        Err(TransportError::Closed)
    ));
}

#[test]
fn spawn_outside_a_runtime_gives_a_closed_handle() {
    let handle = spawn(Echo::default(), Vec::new());
    assert!(matches!(
        handle.command(|_, _| {}),
        Err(TransportError::Closed)
    ));
}

#[tokio::test]
async fn dropping_every_handle_ends_the_task() {
    let socket = UdpSocket::bind((LOOPBACK, 0)).await.unwrap();
    let addr = socket.local_addr().unwrap();
    let handle = spawn(Echo::default(), vec![(SocketId(1), socket)]);
    let controller = handle.controller();
    drop(handle);
    // Still served through the controller.
    assert_eq!(controller.query(|echo, _| echo.seen).await.unwrap(), 0);
    drop(controller);
    // The task ends and closes its socket: the port can be bound again.
    let mut rebound = None;
    for _ in 0..100 {
        if let Ok(s) = std::net::UdpSocket::bind(addr) {
            rebound = Some(s);
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(rebound.is_some());
}

// ---- a Relay between two phones ----

struct RelayRig {
    handle: media_transport::MediaHandle<Relay>,
    a_rtp: SocketAddr,
    a_rtcp: SocketAddr,
    b_rtp: SocketAddr,
}

async fn relay_rig(
    pool: &PortPool,
    remote_a: SocketAddr,
    remote_b: SocketAddr,
    media_timeout: Option<Duration>,
) -> RelayRig {
    let a = pool.bind_pair().unwrap();
    let b = pool.bind_pair().unwrap();
    let (a_rtp, a_rtcp) = (a.rtp.local_addr().unwrap(), a.rtcp.local_addr().unwrap());
    let b_rtp = b.rtp.local_addr().unwrap();
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
        leg(0, 1, remote_a),
        leg(2, 3, remote_b),
        RelayConfig {
            media_timeout,
            seed: 7,
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
    RelayRig {
        handle,
        a_rtp,
        a_rtcp,
        b_rtp,
    }
}

#[tokio::test]
async fn relay_between_two_phones_rewrites_both_ways() {
    let pool = pool(21400, 21419);
    let (phone_a, phone_b) = (phone().await, phone().await);
    let rig = relay_rig(
        &pool,
        phone_a.local_addr().unwrap(),
        phone_b.local_addr().unwrap(),
        None,
    )
    .await;
    let toward_b = rig
        .handle
        .query(|r, _| r.ssrc_toward(Leg::B))
        .await
        .unwrap();
    let toward_a = rig
        .handle
        .query(|r, _| r.ssrc_toward(Leg::A))
        .await
        .unwrap();

    let mut previous: Option<RtpHeader> = None;
    for i in 0..5 {
        phone_a
            .send_to(&rtp(0xaaaa, 100 + i), rig.a_rtp)
            .await
            .unwrap();
        let (data, from) = recv(&phone_b).await;
        assert_eq!(from, rig.b_rtp, "from B's relay socket");
        let (h, payload) = parse_rtp(&data).unwrap();
        assert_eq!(h.ssrc, toward_b);
        assert_eq!(&data[payload], &[0xff; 160][..]);
        if let Some(p) = previous {
            assert_eq!(h.sequence, p.sequence.wrapping_add(1));
        }
        previous = Some(h);
    }
    phone_b.send_to(&rtp(0xbbbb, 9), rig.b_rtp).await.unwrap();
    let (data, from) = recv(&phone_a).await;
    assert_eq!(from, rig.a_rtp);
    assert_eq!(parse_rtp(&data).unwrap().0.ssrc, toward_a);

    // RTCP is consumed, not forwarded.
    let sr = [0x80u8, 200, 0, 1, 0, 0, 0, 1];
    phone_a.send_to(&sr, rig.a_rtcp).await.unwrap();
    assert!(nothing_arrives(&phone_b).await);

    let relay = rig.handle.stop().await.unwrap();
    let (a, b) = (relay.stats(Leg::A), relay.stats(Leg::B));
    assert_eq!((a.received, a.forwarded, a.rtcp_received), (5, 5, 1));
    assert_eq!((b.received, b.forwarded), (1, 1));
}

#[tokio::test]
async fn relay_reaches_a_natted_phone_at_its_real_source() {
    let pool = pool(21420, 21439);
    // A's SDP names an address its packets never come from (a private one behind a NAT);
    // the decoy stands at that address to see what is sent there.
    let decoy = phone().await;
    let (phone_a, phone_b) = (phone().await, phone().await);
    let mut rig = relay_rig(
        &pool,
        decoy.local_addr().unwrap(),
        phone_b.local_addr().unwrap(),
        None,
    )
    .await;
    // Before A speaks, B's media goes to the signalled address.
    phone_b.send_to(&rtp(0xb, 1), rig.b_rtp).await.unwrap();
    recv(&decoy).await;
    // A speaks from its real (NATed) source: the relay latches onto it.
    phone_a.send_to(&rtp(0xa, 1), rig.a_rtp).await.unwrap();
    recv(&phone_b).await;
    let real_a = phone_a.local_addr().unwrap();
    let mut latched = false;
    while let Ok(Some(event)) =
        tokio::time::timeout(Duration::from_millis(500), rig.handle.next_event()).await
    {
        if event
            == (RelayEvent::Latched {
                leg: Leg::A,
                addr: real_a,
            })
        {
            latched = true;
            break;
        }
    }
    assert!(latched);
    phone_b.send_to(&rtp(0xb, 2), rig.b_rtp).await.unwrap();
    let (data, from) = recv(&phone_a).await;
    assert_eq!(from, rig.a_rtp);
    assert_eq!(
        parse_rtp(&data).unwrap().0.ssrc,
        rig.handle
            .query(|r, _| r.ssrc_toward(Leg::A))
            .await
            .unwrap()
    );
    let forwarded = rig
        .handle
        .query(|r, _| r.stats(Leg::B).forwarded)
        .await
        .unwrap();
    assert_eq!(forwarded, 2);
    assert!(
        nothing_arrives(&decoy).await,
        "nothing more to the signalled address"
    );
}

#[tokio::test(start_paused = true)]
async fn media_timeout_on_the_paused_clock() {
    let pool = pool(21440, 21459);
    let (phone_a, phone_b) = (phone().await, phone().await);
    let mut rig = relay_rig(
        &pool,
        phone_a.local_addr().unwrap(),
        phone_b.local_addr().unwrap(),
        Some(Duration::from_secs(30)),
    )
    .await;
    let started = tokio::time::Instant::now();
    let wall = Instant::now();
    let mut timed_out = Vec::new();
    for _ in 0..2 {
        match rig.handle.next_event().await {
            Some(RelayEvent::MediaTimeout { leg }) => timed_out.push(leg),
            other => panic!("expected a media timeout, got {other:?}"),
        }
    }
    timed_out.sort_by_key(|leg| *leg == Leg::B);
    assert_eq!(timed_out, vec![Leg::A, Leg::B]);
    assert!(
        started.elapsed() >= Duration::from_secs(30),
        "on tokio's clock"
    );
    assert!(
        wall.elapsed() < Duration::from_secs(10),
        "not on the wall clock"
    );
}

#[tokio::test]
async fn media_timeout_and_resume_on_the_real_clock() {
    let pool = pool(21460, 21479);
    let (phone_a, phone_b) = (phone().await, phone().await);
    let mut rig = relay_rig(
        &pool,
        phone_a.local_addr().unwrap(),
        phone_b.local_addr().unwrap(),
        Some(Duration::from_millis(200)),
    )
    .await;
    let mut next = async || {
        tokio::time::timeout(Duration::from_secs(5), rig.handle.next_event())
            .await
            .unwrap()
            .unwrap()
    };
    let mut first_two = vec![next().await, next().await];
    first_two.sort_by_key(|e| format!("{e:?}"));
    assert_eq!(
        first_two,
        vec![
            RelayEvent::MediaTimeout { leg: Leg::A },
            RelayEvent::MediaTimeout { leg: Leg::B },
        ]
    );
    phone_a.send_to(&rtp(0xa, 1), rig.a_rtp).await.unwrap();
    let a = phone_a.local_addr().unwrap();
    assert_eq!(
        next().await,
        RelayEvent::FirstPacket {
            leg: Leg::A,
            from: a
        }
    );
    assert_eq!(
        next().await,
        RelayEvent::Latched {
            leg: Leg::A,
            addr: a
        }
    );
    assert_eq!(next().await, RelayEvent::MediaResumed { leg: Leg::A });
    // Silent again: a new timeout, once.
    assert_eq!(next().await, RelayEvent::MediaTimeout { leg: Leg::A });
}

/// What a command asks to send before `stop` still goes out: an AudioFlow closed and
/// stopped at once sends its RTCP BYE (RFC 3550 §6.6) to the peer's RTCP port.
#[tokio::test]
async fn a_flow_closed_then_stopped_still_sends_its_rtcp_bye() {
    use media::flow::{AudioFlow, FlowConfig, FlowIdentity};
    let pool = pool(22800, 22809);
    let pair = pool.bind_pair().unwrap();
    let phone_rtp = phone().await;
    let phone_rtcp = UdpSocket::bind((LOOPBACK, phone_rtp.local_addr().unwrap().port() + 1))
        .await
        .unwrap();
    let mut config = FlowConfig::pcmu(
        SocketId(0),
        SocketId(1),
        Some(phone_rtp.local_addr().unwrap()),
    );
    config.remote_rtcp = Some(phone_rtcp.local_addr().unwrap());
    let flow = AudioFlow::new(
        Instant::now(),
        config,
        FlowIdentity {
            cname: "t@test".into(),
            seed: 5,
            since_unix_epoch: Duration::from_secs(1_800_000_000),
        },
    );
    let handle = spawn(
        flow,
        vec![(SocketId(0), pair.rtp), (SocketId(1), pair.rtcp)],
    );
    // RTP flows (silence every 20 ms).
    let (packet, _) = recv(&phone_rtp).await;
    assert!(parse_rtp(&packet).is_ok());
    handle.command(|flow, now| flow.close(now)).unwrap();
    let flow = handle.stop().await.unwrap();
    assert!(flow.stats().packets_sent >= 1);
    let (bye, _) = recv(&phone_rtcp).await;
    // A compound packet (RR or SR first) that holds a BYE (PT 203).
    assert!(matches!(bye[1], 200 | 201), "{bye:?}");
    let mut at = 0;
    let mut types = Vec::new();
    while at + 4 <= bye.len() {
        types.push(bye[at + 1]);
        at += 4 * (usize::from(u16::from_be_bytes([bye[at + 2], bye[at + 3]])) + 1);
    }
    assert!(types.contains(&203), "{types:?}");
}
