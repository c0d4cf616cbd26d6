//! Values from the network never panic, and what we print parses back to itself.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use proptest::prelude::*;
use sip_auth::{Algorithm, Authorization, Challenge, DigestServer, Qop, ServerConfig, Verdict};
use std::time::Instant;

/// Bytes that look like digest parameters often enough to reach deep into the parser.
fn digestish() -> impl Strategy<Value = Vec<u8>> {
    let piece = prop_oneof![
        Just(b"Digest ".to_vec()),
        Just(b"digest".to_vec()),
        Just(b"realm".to_vec()),
        Just(b"nonce".to_vec()),
        Just(b"username*".to_vec()),
        Just(b"UTF-8''%C3%A4".to_vec()),
        Just(b"nc=".to_vec()),
        Just(b"qop".to_vec()),
        Just(b"algorithm=SHA-256-sess".to_vec()),
        Just(b"=".to_vec()),
        Just(b",".to_vec()),
        Just(b"\"".to_vec()),
        Just(b"\\".to_vec()),
        Just(b"\r\n ".to_vec()),
        Just(b"%".to_vec()),
        proptest::collection::vec(any::<u8>(), 0..8),
    ];
    proptest::collection::vec(piece, 0..24).prop_map(|v| v.concat())
}

fn text() -> impl Strategy<Value = String> {
    // Any chars but CR/LF (which a quoted-string cannot carry and printing drops).
    "[^\r\n]{0,24}"
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn parse_of_arbitrary_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
        let _ = Challenge::parse(&bytes);
        let _ = Authorization::parse(&bytes);
        let _ = Algorithm::parse(&bytes);
    }

    #[test]
    fn parse_of_digest_like_bytes_never_panics(bytes in digestish()) {
        let _ = Challenge::parse(&bytes);
        let _ = Authorization::parse(&bytes);
        let t0 = Instant::now();
        let mut server = DigestServer::new(ServerConfig::new("r", [3; 32]), t0);
        let verdict = server.verify(t0, "REGISTER", &bytes, &bytes, &|_| Some("pw".into()));
        // Random bytes never carry a nonce signed by this server.
        let accepted = matches!(
            verdict,
            Verdict::Authorized { .. } | Verdict::Stale | Verdict::Replay
        );
        prop_assert!(!accepted, "accepted {:?}", verdict);
    }

    #[test]
    fn challenge_prints_and_parses_back(
        realm in text(), nonce in text(), opaque in proptest::option::of(text()),
        domain in proptest::option::of(text()), stale: bool, userhash: bool,
        alg in 0usize..6, qop in proptest::sample::subsequence(vec![Qop::Auth, Qop::AuthInt], 0..=2),
    ) {
        let c = Challenge {
            realm, nonce, opaque, stale, algorithm: Algorithm::ALL[alg], qop, domain, userhash,
        };
        prop_assert_eq!(Challenge::parse(c.to_header_value().as_bytes()).unwrap(), c);
    }

    #[test]
    fn authorization_prints_and_parses_back(
        username in text(), realm in text(), nonce in text(), uri in text(), response in text(),
        alg in 0usize..6, cnonce in proptest::option::of(text()), opaque in proptest::option::of(text()),
        qop in proptest::option::of(prop_oneof![Just(Qop::Auth), Just(Qop::AuthInt)]),
        nc: Option<u32>, userhash: bool,
    ) {
        let a = Authorization {
            username, realm, nonce, uri, response, algorithm: Algorithm::ALL[alg],
            cnonce, opaque, qop, nc, userhash,
        };
        prop_assert_eq!(Authorization::parse(a.to_header_value().as_bytes()).unwrap(), a);
    }
}
