//! The UAC side (RFC 3261 §22.2, §22.3): answers 401/407 challenges and authorizes later
//! requests pre-emptively with the cached nonces.

use crate::AuthError;
use crate::digest::{self, Algorithm, Qop, ResponseInput};
use crate::header::{Authorization, Challenge};
use sip_message::HeaderName;
use std::fmt;

/// Which kind of challenge, and so which header answers it (RFC 3261 §22.2, §22.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ChallengeKind {
    /// A 401 with `WWW-Authenticate`, answered with `Authorization`.
    Www,
    /// A 407 with `Proxy-Authenticate`, answered with `Proxy-Authorization`.
    Proxy,
}

impl ChallengeKind {
    /// 401 -> `Www`, 407 -> `Proxy`.
    pub fn from_status(status: u16) -> Option<ChallengeKind> {
        match status {
            401 => Some(ChallengeKind::Www),
            407 => Some(ChallengeKind::Proxy),
            _ => None,
        }
    }

    /// The status code that carries this kind of challenge.
    pub fn status(self) -> u16 {
        match self {
            ChallengeKind::Www => 401,
            ChallengeKind::Proxy => 407,
        }
    }

    /// The header that carries the challenge: `WWW-Authenticate` / `Proxy-Authenticate`.
    pub fn challenge_header(self) -> HeaderName {
        match self {
            ChallengeKind::Www => HeaderName::WwwAuthenticate,
            ChallengeKind::Proxy => HeaderName::ProxyAuthenticate,
        }
    }

    /// The header that answers it: `Authorization` / `Proxy-Authorization`.
    pub fn authorization_header(self) -> HeaderName {
        match self {
            ChallengeKind::Www => HeaderName::Authorization,
            ChallengeKind::Proxy => HeaderName::ProxyAuthorization,
        }
    }
}

/// A username and password, for one realm or for any (RFC 3261 §22.1).
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub username: String,
    pub password: String,
    /// `Some(realm)`: only for that realm; `None`: any realm.
    pub realm: Option<String>,
}

impl Credentials {
    /// Credentials for any realm.
    pub fn new(username: impl Into<String>, password: impl Into<String>) -> Credentials {
        Credentials {
            username: username.into(),
            password: password.into(),
            realm: None,
        }
    }

    /// Credentials for one realm only.
    pub fn for_realm(mut self, realm: impl Into<String>) -> Credentials {
        self.realm = Some(realm.into());
        self
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .field("realm", &self.realm)
            .finish()
    }
}

/// What the client remembers of one realm's challenge.
#[derive(Clone)]
struct Session {
    kind: ChallengeKind,
    realm: String,
    username: String,
    password: String,
    nonce: String,
    opaque: Option<String>,
    algorithm: Algorithm,
    qop: Option<Qop>,
    userhash: bool,
    /// The last nonce count sent with this nonce.
    nc: u32,
    /// For `-sess`: the cnonce of the first request on this nonce, reused afterwards so
    /// the session key `H(H(user:realm:pass):nonce:cnonce)` stays the one the server
    /// derived first (RFC 7616 §3.4.2).
    session_cnonce: Option<String>,
    /// A challenge was answered and no success has followed yet (RFC 3261 §22.2: a
    /// second challenge then means the credentials are wrong).
    pending: bool,
}

impl fmt::Debug for Session {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Session")
            .field("kind", &self.kind)
            .field("realm", &self.realm)
            .field("username", &self.username)
            .field("nonce", &self.nonce)
            .field("algorithm", &self.algorithm)
            .field("qop", &self.qop)
            .field("nc", &self.nc)
            .field("pending", &self.pending)
            .finish_non_exhaustive()
    }
}

impl Session {
    /// Builds the header value for one request with nonce count `nc`.
    fn authorization(&self, method: &str, uri: &str, body: &[u8], nc: u32, cnonce: &str) -> String {
        let algorithm = self.algorithm;
        let cnonce = match (&self.session_cnonce, algorithm.is_session()) {
            (Some(pinned), true) => pinned.as_str(),
            _ => cnonce,
        };
        // RFC 2617 §3.2.2: cnonce and nc go with a qop; -sess needs cnonce anyway.
        let use_cnonce = self.qop.is_some() || algorithm.is_session();
        let input = ResponseInput {
            algorithm,
            username: &self.username,
            realm: &self.realm,
            password: &self.password,
            method,
            uri,
            nonce: &self.nonce,
            cnonce: use_cnonce.then_some(cnonce),
            nc: self.qop.map(|_| nc),
            qop: self.qop,
            body,
        };
        let username = if self.userhash {
            digest::userhash(algorithm, &self.username, &self.realm)
        } else {
            self.username.clone()
        };
        Authorization {
            username,
            realm: self.realm.clone(),
            nonce: self.nonce.clone(),
            uri: uri.to_owned(),
            response: digest::response(&input),
            algorithm,
            cnonce: use_cnonce.then(|| cnonce.to_owned()),
            opaque: self.opaque.clone(),
            qop: self.qop,
            nc: input.nc,
            userhash: self.userhash,
        }
        .to_header_value()
    }
}

/// The UAC side of digest authentication (RFC 3261 §22.2-22.3). Answers 401/407 for any
/// request and remembers each realm's nonce, so later requests (REGISTER refreshes,
/// in-dialog requests) can be authorized pre-emptively with `nc` + 1. Use one per account
/// (or per peer): pre-emptive authorization sends every cached realm's credentials.
///
/// Loop protection: a realm answered by [`DigestClient::respond`] that challenges again
/// without `stale=true`, before [`DigestClient::succeeded`], is
/// [`AuthError::Rejected`] and forgotten.
#[derive(Debug, Default)]
pub struct DigestClient {
    sessions: Vec<Session>,
}

/// The qop a client picks among the server's: `auth` when offered (the common choice;
/// proxies may legitimately touch nothing but a body they do not own), else `auth-int`.
fn choose_qop(offered: &[Qop]) -> Option<Qop> {
    if offered.contains(&Qop::Auth) {
        Some(Qop::Auth)
    } else {
        offered.first().copied()
    }
}

impl DigestClient {
    pub fn new() -> Self {
        DigestClient::default()
    }

    /// Answers all challenges of one 401/407 (`challenges` in header order, e.g. from
    /// [`Challenge::parse_supported`]). Per realm, the first challenge listed is answered
    /// (RFC 8760 §2.4: the server lists its preferred algorithm first; every
    /// [`Challenge`] carries an algorithm this crate supports). Returns one header value
    /// per realm, in the order the realms first appear, to add to the re-sent request
    /// (with a new CSeq, RFC 3261 §22.2).
    ///
    /// Errors: [`AuthError::Rejected`] when a realm we already answered with the same
    /// credentials challenges again without `stale=true` (or with `stale=true` but the
    /// nonce we just used); [`AuthError::NoCredentials`] when `lookup` has none for a
    /// realm (or only for another realm); [`AuthError::NoChallenge`] for an empty slice.
    /// On error nothing is remembered except that a rejected realm is forgotten.
    #[allow(
        clippy::too_many_arguments,
        reason = "the request's parts, each a plain value the caller has at hand"
    )]
    pub fn respond(
        &mut self,
        kind: ChallengeKind,
        challenges: &[Challenge],
        lookup: &dyn Fn(&str) -> Option<Credentials>,
        method: &str,
        uri: &str,
        body: &[u8],
        cnonce: &str,
    ) -> Result<Vec<String>, AuthError> {
        let mut chosen: Vec<&Challenge> = Vec::new();
        for c in challenges {
            if !chosen.iter().any(|k| k.realm == c.realm) {
                chosen.push(c);
            }
        }
        if chosen.is_empty() {
            return Err(AuthError::NoChallenge);
        }
        // First decide everything, then commit, so an error leaves the cache as it was.
        let mut fresh: Vec<Session> = Vec::with_capacity(chosen.len());
        for c in chosen {
            let credentials = lookup(&c.realm)
                .filter(|cr| cr.realm.as_ref().is_none_or(|r| *r == c.realm))
                .ok_or_else(|| AuthError::NoCredentials {
                    realm: c.realm.clone(),
                })?;
            if let Some(old) = self.find(kind, &c.realm) {
                let same_credentials =
                    old.username == credentials.username && old.password == credentials.password;
                let retry_of_same_nonce = c.stale && c.nonce == old.nonce;
                if old.pending && same_credentials && (!c.stale || retry_of_same_nonce) {
                    let realm = c.realm.clone();
                    self.sessions
                        .retain(|s| !(s.kind == kind && s.realm == realm));
                    return Err(AuthError::Rejected { realm });
                }
            }
            fresh.push(Session {
                kind,
                realm: c.realm.clone(),
                username: credentials.username,
                password: credentials.password,
                nonce: c.nonce.clone(),
                opaque: c.opaque.clone(),
                algorithm: c.algorithm,
                qop: choose_qop(&c.qop),
                userhash: c.userhash,
                nc: 1,
                session_cnonce: c.algorithm.is_session().then(|| cnonce.to_owned()),
                pending: true,
            });
        }
        let mut values = Vec::with_capacity(fresh.len());
        for session in fresh {
            values.push(session.authorization(method, uri, body, 1, cnonce));
            self.sessions
                .retain(|s| !(s.kind == session.kind && s.realm == session.realm));
            self.sessions.push(session);
        }
        Ok(values)
    }

    /// Pre-emptive authorization of a later request (RFC 3261 §22.3, RFC 7616 §3.4.5):
    /// one value per cached realm, each with its nonce count incremented (8 hex digits).
    /// A realm whose nonce has no qop (RFC 2069) reuses the nonce without a count. A realm
    /// whose count is exhausted is left out (the server will challenge again).
    pub fn authorize(
        &mut self,
        method: &str,
        uri: &str,
        body: &[u8],
        cnonce: &str,
    ) -> Vec<(ChallengeKind, String)> {
        let mut out = Vec::with_capacity(self.sessions.len());
        for s in &mut self.sessions {
            let nc = if s.qop.is_some() {
                match s.nc.checked_add(1) {
                    Some(nc) => nc,
                    None => continue,
                }
            } else {
                s.nc
            };
            s.nc = nc;
            out.push((s.kind, s.authorization(method, uri, body, nc, cnonce)));
        }
        out
    }

    /// A request got a final response other than 401/407: every realm's failure state
    /// resets, so a later challenge (a server that forgot its nonces) is answered again.
    pub fn succeeded(&mut self) {
        for s in &mut self.sessions {
            s.pending = false;
        }
    }

    /// Forgets every cached nonce (e.g. when the account's password changes).
    pub fn clear(&mut self) {
        self.sessions.clear();
    }

    /// The realms with a cached nonce, with their kind.
    pub fn realms(&self) -> impl Iterator<Item = (ChallengeKind, &str)> + '_ {
        self.sessions.iter().map(|s| (s.kind, s.realm.as_str()))
    }

    fn find(&self, kind: ChallengeKind, realm: &str) -> Option<&Session> {
        self.sessions
            .iter()
            .find(|s| s.kind == kind && s.realm == realm)
    }
}
