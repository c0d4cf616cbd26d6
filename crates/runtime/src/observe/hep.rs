//! HEPv3 (the Homer Encapsulation Protocol, version 3), sans-IO: a captured SIP message
//! as a HEP packet for a collector (Homer, sngrep `-L`, Wireshark's `hep` dissector).
//!
//! HEPv3 (draft-hep-v3, "HEP3 Network Protocol Specification"): the ASCII id `HEP3`, the
//! total length (u16, network order), then chunks. A chunk is the vendor id (u16, 0 for
//! the generic chunks), the chunk type (u16) and the chunk's length including these six
//! bytes (u16), then its value. Generic chunk types:
//!
//! | type | value |
//! |---|---|
//! | 0x0001 | IP protocol family (u8: 2 IPv4, 10 IPv6) |
//! | 0x0002 | IP protocol id (u8: 17 UDP, 6 TCP) |
//! | 0x0003 / 0x0004 | IPv4 source / destination address (4 bytes) |
//! | 0x0005 / 0x0006 | IPv6 source / destination address (16 bytes) |
//! | 0x0007 / 0x0008 | source / destination port (u16) |
//! | 0x0009 | timestamp, seconds since the epoch (u32) |
//! | 0x000a | timestamp, microseconds offset (u32) |
//! | 0x000b | protocol type (u8: 1 SIP) |
//! | 0x000c | capture agent id (u32) |
//! | 0x000d | keep-alive timer (u16, seconds): not sent |
//! | 0x000e | authentication key (the collector's password) |
//! | 0x000f | the captured payload |
//! | 0x0011 | internal correlation id (we send the Call-ID) |

use std::net::{IpAddr, SocketAddr};
use std::time::{SystemTime, UNIX_EPOCH};

pub const IP_FAMILY: u16 = 0x0001;
pub const IP_PROTOCOL: u16 = 0x0002;
pub const IPV4_SRC: u16 = 0x0003;
pub const IPV4_DST: u16 = 0x0004;
pub const IPV6_SRC: u16 = 0x0005;
pub const IPV6_DST: u16 = 0x0006;
pub const SRC_PORT: u16 = 0x0007;
pub const DST_PORT: u16 = 0x0008;
pub const TIME_SECONDS: u16 = 0x0009;
pub const TIME_MICROS: u16 = 0x000a;
pub const PROTOCOL_TYPE: u16 = 0x000b;
pub const CAPTURE_ID: u16 = 0x000c;
pub const AUTH_KEY: u16 = 0x000e;
pub const PAYLOAD: u16 = 0x000f;
pub const CORRELATION_ID: u16 = 0x0011;

/// Protocol type 1: SIP.
pub const PROTOCOL_SIP: u8 = 1;

/// One captured message, to encode.
#[derive(Debug, Clone, Copy)]
pub struct Capture<'a> {
    pub src: SocketAddr,
    pub dst: SocketAddr,
    /// The IP protocol: UDP (17) for UDP, TCP (6) for TCP, TLS, WS and WSS.
    pub ip_protocol: u8,
    pub time: SystemTime,
    pub capture_id: u32,
    pub auth_key: Option<&'a str>,
    pub correlation_id: Option<&'a str>,
    pub payload: &'a [u8],
}

/// The IP protocol number of a SIP transport.
pub fn ip_protocol(transport: sip_message::Transport) -> u8 {
    match transport {
        sip_message::Transport::Udp => 17,
        _ => 6,
    }
}

fn chunk(out: &mut Vec<u8>, kind: u16, value: &[u8]) -> Option<()> {
    let len = u16::try_from(value.len() + 6).ok()?;
    out.extend_from_slice(&0u16.to_be_bytes());
    out.extend_from_slice(&kind.to_be_bytes());
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(value);
    Some(())
}

/// Both addresses in one family: IPv4 when both are, else IPv6 (IPv4-mapped).
fn addresses(src: IpAddr, dst: IpAddr) -> ([u8; 16], [u8; 16], bool) {
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            let mut a = [0; 16];
            let mut b = [0; 16];
            a[..4].copy_from_slice(&s.octets());
            b[..4].copy_from_slice(&d.octets());
            (a, b, true)
        }
        (s, d) => {
            let six = |ip: IpAddr| match ip {
                IpAddr::V4(v4) => v4.to_ipv6_mapped().octets(),
                IpAddr::V6(v6) => v6.octets(),
            };
            (six(s), six(d), false)
        }
    }
}

/// Encodes a HEPv3 packet; `None` when it would exceed the 65535 bytes its length field
/// can say.
pub fn encode(c: &Capture<'_>) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(c.payload.len() + 128);
    out.extend_from_slice(b"HEP3");
    out.extend_from_slice(&[0, 0]);
    let (src, dst, v4) = addresses(c.src.ip(), c.dst.ip());
    chunk(&mut out, IP_FAMILY, &[if v4 { 2 } else { 10 }])?;
    chunk(&mut out, IP_PROTOCOL, &[c.ip_protocol])?;
    if v4 {
        chunk(&mut out, IPV4_SRC, src.get(..4)?)?;
        chunk(&mut out, IPV4_DST, dst.get(..4)?)?;
    } else {
        chunk(&mut out, IPV6_SRC, &src)?;
        chunk(&mut out, IPV6_DST, &dst)?;
    }
    chunk(&mut out, SRC_PORT, &c.src.port().to_be_bytes())?;
    chunk(&mut out, DST_PORT, &c.dst.port().to_be_bytes())?;
    let since = c.time.duration_since(UNIX_EPOCH).unwrap_or_default();
    let seconds = u32::try_from(since.as_secs()).unwrap_or(u32::MAX);
    chunk(&mut out, TIME_SECONDS, &seconds.to_be_bytes())?;
    chunk(&mut out, TIME_MICROS, &since.subsec_micros().to_be_bytes())?;
    chunk(&mut out, PROTOCOL_TYPE, &[PROTOCOL_SIP])?;
    chunk(&mut out, CAPTURE_ID, &c.capture_id.to_be_bytes())?;
    if let Some(key) = c.auth_key {
        chunk(&mut out, AUTH_KEY, key.as_bytes())?;
    }
    if let Some(id) = c.correlation_id {
        chunk(&mut out, CORRELATION_ID, id.as_bytes())?;
    }
    chunk(&mut out, PAYLOAD, c.payload)?;
    let total = u16::try_from(out.len()).ok()?;
    out.get_mut(4..6)?.copy_from_slice(&total.to_be_bytes());
    Some(out)
}

/// Why a packet is not HEPv3.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HepError {
    #[error("not a HEP3 packet")]
    NotHep3,
    #[error("the total length {said} is not the packet's {actual}")]
    Length { said: usize, actual: usize },
    #[error("chunk at {at} is truncated or shorter than its header")]
    Chunk { at: usize },
}

/// A chunk as read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chunk<'a> {
    pub vendor: u16,
    pub kind: u16,
    pub value: &'a [u8],
}

fn be16(data: &[u8], at: usize) -> Option<u16> {
    let b = data.get(at..at + 2)?;
    Some(u16::from_be_bytes([*b.first()?, *b.get(1)?]))
}

/// Reads a HEPv3 packet into its chunks, checking every length field.
pub fn decode(data: &[u8]) -> Result<Vec<Chunk<'_>>, HepError> {
    if data.get(..4) != Some(b"HEP3") {
        return Err(HepError::NotHep3);
    }
    let said = usize::from(be16(data, 4).ok_or(HepError::NotHep3)?);
    if said != data.len() {
        return Err(HepError::Length {
            said,
            actual: data.len(),
        });
    }
    let mut chunks = Vec::new();
    let mut at = 6;
    while at < data.len() {
        let bad = HepError::Chunk { at };
        let vendor = be16(data, at).ok_or(bad.clone())?;
        let kind = be16(data, at + 2).ok_or(bad.clone())?;
        let len = usize::from(be16(data, at + 4).ok_or(bad.clone())?);
        if len < 6 {
            return Err(bad);
        }
        let value = data.get(at + 6..at + len).ok_or(bad)?;
        chunks.push(Chunk {
            vendor,
            kind,
            value,
        });
        at += len;
    }
    Ok(chunks)
}

/// A decoded packet's fields, for tests and tools.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Decoded {
    pub family: u8,
    pub ip_protocol: u8,
    pub src: Option<SocketAddr>,
    pub dst: Option<SocketAddr>,
    pub seconds: u32,
    pub micros: u32,
    pub protocol_type: u8,
    pub capture_id: u32,
    pub auth_key: Option<String>,
    pub correlation_id: Option<String>,
    pub payload: Vec<u8>,
}

/// Decodes the generic chunks of a packet.
pub fn decode_fields(data: &[u8]) -> Result<Decoded, HepError> {
    let mut d = Decoded::default();
    let (mut src_ip, mut dst_ip, mut sport, mut dport) = (None, None, 0u16, 0u16);
    let u32_of = |v: &[u8]| <[u8; 4]>::try_from(v).map(u32::from_be_bytes).unwrap_or(0);
    let u16_of = |v: &[u8]| <[u8; 2]>::try_from(v).map(u16::from_be_bytes).unwrap_or(0);
    for c in decode(data)? {
        if c.vendor != 0 {
            continue;
        }
        match c.kind {
            IP_FAMILY => d.family = c.value.first().copied().unwrap_or(0),
            IP_PROTOCOL => d.ip_protocol = c.value.first().copied().unwrap_or(0),
            IPV4_SRC | IPV4_DST => {
                let ip = <[u8; 4]>::try_from(c.value).ok().map(IpAddr::from);
                if c.kind == IPV4_SRC {
                    src_ip = ip
                } else {
                    dst_ip = ip
                }
            }
            IPV6_SRC | IPV6_DST => {
                let ip = <[u8; 16]>::try_from(c.value).ok().map(IpAddr::from);
                if c.kind == IPV6_SRC {
                    src_ip = ip
                } else {
                    dst_ip = ip
                }
            }
            SRC_PORT => sport = u16_of(c.value),
            DST_PORT => dport = u16_of(c.value),
            TIME_SECONDS => d.seconds = u32_of(c.value),
            TIME_MICROS => d.micros = u32_of(c.value),
            PROTOCOL_TYPE => d.protocol_type = c.value.first().copied().unwrap_or(0),
            CAPTURE_ID => d.capture_id = u32_of(c.value),
            AUTH_KEY => d.auth_key = Some(String::from_utf8_lossy(c.value).into_owned()),
            CORRELATION_ID => {
                d.correlation_id = Some(String::from_utf8_lossy(c.value).into_owned());
            }
            PAYLOAD => d.payload = c.value.to_vec(),
            _ => {}
        }
    }
    d.src = src_ip.map(|ip| SocketAddr::new(ip, sport));
    d.dst = dst_ip.map(|ip| SocketAddr::new(ip, dport));
    Ok(d)
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
    use std::time::Duration;

    fn sample<'a>(payload: &'a [u8], key: Option<&'a str>) -> Capture<'a> {
        Capture {
            src: "10.1.2.3:5060".parse().unwrap(),
            dst: "192.168.0.9:15060".parse().unwrap(),
            ip_protocol: 17,
            time: UNIX_EPOCH + Duration::new(1_700_000_000, 123_456_789),
            capture_id: 0x0102_0304,
            auth_key: key,
            correlation_id: Some("call-1@x"),
            payload,
        }
    }

    #[test]
    fn every_chunk_as_the_spec_lays_it_out() {
        let payload = b"OPTIONS sip:a@b SIP/2.0\r\n\r\n";
        let packet = encode(&sample(payload, Some("secret"))).unwrap();
        assert_eq!(&packet[..4], b"HEP3");
        assert_eq!(
            usize::from(u16::from_be_bytes([packet[4], packet[5]])),
            packet.len()
        );
        // The first chunk, byte by byte: vendor 0, type 1, length 7, AF_INET.
        assert_eq!(&packet[6..13], &[0, 0, 0, 1, 0, 7, 2]);
        // Then the IP protocol: UDP.
        assert_eq!(&packet[13..20], &[0, 0, 0, 2, 0, 7, 17]);
        // The IPv4 source: length 10.
        assert_eq!(&packet[20..30], &[0, 0, 0, 3, 0, 10, 10, 1, 2, 3]);
        let chunks = decode(&packet).unwrap();
        let kinds: Vec<u16> = chunks.iter().map(|c| c.kind).collect();
        assert_eq!(
            kinds,
            [1, 2, 3, 4, 7, 8, 9, 10, 11, 12, 14, 17, 15],
            "generic chunks in order"
        );
        assert!(chunks.iter().all(|c| c.vendor == 0));
        let d = decode_fields(&packet).unwrap();
        assert_eq!(d.family, 2);
        assert_eq!(d.src, Some("10.1.2.3:5060".parse().unwrap()));
        assert_eq!(d.dst, Some("192.168.0.9:15060".parse().unwrap()));
        assert_eq!((d.seconds, d.micros), (1_700_000_000, 123_456));
        assert_eq!(d.protocol_type, 1);
        assert_eq!(d.capture_id, 0x0102_0304);
        assert_eq!(d.auth_key.as_deref(), Some("secret"));
        assert_eq!(d.correlation_id.as_deref(), Some("call-1@x"));
        assert_eq!(d.payload, payload);
        // The payload chunk's length counts its header.
        let last = packet.len() - payload.len() - 6;
        assert_eq!(&packet[last..last + 4], &[0, 0, 0, 0x0f]);
        assert_eq!(
            usize::from(u16::from_be_bytes([packet[last + 4], packet[last + 5]])),
            payload.len() + 6
        );
    }

    #[test]
    fn ipv6_and_no_key() {
        let mut c = sample(b"x", None);
        c.src = "[::1]:5060".parse().unwrap();
        c.dst = "127.0.0.1:5062".parse().unwrap();
        c.ip_protocol = 6;
        let d = decode_fields(&encode(&c).unwrap()).unwrap();
        assert_eq!(d.family, 10);
        assert_eq!(d.ip_protocol, 6);
        assert_eq!(d.src, Some("[::1]:5060".parse().unwrap()));
        assert_eq!(d.dst, Some("[::ffff:127.0.0.1]:5062".parse().unwrap()));
        assert_eq!(d.auth_key, None);
    }

    #[test]
    fn too_large_and_bad_input() {
        let big = vec![b'a'; 65_535];
        assert!(encode(&sample(&big, None)).is_none());
        assert_eq!(decode(b"HEP2\0\x06"), Err(HepError::NotHep3));
        assert!(matches!(
            decode(b"HEP3\0\x09\0"),
            Err(HepError::Length { .. })
        ));
        assert!(matches!(
            decode(b"HEP3\0\x0b\0\0\0\x01\0"),
            Err(HepError::Chunk { .. })
        ));
        // A chunk claiming a length below its header.
        assert!(matches!(
            decode(b"HEP3\0\x0c\0\0\0\x01\0\x03"),
            Err(HepError::Chunk { .. })
        ));
    }
}
