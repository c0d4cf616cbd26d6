//! The UAS side (RFC 3261 §22.1, §22.4; RFC 7616 §3.3, §3.5): challenges peers and
//! verifies their credentials, with self-validating nonces and per-nonce replay state.

use crate::digest::{self, Algorithm, Qop, ResponseInput, constant_time_eq, hex, hmac_sha256};
use crate::header::{Authorization, Challenge};
use std::collections::BTreeMap;
use std::fmt;
use std::time::{Duration, Instant};

/// How many nonces' replay state a server keeps by default; past it the oldest is evicted.
pub const DEFAULT_MAX_NONCES: usize = 100_000;

/// What a [`DigestServer`] challenges with.
#[derive(Clone)]
pub struct ServerConfig {
    /// The protection space (RFC 3261 §22.1: e.g. the domain name).
    pub realm: String,
    /// Key that signs the nonces, from the caller's seed. Use a new one per run: nonces
    /// carry time since this server's `epoch`.
    pub secret: [u8; 32],
    /// How long a nonce is fresh (RFC 7616 §3.3 leaves it to the server), e.g. 300 s.
    pub nonce_ttl: Duration,
    /// Algorithms offered, one challenge each, in order of preference (RFC 8760 §2.4: the
    /// preferred first). Empty means the default, `[Sha256, Md5]`.
    pub algorithms: Vec<Algorithm>,
    /// qop values offered. Empty: no `qop` in challenges (RFC 2069 style, not advised).
    pub qop: Vec<Qop>,
}

impl ServerConfig {
    /// Defaults: 300 s nonces, `[SHA-256, MD5]` (RFC 8760 §2.4), qop `auth`.
    pub fn new(realm: impl Into<String>, secret: [u8; 32]) -> ServerConfig {
        ServerConfig {
            realm: realm.into(),
            secret,
            nonce_ttl: Duration::from_secs(300),
            algorithms: vec![Algorithm::Sha256, Algorithm::Md5],
            qop: vec![Qop::Auth],
        }
    }
}

impl fmt::Debug for ServerConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerConfig")
            .field("realm", &self.realm)
            .field("secret", &"<redacted>")
            .field("nonce_ttl", &self.nonce_ttl)
            .field("algorithms", &self.algorithms)
            .field("qop", &self.qop)
            .finish()
    }
}

/// The outcome of [`DigestServer::verify`], and what to answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// The credentials are right: process the request.
    Authorized { username: String },
    /// The response is right but the nonce expired, or is one whose replay state was
    /// evicted: re-challenge with `stale=true` (RFC 7616 §3.3), the client retries without
    /// asking its user.
    Stale,
    /// The nonce count is not greater than the last one seen for this nonce (RFC 7616
    /// §3.4): a replayed request. Re-challenge with a fresh nonce.
    Replay,
    /// The nonce is not one this server issued, or was altered: re-challenge.
    InvalidNonce,
    /// `password` does not know the user: 403, or re-challenge.
    UnknownUser,
    /// The credentials are for another realm: re-challenge (RFC 3261 §22.1).
    WrongRealm,
    /// The response does not match (wrong password, or an altered request): 403, or
    /// re-challenge and let the client's loop guard stop.
    BadResponse,
    /// The value cannot be parsed, or uses something this server did not offer (an
    /// algorithm, a qop, `userhash`): 400 or re-challenge.
    Malformed(String),
}

/// Replay state of one nonce.
#[derive(Debug, Clone)]
struct NonceUse {
    /// Highest `nc` accepted.
    nc: u32,
    /// The cnonce of the first accepted request, for clients that keep the `-sess` key
    /// of their first request while changing cnonce (RFC 7616 §3.4.2).
    first_cnonce: Option<String>,
}

/// A decoded nonce: when and in which order it was issued.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct NonceKey {
    issued_ms: u64,
    counter: u64,
}

/// The UAS side of digest authentication. Nonces are self-validating: `hex(ms since epoch,
/// 8 bytes) hex(counter, 8 bytes) hex(HMAC-SHA-256(secret, realm ts counter), 16 bytes)`,
/// so no table is needed to accept one; the table only holds the highest `nc` per nonce
/// (bounded, oldest evicted).
pub struct DigestServer {
    config: ServerConfig,
    epoch: Instant,
    counter: u64,
    uses: BTreeMap<NonceKey, NonceUse>,
    max_nonces: usize,
    /// Every nonce at or below this key lost its replay state to eviction while maybe
    /// fresh: without state it could be replayed, so it is answered [`Verdict::Stale`].
    evicted_upto: Option<NonceKey>,
}

impl fmt::Debug for DigestServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DigestServer")
            .field("config", &self.config)
            .field("counter", &self.counter)
            .field("nonces", &self.uses.len())
            .field("max_nonces", &self.max_nonces)
            .finish_non_exhaustive()
    }
}

const NONCE_HEX_LEN: usize = 64;
const TAG_LEN: usize = 16;

impl DigestServer {
    /// A server whose nonces count time from `epoch` (any `Instant` before the first call).
    pub fn new(mut config: ServerConfig, epoch: Instant) -> Self {
        if config.algorithms.is_empty() {
            config.algorithms = vec![Algorithm::Sha256, Algorithm::Md5];
        }
        config.algorithms.dedup();
        DigestServer {
            config,
            epoch,
            counter: 0,
            uses: BTreeMap::new(),
            max_nonces: DEFAULT_MAX_NONCES,
            evicted_upto: None,
        }
    }

    /// Caps the replay table (default [`DEFAULT_MAX_NONCES`], at least 1).
    pub fn set_max_nonces(&mut self, max: usize) {
        self.max_nonces = max.max(1);
        self.evict_over_cap();
    }

    pub fn config(&self) -> &ServerConfig {
        &self.config
    }

    /// How many nonces have replay state.
    pub fn tracked_nonces(&self) -> usize {
        self.uses.len()
    }

    /// The challenges for a 401/407, one per offered algorithm, each with a fresh nonce
    /// (RFC 8760 §2.4). `stale`: the last request failed only on an expired nonce.
    pub fn challenges(&mut self, now: Instant, stale: bool) -> Vec<Challenge> {
        let algorithms = self.config.algorithms.clone();
        algorithms
            .into_iter()
            .map(|algorithm| Challenge {
                realm: self.config.realm.clone(),
                nonce: self.issue_nonce(now),
                opaque: None,
                stale,
                algorithm,
                qop: self.config.qop.clone(),
                domain: None,
                userhash: false,
            })
            .collect()
    }

    /// The `WWW-Authenticate` (or `Proxy-Authenticate`) values for a 401/407, one per
    /// offered algorithm, fresh nonce each.
    pub fn challenge(&mut self, now: Instant, stale: bool) -> Vec<String> {
        self.challenges(now, stale)
            .iter()
            .map(Challenge::to_header_value)
            .collect()
    }

    /// Checks one `Authorization` (or `Proxy-Authorization`) value of a request whose
    /// method is `method` and body `body` (RFC 3261 §22.4, RFC 7616 §3.4). `password`
    /// looks a user up (`None`: unknown). The digest-uri is taken from the value; whether
    /// it names the Request-URI is for the caller to check if it wants to.
    ///
    /// Order: syntax, realm, offered algorithm/qop, nonce signature, user, response, then
    /// freshness (so `Stale` is said only to a client that knows the password, RFC 7616
    /// §3.3), then replay (the count is recorded only for a right response).
    pub fn verify(
        &mut self,
        now: Instant,
        method: &str,
        authorization: &[u8],
        body: &[u8],
        password: &dyn Fn(&str) -> Option<String>,
    ) -> Verdict {
        let auth = match Authorization::parse(authorization) {
            Ok(a) => a,
            Err(e) => return Verdict::Malformed(e.to_string()),
        };
        if auth.realm != self.config.realm {
            return Verdict::WrongRealm;
        }
        if !self.config.algorithms.contains(&auth.algorithm) {
            return Verdict::Malformed(format!("algorithm {} was not offered", auth.algorithm));
        }
        if auth.userhash {
            return Verdict::Malformed("userhash was not offered".into());
        }
        match auth.qop {
            Some(q) if !self.config.qop.contains(&q) => {
                return Verdict::Malformed(format!("qop {q} was not offered"));
            }
            Some(_) if auth.nc.is_none() || auth.cnonce.is_none() => {
                return Verdict::Malformed("qop without nc or cnonce".into());
            }
            None if auth.algorithm.is_session() && auth.cnonce.is_none() => {
                return Verdict::Malformed("-sess algorithm without cnonce".into());
            }
            _ => {}
        }
        let Some(key) = self.check_nonce(&auth.nonce) else {
            return Verdict::InvalidNonce;
        };
        let Some(secret) = password(&auth.username) else {
            return Verdict::UnknownUser;
        };
        let input = ResponseInput {
            algorithm: auth.algorithm,
            username: &auth.username,
            realm: &auth.realm,
            password: &secret,
            method,
            uri: &auth.uri,
            nonce: &auth.nonce,
            cnonce: auth.cnonce.as_deref(),
            nc: auth.nc,
            qop: auth.qop,
            body,
        };
        let given = auth.response.to_ascii_lowercase();
        let mut right = constant_time_eq(digest::response(&input).as_bytes(), given.as_bytes());
        if !right
            && auth.algorithm.is_session()
            && let Some(first) = self.uses.get(&key).and_then(|u| u.first_cnonce.as_deref())
        {
            let ha1 = digest::ha1_with_cnonce(&input, Some(first));
            right = constant_time_eq(
                digest::response_with_ha1(&input, &ha1).as_bytes(),
                given.as_bytes(),
            );
        }
        if !right {
            return Verdict::BadResponse;
        }
        if self.is_expired(key, now) {
            return Verdict::Stale;
        }
        let Some(nc) = auth.nc.filter(|_| auth.qop.is_some()) else {
            // RFC 2069 compatibility (RFC 3261 §22.4): no count, no replay check; the
            // nonce is accepted while fresh.
            return Verdict::Authorized {
                username: auth.username,
            };
        };
        match self.uses.get_mut(&key) {
            Some(u) if nc <= u.nc => return Verdict::Replay,
            Some(u) => u.nc = nc,
            None if self.evicted_upto.is_some_and(|e| key <= e) => return Verdict::Stale,
            None => {
                self.uses.insert(
                    key,
                    NonceUse {
                        nc,
                        first_cnonce: auth.cnonce.clone(),
                    },
                );
                self.evict_over_cap();
            }
        }
        Verdict::Authorized {
            username: auth.username,
        }
    }

    /// Drops the replay state of expired nonces (they are answered `Stale` anyway).
    pub fn purge(&mut self, now: Instant) {
        let now_ms = self.ms_since_epoch(now);
        let ttl = duration_ms(self.config.nonce_ttl);
        self.uses
            .retain(|k, _| k.issued_ms.saturating_add(ttl) >= now_ms);
    }

    fn evict_over_cap(&mut self) {
        while self.uses.len() > self.max_nonces {
            match self.uses.pop_first() {
                Some((key, _)) => {
                    self.evicted_upto = Some(self.evicted_upto.map_or(key, |e| e.max(key)));
                }
                None => break,
            }
        }
    }

    fn ms_since_epoch(&self, now: Instant) -> u64 {
        duration_ms(now.saturating_duration_since(self.epoch))
    }

    fn is_expired(&self, key: NonceKey, now: Instant) -> bool {
        let age = self.ms_since_epoch(now).saturating_sub(key.issued_ms);
        age > duration_ms(self.config.nonce_ttl)
    }

    fn tag(&self, issued_ms: u64, counter: u64) -> [u8; 32] {
        let mut message = Vec::with_capacity(self.config.realm.len() + 17);
        message.extend_from_slice(self.config.realm.as_bytes());
        message.push(0);
        message.extend_from_slice(&issued_ms.to_be_bytes());
        message.extend_from_slice(&counter.to_be_bytes());
        hmac_sha256(&self.config.secret, &message)
    }

    fn issue_nonce(&mut self, now: Instant) -> String {
        self.counter = self.counter.wrapping_add(1);
        let issued_ms = self.ms_since_epoch(now);
        let tag = self.tag(issued_ms, self.counter);
        let mut nonce = String::with_capacity(NONCE_HEX_LEN);
        nonce.push_str(&hex(&issued_ms.to_be_bytes()));
        nonce.push_str(&hex(&self.counter.to_be_bytes()));
        nonce.push_str(&hex(tag.get(..TAG_LEN).unwrap_or_default()));
        nonce
    }

    /// Decodes and authenticates a nonce; `None` if this server did not issue it.
    fn check_nonce(&self, nonce: &str) -> Option<NonceKey> {
        let b = nonce.as_bytes();
        if b.len() != NONCE_HEX_LEN {
            return None;
        }
        let issued_ms = parse_hex_u64(b.get(0..16)?)?;
        let counter = parse_hex_u64(b.get(16..32)?)?;
        let given = b.get(32..)?;
        let expected = hex(self.tag(issued_ms, counter).get(..TAG_LEN)?);
        constant_time_eq(expected.as_bytes(), given).then_some(NonceKey { issued_ms, counter })
    }
}

fn duration_ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// 16 lowercase hex digits.
fn parse_hex_u64(b: &[u8]) -> Option<u64> {
    if b.len() != 16 {
        return None;
    }
    b.iter().try_fold(0u64, |acc, &c| {
        let d = match c {
            b'0'..=b'9' => c - b'0',
            b'a'..=b'f' => c - b'a' + 10,
            _ => return None,
        };
        Some((acc << 4) | u64::from(d))
    })
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

    fn server() -> (DigestServer, Instant) {
        let t0 = Instant::now();
        (
            DigestServer::new(ServerConfig::new("example.com", [7; 32]), t0),
            t0,
        )
    }

    #[test]
    fn nonces_are_unique_and_self_validating() {
        let (mut s, t0) = server();
        let a = s.challenges(t0, false);
        let b = s.challenges(t0, false);
        assert_eq!(a.len(), 2);
        assert_eq!(a[0].algorithm, Algorithm::Sha256);
        assert_eq!(a[1].algorithm, Algorithm::Md5);
        let mut nonces: Vec<&str> = a.iter().chain(&b).map(|c| c.nonce.as_str()).collect();
        for n in &nonces {
            assert_eq!(n.len(), NONCE_HEX_LEN);
            assert!(s.check_nonce(n).is_some());
        }
        nonces.sort_unstable();
        nonces.dedup();
        assert_eq!(nonces.len(), 4);
    }

    #[test]
    fn altered_or_foreign_nonces_fail() {
        let (mut s, t0) = server();
        let n = s.challenges(t0, false).remove(0).nonce;
        // Flip each position in turn.
        for i in 0..n.len() {
            let mut b = n.clone().into_bytes();
            b[i] = if b[i] == b'0' { b'1' } else { b'0' };
            assert!(
                s.check_nonce(&String::from_utf8(b).unwrap()).is_none(),
                "pos {i}"
            );
        }
        assert!(s.check_nonce(&n.to_uppercase()).is_none());
        assert!(s.check_nonce("").is_none());
        assert!(s.check_nonce(&n[..63]).is_none());
        // Another realm with the same secret does not accept it.
        let other = DigestServer::new(ServerConfig::new("other.example", [7; 32]), t0);
        assert!(other.check_nonce(&n).is_none());
        // Another secret does not either.
        let other = DigestServer::new(ServerConfig::new("example.com", [8; 32]), t0);
        assert!(other.check_nonce(&n).is_none());
    }

    #[test]
    fn expiry_is_measured_from_issue() {
        let (mut s, t0) = server();
        let n = s
            .challenges(t0 + Duration::from_secs(10), false)
            .remove(0)
            .nonce;
        let key = s.check_nonce(&n).unwrap();
        assert!(!s.is_expired(key, t0 + Duration::from_secs(310)));
        assert!(s.is_expired(key, t0 + Duration::from_millis(310_001)));
    }

    #[test]
    fn debug_hides_the_secret() {
        let (s, _) = server();
        let text = format!("{s:?}");
        assert!(text.contains("<redacted>"));
        assert!(!text.contains("7, 7"));
    }
}
