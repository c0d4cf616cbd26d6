//! The call state machine every call type shares (UCMA 4.0's `CallState`), and which
//! operation each state permits.
//!
//! ```text
//!            establish             2xx / ACK
//!   Idle ───────────────► Establishing ─────────► Established ──► Transferring / Parking
//!    │  INVITE in             ▲    │ refused, timeout,   │ terminate      │
//!    ▼            accept      │    │ transport error     ▼                │
//!  Incoming ──────────────────┘    │               Terminating           │
//!    │ decline, forward, CANCEL    ▼                     │                │
//!    └─────────────────────► Terminated ◄───────────────┴────────────────┘
//! ```

use std::fmt;

/// Where a call is (UCMA's `CallState`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CallState {
    /// Created, not yet used: `establish` may be called.
    Idle,
    /// An INVITE arrived and waits for `accept`, `decline` or `forward`.
    Incoming,
    /// Our INVITE is out, or we accepted theirs and wait for the ACK.
    Establishing,
    /// The dialog is confirmed.
    Established,
    /// A transfer of this call is in progress ([b2bua]).
    Transferring,
    /// The call is being parked ([b2bua]).
    Parking,
    /// We asked to end it (BYE or CANCEL sent) and wait for that to finish.
    Terminating,
    /// Over; the call's handle only answers questions now.
    Terminated,
}

impl fmt::Display for CallState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// Why a call changed state (UCMA's `CallStateTransitionReason`, with the SIP detail
/// kept: the status of a refusal, the targets of a redirection).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum CallStateTransitionReason {
    /// `establish` was called: the INVITE is out.
    Establishing,
    /// An INVITE arrived for the endpoint.
    Incoming,
    /// `accept` was called: our 2xx is out, waiting for the ACK.
    Accepted,
    /// Our INVITE was answered with 2xx.
    LocalEstablished,
    /// The ACK of our 2xx arrived.
    RemoteEstablished,
    /// The remote side refused our INVITE with a final 4xx–6xx response.
    RemoteDeclined { status: u16, reason_phrase: String },
    /// The remote side redirected our INVITE (3xx) to these targets; it is not followed
    /// automatically, so the application decides.
    RemoteForwarded { status: u16, targets: Vec<String> },
    /// We declined the incoming call (`decline`).
    LocalDeclined { status: u16 },
    /// We redirected the incoming call (`forward`).
    LocalForwarded { status: u16 },
    /// The caller cancelled before we answered (CANCEL, RFC 3261 §9.2).
    RemoteCancelled,
    /// `terminate` was called.
    LocalTerminated,
    /// The remote side sent BYE.
    RemoteTerminated,
    /// Nothing came in time: no answer to our INVITE within `max_establish_time` or
    /// Timer B, no ACK for our 2xx, or an incoming call left unanswered.
    Timeout,
    /// The transport could not reach the peer.
    TransportError,
    /// The offer/answer failed after the dialog was up (an unusable answer), or the
    /// media sockets could not be opened: we sent BYE.
    MediaFailure { reason: String },
    /// No RTP came for the media timeout and the engine is set to hang up then.
    MediaTimeout,
    /// The session timer expired without a refresh (RFC 4028 §10).
    SessionExpired,
    /// A request in the dialog got 481 or 408 (RFC 3261 §12.2.1.2).
    DialogFailed { status: u16 },
    /// The call reached the engine's maximum duration.
    MaxDurationReached,
    /// `transfer` sent a REFER (RFC 3515): the call is `Transferring` until its outcome.
    TransferStarted,
    /// The transfer did not succeed (`status`: the REFER's or the target's final
    /// status): the call is `Established` again.
    TransferFailed { status: u16 },
    /// The transfer succeeded: the call ended with our BYE (RFC 5589 §6), or is
    /// `Established` again when the options kept it.
    Transferred,
    /// An INVITE with Replaces (RFC 3891 §3) for this call's dialog was accepted: the
    /// call was ended (BYE, or CANCEL while early) in favour of the new one.
    Replaced,
    /// The call was parked in an orbit (`Established` -> `Parking`).
    Parked,
    /// The parked call was retrieved from its orbit (`Parking` -> `Established`).
    ParkRetrieved,
}

/// What the application can ask of a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Operation {
    Establish,
    Accept,
    Decline,
    Forward,
    SendProvisional,
    Terminate,
    Hold,
    Retrieve,
    ApplyChanges,
    SendMessage,
    SetComposing,
    /// A REFER: blind or attended transfer (RFC 3515, RFC 5589).
    Transfer,
    /// Putting the call in a park orbit.
    Park,
    /// Joining a conference room ([`Engine::join_room`](crate::Engine::join_room)).
    JoinRoom,
    /// Muting or unmuting the call in conference rooms
    /// ([`Engine::set_muted`](crate::Engine::set_muted)).
    Mute,
}

impl Operation {
    /// Every operation, for tests and tables.
    pub const ALL: [Operation; 15] = [
        Operation::Establish,
        Operation::Accept,
        Operation::Decline,
        Operation::Forward,
        Operation::SendProvisional,
        Operation::Terminate,
        Operation::Hold,
        Operation::Retrieve,
        Operation::ApplyChanges,
        Operation::SendMessage,
        Operation::SetComposing,
        Operation::Transfer,
        Operation::Park,
        Operation::JoinRoom,
        Operation::Mute,
    ];
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self {
            Operation::Establish => "establish",
            Operation::Accept => "accept",
            Operation::Decline => "decline",
            Operation::Forward => "forward",
            Operation::SendProvisional => "send_provisional",
            Operation::Terminate => "terminate",
            Operation::Hold => "hold",
            Operation::Retrieve => "retrieve",
            Operation::ApplyChanges => "apply_changes",
            Operation::SendMessage => "send_instant_message",
            Operation::SetComposing => "set_composing",
            Operation::Transfer => "transfer",
            Operation::Park => "park",
            Operation::JoinRoom => "join_room",
            Operation::Mute => "mute",
        };
        f.write_str(name)
    }
}

/// Whether `operation` may be asked of a call in `state`. The call type is checked
/// apart (hold is an audio/video operation, messages an IM one).
pub fn permits(state: CallState, operation: Operation) -> bool {
    use CallState as S;
    use Operation as O;
    match operation {
        O::Establish => state == S::Idle,
        O::Accept | O::Decline | O::Forward | O::SendProvisional => state == S::Incoming,
        // Ending is always possible until it has begun.
        O::Terminate => !matches!(state, S::Terminating | S::Terminated),
        O::Hold
        | O::Retrieve
        | O::ApplyChanges
        | O::SendMessage
        | O::SetComposing
        | O::Transfer
        | O::Park
        | O::JoinRoom
        | O::Mute => state == S::Established,
    }
}

/// Whether a call may move from `from` to `to`. The engine moves calls only along
/// these edges; anything else is a bug it logs and refuses.
pub fn may_transition(from: CallState, to: CallState) -> bool {
    use CallState as S;
    matches!(
        (from, to),
        (S::Idle, S::Establishing | S::Incoming | S::Terminated)
            | (S::Incoming, S::Establishing | S::Terminated)
            | (
                S::Establishing,
                S::Established | S::Terminating | S::Terminated
            )
            | (
                S::Established,
                S::Transferring | S::Parking | S::Terminating | S::Terminated
            )
            | (
                S::Transferring | S::Parking,
                S::Established | S::Terminating | S::Terminated
            )
            | (S::Terminating, S::Terminated)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const STATES: [CallState; 8] = [
        CallState::Idle,
        CallState::Incoming,
        CallState::Establishing,
        CallState::Established,
        CallState::Transferring,
        CallState::Parking,
        CallState::Terminating,
        CallState::Terminated,
    ];

    #[test]
    fn every_legal_transition() {
        use CallState as S;
        let legal = [
            (S::Idle, S::Establishing),
            (S::Idle, S::Incoming),
            (S::Idle, S::Terminated),
            (S::Incoming, S::Establishing),
            (S::Incoming, S::Terminated),
            (S::Establishing, S::Established),
            (S::Establishing, S::Terminating),
            (S::Establishing, S::Terminated),
            (S::Established, S::Transferring),
            (S::Established, S::Parking),
            (S::Established, S::Terminating),
            (S::Established, S::Terminated),
            (S::Transferring, S::Established),
            (S::Transferring, S::Terminating),
            (S::Transferring, S::Terminated),
            (S::Parking, S::Established),
            (S::Parking, S::Terminating),
            (S::Parking, S::Terminated),
            (S::Terminating, S::Terminated),
        ];
        for from in STATES {
            for to in STATES {
                assert_eq!(
                    may_transition(from, to),
                    legal.contains(&(from, to)),
                    "{from} -> {to}"
                );
            }
        }
        // Nothing leaves Terminated, and no state returns to Idle.
        assert!(STATES.iter().all(|&to| !may_transition(S::Terminated, to)));
        assert!(STATES.iter().all(|&from| !may_transition(from, S::Idle)));
    }

    #[test]
    fn every_operation_in_every_state() {
        use CallState as S;
        use Operation as O;
        let allowed = |state: S| -> Vec<O> {
            match state {
                S::Idle => vec![O::Establish, O::Terminate],
                S::Incoming => vec![
                    O::Accept,
                    O::Decline,
                    O::Forward,
                    O::SendProvisional,
                    O::Terminate,
                ],
                S::Establishing | S::Transferring | S::Parking => vec![O::Terminate],
                S::Established => vec![
                    O::Terminate,
                    O::Hold,
                    O::Retrieve,
                    O::ApplyChanges,
                    O::SendMessage,
                    O::SetComposing,
                    O::Transfer,
                    O::Park,
                    O::JoinRoom,
                    O::Mute,
                ],
                S::Terminating | S::Terminated => vec![],
            }
        };
        for state in STATES {
            for op in Operation::ALL {
                assert_eq!(
                    permits(state, op),
                    allowed(state).contains(&op),
                    "{op} in {state}"
                );
            }
        }
    }
}
