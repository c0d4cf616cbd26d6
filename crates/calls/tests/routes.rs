//! Routing rules at work in the engine: T has no application, only rules; A calls
//! users of T and each rule's action happens (bridge, parallel ring, decline, forward,
//! echo), a user no rule matches gets 404.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

#[path = "support/net.rs"]
mod net;

use calls::routing::{self, Action, Match, RingStrategy, RouteTable, Rule, Target};
use calls::{
    ApplicationEndpointSettings, BridgeMode, CallAcceptOptions, CallEstablishOptions, CallEvent,
    CallHandle, CallKind, CallState, ConversationSettings, EndpointHandle, EstablishFailure,
};
use net::*;
use sip_message::Method;
use std::time::Duration;

const T: usize = 2;
const C: usize = 3;

fn rule(name: &str, user: &str, action: Action) -> Rule {
    let when = Match {
        user: Some(routing::regex(user).unwrap()),
        ..Match::default()
    };
    Rule::new(name, when, action).unwrap()
}

fn net_with_rules() -> (Net, EndpointHandle) {
    let (mut net, alice, _bob) = Net::pair();
    let mut config = plain_config(3);
    let mut bob = Target::new("sip:bob@127.0.0.2");
    bob.headers = vec![("X-Routed".into(), "yes".into())];
    config.routes = RouteTable::new(vec![
        rule(
            "to-bob",
            "^bob$",
            Action::Bridge {
                targets: vec![bob],
                ring: RingStrategy::Sequential,
                mode: BridgeMode::SignalingOnly,
                pass_headers: Vec::new(),
            },
        ),
        rule(
            "anchored",
            "^anchored$",
            Action::Bridge {
                targets: vec![Target::new("sip:bob@127.0.0.2")],
                ring: RingStrategy::Sequential,
                mode: BridgeMode::MediaAnchored,
                pass_headers: Vec::new(),
            },
        ),
        rule(
            "both",
            "^both$",
            Action::Bridge {
                targets: vec![
                    Target::new("sip:bob@127.0.0.2"),
                    Target::new("sip:carol@127.0.0.4"),
                ],
                ring: RingStrategy::Parallel,
                mode: BridgeMode::SignalingOnly,
                pass_headers: Vec::new(),
            },
        ),
        rule(
            "passing",
            "^pass$",
            Action::Bridge {
                targets: vec![Target::new("sip:bob@127.0.0.2")],
                ring: RingStrategy::Sequential,
                mode: BridgeMode::SignalingOnly,
                pass_headers: vec!["X-Pass".into(), "user-to-user".into()],
            },
        ),
        rule(
            "busy",
            "^busy$",
            Action::Decline {
                status: 486,
                reason: None,
            },
        ),
        rule(
            "moved",
            "^moved$",
            Action::Forward {
                target: "sip:elsewhere@127.0.0.9".into(),
            },
        ),
        rule("echo", "^echo$", Action::Echo),
    ]);
    let t = net.add("127.0.0.3:5060", config);
    assert_eq!(t, T);
    let c = net.add("127.0.0.4:5060", plain_config(4));
    net.engine(c)
        .add_application_endpoint(ApplicationEndpointSettings::new("sip:carol@127.0.0.4"))
        .unwrap();
    net.set_app(1, accept_all(CallAcceptOptions::new()));
    (net, alice)
}

fn call(net: &mut Net, alice: EndpointHandle, user: &str) -> CallHandle {
    let now = net.now;
    let engine = net.engine(0);
    let conversation = engine
        .new_conversation(alice, ConversationSettings::default())
        .unwrap();
    let call = engine.new_call(conversation, CallKind::AudioVideo).unwrap();
    engine
        .establish(
            now,
            call,
            &format!("sip:{user}@127.0.0.3"),
            CallEstablishOptions::new(),
        )
        .unwrap();
    net.run_for(Duration::from_secs(3));
    call
}

fn outcome(net: &Net, call: CallHandle) -> Result<(), u16> {
    net.call_events(0, call)
        .into_iter()
        .find_map(|e| match e {
            CallEvent::EstablishCompleted { result } => Some(match result {
                Ok(_) => Ok(()),
                Err(EstablishFailure::Refused { status, .. }) => Err(status),
                Err(EstablishFailure::Redirected { status, .. }) => Err(status),
                Err(other) => panic!("{other:?}"),
            }),
            _ => None,
        })
        .unwrap()
}

#[test]
fn each_rule_action_happens_and_an_unmatched_user_gets_404() {
    let (mut net, alice) = net_with_rules();
    let to_bob = call(&mut net, alice, "bob");
    assert_eq!(outcome(&net, to_bob), Ok(()), "{}", trace(&net));
    let received = net.only_received(1);
    assert!(
        received
            .headers
            .iter()
            .any(|h| h.name == "X-Routed" && h.value == "yes")
    );
    // Caller id shown, address hidden: alice's user at T's host.
    assert!(
        received.from.contains("sip:alice@127.0.0.3"),
        "{}",
        received.from
    );
    assert_eq!(
        net.engine(0).call_state(to_bob),
        Some(CallState::Established)
    );

    let c = call(&mut net, alice, "busy");
    assert_eq!(outcome(&net, c), Err(486));
    let c = call(&mut net, alice, "moved");
    assert_eq!(outcome(&net, c), Err(302));
    let c = call(&mut net, alice, "nobody");
    assert_eq!(outcome(&net, c), Err(404));
    let echo = call(&mut net, alice, "echo");
    assert_eq!(outcome(&net, echo), Ok(()));
    let anchored = call(&mut net, alice, "anchored");
    assert_eq!(outcome(&net, anchored), Ok(()));
    let t_media = net
        .media_log
        .iter()
        .filter(|(n, _, i)| *n == T && matches!(i, calls::MediaInstruction::Join { .. }))
        .count();
    assert_eq!(t_media, 1);
}

#[test]
fn a_parallel_rule_rings_both_and_the_first_answer_wins() {
    let (mut net, alice) = net_with_rules();
    net.set_app(1, |_, _, _| {}); // bob only rings (the engine sends 100)
    net.set_app(C, accept_all(CallAcceptOptions::new()));
    let both = call(&mut net, alice, "both");
    assert_eq!(outcome(&net, both), Ok(()), "{}", trace(&net));
    assert_eq!(net.requests(T, Method::Cancel).len(), 1);
}

/// A rule's `pass_headers` reach the bridge: A's X-Pass and User-to-User (named in
/// another case) are copied into leg B's INVITE and nothing else of A's custom headers
/// is; B's X-Pass on its 200 comes back on A's 200. A rule naming a header the B2BUA
/// writes per leg is refused when it is built.
#[test]
fn a_rule_passes_its_headers_across_the_bridge() {
    let (mut net, alice) = net_with_rules();
    net.set_app(
        1,
        accept_all(CallAcceptOptions::new().header("X-Pass", "from-bob")),
    );
    let now = net.now;
    let engine = net.engine(0);
    let conversation = engine
        .new_conversation(alice, ConversationSettings::default())
        .unwrap();
    let call = engine.new_call(conversation, CallKind::AudioVideo).unwrap();
    let options = CallEstablishOptions::new()
        .header("X-Pass", "x")
        .header("User-to-User", "56a390f3d2b7310023a2;encoding=hex")
        .header("X-Other", "kept-out");
    engine
        .establish(now, call, "sip:pass@127.0.0.3", options)
        .unwrap();
    net.run_for(Duration::from_secs(3));
    assert_eq!(outcome(&net, call), Ok(()), "{}", trace(&net));
    let received = net.only_received(1);
    let value = |name: &str| -> Vec<String> {
        received
            .headers
            .iter()
            .filter(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| h.value.clone())
            .collect()
    };
    assert_eq!(value("X-Pass"), ["x"], "{:?}", received.headers);
    assert_eq!(
        value("User-to-User"),
        ["56a390f3d2b7310023a2;encoding=hex"],
        "{:?}",
        received.headers
    );
    assert!(value("X-Other").is_empty(), "{:?}", received.headers);
    // B's header came back on T's 200 to A.
    let ok = net.responses(T).into_iter().map(|(_, r)| r).find(|r| {
        r.status == 200
            && r.headers.cseq().is_ok_and(|c| c.method == Method::Invite)
            && header_values(&r.headers, "X-Pass")
                .iter()
                .any(|v| v == "from-bob")
    });
    assert!(ok.is_some(), "{}", trace(&net));

    // A header of one leg's own cannot be named.
    let refused = Rule::new(
        "bad",
        Match::default(),
        Action::Bridge {
            targets: vec![Target::new("sip:bob@127.0.0.2")],
            ring: RingStrategy::Sequential,
            mode: BridgeMode::SignalingOnly,
            pass_headers: vec!["X-Pass".into(), "Contact".into()],
        },
    )
    .unwrap_err();
    assert!(
        matches!(&refused, routing::RouteError::PassHeader { name, .. } if name == "Contact"),
        "{refused:?}"
    );
}

#[test]
fn a_trunk_target_goes_through_the_trunk_proxy_with_its_caller_id() {
    let (mut net, alice, _bob) = Net::pair();
    // B plays the carrier: the DID dialled is one of its users.
    net.engine(1)
        .add_application_endpoint(ApplicationEndpointSettings::new(
            "sip:+15551234567@carrier.example",
        ))
        .unwrap();
    let mut config = plain_config(3);
    let mut trunk =
        calls::sip_core::TrunkConfig::new("carrier", "sip:127.0.0.2:5060", "carrier.example");
    trunk.caller_id = Some("sip:+15550000000@carrier.example".into());
    config.endpoint.trunks = vec![trunk];
    let mut target = Target::new("${user}");
    target.trunk = Some("carrier".into());
    config.routes = RouteTable::new(vec![rule(
        "out",
        r"^\+1\d{10}$",
        Action::Bridge {
            targets: vec![target],
            ring: RingStrategy::Sequential,
            mode: BridgeMode::SignalingOnly,
            pass_headers: Vec::new(),
        },
    )]);
    net.add("127.0.0.3:5060", config);
    net.set_app(1, accept_all(CallAcceptOptions::new()));
    let out = call(&mut net, alice, "+15551234567");
    assert_eq!(outcome(&net, out), Ok(()), "{}", trace(&net));
    let invite = net.requests(T, Method::Invite)[0].1.clone();
    assert_eq!(invite.uri.as_ref(), b"sip:+15551234567@carrier.example");
    let from = header_values(&invite.headers, "From")[0].clone();
    assert!(from.contains("sip:+15550000000@carrier.example"), "{from}");
    let route = header_values(&invite.headers, "Route");
    assert_eq!(route.len(), 1, "{route:?}");
    assert!(
        route[0].contains("127.0.0.2") && route[0].contains(";lr"),
        "{route:?}"
    );
}

#[test]
fn a_webhook_rule_hands_the_call_to_the_named_application_or_answers_480() {
    let (mut net, alice, _bob) = Net::pair();
    let mut config = plain_config(3);
    config.routes = RouteTable::new(vec![rule(
        "sales",
        "^sales$",
        Action::Webhook {
            application: "sales-app".into(),
        },
    )]);
    net.add("127.0.0.3:5060", config);
    // No application connected yet: 480 naming it.
    let first = call(&mut net, alice, "sales");
    assert_eq!(outcome(&net, first), Err(480));
    let reason = net
        .responses(T)
        .into_iter()
        .map(|(_, r)| r)
        .find(|r| r.status == 480)
        .map(|r| header_values(&r.headers, "Reason"))
        .unwrap();
    assert!(reason[0].contains("sales-app"), "{reason:?}");
    // The application connects: the call is raised to its endpoint, which answers.
    let endpoint = net
        .engine(T)
        .add_application_endpoint(ApplicationEndpointSettings::new("sip:bot@127.0.0.3"))
        .unwrap();
    net.engine(T).set_application("sales-app", endpoint);
    net.set_app(T, accept_all(CallAcceptOptions::new()));
    let second = call(&mut net, alice, "sales");
    assert_eq!(outcome(&net, second), Ok(()), "{}", trace(&net));
    let received = net.received(T);
    assert_eq!(received.len(), 1);
    assert!(received[0].request_uri.contains("sales@"));
}
