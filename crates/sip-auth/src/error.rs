//! The crate's one error type.

/// What went wrong parsing a challenge or credentials, or answering a challenge.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AuthError {
    /// The value uses another scheme than `Digest` (e.g. `Basic`, RFC 3261 §22.1 forbids it).
    #[error("authentication scheme {scheme:?} is not Digest")]
    NotDigest { scheme: String },
    /// The value breaks the `challenge` / `credentials` grammar (RFC 3261 §25.1) at `offset`.
    #[error("malformed digest parameters at byte {offset}: expected {expected}")]
    Syntax {
        offset: usize,
        expected: &'static str,
    },
    /// A parameter the grammar requires is absent (e.g. `nonce`, RFC 7616 §3.3).
    #[error("digest parameter {name} is missing")]
    MissingParameter { name: &'static str },
    /// A parameter appears twice (RFC 7616 §3.3: each at most once).
    #[error("digest parameter {name:?} appears more than once")]
    DuplicateParameter { name: String },
    /// A known parameter has a value outside its grammar (e.g. `nc` not 8 hex digits).
    #[error("digest parameter {name} has an invalid value")]
    InvalidParameter { name: &'static str },
    /// The `algorithm` is not one of RFC 8760 §2.1's (e.g. `SHA-512`, `AKAv1-MD5`).
    #[error("digest algorithm {algorithm:?} is not supported")]
    UnsupportedAlgorithm { algorithm: String },
    /// The challenge offers `qop` options, none of which is `auth` or `auth-int`.
    #[error("none of the offered qop values is supported")]
    UnsupportedQop,
    /// [`crate::DigestClient::respond`] got no challenge to answer.
    #[error("no digest challenge to answer")]
    NoChallenge,
    /// No credentials are known for the challenged realm.
    #[error("no credentials for realm {realm:?}")]
    NoCredentials { realm: String },
    /// The realm challenged again, without `stale=true`, a request we had already answered
    /// with the same credentials: they are wrong, do not retry (RFC 3261 §22.2).
    #[error("credentials for realm {realm:?} were rejected")]
    Rejected { realm: String },
}
