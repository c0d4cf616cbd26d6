//! Client against server over real SIP messages (sip-message), on a virtual clock.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use sip_auth::{
    Algorithm, AuthError, Authorization, Challenge, ChallengeKind, Credentials, DigestClient,
    DigestServer, Qop, ServerConfig, Verdict,
};
use sip_message::{Bytes, HeaderName, Message, Request, Response};
use std::time::{Duration, Instant};

const REALM: &str = "tandem.example";
const URI: &str = "sip:tandem.example";

fn register(cseq: u32, body: &str) -> Request {
    let text = format!(
        "REGISTER {URI} SIP/2.0\r\n\
         Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK{cseq}x\r\n\
         Max-Forwards: 70\r\n\
         To: <sip:alice@tandem.example>\r\n\
         From: <sip:alice@tandem.example>;tag=a1\r\n\
         Call-ID: reg-1@192.0.2.10\r\n\
         CSeq: {cseq} REGISTER\r\n\
         Contact: <sip:alice@192.0.2.10:5060>\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    );
    match Message::parse(Bytes::from(text)).unwrap() {
        Message::Request(r) => r,
        Message::Response(_) => panic!("not a request"),
    }
}

/// Sends `req` "over the wire" with `auth` headers added and returns what the server parsed.
fn wire(mut req: Request, auth: &[(ChallengeKind, String)]) -> Request {
    for (kind, value) in auth {
        req.headers
            .push(kind.authorization_header(), value.clone().into_bytes());
    }
    match Message::parse(req.to_bytes()).unwrap() {
        Message::Request(r) => r,
        Message::Response(_) => panic!("not a request"),
    }
}

/// The server's 401 for `req` as the client parses it.
fn challenge_401(server: &mut DigestServer, req: &Request, now: Instant, stale: bool) -> Response {
    let mut r = Response::from_request(req, 401, Some("srv"));
    for v in server.challenge(now, stale) {
        r.headers.push(HeaderName::WwwAuthenticate, v.into_bytes());
    }
    match Message::parse(r.to_bytes()).unwrap() {
        Message::Response(r) => r,
        Message::Request(_) => panic!("not a response"),
    }
}

fn challenges_of(resp: &Response) -> (ChallengeKind, Vec<Challenge>) {
    let kind = ChallengeKind::from_status(resp.status).unwrap();
    let name = kind.challenge_header();
    let values: Vec<&[u8]> = resp.headers.get_all(&name).map(|b| &b[..]).collect();
    (kind, Challenge::parse_supported(values))
}

fn server_verify(
    server: &mut DigestServer,
    now: Instant,
    req: &Request,
    password: &str,
) -> Verdict {
    let value = req.headers.get(&HeaderName::Authorization).unwrap().clone();
    let pw = password.to_string();
    server.verify(
        now,
        req.method.as_str(),
        &value,
        &req.body,
        &move |user: &str| (user == "alice").then(|| pw.clone()),
    )
}

fn alice(password: &'static str) -> impl Fn(&str) -> Option<Credentials> {
    move |_realm: &str| Some(Credentials::new("alice", password).for_realm(REALM))
}

fn server_with(algorithms: Vec<Algorithm>, qop: Vec<Qop>, t0: Instant) -> DigestServer {
    let mut config = ServerConfig::new(REALM, [0x5a; 32]);
    config.algorithms = algorithms;
    config.qop = qop;
    DigestServer::new(config, t0)
}

fn www(values: Vec<String>) -> Vec<(ChallengeKind, String)> {
    values
        .into_iter()
        .map(|v| (ChallengeKind::Www, v))
        .collect()
}

#[test]
fn register_round_trip_for_every_algorithm() {
    for alg in Algorithm::ALL {
        let t0 = Instant::now();
        let mut server = server_with(vec![alg], vec![Qop::Auth], t0);
        let mut client = DigestClient::new();

        let first = wire(register(1, ""), &[]);
        assert!(first.headers.get(&HeaderName::Authorization).is_none());
        let resp = challenge_401(&mut server, &first, t0, false);
        let (kind, challenges) = challenges_of(&resp);
        assert_eq!(kind, ChallengeKind::Www);
        assert_eq!(challenges.len(), 1);
        assert_eq!(challenges[0].algorithm, alg);

        let values = client
            .respond(
                kind,
                &challenges,
                &alice("pw"),
                "REGISTER",
                URI,
                b"",
                "cn-1",
            )
            .unwrap();
        let second = wire(register(2, ""), &www(values));
        let a =
            Authorization::parse(second.headers.get(&HeaderName::Authorization).unwrap()).unwrap();
        assert_eq!(a.algorithm, alg, "{alg}");
        assert_eq!(a.nc, Some(1));
        assert_eq!(a.uri, URI);
        assert_eq!(
            server_verify(&mut server, t0, &second, "pw"),
            Verdict::Authorized {
                username: "alice".into()
            },
            "{alg}"
        );
        client.succeeded();

        // The refresh a minute later goes pre-emptively with nc=2 (and for -sess with the
        // first cnonce kept, whatever the caller passes now).
        let t1 = t0 + Duration::from_secs(60);
        let pre = client.authorize("REGISTER", URI, b"", "cn-2");
        assert_eq!(pre.len(), 1);
        let refresh = wire(register(3, ""), &pre);
        let a =
            Authorization::parse(refresh.headers.get(&HeaderName::Authorization).unwrap()).unwrap();
        assert_eq!(a.nc, Some(2));
        let expected_cnonce = if alg.is_session() { "cn-1" } else { "cn-2" };
        assert_eq!(a.cnonce.as_deref(), Some(expected_cnonce));
        assert_eq!(
            server_verify(&mut server, t1, &refresh, "pw"),
            Verdict::Authorized {
                username: "alice".into()
            },
            "{alg} refresh"
        );
    }
}

#[test]
fn server_offers_sha256_then_md5_and_client_takes_the_first() {
    let t0 = Instant::now();
    let mut server = DigestServer::new(ServerConfig::new(REALM, [1; 32]), t0);
    let req = wire(register(1, ""), &[]);
    let resp = challenge_401(&mut server, &req, t0, false);
    assert_eq!(resp.headers.count(&HeaderName::WwwAuthenticate), 2);
    let (kind, challenges) = challenges_of(&resp);
    let algs: Vec<Algorithm> = challenges.iter().map(|c| c.algorithm).collect();
    assert_eq!(algs, [Algorithm::Sha256, Algorithm::Md5]);
    assert_ne!(challenges[0].nonce, challenges[1].nonce);
    let mut client = DigestClient::new();
    let values = client
        .respond(kind, &challenges, &alice("pw"), "REGISTER", URI, b"", "c")
        .unwrap();
    assert_eq!(values.len(), 1);
    let a = Authorization::parse(values[0].as_bytes()).unwrap();
    assert_eq!(a.algorithm, Algorithm::Sha256);
    assert_eq!(a.nonce, challenges[0].nonce);
}

#[test]
fn expired_nonce_is_stale_and_the_client_retries_without_counting_a_failure() {
    let t0 = Instant::now();
    let mut server = server_with(vec![Algorithm::Sha256], vec![Qop::Auth], t0);
    let mut client = DigestClient::new();
    let resp = challenge_401(&mut server, &register(1, ""), t0, false);
    let (kind, ch) = challenges_of(&resp);
    let values = client
        .respond(kind, &ch, &alice("pw"), "REGISTER", URI, b"", "c1")
        .unwrap();
    // The answer arrives after the nonce's 300 s.
    let late = t0 + Duration::from_secs(301);
    let req = wire(register(2, ""), &www(values));
    assert_eq!(server_verify(&mut server, late, &req, "pw"), Verdict::Stale);

    // The server re-challenges with stale=true; the client (still "pending", no success in
    // between) answers again instead of giving up.
    let resp = challenge_401(&mut server, &req, late, true);
    let (kind, ch) = challenges_of(&resp);
    assert!(ch[0].stale);
    let raw = resp.headers.get(&HeaderName::WwwAuthenticate).unwrap();
    assert!(raw.windows(12).any(|w| w == b", stale=true"));
    let values = client
        .respond(kind, &ch, &alice("pw"), "REGISTER", URI, b"", "c2")
        .unwrap();
    let req = wire(register(3, ""), &www(values));
    assert_eq!(
        server_verify(&mut server, late, &req, "pw"),
        Verdict::Authorized {
            username: "alice".into()
        }
    );

    // A stale=true challenge that repeats the nonce just used is a loop: rejected.
    let mut again = ch.clone();
    again[0].stale = true;
    assert_eq!(
        client.respond(kind, &again, &alice("pw"), "REGISTER", URI, b"", "c3"),
        Err(AuthError::Rejected {
            realm: REALM.into()
        })
    );
}

#[test]
fn stale_needs_the_right_password() {
    let t0 = Instant::now();
    let mut server = server_with(vec![Algorithm::Md5], vec![Qop::Auth], t0);
    let mut client = DigestClient::new();
    let (kind, ch) = challenges_of(&challenge_401(&mut server, &register(1, ""), t0, false));
    let values = client
        .respond(kind, &ch, &alice("wrong"), "REGISTER", URI, b"", "c")
        .unwrap();
    let req = wire(register(2, ""), &www(values));
    // Expired and wrong: the password is what fails (stale would invite a silent retry).
    assert_eq!(
        server_verify(&mut server, t0 + Duration::from_secs(900), &req, "pw"),
        Verdict::BadResponse
    );
}

#[test]
fn wrong_password_is_bad_response_then_the_client_gives_up() {
    let t0 = Instant::now();
    let mut server = server_with(vec![Algorithm::Sha256], vec![Qop::Auth], t0);
    let mut client = DigestClient::new();
    let (kind, ch) = challenges_of(&challenge_401(&mut server, &register(1, ""), t0, false));
    let values = client
        .respond(kind, &ch, &alice("wrong"), "REGISTER", URI, b"", "c1")
        .unwrap();
    let req = wire(register(2, ""), &www(values));
    assert_eq!(
        server_verify(&mut server, t0, &req, "pw"),
        Verdict::BadResponse
    );

    let (kind, ch) = challenges_of(&challenge_401(&mut server, &req, t0, false));
    assert_eq!(
        client.respond(kind, &ch, &alice("wrong"), "REGISTER", URI, b"", "c2"),
        Err(AuthError::Rejected {
            realm: REALM.into()
        })
    );
    // The rejected realm is forgotten: nothing pre-emptive, and a later attempt (the
    // registration retry timer) is answered once more.
    assert!(client.authorize("REGISTER", URI, b"", "c3").is_empty());
    assert!(
        client
            .respond(kind, &ch, &alice("wrong"), "REGISTER", URI, b"", "c4")
            .is_ok()
    );
    // New credentials (the user fixed the password) are not "the same credentials".
    let (kind, ch) = challenges_of(&challenge_401(&mut server, &req, t0, false));
    let values = client
        .respond(kind, &ch, &alice("pw"), "REGISTER", URI, b"", "c5")
        .unwrap();
    let req = wire(register(3, ""), &www(values));
    assert_eq!(
        server_verify(&mut server, t0, &req, "pw"),
        Verdict::Authorized {
            username: "alice".into()
        }
    );
}

#[test]
fn a_new_challenge_after_success_is_answered_again() {
    // A server that forgot its nonces challenges a pre-emptive request without stale=true:
    // after a success, that is not a wrong password.
    let t0 = Instant::now();
    let mut server = server_with(vec![Algorithm::Sha256], vec![Qop::Auth], t0);
    let mut client = DigestClient::new();
    let (kind, ch) = challenges_of(&challenge_401(&mut server, &register(1, ""), t0, false));
    client
        .respond(kind, &ch, &alice("pw"), "REGISTER", URI, b"", "c1")
        .unwrap();
    client.succeeded();
    let restarted = &mut server_with(vec![Algorithm::Sha256], vec![Qop::Auth], t0);
    let (kind, ch) = challenges_of(&challenge_401(restarted, &register(3, ""), t0, false));
    assert!(
        client
            .respond(kind, &ch, &alice("pw"), "REGISTER", URI, b"", "c2")
            .is_ok()
    );
}

#[test]
fn replayed_nonce_count_is_replay() {
    let t0 = Instant::now();
    let mut server = server_with(vec![Algorithm::Sha256], vec![Qop::Auth], t0);
    let mut client = DigestClient::new();
    let (kind, ch) = challenges_of(&challenge_401(&mut server, &register(1, ""), t0, false));
    let values = client
        .respond(kind, &ch, &alice("pw"), "REGISTER", URI, b"", "c1")
        .unwrap();
    let req = wire(register(2, ""), &www(values));
    assert!(matches!(
        server_verify(&mut server, t0, &req, "pw"),
        Verdict::Authorized { .. }
    ));
    // The same request again (an attacker replaying it): nc 1 was seen.
    assert_eq!(server_verify(&mut server, t0, &req, "pw"), Verdict::Replay);

    // nc 2 and 3 pass; then nc 2 again is a replay.
    let r2 = wire(
        register(3, ""),
        &client.authorize("REGISTER", URI, b"", "c2"),
    );
    let r3 = wire(
        register(4, ""),
        &client.authorize("REGISTER", URI, b"", "c3"),
    );
    assert!(matches!(
        server_verify(&mut server, t0, &r2, "pw"),
        Verdict::Authorized { .. }
    ));
    assert!(matches!(
        server_verify(&mut server, t0, &r3, "pw"),
        Verdict::Authorized { .. }
    ));
    assert_eq!(server_verify(&mut server, t0, &r2, "pw"), Verdict::Replay);
}

#[test]
fn a_wrong_response_does_not_advance_the_count() {
    // Otherwise a forged request with nc=ffffffff would lock the real client out.
    let t0 = Instant::now();
    let mut server = server_with(vec![Algorithm::Sha256], vec![Qop::Auth], t0);
    let mut client = DigestClient::new();
    let (kind, ch) = challenges_of(&challenge_401(&mut server, &register(1, ""), t0, false));
    let values = client
        .respond(kind, &ch, &alice("pw"), "REGISTER", URI, b"", "c1")
        .unwrap();
    let mut forged = Authorization::parse(values[0].as_bytes()).unwrap();
    forged.nc = Some(u32::MAX);
    assert_eq!(
        server.verify(
            t0,
            "REGISTER",
            forged.to_header_value().as_bytes(),
            b"",
            &|_| Some("pw".into())
        ),
        Verdict::BadResponse
    );
    let req = wire(register(2, ""), &www(values));
    assert!(matches!(
        server_verify(&mut server, t0, &req, "pw"),
        Verdict::Authorized { .. }
    ));
}

#[test]
fn tampered_nonce_is_rejected() {
    let t0 = Instant::now();
    let mut server = server_with(vec![Algorithm::Sha256], vec![Qop::Auth], t0);
    let (_, ch) = challenges_of(&challenge_401(&mut server, &register(1, ""), t0, false));
    let mut tampered = ch[0].clone();
    // Move the timestamp forward to stretch the nonce's life; the signature breaks.
    let mut n = tampered.nonce.into_bytes();
    n[15] = if n[15] == b'f' { b'e' } else { b'f' };
    tampered.nonce = String::from_utf8(n).unwrap();
    let mut client = DigestClient::new();
    let values = client
        .respond(
            ChallengeKind::Www,
            &[tampered],
            &alice("pw"),
            "REGISTER",
            URI,
            b"",
            "c",
        )
        .unwrap();
    let req = wire(register(2, ""), &www(values));
    assert_eq!(
        server_verify(&mut server, t0, &req, "pw"),
        Verdict::InvalidNonce
    );

    // A nonce of another server (other secret) is not ours either.
    let mut other = DigestServer::new(ServerConfig::new(REALM, [0x11; 32]), t0);
    let (_, ch) = challenges_of(&challenge_401(&mut other, &register(1, ""), t0, false));
    let mut client = DigestClient::new();
    let values = client
        .respond(
            ChallengeKind::Www,
            &ch,
            &alice("pw"),
            "REGISTER",
            URI,
            b"",
            "c",
        )
        .unwrap();
    let req = wire(register(2, ""), &www(values));
    assert_eq!(
        server_verify(&mut server, t0, &req, "pw"),
        Verdict::InvalidNonce
    );
}

#[test]
fn auth_int_protects_the_body() {
    let t0 = Instant::now();
    let mut server = server_with(vec![Algorithm::Sha256], vec![Qop::AuthInt], t0);
    let mut client = DigestClient::new();
    let body = "v=0\r\no=- 1 1 IN IP4 192.0.2.10\r\n";
    let (kind, ch) = challenges_of(&challenge_401(&mut server, &register(1, body), t0, false));
    assert_eq!(ch[0].qop, vec![Qop::AuthInt]);
    let values = client
        .respond(
            kind,
            &ch,
            &alice("pw"),
            "REGISTER",
            URI,
            body.as_bytes(),
            "c1",
        )
        .unwrap();
    let a = Authorization::parse(values[0].as_bytes()).unwrap();
    assert_eq!(a.qop, Some(Qop::AuthInt));
    assert!(values[0].contains("qop=auth-int"));
    let req = wire(register(2, body), &www(values.clone()));
    assert!(matches!(
        server_verify(&mut server, t0, &req, "pw"),
        Verdict::Authorized { .. }
    ));
    // The same credentials over an altered body fail.
    let altered = body.replace("192.0.2.10", "203.0.113.9");
    let req = wire(register(2, &altered), &www(values));
    assert_eq!(
        server_verify(&mut server, t0, &req, "pw"),
        Verdict::BadResponse
    );

    // Pre-emptive requests keep auth-int and hash their own body.
    let pre = client.authorize("REGISTER", URI, altered.as_bytes(), "c2");
    let req = wire(register(3, &altered), &pre);
    assert!(matches!(
        server_verify(&mut server, t0, &req, "pw"),
        Verdict::Authorized { .. }
    ));
}

#[test]
fn auth_int_with_an_empty_body() {
    let t0 = Instant::now();
    let mut server = server_with(vec![Algorithm::Md5], vec![Qop::AuthInt], t0);
    let mut client = DigestClient::new();
    let (kind, ch) = challenges_of(&challenge_401(&mut server, &register(1, ""), t0, false));
    let values = client
        .respond(kind, &ch, &alice("pw"), "REGISTER", URI, b"", "c1")
        .unwrap();
    let req = wire(register(2, ""), &www(values));
    assert!(matches!(
        server_verify(&mut server, t0, &req, "pw"),
        Verdict::Authorized { .. }
    ));
}

#[test]
fn without_qop_the_nonce_is_accepted_while_fresh() {
    // RFC 2069 compatibility (RFC 3261 §22.4): no nc, no replay check.
    let t0 = Instant::now();
    let mut server = server_with(vec![Algorithm::Md5], vec![], t0);
    let mut client = DigestClient::new();
    let resp = challenge_401(&mut server, &register(1, ""), t0, false);
    assert!(
        !resp
            .headers
            .get(&HeaderName::WwwAuthenticate)
            .unwrap()
            .windows(3)
            .any(|w| w == b"qop")
    );
    let (kind, ch) = challenges_of(&resp);
    let values = client
        .respond(kind, &ch, &alice("pw"), "REGISTER", URI, b"", "c1")
        .unwrap();
    let a = Authorization::parse(values[0].as_bytes()).unwrap();
    assert_eq!((a.qop, a.nc, a.cnonce.as_deref()), (None, None, None));
    let req = wire(register(2, ""), &www(values));
    for _ in 0..2 {
        assert!(matches!(
            server_verify(&mut server, t0 + Duration::from_secs(10), &req, "pw"),
            Verdict::Authorized { .. }
        ));
    }
    assert_eq!(server.tracked_nonces(), 0);
    assert_eq!(
        server_verify(&mut server, t0 + Duration::from_secs(301), &req, "pw"),
        Verdict::Stale
    );
    // Pre-emptive reuse sends the same nonce, still without a count.
    let pre = client.authorize("REGISTER", URI, b"", "c2");
    let a = Authorization::parse(pre[0].1.as_bytes()).unwrap();
    assert_eq!((a.qop, a.nc), (None, None));
}

#[test]
fn md5_sess_without_qop_carries_a_cnonce() {
    let t0 = Instant::now();
    let mut server = server_with(vec![Algorithm::Md5Sess], vec![], t0);
    let mut client = DigestClient::new();
    let (kind, ch) = challenges_of(&challenge_401(&mut server, &register(1, ""), t0, false));
    let values = client
        .respond(kind, &ch, &alice("pw"), "REGISTER", URI, b"", "c1")
        .unwrap();
    let a = Authorization::parse(values[0].as_bytes()).unwrap();
    assert_eq!((a.qop, a.cnonce.as_deref()), (None, Some("c1")));
    let req = wire(register(2, ""), &www(values));
    assert!(matches!(
        server_verify(&mut server, t0, &req, "pw"),
        Verdict::Authorized { .. }
    ));
}

#[test]
fn sess_key_of_the_first_cnonce_is_accepted_with_a_new_cnonce() {
    // A client that keeps the -sess key H(H(u:r:p):nonce:cnonce1) but sends cnonce2
    // (RFC 7616 §3.4.2's reading) is accepted too.
    let t0 = Instant::now();
    let mut server = server_with(vec![Algorithm::Sha256Sess], vec![Qop::Auth], t0);
    let ch = server.challenges(t0, false).remove(0);
    let pw = |_: &str| Some("pw".to_string());
    let make = |nc: u32, cnonce: &str, key_cnonce: &str| {
        let input = sip_auth::ResponseInput {
            algorithm: Algorithm::Sha256Sess,
            username: "alice",
            realm: REALM,
            password: "pw",
            method: "REGISTER",
            uri: URI,
            nonce: &ch.nonce,
            cnonce: Some(cnonce),
            nc: Some(nc),
            qop: Some(Qop::Auth),
            body: b"",
        };
        let ha1 = sip_auth::ha1(&sip_auth::ResponseInput {
            cnonce: Some(key_cnonce),
            ..input
        });
        // response with a given HA1: recompute by hand.
        let ha2 = Algorithm::Sha256Sess.hash_hex(format!("REGISTER:{URI}").as_bytes());
        let response = Algorithm::Sha256Sess
            .hash_hex(format!("{ha1}:{}:{:08x}:{cnonce}:auth:{ha2}", ch.nonce, nc).as_bytes());
        Authorization {
            username: "alice".into(),
            realm: REALM.into(),
            nonce: ch.nonce.clone(),
            uri: URI.into(),
            response,
            algorithm: Algorithm::Sha256Sess,
            cnonce: Some(cnonce.into()),
            opaque: None,
            qop: Some(Qop::Auth),
            nc: Some(nc),
            userhash: false,
        }
        .to_header_value()
    };
    let first = make(1, "one", "one");
    assert!(matches!(
        server.verify(t0, "REGISTER", first.as_bytes(), b"", &pw),
        Verdict::Authorized { .. }
    ));
    let second = make(2, "two", "one");
    assert!(matches!(
        server.verify(t0, "REGISTER", second.as_bytes(), b"", &pw),
        Verdict::Authorized { .. }
    ));
    let third = make(3, "three", "three");
    assert!(matches!(
        server.verify(t0, "REGISTER", third.as_bytes(), b"", &pw),
        Verdict::Authorized { .. }
    ));
    let wrong = make(4, "four", "other");
    assert_eq!(
        server.verify(t0, "REGISTER", wrong.as_bytes(), b"", &pw),
        Verdict::BadResponse
    );
}

#[test]
fn verdicts_for_unknown_users_realms_and_unoffered_parameters() {
    let t0 = Instant::now();
    let mut server = server_with(vec![Algorithm::Sha256], vec![Qop::Auth], t0);
    let ch = server.challenges(t0, false);
    let mut client = DigestClient::new();
    let bob = |_: &str| Some(Credentials::new("bob", "pw"));
    let values = client
        .respond(ChallengeKind::Www, &ch, &bob, "REGISTER", URI, b"", "c")
        .unwrap();
    let req = wire(register(2, ""), &www(values.clone()));
    assert_eq!(
        server_verify(&mut server, t0, &req, "pw"),
        Verdict::UnknownUser
    );

    let mut a = Authorization::parse(values[0].as_bytes()).unwrap();
    a.realm = "elsewhere".into();
    let pw = |_: &str| Some("pw".to_string());
    assert_eq!(
        server.verify(t0, "REGISTER", a.to_header_value().as_bytes(), b"", &pw),
        Verdict::WrongRealm
    );
    a.realm = REALM.into();
    a.algorithm = Algorithm::Md5;
    assert!(matches!(
        server.verify(t0, "REGISTER", a.to_header_value().as_bytes(), b"", &pw),
        Verdict::Malformed(_)
    ));
    a.algorithm = Algorithm::Sha256;
    a.qop = Some(Qop::AuthInt);
    assert!(matches!(
        server.verify(t0, "REGISTER", a.to_header_value().as_bytes(), b"", &pw),
        Verdict::Malformed(_)
    ));
    a.qop = Some(Qop::Auth);
    a.nc = None;
    assert!(matches!(
        server.verify(t0, "REGISTER", a.to_header_value().as_bytes(), b"", &pw),
        Verdict::Malformed(_)
    ));
    a.nc = Some(1);
    a.userhash = true;
    assert!(matches!(
        server.verify(t0, "REGISTER", a.to_header_value().as_bytes(), b"", &pw),
        Verdict::Malformed(_)
    ));
    for garbage in [
        &b""[..],
        b"Basic YWxhZGRpbjpvcGVuc2VzYW1l",
        b"Digest \"",
        b"\xff\xfe",
    ] {
        assert!(matches!(
            server.verify(t0, "REGISTER", garbage, b"", &pw),
            Verdict::Malformed(_)
        ));
    }
}

#[test]
fn upper_case_response_hex_is_accepted() {
    let t0 = Instant::now();
    let mut server = server_with(vec![Algorithm::Md5], vec![Qop::Auth], t0);
    let ch = server.challenges(t0, false);
    let mut client = DigestClient::new();
    let values = client
        .respond(
            ChallengeKind::Www,
            &ch,
            &alice("pw"),
            "REGISTER",
            URI,
            b"",
            "c",
        )
        .unwrap();
    let mut a = Authorization::parse(values[0].as_bytes()).unwrap();
    a.response = a.response.to_ascii_uppercase();
    let pw = |_: &str| Some("pw".to_string());
    assert!(matches!(
        server.verify(t0, "REGISTER", a.to_header_value().as_bytes(), b"", &pw),
        Verdict::Authorized { .. }
    ));
}

#[test]
fn method_is_part_of_the_response() {
    let t0 = Instant::now();
    let mut server = server_with(vec![Algorithm::Sha256], vec![Qop::Auth], t0);
    let ch = server.challenges(t0, false);
    let mut client = DigestClient::new();
    let values = client
        .respond(
            ChallengeKind::Www,
            &ch,
            &alice("pw"),
            "REGISTER",
            URI,
            b"",
            "c",
        )
        .unwrap();
    let pw = |_: &str| Some("pw".to_string());
    assert_eq!(
        server.verify(t0, "INVITE", values[0].as_bytes(), b"", &pw),
        Verdict::BadResponse
    );
}

#[test]
fn replay_table_is_bounded_and_evicted_fresh_nonces_go_stale() {
    let t0 = Instant::now();
    let mut server = server_with(vec![Algorithm::Md5], vec![Qop::Auth], t0);
    server.set_max_nonces(3);
    let pw = |_: &str| Some("pw".to_string());
    let mut answered = Vec::new();
    for i in 0..5 {
        let ch = server.challenges(t0, false);
        let mut client = DigestClient::new();
        let v = client
            .respond(
                ChallengeKind::Www,
                &ch,
                &alice("pw"),
                "REGISTER",
                URI,
                b"",
                &format!("c{i}"),
            )
            .unwrap()
            .remove(0);
        assert!(matches!(
            server.verify(t0, "REGISTER", v.as_bytes(), b"", &pw),
            Verdict::Authorized { .. }
        ));
        answered.push(client);
    }
    assert_eq!(server.tracked_nonces(), 3);
    // The two oldest lost their replay state: their next request is Stale (not accepted,
    // since a replay could not be told), the newest ones go on.
    for (i, client) in answered.iter_mut().enumerate() {
        let (_, v) = client.authorize("REGISTER", URI, b"", "x").remove(0);
        let verdict = server.verify(t0, "REGISTER", v.as_bytes(), b"", &pw);
        if i < 2 {
            assert_eq!(verdict, Verdict::Stale, "nonce {i}");
        } else {
            assert!(matches!(verdict, Verdict::Authorized { .. }), "nonce {i}");
        }
    }
    // purge drops expired state only.
    server.purge(t0 + Duration::from_secs(300));
    assert_eq!(server.tracked_nonces(), 3);
    server.purge(t0 + Duration::from_secs(301));
    assert_eq!(server.tracked_nonces(), 0);
}

#[test]
fn proxy_challenges_from_two_realms_get_one_answer_each() {
    let t0 = Instant::now();
    let mut p1 = DigestServer::new(ServerConfig::new("proxy1.example", [1; 32]), t0);
    let mut p2 = DigestServer::new(ServerConfig::new("proxy2.example", [2; 32]), t0);
    let req = register(1, "");
    let mut resp = Response::from_request(&req, 407, Some("p"));
    for v in p1
        .challenge(t0, false)
        .into_iter()
        .chain(p2.challenge(t0, false))
    {
        resp.headers
            .push(HeaderName::ProxyAuthenticate, v.into_bytes());
    }
    let resp = match Message::parse(resp.to_bytes()).unwrap() {
        Message::Response(r) => r,
        Message::Request(_) => panic!(),
    };
    let (kind, ch) = challenges_of(&resp);
    assert_eq!(kind, ChallengeKind::Proxy);
    assert_eq!(ch.len(), 4);
    let lookup = |realm: &str| Some(Credentials::new("alice", format!("pw-{realm}")));
    let mut client = DigestClient::new();
    let values = client
        .respond(
            kind,
            &ch,
            &lookup,
            "INVITE",
            "sip:bob@example.com",
            b"",
            "c",
        )
        .unwrap();
    assert_eq!(values.len(), 2);
    let mut req = register(2, "");
    for v in &values {
        req.headers
            .push(HeaderName::ProxyAuthorization, v.clone().into_bytes());
    }
    let req = match Message::parse(req.to_bytes()).unwrap() {
        Message::Request(r) => r,
        Message::Response(_) => panic!(),
    };
    let got: Vec<Bytes> = req
        .headers
        .get_all(&HeaderName::ProxyAuthorization)
        .cloned()
        .collect();
    assert_eq!(got.len(), 2);
    for (server, value) in [(&mut p1, &got[0]), (&mut p2, &got[1])] {
        let realm = server.config().realm.clone();
        let verdict = server.verify(t0, "INVITE", value, b"", &|user: &str| {
            (user == "alice").then(|| format!("pw-{realm}"))
        });
        assert_eq!(
            verdict,
            Verdict::Authorized {
                username: "alice".into()
            }
        );
    }
    // Each proxy's value is for its own realm only.
    assert_eq!(
        p1.verify(t0, "INVITE", &got[1], b"", &|_| Some(
            "pw-proxy2.example".into()
        )),
        Verdict::WrongRealm
    );
    let pre = client.authorize("INVITE", "sip:bob@example.com", b"", "d");
    assert_eq!(pre.len(), 2);
    assert!(pre.iter().all(|(k, _)| *k == ChallengeKind::Proxy));
}

#[test]
fn missing_credentials_and_empty_challenges() {
    let t0 = Instant::now();
    let mut server = server_with(vec![Algorithm::Sha256], vec![Qop::Auth], t0);
    let ch = server.challenges(t0, false);
    let mut client = DigestClient::new();
    assert_eq!(
        client.respond(
            ChallengeKind::Www,
            &ch,
            &|_| None,
            "REGISTER",
            URI,
            b"",
            "c"
        ),
        Err(AuthError::NoCredentials {
            realm: REALM.into()
        })
    );
    // Credentials bound to another realm do not answer this one.
    let other = |_: &str| Some(Credentials::new("alice", "pw").for_realm("other.example"));
    assert_eq!(
        client.respond(ChallengeKind::Www, &ch, &other, "REGISTER", URI, b"", "c"),
        Err(AuthError::NoCredentials {
            realm: REALM.into()
        })
    );
    assert_eq!(
        client.respond(
            ChallengeKind::Www,
            &[],
            &alice("pw"),
            "REGISTER",
            URI,
            b"",
            "c"
        ),
        Err(AuthError::NoChallenge)
    );
    assert!(client.authorize("REGISTER", URI, b"", "c").is_empty());
    assert_eq!(client.realms().count(), 0);
}

#[test]
fn userhash_challenge_is_answered_with_the_hashed_username() {
    let c = Challenge::parse(
        b"Digest realm=\"api@example.org\", nonce=\"n\", algorithm=SHA-512-256, qop=\"auth\", userhash=true",
    )
    .unwrap();
    let mut client = DigestClient::new();
    let values = client
        .respond(
            ChallengeKind::Www,
            &[c],
            &|_| Some(Credentials::new("J\u{e4}s\u{f8}n Doe", "Secret, or not?")),
            "GET",
            "/doe.json",
            b"",
            "cn",
        )
        .unwrap();
    let a = Authorization::parse(values[0].as_bytes()).unwrap();
    assert!(a.userhash);
    // RFC 7616 §3.4.4: H(username:realm), here SHA-512/256.
    assert_eq!(
        a.username,
        sip_auth::userhash(
            Algorithm::Sha512_256,
            "J\u{e4}s\u{f8}n Doe",
            "api@example.org"
        )
    );
    assert_eq!(a.username.len(), 64);
    // The response is keyed on the real username, not the hash.
    let expected = sip_auth::response(&sip_auth::ResponseInput {
        algorithm: Algorithm::Sha512_256,
        username: "J\u{e4}s\u{f8}n Doe",
        realm: "api@example.org",
        password: "Secret, or not?",
        method: "GET",
        uri: "/doe.json",
        nonce: "n",
        cnonce: Some("cn"),
        nc: Some(1),
        qop: Some(Qop::Auth),
        body: b"",
    });
    assert_eq!(a.response, expected);
}

#[test]
fn debug_output_hides_passwords() {
    let creds = Credentials::new("alice", "hunter2");
    assert!(!format!("{creds:?}").contains("hunter2"));
    let mut client = DigestClient::new();
    let t0 = Instant::now();
    let mut server = server_with(vec![Algorithm::Md5], vec![Qop::Auth], t0);
    let ch = server.challenges(t0, false);
    client
        .respond(
            ChallengeKind::Www,
            &ch,
            &|_| Some(creds.clone()),
            "REGISTER",
            URI,
            b"",
            "c",
        )
        .unwrap();
    let text = format!("{client:?}");
    assert!(
        text.contains("alice") && !text.contains("hunter2"),
        "{text}"
    );
}
