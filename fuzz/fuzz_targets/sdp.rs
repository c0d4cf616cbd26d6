//! sdp-offer-answer: SessionDescription::parse (byte-faithful round trip, rewrite ->
//! re-parse), and the input answered as an offer and read as an answer to ours.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sdp_offer_answer::{
    Direction, LocalCapabilities, MessageCapabilities, OfferAnswer, SessionDescription,
};

fuzz_target!(|data: &[u8]| {
    let local = LocalCapabilities {
        message: Some(MessageCapabilities::default()),
        ..LocalCapabilities::default()
    };
    if let Ok(sdp) = SessionDescription::parse(data) {
        assert_eq!(&sdp.to_bytes()[..], data, "parse -> to_bytes is byte-faithful");
        let mut rewritten = sdp.clone();
        rewritten.set_connection("192.0.2.9".parse().expect("ip"));
        rewritten.set_origin_version(u64::MAX);
        for m in rewritten.media_mut() {
            let _ = (m.codecs(), m.ptime(), m.is_legacy_hold());
            m.set_port(1);
            m.set_direction(Direction::Inactive);
        }
        let again = SessionDescription::parse(&rewritten.to_bytes()).expect("rewritten re-parses");
        assert_eq!(again.to_bytes(), rewritten.to_bytes());
        let mut answerer = OfferAnswer::new(local.clone(), 1);
        if answerer.receive_offer(data).is_ok() {
            let answer = answerer.create_answer().expect("an accepted offer is answered");
            let parsed = SessionDescription::parse(&answer).expect("our answer parses");
            assert_eq!(parsed.media().len(), sdp.media().len());
        }
    }
    let mut offerer = OfferAnswer::new(local, 1);
    offerer.create_offer().expect("offer");
    let _ = offerer.receive_answer(data);
});
