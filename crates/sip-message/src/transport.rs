//! The transport protocols a SIP message travels over (RFC 3261 §18, §20.42).

use std::fmt;

/// A SIP transport, as named in a Via header's `sent-protocol` (RFC 3261 §20.42)
/// and in the `transport` URI parameter (§19.1.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Transport {
    Udp,
    Tcp,
    Tls,
    Sctp,
    /// WebSocket (RFC 7118).
    Ws,
    /// Secure WebSocket (RFC 7118).
    Wss,
}

impl Transport {
    /// The token as written in a Via header (`UDP`, `TCP`, `TLS`, `SCTP`, `WS`, `WSS`).
    pub fn as_str(self) -> &'static str {
        match self {
            Transport::Udp => "UDP",
            Transport::Tcp => "TCP",
            Transport::Tls => "TLS",
            Transport::Sctp => "SCTP",
            Transport::Ws => "WS",
            Transport::Wss => "WSS",
        }
    }

    /// Parses a transport token, case-insensitively. Unknown tokens give `None`.
    pub fn from_token(token: &[u8]) -> Option<Transport> {
        const ALL: [Transport; 6] = [
            Transport::Udp,
            Transport::Tcp,
            Transport::Tls,
            Transport::Sctp,
            Transport::Ws,
            Transport::Wss,
        ];
        ALL.into_iter()
            .find(|t| t.as_str().as_bytes().eq_ignore_ascii_case(token))
    }

    /// Reliable transports carry no retransmissions: timers A, E and G are not
    /// armed and timers D, I, J and K are zero (RFC 3261 §17).
    pub fn is_reliable(self) -> bool {
        !matches!(self, Transport::Udp)
    }

    /// Stream transports need framing by Content-Length (RFC 3261 §18.3).
    pub fn is_stream(self) -> bool {
        matches!(self, Transport::Tcp | Transport::Tls)
    }

    /// The default port for this transport (RFC 3261 §19.1.2, RFC 7118 §5).
    pub fn default_port(self) -> u16 {
        match self {
            Transport::Tls => 5061,
            Transport::Ws => 80,
            Transport::Wss => 443,
            _ => 5060,
        }
    }
}

impl fmt::Display for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
