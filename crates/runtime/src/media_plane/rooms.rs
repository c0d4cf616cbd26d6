//! Conference rooms in the media plane: one task per room, driving a
//! [`media::Conference`] over its members' sockets.
//!
//! A member's flow really moves: [`MediaInstruction::JoinRoom`] takes the call's RTP and
//! RTCP sockets from its flow's task, then the [`AudioFlow`] itself (its stream, latches,
//! DTMF receiver, recorder, statistics; a suspended stand-in is left behind), and gives
//! both to the room, which files the sockets under the member's own ids
//! ([`AudioFlow::set_sockets`]). In the room the flow sends what the mixer gives it (the
//! sum of the other members, in its own codec) and reports as before: `Receiving`,
//! `Timeout`, RFC 4733 tones, `PlayCompleted` of its own player, each as the call's.
//! [`MediaInstruction::LeaveRoom`] (or the call's `Close`, or a `Join`) hands the flow
//! and its sockets back; the flow carries its stream on from the room's (one SSRC, its
//! timestamps moved on by the time passed) in silence, unless told to play since.
//!
//! Commands for a member's flow (a player, DTMF, statistics, a new negotiation) run on
//! it in the room; a player there is heard by that member only, over the room
//! ([`AudioFlow::send_frame`]). Once a call has been in a room, its flow commands go
//! through the plane's job queue, so each finds the flow where the moves before it left
//! it. A room's task starts with its first member and stops when its last one leaves.
//!
//! [`MediaInstruction::Mute`] is kept on the call and applied in whatever room it is in
//! or joins ([`Conference::set_muted`]): the others stop hearing it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use calls::{CallHandle, RoomId};
use media::Player;
use media::conference::{ANNOUNCER, Conference, ParticipantId};
use media::flow::{AudioFlow, FlowEvent, FlowIdentity};
use media_transport::{MediaController, MediaHandle};
use rtp_session::SocketId;
use tokio::sync::{mpsc, oneshot};
use tracing::debug;

use super::{FlowCommand, MediaPlane, RTCP, RTP, hold_tone, since_unix_epoch};

/// A call's place in a room.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum RoomLink {
    /// Joins `room` once the call's stream starts.
    Wanted(RoomId),
    /// In `room` as participant `id`.
    In { room: RoomId, id: ParticipantId },
}

/// A room's task.
#[derive(Debug)]
pub(super) struct Room {
    controller: MediaController<Conference>,
    /// Participant → call, for the room's reports (an entry goes once its flow left).
    members: Arc<Mutex<HashMap<ParticipantId, CallHandle>>>,
    /// Members joined or joining.
    count: usize,
    next_id: ParticipantId,
    /// Ends the room's task.
    stop: oneshot::Sender<()>,
}

/// The room's sockets of participant `id`.
fn member_sockets(id: ParticipantId) -> (SocketId, SocketId) {
    let base = id.saturating_mul(2);
    (SocketId(base), SocketId(base.saturating_add(1)))
}

impl MediaPlane {
    /// The room's task, started if it is not running.
    fn room(&mut self, room: RoomId) -> &mut Room {
        let events = self.events.clone();
        self.rooms.entry(room).or_insert_with(|| {
            let handle = media_transport::spawn(Conference::new(), Vec::new());
            let controller = handle.controller();
            let members = Arc::new(Mutex::new(HashMap::new()));
            let (stop, stopped) = oneshot::channel();
            tokio::spawn(room_task(handle, room, members.clone(), events, stopped));
            debug!(%room, "room started");
            Room {
                controller,
                members,
                count: 0,
                next_id: 0,
                stop,
            }
        })
    }

    /// The room `call` is in, or waits to join.
    pub(super) fn room_of(&self, call: CallHandle) -> Option<RoomId> {
        match self.calls.get(&call)?.room? {
            RoomLink::In { room, .. } | RoomLink::Wanted(room) => Some(room),
        }
    }

    /// `MediaInstruction::JoinRoom`.
    pub(super) fn join_room(&mut self, call: CallHandle, room: RoomId) {
        match self.room_of(call) {
            Some(r) if r == room => return,
            Some(_) => self.leave_room(call),
            None => {}
        }
        // A relay gives the streams back first (a job before ours).
        self.unlink(call);
        if self.started(call) {
            self.join_room_now(call, room);
        } else {
            debug!(%call, %room, "room join waits for the stream to start");
            self.calls.entry(call).or_default().room = Some(RoomLink::Wanted(room));
        }
    }

    /// The call's stream started: the flow moves into the room.
    pub(super) fn join_room_now(&mut self, call: CallHandle, room: RoomId) {
        let Some(flow) = self
            .calls
            .get(&call)
            .and_then(|e| e.flow.as_ref())
            .map(|f| f.controller.clone())
        else {
            return;
        };
        // The room replaces what was playing, in order with the application's commands
        // (and with the moves before: a flow back from a room may be on its way).
        let _ = self.run_on_flow(call, Box::new(|flow, _| flow.stop_playing()));
        let identity = FlowIdentity {
            cname: self.cname.clone(),
            seed: self.next_seed(),
            since_unix_epoch: since_unix_epoch(),
        };
        let r = self.room(room);
        let id = r.next_id;
        // Ids are not reused while the task runs (a late report of a member that left
        // must not be taken for a newcomer's); ANNOUNCER is never one.
        r.next_id = r.next_id.wrapping_add(1) & 0x3fff_ffff;
        r.count += 1;
        if let Ok(mut members) = r.members.lock() {
            members.insert(id, call);
        }
        let conference = r.controller.clone();
        let mut muted = false;
        if let Some(entry) = self.calls.get_mut(&call) {
            entry.room = Some(RoomLink::In { room, id });
            entry.roomed = true;
            muted = entry.muted;
        }
        debug!(%call, %room, participant = id, "call joins room");
        self.job(async move {
            // The sockets first: what arrives meanwhile waits in them for the room.
            let rtp = flow.take_socket(RTP).await.ok().flatten();
            let rtcp = flow.take_socket(RTCP).await.ok().flatten();
            let moved = flow
                .query(move |flow, now| {
                    let mut stand_in = AudioFlow::new(now, flow.config().clone(), identity);
                    stand_in.suspend(now);
                    std::mem::replace(flow, stand_in)
                })
                .await;
            let Ok(mut moved) = moved else {
                debug!(%call, "flow gone before it joined the room");
                return;
            };
            let (rtp_id, rtcp_id) = member_sockets(id);
            moved.set_sockets(rtp_id, rtcp_id);
            let _ = conference.command(move |conference, now| {
                conference.join(now, id, moved);
                conference.set_muted(id, muted);
            });
            for (socket_id, socket) in [(rtp_id, rtp), (rtcp_id, rtcp)] {
                if let Some(socket) = socket
                    && conference.add_socket(socket_id, socket).is_err()
                {
                    debug!(%call, "room task gone: socket closed");
                }
            }
        });
    }

    /// The call leaves its room (or stops waiting for one): its flow and sockets go back
    /// to its own task, which carries the stream on.
    pub(super) fn leave_room(&mut self, call: CallHandle) {
        let Some(entry) = self.calls.get_mut(&call) else {
            return;
        };
        let Some(RoomLink::In { room, id }) = entry.room.take() else {
            return;
        };
        let flow = entry.flow.as_ref().map(|f| f.controller.clone());
        let Some(r) = self.rooms.get_mut(&room) else {
            return;
        };
        r.count = r.count.saturating_sub(1);
        let conference = r.controller.clone();
        let members = r.members.clone();
        let stop = if r.count == 0 {
            self.rooms.remove(&room).map(|r| r.stop)
        } else {
            None
        };
        debug!(%call, %room, participant = id, "call leaves room");
        self.job(async move {
            let (rtp_id, rtcp_id) = member_sockets(id);
            // The sockets first: what arrives meanwhile waits in them for the flow.
            let rtp = conference.take_socket(rtp_id).await.ok().flatten();
            let rtcp = conference.take_socket(rtcp_id).await.ok().flatten();
            let back = conference
                .query(move |conference, now| {
                    let mut flow = conference.leave(id)?;
                    flow.suspend(now);
                    Some(flow)
                })
                .await
                .ok()
                .flatten();
            if let Ok(mut members) = members.lock() {
                members.remove(&id);
            }
            if let Some(stop) = stop {
                let _ = stop.send(());
            }
            let (Some(flow), Some(mut back)) = (flow, back) else {
                return;
            };
            back.set_sockets(RTP, RTCP);
            let _ = flow.command(move |flow, now| {
                *flow = back;
                flow.resume(now, None);
            });
            for (socket_id, socket) in [(RTP, rtp), (RTCP, rtcp)] {
                if let Some(socket) = socket
                    && flow.add_socket(socket_id, socket).is_err()
                {
                    debug!(%call, "flow gone: socket closed");
                }
            }
        });
    }

    /// `MediaInstruction::Mute`: kept for the call, and applied in its room now (after
    /// the moves before it).
    pub(super) fn mute(&mut self, call: CallHandle, muted: bool) {
        let entry = self.calls.entry(call).or_default();
        entry.muted = muted;
        let Some(RoomLink::In { room, id }) = entry.room else {
            return;
        };
        let Some(conference) = self.rooms.get(&room).map(|r| r.controller.clone()) else {
            return;
        };
        debug!(%call, %room, participant = id, muted, "room mute");
        self.job(async move {
            let _ = conference.command(move |conference, _| {
                conference.set_muted(id, muted);
            });
        });
    }

    /// `MediaInstruction::PlayRoom`: the room's announcement, after the joins before it.
    pub(super) fn play_room(&mut self, room: RoomId, file: Option<&str>, looped: bool) {
        let samples = file.and_then(|path| self.music_file(path));
        let conference = self.room(room).controller.clone();
        self.job(async move {
            let _ = conference.command(move |conference, _| match samples {
                Some(samples) => conference.play(Player::new(samples, looped)),
                None => conference.play_tone(hold_tone(looped)),
            });
        });
    }

    /// Runs `command` on the call's running flow, wherever it is: in its room, or in its
    /// own task (through the job queue once the call has been in a room, so the command
    /// follows the moves given before it).
    pub(super) fn run_on_flow(
        &mut self,
        call: CallHandle,
        command: FlowCommand,
    ) -> Result<(), super::FlowError> {
        let entry = self.calls.get(&call).ok_or(super::FlowError::NoFlow)?;
        let own = entry
            .flow
            .as_ref()
            .map(|f| f.controller.clone())
            .ok_or(super::FlowError::NoFlow)?;
        match entry.room {
            Some(RoomLink::In { room, id }) => {
                let conference = self
                    .rooms
                    .get(&room)
                    .map(|r| r.controller.clone())
                    .ok_or(super::FlowError::NoFlow)?;
                self.job(async move {
                    let _ = conference.command(move |conference, now| {
                        if let Some(flow) = conference.participant(id) {
                            command(flow, now);
                        }
                    });
                });
                Ok(())
            }
            _ if entry.roomed => {
                self.job(async move {
                    let _ = own.command(move |flow, now| command(flow, now));
                });
                Ok(())
            }
            _ => own
                .command(move |flow, now| command(flow, now))
                .map_err(|_| super::FlowError::NoFlow),
        }
    }
}

/// The room's task: its members' reports, as their calls'.
async fn room_task(
    mut handle: MediaHandle<Conference>,
    room: RoomId,
    members: Arc<Mutex<HashMap<ParticipantId, CallHandle>>>,
    events: mpsc::UnboundedSender<(CallHandle, FlowEvent)>,
    mut stopped: oneshot::Receiver<()>,
) {
    loop {
        let (id, event) = tokio::select! {
            event = handle.next_event() => match event {
                Some(event) => event,
                None => break,
            },
            _ = &mut stopped => break,
        };
        if id == ANNOUNCER {
            debug!(%room, ?event, "room announcement");
            continue;
        }
        let call = members.lock().ok().and_then(|m| m.get(&id).copied());
        if let Some(call) = call
            && events.send((call, event)).is_err()
        {
            break;
        }
    }
    if let Some(conference) = handle.stop().await {
        debug!(%room, left = conference.len(), "room ended");
    }
}
