//! Requests and responses: parsing, validation and printing (RFC 3261 §7, §8.2, §18.3).

use crate::headers::{Header, Headers};
use crate::scan::{TOKEN, is, range, sub, trim_lws_range};
use crate::{HeaderName, Method, ParseError, Uri, Via};
use bytes::{BufMut, Bytes, BytesMut};
use memchr::memchr;
use std::borrow::Cow;

/// The SIP-Version of a start line (RFC 3261 §7.1).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Version {
    /// "SIP/2.0"
    Sip20,
    /// Any other `"SIP" "/" 1*DIGIT "." 1*DIGIT`, as received (answered with 505).
    Other(Bytes),
}

impl Version {
    fn parse_in(src: &Bytes, s: usize, e: usize) -> Option<Version> {
        let b = range(src, s, e);
        if b.eq_ignore_ascii_case(b"SIP/2.0") {
            return Some(Version::Sip20);
        }
        if !b.get(..4).is_some_and(|p| p.eq_ignore_ascii_case(b"SIP/")) {
            return None;
        }
        let nums = range(b, 4, b.len());
        let dot = memchr(b'.', nums)?;
        let (maj, min) = (range(nums, 0, dot), range(nums, dot + 1, nums.len()));
        if maj.is_empty()
            || min.is_empty()
            || !maj.iter().all(u8::is_ascii_digit)
            || !min.iter().all(u8::is_ascii_digit)
        {
            return None;
        }
        Some(Version::Other(sub(src, s, e)))
    }

    fn as_bytes(&self) -> &[u8] {
        match self {
            Version::Sip20 => b"SIP/2.0",
            Version::Other(b) => b,
        }
    }
}

/// A SIP request (RFC 3261 §7.1).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    pub method: Method,
    /// The raw Request-URI; parse it with [`Request::uri`].
    pub uri: Bytes,
    pub version: Version,
    pub headers: Headers,
    pub body: Bytes,
}

/// A SIP response (RFC 3261 §7.2).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub reason: Bytes,
    pub version: Version,
    pub headers: Headers,
    pub body: Bytes,
}

/// A request or a response.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Message {
    Request(Request),
    Response(Response),
}

/// Finds the end of the line starting at `pos`: (end excluding CR LF, start of next line).
#[inline]
fn line_end(b: &[u8], pos: usize) -> Option<(usize, usize)> {
    let lf = pos + memchr(b'\n', b.get(pos..)?)?;
    let end = if lf > pos && b.get(lf - 1) == Some(&b'\r') {
        lf - 1
    } else {
        lf
    };
    Some((end, lf + 1))
}

/// Parses header lines from `pos`; returns the start of the body. Used for messages and
/// multipart bodies (RFC 3261 §7.3, RFC 2046 §5.1.1). Lines may end in CRLF or a bare LF;
/// a line starting with SP/HT continues the previous one (folding, §7.3.1).
pub(crate) fn parse_header_block(
    src: &Bytes,
    mut pos: usize,
    headers: &mut Headers,
    content_length: &mut Option<Option<usize>>,
) -> Result<usize, ParseError> {
    let b: &[u8] = src;
    loop {
        match b.get(pos) {
            None => return Ok(pos),
            Some(b'\n') => return Ok(pos + 1),
            Some(b'\r') if b.get(pos + 1) == Some(&b'\n') => return Ok(pos + 2),
            Some(b' ' | b'\t') => return Err(ParseError::BadHeaderLine),
            _ => {}
        }
        let start = pos;
        let mut search = pos;
        let (end, next) = loop {
            match b.get(search..).and_then(|r| memchr(b'\n', r)) {
                None => break (b.len(), b.len()),
                Some(i) => {
                    let lf = search + i;
                    if matches!(b.get(lf + 1), Some(b' ' | b'\t')) {
                        search = lf + 1;
                        continue;
                    }
                    let end = if b.get(lf.wrapping_sub(1)) == Some(&b'\r') && lf > start {
                        lf - 1
                    } else {
                        lf
                    };
                    break (end, lf + 1);
                }
            }
        };
        let line = range(b, start, end);
        let colon = memchr(b':', line).ok_or(ParseError::BadHeaderLine)?;
        let mut ne = start + colon;
        while ne > start && matches!(b.get(ne - 1), Some(b' ' | b'\t')) {
            ne -= 1;
        }
        let name_bytes = range(b, start, ne);
        if name_bytes.is_empty() || !name_bytes.iter().all(|&c| is(c, TOKEN)) {
            return Err(ParseError::BadHeaderLine);
        }
        let name = HeaderName::parse_in(src, start, ne);
        let (vs, ve) = trim_lws_range(b, start + colon + 1, end);
        if content_length.is_none() && name == HeaderName::ContentLength {
            *content_length = Some(
                crate::scan::parse_u64(range(b, vs, ve)).and_then(|n| usize::try_from(n).ok()),
            );
        }
        headers.push_header(Header {
            name,
            value: sub(src, vs, ve),
        });
        pos = next;
    }
}

impl Message {
    /// Parses one whole message (a UDP datagram, or a frame the [`crate::StreamFramer`]
    /// produced). Lenient: it splits the start line and the header lines and classifies
    /// names; typed values are parsed on demand. CRLFs before the start line are skipped
    /// (RFC 3261 §7.5). Content-Length per RFC 3261 §18.3: if present and smaller than
    /// what follows, the body is truncated to it; larger is an error; absent (datagram),
    /// the body is the rest. Fails only when the start line or header structure is broken.
    pub fn parse(buf: Bytes) -> Result<Message, ParseError> {
        let b: &[u8] = &buf;
        let mut pos = 0;
        while matches!(b.get(pos), Some(b'\r' | b'\n')) {
            pos += 1;
        }
        let (sl_end, next) = line_end(b, pos).ok_or(ParseError::BadStartLine)?;
        // 16 lines (1 KB): a call's messages have 8 to 12; more grow it once. A session
        // keeps its INVITE's list for the call's life.
        let mut headers = Headers::with_capacity(16);
        let mut cl = None;
        let body_start = parse_header_block(&buf, next, &mut headers, &mut cl)?;
        let available = b.len().saturating_sub(body_start);
        let body = match cl {
            Some(Some(n)) if n > available => {
                return Err(ParseError::ContentLengthMismatch {
                    declared: n,
                    available,
                });
            }
            Some(Some(n)) => sub(&buf, body_start, body_start + n),
            _ => sub(&buf, body_start, b.len()),
        };
        let line = range(b, pos, sl_end);
        if memchr(b'\r', line).is_some() {
            // a bare CR inside the start line (RFC 3261 §7.1, §7.2 allow none)
            return Err(ParseError::BadStartLine);
        }
        if line.len() >= 4 && range(line, 0, 4).eq_ignore_ascii_case(b"SIP/") {
            // Status-Line = SIP-Version SP Status-Code SP Reason-Phrase
            let sp = memchr(b' ', line).ok_or(ParseError::BadStartLine)?;
            let version = Version::parse_in(&buf, pos, pos + sp).ok_or(ParseError::BadStartLine)?;
            let code = range(line, sp + 1, sp + 4);
            if code.len() != 3 || !code.iter().all(u8::is_ascii_digit) {
                return Err(ParseError::BadStatusCode);
            }
            let status = code.iter().fold(0u16, |a, &d| a * 10 + u16::from(d - b'0'));
            let reason = match line.get(sp + 4) {
                None => Bytes::new(),
                Some(b' ') => sub(&buf, pos + sp + 5, sl_end),
                Some(_) => return Err(ParseError::BadStatusCode),
            };
            return Ok(Message::Response(Response {
                status,
                reason,
                version,
                headers,
                body,
            }));
        }
        // Request-Line = Method SP Request-URI SP SIP-Version
        let sp1 = memchr(b' ', line).ok_or(ParseError::BadStartLine)?;
        let sp2 = memchr::memrchr(b' ', line).ok_or(ParseError::BadStartLine)?;
        if sp2 <= sp1 + 1 {
            return Err(ParseError::BadStartLine);
        }
        let method = Method::parse_in(&buf, pos, pos + sp1)?;
        let version =
            Version::parse_in(&buf, pos + sp2 + 1, sl_end).ok_or(ParseError::BadStartLine)?;
        let uri = sub(&buf, pos + sp1 + 1, pos + sp2);
        Ok(Message::Request(Request {
            method,
            uri,
            version,
            headers,
            body,
        }))
    }

    /// The headers.
    pub fn headers(&self) -> &Headers {
        match self {
            Message::Request(r) => &r.headers,
            Message::Response(r) => &r.headers,
        }
    }

    /// The headers, mutably.
    pub fn headers_mut(&mut self) -> &mut Headers {
        match self {
            Message::Request(r) => &mut r.headers,
            Message::Response(r) => &mut r.headers,
        }
    }

    /// The body.
    pub fn body(&self) -> &Bytes {
        match self {
            Message::Request(r) => &r.body,
            Message::Response(r) => &r.body,
        }
    }

    /// Writes the message. Content-Length is always written and always equals
    /// `body.len()` (a stored Content-Length header is replaced in place); other headers
    /// byte-exact in order (RFC 3261 §18.3, §20.14).
    pub fn encode(&self, out: &mut BytesMut) {
        match self {
            Message::Request(r) => r.encode(out),
            Message::Response(r) => r.encode(out),
        }
    }

    /// The message as bytes.
    pub fn to_bytes(&self) -> Bytes {
        match self {
            Message::Request(r) => r.to_bytes(),
            Message::Response(r) => r.to_bytes(),
        }
    }

    /// Runs [`Request::validate`] or [`Response::validate`].
    pub fn validate(&self) -> Result<(), ParseError> {
        match self {
            Message::Request(r) => r.validate(),
            Message::Response(r) => r.validate(),
        }
    }
}

fn encode_headers(headers: &Headers, body: &Bytes, out: &mut BytesMut) {
    let mut cl_written = false;
    let (cl_arr, cl_start) = itoa_buf(body.len());
    let cl_digits = cl_arr.get(cl_start..).unwrap_or_default();
    for h in headers.iter() {
        if h.name == HeaderName::ContentLength {
            if !cl_written {
                out.extend_from_slice(b"Content-Length: ");
                out.extend_from_slice(cl_digits);
                out.extend_from_slice(b"\r\n");
                cl_written = true;
            }
            continue;
        }
        out.extend_from_slice(h.name.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(&h.value);
        out.extend_from_slice(b"\r\n");
    }
    if !cl_written {
        out.extend_from_slice(b"Content-Length: ");
        out.extend_from_slice(cl_digits);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(body);
}

fn itoa_buf(mut n: usize) -> ([u8; 20], usize) {
    let mut tmp = [0u8; 20];
    let mut i = tmp.len();
    loop {
        i -= 1;
        if let Some(slot) = tmp.get_mut(i) {
            *slot = b'0' + (n % 10) as u8;
        }
        n /= 10;
        if n == 0 || i == 0 {
            break;
        }
    }
    (tmp, i)
}

fn headers_size(headers: &Headers, body: &Bytes) -> usize {
    headers
        .iter()
        .map(|h| h.name.as_bytes().len() + h.value.len() + 4)
        .sum::<usize>()
        + body.len()
        + 32
}

/// Headers that may appear at most once (RFC 3261 §7.3.1, §20).
const SINGLE: [HeaderName; 9] = [
    HeaderName::To,
    HeaderName::From,
    HeaderName::CallId,
    HeaderName::CSeq,
    HeaderName::MaxForwards,
    HeaderName::ContentLength,
    HeaderName::ContentType,
    HeaderName::Expires,
    HeaderName::Date,
];

/// Checks shared by requests and responses (RFC 3261 §8.1.1, §8.2).
fn validate_common(h: &Headers) -> Result<(), ParseError> {
    for name in [
        HeaderName::Via,
        HeaderName::From,
        HeaderName::To,
        HeaderName::CallId,
        HeaderName::CSeq,
    ] {
        if h.get(&name).is_none() {
            return Err(ParseError::MissingHeader(name));
        }
    }
    for name in SINGLE {
        if h.count(&name) > 1 {
            return Err(ParseError::MultipleValues(name));
        }
    }
    h.top_via_ref()?;
    // the others (skipped before the parse: the top one is parsed once, above)
    for v in h.values(&HeaderName::Via).skip(1) {
        Via::parse(&v)?;
    }
    h.from_ref()?;
    h.to_ref()?;
    h.call_id()?;
    h.cseq()?;
    h.max_forwards()?;
    h.contacts_ref()?;
    h.content_length()?;
    h.content_type()?;
    h.expires()?;
    h.date()?;
    h.routes()?;
    h.record_routes()?;
    Ok(())
}

impl Request {
    /// A request with the given method and URI, version SIP/2.0, no headers, no body.
    pub fn new(method: Method, uri: &Uri) -> Request {
        Request {
            method,
            uri: uri.to_bytes(),
            version: Version::Sip20,
            headers: Headers::new(),
            body: Bytes::new(),
        }
    }

    /// A request with the given method and raw Request-URI (as [`Request::new`], without
    /// writing a parsed URI).
    pub fn with_raw_uri(method: Method, uri: Bytes) -> Request {
        Request {
            method,
            uri,
            version: Version::Sip20,
            // what a request the stack builds holds (Via to User-Agent, Contact, Allow,
            // Supported...): one allocation rather than growing 4, 8, 16
            headers: Headers::with_capacity(16),
            body: Bytes::new(),
        }
    }

    /// Parses the Request-URI.
    pub fn uri(&self) -> Result<Uri, ParseError> {
        self.uri_ref().map(Cow::into_owned)
    }

    /// The Request-URI, parsed once per message (see [`Headers`]).
    pub fn uri_ref(&self) -> Result<Cow<'_, Uri>, ParseError> {
        self.headers.request_uri(&self.uri)
    }

    /// Strict check a UAS runs before processing (RFC 3261 §8.2, RFC 4475): version (505),
    /// Request-URI (no headers in a SIP Request-URI, §19.1.1), mandatory To/From/Call-ID/
    /// CSeq/Via, single-valued headers not repeated, typed parse of Via, From, To, CSeq,
    /// Call-ID, Max-Forwards, Contact, Content-Length, Content-Type, Expires, Date, Route,
    /// Record-Route; CSeq method equals the request method and the number is below 2^31
    /// (§8.1.1.5). Max-Forwards is not mandatory (RFC 2543 peers).
    pub fn validate(&self) -> Result<(), ParseError> {
        if let Version::Other(v) = &self.version {
            return Err(ParseError::UnsupportedVersion { version: v.clone() });
        }
        match self.uri_ref()?.as_ref() {
            Uri::Sip(u) if !u.headers.is_empty() => return Err(ParseError::BadRequestUri),
            _ => {}
        }
        validate_common(&self.headers)?;
        let cseq = self.headers.cseq()?;
        if cseq.seq >= 1 << 31 {
            return Err(ParseError::BadHeader {
                name: HeaderName::CSeq,
            });
        }
        if cseq.method != self.method {
            return Err(ParseError::CSeqMethodMismatch);
        }
        Ok(())
    }

    /// Writes the request (see [`Message::encode`]).
    pub fn encode(&self, out: &mut BytesMut) {
        out.reserve(headers_size(&self.headers, &self.body) + self.uri.len() + 32);
        out.extend_from_slice(self.method.as_str().as_bytes());
        out.put_u8(b' ');
        out.extend_from_slice(&self.uri);
        out.put_u8(b' ');
        out.extend_from_slice(self.version.as_bytes());
        out.extend_from_slice(b"\r\n");
        encode_headers(&self.headers, &self.body, out);
    }

    /// The request as bytes.
    pub fn to_bytes(&self) -> Bytes {
        let mut out = BytesMut::new();
        self.encode(&mut out);
        out.freeze()
    }
}

impl Response {
    /// A response with the default reason phrase, version SIP/2.0, no headers, no body.
    pub fn new(status: u16) -> Response {
        Response {
            status,
            reason: Bytes::from_static(default_reason_phrase(status).as_bytes()),
            version: Version::Sip20,
            headers: Headers::new(),
            body: Bytes::new(),
        }
    }

    /// RFC 3261 §8.2.6: copies every Via (in order), From, To, Call-ID and CSeq
    /// byte-exact, adds `;tag=to_tag` to To if given and To has no tag; default reason
    /// phrase; no body. Works for any request, unknown methods and requests that failed
    /// validate() included: it copies raw values and never needs a typed parse.
    pub fn from_request(req: &Request, status: u16, to_tag: Option<&str>) -> Response {
        let mut r = Response::new(status);
        r.headers = Headers::with_capacity(req.headers.len().min(16) + 1);
        for h in req.headers.iter() {
            match h.name {
                HeaderName::Via | HeaderName::From | HeaderName::CallId | HeaderName::CSeq => {
                    r.headers.push_header(h.clone())
                }
                HeaderName::To => {
                    let value = match to_tag {
                        Some(tag) if !Headers::raw_has_tag(&h.value) => {
                            let mut v = BytesMut::with_capacity(h.value.len() + tag.len() + 5);
                            v.extend_from_slice(&h.value);
                            v.extend_from_slice(b";tag=");
                            v.extend_from_slice(tag.as_bytes());
                            v.freeze()
                        }
                        _ => h.value.clone(),
                    };
                    r.headers.push(HeaderName::To, value);
                }
                _ => {}
            }
        }
        r
    }

    /// Checks: version, status 100..=699, mandatory headers, typed parse (RFC 3261 §7.2,
    /// §8.1.3).
    pub fn validate(&self) -> Result<(), ParseError> {
        if let Version::Other(v) = &self.version {
            return Err(ParseError::UnsupportedVersion { version: v.clone() });
        }
        if !(100..=699).contains(&self.status) {
            return Err(ParseError::BadStatusCode);
        }
        validate_common(&self.headers)
    }

    /// Writes the response (see [`Message::encode`]).
    pub fn encode(&self, out: &mut BytesMut) {
        out.reserve(headers_size(&self.headers, &self.body) + self.reason.len() + 16);
        out.extend_from_slice(self.version.as_bytes());
        out.put_u8(b' ');
        let s = self.status.min(999);
        out.extend_from_slice(&[
            b'0' + (s / 100) as u8,
            b'0' + (s / 10 % 10) as u8,
            b'0' + (s % 10) as u8,
        ]);
        out.put_u8(b' ');
        for &c in self.reason.iter() {
            out.put_u8(if c == b'\r' || c == b'\n' { b' ' } else { c });
        }
        out.extend_from_slice(b"\r\n");
        encode_headers(&self.headers, &self.body, out);
    }

    /// The response as bytes.
    pub fn to_bytes(&self) -> Bytes {
        let mut out = BytesMut::new();
        self.encode(&mut out);
        out.freeze()
    }
}

/// The default reason phrase of a status code (RFC 3261 §21 and extensions).
pub fn default_reason_phrase(status: u16) -> &'static str {
    match status {
        100 => "Trying",
        180 => "Ringing",
        181 => "Call Is Being Forwarded",
        182 => "Queued",
        183 => "Session Progress",
        199 => "Early Dialog Terminated",
        200 => "OK",
        202 => "Accepted",
        204 => "No Notification",
        300 => "Multiple Choices",
        301 => "Moved Permanently",
        302 => "Moved Temporarily",
        305 => "Use Proxy",
        380 => "Alternative Service",
        400 => "Bad Request",
        401 => "Unauthorized",
        402 => "Payment Required",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        406 => "Not Acceptable",
        407 => "Proxy Authentication Required",
        408 => "Request Timeout",
        410 => "Gone",
        412 => "Conditional Request Failed",
        413 => "Request Entity Too Large",
        414 => "Request-URI Too Long",
        415 => "Unsupported Media Type",
        416 => "Unsupported URI Scheme",
        417 => "Unknown Resource-Priority",
        420 => "Bad Extension",
        421 => "Extension Required",
        422 => "Session Interval Too Small",
        423 => "Interval Too Brief",
        428 => "Use Identity Header",
        429 => "Provide Referrer Identity",
        430 => "Flow Failed",
        433 => "Anonymity Disallowed",
        436 => "Bad Identity-Info",
        437 => "Unsupported Certificate",
        438 => "Invalid Identity Header",
        439 => "First Hop Lacks Outbound Support",
        440 => "Max-Breadth Exceeded",
        469 => "Bad Info Package",
        470 => "Consent Needed",
        480 => "Temporarily Unavailable",
        481 => "Call/Transaction Does Not Exist",
        482 => "Loop Detected",
        483 => "Too Many Hops",
        484 => "Address Incomplete",
        485 => "Ambiguous",
        486 => "Busy Here",
        487 => "Request Terminated",
        488 => "Not Acceptable Here",
        489 => "Bad Event",
        491 => "Request Pending",
        493 => "Undecipherable",
        494 => "Security Agreement Required",
        500 => "Server Internal Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Server Time-out",
        505 => "Version Not Supported",
        513 => "Message Too Large",
        555 => "Push Notification Service Not Supported",
        580 => "Precondition Failure",
        600 => "Busy Everywhere",
        603 => "Decline",
        604 => "Does Not Exist Anywhere",
        606 => "Not Acceptable",
        607 => "Unwanted",
        608 => "Rejected",
        _ => match status / 100 {
            1 => "Provisional",
            2 => "Success",
            3 => "Redirection",
            4 => "Client Error",
            5 => "Server Error",
            6 => "Global Failure",
            _ => "Unknown",
        },
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic, clippy::indexing_slicing)]
mod tests {
    use super::*;

    const INVITE: &str = "INVITE sip:bob@biloxi.com SIP/2.0\r\n\
v: SIP/2.0/UDP pc33.atlanta.com;branch=z9hG4bK776asdhds\r\n\
Max-Forwards: 70\r\n\
t: Bob <sip:bob@biloxi.com>\r\n\
f: Alice <sip:alice@atlanta.com>;tag=1928301774\r\n\
i: a84b4c76e66710@pc33.atlanta.com\r\n\
CSeq: 314159 INVITE\r\n\
Subject: folded\r\n  across\r\n\tlines\r\n\
m: <sip:alice@pc33.atlanta.com>\r\n\
c: application/sdp\r\n\
l: 4\r\n\
\r\n\
v=0\r\nextra";

    fn req(s: &str) -> Request {
        match Message::parse(Bytes::copy_from_slice(s.as_bytes())).unwrap() {
            Message::Request(r) => r,
            m => panic!("{m:?}"),
        }
    }

    #[test]
    fn compact_names_folding_and_body_truncation() {
        let r = req(INVITE);
        assert_eq!(r.method, Method::Invite);
        assert_eq!(&r.uri[..], b"sip:bob@biloxi.com");
        assert_eq!(r.version, Version::Sip20);
        assert_eq!(r.headers.len(), 10);
        assert_eq!(&r.body[..], b"v=0\r");
        assert_eq!(
            &r.headers.get(&HeaderName::Subject).unwrap()[..],
            b"folded\r\n  across\r\n\tlines"
        );
        assert_eq!(
            r.headers.call_id().unwrap(),
            "a84b4c76e66710@pc33.atlanta.com"
        );
        assert_eq!(r.headers.content_length().unwrap(), Some(4));
        assert!(
            r.headers
                .content_type()
                .unwrap()
                .unwrap()
                .is("application", "sdp")
        );
        r.validate().unwrap();
    }

    #[test]
    fn encode_round_trip() {
        let r = req(INVITE);
        let bytes = r.to_bytes();
        let s = std::str::from_utf8(&bytes).unwrap();
        assert!(s.starts_with("INVITE sip:bob@biloxi.com SIP/2.0\r\nVia: SIP/2.0/UDP"));
        assert!(s.contains("\r\nContent-Length: 4\r\n\r\nv=0\r"));
        let again = req(s);
        assert_eq!(again, r);
        let mut m = Message::Request(r);
        m.headers_mut().remove(&HeaderName::ContentLength);
        let s = m.to_bytes();
        assert!(s.ends_with(b"Content-Length: 4\r\n\r\nv=0\r"));
    }

    #[test]
    fn start_lines() {
        let m = Message::parse(Bytes::from_static(
            b"\r\n\r\nSIP/2.0 180 Ringing\r\nVia: x\r\n\r\n",
        ))
        .unwrap();
        let Message::Response(r) = m else { panic!() };
        assert_eq!((r.status, &r.reason[..]), (180, &b"Ringing"[..]));
        let m = Message::parse(Bytes::from_static(b"SIP/2.0 100\r\n\r\n")).unwrap();
        assert!(matches!(m, Message::Response(Response { status: 100, .. })));
        for bad in [
            &b"SIP/2.0 1000 Big\r\n\r\n"[..],
            b"SIP/2.0 20 Small\r\n\r\n",
            b"INVITE sip:a@b\r\n\r\n",
            b"INVITE sip:a@b SIP/2.0 \r\n\r\n",
            b"INVITE  SIP/2.0\r\n\r\n",
            b"INV@TE sip:a@b SIP/2.0\r\n\r\n",
            b"INVITE sip:a@b SIP/2.0\r\nno colon\r\n\r\n",
            b"INVITE sip:a@b SIP/2.0\r\n folded first\r\n\r\n",
            b"INVITE sip:a@b SIP/2.0",
            b"",
        ] {
            assert!(
                Message::parse(Bytes::copy_from_slice(bad)).is_err(),
                "{bad:?}"
            );
        }
        let r = req("FOO sip:a@b SIP/3.1\r\n\r\n");
        assert_eq!(r.version, Version::Other(Bytes::from_static(b"SIP/3.1")));
        assert!(matches!(r.method, Method::Extension(_)));
        assert_eq!(r.validate().unwrap_err().status_code(), 505);
    }

    #[test]
    fn content_length_rules() {
        let e = Message::parse(Bytes::from_static(
            b"OPTIONS sip:a@b SIP/2.0\r\nl: 10\r\n\r\nabc",
        ))
        .unwrap_err();
        assert_eq!(
            e,
            ParseError::ContentLengthMismatch {
                declared: 10,
                available: 3
            }
        );
        let r = req("OPTIONS sip:a@b SIP/2.0\r\nX: y\r\n\r\nabc");
        assert_eq!(&r.body[..], b"abc");
    }

    #[test]
    fn from_request_copies_and_tags() {
        let r = req(
            "FROBNICATE sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h1;branch=z9hG4bK1, SIP/2.0/UDP h2\r\nVia: SIP/2.0/UDP h3\r\nTo: <sip:a@b>\r\nFrom: broken\"\r\nCall-ID: x\r\nCSeq: 1 INVITE\r\nRecord-Route: <sip:p>\r\n\r\n",
        );
        let resp = Response::from_request(&r, 501, Some("t1"));
        assert_eq!(
            (resp.status, &resp.reason[..]),
            (501, &b"Not Implemented"[..])
        );
        let names: Vec<_> = resp.headers.iter().map(|h| h.name.clone()).collect();
        assert_eq!(
            names,
            [
                HeaderName::Via,
                HeaderName::Via,
                HeaderName::To,
                HeaderName::From,
                HeaderName::CallId,
                HeaderName::CSeq
            ]
        );
        assert_eq!(
            &resp.headers.get(&HeaderName::To).unwrap()[..],
            b"<sip:a@b>;tag=t1"
        );
        assert_eq!(
            &resp.headers.get(&HeaderName::From).unwrap()[..],
            b"broken\""
        );
        assert!(resp.body.is_empty());
        let bytes = resp.to_bytes();
        assert!(bytes.starts_with(b"SIP/2.0 501 Not Implemented\r\nVia: SIP/2.0/UDP h1;branch=z9hG4bK1, SIP/2.0/UDP h2\r\n"));
        assert!(bytes.ends_with(b"Content-Length: 0\r\n\r\n"));
        let r2 = req("OPTIONS sip:a@b SIP/2.0\r\nTo: <sip:a@b>;tag=old\r\n\r\n");
        let resp = Response::from_request(&r2, 200, Some("new"));
        assert_eq!(
            &resp.headers.get(&HeaderName::To).unwrap()[..],
            b"<sip:a@b>;tag=old"
        );
        let resp = Response::from_request(&r2, 100, None);
        assert_eq!(resp.reason, "Trying");
        assert_eq!(
            &resp.headers.get(&HeaderName::To).unwrap()[..],
            b"<sip:a@b>;tag=old"
        );
    }

    #[test]
    fn request_uri_parsed_once_and_again_when_replaced() {
        let mut r = req(INVITE);
        r.validate().unwrap();
        assert!(matches!(r.uri_ref(), Ok(Cow::Borrowed(_))));
        assert_eq!(r.uri().unwrap(), Uri::parse(b"sip:bob@biloxi.com").unwrap());
        r.uri = Bytes::from_static(b"sips:carol@chicago.com");
        assert!(matches!(r.uri_ref(), Ok(Cow::Owned(_))));
        assert_eq!(
            r.uri().unwrap(),
            Uri::parse(b"sips:carol@chicago.com").unwrap()
        );
        r.uri = Bytes::from_static(b"sip:carol@chicago.com?Subject=x");
        assert_eq!(r.validate(), Err(ParseError::BadRequestUri));
        r.uri = Bytes::from_static(b"not a uri");
        assert_eq!(r.uri(), Err(ParseError::BadRequestUri));
        // an edit of the headers forgets the kept URI; a kept message keeps none
        r.headers.push(HeaderName::Subject, "x");
        assert_eq!(r.uri(), Err(ParseError::BadRequestUri));
        r.uri = Bytes::from_static(b"sip:dave@example.com");
        r.headers.keep_unparsed();
        assert!(matches!(r.uri_ref(), Ok(Cow::Owned(_))));
    }

    #[test]
    fn validation_errors() {
        let base = "INVITE sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nTo: <sip:a@b>\r\nFrom: <sip:c@d>;tag=1\r\nCall-ID: x@y\r\nCSeq: 1 INVITE\r\n";
        req(&format!("{base}\r\n")).validate().unwrap();
        let cases: &[(&str, ParseError)] = &[
            (
                "CSeq: 2 INVITE\r\n",
                ParseError::MultipleValues(HeaderName::CSeq),
            ),
            (
                "Max-Forwards: x\r\n",
                ParseError::BadHeader {
                    name: HeaderName::MaxForwards,
                },
            ),
            (
                "Expires: 4294967296\r\n",
                ParseError::BadHeader {
                    name: HeaderName::Expires,
                },
            ),
            (
                "Content-Type: sdp\r\n",
                ParseError::BadHeader {
                    name: HeaderName::ContentType,
                },
            ),
            (
                "Route: junk\r\n",
                ParseError::BadHeader {
                    name: HeaderName::Route,
                },
            ),
            (
                "Date: yesterday\r\n",
                ParseError::BadHeader {
                    name: HeaderName::Date,
                },
            ),
        ];
        for (extra, err) in cases {
            assert_eq!(
                &req(&format!("{base}{extra}\r\n")).validate().unwrap_err(),
                err,
                "{extra}"
            );
        }
        let r = req(&base.replace("CSeq: 1 INVITE", "CSeq: 2147483648 INVITE"));
        assert_eq!(
            r.validate().unwrap_err().reason_phrase(),
            "Bad Header: CSeq"
        );
        let r = req(&base.replace("Call-ID: x@y\r\n", ""));
        assert_eq!(
            r.validate().unwrap_err().reason_phrase(),
            "Missing Header: Call-ID"
        );
        let r = req(&base.replace("sip:a@b SIP", "sip:a@b?x=y SIP"));
        assert_eq!(r.validate().unwrap_err(), ParseError::BadRequestUri);
        let r = req(&base.replace("INVITE sip", "BYE sip"));
        assert_eq!(
            r.validate().unwrap_err().reason_phrase(),
            "CSeq Method Mismatch"
        );
    }

    /// Regression (proptest): a bare CR inside a reason phrase was printed as SP, so the
    /// printed message differed from the parsed one. The start line admits no CR.
    #[test]
    fn bare_cr_in_start_line_is_rejected() {
        for bad in [
            &b"SIP/2.0 200 O\rK\r\n\r\n"[..],
            b"OPTIONS sip:a@b\r SIP/2.0\r\n\r\n",
        ] {
            assert_eq!(
                Message::parse(Bytes::copy_from_slice(bad)),
                Err(ParseError::BadStartLine)
            );
        }
    }

    /// Regression (fuzz): printing rewrites Content-Length, so a message rejected for
    /// repeated Content-Length (RFC 4475 mcl01) prints as a valid one; a valid message
    /// always stays valid.
    #[test]
    fn printing_collapses_repeated_content_length() {
        let r = req(
            "OPTIONS sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nTo: <sip:a@b>\r\nFrom: <sip:c@d>;tag=1\r\nCall-ID: x\r\nCSeq: 1 OPTIONS\r\nContent-Length: 3\r\nContent-Length: 5\r\n\r\nabcdef",
        );
        assert_eq!(&r.body[..], b"abc");
        assert_eq!(
            r.validate(),
            Err(ParseError::MultipleValues(HeaderName::ContentLength))
        );
        let printed = req(std::str::from_utf8(&r.to_bytes()).unwrap());
        assert_eq!(printed.headers.count(&HeaderName::ContentLength), 1);
        printed.validate().unwrap();
    }

    #[test]
    fn new_messages() {
        let uri = Uri::parse(b"sip:bob@example.com").unwrap();
        let mut r = Request::new(Method::Options, &uri);
        r.headers
            .push(HeaderName::Via, "SIP/2.0/UDP h;branch=z9hG4bK1");
        r.body = Bytes::from_static(b"hi");
        let s = r.to_bytes();
        assert_eq!(&s[..], b"OPTIONS sip:bob@example.com SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nContent-Length: 2\r\n\r\nhi");
        assert_eq!(r.uri().unwrap(), uri);
        let resp = Response::new(486);
        assert_eq!(
            &resp.to_bytes()[..],
            b"SIP/2.0 486 Busy Here\r\nContent-Length: 0\r\n\r\n"
        );
        assert_eq!(default_reason_phrase(299), "Success");
        assert_eq!(default_reason_phrase(1), "Unknown");
    }
}
