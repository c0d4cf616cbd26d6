//! Parse and print throughput of a typical INVITE with SDP (~900 bytes).
//! Run: `cargo bench -p sip-message --bench parse`. Measured, never asserted.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use sip_message::{Bytes, BytesMut, Message};
use std::hint::black_box;
use std::time::{Duration, Instant};

const SDP: &str = "v=0\r\n\
o=alice 2890844526 2890844526 IN IP4 192.0.2.101\r\n\
s=-\r\n\
c=IN IP4 192.0.2.101\r\n\
t=0 0\r\n\
m=audio 49170 RTP/AVP 0 8 97 101\r\n\
a=rtpmap:0 PCMU/8000\r\n\
a=rtpmap:8 PCMA/8000\r\n\
a=rtpmap:97 iLBC/8000\r\n\
a=rtpmap:101 telephone-event/8000\r\n\
a=fmtp:101 0-15\r\n\
a=ptime:20\r\n\
a=sendrecv\r\n";

fn invite() -> Bytes {
    let head = format!(
        "INVITE sip:bob@biloxi.example.com SIP/2.0\r\n\
Via: SIP/2.0/UDP pc33.atlanta.example.com:5060;branch=z9hG4bK776asdhds;rport\r\n\
Max-Forwards: 70\r\n\
To: \"Bob\" <sip:bob@biloxi.example.com>\r\n\
From: \"Alice\" <sip:alice@atlanta.example.com>;tag=1928301774\r\n\
Call-ID: a84b4c76e66710@pc33.atlanta.example.com\r\n\
CSeq: 314159 INVITE\r\n\
Contact: <sip:alice@pc33.atlanta.example.com:5060;transport=udp>\r\n\
Allow: INVITE, ACK, CANCEL, OPTIONS, BYE, REFER, NOTIFY, MESSAGE, INFO, UPDATE, PRACK\r\n\
Supported: replaces, timer, 100rel, norefersub\r\n\
User-Agent: Tandem-Bench/0.1 (x86_64-linux)\r\n\
Session-Expires: 1800;refresher=uac\r\n\
Content-Type: application/sdp\r\n\
Content-Length: {}\r\n\r\n",
        SDP.len()
    );
    Bytes::from(format!("{head}{SDP}"))
}

/// Best of 5 runs of about one second each; returns operations per second.
fn measure(mut f: impl FnMut()) -> f64 {
    let mut best = 0f64;
    for _ in 0..5 {
        let start = Instant::now();
        let mut n = 0u64;
        while start.elapsed() < Duration::from_secs(1) {
            for _ in 0..1000 {
                f();
            }
            n += 1000;
        }
        best = best.max(n as f64 / start.elapsed().as_secs_f64());
    }
    best
}

fn main() {
    // `cargo bench -p sip-message --bench parse -- typed` runs only the phases named.
    let only: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let run = |name: &str| only.is_empty() || only.iter().any(|o| name.contains(o.as_str()));
    let msg = invite();
    println!("message: {} bytes", msg.len());
    let parsed = Message::parse(msg.clone()).unwrap();
    parsed.validate().unwrap();

    if run("parse") {
        let parse = measure(|| {
            black_box(Message::parse(black_box(msg.clone())).unwrap());
        });
        println!("parse:               {:>12.0} parses/s", parse);
    }
    if run("typed") {
        let typed = measure(|| {
            let m = Message::parse(black_box(msg.clone())).unwrap();
            let h = m.headers();
            black_box(h.top_via().unwrap());
            black_box(h.from().unwrap());
            black_box(h.to().unwrap());
            black_box(h.cseq().unwrap());
            black_box(h.call_id().unwrap());
        });
        println!(
            "parse + typed:       {:>12.0} parses/s (top Via, From, To, CSeq, Call-ID)",
            typed
        );
    }
    if run("encode") {
        let mut out = BytesMut::with_capacity(2048);
        let print = measure(|| {
            out.clear();
            black_box(&parsed).encode(&mut out);
            black_box(&out);
        });
        println!("encode:              {:>12.0} prints/s", print);
    }
}
