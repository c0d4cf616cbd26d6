//! Two call engines talking over a virtual network on a virtual clock: A (alice at
//! 127.0.0.1) and B (bob at 127.0.0.2), each with test code as its application.
//! Event sequences are asserted exactly where the call model promises an order.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

#[path = "support/net.rs"]
mod net;

use calls::{
    CallAcceptOptions, CallEvent, CallHandle, CallKind, CallState, CallStateTransitionReason as R,
    CallTerminateOptions, ConversationSettings, EndpointHandle, EstablishFailure,
    EstablishSucceeded, FlowConfiguration, MediaFlowState,
};
use net::*;
use sip_message::Method;
use std::time::Duration;

const A: usize = 0;
const B: usize = 1;

/// A new call of `kind` on `node`'s endpoint, in a new conversation.
fn new_call(net: &mut Net, node: usize, endpoint: EndpointHandle, kind: CallKind) -> CallHandle {
    new_call_with(net, node, endpoint, kind, ConversationSettings::default())
}

fn new_call_with(
    net: &mut Net,
    node: usize,
    endpoint: EndpointHandle,
    kind: CallKind,
    settings: ConversationSettings,
) -> CallHandle {
    let engine = net.engine(node);
    let conversation = engine.new_conversation(endpoint, settings).unwrap();
    engine.new_call(conversation, kind).unwrap()
}

fn target_of(node: usize) -> &'static str {
    if node == A { ALICE } else { BOB }
}

/// Places an AV call from `caller` to `callee` (whose application accepts everything)
/// and runs until it is up. Returns (caller's call, callee's call).
fn av_call(
    net: &mut Net,
    caller: usize,
    caller_endpoint: EndpointHandle,
    callee: usize,
) -> (CallHandle, CallHandle) {
    net.set_app(callee, accept_all(CallAcceptOptions::new()));
    let call = new_call(net, caller, caller_endpoint, CallKind::AudioVideo);
    let now = net.now;
    net.engine(caller)
        .establish(now, call, target_of(callee), calls::CallEstablishOptions::new())
        .unwrap();
    net.run_for(Duration::from_secs(1));
    let theirs = net.only_received(callee).call;
    assert_eq!(net.engine(caller).call_state(call), Some(CallState::Established));
    assert_eq!(net.engine(callee).call_state(theirs), Some(CallState::Established));
    (call, theirs)
}

/// The events a caller's AV call raises from `establish` to established, exactly.
fn caller_establish_events() -> Vec<CallEvent> {
    vec![
        CallEvent::StateChanged {
            previous: CallState::Idle,
            state: CallState::Establishing,
            reason: R::Establishing,
        },
        CallEvent::FlowConfigurationRequested {
            kind: CallKind::AudioVideo,
        },
        CallEvent::StateChanged {
            previous: CallState::Establishing,
            state: CallState::Established,
            reason: R::LocalEstablished,
        },
        CallEvent::EstablishCompleted {
            result: Ok(EstablishSucceeded { headers: vec![] }),
        },
        CallEvent::FlowStateChanged {
            previous: MediaFlowState::Idle,
            state: MediaFlowState::Active,
        },
    ]
}

/// The events a callee's AV call raises from the INVITE to established, exactly.
fn callee_establish_events() -> Vec<CallEvent> {
    vec![
        CallEvent::StateChanged {
            previous: CallState::Idle,
            state: CallState::Incoming,
            reason: R::Incoming,
        },
        CallEvent::FlowConfigurationRequested {
            kind: CallKind::AudioVideo,
        },
        CallEvent::StateChanged {
            previous: CallState::Incoming,
            state: CallState::Establishing,
            reason: R::Accepted,
        },
        CallEvent::StateChanged {
            previous: CallState::Establishing,
            state: CallState::Established,
            reason: R::RemoteEstablished,
        },
        CallEvent::FlowStateChanged {
            previous: MediaFlowState::Idle,
            state: MediaFlowState::Active,
        },
    ]
}

/// Drops the headers of `EstablishSucceeded` so sequences can be compared exactly
/// (the headers are asserted by their own test).
fn without_ok_headers(events: Vec<CallEvent>) -> Vec<CallEvent> {
    events
        .into_iter()
        .map(|e| match e {
            CallEvent::EstablishCompleted { result: Ok(_) } => CallEvent::EstablishCompleted {
                result: Ok(EstablishSucceeded { headers: vec![] }),
            },
            other => other,
        })
        .collect()
}

fn ending_by_us() -> Vec<CallEvent> {
    vec![
        CallEvent::StateChanged {
            previous: CallState::Established,
            state: CallState::Terminating,
            reason: R::LocalTerminated,
        },
        CallEvent::FlowStateChanged {
            previous: MediaFlowState::Active,
            state: MediaFlowState::Terminated,
        },
        CallEvent::StateChanged {
            previous: CallState::Terminating,
            state: CallState::Terminated,
            reason: R::LocalTerminated,
        },
    ]
}

fn ending_by_peer() -> Vec<CallEvent> {
    vec![
        CallEvent::FlowStateChanged {
            previous: MediaFlowState::Active,
            state: MediaFlowState::Terminated,
        },
        CallEvent::StateChanged {
            previous: CallState::Established,
            state: CallState::Terminated,
            reason: R::RemoteTerminated,
        },
    ]
}

fn concat(a: Vec<CallEvent>, b: Vec<CallEvent>) -> Vec<CallEvent> {
    a.into_iter().chain(b).collect()
}

/// 1. An AV call each way, ended by each side: the exact events on both sides, the BYE
/// on the wire, the calls gone, and nothing left on either engine after Timer J/K/L.
#[test]
fn av_call_both_ways_ended_by_either_side() {
    for (caller, callee, ender) in [(A, B, A), (A, B, B), (B, A, A), (B, A, B)] {
        let (mut net, alice, bob) = Net::pair();
        let caller_endpoint = if caller == A { alice } else { bob };
        let (ours, theirs) = av_call(&mut net, caller, caller_endpoint, callee);
        let case = format!("caller {caller}, ender {ender}");

        assert_eq!(
            without_ok_headers(net.call_events(caller, ours)),
            caller_establish_events(),
            "{case}"
        );
        assert_eq!(net.call_events(callee, theirs), callee_establish_events(), "{case}");
        let received = net.only_received(callee);
        assert_eq!(received.kind, CallKind::AudioVideo);
        assert!(received.from.contains(target_of(caller)), "{}", received.from);
        assert_eq!(received.request_uri, target_of(callee));
        // The negotiated media: PCMU both sides, to each other's advertised address.
        let conf = net.engine(caller).negotiated(ours).unwrap().audio.clone().unwrap();
        assert_eq!(conf.codec.name, "PCMU");
        assert_eq!(
            conf.remote.unwrap().ip(),
            net.nodes[callee].addr.ip(),
            "{case}"
        );

        let (ender_call, other, other_call) = if ender == caller {
            (ours, callee, theirs)
        } else {
            (theirs, caller, ours)
        };
        let now = net.now;
        net.engine(ender)
            .terminate(now, ender_call, CallTerminateOptions::new())
            .unwrap();
        net.run_for(Duration::from_secs(1));
        assert_eq!(net.requests(ender, Method::Bye).len(), 1, "{case}");
        assert_eq!(net.statuses(other, Method::Bye), [200], "{case}");
        let (ender_establish, other_establish) = if ender == caller {
            (caller_establish_events(), callee_establish_events())
        } else {
            (callee_establish_events(), caller_establish_events())
        };
        assert_eq!(
            without_ok_headers(net.call_events(ender, ender_call)),
            concat(ender_establish, ending_by_us()),
            "{case}"
        );
        assert_eq!(
            without_ok_headers(net.call_events(other, other_call)),
            concat(other_establish, ending_by_peer()),
            "{case}"
        );
        for (node, call) in [(ender, ender_call), (other, other_call)] {
            assert_eq!(net.engine(node).call_state(call), None, "{case}");
            assert_eq!(net.engine(node).flow_state(call), None, "{case}");
            // A gone call refuses commands without panicking.
            let now = net.now;
            assert!(matches!(
                net.engine(node).hold(now, call, calls::HoldType::SendOnly),
                Err(calls::CallError::NoSuchCall(_))
            ));
        }
        net.assert_quiet();
        // The dialog layer keeps stale wake-ups for the session timer (RFC 4028) of
        // the ended session (up to 1800 s); past them, neither engine asks to be woken: the calls'
        // deadlines (the one-hour cap above all) left with the calls.
        let sent = (net.nodes[A].sent.len(), net.nodes[B].sent.len());
        let logged = (net.nodes[A].log.len(), net.nodes[B].log.len());
        net.run_for(Duration::from_secs(1900));
        assert_eq!((net.nodes[A].sent.len(), net.nodes[B].sent.len()), sent);
        assert_eq!((net.nodes[A].log.len(), net.nodes[B].log.len()), logged);
        for node in [A, B] {
            let now = net.now;
            let core = net.engine(node).core().poll_timeout().map(|t| t - now);
            assert_eq!(net.engine(node).poll_timeout().map(|t| t - now), None, "node {node}: {case} {core:?}");
        }
    }
}
