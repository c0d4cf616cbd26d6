//! Any input that panics is a bug: odd and hostile header values fed to the
//! layer as requests and responses, then the clock run out.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use bytes::Bytes;
use common::*;
use proptest::prelude::*;
use sip_message::{Message, Response, Transport};
use sip_transaction::{RequestOutcome, TransactionLayer};
use std::time::Instant;

fn via() -> impl Strategy<Value = String> {
    prop_oneof![
        "[ -~]{0,60}",
        (
            "(UDP|TCP|TLS|WS|XYZ|udp)",
            "(192\\.0\\.2\\.[0-9]{1,3}|\\[2001:db8::1\\]|Example\\.COM|)",
            "(:[0-9]{1,6})?",
            "(;branch=(z9hG4bK)?[a-zA-Z0-9.-]{0,8})?",
            "(;rport(=[0-9]{0,6})?)?",
            "(;received=[0-9a-f.:]{0,16})?",
            "(;maddr=[0-9a-z.]{0,16})?",
        )
            .prop_map(|(t, h, p, b, r, rc, m)| format!("SIP/2.0/{t} {h}{p}{b}{r}{rc}{m}")),
    ]
}

fn message_text(
    start_line: &str,
    via: &str,
    cseq: &str,
    from: &str,
    to: &str,
    call_id: &str,
) -> String {
    format!(
        "{start_line}\r\nVia: {via}\r\nFrom: {from}\r\nTo: {to}\r\nCall-ID: {call_id}\r\nCSeq: {cseq}\r\nContent-Length: 0\r\n\r\n"
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn hostile_input_never_panics(
        method in "(INVITE|ACK|CANCEL|BYE|OPTIONS|FOO)",
        via in via(),
        cseq in prop_oneof!["[0-9]{1,10} (INVITE|ACK|CANCEL|BYE|OPTIONS)", "[ -~]{0,16}"],
        from in prop_oneof!["<sip:a@example.com>(;tag=[a-z0-9]{0,4})?", "[ -~]{0,16}"],
        to in prop_oneof!["<sip:b@example.com>(;tag=[a-z0-9]{0,4})?", "[ -~]{0,16}"],
        call_id in "[!-~]{0,12}",
        status in 0u16..1000,
        reliable in any::<bool>(),
    ) {
        let start = Instant::now();
        let transport = if reliable { Transport::Tcp } else { Transport::Udp };
        let mut l = TransactionLayer::default();
        let uri = "sip:b@example.com";

        // As a request, twice (a retransmission), then answered.
        let text = message_text(&format!("{method} {uri} SIP/2.0"), &via, &cseq, &from, &to, &call_id);
        if let Ok(Message::Request(req)) = Message::parse(Bytes::from(text)) {
            for _ in 0..2 {
                let out = l.handle_request(start, req.clone(), from_uac(transport));
                let key = match out {
                    RequestOutcome::New { key, .. } | RequestOutcome::Cancel { key, .. } => Some(key),
                    _ => None,
                };
                if let Some(key) = key {
                    let _ = l.send_response(start, &key, Response::from_request(&req, status, Some("t")));
                    let _ = l.send_response(start, &key, Response::from_request(&req, 200, Some("t")));
                }
            }
            // As a request we send.
            let _ = l.send_request(start, req, to_uas(transport));
        }

        // As a response.
        let text = message_text(&format!("SIP/2.0 {status} Whatever"), &via, &cseq, &from, &to, &call_id);
        if let Ok(Message::Response(resp)) = Message::parse(Bytes::from(text)) {
            let _ = l.handle_response(start, resp.clone(), to_uas(transport));
            let _ = l.handle_response(start, resp, to_uas(transport));
        }

        // Run the clock out; the books must balance.
        let mut steps = 0;
        while let Some(at) = l.poll_timeout() {
            l.handle_timeout(at);
            steps += 1;
            prop_assert!(steps < 10_000);
        }
        while l.poll_transmit().is_some() {}
        while l.poll_event().is_some() {}
        prop_assert_eq!(l.stats().total(), l.len());
        prop_assert!(l.poll_timeout().is_none());
    }
}
