//! Call transfer on the virtual net with three engines: A (alice) calls B (bob) and
//! transfers B to C (carol), blind or attended; B's application accepts, declines or
//! ignores the REFER; C answers, is busy or rings. Assertions read the events and the
//! SIP messages on the wire.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

#[path = "support/net.rs"]
mod net;

use calls::refer::{ReferTo, Replaces};
use calls::sip_core::Flow;
use calls::{
    CallAcceptOptions, CallDeclineOptions, CallEstablishOptions, CallEvent, CallHandle, CallKind,
    CallProvisionalResponseOptions, CallState, CallStateTransitionReason as R,
    CallTerminateOptions, CallTransferOptions, ConversationSettings, EndpointEvent, EndpointHandle,
    EstablishFailure, Event, TransferId, TransferOutcome, TransferState,
};
use net::*;
use sip_message::{HeaderName, Message, Method, Request, Transport};
use std::cell::RefCell;
use std::collections::HashSet;
use std::rc::Rc;
use std::time::Duration;

const A: usize = 0;
const B: usize = 1;
const C: usize = 2;
const UUI: &str = "56a390f3d2b7310023a2;encoding=hex;purpose=isdn-uui;content=isdn-uui";

/// What B's application does with a REFER.
#[derive(Debug, Clone, Copy)]
enum Transferee {
    Accept,
    Decline(u16),
    Ignore,
    Manual,
}

/// What C's application does with a call.
#[derive(Debug, Clone, Copy)]
enum Target {
    /// 180, then 200.
    Answer,
    Busy,
    /// 180 only.
    Ring,
}

struct World {
    net: Net,
    alice: EndpointHandle,
    bob: EndpointHandle,
    /// The calls B placed for transfers.
    placed: Rc<RefCell<Vec<CallHandle>>>,
    /// The transfers B accepted manually: (call, transfer).
    manual: Rc<RefCell<Vec<(CallHandle, TransferId)>>>,
}

/// B's application: accepts every call, and does `mode` with every REFER.
fn transferee_app(
    mode: Transferee,
    placed: Rc<RefCell<Vec<CallHandle>>>,
    manual: Rc<RefCell<Vec<(CallHandle, TransferId)>>>,
) -> impl FnMut(&mut calls::Engine, std::time::Instant, &Event) {
    move |engine, now, event| match event {
        Event::Endpoint {
            event: EndpointEvent::CallReceived(received),
            ..
        } => engine
            .accept(now, received.call, CallAcceptOptions::new())
            .unwrap(),
        Event::Call {
            call,
            event: CallEvent::TransferReceived { transfer, .. },
        } => match mode {
            Transferee::Accept => {
                let new = engine
                    .accept_transfer(now, *call, *transfer, CallEstablishOptions::new())
                    .unwrap();
                placed.borrow_mut().push(new);
            }
            Transferee::Decline(status) => {
                engine
                    .decline_transfer(now, *call, *transfer, status)
                    .unwrap();
            }
            Transferee::Ignore => {}
            Transferee::Manual => {
                let request = engine
                    .accept_transfer_manually(now, *call, *transfer)
                    .unwrap();
                assert_eq!(request.target, CAROL);
                manual.borrow_mut().push((*call, *transfer));
            }
        },
        _ => {}
    }
}

fn world(transferee: Transferee, target: Target) -> World {
    let (mut net, [alice, bob, _carol]) = Net::trio();
    let placed = Rc::new(RefCell::new(Vec::new()));
    let manual = Rc::new(RefCell::new(Vec::new()));
    net.set_app(
        B,
        transferee_app(transferee, placed.clone(), manual.clone()),
    );
    net.set_app(C, move |engine, now, event| {
        if let Event::Endpoint {
            event: EndpointEvent::CallReceived(received),
            ..
        } = event
        {
            let call = received.call;
            match target {
                Target::Answer => {
                    engine
                        .send_provisional(now, call, CallProvisionalResponseOptions::new(180))
                        .unwrap();
                    engine.accept(now, call, CallAcceptOptions::new()).unwrap();
                }
                Target::Busy => engine
                    .decline(now, call, CallDeclineOptions::new(486))
                    .unwrap(),
                Target::Ring => engine
                    .send_provisional(now, call, CallProvisionalResponseOptions::new(180))
                    .unwrap(),
            }
        }
    });
    World {
        net,
        alice,
        bob,
        placed,
        manual,
    }
}

/// `from` calls `target` with `options`; the call handle.
fn dial(
    net: &mut Net,
    from: usize,
    endpoint: EndpointHandle,
    target: &str,
    options: CallEstablishOptions,
) -> CallHandle {
    let now = net.now;
    let engine = net.engine(from);
    let conversation = engine
        .new_conversation(endpoint, ConversationSettings::default())
        .unwrap();
    let call = engine.new_call(conversation, CallKind::AudioVideo).unwrap();
    engine.establish(now, call, target, options).unwrap();
    call
}

/// A calls B; both are up. (A's call, B's call.)
fn a_calls_b(w: &mut World) -> (CallHandle, CallHandle) {
    let a_call = dial(&mut w.net, A, w.alice, BOB, CallEstablishOptions::new());
    w.net.run_for(Duration::from_secs(2));
    assert_eq!(
        w.net.engine(A).call_state(a_call),
        Some(CallState::Established)
    );
    let b_call = w.net.received(B)[0].call;
    (a_call, b_call)
}

fn transfer_events(net: &Net, node: usize, call: CallHandle) -> Vec<CallEvent> {
    net.call_events(node, call)
        .into_iter()
        .filter(|e| {
            matches!(
                e,
                CallEvent::TransferStateChanged { .. } | CallEvent::TransferCompleted { .. }
            )
        })
        .collect()
}

fn changed(transfer: TransferId, state: TransferState, status: Option<u16>) -> CallEvent {
    CallEvent::TransferStateChanged {
        transfer,
        state,
        status,
    }
}

fn completed(
    transfer: TransferId,
    final_status: u16,
    reason: TransferOutcome,
    reason_phrase: Option<&str>,
) -> CallEvent {
    CallEvent::TransferCompleted {
        transfer,
        final_status,
        reason,
        reason_phrase: reason_phrase.map(str::to_owned),
    }
}

fn last_state(net: &Net, node: usize, call: CallHandle) -> (CallState, R) {
    let all = states(&net.call_events(node, call));
    let (_, state, reason) = all.last().unwrap().clone();
    (state, reason)
}

fn one(values: Vec<String>) -> String {
    assert_eq!(values.len(), 1, "{values:?}");
    values.into_iter().next().unwrap()
}

fn tag_of(value: &str) -> String {
    value.split(";tag=").nth(1).unwrap().to_owned()
}

/// The sipfrag status lines of the NOTIFYs `node` sent, first transmissions only.
fn notified(net: &Net, node: usize) -> Vec<(String, String)> {
    let mut seen = HashSet::new();
    net.requests(node, Method::Notify)
        .into_iter()
        .filter(|(_, r)| seen.insert(r.headers.cseq().unwrap().seq))
        .map(|(_, r)| {
            let body = String::from_utf8_lossy(&r.body).trim().to_owned();
            let state = one(header_values(&r.headers, "Subscription-State"));
            (body, state)
        })
        .collect()
}

#[test]
fn blind_transfer_reaches_the_target_with_referred_by_headers_and_uui_and_ends_the_call() {
    let mut w = world(Transferee::Accept, Target::Answer);
    let (a_call, b_call) = a_calls_b(&mut w);
    let now = w.net.now;
    let options = CallTransferOptions::new()
        .header("X-Case", "42")
        .user_to_user(UUI);
    let transfer = w
        .net
        .engine(A)
        .transfer(now, a_call, CAROL, options)
        .unwrap();
    assert_eq!(
        w.net.engine(A).call_state(a_call),
        Some(CallState::Transferring)
    );
    w.net.run_for(Duration::from_secs(5));
    let trace = trace(&w.net);

    // The REFER on the wire.
    let refers = w.net.requests(A, Method::Refer);
    let refer = &refers[0].1;
    let refer_to = one(header_values(&refer.headers, "Refer-To"));
    assert_eq!(
        refer_to,
        "<sip:carol@127.0.0.3?X-Case=42&User-to-User=56a390f3d2b7310023a2%3Bencoding%3Dhex%3Bpurpose%3Disdn-uui%3Bcontent%3Disdn-uui>"
    );
    assert_eq!(
        one(header_values(&refer.headers, "Referred-By")),
        "<sip:alice@127.0.0.1>"
    );
    assert_eq!(one(header_values(&refer.headers, "X-Case")), "42");
    assert_eq!(one(header_values(&refer.headers, "User-to-User")), UUI);
    assert!(refer.headers.get(&HeaderName::Contact).is_some());

    // B was asked, and said yes.
    let received: Vec<CallEvent> = w
        .net
        .call_events(B, b_call)
        .into_iter()
        .filter(|e| matches!(e, CallEvent::TransferReceived { .. }))
        .collect();
    let [
        CallEvent::TransferReceived {
            target,
            replaces,
            referred_by,
            headers,
            user_to_user,
            ..
        },
    ] = received.as_slice()
    else {
        panic!("{received:?}");
    };
    assert_eq!(target, CAROL);
    assert_eq!(replaces, &None);
    assert_eq!(referred_by.as_deref(), Some("<sip:alice@127.0.0.1>"));
    assert_eq!(headers, &[calls::SignalingHeader::new("X-Case", "42")]);
    assert_eq!(user_to_user.as_deref(), Some(UUI));
    assert_eq!(w.net.statuses(B, Method::Refer), vec![202], "{trace}");

    // C's INVITE carries what the REFER asked.
    let invites = w.net.requests(B, Method::Invite);
    assert_eq!(invites.len(), 1, "{trace}");
    let invite = &invites[0].1;
    let supported = one(header_values(&invite.headers, "Supported"));
    assert!(supported.contains("replaces"), "{supported}");
    assert_eq!(&invite.uri[..], CAROL.as_bytes());
    assert_eq!(
        one(header_values(&invite.headers, "Referred-By")),
        "<sip:alice@127.0.0.1>"
    );
    assert_eq!(one(header_values(&invite.headers, "X-Case")), "42");
    assert_eq!(one(header_values(&invite.headers, "User-to-User")), UUI);
    assert!(header_values(&invite.headers, "Replaces").is_empty());
    let received = w.net.only_received(C);
    assert_eq!(received.replaces, None);

    // The NOTIFYs B sent: 100, 180, 200 (the last ends the subscription).
    let notifies = w.net.requests(B, Method::Notify);
    let cseq = refer.headers.cseq().unwrap().seq;
    for (_, n) in &notifies {
        assert_eq!(
            one(header_values(&n.headers, "Event")),
            format!("refer;id={cseq}")
        );
        assert_eq!(
            one(header_values(&n.headers, "Content-Type")),
            "message/sipfrag;version=2.0"
        );
        assert!(n.headers.get(&HeaderName::Contact).is_some());
    }
    let frags = notified(&w.net, B);
    assert_eq!(frags.len(), 3, "{frags:?}");
    assert_eq!(frags[0].0, "SIP/2.0 100 Trying");
    assert!(frags[0].1.starts_with("active;expires="), "{frags:?}");
    assert_eq!(frags[1].0, "SIP/2.0 180 Ringing");
    assert_eq!(
        frags[2],
        (
            "SIP/2.0 200 OK".to_owned(),
            "terminated;reason=noresource".to_owned()
        )
    );

    // A saw it all, and ended its call (RFC 5589 §6).
    assert_eq!(
        transfer_events(&w.net, A, a_call),
        vec![
            changed(transfer, TransferState::Requested, None),
            changed(transfer, TransferState::Accepted, Some(202)),
            changed(transfer, TransferState::Progress, Some(100)),
            changed(transfer, TransferState::Progress, Some(180)),
            completed(transfer, 200, TransferOutcome::Accepted, Some("OK")),
        ],
        "{trace}"
    );
    let a_states = states(&w.net.call_events(A, a_call));
    assert_eq!(
        a_states[a_states.len() - 3..]
            .iter()
            .map(|(_, s, r)| (*s, r.clone()))
            .collect::<Vec<_>>(),
        vec![
            (CallState::Transferring, R::TransferStarted),
            (CallState::Terminating, R::Transferred),
            (CallState::Terminated, R::Transferred),
        ]
    );
    assert_eq!(w.net.requests(A, Method::Bye).len(), 1, "{trace}");
    assert_eq!(
        last_state(&w.net, B, b_call),
        (CallState::Terminated, R::RemoteTerminated)
    );
    // B and C are talking.
    let placed = w.placed.borrow()[0];
    assert_eq!(
        w.net.engine(B).call_state(placed),
        Some(CallState::Established)
    );
    assert_eq!(
        w.net.engine(C).call_state(received.call),
        Some(CallState::Established)
    );

    let now = w.net.now;
    w.net
        .engine(B)
        .terminate(now, placed, CallTerminateOptions::new())
        .unwrap();
    w.net.assert_quiet();
}

#[test]
fn a_busy_target_completes_with_486_busy_and_the_call_stays_up() {
    let mut w = world(Transferee::Accept, Target::Busy);
    let (a_call, b_call) = a_calls_b(&mut w);
    let now = w.net.now;
    let transfer = w
        .net
        .engine(A)
        .transfer(now, a_call, CAROL, CallTransferOptions::new())
        .unwrap();
    w.net.run_for(Duration::from_secs(5));
    let trace = trace(&w.net);
    assert_eq!(
        transfer_events(&w.net, A, a_call),
        vec![
            changed(transfer, TransferState::Requested, None),
            changed(transfer, TransferState::Accepted, Some(202)),
            changed(transfer, TransferState::Progress, Some(100)),
            completed(transfer, 486, TransferOutcome::Busy, Some("Busy Here")),
        ],
        "{trace}"
    );
    assert_eq!(
        last_state(&w.net, A, a_call),
        (CallState::Established, R::TransferFailed { status: 486 })
    );
    assert_eq!(
        w.net.engine(B).call_state(b_call),
        Some(CallState::Established)
    );
    assert!(w.net.requests(A, Method::Bye).is_empty());
    assert_eq!(
        notified(&w.net, B).last().unwrap(),
        &(
            "SIP/2.0 486 Busy Here".to_owned(),
            "terminated;reason=noresource".to_owned()
        )
    );
    // The call goes on: a second transfer can be asked, and hold works.
    let now = w.net.now;
    w.net
        .engine(A)
        .hold(now, a_call, calls::HoldType::SendOnly)
        .unwrap();
    w.net.run_for(Duration::from_secs(2));
    let now = w.net.now;
    w.net
        .engine(A)
        .terminate(now, a_call, CallTerminateOptions::new())
        .unwrap();
    w.net.assert_quiet();
}

#[test]
fn a_declined_refer_is_refused_with_its_status() {
    let mut w = world(Transferee::Decline(603), Target::Answer);
    let (a_call, b_call) = a_calls_b(&mut w);
    let now = w.net.now;
    let transfer = w
        .net
        .engine(A)
        .transfer(now, a_call, CAROL, CallTransferOptions::new())
        .unwrap();
    w.net.run_for(Duration::from_secs(3));
    assert_eq!(
        transfer_events(&w.net, A, a_call),
        vec![
            changed(transfer, TransferState::Requested, None),
            completed(transfer, 603, TransferOutcome::Refused, Some("Decline")),
        ]
    );
    assert_eq!(w.net.statuses(B, Method::Refer), vec![603]);
    assert!(w.net.requests(B, Method::Notify).is_empty());
    assert!(w.net.received(C).is_empty());
    assert_eq!(
        last_state(&w.net, A, a_call),
        (CallState::Established, R::TransferFailed { status: 603 })
    );
    assert_eq!(
        w.net.engine(B).call_state(b_call),
        Some(CallState::Established)
    );
}

#[test]
fn an_unanswered_refer_is_declined_603_after_the_answer_time() {
    let mut w = world(Transferee::Ignore, Target::Answer);
    let (a_call, b_call) = a_calls_b(&mut w);
    let now = w.net.now;
    let transfer = w
        .net
        .engine(A)
        .transfer(now, a_call, CAROL, CallTransferOptions::new())
        .unwrap();
    w.net.run_for(Duration::from_secs(3));
    assert_eq!(
        transfer_events(&w.net, A, a_call),
        vec![
            changed(transfer, TransferState::Requested, None),
            completed(transfer, 603, TransferOutcome::Refused, Some("Decline")),
        ]
    );
    let refer_at = w.net.requests(A, Method::Refer)[0].0;
    let answered_at = w
        .net
        .responses(B)
        .into_iter()
        .find(|(_, r)| r.headers.cseq().unwrap().method == Method::Refer)
        .unwrap()
        .0;
    assert!(
        answered_at >= refer_at + calls::REFER_ANSWER_TIME,
        "{answered_at:?} {refer_at:?}"
    );
    // Too late now.
    let now = w.net.now;
    let transfer_b = w
        .net
        .call_events(B, b_call)
        .into_iter()
        .find_map(|e| match e {
            CallEvent::TransferReceived { transfer, .. } => Some(transfer),
            _ => None,
        })
        .unwrap();
    assert!(matches!(
        w.net
            .engine(B)
            .accept_transfer(now, b_call, transfer_b, CallEstablishOptions::new()),
        Err(calls::CallError::NoSuchTransfer(_))
    ));
}

#[test]
fn attended_transfer_replaces_the_consultation_call() {
    let mut w = world(Transferee::Accept, Target::Answer);
    let (a_b, b_a) = a_calls_b(&mut w);
    let a_c = dial(&mut w.net, A, w.alice, CAROL, CallEstablishOptions::new());
    w.net.run_for(Duration::from_secs(2));
    assert_eq!(
        w.net.engine(A).call_state(a_c),
        Some(CallState::Established)
    );
    let c_a = w.net.only_received(C).call;
    // The consultation dialog as C sees it: its tag is the to-tag.
    let a_c_call_id = w.net.engine(A).sip_call_id(a_c).unwrap();
    let a_invite = w
        .net
        .requests(A, Method::Invite)
        .into_iter()
        .map(|(_, r)| r)
        .find(|r| r.headers.call_id().unwrap() == a_c_call_id)
        .unwrap();
    let a_tag = tag_of(&one(header_values(&a_invite.headers, "From")));
    let c_ok = w
        .net
        .responses(C)
        .into_iter()
        .map(|(_, r)| r)
        .find(|r| r.status == 200 && r.headers.call_id().unwrap() == a_c_call_id)
        .unwrap();
    let c_tag = tag_of(&one(header_values(&c_ok.headers, "To")));

    let now = w.net.now;
    let transfer = w
        .net
        .engine(A)
        .transfer_attended(now, a_b, a_c, CallTransferOptions::new())
        .unwrap();
    w.net.run_for(Duration::from_secs(5));
    let trace = trace(&w.net);

    let expected = Replaces {
        call_id: a_c_call_id.clone(),
        to_tag: c_tag.clone(),
        from_tag: a_tag.clone(),
        early_only: false,
    };
    let refer = w.net.requests(A, Method::Refer)[0].1.clone();
    let refer_to = ReferTo::parse(&one(header_values(&refer.headers, "Refer-To"))).unwrap();
    assert_eq!(refer_to.uri, "sip:carol@127.0.0.3:5060");
    assert_eq!(refer_to.replaces.as_ref(), Some(&expected));

    // B's INVITE to C carries Replaces; C took it as replacing its call with A.
    let invite = w.net.requests(B, Method::Invite)[0].1.clone();
    assert_eq!(
        one(header_values(&invite.headers, "Replaces")),
        expected.to_string()
    );
    assert_eq!(&invite.uri[..], b"sip:carol@127.0.0.3:5060");
    let received = w.net.received(C);
    assert_eq!(received.len(), 2, "{trace}");
    assert_eq!(received[0].replaces, None);
    assert_eq!(received[1].replaces, Some(c_a));
    let c_b = received[1].call;

    // C ended the consultation dialog (BYE, RFC 3891 §3).
    let byes = w.net.requests(C, Method::Bye);
    assert_eq!(byes.len(), 1, "{trace}");
    assert_eq!(byes[0].1.headers.call_id().unwrap(), a_c_call_id);
    assert_eq!(
        last_state(&w.net, C, c_a),
        (CallState::Terminated, R::Replaced)
    );
    assert_eq!(
        last_state(&w.net, A, a_c),
        (CallState::Terminated, R::RemoteTerminated)
    );
    // A's transfer succeeded and its call with B ended; B and C are talking.
    assert_eq!(
        transfer_events(&w.net, A, a_b).last().unwrap(),
        &completed(transfer, 200, TransferOutcome::Accepted, Some("OK")),
        "{trace}"
    );
    assert_eq!(
        last_state(&w.net, A, a_b),
        (CallState::Terminated, R::Transferred)
    );
    assert_eq!(
        last_state(&w.net, B, b_a),
        (CallState::Terminated, R::RemoteTerminated)
    );
    let placed = w.placed.borrow()[0];
    assert_eq!(
        w.net.engine(B).call_state(placed),
        Some(CallState::Established)
    );
    assert_eq!(
        w.net.engine(C).call_state(c_b),
        Some(CallState::Established)
    );
    let now = w.net.now;
    w.net
        .engine(C)
        .terminate(now, c_b, CallTerminateOptions::new())
        .unwrap();
    w.net.assert_quiet();
}

/// B calls C with a hand-written Replaces header: C's answer.
fn replacing_invite(w: &mut World, replaces: &str) -> CallHandle {
    let options = CallEstablishOptions::new().header("Replaces", replaces);
    let call = dial(&mut w.net, B, w.bob, CAROL, options);
    w.net.run_for(Duration::from_secs(2));
    call
}

fn refused_with(net: &Net, node: usize, call: CallHandle) -> u16 {
    net.call_events(node, call)
        .into_iter()
        .find_map(|e| match e {
            CallEvent::EstablishCompleted {
                result: Err(EstablishFailure::Refused { status, .. }),
            } => Some(status),
            _ => None,
        })
        .expect("refused")
}

#[test]
fn replaces_for_an_unknown_dialog_gets_481() {
    let mut w = world(Transferee::Accept, Target::Answer);
    let call = replacing_invite(&mut w, "nope@192.0.2.9;to-tag=1;from-tag=2");
    assert_eq!(refused_with(&w.net, B, call), 481);
    assert!(w.net.received(C).is_empty());
    // A malformed one: 400.
    let call = replacing_invite(&mut w, "nope@192.0.2.9;to-tag=1");
    assert_eq!(refused_with(&w.net, B, call), 400);
    assert!(w.net.received(C).is_empty());
}

#[test]
fn early_only_replaces_of_a_confirmed_dialog_gets_486_and_an_early_dialog_not_ours_481() {
    // A–C confirmed.
    let mut w = world(Transferee::Accept, Target::Answer);
    let a_c = dial(&mut w.net, A, w.alice, CAROL, CallEstablishOptions::new());
    w.net.run_for(Duration::from_secs(2));
    let call_id = w.net.engine(A).sip_call_id(a_c).unwrap();
    let invite = w.net.requests(A, Method::Invite)[0].1.clone();
    let a_tag = tag_of(&one(header_values(&invite.headers, "From")));
    let ok = w
        .net
        .responses(C)
        .into_iter()
        .find(|(_, r)| r.status == 200)
        .unwrap()
        .1;
    let c_tag = tag_of(&one(header_values(&ok.headers, "To")));
    let call = replacing_invite(
        &mut w,
        &format!("{call_id};to-tag={c_tag};from-tag={a_tag};early-only"),
    );
    assert_eq!(refused_with(&w.net, B, call), 486);
    assert_eq!(w.net.received(C).len(), 1);
    // The tags the wrong way round name no dialog of C's.
    let call = replacing_invite(
        &mut w,
        &format!("{call_id};to-tag={a_tag};from-tag={c_tag}"),
    );
    assert_eq!(refused_with(&w.net, B, call), 481);
    assert_eq!(
        w.net.engine(A).call_state(a_c),
        Some(CallState::Established)
    );

    // A–C early (C rings): an early dialog C did not initiate cannot be replaced.
    let mut w = world(Transferee::Accept, Target::Ring);
    let a_c = dial(&mut w.net, A, w.alice, CAROL, CallEstablishOptions::new());
    w.net.run_for(Duration::from_secs(2));
    let call_id = w.net.engine(A).sip_call_id(a_c).unwrap();
    let invite = w.net.requests(A, Method::Invite)[0].1.clone();
    let a_tag = tag_of(&one(header_values(&invite.headers, "From")));
    let ringing = w
        .net
        .responses(C)
        .into_iter()
        .find(|(_, r)| r.status == 180)
        .unwrap()
        .1;
    let c_tag = tag_of(&one(header_values(&ringing.headers, "To")));
    let call = replacing_invite(
        &mut w,
        &format!("{call_id};to-tag={c_tag};from-tag={a_tag}"),
    );
    assert_eq!(refused_with(&w.net, B, call), 481);
    assert_eq!(
        w.net.engine(A).call_state(a_c),
        Some(CallState::Establishing)
    );
}

#[test]
fn replaces_of_our_own_early_dialog_cancels_it() {
    // A calls C, which rings; B's INVITE to A replaces A's early dialog with C: A
    // accepts it and CANCELs its own INVITE (RFC 3891 §3).
    let mut w = world(Transferee::Accept, Target::Ring);
    let a_c = dial(&mut w.net, A, w.alice, CAROL, CallEstablishOptions::new());
    w.net.run_for(Duration::from_secs(2));
    let call_id = w.net.engine(A).sip_call_id(a_c).unwrap();
    let invite = w.net.requests(A, Method::Invite)[0].1.clone();
    let a_tag = tag_of(&one(header_values(&invite.headers, "From")));
    let ringing = w
        .net
        .responses(C)
        .into_iter()
        .find(|(_, r)| r.status == 180)
        .unwrap()
        .1;
    let c_tag = tag_of(&one(header_values(&ringing.headers, "To")));
    w.net.set_app(A, accept_all(CallAcceptOptions::new()));
    let options = CallEstablishOptions::new().header(
        "Replaces",
        format!("{call_id};to-tag={a_tag};from-tag={c_tag};early-only"),
    );
    let b_a = dial(&mut w.net, B, w.bob, ALICE, options);
    w.net.run_for(Duration::from_secs(3));
    let received = w.net.only_received(A);
    assert_eq!(received.replaces, Some(a_c));
    assert_eq!(
        w.net.engine(B).call_state(b_a),
        Some(CallState::Established)
    );
    assert_eq!(w.net.requests(A, Method::Cancel).len(), 1);
    assert_eq!(
        last_state(&w.net, A, a_c),
        (CallState::Terminated, R::Replaced)
    );
    assert!(
        w.net
            .call_events(A, a_c)
            .contains(&CallEvent::EstablishCompleted {
                result: Err(EstablishFailure::Ended {
                    reason: R::Replaced
                })
            })
    );
}

#[test]
fn hanging_up_mid_transfer_completes_it_as_failed() {
    let mut w = world(Transferee::Accept, Target::Ring);
    let (a_call, b_call) = a_calls_b(&mut w);
    let now = w.net.now;
    let transfer = w
        .net
        .engine(A)
        .transfer(now, a_call, CAROL, CallTransferOptions::new())
        .unwrap();
    w.net.run_for(Duration::from_secs(2));
    let now = w.net.now;
    w.net
        .engine(A)
        .terminate(now, a_call, CallTerminateOptions::new())
        .unwrap();
    w.net.run_for(Duration::from_secs(5));
    assert_eq!(
        transfer_events(&w.net, A, a_call),
        vec![
            changed(transfer, TransferState::Requested, None),
            changed(transfer, TransferState::Accepted, Some(202)),
            changed(transfer, TransferState::Progress, Some(100)),
            changed(transfer, TransferState::Progress, Some(180)),
            completed(transfer, 487, TransferOutcome::Failed, None),
        ]
    );
    let events = w.net.call_events(A, a_call);
    let completed_at = events
        .iter()
        .position(|e| matches!(e, CallEvent::TransferCompleted { .. }))
        .unwrap();
    assert!(
        completed_at < events.len() - 1,
        "Terminated is the last event"
    );
    assert_eq!(
        last_state(&w.net, A, a_call),
        (CallState::Terminated, R::LocalTerminated)
    );
    assert_eq!(
        last_state(&w.net, B, b_call),
        (CallState::Terminated, R::RemoteTerminated)
    );
    // B's call to C rings on; it is B's to end.
    let placed = w.placed.borrow()[0];
    assert_eq!(
        w.net.engine(B).call_state(placed),
        Some(CallState::Establishing)
    );
    let now = w.net.now;
    w.net
        .engine(B)
        .terminate(now, placed, CallTerminateOptions::new())
        .unwrap();
    w.net.assert_quiet();
}

#[test]
fn manual_acceptance_reports_what_the_application_notifies() {
    let mut w = world(Transferee::Manual, Target::Answer);
    let (a_call, _b_call) = a_calls_b(&mut w);
    let now = w.net.now;
    let transfer = w
        .net
        .engine(A)
        .transfer(
            now,
            a_call,
            CAROL,
            CallTransferOptions::new().keep_call(true),
        )
        .unwrap();
    w.net.run_for(Duration::from_secs(1));
    let (b_call, b_transfer) = w.manual.borrow()[0];
    assert!(w.net.received(C).is_empty(), "the application places it");
    let now = w.net.now;
    let engine = w.net.engine(B);
    engine
        .notify_transfer(now, b_call, b_transfer, 183, "Session Progress")
        .unwrap();
    engine
        .notify_transfer(now, b_call, b_transfer, 200, "OK")
        .unwrap();
    assert!(
        engine
            .notify_transfer(now, b_call, b_transfer, 200, "OK")
            .is_err()
    );
    w.net.run_for(Duration::from_secs(3));
    let events = transfer_events(&w.net, A, a_call);
    assert_eq!(
        events.last().unwrap(),
        &completed(transfer, 200, TransferOutcome::Accepted, Some("OK"))
    );
    // keep_call: the call is up again.
    assert_eq!(
        last_state(&w.net, A, a_call),
        (CallState::Established, R::Transferred)
    );
    let frags = notified(&w.net, B);
    assert_eq!(frags.first().unwrap().0, "SIP/2.0 100 Trying");
    assert_eq!(
        frags.last().unwrap(),
        &(
            "SIP/2.0 200 OK".to_owned(),
            "terminated;reason=noresource".to_owned()
        )
    );
}

#[test]
fn a_subscription_without_a_final_notify_ends_as_no_answer_408() {
    let mut w = world(Transferee::Manual, Target::Answer);
    let (a_call, _b_call) = a_calls_b(&mut w);
    let now = w.net.now;
    let transfer = w
        .net
        .engine(A)
        .transfer(now, a_call, CAROL, CallTransferOptions::new())
        .unwrap();
    // B accepted, then never reports: its subscription expires (establish time limit
    // 120 s + 30 s) with a NOTIFY `terminated;reason=timeout`.
    w.net.run_for(Duration::from_secs(200));
    let trace = trace(&w.net);
    assert_eq!(
        transfer_events(&w.net, A, a_call),
        vec![
            changed(transfer, TransferState::Requested, None),
            changed(transfer, TransferState::Accepted, Some(202)),
            changed(transfer, TransferState::Progress, Some(100)),
            completed(transfer, 408, TransferOutcome::NoAnswer, None),
        ],
        "{trace}"
    );
    assert_eq!(
        notified(&w.net, B).last().unwrap(),
        &(
            "SIP/2.0 100 Trying".to_owned(),
            "terminated;reason=timeout".to_owned()
        )
    );
    assert_eq!(
        last_state(&w.net, A, a_call),
        (CallState::Established, R::TransferFailed { status: 408 })
    );
}

/// Delivers `request` to `to` as if `from` had sent it, and runs the net a while.
fn inject(net: &mut Net, from: &str, to: &str, request: &Request) {
    let now = net.now;
    let to_addr = to.parse().unwrap();
    let node = net.nodes.iter().position(|n| n.addr == to_addr).unwrap();
    net.engine(node).handle_message(
        now,
        request.to_bytes(),
        Flow {
            transport: Transport::Udp,
            local: to_addr,
            remote: from.parse().unwrap(),
            connection: None,
        },
    );
    net.run_for(Duration::from_secs(1));
}

/// `request` as a new request of its dialog: a new branch and CSeq `seq`.
fn renewed(request: &Request, from: &str, seq: u32, n: u32) -> Request {
    let mut request = request.clone();
    request.headers.set(
        HeaderName::Via,
        format!("SIP/2.0/UDP {from};branch=z9hG4bKinjected{n}"),
    );
    request
        .headers
        .set(HeaderName::CSeq, format!("{seq} {}", request.method));
    request
}

fn response_to(net: &Net, node: usize, seq: u32, method: Method) -> (u16, String) {
    net.responses(node)
        .into_iter()
        .map(|(_, r)| r)
        .find(|r| {
            let cseq = r.headers.cseq().unwrap();
            cseq.seq == seq && cseq.method == method
        })
        .map(|r| (r.status, String::from_utf8_lossy(&r.reason).into_owned()))
        .unwrap()
}

#[test]
fn malformed_refers_get_400_and_stray_notifies_481_or_489() {
    let mut w = world(Transferee::Accept, Target::Busy);
    let (a_call, b_call) = a_calls_b(&mut w);
    let now = w.net.now;
    w.net
        .engine(A)
        .transfer(now, a_call, CAROL, CallTransferOptions::new())
        .unwrap();
    w.net.run_for(Duration::from_secs(3));
    let refer = w.net.requests(A, Method::Refer)[0].1.clone();
    let notify = w.net.requests(B, Method::Notify).last().unwrap().1.clone();
    let mut seq = refer.headers.cseq().unwrap().seq + 10;
    type Change = Box<dyn Fn(&mut Request)>;
    let cases: [(&str, Change, u16, &str); 4] = [
        (
            "no Refer-To",
            Box::new(|r: &mut Request| {
                r.headers.remove(&HeaderName::ReferTo);
            }),
            400,
            "Missing Refer-To",
        ),
        (
            "two Refer-To",
            Box::new(|r: &mut Request| {
                r.headers.push(HeaderName::ReferTo, "<sip:x@192.0.2.1>");
            }),
            400,
            "More than one Refer-To",
        ),
        (
            "two values",
            Box::new(|r: &mut Request| {
                r.headers
                    .set(HeaderName::ReferTo, "<sip:x@192.0.2.1>, <sip:y@192.0.2.1>");
            }),
            400,
            "Bad Refer-To: more than one value",
        ),
        (
            "bad UUI",
            Box::new(|r: &mut Request| {
                r.headers
                    .set(HeaderName::ReferTo, "<sip:x@192.0.2.1?User-to-User=zz>");
            }),
            400,
            "Bad User-to-User: `zz` is not hex data",
        ),
    ];
    for (n, (case, change, status, reason)) in cases.iter().enumerate() {
        seq += 1;
        let mut request = renewed(&refer, A_ADDR, seq, n as u32);
        change(&mut request);
        inject(&mut w.net, A_ADDR, B_ADDR, &request);
        assert_eq!(
            response_to(&w.net, B, seq, Method::Refer),
            (*status, (*reason).to_owned()),
            "{case}"
        );
    }
    // No TransferReceived for any of them.
    let received = w
        .net
        .call_events(B, b_call)
        .into_iter()
        .filter(|e| matches!(e, CallEvent::TransferReceived { .. }))
        .count();
    assert_eq!(received, 1);

    // A NOTIFY for a transfer that is over: 481; another event package: 489.
    let mut seq = notify.headers.cseq().unwrap().seq + 10;
    let request = renewed(&notify, B_ADDR, seq, 10);
    inject(&mut w.net, B_ADDR, A_ADDR, &request);
    assert_eq!(response_to(&w.net, A, seq, Method::Notify).0, 481);
    seq += 1;
    let mut request = renewed(&notify, B_ADDR, seq, 11);
    request.headers.set(HeaderName::Event, "presence");
    inject(&mut w.net, B_ADDR, A_ADDR, &request);
    assert_eq!(response_to(&w.net, A, seq, Method::Notify).0, 489);
}

#[test]
fn transfer_options_are_checked() {
    let mut w = world(Transferee::Accept, Target::Answer);
    let (a_call, _) = a_calls_b(&mut w);
    let now = w.net.now;
    let engine = w.net.engine(A);
    assert!(matches!(
        engine.transfer(now, a_call, "not a uri", CallTransferOptions::new()),
        Err(calls::CallError::InvalidArgument { .. })
    ));
    assert!(matches!(
        engine.transfer(
            now,
            a_call,
            CAROL,
            CallTransferOptions::new().user_to_user("xyz;encoding=hex")
        ),
        Err(calls::CallError::InvalidArgument { .. })
    ));
    assert!(matches!(
        engine.transfer(
            now,
            a_call,
            CAROL,
            CallTransferOptions::new().header("Refer-To", "<sip:x@y>")
        ),
        Err(calls::CallError::ForbiddenHeader { .. })
    ));
    assert!(matches!(
        engine.transfer(
            now,
            a_call,
            CAROL,
            CallTransferOptions::new().header("Referred-By", "<sip:x@y>")
        ),
        Err(calls::CallError::InvalidArgument {
            what: "transfer header",
            ..
        })
    ));
    assert!(matches!(
        engine.transfer(
            now,
            a_call,
            CAROL,
            CallTransferOptions::new().header("X-Bad", "a\r\nb")
        ),
        Err(calls::CallError::InvalidHeader { .. })
    ));
    assert!(matches!(
        engine.transfer_attended(now, a_call, a_call, CallTransferOptions::new()),
        Err(calls::CallError::InvalidArgument { .. })
    ));
    // Nothing went out, and the call is as it was.
    assert_eq!(engine.call_state(a_call), Some(CallState::Established));
    let transfer = engine
        .transfer(now, a_call, CAROL, CallTransferOptions::new())
        .unwrap();
    // One at a time.
    assert!(matches!(
        engine.transfer(now, a_call, CAROL, CallTransferOptions::new()),
        Err(calls::CallError::InvalidState {
            state: CallState::Transferring,
            ..
        })
    ));
    w.net.run_for(Duration::from_secs(3));
    assert!(w.net.call_events(A, a_call).contains(&completed(
        transfer,
        200,
        TransferOutcome::Accepted,
        Some("OK")
    )));
    assert_eq!(w.net.requests(A, Method::Refer).len(), 1);
}

/// Drops the first copy of every NOTIFY and of every response to one.
fn drop_first_notify_copies() -> Filter {
    let mut seen = HashSet::new();
    Box::new(move |message: &Message, _, _| {
        let (kind, cseq) = match message {
            Message::Request(r) => ("request", r.headers.cseq().unwrap()),
            Message::Response(r) => ("response", r.headers.cseq().unwrap()),
        };
        if cseq.method != Method::Notify {
            return true;
        }
        !seen.insert((kind, cseq.seq))
    })
}

#[test]
fn lost_notifies_and_their_answers_are_retransmitted_and_the_transfer_completes() {
    let mut w = world(Transferee::Accept, Target::Answer);
    let (a_call, _) = a_calls_b(&mut w);
    w.net.filter = Some(drop_first_notify_copies());
    let now = w.net.now;
    let transfer = w
        .net
        .engine(A)
        .transfer(now, a_call, CAROL, CallTransferOptions::new())
        .unwrap();
    w.net.run_for(Duration::from_secs(20));
    let trace = trace(&w.net);
    let events = transfer_events(&w.net, A, a_call);
    assert_eq!(
        events
            .iter()
            .filter(|e| matches!(e, CallEvent::TransferCompleted { .. }))
            .count(),
        1,
        "{trace}"
    );
    assert_eq!(
        events.last().unwrap(),
        &completed(transfer, 200, TransferOutcome::Accepted, Some("OK")),
        "{trace}"
    );
    let notifies = w.net.requests(B, Method::Notify);
    let distinct: HashSet<u32> = notifies
        .iter()
        .map(|(_, r)| r.headers.cseq().unwrap().seq)
        .collect();
    assert!(notifies.len() > distinct.len(), "{trace}");
    // Sent one at a time, in order: each status at most once, the final one last.
    let frags: Vec<String> = notified(&w.net, B).into_iter().map(|(f, _)| f).collect();
    assert_eq!(frags.last().unwrap(), "SIP/2.0 200 OK", "{frags:?}");
    assert_eq!(
        last_state(&w.net, A, a_call),
        (CallState::Terminated, R::Transferred)
    );
}

#[test]
fn blind_transfer_completes_under_random_loss() {
    for seed in [3, 7, 11] {
        let mut w = world(Transferee::Accept, Target::Answer);
        let (a_call, _) = a_calls_b(&mut w);
        w.net.loss_percent = 25;
        w.net.reseed(seed);
        let now = w.net.now;
        let transfer = w
            .net
            .engine(A)
            .transfer(
                now,
                a_call,
                CAROL,
                CallTransferOptions::new().header("X-Case", "7"),
            )
            .unwrap();
        w.net.run_for(Duration::from_secs(60));
        assert!(w.net.lost > 0, "seed {seed}: nothing was lost");
        let trace = trace(&w.net);
        let done: Vec<CallEvent> = transfer_events(&w.net, A, a_call)
            .into_iter()
            .filter(|e| matches!(e, CallEvent::TransferCompleted { .. }))
            .collect();
        assert_eq!(
            done,
            vec![completed(
                transfer,
                200,
                TransferOutcome::Accepted,
                Some("OK")
            )],
            "seed {seed}\n{trace}"
        );
        let c_call = w.net.only_received(C).call;
        assert_eq!(
            w.net.engine(C).call_state(c_call),
            Some(CallState::Established),
            "seed {seed}"
        );
        let invite = &w.net.requests(B, Method::Invite)[0].1;
        assert_eq!(one(header_values(&invite.headers, "X-Case")), "7");
        assert_eq!(
            last_state(&w.net, A, a_call),
            (CallState::Terminated, R::Transferred),
            "seed {seed}"
        );
    }
}

#[test]
fn a_refer_without_subscription_is_accepted_without_notify() {
    // RFC 4488: `Refer-Sub: false`. A first transfer (declined) gives a REFER to copy.
    let mut w = world(Transferee::Decline(603), Target::Answer);
    let (a_call, _) = a_calls_b(&mut w);
    let now = w.net.now;
    w.net
        .engine(A)
        .transfer(now, a_call, CAROL, CallTransferOptions::new())
        .unwrap();
    w.net.run_for(Duration::from_secs(2));
    let placed = w.placed.clone();
    w.net.set_app(
        B,
        transferee_app(Transferee::Accept, placed, w.manual.clone()),
    );
    let refer = w.net.requests(A, Method::Refer)[0].1.clone();
    let seq = refer.headers.cseq().unwrap().seq + 1;
    let mut request = renewed(&refer, A_ADDR, seq, 1);
    request
        .headers
        .push(HeaderName::parse(b"Refer-Sub"), "false");
    inject(&mut w.net, A_ADDR, B_ADDR, &request);
    w.net.run_for(Duration::from_secs(3));
    let accepted = w
        .net
        .responses(B)
        .into_iter()
        .map(|(_, r)| r)
        .find(|r| r.headers.cseq().unwrap().seq == seq)
        .unwrap();
    assert_eq!(accepted.status, 202);
    assert_eq!(one(header_values(&accepted.headers, "Refer-Sub")), "false");
    assert!(w.net.requests(B, Method::Notify).is_empty());
    // The new call was placed all the same.
    assert_eq!(w.net.received(C).len(), 1);
    assert_eq!(
        w.net.engine(B).call_state(w.placed.borrow()[0]),
        Some(CallState::Established)
    );
}
