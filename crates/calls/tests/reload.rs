//! Reload and drain on the virtual clock: trunks added, changed and removed while a call
//! is up; demo users and routes replaced; draining refuses new requests with 503 and
//! Retry-After while in-dialog requests of a live call are served; `terminate_all`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod support;

use calls::sip_core::{EndpointConfig, TrunkConfig};
use calls::{DemoBehaviour, EngineConfig};
use sip_message::{HeaderName, Message, Method, Request, Transport};
use std::time::Duration;
use support::*;

fn trunk(name: &str, expires: u64) -> TrunkConfig {
    let mut trunk = TrunkConfig::new(name, &format!("sip:{PEER}"), "carrier.test");
    trunk.username = Some(format!("{name}-user"));
    trunk.password = Some("secret".into());
    trunk.register = true;
    trunk.register_expires = Duration::from_secs(expires);
    trunk
}

fn registers(out: &[calls::sip_core::Transmit]) -> Vec<Request> {
    let mut seen = std::collections::HashSet::new();
    out.iter()
        .filter_map(|t| match Message::parse(t.payload.clone()).unwrap() {
            Message::Request(r) if r.method == Method::Register => Some(r),
            _ => None,
        })
        .filter(|r| seen.insert(r.headers.top_via().unwrap().branch().unwrap().to_vec()))
        .collect()
}

fn expires(r: &Request) -> String {
    String::from_utf8_lossy(r.headers.get(&HeaderName::Expires).unwrap()).into_owned()
}

fn harness(trunks: Vec<TrunkConfig>) -> Harness {
    let config = EngineConfig {
        endpoint: EndpointConfig {
            trunks,
            ..EndpointConfig::default()
        },
        ..EngineConfig::default()
    };
    let mut h = Harness::with_config(config);
    h.endpoint
        .core()
        .set_local_addrs(vec![(Transport::Udp, LOCAL.parse().unwrap())]);
    h.endpoint.core().start(h.now);
    h
}

/// Answers `r` 200 with its expiry granted.
fn ok(h: &mut Harness, r: &Request) {
    let mut response = sip_message::Response::from_request(r, 200, Some("reg1"));
    let contact = String::from_utf8_lossy(r.headers.get(&HeaderName::Contact).unwrap());
    response.headers.push(
        HeaderName::Contact,
        format!("{contact};expires={}", expires(r)),
    );
    h.send_bytes(Transport::Udp, response.to_bytes());
}

/// An echo call up (INVITE, 200, ACK); its Call-ID and our To tag.
fn call_up(h: &mut Harness, id: &str) -> String {
    let out = h.send(&invite("echo", &format!("z9hG4bK-{id}"), id, true));
    let answer = out
        .iter()
        .map(response)
        .find(|r| r.status == 200)
        .expect("200 to the INVITE");
    let tag = to_tag(&answer);
    h.send(&in_dialog(
        "ACK",
        "echo",
        &format!("z9hG4bK-{id}-ack"),
        id,
        &tag,
        1,
    ));
    tag
}

#[test]
fn trunks_added_changed_and_removed_while_a_call_is_up() {
    let mut h = harness(vec![trunk("a", 600), trunk("b", 600)]);
    let out = h.advance(Duration::ZERO);
    let first = registers(&out);
    assert_eq!(first.len(), 2);
    for r in &first {
        ok(&mut h, r);
    }
    let tag = call_up(&mut h, "live-call");
    assert_eq!(h.endpoint.call_count(), 1);

    // a: new expiry; b: gone; c: new.
    let changes = h
        .endpoint
        .core()
        .reconfigure_trunks(h.now, vec![trunk("a", 300), trunk("c", 600)]);
    assert_eq!(changes.changed, vec!["a".to_owned()]);
    assert_eq!(changes.removed, vec!["b".to_owned()]);
    assert_eq!(changes.added, vec!["c".to_owned()]);
    let out = h.drain();
    let mut out = out;
    out.extend(h.advance(Duration::ZERO));
    let sent = registers(&out);
    let from = |r: &Request, user: &str| {
        String::from_utf8_lossy(r.headers.get(&HeaderName::From).unwrap()).contains(user)
    };
    // b: un-REGISTER (Expires: 0).
    let b = sent
        .iter()
        .find(|r| from(r, "b-user"))
        .expect("b un-REGISTERs");
    assert_eq!(expires(b), "0");
    // a: registers again at once with the new expiry, same Call-ID, CSeq rising.
    let a = sent
        .iter()
        .find(|r| from(r, "a-user"))
        .expect("a registers again");
    assert_eq!(expires(a), "300");
    let a_first = first.iter().find(|r| from(r, "a-user")).unwrap();
    assert_eq!(
        a.headers.call_id().unwrap(),
        a_first.headers.call_id().unwrap()
    );
    assert!(a.headers.cseq().unwrap().seq > a_first.headers.cseq().unwrap().seq);
    // c: a new registration.
    let c = sent
        .iter()
        .find(|r| from(r, "c-user"))
        .expect("c registers");
    assert_eq!(expires(c), "600");
    // The same list again changes nothing.
    let again = h
        .endpoint
        .core()
        .reconfigure_trunks(h.now, vec![trunk("a", 300), trunk("c", 600)]);
    assert!(again.is_empty(), "{again:?}");
    let names: Vec<String> = h
        .endpoint
        .core_ref()
        .trunk_states()
        .into_iter()
        .map(|(n, _, _)| n)
        .collect();
    assert_eq!(names, vec!["a", "c"]);
    assert!(h.endpoint.core_ref().trunk_route("b", "bob").is_err());

    // The call was never touched: its BYE is answered 200.
    let out = h.send(&in_dialog(
        "BYE",
        "echo",
        "z9hG4bK-bye",
        "live-call",
        &tag,
        2,
    ));
    assert_eq!(statuses(&out), vec![200]);
    assert_eq!(h.endpoint.call_count(), 0);
}

#[test]
fn draining_refuses_new_requests_with_503_and_serves_live_dialogs() {
    let mut h = Harness::new();
    let tag = call_up(&mut h, "kept");
    h.endpoint.core().set_draining(Some(42));
    assert!(h.endpoint.core_ref().draining());
    // A new INVITE: 503 with Retry-After.
    let out = h.send(&invite("echo", "z9hG4bK-new", "new-call", true));
    let refused: Vec<_> = out
        .iter()
        .map(response)
        .filter(|r| r.status >= 200)
        .collect();
    assert_eq!(refused.len(), 1);
    assert_eq!(refused[0].status, 503);
    assert_eq!(header(&refused[0], HeaderName::RetryAfter), "42");
    // OPTIONS outside a dialog: 503 too (a dispatcher's or gateway's ping marks us down).
    let options = format!(
        "OPTIONS sip:echo@{LOCAL} SIP/2.0\r\nVia: SIP/2.0/UDP {PEER};branch=z9hG4bK-opt\r\n\
         Max-Forwards: 70\r\nFrom: <sip:alice@{PEER}>;tag=o1\r\nTo: <sip:echo@{LOCAL}>\r\n\
         Call-ID: opt-1\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
    );
    let out = h.send(&options);
    assert_eq!(statuses(&out), vec![503]);
    // The live call's in-dialog requests still work.
    assert_eq!(h.endpoint.call_count(), 1);
    let out = h.send(&in_dialog(
        "BYE",
        "echo",
        "z9hG4bK-kept-bye",
        "kept",
        &tag,
        2,
    ));
    assert_eq!(statuses(&out), vec![200]);
    assert_eq!(h.endpoint.call_count(), 0);
    // Draining ends: answered again.
    h.endpoint.core().set_draining(None);
    let out = h.send(
        &options
            .replace("opt-1", "opt-2")
            .replace("bK-opt", "bK-opt2"),
    );
    assert_eq!(statuses(&out), vec![200]);
}

#[test]
fn terminate_all_sends_bye_to_every_call() {
    let mut h = Harness::new();
    call_up(&mut h, "one");
    call_up(&mut h, "two");
    assert_eq!(h.endpoint.terminate_all(h.now), 2);
    let out = h.drain();
    let byes = out
        .iter()
        .filter(|t| {
            matches!(Message::parse(t.payload.clone()).unwrap(),
                Message::Request(r) if r.method == Method::Bye)
        })
        .count();
    assert_eq!(byes, 2);
}

#[test]
fn demo_users_and_routes_replaced() {
    let mut h = Harness::new();
    // `busy` goes, `quiet` comes (ringing), `echo` stays.
    let touched = h.endpoint.set_demo_users(vec![
        ("echo".into(), DemoBehaviour::Echo),
        ("ring".into(), DemoBehaviour::Ring),
        ("quiet".into(), DemoBehaviour::Busy),
    ]);
    assert_eq!(touched, vec!["busy".to_owned(), "quiet".to_owned()]);
    let out = h.send(&invite("busy", "z9hG4bK-busy", "busy-1", true));
    assert!(statuses(&out).contains(&404), "{:?}", statuses(&out));
    let out = h.send(&invite("quiet", "z9hG4bK-quiet", "quiet-1", true));
    assert!(statuses(&out).contains(&486), "{:?}", statuses(&out));
    // A route added at run time declines `closed` with 403.
    use calls::routing::{Action, Match, Regex, RouteTable, Rule};
    let rule = Rule::new(
        "closed",
        Match {
            user: Some(Regex::new("^closed$").unwrap()),
            ..Match::default()
        },
        Action::Decline {
            status: 403,
            reason: None,
        },
    )
    .unwrap();
    h.endpoint.set_routes(RouteTable::new(vec![rule]));
    let out = h.send(&invite("closed", "z9hG4bK-closed", "closed-1", true));
    assert!(statuses(&out).contains(&403), "{:?}", statuses(&out));
}

/// A reload that changes a trunk's password: the re-REGISTER's challenge is answered
/// with the new password (the user agent answers with the first credentials of a
/// realm, so the old ones must go), and reloads do not pile credentials up.
#[test]
fn a_changed_trunk_password_is_the_one_used_after_a_reload() {
    let mut h = harness(vec![trunk("carrier", 3600)]);
    let passwords = |h: &Harness| -> Vec<String> {
        h.endpoint
            .core_ref()
            .user_agent_ref()
            .config()
            .credentials
            .iter()
            .map(|c| c.password.clone())
            .collect()
    };
    assert_eq!(passwords(&h), ["secret"]);
    let mut changed = trunk("carrier", 3600);
    changed.password = Some("changed".into());
    let now = h.now;
    let changes = h
        .endpoint
        .core()
        .reconfigure_trunks(now, vec![changed.clone()]);
    assert_eq!(changes.changed, ["carrier"]);
    assert_eq!(passwords(&h), ["changed"]);
    // Again, and with a second trunk: one entry per trunk, never more.
    let mut other = trunk("other", 3600);
    other.realm = Some("other.test".into());
    let now = h.now;
    h.endpoint
        .core()
        .reconfigure_trunks(now, vec![changed.clone(), other.clone()]);
    let now = h.now;
    h.endpoint
        .core()
        .reconfigure_trunks(now, vec![changed, other]);
    assert_eq!(passwords(&h), ["changed", "secret"]);
}
