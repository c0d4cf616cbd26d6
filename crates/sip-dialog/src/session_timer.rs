//! RFC 4028 session timers, sans-IO.
//!
//! A session refresh request (INVITE or UPDATE, §3) carries `Session-Expires`, the session
//! interval, and `Min-SE`, the smallest interval anyone on the path accepts. The UAS settles
//! the interval and the refresher in its 2xx (§9); the refresher re-INVITEs or UPDATEs at half
//! the interval (§7.4, §10) and the other side sends BYE when no refresh arrived shortly before
//! the interval ran out (§10).
//!
//! The functions here read and write headers; [`SessionTimer`] is the per-session clock.
//! Nothing reads a clock: every deadline is derived from the `now` the caller passes in.
//!
//! The `refresher` parameter names the UAC or the UAS *of the transaction that carries it*:
//! `refresher=uac` in a 2xx to a re-INVITE the callee sent means the callee refreshes. That is
//! why [`Negotiated`] also says [`Negotiated::we_refresh`], which survives a change of roles.

use sip_message::{Bytes, HeaderName, Headers, Method, ParseError, Request, Response};
use std::fmt;
use std::time::{Duration, Instant};
use tracing::debug;

/// The absolute minimum session interval, and the lowest valid `Min-SE` (RFC 4028 §4, §5).
pub const MIN_SESSION_INTERVAL: Duration = Duration::from_secs(90);

/// The recommended session interval, 30 minutes (RFC 4028 §4).
pub const DEFAULT_SESSION_EXPIRES: Duration = Duration::from_secs(1800);

/// The non-refresher sends BYE "slightly before the session expiration": the minimum of
/// 32 seconds and one third of the session interval (RFC 4028 §10).
const EXPIRY_MARGIN_CAP: Duration = Duration::from_secs(32);

/// The largest delta-seconds value we parse or print (RFC 3261 §25.1 `delta-seconds`, kept
/// below 2^32 as for `Expires`, §20.19).
const MAX_DELTA_SECONDS: u64 = u32::MAX as u64;

/// The option tag of this extension (RFC 4028 §3).
pub const TIMER_OPTION_TAG: &str = "timer";

/// Local session-timer policy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SessionTimerConfig {
    /// Whether we implement the extension at all. When false we behave as a UA that does not
    /// know RFC 4028: no `Supported: timer`, no `Session-Expires`, never a 422.
    pub enabled: bool,
    /// The session interval we ask for as UAC and the most we grant as UAS (RFC 4028 §4:
    /// 1800 s recommended). Never used below [`SessionTimerConfig::min_se`].
    pub session_expires: Duration,
    /// The smallest session interval we accept (RFC 4028 §5); raised to 90 s if lower (§4).
    pub min_se: Duration,
}

impl Default for SessionTimerConfig {
    fn default() -> Self {
        SessionTimerConfig {
            enabled: true,
            session_expires: DEFAULT_SESSION_EXPIRES,
            min_se: MIN_SESSION_INTERVAL,
        }
    }
}

impl SessionTimerConfig {
    /// The `Min-SE` we enforce: `min_se` in whole seconds (rounded up), at least 90 s
    /// (RFC 4028 §4, §5).
    pub fn effective_min_se(&self) -> Duration {
        clamp_delta(ceil_secs(self.min_se)).max(MIN_SESSION_INTERVAL)
    }

    /// The session interval we propose or grant: `session_expires` in whole seconds, at
    /// least [`SessionTimerConfig::effective_min_se`].
    pub fn effective_session_expires(&self) -> Duration {
        clamp_delta(Duration::from_secs(self.session_expires.as_secs()))
            .max(self.effective_min_se())
    }
}

/// Who sends the session refresh requests, named by the role in the transaction that
/// carries the parameter (RFC 4028 §4 `refresher-param`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Refresher {
    /// The UAC of the transaction refreshes.
    Uac,
    /// The UAS of the transaction refreshes.
    Uas,
}

impl Refresher {
    /// The parameter value: `uac` or `uas`.
    pub fn as_str(self) -> &'static str {
        match self {
            Refresher::Uac => "uac",
            Refresher::Uas => "uas",
        }
    }
}

impl fmt::Display for Refresher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The outcome of a negotiation: the session interval and who refreshes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Negotiated {
    /// The session interval (RFC 4028 §4).
    pub interval: Duration,
    /// The refresher as named in the transaction that settled it.
    pub refresher: Refresher,
    /// true when this side is the refresher
    pub we_refresh: bool,
}

/// A parsed `Session-Expires` value (RFC 4028 §4):
/// `delta-seconds *( SEMI se-params )`, `se-params = refresher-param / generic-param`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SessionExpires {
    /// The session interval, whole seconds below 2^32. Values below 90 s parse (the
    /// grammar allows them) but are invalid (§4); callers check.
    pub interval: Duration,
    /// The `refresher` parameter; `None` when absent or neither `uac` nor `uas`.
    pub refresher: Option<Refresher>,
}

impl SessionExpires {
    /// Parses a header value (the compact form `x` is mapped to this header by
    /// `sip-message`). Unknown parameters are skipped; a `refresher` whose value is neither
    /// `uac` nor `uas` (case-insensitive, RFC 5234 §2.3) is treated as absent. Never panics.
    pub fn parse(value: &[u8]) -> Result<SessionExpires, ParseError> {
        let bad = || ParseError::BadHeader {
            name: HeaderName::SessionExpires,
        };
        let (secs, params) = parse_delta_with_params(value).ok_or_else(bad)?;
        let mut refresher = None;
        for (name, value) in params.ok_or_else(bad)? {
            if refresher.is_none() && name.eq_ignore_ascii_case(b"refresher") {
                refresher = match value {
                    Some(v) if v.eq_ignore_ascii_case(b"uac") => Some(Refresher::Uac),
                    Some(v) if v.eq_ignore_ascii_case(b"uas") => Some(Refresher::Uas),
                    _ => None,
                };
            }
        }
        Ok(SessionExpires {
            interval: Duration::from_secs(secs),
            refresher,
        })
    }
}

impl fmt::Display for SessionExpires {
    /// `1800` or `1800;refresher=uac`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.interval.as_secs().min(MAX_DELTA_SECONDS))?;
        if let Some(r) = self.refresher {
            write!(f, ";refresher={r}")?;
        }
        Ok(())
    }
}

/// Parses a `Min-SE` value, `delta-seconds *( SEMI generic-param )` (RFC 4028 §5).
/// Values below 90 s parse but are invalid (§5); callers check. Never panics.
pub fn parse_min_se(value: &[u8]) -> Result<Duration, ParseError> {
    let bad = || ParseError::BadHeader {
        name: HeaderName::MinSE,
    };
    match parse_delta_with_params(value) {
        Some((secs, Some(_))) => Ok(Duration::from_secs(secs)),
        _ => Err(bad()),
    }
}

/// The `Session-Expires` of a message: `None` if absent; an error if malformed or repeated
/// (it is single-valued, RFC 4028 §4).
pub fn session_expires(headers: &Headers) -> Option<Result<SessionExpires, ParseError>> {
    single(headers, HeaderName::SessionExpires).map(|v| v.and_then(|v| SessionExpires::parse(&v)))
}

/// The `Min-SE` of a message: `None` if absent; an error if malformed or repeated (§5).
pub fn min_se(headers: &Headers) -> Option<Result<Duration, ParseError>> {
    single(headers, HeaderName::MinSE).map(|v| v.and_then(|v| parse_min_se(&v)))
}

/// Whether the message lists `timer` in `Supported` or `Require` (RFC 4028 §3, §7.1).
pub fn supports_timer(headers: &Headers) -> bool {
    has_option_tag(headers, &HeaderName::Supported, TIMER_OPTION_TAG)
        || has_option_tag(headers, &HeaderName::Require, TIMER_OPTION_TAG)
}

/// UAC: adds `Supported: timer`, `Session-Expires` and `Min-SE` to an INVITE or UPDATE we
/// send (RFC 4028 §7.1, §7.4). Nothing is added when the extension is disabled.
///
/// - Initial request (`current` is `None`): `Session-Expires` is our configured interval
///   with no `refresher`, so the UAS chooses (§7.1).
/// - Refresh (`current` is the timer in force): the current interval and refresher again,
///   `refresher=uac` if we refresh, `uas` if the peer does (§7.4).
/// - `min_se_floor`: the `Min-SE` of a 422 ([`on_422`]); the retry's `Min-SE` is the largest
///   known value and `Session-Expires` is at least that (§7.3).
///
/// `Session-Expires` and `Min-SE` replace any already present; `timer` is added to
/// `Supported` only when not listed yet.
pub fn add_request_headers(
    config: &SessionTimerConfig,
    headers: &mut Headers,
    current: Option<&Negotiated>,
    min_se_floor: Option<Duration>,
) {
    if !config.enabled {
        return;
    }
    add_option_tag(headers, HeaderName::Supported, TIMER_OPTION_TAG);
    let floor = clamp_delta(ceil_secs(min_se_floor.unwrap_or_default()));
    let min = config.effective_min_se().max(floor);
    let se = match current {
        Some(n) => SessionExpires {
            interval: clamp_delta(Duration::from_secs(n.interval.as_secs())).max(min),
            refresher: Some(if n.we_refresh {
                Refresher::Uac
            } else {
                Refresher::Uas
            }),
        },
        None => SessionExpires {
            interval: config.effective_session_expires().max(min),
            refresher: None,
        },
    };
    headers.set(HeaderName::SessionExpires, se.to_string());
    headers.set(HeaderName::MinSE, min.as_secs().to_string());
}

/// Why a session refresh request is refused before it is processed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SessionTimerReject {
    /// The session interval is below our minimum: answer 422 (Session Interval Too Small)
    /// with `Min-SE: min_se` (RFC 4028 §6, §9); [`SessionTimerReject::add_headers`] adds it.
    IntervalTooSmall {
        /// Our minimum, to put in the 422's `Min-SE`.
        min_se: Duration,
    },
    /// `Session-Expires` or `Min-SE` does not match its grammar or is repeated: answer 400
    /// (RFC 3261 §21.4.1) with the error's reason phrase.
    Malformed(ParseError),
}

impl SessionTimerReject {
    /// The status to answer with: 422 or 400.
    pub fn status_code(&self) -> u16 {
        match self {
            SessionTimerReject::IntervalTooSmall { .. } => 422,
            SessionTimerReject::Malformed(e) => e.status_code(),
        }
    }

    /// Adds what the rejection needs: `Min-SE` for a 422 (RFC 4028 §6: "MUST contain a
    /// Min-SE header field"), nothing for a 400.
    pub fn add_headers(&self, response_headers: &mut Headers) {
        if let SessionTimerReject::IntervalTooSmall { min_se } = self {
            response_headers.set(HeaderName::MinSE, min_se.as_secs().to_string());
        }
    }
}

/// UAS: checks a received INVITE or UPDATE before processing it (RFC 4028 §9).
///
/// - A malformed or repeated `Session-Expires` or `Min-SE` is
///   [`SessionTimerReject::Malformed`] (400).
/// - A `Session-Expires` below our `Min-SE` (90 s at least, so every value below the §4
///   minimum too) is [`SessionTimerReject::IntervalTooSmall`] (422) when the UAC supports
///   the extension. When it does not (a proxy inserted the header), a 422 would mean nothing
///   to it, so the request passes and [`answer`] honours the proxy's interval (§8.1, §9).
///
/// Other methods, and every request when the extension is disabled, pass.
pub fn check_request(
    config: &SessionTimerConfig,
    request: &Request,
) -> Result<(), SessionTimerReject> {
    if !config.enabled || !is_refresh_method(&request.method) {
        return Ok(());
    }
    let se = session_expires(&request.headers)
        .transpose()
        .map_err(SessionTimerReject::Malformed)?;
    min_se(&request.headers)
        .transpose()
        .map_err(SessionTimerReject::Malformed)?;
    let ours = config.effective_min_se();
    match se {
        Some(se) if se.interval < ours && supports_timer(&request.headers) => {
            debug!(
                requested = se.interval.as_secs(),
                min_se = ours.as_secs(),
                "session interval too small: 422"
            );
            Err(SessionTimerReject::IntervalTooSmall { min_se: ours })
        }
        _ => Ok(()),
    }
}

/// UAS: decorates our 2xx to an INVITE or UPDATE (RFC 4028 §9) and returns the timer now
/// in force; `None` when the extension is disabled or the method is neither INVITE nor
/// UPDATE (the response is then left untouched).
///
/// - Interval: the request's `Session-Expires` reduced to our configured interval if larger
///   (the UAS "MAY reduce" it), never below the request's `Min-SE` nor 90 s; without a
///   `Session-Expires` we ask for our configured interval ourselves, again at least the
///   request's `Min-SE`.
/// - Refresher: the UAC's choice if it gave one; otherwise `uac` when the UAC supports the
///   extension; always `uas` when it does not, since it would never refresh.
/// - Headers: `Session-Expires` with the `refresher` parameter (always present in a 2xx,
///   §9), `Require: timer` when the UAC supports it (mandatory with `refresher=uac`),
///   `Supported: timer` if not listed yet.
///
/// Call it after [`check_request`] accepted the request.
pub fn answer(
    config: &SessionTimerConfig,
    request: &Request,
    response_headers: &mut Headers,
) -> Option<Negotiated> {
    if !config.enabled || !is_refresh_method(&request.method) {
        return None;
    }
    let uac_supports = supports_timer(&request.headers);
    let requested = session_expires(&request.headers).and_then(Result::ok);
    let request_floor = min_se(&request.headers)
        .and_then(Result::ok)
        .map(|d| clamp_delta(d).max(MIN_SESSION_INTERVAL))
        .unwrap_or(MIN_SESSION_INTERVAL);
    let ours = config.effective_session_expires();
    let interval = match requested {
        Some(se) => se.interval.min(ours).max(request_floor),
        None => ours.max(request_floor),
    };
    let refresher = if uac_supports {
        requested
            .and_then(|se| se.refresher)
            .unwrap_or(Refresher::Uac)
    } else {
        Refresher::Uas
    };
    let se = SessionExpires {
        interval,
        refresher: Some(refresher),
    };
    response_headers.set(HeaderName::SessionExpires, se.to_string());
    if uac_supports {
        add_option_tag(response_headers, HeaderName::Require, TIMER_OPTION_TAG);
    }
    add_option_tag(response_headers, HeaderName::Supported, TIMER_OPTION_TAG);
    Some(Negotiated {
        interval,
        refresher,
        we_refresh: refresher == Refresher::Uas,
    })
}

/// UAC: the timer in force after a 2xx to our INVITE or UPDATE (RFC 4028 §7.2).
///
/// - The 2xx has a valid `Session-Expires` (at least 90 s, §4): its interval and refresher;
///   a missing `refresher` (the UAS MUST set one, §9) is taken as `uac`, since a refresh
///   too many is harmless and one too few ends the session.
/// - It has none (or an invalid one) but our request asked for a timer: the UAS does not
///   support the extension, and we run the timer ourselves with the interval we asked for
///   and `refresher=uac` (§7.2).
/// - Otherwise, or for a non-2xx, or when the extension is disabled: `None`.
pub fn on_response(
    config: &SessionTimerConfig,
    request: &Request,
    response: &Response,
) -> Option<Negotiated> {
    if !config.enabled
        || !(200..300).contains(&response.status)
        || !is_refresh_method(&request.method)
    {
        return None;
    }
    let granted = session_expires(&response.headers)
        .and_then(Result::ok)
        .filter(|se| se.interval >= MIN_SESSION_INTERVAL);
    if let Some(se) = granted {
        let refresher = se.refresher.unwrap_or(Refresher::Uac);
        return Some(Negotiated {
            interval: se.interval,
            refresher,
            we_refresh: refresher == Refresher::Uac,
        });
    }
    let asked = session_expires(&request.headers).and_then(Result::ok)?;
    debug!(
        interval = asked.interval.as_secs(),
        "2xx without a usable Session-Expires: we refresh (RFC 4028 §7.2)"
    );
    Some(Negotiated {
        interval: asked.interval.max(MIN_SESSION_INTERVAL),
        refresher: Refresher::Uac,
        we_refresh: true,
    })
}

/// UAC: the `Min-SE` of a 422 to retry with (RFC 4028 §7.3); pass it to
/// [`add_request_headers`] as `min_se_floor`. `None` if the response is not a 422, or its
/// `Min-SE` is absent, malformed or below 90 s (§5).
pub fn on_422(response: &Response) -> Option<Duration> {
    if response.status != 422 {
        return None;
    }
    min_se(&response.headers)
        .and_then(Result::ok)
        .filter(|d| *d >= MIN_SESSION_INTERVAL)
}

/// What a [`SessionTimer`] asks of its owner.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SessionTimerAction {
    /// we are the refresher and half the interval has passed (§7.4, §9)
    Refresh,
    /// the session expired without a refresh: send BYE (§10)
    Expire,
}

/// The clock of one session's timer (RFC 4028 §10): an optional refresh deadline and an
/// expiry deadline, each firing at most once per period.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionTimer {
    negotiated: Negotiated,
    refresh_at: Option<Instant>,
    expire_at: Option<Instant>,
}

impl SessionTimer {
    /// Starts a period at `now`.
    ///
    /// - The refresher: `Refresh` at `interval / 2` (§10: "half the session interval"), and
    ///   `Expire` at `interval`, when "the side performing the refreshes does not receive a
    ///   2xx response to a session refresh request before the session expiration" (§10).
    ///   This leaves a refresh the second half of the interval, more than a transaction's
    ///   32 s, to complete.
    /// - The other side: `Expire` at `interval - min(32 s, interval / 3)`, "slightly before
    ///   the session expiration" (§10).
    ///
    /// A deadline that would overflow `Instant` is never reached.
    pub fn new(now: Instant, negotiated: Negotiated) -> Self {
        let interval = negotiated.interval;
        let (refresh_at, expire_after) = if negotiated.we_refresh {
            (now.checked_add(interval / 2), interval)
        } else {
            (None, interval - EXPIRY_MARGIN_CAP.min(interval / 3))
        };
        SessionTimer {
            negotiated,
            refresh_at,
            expire_at: now.checked_add(expire_after),
        }
    }

    /// The timer in force.
    pub fn negotiated(&self) -> Negotiated {
        self.negotiated
    }

    /// The next deadline, if any is still armed.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match (self.refresh_at, self.expire_at) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Fires the deadline that has come. Each deadline fires at most once: after `Refresh`
    /// only `Expire` is left until [`SessionTimer::restart`]; after `Expire` nothing is. When
    /// both are due (a late call), `Expire` wins.
    pub fn handle_timeout(&mut self, now: Instant) -> Option<SessionTimerAction> {
        if self.expire_at.is_some_and(|t| now >= t) {
            self.expire_at = None;
            self.refresh_at = None;
            debug!(
                interval = self.negotiated.interval.as_secs(),
                "session expired (RFC 4028 §10)"
            );
            return Some(SessionTimerAction::Expire);
        }
        if self.refresh_at.is_some_and(|t| now >= t) {
            self.refresh_at = None;
            return Some(SessionTimerAction::Refresh);
        }
        None
    }

    /// Starts a new period after a successful refresh: a 2xx to a re-INVITE or UPDATE, sent
    /// or received, that carried the timer (RFC 4028 §7.2, §9).
    pub fn restart(&mut self, now: Instant, negotiated: Negotiated) {
        *self = SessionTimer::new(now, negotiated);
    }
}

// ---------- helpers

/// INVITE and UPDATE are the session refresh requests (RFC 4028 §3).
fn is_refresh_method(method: &Method) -> bool {
    matches!(method, Method::Invite | Method::Update)
}

/// The value of a single-valued header: `None` if absent, an error if repeated.
fn single(headers: &Headers, name: HeaderName) -> Option<Result<Bytes, ParseError>> {
    let mut all = headers.get_all(&name);
    let first = all.next()?.clone();
    if all.next().is_some() {
        return Some(Err(ParseError::MultipleValues(name.clone())));
    }
    Some(Ok(first))
}

fn has_option_tag(headers: &Headers, name: &HeaderName, tag: &str) -> bool {
    headers
        .tokens(name)
        .any(|t| t.eq_ignore_ascii_case(tag.as_bytes()))
}

fn add_option_tag(headers: &mut Headers, name: HeaderName, tag: &'static str) {
    if !has_option_tag(headers, &name, tag) {
        headers.push(name, tag);
    }
}

/// Whole seconds, rounded up.
fn ceil_secs(d: Duration) -> Duration {
    let s = d.as_secs();
    Duration::from_secs(if d.subsec_nanos() > 0 {
        s.saturating_add(1)
    } else {
        s
    })
}

/// At most the largest printable delta-seconds.
fn clamp_delta(d: Duration) -> Duration {
    d.min(Duration::from_secs(MAX_DELTA_SECONDS))
}

fn is_lws(c: u8) -> bool {
    matches!(c, b' ' | b'\t' | b'\r' | b'\n')
}

/// RFC 3261 §25.1 `token` characters.
fn is_token_char(c: u8) -> bool {
    c.is_ascii_alphanumeric()
        || matches!(
            c,
            b'-' | b'.' | b'!' | b'%' | b'*' | b'_' | b'+' | b'`' | b'\'' | b'~'
        )
}

fn skip_lws(b: &[u8], mut i: usize) -> usize {
    while b.get(i).copied().is_some_and(is_lws) {
        i += 1;
    }
    i
}

/// A generic parameter: name and optional value (quotes kept for a quoted string).
type Param<'a> = (&'a [u8], Option<&'a [u8]>);

/// Parses `LWS delta-seconds *( SEMI generic-param ) LWS`. The outer `None` means the
/// number is missing or above 2^32-1; the inner `None` means the parameters are malformed.
#[allow(clippy::type_complexity)]
fn parse_delta_with_params(b: &[u8]) -> Option<(u64, Option<Vec<Param<'_>>>)> {
    let start = skip_lws(b, 0);
    let mut i = start;
    let mut n: u64 = 0;
    while let Some(&c) = b.get(i) {
        if !c.is_ascii_digit() {
            break;
        }
        n = n.checked_mul(10)?.checked_add(u64::from(c - b'0'))?;
        i += 1;
    }
    if i == start || n > MAX_DELTA_SECONDS {
        return None;
    }
    Some((n, parse_params(b, i)))
}

/// `*( SEMI generic-param ) LWS` from `i` to the end (RFC 3261 §25.1: `generic-param =
/// token [ EQUAL gen-value ]`, `gen-value = token / host / quoted-string`).
fn parse_params(b: &[u8], mut i: usize) -> Option<Vec<Param<'_>>> {
    let mut params = Vec::new();
    loop {
        i = skip_lws(b, i);
        match b.get(i) {
            None => return Some(params),
            Some(b';') => i = skip_lws(b, i + 1),
            Some(_) => return None,
        }
        let name_start = i;
        while b.get(i).copied().is_some_and(is_token_char) {
            i += 1;
        }
        let name = b.get(name_start..i).filter(|n| !n.is_empty())?;
        let after_name = skip_lws(b, i);
        if b.get(after_name) != Some(&b'=') {
            params.push((name, None));
            continue;
        }
        i = skip_lws(b, after_name + 1);
        let value_start = i;
        if b.get(i) == Some(&b'"') {
            i = end_of_quoted(b, i)?;
        } else {
            // token or host (an IPv6 reference included)
            while b
                .get(i)
                .copied()
                .is_some_and(|c| is_token_char(c) || matches!(c, b':' | b'[' | b']'))
            {
                i += 1;
            }
        }
        let value = b.get(value_start..i).filter(|v| !v.is_empty())?;
        params.push((name, Some(value)));
    }
}

/// The index just past the quoted string starting at `i` (RFC 3261 §25.1 `quoted-string`,
/// `\` escapes honoured); `None` if unterminated.
fn end_of_quoted(b: &[u8], i: usize) -> Option<usize> {
    let mut j = i + 1;
    loop {
        match b.get(j)? {
            b'"' => return Some(j + 1),
            b'\\' => j += 2,
            _ => j += 1,
        }
    }
}

#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use sip_message::Message;

    const S: fn(u64) -> Duration = Duration::from_secs;

    fn request(method: &str, extra: &str) -> Request {
        let text = format!(
            "{method} sip:bob@192.0.2.2 SIP/2.0\r\n\
             Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK-1\r\n\
             Max-Forwards: 70\r\n\
             From: <sip:alice@192.0.2.1>;tag=a\r\n\
             To: <sip:bob@192.0.2.2>\r\n\
             Call-ID: st-1@192.0.2.1\r\n\
             CSeq: 1 {method}\r\n\
             {extra}\
             Content-Length: 0\r\n\r\n"
        );
        match Message::parse(Bytes::from(text)).unwrap() {
            Message::Request(r) => r,
            Message::Response(_) => panic!("not a request"),
        }
    }

    fn response(status: u16, extra: &str) -> Response {
        let text = format!(
            "SIP/2.0 {status} Whatever\r\n\
             Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK-1\r\n\
             From: <sip:alice@192.0.2.1>;tag=a\r\n\
             To: <sip:bob@192.0.2.2>;tag=b\r\n\
             Call-ID: st-1@192.0.2.1\r\n\
             CSeq: 1 INVITE\r\n\
             {extra}\
             Content-Length: 0\r\n\r\n"
        );
        match Message::parse(Bytes::from(text)).unwrap() {
            Message::Response(r) => r,
            Message::Request(_) => panic!("not a response"),
        }
    }

    fn value<'a>(h: &'a Headers, name: &HeaderName) -> Option<&'a [u8]> {
        h.get(name).map(|v| v.as_ref())
    }

    fn tags(h: &Headers, name: &HeaderName) -> Vec<String> {
        h.tokens(name)
            .map(|t| String::from_utf8(t.to_vec()).unwrap())
            .collect()
    }

    fn cfg() -> SessionTimerConfig {
        SessionTimerConfig::default()
    }

    // ---------- parsing

    #[test]
    fn session_expires_parses_interval_refresher_and_params() {
        let se = SessionExpires::parse(b"1800").unwrap();
        assert_eq!(se.interval, S(1800));
        assert_eq!(se.refresher, None);
        let se = SessionExpires::parse(b"4000;refresher=uac").unwrap();
        assert_eq!((se.interval, se.refresher), (S(4000), Some(Refresher::Uac)));
        let se = SessionExpires::parse(b" 0090 ; foo=\"a;b\\\"c\" ;bar; REFRESHER = UAS ;x=[::1]")
            .unwrap();
        assert_eq!((se.interval, se.refresher), (S(90), Some(Refresher::Uas)));
        // an unknown refresher value is ignored, the first refresher wins
        let se = SessionExpires::parse(b"100;refresher=both").unwrap();
        assert_eq!(se.refresher, None);
        let se = SessionExpires::parse(b"100;refresher=uas;refresher=uac").unwrap();
        assert_eq!(se.refresher, Some(Refresher::Uas));
        let se = SessionExpires::parse(b"100;refresher").unwrap();
        assert_eq!(se.refresher, None);
        // folded LWS as received
        let se = SessionExpires::parse(b"1800\r\n ;refresher=uac").unwrap();
        assert_eq!(se.refresher, Some(Refresher::Uac));
    }

    #[test]
    fn session_expires_rejects_bad_values() {
        for bad in [
            &b""[..],
            b" ",
            b"abc",
            b"-1",
            b"+90",
            b"18 00",
            b"1800 junk",
            b"1800;",
            b"1800;=x",
            b"1800;a=",
            b"1800;a=\"open",
            b"1800,90",
            b"4294967296",
            b"99999999999999999999999999",
        ] {
            assert_eq!(
                SessionExpires::parse(bad),
                Err(ParseError::BadHeader {
                    name: HeaderName::SessionExpires
                }),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        // the largest delta-seconds and absurd but well-formed values parse
        assert_eq!(
            SessionExpires::parse(b"4294967295").unwrap().interval,
            S(4_294_967_295)
        );
        assert_eq!(SessionExpires::parse(b"0").unwrap().interval, S(0));
    }

    #[test]
    fn session_expires_prints_and_round_trips() {
        let se = SessionExpires {
            interval: S(1800),
            refresher: Some(Refresher::Uas),
        };
        assert_eq!(se.to_string(), "1800;refresher=uas");
        assert_eq!(
            SessionExpires::parse(se.to_string().as_bytes()).unwrap(),
            se
        );
        let bare = SessionExpires {
            interval: S(90),
            refresher: None,
        };
        assert_eq!(bare.to_string(), "90");
    }

    #[test]
    fn min_se_parses_and_rejects() {
        assert_eq!(parse_min_se(b"90"), Ok(S(90)));
        assert_eq!(parse_min_se(b" 120 ;foo=bar"), Ok(S(120)));
        assert_eq!(parse_min_se(b"30"), Ok(S(30)));
        for bad in [&b""[..], b"x", b"90x", b"90;", b"4294967296", b"9;;"] {
            assert_eq!(
                parse_min_se(bad),
                Err(ParseError::BadHeader {
                    name: HeaderName::MinSE
                })
            );
        }
    }

    #[test]
    fn compact_form_x_is_read() {
        let req = request("INVITE", "x: 1200;refresher=uac\r\nk: timer\r\n");
        let se = session_expires(&req.headers).unwrap().unwrap();
        assert_eq!(se.interval, S(1200));
        assert!(supports_timer(&req.headers));
    }

    #[test]
    fn config_is_normalised() {
        let c = SessionTimerConfig {
            enabled: true,
            session_expires: S(60),
            min_se: S(30),
        };
        assert_eq!(c.effective_min_se(), S(90));
        assert_eq!(c.effective_session_expires(), S(90));
        let c = SessionTimerConfig {
            enabled: true,
            session_expires: S(100),
            min_se: Duration::from_millis(120_001),
        };
        assert_eq!(c.effective_min_se(), S(121));
        assert_eq!(c.effective_session_expires(), S(121));
        let c = SessionTimerConfig {
            enabled: true,
            session_expires: Duration::MAX,
            min_se: Duration::MAX,
        };
        assert_eq!(c.effective_min_se(), S(u64::from(u32::MAX)));
        assert_eq!(c.effective_session_expires(), S(u64::from(u32::MAX)));
    }

    // ---------- UAC: building requests

    #[test]
    fn initial_request_lets_the_uas_choose() {
        let mut h = Headers::new();
        add_request_headers(&cfg(), &mut h, None, None);
        assert_eq!(tags(&h, &HeaderName::Supported), ["timer"]);
        assert_eq!(value(&h, &HeaderName::SessionExpires), Some(&b"1800"[..]));
        assert_eq!(value(&h, &HeaderName::MinSE), Some(&b"90"[..]));
        // applied twice: nothing duplicated
        add_request_headers(&cfg(), &mut h, None, None);
        assert_eq!(h.count(&HeaderName::Supported), 1);
        assert_eq!(h.count(&HeaderName::SessionExpires), 1);
        assert_eq!(h.count(&HeaderName::MinSE), 1);
    }

    #[test]
    fn existing_supported_list_is_extended_not_duplicated() {
        let mut h = Headers::new();
        h.push(HeaderName::Supported, "100rel, TIMER");
        add_request_headers(&cfg(), &mut h, None, None);
        assert_eq!(h.count(&HeaderName::Supported), 1);
        let mut h = Headers::new();
        h.push(HeaderName::Supported, "100rel");
        add_request_headers(&cfg(), &mut h, None, None);
        assert_eq!(tags(&h, &HeaderName::Supported), ["100rel", "timer"]);
    }

    #[test]
    fn disabled_adds_nothing() {
        let mut h = Headers::new();
        let off = SessionTimerConfig {
            enabled: false,
            ..cfg()
        };
        add_request_headers(&off, &mut h, None, Some(S(500)));
        assert!(h.is_empty());
    }

    #[test]
    fn retry_after_422_uses_the_learned_min_se() {
        let r422 = response(422, "Min-SE: 3600\r\n");
        let floor = on_422(&r422);
        assert_eq!(floor, Some(S(3600)));
        let mut h = Headers::new();
        add_request_headers(&cfg(), &mut h, None, floor);
        assert_eq!(value(&h, &HeaderName::SessionExpires), Some(&b"3600"[..]));
        assert_eq!(value(&h, &HeaderName::MinSE), Some(&b"3600"[..]));
        // a floor below our configured interval only raises Min-SE
        let mut h = Headers::new();
        add_request_headers(&cfg(), &mut h, None, Some(S(300)));
        assert_eq!(value(&h, &HeaderName::SessionExpires), Some(&b"1800"[..]));
        assert_eq!(value(&h, &HeaderName::MinSE), Some(&b"300"[..]));
        // the retried request passes a UAS whose minimum was 3600
        let mut retry = request("INVITE", "");
        add_request_headers(&cfg(), &mut retry.headers, None, floor);
        let strict = SessionTimerConfig {
            min_se: S(3600),
            ..cfg()
        };
        assert_eq!(check_request(&strict, &retry), Ok(()));
    }

    #[test]
    fn refresh_reproposes_interval_and_refresher() {
        let mut h = Headers::new();
        let ours = Negotiated {
            interval: S(600),
            refresher: Refresher::Uas,
            we_refresh: true,
        };
        add_request_headers(&cfg(), &mut h, Some(&ours), None);
        // we refresh, and we are the UAC of this refresh
        assert_eq!(
            value(&h, &HeaderName::SessionExpires),
            Some(&b"600;refresher=uac"[..])
        );
        let theirs = Negotiated {
            interval: S(600),
            refresher: Refresher::Uac,
            we_refresh: false,
        };
        add_request_headers(&cfg(), &mut h, Some(&theirs), None);
        assert_eq!(
            value(&h, &HeaderName::SessionExpires),
            Some(&b"600;refresher=uas"[..])
        );
        // a 422 to the refresh raises the interval to the floor
        add_request_headers(&cfg(), &mut h, Some(&theirs), Some(S(900)));
        assert_eq!(
            value(&h, &HeaderName::SessionExpires),
            Some(&b"900;refresher=uas"[..])
        );
        assert_eq!(value(&h, &HeaderName::MinSE), Some(&b"900"[..]));
    }

    // ---------- UAS: checking requests

    #[test]
    fn interval_below_min_se_gets_422_with_our_min_se() {
        let strict = SessionTimerConfig {
            min_se: S(600),
            ..cfg()
        };
        let req = request("INVITE", "Supported: timer\r\nSession-Expires: 300\r\n");
        let reject = check_request(&strict, &req).unwrap_err();
        assert_eq!(
            reject,
            SessionTimerReject::IntervalTooSmall { min_se: S(600) }
        );
        assert_eq!(reject.status_code(), 422);
        let mut h = Headers::new();
        reject.add_headers(&mut h);
        assert_eq!(value(&h, &HeaderName::MinSE), Some(&b"600"[..]));
        // at the minimum: accepted
        let req = request("UPDATE", "Supported: timer\r\nSession-Expires: 600\r\n");
        assert_eq!(check_request(&strict, &req), Ok(()));
        // Require: timer counts as support
        let req = request("INVITE", "Require: timer\r\nSession-Expires: 100\r\n");
        assert!(check_request(&strict, &req).is_err());
    }

    #[test]
    fn intervals_below_90_are_too_small_even_with_a_lower_config() {
        let lax = SessionTimerConfig {
            min_se: S(1),
            ..cfg()
        };
        for se in ["0", "1", "89"] {
            let req = request("INVITE", &format!("Supported: timer\r\nx: {se}\r\n"));
            assert_eq!(
                check_request(&lax, &req),
                Err(SessionTimerReject::IntervalTooSmall { min_se: S(90) })
            );
        }
    }

    #[test]
    fn no_422_when_the_uac_does_not_support_timer() {
        // a proxy inserted Session-Expires: the UAC would not understand a 422 (§8.1, §9)
        let req = request("INVITE", "Session-Expires: 120\r\n");
        let strict = SessionTimerConfig {
            min_se: S(600),
            ..cfg()
        };
        assert_eq!(check_request(&strict, &req), Ok(()));
        let mut h = Headers::new();
        let n = answer(&strict, &req, &mut h).unwrap();
        assert_eq!(n.interval, S(120));
        assert_eq!(n.refresher, Refresher::Uas);
        assert!(n.we_refresh);
    }

    #[test]
    fn malformed_headers_are_a_400_matter() {
        for extra in [
            "Supported: timer\r\nSession-Expires: soon\r\n",
            "Session-Expires: 1800;\r\n",
            "Session-Expires: 1800\r\nSession-Expires: 1800\r\n",
            "Supported: timer\r\nSession-Expires: 1800\r\nMin-SE: ninety\r\n",
            "Session-Expires: 99999999999999999999999\r\n",
        ] {
            let req = request("INVITE", extra);
            let reject = check_request(&cfg(), &req).unwrap_err();
            assert!(
                matches!(reject, SessionTimerReject::Malformed(_)),
                "{extra}"
            );
            assert_eq!(reject.status_code(), 400);
            let mut h = Headers::new();
            reject.add_headers(&mut h);
            assert!(h.is_empty());
        }
    }

    #[test]
    fn check_ignores_other_methods_and_disabled_config() {
        let req = request("BYE", "Supported: timer\r\nSession-Expires: 10\r\n");
        assert_eq!(check_request(&cfg(), &req), Ok(()));
        let req = request("INVITE", "Supported: timer\r\nSession-Expires: junk\r\n");
        let off = SessionTimerConfig {
            enabled: false,
            ..cfg()
        };
        assert_eq!(check_request(&off, &req), Ok(()));
        let req = request("INVITE", "");
        assert_eq!(check_request(&cfg(), &req), Ok(()));
    }

    // ---------- UAS: answering

    #[test]
    fn uas_keeps_the_uac_refresher_choice() {
        for (given, we_refresh) in [("uac", false), ("uas", true)] {
            let req = request(
                "INVITE",
                &format!("Supported: timer\r\nSession-Expires: 1200;refresher={given}\r\n"),
            );
            let mut h = Headers::new();
            let n = answer(&cfg(), &req, &mut h).unwrap();
            assert_eq!(n.interval, S(1200));
            assert_eq!(n.we_refresh, we_refresh);
            assert_eq!(n.refresher.as_str(), given);
            assert_eq!(
                value(&h, &HeaderName::SessionExpires).unwrap(),
                format!("1200;refresher={given}").as_bytes()
            );
            assert_eq!(tags(&h, &HeaderName::Require), ["timer"]);
            assert_eq!(tags(&h, &HeaderName::Supported), ["timer"]);
        }
    }

    #[test]
    fn uas_chooses_uac_when_the_uac_supports_and_left_it_open() {
        let req = request("INVITE", "Supported: timer\r\nSession-Expires: 1200\r\n");
        let mut h = Headers::new();
        let n = answer(&cfg(), &req, &mut h).unwrap();
        assert_eq!(
            n,
            Negotiated {
                interval: S(1200),
                refresher: Refresher::Uac,
                we_refresh: false
            }
        );
        assert_eq!(
            value(&h, &HeaderName::SessionExpires),
            Some(&b"1200;refresher=uac"[..])
        );
        assert_eq!(tags(&h, &HeaderName::Require), ["timer"]);
    }

    #[test]
    fn uas_asks_for_a_timer_the_supporting_uac_did_not_request() {
        let req = request("INVITE", "Supported: timer\r\nMin-SE: 2000\r\n");
        let mut h = Headers::new();
        let n = answer(&cfg(), &req, &mut h).unwrap();
        // our 1800, raised to the request's Min-SE (§9)
        assert_eq!(n.interval, S(2000));
        assert_eq!(n.refresher, Refresher::Uac);
        assert!(!n.we_refresh);
        assert_eq!(tags(&h, &HeaderName::Require), ["timer"]);
    }

    #[test]
    fn uas_refreshes_itself_when_the_uac_does_not_support_timer() {
        let req = request("INVITE", "Supported: 100rel\r\n");
        let mut h = Headers::new();
        h.push(HeaderName::Require, "100rel");
        let n = answer(&cfg(), &req, &mut h).unwrap();
        assert_eq!(
            n,
            Negotiated {
                interval: S(1800),
                refresher: Refresher::Uas,
                we_refresh: true
            }
        );
        assert_eq!(
            value(&h, &HeaderName::SessionExpires),
            Some(&b"1800;refresher=uas"[..])
        );
        // no Require: timer toward a UAC that does not know it
        assert_eq!(tags(&h, &HeaderName::Require), ["100rel"]);
        // even if the request (via a proxy) named the UAC
        let req = request("INVITE", "Session-Expires: 1000;refresher=uac\r\n");
        let n = answer(&cfg(), &req, &mut Headers::new()).unwrap();
        assert_eq!(n.refresher, Refresher::Uas);
        assert_eq!(n.interval, S(1000));
    }

    #[test]
    fn uas_reduces_but_never_below_the_request_min_se() {
        let req = request("INVITE", "Supported: timer\r\nSession-Expires: 7200\r\n");
        let n = answer(&cfg(), &req, &mut Headers::new()).unwrap();
        assert_eq!(n.interval, S(1800));
        let req = request(
            "INVITE",
            "Supported: timer\r\nSession-Expires: 7200\r\nMin-SE: 3600\r\n",
        );
        let n = answer(&cfg(), &req, &mut Headers::new()).unwrap();
        assert_eq!(n.interval, S(3600));
        // absurd values: reduced to ours, no panic
        let req = request(
            "INVITE",
            "Supported: timer\r\nSession-Expires: 4294967295\r\nMin-SE: 4294967295\r\n",
        );
        let n = answer(&cfg(), &req, &mut Headers::new()).unwrap();
        assert_eq!(n.interval, S(4_294_967_295));
        let req = request("INVITE", "Session-Expires: 0\r\nMin-SE: 0\r\n");
        let n = answer(&cfg(), &req, &mut Headers::new()).unwrap();
        assert_eq!(n.interval, S(90));
    }

    #[test]
    fn uas_answer_is_none_when_disabled_or_not_a_refresh_method() {
        let req = request("INVITE", "Supported: timer\r\nSession-Expires: 1200\r\n");
        let off = SessionTimerConfig {
            enabled: false,
            ..cfg()
        };
        let mut h = Headers::new();
        assert_eq!(answer(&off, &req, &mut h), None);
        assert!(h.is_empty());
        let req = request("OPTIONS", "Supported: timer\r\nSession-Expires: 1200\r\n");
        assert_eq!(answer(&cfg(), &req, &mut h), None);
        assert!(h.is_empty());
        let req = request("UPDATE", "Supported: timer\r\nSession-Expires: 1200\r\n");
        assert!(answer(&cfg(), &req, &mut h).is_some());
    }

    // ---------- UAC: responses

    fn our_invite() -> Request {
        let mut req = request("INVITE", "");
        add_request_headers(&cfg(), &mut req.headers, None, None);
        req
    }

    #[test]
    fn uac_follows_the_refresher_in_the_2xx() {
        let ok = response(
            200,
            "Require: timer\r\nSession-Expires: 1200;refresher=uac\r\n",
        );
        assert_eq!(
            on_response(&cfg(), &our_invite(), &ok),
            Some(Negotiated {
                interval: S(1200),
                refresher: Refresher::Uac,
                we_refresh: true
            })
        );
        let ok = response(200, "Session-Expires: 1200;refresher=uas\r\n");
        assert_eq!(
            on_response(&cfg(), &our_invite(), &ok),
            Some(Negotiated {
                interval: S(1200),
                refresher: Refresher::Uas,
                we_refresh: false
            })
        );
        // no refresher named: we take it
        let ok = response(202, "Session-Expires: 1200\r\n");
        assert!(on_response(&cfg(), &our_invite(), &ok).unwrap().we_refresh);
    }

    #[test]
    fn uac_runs_the_timer_alone_when_the_uas_ignores_it() {
        let ok = response(200, "");
        assert_eq!(
            on_response(&cfg(), &our_invite(), &ok),
            Some(Negotiated {
                interval: S(1800),
                refresher: Refresher::Uac,
                we_refresh: true
            })
        );
        // an invalid Session-Expires in the 2xx is treated as absent
        for bad in [
            "Session-Expires: 30;refresher=uas\r\n",
            "Session-Expires: x\r\n",
        ] {
            let ok = response(200, bad);
            let n = on_response(&cfg(), &our_invite(), &ok).unwrap();
            assert_eq!((n.interval, n.we_refresh), (S(1800), true), "{bad}");
        }
    }

    #[test]
    fn uac_has_no_timer_when_nobody_asked() {
        let plain = request("INVITE", "");
        assert_eq!(on_response(&cfg(), &plain, &response(200, "")), None);
        // but the UAS may impose one
        let ok = response(200, "Session-Expires: 900;refresher=uas\r\n");
        assert_eq!(
            on_response(&cfg(), &plain, &ok).map(|n| n.we_refresh),
            Some(false)
        );
    }

    #[test]
    fn uac_ignores_non_2xx_and_disabled() {
        let prov = response(183, "Session-Expires: 900;refresher=uas\r\n");
        assert_eq!(on_response(&cfg(), &our_invite(), &prov), None);
        let off = SessionTimerConfig {
            enabled: false,
            ..cfg()
        };
        let ok = response(200, "Session-Expires: 900;refresher=uas\r\n");
        assert_eq!(on_response(&off, &our_invite(), &ok), None);
    }

    #[test]
    fn on_422_reads_min_se() {
        assert_eq!(on_422(&response(422, "Min-SE: 600\r\n")), Some(S(600)));
        assert_eq!(on_422(&response(422, "Min-SE: 600;foo\r\n")), Some(S(600)));
        assert_eq!(on_422(&response(422, "")), None);
        assert_eq!(on_422(&response(422, "Min-SE: soon\r\n")), None);
        assert_eq!(on_422(&response(422, "Min-SE: 60\r\n")), None);
        assert_eq!(
            on_422(&response(422, "Min-SE: 100\r\nMin-SE: 200\r\n")),
            None
        );
        assert_eq!(on_422(&response(423, "Min-SE: 600\r\n")), None);
    }

    #[test]
    fn full_negotiation_uac_and_uas_agree() {
        // UAC asks, UAS answers, both derive the same timer from opposite ends
        let uac_cfg = cfg();
        let uas_cfg = SessionTimerConfig {
            session_expires: S(900),
            ..cfg()
        };
        let invite = our_invite();
        assert_eq!(check_request(&uas_cfg, &invite), Ok(()));
        let mut ok = Response::from_request(&invite, 200, Some("b"));
        let uas = answer(&uas_cfg, &invite, &mut ok.headers).unwrap();
        let wire = Message::parse(ok.to_bytes()).unwrap();
        let Message::Response(ok) = wire else {
            panic!()
        };
        let uac = on_response(&uac_cfg, &invite, &ok).unwrap();
        assert_eq!(uac.interval, uas.interval);
        assert_eq!(uac.interval, S(900));
        assert_eq!(uac.refresher, uas.refresher);
        assert!(uac.we_refresh != uas.we_refresh);
        assert!(uac.we_refresh);
    }

    // ---------- the timer

    fn neg(secs: u64, we_refresh: bool) -> Negotiated {
        Negotiated {
            interval: S(secs),
            refresher: if we_refresh {
                Refresher::Uac
            } else {
                Refresher::Uas
            },
            we_refresh,
        }
    }

    #[test]
    fn refresher_refreshes_at_half_once_then_expires_at_interval() {
        let t0 = Instant::now();
        let mut t = SessionTimer::new(t0, neg(1800, true));
        assert_eq!(t.poll_timeout(), Some(t0 + S(900)));
        assert_eq!(t.handle_timeout(t0 + S(899)), None);
        assert_eq!(
            t.handle_timeout(t0 + S(900)),
            Some(SessionTimerAction::Refresh)
        );
        // never two Refresh for one period
        assert_eq!(t.handle_timeout(t0 + S(900)), None);
        assert_eq!(t.handle_timeout(t0 + S(1000)), None);
        assert_eq!(t.poll_timeout(), Some(t0 + S(1800)));
        assert_eq!(
            t.handle_timeout(t0 + S(1800)),
            Some(SessionTimerAction::Expire)
        );
        assert_eq!(t.poll_timeout(), None);
        assert_eq!(t.handle_timeout(t0 + S(5000)), None);
    }

    #[test]
    fn non_refresher_expires_before_the_interval() {
        let t0 = Instant::now();
        // min(32, 1800/3) = 32
        let mut t = SessionTimer::new(t0, neg(1800, false));
        assert_eq!(t.poll_timeout(), Some(t0 + S(1768)));
        assert_eq!(t.handle_timeout(t0 + S(1767)), None);
        assert_eq!(
            t.handle_timeout(t0 + S(1768)),
            Some(SessionTimerAction::Expire)
        );
        assert_eq!(t.handle_timeout(t0 + S(1769)), None);
        assert_eq!(t.poll_timeout(), None);
        // min(32, 90/3) = 30
        let t = SessionTimer::new(t0, neg(90, false));
        assert_eq!(t.poll_timeout(), Some(t0 + S(60)));
        // min(32, 96/3) = 32, min(32, 99/3) = 32
        assert_eq!(
            SessionTimer::new(t0, neg(96, false)).poll_timeout(),
            Some(t0 + S(64))
        );
        assert_eq!(
            SessionTimer::new(t0, neg(99, false)).poll_timeout(),
            Some(t0 + S(67))
        );
    }

    #[test]
    fn restart_begins_a_new_period() {
        let t0 = Instant::now();
        let mut t = SessionTimer::new(t0, neg(600, true));
        assert_eq!(
            t.handle_timeout(t0 + S(300)),
            Some(SessionTimerAction::Refresh)
        );
        // the refresh's 2xx arrives 2 s later with a new interval
        let t1 = t0 + S(302);
        t.restart(t1, neg(1000, true));
        assert_eq!(t.negotiated().interval, S(1000));
        assert_eq!(t.poll_timeout(), Some(t1 + S(500)));
        assert_eq!(t.handle_timeout(t0 + S(600)), None, "old expiry is gone");
        assert_eq!(
            t.handle_timeout(t1 + S(500)),
            Some(SessionTimerAction::Refresh)
        );
        // the peer took over refreshing in a re-INVITE it sent
        let t2 = t1 + S(510);
        t.restart(t2, neg(1000, false));
        assert_eq!(t.poll_timeout(), Some(t2 + S(968)));
        assert_eq!(t.handle_timeout(t2 + S(500)), None);
        // the non-refresher restarted by the peer's refresh never expires on time
        t.restart(t2 + S(900), neg(1000, false));
        assert_eq!(t.handle_timeout(t2 + S(968)), None);
        assert_eq!(
            t.handle_timeout(t2 + S(900 + 968)),
            Some(SessionTimerAction::Expire)
        );
    }

    #[test]
    fn a_late_call_expires_rather_than_refreshes() {
        let t0 = Instant::now();
        let mut t = SessionTimer::new(t0, neg(100, true));
        assert_eq!(
            t.handle_timeout(t0 + S(1000)),
            Some(SessionTimerAction::Expire)
        );
        assert_eq!(t.handle_timeout(t0 + S(1000)), None);
    }

    #[test]
    fn absurd_intervals_do_not_panic() {
        let t0 = Instant::now();
        let mut t = SessionTimer::new(
            t0,
            Negotiated {
                interval: Duration::MAX,
                refresher: Refresher::Uac,
                we_refresh: true,
            },
        );
        // whatever the platform's Instant range, no deadline is before half of it
        if let Some(at) = t.poll_timeout() {
            assert!(at >= t0 + S(1_000_000));
        }
        assert_eq!(t.handle_timeout(t0 + S(86_400)), None);
        let mut t = SessionTimer::new(t0, neg(0, false));
        assert_eq!(t.handle_timeout(t0), Some(SessionTimerAction::Expire));
        assert_eq!(t.handle_timeout(t0), None);
        let mut t = SessionTimer::new(t0, neg(0, true));
        assert_eq!(t.handle_timeout(t0), Some(SessionTimerAction::Expire));
        assert_eq!(t.handle_timeout(t0), None);
        let big = SessionTimer::new(t0, neg(u64::from(u32::MAX), false));
        assert_eq!(
            big.poll_timeout(),
            Some(t0 + S(u64::from(u32::MAX)) - S(32))
        );
    }

    proptest! {
        #[test]
        fn parsers_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = SessionExpires::parse(&bytes);
            let _ = parse_min_se(&bytes);
        }

        #[test]
        fn parsers_never_panic_on_near_misses(s in "[0-9 ;=\"\\\\a-zA-Z\\[\\]:\r\n\t]{0,40}") {
            let se = SessionExpires::parse(s.as_bytes());
            if let Ok(se) = se {
                // whatever parsed prints back to the same interval
                let again = SessionExpires::parse(se.to_string().as_bytes()).unwrap();
                prop_assert_eq!(again.interval, se.interval);
                prop_assert_eq!(again.refresher, se.refresher);
            }
            let _ = parse_min_se(s.as_bytes());
        }

        #[test]
        fn negotiation_never_panics_on_arbitrary_values(
            se in proptest::collection::vec(any::<u8>(), 0..32),
            min in proptest::collection::vec(any::<u8>(), 0..32),
            supported in any::<bool>(),
        ) {
            let mut req = request("INVITE", "");
            req.headers.push(HeaderName::SessionExpires, se.clone());
            req.headers.push(HeaderName::MinSE, min.clone());
            if supported {
                req.headers.push(HeaderName::Supported, "timer");
            }
            let strict = SessionTimerConfig { min_se: S(600), ..cfg() };
            let verdict = check_request(&strict, &req);
            let mut h = Headers::new();
            let n = answer(&strict, &req, &mut h).unwrap();
            prop_assert!(n.interval >= MIN_SESSION_INTERVAL);
            if verdict.is_ok() && supported {
                // what we grant a supporting UAC is never below our own minimum
                prop_assert!(n.interval >= S(600));
            }
            let mut ok = response(200, "");
            ok.headers.push(HeaderName::SessionExpires, se);
            ok.headers.push(HeaderName::MinSE, min);
            let _ = on_response(&cfg(), &req, &ok);
            ok.status = 422;
            if let Some(floor) = on_422(&ok) {
                prop_assert!(floor >= MIN_SESSION_INTERVAL);
            }
            let mut t = SessionTimer::new(Instant::now(), n);
            let at = t.poll_timeout().unwrap();
            prop_assert!(t.handle_timeout(at).is_some());
        }

        #[test]
        fn timer_deadlines_follow_the_rfc(secs in 90u64..200_000, we_refresh in any::<bool>()) {
            let t0 = Instant::now();
            let mut t = SessionTimer::new(t0, neg(secs, we_refresh));
            let interval = S(secs);
            let mut fired = Vec::new();
            while let Some(at) = t.poll_timeout() {
                let action = t.handle_timeout(at).unwrap();
                fired.push((at - t0, action));
            }
            if we_refresh {
                prop_assert_eq!(fired, vec![
                    (interval / 2, SessionTimerAction::Refresh),
                    (interval, SessionTimerAction::Expire),
                ]);
            } else {
                let margin = S(32).min(interval / 3);
                prop_assert_eq!(fired, vec![(interval - margin, SessionTimerAction::Expire)]);
            }
        }
    }
}
