//! Numbers and addresses written as ASCII without `core::fmt`. A B2BUA writes its own
//! address into every Via and Contact and a fresh hex id into every branch and tag:
//! through `format!` that was a tenth of the time spent building a message.

use std::net::{Ipv4Addr, SocketAddr};

/// `n` in decimal into `out`.
pub fn push_u32(out: &mut Vec<u8>, n: u32) {
    out.extend_from_slice(u32_digits(n, &mut [0; 10]));
}

/// `n` in decimal, as a slice of `digits`.
pub fn u32_digits(n: u32, digits: &mut [u8; 10]) -> &[u8] {
    let mut at = digits.len();
    let mut n = n;
    loop {
        at -= 1;
        if let Some(d) = digits.get_mut(at) {
            *d = b'0' + (n % 10) as u8;
        }
        n /= 10;
        if n == 0 || at == 0 {
            break;
        }
    }
    digits.get(at..).unwrap_or_default()
}

/// A dotted quad into `out`.
pub fn push_ipv4(out: &mut Vec<u8>, ip: Ipv4Addr) {
    for (i, octet) in ip.octets().into_iter().enumerate() {
        if i > 0 {
            out.push(b'.');
        }
        push_u32(out, u32::from(octet));
    }
}

/// `host:port`, an IPv6 host in brackets (RFC 3261 §25.1 `hostport`).
pub fn push_socket_addr(out: &mut Vec<u8>, addr: SocketAddr) {
    match addr {
        SocketAddr::V4(a) => push_ipv4(out, *a.ip()),
        SocketAddr::V6(a) => {
            use std::io::Write;
            let _ = write!(out, "[{}]", a.ip());
        }
    }
    out.push(b':');
    push_u32(out, u32::from(addr.port()));
}

/// `n` as 16 lower-case hex digits.
pub fn push_hex64(out: &mut Vec<u8>, n: u64) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for shift in (0..16).rev() {
        let nibble = ((n >> (shift * 4)) & 0xf) as usize;
        out.push(HEX.get(nibble).copied().unwrap_or(b'0'));
    }
}

/// A dotted quad as a string slice of `buf` (no allocation: `Host`'s `Display`).
pub fn ipv4_str(ip: Ipv4Addr, buf: &mut [u8; 15]) -> &str {
    let mut n = 0;
    for (i, octet) in ip.octets().into_iter().enumerate() {
        let mut put = |b: u8| {
            if let Some(slot) = buf.get_mut(n) {
                *slot = b;
                n += 1;
            }
        };
        if i > 0 {
            put(b'.');
        }
        if octet >= 100 {
            put(b'0' + octet / 100);
        }
        if octet >= 10 {
            put(b'0' + octet / 10 % 10);
        }
        put(b'0' + octet % 10);
    }
    std::str::from_utf8(buf.get(..n).unwrap_or_default()).unwrap_or_default()
}

/// A dotted quad, read as strictly as `Ipv4Addr::from_str` (four decimal octets,
/// none over 255, no leading zero) in a fraction of its time: every Via, Contact and
/// URI host of a call between addresses is one.
pub fn parse_ipv4(b: &[u8]) -> Option<Ipv4Addr> {
    let mut octets = [0u8; 4];
    let mut parts = b.split(|&c| c == b'.');
    for slot in &mut octets {
        let part = parts.next()?;
        if part.is_empty() || part.len() > 3 || (part.len() > 1 && part.first() == Some(&b'0')) {
            return None;
        }
        let mut value: u32 = 0;
        for &c in part {
            if !c.is_ascii_digit() {
                return None;
            }
            value = value * 10 + u32::from(c - b'0');
        }
        *slot = u8::try_from(value).ok()?;
    }
    if parts.next().is_some() {
        return None;
    }
    Some(Ipv4Addr::from(octets))
}

#[cfg(test)]
#[allow(clippy::indexing_slicing)]
mod tests {
    use super::*;
    use std::net::Ipv6Addr;

    #[test]
    fn the_same_text_as_display() {
        for n in [0u32, 7, 10, 99, 100, 65535, u32::MAX] {
            let mut out = Vec::new();
            push_u32(&mut out, n);
            assert_eq!(out, n.to_string().as_bytes());
        }
        for ip in [
            Ipv4Addr::new(0, 0, 0, 0),
            Ipv4Addr::new(127, 0, 0, 1),
            Ipv4Addr::new(255, 255, 255, 255),
            Ipv4Addr::new(10, 20, 100, 9),
        ] {
            let mut out = Vec::new();
            push_ipv4(&mut out, ip);
            assert_eq!(out, ip.to_string().as_bytes());
            let mut buf = [0u8; 15];
            assert_eq!(ipv4_str(ip, &mut buf), ip.to_string());
            for port in [0u16, 5060, 65535] {
                let addr = SocketAddr::new(ip.into(), port);
                let mut out = Vec::new();
                push_socket_addr(&mut out, addr);
                assert_eq!(out, addr.to_string().as_bytes());
            }
        }
        for text in [
            "127.0.0.1",
            "0.0.0.0",
            "255.255.255.255",
            "256.1.1.1",
            "1.2.3",
            "1.2.3.4.5",
            "01.2.3.4",
            "1.2.3.04",
            "1..2.3",
            ".1.2.3",
            "1.2.3.",
            "",
            "1.2.3.a",
            "1234.1.1.1",
            "10.0.0.1",
            "192.168.001.1",
            "9.99.199.249",
            "1.2.3.4 ",
        ] {
            assert_eq!(
                parse_ipv4(text.as_bytes()),
                text.parse::<Ipv4Addr>().ok(),
                "{text:?}"
            );
        }
        // Every short string of digits and dots reads as std reads it.
        let alphabet = b"0129.5";
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        for _ in 0..20_000 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let len = (seed % 16) as usize;
            let text: Vec<u8> = (0..len)
                .map(|i| alphabet[((seed >> (i * 3 + 4)) % 6) as usize])
                .collect();
            let std = std::str::from_utf8(&text)
                .ok()
                .and_then(|t| t.parse::<Ipv4Addr>().ok());
            assert_eq!(
                parse_ipv4(&text),
                std,
                "{:?}",
                String::from_utf8_lossy(&text)
            );
        }
        let v6 = SocketAddr::new(Ipv6Addr::LOCALHOST.into(), 5061);
        let mut out = Vec::new();
        push_socket_addr(&mut out, v6);
        assert_eq!(out, b"[::1]:5061");
        for n in [0u64, 1, 0xdead_beef, u64::MAX] {
            let mut out = Vec::new();
            push_hex64(&mut out, n);
            assert_eq!(out, format!("{n:016x}").as_bytes());
        }
    }
}
