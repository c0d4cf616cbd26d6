//! RFC 3261 §8.2: what a UAS checks, in the RFC's order, before it acts on a new request.
//!
//! Method inspection (§8.2.1), Request-URI scheme and user (§8.2.2.1), `Require`
//! (§8.2.2.3), content (§8.2.3) and `Accept`. Each refusal is a [`Rejection`]: the status
//! and the headers the RFC asks for beside it (Allow, Unsupported, Accept,
//! Accept-Encoding).

use bytes::Bytes;
use sip_message::{HeaderName, Method, Request, Uri};

pub use sip_dialog::{ALLOW, SUPPORTED};
/// Bodies an INVITE, ACK or OPTIONS may carry.
pub const ACCEPT: &str = "application/sdp";
/// Bodies a MESSAGE may carry (RFC 3428 §7).
pub const ACCEPT_MESSAGE: &str = "text/plain, text/html, message/cpim, application/im-iscomposing+xml, multipart/mixed, multipart/alternative";

/// Whom a request is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// A configured user.
    User { name: String },
    /// The server itself: a Request-URI without a user part (OPTIONS pings).
    Server,
}

/// A refusal: status, optional reason phrase, and headers to add.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    pub status: u16,
    pub reason: Option<String>,
    pub headers: Vec<(HeaderName, Bytes)>,
}

impl Rejection {
    fn new(status: u16) -> Self {
        Rejection {
            status,
            reason: None,
            headers: Vec::new(),
        }
    }

    fn reason(mut self, reason: impl Into<String>) -> Self {
        self.reason = Some(reason.into());
        self
    }

    fn header(mut self, name: HeaderName, value: impl Into<Bytes>) -> Self {
        self.headers.push((name, value.into()));
        self
    }
}

/// Checks a new request that is not part of a dialog. `user` says whether a Request-URI
/// user part (unescaped) is one we serve.
pub fn inspect(request: &Request, user: impl Fn(&str) -> bool) -> Result<Target, Rejection> {
    check_method(&request.method)?;
    let uri = request
        .uri_ref()
        .map_err(|e| Rejection::new(400).reason(e.reason_phrase()))?;
    let target = match uri.as_ref() {
        Uri::Sip(sip) => match sip.user_unescaped() {
            None if request.method == Method::Options => Target::Server,
            None => return Err(Rejection::new(404)),
            Some(name) => {
                let name = String::from_utf8_lossy(&name).into_owned();
                if !user(&name) {
                    return Err(Rejection::new(404));
                }
                Target::User { name }
            }
        },
        // RFC 3261 §8.2.2.1: a scheme we do not understand gets 416.
        _ => return Err(Rejection::new(416)),
    };
    check_require(request)?;
    check_content(request)?;
    check_accept(request)?;
    Ok(target)
}

/// §8.2.1: 501 for methods we do not know, 405 with Allow for known ones we do not serve.
pub fn check_method(method: &Method) -> Result<(), Rejection> {
    match method {
        Method::Invite
        | Method::Ack
        | Method::Cancel
        | Method::Bye
        | Method::Options
        | Method::Message
        | Method::Update
        | Method::Prack
        | Method::Info
        | Method::Refer
        | Method::Notify
        | Method::Subscribe => Ok(()),
        Method::Extension(_) => Err(Rejection::new(501).header(HeaderName::Allow, ALLOW)),
        _ => Err(Rejection::new(405).header(HeaderName::Allow, ALLOW)),
    }
}

/// §8.2.2.3: every option tag in Require must be supported, else 420 listing them.
pub fn check_require(request: &Request) -> Result<(), Rejection> {
    if matches!(request.method, Method::Ack | Method::Cancel) {
        return Ok(());
    }
    let unsupported: Vec<String> = request
        .headers
        .tokens(&HeaderName::Require)
        .filter(|tag| !is_supported(tag))
        .map(|tag| String::from_utf8_lossy(&tag).into_owned())
        .collect();
    if unsupported.is_empty() {
        Ok(())
    } else {
        Err(Rejection::new(420).header(HeaderName::Unsupported, unsupported.join(", ")))
    }
}

fn is_supported(tag: &[u8]) -> bool {
    SUPPORTED
        .split(", ")
        .any(|s| !s.is_empty() && s.as_bytes().eq_ignore_ascii_case(tag))
}

/// §8.2.3: a body we cannot read gets 415 with what we can.
pub fn check_content(request: &Request) -> Result<(), Rejection> {
    if request.body.is_empty() {
        return Ok(());
    }
    for encoding in request.headers.tokens(&HeaderName::ContentEncoding) {
        if !encoding.eq_ignore_ascii_case(b"identity") {
            return Err(Rejection::new(415).header(HeaderName::AcceptEncoding, "identity"));
        }
    }
    let accept = if request.method == Method::Message {
        ACCEPT_MESSAGE
    } else {
        ACCEPT
    };
    let content_type = match request.headers.content_type() {
        Ok(Some(ct)) => ct,
        // RFC 3261 §7.4.1: a body without a Content-Type cannot be interpreted.
        Ok(None) => {
            return Err(Rejection::new(415)
                .reason("Missing Content-Type")
                .header(HeaderName::Accept, accept));
        }
        Err(e) => return Err(Rejection::new(400).reason(e.reason_phrase())),
    };
    let readable = if request.method == Method::Message {
        content_type.is("text", "plain")
            || content_type.is("text", "html")
            || content_type.is("message", "cpim")
            || content_type.is("application", "im-iscomposing+xml")
            || content_type.is("multipart", "mixed")
            || content_type.is("multipart", "alternative")
    } else {
        content_type.is("application", "sdp")
            || content_type.is("multipart", "mixed")
            || content_type.is("multipart", "alternative")
    };
    if readable {
        Ok(())
    } else {
        Err(Rejection::new(415).header(HeaderName::Accept, accept))
    }
}

/// RFC 3261 §21.4.7 (406): our answer to an INVITE carries SDP, so an Accept
/// header must admit application/sdp.
fn check_accept(request: &Request) -> Result<(), Rejection> {
    if request.method != Method::Invite {
        return Ok(());
    }
    if request.headers.count(&HeaderName::Accept) == 0 {
        return Ok(());
    }
    let mut any = false;
    for range in request.headers.values(&HeaderName::Accept) {
        any = true;
        let media = range.split(|b| *b == b';').next().unwrap_or_default();
        let media = String::from_utf8_lossy(media).trim().to_ascii_lowercase();
        if matches!(media.as_str(), "application/sdp" | "application/*" | "*/*") {
            return Ok(());
        }
    }
    // An empty Accept header (§20.1) means no body is acceptable; that is fine for a
    // response without one, so only a non-empty list that excludes SDP is refused.
    if !any {
        return Ok(());
    }
    Err(Rejection::new(406).header(HeaderName::Accept, ACCEPT))
}
