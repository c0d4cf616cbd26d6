//! The line-preserving SDP model: byte-faithful round trips, what webrtc-sdp would drop kept,
//! rewriting for a relay, errors with line numbers, real-world inputs.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod support;

use std::net::IpAddr;

use sdp_offer_answer::{Codec, Direction, MediaKind, RtpParse, SdpError, SessionDescription};
use support::{LYNC_IM_OFFER, SRTP_OFFER, real_world_sdps};

fn parse(text: &str) -> SessionDescription {
    SessionDescription::parse(text.as_bytes()).unwrap_or_else(|e| panic!("{e}: {text}"))
}

#[test]
fn every_real_world_sdp_round_trips_byte_for_byte() {
    let all = real_world_sdps();
    assert!(all.len() >= 20, "only {} SDP bodies found", all.len());
    for (name, text) in all {
        let sdp = SessionDescription::parse(text.as_bytes())
            .unwrap_or_else(|e| panic!("{name}: {e}\n{text}"));
        assert_eq!(sdp.to_bytes(), text.as_bytes(), "{name}");
        assert!(!sdp.media().is_empty(), "{name}");
    }
}

#[test]
fn what_webrtc_sdp_drops_is_kept_in_the_model() {
    let text = format!(
        "{}m=message 5060 sip null\r\na=accept-types:text/plain\r\n\
         m=message 7394 TCP/MSRP *\r\na=accept-types:message/cpim\r\na=path:msrp://192.0.2.1:7394/jshA7we;tcp\r\n",
        SRTP_OFFER
    );
    let sdp = parse(&text);
    assert_eq!(sdp.to_bytes(), text.as_bytes());
    let kinds: Vec<&MediaKind> = sdp.media().iter().map(|m| m.kind()).collect();
    assert_eq!(
        kinds,
        [&MediaKind::Audio, &MediaKind::Message, &MediaKind::Message]
    );
    let audio = &sdp.media()[0];
    assert!(
        audio
            .attribute("crypto")
            .unwrap()
            .starts_with("1 AES_CM_128")
    );
    assert_eq!(
        audio.attribute("rtcp-xr"),
        Some("rcvr-rtt=all voip-metrics")
    );
    let names: Vec<&str> = audio.attributes().map(|(n, _)| n).collect();
    assert_eq!(
        names,
        ["rtpmap", "rtpmap", "crypto", "rtcp-xr", "ptime", "sendrecv"]
    );
    assert_eq!(audio.rtp_parse(), &RtpParse::WebrtcSdp);
    let im = &sdp.media()[1];
    assert_eq!(
        (im.port(), im.proto(), im.formats()),
        (5060, "sip", &["null".to_owned()][..])
    );
    assert_eq!(im.attribute("accept-types"), Some("text/plain"));
    assert_eq!(im.rtp_parse(), &RtpParse::NotRtp);
    assert!(im.codecs().is_empty());
    let msrp = &sdp.media()[2];
    assert_eq!(msrp.proto(), "TCP/MSRP");
    assert_eq!(
        msrp.attribute("path"),
        Some("msrp://192.0.2.1:7394/jshA7we;tcp")
    );
}

#[test]
fn lync_im_offer_is_read() {
    let sdp = parse(LYNC_IM_OFFER);
    assert_eq!(sdp.origin().username, "-");
    assert_eq!(sdp.connection(), Some("192.0.2.7".parse().unwrap()));
    let m = &sdp.media()[0];
    assert_eq!(m.kind(), &MediaKind::Message);
    assert_eq!(m.formats(), ["null"]);
}

#[test]
fn lines_webrtc_sdp_refuses_fall_back_to_our_reader() {
    // e=, p=, u= and a k= in the audio section are valid RFC 8866; a=rtpmap:97 is broken.
    let text = "v=0\r\no=- 1 1 IN IP4 10.0.0.1\r\ns=-\r\ne=alice@example.com\r\np=+1 555 0100\r\n\
                u=http://example.com/\r\nc=IN IP4 10.0.0.1\r\nm=audio 4000 RTP/AVP 0 96 97\r\n\
                k=prompt\r\na=rtpmap:96 telephone-event/8000\r\na=rtpmap:97 foo\r\n";
    let sdp = parse(text);
    assert_eq!(sdp.to_bytes(), text.as_bytes());
    let audio = &sdp.media()[0];
    assert!(
        matches!(audio.rtp_parse(), RtpParse::Fallback { reason } if reason.contains("rtpmap")),
        "{:?}",
        audio.rtp_parse()
    );
    let codecs = audio.codecs();
    assert_eq!(
        codecs.iter().map(|c| c.name.as_str()).collect::<Vec<_>>(),
        ["PCMU", "telephone-event"]
    );
    // The section alone (without the broken rtpmap and k=) is webrtc-sdp's again.
    let clean = parse(
        "v=0\r\no=- 1 1 IN IP4 10.0.0.1\r\ns=-\r\ne=alice@example.com\r\nc=IN IP4 10.0.0.1\r\n\
         m=audio 4000 RTP/AVP 0 96\r\na=rtpmap:96 telephone-event/8000\r\n",
    );
    assert_eq!(clean.media()[0].rtp_parse(), &RtpParse::WebrtcSdp);
    assert_eq!(clean.media()[0].codecs(), codecs);
}

#[test]
fn codecs_follow_the_m_line_with_static_names_and_fmtp() {
    let sdp = parse(
        "v=0\r\no=- 1 1 IN IP4 10.0.0.1\r\ns=-\r\nc=IN IP4 10.0.0.1\r\nt=0 0\r\n\
         m=audio 4000 RTP/AVP 18 9 111 101 0 99 200\r\na=rtpmap:111 opus/48000/2\r\n\
         a=fmtp:111 minptime=10;useinbandfec=1\r\na=rtpmap:101 telephone-event/8000\r\n\
         a=fmtp:101 0-15\r\na=fmtp:18 annexb=no\r\na=ptime:30\r\n",
    );
    let m = &sdp.media()[0];
    let got: Vec<String> = m.codecs().iter().map(|c| format!("{c:?}")).collect();
    let expected: Vec<String> = [
        (18, "G729", 8000, None, Some("annexb=no")),
        (9, "G722", 8000, None, None),
        (
            111,
            "opus",
            48000,
            Some(2),
            Some("minptime=10;useinbandfec=1"),
        ),
        (101, "telephone-event", 8000, None, Some("0-15")),
        (0, "PCMU", 8000, None, None),
    ]
    .iter()
    .map(|&(payload_type, name, clock_rate, channels, fmtp)| Codec {
        payload_type,
        name: name.to_owned(),
        clock_rate,
        channels,
        fmtp: fmtp.map(str::to_owned),
    })
    .map(|c| format!("{c:?}"))
    .collect();
    assert_eq!(
        got, expected,
        "99 has no rtpmap and 200 is no payload type: both left out"
    );
    assert_eq!(m.ptime(), Some(30));
    assert_eq!(m.fmtp(101), Some("0-15"));
}

#[test]
fn direction_falls_back_to_session_level_then_sendrecv() {
    let sdp = parse(
        "v=0\r\no=- 1 1 IN IP4 10.0.0.1\r\ns=-\r\nc=IN IP4 10.0.0.1\r\nt=0 0\r\na=sendonly\r\n\
         m=audio 4000 RTP/AVP 0\r\nm=audio 4002 RTP/AVP 0\r\na=inactive\r\n",
    );
    assert_eq!(sdp.direction(), Some(Direction::SendOnly));
    assert_eq!(sdp.media()[0].direction(), Direction::SendOnly);
    assert_eq!(sdp.media()[1].direction(), Direction::Inactive);
    let plain = parse(support::BASIC_OFFER);
    assert_eq!(plain.media()[0].direction(), Direction::SendRecv);
    assert!(!plain.media()[0].is_legacy_hold());
}

#[test]
fn legacy_hold_reports_the_attribute_as_written() {
    let sdp = parse(
        "v=0\r\no=- 1 2 IN IP4 10.0.0.1\r\ns=-\r\nc=IN IP4 0.0.0.0\r\nt=0 0\r\n\
         m=audio 4000 RTP/AVP 0\r\nm=audio 4002 RTP/AVP 0\r\nc=IN IP4 10.0.0.2\r\n",
    );
    assert_eq!(sdp.media()[0].direction(), Direction::SendRecv);
    assert!(sdp.media()[0].is_legacy_hold());
    assert_eq!(sdp.media()[0].connection(), None, "no media-level c=");
    assert_eq!(
        sdp.media()[0].effective_connection(),
        Some("0.0.0.0".parse().unwrap())
    );
    assert!(!sdp.media()[1].is_legacy_hold(), "its own c= overrides");
    assert_eq!(
        sdp.media()[1].connection(),
        Some("10.0.0.2".parse().unwrap())
    );
}

#[test]
fn a_relay_rewrites_ports_addresses_and_version_and_nothing_else() {
    let text = format!(
        "{}m=message 5060 sip null\r\na=accept-types:text/plain\r\n",
        SRTP_OFFER.replace("a=sendrecv\r\n", "a=sendrecv\r\nc=IN IP4 198.51.100.9\r\n")
    );
    let mut sdp = parse(&text);
    let relay: IpAddr = "203.0.113.5".parse().unwrap();
    sdp.set_connection(relay);
    sdp.set_origin_version(9);
    sdp.media_mut()[0].set_port(30000);
    let out = String::from_utf8(sdp.to_bytes().to_vec()).unwrap();
    let expected = text
        .replace("c=IN IP4 192.0.2.1", "c=IN IP4 203.0.113.5")
        .replace("c=IN IP4 198.51.100.9", "c=IN IP4 203.0.113.5")
        .replace("o=bob 2808844564 2808844564", "o=bob 2808844564 9")
        .replace("m=audio 49172 RTP/SAVP", "m=audio 30000 RTP/SAVP");
    assert_eq!(out, expected);
    assert_eq!(sdp.origin().version, 9);
    assert_eq!(sdp.connection(), Some(relay));
    assert_eq!(sdp.media()[0].connection(), Some(relay));
    assert_eq!(sdp.media()[0].port(), 30000);
    assert_eq!(sdp.media()[1].effective_connection(), Some(relay));
    assert_eq!(SessionDescription::parse(&sdp.to_bytes()).unwrap(), sdp);
}

#[test]
fn set_connection_inserts_a_session_line_when_a_section_has_none() {
    let mut sdp =
        parse("v=0\r\no=- 1 1 IN IP4 10.0.0.1\r\ns=-\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n");
    assert_eq!(sdp.connection(), None);
    assert_eq!(sdp.media()[0].effective_connection(), None);
    sdp.set_connection("2001:db8::1".parse().unwrap());
    sdp.set_origin_address("2001:db8::1".parse().unwrap());
    assert_eq!(
        &sdp.to_bytes()[..],
        b"v=0\r\no=- 1 1 IN IP6 2001:db8::1\r\ns=-\r\nc=IN IP6 2001:db8::1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n"
    );
    assert_eq!(
        sdp.media()[0].effective_connection(),
        Some("2001:db8::1".parse().unwrap())
    );
}

#[test]
fn set_direction_replaces_the_media_attribute_in_place() {
    let mut sdp = parse(support::BASIC_OFFER);
    sdp.media_mut()[0].set_direction(Direction::SendOnly);
    let out = String::from_utf8(sdp.to_bytes().to_vec()).unwrap();
    assert_eq!(
        out,
        support::BASIC_OFFER.replace("a=sendrecv", "a=sendonly")
    );
    assert_eq!(sdp.media()[0].direction(), Direction::SendOnly);
}

#[test]
fn origin_and_connection_are_read() {
    let sdp = parse(
        "v=0\r\no=jdoe 18446744073709551615 7 IN IP4 host.example.com\r\ns=Talk\r\n\
         c=IN IP4 224.2.17.12/127\r\nt=0 0\r\nm=audio 49170/2 RTP/AVP 0\r\nc=IN IP4 media.example.com\r\n",
    );
    let o = sdp.origin();
    assert_eq!(
        (
            o.username.as_str(),
            o.session_id,
            o.version,
            o.address.as_str()
        ),
        ("jdoe", u64::MAX, 7, "host.example.com")
    );
    assert_eq!(o.ip(), None);
    assert_eq!(sdp.session_name(), Some("Talk"));
    assert_eq!(sdp.connection(), Some("224.2.17.12".parse().unwrap()));
    let m = &sdp.media()[0];
    assert_eq!((m.port(), m.port_count()), (49170, Some(2)));
    assert_eq!(m.connection(), None, "a domain name is not an IP");
    assert_eq!(m.effective_connection(), None);
}

#[test]
fn malformed_input_is_refused_with_the_line() {
    let cases: &[(&[u8], SdpError)] = &[
        (b"", SdpError::Empty),
        (b"\r\n\r\n", SdpError::MissingVersion),
        (
            b"o=- 1 1 IN IP4 1.2.3.4\r\nv=0\r\n",
            SdpError::MissingVersion,
        ),
        (
            b"v=1\r\n",
            SdpError::UnsupportedVersion { value: "1".into() },
        ),
        (b"v=0\r\ns=-\r\n", SdpError::MissingOrigin),
        (
            b"v=0\r\nm=audio 4000 RTP/AVP 0\r\no=- 1 1 IN IP4 1.2.3.4\r\n",
            SdpError::MissingOrigin,
        ),
        (
            b"v=0\r\no=- 1 1 IN IP4\r\n",
            SdpError::BadOrigin {
                line: 2,
                reason: "expected 6 fields",
            },
        ),
        (
            b"v=0\r\no=- x 1 IN IP4 1.2.3.4\r\n",
            SdpError::BadOrigin {
                line: 2,
                reason: "session id is not a number",
            },
        ),
        (
            b"v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\nhello\r\n",
            SdpError::BadLine { line: 3 },
        ),
        (
            b"v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\n\xff=1\r\n",
            SdpError::NotUtf8 { line: 3 },
        ),
        (
            b"v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\nc=IN IP4\r\n",
            SdpError::BadConnection {
                line: 3,
                reason: "expected 3 fields",
            },
        ),
        (
            b"v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\nm=audio\r\n",
            SdpError::BadMedia {
                line: 3,
                reason: "no port",
            },
        ),
        (
            b"v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\nm=audio 4000 RTP/AVP\r\n",
            SdpError::BadMedia {
                line: 3,
                reason: "no format",
            },
        ),
        (
            b"v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\nm=audio 70000 RTP/AVP 0\r\n",
            SdpError::BadMedia {
                line: 3,
                reason: "bad port",
            },
        ),
        (
            b"v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\nm=audio 4000 RTP/AVP 0\r\nc=IN\r\n",
            SdpError::BadConnection {
                line: 4,
                reason: "expected 3 fields",
            },
        ),
    ];
    for (input, expected) in cases {
        assert_eq!(
            SessionDescription::parse(input).as_ref().err(),
            Some(expected),
            "{}",
            String::from_utf8_lossy(input)
        );
        assert!(!expected.to_string().is_empty());
    }
}

#[test]
fn static_payload_without_rtpmap_gets_its_rfc3551_name() {
    let sdp = parse(support::SIP_CORE_SDP);
    assert_eq!(sdp.media()[0].codecs(), [Codec::pcmu(), Codec::pcma()]);
}

#[test]
fn rewriting_works_whatever_the_session_line_order() {
    let mut sdp = parse("v=0\r\na=tool:x\r\no=- 1 1 IN IP4 10.0.0.1\r\nm=audio 4000 RTP/AVP 0\r\n");
    sdp.set_connection("10.0.0.2".parse().unwrap());
    sdp.set_origin_version(2);
    assert_eq!(
        &sdp.to_bytes()[..],
        b"v=0\r\nc=IN IP4 10.0.0.2\r\na=tool:x\r\no=- 1 2 IN IP4 10.0.0.1\r\nm=audio 4000 RTP/AVP 0\r\n"
    );
    assert_eq!(sdp.origin().version, 2);
}
