//! RFC 4475 at the user agent server: every torture message delivered over UDP to the
//! endpoint, and the answer the fixture README (and RFC 4475 §3) asks of a UAS.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod support;

use bytes::Bytes;
use sip_message::Transport;
use std::path::Path;
use support::*;

fn fixture(name: &str) -> Bytes {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fixtures/rfc4475")
        .join(format!("{name}.dat"));
    Bytes::from(std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display())))
}

/// What the UAS must do with a fixture.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Expect {
    /// The last response sent has this status.
    Final(u16),
    /// Nothing is sent; the message is counted as dropped.
    Dropped,
}
use Expect::*;

/// Every file of fixtures/rfc4475, with the outcome of fixtures/rfc4475/README.md.
/// The configured users (below) make the valid requests reach a user, so "processed"
/// means answered by it.
const TABLE: &[(&str, Expect)] = &[
    // §3.1.1: valid, parsed and processed.
    ("wsinv", Final(481)), // carries a To tag: an in-dialog request for no dialog of ours
    ("intmeth", Final(501)),
    ("esc01", Final(200)), // user "sips:user@example.com" once unescaped
    ("escnull", Final(405)),
    ("esc02", Final(501)), // RE%47IST%45R is an extension method, not REGISTER
    ("lwsdisp", Final(200)),
    ("longreq", Final(200)),
    ("dblreq", Final(405)),
    ("semiuri", Final(200)), // user "user;par=u@example.net"
    ("transports", Final(200)),
    ("mpart01", Final(200)),
    ("unreason", Dropped), // a response matching no transaction
    ("noreason", Dropped),
    // The fixture README calls `test` "a plain valid INVITE", but it is not SIP: its
    // request line has no SIP-Version, it has no Via and no CSeq, and "Foobar roobar" is
    // a header line without a colon. With no Via there is nowhere to answer: dropped.
    ("test", Dropped),
    // §3.1.2: invalid: 400 naming the problem (505 for the version), or dropped.
    ("badinv01", Final(400)),
    ("clerr", Dropped), // Content-Length beyond the datagram
    ("ncl", Final(400)),
    ("scalar02", Final(400)),
    ("scalarlg", Dropped), // a response
    ("quotbal", Final(400)),
    ("ltgtruri", Final(400)),
    ("lwsruri", Final(400)),
    ("lwsstart", Final(400)),
    ("trws", Dropped), // the request line itself does not parse
    ("escruri", Final(400)),
    ("baddate", Final(400)),
    ("regbadct", Final(400)),
    ("badaspec", Final(400)),
    ("baddn", Final(400)),
    ("badvers", Final(505)),
    ("mismatch01", Final(400)),
    ("mismatch02", Final(400)),
    ("bigcode", Dropped), // a response with a status beyond 699
    // §3.2
    ("badbranch", Final(200)),
    // §3.3
    ("insuf", Final(400)),
    ("unkscm", Final(416)),
    ("novelsc", Final(416)),
    ("unksm2", Final(405)), // a REGISTER: no registrar here
    ("bext01", Final(420)),
    ("invut", Final(415)),
    // The fixture README says "401 challenge", which is what a registrar that
    // authenticates does. Tandem is no registrar: like the other REGISTERs it answers 405
    // (RFC 4475 §3.3.3 lets an element that does not process the request ignore the
    // unknown scheme).
    ("regaut01", Final(405)),
    ("multi01", Final(400)),
    ("mcl01", Final(400)),
    ("bcast", Dropped), // never answered, never sent to the broadcast address
    ("zeromf", Final(200)),
    ("cparam01", Final(405)),
    ("cparam02", Final(405)),
    ("regescrt", Final(405)),
    ("sdp01", Final(406)),
    // §3.4
    ("inv2543", Final(200)),
];

fn harness() -> Harness {
    Harness::with_users(&[
        "user",
        "t.watson",
        "vivekg",
        "alan",
        "UserB",
        "kumiko",
        "sips:user@example.com",
        "user;par=u@example.net",
    ])
}

#[test]
fn the_table_covers_every_fixture() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/rfc4475");
    let mut files: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            e.file_name()
                .to_str()?
                .strip_suffix(".dat")
                .map(str::to_owned)
        })
        .collect();
    files.sort();
    let mut listed: Vec<String> = TABLE.iter().map(|(n, _)| (*n).to_owned()).collect();
    listed.sort();
    assert_eq!(files, listed);
    assert_eq!(files.len(), 50);
}

#[test]
fn every_torture_message_gets_its_answer() {
    let mut h = harness();
    let mut failures = Vec::new();
    for &(name, expect) in TABLE {
        let before = h.stats();
        let out = h.send_bytes(Transport::Udp, fixture(name));
        let after = h.stats();
        // Responses only: the echo user sends page-mode MESSAGEs back.
        let responses: Vec<_> = out
            .iter()
            .filter(|t| t.payload.starts_with(b"SIP/2.0 "))
            .collect();
        let got = match responses.last() {
            Some(last) => Final(response(last).status),
            None if after.dropped == before.dropped + 1 => Dropped,
            None => {
                failures.push(format!("{name}: nothing sent and not counted as dropped"));
                continue;
            }
        };
        if got != expect {
            failures.push(format!("{name}: want {expect:?}, got {got:?}"));
        }
        for t in &responses {
            let r = response(t);
            // Every answer goes to the source IP (at the sent-by port without rport, RFC
            // 3261 §18.2.2), never to an address taken from the message.
            if t.flow.remote.ip() != peer().ip() {
                failures.push(format!("{name}: sent to {}", t.flow.remote));
            }
            if r.status == 400 && &r.reason[..] == b"Bad Request" {
                failures.push(format!("{name}: a 400 that does not name the problem"));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn refusals_carry_the_headers_the_rfc_asks_for() {
    use sip_message::HeaderName;
    let mut h = harness();
    let last = |h: &mut Harness, name: &str| {
        response(h.send_bytes(Transport::Udp, fixture(name)).last().unwrap())
    };
    let bext = last(&mut h, "bext01");
    // Both option tags of Require are listed; Proxy-Require is for proxies (§8.2.2.3).
    assert_eq!(
        header(&bext, HeaderName::Unsupported),
        "nothingSupportsThis, nothingSupportsThisEither"
    );
    let invut = last(&mut h, "invut");
    assert_eq!(header(&invut, HeaderName::Accept), "application/sdp");
    let register = last(&mut h, "cparam01");
    assert!(header(&register, HeaderName::Allow).contains("INVITE"));
    let intmeth = last(&mut h, "intmeth");
    // RFC 4475 §3.1.1.4: To, From, Call-ID and CSeq copied from the request.
    let request = match sip_message::Message::parse(fixture("intmeth")).unwrap() {
        sip_message::Message::Request(r) => r,
        _ => unreachable!(),
    };
    for name in [HeaderName::From, HeaderName::CallId, HeaderName::CSeq] {
        assert_eq!(
            intmeth.headers.get(&name),
            request.headers.get(&name),
            "{name:?}"
        );
    }
    let badvers = last(&mut h, "badvers");
    assert_eq!(badvers.status, 505);
}

#[test]
fn still_answers_options_after_all_of_them() {
    let mut h = harness();
    for &(name, _) in TABLE {
        h.send_bytes(Transport::Udp, fixture(name));
    }
    let options = format!(
        "OPTIONS sip:{LOCAL} SIP/2.0\r\nVia: SIP/2.0/UDP {PEER};branch=z9hG4bKafter\r\n\
         Max-Forwards: 70\r\nFrom: <sip:alice@{PEER}>;tag=a\r\nTo: <sip:{LOCAL}>\r\n\
         Call-ID: after-all\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
    );
    assert_eq!(statuses(&h.send(&options)), [200]);
}
