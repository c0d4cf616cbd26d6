//! Overload and abuse protection, in front of the transaction layer.
//!
//! Every message the endpoint receives passes [`Guard::screen`] before a transaction is
//! made for it (sans-IO: `now` is a parameter, nothing here reads the clock):
//!
//! 1. **Per-source rate limit and ban list**, in the spirit of Kamailio's `pike`: the
//!    requests of each source (the socket's peer, never a header's value: an IPv4
//!    address, or the /64 of an IPv6 address, since one host commonly holds a whole
//!    /64, RFC 7934 §4) are counted per sampling window; a source that sends more than
//!    [`RateLimit::requests`] in one window is banned for [`GuardConfig::ban`]:
//!    everything it sends, requests and responses alike, is dropped without an answer
//!    (and counted) until the ban expires. Trunks' addresses and
//!    [`GuardConfig::allow`] are never limited. At most [`GuardConfig::max_sources`]
//!    sources are counted; the oldest is evicted first, so a flood from spoofed
//!    addresses cannot grow memory without bound. Bans live in a table of their own,
//!    also of at most `max_sources` entries, that the counting table's eviction never
//!    touches: a ban ends only when its time is up. When that table is full of live
//!    bans, no live ban is evicted: a new offender is not banned but still loses every
//!    request over the limit until its window ends (a `ban-refused` line says so).
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
//! security: ban-refused src=203.0.113.8 reason=ban-table-full bans=65536
//! security: scanner src=203.0.113.7 ua=friendly-scanner method=OPTIONS
//! security: auth-failed src=203.0.113.7 user=alice method=REGISTER
//! security: over-capacity src=203.0.113.7 reason=max-calls calls=5 unlogged=0
//! security: unban src=203.0.113.7 dropped=412
//! ```
//!
//! `src` is always the socket's real address (for IPv6 too, though the count and the ban
//! are per /64); `method` is a known method's name or `other`, never the peer's bytes.

use crate::trunk::Cidr;
use bytes::Bytes;
use sip_dialog::{SessionId, UserAgent};
use sip_message::{HeaderName, Message, Method, Request, Response};
use sip_transaction::{Flow, TransactionKey, Transmit};
use std::collections::{HashMap, HashSet, VecDeque};
use std::net::{IpAddr, Ipv6Addr};
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
    /// The most sources counted at once (the oldest is evicted beyond it), and the
    /// most bans held at once (a live ban is never evicted; see the module docs).
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
    /// Messages dropped because their source was over the limit or banned (a banned
    /// source's responses included).
    pub rate_limited: u64,
    /// Sources banned since start.
    pub banned_sources: u64,
    /// Requests dropped for a scanner User-Agent.
    pub scanner_dropped: u64,
    /// Initial INVITEs answered 503 (max calls or calls per second).
    pub over_capacity: u64,
    /// Sources counted now (the rate limit's table).
    pub tracked_sources: usize,
    /// Bans held now (some may have expired and wait for their sweep).
    pub bans: usize,
    /// Sources over the limit that were not banned because the ban table was full of
    /// live bans.
    pub bans_refused: u64,
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

/// One counted source.
#[derive(Debug, Clone)]
struct Source {
    window_start: Instant,
    requests: u32,
    /// Its place in `order` (entries of `order` with another generation are stale).
    generation: u64,
}

/// One banned source.
#[derive(Debug, Clone)]
struct Ban {
    until: Instant,
    /// The socket address whose request went over the limit (for the log lines).
    addr: IpAddr,
    /// Messages dropped during the ban.
    dropped: u64,
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
    /// Counted sources, by [`source_key`].
    sources: HashMap<IpAddr, Source>,
    /// Sources in the order they were (re)started; oldest first.
    order: VecDeque<(IpAddr, u64)>,
    next_generation: u64,
    /// Banned sources, by [`source_key`]; never evicted, only expired.
    bans: HashMap<IpAddr, Ban>,
    /// Bans in the order they were made, with their end (stale entries are skipped).
    ban_order: VecDeque<(IpAddr, Instant)>,
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
            bans: HashMap::new(),
            ban_order: VecDeque::new(),
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
            bans: self.bans.len(),
            calls: self.calls.len(),
            ..self.stats
        }
    }

    /// Whether `ip` (for IPv6: its /64) is banned at `now`.
    pub fn is_banned(&self, now: Instant, ip: IpAddr) -> bool {
        self.bans
            .get(&source_key(ip))
            .is_some_and(|ban| now < ban.until)
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
        let response = data.starts_with(b"SIP/");
        let ip = flow.remote.ip();
        if !trusted && !self.allowed(ip) && self.config.rate_limit.is_some() {
            let key = source_key(ip);
            self.expire_bans(now);
            // A banned source is dropped whatever it sends: a response too.
            if self.drop_banned(now, key) {
                return Screen::Drop;
            }
            // Responses answer our own requests: they are not counted.
            if !response && !self.count_source(now, key, ip) {
                return Screen::Drop;
            }
        }
        if response {
            return Screen::Pass;
        }
        // The User-Agent is found in the raw header section, so a request is parsed
        // here only when it is an INVITE the call limits must look at.
        if self.config.drop_scanners
            && let Some(ua) = raw_header(data, b"user-agent")
            && self.is_scanner(ua)
        {
            self.stats.scanner_dropped += 1;
            let method = data.split(|b| *b == b' ').next().unwrap_or_default();
            tracing::warn!(
                target: SECURITY_TARGET,
                "security: scanner src={ip} ua={} method={}",
                sanitize(&String::from_utf8_lossy(ua)),
                log_method(method)
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
            return self.admit_call(now, &request, flow);
        }
        Screen::Pass
    }

    /// Whether a User-Agent value names a scanner: an ASCII case-insensitive substring
    /// match against the needles, lowercased once by [`Guard::set_config`]; nothing is
    /// allocated per request.
    pub fn is_scanner(&self, value: &[u8]) -> bool {
        self.scanners
            .iter()
            .any(|needle| contains_ignore_ascii_case(value, needle.as_bytes()))
    }

    fn allowed(&self, ip: IpAddr) -> bool {
        self.config.allow.iter().any(|c| c.contains(ip))
    }

    /// Drops what a banned `key` sends (counted); lifts an expired ban. `true`: drop.
    fn drop_banned(&mut self, now: Instant, key: IpAddr) -> bool {
        let Some(ban) = self.bans.get_mut(&key) else {
            return false;
        };
        if now < ban.until {
            ban.dropped += 1;
            self.stats.rate_limited += 1;
            return true;
        }
        if let Some(ban) = self.bans.remove(&key) {
            log_unban(&ban);
        }
        false
    }

    /// Lifts the bans whose time is up, oldest first (amortised O(1) per message).
    fn expire_bans(&mut self, now: Instant) {
        while let Some((key, until)) = self.ban_order.front().copied() {
            let live = self.bans.get(&key).filter(|ban| ban.until == until);
            if live.is_some() && now < until {
                break;
            }
            self.ban_order.pop_front();
            if live.is_some()
                && let Some(ban) = self.bans.remove(&key)
            {
                log_unban(&ban);
            }
        }
        // A ban lifted at its source's next message leaves a stale entry here; a reload
        // that shortens the ban can leave expired ones behind live ones: compact.
        let cap = self.config.max_sources.max(1).max(self.bans.len());
        if self.ban_order.len() > 2 * cap {
            let bans = &self.bans;
            self.ban_order
                .retain(|(key, until)| bans.get(key).is_some_and(|b| b.until == *until));
        }
    }

    /// Counts a request of `key` (`ip`: its real address, for the log); `false` when it
    /// is to be dropped (the one that goes over the limit, and while the ban table is
    /// full, every one after it in the window).
    fn count_source(&mut self, now: Instant, key: IpAddr, ip: IpAddr) -> bool {
        let Some(limit) = self.config.rate_limit else {
            return true;
        };
        let fresh_generation = self.next_generation;
        let source = self.sources.entry(key).or_insert_with(|| Source {
            window_start: now,
            requests: 0,
            generation: fresh_generation,
        });
        let mut requeue = source.generation == fresh_generation;
        if now.saturating_duration_since(source.window_start) >= limit.window {
            source.window_start = now;
            source.requests = 0;
            requeue = true;
        }
        source.requests = source.requests.saturating_add(1);
        let requests = source.requests;
        if requeue {
            source.generation = fresh_generation;
            self.next_generation += 1;
            self.order.push_back((key, fresh_generation));
            self.evict_over_cap();
        }
        if requests <= limit.requests {
            return true;
        }
        self.stats.rate_limited += 1;
        if requests == limit.requests.saturating_add(1) {
            self.ban(now, key, ip, requests, limit);
        }
        false
    }

    /// Bans `key`, unless the ban table is full of live bans (none is evicted).
    fn ban(&mut self, now: Instant, key: IpAddr, ip: IpAddr, requests: u32, limit: RateLimit) {
        let ban = self.config.ban;
        if self.bans.len() >= self.config.max_sources.max(1) {
            self.stats.bans_refused += 1;
            tracing::warn!(
                target: SECURITY_TARGET,
                "security: ban-refused src={ip} reason=ban-table-full bans={}",
                self.bans.len()
            );
            return;
        }
        let until = now + ban;
        self.bans.insert(
            key,
            Ban {
                until,
                addr: ip,
                dropped: 1,
            },
        );
        self.ban_order.push_back((key, until));
        // Banned: its count is no longer needed.
        self.sources.remove(&key);
        self.stats.banned_sources += 1;
        tracing::warn!(
            target: SECURITY_TARGET,
            "security: ban src={ip} reason=rate-limit requests={requests} window_s={} ban_s={}",
            limit.window.as_secs_f64(),
            ban.as_secs()
        );
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
    ///
    /// The live calls are those `call_started` and not yet `call_ended`: the endpoint
    /// reports the end of every inbound session (the user agent raises `Terminated`
    /// for each, whatever ended it: a 503 while draining, a 4xx of admission or
    /// routing, CANCEL, BYE, a timeout), so nothing is swept here per INVITE.
    fn admit_call(&mut self, now: Instant, request: &Request, flow: Flow) -> Screen {
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
    // memchr's searches: a byte-wise `windows(4)` scan and `split` cost 2 K instructions
    // a request here
    let end = memchr::memmem::find(data, b"\r\n\r\n").unwrap_or(data.len());
    let head = data.get(..end)?;
    let mut rest = head;
    let lines = std::iter::from_fn(move || {
        let (line, next) = match memchr::memchr(b'\n', rest) {
            Some(i) => (rest.get(..i)?, rest.get(i + 1..)?),
            None if rest.is_empty() => return None,
            None => (rest, &b""[..]),
        };
        rest = next;
        Some(line)
    });
    lines.skip(1).find_map(|line| {
        let rest = line.get(name.len()..)?;
        if !line.get(..name.len())?.eq_ignore_ascii_case(name) {
            return None;
        }
        let rest = rest.trim_ascii_start();
        let value = rest.strip_prefix(b":")?;
        Some(value.trim_ascii())
    })
}

/// The key a source is counted and banned by: an IPv4 address as it is; an IPv6
/// address by its /64 (an IPv4-mapped one as the IPv4 address it maps).
pub fn source_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(Ipv6Addr::from(
                v6.to_bits() & 0xffff_ffff_ffff_ffff_0000_0000_0000_0000,
            )),
        },
    }
}

fn log_unban(ban: &Ban) {
    tracing::info!(
        target: SECURITY_TARGET,
        "security: unban src={} dropped={}",
        ban.addr,
        ban.dropped
    );
}

/// Whether `haystack` contains `needle` (already lower case), ASCII case-insensitively.
fn contains_ignore_ascii_case(haystack: &[u8], needle: &[u8]) -> bool {
    needle.is_empty()
        || haystack
            .windows(needle.len())
            .any(|w| w.eq_ignore_ascii_case(needle))
}

/// The methods a log line names as they are; anything else is `other`, so a line
/// always ends in one known word (the fail2ban filter's anchor).
const LOG_METHODS: &[&str] = &sip_message::KNOWN_METHODS;

/// A method (as received: raw bytes) fit for a security log line: a known method's
/// name, or `other`.
pub(crate) fn log_method(method: &[u8]) -> &'static str {
    LOG_METHODS
        .iter()
        .find(|m| m.as_bytes() == method)
        .copied()
        .unwrap_or("other")
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::raw_header;

    /// The scan `raw_header` had before it used memchr.
    fn reference<'a>(data: &'a [u8], name: &[u8]) -> Option<&'a [u8]> {
        let end = data
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .unwrap_or(data.len());
        data[..end].split(|b| *b == b'\n').skip(1).find_map(|line| {
            let rest = line.get(name.len()..)?;
            if !line.get(..name.len())?.eq_ignore_ascii_case(name) {
                return None;
            }
            rest.trim_ascii_start()
                .strip_prefix(b":")
                .map(<[u8]>::trim_ascii)
        })
    }

    #[test]
    fn raw_header_finds_what_the_byte_scan_found() {
        let cases: &[&[u8]] = &[
            b"",
            b"\n",
            b"User-Agent: x",
            b"INVITE sip:a@b SIP/2.0\r\nUser-Agent: friendly-scanner\r\n\r\n",
            b"INVITE sip:a@b SIP/2.0\r\nVia: x\r\nuser-agent :  sipvicious \r\nTo: y\r\n\r\nUser-Agent: body",
            b"INVITE sip:a@b SIP/2.0\r\nVia: x\r\n\r\nUser-Agent: in the body",
            b"INVITE sip:a@b SIP/2.0\nVia: x\nUser-Agentx: no\nUser-Agent:bare-lf\n\nbody",
            b"INVITE sip:a@b SIP/2.0\r\nUser-Agent\r\nUser-Agent: second\r\n",
            b"OPTIONS sip:a@b SIP/2.0\r\nUser-Agent:\r\n\r\n",
            b"OPTIONS sip:a@b SIP/2.0\r\n\r\n\r\n",
        ];
        for data in cases {
            assert_eq!(
                raw_header(data, b"user-agent"),
                reference(data, b"user-agent"),
                "{}",
                String::from_utf8_lossy(data)
            );
        }
    }
}
