//! Handles, settings, events and errors of the call model.

use crate::options::{CustomMimePart, InstantMessage, SignalingHeader};
use crate::state::{CallState, CallStateTransitionReason, Operation};
use bytes::Bytes;
use sdp_offer_answer::{Direction, NegotiationError};
use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

macro_rules! handle {
    ($(#[$doc:meta])* $name:ident, $prefix:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(pub(crate) u64);

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!($prefix, "-{}"), self.0)
            }
        }

        impl $name {
            /// The number inside, for logs and maps.
            pub fn get(self) -> u64 {
                self.0
            }
        }
    };
}

handle!(
    /// A call owned by the engine (not the SIP Call-ID: see
    /// [`Engine::sip_call_id`](crate::Engine::sip_call_id)).
    CallHandle,
    "call"
);
handle!(
    /// An application or user endpoint.
    EndpointHandle,
    "endpoint"
);
handle!(
    /// A conversation: the calls (IM, AV) with one party on one subject.
    ConversationHandle,
    "conversation"
);
handle!(
    /// One instant message we sent, to match its delivery result.
    MessageId,
    "message"
);
handle!(
    /// One transfer (a REFER), ours or the peer's, to match its events.
    TransferId,
    "transfer"
);
handle!(
    /// A conference room: calls whose media Tandem mixes
    /// ([`Engine::new_room`](crate::Engine::new_room)).
    RoomId,
    "room"
);

/// The kinds of call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CallKind {
    /// `AudioVideoCall`: SDP audio (and video, refused for now).
    AudioVideo,
    /// `InstantMessagingCall`: an `m=message` session with MESSAGE in the dialog.
    InstantMessaging,
}

/// The state of a call's media flow (UCMA's `MediaFlowState`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MediaFlowState {
    /// Created; media not flowing yet.
    Idle,
    /// Negotiated and the call is established.
    Active,
    /// The call is over.
    Terminated,
}

/// `Priority` (RFC 3261 §20.26).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Priority {
    Emergency,
    Urgent,
    #[default]
    Normal,
    NonUrgent,
}

impl Priority {
    pub fn as_str(self) -> &'static str {
        match self {
            Priority::Emergency => "emergency",
            Priority::Urgent => "urgent",
            Priority::Normal => "normal",
            Priority::NonUrgent => "non-urgent",
        }
    }

    pub fn parse(value: &str) -> Priority {
        match value.trim().to_ascii_lowercase().as_str() {
            "emergency" => Priority::Emergency,
            "urgent" => Priority::Urgent,
            "non-urgent" => Priority::NonUrgent,
            _ => Priority::Normal,
        }
    }
}

/// A SIP identity: a URI and a display name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub uri: String,
    pub display_name: Option<String>,
}

impl Identity {
    pub fn new(uri: impl Into<String>) -> Identity {
        Identity {
            uri: uri.into(),
            display_name: None,
        }
    }

    /// `"Display" <uri>` for From, To and P-Asserted-Identity.
    pub fn name_addr(&self) -> String {
        match &self.display_name {
            Some(name) => {
                let mut text = String::with_capacity(name.len() + self.uri.len() + 5);
                text.push('"');
                text.extend(
                    name.chars()
                        .filter(|c| !matches!(c, '"' | '\\' | '\r' | '\n')),
                );
                text.push_str("\" <");
                text.push_str(&self.uri);
                text.push('>');
                text
            }
            None => {
                let mut text = String::with_capacity(self.uri.len() + 2);
                text.push('<');
                text.push_str(&self.uri);
                text.push('>');
                text
            }
        }
    }
}

/// `ConversationSettings`: what every call of the conversation carries.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConversationSettings {
    /// Sent as `Subject` (RFC 3261 §20.36).
    pub subject: Option<String>,
    /// Sent as `Priority` when not normal.
    pub priority: Priority,
    /// Calls made on behalf of this identity: it becomes From and
    /// P-Asserted-Identity (RFC 3325) instead of the endpoint's own.
    pub impersonation: Option<Identity>,
}

/// An application's SIP identity: it owns the calls to its URI's user part.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApplicationEndpointSettings {
    /// e.g. `sip:helpdesk@example.com`: calls to user `helpdesk` come to it, and it is
    /// From on the calls it makes.
    pub owner: Identity,
}

impl ApplicationEndpointSettings {
    pub fn new(owner_uri: impl Into<String>) -> ApplicationEndpointSettings {
        ApplicationEndpointSettings {
            owner: Identity::new(owner_uri),
        }
    }
}

/// A user's endpoint: an application endpoint that also registers its URI with a
/// registrar (digest credentials, refresh, un-REGISTER at the end).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserEndpointSettings {
    pub owner: Identity,
    /// The registrar's URI, e.g. `sip:192.0.2.1:5060`.
    pub registrar: String,
    pub username: Option<String>,
    pub password: Option<String>,
    pub realm: Option<String>,
    /// Requested registration lifetime, seconds.
    pub register_expires: u32,
}

/// What the engine reports. Events of a call carry its handle; the async layer routes
/// them to that call's event stream, which exists from the call's creation.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Event {
    Endpoint {
        endpoint: EndpointHandle,
        event: EndpointEvent,
    },
    Call {
        call: CallHandle,
        event: CallEvent,
    },
    /// Below the call layer: dropped input, trunks (for the log).
    Core(sip_core::EndpointEvent),
    /// What happens to a back-to-back call as a whole (its legs also raise their own
    /// [`Event::Call`]s).
    Bridge {
        bridge: crate::B2bHandle,
        event: crate::B2bEvent,
    },
    /// For the driver, which owns the media sockets: what to do with a call's RTP stream.
    Media {
        call: CallHandle,
        instruction: MediaInstruction,
    },
    /// Who joins and leaves a conference room (the calls also raise their own events).
    Room {
        room: RoomId,
        event: crate::RoomEvent,
    },
}

/// What the driver does with a call's media (it owns the sockets; the engine owns the
/// ports it writes into SDP and the negotiation).
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum MediaInstruction {
    /// Bind the RTP/RTCP pair on `port` (RTP) and `port + 1` (RTCP) now: an SDP with
    /// it is about to go out. If that fails, report [`MediaIndication::Failed`].
    Open { port: u16 },
    /// Media was negotiated (the first answer, or a change: hold, retrieve, a new codec or
    /// address): start the stream, or re-target it.
    Start(StreamSettings),
    /// The call is over: stop the stream and close the pair.
    Close { port: u16 },
    /// Media-anchored bridge (RFC 7092 §3.1.3): relay this call's RTP to and from
    /// `peer`'s stream (both have started), instead of playing or recording. Sent on
    /// one of the two calls; the media layer joins both. A later `Start` of either
    /// call re-targets its side of the relay.
    Join { peer: CallHandle },
    /// End the relay between this call and `peer`: each call's own stream resumes
    /// (silence until told to play).
    Unjoin { peer: CallHandle },
    /// Play to the call's peer (a parked call's music on hold): the WAV file `file`
    /// (16-bit PCM), or with `None` a gentle tone pattern; over and over when `looped`.
    /// Given before the stream starts, it plays from the start; a later `Join` stops it.
    /// A file that cannot be read is replaced by the tone.
    Play { file: Option<String>, looped: bool },
    /// The call joins conference room `room` (it was started with Tandem's own media):
    /// its stream leaves its own flow for the room's mixer, where it hears every other
    /// member (not itself), each member in its own negotiated codec. The room exists in
    /// the media layer from its first member on. A `Play` given to a member plays to
    /// that member only, over the room; a later `Start` re-targets its stream in the
    /// room; its `Close` removes it. A call joined to a peer (`Join`) is unjoined first.
    JoinRoom { room: RoomId },
    /// Mute (or unmute) the call in conference rooms: while muted, what it sends is not
    /// mixed for the other members of the room it is in, or joins later; it still hears
    /// them. It lasts until unmuted or the call ends.
    Mute { muted: bool },
    /// The call leaves `room`: its own stream resumes (silence until told to play).
    LeaveRoom { room: RoomId },
    /// A room-wide announcement: every member of `room` hears the WAV file `file`
    /// (16-bit PCM), or with `None` the hold tone pattern, over the others; over and
    /// over when `looped`. Replaces the room's announcement in progress. Sent on one
    /// member (`Event::Media`'s `call`); it plays while the room has members.
    PlayRoom {
        room: RoomId,
        file: Option<String>,
        looped: bool,
    },
}

/// A negotiated RTP stream, as the media layer needs it.
#[derive(Debug, Clone, PartialEq)]
pub struct StreamSettings {
    /// Our RTP port (RTCP on the next).
    pub local_port: u16,
    /// Where the peer receives RTP (from its SDP); `None` while unknown or on hold
    /// (`c=0.0.0.0`). Symmetric RTP may latch elsewhere.
    pub remote: Option<SocketAddr>,
    /// The RTP encoding name (`PCMU`, `PCMA`) and its payload type as negotiated.
    pub codec: String,
    pub payload_type: u8,
    pub clock_rate: u32,
    /// The packet interval to send (the peer's `a=ptime`, else 20 ms).
    pub ptime: Duration,
    /// The negotiated RFC 4733 payload type, if any (never assumed).
    pub telephone_event: Option<u8>,
    /// Whether we send (our direction is `sendrecv` or `sendonly`).
    pub send: bool,
    /// Whether the peer sends (its direction is `sendrecv` or `sendonly`): no media
    /// timeout while it does not.
    pub receive: bool,
    /// A demo `echo` call: what comes in goes back out.
    pub echo: bool,
    /// No RTP for this long while the peer should send: [`MediaIndication::Timeout`].
    pub media_timeout: Option<Duration>,
}

/// What the media layer reports about a call's stream.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum MediaIndication {
    /// RTP arrives: the first packet, or the first after a timeout.
    Receiving,
    /// No RTP for the stream's media timeout.
    Timeout { after: Duration },
    /// An RFC 4733 event ended.
    Tone { tone: char, duration: Duration },
    /// The sockets could not be bound, or the stream failed.
    Failed { reason: String },
    /// The flow's player or tone ran to its end.
    PlayCompleted,
    /// Every DTMF digit given to the flow was sent.
    DtmfSent,
    /// The flow's recording failed (disk full...) and stopped.
    RecordingFailed { reason: String },
}

/// What happens on an endpoint.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum EndpointEvent {
    /// An INVITE for this endpoint (an indication): accept, decline or forward the
    /// call. The call is in state `Incoming` and its events are already queued.
    CallReceived(Box<CallReceived>),
    /// A page-mode MESSAGE (RFC 3428) outside any dialog; answered 200.
    MessageReceived(Box<PageMessage>),
    /// The result of a page-mode message we sent.
    MessageDelivered {
        id: MessageId,
        result: DeliveryResult,
    },
    /// A user endpoint's registration changed.
    Registration(sip_core::TrunkEvent),
}

/// An incoming call, with what its INVITE carried.
#[derive(Debug, Clone, PartialEq)]
pub struct CallReceived {
    pub call: CallHandle,
    pub conversation: ConversationHandle,
    pub kind: CallKind,
    /// From and To as written.
    pub from: String,
    pub to: String,
    pub request_uri: String,
    /// Every header of the INVITE, in order.
    pub headers: Vec<SignalingHeader>,
    /// The SDP offer, if the INVITE had one.
    pub offer: Option<Bytes>,
    /// Body parts beside the SDP (multipart/mixed), in order.
    pub custom_mime_parts: Vec<CustomMimePart>,
    pub subject: Option<String>,
    pub priority: Priority,
    /// IM calls: a first message carried in the invitation.
    pub first_message: Option<InstantMessage>,
    /// Where it came from (the socket's address, not a header's).
    pub source: SocketAddr,
    /// The INVITE's Replaces header (RFC 3891 §3) named this call's dialog: accepting
    /// the new call ends that one (BYE, or CANCEL while early).
    pub replaces: Option<CallHandle>,
}

/// A page-mode message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageMessage {
    pub from: String,
    pub to: String,
    pub content_type: String,
    pub body: Bytes,
    pub headers: Vec<SignalingHeader>,
    pub source: SocketAddr,
}

/// What happens on a call.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum CallEvent {
    /// Every change of [`CallState`].
    StateChanged {
        previous: CallState,
        state: CallState,
        reason: CallStateTransitionReason,
    },
    /// A 18x to our INVITE (a 100 is not reported).
    ProvisionalResponseReceived {
        status: u16,
        reason_phrase: String,
        headers: Vec<SignalingHeader>,
    },
    /// How our `establish` ended (a result).
    EstablishCompleted {
        result: Result<EstablishSucceeded, EstablishFailure>,
    },
    /// The call's media flow exists and is about to start: configure it now
    /// (UCMA's `AudioVideoFlowConfigurationRequested` / `InstantMessagingFlowConfigurationRequested`).
    FlowConfigurationRequested { kind: CallKind },
    /// The flow's state changed.
    FlowStateChanged {
        previous: MediaFlowState,
        state: MediaFlowState,
    },
    /// The negotiated media changed: a hold or retrieve by either side, a new codec.
    FlowConfigurationChanged { configuration: FlowConfiguration },
    /// A DTMF tone (RFC 4733 event) arrived, with how long it lasted (an indication).
    ToneReceived { tone: char, duration: Duration },
    /// No RTP came for `after` while the peer should be sending; the call is ended too
    /// when the engine's media settings say so.
    MediaTimedOut { after: Duration },
    /// The flow's player or tone ran to its end (a result).
    PlayCompleted,
    /// Every DTMF digit the application sent went out (a result).
    DtmfSent,
    /// The flow's recording failed and stopped.
    RecordingFailed { reason: String },
    /// How `hold`, `retrieve` or `apply_changes` ended (a result).
    OperationCompleted {
        operation: Operation,
        result: Result<(), OperationFailure>,
    },
    /// An instant message in the call's dialog (an indication); answered 200.
    MessageReceived {
        content_type: String,
        body: Bytes,
        headers: Vec<SignalingHeader>,
    },
    /// The delivery result of a message we sent.
    MessageDelivered {
        id: MessageId,
        result: DeliveryResult,
    },
    /// The peer started or stopped composing (RFC 3994), or its indication timed out.
    RemoteComposingChanged { composing: bool },
    /// Our transfer (`transfer`, `transfer_attended`) moved on: the REFER went out,
    /// was accepted (`status`: its 2xx), or a NOTIFY reported the target's 1xx.
    TransferStateChanged {
        transfer: TransferId,
        state: crate::TransferState,
        status: Option<u16>,
    },
    /// How our transfer ended (a result): always raised once per transfer.
    TransferCompleted {
        transfer: TransferId,
        /// The target's final status from the NOTIFY sipfrag (RFC 3515 §2.4.5); the
        /// REFER's own status when it was refused; 408 when no final NOTIFY came; 487
        /// when the call or the subscription ended first.
        final_status: u16,
        reason: crate::TransferOutcome,
        /// What the target said: the `text` of a `Reason` header in the final
        /// NOTIFY's sipfrag (RFC 3326), else the sipfrag status line's reason phrase;
        /// the reason phrase of the REFER's refusal; `None` when no message gave one
        /// (no final NOTIFY, the call ended first).
        reason_phrase: Option<String>,
    },
    /// The peer asks us to transfer (a REFER, RFC 3515): answer with `accept_transfer`,
    /// `accept_transfer_manually` or `decline_transfer` at once (unanswered, it is
    /// declined with 603 after [`REFER_ANSWER_TIME`](crate::REFER_ANSWER_TIME)).
    TransferReceived {
        transfer: TransferId,
        /// The Refer-To URI without its headers.
        target: String,
        /// The Replaces of the Refer-To (an attended transfer, RFC 3891).
        replaces: Option<crate::refer::Replaces>,
        /// The REFER's Referred-By (RFC 3892).
        referred_by: Option<String>,
        /// The Refer-To URI headers (unsafe ones dropped, RFC 3261 §19.1.5) and the
        /// REFER's own `X-` headers not already among them.
        headers: Vec<SignalingHeader>,
        /// User-to-User (RFC 7433), from the Refer-To headers or the REFER.
        user_to_user: Option<String>,
    },
    /// The call is parked in `orbit` (by [`Engine::park`](crate::Engine::park), a
    /// REFER to the park number, or a `park` route): it is `Parking` and its peer hears
    /// music on hold until it is retrieved or rings back.
    Parked { orbit: crate::CallOrbit },
    /// The parked call left its orbit, bridged to `by`: a call to the orbit, a call
    /// placed by [`Engine::retrieve_parked`](crate::Engine::retrieve_parked), or the
    /// ring-back. The call is `Established` again, a media-anchored bridge's leg A.
    Retrieved {
        orbit: crate::CallOrbit,
        by: CallHandle,
    },
    /// Nobody retrieved the call in time: it rings back the parker (or the configured
    /// fallback); if that fails too, the call is ended.
    ParkTimedOut { orbit: crate::CallOrbit },
}

/// What a successful establish brought.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EstablishSucceeded {
    /// The 2xx's headers.
    pub headers: Vec<SignalingHeader>,
}

/// Why `establish` failed. The remote side's refusals (UCMA's
/// `OperationFailureException`) are apart from real-time failures of the network or
/// media (UCMA's `RealTimeException`): see [`is_refusal`](Self::is_refusal).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum EstablishFailure {
    /// A final 4xx–6xx.
    Refused {
        status: u16,
        reason_phrase: String,
        /// The Reason header (RFC 3326), if any.
        reason: Option<String>,
        headers: Vec<SignalingHeader>,
    },
    /// A 3xx: the targets are the Contacts, not followed automatically.
    Redirected { status: u16, targets: Vec<String> },
    /// No final answer in time (Timer B, `max_establish_time`, no 2xx retransmission
    /// acknowledged).
    Timeout,
    /// The transport could not reach the peer.
    TransportError,
    /// The answer was unusable (RFC 3264): we ended the call.
    Media { reason: String },
    /// We terminated the call before it was answered.
    Cancelled,
    /// The call ended otherwise before it was established.
    Ended { reason: CallStateTransitionReason },
}

impl EstablishFailure {
    /// Whether the remote side refused (as opposed to a network or media failure).
    pub fn is_refusal(&self) -> bool {
        matches!(
            self,
            EstablishFailure::Refused { .. } | EstablishFailure::Redirected { .. }
        )
    }
}

/// Why a hold, retrieve or re-offer did not complete.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum OperationFailure {
    /// The peer refused the re-INVITE (after any 491 retries); the session is as before.
    Refused { status: u16 },
    /// The answer was unusable.
    Media { reason: String },
    /// The call ended first.
    CallEnded,
}

/// The delivery result of a message (RFC 3428 §7: a 2xx means delivered).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeliveryResult {
    Delivered,
    /// The final response, 408 for a timeout, 503 for a transport error.
    Failed {
        status: u16,
    },
}

/// The negotiated media of a flow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlowConfiguration {
    /// What we said (sendonly when we hold).
    pub local_direction: Direction,
    /// What the peer said (sendonly when it holds us).
    pub remote_direction: Direction,
    /// The codec chosen, e.g. `PCMU/8000`; `None` for an IM flow.
    pub codec: Option<String>,
    /// The negotiated RFC 4733 payload type.
    pub telephone_event: Option<u8>,
    /// Where the peer receives media.
    pub remote_media: Option<SocketAddr>,
    /// IM flows: the content types both accept.
    pub accept_types: Vec<String>,
}

/// Why a command was refused. Nothing here leaves a call half-changed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CallError {
    #[error("no such call: {0}")]
    NoSuchCall(CallHandle),
    #[error("no such endpoint: {0}")]
    NoSuchEndpoint(EndpointHandle),
    #[error("no such conversation: {0}")]
    NoSuchConversation(ConversationHandle),
    #[error("no such transfer on this call: {0}")]
    NoSuchTransfer(TransferId),
    #[error("{operation} is not allowed in state {state}")]
    InvalidState {
        operation: Operation,
        state: CallState,
    },
    #[error("{operation} is not an operation of a {kind:?} call")]
    WrongCallType {
        operation: Operation,
        kind: CallKind,
    },
    #[error("{operation} is already in progress on this call")]
    OperationPending { operation: Operation },
    #[error("invalid {what}: {problem}")]
    InvalidArgument { what: &'static str, problem: String },
    #[error("header `{name}`: {problem}")]
    InvalidHeader { name: String, problem: &'static str },
    #[error("header `{name}` is written by the stack and cannot be set")]
    ForbiddenHeader { name: String },
    #[error("cannot route to `{target}`: {problem}")]
    Unroutable { target: String, problem: String },
    #[error("content type `{content_type}` was not negotiated (a=accept-types)")]
    ContentTypeNotAccepted { content_type: String },
    #[error("an endpoint already owns user `{user}`")]
    EndpointExists { user: String },
    #[error("SDP: {0}")]
    Sdp(Box<NegotiationError>),
    #[error("no free media port in {first}-{last}")]
    NoMediaPort { first: u16, last: u16 },
    /// Every park orbit is taken.
    #[error("no free park orbit in {first}-{last}")]
    NoFreeOrbit { first: u16, last: u16 },
    /// No call is parked in this orbit (or it is no orbit).
    #[error("no call is parked in orbit {0}")]
    NoParkedCall(u16),
    /// The room was closed, or never made by this engine.
    #[error("no such room: {0}")]
    NoSuchRoom(RoomId),
    /// The call is in no room.
    #[error("{0} is in no room")]
    NotInRoom(CallHandle),
    /// The call's media does not pass through Tandem, so it cannot be mixed.
    #[error("{call} cannot be mixed in a room: {reason}")]
    NoOwnMedia {
        call: CallHandle,
        reason: &'static str,
    },
    #[error(transparent)]
    UserAgent(Box<sip_dialog::Error>),
    #[error(transparent)]
    Core(Box<sip_core::CallError>),
    /// A back-to-back call's operation failed on one of its legs.
    #[error("leg {leg:?}: {source}")]
    Leg {
        leg: crate::B2bLeg,
        source: Box<CallError>,
    },
    /// A header a bridge was asked to pass from one leg to the other cannot be: the
    /// B2BUA writes it per leg.
    #[error("header `{name}` cannot be passed across a bridge: {reason}")]
    HeaderNotPassable { name: String, reason: &'static str },
}

impl From<NegotiationError> for CallError {
    fn from(error: NegotiationError) -> CallError {
        CallError::Sdp(Box::new(error))
    }
}

impl From<sip_dialog::Error> for CallError {
    fn from(error: sip_dialog::Error) -> CallError {
        CallError::UserAgent(Box::new(error))
    }
}

impl From<sip_core::CallError> for CallError {
    fn from(error: sip_core::CallError) -> CallError {
        CallError::Core(Box::new(error))
    }
}
