//! The daemon's TOML configuration. Unknown keys are refused; every error names the file,
//! the line and the key. `config/tandem.toml` is the embedded default and
//! `config/tandem.example.toml` documents every key.

use runtime::calls::routing::{self, RouteError, RouteTable};
use runtime::calls::{BridgeMode, ParkSettings};
use serde::Deserialize;
use sip_message::Transport;
use sip_transport::{TlsConfig, TransportError};
use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;
use toml::Spanned;

mod guard;
pub use guard::{LimitsSection, SecuritySection};

/// The embedded default: what `tandem run` uses without `--config`.
pub const DEFAULT: &str = include_str!("../../../config/tandem.toml");

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub sip: SipConfig,
    #[serde(default)]
    pub log: LogConfig,
    #[serde(default)]
    pub users: Vec<UserConfig>,
    #[serde(default)]
    pub trunks: Vec<TrunkSection>,
    #[serde(default)]
    pub inbound: InboundSection,
    #[serde(default)]
    pub dns: DnsSection,
    #[serde(default)]
    pub media: MediaSection,
    /// `[[route]]`: routing rules, as written.
    #[serde(default)]
    pub route: Vec<RouteSection>,
    /// The rules built from `route` when the file is read (so every error has its line).
    #[serde(skip)]
    pub route_table: RouteTable,
    /// `[park]`: call park, as written.
    #[serde(default)]
    pub park: ParkSection,
    /// The settings built from `park` when the file is read (checked, with lines).
    #[serde(skip)]
    pub park_settings: ParkSettings,
    /// `[api]`: the control API, as written.
    #[serde(default)]
    pub api: ApiSection,
    /// The settings built from `api` (checked, with lines; secrets from the
    /// environment applied).
    #[serde(skip)]
    pub api_settings: ApiSettings,
    /// `[limits]` and `[security]`: overload and abuse protection, as written.
    #[serde(default)]
    pub limits: LimitsSection,
    #[serde(default)]
    pub security: SecuritySection,
    /// The guard's settings built from them (checked, with lines).
    #[serde(skip)]
    pub guard_settings: sip_core::GuardConfig,
    /// `[daemon]`: the process's lifecycle (drain on SIGTERM).
    #[serde(default)]
    pub daemon: DaemonSection,
    /// `[admin]`: metrics and the call ladder over HTTP, as written.
    #[serde(default)]
    pub admin: crate::observe_config::AdminSection,
    /// `[hep]`: HEPv3 export, as written.
    #[serde(default)]
    pub hep: crate::observe_config::HepSection,
    /// `[admin]` and `[hep]`, checked.
    #[serde(skip)]
    pub observe_settings: crate::observe_config::ObserveSettings,
}

/// `[daemon]`: how the daemon stops. SIGTERM drains: new calls get 503 with
/// `Retry-After: retry_after_s`, calls in progress go on for up to `drain_grace_s`, then
/// get BYE.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct DaemonSection {
    pub drain_grace_s: u64,
    pub retry_after_s: u32,
}

impl Default for DaemonSection {
    fn default() -> Self {
        DaemonSection {
            drain_grace_s: 30,
            retry_after_s: 60,
        }
    }
}

/// `[api]`: the control API (REST under /v1, webhooks, the event stream). Without
/// `listen` it is off.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ApiSection {
    /// `address:port` it listens on (HTTP).
    pub listen: Option<Spanned<SocketAddr>>,
    /// The bearer token clients send; `TANDEM_API_TOKEN` in the environment overrides it.
    pub token: Option<Spanned<String>>,
    /// The largest request body, in bytes [65536].
    pub max_body_bytes: Option<Spanned<usize>>,
    /// How long events are kept for clients that reconnect, in seconds [900].
    pub event_retention_s: Option<Spanned<u64>>,
    /// How long a messaging invitation waits for the other side, in seconds [30].
    pub messaging_invitation_timeout_s: Option<Spanned<u64>>,
    /// The directory `play` and `hold` files are taken from (relative paths only);
    /// relative to the configuration file's directory.
    pub media_dir: Option<Spanned<PathBuf>>,
    /// Standard Webhooks secret (`whsec_` + base64) signing every webhook;
    /// `TANDEM_WEBHOOK_SECRET` overrides it.
    pub webhook_secret: Option<Spanned<String>>,
    /// POSTs of one webhook, the first included, before it counts as failed, 1 to 20 [8].
    pub webhook_attempts: Option<Spanned<u32>>,
    /// The trunk phone numbers are called through.
    pub default_trunk: Option<Spanned<String>>,
    /// `[[api.applications]]`: the applications calls are created for and handed to.
    #[serde(default)]
    pub applications: Vec<ApiApplicationSection>,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ApiApplicationSection {
    /// Its name, as `webhook` routes and API requests give it.
    pub name: Spanned<String>,
    /// Where its events are POSTed (http://).
    pub callback_uri: Option<Spanned<String>>,
    /// Its SIP identity (calls it creates are from it).
    pub owner_uri: Spanned<SipUriText>,
    /// How long an incoming call waits for answer, reject or redirect, in seconds [10].
    pub answer_timeout_s: Option<Spanned<u64>>,
}

/// `[api]`, checked.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ApiSettings {
    pub listen: Option<SocketAddr>,
    pub token: Option<String>,
    pub max_body_bytes: usize,
    pub event_retention: Duration,
    pub messaging_invitation_timeout: Duration,
    pub media_dir: Option<PathBuf>,
    pub webhook_secret: Option<Vec<u8>>,
    pub webhook_attempts: u32,
    pub default_trunk: Option<String>,
    pub applications: Vec<ApiApplication>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ApiApplication {
    pub name: String,
    pub callback_uri: Option<String>,
    pub owner_uri: String,
    pub answer_timeout: Duration,
}

/// `[park]`: call park. Every key is optional (the defaults in brackets).
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ParkSection {
    /// The orbits, inclusive: their numbers are dialled (`sip:701@host`) to retrieve a
    /// call and watched (BLF) [701-720].
    pub first_orbit: Option<Spanned<u16>>,
    pub last_orbit: Option<Spanned<u16>>,
    /// Seconds before an unretrieved call rings back the parker [120].
    pub timeout_s: Option<Spanned<u64>>,
    /// Music on hold: a WAV file, relative to the configuration file [a tone].
    pub music: Option<Spanned<PathBuf>>,
    /// A SIP URI rung when the parker cannot be [none: the call is ended].
    pub fallback: Option<Spanned<SipUriText>>,
    /// The Refer-To user that parks a bridged call ["700"].
    pub number: Option<Spanned<String>>,
}

/// The most orbits a `[park]` may have (each is a user of the endpoint).
const MAX_ORBITS: u32 = 1000;

/// `[[route]]`: a routing rule for incoming INVITEs. The first rule whose every
/// condition holds applies.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RouteSection {
    pub name: Spanned<String>,
    /// `[route.match]`: the conditions (none: every request).
    #[serde(default, rename = "match")]
    pub when: MatchSection,
    pub action: Spanned<RouteAction>,
    /// bridge: "sequential" (default) or "parallel".
    pub ring: Option<Spanned<RingText>>,
    /// bridge: "signaling" (default) or "anchored".
    pub media: Option<Spanned<MediaText>>,
    /// bridge: headers passed across the bridge by name, both ways
    /// (`BridgeOptions::pass_headers`).
    pub pass_headers: Option<Spanned<Vec<Spanned<String>>>>,
    /// bridge: `[[route.targets]]`.
    #[serde(default)]
    pub targets: Vec<TargetSection>,
    /// forward: the Contact of the 302.
    pub target: Option<Spanned<String>>,
    /// decline: the status (400-699) and an optional reason phrase.
    pub status: Option<Spanned<u16>>,
    pub reason: Option<Spanned<String>>,
    /// webhook: the application's name.
    pub application: Option<Spanned<String>>,
}

/// `[route.match]`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct MatchSection {
    pub user: Option<Spanned<String>>,
    pub host: Option<Spanned<String>>,
    pub from: Option<Spanned<String>>,
    pub trunk: Option<Spanned<String>>,
    pub headers: BTreeMap<String, Spanned<String>>,
}

/// `[[route.targets]]`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TargetSection {
    pub uri: Spanned<String>,
    pub trunk: Option<Spanned<String>>,
    pub timeout_s: Option<Spanned<u64>>,
    #[serde(default)]
    pub headers: BTreeMap<String, Spanned<String>>,
    pub rewrite: Option<RewriteSection>,
}

/// `rewrite = { pattern = "...", replace = "..." }`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RewriteSection {
    pub pattern: Spanned<String>,
    pub replace: Spanned<String>,
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum RouteAction {
    Bridge,
    Forward,
    Decline,
    Park,
    Echo,
    Webhook,
}

impl RouteAction {
    fn as_str(self) -> &'static str {
        match self {
            RouteAction::Bridge => "bridge",
            RouteAction::Forward => "forward",
            RouteAction::Decline => "decline",
            RouteAction::Park => "park",
            RouteAction::Echo => "echo",
            RouteAction::Webhook => "webhook",
        }
    }
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum RingText {
    Sequential,
    Parallel,
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum MediaText {
    Signaling,
    Anchored,
}

/// `[media]`: RTP ports and the media timeout.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct MediaSection {
    /// The address RTP sockets bind to (default: every address, 0.0.0.0).
    pub address: Option<std::net::IpAddr>,
    /// The RTP port range, inclusive: RTP on even ports, RTCP on the next.
    pub rtp_port_first: u16,
    pub rtp_port_last: u16,
    /// No RTP for this many seconds while the peer should send: an event (0: never).
    pub timeout_s: u64,
    /// End such a call with BYE.
    pub hangup_on_timeout: bool,
}

impl Default for MediaSection {
    fn default() -> Self {
        MediaSection {
            address: None,
            rtp_port_first: 16384,
            rtp_port_last: 32767,
            timeout_s: 60,
            hangup_on_timeout: false,
        }
    }
}

/// `[[trunks]]`: a SIP trunk (registration, keepalive, inbound networks, caller ID).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TrunkSection {
    pub name: String,
    /// The trunk's proxy and registrar: a SIP URI; a domain is resolved with RFC 3263.
    pub proxy: SipUriText,
    /// The domain of our address-of-record (default: the proxy's host).
    pub domain: Option<String>,
    pub username: Option<String>,
    pub password: Option<String>,
    /// The password is read from this environment variable instead (it wins over
    /// `password`), so the file need not hold the secret.
    pub password_env: Option<Spanned<String>>,
    pub realm: Option<String>,
    #[serde(default)]
    pub register: bool,
    #[serde(default = "default_register_expires")]
    pub register_expires_s: u64,
    pub options_interval_s: Option<u64>,
    /// Networks inbound requests from this trunk come from ("192.0.2.0/24").
    #[serde(default)]
    pub inbound: Vec<CidrText>,
    pub caller_id: Option<String>,
    pub asserted_identity: Option<String>,
}

fn default_register_expires() -> u64 {
    3600
}

/// `[inbound]`: who may send requests outside a dialog.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct InboundSection {
    /// "any" (the demo default) or "trusted" (trunk networks and authenticated users).
    pub accept: Accept,
    pub realm: String,
    pub nonce_ttl_s: u64,
    /// Digest algorithms offered, in order (RFC 8760 §2.4: strongest first).
    pub algorithms: Vec<AlgorithmText>,
    pub users: Vec<AccountConfig>,
}

/// A digest algorithm as RFC 8760 spells it ("SHA-256", "MD5", ...).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AlgorithmText(pub sip_auth::Algorithm);

impl<'de> Deserialize<'de> for AlgorithmText {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        sip_auth::Algorithm::parse(text.as_bytes())
            .map(AlgorithmText)
            .ok_or_else(|| {
                serde::de::Error::custom(format!(
                    "`{text}` is not a digest algorithm (SHA-256, SHA-512-256, MD5, or their -sess forms)"
                ))
            })
    }
}

impl Default for InboundSection {
    fn default() -> Self {
        InboundSection {
            accept: Accept::Any,
            realm: "tandem".into(),
            nonce_ttl_s: 300,
            algorithms: vec![
                AlgorithmText(sip_auth::Algorithm::Sha256),
                AlgorithmText(sip_auth::Algorithm::Md5),
            ],
            users: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Accept {
    Any,
    Trusted,
}

/// A digest account of `[inbound]`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AccountConfig {
    pub name: String,
    #[serde(default)]
    pub password: String,
    /// The password is read from this environment variable instead.
    pub password_env: Option<Spanned<String>>,
}

/// `[dns]`: where RFC 3263 lookups go.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct DnsSection {
    /// DNS servers ("ip:port"); empty: the system's (/etc/resolv.conf).
    pub servers: Vec<SocketAddr>,
}

/// A SIP or SIPS URI, checked when the file is read (so the error has its line).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SipUriText(pub String);

impl<'de> Deserialize<'de> for SipUriText {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        match sip_message::Uri::parse(text.as_bytes()) {
            Ok(uri) if uri.as_sip().is_some() => Ok(SipUriText(text)),
            _ => Err(serde::de::Error::custom(format!(
                "`{text}` is not a sip: or sips: URI"
            ))),
        }
    }
}

/// An IP network, checked when the file is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CidrText(pub sip_core::Cidr);

impl<'de> Deserialize<'de> for CidrText {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        sip_core::Cidr::parse(&text).map(CidrText).ok_or_else(|| {
            serde::de::Error::custom(format!(
                "`{text}` is not an address or network (\"192.0.2.0/24\")"
            ))
        })
    }
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct SipConfig {
    pub listen: Vec<Listen>,
    pub user_agent: String,
    pub ring_timeout_s: u64,
    pub max_call_duration_s: u64,
    pub advertised_address: Option<std::net::IpAddr>,
    pub max_header_bytes: usize,
    pub max_body_bytes: usize,
    pub timers: Timers,
    pub session_timer: SessionTimerSection,
    /// Certificate and trust for `tls:` and `wss:` listeners and outbound TLS.
    pub tls: Option<TlsFiles>,
}

/// `[sip.tls]`: PEM files. A relative path is taken from the configuration
/// file's directory.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TlsFiles {
    /// The server certificate, then its intermediates.
    pub certificate: PathBuf,
    /// Its private key (PKCS#8, PKCS#1 or SEC1).
    pub private_key: PathBuf,
    /// CA certificates that outbound TLS trusts; without it outbound TLS is refused.
    pub ca_file: Option<PathBuf>,
}

/// `[sip.session_timer]`: RFC 4028.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct SessionTimerSection {
    pub enabled: bool,
    pub session_expires_s: u64,
    pub min_se_s: u64,
}

impl Default for SessionTimerSection {
    fn default() -> Self {
        SessionTimerSection {
            enabled: true,
            session_expires_s: 1800,
            min_se_s: 90,
        }
    }
}

impl Default for SipConfig {
    fn default() -> Self {
        SipConfig {
            listen: vec![
                Listen {
                    transport: Transport::Udp,
                    addr: SocketAddr::from(([127, 0, 0, 1], 5060)),
                },
                Listen {
                    transport: Transport::Tcp,
                    addr: SocketAddr::from(([127, 0, 0, 1], 5060)),
                },
            ],
            user_agent: format!("Tandem/{}", env!("CARGO_PKG_VERSION")),
            ring_timeout_s: 60,
            max_call_duration_s: 3600,
            advertised_address: None,
            max_header_bytes: 16 * 1024,
            max_body_bytes: 1024 * 1024,
            timers: Timers::default(),
            session_timer: SessionTimerSection::default(),
            tls: None,
        }
    }
}

/// RFC 3261 §17.1.1.1 timer values.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Timers {
    pub t1_ms: u64,
    pub t2_ms: u64,
    pub t4_ms: u64,
}

impl Default for Timers {
    fn default() -> Self {
        Timers {
            t1_ms: 500,
            t2_ms: 4000,
            t4_ms: 5000,
        }
    }
}

impl Timers {
    pub fn t1(&self) -> Duration {
        Duration::from_millis(self.t1_ms)
    }
    pub fn t2(&self) -> Duration {
        Duration::from_millis(self.t2_ms)
    }
    pub fn t4(&self) -> Duration {
        Duration::from_millis(self.t4_ms)
    }
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    pub level: String,
    pub format: LogFormat,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            level: "info".into(),
            format: LogFormat::Text,
        }
    }
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct UserConfig {
    pub name: String,
    pub behaviour: Behaviour,
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Behaviour {
    Echo,
    Ring,
    Busy,
    Answer,
}

/// A listening socket, written "transport:ip:port" ("udp:127.0.0.1:5060", "tcp:[::1]:5060",
/// "tls:127.0.0.1:5061", "ws:127.0.0.1:8088", "wss:127.0.0.1:8089").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Listen {
    pub transport: Transport,
    pub addr: SocketAddr,
}

impl<'de> Deserialize<'de> for Listen {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

impl std::str::FromStr for Listen {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        let (transport, addr) = text
            .split_once(':')
            .ok_or_else(|| format!("`{text}` is not \"transport:ip:port\""))?;
        let transport = match transport.to_ascii_lowercase().as_str() {
            "udp" => Transport::Udp,
            "tcp" => Transport::Tcp,
            "tls" => Transport::Tls,
            "ws" => Transport::Ws,
            "wss" => Transport::Wss,
            other => {
                return Err(format!(
                    "transport `{other}` is not supported (udp, tcp, tls, ws, wss)"
                ));
            }
        };
        let addr = addr
            .parse()
            .map_err(|_| format!("`{addr}` is not an ip:port address"))?;
        Ok(Listen { transport, addr })
    }
}

impl fmt::Display for Listen {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}",
            self.transport.as_str().to_ascii_lowercase(),
            self.addr
        )
    }
}

/// A configuration that was refused, with where and why.
#[derive(Debug)]
pub struct ConfigError {
    pub source: String,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.source, self.message)
    }
}

impl std::error::Error for ConfigError {}

impl Config {
    /// Parses and checks a configuration. `source` names it in errors (a path, or
    /// "embedded default").
    pub fn parse(text: &str, source: &str) -> Result<Config, ConfigError> {
        let config: Config = toml::from_str(text).map_err(|e| ConfigError {
            source: source.to_owned(),
            message: describe(text, &e),
        })?;
        config.check().map_err(|message| ConfigError {
            source: source.to_owned(),
            message,
        })?;
        let mut config = config;
        config.route_table = config.routes(text).map_err(|message| ConfigError {
            source: source.to_owned(),
            message,
        })?;
        config.park_settings = config.park_settings(text).map_err(|message| ConfigError {
            source: source.to_owned(),
            message,
        })?;
        config.api_settings = config
            .api_settings(text, |name| std::env::var(name).ok())
            .map_err(|message| ConfigError {
                source: source.to_owned(),
                message,
            })?;
        config.guard_settings = guard::guard_settings(&config.limits, &config.security, text)
            .map_err(|message| ConfigError {
                source: source.to_owned(),
                message,
            })?;
        config
            .passwords_from_env(text, |name| std::env::var(name).ok())
            .map_err(|message| ConfigError {
                source: source.to_owned(),
                message,
            })?;
        config.observe_settings = crate::observe_config::settings(
            &config.admin,
            &config.hep,
            text,
            |name| std::env::var(name).ok(),
            line_of,
        )
        .map_err(|message| ConfigError {
            source: source.to_owned(),
            message,
        })?;
        Ok(config)
    }

    /// `password_env` of `[[trunks]]` and `[[inbound.users]]`: the variable's value
    /// replaces `password`. A variable that is unset or empty refuses the file, naming
    /// the line and the key; so does an account with no password at all.
    fn passwords_from_env(
        &mut self,
        text: &str,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<(), String> {
        let read = |key: &str, var: &Spanned<String>| {
            env(var.get_ref()).filter(|v| !v.is_empty()).ok_or_else(|| {
                let (line, content) = line_of(text, var.span().start);
                format!(
                    "line {line}: key `{key}`: environment variable {} is not set (in `{content}`)",
                    var.get_ref()
                )
            })
        };
        for (i, trunk) in self.trunks.iter_mut().enumerate() {
            if let Some(var) = &trunk.password_env {
                trunk.password = Some(read(&format!("trunks[{i}].password_env"), var)?);
            }
        }
        for (i, account) in self.inbound.users.iter_mut().enumerate() {
            if let Some(var) = &account.password_env {
                account.password = read(&format!("inbound.users[{i}].password_env"), var)?;
            }
            if account.password.is_empty() {
                return Err(format!(
                    "key `inbound.users[{i}].password`: account `{}` has no password \
                     (set `password` or `password_env`)",
                    account.name
                ));
            }
        }
        if self.daemon.retry_after_s == 0 {
            let at = text.find("retry_after_s").unwrap_or_default();
            let (line, content) = line_of(text, at);
            return Err(format!(
                "line {line}: key `daemon.retry_after_s`: must be at least 1 (in `{content}`)"
            ));
        }
        Ok(())
    }

    /// Builds and checks `[api]`; `env` reads the environment (secrets override the
    /// file). An error names the line and the key (`api.applications[0].callback_uri`).
    fn api_settings(
        &self,
        text: &str,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<ApiSettings, String> {
        let a = &self.api;
        let section = text.find("[api]").unwrap_or_default();
        let at = |key: &str, span: Option<std::ops::Range<usize>>, problem: &dyn fmt::Display| {
            let (line, content) = line_of(text, span.map_or(section, |s| s.start));
            format!("line {line}: key `api.{key}`: {problem} (in `{content}`)")
        };
        let mut settings = ApiSettings {
            listen: a.listen.as_ref().map(|l| *l.get_ref()),
            token: a.token.as_ref().map(|t| t.get_ref().clone()),
            max_body_bytes: 64 * 1024,
            event_retention: Duration::from_secs(900),
            messaging_invitation_timeout: Duration::from_secs(30),
            webhook_attempts: 8,
            ..ApiSettings::default()
        };
        let weak = |token: &str| {
            token.len() < 16 || token.chars().any(|c| c.is_whitespace() || c.is_control())
        };
        const STRONG: &str = "must be at least 16 characters, with no spaces or control characters";
        if let Some(token) = env("TANDEM_API_TOKEN").filter(|t| !t.is_empty()) {
            if weak(&token) {
                return Err(format!(
                    "the environment's TANDEM_API_TOKEN (for key `api.token`): {STRONG}"
                ));
            }
            settings.token = Some(token);
        } else if let Some(spanned) = &a.token
            && weak(spanned.get_ref())
        {
            return Err(at("token", Some(spanned.span()), &STRONG));
        }
        if let Some(max) = &a.max_body_bytes {
            if !(1024..=16 * 1024 * 1024).contains(max.get_ref()) {
                return Err(at(
                    "max_body_bytes",
                    Some(max.span()),
                    &"must be 1024 to 16777216",
                ));
            }
            settings.max_body_bytes = *max.get_ref();
        }
        if let Some(retention) = &a.event_retention_s {
            if *retention.get_ref() == 0 {
                return Err(at(
                    "event_retention_s",
                    Some(retention.span()),
                    &"must be at least 1",
                ));
            }
            settings.event_retention = Duration::from_secs(*retention.get_ref());
        }
        if let Some(timeout) = &a.messaging_invitation_timeout_s {
            if !(1..=600).contains(timeout.get_ref()) {
                return Err(at(
                    "messaging_invitation_timeout_s",
                    Some(timeout.span()),
                    &"must be 1 to 600",
                ));
            }
            settings.messaging_invitation_timeout = Duration::from_secs(*timeout.get_ref());
        }
        if let Some(attempts) = &a.webhook_attempts {
            if !(1..=20).contains(attempts.get_ref()) {
                return Err(at(
                    "webhook_attempts",
                    Some(attempts.span()),
                    &"must be 1 to 20",
                ));
            }
            settings.webhook_attempts = *attempts.get_ref();
        }
        let secret_text = env("TANDEM_WEBHOOK_SECRET")
            .filter(|s| !s.is_empty())
            .map(|s| (s, None))
            .or_else(|| {
                a.webhook_secret
                    .as_ref()
                    .map(|s| (s.get_ref().clone(), Some(s.span())))
            });
        if let Some((text_secret, span)) = secret_text {
            use base64::Engine as _;
            let decoded = text_secret
                .strip_prefix("whsec_")
                .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
                .filter(|key| (24..=64).contains(&key.len()));
            let Some(key) = decoded else {
                return Err(at(
                    "webhook_secret",
                    span,
                    &"must be `whsec_` and the base64 of 24 to 64 random bytes (Standard Webhooks)",
                ));
            };
            settings.webhook_secret = Some(key);
        }
        if let Some(trunk) = &a.default_trunk {
            if !self.trunks.iter().any(|t| t.name == *trunk.get_ref()) {
                return Err(at(
                    "default_trunk",
                    Some(trunk.span()),
                    &format!("no [[trunks]] is named `{}`", trunk.get_ref()),
                ));
            }
            settings.default_trunk = Some(trunk.get_ref().clone());
        }
        for (i, app) in a.applications.iter().enumerate() {
            let key = |k: &str| format!("applications[{i}].{k}");
            let name = app.name.get_ref().trim();
            if name.is_empty()
                || !name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
            {
                return Err(at(
                    &key("name"),
                    Some(app.name.span()),
                    &"must be letters, digits, `-`, `_` or `.`",
                ));
            }
            if settings.applications.iter().any(|other| other.name == name) {
                return Err(at(
                    &key("name"),
                    Some(app.name.span()),
                    &format!("application `{name}` appears twice"),
                ));
            }
            let callback_uri = match &app.callback_uri {
                Some(uri) if !uri.get_ref().starts_with("http://") => {
                    return Err(at(
                        &key("callback_uri"),
                        Some(uri.span()),
                        &"must be an http:// URL (webhooks are sent without TLS; put a TLS proxy in front)",
                    ));
                }
                Some(uri) => Some(uri.get_ref().clone()),
                None => None,
            };
            let answer_timeout = match &app.answer_timeout_s {
                Some(t) if *t.get_ref() == 0 || *t.get_ref() > 300 => {
                    return Err(at(
                        &key("answer_timeout_s"),
                        Some(t.span()),
                        &"must be 1 to 300",
                    ));
                }
                Some(t) => Duration::from_secs(*t.get_ref()),
                None => Duration::from_secs(10),
            };
            settings.applications.push(ApiApplication {
                name: name.to_owned(),
                callback_uri,
                owner_uri: app.owner_uri.get_ref().0.clone(),
                answer_timeout,
            });
        }
        // Every `webhook` route must name a configured application.
        for (i, route) in self.route.iter().enumerate() {
            if let Some(application) = &route.application
                && !settings
                    .applications
                    .iter()
                    .any(|a| a.name == *application.get_ref())
            {
                let (line, content) = line_of(text, application.span().start);
                return Err(format!(
                    "line {line}: key `route[{i}].application`: no [[api.applications]] is named `{}` (in `{content}`)",
                    application.get_ref()
                ));
            }
        }
        Ok(settings)
    }

    /// Builds and checks `[park]`. An error names the line and the key (`park.last_orbit`).
    fn park_settings(&self, text: &str) -> Result<ParkSettings, String> {
        let p = &self.park;
        let section = text.find("[park]").unwrap_or_default();
        let at = |key: &str, span: Option<std::ops::Range<usize>>, problem: &dyn fmt::Display| {
            let (line, content) = line_of(text, span.map_or(section, |s| s.start));
            format!("line {line}: key `park.{key}`: {problem} (in `{content}`)")
        };
        let span = |v: &Option<Spanned<u16>>| v.as_ref().map(Spanned::span);
        let mut settings = ParkSettings::default();
        if let Some(first) = &p.first_orbit {
            settings.first_orbit = *first.get_ref();
        }
        if let Some(last) = &p.last_orbit {
            settings.last_orbit = *last.get_ref();
        }
        if settings.first_orbit == 0 {
            return Err(at(
                "first_orbit",
                span(&p.first_orbit),
                &"must be at least 1",
            ));
        }
        let last_span = span(&p.last_orbit).or(span(&p.first_orbit));
        if settings.last_orbit < settings.first_orbit {
            return Err(at(
                "last_orbit",
                last_span,
                &format!(
                    "{} is below first_orbit ({})",
                    settings.last_orbit, settings.first_orbit
                ),
            ));
        }
        if u32::from(settings.last_orbit) - u32::from(settings.first_orbit) >= MAX_ORBITS {
            return Err(at(
                "last_orbit",
                last_span,
                &format!("at most {MAX_ORBITS} orbits"),
            ));
        }
        if let Some(timeout) = &p.timeout_s {
            if *timeout.get_ref() == 0 {
                return Err(at("timeout_s", Some(timeout.span()), &"must be at least 1"));
            }
            settings.timeout = Duration::from_secs(*timeout.get_ref());
        }
        if let Some(music) = &p.music {
            settings.music = Some(music.get_ref().display().to_string());
        }
        if let Some(fallback) = &p.fallback {
            settings.fallback = Some(fallback.get_ref().0.clone());
        }
        if let Some(number) = &p.number {
            let value = number.get_ref().trim();
            let plain = !value.is_empty()
                && value
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.!~*'()+".contains(c));
            if !plain {
                return Err(at(
                    "number",
                    Some(number.span()),
                    &"must be a plain URI user part (digits, letters, - _ . ! ~ * ' ( ) +)",
                ));
            }
            if value
                .parse::<u16>()
                .is_ok_and(|n| (settings.first_orbit..=settings.last_orbit).contains(&n))
            {
                return Err(at(
                    "number",
                    Some(number.span()),
                    &"is one of the orbits: a call to it retrieves, it cannot park",
                ));
            }
            settings.number = value.to_owned();
        }
        if let Some(user) = self.users.iter().find(|u| {
            u.name
                .parse::<u16>()
                .is_ok_and(|n| u.name == n.to_string() && settings.is_orbit(n))
        }) {
            return Err(at(
                "first_orbit",
                span(&p.first_orbit),
                &format!(
                    "the orbits {}-{} include user `{}`",
                    settings.first_orbit, settings.last_orbit, user.name
                ),
            ));
        }
        Ok(settings)
    }

    /// Builds the `[[route]]` rules. An error names the line and the key
    /// (`route[0].match.user`).
    fn routes(&self, text: &str) -> Result<RouteTable, String> {
        let mut rules = Vec::with_capacity(self.route.len());
        let mut names = std::collections::HashSet::new();
        for (i, route) in self.route.iter().enumerate() {
            let at = |key: &str, span: std::ops::Range<usize>, problem: &dyn fmt::Display| {
                let (line, content) = line_of(text, span.start);
                format!("line {line}: key `route[{i}]{key}`: {problem} (in `{content}`)")
            };
            let trunk_exists = |name: &Spanned<String>, key: &str| {
                if self.trunks.iter().any(|t| t.name == *name.get_ref()) {
                    Ok(name.get_ref().clone())
                } else {
                    Err(at(
                        key,
                        name.span(),
                        &format!("no [[trunks]] is named `{}`", name.get_ref()),
                    ))
                }
            };
            if route.name.get_ref().trim().is_empty() {
                return Err(at(".name", route.name.span(), &"must not be empty"));
            }
            if !names.insert(route.name.get_ref().as_str()) {
                return Err(at(
                    ".name",
                    route.name.span(),
                    &format!("route `{}` appears twice", route.name.get_ref()),
                ));
            }
            let m = &route.when;
            let compile = |key: &str, pattern: &Spanned<String>, host: bool| {
                let compiled = if host {
                    routing::host_regex(pattern.get_ref())
                } else {
                    routing::regex(pattern.get_ref())
                };
                compiled.map_err(|e| at(key, pattern.span(), &e))
            };
            let when = routing::Match {
                user: m
                    .user
                    .as_ref()
                    .map(|p| compile(".match.user", p, false))
                    .transpose()?,
                host: m
                    .host
                    .as_ref()
                    .map(|p| compile(".match.host", p, true))
                    .transpose()?,
                from: m
                    .from
                    .as_ref()
                    .map(|p| compile(".match.from", p, false))
                    .transpose()?,
                headers: m
                    .headers
                    .iter()
                    .map(|(name, p)| {
                        compile(&format!(".match.headers.{name}"), p, false)
                            .map(|r| (name.clone(), r))
                    })
                    .collect::<Result<_, _>>()?,
                source_trunk: m
                    .trunk
                    .as_ref()
                    .map(|t| trunk_exists(t, ".match.trunk"))
                    .transpose()?,
            };
            // Keys that belong to another action are refused, not ignored.
            let action = *route.action.get_ref();
            let only =
                |key: &str, span: Option<std::ops::Range<usize>>, wanted: RouteAction| match span {
                    Some(span) if action != wanted => Err(at(
                        key,
                        span,
                        &format!(
                            "only for action = \"{}\" (this route's action is \"{}\")",
                            wanted.as_str(),
                            action.as_str()
                        ),
                    )),
                    _ => Ok(()),
                };
            only(
                ".ring",
                route.ring.as_ref().map(Spanned::span),
                RouteAction::Bridge,
            )?;
            only(
                ".media",
                route.media.as_ref().map(Spanned::span),
                RouteAction::Bridge,
            )?;
            only(
                ".pass_headers",
                route.pass_headers.as_ref().map(Spanned::span),
                RouteAction::Bridge,
            )?;
            only(
                ".targets",
                (!route.targets.is_empty()).then(|| route.action.span()),
                RouteAction::Bridge,
            )?;
            only(
                ".target",
                route.target.as_ref().map(Spanned::span),
                RouteAction::Forward,
            )?;
            only(
                ".status",
                route.status.as_ref().map(Spanned::span),
                RouteAction::Decline,
            )?;
            only(
                ".reason",
                route.reason.as_ref().map(Spanned::span),
                RouteAction::Decline,
            )?;
            only(
                ".application",
                route.application.as_ref().map(Spanned::span),
                RouteAction::Webhook,
            )?;
            let missing = |key: &str| {
                at(
                    key,
                    route.action.span(),
                    &format!("needed for action = \"{}\"", action.as_str()),
                )
            };
            let rule_action = match action {
                RouteAction::Bridge => {
                    if route.targets.is_empty() {
                        return Err(at(
                            ".targets",
                            route.action.span(),
                            &"a bridge needs at least one [[route.targets]]",
                        ));
                    }
                    let mut targets = Vec::with_capacity(route.targets.len());
                    for (j, t) in route.targets.iter().enumerate() {
                        let key = |k: &str| format!(".targets[{j}].{k}");
                        let mut target = routing::Target::new(t.uri.get_ref().as_str());
                        target.trunk = t
                            .trunk
                            .as_ref()
                            .map(|n| trunk_exists(n, &key("trunk")))
                            .transpose()?;
                        if let Some(timeout) = &t.timeout_s {
                            if *timeout.get_ref() == 0 {
                                return Err(at(
                                    &key("timeout_s"),
                                    timeout.span(),
                                    &"must be at least 1",
                                ));
                            }
                            target.timeout = Some(Duration::from_secs(*timeout.get_ref()));
                        }
                        target.headers = t
                            .headers
                            .iter()
                            .map(|(n, v)| (n.clone(), v.get_ref().clone()))
                            .collect();
                        if let Some(r) = &t.rewrite {
                            let pattern = compile(&key("rewrite.pattern"), &r.pattern, false)?;
                            target.rewrite = Some(
                                routing::Rewrite::new(pattern, r.replace.get_ref().as_str())
                                    .map_err(|e| {
                                        at(&key("rewrite.replace"), r.replace.span(), &e)
                                    })?,
                            );
                        }
                        targets.push(target);
                    }
                    routing::Action::Bridge {
                        targets,
                        ring: match route.ring.as_ref().map(|r| *r.get_ref()) {
                            Some(RingText::Parallel) => routing::RingStrategy::Parallel,
                            Some(RingText::Sequential) | None => routing::RingStrategy::Sequential,
                        },
                        mode: match route.media.as_ref().map(|m| *m.get_ref()) {
                            Some(MediaText::Anchored) => BridgeMode::MediaAnchored,
                            Some(MediaText::Signaling) | None => BridgeMode::SignalingOnly,
                        },
                        pass_headers: route
                            .pass_headers
                            .iter()
                            .flat_map(|names| names.get_ref())
                            .map(|name| name.get_ref().clone())
                            .collect(),
                    }
                }
                RouteAction::Forward => routing::Action::Forward {
                    target: route
                        .target
                        .as_ref()
                        .ok_or_else(|| missing(".target"))?
                        .get_ref()
                        .clone(),
                },
                RouteAction::Decline => routing::Action::Decline {
                    status: *route
                        .status
                        .as_ref()
                        .ok_or_else(|| missing(".status"))?
                        .get_ref(),
                    reason: route.reason.as_ref().map(|r| r.get_ref().clone()),
                },
                RouteAction::Park => routing::Action::Park,
                RouteAction::Echo => routing::Action::Echo,
                RouteAction::Webhook => routing::Action::Webhook {
                    application: route
                        .application
                        .as_ref()
                        .ok_or_else(|| missing(".application"))?
                        .get_ref()
                        .clone(),
                },
            };
            let rule = routing::Rule::new(route.name.get_ref().as_str(), when, rule_action)
                .map_err(|e| {
                    let target = |j: usize| route.targets.get(j);
                    let (key, span) = match &e {
                        RouteError::Template {
                            target: Some(j), ..
                        } => (
                            format!(".targets[{j}].uri"),
                            target(*j).map(|t| t.uri.span()),
                        ),
                        RouteError::Template { target: None, .. } => (
                            ".target".to_owned(),
                            route.target.as_ref().map(Spanned::span),
                        ),
                        RouteError::Header {
                            target: j, name, ..
                        } => (
                            format!(".targets[{j}].headers.{name}"),
                            target(*j)
                                .and_then(|t| t.headers.get(name))
                                .map(Spanned::span),
                        ),
                        RouteError::Rewrite {
                            target: Some(j), ..
                        } => (
                            format!(".targets[{j}].rewrite.replace"),
                            target(*j)
                                .and_then(|t| t.rewrite.as_ref())
                                .map(|r| r.replace.span()),
                        ),
                        RouteError::MatchHeader { name } => (
                            format!(".match.headers.{name}"),
                            m.headers.get(name).map(Spanned::span),
                        ),
                        RouteError::PassHeader { name, .. } => {
                            let names = route.pass_headers.as_ref().map(Spanned::get_ref);
                            let at = names.and_then(|n| n.iter().position(|n| n.get_ref() == name));
                            (
                                at.map_or_else(
                                    || ".pass_headers".to_owned(),
                                    |k| format!(".pass_headers[{k}]"),
                                ),
                                names
                                    .zip(at)
                                    .and_then(|(n, k)| n.get(k))
                                    .map(Spanned::span)
                                    .or_else(|| route.pass_headers.as_ref().map(Spanned::span)),
                            )
                        }
                        RouteError::DeclineStatus { .. } => (
                            ".status".to_owned(),
                            route.status.as_ref().map(Spanned::span),
                        ),
                        RouteError::ReasonPhrase { .. } => (
                            ".reason".to_owned(),
                            route.reason.as_ref().map(Spanned::span),
                        ),
                        RouteError::Empty { .. } if action == RouteAction::Webhook => (
                            ".application".to_owned(),
                            route.application.as_ref().map(Spanned::span),
                        ),
                        _ => (String::new(), None),
                    };
                    at(&key, span.unwrap_or_else(|| route.name.span()), &e)
                })?;
            rules.push(rule);
        }
        Ok(RouteTable::new(rules))
    }

    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            source: path.display().to_string(),
            message: format!("cannot read: {e}"),
        })?;
        let mut config = Config::parse(&text, &path.display().to_string())?;
        if let (Some(music), Some(dir)) = (config.park.music.as_ref(), path.parent()) {
            let file = music.get_ref();
            let file = if file.is_relative() {
                dir.join(file)
            } else {
                file.clone()
            };
            if !file.is_file() {
                let (line, content) = line_of(&text, music.span().start);
                return Err(ConfigError {
                    source: path.display().to_string(),
                    message: format!(
                        "line {line}: key `park.music`: no such file {} (in `{content}`)",
                        file.display()
                    ),
                });
            }
            config.park_settings.music = Some(file.display().to_string());
        }
        if let (Some(media), Some(dir)) = (config.api.media_dir.as_ref(), path.parent()) {
            let media_dir = if media.get_ref().is_relative() {
                dir.join(media.get_ref())
            } else {
                media.get_ref().clone()
            };
            if !media_dir.is_dir() {
                let (line, content) = line_of(&text, media.span().start);
                return Err(ConfigError {
                    source: path.display().to_string(),
                    message: format!(
                        "line {line}: key `api.media_dir`: no such directory {} (in `{content}`)",
                        media_dir.display()
                    ),
                });
            }
            config.api_settings.media_dir = Some(media_dir);
        }
        if let (Some(tls), Some(dir)) = (config.sip.tls.as_mut(), path.parent()) {
            for file in [&mut tls.certificate, &mut tls.private_key]
                .into_iter()
                .chain(tls.ca_file.as_mut())
            {
                if file.is_relative() {
                    *file = dir.join(&*file);
                }
            }
        }
        Ok(config)
    }

    /// Loads the `[sip.tls]` files, if there are any. `source` names the
    /// configuration in errors, which also name the key, the file and why it
    /// was refused.
    pub fn load_tls(&self, source: &str) -> Result<Option<TlsConfig>, ConfigError> {
        let Some(files) = &self.sip.tls else {
            return Ok(None);
        };
        TlsConfig::from_pem_files(
            &files.certificate,
            &files.private_key,
            files.ca_file.as_deref(),
        )
        .map(Some)
        .map_err(|e| {
            let key = match &e {
                TransportError::TlsFile { path, .. } if *path == files.certificate => {
                    "sip.tls.certificate"
                }
                TransportError::TlsFile { path, .. } if *path == files.private_key => {
                    "sip.tls.private_key"
                }
                TransportError::TlsFile { path, .. }
                    if Some(path.as_path()) == files.ca_file.as_deref() =>
                {
                    "sip.tls.ca_file"
                }
                _ => "sip.tls",
            };
            ConfigError {
                source: source.to_owned(),
                message: format!("key `{key}`: {e}"),
            }
        })
    }

    pub fn embedded() -> Result<Config, ConfigError> {
        Config::parse(DEFAULT, "embedded default")
    }

    /// Checks that span several keys.
    fn check(&self) -> Result<(), String> {
        let t = &self.sip.timers;
        if t.t1_ms == 0 {
            return Err("key `sip.timers.t1_ms`: must be at least 1".into());
        }
        if t.t2_ms < t.t1_ms {
            return Err("key `sip.timers.t2_ms`: must not be smaller than t1_ms".into());
        }
        if self.sip.listen.is_empty() {
            return Err("key `sip.listen`: at least one socket is needed".into());
        }
        if let Some(wildcard) = self
            .sip
            .listen
            .iter()
            .find(|l| l.addr.ip().is_unspecified())
            && self.sip.advertised_address.is_none()
        {
            return Err(format!(
                "key `sip.advertised_address`: needed when listening on {wildcard}: \
                     0.0.0.0 and :: are no address a peer can reach, so Contact, Via and SDP \
                     need the address to advertise"
            ));
        }
        if self
            .sip
            .advertised_address
            .is_some_and(|a| a.is_unspecified() || a.is_multicast())
        {
            return Err("key `sip.advertised_address`: must be a unicast address".into());
        }
        let st = &self.sip.session_timer;
        if st.min_se_s < 90 {
            return Err(
                "key `sip.session_timer.min_se_s`: RFC 4028 §4 allows no less than 90".into(),
            );
        }
        if st.session_expires_s < st.min_se_s {
            return Err(
                "key `sip.session_timer.session_expires_s`: must not be below min_se_s".into(),
            );
        }
        let m = &self.media;
        if m.rtp_port_first < 1024 {
            return Err("key `media.rtp_port_first`: must be at least 1024".into());
        }
        if u32::from(m.rtp_port_last) < u32::from(m.rtp_port_first) + 1 {
            return Err(
                "key `media.rtp_port_last`: the range needs at least one even port and the odd one after it"
                    .into(),
            );
        }
        let mut names = std::collections::HashSet::new();
        for trunk in &self.trunks {
            if !names.insert(trunk.name.as_str()) {
                return Err(format!(
                    "key `trunks.name`: trunk `{}` appears twice",
                    trunk.name
                ));
            }
            if trunk.register && trunk.username.is_none() {
                return Err(format!(
                    "key `trunks.username`: trunk `{}` registers, so it needs a username",
                    trunk.name
                ));
            }
            if trunk.register && trunk.register_expires_s == 0 {
                return Err(format!(
                    "key `trunks.register_expires_s`: trunk `{}`: must be at least 1",
                    trunk.name
                ));
            }
            if trunk.options_interval_s == Some(0) {
                return Err(format!(
                    "key `trunks.options_interval_s`: trunk `{}`: must be at least 1",
                    trunk.name
                ));
            }
        }
        let mut accounts = std::collections::HashSet::new();
        for account in &self.inbound.users {
            if !accounts.insert(account.name.as_str()) {
                return Err(format!(
                    "key `inbound.users.name`: account `{}` appears twice",
                    account.name
                ));
            }
        }
        if let Some(secure) = self
            .sip
            .listen
            .iter()
            .find(|l| matches!(l.transport, Transport::Tls | Transport::Wss))
            && self.sip.tls.is_none()
        {
            return Err(format!(
                "key `sip.tls`: needed when listening on {secure}: a [sip.tls] table \
                     with `certificate` and `private_key`"
            ));
        }
        let mut seen = std::collections::HashSet::new();
        for user in &self.users {
            if !seen.insert(user.name.as_str()) {
                return Err(format!(
                    "key `users.name`: user `{}` appears twice",
                    user.name
                ));
            }
        }
        Ok(())
    }
}

/// The line number (from 1) of a byte offset, and that line's text, trimmed.
fn line_of(text: &str, offset: usize) -> (usize, &str) {
    let line = text
        .get(..offset)
        .map(|before| before.matches('\n').count() + 1)
        .unwrap_or(1);
    let content = text.lines().nth(line - 1).unwrap_or_default().trim();
    (line, content)
}

/// toml's message names the key and shows the line; lead with "line N" so it is
/// greppable and unambiguous.
fn describe(text: &str, error: &toml::de::Error) -> String {
    let message = error.message().trim().to_owned();
    match error.span() {
        Some(span) => {
            let (line, content) = line_of(text, span.start);
            format!("line {line}: {message} (in `{content}`)")
        }
        None => message,
    }
}

#[cfg(test)]
mod tests {
    #![allow(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing
    )]
    use super::*;

    /// The keys of the config structs (`pub` fields of the structs deriving `Deserialize`
    /// in `sources`, as serde names them; `#[serde(skip)]` fields left out), with the
    /// struct each is in.
    fn config_keys(sources: &[&str]) -> Vec<(String, String)> {
        let mut keys = Vec::new();
        for source in sources {
            let mut derives = false;
            let mut current: Option<String> = None;
            let mut attributes = String::new();
            for line in source.lines().map(str::trim) {
                if line.starts_with("mod tests") {
                    break;
                }
                if let Some(name) = &current {
                    if line == "}" {
                        current = None;
                    } else if line.starts_with("#[") {
                        attributes.push_str(line);
                    } else if let Some((field, _)) =
                        line.strip_prefix("pub ").and_then(|l| l.split_once(':'))
                    {
                        let skipped = attributes.contains("skip)") || attributes.contains("skip,");
                        let renamed = attributes
                            .split_once("rename = \"")
                            .and_then(|(_, r)| r.split_once('"'))
                            .map(|(r, _)| r.to_owned());
                        if !skipped {
                            keys.push((name.clone(), renamed.unwrap_or_else(|| field.to_owned())));
                        }
                        attributes.clear();
                    } else if !line.starts_with("//") {
                        attributes.clear();
                    }
                    continue;
                }
                if line.starts_with("#[derive(") {
                    derives = line.contains("Deserialize");
                } else if let Some(rest) = line.strip_prefix("pub struct ") {
                    if derives && rest.ends_with('{') {
                        current = rest.split([' ', '<']).next().map(str::to_owned);
                        attributes.clear();
                    }
                    derives = false;
                } else if line.starts_with("pub enum ") || line.starts_with("impl") {
                    derives = false;
                }
            }
        }
        keys
    }

    /// Whether `key` is documented in `text`: a whole word followed by `=`, `:` or `,`
    /// (`key = value`, set or commented; `#   key: what it does`; `a, b: ...`), or a
    /// table header's last part (`[sip.tls]`, `[[route.targets]]`).
    fn documented(text: &str, key: &str) -> bool {
        text.match_indices(key).any(|(at, _)| {
            let before = text[..at].chars().next_back();
            let after = text[at + key.len()..]
                .trim_start_matches(' ')
                .chars()
                .next();
            !before.is_some_and(|c| c.is_alphanumeric() || c == '_')
                && matches!(after, Some('=' | ':' | ',' | ']'))
        })
    }

    /// `config/tandem.example.toml` documents every key the config structs take: a key
    /// added to a struct without a line in the example fails here.
    #[test]
    fn every_config_key_is_in_the_example_file() {
        let example = include_str!("../../../config/tandem.example.toml");
        let keys = config_keys(&[
            include_str!("config.rs"),
            include_str!("config/guard.rs"),
            include_str!("observe_config.rs"),
        ]);
        // The parser found the structs (the check below is not vacuous).
        for (table, key) in [
            ("Config", "sip"),
            ("Config", "route"),
            ("RouteSection", "match"),
            ("SipConfig", "session_timer"),
            ("ApiSection", "webhook_attempts"),
            ("TrunkSection", "password_env"),
            ("HepSection", "queue"),
            ("SecuritySection", "scanner_user_agents"),
        ] {
            assert!(
                keys.iter().any(|(t, k)| t == table && k == key),
                "{table}.{key} not found among {keys:?}"
            );
        }
        assert!(keys.len() > 100, "{} keys: {keys:?}", keys.len());
        assert!(
            !keys.iter().any(|(_, k)| k == "route_table"),
            "skipped fields are not keys"
        );
        let missing: Vec<String> = keys
            .iter()
            .filter(|(_, key)| !documented(example, key))
            .map(|(table, key)| format!("{table}.{key}"))
            .collect();
        assert!(
            missing.is_empty(),
            "keys missing from config/tandem.example.toml: {missing:?}"
        );
        // And the check can fail.
        assert!(!documented(example, "no_such_key_anywhere"));
        assert!(!documented("# drain_grace_s is long\n", "drain_grace_s"));
        assert!(documented("#   drain_grace_s: seconds\n", "drain_grace_s"));
    }

    #[test]
    fn embedded_default_parses_with_demo_users() {
        let config = Config::embedded().unwrap();
        assert_eq!(config.sip.listen.len(), 2);
        assert_eq!(config.sip.listen[0].to_string(), "udp:127.0.0.1:5060");
        let names: Vec<_> = config.users.iter().map(|u| u.name.as_str()).collect();
        assert_eq!(names, ["echo", "ring", "busy"]);
        assert_eq!(config.sip.timers, Timers::default());
    }

    #[test]
    fn media_section_parses_and_bad_ranges_name_the_key() {
        let config = Config::parse(
            "[media]\naddress = \"127.0.0.1\"\nrtp_port_first = 30000\nrtp_port_last = 30099\ntimeout_s = 0\n",
            "t.toml",
        )
        .unwrap();
        assert_eq!(config.media.rtp_port_first, 30000);
        assert_eq!(config.media.timeout_s, 0);
        assert!(!config.media.hangup_on_timeout, "off unless configured");
        let error = Config::parse(
            "[media]\nrtp_port_first = 30000\nrtp_port_last = 30000\n",
            "t.toml",
        )
        .unwrap_err();
        assert!(error.message.contains("media.rtp_port_last"), "{error}");
        let error = Config::parse("[media]\nrtp_port_first = 80\n", "t.toml").unwrap_err();
        assert!(error.message.contains("media.rtp_port_first"), "{error}");
        let error = Config::parse("[media]\nrtp_ports = 1\n", "t.toml").unwrap_err();
        assert!(error.message.contains("rtp_ports"), "{error}");
    }

    #[test]
    fn example_file_parses() {
        let text = include_str!("../../../config/tandem.example.toml");
        Config::parse(text, "tandem.example.toml").unwrap();
    }

    #[test]
    fn example_tls_section_parses_once_uncommented() {
        let text = include_str!("../../../config/tandem.example.toml");
        let section: Vec<&str> = text
            .lines()
            .skip_while(|l| *l != "# [sip.tls]")
            .take_while(|l| !l.starts_with("#   "))
            .map(|l| l.trim_start_matches("# "))
            .collect();
        assert_eq!(section.len(), 4, "{section:?}");
        let config = Config::parse(
            &format!(
                "[sip]\nlisten = [\"tls:127.0.0.1:5061\", \"wss:127.0.0.1:8089\"]\n{}\n",
                section.join("\n")
            ),
            "example",
        )
        .unwrap();
        let tls = config.sip.tls.unwrap();
        assert_eq!(tls.ca_file, Some(PathBuf::from("/etc/tandem/tls/ca.pem")));
    }

    #[test]
    fn trunks_inbound_and_session_timer_parse() {
        let text = "[sip.session_timer]\nsession_expires_s = 600\nmin_se_s = 120\n\
            [inbound]\naccept = \"trusted\"\n[[inbound.users]]\nname = \"bob\"\npassword = \"pw\"\n\
            [[trunks]]\nname = \"carrier\"\nproxy = \"sip:sbc.example.net;transport=tcp\"\n\
            username = \"u\"\npassword = \"p\"\nregister = true\ninbound = [\"192.0.2.0/24\", \"198.51.100.7\"]\n";
        let config = Config::parse(text, "t.toml").unwrap();
        assert_eq!(config.sip.session_timer.session_expires_s, 600);
        assert_eq!(config.inbound.accept, Accept::Trusted);
        assert_eq!(config.inbound.users[0].name, "bob");
        let trunk = &config.trunks[0];
        assert_eq!(trunk.register_expires_s, 3600);
        assert_eq!(trunk.inbound.len(), 2);
        assert_eq!(trunk.proxy.0, "sip:sbc.example.net;transport=tcp");
    }

    #[test]
    fn bad_trunk_values_name_line_and_key() {
        let text =
            "[[trunks]]\nname = \"t\"\nproxy = \"sip:1.2.3.4\"\ninbound = [\"10.0.0.0/40\"]\n";
        let err = Config::parse(text, "t.toml").unwrap_err().to_string();
        assert!(
            err.contains("line 4") && err.contains("10.0.0.0/40"),
            "{err}"
        );
        let text = "[[trunks]]\nname = \"t\"\nproxy = \"http://x\"\n";
        let err = Config::parse(text, "t.toml").unwrap_err().to_string();
        assert!(err.contains("line 3") && err.contains("not a sip"), "{err}");
        let text = "[[trunks]]\nname = \"t\"\nproxy = \"sip:1.2.3.4\"\nregister = true\n";
        let err = Config::parse(text, "t.toml").unwrap_err().to_string();
        assert!(err.contains("trunks.username"), "{err}");
        let text = "[sip.session_timer]\nmin_se_s = 30\n";
        let err = Config::parse(text, "t.toml").unwrap_err().to_string();
        assert!(err.contains("sip.session_timer.min_se_s"), "{err}");
    }

    #[test]
    fn password_env_fills_trunk_and_account_passwords() {
        let text = "[[trunks]]\nname = \"t\"\nproxy = \"sip:192.0.2.1\"\n\
                    password_env = \"T_PW\"\n\
                    [[inbound.users]]\nname = \"alice\"\npassword_env = \"A_PW\"\n";
        let mut config: Config = toml::from_str(text).unwrap();
        config
            .passwords_from_env(text, |name| match name {
                "T_PW" => Some("trunk-secret".into()),
                "A_PW" => Some("alice-secret".into()),
                _ => None,
            })
            .unwrap();
        assert_eq!(config.trunks[0].password.as_deref(), Some("trunk-secret"));
        assert_eq!(config.inbound.users[0].password, "alice-secret");
        let err = config.passwords_from_env(text, |_| None).unwrap_err();
        assert!(
            err.contains("line 4")
                && err.contains("trunks[0].password_env")
                && err.contains("T_PW"),
            "{err}"
        );
        // An account with neither is refused.
        let text = "[[inbound.users]]\nname = \"bob\"\n";
        let mut config: Config = toml::from_str(text).unwrap();
        let err = config.passwords_from_env(text, |_| None).unwrap_err();
        assert!(err.contains("inbound.users[0].password"), "{err}");
    }

    #[test]
    fn daemon_section_defaults_and_checks() {
        let config = Config::parse("", "t").unwrap();
        assert_eq!(config.daemon.drain_grace_s, 30);
        assert_eq!(config.daemon.retry_after_s, 60);
        let err = Config::parse("[daemon]\nretry_after_s = 0\n", "t").unwrap_err();
        assert!(
            err.message.contains("line 2") && err.message.contains("daemon.retry_after_s"),
            "{err}"
        );
    }

    #[test]
    fn example_trunk_section_parses_once_uncommented() {
        let text = include_str!("../../../config/tandem.example.toml");
        let section: Vec<&str> = text
            .lines()
            .skip_while(|l| *l != "# [[trunks]]")
            .take_while(|l| !l.starts_with("#   "))
            .map(|l| l.trim_start_matches("# "))
            .collect();
        assert_eq!(section.len(), 11, "{section:?}");
        let config = Config::parse(&section.join("\n"), "example").unwrap();
        let trunk = &config.trunks[0];
        assert_eq!(trunk.proxy.0, "sip:sbc.example.net");
        assert!(trunk.register);
        assert_eq!(trunk.options_interval_s, Some(30));
        assert_eq!(trunk.inbound.len(), 2);
        // The example file's [inbound] and [dns] are the defaults.
        let example = Config::parse(text, "example").unwrap();
        assert_eq!(example.inbound, InboundSection::default());
        assert_eq!(example.dns, DnsSection::default());
    }

    #[test]
    fn park_section_parses_and_bad_values_name_line_and_key() {
        let config = Config::embedded().unwrap();
        assert_eq!(config.park_settings, ParkSettings::default());
        let text = "[park]\nfirst_orbit = 801\nlast_orbit = 805\ntimeout_s = 45\n\
                    fallback = \"sip:operator@192.0.2.7\"\nnumber = \"800\"\n";
        let config = Config::parse(text, "t.toml").unwrap();
        let park = &config.park_settings;
        assert_eq!((park.first_orbit, park.last_orbit), (801, 805));
        assert_eq!(park.timeout, Duration::from_secs(45));
        assert_eq!(park.fallback.as_deref(), Some("sip:operator@192.0.2.7"));
        assert_eq!(park.number, "800");
        assert_eq!(park.music, None);
        for (text, line, key) in [
            (
                "[park]\nfirst_orbit = 710\nlast_orbit = 705\n",
                3,
                "park.last_orbit",
            ),
            ("[park]\nlast_orbit = 600\n", 2, "park.last_orbit"),
            (
                "[park]\nfirst_orbit = 1\nlast_orbit = 5000\n",
                3,
                "park.last_orbit",
            ),
            ("[park]\nfirst_orbit = 0\n", 2, "park.first_orbit"),
            ("[park]\n\ntimeout_s = 0\n", 3, "park.timeout_s"),
            ("[park]\nnumber = \"705\"\n", 2, "park.number"),
            ("[park]\nnumber = \"a b\"\n", 2, "park.number"),
        ] {
            let err = Config::parse(text, "t.toml").unwrap_err().to_string();
            assert!(err.starts_with(&format!("t.toml: line {line}:")), "{err}");
            assert!(err.contains(key), "{err}");
        }
        // Type errors and unknown keys name their line too.
        let err = Config::parse("[park]\nfallback = \"tel:123\"\n", "t").unwrap_err();
        assert!(err.to_string().contains("line 2"), "{err}");
        let err = Config::parse("[park]\norbits = 3\n", "t").unwrap_err();
        assert!(err.to_string().contains("line 2") && err.to_string().contains("orbits"));
        // A demo user may not be an orbit.
        let err =
            Config::parse("[[users]]\nname = \"701\"\nbehaviour = \"echo\"\n", "t").unwrap_err();
        assert!(err.to_string().contains("user `701`"), "{err}");
    }

    #[test]
    fn park_music_is_found_beside_the_file() {
        let dir = std::env::temp_dir().join(format!("tandem-park-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("tandem.toml");
        std::fs::write(&path, "[park]\nmusic = \"hold.wav\"\n").unwrap();
        let err = Config::load(&path).unwrap_err().to_string();
        assert!(
            err.contains("line 2: key `park.music`: no such file"),
            "{err}"
        );
        std::fs::write(dir.join("hold.wav"), b"RIFF").unwrap();
        let config = Config::load(&path).unwrap();
        assert_eq!(
            config.park_settings.music,
            Some(dir.join("hold.wav").display().to_string())
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn api_media_dir_is_found_beside_the_file() {
        let dir = std::env::temp_dir().join(format!("tandem-media-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("tandem.toml");
        std::fs::write(
            &path,
            "[api]\nlisten = \"127.0.0.1:0\"\nmedia_dir = \"prompts\"\n",
        )
        .unwrap();
        let err = Config::load(&path).unwrap_err().to_string();
        assert!(
            err.contains("line 3: key `api.media_dir`: no such directory"),
            "{err}"
        );
        std::fs::create_dir_all(dir.join("prompts")).unwrap();
        let config = Config::load(&path).unwrap();
        assert_eq!(config.api_settings.media_dir, Some(dir.join("prompts")));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn unknown_key_names_line_and_key() {
        let text = "[sip]\nuser_agent = \"x\"\nlisten_on = []\n";
        let err = Config::parse(text, "t.toml").unwrap_err().to_string();
        assert!(err.starts_with("t.toml: line 3:"), "{err}");
        assert!(err.contains("listen_on"), "{err}");
    }

    #[test]
    fn bad_value_names_line() {
        let text = "[sip]\nlisten = [\"sctp:1.2.3.4:5060\"]\n";
        let err = Config::parse(text, "t.toml").unwrap_err().to_string();
        assert!(err.contains("line 2"), "{err}");
        assert!(err.contains("sctp"), "{err}");
        let text = "[[users]]\nname = \"a\"\nbehaviour = \"sing\"\n";
        let err = Config::parse(text, "t.toml").unwrap_err().to_string();
        assert!(err.contains("line 3") && err.contains("sing"), "{err}");
    }

    #[test]
    fn cross_key_checks() {
        let err = Config::parse("[sip.timers]\nt1_ms = 0\n", "t").unwrap_err();
        assert!(err.to_string().contains("t1_ms"));
        let err = Config::parse(
            "[[users]]\nname = \"a\"\nbehaviour = \"echo\"\n[[users]]\nname = \"a\"\nbehaviour = \"ring\"\n",
            "t",
        )
        .unwrap_err();
        assert!(err.to_string().contains("appears twice"));
    }

    #[test]
    fn wildcard_listen_needs_an_advertised_address() {
        let err = Config::parse("[sip]\nlisten = [\"udp:0.0.0.0:5060\"]\n", "t").unwrap_err();
        assert!(err.to_string().contains("sip.advertised_address"), "{err}");
        let ok = Config::parse(
            "[sip]\nlisten = [\"udp:0.0.0.0:5060\"]\nadvertised_address = \"192.0.2.10\"\n",
            "t",
        )
        .unwrap();
        assert_eq!(
            ok.sip.advertised_address,
            Some("192.0.2.10".parse().unwrap())
        );
        assert!(Config::parse("[sip]\nadvertised_address = \"0.0.0.0\"\n", "t").is_err());
    }

    #[test]
    fn listen_forms() {
        let l: Listen = "tcp:[::1]:5070".parse().unwrap();
        assert_eq!(l.transport, Transport::Tcp);
        assert_eq!(l.addr.port(), 5070);
        assert!("udp".parse::<Listen>().is_err());
        assert!("udp:nothost:1".parse::<Listen>().is_err());
        for (text, transport) in [
            ("tls:127.0.0.1:5061", Transport::Tls),
            ("WS:127.0.0.1:8088", Transport::Ws),
            ("wss:[::1]:8089", Transport::Wss),
        ] {
            let l: Listen = text.parse().unwrap();
            assert_eq!(l.transport, transport);
            assert_eq!(l.to_string(), text.to_ascii_lowercase());
        }
        let err = "sctp:127.0.0.1:1".parse::<Listen>().unwrap_err();
        assert!(err.contains("tls, ws, wss"), "{err}");
    }

    #[test]
    fn tls_and_wss_listeners_need_the_tls_table() {
        for listen in ["tls:127.0.0.1:5061", "wss:127.0.0.1:8089"] {
            let text = format!("[sip]\nlisten = [\"{listen}\"]\n");
            let err = Config::parse(&text, "t").unwrap_err().to_string();
            assert!(
                err.contains("key `sip.tls`") && err.contains(listen),
                "{err}"
            );
        }
        // Plain WebSocket needs no certificate.
        Config::parse("[sip]\nlisten = [\"ws:127.0.0.1:8088\"]\n", "t").unwrap();
        let config = Config::parse(
            "[sip]\nlisten = [\"tls:127.0.0.1:5061\"]\n[sip.tls]\ncertificate = \"c.pem\"\n\
             private_key = \"k.pem\"\n",
            "t",
        )
        .unwrap();
        let tls = config.sip.tls.unwrap();
        assert_eq!(tls.certificate, PathBuf::from("c.pem"));
        assert_eq!(tls.ca_file, None);
        let err = Config::parse("[sip.tls]\ncertificate = \"c.pem\"\n", "t").unwrap_err();
        assert!(err.to_string().contains("private_key"), "{err}");
    }

    #[test]
    fn tls_files_are_relative_to_the_config_and_errors_name_key_and_file() {
        let dir = std::env::temp_dir().join(format!("tandem-config-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("tandem.toml");
        std::fs::write(
            &path,
            "[sip]\nlisten = [\"tls:127.0.0.1:0\"]\n[sip.tls]\ncertificate = \"nope.pem\"\n\
             private_key = \"/abs/key.pem\"\n",
        )
        .unwrap();
        let config = Config::load(&path).unwrap();
        let tls = config.sip.tls.as_ref().unwrap();
        assert_eq!(tls.certificate, dir.join("nope.pem"));
        assert_eq!(tls.private_key, PathBuf::from("/abs/key.pem"));
        let err = config.load_tls("tandem.toml").unwrap_err().to_string();
        assert!(
            err.starts_with("tandem.toml: key `sip.tls.certificate`"),
            "{err}"
        );
        assert!(
            err.contains("nope.pem") && err.contains("cannot read"),
            "{err}"
        );
        assert!(Config::embedded().unwrap().load_tls("e").unwrap().is_none());
    }

    fn uncommented(text: &str, first: &str) -> String {
        text.lines()
            .skip_while(|l| *l != first)
            .take_while(|l| !l.starts_with("#   "))
            .map(|l| l.trim_start_matches("# "))
            .collect::<Vec<_>>()
            .join("\n")
    }

    fn facts<'a>(
        user: &'a str,
        headers: &'a [(String, String)],
        trunk: Option<&'a str>,
    ) -> routing::RouteFacts<'a> {
        routing::RouteFacts {
            request_uri: "sip:x@tandem.example.net",
            user: Some(user),
            host: "Tandem.Example.NET",
            from: "<sip:+442079460000@example.net>;tag=a",
            headers,
            source_trunk: trunk,
        }
    }

    #[test]
    fn example_route_section_parses_once_uncommented() {
        let text = include_str!("../../../config/tandem.example.toml");
        let routes = uncommented(text, "# [[route]]");
        assert_eq!(routes.matches("[[route]]").count(), 4, "{routes}");
        let trunks = uncommented(text, "# [[trunks]]");
        let config = Config::parse(&format!("{trunks}\n{routes}\n"), "example").unwrap();
        let table = &config.route_table;
        assert_eq!(table.rules().len(), 4);
        let tenant = [("x-tenant".to_owned(), "acme".to_owned())];
        let routed = table.route(&facts("+15551234567", &tenant, None)).unwrap();
        assert_eq!(routed.rule, "nanp");
        let routing::RoutedAction::Bridge {
            targets,
            ring,
            mode,
            pass_headers,
        } = routed.action
        else {
            panic!("{routed:?}")
        };
        assert_eq!(ring, routing::RingStrategy::Sequential);
        assert_eq!(mode, BridgeMode::SignalingOnly);
        assert_eq!(pass_headers, ["X-Pass", "User-to-User"]);
        assert_eq!(targets[0].uri, "sip:5551234567@192.0.2.20:5060");
        assert_eq!(targets[0].timeout, Some(Duration::from_secs(20)));
        assert_eq!(
            targets[0].headers,
            [("X-Routed-By".to_owned(), "tandem".to_owned())]
        );
        assert_eq!(targets[1].uri, "0015551234567");
        assert_eq!(targets[1].trunk.as_deref(), Some("carrier"));
        // Without the tenant header: from the carrier (host case-insensitive) → park.
        let routed = table
            .route(&facts("+15551234567", &[], Some("carrier")))
            .unwrap();
        assert_eq!(routed.rule, "carrier-in");
        assert_eq!(routed.action, routing::RoutedAction::Park);
        let routed = table.route(&facts("old-bob", &[], None)).unwrap();
        assert_eq!(
            routed.action,
            routing::RoutedAction::Forward {
                target: "sip:old-bob@new.example.net".into()
            }
        );
        let routed = table.route(&facts("anyone", &[], None)).unwrap();
        assert_eq!(
            routed.action,
            routing::RoutedAction::Decline {
                status: 480,
                reason: Some("Temporarily Unavailable".into())
            }
        );
        // The example file itself, and the embedded default, have no routes.
        assert!(
            Config::parse(text, "example")
                .unwrap()
                .route_table
                .is_empty()
        );
        assert!(Config::embedded().unwrap().route_table.is_empty());
    }

    /// `TANDEM_WEBHOOK_SECRET` in the environment wins over `api.webhook_secret`, is
    /// checked the same way (an error names the variable's key), and an empty one is
    /// ignored.
    #[test]
    fn the_environment_webhook_secret_overrides_the_file() {
        let text = "[api]\nlisten = \"127.0.0.1:8088\"\n\
                    webhook_secret = \"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\"\n";
        let config = Config::parse(text, "t.toml").unwrap();
        let file_key = config.api_settings.webhook_secret.clone().unwrap();
        assert_eq!(file_key.len(), 24);
        let env_secret = "whsec_AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHyA=";
        let from_env = config
            .api_settings(text, |name| {
                (name == "TANDEM_WEBHOOK_SECRET").then(|| env_secret.to_owned())
            })
            .unwrap();
        let expected: Vec<u8> = (1..=32).collect();
        assert_eq!(from_env.webhook_secret, Some(expected.clone()));
        // Without a secret in the file too.
        let bare = "[api]\nlisten = \"127.0.0.1:8088\"\n";
        let config_bare = Config::parse(bare, "t.toml").unwrap();
        assert_eq!(config_bare.api_settings.webhook_secret, None);
        let from_env = config_bare
            .api_settings(bare, |name| {
                (name == "TANDEM_WEBHOOK_SECRET").then(|| env_secret.to_owned())
            })
            .unwrap();
        assert_eq!(from_env.webhook_secret, Some(expected));
        // Empty: the file's.
        let empty = config
            .api_settings(text, |name| {
                (name == "TANDEM_WEBHOOK_SECRET").then(String::new)
            })
            .unwrap();
        assert_eq!(empty.webhook_secret, Some(file_key));
        // A malformed one is refused, naming the key, though the file's is good.
        let error = config
            .api_settings(text, |name| {
                (name == "TANDEM_WEBHOOK_SECRET").then(|| "whsec_short".to_owned())
            })
            .unwrap_err();
        assert!(error.contains("api.webhook_secret"), "{error}");
    }

    #[test]
    fn api_section_is_checked_with_lines_and_secrets_come_from_the_environment() {
        let good = r#"
[api]
listen = "127.0.0.1:8088"
token = "0123456789abcdef"
webhook_secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
event_retention_s = 60
messaging_invitation_timeout_s = 12

[[api.applications]]
name = "sales"
callback_uri = "http://127.0.0.1:9000/events"
owner_uri = "sip:sales@127.0.0.1"
answer_timeout_s = 5
"#;
        let config = Config::parse(good, "t.toml").unwrap();
        let api = &config.api_settings;
        assert_eq!(api.listen, Some("127.0.0.1:8088".parse().unwrap()));
        assert_eq!(api.token.as_deref(), Some("0123456789abcdef"));
        assert_eq!(api.webhook_secret.as_ref().map(Vec::len), Some(24));
        assert_eq!(api.event_retention, Duration::from_secs(60));
        assert_eq!(api.webhook_attempts, 8, "the default");
        assert_eq!(api.messaging_invitation_timeout, Duration::from_secs(12));
        assert_eq!(api.applications[0].answer_timeout, Duration::from_secs(5));
        let defaults = Config::parse("[api]\nlisten = \"127.0.0.1:8088\"\n", "t.toml").unwrap();
        assert_eq!(
            defaults.api_settings.messaging_invitation_timeout,
            Duration::from_secs(30)
        );
        let error = Config::parse(
            "[api]\nlisten = \"127.0.0.1:8088\"\nmessaging_invitation_timeout_s = 0\n",
            "t.toml",
        )
        .unwrap_err()
        .to_string();
        assert!(
            error.contains("line 3") && error.contains("api.messaging_invitation_timeout_s"),
            "{error}"
        );
        let attempts = Config::parse(
            "[api]\nlisten = \"127.0.0.1:8088\"\nwebhook_attempts = 1\n",
            "t.toml",
        )
        .unwrap();
        assert_eq!(attempts.api_settings.webhook_attempts, 1);
        // The environment's token wins over the file's.
        let from_env = config
            .api_settings(good, |name| {
                (name == "TANDEM_API_TOKEN").then(|| "from-the-environment-1".to_owned())
            })
            .unwrap();
        assert_eq!(from_env.token.as_deref(), Some("from-the-environment-1"));
        // A weak token from the environment is refused too, naming the variable.
        let error = config
            .api_settings(good, |name| {
                (name == "TANDEM_API_TOKEN").then(|| "short token ".to_owned())
            })
            .unwrap_err();
        assert!(
            error.contains("TANDEM_API_TOKEN") && error.contains("api.token"),
            "{error}"
        );
        for (text, line, key) in [
            ("[api]\ntoken = \"short\"\n", 2, "api.token"),
            (
                "[api]\nwebhook_secret = \"nope\"\n",
                2,
                "api.webhook_secret",
            ),
            ("[api]\nwebhook_attempts = 0\n", 2, "api.webhook_attempts"),
            ("[api]\nwebhook_attempts = 21\n", 2, "api.webhook_attempts"),
            ("[api]\ndefault_trunk = \"none\"\n", 2, "api.default_trunk"),
            (
                "[[api.applications]]\nname = \"a\"\nowner_uri = \"sip:a@h\"\ncallback_uri = \"https://x\"\n",
                4,
                "api.applications[0].callback_uri",
            ),
            (
                "[[api.applications]]\nname = \"a b\"\nowner_uri = \"sip:a@h\"\n",
                2,
                "api.applications[0].name",
            ),
            (
                "[[route]]\nname = \"w\"\naction = \"webhook\"\napplication = \"ghost\"\n",
                4,
                "route[0].application",
            ),
        ] {
            let error = Config::parse(text, "t.toml").unwrap_err().to_string();
            assert!(
                error.contains(&format!("line {line}:")) && error.contains(&format!("`{key}`")),
                "{text}: {error}"
            );
        }
    }

    #[test]
    fn every_route_action_parses() {
        let text = r#"
[[route]]
name = "e"
action = "echo"
[route.match]
user = '^echo$'

[[route]]
name = "w"
action = "webhook"
application = "ivr"
[route.match.headers]
s = 'hello'

[[route]]
name = "p"
action = "bridge"
ring = "parallel"
media = "anchored"
[[route.targets]]
uri = "sip:${user}@127.0.0.1:5070"
timeout_s = 15
[[route.targets]]
uri = "sips:${user}@[::1]:5071"

[[api.applications]]
name = "ivr"
owner_uri = "sip:ivr@127.0.0.1"
"#;
        let config = Config::parse(text, "t.toml").unwrap();
        let table = &config.route_table;
        assert_eq!(
            table.route(&facts("echo", &[], None)).unwrap().action,
            routing::RoutedAction::Echo
        );
        let subject = [("Subject".to_owned(), "hello there".to_owned())];
        assert_eq!(
            table.route(&facts("x", &subject, None)).unwrap().action,
            routing::RoutedAction::Webhook {
                application: "ivr".into()
            }
        );
        let routing::RoutedAction::Bridge {
            targets,
            ring,
            mode,
            pass_headers,
        } = table.route(&facts("carol", &[], None)).unwrap().action
        else {
            panic!()
        };
        assert_eq!(ring, routing::RingStrategy::Parallel);
        assert_eq!(mode, BridgeMode::MediaAnchored);
        assert!(pass_headers.is_empty(), "none unless given");
        let uris: Vec<_> = targets.iter().map(|t| t.uri.as_str()).collect();
        assert_eq!(uris, ["sip:carol@127.0.0.1:5070", "sips:carol@[::1]:5071"]);
        assert_eq!(targets[1].timeout, None);
    }

    /// Parses `text` expecting a refusal that names `line` and `key` and says `says`.
    #[track_caller]
    fn refused(text: &str, line: usize, key: &str, says: &str) {
        let err = Config::parse(text, "t.toml").unwrap_err().to_string();
        assert!(err.starts_with(&format!("t.toml: line {line}:")), "{err}");
        assert!(err.contains(key), "{key}: {err}");
        assert!(err.contains(says), "{says}: {err}");
    }

    #[test]
    fn bad_routes_are_refused_naming_line_and_key() {
        let head = "[[trunks]]\nname = \"carrier\"\nproxy = \"sip:192.0.2.1\"\n\
                    [[route]]\nname = \"r\"\n";
        let bridge = format!("{head}action = \"bridge\"\n");
        let target = format!("{bridge}[[route.targets]]\nuri = \"sip:${{user}}@h\"\n");
        // Regexes: line 8 is the offending key's.
        refused(
            &format!("{head}action = \"echo\"\n[route.match]\nuser = '(bob'\n"),
            8,
            "`route[0].match.user`",
            "unclosed group",
        );
        refused(
            &format!("{head}action = \"echo\"\n[route.match]\nhost = '['\n"),
            8,
            "`route[0].match.host`",
            "invalid regular expression",
        );
        refused(
            &format!("{head}action = \"echo\"\n[route.match]\nfrom = 'a{{'\n"),
            8,
            "`route[0].match.from`",
            "a{",
        );
        refused(
            &format!("{head}action = \"echo\"\n[route.match]\nheaders = {{ \"X-T\" = '(' }}\n"),
            8,
            "`route[0].match.headers.X-T`",
            "invalid regular expression",
        );
        refused(
            &format!("{head}action = \"echo\"\n[route.match]\nheaders = {{ \"X T\" = 'a' }}\n"),
            8,
            "`route[0].match.headers.X T`",
            "not a token",
        );
        // Trunks that do not exist.
        refused(
            &format!("{head}action = \"echo\"\n[route.match]\ntrunk = \"nope\"\n"),
            8,
            "`route[0].match.trunk`",
            "no [[trunks]] is named `nope`",
        );
        refused(
            &format!("{bridge}[[route.targets]]\nuri = \"${{user}}\"\ntrunk = \"nope\"\n"),
            9,
            "`route[0].targets[0].trunk`",
            "`nope`",
        );
        // Headers to pass that the B2BUA writes per leg, named by their place.
        refused(
            &format!(
                "{bridge}pass_headers = [\n  \"X-Pass\",\n  \"Call-ID\",\n]\n[[route.targets]]\nuri = \"sip:a@h\"\n"
            ),
            9,
            "`route[0].pass_headers[1]`",
            "cannot be passed across a bridge",
        );
        refused(
            &format!("{bridge}pass_headers = [\"Via\"]\n[[route.targets]]\nuri = \"sip:a@h\"\n"),
            7,
            "`route[0].pass_headers[0]`",
            "topology hiding",
        );
        refused(
            &format!("{head}action = \"echo\"\npass_headers = [\"X-Pass\"]\n"),
            7,
            "`route[0].pass_headers`",
            "only for action = \"bridge\"",
        );
        // A bridge without targets; keys of another action.
        refused(&bridge, 6, "`route[0].targets`", "at least one");
        refused(
            &format!("{head}action = \"echo\"\nring = \"parallel\"\n"),
            7,
            "`route[0].ring`",
            "only for action = \"bridge\"",
        );
        refused(
            &format!("{target}status = 486\n"),
            9,
            "`uri`, `trunk`",
            "unknown field `status`",
        );
        refused(
            &format!(
                "{head}status = 486\naction = \"bridge\"\n[[route.targets]]\nuri = \"sip:a@h\"\n"
            ),
            6,
            "`route[0].status`",
            "only for action = \"decline\"",
        );
        // Decline, forward, webhook.
        refused(
            &format!("{head}action = \"decline\"\nstatus = 200\n"),
            7,
            "`route[0].status`",
            "400-699",
        );
        refused(
            &format!("{head}action = \"decline\"\nstatus = 700\n"),
            7,
            "`route[0].status`",
            "400-699",
        );
        refused(
            &format!("{head}action = \"decline\"\n"),
            6,
            "`route[0].status`",
            "needed for action = \"decline\"",
        );
        refused(
            &format!("{head}action = \"decline\"\nstatus = 486\nreason = \"a\\r\\nb\"\n"),
            8,
            "`route[0].reason`",
            "control characters",
        );
        refused(
            &format!("{head}action = \"forward\"\n"),
            6,
            "`route[0].target`",
            "needed for action = \"forward\"",
        );
        refused(
            &format!("{head}action = \"forward\"\ntarget = \"nowhere\"\n"),
            7,
            "`route[0].target`",
            "not a sip:",
        );
        refused(
            &format!("{head}action = \"webhook\"\napplication = \"\"\n"),
            7,
            "`route[0].application`",
            "must not be empty",
        );
        // Targets: template, headers, timeout, rewrite.
        refused(
            &format!("{bridge}[[route.targets]]\nuri = \"sip:$user@h\"\n"),
            8,
            "`route[0].targets[0].uri`",
            "$$",
        );
        refused(
            &format!("{bridge}[[route.targets]]\nuri = \"sip:${{1}}@h\"\n"),
            8,
            "`route[0].targets[0].uri`",
            "needs a `user` regex",
        );
        refused(
            &format!("{target}[[route.targets]]\nuri = \"${{user}}\"\n"),
            10,
            "`route[0].targets[1].uri`",
            "not a sip:",
        );
        refused(
            &format!("{target}headers = {{ \"X-A\" = \"a\\r\\nVia: x\" }}\n"),
            9,
            "`route[0].targets[0].headers.X-A`",
            "CR, LF",
        );
        refused(
            &format!("{target}headers = {{ \"Call-ID\" = \"x\" }}\n"),
            9,
            "`route[0].targets[0].headers.Call-ID`",
            "written by the stack",
        );
        refused(
            &format!("{target}timeout_s = 0\n"),
            9,
            "`route[0].targets[0].timeout_s`",
            "at least 1",
        );
        refused(
            &format!("{target}rewrite = {{ pattern = '(', replace = \"x\" }}\n"),
            9,
            "`route[0].targets[0].rewrite.pattern`",
            "invalid regular expression",
        );
        refused(
            &format!("{target}rewrite = {{ pattern = '(\\d)', replace = \"$1a\" }}\n"),
            9,
            "`route[0].targets[0].rewrite.replace`",
            "${1}",
        );
        // Names: duplicates and empties; a bad action.
        refused(
            &format!("{head}action = \"echo\"\n[[route]]\nname = \"r\"\naction = \"park\"\n"),
            8,
            "`route[1].name`",
            "appears twice",
        );
        refused(
            "[[route]]\nname = \" \"\naction = \"echo\"\n",
            2,
            "`route[0].name`",
            "must not be empty",
        );
        refused(
            &format!("{head}action = \"ring\"\n"),
            6,
            "action",
            "unknown variant `ring`",
        );
    }

    #[test]
    fn a_route_key_after_the_match_table_is_refused_there() {
        // TOML puts `action` into [route.match]: the error says so at its line.
        let text = "[[route]]\nname = \"r\"\n[route.match]\nuser = 'a'\naction = \"echo\"\n";
        let err = Config::parse(text, "t.toml").unwrap_err().to_string();
        assert!(err.contains("line 5"), "{err}");
        assert!(err.contains("unknown field `action`"), "{err}");
    }
}
