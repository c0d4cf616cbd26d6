//! The RTCP wire format, our own codec: sender and receiver reports with their reception
//! report blocks (RFC 3550 §6.4.1, §6.4.2), source descriptions (§6.5), BYE (§6.6) and the
//! compound packets they travel in (§6.1, A.2).
//!
//! Reading checks every length against the datagram and never indexes out of bounds;
//! building refuses what the format cannot carry (more than 31 blocks, chunks or sources,
//! an item or reason over 255 octets, a cumulative loss wider than 24 bits).

use bytes::Bytes;

use crate::RtpError;

/// RTCP packet types (RFC 3550 §12.1).
pub const PT_SR: u8 = 200;
pub const PT_RR: u8 = 201;
pub const PT_SDES: u8 = 202;
pub const PT_BYE: u8 = 203;

/// RFC 3550 §6.5.1: the CNAME item type.
pub const SDES_CNAME: u8 = 1;

/// RFC 3550 §6.4.1: the 5-bit count field (report blocks, SDES chunks, BYE sources).
pub const MAX_COUNT: usize = 31;

/// The common header (RFC 3550 §6.4.1): V, P, count, type, length.
const HEADER_LEN: usize = 4;
/// RFC 3550 §6.4.1: one reception report block.
const REPORT_BLOCK_LEN: usize = 24;
/// RFC 3550 §6.4.1: header, SSRC of sender and the 20-octet sender info.
const SR_FIXED_LEN: usize = 28;
/// RFC 3550 §6.4.2: header and SSRC of packet sender.
const RR_FIXED_LEN: usize = 8;

/// A reception report block (RFC 3550 §6.4.1): what a receiver says about one source.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ReportBlock {
    /// SSRC_n: the source this block is about.
    pub ssrc: u32,
    /// Fraction of its packets lost since the previous report, in 1/256.
    pub fraction_lost: u8,
    /// Cumulative number of packets lost: a signed 24-bit number in the low 24 bits
    /// (see [`ReportBlock::packets_lost`]).
    pub total_lost: u32,
    /// Extended highest sequence number received (cycles in the high 16 bits).
    pub last_sequence_number: u32,
    /// Interarrival jitter, in timestamp units.
    pub jitter: u32,
    /// LSR: the middle 32 bits of the NTP time of the last SR from that source, or 0.
    pub last_sender_report: u32,
    /// DLSR: the delay since that SR, in units of 1/65536 s, or 0.
    pub delay: u32,
}

impl ReportBlock {
    /// The cumulative loss as a number: `total_lost` read as signed 24-bit (§6.4.1).
    pub fn packets_lost(&self) -> i64 {
        let raw = self.total_lost & 0x00ff_ffff;
        if raw & 0x0080_0000 != 0 {
            i64::from(raw) - 0x0100_0000
        } else {
            i64::from(raw)
        }
    }

    fn write(&self, out: &mut Vec<u8>) -> Result<(), RtpError> {
        if self.total_lost > 0x00ff_ffff {
            return Err(RtpError::Build(format!(
                "cumulative loss {:#x} wider than 24 bits",
                self.total_lost
            )));
        }
        out.extend_from_slice(&self.ssrc.to_be_bytes());
        // fraction lost (8 bits) then cumulative lost (24 bits) in one word.
        let word = (u32::from(self.fraction_lost) << 24) | self.total_lost;
        out.extend_from_slice(&word.to_be_bytes());
        out.extend_from_slice(&self.last_sequence_number.to_be_bytes());
        out.extend_from_slice(&self.jitter.to_be_bytes());
        out.extend_from_slice(&self.last_sender_report.to_be_bytes());
        out.extend_from_slice(&self.delay.to_be_bytes());
        Ok(())
    }

    fn read(reader: &mut Reader<'_>) -> Option<Self> {
        let ssrc = reader.u32()?;
        let word = reader.u32()?;
        Some(Self {
            ssrc,
            fraction_lost: (word >> 24) as u8,
            total_lost: word & 0x00ff_ffff,
            last_sequence_number: reader.u32()?,
            jitter: reader.u32()?,
            last_sender_report: reader.u32()?,
            delay: reader.u32()?,
        })
    }
}

/// A sender report (RFC 3550 §6.4.1). Profile-specific extensions are skipped on reading
/// and never written.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SenderReport {
    pub ssrc: u32,
    /// The 64-bit NTP timestamp (32.32 fixed point, RFC 3550 §4).
    pub ntp_time: u64,
    /// The same instant in the RTP clock.
    pub rtp_time: u32,
    pub packet_count: u32,
    pub octet_count: u32,
    pub reports: Vec<ReportBlock>,
}

/// A receiver report (RFC 3550 §6.4.2).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ReceiverReport {
    pub ssrc: u32,
    pub reports: Vec<ReportBlock>,
}

/// One SDES item (RFC 3550 §6.5): its type (1 = CNAME, ...) and text of at most 255 octets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SdesItem {
    pub item_type: u8,
    pub text: Bytes,
}

/// One SDES chunk (RFC 3550 §6.5): a source and its items.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SdesChunk {
    pub source: u32,
    pub items: Vec<SdesItem>,
}

/// A source description packet (RFC 3550 §6.5).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SourceDescription {
    pub chunks: Vec<SdesChunk>,
}

impl SourceDescription {
    /// One chunk for `source` with one CNAME item (RFC 3550 §6.5.1).
    pub fn cname(source: u32, cname: &[u8]) -> Self {
        Self {
            chunks: vec![SdesChunk {
                source,
                items: vec![SdesItem {
                    item_type: SDES_CNAME,
                    text: Bytes::copy_from_slice(cname),
                }],
            }],
        }
    }
}

/// A BYE packet (RFC 3550 §6.6): the sources leaving and an optional reason.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Goodbye {
    pub sources: Vec<u32>,
    /// Empty when the packet carries no reason.
    pub reason: Bytes,
}

/// One packet of a compound RTCP packet.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum RtcpPacket {
    SenderReport(SenderReport),
    ReceiverReport(ReceiverReport),
    SourceDescription(SourceDescription),
    Goodbye(Goodbye),
    /// A packet of another type (APP, feedback, XR, ...) or, when read for a session, an
    /// SDES: framed and skipped. Never built.
    Other {
        packet_type: u8,
        count: u8,
    },
}

impl RtcpPacket {
    /// Appends this packet to `out`, padded to 32 bits inside its own length (the P bit is
    /// never set: §6.4.1 keeps it for the end of a compound packet).
    pub fn write_to(&self, out: &mut Vec<u8>) -> Result<(), RtpError> {
        let start = out.len();
        let (count, packet_type) = match self {
            Self::SenderReport(sr) => {
                let count = count_of(sr.reports.len(), "report blocks")?;
                out.extend_from_slice(&[0; HEADER_LEN]);
                out.extend_from_slice(&sr.ssrc.to_be_bytes());
                out.extend_from_slice(&sr.ntp_time.to_be_bytes());
                out.extend_from_slice(&sr.rtp_time.to_be_bytes());
                out.extend_from_slice(&sr.packet_count.to_be_bytes());
                out.extend_from_slice(&sr.octet_count.to_be_bytes());
                for block in &sr.reports {
                    block.write(out)?;
                }
                (count, PT_SR)
            }
            Self::ReceiverReport(rr) => {
                let count = count_of(rr.reports.len(), "report blocks")?;
                out.extend_from_slice(&[0; HEADER_LEN]);
                out.extend_from_slice(&rr.ssrc.to_be_bytes());
                for block in &rr.reports {
                    block.write(out)?;
                }
                (count, PT_RR)
            }
            Self::SourceDescription(sdes) => {
                let count = count_of(sdes.chunks.len(), "SDES chunks")?;
                out.extend_from_slice(&[0; HEADER_LEN]);
                for chunk in &sdes.chunks {
                    out.extend_from_slice(&chunk.source.to_be_bytes());
                    for item in &chunk.items {
                        if item.item_type == 0 {
                            return Err(RtpError::Build(String::from(
                                "SDES item type 0 is the end of the list",
                            )));
                        }
                        let len = u8::try_from(item.text.len()).map_err(|_| {
                            RtpError::Build(format!(
                                "SDES item of {} octets, at most 255",
                                item.text.len()
                            ))
                        })?;
                        out.extend_from_slice(&[item.item_type, len]);
                        out.extend_from_slice(&item.text);
                    }
                    // §6.5: the item list ends with at least one null octet, and nulls
                    // pad the chunk to the next 32-bit boundary.
                    out.push(0);
                    pad(out, start);
                }
                (count, PT_SDES)
            }
            Self::Goodbye(bye) => {
                let count = count_of(bye.sources.len(), "BYE sources")?;
                out.extend_from_slice(&[0; HEADER_LEN]);
                for source in &bye.sources {
                    out.extend_from_slice(&source.to_be_bytes());
                }
                if !bye.reason.is_empty() {
                    let len = u8::try_from(bye.reason.len()).map_err(|_| {
                        RtpError::Build(format!(
                            "BYE reason of {} octets, at most 255",
                            bye.reason.len()
                        ))
                    })?;
                    out.push(len);
                    out.extend_from_slice(&bye.reason);
                    pad(out, start);
                }
                (count, PT_BYE)
            }
            Self::Other { packet_type, .. } => {
                return Err(RtpError::Build(format!(
                    "RTCP packet type {packet_type} is not built here"
                )));
            }
        };
        let words = (out.len() - start) / 4 - 1;
        let length = u16::try_from(words)
            .map_err(|_| RtpError::Build(format!("RTCP packet of {words} words")))?;
        let [l0, l1] = length.to_be_bytes();
        if let Some(header) = out.get_mut(start..start + HEADER_LEN) {
            header.copy_from_slice(&[0x80 | count, packet_type, l0, l1]);
        }
        Ok(())
    }
}

/// A count for the 5-bit field, or why it does not fit.
fn count_of(n: usize, what: &str) -> Result<u8, RtpError> {
    u8::try_from(n)
        .ok()
        .filter(|&c| usize::from(c) <= MAX_COUNT)
        .ok_or_else(|| RtpError::Build(format!("{n} {what}, at most {MAX_COUNT}")))
}

/// Null octets up to the next 32-bit boundary from `start`.
fn pad(out: &mut Vec<u8>, start: usize) {
    while !(out.len() - start).is_multiple_of(4) {
        out.push(0);
    }
}

/// A compound packet (RFC 3550 §6.1) of `packets` in order. The caller puts an SR or RR
/// first and an SDES with a CNAME in it.
pub fn build_compound(packets: &[RtcpPacket]) -> Result<Bytes, RtpError> {
    let mut out = Vec::with_capacity(128);
    for packet in packets {
        packet.write_to(&mut out)?;
    }
    Ok(Bytes::from(out))
}

/// Reads a compound packet whole (RFC 3550 §6.1, A.2: version 2 throughout, every length
/// inside the datagram and the lengths adding up to it): SR, RR, SDES and BYE are read,
/// other types framed and skipped. Any malformed part refuses the whole datagram.
pub fn parse_compound(data: &[u8]) -> Result<Vec<RtcpPacket>, RtpError> {
    read_compound(data, Detail::Full)
}

/// How much of each packet to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Detail {
    /// Everything [`parse_compound`] reads.
    Full,
    /// What a session acts on: SR, RR and BYE sources. SDES and a BYE's reason are not
    /// read, so a peer's odd SDES does not cost its reports.
    Session,
}

pub(crate) fn read_compound(data: &[u8], detail: Detail) -> Result<Vec<RtcpPacket>, RtpError> {
    if data.is_empty() {
        return Err(RtpError::Rtcp(String::from("empty datagram")));
    }
    let mut packets = Vec::new();
    let mut rest = data;
    while !rest.is_empty() {
        let Some(&[b0, packet_type, l0, l1]) = rest
            .get(..HEADER_LEN)
            .and_then(|h| <&[u8; 4]>::try_from(h).ok())
        else {
            return Err(RtpError::Rtcp(format!(
                "{} bytes left, not a 4-byte header",
                rest.len()
            )));
        };
        if b0 >> 6 != 2 {
            return Err(RtpError::Rtcp(format!("version {}, not 2", b0 >> 6)));
        }
        let len = (usize::from(u16::from_be_bytes([l0, l1])) + 1) * 4;
        let Some(packet) = rest.get(..len) else {
            return Err(RtpError::Rtcp(format!(
                "packet type {packet_type} says {len} bytes, {} left",
                rest.len()
            )));
        };
        rest = rest.get(len..).unwrap_or_default();
        let count = b0 & 0x1f;
        packets.push(read_packet(packet, packet_type, count, detail)?);
    }
    Ok(packets)
}

/// One framed packet: `packet` is exactly its length, header included.
fn read_packet(
    packet: &[u8],
    packet_type: u8,
    count: u8,
    detail: Detail,
) -> Result<RtcpPacket, RtpError> {
    let len = packet.len();
    let blocks = usize::from(count);
    let mut reader = Reader::new(packet, HEADER_LEN);
    match (packet_type, detail) {
        (PT_SR, _) => {
            if len < SR_FIXED_LEN + REPORT_BLOCK_LEN * blocks {
                return Err(RtpError::Rtcp(format!(
                    "SR of {len} bytes with {count} report blocks"
                )));
            }
            let short = || RtpError::Rtcp(format!("SR of {len} bytes"));
            let ssrc = reader.u32().ok_or_else(short)?;
            let ntp_time = reader.u64().ok_or_else(short)?;
            let rtp_time = reader.u32().ok_or_else(short)?;
            let packet_count = reader.u32().ok_or_else(short)?;
            let octet_count = reader.u32().ok_or_else(short)?;
            let reports = read_blocks(&mut reader, blocks).ok_or_else(short)?;
            Ok(RtcpPacket::SenderReport(SenderReport {
                ssrc,
                ntp_time,
                rtp_time,
                packet_count,
                octet_count,
                reports,
            }))
        }
        (PT_RR, _) => {
            if len < RR_FIXED_LEN + REPORT_BLOCK_LEN * blocks {
                return Err(RtpError::Rtcp(format!(
                    "RR of {len} bytes with {count} report blocks"
                )));
            }
            let short = || RtpError::Rtcp(format!("RR of {len} bytes"));
            let ssrc = reader.u32().ok_or_else(short)?;
            let reports = read_blocks(&mut reader, blocks).ok_or_else(short)?;
            Ok(RtcpPacket::ReceiverReport(ReceiverReport { ssrc, reports }))
        }
        (PT_BYE, _) => {
            let short = || RtpError::Rtcp(format!("BYE of {len} bytes with {count} sources"));
            let sources = (0..blocks)
                .map(|_| reader.u32())
                .collect::<Option<Vec<u32>>>()
                .ok_or_else(short)?;
            // §6.6: an optional length-prefixed reason after the sources.
            let reason = match detail {
                Detail::Session => Bytes::new(),
                Detail::Full if reader.is_empty() => Bytes::new(),
                Detail::Full => {
                    let reason_len = reader.u8().map(usize::from).ok_or_else(short)?;
                    let text = reader.bytes(reason_len).ok_or_else(|| {
                        RtpError::Rtcp(format!("BYE reason of {reason_len} octets past its end"))
                    })?;
                    Bytes::copy_from_slice(text)
                }
            };
            Ok(RtcpPacket::Goodbye(Goodbye { sources, reason }))
        }
        (PT_SDES, Detail::Full) => {
            let mut chunks = Vec::with_capacity(blocks);
            for _ in 0..blocks {
                chunks.push(read_chunk(&mut reader).ok_or_else(|| {
                    RtpError::Rtcp(format!("SDES of {len} bytes with {count} chunks"))
                })?);
            }
            Ok(RtcpPacket::SourceDescription(SourceDescription { chunks }))
        }
        // SDES read for a session, APP, feedback and extended reports.
        _ => Ok(RtcpPacket::Other { packet_type, count }),
    }
}

fn read_blocks(reader: &mut Reader<'_>, count: usize) -> Option<Vec<ReportBlock>> {
    (0..count).map(|_| ReportBlock::read(reader)).collect()
}

/// One SDES chunk (RFC 3550 §6.5): SSRC, items up to a null octet, then to the next 32-bit
/// boundary (whatever the padding octets hold).
fn read_chunk(reader: &mut Reader<'_>) -> Option<SdesChunk> {
    let source = reader.u32()?;
    let mut items = Vec::new();
    loop {
        let item_type = reader.u8()?;
        if item_type == 0 {
            reader.align4()?;
            return Some(SdesChunk { source, items });
        }
        let len = usize::from(reader.u8()?);
        let text = Bytes::copy_from_slice(reader.bytes(len)?);
        items.push(SdesItem { item_type, text });
    }
}

/// A bounds-checked big-endian cursor over one packet.
#[derive(Debug)]
struct Reader<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn new(data: &'a [u8], pos: usize) -> Self {
        Self { data, pos }
    }

    fn is_empty(&self) -> bool {
        self.pos >= self.data.len()
    }

    fn bytes(&mut self, n: usize) -> Option<&'a [u8]> {
        let end = self.pos.checked_add(n)?;
        let out = self.data.get(self.pos..end)?;
        self.pos = end;
        Some(out)
    }

    fn array<const N: usize>(&mut self) -> Option<[u8; N]> {
        self.bytes(N).and_then(|b| <[u8; N]>::try_from(b).ok())
    }

    fn u8(&mut self) -> Option<u8> {
        self.array::<1>().map(|[b]| b)
    }

    fn u32(&mut self) -> Option<u32> {
        self.array().map(u32::from_be_bytes)
    }

    fn u64(&mut self) -> Option<u64> {
        self.array().map(u64::from_be_bytes)
    }

    /// Moves to the next multiple of 4 (the packet starts on one), if still inside.
    fn align4(&mut self) -> Option<()> {
        let next = self.pos.div_ceil(4) * 4;
        (next <= self.data.len()).then(|| self.pos = next)
    }
}

#[cfg(test)]
mod tests {
    #![allow(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing
    )]
    use super::*;

    fn block(ssrc: u32) -> ReportBlock {
        ReportBlock {
            ssrc,
            fraction_lost: 0x40,
            total_lost: 0x00ff_fffe,
            last_sequence_number: 0x0001_0005,
            jitter: 17,
            last_sender_report: 0x1122_3344,
            delay: 65536,
        }
    }

    #[test]
    fn a_compound_packet_reads_back() {
        let packets = vec![
            RtcpPacket::SenderReport(SenderReport {
                ssrc: 1,
                ntp_time: 0x0102_0304_0506_0708,
                rtp_time: 9,
                packet_count: 10,
                octet_count: 11,
                reports: vec![block(2), block(3)],
            }),
            RtcpPacket::SourceDescription(SourceDescription::cname(1, b"a@b")),
            RtcpPacket::Goodbye(Goodbye {
                sources: vec![1],
                reason: Bytes::from_static(b"done"),
            }),
        ];
        let data = build_compound(&packets).unwrap();
        // SR 28 + 2 × 24, SDES 4 + 4 + 2 + 3 + 1 → 16, BYE 4 + 4 + 1 + 4 → 16.
        assert_eq!(data.len(), 76 + 16 + 16);
        assert_eq!(parse_compound(&data).unwrap(), packets);
        assert_eq!(block(2).packets_lost(), -2);
        // The session reading skips the SDES and the reason.
        let session = read_compound(&data, Detail::Session).unwrap();
        assert_eq!(
            session[1],
            RtcpPacket::Other {
                packet_type: PT_SDES,
                count: 1
            }
        );
        assert_eq!(
            session[2],
            RtcpPacket::Goodbye(Goodbye {
                sources: vec![1],
                reason: Bytes::new()
            })
        );
    }

    #[test]
    fn sdes_ends_with_a_null_octet_on_a_word_boundary() {
        for (len, total) in [
            (0, 12),
            (1, 12),
            (2, 16),
            (3, 16),
            (5, 16),
            (6, 20),
            (255, 268),
        ] {
            let cname = vec![b'x'; len];
            let mut out = Vec::new();
            RtcpPacket::SourceDescription(SourceDescription::cname(7, &cname))
                .write_to(&mut out)
                .unwrap();
            assert_eq!(out.len(), total, "CNAME of {len}");
            assert_eq!(out[0], 0x81);
            assert_eq!(usize::from(out[3]), total / 4 - 1);
            assert!(out[10 + len..].iter().all(|&b| b == 0));
            assert!(out.len() > 10 + len, "at least one null octet");
        }
    }

    #[test]
    fn what_the_format_cannot_carry_is_refused() {
        let many = RtcpPacket::ReceiverReport(ReceiverReport {
            ssrc: 1,
            reports: vec![block(1); 32],
        });
        assert!(build_compound(&[many]).is_err());
        let wide = RtcpPacket::ReceiverReport(ReceiverReport {
            ssrc: 1,
            reports: vec![ReportBlock {
                total_lost: 0x0100_0000,
                ..block(1)
            }],
        });
        assert!(build_compound(&[wide]).is_err());
        let long = RtcpPacket::SourceDescription(SourceDescription::cname(1, &[b'x'; 256]));
        assert!(build_compound(&[long]).is_err());
        let reason = RtcpPacket::Goodbye(Goodbye {
            sources: vec![],
            reason: Bytes::from(vec![b'r'; 256]),
        });
        assert!(build_compound(&[reason]).is_err());
        let other = RtcpPacket::Other {
            packet_type: 204,
            count: 0,
        };
        assert!(build_compound(&[other]).is_err());
    }

    #[test]
    fn bad_lengths_are_refused() {
        assert!(parse_compound(&[]).is_err());
        assert!(parse_compound(&[0x80, 200, 0]).is_err());
        // SDES whose item runs past the packet.
        assert!(parse_compound(&[0x81, 202, 0, 2, 0, 0, 0, 1, 1, 9, b'a', b'b']).is_err());
        // SDES without the null octet.
        assert!(parse_compound(&[0x81, 202, 0, 2, 0, 0, 0, 1, 1, 2, b'a', b'b']).is_err());
        // SDES with fewer chunks than its count.
        assert!(parse_compound(&[0x82, 202, 0, 2, 0, 0, 0, 1, 1, 1, b'a', 0]).is_err());
        // BYE whose reason runs past the packet.
        assert!(parse_compound(&[0x81, 203, 0, 2, 0, 0, 0, 1, 8, b'a', 0, 0]).is_err());
        // ... which a session does not read.
        assert!(
            read_compound(
                &[0x81, 203, 0, 2, 0, 0, 0, 1, 8, b'a', 0, 0],
                Detail::Session
            )
            .is_ok()
        );
        // An APP packet is framed and skipped.
        assert_eq!(
            parse_compound(&[0x80, 204, 0, 0]).unwrap(),
            vec![RtcpPacket::Other {
                packet_type: 204,
                count: 0
            }]
        );
    }
}
