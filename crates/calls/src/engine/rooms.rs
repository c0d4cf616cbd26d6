//! Conference rooms: calls whose audio Tandem mixes, each member hearing every other
//! member (not itself). Tandem is the conference focus in the sense of RFC 4353 §5.1 and
//! RFC 7667 §3.6 (a media mixer): each member negotiated its own SDP with Tandem, and
//! Tandem sends each one the sum of the others in that member's codec.
//!
//! - [`Engine::new_room`] makes an empty room; [`Engine::join_room`] puts an established
//!   audio call with Tandem's own media in it ([`MediaInstruction::JoinRoom`]: the media
//!   layer moves the call's stream into the room's mixer). A leg of a media-anchored
//!   bridge leaves the bridge first (the relay is unjoined; the bridge reports
//!   [`B2bEvent::JoinedRoom`](crate::B2bEvent::JoinedRoom) and ends; the other leg stays
//!   up with Tandem's media, in silence, for the application to join or hang up). A
//!   signalling-only leg cannot join: its RTP does not pass through Tandem
//!   ([`CallError::NoOwnMedia`]). A member of another room moves.
//! - [`Engine::leave_room`] gives the call its own stream back
//!   ([`MediaInstruction::LeaveRoom`]: silence until told to play). A call that ends
//!   leaves its room (its `Close` removes it from the mixer); a parked call leaves it
//!   before the music plays. An empty room stays until [`Engine::close_room`].
//! - A `Play` to a member (the application's player on the call's flow) plays to that
//!   member only, over the room. [`Engine::play_to_room`] plays to every member
//!   ([`MediaInstruction::PlayRoom`]).
//! - [`Engine::set_muted`] mutes a call in rooms ([`MediaInstruction::Mute`]): the
//!   others stop hearing it, it still hears them; the mute lasts across leaving and
//!   joining rooms (a hold and its retrieve) until unmuted or the call ends.
//! - Every change raises [`Event::Room`] with a [`RoomEvent`].

use super::Engine;
use crate::state::Operation;
use crate::types::{CallError, CallHandle, CallKind, Event, MediaInstruction, RoomId};
use foldhash::{HashMap, HashSet};
use std::collections::BTreeMap;
use std::time::Instant;

/// Why a call left its room.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RoomLeaveReason {
    /// [`Engine::leave_room`], or [`Engine::join_room`] of another room.
    Requested,
    /// The call ended.
    CallEnded,
    /// The call was parked.
    Parked,
    /// [`Engine::close_room`].
    RoomClosed,
    /// The call's media was joined to another call's instead (a relay).
    MediaJoined,
}

/// What happens to a conference room.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum RoomEvent {
    /// `call` joined: it hears the others, and they hear it.
    Joined { call: CallHandle },
    /// `call` left.
    Left {
        call: CallHandle,
        reason: RoomLeaveReason,
    },
    /// [`Engine::close_room`]: the room is gone (its members left first).
    Closed,
}

/// The engine's rooms.
#[derive(Debug, Default)]
pub(super) struct Rooms {
    /// Each room's members, in the order they joined.
    rooms: BTreeMap<RoomId, Vec<CallHandle>>,
    by_call: HashMap<CallHandle, RoomId>,
    /// Calls muted in rooms ([`Engine::set_muted`]).
    muted: HashSet<CallHandle>,
}

impl Engine {
    /// A new, empty conference room.
    pub fn new_room(&mut self) -> RoomId {
        let room = RoomId(self.next());
        self.rooms.rooms.insert(room, Vec::new());
        tracing::debug!(%room, "room made");
        room
    }

    /// The rooms that exist, in the order they were made.
    pub fn rooms(&self) -> Vec<RoomId> {
        self.rooms.rooms.keys().copied().collect()
    }

    /// The members of `room`, in the order they joined (none for an unknown room).
    pub fn room_members(&self, room: RoomId) -> Vec<CallHandle> {
        self.rooms.rooms.get(&room).cloned().unwrap_or_default()
    }

    /// The room `call` is in.
    pub fn room_of(&self, call: CallHandle) -> Option<RoomId> {
        self.rooms.by_call.get(&call).copied()
    }

    /// Puts `call` in `room`: from now on it hears every other member, mixed by Tandem,
    /// and they hear it. The call must be an established audio call whose RTP Tandem
    /// terminates (it accepted or placed it with its own SDP, or it is a leg of a
    /// media-anchored bridge, which it leaves first: see the module's notes). A call in
    /// another room moves; joining the room it is in changes nothing.
    ///
    /// Refused, with nothing changed: an unknown room ([`CallError::NoSuchRoom`]), a call
    /// not `Established` ([`CallError::InvalidState`]), an IM call, a signalling-only
    /// bridge leg or a call without a negotiated audio stream
    /// ([`CallError::NoOwnMedia`]), a bridge busy with a re-bridge, a join or a relayed
    /// re-INVITE ([`CallError::InvalidArgument`]).
    pub fn join_room(
        &mut self,
        now: Instant,
        call: CallHandle,
        room: RoomId,
    ) -> Result<(), CallError> {
        if !self.rooms.rooms.contains_key(&room) {
            return Err(CallError::NoSuchRoom(room));
        }
        let c = self.check(call, Operation::JoinRoom)?;
        if c.kind != CallKind::AudioVideo {
            return Err(CallError::WrongCallType {
                operation: Operation::JoinRoom,
                kind: c.kind,
            });
        }
        if c.passthrough {
            return Err(CallError::NoOwnMedia {
                call,
                reason: "it is a signalling-only bridge leg: its RTP passes between the \
                         phones, not through Tandem (bridge it media-anchored instead)",
            });
        }
        let has_audio = c
            .sdp
            .negotiated()
            .is_some_and(|n| n.audio.as_ref().is_some_and(|a| a.local_port != 0));
        if c.media_port.is_none() || !has_audio {
            return Err(CallError::NoOwnMedia {
                call,
                reason: "it has no negotiated audio stream",
            });
        }
        let bridged = c.bridge.is_some();
        let previous = self.room_of(call);
        if previous == Some(room) {
            return Ok(());
        }
        if bridged {
            // Refused while the bridge is busy; a signalling-only leg was refused above.
            self.bridge_peer(call)?;
        }
        // Committed: nothing below fails.
        if bridged {
            self.leave_bridge(call, crate::B2bEvent::JoinedRoom { call, room });
        }
        if let Some(previous) = previous {
            self.remove_from_room(call, previous, RoomLeaveReason::Requested, true);
        }
        self.rooms.by_call.insert(call, room);
        if let Some(members) = self.rooms.rooms.get_mut(&room) {
            members.push(call);
        }
        tracing::info!(%call, %room, "call joined room");
        self.events.push_back(Event::Media {
            call,
            instruction: MediaInstruction::JoinRoom { room },
        });
        self.events.push_back(Event::Room {
            room,
            event: RoomEvent::Joined { call },
        });
        self.drain(now);
        Ok(())
    }

    /// Takes `call` out of its room: its own stream resumes (silence until told to
    /// play), and the others no longer hear it. Returns the room it left.
    pub fn leave_room(&mut self, now: Instant, call: CallHandle) -> Result<RoomId, CallError> {
        let room = self.room_of(call).ok_or(CallError::NotInRoom(call))?;
        self.remove_from_room(call, room, RoomLeaveReason::Requested, true);
        self.drain(now);
        Ok(room)
    }

    /// Closes `room`: every member leaves it (as by [`Engine::leave_room`]; the calls go
    /// on) and the room is gone. Returns the calls that left.
    pub fn close_room(&mut self, now: Instant, room: RoomId) -> Result<Vec<CallHandle>, CallError> {
        let members = self
            .rooms
            .rooms
            .get(&room)
            .cloned()
            .ok_or(CallError::NoSuchRoom(room))?;
        for &call in &members {
            self.remove_from_room(call, room, RoomLeaveReason::RoomClosed, true);
        }
        self.rooms.rooms.remove(&room);
        tracing::debug!(%room, "room closed");
        self.events.push_back(Event::Room {
            room,
            event: RoomEvent::Closed,
        });
        self.drain(now);
        Ok(members)
    }

    /// A room-wide announcement: every member of `room` hears the WAV file `file`
    /// (16-bit PCM; an unreadable one is replaced by the hold tone), or with `None` a
    /// gentle tone pattern, over the others; over and over when `looped`. It replaces
    /// the announcement in progress and plays while the room has members. Refused for an
    /// unknown room or one without members (nobody would hear it).
    pub fn play_to_room(
        &mut self,
        room: RoomId,
        file: Option<String>,
        looped: bool,
    ) -> Result<(), CallError> {
        let members = self
            .rooms
            .rooms
            .get(&room)
            .ok_or(CallError::NoSuchRoom(room))?;
        let Some(&call) = members.first() else {
            return Err(CallError::InvalidArgument {
                what: "room",
                problem: format!("{room} has no members to hear an announcement"),
            });
        };
        self.events.push_back(Event::Media {
            call,
            instruction: MediaInstruction::PlayRoom { room, file, looped },
        });
        Ok(())
    }

    /// `call` leaves `room`; `instruct`: the media layer is told (not when the call
    /// ended: its `Close` removes it).
    fn remove_from_room(
        &mut self,
        call: CallHandle,
        room: RoomId,
        reason: RoomLeaveReason,
        instruct: bool,
    ) {
        if self.rooms.by_call.get(&call) != Some(&room) {
            return;
        }
        self.rooms.by_call.remove(&call);
        if let Some(members) = self.rooms.rooms.get_mut(&room) {
            members.retain(|m| *m != call);
        }
        tracing::info!(%call, %room, ?reason, "call left room");
        if instruct {
            self.events.push_back(Event::Media {
                call,
                instruction: MediaInstruction::LeaveRoom { room },
            });
        }
        self.events.push_back(Event::Room {
            room,
            event: RoomEvent::Left { call, reason },
        });
    }

    /// Mutes (`true`) or unmutes `call` in conference rooms: while muted, the other
    /// members of the room it is in (or joins later) do not hear it; it still hears them,
    /// and its DTMF is still reported. The mute lasts across leaving and joining rooms
    /// until it is undone or the call ends. A call need not be in a room to be muted.
    /// Setting what is already set changes nothing.
    ///
    /// Refused, with nothing changed: a call not `Established`
    /// ([`CallError::InvalidState`]), an IM call ([`CallError::WrongCallType`]), a
    /// signalling-only bridge leg, whose RTP Tandem does not see
    /// ([`CallError::NoOwnMedia`]).
    pub fn set_muted(&mut self, call: CallHandle, muted: bool) -> Result<(), CallError> {
        let c = self.check(call, Operation::Mute)?;
        if c.kind != CallKind::AudioVideo {
            return Err(CallError::WrongCallType {
                operation: Operation::Mute,
                kind: c.kind,
            });
        }
        if c.passthrough {
            return Err(CallError::NoOwnMedia {
                call,
                reason: "it is a signalling-only bridge leg: its RTP passes between the \
                         phones, not through Tandem",
            });
        }
        let changed = if muted {
            self.rooms.muted.insert(call)
        } else {
            self.rooms.muted.remove(&call)
        };
        if changed {
            tracing::info!(%call, muted, "call mute changed");
            self.events.push_back(Event::Media {
                call,
                instruction: MediaInstruction::Mute { muted },
            });
        }
        Ok(())
    }

    /// Whether `call` is muted in rooms ([`Engine::set_muted`]).
    pub fn is_muted(&self, call: CallHandle) -> bool {
        self.rooms.muted.contains(&call)
    }

    /// The call ended (from `finish`): it leaves its room.
    pub(super) fn room_call_ended(&mut self, call: CallHandle) {
        self.rooms.muted.remove(&call);
        if let Some(room) = self.room_of(call) {
            self.remove_from_room(call, room, RoomLeaveReason::CallEnded, false);
        }
    }

    /// The call's media goes elsewhere (it is parked, its stream is joined to another
    /// call's): it leaves its room first, if it is in one (`LeaveRoom` before what the
    /// caller instructs next).
    pub(super) fn leave_room_for(&mut self, call: CallHandle, reason: RoomLeaveReason) {
        if let Some(room) = self.room_of(call) {
            self.remove_from_room(call, room, reason, true);
        }
    }
}
