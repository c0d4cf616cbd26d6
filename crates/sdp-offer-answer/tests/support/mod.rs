//! Real-world SDP bodies shared by the tests.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;

/// RFC 3264 §10.1, Alice's offer (audio and video).
pub const RFC3264_OFFER: &str = "v=0\r\n\
o=alice 2890844526 2890844526 IN IP4 host.atlanta.example.com\r\n\
s=\r\n\
c=IN IP4 host.atlanta.example.com\r\n\
t=0 0\r\n\
m=audio 49170 RTP/AVP 0 8 97\r\n\
a=rtpmap:0 PCMU/8000\r\n\
a=rtpmap:8 PCMA/8000\r\n\
a=rtpmap:97 iLBC/8000\r\n\
m=video 51372 RTP/AVP 31 32\r\n\
a=rtpmap:31 H261/90000\r\n\
a=rtpmap:32 MPV/90000\r\n";

/// A plain audio offer as the sip-dialog tests send it.
pub const BASIC_OFFER: &str = "v=0\r\no=alice 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\na=sendrecv\r\n";

/// crates/sip-core/tests/support/mod.rs: PCMA without an rtpmap.
pub const SIP_CORE_SDP: &str = "v=0\r\no=alice 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0 8\r\na=rtpmap:0 PCMU/8000\r\n";

/// An SDES-SRTP offer (RFC 4568 §7.1 style) with RTCP XR (RFC 3611 §5.1).
pub const SRTP_OFFER: &str = "v=0\r\n\
o=bob 2808844564 2808844564 IN IP4 192.0.2.1\r\n\
s=SRTP call\r\n\
c=IN IP4 192.0.2.1\r\n\
t=0 0\r\n\
m=audio 49172 RTP/SAVP 0 101\r\n\
a=rtpmap:0 PCMU/8000\r\n\
a=rtpmap:101 telephone-event/8000\r\n\
a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR|2^20|1:32\r\n\
a=rtcp-xr:rcvr-rtt=all voip-metrics\r\n\
a=ptime:20\r\n\
a=sendrecv\r\n";

/// Lync / Skype for Business starting an IM session (MS-SDPEXT).
pub const LYNC_IM_OFFER: &str = "v=0\r\n\
o=- 0 0 IN IP4 192.0.2.7\r\n\
s=session\r\n\
c=IN IP4 192.0.2.7\r\n\
t=0 0\r\n\
m=message 5060 sip null\r\n\
a=accept-types:text/plain multipart/alternative image/gif text/rtf text/html application/x-ms-ink application/ms-imdn+xml text/x-msmsgsinvite\r\n";

/// Lync audio with SDES marked optional, ICE candidates and a vendor attribute.
pub const LYNC_AUDIO_OFFER: &str = "v=0\r\n\
o=- 0 0 IN IP4 192.0.2.8\r\n\
s=session\r\n\
c=IN IP4 192.0.2.8\r\n\
b=CT:99980\r\n\
t=0 0\r\n\
m=audio 12398 RTP/AVP 114 9 112 111 0 8 116 115 4 97 13 118 101\r\n\
a=x-ssrc-range:3397474648-3397474648\r\n\
a=rtcp-fb:* x-message app send:dsh recv:dsh\r\n\
a=rtcp-rsize\r\n\
a=label:main-audio\r\n\
a=x-source:main-audio\r\n\
a=ice-ufrag:Dq+4\r\n\
a=ice-pwd:ZKFIW2GUzYf2FubL0MqOVP34\r\n\
a=candidate:1 1 UDP 2130706431 192.0.2.8 12398 typ host \r\n\
a=x-candidate-ipv6:2 1 UDP 33553407 2001:db8::8 19418 typ host \r\n\
a=crypto:2 AES_CM_128_HMAC_SHA1_80 inline:Sqv+u2HMFb4jVwb7EwRDZ2vm1omXc6UQPj5GSjeL|2^31\r\n\
a=maxptime:200\r\n\
a=rtcp:12399\r\n\
a=rtpmap:114 x-msrta/16000\r\n\
a=fmtp:114 bitrate=29000\r\n\
a=rtpmap:9 G722/8000\r\n\
a=rtpmap:112 G7221/16000\r\n\
a=fmtp:112 bitrate=24000\r\n\
a=rtpmap:111 SIREN/16000\r\n\
a=fmtp:111 bitrate=16000\r\n\
a=rtpmap:0 PCMU/8000\r\n\
a=rtpmap:8 PCMA/8000\r\n\
a=rtpmap:116 AAL2-G726-32/8000\r\n\
a=rtpmap:115 x-msrta/8000\r\n\
a=fmtp:115 bitrate=11800\r\n\
a=rtpmap:4 G723/8000\r\n\
a=rtpmap:97 RED/8000\r\n\
a=rtpmap:13 CN/8000\r\n\
a=rtpmap:118 CN/16000\r\n\
a=rtpmap:101 telephone-event/8000\r\n\
a=fmtp:101 0-16\r\n\
a=encryption:optional\r\n\
a=ptime:20\r\n";

/// Linphone / baresip style: opus, dynamic telephone-event on 96, RTCP XR.
pub const LINPHONE_OFFER: &str = "v=0\r\n\
o=alice 3126 1847 IN IP4 192.0.2.20\r\n\
s=Talk\r\n\
c=IN IP4 192.0.2.20\r\n\
t=0 0\r\n\
a=ice-pwd:31ec21eb38b2ec6d36e8dc7b\r\n\
a=rtcp-xr:rcvr-rtt=all:10000 stat-summary=loss,dup,jitt,TTL voip-metrics\r\n\
m=audio 7078 RTP/AVP 96 97 98 0 8 18 101 99 100\r\n\
a=rtpmap:96 opus/48000/2\r\n\
a=fmtp:96 useinbandfec=1\r\n\
a=rtpmap:97 speex/16000\r\n\
a=fmtp:97 vbr=on\r\n\
a=rtpmap:98 speex/8000\r\n\
a=fmtp:98 vbr=on\r\n\
a=fmtp:18 annexb=yes\r\n\
a=rtpmap:101 telephone-event/48000\r\n\
a=rtpmap:99 telephone-event/16000\r\n\
a=rtpmap:100 telephone-event/8000\r\n\
a=rtcp-fb:* trr-int 1000\r\n\
a=rtcp-fb:* ccm tmmbr\r\n";

/// An offer with video and T.38 beside audio, telephone-event on 96.
pub const MULTI_STREAM_OFFER: &str = "v=0\r\n\
o=carol 28908764872 28908764872 IN IP4 198.51.100.3\r\n\
s=-\r\n\
c=IN IP4 198.51.100.3\r\n\
t=0 0\r\n\
m=video 5004 RTP/AVP 96 31\r\n\
a=rtpmap:96 H264/90000\r\n\
a=fmtp:96 profile-level-id=42e01f\r\n\
m=audio 5000 RTP/AVPF 8 0 96\r\n\
a=rtpmap:96 telephone-event/8000\r\n\
a=fmtp:96 0-15\r\n\
a=ptime:30\r\n\
m=image 5006 udptl t38\r\n\
a=T38FaxVersion:0\r\n";

/// Every SDP body of tests/sipp/*.xml, the SIPp keywords filled in as SIPp would.
pub fn sipp_sdps() -> Vec<(String, String)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/sipp");
    let mut out = Vec::new();
    let mut entries: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "xml"))
        .collect();
    entries.sort();
    for path in entries {
        let xml = std::fs::read_to_string(&path).unwrap();
        let mut body: Option<Vec<String>> = None;
        for line in xml.lines() {
            let line = line.trim();
            match &mut body {
                None if line == "v=0" => body = Some(vec![line.to_owned()]),
                None => {}
                Some(lines) if line.starts_with("]]>") || line.is_empty() => {
                    let mut text = lines.join("\r\n");
                    text.push_str("\r\n");
                    let text = text
                        .replace("[local_ip_type]", "4")
                        .replace("[media_ip_type]", "4")
                        .replace("[local_ip]", "127.0.0.1")
                        .replace("[media_ip]", "127.0.0.1")
                        .replace("[media_port+2]", "6002")
                        .replace("[media_port]", "6000");
                    let name = path.file_name().unwrap().to_string_lossy().into_owned();
                    out.push((name, text));
                    body = None;
                }
                Some(lines) => lines.push(line.to_owned()),
            }
        }
    }
    out
}

/// Every real-world SDP the tests know: the constants above and the SIPp bodies.
pub fn real_world_sdps() -> Vec<(String, String)> {
    let mut all: Vec<(String, String)> = [
        ("rfc3264", RFC3264_OFFER),
        ("basic", BASIC_OFFER),
        ("sip-core", SIP_CORE_SDP),
        ("srtp", SRTP_OFFER),
        ("lync-im", LYNC_IM_OFFER),
        ("lync-audio", LYNC_AUDIO_OFFER),
        ("linphone", LINPHONE_OFFER),
        ("multi", MULTI_STREAM_OFFER),
    ]
    .iter()
    .map(|(n, t)| ((*n).to_owned(), (*t).to_owned()))
    .collect();
    all.extend(sipp_sdps());
    all
}
