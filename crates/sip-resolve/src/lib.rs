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
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use sip_message::Uri;
//! use sip_resolve::{HickoryLookup, ResolveConfig, resolve};
//! let dns = HickoryLookup::from_system_conf()?;
//! let Uri::Sip(uri) = Uri::parse(b"sip:alice@example.com")? else { return Ok(()) };
//! // any source of randomness for RFC 2782 weights; a clock's nanoseconds will do
//! let mut random = || std::time::SystemTime::now()
//!     .duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
//! for target in resolve(&dns, &uri, &ResolveConfig::default(), &mut random).await? {
//!     // send to target.addr over target.transport; on a timeout, a transport error
//!     // or a 503, go on with the next target (RFC 3263 §4.3)
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
