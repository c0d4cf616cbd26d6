//! Endpoints: a user endpoint registers its address-of-record; calls made on behalf of
//! another user (impersonation) carry that identity in From and P-Asserted-Identity;
//! conversation settings travel as Subject and Priority.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod support;

use calls::{
    ApplicationEndpointSettings, CallEstablishOptions, CallKind, ConversationSettings,
    EndpointEvent, Engine, EngineConfig, Event, Identity, Priority, UserEndpointSettings,
};
use sip_message::{HeaderName, Message, Method, Request, Response, Transport};
use std::time::Instant;
use support::*;

fn engine() -> (Engine, Instant) {
    let mut engine = Engine::new(EngineConfig {
        demo_users: Vec::new(),
        ..EngineConfig::default()
    });
    engine
        .core()
        .set_local_addrs(vec![(Transport::Udp, LOCAL.parse().unwrap())]);
    (engine, Instant::now())
}

fn sent_requests(engine: &mut Engine) -> Vec<Request> {
    let mut out = Vec::new();
    while let Some(t) = engine.poll_transmit() {
        if let Ok(Message::Request(r)) = Message::parse(t.payload.clone()) {
            out.push(r);
        }
    }
    out
}

fn text(r: &Request, name: &str) -> String {
    r.headers
        .get(&HeaderName::parse(name.as_bytes()))
        .map(|v| String::from_utf8_lossy(v).into_owned())
        .unwrap_or_default()
}

#[test]
fn a_user_endpoint_registers_and_receives_its_calls() {
    let (mut engine, now) = engine();
    let endpoint = engine
        .add_user_endpoint(
            now,
            UserEndpointSettings {
                owner: Identity::new("sip:carol@example.test"),
                registrar: format!("sip:{PEER}"),
                username: None,
                password: Some("secret".into()),
                realm: None,
                register_expires: 600,
            },
        )
        .unwrap();
    engine.handle_timeout(now);
    let register = sent_requests(&mut engine)
        .into_iter()
        .find(|r| r.method == Method::Register)
        .expect("a REGISTER");
    assert!(text(&register, "To").contains("sip:carol@example.test"));
    assert!(text(&register, "Contact").contains("carol@"));
    let mut ok = Response::from_request(&register, 200, Some("reg"));
    let contact = text(&register, "Contact");
    ok.headers
        .push(HeaderName::Contact, format!("{contact};expires=600"));
    engine.handle_message(now, ok.to_bytes(), flow(Transport::Udp));
    let mut registered = false;
    while let Some(event) = engine.poll_event() {
        if let Event::Endpoint {
            endpoint: e,
            event: EndpointEvent::Registration(calls::sip_core::TrunkEvent::Registered { .. }),
        } = event
        {
            assert_eq!(e, endpoint);
            registered = true;
        }
    }
    assert!(registered, "Registration(Registered) on the endpoint");

    // A call to carol comes to the user endpoint.
    engine.handle_message(
        now,
        invite("carol", "z9hG4bKue1", "ue-1", true).into(),
        flow(Transport::Udp),
    );
    let received = std::iter::from_fn(|| engine.poll_event()).find_map(|e| match e {
        Event::Endpoint {
            endpoint: e,
            event: EndpointEvent::CallReceived(r),
        } => Some((e, r)),
        _ => None,
    });
    let (owner, received) = received.expect("CallReceived");
    assert_eq!(owner, endpoint);
    assert_eq!(received.kind, CallKind::AudioVideo);
    assert!(received.offer.is_some());
}

#[test]
fn impersonation_subject_and_priority_are_on_the_invite() {
    let (mut engine, now) = engine();
    let endpoint = engine
        .add_application_endpoint(ApplicationEndpointSettings::new("sip:app@127.0.0.1"))
        .unwrap();
    let conversation = engine
        .new_conversation(
            endpoint,
            ConversationSettings {
                subject: Some("Order 1234".into()),
                priority: Priority::Urgent,
                impersonation: Some(Identity {
                    uri: "sip:+15550100@example.test".into(),
                    display_name: Some("Billing".into()),
                }),
            },
        )
        .unwrap();
    let call = engine.new_call(conversation, CallKind::AudioVideo).unwrap();
    engine
        .establish(
            now,
            call,
            &format!("sip:bob@{PEER}"),
            CallEstablishOptions::new(),
        )
        .unwrap();
    let invite = sent_requests(&mut engine)
        .into_iter()
        .find(|r| r.method == Method::Invite)
        .expect("an INVITE");
    assert!(text(&invite, "From").starts_with("\"Billing\" <sip:+15550100@example.test>;tag="));
    assert_eq!(
        text(&invite, "P-Asserted-Identity"),
        "\"Billing\" <sip:+15550100@example.test>"
    );
    assert_eq!(text(&invite, "Subject"), "Order 1234");
    assert_eq!(text(&invite, "Priority"), "urgent");
    assert!(text(&invite, "Contact").contains("sip:app@"));
    assert_eq!(text(&invite, "Content-Type"), "application/sdp");
}

#[test]
fn a_second_endpoint_for_the_same_user_is_refused() {
    let (mut engine, _) = engine();
    engine
        .add_application_endpoint(ApplicationEndpointSettings::new("sip:app@127.0.0.1"))
        .unwrap();
    let again =
        engine.add_application_endpoint(ApplicationEndpointSettings::new("sip:app@127.0.0.2"));
    assert!(matches!(
        again,
        Err(calls::CallError::EndpointExists { .. })
    ));
    let no_user =
        engine.add_application_endpoint(ApplicationEndpointSettings::new("sip:127.0.0.1"));
    assert!(matches!(
        no_user,
        Err(calls::CallError::InvalidArgument { .. })
    ));
}

#[test]
fn an_im_call_and_an_av_call_live_in_one_conversation() {
    let (mut engine, now) = engine();
    let endpoint = engine
        .add_application_endpoint(ApplicationEndpointSettings::new("sip:app@127.0.0.1"))
        .unwrap();
    let conversation = engine
        .new_conversation(endpoint, ConversationSettings::default())
        .unwrap();
    let im = engine
        .new_call(conversation, CallKind::InstantMessaging)
        .unwrap();
    let av = engine.new_call(conversation, CallKind::AudioVideo).unwrap();
    assert_ne!(im, av);
    assert_eq!(engine.conversation_of(im), Some(conversation));
    assert_eq!(engine.conversation_of(av), Some(conversation));
    for call in [im, av] {
        engine
            .establish(
                now,
                call,
                &format!("sip:bob@{PEER}"),
                CallEstablishOptions::new(),
            )
            .unwrap();
    }
    let invites: Vec<Request> = sent_requests(&mut engine)
        .into_iter()
        .filter(|r| r.method == Method::Invite)
        .collect();
    assert_eq!(invites.len(), 2);
    let bodies: Vec<String> = invites
        .iter()
        .map(|r| String::from_utf8_lossy(&r.body).into_owned())
        .collect();
    assert!(
        bodies
            .iter()
            .any(|b| b.contains("m=message ") && !b.contains("m=audio"))
    );
    assert!(
        bodies
            .iter()
            .any(|b| b.contains("m=audio ") && !b.contains("m=message"))
    );
    // Each is its own dialog.
    assert_ne!(text(&invites[0], "Call-ID"), text(&invites[1], "Call-ID"));
    // Ending one leaves the other and the conversation.
    engine
        .terminate(now, im, calls::CallTerminateOptions::new())
        .unwrap();
    assert_eq!(engine.call_state(av), Some(calls::CallState::Establishing));
    assert_eq!(engine.conversation_of(av), Some(conversation));
}
