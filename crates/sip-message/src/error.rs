//! The one error type of this crate (RFC 3261 §8.2, §21.4).

use crate::HeaderName;
use bytes::Bytes;
use std::borrow::Cow;

/// Why a message, header value or URI could not be parsed or failed validation.
///
/// Each variant maps to the status a UAS answers with ([`ParseError::status_code`]) and
/// a reason phrase naming the problem ([`ParseError::reason_phrase`]), as RFC 4475 asks.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ParseError {
    /// The Request-Line or Status-Line is malformed (RFC 3261 §7.1, §7.2).
    #[error("malformed start line")]
    BadStartLine,
    /// A SIP-Version other than SIP/2.0 (RFC 3261 §7.1; answered with 505, §21.5.6).
    #[error("unsupported SIP version {}", String::from_utf8_lossy(.version))]
    UnsupportedVersion {
        /// The version as received.
        version: Bytes,
    },
    /// A header line without a colon or with a bad name (RFC 3261 §7.3).
    #[error("malformed header line")]
    BadHeaderLine,
    /// A header value that does not match its grammar (RFC 3261 §20, §25).
    #[error("malformed header {name}")]
    BadHeader {
        /// Which header.
        name: HeaderName,
    },
    /// A mandatory header is absent (RFC 3261 §8.1.1).
    #[error("missing header {0}")]
    MissingHeader(HeaderName),
    /// A single-valued header appears more than once (RFC 3261 §7.3.1).
    #[error("multiple values for {0}")]
    MultipleValues(HeaderName),
    /// The Request-URI is malformed or not allowed there (RFC 3261 §19.1.1, §8.2.2.1).
    #[error("malformed Request-URI")]
    BadRequestUri,
    /// A URI that does not match RFC 3261 §19.1 / RFC 3966 / RFC 3986 §3.1.
    #[error("malformed URI")]
    BadUri,
    /// A method that is not a token (RFC 3261 §25.1).
    #[error("malformed method")]
    BadMethod,
    /// A value that should be a token and is not (RFC 3261 §25.1).
    #[error("malformed token")]
    BadToken,
    /// The CSeq method differs from the request method (RFC 3261 §8.1.1.5).
    #[error("CSeq method does not match the request method")]
    CSeqMethodMismatch,
    /// Content-Length announces more bytes than the datagram holds (RFC 3261 §18.3).
    #[error("Content-Length {declared} exceeds the {available} bytes available")]
    ContentLengthMismatch {
        /// The Content-Length value.
        declared: usize,
        /// Bytes after the header section.
        available: usize,
    },
    /// A size limit was exceeded (RFC 3261 §21.4.11, §21.5.7).
    #[error("{what} exceeds the limit of {limit}")]
    TooLarge {
        /// What was too large ("body", "header section", ...).
        what: &'static str,
        /// The limit.
        limit: usize,
    },
    /// The Status-Code is not three digits in 100..=699 (RFC 3261 §7.2, §21).
    #[error("malformed status code")]
    BadStatusCode,
    /// A multipart body that does not follow RFC 2046 §5.1.1.
    #[error("malformed multipart body: {reason}")]
    BadMultipart {
        /// What is wrong.
        reason: &'static str,
    },
}

fn ascii(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_graphic() || c == ' ' {
                c
            } else {
                '?'
            }
        })
        .collect()
}

impl ParseError {
    /// Status a UAS answers with: 400 for most, 505 for a version other than SIP/2.0
    /// (RFC 3261 §21.5.6), 413 for a too-large body (§21.4.11), 513 for a too-large
    /// message (§21.5.7).
    pub fn status_code(&self) -> u16 {
        match self {
            ParseError::UnsupportedVersion { .. } => 505,
            ParseError::TooLarge { what, .. } if *what == "body" => 413,
            ParseError::TooLarge { .. } => 513,
            _ => 400,
        }
    }

    /// A reason phrase naming the problem, e.g. "Bad Header: CSeq", "Missing Header: Call-ID",
    /// "Multiple Values: To", "CSeq Method Mismatch", "Bad Request-URI", "Version Not
    /// Supported". ASCII only, no CR/LF (RFC 3261 §21: the phrase is for humans).
    pub fn reason_phrase(&self) -> Cow<'static, str> {
        match self {
            ParseError::BadStartLine => "Bad Start Line".into(),
            ParseError::UnsupportedVersion { .. } => "Version Not Supported".into(),
            ParseError::BadHeaderLine => "Bad Header Line".into(),
            ParseError::BadHeader { name } => {
                format!("Bad Header: {}", ascii(name.as_str())).into()
            }
            ParseError::MissingHeader(name) => {
                format!("Missing Header: {}", ascii(name.as_str())).into()
            }
            ParseError::MultipleValues(name) => {
                format!("Multiple Values: {}", ascii(name.as_str())).into()
            }
            ParseError::BadRequestUri => "Bad Request-URI".into(),
            ParseError::BadUri => "Bad URI".into(),
            ParseError::BadMethod => "Bad Method".into(),
            ParseError::BadToken => "Bad Token".into(),
            ParseError::CSeqMethodMismatch => "CSeq Method Mismatch".into(),
            ParseError::ContentLengthMismatch { .. } => "Content-Length Mismatch".into(),
            ParseError::TooLarge { what, .. } if *what == "body" => {
                "Request Entity Too Large".into()
            }
            ParseError::TooLarge { .. } => "Message Too Large".into(),
            ParseError::BadStatusCode => "Bad Status Code".into(),
            ParseError::BadMultipart { .. } => "Bad Multipart Body".into(),
        }
    }
}
