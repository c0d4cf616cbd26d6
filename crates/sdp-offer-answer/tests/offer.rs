//! Our offers, their answers, re-offers, hold and retrieve, versions (RFC 3264 §5, §7, §8).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod support;

use bytes::Bytes;
use sdp_offer_answer::{
    Codec, Direction, LocalCapabilities, MessageCapabilities, NegotiatedAudio, NegotiationError,
    OfferAnswer, SessionDescription, SignalingState,
};
use support::*;

fn text(b: &Bytes) -> String {
    String::from_utf8(b.to_vec()).unwrap()
}

fn m_lines(b: &Bytes) -> Vec<String> {
    text(b)
        .lines()
        .filter(|l| l.starts_with("m="))
        .map(str::to_owned)
        .collect()
}

fn version(b: &Bytes) -> u64 {
    SessionDescription::parse(b).unwrap().origin().version
}

fn bob() -> OfferAnswer {
    OfferAnswer::new(
        LocalCapabilities {
            address: "192.0.2.2".parse().unwrap(),
            audio_port: 5000,
            codecs: vec![Codec::pcma(), Codec::telephone_event(96)],
            username: "bob".into(),
            ..LocalCapabilities::default()
        },
        2000,
    )
}

fn alice() -> OfferAnswer {
    OfferAnswer::new(
        LocalCapabilities {
            address: "192.0.2.1".parse().unwrap(),
            audio_port: 4000,
            ..LocalCapabilities::default()
        },
        1000,
    )
}

fn audio(oa: &OfferAnswer) -> &NegotiatedAudio {
    oa.negotiated().unwrap().audio.as_ref().unwrap()
}

/// One full exchange: `from` offers, `to` answers.
fn exchange(from: &mut OfferAnswer, to: &mut OfferAnswer) -> (Bytes, Bytes) {
    let offer = from.create_offer().unwrap();
    assert_eq!(from.state(), SignalingState::HaveLocalOffer);
    to.receive_offer(&offer).unwrap();
    let answer = to.create_answer().unwrap();
    from.receive_answer(&answer).unwrap();
    assert_eq!(from.state(), SignalingState::Stable);
    assert_eq!(to.state(), SignalingState::Stable);
    (offer, answer)
}

#[test]
fn the_first_offer_byte_for_byte() {
    let mut oa = OfferAnswer::new(LocalCapabilities::default(), 7);
    let offer = oa.create_offer().unwrap();
    assert_eq!(
        text(&offer),
        "v=0\r\no=tandem 7 1 IN IP4 127.0.0.1\r\ns=tandem\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
         m=audio 9 RTP/AVP 0 8 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\n\
         a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\na=ptime:20\r\na=sendrecv\r\n"
    );
    assert!(webrtc_sdp::parse_sdp(&text(&offer), true).is_ok());
    assert!(
        oa.current_local().is_none(),
        "not in effect before the answer"
    );
}

#[test]
fn two_agents_negotiate_with_each_other() {
    let (mut a, mut b) = (alice(), bob());
    let (offer, answer) = exchange(&mut a, &mut b);
    assert_eq!(m_lines(&answer), ["m=audio 5000 RTP/AVP 8 101"]);
    let (aa, ba) = (audio(&a).clone(), audio(&b).clone());
    assert_eq!(aa.codec, Codec::pcma());
    assert_eq!(ba.codec, Codec::pcma());
    assert_eq!(
        aa.telephone_event.as_ref().map(|c| c.payload_type),
        Some(101)
    );
    assert_eq!(
        ba.telephone_event.as_ref().map(|c| c.payload_type),
        Some(101)
    );
    assert_eq!(aa.remote, Some("192.0.2.2:5000".parse().unwrap()));
    assert_eq!(ba.remote, Some("192.0.2.1:4000".parse().unwrap()));
    assert_eq!((aa.local_port, ba.local_port), (4000, 5000));
    assert_eq!(a.current_local(), Some(offer.clone()));
    assert_eq!(b.current_local(), Some(answer.clone()));
    assert_eq!(a.current_remote().unwrap().to_bytes(), answer);
    assert_eq!(b.current_remote().unwrap().to_bytes(), offer);
}

#[test]
fn hold_and_retrieve_from_our_side() {
    let (mut a, mut b) = (alice(), bob());
    exchange(&mut a, &mut b);
    a.set_direction(Direction::SendOnly);
    let (offer, answer) = exchange(&mut a, &mut b);
    assert!(text(&offer).contains("a=sendonly\r\n"));
    assert!(text(&answer).contains("a=recvonly\r\n"));
    assert_eq!((version(&offer), version(&answer)), (2, 2));
    assert_eq!(audio(&a).local_direction, Direction::SendOnly);
    assert_eq!(audio(&a).remote_direction, Direction::RecvOnly);
    assert_eq!(
        audio(&b).remote_direction,
        Direction::SendOnly,
        "bob sees he is held"
    );
    assert_eq!(audio(&b).local_direction, Direction::RecvOnly);
    // retrieve
    a.set_direction(Direction::SendRecv);
    let (offer, answer) = exchange(&mut a, &mut b);
    assert!(text(&offer).contains("a=sendrecv\r\n") && text(&answer).contains("a=sendrecv\r\n"));
    assert_eq!((version(&offer), version(&answer)), (3, 3));
    assert_eq!(audio(&b).remote_direction, Direction::SendRecv);
    // the session id never changes
    assert_eq!(
        SessionDescription::parse(&offer)
            .unwrap()
            .origin()
            .session_id,
        1000
    );
}

#[test]
fn hold_offered_by_a_sipp_like_peer() {
    // reinvite_hold_resume.xml: sendrecv (v1), sendonly (v2), sendrecv (v3).
    let bodies: Vec<String> = sipp_sdps()
        .into_iter()
        .filter(|(name, _)| name == "reinvite_hold_resume.xml")
        .map(|(_, t)| t)
        .collect();
    assert_eq!(bodies.len(), 3);
    let mut b = bob();
    b.set_local(LocalCapabilities {
        codecs: vec![Codec::pcmu()],
        ..b.local().clone()
    });
    let mut seen = Vec::new();
    for body in &bodies {
        b.receive_offer(body.as_bytes()).unwrap();
        let answer = b.create_answer().unwrap();
        seen.push((version(&answer), audio(&b).local_direction));
    }
    assert_eq!(
        seen,
        [
            (1, Direction::SendRecv),
            (2, Direction::RecvOnly),
            (3, Direction::SendRecv)
        ]
    );
}

#[test]
fn an_unchanged_description_keeps_its_version() {
    let (mut a, mut b) = (alice(), bob());
    let (offer1, answer1) = exchange(&mut a, &mut b);
    // A session refresh: same offer, same version, same bytes (RFC 3264 §8).
    let (offer2, answer2) = exchange(&mut a, &mut b);
    assert_eq!(offer2, offer1);
    assert_eq!(answer2, answer1);
    // Bob re-offers (an offerless re-INVITE): his offer is his answer, unchanged.
    let (offer3, _) = exchange(&mut b, &mut a);
    assert_eq!(offer3, answer1);
    assert_eq!(b.current_local(), Some(answer1));
}

#[test]
fn a_refused_offer_rolls_back_and_the_next_version_still_moves_on() {
    let (mut a, mut b) = (alice(), bob());
    let (offer1, _) = exchange(&mut a, &mut b);
    let negotiated = a.negotiated().cloned();
    a.set_direction(Direction::SendOnly);
    let hold = a.create_offer().unwrap();
    assert_eq!(version(&hold), 2);
    a.rollback(); // 491
    assert_eq!(a.state(), SignalingState::Stable);
    assert_eq!(a.current_local(), Some(offer1.clone()));
    assert_eq!(a.negotiated().cloned(), negotiated);
    // The same hold again: identical to what the peer saw as version 2.
    assert_eq!(a.create_offer().unwrap(), hold);
    a.rollback();
    // Back to the first content: it differs from the last sent, so version 3.
    a.set_direction(Direction::SendRecv);
    let offer3 = a.create_offer().unwrap();
    assert_eq!(version(&offer3), 3);
    assert_eq!(
        text(&offer3),
        text(&offer1).replace("o=tandem 1000 1 ", "o=tandem 1000 3 ")
    );
}

#[test]
fn a_re_offer_keeps_every_m_line_and_the_negotiated_payload_numbers() {
    let mut oa = OfferAnswer::new(LocalCapabilities::default(), 9);
    oa.receive_offer(MULTI_STREAM_OFFER.as_bytes()).unwrap();
    let answer = oa.create_answer().unwrap();
    assert_eq!(
        m_lines(&answer),
        [
            "m=video 0 RTP/AVP 96 31",
            "m=audio 9 RTP/AVPF 8 0 96",
            "m=image 0 udptl t38"
        ]
    );
    let reoffer = oa.create_offer().unwrap();
    // Our preference order, telephone-event on the 96 negotiated (not our 101).
    assert_eq!(
        m_lines(&reoffer),
        [
            "m=video 0 RTP/AVP 96 31",
            "m=audio 9 RTP/AVPF 0 8 96",
            "m=image 0 udptl t38"
        ]
    );
    assert!(text(&reoffer).contains("a=rtpmap:96 telephone-event/8000\r\na=fmtp:96 0-16\r\n"));
    assert_eq!(version(&reoffer), 2);
    oa.rollback();
    // Audio off, messaging on: audio keeps its place with port 0, messaging is added.
    oa.set_local(LocalCapabilities {
        audio: false,
        message: Some(MessageCapabilities::default()),
        ..LocalCapabilities::default()
    });
    let reoffer = oa.create_offer().unwrap();
    assert_eq!(
        m_lines(&reoffer),
        [
            "m=video 0 RTP/AVP 96 31",
            "m=audio 0 RTP/AVPF 8 0 96",
            "m=image 0 udptl t38",
            "m=message 5060 sip null"
        ]
    );
}

#[test]
fn a_new_stream_reuses_a_disabled_slot_of_its_kind() {
    let mut oa = OfferAnswer::new(LocalCapabilities::default(), 9);
    let offer = format!("{BASIC_OFFER}m=message 0 sip null\r\n");
    oa.receive_offer(offer.as_bytes()).unwrap();
    oa.create_answer().unwrap();
    oa.set_local(LocalCapabilities {
        message: Some(MessageCapabilities::default()),
        ..LocalCapabilities::default()
    });
    let reoffer = oa.create_offer().unwrap();
    assert_eq!(
        m_lines(&reoffer),
        ["m=audio 9 RTP/AVP 0 8 101", "m=message 5060 sip null"]
    );
}

#[test]
fn re_offer_payload_numbers_never_collide() {
    // They put telephone-event on 96, where our opus lives.
    let local = LocalCapabilities {
        codecs: vec![
            Codec {
                channels: Some(2),
                ..Codec::new(96, "opus", 48000)
            },
            Codec::pcmu(),
            Codec::telephone_event(101),
        ],
        ..LocalCapabilities::default()
    };
    let mut oa = OfferAnswer::new(local, 9);
    let offer = "v=0\r\no=a 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\n\
                 m=audio 4000 RTP/AVP 0 96\r\na=rtpmap:96 telephone-event/8000\r\n";
    oa.receive_offer(offer.as_bytes()).unwrap();
    oa.create_answer().unwrap();
    let reoffer = oa.create_offer().unwrap();
    assert_eq!(m_lines(&reoffer), ["m=audio 9 RTP/AVP 97 0 96"]);
    assert!(text(&reoffer).contains("a=rtpmap:97 opus/48000/2\r\n"));
    assert!(text(&reoffer).contains("a=rtpmap:96 telephone-event/8000\r\n"));
}

#[test]
fn answers_that_do_not_fit_the_offer_are_refused() {
    let head = "v=0\r\no=b 1 1 IN IP4 192.0.2.2\r\ns=-\r\nc=IN IP4 192.0.2.2\r\nt=0 0\r\n";
    let cases = [
        (
            format!("{head}m=audio 5000 RTP/AVP 0\r\nm=audio 5002 RTP/AVP 0\r\n"),
            "2 m= lines answered, 1 offered",
        ),
        (
            format!("{head}m=video 5000 RTP/AVP 31\r\n"),
            "m= line 0 is video, audio was offered",
        ),
        (
            format!("{head}m=audio 5000 RTP/AVP 18\r\n"),
            "m= line 0 answers format 18, which was not offered",
        ),
        (
            format!("{head}m=audio 5000 RTP/AVP 97\r\na=rtpmap:97 iLBC/8000\r\n"),
            "m= line 0 answers format 97, which was not offered",
        ),
        (
            format!("{head}m=audio 5000 RTP/SAVP 0\r\n"),
            "m= line 0 answers transport RTP/SAVP, RTP/AVP was offered",
        ),
        (
            format!("{head}m=audio 5000 RTP/AVP 101\r\n"),
            "m= line 0 accepted with no codec besides telephone-event",
        ),
    ];
    let (mut a, mut b) = (alice(), bob());
    exchange(&mut a, &mut b);
    let before = a.negotiated().cloned();
    a.set_direction(Direction::SendOnly);
    a.create_offer().unwrap();
    for (answer, reason) in cases {
        let err = a.receive_answer(answer.as_bytes()).unwrap_err();
        assert_eq!(
            err,
            NegotiationError::AnswerMismatch {
                reason: reason.into()
            }
        );
        assert!(err.to_string().contains(reason));
        assert_eq!(a.state(), SignalingState::HaveLocalOffer);
    }
    let err = a
        .receive_answer(format!("{head}m=audio 0 RTP/AVP 0\r\n").as_bytes())
        .unwrap_err();
    assert_eq!(err, NegotiationError::NothingAcceptable);
    assert!(matches!(
        a.receive_answer(b"garbage"),
        Err(NegotiationError::Parse(_))
    ));
    a.rollback();
    assert_eq!(a.state(), SignalingState::Stable);
    assert_eq!(a.negotiated().cloned(), before);
}

#[test]
fn a_stream_we_disabled_cannot_be_accepted() {
    let mut oa = OfferAnswer::new(LocalCapabilities::default(), 9);
    oa.receive_offer(RFC3264_OFFER.as_bytes()).unwrap();
    oa.create_answer().unwrap();
    oa.create_offer().unwrap();
    let head = "v=0\r\no=b 1 1 IN IP4 192.0.2.2\r\ns=-\r\nc=IN IP4 192.0.2.2\r\nt=0 0\r\n";
    let bad = format!("{head}m=audio 5000 RTP/AVP 0\r\nm=video 5002 RTP/AVP 31\r\n");
    assert_eq!(
        oa.receive_answer(bad.as_bytes()),
        Err(NegotiationError::AnswerMismatch {
            reason: "m= line 1 accepted, it was offered with port 0".into()
        })
    );
    let good = format!("{head}m=audio 5000 RTP/AVP 0\r\nm=video 0 RTP/AVP 31\r\n");
    let n = oa.receive_answer(good.as_bytes()).unwrap();
    assert_eq!(n.rejected[0].reason, "disabled in our offer");
}

#[test]
fn answers_may_renumber_or_omit_rtpmap_and_may_reject_streams() {
    let head = "v=0\r\no=b 1 1 IN IP4 192.0.2.2\r\ns=-\r\nc=IN IP4 0.0.0.0\r\nt=0 0\r\n";
    let mut a = alice();
    a.set_local(LocalCapabilities {
        message: Some(MessageCapabilities::default()),
        ..a.local().clone()
    });
    let offer = a.create_offer().unwrap();
    assert_eq!(
        m_lines(&offer),
        ["m=audio 4000 RTP/AVP 0 8 101", "m=message 5060 sip null"]
    );
    let answer = format!(
        "{head}m=audio 5000 RTP/AVP 8 97\r\na=rtpmap:97 telephone-event/8000\r\na=rtcp-xr:voip-metrics\r\nm=message 0 sip null\r\n"
    );
    let n = a.receive_answer(answer.as_bytes()).unwrap().clone();
    let audio = n.audio.unwrap();
    assert_eq!(audio.codec, Codec::pcma());
    assert_eq!(audio.telephone_event.map(|c| c.payload_type), Some(97));
    assert_eq!(audio.remote, None, "c=0.0.0.0");
    assert_eq!(
        audio.remote_direction,
        Direction::SendOnly,
        "a 0.0.0.0 peer does not receive"
    );
    assert_eq!(audio.ptime, Some(20), "ours when the answer has none");
    assert!(n.message.is_none());
    assert_eq!(n.rejected[0].reason, "rejected by the answerer");
    assert_eq!(n.ignored[0].name, "rtcp-xr");
}

#[test]
fn an_im_call_offers_and_reads_m_message() {
    let mut a = OfferAnswer::new(
        LocalCapabilities {
            audio: false,
            message: Some(MessageCapabilities::default()),
            ..LocalCapabilities::default()
        },
        5,
    );
    let offer = a.create_offer().unwrap();
    assert!(text(&offer).ends_with(
        "t=0 0\r\nm=message 5060 sip null\r\na=accept-types:text/plain text/html application/im-iscomposing+xml\r\n"
    ));
    let n = a.receive_answer(LYNC_IM_OFFER.as_bytes()).unwrap();
    let m = n.message.as_ref().unwrap();
    assert_eq!(m.accept_types, ["text/plain", "text/html"]);
    assert_eq!(m.remote_uri, None);
    assert!(n.audio.is_none());
}

#[test]
fn nothing_to_offer() {
    let mut oa = OfferAnswer::new(
        LocalCapabilities {
            audio: false,
            ..LocalCapabilities::default()
        },
        1,
    );
    assert_eq!(oa.create_offer(), Err(NegotiationError::NothingToOffer));
    assert_eq!(oa.state(), SignalingState::Stable);
    let mut oa = OfferAnswer::new(
        LocalCapabilities {
            audio_port: 0,
            ..LocalCapabilities::default()
        },
        1,
    );
    assert_eq!(oa.create_offer(), Err(NegotiationError::NothingToOffer));
    let only_events = LocalCapabilities {
        codecs: vec![Codec::telephone_event(101)],
        ..LocalCapabilities::default()
    };
    let mut oa = OfferAnswer::new(only_events, 1);
    assert_eq!(oa.create_offer(), Err(NegotiationError::NothingToOffer));
}
