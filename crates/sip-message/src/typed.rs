//! Typed header values, parsed on demand from the raw `Bytes` (RFC 3261 §20, §25.1).

use crate::scan::{
    Cursor, TOKEN, WORD, is, is_lws, range, scan_quoted, sub, trim_lws_range, unquote,
};
use crate::uri::{Host, Param, find_param, write_params};
use crate::{HeaderName, Method, ParseError, Token, Transport, Uri};
use bytes::{BufMut, Bytes, BytesMut};
use std::net::IpAddr;

fn bad(name: HeaderName) -> ParseError {
    ParseError::BadHeader { name }
}

/// `*( SEMI generic-param )` with LWS allowed around `;` and `=` (RFC 3261 §25.1).
/// Values are a token, a host (IPv6 allowed) or a quoted string (quotes kept).
pub(crate) fn parse_params(c: &mut Cursor<'_>) -> Option<Vec<Param>> {
    let mut v = Vec::new();
    loop {
        let save = c.pos;
        c.skip_lws();
        if !c.eat(b';') {
            c.pos = save;
            return Some(v);
        }
        c.skip_lws();
        let (ns, ne) = c.take_class(TOKEN);
        if ns == ne {
            return None;
        }
        let save = c.pos;
        c.skip_lws();
        let value = if c.eat(b'=') {
            c.skip_lws();
            if c.peek() == Some(b'"') {
                let s = c.pos;
                let e = scan_quoted(c.src, s)?;
                c.pos = e;
                Some(c.slice(s, e))
            } else {
                let (vs, ve) = c.take_while(|b| is(b, TOKEN) || matches!(b, b':' | b'[' | b']'));
                if vs == ve {
                    return None;
                }
                Some(c.slice(vs, ve))
            }
        } else {
            c.pos = save;
            None
        };
        v.push(Param {
            name: c.slice(ns, ne),
            value,
        });
    }
}

/// The transport of a Via (RFC 3261 §20.42 `transport`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ViaTransport {
    Known(Transport),
    Other(Token),
}

impl ViaTransport {
    /// The token as written.
    pub fn as_str(&self) -> &str {
        match self {
            ViaTransport::Known(t) => t.as_str(),
            ViaTransport::Other(t) => t.as_str(),
        }
    }
}

/// One Via value (RFC 3261 §20.42): `sent-protocol LWS sent-by *( SEMI via-params )`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Via {
    /// `protocol-name/protocol-version`, normally "SIP/2.0".
    pub protocol: Bytes,
    pub transport: ViaTransport,
    pub host: Host,
    pub port: Option<u16>,
    pub params: Vec<Param>,
}

impl Via {
    /// A Via for `transport`, `host`, `port` with a `branch` parameter.
    pub fn new(transport: Transport, host: Host, port: Option<u16>, branch: &str) -> Via {
        Via {
            protocol: Bytes::from_static(b"SIP/2.0"),
            transport: ViaTransport::Known(transport),
            host,
            port,
            params: vec![Param::new("branch", Some(branch))],
        }
    }

    /// Parses one Via value (one element of the comma-separated list).
    pub fn parse(v: &Bytes) -> Result<Via, ParseError> {
        Self::parse_inner(v).ok_or(ParseError::BadHeader {
            name: HeaderName::Via,
        })
    }

    fn parse_inner(v: &Bytes) -> Option<Via> {
        let mut c = Cursor::new(v);
        c.skip_lws();
        let (ps, pe) = c.take_class(TOKEN);
        c.skip_lws();
        if ps == pe || !c.eat(b'/') {
            return None;
        }
        c.skip_lws();
        let (vs, ve) = c.take_class(TOKEN);
        c.skip_lws();
        if vs == ve || !c.eat(b'/') {
            return None;
        }
        c.skip_lws();
        let (ts, te) = c.take_class(TOKEN);
        if ts == te {
            return None;
        }
        let before = c.pos;
        c.skip_lws();
        if c.pos == before {
            return None;
        }
        let hs = c.pos;
        if c.peek() == Some(b'[') {
            c.take_while(|b| b != b']');
            if !c.eat(b']') {
                return None;
            }
        } else {
            c.take_class(crate::scan::HOST);
        }
        let host = Host::parse_in(v, hs, c.pos)?;
        let save = c.pos;
        c.skip_lws();
        let port = if c.eat(b':') {
            c.skip_lws();
            let (s, e) = c.take_while(|b| b.is_ascii_digit());
            Some(u16::try_from(crate::scan::parse_u64(c.bytes(s, e))?).ok()?)
        } else {
            c.pos = save;
            None
        };
        let params = parse_params(&mut c)?;
        c.skip_lws();
        if !c.is_end() {
            return None;
        }
        let name = c.bytes(ps, pe);
        let ver = c.bytes(vs, ve);
        let protocol = if name == b"SIP" && ver == b"2.0" {
            Bytes::from_static(b"SIP/2.0")
        } else {
            let mut p = BytesMut::with_capacity(name.len() + ver.len() + 1);
            p.extend_from_slice(name);
            p.put_u8(b'/');
            p.extend_from_slice(ver);
            p.freeze()
        };
        let tb = c.bytes(ts, te);
        let transport = match Transport::from_token(tb) {
            Some(t) => ViaTransport::Known(t),
            None => ViaTransport::Other(Token::from_validated(sub(v, ts, te))),
        };
        Some(Via {
            protocol,
            transport,
            host,
            port,
            params,
        })
    }

    fn value(&self, name: &str) -> Option<Option<&[u8]>> {
        find_param(&self.params, name).map(|p| p.value.as_deref())
    }

    /// The `branch` parameter (RFC 3261 §20.42).
    pub fn branch(&self) -> Option<&[u8]> {
        self.value("branch").flatten()
    }

    /// True if the branch starts with the magic cookie "z9hG4bK" (RFC 3261 §8.1.1.7).
    pub fn has_magic_cookie(&self) -> bool {
        self.branch().is_some_and(|b| b.starts_with(b"z9hG4bK"))
    }

    /// The `received` parameter as an address (RFC 3261 §18.2.1; IPv6 per RFC 5118 §4.5).
    pub fn received(&self) -> Option<IpAddr> {
        let v = self.value("received").flatten()?;
        let v = v
            .strip_prefix(b"[")
            .and_then(|x| x.strip_suffix(b"]"))
            .unwrap_or(v);
        std::str::from_utf8(v).ok()?.parse().ok()
    }

    /// The `rport` parameter (RFC 3581): `Some(None)` when present without a value.
    pub fn rport(&self) -> Option<Option<u16>> {
        match self.value("rport")? {
            None => Some(None),
            Some(v) => std::str::from_utf8(v).ok()?.parse().ok().map(Some),
        }
    }

    /// The `maddr` parameter (RFC 3261 §18.2.2).
    pub fn maddr(&self) -> Option<Host> {
        Host::parse(self.value("maddr").flatten()?)
    }

    /// The `ttl` parameter (RFC 3261 §20.42).
    pub fn ttl(&self) -> Option<u8> {
        std::str::from_utf8(self.value("ttl").flatten()?)
            .ok()?
            .parse()
            .ok()
    }

    /// Replaces the parameter's value, or adds the parameter.
    pub fn set_param(&mut self, name: &str, value: Option<&str>) {
        let value = value.map(|v| Bytes::copy_from_slice(v.as_bytes()));
        match self
            .params
            .iter_mut()
            .find(|p| p.name.eq_ignore_ascii_case(name.as_bytes()))
        {
            Some(p) => p.value = value,
            None => self.params.push(Param {
                name: Bytes::copy_from_slice(name.as_bytes()),
                value,
            }),
        }
    }

    /// The printable header value.
    pub fn to_bytes(&self) -> Bytes {
        let mut out = BytesMut::with_capacity(64);
        out.extend_from_slice(&self.protocol);
        out.put_u8(b'/');
        out.extend_from_slice(self.transport.as_str().as_bytes());
        out.put_u8(b' ');
        self.host.write(&mut out);
        if let Some(p) = self.port {
            out.extend_from_slice(format!(":{p}").as_bytes());
        }
        write_params(&mut out, &self.params);
        out.freeze()
    }
}

/// `name-addr` or `addr-spec` with header parameters: From, To, Contact, Route,
/// Record-Route, Reply-To, Refer-To... (RFC 3261 §20.10, §25.1).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NameAddr {
    /// Unquoted and unescaped.
    pub display_name: Option<String>,
    pub uri: Uri,
    pub params: Vec<Param>,
}

/// Finds `needle` outside quoted strings.
fn find_unquoted(b: &[u8], from: usize, needle: u8) -> Option<usize> {
    let mut i = from;
    loop {
        let at = i + memchr::memchr2(needle, b'"', b.get(i..)?)?;
        if b.get(at) == Some(&needle) {
            return Some(at);
        }
        i = scan_quoted(b, at)?;
    }
}

impl NameAddr {
    /// A name-addr for `uri` with no display name or parameters.
    pub fn new(uri: Uri) -> NameAddr {
        NameAddr {
            display_name: None,
            uri,
            params: Vec::new(),
        }
    }

    /// Parses a From/To/Contact/Route-style value. Per RFC 3261 §20.10, without `<>` the
    /// URI ends at the first `;` (what follows are header parameters) and must not hold a
    /// comma, question mark or LWS.
    pub fn parse(v: &Bytes) -> Option<NameAddr> {
        let b: &[u8] = v;
        let mut c = Cursor::new(v);
        c.skip_lws();
        let start = c.pos;
        let (display_name, uri, after) = match find_unquoted(b, start, b'<') {
            Some(lt) => {
                let (ds, de) = trim_lws_range(b, start, lt);
                let disp = range(b, ds, de);
                let display_name = if disp.is_empty() {
                    None
                } else if disp.first() == Some(&b'"') {
                    if scan_quoted(disp, 0)? != disp.len() {
                        return None;
                    }
                    Some(String::from_utf8_lossy(&unquote(disp)).into_owned())
                } else {
                    if !disp.iter().all(|&c| is(c, TOKEN) || is_lws(c)) {
                        return None;
                    }
                    Some(String::from_utf8_lossy(disp).into_owned())
                };
                let gt = lt + 1 + memchr::memchr(b'>', range(b, lt + 1, b.len()))?;
                let uri = Uri::parse_bytes(&sub(v, lt + 1, gt)).ok()?;
                (display_name, uri, gt + 1)
            }
            None => {
                let e =
                    memchr::memchr(b';', range(b, start, b.len())).map_or(b.len(), |i| start + i);
                let (s, se) = trim_lws_range(b, start, e);
                let spec = range(b, s, se);
                if spec
                    .iter()
                    .any(|&c| matches!(c, b',' | b'?' | b'"') || is_lws(c))
                {
                    return None;
                }
                (None, Uri::parse_bytes(&sub(v, s, se)).ok()?, e)
            }
        };
        c.pos = after;
        let params = parse_params(&mut c)?;
        c.skip_lws();
        if !c.is_end() {
            return None;
        }
        Some(NameAddr {
            display_name,
            uri,
            params,
        })
    }

    pub(crate) fn parse_as(v: &Bytes, name: HeaderName) -> Result<NameAddr, ParseError> {
        NameAddr::parse(v).ok_or(ParseError::BadHeader { name })
    }

    /// The `tag` parameter (RFC 3261 §19.3).
    pub fn tag(&self) -> Option<&[u8]> {
        self.param("tag").flatten()
    }

    /// `Some(None)` for a parameter without value, `Some(Some(v))` with one (raw bytes).
    pub fn param(&self, name: &str) -> Option<Option<&[u8]>> {
        find_param(&self.params, name).map(|p| p.value.as_deref())
    }

    /// The header value, always in `<>` form.
    pub fn to_bytes(&self) -> Bytes {
        let mut out = BytesMut::with_capacity(64);
        if let Some(d) = &self.display_name {
            out.put_u8(b'"');
            for &ch in d.as_bytes() {
                if ch == b'"' || ch == b'\\' {
                    out.put_u8(b'\\');
                }
                if ch != b'\r' && ch != b'\n' {
                    out.put_u8(ch);
                }
            }
            out.extend_from_slice(b"\" ");
        }
        out.put_u8(b'<');
        self.uri.write(&mut out);
        out.put_u8(b'>');
        write_params(&mut out, &self.params);
        out.freeze()
    }
}

/// The CSeq header (RFC 3261 §20.16).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CSeq {
    pub seq: u32,
    pub method: Method,
}

impl CSeq {
    /// Parses `1*DIGIT LWS Method`.
    pub fn parse(v: &Bytes) -> Result<CSeq, ParseError> {
        let err = || bad(HeaderName::CSeq);
        let mut c = Cursor::new(v);
        c.skip_lws();
        let (s, e) = c.take_while(|b| b.is_ascii_digit());
        let seq = crate::scan::parse_u64(c.bytes(s, e))
            .and_then(|n| u32::try_from(n).ok())
            .ok_or_else(err)?;
        let before = c.pos;
        c.skip_lws();
        if c.pos == before {
            return Err(err());
        }
        let (ms, me) = c.take_class(TOKEN);
        let method = Method::parse_in(v, ms, me).map_err(|_| err())?;
        c.skip_lws();
        if !c.is_end() {
            return Err(err());
        }
        Ok(CSeq { seq, method })
    }

    /// The printable header value.
    pub fn to_bytes(&self) -> Bytes {
        Bytes::from(format!("{} {}", self.seq, self.method))
    }
}

/// The Contact header: `*` or a list (RFC 3261 §20.10).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Contacts {
    Star,
    List(Vec<Contact>),
}

/// One Contact value (RFC 3261 §20.10).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Contact {
    pub addr: NameAddr,
}

impl Contact {
    /// Parses one Contact value; `expires` must be delta-seconds below 2^32 and `q` a
    /// qvalue (RFC 3261 §20.10, §25.1).
    pub fn parse(v: &Bytes) -> Result<Contact, ParseError> {
        let addr = NameAddr::parse_as(v, HeaderName::Contact)?;
        let c = Contact { addr };
        if c.addr.param("expires").is_some() && c.expires().is_none() {
            return Err(bad(HeaderName::Contact));
        }
        if c.addr.param("q").is_some() && c.q().is_none() {
            return Err(bad(HeaderName::Contact));
        }
        Ok(c)
    }

    /// The `expires` parameter in seconds (RFC 3261 §10.2.1.1).
    pub fn expires(&self) -> Option<u32> {
        let v = self.addr.param("expires").flatten()?;
        crate::scan::parse_u64(v).and_then(|n| u32::try_from(n).ok())
    }

    /// The `q` parameter, 0.0..=1.0 (RFC 3261 §20.10 `qvalue`).
    pub fn q(&self) -> Option<f32> {
        let v = self.addr.param("q").flatten()?;
        let ok = match v {
            [b'0'] | [b'1'] => true,
            [b'0', b'.', rest @ ..] => rest.len() <= 3 && rest.iter().all(u8::is_ascii_digit),
            [b'1', b'.', rest @ ..] => rest.len() <= 3 && rest.iter().all(|&d| d == b'0'),
            _ => false,
        };
        if !ok {
            return None;
        }
        std::str::from_utf8(v).ok()?.parse().ok()
    }
}

/// A media type (RFC 3261 §20.15, RFC 2045 §5.1).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MediaType {
    pub kind: Bytes,
    pub subtype: Bytes,
    pub params: Vec<Param>,
}

impl MediaType {
    /// A media type without parameters.
    pub fn new(kind: &str, subtype: &str) -> MediaType {
        MediaType {
            kind: Bytes::copy_from_slice(kind.as_bytes()),
            subtype: Bytes::copy_from_slice(subtype.as_bytes()),
            params: Vec::new(),
        }
    }

    /// Parses `m-type SLASH m-subtype *( SEMI m-parameter )`.
    pub fn parse(b: &[u8]) -> Result<MediaType, ParseError> {
        Self::parse_bytes(&Bytes::copy_from_slice(b))
    }

    pub(crate) fn parse_bytes(v: &Bytes) -> Result<MediaType, ParseError> {
        Self::parse_inner(v).ok_or(ParseError::BadHeader {
            name: HeaderName::ContentType,
        })
    }

    fn parse_inner(v: &Bytes) -> Option<MediaType> {
        let mut c = Cursor::new(v);
        c.skip_lws();
        let (ks, ke) = c.take_class(TOKEN);
        c.skip_lws();
        if ks == ke || !c.eat(b'/') {
            return None;
        }
        c.skip_lws();
        let (ss, se) = c.take_class(TOKEN);
        if ss == se {
            return None;
        }
        let params = parse_params(&mut c)?;
        c.skip_lws();
        if !c.is_end() {
            return None;
        }
        Some(MediaType {
            kind: sub(v, ks, ke),
            subtype: sub(v, ss, se),
            params,
        })
    }

    /// Case-insensitive comparison of type and subtype.
    pub fn is(&self, kind: &str, subtype: &str) -> bool {
        self.kind.eq_ignore_ascii_case(kind.as_bytes())
            && self.subtype.eq_ignore_ascii_case(subtype.as_bytes())
    }

    /// A parameter's value with quotes removed.
    pub fn param(&self, name: &str) -> Option<Bytes> {
        let v = find_param(&self.params, name)?.value.as_ref()?;
        Some(match unquote(v) {
            std::borrow::Cow::Borrowed(b) => v.slice_ref(b),
            std::borrow::Cow::Owned(o) => Bytes::from(o),
        })
    }

    /// The printable header value.
    pub fn to_bytes(&self) -> Bytes {
        let mut out = BytesMut::with_capacity(32);
        out.extend_from_slice(&self.kind);
        out.put_u8(b'/');
        out.extend_from_slice(&self.subtype);
        write_params(&mut out, &self.params);
        out.freeze()
    }
}

/// A Date header value: `rfc1123-date` in GMT (RFC 3261 §20.17).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SipDate {
    pub year: u16,
    /// 1..=12
    pub month: u8,
    pub day: u8,
    pub hour: u8,
    pub minute: u8,
    pub second: u8,
}

impl SipDate {
    /// Parses `wkday "," SP 2DIGIT SP month SP 4DIGIT SP 2DIGIT ":" 2DIGIT ":" 2DIGIT SP "GMT"`.
    pub fn parse(v: &[u8]) -> Result<SipDate, ParseError> {
        Self::parse_inner(crate::scan::trim_lws(v)).ok_or(ParseError::BadHeader {
            name: HeaderName::Date,
        })
    }

    fn parse_inner(b: &[u8]) -> Option<SipDate> {
        const DAYS: [&[u8]; 7] = [b"Mon", b"Tue", b"Wed", b"Thu", b"Fri", b"Sat", b"Sun"];
        const MONTHS: [&[u8]; 12] = [
            b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov",
            b"Dec",
        ];
        if b.len() != 29 {
            return None;
        }
        let num = |s: usize, e: usize| -> Option<u16> {
            let d = range(b, s, e);
            if d.len() != e - s {
                return None;
            }
            crate::scan::parse_u64(d).and_then(|n| u16::try_from(n).ok())
        };
        let lit = |s: usize, l: &[u8]| range(b, s, s + l.len()) == l;
        if !DAYS.contains(&range(b, 0, 3))
            || !lit(3, b", ")
            || !lit(7, b" ")
            || !lit(11, b" ")
            || !lit(16, b" ")
            || !lit(19, b":")
            || !lit(22, b":")
            || !lit(25, b" GMT")
        {
            return None;
        }
        let month = MONTHS.iter().position(|m| *m == range(b, 8, 11))?;
        let day = num(5, 7)?;
        let year = num(12, 16)?;
        let hour = num(17, 19)?;
        let minute = num(20, 22)?;
        let second = num(23, 25)?;
        if !(1..=31).contains(&day) || hour > 23 || minute > 59 || second > 60 {
            return None;
        }
        Some(SipDate {
            year,
            month: u8::try_from(month + 1).ok()?,
            day: u8::try_from(day).ok()?,
            hour: u8::try_from(hour).ok()?,
            minute: u8::try_from(minute).ok()?,
            second: u8::try_from(second).ok()?,
        })
    }
}

/// Checks a Call-ID: `word [ "@" word ]` (RFC 3261 §20.8, §25.1).
pub(crate) fn valid_call_id(b: &[u8]) -> bool {
    if b.is_empty() {
        return false;
    }
    let mut at = 0;
    for &c in b {
        if c == b'@' {
            at += 1;
        } else if !is(c, WORD) {
            return false;
        }
    }
    at <= 1 && !b.starts_with(b"@") && !b.ends_with(b"@")
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic, clippy::indexing_slicing)]
mod tests {
    use super::*;

    fn b(s: &str) -> Bytes {
        Bytes::copy_from_slice(s.as_bytes())
    }

    #[test]
    fn via_params() {
        let v = Via::parse(&b(
            "SIP/2.0/UDP [2001:db8::9]:5070;branch=z9hG4bK77;received=2001:db8::7;rport=5071;maddr=224.2.0.1;ttl=16;x=\"q;v\";flag",
        ))
        .unwrap();
        assert_eq!(&v.protocol[..], b"SIP/2.0");
        assert_eq!(v.transport, ViaTransport::Known(Transport::Udp));
        assert_eq!(v.host, Host::Ipv6("2001:db8::9".parse().unwrap()));
        assert_eq!(v.port, Some(5070));
        assert_eq!(v.branch(), Some(&b"z9hG4bK77"[..]));
        assert!(v.has_magic_cookie());
        assert_eq!(v.received(), Some("2001:db8::7".parse().unwrap()));
        assert_eq!(v.rport(), Some(Some(5071)));
        assert_eq!(v.maddr(), Some(Host::Ipv4("224.2.0.1".parse().unwrap())));
        assert_eq!(v.ttl(), Some(16));
        assert_eq!(v.params[5].value.as_deref(), Some(&b"\"q;v\""[..]));
        assert_eq!(v.params[6].value, None);

        let mut v = Via::parse(&b(
            "SIP / 2.0 / tcp\r\n  host.example.com ; rport ; branch = abc",
        ))
        .unwrap();
        assert_eq!(v.transport, ViaTransport::Known(Transport::Tcp));
        assert_eq!(v.rport(), Some(None));
        assert!(!v.has_magic_cookie());
        v.set_param("rport", Some("4000"));
        v.set_param("received", Some("192.0.2.1"));
        assert_eq!(
            &v.to_bytes()[..],
            b"SIP/2.0/TCP host.example.com;rport=4000;branch=abc;received=192.0.2.1"
        );
        assert_eq!(Via::parse(&v.to_bytes()).unwrap(), v);
    }

    #[test]
    fn bad_vias() {
        for s in [
            "",
            "SIP/2.0/UDP",
            "SIP/2.0 UDP host",
            "SIP/2.0/UDP host;",
            "SIP/2.0/UDP host;;",
            "SIP/2.0/UDP host;branch=",
            "SIP/2.0/UDP host:70000",
            "SIP/2.0/UDP [::1",
            "SIP/2.0/UDP host junk",
        ] {
            assert!(Via::parse(&b(s)).is_err(), "{s:?}");
        }
    }

    #[test]
    fn name_addr_forms() {
        let n = NameAddr::parse(&b("\"A \\\"B\\\" C\" <sip:a@b.com;lr>;tag=x1;foo")).unwrap();
        assert_eq!(n.display_name.as_deref(), Some("A \"B\" C"));
        assert_eq!(n.tag(), Some(&b"x1"[..]));
        assert_eq!(n.param("foo"), Some(None));
        assert_eq!(n.uri.as_sip().unwrap().param("lr"), Some(None));

        let n = NameAddr::parse(&b("Bob Smith<sip:bob@b.com>")).unwrap();
        assert_eq!(n.display_name.as_deref(), Some("Bob Smith"));

        // §20.10: without <>, the params belong to the header
        let n = NameAddr::parse(&b("sip:carol@chicago.com;tag=887s")).unwrap();
        assert_eq!(n.tag(), Some(&b"887s"[..]));
        assert!(n.uri.as_sip().unwrap().params.is_empty());
        let n = NameAddr::parse(&b("<sip:carol@chicago.com;tag=887s>")).unwrap();
        assert_eq!(n.tag(), None);
        assert_eq!(
            n.uri.as_sip().unwrap().param("tag"),
            Some(Some(&b"887s"[..]))
        );

        for s in [
            "sip:user@example.com?Route=%3Csip:x%3E",
            "Bell, Alexander <sip:a@b>",
            "\"unbalanced <sip:a@b>",
            "< sip:a@b >",
            "<sip:a@b>;;",
            "<sip:a@b",
            "",
        ] {
            assert!(NameAddr::parse(&b(s)).is_none(), "{s:?}");
        }
        let n = NameAddr::parse(&b("\"x\" <sip:a@b>")).unwrap();
        assert_eq!(NameAddr::parse(&n.to_bytes()).unwrap(), n);
    }

    #[test]
    fn cseq_and_contact() {
        let c = CSeq::parse(&b("  4711\r\n  INVITE ")).unwrap();
        assert_eq!((c.seq, c.method), (4711, Method::Invite));
        assert!(CSeq::parse(&b("4294967296 INVITE")).is_err());
        assert!(CSeq::parse(&b("1INVITE")).is_err());
        assert!(CSeq::parse(&b("1 INVITE x")).is_err());
        let c = Contact::parse(&b("<sip:a@b>;expires=3600;q=0.7")).unwrap();
        assert_eq!(c.expires(), Some(3600));
        assert_eq!(c.q(), Some(0.7));
        assert!(Contact::parse(&b("<sip:a@b>;expires=4294967296")).is_err());
        assert!(Contact::parse(&b("<sip:a@b>;q=1.5")).is_err());
    }

    #[test]
    fn media_type_and_date() {
        let m =
            MediaType::parse(b"multipart/mixed ; boundary=\"a b\\\"c\"; charset=UTF-8").unwrap();
        assert!(m.is("Multipart", "MIXED"));
        assert_eq!(&m.param("boundary").unwrap()[..], b"a b\"c");
        assert_eq!(&m.param("Charset").unwrap()[..], b"UTF-8");
        assert!(MediaType::parse(b"application").is_err());
        assert!(MediaType::parse(b"a/b;").is_err());

        let d = SipDate::parse(b"Sat, 13 Nov 2010 23:29:00 GMT").unwrap();
        assert_eq!(
            (d.year, d.month, d.day, d.hour, d.minute, d.second),
            (2010, 11, 13, 23, 29, 0)
        );
        assert!(SipDate::parse(b"Fri, 01 Jan 2010 16:00:00 EST").is_err());
        assert!(SipDate::parse(b"Fri, 1 Jan 2010 16:00:00 GMT").is_err());
        assert!(SipDate::parse(b"Thu, 44 Dec 19999 16:00:00 EDT").is_err());
    }

    #[test]
    fn call_ids() {
        assert!(valid_call_id(
            b"f81d4fae-7dec-11d0-a765-00a0c91e6bf6@foo.bar.com"
        ));
        assert!(valid_call_id(b"a84b4c76e66710"));
        assert!(!valid_call_id(b""));
        assert!(!valid_call_id(b"a@b@c"));
        assert!(!valid_call_id(b"a b"));
    }
}
