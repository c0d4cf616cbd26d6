//! Answering offers: the rules of RFC 3264 §6, one test each.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod support;

use sdp_offer_answer::{
    Codec, Direction, IgnoredAttribute, LocalCapabilities, MediaKind, MessageCapabilities,
    Negotiated, NegotiatedAudio, NegotiationError, OfferAnswer, SessionDescription, SignalingState,
};
use support::*;

fn answer_with(
    local: LocalCapabilities,
    offer: &str,
) -> Result<(String, Negotiated), NegotiationError> {
    let mut oa = OfferAnswer::new(local, 7);
    oa.receive_offer(offer.as_bytes())?;
    assert_eq!(oa.state(), SignalingState::HaveRemoteOffer);
    let answer = oa.create_answer()?;
    assert_eq!(oa.state(), SignalingState::Stable);
    let answer = String::from_utf8(answer.to_vec()).unwrap();
    check_answer_shape(offer, &answer);
    Ok((answer, oa.negotiated().unwrap().clone()))
}

fn answer(offer: &str) -> (String, Negotiated) {
    answer_with(LocalCapabilities::default(), offer).unwrap()
}

fn audio(n: &Negotiated) -> &NegotiatedAudio {
    n.audio.as_ref().expect("audio negotiated")
}

/// RFC 3264 §6: one m= line per offered one, same order, same media and proto; a rejected
/// one has port 0 and formats from the offer. And our answer is SDP webrtc-sdp accepts.
fn check_answer_shape(offer: &str, answer: &str) {
    let offer = SessionDescription::parse(offer.as_bytes()).unwrap();
    let parsed = SessionDescription::parse(answer.as_bytes()).unwrap();
    assert_eq!(parsed.to_bytes(), answer.as_bytes());
    assert_eq!(parsed.media().len(), offer.media().len(), "{answer}");
    for (o, a) in offer.media().iter().zip(parsed.media()) {
        assert_eq!(o.kind(), a.kind(), "{answer}");
        assert_eq!(o.proto(), a.proto(), "{answer}");
        if a.port() == 0 {
            assert!(
                a.formats().iter().all(|f| o.formats().contains(f)),
                "{answer}"
            );
        }
    }
    assert!(webrtc_sdp::parse_sdp(answer, false).is_ok(), "{answer}");
}

#[test]
fn rfc3264_offer_gets_audio_and_a_rejected_video_byte_for_byte() {
    let (sdp, n) = answer(RFC3264_OFFER);
    assert_eq!(
        sdp,
        "v=0\r\no=tandem 7 1 IN IP4 127.0.0.1\r\ns=tandem\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
         m=audio 9 RTP/AVP 0 8\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\na=ptime:20\r\na=sendrecv\r\n\
         m=video 0 RTP/AVP 31 32\r\n"
    );
    let a = audio(&n);
    assert_eq!(
        a.codec,
        Codec {
            fmtp: None,
            ..Codec::pcmu()
        }
    );
    assert_eq!(a.codecs, [Codec::pcmu(), Codec::pcma()]);
    assert_eq!(a.telephone_event, None);
    assert_eq!(
        a.remote, None,
        "host.atlanta.example.com is a name, not resolved here"
    );
    assert_eq!(a.local_port, 9);
    assert_eq!(n.rejected.len(), 1);
    assert_eq!(
        (n.rejected[0].index, &n.rejected[0].kind),
        (1, &MediaKind::Video)
    );
    assert_eq!(n.rejected[0].reason, "video not supported");
}

#[test]
fn codecs_in_the_offerers_order_with_its_payload_numbers() {
    let offer = "v=0\r\no=a 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\n\
                 m=audio 4000 RTP/AVP 18 8 0 96\r\na=rtpmap:96 telephone-event/8000\r\na=fmtp:96 0-15\r\n";
    let (sdp, n) = answer(offer);
    assert!(sdp.contains("m=audio 9 RTP/AVP 8 0 96\r\n"), "{sdp}");
    assert!(
        sdp.contains("a=rtpmap:96 telephone-event/8000\r\na=fmtp:96 0-16\r\n"),
        "{sdp}"
    );
    assert!(!sdp.contains("101"), "{sdp}");
    let a = audio(&n);
    assert_eq!(a.codec.name, "PCMA");
    assert_eq!(
        a.codecs.iter().map(|c| c.payload_type).collect::<Vec<_>>(),
        [8, 0]
    );
    let te = a.telephone_event.as_ref().unwrap();
    assert_eq!((te.payload_type, te.fmtp.as_deref()), (96, Some("0-15")));
    assert_eq!(a.remote, Some("192.0.2.1:4000".parse().unwrap()));
}

#[test]
fn dynamic_payload_types_match_by_name_and_rate() {
    let local = LocalCapabilities {
        codecs: vec![
            Codec {
                channels: Some(2),
                fmtp: Some("useinbandfec=1".into()),
                ..Codec::new(111, "opus", 48000)
            },
            Codec::pcmu(),
            Codec::telephone_event(101),
        ],
        ..LocalCapabilities::default()
    };
    let (sdp, n) = answer_with(local, LINPHONE_OFFER).unwrap();
    // opus on 96, PCMU; of the three telephone-events only the 8000 Hz one (100) is ours.
    assert!(sdp.contains("m=audio 9 RTP/AVP 96 0 100\r\n"), "{sdp}");
    assert!(
        sdp.contains("a=rtpmap:96 opus/48000/2\r\na=fmtp:96 useinbandfec=1\r\n"),
        "{sdp}"
    );
    let a = audio(&n);
    assert_eq!((a.codec.payload_type, a.codec.name.as_str()), (96, "opus"));
    assert_eq!(
        a.telephone_event.as_ref().map(|c| c.payload_type),
        Some(100)
    );
    // The session-level a=rtcp-xr is kept in the model; the media-level rtcp-fb reported.
    assert!(
        n.ignored
            .iter()
            .any(|i| i.name == "rtcp-fb" && i.value.as_deref() == Some("* trr-int 1000"))
    );
}

#[test]
fn telephone_event_on_96_is_negotiated_as_96() {
    let offer = "v=0\r\no=a 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\n\
                 m=audio 4000 RTP/AVP 0 96\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:96 telephone-event/8000\r\n";
    let (sdp, n) = answer(offer);
    assert!(sdp.contains("m=audio 9 RTP/AVP 0 96\r\n"), "{sdp}");
    let te = audio(&n).telephone_event.clone().unwrap();
    assert_eq!(te.payload_type, 96);
    assert!(te.is_telephone_event());
}

#[test]
fn no_common_codec_is_refused_and_the_state_stays_stable() {
    let mut oa = OfferAnswer::new(LocalCapabilities::default(), 1);
    let g729 = "v=0\r\no=a 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 18\r\n";
    let err = oa.receive_offer(g729.as_bytes()).unwrap_err();
    assert_eq!(err, NegotiationError::NoCommonCodec);
    assert_eq!(err.warning_code(), 305);
    assert_eq!(
        err.to_string(),
        "Incompatible media format: no common codec"
    );
    assert_eq!(oa.state(), SignalingState::Stable);
    // telephone-event alone is no codec
    let te_only = "v=0\r\no=a 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\n\
                   m=audio 4000 RTP/AVP 101\r\na=rtpmap:101 telephone-event/8000\r\n";
    assert_eq!(
        oa.receive_offer(te_only.as_bytes()),
        Err(NegotiationError::NoCommonCodec)
    );
    // nothing we take at all
    let video = "v=0\r\no=a 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\nm=video 4000 RTP/AVP 31\r\n";
    let err = oa.receive_offer(video.as_bytes()).unwrap_err();
    assert_eq!(err, NegotiationError::NothingAcceptable);
    assert_eq!(err.warning_code(), 304);
    assert_eq!(oa.state(), SignalingState::Stable);
    assert!(oa.negotiated().is_none());
    // A broken offer is a parse error (a 400, not a 488).
    let err = oa.receive_offer(b"v=0\r\nm=audio\r\n").unwrap_err();
    assert!(matches!(err, NegotiationError::Parse(_)), "{err:?}");
    assert_eq!(err.warning_code(), 399);
}

#[test]
fn video_and_t38_are_rejected_in_place_beside_accepted_audio() {
    let (sdp, n) = answer(MULTI_STREAM_OFFER);
    let m: Vec<&str> = sdp.lines().filter(|l| l.starts_with("m=")).collect();
    assert_eq!(
        m,
        [
            "m=video 0 RTP/AVP 96 31",
            "m=audio 9 RTP/AVPF 8 0 96",
            "m=image 0 udptl t38"
        ]
    );
    assert!(
        sdp.contains("a=ptime:30\r\n"),
        "the offer's ptime is echoed: {sdp}"
    );
    let reasons: Vec<(usize, &str)> = n
        .rejected
        .iter()
        .map(|r| (r.index, r.reason.as_str()))
        .collect();
    assert_eq!(
        reasons,
        [(0, "video not supported"), (2, "image not supported")]
    );
    assert_eq!(audio(&n).ptime, Some(30));
    assert_eq!(
        audio(&n).telephone_event.as_ref().map(|c| c.payload_type),
        Some(96)
    );
}

#[test]
fn srtp_is_rejected_with_a_reason_and_its_attributes_stay_in_the_model() {
    let mut oa = OfferAnswer::new(LocalCapabilities::default(), 1);
    assert_eq!(
        oa.receive_offer(SRTP_OFFER.as_bytes()),
        Err(NegotiationError::NothingAcceptable)
    );
    // Beside an acceptable stream the SRTP one is rejected with its reason.
    let two = format!(
        "{}m=audio 4000 RTP/AVP 0\r\na=rtcp-xr:voip-metrics\r\na=x-unknown\r\n",
        SRTP_OFFER
    );
    let (sdp, n) = answer(&two);
    let m: Vec<&str> = sdp.lines().filter(|l| l.starts_with("m=")).collect();
    assert_eq!(m, ["m=audio 0 RTP/SAVP 0 101", "m=audio 9 RTP/AVP 0"]);
    assert_eq!(n.rejected[0].index, 0);
    assert_eq!(n.rejected[0].reason, "SRTP (RTP/SAVP) not supported");
    assert_eq!(
        n.ignored,
        [
            IgnoredAttribute {
                index: 1,
                name: "rtcp-xr".into(),
                value: Some("voip-metrics".into())
            },
            IgnoredAttribute {
                index: 1,
                name: "x-unknown".into(),
                value: None
            },
        ]
    );
    // The offer as received still has every line.
    assert_eq!(
        oa.pending_remote_offer().map(|o| o.to_bytes()),
        None,
        "the refused offer was not kept"
    );
    let mut oa = OfferAnswer::new(LocalCapabilities::default(), 1);
    oa.receive_offer(two.as_bytes()).unwrap();
    let kept = oa.pending_remote_offer().unwrap();
    assert_eq!(kept.to_bytes(), two.as_bytes());
    assert!(kept.media()[0].attribute("crypto").is_some());
}

#[test]
fn sdes_or_dtls_on_rtp_avp_is_rejected() {
    let crypto = SRTP_OFFER.replace("RTP/SAVP", "RTP/AVP");
    let extra = "m=audio 4002 RTP/AVP 8\r\n";
    let (_, n) = answer(&format!("{crypto}{extra}"));
    assert_eq!(
        n.rejected[0].reason,
        "SRTP (RTP/AVP with a=crypto) not supported"
    );
    let dtls = "v=0\r\no=a 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\n\
                a=fingerprint:sha-256 AA:BB\r\nm=audio 4000 RTP/AVP 0\r\nm=audio 4002 UDP/TLS/RTP/SAVPF 0\r\n";
    let err = answer_with(LocalCapabilities::default(), dtls).unwrap_err();
    assert_eq!(err, NegotiationError::NothingAcceptable);
    let mut oa = OfferAnswer::new(LocalCapabilities::default(), 1);
    let dtls_media = format!(
        "{}m=audio 4000 RTP/AVP 0\r\na=fingerprint:sha-256 AA:BB\r\n{extra}",
        &dtls[..dtls.find("a=fingerprint").unwrap()]
    );
    oa.receive_offer(dtls_media.as_bytes()).unwrap();
    oa.create_answer().unwrap();
    let n = oa.negotiated().unwrap();
    assert_eq!(
        n.rejected[0].reason,
        "DTLS-SRTP (a=fingerprint) not supported"
    );
    assert_eq!(audio(n).codec, Codec::pcma());
}

#[test]
fn lync_optional_encryption_is_answered_in_clear_and_the_crypto_reported() {
    let (sdp, n) = answer(LYNC_AUDIO_OFFER);
    assert!(sdp.contains("m=audio 9 RTP/AVP 0 8 101\r\n"), "{sdp}");
    assert!(!sdp.contains("crypto"));
    assert!(n.rejected.is_empty());
    let crypto = n.ignored.iter().find(|i| i.name == "crypto").unwrap();
    assert_eq!(crypto.index, 0);
    assert!(
        crypto
            .value
            .as_deref()
            .unwrap()
            .starts_with("2 AES_CM_128_HMAC_SHA1_80")
    );
    for name in [
        "x-ssrc-range",
        "rtcp-fb",
        "rtcp-rsize",
        "candidate",
        "encryption",
        "rtcp",
        "maxptime",
    ] {
        assert!(
            n.ignored.iter().any(|i| i.name == name),
            "{name} not reported"
        );
    }
    assert!(
        !n.ignored
            .iter()
            .any(|i| ["rtpmap", "fmtp", "ptime"].contains(&i.name.as_str()))
    );
    assert_eq!(audio(&n).remote, Some("192.0.2.8:12398".parse().unwrap()));
}

#[test]
fn direction_is_the_offers_reversed_and_intersected_with_ours() {
    use Direction::*;
    let cases = [
        (SendRecv, SendRecv, SendRecv),
        (SendOnly, SendRecv, RecvOnly),
        (RecvOnly, SendRecv, SendOnly),
        (Inactive, SendRecv, Inactive),
        (SendRecv, SendOnly, SendOnly),
        (SendOnly, SendOnly, Inactive),
        (RecvOnly, SendOnly, SendOnly),
        (SendRecv, Inactive, Inactive),
        (SendRecv, RecvOnly, RecvOnly),
    ];
    for (offered, ours, expected) in cases {
        let offer = BASIC_OFFER.replace("a=sendrecv", &format!("a={offered}"));
        let mut oa = OfferAnswer::new(LocalCapabilities::default(), 1);
        oa.set_direction(ours);
        oa.receive_offer(offer.as_bytes()).unwrap();
        let sdp = String::from_utf8(oa.create_answer().unwrap().to_vec()).unwrap();
        assert!(
            sdp.contains(&format!("a={expected}\r\n")),
            "{offered} {ours}: {sdp}"
        );
        let a = audio(oa.negotiated().unwrap());
        assert_eq!((a.remote_direction, a.local_direction), (offered, expected));
    }
    // A session-level attribute applies to the media without one.
    let session = BASIC_OFFER
        .replace("a=sendrecv\r\n", "")
        .replace("t=0 0\r\n", "t=0 0\r\na=sendonly\r\n");
    let (sdp, n) = answer(&session);
    assert!(sdp.contains("a=recvonly\r\n"), "{sdp}");
    assert_eq!(audio(&n).remote_direction, SendOnly);
}

#[test]
fn legacy_hold_with_zero_address_is_answered_recvonly() {
    let offer = BASIC_OFFER.replace("c=IN IP4 192.0.2.1", "c=IN IP4 0.0.0.0");
    let (sdp, n) = answer(&offer);
    assert!(sdp.contains("a=recvonly\r\n"), "{sdp}");
    let a = audio(&n);
    assert_eq!(a.remote, None);
    assert_eq!(a.remote_direction, Direction::SendOnly);
    assert_eq!(a.local_direction, Direction::RecvOnly);
    let inactive = offer.replace("a=sendrecv", "a=recvonly");
    let (sdp, n) = answer(&inactive);
    assert!(sdp.contains("a=inactive\r\n"), "{sdp}");
    assert_eq!(audio(&n).remote_direction, Direction::Inactive);
}

#[test]
fn ptime_is_echoed_or_ours() {
    let (sdp, n) = answer(&BASIC_OFFER.replace("a=sendrecv", "a=ptime:40"));
    assert!(sdp.contains("a=ptime:40\r\n"), "{sdp}");
    assert_eq!(audio(&n).ptime, Some(40));
    let (sdp, n) = answer(BASIC_OFFER);
    assert!(sdp.contains("a=ptime:20\r\n"), "{sdp}");
    assert_eq!(audio(&n).ptime, Some(20));
    let local = LocalCapabilities {
        ptime: None,
        ..LocalCapabilities::default()
    };
    let (sdp, n) = answer_with(local, BASIC_OFFER).unwrap();
    assert!(!sdp.contains("ptime"), "{sdp}");
    assert_eq!(audio(&n).ptime, None);
}

fn im() -> LocalCapabilities {
    LocalCapabilities {
        message: Some(MessageCapabilities::default()),
        audio: false,
        ..LocalCapabilities::default()
    }
}

#[test]
fn lync_style_message_offer_is_answered() {
    let offer = "v=0\r\no=- 0 0 IN IP4 192.0.2.7\r\ns=session\r\nc=IN IP4 192.0.2.7\r\nt=0 0\r\n\
                 m=message 5060 sip null\r\na=accept-types:text/plain\r\n";
    let (sdp, n) = answer_with(im(), offer).unwrap();
    assert_eq!(
        sdp,
        "v=0\r\no=tandem 7 1 IN IP4 127.0.0.1\r\ns=tandem\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
         m=message 5060 sip null\r\na=accept-types:text/plain\r\n"
    );
    let m = n.message.unwrap();
    assert_eq!(m.accept_types, ["text/plain"]);
    assert_eq!(m.remote_uri, None);
    assert!(n.audio.is_none());
    // The full Lync list intersected with ours, in Lync's order; our URI written.
    let local = LocalCapabilities {
        message: Some(MessageCapabilities {
            port: 5061,
            uri: Some("sip:tandem@example.com".into()),
            ..MessageCapabilities::default()
        }),
        ..im()
    };
    let (sdp, n) = answer_with(local, LYNC_IM_OFFER).unwrap();
    assert!(
        sdp.ends_with(
            "m=message 5061 sip sip:tandem@example.com\r\na=accept-types:text/plain text/html\r\n"
        ),
        "{sdp}"
    );
    assert_eq!(n.message.unwrap().accept_types, ["text/plain", "text/html"]);
}

#[test]
fn message_without_accept_types_means_text_plain_and_a_uri_is_the_peers() {
    let offer = "v=0\r\no=- 0 0 IN IP4 192.0.2.7\r\ns=-\r\nc=IN IP4 192.0.2.7\r\nt=0 0\r\n\
                 m=message 5060 sip sip:alice@example.com\r\n";
    let (sdp, n) = answer_with(im(), offer).unwrap();
    assert!(
        sdp.ends_with("m=message 5060 sip null\r\na=accept-types:text/plain\r\n"),
        "{sdp}"
    );
    let m = n.message.unwrap();
    assert_eq!(m.remote_uri.as_deref(), Some("sip:alice@example.com"));
    assert_eq!(m.accept_types, ["text/plain"]);
    // A wildcard takes all of ours.
    let star = format!("{offer}a=accept-types:*\r\n");
    let (_, n) = answer_with(im(), &star).unwrap();
    assert_eq!(
        n.message.unwrap().accept_types,
        MessageCapabilities::default().accept_types
    );
    // Nothing in common
    let cpim = format!("{offer}a=accept-types:message/cpim\r\n");
    assert_eq!(
        answer_with(im(), &cpim).unwrap_err(),
        NegotiationError::NothingAcceptable
    );
}

#[test]
fn msrp_and_disabled_messaging_are_rejected() {
    let msrp = "v=0\r\no=- 0 0 IN IP4 192.0.2.7\r\ns=-\r\nc=IN IP4 192.0.2.7\r\nt=0 0\r\n\
                m=audio 4000 RTP/AVP 0\r\n\
                m=message 7394 TCP/MSRP *\r\na=accept-types:text/plain\r\na=path:msrp://192.0.2.7:7394/x;tcp\r\n\
                m=message 5060 sip null\r\n";
    let local = LocalCapabilities {
        message: Some(MessageCapabilities::default()),
        ..LocalCapabilities::default()
    };
    let (sdp, n) = answer_with(local, msrp).unwrap();
    let m: Vec<&str> = sdp.lines().filter(|l| l.starts_with("m=")).collect();
    assert_eq!(
        m,
        [
            "m=audio 9 RTP/AVP 0",
            "m=message 0 TCP/MSRP *",
            "m=message 5060 sip null"
        ]
    );
    assert_eq!(n.rejected[0].reason, "MSRP not supported");
    assert!(n.message.is_some() && n.audio.is_some());
    // Audio only: the IM stream is rejected, and alone it is nothing acceptable.
    let (sdp, n) = answer(msrp);
    assert!(sdp.ends_with("m=message 0 sip null\r\n"), "{sdp}");
    assert_eq!(n.rejected[1].reason, "instant messaging not enabled");
    assert_eq!(
        answer_with(LocalCapabilities::default(), LYNC_IM_OFFER).unwrap_err(),
        NegotiationError::NothingAcceptable
    );
}

#[test]
fn im_only_rejects_offered_audio() {
    let offer = format!("{}m=message 5060 sip null\r\n", BASIC_OFFER);
    let (sdp, n) = answer_with(im(), &offer).unwrap();
    let m: Vec<&str> = sdp.lines().filter(|l| l.starts_with("m=")).collect();
    assert_eq!(m, ["m=audio 0 RTP/AVP 0", "m=message 5060 sip null"]);
    assert_eq!(n.rejected[0].reason, "audio not enabled");
}

#[test]
fn declined_and_extra_streams_stay_rejected() {
    let offer = "v=0\r\no=a 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\n\
                 m=audio 0 RTP/AVP 0\r\nm=audio 4002 RTP/AVP 8 0\r\nm=audio 4004 RTP/AVP 0\r\n";
    let (sdp, n) = answer(offer);
    let m: Vec<&str> = sdp.lines().filter(|l| l.starts_with("m=")).collect();
    assert_eq!(
        m,
        [
            "m=audio 0 RTP/AVP 0",
            "m=audio 9 RTP/AVP 8 0",
            "m=audio 0 RTP/AVP 0"
        ]
    );
    let reasons: Vec<&str> = n.rejected.iter().map(|r| r.reason.as_str()).collect();
    assert_eq!(
        reasons,
        [
            "declined by the offerer (port 0)",
            "only one audio stream is supported"
        ]
    );
    assert_eq!(audio(&n).remote, Some("192.0.2.1:4002".parse().unwrap()));
}

#[test]
fn every_real_world_offer_gets_a_well_formed_answer_or_a_488() {
    let local = LocalCapabilities {
        message: Some(MessageCapabilities::default()),
        ..LocalCapabilities::default()
    };
    let mut answered = 0;
    for (name, text) in real_world_sdps() {
        match answer_with(local.clone(), &text) {
            Ok(_) => answered += 1,
            Err(NegotiationError::NoCommonCodec | NegotiationError::NothingAcceptable) => {
                assert!(name == "srtp", "{name} refused");
            }
            Err(e) => panic!("{name}: {e}"),
        }
    }
    assert!(answered >= 20);
}

#[test]
fn the_local_capabilities_at_answer_time_are_used() {
    let mut oa = OfferAnswer::new(LocalCapabilities::default(), 1);
    oa.receive_offer(BASIC_OFFER.as_bytes()).unwrap();
    oa.set_local(LocalCapabilities {
        audio_port: 20000,
        address: "192.0.2.99".parse().unwrap(),
        ..LocalCapabilities::default()
    });
    let sdp = oa.create_answer().unwrap();
    let sdp = SessionDescription::parse(&sdp).unwrap();
    assert_eq!(sdp.media()[0].port(), 20000);
    assert_eq!(sdp.connection(), Some("192.0.2.99".parse().unwrap()));
    assert_eq!(sdp.origin().ip(), Some("192.0.2.99".parse().unwrap()));
}

#[test]
fn wrong_state_calls_are_refused_and_change_nothing() {
    let mut oa = OfferAnswer::new(LocalCapabilities::default(), 1);
    let err = oa.create_answer().unwrap_err();
    assert_eq!(
        err,
        NegotiationError::WrongState {
            op: "create_answer",
            state: SignalingState::Stable
        }
    );
    assert_eq!(
        err.to_string(),
        "create_answer is not allowed in signaling state Stable"
    );
    assert!(matches!(
        oa.receive_answer(BASIC_OFFER.as_bytes()),
        Err(NegotiationError::WrongState {
            op: "receive_answer",
            ..
        })
    ));
    oa.receive_offer(BASIC_OFFER.as_bytes()).unwrap();
    assert!(matches!(
        oa.receive_offer(BASIC_OFFER.as_bytes()),
        Err(NegotiationError::WrongState {
            op: "receive_offer",
            state: SignalingState::HaveRemoteOffer
        })
    ));
    assert!(matches!(
        oa.create_offer(),
        Err(NegotiationError::WrongState {
            op: "create_offer",
            ..
        })
    ));
    assert!(matches!(
        oa.receive_answer(BASIC_OFFER.as_bytes()),
        Err(NegotiationError::WrongState { .. })
    ));
    assert_eq!(oa.state(), SignalingState::HaveRemoteOffer);
    // We refuse their offer: back to Stable, nothing negotiated, nothing sent.
    oa.rollback();
    assert_eq!(oa.state(), SignalingState::Stable);
    assert!(
        oa.negotiated().is_none()
            && oa.current_local().is_none()
            && oa.pending_remote_offer().is_none()
    );
    assert!(matches!(
        oa.create_answer(),
        Err(NegotiationError::WrongState { .. })
    ));
}
