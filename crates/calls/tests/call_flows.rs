//! Whole call flows through the sans-IO endpoint on a virtual clock: every timer of a
//! 64·T1 flow runs in microseconds, and the schedules are asserted exactly.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod support;

use sip_message::{HeaderName, Message, Method, Transport};
use std::time::Duration;
use support::*;

const T1: Duration = Duration::from_millis(500);

#[test]
fn echo_answers_and_bye_ends_the_call() {
    let mut h = Harness::new();
    let out = h.send(&invite("echo", "z9hG4bKa1", "call-1", true));
    assert_eq!(statuses(&out), [100, 180, 200]);
    let ringing = response(&out[1]);
    let ok = response(&out[2]);
    // One dialog: the 180 and the 200 carry the same To tag, and every response goes
    // back to the source (RFC 3261 §18.2.2).
    let tag = to_tag(&ok);
    assert!(!tag.is_empty());
    assert_eq!(to_tag(&ringing), tag);
    assert!(out.iter().all(|t| t.flow.remote == peer()));
    assert_eq!(header(&ok, HeaderName::ContentType), "application/sdp");
    let answer = String::from_utf8_lossy(&ok.body).into_owned();
    // Both common codecs, in the offerer's order (RFC 3264 §6.1), on the first RTP port
    // of the media range.
    assert!(answer.contains("m=audio 16384 RTP/AVP 0 8\r\n"), "{answer}");
    assert!(header(&ok, HeaderName::Contact).starts_with("<sip:echo@127.0.0.1:5060"));
    assert_eq!(h.stats().dialogs, 1);

    // The ACK stops the 2xx retransmissions.
    assert!(
        h.send(&in_dialog("ACK", "echo", "z9hG4bKa2", "call-1", &tag, 1))
            .is_empty()
    );
    assert!(h.advance(Duration::from_secs(10)).is_empty());

    let out = h.send(&in_dialog("BYE", "echo", "z9hG4bKa3", "call-1", &tag, 2));
    assert_eq!(statuses(&out), [200]);
    assert_eq!(h.stats().dialogs, 0);

    // Timer J (64·T1 over UDP) retires the BYE's server transaction; the INVITE's ended
    // with Timer L. Nothing is left.
    h.advance(64 * T1);
    let stats = h.stats();
    assert_eq!((stats.transactions, stats.dialogs), (0, 0), "{stats:?}");
    assert_eq!(stats.calls_answered, 1);
}

#[test]
fn answer_accepts_at_once_with_no_media() {
    let mut config = calls::EngineConfig::default();
    config
        .demo_users
        .push(("bench".to_owned(), calls::DemoBehaviour::Answer));
    let mut h = Harness::with_config(config);
    let out = h.send(&invite("bench", "z9hG4bKn1", "call-n", true));
    // 200 at once (no 180), with an SDP answer on the discard port (RFC 863).
    assert_eq!(statuses(&out), [100, 200]);
    let ok = response(&out[1]);
    let answer = String::from_utf8_lossy(&ok.body).into_owned();
    assert!(answer.contains("m=audio 9 RTP/AVP 0 8"), "{answer}");
    // No RTP port taken, no stream started.
    assert!(
        !h.events
            .iter()
            .any(|e| matches!(e, calls::Event::Media { .. })),
        "{:?}",
        h.events
    );
    let tag = to_tag(&ok);
    assert!(
        h.send(&in_dialog("ACK", "bench", "z9hG4bKn2", "call-n", &tag, 1))
            .is_empty()
    );
    let out = h.send(&in_dialog("BYE", "bench", "z9hG4bKn3", "call-n", &tag, 2));
    assert_eq!(statuses(&out), [200]);
    h.advance(64 * T1);
    let stats = h.stats();
    assert_eq!((stats.transactions, stats.dialogs), (0, 0), "{stats:?}");
    assert_eq!(stats.calls_answered, 1);
}

#[test]
fn unacknowledged_2xx_is_retransmitted_then_bye_at_64_t1() {
    let mut h = Harness::new();
    let out = h.send(&invite("echo", "z9hG4bKb1", "call-2", true));
    let ok_bytes = out[2].payload.clone();
    let out = h.advance(40 * T1);
    // §13.3.1.4: T1, then doubling up to T2 = 4 s: 0.5, 1.5, 3.5, 7.5, 11.5, 15.5, 19.5 s.
    let times: Vec<Duration> = h
        .sent
        .iter()
        .filter(|(_, t)| t.payload == ok_bytes)
        .map(|(at, _)| *at)
        .collect();
    let want: Vec<Duration> = [0, 500, 1500, 3500, 7500, 11500, 15500, 19500]
        .into_iter()
        .map(Duration::from_millis)
        .collect();
    assert_eq!(times, want);
    assert!(out.iter().all(|t| t.payload == ok_bytes));

    // At 64·T1 = 32 s without ACK the dialog is over: a BYE with a Reason goes out.
    let out = h.advance(24 * T1 + Duration::from_millis(1));
    let byes: Vec<_> = out
        .iter()
        .filter_map(|t| match Message::parse(t.payload.clone()).unwrap() {
            Message::Request(r) if r.method == Method::Bye => Some(r),
            _ => None,
        })
        .collect();
    assert_eq!(byes.len(), 1, "one BYE, the rest 2xx retransmissions");
    let bye = &byes[0];
    assert_eq!(bye.uri().unwrap().to_string(), format!("sip:alice@{PEER}"));
    assert_eq!(bye.headers.cseq().unwrap().seq, 1);
    assert_eq!(bye.headers.to().unwrap().tag(), Some(&b"alice1"[..]));
    assert!(bye.headers.get(&HeaderName::Reason).is_some());
    assert_eq!(h.stats().dialogs, 0);
    let ok_at_32 = h.sent.iter().filter(|(_, t)| t.payload == ok_bytes).count();

    // Nobody answers the BYE: Timer E retransmits it and Timer F ends it; no more 2xx.
    h.advance(70 * T1);
    assert_eq!(
        h.sent.iter().filter(|(_, t)| t.payload == ok_bytes).count(),
        ok_at_32
    );
    let stats = h.stats();
    assert_eq!((stats.transactions, stats.dialogs), (0, 0), "{stats:?}");
}

#[test]
fn ack_after_lost_2xx_stops_retransmission() {
    let mut h = Harness::new();
    let out = h.send(&invite("echo", "z9hG4bKc1", "call-3", true));
    let tag = to_tag(&response(&out[2]));
    assert_eq!(h.advance(2 * T1).len(), 1, "one retransmission at T1");
    h.send(&in_dialog("ACK", "echo", "z9hG4bKc2", "call-3", &tag, 1));
    assert!(
        h.advance(100 * T1).is_empty(),
        "no retransmission and no BYE after the ACK"
    );
    assert_eq!(h.stats().dialogs, 1, "the call goes on");
}

#[test]
fn ring_rings_then_480_after_the_ring_timeout() {
    let mut h = Harness::new();
    let out = h.send(&invite("ring", "z9hG4bKd1", "call-4", true));
    assert_eq!(statuses(&out), [100, 180]);
    let tag = to_tag(&response(&out[1]));
    assert!(h.advance(Duration::from_secs(59)).is_empty());
    let out = h.advance(Duration::from_secs(1));
    assert_eq!(statuses(&out), [480]);
    assert_eq!(to_tag(&response(&out[0])), tag);
    // The 480 is retransmitted (Timer G) until the ACK, which the transaction absorbs.
    let out = h.advance(T1);
    assert_eq!(statuses(&out), [480]);
    let ack = in_dialog("ACK", "ring", "z9hG4bKd1", "call-4", &tag, 1);
    assert!(h.send(&ack).is_empty());
    assert!(h.advance(Duration::from_secs(40)).is_empty());
    let stats = h.stats();
    assert_eq!((stats.transactions, stats.dialogs), (0, 0), "{stats:?}");
}

#[test]
fn cancel_gets_200_and_the_invite_487() {
    let mut h = Harness::new();
    let out = h.send(&invite("ring", "z9hG4bKe1", "call-5", true));
    let tag = to_tag(&response(&out[1]));
    let cancel = format!(
        "CANCEL sip:ring@{LOCAL} SIP/2.0\r\nVia: SIP/2.0/UDP {PEER};branch=z9hG4bKe1\r\n\
         Max-Forwards: 70\r\nFrom: Alice <sip:alice@{PEER}>;tag=alice1\r\nTo: <sip:ring@{LOCAL}>\r\n\
         Call-ID: call-5\r\nCSeq: 1 CANCEL\r\nContent-Length: 0\r\n\r\n"
    );
    let out = h.send(&cancel);
    assert_eq!(statuses(&out), [200, 487]);
    let (ok, terminated) = (response(&out[0]), response(&out[1]));
    assert_eq!(ok.headers.cseq().unwrap().method, Method::Cancel);
    assert_eq!(terminated.headers.cseq().unwrap().method, Method::Invite);
    // §9.2: same To tag on both, and the one the 180 had.
    assert_eq!(to_tag(&ok), tag);
    assert_eq!(to_tag(&terminated), tag);
    assert_eq!(h.stats().dialogs, 0);
    // A CANCEL for nothing gets 481.
    let stray = cancel
        .replace("z9hG4bKe1", "z9hG4bKe9")
        .replace("call-5", "call-x");
    assert_eq!(statuses(&h.send(&stray)), [481]);
}

#[test]
fn busy_declines_486() {
    let mut h = Harness::new();
    let out = h.send(&invite("busy", "z9hG4bKf1", "call-6", true));
    assert_eq!(statuses(&out), [100, 486]);
    assert_eq!(h.stats().dialogs, 0);
}

#[test]
fn retransmitted_invite_gets_the_same_provisional() {
    let mut h = Harness::new();
    let first = h.send(&invite("ring", "z9hG4bKg1", "call-7", true));
    let again = h.send(&invite("ring", "z9hG4bKg1", "call-7", true));
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].payload, first[1].payload, "the very same 180");
    assert_eq!(h.stats().invites_new, 1);
    assert_eq!(h.stats().dialogs, 1);
}

#[test]
fn late_offer_gets_an_offer_in_the_2xx() {
    let mut h = Harness::new();
    let out = h.send(&invite("echo", "z9hG4bKh1", "call-8", false));
    let ok = response(&out[2]);
    assert_eq!(ok.status, 200);
    assert!(String::from_utf8_lossy(&ok.body).contains("m=audio 16384 RTP/AVP 0"));
}

#[test]
fn offer_without_a_common_codec_is_refused_488() {
    let mut h = Harness::new();
    let text = invite_with_sdp(
        "echo",
        "z9hG4bKh2",
        "call-9",
        &SDP.replace("RTP/AVP 0 8", "RTP/AVP 18")
            .replace("a=rtpmap:0 PCMU/8000", "a=rtpmap:18 G729/8000"),
    );
    let out = h.send(&text);
    assert_eq!(statuses(&out), [100, 488]);
    assert!(header(&response(&out[1]), HeaderName::Warning).starts_with("304 "));
}

#[test]
fn options_lists_what_we_do() {
    let mut h = Harness::new();
    let options = format!(
        "OPTIONS sip:{LOCAL} SIP/2.0\r\nVia: SIP/2.0/UDP {PEER};branch=z9hG4bKi1\r\n\
         Max-Forwards: 70\r\nFrom: <sip:alice@{PEER}>;tag=a\r\nTo: <sip:{LOCAL}>\r\n\
         Call-ID: opt-1\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
    );
    let out = h.send(&options);
    assert_eq!(statuses(&out), [200]);
    let ok = response(&out[0]);
    assert!(header(&ok, HeaderName::Allow).contains("INVITE"));
    assert_eq!(header(&ok, HeaderName::Accept), "application/sdp");
    assert!(ok.headers.get(&HeaderName::Supported).is_some());
    // To a user that does not exist: the same 200 (uniform answers: an OPTIONS scan
    // cannot tell which users exist).
    let to_nobody = options.replace(
        &format!("sip:{LOCAL} SIP"),
        &format!("sip:nobody@{LOCAL} SIP"),
    );
    let to_nobody = to_nobody
        .replace("z9hG4bKi1", "z9hG4bKi2")
        .replace("opt-1", "opt-2");
    let out = h.send(&to_nobody);
    assert_eq!(statuses(&out), [200]);
    let names = |r: &sip_message::Response| {
        let mut n: Vec<String> = r.headers.iter().map(|h| h.name.to_string()).collect();
        n.sort();
        n
    };
    assert_eq!(names(&response(&out[0])), names(&ok));
}

#[test]
fn unknown_and_unserved_methods() {
    let mut h = Harness::new();
    let request = |method: &str, branch: &str| {
        format!(
            "{method} sip:echo@{LOCAL} SIP/2.0\r\nVia: SIP/2.0/UDP {PEER};branch={branch}\r\n\
             Max-Forwards: 70\r\nFrom: <sip:alice@{PEER}>;tag=a\r\nTo: <sip:echo@{LOCAL}>\r\n\
             Call-ID: m-{branch}\r\nCSeq: 1 {method}\r\nContent-Length: 0\r\n\r\n"
        )
    };
    let out = h.send(&request("FROBNICATE", "z9hG4bKj1"));
    assert_eq!(statuses(&out), [501]);
    assert!(header(&response(&out[0]), HeaderName::Allow).contains("INVITE"));
    let out = h.send(&request("PUBLISH", "z9hG4bKj2"));
    assert_eq!(statuses(&out), [405]);
    assert!(header(&response(&out[0]), HeaderName::Allow).contains("OPTIONS"));
    // SUBSCRIBE is served for park orbits only (tests/park.rs): without an Event header
    // it is malformed (RFC 6665 §8.2.1), to a user that is no orbit 404.
    assert_eq!(statuses(&h.send(&request("SUBSCRIBE", "z9hG4bKj4"))), [400]);
    let dialog = request("SUBSCRIBE", "z9hG4bKj5")
        .replace("Content-Length: 0", "Event: dialog\r\nContent-Length: 0");
    assert_eq!(statuses(&h.send(&dialog)), [404]);
    // BYE outside a dialog.
    assert_eq!(statuses(&h.send(&request("BYE", "z9hG4bKj3"))), [481]);
}

#[test]
fn invalid_request_gets_400_naming_the_problem() {
    let mut h = Harness::new();
    let text = invite("echo", "z9hG4bKk1", "call-10", false).replace("CSeq: 1 INVITE\r\n", "");
    let out = h.send(&text);
    assert_eq!(statuses(&out), [400]);
    let reason = String::from_utf8_lossy(&response(&out[0]).reason).into_owned();
    assert!(reason.contains("CSeq"), "{reason}");
    assert_eq!(h.stats().rejected_invalid, 1);
    // A version other than SIP/2.0 gets 505.
    let text =
        invite("echo", "z9hG4bKk2", "call-11", false).replacen("SIP/2.0\r\n", "SIP/3.0\r\n", 1);
    assert_eq!(statuses(&h.send(&text)), [505]);
    // Garbage is dropped and counted.
    assert!(h.send("\u{1}\u{2} not sip at all\r\n\r\n").is_empty());
    assert_eq!(h.stats().dropped, 1);
}

#[test]
fn via_gets_received_and_rport_and_the_response_goes_there() {
    let mut h = Harness::new();
    let text = invite("busy", "z9hG4bKl1", "call-12", false).replace(
        &format!("Via: SIP/2.0/UDP {PEER};branch=z9hG4bKl1"),
        "Via: SIP/2.0/UDP 10.9.9.9:5070;rport;branch=z9hG4bKl1",
    );
    let out = h.send(&text);
    assert_eq!(statuses(&out), [100, 486]);
    for t in &out {
        assert_eq!(
            t.flow.remote,
            peer(),
            "RFC 3581: to the source address and port"
        );
        let via = response(t).headers.top_via().unwrap();
        assert_eq!(via.received(), Some("127.0.0.1".parse().unwrap()));
        assert_eq!(via.rport(), Some(Some(5099)));
    }
}

#[test]
fn tcp_responses_use_the_request_connection() {
    let mut h = Harness::new();
    let text = invite("echo", "z9hG4bKm1", "call-13", true).replace("SIP/2.0/UDP", "SIP/2.0/TCP");
    let connection = Some(calls::sip_core::ConnectionId(7));
    let mut flow = flow(Transport::Tcp);
    flow.connection = connection;
    h.endpoint
        .handle_message(h.now, bytes::Bytes::from(text), flow);
    let mut out = Vec::new();
    while let Some(t) = h.endpoint.poll_transmit() {
        out.push(t);
    }
    assert_eq!(statuses(&out), [100, 180, 200]);
    assert!(
        out.iter()
            .all(|t| t.flow.connection == connection && t.flow.transport == Transport::Tcp)
    );
    assert!(header(&response(&out[2]), HeaderName::Contact).contains("transport=tcp"));
}

#[test]
fn bye_with_the_wrong_tag_or_an_old_cseq() {
    let mut h = Harness::new();
    let out = h.send(&invite("echo", "z9hG4bKn1", "call-14", true));
    let tag = to_tag(&response(&out[2]));
    h.send(&in_dialog("ACK", "echo", "z9hG4bKn2", "call-14", &tag, 1));
    let wrong = in_dialog("BYE", "echo", "z9hG4bKn3", "call-14", "not-our-tag", 2);
    assert_eq!(statuses(&h.send(&wrong)), [481]);
    let old = in_dialog("BYE", "echo", "z9hG4bKn4", "call-14", &tag, 1);
    assert_eq!(statuses(&h.send(&old)), [500]);
    assert_eq!(h.stats().dialogs, 1);
    let good = in_dialog("BYE", "echo", "z9hG4bKn5", "call-14", &tag, 3);
    assert_eq!(statuses(&h.send(&good)), [200]);
    assert_eq!(h.stats().dialogs, 0);
}

/// An in-dialog request carrying `sdp` as its offer.
fn with_sdp(request: &str, sdp: &str) -> String {
    request.replace(
        "Content-Length: 0\r\n\r\n",
        &format!(
            "Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{sdp}",
            sdp.len()
        ),
    )
}

fn o_version(sdp: &[u8]) -> u64 {
    let text = String::from_utf8_lossy(sdp);
    let o = text.lines().find(|l| l.starts_with("o=")).unwrap();
    o.split(' ').nth(2).unwrap().parse().unwrap()
}

#[test]
fn reinvite_answers_the_new_offer() {
    let mut h = Harness::new();
    let out = h.send(&invite("echo", "z9hG4bKo1", "call-15", true));
    let first = response(&out[2]);
    let tag = to_tag(&first);
    h.send(&in_dialog("ACK", "echo", "z9hG4bKo2", "call-15", &tag, 1));
    // Hold (RFC 3264 §8.4): the peer offers sendonly, we answer recvonly, new o= version.
    let hold = SDP.replace(
        "a=rtpmap:0 PCMU/8000\r\n",
        "a=rtpmap:0 PCMU/8000\r\na=sendonly\r\n",
    );
    let reinvite = with_sdp(
        &in_dialog("INVITE", "echo", "z9hG4bKo3", "call-15", &tag, 2),
        &hold,
    );
    let out = h.send(&reinvite);
    assert_eq!(statuses(&out), [100, 200]);
    let held = response(&out[1]);
    assert_eq!(to_tag(&held), tag);
    assert!(String::from_utf8_lossy(&held.body).contains("a=recvonly\r\n"));
    assert_eq!(o_version(&held.body), o_version(&first.body) + 1);
    h.send(&in_dialog("ACK", "echo", "z9hG4bKo4", "call-15", &tag, 2));
    // A re-INVITE without an offer gets our current description again.
    let out = h.send(&in_dialog(
        "INVITE",
        "echo",
        "z9hG4bKo5",
        "call-15",
        &tag,
        3,
    ));
    assert_eq!(response(&out[1]).body, held.body);
    h.send(&in_dialog("ACK", "echo", "z9hG4bKo6", "call-15", &tag, 3));
    assert!(h.advance(100 * T1).is_empty());
    assert_eq!(h.stats().dialogs, 1);
}

#[test]
fn bye_in_the_early_dialog_ends_the_invite_with_487() {
    let mut h = Harness::new();
    let out = h.send(&invite("ring", "z9hG4bKp1", "call-16", true));
    let tag = to_tag(&response(&out[1]));
    let out = h.send(&in_dialog("BYE", "ring", "z9hG4bKp2", "call-16", &tag, 2));
    // §15.1.2: 200 for the BYE, 487 for the INVITE.
    assert_eq!(statuses(&out), [200, 487]);
    assert_eq!(
        response(&out[1]).headers.cseq().unwrap().method,
        Method::Invite
    );
    // The caller ACKs the 487 on the INVITE's branch; then everything winds down.
    assert!(
        h.send(&in_dialog("ACK", "ring", "z9hG4bKp1", "call-16", &tag, 1))
            .is_empty()
    );
    h.advance(70 * T1);
    let stats = h.stats();
    assert_eq!((stats.transactions, stats.dialogs), (0, 0), "{stats:?}");
}

#[test]
fn cancelled_call_winds_down_to_nothing() {
    let mut h = Harness::new();
    let out = h.send(&invite("ring", "z9hG4bKq1", "call-17", true));
    let tag = to_tag(&response(&out[1]));
    let cancel = format!(
        "CANCEL sip:ring@{LOCAL} SIP/2.0\r\nVia: SIP/2.0/UDP {PEER};branch=z9hG4bKq1\r\n\
         Max-Forwards: 70\r\nFrom: Alice <sip:alice@{PEER}>;tag=alice1\r\nTo: <sip:ring@{LOCAL}>\r\n\
         Call-ID: call-17\r\nCSeq: 1 CANCEL\r\nContent-Length: 0\r\n\r\n"
    );
    assert_eq!(statuses(&h.send(&cancel)), [200, 487]);
    // The ACK for the 487 is absorbed by the INVITE transaction: no more 487s.
    assert!(
        h.send(&in_dialog("ACK", "ring", "z9hG4bKq1", "call-17", &tag, 1))
            .is_empty()
    );
    assert!(h.advance(70 * T1).is_empty());
    let stats = h.stats();
    assert_eq!((stats.transactions, stats.dialogs), (0, 0), "{stats:?}");
}

#[test]
fn record_route_is_echoed_and_becomes_the_route_set() {
    let mut h = Harness::new();
    let text = invite("echo", "z9hG4bKr1", "call-18", true).replace(
        "Max-Forwards: 70\r\n",
        "Max-Forwards: 70\r\nRecord-Route: <sip:p1.example.com;lr>, <sip:p2.example.com;lr>\r\n",
    );
    let out = h.send(&text);
    for r in [response(&out[1]), response(&out[2])] {
        let rr: Vec<_> = r.headers.values(&HeaderName::RecordRoute).collect();
        assert_eq!(
            rr,
            ["<sip:p1.example.com;lr>", "<sip:p2.example.com;lr>"],
            "{}",
            r.status
        );
    }
    // No ACK: the BYE at 64·T1 carries the route set as Route, in order (§12.2.1.1).
    let out = h.advance(65 * T1);
    let bye = out
        .iter()
        .find_map(|t| match Message::parse(t.payload.clone()).unwrap() {
            Message::Request(r) if r.method == Method::Bye => Some(r),
            _ => None,
        })
        .expect("a BYE");
    let routes: Vec<_> = bye.headers.values(&HeaderName::Route).collect();
    assert_eq!(
        routes,
        ["<sip:p1.example.com;lr>", "<sip:p2.example.com;lr>"]
    );
}

#[test]
fn a_forged_received_or_maddr_is_not_followed() {
    let mut h = Harness::new();
    let text = invite("busy", "z9hG4bKs1", "call-19", false).replace(
        &format!("Via: SIP/2.0/UDP {PEER};branch=z9hG4bKs1"),
        &format!(
            "Via: SIP/2.0/UDP {PEER};received=203.0.113.9;maddr=203.0.113.10;branch=z9hG4bKs1"
        ),
    );
    let out = h.send(&text);
    assert_eq!(statuses(&out), [100, 486]);
    h.advance(10 * T1);
    for (_, t) in &h.sent {
        assert_eq!(t.flow.remote, peer(), "only ever to the source");
    }
    // The Via we echo says where the request really came from.
    let via = response(&out[1]).headers.top_via().unwrap();
    assert_eq!(via.received(), Some("127.0.0.1".parse().unwrap()));
}

#[test]
fn merged_request_gets_482() {
    let mut h = Harness::new();
    assert_eq!(
        statuses(&h.send(&invite("ring", "z9hG4bKt1", "call-20", true))),
        [100, 180]
    );
    // The same request by another path: same From tag, Call-ID and CSeq, another branch.
    let out = h.send(&invite("ring", "z9hG4bKt2", "call-20", true));
    assert_eq!(statuses(&out), [100, 482]);
    assert_eq!(h.stats().dialogs, 1);
    // Once the first transaction is gone, the key is free again (no growth).
    h.advance(Duration::from_secs(100));
    let stats = h.stats();
    assert_eq!((stats.transactions, stats.dialogs), (0, 0), "{stats:?}");
}

#[test]
fn in_dialog_requests_get_the_same_checks() {
    let mut h = Harness::new();
    let out = h.send(&invite("echo", "z9hG4bKu1", "call-21", true));
    let tag = to_tag(&response(&out[2]));
    h.send(&in_dialog("ACK", "echo", "z9hG4bKu2", "call-21", &tag, 1));
    let with_require = in_dialog("INVITE", "echo", "z9hG4bKu3", "call-21", &tag, 2)
        .replace("Content-Length: 0", "Require: foo\r\nContent-Length: 0");
    let out = h.send(&with_require);
    assert_eq!(statuses(&out), [100, 420]);
    assert_eq!(header(&response(&out[1]), HeaderName::Unsupported), "foo");
    let bad_body = in_dialog("INVITE", "echo", "z9hG4bKu4", "call-21", &tag, 3).replace(
        "Content-Length: 0\r\n\r\n",
        "Content-Type: text/x-unknown\r\nContent-Length: 2\r\n\r\nhi",
    );
    assert_eq!(statuses(&h.send(&bad_body)), [100, 415]);
}

#[test]
fn a_call_that_never_ends_is_ended_at_max_call_duration() {
    // Without session timers: nothing but the duration cap ends the call.
    let mut config = calls::EngineConfig::default();
    config.endpoint.session_timer.enabled = false;
    let mut h = Harness::with_config(config);
    let out = h.send(&invite("echo", "z9hG4bKv1", "call-22", true));
    let tag = to_tag(&response(&out[2]));
    h.send(&in_dialog("ACK", "echo", "z9hG4bKv2", "call-22", &tag, 1));
    assert!(h.advance(Duration::from_secs(3599)).is_empty());
    let out = h.advance(Duration::from_secs(1));
    let bye = match Message::parse(out[0].payload.clone()).unwrap() {
        Message::Request(r) => r,
        _ => panic!("a BYE"),
    };
    assert_eq!(bye.method, Method::Bye);
    assert!(header_of(&bye, HeaderName::Reason).contains("Maximum call duration"));
    assert_eq!(h.stats().dialogs, 0);
}

fn header_of(r: &sip_message::Request, name: HeaderName) -> String {
    r.headers
        .get(&name)
        .map(|v| String::from_utf8_lossy(v).into_owned())
        .unwrap_or_default()
}

#[test]
fn advertised_address_is_what_peers_see() {
    let mut config = calls::EngineConfig::default();
    config.endpoint.advertised_address = Some("192.0.2.10".parse().unwrap());
    let mut h = Harness::with_config(config);
    let out = h.send(&invite("echo", "z9hG4bKw1", "call-23", true));
    let ok = response(&out[2]);
    assert_eq!(
        header(&ok, HeaderName::Contact),
        "<sip:echo@192.0.2.10:5060>"
    );
    assert!(String::from_utf8_lossy(&ok.body).contains("c=IN IP4 192.0.2.10\r\n"));
}

#[test]
fn trying_echoes_the_timestamp() {
    let mut h = Harness::new();
    let text = invite("ring", "z9hG4bKx1", "call-24", false).replace(
        "Max-Forwards: 70\r\n",
        "Max-Forwards: 70\r\nTimestamp: 54.2 0.1\r\n",
    );
    let out = h.send(&text);
    assert_eq!(
        header(&response(&out[0]), HeaderName::Timestamp),
        "54.2 0.1"
    );
}

/// RFC 4028 §9: to a peer without session-timer support, Tandem grants itself the
/// refresher role (refresher=uas, 1800 s). At half the interval it refreshes with a
/// re-INVITE carrying its last SDP (the peer's Allow lacks UPDATE); when the peer never
/// answers, the refresh times out (Timer B) and the call ends with BYE (§10).
#[test]
fn session_refresh_by_reinvite_and_bye_when_it_fails() {
    let mut h = Harness::new();
    let out = h.send(&invite("echo", "z9hG4bKw1", "call-23", true));
    let ok = response(&out[2]);
    assert_eq!(ok.status, 200);
    assert!(header(&ok, HeaderName::SessionExpires).starts_with("1800;refresher=uas"));
    let tag = to_tag(&ok);
    h.send(&in_dialog("ACK", "echo", "z9hG4bKw2", "call-23", &tag, 1));
    assert!(h.advance(Duration::from_secs(899)).is_empty());
    let out = h.advance(Duration::from_secs(1));
    let refresh = match Message::parse(out[0].payload.clone()).unwrap() {
        Message::Request(r) => r,
        _ => panic!("a re-INVITE"),
    };
    assert_eq!(refresh.method, Method::Invite);
    assert!(header_of(&refresh, HeaderName::SessionExpires).contains("refresher=uac"));
    assert!(header_of(&refresh, HeaderName::ContentType).contains("application/sdp"));
    // Nobody answers: Timer B (64·T1) fails the refresh and the dialog is ended.
    let out = h.advance(Duration::from_secs(33));
    let byes = out
        .iter()
        .filter_map(|t| match Message::parse(t.payload.clone()).unwrap() {
            Message::Request(r) if r.method == Method::Bye => Some(top_branch(&r)),
            _ => None,
        })
        .collect::<std::collections::HashSet<_>>();
    assert_eq!(byes.len(), 1, "one BYE (and its retransmissions)");
    assert_eq!(h.stats().dialogs, 0);
}

fn top_branch(r: &sip_message::Request) -> Vec<u8> {
    r.headers.top_via().unwrap().branch().unwrap().to_vec()
}
