//! The offer/answer state machine of one call (RFC 3264), sans-IO: descriptions in, bytes
//! out, no clock.

use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use bytes::Bytes;

use crate::error::NegotiationError;
use crate::sdp::{MediaSection, SessionDescription, address_type, connection_line, parse_rtpmap};
use crate::types::{Codec, Direction, MediaKind};

/// Where the negotiation stands (RFC 3264 §4; the names are JSEP's, RFC 8829 §3.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SignalingState {
    /// No offer outstanding.
    Stable,
    /// We sent an offer and wait for the answer.
    HaveLocalOffer,
    /// We received an offer and owe the answer.
    HaveRemoteOffer,
}

/// What we can do, given by the application.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalCapabilities {
    /// The `c=` and `o=` address.
    pub address: IpAddr,
    /// The port we receive RTP on; 0 is treated as "no audio" (there is no "not yet
    /// allocated": allocate before negotiating).
    pub audio_port: u16,
    /// In preference order (our offers list them so; answers follow the offerer's order).
    pub codecs: Vec<Codec>,
    /// Our `a=ptime`, used when the offer has none.
    pub ptime: Option<u32>,
    /// When set we offer and accept `m=message` (an IM call, Lync style).
    pub message: Option<MessageCapabilities>,
    /// When false we offer no `m=audio` (an IM-only call) and reject offered audio.
    pub audio: bool,
    /// The `o=` username.
    pub username: String,
    /// The `s=` line.
    pub session_name: String,
}

impl Default for LocalCapabilities {
    /// 127.0.0.1, audio on port 9 (discard), PCMU, PCMA and telephone-event on 101, 20 ms,
    /// no messaging, `tandem` as user and session name.
    fn default() -> LocalCapabilities {
        LocalCapabilities::with_codecs(
            IpAddr::V4(Ipv4Addr::LOCALHOST),
            vec![Codec::pcmu(), Codec::pcma(), Codec::telephone_event(101)],
        )
    }
}

impl LocalCapabilities {
    /// The defaults with `address` and `codecs`, built without the default codec list
    /// (a call's capabilities are made per call: the list is eight allocations).
    pub fn with_codecs(address: IpAddr, codecs: Vec<Codec>) -> LocalCapabilities {
        LocalCapabilities {
            address,
            audio_port: 9,
            codecs,
            ptime: Some(20),
            message: None,
            audio: true,
            username: "tandem".to_owned(),
            session_name: "tandem".to_owned(),
        }
    }
}

/// `m=message <port> sip <uri>` as Lync/Skype for Business write it for an IM session
/// (MS-SDPEXT): the SIP port, the URI or `null`, and `a=accept-types` (RFC 4975 §8.6 syntax).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageCapabilities {
    /// The SIP port, as Lync writes it; 0 is treated as "no messaging".
    pub port: u16,
    /// Written as the format; `null` when `None`.
    pub uri: Option<String>,
    pub accept_types: Vec<String>,
}

impl Default for MessageCapabilities {
    /// Port 5060, `null`, `text/plain text/html application/im-iscomposing+xml`.
    fn default() -> MessageCapabilities {
        MessageCapabilities {
            port: 5060,
            uri: None,
            accept_types: vec![
                "text/plain".to_owned(),
                "text/html".to_owned(),
                "application/im-iscomposing+xml".to_owned(),
            ],
        }
    }
}

/// The outcome of a completed offer/answer exchange.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Negotiated {
    pub audio: Option<NegotiatedAudio>,
    pub message: Option<NegotiatedMessage>,
    /// Every stream that ended with port 0, and why ("video not supported", "SRTP
    /// (RTP/SAVP) not supported", "rejected by the answerer"...).
    pub rejected: Vec<RejectedStream>,
    /// Attributes of accepted streams we did not act on (`a=rtcp-xr`, `a=crypto` on a
    /// stream accepted unencrypted, unknown ones): reported, never silently lost.
    pub ignored: Vec<IgnoredAttribute>,
}

/// The audio stream both sides agreed on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NegotiatedAudio {
    /// Where to send RTP: `None` when the peer's port is 0, its address is `0.0.0.0`/`::`
    /// (RFC 2543 hold) or a domain name.
    pub remote: Option<SocketAddr>,
    pub local_port: u16,
    /// The first common codec (not telephone-event). When we answered, as the offerer wrote
    /// it (RFC 3264 §6.1: its payload number); when we offered, as the answerer wrote it.
    pub codec: Codec,
    /// Every common codec, telephone-event excluded, in the offerer's order.
    pub codecs: Vec<Codec>,
    /// The negotiated RFC 4733 payload type: never assume 101.
    pub telephone_event: Option<Codec>,
    pub ptime: Option<u32>,
    /// What we said.
    pub local_direction: Direction,
    /// What they said, except that a `c=0.0.0.0` peer (RFC 2543 hold) does not receive:
    /// `sendrecv` there is reported `sendonly`, `recvonly` is reported `inactive`.
    /// `SendOnly` means they hold us.
    pub remote_direction: Direction,
}

/// The instant-messaging stream both sides agreed on (`m=message ... sip`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NegotiatedMessage {
    /// The MIME types both accept, in the offerer's order.
    pub accept_types: Vec<String>,
    /// The peer's URI from its `m=message` format, `None` for `null`.
    pub remote_uri: Option<String>,
}

/// A stream (by `m=` index from 0) that ended with port 0.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RejectedStream {
    pub index: usize,
    pub kind: MediaKind,
    pub reason: String,
}

/// An `a=` line of an accepted stream (by `m=` index from 0) that we did not act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IgnoredAttribute {
    pub index: usize,
    pub name: String,
    pub value: Option<String>,
}

/// One `m=` line of a description we write.
#[derive(Debug, Clone, PartialEq, Eq)]
enum MLine {
    Audio {
        port: u16,
        proto: String,
        codecs: Vec<Codec>,
        ptime: Option<u32>,
        direction: Direction,
    },
    Message {
        port: u16,
        uri: String,
        accept_types: Vec<String>,
    },
    /// Port 0 (RFC 3264 §6, §8.2).
    Rejected {
        media: String,
        proto: String,
        formats: Vec<String>,
    },
}

impl MLine {
    fn kind(&self) -> MediaKind {
        match self {
            MLine::Audio { .. } => MediaKind::Audio,
            MLine::Message { .. } => MediaKind::Message,
            MLine::Rejected { media, .. } => MediaKind::parse(media),
        }
    }

    /// This line as it stays in a re-offer when its stream is no longer used.
    fn disabled(&self) -> MLine {
        match self {
            MLine::Audio { proto, codecs, .. } => MLine::Rejected {
                media: "audio".to_owned(),
                proto: proto.clone(),
                formats: codecs.iter().map(|c| c.payload_type.to_string()).collect(),
            },
            MLine::Message { uri, .. } => MLine::Rejected {
                media: "message".to_owned(),
                proto: "sip".to_owned(),
                formats: vec![uri.clone()],
            },
            rejected @ MLine::Rejected { .. } => rejected.clone(),
        }
    }
}

/// Our outstanding offer.
#[derive(Debug, Clone)]
struct LocalOffer {
    bytes: Bytes,
    lines: Vec<MLine>,
}

/// The negotiation of one call (one per AudioVideoCall / InstantMessagingCall), in two
/// steps as ezk does: [`receive_offer`](Self::receive_offer) (the 488 cases fail here) ->
/// `HaveRemoteOffer` -> [`create_answer`](Self::create_answer) -> `Stable`; or
/// [`create_offer`](Self::create_offer) -> `HaveLocalOffer` ->
/// [`receive_answer`](Self::receive_answer) -> `Stable`.
///
/// A step that fails leaves the state as it was; [`rollback`](Self::rollback) abandons an
/// outstanding offer either way.
///
/// Versions (RFC 3264 §8): every description we send has the same `o=` session id; its
/// version goes up by one when the description differs from the last one we sent, and stays
/// when it is the same (the RFC's "no change" case: a session refresh, an offerless
/// re-INVITE answered with an unchanged offer).
#[derive(Debug, Clone)]
pub struct OfferAnswer {
    local: LocalCapabilities,
    session_id: u64,
    direction: Direction,
    state: SignalingState,
    /// The version of the last description we sent; 0 before the first.
    version: u64,
    last_sent: Option<Bytes>,
    /// The description in effect and its m= lines (what re-offers start from).
    current: Option<(Bytes, Vec<MLine>)>,
    local_offer: Option<LocalOffer>,
    /// Boxed, as `remote` and `negotiated`: inline they were 600 of the 944 bytes every
    /// call keeps, and a signalling-only B2BUA leg never fills them.
    remote_offer: Option<Box<SessionDescription>>,
    remote: Option<Box<SessionDescription>>,
    negotiated: Option<Box<Negotiated>>,
}

impl OfferAnswer {
    pub fn new(local: LocalCapabilities, session_id: u64) -> OfferAnswer {
        OfferAnswer {
            local,
            session_id,
            direction: Direction::SendRecv,
            state: SignalingState::Stable,
            version: 0,
            last_sent: None,
            current: None,
            local_offer: None,
            remote_offer: None,
            remote: None,
            negotiated: None,
        }
    }

    pub fn state(&self) -> SignalingState {
        self.state
    }

    /// New capabilities (a new port, other codecs): used from the next description on.
    pub fn set_local(&mut self, local: LocalCapabilities) {
        self.local = local;
    }

    pub fn local(&self) -> &LocalCapabilities {
        &self.local
    }

    /// Hold and retrieve (RFC 3264 §8.4): the direction our next offer states, and what our
    /// next answer is intersected with (holding with `SendOnly`, we answer a `sendrecv`
    /// offer `sendonly`).
    pub fn set_direction(&mut self, direction: Direction) {
        self.direction = direction;
    }

    pub fn direction(&self) -> Direction {
        self.direction
    }

    /// Writes an offer (RFC 3264 §5): `Stable` -> `HaveLocalOffer`. The first offers audio
    /// and/or messaging from the capabilities; a re-offer (§8) keeps every `m=` line of the
    /// description in effect, in order, the payload numbers negotiated, port 0 for streams
    /// no longer used, and adds new streams in a disabled slot of their kind or at the end.
    pub fn create_offer(&mut self) -> Result<Bytes, NegotiationError> {
        self.expect_state("create_offer", SignalingState::Stable)?;
        let lines = self.offer_lines()?;
        let bytes = self.stamp(&lines);
        self.local_offer = Some(LocalOffer {
            bytes: bytes.clone(),
            lines,
        });
        self.state = SignalingState::HaveLocalOffer;
        Ok(bytes)
    }

    /// Reads the answer to our offer (RFC 3264 §6, §7): `HaveLocalOffer` -> `Stable`.
    pub fn receive_answer(&mut self, sdp: &[u8]) -> Result<&Negotiated, NegotiationError> {
        self.expect_state("receive_answer", SignalingState::HaveLocalOffer)?;
        let answer = SessionDescription::parse(sdp)?;
        let Some(offer) = &self.local_offer else {
            return Err(self.wrong_state("receive_answer"));
        };
        let negotiated = read_answer(&offer.lines, &answer)?;
        if let Some(offer) = self.local_offer.take() {
            self.current = Some((offer.bytes, offer.lines));
        }
        self.remote = Some(Box::new(answer));
        self.state = SignalingState::Stable;
        Ok(self.negotiated.insert(Box::new(negotiated)))
    }

    /// Reads an offer (RFC 3264 §6): `Stable` -> `HaveRemoteOffer`. The errors are the 488
    /// cases ([`NegotiationError::warning_code`] gives the Warning code); on error the
    /// state stays `Stable`.
    pub fn receive_offer(&mut self, sdp: &[u8]) -> Result<(), NegotiationError> {
        self.expect_state("receive_offer", SignalingState::Stable)?;
        let offer = SessionDescription::parse(sdp)?;
        answer_offer(&offer, &self.local, self.direction)?;
        self.remote_offer = Some(Box::new(offer));
        self.state = SignalingState::HaveRemoteOffer;
        Ok(())
    }

    /// Writes the answer to the offer received (RFC 3264 §6): `HaveRemoteOffer` -> `Stable`.
    pub fn create_answer(&mut self) -> Result<Bytes, NegotiationError> {
        self.expect_state("create_answer", SignalingState::HaveRemoteOffer)?;
        let Some(offer) = &self.remote_offer else {
            return Err(self.wrong_state("create_answer"));
        };
        let (lines, negotiated) = answer_offer(offer, &self.local, self.direction)?;
        let bytes = self.stamp(&lines);
        self.current = Some((bytes.clone(), lines));
        self.remote = self.remote_offer.take();
        self.negotiated = Some(Box::new(negotiated));
        self.state = SignalingState::Stable;
        Ok(bytes)
    }

    /// Abandons the outstanding offer, ours (refused with 488/491, timed out) or theirs
    /// (we refuse it): back to `Stable`, the previous negotiation kept.
    pub fn rollback(&mut self) {
        self.local_offer = None;
        self.remote_offer = None;
        self.state = SignalingState::Stable;
    }

    /// The description in effect that we sent last (an offer rolled back does not count).
    pub fn current_local(&self) -> Option<Bytes> {
        self.current.as_ref().map(|(bytes, _)| bytes.clone())
    }

    /// The peer's description in effect (its last answer, or the offer we answered).
    pub fn current_remote(&self) -> Option<&SessionDescription> {
        self.remote.as_deref()
    }

    /// The offer we are about to answer.
    pub fn pending_remote_offer(&self) -> Option<&SessionDescription> {
        self.remote_offer.as_deref()
    }

    pub fn negotiated(&self) -> Option<&Negotiated> {
        self.negotiated.as_deref()
    }

    fn expect_state(
        &self,
        op: &'static str,
        expected: SignalingState,
    ) -> Result<(), NegotiationError> {
        if self.state == expected {
            Ok(())
        } else {
            Err(self.wrong_state(op))
        }
    }

    fn wrong_state(&self, op: &'static str) -> NegotiationError {
        NegotiationError::WrongState {
            op,
            state: self.state,
        }
    }

    /// Renders a description, with the last version when it equals the last one sent and
    /// the next version otherwise (RFC 3264 §8).
    fn stamp(&mut self, lines: &[MLine]) -> Bytes {
        if let Some(last) = &self.last_sent {
            let same = render(&self.local, self.session_id, self.version, lines);
            if same.as_bytes() == last.as_ref() {
                return last.clone();
            }
        }
        self.version = self.version.saturating_add(1);
        let bytes = Bytes::from(render(&self.local, self.session_id, self.version, lines));
        self.last_sent = Some(bytes.clone());
        bytes
    }

    fn offer_lines(&self) -> Result<Vec<MLine>, NegotiationError> {
        // Audio needs a port and a codec besides telephone-event.
        let audio_on = self.local.audio
            && self.local.audio_port != 0
            && self.local.codecs.iter().any(|c| !c.is_telephone_event());
        let message = self.local.message.as_ref().filter(|m| m.port != 0);
        let negotiated_audio = self.negotiated.as_ref().and_then(|n| n.audio.as_ref());
        let audio_line = |proto: &str| MLine::Audio {
            port: self.local.audio_port,
            proto: proto.to_owned(),
            codecs: offer_codecs(&self.local.codecs, negotiated_audio),
            ptime: self.local.ptime,
            direction: self.direction,
        };
        let message_line = |m: &MessageCapabilities| MLine::Message {
            port: m.port,
            uri: message_uri(m),
            accept_types: m.accept_types.clone(),
        };
        let mut lines: Vec<MLine> = match &self.current {
            Some((_, previous)) => previous
                .iter()
                .map(|line| match line {
                    MLine::Audio { proto, .. } if audio_on => audio_line(proto),
                    MLine::Message { .. } => match message {
                        Some(m) => message_line(m),
                        None => line.disabled(),
                    },
                    other => other.disabled(),
                })
                .collect(),
            None => Vec::new(),
        };
        if audio_on && !lines.iter().any(|l| matches!(l, MLine::Audio { .. })) {
            add_stream(&mut lines, audio_line("RTP/AVP"));
        }
        if let Some(m) = message
            && !lines.iter().any(|l| matches!(l, MLine::Message { .. }))
        {
            add_stream(&mut lines, message_line(m));
        }
        if lines.iter().all(|l| matches!(l, MLine::Rejected { .. })) {
            return Err(NegotiationError::NothingToOffer);
        }
        Ok(lines)
    }
}

/// A new stream takes a disabled slot of its kind (RFC 3264 §8.1 allows reuse), else goes
/// at the end (never fewer m= lines, §8).
fn add_stream(lines: &mut Vec<MLine>, line: MLine) {
    let kind = line.kind();
    let slot = lines
        .iter_mut()
        .find(|l| matches!(l, MLine::Rejected { .. }) && l.kind() == kind);
    match slot {
        Some(slot) => *slot = line,
        None => lines.push(line),
    }
}

/// The codecs of our offer: ours in our order, each with the payload number negotiated for
/// it when there is one (RFC 3264 §8.3.2), else its own, else a free dynamic number.
fn offer_codecs(local: &[Codec], negotiated: Option<&NegotiatedAudio>) -> Vec<Codec> {
    let agreed: Vec<&Codec> = negotiated
        .map(|n| n.codecs.iter().chain(n.telephone_event.iter()).collect())
        .unwrap_or_default();
    let mut out: Vec<Codec> = Vec::with_capacity(local.len());
    for codec in local {
        let agreed_as = agreed.iter().find(|a| a.same_format(codec));
        let wanted = agreed_as.map_or(codec.payload_type, |a| a.payload_type);
        let taken = |pt: u8| {
            out.iter().any(|c| c.payload_type == pt)
                || agreed
                    .iter()
                    .any(|a| a.payload_type == pt && !a.same_format(codec))
        };
        let payload_type = if wanted <= 127 && !taken(wanted) {
            wanted
        } else {
            match (96..=127).find(|&pt| !taken(pt)) {
                Some(pt) => pt,
                None => continue,
            }
        };
        out.push(Codec {
            payload_type,
            // as in our answers: our parameters, else the ones agreed
            fmtp: codec
                .fmtp
                .clone()
                .or_else(|| agreed_as.and_then(|a| a.fmtp.clone())),
            ..codec.clone()
        });
    }
    out
}

fn message_uri(m: &MessageCapabilities) -> String {
    m.uri
        .as_deref()
        .map(|u| u.split_whitespace().collect::<String>())
        .filter(|u| !u.is_empty())
        .unwrap_or_else(|| "null".to_owned())
}

/// A token safe for a space-separated field: whitespace removed, `-` when empty.
fn token(text: &str) -> String {
    let token: String = text.split_whitespace().collect();
    if token.is_empty() {
        "-".to_owned()
    } else {
        token
    }
}

fn render(local: &LocalCapabilities, session_id: u64, version: u64, lines: &[MLine]) -> String {
    let mut sdp = String::with_capacity(256);
    let name = local.session_name.replace(['\r', '\n'], " ");
    let _ = write!(
        sdp,
        "v=0\r\no={} {session_id} {version} IN {} {}\r\ns={}\r\n{}\r\nt=0 0\r\n",
        token(&local.username),
        address_type(local.address),
        local.address,
        if name.trim().is_empty() { "-" } else { &name },
        connection_line(local.address),
    );
    for line in lines {
        match line {
            MLine::Audio {
                port,
                proto,
                codecs,
                ptime,
                direction,
            } => {
                let formats: Vec<String> =
                    codecs.iter().map(|c| c.payload_type.to_string()).collect();
                let _ = write!(sdp, "m=audio {port} {proto} {}\r\n", formats.join(" "));
                for codec in codecs {
                    let _ = write!(sdp, "a=rtpmap:{}\r\n", codec.rtpmap());
                    if let Some(fmtp) = codec.fmtp.as_deref().map(str::trim)
                        && !fmtp.is_empty()
                        && !fmtp.contains(['\r', '\n'])
                    {
                        let _ = write!(sdp, "a=fmtp:{} {fmtp}\r\n", codec.payload_type);
                    }
                }
                if let Some(ptime) = ptime {
                    let _ = write!(sdp, "a=ptime:{ptime}\r\n");
                }
                let _ = write!(sdp, "a={direction}\r\n");
            }
            MLine::Message {
                port,
                uri,
                accept_types,
            } => {
                let _ = write!(sdp, "m=message {port} sip {uri}\r\n");
                let types: Vec<String> = accept_types
                    .iter()
                    .map(|t| t.split_whitespace().collect::<String>())
                    .filter(|t| !t.is_empty())
                    .collect();
                if !types.is_empty() {
                    let _ = write!(sdp, "a=accept-types:{}\r\n", types.join(" "));
                }
            }
            MLine::Rejected {
                media,
                proto,
                formats,
            } => {
                let _ = write!(sdp, "m={media} 0 {proto} {}\r\n", formats.join(" "));
            }
        }
    }
    sdp
}

/// The attributes we act on in an audio stream; the others are reported as ignored.
const AUDIO_ATTRIBUTES: &[&str] = &[
    "rtpmap", "fmtp", "ptime", "sendrecv", "sendonly", "recvonly", "inactive",
];
/// The attributes we act on in a message stream.
const MESSAGE_ATTRIBUTES: &[&str] = &[
    "accept-types",
    "sendrecv",
    "sendonly",
    "recvonly",
    "inactive",
];

fn ignored_attributes(
    index: usize,
    media: &MediaSection,
    acted_on: &[&str],
) -> Vec<IgnoredAttribute> {
    media
        .attributes()
        .filter(|(name, value)| {
            !acted_on.contains(name)
                // An a=rtpmap we could not read was not acted on either.
                || (*name == "rtpmap" && value.and_then(parse_rtpmap).is_none())
        })
        .map(|(name, value)| IgnoredAttribute {
            index,
            name: name.to_owned(),
            value: value.map(str::to_owned),
        })
        .collect()
}

/// The direction a peer really has: a `c=0.0.0.0` peer (RFC 2543 hold, RFC 3264 §8.4)
/// receives nothing.
fn effective_direction(media: &MediaSection) -> Direction {
    let written = media.direction();
    if media.is_legacy_hold() {
        Direction::from_flags(written.sends(), false)
    } else {
        written
    }
}

fn remote_address(media: &MediaSection) -> Option<SocketAddr> {
    if media.port() == 0 || media.is_legacy_hold() {
        return None;
    }
    media
        .effective_connection()
        .map(|ip| SocketAddr::new(ip, media.port()))
}

/// Why we cannot take an offered audio stream's transport, if we cannot (RFC 3264 §6:
/// such a stream is rejected with port 0).
fn audio_transport_refusal(offer: &SessionDescription, media: &MediaSection) -> Option<String> {
    let proto = media.proto();
    let plain = proto.eq_ignore_ascii_case("RTP/AVP") || proto.eq_ignore_ascii_case("RTP/AVPF");
    if !plain {
        return Some(if proto.to_ascii_uppercase().contains("SAVP") {
            format!("SRTP ({proto}) not supported")
        } else {
            format!("transport {proto} not supported")
        });
    }
    if media.attribute("fingerprint").is_some() || offer.attribute("fingerprint").is_some() {
        return Some("DTLS-SRTP (a=fingerprint) not supported".to_owned());
    }
    // RTP/AVP with a=crypto is SRTP offered in the AVP profile; only Microsoft's explicit
    // a=encryption:optional (MS-SDPEXT) says an unencrypted answer is welcome.
    if media.attribute("crypto").is_some()
        && media.attribute("encryption").map(str::trim) != Some("optional")
    {
        return Some(format!("SRTP ({proto} with a=crypto) not supported"));
    }
    None
}

/// Per offered stream, our answer line; plus the outcome. RFC 3264 §6.
fn answer_offer(
    offer: &SessionDescription,
    local: &LocalCapabilities,
    our_direction: Direction,
) -> Result<(Vec<MLine>, Negotiated), NegotiationError> {
    let mut negotiated = Negotiated::default();
    let mut lines = Vec::with_capacity(offer.media().len());
    let mut no_common_codec = false;
    for (index, media) in offer.media().iter().enumerate() {
        let outcome = match media.kind() {
            _ if media.port() == 0 => Err("declined by the offerer (port 0)".to_owned()),
            MediaKind::Audio => answer_audio(offer, media, local, our_direction, &negotiated)
                .map(|(line, audio)| {
                    negotiated.audio = Some(audio);
                    line
                })
                .inspect_err(|reason| no_common_codec |= reason == NO_COMMON_CODEC),
            MediaKind::Message => {
                answer_message(media, local, &negotiated).map(|(line, message)| {
                    negotiated.message = Some(message);
                    line
                })
            }
            other => Err(format!("{other} not supported")),
        };
        match outcome {
            Ok(line) => {
                let acted_on = match media.kind() {
                    MediaKind::Audio => AUDIO_ATTRIBUTES,
                    _ => MESSAGE_ATTRIBUTES,
                };
                negotiated
                    .ignored
                    .extend(ignored_attributes(index, media, acted_on));
                lines.push(line);
            }
            Err(reason) => {
                negotiated.rejected.push(RejectedStream {
                    index,
                    kind: media.kind().clone(),
                    reason,
                });
                lines.push(MLine::Rejected {
                    media: media.media_token().to_owned(),
                    proto: media.proto().to_owned(),
                    formats: media.formats().to_vec(),
                });
            }
        }
    }
    if negotiated.audio.is_none() && negotiated.message.is_none() {
        return Err(if no_common_codec {
            NegotiationError::NoCommonCodec
        } else {
            NegotiationError::NothingAcceptable
        });
    }
    Ok((lines, negotiated))
}

const NO_COMMON_CODEC: &str = "no common codec";

fn answer_audio(
    offer: &SessionDescription,
    media: &MediaSection,
    local: &LocalCapabilities,
    our_direction: Direction,
    so_far: &Negotiated,
) -> Result<(MLine, NegotiatedAudio), String> {
    if !local.audio || local.audio_port == 0 {
        return Err("audio not enabled".to_owned());
    }
    if so_far.audio.is_some() {
        return Err("only one audio stream is supported".to_owned());
    }
    if let Some(reason) = audio_transport_refusal(offer, media) {
        return Err(reason);
    }
    // Common codecs in the offerer's order, with its payload numbers (RFC 3264 §6.1).
    let mut common: Vec<Codec> = Vec::new();
    let mut answered: Vec<Codec> = Vec::new();
    for offered in media.codecs() {
        if let Some(ours) = local.codecs.iter().find(|c| c.same_format(&offered)) {
            answered.push(Codec {
                fmtp: ours.fmtp.clone().or_else(|| offered.fmtp.clone()),
                ..offered.clone()
            });
            common.push(offered);
        }
    }
    let codecs: Vec<Codec> = common
        .iter()
        .filter(|c| !c.is_telephone_event())
        .cloned()
        .collect();
    let Some(codec) = codecs.first().cloned() else {
        return Err(NO_COMMON_CODEC.to_owned());
    };
    let telephone_event = common.iter().find(|c| c.is_telephone_event()).cloned();
    // Keep one telephone-event only.
    let mut seen_event = false;
    answered.retain(|c| !c.is_telephone_event() || !std::mem::replace(&mut seen_event, true));
    let ptime = media.ptime().or(local.ptime);
    let remote_direction = effective_direction(media);
    let local_direction = remote_direction.reversed().intersect(our_direction);
    let line = MLine::Audio {
        port: local.audio_port,
        proto: media.proto().to_owned(),
        codecs: answered,
        ptime,
        direction: local_direction,
    };
    Ok((
        line,
        NegotiatedAudio {
            remote: remote_address(media),
            local_port: local.audio_port,
            codec,
            codecs,
            telephone_event,
            ptime,
            local_direction,
            remote_direction,
        },
    ))
}

/// The offered `a=accept-types`, `text/plain` when absent.
fn accept_types(media: &MediaSection) -> Vec<String> {
    match media.attribute("accept-types") {
        Some(types) if !types.trim().is_empty() => {
            types.split_whitespace().map(str::to_owned).collect()
        }
        _ => vec!["text/plain".to_owned()],
    }
}

/// The types in both lists, in `first`'s order and spelling; `*` (RFC 4975 §8.6) in
/// `first` stands for all of `second`.
fn intersect_types(first: &[String], second: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let push = |t: &String, out: &mut Vec<String>| {
        if !out.iter().any(|o| o.eq_ignore_ascii_case(t)) {
            out.push(t.clone());
        }
    };
    for t in first {
        if t == "*" {
            for s in second {
                push(s, &mut out);
            }
        } else if second.iter().any(|s| s == "*" || s.eq_ignore_ascii_case(t)) {
            push(t, &mut out);
        }
    }
    out
}

fn remote_uri(media: &MediaSection) -> Option<String> {
    media
        .formats()
        .first()
        .filter(|f| !f.eq_ignore_ascii_case("null"))
        .cloned()
}

fn answer_message(
    media: &MediaSection,
    local: &LocalCapabilities,
    so_far: &Negotiated,
) -> Result<(MLine, NegotiatedMessage), String> {
    let proto = media.proto();
    if proto.to_ascii_uppercase().contains("MSRP") {
        return Err("MSRP not supported".to_owned());
    }
    if !proto.eq_ignore_ascii_case("sip") {
        return Err(format!("message transport {proto} not supported"));
    }
    let Some(ours) = local.message.as_ref().filter(|m| m.port != 0) else {
        return Err("instant messaging not enabled".to_owned());
    };
    if so_far.message.is_some() {
        return Err("only one message stream is supported".to_owned());
    }
    let types = intersect_types(&accept_types(media), &ours.accept_types);
    if types.is_empty() {
        return Err("no common accept-types".to_owned());
    }
    let line = MLine::Message {
        port: ours.port,
        uri: message_uri(ours),
        accept_types: types.clone(),
    };
    Ok((
        line,
        NegotiatedMessage {
            accept_types: types,
            remote_uri: remote_uri(media),
        },
    ))
}

fn mismatch(reason: String) -> NegotiationError {
    NegotiationError::AnswerMismatch { reason }
}

/// Reads an answer against the offer we sent (RFC 3264 §6, §7).
fn read_answer(
    offered: &[MLine],
    answer: &SessionDescription,
) -> Result<Negotiated, NegotiationError> {
    if answer.media().len() != offered.len() {
        return Err(mismatch(format!(
            "{} m= lines answered, {} offered",
            answer.media().len(),
            offered.len()
        )));
    }
    let mut negotiated = Negotiated::default();
    for (index, (ours, theirs)) in offered.iter().zip(answer.media()).enumerate() {
        if ours.kind() != *theirs.kind() {
            return Err(mismatch(format!(
                "m= line {index} is {}, {} was offered",
                theirs.kind(),
                ours.kind()
            )));
        }
        let reject = |reason: &str| RejectedStream {
            index,
            kind: ours.kind(),
            reason: reason.to_owned(),
        };
        let offered_proto = match ours {
            MLine::Audio { proto, .. } => proto.as_str(),
            MLine::Message { .. } => "sip",
            MLine::Rejected { proto, .. } => proto.as_str(),
        };
        if theirs.port() != 0 && !theirs.proto().eq_ignore_ascii_case(offered_proto) {
            return Err(mismatch(format!(
                "m= line {index} answers transport {}, {offered_proto} was offered",
                theirs.proto()
            )));
        }
        match ours {
            MLine::Rejected { .. } => {
                if theirs.port() != 0 {
                    return Err(mismatch(format!(
                        "m= line {index} accepted, it was offered with port 0"
                    )));
                }
                negotiated.rejected.push(reject("disabled in our offer"));
            }
            _ if theirs.port() == 0 => negotiated.rejected.push(reject("rejected by the answerer")),
            MLine::Audio {
                port,
                codecs,
                ptime,
                direction,
                ..
            } => {
                let common = answered_codecs(index, codecs, theirs)?;
                let main: Vec<Codec> = common
                    .iter()
                    .filter(|c| !c.is_telephone_event())
                    .cloned()
                    .collect();
                let Some(codec) = main.first().cloned() else {
                    return Err(mismatch(format!(
                        "m= line {index} accepted with no codec besides telephone-event"
                    )));
                };
                negotiated.audio = Some(NegotiatedAudio {
                    remote: remote_address(theirs),
                    local_port: *port,
                    codec,
                    codecs: main,
                    telephone_event: common.iter().find(|c| c.is_telephone_event()).cloned(),
                    ptime: theirs.ptime().or(*ptime),
                    local_direction: *direction,
                    remote_direction: effective_direction(theirs),
                });
                negotiated
                    .ignored
                    .extend(ignored_attributes(index, theirs, AUDIO_ATTRIBUTES));
            }
            MLine::Message {
                accept_types: ours, ..
            } => {
                let types = intersect_types(ours, &accept_types(theirs));
                if types.is_empty() {
                    return Err(mismatch(format!(
                        "m= line {index} accepted with no accept-type we offered"
                    )));
                }
                negotiated.message = Some(NegotiatedMessage {
                    accept_types: types,
                    remote_uri: remote_uri(theirs),
                });
                negotiated
                    .ignored
                    .extend(ignored_attributes(index, theirs, MESSAGE_ATTRIBUTES));
            }
        }
    }
    if negotiated.audio.is_none() && negotiated.message.is_none() {
        return Err(NegotiationError::NothingAcceptable);
    }
    Ok(negotiated)
}

/// The answer's codecs, each of which must be one we offered: by format (name, rate,
/// channels), or by payload number for a number written without `a=rtpmap`.
fn answered_codecs(
    index: usize,
    offered: &[Codec],
    answer: &MediaSection,
) -> Result<Vec<Codec>, NegotiationError> {
    let described = answer.codecs();
    let mut common = Vec::new();
    for format in answer.formats() {
        let codec = match described
            .iter()
            .find(|c| c.payload_type.to_string() == *format)
        {
            Some(codec) => offered
                .iter()
                .any(|o| o.same_format(codec))
                .then(|| codec.clone()),
            None => offered
                .iter()
                .find(|o| o.payload_type.to_string() == *format)
                .cloned(),
        };
        match codec {
            Some(codec) => common.push(codec),
            None => {
                return Err(mismatch(format!(
                    "m= line {index} answers format {format}, which was not offered"
                )));
            }
        }
    }
    Ok(common)
}
