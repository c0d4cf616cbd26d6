//! RFC 4475 torture messages: every file of fixtures/rfc4475 with its expected outcome at
//! the message layer (parse + validate).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use sip_message::{
    Bytes, Contacts, HeaderName, Message, Method, ParseError, Transport, Uri, ViaTransport,
    multipart,
};
use std::collections::BTreeSet;
use std::path::PathBuf;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    /// Parses and validates.
    Valid,
    /// Parses and validates; a response.
    ValidResponse,
    /// Message::parse fails, or validate() fails with this status.
    Invalid(u16),
    /// A malformed response: parse or validate fails.
    BadResponse,
}
use Expect::*;

const TABLE: &[(&str, Expect)] = &[
    // §3.1.1 valid
    ("wsinv", Valid),
    ("intmeth", Valid),
    ("esc01", Valid),
    ("escnull", Valid),
    ("esc02", Valid),
    ("lwsdisp", Valid),
    ("longreq", Valid),
    ("dblreq", Valid),
    ("semiuri", Valid),
    ("transports", Valid),
    ("mpart01", Valid),
    ("unreason", ValidResponse),
    ("noreason", ValidResponse),
    // README.md calls `test` "a plain valid INVITE", but the file is not one: its
    // Request-Line has no SIP-Version, "Foobar roobar" is a header line without a colon,
    // and Via and CSeq are missing. RFC 3261 §7.1/§7.3 make it unparseable; we follow the
    // RFC, not the README.
    ("test", Invalid(400)),
    // §3.1.2 invalid
    ("badinv01", Invalid(400)),
    ("clerr", Invalid(400)),
    ("ncl", Invalid(400)),
    ("scalar02", Invalid(400)),
    ("scalarlg", BadResponse),
    ("quotbal", Invalid(400)),
    ("ltgtruri", Invalid(400)),
    ("lwsruri", Invalid(400)),
    ("lwsstart", Invalid(400)),
    ("trws", Invalid(400)),
    ("escruri", Invalid(400)),
    ("baddate", Invalid(400)),
    ("regbadct", Invalid(400)),
    ("badaspec", Invalid(400)),
    ("baddn", Invalid(400)),
    ("badvers", Invalid(505)),
    ("mismatch01", Invalid(400)),
    ("mismatch02", Invalid(400)),
    ("bigcode", BadResponse),
    // §3.2 transaction semantics
    ("badbranch", Valid),
    // §3.3 application semantics
    ("insuf", Invalid(400)),
    ("unkscm", Valid),
    ("novelsc", Valid),
    ("unksm2", Valid),
    ("bext01", Valid),
    ("invut", Valid),
    ("regaut01", Valid),
    ("multi01", Invalid(400)),
    ("mcl01", Invalid(400)),
    ("bcast", ValidResponse),
    ("zeromf", Valid),
    ("cparam01", Valid),
    ("cparam02", Valid),
    ("regescrt", Valid),
    ("sdp01", Valid),
    // §3.4 backward compatibility
    ("inv2543", Valid),
];

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/rfc4475")
}

fn load(name: &str) -> Bytes {
    let p = dir().join(format!("{name}.dat"));
    Bytes::from(std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display())))
}

fn parse(name: &str) -> Message {
    Message::parse(load(name)).unwrap_or_else(|e| panic!("{name}: {e:?}"))
}

#[test]
fn table_lists_every_fixture() {
    let on_disk: BTreeSet<String> = std::fs::read_dir(dir())
        .unwrap()
        .filter_map(|e| {
            let n = e.unwrap().file_name().into_string().unwrap();
            n.strip_suffix(".dat").map(str::to_owned)
        })
        .collect();
    let listed: BTreeSet<String> = TABLE.iter().map(|(n, _)| (*n).to_owned()).collect();
    assert_eq!(TABLE.len(), 50, "the table must list all 50 messages");
    assert_eq!(listed.len(), TABLE.len(), "duplicate names in the table");
    assert_eq!(on_disk, listed, "fixtures on disk and table differ");
}

#[test]
fn every_fixture_has_its_outcome() {
    let mut failures = Vec::new();
    for &(name, expect) in TABLE {
        let parsed = Message::parse(load(name));
        let outcome: Result<(), String> = match (expect, &parsed) {
            (Valid, Ok(Message::Request(r))) => r.validate().map_err(|e| format!("{e:?}")),
            (ValidResponse, Ok(Message::Response(r))) => r.validate().map_err(|e| format!("{e:?}")),
            (Valid | ValidResponse, other) => Err(format!("{other:?}")),
            (Invalid(_), Err(_)) => Ok(()),
            (Invalid(status), Ok(m)) => match m.validate() {
                Ok(()) => Err("validated".into()),
                Err(e) if e.status_code() == status => Ok(()),
                Err(e) => Err(format!("status {} for {e:?}", e.status_code())),
            },
            (BadResponse, Err(_)) => Ok(()),
            (BadResponse, Ok(Message::Response(r))) => match r.validate() {
                Ok(()) => Err("validated".into()),
                Err(_) => Ok(()),
            },
            (BadResponse, Ok(m)) => Err(format!("not a response: {m:?}")),
        };
        if let Err(e) = outcome {
            failures.push(format!("{name} (expected {expect:?}): {e}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn invalid_reasons_name_the_problem() {
    for name in [
        "badinv01",
        "ncl",
        "scalar02",
        "quotbal",
        "baddate",
        "regbadct",
        "badaspec",
        "baddn",
        "mismatch01",
        "mismatch02",
        "insuf",
        "multi01",
        "mcl01",
        "lwsruri",
        "escruri",
        "ltgtruri",
        "lwsstart",
        "badvers",
    ] {
        let e = match Message::parse(load(name)) {
            Err(e) => e,
            Ok(m) => m.validate().unwrap_err(),
        };
        let reason = e.reason_phrase();
        assert!(reason.is_ascii() && !reason.contains('\r') && !reason.contains('\n'));
        assert!(!reason.is_empty(), "{name}");
    }
    let e = parse("mismatch01").validate().unwrap_err();
    assert_eq!(e, ParseError::CSeqMethodMismatch);
    assert_eq!(e.reason_phrase(), "CSeq Method Mismatch");
    let e = parse("badvers").validate().unwrap_err();
    assert_eq!(e.status_code(), 505);
    let e = parse("mcl01").validate().unwrap_err();
    assert_eq!(e.reason_phrase(), "Multiple Values: Content-Length");
    let e = parse("scalar02").validate().unwrap_err();
    assert_eq!(e.reason_phrase(), "Bad Header: CSeq");
    let e = parse("insuf").validate().unwrap_err();
    assert!(e.reason_phrase().starts_with("Missing Header: "), "{e:?}");
}

#[test]
fn intmeth_method_is_an_extension() {
    let Message::Request(r) = parse("intmeth") else {
        panic!()
    };
    assert!(
        matches!(&r.method, Method::Extension(t) if t.as_str() == "!interesting-Method0123456789_*+`.%indeed'~")
    );
    assert_eq!(r.headers.cseq().unwrap().method, r.method);
}

#[test]
fn esc01_user_unescapes() {
    let Message::Request(r) = parse("esc01") else {
        panic!()
    };
    let Uri::Sip(u) = r.uri().unwrap() else {
        panic!()
    };
    assert_eq!(u.user.as_deref(), Some(&b"sips%3Auser%40example.com"[..]));
    assert_eq!(
        u.user_unescaped().unwrap().as_ref(),
        b"sips:user@example.com"
    );
    let Uri::Sip(from) = r.headers.from().unwrap().uri else {
        panic!()
    };
    assert_eq!(from.user_unescaped().unwrap().as_ref(), b"I have spaces");
    let Uri::Sip(to) = r.headers.to().unwrap().uri else {
        panic!()
    };
    assert_eq!(to.user_unescaped().unwrap().as_ref(), b"user");
    let Contacts::List(c) = r.headers.contacts().unwrap() else {
        panic!()
    };
    let Uri::Sip(cu) = &c[0].addr.uri else {
        panic!()
    };
    assert_eq!(cu.user_unescaped().unwrap().as_ref(), b"caller");
}

#[test]
fn esc02_escaped_method_and_params() {
    let Message::Request(r) = parse("esc02") else {
        panic!()
    };
    assert_eq!(r.method.as_str(), "RE%47IST%45R");
    let to = r.headers.to().unwrap();
    assert_eq!(to.display_name.as_deref(), Some("%Z%45"));
    // "C%6Fntact" is not Contact: header names are not unescaped.
    assert_eq!(r.headers.count(&HeaderName::Contact), 2);
    assert_eq!(
        r.headers.top_via().unwrap().branch(),
        Some(&b"z9hG4bK209%fzsnel234"[..])
    );
}

#[test]
fn escnull_keeps_the_nul() {
    let Message::Request(r) = parse("escnull") else {
        panic!()
    };
    let Uri::Sip(u) = r.headers.to().unwrap().uri else {
        panic!()
    };
    assert_eq!(u.user_unescaped().unwrap().as_ref(), b"null-\0-null");
}

#[test]
fn longreq_lists_split() {
    let Message::Request(r) = parse("longreq") else {
        panic!()
    };
    let vias: Vec<_> = r.headers.vias().collect::<Result<_, _>>().unwrap();
    assert_eq!(vias.len(), 34, "Via count");
    assert_eq!(vias[33].received(), Some("192.0.2.5".parse().unwrap()));
    let to = r.headers.to().unwrap();
    assert!(
        to.display_name
            .unwrap()
            .starts_with("I have a user name of extreme")
    );
}

#[test]
fn transports_via_transports() {
    let Message::Request(r) = parse("transports") else {
        panic!()
    };
    let t: Vec<_> = r.headers.vias().map(|v| v.unwrap().transport).collect();
    assert_eq!(t.len(), 5, "{t:?}");
    assert_eq!(t[0], ViaTransport::Known(Transport::Udp));
    assert_eq!(t[1], ViaTransport::Known(Transport::Sctp));
    assert_eq!(t[2], ViaTransport::Known(Transport::Tls));
    assert!(matches!(&t[3], ViaTransport::Other(x) if x.as_str() == "UNKNOWN"));
    assert_eq!(t[4], ViaTransport::Known(Transport::Tcp));
}

#[test]
fn mpart01_body_has_parts() {
    let m = parse("mpart01");
    let ct = m.headers().content_type().unwrap().unwrap();
    assert!(ct.is("multipart", "mixed"));
    let parts = multipart::parse(&ct, m.body()).unwrap();
    assert_eq!(parts.len(), 2);
    assert!(
        parts[0]
            .content_type()
            .unwrap()
            .unwrap()
            .is("text", "plain")
    );
    assert_eq!(&parts[0].body[..], b"Hello");
    assert!(
        parts[1]
            .content_type()
            .unwrap()
            .unwrap()
            .is("application", "octet-stream")
    );
    assert!(parts[1].body.len() > 100);
}

#[test]
fn clerr_content_length_exceeds_datagram() {
    match Message::parse(load("clerr")) {
        Err(ParseError::ContentLengthMismatch {
            declared,
            available,
        }) => {
            assert_eq!(declared, 9999);
            assert!(available < 9999);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn unknown_schemes() {
    let Message::Request(r) = parse("unkscm") else {
        panic!()
    };
    assert!(
        matches!(r.uri().unwrap(), Uri::Other { scheme, .. } if &scheme[..] == b"nobodyKnowsThisScheme")
    );
    let Message::Request(r) = parse("novelsc") else {
        panic!()
    };
    assert!(matches!(r.uri().unwrap(), Uri::Other { .. }));
    let Message::Request(r) = parse("unksm2") else {
        panic!()
    };
    assert!(matches!(r.headers.to().unwrap().uri, Uri::Other { .. }));
    assert!(matches!(r.headers.from().unwrap().uri, Uri::Other { .. }));
}

#[test]
fn wsinv_folding_and_compact_forms() {
    let Message::Request(r) = parse("wsinv") else {
        panic!()
    };
    assert_eq!(r.headers.max_forwards().unwrap(), Some(68));
    assert_eq!(r.headers.cseq().unwrap().seq, 9);
    let vias: Vec<_> = r.headers.vias().collect::<Result<_, _>>().unwrap();
    assert_eq!(vias.len(), 3);
    assert_eq!(vias[0].transport, ViaTransport::Known(Transport::Udp));
    assert_eq!(
        vias[0].host,
        sip_message::Host::Ipv4("192.0.2.2".parse().unwrap())
    );
    assert_eq!(vias[1].transport, ViaTransport::Known(Transport::Tcp));
    assert_eq!(vias[1].branch(), Some(&b"z9hG4bK9ikj8"[..]));
    assert_eq!(vias[2].branch(), Some(&b"z9hG4bK30239"[..]));
    let Contacts::List(c) = r.headers.contacts().unwrap() else {
        panic!()
    };
    assert_eq!(c.len(), 1);
    assert_eq!(c[0].q(), Some(0.33));
    assert_eq!(r.headers.from().unwrap().tag(), Some(&b"98asjd8"[..]));
    assert_eq!(r.headers.to().unwrap().tag(), Some(&b"1918181833n"[..]));
    assert!(
        r.headers
            .get(&HeaderName::Other(Bytes::from_static(b"NewFangledHeader")))
            .is_some()
    );
}

#[test]
fn responses_parse_as_responses() {
    let Message::Response(r) = parse("unreason") else {
        panic!()
    };
    assert_eq!(r.status, 200);
    let Message::Response(r) = parse("noreason") else {
        panic!()
    };
    assert_eq!(r.status, 100);
    assert!(r.reason.is_empty());
}

#[test]
fn from_request_answers_every_request() {
    for &(name, _) in TABLE {
        let Ok(Message::Request(req)) = Message::parse(load(name)) else {
            continue;
        };
        let resp = sip_message::Response::from_request(&req, 400, Some("abc"));
        assert_eq!(
            resp.headers.count(&HeaderName::Via),
            req.headers.count(&HeaderName::Via)
        );
        let bytes = resp.to_bytes();
        assert!(Message::parse(bytes).is_ok(), "{name}");
    }
}
