//! The user agent's vocabulary: session handles, what the application asks for
//! ([`Invite`], [`Reply`], [`Body`]) and what it is told ([`Event`], [`Termination`]).

use bytes::Bytes;
use sip_message::{HeaderName, Method, Request, Response};
use sip_transaction::{Flow, TimerConfig, TransactionKey};
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

/// A handle on one INVITE session (RFC 3261 §13-15), UAC or UAS.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SessionId(pub u64);

impl fmt::Display for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "s{}", self.0)
    }
}

/// Which side of the session a party is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// We sent the INVITE that made the session.
    Uac,
    /// We received it.
    Uas,
}

/// Who ended the session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Local,
    Remote,
}

/// Why a session ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum EndCause {
    /// BYE, sent or received.
    Bye,
    /// CANCEL before the answer (RFC 3261 §9).
    Cancelled,
    /// The INVITE got a final non-2xx response (sent by us as UAS, or received as UAC).
    Rejected { status: u16 },
    /// The 2xx was never acknowledged (RFC 3261 §13.3.1.4): BYE was sent.
    AckTimeout,
    /// The session timer expired without a refresh (RFC 4028 §10): BYE was sent.
    SessionExpired,
    /// A request in the dialog got 481 or 408, or timed out (RFC 3261 §12.2.1.2): BYE
    /// was sent.
    DialogFailed { status: u16 },
    /// The transport could not reach the peer.
    TransportError,
    /// A transaction of the session timed out (Timer B or H).
    Timeout,
}

/// How a session ended: by whom, why, and the Reason header (RFC 3326) if one came
/// with the BYE, CANCEL or final response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Termination {
    pub by: Side,
    pub cause: EndCause,
    pub reason: Option<Bytes>,
    /// The final response that refused our INVITE (`Rejected` by the remote side): its
    /// reason phrase, Contact (3xx) and headers.
    pub response: Option<Box<Response>>,
}

/// A message body with its type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Body {
    pub content_type: Bytes,
    pub data: Bytes,
}

impl Body {
    pub fn new(content_type: impl Into<Bytes>, data: impl Into<Bytes>) -> Body {
        Body {
            content_type: content_type.into(),
            data: data.into(),
        }
    }

    /// An `application/sdp` body.
    pub fn sdp(data: impl Into<Bytes>) -> Body {
        Body::new(Bytes::from_static(b"application/sdp"), data)
    }

    /// The body of a message, if it has one.
    pub fn of(headers: &sip_message::Headers, data: &Bytes) -> Option<Body> {
        if data.is_empty() {
            return None;
        }
        let content_type = headers
            .get(&HeaderName::ContentType)
            .cloned()
            .unwrap_or_else(|| Bytes::from_static(b"application/sdp"));
        Some(Body {
            content_type,
            data: data.clone(),
        })
    }
}

/// A response the application gives to a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub status: u16,
    pub reason: Option<String>,
    pub headers: Vec<(HeaderName, Bytes)>,
    pub body: Option<Body>,
    /// Send this 1xx reliably (RFC 3262) if the peer supports 100rel.
    pub reliable: bool,
}

impl Reply {
    pub fn new(status: u16) -> Reply {
        Reply {
            status,
            reason: None,
            headers: Vec::new(),
            body: None,
            reliable: false,
        }
    }

    pub fn with_body(mut self, body: Body) -> Reply {
        self.body = Some(body);
        self
    }

    pub fn with_header(mut self, name: HeaderName, value: impl Into<Bytes>) -> Reply {
        self.headers.push((name, value.into()));
        self
    }

    pub fn with_reason(mut self, reason: impl Into<String>) -> Reply {
        self.reason = Some(reason.into());
        self
    }

    pub fn reliable(mut self) -> Reply {
        self.reliable = true;
        self
    }
}

/// An INVITE the application places (UAC).
#[derive(Debug, Clone)]
pub struct Invite {
    /// Request-URI.
    pub uri: Bytes,
    /// From, without a tag (ours is added).
    pub from: Bytes,
    /// To, without a tag.
    pub to: Bytes,
    /// Where the INVITE goes (the next hop: a proxy, a trunk or the peer).
    pub flow: Flow,
    /// A pre-loaded route set (RFC 3261 §8.1.2), e.g. a trunk's outbound proxy.
    pub routes: Vec<Bytes>,
    /// Extra headers (custom headers, P-Asserted-Identity...).
    pub headers: Vec<(HeaderName, Bytes)>,
    /// The offer, if any.
    pub body: Option<Body>,
    /// Ask for 100rel (`Supported: 100rel`, or `Require: 100rel` when `true`).
    pub require_100rel: bool,
    /// The user part of our Contact.
    pub contact_user: String,
}

impl Invite {
    pub fn new(
        uri: impl Into<Bytes>,
        from: impl Into<Bytes>,
        to: impl Into<Bytes>,
        flow: Flow,
    ) -> Invite {
        Invite {
            uri: uri.into(),
            from: from.into(),
            to: to.into(),
            flow,
            routes: Vec::new(),
            headers: Vec::new(),
            body: None,
            require_100rel: false,
            contact_user: "tandem".into(),
        }
    }

    pub fn with_body(mut self, body: Body) -> Invite {
        self.body = Some(body);
        self
    }
}

/// What the user agent tells the application. Indications (`IncomingCall`,
/// `Modify`, `Request`) wait for an answer through
/// [`UserAgent::respond`](crate::UserAgent::respond).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// Input that was not processed (unparseable, a stray response...).
    Dropped { remote: SocketAddr, reason: String },
    /// A new INVITE outside any dialog: answer `tx` with 1xx, 2xx or a rejection.
    IncomingCall {
        session: SessionId,
        tx: TransactionKey,
        request: Request,
    },
    /// A new request the user agent does not handle itself (OPTIONS, MESSAGE, INFO,
    /// NOTIFY, REFER...), in a session or outside one: answer `tx`.
    Request {
        session: Option<SessionId>,
        tx: TransactionKey,
        request: Request,
    },
    /// The peer asks to change the session: a re-INVITE or UPDATE (RFC 3311), or a
    /// PRACK carrying a body (RFC 3262 §5). Answer `tx`; a 2xx carries the answer.
    Modify {
        session: SessionId,
        tx: TransactionKey,
        request: Request,
    },
    /// A provisional response to our INVITE (UAC). Several early dialogs may report
    /// (forking); the To tag tells them apart.
    Provisional {
        session: SessionId,
        response: Response,
    },
    /// The session is confirmed: as UAC the 2xx arrived (and was acknowledged), as UAS
    /// the ACK arrived. `body` is the 2xx's (UAC) or the ACK's (UAS) body.
    Established {
        session: SessionId,
        body: Option<Body>,
        /// As UAC, the 2xx itself (its headers go up to the application); `None` as UAS.
        response: Option<Box<Response>>,
    },
    /// Our re-INVITE or UPDATE ended with this final response (after any 491 retries).
    ModifyCompleted {
        session: SessionId,
        method: Method,
        response: Response,
    },
    /// The session timer was refreshed (RFC 4028), by either side.
    Refreshed { session: SessionId },
    /// A final response to a request sent with
    /// [`request`](crate::UserAgent::request) or
    /// [`send_request`](crate::UserAgent::send_request); `status` 408 for a timeout and
    /// 503 for a transport error have no `response`.
    Response {
        session: Option<SessionId>,
        tx: TransactionKey,
        status: u16,
        response: Option<Response>,
    },
    /// The session is over; its handle is no longer valid.
    Terminated {
        session: SessionId,
        termination: Termination,
    },
}

/// What the user agent needs.
#[derive(Debug, Clone)]
pub struct UserAgentConfig {
    pub timers: TimerConfig,
    /// Sent in `Server` and `User-Agent`.
    pub user_agent: String,
    /// Seeds tags, branches, Call-IDs and glare back-off (the core has no entropy).
    pub seed: u64,
    /// Written in Via and Contact instead of the socket's own address.
    pub advertised_address: Option<IpAddr>,
    /// RFC 4028 session timers.
    pub session_timer: crate::session_timer::SessionTimerConfig,
    /// Our credentials, by realm (`realm: None` answers any realm): a 401 or 407 to any
    /// request is answered with them (RFC 3261 §22.2).
    pub credentials: Vec<sip_auth::Credentials>,
}

impl Default for UserAgentConfig {
    fn default() -> Self {
        UserAgentConfig {
            timers: TimerConfig::default(),
            user_agent: concat!("Tandem/", env!("CARGO_PKG_VERSION")).into(),
            seed: 0,
            advertised_address: None,
            session_timer: crate::session_timer::SessionTimerConfig::default(),
            credentials: Vec::new(),
        }
    }
}

/// Counters and gauges.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UaStats {
    pub transactions: usize,
    pub client_invite: usize,
    pub client_non_invite: usize,
    pub server_invite: usize,
    pub server_non_invite: usize,
    /// Live sessions (any phase).
    pub sessions: usize,
    /// Deadlines the user agent holds (2xx retransmission, glare, PRACK, session
    /// timers...), stale ones included: bounded by the sessions, not the messages.
    pub timers: usize,
    pub requests_in: u64,
    pub responses_in: u64,
    /// Requests refused with 400/505 because they failed validation.
    pub rejected_invalid: u64,
    /// Messages dropped: unparseable, invalid or stray responses.
    pub dropped: u64,
    /// Messages re-sent: the transactions' (see `TransactionStats::retransmissions`),
    /// 2xx responses until their ACK (RFC 3261 §13.3.1.4) and ACKs for retransmitted
    /// 2xx responses (§13.2.2.4).
    pub retransmissions: u64,
}

/// Errors of the application-facing calls.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error("no such session {0}")]
    NoSuchSession(SessionId),
    #[error("no such server transaction {0}")]
    NoSuchTransaction(TransactionKey),
    #[error("session {session} cannot {action} now")]
    WrongState {
        session: SessionId,
        action: &'static str,
    },
    #[error("bad value: {0}")]
    BadValue(String),
    #[error(transparent)]
    Transaction(#[from] sip_transaction::Error),
}

/// How long a glare retry waits (RFC 3261 §14.1): the owner of the Call-ID (the UAC
/// of the dialog) waits 2.1 to 4 s, the other side 0 to 2 s, in units of 10 ms.
pub fn glare_backoff(role: Role, random: u64) -> Duration {
    match role {
        Role::Uac => Duration::from_millis(2100 + (random % 191) * 10),
        Role::Uas => Duration::from_millis((random % 201) * 10),
    }
}
