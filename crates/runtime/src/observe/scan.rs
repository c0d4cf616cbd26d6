//! A cheap look at a SIP message's start line and a few headers (RFC 3261 §7, §20), for
//! the capture and the metrics: no allocation, no full parse. The core parses the message
//! properly; this only labels it, so a malformed message yields what it can and never
//! panics.

/// The start line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind<'a> {
    Request { method: &'a str },
    Response { status: u16, reason: &'a str },
}

/// What the tap needs of a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Summary<'a> {
    pub kind: Kind<'a>,
    /// `Call-ID` (or its compact form `i`), RFC 3261 §20.8.
    pub call_id: Option<&'a str>,
    /// `CSeq` number and method, RFC 3261 §20.16.
    pub cseq: Option<(u32, &'a str)>,
    pub from: Option<&'a str>,
    pub to: Option<&'a str>,
    /// The To header field has a `tag` parameter: the request is inside a dialog
    /// (RFC 3261 §12.2), or the response comes from a UAS that set one.
    pub to_tag: bool,
}

/// Splits off one line (without its CR LF).
fn line(data: &[u8]) -> (&[u8], &[u8]) {
    match data.iter().position(|&b| b == b'\n') {
        Some(end) => {
            let (line, rest) = data.split_at(end);
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            (line, rest.get(1..).unwrap_or_default())
        }
        None => (data, &[]),
    }
}

fn text(bytes: &[u8]) -> Option<&str> {
    std::str::from_utf8(bytes).ok().map(str::trim)
}

/// Summarises `data`; `None` when the start line is neither a request nor a response.
pub fn scan(data: &[u8]) -> Option<Summary<'_>> {
    let (start, mut rest) = line(data);
    let start = std::str::from_utf8(start).ok()?;
    let kind = if let Some(status_line) = start.strip_prefix("SIP/2.0 ") {
        let (code, reason) = status_line.split_once(' ').unwrap_or((status_line, ""));
        let status: u16 = code.parse().ok()?;
        if !(100..=699).contains(&status) {
            return None;
        }
        Kind::Response { status, reason }
    } else {
        let mut parts = start.split(' ');
        let method = parts.next()?;
        let _uri = parts.next()?;
        if parts.next() != Some("SIP/2.0")
            || method.is_empty()
            || !method.bytes().all(|b| b.is_ascii_alphabetic())
        {
            return None;
        }
        Kind::Request { method }
    };
    let mut summary = Summary {
        kind,
        call_id: None,
        cseq: None,
        from: None,
        to: None,
        to_tag: false,
    };
    while !rest.is_empty() {
        let (header, next) = line(rest);
        rest = next;
        if header.is_empty() {
            break;
        }
        let Some(colon) = header.iter().position(|&b| b == b':') else {
            continue;
        };
        let (name, value) = header.split_at(colon);
        let Some(value) = value.get(1..).and_then(text) else {
            continue;
        };
        let name = name.trim_ascii();
        if name.eq_ignore_ascii_case(b"call-id") || name.eq_ignore_ascii_case(b"i") {
            summary.call_id = Some(value);
        } else if name.eq_ignore_ascii_case(b"cseq") {
            let mut parts = value.split_ascii_whitespace();
            if let (Some(n), Some(m)) = (parts.next(), parts.next())
                && let Ok(n) = n.parse()
            {
                summary.cseq = Some((n, m));
            }
        } else if name.eq_ignore_ascii_case(b"from") || name.eq_ignore_ascii_case(b"f") {
            summary.from = Some(value);
        } else if name.eq_ignore_ascii_case(b"to") || name.eq_ignore_ascii_case(b"t") {
            summary.to = Some(value);
            summary.to_tag = has_tag(value);
        }
    }
    Some(summary)
}

/// A `tag` parameter after the address (RFC 3261 §20.39): outside `<...>` and quotes.
fn has_tag(value: &str) -> bool {
    let params = match value.rfind('>') {
        Some(end) => value.get(end + 1..).unwrap_or_default(),
        None => value,
    };
    params.split(';').skip(1).any(|p| {
        p.trim()
            .split('=')
            .next()
            .is_some_and(|name| name.trim().eq_ignore_ascii_case("tag"))
    })
}

/// The method as a metric label: the RFC methods, anything else `other`, so a peer
/// cannot create label values at will.
pub fn method_label(method: &str) -> &'static str {
    METHODS
        .get(method_index(method))
        .copied()
        .unwrap_or("other")
}

/// The methods with a label of their own.
pub const METHODS: [&str; 14] = sip_message::KNOWN_METHODS;

/// The method's index in [`METHODS`]; `METHODS.len()` for any other (`other`).
pub fn method_index(method: &str) -> usize {
    METHODS
        .iter()
        .position(|known| known.eq_ignore_ascii_case(method))
        .unwrap_or(METHODS.len())
}

/// A status code's class as a metric label (RFC 3261 §21).
pub fn class_label(status: u16) -> &'static str {
    match status / 100 {
        1 => "1xx",
        2 => "2xx",
        3 => "3xx",
        4 => "4xx",
        5 => "5xx",
        _ => "6xx",
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    #[test]
    fn request_with_compact_headers() {
        let m = b"INVITE sip:echo@127.0.0.1 SIP/2.0\r\nv: SIP/2.0/UDP 1.2.3.4\r\ni: abc@host\r\n\
                  f: <sip:a@b>;tag=1\r\nt: <sip:echo@127.0.0.1>\r\nCSeq: 7 INVITE\r\n\r\nbody";
        let s = scan(m).unwrap();
        assert_eq!(s.kind, Kind::Request { method: "INVITE" });
        assert_eq!(s.call_id, Some("abc@host"));
        assert_eq!(s.cseq, Some((7, "INVITE")));
        assert_eq!(s.from, Some("<sip:a@b>;tag=1"));
        assert!(!s.to_tag);
    }

    #[test]
    fn response_with_to_tag() {
        let m = b"SIP/2.0 180 Ringing\r\nCall-ID: x\r\nTo: \"a>;tag=no\" <sip:b@c>;Tag=9\r\n\r\n";
        let s = scan(m).unwrap();
        assert_eq!(
            s.kind,
            Kind::Response {
                status: 180,
                reason: "Ringing"
            }
        );
        assert!(s.to_tag);
        assert!(!has_tag("<sip:b@c;tag=uri-param>"));
    }

    #[test]
    fn garbage_is_none_and_never_panics() {
        assert!(scan(b"").is_none());
        assert!(scan(b"\r\n\r\n").is_none());
        assert!(scan(b"SIP/2.0 99 x\r\n").is_none());
        assert!(scan(b"HELLO\r\n").is_none());
        assert!(scan(&[0xff, 0xfe, b' ', b'\n']).is_none());
        let s = scan(b"BYE sip:x SIP/2.0\r\nCSeq: nope\r\nCall-ID:\xff\r\n").unwrap();
        assert_eq!(s.cseq, None);
        assert_eq!(s.call_id, None);
        assert_eq!(method_label("invite"), "INVITE");
        assert_eq!(method_label("FOO"), "other");
        assert_eq!(class_label(699), "6xx");
    }
}
