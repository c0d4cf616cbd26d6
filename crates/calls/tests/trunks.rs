//! Trunks on the virtual clock: registration with digest auth, refresh, back-off,
//! un-REGISTER; OPTIONS keepalive up/down; inbound admission by network or digest.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod support;

use calls::EngineConfig;
use calls::sip_core::{
    Cidr, EndpointConfig, EndpointEvent, InboundConfig, RegistrationState, TrunkConfig, TrunkEvent,
};
use sip_auth::{
    Algorithm, Challenge, ChallengeKind, Credentials, DigestClient, DigestServer, ServerConfig,
    Verdict,
};
use sip_message::{HeaderName, Message, Method, Request, Response, Transport};
use std::time::Duration;
use support::*;

fn trunk_config() -> TrunkConfig {
    let mut trunk = TrunkConfig::new("carrier", &format!("sip:{PEER}"), "carrier.test");
    trunk.username = Some("alice".into());
    trunk.password = Some("secret".into());
    trunk.register = true;
    trunk.register_expires = Duration::from_secs(120);
    trunk
}

fn harness(trunk: TrunkConfig) -> Harness {
    let config = EngineConfig {
        endpoint: EndpointConfig {
            trunks: vec![trunk],
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

/// The requests of `method` in `out`, retransmissions left out (one per branch).
fn requests(out: &[calls::sip_core::Transmit], method: Method) -> Vec<Request> {
    let mut seen = std::collections::HashSet::new();
    out.iter()
        .filter_map(|t| match Message::parse(t.payload.clone()).unwrap() {
            Message::Request(r) if r.method == method => Some(r),
            _ => None,
        })
        .filter(|r| seen.insert(r.headers.top_via().unwrap().branch().unwrap().to_vec()))
        .collect()
}

fn reply(
    h: &mut Harness,
    request: &Request,
    status: u16,
    extra: &[(HeaderName, String)],
) -> Vec<calls::sip_core::Transmit> {
    let mut response = Response::from_request(request, status, Some("reg1"));
    for (name, value) in extra {
        response.headers.push(name.clone(), value.clone());
    }
    h.send_bytes(Transport::Udp, response.to_bytes())
}

fn trunk_events(h: &Harness) -> Vec<TrunkEvent> {
    h.core_events()
        .into_iter()
        .filter_map(|e| match e {
            EndpointEvent::Trunk(t) => Some(t),
            _ => None,
        })
        .collect()
}

/// REGISTER → 401 (SHA-256 and MD5 offered) → REGISTER with SHA-256 credentials →
/// 200 (expires 120) → refresh before expiry → un-REGISTER at shutdown.
#[test]
fn registers_with_digest_refreshes_and_unregisters() {
    let mut h = harness(trunk_config());
    let mut registrar = DigestServer::new(ServerConfig::new("carrier.test", [3; 32]), h.now);
    let out = h.advance(Duration::ZERO);
    let first = requests(&out, Method::Register);
    assert_eq!(first.len(), 1);
    let register = &first[0];
    assert_eq!(&register.uri[..], b"sip:carrier.test");
    assert!(
        String::from_utf8_lossy(register.headers.get(&HeaderName::Contact).unwrap())
            .contains("alice@127.0.0.1:5060")
    );
    assert_eq!(
        &register.headers.get(&HeaderName::Expires).unwrap()[..],
        b"120"
    );
    let challenge: Vec<_> = registrar
        .challenge(h.now, false)
        .into_iter()
        .map(|v| (HeaderName::WwwAuthenticate, v))
        .collect();
    let out = reply(&mut h, register, 401, &challenge);
    let second = requests(&out, Method::Register);
    assert_eq!(second.len(), 1, "re-sent with credentials");
    let authorization = second[0]
        .headers
        .get(&HeaderName::Authorization)
        .unwrap()
        .clone();
    assert!(String::from_utf8_lossy(&authorization).contains("algorithm=SHA-256"));
    let verdict = registrar.verify(h.now, "REGISTER", &authorization, b"", &|u: &str| {
        (u == "alice").then(|| "secret".into())
    });
    assert_eq!(
        verdict,
        Verdict::Authorized {
            username: "alice".into()
        }
    );
    assert_eq!(
        second[0].headers.cseq().unwrap().seq,
        register.headers.cseq().unwrap().seq + 1
    );
    assert_eq!(
        second[0].headers.call_id().unwrap(),
        register.headers.call_id().unwrap()
    );
    reply(
        &mut h,
        &second[0],
        200,
        &[(
            HeaderName::Contact,
            "<sip:alice@127.0.0.1:5060>;expires=120".into(),
        )],
    );
    assert!(matches!(
        h.endpoint.core().trunk_state("carrier"),
        Some((RegistrationState::Registered { .. }, _))
    ));
    assert_eq!(
        trunk_events(&h),
        [TrunkEvent::Registered {
            trunk: "carrier".into(),
            expires: Duration::from_secs(120)
        }]
    );

    // Refreshed at 85% of 120 s = 102 s, same Call-ID, higher CSeq.
    assert!(requests(&h.advance(Duration::from_secs(101)), Method::Register).is_empty());
    let out = h.advance(Duration::from_secs(2));
    let refresh = requests(&out, Method::Register);
    assert_eq!(refresh.len(), 1, "refresh before expiry");
    assert_eq!(
        refresh[0].headers.call_id().unwrap(),
        register.headers.call_id().unwrap()
    );
    assert!(refresh[0].headers.cseq().unwrap().seq > second[0].headers.cseq().unwrap().seq);
    // RFC 3261 §22.3: credentials at once, with the cached nonce and the next count.
    let preemptive = refresh[0]
        .headers
        .get(&HeaderName::Authorization)
        .expect("pre-emptive credentials");
    assert!(String::from_utf8_lossy(preemptive).contains("nc=00000002"));
    let verdict = registrar.verify(h.now, "REGISTER", preemptive, b"", &|u: &str| {
        (u == "alice").then(|| "secret".into())
    });
    assert_eq!(
        verdict,
        Verdict::Authorized {
            username: "alice".into()
        }
    );
    // Via stays the first header of the re-sent request.
    assert_eq!(
        second[0].headers.get_index(0).unwrap().name,
        HeaderName::Via
    );
    reply(
        &mut h,
        &refresh[0],
        200,
        &[(HeaderName::Expires, "120".into())],
    );

    // Shutdown: Expires: 0.
    let now = h.now;
    h.endpoint.core().shutdown(now);
    let out = h.advance(Duration::ZERO);
    let mut sent: Vec<_> = out;
    while let Some(t) = h.endpoint.poll_transmit() {
        sent.push(t);
    }
    let unregister = requests(&sent, Method::Register);
    assert_eq!(unregister.len(), 1);
    assert_eq!(
        &unregister[0].headers.get(&HeaderName::Expires).unwrap()[..],
        b"0"
    );
    reply(&mut h, &unregister[0], 200, &[]);
    assert!(trunk_events(&h).contains(&TrunkEvent::Unregistered {
        trunk: "carrier".into()
    }));
}

/// A wrong password is not retried in a loop: one challenge answered, the second is a
/// failure, and the next attempt waits out the back-off (30 s, then 60 s).
#[test]
fn failed_registration_backs_off() {
    let mut h = harness(trunk_config());
    let out = h.advance(Duration::ZERO);
    let register = requests(&out, Method::Register).remove(0);
    reply(&mut h, &register, 503, &[]);
    assert_eq!(
        trunk_events(&h),
        [TrunkEvent::RegistrationFailed {
            trunk: "carrier".into(),
            status: 503,
            retry_in: Duration::from_secs(30)
        }]
    );
    assert!(requests(&h.advance(Duration::from_secs(29)), Method::Register).is_empty());
    let again = requests(&h.advance(Duration::from_secs(2)), Method::Register);
    assert_eq!(again.len(), 1, "retried after 30 s");
    reply(&mut h, &again[0], 500, &[]);
    assert!(
        matches!(trunk_events(&h).last(), Some(TrunkEvent::RegistrationFailed { retry_in, .. }) if *retry_in == Duration::from_secs(60))
    );
    // No answer at all: Timer F (32 s) is a failure too.
    let third = requests(&h.advance(Duration::from_secs(61)), Method::Register);
    assert_eq!(third.len(), 1);
    h.advance(Duration::from_secs(40));
    assert!(matches!(
        trunk_events(&h).last(),
        Some(TrunkEvent::RegistrationFailed { status: 408, .. })
    ));
}

/// 423 Interval Too Brief: retry at once with Min-Expires (RFC 3261 §10.2.8).
#[test]
fn interval_too_brief_is_retried_with_min_expires() {
    let mut h = harness(trunk_config());
    let register = requests(&h.advance(Duration::ZERO), Method::Register).remove(0);
    reply(
        &mut h,
        &register,
        423,
        &[(HeaderName::MinExpires, "600".into())],
    );
    let retry = requests(&h.advance(Duration::ZERO), Method::Register);
    assert_eq!(retry.len(), 1);
    assert_eq!(
        &retry[0].headers.get(&HeaderName::Expires).unwrap()[..],
        b"600"
    );
}

/// OPTIONS keepalive: an answer (any, even 404) is up; a timeout is down.
#[test]
fn options_keepalive_tracks_up_and_down() {
    let mut trunk = trunk_config();
    trunk.register = false;
    trunk.options_interval = Some(Duration::from_secs(30));
    let mut h = harness(trunk);
    let options = requests(&h.advance(Duration::ZERO), Method::Options);
    assert_eq!(options.len(), 1);
    reply(&mut h, &options[0], 404, &[]);
    assert_eq!(
        trunk_events(&h),
        [TrunkEvent::Up {
            trunk: "carrier".into()
        }]
    );
    assert_eq!(
        h.endpoint.core().trunk_state("carrier").unwrap().1,
        Some(true)
    );
    // The next one goes unanswered: Timer F, then down.
    let next = requests(&h.advance(Duration::from_secs(31)), Method::Options);
    assert!(!next.is_empty());
    h.advance(Duration::from_secs(33));
    assert!(trunk_events(&h).contains(&TrunkEvent::Down {
        trunk: "carrier".into(),
        status: 408
    }));
    assert_eq!(
        h.endpoint.core().trunk_state("carrier").unwrap().1,
        Some(false)
    );
}

fn closed(trunk_networks: &[&str], users: &[(&str, &str)]) -> Harness {
    let mut trunk = TrunkConfig::new("carrier", "sip:192.0.2.50", "carrier.test");
    trunk.inbound = trunk_networks
        .iter()
        .map(|n| Cidr::parse(n).unwrap())
        .collect();
    let config = EngineConfig {
        endpoint: EndpointConfig {
            trunks: vec![trunk],
            inbound: InboundConfig {
                accept_any: false,
                users: users
                    .iter()
                    .map(|(u, p)| ((*u).into(), (*p).into()))
                    .collect(),
                ..InboundConfig::default()
            },
            ..EndpointConfig::default()
        },
        ..EngineConfig::default()
    };
    Harness::with_config(config)
}

#[test]
fn inbound_from_a_trunk_network_is_accepted() {
    let mut h = closed(&["127.0.0.0/8"], &[]);
    let out = h.send(&invite("echo", "z9hG4bKi1", "in-1", true));
    assert_eq!(statuses(&out), [100, 180, 200]);
}

#[test]
fn inbound_from_elsewhere_gets_403_without_accounts() {
    let mut h = closed(&["10.0.0.0/8"], &[]);
    let out = h.send(&invite("echo", "z9hG4bKi2", "in-2", true));
    assert_eq!(statuses(&out), [100, 403]);
    let out = h.send(&options_request("z9hG4bKi3"));
    assert_eq!(statuses(&out), [403]);
}

/// With accounts, an unknown peer is challenged (RFC 3261 §22.4) and let in with the
/// right credentials; a wrong password is refused (403).
#[test]
fn inbound_peer_is_challenged_then_admitted() {
    for algorithm in [Algorithm::Md5, Algorithm::Sha256] {
        let mut h = closed(&["10.0.0.0/8"], &[("bob", "hunter2")]);
        let out = h.send(&invite("echo", "z9hG4bKi4", "in-3", true));
        assert_eq!(statuses(&out), [100, 401]);
        let challenge = response(&out[1]);
        let challenges = Challenge::parse_supported(
            challenge
                .headers
                .get_all(&HeaderName::WwwAuthenticate)
                .map(|v| &v[..]),
        );
        let offered: Vec<_> = challenges.iter().map(|c| c.algorithm).collect();
        assert_eq!(
            offered,
            [Algorithm::Sha256, Algorithm::Md5],
            "RFC 8760 §2.4 order"
        );
        let chosen: Vec<_> = challenges
            .into_iter()
            .filter(|c| c.algorithm == algorithm)
            .collect();
        let mut client = DigestClient::new();
        let lookup = |_: &str| Some(Credentials::new("bob", "hunter2"));
        let uri = format!("sip:echo@{LOCAL}");
        let value = client
            .respond(
                ChallengeKind::Www,
                &chosen,
                &lookup,
                "INVITE",
                &uri,
                SDP.as_bytes(),
                "abc123",
            )
            .unwrap()
            .remove(0);
        let retry = invite("echo", "z9hG4bKi5", "in-3", true)
            .replace("CSeq: 1 INVITE", "CSeq: 2 INVITE")
            .replace(
                "Max-Forwards: 70\r\n",
                &format!("Max-Forwards: 70\r\nAuthorization: {value}\r\n"),
            );
        let out = h.send(&retry);
        assert_eq!(statuses(&out), [100, 180, 200], "{algorithm:?}");

        let mut wrong = DigestClient::new();
        let lookup = |_: &str| Some(Credentials::new("bob", "wrong"));
        let value = wrong
            .respond(
                ChallengeKind::Www,
                &chosen,
                &lookup,
                "INVITE",
                &uri,
                SDP.as_bytes(),
                "abc124",
            )
            .unwrap()
            .remove(0);
        let bad = invite("echo", "z9hG4bKi6", "in-4", true).replace(
            "Max-Forwards: 70\r\n",
            &format!("Max-Forwards: 70\r\nAuthorization: {value}\r\n"),
        );
        // Wrong credentials: 403, as for a user that does not exist (uniform answers).
        assert_eq!(statuses(&h.send(&bad)), [100, 403]);
    }
}

fn options_request(branch: &str) -> String {
    format!(
        "OPTIONS sip:{LOCAL} SIP/2.0\r\nVia: SIP/2.0/UDP {PEER};branch={branch}\r\nMax-Forwards: 70\r\n\
         From: <sip:alice@{PEER}>;tag=o1\r\nTo: <sip:{LOCAL}>\r\nCall-ID: {branch}\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
    )
}

fn outbound_harness() -> Harness {
    let mut trunk = TrunkConfig::new("carrier", "sip:sbc.carrier.test", "carrier.test");
    trunk.caller_id = Some("sip:+15550100@carrier.test".into());
    trunk.asserted_identity = Some("sip:+15550100@carrier.test".into());
    let config = EngineConfig {
        endpoint: EndpointConfig {
            trunks: vec![trunk],
            ..EndpointConfig::default()
        },
        ..EngineConfig::default()
    };
    let mut h = Harness::with_config(config);
    h.endpoint
        .core()
        .set_local_addrs(vec![(Transport::Udp, LOCAL.parse().unwrap())]);
    let now = h.now;
    h.endpoint.core().set_trunk_targets(
        now,
        "carrier",
        vec![
            calls::sip_core::TrunkTarget {
                transport: Transport::Udp,
                addr: "127.0.0.1:5098".parse().unwrap(),
            },
            calls::sip_core::TrunkTarget {
                transport: Transport::Udp,
                addr: PEER.parse().unwrap(),
            },
        ],
    );
    h
}

/// A call out through a trunk: pre-loaded Route to the proxy, caller ID in From and
/// P-Asserted-Identity; the first target answers 503, so it fails over to the second
/// (RFC 3263 §4.3), which answers.
#[test]
fn outbound_call_uses_caller_id_route_and_fails_over_on_503() {
    let mut h = outbound_harness();
    let now = h.now;
    let first = h
        .endpoint
        .core()
        .call(
            now,
            "carrier",
            "+15550199",
            Some(sip_dialog::Body::sdp(SDP)),
        )
        .unwrap();
    let out = h.drain();
    let invites: Vec<_> = out
        .iter()
        .filter(|t| t.flow.remote.port() == 5098)
        .collect();
    assert!(!invites.is_empty(), "the first target gets the INVITE");
    let invite = match Message::parse(invites[0].payload.clone()).unwrap() {
        Message::Request(r) => r,
        _ => panic!(),
    };
    assert_eq!(&invite.uri[..], b"sip:+15550199@carrier.test");
    assert_eq!(
        &invite.headers.get(&HeaderName::Route).unwrap()[..],
        b"<sip:sbc.carrier.test;lr>"
    );
    assert!(
        String::from_utf8_lossy(invite.headers.get(&HeaderName::From).unwrap())
            .starts_with("<sip:+15550100@carrier.test>;tag=")
    );
    let pai = HeaderName::Other(sip_message::Bytes::from_static(b"P-Asserted-Identity"));
    assert_eq!(
        &invite.headers.get(&pai).unwrap()[..],
        b"<sip:+15550100@carrier.test>"
    );
    let out = reply(&mut h, &invite, 503, &[]);
    let second: Vec<_> = requests(&out, Method::Invite);
    assert_eq!(second.len(), 1, "placed again");
    assert!(out.iter().any(|t| t.flow.remote == PEER.parse().unwrap()));
    let redirected = h.core_events().into_iter().find_map(|e| match e {
        EndpointEvent::CallRedirected { from, to } => Some((from, to)),
        _ => None,
    });
    let (from, to) = redirected.expect("CallRedirected");
    assert_eq!(from, first);
    let mut ok = Response::from_request(&second[0], 200, Some("far"));
    ok.headers
        .push(HeaderName::Contact, format!("<sip:far@{PEER}>"));
    ok.headers.set(HeaderName::ContentType, "application/sdp");
    ok.body = sip_message::Bytes::from_static(SDP.as_bytes());
    let out = h.send_bytes(Transport::Udp, ok.to_bytes());
    assert_eq!(requests(&out, Method::Ack).len(), 1);
    assert_eq!(h.stats().dialogs, 1, "the call is up");
    let _ = to;
}

/// The first target never answers: after Timer B (64·T1) the call goes to the next.
#[test]
fn outbound_call_fails_over_on_timeout() {
    let mut h = outbound_harness();
    let now = h.now;
    h.endpoint.core().call(now, "carrier", "bob", None).unwrap();
    let out = h.advance(Duration::from_secs(31));
    assert!(out.iter().all(|t| t.flow.remote.port() == 5098));
    let out = h.advance(Duration::from_secs(2));
    assert!(
        out.iter().any(|t| t.flow.remote == PEER.parse().unwrap()),
        "failed over after 32 s"
    );
    // Both targets fail: the call ends with 408.
    h.advance(Duration::from_secs(40));
    assert!(
        h.core_events()
            .iter()
            .any(|e| matches!(e, EndpointEvent::OutboundEnded { status: 408, .. }))
    );
}
