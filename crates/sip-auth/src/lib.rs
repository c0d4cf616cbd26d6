//! `sip-auth`: SIP digest authentication (RFC 3261 §22, RFC 7616, RFC 8760), both sides,
//! sans-IO: no clock reads (time-dependent calls take `now: Instant`) and no entropy
//! source (the caller passes the cnonce and the server's secret).
//!
//! - [`Challenge`] and [`Authorization`] parse and print the header values.
//! - [`DigestClient`] (UAC, RFC 3261 §22.2-22.3) answers 401/407 and authorizes later
//!   requests pre-emptively, and stops when its credentials are rejected.
//! - [`DigestServer`] (UAS, RFC 3261 §22.4) issues self-validating nonces, checks
//!   responses, and tells stale nonces and replays apart ([`Verdict`]).
//!
//! ```
//! use sip_auth::{Challenge, ChallengeKind, Credentials, DigestClient, DigestServer, ServerConfig, Verdict};
//! use std::time::Instant;
//!
//! let t0 = Instant::now();
//! let mut server = DigestServer::new(ServerConfig::new("example.com", [42; 32]), t0);
//! // The UAS answers an unauthenticated REGISTER with 401 and these WWW-Authenticate values.
//! let values = server.challenge(t0, false);
//! let challenges = Challenge::parse_supported(values.iter().map(|v| v.as_bytes()));
//!
//! // The UAC answers with an Authorization header on the re-sent REGISTER.
//! let mut client = DigestClient::new();
//! let lookup = |_realm: &str| Some(Credentials::new("alice", "secret"));
//! let answer = client.respond(ChallengeKind::Www, &challenges, &lookup,
//!     "REGISTER", "sip:example.com", b"", "0a4f113b")?;
//!
//! let password = |user: &str| (user == "alice").then(|| "secret".to_string());
//! let verdict = server.verify(t0, "REGISTER", answer[0].as_bytes(), b"", &password);
//! assert_eq!(verdict, Verdict::Authorized { username: "alice".into() });
//! client.succeeded();
//! # Ok::<(), sip_auth::AuthError>(())
//! ```
#![forbid(unsafe_code)]

mod client;
mod digest;
mod error;
mod header;
mod params;
mod server;

pub use client::{ChallengeKind, Credentials, DigestClient};
pub use digest::{Algorithm, Qop, ResponseInput, format_nc, ha1, response, userhash};
pub use error::AuthError;
pub use header::{Authorization, Challenge};
pub use server::{DEFAULT_MAX_NONCES, DigestServer, ServerConfig, Verdict};
