//! RTP packets (RFC 3550 §5.1): a validating, allocation-free reader of the header (the
//! relay reads every packet it forwards), and the packets Tandem sends, built here.

use std::ops::Range;

use bytes::Bytes;

use crate::RtpError;

/// The fixed part of an RTP header.
pub const RTP_HEADER_LEN: usize = 12;

/// The fields of an RTP header Tandem acts on (RFC 3550 §5.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RtpHeader {
    pub marker: bool,
    pub payload_type: u8,
    pub sequence: u16,
    pub timestamp: u32,
    pub ssrc: u32,
}

/// Reads and validates an RTP packet: version 2, the CSRC list, the header extension and
/// the padding all inside the datagram (RFC 3550 §5.1, §5.3.1). Returns the header and
/// where the payload lies in `data`. Allocates nothing.
pub fn parse_rtp(data: &[u8]) -> Result<(RtpHeader, Range<usize>), RtpError> {
    let len = data.len();
    let fixed: &[u8; RTP_HEADER_LEN] = data
        .get(..RTP_HEADER_LEN)
        .and_then(|b| b.try_into().ok())
        .ok_or(RtpError::TooShort {
        len,
        needed: RTP_HEADER_LEN,
        what: "fixed header",
    })?;
    let [b0, b1, s0, s1, t0, t1, t2, t3, c0, c1, c2, c3] = *fixed;
    let version = b0 >> 6;
    if version != 2 {
        return Err(RtpError::Version(version));
    }
    let padded = b0 & 0x20 != 0;
    let extended = b0 & 0x10 != 0;
    let csrc_count = usize::from(b0 & 0x0f);
    let mut start = RTP_HEADER_LEN + 4 * csrc_count;
    if len < start {
        return Err(RtpError::TooShort {
            len,
            needed: start,
            what: "CSRC list",
        });
    }
    if extended {
        let words = data
            .get(start + 2..start + 4)
            .and_then(|w| <[u8; 2]>::try_from(w).ok())
            .map(|w| usize::from(u16::from_be_bytes(w)))
            .ok_or(RtpError::TooShort {
                len,
                needed: start + 4,
                what: "header extension",
            })?;
        start += 4 + 4 * words;
        if len < start {
            return Err(RtpError::TooShort {
                len,
                needed: start,
                what: "header extension",
            });
        }
    }
    let mut end = len;
    if padded {
        let padding = data.last().map_or(0, |&p| usize::from(p));
        if padding == 0 || padding > len - start {
            return Err(RtpError::Padding { padding, len });
        }
        end -= padding;
    }
    let header = RtpHeader {
        marker: b1 & 0x80 != 0,
        payload_type: b1 & 0x7f,
        sequence: u16::from_be_bytes([s0, s1]),
        timestamp: u32::from_be_bytes([t0, t1, t2, t3]),
        ssrc: u32::from_be_bytes([c0, c1, c2, c3]),
    };
    Ok((header, start..end))
}

/// RFC 5761 §4: a datagram whose second byte is 192–223 is RTCP (payload types 64–95 with
/// the marker bit are not used by RTP), so RTP and RTCP sharing a port can be told apart.
pub fn looks_like_rtcp(data: &[u8]) -> bool {
    matches!(data.get(1), Some(192..=223))
}

/// Builds an RTP packet (RFC 3550 §5.1): the 12-byte fixed header (V=2, no padding, no
/// extension, no CSRC) and `payload`. The payload type is taken modulo 128 (7 bits).
pub fn build_rtp(header: &RtpHeader, payload: &[u8]) -> Result<Bytes, RtpError> {
    let mut out = Vec::with_capacity(RTP_HEADER_LEN + payload.len());
    let b1 = (header.payload_type & 0x7f) | if header.marker { 0x80 } else { 0 };
    out.extend_from_slice(&[0x80, b1]);
    out.extend_from_slice(&header.sequence.to_be_bytes());
    out.extend_from_slice(&header.timestamp.to_be_bytes());
    out.extend_from_slice(&header.ssrc.to_be_bytes());
    out.extend_from_slice(payload);
    Ok(Bytes::from(out))
}

/// Rewrites the sequence number, timestamp and SSRC of a packet already validated by
/// [`parse_rtp`], in place (RFC 3550 §5.1 fixed offsets); the marker bit when `marker` is
/// set. Returns false when `packet` is shorter than a fixed header.
pub fn rewrite_header(
    packet: &mut [u8],
    sequence: u16,
    timestamp: u32,
    ssrc: u32,
    marker: bool,
) -> bool {
    let Some(fixed) = packet
        .get_mut(..RTP_HEADER_LEN)
        .and_then(|b| <&mut [u8; RTP_HEADER_LEN]>::try_from(b).ok())
    else {
        return false;
    };
    let [s0, s1] = sequence.to_be_bytes();
    let [t0, t1, t2, t3] = timestamp.to_be_bytes();
    let [c0, c1, c2, c3] = ssrc.to_be_bytes();
    let b1 = if marker { fixed[1] | 0x80 } else { fixed[1] };
    *fixed = [fixed[0], b1, s0, s1, t0, t1, t2, t3, c0, c1, c2, c3];
    true
}

/// Sets the payload type of a packet already validated by [`parse_rtp`], in place (RFC
/// 3550 §5.1: the 7 bits after the marker), keeping the marker bit. The payload type is
/// taken modulo 128. Returns false when `packet` is shorter than a fixed header.
pub fn set_payload_type(packet: &mut [u8], payload_type: u8) -> bool {
    if packet.len() < RTP_HEADER_LEN {
        return false;
    }
    match packet.get_mut(1) {
        Some(b1) => {
            *b1 = (*b1 & 0x80) | (payload_type & 0x7f);
            true
        }
        None => false,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;
    use proptest::prelude::*;
    use webrtc_util::marshal::Unmarshal;

    #[test]
    fn built_packets_read_back() {
        let header = RtpHeader {
            marker: true,
            payload_type: 8,
            sequence: 65535,
            timestamp: 0xdead_beef,
            ssrc: 0x1234_5678,
        };
        let payload = [0xd5u8; 160];
        let packet = build_rtp(&header, &payload).unwrap();
        assert_eq!(packet.len(), 172);
        let (read, range) = parse_rtp(&packet).unwrap();
        assert_eq!(read, header);
        assert_eq!(&packet[range], &payload[..]);
        assert!(!looks_like_rtcp(&packet));
    }

    #[test]
    fn csrc_extension_and_padding_are_skipped() {
        // V=2 P=1 X=1 CC=1, PT 0, then one CSRC, a one-word extension, 3 bytes of payload
        // and 2 bytes of padding.
        let mut p = vec![0xb1, 0x00, 0, 1, 0, 0, 0, 160, 0, 0, 0, 7];
        p.extend_from_slice(&[0, 0, 0, 9]); // CSRC
        p.extend_from_slice(&[0xbe, 0xde, 0, 1, 1, 2, 3, 4]); // extension
        p.extend_from_slice(&[0xaa, 0xbb, 0xcc, 0, 2]);
        let (h, range) = parse_rtp(&p).unwrap();
        assert_eq!(h.ssrc, 7);
        assert_eq!(&p[range], &[0xaa, 0xbb, 0xcc]);
    }

    #[test]
    fn bad_packets_are_refused_with_the_reason() {
        assert!(matches!(
            parse_rtp(&[0x80; 5]),
            Err(RtpError::TooShort { .. })
        ));
        let mut v1 = [0u8; 12];
        v1[0] = 0x40;
        assert_eq!(parse_rtp(&v1), Err(RtpError::Version(1)));
        let mut cc = [0u8; 12];
        cc[0] = 0x8f;
        assert!(matches!(
            parse_rtp(&cc),
            Err(RtpError::TooShort {
                what: "CSRC list",
                ..
            })
        ));
        let mut pad = [0u8; 13];
        pad[0] = 0xa0;
        pad[12] = 9;
        assert!(matches!(parse_rtp(&pad), Err(RtpError::Padding { .. })));
        pad[12] = 0;
        assert!(matches!(parse_rtp(&pad), Err(RtpError::Padding { .. })));
    }

    #[test]
    fn rtcp_is_told_apart() {
        assert!(looks_like_rtcp(&[0x80, 200, 0, 6]));
        assert!(looks_like_rtcp(&[0x81, 201, 0, 7]));
        assert!(!looks_like_rtcp(&[0x80, 0x80]));
        assert!(!looks_like_rtcp(&[]));
    }

    #[test]
    fn rewrite_in_place() {
        let header = RtpHeader {
            marker: false,
            payload_type: 0,
            sequence: 1,
            timestamp: 2,
            ssrc: 3,
        };
        let mut packet = build_rtp(&header, &[1, 2, 3]).unwrap().to_vec();
        assert!(rewrite_header(&mut packet, 10, 20, 30, true));
        let (h, _) = parse_rtp(&packet).unwrap();
        assert_eq!(
            (h.sequence, h.timestamp, h.ssrc, h.marker),
            (10, 20, 30, true)
        );
        assert!(!rewrite_header(&mut [0u8; 4], 1, 1, 1, false));
    }

    #[test]
    fn payload_type_set_in_place_keeps_the_marker() {
        let header = RtpHeader {
            marker: true,
            payload_type: 96,
            sequence: 1,
            timestamp: 2,
            ssrc: 3,
        };
        let mut packet = build_rtp(&header, &[1, 2, 3]).unwrap().to_vec();
        assert!(set_payload_type(&mut packet, 101));
        let (h, range) = parse_rtp(&packet).unwrap();
        assert_eq!((h.payload_type, h.marker, h.sequence), (101, true, 1));
        assert_eq!(&packet[range], &[1, 2, 3]);
        assert!(set_payload_type(&mut packet, 0x80 | 8));
        assert_eq!(parse_rtp(&packet).unwrap().0.payload_type, 8);
        assert!(!set_payload_type(&mut [0x80u8; 11], 0));
    }

    proptest! {
        /// Our reader agrees with the `rtp` crate's on every packet the crate accepts,
        /// and never panics on arbitrary bytes.
        #[test]
        fn agrees_with_the_rtp_crate(data in proptest::collection::vec(any::<u8>(), 0..200)) {
            let ours = parse_rtp(&data);
            let mut buf = Bytes::copy_from_slice(&data);
            if let (Ok((h, range)), Ok(theirs)) = (&ours, rtp::packet::Packet::unmarshal(&mut buf)) {
                prop_assert_eq!(h.sequence, theirs.header.sequence_number);
                prop_assert_eq!(h.timestamp, theirs.header.timestamp);
                prop_assert_eq!(h.ssrc, theirs.header.ssrc);
                prop_assert_eq!(h.payload_type, theirs.header.payload_type);
                prop_assert_eq!(&data[range.clone()], &theirs.payload[..]);
            }
        }
    }
}
