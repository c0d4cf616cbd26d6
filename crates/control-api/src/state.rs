//! What the API knows about calls: call connections and their participants (each an
//! engine call), incoming calls waiting for an answer, and the operations whose events
//! are still due. One lock; it is never held across an `.await`, and the engine's
//! driver takes it too (inside `with_engine` jobs), so a call is on the books before the
//! first of its events can reach the follower.

use crate::model::{CallConnectionProperties, CallParticipant, Identifier, ResultInformation};
use crate::server::{ApiConfig, EventSink};
use calls::{CallHandle, EndpointHandle, RoomId, TransferId};
use serde_json::{Map, Value, json};
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

/// Everything the handlers and the follower share.
pub(crate) struct Shared {
    pub(crate) tandem: runtime::Tandem,
    pub(crate) config: ApiConfig,
    pub(crate) sink: Arc<dyn EventSink>,
    /// Configured applications by name.
    pub(crate) applications: HashMap<String, Application>,
    book: Mutex<Book>,
    /// The messaging books (their own lock).
    pub(crate) messaging: crate::messaging::Messaging,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field(
                "applications",
                &self.applications.keys().collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

/// A configured application and its endpoint.
#[derive(Debug, Clone)]
pub(crate) struct Application {
    pub(crate) name: String,
    pub(crate) endpoint: EndpointHandle,
    pub(crate) callback: Option<String>,
    pub(crate) owner_uri: String,
    pub(crate) answer_timeout: std::time::Duration,
}

impl Shared {
    pub(crate) fn new(
        tandem: runtime::Tandem,
        config: ApiConfig,
        sink: Arc<dyn EventSink>,
        applications: HashMap<String, Application>,
    ) -> Shared {
        Shared {
            tandem,
            config,
            sink,
            applications,
            book: Mutex::new(Book::default()),
            messaging: crate::messaging::Messaging::default(),
        }
    }

    /// The books; a poisoned lock is taken over (a panic elsewhere must not stop
    /// every call).
    pub(crate) fn book(&self) -> MutexGuard<'_, Book> {
        self.book
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub(crate) fn application_of(&self, endpoint: EndpointHandle) -> Option<&Application> {
        self.applications.values().find(|a| a.endpoint == endpoint)
    }

    /// Publishes the events, in order.
    pub(crate) fn publish(&self, outbox: Outbox) {
        for event in outbox.events {
            let callback = event.callback.or_else(|| {
                self.applications
                    .get(&event.application)
                    .and_then(|a| a.callback.clone())
            });
            let sequence = self.sink.publish(
                &event.application,
                callback.as_deref(),
                event.event_type,
                event.subject,
                event.data,
            );
            tracing::debug!(
                application = %event.application,
                event = event.event_type,
                sequence,
                "event published"
            );
        }
    }
}

/// The operation an event answers: its context and where its events go.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Op {
    pub(crate) context: Option<String>,
    pub(crate) callback: Option<String>,
}

impl Op {
    pub(crate) fn new(context: Option<String>, callback: Option<String>) -> Op {
        Op { context, callback }
    }
}

/// An event to publish once the lock is released.
#[derive(Debug)]
pub(crate) struct Outgoing {
    pub(crate) application: String,
    /// The operation's callback; `None`: the application's.
    pub(crate) callback: Option<String>,
    pub(crate) event_type: &'static str,
    pub(crate) subject: Option<String>,
    pub(crate) data: Value,
}

/// Events gathered under the lock.
#[derive(Debug, Default)]
pub(crate) struct Outbox {
    pub(crate) events: Vec<Outgoing>,
}

impl Outbox {
    /// An event of `connection`: `callConnectionId`, `correlationId`,
    /// `operationContext` and `resultInformation`, then `extra`'s fields.
    pub(crate) fn call_event(
        &mut self,
        connection: &Connection,
        op: &Op,
        event_type: &'static str,
        result: ResultInformation,
        extra: Value,
    ) {
        let mut data = Map::new();
        data.insert("callConnectionId".into(), json!(connection.id));
        data.insert("correlationId".into(), json!(connection.correlation_id));
        data.insert("operationContext".into(), json!(op.context));
        data.insert("resultInformation".into(), json!(result));
        if let Value::Object(extra) = extra {
            data.extend(extra);
        }
        self.events.push(Outgoing {
            application: connection.application.clone(),
            callback: op.callback.clone(),
            event_type,
            subject: Some(format!("calling/callConnections/{}", connection.id)),
            data: Value::Object(data),
        });
    }

    /// `ParticipantsUpdated` with the next sequence number.
    pub(crate) fn participants_updated(&mut self, connection: &mut Connection) {
        self.participants_updated_by(connection, &Op::default());
    }

    /// `ParticipantsUpdated` with the next sequence number, as the result of `op` (a
    /// mute): its context, and its callback when it has one.
    pub(crate) fn participants_updated_by(&mut self, connection: &mut Connection, op: &Op) {
        connection.sequence += 1;
        let participants: Vec<CallParticipant> = connection
            .participants
            .iter()
            .filter(|p| p.state != ParticipantState::Connecting)
            .map(Participant::view)
            .collect();
        let extra = json!({
            "participants": participants,
            "sequenceNumber": connection.sequence,
        });
        self.call_event(
            connection,
            op,
            "ParticipantsUpdated",
            ok("participants updated"),
            extra,
        );
    }
}

/// `resultInformation` of a success.
pub(crate) fn ok(message: &str) -> ResultInformation {
    ResultInformation {
        code: 200,
        sub_code: 0,
        message: message.to_owned(),
    }
}

/// `resultInformation` of a failure with a SIP status.
pub(crate) fn failed(code: u16, message: impl Into<String>) -> ResultInformation {
    ResultInformation {
        code,
        sub_code: 0,
        message: message.into(),
    }
}

/// The books.
#[derive(Debug, Default)]
pub(crate) struct Book {
    pub(crate) connections: HashMap<String, Connection>,
    /// Which engine call is whose.
    pub(crate) by_call: HashMap<CallHandle, Tracked>,
    /// Incoming calls by `incomingCallContext`, until they are answered or end.
    pub(crate) incoming: HashMap<String, Incoming>,
    /// How incoming calls ended, for a later answer's 409 (the last few thousand).
    pub(crate) settled: HashMap<String, Settled>,
    settled_order: VecDeque<String>,
    /// Play operations, by their own number.
    pub(crate) next_play: u64,
}

/// How many settled incoming calls are remembered.
const SETTLED_KEPT: usize = 4096;

impl Book {
    pub(crate) fn settle(&mut self, token: String, how: Settled) {
        if self.settled.insert(token.clone(), how).is_none() {
            self.settled_order.push_back(token);
        }
        while self.settled_order.len() > SETTLED_KEPT {
            if let Some(old) = self.settled_order.pop_front() {
                self.settled.remove(&old);
            }
        }
    }

    /// A connection the application can see (not one it left).
    pub(crate) fn visible(&self, id: &str) -> Option<&Connection> {
        self.connections.get(id).filter(|c| !c.detached)
    }

    pub(crate) fn visible_mut(&mut self, id: &str) -> Option<&mut Connection> {
        self.connections.get_mut(id).filter(|c| !c.detached)
    }

    /// The participant an engine call is.
    pub(crate) fn participant_by_call(&self, call: CallHandle) -> Option<&Participant> {
        match self.by_call.get(&call)? {
            Tracked::Participant {
                connection,
                participant,
            } => self
                .connections
                .get(connection)?
                .participants
                .iter()
                .find(|p| p.id == *participant),
            Tracked::Incoming(_) => None,
        }
    }
}

/// Whose an engine call is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Tracked {
    /// An incoming call, by its `incomingCallContext`.
    Incoming(String),
    /// A participant of a call connection.
    Participant {
        connection: String,
        participant: String,
    },
}

/// An incoming call waiting for answer, reject or redirect.
#[derive(Debug, Clone)]
pub(crate) struct Incoming {
    pub(crate) call: CallHandle,
    pub(crate) application: String,
    pub(crate) from: Identifier,
    pub(crate) sip_call_id: Option<String>,
}

/// How an incoming call was settled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Settled {
    Answered,
    Rejected,
    Redirected,
    TimedOut,
    /// The caller gave up (CANCEL) or the engine ended it.
    Ended,
}

impl Settled {
    pub(crate) fn describe(self) -> &'static str {
        match self {
            Settled::Answered => "the incoming call was already answered",
            Settled::Rejected => "the incoming call was already rejected",
            Settled::Redirected => "the incoming call was already redirected",
            Settled::TimedOut => "the incoming call was not answered in time (480 sent)",
            Settled::Ended => "the incoming call has ended",
        }
    }
}

/// Whether the API placed the call or answered it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CallDirection {
    Outbound,
    Inbound,
}

/// Where a call connection is (ACS's `CallConnectionState`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ConnectionState {
    Connecting,
    Connected,
    Transferring,
    Disconnecting,
}

impl ConnectionState {
    fn as_str(self) -> &'static str {
        match self {
            ConnectionState::Connecting => "connecting",
            ConnectionState::Connected => "connected",
            ConnectionState::Transferring => "transferring",
            ConnectionState::Disconnecting => "disconnecting",
        }
    }
}

/// A call connection: the application's call.
#[derive(Debug)]
pub(crate) struct Connection {
    pub(crate) id: String,
    pub(crate) application: String,
    pub(crate) created_at: String,
    pub(crate) direction: CallDirection,
    pub(crate) correlation_id: Option<String>,
    pub(crate) state: ConnectionState,
    pub(crate) participants: Vec<Participant>,
    /// `ParticipantsUpdated`'s last sequence number.
    pub(crate) sequence: u64,
    /// The create or answer operation (CallConnected, CreateCallFailed, AnswerFailed).
    pub(crate) start_op: Op,
    /// `CallConnected` was raised.
    pub(crate) connected: bool,
    /// The hang-up that ends it.
    pub(crate) hangup: Option<Op>,
    /// The application left (`hangup` without `forEveryone`) while two participants
    /// talked: they go on; the last one is hung up when the other leaves.
    pub(crate) detached: bool,
    /// A transfer in progress.
    pub(crate) transfer: Option<TransferOp>,
    /// Created with several targets (a group call): a target that fails gets
    /// `AddParticipantFailed`, and `CreateCallFailed` comes when none answered.
    pub(crate) group: bool,
    /// The conference room the participants talk in (Tandem mixes; the application is
    /// in the media): made at a group call's creation, or when a second participant
    /// connects. A call of one participant has none.
    pub(crate) room: Option<RoomId>,
    /// A play to the whole room in progress: its number and operation.
    pub(crate) room_play: Option<(u64, Op)>,
    /// Plays in progress: number → (operation, calls still playing).
    pub(crate) plays: HashMap<u64, (Op, Vec<CallHandle>)>,
    /// Invitations that are over (a cancel then gets `CancelAddParticipantFailed`).
    pub(crate) finished_invitations: Vec<String>,
}

impl Connection {
    pub(crate) fn new(
        id: String,
        application: String,
        direction: CallDirection,
        start_op: Op,
    ) -> Connection {
        Connection {
            id,
            application,
            created_at: rfc3339_now(),
            direction,
            correlation_id: None,
            state: ConnectionState::Connecting,
            participants: Vec::new(),
            sequence: 0,
            start_op,
            connected: false,
            hangup: None,
            detached: false,
            transfer: None,
            group: false,
            room: None,
            room_play: None,
            plays: HashMap::new(),
            finished_invitations: Vec::new(),
        }
    }

    pub(crate) fn view(&self) -> CallConnectionProperties {
        CallConnectionProperties {
            call_connection_id: self.id.clone(),
            application: self.application.clone(),
            call_connection_state: self.state.as_str().to_owned(),
            correlation_id: self.correlation_id.clone(),
            created_at: self.created_at.clone(),
            direction: match self.direction {
                CallDirection::Outbound => "outbound",
                CallDirection::Inbound => "inbound",
            }
            .to_owned(),
            participants: self.participants.iter().map(Participant::view).collect(),
        }
    }

    pub(crate) fn participant(&self, id: &str) -> Option<&Participant> {
        self.participants.iter().find(|p| p.id == id)
    }

    pub(crate) fn participant_mut(&mut self, id: &str) -> Option<&mut Participant> {
        self.participants.iter_mut().find(|p| p.id == id)
    }

    /// The participant `who` names, or the only one that is not an invitation when
    /// `who` is `None`. `Err` says what is wrong, for a 422 naming `field`.
    pub(crate) fn choose(&self, who: Option<&Identifier>) -> Result<&Participant, String> {
        let live = self
            .participants
            .iter()
            .filter(|p| !matches!(p.role, Role::Invited { .. }) || p.ever_connected);
        match who {
            Some(who) => live
                .into_iter()
                .find(|p| &p.identifier == who)
                .ok_or_else(|| "no participant of the call has this identifier".to_owned()),
            None => {
                let all: Vec<&Participant> = live.collect();
                match all.as_slice() {
                    [one] => Ok(one),
                    [] => Err("the call has no participant".into()),
                    _ => Err("the call has several participants: name one".into()),
                }
            }
        }
    }
}

/// How a participant came into the call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Role {
    /// The call created or answered.
    Initial,
    /// `participants:add`: the invitation, and a cancel asked for it.
    Invited {
        invitation: String,
        op: Op,
        cancel: Option<Op>,
    },
    /// `calls:retrieve`: the call that takes a parked participant back (from `orbit`),
    /// and the retrieve's operation (RetrieveSucceeded / RetrieveFailed).
    Retriever { orbit: u16, op: Op },
    /// One of the targets of a group call (`POST /v1/calls` with several).
    Target,
    /// A call the application took over with `calls:connect`.
    Adopted,
}

/// Where a participant is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ParticipantState {
    Connecting,
    Connected,
    Transferring,
    Parked,
    Disconnecting,
}

impl ParticipantState {
    fn as_str(self) -> &'static str {
        match self {
            ParticipantState::Connecting => "connecting",
            ParticipantState::Connected => "connected",
            ParticipantState::Transferring => "transferring",
            ParticipantState::Parked => "parked",
            ParticipantState::Disconnecting => "disconnecting",
        }
    }
}

/// A participant: one engine call.
#[derive(Debug)]
pub(crate) struct Participant {
    pub(crate) id: String,
    pub(crate) call: CallHandle,
    pub(crate) identifier: Identifier,
    pub(crate) state: ParticipantState,
    pub(crate) on_hold: bool,
    pub(crate) sip_call_id: Option<String>,
    pub(crate) role: Role,
    pub(crate) ever_connected: bool,
    /// Its establish failure was reported (CreateCallFailed, AddParticipantFailed).
    pub(crate) failure_reported: bool,
    /// `participants:remove` asked for it.
    pub(crate) removing: Option<Op>,
    /// `sendDtmf` in progress.
    pub(crate) dtmf: Option<Op>,
    /// `park` in progress.
    pub(crate) park: Option<Op>,
    /// The application holds it (`participants:hold`): it is out of the room.
    pub(crate) held: bool,
    /// A hold or unhold waiting for its re-INVITE's answer.
    pub(crate) hold_op: Option<HoldOp>,
    /// Muted in the call's room (`participants:mute`).
    pub(crate) muted: bool,
}

/// A `participants:hold` (`hold`) or `participants:unhold` in progress.
#[derive(Debug, Clone)]
pub(crate) struct HoldOp {
    pub(crate) op: Op,
    pub(crate) hold: bool,
}

impl Participant {
    pub(crate) fn new(call: CallHandle, identifier: Identifier, role: Role) -> Participant {
        Participant {
            id: new_id(),
            call,
            identifier,
            state: ParticipantState::Connecting,
            on_hold: false,
            sip_call_id: None,
            role,
            ever_connected: false,
            failure_reported: false,
            removing: None,
            dtmf: None,
            park: None,
            held: false,
            hold_op: None,
            muted: false,
        }
    }

    pub(crate) fn view(&self) -> CallParticipant {
        CallParticipant {
            participant_id: self.id.clone(),
            identifier: self.identifier.clone(),
            state: self.state.as_str().to_owned(),
            is_muted: self.muted,
            is_on_hold: self.on_hold || self.held,
            sip_call_id: self.sip_call_id.clone(),
        }
    }
}

/// A transfer in progress.
#[derive(Debug, Clone)]
pub(crate) struct TransferOp {
    pub(crate) id: TransferId,
    pub(crate) participant: String,
    pub(crate) target: Identifier,
    pub(crate) op: Op,
}

/// `bytes` random bytes from the operating system.
fn random<const N: usize>() -> [u8; N] {
    let mut bytes = [0u8; N];
    if getrandom::fill(&mut bytes).is_err() {
        // No OS randomness (never on the platforms Tandem runs on): the process's
        // hasher keys, the clock and a counter, so ids still differ.
        use std::hash::{BuildHasher, Hasher};
        static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        for chunk in bytes.chunks_mut(8) {
            let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
            hasher.write_u64(COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed));
            hasher.write_u128(
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_nanos())
                    .unwrap_or_default(),
            );
            let value = hasher.finish().to_le_bytes();
            for (b, v) in chunk.iter_mut().zip(value) {
                *b = v;
            }
        }
    }
    bytes
}

/// A random id in the UUID (version 4) format: call connections, participants,
/// invitations.
pub(crate) fn new_id() -> String {
    let mut b: [u8; 16] = random();
    if let Some(x) = b.get_mut(6) {
        *x = (*x & 0x0f) | 0x40;
    }
    if let Some(x) = b.get_mut(8) {
        *x = (*x & 0x3f) | 0x80;
    }
    let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        hex.get(0..8).unwrap_or_default(),
        hex.get(8..12).unwrap_or_default(),
        hex.get(12..16).unwrap_or_default(),
        hex.get(16..20).unwrap_or_default(),
        hex.get(20..32).unwrap_or_default()
    )
}

/// An `incomingCallContext`: 256 random bits, base64url. Unguessable, so holding one is
/// the right to answer that call.
pub(crate) fn new_token() -> String {
    use base64::Engine as _;
    let bytes: [u8; 32] = random();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// Now, as RFC 3339 UTC with milliseconds.
pub(crate) fn rfc3339_now() -> String {
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    rfc3339(since.as_secs(), since.subsec_millis())
}

fn rfc3339(secs: u64, millis: u32) -> String {
    let days = i64::try_from(secs / 86_400).unwrap_or(0);
    let rest = secs % 86_400;
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{millis:03}Z",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
}

#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_rfc3339() {
        assert_eq!(rfc3339(0, 0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(951_782_400, 5), "2000-02-29T00:00:00.005Z");
        assert_eq!(rfc3339(1_700_000_000, 123), "2023-11-14T22:13:20.123Z");
    }

    #[test]
    fn ids_are_uuid_shaped_and_tokens_long() {
        let a = new_id();
        let b = new_id();
        assert_ne!(a, b);
        assert_eq!(a.len(), 36);
        assert_eq!(a.chars().nth(14), Some('4'));
        let token = new_token();
        assert_eq!(token.len(), 43);
        assert_ne!(token, new_token());
    }
}
