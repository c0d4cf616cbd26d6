//! `BackToBackCall`, signalling-only (a draft): an incoming call (leg A) bridged to an
//! outgoing call the engine places (leg B).
//!
//! The two legs are two ordinary calls of the engine, so leg B has its own Call-ID,
//! tags, Via branch and Contact (topology hiding, RFC 3261 §16 does not apply: a B2BUA
//! is two UAs, RFC 7092 §3.1). In signalling-only mode the session descriptions are
//! relayed byte for byte (RFC 7092 §3.1.1, "signaling-only"): A's offer goes out in B's
//! INVITE, B's answer (in a 18x or the 2xx) comes back to A, and the engine takes no
//! RTP port for either leg.

use super::{Direction2, Engine, Reason, Timer};
use crate::body;
use crate::options::{CallDeclineOptions, CallEstablishOptions, CallTerminateOptions};
use crate::state::{CallState, Operation};
use crate::types::{
    CallError, CallEvent, CallHandle, CallKind, ConversationSettings, EstablishFailure,
    EstablishSucceeded, Event,
};
use bytes::Bytes;
use sip_dialog::{Body, Reply};
use sip_message::Response;
use std::fmt;
use std::time::Instant;

/// A back-to-back call (two legs and their bridge).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct B2bHandle(pub(crate) u64);

impl fmt::Display for B2bHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "b2b-{}", self.0)
    }
}

impl B2bHandle {
    /// The number inside, for logs and maps.
    pub fn get(self) -> u64 {
        self.0
    }
}

/// Which leg of a back-to-back call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum B2bLeg {
    /// The incoming call that was bridged (toward the caller).
    A,
    /// The call the engine placed for the bridge (toward the target).
    B,
}

/// The state of a back-to-back call as a whole.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum B2bState {
    /// Not started.
    Idle,
    /// Leg B is being placed; leg A is unanswered.
    Establishing,
    /// Both legs are established.
    Established,
    /// One leg has ended; the other is being ended.
    Terminating,
    /// Both legs are over; the bridge is forgotten.
    Terminated,
}

/// How media goes across the bridge.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum BridgeMode {
    /// SDP passed through untouched, byte for byte (RFC 7092 §3.1.1); media goes
    /// end to end, and the engine takes no RTP port.
    #[default]
    SignalingOnly,
    /// Each leg negotiates its own SDP with Tandem and the media relay joins the two
    /// streams (RFC 7092 §3.1.3, "media-aware"): the legs never see each other's
    /// addresses.
    MediaAnchored,
}

/// The options of [`Engine::bridge`].
#[derive(Debug, Clone, Default, PartialEq)]
#[non_exhaustive]
pub struct BridgeOptions {
    pub mode: BridgeMode,
    /// Leg B's INVITE: its headers, destination, establish time limit.
    pub establish: CallEstablishOptions,
}

impl BridgeOptions {
    pub fn new() -> BridgeOptions {
        BridgeOptions::default()
    }

    pub fn establish(mut self, options: CallEstablishOptions) -> BridgeOptions {
        self.establish = options;
        self
    }
}

/// What happens to a back-to-back call, saying which leg did it.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum B2bEvent {
    /// Every change of [`B2bState`], with the leg whose event caused it.
    StateChanged {
        previous: B2bState,
        state: B2bState,
        leg: B2bLeg,
    },
    /// A 18x of leg B was relayed to leg A (with B's SDP when it had one).
    ProvisionalRelayed { status: u16, early_media: bool },
    /// Leg B's final failure was relayed to leg A as `status`, with a Reason header
    /// (RFC 3326) naming B's status.
    FailureRelayed {
        status: u16,
        failure: EstablishFailure,
    },
    /// A leg ended (a BYE, a CANCEL, a failure), with why.
    LegEnded { leg: B2bLeg, reason: Reason },
}

#[derive(Debug)]
pub(super) struct Bridge {
    a: CallHandle,
    b: CallHandle,
    state: B2bState,
}

/// A leg's call ended (queued by `finish`, acted on in `drain`).
#[derive(Debug)]
pub(super) struct LegEnded {
    pub(super) bridge: B2bHandle,
    pub(super) leg: B2bLeg,
    pub(super) reason: Reason,
    /// Leg B ended before it was answered: how.
    pub(super) failure: Option<EstablishFailure>,
    /// The Reason header of the BYE/CANCEL/final response, if any.
    pub(super) termination_reason: Option<String>,
}

impl Engine {
    /// Bridges an incoming call (state `Incoming`) to `target` (a SIP URI): a new call
    /// to the target carries the caller's offer; its provisional responses, its failure
    /// (with a Reason header, RFC 3326) or its answer go back to the caller; a BYE or
    /// CANCEL on either leg ends the other. [`Event::Bridge`] reports the back-to-back
    /// call as a whole; each leg still raises its own call events.
    pub fn bridge(
        &mut self,
        now: Instant,
        incoming: CallHandle,
        target: &str,
        options: BridgeOptions,
    ) -> Result<B2bHandle, CallError> {
        let a = self.check(incoming, Operation::Accept)?;
        if a.direction != Direction2::Incoming || a.invite_tx.is_none() || a.bridge.is_some() {
            return Err(CallError::InvalidState {
                operation: Operation::Accept,
                state: a.state,
            });
        }
        let Some(offer) = a.remote_offer.clone() else {
            return Err(CallError::InvalidArgument {
                what: "incoming call",
                problem: "an INVITE without an offer cannot be bridged signalling-only (yet)"
                    .into(),
            });
        };
        let endpoint = a.endpoint;
        // Leg B gets a conversation of its own: nothing of A's (subject, priority) is
        // copied unless the options say so.
        let conversation = self.new_conversation(endpoint, ConversationSettings::default())?;
        let b = self.new_call(conversation, CallKind::AudioVideo)?;
        let handle = B2bHandle(self.next());
        if let Some(c) = self.calls.get_mut(&b) {
            c.passthrough = true;
            c.bridge = Some((handle, B2bLeg::B));
        }
        self.bridges.insert(
            handle,
            Bridge {
                a: incoming,
                b,
                state: B2bState::Idle,
            },
        );
        if let Err(error) = self.establish_with(now, b, target, options.establish, Some(offer)) {
            self.bridges.remove(&handle);
            if let Some(c) = self.calls.get_mut(&b) {
                c.bridge = None;
            }
            if let Err(error) = self.terminate(now, b, CallTerminateOptions::new()) {
                tracing::debug!(%error, "leg B not cleaned up");
            }
            return Err(error);
        }
        if let Some(c) = self.calls.get_mut(&incoming) {
            c.passthrough = true;
            c.bridge = Some((handle, B2bLeg::A));
            // Leg B's establish time limit governs now.
            c.clear(Timer::Unanswered);
        }
        self.set_bridge_state(handle, B2bState::Establishing, B2bLeg::A);
        Ok(handle)
    }

    /// The state of a back-to-back call; `None` once it is over.
    pub fn bridge_state(&self, bridge: B2bHandle) -> Option<B2bState> {
        self.bridges.get(&bridge).map(|b| b.state)
    }

    /// The two legs of a back-to-back call (A, B).
    pub fn bridge_legs(&self, bridge: B2bHandle) -> Option<(CallHandle, CallHandle)> {
        self.bridges.get(&bridge).map(|b| (b.a, b.b))
    }

    fn set_bridge_state(&mut self, bridge: B2bHandle, state: B2bState, leg: B2bLeg) {
        let Some(entry) = self.bridges.get_mut(&bridge) else {
            return;
        };
        let previous = entry.state;
        if previous == state {
            return;
        }
        entry.state = state;
        self.bridge_event(
            bridge,
            B2bEvent::StateChanged {
                previous,
                state,
                leg,
            },
        );
    }

    fn bridge_event(&mut self, bridge: B2bHandle, event: B2bEvent) {
        self.events.push_back(Event::Bridge { bridge, event });
    }

    /// The other leg of `call`'s bridge, if `call` is leg B and A is still unanswered:
    /// (bridge, A, A's INVITE transaction).
    fn unanswered_a_of(
        &self,
        call: CallHandle,
    ) -> Option<(B2bHandle, CallHandle, sip_transaction::TransactionKey)> {
        let (bridge, leg) = self.calls.get(&call)?.bridge?;
        if leg != B2bLeg::B {
            return None;
        }
        let a = self.bridges.get(&bridge)?.a;
        let tx = self.calls.get(&a)?.invite_tx.clone()?;
        Some((bridge, a, tx))
    }

    /// A 18x on leg B goes to leg A with the same status, reason phrase and SDP.
    pub(super) fn relay_provisional(
        &mut self,
        now: Instant,
        call: CallHandle,
        response: &Response,
    ) {
        if response.status <= 100 {
            return;
        }
        let Some((bridge, _, tx)) = self.unanswered_a_of(call) else {
            return;
        };
        let sdp = body::split(&response.headers, &response.body)
            .ok()
            .and_then(|s| s.sdp);
        let early_media = sdp.is_some();
        let mut reply = Reply::new(response.status)
            .with_reason(String::from_utf8_lossy(&response.reason).into_owned());
        if let Some(sdp) = sdp {
            reply = reply.with_body(Body::sdp(sdp));
        }
        self.respond(now, &tx, reply);
        self.bridge_event(
            bridge,
            B2bEvent::ProvisionalRelayed {
                status: response.status,
                early_media,
            },
        );
    }

    /// A passthrough leg is established: by B's 2xx (`response`, `sdp` its answer),
    /// which answers A with the same SDP; or by A's ACK.
    pub(super) fn leg_established(
        &mut self,
        now: Instant,
        call: CallHandle,
        sdp: Option<Bytes>,
        response: Option<&Response>,
    ) {
        let Some(c) = self.calls.get_mut(&call) else {
            return;
        };
        let outgoing = c.direction == Direction2::Outgoing;
        c.clear(Timer::Establish);
        c.established_once = true;
        let bridge = c.bridge;
        let reason = if outgoing {
            Reason::LocalEstablished
        } else {
            Reason::RemoteEstablished
        };
        self.transition(call, CallState::Established, reason);
        if outgoing {
            let headers = response
                .map(|r| body::headers_of(&r.headers))
                .unwrap_or_default();
            self.emit(
                call,
                CallEvent::EstablishCompleted {
                    result: Ok(EstablishSucceeded { headers }),
                },
            );
        }
        self.arm(
            call,
            Timer::MaxDuration,
            now + self.config.max_call_duration,
        );
        let Some((handle, leg)) = bridge else {
            return;
        };
        match leg {
            B2bLeg::B => {
                let Some((_, a, tx)) = self.unanswered_a_of(call) else {
                    return;
                };
                let mut reply = Reply::new(200);
                if let Some(sdp) = sdp {
                    reply = reply.with_body(Body::sdp(sdp));
                }
                if let Err(error) = self.core.user_agent().respond(now, &tx, reply) {
                    tracing::debug!(%error, bridge = %handle, "2xx not relayed to leg A");
                    return;
                }
                self.stats.calls_answered += 1;
                if let Some(c) = self.calls.get_mut(&a) {
                    c.invite_tx = None;
                }
                self.transition(a, CallState::Establishing, Reason::Accepted);
                self.core.pump(now);
            }
            B2bLeg::A => {
                self.set_bridge_state(handle, B2bState::Established, B2bLeg::A);
            }
        }
    }

    /// Acts on the legs that ended: the other leg is ended the right way. Returns
    /// whether anything was done.
    pub(super) fn run_bridges(&mut self, now: Instant) -> bool {
        let mut progressed = false;
        while let Some(ended) = self.bridge_work.pop_front() {
            progressed = true;
            self.on_leg_ended(now, ended);
        }
        progressed
    }

    fn on_leg_ended(&mut self, now: Instant, ended: LegEnded) {
        let LegEnded {
            bridge,
            leg,
            reason,
            failure,
            termination_reason,
        } = ended;
        let Some(entry) = self.bridges.get(&bridge) else {
            return;
        };
        let other = match leg {
            B2bLeg::A => entry.b,
            B2bLeg::B => entry.a,
        };
        self.bridge_event(
            bridge,
            B2bEvent::LegEnded {
                leg,
                reason: reason.clone(),
            },
        );
        let other_alive = self
            .calls
            .get(&other)
            .is_some_and(|c| c.state != CallState::Terminated);
        if !other_alive {
            self.set_bridge_state(bridge, B2bState::Terminated, leg);
            self.bridges.remove(&bridge);
            return;
        }
        self.set_bridge_state(bridge, B2bState::Terminating, leg);
        let a_unanswered = leg == B2bLeg::B
            && self
                .calls
                .get(&other)
                .is_some_and(|c| c.invite_tx.is_some());
        let result = if a_unanswered {
            let failure = failure.unwrap_or(EstablishFailure::Ended {
                reason: reason.clone(),
            });
            let (status, phrase) = relayed_status(&failure);
            let mut options = CallDeclineOptions::new(status);
            options.reason_phrase = phrase.clone();
            options.reason = Some(match phrase {
                Some(text) => format!("SIP;cause={status};text=\"{}\"", text.replace('"', "'")),
                None => format!("SIP;cause={status}"),
            });
            self.bridge_event(bridge, B2bEvent::FailureRelayed { status, failure });
            self.decline(now, other, options)
        } else {
            let options = CallTerminateOptions {
                reason: termination_reason,
                ..CallTerminateOptions::new()
            };
            self.terminate(now, other, options)
        };
        if let Err(error) = result {
            tracing::debug!(%error, %bridge, "the other leg not ended");
        }
    }
}

/// The status leg A is refused with when leg B failed, and its reason phrase.
fn relayed_status(failure: &EstablishFailure) -> (u16, Option<String>) {
    match failure {
        EstablishFailure::Refused {
            status,
            reason_phrase,
            ..
        } => (
            *status,
            Some(reason_phrase.clone()).filter(|p| !p.is_empty()),
        ),
        EstablishFailure::Timeout => (408, None),
        EstablishFailure::TransportError => (503, None),
        // A redirection is not followed for the caller (the contacts are B's side).
        EstablishFailure::Redirected { .. } => (480, None),
        _ => (500, None),
    }
}
