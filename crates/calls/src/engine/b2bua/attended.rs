//! Attended transfer across two bridges (RFC 5589 §7 with RFC 3891 Replaces).
//!
//! T bridges A–B (bridge 1: legs `a1` toward A, `b1` toward B) and B–C (bridge 2: `x`
//! toward B, `y` toward C). B consulted C and sends, on `b1`, a REFER whose Refer-To
//! carries a Replaces naming `x` as B sees it (RFC 3891 §6.1: to-tag = T's tag,
//! from-tag = B's). Since the dialog named is one of T's own, no INVITE goes anywhere:
//! T joins the far legs `a1` and `y` in bridge 1, bridge 2 ends, `x` gets a BYE
//! (`Reason: SIP;cause=200;text="Call replaced"`), and B, told `200` by NOTIFY, hangs
//! up `b1` itself (RFC 5589 §7); if it has not after [`TRANSFEROR_HANGUP_TIME`], T does.
//!
//! Media, by the two bridges' modes:
//! - both media-anchored: the relay is unjoined on both sides and `a1` joined to `y`
//!   at once;
//! - both signalling-only: `y` is re-INVITEd with A's last SDP, then (once C answered)
//!   `a1` with C's answer, each SDP's origin line continued from the one its peer knew
//!   (RFC 3264 §8). One after the other, so a refusal by C changes nothing; a refusal
//!   by A leaves A with B and C with A's SDP: `y` is hung up (with Reason), which ends
//!   bridge 2 as any BYE would. A half-joined bridge is never left.
//! - mixed: the signalling-only side is re-INVITEd onto Tandem's own media (as a
//!   parked leg is) and, at its answer, joined to the other in the relay: bridge 1
//!   becomes media-anchored. A refusal (non-2xx) puts that leg back as it was.
//!
//! While a join is under way both bridges are busy: a re-bridge, a park, another
//! REFER on them are refused, and a re-offer relayed across them gets 491 (its sender
//! retries). If A or C hangs up meanwhile, the join fails (NOTIFY 487) and every leg
//! whose media it changed is hung up; if B hangs up `b1` or `x` early, the join goes
//! on without it.

use super::{B2bEvent, B2bHandle, B2bLeg, B2bState, BridgeMode, LegEnded, continue_origin};
use crate::engine::{Engine, Reason, Timer};
use crate::options::CallTerminateOptions;
use crate::refer::Replaces;
use crate::state::CallState;
use crate::types::{CallHandle, Event, MediaInstruction, TransferId};
use bytes::Bytes;
use foldhash::HashMap;
use sip_dialog::Body;
use sip_message::Response;
use std::time::{Duration, Instant};

/// How long a transferor has to hang up its leg after the final NOTIFY of an attended
/// transfer across two bridges before Tandem does (64·T1, RFC 5589 §7: the transferor
/// ends its dialog once the transfer succeeded).
pub const TRANSFEROR_HANGUP_TIME: Duration = Duration::from_secs(32);

/// The joins under way, by the bridge that is kept (the transferor's).
#[derive(Debug, Default)]
pub(in crate::engine) struct Joins(HashMap<B2bHandle, Join>);

#[derive(Debug)]
struct Join {
    /// The consultation's bridge, given up.
    other: B2bHandle,
    /// The kept bridge's far leg (toward A), and the transferor's leg (toward B).
    transferee: CallHandle,
    transferor: CallHandle,
    /// The leg the Replaces named (toward B), and its bridge's far leg (toward C).
    replaced: CallHandle,
    target: CallHandle,
    transfer: TransferId,
    step: Step,
    /// Legs whose media the join changed or is changing: hung up if it fails.
    touched: Vec<CallHandle>,
    /// The transferor's legs that ended meanwhile, their bridges' work held back: acted
    /// on if the join fails, forgotten if it succeeds.
    gone: Vec<LegEnded>,
}

#[derive(Debug)]
enum Step {
    /// Signalling-only: the target's re-INVITE with this offer (A's SDP) is out.
    Target(Bytes),
    /// Signalling-only: then the transferee's, with this offer (C's answer).
    Transferee(Bytes),
    /// Mixed modes: this signalling-only leg is re-INVITEd onto Tandem's own media.
    OwnMedia(CallHandle),
}

impl Join {
    /// The leg whose re-INVITE is awaited.
    fn awaiting(&self) -> CallHandle {
        self.awaiting_of(&self.step)
    }

    fn awaiting_of(&self, step: &Step) -> CallHandle {
        match step {
            Step::Target(_) => self.target,
            Step::Transferee(_) => self.transferee,
            Step::OwnMedia(call) => *call,
        }
    }

    fn legs(&self) -> [CallHandle; 4] {
        [self.transferee, self.transferor, self.replaced, self.target]
    }
}

/// Who the REFER's Replaces names and what the join takes.
struct Plan {
    other: B2bHandle,
    transferee: CallHandle,
    replaced: CallHandle,
    target: CallHandle,
    modes: (BridgeMode, BridgeMode),
}

impl Engine {
    /// Whether `bridge` is one of the two bridges of a join under way.
    pub(super) fn joining(&self, bridge: B2bHandle) -> bool {
        self.joins
            .0
            .iter()
            .any(|(kept, j)| *kept == bridge || j.other == bridge)
    }

    /// A REFER with Replaces from the peer of `transferor`, a leg of `bridge`
    /// (established, nothing else under way). Returns false when the Replaces names no
    /// dialog of ours: the REFER is then carried out as for a plain call, by an INVITE
    /// with that Replaces to the Refer-To target (the caller's blind-transfer path).
    /// Otherwise the REFER is refused with 603 (the dialog named cannot be joined) or
    /// accepted and the join begins.
    pub(super) fn attended_transfer(
        &mut self,
        now: Instant,
        transferor: CallHandle,
        transfer: TransferId,
        bridge: B2bHandle,
        replaces: &Replaces,
    ) -> bool {
        let plan = match self.call_named_by(replaces) {
            // Not ours (or an early dialog of ours we did not initiate, which the
            // INVITE with Replaces will find out itself: 481).
            Err(reply) if reply.status == 481 => return false,
            Err(reply) => Err(format!(
                "the dialog named cannot be replaced ({})",
                reply.status
            )),
            Ok(replaced) => self.join_plan(bridge, transferor, replaced),
        };
        let plan = match plan {
            Ok(plan) => plan,
            Err(why) => {
                tracing::info!(%bridge, %transfer, %why, "attended transfer refused");
                if let Err(error) = self.decline_transfer(now, transferor, transfer, 603) {
                    tracing::debug!(%error, %bridge, "transfer not declined");
                }
                return true;
            }
        };
        if let Err(error) = self.accept_transfer_manually(now, transferor, transfer) {
            tracing::debug!(%error, %bridge, "attended transfer not accepted");
            return true;
        }
        tracing::info!(%bridge, other = %plan.other, replaced = %plan.replaced,
            target = %plan.target, "attended transfer: joining two bridges");
        let mut join = Join {
            other: plan.other,
            transferee: plan.transferee,
            transferor,
            replaced: plan.replaced,
            target: plan.target,
            transfer,
            step: Step::OwnMedia(plan.target),
            touched: Vec::new(),
            gone: Vec::new(),
        };
        let started = match plan.modes {
            (BridgeMode::MediaAnchored, BridgeMode::MediaAnchored) => {
                self.complete_join(now, bridge, join);
                return true;
            }
            (BridgeMode::SignalingOnly, BridgeMode::SignalingOnly) => {
                let sdp = self
                    .calls
                    .get(&join.transferee)
                    .and_then(|c| c.remote_offer.clone());
                self.join_reoffer(now, join.target, sdp).map(Step::Target)
            }
            (BridgeMode::SignalingOnly, _) => self
                .join_own_media(now, join.transferee)
                .map(|()| Step::OwnMedia(join.transferee)),
            (_, _) => self
                .join_own_media(now, join.target)
                .map(|()| Step::OwnMedia(join.target)),
        };
        match started {
            Ok(step) => {
                join.touched.push(join.awaiting_of(&step));
                join.step = step;
                self.joins.0.insert(bridge, join);
            }
            Err(why) => self.fail_join(now, bridge, join, 500, &why),
        }
        true
    }

    /// What joining `transferor`'s bridge with the bridge of `replaced` takes, or why
    /// it cannot be done.
    fn join_plan(
        &self,
        bridge: B2bHandle,
        transferor: CallHandle,
        replaced: CallHandle,
    ) -> Result<Plan, String> {
        let Some((other, _)) = self.calls.get(&replaced).and_then(|c| c.bridge) else {
            return Err(format!("{replaced} is not a leg of a bridge"));
        };
        if other == bridge {
            return Err(format!(
                "{replaced} is a leg of the transferor's own bridge"
            ));
        }
        if self.joining(other) {
            return Err(format!("{other} is being joined already"));
        }
        let busy = |e: crate::types::CallError| e.to_string();
        let transferee = self
            .bridge_peer(transferor)
            .map_err(busy)?
            .ok_or_else(|| format!("{bridge} is over"))?;
        let target = self
            .bridge_peer(replaced)
            .map_err(busy)?
            .ok_or_else(|| format!("{other} is over"))?;
        for call in [transferee, transferor, replaced, target] {
            let c = self
                .calls
                .get(&call)
                .filter(|c| c.state == CallState::Established && c.session.is_some());
            if c.is_none() {
                return Err(format!("{call} is not established"));
            }
        }
        let mode = |b: B2bHandle| self.bridges.get(&b).map(|e| e.mode);
        let (Some(m1), Some(m2)) = (mode(bridge), mode(other)) else {
            return Err("a bridge is over".into());
        };
        if (m1, m2) == (BridgeMode::SignalingOnly, BridgeMode::SignalingOnly)
            && self
                .calls
                .get(&transferee)
                .is_none_or(|c| c.remote_offer.is_none())
        {
            return Err(format!("{transferee} has no SDP to give the target"));
        }
        Ok(Plan {
            other,
            transferee,
            replaced,
            target,
            modes: (m1, m2),
        })
    }

    /// A signalling-only re-INVITE of the join to `call` with `sdp` (the other side's),
    /// its origin line continued from what `call`'s peer knew. Returns the offer sent.
    fn join_reoffer(
        &mut self,
        now: Instant,
        call: CallHandle,
        sdp: Option<Bytes>,
    ) -> Result<Bytes, String> {
        let Some(sdp) = sdp else {
            return Err(format!("no SDP to give {call}"));
        };
        let Some(c) = self.calls.get(&call) else {
            return Err(format!("{call} is gone"));
        };
        let Some(session) = c.session else {
            return Err(format!("{call} has no dialog"));
        };
        let offer = match &c.relay_local {
            Some(previous) => continue_origin(previous, &sdp),
            None => sdp,
        };
        if self.core.user_agent_ref().modify_pending(session) {
            return Err(format!("{call} has a re-offer of its own under way"));
        }
        self.core
            .user_agent()
            .reinvite(now, session, Some(Body::sdp(offer.clone())))
            .map_err(|error| format!("re-INVITE to {call} not sent: {error}"))?;
        self.core.pump(now);
        Ok(offer)
    }

    /// The signalling-only `call` is re-INVITEd onto Tandem's own media.
    fn join_own_media(&mut self, now: Instant, call: CallHandle) -> Result<(), String> {
        let Some(session) = self.calls.get(&call).and_then(|c| c.session) else {
            return Err(format!("{call} has no dialog"));
        };
        if self.core.user_agent_ref().modify_pending(session) {
            return Err(format!("{call} has a re-offer of its own under way"));
        }
        self.own_media_reoffer(now, call, session)
            .map_err(|error| format!("{call} not moved to Tandem's media: {error}"))
    }

    /// The final response to a join's re-INVITE; false when `call` awaits none.
    pub(in crate::engine) fn join_reoffer_completed(
        &mut self,
        now: Instant,
        call: CallHandle,
        response: &Response,
    ) -> bool {
        let Some(bridge) = self
            .joins
            .0
            .iter()
            .find(|(_, j)| j.awaiting() == call)
            .map(|(b, _)| *b)
        else {
            return false;
        };
        let Some(mut join) = self.joins.0.remove(&bridge) else {
            return false;
        };
        let status = response.status;
        let ok = (200..300).contains(&status);
        let answer = crate::body::split(&response.headers, &response.body)
            .ok()
            .and_then(|s| s.sdp);
        let step = std::mem::replace(&mut join.step, Step::OwnMedia(call));
        match step {
            Step::Target(offer) => {
                let Some(answer) = answer.filter(|_| ok) else {
                    // C refused A's SDP: its session is as it was (RFC 3264 §8).
                    if !ok {
                        join.touched.retain(|c| *c != call);
                    }
                    self.refused(now, bridge, join, status, "the target refused");
                    return true;
                };
                if let Some(c) = self.calls.get_mut(&call) {
                    c.relay_local = Some(offer);
                    c.remote_offer = Some(answer.clone());
                }
                match self.join_reoffer(now, join.transferee, Some(answer)) {
                    Ok(offer) => {
                        join.touched.push(join.transferee);
                        join.step = Step::Transferee(offer);
                        self.joins.0.insert(bridge, join);
                    }
                    Err(why) => self.fail_join(now, bridge, join, 500, &why),
                }
            }
            Step::Transferee(offer) => {
                let Some(answer) = answer.filter(|_| ok) else {
                    if !ok {
                        join.touched.retain(|c| *c != call);
                    }
                    self.refused(now, bridge, join, status, "the transferee refused");
                    return true;
                };
                if let Some(c) = self.calls.get_mut(&call) {
                    c.relay_local = Some(offer);
                    c.remote_offer = Some(answer);
                }
                self.complete_join(now, bridge, join);
            }
            Step::OwnMedia(leg) => match self.own_media_answered(leg, response) {
                Ok(()) => self.complete_join(now, bridge, join),
                Err(problem) => {
                    if !ok {
                        // Refused: the leg is as it was, signalling-only in its bridge.
                        self.close_media(leg);
                        if let Some(c) = self.calls.get_mut(&leg) {
                            c.passthrough = true;
                        }
                        join.touched.retain(|c| *c != leg);
                    }
                    let status = if ok { 488 } else { status };
                    self.fail_join(now, bridge, join, status, &problem);
                }
            },
        }
        true
    }

    fn refused(&mut self, now: Instant, bridge: B2bHandle, join: Join, status: u16, who: &str) {
        let (status, why) = if (200..300).contains(&status) {
            (488, format!("{who}: a 2xx without SDP"))
        } else {
            (status, format!("{who}: {status}"))
        };
        self.fail_join(now, bridge, join, status, &why);
    }

    /// The join is done: bridge 1 takes the target in the transferor's place, bridge 2
    /// ends, the replaced leg gets its BYE, the transferor hears 200.
    fn complete_join(&mut self, now: Instant, bridge: B2bHandle, join: Join) {
        let Some(entry) = self.bridges.get(&bridge) else {
            return self.fail_join(now, bridge, join, 487, "the bridge is over");
        };
        if entry.a == join.transferor {
            // The transferee stays leg A, as after a blind transfer.
            self.swap_legs(bridge);
        }
        let kept_mode = self.bridges.get(&bridge).map(|e| e.mode);
        let (other_mode, replaced_leg) = self
            .bridges
            .get(&join.other)
            .map(|e| {
                (
                    Some(e.mode),
                    if e.a == join.replaced {
                        B2bLeg::A
                    } else {
                        B2bLeg::B
                    },
                )
            })
            .unwrap_or((None, B2bLeg::B));
        let anchored = self
            .calls
            .get(&join.transferee)
            .is_some_and(|c| !c.passthrough);
        if let Some(entry) = self.bridges.get_mut(&bridge) {
            entry.b = join.target;
            entry.mode = if anchored {
                BridgeMode::MediaAnchored
            } else {
                BridgeMode::SignalingOnly
            };
        }
        for (call, slot) in [
            (join.transferor, None),
            (join.replaced, None),
            (join.target, Some((bridge, B2bLeg::B))),
        ] {
            if let Some(c) = self.calls.get_mut(&call) {
                c.bridge = slot;
            }
        }
        if anchored {
            let mut media = Vec::new();
            if kept_mode == Some(BridgeMode::MediaAnchored) {
                media.push((
                    join.transferee,
                    MediaInstruction::Unjoin {
                        peer: join.transferor,
                    },
                ));
            }
            if other_mode == Some(BridgeMode::MediaAnchored) {
                media.push((
                    join.target,
                    MediaInstruction::Unjoin {
                        peer: join.replaced,
                    },
                ));
            }
            media.push((
                join.transferee,
                MediaInstruction::Join { peer: join.target },
            ));
            for (call, instruction) in media {
                self.events.push_back(Event::Media { call, instruction });
            }
        }
        self.set_bridge_state(join.other, B2bState::Terminated, replaced_leg);
        self.bridges.remove(&join.other);
        tracing::info!(%bridge, other = %join.other, "attended transfer: bridges joined");
        self.bridge_event(
            bridge,
            B2bEvent::Joined {
                other: join.other,
                previous: join.transferor,
                leg: join.target,
            },
        );
        if let Err(error) = self.notify_transfer(now, join.transferor, join.transfer, 200, "OK") {
            tracing::debug!(%error, %bridge, "final NOTIFY not sent");
        }
        let live = |engine: &Engine, call: CallHandle| {
            engine
                .calls
                .get(&call)
                .is_some_and(|c| !matches!(c.state, CallState::Terminating | CallState::Terminated))
        };
        if live(self, join.replaced) {
            if let Some(c) = self.calls.get_mut(&join.replaced) {
                c.ending = Some(Reason::Replaced);
            }
            let options = CallTerminateOptions {
                reason: Some("SIP;cause=200;text=\"Call replaced\"".into()),
                ..CallTerminateOptions::new()
            };
            if let Err(error) = self.terminate(now, join.replaced, options) {
                tracing::debug!(%error, %bridge, "replaced leg not ended");
            }
        }
        if live(self, join.transferor) {
            self.arm(
                join.transferor,
                Timer::TransferorHangup,
                now + TRANSFEROR_HANGUP_TIME,
            );
        }
    }

    /// The join failed: the transferor hears `status`, every leg whose media changed
    /// is hung up (its bridge ends the other leg as any BYE would), the rest stays as
    /// it was.
    fn fail_join(&mut self, now: Instant, bridge: B2bHandle, join: Join, status: u16, why: &str) {
        tracing::info!(%bridge, other = %join.other, status, %why, "attended transfer failed");
        let phrase = sip_message::default_reason_phrase(status);
        if let Err(error) =
            self.notify_transfer(now, join.transferor, join.transfer, status, phrase)
        {
            tracing::debug!(%error, %bridge, "final NOTIFY not sent");
        }
        self.bridge_event(
            bridge,
            B2bEvent::JoinFailed {
                other: join.other,
                status,
                reason: why.to_owned(),
            },
        );
        let reason = format!(
            "SIP;cause={status};text=\"Attended transfer failed: {}\"",
            why.replace(['"', '\r', '\n'], "'")
        );
        for call in join.touched {
            let live = self.calls.get(&call).is_some_and(|c| {
                !matches!(c.state, CallState::Terminating | CallState::Terminated)
            });
            if !live {
                continue;
            }
            let options = CallTerminateOptions {
                reason: Some(reason.clone()),
                ..CallTerminateOptions::new()
            };
            if let Err(error) = self.terminate(now, call, options) {
                tracing::debug!(%error, %bridge, "leg not ended");
            }
        }
        // The transferor's legs that ended meanwhile: their bridges act on it now.
        self.bridge_work.extend(join.gone);
    }

    /// A leg ended (from its bridge's work): a join it is part of goes on without the
    /// transferor's legs (their end held back) and fails without A's or C's. Returns
    /// the work for the bridge to do, if any.
    pub(super) fn join_leg_ended(&mut self, now: Instant, ended: LegEnded) -> Option<LegEnded> {
        let Some(bridge) = self
            .joins
            .0
            .iter()
            .find(|(_, j)| j.legs().contains(&ended.call))
            .map(|(b, _)| *b)
        else {
            return Some(ended);
        };
        let Some(mut join) = self.joins.0.remove(&bridge) else {
            return Some(ended);
        };
        if ended.call == join.transferor || ended.call == join.replaced {
            join.gone.push(ended);
            self.joins.0.insert(bridge, join);
            return None;
        }
        join.touched.retain(|c| *c != ended.call);
        self.fail_join(now, bridge, join, 487, "a party hung up");
        Some(ended)
    }

    /// The transferor did not hang up its leg after a join: Tandem does.
    pub(in crate::engine) fn transferor_hangup(&mut self, now: Instant, call: CallHandle) {
        let Some(c) = self.calls.get_mut(&call) else {
            return;
        };
        if c.bridge.is_some() || matches!(c.state, CallState::Terminating | CallState::Terminated) {
            return;
        }
        c.ending = Some(Reason::Transferred);
        tracing::info!(%call, "transferor did not hang up after the join: BYE");
        let options = CallTerminateOptions {
            reason: Some("SIP;cause=200;text=\"Call transferred\"".into()),
            ..CallTerminateOptions::new()
        };
        if let Err(error) = self.terminate(now, call, options) {
            tracing::debug!(%error, %call, "transferor's leg not ended");
        }
    }
}
