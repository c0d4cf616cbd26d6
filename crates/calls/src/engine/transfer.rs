//! Call transfer: REFER with its implicit subscription (RFC 3515), Referred-By
//! (RFC 3892), Replaces (RFC 3891), User-to-User (RFC 7433), in the call flows of
//! RFC 5589.
//!
//! - **Transferor** ([`Engine::transfer`], [`Engine::transfer_attended`]): a REFER in
//!   the call's dialog whose Refer-To carries the custom headers and User-to-User as
//!   URI headers (and Replaces for an attended transfer), so the transferee copies them
//!   into its INVITE. The call is `Transferring` meanwhile. The REFER's response and
//!   each NOTIFY's `message/sipfrag` raise [`CallEvent::TransferStateChanged`]; exactly
//!   one [`CallEvent::TransferCompleted`] ends every transfer: the target's final
//!   status, the REFER's refusal, no final NOTIFY in time (408), or the call or the
//!   subscription ending first (487). After a 2xx the call is ended with BYE
//!   (RFC 5589 §6) unless the options keep it.
//! - **Transferee**: a REFER on any call raises [`CallEvent::TransferReceived`]; the
//!   application accepts (the engine places the new call and reports its progress by
//!   NOTIFY), accepts manually (it places the call and reports with
//!   [`Engine::notify_transfer`]) or declines, within [`REFER_ANSWER_TIME`] (else 603:
//!   a REFER is a non-INVITE transaction and is answered well before Timer F).
//!   NOTIFYs go one at a time (the next after the last one's response), a later
//!   status replacing one not yet sent, so a lossy network never reorders them.
//! - **Replaces** on an incoming INVITE (RFC 3891 §3): the dialog it names is looked up
//!   (481 when unknown or an early dialog we did not initiate, 486 for `early-only` on
//!   a confirmed dialog, 603 when it is ending); the call is raised with
//!   [`CallReceived::replaces`](crate::CallReceived::replaces), and answering it ends
//!   the replaced call (BYE, or CANCEL while ours is early) with reason `Replaced`.

use super::{Engine, Reason, Timer};
use crate::body;
use crate::options::{CallEstablishOptions, CallTerminateOptions, SignalingHeader, to_wire};
use crate::refer::{self, ReferTo, Replaces, SubState, SubscriptionState, UserToUser};
use crate::state::{CallState, Operation};
use crate::types::{
    CallError, CallEvent, CallHandle, CallKind, ConversationSettings, EndpointHandle,
    EstablishFailure, TransferId,
};
use bytes::Bytes;
use foldhash::HashMap;
use sip_dialog::{Body, DialogState, Reply, SessionId};
use sip_message::{HeaderName, Method, Request, Response};
use sip_transaction::TransactionKey;
use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// How long the application has to answer a REFER ([`CallEvent::TransferReceived`])
/// before the engine declines it with 603 (RFC 3515 §2.4.2: a REFER is answered at
/// once; its non-INVITE transaction would time out after 64·T1).
pub const REFER_ANSWER_TIME: Duration = Duration::from_secs(1);

/// How long the transferor waits for the final NOTIFY when the transferee names no
/// subscription expiry; then [`TransferOutcome::NoAnswer`] with status 408.
pub const TRANSFER_SUBSCRIPTION_TIME: Duration = Duration::from_secs(120);

/// Beyond the notifier's `expires`: time for a final NOTIFY that is being retransmitted
/// (64·T1) to arrive.
const NOTIFY_GRACE: Duration = Duration::from_secs(32);

/// The transferee's subscription outlives the new call's establish time limit by this
/// much, so its final NOTIFY always comes first.
const SUBSCRIPTION_MARGIN: Duration = Duration::from_secs(30);

/// The kind of transfer (UCMA's `CallTransferType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum CallTransferType {
    /// Blind: the REFER names the target ([`Engine::transfer`]).
    #[default]
    Unattended,
    /// Attended (consultative): the REFER names the consultation call's peer with
    /// Replaces ([`Engine::transfer_attended`]).
    Attended,
}

/// Options of [`Engine::transfer`] and [`Engine::transfer_attended`] (UCMA's
/// `CallTransferOptions`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct CallTransferOptions {
    /// `Unattended` for `transfer`; `transfer_attended` sets `Attended`.
    pub transfer_type: CallTransferType,
    /// Added to the REFER and, as URI headers of the Refer-To, to the transferee's
    /// INVITE.
    pub headers: Vec<SignalingHeader>,
    /// The Referred-By (RFC 3892), a URI or name-addr; `None`: the endpoint's owner.
    pub referred_by: Option<String>,
    /// A User-to-User value (RFC 7433), e.g. `56a3;encoding=hex;purpose=isdn-uui`: on
    /// the REFER and in the Refer-To.
    pub user_to_user: Option<String>,
    /// Keep the call after a successful transfer (it goes back to `Established`);
    /// by default it is ended with BYE (RFC 5589 §6).
    pub keep_call: bool,
}

impl CallTransferOptions {
    pub fn new() -> CallTransferOptions {
        CallTransferOptions::default()
    }

    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push(SignalingHeader::new(name, value));
        self
    }

    pub fn referred_by(mut self, referred_by: impl Into<String>) -> Self {
        self.referred_by = Some(referred_by.into());
        self
    }

    pub fn user_to_user(mut self, value: impl Into<String>) -> Self {
        self.user_to_user = Some(value.into());
        self
    }

    pub fn keep_call(mut self, keep: bool) -> Self {
        self.keep_call = keep;
        self
    }
}

/// Where our transfer is ([`CallEvent::TransferStateChanged`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TransferState {
    /// The REFER is out.
    Requested,
    /// The transferee accepted it (202, or a first NOTIFY).
    Accepted,
    /// A NOTIFY reported the target's provisional status.
    Progress,
}

/// How our transfer ended ([`CallEvent::TransferCompleted`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TransferOutcome {
    /// The target answered (2xx).
    Accepted,
    /// 486 or 600.
    Busy,
    /// 408 or 480, or no final NOTIFY before the subscription expired.
    NoAnswer,
    /// 603 or 403.
    Declined,
    /// The REFER itself was refused (4xx-6xx): the final status is the REFER's.
    Refused,
    /// Anything else; the final status says what.
    Failed,
}

impl TransferOutcome {
    /// The outcome of the target's final status (from the NOTIFY sipfrag).
    pub fn of_final_status(status: u16) -> TransferOutcome {
        match status {
            200..=299 => TransferOutcome::Accepted,
            486 | 600 => TransferOutcome::Busy,
            408 | 480 => TransferOutcome::NoAnswer,
            403 | 603 => TransferOutcome::Declined,
            _ => TransferOutcome::Failed,
        }
    }
}

/// What a REFER asks (returned by [`Engine::accept_transfer_manually`]): the
/// application places the new call itself with these.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransferRequest {
    /// The Refer-To URI without its headers.
    pub target: String,
    pub replaces: Option<Replaces>,
    pub referred_by: Option<String>,
    /// Refer-To URI headers (unsafe ones dropped) and the REFER's `X-` headers.
    pub headers: Vec<SignalingHeader>,
    pub user_to_user: Option<String>,
}

/// A transfer of ours (we sent the REFER).
#[derive(Debug)]
struct Outgoing {
    call: CallHandle,
    /// The REFER, until its final response.
    refer_tx: Option<TransactionKey>,
    /// Its CSeq: NOTIFYs name it as `Event: refer;id=N` (RFC 3515 §2.4.6).
    refer_seq: u32,
    /// The CSeq was confirmed by the REFER's 2xx (an authenticated retry takes a new
    /// one).
    seq_known: bool,
    state: TransferState,
    keep_call: bool,
}

/// A NOTIFY to send.
#[derive(Debug, Clone)]
struct Notify {
    status: u16,
    phrase: String,
    /// Ends the subscription with this reason (RFC 6665 §4.2.2).
    end: Option<&'static str>,
}

/// A transfer the peer asked of us (it sent the REFER).
#[derive(Debug)]
struct Incoming {
    call: CallHandle,
    /// The REFER, until we answer it.
    refer_tx: Option<TransactionKey>,
    refer_seq: u32,
    request: TransferRequest,
    /// When the subscription expires (set when accepted).
    expires_at: Option<Instant>,
    /// The NOTIFY in flight.
    notify_tx: Option<TransactionKey>,
    /// The next NOTIFY, sent once the one in flight is answered.
    queued: Option<Notify>,
    /// The final NOTIFY is queued or sent: nothing more goes.
    terminated: bool,
    last_status: u16,
    /// The REFER said `Refer-Sub: false` (RFC 4488 §4): no subscription, no NOTIFY.
    no_subscription: bool,
}

#[derive(Debug)]
enum Work {
    /// A call placed for a transfer moved on: NOTIFY the transferor.
    Notify {
        transfer: TransferId,
        status: u16,
        phrase: String,
    },
    /// A call left `Incoming` (it was answered): if it replaces another, end that one.
    Answered(CallHandle),
}

/// The engine's transfer bookkeeping.
#[derive(Debug, Default)]
pub(super) struct Transfers {
    outgoing: HashMap<TransferId, Outgoing>,
    incoming: HashMap<TransferId, Incoming>,
    /// A call placed by `accept_transfer` → the transfer it reports to.
    targets: HashMap<CallHandle, TransferId>,
    /// An incoming call with Replaces → the call it replaces.
    replacing: HashMap<CallHandle, CallHandle>,
    work: VecDeque<Work>,
}

impl Transfers {
    /// `call` was answered (it left `Incoming`).
    pub(super) fn on_answered(&mut self, call: CallHandle) {
        if self.replacing.contains_key(&call) {
            self.work.push_back(Work::Answered(call));
        }
    }
}

fn text(value: &Bytes) -> String {
    String::from_utf8_lossy(value).trim().to_owned()
}

/// Headers the transfer writes itself: set through the options' fields instead.
fn is_transfer_header(name: &str) -> bool {
    [
        "refer-to",
        "r",
        "referred-by",
        "b",
        "replaces",
        "user-to-user",
    ]
    .iter()
    .any(|h| h.eq_ignore_ascii_case(name.trim()))
}

/// `refer;id=5` → (package, id).
fn parse_event(value: &str) -> (String, Option<u32>) {
    let mut parts = value.split(';');
    let package = parts.next().unwrap_or_default().trim().to_ascii_lowercase();
    let id = parts.find_map(|p| {
        let (name, value) = p.split_once('=')?;
        name.trim()
            .eq_ignore_ascii_case("id")
            .then(|| value.trim().parse().ok())
            .flatten()
    });
    (package, id)
}

/// The status a NOTIFY reports for a failed establish.
fn final_of(failure: &EstablishFailure) -> (u16, String) {
    match failure {
        EstablishFailure::Refused {
            status,
            reason_phrase,
            ..
        } => (*status, reason_phrase.clone()),
        EstablishFailure::Redirected { status, .. } => (*status, String::new()),
        EstablishFailure::Timeout => (408, String::new()),
        EstablishFailure::TransportError => (503, String::new()),
        EstablishFailure::Media { .. } => (488, String::new()),
        EstablishFailure::Cancelled | EstablishFailure::Ended { .. } => (487, String::new()),
    }
}

fn bad_request(problem: &CallError) -> Reply {
    let problem = match problem {
        CallError::InvalidArgument { what, problem } => format!("Bad {what}: {problem}"),
        other => other.to_string(),
    };
    Reply::new(400).with_reason(problem.replace(['\r', '\n'], " "))
}

impl Engine {
    // ---- the transferor

    /// Blind transfer (RFC 5589 §6): asks the peer of `call` (established) to call
    /// `target` (a URI), by REFER with `Refer-To: <target?headers>` and Referred-By.
    /// The call is `Transferring` until [`CallEvent::TransferCompleted`].
    pub fn transfer(
        &mut self,
        now: Instant,
        call: CallHandle,
        target: &str,
        options: CallTransferOptions,
    ) -> Result<TransferId, CallError> {
        self.check(call, Operation::Transfer)?;
        if options.transfer_type != CallTransferType::Unattended {
            return Err(CallError::InvalidArgument {
                what: "transfer type",
                problem: "an attended transfer names its consultation call: use transfer_attended"
                    .into(),
            });
        }
        let refer_to = ReferTo::new(target).map_err(|error| CallError::InvalidArgument {
            what: "transfer target",
            problem: match error {
                CallError::InvalidArgument { problem, .. } => problem,
                other => other.to_string(),
            },
        })?;
        self.send_refer(now, call, refer_to, options)
    }

    /// Attended transfer (RFC 5589 §7): asks the peer of `call` to call the peer of
    /// `consultation` (another established call of ours) with a Replaces naming the
    /// consultation's dialog as that peer sees it (Call-ID, to-tag = its tag, from-tag
    /// = ours, RFC 3891 §6.1), so the new call takes the consultation's place.
    pub fn transfer_attended(
        &mut self,
        now: Instant,
        call: CallHandle,
        consultation: CallHandle,
        mut options: CallTransferOptions,
    ) -> Result<TransferId, CallError> {
        self.check(call, Operation::Transfer)?;
        if consultation == call {
            return Err(CallError::InvalidArgument {
                what: "consultation call",
                problem: "it is the call being transferred".into(),
            });
        }
        let c = self
            .calls
            .get(&consultation)
            .ok_or(CallError::NoSuchCall(consultation))?;
        let not_established = CallError::InvalidState {
            operation: Operation::Transfer,
            state: c.state,
        };
        if c.state != CallState::Established {
            return Err(not_established);
        }
        let session = c.session.ok_or(CallError::NoSuchCall(consultation))?;
        let Some(dialog) = self
            .core
            .user_agent_ref()
            .dialogs(session)
            .find(|d| d.state == DialogState::Confirmed)
        else {
            return Err(not_established);
        };
        let lossy = |b: &Bytes| String::from_utf8_lossy(b).into_owned();
        let replaces = Replaces {
            call_id: lossy(&dialog.id.call_id),
            to_tag: lossy(&dialog.id.remote_tag),
            from_tag: lossy(&dialog.id.local_tag),
            early_only: false,
        };
        let mut refer_to = ReferTo::new(&lossy(&dialog.remote_target))?;
        refer_to.replaces = Some(replaces);
        options.transfer_type = CallTransferType::Attended;
        self.send_refer(now, call, refer_to, options)
    }

    fn send_refer(
        &mut self,
        now: Instant,
        call: CallHandle,
        mut refer_to: ReferTo,
        options: CallTransferOptions,
    ) -> Result<TransferId, CallError> {
        if let Some(h) = options.headers.iter().find(|h| is_transfer_header(&h.name)) {
            let name = h.name.trim();
            let field =
                if name.eq_ignore_ascii_case("Referred-By") || name.eq_ignore_ascii_case("b") {
                    "referred_by"
                } else if name.eq_ignore_ascii_case("User-to-User") {
                    "user_to_user"
                } else {
                    return Err(CallError::ForbiddenHeader {
                        name: h.name.clone(),
                    });
                };
            return Err(CallError::InvalidArgument {
                what: "transfer header",
                problem: format!("set `{name}` with CallTransferOptions::{field}"),
            });
        }
        let mut headers = to_wire(&options.headers)?;
        for h in &options.headers {
            refer_to
                .headers
                .push((h.name.trim().to_owned(), h.value.trim().to_owned()));
        }
        if let Some(value) = &options.user_to_user {
            let uui = UserToUser::parse(value)?.to_string();
            headers.push((HeaderName::parse(b"User-to-User"), Bytes::from(uui.clone())));
            refer_to.headers.push(("User-to-User".into(), uui));
        }
        let c = self.calls.get(&call).ok_or(CallError::NoSuchCall(call))?;
        let session = c.session.ok_or(CallError::NoSuchCall(call))?;
        let referred_by = match &options.referred_by {
            Some(value) if value.bytes().any(|b| b == b'\r' || b == b'\n' || b == 0) => {
                return Err(CallError::InvalidHeader {
                    name: "Referred-By".into(),
                    problem: "the value contains CR, LF or NUL",
                });
            }
            Some(value) if value.contains('<') => value.trim().to_owned(),
            Some(value) => format!("<{}>", value.trim()),
            None => self
                .endpoints
                .get(&c.endpoint)
                .map(|e| format!("<{}>", e.owner.uri))
                .ok_or(CallError::NoSuchEndpoint(c.endpoint))?,
        };
        headers.insert(0, (HeaderName::ReferTo, Bytes::from(refer_to.to_string())));
        headers.insert(1, (HeaderName::ReferredBy, Bytes::from(referred_by)));
        let refer_seq = self
            .core
            .user_agent_ref()
            .dialogs(session)
            .next()
            .map_or(0, |d| d.peek_cseq());
        let tx = self
            .core
            .user_agent()
            .request(now, session, Method::Refer, headers, None)?;
        let id = TransferId(self.next());
        self.transfers.outgoing.insert(
            id,
            Outgoing {
                call,
                refer_tx: Some(tx),
                refer_seq,
                seq_known: false,
                state: TransferState::Requested,
                keep_call: options.keep_call,
            },
        );
        self.arm(
            call,
            Timer::TransferGuard(id),
            now + TRANSFER_SUBSCRIPTION_TIME,
        );
        self.transition(call, CallState::Transferring, Reason::TransferStarted);
        self.emit(
            call,
            CallEvent::TransferStateChanged {
                transfer: id,
                state: TransferState::Requested,
                status: None,
            },
        );
        self.core.pump(now);
        self.drain(now);
        Ok(id)
    }

    /// Our transfer ended: the one `TransferCompleted`, and the call is ended (a 2xx,
    /// RFC 5589 §6) or `Established` again.
    fn complete_outgoing(
        &mut self,
        now: Instant,
        id: TransferId,
        final_status: u16,
        outcome: TransferOutcome,
        reason_phrase: Option<String>,
    ) {
        let Some(transfer) = self.transfers.outgoing.remove(&id) else {
            return;
        };
        let call = transfer.call;
        if let Some(c) = self.calls.get_mut(&call) {
            c.clear(Timer::TransferGuard(id));
        }
        tracing::info!(%call, %id, final_status, ?outcome, "transfer completed");
        let transferring = self.calls.get(&call).map(|c| c.state) == Some(CallState::Transferring);
        let hang_up = outcome == TransferOutcome::Accepted && !transfer.keep_call;
        // A call that goes on is `Established` again before `TransferCompleted` is
        // raised, so whoever reacts to the outcome sees the call as it now is.
        if transferring && !hang_up {
            let reason = if outcome == TransferOutcome::Accepted {
                Reason::Transferred
            } else {
                Reason::TransferFailed {
                    status: final_status,
                }
            };
            self.transition(call, CallState::Established, reason);
        }
        self.emit(
            call,
            CallEvent::TransferCompleted {
                transfer: id,
                final_status,
                reason: outcome,
                reason_phrase,
            },
        );
        if transferring && hang_up {
            if let Some(c) = self.calls.get_mut(&call) {
                c.ending = Some(Reason::Transferred);
            }
            if let Err(error) = self.terminate(now, call, CallTerminateOptions::new()) {
                tracing::debug!(%error, %call, "BYE after the transfer not sent");
            }
        }
    }

    /// A NOTIFY in `call`'s dialog (RFC 3515 §2.4.4): progress of our transfer.
    fn on_notify(
        &mut self,
        now: Instant,
        call: Option<CallHandle>,
        tx: &TransactionKey,
        request: &Request,
    ) {
        let Some(event) = request.headers.get(&HeaderName::Event) else {
            return self.respond(now, tx, Reply::new(400).with_reason("Missing Event"));
        };
        let (package, event_id) = parse_event(&text(event));
        if package != "refer" {
            return self.respond(now, tx, Reply::new(489));
        }
        let Some(call) = call else {
            return self.respond(now, tx, Reply::new(481));
        };
        let mut ours: Vec<(TransferId, u32, bool)> = self
            .transfers
            .outgoing
            .iter()
            .filter(|(_, o)| o.call == call)
            .map(|(id, o)| (*id, o.refer_seq, o.seq_known))
            .collect();
        ours.sort();
        let found = match event_id {
            Some(seq) => ours
                .iter()
                .find(|(_, s, _)| *s == seq)
                .or_else(|| {
                    // The REFER may have been re-sent with credentials (a new CSeq)
                    // and its 2xx not arrived yet.
                    let unsure: Vec<_> = ours.iter().filter(|(_, _, known)| !known).collect();
                    (unsure.len() == 1)
                        .then(|| unsure.first().copied())
                        .flatten()
                })
                .map(|(id, _, _)| *id),
            None => ours.last().map(|(id, _, _)| *id),
        };
        let Some(id) = found else {
            return self.respond(now, tx, Reply::new(481));
        };
        let state = match request.headers.get(&HeaderName::SubscriptionState) {
            Some(value) => match SubscriptionState::parse(&text(value)) {
                Ok(state) => state,
                Err(error) => return self.respond(now, tx, bad_request(&error)),
            },
            None => SubscriptionState {
                state: SubState::Active,
                reason: None,
                expires: None,
                retry_after: None,
            },
        };
        let status = if request.body.is_empty() {
            None
        } else {
            let content_type = request
                .headers
                .get(&HeaderName::ContentType)
                .map(text)
                .unwrap_or_default();
            if body::essence(&content_type) != "message/sipfrag" {
                return self.respond(
                    now,
                    tx,
                    Reply::new(415).with_header(HeaderName::Accept, "message/sipfrag"),
                );
            }
            match refer::parse_sipfrag_status(&request.body) {
                Ok((status, phrase)) => Some((
                    status,
                    refer::sipfrag_reason_text(&request.body)
                        .or_else(|| (!phrase.is_empty()).then_some(phrase)),
                )),
                Err(error) => return self.respond(now, tx, bad_request(&error)),
            }
        };
        self.respond(now, tx, Reply::new(200));
        let Some(transfer) = self.transfers.outgoing.get_mut(&id) else {
            return;
        };
        if transfer.state == TransferState::Requested {
            transfer.state = TransferState::Accepted;
            self.emit(
                call,
                CallEvent::TransferStateChanged {
                    transfer: id,
                    state: TransferState::Accepted,
                    status: None,
                },
            );
        }
        match status {
            Some((status, phrase)) if status >= 200 => {
                return self.complete_outgoing(
                    now,
                    id,
                    status,
                    TransferOutcome::of_final_status(status),
                    phrase,
                );
            }
            // A provisional status in the NOTIFY that ends the subscription is no
            // progress: the transfer is over (below).
            Some((status, _)) if state.state != SubState::Terminated => {
                if let Some(transfer) = self.transfers.outgoing.get_mut(&id) {
                    transfer.state = TransferState::Progress;
                }
                self.emit(
                    call,
                    CallEvent::TransferStateChanged {
                        transfer: id,
                        state: TransferState::Progress,
                        status: Some(status),
                    },
                );
            }
            _ => {}
        }
        if state.state == SubState::Terminated {
            // Ended without a final status (RFC 6665 §4.1.3).
            let (status, outcome) = if state.reason.as_deref() == Some("timeout") {
                (408, TransferOutcome::NoAnswer)
            } else {
                (487, TransferOutcome::Failed)
            };
            return self.complete_outgoing(now, id, status, outcome, None);
        }
        if let Some(expires) = state.expires {
            self.arm(
                call,
                Timer::TransferGuard(id),
                now + Duration::from_secs(u64::from(expires)) + NOTIFY_GRACE,
            );
        }
    }

    // ---- the transferee

    /// A REFER in `call`'s dialog (RFC 3515 §2.4.2): checked, then raised as
    /// [`CallEvent::TransferReceived`] for the application to answer.
    fn on_refer(&mut self, now: Instant, call: CallHandle, tx: &TransactionKey, request: &Request) {
        let refer_to = match request.headers.count(&HeaderName::ReferTo) {
            0 => return self.respond(now, tx, Reply::new(400).with_reason("Missing Refer-To")),
            1 => request
                .headers
                .get(&HeaderName::ReferTo)
                .map(text)
                .unwrap_or_default(),
            _ => {
                return self.respond(
                    now,
                    tx,
                    Reply::new(400).with_reason("More than one Refer-To"),
                );
            }
        };
        let refer_to = match ReferTo::parse(&refer_to) {
            Ok(r) => r,
            Err(error) => return self.respond(now, tx, bad_request(&error)),
        };
        let mut uui = None;
        let mut headers: Vec<SignalingHeader> = Vec::new();
        for (name, value) in refer_to.headers {
            if name.eq_ignore_ascii_case("User-to-User") {
                uui.get_or_insert(value);
                continue;
            }
            let header = SignalingHeader::new(name, value);
            // RFC 3261 §19.1.5: URI headers are honoured one by one; those the stack
            // writes (From, Call-ID, Via...), a body, or anything malformed are not.
            let safe = !header.name.eq_ignore_ascii_case("body")
                && !is_transfer_header(&header.name)
                && to_wire(std::slice::from_ref(&header)).is_ok();
            if safe {
                headers.push(header);
            } else {
                tracing::debug!(name = %header.name, "Refer-To URI header not honoured");
            }
        }
        for header in body::headers_of(&request.headers) {
            let custom = header
                .name
                .get(..2)
                .is_some_and(|p| p.eq_ignore_ascii_case("x-"));
            if custom
                && !headers
                    .iter()
                    .any(|h| h.name.eq_ignore_ascii_case(&header.name))
            {
                headers.push(header);
            }
        }
        let uui = uui.or_else(|| {
            request
                .headers
                .get(&HeaderName::parse(b"User-to-User"))
                .map(text)
        });
        let user_to_user = match uui.as_deref().map(UserToUser::parse).transpose() {
            Ok(uui) => uui.map(|u| u.to_string()),
            Err(error) => return self.respond(now, tx, bad_request(&error)),
        };
        let referred_by = request.headers.get(&HeaderName::ReferredBy).map(text);
        let transfer_request = TransferRequest {
            target: refer_to.uri,
            replaces: refer_to.replaces,
            referred_by,
            headers,
            user_to_user,
        };
        let id = TransferId(self.next());
        self.transfers.incoming.insert(
            id,
            Incoming {
                call,
                refer_tx: Some(tx.clone()),
                refer_seq: request.headers.cseq().map(|c| c.seq).unwrap_or_default(),
                request: transfer_request.clone(),
                expires_at: None,
                notify_tx: None,
                queued: None,
                terminated: false,
                last_status: 100,
                no_subscription: request
                    .headers
                    .get(&HeaderName::parse(b"Refer-Sub"))
                    .is_some_and(|v| text(v).eq_ignore_ascii_case("false")),
            },
        );
        self.arm(call, Timer::ReferAnswer(id), now + REFER_ANSWER_TIME);
        self.emit(
            call,
            CallEvent::TransferReceived {
                transfer: id,
                target: transfer_request.target,
                replaces: transfer_request.replaces,
                referred_by: transfer_request.referred_by,
                headers: transfer_request.headers,
                user_to_user: transfer_request.user_to_user,
            },
        );
    }

    /// The peer's transfer on `call`, still unanswered: what it asks, and the call's
    /// endpoint.
    fn unanswered_refer(
        &self,
        call: CallHandle,
        transfer: TransferId,
    ) -> Result<(TransferRequest, EndpointHandle), CallError> {
        let incoming = self
            .transfers
            .incoming
            .get(&transfer)
            .filter(|i| i.call == call)
            .ok_or(CallError::NoSuchTransfer(transfer))?;
        if incoming.refer_tx.is_none() {
            return Err(CallError::InvalidArgument {
                what: "transfer",
                problem: format!("the REFER of {transfer} was already answered"),
            });
        }
        let endpoint = self
            .calls
            .get(&call)
            .ok_or(CallError::NoSuchCall(call))?
            .endpoint;
        Ok((incoming.request.clone(), endpoint))
    }

    /// Accepts the peer's transfer: 202, NOTIFY `100 Trying`, and a new audio/video call
    /// (in a new conversation of the same endpoint) to the target, its INVITE carrying
    /// Referred-By, Replaces and the Refer-To headers, then `options`' headers. Each
    /// provisional and the final response of the new call go back to the transferor by
    /// NOTIFY (the final one ends the subscription). Returns the new call.
    pub fn accept_transfer(
        &mut self,
        now: Instant,
        call: CallHandle,
        transfer: TransferId,
        options: CallEstablishOptions,
    ) -> Result<CallHandle, CallError> {
        let (request, endpoint) = self.unanswered_refer(call, transfer)?;
        // Checked before the REFER is answered: nothing goes out for a transfer we
        // could not carry out.
        self.route(&request.target, options.destination)?;
        let mut options = options;
        let mut headers = request.headers.clone();
        if let Some(referred_by) = &request.referred_by {
            headers.push(SignalingHeader::new("Referred-By", referred_by.clone()));
        }
        if let Some(replaces) = &request.replaces {
            headers.push(SignalingHeader::new("Replaces", replaces.to_string()));
        }
        if let Some(uui) = &request.user_to_user {
            headers.push(SignalingHeader::new("User-to-User", uui.clone()));
        }
        headers.append(&mut options.headers);
        to_wire(&headers)?;
        options.headers = headers;
        let limit = options
            .max_establish_time
            .unwrap_or(self.config.establish_timeout);
        let conversation = self.new_conversation(endpoint, ConversationSettings::default())?;
        let new_call = self.new_call(conversation, CallKind::AudioVideo)?;
        self.answer_refer(now, transfer, limit + SUBSCRIPTION_MARGIN);
        self.transfers.targets.insert(new_call, transfer);
        if let Err(error) = self.establish(now, new_call, &request.target, options) {
            self.transfers.targets.remove(&new_call);
            self.queue_notify(now, transfer, 503, "", Some("noresource"));
            if let Err(error) = self.terminate(now, new_call, CallTerminateOptions::new()) {
                tracing::debug!(%error, "transfer call not cleaned up");
            }
            self.drain(now);
            return Err(error);
        }
        self.drain(now);
        Ok(new_call)
    }

    /// Accepts the peer's transfer without placing the call: 202 and NOTIFY
    /// `100 Trying`. The application places the new call (a B2BUA re-bridges) and
    /// reports its progress with [`notify_transfer`](Self::notify_transfer).
    pub fn accept_transfer_manually(
        &mut self,
        now: Instant,
        call: CallHandle,
        transfer: TransferId,
    ) -> Result<TransferRequest, CallError> {
        let (request, _) = self.unanswered_refer(call, transfer)?;
        let lifetime = self.config.establish_timeout + SUBSCRIPTION_MARGIN;
        self.answer_refer(now, transfer, lifetime);
        self.drain(now);
        Ok(request)
    }

    /// Reports the progress of a transfer accepted manually: a NOTIFY with
    /// `SIP/2.0 <status> <reason_phrase>`; a final status (200-699) ends the
    /// subscription.
    pub fn notify_transfer(
        &mut self,
        now: Instant,
        call: CallHandle,
        transfer: TransferId,
        status: u16,
        reason_phrase: &str,
    ) -> Result<(), CallError> {
        if !(100..=699).contains(&status) {
            return Err(CallError::InvalidArgument {
                what: "status",
                problem: format!("{status} is not a SIP status"),
            });
        }
        let incoming = self
            .transfers
            .incoming
            .get(&transfer)
            .filter(|i| i.call == call)
            .ok_or(CallError::NoSuchTransfer(transfer))?;
        if incoming.refer_tx.is_some() {
            return Err(CallError::InvalidArgument {
                what: "transfer",
                problem: format!("{transfer} is not accepted yet"),
            });
        }
        if incoming.terminated {
            return Err(CallError::InvalidArgument {
                what: "transfer",
                problem: format!("a final status of {transfer} was already reported"),
            });
        }
        let end = (status >= 200).then_some("noresource");
        self.queue_notify(now, transfer, status, reason_phrase, end);
        self.drain(now);
        Ok(())
    }

    /// Declines the peer's transfer with a final 4xx-6xx to its REFER (603 Decline,
    /// usually).
    pub fn decline_transfer(
        &mut self,
        now: Instant,
        call: CallHandle,
        transfer: TransferId,
        status: u16,
    ) -> Result<(), CallError> {
        if !(400..=699).contains(&status) {
            return Err(CallError::InvalidArgument {
                what: "status",
                problem: format!("{status} is not a 4xx-6xx final response"),
            });
        }
        self.unanswered_refer(call, transfer)?;
        if let Some(tx) = self
            .transfers
            .incoming
            .get_mut(&transfer)
            .and_then(|i| i.refer_tx.take())
        {
            self.respond(now, &tx, Reply::new(status));
        }
        self.forget_incoming(transfer);
        self.drain(now);
        Ok(())
    }

    /// 202 to the REFER and the first NOTIFY (RFC 3515 §2.4.4: `100 Trying`).
    fn answer_refer(&mut self, now: Instant, id: TransferId, lifetime: Duration) {
        let Some(incoming) = self.transfers.incoming.get_mut(&id) else {
            return;
        };
        let Some(tx) = incoming.refer_tx.take() else {
            return;
        };
        let call = incoming.call;
        let expires_at = now + lifetime;
        incoming.expires_at = Some(expires_at);
        if let Some(c) = self.calls.get_mut(&call) {
            c.clear(Timer::ReferAnswer(id));
        }
        if incoming.no_subscription {
            // RFC 4488 §4: accepted without the implicit subscription.
            let reply = Reply::new(202).with_header(HeaderName::parse(b"Refer-Sub"), "false");
            self.respond(now, &tx, reply);
            return self.forget_incoming(id);
        }
        self.arm(call, Timer::ReferExpiry(id), expires_at);
        self.respond(now, &tx, Reply::new(202));
        self.queue_notify(now, id, 100, "", None);
    }

    /// Queues a NOTIFY (replacing one not yet sent) and sends it if none is in flight.
    fn queue_notify(
        &mut self,
        now: Instant,
        id: TransferId,
        status: u16,
        phrase: &str,
        end: Option<&'static str>,
    ) {
        let Some(incoming) = self.transfers.incoming.get_mut(&id) else {
            return;
        };
        if incoming.terminated {
            return;
        }
        incoming.terminated = end.is_some();
        incoming.queued = Some(Notify {
            status,
            phrase: phrase.to_owned(),
            end,
        });
        if incoming.notify_tx.is_none() {
            self.send_queued_notify(now, id);
        }
    }

    fn send_queued_notify(&mut self, now: Instant, id: TransferId) {
        let Some(incoming) = self.transfers.incoming.get_mut(&id) else {
            return;
        };
        let Some(notify) = incoming.queued.take() else {
            if incoming.terminated {
                self.forget_incoming(id);
            }
            return;
        };
        let state = match notify.end {
            Some(reason) => SubscriptionState::terminated(reason),
            None => {
                let left = incoming
                    .expires_at
                    .map_or(TRANSFER_SUBSCRIPTION_TIME, |at| {
                        at.saturating_duration_since(now)
                    });
                SubscriptionState::active(u32::try_from(left.as_secs().max(1)).unwrap_or(u32::MAX))
            }
        };
        let headers = vec![
            (
                HeaderName::Event,
                Bytes::from(format!("refer;id={}", incoming.refer_seq)),
            ),
            (
                HeaderName::SubscriptionState,
                Bytes::from(state.to_string()),
            ),
        ];
        let frag = refer::sipfrag(notify.status, &notify.phrase);
        incoming.last_status = notify.status;
        let session: Option<SessionId> = self.calls.get(&incoming.call).and_then(|c| c.session);
        let sent = session
            .ok_or(CallError::NoSuchCall(incoming.call))
            .and_then(|session| {
                self.core
                    .user_agent()
                    .request(
                        now,
                        session,
                        Method::Notify,
                        headers,
                        Some(Body::new(refer::SIPFRAG, frag)),
                    )
                    .map_err(CallError::from)
            });
        match sent {
            Ok(tx) => {
                if let Some(incoming) = self.transfers.incoming.get_mut(&id) {
                    incoming.notify_tx = Some(tx);
                }
                self.core.pump(now);
            }
            Err(error) => {
                tracing::debug!(%error, %id, "NOTIFY not sent; the subscription is over");
                self.forget_incoming(id);
            }
        }
    }

    /// The final response to one of our NOTIFYs: the next one goes, or the
    /// subscription is over (a final NOTIFY answered, or an error: RFC 6665 §4.2.2).
    fn notify_answered(&mut self, now: Instant, id: TransferId, status: u16) {
        let Some(incoming) = self.transfers.incoming.get_mut(&id) else {
            return;
        };
        incoming.notify_tx = None;
        if status >= 300 {
            tracing::debug!(%id, status, "NOTIFY refused: the subscription is over");
            return self.forget_incoming(id);
        }
        self.send_queued_notify(now, id);
    }

    fn forget_incoming(&mut self, id: TransferId) {
        if let Some(incoming) = self.transfers.incoming.remove(&id)
            && let Some(c) = self.calls.get_mut(&incoming.call)
        {
            c.clear(Timer::ReferAnswer(id));
            c.clear(Timer::ReferExpiry(id));
        }
        self.transfers.targets.retain(|_, t| *t != id);
    }

    // ---- Replaces (RFC 3891 §3)

    /// The call an INVITE's Replaces names, or the response refusing the INVITE.
    pub(super) fn replaced_call(&self, request: &Request) -> Result<Option<CallHandle>, Reply> {
        let value = match request.headers.count(&HeaderName::Replaces) {
            0 => return Ok(None),
            1 => request
                .headers
                .get(&HeaderName::Replaces)
                .map(text)
                .unwrap_or_default(),
            _ => return Err(Reply::new(400).with_reason("More than one Replaces")),
        };
        let replaces = Replaces::parse(&value).map_err(|e| bad_request(&e))?;
        self.call_named_by(&replaces).map(Some)
    }

    /// The call whose dialog `replaces` names, as the party receiving the Replaces
    /// (RFC 3891 §3): the Call-ID, `to-tag` our tag, `from-tag` the peer's. Refused with
    /// 481 when there is no such dialog or it is an early one we did not initiate, 486
    /// for `early-only` on a confirmed dialog, 603 when the call is ending. Shared by an
    /// INVITE with Replaces and a REFER whose Refer-To names one of our dialogs.
    pub(super) fn call_named_by(&self, replaces: &Replaces) -> Result<CallHandle, Reply> {
        let ua = self.core.user_agent_ref();
        let found = self.calls.iter().find_map(|(&handle, c)| {
            if c.sip_call_id != replaces.call_id {
                return None;
            }
            let dialog = ua.dialogs(c.session?).find(|d| {
                d.id.local_tag[..] == *replaces.to_tag.as_bytes()
                    && d.id.remote_tag[..] == *replaces.from_tag.as_bytes()
            })?;
            Some((handle, c.state, c.direction, dialog.state))
        });
        let Some((handle, state, direction, dialog)) = found else {
            return Err(Reply::new(481));
        };
        let confirmed = match state {
            CallState::Terminating | CallState::Terminated => return Err(Reply::new(603)),
            // An early dialog we did not initiate (we are its UAS).
            CallState::Idle | CallState::Incoming => return Err(Reply::new(481)),
            CallState::Establishing => {
                direction == super::Direction2::Incoming || dialog == DialogState::Confirmed
            }
            _ => true,
        };
        if confirmed && replaces.early_only {
            return Err(Reply::new(486));
        }
        Ok(handle)
    }

    /// Records that the incoming `call` replaces `old`.
    pub(super) fn note_replacement(&mut self, call: CallHandle, old: Option<CallHandle>) {
        if let Some(old) = old {
            self.transfers.replacing.insert(call, old);
        }
    }

    // ---- hooks from the engine

    /// REFER and NOTIFY in a dialog (before the generic content checks: a NOTIFY
    /// carries `message/sipfrag`).
    pub(super) fn on_transfer_request(
        &mut self,
        now: Instant,
        call: Option<CallHandle>,
        tx: &TransactionKey,
        request: &Request,
    ) {
        match (&request.method, call) {
            (Method::Notify, _) => self.on_notify(now, call, tx, request),
            (_, Some(call)) => self.on_refer(now, call, tx, request),
            (_, None) => self.respond(now, tx, Reply::new(481)),
        }
    }

    /// The final response to a REFER or NOTIFY of ours; false when `tx` is neither.
    pub(super) fn on_transfer_response(
        &mut self,
        now: Instant,
        tx: &TransactionKey,
        status: u16,
        response: Option<&Response>,
    ) -> bool {
        let refer = self
            .transfers
            .outgoing
            .iter()
            .find(|(_, o)| o.refer_tx.as_ref() == Some(tx))
            .map(|(id, _)| *id);
        if let Some(id) = refer {
            if status >= 300 {
                let phrase = response
                    .map(|r| String::from_utf8_lossy(&r.reason).trim().to_owned())
                    .filter(|p| !p.is_empty());
                self.complete_outgoing(now, id, status, TransferOutcome::Refused, phrase);
                return true;
            }
            let Some(transfer) = self.transfers.outgoing.get_mut(&id) else {
                return true;
            };
            transfer.refer_tx = None;
            if let Some(seq) = response.and_then(|r| r.headers.cseq().ok()) {
                transfer.refer_seq = seq.seq;
            }
            transfer.seq_known = true;
            if transfer.state == TransferState::Requested {
                transfer.state = TransferState::Accepted;
                let call = transfer.call;
                self.emit(
                    call,
                    CallEvent::TransferStateChanged {
                        transfer: id,
                        state: TransferState::Accepted,
                        status: Some(status),
                    },
                );
            }
            return true;
        }
        let notify = self
            .transfers
            .incoming
            .iter()
            .find(|(_, i)| i.notify_tx.as_ref() == Some(tx))
            .map(|(id, _)| *id);
        if let Some(id) = notify {
            self.notify_answered(now, id, status);
            return true;
        }
        false
    }

    /// Sees every call event as it is raised: a call placed for a transfer reports its
    /// provisionals and its final outcome to the transferor (by NOTIFY, from `drain`).
    pub(super) fn observe_transfer_target(&mut self, call: CallHandle, event: &CallEvent) {
        let Some(&transfer) = self.transfers.targets.get(&call) else {
            return;
        };
        let (status, phrase) = match event {
            CallEvent::ProvisionalResponseReceived {
                status,
                reason_phrase,
                ..
            } => (*status, reason_phrase.clone()),
            CallEvent::EstablishCompleted { result: Ok(_) } => (200, "OK".to_owned()),
            CallEvent::EstablishCompleted {
                result: Err(failure),
            } => final_of(failure),
            _ => return,
        };
        if status >= 200 {
            self.transfers.targets.remove(&call);
        }
        self.transfers.work.push_back(Work::Notify {
            transfer,
            status,
            phrase,
        });
    }

    /// `call` is ending (from `finish`, before its last event): our transfers on it end
    /// with 487, the peer's subscriptions on it are gone with the dialog.
    pub(super) fn transfers_call_ended(&mut self, call: CallHandle) {
        let mut ours: Vec<TransferId> = self
            .transfers
            .outgoing
            .iter()
            .filter(|(_, o)| o.call == call)
            .map(|(id, _)| *id)
            .collect();
        ours.sort();
        for id in ours {
            self.transfers.outgoing.remove(&id);
            tracing::info!(%call, %id, "transfer failed: the call ended");
            self.emit(
                call,
                CallEvent::TransferCompleted {
                    transfer: id,
                    final_status: 487,
                    reason: TransferOutcome::Failed,
                    reason_phrase: None,
                },
            );
        }
        let theirs: Vec<TransferId> = self
            .transfers
            .incoming
            .iter()
            .filter(|(_, i)| i.call == call)
            .map(|(id, _)| *id)
            .collect();
        for id in theirs {
            self.forget_incoming(id);
        }
        self.transfers.targets.remove(&call);
        self.transfers.replacing.remove(&call);
        self.transfers.replacing.retain(|_, old| *old != call);
    }

    /// Acts on queued transfer work; returns whether there was any.
    pub(super) fn run_transfers(&mut self, now: Instant) -> bool {
        let mut progressed = false;
        while let Some(work) = self.transfers.work.pop_front() {
            progressed = true;
            match work {
                Work::Notify {
                    transfer,
                    status,
                    phrase,
                } => {
                    let end = (status >= 200).then_some("noresource");
                    self.queue_notify(now, transfer, status, &phrase, end);
                }
                Work::Answered(call) => self.replace(now, call),
            }
        }
        progressed
    }

    /// `call` (with Replaces) was answered: the call it replaces ends (RFC 3891 §3: BYE
    /// when confirmed, CANCEL when it is our early dialog).
    fn replace(&mut self, now: Instant, call: CallHandle) {
        let Some(old) = self.transfers.replacing.remove(&call) else {
            return;
        };
        let Some(c) = self.calls.get_mut(&old) else {
            return;
        };
        if matches!(c.state, CallState::Terminating | CallState::Terminated) {
            return;
        }
        c.ending = Some(Reason::Replaced);
        tracing::info!(%call, replaced = %old, "call replaced (RFC 3891)");
        if let Err(error) = self.terminate(now, old, CallTerminateOptions::new()) {
            tracing::debug!(%error, %old, "replaced call not ended");
        }
    }

    /// A transfer timer fired.
    pub(super) fn on_transfer_timer(&mut self, now: Instant, timer: Timer) {
        match timer {
            // No final NOTIFY in time (RFC 3515 §2.4.7, RFC 6665 §4.1.2.4).
            Timer::TransferGuard(id) => {
                self.complete_outgoing(now, id, 408, TransferOutcome::NoAnswer, None);
            }
            // The application did not answer the REFER.
            Timer::ReferAnswer(id) => {
                let tx = self
                    .transfers
                    .incoming
                    .get_mut(&id)
                    .and_then(|i| i.refer_tx.take());
                if let Some(tx) = tx {
                    tracing::info!(%id, "REFER unanswered: declined");
                    self.respond(now, &tx, Reply::new(603));
                    self.forget_incoming(id);
                }
            }
            // Our subscription expired before a final status (RFC 6665 §4.2.2).
            Timer::ReferExpiry(id) => {
                let last = self.transfers.incoming.get(&id).map(|i| i.last_status);
                if let Some(last) = last {
                    self.queue_notify(now, id, last.min(199), "", Some("timeout"));
                }
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn final_statuses_map_to_outcomes() {
        use TransferOutcome as O;
        for (status, outcome) in [
            (200, O::Accepted),
            (202, O::Accepted),
            (486, O::Busy),
            (600, O::Busy),
            (408, O::NoAnswer),
            (480, O::NoAnswer),
            (403, O::Declined),
            (603, O::Declined),
            (404, O::Failed),
            (487, O::Failed),
            (302, O::Failed),
            (500, O::Failed),
        ] {
            assert_eq!(
                TransferOutcome::of_final_status(status),
                outcome,
                "{status}"
            );
        }
    }

    #[test]
    fn event_headers() {
        assert_eq!(
            parse_event("refer;id=93809824"),
            ("refer".into(), Some(93_809_824))
        );
        assert_eq!(parse_event(" Refer "), ("refer".into(), None));
        assert_eq!(parse_event("refer;id=x"), ("refer".into(), None));
        assert_eq!(parse_event("presence;id=3"), ("presence".into(), Some(3)));
    }
}
