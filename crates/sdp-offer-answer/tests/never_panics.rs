//! No input panics: arbitrary bytes, mutated real-world SDP, and SDP built from a vocabulary
//! of the tokens that matter. Whatever parses round-trips byte for byte, and whatever is
//! answered is answered with one m= line per offered one.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod support;

use proptest::prelude::*;
use sdp_offer_answer::{
    Direction, LocalCapabilities, MessageCapabilities, OfferAnswer, SessionDescription,
    SignalingState,
};

fn corpus() -> &'static [(String, String)] {
    static CORPUS: std::sync::OnceLock<Vec<(String, String)>> = std::sync::OnceLock::new();
    CORPUS.get_or_init(support::real_world_sdps)
}

fn local() -> LocalCapabilities {
    LocalCapabilities {
        message: Some(MessageCapabilities::default()),
        ..LocalCapabilities::default()
    }
}

/// Parses, and when it parses: round trip, answer it, and read it as an answer to our offer.
fn exercise(input: &[u8]) {
    let Ok(sdp) = SessionDescription::parse(input) else {
        return;
    };
    assert_eq!(sdp.to_bytes(), input);
    for m in sdp.media() {
        let _ = (
            m.codecs(),
            m.direction(),
            m.ptime(),
            m.is_legacy_hold(),
            m.rtp_parse(),
        );
        let _ = m.attributes().count();
    }
    let mut rewritten = sdp.clone();
    rewritten.set_connection("192.0.2.9".parse().unwrap());
    rewritten.set_origin_version(u64::MAX);
    for m in rewritten.media_mut() {
        m.set_port(1);
        m.set_direction(Direction::Inactive);
    }
    let again = SessionDescription::parse(&rewritten.to_bytes()).unwrap();
    assert_eq!(again.to_bytes(), rewritten.to_bytes());

    let mut answerer = OfferAnswer::new(local(), 1);
    if answerer.receive_offer(input).is_ok() {
        let answer = answerer.create_answer().unwrap();
        let parsed = SessionDescription::parse(&answer).unwrap();
        assert_eq!(parsed.media().len(), sdp.media().len());
        // and a re-offer after it never has fewer m= lines
        let reoffer = answerer.create_offer().unwrap();
        let parsed = SessionDescription::parse(&reoffer).unwrap();
        assert!(parsed.media().len() >= sdp.media().len());
    }
    let mut offerer = OfferAnswer::new(local(), 1);
    offerer.create_offer().unwrap();
    if offerer.receive_answer(input).is_ok() {
        assert_eq!(offerer.state(), SignalingState::Stable);
        assert!(offerer.negotiated().is_some());
    } else {
        assert_eq!(offerer.state(), SignalingState::HaveLocalOffer);
    }
}

const VOCABULARY: &[&str] = &[
    "audio",
    "video",
    "message",
    "image",
    "text",
    "application",
    "AUDIO",
    "0",
    "1",
    "8",
    "9",
    "18",
    "96",
    "101",
    "127",
    "128",
    "255",
    "256",
    "65535",
    "65536",
    "4000/2",
    "4000/",
    "/",
    "RTP/AVP",
    "RTP/AVPF",
    "RTP/SAVP",
    "UDP/TLS/RTP/SAVPF",
    "sip",
    "TCP/MSRP",
    "udptl",
    "null",
    "sip:a@b",
    "*",
    "IN",
    "IP4",
    "IP6",
    "0.0.0.0",
    "::",
    "192.0.2.1",
    "2001:db8::1",
    "host.example",
    "224.2.1.1/127/3",
    "rtpmap:",
    "fmtp:",
    "ptime:",
    "crypto:",
    "fingerprint:",
    "accept-types:",
    "rtcp-xr:",
    "encryption:optional",
    "sendonly",
    "recvonly",
    "inactive",
    "sendrecv",
    "PCMU/8000",
    "PCMA/8000",
    "telephone-event/8000",
    "opus/48000/2",
    "0-16",
    "x/",
    "/8000",
    "18446744073709551616",
    "-",
    " ",
    "  ",
    ":",
    "=",
    "é",
    "\u{0}",
    "\t",
];

fn token() -> impl Strategy<Value = String> {
    prop::sample::select(VOCABULARY).prop_map(str::to_owned)
}

fn line() -> impl Strategy<Value = String> {
    (
        prop::sample::select(&b"vosctmamamacbikeupzrqA"[..]),
        prop::collection::vec(token(), 0..7),
        prop::sample::select(&[" ", "", ":"][..]),
    )
        .prop_map(|(kind, tokens, sep)| format!("{}={}", kind as char, tokens.join(sep)))
}

fn vocabulary_sdp() -> impl Strategy<Value = Vec<u8>> {
    (
        any::<bool>(),
        prop::collection::vec(line(), 0..24),
        prop::sample::select(&["\r\n", "\n", "\r\n\r\n"][..]),
    )
        .prop_map(|(header, lines, eol)| {
            let mut text = if header {
                format!(
                    "v=0{eol}o=- 1 1 IN IP4 192.0.2.1{eol}s=-{eol}c=IN IP4 192.0.2.1{eol}t=0 0{eol}"
                )
            } else {
                String::new()
            };
            for l in lines {
                text.push_str(&l);
                text.push_str(eol);
            }
            text.into_bytes()
        })
}

#[derive(Debug, Clone)]
enum Mutation {
    Flip(usize, u8),
    Delete(usize, usize),
    Insert(usize, Vec<u8>),
    DuplicateLine(usize),
    Truncate(usize),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), any::<u8>()).prop_map(|(at, b)| Mutation::Flip(at, b)),
        (any::<usize>(), 1usize..40).prop_map(|(at, n)| Mutation::Delete(at, n)),
        (
            any::<usize>(),
            prop_oneof![
                prop::collection::vec(any::<u8>(), 1..8),
                token().prop_map(String::into_bytes),
            ]
        )
            .prop_map(|(at, bytes)| Mutation::Insert(at, bytes)),
        any::<usize>().prop_map(Mutation::DuplicateLine),
        any::<usize>().prop_map(Mutation::Truncate),
    ]
}

fn apply(mut bytes: Vec<u8>, mutations: &[Mutation]) -> Vec<u8> {
    for m in mutations {
        let len = bytes.len().max(1);
        match m {
            Mutation::Flip(at, b) => {
                if let Some(x) = bytes.get_mut(at % len) {
                    *x = *b;
                }
            }
            Mutation::Delete(at, n) => {
                let start = (at % len).min(bytes.len());
                let end = (start + n).min(bytes.len());
                bytes.drain(start..end);
            }
            Mutation::Insert(at, ins) => {
                let at = (at % len).min(bytes.len());
                bytes.splice(at..at, ins.iter().copied());
            }
            Mutation::DuplicateLine(at) => {
                let text = String::from_utf8_lossy(&bytes).into_owned();
                let lines: Vec<&str> = text.split_inclusive('\n').collect();
                if !lines.is_empty() {
                    let i = at % lines.len();
                    let mut out = String::new();
                    for (j, l) in lines.iter().enumerate() {
                        out.push_str(l);
                        if j == i {
                            out.push_str(l);
                        }
                    }
                    bytes = out.into_bytes();
                }
            }
            Mutation::Truncate(at) => bytes.truncate(at % len),
        }
    }
    bytes
}

proptest! {
    // PROPTEST_CASES=100000 for a longer hunt
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(512),
        ..ProptestConfig::default()
    })]

    #[test]
    fn arbitrary_bytes(input in prop::collection::vec(any::<u8>(), 0..600)) {
        exercise(&input);
    }

    #[test]
    fn arbitrary_text_with_sdp_header(tail in ".{0,300}") {
        exercise(format!("v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\n{tail}").as_bytes());
    }

    #[test]
    fn vocabulary(input in vocabulary_sdp()) {
        exercise(&input);
    }

    #[test]
    fn mutated_real_world_sdp(
        pick in any::<prop::sample::Index>(),
        mutations in prop::collection::vec(mutation(), 1..6),
    ) {
        let corpus = corpus();
        let (_, text) = &corpus[pick.index(corpus.len())];
        exercise(&apply(text.clone().into_bytes(), &mutations));
    }
}

#[test]
fn the_unmutated_corpus_is_exercised_too() {
    for (_, text) in support::real_world_sdps() {
        exercise(text.as_bytes());
    }
}

/// The generators reach the negotiation, not only the parser's errors.
#[test]
fn the_generators_reach_the_negotiation() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    let mut runner = TestRunner::deterministic();
    let (mut parsed, mut answered) = (0, 0);
    let strategy = vocabulary_sdp();
    let mutated = (
        any::<prop::sample::Index>(),
        prop::collection::vec(mutation(), 1..3),
    );
    let corpus = support::real_world_sdps();
    for _ in 0..400 {
        let a = strategy.new_tree(&mut runner).unwrap().current();
        let (pick, mutations) = mutated.new_tree(&mut runner).unwrap().current();
        let (_, text) = &corpus[pick.index(corpus.len())];
        let b = apply(text.clone().into_bytes(), &mutations);
        for input in [a, b] {
            if SessionDescription::parse(&input).is_ok() {
                parsed += 1;
                if OfferAnswer::new(local(), 1).receive_offer(&input).is_ok() {
                    answered += 1;
                }
            }
        }
    }
    assert!(
        parsed > 150 && answered > 100,
        "parsed {parsed}, answered {answered}"
    );
}
