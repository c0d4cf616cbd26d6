//! The driver's media plane: RTP/RTCP sockets bound as the engine reserves ports (so a
//! port written into SDP is always one we hold), and one task per flow driving the
//! sans-IO [`AudioFlow`] over them. What a flow reports goes back to the engine as a
//! [`MediaIndication`].

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use calls::{CallHandle, Engine, MediaIndication, MediaInstruction, PortSource, StreamSettings};
use media::flow::{AudioFlow, FlowConfig, FlowEvent, FlowIdentity, rtcp_of};
use media::g711::G711;
use media_transport::{MediaController, PortPool, PortRange, SocketPair};
use rtp_session::SocketId;
use tokio::sync::{mpsc, oneshot};
use tracing::{debug, warn};

const RTP: SocketId = SocketId(0);
const RTCP: SocketId = SocketId(1);

/// What the flows report, by call.
pub(crate) type FlowEvents = mpsc::UnboundedReceiver<(CallHandle, FlowEvent)>;

/// A command for a call's flow, run inside its task.
pub(crate) type FlowCommand = Box<dyn FnOnce(&mut AudioFlow, Instant) + Send>;

/// The engine's port source: binds the pair as it reserves the port, and keeps the
/// sockets until the flow starts.
#[derive(Debug)]
pub(crate) struct BoundPorts {
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

#[derive(Debug)]
struct FlowEntry {
    controller: Option<MediaController<AudioFlow>>,
    /// Commands given before the flow started (the application attaches a player when
    /// the flow is requested, before media is negotiated).
    pending: Vec<FlowCommandDebug>,
    close: Option<oneshot::Sender<()>>,
}

struct FlowCommandDebug(FlowCommand);

impl std::fmt::Debug for FlowCommandDebug {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FlowCommand")
    }
}

/// The media plane of the driver.
#[derive(Debug)]
pub(crate) struct MediaPlane {
    bound: Arc<Mutex<HashMap<u16, SocketPair>>>,
    flows: HashMap<CallHandle, FlowEntry>,
    events: mpsc::UnboundedSender<(CallHandle, FlowEvent)>,
    cname: String,
    seed: u64,
}

/// Why a flow command could not be given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum FlowError {
    /// The call has no media flow (an IM call, or it has ended).
    NoFlow,
    /// Media has not started yet.
    NotStarted,
}

impl MediaPlane {
    /// The plane and the engine's port source, binding on `ip` within `range`.
    pub(crate) fn new(
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
        let bound = Arc::new(Mutex::new(HashMap::new()));
        let (events, rx) = mpsc::unbounded_channel();
        let plane = MediaPlane {
            bound: bound.clone(),
            flows: HashMap::new(),
            events,
            cname: format!("tandem-{:x}@{ip}", seed & 0xffff_ffff),
            seed,
        };
        Ok((plane, BoundPorts { pool, range, bound }, rx))
    }

    /// An instruction of the engine.
    pub(crate) fn instruct(
        &mut self,
        engine: &mut Engine,
        now: Instant,
        call: CallHandle,
        instruction: MediaInstruction,
    ) {
        match instruction {
            MediaInstruction::Open { .. } => {
                self.flows.entry(call).or_insert(FlowEntry {
                    controller: None,
                    pending: Vec::new(),
                    close: None,
                });
            }
            MediaInstruction::Start(settings) => self.start(engine, now, call, &settings),
            MediaInstruction::Close { port } => {
                if let Some(close) = self.flows.remove(&call).and_then(|e| e.close) {
                    let _ = close.send(());
                }
                if let Ok(mut bound) = self.bound.lock() {
                    bound.remove(&port);
                }
            }
            _ => {}
        }
    }

    fn start(&mut self, engine: &mut Engine, now: Instant, call: CallHandle, s: &StreamSettings) {
        let Some(config) = flow_config(s) else {
            engine.handle_media(
                now,
                call,
                MediaIndication::Failed {
                    reason: format!("codec {} is not G.711", s.codec),
                },
            );
            return;
        };
        let entry = self.flows.entry(call).or_insert(FlowEntry {
            controller: None,
            pending: Vec::new(),
            close: None,
        });
        if let Some(controller) = &entry.controller {
            let _ = controller.command(move |flow, now| flow.reconfigure(now, config));
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
        self.seed = self.seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let identity = FlowIdentity {
            cname: self.cname.clone(),
            seed: self.seed,
            since_unix_epoch: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default(),
        };
        let mut flow = AudioFlow::new(now, config, identity);
        flow.set_echo(s.echo);
        for FlowCommandDebug(command) in entry.pending.drain(..) {
            command(&mut flow, now);
        }
        let mut handle = media_transport::spawn(flow, vec![(RTP, pair.rtp), (RTCP, pair.rtcp)]);
        entry.controller = Some(handle.controller());
        let (close, mut closed) = oneshot::channel::<()>();
        entry.close = Some(close);
        let events = self.events.clone();
        tokio::spawn(async move {
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
        });
    }

    /// Runs `command` on the call's flow now, or as soon as it starts.
    /// `alive`: the call exists (an AV call's flow may be commanded before its media
    /// is negotiated); `queue`: a command for a flow not started yet waits for it
    /// (otherwise [`FlowError::NotStarted`]).
    pub(crate) fn command(
        &mut self,
        call: CallHandle,
        alive: bool,
        queue: bool,
        command: FlowCommand,
    ) -> Result<(), FlowError> {
        if !queue && self.flows.get(&call).is_none_or(|e| e.controller.is_none()) {
            return Err(if alive {
                FlowError::NotStarted
            } else {
                FlowError::NoFlow
            });
        }
        if alive && !self.flows.contains_key(&call) {
            self.flows.insert(
                call,
                FlowEntry {
                    controller: None,
                    pending: Vec::new(),
                    close: None,
                },
            );
        }
        let entry = self.flows.get_mut(&call).ok_or(FlowError::NoFlow)?;
        match &entry.controller {
            Some(controller) => controller
                .command(move |flow, now| command(flow, now))
                .map_err(|_| FlowError::NoFlow),
            None => {
                entry.pending.push(FlowCommandDebug(command));
                Ok(())
            }
        }
    }
}

impl MediaPlane {
    /// The call is over: whatever was queued for a flow that never started goes.
    pub(crate) fn forget(&mut self, call: CallHandle) {
        if self
            .flows
            .get(&call)
            .is_some_and(|e| e.controller.is_none())
        {
            self.flows.remove(&call);
        }
    }
}

/// A flow's report, as the engine's indication (`None`: nothing for the engine).
pub(crate) fn indication(event: FlowEvent) -> Option<MediaIndication> {
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
