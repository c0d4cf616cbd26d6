//! Routing rules: what an incoming INVITE outside a dialog is turned into, sans-IO.
//!
//! A [`RouteTable`] is an ordered list of [`Rule`]s. Each rule has conditions
//! ([`Match`]: regular expressions on the Request-URI user and host, the From header and
//! any header, and the trunk the request came from) and an [`Action`]: bridge to one or
//! more targets (URIs or trunks, rung in sequence or in parallel, each with its own ring
//! time, headers and number rewriting), forward (302), decline with a status, park,
//! answer with the echo demo, or hand the call to an application webhook.
//! [`RouteTable::route`] picks the first rule whose every condition holds and returns
//! its action with the targets' templates expanded ([`Routed`]).
//!
//! Nothing here does I/O or reads the clock; the engine asks the table with the facts
//! of the request ([`RouteFacts`]) and carries the answer out.
//!
//! # Templates
//!
//! A target URI, and a forward target, is a template: `${user}` is the Request-URI user
//! (after the target's [`Rewrite`], if it has one), `${0}`, `${1}`... are the capture
//! groups of the rule's `user` regex (on the user as received, before rewriting), and
//! `$$` is a `$`. Any other `$` is refused when the rule is built, so a typo such as
//! `$user` is caught at start, not at the first call.
//!
//! The values put into a template come from the network, so they are escaped: every
//! byte of their UTF-8 other than an ASCII letter or digit or one of `-_.!~*'()+` is
//! written `%HH` (RFC 3261 §19.1.2, §25.1 `escaped`). That set is valid in a SIP URI's
//! user part, in its parameters and its headers, and in a tel URI's number, so a user
//! holding CR, LF, spaces, `<`, `>`, `"`, `@`, `:`, `;`, `?`, `%` or anything else
//! cannot break out of the place its template puts it; `;` and `?` are escaped too,
//! so a user cannot add URI parameters or headers. The user is expected unescaped
//! (`SipUri::user_unescaped`), matched as text and escaped again on the way out.
//!
//! After expansion the result must still be a `sip:`, `sips:` or `tel:` URI that
//! `sip-message` parses (or, for a target sent through a trunk, a bare user part such
//! as `+15551234567`). A rule whose action does not expand to that (say `${user}` in
//! `sip:${user}@host` when the Request-URI has no user) does not apply, and the next
//! rule is tried.

use crate::BridgeMode;
use crate::options::{SignalingHeader, to_wire};
use sip_message::{HeaderName, Uri};
use std::time::Duration;

pub use regex::{Regex, RegexBuilder};

/// Why a rule was refused when it was built. Variants name the place: `target` is the
/// index of the bridge target (`None`: the forward target).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RouteError {
    #[error("invalid regular expression `{pattern}`: {problem}")]
    Regex { pattern: String, problem: String },
    #[error("{what} must not be empty")]
    Empty { what: &'static str },
    #[error("header `{name}` to match: the name is not a token (RFC 3261 §25.1)")]
    MatchHeader { name: String },
    #[error("template `{template}`: {problem}")]
    Template {
        target: Option<usize>,
        template: String,
        problem: String,
    },
    #[error("header `{name}` of target {target}: {problem}")]
    Header {
        target: usize,
        name: String,
        problem: String,
    },
    /// `target`: `None` from [`Rewrite::new`], before the rewrite is in a target.
    #[error("rewrite replacement `{replacement}`: {problem}")]
    Rewrite {
        target: Option<usize>,
        replacement: String,
        problem: String,
    },
    #[error("target {target}: a ring time must be more than zero")]
    ZeroTimeout { target: usize },
    #[error("a bridge needs at least one target")]
    NoTargets,
    #[error("decline status {status}: must be 400-699 (RFC 3261 §21.4-§21.6)")]
    DeclineStatus { status: u16 },
    #[error("reason phrase `{reason}`: control characters are not allowed (RFC 3261 §25.1)")]
    ReasonPhrase { reason: String },
    /// A bridge's `pass_headers` entry that cannot be passed (the same refusal as
    /// [`CallError::HeaderNotPassable`](crate::CallError::HeaderNotPassable)).
    #[error("header `{name}` cannot be passed across a bridge: {problem}")]
    PassHeader { name: String, problem: String },
}

/// Compiles a regular expression for a [`Match`] or a [`Rewrite`], with its error on one
/// line. The `regex` crate matches in linear time, so no input can make a rule slow.
pub fn regex(pattern: &str) -> Result<Regex, RouteError> {
    RegexBuilder::new(pattern)
        .build()
        .map_err(|e| regex_error(pattern, &e))
}

/// Like [`regex`] but case-insensitive: host names compare without case
/// (RFC 3261 §19.1.4).
pub fn host_regex(pattern: &str) -> Result<Regex, RouteError> {
    RegexBuilder::new(pattern)
        .case_insensitive(true)
        .build()
        .map_err(|e| regex_error(pattern, &e))
}

fn regex_error(pattern: &str, e: &regex::Error) -> RouteError {
    let problem = match e {
        // "regex parse error:\n    (bob\n    ^\nerror: unclosed group": keep the last line.
        regex::Error::Syntax(text) => text
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or(text)
            .trim()
            .trim_start_matches("error: ")
            .to_owned(),
        other => other.to_string(),
    };
    RouteError::Regex {
        pattern: pattern.to_owned(),
        problem,
    }
}

/// The facts of an incoming request that rules match on.
#[derive(Debug, Clone, Copy)]
pub struct RouteFacts<'a> {
    /// The whole Request-URI text.
    pub request_uri: &'a str,
    /// The Request-URI user part, unescaped (RFC 3261 §19.1.2); `None`: no user part.
    pub user: Option<&'a str>,
    /// The Request-URI host, without port.
    pub host: &'a str,
    /// The From header value as received.
    pub from: &'a str,
    /// Every header: name as received (full or compact form), value.
    pub headers: &'a [(String, String)],
    /// The configured trunk the request came from, if any.
    pub source_trunk: Option<&'a str>,
}

/// The conditions of a rule; all must hold. Empty: every request.
#[derive(Debug, Clone, Default)]
pub struct Match {
    /// On the Request-URI user; a Request-URI without user does not match. Its capture
    /// groups are `${1}`... in the targets' templates.
    pub user: Option<Regex>,
    /// On the Request-URI host (see [`host_regex`]).
    pub host: Option<Regex>,
    /// On the From header value as received.
    pub from: Option<Regex>,
    /// Header name → regex on its value. The name compares case-insensitively and
    /// compact forms are the same header (`f` is From, RFC 3261 §7.3.3); the condition
    /// holds when any occurrence of the header matches, and fails when it is absent.
    pub headers: Vec<(String, Regex)>,
    /// The name of the trunk the request came from.
    pub source_trunk: Option<String>,
}

impl PartialEq for Match {
    /// Regexes compare by their pattern text.
    fn eq(&self, other: &Match) -> bool {
        fn same(a: Option<&Regex>, b: Option<&Regex>) -> bool {
            a.map(Regex::as_str) == b.map(Regex::as_str)
        }
        same(self.user.as_ref(), other.user.as_ref())
            && same(self.host.as_ref(), other.host.as_ref())
            && same(self.from.as_ref(), other.from.as_ref())
            && self.headers.len() == other.headers.len()
            && self
                .headers
                .iter()
                .zip(&other.headers)
                .all(|((n1, r1), (n2, r2))| n1 == n2 && r1.as_str() == r2.as_str())
            && self.source_trunk == other.source_trunk
    }
}

/// What a matching rule does.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Action {
    /// Bridge the caller to the targets (a `BackToBackCall`).
    Bridge {
        targets: Vec<Target>,
        ring: RingStrategy,
        mode: BridgeMode,
        /// Headers passed across the bridge by name, both ways
        /// ([`BridgeOptions::pass_headers`](crate::BridgeOptions::pass_headers)); a name
        /// the B2BUA writes per leg is refused by [`Rule::new`].
        pass_headers: Vec<String>,
    },
    /// Answer 302 Moved Temporarily with this Contact (RFC 3261 §21.3.3); a template.
    Forward { target: String },
    /// Decline with a 4xx, 5xx or 6xx status.
    Decline { status: u16, reason: Option<String> },
    /// Park the caller in the next free orbit.
    Park,
    /// Answer with the echo demo application.
    Echo,
    /// Hand the call to an application webhook.
    Webhook { application: String },
}

/// How several targets are rung: the bridge's own [`RingStrategy`](crate::RingStrategy).
pub use crate::RingStrategy;

/// A bridge target.
#[derive(Debug, Clone, PartialEq)]
pub struct Target {
    /// A template (see the module docs), e.g. `sip:${user}@10.0.0.5:5070`. Through a
    /// trunk it may be a bare user part, e.g. `${user}`.
    pub uri: String,
    /// Send through this configured trunk instead of to the URI's host.
    pub trunk: Option<String>,
    /// Ring time: sequential, then the next target; parallel, this one is cancelled.
    pub timeout: Option<Duration>,
    /// Extra headers for this target's INVITE.
    pub headers: Vec<(String, String)>,
    /// Number rewriting applied to the user before expansion.
    pub rewrite: Option<Rewrite>,
}

impl Target {
    /// A target to `uri` with no trunk, timeout, headers or rewriting.
    pub fn new(uri: impl Into<String>) -> Target {
        Target {
            uri: uri.into(),
            trunk: None,
            timeout: None,
            headers: Vec::new(),
            rewrite: None,
        }
    }
}

/// A regex replace on the user (`Regex::replace`: the first match), e.g.
/// `^\+1(\d{10})$` → `$1`. Replacement syntax is the `regex` crate's: `$1`, `${1}`,
/// `$name`, `${name}`, `$$`.
#[derive(Debug, Clone)]
pub struct Rewrite {
    pub pattern: Regex,
    pub replacement: String,
}

impl PartialEq for Rewrite {
    fn eq(&self, other: &Rewrite) -> bool {
        self.pattern.as_str() == other.pattern.as_str() && self.replacement == other.replacement
    }
}

impl Rewrite {
    /// Checks that every group the replacement names exists in the pattern (`$1a` names
    /// a group `1a`, which is the usual slip for `${1}a`). The error's `target` is
    /// `None`; [`Rule::new`] checks again and names the target.
    pub fn new(pattern: Regex, replacement: impl Into<String>) -> Result<Rewrite, RouteError> {
        let rewrite = Rewrite {
            pattern,
            replacement: replacement.into(),
        };
        rewrite.check().map_err(|problem| RouteError::Rewrite {
            target: None,
            replacement: rewrite.replacement.clone(),
            problem,
        })?;
        Ok(rewrite)
    }

    fn check(&self) -> Result<(), String> {
        let r = self.replacement.as_bytes();
        let mut i = 0;
        while let Some(&c) = r.get(i) {
            i += 1;
            if c != b'$' {
                continue;
            }
            // The regex crate's rules (regex::Captures::expand): `$$`, `${...}`, or the
            // longest run of [_0-9A-Za-z]; anything else leaves the `$` as it is.
            let (name, braced) = match r.get(i) {
                Some(b'$') => {
                    i += 1;
                    continue;
                }
                Some(b'{') => match r
                    .get(i + 1..)
                    .and_then(|t| t.iter().position(|&b| b == b'}'))
                {
                    Some(len) => {
                        let name = r.get(i + 1..i + 1 + len).unwrap_or_default();
                        i += len + 2;
                        (name, true)
                    }
                    None => continue,
                },
                _ => {
                    let len = r
                        .get(i..)
                        .unwrap_or_default()
                        .iter()
                        .take_while(|b| b.is_ascii_alphanumeric() || **b == b'_')
                        .count();
                    let name = r.get(i..i + len).unwrap_or_default();
                    i += len;
                    (name, false)
                }
            };
            if name.is_empty() {
                continue;
            }
            let name = String::from_utf8_lossy(name);
            let exists = match name.parse::<usize>() {
                Ok(index) => index < self.pattern.captures_len(),
                Err(_) => self.pattern.capture_names().flatten().any(|n| n == name),
            };
            if !exists {
                let hint = if !braced && name.starts_with(|c: char| c.is_ascii_digit()) {
                    let digits: String = name.chars().take_while(char::is_ascii_digit).collect();
                    format!(" (write ${{{digits}}} when a letter or digit follows the group)")
                } else {
                    String::new()
                };
                return Err(format!("the pattern has no group `{name}`{hint}"));
            }
        }
        Ok(())
    }
}

/// A routing rule: a name (for logs and [`Routed::rule`]), conditions and an action.
/// Built by [`Rule::new`], which checks it, so a [`RouteTable`] holds only good rules.
#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    name: String,
    when: Match,
    action: Action,
    /// `when.headers`' names, parsed once.
    header_names: Vec<HeaderName>,
}

impl Rule {
    /// Checks the rule: a name; header names to match are tokens; a bridge has targets;
    /// templates use only `${user}`, the user regex's groups and `$$`, and expand to a
    /// URI (module docs); target headers are tokens without CR, LF or NUL and not ones
    /// the stack writes (Via, From, To, Call-ID, CSeq, Contact...); ring times are not
    /// zero; rewrites name existing groups; headers to pass across a bridge are tokens
    /// the B2BUA does not write per leg (Via, Call-ID, Contact, From, To...); a decline
    /// status is 400-699 and its reason has no control characters; a webhook names its
    /// application.
    pub fn new(name: impl Into<String>, when: Match, action: Action) -> Result<Rule, RouteError> {
        let name = name.into();
        if name.trim().is_empty() {
            return Err(RouteError::Empty {
                what: "a rule name",
            });
        }
        let mut header_names = Vec::with_capacity(when.headers.len());
        for (header, _) in &when.headers {
            if !is_token(header) {
                return Err(RouteError::MatchHeader {
                    name: header.clone(),
                });
            }
            header_names.push(HeaderName::parse(header.trim().as_bytes()));
        }
        if when
            .source_trunk
            .as_deref()
            .is_some_and(|t| t.trim().is_empty())
        {
            return Err(RouteError::Empty {
                what: "a source trunk name",
            });
        }
        let groups = when.user.as_ref().map_or(0, Regex::captures_len);
        match &action {
            Action::Bridge {
                targets,
                pass_headers,
                ..
            } => {
                if targets.is_empty() {
                    return Err(RouteError::NoTargets);
                }
                for (index, target) in targets.iter().enumerate() {
                    check_target(index, target, groups)?;
                }
                for name in pass_headers {
                    let problem = match crate::engine::unpassable(name) {
                        Some(reason) => reason.to_owned(),
                        None if !is_token(name) => {
                            "the name is not a token (RFC 3261 §25.1)".to_owned()
                        }
                        None => continue,
                    };
                    return Err(RouteError::PassHeader {
                        name: name.clone(),
                        problem,
                    });
                }
            }
            Action::Forward { target } => {
                check_template(None, target, groups, false)?;
            }
            Action::Decline { status, reason } => {
                if !(400..=699).contains(status) {
                    return Err(RouteError::DeclineStatus { status: *status });
                }
                if let Some(reason) = reason
                    && reason.chars().any(|c| c.is_control() && c != '\t')
                {
                    return Err(RouteError::ReasonPhrase {
                        reason: reason.clone(),
                    });
                }
            }
            Action::Webhook { application } => {
                if application.trim().is_empty() {
                    return Err(RouteError::Empty {
                        what: "a webhook application",
                    });
                }
            }
            Action::Park | Action::Echo => {}
        }
        Ok(Rule {
            name,
            when,
            action,
            header_names,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn when(&self) -> &Match {
        &self.when
    }

    pub fn action(&self) -> &Action {
        &self.action
    }

    /// Whether every condition holds.
    fn matches(&self, facts: &RouteFacts<'_>) -> bool {
        let when = &self.when;
        if let Some(trunk) = &when.source_trunk
            && facts.source_trunk != Some(trunk.as_str())
        {
            return false;
        }
        if let Some(user) = &when.user
            && !facts.user.is_some_and(|u| user.is_match(u))
        {
            return false;
        }
        if let Some(host) = &when.host
            && !host.is_match(facts.host)
        {
            return false;
        }
        if let Some(from) = &when.from
            && !from.is_match(facts.from)
        {
            return false;
        }
        when.headers
            .iter()
            .zip(&self.header_names)
            .all(|((_, regex), wanted)| {
                facts.headers.iter().any(|(name, value)| {
                    HeaderName::parse(name.trim().as_bytes()) == *wanted && regex.is_match(value)
                })
            })
    }

    /// The action with its templates expanded; `None` when one does not expand to a URI.
    fn expand(&self, facts: &RouteFacts<'_>) -> Option<RoutedAction> {
        let user = facts.user.unwrap_or_default();
        let captures = match (&self.when.user, facts.user) {
            (Some(regex), Some(user)) => regex.captures(user),
            _ => None,
        };
        let group = |n: usize| {
            captures
                .as_ref()
                .and_then(|c| c.get(n))
                .map_or("", |m| m.as_str())
        };
        Some(match &self.action {
            Action::Bridge {
                targets,
                ring,
                mode,
                pass_headers,
            } => {
                let mut routed = Vec::with_capacity(targets.len());
                for target in targets {
                    let rewritten = match &target.rewrite {
                        Some(r) => r.pattern.replace(user, r.replacement.as_str()),
                        None => user.into(),
                    };
                    let uri = expand(&target.uri, &rewritten, &group)?;
                    if !expands_well(&uri, target.trunk.is_some()) {
                        return None;
                    }
                    routed.push(RoutedTarget {
                        uri,
                        trunk: target.trunk.clone(),
                        timeout: target.timeout,
                        headers: target.headers.clone(),
                    });
                }
                RoutedAction::Bridge {
                    targets: routed,
                    ring: *ring,
                    mode: *mode,
                    pass_headers: pass_headers.clone(),
                }
            }
            Action::Forward { target } => {
                let target = expand(target, user, &group)?;
                if !expands_well(&target, false) {
                    return None;
                }
                RoutedAction::Forward { target }
            }
            Action::Decline { status, reason } => RoutedAction::Decline {
                status: *status,
                reason: reason.clone(),
            },
            Action::Park => RoutedAction::Park,
            Action::Echo => RoutedAction::Echo,
            Action::Webhook { application } => RoutedAction::Webhook {
                application: application.clone(),
            },
        })
    }
}

/// The rules, in order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RouteTable {
    rules: Vec<Rule>,
}

impl RouteTable {
    pub fn new(rules: Vec<Rule>) -> RouteTable {
        RouteTable { rules }
    }

    /// Whether a rule matches on headers ([`Match::headers`]): only then does
    /// [`RouteFacts::headers`] need to hold them.
    pub fn matches_headers(&self) -> bool {
        self.rules.iter().any(|r| !r.when.headers.is_empty())
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// The first rule whose every condition matches, with its action's templates
    /// expanded. A rule whose templates do not expand to a URI for these facts is
    /// skipped (module docs). `None`: no rule applies.
    pub fn route(&self, facts: &RouteFacts<'_>) -> Option<Routed> {
        self.rules.iter().find_map(|rule| {
            if !rule.matches(facts) {
                return None;
            }
            match rule.expand(facts) {
                Some(action) => Some(Routed {
                    rule: rule.name.clone(),
                    action,
                }),
                None => {
                    tracing::debug!(
                        rule = %rule.name,
                        request_uri = facts.request_uri,
                        "route matches but its target does not expand to a URI; next rule"
                    );
                    None
                }
            }
        })
    }
}

/// The outcome of [`RouteTable::route`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Routed {
    /// The name of the rule that matched.
    pub rule: String,
    pub action: RoutedAction,
}

/// An [`Action`] with its templates expanded.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum RoutedAction {
    Bridge {
        targets: Vec<RoutedTarget>,
        ring: RingStrategy,
        mode: BridgeMode,
        /// As the rule has them (checked when it was built).
        pass_headers: Vec<String>,
    },
    Forward {
        target: String,
    },
    Decline {
        status: u16,
        reason: Option<String>,
    },
    Park,
    Echo,
    Webhook {
        application: String,
    },
}

/// A bridge target, expanded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoutedTarget {
    /// A `sip:`/`sips:`/`tel:` URI that `sip_message::Uri::parse` accepts; through a
    /// trunk, that or a bare user part (escaped, non-empty).
    pub uri: String,
    pub trunk: Option<String>,
    pub timeout: Option<Duration>,
    pub headers: Vec<(String, String)>,
}

/// A template, parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Piece<'a> {
    Literal(&'a str),
    User,
    Group(usize),
}

fn parse_template(template: &str) -> Result<Vec<Piece<'_>>, String> {
    let mut pieces = Vec::new();
    let mut rest = template;
    while let Some(at) = rest.find('$') {
        let (literal, tail) = rest.split_at(at);
        if !literal.is_empty() {
            pieces.push(Piece::Literal(literal));
        }
        let tail = tail.get(1..).unwrap_or_default();
        if let Some(after) = tail.strip_prefix('$') {
            pieces.push(Piece::Literal("$"));
            rest = after;
            continue;
        }
        let Some(body) = tail.strip_prefix('{') else {
            return Err("`$` starts `${user}` or `${N}`; write `$$` for a `$`".into());
        };
        let Some(end) = body.find('}') else {
            return Err("`${` is not closed by `}`".into());
        };
        let (name, after) = body.split_at(end);
        pieces.push(match name {
            "user" => Piece::User,
            digits if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) => {
                Piece::Group(
                    digits
                        .parse()
                        .map_err(|_| format!("group `{digits}` is too large"))?,
                )
            }
            other => {
                return Err(format!(
                    "unknown variable `${{{other}}}` (known: `${{user}}`, `${{0}}`, `${{1}}`...)"
                ));
            }
        });
        rest = after.get(1..).unwrap_or_default();
    }
    if !rest.is_empty() {
        pieces.push(Piece::Literal(rest));
    }
    Ok(pieces)
}

/// Expands a template; `None` only for a template that does not parse (checked when
/// the rule was built).
fn expand<'g>(template: &str, user: &str, group: &dyn Fn(usize) -> &'g str) -> Option<String> {
    let pieces = parse_template(template).ok()?;
    let mut out = String::with_capacity(template.len() + user.len());
    for piece in pieces {
        match piece {
            Piece::Literal(text) => out.push_str(text),
            Piece::User => escape_into(&mut out, user),
            Piece::Group(n) => escape_into(&mut out, group(n)),
        }
    }
    Some(out)
}

/// Writes `value` with every byte but `A-Z a-z 0-9 - _ . ! ~ * ' ( ) +` as `%HH`
/// (RFC 3261 §25.1: `unreserved` and `+`, valid in a user part, a parameter, a URI
/// header and a tel number alike).
fn escape_into(out: &mut String, value: &str) {
    use std::fmt::Write;
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.!~*'()+".contains(&b) {
            out.push(char::from(b));
        } else {
            // Writing to a String cannot fail.
            let _ = write!(out, "%{b:02X}");
        }
    }
}

/// A `sip:`, `sips:` or `tel:` URI; through a trunk also a bare user part.
fn expands_well(text: &str, through_trunk: bool) -> bool {
    matches!(Uri::parse(text.as_bytes()), Ok(Uri::Sip(_) | Uri::Tel(_)))
        || (through_trunk && is_user_part(text))
}

/// RFC 3261 §25.1 `user`: `unreserved` / `escaped` / `user-unreserved`, at least one.
fn is_user_part(text: &str) -> bool {
    let b = text.as_bytes();
    if b.is_empty() {
        return false;
    }
    let mut i = 0;
    while let Some(&c) = b.get(i) {
        if c == b'%' {
            let hex = |j: usize| b.get(j).is_some_and(u8::is_ascii_hexdigit);
            if !(hex(i + 1) && hex(i + 2)) {
                return false;
            }
            i += 3;
            continue;
        }
        if !(c.is_ascii_alphanumeric() || b"-_.!~*'()&=+$,;?/".contains(&c)) {
            return false;
        }
        i += 1;
    }
    true
}

fn is_token(name: &str) -> bool {
    let name = name.trim();
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-.!%*_+`'~".contains(&b))
}

fn check_template(
    target: Option<usize>,
    template: &str,
    groups: usize,
    through_trunk: bool,
) -> Result<(), RouteError> {
    let error = |problem: String| RouteError::Template {
        target,
        template: template.to_owned(),
        problem,
    };
    let pieces = parse_template(template).map_err(error)?;
    for piece in &pieces {
        if let Piece::Group(n) = piece
            && *n >= groups
        {
            return Err(error(if groups == 0 {
                format!("`${{{n}}}` needs a `user` regex to match with groups")
            } else {
                format!(
                    "`${{{n}}}`: the user regex has groups 0 to {}",
                    groups.saturating_sub(1)
                )
            }));
        }
    }
    // With every variable standing for a plain number, the template must be a URI.
    let sample = expand(template, "1", &|_| "1").unwrap_or_default();
    if !expands_well(&sample, through_trunk) {
        return Err(error(if through_trunk {
            "not a sip:, sips: or tel: URI, nor a user part (e.g. `${user}`)".into()
        } else {
            "not a sip:, sips: or tel: URI (e.g. `sip:${user}@192.0.2.5:5060`)".into()
        }));
    }
    Ok(())
}

fn check_target(index: usize, target: &Target, groups: usize) -> Result<(), RouteError> {
    check_template(Some(index), &target.uri, groups, target.trunk.is_some())?;
    if target.trunk.as_deref().is_some_and(|t| t.trim().is_empty()) {
        return Err(RouteError::Empty {
            what: "a target's trunk name",
        });
    }
    if target.timeout == Some(Duration::ZERO) {
        return Err(RouteError::ZeroTimeout { target: index });
    }
    for (name, value) in &target.headers {
        let header = [SignalingHeader::new(name.as_str(), value.as_str())];
        if let Err(e) = to_wire(&header) {
            let problem = match e {
                crate::CallError::InvalidHeader { problem, .. } => problem.to_owned(),
                crate::CallError::ForbiddenHeader { .. } => {
                    "written by the stack, it cannot be set".to_owned()
                }
                other => other.to_string(),
            };
            return Err(RouteError::Header {
                target: index,
                name: name.clone(),
                problem,
            });
        }
    }
    if let Some(rewrite) = &target.rewrite {
        rewrite.check().map_err(|problem| RouteError::Rewrite {
            target: Some(index),
            replacement: rewrite.replacement.clone(),
            problem,
        })?;
    }
    Ok(())
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
    use proptest::prelude::*;

    fn facts<'a>(user: Option<&'a str>, headers: &'a [(String, String)]) -> RouteFacts<'a> {
        RouteFacts {
            request_uri: "sip:x@tandem.example",
            user,
            host: "tandem.example",
            from: "\"Alice\" <sip:alice@example.com>;tag=1",
            headers,
            source_trunk: None,
        }
    }

    fn bridge(uri: &str) -> Action {
        Action::Bridge {
            targets: vec![Target::new(uri)],
            ring: RingStrategy::Sequential,
            mode: BridgeMode::SignalingOnly,
            pass_headers: Vec::new(),
        }
    }

    fn user_rule(name: &str, user: &str, action: Action) -> Rule {
        Rule::new(
            name,
            Match {
                user: Some(regex(user).unwrap()),
                ..Match::default()
            },
            action,
        )
        .unwrap()
    }

    fn routed_uris(routed: &Routed) -> Vec<&str> {
        match &routed.action {
            RoutedAction::Bridge { targets, .. } => {
                targets.iter().map(|t| t.uri.as_str()).collect()
            }
            other => panic!("not a bridge: {other:?}"),
        }
    }

    #[test]
    fn user_regex_matches_and_expands_user() {
        let table = RouteTable::new(vec![user_rule(
            "to-bob",
            "^bob$",
            bridge("sip:${user}@127.0.0.1:5070"),
        )]);
        let routed = table.route(&facts(Some("bob"), &[])).unwrap();
        assert_eq!(routed.rule, "to-bob");
        assert_eq!(routed_uris(&routed), ["sip:bob@127.0.0.1:5070"]);
        assert_eq!(table.route(&facts(Some("bobby"), &[])), None);
        assert_eq!(table.route(&facts(None, &[])), None, "no user, no match");
    }

    #[test]
    fn host_regex_is_case_insensitive() {
        let rule = Rule::new(
            "h",
            Match {
                host: Some(host_regex(r"^tandem\.example$").unwrap()),
                ..Match::default()
            },
            Action::Echo,
        )
        .unwrap();
        let table = RouteTable::new(vec![rule]);
        let mut f = facts(Some("x"), &[]);
        f.host = "TANDEM.Example";
        assert_eq!(table.route(&f).unwrap().action, RoutedAction::Echo);
        f.host = "other.example";
        assert_eq!(table.route(&f), None);
        // The plain constructor keeps case.
        assert!(!regex("^a$").unwrap().is_match("A"));
    }

    #[test]
    fn from_regex() {
        let rule = Rule::new(
            "from-alice",
            Match {
                from: Some(regex("sip:alice@").unwrap()),
                ..Match::default()
            },
            Action::Park,
        )
        .unwrap();
        let table = RouteTable::new(vec![rule]);
        assert_eq!(
            table.route(&facts(Some("x"), &[])).unwrap().action,
            RoutedAction::Park
        );
        let mut f = facts(Some("x"), &[]);
        f.from = "<sip:mallory@example.com>";
        assert_eq!(table.route(&f), None);
    }

    #[test]
    fn header_match_is_case_insensitive_and_knows_compact_forms() {
        let rule = Rule::new(
            "tenant",
            Match {
                headers: vec![
                    ("x-tenant".into(), regex("^acme$").unwrap()),
                    ("Subject".into(), regex("urgent").unwrap()),
                ],
                ..Match::default()
            },
            Action::Webhook {
                application: "acme".into(),
            },
        )
        .unwrap();
        let table = RouteTable::new(vec![rule]);
        let h = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
            pairs
                .iter()
                .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
                .collect()
        };
        // "s" is Subject's compact form (RFC 3261 §7.3.3); the name's case is free.
        let both = h(&[
            ("X-TENANT", "other"),
            ("X-Tenant", "acme"),
            ("s", "very urgent"),
        ]);
        assert_eq!(
            table.route(&facts(Some("x"), &both)).unwrap().action,
            RoutedAction::Webhook {
                application: "acme".into()
            }
        );
        let one = h(&[("X-Tenant", "acme")]);
        assert_eq!(table.route(&facts(Some("x"), &one)), None, "Subject absent");
        let wrong = h(&[("X-Tenant", "acme2"), ("Subject", "urgent")]);
        assert_eq!(table.route(&facts(Some("x"), &wrong)), None);
        // A compact name in the rule finds the full name in the request.
        let rule = Rule::new(
            "f",
            Match {
                headers: vec![("f".into(), regex("alice").unwrap())],
                ..Match::default()
            },
            Action::Echo,
        )
        .unwrap();
        let table = RouteTable::new(vec![rule]);
        let from = h(&[("From", "<sip:alice@example.com>")]);
        assert!(table.route(&facts(Some("x"), &from)).is_some());
        let to = h(&[("To", "<sip:alice@example.com>")]);
        assert!(table.route(&facts(Some("x"), &to)).is_none());
    }

    #[test]
    fn source_trunk_match() {
        let rule = Rule::new(
            "carrier-in",
            Match {
                source_trunk: Some("carrier".into()),
                ..Match::default()
            },
            Action::Echo,
        )
        .unwrap();
        let table = RouteTable::new(vec![rule]);
        let mut f = facts(Some("x"), &[]);
        assert_eq!(table.route(&f), None, "not from a trunk");
        f.source_trunk = Some("other");
        assert_eq!(table.route(&f), None);
        f.source_trunk = Some("carrier");
        assert_eq!(table.route(&f).unwrap().rule, "carrier-in");
    }

    #[test]
    fn first_matching_rule_wins_and_empty_match_is_catch_all() {
        let table = RouteTable::new(vec![
            user_rule(
                "busy",
                "^1",
                Action::Decline {
                    status: 486,
                    reason: Some("Busy Here".into()),
                },
            ),
            user_rule("echo", "^12", Action::Echo),
            Rule::new(
                "rest",
                Match::default(),
                Action::Decline {
                    status: 404,
                    reason: None,
                },
            )
            .unwrap(),
        ]);
        assert_eq!(table.route(&facts(Some("123"), &[])).unwrap().rule, "busy");
        let rest = table.route(&facts(Some("9"), &[])).unwrap();
        assert_eq!(rest.rule, "rest");
        assert_eq!(
            rest.action,
            RoutedAction::Decline {
                status: 404,
                reason: None
            }
        );
        assert!(RouteTable::default().is_empty());
        assert_eq!(RouteTable::default().route(&facts(Some("1"), &[])), None);
        assert!(!table.is_empty());
        assert_eq!(table.rules().len(), 3);
    }

    #[test]
    fn capture_groups_and_dollar() {
        let table = RouteTable::new(vec![user_rule(
            "ext",
            r"^9(\d+)$",
            bridge("sip:${1}@pbx.example;user=phone?X-Orig=${0}&X-Cost=$$1"),
        )]);
        let routed = table.route(&facts(Some("9555"), &[])).unwrap();
        assert_eq!(
            routed_uris(&routed),
            ["sip:555@pbx.example;user=phone?X-Orig=9555&X-Cost=$1"]
        );
    }

    #[test]
    fn optional_group_that_did_not_take_part_leaves_the_rule_when_empty_user_results() {
        // `${2}` empty → "sip:@host" is no URI: the rule is skipped, the next applies.
        let table = RouteTable::new(vec![
            user_rule("two", r"^(a)(b)?$", bridge("sip:${2}@h.example")),
            Rule::new("fallback", Match::default(), Action::Echo).unwrap(),
        ]);
        assert_eq!(table.route(&facts(Some("ab"), &[])).unwrap().rule, "two");
        assert_eq!(
            table.route(&facts(Some("a"), &[])).unwrap().rule,
            "fallback"
        );
    }

    #[test]
    fn rewriting_plus_one_numbers_per_target() {
        let mut local = Target::new("sip:${user}@10.0.0.5:5070");
        local.rewrite = Some(Rewrite::new(regex(r"^\+1(\d{10})$").unwrap(), "$1").unwrap());
        local.timeout = Some(Duration::from_secs(20));
        local.headers = vec![("X-Routed-By".into(), "tandem".into())];
        let mut trunk = Target::new("${user}");
        trunk.trunk = Some("carrier".into());
        let table = RouteTable::new(vec![
            Rule::new(
                "nanp",
                Match {
                    user: Some(regex(r"^\+1\d{10}$").unwrap()),
                    ..Match::default()
                },
                Action::Bridge {
                    targets: vec![local, trunk],
                    ring: RingStrategy::Parallel,
                    mode: BridgeMode::MediaAnchored,
                    pass_headers: Vec::new(),
                },
            )
            .unwrap(),
        ]);
        let routed = table.route(&facts(Some("+15551234567"), &[])).unwrap();
        let RoutedAction::Bridge {
            targets,
            ring,
            mode,
            pass_headers,
        } = routed.action
        else {
            panic!()
        };
        assert_eq!(ring, RingStrategy::Parallel);
        assert_eq!(mode, BridgeMode::MediaAnchored);
        assert!(pass_headers.is_empty());
        assert_eq!(
            targets[0],
            RoutedTarget {
                uri: "sip:5551234567@10.0.0.5:5070".into(),
                trunk: None,
                timeout: Some(Duration::from_secs(20)),
                headers: vec![("X-Routed-By".into(), "tandem".into())],
            }
        );
        assert_eq!(targets[1].uri, "+15551234567", "no rewrite on this target");
        assert_eq!(targets[1].trunk.as_deref(), Some("carrier"));
    }

    #[test]
    fn rewrite_replacement_names_existing_groups() {
        let p = || regex(r"^\+1(?<n>\d+)$").unwrap();
        assert!(Rewrite::new(p(), "$1").is_ok());
        assert!(Rewrite::new(p(), "${1}0").is_ok());
        assert!(Rewrite::new(p(), "$n").is_ok());
        assert!(Rewrite::new(p(), "$$1 and $ and ${").is_ok());
        let err = Rewrite::new(p(), "$1a").unwrap_err().to_string();
        assert!(err.contains("`1a`") && err.contains("${1}"), "{err}");
        let err = Rewrite::new(p(), "$2").unwrap_err();
        assert!(
            matches!(err, RouteError::Rewrite { target: None, .. }),
            "{err:?}"
        );
        assert!(err.to_string().contains("`2`"), "{err}");
        assert!(Rewrite::new(p(), "${m}").is_err());
        // And Rule::new checks it again with the target's index.
        let mut t = Target::new("sip:${user}@h.example");
        t.rewrite = Some(Rewrite {
            pattern: p(),
            replacement: "$9".into(),
        });
        let err = Rule::new(
            "r",
            Match::default(),
            Action::Bridge {
                targets: vec![Target::new("sip:a@h.example"), t],
                ring: RingStrategy::Sequential,
                mode: BridgeMode::SignalingOnly,
                pass_headers: Vec::new(),
            },
        )
        .unwrap_err();
        assert!(
            matches!(
                err,
                RouteError::Rewrite {
                    target: Some(1),
                    ..
                }
            ),
            "{err:?}"
        );
    }

    #[test]
    fn hostile_users_never_break_the_uri() {
        let table = RouteTable::new(vec![user_rule(
            "any",
            "(?s).*",
            bridge("sip:${user}@127.0.0.1:5070;transport=tcp"),
        )]);
        for user in [
            "bob\r\nVia: SIP/2.0/UDP evil",
            "bob>",
            "b o b",
            "a@b",
            "x;transport=udp?Route=<sip:evil>",
            "100%",
            "%41",
            "\"quoted\"",
            "<sip:evil@x>",
            "naïve",
            "\0",
            "#*",
        ] {
            let routed = table.route(&facts(Some(user), &[])).unwrap();
            let uri = routed_uris(&routed)[0].to_owned();
            let Ok(Uri::Sip(parsed)) = Uri::parse(uri.as_bytes()) else {
                panic!("{user:?} gave {uri:?}")
            };
            assert_eq!(
                parsed.params.len(),
                1,
                "{uri}: only the template's parameter"
            );
            assert!(parsed.headers.is_empty(), "{uri}");
            assert_eq!(
                parsed.user_unescaped().unwrap().as_ref(),
                user.as_bytes(),
                "{uri} decodes back to the user"
            );
            assert!(
                !uri.contains(['\r', '\n', ' ', '<', '>', '"', '\0']),
                "{uri}"
            );
        }
        assert_eq!(
            routed_uris(&table.route(&facts(Some("a b>"), &[])).unwrap()),
            ["sip:a%20b%3E@127.0.0.1:5070;transport=tcp"]
        );
    }

    #[test]
    fn decline_status_and_reason_are_checked() {
        for status in [0, 100, 180, 200, 302, 399, 700, 999] {
            let err = Rule::new(
                "d",
                Match::default(),
                Action::Decline {
                    status,
                    reason: None,
                },
            )
            .unwrap_err();
            assert_eq!(err, RouteError::DeclineStatus { status });
        }
        for status in [400, 486, 503, 603, 699] {
            Rule::new(
                "d",
                Match::default(),
                Action::Decline {
                    status,
                    reason: None,
                },
            )
            .unwrap();
        }
        let err = Rule::new(
            "d",
            Match::default(),
            Action::Decline {
                status: 486,
                reason: Some("Busy\r\nX: y".into()),
            },
        )
        .unwrap_err();
        assert!(matches!(err, RouteError::ReasonPhrase { .. }), "{err:?}");
    }

    #[test]
    fn pass_headers_are_checked_and_routed() {
        let with = |names: &[&str]| {
            Rule::new(
                "p",
                Match::default(),
                Action::Bridge {
                    targets: vec![Target::new("sip:b@h.example")],
                    ring: RingStrategy::Sequential,
                    mode: BridgeMode::SignalingOnly,
                    pass_headers: names.iter().map(|n| (*n).to_owned()).collect(),
                },
            )
        };
        // Headers the B2BUA writes per leg, in any case or compact form, are refused
        // with the engine's own reason (b2bua.rs `unpassable`).
        for name in [
            "Via",
            "call-id",
            "i",
            "Contact",
            "From",
            "t",
            "CSeq",
            "Max-Forwards",
        ] {
            let err = with(&["X-Pass", name]).unwrap_err();
            let RouteError::PassHeader {
                name: refused,
                problem,
            } = &err
            else {
                panic!("{name}: {err:?}");
            };
            assert_eq!(refused, name);
            assert!(!problem.is_empty(), "{err}");
            assert!(err.to_string().contains("cannot be passed"), "{err}");
        }
        let err = with(&["Session-Expires"]).unwrap_err();
        assert!(err.to_string().contains("per leg"), "{err}");
        assert!(matches!(
            with(&[""]).unwrap_err(),
            RouteError::PassHeader { .. }
        ));
        let err = with(&["X Pass"]).unwrap_err();
        assert!(err.to_string().contains("not a token"), "{err}");
        // Passable ones are carried to the routed action as written.
        let rule = with(&["X-Pass", "User-to-User", "Referred-By"]).unwrap();
        let routed = RouteTable::new(vec![rule])
            .route(&facts(Some("b"), &[]))
            .unwrap();
        let RoutedAction::Bridge { pass_headers, .. } = routed.action else {
            panic!("not a bridge: {routed:?}");
        };
        assert_eq!(pass_headers, ["X-Pass", "User-to-User", "Referred-By"]);
    }

    #[test]
    fn construction_refuses_bad_rules() {
        let bad = |action: Action| Rule::new("r", Match::default(), action).unwrap_err();
        assert_eq!(
            bad(Action::Bridge {
                targets: vec![],
                ring: RingStrategy::Sequential,
                mode: BridgeMode::SignalingOnly,
                pass_headers: Vec::new(),
            }),
            RouteError::NoTargets
        );
        let template = |uri: &str| match bad(bridge(uri)) {
            RouteError::Template {
                target: Some(0),
                problem,
                ..
            } => problem,
            other => panic!("{uri}: {other:?}"),
        };
        assert!(template("sip:$user@h").contains("$$"));
        assert!(template("sip:${usr}@h").contains("unknown variable"));
        assert!(template("sip:${user@h").contains("not closed"));
        assert!(template("sip:${1}@h").contains("needs a `user` regex"));
        assert!(template("sip:bob@").contains("not a sip:"));
        assert!(
            template("${user}").contains("not a sip:"),
            "a bare user needs a trunk"
        );
        assert!(template("http://x/${user}").contains("not a sip:"));
        assert!(template("sip:a b@h").contains("not a sip:"));
        assert!(template("sip:a@h\r\nX: y").contains("not a sip:"));
        // Group numbers beyond the regex's.
        let err = Rule::new(
            "r",
            Match {
                user: Some(regex("^(a)$").unwrap()),
                ..Match::default()
            },
            bridge("sip:${2}@h"),
        )
        .unwrap_err();
        assert!(err.to_string().contains("groups 0 to 1"), "{err}");
        // Forward target: a template without target index.
        assert!(matches!(
            bad(Action::Forward {
                target: "nowhere".into()
            }),
            RouteError::Template { target: None, .. }
        ));
        Rule::new(
            "r",
            Match::default(),
            Action::Forward {
                target: "sip:${user}@other.example".into(),
            },
        )
        .unwrap();
        // Target headers.
        let with_header = |name: &str, value: &str| {
            let mut t = Target::new("sip:a@h");
            t.headers.push((name.into(), value.into()));
            bad(Action::Bridge {
                targets: vec![t],
                ring: RingStrategy::Sequential,
                mode: BridgeMode::SignalingOnly,
                pass_headers: Vec::new(),
            })
        };
        assert!(matches!(
            with_header("X-A", "a\r\nVia: x"),
            RouteError::Header { target: 0, .. }
        ));
        assert!(matches!(with_header("X A", "a"), RouteError::Header { .. }));
        assert!(with_header("Call-ID", "x").to_string().contains("stack"));
        let mut t = Target::new("sip:a@h");
        t.timeout = Some(Duration::ZERO);
        assert_eq!(
            bad(Action::Bridge {
                targets: vec![t],
                ring: RingStrategy::Sequential,
                mode: BridgeMode::SignalingOnly,
                pass_headers: Vec::new(),
            }),
            RouteError::ZeroTimeout { target: 0 }
        );
        assert!(matches!(
            bad(Action::Webhook {
                application: " ".into()
            }),
            RouteError::Empty { .. }
        ));
        assert!(matches!(
            Rule::new(" ", Match::default(), Action::Echo).unwrap_err(),
            RouteError::Empty { .. }
        ));
        let err = Rule::new(
            "r",
            Match {
                headers: vec![("X Bad".into(), regex("a").unwrap())],
                ..Match::default()
            },
            Action::Echo,
        )
        .unwrap_err();
        assert!(matches!(err, RouteError::MatchHeader { .. }));
    }

    #[test]
    fn bad_regex_error_is_one_line() {
        let err = regex("(bob").unwrap_err();
        let text = err.to_string();
        assert!(!text.contains('\n'), "{text}");
        assert!(text.contains("unclosed group"), "{text}");
        assert!(host_regex("[").is_err());
    }

    #[test]
    fn trunk_targets_accept_a_bare_user_or_a_uri() {
        let mut t = Target::new("${user}");
        t.trunk = Some("carrier".into());
        let mut u = Target::new("tel:${user}");
        u.trunk = Some("carrier".into());
        let table = RouteTable::new(vec![
            Rule::new(
                "out",
                Match::default(),
                Action::Bridge {
                    targets: vec![t, u],
                    ring: RingStrategy::Sequential,
                    mode: BridgeMode::SignalingOnly,
                    pass_headers: Vec::new(),
                },
            )
            .unwrap(),
        ]);
        let routed = table.route(&facts(Some("+442079460000"), &[])).unwrap();
        assert_eq!(routed_uris(&routed), ["+442079460000", "tel:+442079460000"]);
        // A space is escaped: fine in a user part, but a tel number has no escapes
        // (RFC 3966 §3), so the second target does not expand and the rule is skipped
        // as a whole rather than ringing only some of its targets.
        assert_eq!(table.route(&facts(Some("+44 20"), &[])), None);
        let mut alone = Target::new("${user}");
        alone.trunk = Some("carrier".into());
        let table = RouteTable::new(vec![
            Rule::new(
                "out",
                Match::default(),
                Action::Bridge {
                    targets: vec![alone],
                    ring: RingStrategy::Sequential,
                    mode: BridgeMode::SignalingOnly,
                    pass_headers: Vec::new(),
                },
            )
            .unwrap(),
        ]);
        let routed = table.route(&facts(Some("+44 20"), &[])).unwrap();
        assert_eq!(routed_uris(&routed), ["+44%2020"]);
        // A userless Request-URI gives an empty user part: no route.
        assert_eq!(table.route(&facts(None, &[])), None);
    }

    #[test]
    fn tables_compare_by_pattern_text() {
        let a = RouteTable::new(vec![user_rule("x", "^a$", Action::Echo)]);
        let b = RouteTable::new(vec![user_rule("x", "^a$", Action::Echo)]);
        let c = RouteTable::new(vec![user_rule("x", "^b$", Action::Echo)]);
        assert_eq!(a, b);
        assert_ne!(a, c);
    }

    fn any_table() -> RouteTable {
        let mut rewrite = Target::new("sip:${user}@h.example?X-G=${1}");
        rewrite.rewrite = Some(Rewrite::new(regex(r"^\+?(\d*)(.*)$").unwrap(), "${2}$1").unwrap());
        let mut trunk = Target::new("${user}");
        trunk.trunk = Some("t".into());
        RouteTable::new(vec![
            Rule::new(
                "hdr",
                Match {
                    headers: vec![("X-Route".into(), regex("^fwd").unwrap())],
                    user: Some(regex("(?s)(.*)").unwrap()),
                    ..Match::default()
                },
                Action::Forward {
                    target: "sip:${1}@fwd.example;user=phone".into(),
                },
            )
            .unwrap(),
            Rule::new(
                "all",
                Match {
                    user: Some(regex(r"(?s)^(.*)$").unwrap()),
                    ..Match::default()
                },
                Action::Bridge {
                    targets: vec![rewrite, trunk, Target::new("sips:${0}@[::1]:5061")],
                    ring: RingStrategy::Parallel,
                    mode: BridgeMode::SignalingOnly,
                    pass_headers: Vec::new(),
                },
            )
            .unwrap(),
        ])
    }

    proptest! {
        #[test]
        fn any_facts_never_panic_and_expand_to_uris(
            user in proptest::option::of(any::<String>()),
            host in any::<String>(),
            from in any::<String>(),
            headers in proptest::collection::vec((any::<String>(), any::<String>()), 0..4),
            trunk in proptest::option::of(any::<String>()),
        ) {
            let table = any_table();
            let f = RouteFacts {
                request_uri: "sip:x@y",
                user: user.as_deref(),
                host: &host,
                from: &from,
                headers: &headers,
                source_trunk: trunk.as_deref(),
            };
            match table.route(&f).map(|r| r.action) {
                Some(RoutedAction::Bridge { targets, .. }) => {
                    for t in targets {
                        prop_assert!(expands_well(&t.uri, t.trunk.is_some()), "{}", t.uri);
                        prop_assert!(!t.uri.contains(['\r', '\n', ' ', '<', '>']));
                    }
                }
                Some(RoutedAction::Forward { target }) => {
                    prop_assert!(matches!(Uri::parse(target.as_bytes()), Ok(Uri::Sip(_))), "{target}");
                }
                Some(other) => prop_assert!(false, "unexpected {other:?}"),
                None => {
                    // Only a user that leaves an empty user part after the rewrite.
                    let rewritten = user
                        .as_deref()
                        .map(|u| regex(r"^\+?(\d*)(.*)$").unwrap().replace(u, "${2}$1").into_owned());
                    prop_assert!(rewritten.is_none_or(|r| r.is_empty()), "{user:?}");
                }
            }
        }

        #[test]
        fn any_template_or_replacement_never_panics(
            template in "[a-z:@${}0-9%<> \r\n.;=?]{0,24}",
            replacement in "[a-z${}0-9_]{0,12}",
            user in any::<String>(),
        ) {
            let mut t = Target::new(template.clone());
            t.rewrite = Some(Rewrite { pattern: regex("(a)(?<n>b)?").unwrap(), replacement });
            let rule = Rule::new(
                "p",
                Match { user: Some(regex("(?s)(.)?").unwrap()), ..Match::default() },
                Action::Bridge {
                    targets: vec![t],
                    ring: RingStrategy::Sequential,
                    mode: BridgeMode::SignalingOnly,
                    pass_headers: Vec::new(),
                },
            );
            if let Ok(rule) = rule {
                let table = RouteTable::new(vec![rule]);
                let f = facts(Some(&user), &[]);
                if let Some(routed) = table.route(&f) {
                    for uri in routed_uris(&routed) {
                        prop_assert!(expands_well(uri, false), "{template} → {uri}");
                    }
                }
            }
        }
    }
}
