//! The DNS queries that RFC 3263 needs, as a trait, so the algorithm runs on any
//! resolver and, in tests, on a table in memory.

use crate::ResolveError;
use std::future::Future;
use std::net::IpAddr;

/// A NAPTR record (RFC 3403 §4.1) as RFC 3263 §4.1 uses it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Naptr {
    /// Lower first; records are tried in this order.
    pub order: u16,
    /// Lower first among records of the same order.
    pub preference: u16,
    /// `"S"` (case-insensitive): the replacement is an SRV name.
    pub flags: String,
    /// E.g. `SIP+D2U`, `SIP+D2T`, `SIPS+D2T`, `SIP+D2W` (RFC 3263 §4.1, RFC 7118 §10).
    pub service: String,
    /// The SRV name to query next; `.` (or empty) for none.
    pub replacement: String,
}

/// An SRV record (RFC 2782).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Srv {
    /// Lower first.
    pub priority: u16,
    /// Relative weight among records of the same priority.
    pub weight: u16,
    /// The port of the service.
    pub port: u16,
    /// The host to resolve with A/AAAA; `.` means "no service here" (RFC 2782).
    pub target: String,
}

/// The three queries of RFC 3263 §4.
///
/// A name that exists but has no record of the type asked (NOERROR with no answer,
/// or NXDOMAIN) is an empty `Ok`; `Err` is kept for lookups that did not get an
/// answer (timeout, SERVFAIL, refused, no server reachable). Names are passed
/// without a trailing dot and are absolute: implementations must not apply search
/// domains to them. The futures are `Send`, so a resolution can run in a spawned
/// tokio task; implementations may still write `async fn`.
pub trait DnsLookup {
    /// NAPTR records of `name` (RFC 3403).
    fn naptr(&self, name: &str) -> impl Future<Output = Result<Vec<Naptr>, ResolveError>> + Send;
    /// SRV records of `name` (RFC 2782).
    fn srv(&self, name: &str) -> impl Future<Output = Result<Vec<Srv>, ResolveError>> + Send;
    /// A and AAAA records of `name`, following CNAMEs.
    fn ip(&self, name: &str) -> impl Future<Output = Result<Vec<IpAddr>, ResolveError>> + Send;
}
