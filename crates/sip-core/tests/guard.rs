//! The guard (overload and abuse protection) on a virtual clock: exact call limits,
//! the per-source ban and its expiry, the allow-list, scanner drops, the memory cap, and
//! answers that do not tell which users exist.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use bytes::Bytes;
use sip_auth::{Challenge, ChallengeKind, Credentials, DigestClient};
use sip_core::sip_dialog::{Event, Reply, SessionId};
use sip_core::{
    Cidr, Endpoint, EndpointConfig, EndpointEvent, Flow, GuardConfig, InboundConfig, RateLimit,
    TrunkConfig,
};
use sip_message::{HeaderName, Message, Response, Transport};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

const LOCAL: &str = "192.0.2.1:5060";

struct Rig {
    ep: Endpoint,
    now: Instant,
    seq: u64,
    /// Incoming calls seen, in order.
    calls: Vec<SessionId>,
}

impl Rig {
    fn new(guard: GuardConfig) -> Rig {
        Rig::with(guard, InboundConfig::default(), Vec::new())
    }

    fn with(guard: GuardConfig, inbound: InboundConfig, trunks: Vec<TrunkConfig>) -> Rig {
        let mut ep = Endpoint::new(EndpointConfig {
            guard,
            inbound,
            trunks,
            seed: 7,
            ..EndpointConfig::default()
        });
        ep.set_local_addrs(vec![(Transport::Udp, LOCAL.parse().unwrap())]);
        for user in ["alice", "100", "echo"] {
            ep.add_user(user);
        }
        Rig {
            ep,
            now: Instant::now(),
            seq: 0,
            calls: Vec::new(),
        }
    }

    fn advance(&mut self, by: Duration) {
        self.now += by;
        self.ep.handle_timeout(self.now);
    }

    /// Sends `text` from `src`; returns the responses. Incoming calls are rung (180)
    /// and kept; other requests handed up get 200.
    fn send(&mut self, src: &str, text: &str) -> Vec<Response> {
        let flow = Flow {
            transport: Transport::Udp,
            local: LOCAL.parse().unwrap(),
            remote: src.parse::<SocketAddr>().unwrap(),
            connection: None,
        };
        self.ep
            .handle_message(self.now, Bytes::from(text.to_owned()), flow);
        while let Some(event) = self.ep.poll_event() {
            if let EndpointEvent::Session(event) = event {
                match *event {
                    Event::IncomingCall { session, tx, .. } => {
                        self.calls.push(session);
                        self.ep
                            .user_agent()
                            .respond(self.now, &tx, Reply::new(180))
                            .unwrap();
                    }
                    Event::Request { tx, .. } => {
                        let _ = self.ep.user_agent().respond(self.now, &tx, Reply::new(200));
                    }
                    _ => {}
                }
            }
        }
        self.ep.pump(self.now);
        let mut out = Vec::new();
        while let Some(t) = self.ep.poll_transmit() {
            if let Ok(Message::Response(r)) = Message::parse(t.payload) {
                out.push(r);
            }
        }
        out
    }

    /// Ends an incoming call with 486.
    fn decline(&mut self, session: SessionId) {
        let tx = self
            .ep
            .user_agent_ref()
            .invite_request(session)
            .map(|r| sip_transaction::TransactionKey::server_for_request(r).unwrap())
            .unwrap();
        self.ep
            .user_agent()
            .respond(self.now, &tx, Reply::new(486))
            .unwrap();
        self.ep.pump(self.now);
        while self.ep.poll_event().is_some() {}
        while self.ep.poll_transmit().is_some() {}
    }

    fn next(&mut self) -> u64 {
        self.seq += 1;
        self.seq
    }

    fn invite(&mut self, user: &str, extra: &str) -> String {
        let n = self.next();
        request("INVITE", user, n, extra)
    }

    fn options(&mut self, user: &str, extra: &str) -> String {
        let n = self.next();
        request("OPTIONS", user, n, extra)
    }
}

fn request(method: &str, user: &str, n: u64, extra: &str) -> String {
    let uri = if user.is_empty() {
        format!("sip:{LOCAL}")
    } else {
        format!("sip:{user}@{LOCAL}")
    };
    format!(
        "{method} {uri} SIP/2.0\r\nVia: SIP/2.0/UDP 198.51.100.9:5060;branch=z9hG4bKg{n}\r\n\
         Max-Forwards: 70\r\nFrom: <sip:caller@198.51.100.9>;tag=f{n}\r\nTo: <{uri}>\r\n\
         Call-ID: guard-{n}\r\nCSeq: 1 {method}\r\nContact: <sip:caller@198.51.100.9:5060>\r\n\
         {extra}Content-Length: 0\r\n\r\n"
    )
}

fn statuses(responses: &[Response]) -> Vec<u16> {
    responses.iter().map(|r| r.status).collect()
}

fn finals(responses: &[Response]) -> Vec<u16> {
    responses
        .iter()
        .map(|r| r.status)
        .filter(|s| *s >= 200)
        .collect()
}

const CALLER: &str = "198.51.100.9:5060";

#[test]
fn max_calls_holds_exactly_and_frees_a_place_when_a_call_ends() {
    let mut rig = Rig::new(GuardConfig {
        max_calls: Some(5),
        retry_after: Duration::from_secs(7),
        ..GuardConfig::default()
    });
    let mut refused = Vec::new();
    let mut first = None;
    for i in 0..8 {
        let invite = rig.invite("echo", "");
        if i == 0 {
            first = Some(invite.clone());
        }
        let out = rig.send(CALLER, &invite);
        refused.extend(out.into_iter().filter(|r| r.status == 503));
    }
    assert_eq!(rig.calls.len(), 5, "exactly max_calls calls are taken");
    assert_eq!(refused.len(), 3, "the rest get 503");
    for r in &refused {
        assert_eq!(r.headers.get(&HeaderName::RetryAfter).unwrap(), "7");
        assert!(
            r.headers.to().unwrap().tag().is_some(),
            "a To tag (§8.2.6.2)"
        );
    }
    let stats = rig.ep.stats();
    assert_eq!(stats.over_capacity, 3);
    assert_eq!(rig.ep.guard_stats().calls, 5);
    // A retransmission of a call we took is not refused: the transaction absorbs it
    // (and repeats its last provisional response).
    let again = rig.send(CALLER, first.as_ref().unwrap());
    assert!(
        !again.iter().any(|r| r.status == 503),
        "{:?}",
        statuses(&again)
    );
    // One call ends: one place is free, and only one.
    let ended = rig.calls[0];
    rig.decline(ended);
    assert_eq!(rig.ep.guard_stats().calls, 4);
    let a = rig.invite("echo", "");
    let b = rig.invite("echo", "");
    assert!(!statuses(&rig.send(CALLER, &a)).contains(&503));
    assert_eq!(finals(&rig.send(CALLER, &b)), [503]);
    // An INVITE with Replaces (RFC 3891) takes a live call's place: not refused.
    let replaces = rig.invite("echo", "Replaces: guard-2;to-tag=x;from-tag=f2\r\n");
    assert!(!statuses(&rig.send(CALLER, &replaces)).contains(&503));
}

#[test]
fn calls_per_second_is_a_token_bucket_of_the_configured_burst() {
    let mut rig = Rig::new(GuardConfig {
        max_calls_per_second: Some(2),
        burst: 4,
        ..GuardConfig::default()
    });
    let mut taken = 0;
    let mut refused = 0;
    let burst = |rig: &mut Rig, n: usize| {
        let (mut t, mut r) = (0, 0);
        for _ in 0..n {
            let invite = rig.invite("echo", "");
            let out = rig.send(CALLER, &invite);
            if finals(&out).contains(&503) {
                r += 1;
            } else {
                t += 1;
            }
        }
        (t, r)
    };
    // A burst of 10 at once: the bucket's depth passes.
    let (t, r) = burst(&mut rig, 10);
    assert_eq!((t, r), (4, 6));
    taken += t;
    refused += r;
    // One second later: two tokens (the sustained rate).
    rig.advance(Duration::from_secs(1));
    let (t, r) = burst(&mut rig, 5);
    assert_eq!((t, r), (2, 3));
    taken += t;
    refused += r;
    // Half a second: one token.
    rig.advance(Duration::from_millis(500));
    assert_eq!(burst(&mut rig, 3), (1, 2));
    // A long quiet spell refills to the depth, not beyond.
    rig.advance(Duration::from_secs(60));
    assert_eq!(burst(&mut rig, 6), (4, 2));
    assert_eq!(taken + refused, 15);
    assert_eq!(rig.ep.stats().over_capacity, 6 + 3 + 2 + 2);
}

#[test]
fn a_source_over_the_rate_is_banned_silently_until_the_ban_expires() {
    let mut rig = Rig::new(GuardConfig {
        rate_limit: Some(RateLimit {
            requests: 10,
            window: Duration::from_secs(2),
        }),
        ban: Duration::from_secs(60),
        ..GuardConfig::default()
    });
    let flooder = "203.0.113.7:5060";
    for _ in 0..10 {
        let options = rig.options("", "");
        assert_eq!(finals(&rig.send(flooder, &options)), [200]);
    }
    let options = rig.options("", "");
    assert!(
        rig.send(flooder, &options).is_empty(),
        "the 11th is dropped"
    );
    let stats = rig.ep.stats();
    assert_eq!((stats.banned_sources, stats.rate_limited), (1, 1));
    assert!(rig.ep.guard_stats().tracked_sources >= 1);
    // Banned: nothing is answered, whatever it sends; another source is served.
    rig.advance(Duration::from_secs(30));
    for _ in 0..20 {
        let options = rig.options("", "");
        assert!(rig.send(flooder, &options).is_empty());
    }
    let options = rig.options("", "");
    assert_eq!(finals(&rig.send(CALLER, &options)), [200]);
    assert_eq!(rig.ep.stats().rate_limited, 21);
    // The ban expires.
    rig.advance(Duration::from_secs(31));
    let options = rig.options("", "");
    assert_eq!(finals(&rig.send(flooder, &options)), [200]);
    assert_eq!(rig.ep.stats().banned_sources, 1);
}

#[test]
fn the_window_restarts_so_a_steady_source_is_never_banned() {
    let mut rig = Rig::new(GuardConfig {
        rate_limit: Some(RateLimit {
            requests: 10,
            window: Duration::from_secs(2),
        }),
        ..GuardConfig::default()
    });
    for _ in 0..5 {
        for _ in 0..10 {
            let options = rig.options("", "");
            assert_eq!(finals(&rig.send(CALLER, &options)), [200]);
        }
        rig.advance(Duration::from_secs(2));
    }
    assert_eq!(rig.ep.stats().banned_sources, 0);
}

#[test]
fn the_allow_list_and_trunks_are_never_limited() {
    let mut trunk = TrunkConfig::new("carrier", "sip:192.0.2.50:5060", "carrier.test");
    trunk.inbound = vec![Cidr::parse("192.0.2.60").unwrap()];
    let mut rig = Rig::with(
        GuardConfig {
            rate_limit: Some(RateLimit {
                requests: 3,
                window: Duration::from_secs(2),
            }),
            allow: vec![Cidr::parse("10.0.0.0/8").unwrap()],
            ..GuardConfig::default()
        },
        InboundConfig::default(),
        vec![trunk],
    );
    for src in ["10.1.2.3:5060", "192.0.2.50:5060", "192.0.2.60:5070"] {
        for _ in 0..50 {
            let options = rig.options("", "");
            assert_eq!(finals(&rig.send(src, &options)), [200], "{src}");
        }
    }
    assert_eq!(rig.ep.stats().banned_sources, 0);
    // Outside them the limit holds.
    for _ in 0..3 {
        let options = rig.options("", "");
        assert_eq!(finals(&rig.send("10.0.0.1:5060", &options)), [200]);
    }
    let options = rig.options("", "");
    assert_eq!(finals(&rig.send("11.0.0.1:5060", &options)), [200]);
    for _ in 0..3 {
        let options = rig.options("", "");
        rig.send("11.0.0.1:5060", &options);
    }
    assert_eq!(rig.ep.stats().banned_sources, 1);
}

#[test]
fn scanner_user_agents_are_dropped_when_configured() {
    let mut rig = Rig::new(GuardConfig::default());
    for ua in [
        "friendly-scanner",
        "sipvicious",
        "SIPVicious 0.3.8",
        "sipcli/v1.8",
        "VaxSIPUserAgent/3.1",
        "sundayddr",
        "iWar",
        "pplsip",
    ] {
        let options = rig.options("", &format!("User-Agent: {ua}\r\n"));
        assert!(rig.send(CALLER, &options).is_empty(), "{ua} is answered");
        let invite = rig.invite("echo", &format!("User-Agent: {ua}\r\n"));
        assert!(rig.send(CALLER, &invite).is_empty(), "{ua} is answered");
    }
    assert_eq!(rig.ep.stats().scanner_dropped, 16);
    assert!(rig.calls.is_empty());
    // Ozeki is a softphone SDK, not a scanner.
    let options = rig.options("", "User-Agent: Ozeki VoIP SIP SDK v10\r\n");
    assert_eq!(finals(&rig.send(CALLER, &options)), [200]);
    // Off: answered like anyone.
    let mut open = Rig::new(GuardConfig {
        drop_scanners: false,
        ..GuardConfig::default()
    });
    let options = open.options("", "User-Agent: friendly-scanner\r\n");
    assert_eq!(finals(&open.send(CALLER, &options)), [200]);
    // A list of one's own replaces the built-in one.
    let mut own = Rig::new(GuardConfig {
        scanner_user_agents: vec!["EvilDialer".into()],
        ..GuardConfig::default()
    });
    let options = own.options("", "User-Agent: friendly-scanner\r\n");
    assert_eq!(finals(&own.send(CALLER, &options)), [200]);
    let options = own.options("", "User-Agent: the evildialer 2\r\n");
    assert!(own.send(CALLER, &options).is_empty());
}

#[test]
fn a_flood_from_spoofed_sources_keeps_memory_bounded() {
    let mut rig = Rig::new(GuardConfig {
        rate_limit: Some(RateLimit {
            requests: 2,
            window: Duration::from_secs(2),
        }),
        max_sources: 1000,
        ..GuardConfig::default()
    });
    let options = rig.options("", "");
    let flow = |i: u32| Flow {
        transport: Transport::Udp,
        local: LOCAL.parse().unwrap(),
        remote: SocketAddr::from((std::net::Ipv4Addr::from(0x0a00_0000 + i), 5060)),
        connection: None,
    };
    for i in 0..50_000 {
        rig.ep
            .handle_message(rig.now, Bytes::from(options.clone()), flow(i));
        while rig.ep.poll_transmit().is_some() {}
        while rig.ep.poll_event().is_some() {}
        assert!(rig.ep.guard_stats().tracked_sources <= 1000);
    }
    assert_eq!(rig.ep.guard_stats().tracked_sources, 1000);
    // The newest sources are the ones tracked: one of them is banned at its third.
    for _ in 0..3 {
        rig.ep
            .handle_message(rig.now, Bytes::from(options.clone()), flow(49_999));
    }
    assert_eq!(rig.ep.stats().banned_sources, 1);
}

/// The status line, and the header names of a response, with the values that differ
/// from answer to answer (tags, nonces, Call-ID, branch) left out.
fn shape(r: &Response) -> (u16, Vec<String>, Option<String>) {
    let mut names: Vec<String> = r.headers.iter().map(|h| h.name.to_string()).collect();
    names.sort();
    let realm = r
        .headers
        .get(&HeaderName::WwwAuthenticate)
        .map(|v| Challenge::parse(v).unwrap().realm);
    (r.status, names, realm)
}

fn closed() -> InboundConfig {
    InboundConfig {
        accept_any: false,
        realm: "tandem.test".into(),
        users: vec![
            ("alice".into(), "wonderland".into()),
            ("100".into(), "secret100".into()),
        ],
        ..InboundConfig::default()
    }
}

#[test]
fn known_and_unknown_users_get_the_same_answers() {
    let mut rig = Rig::with(GuardConfig::default(), closed(), Vec::new());
    for method in ["REGISTER", "INVITE", "OPTIONS", "MESSAGE", "SUBSCRIBE"] {
        let mut shapes = Vec::new();
        let mut nonces = Vec::new();
        for user in ["alice", "100", "bob", "999"] {
            let n = rig.next();
            let out = rig.send(CALLER, &request(method, user, n, ""));
            let last = out.last().unwrap();
            assert_eq!(last.status, 401, "{method} {user}");
            nonces.push(
                Challenge::parse(last.headers.get(&HeaderName::WwwAuthenticate).unwrap())
                    .unwrap()
                    .nonce,
            );
            shapes.push(shape(last));
        }
        assert!(
            shapes.windows(2).all(|w| w[0] == w[1]),
            "{method}: {shapes:?}"
        );
        nonces.sort();
        nonces.dedup();
        assert_eq!(nonces.len(), 4, "a fresh nonce each time");
    }
    // Wrong credentials: 403 whether the user exists or not.
    let mut answers = Vec::new();
    for (user, password) in [("alice", "wrong"), ("bob", "whatever"), ("100", "nope")] {
        for method in ["REGISTER", "INVITE"] {
            let n = rig.next();
            let out = rig.send(CALLER, &request(method, user, n, ""));
            let challenge = out.last().unwrap();
            let challenges: Vec<Challenge> = challenge
                .headers
                .get_all(&HeaderName::WwwAuthenticate)
                .map(|v| Challenge::parse(v).unwrap())
                .collect();
            let mut client = DigestClient::new();
            let lookup = |_: &str| Some(Credentials::new(user, password));
            let uri = format!("sip:{user}@{LOCAL}");
            let value = client
                .respond(
                    ChallengeKind::Www,
                    &challenges,
                    &lookup,
                    method,
                    &uri,
                    b"",
                    "c0ffee",
                )
                .unwrap()
                .remove(0);
            let n = rig.next();
            let retry = request(method, user, n, &format!("Authorization: {value}\r\n"));
            let out = rig.send(CALLER, &retry);
            answers.push(shape(out.last().unwrap()));
        }
    }
    assert!(answers.iter().all(|a| a.0 == 403), "{answers:?}");
    assert!(answers.windows(2).all(|w| w[0] == w[1]), "{answers:?}");
    assert_eq!(rig.ep.stats().auth_failed, 6);
    // The right password gets past the door.
    let n = rig.next();
    let out = rig.send(CALLER, &request("OPTIONS", "alice", n, ""));
    let challenges: Vec<Challenge> = out
        .last()
        .unwrap()
        .headers
        .get_all(&HeaderName::WwwAuthenticate)
        .map(|v| Challenge::parse(v).unwrap())
        .collect();
    let mut client = DigestClient::new();
    let lookup = |_: &str| Some(Credentials::new("alice", "wonderland"));
    let uri = format!("sip:alice@{LOCAL}");
    let value = client
        .respond(
            ChallengeKind::Www,
            &challenges,
            &lookup,
            "OPTIONS",
            &uri,
            b"",
            "c0ffee",
        )
        .unwrap()
        .remove(0);
    let n = rig.next();
    let out = rig.send(
        CALLER,
        &request(
            "OPTIONS",
            "alice",
            n,
            &format!("Authorization: {value}\r\n"),
        ),
    );
    assert_eq!(finals(&out), [200]);
}

#[test]
fn options_is_answered_alike_for_any_user_when_open() {
    let mut rig = Rig::new(GuardConfig::default());
    let mut shapes = Vec::new();
    for user in ["echo", "alice", "nobody", "12345", ""] {
        let options = rig.options(user, "");
        let out = rig.send(CALLER, &options);
        assert_eq!(finals(&out), [200], "{user}");
        shapes.push(shape(out.last().unwrap()));
    }
    assert!(shapes.windows(2).all(|w| w[0] == w[1]), "{shapes:?}");
    // REGISTER: Tandem is no registrar; 405 for everyone.
    for user in ["alice", "nobody"] {
        let n = rig.next();
        assert_eq!(
            finals(&rig.send(CALLER, &request("REGISTER", user, n, ""))),
            [405]
        );
    }
}

#[test]
fn set_guard_config_replaces_the_limits_at_run_time() {
    let mut rig = Rig::new(GuardConfig::default());
    for _ in 0..3 {
        let invite = rig.invite("echo", "");
        assert!(!finals(&rig.send(CALLER, &invite)).contains(&503));
    }
    rig.ep.set_guard_config(GuardConfig {
        max_calls: Some(3),
        ..GuardConfig::default()
    });
    assert_eq!(rig.ep.config().guard.max_calls, Some(3));
    let invite = rig.invite("echo", "");
    assert_eq!(
        finals(&rig.send(CALLER, &invite)),
        [503],
        "the live calls are kept"
    );
    rig.ep.set_guard_config(GuardConfig {
        max_calls: Some(4),
        ..GuardConfig::default()
    });
    let invite = rig.invite("echo", "");
    assert!(!finals(&rig.send(CALLER, &invite)).contains(&503));
}

#[test]
fn the_user_agent_is_found_in_any_spelling_and_only_in_the_headers() {
    let mut rig = Rig::new(GuardConfig::default());
    for header in [
        "user-agent:friendly-scanner\r\n",
        "USER-AGENT :  SIPVicious\r\n",
        "User-Agent:\tsipcli/v1.8\r\n",
    ] {
        let options = rig.options("", header);
        assert!(
            rig.send(CALLER, &options).is_empty(),
            "{header:?} is answered"
        );
    }
    // Not a User-Agent header, or a scanner's name elsewhere: answered.
    for header in [
        "User-Agent-X: friendly-scanner\r\n",
        "Subject: friendly-scanner\r\n",
        "X-User-Agent: sipvicious\r\n",
    ] {
        let options = rig.options("", header);
        assert_eq!(finals(&rig.send(CALLER, &options)), [200], "{header:?}");
    }
    let n = rig.next();
    let message = request("MESSAGE", "echo", n, "Content-Type: text/plain\r\n").replace(
        "Content-Length: 0\r\n\r\n",
        "Content-Length: 28\r\n\r\nUser-Agent: friendly-scanner",
    );
    assert_eq!(finals(&rig.send(CALLER, &message)), [200]);
    assert_eq!(rig.ep.stats().scanner_dropped, 3);
}
