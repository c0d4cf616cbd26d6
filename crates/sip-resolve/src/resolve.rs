//! RFC 3263 §4: from a SIP or SIPS URI to an ordered list of targets.

use crate::srv::order_srv;
use crate::{DnsLookup, RecordKind, ResolveError, Srv};
use sip_message::{Host, SipUri, Transport};
use std::collections::HashSet;
use std::net::{IpAddr, SocketAddr};
use tracing::debug;

/// One place to send a request: a transport, an address and a port (RFC 3263 §4).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Target {
    /// The transport to open or send on.
    pub transport: Transport,
    /// The address and port to send to.
    pub addr: SocketAddr,
    /// For TLS SNI and certificate checks: the domain of the URI (or of its `maddr`),
    /// never an SRV target, which DNS does not vouch for (RFC 5922 §4). Set whenever
    /// the resolved host is a domain name (WebSocket uses it as the `Host`), `None`
    /// for a numeric IP host.
    pub server_name: Option<String>,
}

/// Which transports we can use, in our order of preference when DNS gives no order
/// (e.g. `[Udp, Tcp, Tls]`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResolveConfig {
    /// The transports this element can send on, most preferred first.
    pub transports: Vec<Transport>,
    /// Put AAAA addresses before A addresses of the same name (A first otherwise).
    pub prefer_ipv6: bool,
}

impl Default for ResolveConfig {
    /// UDP, TCP and TLS (RFC 3261 §18 requires the first two), IPv4 first.
    fn default() -> Self {
        ResolveConfig {
            transports: vec![Transport::Udp, Transport::Tcp, Transport::Tls],
            prefer_ipv6: false,
        }
    }
}

/// Turns `uri` into every target to try, in failover order: the caller sends to the
/// first and moves on to the next on a timeout, a transport error or a 503
/// (RFC 3263 §4.3). Duplicates (same transport and address) are removed.
///
/// The steps, RFC 3263 §4.1 (transport) and §4.2 (address and port):
/// - the host is the `maddr` parameter if present, else the URI's host;
/// - a numeric IP host gives one target: the `transport` parameter's transport,
///   else UDP (TLS for `sips`), and the URI's port or that transport's default;
/// - a domain with an explicit port: A/AAAA of the domain at that port;
/// - otherwise NAPTR records of the domain whose flag is `S` and whose service we
///   can use (`SIP+D2U`, `SIP+D2T`, `SIPS+D2T`, `SIP+D2S`, and `SIP+D2W`/`SIPS+D2W`
///   for WS/WSS, RFC 7118 §10; only `SIPS+` services for a `sips` URI), by order
///   then preference, each replacement resolved as SRV;
/// - if that gives nothing, SRV of `_sips._tcp`, `_sip._tcp`, `_sip._udp` and
///   `_sip._sctp` for the enabled transports, in the configuration's order
///   (`_sips._tcp` only, for a `sips` URI);
/// - if no SRV record exists, A/AAAA of the domain with the default transport (the
///   `transport` parameter's, else UDP, TLS for `sips`) at its default port.
///
/// SRV records are ordered by priority and weighted random choice (RFC 2782), with
/// `random` as the source of randomness. Each SRV target expands to its addresses,
/// IPv4 first unless [`ResolveConfig::prefer_ipv6`]. A `transport` parameter keeps
/// only that transport's NAPTR and SRV records; on a `sips` URI, `transport=tcp`
/// means TLS (RFC 3261 §26.2.2, RFC 5630). Where RFC 3263 would pick UDP and the configuration
/// has no UDP, the first enabled transport is used instead (RFC 3261 §18 has every
/// element speak TCP too).
///
/// A lookup that fails does not stop the others. When no target is found, the
/// error is the first failed lookup if any, else [`ResolveError::NotFound`].
pub async fn resolve<L: DnsLookup>(
    lookup: &L,
    uri: &SipUri,
    config: &ResolveConfig,
    random: &mut (dyn FnMut() -> u32 + Send),
) -> Result<Vec<Target>, ResolveError> {
    let secure = uri.secure;
    let host = match uri.param("maddr") {
        None => uri.host.clone(),
        Some(value) => {
            let value = value.unwrap_or_default();
            Host::parse(value).ok_or_else(|| ResolveError::InvalidMaddr {
                maddr: String::from_utf8_lossy(value).into_owned(),
            })?
        }
    };
    let forced = forced_transport(uri, config)?;

    let ip = match &host {
        Host::Ipv4(ip) => Some(IpAddr::V4(*ip)),
        Host::Ipv6(ip) => Some(IpAddr::V6(*ip)),
        Host::Domain(_) => None,
    };
    if let Some(ip) = ip {
        let transport = match forced {
            Some(t) => t,
            None => default_transport(secure, config)?,
        };
        let port = uri.port.unwrap_or_else(|| transport.default_port());
        return Ok(vec![Target {
            transport,
            addr: SocketAddr::new(ip, port),
            server_name: None,
        }]);
    }
    let written = host.to_string();
    let name = normalize(&written);
    if name.is_empty() {
        return Err(ResolveError::NotFound { name: written });
    }

    let mut run = Run {
        lookup,
        prefer_ipv6: config.prefer_ipv6,
        server_name: name.clone(),
        srv_seen: Vec::new(),
        ip_seen: Vec::new(),
        errors: Vec::new(),
        targets: Vec::new(),
    };

    if let Some(port) = uri.port {
        // §4.2: a port but no numeric IP: A/AAAA only.
        let transport = match forced {
            Some(t) => t,
            None => default_transport(secure, config)?,
        };
        run.push_addresses(&name, transport, port).await;
        return run.finish(written);
    }

    // Transports we may use for this URI, in our order of preference.
    let allowed: Vec<Transport> = match forced {
        Some(t) => vec![t],
        None => {
            let mut v: Vec<Transport> = Vec::new();
            for &t in &config.transports {
                if (!secure || is_secure(t)) && !v.contains(&t) {
                    v.push(t);
                }
            }
            v
        }
    };

    // §4.1: NAPTR.
    let mut naptrs: Vec<(u16, u16, Transport, String)> = run
        .query_naptr(&name)
        .await
        .into_iter()
        .filter(|n| n.flags.eq_ignore_ascii_case("s"))
        .filter_map(|n| {
            let t = service_transport(&n.service)?;
            allowed
                .contains(&t)
                .then(|| (n.order, n.preference, t, normalize(&n.replacement)))
        })
        .filter(|(.., replacement)| !replacement.is_empty())
        .collect();
    naptrs.sort_by_key(|&(order, preference, ..)| (order, preference));
    for (_, _, transport, replacement) in naptrs {
        let records = run.query_srv(&replacement).await;
        run.push_srv(records, transport, random).await;
    }

    // §4.1: no usable NAPTR (or nothing behind it): SRV for each transport we use.
    if run.targets.is_empty() {
        let mut srv_found = false;
        for &transport in &allowed {
            let Some(prefix) = srv_prefix(transport) else {
                continue;
            };
            let records = run.query_srv(&format!("{prefix}.{name}")).await;
            srv_found |= !records.is_empty();
            run.push_srv(records, transport, random).await;
        }
        // §4.2: no SRV record at all: A/AAAA at the default port.
        if !srv_found {
            let transport = match forced {
                Some(t) => t,
                None => default_transport(secure, config)?,
            };
            run.push_addresses(&name, transport, transport.default_port())
                .await;
        }
    }
    run.finish(written)
}

/// The state of one resolution: answers already fetched (a name is queried once),
/// failed lookups, and the targets found so far.
struct Run<'a, L> {
    lookup: &'a L,
    prefer_ipv6: bool,
    server_name: String,
    srv_seen: Vec<(String, Vec<Srv>)>,
    ip_seen: Vec<(String, Vec<IpAddr>)>,
    errors: Vec<ResolveError>,
    targets: Vec<Target>,
}

impl<L: DnsLookup> Run<'_, L> {
    async fn query_naptr(&mut self, name: &str) -> Vec<crate::Naptr> {
        match self.lookup.naptr(name).await {
            Ok(v) => v,
            Err(e) => self.failed(name, RecordKind::Naptr, e),
        }
    }

    async fn query_srv(&mut self, name: &str) -> Vec<Srv> {
        if let Some((_, v)) = self.srv_seen.iter().find(|(n, _)| n == name) {
            return v.clone();
        }
        let v = match self.lookup.srv(name).await {
            Ok(v) => v,
            Err(e) => self.failed(name, RecordKind::Srv, e),
        };
        self.srv_seen.push((name.to_owned(), v.clone()));
        v
    }

    async fn query_ip(&mut self, name: &str) -> Vec<IpAddr> {
        if let Some((_, v)) = self.ip_seen.iter().find(|(n, _)| n == name) {
            return v.clone();
        }
        let mut v = match self.lookup.ip(name).await {
            Ok(v) => v,
            Err(e) => self.failed(name, RecordKind::Ip, e),
        };
        // stable: each family keeps the order DNS gave
        let prefer_ipv6 = self.prefer_ipv6;
        v.sort_by_key(|ip| ip.is_ipv6() != prefer_ipv6);
        self.ip_seen.push((name.to_owned(), v.clone()));
        v
    }

    fn failed<T>(&mut self, name: &str, record: RecordKind, e: ResolveError) -> Vec<T> {
        debug!(name, %record, error = %e, "DNS lookup failed; trying the other names");
        self.errors.push(e);
        Vec::new()
    }

    async fn push_addresses(&mut self, name: &str, transport: Transport, port: u16) {
        let ips = match name.parse::<IpAddr>() {
            Ok(ip) => vec![ip],
            Err(_) => self.query_ip(name).await,
        };
        for ip in ips {
            self.targets.push(Target {
                transport,
                addr: SocketAddr::new(ip, port),
                server_name: Some(self.server_name.clone()),
            });
        }
    }

    async fn push_srv(
        &mut self,
        records: Vec<Srv>,
        transport: Transport,
        random: &mut (dyn FnMut() -> u32 + Send),
    ) {
        for srv in order_srv(records, random) {
            let target = normalize(&srv.target);
            // RFC 2782: a target of "." means the service is not offered.
            if !target.is_empty() {
                self.push_addresses(&target, transport, srv.port).await;
            }
        }
    }

    fn finish(self, written: String) -> Result<Vec<Target>, ResolveError> {
        let mut seen = HashSet::new();
        let targets: Vec<Target> = self
            .targets
            .into_iter()
            .filter(|t| seen.insert((t.transport, t.addr)))
            .collect();
        if !targets.is_empty() {
            return Ok(targets);
        }
        Err(self
            .errors
            .into_iter()
            .next()
            .unwrap_or(ResolveError::NotFound { name: written }))
    }
}

/// Lower case, without the trailing dot of an absolute name.
fn normalize(name: &str) -> String {
    name.strip_suffix('.').unwrap_or(name).to_ascii_lowercase()
}

fn is_secure(t: Transport) -> bool {
    matches!(t, Transport::Tls | Transport::Wss)
}

/// The transport of a NAPTR service field (RFC 3263 §4.1, RFC 4168 §7, RFC 7118 §10).
fn service_transport(service: &str) -> Option<Transport> {
    const SERVICES: [(&str, Transport); 6] = [
        ("SIP+D2U", Transport::Udp),
        ("SIP+D2T", Transport::Tcp),
        ("SIPS+D2T", Transport::Tls),
        ("SIP+D2S", Transport::Sctp),
        ("SIP+D2W", Transport::Ws),
        ("SIPS+D2W", Transport::Wss),
    ];
    SERVICES
        .into_iter()
        .find(|(s, _)| s.eq_ignore_ascii_case(service))
        .map(|(_, t)| t)
}

/// The SRV name prefix of a transport (RFC 3263 §4.1, RFC 4168 §7).
fn srv_prefix(t: Transport) -> Option<&'static str> {
    match t {
        Transport::Udp => Some("_sip._udp"),
        Transport::Tcp => Some("_sip._tcp"),
        Transport::Tls => Some("_sips._tcp"),
        Transport::Sctp => Some("_sip._sctp"),
        _ => None,
    }
}

/// The transport named by the URI's `transport` parameter, if any (RFC 3263 §4.1).
/// On a `sips` URI it names what TLS runs over: `tcp` means TLS, `ws` means WSS
/// (RFC 3261 §26.2.2, RFC 5630); UDP and SCTP have no TLS here.
fn forced_transport(
    uri: &SipUri,
    config: &ResolveConfig,
) -> Result<Option<Transport>, ResolveError> {
    let Some(token) = uri.transport_param() else {
        return Ok(None);
    };
    let unsupported = || ResolveError::UnsupportedTransport {
        transport: String::from_utf8_lossy(token).into_owned(),
    };
    let t = Transport::from_token(token).ok_or_else(unsupported)?;
    let t = match (uri.secure, t) {
        (false, t) => t,
        (true, Transport::Tcp | Transport::Tls) => Transport::Tls,
        (true, Transport::Ws | Transport::Wss) => Transport::Wss,
        (true, _) => return Err(unsupported()),
    };
    if config.transports.contains(&t) {
        Ok(Some(t))
    } else {
        Err(unsupported())
    }
}

/// UDP for `sip`, TLS for `sips` (RFC 3263 §4.1); if that is not enabled, the first
/// enabled transport that suits the URI.
fn default_transport(secure: bool, config: &ResolveConfig) -> Result<Transport, ResolveError> {
    let preferred = if secure {
        Transport::Tls
    } else {
        Transport::Udp
    };
    if config.transports.contains(&preferred) {
        return Ok(preferred);
    }
    config
        .transports
        .iter()
        .copied()
        .find(|&t| !secure || is_secure(t))
        .ok_or_else(|| ResolveError::UnsupportedTransport {
            transport: preferred.as_str().to_owned(),
        })
}
