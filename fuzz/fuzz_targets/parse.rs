//! Message::parse + validate + every typed accessor + encode/re-parse round trip.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sip_message::{
    Bytes, Contacts, HeaderName, Headers, Message, NameAddr, Response, Uri, Via, multipart,
};

fn without_cl(h: &Headers) -> Headers {
    let mut h = h.clone();
    h.remove(&HeaderName::ContentLength);
    h
}

fuzz_target!(|data: &[u8]| {
    let Ok(m) = Message::parse(Bytes::copy_from_slice(data)) else {
        return;
    };
    let _ = m.validate();
    let h = m.headers();
    if let Ok(v) = h.top_via() {
        let _ = Via::parse(&v.to_bytes());
    }
    for v in h.vias().flatten() {
        let _ = (v.branch(), v.received(), v.rport(), v.maddr(), v.ttl(), v.has_magic_cookie());
    }
    for r in [h.from(), h.to()].into_iter().flatten() {
        let again = NameAddr::parse(&r.to_bytes());
        assert!(again.is_some(), "printed name-addr does not re-parse: {r:?}");
        let _ = r.tag();
        let u = Uri::parse_bytes(&r.uri.to_bytes());
        assert_eq!(u.as_ref().ok(), Some(&r.uri), "printed URI does not re-parse");
        let _ = r.uri.equivalent(&r.uri);
    }
    let _ = (h.call_id(), h.cseq(), h.max_forwards(), h.content_length(), h.expires(), h.date());
    if let Ok(Contacts::List(cs)) = h.contacts() {
        for c in cs {
            let _ = (c.expires(), c.q());
        }
    }
    let _ = (h.routes(), h.record_routes());
    for n in [HeaderName::Allow, HeaderName::Supported, HeaderName::Require, HeaderName::Unsupported] {
        let _ = h.tokens(&n).count();
    }
    if let Ok(Some(ct)) = h.content_type() {
        let _ = ct.to_bytes();
        if let Ok(parts) = multipart::parse(&ct, m.body()) {
            for p in &parts {
                let _ = p.content_type();
            }
            let (ct2, body2) = multipart::build("mixed", &parts);
            let back = multipart::parse(&ct2, &body2).expect("built multipart re-parses");
            assert_eq!(back.len(), parts.len());
        }
    }
    if let Message::Request(r) = &m {
        if let Ok(u) = r.uri() {
            let _ = u.to_string();
        }
        let resp = Response::from_request(r, 400, Some("tag1"));
        Message::parse(resp.to_bytes()).expect("from_request output parses");
    }
    let mut hs = h.clone();
    hs.replace_first_value(&HeaderName::Via, "SIP/2.0/UDP x");

    // print, re-parse: equal (Content-Length is always rewritten by the printer)
    let again = Message::parse(m.to_bytes()).expect("printed message re-parses");
    assert_eq!(without_cl(again.headers()), without_cl(m.headers()));
    assert_eq!(again.body(), m.body());
    match (&m, &again) {
        (Message::Request(a), Message::Request(b)) => {
            assert_eq!((&a.method, &a.uri, &a.version), (&b.method, &b.uri, &b.version));
        }
        (Message::Response(a), Message::Response(b)) => {
            assert_eq!((a.status, &a.reason, &a.version), (b.status, &b.reason, &b.version));
        }
        _ => panic!("message kind changed"),
    }
    // a valid message stays valid (an invalid one may be repaired: the printer rewrites
    // Content-Length, e.g. RFC 4475 mcl01)
    if m.validate().is_ok() {
        again.validate().expect("printing broke a valid message");
    }
});
