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
    ApplicationEndpointSettings, B2bEvent, B2bHandle, B2bLeg, B2bState, BridgeOptions,
    CallAcceptOptions, CallDeclineOptions, CallEstablishOptions, CallEvent, CallHandle, CallKind,
    CallProvisionalResponseOptions, CallState, CallStateTransitionReason as R,
    CallTerminateOptions, ConversationSettings, EndpointEvent, EndpointHandle, EstablishFailure,
    Event,
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
    let (mut net, alice, _bob) = Net::pair();
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
                .bridge(now, received.call, BOB, BridgeOptions::new())
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
