//! The driver's media plane: RTP/RTCP sockets bound as the engine reserves ports (so a
//! port written into SDP is always one we hold), and one task per flow driving the
//! sans-IO [`AudioFlow`] over them. What a flow reports goes back to the engine as a
//! [`MediaIndication`].
//!
//! # Joined calls (a media-anchored bridge)
//!
//! [`MediaInstruction::Join`] relays two calls' RTP to each other through an
//! [`rtp_session::Relay`] (RFC 7092 §3.1.3: the B2BUA anchors the media; each leg
//! negotiated its own SDP with us):
//!
//! - The relay runs in a task of its own, over the two calls' own sockets: each call's
//!   flow is *suspended* ([`AudioFlow::suspend`]: no packets, no timers) and its task hands
//!   its RTP and RTCP sockets over ([`MediaController::take_socket`]), so each phone keeps
//!   sending to the port in its SDP. The flows' tasks stay, idle: the application's flow
//!   commands (a player, DTMF, statistics) still reach the suspended flow, and what they
//!   start is heard once the call is unjoined. What was playing when the join came is
//!   stopped (the bridge replaces it).
//! - Each phone sees one RTP stream throughout: the relay carries on the flow's SSRC,
//!   sequence numbers and timestamps toward each leg ([`Relay::continue_stream`]), and
//!   the flow carries on the relay's when it resumes ([`AudioFlow::resume`]).
//! - Payload types are mapped between the legs (the audio codec's and RFC 4733
//!   `telephone-event`'s); legs that settled on different G.711 laws (PCMU on one, PCMA
//!   on the other) are **transcoded** octet by octet in the relay
//!   ([`G711::translation_to`]): both run at 8 kHz with one octet per sample, so this costs
//!   a table lookup per octet and adds no delay. A payload type a leg did not negotiate
//!   (comfort noise, say) is not sent to it. Only G.711 calls start at all, so no other
//!   codec pair can meet here.
//! - Each leg's remote address, direction and media timeout come from its
//!   [`StreamSettings`]; symmetric RTP latching is the relay's. A later
//!   [`MediaInstruction::Start`] of a joined call re-targets its side of the relay (a
//!   re-INVITE: a new address, hold, another payload type).
//! - The relay's reports come back as the call's: the first RTP on a leg (or RTP again
//!   after a timeout) as [`MediaIndication::Receiving`], a silent leg as
//!   [`MediaIndication::Timeout`].
//! - [`MediaInstruction::Unjoin`] hands the sockets back and resumes each call's flow, in
//!   silence unless something was commanded since the join. [`MediaInstruction::Close`] of a joined call
//!   unjoins first: the other call falls back to its own flow.
//! - A `Join` for a call that has not started yet is remembered: the two are joined when
//!   both have started. A `Join` of a call joined elsewhere ends that join first.
//!
//! Every hand-over of sockets (and every flow's end) is a job run by one task, in the
//! order the engine's instructions came: a quick unjoin after a join, or a close right
//! after an unjoin, finds the sockets where the previous step left them.
//!
//! # Conference rooms
//!
//! [`MediaInstruction::JoinRoom`] moves a call's flow and sockets into its room's task,
//! a [`media::Conference`] that sends each member the sum of the others in its own
//! codec; [`MediaInstruction::LeaveRoom`], the call's `Close` or a `Join` give them back.
//! A `Play` or any flow command to a member runs on its flow in the room: that member
//! alone hears it, over the room. [`MediaInstruction::PlayRoom`] plays to every member.
//! See the `rooms` module.
//!
//! # Music on hold
//!
//! [`MediaInstruction::Play`] (a parked call) plays a WAV file on the call's flow, or
//! [`hold_tone`] when it names none or the file cannot be read. Files are read once
//! (on the driver's thread, the first time they are asked for) and kept: every parked
//! call shares the samples. Given before the flow starts, it plays from the start; given
//! to a flow a relay suspended (an `Unjoin` just before), it plays from the resume.

use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use calls::{
    CallHandle, Engine, MediaIndication, MediaInstruction, PortSource, RoomId, StreamSettings,
};
use media::flow::{AudioFlow, FlowConfig, FlowEvent, FlowIdentity, rtcp_of};
use media::g711::G711;
use media::{Player, ToneSpec};
use media_transport::{MediaController, MediaHandle, PortPool, PortRange, SocketPair};
use rtp_session::{Leg, PayloadMap, Relay, RelayConfig, RelayEvent, RelayLeg, SocketId};
use tokio::sync::{mpsc, oneshot};
use tracing::{debug, warn};

mod rooms;

const RTP: SocketId = SocketId(0);
const RTCP: SocketId = SocketId(1);

/// The relay's sockets: leg A's RTP and RTCP, then leg B's.
fn relay_sockets(leg: Leg) -> (SocketId, SocketId) {
    match leg {
        Leg::A => (SocketId(0), SocketId(1)),
        Leg::B => (SocketId(2), SocketId(3)),
    }
}

/// What the flows (and the relays, for the calls they join) report, by call.
pub type FlowEvents = mpsc::UnboundedReceiver<(CallHandle, FlowEvent)>;

/// A command for a call's flow, run inside its task.
pub type FlowCommand = Box<dyn FnOnce(&mut AudioFlow, Instant) + Send>;

/// A hand-over of sockets, or a flow's end, run after the ones given before it.
type Job = Pin<Box<dyn Future<Output = ()> + Send>>;

/// The engine's port source: binds the pair as it reserves the port, and keeps the
/// sockets until the flow starts.
#[derive(Debug)]
pub struct BoundPorts {
    pool: Arc<PortPool>,
    range: (u16, u16),
    bound: Arc<Mutex<HashMap<u16, SocketPair>>>,
}

impl PortSource for BoundPorts {
    fn reserve(&mut self) -> Option<u16> {
        match self.pool.bind_pair() {
            Ok(pair) => {
                let port = pair.rtp_port();
                if let Ok(mut bound) = self.bound.lock() {
                    bound.insert(port, pair);
                }
                Some(port)
            }
            Err(error) => {
                warn!(%error, "no RTP port");
                None
            }
        }
    }

    fn release(&mut self, port: u16) {
        if let Ok(mut bound) = self.bound.lock() {
            bound.remove(&port);
        }
    }

    fn range(&self) -> (u16, u16) {
        self.range
    }
}

/// A call's running flow.
#[derive(Debug)]
struct Flow {
    controller: MediaController<AudioFlow>,
    /// Ends the flow's task (an RTCP BYE first).
    close: oneshot::Sender<()>,
}

/// A call's place in a join.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Link {
    /// Joined to `peer` once both have started.
    Wanted(CallHandle),
    /// Joined to `peer` as the relay's leg `leg`; the relay is filed under its leg A.
    Joined { peer: CallHandle, leg: Leg },
}

#[derive(Debug, Default)]
struct CallMedia {
    flow: Option<Flow>,
    /// Commands given before the flow started (the application attaches a player when
    /// the flow is requested, before media is negotiated).
    pending: Vec<FlowCommandDebug>,
    /// The latest negotiation.
    settings: Option<StreamSettings>,
    link: Option<Link>,
    /// The call's conference room.
    room: Option<rooms::RoomLink>,
    /// The call's flow has been in a room: its commands go through the job queue.
    roomed: bool,
    /// Muted in rooms (`MediaInstruction::Mute`): applied in every room it joins.
    muted: bool,
}

/// A relay joining two calls, filed under its leg A.
#[derive(Debug)]
struct Joined {
    /// Leg A's call and leg B's.
    calls: (CallHandle, CallHandle),
    controller: MediaController<Relay>,
    /// Ends the relay's task.
    stop: oneshot::Sender<()>,
}

struct FlowCommandDebug(FlowCommand);

impl std::fmt::Debug for FlowCommandDebug {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FlowCommand")
    }
}

/// The media plane of the driver. Public for the crate's tests only (not a stable API).
#[derive(Debug)]
pub struct MediaPlane {
    bound: Arc<Mutex<HashMap<u16, SocketPair>>>,
    calls: HashMap<CallHandle, CallMedia>,
    relays: HashMap<CallHandle, Joined>,
    rooms: HashMap<RoomId, rooms::Room>,
    events: mpsc::UnboundedSender<(CallHandle, FlowEvent)>,
    jobs: mpsc::UnboundedSender<Job>,
    cname: String,
    seed: u64,
    /// Music files read so far (`None`: unreadable, the tone plays instead).
    music: HashMap<String, Option<Arc<[i16]>>>,
}

/// Why a flow command could not be given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FlowError {
    /// The call has no media flow (an IM call, or it has ended).
    NoFlow,
    /// Media has not started yet.
    NotStarted,
}

impl MediaPlane {
    /// The plane and the engine's port source, binding on `ip` within `range`. Must be
    /// called inside a tokio runtime (the plane's hand-overs run in a task).
    pub fn new(
        ip: IpAddr,
        range: (u16, u16),
        seed: u64,
    ) -> Result<(MediaPlane, BoundPorts, FlowEvents), media_transport::TransportError> {
        let pool = Arc::new(PortPool::new(
            ip,
            PortRange {
                first: range.0,
                last: range.1,
            },
        )?);
        let runtime = tokio::runtime::Handle::try_current()
            .map_err(|_| media_transport::TransportError::NoRuntime)?;
        let (jobs, mut queue) = mpsc::unbounded_channel::<Job>();
        runtime.spawn(async move {
            while let Some(job) = queue.recv().await {
                job.await;
            }
        });
        let bound = Arc::new(Mutex::new(HashMap::new()));
        let (events, rx) = mpsc::unbounded_channel();
        let plane = MediaPlane {
            bound: bound.clone(),
            calls: HashMap::new(),
            relays: HashMap::new(),
            rooms: HashMap::new(),
            events,
            jobs,
            cname: format!("tandem-{:x}@{ip}", seed & 0xffff_ffff),
            seed,
            music: HashMap::new(),
        };
        Ok((plane, BoundPorts { pool, range, bound }, rx))
    }

    /// An instruction of the engine.
    pub fn instruct(
        &mut self,
        engine: &mut Engine,
        now: Instant,
        call: CallHandle,
        instruction: MediaInstruction,
    ) {
        match instruction {
            MediaInstruction::Open { .. } => {
                self.calls.entry(call).or_default();
            }
            MediaInstruction::Start(settings) => self.start(engine, now, call, settings),
            MediaInstruction::Close { port } => self.close(call, port),
            MediaInstruction::Join { peer } => self.join(now, call, peer),
            MediaInstruction::Unjoin { peer } => self.unjoin(call, peer),
            MediaInstruction::Play { file, looped } => self.play(call, file.as_deref(), looped),
            MediaInstruction::JoinRoom { room } => self.join_room(call, room),
            MediaInstruction::LeaveRoom { room } if self.room_of(call) == Some(room) => {
                self.leave_room(call);
            }
            MediaInstruction::PlayRoom { room, file, looped } => {
                self.play_room(room, file.as_deref(), looped);
            }
            MediaInstruction::Mute { muted } => self.mute(call, muted),
            _ => {}
        }
    }

    /// Music on hold for `call`: the file's samples, or the tone.
    fn play(&mut self, call: CallHandle, file: Option<&str>, looped: bool) {
        let samples = file.and_then(|path| self.music_file(path));
        let command: FlowCommand = match samples {
            Some(samples) => Box::new(move |flow, _| flow.play(Player::new(samples, looped))),
            None => {
                let tone = hold_tone(looped);
                Box::new(move |flow, _| flow.play_tone(tone))
            }
        };
        if let Err(error) = self.command(call, true, true, command) {
            debug!(%call, ?error, "music on hold not played");
        }
    }

    /// The samples of a music file, read the first time.
    fn music_file(&mut self, path: &str) -> Option<Arc<[i16]>> {
        self.music
            .entry(path.to_owned())
            .or_insert_with(|| match media::load_wav_file(std::path::Path::new(path)) {
                Ok(samples) if !samples.is_empty() => Some(Arc::from(samples)),
                Ok(_) => {
                    warn!(%path, "music file is empty: the hold tone plays instead");
                    None
                }
                Err(error) => {
                    warn!(%path, %error, "music file unreadable: the hold tone plays instead");
                    None
                }
            })
            .clone()
    }

    fn job(&self, job: impl Future<Output = ()> + Send + 'static) {
        // The queue's task lives as long as the runtime: a send fails only at shutdown.
        let _ = self.jobs.send(Box::pin(job));
    }

    fn next_seed(&mut self) -> u64 {
        self.seed = self.seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
        self.seed
    }

    fn start(&mut self, engine: &mut Engine, now: Instant, call: CallHandle, s: StreamSettings) {
        let Some(config) = flow_config(&s) else {
            engine.handle_media(
                now,
                call,
                MediaIndication::Failed {
                    reason: format!("codec {} is not G.711", s.codec),
                },
            );
            return;
        };
        let entry = self.calls.entry(call).or_default();
        if entry.flow.is_some() {
            let previous = entry.settings.replace(s.clone());
            // Wherever the flow is (its own task, a room), its sockets keep their ids.
            let _ = self.run_on_flow(
                call,
                Box::new(move |flow, now| {
                    let (rtp, rtcp) = (flow.config().rtp, flow.config().rtcp);
                    flow.reconfigure(
                        now,
                        FlowConfig {
                            rtp,
                            rtcp,
                            ..config
                        },
                    );
                }),
            );
            let Some(entry) = self.calls.get(&call) else {
                return;
            };
            let link = entry.link;
            if let Some(Link::Joined { peer, leg }) = link {
                self.retarget(call, peer, leg, previous.as_ref(), &s);
            }
            return;
        }
        let pair = self
            .bound
            .lock()
            .ok()
            .and_then(|mut bound| bound.remove(&s.local_port));
        let Some(pair) = pair else {
            engine.handle_media(
                now,
                call,
                MediaIndication::Failed {
                    reason: format!("RTP port {} is not bound", s.local_port),
                },
            );
            return;
        };
        let identity = FlowIdentity {
            cname: self.cname.clone(),
            seed: self.next_seed(),
            since_unix_epoch: since_unix_epoch(),
        };
        let Some(entry) = self.calls.get_mut(&call) else {
            return;
        };
        let mut flow = AudioFlow::new(now, config, identity);
        flow.set_echo(s.echo);
        for FlowCommandDebug(command) in entry.pending.drain(..) {
            command(&mut flow, now);
        }
        let mut handle = media_transport::spawn(flow, vec![(RTP, pair.rtp), (RTCP, pair.rtcp)]);
        let controller = handle.controller();
        let (close, mut closed) = oneshot::channel::<()>();
        entry.flow = Some(Flow { controller, close });
        entry.settings = Some(s);
        let events = self.events.clone();
        // In the span it is started in (the call's `call_id`), as the media task is.
        let span = tracing::Span::current();
        tokio::spawn(tracing::Instrument::instrument(
            async move {
                loop {
                    tokio::select! {
                        event = handle.next_event() => match event {
                            Some(event) => {
                                if events.send((call, event)).is_err() {
                                    break;
                                }
                            }
                            None => break,
                        },
                        _ = &mut closed => {
                            // The RTCP BYE goes out before the task stops (same queue).
                            let _ = handle.command(|flow, now| flow.close(now));
                            break;
                        }
                    }
                }
                if let Some(mut flow) = handle.stop().await {
                    let _ = flow.stop_recording();
                    debug!(%call, stats = ?flow.stats(), "media flow ended");
                }
            },
            span,
        ));
        // A join asked before this call started.
        if let Some(Link::Wanted(peer)) = entry.link
            && self.started(peer)
        {
            self.join_now(now, call, peer);
        }
        // A room joined before this call started.
        if let Some(rooms::RoomLink::Wanted(room)) = self.calls.get(&call).and_then(|e| e.room) {
            self.join_room_now(call, room);
        }
    }

    fn started(&self, call: CallHandle) -> bool {
        self.calls.get(&call).is_some_and(|e| e.flow.is_some())
    }

    fn link(&self, call: CallHandle) -> Option<Link> {
        self.calls.get(&call).and_then(|e| e.link)
    }

    fn set_link(&mut self, call: CallHandle, link: Option<Link>) {
        self.calls.entry(call).or_default().link = link;
    }

    fn join(&mut self, now: Instant, call: CallHandle, peer: CallHandle) {
        if call == peer {
            warn!(%call, "a call cannot be joined to itself");
            return;
        }
        if matches!(self.link(call), Some(Link::Joined { peer: p, .. }) if p == peer) {
            return;
        }
        // A relay replaces a room.
        self.leave_room(call);
        self.leave_room(peer);
        self.unlink(call);
        self.unlink(peer);
        if self.started(call) && self.started(peer) {
            self.join_now(now, call, peer);
        } else {
            debug!(%call, %peer, "join waits for both streams to start");
            self.set_link(call, Some(Link::Wanted(peer)));
            self.set_link(peer, Some(Link::Wanted(call)));
        }
    }

    /// Ends whatever join `call` is in (or waits for).
    fn unlink(&mut self, call: CallHandle) {
        match self.link(call) {
            Some(Link::Wanted(peer)) => {
                self.set_link(call, None);
                if self.link(peer) == Some(Link::Wanted(call)) {
                    self.set_link(peer, None);
                }
            }
            Some(Link::Joined { peer, leg }) => {
                let key = if leg == Leg::A { call } else { peer };
                self.end_relay(key);
            }
            None => {}
        }
    }

    fn unjoin(&mut self, call: CallHandle, peer: CallHandle) {
        match self.link(call) {
            Some(Link::Wanted(p) | Link::Joined { peer: p, .. }) if p == peer => {
                self.unlink(call);
            }
            other => debug!(%call, %peer, link = ?other, "unjoin of calls not joined"),
        }
    }

    /// Both calls have started: the relay takes their sockets over.
    fn join_now(&mut self, now: Instant, a: CallHandle, b: CallHandle) {
        let parts = |call: CallHandle| {
            let entry = self.calls.get(&call)?;
            Some((
                entry.flow.as_ref()?.controller.clone(),
                entry.settings.clone()?,
            ))
        };
        let (Some((flow_a, settings_a)), Some((flow_b, settings_b))) = (parts(a), parts(b)) else {
            return;
        };
        let config = RelayConfig {
            media_timeout: None,
            seed: self.next_seed(),
            cname: self.cname.clone(),
            since_unix_epoch: since_unix_epoch(),
        };
        let mut relay = Relay::new(
            now,
            relay_leg(Leg::A, &settings_a),
            relay_leg(Leg::B, &settings_b),
            config,
        );
        let setup = Setup::of(&settings_a, &settings_b);
        setup.apply(&mut relay);
        for (leg, s) in [(Leg::A, &settings_a), (Leg::B, &settings_b)] {
            relay.set_media_timeout(leg, media_timeout(s), now);
        }
        // Silence once unjoined, unless told otherwise from now on: stopped here, in
        // order with the application's commands (the suspension waits for the job).
        for call in [a, b] {
            let _ = self.run_on_flow(call, Box::new(|flow, _| flow.stop_playing()));
        }
        let handle = media_transport::spawn(relay, Vec::new());
        let controller = handle.controller();
        let (stop, stopped) = oneshot::channel();
        tokio::spawn(relay_task(handle, (a, b), self.events.clone(), stopped));
        self.relays.insert(
            a,
            Joined {
                calls: (a, b),
                controller: controller.clone(),
                stop,
            },
        );
        self.set_link(
            a,
            Some(Link::Joined {
                peer: b,
                leg: Leg::A,
            }),
        );
        self.set_link(
            b,
            Some(Link::Joined {
                peer: a,
                leg: Leg::B,
            }),
        );
        debug!(%a, %b, "calls joined");
        self.job(async move {
            for (leg, flow) in [(Leg::A, flow_a), (Leg::B, flow_b)] {
                let position = flow.query(|flow, now| flow.suspend(now)).await;
                if let Ok(position) = position {
                    let _ =
                        controller.command(move |relay, _| relay.continue_stream(leg, position));
                }
                let (rtp, rtcp) = relay_sockets(leg);
                hand_over(&flow, RTP, &controller, rtp).await;
                hand_over(&flow, RTCP, &controller, rtcp).await;
            }
        });
    }

    /// A joined call negotiated again: its side of the relay follows.
    fn retarget(
        &mut self,
        call: CallHandle,
        peer: CallHandle,
        leg: Leg,
        previous: Option<&StreamSettings>,
        s: &StreamSettings,
    ) {
        let key = if leg == Leg::A { call } else { peer };
        let Some(joined) = self.relays.get(&key) else {
            return;
        };
        let Some(other) = self.calls.get(&peer).and_then(|e| e.settings.clone()) else {
            return;
        };
        let setup = match leg {
            Leg::A => Setup::of(s, &other),
            Leg::B => Setup::of(&other, s),
        };
        let moved = previous.is_none_or(|p| p.remote != s.remote);
        let remote = s.remote;
        let clock_rate = s.clock_rate;
        let timeout = media_timeout(s);
        let _ = joined.controller.command(move |relay, now| {
            if moved {
                relay.set_remote(leg, remote, remote.map(rtcp_of));
            }
            relay.set_clock_rate(leg, clock_rate);
            relay.set_media_timeout(leg, timeout, now);
            setup.apply(relay);
        });
    }

    /// The relay filed under `key` ends: the sockets go back to the calls' flows, which
    /// carry the streams on.
    fn end_relay(&mut self, key: CallHandle) {
        let Some(Joined {
            calls: (a, b),
            controller,
            stop,
        }) = self.relays.remove(&key)
        else {
            return;
        };
        self.set_link(a, None);
        self.set_link(b, None);
        debug!(%a, %b, "calls unjoined");
        let flow = |call: CallHandle| {
            self.calls
                .get(&call)
                .and_then(|e| e.flow.as_ref())
                .map(|f| f.controller.clone())
        };
        let flows = [(Leg::A, flow(a)), (Leg::B, flow(b))];
        self.job(async move {
            let positions = controller
                .query(|relay, now| (relay.position(Leg::A, now), relay.position(Leg::B, now)))
                .await
                .ok();
            for (leg, flow) in flows {
                let (rtp, rtcp) = relay_sockets(leg);
                let Some(flow) = flow else {
                    continue;
                };
                hand_over(&controller, rtp, &flow, RTP).await;
                hand_over(&controller, rtcp, &flow, RTCP).await;
                let position = positions.map(|(a, b)| if leg == Leg::A { a } else { b });
                let _ = flow.command(move |flow, now| flow.resume(now, position));
            }
            // No BYE: the streams go on, in the flows.
            let _ = stop.send(());
        });
    }

    fn close(&mut self, call: CallHandle, port: u16) {
        self.unlink(call);
        // Out of its room first: the BYE goes from the flow's own task.
        self.leave_room(call);
        if let Some(flow) = self.calls.remove(&call).and_then(|e| e.flow) {
            // After the hand-over back from a relay, if any: the BYE needs the socket.
            self.job(async move {
                let _ = flow.close.send(());
            });
        }
        if let Ok(mut bound) = self.bound.lock() {
            bound.remove(&port);
        }
    }

    /// Runs `command` on the call's flow now, or as soon as it starts.
    /// `alive`: the call exists (an AV call's flow may be commanded before its media
    /// is negotiated); `queue`: a command for a flow not started yet waits for it
    /// (otherwise [`FlowError::NotStarted`]). A joined call's flow is suspended: what
    /// the command starts is heard once the call is unjoined.
    pub fn command(
        &mut self,
        call: CallHandle,
        alive: bool,
        queue: bool,
        command: FlowCommand,
    ) -> Result<(), FlowError> {
        if !queue && self.calls.get(&call).is_none_or(|e| e.flow.is_none()) {
            return Err(if alive {
                FlowError::NotStarted
            } else {
                FlowError::NoFlow
            });
        }
        if alive && !self.calls.contains_key(&call) {
            self.calls.insert(call, CallMedia::default());
        }
        let entry = self.calls.get_mut(&call).ok_or(FlowError::NoFlow)?;
        match &entry.flow {
            Some(_) => self.run_on_flow(call, command),
            None => {
                entry.pending.push(FlowCommandDebug(command));
                Ok(())
            }
        }
    }

    /// The call is over: whatever was queued for a flow that never started goes (and a
    /// join it waited for).
    pub fn forget(&mut self, call: CallHandle) {
        if self.calls.get(&call).is_some_and(|e| e.flow.is_none()) {
            self.unlink(call);
            self.calls.remove(&call);
        }
    }
}

/// Moves a socket from one media task to another (after the commands given to the first
/// before). A socket the first no longer holds is not moved; one the second cannot take
/// (its task ended) is closed.
async fn hand_over<M, N>(
    from: &MediaController<M>,
    from_id: SocketId,
    to: &MediaController<N>,
    to_id: SocketId,
) where
    M: rtp_session::MediaMachine + Send + 'static,
    N: rtp_session::MediaMachine + Send + 'static,
{
    match from.take_socket(from_id).await {
        Ok(Some(socket)) => {
            if to.add_socket(to_id, socket).is_err() {
                debug!(socket = to_id.0, "media task gone: socket closed");
            }
        }
        Ok(None) => debug!(socket = from_id.0, "no socket to hand over"),
        Err(error) => debug!(socket = from_id.0, %error, "no socket to hand over"),
    }
}

/// The relay's task: its reports, as the joined calls' flows would report them.
async fn relay_task(
    mut handle: MediaHandle<Relay>,
    (a, b): (CallHandle, CallHandle),
    events: mpsc::UnboundedSender<(CallHandle, FlowEvent)>,
    mut stopped: oneshot::Receiver<()>,
) {
    let call_of = |leg: Leg| if leg == Leg::A { a } else { b };
    let mut sources: HashMap<Leg, SocketAddr> = HashMap::new();
    loop {
        let event = tokio::select! {
            event = handle.next_event() => match event {
                Some(event) => event,
                None => break,
            },
            _ = &mut stopped => break,
        };
        let report = match event {
            RelayEvent::FirstPacket { leg, from } => {
                sources.insert(leg, from);
                Some((leg, FlowEvent::Receiving { from }))
            }
            RelayEvent::Latched { leg, addr } => {
                sources.insert(leg, addr);
                None
            }
            RelayEvent::MediaResumed { leg } => sources
                .get(&leg)
                .map(|&from| (leg, FlowEvent::Receiving { from })),
            RelayEvent::MediaTimeout { leg } => {
                let after = handle
                    .query(move |relay, _| relay.media_timeout(leg))
                    .await
                    .ok()
                    .flatten()
                    .unwrap_or_default();
                Some((leg, FlowEvent::Timeout { after }))
            }
        };
        if let Some((leg, event)) = report
            && events.send((call_of(leg), event)).is_err()
        {
            break;
        }
    }
    if let Some(relay) = handle.stop().await {
        debug!(%a, %b, a_stats = ?relay.stats(Leg::A), b_stats = ?relay.stats(Leg::B), "relay ended");
    }
}

/// How the relay treats each direction, from the two legs' negotiations.
#[derive(Debug, Clone)]
struct Setup {
    /// What leaves toward leg A, toward leg B.
    maps: (PayloadMap, PayloadMap),
    /// Forwarding from leg A (we may send toward B), from leg B.
    forwarding: (bool, bool),
}

impl Setup {
    fn of(a: &StreamSettings, b: &StreamSettings) -> Setup {
        Setup {
            maps: (payload_map(b, a), payload_map(a, b)),
            forwarding: (b.send, a.send),
        }
    }

    fn apply(self, relay: &mut Relay) {
        relay.set_payload_map(Leg::A, Some(self.maps.0));
        relay.set_payload_map(Leg::B, Some(self.maps.1));
        relay.set_forwarding(Leg::A, self.forwarding.0);
        relay.set_forwarding(Leg::B, self.forwarding.1);
    }
}

/// What arrives from the `from` leg leaves toward the `to` leg with `to`'s payload types:
/// the audio codec's (translated between G.711 laws when they differ) and RFC 4733
/// `telephone-event`'s when both negotiated it (RFC 4733 §2.3: dynamic, so each leg's may
/// differ). Anything else is not sent.
fn payload_map(from: &StreamSettings, to: &StreamSettings) -> PayloadMap {
    let map = match (G711::from_name(&from.codec), G711::from_name(&to.codec)) {
        (Some(law_from), Some(law_to)) if law_from != law_to => PayloadMap::new().translate(
            from.payload_type,
            to.payload_type,
            Arc::new(law_from.translation_to(law_to)),
        ),
        _ => PayloadMap::new().map(from.payload_type, to.payload_type),
    };
    match (from.telephone_event, to.telephone_event) {
        (Some(event_from), Some(event_to)) => map.map(event_from, event_to),
        _ => map,
    }
}

fn relay_leg(leg: Leg, s: &StreamSettings) -> RelayLeg {
    let (rtp, rtcp) = relay_sockets(leg);
    RelayLeg {
        rtp,
        rtcp,
        remote: s.remote,
        remote_rtcp: s.remote.map(rtcp_of),
        symmetric: true,
        clock_rate: s.clock_rate,
    }
}

/// Music on hold without a file: a gentle tone pattern, a soft 440 Hz double beep
/// (0.3 s on, 0.3 s off, 0.3 s on) every 4.3 s at -24 dBm0. Not looped: one round.
pub fn hold_tone(looped: bool) -> ToneSpec {
    let cadence = vec![
        (Duration::from_millis(300), Duration::from_millis(300)),
        (Duration::from_millis(300), Duration::from_millis(3400)),
    ];
    ToneSpec {
        frequencies: vec![440.0],
        level_dbm0: -24.0,
        cadence,
        duration: (!looped).then(|| Duration::from_millis(4300)),
    }
}

/// No timeout while the peer is not meant to send (hold).
fn media_timeout(s: &StreamSettings) -> Option<Duration> {
    s.media_timeout.filter(|_| s.receive)
}

fn since_unix_epoch() -> Duration {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
}

/// A flow's report, as the engine's indication (`None`: nothing for the engine).
pub fn indication(event: FlowEvent) -> Option<MediaIndication> {
    Some(match event {
        FlowEvent::Receiving { .. } => MediaIndication::Receiving,
        FlowEvent::Timeout { after } => MediaIndication::Timeout { after },
        FlowEvent::Tone(tone) => MediaIndication::Tone {
            tone: tone.digit.unwrap_or('?'),
            duration: tone.duration,
        },
        FlowEvent::PlayCompleted => MediaIndication::PlayCompleted,
        FlowEvent::DtmfCompleted => MediaIndication::DtmfSent,
        FlowEvent::RecordingFailed { reason } => MediaIndication::RecordingFailed { reason },
        _ => return None,
    })
}

fn flow_config(s: &StreamSettings) -> Option<FlowConfig> {
    let codec = G711::from_name(&s.codec)?;
    Some(FlowConfig {
        rtp: RTP,
        rtcp: RTCP,
        remote: s.remote,
        remote_rtcp: s.remote.map(rtcp_of),
        codec,
        payload_type: s.payload_type,
        ptime: s.ptime,
        telephone_event: s.telephone_event,
        send: s.send,
        receive: s.receive,
        symmetric: true,
        media_timeout: s.media_timeout,
    })
}
