//! The worked examples of RFC 7616 §3.9.1 and RFC 2617 §3.5, and the RFC 8760 §2.1
//! algorithm spellings.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use sip_auth::{
    Algorithm, Authorization, Challenge, ChallengeKind, Credentials, DigestClient, Qop,
    ResponseInput, response,
};

const NONCE: &str = "7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v";
const CNONCE: &str = "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ";
const OPAQUE: &str = "FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS";
const MD5_RESPONSE: &str = "8ca523f5e9506fed4657c9700eebdbec";
const SHA256_RESPONSE: &str = "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1";

fn rfc7616_input(algorithm: Algorithm) -> ResponseInput<'static> {
    ResponseInput {
        algorithm,
        username: "Mufasa",
        realm: "http-auth@example.org",
        // Errata 4495: lower-case "of" in RFC 7616 (RFC 2617 had "Of").
        password: "Circle of Life",
        method: "GET",
        uri: "/dir/index.html",
        nonce: NONCE,
        cnonce: Some(CNONCE),
        nc: Some(1),
        qop: Some(Qop::Auth),
        body: b"",
    }
}

#[test]
fn rfc7616_3_9_1_response_values() {
    assert_eq!(response(&rfc7616_input(Algorithm::Md5)), MD5_RESPONSE);
    assert_eq!(response(&rfc7616_input(Algorithm::Sha256)), SHA256_RESPONSE);
}

/// The RFC's challenges, as printed (folded lines, `qop="auth, auth-int"`), answered by the
/// client: the SHA-256 one comes first, so it is the one answered (RFC 8760 §2.4).
#[test]
fn rfc7616_3_9_1_client_answers_the_printed_challenges() {
    let sha256 = b"Digest\r\n       realm=\"http-auth@example.org\",\r\n       qop=\"auth, auth-int\",\r\n       algorithm=SHA-256,\r\n       nonce=\"7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v\",\r\n       opaque=\"FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS\"";
    let md5 = b"Digest\r\n       realm=\"http-auth@example.org\",\r\n       qop=\"auth, auth-int\",\r\n       algorithm=MD5,\r\n       nonce=\"7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v\",\r\n       opaque=\"FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS\"";
    let lookup = |realm: &str| {
        Some(Credentials::new("Mufasa", "Circle of Life").for_realm(realm.to_string()))
    };
    for (values, expected) in [
        (
            vec![&sha256[..], &md5[..]],
            (Algorithm::Sha256, SHA256_RESPONSE),
        ),
        (vec![&md5[..], &sha256[..]], (Algorithm::Md5, MD5_RESPONSE)),
    ] {
        let challenges = Challenge::parse_supported(values);
        assert_eq!(challenges.len(), 2);
        assert_eq!(challenges[0].qop, vec![Qop::Auth, Qop::AuthInt]);
        assert_eq!(challenges[0].opaque.as_deref(), Some(OPAQUE));
        let mut client = DigestClient::new();
        let out = client
            .respond(
                ChallengeKind::Www,
                &challenges,
                &lookup,
                "GET",
                "/dir/index.html",
                b"",
                CNONCE,
            )
            .unwrap();
        assert_eq!(out.len(), 1, "one realm, one answer");
        let a = Authorization::parse(out[0].as_bytes()).unwrap();
        assert_eq!(a.algorithm, expected.0);
        assert_eq!(a.response, expected.1);
        assert_eq!(a.username, "Mufasa");
        assert_eq!(a.nc, Some(1));
        assert!(out[0].contains(", nc=00000001"));
        assert_eq!(a.qop, Some(Qop::Auth));
        assert_eq!(a.cnonce.as_deref(), Some(CNONCE));
        assert_eq!(a.opaque.as_deref(), Some(OPAQUE));
    }
}

/// The RFC's Authorization header as printed parses into the same values.
#[test]
fn rfc7616_3_9_1_printed_authorization_parses() {
    let printed = b"Digest username=\"Mufasa\",\r\n       realm=\"http-auth@example.org\",\r\n       uri=\"/dir/index.html\",\r\n       algorithm=MD5,\r\n       nonce=\"7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v\",\r\n       nc=00000001,\r\n       cnonce=\"f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ\",\r\n       qop=auth,\r\n       response=\"8ca523f5e9506fed4657c9700eebdbec\",\r\n       opaque=\"FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS\"";
    let a = Authorization::parse(printed).unwrap();
    assert_eq!(
        a,
        Authorization {
            username: "Mufasa".into(),
            realm: "http-auth@example.org".into(),
            nonce: NONCE.into(),
            uri: "/dir/index.html".into(),
            response: MD5_RESPONSE.into(),
            algorithm: Algorithm::Md5,
            cnonce: Some(CNONCE.into()),
            opaque: Some(OPAQUE.into()),
            qop: Some(Qop::Auth),
            nc: Some(1),
            userhash: false,
        }
    );
    // Printing and parsing again gives the same value.
    assert_eq!(
        Authorization::parse(a.to_header_value().as_bytes()).unwrap(),
        a
    );
}

#[test]
fn rfc2617_3_5_example() {
    let input = ResponseInput {
        algorithm: Algorithm::Md5,
        username: "Mufasa",
        realm: "testrealm@host.com",
        password: "Circle Of Life",
        method: "GET",
        uri: "/dir/index.html",
        nonce: "dcd98b7102dd2f0e8b11d0f600bfb0c093",
        cnonce: Some("0a4f113b"),
        nc: Some(1),
        qop: Some(Qop::Auth),
        body: b"",
    };
    assert_eq!(response(&input), "6629fae49393a05397450978507c4ef1");

    // The printed challenge (no algorithm: MD5) answered by the client gives the same.
    let challenge = Challenge::parse(
        b"Digest\r\n                 realm=\"testrealm@host.com\",\r\n                 qop=\"auth,auth-int\",\r\n                 nonce=\"dcd98b7102dd2f0e8b11d0f600bfb0c093\",\r\n                 opaque=\"5ccc069c403ebaf9f0171e9517f40e41\"",
    )
    .unwrap();
    assert_eq!(challenge.algorithm, Algorithm::Md5);
    let mut client = DigestClient::new();
    let out = client
        .respond(
            ChallengeKind::Www,
            &[challenge],
            &|_| Some(Credentials::new("Mufasa", "Circle Of Life")),
            "GET",
            "/dir/index.html",
            b"",
            "0a4f113b",
        )
        .unwrap();
    let a = Authorization::parse(out[0].as_bytes()).unwrap();
    assert_eq!(a.response, "6629fae49393a05397450978507c4ef1");
    assert_eq!(
        a.opaque.as_deref(),
        Some("5ccc069c403ebaf9f0171e9517f40e41")
    );
}

#[test]
fn rfc8760_spellings_round_trip_exactly() {
    let spellings = [
        "MD5",
        "MD5-sess",
        "SHA-256",
        "SHA-256-sess",
        "SHA-512-256",
        "SHA-512-256-sess",
    ];
    for spelling in spellings {
        let alg = Algorithm::parse(spelling.as_bytes()).unwrap();
        assert_eq!(alg.as_str(), spelling);
        // Case-insensitive on input, canonical on output.
        assert_eq!(
            Algorithm::parse(spelling.to_ascii_uppercase().as_bytes()),
            Some(alg)
        );
        let value = format!("Digest realm=\"r\", nonce=\"n\", algorithm={spelling}");
        let c = Challenge::parse(value.as_bytes()).unwrap();
        assert_eq!(c.algorithm, alg);
        assert!(
            c.to_header_value()
                .contains(&format!(", algorithm={spelling}"))
        );
        let lower = format!(
            "Digest realm=\"r\", nonce=\"n\", algorithm={}",
            spelling.to_ascii_lowercase()
        );
        let printed = Challenge::parse(lower.as_bytes())
            .unwrap()
            .to_header_value();
        assert!(
            printed.ends_with(&format!("algorithm={spelling}")),
            "{printed}"
        );
    }
    let all: Vec<&str> = Algorithm::ALL.iter().map(|a| a.as_str()).collect();
    let mut sorted = all.clone();
    sorted.sort_unstable();
    let mut expected = spellings.to_vec();
    expected.sort_unstable();
    assert_eq!(sorted, expected);
}
