//! An N-party audio conference: each participant's flow, and a mixer that sends each one
//! the sum of the others (not itself) every 20 ms. One machine, one packet clock: every
//! participant's packet of an interval is mixed from the same instant.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use rtp_session::{Datagram, MediaMachine, SocketId};

use crate::flow::{AudioFlow, FlowEvent};
use crate::level::SAMPLE_RATE;
use crate::mixer::Mixer;
use crate::tone::{ToneGenerator, ToneSpec};
use crate::wav::Player;

/// The conference's packet interval.
pub const FRAME: Duration = Duration::from_millis(20);
const FRAME_LEN: usize = SAMPLE_RATE as usize / 50;
/// Frames mixed at once when the conference is behind its clock; the rest are skipped.
const MAX_CATCH_UP: u32 = 5;

/// A participant's identifier in the conference.
pub type ParticipantId = u32;

/// Not a participant: the conference's own announcement ([`Conference::play`]) reports
/// its [`FlowEvent::PlayCompleted`] under this id. No participant may use it.
pub const ANNOUNCER: ParticipantId = ParticipantId::MAX;

/// What the conference plays to everyone.
#[derive(Debug)]
enum Announcement {
    Player(Player),
    Tone(ToneGenerator),
}

/// The conference: a [`MediaMachine`] over every participant's sockets.
#[derive(Debug)]
pub struct Conference {
    mixer: Mixer,
    participants: BTreeMap<ParticipantId, AudioFlow>,
    by_socket: HashMap<SocketId, ParticipantId>,
    /// Participants whose audio is not mixed (they still hear the others).
    muted: HashSet<ParticipantId>,
    next_tick: Option<Instant>,
    received: Vec<i16>,
    events: VecDeque<(ParticipantId, FlowEvent)>,
    announcement: Option<Announcement>,
    /// This frame of the announcement.
    announced: Vec<i16>,
    /// A participant's frame with the announcement.
    scratch: Vec<i16>,
}

impl Default for Conference {
    fn default() -> Self {
        Conference::new()
    }
}

impl Conference {
    pub fn new() -> Conference {
        Conference {
            mixer: Mixer::new(FRAME_LEN),
            participants: BTreeMap::new(),
            by_socket: HashMap::new(),
            muted: HashSet::new(),
            next_tick: None,
            received: Vec::with_capacity(FRAME_LEN * 2),
            events: VecDeque::new(),
            announcement: None,
            announced: vec![0; FRAME_LEN],
            scratch: vec![0; FRAME_LEN],
        }
    }

    /// Plays samples to every participant, over what they hear of each other (a
    /// room-wide announcement), instead of what the conference played before;
    /// [`FlowEvent::PlayCompleted`] under [`ANNOUNCER`] at its end unless it loops. It
    /// advances with the conference's clock: not while the conference is empty.
    pub fn play(&mut self, player: Player) {
        self.announcement = Some(Announcement::Player(player));
    }

    /// Plays a tone to every participant, as [`Conference::play`] does.
    pub fn play_tone(&mut self, spec: ToneSpec) {
        self.announcement = Some(Announcement::Tone(ToneGenerator::new(spec)));
    }

    /// Stops the announcement (no `PlayCompleted`).
    pub fn stop_playing(&mut self) {
        self.announcement = None;
    }

    /// Whether an announcement plays.
    pub fn is_playing(&self) -> bool {
        self.announcement.is_some()
    }

    /// The participants' ids, in order.
    pub fn participant_ids(&self) -> Vec<ParticipantId> {
        self.participants.keys().copied().collect()
    }

    /// The announcement's next frame into `announced`; whether one plays.
    fn announce(&mut self) -> bool {
        let Some(announcement) = self.announcement.as_mut() else {
            return false;
        };
        self.announced.fill(0);
        let finished = match announcement {
            Announcement::Player(player) => {
                player.fill(&mut self.announced);
                player.finished()
            }
            Announcement::Tone(tone) => {
                tone.fill(&mut self.announced);
                tone.finished()
            }
        };
        if finished {
            self.announcement = None;
            self.events.push_back((ANNOUNCER, FlowEvent::PlayCompleted));
        }
        true
    }

    /// `flow` joins (its sockets must be given to the driver under the flow's
    /// `SocketId`s): it hears the others from the next frame.
    pub fn join(&mut self, now: Instant, id: ParticipantId, mut flow: AudioFlow) {
        flow.set_external_clock(true);
        self.by_socket.insert(flow.config().rtp, id);
        self.by_socket.insert(flow.config().rtcp, id);
        self.mixer.join(id);
        self.participants.insert(id, flow);
        if self.next_tick.is_none() {
            self.next_tick = Some(now);
        }
    }

    /// `id` leaves: its flow is handed back (closed by the caller or moved elsewhere);
    /// the others hear it fade out, with no gap.
    pub fn leave(&mut self, id: ParticipantId) -> Option<AudioFlow> {
        let mut flow = self.participants.remove(&id)?;
        self.by_socket.retain(|_, p| *p != id);
        self.muted.remove(&id);
        self.mixer.leave(id);
        flow.set_external_clock(false);
        if self.participants.is_empty() {
            self.next_tick = None;
        }
        Some(flow)
    }

    /// Mutes or unmutes `id`: a muted participant still hears the others (and its own
    /// player), but what it sends is not mixed for them (what it said before fades out
    /// with the frame in progress). Its DTMF, statistics and timeouts are reported as
    /// before. Whether `id` is a participant; a participant that leaves is unmuted.
    pub fn set_muted(&mut self, id: ParticipantId, muted: bool) -> bool {
        if !self.participants.contains_key(&id) {
            return false;
        }
        if muted {
            self.muted.insert(id);
        } else {
            self.muted.remove(&id);
        }
        true
    }

    /// Whether `id` is muted.
    pub fn is_muted(&self, id: ParticipantId) -> bool {
        self.muted.contains(&id)
    }

    pub fn participant(&mut self, id: ParticipantId) -> Option<&mut AudioFlow> {
        self.participants.get_mut(&id)
    }

    pub fn len(&self) -> usize {
        self.participants.len()
    }

    pub fn is_empty(&self) -> bool {
        self.participants.is_empty()
    }

    fn mix(&mut self, now: Instant) {
        let announcing = self.announce();
        let Conference {
            mixer,
            participants,
            announced,
            scratch,
            ..
        } = self;
        mixer.mix(|id, frame| {
            let Some(flow) = participants.get_mut(&id) else {
                return;
            };
            if announcing {
                scratch.clear();
                scratch.extend(
                    frame
                        .iter()
                        .zip(announced.iter())
                        .map(|(&a, &b)| a.saturating_add(b)),
                );
                flow.send_frame(now, scratch);
            } else {
                flow.send_frame(now, frame);
            }
        });
    }
}

impl MediaMachine for Conference {
    type Event = (ParticipantId, FlowEvent);

    fn handle_datagram(&mut self, now: Instant, socket: SocketId, from: SocketAddr, data: &[u8]) {
        let Some(&id) = self.by_socket.get(&socket) else {
            return;
        };
        let Some(flow) = self.participants.get_mut(&id) else {
            return;
        };
        flow.handle_datagram(now, socket, from, data);
        self.received.clear();
        flow.take_received(&mut self.received);
        if !self.received.is_empty() && !self.muted.contains(&id) {
            self.mixer.push(id, &self.received);
        }
    }

    fn handle_timeout(&mut self, now: Instant) {
        if let Some(mut at) = self.next_tick {
            let mut frames = 0;
            let mut skipped: u32 = 0;
            while at <= now {
                if frames < MAX_CATCH_UP {
                    self.mix(now);
                } else {
                    skipped = skipped.saturating_add(1);
                }
                frames += 1;
                at += FRAME;
            }
            if skipped > 0 {
                // Stalled: the frames beyond the catch-up are not sent, but their media
                // time passes (RFC 3550 §5.1), as on a flow's own clock.
                let samples = u32::try_from(FRAME_LEN)
                    .unwrap_or(u32::MAX)
                    .saturating_mul(skipped);
                for flow in self.participants.values_mut() {
                    flow.skip_frame(samples);
                }
            }
            self.next_tick = Some(at);
        }
        for flow in self.participants.values_mut() {
            if flow.poll_timeout().is_some_and(|t| t <= now) {
                flow.handle_timeout(now);
            }
        }
    }

    fn poll_transmit(&mut self) -> Option<Datagram> {
        self.participants
            .values_mut()
            .find_map(|flow| flow.poll_transmit())
    }

    fn poll_timeout(&self) -> Option<Instant> {
        self.participants
            .values()
            .filter_map(|f| f.poll_timeout())
            .chain(self.next_tick)
            .min()
    }

    fn poll_event(&mut self) -> Option<(ParticipantId, FlowEvent)> {
        if let Some(event) = self.events.pop_front() {
            return Some(event);
        }
        self.participants
            .iter_mut()
            .find_map(|(id, flow)| flow.poll_event().map(|e| (*id, e)))
    }
}
