//! Property tests: no input panics the parser, validation, typed accessors or the framer,
//! and printing a parsed message gives back an equal message.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use proptest::prelude::*;
use sip_message::{
    Bytes, Contacts, Frame, HeaderName, Headers, Limits, Message, NameAddr, StreamFramer, Uri, Via,
    multipart,
};
use std::path::PathBuf;
use std::sync::OnceLock;

const VALID: &[&str] = &[
    "wsinv",
    "intmeth",
    "esc01",
    "escnull",
    "esc02",
    "lwsdisp",
    "longreq",
    "dblreq",
    "semiuri",
    "transports",
    "mpart01",
    "unreason",
    "noreason",
    "badbranch",
    "unkscm",
    "novelsc",
    "unksm2",
    "bext01",
    "invut",
    "regaut01",
    "bcast",
    "zeromf",
    "cparam01",
    "cparam02",
    "regescrt",
    "sdp01",
    "inv2543",
];

fn fixtures() -> &'static Vec<(String, Vec<u8>)> {
    static F: OnceLock<Vec<(String, Vec<u8>)>> = OnceLock::new();
    F.get_or_init(|| {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/rfc4475");
        let mut v: Vec<_> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "dat"))
            .map(|p| {
                let name = p.file_stem().unwrap().to_string_lossy().into_owned();
                (name, std::fs::read(&p).unwrap())
            })
            .collect();
        v.sort();
        v
    })
}

/// Calls every typed accessor and printer; none may panic.
fn exercise(m: &Message) {
    let _ = m.validate();
    let h = m.headers();
    let _ = h.top_via().map(|v| Via::parse(&v.to_bytes()));
    for v in h.vias().flatten() {
        let _ = (
            v.branch(),
            v.received(),
            v.rport(),
            v.maddr(),
            v.ttl(),
            v.has_magic_cookie(),
        );
    }
    for r in [h.from(), h.to()].into_iter().flatten() {
        let _ = NameAddr::parse(&r.to_bytes());
        let _ = r.tag();
        let _ = Uri::parse_bytes(&r.uri.to_bytes());
    }
    let _ = (
        h.call_id(),
        h.cseq(),
        h.max_forwards(),
        h.content_length(),
        h.expires(),
        h.date(),
    );
    if let Ok(Contacts::List(cs)) = h.contacts() {
        for c in cs {
            let _ = (c.expires(), c.q());
        }
    }
    let _ = (h.routes(), h.record_routes());
    for n in [
        HeaderName::Allow,
        HeaderName::Supported,
        HeaderName::Require,
    ] {
        let _ = h.tokens(&n).count();
    }
    if let Ok(Some(ct)) = h.content_type() {
        let _ = ct.to_bytes();
        if let Ok(parts) = multipart::parse(&ct, m.body()) {
            for p in parts {
                let _ = p.content_type();
            }
        }
    }
    if let Message::Request(r) = m {
        if let Ok(u) = r.uri() {
            let _ = u.equivalent(&u);
            let _ = u.to_string();
        }
        let _ = sip_message::Response::from_request(r, 400, Some("t")).to_bytes();
    }
    let mut hs = h.clone();
    hs.replace_first_value(&HeaderName::Via, "SIP/2.0/UDP x");
}

fn without_cl(h: &Headers) -> Headers {
    let mut h = h.clone();
    h.remove(&HeaderName::ContentLength);
    h
}

/// Printing then re-parsing gives an equal message (Content-Length aside, which the
/// printer always rewrites).
fn assert_round_trip(m: &Message) {
    let again = Message::parse(m.to_bytes()).expect("re-parse of printed message");
    assert_eq!(without_cl(again.headers()), without_cl(m.headers()));
    assert_eq!(again.body(), m.body());
    match (m, &again) {
        (Message::Request(a), Message::Request(b)) => {
            assert_eq!(
                (&a.method, &a.uri, &a.version),
                (&b.method, &b.uri, &b.version)
            );
        }
        (Message::Response(a), Message::Response(b)) => {
            assert_eq!(
                (a.status, &a.reason, &a.version),
                (b.status, &b.reason, &b.version)
            );
        }
        _ => panic!("kind changed"),
    }
}

fn frame_all(data: &[u8], chunks: &[usize]) {
    let lim = Limits {
        max_header_bytes: 2048,
        max_headers: 32,
        max_body_bytes: 4096,
    };
    let mut f = StreamFramer::new(lim);
    let mut pos = 0;
    let mut i = 0;
    while pos < data.len() {
        let n = chunks
            .get(i % chunks.len().max(1))
            .copied()
            .unwrap_or(1)
            .max(1);
        let end = (pos + n).min(data.len());
        f.push(&data[pos..end]);
        pos = end;
        i += 1;
        loop {
            match f.next_frame() {
                Ok(Some(Frame::Message(m))) => {
                    if let Ok(msg) = Message::parse(m) {
                        exercise(&msg);
                    }
                }
                Ok(Some(_)) => {}
                Ok(None) => break,
                Err(_) => return,
            }
        }
    }
}

#[derive(Debug, Clone)]
enum Mutation {
    Set(usize, u8),
    Insert(usize, Vec<u8>),
    Delete(usize, usize),
    Truncate(usize),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let interesting = prop::sample::select(vec![
        b"\r\n".to_vec(),
        b"\r\n ".to_vec(),
        b",".to_vec(),
        b";".to_vec(),
        b"\"".to_vec(),
        b"<".to_vec(),
        b">".to_vec(),
        b"%".to_vec(),
        b"[".to_vec(),
        b":".to_vec(),
        b"\\".to_vec(),
        b"\0".to_vec(),
        b"@".to_vec(),
        b"=".to_vec(),
        b"\r\n\r\n".to_vec(),
        b"9999999999".to_vec(),
    ]);
    prop_oneof![
        (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Mutation::Set(i, b)),
        (any::<usize>(), interesting).prop_map(|(i, b)| Mutation::Insert(i, b)),
        (any::<usize>(), prop::collection::vec(any::<u8>(), 1..8))
            .prop_map(|(i, b)| Mutation::Insert(i, b)),
        (any::<usize>(), 1usize..16).prop_map(|(i, n)| Mutation::Delete(i, n)),
        any::<usize>().prop_map(Mutation::Truncate),
    ]
}

fn apply(mut data: Vec<u8>, muts: &[Mutation]) -> Vec<u8> {
    for m in muts {
        let len = data.len().max(1);
        match m {
            Mutation::Set(i, b) => {
                if !data.is_empty() {
                    let i = i % len;
                    data[i] = *b;
                }
            }
            Mutation::Insert(i, b) => {
                let i = i % (data.len() + 1);
                data.splice(i..i, b.iter().copied());
            }
            Mutation::Delete(i, n) => {
                if !data.is_empty() {
                    let i = i % len;
                    let e = (i + n).min(data.len());
                    data.drain(i..e);
                }
            }
            Mutation::Truncate(i) => data.truncate(i % (data.len() + 1)),
        }
    }
    data
}

#[test]
fn valid_fixtures_round_trip() {
    let fx = fixtures();
    for name in VALID {
        let (_, data) = fx.iter().find(|(n, _)| n == name).expect(name);
        let m = Message::parse(Bytes::from(data.clone())).unwrap();
        m.validate().unwrap();
        assert_round_trip(&m);
        let again = Message::parse(m.to_bytes()).unwrap();
        again.validate().unwrap();
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn random_bytes_never_panic(data in prop::collection::vec(any::<u8>(), 0..512),
                                chunks in prop::collection::vec(1usize..64, 1..8)) {
        if let Ok(m) = Message::parse(Bytes::from(data.clone())) {
            exercise(&m);
            assert_round_trip(&m);
        }
        frame_all(&data, &chunks);
    }

    #[test]
    fn mutated_fixtures_never_panic(idx in any::<prop::sample::Index>(),
                                    muts in prop::collection::vec(mutation(), 1..6),
                                    chunks in prop::collection::vec(1usize..64, 1..8)) {
        let fx = fixtures();
        let (_, data) = idx.get(fx);
        let data = apply(data.clone(), &muts);
        if let Ok(m) = Message::parse(Bytes::from(data.clone())) {
            exercise(&m);
            assert_round_trip(&m);
        }
        frame_all(&data, &chunks);
    }

    #[test]
    fn uris_never_panic(data in "[a-zA-Z0-9:@;=?&%\\[\\]._+~-]{0,64}") {
        if let Ok(u) = Uri::parse(data.as_bytes()) {
            let _ = u.equivalent(&u);
            prop_assert_eq!(Uri::parse_bytes(&u.to_bytes()).ok(), Some(u));
        }
    }
}
