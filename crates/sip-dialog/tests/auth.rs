//! Digest authentication as UAC (RFC 3261 §22.2): a 401 or 407 to an INVITE, a BYE or
//! an out-of-dialog request is answered with our credentials, MD5 or SHA-256 (RFC 8760),
//! and wrong credentials end in failure instead of a loop.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod support;

use sip_auth::{Algorithm, ChallengeKind, Credentials, DigestServer, ServerConfig, Verdict};
use sip_dialog::{Body, EndCause, Event, Reply, UserAgentConfig};
use sip_message::{HeaderName, Message, Method, Request};
use std::time::Duration;
use support::*;

fn with_password(password: &'static str) -> impl Fn(usize) -> UserAgentConfig {
    move |i| UserAgentConfig {
        credentials: if i == 0 {
            vec![Credentials::new("alice", password)]
        } else {
            Vec::new()
        },
        ..UserAgentConfig::default()
    }
}

/// B's application: challenge any INVITE without valid credentials, answer one with.
fn serve_invites(sim: &mut Sim, server: &mut DigestServer, kind: ChallengeKind) -> Vec<Verdict> {
    let mut verdicts = Vec::new();
    let events = sim.events(1);
    for event in events {
        let Event::IncomingCall { tx, request, .. } = event else {
            continue;
        };
        let now = sim.now;
        let verdict = request.headers.get(&kind.authorization_header()).map(|v| {
            server.verify(now, "INVITE", v, &request.body, &|user: &str| {
                (user == "alice").then(|| "secret".into())
            })
        });
        let reply = match &verdict {
            Some(Verdict::Authorized { .. }) => Reply::new(200).with_body(Body::sdp(SDP_B)),
            _ => {
                let mut reply = Reply::new(kind.status());
                for value in server.challenge(now, verdict == Some(Verdict::Stale)) {
                    reply = reply.with_header(kind.challenge_header(), value);
                }
                reply
            }
        };
        if let Some(v) = verdict {
            verdicts.push(v);
        }
        sim.ua(1).respond(now, &tx, reply).unwrap();
    }
    verdicts
}

fn invites_sent(sim: &Sim) -> Vec<Request> {
    sim.peers[0]
        .sent
        .iter()
        .filter_map(|m| match m {
            Message::Request(r) if r.method == Method::Invite => Some(r.clone()),
            _ => None,
        })
        .collect()
}

fn challenged_call(algorithm: Algorithm, kind: ChallengeKind) {
    let mut sim = Sim::with_config(2, with_password("secret"));
    let mut config = ServerConfig::new("tandem.test", [7; 32]);
    config.algorithms = vec![algorithm];
    let mut server = DigestServer::new(config, sim.now);
    sim.call(0, 1);
    for _ in 0..10 {
        sim.run_for(Duration::from_millis(50));
        serve_invites(&mut sim, &mut server, kind);
    }
    sim.run_for(Duration::from_millis(200));
    assert_eq!(established(&sim.events(0)), 1, "{algorithm:?}");
    let invites = invites_sent(&sim);
    assert_eq!(invites.len(), 2, "one challenge, one answer");
    let cseqs: Vec<u32> = invites
        .iter()
        .map(|r| r.headers.cseq().unwrap().seq)
        .collect();
    assert_eq!(cseqs, [1, 2], "§22.2: the retry takes CSeq + 1");
    let authorization = String::from_utf8_lossy(
        invites[1]
            .headers
            .get(&kind.authorization_header())
            .unwrap(),
    )
    .into_owned();
    assert!(
        authorization.contains(&format!("algorithm={}", algorithm.as_str())),
        "{authorization}"
    );
    assert!(
        authorization.contains("qop=auth") && authorization.contains("nc=00000001"),
        "{authorization}"
    );
    // Same Call-ID and From tag: one call.
    assert_eq!(
        invites[0].headers.call_id().unwrap(),
        invites[1].headers.call_id().unwrap()
    );
}

/// Over TCP the transaction is gone when the 401 reaches the user agent (Timer D/K
/// are zero): the retry must still go out.
#[test]
fn answers_a_401_over_tcp() {
    let mut sim = Sim::with_config(2, with_password("secret"));
    sim.transport = sip_message::Transport::Tcp;
    let mut server = DigestServer::new(ServerConfig::new("tandem.test", [7; 32]), sim.now);
    sim.call(0, 1);
    for _ in 0..10 {
        sim.run_for(Duration::from_millis(50));
        serve_invites(&mut sim, &mut server, ChallengeKind::Www);
    }
    assert_eq!(invites_sent(&sim).len(), 2);
    assert_eq!(established(&sim.events(0)), 1);
}

/// A server that challenges every answer with a fresh stale nonce is given up on
/// after a few retries, not looped with forever.
#[test]
fn endless_stale_challenges_are_given_up() {
    let mut sim = Sim::with_config(2, with_password("secret"));
    let mut short = ServerConfig::new("tandem.test", [7; 32]);
    short.nonce_ttl = Duration::from_millis(1);
    let mut server = DigestServer::new(short, sim.now);
    sim.call(0, 1);
    for _ in 0..40 {
        sim.run_for(Duration::from_millis(50));
        serve_invites(&mut sim, &mut server, ChallengeKind::Www);
    }
    let sent = invites_sent(&sim).len();
    assert!((2..=5).contains(&sent), "{sent} INVITEs");
    let ta = terminated(&sim.events(0));
    assert_eq!(ta[0].cause, EndCause::Rejected { status: 401 });
}

#[test]
fn answers_a_401_with_md5() {
    challenged_call(Algorithm::Md5, ChallengeKind::Www);
}

#[test]
fn answers_a_401_with_sha_256() {
    challenged_call(Algorithm::Sha256, ChallengeKind::Www);
}

#[test]
fn answers_a_407_with_sha_256_sess() {
    challenged_call(Algorithm::Sha256Sess, ChallengeKind::Proxy);
}

/// Wrong password: the second challenge is not answered again; the call fails with 401.
#[test]
fn wrong_password_fails_without_a_loop() {
    let mut sim = Sim::with_config(2, with_password("wrong"));
    let mut server = DigestServer::new(ServerConfig::new("tandem.test", [7; 32]), sim.now);
    sim.call(0, 1);
    let mut verdicts = Vec::new();
    for _ in 0..20 {
        sim.run_for(Duration::from_millis(50));
        verdicts.extend(serve_invites(&mut sim, &mut server, ChallengeKind::Www));
    }
    assert_eq!(verdicts, [Verdict::BadResponse]);
    assert_eq!(invites_sent(&sim).len(), 2);
    let ta = terminated(&sim.events(0));
    assert_eq!(ta[0].cause, EndCause::Rejected { status: 401 });
}

/// A stale nonce (RFC 7616 §3.3) is retried with the new nonce and is no failure.
#[test]
fn stale_nonce_is_retried() {
    let mut sim = Sim::with_config(2, with_password("secret"));
    // Two views of one server (same realm, secret and epoch): the first issues nonces
    // that live 30 ms, so the first answer meets a stale nonce; the second issues
    // nonces that live a minute.
    let mut short = ServerConfig::new("tandem.test", [7; 32]);
    short.nonce_ttl = Duration::from_millis(30);
    let mut short = DigestServer::new(short, sim.now);
    let mut long = DigestServer::new(ServerConfig::new("tandem.test", [7; 32]), sim.now);
    sim.call(0, 1);
    let mut verdicts = Vec::new();
    for round in 0..20 {
        sim.run_for(Duration::from_millis(50));
        let server = if verdicts.is_empty() {
            &mut short
        } else {
            &mut long
        };
        verdicts.extend(serve_invites(&mut sim, server, ChallengeKind::Www));
        if round > 10 {
            break;
        }
    }
    assert_eq!(
        verdicts,
        [
            Verdict::Stale,
            Verdict::Authorized {
                username: "alice".into()
            }
        ]
    );
    assert_eq!(
        invites_sent(&sim).len(),
        3,
        "stale was retried, not given up"
    );
    assert_eq!(established(&sim.events(0)), 1);
}

/// A proxy challenges the BYE with 407: the BYE is re-sent with credentials.
#[test]
fn bye_challenged_by_407_is_resent() {
    let mut sim = Sim::with_config(2, with_password("secret"));
    let mut server = DigestServer::new(ServerConfig::new("proxy.test", [9; 32]), sim.now);
    let a = sim.call(0, 1);
    sim.run_for(Duration::from_millis(50));
    let (_, tx) = sim.incoming(1);
    let now = sim.now;
    sim.ua(1)
        .respond(now, &tx, Reply::new(200).with_body(Body::sdp(SDP_B)))
        .unwrap();
    sim.run_for(Duration::from_millis(100));
    // The first BYE is caught before B; a proxy in front of B answers it with 407.
    sim.filter = Some(Box::new(
        |m, _, _| !matches!(m, Message::Request(r) if r.method == Method::Bye),
    ));
    let now = sim.now;
    sim.ua(0).hangup(now, a, None).unwrap();
    sim.collect();
    sim.filter = None;
    let bye = match sim.peers[0].sent.last().unwrap() {
        Message::Request(r) if r.method == Method::Bye => r.clone(),
        other => panic!("{other:?}"),
    };
    let mut challenge = sip_message::Response::from_request(&bye, 407, None);
    for value in server.challenge(sim.now, false) {
        challenge.headers.push(HeaderName::ProxyAuthenticate, value);
    }
    let flow = sim.flow(1, 0);
    let now = sim.now;
    sim.ua(0).handle_message(
        now,
        challenge.to_bytes(),
        sip_transaction::Flow {
            local: flow.remote,
            remote: flow.local,
            ..flow
        },
    );
    sim.run_for(Duration::from_millis(100));
    let byes: Vec<_> = sim.peers[0]
        .sent
        .iter()
        .filter_map(|m| match m {
            Message::Request(r) if r.method == Method::Bye => Some(r.clone()),
            _ => None,
        })
        .collect();
    let last = byes.last().unwrap();
    assert!(last.headers.get(&HeaderName::ProxyAuthorization).is_some());
    assert_eq!(
        last.headers.cseq().unwrap().seq,
        bye.headers.cseq().unwrap().seq + 1
    );
    let tb = terminated(&sim.events(1));
    assert_eq!(
        tb[0].cause,
        EndCause::Bye,
        "the authenticated BYE reached B"
    );
}
