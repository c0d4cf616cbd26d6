//! SIP trunks, sans-IO: outbound registration (RFC 3261 §10.2) with refresh before
//! expiry, back-off after failure and un-REGISTER at shutdown; OPTIONS keepalive with an
//! up/down state; failover across the targets DNS gave (RFC 3263 §4.3); and the
//! address ranges inbound requests from the trunk come from.

use sip_dialog::{Event, UserAgent};
use sip_message::{HeaderName, Method, Response, Transport};
use sip_transaction::{Flow, TransactionKey};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};
use tracing::{debug, info, warn};

/// An IP network: `192.0.2.0/24`, `2001:db8::/32`, or one address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    pub network: IpAddr,
    pub prefix: u8,
}

impl Cidr {
    pub fn parse(text: &str) -> Option<Cidr> {
        let (addr, prefix) = match text.split_once('/') {
            Some((a, p)) => (a, Some(p.parse::<u8>().ok()?)),
            None => (text, None),
        };
        let network: IpAddr = addr.trim().parse().ok()?;
        let max = if network.is_ipv4() { 32 } else { 128 };
        let prefix = prefix.unwrap_or(max);
        (prefix <= max).then_some(Cidr { network, prefix })
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.network, ip) {
            (IpAddr::V4(n), IpAddr::V4(a)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(n) & mask == u32::from(a) & mask
            }
            (IpAddr::V6(n), IpAddr::V6(a)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(n) & mask == u128::from(a) & mask
            }
            _ => false,
        }
    }
}

impl std::fmt::Display for Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

/// One trunk, as configured.
#[derive(Debug, Clone, PartialEq)]
pub struct TrunkConfig {
    pub name: String,
    /// The trunk's proxy and registrar, as a SIP URI (`sip:sbc.example.net:5060`).
    pub proxy: String,
    /// The domain of our address-of-record at the trunk.
    pub domain: String,
    pub username: Option<String>,
    pub password: Option<String>,
    /// Only answer challenges of this realm with the password (`None`: any realm).
    pub realm: Option<String>,
    /// Register our Contact with the trunk.
    pub register: bool,
    pub register_expires: Duration,
    /// OPTIONS keepalive interval (`None`: no keepalive).
    pub options_interval: Option<Duration>,
    /// Inbound requests from these networks are the trunk's.
    pub inbound: Vec<Cidr>,
    /// From for calls out through the trunk.
    pub caller_id: Option<String>,
    /// P-Asserted-Identity for calls out through the trunk (RFC 3325).
    pub asserted_identity: Option<String>,
}

impl TrunkConfig {
    pub fn new(name: &str, proxy: &str, domain: &str) -> TrunkConfig {
        TrunkConfig {
            name: name.into(),
            proxy: proxy.into(),
            domain: domain.into(),
            username: None,
            password: None,
            realm: None,
            register: false,
            register_expires: Duration::from_secs(3600),
            options_interval: None,
            inbound: Vec::new(),
            caller_id: None,
            asserted_identity: None,
        }
    }

    /// The user part of our address-of-record.
    pub fn user(&self) -> &str {
        self.username.as_deref().unwrap_or("tandem")
    }

    /// Our address-of-record at the trunk.
    pub fn aor(&self) -> String {
        format!("<sip:{}@{}>", self.user(), self.domain)
    }
}

/// A next hop of a trunk, from DNS (RFC 3263) or the proxy URI itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TrunkTarget {
    pub transport: Transport,
    pub addr: SocketAddr,
}

/// Where a trunk's registration stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RegistrationState {
    /// Not registering (disabled, or no target yet).
    Idle,
    /// A REGISTER is in flight.
    Registering,
    /// Registered until `expires`.
    Registered {
        expires: Instant,
    },
    /// The last attempt failed; the next one is at `retry`.
    Failed {
        status: u16,
        retry: Instant,
    },
    /// Un-REGISTER sent (shutdown).
    Unregistering,
    Unregistered,
}

/// What happened to a trunk, for logs and the layers above.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TrunkEvent {
    Registered {
        trunk: String,
        expires: Duration,
    },
    RegistrationFailed {
        trunk: String,
        status: u16,
        retry_in: Duration,
    },
    Unregistered {
        trunk: String,
    },
    Up {
        trunk: String,
    },
    Down {
        trunk: String,
        status: u16,
    },
}

impl TrunkEvent {
    /// The trunk it happened to.
    pub fn trunk(&self) -> &str {
        match self {
            TrunkEvent::Registered { trunk, .. }
            | TrunkEvent::RegistrationFailed { trunk, .. }
            | TrunkEvent::Unregistered { trunk }
            | TrunkEvent::Up { trunk }
            | TrunkEvent::Down { trunk, .. } => trunk,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Purpose {
    Register,
    Unregister,
    Options,
}

/// The run-time state of one trunk.
#[derive(Debug)]
pub(crate) struct Trunk {
    pub config: TrunkConfig,
    targets: Vec<TrunkTarget>,
    current: usize,
    pub registration: RegistrationState,
    call_id: String,
    from_tag: String,
    cseq: u32,
    next_register: Option<Instant>,
    failures: u32,
    next_options: Option<Instant>,
    pub up: Option<bool>,
    pending: Vec<(TransactionKey, Purpose)>,
}

/// Back-off after a failed registration: 30 s doubling to 30 min.
fn backoff(failures: u32) -> Duration {
    let secs = 30u64.saturating_mul(1 << failures.min(6));
    Duration::from_secs(secs.min(1800))
}

impl Trunk {
    pub fn new(config: TrunkConfig, ua: &mut UserAgent) -> Trunk {
        let call_id = format!("{:016x}@tandem", ua.ids().next_u64());
        let from_tag = ua.ids().tag();
        let targets = literal_target(&config.proxy).into_iter().collect();
        Trunk {
            config,
            targets,
            current: 0,
            registration: RegistrationState::Idle,
            call_id,
            from_tag,
            cseq: 0,
            next_register: None,
            failures: 0,
            next_options: None,
            up: None,
            pending: Vec::new(),
        }
    }

    /// Starts registration and keepalive (at `now`).
    pub fn start(&mut self, now: Instant) {
        if self.config.register {
            self.next_register = Some(now);
        }
        if self.config.options_interval.is_some() {
            self.next_options = Some(now);
        }
    }

    /// DNS gave these targets (in failover order).
    pub fn set_targets(&mut self, now: Instant, targets: Vec<TrunkTarget>) {
        if targets != self.targets {
            self.targets = targets;
            self.current = 0;
        }
        if self.config.register && self.registration == RegistrationState::Idle {
            self.next_register = Some(now);
        }
    }

    /// The flow to the trunk's current target, from our local socket for it.
    pub fn flow(&self, local: &dyn Fn(Transport) -> Option<SocketAddr>) -> Option<Flow> {
        let target = self.targets.get(self.current)?;
        Some(Flow {
            transport: target.transport,
            local: local(target.transport)?,
            remote: target.addr,
            connection: None,
        })
    }

    pub fn target_count(&self) -> usize {
        self.targets.len()
    }

    /// Moves to the next target after a timeout, a transport error or a 503.
    pub fn fail_over(&mut self) {
        if !self.targets.is_empty() {
            self.current = (self.current + 1) % self.targets.len();
        }
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        match (self.next_register, self.next_options) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    pub fn handle_timeout(
        &mut self,
        now: Instant,
        ua: &mut UserAgent,
        local: &dyn Fn(Transport) -> Option<SocketAddr>,
    ) {
        if self.next_register.is_some_and(|t| t <= now) {
            self.next_register = None;
            self.send_register(now, ua, local, false);
        }
        if let (Some(at), Some(interval)) = (self.next_options, self.config.options_interval)
            && at <= now
        {
            self.next_options = Some(now + interval);
            self.send_options(now, ua, local);
        }
    }

    fn send_register(
        &mut self,
        now: Instant,
        ua: &mut UserAgent,
        local: &dyn Fn(Transport) -> Option<SocketAddr>,
        remove: bool,
    ) {
        let Some(flow) = self.flow(local) else {
            debug!(trunk = %self.config.name, "no target to register with yet");
            return;
        };
        let uri = format!("sip:{}", self.config.domain);
        let aor = self.config.aor();
        let mut request = ua.new_request(
            Method::Register,
            uri.as_bytes(),
            aor.as_bytes(),
            aor.as_bytes(),
            &flow,
        );
        // One Call-ID and From tag for every REGISTER of this binding, CSeq rising
        // (RFC 3261 §10.2).
        self.cseq = self.cseq.saturating_add(1);
        request
            .headers
            .set(HeaderName::CallId, self.call_id.clone());
        request
            .headers
            .set(HeaderName::From, format!("{aor};tag={}", self.from_tag));
        request
            .headers
            .set(HeaderName::CSeq, format!("{} REGISTER", self.cseq));
        let contact = contact_for(self.config.user(), &flow, ua);
        request.headers.push(HeaderName::Contact, contact);
        let expires = if remove {
            0
        } else {
            self.config.register_expires.as_secs()
        };
        request
            .headers
            .push(HeaderName::Expires, expires.to_string());
        match ua.send_request(now, request, flow) {
            Ok(key) => {
                let purpose = if remove {
                    Purpose::Unregister
                } else {
                    Purpose::Register
                };
                self.pending.push((key, purpose));
                self.registration = if remove {
                    RegistrationState::Unregistering
                } else {
                    RegistrationState::Registering
                };
            }
            Err(error) => warn!(trunk = %self.config.name, %error, "REGISTER not sent"),
        }
    }

    fn send_options(
        &mut self,
        now: Instant,
        ua: &mut UserAgent,
        local: &dyn Fn(Transport) -> Option<SocketAddr>,
    ) {
        let Some(flow) = self.flow(local) else {
            return;
        };
        let uri = format!("sip:{}", self.config.domain);
        let aor = self.config.aor();
        let to = format!("<{uri}>");
        let request = ua.new_request(
            Method::Options,
            uri.as_bytes(),
            aor.as_bytes(),
            to.as_bytes(),
            &flow,
        );
        match ua.send_request(now, request, flow) {
            Ok(key) => self.pending.push((key, Purpose::Options)),
            Err(error) => warn!(trunk = %self.config.name, %error, "OPTIONS not sent"),
        }
    }

    /// Un-REGISTER (Expires: 0) when registered or registering.
    pub fn shutdown(
        &mut self,
        now: Instant,
        ua: &mut UserAgent,
        local: &dyn Fn(Transport) -> Option<SocketAddr>,
    ) {
        self.next_register = None;
        self.next_options = None;
        if matches!(
            self.registration,
            RegistrationState::Registered { .. } | RegistrationState::Registering
        ) {
            self.send_register(now, ua, local, true);
        }
    }

    /// New settings for the same binding (a reload): registers again at once (same
    /// Call-ID, CSeq rising: RFC 3261 §10.2.4) and restarts the keepalive.
    pub fn reconfigure(&mut self, now: Instant, config: TrunkConfig) {
        self.config = config;
        self.next_register = None;
        self.next_options = None;
        if !self.config.register {
            // Registration switched off: nothing to refresh; the binding lapses.
            self.registration = RegistrationState::Idle;
        }
        if let Some(target) = literal_target(&self.config.proxy)
            && !self.targets.contains(&target)
        {
            self.targets = vec![target];
            self.current = 0;
        }
        self.failures = 0;
        self.start(now);
    }

    /// Whether nothing of ours is in flight (a retired trunk may then be dropped).
    pub fn is_quiet(&self) -> bool {
        self.pending.is_empty()
    }

    /// Whether `tx` is one of ours.
    pub fn owns(&self, tx: &TransactionKey) -> bool {
        self.pending.iter().any(|(k, _)| k == tx)
    }

    /// The final response (or 408/503 for a timeout/transport error) of one of ours.
    pub fn on_response(
        &mut self,
        now: Instant,
        tx: &TransactionKey,
        status: u16,
        response: Option<&Response>,
    ) -> Option<TrunkEvent> {
        let index = self.pending.iter().position(|(k, _)| k == tx)?;
        let (_, purpose) = self.pending.swap_remove(index);
        if let Some(seq) = response.and_then(|r| r.headers.cseq().ok()).map(|c| c.seq) {
            // The user agent may have re-sent it with credentials (CSeq + 1).
            self.cseq = self.cseq.max(seq);
        }
        let name = self.config.name.clone();
        match purpose {
            Purpose::Options => {
                // Any final answer but a timeout, a transport error or a 503 means the
                // peer is there (a 404 or 405 to OPTIONS is still an answer).
                let alive = !matches!(status, 408 | 503);
                let changed = self.up != Some(alive);
                self.up = Some(alive);
                if !alive {
                    self.fail_over();
                }
                match (changed, alive) {
                    (true, true) => Some(TrunkEvent::Up { trunk: name }),
                    (true, false) => Some(TrunkEvent::Down {
                        trunk: name,
                        status,
                    }),
                    _ => None,
                }
            }
            Purpose::Unregister => {
                self.registration = RegistrationState::Unregistered;
                Some(TrunkEvent::Unregistered { trunk: name })
            }
            Purpose::Register => match status {
                200..=299 => {
                    let granted = response
                        .and_then(|r| granted_expires(r, &self.config))
                        .unwrap_or(self.config.register_expires);
                    // A 2xx that grants nothing (expires 0) is no registration: back
                    // off rather than re-REGISTER every second.
                    if granted.is_zero() {
                        return self.register_failed(now, status);
                    }
                    self.failures = 0;
                    self.registration = RegistrationState::Registered {
                        expires: now + granted,
                    };
                    // Refresh before expiry: at 85%, and at least 5 s before it.
                    let refresh =
                        (granted.mul_f32(0.85)).min(granted.saturating_sub(Duration::from_secs(5)));
                    self.next_register = Some(now + refresh.max(Duration::from_secs(1)));
                    info!(trunk = %name, expires = granted.as_secs(), "registered");
                    Some(TrunkEvent::Registered {
                        trunk: name,
                        expires: granted,
                    })
                }
                // RFC 3261 §10.2.8: too brief: retry at once with Min-Expires.
                423 => {
                    let min = response
                        .and_then(|r| r.headers.get(&HeaderName::MinExpires))
                        .and_then(|v| std::str::from_utf8(v).ok()?.trim().parse::<u64>().ok());
                    match min {
                        Some(min)
                            if min > self.config.register_expires.as_secs() && min <= 86_400 =>
                        {
                            self.config.register_expires = Duration::from_secs(min);
                            self.next_register = Some(now);
                            None
                        }
                        _ => self.register_failed(now, status),
                    }
                }
                _ => {
                    if matches!(status, 408 | 503) {
                        self.fail_over();
                    }
                    self.register_failed(now, status)
                }
            },
        }
    }

    fn register_failed(&mut self, now: Instant, status: u16) -> Option<TrunkEvent> {
        let wait = backoff(self.failures);
        self.failures = self.failures.saturating_add(1);
        self.registration = RegistrationState::Failed {
            status,
            retry: now + wait,
        };
        self.next_register = Some(now + wait);
        warn!(trunk = %self.config.name, status, retry_in = wait.as_secs(), "registration failed");
        Some(TrunkEvent::RegistrationFailed {
            trunk: self.config.name.clone(),
            status,
            retry_in: wait,
        })
    }

    /// Whether a request from `source` is this trunk's.
    pub fn accepts_from(&self, source: IpAddr) -> bool {
        self.config.inbound.iter().any(|c| c.contains(source))
            || self.targets.iter().any(|t| t.addr.ip() == source)
    }
}

/// The expiry the registrar granted: our Contact's `expires` parameter, else the
/// Expires header (RFC 3261 §10.2.4).
fn granted_expires(response: &Response, config: &TrunkConfig) -> Option<Duration> {
    if let Ok(sip_message::Contacts::List(list)) = response.headers.contacts() {
        let ours = list.iter().find(|c| {
            c.addr
                .uri
                .as_sip()
                .and_then(|u| u.user.as_deref())
                .is_some_and(|u| u == config.user().as_bytes())
        });
        if let Some(expires) = ours.and_then(|c| c.expires()) {
            return Some(Duration::from_secs(u64::from(expires)));
        }
    }
    response
        .headers
        .expires()
        .ok()
        .flatten()
        .map(|e| Duration::from_secs(u64::from(e)))
}

fn contact_for(user: &str, flow: &Flow, ua: &UserAgent) -> String {
    let ip = ua.config().advertised_address.unwrap_or(flow.local.ip());
    let local = SocketAddr::new(ip, flow.local.port());
    match flow.transport {
        Transport::Udp => format!("<sip:{user}@{local}>"),
        other => format!(
            "<sip:{user}@{local};transport={}>",
            contact_transport(other)
        ),
    }
}

/// The proxy URI's own address when it names an IP (no DNS needed).
pub fn literal_target(proxy: &str) -> Option<TrunkTarget> {
    let uri = sip_message::Uri::parse(proxy.as_bytes()).ok()?;
    let sip = uri.as_sip()?;
    let ip: IpAddr = match &sip.host {
        sip_message::Host::Ipv4(a) => IpAddr::V4(*a),
        sip_message::Host::Ipv6(a) => IpAddr::V6(*a),
        sip_message::Host::Domain(_) => return None,
    };
    let transport = sip
        .transport_param()
        .and_then(Transport::from_token)
        .unwrap_or(if sip.secure {
            Transport::Tls
        } else {
            Transport::Udp
        });
    let port = sip.port.unwrap_or(if transport == Transport::Tls {
        5061
    } else {
        5060
    });
    Some(TrunkTarget {
        transport,
        addr: SocketAddr::new(ip, port),
    })
}

/// Is this user agent event a response for one of the trunks? Returns its pieces.
pub(crate) fn response_of(event: &Event) -> Option<(&TransactionKey, u16, Option<&Response>)> {
    match event {
        Event::Response {
            session: None,
            tx,
            status,
            response,
        } => Some((tx, *status, response.as_ref())),
        _ => None,
    }
}

/// The `transport` URI parameter for a Contact: RFC 7118 §5.2.2 defines only `ws`,
/// for WSS too (errata 5937).
fn contact_transport(transport: sip_message::Transport) -> &'static str {
    match transport {
        sip_message::Transport::Ws | sip_message::Transport::Wss => "ws",
        sip_message::Transport::Tcp => "tcp",
        sip_message::Transport::Tls => "tls",
        sip_message::Transport::Sctp => "sctp",
        _ => "udp",
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn cidr_matching() {
        let net = Cidr::parse("192.0.2.0/24").unwrap();
        assert!(net.contains("192.0.2.77".parse().unwrap()));
        assert!(!net.contains("192.0.3.1".parse().unwrap()));
        assert!(!net.contains("::1".parse().unwrap()));
        let one = Cidr::parse("198.51.100.7").unwrap();
        assert_eq!(one.prefix, 32);
        assert!(one.contains("198.51.100.7".parse().unwrap()));
        assert!(!one.contains("198.51.100.8".parse().unwrap()));
        let all = Cidr::parse("0.0.0.0/0").unwrap();
        assert!(all.contains("203.0.113.9".parse().unwrap()));
        let v6 = Cidr::parse("2001:db8::/32").unwrap();
        assert!(v6.contains("2001:db8:1::5".parse().unwrap()));
        assert!(!v6.contains("2001:db9::1".parse().unwrap()));
        assert_eq!(Cidr::parse("10.0.0.0/33"), None);
        assert_eq!(Cidr::parse("nonsense"), None);
    }

    #[test]
    fn backoff_doubles_to_thirty_minutes() {
        let waits: Vec<u64> = (0..9).map(|n| backoff(n).as_secs()).collect();
        assert_eq!(waits, [30, 60, 120, 240, 480, 960, 1800, 1800, 1800]);
    }

    #[test]
    fn literal_proxy_needs_no_dns() {
        let t = literal_target("sip:192.0.2.10:5080;transport=tcp").unwrap();
        assert_eq!((t.transport, t.addr.port()), (Transport::Tcp, 5080));
        let t = literal_target("sips:[2001:db8::1]").unwrap();
        assert_eq!((t.transport, t.addr.port()), (Transport::Tls, 5061));
        assert_eq!(literal_target("sip:sbc.example.net"), None);
    }
}
