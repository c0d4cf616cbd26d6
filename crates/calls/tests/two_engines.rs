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
    EstablishSucceeded, Event, FlowConfiguration, MediaFlowState,
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
        .establish(
            now,
            call,
            target_of(callee),
            calls::CallEstablishOptions::new(),
        )
        .unwrap();
    net.run_for(Duration::from_secs(1));
    let theirs = net.only_received(callee).call;
    assert_eq!(
        net.engine(caller).call_state(call),
        Some(CallState::Established)
    );
    assert_eq!(
        net.engine(callee).call_state(theirs),
        Some(CallState::Established)
    );
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

/// Case 1: An AV call each way, ended by each side: the exact events on both sides, the BYE
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
        assert_eq!(
            net.call_events(callee, theirs),
            callee_establish_events(),
            "{case}"
        );
        let received = net.only_received(callee);
        assert_eq!(received.kind, CallKind::AudioVideo);
        assert!(
            received.from.contains(target_of(caller)),
            "{}",
            received.from
        );
        assert_eq!(received.request_uri, target_of(callee));
        // The negotiated media: PCMU both sides, to each other's advertised address.
        let conf = net
            .engine(caller)
            .negotiated(ours)
            .unwrap()
            .audio
            .clone()
            .unwrap();
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
            assert_eq!(
                net.engine(node).poll_timeout().map(|t| t - now),
                None,
                "node {node}: {case} {core:?}"
            );
        }
    }
}

fn header_of(headers: &[calls::SignalingHeader], name: &str) -> Vec<String> {
    headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case(name))
        .map(|h| h.value.clone())
        .collect()
}

fn establish_result(events: &[CallEvent]) -> Result<EstablishSucceeded, EstablishFailure> {
    let results: Vec<_> = events
        .iter()
        .filter_map(|e| match e {
            CallEvent::EstablishCompleted { result } => Some(result.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(
        results.len(),
        1,
        "exactly one EstablishCompleted: {events:?}"
    );
    results.into_iter().next().unwrap()
}

/// Case 2: Custom headers and a custom MIME part travel with the INVITE; the callee's accept
/// headers come back in `EstablishSucceeded`; a header the stack owns is refused before
/// anything is sent.
#[test]
fn custom_headers_and_mime_parts_both_ways() {
    let (mut net, alice, _bob) = Net::pair();
    net.set_app(
        B,
        accept_all(CallAcceptOptions::new().header("X-Agent", "bob-7")),
    );
    let part = calls::CustomMimePart::new(
        "application/vnd.tandem.case+json",
        r#"{"case":4711,"queue":"billing"}"#,
    )
    .with_disposition("render;handling=optional");

    // Refused first: Call-ID (and its compact form), Via, Content-Type are the stack's.
    let call = new_call(&mut net, A, alice, CallKind::AudioVideo);
    for name in ["Call-ID", "i", "Via", "Content-Type", "CSeq", "From"] {
        let now = net.now;
        let error = net
            .engine(A)
            .establish(
                now,
                call,
                BOB,
                calls::CallEstablishOptions::new()
                    .header("X-Case-Id", "4711")
                    .header(name, "forged"),
            )
            .unwrap_err();
        assert!(
            matches!(&error, calls::CallError::ForbiddenHeader { name: n } if n == name),
            "{name}: {error:?}"
        );
    }
    net.run_for(Duration::from_secs(1));
    assert!(net.requests(A, Method::Invite).is_empty());
    assert!(net.call_events(A, call).is_empty());
    assert_eq!(net.engine(A).call_state(call), Some(CallState::Idle));

    // The same call, established properly.
    let now = net.now;
    net.engine(A)
        .establish(
            now,
            call,
            BOB,
            calls::CallEstablishOptions::new()
                .header("X-Case-Id", "4711")
                .mime_part(part.clone()),
        )
        .unwrap();
    net.run_for(Duration::from_secs(1));

    let invites = net.requests(A, Method::Invite);
    assert_eq!(invites.len(), 1);
    let content_type = header_values(&invites[0].1.headers, "Content-Type");
    assert!(
        content_type[0].starts_with("multipart/mixed"),
        "{content_type:?}"
    );

    let received = net.only_received(B);
    assert_eq!(header_of(&received.headers, "X-Case-Id"), ["4711"]);
    assert_eq!(received.custom_mime_parts, vec![part]);
    let offer = String::from_utf8(received.offer.clone().unwrap().to_vec()).unwrap();
    assert!(offer.starts_with("v=0\r\n"), "{offer}");
    assert!(offer.contains("m=audio "), "{offer}");
    assert_eq!(received.kind, CallKind::AudioVideo);

    // The 200 carries X-Agent, and A's establish result shows it.
    let ok = establish_result(&net.call_events(A, call)).unwrap();
    assert_eq!(header_of(&ok.headers, "X-Agent"), ["bob-7"]);
    assert_eq!(header_of(&ok.headers, "CSeq"), ["1 INVITE"]);
    assert_eq!(net.engine(A).call_state(call), Some(CallState::Established));
    let theirs = received.call;
    assert_eq!(
        net.engine(B).call_state(theirs),
        Some(CallState::Established)
    );

    let now = net.now;
    net.engine(B)
        .terminate(now, theirs, CallTerminateOptions::new())
        .unwrap();
    net.assert_quiet();
}

/// What B's application does with each incoming call in the refusal tests.
fn refuse_all(
    how: impl Fn(&mut calls::Engine, std::time::Instant, CallHandle) + 'static,
) -> impl FnMut(&mut calls::Engine, std::time::Instant, &calls::Event) {
    move |engine, now, event| {
        if let calls::Event::Endpoint {
            event: calls::EndpointEvent::CallReceived(received),
            ..
        } = event
        {
            how(engine, now, received.call);
        }
    }
}

/// Case 3: Declines (486, 603, a custom 4xx with its own phrase and a Reason header) reach
/// the caller as `Refused` with the status and phrase, and a redirection as
/// `Redirected` with the target; all are refusals.
#[test]
fn declines_and_forward_are_refusals() {
    let cases: [(u16, Option<&str>, &str); 3] = [
        (486, None, "Busy Here"),
        (603, None, "Decline"),
        (499, Some("Case Closed"), "Case Closed"),
    ];
    for (status, phrase, want_phrase) in cases {
        let (mut net, alice, _bob) = Net::pair();
        let phrase_owned = phrase.map(str::to_owned);
        net.set_app(
            B,
            refuse_all(move |engine, now, call| {
                let mut options = calls::CallDeclineOptions::new(status);
                if let Some(p) = &phrase_owned {
                    options = options.reason_phrase(p.clone());
                }
                options.reason = Some(format!("SIP;cause={status};text=\"refused\""));
                engine.decline(now, call, options).unwrap();
            }),
        );
        let call = new_call(&mut net, A, alice, CallKind::AudioVideo);
        let now = net.now;
        net.engine(A)
            .establish(now, call, BOB, calls::CallEstablishOptions::new())
            .unwrap();
        net.run_for(Duration::from_secs(1));

        let events = net.call_events(A, call);
        assert_eq!(
            states(&events),
            [
                (CallState::Idle, CallState::Establishing, R::Establishing),
                (
                    CallState::Establishing,
                    CallState::Terminated,
                    R::RemoteDeclined {
                        status,
                        reason_phrase: want_phrase.into()
                    }
                ),
            ],
            "{status}"
        );
        // No flow was ever created for a refused call.
        assert!(!events.iter().any(|e| matches!(
            e,
            CallEvent::FlowConfigurationRequested { .. } | CallEvent::FlowStateChanged { .. }
        )));
        let failure = establish_result(&events).unwrap_err();
        match &failure {
            EstablishFailure::Refused {
                status: s,
                reason_phrase,
                reason,
                headers,
            } => {
                assert_eq!(*s, status);
                assert_eq!(reason_phrase, want_phrase);
                assert_eq!(
                    reason.as_deref(),
                    Some(format!("SIP;cause={status};text=\"refused\"").as_str())
                );
                assert!(!header_of(headers, "To").is_empty());
            }
            other => panic!("{status}: {other:?}"),
        }
        assert!(failure.is_refusal());
        // The failure comes just before `Terminated`, the last event: the call is gone.
        assert!(matches!(
            events.last(),
            Some(CallEvent::StateChanged {
                state: CallState::Terminated,
                ..
            })
        ));
        assert!(matches!(
            events.iter().rev().nth(1),
            Some(CallEvent::EstablishCompleted { .. })
        ));
        assert_eq!(net.engine(A).call_state(call), None);

        let theirs = net.only_received(B).call;
        assert_eq!(
            states(&net.call_events(B, theirs)),
            [
                (CallState::Idle, CallState::Incoming, R::Incoming),
                (
                    CallState::Incoming,
                    CallState::Terminated,
                    R::LocalDeclined { status }
                ),
            ]
        );
        // §17.1.1.3: the non-2xx was acknowledged within the transaction.
        assert_eq!(net.requests(A, Method::Ack).len(), 1);
        net.assert_quiet();
    }

    // Forward: 302 to carol.
    let (mut net, alice, _bob) = Net::pair();
    net.set_app(
        B,
        refuse_all(|engine, now, call| {
            engine
                .forward(
                    now,
                    call,
                    "sip:carol@127.0.0.3",
                    calls::CallForwardOptions::new(),
                )
                .unwrap();
        }),
    );
    let call = new_call(&mut net, A, alice, CallKind::AudioVideo);
    let now = net.now;
    net.engine(A)
        .establish(now, call, BOB, calls::CallEstablishOptions::new())
        .unwrap();
    net.run_for(Duration::from_secs(1));
    let events = net.call_events(A, call);
    let targets = vec!["sip:carol@127.0.0.3".to_owned()];
    assert_eq!(
        states(&events).last().unwrap().2,
        R::RemoteForwarded {
            status: 302,
            targets: targets.clone()
        }
    );
    let failure = establish_result(&events).unwrap_err();
    assert_eq!(
        failure,
        EstablishFailure::Redirected {
            status: 302,
            targets
        }
    );
    assert!(failure.is_refusal());
    let theirs = net.only_received(B).call;
    assert_eq!(
        states(&net.call_events(B, theirs)).last().unwrap().2,
        R::LocalForwarded { status: 302 }
    );
    // Nothing followed the redirection by itself.
    assert_eq!(net.requests(A, Method::Invite).len(), 1);
    net.assert_quiet();
}

/// Case 3b: Statuses outside each operation's class are refused, and the call is unchanged.
#[test]
fn out_of_class_statuses_are_invalid_arguments() {
    let (mut net, alice, _bob) = Net::pair();
    let call = new_call(&mut net, A, alice, CallKind::AudioVideo);
    let now = net.now;
    net.engine(A)
        .establish(now, call, BOB, calls::CallEstablishOptions::new())
        .unwrap();
    net.run_for(Duration::from_millis(100));
    let theirs = net.only_received(B).call;
    let now = net.now;
    let b = net.engine(B);
    for status in [200, 180, 302, 399, 700, 100] {
        assert!(
            matches!(
                b.decline(now, theirs, calls::CallDeclineOptions::new(status)),
                Err(calls::CallError::InvalidArgument { what: "status", .. })
            ),
            "decline {status}"
        );
    }
    let mut forward = calls::CallForwardOptions::new();
    forward.status = 200;
    assert!(matches!(
        b.forward(now, theirs, "sip:carol@127.0.0.3", forward),
        Err(calls::CallError::InvalidArgument { .. })
    ));
    assert!(matches!(
        b.forward(now, theirs, "not a uri", calls::CallForwardOptions::new()),
        Err(calls::CallError::InvalidArgument { .. })
    ));
    for status in [100, 200, 486] {
        assert!(matches!(
            b.send_provisional(
                now,
                theirs,
                calls::CallProvisionalResponseOptions::new(status)
            ),
            Err(calls::CallError::InvalidArgument { .. })
        ));
    }
    assert_eq!(b.call_state(theirs), Some(CallState::Incoming));
    net.run_for(Duration::from_secs(1));
    // Only the automatic 100 Trying went out.
    assert_eq!(net.statuses(B, Method::Invite), [100]);
    // And the call can still be answered.
    let now = net.now;
    net.engine(B)
        .accept(now, theirs, CallAcceptOptions::new())
        .unwrap();
    net.run_for(Duration::from_secs(1));
    assert_eq!(net.engine(A).call_state(call), Some(CallState::Established));
    let now = net.now;
    net.engine(A)
        .terminate(now, call, CallTerminateOptions::new())
        .unwrap();
    net.assert_quiet();
}

/// The time of the first state change to `state` in `events`.
fn when(events: &[(Duration, CallEvent)], state: CallState) -> Duration {
    events
        .iter()
        .find_map(|(at, e)| match e {
            CallEvent::StateChanged { state: s, .. } if *s == state => Some(*at),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no change to {state}: {events:?}"))
}

const NOBODY: &str = "sip:carol@127.0.0.3";

/// Case 4a: Nobody at the address: the INVITE is retransmitted (Timer A) until Timer B at
/// 64·T1 = 32 s ends it, long before the 120 s `max_establish_time` default. No CANCEL
/// (nothing provisional came: RFC 3261 §9.1). A timeout is not a refusal.
#[test]
fn nobody_answers_timer_b_comes_first() {
    let (mut net, alice, _bob) = Net::pair();
    let call = new_call(&mut net, A, alice, CallKind::AudioVideo);
    let now = net.now;
    net.engine(A)
        .establish(now, call, NOBODY, calls::CallEstablishOptions::new())
        .unwrap();
    net.run_for(Duration::from_secs(40));
    let events = net.timed_call_events(A, call);
    let plain: Vec<CallEvent> = events.iter().map(|(_, e)| e.clone()).collect();
    assert_eq!(
        states(&plain),
        [
            (CallState::Idle, CallState::Establishing, R::Establishing),
            (CallState::Establishing, CallState::Terminated, R::Timeout),
        ]
    );
    assert_eq!(when(&events, CallState::Terminated), 64 * T1);
    let failure = establish_result(&plain).unwrap_err();
    assert_eq!(failure, EstablishFailure::Timeout);
    assert!(!failure.is_refusal());
    // §17.1.1.2: sent at 0, 0.5, 1.5, 3.5, 7.5, 15.5 and 31.5 s.
    let times: Vec<u128> = net
        .requests(A, Method::Invite)
        .iter()
        .map(|(at, _)| at.as_millis())
        .collect();
    assert_eq!(times, [0, 500, 1500, 3500, 7500, 15500, 31500]);
    assert!(net.requests(A, Method::Cancel).is_empty());
    assert_eq!(net.unreachable, 7);
    net.assert_quiet();
}

/// Case 4b: Nobody at the address and `max_establish_time` 5 s: at 5 s the call goes
/// `Terminating` with `Timeout`, but no CANCEL may be sent before a provisional
/// (RFC 3261 §9.1), so the INVITE transaction runs to Timer B, which ends the call.
#[test]
fn nobody_answers_max_establish_time_first_without_cancel() {
    let (mut net, alice, _bob) = Net::pair();
    let call = new_call(&mut net, A, alice, CallKind::AudioVideo);
    let now = net.now;
    net.engine(A)
        .establish(
            now,
            call,
            NOBODY,
            calls::CallEstablishOptions::new().max_establish_time(Duration::from_secs(5)),
        )
        .unwrap();
    net.run_for(Duration::from_secs(40));
    let events = net.timed_call_events(A, call);
    let plain: Vec<CallEvent> = events.iter().map(|(_, e)| e.clone()).collect();
    assert_eq!(
        states(&plain),
        [
            (CallState::Idle, CallState::Establishing, R::Establishing),
            (CallState::Establishing, CallState::Terminating, R::Timeout),
            (CallState::Terminating, CallState::Terminated, R::Timeout),
        ]
    );
    assert_eq!(
        when(&events, CallState::Terminating),
        Duration::from_secs(5)
    );
    assert_eq!(when(&events, CallState::Terminated), 64 * T1);
    assert_eq!(establish_result(&plain), Err(EstablishFailure::Timeout));
    assert!(net.requests(A, Method::Cancel).is_empty());
    net.assert_quiet();
}

/// Case 4c: B rings (180) and never answers; A's `max_establish_time` (5 s) expires: A
/// CANCELs, B answers 200 to the CANCEL and 487 to the INVITE (§9.2). A ends with
/// `Timeout` (not a refusal: the 487 answers our own CANCEL), B with `RemoteCancelled`.
#[test]
fn ringing_unanswered_is_cancelled_at_max_establish_time() {
    for ring in [true, false] {
        let (mut net, alice, _bob) = Net::pair();
        if ring {
            net.set_app(
                B,
                refuse_all(|engine, now, call| {
                    engine
                        .send_provisional(
                            now,
                            call,
                            calls::CallProvisionalResponseOptions::new(180),
                        )
                        .unwrap();
                }),
            );
        }
        let call = new_call(&mut net, A, alice, CallKind::AudioVideo);
        let now = net.now;
        net.engine(A)
            .establish(
                now,
                call,
                BOB,
                calls::CallEstablishOptions::new().max_establish_time(Duration::from_secs(5)),
            )
            .unwrap();
        net.run_for(Duration::from_secs(10));
        let events = net.timed_call_events(A, call);
        let plain: Vec<CallEvent> = events.iter().map(|(_, e)| e.clone()).collect();
        let mut want = vec![CallEvent::StateChanged {
            previous: CallState::Idle,
            state: CallState::Establishing,
            reason: R::Establishing,
        }];
        if ring {
            want.push(CallEvent::ProvisionalResponseReceived {
                status: 180,
                reason_phrase: "Ringing".into(),
                headers: match &plain[1] {
                    CallEvent::ProvisionalResponseReceived { headers, .. } => headers.clone(),
                    other => panic!("{other:?}"),
                },
            });
        }
        want.extend([
            CallEvent::StateChanged {
                previous: CallState::Establishing,
                state: CallState::Terminating,
                reason: R::Timeout,
            },
            CallEvent::EstablishCompleted {
                result: Err(EstablishFailure::Timeout),
            },
            CallEvent::StateChanged {
                previous: CallState::Terminating,
                state: CallState::Terminated,
                reason: R::Timeout,
            },
        ]);
        assert_eq!(plain, want, "ring {ring}");
        assert_eq!(
            when(&events, CallState::Terminating),
            Duration::from_secs(5)
        );
        // Without a 180 the automatic 100 Trying is what allows the CANCEL.
        let cancels = net.requests(A, Method::Cancel);
        assert_eq!(cancels.len(), 1);
        assert_eq!(cancels[0].0, Duration::from_secs(5));
        let reason = header_values(&cancels[0].1.headers, "Reason");
        assert_eq!(reason, ["SIP;cause=408;text=\"Establish timeout\""]);
        assert_eq!(net.statuses(B, Method::Cancel), [200]);
        let invite_statuses = net.statuses(B, Method::Invite);
        assert_eq!(invite_statuses.last(), Some(&487), "{invite_statuses:?}");
        let theirs = net.only_received(B).call;
        assert_eq!(
            states(&net.call_events(B, theirs)),
            [
                (CallState::Idle, CallState::Incoming, R::Incoming),
                (
                    CallState::Incoming,
                    CallState::Terminated,
                    R::RemoteCancelled
                ),
            ]
        );
        net.assert_quiet();
    }
}

/// Case 4d: With the defaults and a callee that never answers, A's `establish_timeout`
/// (120 s, armed first) comes before B's `unanswered_timeout` (120 s, armed one
/// latency later): A cancels, and B sees the CANCEL rather than its own timeout.
#[test]
fn default_establish_timeout_comes_before_the_callees_unanswered_timeout() {
    let (mut net, alice, _bob) = Net::pair();
    let call = new_call(&mut net, A, alice, CallKind::AudioVideo);
    let now = net.now;
    net.engine(A)
        .establish(now, call, BOB, calls::CallEstablishOptions::new())
        .unwrap();
    net.run_for(Duration::from_secs(125));
    let events = net.timed_call_events(A, call);
    assert_eq!(
        when(&events, CallState::Terminating),
        Duration::from_secs(120)
    );
    let plain: Vec<CallEvent> = events.iter().map(|(_, e)| e.clone()).collect();
    assert_eq!(establish_result(&plain), Err(EstablishFailure::Timeout));
    let theirs = net.only_received(B).call;
    assert_eq!(
        states(&net.call_events(B, theirs)).last().unwrap().2,
        R::RemoteCancelled
    );
    // B never sent its 480.
    assert!(!net.statuses(B, Method::Invite).contains(&480));
    net.assert_quiet();
}

fn im_established_events(caller: bool) -> Vec<CallEvent> {
    if caller {
        caller_establish_events()
            .into_iter()
            .map(|e| match e {
                CallEvent::FlowConfigurationRequested { .. } => {
                    CallEvent::FlowConfigurationRequested {
                        kind: CallKind::InstantMessaging,
                    }
                }
                other => other,
            })
            .collect()
    } else {
        callee_establish_events()
            .into_iter()
            .map(|e| match e {
                CallEvent::FlowConfigurationRequested { .. } => {
                    CallEvent::FlowConfigurationRequested {
                        kind: CallKind::InstantMessaging,
                    }
                }
                other => other,
            })
            .collect()
    }
}

/// The messages received on a call: (content type, body).
fn messages_received(events: &[CallEvent]) -> Vec<(String, String)> {
    events
        .iter()
        .filter_map(|e| match e {
            CallEvent::MessageReceived {
                content_type, body, ..
            } => Some((
                content_type.clone(),
                String::from_utf8_lossy(body).into_owned(),
            )),
            _ => None,
        })
        .collect()
}

fn deliveries(events: &[CallEvent]) -> Vec<(calls::MessageId, calls::DeliveryResult)> {
    events
        .iter()
        .filter_map(|e| match e {
            CallEvent::MessageDelivered { id, result } => Some((*id, result.clone())),
            _ => None,
        })
        .collect()
}

/// Places an IM call from `caller` to `callee` (which accepts) with `settings` and a
/// first message, and runs until it is up.
fn im_call(
    net: &mut Net,
    caller: usize,
    endpoint: EndpointHandle,
    callee: usize,
    settings: ConversationSettings,
    first: Option<calls::InstantMessage>,
) -> (CallHandle, CallHandle) {
    net.set_app(callee, accept_all(CallAcceptOptions::new()));
    let call = new_call_with(net, caller, endpoint, CallKind::InstantMessaging, settings);
    let mut options = calls::CallEstablishOptions::new();
    if let Some(first) = first {
        options = options.first_message(first);
    }
    let now = net.now;
    net.engine(caller)
        .establish(now, call, target_of(callee), options)
        .unwrap();
    net.run_for(Duration::from_secs(1));
    let theirs = net.only_received(callee).call;
    assert_eq!(
        net.engine(caller).call_state(call),
        Some(CallState::Established)
    );
    assert_eq!(
        net.engine(callee).call_state(theirs),
        Some(CallState::Established)
    );
    (call, theirs)
}

/// Case 5a: An IM call each way: `m=message` with accept-types in the offer, the first
/// message, subject and priority carried by the INVITE; text and HTML messages both
/// ways with their delivery results; a type not negotiated refused before sending.
#[test]
fn im_call_both_ways_with_first_message_and_messages() {
    for (caller, callee) in [(A, B), (B, A)] {
        let (mut net, alice, bob) = Net::pair();
        let endpoint = if caller == A { alice } else { bob };
        let settings = ConversationSettings {
            subject: Some("Invoice 4711".into()),
            priority: calls::Priority::Urgent,
            impersonation: None,
        };
        let first = calls::InstantMessage::text("hello, about the invoice");
        let (ours, theirs) = im_call(
            &mut net,
            caller,
            endpoint,
            callee,
            settings,
            Some(first.clone()),
        );
        let case = format!("caller {caller}");

        let received = net.only_received(callee);
        assert_eq!(received.kind, CallKind::InstantMessaging, "{case}");
        let offer = String::from_utf8(received.offer.clone().unwrap().to_vec()).unwrap();
        assert!(offer.contains("m=message "), "{offer}");
        assert!(!offer.contains("m=audio"), "{offer}");
        assert!(
            offer.contains("a=accept-types:text/plain text/html application/im-iscomposing+xml"),
            "{offer}"
        );
        assert_eq!(received.first_message, Some(first), "{case}");
        // The first message is not also a custom part.
        assert!(received.custom_mime_parts.is_empty(), "{case}");
        assert_eq!(received.subject.as_deref(), Some("Invoice 4711"));
        assert_eq!(received.priority, calls::Priority::Urgent);
        let invite = &net.requests(caller, Method::Invite)[0].1;
        assert_eq!(header_values(&invite.headers, "Subject"), ["Invoice 4711"]);
        assert_eq!(header_values(&invite.headers, "Priority"), ["urgent"]);

        assert_eq!(
            without_ok_headers(net.call_events(caller, ours)),
            im_established_events(true),
            "{case}"
        );
        assert_eq!(
            net.call_events(callee, theirs),
            im_established_events(false),
            "{case}"
        );
        let accept = net.engine(caller).negotiated(ours).unwrap().message.clone();
        assert_eq!(
            accept.unwrap().accept_types,
            ["text/plain", "text/html", "application/im-iscomposing+xml"]
        );

        // Plain text one way, HTML the other.
        let now = net.now;
        let sent_plain = net
            .engine(caller)
            .send_instant_message(
                now,
                ours,
                calls::InstantMessage::text("how are you?"),
                calls::MessageOptions::default(),
            )
            .unwrap();
        let sent_html = net
            .engine(callee)
            .send_instant_message(
                now,
                theirs,
                calls::InstantMessage::html("<b>fine</b>"),
                calls::MessageOptions::default(),
            )
            .unwrap();
        net.run_for(Duration::from_secs(1));
        assert_eq!(
            messages_received(&net.call_events(callee, theirs)),
            [(
                "text/plain;charset=UTF-8".to_owned(),
                "how are you?".to_owned()
            )]
        );
        assert_eq!(
            messages_received(&net.call_events(caller, ours)),
            [(
                "text/html;charset=UTF-8".to_owned(),
                "<b>fine</b>".to_owned()
            )]
        );
        assert_eq!(
            deliveries(&net.call_events(caller, ours)),
            [(sent_plain, calls::DeliveryResult::Delivered)]
        );
        assert_eq!(
            deliveries(&net.call_events(callee, theirs)),
            [(sent_html, calls::DeliveryResult::Delivered)]
        );

        // Not negotiated: refused here, nothing sent.
        let messages_before = net.requests(caller, Method::Message).len();
        let now = net.now;
        let error = net
            .engine(caller)
            .send_instant_message(
                now,
                ours,
                calls::InstantMessage {
                    content_type: "application/json".into(),
                    body: bytes::Bytes::from_static(b"{}"),
                },
                calls::MessageOptions::default(),
            )
            .unwrap_err();
        assert!(
            matches!(&error, calls::CallError::ContentTypeNotAccepted { content_type } if content_type == "application/json"),
            "{error:?}"
        );
        // Not a media type at all.
        assert!(matches!(
            net.engine(caller).send_instant_message(
                now,
                ours,
                calls::InstantMessage {
                    content_type: "plain text".into(),
                    body: bytes::Bytes::from_static(b"x"),
                },
                calls::MessageOptions::default(),
            ),
            Err(calls::CallError::InvalidArgument { .. })
        ));
        net.run_for(Duration::from_secs(1));
        assert_eq!(net.requests(caller, Method::Message).len(), messages_before);

        let now = net.now;
        net.engine(callee)
            .terminate(now, theirs, CallTerminateOptions::new())
            .unwrap();
        net.run_for(Duration::from_secs(1));
        assert_eq!(net.engine(caller).call_state(ours), None);
        net.assert_quiet();
    }
}

fn composing_changes(events: &[(Duration, CallEvent)]) -> Vec<(Duration, bool)> {
    events
        .iter()
        .filter_map(|(at, e)| match e {
            CallEvent::RemoteComposingChanged { composing } => Some((*at, *composing)),
            _ => None,
        })
        .collect()
}

/// Case 5b: RFC 3994: composing shown at the peer, ended by the message itself (no idle
/// indication sent: §3.2), or by `set_composing(false)` (idle sent); refreshed while it
/// lasts, and timed out by the peer 120 s after the last refresh when the composer
/// vanishes.
#[test]
fn im_composing_indications() {
    let (mut net, alice, _bob) = Net::pair();
    let (ours, theirs) = im_call(&mut net, A, alice, B, ConversationSettings::default(), None);
    let messages = |net: &Net| net.requests(A, Method::Message).len();
    let t0 = net.elapsed();

    let now = net.now;
    net.engine(A).set_composing(now, ours, true).unwrap();
    // No change, no message.
    net.engine(A).set_composing(now, ours, true).unwrap();
    net.run_for(Duration::from_secs(1));
    assert_eq!(messages(&net), 1);
    let now = net.now;
    net.engine(A)
        .send_instant_message(
            now,
            ours,
            calls::InstantMessage::text("done typing"),
            calls::MessageOptions::default(),
        )
        .unwrap();
    net.run_for(Duration::from_secs(1));
    // The indication, then the message: no idle in between.
    assert_eq!(messages(&net), 2);
    let latency = net.latency;
    let b_events: Vec<CallEvent> = net
        .call_events(B, theirs)
        .into_iter()
        .filter(|e| {
            matches!(
                e,
                CallEvent::RemoteComposingChanged { .. } | CallEvent::MessageReceived { .. }
            )
        })
        .collect();
    assert_eq!(b_events.len(), 3, "{b_events:?}");
    assert_eq!(
        b_events[0],
        CallEvent::RemoteComposingChanged { composing: true }
    );
    assert_eq!(
        b_events[1],
        CallEvent::RemoteComposingChanged { composing: false }
    );
    assert!(
        matches!(&b_events[2], CallEvent::MessageReceived { body, .. } if &body[..] == b"done typing")
    );
    // The indications are not reported as messages, nor their deliveries as results.
    assert_eq!(messages_received(&net.call_events(B, theirs)).len(), 1);
    assert_eq!(deliveries(&net.call_events(A, ours)).len(), 1);

    // Composing, then stopped: an idle indication.
    let now = net.now;
    net.engine(A).set_composing(now, ours, true).unwrap();
    net.run_for(Duration::from_secs(1));
    let now = net.now;
    net.engine(A).set_composing(now, ours, false).unwrap();
    net.run_for(Duration::from_secs(1));
    assert_eq!(messages(&net), 4);
    let changes: Vec<bool> = composing_changes(&net.timed_call_events(B, theirs))
        .into_iter()
        .map(|(_, c)| c)
        .collect();
    assert_eq!(changes, [true, false, true, false]);

    // Composing for a long time: refreshed every 100 s, so B never times out.
    let now = net.now;
    let t_active = net.elapsed();
    net.engine(A).set_composing(now, ours, true).unwrap();
    net.run_for(Duration::from_secs(250));
    let refreshes: Vec<Duration> = net
        .requests(A, Method::Message)
        .iter()
        .skip(4)
        .map(|(at, _)| *at - t_active)
        .collect();
    assert_eq!(
        refreshes,
        [
            Duration::ZERO,
            Duration::from_secs(100),
            Duration::from_secs(200)
        ]
    );
    let changes = composing_changes(&net.timed_call_events(B, theirs));
    assert_eq!(changes.len(), 5);
    assert_eq!(changes[4], (t_active + latency, true));

    // A vanishes from the network: B's indication times out 120 s after the last
    // refresh arrived (RFC 3994 §4), with no message from anyone.
    net.filter = Some(Box::new(|_, from, _| from.ip().to_string() != "127.0.0.1"));
    net.run_for(Duration::from_secs(200));
    let changes = composing_changes(&net.timed_call_events(B, theirs));
    assert_eq!(changes.len(), 6, "{changes:?}");
    assert_eq!(
        changes[5],
        (
            t_active + Duration::from_secs(200) + latency + Duration::from_secs(120),
            false
        )
    );
    assert!(t0 < t_active);
}

/// Case 5c: An IM invitation nobody answers. B's `unanswered_timeout` (here 30 s, shorter
/// than A's 120 s establish timeout) ends B's call with `Timeout` and a 480 (RFC 3398:
/// "no answer from user (user alerted)" is 480). For A that 480 is a final answer, so
/// its result is `Refused { 480 }` (EstablishFailure: `Timeout` is for no final answer
/// at all). With the defaults (both 120 s) A's own timer comes first: A ends with
/// `Timeout` and B with `RemoteCancelled`.
#[test]
fn im_invitation_never_answered() {
    // B's timer first.
    let mut b_config = plain_config(2);
    b_config.unanswered_timeout = Duration::from_secs(30);
    let (mut net, alice, _bob) = Net::pair_with(plain_config(1), b_config);
    let call = new_call(&mut net, A, alice, CallKind::InstantMessaging);
    let now = net.now;
    net.engine(A)
        .establish(now, call, BOB, calls::CallEstablishOptions::new())
        .unwrap();
    net.run_for(Duration::from_secs(40));
    let theirs = net.only_received(B).call;
    let b_events = net.timed_call_events(B, theirs);
    assert_eq!(
        states(&b_events.iter().map(|(_, e)| e.clone()).collect::<Vec<_>>()),
        [
            (CallState::Idle, CallState::Incoming, R::Incoming),
            (CallState::Incoming, CallState::Terminated, R::Timeout),
        ]
    );
    assert_eq!(
        when(&b_events, CallState::Terminated),
        Duration::from_secs(30) + net.latency
    );
    assert_eq!(net.statuses(B, Method::Invite), [100, 480]);
    let a_events = net.call_events(A, call);
    assert_eq!(
        states(&a_events).last().unwrap().2,
        R::RemoteDeclined {
            status: 480,
            reason_phrase: "Temporarily Unavailable".into()
        }
    );
    assert!(matches!(
        establish_result(&a_events),
        Err(EstablishFailure::Refused { status: 480, .. })
    ));
    net.assert_quiet();

    // The defaults: A's timer first.
    let (mut net, alice, _bob) = Net::pair();
    let call = new_call(&mut net, A, alice, CallKind::InstantMessaging);
    let now = net.now;
    net.engine(A)
        .establish(now, call, BOB, calls::CallEstablishOptions::new())
        .unwrap();
    net.run_for(Duration::from_secs(125));
    let a_events = net.timed_call_events(A, call);
    assert_eq!(
        when(&a_events, CallState::Terminating),
        Duration::from_secs(120)
    );
    let plain: Vec<CallEvent> = a_events.iter().map(|(_, e)| e.clone()).collect();
    assert_eq!(
        states(&plain).last().unwrap(),
        &(CallState::Terminating, CallState::Terminated, R::Timeout)
    );
    assert_eq!(establish_result(&plain), Err(EstablishFailure::Timeout));
    let theirs = net.only_received(B).call;
    assert_eq!(
        states(&net.call_events(B, theirs)).last().unwrap().2,
        R::RemoteCancelled
    );
    net.assert_quiet();
}

fn configurations(events: &[CallEvent]) -> Vec<FlowConfiguration> {
    events
        .iter()
        .filter_map(|e| match e {
            CallEvent::FlowConfigurationChanged { configuration } => Some(configuration.clone()),
            _ => None,
        })
        .collect()
}

fn operations(
    events: &[CallEvent],
) -> Vec<(calls::Operation, Result<(), calls::OperationFailure>)> {
    events
        .iter()
        .filter_map(|e| match e {
            CallEvent::OperationCompleted { operation, result } => {
                Some((*operation, result.clone()))
            }
            _ => None,
        })
        .collect()
}

fn directions(net: &Net, node: usize, call: CallHandle) -> (calls::Direction, calls::Direction) {
    let audio = net.nodes[node]
        .engine
        .negotiated(call)
        .unwrap()
        .audio
        .clone()
        .unwrap();
    (audio.local_direction, audio.remote_direction)
}

/// Case 6: Hold and retrieve by either side (RFC 3264 §8.4, RFC 6337 §5.3): the holder
/// offers `sendonly` and the peer answers `recvonly`; each side reports the new
/// configuration, the holder gets its operation's result; `retrieve` restores
/// `sendrecv`. An `inactive` hold is answered `inactive`.
#[test]
fn hold_and_retrieve_by_either_side() {
    use calls::Direction::{Inactive, RecvOnly, SendOnly, SendRecv};
    use calls::Operation::{Hold, Retrieve};
    for holder in [A, B] {
        let (mut net, alice, _bob) = Net::pair();
        let (a_call, b_call) = av_call(&mut net, A, alice, B);
        let (call, peer, peer_call) = if holder == A {
            (a_call, B, b_call)
        } else {
            (b_call, A, a_call)
        };
        let count_before = (
            net.call_events(holder, call).len(),
            net.call_events(peer, peer_call).len(),
        );
        let now = net.now;
        net.engine(holder)
            .hold(now, call, calls::HoldType::SendOnly)
            .unwrap();
        // One re-INVITE at a time (RFC 3261 §14.1).
        assert!(matches!(
            net.engine(holder)
                .hold(now, call, calls::HoldType::Inactive),
            Err(calls::CallError::OperationPending { operation: Hold })
        ));
        assert!(matches!(
            net.engine(holder).retrieve(now, call),
            Err(calls::CallError::OperationPending { operation: Hold })
        ));
        net.run_for(Duration::from_secs(1));

        let holder_new: Vec<CallEvent> = net.call_events(holder, call)[count_before.0..].to_vec();
        let peer_new: Vec<CallEvent> = net.call_events(peer, peer_call)[count_before.1..].to_vec();
        assert_eq!(operations(&holder_new), [(Hold, Ok(()))], "holder {holder}");
        let mine = configurations(&holder_new);
        assert_eq!(mine.len(), 1, "{holder_new:?}");
        assert_eq!(
            (mine[0].local_direction, mine[0].remote_direction),
            (SendOnly, RecvOnly)
        );
        // The result comes before the configuration it produced.
        assert!(matches!(
            holder_new[0],
            CallEvent::OperationCompleted { .. }
        ));
        let theirs = configurations(&peer_new);
        assert_eq!(theirs.len(), 1, "{peer_new:?}");
        assert_eq!(
            (theirs[0].local_direction, theirs[0].remote_direction),
            (RecvOnly, SendOnly)
        );
        assert_eq!(theirs[0].codec.as_deref(), Some("PCMU/8000"));
        assert_eq!(directions(&net, holder, call), (SendOnly, RecvOnly));
        assert_eq!(directions(&net, peer, peer_call), (RecvOnly, SendOnly));
        // The peer has no operation of its own to report, and both stay up.
        assert!(operations(&peer_new).is_empty());
        assert_eq!(
            net.engine(peer).call_state(peer_call),
            Some(CallState::Established)
        );
        let reinvites = net.requests(holder, Method::Invite);
        assert_eq!(reinvites.len(), 1 + usize::from(holder == A));
        let offer = String::from_utf8_lossy(&reinvites.last().unwrap().1.body).into_owned();
        assert!(offer.contains("a=sendonly"), "{offer}");

        // Retrieve.
        let now = net.now;
        net.engine(holder).retrieve(now, call).unwrap();
        net.run_for(Duration::from_secs(1));
        let holder_ops = operations(&net.call_events(holder, call));
        assert_eq!(holder_ops, [(Hold, Ok(())), (Retrieve, Ok(()))]);
        assert_eq!(directions(&net, holder, call), (SendRecv, SendRecv));
        assert_eq!(directions(&net, peer, peer_call), (SendRecv, SendRecv));
        let last = configurations(&net.call_events(peer, peer_call));
        assert_eq!(last.len(), 2);
        assert_eq!(
            (last[1].local_direction, last[1].remote_direction),
            (SendRecv, SendRecv)
        );

        // An inactive hold, then retrieve.
        let now = net.now;
        net.engine(holder)
            .hold(now, call, calls::HoldType::Inactive)
            .unwrap();
        net.run_for(Duration::from_secs(1));
        assert_eq!(directions(&net, holder, call), (Inactive, Inactive));
        assert_eq!(directions(&net, peer, peer_call), (Inactive, Inactive));
        let now = net.now;
        net.engine(holder).retrieve(now, call).unwrap();
        net.run_for(Duration::from_secs(1));
        assert_eq!(directions(&net, holder, call), (SendRecv, SendRecv));
        assert_eq!(directions(&net, peer, peer_call), (SendRecv, SendRecv));
        assert_eq!(
            operations(&net.call_events(holder, call)).len(),
            4,
            "every operation reported once"
        );

        let now = net.now;
        net.engine(peer)
            .terminate(now, peer_call, CallTerminateOptions::new())
            .unwrap();
        net.assert_quiet();
    }
}

/// Case 6b: A holds, then B holds too: B offers `sendonly`, and A, which itself only
/// sends, answers `inactive` (RFC 3264 §6.1: the answer's direction is within both
/// wishes). Neither side sends any more; after both retrieve, `sendrecv` again.
#[test]
fn hold_while_held() {
    use calls::Direction::{Inactive, RecvOnly, SendOnly, SendRecv};
    let (mut net, alice, _bob) = Net::pair();
    let (a_call, b_call) = av_call(&mut net, A, alice, B);
    let now = net.now;
    net.engine(A)
        .hold(now, a_call, calls::HoldType::SendOnly)
        .unwrap();
    net.run_for(Duration::from_secs(1));
    assert_eq!(directions(&net, A, a_call), (SendOnly, RecvOnly));
    let now = net.now;
    net.engine(B)
        .hold(now, b_call, calls::HoldType::SendOnly)
        .unwrap();
    net.run_for(Duration::from_secs(1));
    assert_eq!(
        operations(&net.call_events(B, b_call)),
        [(calls::Operation::Hold, Ok(()))]
    );
    // Neither side sends now.
    assert_eq!(directions(&net, A, a_call), (Inactive, SendOnly));
    assert_eq!(directions(&net, B, b_call), (SendOnly, Inactive));
    let a_seen = configurations(&net.call_events(A, a_call));
    assert_eq!(
        a_seen
            .iter()
            .map(|c| (c.local_direction, c.remote_direction))
            .collect::<Vec<_>>(),
        [(SendOnly, RecvOnly), (Inactive, SendOnly)]
    );

    // Both retrieve.
    let now = net.now;
    net.engine(A).retrieve(now, a_call).unwrap();
    net.run_for(Duration::from_secs(1));
    let now = net.now;
    net.engine(B).retrieve(now, b_call).unwrap();
    net.run_for(Duration::from_secs(1));
    assert_eq!(directions(&net, A, a_call), (SendRecv, SendRecv));
    assert_eq!(directions(&net, B, b_call), (SendRecv, SendRecv));
    let now = net.now;
    net.engine(A)
        .terminate(now, a_call, CallTerminateOptions::new())
        .unwrap();
    net.assert_quiet();
}

/// Case 6c: Hold is an AV operation; an IM call refuses it without sending anything.
#[test]
fn hold_on_an_im_call_is_the_wrong_call_type() {
    let (mut net, alice, _bob) = Net::pair();
    let (ours, _theirs) = im_call(&mut net, A, alice, B, ConversationSettings::default(), None);
    let invites = net.requests(A, Method::Invite).len();
    let now = net.now;
    for result in [
        net.engine(A).hold(now, ours, calls::HoldType::SendOnly),
        net.engine(A).retrieve(now, ours),
        net.engine(A).apply_changes(now, ours, None),
    ] {
        assert!(
            matches!(
                result,
                Err(calls::CallError::WrongCallType {
                    kind: CallKind::InstantMessaging,
                    ..
                })
            ),
            "{result:?}"
        );
    }
    net.run_for(Duration::from_secs(1));
    assert_eq!(net.requests(A, Method::Invite).len(), invites);
    assert_eq!(net.engine(A).call_state(ours), Some(CallState::Established));
}

/// Case 6d: Glare: both hold at the same instant. Each re-INVITE meets the other's and
/// gets 491; each side retries after its back-off (RFC 3261 §14.1: the Call-ID's
/// owner A after 2.1–4 s, B after 0–2 s), so B's hold goes through first, then A's.
/// Both operations complete and neither side sends any more.
#[test]
fn simultaneous_holds_resolve_after_491() {
    use calls::Direction::{Inactive, SendOnly, SendRecv};
    let (mut net, alice, _bob) = Net::pair();
    let (a_call, b_call) = av_call(&mut net, A, alice, B);
    let now = net.now;
    net.engine(A)
        .hold(now, a_call, calls::HoldType::SendOnly)
        .unwrap();
    net.engine(B)
        .hold(now, b_call, calls::HoldType::SendOnly)
        .unwrap();
    net.run_for(Duration::from_secs(10));
    let wire = trace(&net);
    assert!(net.statuses(A, Method::Invite).contains(&491), "{wire}");
    assert!(net.statuses(B, Method::Invite).contains(&491));
    assert_eq!(
        operations(&net.call_events(A, a_call)),
        [(calls::Operation::Hold, Ok(()))],
        "{wire}"
    );
    assert_eq!(
        operations(&net.call_events(B, b_call)),
        [(calls::Operation::Hold, Ok(()))],
        "{wire}"
    );
    // Exactly one 491 each way, then B's retry (shorter back-off) and A's.
    assert_eq!(
        net.statuses(A, Method::Invite),
        [100, 491, 100, 200],
        "{wire}"
    );
    assert_eq!(
        net.statuses(B, Method::Invite),
        [100, 200, 100, 491, 100, 200],
        "{wire}"
    );
    // B's retry found A holding: A answered `inactive`; A's retry, made afresh after
    // that answer, offered `sendonly` (a new o= version), answered `inactive` by B.
    assert_eq!(directions(&net, A, a_call), (SendOnly, Inactive));
    assert_eq!(directions(&net, B, b_call), (Inactive, SendOnly));
    let a_invites = net.requests(A, Method::Invite);
    assert_eq!(a_invites.len(), 3, "{wire}");
    let first_offer = String::from_utf8_lossy(&a_invites[1].1.body).into_owned();
    let retry_offer = String::from_utf8_lossy(&a_invites[2].1.body).into_owned();
    let origin = |sdp: &str| {
        sdp.lines()
            .find(|l| l.starts_with("o="))
            .unwrap()
            .to_owned()
    };
    assert_ne!(origin(&first_offer), origin(&retry_offer));
    assert!(retry_offer.contains("a=sendonly"), "{retry_offer}");
    assert_eq!(
        net.engine(A).call_state(a_call),
        Some(CallState::Established)
    );
    // Both retrieve: media both ways again.
    let now = net.now;
    net.engine(A).retrieve(now, a_call).unwrap();
    net.engine(B).retrieve(now, b_call).unwrap();
    net.run_for(Duration::from_secs(10));
    assert_eq!(
        directions(&net, A, a_call),
        (SendRecv, SendRecv),
        "{}",
        trace(&net)
    );
    assert_eq!(directions(&net, B, b_call), (SendRecv, SendRecv));
    assert_eq!(operations(&net.call_events(A, a_call)).len(), 2);
    assert_eq!(operations(&net.call_events(B, b_call)).len(), 2);
    let now = net.now;
    net.engine(A)
        .terminate(now, a_call, CallTerminateOptions::new())
        .unwrap();
    net.assert_quiet();
}

fn invalid_state(result: Result<(), calls::CallError>, op: calls::Operation, st: CallState) {
    match result {
        Err(calls::CallError::InvalidState { operation, state }) => {
            assert_eq!((operation, state), (op, st));
        }
        other => panic!("{op} in {st}: {other:?}"),
    }
}

/// Case 7: Every operation asked in a state that does not permit it is refused with
/// `InvalidState` (or `WrongCallType`, `NoSuchCall`...), sends nothing and changes
/// nothing; nothing panics.
#[test]
fn illegal_operations_are_refused() {
    use calls::Operation as O;
    let (mut net, alice, _bob) = Net::pair();
    let text = || calls::InstantMessage::text("hi");
    let msg = calls::MessageOptions::default;

    // Idle outgoing AV call.
    let av = new_call(&mut net, A, alice, CallKind::AudioVideo);
    let now = net.now;
    let e = net.engine(A);
    invalid_state(
        e.accept(now, av, CallAcceptOptions::new()),
        O::Accept,
        CallState::Idle,
    );
    invalid_state(
        e.decline(now, av, calls::CallDeclineOptions::new(486)),
        O::Decline,
        CallState::Idle,
    );
    invalid_state(
        e.forward(
            now,
            av,
            "sip:carol@127.0.0.3",
            calls::CallForwardOptions::new(),
        ),
        O::Forward,
        CallState::Idle,
    );
    invalid_state(
        e.send_provisional(now, av, calls::CallProvisionalResponseOptions::new(180)),
        O::SendProvisional,
        CallState::Idle,
    );
    invalid_state(
        e.hold(now, av, calls::HoldType::SendOnly),
        O::Hold,
        CallState::Idle,
    );
    invalid_state(e.retrieve(now, av), O::Retrieve, CallState::Idle);
    invalid_state(
        e.set_composing(now, av, true),
        O::SetComposing,
        CallState::Idle,
    );
    invalid_state(
        e.send_instant_message(now, av, text(), msg()).map(|_| ()),
        O::SendMessage,
        CallState::Idle,
    );
    // Bad targets and a first message on an AV call: refused, still Idle.
    for target in ["not a uri", "tel:+15551234", "sip:bob@example.com"] {
        let result = e.establish(now, av, target, calls::CallEstablishOptions::new());
        assert!(
            matches!(
                result,
                Err(calls::CallError::InvalidArgument { .. } | calls::CallError::Unroutable { .. })
            ),
            "{target}: {result:?}"
        );
    }
    assert!(matches!(
        e.establish(
            now,
            av,
            BOB,
            calls::CallEstablishOptions::new().first_message(text())
        ),
        Err(calls::CallError::WrongCallType { .. })
    ));
    assert_eq!(e.call_state(av), Some(CallState::Idle));
    net.run_for(Duration::from_secs(1));
    assert!(net.nodes[A].sent.is_empty());
    assert!(net.call_events(A, av).is_empty());

    // Establishing: a second establish, an accept, messages.
    let im = new_call(&mut net, A, alice, CallKind::InstantMessaging);
    let now = net.now;
    net.engine(A)
        .establish(now, im, BOB, calls::CallEstablishOptions::new())
        .unwrap();
    let e = net.engine(A);
    invalid_state(
        e.establish(now, im, BOB, calls::CallEstablishOptions::new()),
        O::Establish,
        CallState::Establishing,
    );
    invalid_state(
        e.accept(now, im, CallAcceptOptions::new()),
        O::Accept,
        CallState::Establishing,
    );
    invalid_state(
        e.send_instant_message(now, im, text(), msg()).map(|_| ()),
        O::SendMessage,
        CallState::Establishing,
    );
    invalid_state(
        e.set_composing(now, im, true),
        O::SetComposing,
        CallState::Establishing,
    );
    net.run_for(Duration::from_millis(100));

    // B's side while Incoming: nothing but answering it.
    let theirs = net.only_received(B).call;
    let now = net.now;
    let b = net.engine(B);
    invalid_state(
        b.establish(now, theirs, ALICE, calls::CallEstablishOptions::new()),
        O::Establish,
        CallState::Incoming,
    );
    invalid_state(
        b.send_instant_message(now, theirs, text(), msg())
            .map(|_| ()),
        O::SendMessage,
        CallState::Incoming,
    );
    invalid_state(
        b.hold(now, theirs, calls::HoldType::SendOnly),
        O::Hold,
        CallState::Incoming,
    );
    b.accept(now, theirs, CallAcceptOptions::new()).unwrap();
    invalid_state(
        b.accept(now, theirs, CallAcceptOptions::new()),
        O::Accept,
        CallState::Establishing,
    );
    net.run_for(Duration::from_secs(1));

    // Established IM call: no answering again, no AV operations, no composing on AV.
    let now = net.now;
    let e = net.engine(A);
    assert_eq!(e.call_state(im), Some(CallState::Established));
    invalid_state(
        e.accept(now, im, CallAcceptOptions::new()),
        O::Accept,
        CallState::Established,
    );
    invalid_state(
        e.decline(now, im, calls::CallDeclineOptions::new(486)),
        O::Decline,
        CallState::Established,
    );
    invalid_state(
        e.establish(now, im, BOB, calls::CallEstablishOptions::new()),
        O::Establish,
        CallState::Established,
    );
    assert!(matches!(
        e.hold(now, im, calls::HoldType::SendOnly),
        Err(calls::CallError::WrongCallType { .. })
    ));

    // Terminate: once, then it is a no-op, then the call is gone.
    e.terminate(now, im, CallTerminateOptions::new()).unwrap();
    net.run_for(Duration::from_secs(1));
    let now = net.now;
    let e = net.engine(A);
    assert_eq!(e.call_state(im), None);
    assert!(matches!(
        e.terminate(now, im, CallTerminateOptions::new()),
        Err(calls::CallError::NoSuchCall(_))
    ));
    assert!(matches!(
        e.send_instant_message(now, im, text(), msg()),
        Err(calls::CallError::NoSuchCall(_))
    ));
    // Terminating an Idle call ends it without a word on the wire.
    let sent = net.nodes[A].sent.len();
    let now = net.now;
    net.engine(A)
        .terminate(now, av, CallTerminateOptions::new())
        .unwrap();
    net.run_for(Duration::from_secs(1));
    assert_eq!(net.nodes[A].sent.len(), sent);
    assert_eq!(
        net.call_events(A, av),
        [CallEvent::StateChanged {
            previous: CallState::Idle,
            state: CallState::Terminated,
            reason: R::LocalTerminated
        }]
    );
    assert_eq!(net.engine(A).call_state(av), None);

    // Unknown handles.
    let ghost_call = {
        let c = new_call(&mut net, A, alice, CallKind::AudioVideo);
        let now = net.now;
        net.engine(A)
            .terminate(now, c, CallTerminateOptions::new())
            .unwrap();
        c
    };
    let now = net.now;
    let e = net.engine(A);
    assert!(matches!(
        e.accept(now, ghost_call, CallAcceptOptions::new()),
        Err(calls::CallError::NoSuchCall(_))
    ));
    e.remove_endpoint(alice);
    assert!(matches!(
        e.new_conversation(alice, ConversationSettings::default()),
        Err(calls::CallError::NoSuchEndpoint(_))
    ));
    net.assert_quiet();
}

/// Case 7b: Terminate in each early state: an incoming call gets 480 (the caller sees a
/// refusal), an outgoing one is CANCELled (the caller's result is `Cancelled`, the
/// callee's reason `RemoteCancelled`).
#[test]
fn terminate_before_the_answer() {
    // The callee ends its incoming call.
    let (mut net, alice, _bob) = Net::pair();
    let call = new_call(&mut net, A, alice, CallKind::AudioVideo);
    let now = net.now;
    net.engine(A)
        .establish(now, call, BOB, calls::CallEstablishOptions::new())
        .unwrap();
    net.run_for(Duration::from_millis(100));
    let theirs = net.only_received(B).call;
    let now = net.now;
    net.engine(B)
        .terminate(now, theirs, CallTerminateOptions::new())
        .unwrap();
    net.run_for(Duration::from_secs(1));
    assert_eq!(net.statuses(B, Method::Invite), [100, 480]);
    assert_eq!(
        states(&net.call_events(B, theirs)),
        [
            (CallState::Idle, CallState::Incoming, R::Incoming),
            (
                CallState::Incoming,
                CallState::Terminated,
                R::LocalTerminated
            ),
        ]
    );
    assert!(matches!(
        establish_result(&net.call_events(A, call)),
        Err(EstablishFailure::Refused { status: 480, .. })
    ));
    net.assert_quiet();

    // The caller gives up before the answer (after B's 180).
    let (mut net, alice, _bob) = Net::pair();
    net.set_app(
        B,
        refuse_all(|engine, now, call| {
            engine
                .send_provisional(now, call, calls::CallProvisionalResponseOptions::new(180))
                .unwrap();
        }),
    );
    let call = new_call(&mut net, A, alice, CallKind::AudioVideo);
    let now = net.now;
    net.engine(A)
        .establish(now, call, BOB, calls::CallEstablishOptions::new())
        .unwrap();
    net.run_for(Duration::from_millis(100));
    let now = net.now;
    let mut options = CallTerminateOptions::new();
    options.reason = Some("SIP;cause=487;text=\"Caller gave up\"".into());
    net.engine(A).terminate(now, call, options).unwrap();
    net.run_for(Duration::from_secs(1));
    let cancels = net.requests(A, Method::Cancel);
    assert_eq!(cancels.len(), 1);
    assert_eq!(
        header_values(&cancels[0].1.headers, "Reason"),
        ["SIP;cause=487;text=\"Caller gave up\""]
    );
    let events = net.call_events(A, call);
    assert_eq!(
        states(&events),
        [
            (CallState::Idle, CallState::Establishing, R::Establishing),
            (
                CallState::Establishing,
                CallState::Terminating,
                R::LocalTerminated
            ),
            (
                CallState::Terminating,
                CallState::Terminated,
                R::LocalTerminated
            ),
        ]
    );
    let failure = establish_result(&events).unwrap_err();
    assert_eq!(failure, EstablishFailure::Cancelled);
    assert!(!failure.is_refusal());
    let theirs = net.only_received(B).call;
    assert_eq!(
        states(&net.call_events(B, theirs)).last().unwrap().2,
        R::RemoteCancelled
    );
    net.assert_quiet();
}

/// A small deterministic generator for the random walks.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// Every call handle `node` has seen (its own and the incoming ones).
fn known_calls(net: &Net, node: usize) -> Vec<CallHandle> {
    let mut calls: Vec<CallHandle> = Vec::new();
    for (_, event) in &net.nodes[node].log {
        let call = match event {
            calls::Event::Call { call, .. } => *call,
            calls::Event::Endpoint {
                event: calls::EndpointEvent::CallReceived(r),
                ..
            } => r.call,
            _ => continue,
        };
        if !calls.contains(&call) {
            calls.push(call);
        }
    }
    calls
}

/// The invariants of one call's events: each state change starts where the last one
/// ended, nothing follows `Terminated`, at most one establish result, and the flow
/// is requested before it goes active.
fn check_call_invariants(events: &[CallEvent], what: &str) {
    let mut state: Option<CallState> = None;
    let mut results = 0;
    let mut flow_requested = false;
    let mut flow_state = MediaFlowState::Idle;
    for (i, event) in events.iter().enumerate() {
        // Terminated is the last event (the establish result comes before it).
        assert!(
            state != Some(CallState::Terminated),
            "{what}: {event:?} after Terminated: {events:?}"
        );
        match event {
            CallEvent::StateChanged {
                previous, state: s, ..
            } => {
                if let Some(current) = state {
                    assert_eq!(*previous, current, "{what}: event {i}: {events:?}");
                }
                assert!(
                    calls::state::may_transition(*previous, *s),
                    "{what}: {event:?}"
                );
                state = Some(*s);
            }
            CallEvent::EstablishCompleted { .. } => results += 1,
            CallEvent::FlowConfigurationRequested { .. } => {
                assert!(!flow_requested, "{what}: requested twice: {events:?}");
                flow_requested = true;
            }
            CallEvent::FlowStateChanged { previous, state: s } => {
                assert!(flow_requested, "{what}: flow without request: {events:?}");
                assert_eq!(*previous, flow_state, "{what}: {events:?}");
                flow_state = *s;
            }
            _ => {}
        }
    }
    assert!(
        results <= 1,
        "{what}: {results} establish results: {events:?}"
    );
}

/// Case 7c: Random walks: both applications issue random commands (legal or not) at random
/// times on every call they know, over a clean or lossy network. Nothing panics, every
/// call's events keep the invariants, and once everything is ended both engines come
/// back to nothing.
#[test]
fn random_operations_never_break_the_engines() {
    use calls::{
        CallDeclineOptions, CallEstablishOptions, HoldType, InstantMessage, MessageOptions,
    };
    let (mut established, mut operations_ok, mut messages) = (0, 0, 0);
    for seed in 1..=24u64 {
        let (mut net, alice, bob) = Net::pair();
        net.reseed(seed);
        if seed % 3 == 0 {
            net.loss_percent = 15;
        }
        let mut rng = Rng(seed);
        let endpoints = [alice, bob];
        for _ in 0..150 {
            let node = rng.below(2);
            let other = 1 - node;
            // Mostly live calls, sometimes any call ever seen (gone ones included).
            let mut known = known_calls(&net, node);
            if rng.below(5) != 0 {
                known.retain(|c| net.nodes[node].engine.call_state(*c).is_some());
            }
            let pick = |rng: &mut Rng| -> Option<CallHandle> {
                (!known.is_empty()).then(|| known[rng.below(known.len())])
            };
            let now = net.now;
            let action = rng.below(14);
            let e = net.engine(node);
            let _ = match action {
                0 | 1 => {
                    let kind = if action == 0 {
                        CallKind::AudioVideo
                    } else {
                        CallKind::InstantMessaging
                    };
                    let conversation = e
                        .new_conversation(endpoints[node], ConversationSettings::default())
                        .unwrap();
                    let call = e.new_call(conversation, kind).unwrap();
                    let target = if rng.below(8) == 0 {
                        NOBODY
                    } else {
                        target_of(other)
                    };
                    e.establish(now, call, target, CallEstablishOptions::new())
                }
                2 => match pick(&mut rng) {
                    Some(c) => e.accept(now, c, CallAcceptOptions::new()),
                    None => Ok(()),
                },
                3 => match pick(&mut rng) {
                    Some(c) => e.decline(now, c, CallDeclineOptions::new(486)),
                    None => Ok(()),
                },
                4 => match pick(&mut rng) {
                    Some(c) => e.forward(now, c, NOBODY, calls::CallForwardOptions::new()),
                    None => Ok(()),
                },
                5 => match pick(&mut rng) {
                    Some(c) => {
                        e.send_provisional(now, c, calls::CallProvisionalResponseOptions::new(180))
                    }
                    None => Ok(()),
                },
                6 => match pick(&mut rng) {
                    Some(c) => e.terminate(now, c, CallTerminateOptions::new()),
                    None => Ok(()),
                },
                7 => match pick(&mut rng) {
                    Some(c) => e.hold(now, c, HoldType::SendOnly),
                    None => Ok(()),
                },
                8 => match pick(&mut rng) {
                    Some(c) => e.retrieve(now, c),
                    None => Ok(()),
                },
                9 => match pick(&mut rng) {
                    Some(c) => e
                        .send_instant_message(
                            now,
                            c,
                            InstantMessage::text("x"),
                            MessageOptions::default(),
                        )
                        .map(|_| ()),
                    None => Ok(()),
                },
                10 => match pick(&mut rng) {
                    Some(c) => e.set_composing(now, c, rng.below(2) == 0),
                    None => Ok(()),
                },
                11 => e
                    .send_page_message(
                        now,
                        endpoints[node],
                        target_of(other),
                        InstantMessage::text("page"),
                        MessageOptions::default(),
                    )
                    .map(|_| ()),
                12 => match pick(&mut rng) {
                    Some(c) => e.hold(now, c, HoldType::Inactive),
                    None => Ok(()),
                },
                _ => match pick(&mut rng) {
                    Some(c) => e.apply_changes(now, c, None),
                    None => Ok(()),
                },
            };
            let wait = Duration::from_millis(rng.next() % 3000);
            net.run_for(wait);
        }
        // End everything still alive, let it all finish.
        for _ in 0..3 {
            for node in [A, B] {
                for call in known_calls(&net, node) {
                    let now = net.now;
                    let _ = net
                        .engine(node)
                        .terminate(now, call, CallTerminateOptions::new());
                }
            }
            net.run_for(Duration::from_secs(40));
        }
        for node in [A, B] {
            for call in known_calls(&net, node) {
                let events = net.call_events(node, call);
                check_call_invariants(&events, &format!("seed {seed} node {node} {call}"));
                assert_eq!(
                    net.engine(node).call_state(call),
                    None,
                    "seed {seed} node {node} {call}: {events:?}"
                );
            }
        }
        for node in [A, B] {
            for (_, event) in &net.nodes[node].log {
                match event {
                    calls::Event::Call {
                        event:
                            CallEvent::StateChanged {
                                state: CallState::Established,
                                ..
                            },
                        ..
                    } => established += 1,
                    calls::Event::Call {
                        event: CallEvent::OperationCompleted { result: Ok(()), .. },
                        ..
                    } => operations_ok += 1,
                    calls::Event::Call {
                        event: CallEvent::MessageReceived { .. },
                        ..
                    } => messages += 1,
                    _ => {}
                }
            }
        }
        net.assert_quiet();
    }
    // The walks did reach the interesting states.
    eprintln!("{established} established, {operations_ok} re-offers, {messages} messages");
    assert!(established >= 40, "{established}");
    assert!(operations_ok >= 10, "{operations_ok}");
    assert!(messages >= 5, "{messages}");
}

/// Case 7d: Regression (found by the random walks): B's re-INVITE gets A's 100 but every
/// 200 is lost, and B hangs up. A, which got the BYE, stops retransmitting its 200,
/// so B's INVITE client transaction, in Proceeding, has no timer left (RFC 3261
/// §17.1.1.2) and no final response coming. Ending the session must abandon it, not
/// leave it in the table for ever. The hold reports `CallEnded`.
#[test]
fn hangup_during_an_unanswered_reinvite_leaves_nothing() {
    let (mut net, alice, _bob) = Net::pair();
    let (a_call, b_call) = av_call(&mut net, A, alice, B);
    // Lose A's 2xx to B's re-INVITE (the INVITE with CSeq 1 from B's side).
    net.filter = Some(Box::new(|message, from, _| {
        !(from.ip().to_string() == "127.0.0.1"
            && matches!(message, sip_message::Message::Response(r)
                if r.status == 200 && r.headers.cseq().is_ok_and(|c| c.method == Method::Invite)))
    }));
    let now = net.now;
    net.engine(B)
        .hold(now, b_call, calls::HoldType::SendOnly)
        .unwrap();
    net.run_for(Duration::from_secs(2));
    // A answered (100, 200 and its retransmissions), none of the 200s arrived.
    let answered = net.statuses(A, Method::Invite);
    assert_eq!(answered[..2], [100, 200]);
    assert!(answered.len() > 2, "{answered:?}");
    assert_eq!(net.requests(B, Method::Ack).len(), 0);
    let now = net.now;
    net.engine(B)
        .terminate(now, b_call, CallTerminateOptions::new())
        .unwrap();
    net.run_for(Duration::from_secs(1));
    assert_eq!(
        operations(&net.call_events(B, b_call)),
        [(
            calls::Operation::Hold,
            Err(calls::OperationFailure::CallEnded)
        )]
    );
    assert_eq!(net.engine(A).call_state(a_call), None);
    net.assert_quiet();
}

fn pages_received(net: &Net, node: usize) -> Vec<calls::PageMessage> {
    net.endpoint_events(node)
        .into_iter()
        .filter_map(|e| match e {
            calls::EndpointEvent::MessageReceived(m) => Some(*m),
            _ => None,
        })
        .collect()
}

fn pages_delivered(net: &Net, node: usize) -> Vec<(calls::MessageId, calls::DeliveryResult)> {
    net.endpoint_events(node)
        .into_iter()
        .filter_map(|e| match e {
            calls::EndpointEvent::MessageDelivered { id, result } => Some((id, result)),
            _ => None,
        })
        .collect()
}

/// Case 8a: Page-mode MESSAGE (RFC 3428) both ways: the peer's endpoint gets the message
/// with its headers and source, the sender its delivery result; a user nobody owns
/// gets 404, an address nobody answers 408 after Timer F.
#[test]
fn page_messages_both_ways() {
    let (mut net, alice, bob) = Net::pair();
    let now = net.now;
    let mut options = calls::MessageOptions::default();
    options
        .headers
        .push(calls::SignalingHeader::new("X-Ticket", "T-99"));
    let to_bob = net
        .engine(A)
        .send_page_message(
            now,
            alice,
            BOB,
            calls::InstantMessage::text("ping"),
            options,
        )
        .unwrap();
    let to_alice = net
        .engine(B)
        .send_page_message(
            now,
            bob,
            ALICE,
            calls::InstantMessage::html("<i>pong</i>"),
            calls::MessageOptions::default(),
        )
        .unwrap();
    net.run_for(Duration::from_secs(1));
    let at_b = pages_received(&net, B);
    assert_eq!(at_b.len(), 1);
    assert_eq!(&at_b[0].body[..], b"ping");
    assert_eq!(at_b[0].content_type, "text/plain;charset=UTF-8");
    assert!(at_b[0].from.contains(ALICE), "{}", at_b[0].from);
    assert!(at_b[0].to.contains(BOB), "{}", at_b[0].to);
    assert_eq!(at_b[0].source, net.nodes[A].addr);
    assert_eq!(header_of(&at_b[0].headers, "X-Ticket"), ["T-99"]);
    let at_a = pages_received(&net, A);
    assert_eq!(at_a.len(), 1);
    assert_eq!(&at_a[0].body[..], b"<i>pong</i>");
    assert_eq!(at_a[0].content_type, "text/html;charset=UTF-8");
    assert_eq!(
        pages_delivered(&net, A),
        [(to_bob, calls::DeliveryResult::Delivered)]
    );
    assert_eq!(
        pages_delivered(&net, B),
        [(to_alice, calls::DeliveryResult::Delivered)]
    );
    // No call was made for them.
    assert_eq!(net.engine(B).stats().calls, 0);
    assert_eq!(net.engine(B).stats().messages_in, 1);

    // Nobody by that name: 404. Nobody at that address: 408 after 64·T1.
    let now = net.now;
    let unknown = net
        .engine(A)
        .send_page_message(
            now,
            alice,
            "sip:nobody@127.0.0.2",
            calls::InstantMessage::text("?"),
            calls::MessageOptions::default(),
        )
        .unwrap();
    let lost = net
        .engine(A)
        .send_page_message(
            now,
            alice,
            NOBODY,
            calls::InstantMessage::text("?"),
            calls::MessageOptions::default(),
        )
        .unwrap();
    net.run_for(Duration::from_secs(1));
    assert_eq!(
        pages_delivered(&net, A)[1..],
        [(unknown, calls::DeliveryResult::Failed { status: 404 })]
    );
    let sent_at = net.elapsed() - Duration::from_secs(1);
    net.run_for(64 * T1);
    assert_eq!(
        pages_delivered(&net, A)[2..],
        [(lost, calls::DeliveryResult::Failed { status: 408 })]
    );
    let when = net.nodes[A]
        .log
        .iter()
        .rev()
        .find_map(|(at, e)| match e {
            calls::Event::Endpoint {
                event: calls::EndpointEvent::MessageDelivered { id, .. },
                ..
            } if *id == lost => Some(*at),
            _ => None,
        })
        .unwrap();
    assert_eq!(when - sent_at, 64 * T1);
    // Bad content type: refused before sending.
    let now = net.now;
    assert!(matches!(
        net.engine(A).send_page_message(
            now,
            alice,
            BOB,
            calls::InstantMessage {
                content_type: "no type".into(),
                body: bytes::Bytes::new()
            },
            calls::MessageOptions::default()
        ),
        Err(calls::CallError::InvalidArgument { .. })
    ));
    net.assert_quiet();
}

/// Case 8b: The demo `echo` user (B's default demo users): a page comes back to its sender,
/// an IM call is answered and echoes each message, an AV call rings then is answered.
/// B's application never sees the demo user's events.
#[test]
fn echo_demo_user_echoes_pages_and_calls() {
    let mut b_config = calls::EngineConfig::default();
    b_config.endpoint.seed = 2;
    let (mut net, alice, _bob) = Net::pair_with(plain_config(1), b_config);
    let echo = "sip:echo@127.0.0.2";

    let now = net.now;
    let id = net
        .engine(A)
        .send_page_message(
            now,
            alice,
            echo,
            calls::InstantMessage::text("anyone there?"),
            calls::MessageOptions::default(),
        )
        .unwrap();
    net.run_for(Duration::from_secs(1));
    assert_eq!(
        pages_delivered(&net, A),
        [(id, calls::DeliveryResult::Delivered)]
    );
    let back = pages_received(&net, A);
    assert_eq!(back.len(), 1);
    assert_eq!(&back[0].body[..], b"anyone there?");
    assert_eq!(back[0].content_type, "text/plain;charset=UTF-8");
    assert!(back[0].from.contains("sip:echo@"), "{}", back[0].from);
    assert_eq!(back[0].source, net.nodes[B].addr);

    // IM call to echo.
    let im = new_call(&mut net, A, alice, CallKind::InstantMessaging);
    let now = net.now;
    net.engine(A)
        .establish(now, im, echo, calls::CallEstablishOptions::new())
        .unwrap();
    net.run_for(Duration::from_secs(1));
    assert_eq!(net.engine(A).call_state(im), Some(CallState::Established));
    let now = net.now;
    for text in ["one", "two"] {
        net.engine(A)
            .send_instant_message(
                now,
                im,
                calls::InstantMessage::text(text),
                calls::MessageOptions::default(),
            )
            .unwrap();
        net.run_for(Duration::from_secs(1));
    }
    assert_eq!(
        messages_received(&net.call_events(A, im)),
        [
            ("text/plain;charset=UTF-8".to_owned(), "one".to_owned()),
            ("text/plain;charset=UTF-8".to_owned(), "two".to_owned())
        ]
    );
    assert_eq!(deliveries(&net.call_events(A, im)).len(), 2);

    // AV call to echo: 180, then 200.
    let av = new_call(&mut net, A, alice, CallKind::AudioVideo);
    let now = net.now;
    net.engine(A)
        .establish(now, av, echo, calls::CallEstablishOptions::new())
        .unwrap();
    net.run_for(Duration::from_secs(1));
    let events = net.call_events(A, av);
    assert!(matches!(
        events[1],
        CallEvent::ProvisionalResponseReceived { status: 180, .. }
    ));
    assert!(establish_result(&events).is_ok());
    for call in [im, av] {
        let now = net.now;
        net.engine(A)
            .terminate(now, call, CallTerminateOptions::new())
            .unwrap();
    }
    net.run_for(Duration::from_secs(1));
    // Everything at B went to the demo user, none of it to B's application: B's log
    // holds only the media instructions for its driver (open, start echoing, close).
    assert!(
        net.nodes[B]
            .log
            .iter()
            .all(|(_, e)| matches!(e, Event::Media { .. })),
        "{:?}",
        net.nodes[B].log
    );
    let echo_start = net.media_log.iter().find_map(|(node, _, i)| match i {
        calls::MediaInstruction::Start(s) if *node == B => Some(s.clone()),
        _ => None,
    });
    assert!(echo_start.is_some_and(|s| s.echo && s.send && s.receive));
    net.assert_quiet();
}

/// Case 9: The AV call flow over a network that loses 20% of the messages, for several
/// seeds: retransmissions (Timer A, the 2xx's, Timer E) carry it through; both sides
/// raise exactly the events of the lossless flow; a message and a page are delivered
/// once each; everything drains.
#[test]
fn lossy_network_av_and_im_calls() {
    let mut total_lost = 0;
    for seed in 1..=40u64 {
        let (mut net, alice, _bob) = Net::pair();
        net.reseed(seed);
        net.loss_percent = 20;
        net.set_app(B, accept_all(CallAcceptOptions::new()));
        let call = new_call(&mut net, A, alice, CallKind::AudioVideo);
        let now = net.now;
        net.engine(A)
            .establish(now, call, BOB, calls::CallEstablishOptions::new())
            .unwrap();
        net.run_for(Duration::from_secs(20));
        let theirs = net.only_received(B).call;
        assert_eq!(
            without_ok_headers(net.call_events(A, call)),
            caller_establish_events(),
            "seed {seed}\n{}",
            trace(&net)
        );
        assert_eq!(
            net.call_events(B, theirs),
            callee_establish_events(),
            "seed {seed}\n{}",
            trace(&net)
        );
        // Hold and retrieve through the loss.
        let now = net.now;
        net.engine(A)
            .hold(now, call, calls::HoldType::SendOnly)
            .unwrap();
        net.run_for(Duration::from_secs(20));
        let now = net.now;
        net.engine(A).retrieve(now, call).unwrap();
        net.run_for(Duration::from_secs(20));
        assert_eq!(
            operations(&net.call_events(A, call)),
            [
                (calls::Operation::Hold, Ok(())),
                (calls::Operation::Retrieve, Ok(()))
            ],
            "seed {seed}\n{}",
            trace(&net)
        );
        let now = net.now;
        net.engine(B)
            .terminate(now, theirs, CallTerminateOptions::new())
            .unwrap();
        net.run_for(Duration::from_secs(20));
        let a_events = net.call_events(A, call);
        assert_eq!(
            a_events[a_events.len() - 2..],
            ending_by_peer()[..],
            "seed {seed}\n{}",
            trace(&net)
        );
        let b_events = net.call_events(B, theirs);
        assert_eq!(
            b_events[b_events.len() - 3..],
            ending_by_us()[..],
            "seed {seed}"
        );

        // An IM call and a page through the same loss.
        let im = new_call(&mut net, A, alice, CallKind::InstantMessaging);
        let now = net.now;
        net.engine(A)
            .establish(now, im, BOB, calls::CallEstablishOptions::new())
            .unwrap();
        net.run_for(Duration::from_secs(20));
        let now = net.now;
        net.engine(A)
            .send_instant_message(
                now,
                im,
                calls::InstantMessage::text("through the noise"),
                calls::MessageOptions::default(),
            )
            .unwrap();
        net.engine(A)
            .send_page_message(
                now,
                alice,
                BOB,
                calls::InstantMessage::text("page"),
                calls::MessageOptions::default(),
            )
            .unwrap();
        net.run_for(Duration::from_secs(40));
        let im_theirs = net.received(B)[1].call;
        assert_eq!(
            messages_received(&net.call_events(B, im_theirs)).len(),
            1,
            "seed {seed}"
        );
        assert_eq!(deliveries(&net.call_events(A, im)).len(), 1);
        assert_eq!(pages_received(&net, B).len(), 1, "seed {seed}");
        assert_eq!(
            pages_delivered(&net, A)[0].1,
            calls::DeliveryResult::Delivered,
            "seed {seed}"
        );
        let now = net.now;
        net.engine(A)
            .terminate(now, im, CallTerminateOptions::new())
            .unwrap();
        net.run_for(Duration::from_secs(40));
        assert_eq!(net.engine(A).call_state(im), None);
        assert_eq!(net.engine(B).call_state(im_theirs), None);
        total_lost += net.lost;
        net.assert_quiet();
    }
    // The network did lose messages.
    assert!(total_lost >= 20, "{total_lost}");
}

/// Case 10a: The engine's `max_call_duration` ends a call nobody hangs up: the first
/// side's cap sends BYE (with a Reason); its call goes `Terminating` then `Terminated`,
/// both with `MaxDurationReached`; the peer sees `RemoteTerminated`.
#[test]
fn max_call_duration_ends_the_call() {
    let mut a_config = plain_config(1);
    a_config.max_call_duration = Duration::from_secs(60);
    let (mut net, alice, _bob) = Net::pair_with(a_config, plain_config(2));
    let (ours, theirs) = av_call(&mut net, A, alice, B);
    let start = net.elapsed();
    net.run_for(Duration::from_secs(70));
    let byes = net.requests(A, Method::Bye);
    assert_eq!(byes.len(), 1);
    // Established at 20 ms (the 2xx's arrival), capped 60 s later.
    assert_eq!(
        byes[0].0,
        Duration::from_millis(20) + Duration::from_secs(60)
    );
    assert!(start < byes[0].0);
    assert_eq!(
        header_values(&byes[0].1.headers, "Reason"),
        ["SIP;cause=200;text=\"Maximum call duration\""]
    );
    let events = net.call_events(A, ours);
    assert_eq!(
        states(&events)[2..],
        [
            (
                CallState::Established,
                CallState::Terminating,
                R::MaxDurationReached
            ),
            (
                CallState::Terminating,
                CallState::Terminated,
                R::MaxDurationReached
            ),
        ]
    );
    assert_eq!(
        states(&net.call_events(B, theirs)).last().unwrap().2,
        R::RemoteTerminated
    );
    net.assert_quiet();
}

/// Case 10b: A long call lives through its RFC 4028 session refreshes (1800 s
/// intervals, refreshed at half) and ends only at the default one-hour cap.
#[test]
fn a_long_call_is_refreshed_until_the_cap() {
    let (mut net, alice, _bob) = Net::pair();
    let (ours, theirs) = av_call(&mut net, A, alice, B);
    net.run_for(Duration::from_secs(3500));
    assert_eq!(net.engine(A).call_state(ours), Some(CallState::Established));
    assert_eq!(
        net.engine(B).call_state(theirs),
        Some(CallState::Established)
    );
    // Refreshed (UPDATE or re-INVITE) several times, each answered 200.
    let refreshes = net.requests(A, Method::Update).len()
        + net.requests(B, Method::Update).len()
        + net.requests(A, Method::Invite).len()
        + net.requests(B, Method::Invite).len()
        - 1;
    assert!(refreshes >= 3, "{}", trace(&net));
    // The refreshes changed nothing the application sees.
    assert_eq!(
        without_ok_headers(net.call_events(A, ours)),
        caller_establish_events()
    );
    assert_eq!(net.call_events(B, theirs), callee_establish_events());
    net.run_for(Duration::from_secs(200));
    assert_eq!(
        states(&net.call_events(A, ours)).last().unwrap().2,
        R::MaxDurationReached
    );
    assert_eq!(net.engine(B).call_state(theirs), None);
    net.assert_quiet();
}

/// Case 10c: B's 2xx is never acknowledged (every ACK lost): B gives up after 64·T1
/// with a BYE (RFC 3261 §13.3.1.4) and ends with `Timeout`; A, established, sees
/// `RemoteTerminated`.
#[test]
fn unacknowledged_answer_times_out_at_the_callee() {
    let (mut net, alice, _bob) = Net::pair();
    net.filter = Some(Box::new(
        |message, _, _| !matches!(message, sip_message::Message::Request(r) if r.method == Method::Ack),
    ));
    net.set_app(B, accept_all(CallAcceptOptions::new()));
    let call = new_call(&mut net, A, alice, CallKind::AudioVideo);
    let now = net.now;
    net.engine(A)
        .establish(now, call, BOB, calls::CallEstablishOptions::new())
        .unwrap();
    net.run_for(Duration::from_secs(40));
    let theirs = net.only_received(B).call;
    let b_events = net.timed_call_events(B, theirs);
    let plain: Vec<CallEvent> = b_events.iter().map(|(_, e)| e.clone()).collect();
    assert_eq!(
        states(&plain),
        [
            (CallState::Idle, CallState::Incoming, R::Incoming),
            (CallState::Incoming, CallState::Establishing, R::Accepted),
            (CallState::Establishing, CallState::Terminated, R::Timeout),
        ]
    );
    assert_eq!(
        when(&b_events, CallState::Terminated),
        Duration::from_millis(10) + 64 * T1
    );
    // The flow that was requested ends without ever going active.
    assert!(plain.contains(&CallEvent::FlowStateChanged {
        previous: MediaFlowState::Idle,
        state: MediaFlowState::Terminated
    }));
    let a_events = net.call_events(A, call);
    assert!(establish_result(&a_events).is_ok());
    assert_eq!(states(&a_events).last().unwrap().2, R::RemoteTerminated);
    net.filter = None;
    net.assert_quiet();
}

/// Case 10d: No codec in common: B cannot answer (RFC 3264 §6: a stream with no common
/// format is refused; with nothing left the INVITE gets 488 and a Warning). A's
/// establish ends refused with 488.
#[test]
fn no_common_codec_is_refused_with_488() {
    let mut a_config = plain_config(1);
    a_config.codecs = vec![calls::Codec::pcma()];
    let mut b_config = plain_config(2);
    b_config.codecs = vec![calls::Codec::pcmu()];
    let (mut net, alice, _bob) = Net::pair_with(a_config, b_config);
    let call = new_call(&mut net, A, alice, CallKind::AudioVideo);
    let now = net.now;
    net.engine(A)
        .establish(now, call, BOB, calls::CallEstablishOptions::new())
        .unwrap();
    net.run_for(Duration::from_secs(1));
    let events = net.call_events(A, call);
    match establish_result(&events) {
        Err(EstablishFailure::Refused {
            status: 488,
            headers,
            ..
        }) => assert_eq!(header_of(&headers, "Warning").len(), 1, "{headers:?}"),
        other => panic!("{other:?}"),
    }
    // B's application never heard of a call it could not take.
    assert!(net.received(B).is_empty());
    net.assert_quiet();
}

/// Case 10e: Impersonation: the conversation's identity is From and
/// P-Asserted-Identity (RFC 3325) on the INVITE.
#[test]
fn impersonation_sets_from_and_asserted_identity() {
    let (mut net, alice, _bob) = Net::pair();
    net.set_app(B, accept_all(CallAcceptOptions::new()));
    let settings = ConversationSettings {
        impersonation: Some(calls::Identity {
            uri: "sip:helpdesk@127.0.0.1".into(),
            display_name: Some("Help Desk".into()),
        }),
        ..ConversationSettings::default()
    };
    let call = new_call_with(&mut net, A, alice, CallKind::AudioVideo, settings);
    let now = net.now;
    net.engine(A)
        .establish(now, call, BOB, calls::CallEstablishOptions::new())
        .unwrap();
    net.run_for(Duration::from_secs(1));
    let received = net.only_received(B);
    assert!(
        received
            .from
            .starts_with("\"Help Desk\" <sip:helpdesk@127.0.0.1>;tag="),
        "{}",
        received.from
    );
    assert_eq!(
        header_of(&received.headers, "P-Asserted-Identity"),
        ["\"Help Desk\" <sip:helpdesk@127.0.0.1>"]
    );
    assert_eq!(net.engine(A).call_state(call), Some(CallState::Established));
    let now = net.now;
    net.engine(A)
        .terminate(now, call, CallTerminateOptions::new())
        .unwrap();
    net.assert_quiet();
}

/// Case 10f: The other demo users: `busy` declines with 486, `ring` rings (180) and
/// gives up with 480 after `ring_timeout`.
#[test]
fn busy_and_ring_demo_users() {
    let mut b_config = calls::EngineConfig::default();
    b_config.endpoint.seed = 2;
    b_config.ring_timeout = Duration::from_secs(20);
    let (mut net, alice, _bob) = Net::pair_with(plain_config(1), b_config);
    let busy = new_call(&mut net, A, alice, CallKind::AudioVideo);
    let ring = new_call(&mut net, A, alice, CallKind::AudioVideo);
    let now = net.now;
    net.engine(A)
        .establish(
            now,
            busy,
            "sip:busy@127.0.0.2",
            calls::CallEstablishOptions::new(),
        )
        .unwrap();
    net.engine(A)
        .establish(
            now,
            ring,
            "sip:ring@127.0.0.2",
            calls::CallEstablishOptions::new(),
        )
        .unwrap();
    net.run_for(Duration::from_secs(30));
    assert!(matches!(
        establish_result(&net.call_events(A, busy)),
        Err(EstablishFailure::Refused { status: 486, .. })
    ));
    let ring_events = net.timed_call_events(A, ring);
    assert!(matches!(
        ring_events[1].1,
        CallEvent::ProvisionalResponseReceived { status: 180, .. }
    ));
    assert_eq!(
        when(&ring_events, CallState::Terminated),
        Duration::from_millis(20) + Duration::from_secs(20)
    );
    let plain: Vec<CallEvent> = ring_events.into_iter().map(|(_, e)| e).collect();
    assert!(matches!(
        establish_result(&plain),
        Err(EstablishFailure::Refused { status: 480, .. })
    ));
    assert!(net.nodes[B].log.is_empty());
    net.assert_quiet();
}

/// Case 10g: The same AV call over TCP (`;transport=tcp`): every message of the call
/// goes over TCP, nothing is retransmitted (RFC 3261 §17.1.1.2: Timer A only over an
/// unreliable transport), and the non-INVITE transactions end at once.
#[test]
fn av_call_over_tcp() {
    let (mut net, alice, _bob) = Net::pair();
    net.set_app(B, accept_all(CallAcceptOptions::new()));
    let call = new_call(&mut net, A, alice, CallKind::AudioVideo);
    let now = net.now;
    net.engine(A)
        .establish(
            now,
            call,
            "sip:bob@127.0.0.2;transport=tcp",
            calls::CallEstablishOptions::new(),
        )
        .unwrap();
    net.run_for(Duration::from_secs(1));
    let theirs = net.only_received(B).call;
    assert_eq!(
        without_ok_headers(net.call_events(A, call)),
        caller_establish_events()
    );
    assert_eq!(net.call_events(B, theirs), callee_establish_events());
    let now = net.now;
    net.engine(A)
        .hold(now, call, calls::HoldType::SendOnly)
        .unwrap();
    net.run_for(Duration::from_secs(1));
    assert_eq!(
        operations(&net.call_events(A, call)),
        [(calls::Operation::Hold, Ok(()))]
    );
    let now = net.now;
    net.engine(A)
        .terminate(now, call, CallTerminateOptions::new())
        .unwrap();
    net.run_for(Duration::from_secs(1));
    assert_eq!(net.engine(B).call_state(theirs), None);
    for node in [A, B] {
        for (_, message) in &net.nodes[node].sent {
            let via = match message {
                sip_message::Message::Request(r) => header_values(&r.headers, "Via"),
                sip_message::Message::Response(r) => header_values(&r.headers, "Via"),
            };
            assert!(via[0].starts_with("SIP/2.0/TCP "), "{via:?}");
        }
    }
    // One INVITE, one re-INVITE, no retransmission.
    assert_eq!(net.requests(A, Method::Invite).len(), 2);
    assert_eq!(net.statuses(B, Method::Invite), [100, 200, 100, 200]);
    // Reliable transport: Timer J and K are 0, so a few seconds later only the INVITE
    // client transactions remain, in Accepted until Timer M (64·T1 on every transport,
    // RFC 6026 §8.4) to absorb 2xx retransmissions.
    net.run_for(Duration::from_secs(6));
    let stats = net.engine(A).stats().core;
    assert_eq!(
        (stats.transactions, stats.client_invite),
        (2, 2),
        "{stats:?}"
    );
    assert_eq!(stats.dialogs, 0);
    net.assert_quiet();
}

/// Case 7e: Races at the answer. (1) B accepts and A cancels at the same instant: the
/// 200 crosses the CANCEL; A acknowledges it and sends BYE at once (RFC 3261 §9.1,
/// §15), so A's result is `Cancelled` and B's call, briefly up, ends `RemoteTerminated`.
/// (2) B accepts and hangs up before the ACK: its BYE waits for the ACK (§15), then the
/// call ends on both sides.
#[test]
fn races_at_the_answer() {
    // (1) 200 crossing CANCEL.
    let (mut net, alice, _bob) = Net::pair();
    let call = new_call(&mut net, A, alice, CallKind::AudioVideo);
    let now = net.now;
    net.engine(A)
        .establish(now, call, BOB, calls::CallEstablishOptions::new())
        .unwrap();
    net.run_for(Duration::from_millis(100));
    let theirs = net.only_received(B).call;
    let now = net.now;
    net.engine(B)
        .accept(now, theirs, CallAcceptOptions::new())
        .unwrap();
    net.engine(A)
        .terminate(now, call, CallTerminateOptions::new())
        .unwrap();
    net.run_for(Duration::from_secs(2));
    let a_events = net.call_events(A, call);
    assert_eq!(
        states(&a_events),
        [
            (CallState::Idle, CallState::Establishing, R::Establishing),
            (
                CallState::Establishing,
                CallState::Terminating,
                R::LocalTerminated
            ),
            (
                CallState::Terminating,
                CallState::Terminated,
                R::LocalTerminated
            ),
        ]
    );
    assert_eq!(
        establish_result(&a_events),
        Err(EstablishFailure::Cancelled)
    );
    assert_eq!(net.requests(A, Method::Cancel).len(), 1);
    assert_eq!(net.requests(A, Method::Bye).len(), 1);
    let b_states = states(&net.call_events(B, theirs));
    assert_eq!(
        b_states.last().unwrap(),
        &(
            CallState::Established,
            CallState::Terminated,
            R::RemoteTerminated
        ),
        "{b_states:?}"
    );
    net.assert_quiet();

    // (2) The callee hangs up before the ACK.
    let (mut net, alice, _bob) = Net::pair();
    net.set_app(B, |engine, now, event| {
        if let calls::Event::Endpoint {
            event: calls::EndpointEvent::CallReceived(received),
            ..
        } = event
        {
            engine
                .accept(now, received.call, CallAcceptOptions::new())
                .unwrap();
            engine
                .terminate(now, received.call, CallTerminateOptions::new())
                .unwrap();
        }
    });
    let call = new_call(&mut net, A, alice, CallKind::AudioVideo);
    let now = net.now;
    net.engine(A)
        .establish(now, call, BOB, calls::CallEstablishOptions::new())
        .unwrap();
    net.run_for(Duration::from_secs(2));
    let theirs = net.only_received(B).call;
    let bye = net.requests(B, Method::Bye);
    assert_eq!(bye.len(), 1);
    // After the ACK (sent at 20 ms, in at 30 ms).
    assert_eq!(bye[0].0, Duration::from_millis(30));
    assert_eq!(
        states(&net.call_events(B, theirs)),
        [
            (CallState::Idle, CallState::Incoming, R::Incoming),
            (CallState::Incoming, CallState::Establishing, R::Accepted),
            (
                CallState::Establishing,
                CallState::Terminating,
                R::LocalTerminated
            ),
            (
                CallState::Terminating,
                CallState::Terminated,
                R::LocalTerminated
            ),
        ]
    );
    let a_events = net.call_events(A, call);
    assert!(establish_result(&a_events).is_ok());
    assert_eq!(states(&a_events).last().unwrap().2, R::RemoteTerminated);
    net.assert_quiet();
}

/// Case 6e: A re-offer by the held side keeps it a full participant: B holds A, A sends
/// a new offer (`apply_changes`, e.g. a codec change) — offered `sendrecv`, since A
/// itself does not hold (RFC 3264 §8.4: the held side answered `recvonly` only because
/// of B's offer); a re-offer B refuses changes nothing; when B retrieves, media flows
/// both ways again.
#[test]
fn held_side_reoffer_then_retrieve_restores_both_ways() {
    use calls::Direction::{RecvOnly, SendOnly, SendRecv};
    let (mut net, alice, _bob) = Net::pair();
    let (a_call, b_call) = av_call(&mut net, A, alice, B);
    let now = net.now;
    net.engine(B)
        .hold(now, b_call, calls::HoldType::SendOnly)
        .unwrap();
    net.run_for(Duration::from_secs(1));
    assert_eq!(directions(&net, A, a_call), (RecvOnly, SendOnly));
    let now = net.now;
    net.engine(A)
        .apply_changes(
            now,
            a_call,
            Some(vec![calls::Codec::pcma(), calls::Codec::pcmu()]),
        )
        .unwrap();
    net.run_for(Duration::from_secs(1));
    let offer = String::from_utf8_lossy(&net.requests(A, Method::Invite).last().unwrap().1.body)
        .into_owned();
    assert!(offer.contains("a=sendrecv"), "{offer}");
    assert_eq!(
        operations(&net.call_events(A, a_call)),
        [(calls::Operation::ApplyChanges, Ok(()))]
    );
    // Still held: B answered sendonly.
    assert_eq!(directions(&net, A, a_call).1, SendOnly);
    // A re-offer B cannot take (no codec in common): refused with 488, and the
    // session, and what A offers and answers, stay as they were (RFC 3264 §8).
    let now = net.now;
    net.engine(A)
        .apply_changes(now, a_call, Some(vec![calls::Codec::new(9, "G722", 8000)]))
        .unwrap();
    net.run_for(Duration::from_secs(1));
    assert_eq!(
        operations(&net.call_events(A, a_call))[1],
        (
            calls::Operation::ApplyChanges,
            Err(calls::OperationFailure::Refused { status: 488 })
        )
    );
    assert_eq!(directions(&net, A, a_call), (SendRecv, SendOnly));
    let now = net.now;
    net.engine(B).retrieve(now, b_call).unwrap();
    net.run_for(Duration::from_secs(1));
    assert_eq!(directions(&net, A, a_call), (SendRecv, SendRecv));
    assert_eq!(directions(&net, B, b_call), (SendRecv, SendRecv));
    let now = net.now;
    net.engine(A)
        .terminate(now, a_call, CallTerminateOptions::new())
        .unwrap();
    net.assert_quiet();
}

/// Case 6f: A codec change (`apply_changes` preferring PCMA) is a new flow
/// configuration on both sides, like a hold; a refresh that changes nothing is not.
#[test]
fn codec_change_is_a_configuration_change() {
    let (mut net, alice, _bob) = Net::pair();
    let (a_call, b_call) = av_call(&mut net, A, alice, B);
    let now = net.now;
    net.engine(A)
        .apply_changes(
            now,
            a_call,
            Some(vec![calls::Codec::pcma(), calls::Codec::pcmu()]),
        )
        .unwrap();
    net.run_for(Duration::from_secs(1));
    assert_eq!(
        operations(&net.call_events(A, a_call)),
        [(calls::Operation::ApplyChanges, Ok(()))]
    );
    for (node, call) in [(A, a_call), (B, b_call)] {
        let seen = configurations(&net.call_events(node, call));
        assert_eq!(seen.len(), 1, "node {node}: {seen:?}");
        assert_eq!(seen[0].codec.as_deref(), Some("PCMA/8000"));
        assert_eq!(seen[0].local_direction, calls::Direction::SendRecv);
        assert_eq!(seen[0].remote_direction, calls::Direction::SendRecv);
    }
    // The same offer again: nothing changed, nothing reported.
    let now = net.now;
    net.engine(A).apply_changes(now, a_call, None).unwrap();
    net.run_for(Duration::from_secs(1));
    assert_eq!(operations(&net.call_events(A, a_call)).len(), 2);
    assert_eq!(configurations(&net.call_events(A, a_call)).len(), 1);
    assert_eq!(configurations(&net.call_events(B, b_call)).len(), 1);
    let now = net.now;
    net.engine(A)
        .terminate(now, a_call, CallTerminateOptions::new())
        .unwrap();
    net.assert_quiet();
}
