//! Overload and abuse protection, in front of the transaction layer.
//!
//! Every message the endpoint receives passes [`Guard::screen`] before a transaction is
//! made for it (sans-IO: `now` is a parameter, nothing here reads the clock):
//!
//! 1. **Per-source rate limit and ban list**, in the spirit of Kamailio's `pike`: the
//!    requests of each source IP address (the socket's peer, never a header's value)
//!    are counted per sampling window; a source that sends more than
//!    [`RateLimit::requests`] in one window is banned for [`GuardConfig::ban`]: its
//!    requests are dropped without an answer (and counted) until the ban expires.
//!    Trunks' addresses and [`GuardConfig::allow`] are never limited. At most
//!    [`GuardConfig::max_sources`] sources are tracked; the oldest is evicted first, so
//!    a flood from spoofed addresses cannot grow memory without bound.
//! 2. **Scanners**: a request whose `User-Agent` contains one of
//!    [`GuardConfig::scanner_user_agents`] (case-insensitive) is dropped without an
//!    answer when [`GuardConfig::drop_scanners`] is on.
//! 3. **Capacity**: an initial INVITE (no To tag, not a retransmission, not a
//!    `Replaces` of a live call, RFC 3891) beyond [`GuardConfig::max_calls`] concurrent
//!    calls or beyond the [`GuardConfig::max_calls_per_second`] token bucket is answered
//!    `503 Service Unavailable` with `Retry-After` (RFC 3261 §21.5.4), statelessly: no
//!    transaction, no dialog is kept for it.
//!
//! **What a call is.** The concurrent calls are the INVITE sessions a peer opened with
//! us (the user agent's UAS sessions) that have not ended. A bridged call (B2BUA) is one
//! inbound session and one outbound session of ours: it counts once, as the caller sees
//! it. Calls Tandem places itself (the control API, transfers, a bridge's outbound leg)
//! are not counted: the limit protects Tandem from its peers, not from its own
//! application. The count lives here, in sip-core, because the 503 must be decided
//! before a transaction exists, and because the user agent knows the role of every
//! session; the call layer (crate `calls`) would have to be asked across the sans-IO
//! boundary for every datagram.
//!
//! Every security event is one log line on the target `tandem::security`, in a fixed
//! format that `config/fail2ban/tandem.conf` matches:
//!
//! ```text
//! security: ban src=203.0.113.7 reason=rate-limit requests=61 window_s=2 ban_s=300
//! security: scanner src=203.0.113.7 ua=friendly-scanner method=OPTIONS
//! security: auth-failed src=203.0.113.7 user=alice method=REGISTER
//! security: over-capacity src=203.0.113.7 reason=max-calls calls=5 unlogged=0
//! ```

use crate::trunk::Cidr;
use bytes::Bytes;
use sip_dialog::{SessionId, UserAgent};
use sip_message::{HeaderName, Message, Method, Request, Response};
use sip_transaction::{Flow, TransactionKey, Transmit};
use std::collections::{HashMap, HashSet, VecDeque};
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// The `tracing` target of security events.
pub const SECURITY_TARGET: &str = "tandem::security";

/// User-Agent substrings of well-known SIP scanners (matched case-insensitively).
/// `Ozeki` is a real softphone SDK and deliberately absent, as is `sipsak`, which
/// operators use for monitoring.
pub const DEFAULT_SCANNERS: &[&str] = &[
    "friendly-scanner",
    "sipvicious",
    "sipcli",
    "vaxsipuseragent",
    "sundayddr",
    "iwar",
    "pplsip",
    "sip-scan",
    "smap",
    "siparmyknife",
];

/// Requests per source and sampling window (Kamailio pike's `reqs_density_per_unit`
/// and `sampling_time_unit`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    /// The most requests one source may send in one window; one more bans it.
    pub requests: u32,
    /// The sampling window.
    pub window: Duration,
}

/// The guard's settings: `[limits]` and `[security]` of the daemon's config. Replaced
/// at run time with [`Endpoint::set_guard_config`](crate::Endpoint::set_guard_config).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuardConfig {
    /// Concurrent inbound calls; `None`: no limit.
    pub max_calls: Option<u32>,
    /// New inbound calls per second, sustained; `None`: no limit.
    pub max_calls_per_second: Option<u32>,
    /// How many initial INVITEs may arrive at once after a quiet spell (the token
    /// bucket's depth); at least 1. The sustained rate is `max_calls_per_second`.
    pub burst: u32,
    /// The `Retry-After` of a 503, in whole seconds (RFC 3261 §20.33).
    pub retry_after: Duration,
    /// Per-source request limit; `None`: off.
    pub rate_limit: Option<RateLimit>,
    /// How long a source over the rate limit stays banned.
    pub ban: Duration,
    /// Networks never rate-limited (trunks' addresses never are either).
    pub allow: Vec<Cidr>,
    /// The most sources tracked at once; the oldest is evicted beyond it.
    pub max_sources: usize,
    /// Drop requests from scanner User-Agents without an answer.
    pub drop_scanners: bool,
    /// User-Agent substrings of scanners (case-insensitive).
    pub scanner_user_agents: Vec<String>,
}

impl Default for GuardConfig {
    fn default() -> Self {
        GuardConfig {
            max_calls: None,
            max_calls_per_second: None,
            burst: 10,
            retry_after: Duration::from_secs(5),
            rate_limit: None,
            ban: Duration::from_secs(300),
            allow: Vec::new(),
            max_sources: 65_536,
            drop_scanners: true,
            scanner_user_agents: DEFAULT_SCANNERS.iter().map(|s| (*s).to_owned()).collect(),
        }
    }
}

/// The guard's counters (also in [`Stats`](crate::Stats)).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GuardStats {
    /// Requests dropped because their source was over the limit or banned.
    pub rate_limited: u64,
    /// Sources banned since start.
    pub banned_sources: u64,
    /// Requests dropped for a scanner User-Agent.
    pub scanner_dropped: u64,
    /// Initial INVITEs answered 503 (max calls or calls per second).
    pub over_capacity: u64,
    /// Sources tracked now.
    pub tracked_sources: usize,
    /// Inbound calls live now, as the limit counts them.
    pub calls: usize,
}

/// What becomes of a message.
#[derive(Debug)]
pub(crate) enum Screen {
    /// On to the user agent.
    Pass,
    /// Dropped silently.
    Drop,
    /// Answered statelessly with this (a 503); the user agent never sees it.
    Answer(Transmit),
}

/// One tracked source.
#[derive(Debug, Clone)]
struct Source {
    window_start: Instant,
    requests: u32,
    banned_until: Option<Instant>,
    /// Requests dropped during the current ban.
    dropped: u64,
    /// Its place in `order` (entries of `order` with another generation are stale).
    generation: u64,
}

/// Token bucket in nanotokens (1 token = 10⁹), exact in integers.
#[derive(Debug, Clone, Default)]
struct Bucket {
    nanotokens: u128,
    last: Option<Instant>,
}

const NANO: u128 = 1_000_000_000;

/// The sans-IO guard: see the module documentation.
#[derive(Debug)]
pub struct Guard {
    config: GuardConfig,
    scanners: Vec<String>,
    server: Bytes,
    sources: HashMap<IpAddr, Source>,
    /// Sources in the order they were (re)started; oldest first.
    order: VecDeque<(IpAddr, u64)>,
    next_generation: u64,
    bucket: Bucket,
    /// Inbound INVITE sessions (UAS) that have not ended.
    calls: HashSet<SessionId>,
    tag_seed: u64,
    tags: u64,
    /// When the last over-capacity line was logged, and how many 503s since went
    /// unlogged.
    over_logged: Option<Instant>,
    over_unlogged: u64,
    stats: GuardStats,
}

impl Guard {
    /// `server`: the `Server` header of our 503s; `seed`: seeds their To tags.
    pub fn new(config: GuardConfig, server: &str, seed: u64) -> Guard {
        let mut guard = Guard {
            config: GuardConfig::default(),
            scanners: Vec::new(),
            server: Bytes::from(server.to_owned()),
            sources: HashMap::new(),
            order: VecDeque::new(),
            next_generation: 0,
            bucket: Bucket::default(),
            calls: HashSet::new(),
            tag_seed: seed ^ 0x9e37_79b9_7f4a_7c15,
            tags: 0,
            over_logged: None,
            over_unlogged: 0,
            stats: GuardStats::default(),
        };
        guard.set_config(config);
        guard
    }

    /// Replaces the settings (a reload). Bans and counters are kept; the token bucket
    /// starts full at the new depth.
    pub fn set_config(&mut self, config: GuardConfig) {
        self.scanners = config
            .scanner_user_agents
            .iter()
            .map(|s| s.to_ascii_lowercase())
            .filter(|s| !s.is_empty())
            .collect();
        self.bucket = Bucket::default();
        self.config = config;
        self.evict_over_cap();
    }

    pub fn config(&self) -> &GuardConfig {
        &self.config
    }

    pub fn stats(&self) -> GuardStats {
        GuardStats {
            tracked_sources: self.sources.len(),
            calls: self.calls.len(),
            ..self.stats
        }
    }

    /// Whether `ip` is banned at `now`.
    pub fn is_banned(&self, now: Instant, ip: IpAddr) -> bool {
        self.sources
            .get(&ip)
            .and_then(|s| s.banned_until)
            .is_some_and(|until| now < until)
    }

    /// An inbound INVITE session began (the user agent raised `IncomingCall`).
    pub(crate) fn call_started(&mut self, session: SessionId) {
        self.calls.insert(session);
    }

    /// A session ended.
    pub(crate) fn call_ended(&mut self, session: SessionId) {
        self.calls.remove(&session);
    }

    /// Decides what becomes of a message from `flow`. `trusted`: the source is a
    /// trunk's. `ua` tells retransmissions and live sessions.
    pub(crate) fn screen(
        &mut self,
        now: Instant,
        data: &Bytes,
        flow: Flow,
        trusted: bool,
        ua: &UserAgent,
    ) -> Screen {
        // Responses belong to our own transactions: never limited here.
        if data.starts_with(b"SIP/") {
            return Screen::Pass;
        }
        let ip = flow.remote.ip();
        if !trusted && !self.allowed(ip) && !self.count_source(now, ip) {
            return Screen::Drop;
        }
        // The User-Agent is found in the raw header section, so a request is parsed
        // here only when it is an INVITE the call limits must look at.
        if self.config.drop_scanners
            && let Some(ua) = raw_header(data, b"user-agent")
            && self.is_scanner(ua)
        {
            self.stats.scanner_dropped += 1;
            let method = data
                .split(|b| *b == b' ')
                .next()
                .map(String::from_utf8_lossy)
                .unwrap_or_default();
            tracing::warn!(
                target: SECURITY_TARGET,
                "security: scanner src={ip} ua={} method={}",
                sanitize(&String::from_utf8_lossy(ua)),
                sanitize(&method)
            );
            return Screen::Drop;
        }
        let limiting =
            self.config.max_calls.is_some() || self.config.max_calls_per_second.is_some();
        if !limiting || !data.starts_with(b"INVITE ") {
            return Screen::Pass;
        }
        let Ok(Message::Request(request)) = Message::parse(data.clone()) else {
            // The user agent answers (400) or drops what does not parse.
            return Screen::Pass;
        };
        if request.method == Method::Invite && is_initial(&request, ua) {
            return self.admit_call(now, &request, flow, ua);
        }
        Screen::Pass
    }

    /// Whether a User-Agent value names a scanner (case-insensitive substring).
    fn is_scanner(&self, value: &[u8]) -> bool {
        let lower = String::from_utf8_lossy(value).to_ascii_lowercase();
        self.scanners.iter().any(|s| lower.contains(s.as_str()))
    }

    fn allowed(&self, ip: IpAddr) -> bool {
        self.config.allow.iter().any(|c| c.contains(ip))
    }

    /// Counts a request of `ip`; `false` when it is to be dropped (banned, or the one
    /// that goes over the limit).
    fn count_source(&mut self, now: Instant, ip: IpAddr) -> bool {
        let Some(limit) = self.config.rate_limit else {
            return true;
        };
        let ban = self.config.ban;
        let fresh_generation = self.next_generation;
        let source = self.sources.entry(ip).or_insert_with(|| Source {
            window_start: now,
            requests: 0,
            banned_until: None,
            dropped: 0,
            generation: fresh_generation,
        });
        let mut requeue = source.generation == fresh_generation;
        if let Some(until) = source.banned_until {
            if now < until {
                source.dropped += 1;
                self.stats.rate_limited += 1;
                return false;
            }
            tracing::info!(
                target: SECURITY_TARGET,
                "security: unban src={ip} dropped={}",
                source.dropped
            );
            source.banned_until = None;
            source.dropped = 0;
            source.requests = 0;
            source.window_start = now;
            requeue = true;
        }
        if now.saturating_duration_since(source.window_start) >= limit.window {
            source.window_start = now;
            source.requests = 0;
            requeue = true;
        }
        source.requests = source.requests.saturating_add(1);
        let over = source.requests > limit.requests;
        if over {
            source.banned_until = Some(now + ban);
            source.dropped = 1;
            self.stats.banned_sources += 1;
            self.stats.rate_limited += 1;
            tracing::warn!(
                target: SECURITY_TARGET,
                "security: ban src={ip} reason=rate-limit requests={} window_s={} ban_s={}",
                source.requests,
                limit.window.as_secs_f64(),
                ban.as_secs()
            );
        }
        if requeue {
            source.generation = fresh_generation;
            self.next_generation += 1;
            self.order.push_back((ip, fresh_generation));
            self.evict_over_cap();
        }
        !over
    }

    /// Evicts the oldest sources beyond the cap, and compacts the order queue.
    fn evict_over_cap(&mut self) {
        let cap = self.config.max_sources.max(1);
        while self.sources.len() > cap {
            let Some((ip, generation)) = self.order.pop_front() else {
                break;
            };
            if self
                .sources
                .get(&ip)
                .is_some_and(|s| s.generation == generation)
            {
                self.sources.remove(&ip);
            }
        }
        // Stale entries (a source requeued later) are skipped above; keep the queue
        // within twice the map so it cannot grow without bound either.
        if self.order.len() > 2 * cap.max(self.sources.len()) {
            let sources = &self.sources;
            self.order
                .retain(|(ip, g)| sources.get(ip).is_some_and(|s| s.generation == *g));
        }
    }

    /// The capacity check of an initial INVITE: `Pass`, or a stateless 503.
    fn admit_call(
        &mut self,
        now: Instant,
        request: &Request,
        flow: Flow,
        ua: &UserAgent,
    ) -> Screen {
        // A session that ended without our noticing is not counted.
        self.calls.retain(|id| ua.role(*id).is_some());
        if let Some(max) = self.config.max_calls {
            let replaces = request.headers.get(&HeaderName::Replaces).is_some();
            let live = self.calls.len();
            if !replaces && live >= max as usize {
                return self.over_capacity(now, request, flow, "max-calls", live);
            }
        }
        if let Some(rate) = self.config.max_calls_per_second {
            let depth = u128::from(self.config.burst.max(1)) * NANO;
            let bucket = &mut self.bucket;
            let refill = match bucket.last {
                None => depth,
                Some(last) => now.saturating_duration_since(last).as_nanos() * u128::from(rate),
            };
            bucket.nanotokens = bucket.nanotokens.saturating_add(refill).min(depth);
            bucket.last = Some(now);
            if bucket.nanotokens < NANO {
                let live = self.calls.len();
                return self.over_capacity(now, request, flow, "calls-per-second", live);
            }
            bucket.nanotokens -= NANO;
        }
        Screen::Pass
    }

    fn over_capacity(
        &mut self,
        now: Instant,
        request: &Request,
        flow: Flow,
        reason: &str,
        calls: usize,
    ) -> Screen {
        self.stats.over_capacity += 1;
        // At most one line per second: overload is when a log flood hurts most.
        if self
            .over_logged
            .is_none_or(|at| now.saturating_duration_since(at) >= Duration::from_secs(1))
        {
            tracing::info!(
                target: SECURITY_TARGET,
                "security: over-capacity src={} reason={reason} calls={calls} unlogged={}",
                flow.remote.ip(),
                self.over_unlogged
            );
            self.over_logged = Some(now);
            self.over_unlogged = 0;
        } else {
            self.over_unlogged += 1;
        }
        self.tags += 1;
        let tag = format!("{:016x}", mix(self.tag_seed ^ self.tags));
        let mut response = Response::from_request(request, 503, Some(&tag));
        response.reason = Bytes::from_static(b"Service Unavailable");
        response.headers.push(
            HeaderName::RetryAfter,
            Bytes::from(self.config.retry_after.as_secs().max(1).to_string()),
        );
        response
            .headers
            .push(HeaderName::Server, self.server.clone());
        Screen::Answer(Transmit {
            flow,
            payload: response.to_bytes(),
        })
    }
}

/// The value of the first header `name` (lower case, no compact form) in the raw
/// header section of a message, trimmed; without parsing the message.
fn raw_header<'a>(data: &'a [u8], name: &[u8]) -> Option<&'a [u8]> {
    let end = data
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or(data.len());
    let head = data.get(..end)?;
    head.split(|b| *b == b'\n').skip(1).find_map(|line| {
        let rest = line.get(name.len()..)?;
        if !line.get(..name.len())?.eq_ignore_ascii_case(name) {
            return None;
        }
        let rest = rest.trim_ascii_start();
        let value = rest.strip_prefix(b":")?;
        Some(value.trim_ascii())
    })
}

/// An INVITE outside a dialog that no live transaction has seen yet.
fn is_initial(request: &Request, ua: &UserAgent) -> bool {
    let in_dialog = request
        .headers
        .to()
        .ok()
        .is_some_and(|to| to.tag().is_some());
    if in_dialog {
        return false;
    }
    // A retransmission of an INVITE we took is the transaction's to absorb.
    TransactionKey::server_for_request(request)
        .map_or(true, |key| ua.transaction_flow(&key).is_none())
}

/// A header value fit for a log line: one word of printable ASCII without quotes,
/// backslashes or `=` (others become `_`), at most 64 characters, `-` when empty. A peer
/// cannot forge a second `src=`, a field or a new line into what fail2ban reads.
pub(crate) fn sanitize(value: &str) -> String {
    let word: String = value
        .chars()
        .take(64)
        .map(|c| {
            if c.is_ascii_graphic() && !matches!(c, '"' | '\\' | '=' | '\'') {
                c
            } else {
                '_'
            }
        })
        .collect();
    if word.is_empty() {
        "-".to_owned()
    } else {
        word
    }
}

/// SplitMix64: spreads the tag counter.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}
