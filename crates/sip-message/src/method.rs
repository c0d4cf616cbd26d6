//! Methods and tokens (RFC 3261 §7.1, §25.1).

use crate::ParseError;
use crate::scan::{is_token, sub};
use bytes::Bytes;
use std::fmt;

/// An RFC 3261 token (§25.1), validated, cheap to clone (`Bytes` inside).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Token(Bytes);

impl Token {
    /// Validates `b` as a token.
    pub fn new(b: impl Into<Bytes>) -> Result<Token, ParseError> {
        let b = b.into();
        if is_token(&b) {
            Ok(Token(b))
        } else {
            Err(ParseError::BadToken)
        }
    }
    pub(crate) fn from_validated(b: Bytes) -> Token {
        Token(b)
    }
    /// The token text (always ASCII).
    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).unwrap_or_default()
    }
    /// The token bytes.
    pub fn as_bytes(&self) -> &Bytes {
        &self.0
    }
}

impl fmt::Display for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The names of the methods [`Method`] has a variant for (RFC 3261 and its extensions),
/// for labels and logs that must not take a peer's method names at will.
pub const KNOWN_METHODS: [&str; 14] = [
    "INVITE",
    "ACK",
    "BYE",
    "CANCEL",
    "OPTIONS",
    "REGISTER",
    "PRACK",
    "SUBSCRIBE",
    "NOTIFY",
    "PUBLISH",
    "INFO",
    "REFER",
    "MESSAGE",
    "UPDATE",
];

/// A request method (RFC 3261 §7.1, §27.4). Methods are case-sensitive.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Method {
    Invite,
    Ack,
    Bye,
    Cancel,
    Options,
    Register,
    /// RFC 3262.
    Prack,
    /// RFC 6665.
    Subscribe,
    /// RFC 6665.
    Notify,
    /// RFC 3903.
    Publish,
    /// RFC 6086.
    Info,
    /// RFC 3515.
    Refer,
    /// RFC 3428.
    Message,
    /// RFC 3311.
    Update,
    /// Any other token (RFC 3261 §7.1 `extension-method`).
    Extension(Token),
}

impl Method {
    /// The method name as written on the wire.
    pub fn as_str(&self) -> &str {
        match self {
            Method::Invite => "INVITE",
            Method::Ack => "ACK",
            Method::Bye => "BYE",
            Method::Cancel => "CANCEL",
            Method::Options => "OPTIONS",
            Method::Register => "REGISTER",
            Method::Prack => "PRACK",
            Method::Subscribe => "SUBSCRIBE",
            Method::Notify => "NOTIFY",
            Method::Publish => "PUBLISH",
            Method::Info => "INFO",
            Method::Refer => "REFER",
            Method::Message => "MESSAGE",
            Method::Update => "UPDATE",
            Method::Extension(t) => t.as_str(),
        }
    }

    fn known(b: &[u8]) -> Option<Method> {
        Some(match b {
            b"INVITE" => Method::Invite,
            b"ACK" => Method::Ack,
            b"BYE" => Method::Bye,
            b"CANCEL" => Method::Cancel,
            b"OPTIONS" => Method::Options,
            b"REGISTER" => Method::Register,
            b"PRACK" => Method::Prack,
            b"SUBSCRIBE" => Method::Subscribe,
            b"NOTIFY" => Method::Notify,
            b"PUBLISH" => Method::Publish,
            b"INFO" => Method::Info,
            b"REFER" => Method::Refer,
            b"MESSAGE" => Method::Message,
            b"UPDATE" => Method::Update,
            _ => return None,
        })
    }

    /// Parses a method, case-sensitively (RFC 3261 §7.1); any other token is an extension.
    pub fn parse(b: &[u8]) -> Result<Method, ParseError> {
        if let Some(m) = Self::known(b) {
            return Ok(m);
        }
        if is_token(b) {
            Ok(Method::Extension(Token(Bytes::copy_from_slice(b))))
        } else {
            Err(ParseError::BadMethod)
        }
    }

    /// Like [`Method::parse`] on `src[s..e]`, slicing instead of copying.
    pub(crate) fn parse_in(src: &Bytes, s: usize, e: usize) -> Result<Method, ParseError> {
        let b = crate::scan::range(src, s, e);
        if let Some(m) = Self::known(b) {
            return Ok(m);
        }
        if is_token(b) {
            Ok(Method::Extension(Token(sub(src, s, e))))
        } else {
            Err(ParseError::BadMethod)
        }
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
