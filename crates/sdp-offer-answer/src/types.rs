//! The small value types of SDP: direction, media kind, codec, origin.

use std::fmt;
use std::net::IpAddr;

/// A media stream's direction attribute (RFC 3264 §5.1, §6.1; RFC 8866 §6.7).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Direction {
    /// `a=sendrecv`, the default when no direction attribute is present (RFC 8866 §6.7.3).
    #[default]
    SendRecv,
    /// `a=sendonly`: the writer sends and does not receive (the holder, RFC 3264 §8.4).
    SendOnly,
    /// `a=recvonly`: the writer receives and does not send.
    RecvOnly,
    /// `a=inactive`: neither.
    Inactive,
}

impl Direction {
    /// The direction seen from the other side: `sendonly` <-> `recvonly` (RFC 3264 §6.1).
    pub fn reversed(self) -> Direction {
        match self {
            Direction::SendOnly => Direction::RecvOnly,
            Direction::RecvOnly => Direction::SendOnly,
            other => other,
        }
    }

    /// Whether the writer of this attribute sends media.
    pub fn sends(self) -> bool {
        matches!(self, Direction::SendRecv | Direction::SendOnly)
    }

    /// Whether the writer of this attribute receives media.
    pub fn receives(self) -> bool {
        matches!(self, Direction::SendRecv | Direction::RecvOnly)
    }

    /// The attribute name as written in SDP: `"sendrecv"`, `"sendonly"`, `"recvonly"`, `"inactive"`.
    pub fn attribute(self) -> &'static str {
        match self {
            Direction::SendRecv => "sendrecv",
            Direction::SendOnly => "sendonly",
            Direction::RecvOnly => "recvonly",
            Direction::Inactive => "inactive",
        }
    }

    /// Parses a direction attribute name (`"sendonly"`), exactly as RFC 8866 §6.7 spells it.
    pub fn from_attribute(name: &str) -> Option<Direction> {
        match name {
            "sendrecv" => Some(Direction::SendRecv),
            "sendonly" => Some(Direction::SendOnly),
            "recvonly" => Some(Direction::RecvOnly),
            "inactive" => Some(Direction::Inactive),
            _ => None,
        }
    }

    /// The direction that sends only when both do and receives only when both do.
    pub fn intersect(self, other: Direction) -> Direction {
        Direction::from_flags(
            self.sends() && other.sends(),
            self.receives() && other.receives(),
        )
    }

    /// The direction with the given send and receive halves.
    pub fn from_flags(sends: bool, receives: bool) -> Direction {
        match (sends, receives) {
            (true, true) => Direction::SendRecv,
            (true, false) => Direction::SendOnly,
            (false, true) => Direction::RecvOnly,
            (false, false) => Direction::Inactive,
        }
    }
}

impl fmt::Display for Direction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.attribute())
    }
}

/// The `<media>` of an `m=` line (RFC 8866 §5.14; `message` from RFC 3840/Lync, RFC 4975).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum MediaKind {
    Audio,
    Video,
    /// `m=message`: SIP instant messaging (`sip` proto, Lync) or MSRP (`TCP/MSRP`).
    Message,
    Application,
    /// `m=text`: real-time text (RFC 4103).
    Text,
    /// Any other media, as written (`image` for T.38, ...).
    Other(String),
}

impl MediaKind {
    /// Parses the `<media>` token; the well-known names match case-insensitively.
    pub fn parse(token: &str) -> MediaKind {
        match token.to_ascii_lowercase().as_str() {
            "audio" => MediaKind::Audio,
            "video" => MediaKind::Video,
            "message" => MediaKind::Message,
            "application" => MediaKind::Application,
            "text" => MediaKind::Text,
            _ => MediaKind::Other(token.to_owned()),
        }
    }

    /// The token as written in an `m=` line we generate.
    pub fn as_str(&self) -> &str {
        match self {
            MediaKind::Audio => "audio",
            MediaKind::Video => "video",
            MediaKind::Message => "message",
            MediaKind::Application => "application",
            MediaKind::Text => "text",
            MediaKind::Other(other) => other,
        }
    }
}

impl fmt::Display for MediaKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One RTP payload format: the payload type, the encoding name as written (`"PCMU"`), the
/// clock rate, the channel count and the `a=fmtp` parameters (RFC 8866 §6.6, §6.15;
/// RFC 3551 §6 for the static payload types).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Codec {
    pub payload_type: u8,
    pub name: String,
    pub clock_rate: u32,
    pub channels: Option<u32>,
    pub fmtp: Option<String>,
}

impl Codec {
    /// G.711 µ-law, static payload type 0 (RFC 3551 §6).
    pub fn pcmu() -> Codec {
        Codec::new(0, "PCMU", 8000)
    }

    /// G.711 A-law, static payload type 8 (RFC 3551 §6).
    pub fn pcma() -> Codec {
        Codec::new(8, "PCMA", 8000)
    }

    /// RFC 4733 DTMF events at 8000 Hz on the given dynamic payload type, events 0-16.
    pub fn telephone_event(payload_type: u8) -> Codec {
        Codec {
            fmtp: Some("0-16".to_owned()),
            ..Codec::new(payload_type, "telephone-event", 8000)
        }
    }

    /// A codec without channels or fmtp.
    pub fn new(payload_type: u8, name: &str, clock_rate: u32) -> Codec {
        Codec {
            payload_type,
            name: name.to_owned(),
            clock_rate,
            channels: None,
            fmtp: None,
        }
    }

    /// Whether this is RFC 4733 `telephone-event` (matched case-insensitively).
    pub fn is_telephone_event(&self) -> bool {
        self.name.eq_ignore_ascii_case("telephone-event")
    }

    /// Whether two codecs are the same format regardless of payload number: encoding name
    /// (case-insensitive, RFC 4855 §3), clock rate, and channels with absent meaning one
    /// (RFC 8866 §6.6).
    pub fn same_format(&self, other: &Codec) -> bool {
        self.name.eq_ignore_ascii_case(&other.name)
            && self.clock_rate == other.clock_rate
            && self.channels.unwrap_or(1) == other.channels.unwrap_or(1)
    }

    /// The `a=rtpmap` value: `"0 PCMU/8000"`, `"111 opus/48000/2"`.
    pub fn rtpmap(&self) -> String {
        match self.channels {
            Some(channels) => format!(
                "{} {}/{}/{}",
                self.payload_type, self.name, self.clock_rate, channels
            ),
            None => format!("{} {}/{}", self.payload_type, self.name, self.clock_rate),
        }
    }

    /// The codec a static payload type stands for without an `a=rtpmap` (RFC 3551 §6,
    /// tables 4 and 5); `None` for dynamic or unassigned numbers.
    pub fn from_static(payload_type: u8) -> Option<Codec> {
        let (name, rate, channels) = match payload_type {
            0 => ("PCMU", 8000, None),
            3 => ("GSM", 8000, None),
            4 => ("G723", 8000, None),
            5 => ("DVI4", 8000, None),
            6 => ("DVI4", 16000, None),
            7 => ("LPC", 8000, None),
            8 => ("PCMA", 8000, None),
            9 => ("G722", 8000, None),
            10 => ("L16", 44100, Some(2)),
            11 => ("L16", 44100, None),
            12 => ("QCELP", 8000, None),
            13 => ("CN", 8000, None),
            14 => ("MPA", 90000, None),
            15 => ("G728", 8000, None),
            16 => ("DVI4", 11025, None),
            17 => ("DVI4", 22050, None),
            18 => ("G729", 8000, None),
            25 => ("CelB", 90000, None),
            26 => ("JPEG", 90000, None),
            28 => ("nv", 90000, None),
            31 => ("H261", 90000, None),
            32 => ("MPV", 90000, None),
            33 => ("MP2T", 90000, None),
            34 => ("H263", 90000, None),
            _ => return None,
        };
        Some(Codec {
            channels,
            ..Codec::new(payload_type, name, rate)
        })
    }
}

/// The `o=` line (RFC 8866 §5.2).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Origin {
    pub username: String,
    pub session_id: u64,
    /// `<sess-version>`: raised each time the description changes (RFC 3264 §8).
    pub version: u64,
    /// `IN`.
    pub network_type: String,
    /// `IP4` or `IP6`.
    pub address_type: String,
    /// As written: an IP address or a domain name.
    pub address: String,
}

impl Origin {
    /// The address when it is an IP literal.
    pub fn ip(&self) -> Option<IpAddr> {
        self.address.parse().ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn direction_algebra() {
        use Direction::*;
        assert_eq!(SendOnly.reversed(), RecvOnly);
        assert_eq!(RecvOnly.reversed(), SendOnly);
        assert_eq!(SendRecv.reversed(), SendRecv);
        assert_eq!(Inactive.reversed(), Inactive);
        assert!(SendRecv.sends() && SendRecv.receives());
        assert!(SendOnly.sends() && !SendOnly.receives());
        assert!(!RecvOnly.sends() && RecvOnly.receives());
        assert!(!Inactive.sends() && !Inactive.receives());
        assert_eq!(SendRecv.intersect(SendOnly), SendOnly);
        assert_eq!(RecvOnly.intersect(SendOnly), Inactive);
        for d in [SendRecv, SendOnly, RecvOnly, Inactive] {
            assert_eq!(Direction::from_attribute(d.attribute()), Some(d));
            assert_eq!(d.to_string(), d.attribute());
        }
        assert_eq!(Direction::from_attribute("SENDONLY"), None);
    }

    #[test]
    fn static_payload_types_and_format_matching() {
        assert_eq!(Codec::from_static(0), Some(Codec::pcmu()));
        assert_eq!(Codec::from_static(8), Some(Codec::pcma()));
        assert_eq!(
            Codec::from_static(9).map(|c| (c.name, c.clock_rate)),
            Some(("G722".to_owned(), 8000))
        );
        assert_eq!(Codec::from_static(96), None);
        assert_eq!(Codec::from_static(2), None);
        let mut pcmu = Codec::pcmu();
        pcmu.name = "pcmu".into();
        pcmu.channels = Some(1);
        pcmu.payload_type = 99;
        assert!(pcmu.same_format(&Codec::pcmu()));
        assert!(!Codec::pcma().same_format(&Codec::pcmu()));
        assert!(Codec::telephone_event(96).is_telephone_event());
        assert_eq!(
            Codec::telephone_event(96).rtpmap(),
            "96 telephone-event/8000"
        );
        assert_eq!(MediaKind::parse("AUDIO"), MediaKind::Audio);
        assert_eq!(MediaKind::parse("image"), MediaKind::Other("image".into()));
    }
}
