//! Whatever arrives, the endpoint does not panic, and it still answers afterwards
//! (STYLE.md: any input that panics is a bug with a regression test).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod support;

use bytes::Bytes;
use proptest::prelude::*;
use sip_message::Transport;
use std::path::Path;
use std::time::Duration;
use support::*;

fn fixtures() -> Vec<Vec<u8>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/rfc4475");
    let mut all: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.path().extension().is_some_and(|x| x == "dat"))
        .map(|e| std::fs::read(e.path()).unwrap())
        .collect();
    all.push(invite("echo", "z9hG4bKseed", "seed", true).into_bytes());
    all
}

/// After every timer has run (the longest is the one-hour call cap, then its BYE's
/// Timer F), nothing may be left: no transaction stuck without a timer, no dialog.
fn nothing_left(h: &mut Harness) {
    h.advance(Duration::from_secs(2 * 3600));
    let stats = h.stats();
    assert_eq!((stats.transactions, stats.dialogs), (0, 0), "{stats:?}");
    assert_eq!(h.endpoint.poll_timeout(), None);
}

fn options_still_answered(h: &mut Harness) {
    let options = format!(
        "OPTIONS sip:{LOCAL} SIP/2.0\r\nVia: SIP/2.0/UDP {PEER};branch=z9hG4bKalive\r\n\
         Max-Forwards: 70\r\nFrom: <sip:alice@{PEER}>;tag=a\r\nTo: <sip:{LOCAL}>\r\n\
         Call-ID: alive\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
    );
    assert_eq!(statuses(&h.send(&options)), [200]);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, .. ProptestConfig::default() })]

    #[test]
    fn random_bytes(data in proptest::collection::vec(any::<u8>(), 0..2048), tcp in any::<bool>()) {
        let mut h = Harness::new();
        let transport = if tcp { Transport::Tcp } else { Transport::Udp };
        h.send_bytes(transport, Bytes::from(data));
        h.advance(Duration::from_secs(40));
        options_still_answered(&mut h);
        nothing_left(&mut h);
    }

    /// Fixtures and a good INVITE with bytes flipped, cut or inserted, several in a row
    /// (so later ones may hit dialogs and transactions the earlier ones made), with the
    /// clock moving in between.
    #[test]
    fn mutated_messages(
        picks in proptest::collection::vec((any::<proptest::sample::Index>(), any::<proptest::sample::Index>(), any::<u8>(), 0u8..4, 0u64..40_000), 1..8)
    ) {
        let corpus = fixtures();
        let mut h = Harness::new();
        for (which, at, byte, how, wait_ms) in picks {
            let mut message = which.get(&corpus).clone();
            let len = message.len();
            let i = at.index(len.max(1));
            match how {
                0 if len > 0 => message[i.min(len - 1)] = byte,
                1 => message.truncate(i),
                2 => message.insert(i.min(message.len()), byte),
                _ => {}
            }
            h.send_bytes(Transport::Udp, Bytes::from(message));
            h.advance(Duration::from_millis(wait_ms));
        }
        options_still_answered(&mut h);
        nothing_left(&mut h);
    }
}
