//! The user agent core (RFC 3261 §8, §12-15): it owns the transaction layer, the
//! dialogs and their INVITE sessions, and tells the application what happened.

use crate::dialog::{Dialog, DialogState};
use crate::ids::IdGenerator;
use crate::reliable::{
    self, PrackMatch, RAck, Receipt, ReliableAction, ReliableProvisionals, ReliableReceiver,
};
use crate::session_timer::{self, Negotiated, SessionTimer, SessionTimerAction};
use crate::types::*;
use bytes::Bytes;
use foldhash::{HashMap, HashMapExt, HashSet, HashSetExt};
use sip_auth::{Challenge, ChallengeKind, DigestClient};
use sip_message::{HeaderName, Host, Message, Method, Request, Response};
use sip_transaction::{
    Flow, RequestOutcome, ResponseOutcome, TransactionEvent, TransactionKey, TransactionLayer,
    Transmit,
};
use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};
use tracing::{debug, debug_span};

/// Methods we accept (RFC 3261 §20.5).
pub const ALLOW: &str =
    "INVITE, ACK, CANCEL, BYE, OPTIONS, MESSAGE, UPDATE, PRACK, INFO, REFER, NOTIFY, SUBSCRIBE";
/// Authenticated retries of one request (per Call-ID and method) before giving up.
const MAX_AUTH_RETRIES: u8 = 3;
/// Early dialogs kept per INVITE (forks); more are ignored.
const MAX_EARLY_DIALOGS: usize = 32;
/// Out-of-dialog digest states kept at most (one per Call-ID).
const MAX_AUTH_STATES: usize = 10_000;
/// Extensions we support (RFC 3261 §20.37): reliable provisionals (RFC 3262), session
/// timers (RFC 4028), and Replaces (RFC 3891), which the call layer honours.
pub const SUPPORTED: &str = "100rel, timer, replaces";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// UAC: INVITE sent, no 2xx yet.
    Calling,
    /// UAS: INVITE received, no final response yet.
    Incoming,
    /// UAS: 2xx sent, waiting for the ACK (§13.3.1.4).
    Answered,
    /// The dialog is confirmed.
    Confirmed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TxKind {
    /// The INVITE that made the session (client or server).
    Invite,
    Reinvite,
    Update,
    Prack,
    Bye,
    Cancel,
    /// A request of the application, or one we answer on its behalf.
    App,
}

#[derive(Debug, Clone, Copy)]
struct TxUse {
    session: Option<SessionId>,
    kind: TxKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum TimerKind {
    /// Retransmit our 2xx (§13.3.1.4).
    Retransmit,
    /// 64·T1 without an ACK.
    AckTimeout,
    /// Retry a re-INVITE/UPDATE after 491 (§14.1).
    Glare,
    /// No final response 64·T1 after our CANCEL (§9.1).
    CancelGuard,
    /// The reliable provisional machine's deadline (RFC 3262).
    Reliable,
    /// The session timer's deadline (RFC 4028).
    SessionTimer,
    /// 64·T1 after a 2xx was acknowledged: no retransmission of it can come any more,
    /// so the ACK kept to answer them is freed and the INVITE slimmed.
    Settle,
}

/// Our 2xx to an INVITE while it awaits its ACK.
#[derive(Debug)]
struct PendingOk {
    transmit: Transmit,
    cseq: u32,
    interval: Duration,
    next_at: Instant,
    deadline: Instant,
}

/// Our re-INVITE or UPDATE in flight.
#[derive(Debug, Clone)]
struct Outgoing {
    tx: TransactionKey,
    method: Method,
    body: Option<Body>,
    /// Sent by the session timer rather than the application.
    refresh: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cancel {
    None,
    /// Asked for before any provisional arrived (§9.1: wait for one).
    Pending,
    Sent,
}

#[derive(Debug)]
struct Session {
    role: Role,
    phase: Phase,
    call_id: Bytes,
    local_tag: Bytes,
    /// The flow the session's INVITE went or came on.
    flow: Flow,
    invite_tx: TransactionKey,
    /// UAC: our INVITE. UAS: theirs (responses are built from it).
    invite: Request,
    /// The dialog (UAS from the start; UAC from the first 2xx).
    dialog: Option<Dialog>,
    /// UAC: early dialogs by remote tag, with their 100rel receivers (forking).
    early: Vec<(Dialog, ReliableReceiver)>,
    cancel: Cancel,
    cancel_reason: Option<Bytes>,
    /// Boxed, as `ack`: there for 64·T1 at most, and 300 bytes inline.
    ok: Option<Box<PendingOk>>,
    /// UAC: the ACK for the confirmed 2xx of CSeq n, re-sent on a retransmitted 2xx,
    /// until `settle_at`.
    ack: Option<Box<(u32, Transmit)>>,
    /// When the last 2xx's retransmissions are over ([`TimerKind::Settle`]).
    settle_at: Option<Instant>,
    /// The INVITE was cut down to what a confirmed session still reads.
    slim: bool,
    /// Boxed, as `glare` and `reliable`: only some calls have one, only for a while, and
    /// inline they made every session 750 bytes larger.
    ours: Option<Box<Outgoing>>,
    /// Boxed, as `timer` and `local_body`: what a session holds only at times, each
    /// 50 to 80 bytes inline.
    theirs: Option<Box<TransactionKey>>,
    glare: Option<Box<(Instant, Outgoing)>>,
    cancel_guard: Option<Instant>,
    reliable: Option<Box<ReliableProvisionals>>,
    timer: Option<Box<SessionTimer>>,
    min_se_floor: Option<Duration>,
    local_body: Option<Box<Body>>,
    peer_allows_update: bool,
    contact: Bytes,
    /// UAC: a provisional response arrived (CANCEL may be sent, §9.1).
    provisional_seen: bool,
    /// The deadlines in the timer heap for the reliable-provisional machine and the
    /// session timer: an entry with another instant is stale and skipped, so each
    /// machine has one live entry however often it is restarted.
    reliable_at: Option<Instant>,
    timer_at: Option<Instant>,
    /// The application hung up while our 2xx awaited its ACK: BYE once it comes
    /// (RFC 3261 §15: not before).
    hangup_after_ack: Option<Option<Bytes>>,
    /// Headers the application asked to send with our BYE.
    bye_headers: Vec<(HeaderName, Bytes)>,
}

/// The sans-IO user agent: transactions, dialogs and INVITE sessions.
#[derive(Debug)]
pub struct UserAgent {
    config: UserAgentConfig,
    user_agent: Bytes,
    transactions: TransactionLayer,
    /// Boxed: a `Session` is over 2 KB, moved out and back in on most events, and a
    /// table growing by doubling would keep up to twice the live ones' worth inline.
    sessions: HashMap<SessionId, Box<Session>>,
    /// (Call-ID, local tag) → session: our tags are unique, so this finds every dialog
    /// of a session, forks included (RFC 3261 §12.2.2 checks the remote tag after).
    by_dialog: HashMap<(Bytes, Bytes), SessionId>,
    txs: HashMap<TransactionKey, TxUse>,
    /// Requests of server transactions the application (or a session) answers later.
    pending_requests: HashMap<TransactionKey, Request>,
    /// Our requests of live client transactions, to re-send with credentials.
    sent: HashMap<TransactionKey, (Request, Flow)>,
    /// Authenticated retries per (Call-ID, method): a server that keeps challenging
    /// (a new nonce or realm each time) is given up on after [`MAX_AUTH_RETRIES`].
    auth_attempts: HashMap<(Bytes, Method), u8>,
    /// A request re-sent with credentials → the transaction the application knows it
    /// by: its final response is reported under the original key.
    aliases: HashMap<TransactionKey, TransactionKey>,
    /// Digest state (RFC 3261 §22) per Call-ID: nonces to reuse, failures to stop at.
    auth: HashMap<Bytes, DigestClient>,
    /// §8.2.2.2: live out-of-dialog server transactions by From tag, Call-ID, CSeq.
    merge: HashMap<(Bytes, Bytes, u32, Method), TransactionKey>,
    merge_by_key: HashMap<TransactionKey, (Bytes, Bytes, u32, Method)>,
    /// Dialogs of other usages the application keeps itself (RFC 5057: a subscription
    /// of RFC 6665), by (Call-ID, local tag): requests in them reach it as
    /// [`Event::Request`] without a session, instead of 481.
    usages: HashSet<(Bytes, Bytes)>,
    timers: BinaryHeap<Reverse<(Instant, TimerKind, SessionId)>>,
    ids: IdGenerator,
    next_session: u64,
    transmits: VecDeque<Transmit>,
    events: VecDeque<Event>,
    stats: UaStats,
}

impl UserAgent {
    pub fn new(config: UserAgentConfig) -> UserAgent {
        UserAgent {
            user_agent: Bytes::from(config.user_agent.clone()),
            transactions: TransactionLayer::new(config.timers),
            sessions: HashMap::new(),
            by_dialog: HashMap::new(),
            txs: HashMap::new(),
            pending_requests: HashMap::new(),
            sent: HashMap::new(),
            aliases: HashMap::new(),
            auth: HashMap::new(),
            auth_attempts: HashMap::new(),
            merge: HashMap::new(),
            merge_by_key: HashMap::new(),
            usages: HashSet::new(),
            timers: BinaryHeap::new(),
            ids: IdGenerator::new(config.seed),
            next_session: 1,
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            stats: UaStats::default(),
            config,
        }
    }

    pub fn config(&self) -> &UserAgentConfig {
        &self.config
    }

    /// Identifiers for the application (tags, SDP session ids), from the same seeded
    /// generator.
    pub fn ids(&mut self) -> &mut IdGenerator {
        &mut self.ids
    }

    // ---- sans-IO verbs

    /// A datagram, or one message framed from a stream, arrived on `flow`.
    pub fn handle_message(&mut self, now: Instant, data: Bytes, flow: Flow) {
        match Message::parse(data) {
            Ok(Message::Request(request)) => self.on_request(now, request, flow),
            Ok(Message::Response(response)) => self.on_response(now, response, flow),
            Err(error) => self.drop_input(flow.remote, &error.reason_phrase()),
        }
        self.pump(now);
        self.compact_timers();
        self.shrink_tables();
    }

    /// The time asked for by [`poll_timeout`](Self::poll_timeout) has come.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.transactions.handle_timeout(now);
        self.pump(now);
        while let Some(Reverse((at, _, _))) = self.timers.peek() {
            if *at > now {
                break;
            }
            let Some(Reverse((at, kind, id))) = self.timers.pop() else {
                break;
            };
            self.on_timer(now, at, kind, id);
            self.pump(now);
        }
        self.compact_timers();
        self.shrink_tables();
    }

    /// The transport could not deliver to `flow` over a connection: the sessions on it
    /// end. A datagram send error is transient (RFC 3261 §17.1.4).
    pub fn handle_transport_error(&mut self, now: Instant, flow: Flow) {
        if !flow.transport.is_reliable() {
            return;
        }
        let failed: Vec<SessionId> = self
            .sessions
            .iter()
            .filter(|(_, s)| s.flow.remote == flow.remote && s.flow.transport == flow.transport)
            .map(|(id, _)| *id)
            .collect();
        for id in failed {
            if let Some(session) = self.sessions.get(&id) {
                let key = session.invite_tx.clone();
                let _ = self.transactions.handle_transport_error(now, &key);
            }
            self.end(now, id, Side::Local, EndCause::TransportError, None);
        }
        self.pump(now);
    }

    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    pub fn poll_timeout(&mut self) -> Option<Instant> {
        let ours = self.timers.peek().map(|Reverse((at, _, _))| *at);
        match (self.transactions.poll_timeout(), ours) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Our non-INVITE requests (a BYE, an un-REGISTER...) still waiting for their final
    /// response; see [`TransactionLayer::requests_awaiting_answer`].
    pub fn requests_awaiting_answer(&self) -> usize {
        self.transactions.requests_awaiting_answer()
    }

    pub fn stats(&self) -> UaStats {
        let t = self.transactions.stats();
        UaStats {
            transactions: t.total(),
            client_invite: t.client_invite,
            client_non_invite: t.client_non_invite,
            server_invite: t.server_invite,
            server_non_invite: t.server_non_invite,
            sessions: self.sessions.len(),
            timers: self.timers.len(),
            retransmissions: self.stats.retransmissions + t.retransmissions,
            ..self.stats
        }
    }

    // ---- application commands

    /// Places a call (UAC): sends the INVITE and returns the session's handle.
    pub fn invite(&mut self, now: Instant, invite: Invite) -> Result<SessionId, Error> {
        let local_tag = Bytes::from(self.ids.tag());
        let call_id = Bytes::from(call_id_text(self.ids.next_u64()));
        let mut request = Request::new(
            Method::Invite,
            &sip_message::Uri::Other {
                scheme: Bytes::new(),
                rest: Bytes::new(),
            },
        );
        request.uri = invite.uri.clone();
        let via = self.via(&invite.flow);
        request.headers.push(HeaderName::Via, via);
        request.headers.push(HeaderName::MaxForwards, "70");
        for route in &invite.routes {
            request.headers.push(HeaderName::Route, route.clone());
        }
        let mut from = invite.from.to_vec();
        from.extend_from_slice(b";tag=");
        from.extend_from_slice(&local_tag);
        request.headers.push(HeaderName::From, from);
        request.headers.push(HeaderName::To, invite.to.clone());
        request.headers.push(HeaderName::CallId, call_id.clone());
        request.headers.push(HeaderName::CSeq, "1 INVITE");
        let contact = self.contact(&invite.contact_user, &invite.flow);
        request.headers.push(HeaderName::Contact, contact.clone());
        request.headers.push(HeaderName::Allow, ALLOW);
        request.headers.push(HeaderName::Supported, SUPPORTED);
        if invite.require_100rel {
            request.headers.push(HeaderName::Require, "100rel");
        }
        request
            .headers
            .push(HeaderName::UserAgent, self.user_agent.clone());
        session_timer::add_request_headers(
            &self.config.session_timer,
            &mut request.headers,
            None,
            None,
        );
        for (name, value) in &invite.headers {
            request.headers.push(name.clone(), value.clone());
        }
        set_body(
            &mut request.headers,
            &mut request.body,
            invite.body.as_ref(),
        );
        let key = self
            .transactions
            .send_request(now, request.clone(), invite.flow)?;
        let id = self.new_session_id();
        self.txs.insert(
            key.clone(),
            TxUse {
                session: Some(id),
                kind: TxKind::Invite,
            },
        );
        self.by_dialog
            .insert((call_id.clone(), local_tag.clone()), id);
        let mut session = Box::new(Session::new(
            Role::Uac,
            call_id,
            local_tag,
            invite.flow,
            key,
            request,
            contact,
        ));
        session.local_body = invite.body.map(Box::new);
        self.sessions.insert(id, session);
        self.pump(now);
        Ok(id)
    }

    /// Answers a server transaction the user agent reported: the INVITE of an
    /// [`Event::IncomingCall`], a re-INVITE/UPDATE/PRACK of an [`Event::Modify`], or
    /// the request of an [`Event::Request`].
    pub fn respond(
        &mut self,
        now: Instant,
        tx: &TransactionKey,
        reply: Reply,
    ) -> Result<(), Error> {
        let Some(usage) = self.txs.get(tx).copied() else {
            return Err(Error::NoSuchTransaction(tx.clone()));
        };
        let result = match (usage.session, usage.kind) {
            (Some(id), TxKind::Invite) => self.respond_invite(now, id, reply),
            (Some(id), TxKind::Reinvite | TxKind::Update | TxKind::Prack) => {
                self.respond_modify(now, id, tx, usage.kind, reply)
            }
            (session, _) => self.respond_plain(now, session, tx, reply, None),
        };
        self.pump(now);
        result
    }

    /// [`respond`](Self::respond) with a final response to a request outside a dialog
    /// that makes a dialog the application keeps itself (a SUBSCRIBE, RFC 6665
    /// §4.2.1): the response's To tag is `to_tag`, the application's own, so it knows
    /// the dialog's identifier (see [`add_dialog_usage`](Self::add_dialog_usage)).
    pub fn respond_with_tag(
        &mut self,
        now: Instant,
        tx: &TransactionKey,
        reply: Reply,
        to_tag: Bytes,
    ) -> Result<(), Error> {
        let Some(usage) = self.txs.get(tx).copied() else {
            return Err(Error::NoSuchTransaction(tx.clone()));
        };
        let result = match usage.kind {
            TxKind::App => self.respond_plain(now, usage.session, tx, reply, Some(to_tag)),
            _ => self.respond(now, tx, reply),
        };
        self.pump(now);
        result
    }

    /// Sends a re-INVITE (RFC 3261 §14.1) with `body` as the new offer (or our last
    /// description when `None`).
    pub fn reinvite(
        &mut self,
        now: Instant,
        id: SessionId,
        body: Option<Body>,
    ) -> Result<(), Error> {
        let result = self.modify(now, id, Method::Invite, body, false);
        self.pump(now);
        result
    }

    /// Sends an UPDATE (RFC 3311) with `body` as the new offer, or without a body.
    pub fn update(&mut self, now: Instant, id: SessionId, body: Option<Body>) -> Result<(), Error> {
        let result = self.modify(now, id, Method::Update, body, false);
        self.pump(now);
        result
    }

    /// Sends another request in the session's dialog (INFO, MESSAGE, REFER, NOTIFY,
    /// OPTIONS); its final response comes as [`Event::Response`].
    pub fn request(
        &mut self,
        now: Instant,
        id: SessionId,
        method: Method,
        headers: Vec<(HeaderName, Bytes)>,
        body: Option<Body>,
    ) -> Result<TransactionKey, Error> {
        let key = self.send_in_dialog(now, id, method, headers, body.as_ref(), TxKind::App)?;
        self.pump(now);
        Ok(key)
    }

    /// Ends a session the right way for its state: BYE when confirmed or answered,
    /// CANCEL while our INVITE is pending (§9.1), 480 while theirs is unanswered.
    /// `reason` is sent as the Reason header (RFC 3326), e.g.
    /// `SIP;cause=200;text="Call completed elsewhere"`.
    pub fn hangup(
        &mut self,
        now: Instant,
        id: SessionId,
        reason: Option<&str>,
    ) -> Result<(), Error> {
        self.hangup_with_headers(now, id, reason, Vec::new())
    }

    /// [`hangup`](Self::hangup), with `headers` added to the BYE (or to the 480 while
    /// the peer's INVITE is unanswered; a CANCEL carries only Reason, RFC 3261 §9.1).
    pub fn hangup_with_headers(
        &mut self,
        now: Instant,
        id: SessionId,
        reason: Option<&str>,
        headers: Vec<(HeaderName, Bytes)>,
    ) -> Result<(), Error> {
        let session = self.sessions.get_mut(&id).ok_or(Error::NoSuchSession(id))?;
        session.bye_headers = headers;
        let reason = reason.map(|r| Bytes::copy_from_slice(r.as_bytes()));
        match session.phase {
            Phase::Calling => {
                if session.cancel != Cancel::None {
                    return Ok(());
                }
                session.cancel_reason = reason;
                if session.early.is_empty() && !session_had_provisional(session) {
                    session.cancel = Cancel::Pending;
                } else {
                    self.send_cancel(now, id);
                }
            }
            Phase::Incoming => {
                let mut reply = Reply::new(480);
                if let Some(reason) = reason {
                    reply.headers.push((HeaderName::Reason, reason));
                }
                reply.headers.append(&mut session.bye_headers);
                return self.respond_invite(now, id, reply).map(|()| self.pump(now));
            }
            // §15: not before the ACK; it (or the ACK timeout) triggers the BYE.
            Phase::Answered => session.hangup_after_ack = Some(reason),
            Phase::Confirmed => {
                self.send_bye(now, id, reason);
                self.end(now, id, Side::Local, EndCause::Bye, None);
            }
        }
        self.pump(now);
        Ok(())
    }

    /// A request outside any dialog (OPTIONS, MESSAGE, REGISTER...): its final
    /// response comes as [`Event::Response`]. Build it with [`new_request`](Self::new_request).
    pub fn send_request(
        &mut self,
        now: Instant,
        request: Request,
        flow: Flow,
    ) -> Result<TransactionKey, Error> {
        let mut request = request;
        // RFC 3261 §22.3: a request on a Call-ID whose realm challenged us before (a
        // REGISTER refresh, the un-REGISTER) carries credentials at once, with the
        // cached nonce and the next nonce count, saving a round trip.
        let call_id = request.headers.call_id().unwrap_or_default().as_bytes();
        if let Some(client) = self.auth.get_mut(call_id)
            && request.headers.get(&HeaderName::Authorization).is_none()
            && request
                .headers
                .get(&HeaderName::ProxyAuthorization)
                .is_none()
        {
            let cnonce = format!("{:016x}", self.ids.next_u64());
            let uri = String::from_utf8_lossy(&request.uri).into_owned();
            for (kind, value) in
                client.authorize(request.method.as_str(), &uri, &request.body, &cnonce)
            {
                request.headers.push(kind.authorization_header(), value);
            }
        }
        let key = self.transactions.send_request(now, request.clone(), flow)?;
        self.txs.insert(
            key.clone(),
            TxUse {
                session: None,
                kind: TxKind::App,
            },
        );
        self.sent.insert(key.clone(), (request, flow));
        self.pump(now);
        Ok(key)
    }

    /// A request outside any dialog with Via, Max-Forwards, From (with a new tag), To,
    /// a new Call-ID, CSeq 1 and User-Agent (RFC 3261 §8.1.1).
    pub fn new_request(
        &mut self,
        method: Method,
        uri: &[u8],
        from: &[u8],
        to: &[u8],
        flow: &Flow,
    ) -> Request {
        let mut request = Request::with_raw_uri(method.clone(), Bytes::copy_from_slice(uri));
        request.headers.push(HeaderName::Via, self.via(flow));
        request.headers.push(HeaderName::MaxForwards, "70");
        let mut from = from.to_vec();
        from.extend_from_slice(b";tag=");
        from.extend_from_slice(self.ids.tag().as_bytes());
        request.headers.push(HeaderName::From, from);
        request
            .headers
            .push(HeaderName::To, Bytes::copy_from_slice(to));
        let mut call_id = Vec::with_capacity(23);
        sip_message::ascii::push_hex64(&mut call_id, self.ids.next_u64());
        call_id.extend_from_slice(b"@tandem");
        request.headers.push(HeaderName::CallId, call_id);
        let mut cseq = Vec::with_capacity(2 + method.as_str().len());
        cseq.extend_from_slice(b"1 ");
        cseq.extend_from_slice(method.as_str().as_bytes());
        request.headers.push(HeaderName::CSeq, cseq);
        request
            .headers
            .push(HeaderName::UserAgent, self.user_agent.clone());
        request
    }

    /// A request in a dialog the application keeps itself (see
    /// [`add_dialog_usage`](Self::add_dialog_usage)), built by `dialog` (RFC 3261
    /// §12.2.1.1: its route set, remote target and next CSeq) with a new Via for `flow`,
    /// a Contact with `contact_user` and our User-Agent. Send it with
    /// [`send_request`](Self::send_request).
    pub fn new_in_dialog_request(
        &mut self,
        dialog: &mut Dialog,
        method: Method,
        contact_user: &str,
        flow: &Flow,
    ) -> Request {
        let via = self.via(flow);
        let seq = dialog.next_cseq();
        let mut request = dialog.request(method, seq, via);
        request
            .headers
            .push(HeaderName::Contact, self.contact(contact_user, flow));
        request
            .headers
            .push(HeaderName::UserAgent, self.user_agent.clone());
        request
    }

    /// The application keeps a dialog of its own (RFC 5057 dialog usages: a
    /// subscription, RFC 6665) identified by `call_id` and our `local_tag`: requests in
    /// it are reported as [`Event::Request`] without a session (the application checks
    /// their CSeq) instead of being refused with 481.
    pub fn add_dialog_usage(&mut self, call_id: Bytes, local_tag: Bytes) {
        self.usages.insert((call_id, local_tag));
    }

    /// The application's dialog is over: requests in it get 481 again.
    pub fn remove_dialog_usage(&mut self, call_id: &Bytes, local_tag: &Bytes) {
        self.usages.remove(&(call_id.clone(), local_tag.clone()));
    }

    /// The role we play in a session, if it is alive.
    pub fn role(&self, id: SessionId) -> Option<Role> {
        self.sessions.get(&id).map(|s| s.role)
    }

    /// The negotiated session timer of a session, if one runs.
    pub fn session_timer(&self, id: SessionId) -> Option<Negotiated> {
        self.sessions
            .get(&id)
            .and_then(|s| s.timer.as_deref().map(SessionTimer::negotiated))
    }

    /// The flow a session's INVITE came or went on.
    pub fn flow(&self, id: SessionId) -> Option<Flow> {
        self.sessions.get(&id).map(|s| s.flow)
    }

    /// The flow of a live transaction: where a request came from (server) or goes to
    /// (client).
    pub fn transaction_flow(&self, tx: &TransactionKey) -> Option<Flow> {
        self.transactions.destination(tx)
    }

    /// Replaces the credentials used to answer 401/407 challenges (a reload: a changed
    /// password must be the one used, not the first one ever added for its realm).
    pub fn set_credentials(&mut self, credentials: Vec<sip_auth::Credentials>) {
        self.config.credentials = credentials;
    }

    /// Adds credentials used to answer 401/407 challenges.
    pub fn add_credentials(&mut self, credentials: sip_auth::Credentials) {
        self.config.credentials.push(credentials);
    }

    /// The dialogs of a session: its dialog (the UAS's from the start, the UAC's once a
    /// 2xx came), then a UAC's early dialogs (RFC 3261 §12.1.2, forks). For matching a
    /// Replaces header (RFC 3891 §3) and naming a dialog in a Refer-To.
    pub fn dialogs(&self, id: SessionId) -> impl Iterator<Item = &Dialog> + '_ {
        let session = self.sessions.get(&id);
        session.and_then(|s| s.dialog.as_ref()).into_iter().chain(
            session
                .into_iter()
                .flat_map(|s| s.early.iter().map(|(d, _)| d)),
        )
    }

    /// The Call-ID of a session.
    pub fn call_id(&self, id: SessionId) -> Option<&Bytes> {
        self.sessions.get(&id).map(|s| &s.call_id)
    }

    /// The INVITE that made a session: the peer's (UAS) or ours (UAC). A B2BUA reads
    /// the headers it passes on from it.
    pub fn invite_request(&self, id: SessionId) -> Option<&Request> {
        self.sessions.get(&id).map(|s| &s.invite)
    }

    /// Whether a re-INVITE or UPDATE of ours is in flight or waits for its glare
    /// retry: another cannot be sent now.
    pub fn modify_pending(&self, id: SessionId) -> bool {
        self.sessions
            .get(&id)
            .is_some_and(|s| s.ours.is_some() || s.glare.is_some())
    }

    /// Whether our re-INVITE or UPDATE got 491 and waits for its retry (RFC 3261
    /// §14.1). Meanwhile our offer is not pending: a peer's offer is not glare (§14.2)
    /// and reaches the application as [`Event::Modify`].
    pub fn glare_pending(&self, id: SessionId) -> bool {
        self.sessions.get(&id).is_some_and(|s| s.glare.is_some())
    }

    /// Replaces the offer that our re-INVITE or UPDATE waiting for its glare retry
    /// will carry. §14.1 retries "if it still desires for that session modification to
    /// take place": when the peer's own offer was answered in the meantime, the old
    /// offer no longer fits the session, and the application offers afresh. Returns
    /// whether a retry was waiting.
    pub fn set_retry_offer(&mut self, id: SessionId, body: Body) -> bool {
        match self
            .sessions
            .get_mut(&id)
            .and_then(|s| s.glare.as_deref_mut())
        {
            Some((_, outgoing)) => {
                outgoing.body = Some(body);
                true
            }
            None => false,
        }
    }

    // ---- input

    fn drop_input(&mut self, remote: SocketAddr, reason: &str) {
        self.stats.dropped += 1;
        self.events.push_back(Event::Dropped {
            remote,
            reason: reason.to_owned(),
        });
    }

    fn on_request(&mut self, now: Instant, mut request: Request, flow: Flow) {
        self.stats.requests_in += 1;
        if let Err(error) = request.validate() {
            if request.method == Method::Ack {
                // An ACK is never answered (§17.2.3); a bad one is dropped.
                return self.drop_input(flow.remote, &error.reason_phrase());
            }
            self.stats.rejected_invalid += 1;
            debug!(remote = %flow.remote, reason = %error.reason_phrase(), "invalid request");
            return self.stateless(&request, flow, error.status_code(), &error.reason_phrase());
        }
        stamp_via(&mut request, &flow);
        let span = debug_span!(
            "request",
            method = %request.method,
            call_id = request.headers.call_id().unwrap_or_default(),
        );
        let _guard = span.enter();
        match self.transactions.handle_request(now, request, flow) {
            RequestOutcome::New { key, request } => self.on_new_request(now, key, request),
            RequestOutcome::Ack(ack) => self.on_ack(now, &ack),
            RequestOutcome::Cancel {
                key,
                request,
                invite,
            } => self.on_cancel(now, key, &request, invite),
            RequestOutcome::Invalid { request, error } if request.method != Method::Ack => {
                self.stats.rejected_invalid += 1;
                let reason = error.to_string();
                self.stateless(&request, flow, 400, &reason);
            }
            _ => {}
        }
    }

    /// A response sent without a transaction (to a request that could not have one).
    fn stateless(&mut self, request: &Request, flow: Flow, status: u16, reason: &str) {
        let tag = self.ids.tag();
        let mut response = self.response(request, status, Some(tag.as_bytes()));
        response.reason = Bytes::from(reason.replace(['\r', '\n'], " "));
        self.transmits.push_back(Transmit {
            flow,
            payload: response.to_bytes(),
        });
    }

    fn on_response(&mut self, now: Instant, response: Response, flow: Flow) {
        self.stats.responses_in += 1;
        match self.transactions.handle_response(now, response, flow) {
            ResponseOutcome::Stray(response) if !self.on_stray_2xx(now, &response) => {
                self.drop_input(flow.remote, "response matches no transaction");
            }
            ResponseOutcome::Invalid { error, .. } => {
                self.drop_input(flow.remote, &error.to_string());
            }
            _ => {}
        }
    }

    fn on_new_request(&mut self, now: Instant, key: TransactionKey, request: Request) {
        let to_tag = request
            .headers
            .to()
            .ok()
            .and_then(|to| to.tag().map(Bytes::copy_from_slice));
        if let Some(tag) = to_tag {
            return self.in_dialog(now, key, request, tag);
        }
        if self.is_merged(&key, &request) {
            let response = self
                .response(&request, 482, None)
                .with_reason("Loop Detected (merged request)");
            return self.send_response(now, &key, response);
        }
        match request.method {
            Method::Invite => self.on_invite(now, key, request),
            // These exist only inside a dialog (RFC 3261 §15.1.2, RFC 3262, RFC 3311).
            Method::Bye | Method::Prack | Method::Update => {
                let response = self.response(&request, 481, None);
                self.send_response(now, &key, response);
            }
            _ => {
                self.indicate(key, None, TxKind::App, request);
            }
        }
    }

    fn on_invite(&mut self, now: Instant, key: TransactionKey, request: Request) {
        let local_tag = Bytes::from(self.ids.tag());
        // RFC 4028 §9: a Session-Expires below our Min-SE gets 422 (a malformed one 400) on
        // arrival, like any extension check (RFC 3261 §8.2.2.3), before the application
        // rings anyone for a call it could never answer.
        if let Err(reject) = session_timer::check_request(&self.config.session_timer, &request) {
            let mut response = self.response(&request, reject.status_code(), Some(&local_tag));
            reject.add_headers(&mut response.headers);
            return self.send_response(now, &key, response);
        }
        let Some(mut dialog) = Dialog::uas(&request, &local_tag) else {
            let response = self.response(&request, 400, None);
            return self.send_response(now, &key, response);
        };
        dialog.state = DialogState::Early;
        let id = self.new_session_id();
        let call_id = dialog.id.call_id.clone();
        let user = request
            .uri_ref()
            .ok()
            .and_then(|u| u.as_sip().and_then(|s| s.user.clone()))
            .map(|u| String::from_utf8_lossy(&u).into_owned())
            .unwrap_or_else(|| "tandem".into());
        let contact = self.contact(&user, &key_flow(&self.transactions, &key));
        let peer_allows_update = allows(&request.headers, "UPDATE");
        let flow = key_flow(&self.transactions, &key);
        self.by_dialog
            .insert((call_id.clone(), local_tag.clone()), id);
        self.txs.insert(
            key.clone(),
            TxUse {
                session: Some(id),
                kind: TxKind::Invite,
            },
        );
        let mut session = Box::new(Session::new(
            Role::Uas,
            call_id,
            local_tag,
            flow,
            key.clone(),
            request.clone(),
            contact,
        ));
        session.dialog = Some(dialog);
        session.peer_allows_update = peer_allows_update;
        self.sessions.insert(id, session);
        self.events.push_back(Event::IncomingCall {
            session: id,
            tx: key,
            request,
        });
    }

    /// RFC 3261 §12.2.2: a request with a To tag.
    fn in_dialog(&mut self, now: Instant, key: TransactionKey, request: Request, to_tag: Bytes) {
        let call_id =
            Bytes::copy_from_slice(request.headers.call_id().unwrap_or_default().as_bytes());
        let from_tag = request
            .headers
            .from()
            .ok()
            .and_then(|f| f.tag().map(Bytes::copy_from_slice))
            .unwrap_or_default();
        let dialog_key = (call_id, to_tag);
        let found = self.by_dialog.get(&dialog_key).copied();
        let Some(id) = found.filter(|id| {
            self.sessions
                .get(id)
                .is_some_and(|s| s.dialog_with(&from_tag).is_some())
        }) else {
            if found.is_none() && self.usages.contains(&dialog_key) {
                // A dialog the application keeps: it checks the CSeq and answers.
                return self.indicate(key, None, TxKind::App, request);
            }
            let response = self.response(&request, 481, None);
            return self.send_response(now, &key, response);
        };
        // §8.2.2.3: every option tag in Require must be one we support.
        let unsupported: Vec<String> = request
            .headers
            .tokens(&HeaderName::Require)
            .filter(|tag| {
                !SUPPORTED
                    .split(", ")
                    .any(|s| s.as_bytes().eq_ignore_ascii_case(tag))
            })
            .map(|tag| String::from_utf8_lossy(&tag).into_owned())
            .collect();
        if !unsupported.is_empty() {
            let response = self
                .response(&request, 420, None)
                .with_header(HeaderName::Unsupported, unsupported.join(", "));
            return self.send_response(now, &key, response);
        }
        let seq = request.headers.cseq().map(|c| c.seq).unwrap_or_default();
        let in_order = self
            .sessions
            .get_mut(&id)
            .and_then(|s| s.dialog_with_mut(&from_tag))
            .is_some_and(|d| d.accept_remote_cseq(seq));
        if !in_order {
            let response = self
                .response(&request, 500, None)
                .with_reason("CSeq Out of Order");
            return self.send_response(now, &key, response);
        }
        match request.method {
            Method::Bye => self.on_bye(now, id, key, &request),
            Method::Invite => self.on_reinvite(now, id, key, request),
            Method::Update => self.on_update(now, id, key, request),
            Method::Prack => self.on_prack(now, id, key, request),
            _ => {
                self.indicate(key, Some(id), TxKind::App, request);
            }
        }
    }

    fn on_bye(&mut self, now: Instant, id: SessionId, key: TransactionKey, request: &Request) {
        let response = self.response(request, 200, None);
        self.send_response(now, &key, response);
        let reason = request.headers.get(&HeaderName::Reason).cloned();
        // A BYE in an early dialog ends the INVITE too (§15.1.2): 487.
        if let Some(session) = self.sessions.get(&id)
            && session.phase == Phase::Incoming
        {
            let invite_tx = session.invite_tx.clone();
            let response = self.session_response(id, 487);
            if let Some(response) = response {
                self.send_response(now, &invite_tx, response);
            }
        }
        self.end(now, id, Side::Remote, EndCause::Bye, reason);
    }

    fn on_reinvite(&mut self, now: Instant, id: SessionId, key: TransactionKey, request: Request) {
        let Some(session) = self.sessions.get(&id) else {
            return;
        };
        // §14.2: a re-INVITE while our own offer is pending is glare (491); one while
        // theirs or our 2xx is unfinished gets 500 with Retry-After.
        let offer_pending = session
            .ours
            .as_ref()
            .is_some_and(|o| o.method == Method::Invite || o.body.is_some());
        let busy =
            session.theirs.is_some() || session.ok.is_some() || session.phase != Phase::Confirmed;
        if offer_pending {
            let response = self.response(&request, 491, None);
            return self.send_response(now, &key, response);
        }
        if busy {
            let retry = (self.ids.next_u64() % 10).to_string();
            let response = self
                .response(&request, 500, None)
                .with_header(HeaderName::RetryAfter, retry);
            return self.send_response(now, &key, response);
        }
        if let Err(reject) = session_timer::check_request(&self.config.session_timer, &request) {
            let mut response = self.response(&request, reject.status_code(), None);
            reject.add_headers(&mut response.headers);
            return self.send_response(now, &key, response);
        }
        self.accept_modify(id, key, request, TxKind::Reinvite);
    }

    fn on_update(&mut self, now: Instant, id: SessionId, key: TransactionKey, request: Request) {
        let Some(session) = self.sessions.get(&id) else {
            return;
        };
        // RFC 3311 §5.2: an offer while ours is pending is glare (491); while theirs is,
        // 500 with Retry-After.
        let offer_pending = session.ours.as_ref().is_some_and(|o| o.body.is_some());
        if offer_pending && !request.body.is_empty() {
            let response = self.response(&request, 491, None);
            return self.send_response(now, &key, response);
        }
        if session.theirs.is_some() {
            let retry = (self.ids.next_u64() % 10).to_string();
            let response = self
                .response(&request, 500, None)
                .with_header(HeaderName::RetryAfter, retry);
            return self.send_response(now, &key, response);
        }
        if let Err(reject) = session_timer::check_request(&self.config.session_timer, &request) {
            let mut response = self.response(&request, reject.status_code(), None);
            reject.add_headers(&mut response.headers);
            return self.send_response(now, &key, response);
        }
        if request.body.is_empty() {
            // No offer: a session refresh or a target refresh (RFC 4028 §7.4, RFC 3311
            // §5.2). Nothing for the application to decide; it hears `Refreshed`.
            if let Some(session) = self.sessions.get_mut(&id)
                && let Some(dialog) = session.dialog.as_mut()
            {
                dialog.refresh_target(&request.headers);
            }
            self.txs.insert(
                key.clone(),
                TxUse {
                    session: Some(id),
                    kind: TxKind::Update,
                },
            );
            self.pending_requests.insert(key.clone(), request);
            if let Err(error) = self.respond_modify(now, id, &key, TxKind::Update, Reply::new(200))
            {
                debug!(%error, "UPDATE not answered");
            }
            return;
        }
        self.accept_modify(id, key, request, TxKind::Update);
    }

    fn accept_modify(
        &mut self,
        id: SessionId,
        key: TransactionKey,
        request: Request,
        kind: TxKind,
    ) {
        if let Some(session) = self.sessions.get_mut(&id) {
            session.theirs = Some(Box::new(key.clone()));
            // Both are target refresh requests (§12.2, RFC 3311 §5.2).
            if let Some(dialog) = session.dialog.as_mut() {
                dialog.refresh_target(&request.headers);
            }
            if allows(&request.headers, "UPDATE") {
                session.peer_allows_update = true;
            }
        }
        self.indicate(key, Some(id), kind, request);
    }

    /// Tells the application about a request it must answer, keeping a copy to build
    /// the response from.
    fn indicate(
        &mut self,
        key: TransactionKey,
        session: Option<SessionId>,
        kind: TxKind,
        request: Request,
    ) {
        self.txs.insert(key.clone(), TxUse { session, kind });
        self.pending_requests.insert(key.clone(), request.clone());
        let event = match (session, kind) {
            (Some(session), TxKind::Reinvite | TxKind::Update | TxKind::Prack) => Event::Modify {
                session,
                tx: key,
                request,
            },
            _ => Event::Request {
                session,
                tx: key,
                request,
            },
        };
        self.events.push_back(event);
    }

    /// RFC 3262 §3: a PRACK for one of our reliable provisionals.
    fn on_prack(&mut self, now: Instant, id: SessionId, key: TransactionKey, request: Request) {
        let rack = request
            .headers
            .get(&HeaderName::RAck)
            .and_then(|v| RAck::parse(v).ok());
        let matched = match (
            rack,
            self.sessions.get_mut(&id).and_then(|s| s.reliable.as_mut()),
        ) {
            (Some(rack), Some(machine)) => machine.on_prack(now, &rack),
            _ => PrackMatch::NoMatch,
        };
        match matched {
            PrackMatch::NoMatch => {
                let response = self.response(&request, 481, None);
                self.send_response(now, &key, response);
            }
            PrackMatch::Matched { next, .. } => {
                if let Some(next) = next {
                    let invite_tx = self.sessions.get(&id).map(|s| s.invite_tx.clone());
                    if let Some(invite_tx) = invite_tx {
                        self.send_response(now, &invite_tx, next);
                    }
                }
                self.schedule_reliable(id);
                if request.body.is_empty() {
                    let response = self.response(&request, 200, None);
                    self.send_response(now, &key, response);
                } else {
                    // An offer or answer in the PRACK (§5): the application answers.
                    self.indicate(key, Some(id), TxKind::Prack, request);
                }
            }
        }
    }

    /// The ACK for a 2xx (§13.3.1.4), which no transaction absorbs.
    fn on_ack(&mut self, now: Instant, ack: &Request) {
        let Some(key) = dialog_key_of(ack) else {
            return;
        };
        let Some(&id) = self.by_dialog.get(&key) else {
            return;
        };
        let seq = ack.headers.cseq().map(|c| c.seq).unwrap_or_default();
        let Some(session) = self.sessions.get_mut(&id) else {
            return;
        };
        if session.ok.as_ref().is_none_or(|ok| ok.cseq != seq) {
            return;
        }
        session.ok = None;
        let settle_at = now + self.config.timers.t1 * 64;
        session.settle_at = Some(settle_at);
        self.timers
            .push(Reverse((settle_at, TimerKind::Settle, id)));
        if let Some(reason) = session.hangup_after_ack.take() {
            session.phase = Phase::Confirmed;
            self.send_bye(now, id, reason);
            self.end(now, id, Side::Local, EndCause::Bye, None);
            return;
        }
        if session.phase == Phase::Answered {
            session.phase = Phase::Confirmed;
            if let Some(dialog) = session.dialog.as_mut() {
                dialog.state = DialogState::Confirmed;
            }
            let body = Body::of(&ack.headers, &ack.body);
            self.events.push_back(Event::Established {
                session: id,
                body,
                response: None,
            });
        }
        let _ = now;
    }

    fn on_cancel(
        &mut self,
        now: Instant,
        key: TransactionKey,
        request: &Request,
        invite: Option<TransactionKey>,
    ) {
        let Some(invite) = invite else {
            let response = self.response(request, 481, None);
            return self.send_response(now, &key, response);
        };
        let session = self
            .txs
            .get(&invite)
            .filter(|u| u.kind == TxKind::Invite)
            .and_then(|u| u.session);
        // §9.2: the 200 carries the To tag of the INVITE's responses.
        let tag = session
            .and_then(|id| self.sessions.get(&id))
            .map(|s| s.local_tag.clone());
        let response = self.response(request, 200, tag.as_deref());
        self.send_response(now, &key, response);
        let Some(id) = session else {
            return;
        };
        if self
            .sessions
            .get(&id)
            .is_some_and(|s| s.phase == Phase::Incoming)
        {
            if let Some(response) = self.session_response(id, 487) {
                self.send_response(now, &invite, response);
            }
            let reason = request.headers.get(&HeaderName::Reason).cloned();
            self.end(now, id, Side::Remote, EndCause::Cancelled, reason);
        }
    }

    // ---- responses to our requests

    fn on_client_response(&mut self, now: Instant, key: TransactionKey, response: Response) {
        let Some(usage) = self.txs.get(&key).copied() else {
            return;
        };
        if matches!(response.status, 401 | 407)
            && self.retry_with_credentials(now, &key, usage, &response)
        {
            return;
        }
        if response.status >= 200 {
            let call_id = response.headers.call_id().unwrap_or_default().as_bytes();
            if let Some(client) = self.auth.get_mut(call_id) {
                client.succeeded();
            }
            if !self.auth_attempts.is_empty()
                && let Ok(cseq) = response.headers.cseq()
            {
                self.auth_attempts
                    .remove(&(Bytes::copy_from_slice(call_id), cseq.method));
            }
        }
        match (usage.session, usage.kind) {
            (Some(id), TxKind::Invite) => self.on_invite_response(now, id, response),
            (Some(id), TxKind::Reinvite | TxKind::Update) => {
                self.on_modify_response(now, id, key, response)
            }
            (session, TxKind::App) if response.status >= 200 => {
                let status = response.status;
                let tx = self.aliases.get(&key).cloned().unwrap_or(key);
                self.events.push_back(Event::Response {
                    session,
                    tx,
                    status,
                    response: Some(response),
                });
                // §12.2.1.2: 481 or 408 to a request in a dialog ends the dialog.
                if let (Some(id), 481 | 408) = (session, status) {
                    self.fail_dialog(now, id, status);
                }
            }
            (Some(id), TxKind::Prack) if response.status == 481 || response.status == 408 => {
                self.fail_dialog(now, id, response.status);
            }
            _ => {}
        }
    }

    /// RFC 3261 §22.2-22.3: a 401 or 407 to any of our requests is answered with
    /// credentials for its realm, in a new transaction with CSeq + 1. Returns false when
    /// we have none, or when the same credentials were already refused (no loop).
    fn retry_with_credentials(
        &mut self,
        now: Instant,
        key: &TransactionKey,
        usage: TxUse,
        response: &Response,
    ) -> bool {
        let Some(kind) = ChallengeKind::from_status(response.status) else {
            return false;
        };
        if self.config.credentials.is_empty() {
            return false;
        }
        // Over a stream the transaction may be gone already (Timer D/K are zero): the
        // request and where it went are kept beside it.
        let original = match (usage.session, usage.kind) {
            (Some(id), TxKind::Invite) => {
                let session = self.sessions.get(&id);
                // A 401/407 after the caller hung up is not retried (it would ring).
                if session.is_some_and(|s| s.cancel != Cancel::None) {
                    return false;
                }
                session.map(|s| (s.invite.clone(), s.flow))
            }
            _ => self.sent.get(key).cloned(),
        };
        let Some((mut request, sent_flow)) = original else {
            return false;
        };
        let flow = self.transactions.destination(key).unwrap_or(sent_flow);
        let call_id =
            Bytes::copy_from_slice(request.headers.call_id().unwrap_or_default().as_bytes());
        let attempts = self
            .auth_attempts
            .entry((call_id, request.method.clone()))
            .or_insert(0);
        *attempts += 1;
        if *attempts > MAX_AUTH_RETRIES {
            debug!("challenged again and again: given up");
            return false;
        }
        let challenges = Challenge::parse_supported(
            response
                .headers
                .get_all(&kind.challenge_header())
                .map(|v| &v[..]),
        );
        let credentials = &self.config.credentials;
        let lookup = |realm: &str| {
            credentials
                .iter()
                .find(|c| c.realm.as_deref().is_none_or(|r| r == realm))
                .cloned()
        };
        let cnonce = format!("{:016x}", self.ids.next_u64());
        let call_id =
            Bytes::copy_from_slice(request.headers.call_id().unwrap_or_default().as_bytes());
        let uri = String::from_utf8_lossy(&request.uri).into_owned();
        let client = self.auth.entry(call_id).or_default();
        let values = match client.respond(
            kind,
            &challenges,
            &lookup,
            request.method.as_str(),
            &uri,
            &request.body,
            &cnonce,
        ) {
            Ok(values) => values,
            Err(error) => {
                debug!(%error, "challenge not answered");
                return false;
            }
        };
        request.headers.remove(&kind.authorization_header());
        for value in values {
            request.headers.push(kind.authorization_header(), value);
        }
        let via = self.via(&flow);
        // In place, so Via stays first (RFC 3261 §7.3.1).
        request.headers.replace_first_value(&HeaderName::Via, via);
        let in_dialog_seq = match (usage.session, usage.kind) {
            (Some(id), TxKind::Reinvite | TxKind::Update | TxKind::App | TxKind::Prack) => self
                .sessions
                .get_mut(&id)
                .and_then(|s| s.dialog.as_mut())
                .map(Dialog::next_cseq),
            _ => None,
        };
        let seq = in_dialog_seq.unwrap_or_else(|| {
            request
                .headers
                .cseq()
                .map(|c| c.seq)
                .unwrap_or(1)
                .saturating_add(1)
        });
        let cseq = format!("{seq} {}", request.method);
        request.headers.replace_first_value(&HeaderName::CSeq, cseq);
        let new_key = match self.transactions.send_request(now, request.clone(), flow) {
            Ok(new_key) => new_key,
            Err(error) => {
                debug!(%error, "authenticated retry not sent");
                return false;
            }
        };
        self.txs.insert(new_key.clone(), usage);
        let origin = self.aliases.remove(key).unwrap_or_else(|| key.clone());
        self.aliases.insert(new_key.clone(), origin);
        if let Some(id) = usage.session
            && let Some(session) = self.sessions.get_mut(&id)
        {
            match usage.kind {
                TxKind::Invite => {
                    session.invite_tx = new_key.clone();
                    session.invite = request.clone();
                }
                TxKind::Reinvite | TxKind::Update => {
                    if let Some(ours) = session.ours.as_mut().filter(|o| o.tx == *key) {
                        ours.tx = new_key.clone();
                    }
                }
                _ => {}
            }
        }
        self.sent.insert(new_key, (request, flow));
        true
    }

    fn on_invite_response(&mut self, now: Instant, id: SessionId, response: Response) {
        let Some(mut session) = self.sessions.remove(&id) else {
            return;
        };
        let status = response.status;
        let keep = match status {
            100 => {
                // §9.1: any provisional, 100 included, allows the CANCEL.
                session.early_seen();
                if session.cancel == Cancel::Pending {
                    session.cancel = Cancel::Sent;
                    self.cancel_invite(now, id, &mut session);
                }
                true
            }
            101..=199 => {
                self.uac_provisional(now, id, &mut session, response);
                true
            }
            200..=299 => self.uac_success(now, id, &mut session, response),
            _ => self.uac_failure(now, id, &mut session, response),
        };
        if keep {
            self.sessions.insert(id, session);
        }
    }

    fn uac_provisional(
        &mut self,
        now: Instant,
        id: SessionId,
        session: &mut Session,
        response: Response,
    ) {
        session.early_seen();
        if let Some(tag) = response
            .headers
            .to()
            .ok()
            .and_then(|t| t.tag().map(Bytes::copy_from_slice))
        {
            let index = match session
                .early
                .iter()
                .position(|(d, _)| d.id.remote_tag == tag)
            {
                Some(i) => Some(i),
                None if session.early.len() >= MAX_EARLY_DIALOGS => None,
                None => Dialog::uac_tagged(&session.invite, &response, session.local_tag.clone())
                    .map(|d| {
                        session.early.push((d, ReliableReceiver::new()));
                        session.early.len() - 1
                    }),
            };
            if let Some((dialog, receiver)) = index.and_then(|i| session.early.get_mut(i)) {
                match receiver.on_provisional(&response) {
                    Receipt::Prack(rack) => {
                        dialog.refresh_target(&response.headers);
                        let seq = dialog.next_cseq();
                        let via = self.via(&session.flow);
                        let mut prack = dialog.request(Method::Prack, seq, via);
                        prack.headers.push(HeaderName::RAck, rack.to_string());
                        prack
                            .headers
                            .push(HeaderName::UserAgent, self.user_agent.clone());
                        let flow = uac_flow(dialog, &session.flow);
                        match self.transactions.send_request(now, prack, flow) {
                            Ok(key) => {
                                self.txs.insert(
                                    key,
                                    TxUse {
                                        session: Some(id),
                                        kind: TxKind::Prack,
                                    },
                                );
                            }
                            Err(error) => debug!(%error, "PRACK not sent"),
                        }
                    }
                    Receipt::Retransmission | Receipt::OutOfOrder => return,
                    Receipt::Unreliable => {}
                }
            }
        }
        if session.cancel == Cancel::Pending {
            // CANCEL waited for this provisional (§9.1).
            session.cancel = Cancel::Sent;
            self.cancel_invite(now, id, session);
        }
        self.events.push_back(Event::Provisional {
            session: id,
            response,
        });
    }

    /// A 2xx to our INVITE. Returns whether the session lives on.
    fn uac_success(
        &mut self,
        now: Instant,
        id: SessionId,
        session: &mut Session,
        response: Response,
    ) -> bool {
        let Some(tag) = response
            .headers
            .to()
            .ok()
            .and_then(|t| t.tag().map(Bytes::copy_from_slice))
        else {
            return true;
        };
        let seq = response.headers.cseq().map(|c| c.seq).unwrap_or_default();
        if let Some(dialog) = &session.dialog {
            if dialog.id.remote_tag == tag {
                // A retransmission: re-send the ACK (§13.2.2.4).
                if let Some((ack_seq, ack)) = session.ack.as_deref()
                    && *ack_seq == seq
                {
                    self.stats.retransmissions += 1;
                    self.transmits.push_back(ack.clone());
                }
            } else {
                // Another fork answered too: ACK it, then BYE it (§13.2.2.4).
                self.ack_and_bye_fork(now, session, &response);
            }
            return true;
        }
        let mut dialog = match session
            .early
            .iter()
            .position(|(d, _)| d.id.remote_tag == tag)
        {
            Some(i) => session.early.swap_remove(i).0,
            None => match Dialog::uac_tagged(&session.invite, &response, session.local_tag.clone())
            {
                Some(d) => d,
                None => return true,
            },
        };
        dialog.state = DialogState::Confirmed;
        dialog.refresh_target(&response.headers);
        // The route set is fixed by the 2xx (§12.1.2, §13.2.2.4).
        let mut routes: Vec<Bytes> = response
            .headers
            .values(&HeaderName::RecordRoute)
            .map(|v| Bytes::copy_from_slice(&v))
            .collect();
        routes.reverse();
        dialog.route_set = routes;
        // Freed, not cleared: room for four early dialogs is 1.1 KB a call.
        session.early = Vec::new();
        session.peer_allows_update = allows(&response.headers, "UPDATE");
        let ack = self.build_ack(session, &dialog, seq);
        self.transmits.push_back(ack.clone());
        session.ack = Some(Box::new((seq, ack)));
        self.settle_later(now, id, session);
        session.dialog = Some(dialog);
        session.phase = Phase::Confirmed;
        if let Some(negotiated) =
            session_timer::on_response(&self.config.session_timer, &session.invite, &response)
        {
            session.timer = Some(Box::new(SessionTimer::new(now, negotiated)));
            self.schedule_session_timer(id, session);
        }
        if session.cancel != Cancel::None {
            // We wanted out before the answer: hang up now (§9.1 race).
            let reason = session.cancel_reason.clone();
            self.bye_in(now, session, reason);
            self.finish(now, id, session, Side::Local, EndCause::Cancelled, None);
            return false;
        }
        let body = Body::of(&response.headers, &response.body);
        self.events.push_back(Event::Established {
            session: id,
            body,
            response: Some(Box::new(response)),
        });
        true
    }

    /// Returns whether the session lives on (a retry was sent).
    fn uac_failure(
        &mut self,
        now: Instant,
        id: SessionId,
        session: &mut Session,
        response: Response,
    ) -> bool {
        let status = response.status;
        if status == 422
            && session.cancel == Cancel::None
            && let Some(min_se) = session_timer::on_422(&response)
            && session.min_se_floor.is_none_or(|f| min_se > f)
        {
            session.min_se_floor = Some(min_se);
            if self.retry_invite(now, id, session) {
                return true;
            }
        }
        for (dialog, _) in session.early.drain(..) {
            self.by_dialog
                .remove(&(dialog.id.call_id, dialog.id.local_tag));
        }
        let (cause, by) = if session.cancel != Cancel::None && status == 487 {
            (EndCause::Cancelled, Side::Local)
        } else {
            (EndCause::Rejected { status }, Side::Remote)
        };
        let reason = response.headers.get(&HeaderName::Reason).cloned();
        self.finish(now, id, session, by, cause, reason);
        if let Some(Event::Terminated { termination, .. }) = self.events.back_mut() {
            termination.response = Some(Box::new(response));
        }
        false
    }

    /// Re-sends the INVITE in a new transaction (after 422), CSeq + 1 (§8.1.3.5).
    fn retry_invite(&mut self, now: Instant, id: SessionId, session: &mut Session) -> bool {
        let mut request = session.invite.clone();
        let seq = request
            .headers
            .cseq()
            .map(|c| c.seq)
            .unwrap_or(1)
            .saturating_add(1);
        request
            .headers
            .set(HeaderName::CSeq, format!("{seq} INVITE"));
        request
            .headers
            .set(HeaderName::Via, self.via(&session.flow));
        request.headers.remove(&HeaderName::SessionExpires);
        request.headers.remove(&HeaderName::MinSE);
        session_timer::add_request_headers(
            &self.config.session_timer,
            &mut request.headers,
            None,
            session.min_se_floor,
        );
        match self
            .transactions
            .send_request(now, request.clone(), session.flow)
        {
            Ok(key) => {
                self.txs.insert(
                    key.clone(),
                    TxUse {
                        session: Some(id),
                        kind: TxKind::Invite,
                    },
                );
                session.invite_tx = key;
                session.invite = request;
                true
            }
            Err(error) => {
                debug!(%error, "INVITE retry not sent");
                false
            }
        }
    }

    fn ack_and_bye_fork(&mut self, now: Instant, session: &Session, response: &Response) {
        let Some(mut fork) =
            Dialog::uac_tagged(&session.invite, response, session.local_tag.clone())
        else {
            return;
        };
        let seq = response.headers.cseq().map(|c| c.seq).unwrap_or_default();
        let ack = self.build_ack(session, &fork, seq);
        self.transmits.push_back(ack);
        let via = self.via(&session.flow);
        let bye_seq = fork.next_cseq();
        let mut bye = fork.request(Method::Bye, bye_seq, via);
        bye.headers.push(
            HeaderName::Reason,
            "SIP;cause=200;text=\"Call completed elsewhere\"",
        );
        bye.headers
            .push(HeaderName::UserAgent, self.user_agent.clone());
        let flow = uac_flow(&fork, &session.flow);
        fork.state = DialogState::Confirmed;
        match self.transactions.send_request(now, bye, flow) {
            Ok(key) => {
                self.txs.insert(
                    key,
                    TxUse {
                        session: None,
                        kind: TxKind::Bye,
                    },
                );
            }
            Err(error) => debug!(%error, "BYE to a fork not sent"),
        }
    }

    /// The ACK for a 2xx (§13.2.2.4): a new request in the dialog with the INVITE's
    /// CSeq number, sent outside any transaction.
    fn build_ack(&mut self, session: &Session, dialog: &Dialog, seq: u32) -> Transmit {
        let via = self.via(&session.flow);
        let mut ack = dialog.request(Method::Ack, seq, via);
        ack.headers
            .push(HeaderName::UserAgent, self.user_agent.clone());
        // The ACK carries the answer when the 2xx carried the offer; we always offer in
        // the INVITE, so it has no body.
        Transmit {
            flow: uac_flow(dialog, &session.flow),
            payload: ack.to_bytes(),
        }
    }

    /// A 2xx that matched no transaction (after Timer M): a retransmission of the
    /// answer of a confirmed session gets its ACK again; a late fork gets ACK + BYE.
    fn on_stray_2xx(&mut self, now: Instant, response: &Response) -> bool {
        let is_invite_2xx = (200..300).contains(&response.status)
            && response
                .headers
                .cseq()
                .is_ok_and(|c| c.method == Method::Invite);
        if !is_invite_2xx {
            return false;
        }
        let Some(from_tag) = response
            .headers
            .from()
            .ok()
            .and_then(|f| f.tag().map(Bytes::copy_from_slice))
        else {
            return false;
        };
        let call_id =
            Bytes::copy_from_slice(response.headers.call_id().unwrap_or_default().as_bytes());
        let Some(&id) = self.by_dialog.get(&(call_id, from_tag)) else {
            return false;
        };
        let Some(mut session) = self.sessions.remove(&id) else {
            return false;
        };
        if session.role == Role::Uac && !self.uac_success(now, id, &mut session, response.clone()) {
            return true;
        }
        self.sessions.insert(id, session);
        true
    }

    fn on_modify_response(
        &mut self,
        now: Instant,
        id: SessionId,
        key: TransactionKey,
        response: Response,
    ) {
        let status = response.status;
        if status < 200 {
            return;
        }
        let Some(mut session) = self.sessions.remove(&id) else {
            return;
        };
        let Some(outgoing) = session.ours.take_if(|o| o.tx == key) else {
            // A retransmitted 2xx to our re-INVITE: the same ACK again (§13.2.2.4).
            let seq = response.headers.cseq().map(|c| c.seq).unwrap_or_default();
            if let Some((ack_seq, ack)) = session.ack.as_deref()
                && *ack_seq == seq
                && (200..300).contains(&status)
            {
                self.stats.retransmissions += 1;
                self.transmits.push_back(ack.clone());
            }
            self.sessions.insert(id, session);
            return;
        };
        match status {
            200..=299 => {
                if outgoing.method == Method::Invite {
                    let seq = response.headers.cseq().map(|c| c.seq).unwrap_or_default();
                    if let Some(dialog) = session.dialog.as_mut() {
                        dialog.refresh_target(&response.headers);
                    }
                    if let Some(dialog) = session.dialog.clone() {
                        let ack = self.build_ack(&session, &dialog, seq);
                        self.transmits.push_back(ack.clone());
                        session.ack = Some(Box::new((seq, ack)));
                        self.settle_later(now, id, &mut session);
                    }
                } else if let Some(dialog) = session.dialog.as_mut() {
                    dialog.refresh_target(&response.headers);
                }
                if outgoing.body.is_some() {
                    session.local_body = outgoing.body.clone().map(Box::new);
                }
                if allows(&response.headers, "UPDATE") {
                    session.peer_allows_update = true;
                }
                self.refresh_timer_uac(now, id, &mut session, &outgoing, &response);
                if !outgoing.refresh {
                    self.events.push_back(Event::ModifyCompleted {
                        session: id,
                        method: outgoing.method.clone(),
                        response,
                    });
                }
                self.sessions.insert(id, session);
            }
            491 => {
                // Glare (§14.1): try again after a random wait.
                let wait = glare_backoff(session.role, self.ids.next_u64());
                let at = now + wait;
                session.glare = Some(Box::new((at, *outgoing)));
                self.timers.push(Reverse((at, TimerKind::Glare, id)));
                self.sessions.insert(id, session);
            }
            422 => {
                let retry = session_timer::on_422(&response)
                    .filter(|m| session.min_se_floor.is_none_or(|f| *m > f));
                self.sessions.insert(id, session);
                match retry {
                    Some(min_se) => {
                        if let Some(s) = self.sessions.get_mut(&id) {
                            s.min_se_floor = Some(min_se);
                        }
                        let _ = self.modify(
                            now,
                            id,
                            outgoing.method.clone(),
                            outgoing.body,
                            outgoing.refresh,
                        );
                    }
                    None if !outgoing.refresh => self.events.push_back(Event::ModifyCompleted {
                        session: id,
                        method: outgoing.method,
                        response,
                    }),
                    None => {}
                }
            }
            // §12.2.1.2: the dialog is gone on the other side.
            481 | 408 => {
                self.sessions.insert(id, session);
                self.fail_dialog(now, id, status);
            }
            _ => {
                if !outgoing.refresh {
                    self.events.push_back(Event::ModifyCompleted {
                        session: id,
                        method: outgoing.method,
                        response,
                    });
                }
                self.sessions.insert(id, session);
            }
        }
    }

    fn refresh_timer_uac(
        &mut self,
        now: Instant,
        id: SessionId,
        session: &mut Session,
        outgoing: &Outgoing,
        response: &Response,
    ) {
        let Some(request) = self.transactions_request_of(session, outgoing) else {
            return;
        };
        if let Some(negotiated) =
            session_timer::on_response(&self.config.session_timer, &request, response)
        {
            match session.timer.as_mut() {
                Some(timer) => timer.restart(now, negotiated),
                None => session.timer = Some(Box::new(SessionTimer::new(now, negotiated))),
            }
            self.schedule_session_timer(id, session);
            self.events.push_back(Event::Refreshed { session: id });
        }
    }

    /// The request we sent for `outgoing`, rebuilt enough for session-timer
    /// negotiation (its Session-Expires and Supported).
    fn transactions_request_of(&self, session: &Session, outgoing: &Outgoing) -> Option<Request> {
        let current = session.timer.as_deref().map(SessionTimer::negotiated);
        let mut request = Request::new(
            outgoing.method.clone(),
            &sip_message::Uri::Other {
                scheme: Bytes::new(),
                rest: Bytes::new(),
            },
        );
        request.headers.push(HeaderName::Supported, SUPPORTED);
        session_timer::add_request_headers(
            &self.config.session_timer,
            &mut request.headers,
            current.as_ref(),
            session.min_se_floor,
        );
        Some(request)
    }

    // ---- our requests in a session

    fn modify(
        &mut self,
        now: Instant,
        id: SessionId,
        method: Method,
        body: Option<Body>,
        refresh: bool,
    ) -> Result<(), Error> {
        let session = self.sessions.get(&id).ok_or(Error::NoSuchSession(id))?;
        if session.phase != Phase::Confirmed || session.ours.is_some() || session.glare.is_some() {
            return Err(Error::WrongState {
                session: id,
                action: "modify the session",
            });
        }
        let body = match (&method, body) {
            (_, Some(b)) => Some(b),
            // A re-INVITE always offers (§14.1): our last description again.
            (Method::Invite, None) => session.local_body.as_deref().cloned(),
            (_, None) => None,
        };
        let current = session.timer.as_deref().map(SessionTimer::negotiated);
        let min_se_floor = session.min_se_floor;
        let mut headers = vec![(
            HeaderName::Supported,
            Bytes::from_static(SUPPORTED.as_bytes()),
        )];
        let mut timer_headers = sip_message::Headers::new();
        session_timer::add_request_headers(
            &self.config.session_timer,
            &mut timer_headers,
            current.as_ref(),
            min_se_floor,
        );
        for header in timer_headers.iter() {
            if header.name != HeaderName::Supported {
                headers.push((header.name.clone(), header.value.clone()));
            }
        }
        let kind = if method == Method::Invite {
            TxKind::Reinvite
        } else {
            TxKind::Update
        };
        let key = self.send_in_dialog(now, id, method.clone(), headers, body.as_ref(), kind)?;
        if let Some(session) = self.sessions.get_mut(&id) {
            session.ours = Some(Box::new(Outgoing {
                tx: key,
                method,
                body,
                refresh,
            }));
        }
        Ok(())
    }

    fn send_in_dialog(
        &mut self,
        now: Instant,
        id: SessionId,
        method: Method,
        headers: Vec<(HeaderName, Bytes)>,
        body: Option<&Body>,
        kind: TxKind,
    ) -> Result<TransactionKey, Error> {
        let session = self.sessions.get(&id).ok_or(Error::NoSuchSession(id))?;
        let flow = session.flow;
        let contact = session.contact.clone();
        let role = session.role;
        let via = self.via(&flow);
        let session = self.sessions.get_mut(&id).ok_or(Error::NoSuchSession(id))?;
        let dialog = session.dialog.as_mut().ok_or(Error::WrongState {
            session: id,
            action: "send a request in the dialog",
        })?;
        let seq = dialog.next_cseq();
        let mut request = dialog.request(method.clone(), seq, via);
        if matches!(method, Method::Invite | Method::Update) {
            request.headers.push(HeaderName::Contact, contact);
            request.headers.push(HeaderName::Allow, ALLOW);
        } else if matches!(method, Method::Refer | Method::Notify | Method::Subscribe) {
            // A Contact: REFER (RFC 3515 §7), SUBSCRIBE and NOTIFY (RFC 6665 §4: target
            // refresh requests).
            request.headers.push(HeaderName::Contact, contact);
        }
        for (name, value) in headers {
            request.headers.push(name, value);
        }
        request
            .headers
            .push(HeaderName::UserAgent, self.user_agent.clone());
        set_body(&mut request.headers, &mut request.body, body);
        let destination = match role {
            Role::Uac => uac_flow(dialog, &flow),
            Role::Uas => flow,
        };
        let key = self
            .transactions
            .send_request(now, request.clone(), destination)?;
        self.txs.insert(
            key.clone(),
            TxUse {
                session: Some(id),
                kind,
            },
        );
        self.sent.insert(key.clone(), (request, destination));
        Ok(key)
    }

    fn send_bye(&mut self, now: Instant, id: SessionId, reason: Option<Bytes>) {
        if let Some(mut session) = self.sessions.remove(&id) {
            self.bye_in(now, &mut session, reason);
            self.sessions.insert(id, session);
        }
    }

    fn bye_in(&mut self, now: Instant, session: &mut Session, reason: Option<Bytes>) {
        let via = self.via(&session.flow);
        let flow = session.flow;
        let role = session.role;
        let Some(dialog) = session.dialog.as_mut() else {
            return;
        };
        let seq = dialog.next_cseq();
        let mut bye = dialog.request(Method::Bye, seq, via);
        if let Some(reason) = reason {
            bye.headers.push(HeaderName::Reason, reason);
        }
        for (name, value) in session.bye_headers.drain(..) {
            bye.headers.push(name, value);
        }
        bye.headers
            .push(HeaderName::UserAgent, self.user_agent.clone());
        let destination = match role {
            Role::Uac => uac_flow(dialog, &flow),
            Role::Uas => flow,
        };
        match self
            .transactions
            .send_request(now, bye.clone(), destination)
        {
            Ok(key) => {
                self.txs.insert(
                    key.clone(),
                    TxUse {
                        session: None,
                        kind: TxKind::Bye,
                    },
                );
                self.sent.insert(key, (bye, destination));
            }
            Err(error) => debug!(%error, "BYE not sent"),
        }
    }

    fn send_cancel(&mut self, now: Instant, id: SessionId) {
        if let Some(mut session) = self.sessions.remove(&id) {
            session.cancel = Cancel::Sent;
            self.cancel_invite(now, id, &mut session);
            self.sessions.insert(id, session);
        }
    }

    fn cancel_invite(&mut self, now: Instant, id: SessionId, session: &mut Session) {
        let Ok(mut cancel) = self.transactions.cancel_request(&session.invite_tx) else {
            return;
        };
        if let Some(reason) = &session.cancel_reason {
            cancel.headers.push(HeaderName::Reason, reason.clone());
        }
        let flow = self
            .transactions
            .destination(&session.invite_tx)
            .unwrap_or(session.flow);
        match self.transactions.send_request(now, cancel, flow) {
            Ok(key) => {
                self.txs.insert(
                    key,
                    TxUse {
                        session: Some(id),
                        kind: TxKind::Cancel,
                    },
                );
            }
            Err(error) => debug!(%error, "CANCEL not sent"),
        }
        // §9.1: no final response 64·T1 after the CANCEL: give up on the INVITE.
        let at = now + self.config.timers.t1 * 64;
        session.cancel_guard = Some(at);
        self.timers.push(Reverse((at, TimerKind::CancelGuard, id)));
    }

    /// §12.2.1.2: 481 or 408 to a request in the dialog: the dialog is over.
    fn fail_dialog(&mut self, now: Instant, id: SessionId, status: u16) {
        // Still calling (a PRACK failed in an early dialog): CANCEL the INVITE rather
        // than BYE a dialog that is not confirmed.
        if self
            .sessions
            .get(&id)
            .is_some_and(|s| s.phase == Phase::Calling)
        {
            let reason = format!("SIP;cause={status}");
            if let Err(error) = self.hangup(now, id, Some(&reason)) {
                debug!(%error, "CANCEL after a failed PRACK not sent");
            }
            return;
        }
        let reason = Bytes::from(format!("SIP;cause={status}"));
        self.send_bye(now, id, Some(reason));
        self.end(
            now,
            id,
            Side::Remote,
            EndCause::DialogFailed { status },
            None,
        );
    }

    // ---- answering

    fn respond_invite(&mut self, now: Instant, id: SessionId, reply: Reply) -> Result<(), Error> {
        let Some(mut session) = self.sessions.remove(&id) else {
            return Err(Error::NoSuchSession(id));
        };
        if session.phase != Phase::Incoming {
            self.sessions.insert(id, session);
            return Err(Error::WrongState {
                session: id,
                action: "answer the INVITE",
            });
        }
        let status = reply.status;
        let key = session.invite_tx.clone();
        let tag = (status > 100).then(|| session.local_tag.clone());
        let mut response = self.response(&session.invite, status, tag.as_deref());
        if (101..300).contains(&status) {
            // §12.1.1: a response that makes a dialog carries Record-Route and Contact.
            for route in session.invite.headers.values(&HeaderName::RecordRoute) {
                response.headers.push(HeaderName::RecordRoute, route);
            }
            response
                .headers
                .push(HeaderName::Contact, session.contact.clone());
            response.headers.push(HeaderName::Allow, ALLOW);
        }
        if (101..200).contains(&status) {
            let reliable = reliable::requires_100rel(&session.invite.headers)
                || (reply.reliable && reliable::supports_100rel(&session.invite.headers));
            apply_reply(&mut response, reply);
            if reliable {
                let t1 = self.config.timers.t1;
                let first = (self.ids.next_u64() % 0x7fff_fffe) as u32 + 1;
                let machine = session
                    .reliable
                    .get_or_insert_with(|| Box::new(ReliableProvisionals::new(t1, first)));
                if let Some(now_response) = machine.send(now, response) {
                    self.send_response(now, &key, now_response);
                }
                self.sessions.insert(id, session);
                self.schedule_reliable(id);
                return Ok(());
            }
            self.send_response(now, &key, response);
            self.sessions.insert(id, session);
            return Ok(());
        }
        if let Some(machine) = session.reliable.as_mut() {
            machine.on_final();
        }
        if (200..300).contains(&status) {
            // The INVITE passed `session_timer::check_request` on arrival (`on_invite`).
            response.headers.push(HeaderName::Supported, SUPPORTED);
            let negotiated = session_timer::answer(
                &self.config.session_timer,
                &session.invite,
                &mut response.headers,
            );
            if let Some(body) = &reply.body {
                session.local_body = Some(Box::new(body.clone()));
            }
            apply_reply(&mut response, reply);
            let seq = session
                .invite
                .headers
                .cseq()
                .map(|c| c.seq)
                .unwrap_or_default();
            self.send_ok(now, id, &mut session, &key, response, seq);
            session.phase = Phase::Answered;
            if let Some(negotiated) = negotiated {
                session.timer = Some(Box::new(SessionTimer::new(now, negotiated)));
                self.schedule_session_timer(id, &mut session);
            }
            self.sessions.insert(id, session);
            return Ok(());
        }
        let reason = reply
            .headers
            .iter()
            .find(|(n, _)| *n == HeaderName::Reason)
            .map(|(_, v)| v.clone());
        apply_reply(&mut response, reply);
        self.send_response(now, &key, response);
        self.finish(
            now,
            id,
            &mut session,
            Side::Local,
            EndCause::Rejected { status },
            reason,
        );
        Ok(())
    }

    /// Sends a 2xx to an INVITE and retransmits it until the ACK (§13.3.1.4).
    fn send_ok(
        &mut self,
        now: Instant,
        id: SessionId,
        session: &mut Session,
        key: &TransactionKey,
        response: Response,
        seq: u32,
    ) {
        let payload = match self.transactions.send_response(now, key, response) {
            Ok(payload) => payload,
            Err(error) => {
                debug!(%error, "2xx not sent");
                return;
            }
        };
        let t1 = self.config.timers.t1;
        let ok = PendingOk {
            transmit: Transmit {
                flow: session.flow,
                payload,
            },
            cseq: seq,
            interval: t1,
            next_at: now + t1,
            deadline: now + t1 * 64,
        };
        self.timers
            .push(Reverse((ok.next_at, TimerKind::Retransmit, id)));
        self.timers
            .push(Reverse((ok.deadline, TimerKind::AckTimeout, id)));
        session.ok = Some(Box::new(ok));
    }

    fn respond_modify(
        &mut self,
        now: Instant,
        id: SessionId,
        tx: &TransactionKey,
        kind: TxKind,
        reply: Reply,
    ) -> Result<(), Error> {
        let Some(mut session) = self.sessions.remove(&id) else {
            return Err(Error::NoSuchSession(id));
        };
        let request = self.transactions_server_request(tx, &session);
        let status = reply.status;
        let mut response = match &request {
            Some(request) => self.response(request, status, None),
            None => {
                self.sessions.insert(id, session);
                return Err(Error::NoSuchTransaction(tx.clone()));
            }
        };
        let request = request.unwrap_or_else(|| session.invite.clone());
        if status >= 200 && kind != TxKind::Prack {
            session.theirs = None;
        }
        if (200..300).contains(&status) && kind != TxKind::Prack {
            response
                .headers
                .push(HeaderName::Contact, session.contact.clone());
            response.headers.push(HeaderName::Allow, ALLOW);
            response.headers.push(HeaderName::Supported, SUPPORTED);
            if let Some(negotiated) =
                session_timer::answer(&self.config.session_timer, &request, &mut response.headers)
            {
                match session.timer.as_mut() {
                    Some(timer) => timer.restart(now, negotiated),
                    None => session.timer = Some(Box::new(SessionTimer::new(now, negotiated))),
                }
                self.schedule_session_timer(id, &mut session);
                self.events.push_back(Event::Refreshed { session: id });
            }
            if let Some(body) = &reply.body {
                session.local_body = Some(Box::new(body.clone()));
            }
            apply_reply(&mut response, reply);
            if kind == TxKind::Reinvite {
                let seq = request.headers.cseq().map(|c| c.seq).unwrap_or_default();
                self.send_ok(now, id, &mut session, tx, response, seq);
            } else {
                self.send_response(now, tx, response);
            }
        } else {
            apply_reply(&mut response, reply);
            self.send_response(now, tx, response);
        }
        self.sessions.insert(id, session);
        Ok(())
    }

    /// The request of a server transaction of a session: re-INVITE/UPDATE/PRACK
    /// requests are kept by the transaction layer only as bytes, so we keep our own
    /// copy in the pending-request table.
    fn transactions_server_request(
        &self,
        tx: &TransactionKey,
        _session: &Session,
    ) -> Option<Request> {
        self.pending_requests.get(tx).cloned()
    }

    fn respond_plain(
        &mut self,
        now: Instant,
        session: Option<SessionId>,
        tx: &TransactionKey,
        reply: Reply,
        to_tag: Option<Bytes>,
    ) -> Result<(), Error> {
        let Some(request) = self.pending_requests.get(tx).cloned() else {
            return Err(Error::NoSuchTransaction(tx.clone()));
        };
        let status = reply.status;
        let has_tag = request.headers.to_ref().is_ok_and(|t| t.tag().is_some());
        let tag = match to_tag {
            _ if has_tag || status < 200 => None,
            Some(tag) => Some(tag),
            None => Some(Bytes::from(self.ids.tag())),
        };
        let mut response = self.response(&request, status, tag.as_deref());
        apply_reply(&mut response, reply);
        let _ = session;
        self.send_response(now, tx, response);
        Ok(())
    }

    // ---- timers

    fn on_timer(&mut self, now: Instant, at: Instant, kind: TimerKind, id: SessionId) {
        let Some(mut session) = self.sessions.remove(&id) else {
            return;
        };
        let mut alive = true;
        match kind {
            TimerKind::Retransmit => {
                if let Some(ok) = session.ok.as_mut().filter(|ok| ok.next_at == at) {
                    self.stats.retransmissions += 1;
                    self.transmits.push_back(ok.transmit.clone());
                    ok.interval = (ok.interval * 2).min(self.config.timers.t2);
                    ok.next_at = now + ok.interval;
                    self.timers
                        .push(Reverse((ok.next_at, TimerKind::Retransmit, id)));
                }
            }
            TimerKind::AckTimeout => {
                if session.ok.as_ref().is_some_and(|ok| ok.deadline == at) {
                    session.ok = None;
                    self.bye_in(
                        now,
                        &mut session,
                        Some(Bytes::from_static(b"SIP;cause=408;text=\"ACK Timeout\"")),
                    );
                    self.finish(
                        now,
                        id,
                        &mut session,
                        Side::Local,
                        EndCause::AckTimeout,
                        None,
                    );
                    alive = false;
                }
            }
            TimerKind::Glare => {
                if session.glare.as_deref().is_some_and(|(t, _)| *t == at)
                    && let Some((_, outgoing)) = session.glare.take().map(|g| *g)
                {
                    self.sessions.insert(id, session);
                    if self
                        .modify(
                            now,
                            id,
                            outgoing.method.clone(),
                            outgoing.body.clone(),
                            outgoing.refresh,
                        )
                        .is_err()
                    {
                        debug!(session = %id, "glare retry not possible now");
                    }
                    return;
                }
            }
            TimerKind::CancelGuard => {
                if session.cancel_guard == Some(at) && session.phase == Phase::Calling {
                    let _ = self.transactions.terminate(now, &session.invite_tx);
                    self.finish(
                        now,
                        id,
                        &mut session,
                        Side::Local,
                        EndCause::Cancelled,
                        None,
                    );
                    alive = false;
                }
            }
            TimerKind::Reliable => {
                if session.reliable_at != Some(at) {
                    self.sessions.insert(id, session);
                    return;
                }
                session.reliable_at = None;
                let action = session
                    .reliable
                    .as_mut()
                    .and_then(|r| r.handle_timeout(now));
                match action {
                    Some(ReliableAction::Retransmit(response)) => {
                        let key = session.invite_tx.clone();
                        self.send_response(now, &key, response);
                    }
                    Some(ReliableAction::GiveUp) if session.phase == Phase::Incoming => {
                        // RFC 3262 §3: no PRACK within 64·T1: reject the INVITE.
                        let key = session.invite_tx.clone();
                        let tag = session.local_tag.clone();
                        let response = self
                            .response(&session.invite, 504, Some(&tag))
                            .with_reason("Reliable Provisional Not Acknowledged");
                        self.send_response(now, &key, response);
                        self.finish(
                            now,
                            id,
                            &mut session,
                            Side::Local,
                            EndCause::Rejected { status: 504 },
                            None,
                        );
                        alive = false;
                    }
                    _ => {}
                }
                if alive {
                    self.arm_reliable(id, &mut session);
                }
            }
            TimerKind::Settle => {
                if session.settle_at == Some(at) {
                    session.settle_at = None;
                    session.ack = None;
                    if !session.slim && session.phase == Phase::Confirmed {
                        session.invite = slim(&session.invite);
                        session.slim = true;
                    }
                }
            }
            TimerKind::SessionTimer => {
                if session.timer_at != Some(at) {
                    self.sessions.insert(id, session);
                    return;
                }
                session.timer_at = None;
                let action = session.timer.as_mut().and_then(|t| t.handle_timeout(now));
                match action {
                    Some(SessionTimerAction::Refresh) => {
                        self.schedule_session_timer(id, &mut session);
                        let busy = session.ours.is_some()
                            || session.glare.is_some()
                            || session.theirs.is_some();
                        let method = if session.peer_allows_update {
                            Method::Update
                        } else {
                            Method::Invite
                        };
                        self.sessions.insert(id, session);
                        if !busy {
                            // RFC 4028 §7.4/§9: UPDATE without a body when the peer
                            // allows it, else a re-INVITE with our last description.
                            if let Err(error) = self.modify(now, id, method, None, true) {
                                debug!(%error, "session refresh not sent");
                            }
                        }
                        return;
                    }
                    Some(SessionTimerAction::Expire) => {
                        self.bye_in(
                            now,
                            &mut session,
                            Some(Bytes::from_static(
                                b"SIP;cause=408;text=\"Session expired\"",
                            )),
                        );
                        self.finish(
                            now,
                            id,
                            &mut session,
                            Side::Local,
                            EndCause::SessionExpired,
                            None,
                        );
                        alive = false;
                    }
                    None => self.schedule_session_timer(id, &mut session),
                }
            }
        }
        if alive {
            self.sessions.insert(id, session);
        }
    }

    fn schedule_reliable(&mut self, id: SessionId) {
        if let Some(mut session) = self.sessions.remove(&id) {
            self.arm_reliable(id, &mut session);
            self.sessions.insert(id, session);
        }
    }

    /// Puts the reliable-provisional machine's deadline in the heap, unless that very
    /// deadline is there already.
    fn arm_reliable(&mut self, id: SessionId, session: &mut Session) {
        let at = session.reliable.as_ref().and_then(|r| r.poll_timeout());
        if at.is_some() && at != session.reliable_at {
            session.reliable_at = at;
            if let Some(at) = at {
                self.timers.push(Reverse((at, TimerKind::Reliable, id)));
            }
        }
    }

    /// The same for the session timer.
    /// The ACK just kept answers retransmissions of its 2xx for 64·T1 (RFC 6026 Timer
    /// M: the transaction passes them up that long), then [`TimerKind::Settle`].
    fn settle_later(&mut self, now: Instant, id: SessionId, session: &mut Session) {
        let at = now + self.config.timers.t1 * 64;
        session.settle_at = Some(at);
        self.timers.push(Reverse((at, TimerKind::Settle, id)));
    }

    fn schedule_session_timer(&mut self, id: SessionId, session: &mut Session) {
        let at = session
            .timer
            .as_deref()
            .and_then(SessionTimer::poll_timeout);
        if at.is_some() && at != session.timer_at {
            session.timer_at = at;
            if let Some(at) = at {
                self.timers.push(Reverse((at, TimerKind::SessionTimer, id)));
            }
        }
    }

    // ---- endings

    /// Ends a session that is in the table.
    fn end(
        &mut self,
        now: Instant,
        id: SessionId,
        by: Side,
        cause: EndCause,
        reason: Option<Bytes>,
    ) {
        let _ = now;
        if let Some(mut session) = self.sessions.remove(&id) {
            self.finish(now, id, &mut session, by, cause, reason);
        }
    }

    /// Ends a session already taken out of the table.
    fn finish(
        &mut self,
        now: Instant,
        id: SessionId,
        session: &mut Session,
        by: Side,
        cause: EndCause,
        reason: Option<Bytes>,
    ) {
        self.by_dialog
            .remove(&(session.call_id.clone(), session.local_tag.clone()));
        self.auth.remove(&session.call_id);
        self.auth_attempts
            .retain(|(call_id, _), _| *call_id != session.call_id);
        // §15.1.2: requests of the peer still waiting for an answer get 487.
        // Looked for among the requests waiting for an answer (a few), not among every
        // transaction (at load, tens of thousands: this was a quarter of the CPU).
        let pending: Vec<TransactionKey> = self
            .pending_requests
            .keys()
            .filter(|key| {
                !key.is_client() && self.txs.get(*key).is_some_and(|u| u.session == Some(id))
            })
            .cloned()
            .collect();
        for key in pending {
            // Only those with no final response yet: one answered already (a REFER's
            // 202 in its Timer J) needs nothing more.
            let waiting = matches!(
                self.transactions.state(&key),
                Some(sip_transaction::State::Trying | sip_transaction::State::Proceeding)
            );
            if let Some(request) = self.pending_requests.remove(&key)
                && waiting
            {
                let response = self.response(&request, 487, None);
                self.send_response(now, &key, response);
            }
        }
        session.theirs = None;
        // §17.1.1.2: an INVITE client transaction in Proceeding has no timer of its
        // own, and a peer that got our BYE (or sent its own) may never send the final
        // response of our re-INVITE: abandoned with the session, not left for ever.
        if let Some(ours) = session.ours.take()
            && ours.method == Method::Invite
        {
            let _ = self.transactions.terminate(now, &ours.tx);
        }
        self.events.push_back(Event::Terminated {
            session: id,
            termination: Termination {
                by,
                cause,
                reason,
                response: None,
            },
        });
    }

    // ---- output helpers

    fn new_session_id(&mut self) -> SessionId {
        let id = SessionId(self.next_session);
        self.next_session += 1;
        id
    }

    fn local_ip(&self, flow: &Flow) -> IpAddr {
        self.config.advertised_address.unwrap_or(flow.local.ip())
    }

    fn via(&mut self, flow: &Flow) -> Bytes {
        use sip_message::ascii;
        let mut via = Vec::with_capacity(80);
        via.extend_from_slice(b"SIP/2.0/");
        via.extend_from_slice(flow.transport.as_str().as_bytes());
        via.push(b' ');
        ascii::push_socket_addr(
            &mut via,
            SocketAddr::new(self.local_ip(flow), flow.local.port()),
        );
        via.extend_from_slice(b";branch=");
        self.ids.push_branch(&mut via);
        via.extend_from_slice(b";rport");
        Bytes::from(via)
    }

    /// The Contact we write for `user` on `flow` (our advertised address, the flow's
    /// port and transport): for a dialog the application keeps itself.
    pub fn contact(&self, user: &str, flow: &Flow) -> Bytes {
        let local = SocketAddr::new(self.local_ip(flow), flow.local.port());
        let mut contact = Vec::with_capacity(user.len() + 48);
        contact.extend_from_slice(b"<sip:");
        contact.extend_from_slice(user.as_bytes());
        contact.push(b'@');
        sip_message::ascii::push_socket_addr(&mut contact, local);
        if flow.transport != sip_message::Transport::Udp {
            contact.extend_from_slice(b";transport=");
            contact.extend_from_slice(contact_transport(flow.transport).as_bytes());
        }
        contact.push(b'>');
        Bytes::from(contact)
    }

    /// A response to `request` with our Server header.
    fn response(&self, request: &Request, status: u16, to_tag: Option<&[u8]>) -> Response {
        let tag = to_tag.map(String::from_utf8_lossy);
        let mut response = Response::from_request(request, status, tag.as_deref());
        response
            .headers
            .push(HeaderName::Server, self.user_agent.clone());
        response
    }

    fn session_response(&self, id: SessionId, status: u16) -> Option<Response> {
        let session = self.sessions.get(&id)?;
        Some(self.response(&session.invite, status, Some(&session.local_tag)))
    }

    fn send_response(&mut self, now: Instant, key: &TransactionKey, response: Response) {
        if let Err(error) = self.transactions.send_response(now, key, response) {
            debug!(%error, "response not sent");
        }
    }

    /// §8.2.2.2: a request without a To tag whose From tag, Call-ID and CSeq match a
    /// live server transaction with another key arrived twice by different paths.
    fn is_merged(&mut self, key: &TransactionKey, request: &Request) -> bool {
        let (Ok(call_id), Ok(from), Ok(cseq)) = (
            request.headers.call_id(),
            request.headers.from_ref(),
            request.headers.cseq(),
        ) else {
            return false;
        };
        let Some(from_tag) = from.tag() else {
            return false;
        };
        let merge_key = (
            Bytes::copy_from_slice(call_id.as_bytes()),
            Bytes::copy_from_slice(from_tag),
            cseq.seq,
            cseq.method,
        );
        match self.merge.get(&merge_key) {
            Some(existing) => existing != key,
            None => {
                self.merge_by_key.insert(key.clone(), merge_key.clone());
                self.merge.insert(merge_key, key.clone());
                false
            }
        }
    }

    /// Drops stale deadlines when they outnumber the live ones (each session holds at
    /// most seven), so a peer that makes us re-arm timers over and over cannot grow the
    /// heap.
    fn compact_timers(&mut self) {
        let live_bound = self.sessions.len() * 7 + 64;
        if self.timers.len() <= live_bound * 2 {
            return;
        }
        let sessions = &self.sessions;
        self.timers.retain(|Reverse((at, kind, id))| {
            sessions
                .get(id)
                .is_some_and(|s| s.armed(*kind) == Some(*at))
        });
    }

    /// Gives back the slots of tables that emptied out after a peak
    /// ([`sip_transaction::tables`]).
    fn shrink_tables(&mut self) {
        use sip_transaction::tables::{shrink_heap, shrink_map, shrink_set};
        shrink_map(&mut self.sessions);
        shrink_map(&mut self.by_dialog);
        shrink_map(&mut self.txs);
        shrink_map(&mut self.pending_requests);
        shrink_map(&mut self.sent);
        shrink_map(&mut self.auth_attempts);
        shrink_map(&mut self.aliases);
        shrink_map(&mut self.auth);
        shrink_map(&mut self.merge);
        shrink_map(&mut self.merge_by_key);
        shrink_set(&mut self.usages);
        shrink_heap(&mut self.timers);
    }

    /// Moves what the transaction layer produced into our queues, in order, and acts
    /// on its events.
    fn pump(&mut self, now: Instant) {
        loop {
            while let Some(transmit) = self.transactions.poll_transmit() {
                self.transmits.push_back(transmit);
            }
            let Some(event) = self.transactions.poll_event() else {
                break;
            };
            match event {
                TransactionEvent::Response { key, response } => {
                    self.on_client_response(now, key, response)
                }
                TransactionEvent::Timeout { key, .. } => self.on_tx_failure(now, key, 408),
                TransactionEvent::TransportError { key } => self.on_tx_failure(now, key, 503),
                TransactionEvent::Terminated { key } => {
                    self.pending_requests.remove(&key);
                    self.aliases.remove(&key);
                    let usage = self.txs.get(&key).copied();
                    if let Some((request, _)) = self.sent.remove(&key) {
                        // A BYE outlives its session; so does digest state it created.
                        if usage.is_some_and(|u| u.kind == TxKind::Bye) {
                            let call_id = request.headers.call_id().unwrap_or_default();
                            self.auth.remove(call_id.as_bytes());
                        }
                    }
                    // Out-of-dialog digest state (REGISTER refreshes reuse it) is bounded.
                    if self.auth.len() > MAX_AUTH_STATES {
                        self.auth.clear();
                    }
                    if self.auth_attempts.len() > MAX_AUTH_STATES {
                        self.auth_attempts.clear();
                    }
                    self.txs.remove(&key);
                    if let Some(merge_key) = self.merge_by_key.remove(&key) {
                        self.merge.remove(&merge_key);
                    }
                }
                _ => {}
            }
        }
    }

    fn on_tx_failure(&mut self, now: Instant, key: TransactionKey, status: u16) {
        let Some(usage) = self.txs.get(&key).copied() else {
            return;
        };
        let cause = if status == 408 {
            EndCause::Timeout
        } else {
            EndCause::TransportError
        };
        match (usage.session, usage.kind) {
            (Some(id), TxKind::Invite) => {
                let live = self.sessions.get(&id).is_some_and(|s| {
                    s.invite_tx == key && matches!(s.phase, Phase::Calling | Phase::Incoming)
                });
                if live {
                    self.end(now, id, Side::Local, cause, None);
                }
            }
            (Some(id), TxKind::Reinvite | TxKind::Update | TxKind::Prack) if key.is_client() => {
                self.fail_dialog(now, id, 408);
            }
            (session, TxKind::App) if key.is_client() => {
                let tx = self.aliases.get(&key).cloned().unwrap_or(key);
                self.events.push_back(Event::Response {
                    session,
                    tx,
                    status,
                    response: None,
                });
            }
            _ => {}
        }
    }
}

impl Session {
    fn new(
        role: Role,
        call_id: Bytes,
        local_tag: Bytes,
        flow: Flow,
        invite_tx: TransactionKey,
        mut invite: Request,
        contact: Bytes,
    ) -> Session {
        // Kept for the call's life: without its typed headers (1.5 KB a bridge).
        invite.headers.keep_unparsed();
        Session {
            role,
            phase: match role {
                Role::Uac => Phase::Calling,
                Role::Uas => Phase::Incoming,
            },
            call_id,
            local_tag,
            flow,
            invite_tx,
            invite,
            dialog: None,
            early: Vec::new(),
            cancel: Cancel::None,
            cancel_reason: None,
            ok: None,
            ack: None,
            settle_at: None,
            slim: false,
            ours: None,
            theirs: None,
            glare: None,
            cancel_guard: None,
            reliable: None,
            timer: None,
            min_se_floor: None,
            local_body: None,
            peer_allows_update: false,
            contact,
            provisional_seen: false,
            reliable_at: None,
            timer_at: None,
            hangup_after_ack: None,
            bye_headers: Vec::new(),
        }
    }

    /// The dialog of this session with the peer's tag `remote_tag`.
    fn dialog_with(&self, remote_tag: &[u8]) -> Option<&Dialog> {
        if let Some(d) = self
            .dialog
            .as_ref()
            .filter(|d| d.id.remote_tag == remote_tag)
        {
            return Some(d);
        }
        self.early
            .iter()
            .map(|(d, _)| d)
            .find(|d| d.id.remote_tag == remote_tag)
    }

    fn dialog_with_mut(&mut self, remote_tag: &[u8]) -> Option<&mut Dialog> {
        if self
            .dialog
            .as_ref()
            .is_some_and(|d| d.id.remote_tag == remote_tag)
        {
            return self.dialog.as_mut();
        }
        self.early
            .iter_mut()
            .map(|(d, _)| d)
            .find(|d| d.id.remote_tag == remote_tag)
    }

    /// The deadline this session holds for `kind`, if any: heap entries with another
    /// instant are stale.
    fn armed(&self, kind: TimerKind) -> Option<Instant> {
        match kind {
            TimerKind::Retransmit => self.ok.as_ref().map(|ok| ok.next_at),
            TimerKind::AckTimeout => self.ok.as_ref().map(|ok| ok.deadline),
            TimerKind::Glare => self.glare.as_deref().map(|(at, _)| *at),
            TimerKind::CancelGuard => self.cancel_guard,
            TimerKind::Reliable => self.reliable_at,
            TimerKind::SessionTimer => self.timer_at,
            TimerKind::Settle => self.settle_at,
        }
    }

    fn early_seen(&mut self) {
        self.provisional_seen = true;
    }
}

/// What a settled session still reads of its INVITE: the Request-URI, From and To (the
/// parties a B2BUA shows, [`UserAgent::invite_request`]; the dialog has the rest), copied
/// into one buffer of their own. The rest (the peer's whole datagram, or the headers we
/// built, one allocation each) is freed: over a kilobyte per held call.
fn slim(invite: &Request) -> Request {
    const KEPT: [HeaderName; 2] = [HeaderName::From, HeaderName::To];
    let values: Vec<(HeaderName, &Bytes)> = KEPT
        .into_iter()
        .filter_map(|name| invite.headers.get(&name).map(|v| (name, v)))
        .collect();
    let mut buffer = bytes::BytesMut::with_capacity(
        invite.uri.len() + values.iter().map(|(_, v)| v.len()).sum::<usize>(),
    );
    buffer.extend_from_slice(&invite.uri);
    for (_, value) in &values {
        buffer.extend_from_slice(value);
    }
    let buffer = buffer.freeze();
    let mut at = invite.uri.len();
    let mut headers = sip_message::Headers::with_capacity(values.len());
    headers.keep_unparsed();
    for (name, value) in values {
        headers.push(name, buffer.slice(at..at + value.len()));
        at += value.len();
    }
    Request {
        method: invite.method.clone(),
        uri: buffer.slice(..invite.uri.len()),
        version: invite.version.clone(),
        headers,
        body: Bytes::new(),
    }
}

fn session_had_provisional(session: &Session) -> bool {
    session.provisional_seen
}

/// Where a UAC sends requests in its dialog: the next hop if the route set or remote
/// target names an IP, else the flow of the INVITE.
fn uac_flow(dialog: &Dialog, flow: &Flow) -> Flow {
    match dialog.next_hop(flow.transport) {
        Some(remote) if remote != flow.remote => Flow {
            transport: flow.transport,
            local: flow.local,
            remote,
            connection: None,
        },
        _ => *flow,
    }
}

fn key_flow(transactions: &TransactionLayer, key: &TransactionKey) -> Flow {
    transactions.destination(key).unwrap_or(Flow {
        transport: sip_message::Transport::Udp,
        local: SocketAddr::from(([0, 0, 0, 0], 0)),
        remote: SocketAddr::from(([0, 0, 0, 0], 0)),
        connection: None,
    })
}

/// Whether a message's Allow lists `method`.
fn allows(headers: &sip_message::Headers, method: &str) -> bool {
    headers
        .tokens(&HeaderName::Allow)
        .any(|t| t.eq_ignore_ascii_case(method.as_bytes()))
}

fn set_body(headers: &mut sip_message::Headers, body_out: &mut Bytes, body: Option<&Body>) {
    if let Some(body) = body {
        headers.set(HeaderName::ContentType, body.content_type.clone());
        *body_out = body.data.clone();
    }
}

fn apply_reply(response: &mut Response, reply: Reply) {
    if let Some(reason) = reply.reason {
        response.reason = Bytes::from(reason.replace(['\r', '\n'], " "));
    }
    for (name, value) in reply.headers {
        response.headers.push(name, value);
    }
    set_body(
        &mut response.headers,
        &mut response.body,
        reply.body.as_ref(),
    );
}

/// RFC 3261 §18.2.1, RFC 3581 §4: record where the request really came from.
fn stamp_via(request: &mut Request, flow: &Flow) {
    let Ok(mut via) = request.headers.top_via() else {
        return;
    };
    let source = flow.remote.ip();
    let asked_rport = via.rport().is_some();
    let same_host = match (&via.host, source) {
        (Host::Ipv4(a), IpAddr::V4(b)) => *a == b,
        (Host::Ipv6(a), IpAddr::V6(b)) => *a == b,
        _ => false,
    };
    // A `received` the sender wrote itself is overwritten with the real source.
    if same_host && !asked_rport && via.received().is_none() {
        return;
    }
    via.set_param("received", Some(&source.to_string()));
    if asked_rport {
        via.set_param("rport", Some(&flow.remote.port().to_string()));
    }
    request
        .headers
        .replace_first_value(&HeaderName::Via, via.to_bytes());
}

/// The (Call-ID, local tag) an in-dialog request (or an ACK) names: its To tag.
fn dialog_key_of(request: &Request) -> Option<(Bytes, Bytes)> {
    let to = request.headers.to_ref().ok()?;
    let tag = to.tag()?;
    Some((
        Bytes::copy_from_slice(request.headers.call_id().ok()?.as_bytes()),
        Bytes::copy_from_slice(tag),
    ))
}

trait ResponseExt {
    fn with_reason(self, reason: &str) -> Self;
    fn with_header(self, name: HeaderName, value: impl Into<Bytes>) -> Self;
}

impl ResponseExt for Response {
    fn with_reason(mut self, reason: &str) -> Self {
        self.reason = Bytes::copy_from_slice(reason.as_bytes());
        self
    }

    fn with_header(mut self, name: HeaderName, value: impl Into<Bytes>) -> Self {
        self.headers.push(name, value);
        self
    }
}

/// The `transport` URI parameter for a Contact: RFC 7118 §5.2.2 defines only `ws`,
/// for WSS too (errata 5937).
fn contact_transport(transport: sip_message::Transport) -> &'static str {
    match transport {
        sip_message::Transport::Ws | sip_message::Transport::Wss => "ws",
        sip_message::Transport::Tcp => "tcp",
        sip_message::Transport::Tls => "tls",
        sip_message::Transport::Sctp => "sctp",
        _ => "udp",
    }
}

/// `{n:016x}@tandem`, written without `core::fmt`.
fn call_id_text(n: u64) -> Vec<u8> {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut id = Vec::with_capacity(23);
    for shift in (0..16).rev() {
        let nibble = (n >> (shift * 4)) & 0xf;
        id.push(HEX.get(nibble as usize).copied().unwrap_or(b'0'));
    }
    id.extend_from_slice(b"@tandem");
    id
}

#[cfg(test)]
mod call_id_tests {
    #[test]
    fn call_id_text_is_hex_at_tandem() {
        for n in [0, 1, 0xdead_beef, u64::MAX] {
            assert_eq!(
                super::call_id_text(n),
                format!("{n:016x}@tandem").into_bytes()
            );
        }
    }
}
