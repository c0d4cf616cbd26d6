//! RFC 3262 reliable provisional responses (100rel / PRACK), sans-IO.
//!
//! The UAS side, [`ReliableProvisionals`], numbers its reliable 1xx with `RSeq`, retransmits
//! each until a PRACK acknowledges it and keeps at most one unacknowledged (§3). The UAC
//! side, [`ReliableReceiver`], decides per early dialog which reliable 1xx to PRACK and
//! which to drop as retransmitted or out of order (§4). [`RAck`] is the header a PRACK
//! carries (§7.2). Nothing reads a clock: every entry point takes `now`.

use sip_message::{CSeq, HeaderName, Headers, Method, ParseError, Response};
use std::collections::VecDeque;
use std::fmt;
use std::time::{Duration, Instant};
use tracing::debug;

/// The option tag of this extension (RFC 3262 §8.1).
pub const OPTION_TAG_100REL: &str = "100rel";

/// The largest initial `RSeq` (RFC 3262 §3: "between 1 and 2**31 - 1").
const MAX_FIRST_RSEQ: u32 = (1 << 31) - 1;

/// A retransmission interval is never shorter than this: a zero T1 from a bad
/// configuration must not make a timer fire forever at one instant.
const MIN_INTERVAL: Duration = Duration::from_millis(1);

/// The `RAck` header: `response-num LWS CSeq-num LWS Method` (RFC 3262 §7.2).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct RAck {
    /// The `RSeq` of the acknowledged provisional response.
    pub rseq: u32,
    /// The CSeq number of the request it answered.
    pub cseq: u32,
    /// The CSeq method of the request it answered.
    pub method: Method,
}

impl RAck {
    /// Parses a header value. Errors are `ParseError::BadHeader { name: RAck }`, a 400
    /// matter. Never panics.
    pub fn parse(value: &[u8]) -> Result<RAck, ParseError> {
        let bad = || ParseError::BadHeader {
            name: HeaderName::RAck,
        };
        let mut fields = value
            .split(|&c| is_lws(c))
            .filter(|field| !field.is_empty());
        let rseq = fields.next().and_then(parse_u32).ok_or_else(bad)?;
        let cseq = fields.next().and_then(parse_u32).ok_or_else(bad)?;
        let method = fields
            .next()
            .and_then(|m| Method::parse(m).ok())
            .ok_or_else(bad)?;
        if fields.next().is_some() {
            return Err(bad());
        }
        Ok(RAck { rseq, cseq, method })
    }

    /// The `RAck` that acknowledges `response`: its `RSeq`, and the number and method of
    /// its `CSeq` (RFC 3262 §7.2). `None` if either header is missing or malformed.
    pub fn for_response(response: &Response) -> Option<RAck> {
        let rseq = rseq(&response.headers)?.ok()?;
        let CSeq { seq, method } = response.headers.cseq().ok()?;
        Some(RAck {
            rseq,
            cseq: seq,
            method,
        })
    }
}

impl fmt::Display for RAck {
    /// `776656 1 INVITE`
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} {}", self.rseq, self.cseq, self.method)
    }
}

/// Parses an `RSeq` value, `1*DIGIT` below 2^32 (RFC 3262 §7.1). Never panics.
pub fn parse_rseq(value: &[u8]) -> Result<u32, ParseError> {
    let trimmed = trim_lws(value);
    parse_u32(trimmed).ok_or(ParseError::BadHeader {
        name: HeaderName::RSeq,
    })
}

/// The `RSeq` of a message: `None` if absent; an error if malformed or repeated.
pub fn rseq(headers: &Headers) -> Option<Result<u32, ParseError>> {
    let mut all = headers.get_all(&HeaderName::RSeq);
    let first = all.next()?;
    if all.next().is_some() {
        return Some(Err(ParseError::MultipleValues(HeaderName::RSeq)));
    }
    Some(parse_rseq(first))
}

/// Whether a request or response asks for 100rel: `Require: 100rel` (RFC 3262 §3, §4).
pub fn requires_100rel(headers: &Headers) -> bool {
    has_tag(headers, &HeaderName::Require)
}

/// Whether a request or response merely offers 100rel: `Supported: 100rel` (RFC 3262 §3).
/// A UAS may send a 1xx reliably when either this or [`requires_100rel`] holds for the
/// INVITE, and MUST NOT when neither does.
pub fn supports_100rel(headers: &Headers) -> bool {
    has_tag(headers, &HeaderName::Supported)
}

fn has_tag(headers: &Headers, name: &HeaderName) -> bool {
    headers
        .tokens(name)
        .any(|t| t.eq_ignore_ascii_case(OPTION_TAG_100REL.as_bytes()))
}

// ---------- UAS

/// How [`ReliableProvisionals::on_prack`] matched a PRACK.
// Returned once per PRACK and taken apart at once: boxing the responses would cost an
// allocation per PRACK to save stack space nobody holds on to.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PrackMatch {
    /// the PRACK acknowledges this 1xx (answer 200 to the PRACK); `next` is a queued reliable 1xx now to send
    Matched {
        /// The acknowledged 1xx, as sent (with its `RSeq`).
        acknowledged: Response,
        /// The next queued 1xx, stamped and retransmitted from now on: send it.
        next: Option<Response>,
    },
    /// no unacknowledged 1xx with that RSeq/CSeq: answer 481 (§3)
    NoMatch,
}

/// What [`ReliableProvisionals::handle_timeout`] asks of its owner.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReliableAction {
    /// Send this reliable 1xx again (RFC 3262 §3).
    Retransmit(Response),
    /// 64·T1 without a PRACK: the UAS SHOULD reject the INVITE with 5xx (§3)
    GiveUp,
}

#[derive(Debug)]
struct Unacknowledged {
    response: Response,
    rseq: u32,
    cseq: Option<CSeq>,
    /// The next retransmission and the interval that led to it.
    retransmit: Option<(Instant, Duration)>,
    give_up_at: Option<Instant>,
}

/// UAS side: the reliable provisionals of one INVITE server transaction (RFC 3262 §3).
#[derive(Debug)]
pub struct ReliableProvisionals {
    t1: Duration,
    /// The `RSeq` of the next reliable 1xx; `None` once 2^32-1 has been used (§3: it
    /// MUST NOT wrap).
    next_rseq: Option<u32>,
    unacknowledged: Option<Unacknowledged>,
    queue: VecDeque<Response>,
    /// The final response was sent, or we gave up: no more reliable 1xx.
    finished: bool,
}

impl ReliableProvisionals {
    /// `t1`: RFC 3261's T1 (500 ms by default). `first_rseq`: the first `RSeq`, chosen at
    /// random in 1..=2^31-1 by the caller (RFC 3262 §3); a value outside is clamped into it.
    pub fn new(t1: Duration, first_rseq: u32) -> Self {
        ReliableProvisionals {
            t1: t1.max(MIN_INTERVAL),
            next_rseq: Some(first_rseq.clamp(1, MAX_FIRST_RSEQ)),
            unacknowledged: None,
            queue: VecDeque::new(),
            finished: false,
        }
    }

    /// Sends a 1xx reliably (RFC 3262 §3): stamps `RSeq` (one more than the previous) and
    /// `Require: 100rel` (unless already listed), and starts retransmitting it at T1,
    /// doubling each time. Only one may be unacknowledged: while one is, a later one is
    /// queued (`None` here) and comes back as [`PrackMatch::Matched`]'s `next`.
    ///
    /// `Some` is the response to send now. A 100 (never reliable, §3) or a final response
    /// is returned unchanged and not tracked: call [`ReliableProvisionals::on_final`] when
    /// the final goes out. A 1xx after the final response, or after `RSeq` 2^32-1, is
    /// dropped (`None`).
    pub fn send(&mut self, now: Instant, response: Response) -> Option<Response> {
        if !(101..=199).contains(&response.status) {
            return Some(response);
        }
        if self.finished {
            debug!(
                status = response.status,
                "reliable 1xx after the final response dropped"
            );
            return None;
        }
        if self.unacknowledged.is_some() {
            debug!(
                status = response.status,
                queued = self.queue.len() + 1,
                "reliable 1xx queued until the previous one is PRACKed (RFC 3262 §3)"
            );
            self.queue.push_back(response);
            return None;
        }
        self.start(now, response)
    }

    fn start(&mut self, now: Instant, mut response: Response) -> Option<Response> {
        let Some(rseq) = self.next_rseq else {
            debug!("RSeq exhausted: reliable 1xx dropped (RFC 3262 §3)");
            return None;
        };
        self.next_rseq = rseq.checked_add(1);
        response.headers.set(HeaderName::RSeq, rseq.to_string());
        if !requires_100rel(&response.headers) {
            response
                .headers
                .push(HeaderName::Require, OPTION_TAG_100REL);
        }
        self.unacknowledged = Some(Unacknowledged {
            cseq: response.headers.cseq().ok(),
            response: response.clone(),
            rseq,
            retransmit: now.checked_add(self.t1).map(|at| (at, self.t1)),
            give_up_at: now.checked_add(self.t1.saturating_mul(64)),
        });
        Some(response)
    }

    /// A PRACK arrived with `rack` (RFC 3262 §3). It matches when its `RSeq`, CSeq number
    /// and method equal those of the unacknowledged 1xx; retransmissions of that 1xx stop
    /// and the next queued one, if any, goes out now. Anything else is
    /// [`PrackMatch::NoMatch`]: answer 481.
    ///
    /// A PRACK that crossed our final response still matches the 1xx it acknowledges (the
    /// 1xx was unacknowledged), with no `next`.
    pub fn on_prack(&mut self, now: Instant, rack: &RAck) -> PrackMatch {
        let matches = self.unacknowledged.as_ref().is_some_and(|u| {
            u.rseq == rack.rseq
                && u.cseq
                    .as_ref()
                    .is_some_and(|c| c.seq == rack.cseq && c.method == rack.method)
        });
        if !matches {
            debug!(%rack, "PRACK matches no unacknowledged reliable 1xx: 481");
            return PrackMatch::NoMatch;
        }
        let Some(acknowledged) = self.unacknowledged.take() else {
            return PrackMatch::NoMatch;
        };
        let next = if self.finished {
            None
        } else {
            match self.queue.pop_front() {
                Some(queued) => {
                    let next = self.start(now, queued);
                    if next.is_none() {
                        self.queue.clear();
                    }
                    next
                }
                None => None,
            }
        };
        PrackMatch::Matched {
            acknowledged: acknowledged.response,
            next,
        }
    }

    /// The next retransmission or give-up deadline.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let u = self.unacknowledged.as_ref()?;
        match (u.retransmit.map(|(at, _)| at), u.give_up_at) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Fires the deadline that has come: a retransmission at T1, 3·T1, 7·T1, ... (the
    /// interval doubling each time, with no T2 cap, RFC 3262 §3), and
    /// [`ReliableAction::GiveUp`] once 64·T1 passed without a PRACK. After `GiveUp` nothing
    /// more fires, the queue is dropped and further 1xx are refused; reject the INVITE
    /// with a 5xx and call [`ReliableProvisionals::on_final`].
    pub fn handle_timeout(&mut self, now: Instant) -> Option<ReliableAction> {
        let u = self.unacknowledged.as_mut()?;
        if u.give_up_at.is_some_and(|t| now >= t) {
            u.give_up_at = None;
            u.retransmit = None;
            self.queue.clear();
            self.finished = true;
            debug!(
                rseq = u.rseq,
                "no PRACK within 64*T1: reject the INVITE (RFC 3262 §3)"
            );
            return Some(ReliableAction::GiveUp);
        }
        let (at, interval) = u.retransmit?;
        if now < at {
            return None;
        }
        let next = interval.saturating_mul(2);
        u.retransmit = now.checked_add(next).map(|at| (at, next));
        Some(ReliableAction::Retransmit(u.response.clone()))
    }

    /// The final response was sent: stop retransmitting; queued 1xx are dropped, later
    /// ones refused. A PRACK that crossed the final still matches (see
    /// [`ReliableProvisionals::on_prack`]).
    pub fn on_final(&mut self) {
        self.finished = true;
        self.queue.clear();
        if let Some(u) = self.unacknowledged.as_mut() {
            u.retransmit = None;
            u.give_up_at = None;
        }
    }

    /// nothing pending or queued: no 1xx waiting to be sent and none being retransmitted
    pub fn is_idle(&self) -> bool {
        self.queue.is_empty()
            && self
                .unacknowledged
                .as_ref()
                .is_none_or(|u| u.retransmit.is_none() && u.give_up_at.is_none())
    }

    /// The reliable 1xx not yet PRACKed, if any. RFC 3262 §3: a 2xx MUST NOT be sent while
    /// an unacknowledged reliable 1xx carried a session description; check its body.
    pub fn unacknowledged(&self) -> Option<&Response> {
        self.unacknowledged.as_ref().map(|u| &u.response)
    }
}

// ---------- UAC

/// What to do with a provisional response ([`ReliableReceiver::on_provisional`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Receipt {
    /// new and in order: send PRACK with this RAck
    Prack(RAck),
    /// already acknowledged (a retransmission): ignore, do not pass on
    Retransmission,
    /// out of order (RSeq > last+1): discard, the UAS retransmits (§4)
    OutOfOrder,
    /// not a reliable 1xx (no RSeq / no Require: 100rel)
    Unreliable,
}

/// UAC side, one per early dialog (RFC 3262 §4): which reliable 1xx to PRACK.
#[derive(Clone, Debug, Default)]
pub struct ReliableReceiver {
    /// The CSeq of the request being answered and the highest in-order `RSeq` seen.
    last: Option<(u32, Method, u32)>,
}

impl ReliableReceiver {
    /// A receiver that has seen nothing.
    pub fn new() -> Self {
        ReliableReceiver::default()
    }

    /// Classifies a response received in this early dialog (RFC 3262 §4):
    ///
    /// - Not 101..=199, no `Require: 100rel` (a 100 never counts), or no single valid
    ///   `RSeq` or `CSeq`: [`Receipt::Unreliable`]; process it as an ordinary 1xx.
    /// - The first reliable 1xx for a request (identified by CSeq number and method) sets
    ///   the sequence number to its `RSeq` and is PRACKed.
    /// - After that, `RSeq` one higher is PRACKed; equal or lower is a retransmission;
    ///   higher is out of order and MUST NOT be PRACKed nor processed.
    pub fn on_provisional(&mut self, response: &Response) -> Receipt {
        if !(101..=199).contains(&response.status) || !requires_100rel(&response.headers) {
            return Receipt::Unreliable;
        }
        let Some(rack) = RAck::for_response(response) else {
            debug!(
                status = response.status,
                "Require: 100rel without a valid RSeq/CSeq: treated as unreliable"
            );
            return Receipt::Unreliable;
        };
        match self.last.as_mut() {
            Some((cseq, method, last)) if *cseq == rack.cseq && *method == rack.method => {
                if last.checked_add(1) == Some(rack.rseq) {
                    *last = rack.rseq;
                    Receipt::Prack(rack)
                } else if rack.rseq <= *last {
                    Receipt::Retransmission
                } else {
                    debug!(
                        rseq = rack.rseq,
                        last = *last,
                        "reliable 1xx out of order: discarded (RFC 3262 §4)"
                    );
                    Receipt::OutOfOrder
                }
            }
            _ => {
                self.last = Some((rack.cseq, rack.method.clone(), rack.rseq));
                Receipt::Prack(rack)
            }
        }
    }
}

// ---------- helpers

fn is_lws(c: u8) -> bool {
    matches!(c, b' ' | b'\t' | b'\r' | b'\n')
}

fn trim_lws(b: &[u8]) -> &[u8] {
    let start = b.iter().position(|&c| !is_lws(c)).unwrap_or(b.len());
    let end = b.iter().rposition(|&c| !is_lws(c)).map_or(start, |e| e + 1);
    b.get(start..end).unwrap_or_default()
}

/// `1*DIGIT` below 2^32.
fn parse_u32(b: &[u8]) -> Option<u32> {
    if b.is_empty() {
        return None;
    }
    b.iter().try_fold(0u32, |n, &c| {
        if !c.is_ascii_digit() {
            return None;
        }
        n.checked_mul(10)?.checked_add(u32::from(c - b'0'))
    })
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
    use sip_message::{Bytes, Message, Request};

    const T1: Duration = Duration::from_millis(500);

    fn invite(extra: &str) -> Request {
        let text = format!(
            "INVITE sip:bob@192.0.2.2 SIP/2.0\r\n\
             Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK-1\r\n\
             Max-Forwards: 70\r\n\
             From: <sip:alice@192.0.2.1>;tag=a\r\n\
             To: <sip:bob@192.0.2.2>\r\n\
             Call-ID: rel-1@192.0.2.1\r\n\
             CSeq: 7 INVITE\r\n\
             {extra}\
             Content-Length: 0\r\n\r\n"
        );
        match Message::parse(Bytes::from(text)).unwrap() {
            Message::Request(r) => r,
            Message::Response(_) => panic!("not a request"),
        }
    }

    fn provisional(status: u16) -> Response {
        Response::from_request(&invite("Supported: 100rel\r\n"), status, Some("b"))
    }

    fn rseq_of(r: &Response) -> u32 {
        rseq(&r.headers).unwrap().unwrap()
    }

    fn rack(rseq: u32) -> RAck {
        RAck {
            rseq,
            cseq: 7,
            method: Method::Invite,
        }
    }

    /// A response as the UAC sees it: printed and parsed again.
    fn wire(r: &Response) -> Response {
        match Message::parse(r.to_bytes()).unwrap() {
            Message::Response(r) => r,
            Message::Request(_) => panic!("not a response"),
        }
    }

    // ---------- RAck / RSeq

    #[test]
    fn rack_parses_and_prints() {
        let r = RAck::parse(b"776656 1 INVITE").unwrap();
        assert_eq!(
            r,
            RAck {
                rseq: 776_656,
                cseq: 1,
                method: Method::Invite
            }
        );
        assert_eq!(r.to_string(), "776656 1 INVITE");
        assert_eq!(RAck::parse(r.to_string().as_bytes()).unwrap(), r);
        let r = RAck::parse(b" 4294967295\t2147483647 \r\n FOO-BAR ").unwrap();
        assert_eq!(r.rseq, u32::MAX);
        assert_eq!(r.cseq, 2_147_483_647);
        assert_eq!(r.method.as_str(), "FOO-BAR");
        assert_eq!(r.to_string(), "4294967295 2147483647 FOO-BAR");
    }

    #[test]
    fn rack_rejects_bad_input() {
        for bad in [
            &b""[..],
            b"   ",
            b"1",
            b"1 INVITE",
            b"1 2",
            b"a 1 INVITE",
            b"1 b INVITE",
            b"-1 1 INVITE",
            b"1 2 INVITE extra",
            b"4294967296 1 INVITE",
            b"1 4294967296 INVITE",
            b"1 2 INV@TE",
            b"12INVITE",
            b"1,2,INVITE",
        ] {
            assert_eq!(
                RAck::parse(bad),
                Err(ParseError::BadHeader {
                    name: HeaderName::RAck
                }),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn rseq_parses_and_rejects() {
        assert_eq!(parse_rseq(b" 988789 "), Ok(988_789));
        assert_eq!(parse_rseq(b"4294967295"), Ok(u32::MAX));
        for bad in [&b""[..], b"x", b"4294967296", b"1 2", b"+1"] {
            assert!(parse_rseq(bad).is_err());
        }
        let mut h = Headers::new();
        assert_eq!(rseq(&h), None);
        h.push(HeaderName::RSeq, "5");
        assert_eq!(rseq(&h), Some(Ok(5)));
        h.push(HeaderName::RSeq, "6");
        assert_eq!(
            rseq(&h),
            Some(Err(ParseError::MultipleValues(HeaderName::RSeq)))
        );
    }

    #[test]
    fn option_tag_checks() {
        let req = invite("Require: timer, 100REL\r\n");
        assert!(requires_100rel(&req.headers));
        assert!(!supports_100rel(&req.headers));
        let req = invite("k: replaces\r\nSupported: 100rel\r\n");
        assert!(supports_100rel(&req.headers));
        assert!(!requires_100rel(&req.headers));
        let req = invite("Supported: 100relx, timer\r\n");
        assert!(!supports_100rel(&req.headers));
    }

    // ---------- UAS

    #[test]
    fn send_stamps_rseq_and_require() {
        let t0 = Instant::now();
        let mut uas = ReliableProvisionals::new(T1, 1000);
        assert!(uas.is_idle());
        let sent = uas.send(t0, provisional(180)).unwrap();
        assert_eq!(rseq_of(&sent), 1000);
        assert!(requires_100rel(&sent.headers));
        assert_eq!(sent.headers.count(&HeaderName::Require), 1);
        assert!(!uas.is_idle());
        assert_eq!(uas.unacknowledged(), Some(&sent));
        // an existing Require: 100rel is not repeated; other tags stay
        let mut uas = ReliableProvisionals::new(T1, 1);
        let mut r = provisional(183);
        r.headers.push(HeaderName::Require, "timer, 100rel");
        let sent = uas.send(t0, r).unwrap();
        assert_eq!(sent.headers.count(&HeaderName::Require), 1);
        assert_eq!(rseq_of(&sent), 1);
    }

    #[test]
    fn hundred_and_finals_pass_through_untouched() {
        let t0 = Instant::now();
        let mut uas = ReliableProvisionals::new(T1, 10);
        for status in [100, 200, 486] {
            let r = provisional(status);
            assert_eq!(uas.send(t0, r.clone()), Some(r));
        }
        assert!(uas.is_idle());
        assert_eq!(uas.poll_timeout(), None);
        // the next reliable 1xx still gets the first RSeq
        assert_eq!(rseq_of(&uas.send(t0, provisional(180)).unwrap()), 10);
    }

    #[test]
    fn first_rseq_is_clamped_into_range() {
        let t0 = Instant::now();
        let mut uas = ReliableProvisionals::new(T1, 0);
        assert_eq!(rseq_of(&uas.send(t0, provisional(180)).unwrap()), 1);
        let mut uas = ReliableProvisionals::new(T1, u32::MAX);
        assert_eq!(
            rseq_of(&uas.send(t0, provisional(180)).unwrap()),
            (1 << 31) - 1
        );
    }

    #[test]
    fn retransmits_at_t1_doubling_then_gives_up_at_64_t1() {
        let t0 = Instant::now();
        let mut uas = ReliableProvisionals::new(T1, 1);
        let sent = uas.send(t0, provisional(180)).unwrap();
        let mut fired = Vec::new();
        while let Some(at) = uas.poll_timeout() {
            assert_eq!(uas.handle_timeout(at - Duration::from_millis(1)), None);
            match uas.handle_timeout(at).unwrap() {
                ReliableAction::Retransmit(r) => {
                    assert_eq!(r, sent, "the same response, same RSeq");
                    fired.push((at - t0, "retransmit"));
                }
                ReliableAction::GiveUp => fired.push((at - t0, "give up")),
            }
        }
        let expected: Vec<_> = [1u32, 3, 7, 15, 31, 63]
            .iter()
            .map(|&k| (T1 * k, "retransmit"))
            .chain([(T1 * 64, "give up")])
            .collect();
        assert_eq!(fired, expected);
        assert_eq!(uas.handle_timeout(t0 + T1 * 1000), None);
        assert!(uas.is_idle());
        // no reliable 1xx after giving up
        assert_eq!(uas.send(t0 + T1 * 65, provisional(183)), None);
    }

    #[test]
    fn a_zero_t1_does_not_spin() {
        let t0 = Instant::now();
        let mut uas = ReliableProvisionals::new(Duration::ZERO, 1);
        uas.send(t0, provisional(180)).unwrap();
        let mut n = 0;
        let mut now = t0;
        while let Some(at) = uas.poll_timeout() {
            now = now.max(at);
            uas.handle_timeout(now);
            n += 1;
            assert!(n < 20, "timer keeps firing");
        }
        assert_eq!(n, 7);
    }

    #[test]
    fn prack_stops_retransmission() {
        let t0 = Instant::now();
        let mut uas = ReliableProvisionals::new(T1, 50);
        let sent = uas.send(t0, provisional(180)).unwrap();
        assert!(matches!(
            uas.handle_timeout(t0 + T1),
            Some(ReliableAction::Retransmit(_))
        ));
        let m = uas.on_prack(t0 + T1 * 2, &rack(50));
        assert_eq!(
            m,
            PrackMatch::Matched {
                acknowledged: sent,
                next: None
            }
        );
        assert_eq!(uas.poll_timeout(), None);
        assert_eq!(uas.handle_timeout(t0 + T1 * 64), None);
        assert!(uas.is_idle());
        assert_eq!(uas.unacknowledged(), None);
        // the same PRACK again matches nothing
        assert_eq!(uas.on_prack(t0 + T1 * 3, &rack(50)), PrackMatch::NoMatch);
    }

    #[test]
    fn second_reliable_1xx_waits_for_the_prack() {
        let t0 = Instant::now();
        let mut uas = ReliableProvisionals::new(T1, 1);
        let first = uas.send(t0, provisional(180)).unwrap();
        assert_eq!(uas.send(t0, provisional(183)), None);
        assert_eq!(uas.send(t0, provisional(182)), None);
        assert_eq!(uas.unacknowledged(), Some(&first));
        // only the first is retransmitted meanwhile
        match uas.handle_timeout(t0 + T1) {
            Some(ReliableAction::Retransmit(r)) => assert_eq!(r.status, 180),
            other => panic!("{other:?}"),
        }
        let t_prack = t0 + T1 * 2;
        let PrackMatch::Matched { acknowledged, next } = uas.on_prack(t_prack, &rack(1)) else {
            panic!("no match")
        };
        assert_eq!(acknowledged, first);
        let second = next.unwrap();
        assert_eq!(second.status, 183);
        assert_eq!(rseq_of(&second), 2);
        assert!(requires_100rel(&second.headers));
        // its schedule starts at the PRACK
        assert_eq!(uas.poll_timeout(), Some(t_prack + T1));
        assert!(!uas.is_idle());
        let PrackMatch::Matched { next, .. } = uas.on_prack(t_prack, &rack(2)) else {
            panic!("no match")
        };
        let third = next.unwrap();
        assert_eq!((third.status, rseq_of(&third)), (182, 3));
        assert_eq!(
            uas.on_prack(t_prack, &rack(3)),
            PrackMatch::Matched {
                acknowledged: third,
                next: None
            }
        );
        assert!(uas.is_idle());
        // after everything is acknowledged, a new 1xx goes out at once
        let fourth = uas.send(t_prack, provisional(180)).unwrap();
        assert_eq!(rseq_of(&fourth), 4);
    }

    #[test]
    fn prack_that_does_not_match_gets_no_match() {
        let t0 = Instant::now();
        let mut uas = ReliableProvisionals::new(T1, 100);
        assert_eq!(
            uas.on_prack(t0, &rack(100)),
            PrackMatch::NoMatch,
            "nothing sent"
        );
        uas.send(t0, provisional(180)).unwrap();
        for wrong in [
            rack(99),
            rack(101),
            RAck {
                rseq: 100,
                cseq: 8,
                method: Method::Invite,
            },
            RAck {
                rseq: 100,
                cseq: 7,
                method: Method::Update,
            },
        ] {
            assert_eq!(uas.on_prack(t0, &wrong), PrackMatch::NoMatch, "{wrong}");
        }
        // still retransmitting, and the right PRACK still matches
        assert_eq!(uas.poll_timeout(), Some(t0 + T1));
        assert!(matches!(
            uas.on_prack(t0, &rack(100)),
            PrackMatch::Matched { .. }
        ));
    }

    #[test]
    fn on_final_stops_everything() {
        let t0 = Instant::now();
        let mut uas = ReliableProvisionals::new(T1, 1);
        let first = uas.send(t0, provisional(180)).unwrap();
        assert_eq!(uas.send(t0, provisional(183)), None);
        uas.on_final();
        assert_eq!(uas.poll_timeout(), None);
        assert_eq!(uas.handle_timeout(t0 + T1), None);
        assert_eq!(uas.handle_timeout(t0 + T1 * 64), None);
        assert!(uas.is_idle());
        assert_eq!(uas.send(t0 + T1, provisional(183)), None);
        // a PRACK that crossed the final is answered 200, and the queued 183 is gone
        assert_eq!(
            uas.on_prack(t0 + T1, &rack(1)),
            PrackMatch::Matched {
                acknowledged: first,
                next: None
            }
        );
        assert!(uas.is_idle());
        assert_eq!(uas.poll_timeout(), None);
    }

    // ---------- UAC

    #[test]
    fn receiver_pracks_in_order_and_drops_retransmissions() {
        let t0 = Instant::now();
        let mut uas = ReliableProvisionals::new(T1, 4_000_000);
        let mut uac = ReliableReceiver::new();
        let r180 = wire(&uas.send(t0, provisional(180)).unwrap());
        let Receipt::Prack(ack) = uac.on_provisional(&r180) else {
            panic!("not PRACKed")
        };
        assert_eq!(ack, rack(4_000_000));
        assert_eq!(ack.to_string(), "4000000 7 INVITE");
        // the UAS's retransmission before the PRACK arrives
        let Some(ReliableAction::Retransmit(again)) = uas.handle_timeout(t0 + T1) else {
            panic!("no retransmission")
        };
        assert_eq!(uac.on_provisional(&wire(&again)), Receipt::Retransmission);
        // the PRACK reaches the UAS, which sends its queued 183
        assert_eq!(uas.send(t0 + T1, provisional(183)), None);
        let PrackMatch::Matched { next, .. } = uas.on_prack(t0 + T1, &ack) else {
            panic!("no match")
        };
        let r183 = wire(&next.unwrap());
        assert_eq!(uac.on_provisional(&r183), Receipt::Prack(rack(4_000_001)));
        assert_eq!(uac.on_provisional(&r180), Receipt::Retransmission);
    }

    #[test]
    fn receiver_discards_out_of_order() {
        let mut uac = ReliableReceiver::new();
        let with_rseq = |n: u32| {
            let mut r = provisional(183);
            r.headers.push(HeaderName::Require, "100rel");
            r.headers.push(HeaderName::RSeq, n.to_string());
            r
        };
        assert_eq!(uac.on_provisional(&with_rseq(10)), Receipt::Prack(rack(10)));
        assert_eq!(uac.on_provisional(&with_rseq(12)), Receipt::OutOfOrder);
        // the gap is still open: 11 is next, then 12 (retransmitted by the UAS)
        assert_eq!(uac.on_provisional(&with_rseq(11)), Receipt::Prack(rack(11)));
        assert_eq!(uac.on_provisional(&with_rseq(12)), Receipt::Prack(rack(12)));
        assert_eq!(uac.on_provisional(&with_rseq(9)), Receipt::Retransmission);
        // a 1xx to a different request (another CSeq) starts its own sequence
        let mut other = with_rseq(500);
        other.headers.set(HeaderName::CSeq, "8 INVITE");
        assert_eq!(
            uac.on_provisional(&other),
            Receipt::Prack(RAck {
                rseq: 500,
                cseq: 8,
                method: Method::Invite
            })
        );
        // no wrap past 2^32-1
        let mut uac = ReliableReceiver::new();
        assert!(matches!(
            uac.on_provisional(&with_rseq(u32::MAX)),
            Receipt::Prack(_)
        ));
        assert_eq!(uac.on_provisional(&with_rseq(0)), Receipt::Retransmission);
    }

    #[test]
    fn receiver_recognises_unreliable_responses() {
        let mut uac = ReliableReceiver::new();
        let build = |status: u16, extra: &[(HeaderName, &'static str)]| {
            let mut r = provisional(status);
            for (name, value) in extra {
                r.headers.push(name.clone(), *value);
            }
            r
        };
        let cases = [
            // no Require: 100rel
            build(180, &[(HeaderName::RSeq, "1")]),
            build(
                180,
                &[(HeaderName::Supported, "100rel"), (HeaderName::RSeq, "1")],
            ),
            // 100 is never reliable
            build(
                100,
                &[(HeaderName::Require, "100rel"), (HeaderName::RSeq, "1")],
            ),
            // no RSeq, a bad one, two of them
            build(180, &[(HeaderName::Require, "100rel")]),
            build(
                180,
                &[(HeaderName::Require, "100rel"), (HeaderName::RSeq, "one")],
            ),
            build(
                180,
                &[
                    (HeaderName::Require, "100rel"),
                    (HeaderName::RSeq, "1"),
                    (HeaderName::RSeq, "2"),
                ],
            ),
            // a final response
            build(
                200,
                &[(HeaderName::Require, "100rel"), (HeaderName::RSeq, "1")],
            ),
        ];
        for r in &cases {
            assert_eq!(uac.on_provisional(r), Receipt::Unreliable, "{r:?}");
        }
        // nothing above changed the sequence: the first reliable one is PRACKed
        let r = build(
            180,
            &[(HeaderName::Require, "100rel"), (HeaderName::RSeq, "77")],
        );
        assert_eq!(uac.on_provisional(&r), Receipt::Prack(rack(77)));
        // a reliable 1xx without a CSeq cannot be acknowledged
        let mut r = build(
            180,
            &[(HeaderName::Require, "100rel"), (HeaderName::RSeq, "78")],
        );
        r.headers.remove(&HeaderName::CSeq);
        assert_eq!(uac.on_provisional(&r), Receipt::Unreliable);
    }

    proptest! {
        #[test]
        fn parsers_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = RAck::parse(&bytes);
            let _ = parse_rseq(&bytes);
        }

        #[test]
        fn rack_round_trips(rseq in any::<u32>(), cseq in any::<u32>(), m in "[A-Za-z][A-Za-z0-9.!%*_+`'~-]{0,12}") {
            let r = RAck { rseq, cseq, method: Method::parse(m.as_bytes()).unwrap() };
            prop_assert_eq!(RAck::parse(r.to_string().as_bytes()).unwrap(), r);
        }

        #[test]
        fn rack_near_misses_never_panic(s in "[0-9 \tA-Z@,\r\n-]{0,30}") {
            if let Ok(r) = RAck::parse(s.as_bytes()) {
                prop_assert_eq!(RAck::parse(r.to_string().as_bytes()).unwrap(), r);
            }
        }

        #[test]
        fn receiver_never_panics_on_arbitrary_rseq(values in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..16), 0..8)) {
            let mut uac = ReliableReceiver::new();
            for v in values {
                let mut r = provisional(180);
                r.headers.push(HeaderName::Require, "100rel");
                r.headers.push(HeaderName::RSeq, v.clone());
                let receipt = uac.on_provisional(&r);
                if parse_rseq(&v).is_err() {
                    prop_assert_eq!(receipt, Receipt::Unreliable);
                }
            }
        }

        #[test]
        fn schedule_is_t1_doubling_until_64_t1(t1_ms in 1u64..5_000) {
            let t1 = Duration::from_millis(t1_ms);
            let t0 = Instant::now();
            let mut uas = ReliableProvisionals::new(t1, 1);
            uas.send(t0, provisional(180)).unwrap();
            let mut retransmits = Vec::new();
            let mut gave_up = None;
            while let Some(at) = uas.poll_timeout() {
                match uas.handle_timeout(at) {
                    Some(ReliableAction::Retransmit(_)) => retransmits.push(at - t0),
                    Some(ReliableAction::GiveUp) => gave_up = Some(at - t0),
                    None => prop_assert!(false, "a deadline fired nothing"),
                }
            }
            let expected: Vec<_> = (1..=6u32).map(|n| t1 * ((1 << n) - 1)).collect();
            prop_assert_eq!(retransmits, expected);
            prop_assert_eq!(gave_up, Some(t1 * 64));
        }
    }
}
