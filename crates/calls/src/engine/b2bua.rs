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
use std::collections::VecDeque;
use std::fmt;
use std::time::Instant;

mod attended;
pub(super) use attended::Joins;
pub use attended::TRANSFEROR_HANGUP_TIME;

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
    /// Leg A's answer: headers added to the 200 that answers the caller.
    pub accept: crate::options::CallAcceptOptions,
    /// Headers passed from one leg to the other by name (compact forms match too):
    /// from A's INVITE into B's, and from B's responses (18x, 2xx, failure) into A's.
    /// A name the B2BUA writes per leg (Via, Call-ID, Contact, Session-Expires...) is
    /// refused with [`CallError::HeaderNotPassable`], never silently dropped.
    pub pass_headers: Vec<String>,
    /// With several targets ([`Engine::bridge_targets`]): one after the other, or all
    /// at once.
    pub ring: RingStrategy,
    /// Whom leg B's INVITE is from; `None`: leg A's endpoint owner.
    pub caller: Option<crate::types::Identity>,
}

/// How the targets of a bridge are rung.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum RingStrategy {
    /// One at a time, each for its timeout; a failure or a timeout tries the next. A
    /// 6xx ends the search (RFC 3261 §16.7: a global failure).
    #[default]
    Sequential,
    /// All at once (simultaneous ring): the first to answer wins and the others get a
    /// CANCEL with `Reason: SIP;cause=200;text="Call completed elsewhere"` (RFC 3326).
    Parallel,
}

/// One target of a bridge: where, how long it may ring, and its own headers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BridgeTarget {
    pub uri: String,
    /// How long this target may ring; `None`: the options' `max_establish_time` (or
    /// the engine's establish timeout).
    pub timeout: Option<std::time::Duration>,
    pub headers: Vec<crate::options::SignalingHeader>,
    /// Through this configured trunk ([`CallEstablishOptions::trunk`]); `uri` may then be
    /// a bare number.
    pub trunk: Option<String>,
}

impl BridgeTarget {
    pub fn new(uri: impl Into<String>) -> BridgeTarget {
        BridgeTarget {
            uri: uri.into(),
            timeout: None,
            headers: Vec::new(),
            trunk: None,
        }
    }

    pub fn trunk(mut self, trunk: impl Into<String>) -> BridgeTarget {
        self.trunk = Some(trunk.into());
        self
    }

    pub fn timeout(mut self, timeout: std::time::Duration) -> BridgeTarget {
        self.timeout = Some(timeout);
        self
    }

    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> BridgeTarget {
        self.headers
            .push(crate::options::SignalingHeader::new(name, value));
        self
    }
}

impl BridgeOptions {
    pub fn new() -> BridgeOptions {
        BridgeOptions::default()
    }

    pub fn establish(mut self, options: CallEstablishOptions) -> BridgeOptions {
        self.establish = options;
        self
    }

    pub fn accept(mut self, options: crate::options::CallAcceptOptions) -> BridgeOptions {
        self.accept = options;
        self
    }

    pub fn mode(mut self, mode: BridgeMode) -> BridgeOptions {
        self.mode = mode;
        self
    }

    pub fn ring(mut self, ring: RingStrategy) -> BridgeOptions {
        self.ring = ring;
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
    /// A re-bridge ([`Engine::rebridge`]) is done: leg A now talks to `leg`, the new
    /// leg B (`previous` was the leg B before).
    Rebridged {
        previous: CallHandle,
        leg: CallHandle,
    },
    /// A re-bridge failed: the new target did not answer (`failure` says how), or A
    /// refused its SDP. Leg A stays with the leg B it had.
    RebridgeFailed { failure: EstablishFailure },
    /// The leg `call` was parked in `orbit` ([`Engine::park`], or a REFER to the park
    /// number): the bridge ends (`Terminated` follows) without ending that leg; the
    /// other leg (the parker) is hung up, or hangs up itself after a REFER.
    Parked {
        call: CallHandle,
        orbit: crate::CallOrbit,
    },
    /// An attended transfer across two bridges is done (a REFER whose Replaces named
    /// `other`'s leg toward the transferor, RFC 3891): this bridge's leg `previous`
    /// (toward the transferor, left for it to hang up) gave its place to `leg`, the far
    /// leg of `other`, which ends (`Terminated`; the replaced leg gets a BYE).
    Joined {
        other: B2bHandle,
        previous: CallHandle,
        leg: CallHandle,
    },
    /// Such a join failed: the transferor was told `status` by NOTIFY, and `reason`
    /// says why. The legs whose media had changed were hung up; the others stay as
    /// they were.
    JoinFailed {
        other: B2bHandle,
        status: u16,
        reason: String,
    },
    /// The leg `call` joined conference room `room`
    /// ([`Engine::join_room`](crate::Engine::join_room)): the bridge ends (`Terminated`
    /// follows) without ending either leg; the other leg keeps Tandem's media (silence)
    /// for the application to join, play to or hang up.
    JoinedRoom {
        call: CallHandle,
        room: crate::RoomId,
    },
}

#[derive(Debug)]
pub(super) struct Bridge {
    a: CallHandle,
    /// The answered leg B; before an answer, the candidate placed last.
    b: CallHandle,
    /// Leg B candidates placed and not answered (several while ringing in parallel).
    ringing: Vec<CallHandle>,
    answered: bool,
    /// What placing leg B needs, until A is answered: then freed (a held bridge keeps
    /// 370 bytes less).
    setup: Option<Box<Setup>>,
    ring: RingStrategy,
    /// Signalling-only: A's offer, for each candidate's INVITE.
    relayed: Option<Bytes>,
    /// The candidate whose early media (18x with SDP) A was given.
    early_from: Option<CallHandle>,
    /// A re-bridge in progress: the new leg B being placed, and whether the current
    /// leg B is hung up when it answers.
    replacing: Option<(CallHandle, bool)>,
    /// The REFER that asked for the re-bridge: (the transferor's leg, the transfer),
    /// told the progress by NOTIFY.
    transfer: Option<(CallHandle, crate::types::TransferId)>,
    state: B2bState,
    mode: BridgeMode,
    /// Header names passed across (validated).
    pass: Vec<HeaderName>,
    caller: Option<crate::types::Identity>,
}

/// A bridge's leg B search, while A waits.
#[derive(Debug, Default)]
struct Setup {
    /// Targets not tried yet (sequential ringing).
    queue: VecDeque<BridgeTarget>,
    /// Each candidate's INVITE options (before its target's own headers and timeout).
    establish: CallEstablishOptions,
    /// The failure A gets if every candidate fails.
    failure: Option<EstablishFailure>,
    /// Headers for A's 200 (validated).
    accept_headers: Vec<crate::options::SignalingHeader>,
}

/// A re-INVITE or UPDATE of one leg, relayed to the other (keyed by the other).
#[derive(Debug)]
pub(super) struct ModifyRelay {
    bridge: B2bHandle,
    /// The leg whose peer asked, and its server transaction.
    from: CallHandle,
    from_leg: B2bLeg,
    /// `None`: a re-offer of the bridge's own (a re-bridge gives A the new leg B's SDP).
    tx: Option<sip_transaction::TransactionKey>,
    method: Method,
    /// The offer relayed.
    offer: Option<Bytes>,
}

/// A leg's call ended (queued by `finish`, acted on in `drain`).
#[derive(Debug)]
pub(super) struct LegEnded {
    pub(super) bridge: B2bHandle,
    pub(super) call: CallHandle,
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
        self.bridge_targets(now, incoming, vec![BridgeTarget::new(target)], options)
    }

    /// [`bridge`](Self::bridge) to several targets, rung as `options.ring` says
    /// (sequential or parallel, each for its own timeout). A gets the first answer;
    /// when every target fails, A gets the most telling failure (a 6xx, else the first
    /// 4xx/5xx, else a timeout), with Reason.
    pub fn bridge_targets(
        &mut self,
        now: Instant,
        incoming: CallHandle,
        targets: Vec<BridgeTarget>,
        options: BridgeOptions,
    ) -> Result<B2bHandle, CallError> {
        if targets.is_empty() {
            return Err(CallError::InvalidArgument {
                what: "bridge targets",
                problem: "no target".into(),
            });
        }
        let a = self.check(incoming, Operation::Accept)?;
        if a.direction != Direction2::Incoming || a.invite_tx.is_none() || a.bridge.is_some() {
            return Err(CallError::InvalidState {
                operation: Operation::Accept,
                state: a.state,
            });
        }
        // A's answer headers are checked now, not when B answers.
        crate::options::to_wire(&options.accept.headers).map_err(|source| CallError::Leg {
            leg: B2bLeg::A,
            source: Box::new(source),
        })?;
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
        let mut establish = options.establish;
        if let Some(request) = a
            .session
            .and_then(|s| self.core.user_agent_ref().invite_request(s))
        {
            establish
                .headers
                .extend(passed(&request.headers, &pass).into_iter().map(|(n, v)| {
                    crate::options::SignalingHeader::new(n.as_str(), crate::body::text(&v))
                }));
        }
        let passthrough = mode == BridgeMode::SignalingOnly;
        let handle = B2bHandle(self.next());
        self.bridges.insert(
            handle,
            Box::new(Bridge {
                a: incoming,
                b: incoming,
                ringing: Vec::new(),
                answered: false,
                setup: Some(Box::new(Setup {
                    queue: targets.into(),
                    establish,
                    failure: None,
                    accept_headers: options.accept.headers,
                })),
                ring: options.ring,
                relayed,
                early_from: None,
                replacing: None,
                transfer: None,
                state: B2bState::Idle,
                mode,
                pass,
                caller: options.caller,
            }),
        );
        if let Err(error) = self.place_next(now, handle) {
            self.bridges.remove(&handle);
            return Err(error);
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

    /// Places the next candidate(s): sequential, the next target that can be placed;
    /// parallel, every target left. Fails (naming leg B) when none could be placed.
    fn place_next(&mut self, now: Instant, handle: B2bHandle) -> Result<(), CallError> {
        let mut first_error = None;
        loop {
            let Some(entry) = self.bridges.get_mut(&handle) else {
                return Ok(());
            };
            let parallel = entry.ring == RingStrategy::Parallel;
            if !parallel && !entry.ringing.is_empty() {
                return Ok(());
            }
            let Some(target) = entry.setup.as_mut().and_then(|s| s.queue.pop_front()) else {
                let placed = !entry.ringing.is_empty();
                return match (placed, first_error) {
                    (true, _) | (false, None) => Ok(()),
                    (false, Some(error)) => Err(CallError::Leg {
                        leg: B2bLeg::B,
                        source: Box::new(error),
                    }),
                };
            };
            if let Err(error) = self.place_candidate(now, handle, target, false) {
                tracing::debug!(%error, bridge = %handle, "target not placed");
                first_error.get_or_insert(error);
            }
        }
    }

    /// Places one leg B candidate toward `target`.
    fn place_candidate(
        &mut self,
        now: Instant,
        handle: B2bHandle,
        target: BridgeTarget,
        replacing: bool,
    ) -> Result<CallHandle, CallError> {
        let Some(entry) = self.bridges.get(&handle) else {
            return Err(CallError::InvalidArgument {
                what: "bridge",
                problem: "it is over".into(),
            });
        };
        let (a, mode, relayed) = (entry.a, entry.mode, entry.relayed.clone());
        let settings = ConversationSettings {
            impersonation: entry.caller.clone(),
            ..ConversationSettings::default()
        };
        let mut establish = entry
            .setup
            .as_ref()
            .map(|s| s.establish.clone())
            .unwrap_or_default();
        establish.headers.extend(target.headers);
        if target.timeout.is_some() {
            establish.max_establish_time = target.timeout;
        }
        if target.trunk.is_some() {
            establish.trunk = target.trunk.clone();
        }
        let endpoint = self.calls.get(&a).ok_or(CallError::NoSuchCall(a))?.endpoint;
        // Leg B gets a conversation of its own: nothing of A's (subject, priority) is
        // copied unless the options say so.
        let conversation = self.new_conversation(endpoint, settings)?;
        let b = self.new_call(conversation, CallKind::AudioVideo)?;
        if let Some(c) = self.calls.get_mut(&b) {
            c.passthrough = mode == BridgeMode::SignalingOnly;
            c.relay_local = relayed.clone();
            c.bridge = Some((handle, B2bLeg::B));
        }
        if let Err(error) = self.establish_with(now, b, &target.uri, establish, relayed) {
            if let Some(c) = self.calls.get_mut(&b) {
                c.bridge = None;
            }
            if let Err(error) = self.terminate(now, b, CallTerminateOptions::new()) {
                tracing::debug!(%error, "leg B candidate not cleaned up");
            }
            return Err(error);
        }
        if let Some(entry) = self.bridges.get_mut(&handle)
            && !replacing
        {
            entry.b = b;
            entry.ringing.push(b);
        }
        Ok(b)
    }

    /// Leg B candidate `call` answered: the first answer wins (the other candidates are
    /// cancelled); a later one is hung up. Returns whether `call` is the bridge's leg B.
    fn answered_by(&mut self, now: Instant, handle: B2bHandle, call: CallHandle) -> bool {
        let Some(entry) = self.bridges.get_mut(&handle) else {
            return false;
        };
        let won = !entry.answered;
        let losers: Vec<CallHandle> = if won {
            entry.answered = true;
            entry.b = call;
            if let Some(setup) = entry.setup.as_mut() {
                setup.queue.clear();
                setup.establish = CallEstablishOptions::default();
            }
            entry.ringing.drain(..).filter(|c| *c != call).collect()
        } else if entry.b != call {
            entry.ringing.retain(|c| *c != call);
            vec![call]
        } else {
            Vec::new()
        };
        for loser in losers {
            let options = CallTerminateOptions {
                reason: Some("SIP;cause=200;text=\"Call completed elsewhere\"".into()),
                ..CallTerminateOptions::new()
            };
            if let Some(c) = self.calls.get_mut(&loser) {
                c.bridge = None;
            }
            if let Err(error) = self.terminate(now, loser, options) {
                tracing::debug!(%error, bridge = %handle, "losing candidate not ended");
            }
        }
        won || self.bridges.get(&handle).is_some_and(|e| e.b == call)
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
        let tx = self.calls.get(&a)?.invite_tx.as_deref().cloned()?;
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
        if let Some((bridge, _)) = self.calls.get(&call).and_then(|c| c.bridge)
            && self.is_replacing(bridge, call)
        {
            let phrase = crate::body::text(&response.reason);
            return self.transfer_progress(now, bridge, response.status, &phrase);
        }
        let Some((bridge, _, tx)) = self.unanswered_a_of(call) else {
            return;
        };
        let Some(entry) = self.bridges.get_mut(&bridge) else {
            return;
        };
        // Only one candidate's early media reaches A: A has one early dialog with T,
        // and two answers in it would contradict each other.
        let has_sdp = !response.body.is_empty();
        let early_ok = !has_sdp || *entry.early_from.get_or_insert(call) == call;
        let sdp = match entry.mode {
            BridgeMode::SignalingOnly if early_ok => body::split(&response.headers, &response.body)
                .ok()
                .and_then(|s| s.sdp),
            BridgeMode::SignalingOnly => None,
            // Leg B's early SDP is Tandem's leg: the caller hears ringback from its phone.
            BridgeMode::MediaAnchored => None,
        };
        let early_media = sdp.is_some();
        let mut reply =
            Reply::new(response.status).with_reason(crate::body::text(&response.reason));
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
                if self.is_replacing(handle, call) {
                    return self.rebridge_answered(now, handle, call, sdp);
                }
                if !self.answered_by(now, handle, call) {
                    return;
                }
                let Some((_, a, tx)) = self.unanswered_a_of(call) else {
                    return;
                };
                // Copied: both legs keep this SDP for the call's life, and a slice would
                // keep all of leg B's 2xx datagram with it.
                let sdp = sdp.map(|s| Bytes::copy_from_slice(&s));
                let mut reply = Reply::new(200);
                if let Some(entry) = self.bridges.get_mut(&handle) {
                    if let Some(r) = response {
                        reply.headers = passed(&r.headers, &entry.pass);
                    }
                    let own = entry
                        .setup
                        .take()
                        .map(|s| s.accept_headers)
                        .unwrap_or_default();
                    reply
                        .headers
                        .extend(crate::options::to_wire(&own).unwrap_or_default());
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
        // A REFER on a leg is the bridge's to carry out, not the application's.
        let mut i = 0;
        while i < self.events.len() {
            let hit = match self.events.get(i) {
                Some(Event::Call {
                    call,
                    event:
                        CallEvent::TransferReceived {
                            transfer, replaces, ..
                        },
                }) => self
                    .calls
                    .get(call)
                    .and_then(|c| c.bridge)
                    .map(|(bridge, leg)| (*call, *transfer, bridge, leg, replaces.clone())),
                _ => None,
            };
            let Some((call, transfer, bridge, leg, replaces)) = hit else {
                i += 1;
                continue;
            };
            self.events.remove(i);
            progressed = true;
            self.bridge_transfer(now, call, transfer, bridge, leg, replaces);
        }
        progressed
    }

    /// A REFER from a leg's peer (RFC 3515): the other leg is re-bridged to the
    /// Refer-To target, with Referred-By, User-to-User and the Refer-To headers on the
    /// new INVITE; the transferor hears the progress by NOTIFY (100, 18x, the final
    /// status) and, on success, hangs up its leg itself (RFC 5589 §6). If the target
    /// fails, the transferee stays with the transferor. A Replaces naming a leg of
    /// another bridge joins the two bridges (see [`attended`]); one naming no dialog
    /// of ours goes on the new INVITE, as a plain transferee would send it.
    fn bridge_transfer(
        &mut self,
        now: Instant,
        call: CallHandle,
        transfer: crate::types::TransferId,
        bridge: B2bHandle,
        leg: B2bLeg,
        replaces: Option<crate::refer::Replaces>,
    ) {
        let ready = self
            .bridges
            .get(&bridge)
            .is_some_and(|e| e.state == B2bState::Established && e.replacing.is_none())
            && !self.joining(bridge);
        if !ready {
            if let Err(error) = self.decline_transfer(now, call, transfer, 603) {
                tracing::debug!(%error, %bridge, "transfer not declined");
            }
            return;
        }
        if let Some(replaces) = &replaces
            && self.attended_transfer(now, call, transfer, bridge, replaces)
        {
            return;
        }
        if leg == B2bLeg::A {
            // The transferor is on leg A: the legs swap roles, so the transferee (the
            // caller's callee) is the one that stays.
            self.swap_legs(bridge);
        }
        let request = match self.accept_transfer_manually(now, call, transfer) {
            Ok(request) => request,
            Err(error) => {
                tracing::debug!(%error, %bridge, "transfer not accepted");
                return;
            }
        };
        if self.is_park_number(&request.target) {
            return self.park_by_refer(now, call, transfer, bridge);
        }
        let mut target = BridgeTarget::new(request.target);
        target.headers = request.headers;
        if let Some(by) = request.referred_by {
            target
                .headers
                .push(crate::options::SignalingHeader::new("Referred-By", by));
        }
        if let Some(uui) = request.user_to_user {
            target
                .headers
                .push(crate::options::SignalingHeader::new("User-to-User", uui));
        }
        if let Some(replaces) = request.replaces {
            // RFC 3891 §3: the target replaces its dialog with the transferor.
            target.headers.push(crate::options::SignalingHeader::new(
                "Replaces",
                replaces.to_string(),
            ));
        }
        match self.rebridge_with(now, bridge, target, false) {
            Ok(_) => {
                if let Some(entry) = self.bridges.get_mut(&bridge) {
                    entry.transfer = Some((call, transfer));
                }
            }
            Err(error) => {
                tracing::info!(%error, %bridge, "transfer target not placed");
                if let Err(error) =
                    self.notify_transfer(now, call, transfer, 503, "Service Unavailable")
                {
                    tracing::debug!(%error, "final NOTIFY not sent");
                }
            }
        }
    }

    /// Leg A becomes leg B and the reverse (an established bridge's legs are peers).
    fn swap_legs(&mut self, bridge: B2bHandle) {
        let Some(entry) = self.bridges.get_mut(&bridge) else {
            return;
        };
        std::mem::swap(&mut entry.a, &mut entry.b);
        let (a, b) = (entry.a, entry.b);
        if let Some(c) = self.calls.get_mut(&a) {
            c.bridge = Some((bridge, B2bLeg::A));
        }
        if let Some(c) = self.calls.get_mut(&b) {
            c.bridge = Some((bridge, B2bLeg::B));
        }
    }

    /// Tells a transferor how its transfer goes (`final_status`: the subscription ends).
    fn transfer_progress(&mut self, now: Instant, bridge: B2bHandle, status: u16, phrase: &str) {
        let Some(entry) = self.bridges.get_mut(&bridge) else {
            return;
        };
        let Some((call, transfer)) = entry.transfer else {
            return;
        };
        if status >= 200 {
            entry.transfer = None;
        }
        if let Err(error) = self.notify_transfer(now, call, transfer, status, phrase) {
            tracing::debug!(%error, %bridge, "transfer NOTIFY not sent");
        }
    }

    fn on_leg_ended(&mut self, now: Instant, ended: LegEnded) {
        let Some(ended) = self.join_leg_ended(now, ended) else {
            return;
        };
        let LegEnded {
            bridge,
            call,
            leg,
            reason,
            mut failure,
            termination_reason,
        } = ended;
        let Some(entry) = self.bridges.get_mut(&bridge) else {
            return;
        };
        let a = entry.a;
        let a_waiting = self
            .calls
            .get(&a)
            .is_some_and(|c| c.state != CallState::Terminated && c.invite_tx.is_some());
        if leg == B2bLeg::B && !entry.answered {
            // A candidate failed, timed out, or was cancelled.
            entry.ringing.retain(|c| *c != call);
            if let Some(f) = &failure
                && let Some(setup) = entry.setup.as_mut()
                && setup
                    .failure
                    .as_ref()
                    .is_none_or(|kept| rank(f) > rank(kept))
            {
                setup.failure = Some(f.clone());
            }
            let global = matches!(&failure, Some(EstablishFailure::Refused { status, .. }) if *status >= 600);
            if a_waiting && global {
                // RFC 3261 §16.7: a 6xx ends the search; the others are cancelled.
                if let Some(setup) = entry.setup.as_mut() {
                    setup.queue.clear();
                }
                let rest: Vec<CallHandle> = entry.ringing.drain(..).collect();
                for other in rest {
                    if let Some(c) = self.calls.get_mut(&other) {
                        c.bridge = None;
                    }
                    if let Err(error) = self.terminate(now, other, CallTerminateOptions::new()) {
                        tracing::debug!(%error, %bridge, "candidate not cancelled");
                    }
                }
            } else if a_waiting && let Err(error) = self.place_next(now, bridge) {
                tracing::debug!(%error, %bridge, "no further target placed");
            }
            let Some(entry) = self.bridges.get_mut(&bridge) else {
                return;
            };
            if !entry.ringing.is_empty() {
                self.bridge_event(
                    bridge,
                    B2bEvent::LegEnded {
                        leg,
                        reason: reason.clone(),
                    },
                );
                return;
            }
            failure = entry
                .setup
                .as_mut()
                .and_then(|s| s.failure.take())
                .or(failure);
        } else if leg == B2bLeg::B && entry.replacing.is_some_and(|(r, _)| r == call) {
            entry.replacing = None;
            let failure = failure.unwrap_or(EstablishFailure::Ended { reason });
            let (status, phrase) = relayed_status(&failure);
            let phrase =
                phrase.unwrap_or_else(|| sip_message::default_reason_phrase(status).to_owned());
            self.transfer_progress(now, bridge, status, &phrase);
            self.bridge_event(bridge, B2bEvent::RebridgeFailed { failure });
            return;
        } else if leg == B2bLeg::B && entry.b != call {
            // A candidate that lost the race, or a leg B already replaced.
            return;
        }
        let Some(entry) = self.bridges.get(&bridge) else {
            return;
        };
        let others: Vec<CallHandle> = match leg {
            B2bLeg::A if entry.answered => vec![entry.b],
            B2bLeg::A => entry.ringing.clone(),
            B2bLeg::B => vec![a],
        };
        // A re-INVITE relayed from the other leg to the one that ended has no answer
        // coming (RFC 3261 §14.2: 500 for a request that cannot be handled now).
        if let Some(relay) = self.modify_relays.remove(&call)
            && let Some(tx) = relay.tx
        {
            self.respond(now, &tx, Reply::new(500));
        }
        self.bridge_event(
            bridge,
            B2bEvent::LegEnded {
                leg,
                reason: reason.clone(),
            },
        );
        let alive: Vec<CallHandle> = others
            .into_iter()
            .filter(|o| {
                self.calls
                    .get(o)
                    .is_some_and(|c| c.state != CallState::Terminated)
            })
            .collect();
        if alive.is_empty() {
            self.set_bridge_state(bridge, B2bState::Terminated, leg);
            self.bridges.remove(&bridge);
            return;
        }
        self.set_bridge_state(bridge, B2bState::Terminating, leg);
        for other in alive {
            let result = if leg == B2bLeg::B && a_waiting {
                let failure = failure.clone().unwrap_or(EstablishFailure::Ended {
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
                    Some(text) => {
                        format!("SIP;cause={status};text=\"{}\"", text.replace('"', "'"))
                    }
                    None => format!("SIP;cause={status}"),
                });
                self.bridge_event(bridge, B2bEvent::FailureRelayed { status, failure });
                self.decline(now, other, options)
            } else {
                let options = CallTerminateOptions {
                    reason: termination_reason.clone(),
                    ..CallTerminateOptions::new()
                };
                self.terminate(now, other, options)
            };
            if let Err(error) = result {
                tracing::debug!(%error, %bridge, "the other leg not ended");
            }
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
        if self.joining(bridge) {
            // A join's own re-INVITEs are out across these legs: the peer retries
            // (RFC 3261 §14.2).
            return self.respond(now, &tx, Reply::new(491));
        }
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
                tx: Some(tx),
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
        let mut reply =
            Reply::new(response.status).with_reason(crate::body::text(&response.reason));
        if let Some(entry) = self.bridges.get(&relay.bridge) {
            reply.headers = passed(&response.headers, &entry.pass);
        }
        if ok && let Some(answer) = answer.clone() {
            reply = reply.with_body(Body::sdp(answer));
        }
        let Some(tx) = relay.tx else {
            // The re-bridge's re-offer to A.
            return self.rebridge_reoffered(now, relay, call, ok.then_some(answer).flatten());
        };
        self.respond(now, &tx, reply);
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
        let (a, b, pass) = (entry.a, entry.b, entry.pass.clone());
        match leg {
            B2bLeg::B => {
                if self.is_replacing(handle, call) {
                    return self.rebridge_answered(now, handle, call, None);
                }
                if !self.answered_by(now, handle, call) || self.unanswered_a_of(call).is_none() {
                    return;
                }
                let headers = response
                    .map(|r| passed(&r.headers, &pass))
                    .unwrap_or_default()
                    .into_iter()
                    .map(|(n, v)| {
                        crate::options::SignalingHeader::new(n.as_str(), crate::body::text(&v))
                    })
                    .collect();
                let mut headers: Vec<crate::options::SignalingHeader> = headers;
                if let Some(entry) = self.bridges.get_mut(&handle)
                    && let Some(setup) = entry.setup.take()
                {
                    headers.extend(setup.accept_headers);
                }
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
    /// B2BUA-side transfer: leg A is bridged to a new target, with no REFER to anyone
    /// (the application keeps control). The current leg B stays until the new one
    /// answers, then is hung up; if the new target fails, A stays with B and
    /// [`B2bEvent::RebridgeFailed`] says why. Signalling-only, A gets a re-INVITE with
    /// the new leg's SDP (its origin line continued from the SDP A had, RFC 3264 §8);
    /// media-anchored, the relay is re-joined and A hears nothing of it. Returns the
    /// new leg B.
    pub fn rebridge(
        &mut self,
        now: Instant,
        bridge: B2bHandle,
        target: BridgeTarget,
    ) -> Result<CallHandle, CallError> {
        self.rebridge_with(now, bridge, target, true)
    }

    pub(super) fn rebridge_with(
        &mut self,
        now: Instant,
        bridge: B2bHandle,
        target: BridgeTarget,
        hang_up_previous: bool,
    ) -> Result<CallHandle, CallError> {
        let Some(entry) = self.bridges.get(&bridge) else {
            return Err(CallError::InvalidArgument {
                what: "bridge",
                problem: format!("{bridge} is over"),
            });
        };
        let joining = self.joining(bridge);
        if entry.state != B2bState::Established || entry.replacing.is_some() || joining {
            return Err(CallError::InvalidArgument {
                what: "bridge",
                problem: format!(
                    "{bridge} cannot be re-bridged now ({:?}{})",
                    entry.state,
                    if entry.replacing.is_some() {
                        ", a re-bridge is in progress"
                    } else if joining {
                        ", it is being joined with another bridge"
                    } else {
                        ""
                    }
                ),
            });
        }
        let a = entry.a;
        let a_sdp = self.calls.get(&a).and_then(|c| c.remote_offer.clone());
        if let Some(entry) = self.bridges.get_mut(&bridge)
            && entry.mode == BridgeMode::SignalingOnly
        {
            entry.relayed = a_sdp;
        }
        let b = self
            .place_candidate(now, bridge, target, true)
            .map_err(|source| CallError::Leg {
                leg: B2bLeg::B,
                source: Box::new(source),
            })?;
        if let Some(entry) = self.bridges.get_mut(&bridge) {
            entry.replacing = Some((b, hang_up_previous));
            entry.relayed = None;
        }
        Ok(b)
    }

    /// The other leg of `call`'s bridge, if the bridge can give `call` up now (to park
    /// it): established, no re-bridge and no relayed re-INVITE or UPDATE in flight.
    pub(super) fn bridge_peer(&self, call: CallHandle) -> Result<Option<CallHandle>, CallError> {
        let Some((bridge, _)) = self.calls.get(&call).and_then(|c| c.bridge) else {
            return Ok(None);
        };
        let Some(entry) = self.bridges.get(&bridge) else {
            return Ok(None);
        };
        let other = if entry.a == call { entry.b } else { entry.a };
        let relaying = [call, other].iter().any(|leg| {
            self.modify_relays.contains_key(leg)
                || self.modify_relays.values().any(|r| r.from == *leg)
        });
        if entry.state != B2bState::Established
            || entry.replacing.is_some()
            || relaying
            || self.joining(bridge)
        {
            return Err(CallError::InvalidArgument {
                what: "bridge",
                problem: format!(
                    "{bridge} cannot give a leg up now ({:?}, a re-bridge, a join or a \
                     relayed re-INVITE may be in progress)",
                    entry.state
                ),
            });
        }
        Ok(Some(other))
    }

    /// `call` leaves its bridge, which ends without ending either leg: a media-anchored
    /// relay is unjoined (the call's own stream plays on), the bridge reports `event`
    /// ([`B2bEvent::Parked`], [`B2bEvent::JoinedRoom`]) and `Terminated`.
    pub(super) fn leave_bridge(&mut self, call: CallHandle, event: B2bEvent) {
        let Some((bridge, leg)) = self.calls.get(&call).and_then(|c| c.bridge) else {
            return;
        };
        let Some(entry) = self.bridges.get(&bridge) else {
            return;
        };
        let (a, b, mode) = (entry.a, entry.b, entry.mode);
        let other = if a == call { b } else { a };
        for c in [a, b] {
            if let Some(c) = self.calls.get_mut(&c) {
                c.bridge = None;
            }
        }
        if mode == BridgeMode::MediaAnchored {
            self.events.push_back(Event::Media {
                call,
                instruction: crate::types::MediaInstruction::Unjoin { peer: other },
            });
        }
        self.bridge_event(bridge, event);
        self.set_bridge_state(bridge, B2bState::Terminated, leg);
        self.bridges.remove(&bridge);
    }

    /// A media-anchored bridge of two established calls of ours (each negotiated with
    /// Tandem): a parked call (leg A) and the call that retrieved it (leg B). Their
    /// streams are joined; from now on it is a bridge like any other (a BYE on one leg
    /// ends the other, it can be re-bridged or parked again).
    pub(super) fn join_legs(&mut self, a: CallHandle, b: CallHandle) -> B2bHandle {
        let handle = B2bHandle(self.next());
        self.bridges.insert(
            handle,
            Box::new(Bridge {
                a,
                b,
                ringing: Vec::new(),
                answered: true,
                setup: None,
                ring: RingStrategy::Sequential,
                relayed: None,
                early_from: None,
                replacing: None,
                transfer: None,
                state: B2bState::Idle,
                mode: BridgeMode::MediaAnchored,
                pass: Vec::new(),
                caller: None,
            }),
        );
        for (call, leg) in [(a, B2bLeg::A), (b, B2bLeg::B)] {
            if let Some(c) = self.calls.get_mut(&call) {
                c.bridge = Some((handle, leg));
                c.passthrough = false;
            }
        }
        self.set_bridge_state(handle, B2bState::Established, B2bLeg::A);
        self.events.push_back(Event::Media {
            call: a,
            instruction: crate::types::MediaInstruction::Join { peer: b },
        });
        handle
    }

    fn is_replacing(&self, bridge: B2bHandle, call: CallHandle) -> bool {
        self.bridges
            .get(&bridge)
            .and_then(|e| e.replacing)
            .is_some_and(|(r, _)| r == call)
    }

    /// The re-bridge's new leg answered (`sdp`: its answer, signalling-only).
    fn rebridge_answered(
        &mut self,
        now: Instant,
        bridge: B2bHandle,
        call: CallHandle,
        sdp: Option<Bytes>,
    ) {
        let Some(entry) = self.bridges.get(&bridge) else {
            return;
        };
        let a = entry.a;
        match entry.mode {
            BridgeMode::MediaAnchored => self.rebridge_done(now, bridge, call),
            BridgeMode::SignalingOnly => {
                if let Some(c) = self.calls.get_mut(&call) {
                    c.remote_offer = sdp.clone();
                }
                let (Some(sdp), Some(a_session)) =
                    (sdp, self.calls.get(&a).and_then(|c| c.session))
                else {
                    return self.rebridge_abandoned(now, bridge, call, "no SDP to give leg A");
                };
                let previous = self.calls.get(&a).and_then(|c| c.relay_local.clone());
                let offer = match previous {
                    Some(previous) => continue_origin(&previous, &sdp),
                    None => sdp,
                };
                if self.core.user_agent_ref().modify_pending(a_session)
                    || self.modify_relays.values().any(|r| r.from == a)
                {
                    // Rare: A is re-offering right now; its relay will be refused (491)
                    // by the new leg's state soon. Keep it simple: give up cleanly.
                    return self.rebridge_abandoned(now, bridge, call, "leg A is busy re-offering");
                }
                if let Err(error) =
                    self.core
                        .user_agent()
                        .reinvite(now, a_session, Some(Body::sdp(offer.clone())))
                {
                    tracing::debug!(%error, %bridge, "re-offer to leg A not sent");
                    return self.rebridge_abandoned(now, bridge, call, "re-INVITE to leg A failed");
                }
                self.modify_relays.insert(
                    a,
                    ModifyRelay {
                        bridge,
                        from: call,
                        from_leg: B2bLeg::B,
                        tx: None,
                        method: Method::Invite,
                        offer: Some(offer),
                    },
                );
                self.core.pump(now);
            }
        }
    }

    /// A answered (or refused) the re-bridge's re-offer.
    fn rebridge_reoffered(
        &mut self,
        now: Instant,
        relay: ModifyRelay,
        a: CallHandle,
        answer: Option<Bytes>,
    ) {
        let Some(answer) = answer else {
            return self.rebridge_abandoned(
                now,
                relay.bridge,
                relay.from,
                "leg A refused the new SDP",
            );
        };
        if let Some(c) = self.calls.get_mut(&a) {
            c.relay_local = relay.offer;
            c.remote_offer = Some(answer);
        }
        self.rebridge_done(now, relay.bridge, relay.from);
    }

    fn rebridge_done(&mut self, now: Instant, bridge: B2bHandle, call: CallHandle) {
        let Some(entry) = self.bridges.get_mut(&bridge) else {
            return;
        };
        let Some((_, hang_up)) = entry.replacing.take() else {
            return;
        };
        let previous = entry.b;
        entry.b = call;
        let (a, mode) = (entry.a, entry.mode);
        if let Some(c) = self.calls.get_mut(&previous) {
            c.bridge = None;
        }
        if mode == BridgeMode::MediaAnchored {
            self.events.push_back(Event::Media {
                call: a,
                instruction: crate::types::MediaInstruction::Unjoin { peer: previous },
            });
            self.events.push_back(Event::Media {
                call: a,
                instruction: crate::types::MediaInstruction::Join { peer: call },
            });
        }
        if hang_up && let Err(error) = self.terminate(now, previous, CallTerminateOptions::new()) {
            tracing::debug!(%error, %bridge, "previous leg B not ended");
        }
        self.transfer_progress(now, bridge, 200, "OK");
        self.bridge_event(
            bridge,
            B2bEvent::Rebridged {
                previous,
                leg: call,
            },
        );
    }

    /// The re-bridge cannot complete: the new leg is hung up, A stays with B.
    fn rebridge_abandoned(&mut self, now: Instant, bridge: B2bHandle, call: CallHandle, why: &str) {
        if let Some(entry) = self.bridges.get_mut(&bridge) {
            entry.replacing = None;
        }
        self.transfer_progress(now, bridge, 500, "Server Internal Error");
        if let Some(c) = self.calls.get_mut(&call) {
            c.bridge = None;
        }
        if let Err(error) = self.terminate(now, call, CallTerminateOptions::new()) {
            tracing::debug!(%error, %bridge, "new leg not ended");
        }
        self.bridge_event(
            bridge,
            B2bEvent::RebridgeFailed {
                failure: EstablishFailure::Media {
                    reason: why.to_owned(),
                },
            },
        );
    }
}

/// How telling a candidate's failure is, to pick the one A gets (RFC 3261 §16.7
/// picks a 6xx first; then a refusal says more than a timeout or a transport error).
fn rank(failure: &EstablishFailure) -> u8 {
    match failure {
        EstablishFailure::Refused { status, .. } if *status >= 600 => 4,
        EstablishFailure::Refused { .. } => 3,
        EstablishFailure::Redirected { .. } => 2,
        EstablishFailure::Timeout | EstablishFailure::TransportError => 1,
        _ => 0,
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

/// Why a header cannot be passed across a bridge: the B2BUA writes it per leg. Also the
/// check of a route's `pass_headers` ([`crate::routing::Rule::new`]).
pub(crate) fn unpassable(name: &str) -> Option<&'static str> {
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

/// `next`, with the origin line (`o=`) of `previous` and its version plus one: the SDP
/// a leg gets after a re-bridge continues the session it had (RFC 3264 §8: the origin
/// stays, the version grows by one). Anything unparsable: `next` as it is.
pub(super) fn continue_origin(previous: &[u8], next: &[u8]) -> Bytes {
    fn origin(sdp: &[u8]) -> Option<(usize, usize)> {
        let mut at = 0;
        for line in sdp.split(|b| *b == b'\n') {
            if line.starts_with(b"o=") {
                let len = line.strip_suffix(b"\r").map_or(line.len(), <[u8]>::len);
                return Some((at, at + len));
            }
            at += line.len() + 1;
        }
        None
    }
    let (Some((ps, pe)), Some((ns, ne))) = (origin(previous), origin(next)) else {
        return Bytes::copy_from_slice(next);
    };
    let (Some(old), Some(head), Some(tail)) =
        (previous.get(ps..pe), next.get(..ns), next.get(ne..))
    else {
        return Bytes::copy_from_slice(next);
    };
    let Ok(old) = std::str::from_utf8(old) else {
        return Bytes::copy_from_slice(next);
    };
    let fields: Vec<&str> = old.split(' ').collect();
    let [user, id, version, rest @ ..] = fields.as_slice() else {
        return Bytes::copy_from_slice(next);
    };
    let Ok(version) = version.parse::<u64>() else {
        return Bytes::copy_from_slice(next);
    };
    let line = format!("{user} {id} {} {}", version.wrapping_add(1), rest.join(" "));
    let mut out = Vec::with_capacity(next.len() + 8);
    out.extend_from_slice(head);
    out.extend_from_slice(line.as_bytes());
    out.extend_from_slice(tail);
    Bytes::from(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::continue_origin;

    #[test]
    fn the_origin_line_is_continued_with_the_next_version() {
        let previous = b"v=0\r\no=bob 100 7 IN IP4 10.0.0.2\r\ns=-\r\nc=IN IP4 10.0.0.2\r\n";
        let next = b"v=0\r\no=carol 555 1 IN IP4 10.0.0.3\r\ns=-\r\nc=IN IP4 10.0.0.3\r\n";
        let out = continue_origin(previous, next);
        assert_eq!(
            &out[..],
            b"v=0\r\no=bob 100 8 IN IP4 10.0.0.2\r\ns=-\r\nc=IN IP4 10.0.0.3\r\n"
        );
        // Unparsable input comes back unchanged, never a panic.
        assert_eq!(&continue_origin(b"garbage", next)[..], next);
        assert_eq!(&continue_origin(b"o=x y notanumber z\n", next)[..], next);
        assert_eq!(&continue_origin(previous, b"")[..], b"");
    }
}
