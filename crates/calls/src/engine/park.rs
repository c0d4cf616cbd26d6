//! Call park: a call goes to an orbit, where its peer hears music on hold, and is
//! retrieved by a call to the orbit or through the API; an unretrieved call rings back.
//! Orbits publish their state to watchers (BLF) with the dialog event package.
//!
//! - **Parking** ([`Engine::park`], a REFER whose Refer-To user is the park number, a
//!   `park` route): the call takes the first free orbit of [`ParkSettings`] and goes
//!   `Parking` ([`CallEvent::Parked`]). A leg of a bridge leaves it
//!   ([`B2bEvent::Parked`](crate::B2bEvent::Parked)); the other leg, the parker, is hung
//!   up (after a REFER, it hangs up itself once the final NOTIFY told it `200`). The
//!   parked party hears [`MediaInstruction::Play`]: a media-anchored leg plays on its own
//!   stream (unjoined first); a signalling-only leg first gets Tandem's own media by a
//!   re-INVITE with our offer (its origin line continued from the SDP it knew, RFC 3264
//!   §8), and plays once the answer came.
//! - **Retrieval**: an INVITE whose Request-URI user is an occupied orbit (looked at
//!   before endpoints and routing rules) is accepted with Tandem's answer; at its ACK the
//!   two calls become a media-anchored bridge (the parked call leg A) and their streams
//!   are joined ([`CallEvent::Retrieved`]). An empty orbit gets 404, one being retrieved
//!   486. [`Engine::retrieve_parked`] places a call to a target and does the same at its
//!   answer.
//! - **Timeout**: a call nobody retrieved within [`ParkSettings::timeout`] rings back
//!   the parker (its Contact, through the flow its dialog used) or
//!   [`ParkSettings::fallback`] ([`CallEvent::ParkTimedOut`]); the answer retrieves it,
//!   a failure ends it (BYE with a Reason).
//! - **BLF** (RFC 4235 over RFC 6665): a SUBSCRIBE with `Event: dialog` to an orbit URI
//!   is accepted (200, its Expires honoured between a minimum of 60 s, else 423, and
//!   3600 s), and a NOTIFY with the orbit's full state goes at once and on every change:
//!   no `<dialog>` while free, `confirmed` while a call is parked, `early` while it rings
//!   back. An un-SUBSCRIBE (Expires: 0) or the expiry ends it with a NOTIFY
//!   `Subscription-State: terminated`. NOTIFYs go one at a time, each with the state of
//!   its moment, so a lossy network cannot reorder them. The subscription dialog is kept
//!   here (its Call-ID, tags, remote target, route set and CSeqs); the user agent
//!   passes requests in it up ([`sip_dialog::UserAgent::add_dialog_usage`]).

use super::b2bua::continue_origin;
use super::{EndpointEntry, Engine, Reason, configuration_of, request_user};
use crate::body;
use crate::options::{
    CallAcceptOptions, CallDeclineOptions, CallEstablishOptions, CallTerminateOptions,
};
use crate::state::{CallState, Operation};
use crate::types::{
    CallError, CallEvent, CallHandle, CallKind, ConversationSettings, EndpointHandle, Event,
    Identity, MediaInstruction, TransferId,
};
use crate::{B2bHandle, BridgeTarget, Destination};
use bytes::Bytes;
use foldhash::{HashMap, HashSet};
use sdp_offer_answer::OfferAnswer;
use sip_dialog::{Body, Dialog, DialogState, Reply};
use sip_message::{HeaderName, Method, Request, Response, Transport};
use sip_transaction::{Flow, TransactionKey};
use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

/// The body type of the dialog event package (RFC 4235 §4.1).
pub const DIALOG_INFO: &str = "application/dialog-info+xml";
/// A subscription shorter than this gets 423 (RFC 6665 §4.2.1.1).
const MIN_EXPIRES: u32 = 60;
/// The default and the longest subscription (RFC 4235 §3.4: 3600 s by default).
const MAX_EXPIRES: u32 = 3600;

/// What call park needs (the daemon's `[park]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParkSettings {
    /// The orbits, inclusive: their numbers are Request-URI users (`sip:701@host`).
    /// `first_orbit > last_orbit`: no orbits, park is off.
    pub first_orbit: u16,
    pub last_orbit: u16,
    /// An unretrieved call rings back after this long.
    pub timeout: Duration,
    /// Music on hold: a WAV file (16-bit PCM); `None`: a gentle tone pattern.
    pub music: Option<String>,
    /// Rung when the parker cannot be (a plain call or a `park` route has none).
    pub fallback: Option<String>,
    /// The Refer-To user that parks a bridged call (a REFER to `sip:700@host`).
    pub number: String,
}

impl Default for ParkSettings {
    fn default() -> Self {
        ParkSettings {
            first_orbit: 701,
            last_orbit: 720,
            timeout: Duration::from_secs(120),
            music: None,
            fallback: None,
            number: "700".into(),
        }
    }
}

impl ParkSettings {
    /// Whether `number` is one of the orbits.
    pub fn is_orbit(&self, number: u16) -> bool {
        (self.first_orbit..=self.last_orbit).contains(&number)
    }
}

/// Where a call is parked (UCMA's `CallOrbit`): its number and the URI to call or
/// watch it at.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CallOrbit {
    pub number: u16,
    /// `sip:<number>@<our address>`.
    pub uri: String,
}

/// How a retrieval leg came to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Retrieval {
    /// An INVITE to the orbit, accepted.
    Invite,
    /// [`Engine::retrieve_parked`]: placed.
    Api,
    /// The park timed out: the parker (or the fallback) is rung.
    RingBack,
}

/// Whom a timed-out call rings back: the parker leg's remote target, through the flow
/// its dialog used (a proxy's, or the phone's).
#[derive(Debug, Clone)]
struct Parker {
    uri: String,
    destination: Option<Destination>,
}

#[derive(Debug)]
struct Parked {
    call: CallHandle,
    orbit: CallOrbit,
    parker: Option<Parker>,
    /// When it rings back; `None` once it has.
    timeout_at: Option<Instant>,
    /// The leg retrieving it, until that leg is up (then the orbit is free) or ends.
    retrieval: Option<(CallHandle, Retrieval)>,
    /// The REFER that asked for the park (the transferor's leg, the transfer): told
    /// the result by NOTIFY once the parked party hears the music.
    refer: Option<(CallHandle, TransferId)>,
}

/// A watcher of an orbit (RFC 6665 subscription to the dialog package).
#[derive(Debug)]
struct Subscription {
    orbit: u16,
    dialog: Dialog,
    /// Where its SUBSCRIBE came from: NOTIFYs go back there (as in every dialog where we
    /// are the UAS).
    flow: Flow,
    /// The `entity` of the documents: the URI subscribed to.
    entity: String,
    /// The Event header to repeat (with its `id` parameter, RFC 6665 §8.2.1).
    event: Bytes,
    expires_at: Instant,
    /// The version of the next document (RFC 4235 §4.1: from 0, one more per NOTIFY).
    version: u32,
    /// The NOTIFY in flight.
    in_flight: Option<TransactionKey>,
    /// The state changed while a NOTIFY was in flight: another goes when it is answered.
    queued: bool,
    /// Unsubscribed or expired: the next NOTIFY is the last.
    terminating: bool,
    /// The last NOTIFY (`terminated`) is out.
    final_sent: bool,
}

/// The engine's park bookkeeping.
#[derive(Debug, Default)]
pub(super) struct Parking {
    orbits: BTreeMap<u16, Parked>,
    /// Calls a `park` route answered: parked at their ACK.
    on_answer: HashSet<CallHandle>,
    /// Parked signalling-only legs whose re-INVITE (Tandem's own media) is out.
    reoffers: HashSet<CallHandle>,
    /// Calls that ended, for `run_park` (which has `now`).
    ended: VecDeque<CallHandle>,
    /// By (Call-ID, our tag).
    subscriptions: HashMap<(Bytes, Bytes), Subscription>,
    /// The endpoint that owns retrieval and ring-back calls.
    endpoint: Option<EndpointHandle>,
}

impl Parking {
    /// A call ended (from `finish`).
    pub(super) fn call_ended(&mut self, call: CallHandle) {
        self.ended.push_back(call);
    }

    fn orbit_of(&self, call: CallHandle) -> Option<u16> {
        self.orbits
            .iter()
            .find(|(_, p)| p.call == call)
            .map(|(n, _)| *n)
    }

    fn retrieved_by(&self, leg: CallHandle) -> Option<u16> {
        self.orbits
            .iter()
            .find(|(_, p)| p.retrieval.is_some_and(|(l, _)| l == leg))
            .map(|(n, _)| *n)
    }
}

impl Engine {
    // ---- set-up and queries

    /// The orbits are users of the endpoint underneath (requests for them pass its
    /// user check).
    pub(super) fn init_park(&mut self) {
        let park = &self.config.park;
        for number in park.first_orbit..=park.last_orbit {
            self.core.add_user(&number.to_string());
        }
    }

    /// Parks an established audio call, Tandem being the park server: the call takes the first free orbit and goes `Parking`, its peer hears
    /// music on hold. A leg of a back-to-back call leaves the bridge and the other leg
    /// (the parker, rung back at the timeout) is hung up. Returns the orbit; the call
    /// raises [`CallEvent::Parked`].
    pub fn park(&mut self, now: Instant, call: CallHandle) -> Result<CallOrbit, CallError> {
        let orbit = self.park_call(now, call, None)?;
        self.drain(now);
        Ok(orbit)
    }

    /// Retrieves the call parked in `orbit` for `target`: a call is placed to it (with
    /// Tandem's own offer) and, once answered, bridged media-anchored to the parked call
    /// ([`CallEvent::Retrieved`]). If the target fails the call stays parked. Returns
    /// the new call.
    pub fn retrieve_parked(
        &mut self,
        now: Instant,
        orbit: u16,
        target: BridgeTarget,
    ) -> Result<CallHandle, CallError> {
        let options = CallEstablishOptions {
            headers: target.headers,
            max_establish_time: target.timeout,
            ..CallEstablishOptions::default()
        };
        let leg = self.place_retrieval(now, orbit, &target.uri, options, Retrieval::Api)?;
        self.drain(now);
        Ok(leg)
    }

    /// The call parked in `orbit`.
    pub fn parked_call(&self, orbit: u16) -> Option<CallHandle> {
        self.parking.orbits.get(&orbit).map(|p| p.call)
    }

    /// The orbit `call` is parked in.
    pub fn orbit_of(&self, call: CallHandle) -> Option<CallOrbit> {
        let number = self.parking.orbit_of(call)?;
        self.parking.orbits.get(&number).map(|p| p.orbit.clone())
    }

    /// The orbits with a call, in order.
    pub fn parked(&self) -> Vec<(CallOrbit, CallHandle)> {
        self.parking
            .orbits
            .values()
            .map(|p| (p.orbit.clone(), p.call))
            .collect()
    }

    /// `sip:<number>@<our address>`: the advertised address (or the first UDP socket's),
    /// with the port unless it is 5060.
    fn orbit_uri(&self, number: u16) -> String {
        let local = self
            .core
            .local_addrs()
            .iter()
            .find(|(t, _)| *t == Transport::Udp)
            .or_else(|| self.core.local_addrs().first())
            .map(|(_, a)| *a);
        let Some(local) = local else {
            return format!("sip:{number}@localhost");
        };
        let ip = self.advertised(local.ip());
        let host = if ip.is_ipv6() {
            format!("[{ip}]")
        } else {
            ip.to_string()
        };
        match local.port() {
            5060 => format!("sip:{number}@{host}"),
            port => format!("sip:{number}@{host}:{port}"),
        }
    }

    /// The orbit a Request-URI user names (written as the number, nothing else).
    fn orbit_number(&self, user: &str) -> Option<u16> {
        let number: u16 = user.parse().ok()?;
        (number.to_string() == user && self.config.park.is_orbit(number)).then_some(number)
    }

    /// Whether a Refer-To target names the park number.
    pub(super) fn is_park_number(&self, target: &str) -> bool {
        sip_message::Uri::parse(target.trim().as_bytes())
            .ok()
            .and_then(|u| {
                u.as_sip()?
                    .user_unescaped()
                    .map(|u| String::from_utf8_lossy(&u).into_owned())
            })
            .is_some_and(|user| !user.is_empty() && user == self.config.park.number)
    }

    /// An INVITE for `user`: the orbit it retrieves, `None` when `user` is no orbit,
    /// or the refusal (404 for an empty orbit, 486 while another call retrieves it).
    pub(super) fn orbit_wanted(&self, user: Option<&str>) -> Result<Option<u16>, Reply> {
        let Some(number) = user.and_then(|u| self.orbit_number(u)) else {
            return Ok(None);
        };
        match self.parking.orbits.get(&number) {
            None => Err(Reply::new(404).with_reason("Orbit Empty")),
            Some(p) if matches!(p.retrieval, Some((_, Retrieval::Invite))) => Err(Reply::new(486)),
            Some(_) => Ok(Some(number)),
        }
    }

    /// The endpoint that owns retrieval and ring-back calls (made on first use; no
    /// Request-URI user reaches it).
    pub(super) fn park_endpoint(&mut self) -> EndpointHandle {
        if let Some(handle) = self.parking.endpoint
            && self.endpoints.contains_key(&handle)
        {
            return handle;
        }
        let handle = EndpointHandle(self.next());
        self.endpoints.insert(
            handle,
            EndpointEntry {
                owner: Identity::new("sip:park@localhost"),
                user: "park".into(),
                demo: None,
                trunk: None,
            },
        );
        self.parking.endpoint = Some(handle);
        handle
    }

    fn free_orbit(&self) -> Result<u16, CallError> {
        let park = &self.config.park;
        (park.first_orbit..=park.last_orbit)
            .find(|n| !self.parking.orbits.contains_key(n))
            .ok_or(CallError::NoFreeOrbit {
                first: park.first_orbit,
                last: park.last_orbit,
            })
    }

    /// Whom to ring back for a call parked by `parker`'s leg.
    fn parker_of(&self, parker: CallHandle) -> Option<Parker> {
        let session = self.calls.get(&parker)?.session?;
        let ua = self.core.user_agent_ref();
        let target = ua.dialogs(session).next()?.remote_target.clone();
        let flow = ua.flow(session)?;
        Some(Parker {
            uri: String::from_utf8_lossy(&target).into_owned(),
            destination: Some(Destination {
                transport: flow.transport,
                addr: flow.remote,
            }),
        })
    }

    // ---- parking

    /// Parks `call`; `refer`: a REFER of the other leg asked for it (that leg is not
    /// hung up, and is told the result by NOTIFY). Nothing changes when it fails.
    fn park_call(
        &mut self,
        now: Instant,
        call: CallHandle,
        refer: Option<(CallHandle, TransferId)>,
    ) -> Result<CallOrbit, CallError> {
        let c = self.check(call, Operation::Park)?;
        if c.kind != CallKind::AudioVideo {
            return Err(CallError::WrongCallType {
                operation: Operation::Park,
                kind: c.kind,
            });
        }
        if let Some((operation, _)) = c.pending {
            return Err(CallError::OperationPending { operation });
        }
        let session = c.session.ok_or(CallError::NoSuchCall(call))?;
        let passthrough = c.passthrough;
        if !passthrough && c.media_port.is_none() {
            return Err(CallError::InvalidArgument {
                what: "call",
                problem: "it has no media stream to play music on".into(),
            });
        }
        if self.core.user_agent_ref().modify_pending(session) {
            return Err(CallError::OperationPending {
                operation: Operation::Park,
            });
        }
        let other = self.bridge_peer(call)?;
        let number = self.free_orbit()?;
        let orbit = CallOrbit {
            number,
            uri: self.orbit_uri(number),
        };
        let parker = other.and_then(|o| self.parker_of(o));
        if passthrough {
            self.park_reoffer(now, call, session)?;
        }
        // Committed: nothing below fails.
        self.leave_bridge(
            call,
            crate::B2bEvent::Parked {
                call,
                orbit: orbit.clone(),
            },
        );
        self.leave_room_for(call, super::RoomLeaveReason::Parked);
        self.parking.orbits.insert(
            number,
            Parked {
                call,
                orbit: orbit.clone(),
                parker,
                timeout_at: Some(now + self.config.park.timeout),
                retrieval: None,
                refer,
            },
        );
        tracing::info!(%call, orbit = number, "call parked");
        self.transition(call, CallState::Parking, Reason::Parked);
        self.emit(
            call,
            CallEvent::Parked {
                orbit: orbit.clone(),
            },
        );
        if !passthrough {
            self.play_music(call);
            self.tell_referrer(now, number, 200, "OK");
        }
        if refer.is_none()
            && let Some(other) = other
        {
            let options = CallTerminateOptions {
                reason: Some(format!("SIP;cause=200;text=\"Call parked in {number}\"")),
                ..CallTerminateOptions::new()
            };
            if let Err(error) = self.terminate(now, other, options) {
                tracing::debug!(%error, %other, "parker not hung up");
            }
        }
        self.notify_orbit(now, number);
        Ok(orbit)
    }

    /// A REFER on a bridged leg named the park number: the other leg is parked and the
    /// transferor hears `200` (or `503`) by NOTIFY.
    pub(super) fn park_by_refer(
        &mut self,
        now: Instant,
        transferor: CallHandle,
        transfer: TransferId,
        bridge: B2bHandle,
    ) {
        let Some((a, b)) = self.bridge_legs(bridge) else {
            return;
        };
        let parked = if a == transferor { b } else { a };
        if let Err(error) = self.park_call(now, parked, Some((transferor, transfer))) {
            tracing::info!(%error, %bridge, "park by REFER failed");
            if let Err(error) =
                self.notify_transfer(now, transferor, transfer, 503, "Service Unavailable")
            {
                tracing::debug!(%error, "final NOTIFY not sent");
            }
        }
    }

    /// A `park` route: answered with Tandem's media now, parked at the ACK; 480 when
    /// every orbit is taken.
    pub(super) fn park_on_answer(
        &mut self,
        now: Instant,
        call: CallHandle,
    ) -> Result<(), CallError> {
        if let Err(error) = self.free_orbit() {
            let mut options = CallDeclineOptions::new(480);
            options.reason = Some(format!("SIP;cause=480;text=\"{error}\""));
            return self.decline(now, call, options);
        }
        self.parking.on_answer.insert(call);
        if let Err(error) = self.accept(now, call, CallAcceptOptions::new()) {
            self.parking.on_answer.remove(&call);
            return Err(error);
        }
        Ok(())
    }

    /// [`own_media_reoffer`](Self::own_media_reoffer), for a call being parked: its
    /// answer plays the music.
    fn park_reoffer(
        &mut self,
        now: Instant,
        call: CallHandle,
        session: sip_dialog::SessionId,
    ) -> Result<(), CallError> {
        self.own_media_reoffer(now, call, session)?;
        self.parking.reoffers.insert(call);
        Ok(())
    }

    /// A signalling-only leg gets Tandem's own media: a port, a negotiation of our own,
    /// and a re-INVITE with our offer (its origin line continued from the SDP the peer
    /// knew, RFC 3264 §8). Undone when it cannot be sent. The answer goes to
    /// [`own_media_answered`](Self::own_media_answered) (parking, an attended transfer
    /// across bridges).
    pub(super) fn own_media_reoffer(
        &mut self,
        now: Instant,
        call: CallHandle,
        session: sip_dialog::SessionId,
    ) -> Result<(), CallError> {
        let flow = self
            .core
            .user_agent_ref()
            .flow(session)
            .ok_or(CallError::NoSuchCall(call))?;
        let address = self.advertised(flow.local.ip());
        let mut caps = self.capabilities(CallKind::AudioVideo, address, flow.local.port());
        let seed = self.core.user_agent().ids().next_u64() >> 1;
        let c = self
            .calls
            .get_mut(&call)
            .ok_or(CallError::NoSuchCall(call))?;
        let previous = c.relay_local.clone();
        let old = std::mem::replace(&mut c.sdp, OfferAnswer::new(caps.clone(), seed));
        c.passthrough = false;
        let undo = |engine: &mut Engine| {
            engine.close_media(call);
            if let Some(c) = engine.calls.get_mut(&call) {
                c.passthrough = true;
                c.sdp = old;
            }
        };
        let port = match self.open_media(call) {
            Ok(Some(port)) => port,
            Ok(None) => {
                undo(self);
                return Err(CallError::NoSuchCall(call));
            }
            Err(error) => {
                undo(self);
                return Err(error);
            }
        };
        caps.audio_port = port;
        let offer = match self.calls.get_mut(&call) {
            Some(c) => {
                c.sdp.set_local(caps);
                c.sdp.create_offer().map_err(CallError::from)
            }
            None => Err(CallError::NoSuchCall(call)),
        };
        let offer = match offer {
            Ok(offer) => offer,
            Err(error) => {
                undo(self);
                return Err(error);
            }
        };
        let body = match previous {
            Some(previous) => continue_origin(&previous, &offer),
            None => offer,
        };
        if let Err(error) = self
            .core
            .user_agent()
            .reinvite(now, session, Some(Body::sdp(body)))
        {
            undo(self);
            return Err(error.into());
        }
        self.core.pump(now);
        Ok(())
    }

    /// The answer to [`own_media_reoffer`](Self::own_media_reoffer): the negotiation
    /// completes and the call's stream starts (its flow configured first). A refusal or
    /// an unusable answer is the error (the offer rolled back).
    pub(super) fn own_media_answered(
        &mut self,
        call: CallHandle,
        response: &Response,
    ) -> Result<(), String> {
        let Some(c) = self.calls.get_mut(&call) else {
            return Err("the call is gone".into());
        };
        let answer = body::split(&response.headers, &response.body)
            .ok()
            .and_then(|s| s.sdp);
        let failure = match answer {
            _ if !(200..300).contains(&response.status) => {
                Some(format!("the re-INVITE got {}", response.status))
            }
            Some(sdp) => c.sdp.receive_answer(&sdp).err().map(|e| e.to_string()),
            None => Some("no SDP answer".into()),
        };
        if let Some(problem) = failure {
            c.sdp.rollback();
            return Err(problem);
        }
        let configuration = configuration_of(c.sdp.negotiated());
        if let Some(configuration) = &configuration {
            c.local_direction = configuration.local_direction;
            c.remote_direction = configuration.remote_direction;
        }
        c.configuration = configuration.map(Box::new);
        self.flow_requested(call);
        self.start_media(call);
        Ok(())
    }

    /// The answer to a parked leg's re-INVITE: its stream starts and the music plays
    /// (unless it was retrieved meanwhile: then the join waits for the stream). A
    /// refusal ends the call. Returns false when `call` had no such re-INVITE.
    pub(super) fn park_reoffer_completed(
        &mut self,
        now: Instant,
        call: CallHandle,
        response: &Response,
    ) -> bool {
        if !self.parking.reoffers.remove(&call) {
            return false;
        }
        if !self.calls.contains_key(&call) {
            return true;
        }
        if let Err(problem) = self.own_media_answered(call, response) {
            tracing::info!(%call, %problem, "parked call has no media: ended");
            let number = self.parking.orbit_of(call);
            if let Some(number) = number {
                self.tell_referrer(now, number, 500, "Server Internal Error");
            }
            let text = format!(
                "SIP;cause=500;text=\"Park failed: {}\"",
                problem.replace('"', "'")
            );
            if let Some(c) = self.calls.get_mut(&call) {
                c.ending
                    .get_or_insert(Reason::MediaFailure { reason: problem });
            }
            self.end_call(now, call, text);
            return true;
        }
        if let Some(number) = self.parking.orbit_of(call) {
            self.play_music(call);
            self.tell_referrer(now, number, 200, "OK");
        }
        true
    }

    fn play_music(&mut self, call: CallHandle) {
        self.events.push_back(Event::Media {
            call,
            instruction: MediaInstruction::Play {
                file: self.config.park.music.clone(),
                looped: true,
            },
        });
    }

    /// The REFER that parked the call in `number`, if any, hears its final status.
    fn tell_referrer(&mut self, now: Instant, number: u16, status: u16, phrase: &str) {
        let refer = self
            .parking
            .orbits
            .get_mut(&number)
            .and_then(|p| p.refer.take());
        self.notify_referrer(now, refer, status, phrase);
    }

    fn notify_referrer(
        &mut self,
        now: Instant,
        refer: Option<(CallHandle, TransferId)>,
        status: u16,
        phrase: &str,
    ) {
        let Some((transferor, transfer)) = refer else {
            return;
        };
        if let Err(error) = self.notify_transfer(now, transferor, transfer, status, phrase) {
            tracing::debug!(%error, "park NOTIFY not sent");
        }
    }

    fn end_call(&mut self, now: Instant, call: CallHandle, reason: String) {
        let options = CallTerminateOptions {
            reason: Some(reason),
            ..CallTerminateOptions::new()
        };
        if let Err(error) = self.terminate(now, call, options) {
            tracing::debug!(%error, %call, "call not ended");
        }
    }

    // ---- retrieval

    /// An INVITE to an occupied orbit (the call `call`, `Incoming`): accepted with our
    /// answer; a ring-back or API call still ringing for the orbit is cancelled.
    pub(super) fn retrieve_by_invite(&mut self, now: Instant, call: CallHandle, number: u16) {
        if self.calls.get(&call).map(|c| c.kind) != Some(CallKind::AudioVideo) {
            let mut options = CallDeclineOptions::new(488);
            options.reason = Some("SIP;cause=488;text=\"A parked call takes audio\"".into());
            if self.decline(now, call, options).is_err() {
                self.finish(call, Reason::LocalTerminated, None);
            }
            return;
        }
        let previous = match self.parking.orbits.get_mut(&number) {
            Some(p) => p.retrieval.replace((call, Retrieval::Invite)),
            None => {
                let _ = self.decline(now, call, CallDeclineOptions::new(404));
                return;
            }
        };
        if let Some((leg, how)) = previous {
            self.end_call(
                now,
                leg,
                "SIP;cause=200;text=\"Call completed elsewhere\"".into(),
            );
            if how == Retrieval::RingBack {
                self.notify_orbit(now, number);
            }
        }
        if let Err(error) = self.accept(now, call, CallAcceptOptions::new()) {
            tracing::info!(%error, %call, orbit = number, "retrieval not accepted");
            if let Some(p) = self.parking.orbits.get_mut(&number)
                && p.retrieval.is_some_and(|(l, _)| l == call)
            {
                p.retrieval = None;
            }
            let mut options = CallDeclineOptions::new(500);
            options.reason = Some(format!(
                "SIP;cause=500;text=\"{}\"",
                error.to_string().replace('"', "'")
            ));
            if self.decline(now, call, options).is_err() {
                self.finish(call, Reason::LocalTerminated, None);
            }
        }
    }

    /// Places a call for the orbit (the API's retrieval, or the ring-back).
    fn place_retrieval(
        &mut self,
        now: Instant,
        number: u16,
        uri: &str,
        options: CallEstablishOptions,
        how: Retrieval,
    ) -> Result<CallHandle, CallError> {
        let parked = self
            .parking
            .orbits
            .get(&number)
            .ok_or(CallError::NoParkedCall(number))?;
        if parked.retrieval.is_some() {
            return Err(CallError::InvalidArgument {
                what: "orbit",
                problem: format!("the call in orbit {number} is being retrieved already"),
            });
        }
        let orbit = parked.orbit.clone();
        let endpoint = self.park_endpoint();
        let settings = ConversationSettings {
            impersonation: Some(Identity {
                uri: orbit.uri.clone(),
                display_name: Some(format!("Parked {number}")),
            }),
            ..ConversationSettings::default()
        };
        let conversation = self.new_conversation(endpoint, settings)?;
        let leg = self.new_call(conversation, CallKind::AudioVideo)?;
        // Known before the INVITE goes: whatever happens to the leg finds its orbit.
        if let Some(p) = self.parking.orbits.get_mut(&number) {
            p.retrieval = Some((leg, how));
        }
        if let Err(error) = self.establish(now, leg, uri, options) {
            if let Some(p) = self.parking.orbits.get_mut(&number)
                && p.retrieval.is_some_and(|(l, _)| l == leg)
            {
                p.retrieval = None;
            }
            if let Err(error) = self.terminate(now, leg, CallTerminateOptions::new()) {
                tracing::debug!(%error, "retrieval call not cleaned up");
            }
            return Err(error);
        }
        tracing::info!(%leg, orbit = number, ?how, %uri, "retrieving a parked call");
        Ok(leg)
    }

    /// A call is established: a `park` route's call is parked; a retrieval leg takes
    /// the parked call out of its orbit.
    pub(super) fn park_established(&mut self, now: Instant, call: CallHandle) {
        if self.parking.on_answer.remove(&call) {
            if let Err(error) = self.park_call(now, call, None) {
                tracing::info!(%error, %call, "routed call not parked");
                self.end_call(
                    now,
                    call,
                    format!(
                        "SIP;cause=480;text=\"{}\"",
                        error.to_string().replace('"', "'")
                    ),
                );
            }
            return;
        }
        if let Some(number) = self.parking.retrieved_by(call) {
            self.complete_retrieval(now, number);
        }
    }

    /// The retrieval leg is up: it and the parked call become a media-anchored bridge,
    /// the orbit is free.
    fn complete_retrieval(&mut self, now: Instant, number: u16) {
        let Some(parked) = self.parking.orbits.remove(&number) else {
            return;
        };
        let Some((leg, how)) = parked.retrieval else {
            self.parking.orbits.insert(number, parked);
            return;
        };
        let call = parked.call;
        // Whoever asked by REFER: the park did its job (if the music had not started yet).
        self.notify_referrer(now, parked.refer, 200, "OK");
        if self.calls.get(&call).map(|c| c.state) != Some(CallState::Parking) {
            // The parked call is ending: nothing to bridge to.
            self.end_call(now, leg, "SIP;cause=487;text=\"Parked call gone\"".into());
            self.notify_orbit(now, number);
            return;
        }
        tracing::info!(%call, %leg, orbit = number, ?how, "parked call retrieved");
        self.transition(call, CallState::Established, Reason::ParkRetrieved);
        let bridge = self.join_legs(call, leg);
        tracing::debug!(%bridge, "retrieval bridge");
        self.emit(
            call,
            CallEvent::Retrieved {
                orbit: parked.orbit,
                by: leg,
            },
        );
        self.notify_orbit(now, number);
    }

    // ---- the timeout, and calls that ended

    /// The earliest park deadline: a ring-back, a subscription's expiry.
    pub(super) fn park_deadline(&self) -> Option<Instant> {
        let rings = self
            .parking
            .orbits
            .values()
            .filter(|p| p.retrieval.is_none())
            .filter_map(|p| p.timeout_at);
        let expiries = self
            .parking
            .subscriptions
            .values()
            .filter(|s| !s.terminating)
            .map(|s| s.expires_at);
        rings.chain(expiries).min()
    }

    /// Ring-backs and subscription expiries that are due.
    pub(super) fn on_park_timeout(&mut self, now: Instant) {
        let due: Vec<u16> = self
            .parking
            .orbits
            .iter()
            .filter(|(_, p)| p.retrieval.is_none() && p.timeout_at.is_some_and(|t| t <= now))
            .map(|(n, _)| *n)
            .collect();
        for number in due {
            self.ring_back(now, number);
        }
        let mut expired: Vec<(Bytes, Bytes)> = self
            .parking
            .subscriptions
            .iter()
            .filter(|(_, s)| !s.terminating && s.expires_at <= now)
            .map(|(k, _)| k.clone())
            .collect();
        expired.sort();
        for key in expired {
            if let Some(s) = self.parking.subscriptions.get_mut(&key) {
                s.terminating = true;
            }
            self.send_notify(now, &key);
        }
    }

    /// Nobody retrieved the call in `number`: the parker (or the fallback) is rung; with
    /// neither, or if it cannot be placed, the call is ended.
    fn ring_back(&mut self, now: Instant, number: u16) {
        let Some(p) = self.parking.orbits.get_mut(&number) else {
            return;
        };
        p.timeout_at = None;
        let (call, orbit, parker) = (p.call, p.orbit.clone(), p.parker.clone());
        tracing::info!(%call, orbit = number, "park timed out");
        self.emit(call, CallEvent::ParkTimedOut { orbit });
        let target = parker
            .map(|p| (p.uri, p.destination))
            .or_else(|| self.config.park.fallback.clone().map(|uri| (uri, None)));
        let placed = match target {
            Some((uri, destination)) => {
                let options = CallEstablishOptions {
                    destination,
                    ..CallEstablishOptions::default()
                };
                self.place_retrieval(now, number, &uri, options, Retrieval::RingBack)
                    .map(drop)
            }
            None => Err(CallError::InvalidArgument {
                what: "ring-back",
                problem: "no parker and no fallback to ring".into(),
            }),
        };
        match placed {
            Ok(()) => self.notify_orbit(now, number),
            Err(error) => {
                tracing::info!(%error, %call, "no ring-back: the parked call is ended");
                self.end_parked(now, call);
            }
        }
    }

    fn end_parked(&mut self, now: Instant, call: CallHandle) {
        if let Some(c) = self.calls.get_mut(&call) {
            c.ending.get_or_insert(Reason::Timeout);
        }
        self.end_call(
            now,
            call,
            "SIP;cause=480;text=\"Parked call not retrieved\"".into(),
        );
    }

    /// Acts on calls that ended: a parked call frees its orbit (its retrieval leg is
    /// ended); a failed ring-back ends the parked call; a failed API or INVITE retrieval
    /// leaves it parked. Returns whether there was any.
    pub(super) fn run_park(&mut self, now: Instant) -> bool {
        let mut progressed = false;
        while let Some(call) = self.parking.ended.pop_front() {
            progressed = true;
            self.parking.on_answer.remove(&call);
            self.parking.reoffers.remove(&call);
            if let Some(number) = self.parking.orbit_of(call) {
                self.tell_referrer(now, number, 487, "Request Terminated");
                let Some(parked) = self.parking.orbits.remove(&number) else {
                    continue;
                };
                tracing::info!(%call, orbit = number, "parked call ended");
                if let Some((leg, _)) = parked.retrieval {
                    self.end_call(now, leg, "SIP;cause=487;text=\"Parked call gone\"".into());
                }
                self.notify_orbit(now, number);
                continue;
            }
            if let Some(number) = self.parking.retrieved_by(call) {
                let Some(p) = self.parking.orbits.get_mut(&number) else {
                    continue;
                };
                let how = p.retrieval.take().map(|(_, how)| how);
                let parked = p.call;
                tracing::info!(leg = %call, orbit = number, ?how, "retrieval failed");
                if how == Some(Retrieval::RingBack) {
                    self.end_parked(now, parked);
                }
            }
        }
        progressed
    }

    // ---- BLF: the dialog event package (RFC 4235) over RFC 6665

    /// A request for park outside the call dialogs: a SUBSCRIBE, or a request in a
    /// subscription dialog. Returns false for anything else.
    pub(super) fn on_park_request(
        &mut self,
        now: Instant,
        tx: &TransactionKey,
        request: &Request,
    ) -> bool {
        let to_tag = request
            .headers
            .to()
            .ok()
            .and_then(|t| t.tag().map(Bytes::copy_from_slice));
        match to_tag {
            Some(tag) => self.in_subscription(now, tx, request, tag),
            None if request.method == Method::Subscribe => self.on_subscribe(now, tx, request),
            None => return false,
        }
        true
    }

    /// A new subscription (RFC 6665 §4.2.1): checked, answered 200 and notified at once.
    fn on_subscribe(&mut self, now: Instant, tx: &TransactionKey, request: &Request) {
        let event = match check_event(request) {
            Ok(event) => event,
            Err(reply) => return self.respond(now, tx, reply),
        };
        let user = request_user(request);
        let Some(number) = user.as_deref().and_then(|u| self.orbit_number(u)) else {
            return self.respond(now, tx, Reply::new(404));
        };
        if !accepts_dialog_info(request) {
            let reply = Reply::new(406).with_header(HeaderName::Accept, DIALOG_INFO);
            return self.respond(now, tx, reply);
        }
        let expires = match expires_of(request) {
            Ok(expires) => expires,
            Err(reply) => return self.respond(now, tx, reply),
        };
        let Some(flow) = self.core.user_agent_ref().transaction_flow(tx) else {
            return self.respond(now, tx, Reply::new(500));
        };
        let tag = Bytes::from(self.core.user_agent().ids().tag());
        let Some(mut dialog) = Dialog::uas(request, &tag) else {
            return self.respond(now, tx, Reply::new(400));
        };
        dialog.state = DialogState::Confirmed;
        let contact = self
            .core
            .user_agent_ref()
            .contact(&number.to_string(), &flow);
        let reply = Reply::new(200)
            .with_header(HeaderName::Expires, expires.to_string())
            .with_header(HeaderName::Contact, contact);
        if let Err(error) = self
            .core
            .user_agent()
            .respond_with_tag(now, tx, reply, tag.clone())
        {
            tracing::debug!(%error, "200 to SUBSCRIBE not sent");
            return;
        }
        self.core.pump(now);
        let key = (dialog.id.call_id.clone(), tag);
        self.core
            .user_agent()
            .add_dialog_usage(key.0.clone(), key.1.clone());
        tracing::debug!(orbit = number, expires, "orbit subscribed");
        self.parking.subscriptions.insert(
            key.clone(),
            Subscription {
                orbit: number,
                dialog,
                flow,
                entity: String::from_utf8_lossy(&request.uri).into_owned(),
                event,
                expires_at: now + Duration::from_secs(u64::from(expires)),
                version: 0,
                in_flight: None,
                queued: false,
                terminating: expires == 0,
                final_sent: false,
            },
        );
        self.send_notify(now, &key);
    }

    /// A request in a subscription dialog: a refresh, or an un-SUBSCRIBE (Expires: 0).
    fn in_subscription(
        &mut self,
        now: Instant,
        tx: &TransactionKey,
        request: &Request,
        tag: Bytes,
    ) {
        let call_id =
            Bytes::copy_from_slice(request.headers.call_id().unwrap_or_default().as_bytes());
        let key = (call_id, tag);
        let from_tag = request
            .headers
            .from()
            .ok()
            .and_then(|f| f.tag().map(Bytes::copy_from_slice))
            .unwrap_or_default();
        let seq = request.headers.cseq().map(|c| c.seq).unwrap_or_default();
        let Some(sub) = self
            .parking
            .subscriptions
            .get_mut(&key)
            .filter(|s| s.dialog.id.remote_tag == from_tag)
        else {
            return self.respond(now, tx, Reply::new(481));
        };
        if !sub.dialog.accept_remote_cseq(seq) {
            return self.respond(now, tx, Reply::new(500).with_reason("CSeq Out of Order"));
        }
        if request.method != Method::Subscribe {
            let reply = Reply::new(405).with_header(HeaderName::Allow, "SUBSCRIBE");
            return self.respond(now, tx, reply);
        }
        let number = sub.orbit;
        if let Err(reply) = check_event(request) {
            return self.respond(now, tx, reply);
        }
        let expires = match expires_of(request) {
            Ok(expires) => expires,
            Err(reply) => return self.respond(now, tx, reply),
        };
        if sub.terminating {
            // Ending already: only an un-SUBSCRIBE is welcome.
            let reply = if expires == 0 {
                Reply::new(200).with_header(HeaderName::Expires, "0")
            } else {
                Reply::new(481)
            };
            return self.respond(now, tx, reply);
        }
        sub.dialog.refresh_target(&request.headers);
        sub.expires_at = now + Duration::from_secs(u64::from(expires));
        sub.terminating = expires == 0;
        let flow = sub.flow;
        let contact = self
            .core
            .user_agent_ref()
            .contact(&number.to_string(), &flow);
        let reply = Reply::new(200)
            .with_header(HeaderName::Expires, expires.to_string())
            .with_header(HeaderName::Contact, contact);
        self.respond(now, tx, reply);
        // RFC 6665 §4.2.2: a NOTIFY follows every accepted SUBSCRIBE (the final one for
        // an un-SUBSCRIBE).
        self.send_notify(now, &key);
    }

    /// The orbit's state changed: every watcher is told.
    fn notify_orbit(&mut self, now: Instant, number: u16) {
        let mut keys: Vec<(Bytes, Bytes)> = self
            .parking
            .subscriptions
            .iter()
            .filter(|(_, s)| s.orbit == number && !s.final_sent)
            .map(|(k, _)| k.clone())
            .collect();
        keys.sort();
        for key in keys {
            self.send_notify(now, &key);
        }
    }

    /// Sends the subscription's NOTIFY with the orbit's state now, or queues it behind
    /// the one in flight.
    fn send_notify(&mut self, now: Instant, key: &(Bytes, Bytes)) {
        let Some(number) = self.parking.subscriptions.get(key).map(|s| s.orbit) else {
            return;
        };
        let presence = self.parking.orbits.get(&number).map(|p| {
            let state = match p.retrieval {
                Some((_, Retrieval::RingBack)) => "early",
                _ => "confirmed",
            };
            (p.call, state)
        });
        let Some(sub) = self.parking.subscriptions.get_mut(key) else {
            return;
        };
        if sub.in_flight.is_some() {
            sub.queued = true;
            return;
        }
        sub.queued = false;
        let state = if sub.terminating {
            "terminated;reason=timeout".to_owned()
        } else {
            let left = sub
                .expires_at
                .saturating_duration_since(now)
                .as_secs()
                .max(1);
            format!("active;expires={left}")
        };
        let document = dialog_info(sub.version, &sub.entity, number, presence);
        let ua = self.core.user_agent();
        let mut request = ua.new_in_dialog_request(
            &mut sub.dialog,
            Method::Notify,
            &number.to_string(),
            &sub.flow,
        );
        request.headers.push(HeaderName::Event, sub.event.clone());
        request.headers.push(HeaderName::SubscriptionState, state);
        request.headers.push(HeaderName::ContentType, DIALOG_INFO);
        request
            .headers
            .push(HeaderName::ContentLength, document.len().to_string());
        request.body = Bytes::from(document);
        match ua.send_request(now, request, sub.flow) {
            Ok(tx) => {
                sub.in_flight = Some(tx);
                sub.version = sub.version.wrapping_add(1);
                sub.final_sent = sub.terminating;
                self.core.pump(now);
            }
            Err(error) => {
                tracing::debug!(%error, orbit = number, "NOTIFY not sent: subscription over");
                self.remove_subscription(key);
            }
        }
    }

    /// The response to one of our NOTIFYs: the next goes, or the subscription is over
    /// (its last NOTIFY answered, or refused: RFC 6665 §4.2.2). False when `tx` is no
    /// NOTIFY of ours.
    pub(super) fn on_park_response(
        &mut self,
        now: Instant,
        tx: &TransactionKey,
        status: u16,
    ) -> bool {
        let Some(key) = self
            .parking
            .subscriptions
            .iter()
            .find(|(_, s)| s.in_flight.as_ref() == Some(tx))
            .map(|(k, _)| k.clone())
        else {
            return false;
        };
        let Some(sub) = self.parking.subscriptions.get_mut(&key) else {
            return true;
        };
        sub.in_flight = None;
        if status >= 300 || sub.final_sent {
            if status >= 300 {
                tracing::debug!(
                    status,
                    orbit = sub.orbit,
                    "NOTIFY refused: subscription over"
                );
            }
            self.remove_subscription(&key);
        } else if sub.queued {
            self.send_notify(now, &key);
        }
        true
    }

    fn remove_subscription(&mut self, key: &(Bytes, Bytes)) {
        if self.parking.subscriptions.remove(key).is_some() {
            self.core.user_agent().remove_dialog_usage(&key.0, &key.1);
        }
    }
}

/// The Event header of a SUBSCRIBE, if it names the dialog package: 400 without one,
/// 489 with `Allow-Events: dialog` for another package (RFC 6665 §8.2.1, §4.2.1.1).
fn check_event(request: &Request) -> Result<Bytes, Reply> {
    let Some(event) = request.headers.get(&HeaderName::Event) else {
        return Err(Reply::new(400).with_reason("Missing Event"));
    };
    let text = String::from_utf8_lossy(event);
    let package = text.split(';').next().unwrap_or_default().trim();
    if !package.eq_ignore_ascii_case("dialog") {
        return Err(Reply::new(489).with_header(HeaderName::AllowEvents, "dialog"));
    }
    Ok(event.clone())
}

/// Whether the SUBSCRIBE's Accept (if any) admits `application/dialog-info+xml`.
fn accepts_dialog_info(request: &Request) -> bool {
    let mut any = false;
    for value in request.headers.values(&HeaderName::Accept) {
        for range in value.split(|b| *b == b',') {
            let media = range.split(|b| *b == b';').next().unwrap_or_default();
            let media = String::from_utf8_lossy(media).trim().to_ascii_lowercase();
            if media.is_empty() {
                continue;
            }
            any = true;
            if matches!(media.as_str(), DIALOG_INFO | "application/*" | "*/*") {
                return true;
            }
        }
    }
    !any
}

/// The subscription's duration: the Expires asked for (3600 s without one), at most
/// 3600 s; below 60 s (and not 0) 423 with Min-Expires (RFC 6665 §4.2.1.1).
fn expires_of(request: &Request) -> Result<u32, Reply> {
    let expires = request
        .headers
        .expires()
        .map_err(|_| Reply::new(400).with_reason("Bad Expires"))?
        .unwrap_or(MAX_EXPIRES);
    if expires != 0 && expires < MIN_EXPIRES {
        return Err(Reply::new(423).with_header(HeaderName::MinExpires, MIN_EXPIRES.to_string()));
    }
    Ok(expires.min(MAX_EXPIRES))
}

/// A full `application/dialog-info+xml` document (RFC 4235 §4) for an orbit: one
/// dialog while a call is parked in it (`presence`: the call and the dialog state), none
/// while it is free.
fn dialog_info(
    version: u32,
    entity: &str,
    orbit: u16,
    presence: Option<(CallHandle, &'static str)>,
) -> String {
    let mut xml = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\r\n\
         <dialog-info xmlns=\"urn:ietf:params:xml:ns:dialog-info\" version=\"{version}\" \
         state=\"full\" entity=\"{}\">\r\n",
        xml_escape(entity)
    );
    if let Some((call, state)) = presence {
        xml.push_str(&format!(
            "  <dialog id=\"park-{orbit}-{}\" direction=\"recipient\">\r\n    \
             <state>{state}</state>\r\n  </dialog>\r\n",
            call.get()
        ));
    }
    xml.push_str("</dialog-info>\r\n");
    xml
}

fn xml_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    #[test]
    fn dialog_info_documents() {
        let free = dialog_info(0, "sip:701@h", 701, None);
        assert!(free.contains("version=\"0\""), "{free}");
        assert!(free.contains("state=\"full\""), "{free}");
        assert!(free.contains("entity=\"sip:701@h\""), "{free}");
        assert!(!free.contains("<dialog "), "{free}");
        let busy = dialog_info(
            3,
            "sip:701@h;a=\"<&>\"",
            701,
            Some((CallHandle(9), "confirmed")),
        );
        assert!(busy.contains("<dialog id=\"park-701-9\""), "{busy}");
        assert!(busy.contains("<state>confirmed</state>"), "{busy}");
        assert!(
            busy.contains("entity=\"sip:701@h;a=&quot;&lt;&amp;&gt;&quot;\""),
            "{busy}"
        );
    }

    #[test]
    fn park_settings_orbits() {
        let settings = ParkSettings::default();
        assert!(settings.is_orbit(701) && settings.is_orbit(720));
        assert!(!settings.is_orbit(700) && !settings.is_orbit(721));
        let off = ParkSettings {
            first_orbit: 10,
            last_orbit: 9,
            ..ParkSettings::default()
        };
        assert!(!off.is_orbit(9) && !off.is_orbit(10));
    }
}
