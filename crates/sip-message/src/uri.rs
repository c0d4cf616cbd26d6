//! SIP, SIPS and tel URIs (RFC 3261 §19.1, RFC 3966) and other schemes kept opaque
//! (RFC 3986 §3.1).

use crate::ParseError;
use crate::scan::{
    HNV, HOST, PARAM, PASS, SCHEME, USER, all_escaped_class, is, range, sub, unescape,
};
use bytes::{BufMut, Bytes, BytesMut};
use std::borrow::Cow;
use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};

/// A `name[=value]` parameter, bytes as received (URI parameters keep their escapes;
/// header parameters keep their quotes).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Param {
    pub name: Bytes,
    pub value: Option<Bytes>,
}

impl Param {
    /// A parameter from text.
    pub fn new(name: &str, value: Option<&str>) -> Param {
        Param {
            name: Bytes::copy_from_slice(name.as_bytes()),
            value: value.map(|v| Bytes::copy_from_slice(v.as_bytes())),
        }
    }
}

pub(crate) fn find_param<'a>(params: &'a [Param], name: &str) -> Option<&'a Param> {
    params
        .iter()
        .find(|p| p.name.eq_ignore_ascii_case(name.as_bytes()))
}

pub(crate) fn write_params(out: &mut BytesMut, params: &[Param]) {
    for p in params {
        out.put_u8(b';');
        out.extend_from_slice(&p.name);
        if let Some(v) = &p.value {
            out.put_u8(b'=');
            out.extend_from_slice(v);
        }
    }
}

/// A host: a domain name, an IPv4 address or an IPv6 reference (RFC 3261 §25.1 `host`).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Host {
    Domain(Bytes),
    Ipv4(Ipv4Addr),
    Ipv6(Ipv6Addr),
}

impl Host {
    /// Parses `src[s..e]` as a host (IPv6 references in brackets).
    pub(crate) fn parse_in(src: &Bytes, s: usize, e: usize) -> Option<Host> {
        let b = range(src, s, e);
        match b.first()? {
            b'[' => {
                if b.last() != Some(&b']') || b.len() < 3 {
                    return None;
                }
                let inner = std::str::from_utf8(range(b, 1, b.len() - 1)).ok()?;
                inner.parse().ok().map(Host::Ipv6)
            }
            _ => {
                // one pass: host characters, no empty label, IPv4 if digits and dots only
                let mut numeric = true;
                let mut prev = b'.';
                for &c in b {
                    if !is(c, HOST) || (c == b'.' && prev == b'.') {
                        return None;
                    }
                    numeric &= c.is_ascii_digit() || c == b'.';
                    prev = c;
                }
                if b.first() == Some(&b'-') {
                    return None;
                }
                if numeric && let Some(ip) = crate::ascii::parse_ipv4(b) {
                    return Some(Host::Ipv4(ip));
                }
                Some(Host::Domain(sub(src, s, e)))
            }
        }
    }

    /// Parses a host from text (an IPv6 address with or without brackets).
    pub fn parse(b: &[u8]) -> Option<Host> {
        if let Some(ip) = std::str::from_utf8(b)
            .ok()
            .and_then(|s| s.parse::<Ipv6Addr>().ok())
        {
            return Some(Host::Ipv6(ip));
        }
        let src = Bytes::copy_from_slice(b);
        Host::parse_in(&src, 0, src.len())
    }

    fn eq_ignore_case(&self, other: &Host) -> bool {
        match (self, other) {
            (Host::Domain(a), Host::Domain(b)) => a.eq_ignore_ascii_case(b),
            (a, b) => a == b,
        }
    }

    pub(crate) fn write(&self, out: &mut BytesMut) {
        match self {
            Host::Domain(d) => out.extend_from_slice(d),
            h => out.extend_from_slice(h.to_string().as_bytes()),
        }
    }
}

impl fmt::Display for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Host::Domain(d) => f.write_str(&String::from_utf8_lossy(d)),
            Host::Ipv4(ip) => f.write_str(crate::ascii::ipv4_str(*ip, &mut [0; 15])),
            Host::Ipv6(ip) => write!(f, "[{ip}]"),
        }
    }
}

/// A URI as found in a Request-URI or a name-addr.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Uri {
    /// `sip:` or `sips:` (RFC 3261 §19.1).
    Sip(SipUri),
    /// `tel:` (RFC 3966).
    Tel(TelUri),
    /// Any other scheme, kept opaque (RFC 3261 §19.1, a UAS answers 416, §21.4.15).
    Other { scheme: Bytes, rest: Bytes },
}

/// A SIP or SIPS URI (RFC 3261 §19.1.1). Parts keep their `%` escapes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SipUri {
    pub secure: bool,
    pub user: Option<Bytes>,
    pub password: Option<Bytes>,
    pub host: Host,
    pub port: Option<u16>,
    pub params: Vec<Param>,
    pub headers: Vec<Param>,
}

/// A tel URI (RFC 3966 §3).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TelUri {
    pub number: Bytes,
    pub params: Vec<Param>,
}

impl SipUri {
    /// A `sip:` URI for `host`.
    pub fn new(host: Host) -> SipUri {
        SipUri {
            secure: false,
            user: None,
            password: None,
            host,
            port: None,
            params: Vec::new(),
            headers: Vec::new(),
        }
    }

    /// The user part with `%` escapes decoded (RFC 3261 §19.1.2).
    pub fn user_unescaped(&self) -> Option<Cow<'_, [u8]>> {
        self.user.as_deref().map(unescape)
    }

    /// `Some(None)` for a parameter without value, `Some(Some(v))` with one (raw bytes).
    pub fn param(&self, n: &str) -> Option<Option<&[u8]>> {
        find_param(&self.params, n).map(|p| p.value.as_deref())
    }

    /// The `transport` parameter (RFC 3261 §19.1.1).
    pub fn transport_param(&self) -> Option<&[u8]> {
        self.param("transport").flatten()
    }

    fn parse_rest(src: &Bytes, start: usize, secure: bool) -> Option<SipUri> {
        let b: &[u8] = src;
        let end = b.len();
        // userinfo: everything before '@' (neither params nor headers may hold '@').
        let (user, password, hs) = match memchr::memchr(b'@', range(b, start, end)) {
            Some(i) => {
                let at = start + i;
                let ui = range(b, start, at);
                let (u_end, pw) = match memchr::memchr(b':', ui) {
                    Some(c) => (start + c, Some((start + c + 1, at))),
                    None => (at, None),
                };
                let u = range(b, start, u_end);
                if u.is_empty() || !all_escaped_class(u, USER) {
                    return None;
                }
                let password = match pw {
                    Some((ps, pe)) => {
                        if !all_escaped_class(range(b, ps, pe), PASS) {
                            return None;
                        }
                        Some(sub(src, ps, pe))
                    }
                    None => None,
                };
                (Some(sub(src, start, u_end)), password, at + 1)
            }
            None => (None, None, start),
        };
        // host
        let mut i = hs;
        if b.get(i) == Some(&b'[') {
            while b.get(i).is_some_and(|&c| c != b']') {
                i += 1;
            }
            if b.get(i) != Some(&b']') {
                return None;
            }
            i += 1;
        } else {
            while b.get(i).is_some_and(|&c| is(c, HOST)) {
                i += 1;
            }
        }
        let host = Host::parse_in(src, hs, i)?;
        let mut port = None;
        if b.get(i) == Some(&b':') {
            let ps = i + 1;
            i = ps;
            while b.get(i).is_some_and(u8::is_ascii_digit) {
                i += 1;
            }
            let p = crate::scan::parse_u64(range(b, ps, i))?;
            port = Some(u16::try_from(p).ok()?);
        }
        // uri-parameters
        let mut params = Vec::new();
        while b.get(i) == Some(&b';') {
            i += 1;
            let ns = i;
            while b.get(i).is_some_and(|&c| is(c, PARAM) || c == b'%') {
                i += 1;
            }
            if ns == i || !all_escaped_class(range(b, ns, i), PARAM) {
                return None;
            }
            let name = sub(src, ns, i);
            let value = if b.get(i) == Some(&b'=') {
                i += 1;
                let vs = i;
                while b.get(i).is_some_and(|&c| is(c, PARAM) || c == b'%') {
                    i += 1;
                }
                if vs == i || !all_escaped_class(range(b, vs, i), PARAM) {
                    return None;
                }
                Some(sub(src, vs, i))
            } else {
                None
            };
            params.push(Param { name, value });
        }
        // headers
        let mut headers = Vec::new();
        if b.get(i) == Some(&b'?') {
            loop {
                i += 1;
                let ns = i;
                while b.get(i).is_some_and(|&c| is(c, HNV) || c == b'%') {
                    i += 1;
                }
                if ns == i || !all_escaped_class(range(b, ns, i), HNV) || b.get(i) != Some(&b'=') {
                    return None;
                }
                let name = sub(src, ns, i);
                i += 1;
                let vs = i;
                while b.get(i).is_some_and(|&c| is(c, HNV) || c == b'%') {
                    i += 1;
                }
                if !all_escaped_class(range(b, vs, i), HNV) {
                    return None;
                }
                headers.push(Param {
                    name,
                    value: Some(sub(src, vs, i)),
                });
                if b.get(i) != Some(&b'&') {
                    break;
                }
            }
        }
        if i != end {
            return None;
        }
        Some(SipUri {
            secure,
            user,
            password,
            host,
            port,
            params,
            headers,
        })
    }

    pub(crate) fn write(&self, out: &mut BytesMut) {
        out.extend_from_slice(if self.secure { b"sips:" } else { b"sip:" });
        if let Some(u) = &self.user {
            out.extend_from_slice(u);
            if let Some(p) = &self.password {
                out.put_u8(b':');
                out.extend_from_slice(p);
            }
            out.put_u8(b'@');
        }
        self.host.write(out);
        if let Some(p) = self.port {
            out.put_u8(b':');
            out.extend_from_slice(crate::ascii::u32_digits(u32::from(p), &mut [0; 10]));
        }
        write_params(out, &self.params);
        for (n, h) in self.headers.iter().enumerate() {
            out.put_u8(if n == 0 { b'?' } else { b'&' });
            out.extend_from_slice(&h.name);
            out.put_u8(b'=');
            if let Some(v) = &h.value {
                out.extend_from_slice(v);
            }
        }
    }

    /// RFC 3261 §19.1.4.
    fn equivalent(&self, o: &SipUri) -> bool {
        fn opt_eq(a: &Option<Bytes>, b: &Option<Bytes>) -> bool {
            match (a, b) {
                (None, None) => true,
                (Some(a), Some(b)) => unescape(a) == unescape(b),
                _ => false,
            }
        }
        fn val_eq(a: Option<&[u8]>, b: Option<&[u8]>) -> bool {
            match (a, b) {
                (None, None) => true,
                (Some(a), Some(b)) => unescape(a).eq_ignore_ascii_case(&unescape(b)),
                _ => false,
            }
        }
        fn get<'a>(ps: &'a [Param], n: &[u8]) -> Option<&'a Param> {
            let n = unescape(n);
            ps.iter()
                .find(|p| unescape(&p.name).eq_ignore_ascii_case(&n))
        }
        if self.secure != o.secure
            || !opt_eq(&self.user, &o.user)
            || !opt_eq(&self.password, &o.password)
            || !self.host.eq_ignore_case(&o.host)
            || self.port != o.port
        {
            return false;
        }
        // user, ttl, method, maddr, transport must match if present in either.
        for special in ["user", "ttl", "method", "maddr", "transport"] {
            let a = get(&self.params, special.as_bytes());
            let b = get(&o.params, special.as_bytes());
            match (a, b) {
                (None, None) => {}
                (Some(a), Some(b)) => {
                    if !val_eq(a.value.as_deref(), b.value.as_deref()) {
                        return false;
                    }
                }
                _ => return false,
            }
        }
        // other parameters are compared only when both have them.
        for p in &self.params {
            if let Some(q) = get(&o.params, &p.name)
                && !val_eq(p.value.as_deref(), q.value.as_deref())
            {
                return false;
            }
        }
        // headers: every header on either side must match.
        let hdr_match = |x: &[Param], y: &[Param]| {
            x.iter().all(|h| {
                get(y, &h.name).is_some_and(|k| {
                    unescape(h.value.as_deref().unwrap_or_default())
                        == unescape(k.value.as_deref().unwrap_or_default())
                })
            })
        };
        hdr_match(&self.headers, &o.headers) && hdr_match(&o.headers, &self.headers)
    }
}

fn is_tel_char(c: u8) -> bool {
    c.is_ascii_hexdigit()
        || matches!(
            c,
            b'*' | b'#' | b'+' | b'-' | b'.' | b'(' | b')' | b'p' | b'w'
        )
}

impl TelUri {
    fn parse_rest(src: &Bytes, start: usize) -> Option<TelUri> {
        let b: &[u8] = src;
        let mut i = start;
        while b.get(i).is_some_and(|&c| is_tel_char(c)) {
            i += 1;
        }
        if i == start {
            return None;
        }
        let number = sub(src, start, i);
        let mut params = Vec::new();
        while b.get(i) == Some(&b';') {
            i += 1;
            let ns = i;
            while b.get(i).is_some_and(|&c| is(c, PARAM) || c == b'%') {
                i += 1;
            }
            if ns == i {
                return None;
            }
            let name = sub(src, ns, i);
            let value = if b.get(i) == Some(&b'=') {
                i += 1;
                let vs = i;
                while b.get(i).is_some_and(|&c| is(c, PARAM) || c == b'%') {
                    i += 1;
                }
                if vs == i {
                    return None;
                }
                Some(sub(src, vs, i))
            } else {
                None
            };
            params.push(Param { name, value });
        }
        if i != b.len() {
            return None;
        }
        Some(TelUri { number, params })
    }

    /// The digits of the number without visual separators (RFC 3966 §5.1.1).
    pub fn digits(&self) -> String {
        self.number
            .iter()
            .filter(|c| !matches!(c, b'-' | b'.' | b'(' | b')'))
            .map(|&c| char::from(c.to_ascii_lowercase()))
            .collect()
    }
}

impl Uri {
    /// Parses a URI (RFC 3261 §19.1, §25.1 `absoluteURI`).
    pub fn parse(b: &[u8]) -> Result<Uri, ParseError> {
        Uri::parse_bytes(&Bytes::copy_from_slice(b))
    }

    /// Parses a URI held in `src`; parts are zero-copy slices of it.
    pub fn parse_bytes(src: &Bytes) -> Result<Uri, ParseError> {
        let b: &[u8] = src;
        let colon = memchr::memchr(b':', b).ok_or(ParseError::BadUri)?;
        let scheme = range(b, 0, colon);
        let first_ok = scheme.first().is_some_and(u8::is_ascii_alphabetic);
        if !first_ok || !scheme.iter().all(|&c| is(c, SCHEME)) {
            return Err(ParseError::BadUri);
        }
        let start = colon + 1;
        let uri = if scheme.eq_ignore_ascii_case(b"sip") {
            SipUri::parse_rest(src, start, false).map(Uri::Sip)
        } else if scheme.eq_ignore_ascii_case(b"sips") {
            SipUri::parse_rest(src, start, true).map(Uri::Sip)
        } else if scheme.eq_ignore_ascii_case(b"tel") {
            TelUri::parse_rest(src, start).map(Uri::Tel)
        } else {
            let rest = range(b, start, b.len());
            if rest.is_empty()
                || !rest
                    .iter()
                    .all(|&c| c.is_ascii_graphic() && !matches!(c, b'<' | b'>' | b'"'))
            {
                None
            } else {
                Some(Uri::Other {
                    scheme: sub(src, 0, colon),
                    rest: sub(src, start, b.len()),
                })
            }
        };
        uri.ok_or(ParseError::BadUri)
    }

    /// The URI as text.
    pub fn to_bytes(&self) -> Bytes {
        let mut out = BytesMut::with_capacity(64);
        self.write(&mut out);
        out.freeze()
    }

    pub(crate) fn write(&self, out: &mut BytesMut) {
        match self {
            Uri::Sip(u) => u.write(out),
            Uri::Tel(t) => {
                out.extend_from_slice(b"tel:");
                out.extend_from_slice(&t.number);
                write_params(out, &t.params);
            }
            Uri::Other { scheme, rest } => {
                out.extend_from_slice(scheme);
                out.put_u8(b':');
                out.extend_from_slice(rest);
            }
        }
    }

    /// RFC 3261 §19.1.4 comparison for SIP/SIPS URIs: userinfo case-sensitive, the rest
    /// case-insensitive, escapes decoded, `user`/`ttl`/`method`/`maddr`/`transport` must
    /// match when either has them, other parameters only when both do, headers all.
    /// tel URIs compare by digits and parameters (RFC 3966 §4); others byte-wise.
    pub fn equivalent(&self, other: &Uri) -> bool {
        match (self, other) {
            (Uri::Sip(a), Uri::Sip(b)) => a.equivalent(b),
            (Uri::Tel(a), Uri::Tel(b)) => {
                a.digits() == b.digits()
                    && a.params.len() == b.params.len()
                    && a.params.iter().all(|p| {
                        find_param(&b.params, &String::from_utf8_lossy(&p.name)).is_some_and(|q| {
                            match (&p.value, &q.value) {
                                (None, None) => true,
                                (Some(x), Some(y)) => x.eq_ignore_ascii_case(y),
                                _ => false,
                            }
                        })
                    })
            }
            (
                Uri::Other {
                    scheme: s1,
                    rest: r1,
                },
                Uri::Other {
                    scheme: s2,
                    rest: r2,
                },
            ) => s1.eq_ignore_ascii_case(s2) && r1 == r2,
            _ => false,
        }
    }

    /// The SIP URI, if this is one.
    pub fn as_sip(&self) -> Option<&SipUri> {
        match self {
            Uri::Sip(u) => Some(u),
            _ => None,
        }
    }
}

impl fmt::Display for Uri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&String::from_utf8_lossy(&self.to_bytes()))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic, clippy::indexing_slicing)]
mod tests {
    use super::*;

    fn sip(s: &str) -> SipUri {
        match Uri::parse(s.as_bytes()).unwrap() {
            Uri::Sip(u) => u,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn full_sip_uri() {
        let u = sip(
            "sips:alice:secret@atlanta.example.com:5061;transport=tcp;lr?subject=project%20x&priority=urgent",
        );
        assert!(u.secure);
        assert_eq!(u.user.as_deref(), Some(&b"alice"[..]));
        assert_eq!(u.password.as_deref(), Some(&b"secret"[..]));
        assert_eq!(
            u.host,
            Host::Domain(Bytes::from_static(b"atlanta.example.com"))
        );
        assert_eq!(u.port, Some(5061));
        assert_eq!(u.param("transport"), Some(Some(&b"tcp"[..])));
        assert_eq!(u.param("lr"), Some(None));
        assert_eq!(u.headers.len(), 2);
        assert_eq!(u.headers[0].value.as_deref(), Some(&b"project%20x"[..]));
    }

    #[test]
    fn ipv4_and_ipv6_hosts() {
        let u = sip("sip:192.0.2.4:5060");
        assert_eq!(u.host, Host::Ipv4("192.0.2.4".parse().unwrap()));
        assert_eq!(u.user, None);
        let u = sip("sip:bob@[2001:db8::10]:5070;maddr=[2001:db8::1]");
        assert_eq!(u.host, Host::Ipv6("2001:db8::10".parse().unwrap()));
        assert_eq!(u.port, Some(5070));
        assert_eq!(u.host.to_string(), "[2001:db8::10]");
        assert_eq!(u.param("maddr"), Some(Some(&b"[2001:db8::1]"[..])));
        assert!(Uri::parse(b"sip:[2001:db8::10").is_err());
        assert!(Uri::parse(b"sip:[zz::1]").is_err());
        assert!(Uri::parse(b"sip:host:99999").is_err());
        assert!(Uri::parse(b"sip:host:").is_err());
    }

    #[test]
    fn escaping() {
        let u = sip("sip:sips%3Auser%40example.com@example.net");
        assert_eq!(
            u.user_unescaped().unwrap().as_ref(),
            b"sips:user@example.com"
        );
        assert!(Uri::parse(b"sip:us%zzer@host").is_err());
        assert!(Uri::parse(b"sip:us%2@host").is_err());
        let u = sip("sip:user;par=u%40example.net@example.com");
        assert_eq!(
            u.user_unescaped().unwrap().as_ref(),
            b"user;par=u@example.net"
        );
    }

    #[test]
    fn tel_and_other() {
        let Uri::Tel(t) = Uri::parse(b"tel:+1-201-555-0123;phone-context=example.com").unwrap()
        else {
            panic!()
        };
        assert_eq!(&t.number[..], b"+1-201-555-0123");
        assert_eq!(t.digits(), "+12015550123");
        assert_eq!(t.params.len(), 1);
        let u = Uri::parse(b"http://www.example.com/x").unwrap();
        assert!(matches!(u, Uri::Other { ref scheme, .. } if &scheme[..] == b"http"));
        assert!(Uri::parse(b"<sip:a@b>").is_err());
        assert!(Uri::parse(b"sip:a@b c").is_err());
        assert!(Uri::parse(b"nocolon").is_err());
        assert!(Uri::parse(b"1x:foo").is_err());
    }

    #[test]
    fn comparison_rfc3261_19_1_4() {
        let eq = |a: &str, b: &str| {
            Uri::parse(a.as_bytes())
                .unwrap()
                .equivalent(&Uri::parse(b.as_bytes()).unwrap())
        };
        // equivalent pairs from §19.1.4
        assert!(eq(
            "sip:%61lice@atlanta.com;transport=TCP",
            "sip:alice@AtLanTa.CoM;Transport=tcp"
        ));
        assert!(eq(
            "sip:carol@chicago.com",
            "sip:carol@chicago.com;newparam=5"
        ));
        assert!(eq(
            "sip:carol@chicago.com;security=on",
            "sip:carol@chicago.com;newparam=5"
        ));
        assert!(eq(
            "sip:biloxi.com;transport=tcp;method=REGISTER?to=sip:bob%40biloxi.com",
            "sip:biloxi.com;method=REGISTER;transport=tcp?to=sip:bob%40biloxi.com"
        ));
        assert!(eq(
            "sip:alice@atlanta.com?subject=project%20x&priority=urgent",
            "sip:alice@atlanta.com?priority=urgent&subject=project%20x"
        ));
        // non-equivalent pairs from §19.1.4
        assert!(!eq(
            "SIP:ALICE@AtLanTa.CoM;Transport=udp",
            "sip:alice@AtLanTa.CoM;Transport=UDP"
        ));
        assert!(!eq("sip:bob@biloxi.com", "sip:bob@biloxi.com:5060"));
        assert!(!eq(
            "sip:bob@biloxi.com",
            "sip:bob@biloxi.com;transport=udp"
        ));
        assert!(!eq(
            "sip:bob@biloxi.com",
            "sip:bob@biloxi.com:6000;transport=tcp"
        ));
        assert!(!eq(
            "sip:carol@chicago.com",
            "sip:carol@chicago.com?Subject=next%20meeting"
        ));
        assert!(!eq("sip:bob@phone21.boxesbybob.com", "sip:bob@192.0.2.4"));
        assert!(!eq(
            "sip:carol@chicago.com;security=on",
            "sip:carol@chicago.com;security=off"
        ));
        assert!(!eq("sip:a@b", "sips:a@b"));
    }

    #[test]
    fn print_round_trip() {
        for s in [
            "sip:alice@atlanta.com",
            "sips:a:b@[2001:db8::1]:5061;transport=tls;lr?h=v&x=",
            "sip:192.0.2.1;maddr=239.255.255.1;ttl=15",
            "tel:+358-555-1234567;postd=pp22",
            "urn:service:sos",
        ] {
            let u = Uri::parse(s.as_bytes()).unwrap();
            assert_eq!(u.to_string(), s);
            assert_eq!(Uri::parse_bytes(&u.to_bytes()).unwrap(), u);
        }
    }
}
