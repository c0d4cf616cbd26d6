//! Our RTP and RTCP wire codec (RFC 3550 §5.1, §6.4–§6.6) cross-checked against webrtc-rs's
//! `rtp` and `rtcp` crates, both ways: what we build they read to the same values, and what
//! they build we read to the same values.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use bytes::Bytes;
use proptest::prelude::*;
use rtcp::goodbye::Goodbye as TheirGoodbye;
use rtcp::packet::Packet;
use rtcp::receiver_report::ReceiverReport as TheirReceiverReport;
use rtcp::reception_report::ReceptionReport;
use rtcp::sender_report::SenderReport as TheirSenderReport;
use rtcp::source_description::{
    SdesType, SourceDescription as TheirSourceDescription, SourceDescriptionChunk,
    SourceDescriptionItem,
};
use rtp_session::{
    Goodbye, ReceiverReport, ReportBlock, RtcpPacket, RtpHeader, SdesChunk, SdesItem, SenderReport,
    SourceDescription, build_compound, build_rtp, parse_compound, parse_rtp,
};
use webrtc_util::marshal::{Marshal, Unmarshal};

fn theirs_of(block: &ReportBlock) -> ReceptionReport {
    ReceptionReport {
        ssrc: block.ssrc,
        fraction_lost: block.fraction_lost,
        total_lost: block.total_lost,
        last_sequence_number: block.last_sequence_number,
        jitter: block.jitter,
        last_sender_report: block.last_sender_report,
        delay: block.delay,
    }
}

fn ours_of(report: &ReceptionReport) -> ReportBlock {
    ReportBlock {
        ssrc: report.ssrc,
        fraction_lost: report.fraction_lost,
        total_lost: report.total_lost,
        last_sequence_number: report.last_sequence_number,
        jitter: report.jitter,
        last_sender_report: report.last_sender_report,
        delay: report.delay,
    }
}

fn block() -> impl Strategy<Value = ReportBlock> {
    (
        any::<u32>(),
        any::<u8>(),
        0u32..=0x00ff_ffff,
        any::<u32>(),
        any::<u32>(),
        any::<u32>(),
        any::<u32>(),
    )
        .prop_map(
            |(ssrc, fraction_lost, total_lost, seq, jitter, lsr, delay)| ReportBlock {
                ssrc,
                fraction_lost,
                total_lost,
                last_sequence_number: seq,
                jitter,
                last_sender_report: lsr,
                delay,
            },
        )
}

fn blocks() -> impl Strategy<Value = Vec<ReportBlock>> {
    proptest::collection::vec(block(), 0..=31)
}

fn text(max: usize) -> impl Strategy<Value = Bytes> {
    proptest::collection::vec(any::<u8>(), 0..=max).prop_map(Bytes::from)
}

/// SDES item types the `rtcp` crate knows (RFC 3550 §6.5: CNAME 1 … PRIV 8).
fn sdes_type(kind: u8) -> SdesType {
    match kind {
        1 => SdesType::SdesCname,
        2 => SdesType::SdesName,
        3 => SdesType::SdesEmail,
        4 => SdesType::SdesPhone,
        5 => SdesType::SdesLocation,
        6 => SdesType::SdesTool,
        7 => SdesType::SdesNote,
        _ => SdesType::SdesPrivate,
    }
}

fn sdes() -> impl Strategy<Value = SourceDescription> {
    let item = (1u8..=8, text(255)).prop_map(|(item_type, text)| SdesItem { item_type, text });
    let chunk = (any::<u32>(), proptest::collection::vec(item, 1..4))
        .prop_map(|(source, items)| SdesChunk { source, items });
    proptest::collection::vec(chunk, 1..4).prop_map(|chunks| SourceDescription { chunks })
}

fn their_sdes(sdes: &SourceDescription) -> TheirSourceDescription {
    TheirSourceDescription {
        chunks: sdes
            .chunks
            .iter()
            .map(|c| SourceDescriptionChunk {
                source: c.source,
                items: c
                    .items
                    .iter()
                    .map(|i| SourceDescriptionItem {
                        sdes_type: sdes_type(i.item_type),
                        text: i.text.clone(),
                    })
                    .collect(),
            })
            .collect(),
    }
}

fn assert_sdes_eq(ours: &SourceDescription, theirs: &TheirSourceDescription) {
    assert_eq!(ours.chunks.len(), theirs.chunks.len());
    for (o, t) in ours.chunks.iter().zip(&theirs.chunks) {
        assert_eq!(o.source, t.source);
        assert_eq!(o.items.len(), t.items.len());
        for (oi, ti) in o.items.iter().zip(&t.items) {
            assert_eq!(oi.item_type, ti.sdes_type as u8);
            assert_eq!(oi.text, ti.text);
        }
    }
}

/// A compound packet in our types: SR or RR first, SDES, maybe BYE.
fn compound() -> impl Strategy<Value = Vec<RtcpPacket>> {
    (
        any::<bool>(),
        any::<(u32, u64, u32, u32, u32)>(),
        blocks(),
        sdes(),
        proptest::option::of((proptest::collection::vec(any::<u32>(), 0..=31), text(255))),
    )
        .prop_map(
            |(sender, (ssrc, ntp, rtp, packets, octets), reports, sdes, bye)| {
                let mut out = vec![if sender {
                    RtcpPacket::SenderReport(SenderReport {
                        ssrc,
                        ntp_time: ntp,
                        rtp_time: rtp,
                        packet_count: packets,
                        octet_count: octets,
                        reports,
                    })
                } else {
                    RtcpPacket::ReceiverReport(ReceiverReport { ssrc, reports })
                }];
                out.push(RtcpPacket::SourceDescription(sdes));
                if let Some((sources, reason)) = bye {
                    out.push(RtcpPacket::Goodbye(Goodbye { sources, reason }));
                }
                out
            },
        )
}

proptest! {
    /// Our RTP packets are what the `rtp` crate reads, and what it would have written.
    #[test]
    fn rtp_we_build_is_read_by_the_rtp_crate(
        marker in any::<bool>(),
        payload_type in 0u8..128,
        sequence in any::<u16>(),
        timestamp in any::<u32>(),
        ssrc in any::<u32>(),
        payload in proptest::collection::vec(any::<u8>(), 0..300),
    ) {
        let header = RtpHeader { marker, payload_type, sequence, timestamp, ssrc };
        let ours = build_rtp(&header, &payload).unwrap();
        let theirs = rtp::packet::Packet::unmarshal(&mut ours.clone()).unwrap();
        prop_assert_eq!(theirs.header.version, 2);
        prop_assert!(!theirs.header.padding && !theirs.header.extension);
        prop_assert!(theirs.header.csrc.is_empty());
        prop_assert_eq!(theirs.header.marker, marker);
        prop_assert_eq!(theirs.header.payload_type, payload_type);
        prop_assert_eq!(theirs.header.sequence_number, sequence);
        prop_assert_eq!(theirs.header.timestamp, timestamp);
        prop_assert_eq!(theirs.header.ssrc, ssrc);
        prop_assert_eq!(&theirs.payload[..], &payload[..]);
        prop_assert_eq!(theirs.marshal().unwrap(), ours.clone());
        let (read, range) = parse_rtp(&ours).unwrap();
        prop_assert_eq!(read, header);
        prop_assert_eq!(&ours[range], &payload[..]);
    }

    /// Our compound packets (SR/RR with 0..=31 blocks, SDES, BYE with or without a reason)
    /// read by the `rtcp` crate give the same values; and by us too.
    #[test]
    fn rtcp_we_build_is_read_by_the_rtcp_crate(packets in compound()) {
        let data = build_compound(&packets).unwrap();
        prop_assert_eq!(data.len() % 4, 0);
        prop_assert_eq!(&parse_compound(&data).unwrap(), &packets);
        let theirs = rtcp::packet::unmarshal(&mut data.clone()).unwrap();
        prop_assert_eq!(theirs.len(), packets.len());
        for (ours, theirs) in packets.iter().zip(&theirs) {
            let any = theirs.as_any();
            match ours {
                RtcpPacket::SenderReport(sr) => {
                    let t = any.downcast_ref::<TheirSenderReport>().expect("an SR");
                    prop_assert_eq!(t.ssrc, sr.ssrc);
                    prop_assert_eq!(t.ntp_time, sr.ntp_time);
                    prop_assert_eq!(t.rtp_time, sr.rtp_time);
                    prop_assert_eq!(t.packet_count, sr.packet_count);
                    prop_assert_eq!(t.octet_count, sr.octet_count);
                    prop_assert!(t.profile_extensions.is_empty());
                    let read: Vec<ReportBlock> = t.reports.iter().map(ours_of).collect();
                    prop_assert_eq!(&read, &sr.reports);
                }
                RtcpPacket::ReceiverReport(rr) => {
                    let t = any.downcast_ref::<TheirReceiverReport>().expect("an RR");
                    prop_assert_eq!(t.ssrc, rr.ssrc);
                    prop_assert!(t.profile_extensions.is_empty());
                    let read: Vec<ReportBlock> = t.reports.iter().map(ours_of).collect();
                    prop_assert_eq!(&read, &rr.reports);
                }
                RtcpPacket::SourceDescription(sdes) => {
                    let t = any.downcast_ref::<TheirSourceDescription>().expect("an SDES");
                    assert_sdes_eq(sdes, t);
                }
                RtcpPacket::Goodbye(bye) => {
                    let t = any.downcast_ref::<TheirGoodbye>().expect("a BYE");
                    prop_assert_eq!(&t.sources, &bye.sources);
                    prop_assert_eq!(&t.reason, &bye.reason);
                }
                other => panic!("not built: {other:?}"),
            }
        }
    }

    /// SRs with 0..=31 blocks marshalled by the `rtcp` crate read to the same values.
    #[test]
    fn sr_the_rtcp_crate_builds_is_read_by_us(
        (ssrc, ntp_time, rtp_time, packet_count, octet_count) in any::<(u32, u64, u32, u32, u32)>(),
        reports in blocks(),
    ) {
        let sr = TheirSenderReport {
            ssrc,
            ntp_time,
            rtp_time,
            packet_count,
            octet_count,
            reports: reports.iter().map(theirs_of).collect(),
            profile_extensions: Bytes::new(),
        };
        let data = sr.marshal().unwrap();
        let read = parse_compound(&data).unwrap();
        prop_assert_eq!(read, vec![RtcpPacket::SenderReport(SenderReport {
            ssrc, ntp_time, rtp_time, packet_count, octet_count, reports,
        })]);
    }

    /// An RR, SDES and BYE (with or without a reason) from the `rtcp` crate, as one
    /// compound packet, read to the same values.
    #[test]
    fn rr_sdes_and_bye_the_rtcp_crate_builds_are_read_by_us(
        ssrc in any::<u32>(),
        reports in blocks(),
        sdes in sdes(),
        sources in proptest::collection::vec(any::<u32>(), 0..=31),
        reason in text(255),
    ) {
        let rr = TheirReceiverReport {
            ssrc,
            reports: reports.iter().map(theirs_of).collect(),
            profile_extensions: Bytes::new(),
        };
        let bye = TheirGoodbye { sources: sources.clone(), reason: reason.clone() };
        let packets: Vec<Box<dyn Packet + Send + Sync>> =
            vec![Box::new(rr), Box::new(their_sdes(&sdes)), Box::new(bye)];
        let data = rtcp::packet::marshal(&packets).unwrap();
        let read = parse_compound(&data).unwrap();
        prop_assert_eq!(read, vec![
            RtcpPacket::ReceiverReport(ReceiverReport { ssrc, reports }),
            RtcpPacket::SourceDescription(sdes),
            RtcpPacket::Goodbye(Goodbye { sources, reason }),
        ]);
    }

    /// A compound packet cut anywhere is refused, unless the cut falls between two of its
    /// packets: then exactly those before it are read (RFC 3550 A.2, lengths add up).
    #[test]
    fn a_truncated_compound_is_refused_or_read_to_a_prefix(
        packets in compound(),
        cut in any::<prop::sample::Index>(),
    ) {
        let data = build_compound(&packets).unwrap();
        let mut boundaries = vec![0usize];
        for p in &packets {
            let mut one = Vec::new();
            p.write_to(&mut one).unwrap();
            boundaries.push(boundaries.last().unwrap() + one.len());
        }
        prop_assert_eq!(*boundaries.last().unwrap(), data.len());
        let at = cut.index(data.len());
        let read = parse_compound(&data[..at]);
        match boundaries.iter().position(|&b| b == at) {
            Some(0) | None => prop_assert!(read.is_err(), "cut at {} of {}", at, data.len()),
            Some(n) => prop_assert_eq!(read.unwrap(), packets[..n].to_vec()),
        }
    }

    /// Arbitrary bytes never panic our reader, and whatever both readers accept, they
    /// read the same report blocks from.
    #[test]
    fn parse_compound_never_panics(data in proptest::collection::vec(any::<u8>(), 0..300)) {
        let ours = parse_compound(&data);
        if let (Ok(ours), Ok(theirs)) = (ours, rtcp::packet::unmarshal(&mut Bytes::from(data))) {
            for (o, t) in ours.iter().zip(&theirs) {
                if let (RtcpPacket::ReceiverReport(o), Some(t)) =
                    (o, t.as_any().downcast_ref::<TheirReceiverReport>())
                {
                    prop_assert_eq!(o.ssrc, t.ssrc);
                    let read: Vec<ReportBlock> = t.reports.iter().map(ours_of).collect();
                    prop_assert_eq!(&o.reports, &read);
                }
            }
        }
    }
}

#[test]
fn a_bye_without_a_reason_from_the_crate_has_an_empty_reason() {
    let bye = TheirGoodbye {
        sources: vec![7, 8],
        reason: Bytes::new(),
    };
    let data = bye.marshal().unwrap();
    assert_eq!(
        parse_compound(&data).unwrap(),
        vec![RtcpPacket::Goodbye(Goodbye {
            sources: vec![7, 8],
            reason: Bytes::new(),
        })]
    );
    // Ours carries no reason octet at all (§6.6: the reason is optional).
    let ours = build_compound(&[RtcpPacket::Goodbye(Goodbye {
        sources: vec![7, 8],
        reason: Bytes::new(),
    })])
    .unwrap();
    assert_eq!(&ours[..], &[0x82, 203, 0, 2, 0, 0, 0, 7, 0, 0, 0, 8]);
}
