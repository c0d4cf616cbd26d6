//! INVITE sessions between user agents on a virtual network and clock.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod support;

use sip_dialog::{Body, EndCause, Event, Reply, Side};
use sip_message::{HeaderName, Message, Method};
use std::time::Duration;
use support::*;

/// A → B: ring, answer, talk, BYE; nothing is left afterwards.
#[test]
fn basic_call_and_bye_leave_nothing_behind() {
    let mut sim = Sim::new(2);
    let a = sim.call(0, 1);
    sim.run_for(Duration::from_millis(50));
    let (b, tx) = sim.incoming(1);
    let now = sim.now;
    sim.ua(1).respond(now, &tx, Reply::new(180)).unwrap();
    sim.run_for(Duration::from_millis(50));
    assert!(
        sim.events(0)
            .iter()
            .any(|e| matches!(e, Event::Provisional { response, .. } if response.status == 180))
    );
    let now = sim.now;
    sim.ua(1)
        .respond(now, &tx, Reply::new(200).with_body(Body::sdp(SDP_B)))
        .unwrap();
    sim.run_for(Duration::from_millis(100));
    let ea = sim.events(0);
    let eb = sim.events(1);
    assert!(ea.iter().any(|e| matches!(e, Event::Established { session, body: Some(body), response: Some(ok) } if ok.status == 200 && *session == a && body.data == SDP_B)));
    assert_eq!(established(&eb), 1);
    // The UAS has no 2xx to report.
    assert!(
        eb.iter()
            .any(|e| matches!(e, Event::Established { response: None, .. }))
    );
    // The ACK stopped B's 2xx retransmissions: exactly one 200 went out.
    assert_eq!(
        sim.sent_statuses(1).iter().filter(|s| **s == 200).count(),
        1
    );

    let now = sim.now;
    sim.ua(0)
        .hangup(now, a, Some("SIP;cause=16;text=\"Normal call clearing\""))
        .unwrap();
    sim.run_for(Duration::from_millis(100));
    let ta = terminated(&sim.events(0));
    let tb = terminated(&sim.events(1));
    assert_eq!(ta.len(), 1);
    assert_eq!((ta[0].by, ta[0].cause), (Side::Local, EndCause::Bye));
    assert_eq!((tb[0].by, tb[0].cause), (Side::Remote, EndCause::Bye));
    // RFC 3326: the Reason we sent is surfaced on the other side.
    assert_eq!(
        tb[0].reason.as_deref(),
        Some(&b"SIP;cause=16;text=\"Normal call clearing\""[..])
    );
    let _ = b;
    // Timer K/J drain: then nothing is left.
    sim.run_for(Duration::from_secs(40));
    for i in 0..2 {
        let s = sim.ua(i).stats();
        assert_eq!((s.transactions, s.sessions), (0, 0), "peer {i}: {s:?}");
    }
}

/// RFC 3261 §13.3.1.4: a 2xx never acknowledged is retransmitted (T1 doubling to T2)
/// and the UAS sends BYE 64·T1 (32 s) after it.
#[test]
fn unacknowledged_2xx_is_retransmitted_then_byed_after_32_s() {
    let mut sim = Sim::new(2);
    sim.filter = Some(Box::new(
        |m, _, _| !matches!(m, Message::Request(r) if r.method == Method::Ack),
    ));
    let a = sim.call(0, 1);
    sim.run_for(Duration::from_millis(50));
    let (_, tx) = sim.incoming(1);
    let answered_at = sim.now;
    sim.ua(1)
        .respond(
            answered_at,
            &tx,
            Reply::new(200).with_body(Body::sdp(SDP_B)),
        )
        .unwrap();
    sim.run_for(Duration::from_secs(31));
    assert!(
        terminated(&sim.peers[1].events).is_empty(),
        "no BYE before 32 s"
    );
    sim.run_for(Duration::from_secs(2));
    let tb = terminated(&sim.events(1));
    assert_eq!(tb.len(), 1);
    assert_eq!((tb[0].by, tb[0].cause), (Side::Local, EndCause::AckTimeout));
    // 0.5, 1, 2, 4, 4, 4... until 32 s: 1 + 10 retransmissions of the 200.
    let oks = sim.sent_statuses(1).iter().filter(|s| **s == 200).count();
    assert_eq!(oks, 11, "the 2xx and its retransmissions");
    assert_eq!(sim.sent_requests(1, Method::Bye), 1);
    // A got every retransmission, re-sent its ACK each time, and then got the BYE.
    assert_eq!(sim.sent_requests(0, Method::Ack), 11);
    let ta = terminated(&sim.events(0));
    assert_eq!((ta[0].by, ta[0].cause), (Side::Remote, EndCause::Bye));
    let _ = a;
}

/// A lost ACK: the UAS retransmits its 2xx, the UAC answers it with the same ACK again
/// (RFC 3261 §13.2.2.4), and the call is confirmed on both sides.
#[test]
fn retransmitted_2xx_gets_the_ack_again() {
    let mut sim = Sim::new(2);
    let mut acks = 0;
    sim.filter = Some(Box::new(move |m, _, _| {
        if matches!(m, Message::Request(r) if r.method == Method::Ack) {
            acks += 1;
            return acks > 1;
        }
        true
    }));
    sim.call(0, 1);
    sim.run_for(Duration::from_millis(50));
    let (_, tx) = sim.incoming(1);
    let now = sim.now;
    sim.ua(1)
        .respond(now, &tx, Reply::new(200).with_body(Body::sdp(SDP_B)))
        .unwrap();
    sim.run_for(Duration::from_secs(2));
    assert_eq!(established(&sim.events(0)), 1);
    assert_eq!(established(&sim.events(1)), 1);
    assert_eq!(sim.sent_requests(0, Method::Ack), 2);
    let acks: Vec<_> = sim.peers[0]
        .sent
        .iter()
        .filter_map(|m| match m {
            Message::Request(r) if r.method == Method::Ack => {
                Some(r.headers.top_via().unwrap().branch().unwrap().to_vec())
            }
            _ => None,
        })
        .collect();
    assert_eq!(acks[0], acks[1], "the same ACK is re-sent");
}

/// RFC 3261 §13.2.2.4: the INVITE forks to B and C; both ring (two early dialogs), B
/// answers first; C's later 2xx is acknowledged and then ended with BYE.
#[test]
fn forked_second_2xx_gets_ack_then_bye() {
    let mut sim = Sim::new(3);
    // A "forking proxy": every request A sends to B is also delivered to C.
    let a = sim.call(0, 1);
    let invite = match sim.peers[0].sent.last().unwrap() {
        Message::Request(r) => r.clone(),
        _ => panic!(),
    };
    let c_flow = sim.flow(0, 2);
    let now = sim.now;
    sim.ua(2).handle_message(
        now,
        invite.to_bytes(),
        sip_transaction::Flow {
            local: c_flow.remote,
            remote: c_flow.local,
            ..c_flow
        },
    );
    sim.run_for(Duration::from_millis(50));
    let (_, tx_b) = sim.incoming(1);
    let (_, tx_c) = sim.incoming(2);
    let now = sim.now;
    sim.ua(1).respond(now, &tx_b, Reply::new(180)).unwrap();
    sim.ua(2).respond(now, &tx_c, Reply::new(180)).unwrap();
    sim.run_for(Duration::from_millis(50));
    let tags: std::collections::HashSet<_> = sim
        .events(0)
        .iter()
        .filter_map(|e| match e {
            Event::Provisional { response, .. } => {
                response.headers.to().unwrap().tag().map(<[u8]>::to_vec)
            }
            _ => None,
        })
        .collect();
    assert_eq!(tags.len(), 2, "two early dialogs");
    let now = sim.now;
    sim.ua(1)
        .respond(now, &tx_b, Reply::new(200).with_body(Body::sdp(SDP_B)))
        .unwrap();
    sim.run_for(Duration::from_millis(50));
    let now = sim.now;
    sim.ua(2)
        .respond(now, &tx_c, Reply::new(200).with_body(Body::sdp(SDP_B)))
        .unwrap();
    sim.run_for(Duration::from_secs(1));
    let ea = sim.events(0);
    assert_eq!(established(&ea), 1, "one answer wins");
    assert!(terminated(&ea).is_empty(), "A's call goes on with B");
    // C was acknowledged, then got BYE with a Reason.
    let ec = sim.events(2);
    assert_eq!(established(&ec), 1);
    let tc = terminated(&ec);
    assert_eq!((tc[0].by, tc[0].cause), (Side::Remote, EndCause::Bye));
    assert!(String::from_utf8_lossy(tc[0].reason.as_deref().unwrap()).contains("cause=200"));
    assert!(terminated(&sim.events(1)).is_empty(), "B stays up");
    let _ = a;
}

/// CANCEL of a ringing call: 200 for the CANCEL, 487 for the INVITE; both sides see
/// Cancelled and the Reason.
#[test]
fn cancel_ends_a_ringing_call_with_487() {
    let mut sim = Sim::new(2);
    let a = sim.call(0, 1);
    sim.run_for(Duration::from_millis(50));
    let (_, tx) = sim.incoming(1);
    let now = sim.now;
    sim.ua(1).respond(now, &tx, Reply::new(180)).unwrap();
    sim.run_for(Duration::from_millis(50));
    let now = sim.now;
    sim.ua(0)
        .hangup(now, a, Some("SIP;cause=487;text=\"Caller gave up\""))
        .unwrap();
    sim.run_for(Duration::from_millis(200));
    let ta = terminated(&sim.events(0));
    let tb = terminated(&sim.events(1));
    assert_eq!((ta[0].by, ta[0].cause), (Side::Local, EndCause::Cancelled));
    assert_eq!((tb[0].by, tb[0].cause), (Side::Remote, EndCause::Cancelled));
    assert!(tb[0].reason.is_some());
    assert!(sim.sent_statuses(1).contains(&487));
}

/// §9.1: a CANCEL asked for before any provisional waits for one.
#[test]
fn cancel_waits_for_a_provisional() {
    let mut sim = Sim::new(2);
    // The 100 Trying is lost: nothing provisional has arrived yet.
    sim.filter = Some(Box::new(
        |m, _, _| !matches!(m, Message::Response(r) if r.status == 100),
    ));
    let a = sim.call(0, 1);
    let now = sim.now;
    sim.ua(0).hangup(now, a, None).unwrap();
    sim.run_for(Duration::from_millis(50));
    assert_eq!(
        sim.sent_requests(0, Method::Cancel),
        0,
        "no CANCEL before a 1xx"
    );
    let (_, tx) = sim.incoming(1);
    let now = sim.now;
    sim.ua(1).respond(now, &tx, Reply::new(183)).unwrap();
    sim.run_for(Duration::from_millis(100));
    assert_eq!(sim.sent_requests(0, Method::Cancel), 1);
    let ta = terminated(&sim.events(0));
    assert_eq!(ta[0].cause, EndCause::Cancelled);
}

fn established_call(sim: &mut Sim) -> (sip_dialog::SessionId, sip_dialog::SessionId) {
    let a = sim.call(0, 1);
    sim.run_for(Duration::from_millis(50));
    let (b, tx) = sim.incoming(1);
    let now = sim.now;
    sim.ua(1)
        .respond(now, &tx, Reply::new(200).with_body(Body::sdp(SDP_B)))
        .unwrap();
    sim.run_for(Duration::from_millis(100));
    assert_eq!(established(&sim.events(0)), 1);
    assert_eq!(established(&sim.events(1)), 1);
    (a, b)
}

/// 64·T1 after the 2xx was acknowledged (RFC 6026 Timer M/L: no retransmission of it can
/// come) a session keeps only what it still reads of its INVITE, and the ACK it kept for
/// 2xx retransmissions is gone: a stray copy of the 2xx gets no ACK, while a retransmitted
/// 2xx before then did. The session goes on: a re-INVITE and its ACK, then BYE.
#[test]
fn a_settled_session_keeps_a_slim_invite_and_no_ack() {
    let mut sim = Sim::new(2);
    let (a, b) = established_call(&mut sim);
    let full_a = sim.ua(0).invite_request(a).unwrap().clone();
    let full_b = sim.ua(1).invite_request(b).unwrap().clone();
    assert!(full_a.headers.get(&HeaderName::Via).is_some());
    assert!(
        !full_b.body.is_empty(),
        "the UAS keeps the INVITE as received"
    );
    let ok = sim.peers[1]
        .sent
        .iter()
        .find_map(|m| match m {
            Message::Response(r) if r.status == 200 => Some(r.clone()),
            _ => None,
        })
        .unwrap();
    let flow = sim.flow(1, 0);
    let inbound = sip_transaction::Flow {
        local: flow.remote,
        remote: flow.local,
        ..flow
    };
    // Within Timer M a copy of the 2xx is acknowledged again (§13.2.2.4).
    sim.run_for(Duration::from_secs(20));
    let now = sim.now;
    sim.ua(0).handle_message(now, ok.to_bytes(), inbound);
    sim.run_for(Duration::from_millis(10));
    assert_eq!(sim.sent_requests(0, Method::Ack), 2);

    sim.run_for(Duration::from_secs(20));
    for (ua, session, full) in [(0, a, &full_a), (1, b, &full_b)] {
        let slim = sim.ua(ua).invite_request(session).unwrap().clone();
        assert_eq!(slim.method, Method::Invite);
        assert_eq!(slim.uri, full.uri);
        assert!(slim.body.is_empty());
        let names: Vec<HeaderName> = slim.headers.iter().map(|h| h.name.clone()).collect();
        assert_eq!(names, [HeaderName::From, HeaderName::To]);
        for name in names {
            assert_eq!(slim.headers.get(&name), full.headers.get(&name), "{name:?}");
        }
    }
    // After Timer M the copy is stray: no ACK (the kept one is freed).
    let now = sim.now;
    sim.ua(0).handle_message(now, ok.to_bytes(), inbound);
    sim.run_for(Duration::from_millis(10));
    assert_eq!(sim.sent_requests(0, Method::Ack), 2);

    let now = sim.now;
    sim.ua(0).reinvite(now, a, Some(Body::sdp(SDP_A))).unwrap();
    sim.run_for(Duration::from_millis(50));
    let (_, tx, _) = sim.modify(1).expect("B sees the re-INVITE");
    let now = sim.now;
    sim.ua(1)
        .respond(now, &tx, Reply::new(200).with_body(Body::sdp(SDP_B)))
        .unwrap();
    sim.run_for(Duration::from_millis(100));
    assert_eq!(sim.sent_requests(0, Method::Ack), 3);
    let now = sim.now;
    sim.ua(1).hangup(now, b, None).unwrap();
    sim.run_for(Duration::from_secs(1));
    assert_eq!(terminated(&sim.events(0)).len(), 1);
    assert_eq!(sim.ua(0).stats().sessions, 0);
    assert_eq!(sim.ua(1).stats().sessions, 0);
}

/// re-INVITE and UPDATE (RFC 3311) from either side, answered by the other.
#[test]
fn reinvite_and_update_change_the_session() {
    let mut sim = Sim::new(2);
    let (a, b) = established_call(&mut sim);
    let hold = SDP_A.replace("a=sendrecv", "a=sendonly");
    let now = sim.now;
    sim.ua(0)
        .reinvite(now, a, Some(Body::sdp(hold.clone())))
        .unwrap();
    sim.run_for(Duration::from_millis(50));
    let (session, tx, request) = sim.modify(1).expect("B sees the re-INVITE");
    assert_eq!(session, b);
    assert_eq!(request.method, Method::Invite);
    assert_eq!(&request.body[..], hold.as_bytes());
    let now = sim.now;
    sim.ua(1)
        .respond(
            now,
            &tx,
            Reply::new(200).with_body(Body::sdp(SDP_B.replace("sendrecv", "recvonly"))),
        )
        .unwrap();
    sim.run_for(Duration::from_millis(100));
    assert!(sim.events(0).iter().any(|e| matches!(e, Event::ModifyCompleted { method: Method::Invite, response, .. } if response.status == 200)));
    // The re-INVITE's 2xx was acknowledged: no retransmissions, no BYE after 32 s.
    assert_eq!(sim.sent_requests(0, Method::Ack), 2);

    // B sends UPDATE.
    let now = sim.now;
    sim.ua(1).update(now, b, Some(Body::sdp(SDP_B))).unwrap();
    sim.run_for(Duration::from_millis(50));
    let (session, tx, request) = sim.modify(0).expect("A sees the UPDATE");
    assert_eq!((session, request.method.clone()), (a, Method::Update));
    let now = sim.now;
    sim.ua(0)
        .respond(now, &tx, Reply::new(200).with_body(Body::sdp(SDP_A)))
        .unwrap();
    sim.run_for(Duration::from_secs(40));
    assert!(sim.events(1).iter().any(|e| matches!(e, Event::ModifyCompleted { method: Method::Update, response, .. } if response.status == 200)));
    assert!(terminated(&sim.events(0)).is_empty());
    assert!(terminated(&sim.events(1)).is_empty());
    assert_eq!(sim.ua(0).stats().sessions, 1);
}

/// Glare (RFC 3261 §14.1): both sides re-INVITE at once; both get 491 and retry after
/// a random wait (2.1–4 s for the Call-ID owner, 0–2 s for the other), and both
/// re-INVITEs then succeed.
#[test]
fn glare_gets_491_and_a_randomized_retry() {
    let mut sim = Sim::new(2);
    let (a, b) = established_call(&mut sim);
    let now = sim.now;
    sim.ua(0).reinvite(now, a, Some(Body::sdp(SDP_A))).unwrap();
    sim.ua(1).reinvite(now, b, Some(Body::sdp(SDP_B))).unwrap();
    sim.run_for(Duration::from_millis(100));
    assert!(sim.sent_statuses(0).contains(&491));
    assert!(sim.sent_statuses(1).contains(&491));
    assert!(
        sim.modify(0).is_none() && sim.modify(1).is_none(),
        "no glare reaches the app"
    );
    // B (not the Call-ID owner) retries within 2 s; A after 2.1 s.
    sim.run_for(Duration::from_millis(2050));
    let (_, tx, _) = sim.modify(0).expect("B's retry reached A");
    let now = sim.now;
    sim.ua(0)
        .respond(now, &tx, Reply::new(200).with_body(Body::sdp(SDP_A)))
        .unwrap();
    sim.run_for(Duration::from_secs(2));
    let (_, tx, _) = sim.modify(1).expect("A's retry reached B");
    let now = sim.now;
    sim.ua(1)
        .respond(now, &tx, Reply::new(200).with_body(Body::sdp(SDP_B)))
        .unwrap();
    sim.run_for(Duration::from_secs(1));
    for i in 0..2 {
        let done = sim
            .events(i)
            .iter()
            .filter(
                |e| matches!(e, Event::ModifyCompleted { response, .. } if response.status == 200),
            )
            .count();
        assert_eq!(done, 1, "peer {i} completed its re-INVITE");
    }
}

/// Requests for a dialog that does not exist get 481 (RFC 3261 §12.2.2).
#[test]
fn unknown_dialog_gets_481() {
    let mut sim = Sim::new(2);
    let (a, _b) = established_call(&mut sim);
    // B forgets the call (as after a restart): A's BYE meets no dialog.
    let mut fresh = Sim::new(2);
    std::mem::swap(&mut sim.peers[1].ua, &mut fresh.peers[1].ua);
    let before = sim.sent_statuses(1).len();
    let now = sim.now;
    sim.ua(0)
        .request(now, a, Method::Info, vec![], None)
        .unwrap();
    sim.run_for(Duration::from_millis(100));
    // The INFO, then the BYE that followed it, each got 481.
    assert_eq!(sim.sent_statuses(1)[before..], [481, 481]);
    // A's INFO got 481: §12.2.1.2, the dialog is over, A sends BYE.
    let ea = sim.events(0);
    assert!(
        ea.iter()
            .any(|e| matches!(e, Event::Response { status: 481, .. }))
    );
    let ta = terminated(&ea);
    assert_eq!(ta[0].cause, EndCause::DialogFailed { status: 481 });
    assert_eq!(sim.sent_requests(0, Method::Bye), 1);
    let _ = HeaderName::Via;
}

/// §9.1: a 100 Trying is a provisional too: a CANCEL waiting for one goes out on it,
/// and a callee that never sends anything else is still cancelled (no leak).
#[test]
fn cancel_goes_out_on_a_100() {
    let mut sim = Sim::new(2);
    let a = sim.call(0, 1);
    let now = sim.now;
    sim.ua(0).hangup(now, a, None).unwrap();
    sim.run_for(Duration::from_millis(100));
    assert_eq!(sim.sent_requests(0, Method::Cancel), 1);
    let ta = terminated(&sim.events(0));
    assert_eq!(ta[0].cause, EndCause::Cancelled);
    sim.run_for(Duration::from_secs(40));
    assert_eq!(sim.ua(0).stats().sessions, 0);
}

/// The callee answers while our CANCEL is on its way: the 2xx is acknowledged and the
/// call ended with BYE; the session is gone, reported once.
#[test]
fn answer_crossing_a_cancel_is_acked_byed_and_ended_once() {
    let mut sim = Sim::new(2);
    let a = sim.call(0, 1);
    sim.run_for(Duration::from_millis(50));
    let (_, tx) = sim.incoming(1);
    let now = sim.now;
    sim.ua(1).respond(now, &tx, Reply::new(180)).unwrap();
    sim.run_for(Duration::from_millis(50));
    // Both at once: A cancels while B answers.
    let now = sim.now;
    sim.ua(0).hangup(now, a, None).unwrap();
    sim.ua(1)
        .respond(now, &tx, Reply::new(200).with_body(Body::sdp(SDP_B)))
        .unwrap();
    sim.run_for(Duration::from_secs(5));
    assert_eq!(sim.sent_requests(0, Method::Ack), 1);
    assert_eq!(sim.sent_requests(0, Method::Bye), 1);
    let ta = terminated(&sim.events(0));
    assert_eq!(ta.len(), 1, "{ta:?}");
    sim.run_for(Duration::from_secs(3600));
    assert_eq!(terminated(&sim.events(0)).len(), 0, "no second ending");
    assert_eq!(sim.ua(0).stats().sessions, 0);
    assert_eq!(sim.ua(1).stats().sessions, 0);
}

/// RFC 3261 §15: hanging up while our 2xx awaits its ACK waits for the ACK, then BYE.
#[test]
fn hangup_before_the_ack_waits_for_it() {
    let mut sim = Sim::new(2);
    sim.call(0, 1);
    sim.run_for(Duration::from_millis(50));
    let (b, tx) = sim.incoming(1);
    let now = sim.now;
    sim.ua(1)
        .respond(now, &tx, Reply::new(200).with_body(Body::sdp(SDP_B)))
        .unwrap();
    sim.ua(1).hangup(now, b, None).unwrap();
    sim.collect();
    assert_eq!(
        sim.sent_requests(1, Method::Bye),
        0,
        "no BYE before the ACK"
    );
    sim.run_for(Duration::from_millis(200));
    assert_eq!(sim.sent_requests(1, Method::Bye), 1);
    let ta = terminated(&sim.events(0));
    assert_eq!(ta[0].cause, EndCause::Bye);
}

/// §15.1.2: a BYE while the peer's re-INVITE is still unanswered ends that re-INVITE
/// with 487, so no transaction is left behind on either side.
#[test]
fn bye_answers_a_pending_reinvite_with_487() {
    let mut sim = Sim::new(2);
    let (a, b) = established_call(&mut sim);
    let now = sim.now;
    sim.ua(0).reinvite(now, a, Some(Body::sdp(SDP_A))).unwrap();
    sim.run_for(Duration::from_millis(50));
    assert!(sim.modify(1).is_some(), "B holds the re-INVITE unanswered");
    let now = sim.now;
    sim.ua(1).hangup(now, b, None).unwrap();
    sim.run_for(Duration::from_secs(40));
    assert!(sim.sent_statuses(1).contains(&487));
    for i in 0..2 {
        let s = sim.ua(i).stats();
        assert_eq!((s.transactions, s.sessions), (0, 0), "peer {i}: {s:?}");
    }
}

/// A peer refreshing again and again leaves one session-timer deadline, not one per
/// refresh (no growth per message).
#[test]
fn many_refreshes_leave_one_timer() {
    let mut sim = Sim::new(2);
    let (a, _b) = established_call(&mut sim);
    for _ in 0..200 {
        let now = sim.now;
        sim.ua(0).update(now, a, None).unwrap();
        sim.run_for(Duration::from_millis(100));
    }
    sim.events(0);
    for i in 0..2 {
        let timers = sim.ua(i).stats().timers;
        assert!(
            timers <= 2 * (6 + 64),
            "peer {i}: {timers} deadlines after 200 refreshes"
        );
    }
    // The refresher (A) refreshes every 900 s, and nothing else happens.
    sim.run_for(Duration::from_secs(3600));
    let updates_after = sim.sent_requests(0, Method::Update);
    assert!(updates_after <= 200 + 5, "{updates_after}");
    assert!(terminated(&sim.events(0)).is_empty());
}
