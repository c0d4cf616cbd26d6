//! What webrtc-sdp 0.3.17 does with the SDP a SIP peer sends: the measurements the design
//! of this crate rests on (see src/webrtc.rs). If an upgrade changes them, these fail and
//! the design is to be looked at again.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use webrtc_sdp::attribute_type::SdpAttribute;
use webrtc_sdp::parse_sdp;

const HEAD: &str = "v=0\r\no=- 1 1 IN IP4 10.0.0.1\r\ns=-\r\nc=IN IP4 10.0.0.1\r\nt=0 0\r\n";

fn warnings(sdp: &webrtc_sdp::SdpSession) -> Vec<String> {
    sdp.warnings.iter().map(ToString::to_string).collect()
}

#[test]
fn m_message_sections_are_dropped_with_their_attributes() {
    for m in [
        "m=message 5060 sip null",
        "m=message 5060 sip sip:bob@example.com",
        "m=message 7394 TCP/MSRP *",
        "m=image 4000 udptl t38",
    ] {
        let text = format!("{HEAD}m=audio 4000 RTP/AVP 0\r\n{m}\r\na=accept-types:text/plain\r\n");
        let sdp = parse_sdp(&text, false).unwrap();
        assert_eq!(sdp.media.len(), 1, "{m}: only the audio section is left");
        let printed = sdp.to_string();
        assert!(!printed.contains("m=message") && !printed.contains("m=image"));
        assert!(!printed.contains("accept-types"));
        let w = warnings(&sdp);
        assert!(
            w.iter().any(|w| w.contains("unsupported protocol")),
            "{w:?}"
        );
    }
}

#[test]
fn attributes_after_a_dropped_section_land_on_the_one_before() {
    // The a=sendonly of the m=message section is taken as the audio section's.
    let text = format!("{HEAD}m=audio 4000 RTP/AVP 0\r\nm=message 5060 sip null\r\na=sendonly\r\n");
    let sdp = parse_sdp(&text, false).unwrap();
    assert_eq!(sdp.media.len(), 1);
    assert!(
        sdp.media[0]
            .get_attributes()
            .iter()
            .any(|a| matches!(a, SdpAttribute::Sendonly))
    );
}

#[test]
fn unknown_attributes_are_dropped() {
    let text = format!(
        "{HEAD}m=audio 4000 RTP/SAVP 0\r\n\
         a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR|2^20|1:32\r\n\
         a=rtcp-xr:rcvr-rtt=all voip-metrics\r\na=path:msrp://10.0.0.1:7394/jshA7we;tcp\r\n\
         a=x-vendor:1\r\na=rtpmap:0 PCMU/8000\r\n"
    );
    let sdp = parse_sdp(&text, false).unwrap();
    let printed = sdp.to_string();
    for gone in ["crypto", "rtcp-xr", "path", "x-vendor"] {
        assert!(!printed.contains(gone), "{gone} kept: {printed}");
    }
    assert!(printed.contains("a=rtpmap:0 PCMU/8000"));
    assert_eq!(warnings(&sdp).len(), 4);
}

#[test]
fn some_valid_sdp_is_refused_outright() {
    let refused = [
        // RFC 8866 §5.6 e= and p= are valid session lines
        "v=0\r\no=- 1 1 IN IP4 10.0.0.1\r\ns=-\r\ne=alice@example.com\r\nc=IN IP4 10.0.0.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n".to_owned(),
        "v=0\r\no=- 1 1 IN IP4 10.0.0.1\r\ns=-\r\np=+1 555 0100\r\nc=IN IP4 10.0.0.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n".to_owned(),
        "v=0\r\no=- 1 1 IN IP4 10.0.0.1\r\ns=-\r\nu=http://example.com/\r\nc=IN IP4 10.0.0.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n".to_owned(),
        // k= is obsolete but legal
        format!("{HEAD}m=audio 4000 RTP/AVP 0\r\nk=prompt\r\n"),
        // a missing t= (common in sloppy SIP peers)
        "v=0\r\no=- 1 1 IN IP4 10.0.0.1\r\ns=-\r\nc=IN IP4 10.0.0.1\r\nm=audio 4000 RTP/AVP 0\r\n".to_owned(),
        // one unreadable rtpmap fails the whole description
        format!("{HEAD}m=audio 4000 RTP/AVP 0 97\r\na=rtpmap:97 foo\r\n"),
    ];
    for text in refused {
        assert!(parse_sdp(&text, false).is_err(), "accepted: {text}");
    }
}

#[test]
fn rtp_avp_audio_with_telephone_event_is_read() {
    let text = format!(
        "{HEAD}m=audio 4000 RTP/AVP 0 96\r\na=rtpmap:96 telephone-event/8000\r\na=fmtp:96 0-16\r\n\
         a=ptime:20\r\na=sendonly\r\n"
    );
    let sdp = parse_sdp(&text, false).unwrap();
    let rtpmaps: Vec<(u8, String, u32)> = sdp.media[0]
        .get_attributes()
        .iter()
        .filter_map(|a| match a {
            SdpAttribute::Rtpmap(m) => Some((m.payload_type, m.codec_name.clone(), m.frequency)),
            _ => None,
        })
        .collect();
    assert_eq!(rtpmaps, [(96, "telephone-event".to_owned(), 8000)]);
}
