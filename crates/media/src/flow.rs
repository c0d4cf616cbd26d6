//! The media of one AudioVideoFlow: a G.711 RTP stream with its RTCP, fed by a player, a
//! tone generator, the echo of what comes in, or a conference mixer, and read by a
//! recorder and the DTMF receiver. Sans-IO: a [`MediaMachine`] over two sockets (RTP and
//! RTCP) that the driver binds.
//!
//! Sending is paced by the flow's own packet clock (one packet every `ptime`, RFC 3551
//! §4.2 and RFC 4566 `a=ptime`); the RTP timestamp advances with media time even while
//! nothing is sent (hold, DTMF events), so the peer's jitter buffer never sees time go
//! backwards (RFC 3550 §5.1).

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use rtp_session::dtmf::{DtmfReceiver, DtmfSender, ToneEvent};
use rtp_session::latch::Latch;
use rtp_session::rtcp::{NtpClock, RemoteView, RtcpConfig, RtcpSession};
use rtp_session::sender::{RtpSender, StreamPosition};
use rtp_session::stats::{ReceiverStats, StreamStats};
use rtp_session::{Datagram, MediaMachine, SocketId, looks_like_rtcp, parse_rtp};

use crate::MediaError;
use crate::fifo::SampleFifo;
use crate::g711::G711;
use crate::level::SAMPLE_RATE;
use crate::tone::{ToneGenerator, ToneSpec};
use crate::wav::{Player, SampleSink};

/// A flow more than this many packets behind its clock (the process stalled) starts
/// again from now instead of sending a burst.
const MAX_CATCH_UP: u32 = 5;
/// The echo buffer: enough for jitter, small enough that the echo stays prompt.
const ECHO_CAPACITY_MS: usize = 200;

/// The negotiated stream (from the call's SDP) and the sockets it runs on.
#[derive(Debug, Clone, PartialEq)]
pub struct FlowConfig {
    pub rtp: SocketId,
    pub rtcp: SocketId,
    /// Where the peer receives RTP, from its SDP; `None` while unknown.
    pub remote: Option<SocketAddr>,
    /// Where the peer receives RTCP (`a=rtcp`, else the RTP port + 1).
    pub remote_rtcp: Option<SocketAddr>,
    pub codec: G711,
    /// The payload type as negotiated (0 for PCMU, 8 for PCMA unless remapped).
    pub payload_type: u8,
    /// The packet interval we send.
    pub ptime: Duration,
    /// The negotiated RFC 4733 payload type.
    pub telephone_event: Option<u8>,
    /// Whether we send (our direction allows it).
    pub send: bool,
    /// Whether the peer sends (no media timeout while it does not).
    pub receive: bool,
    /// Latch onto the address the peer really sends from (NAT).
    pub symmetric: bool,
    /// No RTP for this long while the peer should send: [`FlowEvent::Timeout`].
    pub media_timeout: Option<Duration>,
}

impl FlowConfig {
    /// A sendrecv PCMU stream with 20 ms packets to `remote` (RTCP on the next port),
    /// symmetric, telephone-event on 101, no timeout: a starting point for tests.
    pub fn pcmu(rtp: SocketId, rtcp: SocketId, remote: Option<SocketAddr>) -> FlowConfig {
        FlowConfig {
            rtp,
            rtcp,
            remote,
            remote_rtcp: remote.map(rtcp_of),
            codec: G711::Pcmu,
            payload_type: 0,
            ptime: Duration::from_millis(20),
            telephone_event: Some(101),
            send: true,
            receive: true,
            symmetric: true,
            media_timeout: None,
        }
    }
}

/// RFC 3550 §11: RTCP on the next port.
pub fn rtcp_of(rtp: SocketAddr) -> SocketAddr {
    SocketAddr::new(rtp.ip(), rtp.port().saturating_add(1))
}

/// Who the flow is on the wire, and where its randomness and wall clock come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlowIdentity {
    /// RTCP SDES CNAME (RFC 3550 §6.5.1).
    pub cname: String,
    /// SSRC, initial sequence number and timestamp, RTCP interval randomization.
    pub seed: u64,
    /// The wall-clock time at the flow's creation, for RTCP's NTP timestamps.
    pub since_unix_epoch: Duration,
}

/// What a flow reports.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum FlowEvent {
    /// RTP arrives: the first packet, or the first after a timeout.
    Receiving { from: SocketAddr },
    /// No RTP for the media timeout.
    Timeout { after: Duration },
    /// An RFC 4733 event ended.
    Tone(ToneEvent),
    /// The player or tone ran to its end (not raised by `stop_playing`).
    PlayCompleted,
    /// Every queued DTMF digit was sent.
    DtmfCompleted,
    /// The recorder failed and was dropped.
    RecordingFailed { reason: String },
}

/// The flow's counters.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct FlowStats {
    pub packets_sent: u32,
    pub octets_sent: u32,
    /// RFC 3550 A.1/A.3/A.8 statistics of what we receive.
    pub received: StreamStats,
    /// How the peer sees our stream (from its RTCP report blocks).
    pub remote: Option<RemoteView>,
    /// The address RTP is sent to (latched or signalled).
    pub destination: Option<SocketAddr>,
    /// Packets refused: malformed, from an unlatched source, an unknown payload type.
    pub dropped: u64,
    pub rtcp_sent: u32,
}

#[derive(Debug)]
enum Source {
    Silence,
    Player(Player),
    Tone(ToneGenerator),
}

/// The media of one AudioVideoFlow.
#[derive(Debug)]
pub struct AudioFlow {
    config: FlowConfig,
    samples_per_packet: usize,
    sender: RtpSender,
    receiver: ReceiverStats,
    rtcp: RtcpSession,
    ntp: NtpClock,
    latch: Latch,
    rtcp_latch: Latch,
    dtmf_out: Option<DtmfSender>,
    dtmf_in: Option<DtmfReceiver>,
    dtmf_sending: bool,
    source: Source,
    echo: bool,
    echo_fifo: SampleFifo,
    /// Conference mode: no packet clock of its own; the mixer sends frames.
    external: bool,
    /// Conference mode: what arrived since the mixer last took it.
    inbox: Vec<i16>,
    /// Conference mode: the mixer's frame with what the flow itself plays.
    whisper: Vec<i16>,
    recorder: Option<Box<dyn SampleSink>>,
    next_tick: Option<Instant>,
    /// Since when the media timeout counts (the last RTP, or the start).
    silent_since: Instant,
    timed_out: bool,
    receiving: bool,
    /// Since when the stream is handed to a relay ([`AudioFlow::suspend`]).
    suspended: Option<Instant>,
    dropped: u64,
    frame: Vec<i16>,
    payload: Vec<u8>,
    decoded: Vec<i16>,
    transmits: VecDeque<Datagram>,
    events: VecDeque<FlowEvent>,
}

impl std::fmt::Debug for dyn SampleSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SampleSink")
    }
}

fn mix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Copies as much of `frame` as fits at the start of `out`.
fn copy_prefix(out: &mut [i16], frame: &[i16]) {
    let n = frame.len().min(out.len());
    if let (Some(o), Some(f)) = (out.get_mut(..n), frame.get(..n)) {
        o.copy_from_slice(f);
    }
}

/// The samples at 8 kHz from `from` to `to` (none if `to` is earlier), modulo 2^32 as RTP
/// timestamps are (RFC 3550 §5.1).
fn samples_between(from: Instant, to: Instant) -> u32 {
    let elapsed = to.saturating_duration_since(from);
    let samples = elapsed.as_nanos() * u128::from(SAMPLE_RATE) / 1_000_000_000;
    (samples % (1u128 << 32)) as u32
}

fn samples_per(ptime: Duration) -> usize {
    let ms = ptime.as_millis().clamp(10, 200);
    usize::try_from(ms).unwrap_or(20) * (SAMPLE_RATE as usize / 1000)
}

impl AudioFlow {
    pub fn new(now: Instant, config: FlowConfig, identity: FlowIdentity) -> AudioFlow {
        let a = mix64(identity.seed);
        let b = mix64(a);
        let ssrc = (a >> 32) as u32;
        let sequence = (a & 0x7fff) as u16;
        let timestamp = (b >> 32) as u32;
        let samples_per_packet = samples_per(config.ptime);
        let rtcp_config = RtcpConfig {
            cname: identity.cname,
            ..RtcpConfig::default()
        };
        let echo_capacity = ECHO_CAPACITY_MS * (SAMPLE_RATE as usize / 1000);
        let mut flow = AudioFlow {
            samples_per_packet,
            sender: RtpSender::new(ssrc, sequence, timestamp, SAMPLE_RATE),
            receiver: ReceiverStats::new(SAMPLE_RATE),
            rtcp: RtcpSession::new(now, rtcp_config, mix64(b)),
            ntp: NtpClock::new(now, identity.since_unix_epoch),
            latch: Latch::new(config.remote, config.symmetric),
            rtcp_latch: Latch::new(config.remote_rtcp, config.symmetric),
            dtmf_out: None,
            dtmf_in: None,
            dtmf_sending: false,
            source: Source::Silence,
            echo: false,
            echo_fifo: SampleFifo::new(echo_capacity),
            external: false,
            inbox: Vec::new(),
            whisper: Vec::new(),
            recorder: None,
            next_tick: None,
            silent_since: now,
            timed_out: false,
            receiving: false,
            suspended: None,
            dropped: 0,
            frame: vec![0; samples_per_packet],
            payload: Vec::with_capacity(samples_per_packet),
            decoded: Vec::with_capacity(samples_per_packet),
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            config: config.clone(),
        };
        flow.apply(now, config, true);
        flow
    }

    /// A new negotiation (re-INVITE, UPDATE: hold, retrieve, a new address or codec).
    /// The stream goes on: same SSRC, sequence numbers and timestamps continue.
    pub fn reconfigure(&mut self, now: Instant, config: FlowConfig) {
        self.apply(now, config, false);
    }

    fn apply(&mut self, now: Instant, config: FlowConfig, first: bool) {
        if first || config.remote != self.config.remote {
            self.latch.set_signalled(config.remote);
        }
        if first || config.remote_rtcp != self.config.remote_rtcp {
            self.rtcp_latch.set_signalled(config.remote_rtcp);
        }
        if first || config.telephone_event != self.config.telephone_event {
            self.dtmf_out = config
                .telephone_event
                .map(|pt| DtmfSender::new(pt, SAMPLE_RATE, config.ptime));
            self.dtmf_in = config
                .telephone_event
                .map(|pt| DtmfReceiver::new(pt, SAMPLE_RATE));
        }
        let samples = samples_per(config.ptime);
        if samples != self.samples_per_packet {
            self.samples_per_packet = samples;
            self.frame.resize(samples, 0);
        }
        // A new negotiation starts the silence count again.
        self.silent_since = now;
        self.timed_out = false;
        self.config = config;
        if !self.external && self.suspended.is_none() && self.next_tick.is_none() {
            self.next_tick = Some(now);
        }
    }

    pub fn config(&self) -> &FlowConfig {
        &self.config
    }

    /// Plays samples (a WAV loaded by [`crate::wav::load_wav`]) instead of what was
    /// playing; [`FlowEvent::PlayCompleted`] at its end unless it loops.
    pub fn play(&mut self, player: Player) {
        self.source = Source::Player(player);
    }

    /// Plays a tone (dial tone, ringback, any frequencies).
    pub fn play_tone(&mut self, spec: ToneSpec) {
        self.source = Source::Tone(ToneGenerator::new(spec));
    }

    /// Stops the player or tone: silence (or the echo) again.
    pub fn stop_playing(&mut self) {
        self.source = Source::Silence;
    }

    pub fn is_playing(&self) -> bool {
        !matches!(self.source, Source::Silence)
    }

    /// What comes in goes back out (when nothing is playing).
    pub fn set_echo(&mut self, on: bool) {
        self.echo = on;
        self.echo_fifo.clear();
    }

    /// Records what the peer says (decoded) into `sink`, replacing a recording in
    /// progress (which is finished first).
    pub fn record(&mut self, sink: Box<dyn SampleSink>) -> Result<(), MediaError> {
        let old = self.recorder.replace(sink);
        match old {
            Some(old) => old.finish().map(|_| ()),
            None => Ok(()),
        }
    }

    /// Finishes the recording: the number of samples written.
    pub fn stop_recording(&mut self) -> Result<u64, MediaError> {
        match self.recorder.take() {
            Some(sink) => sink.finish(),
            None => Ok(0),
        }
    }

    /// Sends DTMF digits as RFC 4733 events on the negotiated payload type, each
    /// `duration` long with `gap` between them.
    pub fn send_dtmf(
        &mut self,
        digits: &str,
        duration: Duration,
        gap: Duration,
    ) -> Result<(), MediaError> {
        let Some(sender) = self.dtmf_out.as_mut() else {
            return Err(MediaError::Unsupported {
                what: "DTMF: the peer did not negotiate telephone-event (RFC 4733)".into(),
            });
        };
        sender
            .queue(digits, duration, gap, 10)
            .map_err(|error| MediaError::Unsupported {
                what: error.to_string(),
            })?;
        self.dtmf_sending = true;
        Ok(())
    }

    pub fn stats(&self) -> FlowStats {
        FlowStats {
            packets_sent: self.sender.packets_sent(),
            octets_sent: self.sender.octets_sent(),
            received: self.receiver.snapshot(),
            remote: self.rtcp.remote_view(),
            destination: self.latch.destination(),
            dropped: self.dropped + self.latch.dropped(),
            rtcp_sent: self.rtcp.reports_sent(),
        }
    }

    /// Ends the stream: an RTCP BYE (RFC 3550 §6.6) and the recording finished.
    pub fn close(&mut self, now: Instant) {
        if let Some(to) = self.rtcp_latch.destination()
            && let Ok(data) = self
                .rtcp
                .build_bye(now, &self.ntp, &self.sender, &mut self.receiver)
        {
            self.transmits.push_back(Datagram {
                socket: self.config.rtcp,
                to,
                data,
            });
        }
        if let Err(error) = self.stop_recording() {
            self.events.push_back(FlowEvent::RecordingFailed {
                reason: error.to_string(),
            });
        }
        self.next_tick = None;
    }

    // ---- joined to another call (a media-anchored bridge)

    /// The call's stream is handed to a relay that joins it to another call's (a
    /// media-anchored B2BUA, RFC 7092 §3.1.3), which takes the flow's sockets: until
    /// [`AudioFlow::resume`] the flow sends, reads, reports and times out nothing and asks
    /// for no timer. A player or tone pauses where it is (stop it first for silence at the
    /// resume); commands given meanwhile (a player, DTMF, a new negotiation) take effect
    /// at the resume.
    ///
    /// Returns where the stream stands, for the relay to carry it on toward the peer: the
    /// same SSRC, the next sequence number and the timestamp of the next packet time (RFC
    /// 3550 §5.1), so the peer sees one source throughout.
    pub fn suspend(&mut self, now: Instant) -> StreamPosition {
        let position = StreamPosition {
            ssrc: self.sender.ssrc(),
            next_sequence: self.sender.next_sequence(),
            timestamp: self.sender.timestamp(),
            at: self.next_tick.unwrap_or(now),
        };
        if self.suspended.is_none() {
            self.suspended = Some(now);
        }
        self.echo_fifo.clear();
        self.next_tick = None;
        position
    }

    /// The stream comes back from the relay (the bridge ended): sending starts again at
    /// `now` with what was playing, or silence (or the echo). With the
    /// relay's `position` (see [`AudioFlow::suspend`]), the stream carries on from the
    /// relay's last packet: its SSRC, the next sequence number, its media clock; without
    /// one, from where the flow left it, its timestamp moved on by the time suspended.
    /// The media timeout counts again from `now`, and the next RTP raises
    /// [`FlowEvent::Receiving`]. Nothing happens when the flow is not suspended.
    pub fn resume(&mut self, now: Instant, position: Option<StreamPosition>) {
        let Some(since) = self.suspended.take() else {
            return;
        };
        match position {
            Some(p) => {
                let timestamp = p.timestamp.wrapping_add(samples_between(p.at, now));
                if p.ssrc == self.sender.ssrc() {
                    self.sender.continue_at(p.next_sequence, timestamp);
                } else {
                    self.sender = RtpSender::new(p.ssrc, p.next_sequence, timestamp, SAMPLE_RATE);
                }
            }
            None => self.sender.skip(samples_between(since, now)),
        }
        self.silent_since = now;
        self.timed_out = false;
        self.receiving = false;
        self.echo_fifo.clear();
        if !self.external {
            self.next_tick = Some(now);
        }
    }

    /// Whether the stream is handed to a relay ([`AudioFlow::suspend`]).
    pub fn is_suspended(&self) -> bool {
        self.suspended.is_some()
    }

    // ---- conference mode

    /// The flow's packets are sent by a mixer ([`AudioFlow::send_frame`]), not by its
    /// own clock; what it receives is kept for the mixer ([`AudioFlow::take_received`]).
    pub fn set_external_clock(&mut self, on: bool) {
        self.external = on;
        self.next_tick = if on { None } else { self.next_tick };
        self.inbox.clear();
    }

    /// Conference mode: the decoded audio received since the last call.
    pub fn take_received(&mut self, out: &mut Vec<i16>) {
        out.append(&mut self.inbox);
    }

    /// Conference mode: sends one frame now (or skips it when not sending). What the
    /// flow itself plays (a player, a tone) is mixed into it: this participant hears it
    /// over the conference, the others do not; [`FlowEvent::PlayCompleted`] at its end
    /// as on the flow's own clock.
    pub fn send_frame(&mut self, now: Instant, frame: &[i16]) {
        let samples = u32::try_from(frame.len()).unwrap_or(0);
        if !self.is_playing() {
            self.send_interval(now, samples, |out| copy_prefix(out, frame));
            return;
        }
        let mut own = std::mem::take(&mut self.whisper);
        own.clear();
        own.resize(frame.len(), 0);
        self.fill_frame(&mut own);
        for (sample, &mixed) in own.iter_mut().zip(frame) {
            *sample = sample.saturating_add(mixed);
        }
        self.send_interval(now, samples, |out| copy_prefix(out, &own));
        self.whisper = own;
    }

    /// The flow's sockets are filed under other ids (it moves to a task that drives
    /// several flows, such as a conference room's): it reads on and sends from `rtp` and
    /// `rtcp` from now on. Nothing else changes: the stream, its latches and statistics
    /// go on.
    pub fn set_sockets(&mut self, rtp: SocketId, rtcp: SocketId) {
        self.config.rtp = rtp;
        self.config.rtcp = rtcp;
    }

    /// Conference mode: a frame of `samples` passes without a packet (the mixer fell
    /// behind and skipped it); the RTP timestamp advances all the same (RFC 3550 §5.1).
    pub fn skip_frame(&mut self, samples: u32) {
        self.sender.skip(samples);
    }

    // ---- the packet clock

    fn tick(&mut self, now: Instant) {
        let samples = u32::try_from(self.samples_per_packet).unwrap_or(160);
        let mut frame = std::mem::take(&mut self.frame);
        frame.iter_mut().for_each(|s| *s = 0);
        self.fill_frame(&mut frame);
        self.send_interval(now, samples, |out| {
            copy_prefix(out, &frame);
        });
        self.frame = frame;
    }

    /// The next frame from the player, the tone, or the echo.
    fn fill_frame(&mut self, frame: &mut [i16]) {
        let finished = match &mut self.source {
            Source::Player(player) => {
                player.fill(frame);
                player.finished()
            }
            Source::Tone(tone) => {
                tone.fill(frame);
                tone.finished()
            }
            Source::Silence => {
                if self.echo {
                    self.echo_fifo.pop_into(frame);
                }
                false
            }
        };
        if finished {
            self.source = Source::Silence;
            self.events.push_back(FlowEvent::PlayCompleted);
        }
    }

    /// One packet interval of `samples`: DTMF events when any are being sent, else the
    /// audio `fill` writes; nothing (the timestamp still advances) when not sending.
    fn send_interval(&mut self, _now: Instant, samples: u32, fill: impl FnOnce(&mut [i16])) {
        let destination = self.latch.destination();
        let Some(to) = destination.filter(|_| self.config.send) else {
            self.sender.skip(samples);
            return;
        };
        if let Some(dtmf) = self.dtmf_out.as_mut()
            && dtmf.pending() > 0
        {
            let packets = dtmf.tick(self.sender.timestamp());
            if !packets.is_empty() || dtmf.is_active() {
                let pt = dtmf.payload_type();
                for p in packets {
                    if let Ok(data) =
                        self.sender
                            .next_with_timestamp(pt, p.marker, p.timestamp, &p.payload)
                    {
                        self.transmits.push_back(Datagram {
                            socket: self.config.rtp,
                            to,
                            data,
                        });
                    }
                }
                self.sender.skip(samples);
                return;
            }
        }
        if self.dtmf_sending && self.dtmf_out.as_ref().is_none_or(|d| d.pending() == 0) {
            self.dtmf_sending = false;
            self.events.push_back(FlowEvent::DtmfCompleted);
        }
        let mut frame = std::mem::take(&mut self.decoded);
        frame.clear();
        frame.resize(usize::try_from(samples).unwrap_or(0), 0);
        fill(&mut frame);
        self.payload.clear();
        self.config.codec.encode(&frame, &mut self.payload);
        self.decoded = frame;
        if let Ok(data) = self
            .sender
            .next(self.config.payload_type, false, &self.payload, samples)
        {
            self.transmits.push_back(Datagram {
                socket: self.config.rtp,
                to,
                data,
            });
        }
    }

    fn on_rtp(&mut self, now: Instant, from: SocketAddr, data: &[u8]) {
        let Ok((header, range)) = parse_rtp(data) else {
            self.dropped += 1;
            return;
        };
        if !self.latch.on_packet(now, from) {
            return;
        }
        self.receiver.record(now, &header);
        self.silent_since = now;
        if !self.receiving || self.timed_out {
            self.receiving = true;
            self.timed_out = false;
            self.events.push_back(FlowEvent::Receiving { from });
        }
        let payload = data.get(range).unwrap_or_default();
        if Some(header.payload_type) == self.config.telephone_event {
            if let Some(tone) = self
                .dtmf_in
                .as_mut()
                .and_then(|d| d.handle(now, &header, payload))
            {
                self.events.push_back(FlowEvent::Tone(tone));
            }
            return;
        }
        if header.payload_type != self.config.payload_type {
            // Comfort noise (RFC 3389) and anything not negotiated: not audio we play.
            self.dropped += 1;
            return;
        }
        let mut decoded = std::mem::take(&mut self.decoded);
        decoded.clear();
        self.config.codec.decode(payload, &mut decoded);
        if self.echo {
            self.echo_fifo.push(&decoded);
        }
        if self.external {
            self.inbox.extend_from_slice(&decoded);
        }
        if let Some(recorder) = self.recorder.as_mut()
            && let Err(error) = recorder.write(&decoded)
        {
            self.recorder = None;
            self.events.push_back(FlowEvent::RecordingFailed {
                reason: error.to_string(),
            });
        }
        self.decoded = decoded;
    }

    fn on_rtcp(&mut self, now: Instant, from: SocketAddr, data: &[u8]) {
        if !self.rtcp_latch.on_packet(now, from) {
            return;
        }
        if self
            .rtcp
            .handle_rtcp(now, data, self.sender.ssrc())
            .is_err()
        {
            self.dropped += 1;
        }
    }

    fn media_deadline(&self) -> Option<Instant> {
        let timeout = self.config.media_timeout?;
        (self.config.receive && !self.timed_out).then(|| self.silent_since + timeout)
    }
}

impl MediaMachine for AudioFlow {
    type Event = FlowEvent;

    fn handle_datagram(&mut self, now: Instant, socket: SocketId, from: SocketAddr, data: &[u8]) {
        if self.suspended.is_some() {
            return;
        }
        if socket == self.config.rtcp || looks_like_rtcp(data) {
            self.on_rtcp(now, from, data);
        } else if socket == self.config.rtp {
            self.on_rtp(now, from, data);
        }
    }

    fn handle_timeout(&mut self, now: Instant) {
        if self.suspended.is_some() {
            return;
        }
        if let Some(mut at) = self.next_tick {
            let ptime = self.config.ptime;
            let mut sent = 0;
            while at <= now {
                if sent == MAX_CATCH_UP {
                    // Stalled: skip the missed time instead of a burst.
                    let behind = now.saturating_duration_since(at);
                    let missed = behind.as_micros() / ptime.as_micros().max(1);
                    let per = u32::try_from(self.samples_per_packet).unwrap_or(160);
                    let missed = u32::try_from(missed).unwrap_or(u32::MAX);
                    self.sender.skip(per.saturating_mul(missed));
                    at += ptime * missed.max(1);
                    continue;
                }
                self.tick(now);
                sent += 1;
                at += ptime;
            }
            self.next_tick = Some(at);
        }
        if let Some(deadline) = self.media_deadline()
            && deadline <= now
            && let Some(after) = self.config.media_timeout
        {
            self.timed_out = true;
            self.events.push_back(FlowEvent::Timeout { after });
        }
        if let Some(dtmf) = self.dtmf_in.as_mut()
            && dtmf.poll_timeout().is_some_and(|t| t <= now)
            && let Some(tone) = dtmf.handle_timeout(now)
        {
            self.events.push_back(FlowEvent::Tone(tone));
        }
        if self.rtcp.next_report() <= now
            && self.rtcp.due(now, self.sender.has_sent())
            && let Some(to) = self.rtcp_latch.destination()
            && let Ok(data) =
                self.rtcp
                    .build_report(now, &self.ntp, &self.sender, &mut self.receiver)
        {
            self.transmits.push_back(Datagram {
                socket: self.config.rtcp,
                to,
                data,
            });
        }
    }

    fn poll_transmit(&mut self) -> Option<Datagram> {
        self.transmits.pop_front()
    }

    fn poll_timeout(&self) -> Option<Instant> {
        if self.suspended.is_some() {
            return None;
        }
        [
            self.next_tick,
            self.media_deadline(),
            self.dtmf_in.as_ref().and_then(|d| d.poll_timeout()),
            Some(self.rtcp.next_report()),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    fn poll_event(&mut self) -> Option<FlowEvent> {
        self.events.pop_front()
    }
}
