//! A session description that keeps every line (RFC 8866 §5), so what Tandem forwards or
//! rewrites loses nothing: `m=message` sections, `a=crypto`, `a=rtcp-xr`, `a=path` and any
//! attribute nobody here knows stay where they were, byte for byte.
//!
//! The line model is the source of truth. The RTP media sections are also read by
//! `webrtc-sdp` (see [`RtpParse`]): it parses their `a=rtpmap` lines into codecs. webrtc-sdp
//! cannot represent everything a SIP peer sends (it drops `m=message` and `m=image`
//! sections, drops unknown attributes, and refuses `e=`, `p=`, `u=`, `k=`, `r=`, `z=`
//! lines outright), so it is fed each RTP section on its own, and when it refuses one our
//! own `a=rtpmap` reader takes over for that section.

use std::net::IpAddr;

use bytes::Bytes;

use crate::error::SdpError;
use crate::types::{Codec, Direction, MediaKind, Origin};
use crate::webrtc;

const CRLF: &str = "\r\n";

/// One line as received: its text without the line ending, and the ending itself
/// (`"\r\n"`, `"\n"`, a lone `"\r"` at the very end, or `""` for a last line without one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Line {
    /// The type letter (`b'a'`), `None` for a blank line.
    pub(crate) kind: Option<u8>,
    pub(crate) text: String,
    pub(crate) eol: &'static str,
}

impl Line {
    fn new(kind: u8, text: String, eol: &'static str) -> Line {
        Line {
            kind: Some(kind),
            text,
            eol,
        }
    }

    /// The text after `x=`.
    pub(crate) fn value(&self) -> &str {
        self.text.get(2..).unwrap_or_default()
    }

    fn is(&self, kind: u8) -> bool {
        self.kind == Some(kind)
    }

    /// An `a=` line split into its name and value (`a=rtpmap:0 PCMU/8000` gives
    /// `("rtpmap", Some("0 PCMU/8000"))`, `a=sendonly` gives `("sendonly", None)`).
    pub(crate) fn attribute(&self) -> Option<(&str, Option<&str>)> {
        if !self.is(b'a') {
            return None;
        }
        Some(match self.value().split_once(':') {
            Some((name, value)) => (name, Some(value)),
            None => (self.value(), None),
        })
    }
}

/// The address of a `c=` line (RFC 8866 §5.7): an IP literal or, as the grammar allows, a
/// domain name. A multicast `/ttl/count` suffix is not part of it.
#[derive(Debug, Clone, PartialEq, Eq)]
enum ConnectionAddress {
    Ip(IpAddr),
    Name,
}

impl ConnectionAddress {
    fn ip(&self) -> Option<IpAddr> {
        match self {
            ConnectionAddress::Ip(ip) => Some(*ip),
            ConnectionAddress::Name => None,
        }
    }
}

/// How the codecs of a media section were read.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum RtpParse {
    /// Not an RTP section (`m=message ... sip`, `TCP/MSRP`, `udptl`): no codecs.
    NotRtp,
    /// webrtc-sdp parsed the section and its `a=rtpmap` lines.
    WebrtcSdp,
    /// webrtc-sdp refused the section; our own `a=rtpmap` reader was used. `reason` is
    /// webrtc-sdp's error.
    Fallback { reason: String },
}

/// A parsed SDP (RFC 8866) that keeps every line, in order and byte for byte, so nothing is
/// lost when it is forwarded or rewritten.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionDescription {
    session: Vec<Line>,
    media: Vec<MediaSection>,
    origin: Origin,
}

/// One media description: the `m=` line and every line after it up to the next `m=`
/// (RFC 8866 §5.14).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaSection {
    lines: Vec<Line>,
    kind: MediaKind,
    media_token: String,
    port: u16,
    port_count: Option<u32>,
    proto: String,
    formats: Vec<String>,
    /// Session-level values the media level falls back to.
    session_direction: Option<Direction>,
    session_connection: Option<ConnectionAddress>,
    rtpmaps: Vec<Codec>,
    rtp_parse: RtpParse,
}

impl SessionDescription {
    /// Parses a session description. Never panics, whatever the input.
    ///
    /// Required: UTF-8 text, `v=0` first (blank lines before it are kept), an `o=` line
    /// before the first `m=` with numeric session id and version, well-formed `c=` and `m=`
    /// lines (an `m=` line needs a port and at least one format). Everything else is kept
    /// as written and not judged: a missing `s=` or `t=`, unknown line types, attributes
    /// and media.
    pub fn parse(sdp: &[u8]) -> Result<SessionDescription, SdpError> {
        if sdp.is_empty() {
            return Err(SdpError::Empty);
        }
        let lines = split_lines(sdp)?;
        let mut session = Vec::new();
        let mut sections: Vec<(usize, Vec<Line>)> = Vec::new();
        for (index, line) in lines.into_iter().enumerate() {
            let number = index + 1;
            if line.is(b'm') {
                sections.push((number, vec![line]));
            } else if let Some((_, section)) = sections.last_mut() {
                section.push(line);
            } else {
                session.push(line);
            }
        }
        let first = session
            .iter()
            .find(|l| l.kind.is_some())
            .ok_or(SdpError::MissingVersion)?;
        if !first.is(b'v') {
            return Err(SdpError::MissingVersion);
        }
        if first.value().trim() != "0" {
            return Err(SdpError::UnsupportedVersion {
                value: first.value().to_owned(),
            });
        }
        let origin_line = session
            .iter()
            .position(|l| l.is(b'o'))
            .ok_or(SdpError::MissingOrigin)?;
        let origin = session
            .get(origin_line)
            .map(|l| parse_origin(l.value(), origin_line + 1))
            .ok_or(SdpError::MissingOrigin)??;
        let mut session_connection = None;
        for (index, line) in session.iter().enumerate() {
            if line.is(b'c') {
                let address = parse_connection(line.value(), index + 1)?;
                session_connection.get_or_insert(address);
            }
        }
        let session_direction = direction_of(&session);
        let mut media = Vec::with_capacity(sections.len());
        for (number, lines) in sections {
            media.push(MediaSection::from_lines(
                lines,
                number,
                session_direction,
                session_connection.clone(),
            )?);
        }
        Ok(SessionDescription {
            session,
            media,
            origin,
        })
    }

    /// The description as bytes: for any input [`parse`](Self::parse) accepted and nothing
    /// changed since, exactly the bytes it was parsed from.
    pub fn to_bytes(&self) -> Bytes {
        let mut out = String::with_capacity(self.len_hint());
        for line in self
            .session
            .iter()
            .chain(self.media.iter().flat_map(|m| &m.lines))
        {
            out.push_str(&line.text);
            out.push_str(line.eol);
        }
        Bytes::from(out)
    }

    fn len_hint(&self) -> usize {
        self.session
            .iter()
            .chain(self.media.iter().flat_map(|m| &m.lines))
            .map(|l| l.text.len() + 2)
            .sum()
    }

    /// The `o=` line (RFC 8866 §5.2).
    pub fn origin(&self) -> Origin {
        self.origin.clone()
    }

    /// The session-level `c=` address when it is an IP literal (RFC 8866 §5.7).
    pub fn connection(&self) -> Option<IpAddr> {
        self.session
            .iter()
            .filter(|l| l.is(b'c'))
            .find_map(|l| connection_ip(l.value()))
    }

    /// The session name (`s=`), when present.
    pub fn session_name(&self) -> Option<&str> {
        self.session.iter().find(|l| l.is(b's')).map(Line::value)
    }

    /// The session-level `a=` lines, in order, raw: `(name, value)`.
    pub fn attributes(&self) -> impl Iterator<Item = (&str, Option<&str>)> {
        self.session.iter().filter_map(Line::attribute)
    }

    /// The first session-level attribute of that name: `Some("")` for a property attribute
    /// (`a=sendonly`), `None` when absent.
    pub fn attribute(&self, name: &str) -> Option<&str> {
        self.attributes()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.unwrap_or_default())
    }

    /// The session-level direction attribute, if any.
    pub fn direction(&self) -> Option<Direction> {
        direction_of(&self.session)
    }

    pub fn media(&self) -> &[MediaSection] {
        &self.media
    }

    pub fn media_mut(&mut self) -> &mut [MediaSection] {
        &mut self.media
    }

    /// Rewrites `<sess-version>` in the `o=` line (RFC 3264 §8).
    pub fn set_origin_version(&mut self, version: u64) {
        self.origin.version = version;
        self.rewrite_origin();
    }

    /// Rewrites the `o=` address (a B2BUA presenting its own address).
    pub fn set_origin_address(&mut self, address: IpAddr) {
        self.origin.address_type = address_type(address).to_owned();
        self.origin.address = address.to_string();
        self.rewrite_origin();
    }

    fn rewrite_origin(&mut self) {
        let o = &self.origin;
        let text = format!(
            "o={} {} {} {} {} {}",
            o.username, o.session_id, o.version, o.network_type, o.address_type, o.address
        );
        if let Some(line) = self.session.iter_mut().find(|l| l.is(b'o')) {
            line.text = text;
        }
    }

    /// Points the media at `addr`: rewrites the session-level `c=` and every media-level
    /// `c=` (a relay or B2BUA anchoring media). When no session-level `c=` exists and some
    /// media section has none of its own, one is inserted at session level, where RFC 8866
    /// §5 orders it (before `b=`, `t=`, `k=`, `a=`).
    pub fn set_connection(&mut self, addr: IpAddr) {
        let text = connection_line(addr);
        let mut has_session_c = false;
        for line in self.session.iter_mut().filter(|l| l.is(b'c')) {
            line.text.clone_from(&text);
            has_session_c = true;
        }
        let all_media_have_c = self
            .media
            .iter()
            .all(|m| m.lines.iter().any(|l| l.is(b'c')));
        if !has_session_c && !all_media_have_c {
            let at = self
                .session
                .iter()
                .position(|l| matches!(l.kind, Some(b'b' | b't' | b'r' | b'z' | b'k' | b'a')))
                .unwrap_or(self.session.len());
            insert_line(&mut self.session, at, Line::new(b'c', text.clone(), CRLF));
            has_session_c = true;
        }
        for media in &mut self.media {
            for line in media.lines.iter_mut().filter(|l| l.is(b'c')) {
                line.text.clone_from(&text);
            }
            if has_session_c {
                media.session_connection = Some(ConnectionAddress::Ip(addr));
            }
        }
    }
}

impl MediaSection {
    fn from_lines(
        lines: Vec<Line>,
        number: usize,
        session_direction: Option<Direction>,
        session_connection: Option<ConnectionAddress>,
    ) -> Result<MediaSection, SdpError> {
        let m_value = lines.first().map(Line::value).unwrap_or_default();
        let mut tokens = m_value.split_ascii_whitespace();
        let bad = |reason| SdpError::BadMedia {
            line: number,
            reason,
        };
        let media_token = tokens.next().ok_or(bad("no media type"))?.to_owned();
        let port_token = tokens.next().ok_or(bad("no port"))?;
        let proto = tokens
            .next()
            .ok_or(bad("no transport protocol"))?
            .to_owned();
        let formats: Vec<String> = tokens.map(str::to_owned).collect();
        if formats.is_empty() {
            return Err(bad("no format"));
        }
        let (port, port_count) = match port_token.split_once('/') {
            Some((port, count)) => (
                port,
                Some(count.parse::<u32>().map_err(|_| bad("bad port count"))?),
            ),
            None => (port_token, None),
        };
        let port = port.parse::<u16>().map_err(|_| bad("bad port"))?;
        for (offset, line) in lines.iter().enumerate() {
            if line.is(b'c') {
                parse_connection(line.value(), number + offset)?;
            }
        }
        let kind = MediaKind::parse(&media_token);
        let (rtpmaps, rtp_parse) = if is_rtp(&proto) {
            match webrtc::rtpmaps(&lines) {
                Ok(maps) => (maps, RtpParse::WebrtcSdp),
                Err(reason) => (fallback_rtpmaps(&lines), RtpParse::Fallback { reason }),
            }
        } else {
            (Vec::new(), RtpParse::NotRtp)
        };
        Ok(MediaSection {
            lines,
            kind,
            media_token,
            port,
            port_count,
            proto,
            formats,
            session_direction,
            session_connection,
            rtpmaps,
            rtp_parse,
        })
    }

    pub fn kind(&self) -> &MediaKind {
        &self.kind
    }

    /// The `<media>` token as written (`"audio"`, `"image"`).
    pub fn media_token(&self) -> &str {
        &self.media_token
    }

    /// The `m=` port; 0 means the stream is rejected or disabled (RFC 3264 §5.1, §6).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The `/<number of ports>` of the `m=` line, when written.
    pub fn port_count(&self) -> Option<u32> {
        self.port_count
    }

    /// Rewrites the `m=` port.
    pub fn set_port(&mut self, port: u16) {
        self.port = port;
        self.rewrite_m_line();
    }

    fn rewrite_m_line(&mut self) {
        let port = match self.port_count {
            Some(count) => format!("{}/{count}", self.port),
            None => self.port.to_string(),
        };
        let text = format!(
            "m={} {port} {} {}",
            self.media_token,
            self.proto,
            self.formats.join(" ")
        );
        if let Some(first) = self.lines.first_mut() {
            first.text = text;
        }
    }

    /// The transport protocol: `"RTP/AVP"`, `"RTP/SAVP"`, `"sip"`, `"TCP/MSRP"`...
    pub fn proto(&self) -> &str {
        &self.proto
    }

    /// Whether the protocol is RTP of any profile (`RTP/AVP`, `UDP/TLS/RTP/SAVPF`...).
    pub fn is_rtp(&self) -> bool {
        is_rtp(&self.proto)
    }

    /// The `m=` line's format list as written.
    pub fn formats(&self) -> &[String] {
        &self.formats
    }

    /// The media-level `c=` address when it is an IP literal; `None` when absent (see
    /// [`effective_connection`](Self::effective_connection) for the session fallback).
    pub fn connection(&self) -> Option<IpAddr> {
        self.lines
            .iter()
            .filter(|l| l.is(b'c'))
            .find_map(|l| connection_ip(l.value()))
    }

    /// The address media goes to: the media-level `c=`, else the session-level one
    /// (RFC 8866 §5.7); `None` when neither is an IP literal.
    pub fn effective_connection(&self) -> Option<IpAddr> {
        if self.lines.iter().any(|l| l.is(b'c')) {
            self.connection()
        } else {
            self.session_connection
                .as_ref()
                .and_then(ConnectionAddress::ip)
        }
    }

    /// The direction attribute as written: media level, else session level, else
    /// `sendrecv` (RFC 3264 §5.1, RFC 8866 §6.7). A `c=0.0.0.0` (RFC 2543 hold) does not
    /// change it: see [`is_legacy_hold`](Self::is_legacy_hold).
    pub fn direction(&self) -> Direction {
        direction_of(&self.lines)
            .or(self.session_direction)
            .unwrap_or_default()
    }

    /// Whether the stream's connection address is `0.0.0.0` (or `::`): the RFC 2543 way to
    /// put a call on hold, meaning "send me no media" (RFC 3264 §8.4). Offer/answer treats
    /// such a peer as not receiving, whatever its direction attribute says.
    pub fn is_legacy_hold(&self) -> bool {
        self.effective_connection()
            .is_some_and(|ip| ip.is_unspecified())
    }

    /// Replaces the media-level direction attribute (a relay passing hold through).
    pub fn set_direction(&mut self, direction: Direction) {
        let text = format!("a={}", direction.attribute());
        let first = self.lines.iter().position(|l| {
            l.attribute()
                .is_some_and(|(n, v)| v.is_none() && Direction::from_attribute(n).is_some())
        });
        self.lines.retain(|l| {
            !l.attribute()
                .is_some_and(|(n, v)| v.is_none() && Direction::from_attribute(n).is_some())
        });
        let at = first.unwrap_or(self.lines.len());
        insert_line(&mut self.lines, at, Line::new(b'a', text, CRLF));
    }

    /// The codecs, in `m=` line order: each numeric format with its `a=rtpmap`, or the
    /// RFC 3551 name of a static payload type written without one; `a=fmtp` attached.
    /// Formats that are neither (or above 127) are left out. Empty for non-RTP sections.
    pub fn codecs(&self) -> Vec<Codec> {
        if !self.is_rtp() {
            return Vec::new();
        }
        let mut codecs: Vec<Codec> = Vec::new();
        for format in &self.formats {
            let Ok(pt) = format.parse::<u8>() else {
                continue;
            };
            if pt > 127 || codecs.iter().any(|c| c.payload_type == pt) {
                continue;
            }
            let codec = self
                .rtpmaps
                .iter()
                .find(|c| c.payload_type == pt)
                .cloned()
                .or_else(|| Codec::from_static(pt));
            if let Some(mut codec) = codec {
                codec.fmtp = self.fmtp(pt).filter(|f| !f.is_empty()).map(str::to_owned);
                codecs.push(codec);
            }
        }
        codecs
    }

    /// The `a=fmtp` parameters of a payload type, as written.
    pub fn fmtp(&self, payload_type: u8) -> Option<&str> {
        self.attributes()
            .filter(|(n, _)| *n == "fmtp")
            .filter_map(|(_, v)| v)
            .find_map(|v| {
                let (pt, params) = v.split_once(' ').unwrap_or((v, ""));
                (pt.trim().parse::<u8>().ok() == Some(payload_type)).then(|| params.trim())
            })
    }

    /// How the codecs were read: by webrtc-sdp, or by our fallback when it refused.
    pub fn rtp_parse(&self) -> &RtpParse {
        &self.rtp_parse
    }

    /// Every `a=` line of this section, in order, raw: `(name, value)`.
    pub fn attributes(&self) -> impl Iterator<Item = (&str, Option<&str>)> {
        self.lines.iter().filter_map(Line::attribute)
    }

    /// The first attribute of that name: `Some("")` for a property attribute (`a=sendonly`),
    /// `None` when absent.
    pub fn attribute(&self, name: &str) -> Option<&str> {
        self.attributes()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.unwrap_or_default())
    }

    /// `a=ptime` in milliseconds (RFC 8866 §6.4); a fractional value is cut to whole ms.
    pub fn ptime(&self) -> Option<u32> {
        let value = self.attribute("ptime")?.trim();
        let whole = value.split('.').next().unwrap_or(value);
        whole.parse().ok()
    }

    /// The raw lines of this section (`m=` first), without line endings.
    pub fn lines(&self) -> impl Iterator<Item = &str> {
        self.lines.iter().map(|l| l.text.as_str())
    }
}

/// Whether a transport protocol carries RTP (RFC 8866 §5.14, RFC 5764): `RTP/AVP`,
/// `RTP/SAVPF`, `UDP/TLS/RTP/SAVPF`...
fn is_rtp(proto: &str) -> bool {
    proto
        .split('/')
        .any(|part| part.eq_ignore_ascii_case("RTP"))
}

fn split_lines(sdp: &[u8]) -> Result<Vec<Line>, SdpError> {
    let mut lines = Vec::new();
    let mut rest = sdp;
    let mut number = 0;
    while !rest.is_empty() {
        number += 1;
        let (raw, eol, next): (&[u8], &'static str, &[u8]) =
            match rest.iter().position(|&b| b == b'\n') {
                Some(at) => {
                    let (raw, after) = rest.split_at(at);
                    let after = after.get(1..).unwrap_or_default();
                    match raw.strip_suffix(b"\r") {
                        Some(raw) => (raw, "\r\n", after),
                        None => (raw, "\n", after),
                    }
                }
                None => match rest.strip_suffix(b"\r") {
                    Some(raw) => (raw, "\r", &[]),
                    None => (rest, "", &[]),
                },
            };
        rest = next;
        let text = std::str::from_utf8(raw)
            .map_err(|_| SdpError::NotUtf8 { line: number })?
            .to_owned();
        let kind = if text.trim().is_empty() {
            None
        } else {
            match text.as_bytes() {
                [kind, b'=', ..] if kind.is_ascii_alphabetic() => Some(*kind),
                _ => return Err(SdpError::BadLine { line: number }),
            }
        };
        lines.push(Line { kind, text, eol });
    }
    Ok(lines)
}

fn parse_origin(value: &str, line: usize) -> Result<Origin, SdpError> {
    let bad = |reason| SdpError::BadOrigin { line, reason };
    let fields: Vec<&str> = value.split_ascii_whitespace().collect();
    let [username, id, version, network_type, address_type, address] = fields.as_slice() else {
        return Err(bad("expected 6 fields"));
    };
    Ok(Origin {
        username: (*username).to_owned(),
        session_id: id.parse().map_err(|_| bad("session id is not a number"))?,
        version: version
            .parse()
            .map_err(|_| bad("session version is not a number"))?,
        network_type: (*network_type).to_owned(),
        address_type: (*address_type).to_owned(),
        address: (*address).to_owned(),
    })
}

fn parse_connection(value: &str, line: usize) -> Result<ConnectionAddress, SdpError> {
    let bad = |reason| SdpError::BadConnection { line, reason };
    let fields: Vec<&str> = value.split_ascii_whitespace().collect();
    let [_network_type, _address_type, address] = fields.as_slice() else {
        return Err(bad("expected 3 fields"));
    };
    let address = address.split('/').next().unwrap_or_default();
    if address.is_empty() {
        return Err(bad("empty address"));
    }
    Ok(match address.parse::<IpAddr>() {
        Ok(ip) => ConnectionAddress::Ip(ip),
        Err(_) => ConnectionAddress::Name,
    })
}

fn connection_ip(value: &str) -> Option<IpAddr> {
    parse_connection(value, 0).ok()?.ip()
}

pub(crate) fn address_type(addr: IpAddr) -> &'static str {
    if addr.is_ipv4() { "IP4" } else { "IP6" }
}

pub(crate) fn connection_line(addr: IpAddr) -> String {
    format!("c=IN {} {addr}", address_type(addr))
}

/// The first direction attribute among these lines.
fn direction_of(lines: &[Line]) -> Option<Direction> {
    lines
        .iter()
        .filter_map(Line::attribute)
        .find_map(|(name, value)| match value {
            None => Direction::from_attribute(name),
            Some(_) => None,
        })
}

/// Inserts a line, giving the line before it an ending if it had none (it was the last).
fn insert_line(lines: &mut Vec<Line>, at: usize, mut line: Line) {
    let at = at.min(lines.len());
    if at == lines.len() {
        match lines.last_mut() {
            Some(last) if last.eol.is_empty() || last.eol == "\r" => {
                // The document ended without a line ending: keep it that way.
                line.eol = "";
                last.eol = CRLF;
            }
            Some(last) => line.eol = last.eol,
            None => {}
        }
    } else if let Some(next) = lines.get(at) {
        line.eol = if next.eol.is_empty() { CRLF } else { next.eol };
    }
    lines.insert(at, line);
}

/// Our own `a=rtpmap` reader (RFC 8866 §6.6), for sections webrtc-sdp refuses:
/// `<payload type> <encoding name>/<clock rate>[/<channels>]`. Lines it cannot read are
/// skipped.
pub(crate) fn fallback_rtpmaps(lines: &[Line]) -> Vec<Codec> {
    lines
        .iter()
        .filter_map(Line::attribute)
        .filter(|(name, _)| *name == "rtpmap")
        .filter_map(|(_, value)| parse_rtpmap(value?))
        .collect()
}

pub(crate) fn parse_rtpmap(value: &str) -> Option<Codec> {
    let (pt, encoding) = value.trim().split_once(' ')?;
    let payload_type = pt.parse::<u8>().ok()?;
    let mut parts = encoding.trim().split('/');
    let name = parts.next().filter(|n| !n.is_empty())?;
    let clock_rate = parts.next()?.trim().parse::<u32>().ok()?;
    let channels = match parts.next() {
        Some(c) => Some(c.trim().parse::<u32>().ok()?),
        None => None,
    };
    if parts.next().is_some() {
        return None;
    }
    Some(Codec {
        channels,
        ..Codec::new(payload_type, name, clock_rate)
    })
}

#[cfg(test)]
mod tests {
    #![allow(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing
    )]
    use super::*;

    const OFFER: &str = "v=0\r\no=alice 2890844526 2890844526 IN IP4 host.atlanta.example.com\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\nm=audio 49170 RTP/AVP 0 8 97\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\na=rtpmap:97 iLBC/8000\r\nm=video 51372 RTP/AVP 31 32\r\na=rtpmap:31 H261/90000\r\na=rtpmap:32 MPV/90000\r\n";

    #[test]
    fn line_endings_are_kept_whatever_they_are() {
        for input in [
            OFFER.to_owned(),
            OFFER.replace("\r\n", "\n"),
            OFFER.trim_end().to_owned(),
            format!("{}\r", OFFER.trim_end()),
            format!("\r\n{OFFER}\r\n\r\n"),
        ] {
            let sdp = SessionDescription::parse(input.as_bytes()).unwrap();
            assert_eq!(sdp.to_bytes(), input.as_bytes(), "{input:?}");
            assert_eq!(sdp.media().len(), 2);
        }
    }

    #[test]
    fn both_parsers_agree_on_rtpmaps() {
        let sdp = SessionDescription::parse(OFFER.as_bytes()).unwrap();
        for media in sdp.media() {
            assert_eq!(media.rtp_parse(), &RtpParse::WebrtcSdp);
            assert_eq!(fallback_rtpmaps(&media.lines), media.rtpmaps);
        }
    }

    use crate::test_support as support;

    /// On every real-world RTP section, webrtc-sdp is used and our reader agrees with it.
    #[test]
    fn webrtc_sdp_reads_every_real_world_rtp_section_as_we_do() {
        for (name, text) in support::real_world_sdps() {
            let sdp = SessionDescription::parse(text.as_bytes()).unwrap();
            for media in sdp.media().iter().filter(|m| m.is_rtp()) {
                assert_eq!(media.rtp_parse(), &RtpParse::WebrtcSdp, "{name}");
                assert_eq!(fallback_rtpmaps(&media.lines), media.rtpmaps, "{name}");
            }
        }
    }

    #[test]
    fn rtpmap_reader() {
        assert_eq!(parse_rtpmap("0 PCMU/8000"), Some(Codec::pcmu()));
        let opus = parse_rtpmap("111 opus/48000/2").unwrap();
        assert_eq!((opus.payload_type, opus.channels), (111, Some(2)));
        for bad in [
            "97 foo",
            "x PCMU/8000",
            "0 /8000",
            "0 PCMU/x",
            "0 a/1/2/3",
            "300 a/1",
        ] {
            assert_eq!(parse_rtpmap(bad), None, "{bad}");
        }
    }

    #[test]
    fn insert_keeps_a_missing_final_ending() {
        let input = OFFER.trim_end();
        let mut sdp = SessionDescription::parse(input.as_bytes()).unwrap();
        sdp.media_mut()[1].set_direction(Direction::Inactive);
        let out = sdp.to_bytes();
        assert!(
            out.ends_with(b"a=rtpmap:32 MPV/90000\r\na=inactive"),
            "{out:?}"
        );
    }
}
