//! `sip-resolve`: locating SIP servers (RFC 3263 §4).
//!
//! [`resolve`] turns a SIP or SIPS URI into every [`Target`] to try, in order:
//! transport, IP address, port and the name to check the TLS certificate against.
//! It follows RFC 3263 §4.1 and §4.2 (NAPTR, then SRV, then A/AAAA) and RFC 2782 for
//! the order of SRV records. The DNS queries go through the [`DnsLookup`] trait, so
//! the algorithm is tested on a table in memory; [`HickoryLookup`] implements it
//! with hickory-resolver on tokio.
//!
//! ```no_run
//! # async fn run() -> Result<(), sip_resolve::ResolveError> {
//! use sip_message::{Host, SipUri};
//! use sip_resolve::{HickoryLookup, ResolveConfig, resolve};
//! let dns = HickoryLookup::from_system_conf()?;
//! let uri = SipUri::new(Host::parse(b"example.com").ok_or(
//!     sip_resolve::ResolveError::NotFound { name: "example.com".into() },
//! )?);
//! let mut random = || rand_u32();
//! # fn rand_u32() -> u32 { 4 }
//! for target in resolve(&dns, &uri, &ResolveConfig::default(), &mut random).await? {
//!     // try target.transport to target.addr; on timeout, transport error or 503,
//!     // go on with the next one (RFC 3263 §4.3)
//! }
//! # Ok(()) }
//! ```
#![forbid(unsafe_code)]

mod error;
mod hickory;
mod lookup;
mod resolve;
mod srv;

pub use error::{RecordKind, ResolveError};
pub use hickory::HickoryLookup;
pub use lookup::{DnsLookup, Naptr, Srv};
pub use resolve::{ResolveConfig, Target, resolve};
