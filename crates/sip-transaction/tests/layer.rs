//! The transaction layer on a virtual clock: schedules, matching, ACK
//! generation, CANCEL, RFC 2543 peers, response routing, errors.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::type_complexity
)]

mod common;

use common::*;
use sip_message::{HeaderName, Method, Transport};
use sip_transaction::{
    Error, Flow, RequestOutcome, ResponseOutcome, State, Timer, TransactionEvent, TransactionLayer,
    TransactionStats, Transmit,
};
use std::time::{Duration, Instant};

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// Jumps from deadline to deadline until `until` (offset from `start`),
/// collecting (offset, transmits) and all events.
fn run(
    layer: &mut TransactionLayer,
    start: Instant,
    until: Duration,
) -> (Vec<(Duration, Transmit)>, Vec<(Duration, TransactionEvent)>) {
    let mut tx = Vec::new();
    let mut ev = Vec::new();
    while let Some(at) = layer.poll_timeout() {
        if at > start + until {
            break;
        }
        layer.handle_timeout(at);
        tx.extend(drain_transmits(layer).into_iter().map(|t| (at - start, t)));
        ev.extend(drain_events(layer).into_iter().map(|e| (at - start, e)));
    }
    (tx, ev)
}

fn offsets(tx: &[(Duration, Transmit)]) -> Vec<Duration> {
    tx.iter().map(|(d, _)| *d).collect()
}

fn msv(v: &[u64]) -> Vec<Duration> {
    v.iter().map(|&n| ms(n)).collect()
}

// ---------------------------------------------------------------- client INVITE

#[test]
fn client_invite_udp_timer_a_doubles_then_timer_b() {
    let start = Instant::now();
    let mut l = TransactionLayer::default();
    let req = request(Transport::Udp, "INVITE", "z9hG4bK-a", "c1", 1);
    let key = l
        .send_request(start, req.clone(), to_uas(Transport::Udp))
        .unwrap();
    let first = drain_transmits(&mut l);
    assert_eq!(first.len(), 1);
    assert_eq!(first[0].flow, to_uas(Transport::Udp));
    assert_eq!(as_request(&first[0]), req);
    assert_eq!(l.state(&key), Some(State::Calling));
    assert_eq!(l.stats().client_invite, 1);

    let (tx, ev) = run(&mut l, start, ms(60_000));
    assert_eq!(offsets(&tx), msv(&[500, 1500, 3500, 7500, 15500, 31500]));
    // Retransmissions are the same bytes.
    assert!(tx.iter().all(|(_, t)| t.payload == first[0].payload));
    assert_eq!(
        ev,
        vec![
            (
                ms(32_000),
                TransactionEvent::Timeout {
                    key: key.clone(),
                    timer: Timer::B
                }
            ),
            (
                ms(32_000),
                TransactionEvent::Terminated { key: key.clone() }
            ),
        ]
    );
    assert!(l.is_empty());
    // Nothing alive; the six re-sends counted.
    assert_eq!(
        l.stats(),
        TransactionStats {
            retransmissions: 6,
            ..TransactionStats::default()
        }
    );
}

#[test]
fn client_invite_tcp_no_retransmissions_timer_b() {
    let start = Instant::now();
    let mut l = TransactionLayer::default();
    let req = request(Transport::Tcp, "INVITE", "z9hG4bK-a", "c1", 1);
    let key = l.send_request(start, req, to_uas(Transport::Tcp)).unwrap();
    assert_eq!(drain_transmits(&mut l).len(), 1);
    assert_eq!(l.timer(&key, Timer::A), None);
    let (tx, ev) = run(&mut l, start, ms(60_000));
    assert!(tx.is_empty());
    assert_eq!(
        ev[0],
        (
            ms(32_000),
            TransactionEvent::Timeout {
                key,
                timer: Timer::B
            }
        )
    );
    assert!(l.is_empty());
}

#[test]
fn client_invite_non_2xx_acked_with_rfc3261_headers() {
    let start = Instant::now();
    let mut l = TransactionLayer::default();
    // Two Vias: the ACK must carry only the top one (§17.1.1.3).
    let mut req = request(Transport::Udp, "INVITE", "z9hG4bK-inv", "call-ack", 7);
    req.headers.push(
        HeaderName::Via,
        "SIP/2.0/UDP 198.51.100.9;branch=z9hG4bK-below",
    );
    let key = l
        .send_request(start, req.clone(), to_uas(Transport::Udp))
        .unwrap();
    drain_transmits(&mut l);

    let t = start + ms(100);
    let ringing = response(&req, 180, Some("b7"));
    assert_eq!(
        l.handle_response(t, ringing.clone(), from_uac(Transport::Udp)),
        ResponseOutcome::Matched { key: key.clone() }
    );
    assert_eq!(l.state(&key), Some(State::Proceeding));
    assert_eq!(
        drain_events(&mut l),
        vec![TransactionEvent::Response {
            key: key.clone(),
            response: ringing
        }]
    );
    assert_eq!(
        l.timer(&key, Timer::A),
        None,
        "no retransmission once Proceeding"
    );

    let t = start + ms(300);
    let busy = response(&req, 486, Some("b7"));
    assert_eq!(
        l.handle_response(t, busy.clone(), from_uac(Transport::Udp)),
        ResponseOutcome::Matched { key: key.clone() }
    );
    assert_eq!(l.state(&key), Some(State::Completed));
    let acks = drain_transmits(&mut l);
    assert_eq!(acks.len(), 1);
    assert_eq!(acks[0].flow, to_uas(Transport::Udp));
    let ack = as_request(&acks[0]);
    assert_eq!(ack.method, Method::Ack);
    assert_eq!(ack.uri, req.uri);
    let vias: Vec<_> = ack.headers.get_all(&HeaderName::Via).cloned().collect();
    assert_eq!(vias.len(), 1);
    assert_eq!(
        ack.headers.top_via().unwrap(),
        req.headers.top_via().unwrap()
    );
    assert_eq!(
        ack.headers.get(&HeaderName::From),
        req.headers.get(&HeaderName::From)
    );
    assert_eq!(
        ack.headers.get(&HeaderName::To),
        busy.headers.get(&HeaderName::To)
    );
    assert_eq!(ack.headers.to().unwrap().tag(), Some(&b"b7"[..]));
    assert_eq!(
        ack.headers.get(&HeaderName::CallId),
        req.headers.get(&HeaderName::CallId)
    );
    let cseq = ack.headers.cseq().unwrap();
    assert_eq!((cseq.seq, cseq.method), (7, Method::Ack));
    assert_eq!(
        ack.headers.get_all(&HeaderName::Route).collect::<Vec<_>>(),
        req.headers.get_all(&HeaderName::Route).collect::<Vec<_>>()
    );
    assert!(ack.body.is_empty());
    assert_eq!(
        drain_events(&mut l),
        vec![TransactionEvent::Response {
            key: key.clone(),
            response: busy.clone()
        }]
    );

    // A retransmitted 486 re-sends the same ACK and is not passed up.
    assert_eq!(
        l.handle_response(t + ms(500), busy, from_uac(Transport::Udp)),
        ResponseOutcome::Absorbed { key: key.clone() }
    );
    let again = drain_transmits(&mut l);
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].payload, acks[0].payload);
    assert!(drain_events(&mut l).is_empty());

    // Timer D: 32 s over UDP.
    assert_eq!(l.timer(&key, Timer::D), Some(t + ms(32_000)));
    l.handle_timeout(t + ms(31_999));
    assert_eq!(l.len(), 1);
    l.handle_timeout(t + ms(32_000));
    assert!(l.is_empty());
    assert_eq!(
        drain_events(&mut l),
        vec![TransactionEvent::Terminated { key }]
    );
}

#[test]
fn client_invite_timer_d_is_zero_over_tcp() {
    let start = Instant::now();
    let mut l = TransactionLayer::default();
    let req = request(Transport::Tcp, "INVITE", "z9hG4bK-t", "c", 1);
    let key = l
        .send_request(start, req.clone(), to_uas(Transport::Tcp))
        .unwrap();
    drain_transmits(&mut l);
    let r = l.handle_response(
        start + ms(50),
        response(&req, 603, Some("x")),
        from_uac(Transport::Tcp),
    );
    assert_eq!(r, ResponseOutcome::Matched { key: key.clone() });
    // ACK sent, and the transaction is gone at once.
    let acks = drain_transmits(&mut l);
    assert_eq!(acks.len(), 1);
    assert_eq!(as_request(&acks[0]).method, Method::Ack);
    assert!(l.is_empty());
    let ev = drain_events(&mut l);
    assert!(matches!(ev[0], TransactionEvent::Response { .. }));
    assert_eq!(ev[1], TransactionEvent::Terminated { key });
}

#[test]
fn client_invite_2xx_accepted_passes_retransmissions_until_timer_m() {
    let start = Instant::now();
    let mut l = TransactionLayer::default();
    let req = request(Transport::Udp, "INVITE", "z9hG4bK-ok", "c", 1);
    let key = l
        .send_request(start, req.clone(), to_uas(Transport::Udp))
        .unwrap();
    drain_transmits(&mut l);
    let ok = response(&req, 200, Some("t"));
    let t = start + ms(200);
    assert_eq!(
        l.handle_response(t, ok.clone(), from_uac(Transport::Udp)),
        ResponseOutcome::Matched { key: key.clone() }
    );
    assert_eq!(l.state(&key), Some(State::Accepted));
    assert!(
        drain_transmits(&mut l).is_empty(),
        "no ACK for a 2xx from the transaction"
    );
    assert_eq!(l.timer(&key, Timer::M), Some(t + ms(32_000)));
    // RFC 6026: a retransmitted 2xx goes to the TU too.
    assert_eq!(
        l.handle_response(t + ms(500), ok.clone(), from_uac(Transport::Udp)),
        ResponseOutcome::Matched { key: key.clone() }
    );
    assert_eq!(drain_events(&mut l).len(), 2);
    l.handle_timeout(t + ms(32_000));
    assert!(l.is_empty());
    // After Timer M: stray, for the dialog layer.
    assert_eq!(
        l.handle_response(t + ms(33_000), ok.clone(), from_uac(Transport::Udp)),
        ResponseOutcome::Stray(ok)
    );
}

// ---------------------------------------------------------------- client non-INVITE

#[test]
fn client_non_invite_udp_timer_e_capped_then_timer_f() {
    let start = Instant::now();
    let mut l = TransactionLayer::default();
    let req = request(Transport::Udp, "OPTIONS", "z9hG4bK-o", "c", 1);
    let key = l.send_request(start, req, to_uas(Transport::Udp)).unwrap();
    assert_eq!(drain_transmits(&mut l).len(), 1);
    assert_eq!(l.stats().client_non_invite, 1);
    let (tx, ev) = run(&mut l, start, ms(60_000));
    assert_eq!(
        offsets(&tx),
        msv(&[
            500, 1500, 3500, 7500, 11500, 15500, 19500, 23500, 27500, 31500
        ])
    );
    assert_eq!(
        ev[0],
        (
            ms(32_000),
            TransactionEvent::Timeout {
                key,
                timer: Timer::F
            }
        )
    );
    assert!(l.is_empty());
}

#[test]
fn client_non_invite_timer_e_is_t2_once_proceeding() {
    let start = Instant::now();
    let mut l = TransactionLayer::default();
    let req = request(Transport::Udp, "MESSAGE", "z9hG4bK-m", "c", 1);
    let key = l
        .send_request(start, req.clone(), to_uas(Transport::Udp))
        .unwrap();
    drain_transmits(&mut l);
    l.handle_timeout(start + ms(500));
    l.handle_timeout(start + ms(1500));
    assert_eq!(drain_transmits(&mut l).len(), 2);
    let r = l.handle_response(
        start + ms(1600),
        response(&req, 100, None),
        from_uac(Transport::Udp),
    );
    assert_eq!(r, ResponseOutcome::Matched { key: key.clone() });
    assert_eq!(l.state(&key), Some(State::Proceeding));
    let (tx, _) = run(&mut l, start, ms(40_000));
    assert_eq!(
        offsets(&tx),
        msv(&[3500, 7500, 11500, 15500, 19500, 23500, 27500, 31500])
    );
    let (tx, _) = run(&mut l, start, ms(40_000));
    assert!(tx.is_empty());
}

#[test]
fn client_non_invite_timer_k_udp_and_tcp() {
    for (transport, k) in [
        (Transport::Udp, ms(5_000)),
        (Transport::Tcp, Duration::ZERO),
    ] {
        let start = Instant::now();
        let mut l = TransactionLayer::default();
        let req = request(transport, "REGISTER", "z9hG4bK-r", "c", 1);
        let key = l
            .send_request(start, req.clone(), to_uas(transport))
            .unwrap();
        drain_transmits(&mut l);
        let t = start + ms(80);
        let ok = response(&req, 200, Some("r"));
        assert_eq!(
            l.handle_response(t, ok.clone(), from_uac(transport)),
            ResponseOutcome::Matched { key: key.clone() }
        );
        if k.is_zero() {
            assert!(l.is_empty());
        } else {
            assert_eq!(l.state(&key), Some(State::Completed));
            assert_eq!(l.timer(&key, Timer::K), Some(t + k));
            assert_eq!(
                l.handle_response(t + ms(10), ok, from_uac(transport)),
                ResponseOutcome::Absorbed { key: key.clone() }
            );
            l.handle_timeout(t + k);
            assert!(l.is_empty());
        }
        let ev = drain_events(&mut l);
        assert_eq!(ev.last(), Some(&TransactionEvent::Terminated { key }));
    }
}

#[test]
fn response_with_other_method_or_branch_is_stray() {
    let start = Instant::now();
    let mut l = TransactionLayer::default();
    let req = request(Transport::Udp, "INVITE", "z9hG4bK-x", "c", 1);
    l.send_request(start, req.clone(), to_uas(Transport::Udp))
        .unwrap();
    let other = request(Transport::Udp, "BYE", "z9hG4bK-x", "c", 2);
    let r = response(&other, 200, None);
    assert_eq!(
        l.handle_response(start, r.clone(), from_uac(Transport::Udp)),
        ResponseOutcome::Stray(r)
    );
    let other = request(Transport::Udp, "INVITE", "z9hG4bK-y", "c", 1);
    let r = response(&other, 200, None);
    assert!(matches!(
        l.handle_response(start, r, from_uac(Transport::Udp)),
        ResponseOutcome::Stray(_)
    ));
}

// ---------------------------------------------------------------- server INVITE

#[test]
fn server_invite_sends_100_trying_and_resends_last_provisional() {
    let start = Instant::now();
    let mut l = TransactionLayer::default();
    let req = request(Transport::Udp, "INVITE", "z9hG4bK-s", "c", 1);
    let out = l.handle_request(start, req.clone(), from_uac(Transport::Udp));
    let RequestOutcome::New { key, request } = out else {
        panic!("{out:?}")
    };
    assert_eq!(request, req);
    assert_eq!(l.stats().server_invite, 1);
    let trying = drain_transmits(&mut l);
    assert_eq!(trying.len(), 1);
    let r = as_response(&trying[0]);
    assert_eq!(r.status, 100);
    assert_eq!(r.headers.to().unwrap().tag(), None);
    assert_eq!(
        trying[0].flow,
        from_uac(Transport::Udp).with_no_connection()
    );

    // A retransmitted INVITE gets the 100 again.
    let out = l.handle_request(start + ms(500), req.clone(), from_uac(Transport::Udp));
    assert_eq!(out, RequestOutcome::Retransmission { key: key.clone() });
    let again = drain_transmits(&mut l);
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].payload, trying[0].payload);

    // After a 180, it gets the 180.
    l.send_response(start + ms(600), &key, response(&req, 180, Some("u")))
        .unwrap();
    let ringing = drain_transmits(&mut l);
    assert_eq!(as_response(&ringing[0]).status, 180);
    l.handle_request(start + ms(1500), req, from_uac(Transport::Udp));
    let again = drain_transmits(&mut l);
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].payload, ringing[0].payload);
    assert_eq!(l.state(&key), Some(State::Proceeding));
    assert!(drain_events(&mut l).is_empty());
    // The 100 and the 180 sent again: two retransmissions.
    assert_eq!(l.stats().retransmissions, 2);
}

/// `Flow` as responses use it over UDP: no connection.
trait NoConnection {
    fn with_no_connection(self) -> Flow;
}
impl NoConnection for Flow {
    fn with_no_connection(self) -> Flow {
        Flow {
            connection: None,
            ..self
        }
    }
}

#[test]
fn server_invite_udp_timer_g_doubles_capped_then_timer_h() {
    let start = Instant::now();
    let mut l = TransactionLayer::default();
    let req = request(Transport::Udp, "INVITE", "z9hG4bK-g", "c", 1);
    let RequestOutcome::New { key, .. } =
        l.handle_request(start, req.clone(), from_uac(Transport::Udp))
    else {
        panic!()
    };
    drain_transmits(&mut l);
    l.send_response(start, &key, response(&req, 486, Some("u")))
        .unwrap();
    let busy = drain_transmits(&mut l);
    assert_eq!(busy.len(), 1);
    assert_eq!(l.state(&key), Some(State::Completed));
    let (tx, ev) = run(&mut l, start, ms(60_000));
    assert_eq!(
        offsets(&tx),
        msv(&[
            500, 1500, 3500, 7500, 11500, 15500, 19500, 23500, 27500, 31500
        ])
    );
    assert!(tx.iter().all(|(_, t)| t.payload == busy[0].payload));
    assert_eq!(
        ev[0],
        (
            ms(32_000),
            TransactionEvent::Timeout {
                key: key.clone(),
                timer: Timer::H
            }
        )
    );
    assert_eq!(ev[1], (ms(32_000), TransactionEvent::Terminated { key }));
    assert!(l.is_empty());
}

#[test]
fn server_invite_tcp_no_timer_g_timer_h_still() {
    let start = Instant::now();
    let mut l = TransactionLayer::default();
    let req = request(Transport::Tcp, "INVITE", "z9hG4bK-g", "c", 1);
    let RequestOutcome::New { key, .. } =
        l.handle_request(start, req.clone(), from_uac(Transport::Tcp))
    else {
        panic!()
    };
    let trying = drain_transmits(&mut l);
    // Same connection the request came on.
    assert_eq!(trying[0].flow, from_uac(Transport::Tcp));
    l.send_response(start, &key, response(&req, 486, Some("u")))
        .unwrap();
    drain_transmits(&mut l);
    assert_eq!(l.timer(&key, Timer::G), None);
    let (tx, ev) = run(&mut l, start, ms(60_000));
    assert!(tx.is_empty());
    assert_eq!(
        ev[0],
        (
            ms(32_000),
            TransactionEvent::Timeout {
                key,
                timer: Timer::H
            }
        )
    );
}

#[test]
fn server_invite_ack_confirms_then_timer_i_udp_and_tcp() {
    for (transport, i) in [
        (Transport::Udp, ms(5_000)),
        (Transport::Tcp, Duration::ZERO),
    ] {
        let start = Instant::now();
        let mut l = TransactionLayer::default();
        let req = request(transport, "INVITE", "z9hG4bK-i", "c", 1);
        let RequestOutcome::New { key, .. } =
            l.handle_request(start, req.clone(), from_uac(transport))
        else {
            panic!()
        };
        l.send_response(start, &key, response(&req, 404, Some("u")))
            .unwrap();
        drain_transmits(&mut l);
        let mut ack = request(transport, "ACK", "z9hG4bK-i", "c", 1);
        ack.headers
            .set(HeaderName::To, "Bob <sip:bob@example.com>;tag=u");
        let t = start + ms(700);
        assert_eq!(
            l.handle_request(t, ack.clone(), from_uac(transport)),
            RequestOutcome::AckForTransaction { key: key.clone() }
        );
        if i.is_zero() {
            assert!(l.is_empty());
        } else {
            assert_eq!(l.state(&key), Some(State::Confirmed));
            assert_eq!(l.timer(&key, Timer::I), Some(t + i));
            assert_eq!(l.timer(&key, Timer::G), None);
            // Retransmitted ACK and INVITE are absorbed silently.
            assert_eq!(
                l.handle_request(t + ms(1), ack, from_uac(transport)),
                RequestOutcome::AckForTransaction { key: key.clone() }
            );
            assert_eq!(
                l.handle_request(t + ms(2), req, from_uac(transport)),
                RequestOutcome::Retransmission { key: key.clone() }
            );
            assert!(drain_transmits(&mut l).is_empty());
            l.handle_timeout(t + i);
            assert!(l.is_empty());
        }
        assert_eq!(
            drain_events(&mut l),
            vec![TransactionEvent::Terminated { key }]
        );
    }
}

#[test]
fn server_invite_2xx_accepted_absorbs_invites_passes_ack_until_timer_l() {
    let start = Instant::now();
    let mut l = TransactionLayer::default();
    let req = request(Transport::Udp, "INVITE", "z9hG4bK-l", "c", 1);
    let RequestOutcome::New { key, .. } =
        l.handle_request(start, req.clone(), from_uac(Transport::Udp))
    else {
        panic!()
    };
    drain_transmits(&mut l);
    let ok = response(&req, 200, Some("u"));
    let t = start + ms(100);
    l.send_response(t, &key, ok.clone()).unwrap();
    assert_eq!(drain_transmits(&mut l).len(), 1);
    assert_eq!(l.state(&key), Some(State::Accepted));
    assert_eq!(l.timer(&key, Timer::L), Some(t + ms(32_000)));
    assert_eq!(
        l.handle_request(t + ms(400), req, from_uac(Transport::Udp)),
        RequestOutcome::Retransmission { key: key.clone() }
    );
    assert!(
        drain_transmits(&mut l).is_empty(),
        "the TU retransmits 2xx, not the transaction"
    );
    // The TU's 2xx retransmission goes out through the transaction.
    l.send_response(t + ms(500), &key, ok).unwrap();
    assert_eq!(drain_transmits(&mut l).len(), 1);
    // A failure after a 2xx is refused.
    let err = l.send_response(
        t,
        &key,
        response(
            &request(Transport::Udp, "INVITE", "z9hG4bK-l", "c", 1),
            500,
            None,
        ),
    );
    assert!(matches!(
        err,
        Err(Error::InvalidState {
            state: State::Accepted,
            status: 500,
            ..
        })
    ));
    // The ACK for the 2xx has its own branch: for the TU.
    let ack = request(Transport::Udp, "ACK", "z9hG4bK-ack2xx", "c", 1);
    assert_eq!(
        l.handle_request(t + ms(600), ack.clone(), from_uac(Transport::Udp)),
        RequestOutcome::Ack(ack)
    );
    l.handle_timeout(t + ms(32_000));
    assert!(l.is_empty());
}

// ---------------------------------------------------------------- server non-INVITE

#[test]
fn server_non_invite_timer_j_udp_and_tcp() {
    for (transport, j) in [
        (Transport::Udp, ms(32_000)),
        (Transport::Tcp, Duration::ZERO),
    ] {
        let start = Instant::now();
        let mut l = TransactionLayer::default();
        let req = request(transport, "OPTIONS", "z9hG4bK-j", "c", 1);
        let RequestOutcome::New { key, .. } =
            l.handle_request(start, req.clone(), from_uac(transport))
        else {
            panic!()
        };
        assert!(
            drain_transmits(&mut l).is_empty(),
            "no automatic 100 for non-INVITE"
        );
        assert_eq!(l.state(&key), Some(State::Trying));
        // Retransmission in Trying: absorbed, nothing sent.
        assert_eq!(
            l.handle_request(start + ms(500), req.clone(), from_uac(transport)),
            RequestOutcome::Retransmission { key: key.clone() }
        );
        assert!(drain_transmits(&mut l).is_empty());
        let t = start + ms(600);
        l.send_response(t, &key, response(&req, 200, Some("u")))
            .unwrap();
        let ok = drain_transmits(&mut l);
        assert_eq!(ok.len(), 1);
        if j.is_zero() {
            assert!(l.is_empty());
        } else {
            assert_eq!(l.timer(&key, Timer::J), Some(t + j));
            assert_eq!(
                l.handle_request(t + ms(900), req.clone(), from_uac(transport)),
                RequestOutcome::Retransmission { key: key.clone() }
            );
            assert_eq!(drain_transmits(&mut l)[0].payload, ok[0].payload);
            assert!(matches!(
                l.send_response(t, &key, response(&req, 200, Some("u"))),
                Err(Error::InvalidState {
                    state: State::Completed,
                    ..
                })
            ));
            l.handle_timeout(t + j - ms(1));
            assert_eq!(l.len(), 1);
            l.handle_timeout(t + j);
            assert!(l.is_empty());
        }
    }
}

// ---------------------------------------------------------------- CANCEL §9.2

#[test]
fn cancel_gets_its_own_transaction_and_names_its_invite() {
    let start = Instant::now();
    let mut l = TransactionLayer::default();
    let inv = request(Transport::Udp, "INVITE", "z9hG4bK-c", "c", 1);
    let RequestOutcome::New { key: inv_key, .. } =
        l.handle_request(start, inv.clone(), from_uac(Transport::Udp))
    else {
        panic!()
    };
    let cancel = request(Transport::Udp, "CANCEL", "z9hG4bK-c", "c", 1);
    let out = l.handle_request(start + ms(10), cancel.clone(), from_uac(Transport::Udp));
    let RequestOutcome::Cancel {
        key,
        request: got,
        invite,
    } = out
    else {
        panic!("{out:?}")
    };
    assert_eq!(got, cancel);
    assert_eq!(invite, Some(inv_key.clone()));
    assert_ne!(key, inv_key);
    assert_eq!(key.method(), &Method::Cancel);
    assert_eq!(l.stats().server_non_invite, 1);
    // The TU answers both.
    l.send_response(start + ms(11), &key, response(&cancel, 200, Some("u")))
        .unwrap();
    l.send_response(start + ms(11), &inv_key, response(&inv, 487, Some("u")))
        .unwrap();
    // A retransmitted CANCEL is absorbed by its transaction.
    assert_eq!(
        l.handle_request(start + ms(500), cancel, from_uac(Transport::Udp)),
        RequestOutcome::Retransmission { key }
    );
    // A CANCEL for nothing still gets a transaction; no target (the TU says 481).
    let stray = request(Transport::Udp, "CANCEL", "z9hG4bK-nothing", "c", 1);
    let out = l.handle_request(start, stray, from_uac(Transport::Udp));
    assert!(matches!(out, RequestOutcome::Cancel { invite: None, .. }));
    // Another sent-by with the same branch is another transaction.
    let mut other = request(Transport::Udp, "CANCEL", "z9hG4bK-c", "c", 1);
    other.headers.set(
        HeaderName::Via,
        "SIP/2.0/UDP 203.0.113.5:5060;branch=z9hG4bK-c",
    );
    let out = l.handle_request(start, other, from_uac(Transport::Udp));
    assert!(matches!(out, RequestOutcome::Cancel { invite: None, .. }));
}

#[test]
fn client_cancel_request_copies_the_invite() {
    let start = Instant::now();
    let mut l = TransactionLayer::default();
    let inv = request(Transport::Udp, "INVITE", "z9hG4bK-cc", "call-c", 4);
    let key = l
        .send_request(start, inv.clone(), to_uas(Transport::Udp))
        .unwrap();
    let cancel = l.cancel_request(&key).unwrap();
    assert_eq!(cancel.method, Method::Cancel);
    assert_eq!(cancel.uri, inv.uri);
    assert_eq!(
        cancel.headers.top_via().unwrap(),
        inv.headers.top_via().unwrap()
    );
    assert_eq!(
        cancel.headers.get(&HeaderName::To),
        inv.headers.get(&HeaderName::To)
    );
    let cseq = cancel.headers.cseq().unwrap();
    assert_eq!((cseq.seq, cseq.method), (4, Method::Cancel));
    let ckey = l
        .send_request(start, cancel, l.destination(&key).unwrap())
        .unwrap();
    assert_ne!(ckey, key);
    assert_eq!(l.stats().client_non_invite, 1);
}

// ---------------------------------------------------------------- RFC 2543

fn rfc2543_request(method: &str, to_tag: Option<&str>) -> sip_message::Request {
    let to = match to_tag {
        Some(t) => format!("<sip:bob@example.com>;tag={t}"),
        None => "<sip:bob@example.com>".to_string(),
    };
    parse_request(&format!(
        "{method} sip:bob@example.com SIP/2.0\n\
         Via: SIP/2.0/UDP 192.0.2.1:5060;branch=old-1\n\
         From: <sip:alice@example.com>;tag=a\n\
         To: {to}\n\
         Call-ID: legacy@192.0.2.1\n\
         CSeq: 3 {method}\n\
         Content-Length: 0\n\n"
    ))
}

#[test]
fn rfc2543_matching_without_magic_cookie() {
    let start = Instant::now();
    let mut l = TransactionLayer::default();
    let inv = rfc2543_request("INVITE", None);
    let RequestOutcome::New { key, .. } =
        l.handle_request(start, inv.clone(), from_uac(Transport::Udp))
    else {
        panic!()
    };
    assert!(key.is_rfc2543());
    assert_eq!(key.branch(), None);
    assert_eq!(
        l.handle_request(start + ms(500), inv.clone(), from_uac(Transport::Udp)),
        RequestOutcome::Retransmission { key: key.clone() }
    );
    // CANCEL matches by the same tuple (§9.2).
    let out = l.handle_request(
        start,
        rfc2543_request("CANCEL", None),
        from_uac(Transport::Udp),
    );
    assert!(matches!(out, RequestOutcome::Cancel { invite: Some(ref k), .. } if *k == key));
    // Another Call-ID is another transaction.
    let mut other = inv.clone();
    other.headers.set(HeaderName::CallId, "other@192.0.2.1");
    assert!(matches!(
        l.handle_request(start, other, from_uac(Transport::Udp)),
        RequestOutcome::New { .. }
    ));

    l.send_response(start + ms(600), &key, response(&inv, 486, Some("resp-tag")))
        .unwrap();
    // An ACK with another To tag does not match the transaction.
    let wrong = rfc2543_request("ACK", Some("other-tag"));
    assert!(matches!(
        l.handle_request(start + ms(700), wrong, from_uac(Transport::Udp)),
        RequestOutcome::Ack(_)
    ));
    // The ACK carrying our response's To tag matches the INVITE.
    let ack = rfc2543_request("ACK", Some("resp-tag"));
    assert_eq!(
        l.handle_request(start + ms(700), ack, from_uac(Transport::Udp)),
        RequestOutcome::AckForTransaction { key: key.clone() }
    );
    assert_eq!(l.state(&key), Some(State::Confirmed));
}

// ---------------------------------------------------------------- routing §18.2.2, RFC 3581

fn routed(via: &str, transport: Transport) -> Flow {
    let start = Instant::now();
    let mut l = TransactionLayer::default();
    let mut req = request(transport, "OPTIONS", "z9hG4bK-rt", "c", 1);
    req.headers.set(HeaderName::Via, via.to_string());
    // The datagram came from 198.51.100.7:40000.
    let flow = flow(transport, UAS, "198.51.100.7:40000");
    let RequestOutcome::New { key, .. } = l.handle_request(start, req.clone(), flow) else {
        panic!()
    };
    l.send_response(start, &key, response(&req, 200, Some("t")))
        .unwrap();
    let out = drain_transmits(&mut l);
    assert_eq!(out.len(), 1);
    out[0].flow
}

#[test]
fn responses_routed_per_rfc3261_18_2_2_and_rfc3581() {
    let remote = |f: Flow| f.remote.to_string();
    // rport with a value and received.
    assert_eq!(
        remote(routed(
            "SIP/2.0/UDP 10.0.0.1:5070;branch=z9hG4bK-rt;received=198.51.100.7;rport=40000",
            Transport::Udp
        )),
        "198.51.100.7:40000"
    );
    // rport without a value: the source port; no received: the source IP.
    assert_eq!(
        remote(routed(
            "SIP/2.0/UDP 10.0.0.1:5070;branch=z9hG4bK-rt;rport",
            Transport::Udp
        )),
        "198.51.100.7:40000"
    );
    // No rport: received address, sent-by port.
    assert_eq!(
        remote(routed(
            "SIP/2.0/UDP 10.0.0.1:5070;branch=z9hG4bK-rt;received=198.51.100.7",
            Transport::Udp
        )),
        "198.51.100.7:5070"
    );
    // No port in sent-by: the transport's default.
    assert_eq!(
        remote(routed(
            "SIP/2.0/UDP 10.0.0.1;branch=z9hG4bK-rt",
            Transport::Udp
        )),
        "198.51.100.7:5060"
    );
    // maddr is not followed: the source, at the source port (rport).
    assert_eq!(
        remote(routed(
            "SIP/2.0/UDP 10.0.0.1:5070;branch=z9hG4bK-rt;maddr=239.1.1.1;ttl=1;rport=40000",
            Transport::Udp
        )),
        "198.51.100.7:40000"
    );
    // A received= the sender wrote itself is not followed either, nor its rport value.
    assert_eq!(
        remote(routed(
            "SIP/2.0/UDP 10.0.0.1:5070;branch=z9hG4bK-rt;received=203.0.113.9",
            Transport::Udp
        )),
        "198.51.100.7:5070"
    );
    assert_eq!(
        remote(routed(
            "SIP/2.0/UDP 10.0.0.1:5070;branch=z9hG4bK-rt;received=203.0.113.9;rport=9",
            Transport::Udp
        )),
        "198.51.100.7:40000"
    );
    // Reliable: the connection the request came on, whatever Via says.
    let f = routed(
        "SIP/2.0/TCP 10.0.0.1:5070;branch=z9hG4bK-rt",
        Transport::Tcp,
    );
    assert_eq!(f, flow(Transport::Tcp, UAS, "198.51.100.7:40000"));
    assert!(f.connection.is_some());
    // Unreliable responses carry no connection and leave from our socket.
    let f = routed(
        "SIP/2.0/UDP 10.0.0.1:5070;branch=z9hG4bK-rt",
        Transport::Udp,
    );
    assert_eq!(f.connection, None);
    assert_eq!(f.local, addr(UAS));
}

// ---------------------------------------------------------------- errors

#[test]
fn transport_error_is_reported_and_terminates() {
    let start = Instant::now();
    let mut l = TransactionLayer::default();
    let req = request(Transport::Tcp, "INVITE", "z9hG4bK-te", "c", 1);
    let key = l.send_request(start, req, to_uas(Transport::Tcp)).unwrap();
    l.handle_transport_error(start + ms(5), &key).unwrap();
    assert!(l.is_empty());
    assert_eq!(
        drain_events(&mut l),
        vec![
            TransactionEvent::TransportError { key: key.clone() },
            TransactionEvent::Terminated { key: key.clone() },
        ]
    );
    assert_eq!(l.poll_timeout(), None);
    assert!(matches!(
        l.handle_transport_error(start, &key),
        Err(Error::NoSuchTransaction { .. })
    ));
}

#[test]
fn send_request_refuses_unmatchable_requests() {
    let start = Instant::now();
    let mut l = TransactionLayer::default();
    let f = to_uas(Transport::Udp);
    let mut r = request(Transport::Udp, "OPTIONS", "z9hG4bK-1", "c", 1);
    r.headers.set(HeaderName::Via, "SIP/2.0/UDP 192.0.2.1:5060");
    assert_eq!(l.send_request(start, r, f), Err(Error::MissingBranch));
    let r = request(Transport::Udp, "OPTIONS", "old-branch", "c", 1);
    assert!(matches!(
        l.send_request(start, r, f),
        Err(Error::NotRfc3261Branch { .. })
    ));
    let r = request(Transport::Udp, "ACK", "z9hG4bK-1", "c", 1);
    assert_eq!(
        l.send_request(start, r.clone(), f),
        Err(Error::AckNotTransaction)
    );
    assert_eq!(l.send_ack(start, r, f), Ok(()));
    assert_eq!(drain_transmits(&mut l).len(), 1);
    assert!(l.is_empty());
    let r = request(Transport::Udp, "OPTIONS", "z9hG4bK-1", "c", 1);
    assert!(matches!(
        l.send_ack(start, r.clone(), f),
        Err(Error::NotAck { .. })
    ));
    let key = l.send_request(start, r.clone(), f).unwrap();
    assert_eq!(
        l.send_request(start, r, f),
        Err(Error::TransactionExists { key: key.clone() })
    );
    // A client key is not for send_response.
    let req = request(Transport::Udp, "OPTIONS", "z9hG4bK-1", "c", 1);
    assert!(matches!(
        l.send_response(start, &key, response(&req, 200, None)),
        Err(Error::WrongTransactionKind { .. })
    ));
    let mut bad = response(&req, 200, None);
    bad.status = 99;
    assert_eq!(
        l.send_response(start, &key, bad),
        Err(Error::InvalidStatus { status: 99 })
    );
}

#[test]
fn unmatchable_request_is_invalid_not_a_panic() {
    let start = Instant::now();
    let mut l = TransactionLayer::default();
    let mut r = request(Transport::Udp, "OPTIONS", "z9hG4bK-1", "c", 1);
    r.headers.remove(&HeaderName::Via);
    assert!(matches!(
        l.handle_request(start, r, from_uac(Transport::Udp)),
        RequestOutcome::Invalid { .. }
    ));
    let mut r = rfc2543_request("OPTIONS", None);
    r.headers.remove(&HeaderName::CSeq);
    assert!(matches!(
        l.handle_request(start, r, from_uac(Transport::Udp)),
        RequestOutcome::Invalid { .. }
    ));
    let req = request(Transport::Udp, "OPTIONS", "z9hG4bK-1", "c", 1);
    let mut resp = response(&req, 200, None);
    resp.headers.remove(&HeaderName::Via);
    assert!(matches!(
        l.handle_response(start, resp, from_uac(Transport::Udp)),
        ResponseOutcome::Invalid { .. }
    ));
    assert!(l.is_empty());
}

#[test]
fn stats_count_each_kind() {
    let start = Instant::now();
    let mut l = TransactionLayer::default();
    let u = Transport::Udp;
    l.send_request(start, request(u, "INVITE", "z9hG4bK-1", "c", 1), to_uas(u))
        .unwrap();
    l.send_request(start, request(u, "BYE", "z9hG4bK-2", "c", 2), to_uas(u))
        .unwrap();
    let mut server = Vec::new();
    for (method, branch, cseq) in [
        ("INVITE", "z9hG4bK-3", 1),
        ("INFO", "z9hG4bK-4", 2),
        ("INFO", "z9hG4bK-5", 3),
    ] {
        let req = request(u, method, branch, "d", cseq);
        let RequestOutcome::New { key, .. } = l.handle_request(start, req.clone(), from_uac(u))
        else {
            panic!()
        };
        server.push((key, req));
    }
    assert_eq!(
        l.stats(),
        TransactionStats {
            client_invite: 1,
            client_non_invite: 1,
            server_invite: 1,
            server_non_invite: 2,
            retransmissions: 0,
        }
    );
    assert_eq!(l.stats().total(), 5);
    assert_eq!(l.len(), 5);
    // Once the TU has answered, everything ends by itself on the virtual clock.
    for (key, req) in server {
        l.send_response(start, &key, response(&req, 500, Some("t")))
            .unwrap();
    }
    run(&mut l, start, ms(200_000));
    assert!(l.is_empty());
    assert_eq!(l.stats().total(), 0);
}

/// What a shutdown waits for: our non-INVITE requests without a final response (Trying,
/// Proceeding); not once answered (Completed, Timer K), not INVITEs, not server ones.
#[test]
fn requests_awaiting_answer_counts_client_non_invite_until_final() {
    let start = Instant::now();
    let mut l = TransactionLayer::default();
    assert_eq!(l.requests_awaiting_answer(), 0);
    let bye = request(Transport::Udp, "BYE", "z9hG4bK-bye", "c1", 2);
    let key = l
        .send_request(start, bye.clone(), to_uas(Transport::Udp))
        .unwrap();
    let invite = request(Transport::Udp, "INVITE", "z9hG4bK-inv", "c2", 1);
    l.send_request(start, invite, to_uas(Transport::Udp))
        .unwrap();
    let options = request(Transport::Udp, "OPTIONS", "z9hG4bK-srv", "c3", 1);
    assert!(matches!(
        l.handle_request(start, options, from_uac(Transport::Udp)),
        RequestOutcome::New { .. }
    ));
    drain_transmits(&mut l);
    assert_eq!(l.requests_awaiting_answer(), 1, "the BYE (Trying)");
    let t = start + ms(50);
    l.handle_response(t, response(&bye, 100, None), from_uac(Transport::Udp));
    assert_eq!(l.state(&key), Some(State::Proceeding));
    assert_eq!(l.requests_awaiting_answer(), 1, "the BYE (Proceeding)");
    l.handle_response(t, response(&bye, 200, Some("b")), from_uac(Transport::Udp));
    assert_eq!(l.state(&key), Some(State::Completed));
    assert_eq!(l.requests_awaiting_answer(), 0, "answered");
}
