//! `calls`: Tandem's call model, after Microsoft UCMA 4.0, sans-IO.
//!
//! An application owns **endpoints** ([`ApplicationEndpointSettings`],
//! [`UserEndpointSettings`]); an endpoint has **conversations**
//! ([`ConversationSettings`]: subject, priority, impersonation); a conversation has
//! **calls** of two kinds, [`CallKind::AudioVideo`] and [`CallKind::InstantMessaging`].
//! Every call follows one state machine ([`CallState`], see [`state`]), raises
//! [`CallEvent::StateChanged`] with a [`CallStateTransitionReason`] on each change, and
//! takes an options value with custom headers for each operation.
//!
//! The [`Engine`] is a pure state machine over the SIP endpoint underneath
//! (`sip-core`): it takes `now` on every call and is drained with `poll_transmit`,
//! `poll_timeout` and `poll_event`. A call's events are queued from the moment the call
//! exists (`new_call`, or an incoming INVITE), so no handler can be attached too late.
//! The async façade in `runtime` gives each call an event stream from construction.
#![forbid(unsafe_code)]

mod body;
mod engine;
pub mod im;
pub mod options;
pub mod refer;
pub mod routing;
pub mod state;
mod types;

pub use engine::{
    B2bEvent, B2bHandle, B2bLeg, B2bState, BridgeMode, BridgeOptions, BridgeTarget, CallOrbit,
    CallTransferOptions, CallTransferType, DemoBehaviour, Engine, EngineConfig, MediaSettings,
    ParkSettings, PortPool, PortSource, REFER_ANSWER_TIME, RingStrategy, RoomEvent,
    RoomLeaveReason, Stats, TRANSFER_SUBSCRIPTION_TIME, TRANSFEROR_HANGUP_TIME, TransferOutcome,
    TransferRequest, TransferState,
};
pub use options::{
    CallAcceptOptions, CallDeclineOptions, CallEstablishOptions, CallForwardOptions,
    CallProvisionalResponseOptions, CallTerminateOptions, CustomMimePart, Destination, HoldType,
    InstantMessage, MessageOptions, SignalingHeader,
};
pub use sdp_offer_answer::{self, Codec, Direction};
pub use sip_core;
pub use state::{CallState, CallStateTransitionReason, Operation};
pub use types::{
    ApplicationEndpointSettings, CallError, CallEvent, CallHandle, CallKind, CallReceived,
    ConversationHandle, ConversationSettings, DeliveryResult, EndpointEvent, EndpointHandle,
    EstablishFailure, EstablishSucceeded, Event, FlowConfiguration, Identity, MediaFlowState,
    MediaIndication, MediaInstruction, MessageId, OperationFailure, PageMessage, Priority, RoomId,
    StreamSettings, TransferId, UserEndpointSettings,
};
