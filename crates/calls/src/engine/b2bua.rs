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
use sip_message::{HeaderName, Method, Response};
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
    /// Headers passed from one leg to the other by name (compact forms match too):
    /// from A's INVITE into B's, and from B's responses (18x, 2xx, failure) into A's.
    /// A name the B2BUA writes per leg (Via, Call-ID, Contact, Session-Expires...) is
    /// refused with [`CallError::HeaderNotPassable`], never silently dropped.
    pub pass_headers: Vec<String>,
}

impl BridgeOptions {
    pub fn new() -> BridgeOptions {
        BridgeOptions::default()
    }

    pub fn establish(mut self, options: CallEstablishOptions) -> BridgeOptions {
        self.establish = options;
        self
    }

    pub fn mode(mut self, mode: BridgeMode) -> BridgeOptions {
        self.mode = mode;
        self
    }

    /// Passes the header `name` across the bridge (see [`BridgeOptions::pass_headers`]).
    pub fn pass_header(mut self, name: impl Into<String>) -> BridgeOptions {
        self.pass_headers.push(name.into());
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
    /// A re-INVITE or UPDATE of leg `from` was relayed to the other leg, whose final
    /// `status` went back (RFC 7092 §3.1.1). A session refresh that changes nothing is
    /// answered on its own leg and not raised.
    ModifyRelayed {
        from: B2bLeg,
        method: Method,
        status: u16,
    },
}

#[derive(Debug)]
pub(super) struct Bridge {
    a: CallHandle,
    b: CallHandle,
    state: B2bState,
    mode: BridgeMode,
    /// Header names passed across (validated).
    pass: Vec<HeaderName>,
}

/// A re-INVITE or UPDATE of one leg, relayed to the other (keyed by the other).
#[derive(Debug)]
pub(super) struct ModifyRelay {
    bridge: B2bHandle,
    /// The leg whose peer asked, and its server transaction.
    from: CallHandle,
    from_leg: B2bLeg,
    tx: sip_transaction::TransactionKey,
    method: Method,
    /// The offer relayed.
    offer: Option<Bytes>,
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
        let mut pass = Vec::with_capacity(options.pass_headers.len());
        for name in &options.pass_headers {
            if let Some(reason) = unpassable(name) {
                return Err(CallError::HeaderNotPassable {
                    name: name.clone(),
                    reason,
                });
            }
            pass.push(HeaderName::parse(name.trim().as_bytes()));
        }
        let mode = options.mode;
        let relayed = match mode {
            BridgeMode::SignalingOnly => match a.remote_offer.clone() {
                Some(offer) => Some(offer),
                None => {
                    return Err(CallError::InvalidArgument {
                        what: "incoming call",
                        problem: "an INVITE without an offer cannot be bridged signalling-only; \
                                  bridge it media-anchored"
                            .into(),
                    });
                }
            },
            BridgeMode::MediaAnchored => None,
        };
        let endpoint = a.endpoint;
        let mut establish = options.establish;
        if let Some(request) = a
            .session
            .and_then(|s| self.core.user_agent_ref().invite_request(s))
        {
            establish
                .headers
                .extend(passed(&request.headers, &pass).into_iter().map(|(n, v)| {
                    crate::options::SignalingHeader::new(
                        n.as_str(),
                        String::from_utf8_lossy(&v).into_owned(),
                    )
                }));
        }
        // Leg B gets a conversation of its own: nothing of A's (subject, priority) is
        // copied unless the options say so.
        let leg_error = |source| CallError::Leg {
            leg: B2bLeg::B,
            source: Box::new(source),
        };
        let conversation = self
            .new_conversation(endpoint, ConversationSettings::default())
            .map_err(leg_error)?;
        let b = self
            .new_call(conversation, CallKind::AudioVideo)
            .map_err(leg_error)?;
        let handle = B2bHandle(self.next());
        let passthrough = mode == BridgeMode::SignalingOnly;
        if let Some(c) = self.calls.get_mut(&b) {
            c.passthrough = passthrough;
            c.relay_local = relayed.clone();
            c.bridge = Some((handle, B2bLeg::B));
        }
        self.bridges.insert(
            handle,
            Bridge {
                a: incoming,
                b,
                state: B2bState::Idle,
                mode,
                pass,
            },
        );
        if let Err(error) = self.establish_with(now, b, target, establish, relayed) {
            self.bridges.remove(&handle);
            if let Some(c) = self.calls.get_mut(&b) {
                c.bridge = None;
            }
            if let Err(error) = self.terminate(now, b, CallTerminateOptions::new()) {
                tracing::debug!(%error, "leg B not cleaned up");
            }
            return Err(leg_error(error));
        }
        if let Some(c) = self.calls.get_mut(&incoming) {
            c.passthrough = passthrough;
            c.bridge = Some((handle, B2bLeg::A));
            // Leg B's establish time limit governs now.
            c.clear(Timer::Unanswered);
        }
        self.set_bridge_state(handle, B2bState::Establishing, B2bLeg::A);
        Ok(handle)
    }

    /// The mode of a back-to-back call.
    pub fn bridge_mode(&self, bridge: B2bHandle) -> Option<BridgeMode> {
        self.bridges.get(&bridge).map(|b| b.mode)
    }

    /// The bridge a call is a leg of, and which leg.
    pub fn bridge_of(&self, call: CallHandle) -> Option<(B2bHandle, B2bLeg)> {
        self.calls.get(&call)?.bridge
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

    /// A 18x on leg B goes to leg A with the same status and reason phrase, the passed
    /// headers, and (signalling-only) B's SDP as it is.
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
        let Some(entry) = self.bridges.get(&bridge) else {
            return;
        };
        let sdp = match entry.mode {
            BridgeMode::SignalingOnly => body::split(&response.headers, &response.body)
                .ok()
                .and_then(|s| s.sdp),
            // Leg B's early SDP is Tandem's leg: the caller hears ringback from its phone.
            BridgeMode::MediaAnchored => None,
        };
        let early_media = sdp.is_some();
        let mut reply = Reply::new(response.status)
            .with_reason(String::from_utf8_lossy(&response.reason).into_owned());
        reply.headers = passed(&response.headers, &entry.pass);
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
                if let Some(r) = response
                    && let Some(entry) = self.bridges.get(&handle)
                {
                    reply.headers = passed(&r.headers, &entry.pass);
                }
                if let Some(sdp) = sdp.clone() {
                    reply = reply.with_body(Body::sdp(sdp));
                }
                if let Err(error) = self.core.user_agent().respond(now, &tx, reply) {
                    tracing::debug!(%error, bridge = %handle, "2xx not relayed to leg A");
                    return;
                }
                self.stats.calls_answered += 1;
                if let Some(c) = self.calls.get_mut(&call)
                    && sdp.is_some()
                {
                    c.remote_offer = sdp.clone();
                }
                if let Some(c) = self.calls.get_mut(&a) {
                    c.invite_tx = None;
                    if sdp.is_some() {
                        c.relay_local = sdp;
                    }
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
        // A re-INVITE relayed from the other leg to the one that ended has no answer
        // coming (RFC 3261 §14.2: 500 for a request that cannot be handled now).
        if let Some(relay) = self.modify_relays.remove(&match leg {
            B2bLeg::A => entry.a,
            B2bLeg::B => entry.b,
        }) {
            self.respond(now, &relay.tx, Reply::new(500));
        }
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
            if let (EstablishFailure::Refused { headers, .. }, Some(entry)) =
                (&failure, self.bridges.get(&bridge))
            {
                options.headers = headers
                    .iter()
                    .filter(|h| entry.pass.contains(&HeaderName::parse(h.name.as_bytes())))
                    .cloned()
                    .collect();
            }
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
    /// A re-INVITE or UPDATE from a signalling-only leg's peer. A session refresh (the
    /// same SDP as last time, or none) is answered on its own leg, with the SDP last
    /// sent to it (RFC 4028: session timers run per leg). A new offer is relayed to the
    /// other leg and answered with what comes back; while the other leg has a
    /// re-INVITE or UPDATE of its own in flight, 491 (RFC 3261 §14.2, RFC 3311 §5.2).
    pub(super) fn relay_modify(
        &mut self,
        now: Instant,
        call: CallHandle,
        tx: sip_transaction::TransactionKey,
        request: &sip_message::Request,
        sdp: Option<Bytes>,
    ) {
        let Some(c) = self.calls.get(&call) else {
            return self.respond(now, &tx, Reply::new(481));
        };
        let refresh = sdp.is_none() || sdp == c.remote_offer;
        let Some((bridge, leg)) = c.bridge.filter(|_| !refresh) else {
            let mut reply = Reply::new(200);
            if request.method == Method::Invite
                && let Some(local) = c.relay_local.clone()
            {
                reply = reply.with_body(Body::sdp(local));
            }
            return self.respond(now, &tx, reply);
        };
        let Some(entry) = self.bridges.get(&bridge) else {
            return self.respond(now, &tx, Reply::new(481));
        };
        let other = match leg {
            B2bLeg::A => entry.b,
            B2bLeg::B => entry.a,
        };
        let other_session = self
            .calls
            .get(&other)
            .filter(|o| o.state == CallState::Established)
            .and_then(|o| o.session);
        let Some(other_session) = other_session else {
            // The other leg is not up (yet, or any more): try again later.
            let reply = Reply::new(500).with_header(HeaderName::RetryAfter, "1");
            return self.respond(now, &tx, reply);
        };
        // Glare across the bridge: the other leg has an offer of ours in flight, or
        // its peer's own offer waits for an answer from this leg. Answering this one
        // would cross them; each peer retries after its own random wait (§14.1).
        if self.modify_relays.contains_key(&other)
            || self.modify_relays.values().any(|r| r.from == other)
            || self.core.user_agent_ref().modify_pending(other_session)
        {
            return self.respond(now, &tx, Reply::new(491));
        }
        let body = sdp.clone().map(Body::sdp);
        let sent = if request.method == Method::Update {
            self.core.user_agent().update(now, other_session, body)
        } else {
            self.core.user_agent().reinvite(now, other_session, body)
        };
        if let Err(error) = sent {
            tracing::debug!(%error, %bridge, "re-offer not relayed");
            return self.respond(now, &tx, Reply::new(500));
        }
        self.modify_relays.insert(
            other,
            ModifyRelay {
                bridge,
                from: call,
                from_leg: leg,
                tx,
                method: request.method.clone(),
                offer: sdp,
            },
        );
        self.core.pump(now);
    }

    /// Whether `call` has a relayed re-INVITE or UPDATE in flight.
    pub(super) fn relaying_modify(&self, call: CallHandle) -> bool {
        self.modify_relays.contains_key(&call)
    }

    /// The final response to a relayed re-INVITE or UPDATE goes back to the leg that
    /// asked, with the answer as it came.
    pub(super) fn relay_modify_completed(
        &mut self,
        now: Instant,
        call: CallHandle,
        response: &Response,
    ) {
        let Some(relay) = self.modify_relays.remove(&call) else {
            return;
        };
        let ok = (200..300).contains(&response.status);
        let answer = body::split(&response.headers, &response.body)
            .ok()
            .and_then(|s| s.sdp);
        let mut reply = Reply::new(response.status)
            .with_reason(String::from_utf8_lossy(&response.reason).into_owned());
        if let Some(entry) = self.bridges.get(&relay.bridge) {
            reply.headers = passed(&response.headers, &entry.pass);
        }
        if ok && let Some(answer) = answer.clone() {
            reply = reply.with_body(Body::sdp(answer));
        }
        self.respond(now, &relay.tx, reply);
        if ok {
            if let Some(c) = self.calls.get_mut(&relay.from) {
                if relay.offer.is_some() {
                    c.remote_offer = relay.offer.clone();
                }
                if answer.is_some() {
                    c.relay_local = answer.clone();
                }
            }
            if let Some(c) = self.calls.get_mut(&call) {
                if relay.offer.is_some() {
                    c.relay_local = relay.offer;
                }
                if answer.is_some() {
                    c.remote_offer = answer;
                }
            }
        }
        self.bridge_event(
            relay.bridge,
            B2bEvent::ModifyRelayed {
                from: relay.from_leg,
                method: relay.method,
                status: response.status,
            },
        );
    }

    /// A media-anchored leg is established (each leg negotiated with Tandem): leg B's
    /// 2xx accepts leg A with Tandem's own answer; A's ACK completes the bridge and
    /// joins the two RTP streams in the media relay.
    pub(super) fn anchored_established(
        &mut self,
        now: Instant,
        call: CallHandle,
        response: Option<&Response>,
    ) {
        let Some((handle, leg)) = self.calls.get(&call).and_then(|c| c.bridge) else {
            return;
        };
        let Some(entry) = self.bridges.get(&handle) else {
            return;
        };
        let (a, b) = (entry.a, entry.b);
        match leg {
            B2bLeg::B => {
                if self.unanswered_a_of(call).is_none() {
                    return;
                }
                let headers = response
                    .map(|r| passed(&r.headers, &entry.pass))
                    .unwrap_or_default()
                    .into_iter()
                    .map(|(n, v)| {
                        crate::options::SignalingHeader::new(
                            n.as_str(),
                            String::from_utf8_lossy(&v).into_owned(),
                        )
                    })
                    .collect();
                let options = crate::options::CallAcceptOptions {
                    headers,
                    ..crate::options::CallAcceptOptions::new()
                };
                if let Err(error) = self.accept(now, a, options) {
                    tracing::debug!(%error, bridge = %handle, "leg A not accepted");
                    let reason = format!("SIP;cause=500;text=\"leg A: {error}\"");
                    let mut decline = CallDeclineOptions::new(500);
                    decline.reason = Some(reason.clone());
                    if let Err(error) = self.decline(now, a, decline) {
                        tracing::debug!(%error, "leg A not declined");
                    }
                }
            }
            B2bLeg::A => {
                self.set_bridge_state(handle, B2bState::Established, B2bLeg::A);
                self.events.push_back(Event::Media {
                    call: a,
                    instruction: crate::types::MediaInstruction::Join { peer: b },
                });
            }
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

/// Why a header cannot be passed across a bridge: the B2BUA writes it per leg.
fn unpassable(name: &str) -> Option<&'static str> {
    let name = name.trim().to_ascii_lowercase();
    Some(match name.as_str() {
        "via" | "v" | "call-id" | "i" | "cseq" | "contact" | "m" | "route" | "record-route" => {
            "it belongs to one leg's dialog or path; each leg has its own (topology hiding)"
        }
        "from" | "f" | "to" | "t" => "each leg has its own From and To, with its own tags",
        "max-forwards" => "each leg starts its own hop count",
        "content-length" | "l" | "content-type" | "c" | "content-encoding" | "e" => {
            "the body is relayed with framing of its own"
        }
        "rseq" | "rack" | "require" | "supported" | "k" | "allow" | "session-expires" | "x"
        | "min-se" => "it is negotiated per leg (100rel, session timers, methods)",
        "authorization" | "proxy-authorization" | "www-authenticate" | "proxy-authenticate" => {
            "credentials are per hop; passing them would leak them"
        }
        "" => "the name is empty",
        _ => return None,
    })
}

/// The headers of `headers` whose name is in `names`, in order.
fn passed(headers: &sip_message::Headers, names: &[HeaderName]) -> Vec<(HeaderName, Bytes)> {
    if names.is_empty() {
        return Vec::new();
    }
    headers
        .iter()
        .filter(|h| names.contains(&h.name))
        .map(|h| (h.name.clone(), h.value.clone()))
        .collect()
}
