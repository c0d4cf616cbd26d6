//! The codecs of call transfer, pure and total (no input makes them panic):
//!
//! - [`Replaces`]: the Replaces header (RFC 3891 §6.1), also as the percent-encoded
//!   URI header of a Refer-To (`<sip:c@x?Replaces=abc%40h%3Bto-tag%3D1%3Bfrom-tag%3D2>`);
//! - [`ReferTo`]: the Refer-To value (RFC 3515 §2.1), name-addr or addr-spec, with its
//!   URI headers (RFC 3261 §19.1.1) decoded, and written back percent-encoded;
//! - the `message/sipfrag` status line of a NOTIFY (RFC 3420, RFC 3515 §2.4.5):
//!   [`parse_sipfrag_status`], [`sipfrag_reason_text`], [`sipfrag`];
//! - [`SubscriptionState`] (RFC 6665 §8.2.3, the part a REFER subscription needs);
//! - [`UserToUser`] (RFC 7433 §4.1): `hex-data;encoding=hex;purpose=...;content=...`.
//!
//! Parse errors are [`CallError::InvalidArgument`] naming the header and the problem,
//! so a request can be refused with a 400 that says what is wrong.

use crate::CallError;
use std::fmt;

fn bad(what: &'static str, problem: impl Into<String>) -> CallError {
    CallError::InvalidArgument {
        what,
        problem: problem.into(),
    }
}

fn has_control(text: &str) -> bool {
    text.bytes().any(|b| b == b'\r' || b == b'\n' || b == 0)
}

/// RFC 3261 §25.1 `token` characters.
fn is_token(text: &str) -> bool {
    !text.is_empty()
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-.!%*_+`'~".contains(&b))
}

/// RFC 3261 §25.1 `word` characters (a Call-ID is `word ["@" word]`).
fn is_word(text: &str) -> bool {
    !text.is_empty()
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-.!%*_+`'~()<>:\\\"/[]?{}@".contains(&b))
}

// ---- percent-encoding of URI headers (RFC 3261 §19.1.1, §25.1)

/// Characters a URI header name or value may carry unescaped: `unreserved` and
/// `hnv-unreserved` (RFC 3261 §25.1).
fn hnv_safe(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-_.!~*'()[]/?:+$".contains(&b)
}

/// Percent-encodes a URI header name or value.
pub fn escape_header(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if hnv_safe(b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Decodes `%XX` escapes; a `%` not followed by two hex digits, or bytes that are not
/// UTF-8 once decoded, are an error.
pub fn unescape(text: &str) -> Result<String, CallError> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b == b'%' {
            let hex = |j: usize| bytes.get(j).and_then(|c| char::from(*c).to_digit(16));
            match (hex(i + 1), hex(i + 2)) {
                (Some(h), Some(l)) => {
                    out.push(u8::try_from(h * 16 + l).unwrap_or(b'?'));
                    i += 3;
                }
                _ => return Err(bad("URI header", format!("bad escape in `{text}`"))),
            }
        } else {
            out.push(b);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| bad("URI header", "not UTF-8 once unescaped"))
}

// ---- Replaces

/// The Replaces header (RFC 3891 §6.1): the dialog to replace, named **from the view
/// of the UA that receives it**: `to_tag` is that UA's local tag, `from_tag` its
/// remote tag.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Replaces {
    pub call_id: String,
    pub to_tag: String,
    pub from_tag: String,
    /// `early-only`: replace the dialog only while it is early (RFC 3891 §3: else 486).
    pub early_only: bool,
}

impl Replaces {
    /// Parses a Replaces header value: `callid;to-tag=x;from-tag=y[;early-only]`
    /// (exactly one to-tag and one from-tag, RFC 3891 §6.1; other parameters ignored).
    pub fn parse(value: &str) -> Result<Replaces, CallError> {
        const WHAT: &str = "Replaces";
        if has_control(value) {
            return Err(bad(WHAT, "contains CR, LF or NUL"));
        }
        let mut parts = value.split(';');
        let call_id = parts.next().unwrap_or_default().trim();
        if !is_word(call_id) {
            return Err(bad(WHAT, format!("`{call_id}` is not a Call-ID")));
        }
        let (mut to_tag, mut from_tag, mut early_only) = (None, None, false);
        for param in parts {
            let (name, value) = match param.split_once('=') {
                Some((n, v)) => (n.trim(), Some(v.trim())),
                None => (param.trim(), None),
            };
            let slot = if name.eq_ignore_ascii_case("to-tag") {
                &mut to_tag
            } else if name.eq_ignore_ascii_case("from-tag") {
                &mut from_tag
            } else {
                if name.eq_ignore_ascii_case("early-only") {
                    early_only = true;
                } else if !is_token(name) {
                    return Err(bad(WHAT, format!("bad parameter `{name}`")));
                }
                continue;
            };
            let tag = value.unwrap_or_default();
            if !is_token(tag) {
                return Err(bad(WHAT, format!("bad {name} `{tag}`")));
            }
            if slot.replace(tag.to_owned()).is_some() {
                return Err(bad(WHAT, format!("more than one {name}")));
            }
        }
        match (to_tag, from_tag) {
            (Some(to_tag), Some(from_tag)) => Ok(Replaces {
                call_id: call_id.to_owned(),
                to_tag,
                from_tag,
                early_only,
            }),
            (None, _) => Err(bad(WHAT, "no to-tag")),
            (_, None) => Err(bad(WHAT, "no from-tag")),
        }
    }
}

impl fmt::Display for Replaces {
    /// The header value, `callid;to-tag=x;from-tag=y[;early-only]`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{};to-tag={};from-tag={}",
            self.call_id, self.to_tag, self.from_tag
        )?;
        if self.early_only {
            f.write_str(";early-only")?;
        }
        Ok(())
    }
}

// ---- Refer-To

/// A Refer-To value (RFC 3515 §2.1): where to send the new request, with the URI
/// headers it should carry (RFC 3261 §19.1.5). A `Replaces` URI header is decoded into
/// [`replaces`](Self::replaces); the others are in [`headers`](Self::headers), decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReferTo {
    /// The URI without its headers (parameters kept), e.g. `sip:carol@192.0.2.3;transport=tcp`.
    pub uri: String,
    pub replaces: Option<Replaces>,
    /// The other URI headers, decoded, in order.
    pub headers: Vec<(String, String)>,
}

/// Finds the first `needle` outside double quotes (with `\` escapes) in `text`.
fn find_unquoted(text: &str, needle: u8) -> Option<usize> {
    let mut quoted = false;
    let mut escaped = false;
    for (i, b) in text.bytes().enumerate() {
        if quoted {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => quoted = false,
                _ => {}
            }
        } else if b == b'"' {
            quoted = true;
        } else if b == needle {
            return Some(i);
        }
    }
    None
}

impl ReferTo {
    /// A Refer-To to `uri` (which may carry URI headers of its own: they are decoded).
    pub fn new(uri: &str) -> Result<ReferTo, CallError> {
        ReferTo::parse(&format!("<{}>", uri.trim()))
    }

    /// Parses a Refer-To header value: `"Name" <uri?h=v>;p=q` or a bare addr-spec.
    /// Several comma-separated values are refused (RFC 3515 §2.4.1: exactly one).
    pub fn parse(value: &str) -> Result<ReferTo, CallError> {
        const WHAT: &str = "Refer-To";
        if has_control(value) {
            return Err(bad(WHAT, "contains CR, LF or NUL"));
        }
        let value = value.trim();
        let inner = match find_unquoted(value, b'<') {
            Some(open) => {
                let after = value.get(open + 1..).unwrap_or_default();
                let close = after
                    .find('>')
                    .ok_or_else(|| bad(WHAT, "`<` without `>`"))?;
                let rest = after.get(close + 1..).unwrap_or_default();
                let before = value.get(..open).unwrap_or_default();
                if find_unquoted(before, b',').is_some() || find_unquoted(rest, b',').is_some() {
                    return Err(bad(WHAT, "more than one value"));
                }
                let rest = rest.trim();
                if !rest.is_empty() && !rest.starts_with(';') {
                    return Err(bad(WHAT, format!("unexpected `{rest}` after the URI")));
                }
                after.get(..close).unwrap_or_default().trim()
            }
            None => {
                if find_unquoted(value, b'"').is_some() || value.contains('>') {
                    return Err(bad(WHAT, "a display name without `<uri>`"));
                }
                if value.contains(',') {
                    return Err(bad(WHAT, "more than one value"));
                }
                // addr-spec: its parameters are the header's (RFC 3261 §20.10).
                value.split(';').next().unwrap_or_default().trim()
            }
        };
        let (uri, query) = match inner.split_once('?') {
            Some((uri, query)) => (uri.trim(), Some(query)),
            None => (inner, None),
        };
        if uri.is_empty() {
            return Err(bad(WHAT, "no URI"));
        }
        if uri.bytes().any(|b| b.is_ascii_whitespace()) {
            return Err(bad(WHAT, format!("`{uri}` contains white space")));
        }
        if let Err(error) = sip_message::Uri::parse(uri.as_bytes()) {
            return Err(bad(
                WHAT,
                format!("`{uri}` is not a URI: {}", error.reason_phrase()),
            ));
        }
        let mut refer_to = ReferTo {
            uri: uri.to_owned(),
            replaces: None,
            headers: Vec::new(),
        };
        for pair in query.unwrap_or_default().split('&') {
            if pair.is_empty() {
                continue;
            }
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            let name = unescape(name)?;
            let value = unescape(value)?;
            if name.is_empty() {
                return Err(bad(WHAT, "a URI header without a name"));
            }
            if name.eq_ignore_ascii_case("Replaces") {
                if refer_to.replaces.is_some() {
                    return Err(bad(WHAT, "more than one Replaces"));
                }
                refer_to.replaces = Some(Replaces::parse(&value)?);
            } else {
                refer_to.headers.push((name, value));
            }
        }
        Ok(refer_to)
    }

    /// The URI with its headers percent-encoded: `uri?Replaces=...&X-A=b` (Replaces
    /// first), without angle brackets: what goes in a Request-URI's place.
    pub fn uri_with_headers(&self) -> String {
        let mut out = self.uri.clone();
        let mut first = true;
        let mut add = |name: &str, value: &str| {
            out.push(if first { '?' } else { '&' });
            first = false;
            out.push_str(&escape_header(name));
            out.push('=');
            out.push_str(&escape_header(value));
        };
        if let Some(replaces) = &self.replaces {
            add("Replaces", &replaces.to_string());
        }
        for (name, value) in &self.headers {
            add(name, value);
        }
        out
    }
}

impl fmt::Display for ReferTo {
    /// The header value: `<uri?headers>`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "<{}>", self.uri_with_headers())
    }
}

// ---- message/sipfrag

/// The content type of a NOTIFY's body in a REFER subscription (RFC 3515 §2.4.5).
pub const SIPFRAG: &str = "message/sipfrag;version=2.0";

/// The status line a `message/sipfrag` body begins with (RFC 3420, RFC 3515 §2.4.5):
/// `SIP/2.0 180 Ringing` → `(180, "Ringing")`. Headers after the first line are ignored.
pub fn parse_sipfrag_status(body: &[u8]) -> Result<(u16, String), CallError> {
    const WHAT: &str = "sipfrag";
    let end = body
        .iter()
        .position(|&b| b == b'\r' || b == b'\n')
        .unwrap_or(body.len());
    let line = String::from_utf8_lossy(body.get(..end).unwrap_or_default());
    let line = line.trim();
    let mut fields = line.splitn(3, ' ');
    let version = fields.next().unwrap_or_default();
    let status = fields.next().unwrap_or_default();
    let phrase = fields.next().unwrap_or_default().trim();
    let Some(number) = version
        .get(..4)
        .filter(|p| p.eq_ignore_ascii_case("SIP/"))
        .and(version.get(4..))
    else {
        return Err(bad(WHAT, "no status line"));
    };
    if number.is_empty() || !number.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        return Err(bad(WHAT, format!("bad version `{version}`")));
    }
    let code = status
        .parse::<u16>()
        .ok()
        .filter(|c| status.len() == 3 && (100..=699).contains(c))
        .ok_or_else(|| bad(WHAT, format!("bad status `{status}`")))?;
    Ok((code, phrase.to_owned()))
}

/// The `text` of a `Reason` header (RFC 3326) among a `message/sipfrag` body's headers:
/// `Reason: SIP;cause=486;text="Gone fishing"` → `Gone fishing`. `None` without one.
pub fn sipfrag_reason_text(body: &[u8]) -> Option<String> {
    let body = String::from_utf8_lossy(body);
    body.lines().skip(1).find_map(|line| {
        let (name, value) = line.split_once(':')?;
        if !name.trim().eq_ignore_ascii_case("reason") {
            return None;
        }
        value.split(';').skip(1).find_map(|param| {
            let (key, value) = param.split_once('=')?;
            key.trim()
                .eq_ignore_ascii_case("text")
                .then(|| value.trim().trim_matches('"').trim().to_owned())
                .filter(|text| !text.is_empty())
        })
    })
}

/// A `message/sipfrag` body of one status line: `SIP/2.0 200 OK\r\n`. An empty reason
/// phrase becomes the standard one; CR and LF in it become spaces.
pub fn sipfrag(status: u16, reason_phrase: &str) -> String {
    let phrase = if reason_phrase.trim().is_empty() {
        sip_message::default_reason_phrase(status).to_owned()
    } else {
        reason_phrase
            .replace(['\r', '\n', '\0'], " ")
            .trim()
            .to_owned()
    };
    format!("SIP/2.0 {status} {phrase}\r\n")
}

// ---- Subscription-State

/// The `substate-value` of a Subscription-State (RFC 6665 §8.2.3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SubState {
    Active,
    Pending,
    Terminated,
    /// An extension value, lower-cased.
    Other(String),
}

/// A Subscription-State header (RFC 6665 §8.2.3): the state, and the `reason`,
/// `expires` and `retry-after` parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscriptionState {
    pub state: SubState,
    /// With `terminated`: `noresource`, `timeout`, `rejected`, `deactivated`...
    pub reason: Option<String>,
    /// Seconds the subscription still lasts.
    pub expires: Option<u32>,
    pub retry_after: Option<u32>,
}

impl SubscriptionState {
    /// `active;expires=N`.
    pub fn active(expires: u32) -> SubscriptionState {
        SubscriptionState {
            state: SubState::Active,
            reason: None,
            expires: Some(expires),
            retry_after: None,
        }
    }

    /// `terminated;reason=R`.
    pub fn terminated(reason: &str) -> SubscriptionState {
        SubscriptionState {
            state: SubState::Terminated,
            reason: Some(reason.to_owned()),
            expires: None,
            retry_after: None,
        }
    }

    pub fn parse(value: &str) -> Result<SubscriptionState, CallError> {
        const WHAT: &str = "Subscription-State";
        if has_control(value) {
            return Err(bad(WHAT, "contains CR, LF or NUL"));
        }
        let mut parts = value.split(';');
        let state = parts.next().unwrap_or_default().trim();
        if !is_token(state) {
            return Err(bad(WHAT, format!("`{state}` is not a state")));
        }
        let state = match state.to_ascii_lowercase().as_str() {
            "active" => SubState::Active,
            "pending" => SubState::Pending,
            "terminated" => SubState::Terminated,
            other => SubState::Other(other.to_owned()),
        };
        let mut parsed = SubscriptionState {
            state,
            reason: None,
            expires: None,
            retry_after: None,
        };
        for param in parts {
            let (name, value) = param.split_once('=').unwrap_or((param, ""));
            let (name, value) = (name.trim(), value.trim());
            let seconds = || {
                value
                    .parse::<u32>()
                    .map_err(|_| bad(WHAT, format!("bad {name} `{value}`")))
            };
            if name.eq_ignore_ascii_case("reason") {
                if !is_token(value) {
                    return Err(bad(WHAT, format!("bad reason `{value}`")));
                }
                parsed.reason = Some(value.to_ascii_lowercase());
            } else if name.eq_ignore_ascii_case("expires") {
                parsed.expires = Some(seconds()?);
            } else if name.eq_ignore_ascii_case("retry-after") {
                parsed.retry_after = Some(seconds()?);
            } else if !is_token(name) {
                return Err(bad(WHAT, format!("bad parameter `{name}`")));
            }
        }
        Ok(parsed)
    }
}

impl fmt::Display for SubscriptionState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.state {
            SubState::Active => f.write_str("active")?,
            SubState::Pending => f.write_str("pending")?,
            SubState::Terminated => f.write_str("terminated")?,
            SubState::Other(other) => f.write_str(other)?,
        }
        if let Some(reason) = &self.reason {
            write!(f, ";reason={reason}")?;
        }
        if let Some(expires) = self.expires {
            write!(f, ";expires={expires}")?;
        }
        if let Some(retry) = self.retry_after {
            write!(f, ";retry-after={retry}")?;
        }
        Ok(())
    }
}

// ---- User-to-User

/// A User-to-User value (RFC 7433 §4.1): the data and its `encoding`, `purpose` and
/// `content` parameters. With `encoding=hex`, or no encoding (hex is the one defined),
/// the data must be hexadecimal digits, an even number of them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserToUser {
    pub data: String,
    pub encoding: Option<String>,
    pub purpose: Option<String>,
    pub content: Option<String>,
    /// Other parameters, as written.
    pub params: Vec<(String, Option<String>)>,
}

impl UserToUser {
    /// `bytes` hex-encoded, with `encoding=hex`.
    pub fn hex(bytes: &[u8]) -> UserToUser {
        UserToUser {
            data: bytes.iter().map(|b| format!("{b:02x}")).collect(),
            encoding: Some("hex".into()),
            purpose: None,
            content: None,
            params: Vec::new(),
        }
    }

    /// Parses and validates one `uui-value`.
    pub fn parse(value: &str) -> Result<UserToUser, CallError> {
        const WHAT: &str = "User-to-User";
        if has_control(value) {
            return Err(bad(WHAT, "contains CR, LF or NUL"));
        }
        let mut parts = value.split(';');
        let data = parts.next().unwrap_or_default().trim();
        let mut uui = UserToUser {
            data: data.to_owned(),
            encoding: None,
            purpose: None,
            content: None,
            params: Vec::new(),
        };
        for param in parts {
            let (name, value) = match param.split_once('=') {
                Some((n, v)) => (n.trim(), Some(v.trim())),
                None => (param.trim(), None),
            };
            if !is_token(name) {
                return Err(bad(WHAT, format!("bad parameter `{name}`")));
            }
            let known = ["encoding", "purpose", "content"]
                .iter()
                .any(|k| k.eq_ignore_ascii_case(name));
            match value {
                Some(v) if known && !is_token(v) => {
                    return Err(bad(WHAT, format!("bad {name} `{v}`")));
                }
                None if known => return Err(bad(WHAT, format!("{name} without a value"))),
                _ => {}
            }
            let owned = value.map(str::to_owned);
            match name.to_ascii_lowercase().as_str() {
                "encoding" => uui.encoding = owned,
                "purpose" => uui.purpose = owned,
                "content" => uui.content = owned,
                _ => uui.params.push((name.to_owned(), owned)),
            }
        }
        let hex = uui
            .encoding
            .as_deref()
            .is_none_or(|e| e.eq_ignore_ascii_case("hex"));
        if hex {
            let hex_digits = data.bytes().all(|b| b.is_ascii_hexdigit());
            if data.is_empty() || !data.len().is_multiple_of(2) || !hex_digits {
                return Err(bad(WHAT, format!("`{data}` is not hex data")));
            }
        } else if !(is_token(data)
            || (data.len() >= 2 && data.starts_with('"') && data.ends_with('"')))
        {
            return Err(bad(WHAT, format!("`{data}` is neither a token nor quoted")));
        }
        Ok(uui)
    }
}

impl fmt::Display for UserToUser {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.data)?;
        for (name, value) in [
            ("encoding", &self.encoding),
            ("purpose", &self.purpose),
            ("content", &self.content),
        ] {
            if let Some(value) = value {
                write!(f, ";{name}={value}")?;
            }
        }
        for (name, value) in &self.params {
            match value {
                Some(value) => write!(f, ";{name}={value}")?,
                None => write!(f, ";{name}")?,
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn replaces_parses_the_rfc_3891_example_and_writes_it_back() {
        let r = Replaces::parse("425928@bobster.example.org;to-tag=7743;from-tag=6472").unwrap();
        assert_eq!(r.call_id, "425928@bobster.example.org");
        assert_eq!((r.to_tag.as_str(), r.from_tag.as_str()), ("7743", "6472"));
        assert!(!r.early_only);
        assert_eq!(
            r.to_string(),
            "425928@bobster.example.org;to-tag=7743;from-tag=6472"
        );
        let early = Replaces::parse(" a@b ; FROM-TAG=2 ;early-only; To-Tag=1;x=y").unwrap();
        assert_eq!((early.to_tag.as_str(), early.from_tag.as_str()), ("1", "2"));
        assert!(early.early_only);
        assert_eq!(early.to_string(), "a@b;to-tag=1;from-tag=2;early-only");
    }

    #[test]
    fn replaces_without_both_tags_or_with_two_is_refused() {
        for bad in [
            "",
            "a@b",
            "a@b;to-tag=1",
            "a@b;from-tag=1",
            "a@b;to-tag=1;to-tag=2;from-tag=3",
            "a@b;to-tag=;from-tag=3",
            "a b;to-tag=1;from-tag=2",
            "a@b;to-tag=1;from-tag=2\r\nVia: x",
        ] {
            assert!(Replaces::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn refer_to_decodes_uri_headers_and_the_replaces_in_them() {
        let r = ReferTo::parse(
            "\"Carol\" <sip:c@x;transport=tcp?Replaces=abc%40h%3Bto-tag%3D1%3Bfrom-tag%3D2&X-Case=a%20b&User-to-User=56a3%3Bencoding%3Dhex>;foo=bar",
        )
        .unwrap();
        assert_eq!(r.uri, "sip:c@x;transport=tcp");
        assert_eq!(
            r.replaces,
            Some(Replaces {
                call_id: "abc@h".into(),
                to_tag: "1".into(),
                from_tag: "2".into(),
                early_only: false,
            })
        );
        assert_eq!(
            r.headers,
            vec![
                ("X-Case".into(), "a b".into()),
                ("User-to-User".into(), "56a3;encoding=hex".into())
            ]
        );
        assert_eq!(
            r.to_string(),
            "<sip:c@x;transport=tcp?Replaces=abc%40h%3Bto-tag%3D1%3Bfrom-tag%3D2&X-Case=a%20b&User-to-User=56a3%3Bencoding%3Dhex>"
        );
        assert_eq!(ReferTo::parse(&r.to_string()).unwrap(), r);
    }

    #[test]
    fn refer_to_as_addr_spec_and_its_errors() {
        let r = ReferTo::parse("sip:bob@192.0.2.2;tag=ignored").unwrap();
        assert_eq!(r.uri, "sip:bob@192.0.2.2");
        assert!(r.headers.is_empty() && r.replaces.is_none());
        assert_eq!(r.to_string(), "<sip:bob@192.0.2.2>");
        for bad in [
            "",
            "<>",
            "<sip:a@b",
            "<sip:a@b>, <sip:c@d>",
            "sip:a@b, sip:c@d",
            "<sip:a@b?X=%zz>",
            "<sip:a@b?Replaces=nope>",
            "<sip:a@b?=v>",
            "\"x\" sip:a@b",
            "<sip:a@b> junk",
            "<not a uri>",
        ] {
            assert!(ReferTo::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn escaping_round_trips() {
        let text = "a b;c=d&e?f%g\"h<i>@j";
        let escaped = escape_header(text);
        assert!(!escaped.contains([' ', ';', '=', '&', '"', '<', '>', '@']));
        assert_eq!(unescape(&escaped).unwrap(), text);
    }

    #[test]
    fn sipfrag_reason_header_text() {
        assert_eq!(
            sipfrag_reason_text(
                b"SIP/2.0 486 Busy Here\r\nReason: SIP;cause=486;text=\"Gone fishing\"\r\n"
            ),
            Some("Gone fishing".into())
        );
        assert_eq!(
            sipfrag_reason_text(
                b"SIP/2.0 486 Busy Here\r\nreason : Q.850 ; cause=17 ; TEXT=busy\r\n"
            ),
            Some("busy".into())
        );
        assert_eq!(sipfrag_reason_text(b"SIP/2.0 486 Busy Here\r\n"), None);
        assert_eq!(
            sipfrag_reason_text(b"SIP/2.0 486 Busy Here\r\nReason: SIP;cause=486\r\n"),
            None
        );
        // The status line is not a header.
        assert_eq!(sipfrag_reason_text(b"Reason: SIP;text=\"x\""), None);
    }

    #[test]
    fn sipfrag_status_lines() {
        assert_eq!(
            parse_sipfrag_status(b"SIP/2.0 180 Ringing\r\nX: y\r\n").unwrap(),
            (180, "Ringing".into())
        );
        assert_eq!(
            parse_sipfrag_status(b"SIP/2.0 200\r\n").unwrap(),
            (200, String::new())
        );
        assert_eq!(
            parse_sipfrag_status(b"sip/2.0 603 Declined here").unwrap(),
            (603, "Declined here".into())
        );
        for bad in [
            &b""[..],
            b"INVITE sip:a@b SIP/2.0\r\n",
            b"SIP/2.0 99 Low\r\n",
            b"SIP/2.0 700 High\r\n",
            b"SIP/x 200 OK\r\n",
            b"SIP/2.0 2000 OK",
        ] {
            assert!(parse_sipfrag_status(bad).is_err(), "{bad:?}");
        }
        assert_eq!(sipfrag(100, ""), "SIP/2.0 100 Trying\r\n");
        assert_eq!(sipfrag(486, "Busy\r\nX"), "SIP/2.0 486 Busy  X\r\n");
    }

    #[test]
    fn subscription_state() {
        let s = SubscriptionState::parse("active;expires=60").unwrap();
        assert_eq!(s, SubscriptionState::active(60));
        assert_eq!(s.to_string(), "active;expires=60");
        let t = SubscriptionState::parse("Terminated ; reason=NoResource").unwrap();
        assert_eq!(t, SubscriptionState::terminated("noresource"));
        assert_eq!(t.to_string(), "terminated;reason=noresource");
        let p = SubscriptionState::parse("pending;retry-after=5;x").unwrap();
        assert_eq!((p.state, p.retry_after), (SubState::Pending, Some(5)));
        assert_eq!(
            SubscriptionState::parse("waiting").unwrap().state,
            SubState::Other("waiting".into())
        );
        for bad in ["", ";expires=1", "active;expires=x", "active;reason=a b"] {
            assert!(SubscriptionState::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn user_to_user_is_validated() {
        let u = UserToUser::parse(
            "56a390f3d2b7310023a2;encoding=hex;purpose=isdn-uui;content=isdn-uui",
        )
        .unwrap();
        assert_eq!(u.data, "56a390f3d2b7310023a2");
        assert_eq!(u.purpose.as_deref(), Some("isdn-uui"));
        assert_eq!(
            u.to_string(),
            "56a390f3d2b7310023a2;encoding=hex;purpose=isdn-uui;content=isdn-uui"
        );
        assert_eq!(
            UserToUser::hex(&[0x56, 0xa3]).to_string(),
            "56a3;encoding=hex"
        );
        assert!(UserToUser::parse("abc;encoding=base64").is_ok());
        for bad in [
            "",
            "xyz;encoding=hex",
            "abc",
            "56a3;encoding=hex\r\nVia: x",
            "56a3;purpose",
            "56a3;purpose=a b",
            "5 6;encoding=hex",
        ] {
            assert!(UserToUser::parse(bad).is_err(), "{bad:?}");
        }
    }

    proptest! {
        #[test]
        fn no_input_panics(text in "\\PC{0,80}", bytes in proptest::collection::vec(any::<u8>(), 0..80)) {
            let _ = Replaces::parse(&text);
            let _ = ReferTo::parse(&text);
            let _ = ReferTo::new(&text);
            let _ = SubscriptionState::parse(&text);
            let _ = UserToUser::parse(&text);
            let _ = unescape(&text);
            let _ = parse_sipfrag_status(&bytes);
            let _ = parse_sipfrag_status(text.as_bytes());
            let _ = sipfrag(200, &text);
        }

        #[test]
        fn sip_like_input_does_not_panic(text in "[<>\"; ,?&=%a-z0-9@:.\\-]{0,60}") {
            let _ = ReferTo::parse(&text);
            let _ = Replaces::parse(&text);
            let _ = SubscriptionState::parse(&text);
            let _ = UserToUser::parse(&text);
        }

        #[test]
        fn replaces_round_trips_through_a_refer_to(
            call_id in "[a-zA-Z0-9.!%*_+`'~()/:@\\-]{1,30}",
            to_tag in "[a-zA-Z0-9.\\-]{1,12}",
            from_tag in "[a-zA-Z0-9.\\-]{1,12}",
            early_only: bool,
            value in "[ -~]{0,20}",
        ) {
            let replaces = Replaces { call_id, to_tag, from_tag, early_only };
            prop_assert_eq!(&Replaces::parse(&replaces.to_string()).unwrap(), &replaces);
            let refer_to = ReferTo {
                uri: "sip:c@192.0.2.3".into(),
                replaces: Some(replaces),
                headers: vec![("X-V".into(), value)],
            };
            prop_assert_eq!(ReferTo::parse(&refer_to.to_string()).unwrap(), refer_to);
        }
    }
}
