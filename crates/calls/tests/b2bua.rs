//! `BackToBackCall`, signalling-only: three engines on the virtual net. A (alice) calls
//! T (a B2BUA application endpoint, user `t`), whose application bridges every incoming
//! call to B (bob). SDP goes through T byte for byte; leg B is a call of its own.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

#[path = "support/net.rs"]
mod net;

use calls::{
    ApplicationEndpointSettings, B2bEvent, B2bHandle, B2bLeg, B2bState, BridgeMode, BridgeOptions,
    BridgeTarget, CallAcceptOptions, CallDeclineOptions, CallError, CallEstablishOptions,
    CallEvent, CallHandle, CallKind, CallProvisionalResponseOptions, CallState,
    CallStateTransitionReason as R, CallTerminateOptions, CallTransferOptions,
    ConversationSettings, EndpointEvent, EndpointHandle, EngineConfig, EstablishFailure, Event,
    HoldType, MediaInstruction, RingStrategy, SignalingHeader, TransferOutcome,
};
use net::*;
use sip_message::Method;
use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

const A: usize = 0;
const B: usize = 1;
const T: usize = 2;
const T_ADDR: &str = "127.0.0.3:5060";
const T_URI: &str = "sip:t@127.0.0.3";

/// The net with T bridging every incoming call to bob; the bridges T made.
fn three() -> (Net, EndpointHandle, Rc<RefCell<Vec<B2bHandle>>>) {
    three_with(BridgeOptions::new, plain_config(1), plain_config(2))
}

/// [`three`], with the bridge options T uses and A's and B's configs.
fn three_with(
    options: impl Fn() -> BridgeOptions + 'static,
    a: EngineConfig,
    b: EngineConfig,
) -> (Net, EndpointHandle, Rc<RefCell<Vec<B2bHandle>>>) {
    let (mut net, alice, _bob) = Net::pair_with(a, b);
    let t = net.add(T_ADDR, plain_config(3));
    assert_eq!(t, T);
    net.engine(T)
        .add_application_endpoint(ApplicationEndpointSettings::new(T_URI))
        .unwrap();
    let bridges = Rc::new(RefCell::new(Vec::new()));
    let made = bridges.clone();
    net.set_app(T, move |engine, now, event| {
        if let Event::Endpoint {
            event: EndpointEvent::CallReceived(received),
            ..
        } = event
        {
            let bridge = engine
                .bridge(now, received.call, BOB, options())
                .expect("bridge");
            made.borrow_mut().push(bridge);
        }
    });
    (net, alice, bridges)
}

fn dial(net: &mut Net, alice: EndpointHandle) -> CallHandle {
    let now = net.now;
    let engine = net.engine(A);
    let conversation = engine
        .new_conversation(alice, ConversationSettings::default())
        .unwrap();
    let call = engine.new_call(conversation, CallKind::AudioVideo).unwrap();
    engine
        .establish(now, call, T_URI, CallEstablishOptions::new())
        .unwrap();
    call
}

fn bridge_events(net: &Net, bridge: B2bHandle) -> Vec<B2bEvent> {
    net.nodes[T]
        .log
        .iter()
        .filter_map(|(_, e)| match e {
            Event::Bridge { bridge: b, event } if *b == bridge => Some(event.clone()),
            _ => None,
        })
        .collect()
}

fn bridge_states(net: &Net, bridge: B2bHandle) -> Vec<(B2bState, B2bLeg)> {
    bridge_events(net, bridge)
        .into_iter()
        .filter_map(|e| match e {
            B2bEvent::StateChanged { state, leg, .. } => Some((state, leg)),
            _ => None,
        })
        .collect()
}

fn last_state(net: &Net, node: usize, call: CallHandle) -> Option<(CallState, R)> {
    states(&net.call_events(node, call))
        .last()
        .map(|(_, s, r)| (*s, r.clone()))
}

/// A → T → B, answered; returns (A's call, B's call, the bridge).
fn bridged(
    net: &mut Net,
    alice: EndpointHandle,
    bridges: &Rc<RefCell<Vec<B2bHandle>>>,
) -> (CallHandle, CallHandle, B2bHandle) {
    net.set_app(B, accept_all(CallAcceptOptions::new()));
    let a_call = dial(net, alice);
    net.run_for(Duration::from_secs(2));
    let b_call = net.only_received(B).call;
    let bridge = bridges.borrow()[0];
    (a_call, b_call, bridge)
}

#[test]
fn a_bridged_call_is_up_on_both_legs_with_the_sdp_passed_through_byte_for_byte() {
    let (mut net, alice, bridges) = three();
    let (a_call, b_call, bridge) = bridged(&mut net, alice, &bridges);

    assert_eq!(
        net.engine(A).call_state(a_call),
        Some(CallState::Established)
    );
    assert_eq!(
        net.engine(B).call_state(b_call),
        Some(CallState::Established)
    );
    assert_eq!(
        net.engine(T).bridge_state(bridge),
        Some(B2bState::Established)
    );
    let (leg_a, leg_b) = net.engine(T).bridge_legs(bridge).unwrap();
    assert_eq!(
        net.engine(T).call_state(leg_a),
        Some(CallState::Established)
    );
    assert_eq!(
        net.engine(T).call_state(leg_b),
        Some(CallState::Established)
    );
    assert_eq!(
        bridge_states(&net, bridge),
        vec![
            (B2bState::Establishing, B2bLeg::A),
            (B2bState::Established, B2bLeg::A)
        ]
    );

    // The offer: A's INVITE body is T's INVITE body, byte for byte.
    let a_invite = net.requests(A, Method::Invite)[0].1.clone();
    let t_invite = net.requests(T, Method::Invite)[0].1.clone();
    assert!(!a_invite.body.is_empty());
    assert_eq!(a_invite.body, t_invite.body);
    // The answer: B's 200 body is T's 200 body to A, byte for byte.
    let ok = |node: usize| {
        net.responses(node)
            .into_iter()
            .map(|(_, r)| r)
            .find(|r| r.status == 200 && r.headers.cseq().is_ok_and(|c| c.method == Method::Invite))
            .unwrap()
    };
    let (b_ok, t_ok) = (ok(B), ok(T));
    assert!(!b_ok.body.is_empty());
    assert_eq!(b_ok.body, t_ok.body);

    // Signalling-only: T takes no RTP port for either leg; A and B do.
    assert!(
        net.media_log.iter().all(|(node, _, _)| *node != T),
        "{:?}",
        net.media_log
    );
    assert!(net.media_log.iter().any(|(node, _, _)| *node == A));
    assert!(net.media_log.iter().any(|(node, _, _)| *node == B));
}

#[test]
fn leg_b_never_sees_leg_a_call_id_or_tags() {
    let (mut net, alice, bridges) = three();
    let (_a_call, _b_call, _bridge) = bridged(&mut net, alice, &bridges);
    let a_invite = net.requests(A, Method::Invite)[0].1.clone();
    let call_id = a_invite.headers.call_id().unwrap().to_owned();
    let from = header_values(&a_invite.headers, "From")[0].clone();
    let a_tag = from.split("tag=").nth(1).unwrap().to_owned();
    let via = header_values(&a_invite.headers, "Via")[0].clone();
    let a_branch = via.split("branch=").nth(1).unwrap().to_owned();
    let t_ok_to_a = net
        .responses(T)
        .into_iter()
        .map(|(_, r)| r)
        .find(|r| r.status == 200)
        .unwrap();
    let t_tag_to_a = header_values(&t_ok_to_a.headers, "To")[0]
        .split("tag=")
        .nth(1)
        .unwrap()
        .to_owned();
    let b_invite = net.requests(T, Method::Invite)[0].1.clone();
    assert_ne!(b_invite.headers.call_id().unwrap(), call_id);
    // Nothing B received from T carries A's Call-ID, A's tag, A's branch or T's tag
    // toward A.
    for (_, message) in net.nodes[T].sent.iter() {
        let sip_message::Message::Request(r) = message else {
            continue;
        };
        if r.headers.call_id().ok() == Some(call_id.as_str()) {
            continue; // to A
        }
        let text = String::from_utf8_lossy(&r.to_bytes()).into_owned();
        for secret in [&call_id, &a_tag, &a_branch, &t_tag_to_a] {
            assert!(!text.contains(secret.as_str()), "{secret} leaked in {text}");
        }
    }
    let received = net.only_received(B);
    assert!(!received.from.contains(&a_tag));
    assert!(received.from.contains("sip:t@"), "{}", received.from);
}

#[test]
fn a_bye_from_a_ends_b_and_a_bye_from_b_ends_a() {
    for (hangs_up, other) in [(A, B), (B, A)] {
        let (mut net, alice, bridges) = three();
        let (a_call, b_call, bridge) = bridged(&mut net, alice, &bridges);
        let (mine, theirs) = if hangs_up == A {
            (a_call, b_call)
        } else {
            (b_call, a_call)
        };
        let now = net.now;
        net.engine(hangs_up)
            .terminate(now, mine, CallTerminateOptions::new())
            .unwrap();
        net.run_for(Duration::from_secs(2));
        assert_eq!(
            last_state(&net, other, theirs),
            Some((CallState::Terminated, R::RemoteTerminated)),
            "{hangs_up} hung up"
        );
        assert_eq!(net.requests(T, Method::Bye).len(), 1);
        let first = if hangs_up == A { B2bLeg::A } else { B2bLeg::B };
        assert_eq!(
            bridge_states(&net, bridge)[2..],
            [
                (B2bState::Terminating, first),
                (
                    B2bState::Terminated,
                    if first == B2bLeg::A {
                        B2bLeg::B
                    } else {
                        B2bLeg::A
                    }
                )
            ]
        );
        assert_eq!(net.engine(T).bridge_state(bridge), None);
        net.assert_quiet();
    }
}

#[test]
fn a_486_on_leg_b_becomes_a_486_on_leg_a_with_reason() {
    let (mut net, alice, bridges) = three();
    net.set_app(B, |engine, now, event| {
        if let Event::Endpoint {
            event: EndpointEvent::CallReceived(received),
            ..
        } = event
        {
            engine
                .decline(now, received.call, CallDeclineOptions::new(486))
                .unwrap();
        }
    });
    let a_call = dial(&mut net, alice);
    net.run_for(Duration::from_secs(2));
    let completed = net
        .call_events(A, a_call)
        .into_iter()
        .find_map(|e| match e {
            CallEvent::EstablishCompleted { result } => Some(result),
            _ => None,
        })
        .unwrap();
    let Err(EstablishFailure::Refused { status, reason, .. }) = completed else {
        panic!("{completed:?}");
    };
    assert_eq!(status, 486);
    let t_486 = net
        .responses(T)
        .into_iter()
        .map(|(_, r)| r)
        .find(|r| r.status == 486)
        .unwrap();
    let reason_header = header_values(&t_486.headers, "Reason");
    assert_eq!(reason_header.len(), 1, "{reason_header:?}");
    assert!(
        reason_header[0].starts_with("SIP;cause=486"),
        "{reason_header:?}"
    );
    assert!(reason.is_none_or(|r| r.contains("cause=486")));
    let bridge = bridges.borrow()[0];
    assert!(
        bridge_events(&net, bridge)
            .iter()
            .any(|e| matches!(e, B2bEvent::FailureRelayed { status: 486, .. }))
    );
    assert_eq!(net.engine(T).bridge_state(bridge), None);
    net.assert_quiet();
}

#[test]
fn ringing_is_relayed_and_a_cancel_from_a_cancels_b() {
    let (mut net, alice, bridges) = three();
    net.set_app(B, |engine, now, event| {
        if let Event::Endpoint {
            event: EndpointEvent::CallReceived(received),
            ..
        } = event
        {
            engine
                .send_provisional(now, received.call, CallProvisionalResponseOptions::new(180))
                .unwrap();
        }
    });
    let a_call = dial(&mut net, alice);
    net.run_for(Duration::from_secs(1));
    let ringing: Vec<u16> = net
        .call_events(A, a_call)
        .into_iter()
        .filter_map(|e| match e {
            CallEvent::ProvisionalResponseReceived { status, .. } => Some(status),
            _ => None,
        })
        .collect();
    assert_eq!(ringing, vec![180]);
    let bridge = bridges.borrow()[0];
    assert!(
        bridge_events(&net, bridge).contains(&B2bEvent::ProvisionalRelayed {
            status: 180,
            early_media: false
        })
    );

    let now = net.now;
    net.engine(A)
        .terminate(now, a_call, CallTerminateOptions::new())
        .unwrap();
    net.run_for(Duration::from_secs(2));
    assert_eq!(net.requests(T, Method::Cancel).len(), 1);
    let b_call = net.only_received(B).call;
    assert_eq!(
        last_state(&net, B, b_call),
        Some((CallState::Terminated, R::RemoteCancelled))
    );
    assert_eq!(net.engine(T).bridge_state(bridge), None);
    net.assert_quiet();
}

/// The SDP bodies of the re-INVITEs (not the first INVITE) a node received.
fn reinvite_bodies(net: &Net, node: usize) -> Vec<bytes::Bytes> {
    let mut bodies: Vec<_> = net
        .requests(node, Method::Invite)
        .into_iter()
        .filter(|(_, r)| header_values(&r.headers, "To")[0].contains("tag="))
        .map(|(_, r)| r.body)
        .collect();
    bodies.dedup();
    bodies
}

fn operation_results(net: &Net, node: usize, call: CallHandle) -> Vec<bool> {
    net.call_events(node, call)
        .into_iter()
        .filter_map(|e| match e {
            CallEvent::OperationCompleted { result, .. } => Some(result.is_ok()),
            _ => None,
        })
        .collect()
}

#[test]
fn a_reinvite_from_b_reaches_a_and_the_answer_goes_back_byte_for_byte() {
    let (mut net, alice, bridges) = three();
    let (a_call, b_call, bridge) = bridged(&mut net, alice, &bridges);
    let now = net.now;
    net.engine(B).hold(now, b_call, HoldType::SendOnly).unwrap();
    net.run_for(Duration::from_secs(2));

    // B's re-offer reached A unchanged (T sent exactly one re-INVITE, to A), and A's
    // answer reached B unchanged.
    let b_offer = reinvite_bodies(&net, B);
    let t_relayed = reinvite_bodies(&net, T);
    assert_eq!(b_offer.len(), 1, "{}", trace(&net));
    assert!(String::from_utf8_lossy(&b_offer[0]).contains("a=sendonly"));
    assert_eq!(t_relayed, b_offer);
    // A sent one 200 to an INVITE (the re-INVITE); T's last one went to B.
    let oks = |node: usize| {
        net.responses(node)
            .into_iter()
            .map(|(_, r)| r)
            .filter(|r| {
                r.status == 200 && r.headers.cseq().is_ok_and(|c| c.method == Method::Invite)
            })
            .map(|r| r.body)
            .collect::<Vec<_>>()
    };
    let reinvite_ok = |node: usize| oks(node).last().cloned().unwrap();
    let (a_answer, t_answer) = (reinvite_ok(A), reinvite_ok(T));
    assert!(String::from_utf8_lossy(&a_answer).contains("a=recvonly"));
    assert_eq!(a_answer, t_answer);
    assert_eq!(operation_results(&net, B, b_call), vec![true]);
    assert!(
        bridge_events(&net, bridge).contains(&B2bEvent::ModifyRelayed {
            from: B2bLeg::B,
            method: Method::Invite,
            status: 200
        })
    );
    // A's side saw the hold: its flow now only receives.
    assert!(
        net.call_events(A, a_call)
            .iter()
            .any(|e| matches!(e, CallEvent::FlowConfigurationChanged { .. }))
    );
    // And back again, from A this time.
    let now = net.now;
    net.engine(A).hold(now, a_call, HoldType::Inactive).unwrap();
    net.run_for(Duration::from_secs(2));
    assert_eq!(operation_results(&net, A, a_call), vec![true]);
    assert!(
        bridge_events(&net, bridge).contains(&B2bEvent::ModifyRelayed {
            from: B2bLeg::A,
            method: Method::Invite,
            status: 200
        })
    );
    assert_eq!(
        net.engine(T).bridge_state(bridge),
        Some(B2bState::Established)
    );
}

#[test]
fn re_invites_crossing_on_both_legs_end_in_491_and_both_complete_after_retry() {
    let (mut net, alice, bridges) = three();
    let (a_call, b_call, bridge) = bridged(&mut net, alice, &bridges);
    let now = net.now;
    net.engine(A).hold(now, a_call, HoldType::SendOnly).unwrap();
    net.engine(B).hold(now, b_call, HoldType::SendOnly).unwrap();
    net.run_for(Duration::from_secs(30));
    let glare = net.statuses(T, Method::Invite).contains(&491)
        || net.statuses(A, Method::Invite).contains(&491)
        || net.statuses(B, Method::Invite).contains(&491);
    assert!(glare, "{}", trace(&net));
    assert_eq!(
        operation_results(&net, A, a_call),
        vec![true],
        "{}",
        trace(&net)
    );
    assert_eq!(operation_results(&net, B, b_call), vec![true]);
    assert_eq!(
        net.engine(T).bridge_state(bridge),
        Some(B2bState::Established)
    );
}

#[test]
fn session_refreshes_are_answered_per_leg_and_never_reach_the_other_leg() {
    // A asks for a 90 s session interval and refreshes it (refresher=uac); B knows no
    // session timers.
    let mut a = plain_config(1);
    a.endpoint.session_timer.enabled = true;
    a.endpoint.session_timer.session_expires = Duration::from_secs(90);
    a.endpoint.session_timer.min_se = Duration::from_secs(90);
    let mut b = plain_config(2);
    b.endpoint.session_timer.enabled = false;
    let (mut net, alice, bridges) = three_with(BridgeOptions::new, a, b);
    let (a_call, b_call, bridge) = bridged(&mut net, alice, &bridges);
    net.run_for(Duration::from_secs(400));
    // A refreshed its leg several times (every half interval), and T answered...
    let refreshes = net.nodes[A]
        .sent
        .iter()
        .filter(|(_, m)| {
            matches!(m, sip_message::Message::Request(r)
                if (r.method == Method::Invite || r.method == Method::Update)
                    && header_values(&r.headers, "To")[0].contains("tag="))
        })
        .count();
    assert!(refreshes >= 3, "{refreshes} refreshes\n{}", trace(&net));
    // ... on its own: B saw nothing but the INVITE and its ACK; every call is up.
    let to_b: Vec<Method> = net.nodes[T]
        .sent
        .iter()
        .filter_map(|(_, m)| match m {
            sip_message::Message::Request(r)
                if r.headers.call_id().ok()
                    != net.requests(A, Method::Invite)[0].1.headers.call_id().ok() =>
            {
                Some(r.method.clone())
            }
            _ => None,
        })
        .collect();
    assert_eq!(to_b, vec![Method::Invite, Method::Ack], "{}", trace(&net));
    assert!(
        !bridge_events(&net, bridge)
            .iter()
            .any(|e| matches!(e, B2bEvent::ModifyRelayed { .. }))
    );
    assert_eq!(
        net.engine(A).call_state(a_call),
        Some(CallState::Established)
    );
    assert_eq!(
        net.engine(B).call_state(b_call),
        Some(CallState::Established)
    );
}

#[test]
fn listed_headers_pass_both_ways_and_unlisted_ones_do_not() {
    let (mut net, alice, bridges) = three_with(
        || {
            BridgeOptions::new()
                .pass_header("X-Account")
                .pass_header("User-to-User")
        },
        plain_config(1),
        plain_config(2),
    );
    net.set_app(B, |engine, now, event| {
        if let Event::Endpoint {
            event: EndpointEvent::CallReceived(received),
            ..
        } = event
        {
            let mut options = CallDeclineOptions::new(486);
            options.headers = vec![
                SignalingHeader::new("X-Account", "busy-account"),
                SignalingHeader::new("X-Private", "secret"),
            ];
            engine.decline(now, received.call, options).unwrap();
        }
    });
    let now = net.now;
    let engine = net.engine(A);
    let conversation = engine
        .new_conversation(alice, ConversationSettings::default())
        .unwrap();
    let a_call = engine.new_call(conversation, CallKind::AudioVideo).unwrap();
    let options = CallEstablishOptions::new()
        .header("X-Account", "42")
        .header("X-Other", "no")
        .header("User-to-User", "56a390f3d2b7310023a2;encoding=hex");
    engine.establish(now, a_call, T_URI, options).unwrap();
    net.run_for(Duration::from_secs(2));
    let received = net.only_received(B);
    let value = |name: &str| {
        received
            .headers
            .iter()
            .filter(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| h.value.clone())
            .collect::<Vec<_>>()
    };
    assert_eq!(value("X-Account"), vec!["42"]);
    assert_eq!(
        value("User-to-User"),
        vec!["56a390f3d2b7310023a2;encoding=hex"]
    );
    assert!(value("X-Other").is_empty());
    let t_486 = net
        .responses(T)
        .into_iter()
        .map(|(_, r)| r)
        .find(|r| r.status == 486)
        .unwrap();
    assert_eq!(
        header_values(&t_486.headers, "X-Account"),
        vec!["busy-account"]
    );
    assert!(header_values(&t_486.headers, "X-Private").is_empty());
    assert!(bridges.borrow().len() == 1);
}

#[test]
fn a_header_the_b2bua_writes_per_leg_cannot_be_passed_and_says_why() {
    let (mut net, alice, _) = three();
    let seen = Rc::new(RefCell::new(Vec::new()));
    let errors = seen.clone();
    net.set_app(T, move |engine, now, event| {
        if let Event::Endpoint {
            event: EndpointEvent::CallReceived(received),
            ..
        } = event
        {
            for name in ["Via", "call-id", "k", "Contact"] {
                let error = engine
                    .bridge(
                        now,
                        received.call,
                        BOB,
                        BridgeOptions::new().pass_header(name),
                    )
                    .unwrap_err();
                errors.borrow_mut().push(error.to_string());
                assert!(matches!(error, CallError::HeaderNotPassable { .. }));
            }
            // A target that cannot be routed fails on leg B, and says so.
            let error = engine
                .bridge(now, received.call, "mailto:nobody", BridgeOptions::new())
                .unwrap_err();
            assert!(
                matches!(&error, CallError::Leg { leg: B2bLeg::B, .. }),
                "{error:?}"
            );
            errors.borrow_mut().push(error.to_string());
            engine
                .decline(now, received.call, CallDeclineOptions::new(500))
                .unwrap();
        }
    });
    dial(&mut net, alice);
    net.run_for(Duration::from_secs(2));
    let seen = seen.borrow();
    assert_eq!(seen.len(), 5, "{seen:?}");
    assert!(
        seen[0].contains("`Via`") && seen[0].contains("topology hiding"),
        "{}",
        seen[0]
    );
    assert!(seen[2].contains("negotiated per leg"), "{}", seen[2]);
    assert!(seen[4].starts_with("leg B:"), "{}", seen[4]);
    // No leg B was left behind.
    assert!(net.requests(B, Method::Invite).is_empty());
    assert_eq!(net.statuses(T, Method::Invite), vec![100, 500]);
}

#[test]
fn a_media_anchored_bridge_hides_both_parties_addresses_and_joins_the_streams() {
    let (mut net, alice, bridges) = three_with(
        || BridgeOptions::new().mode(BridgeMode::MediaAnchored),
        plain_config(1),
        plain_config(2),
    );
    let (a_call, b_call, bridge) = bridged(&mut net, alice, &bridges);
    assert_eq!(
        net.engine(A).call_state(a_call),
        Some(CallState::Established)
    );
    assert_eq!(
        net.engine(B).call_state(b_call),
        Some(CallState::Established)
    );
    assert_eq!(
        net.engine(T).bridge_state(bridge),
        Some(B2bState::Established)
    );
    let (leg_a, leg_b) = net.engine(T).bridge_legs(bridge).unwrap();
    // Each party sees only T's media address.
    let b_invite = net.requests(T, Method::Invite)[0].1.clone();
    let offer = String::from_utf8_lossy(&b_invite.body).into_owned();
    assert!(offer.contains("c=IN IP4 127.0.0.3"), "{offer}");
    assert!(!offer.contains("127.0.0.1"), "{offer}");
    let t_ok_to_a = net
        .responses(T)
        .into_iter()
        .map(|(_, r)| r)
        .find(|r| r.status == 200 && r.headers.call_id().ok() != b_invite.headers.call_id().ok())
        .unwrap();
    let answer = String::from_utf8_lossy(&t_ok_to_a.body).into_owned();
    assert!(answer.contains("c=IN IP4 127.0.0.3"), "{answer}");
    assert!(!answer.contains("127.0.0.2"), "{answer}");
    // T opened and started a stream per leg, then joined them.
    let t_media: Vec<_> = net
        .media_log
        .iter()
        .filter(|(node, _, _)| *node == T)
        .map(|(_, call, i)| (*call, i.clone()))
        .collect();
    let started = |call| {
        t_media
            .iter()
            .any(|(c, i)| *c == call && matches!(i, MediaInstruction::Start(_)))
    };
    assert!(started(leg_a) && started(leg_b), "{t_media:?}");
    assert_eq!(
        t_media.last(),
        Some(&(leg_a, MediaInstruction::Join { peer: leg_b }))
    );
    // Through T's relay, each phone hears the other.
    assert_eq!(net.hears(A, a_call), Some((B, b_call)));
    assert_eq!(net.hears(B, b_call), Some((A, a_call)));
    // A BYE from B ends A; T closes both streams.
    let now = net.now;
    net.engine(B)
        .terminate(now, b_call, CallTerminateOptions::new())
        .unwrap();
    net.run_for(Duration::from_secs(2));
    assert_eq!(
        last_state(&net, A, a_call),
        Some((CallState::Terminated, R::RemoteTerminated))
    );
    let closed = net
        .media_log
        .iter()
        .filter(|(node, _, i)| *node == T && matches!(i, MediaInstruction::Close { .. }))
        .count();
    assert_eq!(closed, 2);
    net.assert_quiet();
}

#[test]
fn bridged_calls_survive_ten_percent_loss_in_both_modes() {
    for mode in [BridgeMode::SignalingOnly, BridgeMode::MediaAnchored] {
        for seed in 0..8u64 {
            let (mut net, alice, bridges) = three_with(
                move || BridgeOptions::new().mode(mode),
                plain_config(1),
                plain_config(2),
            );
            net.reseed(seed);
            net.loss_percent = 10;
            let (a_call, b_call, bridge) = {
                net.set_app(B, accept_all(CallAcceptOptions::new()));
                let a_call = dial(&mut net, alice);
                net.run_for(Duration::from_secs(40));
                let b_call = net.only_received(B).call;
                (a_call, b_call, bridges.borrow()[0])
            };
            let ctx = format!("{mode:?} seed {seed}");
            assert_eq!(
                net.engine(A).call_state(a_call),
                Some(CallState::Established),
                "{ctx}\n{}",
                trace(&net)
            );
            assert_eq!(
                net.engine(T).bridge_state(bridge),
                Some(B2bState::Established),
                "{ctx}"
            );
            // A re-INVITE from B, then a BYE from A, all under loss.
            let now = net.now;
            net.engine(B).hold(now, b_call, HoldType::SendOnly).unwrap();
            net.run_for(Duration::from_secs(40));
            assert_eq!(operation_results(&net, B, b_call), vec![true], "{ctx}");
            let now = net.now;
            net.engine(A)
                .terminate(now, a_call, CallTerminateOptions::new())
                .unwrap();
            net.run_for(Duration::from_secs(60));
            assert_eq!(
                last_state(&net, B, b_call),
                Some((CallState::Terminated, R::RemoteTerminated)),
                "{ctx}\n{}",
                trace(&net)
            );
            assert_eq!(net.engine(T).bridge_state(bridge), None, "{ctx}");
            net.loss_percent = 0;
            net.assert_quiet();
        }
    }
}

const C: usize = 3;
const CAROL: &str = "sip:carol@127.0.0.4";

/// A, B, T and C (carol): T bridges every call to bob and carol as `ring` says, with
/// `timeout` per target; B and C behave as `b_app` and `c_app` say.
fn four(
    ring: RingStrategy,
    timeout: Option<Duration>,
    b_app: impl FnMut(&mut calls::Engine, std::time::Instant, &Event) + 'static,
    c_app: impl FnMut(&mut calls::Engine, std::time::Instant, &Event) + 'static,
) -> (Net, CallHandle, Rc<RefCell<Vec<B2bHandle>>>) {
    let (mut net, alice, bridges) = three();
    let c = net.add("127.0.0.4:5060", plain_config(4));
    assert_eq!(c, C);
    net.engine(C)
        .add_application_endpoint(ApplicationEndpointSettings::new(CAROL))
        .unwrap();
    let made = bridges.clone();
    net.set_app(T, move |engine, now, event| {
        if let Event::Endpoint {
            event: EndpointEvent::CallReceived(received),
            ..
        } = event
        {
            let target = |uri: &str| {
                let t = BridgeTarget::new(uri).header("X-Target", uri);
                match timeout {
                    Some(d) => t.timeout(d),
                    None => t,
                }
            };
            let bridge = engine
                .bridge_targets(
                    now,
                    received.call,
                    vec![target(BOB), target(CAROL)],
                    BridgeOptions::new().ring(ring),
                )
                .expect("bridge");
            made.borrow_mut().push(bridge);
        }
    });
    net.set_app(B, b_app);
    net.set_app(C, c_app);
    let a_call = dial(&mut net, alice);
    (net, a_call, bridges)
}

fn on_call(
    mut act: impl FnMut(&mut calls::Engine, std::time::Instant, CallHandle) + 'static,
) -> impl FnMut(&mut calls::Engine, std::time::Instant, &Event) + 'static {
    move |engine, now, event| {
        if let Event::Endpoint {
            event: EndpointEvent::CallReceived(received),
            ..
        } = event
        {
            act(engine, now, received.call);
        }
    }
}

fn ring_only(engine: &mut calls::Engine, now: std::time::Instant, call: CallHandle) {
    engine
        .send_provisional(now, call, CallProvisionalResponseOptions::new(180))
        .unwrap();
}

fn decline_with(status: u16) -> impl FnMut(&mut calls::Engine, std::time::Instant, CallHandle) {
    move |engine, now, call| {
        engine
            .decline(now, call, CallDeclineOptions::new(status))
            .unwrap();
    }
}

/// Answers one second after ringing (the app keeps the call and answers on a timer
/// the test drives: here, on the next event of the call after 1 s of virtual time is
/// simpler done by the test itself).
fn established_with(net: &Net, node: usize) -> Option<CallHandle> {
    net.received(node).into_iter().map(|r| r.call).find(|c| {
        states(&net.call_events(node, *c))
            .iter()
            .any(|(_, s, _)| *s == CallState::Established)
    })
}

#[test]
fn parallel_ring_first_answer_wins_and_the_other_gets_cancel_with_reason() {
    let (mut net, a_call, bridges) = four(
        RingStrategy::Parallel,
        None,
        on_call(ring_only),
        on_call(ring_only),
    );
    net.run_for(Duration::from_secs(1));
    // Both ring at once, each with its own header.
    let b_in = net.only_received(B);
    let c_in = net.only_received(C);
    assert!(
        b_in.headers
            .iter()
            .any(|h| h.name == "X-Target" && h.value == BOB)
    );
    assert!(
        c_in.headers
            .iter()
            .any(|h| h.name == "X-Target" && h.value == CAROL)
    );
    // Carol answers.
    let now = net.now;
    net.engine(C)
        .accept(now, c_in.call, CallAcceptOptions::new())
        .unwrap();
    net.run_for(Duration::from_secs(3));
    assert_eq!(
        net.engine(A).call_state(a_call),
        Some(CallState::Established)
    );
    assert_eq!(established_with(&net, C), Some(c_in.call));
    assert_eq!(
        last_state(&net, B, b_in.call),
        Some((CallState::Terminated, R::RemoteCancelled))
    );
    let cancel = net.requests(T, Method::Cancel);
    assert_eq!(cancel.len(), 1);
    assert_eq!(
        header_values(&cancel[0].1.headers, "Reason"),
        vec!["SIP;cause=200;text=\"Call completed elsewhere\""]
    );
    let bridge = bridges.borrow()[0];
    let (_, leg_b) = net.engine(T).bridge_legs(bridge).unwrap();
    assert_eq!(
        net.engine(T).call_state(leg_b),
        Some(CallState::Established)
    );
    assert_eq!(
        net.engine(T).bridge_state(bridge),
        Some(B2bState::Established)
    );
}

#[test]
fn sequential_ring_tries_the_next_target_after_a_busy_or_a_timeout() {
    // Bob is busy: carol is tried and answers.
    let (mut net, a_call, _) = four(
        RingStrategy::Sequential,
        None,
        on_call(decline_with(486)),
        accept_all(CallAcceptOptions::new()),
    );
    net.run_for(Duration::from_secs(3));
    assert_eq!(
        net.engine(A).call_state(a_call),
        Some(CallState::Established)
    );
    assert!(established_with(&net, C).is_some());
    // Bob's INVITE went first and alone.
    let t_invites = net.requests(T, Method::Invite);
    assert_eq!(t_invites[0].1.uri.as_ref(), BOB.as_bytes());

    // Bob rings past his 5 s: he is cancelled, carol answers.
    let (mut net, a_call, _) = four(
        RingStrategy::Sequential,
        Some(Duration::from_secs(5)),
        on_call(ring_only),
        accept_all(CallAcceptOptions::new()),
    );
    net.run_for(Duration::from_secs(4));
    assert!(
        net.received(C).is_empty(),
        "carol rang before bob's time was up"
    );
    net.run_for(Duration::from_secs(4));
    assert_eq!(
        net.engine(A).call_state(a_call),
        Some(CallState::Established)
    );
    let b_call = net.only_received(B).call;
    assert_eq!(
        last_state(&net, B, b_call),
        Some((CallState::Terminated, R::RemoteCancelled))
    );
}

#[test]
fn when_every_target_fails_a_gets_the_most_telling_failure() {
    for ring in [RingStrategy::Sequential, RingStrategy::Parallel] {
        // 486 then 603: the 6xx wins (RFC 3261 §16.7).
        let (mut net, a_call, bridges) = four(
            ring,
            None,
            on_call(decline_with(486)),
            on_call(decline_with(603)),
        );
        net.run_for(Duration::from_secs(3));
        let failure = net
            .call_events(A, a_call)
            .into_iter()
            .find_map(|e| match e {
                CallEvent::EstablishCompleted { result: Err(f) } => Some(f),
                _ => None,
            })
            .unwrap();
        assert!(
            matches!(failure, EstablishFailure::Refused { status: 603, .. }),
            "{ring:?}: {failure:?}"
        );
        let bridge = bridges.borrow()[0];
        assert_eq!(net.engine(T).bridge_state(bridge), None);
        net.assert_quiet();
    }
    // Parallel: a 6xx from carol while bob rings cancels bob at once.
    let (mut net, a_call, _) = four(
        RingStrategy::Parallel,
        None,
        on_call(ring_only),
        on_call(decline_with(600)),
    );
    net.run_for(Duration::from_secs(3));
    let b_call = net.only_received(B).call;
    assert_eq!(
        last_state(&net, B, b_call),
        Some((CallState::Terminated, R::RemoteCancelled))
    );
    assert_eq!(
        last_state(&net, A, a_call).map(|(s, _)| s),
        Some(CallState::Terminated)
    );
    assert_eq!(net.statuses(T, Method::Invite).last(), Some(&600));
}

#[test]
fn a_cancel_from_a_cancels_every_ringing_target() {
    let (mut net, a_call, bridges) = four(
        RingStrategy::Parallel,
        None,
        on_call(ring_only),
        on_call(ring_only),
    );
    net.run_for(Duration::from_secs(1));
    let now = net.now;
    net.engine(A)
        .terminate(now, a_call, CallTerminateOptions::new())
        .unwrap();
    net.run_for(Duration::from_secs(3));
    for node in [B, C] {
        let call = net.only_received(node).call;
        assert_eq!(
            last_state(&net, node, call),
            Some((CallState::Terminated, R::RemoteCancelled))
        );
    }
    assert_eq!(net.engine(T).bridge_state(bridges.borrow()[0]), None);
    net.assert_quiet();
}

/// A–T–B bridged in `mode`, with carol (C) on the net answering as `c_app` says.
fn bridged_with_carol(
    mode: BridgeMode,
    c_app: impl FnMut(&mut calls::Engine, std::time::Instant, &Event) + 'static,
) -> (Net, CallHandle, CallHandle, B2bHandle) {
    let (mut net, alice, bridges) = three_with(
        move || BridgeOptions::new().mode(mode),
        plain_config(1),
        plain_config(2),
    );
    let c = net.add("127.0.0.4:5060", plain_config(4));
    net.engine(c)
        .add_application_endpoint(ApplicationEndpointSettings::new(CAROL))
        .unwrap();
    net.set_app(C, c_app);
    let (a_call, b_call, bridge) = bridged(&mut net, alice, &bridges);
    (net, a_call, b_call, bridge)
}

#[test]
fn a_rebridge_moves_leg_a_to_a_new_target_in_both_modes() {
    for mode in [BridgeMode::SignalingOnly, BridgeMode::MediaAnchored] {
        let (mut net, a_call, b_call, bridge) =
            bridged_with_carol(mode, accept_all(CallAcceptOptions::new()));
        let now = net.now;
        let new_leg = net
            .engine(T)
            .rebridge(
                now,
                bridge,
                BridgeTarget::new(CAROL).header("X-Why", "rebridge"),
            )
            .unwrap();
        net.run_for(Duration::from_secs(3));
        let ctx = format!("{mode:?}\n{}", trace(&net));
        let c_in = net.only_received(C);
        assert!(c_in.headers.iter().any(|h| h.name == "X-Why"), "{ctx}");
        assert_eq!(
            net.engine(C).call_state(c_in.call),
            Some(CallState::Established),
            "{ctx}"
        );
        // B was hung up by T; A stayed up throughout.
        assert_eq!(
            last_state(&net, B, b_call),
            Some((CallState::Terminated, R::RemoteTerminated)),
            "{ctx}"
        );
        assert_eq!(
            net.engine(A).call_state(a_call),
            Some(CallState::Established)
        );
        assert_eq!(net.engine(T).bridge_legs(bridge).unwrap().1, new_leg);
        assert!(
            bridge_events(&net, bridge)
                .iter()
                .any(|e| matches!(e, B2bEvent::Rebridged { leg, .. } if *leg == new_leg))
        );
        match mode {
            BridgeMode::SignalingOnly => {
                // A got carol's SDP in a re-INVITE, with the origin it knew (bob's)
                // one version on; carol got A's SDP.
                let reoffer = reinvite_bodies(&net, T);
                assert_eq!(reoffer.len(), 1, "{ctx}");
                let text = String::from_utf8_lossy(&reoffer[0]).into_owned();
                assert!(text.contains("c=IN IP4 127.0.0.4"), "{text}");
                let first_answer = net
                    .responses(T)
                    .into_iter()
                    .map(|(_, r)| r)
                    .find(|r| r.status == 200)
                    .unwrap();
                let origin = |sdp: &str| {
                    sdp.lines()
                        .find(|l| l.starts_with("o="))
                        .unwrap()
                        .split(' ')
                        .map(str::to_owned)
                        .collect::<Vec<_>>()
                };
                let (old, new) = (
                    origin(&String::from_utf8_lossy(&first_answer.body)),
                    origin(&text),
                );
                assert_eq!(old[0..2], new[0..2]);
                assert_eq!(
                    new[2].parse::<u64>().unwrap(),
                    old[2].parse::<u64>().unwrap() + 1
                );
                assert_eq!(
                    c_in.offer.as_deref(),
                    net.requests(A, Method::Invite)[0].1.body.get(..)
                );
            }
            BridgeMode::MediaAnchored => {
                // No re-INVITE to A: the relay was re-joined.
                assert!(reinvite_bodies(&net, T).is_empty(), "{ctx}");
                let (leg_a, _) = net.engine(T).bridge_legs(bridge).unwrap();
                let joins: Vec<_> = net
                    .media_log
                    .iter()
                    .filter(|(n, c, i)| {
                        *n == T
                            && *c == leg_a
                            && matches!(
                                i,
                                MediaInstruction::Join { .. } | MediaInstruction::Unjoin { .. }
                            )
                    })
                    .map(|(_, _, i)| i.clone())
                    .collect();
                assert_eq!(joins.len(), 3, "{joins:?}");
                assert_eq!(joins[2], MediaInstruction::Join { peer: new_leg });
                assert_eq!(net.hears(A, a_call), Some((C, c_in.call)));
                assert_eq!(net.hears(C, c_in.call), Some((A, a_call)));
            }
            _ => unreachable!(),
        }
        // A hangs up: carol's leg ends too.
        let now = net.now;
        net.engine(A)
            .terminate(now, a_call, CallTerminateOptions::new())
            .unwrap();
        net.run_for(Duration::from_secs(2));
        assert_eq!(
            last_state(&net, C, c_in.call),
            Some((CallState::Terminated, R::RemoteTerminated))
        );
        assert_eq!(net.engine(T).bridge_state(bridge), None);
        net.assert_quiet();
    }
}

#[test]
fn a_rebridge_to_a_busy_target_leaves_a_with_b() {
    let (mut net, a_call, b_call, bridge) =
        bridged_with_carol(BridgeMode::SignalingOnly, on_call(decline_with(486)));
    let now = net.now;
    net.engine(T)
        .rebridge(now, bridge, BridgeTarget::new(CAROL))
        .unwrap();
    net.run_for(Duration::from_secs(3));
    assert!(bridge_events(&net, bridge).iter().any(|e| matches!(
        e,
        B2bEvent::RebridgeFailed {
            failure: EstablishFailure::Refused { status: 486, .. }
        }
    )));
    assert_eq!(
        net.engine(A).call_state(a_call),
        Some(CallState::Established)
    );
    assert_eq!(
        net.engine(B).call_state(b_call),
        Some(CallState::Established)
    );
    assert_eq!(
        net.engine(T).bridge_state(bridge),
        Some(B2bState::Established)
    );
    assert!(reinvite_bodies(&net, T).is_empty());
    // The bridge still works: B hangs up, A is ended.
    let now = net.now;
    net.engine(B)
        .terminate(now, b_call, CallTerminateOptions::new())
        .unwrap();
    net.run_for(Duration::from_secs(2));
    assert_eq!(
        last_state(&net, A, a_call),
        Some((CallState::Terminated, R::RemoteTerminated))
    );
}

fn transfer_completed(net: &Net, node: usize, call: CallHandle) -> Vec<(u16, TransferOutcome)> {
    net.call_events(node, call)
        .into_iter()
        .filter_map(|e| match e {
            CallEvent::TransferCompleted {
                final_status,
                reason,
                ..
            } => Some((final_status, reason)),
            _ => None,
        })
        .collect()
}

#[test]
fn a_refer_from_b_bridges_a_to_the_target_and_b_hears_the_progress() {
    for mode in [BridgeMode::SignalingOnly, BridgeMode::MediaAnchored] {
        let (mut net, a_call, b_call, bridge) =
            bridged_with_carol(mode, accept_all(CallAcceptOptions::new()));
        let now = net.now;
        net.engine(B)
            .transfer(
                now,
                b_call,
                CAROL,
                CallTransferOptions::new()
                    .header("X-Case", "blind")
                    .user_to_user("c0ffee;encoding=hex"),
            )
            .unwrap();
        net.run_for(Duration::from_secs(5));
        let ctx = format!("{mode:?}\n{}", trace(&net));
        // Carol got the INVITE with Referred-By (bob), the custom header and UUI.
        let c_in = net.only_received(C);
        let has = |name: &str, needle: &str| {
            c_in.headers
                .iter()
                .any(|h| h.name.eq_ignore_ascii_case(name) && h.value.contains(needle))
        };
        assert!(has("Referred-By", "bob"), "{ctx}");
        assert!(has("X-Case", "blind"), "{ctx}");
        assert!(has("User-to-User", "c0ffee"), "{ctx}");
        // Bob heard 100, 180?, 200 and hung up; alice now talks to carol.
        assert_eq!(
            transfer_completed(&net, B, b_call),
            vec![(200, TransferOutcome::Accepted)],
            "{ctx}"
        );
        assert_eq!(
            last_state(&net, B, b_call).map(|(s, _)| s),
            Some(CallState::Terminated),
            "{ctx}"
        );
        assert_eq!(
            net.engine(A).call_state(a_call),
            Some(CallState::Established)
        );
        assert_eq!(
            net.engine(C).call_state(c_in.call),
            Some(CallState::Established)
        );
        assert_eq!(
            net.engine(T).bridge_state(bridge),
            Some(B2bState::Established)
        );
        // Alice hangs up: carol's call ends.
        let now = net.now;
        net.engine(A)
            .terminate(now, a_call, CallTerminateOptions::new())
            .unwrap();
        net.run_for(Duration::from_secs(2));
        assert_eq!(
            last_state(&net, C, c_in.call),
            Some((CallState::Terminated, R::RemoteTerminated)),
            "{ctx}"
        );
        net.run_for(Duration::from_secs(40));
        net.assert_quiet();
    }
}

#[test]
fn a_refer_to_a_busy_target_ends_in_486_and_a_stays_with_b() {
    let (mut net, a_call, b_call, bridge) =
        bridged_with_carol(BridgeMode::SignalingOnly, on_call(decline_with(486)));
    let now = net.now;
    net.engine(B)
        .transfer(now, b_call, CAROL, CallTransferOptions::new())
        .unwrap();
    net.run_for(Duration::from_secs(5));
    assert_eq!(
        transfer_completed(&net, B, b_call),
        vec![(486, TransferOutcome::Busy)],
        "{}",
        trace(&net)
    );
    assert_eq!(
        net.engine(A).call_state(a_call),
        Some(CallState::Established)
    );
    assert_eq!(
        net.engine(B).call_state(b_call),
        Some(CallState::Established)
    );
    assert_eq!(
        net.engine(T).bridge_state(bridge),
        Some(B2bState::Established)
    );
    assert!(reinvite_bodies(&net, T).is_empty());
}

#[test]
fn a_refer_from_a_moves_b_to_the_target() {
    let (mut net, a_call, b_call, bridge) = bridged_with_carol(
        BridgeMode::SignalingOnly,
        accept_all(CallAcceptOptions::new()),
    );
    let now = net.now;
    net.engine(A)
        .transfer(now, a_call, CAROL, CallTransferOptions::new())
        .unwrap();
    net.run_for(Duration::from_secs(5));
    assert_eq!(
        transfer_completed(&net, A, a_call),
        vec![(200, TransferOutcome::Accepted)],
        "{}",
        trace(&net)
    );
    let c_in = net.only_received(C);
    assert_eq!(
        net.engine(B).call_state(b_call),
        Some(CallState::Established)
    );
    assert_eq!(
        net.engine(C).call_state(c_in.call),
        Some(CallState::Established)
    );
    // Bob hangs up: carol is ended.
    let now = net.now;
    net.engine(B)
        .terminate(now, b_call, CallTerminateOptions::new())
        .unwrap();
    net.run_for(Duration::from_secs(2));
    assert_eq!(
        last_state(&net, C, c_in.call),
        Some((CallState::Terminated, R::RemoteTerminated))
    );
    assert_eq!(net.engine(T).bridge_state(bridge), None);
}

// ---- attended transfer across two bridges (REFER with Replaces naming T's own dialog)

/// A, B, T and C, with the calls of an attended transfer ready: T bridges alice's call
/// to bob (bridge 1: A's call `a_call`, B's `b_call`), and a call from bob to carol, or
/// from carol to bob (bridge 2: B's `consult`, C's `c_call`).
struct World {
    net: Net,
    a_call: CallHandle,
    b_call: CallHandle,
    consult: CallHandle,
    c_call: CallHandle,
    bridge1: B2bHandle,
    bridge2: B2bHandle,
}

const C_ADDR4: &str = "127.0.0.4:5060";

/// What T does with a call from `from`: bridge it (target, mode), or answer it itself.
type Route = fn(&str, BridgeMode, BridgeMode) -> Option<(&'static str, BridgeMode)>;

fn standard_route(
    from: &str,
    first: BridgeMode,
    second: BridgeMode,
) -> Option<(&'static str, BridgeMode)> {
    Some(if from.contains("alice") {
        (BOB, first)
    } else if from.contains("bob") {
        (CAROL, second)
    } else {
        (BOB, second)
    })
}

/// The four engines (configs: A, B, T, C); T routes with `route`, B and C answer all.
fn four_parties(
    first: BridgeMode,
    second: BridgeMode,
    configs: [EngineConfig; 4],
    route: Route,
) -> (Net, [EndpointHandle; 3], Rc<RefCell<Vec<B2bHandle>>>) {
    let [a, b, t, c] = configs;
    let (mut net, alice, bob) = Net::pair_with(a, b);
    assert_eq!(net.add(T_ADDR, t), T);
    assert_eq!(net.add(C_ADDR4, c), C);
    net.engine(T)
        .add_application_endpoint(ApplicationEndpointSettings::new(T_URI))
        .unwrap();
    let carol = net
        .engine(C)
        .add_application_endpoint(ApplicationEndpointSettings::new(CAROL))
        .unwrap();
    let bridges = Rc::new(RefCell::new(Vec::new()));
    let made = bridges.clone();
    net.set_app(T, move |engine, now, event| {
        if let Event::Endpoint {
            event: EndpointEvent::CallReceived(received),
            ..
        } = event
        {
            match route(&received.from, first, second) {
                Some((target, mode)) => {
                    let bridge = engine
                        .bridge(now, received.call, target, BridgeOptions::new().mode(mode))
                        .expect("bridge");
                    made.borrow_mut().push(bridge);
                }
                None => engine
                    .accept(now, received.call, CallAcceptOptions::new())
                    .expect("accept"),
            }
        }
    });
    net.set_app(B, accept_all(CallAcceptOptions::new()));
    net.set_app(C, accept_all(CallAcceptOptions::new()));
    (net, [alice, bob, carol], bridges)
}

fn dial_from(net: &mut Net, node: usize, endpoint: EndpointHandle, uri: &str) -> CallHandle {
    let now = net.now;
    let engine = net.engine(node);
    let conversation = engine
        .new_conversation(endpoint, ConversationSettings::default())
        .unwrap();
    let call = engine.new_call(conversation, CallKind::AudioVideo).unwrap();
    engine
        .establish(now, call, uri, CallEstablishOptions::new())
        .unwrap();
    call
}

fn configs() -> [EngineConfig; 4] {
    [
        plain_config(1),
        plain_config(2),
        plain_config(3),
        plain_config(4),
    ]
}

/// A calls T (bridged to B); then B calls C through T, or C calls B through T.
fn world(
    first: BridgeMode,
    second: BridgeMode,
    c_calls_b: bool,
    configs: [EngineConfig; 4],
) -> World {
    let (mut net, [alice, bob, carol], bridges) =
        four_parties(first, second, configs, standard_route);
    let a_call = dial_from(&mut net, A, alice, T_URI);
    net.run_for(Duration::from_secs(2));
    let b_call = net.only_received(B).call;
    let (consult, c_call) = if c_calls_b {
        let c_call = dial_from(&mut net, C, carol, T_URI);
        net.run_for(Duration::from_secs(2));
        (net.received(B)[1].call, c_call)
    } else {
        let consult = dial_from(&mut net, B, bob, T_URI);
        net.run_for(Duration::from_secs(2));
        (consult, net.only_received(C).call)
    };
    for (node, call) in [(A, a_call), (B, b_call), (B, consult), (C, c_call)] {
        assert_eq!(
            net.engine(node).call_state(call),
            Some(CallState::Established),
            "{}",
            trace(&net)
        );
    }
    let (bridge1, bridge2) = {
        let made = bridges.borrow();
        assert_eq!(made.len(), 2);
        (made[0], made[1])
    };
    World {
        net,
        a_call,
        b_call,
        consult,
        c_call,
        bridge1,
        bridge2,
    }
}

/// The `o=` line of an SDP, split into its fields.
fn origin_of(sdp: &[u8]) -> Vec<String> {
    String::from_utf8_lossy(sdp)
        .lines()
        .find(|l| l.starts_with("o="))
        .unwrap()
        .split(' ')
        .map(str::to_owned)
        .collect()
}

/// The requests of `method` that `from` sent to `to`'s address.
fn sent_to(net: &Net, from: usize, to: usize, method: Method) -> Vec<sip_message::Request> {
    let addr = net.nodes[to].addr.ip().to_string();
    net.requests(from, method)
        .into_iter()
        .map(|(_, r)| r)
        .filter(|r| String::from_utf8_lossy(&r.uri).contains(&addr))
        .collect()
}

/// The SDP bodies of the re-INVITEs `from` sent to `to`, retransmissions merged.
fn reinvites_to(net: &Net, from: usize, to: usize) -> Vec<bytes::Bytes> {
    let mut bodies: Vec<_> = sent_to(net, from, to, Method::Invite)
        .into_iter()
        .filter(|r| header_values(&r.headers, "To")[0].contains("tag="))
        .map(|r| r.body)
        .collect();
    bodies.dedup();
    bodies
}

/// The first 2xx body `node` sent to an INVITE (no To tag) from `to`'s address... the
/// answer `node` gave in the call's first INVITE transaction with Call-ID `call_id`.
fn first_answer(net: &Net, node: usize, call_id: &str) -> bytes::Bytes {
    net.responses(node)
        .into_iter()
        .map(|(_, r)| r)
        .find(|r| {
            r.status == 200
                && r.headers.call_id().ok() == Some(call_id)
                && r.headers.cseq().is_ok_and(|c| c.method == Method::Invite)
        })
        .unwrap()
        .body
}

fn call_id_of(net: &Net, node: usize, method: Method, uri_has: &str) -> String {
    net.requests(node, method)
        .into_iter()
        .map(|(_, r)| r)
        .find(|r| String::from_utf8_lossy(&r.uri).contains(uri_has))
        .unwrap()
        .headers
        .call_id()
        .unwrap()
        .to_owned()
}

fn t_media(net: &Net) -> Vec<(CallHandle, MediaInstruction)> {
    net.media_log
        .iter()
        .filter(|(node, _, i)| {
            *node == T
                && matches!(
                    i,
                    MediaInstruction::Join { .. } | MediaInstruction::Unjoin { .. }
                )
        })
        .map(|(_, call, i)| (*call, i.clone()))
        .collect()
}

#[test]
fn an_attended_transfer_across_two_bridges_joins_a_with_c_in_every_mode() {
    use BridgeMode::{MediaAnchored as M, SignalingOnly as S};
    for (first, second) in [(S, S), (M, M), (S, M), (M, S)] {
        for c_calls_b in [false, true] {
            let mut w = world(first, second, c_calls_b, configs());
            let net = &mut w.net;
            let (a1, b1) = net.engine(T).bridge_legs(w.bridge1).unwrap();
            let (x, y) = {
                let (l, r) = net.engine(T).bridge_legs(w.bridge2).unwrap();
                if c_calls_b { (r, l) } else { (l, r) }
            };
            let initial_invites = |net: &Net| {
                net.requests(T, Method::Invite)
                    .into_iter()
                    .filter(|(_, r)| !header_values(&r.headers, "To")[0].contains("tag="))
                    .count()
            };
            let t_invites = initial_invites(net);
            let received = [A, B, C].map(|n| net.received(n).len());
            let media_before = t_media(net).len();
            let now = net.now;
            net.engine(B)
                .transfer_attended(now, w.b_call, w.consult, CallTransferOptions::new())
                .unwrap();
            net.run_for(Duration::from_secs(5));
            let ctx = format!("{first:?}/{second:?} c_calls_b={c_calls_b}\n{}", trace(net));

            // B heard 200 by NOTIFY and its two calls are over.
            assert_eq!(
                transfer_completed(net, B, w.b_call),
                vec![(200, TransferOutcome::Accepted)],
                "{ctx}"
            );
            for call in [w.b_call, w.consult] {
                assert_eq!(
                    last_state(net, B, call).map(|(s, _)| s),
                    Some(CallState::Terminated),
                    "{ctx}"
                );
            }
            assert_eq!(
                last_state(net, B, w.consult),
                Some((CallState::Terminated, R::RemoteTerminated)),
                "{ctx}"
            );
            // T ended x with a BYE saying why, and b1 was ended by B itself.
            let byes = net.requests(T, Method::Bye);
            assert_eq!(byes.len(), 1, "{ctx}");
            assert_eq!(
                header_values(&byes[0].1.headers, "Reason"),
                vec!["SIP;cause=200;text=\"Call replaced\""]
            );
            assert_eq!(
                last_state(net, T, b1),
                Some((CallState::Terminated, R::RemoteTerminated)),
                "{ctx}"
            );
            assert_eq!(
                last_state(net, T, x),
                Some((CallState::Terminated, R::Replaced)),
                "{ctx}"
            );
            // No INVITE went anywhere: only re-INVITEs, and only where media changed.
            assert_eq!(initial_invites(net), t_invites, "{ctx}");
            assert_eq!([A, B, C].map(|n| net.received(n).len()), received, "{ctx}");
            // Bridge 1 now joins a1 and y; bridge 2 ended, naming the replaced leg.
            assert_eq!(net.engine(T).bridge_legs(w.bridge1), Some((a1, y)), "{ctx}");
            assert_eq!(
                net.engine(T).bridge_state(w.bridge1),
                Some(B2bState::Established)
            );
            assert_eq!(net.engine(T).bridge_of(y), Some((w.bridge1, B2bLeg::B)));
            assert!(bridge_events(net, w.bridge1).contains(&B2bEvent::Joined {
                other: w.bridge2,
                previous: b1,
                leg: y
            }));
            assert_eq!(net.engine(T).bridge_state(w.bridge2), None);
            let x_leg = if c_calls_b { B2bLeg::B } else { B2bLeg::A };
            assert_eq!(
                bridge_states(net, w.bridge2).last(),
                Some(&(B2bState::Terminated, x_leg)),
                "{ctx}"
            );
            let expected_mode = if (first, second) == (S, S) { S } else { M };
            assert_eq!(net.engine(T).bridge_mode(w.bridge1), Some(expected_mode));
            // A hears C, and C hears A.
            assert_eq!(net.hears(A, w.a_call), Some((C, w.c_call)), "{ctx}");
            assert_eq!(net.hears(C, w.c_call), Some((A, w.a_call)), "{ctx}");

            let to_a = reinvites_to(net, T, A);
            let to_c = reinvites_to(net, T, C);
            let joins = t_media(net).split_off(media_before);
            match (first, second) {
                (S, S) => {
                    // C got A's SDP, then A got C's answer; each with the origin its
                    // peer knew, one version on.
                    assert_eq!((to_a.len(), to_c.len()), (1, 1), "{ctx}");
                    let a_offer = net.requests(A, Method::Invite)[0].1.body.clone();
                    let c_text = String::from_utf8_lossy(&to_c[0]).into_owned();
                    assert!(c_text.contains("c=IN IP4 127.0.0.1"), "{c_text}");
                    let a_text = String::from_utf8_lossy(&to_a[0]).into_owned();
                    assert!(a_text.contains("c=IN IP4 127.0.0.4"), "{a_text}");
                    let a_call_id = net.requests(A, Method::Invite)[0]
                        .1
                        .headers
                        .call_id()
                        .unwrap()
                        .to_owned();
                    let a_knew = origin_of(&first_answer(net, T, &a_call_id));
                    let a_got = origin_of(&to_a[0]);
                    assert_eq!(a_knew[..2], a_got[..2], "{ctx}");
                    assert_eq!(
                        a_got[2].parse::<u64>().unwrap(),
                        a_knew[2].parse::<u64>().unwrap() + 1
                    );
                    let c_got = origin_of(&to_c[0]);
                    assert_ne!(c_got[..2], origin_of(&a_offer)[..2]);
                    // Apart from its origin line, what C got is A's offer.
                    let strip = |sdp: &[u8]| {
                        String::from_utf8_lossy(sdp)
                            .lines()
                            .filter(|l| !l.starts_with("o="))
                            .collect::<Vec<_>>()
                            .join("\n")
                    };
                    assert_eq!(strip(&to_c[0]), strip(&a_offer));
                    assert!(joins.is_empty(), "{joins:?}");
                }
                (M, M) => {
                    assert!(to_a.is_empty() && to_c.is_empty(), "{ctx}");
                    assert_eq!(
                        joins,
                        vec![
                            (a1, MediaInstruction::Unjoin { peer: b1 }),
                            (y, MediaInstruction::Unjoin { peer: x }),
                            (a1, MediaInstruction::Join { peer: y }),
                        ]
                    );
                }
                (S, M) => {
                    // A was moved onto Tandem's media, then joined to y.
                    assert_eq!((to_a.len(), to_c.len()), (1, 0), "{ctx}");
                    let text = String::from_utf8_lossy(&to_a[0]).into_owned();
                    assert!(text.contains("c=IN IP4 127.0.0.3"), "{text}");
                    assert_eq!(
                        joins,
                        vec![
                            (y, MediaInstruction::Unjoin { peer: x }),
                            (a1, MediaInstruction::Join { peer: y }),
                        ]
                    );
                }
                (M, S) => {
                    assert_eq!((to_a.len(), to_c.len()), (0, 1), "{ctx}");
                    let text = String::from_utf8_lossy(&to_c[0]).into_owned();
                    assert!(text.contains("c=IN IP4 127.0.0.3"), "{text}");
                    assert_eq!(
                        joins,
                        vec![
                            (a1, MediaInstruction::Unjoin { peer: b1 }),
                            (a1, MediaInstruction::Join { peer: y }),
                        ]
                    );
                }
                _ => unreachable!(),
            }

            // The remaining bridge ends both when A hangs up (or C, the other time).
            let (who, mine, other, theirs) = if c_calls_b {
                (C, w.c_call, A, w.a_call)
            } else {
                (A, w.a_call, C, w.c_call)
            };
            let now = net.now;
            net.engine(who)
                .terminate(now, mine, CallTerminateOptions::new())
                .unwrap();
            net.run_for(Duration::from_secs(2));
            assert_eq!(
                last_state(net, other, theirs),
                Some((CallState::Terminated, R::RemoteTerminated)),
                "{ctx}"
            );
            assert_eq!(net.engine(T).bridge_state(w.bridge1), None);
            net.assert_quiet();
        }
    }
}

#[test]
fn a_transferor_that_keeps_its_leg_is_hung_up_after_32_s() {
    let mut w = world(
        BridgeMode::SignalingOnly,
        BridgeMode::SignalingOnly,
        false,
        configs(),
    );
    let net = &mut w.net;
    let (_, b1) = net.engine(T).bridge_legs(w.bridge1).unwrap();
    let now = net.now;
    net.engine(B)
        .transfer_attended(
            now,
            w.b_call,
            w.consult,
            CallTransferOptions::new().keep_call(true),
        )
        .unwrap();
    net.run_for(Duration::from_secs(5));
    assert_eq!(
        transfer_completed(net, B, w.b_call),
        vec![(200, TransferOutcome::Accepted)]
    );
    assert_eq!(
        net.engine(B).call_state(w.b_call),
        Some(CallState::Established)
    );
    // When T's final NOTIFY went.
    let notified = net
        .requests(T, Method::Notify)
        .into_iter()
        .find(|(_, r)| String::from_utf8_lossy(&r.body).contains("200 OK"))
        .unwrap()
        .0;
    net.run_for(Duration::from_secs(40));
    let byes: Vec<_> = net
        .requests(T, Method::Bye)
        .into_iter()
        .filter(|(_, r)| {
            header_values(&r.headers, "Reason") != vec!["SIP;cause=200;text=\"Call replaced\""]
        })
        .collect();
    assert_eq!(byes.len(), 1, "{}", trace(net));
    assert!(byes[0].0 >= notified + calls::TRANSFEROR_HANGUP_TIME);
    assert!(byes[0].0 < notified + calls::TRANSFEROR_HANGUP_TIME + Duration::from_secs(1));
    assert_eq!(
        header_values(&byes[0].1.headers, "Reason"),
        vec!["SIP;cause=200;text=\"Call transferred\""]
    );
    assert_eq!(
        last_state(net, B, w.b_call),
        Some((CallState::Terminated, R::RemoteTerminated))
    );
    assert_eq!(
        last_state(net, T, b1),
        Some((CallState::Terminated, R::Transferred))
    );
    // A and C still talk.
    assert_eq!(net.hears(A, w.a_call), Some((C, w.c_call)));
    let now = net.now;
    net.engine(C)
        .terminate(now, w.c_call, CallTerminateOptions::new())
        .unwrap();
    net.run_for(Duration::from_secs(2));
    assert_eq!(
        last_state(net, A, w.a_call),
        Some((CallState::Terminated, R::RemoteTerminated))
    );
    net.assert_quiet();
}

#[test]
fn attended_transfers_across_bridges_survive_ten_percent_loss() {
    for mode in [BridgeMode::SignalingOnly, BridgeMode::MediaAnchored] {
        for seed in 0..4u64 {
            let (mut net, [alice, bob, _], bridges) =
                four_parties(mode, mode, configs(), standard_route);
            net.reseed(seed);
            net.loss_percent = 10;
            let a_call = dial_from(&mut net, A, alice, T_URI);
            net.run_for(Duration::from_secs(40));
            let consult = dial_from(&mut net, B, bob, T_URI);
            net.run_for(Duration::from_secs(40));
            let ctx = format!("{mode:?} seed {seed}");
            let b_call = net.only_received(B).call;
            let c_call = net.only_received(C).call;
            for (node, call) in [(A, a_call), (B, b_call), (B, consult), (C, c_call)] {
                assert_eq!(
                    net.engine(node).call_state(call),
                    Some(CallState::Established),
                    "{ctx}\n{}",
                    trace(&net)
                );
            }
            let now = net.now;
            net.engine(B)
                .transfer_attended(now, b_call, consult, CallTransferOptions::new())
                .unwrap();
            net.run_for(Duration::from_secs(60));
            let ctx = format!("{ctx}\n{}", trace(&net));
            assert_eq!(
                transfer_completed(&net, B, b_call),
                vec![(200, TransferOutcome::Accepted)],
                "{ctx}"
            );
            for call in [b_call, consult] {
                assert_eq!(net.engine(B).call_state(call), None, "{ctx}");
            }
            assert_eq!(net.hears(A, a_call), Some((C, c_call)), "{ctx}");
            assert_eq!(net.hears(C, c_call), Some((A, a_call)), "{ctx}");
            let bridge1 = bridges.borrow()[0];
            let now = net.now;
            net.engine(A)
                .terminate(now, a_call, CallTerminateOptions::new())
                .unwrap();
            net.run_for(Duration::from_secs(60));
            assert_eq!(
                last_state(&net, C, c_call),
                Some((CallState::Terminated, R::RemoteTerminated)),
                "{ctx}"
            );
            assert_eq!(net.engine(T).bridge_state(bridge1), None, "{ctx}");
            net.loss_percent = 0;
            net.assert_quiet();
        }
    }
}

/// Every bridge of `net`'s T that is still up, and that A hears B and C hears B.
fn nothing_changed(w: &mut World, ctx: &str) {
    let net = &mut w.net;
    for bridge in [w.bridge1, w.bridge2] {
        assert_eq!(
            net.engine(T).bridge_state(bridge),
            Some(B2bState::Established),
            "{ctx}"
        );
    }
    for (node, call) in [(A, w.a_call), (B, w.b_call), (B, w.consult), (C, w.c_call)] {
        assert_eq!(
            net.engine(node).call_state(call),
            Some(CallState::Established),
            "{ctx}"
        );
    }
    assert_eq!(net.hears(A, w.a_call), Some((B, w.b_call)), "{ctx}");
    assert_eq!(net.hears(C, w.c_call), Some((B, w.consult)), "{ctx}");
}

/// Both bridges still work: B hangs up each of its calls and the far party is ended.
fn hang_up_b(w: &mut World) {
    let net = &mut w.net;
    for (mine, other, theirs) in [(w.consult, C, w.c_call), (w.b_call, A, w.a_call)] {
        let now = net.now;
        net.engine(B)
            .terminate(now, mine, CallTerminateOptions::new())
            .unwrap();
        net.run_for(Duration::from_secs(2));
        assert_eq!(
            last_state(net, other, theirs),
            Some((CallState::Terminated, R::RemoteTerminated))
        );
    }
    net.assert_quiet();
}

#[test]
fn a_join_the_target_refuses_changes_nothing_and_b_hears_the_status() {
    use BridgeMode::{MediaAnchored as M, SignalingOnly as S};
    // Signalling-only: A speaks only PCMA, C only PCMU (B both): C refuses A's SDP.
    // Mixed: T offers only PCMA, C only PCMU: C refuses Tandem's media.
    for (first, second) in [(S, S), (M, S)] {
        let mut configs = configs();
        if first == S {
            configs[0].codecs = vec![calls::Codec::pcma()];
        } else {
            configs[2].codecs = vec![calls::Codec::pcma()];
        }
        configs[3].codecs = vec![calls::Codec::pcmu()];
        let mut w = world(first, second, false, configs);
        let now = w.net.now;
        w.net
            .engine(B)
            .transfer_attended(now, w.b_call, w.consult, CallTransferOptions::new())
            .unwrap();
        w.net.run_for(Duration::from_secs(5));
        let ctx = format!("{first:?}/{second:?}\n{}", trace(&w.net));
        assert_eq!(
            transfer_completed(&w.net, B, w.b_call),
            vec![(488, TransferOutcome::Failed)],
            "{ctx}"
        );
        assert_eq!(
            w.net.statuses(C, Method::Invite).last(),
            Some(&488),
            "{ctx}"
        );
        assert!(
            bridge_events(&w.net, w.bridge1).iter().any(|e| matches!(
                e,
                B2bEvent::JoinFailed { other, status: 488, .. } if *other == w.bridge2
            )),
            "{ctx}"
        );
        assert!(w.net.requests(T, Method::Bye).is_empty(), "{ctx}");
        nothing_changed(&mut w, &ctx);
        hang_up_b(&mut w);
    }
}

#[test]
fn a_join_the_transferee_never_answers_ends_every_leg_it_touched_with_reason() {
    let mut w = world(
        BridgeMode::SignalingOnly,
        BridgeMode::SignalingOnly,
        false,
        configs(),
    );
    let a_ip = w.net.nodes[A].addr;
    // T's re-INVITE to A is lost, every copy: its transaction times out (408).
    w.net.filter = Some(Box::new(move |message, _, to| {
        !(to == a_ip
            && matches!(message, sip_message::Message::Request(r)
                if r.method == Method::Invite
                    && header_values(&r.headers, "To")[0].contains("tag=")))
    }));
    let now = w.net.now;
    w.net
        .engine(B)
        .transfer_attended(now, w.b_call, w.consult, CallTransferOptions::new())
        .unwrap();
    w.net.run_for(Duration::from_secs(5));
    // C took A's SDP; the join waits for A. Meanwhile both bridges are busy.
    assert_eq!(reinvites_to(&w.net, T, C).len(), 1);
    assert_eq!(
        w.net.engine(T).bridge_state(w.bridge2),
        Some(B2bState::Established)
    );
    let now = w.net.now;
    let (a1, _) = w.net.engine(T).bridge_legs(w.bridge1).unwrap();
    for bridge in [w.bridge1, w.bridge2] {
        assert!(matches!(
            w.net
                .engine(T)
                .rebridge(now, bridge, BridgeTarget::new(BOB)),
            Err(CallError::InvalidArgument { .. })
        ));
    }
    assert!(w.net.engine(T).park(now, a1).is_err());
    w.net.run_for(Duration::from_secs(40));
    let ctx = trace(&w.net);
    assert_eq!(
        transfer_completed(&w.net, B, w.b_call),
        vec![(487, TransferOutcome::Failed)],
        "{ctx}"
    );
    // C, whose media went to A, was hung up with Reason; B's legs followed.
    let to_c: Vec<_> = sent_to(&w.net, T, C, Method::Bye);
    assert_eq!(to_c.len(), 1, "{ctx}");
    let reason = header_values(&to_c[0].headers, "Reason");
    assert!(
        reason.len() == 1 && reason[0].starts_with("SIP;cause=487;text=\"Attended transfer failed"),
        "{reason:?}"
    );
    for (node, call) in [(A, w.a_call), (B, w.b_call), (B, w.consult), (C, w.c_call)] {
        assert_eq!(
            last_state(&w.net, node, call).map(|(s, _)| s),
            Some(CallState::Terminated),
            "{ctx}"
        );
    }
    for bridge in [w.bridge1, w.bridge2] {
        assert_eq!(w.net.engine(T).bridge_state(bridge), None);
    }
    w.net.filter = None;
    w.net.assert_quiet();
}

#[test]
fn a_replaces_naming_a_plain_call_of_t_is_declined_with_603() {
    fn route(from: &str, m: BridgeMode, _: BridgeMode) -> Option<(&'static str, BridgeMode)> {
        from.contains("alice").then_some((BOB, m))
    }
    let (mut net, [alice, bob, _], bridges) = four_parties(
        BridgeMode::SignalingOnly,
        BridgeMode::SignalingOnly,
        configs(),
        route,
    );
    let a_call = dial_from(&mut net, A, alice, T_URI);
    net.run_for(Duration::from_secs(2));
    let b_call = net.only_received(B).call;
    // B calls T, which answers it itself: a plain call, no bridge.
    let plain = dial_from(&mut net, B, bob, T_URI);
    net.run_for(Duration::from_secs(2));
    assert_eq!(
        net.engine(B).call_state(plain),
        Some(CallState::Established)
    );
    let now = net.now;
    net.engine(B)
        .transfer_attended(now, b_call, plain, CallTransferOptions::new())
        .unwrap();
    net.run_for(Duration::from_secs(3));
    assert_eq!(
        transfer_completed(&net, B, b_call),
        vec![(603, TransferOutcome::Refused)]
    );
    assert_eq!(net.statuses(T, Method::Refer), vec![603]);
    assert!(net.requests(T, Method::Notify).is_empty());
    assert!(net.requests(T, Method::Bye).is_empty());
    let bridge = bridges.borrow()[0];
    assert_eq!(
        net.engine(T).bridge_state(bridge),
        Some(B2bState::Established)
    );
    assert_eq!(
        net.engine(A).call_state(a_call),
        Some(CallState::Established)
    );
    assert_eq!(
        net.engine(B).call_state(b_call),
        Some(CallState::Established)
    );
    assert_eq!(
        net.engine(B).call_state(plain),
        Some(CallState::Established)
    );
    for call in [b_call, plain] {
        let now = net.now;
        net.engine(B)
            .terminate(now, call, CallTerminateOptions::new())
            .unwrap();
    }
    net.run_for(Duration::from_secs(2));
    assert_eq!(
        last_state(&net, A, a_call),
        Some((CallState::Terminated, R::RemoteTerminated))
    );
    net.assert_quiet();
}

#[test]
fn a_replaces_naming_a_dialog_t_does_not_have_goes_on_t_s_invite_to_the_target() {
    let (mut net, [alice, bob, _], bridges) = four_parties(
        BridgeMode::SignalingOnly,
        BridgeMode::SignalingOnly,
        configs(),
        standard_route,
    );
    let a_call = dial_from(&mut net, A, alice, T_URI);
    net.run_for(Duration::from_secs(2));
    let b_call = net.only_received(B).call;
    // B consults C directly, not through T.
    let consult = dial_from(&mut net, B, bob, CAROL);
    net.run_for(Duration::from_secs(2));
    let c_old = net.only_received(C).call;
    assert_eq!(
        net.engine(C).call_state(c_old),
        Some(CallState::Established)
    );
    let b_c_call_id = call_id_of(&net, B, Method::Invite, "carol");
    let now = net.now;
    net.engine(B)
        .transfer_attended(now, b_call, consult, CallTransferOptions::new())
        .unwrap();
    net.run_for(Duration::from_secs(5));
    let ctx = trace(&net);
    assert_eq!(
        transfer_completed(&net, B, b_call),
        vec![(200, TransferOutcome::Accepted)],
        "{ctx}"
    );
    // T's INVITE to C carried the Replaces, and C took it as replacing its call with B.
    let invite = sent_to(&net, T, C, Method::Invite)
        .into_iter()
        .find(|r| !header_values(&r.headers, "To")[0].contains("tag="))
        .unwrap();
    let replaces = header_values(&invite.headers, "Replaces");
    assert_eq!(replaces.len(), 1, "{ctx}");
    assert!(replaces[0].starts_with(&b_c_call_id), "{replaces:?}");
    let received = net.received(C);
    assert_eq!(received.len(), 2, "{ctx}");
    assert_eq!(received[1].replaces, Some(c_old));
    let c_new = received[1].call;
    for call in [b_call, consult] {
        assert_eq!(
            last_state(&net, B, call).map(|(s, _)| s),
            Some(CallState::Terminated),
            "{ctx}"
        );
    }
    assert_eq!(net.hears(A, a_call), Some((C, c_new)), "{ctx}");
    let bridge = bridges.borrow()[0];
    let now = net.now;
    net.engine(A)
        .terminate(now, a_call, CallTerminateOptions::new())
        .unwrap();
    net.run_for(Duration::from_secs(2));
    assert_eq!(
        last_state(&net, C, c_new),
        Some((CallState::Terminated, R::RemoteTerminated))
    );
    assert_eq!(net.engine(T).bridge_state(bridge), None);
    net.assert_quiet();
}

#[test]
fn each_leg_has_its_own_options_a_gets_the_accept_headers_b_the_establish_ones() {
    for mode in [BridgeMode::SignalingOnly, BridgeMode::MediaAnchored] {
        let (mut net, alice, bridges) = three_with(
            move || {
                BridgeOptions::new()
                    .mode(mode)
                    .establish(CallEstablishOptions::new().header("X-To-B", "b"))
                    .accept(CallAcceptOptions::new().header("X-To-A", "a"))
            },
            plain_config(1),
            plain_config(2),
        );
        let (a_call, _b_call, _) = bridged(&mut net, alice, &bridges);
        let received = net.only_received(B);
        assert!(
            received.headers.iter().any(|h| h.name == "X-To-B"),
            "{mode:?}"
        );
        assert!(
            !received.headers.iter().any(|h| h.name == "X-To-A"),
            "{mode:?}"
        );
        let headers = net
            .call_events(A, a_call)
            .into_iter()
            .find_map(|e| match e {
                CallEvent::EstablishCompleted { result: Ok(ok) } => Some(ok.headers),
                _ => None,
            })
            .unwrap();
        assert!(
            headers.iter().any(|h| h.name == "X-To-A" && h.value == "a"),
            "{mode:?}"
        );
        assert!(!headers.iter().any(|h| h.name == "X-To-B"), "{mode:?}");
    }
    // A bad header for A is refused at once, naming leg A.
    let (mut net, alice, _) = three();
    let seen = Rc::new(RefCell::new(None));
    let out = seen.clone();
    net.set_app(T, move |engine, now, event| {
        if let Event::Endpoint {
            event: EndpointEvent::CallReceived(received),
            ..
        } = event
        {
            let error = engine
                .bridge(
                    now,
                    received.call,
                    BOB,
                    BridgeOptions::new().accept(CallAcceptOptions::new().header("Via", "x")),
                )
                .unwrap_err();
            *out.borrow_mut() = Some(error.to_string());
            engine
                .decline(now, received.call, CallDeclineOptions::new(500))
                .unwrap();
        }
    });
    dial(&mut net, alice);
    net.run_for(Duration::from_secs(2));
    let error = seen.borrow().clone().unwrap();
    assert!(error.starts_with("leg A:"), "{error}");
}
