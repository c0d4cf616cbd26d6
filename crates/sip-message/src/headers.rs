//! The header section: order preserving, values byte-exact as received (RFC 3261 §7.3).

use crate::scan::{is_lws, range, scan_quoted, sub, trim_lws_range};
use crate::typed::{CSeq, Contact, Contacts, MediaType, NameAddr, SipDate, Via, valid_call_id};
use crate::{HeaderName, ParseError, Uri};
use bytes::Bytes;
use std::borrow::Cow;
use std::sync::OnceLock;

/// One header line: the name and the value after the colon, surrounding LWS trimmed,
/// folded lines kept as received (RFC 3261 §7.3.1).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Header {
    pub name: HeaderName,
    pub value: Bytes,
}

/// The headers of a message, in order.
///
/// The typed top Via, From, To and CSeq are parsed at most once per message and kept (a
/// request is checked by [`crate::Request::validate`], then keyed by the transaction layer,
/// then matched to a dialog: each step used to parse them again). Any edit forgets them;
/// a clone starts without them. A message kept for long (a session's INVITE) is marked
/// with [`Headers::keep_unparsed`]: it then parses on each access and keeps nothing.
#[derive(Default)]
pub struct Headers {
    list: Vec<Header>,
    /// Unset: nothing parsed yet; `Some`: the values parsed so far; `None`: keep none.
    parsed: OnceLock<Option<Box<Parsed>>>,
}

/// The typed values parsed so far, errors included (the same input gives the same error).
#[derive(Default)]
struct Parsed {
    top_via: OnceLock<Result<Via, ParseError>>,
    from: OnceLock<Result<NameAddr, ParseError>>,
    to: OnceLock<Result<NameAddr, ParseError>>,
    cseq: OnceLock<Result<CSeq, ParseError>>,
    contacts: OnceLock<Result<Contacts, ParseError>>,
    /// The Request-URI of the request these headers belong to, with the bytes it was
    /// parsed from (kept alive, so the same pointer and length are the same bytes).
    request_uri: OnceLock<(Bytes, Result<Uri, ParseError>)>,
}

/// The value in `slot` (parsed into it the first time), or parsed now when there is no slot.
fn kept<'a, T: Clone>(
    slot: Option<&'a OnceLock<Result<T, ParseError>>>,
    parse: impl FnOnce() -> Result<T, ParseError>,
) -> Result<Cow<'a, T>, ParseError> {
    match slot {
        Some(slot) => slot
            .get_or_init(parse)
            .as_ref()
            .map(Cow::Borrowed)
            .map_err(Clone::clone),
        None => parse().map(Cow::Owned),
    }
}

impl Clone for Headers {
    fn clone(&self) -> Self {
        Headers {
            list: self.list.clone(),
            parsed: match self.parsed.get() {
                Some(None) => OnceLock::from(None),
                _ => OnceLock::new(),
            },
        }
    }
}

impl PartialEq for Headers {
    fn eq(&self, other: &Self) -> bool {
        self.list == other.list
    }
}

impl Eq for Headers {}

impl std::fmt::Debug for Headers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Headers").field("list", &self.list).finish()
    }
}

/// Splits a comma-separated list value (RFC 3261 §7.3.1) honouring quoted strings with
/// their `\` escapes and `<...>`; yields trimmed, non-empty elements as zero-copy slices.
#[derive(Debug, Clone)]
pub struct ListValues {
    value: Bytes,
    pos: usize,
    split: bool,
}

impl ListValues {
    /// Iterates the elements of `value` (the whole value once if `split` is false).
    pub fn new(value: Bytes, split: bool) -> ListValues {
        ListValues {
            value,
            pos: 0,
            split,
        }
    }
}

/// Index of the first top-level comma at or after `from`, or `b.len()`.
fn next_comma(b: &[u8], from: usize) -> usize {
    let mut i = from;
    let mut angle = false;
    while let Some(&c) = b.get(i) {
        match c {
            b'"' if !angle => match scan_quoted(b, i) {
                Some(e) => {
                    i = e;
                    continue;
                }
                None => return b.len(),
            },
            b'<' => angle = true,
            b'>' => angle = false,
            b',' if !angle => return i,
            _ => {}
        }
        i += 1;
    }
    b.len()
}

impl Iterator for ListValues {
    type Item = Bytes;
    fn next(&mut self) -> Option<Bytes> {
        let b: &[u8] = &self.value;
        if !self.split {
            if self.pos == 0 {
                self.pos = usize::MAX;
                return Some(self.value.clone());
            }
            return None;
        }
        if self.pos == 0 && memchr::memchr(b',', b).is_none() {
            // fast path: a single element
            self.pos = usize::MAX;
            let (s, e) = trim_lws_range(b, 0, b.len());
            return (s < e).then(|| sub(&self.value, s, e));
        }
        while self.pos <= b.len() {
            let end = next_comma(b, self.pos);
            let (s, e) = trim_lws_range(b, self.pos, end);
            self.pos = end + 1;
            if s < e {
                return Some(sub(&self.value, s, e));
            }
        }
        None
    }
}

impl Headers {
    /// An empty header section.
    pub fn new() -> Self {
        Headers {
            list: Vec::new(),
            parsed: OnceLock::new(),
        }
    }

    /// An empty header section with room for `n` lines.
    pub fn with_capacity(n: usize) -> Self {
        Headers {
            list: Vec::with_capacity(n),
            parsed: OnceLock::new(),
        }
    }

    /// Appends a header line.
    pub fn push(&mut self, name: HeaderName, value: impl Into<Bytes>) {
        self.forget_parsed();
        self.list.push(Header {
            name,
            value: value.into(),
        });
    }

    /// Removes every header of that name, then pushes one.
    pub fn set(&mut self, name: HeaderName, value: impl Into<Bytes>) {
        self.remove(&name);
        self.push(name, value);
    }

    /// Removes every header line of that name; returns how many.
    pub fn remove(&mut self, name: &HeaderName) -> usize {
        self.forget_parsed();
        let before = self.list.len();
        self.list.retain(|h| h.name != *name);
        before - self.list.len()
    }

    /// The first header line's raw value.
    pub fn get(&self, name: &HeaderName) -> Option<&Bytes> {
        self.list.iter().find(|h| h.name == *name).map(|h| &h.value)
    }

    /// Every raw value of that name, one per header line.
    pub fn get_all<'a>(&'a self, name: &'a HeaderName) -> impl Iterator<Item = &'a Bytes> + 'a {
        self.list
            .iter()
            .filter(move |h| h.name == *name)
            .map(|h| &h.value)
    }

    /// Values with comma-separated lists split (quotes, `<>` and escapes honoured), each
    /// trimmed (RFC 3261 §7.3.1).
    pub fn values<'a>(&'a self, name: &'a HeaderName) -> impl Iterator<Item = Bytes> + 'a {
        let split = name.is_list();
        self.get_all(name)
            .flat_map(move |v| ListValues::new(v.clone(), split))
    }

    /// Number of header lines of that name.
    pub fn count(&self, name: &HeaderName) -> usize {
        self.list.iter().filter(|h| h.name == *name).count()
    }

    /// All header lines in order.
    pub fn iter(&self) -> std::slice::Iter<'_, Header> {
        self.list.iter()
    }

    /// Number of header lines.
    pub fn len(&self) -> usize {
        self.list.len()
    }

    /// True if there is no header line.
    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// Replaces the first *value* of `name`, splitting a comma-joined first line if needed
    /// (the remaining values move to a new line just after it). Used to stamp
    /// received/rport on the top Via (RFC 3261 §18.2.1). False if there is no such header.
    pub fn replace_first_value(&mut self, name: &HeaderName, value: impl Into<Bytes>) -> bool {
        self.forget_parsed();
        let Some(idx) = self.list.iter().position(|h| h.name == *name) else {
            return false;
        };
        let value = value.into();
        let Some(h) = self.list.get_mut(idx) else {
            return false;
        };
        let rest = if name.is_list() {
            let b: &[u8] = &h.value;
            let mut start = 0;
            // skip leading empty elements
            loop {
                let end = next_comma(b, start);
                let (s, e) = trim_lws_range(b, start, end);
                if s < e || end >= b.len() {
                    let (rs, re) = trim_lws_range(b, end.saturating_add(1).min(b.len()), b.len());
                    break if rs < re {
                        Some(sub(&h.value, rs, re))
                    } else {
                        None
                    };
                }
                start = end + 1;
            }
        } else {
            None
        };
        h.value = value;
        if let Some(rest) = rest {
            self.list.insert(
                idx + 1,
                Header {
                    name: name.clone(),
                    value: rest,
                },
            );
        }
        true
    }

    /// Inserts a header line before all others of that name (e.g. a new top Via,
    /// RFC 3261 §16.6 step 8); at the very top if there is none.
    pub fn push_front(&mut self, name: HeaderName, value: impl Into<Bytes>) {
        self.forget_parsed();
        let idx = self.list.iter().position(|h| h.name == name).unwrap_or(0);
        self.list.insert(
            idx,
            Header {
                name,
                value: value.into(),
            },
        );
    }

    /// The header line at `i`.
    pub fn get_index(&self, i: usize) -> Option<&Header> {
        self.list.get(i)
    }

    pub(crate) fn push_header(&mut self, h: Header) {
        self.forget_parsed();
        self.list.push(h);
    }

    /// Drops the typed values parsed so far (every edit does).
    fn forget_parsed(&mut self) {
        if let Some(Some(_)) = self.parsed.get() {
            self.parsed = OnceLock::new();
        }
    }

    /// Drops the typed values parsed so far and keeps none from now on (this message and
    /// its clones): for a message kept for a call's life, whose typed values would cost
    /// more memory than parsing them again when (rarely) needed.
    pub fn keep_unparsed(&mut self) {
        self.parsed = OnceLock::from(None);
    }

    fn parsed(&self) -> Option<&Parsed> {
        self.parsed.get_or_init(|| Some(Box::default())).as_deref()
    }

    /// The Request-URI `uri` (of the request these headers belong to), parsed once per
    /// message; parsed now if the request's `uri` was replaced since.
    pub(crate) fn request_uri(&self, uri: &Bytes) -> Result<Cow<'_, Uri>, ParseError> {
        let parse = || Uri::parse_bytes(uri).map_err(|_| ParseError::BadRequestUri);
        let Some(parsed) = self.parsed() else {
            return parse().map(Cow::Owned);
        };
        let (src, kept) = parsed.request_uri.get_or_init(|| (uri.clone(), parse()));
        if src.as_ptr() == uri.as_ptr() && src.len() == uri.len() {
            kept.as_ref().map(Cow::Borrowed).map_err(Clone::clone)
        } else {
            parse().map(Cow::Owned)
        }
    }

    fn single(&self, name: HeaderName) -> Result<&Bytes, ParseError> {
        self.get(&name).ok_or(ParseError::MissingHeader(name))
    }

    // ---------- typed access (parsed on demand, zero-copy slices)

    /// The first Via value (RFC 3261 §20.42).
    pub fn top_via(&self) -> Result<Via, ParseError> {
        self.top_via_ref().map(Cow::into_owned)
    }

    /// The first Via value, parsed once per message (see [`Headers`]).
    pub fn top_via_ref(&self) -> Result<Cow<'_, Via>, ParseError> {
        let parse = || {
            let v = self
                .values(&HeaderName::Via)
                .next()
                .ok_or(ParseError::MissingHeader(HeaderName::Via))?;
            Via::parse(&v)
        };
        kept(self.parsed().map(|p| &p.top_via), parse)
    }

    /// Every Via value, top first.
    pub fn vias(&self) -> impl Iterator<Item = Result<Via, ParseError>> + '_ {
        const VIA: &HeaderName = &HeaderName::Via;
        self.values(VIA).map(|v| Via::parse(&v))
    }

    /// The From header (RFC 3261 §20.20).
    pub fn from(&self) -> Result<NameAddr, ParseError> {
        self.from_ref().map(Cow::into_owned)
    }

    /// The From header, parsed once per message (see [`Headers`]).
    pub fn from_ref(&self) -> Result<Cow<'_, NameAddr>, ParseError> {
        let parse = || NameAddr::parse_as(self.single(HeaderName::From)?, HeaderName::From);
        kept(self.parsed().map(|p| &p.from), parse)
    }

    /// The To header (RFC 3261 §20.39).
    pub fn to(&self) -> Result<NameAddr, ParseError> {
        self.to_ref().map(Cow::into_owned)
    }

    /// The To header, parsed once per message (see [`Headers`]).
    pub fn to_ref(&self) -> Result<Cow<'_, NameAddr>, ParseError> {
        let parse = || NameAddr::parse_as(self.single(HeaderName::To)?, HeaderName::To);
        kept(self.parsed().map(|p| &p.to), parse)
    }

    /// The Call-ID (RFC 3261 §20.8), byte-exact; compare it byte-wise.
    pub fn call_id(&self) -> Result<&str, ParseError> {
        let v = self.single(HeaderName::CallId)?;
        let bad = ParseError::BadHeader {
            name: HeaderName::CallId,
        };
        if !valid_call_id(v) {
            return Err(bad);
        }
        std::str::from_utf8(v).map_err(|_| bad)
    }

    /// The CSeq header (RFC 3261 §20.16).
    pub fn cseq(&self) -> Result<CSeq, ParseError> {
        let parse = || CSeq::parse(self.single(HeaderName::CSeq)?);
        kept(self.parsed().map(|p| &p.cseq), parse).map(Cow::into_owned)
    }

    /// Max-Forwards, 0..=255 (RFC 3261 §20.22); `None` if absent.
    pub fn max_forwards(&self) -> Result<Option<u8>, ParseError> {
        let Some(v) = self.get(&HeaderName::MaxForwards) else {
            return Ok(None);
        };
        crate::scan::parse_u64(v)
            .and_then(|n| u8::try_from(n).ok())
            .map(Some)
            .ok_or(ParseError::BadHeader {
                name: HeaderName::MaxForwards,
            })
    }

    /// The Contact header(s) (RFC 3261 §20.10): `*` alone, or a list (empty if absent).
    pub fn contacts(&self) -> Result<Contacts, ParseError> {
        self.contacts_ref().map(Cow::into_owned)
    }

    /// The Contact header(s), parsed once per message (see [`Headers`]).
    pub fn contacts_ref(&self) -> Result<Cow<'_, Contacts>, ParseError> {
        kept(self.parsed().map(|p| &p.contacts), || self.parse_contacts())
    }

    fn parse_contacts(&self) -> Result<Contacts, ParseError> {
        let mut list = Vec::new();
        let mut star = false;
        let mut n = 0;
        for v in self.values(&HeaderName::Contact) {
            n += 1;
            if v.as_ref() == b"*" {
                star = true;
            } else {
                list.push(Contact::parse(&v)?);
            }
        }
        match (star, n) {
            (true, 1) => Ok(Contacts::Star),
            (true, _) => Err(ParseError::BadHeader {
                name: HeaderName::Contact,
            }),
            _ => Ok(Contacts::List(list)),
        }
    }

    fn name_addrs(&self, name: HeaderName) -> Result<Vec<NameAddr>, ParseError> {
        self.values(&name)
            .map(|v| NameAddr::parse_as(&v, name.clone()))
            .collect()
    }

    /// The Route values, in order (RFC 3261 §20.34).
    pub fn routes(&self) -> Result<Vec<NameAddr>, ParseError> {
        self.name_addrs(HeaderName::Route)
    }

    /// The Record-Route values, in order (RFC 3261 §20.30).
    pub fn record_routes(&self) -> Result<Vec<NameAddr>, ParseError> {
        self.name_addrs(HeaderName::RecordRoute)
    }

    /// Content-Length (RFC 3261 §20.14); several header lines are an error.
    pub fn content_length(&self) -> Result<Option<usize>, ParseError> {
        let mut it = self.get_all(&HeaderName::ContentLength);
        let Some(v) = it.next() else {
            return Ok(None);
        };
        if it.next().is_some() {
            return Err(ParseError::MultipleValues(HeaderName::ContentLength));
        }
        crate::scan::parse_u64(v)
            .and_then(|n| usize::try_from(n).ok())
            .map(Some)
            .ok_or(ParseError::BadHeader {
                name: HeaderName::ContentLength,
            })
    }

    /// Content-Type (RFC 3261 §20.15).
    pub fn content_type(&self) -> Result<Option<MediaType>, ParseError> {
        self.get(&HeaderName::ContentType)
            .map(MediaType::parse_bytes)
            .transpose()
    }

    /// Expires in seconds, below 2^32 (RFC 3261 §20.19).
    pub fn expires(&self) -> Result<Option<u32>, ParseError> {
        let Some(v) = self.get(&HeaderName::Expires) else {
            return Ok(None);
        };
        crate::scan::parse_u64(v)
            .and_then(|n| u32::try_from(n).ok())
            .map(Some)
            .ok_or(ParseError::BadHeader {
                name: HeaderName::Expires,
            })
    }

    /// The Date header, RFC 1123 format in GMT (RFC 3261 §20.17).
    pub fn date(&self) -> Result<Option<SipDate>, ParseError> {
        self.get(&HeaderName::Date)
            .map(|v| SipDate::parse(v))
            .transpose()
    }

    /// Option tags / methods of Require, Supported, Unsupported, Proxy-Require, Allow
    /// (list split, RFC 3261 §20.37, §20.5).
    pub fn tokens<'a>(&'a self, name: &'a HeaderName) -> impl Iterator<Item = Bytes> + 'a {
        self.values(name)
    }

    /// True if the value holds a `tag` parameter outside `<>` and quotes; needs no typed
    /// parse, so it works on malformed To headers too.
    pub(crate) fn raw_has_tag(v: &[u8]) -> bool {
        let mut i = 0;
        let mut angle = false;
        while let Some(&c) = v.get(i) {
            match c {
                b'"' if !angle => match scan_quoted(v, i) {
                    Some(e) => {
                        i = e;
                        continue;
                    }
                    None => return false,
                },
                b'<' => angle = true,
                b'>' => angle = false,
                b';' if !angle => {
                    let mut j = i + 1;
                    while v.get(j).is_some_and(|&c| is_lws(c)) {
                        j += 1;
                    }
                    if range(v, j, j + 3).eq_ignore_ascii_case(b"tag") {
                        let mut k = j + 3;
                        while v.get(k).is_some_and(|&c| is_lws(c)) {
                            k += 1;
                        }
                        if matches!(v.get(k), None | Some(b'=') | Some(b';')) {
                            return true;
                        }
                    }
                }
                _ => {}
            }
            i += 1;
        }
        false
    }
}

impl<'a> IntoIterator for &'a Headers {
    type Item = &'a Header;
    type IntoIter = std::slice::Iter<'a, Header>;
    fn into_iter(self) -> Self::IntoIter {
        self.list.iter()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic, clippy::indexing_slicing)]
mod tests {
    use super::*;

    fn vals(v: &'static str, split: bool) -> Vec<Bytes> {
        ListValues::new(Bytes::from_static(v.as_bytes()), split).collect()
    }

    #[test]
    fn list_splitting_honours_quotes_and_brackets() {
        let v = vals(
            "\"Doe, John \\\" x,\" <sip:a@b;p=1,2>;q=1 , <sip:c@d> ,, sip:e@f",
            true,
        );
        assert_eq!(v.len(), 3);
        assert_eq!(&v[0][..], b"\"Doe, John \\\" x,\" <sip:a@b;p=1,2>;q=1");
        assert_eq!(&v[1][..], b"<sip:c@d>");
        assert_eq!(&v[2][..], b"sip:e@f");
        assert_eq!(vals("a,b", false).len(), 1);
        assert!(vals(" , ,", true).is_empty());
        assert_eq!(vals("x, \"unterminated, y", true).len(), 2);
    }

    #[test]
    fn editing() {
        let mut h = Headers::new();
        h.push(
            HeaderName::Via,
            "SIP/2.0/UDP a;branch=z9hG4bK1, SIP/2.0/UDP b;branch=z9hG4bK2",
        );
        h.push(HeaderName::To, "<sip:x@y>");
        h.push(HeaderName::Via, "SIP/2.0/UDP c");
        assert_eq!(h.values(&HeaderName::Via).count(), 3);
        assert!(h.replace_first_value(
            &HeaderName::Via,
            "SIP/2.0/UDP a;branch=z9hG4bK1;received=1.2.3.4"
        ));
        let vs: Vec<_> = h.values(&HeaderName::Via).collect();
        assert_eq!(vs.len(), 3);
        assert_eq!(
            &vs[0][..],
            b"SIP/2.0/UDP a;branch=z9hG4bK1;received=1.2.3.4"
        );
        assert_eq!(&vs[1][..], b"SIP/2.0/UDP b;branch=z9hG4bK2");
        h.push_front(HeaderName::Via, "SIP/2.0/TCP top");
        assert_eq!(
            h.top_via().unwrap().host,
            crate::Host::Domain(Bytes::from_static(b"top"))
        );
        assert_eq!(h.count(&HeaderName::Via), 4);
        assert!(!h.replace_first_value(&HeaderName::Route, "x"));
        h.set(HeaderName::To, "<sip:z@y>");
        assert_eq!(h.count(&HeaderName::To), 1);
        assert_eq!(h.remove(&HeaderName::Via), 4);
        assert_eq!(h.len(), 1);
        h.push_front(HeaderName::Route, "<sip:r>");
        assert_eq!(h.iter().next().unwrap().name, HeaderName::Route);
    }

    #[test]
    fn typed_accessors() {
        let mut h = Headers::new();
        h.push(HeaderName::Allow, "INVITE, ACK,BYE");
        h.push(HeaderName::Supported, "");
        h.push(HeaderName::Require, "100rel");
        h.push(HeaderName::Contact, "*");
        h.push(HeaderName::Expires, "0");
        h.push(HeaderName::MaxForwards, "256");
        let t: Vec<_> = h.tokens(&HeaderName::Allow).collect();
        assert_eq!(t, ["INVITE", "ACK", "BYE"]);
        assert_eq!(h.tokens(&HeaderName::Supported).count(), 0);
        assert_eq!(h.contacts().unwrap(), Contacts::Star);
        assert_eq!(h.expires().unwrap(), Some(0));
        assert!(h.max_forwards().is_err());
        h.push(HeaderName::Contact, "<sip:a@b>");
        assert!(h.contacts().is_err());
        assert_eq!(
            h.call_id(),
            Err(ParseError::MissingHeader(HeaderName::CallId))
        );
        h.push(HeaderName::ContentLength, "1");
        h.push(HeaderName::ContentLength, "1");
        assert_eq!(
            h.content_length(),
            Err(ParseError::MultipleValues(HeaderName::ContentLength))
        );
    }

    #[test]
    fn typed_values_parsed_once_and_forgotten_on_edit() {
        let mut h = Headers::new();
        assert_eq!(h.top_via(), Err(ParseError::MissingHeader(HeaderName::Via)));
        h.push(HeaderName::Via, "SIP/2.0/UDP a.example;branch=z9hG4bK1");
        h.push(HeaderName::From, "<sip:a@a.example>;tag=1");
        h.push(HeaderName::To, "<sip:b@b.example>");
        h.push(HeaderName::CSeq, "1 INVITE");
        // the error was not kept: the pushed Via is seen
        assert_eq!(h.top_via().unwrap().branch(), Some(&b"z9hG4bK1"[..]));
        assert!(matches!(h.top_via_ref(), Ok(Cow::Borrowed(_))));
        assert_eq!(h.from_ref().unwrap().tag(), Some(&b"1"[..]));
        assert_eq!(h.to().unwrap().tag(), None);
        h.set(HeaderName::To, "<sip:b@b.example>;tag=2");
        assert_eq!(h.to_ref().unwrap().tag(), Some(&b"2"[..]));
        h.push_front(HeaderName::Via, "SIP/2.0/UDP c.example;branch=z9hG4bK3");
        assert_eq!(h.top_via().unwrap().branch(), Some(&b"z9hG4bK3"[..]));
        assert!(h.replace_first_value(&HeaderName::Via, "SIP/2.0/UDP d.example;branch=z9hG4bK4"));
        assert_eq!(h.top_via().unwrap().branch(), Some(&b"z9hG4bK4"[..]));
        h.remove(&HeaderName::CSeq);
        assert!(h.cseq().is_err());
        h.push(HeaderName::CSeq, "2 BYE");
        assert_eq!(h.cseq().unwrap().seq, 2);
        // a clone parses its own; a kept message parses on each access and keeps nothing
        let c = h.clone();
        assert_eq!(c, h);
        assert_eq!(c.from().unwrap(), h.from().unwrap());
        let mut kept = h.clone();
        kept.keep_unparsed();
        assert!(matches!(kept.top_via_ref(), Ok(Cow::Owned(_))));
        assert_eq!(kept.top_via().unwrap(), h.top_via().unwrap());
        kept.push_front(HeaderName::Via, "SIP/2.0/UDP e.example;branch=z9hG4bK5");
        assert_eq!(kept.top_via().unwrap().branch(), Some(&b"z9hG4bK5"[..]));
        assert!(matches!(kept.clone().from_ref(), Ok(Cow::Owned(_))));
    }

    #[test]
    fn raw_tag_detection() {
        assert!(Headers::raw_has_tag(b"<sip:a@b>;tag=1"));
        assert!(Headers::raw_has_tag(b"sip:a@b ; TAG = 1"));
        assert!(!Headers::raw_has_tag(b"<sip:a@b;tag=1>"));
        assert!(!Headers::raw_has_tag(b"\"x;tag=1\" <sip:a@b>"));
        assert!(!Headers::raw_has_tag(b"<sip:a@b>;tagx=1"));
    }
}
