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
use sip_core::sip_dialog::{Event, Invite, Reply, SessionId};
use sip_core::{
    Cidr, Endpoint, EndpointConfig, EndpointEvent, Flow, GuardConfig, InboundConfig, RateLimit,
    TrunkConfig,
};
use sip_message::{HeaderName, Message, Request, Response, Transport};
use std::io::Write;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
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
    assert_eq!(rig.ep.guard_stats().bans, 1);
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

fn udp_flow(remote: &str) -> Flow {
    Flow {
        transport: Transport::Udp,
        local: LOCAL.parse().unwrap(),
        remote: remote.parse::<SocketAddr>().unwrap(),
        connection: None,
    }
}

fn limited(requests: u32, max_sources: usize) -> GuardConfig {
    GuardConfig {
        rate_limit: Some(RateLimit {
            requests,
            window: Duration::from_secs(2),
        }),
        ban: Duration::from_secs(60),
        max_sources,
        ..GuardConfig::default()
    }
}

/// Sends `n` OPTIONS from `src`; returns how many were answered.
fn answered(rig: &mut Rig, src: &str, n: usize) -> usize {
    (0..n)
        .filter(|_| {
            let options = rig.options("", "");
            !rig.send(src, &options).is_empty()
        })
        .count()
}

/// The `tandem::security` lines written while `f` runs.
fn security_log(f: impl FnOnce()) -> String {
    #[derive(Clone)]
    struct Buf(Arc<Mutex<Vec<u8>>>);
    impl Write for Buf {
        fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(data);
            Ok(data.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let buf = Buf(Arc::new(Mutex::new(Vec::new())));
    let writer = buf.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_ansi(false)
        .with_max_level(tracing::Level::INFO)
        .with_writer(move || writer.clone())
        .finish();
    tracing::subscriber::with_default(subscriber, f);
    let text = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
    text.lines()
        .filter(|l| l.contains("tandem::security"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Finding 1: a banned source's responses are dropped (and counted) like its requests;
/// an allow-listed peer's are not screened.
#[test]
fn a_banned_source_is_dropped_responses_included() {
    let mut rig = Rig::new(GuardConfig {
        allow: vec![Cidr::parse("10.0.0.0/8").unwrap()],
        ..limited(3, 1000)
    });
    let banned = "203.0.113.7:5060";
    assert_eq!(answered(&mut rig, banned, 4), 3);
    assert_eq!(rig.ep.stats().banned_sources, 1);
    let before = rig.ep.stats().rate_limited;
    // We call the banned source and an allow-listed one; each answers 180.
    for (peer, rings) in [(banned, false), ("10.0.0.9:5060", true)] {
        let flow = udp_flow(peer);
        let id = rig
            .ep
            .user_agent()
            .invite(
                rig.now,
                Invite::new(
                    format!("sip:bob@{peer}"),
                    format!("<sip:alice@{LOCAL}>"),
                    format!("<sip:bob@{peer}>"),
                    flow,
                ),
            )
            .unwrap();
        rig.ep.pump(rig.now);
        let mut invite: Option<Request> = None;
        while let Some(t) = rig.ep.poll_transmit() {
            if let Ok(Message::Request(r)) = Message::parse(t.payload) {
                invite = Some(r);
            }
        }
        let ringing = Response::from_request(&invite.unwrap(), 180, Some("callee")).to_bytes();
        rig.ep.handle_message(rig.now, ringing, flow);
        let mut rang = false;
        while let Some(event) = rig.ep.poll_event() {
            if let EndpointEvent::Session(event) = event
                && let Event::Provisional { session, .. } = *event
            {
                rang |= session == id;
            }
        }
        assert_eq!(rang, rings, "{peer}: the 180 reached the user agent");
    }
    assert_eq!(
        rig.ep.stats().rate_limited,
        before + 1,
        "the banned source's response is counted"
    );
}

/// Finding 2: a flood from more new sources than `max_sources` evicts counting
/// entries, never a ban.
#[test]
fn a_flood_of_new_sources_does_not_lift_bans() {
    let mut rig = Rig::new(GuardConfig {
        ban: Duration::from_secs(300),
        ..limited(2, 1000)
    });
    let banned: Vec<String> = (1..=10).map(|i| format!("203.0.113.{i}:5060")).collect();
    for src in &banned {
        assert_eq!(answered(&mut rig, src, 3), 2);
    }
    assert_eq!(rig.ep.stats().banned_sources, 10);
    let options = rig.options("", "");
    for i in 0..50_000u32 {
        let flow = Flow {
            remote: SocketAddr::from((std::net::Ipv4Addr::from(0x0a00_0000 + i), 5060)),
            ..udp_flow(CALLER)
        };
        rig.ep
            .handle_message(rig.now, Bytes::from(options.clone()), flow);
        while rig.ep.poll_transmit().is_some() {}
        while rig.ep.poll_event().is_some() {}
    }
    let stats = rig.ep.guard_stats();
    assert_eq!(stats.tracked_sources, 1000);
    assert_eq!(stats.bans, 10);
    rig.advance(Duration::from_secs(10));
    for src in &banned {
        assert_eq!(answered(&mut rig, src, 1), 0, "{src} is still banned");
    }
    assert_eq!(rig.ep.stats().rate_limited, 10 + 10);
}

/// Finding 2, the full ban table: no live ban is evicted; a new offender is not banned
/// but loses what it sends over the limit until its window ends; an expired ban frees
/// its place.
#[test]
fn a_full_ban_table_keeps_its_bans_and_still_limits_new_offenders() {
    let mut rig = Rig::new(limited(2, 4));
    for i in 1..=4 {
        assert_eq!(answered(&mut rig, &format!("203.0.113.{i}:5060"), 3), 2);
    }
    assert_eq!(rig.ep.guard_stats().bans, 4);
    let fifth = "203.0.113.5:5060";
    let log = security_log(|| assert_eq!(answered(&mut rig, fifth, 5), 2));
    assert!(
        log.contains("security: ban-refused src=203.0.113.5 reason=ban-table-full bans=4"),
        "{log}"
    );
    let stats = rig.ep.guard_stats();
    assert_eq!(
        (stats.banned_sources, stats.bans_refused, stats.bans),
        (4, 1, 4)
    );
    for i in 1..=4 {
        assert_eq!(answered(&mut rig, &format!("203.0.113.{i}:5060"), 1), 0);
    }
    // Its window ends: it is served again, up to the limit.
    rig.advance(Duration::from_secs(2));
    assert_eq!(answered(&mut rig, fifth, 3), 2);
    // The bans expire: a place is free, and the next offender is banned.
    rig.advance(Duration::from_secs(60));
    let log = security_log(|| assert_eq!(answered(&mut rig, fifth, 3), 2));
    assert!(
        log.contains("security: unban src=203.0.113.1 dropped=2"),
        "{log}"
    );
    assert!(log.contains("security: ban src=203.0.113.5 "), "{log}");
    assert_eq!(rig.ep.stats().banned_sources, 5);
    assert_eq!(answered(&mut rig, "203.0.113.1:5060", 1), 1);
}

/// Finding 3: an IPv6 source is counted and banned by its /64; IPv4 stays per address;
/// the log names the real address.
#[test]
fn ipv6_sources_are_limited_by_their_64() {
    let mut rig = Rig::new(limited(10, 1000));
    for i in 1..=10 {
        assert_eq!(
            answered(&mut rig, &format!("[2001:db8:1:2::{i:x}]:5060"), 1),
            1
        );
    }
    let log = security_log(|| {
        assert_eq!(answered(&mut rig, "[2001:db8:1:2:ffff::1]:5060", 1), 0);
    });
    assert!(
        log.contains("security: ban src=2001:db8:1:2:ffff::1 reason=rate-limit requests=11"),
        "{log}"
    );
    assert_eq!(rig.ep.stats().banned_sources, 1);
    assert_eq!(answered(&mut rig, "[2001:db8:1:2:abcd::9]:5060", 1), 0);
    assert_eq!(answered(&mut rig, "[2001:db8:1:3::1]:5060", 1), 1);
    // IPv4 neighbours are separate sources.
    for i in 1..=5 {
        assert_eq!(
            answered(&mut rig, &format!("192.0.2.{}:5060", 100 + i), 10),
            10
        );
    }
    assert_eq!(rig.ep.stats().banned_sources, 1);
}

/// Finding 4: every way an inbound session ends gives its place back (the guard relies
/// on `call_ended`, nothing sweeps).
#[test]
fn every_ended_inbound_session_frees_its_place() {
    let guard = GuardConfig {
        max_calls: Some(1),
        ..GuardConfig::default()
    };
    let mut rig = Rig::new(guard.clone());
    let check = |rig: &mut Rig, what: &str| {
        assert_eq!(rig.ep.guard_stats().calls, 0, "after {what}");
    };
    // Refused by the drain (503 from the endpoint).
    rig.ep.set_draining(Some(5));
    let invite = rig.invite("echo", "");
    assert_eq!(finals(&rig.send(CALLER, &invite)), [503]);
    rig.ep.set_draining(None);
    check(&mut rig, "a 503 while draining");
    // Refused by routing: no such user.
    let invite = rig.invite("nobody", "");
    assert_eq!(finals(&rig.send(CALLER, &invite)), [404]);
    check(&mut rig, "404");
    // Declined by the application.
    let invite = rig.invite("echo", "");
    rig.send(CALLER, &invite);
    assert_eq!(rig.ep.guard_stats().calls, 1);
    let session = *rig.calls.last().unwrap();
    rig.decline(session);
    check(&mut rig, "486");
    // Cancelled by the caller.
    let invite = rig.invite("echo", "");
    rig.send(CALLER, &invite);
    assert_eq!(rig.ep.guard_stats().calls, 1);
    let cancel = invite
        .replacen("INVITE ", "CANCEL ", 1)
        .replace("CSeq: 1 INVITE", "CSeq: 1 CANCEL");
    assert!(finals(&rig.send(CALLER, &cancel)).contains(&487));
    check(&mut rig, "CANCEL");
    // With accounts: 401 without credentials, 403 with wrong ones.
    let mut closed_rig = Rig::with(guard, closed(), Vec::new());
    let invite = closed_rig.invite("alice", "");
    assert_eq!(finals(&closed_rig.send(CALLER, &invite)), [401]);
    check(&mut closed_rig, "401");
    let invite = closed_rig.invite(
        "alice",
        "Authorization: Digest username=\"alice\", realm=\"tandem.test\", nonce=\"x\", \
         uri=\"sip:alice@192.0.2.1:5060\", response=\"00000000000000000000000000000000\"\r\n",
    );
    let out = finals(&closed_rig.send(CALLER, &invite));
    assert!(out == [401] || out == [403], "{out:?}");
    check(&mut closed_rig, "a refused credential");
    // Ended by the application without a `pump` after it: the next message counts it
    // ended all the same.
    let invite = rig.invite("echo", "");
    rig.send(CALLER, &invite);
    let session = *rig.calls.last().unwrap();
    let tx = sip_transaction::TransactionKey::server_for_request(
        rig.ep.user_agent_ref().invite_request(session).unwrap(),
    )
    .unwrap();
    rig.ep
        .user_agent()
        .respond(rig.now, &tx, Reply::new(486))
        .unwrap();
    let next = rig.invite("echo", "");
    assert!(!finals(&rig.send(CALLER, &next)).contains(&503));
    let session = *rig.calls.last().unwrap();
    rig.decline(session);
    check(&mut rig, "a 486 without pump");
    // And the one place is still there, exactly.
    let a = closed_rig.invite("alice", "");
    assert_eq!(finals(&closed_rig.send(CALLER, &a)), [401]);
    let b = rig.invite("echo", "");
    let c = rig.invite("echo", "");
    assert!(!finals(&rig.send(CALLER, &b)).contains(&503));
    assert_eq!(finals(&rig.send(CALLER, &c)), [503]);
}

/// Finding 4: at the call limit with thousands of live calls, every further INVITE is
/// refused 503 and the count of live calls stays exact. (Refusing no longer sweeps the
/// live calls: the count follows `Terminated`, see the next test; its cost is a
/// benchmark's business, not a timed test's.)
#[test]
fn at_the_limit_with_thousands_of_live_calls_every_invite_is_refused() {
    for live in [10, 4000] {
        let mut rig = Rig::new(GuardConfig {
            max_calls: Some(u32::try_from(live).unwrap()),
            ..GuardConfig::default()
        });
        for _ in 0..live {
            let invite = rig.invite("echo", "");
            rig.send(CALLER, &invite);
        }
        assert_eq!(rig.ep.guard_stats().calls, live);
        let flow = udp_flow(CALLER);
        let mut refused = 0;
        for _ in 0..200 {
            let invite = Bytes::from(rig.invite("echo", ""));
            rig.ep.handle_message(rig.now, invite, flow);
            while let Some(t) = rig.ep.poll_transmit() {
                assert!(t.payload.starts_with(b"SIP/2.0 503 "));
                refused += 1;
            }
        }
        assert_eq!(
            refused, 200,
            "every one is answered 503 ({live} live calls)"
        );
        assert_eq!(rig.ep.guard_stats().calls, live);
    }
}

/// Finding 6: a method we do not know is refused 501 before its credentials are
/// checked, so right and wrong passwords get the same answer (and no auth-failed).
#[test]
fn an_unknown_method_is_refused_before_its_credentials_are_checked() {
    let mut rig = Rig::with(GuardConfig::default(), closed(), Vec::new());
    let n = rig.next();
    let out = rig.send(CALLER, &request("OPTIONS", "alice", n, ""));
    let challenges: Vec<Challenge> = out
        .last()
        .unwrap()
        .headers
        .get_all(&HeaderName::WwwAuthenticate)
        .map(|v| Challenge::parse(v).unwrap())
        .collect();
    for method in ["X-1", "REG.ISTER", "FOO"] {
        let mut answers = Vec::new();
        let n = rig.next();
        answers.push(finals(&rig.send(CALLER, &request(method, "alice", n, ""))));
        for password in ["wonderland", "wrong"] {
            let mut client = DigestClient::new();
            let lookup = |_: &str| Some(Credentials::new("alice", password));
            let value = client
                .respond(
                    ChallengeKind::Www,
                    &challenges,
                    &lookup,
                    method,
                    &format!("sip:alice@{LOCAL}"),
                    b"",
                    "c0ffee",
                )
                .unwrap()
                .remove(0);
            let n = rig.next();
            let text = request(method, "alice", n, &format!("Authorization: {value}\r\n"));
            answers.push(finals(&rig.send(CALLER, &text)));
        }
        assert_eq!(answers, [[501], [501], [501]], "{method}");
    }
    assert_eq!(rig.ep.stats().auth_failed, 0);
}

/// Finding 6: the security lines name a method only when it is a known one.
#[test]
fn security_lines_name_unknown_methods_other() {
    let mut rig = Rig::with(GuardConfig::default(), closed(), Vec::new());
    let log = security_log(|| {
        let n = rig.next();
        let text = request("REG.ISTER", "alice", n, "User-Agent: friendly-scanner\r\n");
        assert!(rig.send(CALLER, &text).is_empty());
        let n = rig.next();
        let text = request("OPTIONS", "alice", n, "User-Agent: friendly-scanner\r\n");
        assert!(rig.send(CALLER, &text).is_empty());
        let n = rig.next();
        let bad = "Authorization: Digest username=\"alice\", realm=\"tandem.test\", \
                   nonce=\"x\", uri=\"sip:alice@192.0.2.1:5060\", \
                   response=\"00000000000000000000000000000000\"\r\n";
        rig.send(CALLER, &request("REGISTER", "alice", n, bad));
    });
    assert!(
        log.contains("security: scanner src=198.51.100.9 ua=friendly-scanner method=other"),
        "{log}"
    );
    assert!(
        log.contains("security: scanner src=198.51.100.9 ua=friendly-scanner method=OPTIONS"),
        "{log}"
    );
}
