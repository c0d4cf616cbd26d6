//! A Conference of three flows on a virtual clock (`t0 + Duration`): each participant
//! hears the others, not itself; a room-wide announcement reaches everyone and ends with
//! `PlayCompleted` under `ANNOUNCER`; a participant's own player is heard by it alone;
//! a flow moved under other socket ids (`set_sockets`) reads and sends on them.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use media::conference::FRAME;
use media::flow::{AudioFlow, FlowConfig, FlowEvent, FlowIdentity};
use media::{ANNOUNCER, Conference, G711, ToneGenerator, ToneSpec, tone_level_dbm0};
use rtp_session::{MediaMachine, RtpHeader, SocketId, build_rtp, looks_like_rtcp, parse_rtp};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn phone(i: u32) -> SocketAddr {
    format!("192.0.2.{}:4000", i + 1).parse().unwrap()
}

/// Participant `i`'s flow, on the conference's sockets `2i` and `2i + 1`: first made on
/// the sockets of a call's own task (0 and 1), then moved as the media plane does.
fn flow(t0: Instant, i: u32) -> AudioFlow {
    let config = FlowConfig::pcmu(SocketId(0), SocketId(1), Some(phone(i)));
    let mut flow = AudioFlow::new(
        t0,
        config,
        FlowIdentity {
            cname: format!("p{i}@test"),
            seed: u64::from(i) + 1,
            since_unix_epoch: Duration::from_secs(1_800_000_000),
        },
    );
    flow.set_sockets(SocketId(2 * i), SocketId(2 * i + 1));
    flow
}

/// Three phones, each sending a tone of its own (500, 700, 900 Hz).
struct Rig {
    conference: Conference,
    t0: Instant,
    now: Instant,
    tones: Vec<ToneGenerator>,
    sequence: u16,
    /// What each phone heard, decoded.
    heard: HashMap<u32, Vec<i16>>,
    events: Vec<(u32, FlowEvent)>,
}

const FREQUENCIES: [f64; 3] = [500.0, 700.0, 900.0];

impl Rig {
    fn new() -> Rig {
        let t0 = Instant::now();
        let mut conference = Conference::new();
        for i in 0..3 {
            conference.join(t0, i, flow(t0, i));
        }
        Rig {
            conference,
            t0,
            now: t0,
            tones: FREQUENCIES
                .iter()
                .map(|&f| ToneGenerator::new(ToneSpec::single(f, -10.0, None)))
                .collect(),
            sequence: 0,
            heard: HashMap::new(),
            events: Vec::new(),
        }
    }

    /// `d` of conference: every 20 ms each phone sends a packet, then the clock runs.
    fn run(&mut self, d: Duration) {
        let until = self.now + d;
        while self.now < until {
            for (i, tone) in self.tones.iter_mut().enumerate() {
                let mut frame = vec![0i16; 160];
                tone.fill(&mut frame);
                let mut payload = Vec::new();
                G711::Pcmu.encode(&frame, &mut payload);
                let header = RtpHeader {
                    marker: false,
                    payload_type: 0,
                    sequence: self.sequence,
                    timestamp: u32::from(self.sequence) * 160,
                    ssrc: 100 + i as u32,
                };
                let data = build_rtp(&header, &payload).unwrap();
                let i = i as u32;
                self.conference
                    .handle_datagram(self.now, SocketId(2 * i), phone(i), &data);
            }
            self.sequence = self.sequence.wrapping_add(1);
            while let Some(at) = self.conference.poll_timeout().filter(|at| *at <= self.now) {
                self.conference.handle_timeout(at);
            }
            while let Some(d) = self.conference.poll_transmit() {
                let i = d.socket.0 / 2;
                if looks_like_rtcp(&d.data) {
                    // From the participant's own RTCP socket, to its phone's RTCP port.
                    assert_eq!(d.socket.0 % 2, 1, "RTCP from an RTP socket");
                    continue;
                }
                let (header, range) = parse_rtp(&d.data).unwrap();
                assert_eq!(header.payload_type, 0);
                // Sent from the participant's own RTP socket, to its phone.
                assert_eq!(d.socket.0 % 2, 0, "RTP from an RTCP socket");
                assert_eq!(d.to, phone(i));
                G711::Pcmu.decode(&d.data[range], self.heard.entry(i).or_default());
            }
            while let Some(event) = self.conference.poll_event() {
                self.events.push(event);
            }
            self.now += FRAME;
        }
    }

    /// The last 0.5 s phone `i` heard.
    fn last(&self, i: u32) -> &[i16] {
        let heard = &self.heard[&i];
        assert!(heard.len() >= 4000, "{} samples", heard.len());
        &heard[heard.len() - 4000..]
    }

    fn clear(&mut self) {
        self.heard.clear();
    }
}

fn level(samples: &[i16], f: f64) -> f64 {
    tone_level_dbm0(samples, f)
}

#[test]
fn each_participant_hears_the_others_and_not_itself() {
    let mut rig = Rig::new();
    rig.run(ms(1000));
    for i in 0..3u32 {
        let heard = rig.last(i);
        for (j, &f) in FREQUENCIES.iter().enumerate() {
            let l = level(heard, f);
            if j as u32 == i {
                assert!(l < -45.0, "{i} hears itself at {l:.1} dBm0");
            } else {
                assert!((l - -10.0).abs() < 1.5, "{i} hears {f} Hz at {l:.1} dBm0");
            }
        }
    }
    assert!(rig.now > rig.t0);
}

#[test]
fn an_announcement_reaches_everyone_and_completes_under_the_announcer() {
    let mut rig = Rig::new();
    rig.run(ms(200));
    rig.conference
        .play_tone(ToneSpec::single(1300.0, -10.0, Some(ms(2000))));
    assert!(rig.conference.is_playing());
    rig.clear();
    rig.run(ms(1000));
    for i in 0..3 {
        let l = level(rig.last(i), 1300.0);
        assert!(
            (l - -10.0).abs() < 1.5,
            "{i} hears the announcement at {l:.1}"
        );
    }
    assert!(rig.events.iter().all(|(id, _)| *id != ANNOUNCER));
    rig.run(ms(1200));
    assert!(!rig.conference.is_playing());
    assert!(
        rig.events.contains(&(ANNOUNCER, FlowEvent::PlayCompleted)),
        "{:?}",
        rig.events
    );
    rig.clear();
    rig.run(ms(600));
    assert!(level(rig.last(0), 1300.0) < -45.0, "the announcement ended");
}

#[test]
fn a_participants_own_player_is_heard_by_it_alone_over_the_others() {
    let mut rig = Rig::new();
    rig.conference
        .participant(1)
        .unwrap()
        .play_tone(ToneSpec::single(1100.0, -10.0, Some(ms(1000))));
    rig.run(ms(800));
    let own = rig.last(1);
    assert!((level(own, 1100.0) - -10.0).abs() < 1.5);
    assert!(level(own, 500.0) > -12.0 && level(own, 900.0) > -12.0);
    assert!(level(own, 700.0) < -45.0);
    for i in [0, 2] {
        assert!(
            level(rig.last(i), 1100.0) < -45.0,
            "{i} hears 1 participant's player"
        );
    }
    rig.run(ms(400));
    assert!(rig.events.contains(&(1, FlowEvent::PlayCompleted)));
    assert!(!rig.conference.participant(1).unwrap().is_playing());
}

#[test]
fn a_participant_that_leaves_is_heard_no_more_and_gets_its_flow_back() {
    let mut rig = Rig::new();
    rig.run(ms(300));
    let mut flow = rig.conference.leave(1).unwrap();
    assert_eq!(rig.conference.participant_ids(), vec![0, 2]);
    // Its flow comes back on its conference sockets; the media plane files them again.
    assert_eq!(flow.config().rtp, SocketId(2));
    flow.set_sockets(SocketId(0), SocketId(1));
    assert_eq!(
        (flow.config().rtp, flow.config().rtcp),
        (SocketId(0), SocketId(1))
    );
    rig.clear();
    rig.run(ms(800));
    assert!(level(rig.last(0), 700.0) < -45.0);
    assert!(level(rig.last(0), 900.0) > -12.0);
    assert!(
        !rig.heard.contains_key(&1),
        "no frame for the one that left"
    );
}

#[test]
fn a_muted_participant_hears_the_others_and_is_not_heard_until_unmuted() {
    let mut rig = Rig::new();
    rig.run(ms(300));
    assert!(!rig.conference.set_muted(7, true), "no such participant");
    assert!(rig.conference.set_muted(1, true));
    assert!(rig.conference.is_muted(1));
    rig.clear();
    rig.run(ms(800));
    for i in [0, 2] {
        let heard = rig.last(i);
        assert!(level(heard, 700.0) < -45.0, "{i} hears the muted one");
        let other = if i == 0 { 900.0 } else { 500.0 };
        assert!((level(heard, other) - -10.0).abs() < 1.5, "{i}");
    }
    // The muted one still hears both others.
    let own = rig.last(1);
    assert!((level(own, 500.0) - -10.0).abs() < 1.5);
    assert!((level(own, 900.0) - -10.0).abs() < 1.5);

    assert!(rig.conference.set_muted(1, false));
    rig.clear();
    rig.run(ms(800));
    assert!((level(rig.last(0), 700.0) - -10.0).abs() < 1.5, "unmuted");
    // Leaving clears it: a flow that comes back in is heard.
    rig.conference.set_muted(2, true);
    let flow = rig.conference.leave(2).unwrap();
    assert!(!rig.conference.is_muted(2));
    rig.conference.join(rig.now, 2, flow);
    rig.clear();
    rig.run(ms(800));
    assert!(
        (level(rig.last(0), 900.0) - -10.0).abs() < 1.5,
        "rejoined, heard"
    );
}
