//! A minimal SDP offer/answer (RFC 3264) for the first UAS: audio with PCMU only.
//!
//! The full negotiation lives in `sdp-offer-answer` (over webrtc-sdp) once [media] lands;
//! this module answers exactly what the demo users need and rejects the rest cleanly.

use std::fmt::Write as _;
use std::net::IpAddr;

/// Why an offer could not be answered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SdpError {
    #[error("SDP is not UTF-8 text")]
    NotText,
    #[error("SDP has no m= line")]
    NoMedia,
    #[error("SDP has no audio stream offering PCMU")]
    NoCommonCodec,
    #[error("SDP line {line} is malformed")]
    BadLine { line: usize },
}

/// What we put in our own SDP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LocalMedia {
    pub address: IpAddr,
    pub port: u16,
    pub session_id: u64,
}

/// Answers an offer (RFC 3264 §6): one m= line per offered stream, in order; the first
/// audio stream offering PCMU (payload type 0) is accepted with PCMU, every other stream
/// is rejected with port 0.
pub fn answer(offer: &[u8], local: LocalMedia) -> Result<String, SdpError> {
    let text = std::str::from_utf8(offer).map_err(|_| SdpError::NotText)?;
    let mut media = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let line = line.trim_end_matches('\r');
        if let Some(rest) = line.strip_prefix("m=") {
            let mut fields = rest.split(' ');
            let kind = fields.next().unwrap_or_default();
            let _port = fields.next().ok_or(SdpError::BadLine { line: index + 1 })?;
            let proto = fields.next().ok_or(SdpError::BadLine { line: index + 1 })?;
            let formats: Vec<&str> = fields.filter(|f| !f.is_empty()).collect();
            if formats.is_empty() {
                return Err(SdpError::BadLine { line: index + 1 });
            }
            media.push((kind, proto, formats));
        }
    }
    if media.is_empty() {
        return Err(SdpError::NoMedia);
    }
    let chosen = media.iter().position(|(kind, proto, formats)| {
        *kind == "audio" && proto.starts_with("RTP/AVP") && formats.contains(&"0")
    });
    let Some(chosen) = chosen else {
        return Err(SdpError::NoCommonCodec);
    };
    let mut sdp = header(local);
    for (i, (kind, proto, formats)) in media.iter().enumerate() {
        if i == chosen {
            write_audio(&mut sdp, local.port, proto);
        } else {
            // RFC 3264 §6: a rejected stream keeps its place with port 0 and a format.
            let first = formats.first().copied().unwrap_or("0");
            let _ = write!(sdp, "m={kind} 0 {proto} {first}\r\n");
        }
    }
    Ok(sdp)
}

/// An offer with one PCMU audio stream, for an INVITE that arrived without one.
pub fn offer(local: LocalMedia) -> String {
    let mut sdp = header(local);
    write_audio(&mut sdp, local.port, "RTP/AVP");
    sdp
}

fn header(local: LocalMedia) -> String {
    let family = if local.address.is_ipv4() {
        "IP4"
    } else {
        "IP6"
    };
    let mut sdp = String::with_capacity(256);
    let _ = write!(
        sdp,
        "v=0\r\no=tandem {id} {id} IN {family} {addr}\r\ns=Tandem\r\nc=IN {family} {addr}\r\nt=0 0\r\n",
        id = local.session_id,
        addr = local.address,
    );
    sdp
}

fn write_audio(sdp: &mut String, port: u16, proto: &str) {
    let _ = write!(
        sdp,
        "m=audio {port} {proto} 0\r\na=rtpmap:0 PCMU/8000\r\na=ptime:20\r\na=sendrecv\r\n"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn local() -> LocalMedia {
        LocalMedia {
            address: IpAddr::from([127, 0, 0, 1]),
            port: 9,
            session_id: 42,
        }
    }

    #[test]
    fn answers_pcmu() {
        let offer = "v=0\r\no=a 1 1 IN IP4 10.0.0.1\r\ns=-\r\nc=IN IP4 10.0.0.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 8 0 101\r\na=rtpmap:0 PCMU/8000\r\n";
        let answer = answer(offer.as_bytes(), local()).unwrap_or_default();
        assert!(answer.contains("m=audio 9 RTP/AVP 0\r\n"), "{answer}");
        assert!(answer.contains("c=IN IP4 127.0.0.1\r\n"));
        assert!(answer.contains("a=rtpmap:0 PCMU/8000\r\n"));
    }

    #[test]
    fn rejects_other_streams_in_place() {
        let offer = "v=0\r\nm=video 5000 RTP/AVP 96\r\nm=audio 4000 RTP/AVP 0\r\n";
        let answer = answer(offer.as_bytes(), local()).unwrap_or_default();
        let m: Vec<&str> = answer.lines().filter(|l| l.starts_with("m=")).collect();
        assert_eq!(m, ["m=video 0 RTP/AVP 96", "m=audio 9 RTP/AVP 0"]);
    }

    #[test]
    fn refuses_without_pcmu() {
        let offer = "v=0\r\nm=audio 4000 RTP/AVP 8\r\n";
        assert_eq!(
            answer(offer.as_bytes(), local()),
            Err(SdpError::NoCommonCodec)
        );
        assert_eq!(answer(b"v=0\r\n", local()), Err(SdpError::NoMedia));
        assert_eq!(
            answer(b"m=audio\r\n", local()),
            Err(SdpError::BadLine { line: 1 })
        );
        assert_eq!(answer(&[0xff, 0xfe], local()), Err(SdpError::NotText));
    }

    #[test]
    fn offer_is_pcmu() {
        let offer = offer(local());
        assert!(offer.starts_with("v=0\r\n"));
        assert!(offer.contains("m=audio 9 RTP/AVP 0\r\n"));
    }
}
