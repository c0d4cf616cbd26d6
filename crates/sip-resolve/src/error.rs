//! The one error type of `sip-resolve`.

use std::fmt;

/// The kind of DNS query that failed (RFC 3263 §4.1, §4.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RecordKind {
    /// NAPTR (RFC 3403).
    Naptr,
    /// SRV (RFC 2782).
    Srv,
    /// A and AAAA together (RFC 1035, RFC 3596).
    Ip,
}

impl fmt::Display for RecordKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RecordKind::Naptr => "NAPTR",
            RecordKind::Srv => "SRV",
            RecordKind::Ip => "A/AAAA",
        })
    }
}

/// Why a SIP URI could not be turned into targets.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ResolveError {
    /// Every lookup answered, and none gave an address: the name has no SIP server
    /// (RFC 3263 §4.1, §4.2).
    #[error("no SIP server found for {name} (RFC 3263 §4)")]
    NotFound {
        /// The host (or `maddr`) that was resolved, as written in the URI.
        name: String,
    },
    /// A DNS query failed (timeout, SERVFAIL, refused, unreachable server), as opposed
    /// to answering that the name has no such record, which is an empty answer.
    #[error("DNS {record} lookup of {name} failed: {source}")]
    Lookup {
        /// The name queried.
        name: String,
        /// The record type queried.
        record: RecordKind,
        /// What the lookup reported.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The URI's `transport` parameter names a transport that this URI cannot use
    /// (`sips` over UDP, RFC 3261 §26.2.2) or that the configuration does not enable;
    /// or no enabled transport suits the URI.
    #[error("transport {transport} is unknown, not enabled or not usable for this URI")]
    UnsupportedTransport {
        /// The transport as written in the URI, or the one RFC 3263 §4.1 would pick.
        transport: String,
    },
    /// The `maddr` parameter is not a host (RFC 3261 §19.1.1).
    #[error("maddr parameter {maddr:?} is not a host name or IP address")]
    InvalidMaddr {
        /// The parameter's value, lossily decoded.
        maddr: String,
    },
    /// The system's resolver configuration (`/etc/resolv.conf`) could not be read.
    #[error("system DNS configuration: {source}")]
    SystemConfig {
        /// What the reader reported.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}
