//! Header field names (RFC 3261 §7.3, §7.3.3 compact forms, §20).

use bytes::Bytes;
use std::fmt;
use std::hash::{Hash, Hasher};

/// A header field name. Names compare case-insensitively (RFC 3261 §7.3.1); compact forms
/// (§7.3.3) map to the full name when parsed.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum HeaderName {
    Accept,
    AcceptEncoding,
    AcceptLanguage,
    AlertInfo,
    Allow,
    AllowEvents,
    AuthenticationInfo,
    Authorization,
    CallId,
    CallInfo,
    Contact,
    ContentDisposition,
    ContentEncoding,
    ContentLanguage,
    ContentLength,
    ContentType,
    CSeq,
    Date,
    ErrorInfo,
    Event,
    Expires,
    From,
    InReplyTo,
    MaxForwards,
    MimeVersion,
    MinExpires,
    MinSE,
    Organization,
    Priority,
    ProxyAuthenticate,
    ProxyAuthorization,
    ProxyRequire,
    RAck,
    Reason,
    RecordRoute,
    ReferTo,
    ReferredBy,
    Replaces,
    ReplyTo,
    Require,
    RetryAfter,
    Route,
    RSeq,
    Server,
    SessionExpires,
    Subject,
    SubscriptionState,
    Supported,
    Timestamp,
    To,
    Unsupported,
    UserAgent,
    Via,
    Warning,
    WwwAuthenticate,
    /// Any other name, as received.
    Other(Bytes),
}

impl HeaderName {
    /// Parses a name, case-insensitively; compact forms (i m e l c f s k t v o u r b x y a j
    /// d) map to the full name (RFC 3261 §7.3.3, RFC 3841, RFC 4028, RFC 4474).
    pub fn parse(name: &[u8]) -> HeaderName {
        Self::classify(name).unwrap_or_else(|| HeaderName::Other(Bytes::copy_from_slice(name)))
    }

    /// Like [`HeaderName::parse`] but an unknown name is a zero-copy slice of `src`.
    pub(crate) fn parse_in(src: &Bytes, s: usize, e: usize) -> HeaderName {
        match Self::classify(crate::scan::range(src, s, e)) {
            Some(n) => n,
            None => HeaderName::Other(crate::scan::sub(src, s, e)),
        }
    }

    /// Classifies a known name by length and first byte, then one case-insensitive compare.
    #[inline]
    pub(crate) fn classify(name: &[u8]) -> Option<HeaderName> {
        use HeaderName as H;
        let first = name.first()? | 0x20;
        macro_rules! try_names {
            ($($lit:literal => $v:expr),+ $(,)?) => {{
                $( if name.eq_ignore_ascii_case($lit) { return Some($v); } )+
                None
            }};
        }
        match (name.len(), first) {
            (1, c) => Some(match c {
                b'i' => H::CallId,
                b'm' => H::Contact,
                b'e' => H::ContentEncoding,
                b'l' => H::ContentLength,
                b'c' => H::ContentType,
                b'f' => H::From,
                b's' => H::Subject,
                b'k' => H::Supported,
                b't' => H::To,
                b'v' => H::Via,
                b'o' => H::Event,
                b'u' => H::AllowEvents,
                b'r' => H::ReferTo,
                b'b' => H::ReferredBy,
                b'x' => H::SessionExpires,
                b'y' => H::Other(Bytes::from_static(b"Identity")),
                b'a' => H::Other(Bytes::from_static(b"Accept-Contact")),
                b'j' => H::Other(Bytes::from_static(b"Reject-Contact")),
                b'd' => H::Other(Bytes::from_static(b"Request-Disposition")),
                b'n' => H::Other(Bytes::from_static(b"Identity-Info")),
                _ => return None,
            }),
            (2, b't') => try_names!(b"To" => H::To),
            (3, b'v') => try_names!(b"Via" => H::Via),
            (4, b'd') => try_names!(b"Date" => H::Date),
            (4, b'f') => try_names!(b"From" => H::From),
            (4, b'c') => try_names!(b"CSeq" => H::CSeq),
            (4, b'r') => try_names!(b"RAck" => H::RAck, b"RSeq" => H::RSeq),
            (5, b'a') => try_names!(b"Allow" => H::Allow),
            (5, b'e') => try_names!(b"Event" => H::Event),
            (5, b'r') => try_names!(b"Route" => H::Route),
            (6, b'a') => try_names!(b"Accept" => H::Accept),
            (6, b's') => try_names!(b"Server" => H::Server),
            (6, b'r') => try_names!(b"Reason" => H::Reason),
            (7, b'c') => try_names!(b"Call-ID" => H::CallId, b"Contact" => H::Contact),
            (7, b'e') => try_names!(b"Expires" => H::Expires),
            (7, b'r') => try_names!(b"Require" => H::Require),
            (7, b's') => try_names!(b"Subject" => H::Subject),
            (7, b'w') => try_names!(b"Warning" => H::Warning),
            (6, b'm') => try_names!(b"Min-SE" => H::MinSE),
            (8, b'p') => try_names!(b"Priority" => H::Priority),
            (8, b'r') => {
                try_names!(b"Replaces" => H::Replaces, b"Reply-To" => H::ReplyTo, b"Refer-To" => H::ReferTo)
            }
            (9, b'c') => try_names!(b"Call-Info" => H::CallInfo),
            (9, b's') => try_names!(b"Supported" => H::Supported),
            (9, b't') => try_names!(b"Timestamp" => H::Timestamp),
            (10, b'a') => try_names!(b"Alert-Info" => H::AlertInfo),
            (10, b'e') => try_names!(b"Error-Info" => H::ErrorInfo),
            (10, b'u') => try_names!(b"User-Agent" => H::UserAgent),
            (11, b'i') => try_names!(b"In-Reply-To" => H::InReplyTo),
            (11, b'm') => try_names!(b"Min-Expires" => H::MinExpires),
            (11, b'r') => {
                try_names!(b"Referred-By" => H::ReferredBy, b"Retry-After" => H::RetryAfter)
            }
            (11, b'u') => try_names!(b"Unsupported" => H::Unsupported),
            (12, b'c') => try_names!(b"Content-Type" => H::ContentType),
            (12, b'o') => try_names!(b"Organization" => H::Organization),
            (12, b'm') => {
                try_names!(b"Max-Forwards" => H::MaxForwards, b"MIME-Version" => H::MimeVersion)
            }
            (12, b'a') => try_names!(b"Allow-Events" => H::AllowEvents),
            (12, b'r') => try_names!(b"Record-Route" => H::RecordRoute),
            (13, b'a') => try_names!(b"Authorization" => H::Authorization),
            (13, b'p') => try_names!(b"Proxy-Require" => H::ProxyRequire),
            (14, b'c') => try_names!(b"Content-Length" => H::ContentLength),
            (15, b'a') => {
                try_names!(b"Accept-Encoding" => H::AcceptEncoding, b"Accept-Language" => H::AcceptLanguage)
            }
            (15, b's') => try_names!(b"Session-Expires" => H::SessionExpires),
            (16, b'c') => {
                try_names!(b"Content-Encoding" => H::ContentEncoding, b"Content-Language" => H::ContentLanguage)
            }
            (16, b'w') => try_names!(b"WWW-Authenticate" => H::WwwAuthenticate),
            (18, b'p') => try_names!(b"Proxy-Authenticate" => H::ProxyAuthenticate),
            (18, b's') => try_names!(b"Subscription-State" => H::SubscriptionState),
            (19, b'c') => try_names!(b"Content-Disposition" => H::ContentDisposition),
            (19, b'a') => try_names!(b"Authentication-Info" => H::AuthenticationInfo),
            (19, b'p') => try_names!(b"Proxy-Authorization" => H::ProxyAuthorization),
            _ => None,
        }
    }

    /// The canonical spelling, e.g. "Call-ID", "CSeq", "WWW-Authenticate"; an unknown name
    /// as received.
    pub fn as_str(&self) -> &str {
        use HeaderName as H;
        match self {
            H::Accept => "Accept",
            H::AcceptEncoding => "Accept-Encoding",
            H::AcceptLanguage => "Accept-Language",
            H::AlertInfo => "Alert-Info",
            H::Allow => "Allow",
            H::AllowEvents => "Allow-Events",
            H::AuthenticationInfo => "Authentication-Info",
            H::Authorization => "Authorization",
            H::CallId => "Call-ID",
            H::CallInfo => "Call-Info",
            H::Contact => "Contact",
            H::ContentDisposition => "Content-Disposition",
            H::ContentEncoding => "Content-Encoding",
            H::ContentLanguage => "Content-Language",
            H::ContentLength => "Content-Length",
            H::ContentType => "Content-Type",
            H::CSeq => "CSeq",
            H::Date => "Date",
            H::ErrorInfo => "Error-Info",
            H::Event => "Event",
            H::Expires => "Expires",
            H::From => "From",
            H::InReplyTo => "In-Reply-To",
            H::MaxForwards => "Max-Forwards",
            H::MimeVersion => "MIME-Version",
            H::MinExpires => "Min-Expires",
            H::MinSE => "Min-SE",
            H::Organization => "Organization",
            H::Priority => "Priority",
            H::ProxyAuthenticate => "Proxy-Authenticate",
            H::ProxyAuthorization => "Proxy-Authorization",
            H::ProxyRequire => "Proxy-Require",
            H::RAck => "RAck",
            H::Reason => "Reason",
            H::RecordRoute => "Record-Route",
            H::ReferTo => "Refer-To",
            H::ReferredBy => "Referred-By",
            H::Replaces => "Replaces",
            H::ReplyTo => "Reply-To",
            H::Require => "Require",
            H::RetryAfter => "Retry-After",
            H::Route => "Route",
            H::RSeq => "RSeq",
            H::Server => "Server",
            H::SessionExpires => "Session-Expires",
            H::Subject => "Subject",
            H::SubscriptionState => "Subscription-State",
            H::Supported => "Supported",
            H::Timestamp => "Timestamp",
            H::To => "To",
            H::Unsupported => "Unsupported",
            H::UserAgent => "User-Agent",
            H::Via => "Via",
            H::Warning => "Warning",
            H::WwwAuthenticate => "WWW-Authenticate",
            H::Other(b) => std::str::from_utf8(b).unwrap_or_default(),
        }
    }

    /// The name bytes to write on the wire.
    pub(crate) fn as_bytes(&self) -> &[u8] {
        match self {
            HeaderName::Other(b) => b,
            n => n.as_str().as_bytes(),
        }
    }

    /// True for headers whose value is a comma-separated list per RFC 3261 §7.3.1 (Via,
    /// Contact, Route, Record-Route, Allow, Supported, Require, Proxy-Require, Unsupported,
    /// Accept*, Allow-Events, ...). Never true for the authentication headers, Date, etc.,
    /// whose values hold commas of their own.
    pub fn is_list(&self) -> bool {
        use HeaderName as H;
        matches!(
            self,
            H::Accept
                | H::AcceptEncoding
                | H::AcceptLanguage
                | H::AlertInfo
                | H::Allow
                | H::AllowEvents
                | H::CallInfo
                | H::Contact
                | H::ContentEncoding
                | H::ContentLanguage
                | H::ErrorInfo
                | H::InReplyTo
                | H::ProxyRequire
                | H::Reason
                | H::RecordRoute
                | H::Require
                | H::Route
                | H::Supported
                | H::Unsupported
                | H::Via
                | H::Warning
        )
    }
}

impl PartialEq for HeaderName {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (HeaderName::Other(a), HeaderName::Other(b)) => a.eq_ignore_ascii_case(b),
            (a, b) => std::mem::discriminant(a) == std::mem::discriminant(b),
        }
    }
}
impl Eq for HeaderName {}

impl Hash for HeaderName {
    fn hash<H: Hasher>(&self, state: &mut H) {
        std::mem::discriminant(self).hash(state);
        if let HeaderName::Other(b) = self {
            for c in b.iter() {
                state.write_u8(c.to_ascii_lowercase());
            }
        }
    }
}

impl fmt::Display for HeaderName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl From<&str> for HeaderName {
    fn from(s: &str) -> Self {
        HeaderName::parse(s.as_bytes())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic)]
mod tests {
    use super::*;

    const ALL: &[HeaderName] = &[
        HeaderName::Accept,
        HeaderName::AcceptEncoding,
        HeaderName::AcceptLanguage,
        HeaderName::AlertInfo,
        HeaderName::Allow,
        HeaderName::AllowEvents,
        HeaderName::AuthenticationInfo,
        HeaderName::Authorization,
        HeaderName::CallId,
        HeaderName::CallInfo,
        HeaderName::Contact,
        HeaderName::ContentDisposition,
        HeaderName::ContentEncoding,
        HeaderName::ContentLanguage,
        HeaderName::ContentLength,
        HeaderName::ContentType,
        HeaderName::CSeq,
        HeaderName::Date,
        HeaderName::ErrorInfo,
        HeaderName::Event,
        HeaderName::Expires,
        HeaderName::From,
        HeaderName::InReplyTo,
        HeaderName::MaxForwards,
        HeaderName::MimeVersion,
        HeaderName::MinExpires,
        HeaderName::MinSE,
        HeaderName::Organization,
        HeaderName::Priority,
        HeaderName::ProxyAuthenticate,
        HeaderName::ProxyAuthorization,
        HeaderName::ProxyRequire,
        HeaderName::RAck,
        HeaderName::Reason,
        HeaderName::RecordRoute,
        HeaderName::ReferTo,
        HeaderName::ReferredBy,
        HeaderName::Replaces,
        HeaderName::ReplyTo,
        HeaderName::Require,
        HeaderName::RetryAfter,
        HeaderName::Route,
        HeaderName::RSeq,
        HeaderName::Server,
        HeaderName::SessionExpires,
        HeaderName::Subject,
        HeaderName::SubscriptionState,
        HeaderName::Supported,
        HeaderName::Timestamp,
        HeaderName::To,
        HeaderName::Unsupported,
        HeaderName::UserAgent,
        HeaderName::Via,
        HeaderName::Warning,
        HeaderName::WwwAuthenticate,
    ];

    #[test]
    fn every_known_name_round_trips_in_any_case() {
        for n in ALL {
            let s = n.as_str();
            assert_eq!(&HeaderName::parse(s.as_bytes()), n, "{s}");
            assert_eq!(
                &HeaderName::parse(s.to_ascii_lowercase().as_bytes()),
                n,
                "{s}"
            );
            assert_eq!(
                &HeaderName::parse(s.to_ascii_uppercase().as_bytes()),
                n,
                "{s}"
            );
            assert!(!matches!(
                HeaderName::parse(s.as_bytes()),
                HeaderName::Other(_)
            ));
        }
    }

    #[test]
    fn compact_forms() {
        for (c, n) in [
            ("i", HeaderName::CallId),
            ("m", HeaderName::Contact),
            ("e", HeaderName::ContentEncoding),
            ("l", HeaderName::ContentLength),
            ("c", HeaderName::ContentType),
            ("f", HeaderName::From),
            ("s", HeaderName::Subject),
            ("k", HeaderName::Supported),
            ("t", HeaderName::To),
            ("v", HeaderName::Via),
            ("o", HeaderName::Event),
            ("u", HeaderName::AllowEvents),
            ("r", HeaderName::ReferTo),
            ("b", HeaderName::ReferredBy),
            ("x", HeaderName::SessionExpires),
            ("V", HeaderName::Via),
            ("I", HeaderName::CallId),
        ] {
            assert_eq!(HeaderName::parse(c.as_bytes()), n);
        }
        assert_eq!(HeaderName::parse(b"y").as_str(), "Identity");
        assert_eq!(HeaderName::parse(b"y"), HeaderName::parse(b"IDENTITY"));
        assert_eq!(HeaderName::parse(b"a").as_str(), "Accept-Contact");
    }

    #[test]
    fn unknown_names_compare_case_insensitively() {
        let a = HeaderName::parse(b"X-Custom");
        assert_eq!(a, HeaderName::parse(b"x-cUSTOM"));
        assert_eq!(a.as_str(), "X-Custom");
        use std::collections::hash_map::DefaultHasher;
        let h = |n: &HeaderName| {
            let mut s = DefaultHasher::new();
            n.hash(&mut s);
            s.finish()
        };
        assert_eq!(h(&a), h(&HeaderName::parse(b"X-CUSTOM")));
        assert!(HeaderName::Via.is_list() && HeaderName::Contact.is_list());
        assert!(!HeaderName::WwwAuthenticate.is_list() && !HeaderName::Date.is_list());
        assert!(!HeaderName::Authorization.is_list() && !HeaderName::From.is_list());
    }
}
