//! The options value every operation takes (UCMA's `CallEstablishOptions`,
//! `CallAcceptOptions`...): custom headers on every one, MIME parts on `establish`.

use crate::CallError;
use bytes::Bytes;
use sip_message::{HeaderName, Transport};
use std::net::SocketAddr;
use std::time::Duration;

/// A header the application adds to a request or response (UCMA's `SignalingHeader`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignalingHeader {
    pub name: String,
    pub value: String,
}

impl SignalingHeader {
    pub fn new(name: impl Into<String>, value: impl Into<String>) -> SignalingHeader {
        SignalingHeader {
            name: name.into(),
            value: value.into(),
        }
    }
}

/// Headers the stack writes itself: an application that sets them would break the
/// dialog, so they are refused with [`CallError::ForbiddenHeader`]. The caller's identity
/// goes through [`Impersonation`], the body through the options' MIME parts.
const STACK_HEADERS: &[&str] = &[
    "via",
    "v",
    "from",
    "f",
    "to",
    "t",
    "call-id",
    "i",
    "cseq",
    "contact",
    "m",
    "max-forwards",
    "route",
    "record-route",
    "content-length",
    "l",
    "content-type",
    "c",
    "content-encoding",
    "e",
    "rseq",
    "rack",
];

/// Checks and converts application headers: a token name (RFC 3261 §25.1), no CR or LF
/// in the value, and none of the headers the stack owns.
pub(crate) fn to_wire(headers: &[SignalingHeader]) -> Result<Vec<(HeaderName, Bytes)>, CallError> {
    headers
        .iter()
        .map(|h| {
            let name = h.name.trim();
            let token = !name.is_empty()
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-.!%*_+`'~".contains(&b));
            if !token {
                return Err(CallError::InvalidHeader {
                    name: h.name.clone(),
                    problem: "the name is not a token",
                });
            }
            if h.value.bytes().any(|b| b == b'\r' || b == b'\n' || b == 0) {
                return Err(CallError::InvalidHeader {
                    name: h.name.clone(),
                    problem: "the value contains CR, LF or NUL",
                });
            }
            if STACK_HEADERS.iter().any(|s| s.eq_ignore_ascii_case(name)) {
                return Err(CallError::ForbiddenHeader {
                    name: h.name.clone(),
                });
            }
            Ok((
                HeaderName::parse(name.as_bytes()),
                Bytes::copy_from_slice(h.value.trim().as_bytes()),
            ))
        })
        .collect()
}

/// A MIME part sent beside the SDP in a `multipart/mixed` body (RFC 5621).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CustomMimePart {
    /// e.g. `application/vnd.example+xml`.
    pub content_type: String,
    /// e.g. `render;handling=optional` (RFC 3261 §20.11); `None`: no header.
    pub content_disposition: Option<String>,
    /// Extra part headers (Content-ID...).
    pub headers: Vec<SignalingHeader>,
    pub body: Bytes,
}

impl CustomMimePart {
    pub fn new(content_type: impl Into<String>, body: impl Into<Bytes>) -> CustomMimePart {
        CustomMimePart {
            content_type: content_type.into(),
            content_disposition: None,
            headers: Vec::new(),
            body: body.into(),
        }
    }

    pub fn with_disposition(mut self, disposition: impl Into<String>) -> CustomMimePart {
        self.content_disposition = Some(disposition.into());
        self
    }
}

/// Where to send a request when the target URI's host is not enough (a name to
/// resolve, or a proxy): the runtime fills it from RFC 3263, tests give it directly.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Destination {
    pub transport: Transport,
    pub addr: SocketAddr,
}

/// A first message sent with an IM invitation (UCWA's `startMessaging`), as a MIME part
/// beside the SDP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstantMessage {
    pub content_type: String,
    pub body: Bytes,
}

impl InstantMessage {
    pub fn text(body: impl Into<String>) -> InstantMessage {
        InstantMessage {
            content_type: "text/plain;charset=UTF-8".into(),
            body: Bytes::from(body.into()),
        }
    }

    pub fn html(body: impl Into<String>) -> InstantMessage {
        InstantMessage {
            content_type: "text/html;charset=UTF-8".into(),
            body: Bytes::from(body.into()),
        }
    }
}

/// Options of [`establish`](crate::Engine::establish).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct CallEstablishOptions {
    /// Added to the INVITE.
    pub headers: Vec<SignalingHeader>,
    /// Sent with the SDP offer in a `multipart/mixed` body.
    pub custom_mime_parts: Vec<CustomMimePart>,
    /// Give up (CANCEL, state `Terminated` with `Timeout`) when no final answer came in
    /// this time. `None`: the engine's default.
    pub max_establish_time: Option<Duration>,
    /// Where to send the INVITE; `None`: the target URI's host and port (an IP address).
    pub destination: Option<Destination>,
    /// IM calls: a first message, carried in the INVITE.
    pub first_message: Option<InstantMessage>,
    /// Place the call through this configured trunk: to `sip:<user>@<trunk domain>`
    /// (the target's user part, or the target itself when it is a bare number) via the
    /// trunk's proxy, answering its challenges with the trunk's credentials, from its
    /// caller ID when it has one.
    pub trunk: Option<String>,
}

impl CallEstablishOptions {
    pub fn new() -> CallEstablishOptions {
        CallEstablishOptions::default()
    }

    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push(SignalingHeader::new(name, value));
        self
    }

    pub fn mime_part(mut self, part: CustomMimePart) -> Self {
        self.custom_mime_parts.push(part);
        self
    }

    pub fn max_establish_time(mut self, time: Duration) -> Self {
        self.max_establish_time = Some(time);
        self
    }

    pub fn destination(mut self, destination: Destination) -> Self {
        self.destination = Some(destination);
        self
    }

    pub fn first_message(mut self, message: InstantMessage) -> Self {
        self.first_message = Some(message);
        self
    }
}

/// Options of [`accept`](crate::Engine::accept).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct CallAcceptOptions {
    /// Added to the 2xx.
    pub headers: Vec<SignalingHeader>,
}

impl CallAcceptOptions {
    pub fn new() -> CallAcceptOptions {
        CallAcceptOptions::default()
    }

    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push(SignalingHeader::new(name, value));
        self
    }
}

/// Options of [`decline`](crate::Engine::decline): any final 4xx–6xx.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct CallDeclineOptions {
    /// 400–699; 603 Decline by default.
    pub status: u16,
    /// The reason phrase; `None`: the standard one.
    pub reason_phrase: Option<String>,
    /// A Reason header (RFC 3326), e.g. `SIP;cause=486;text="Busy"`.
    pub reason: Option<String>,
    pub headers: Vec<SignalingHeader>,
}

impl Default for CallDeclineOptions {
    fn default() -> Self {
        CallDeclineOptions::new(603)
    }
}

impl CallDeclineOptions {
    pub fn new(status: u16) -> CallDeclineOptions {
        CallDeclineOptions {
            status,
            reason_phrase: None,
            reason: None,
            headers: Vec::new(),
        }
    }

    pub fn reason_phrase(mut self, phrase: impl Into<String>) -> Self {
        self.reason_phrase = Some(phrase.into());
        self
    }

    /// A Reason header (RFC 3326), e.g. `SIP;cause=486;text="Agent busy"`.
    pub fn reason(mut self, reason: impl Into<String>) -> Self {
        self.reason = Some(reason.into());
        self
    }

    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push(SignalingHeader::new(name, value));
        self
    }
}

/// Options of [`forward`](crate::Engine::forward): a 3xx with the target as Contact.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct CallForwardOptions {
    /// 300–399; 302 Moved Temporarily by default.
    pub status: u16,
    pub headers: Vec<SignalingHeader>,
}

impl Default for CallForwardOptions {
    fn default() -> Self {
        CallForwardOptions {
            status: 302,
            headers: Vec::new(),
        }
    }
}

impl CallForwardOptions {
    pub fn new() -> CallForwardOptions {
        CallForwardOptions::default()
    }
}

/// Options of [`terminate`](crate::Engine::terminate).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct CallTerminateOptions {
    /// A Reason header (RFC 3326) for the BYE or CANCEL.
    pub reason: Option<String>,
    /// Added to the BYE (a CANCEL carries only Reason, RFC 3261 §9.1).
    pub headers: Vec<SignalingHeader>,
}

impl CallTerminateOptions {
    pub fn new() -> CallTerminateOptions {
        CallTerminateOptions::default()
    }
}

/// Options of [`send_provisional`](crate::Engine::send_provisional).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct CallProvisionalResponseOptions {
    /// 101–199; 180 Ringing by default.
    pub status: u16,
    pub reason_phrase: Option<String>,
    pub headers: Vec<SignalingHeader>,
}

impl Default for CallProvisionalResponseOptions {
    fn default() -> Self {
        CallProvisionalResponseOptions {
            status: 180,
            reason_phrase: None,
            headers: Vec::new(),
        }
    }
}

impl CallProvisionalResponseOptions {
    pub fn new(status: u16) -> CallProvisionalResponseOptions {
        CallProvisionalResponseOptions {
            status,
            ..CallProvisionalResponseOptions::default()
        }
    }
}

/// Options of [`send_instant_message`](crate::Engine::send_instant_message) and
/// [`send_page_message`](crate::Engine::send_page_message).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct MessageOptions {
    pub headers: Vec<SignalingHeader>,
    /// Page mode: where to send it when the target's host is not an address.
    pub destination: Option<Destination>,
}

/// How to hold (RFC 3264 §8.4, RFC 6337 §5.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HoldType {
    /// We stop sending but still receive (a=sendonly: the peer may play music to us...
    /// or we to them). The usual hold.
    SendOnly,
    /// Neither side sends (a=inactive).
    Inactive,
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    #[test]
    fn headers_are_checked() {
        let ok = to_wire(&[SignalingHeader::new("X-Case", "42")]).unwrap();
        assert_eq!(ok[0].1, Bytes::from_static(b"42"));
        assert!(matches!(
            to_wire(&[SignalingHeader::new("Call-ID", "x")]),
            Err(CallError::ForbiddenHeader { .. })
        ));
        assert!(matches!(
            to_wire(&[SignalingHeader::new("i", "x")]),
            Err(CallError::ForbiddenHeader { .. })
        ));
        assert!(matches!(
            to_wire(&[SignalingHeader::new("X Bad", "x")]),
            Err(CallError::InvalidHeader { .. })
        ));
        assert!(matches!(
            to_wire(&[SignalingHeader::new("X-Inject", "a\r\nVia: evil")]),
            Err(CallError::InvalidHeader { .. })
        ));
    }
}
