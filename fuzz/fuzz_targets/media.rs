//! Media input: every datagram that can reach an RTP or RTCP socket, into an AudioFlow
//! (RTP, RTCP, RFC 4733 events on its negotiated payload type), a Relay and a bare
//! RtcpSession, and the RTCP wire reader on its own. Nothing panics; the flow keeps its clock.
#![no_main]

use libfuzzer_sys::fuzz_target;
use media::flow::{AudioFlow, FlowConfig, FlowIdentity};
use rtp_session::{
    MediaMachine, RelayConfig, RelayLeg, RtcpConfig, RtcpSession, SocketId, parse_rtp,
};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

fuzz_target!(|data: &[u8]| {
    let now = Instant::now();
    let peer: SocketAddr = "192.0.2.1:4000".parse().expect("addr");
    let mut flow = AudioFlow::new(
        now,
        FlowConfig::pcmu(SocketId(0), SocketId(1), Some(peer)),
        FlowIdentity {
            cname: "fuzz".into(),
            seed: 7,
            since_unix_epoch: Duration::from_secs(1),
        },
    );
    let leg = |rtp, rtcp| RelayLeg {
        rtp: SocketId(rtp),
        rtcp: SocketId(rtcp),
        remote: Some(peer),
        remote_rtcp: None,
        symmetric: true,
        clock_rate: 8000,
    };
    let mut relay = rtp_session::Relay::new(
        now,
        leg(0, 1),
        leg(2, 3),
        RelayConfig {
            media_timeout: Some(Duration::from_secs(1)),
            seed: 1,
            ..RelayConfig::default()
        },
    );
    let mut rtcp = RtcpSession::new(now, RtcpConfig::default(), 3);
    // The input is split into datagrams at each 0xfe byte, delivered 7 ms apart.
    let mut t = now;
    for (i, datagram) in data.split(|b| *b == 0xfe).enumerate() {
        t += Duration::from_millis(7);
        let socket = SocketId((i % 4) as u32);
        flow.handle_datagram(t, SocketId(socket.0 % 2), peer, datagram);
        relay.handle_datagram(t, socket, peer, datagram);
        let _ = rtcp.handle_rtcp(t, datagram, 42);
        let _ = parse_rtp(datagram);
        let _ = rtp_session::parse_compound(datagram);
        if flow.poll_timeout().is_some_and(|d| d <= t) {
            flow.handle_timeout(t);
        }
        relay.handle_timeout(t);
        while flow.poll_transmit().is_some() {}
        while flow.poll_event().is_some() {}
        while relay.poll_transmit().is_some() {}
        while relay.poll_event().is_some() {}
    }
    let _ = flow.stats();
});
