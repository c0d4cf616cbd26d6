//! Algorithms, qop values and the digest computation (RFC 7616 §3.4, RFC 8760 §2).

use md5::Md5;
use sha2::{Digest, Sha256, Sha512_256};
use std::fmt;

/// A digest algorithm, spelled as in RFC 8760 §2.1 / the IANA "HTTP Digest Algorithm
/// Values" registry: `MD5`, `MD5-sess`, `SHA-256`, `SHA-256-sess`, `SHA-512-256`,
/// `SHA-512-256-sess`. A challenge without `algorithm` means [`Algorithm::Md5`]
/// (RFC 3261 §22.4, RFC 7616 §3.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Algorithm {
    Md5,
    Md5Sess,
    Sha256,
    Sha256Sess,
    Sha512_256,
    Sha512_256Sess,
}

impl Algorithm {
    /// Every supported algorithm, strongest first.
    pub const ALL: [Algorithm; 6] = [
        Algorithm::Sha512_256,
        Algorithm::Sha512_256Sess,
        Algorithm::Sha256,
        Algorithm::Sha256Sess,
        Algorithm::Md5,
        Algorithm::Md5Sess,
    ];

    /// The RFC 8760 §2.1 spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Algorithm::Md5 => "MD5",
            Algorithm::Md5Sess => "MD5-sess",
            Algorithm::Sha256 => "SHA-256",
            Algorithm::Sha256Sess => "SHA-256-sess",
            Algorithm::Sha512_256 => "SHA-512-256",
            Algorithm::Sha512_256Sess => "SHA-512-256-sess",
        }
    }

    /// Parses an `algorithm` token, case-insensitively (RFC 7616 §3.3 tokens are
    /// case-insensitive). `None` for an algorithm this crate does not implement.
    pub fn parse(token: &[u8]) -> Option<Algorithm> {
        Algorithm::ALL
            .into_iter()
            .find(|a| a.as_str().as_bytes().eq_ignore_ascii_case(token))
    }

    /// True for the `-sess` variants, whose A1 mixes in the nonce and cnonce
    /// (RFC 7616 §3.4.2).
    pub fn is_session(self) -> bool {
        matches!(
            self,
            Algorithm::Md5Sess | Algorithm::Sha256Sess | Algorithm::Sha512_256Sess
        )
    }

    /// `H(data)` as lowercase hex (RFC 7616 §3.4: "the string obtained by applying the
    /// digest algorithm to the data", hex-encoded).
    pub fn hash_hex(self, data: &[u8]) -> String {
        match self {
            Algorithm::Md5 | Algorithm::Md5Sess => hex(&Md5::digest(data)),
            Algorithm::Sha256 | Algorithm::Sha256Sess => hex(&Sha256::digest(data)),
            Algorithm::Sha512_256 | Algorithm::Sha512_256Sess => hex(&Sha512_256::digest(data)),
        }
    }

    /// `H(p1:p2:...)`: the parts joined by colons, hashed.
    fn hash_parts(self, parts: &[&[u8]]) -> String {
        let joined = parts.join(&b':');
        self.hash_hex(&joined)
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A quality of protection (RFC 7616 §3.3, RFC 3261 §25.1 `qop-value`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Qop {
    /// Authentication only.
    Auth,
    /// Authentication with integrity protection of the message body: A2 includes
    /// `H(entity-body)` (RFC 7616 §3.4.3).
    AuthInt,
}

impl Qop {
    /// `auth` or `auth-int`.
    pub fn as_str(self) -> &'static str {
        match self {
            Qop::Auth => "auth",
            Qop::AuthInt => "auth-int",
        }
    }

    /// Parses a qop value case-insensitively; `None` for unknown values (e.g. `auth-conf`).
    pub fn parse(token: &[u8]) -> Option<Qop> {
        if token.eq_ignore_ascii_case(b"auth") {
            Some(Qop::Auth)
        } else if token.eq_ignore_ascii_case(b"auth-int") {
            Some(Qop::AuthInt)
        } else {
            None
        }
    }
}

impl fmt::Display for Qop {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Everything the `response` of an Authorization depends on (RFC 7616 §3.4.1).
#[derive(Debug, Clone, Copy)]
pub struct ResponseInput<'a> {
    pub algorithm: Algorithm,
    /// The real username, also when the header carries `userhash=true`.
    pub username: &'a str,
    pub realm: &'a str,
    pub password: &'a str,
    pub method: &'a str,
    /// The `uri` parameter (the Request-URI, RFC 3261 §22.4).
    pub uri: &'a str,
    pub nonce: &'a str,
    /// Required with a qop and with `-sess` algorithms.
    pub cnonce: Option<&'a str>,
    /// The nonce count; formatted as 8 lowercase hex digits.
    pub nc: Option<u32>,
    /// `None`: RFC 2069 compatibility, response = `H(HA1:nonce:HA2)` (RFC 3261 §22.4).
    pub qop: Option<Qop>,
    /// The message body, hashed into A2 for `auth-int`.
    pub body: &'a [u8],
}

/// `H(A1)` (RFC 7616 §3.4.2): `H(username:realm:password)`, and for `-sess`
/// `H(H(username:realm:password):nonce:cnonce)`.
pub fn ha1(input: &ResponseInput<'_>) -> String {
    ha1_with_cnonce(input, input.cnonce)
}

pub(crate) fn ha1_with_cnonce(input: &ResponseInput<'_>, cnonce: Option<&str>) -> String {
    let alg = input.algorithm;
    let base = alg.hash_parts(&[
        input.username.as_bytes(),
        input.realm.as_bytes(),
        input.password.as_bytes(),
    ]);
    if alg.is_session() {
        alg.hash_parts(&[
            base.as_bytes(),
            input.nonce.as_bytes(),
            cnonce.unwrap_or("").as_bytes(),
        ])
    } else {
        base
    }
}

/// The `response` value (RFC 7616 §3.4.1, RFC 3261 §22.4): `H(HA1:nonce:nc:cnonce:qop:HA2)`
/// with a qop, `H(HA1:nonce:HA2)` without; HA2 = `H(method:uri)`, or
/// `H(method:uri:H(body))` for `auth-int` (RFC 7616 §3.4.3).
pub fn response(input: &ResponseInput<'_>) -> String {
    response_with_ha1(input, &ha1(input))
}

pub(crate) fn response_with_ha1(input: &ResponseInput<'_>, ha1: &str) -> String {
    let alg = input.algorithm;
    let ha2 = match input.qop {
        Some(Qop::AuthInt) => alg.hash_parts(&[
            input.method.as_bytes(),
            input.uri.as_bytes(),
            alg.hash_hex(input.body).as_bytes(),
        ]),
        _ => alg.hash_parts(&[input.method.as_bytes(), input.uri.as_bytes()]),
    };
    match input.qop {
        Some(qop) => {
            let nc = format_nc(input.nc.unwrap_or(0));
            alg.hash_parts(&[
                ha1.as_bytes(),
                input.nonce.as_bytes(),
                nc.as_bytes(),
                input.cnonce.unwrap_or("").as_bytes(),
                qop.as_str().as_bytes(),
                ha2.as_bytes(),
            ])
        }
        None => alg.hash_parts(&[ha1.as_bytes(), input.nonce.as_bytes(), ha2.as_bytes()]),
    }
}

/// The `userhash` form of a username (RFC 7616 §3.4.4): `H(username:realm)`.
pub fn userhash(algorithm: Algorithm, username: &str, realm: &str) -> String {
    algorithm.hash_parts(&[username.as_bytes(), realm.as_bytes()])
}

/// `nc` as 8 lowercase hex digits (RFC 7616 §3.4, `nc-value = 8LHEX`).
pub fn format_nc(nc: u32) -> String {
    format!("{nc:08x}")
}

/// Lowercase hex.
pub(crate) fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        // Writing to a String cannot fail.
        let _ = write!(out, "{b:02x}");
    }
    out
}

/// Equality that takes the same time wherever the first difference is.
pub(crate) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// HMAC-SHA-256 (RFC 2104) with a 32-byte key; signs the server's nonces.
pub(crate) fn hmac_sha256(key: &[u8; 32], message: &[u8]) -> [u8; 32] {
    let mut ipad = [0x36u8; 64];
    let mut opad = [0x5cu8; 64];
    for ((i, o), k) in ipad.iter_mut().zip(opad.iter_mut()).zip(key) {
        *i ^= k;
        *o ^= k;
    }
    let inner = Sha256::new()
        .chain_update(ipad)
        .chain_update(message)
        .finalize();
    Sha256::new()
        .chain_update(opad)
        .chain_update(inner)
        .finalize()
        .into()
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

    #[test]
    fn spellings_round_trip_case_insensitively() {
        for a in Algorithm::ALL {
            assert_eq!(Algorithm::parse(a.as_str().as_bytes()), Some(a));
            assert_eq!(
                Algorithm::parse(a.as_str().to_ascii_lowercase().as_bytes()),
                Some(a)
            );
            assert_eq!(a.to_string(), a.as_str());
        }
        assert_eq!(Algorithm::parse(b"SHA-512"), None);
        assert_eq!(Algorithm::parse(b"AKAv1-MD5"), None);
        assert_eq!(Algorithm::parse(b""), None);
    }

    #[test]
    fn hashes_match_known_vectors() {
        assert_eq!(
            Algorithm::Md5.hash_hex(b""),
            "d41d8cd98f00b204e9800998ecf8427e"
        );
        assert_eq!(
            Algorithm::Sha256.hash_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        // FIPS 180-4 SHA-512/256 of "abc".
        assert_eq!(
            Algorithm::Sha512_256Sess.hash_hex(b"abc"),
            "53048e2681941ef99b2e29b76b4c7dabe4c2d0c634fc6d46e0e2f13107e7af23"
        );
    }

    #[test]
    fn hmac_matches_rfc_4231_shape() {
        // RFC 4231 test case 2 uses a 4-byte key "Jefe"; HMAC pads keys shorter than the
        // block with zeros, so the same key zero-padded to 32 bytes gives the same tag.
        let mut key = [0u8; 32];
        key[..4].copy_from_slice(b"Jefe");
        assert_eq!(
            hex(&hmac_sha256(&key, b"what do ya want for nothing?")),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn constant_time_eq_compares() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
    }

    #[test]
    fn nc_is_eight_lowercase_hex_digits() {
        assert_eq!(format_nc(1), "00000001");
        assert_eq!(format_nc(0xABCDEF12), "abcdef12");
    }
}
