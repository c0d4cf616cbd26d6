//! Finding a call by its SIP Call-ID ([`Engine::call_by_sip_call_id`]): both ends of a
//! dialog share the Call-ID (RFC 3261 §8.1.1.4), so T finds its side of A's call by the
//! Call-ID A chose; an unknown Call-ID finds nothing, and neither does one whose call
//! has ended. [`Engine::remote_party`] names each side's peer, before and after the
//! sessions settle.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

#[path = "support/net.rs"]
mod net;

use calls::{
    ApplicationEndpointSettings, CallAcceptOptions, CallEstablishOptions, CallKind, CallState,
    CallTerminateOptions, ConversationSettings,
};
use net::*;
use std::time::Duration;

const A: usize = 0;
const T: usize = 3;
const T_ADDR: &str = "127.0.0.4:5060";
const T_URI: &str = "sip:t@127.0.0.4";

#[test]
fn a_call_is_found_by_its_sip_call_id_until_it_ends() {
    let (mut net, phones) = Net::trio();
    assert_eq!(net.add(T_ADDR, plain_config(4)), T);
    net.engine(T)
        .add_application_endpoint(ApplicationEndpointSettings::new(T_URI))
        .unwrap();
    net.set_app(T, accept_all(CallAcceptOptions::new()));
    let now = net.now;
    let engine = net.engine(A);
    let conversation = engine
        .new_conversation(phones[0], ConversationSettings::default())
        .unwrap();
    let call = engine.new_call(conversation, CallKind::AudioVideo).unwrap();
    engine
        .establish(now, call, T_URI, CallEstablishOptions::new())
        .unwrap();
    net.run_for(Duration::from_secs(2));
    assert_eq!(net.engine(A).call_state(call), Some(CallState::Established));
    let call_id = net.engine(A).sip_call_id(call).unwrap();
    let t_call = net.received(T)[0].call;
    assert_eq!(net.engine(T).call_by_sip_call_id(&call_id), Some(t_call));
    assert_eq!(net.engine(A).call_by_sip_call_id(&call_id), Some(call));
    assert_eq!(net.engine(T).call_by_sip_call_id("no-such-call-id"), None);
    // Each side names its peer as the INVITE did: T's From, A's To.
    let from = net.engine(T).remote_party(t_call).unwrap();
    assert!(from.contains("alice"), "{from}");
    let to = net.engine(A).remote_party(call).unwrap();
    assert!(to.contains("sip:t@127.0.0.4"), "{to}");
    // And still after 64·T1, when each session has cut its INVITE down to what it reads.
    net.run_for(Duration::from_secs(40));
    assert_eq!(net.engine(T).remote_party(t_call), Some(from));
    assert_eq!(net.engine(A).remote_party(call), Some(to));

    let now = net.now;
    net.engine(A)
        .terminate(now, call, CallTerminateOptions::new())
        .unwrap();
    net.run_for(Duration::from_secs(2));
    assert_eq!(net.engine(T).call_by_sip_call_id(&call_id), None);
    assert_eq!(net.engine(A).call_by_sip_call_id(&call_id), None);
}
