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
    /// The o= session version: bumped each time our description changes (RFC 3264 §8).
    pub version: u64,
}

/// Media direction attributes (RFC 3264 §6.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Direction {
    SendRecv,
    SendOnly,
    RecvOnly,
    Inactive,
}

impl Direction {
    fn parse(line: &str) -> Option<Direction> {
        match line {
            "a=sendrecv" => Some(Direction::SendRecv),
            "a=sendonly" => Some(Direction::SendOnly),
            "a=recvonly" => Some(Direction::RecvOnly),
            "a=inactive" => Some(Direction::Inactive),
            _ => None,
        }
    }

    /// The answer's direction for an offer's (RFC 3264 §6.1): a peer that only sends
    /// (hold) gets recvonly, and so on.
    fn answer(self) -> &'static str {
        match self {
            Direction::SendRecv => "sendrecv",
            Direction::SendOnly => "recvonly",
            Direction::RecvOnly => "sendonly",
            Direction::Inactive => "inactive",
        }
    }
}

struct OfferedStream<'a> {
    kind: &'a str,
    port: &'a str,
    proto: &'a str,
    formats: Vec<&'a str>,
    direction: Option<Direction>,
}

/// Answers an offer (RFC 3264 §6): one m= line per offered stream, in order; the first
/// audio stream offering PCMU (payload type 0) is accepted with PCMU, every other stream
/// is rejected with port 0.
pub fn answer(offer: &[u8], local: LocalMedia) -> Result<String, SdpError> {
    let text = std::str::from_utf8(offer).map_err(|_| SdpError::NotText)?;
    let mut media: Vec<OfferedStream<'_>> = Vec::new();
    let mut session_direction = None;
    for (index, line) in text.lines().enumerate() {
        let line = line.trim_end_matches('\r');
        if let Some(rest) = line.strip_prefix("m=") {
            let mut fields = rest.split(' ');
            let kind = fields.next().unwrap_or_default();
            let port = fields.next().ok_or(SdpError::BadLine { line: index + 1 })?;
            let proto = fields.next().ok_or(SdpError::BadLine { line: index + 1 })?;
            let formats: Vec<&str> = fields.filter(|f| !f.is_empty()).collect();
            if formats.is_empty() {
                return Err(SdpError::BadLine { line: index + 1 });
            }
            media.push(OfferedStream {
                kind,
                port,
                proto,
                formats,
                direction: None,
            });
        } else if let Some(direction) = Direction::parse(line) {
            match media.last_mut() {
                Some(stream) => stream.direction = Some(direction),
                None => session_direction = Some(direction),
            }
        }
    }
    if media.is_empty() {
        return Err(SdpError::NoMedia);
    }
    // RFC 3264 §6: a stream offered with port 0 is declined and stays declined.
    let chosen = media.iter().position(|m| {
        m.kind == "audio"
            && m.port != "0"
            && m.proto.starts_with("RTP/AVP")
            && m.formats.contains(&"0")
    });
    let Some(chosen) = chosen else {
        return Err(SdpError::NoCommonCodec);
    };
    let mut sdp = header(local);
    for (i, m) in media.iter().enumerate() {
        if i == chosen {
            let direction = m
                .direction
                .or(session_direction)
                .unwrap_or(Direction::SendRecv);
            write_audio(&mut sdp, local.port, m.proto, direction.answer());
        } else {
            // RFC 3264 §6: a rejected stream keeps its place with port 0 and a format.
            let first = m.formats.first().copied().unwrap_or("0");
            let _ = write!(sdp, "m={} 0 {} {first}\r\n", m.kind, m.proto);
        }
    }
    Ok(sdp)
}

/// An offer with one PCMU audio stream, for an INVITE that arrived without one.
pub fn offer(local: LocalMedia) -> String {
    let mut sdp = header(local);
    write_audio(&mut sdp, local.port, "RTP/AVP", "sendrecv");
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
        "v=0\r\no=tandem {id} {version} IN {family} {addr}\r\ns=Tandem\r\nc=IN {family} {addr}\r\nt=0 0\r\n",
        id = local.session_id,
        version = local.version,
        addr = local.address,
    );
    sdp
}

fn write_audio(sdp: &mut String, port: u16, proto: &str, direction: &str) {
    let _ = write!(
        sdp,
        "m=audio {port} {proto} 0\r\na=rtpmap:0 PCMU/8000\r\na=ptime:20\r\na={direction}\r\n"
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
            version: 1,
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
    fn hold_is_answered_recvonly_and_port_zero_streams_stay_declined() {
        let hold = "v=0\r\nm=audio 4000 RTP/AVP 0\r\na=sendonly\r\n";
        let got = answer_of(hold).unwrap_or_default();
        assert!(got.contains("a=recvonly\r\n"), "{got}");
        let session_level = "v=0\r\na=inactive\r\nm=audio 4000 RTP/AVP 0\r\n";
        let got = answer_of(session_level).unwrap_or_default();
        assert!(got.contains("a=inactive\r\n"), "{got}");
        let declined = "v=0\r\nm=audio 0 RTP/AVP 0\r\nm=audio 4002 RTP/AVP 0\r\n";
        let got = answer_of(declined).unwrap_or_default();
        let m: Vec<&str> = got.lines().filter(|l| l.starts_with("m=")).collect();
        assert_eq!(m, ["m=audio 0 RTP/AVP 0", "m=audio 9 RTP/AVP 0"]);
        assert_eq!(
            answer_of("v=0\r\nm=audio 0 RTP/AVP 0\r\n"),
            Err(SdpError::NoCommonCodec)
        );
    }

    fn answer_of(offer: &str) -> Result<String, SdpError> {
        answer(offer.as_bytes(), local())
    }

    #[test]
    fn offer_is_pcmu() {
        let offer = offer(local());
        assert!(offer.starts_with("v=0\r\n"));
        assert!(offer.contains("m=audio 9 RTP/AVP 0\r\n"));
    }
}
