//! SIPp conformance of the B2BUA through the real daemon, with three parties on three
//! loopback addresses so that topology hiding can be checked: Tandem on 127.0.0.10, the
//! caller A (a SIPp UAC) on 127.0.0.11, the callees B (bob) on 127.0.0.12 and C (carol) on
//! 127.0.0.13 (SIPp UASes). Each test starts its own daemon with `[[route]]` rules that
//! bridge the caller's call (RFC 7092 §3.1: a B2BUA is two UAs), starts the callee(s),
//! then runs the caller; every SIPp must exit 0: the scenarios (`tests/sipp/b2bua/`, each
//! one's comment says what it checks) fail on any unexpected message and on their
//! `check_it` regexps. On top of that, the SIPp message traces are read back here to check
//! what regexps cannot say well: no header of any message a party got names another
//! party's address or A's Call-ID and tag; in signalling-only mode the SDP is relayed
//! byte for byte; ringing times. Each test ends with the daemon holding no call and no
//! dialog.
//!
//! The transfer flows (RFC 3515 REFER from bob on a bridged call, blind) route the
//! Refer-To target `sip:carol@127.0.0.10:PORT` back into Tandem, where a second rule
//! bridges it to carol with `pass_headers` for Referred-By, User-to-User and the
//! Refer-To URI header X-Case: so the new call is itself a bridge, and what carol sees
//! went through two legs of Tandem's.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use common::{Daemon, repo_root, scratch_dir};
use std::net::{SocketAddr, UdpSocket};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

const TANDEM: &str = "127.0.0.10";
const ALICE: &str = "127.0.0.11";
const BOB: &str = "127.0.0.12";
const CAROL: &str = "127.0.0.13";

/// Bounds every SIPp run: a scenario stuck on a message that never comes fails in this
/// time instead of hanging the test.
const SIPP_TIMEOUT: &str = "20s";

/// A's Call-ID (SIPp's `-cid_str`); A's From tag has `secret` too (in the scenarios).
const ALICE_CALL_ID: &str = "alice-%u-%p-secret@%s";

/// A port free for UDP on `ip` at the time of the call.
fn free_port_on(ip: &str) -> u16 {
    UdpSocket::bind((ip, 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The daemon on 127.0.0.10 (SIP and media) with `routes` (`[[route]]` tables).
fn tandem(name: &str, routes: &str) -> Daemon {
    Daemon::start_on(
        name,
        TANDEM,
        "",
        &format!("[media]\naddress = \"{TANDEM}\"\ntimeout_s = 0\n\n{routes}"),
    )
}

/// A bridge route for the Request-URI user `user`: `keys` are its own extra keys
/// (`ring`, `media`), `conditions` extra `[route.match]` keys, `targets` whole
/// `[[route.targets]]` bodies.
fn bridge_route(user: &str, keys: &str, conditions: &str, targets: &[String]) -> String {
    let mut route = format!(
        "[[route]]\nname = \"{user}\"\naction = \"bridge\"\n{keys}\n\
         [route.match]\nuser = '^{user}$'\n{conditions}\n"
    );
    for target in targets {
        route.push_str(&format!("[[route.targets]]\n{target}\n"));
    }
    route
}

/// Tandem's SIP address, `127.0.0.10:PORT`.
fn tandem_address(daemon: &Daemon) -> String {
    SocketAddr::new(TANDEM.parse().unwrap(), daemon.port).to_string()
}

fn target(user: &str, ip: &str, port: u16) -> String {
    format!("uri = \"sip:{user}@{ip}:{port}\"")
}

/// One message of a SIPp `-trace_msg` file.
#[derive(Debug, Clone)]
struct SipMessage {
    /// Seconds on the wall clock (only differences are used; every SIPp runs on this
    /// machine's clock).
    at: f64,
    /// SIPp sent it (else it received it).
    sent: bool,
    first_line: String,
    /// Header lines as written.
    headers: Vec<String>,
    body: Vec<u8>,
}

impl SipMessage {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find_map(|h| {
            let (n, v) = h.split_once(':')?;
            n.trim().eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }

    fn is_request(&self, method: &str) -> bool {
        self.first_line.starts_with(&format!("{method} "))
    }

    /// A response with `status` to a `method` request.
    fn is_response(&self, status: u16, method: &str) -> bool {
        self.first_line.starts_with(&format!("SIP/2.0 {status} "))
            && self
                .header("CSeq")
                .is_some_and(|c| c.split_whitespace().nth(1) == Some(method))
    }

    fn summary(&self) -> String {
        format!(
            "{} {}",
            if self.sent { "sent" } else { "received" },
            self.first_line
        )
    }
}

/// The messages of a `-trace_msg` file: blocks of `----- <date> <time>`, `UDP message sent
/// (n bytes):` or `UDP message received [n] bytes :`, a blank line, then the message with
/// its CRLFs as they were.
fn parse_trace(text: &str) -> Vec<SipMessage> {
    let mut messages = Vec::new();
    for block in text
        .split("-----------------------------------------------")
        .skip(1)
    {
        let Some((stamp, rest)) = block.split_once('\n') else {
            continue;
        };
        let Some(at) = parse_timestamp(stamp.trim()) else {
            continue;
        };
        let Some((kind, message)) = rest.split_once('\n') else {
            continue;
        };
        let sent = if kind.contains(" message sent ") {
            true
        } else if kind.contains(" message received ") && !kind.starts_with("Unexpected") {
            false
        } else {
            continue;
        };
        let message = message.trim_start_matches(['\n', '\r']);
        let (head, body) = message.split_once("\r\n\r\n").unwrap_or((message, ""));
        let mut lines = head.split("\r\n");
        let first_line = lines.next().unwrap_or_default().to_owned();
        let headers: Vec<String> = lines.map(str::to_owned).collect();
        let mut parsed = SipMessage {
            at,
            sent,
            first_line,
            headers,
            body: Vec::new(),
        };
        let length: usize = parsed
            .header("Content-Length")
            .or_else(|| parsed.header("l"))
            .and_then(|l| l.parse().ok())
            .unwrap_or(0);
        parsed.body = body.as_bytes()[..length.min(body.len())].to_vec();
        messages.push(parsed);
    }
    messages
}

/// `2026-11-21 12:25:46.949063` as seconds since 1970 (the civil-from-days algorithm).
fn parse_timestamp(stamp: &str) -> Option<f64> {
    let (date, time) = stamp.split_once(' ')?;
    let mut ymd = date.split('-').map(|p| p.parse::<i64>().ok());
    let (y, m, d) = (ymd.next()??, ymd.next()??, ymd.next()??);
    let mut hms = time.split(':');
    let (h, min) = (
        hms.next()?.parse::<f64>().ok()?,
        hms.next()?.parse::<f64>().ok()?,
    );
    let sec = hms.next()?.parse::<f64>().ok()?;
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(days as f64 * 86_400.0 + h * 3600.0 + min * 60.0 + sec)
}

/// One SIPp party, running.
struct Party {
    role: String,
    child: Child,
    dir: PathBuf,
}

/// One SIPp party, done.
struct Finished {
    role: String,
    status: ExitStatus,
    stdout: String,
    stderr: String,
    errors: String,
    messages: Vec<SipMessage>,
    trace: PathBuf,
}

impl Party {
    /// Starts SIPp as `role` on `ip:port` with `scenario` (in `tests/sipp/b2bua/`), one
    /// call, its message trace and error log in a scratch directory.
    fn spawn(
        test: &str,
        role: &str,
        (ip, port): (&str, u16),
        scenario: &str,
        args: &[&str],
    ) -> Party {
        let dir = scratch_dir(&format!("{test}-{role}"));
        for file in ["messages.log", "errors.log"] {
            let _ = std::fs::remove_file(dir.join(file));
        }
        let child = Command::new("sipp")
            .args([
                "-sf",
                scenario,
                "-i",
                ip,
                "-p",
                &port.to_string(),
                "-m",
                "1",
            ])
            .args(["-nostdin", "-timeout", SIPP_TIMEOUT, "-timeout_error"])
            .args(["-trace_msg", "-message_file"])
            .arg(dir.join("messages.log"))
            .args(["-trace_err", "-error_file"])
            .arg(dir.join("errors.log"))
            .args(args)
            .current_dir(repo_root().join("tests/sipp/b2bua"))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("sipp runs (Debian package sip-tester)");
        Party {
            role: role.to_owned(),
            child,
            dir,
        }
    }

    /// A callee (UAS) on `ip:port`, once it has bound its port.
    fn callee(
        test: &str,
        role: &str,
        (ip, port): (&str, u16),
        scenario: &str,
        args: &[&str],
    ) -> Party {
        let mut party = Party::spawn(test, role, (ip, port), scenario, args);
        let deadline = Instant::now() + Duration::from_secs(10);
        // Bound when we can no longer bind it ourselves.
        while UdpSocket::bind((ip, port)).is_ok() {
            if let Some(status) = party.child.try_wait().unwrap() {
                panic!("{role}: SIPp exited before binding {ip}:{port}: {status}");
            }
            assert!(
                Instant::now() < deadline,
                "{role}: SIPp did not bind {ip}:{port}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        party
    }

    /// The caller (UAC) A on 127.0.0.11: calls `user` at Tandem, runs to its end.
    fn caller(test: &str, daemon: &Daemon, scenario: &str, user: &str) -> Finished {
        Party::caller_with(test, daemon, scenario, user, &[])
    }

    /// [`caller`](Self::caller) with more SIPp arguments (`-d MS` for a `<pause/>`).
    fn caller_with(
        test: &str,
        daemon: &Daemon,
        scenario: &str,
        user: &str,
        args: &[&str],
    ) -> Finished {
        let remote = tandem_address(daemon);
        let mut all = vec![remote.as_str(), "-s", user, "-cid_str", ALICE_CALL_ID];
        all.extend_from_slice(args);
        Party::spawn(test, "alice", (ALICE, free_port_on(ALICE)), scenario, &all).finish()
    }

    /// Waits for SIPp's exit (its `-timeout` bounds it).
    fn finish(self) -> Finished {
        let output = self.child.wait_with_output().unwrap();
        let read = |file: &str| std::fs::read_to_string(self.dir.join(file)).unwrap_or_default();
        Finished {
            role: self.role,
            status: output.status,
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
            errors: read("errors.log"),
            messages: parse_trace(&read("messages.log")),
            trace: self.dir.join("messages.log"),
        }
    }
}

impl Finished {
    fn report(&self) -> String {
        let tail: Vec<&str> = self.stdout.lines().rev().take(40).collect();
        format!(
            "{}: SIPp {}\nmessages ({}):\n  {}\nerrors.log:\n{}\nstderr:\n{}\nend of stdout:\n{}",
            self.role,
            self.status,
            self.trace.display(),
            self.messages
                .iter()
                .map(SipMessage::summary)
                .collect::<Vec<_>>()
                .join("\n  "),
            self.errors,
            self.stderr,
            tail.into_iter().rev().collect::<Vec<_>>().join("\n")
        )
    }

    /// The first message matching `which`; panics (with the report) if there is none.
    #[track_caller]
    fn find(&self, what: &str, which: impl Fn(&SipMessage) -> bool) -> &SipMessage {
        self.messages
            .iter()
            .find(|m| which(m))
            .unwrap_or_else(|| panic!("{} has no {what}\n{}", self.role, self.report()))
    }

    fn received(&self) -> impl Iterator<Item = &SipMessage> {
        self.messages.iter().filter(|m| !m.sent)
    }

    /// Call-IDs of the messages this party sent or got.
    fn call_ids(&self) -> Vec<&str> {
        let mut ids: Vec<&str> = self
            .messages
            .iter()
            .filter_map(|m| m.header("Call-ID"))
            .collect();
        ids.sort_unstable();
        ids.dedup();
        ids
    }
}

/// Every party exited 0 (SIPp: every call succeeded; any failed check, unexpected
/// message or timeout fails it).
#[track_caller]
fn assert_succeeded(parties: &[&Finished], daemon: &Daemon) {
    for party in parties {
        assert!(
            party.status.success(),
            "{} failed\n{}\n\nall parties:\n{}\n\ndaemon log:\n{}",
            party.role,
            party.report(),
            parties
                .iter()
                .map(|p| p.report())
                .collect::<Vec<_>>()
                .join("\n\n"),
            daemon.lines().join("\n")
        );
        assert!(
            !party.messages.is_empty(),
            "{}: empty message trace\n{}",
            party.role,
            party.report()
        );
    }
}

/// What of `needles` the messages `party` got name, one line per message: in any header
/// but those named in `except` (and with `bodies_too`, in the body).
fn leaks(party: &Finished, needles: &[&str], bodies_too: bool, except: &[&str]) -> Vec<String> {
    party
        .received()
        .filter_map(|m| {
            let mut text = m
                .headers
                .iter()
                .filter(|h| {
                    let name = h.split_once(':').map_or("", |(n, _)| n.trim());
                    !except.iter().any(|e| e.eq_ignore_ascii_case(name))
                })
                .cloned()
                .collect::<Vec<_>>()
                .join("\r\n");
            if bodies_too {
                text.push_str(&String::from_utf8_lossy(&m.body));
            }
            let found: Vec<&str> = needles
                .iter()
                .copied()
                .filter(|n| text.contains(n))
                .collect();
            (!found.is_empty()).then(|| format!("{}: {found:?} in\n{text}", m.first_line))
        })
        .collect()
}

/// Topology hiding (RFC 7092 §3.1, RFC 5853 §3.1): no header of any message the caller
/// got names a callee's address, and no header of any message a callee got names the
/// caller's address or carries A's Call-ID or From tag (both say `secret`); the legs have
/// different Call-IDs. `bodies_too` (media anchored): the SDP hides them as well.
#[track_caller]
fn assert_hidden(alice: &Finished, callees: &[&Finished], bodies_too: bool) {
    let leaked = leaks(alice, &[BOB, CAROL], bodies_too, &[]);
    assert!(leaked.is_empty(), "alice saw a callee: {leaked:#?}");
    for callee in callees {
        let leaked = leaks(callee, &[ALICE, "secret"], bodies_too, &[]);
        assert!(leaked.is_empty(), "{} saw alice: {leaked:#?}", callee.role);
        for id in callee.call_ids() {
            assert!(
                !alice.call_ids().contains(&id),
                "{} and alice share the Call-ID {id}",
                callee.role
            );
        }
    }
}

/// Signalling-only (RFC 7092 §3.1.1): the body of `what` as `from` sent it is the body
/// `to` got, byte for byte.
#[track_caller]
fn assert_relayed_as_is(
    what: &str,
    from: &Finished,
    sent: impl Fn(&SipMessage) -> bool,
    to: &Finished,
    got: impl Fn(&SipMessage) -> bool,
) {
    let original = from.find(what, |m| m.sent && sent(m));
    let relayed = to.find(what, |m| !m.sent && got(m));
    assert!(
        !original.body.is_empty(),
        "{what}: {} sent no SDP",
        from.role
    );
    assert_eq!(
        String::from_utf8_lossy(&relayed.body),
        String::from_utf8_lossy(&original.body),
        "{what}: the SDP {} got is not the one {} sent",
        to.role,
        from.role
    );
}

/// Tandem ends both legs: no call, no dialog left.
#[track_caller]
fn assert_all_ended(daemon: &Daemon) {
    let stats = daemon.wait_for_stats(Duration::from_secs(5), |s| {
        s.get("calls") == 0 && s.get("dialogs") == 0
    });
    assert_eq!(
        (stats.get("calls"), stats.get("dialogs")),
        (0, 0),
        "calls or dialogs left: {stats:?}"
    );
}

/// Flow 1, bob hangs up: A → Tandem → B, signalling-only. B's INVITE carries A's SDP as
/// it is and nothing of A's headers but X-Pass, which the route passes (`pass_headers`);
/// A's 200 carries B's SDP as it is and nothing of B's headers but its X-Pass; B's BYE
/// ends A's leg.
#[test]
fn bridged_signalling_only_callee_hangs_up() {
    let test = "b2b-signalling-bye-b";
    let bob_port = free_port_on(BOB);
    let daemon = tandem(
        test,
        &bridge_route(
            "bob",
            "pass_headers = [\"X-Pass\"]",
            "headers = { \"X-Pass\" = '^x$' }",
            &[format!(
                "{}\nheaders = {{ \"X-Routed-By\" = \"tandem\" }}",
                target("bob", BOB, bob_port)
            )],
        ),
    );
    let bob = Party::callee(
        test,
        "bob",
        (BOB, bob_port),
        "callee_answers_hangs_up.xml",
        &[],
    );
    let alice = Party::caller(test, &daemon, "caller_bob_hangs_up.xml", "bob");
    let bob = bob.finish();
    assert_succeeded(&[&alice, &bob], &daemon);
    assert_hidden(&alice, &[&bob], false);
    assert_relayed_as_is(
        "INVITE",
        &alice,
        |m| m.is_request("INVITE"),
        &bob,
        |m| m.is_request("INVITE"),
    );
    assert_relayed_as_is(
        "200 for the INVITE",
        &bob,
        |m| m.is_response(200, "INVITE"),
        &alice,
        |m| m.is_response(200, "INVITE"),
    );
    // The route matched on A's X-Pass header, and leg B got the target's own header,
    // and X-Pass passed both ways.
    let invite = bob.find("INVITE", |m| m.is_request("INVITE"));
    assert_eq!(invite.header("X-Routed-By"), Some("tandem"));
    assert_eq!(invite.header("X-Pass"), Some("x"));
    let ok = alice.find("200", |m| !m.sent && m.is_response(200, "INVITE"));
    assert_eq!(ok.header("X-Pass"), Some("from-bob"));
    // Bob's BYE reached alice as Tandem's.
    alice.find("BYE", |m| !m.sent && m.is_request("BYE"));
    assert_all_ended(&daemon);
}

/// Flow 1, alice hangs up: A's BYE ends B's leg.
#[test]
fn bridged_signalling_only_caller_hangs_up() {
    let test = "b2b-signalling-bye-a";
    let bob_port = free_port_on(BOB);
    let daemon = tandem(
        test,
        &bridge_route("bob", "", "", &[target("bob", BOB, bob_port)]),
    );
    let bob = Party::callee(
        test,
        "bob",
        (BOB, bob_port),
        "callee_answers.xml",
        &["-key", "callee", "bob", "-key", "sess", "2222"],
    );
    let alice = Party::caller(test, &daemon, "caller_hangs_up.xml", "bob");
    let bob = bob.finish();
    assert_succeeded(&[&alice, &bob], &daemon);
    assert_hidden(&alice, &[&bob], false);
    assert_relayed_as_is(
        "INVITE",
        &alice,
        |m| m.is_request("INVITE"),
        &bob,
        |m| m.is_request("INVITE"),
    );
    assert_relayed_as_is(
        "200 for the INVITE",
        &bob,
        |m| m.is_response(200, "INVITE"),
        &alice,
        |m| m.is_response(200, "INVITE"),
    );
    bob.find("BYE", |m| !m.sent && m.is_request("BYE"));
    assert_all_ended(&daemon);
}

/// Flow 2: media anchored (RFC 7092 §3.1.3). Each leg's SDP is Tandem's (its media
/// address 127.0.0.10); neither side sees the other's address, even in the body.
#[test]
fn bridged_media_anchored() {
    let test = "b2b-anchored";
    let bob_port = free_port_on(BOB);
    let daemon = tandem(
        test,
        &bridge_route(
            "bob",
            "media = \"anchored\"",
            "",
            &[target("bob", BOB, bob_port)],
        ),
    );
    let bob = Party::callee(test, "bob", (BOB, bob_port), "callee_anchored.xml", &[]);
    let alice = Party::caller(test, &daemon, "caller_anchored.xml", "bob");
    let bob = bob.finish();
    assert_succeeded(&[&alice, &bob], &daemon);
    assert_hidden(&alice, &[&bob], true);
    // Each leg got an SDP of Tandem's own, with a port of its relay.
    let to_bob = bob.find("INVITE", |m| !m.sent && m.is_request("INVITE"));
    let to_alice = alice.find("200", |m| !m.sent && m.is_response(200, "INVITE"));
    for sdp in [&to_bob.body, &to_alice.body] {
        let sdp = String::from_utf8_lossy(sdp);
        assert!(sdp.contains(&format!("c=IN IP4 {TANDEM}")), "{sdp}");
        assert!(!sdp.contains("m=audio 0 "), "an audio stream: {sdp}");
    }
    assert_all_ended(&daemon);
}

/// Flow 3: B declines 486; A gets 486 with a Reason naming it (RFC 3326).
#[test]
fn callee_busy_is_relayed_with_reason() {
    let test = "b2b-busy";
    let bob_port = free_port_on(BOB);
    let daemon = tandem(
        test,
        &bridge_route("bob", "", "", &[target("bob", BOB, bob_port)]),
    );
    let bob = Party::callee(test, "bob", (BOB, bob_port), "callee_busy.xml", &[]);
    let alice = Party::caller(test, &daemon, "caller_declined.xml", "bob");
    let bob = bob.finish();
    assert_succeeded(&[&alice, &bob], &daemon);
    assert_hidden(&alice, &[&bob], false);
    let busy = alice.find("486", |m| !m.sent && m.is_response(486, "INVITE"));
    assert!(
        busy.header("Reason")
            .is_some_and(|r| r.contains("cause=486")),
        "{:?}",
        busy.headers
    );
    assert_all_ended(&daemon);
}

/// Flow 4: A cancels while B rings: B gets a CANCEL (and answers 487), A gets 487.
#[test]
fn caller_cancel_reaches_the_ringing_callee() {
    let test = "b2b-cancel";
    let bob_port = free_port_on(BOB);
    let daemon = tandem(
        test,
        &bridge_route("bob", "", "", &[target("bob", BOB, bob_port)]),
    );
    let bob = Party::callee(
        test,
        "bob",
        (BOB, bob_port),
        "callee_rings_cancelled.xml",
        &[],
    );
    let alice = Party::caller(test, &daemon, "caller_cancels.xml", "bob");
    let bob = bob.finish();
    assert_succeeded(&[&alice, &bob], &daemon);
    assert_hidden(&alice, &[&bob], false);
    let cancelled = alice.find("CANCEL", |m| m.sent && m.is_request("CANCEL"));
    let cancel = bob.find("CANCEL", |m| !m.sent && m.is_request("CANCEL"));
    assert!(cancel.at >= cancelled.at, "B's CANCEL came after A's");
    alice.find("487", |m| !m.sent && m.is_response(487, "INVITE"));
    assert_all_ended(&daemon);
}

/// Flow 5: B's re-INVITE (hold: a=sendonly, o= version + 1) reaches A with its SDP as it
/// is; A's answer (a=recvonly) reaches B as it is; then B's BYE ends both.
#[test]
fn callee_reinvite_reaches_the_caller() {
    let test = "b2b-reinvite";
    let bob_port = free_port_on(BOB);
    let daemon = tandem(
        test,
        &bridge_route("bob", "", "", &[target("bob", BOB, bob_port)]),
    );
    let bob = Party::callee(test, "bob", (BOB, bob_port), "callee_reinvites.xml", &[]);
    let alice = Party::caller(test, &daemon, "caller_reinvited.xml", "bob");
    let bob = bob.finish();
    assert_succeeded(&[&alice, &bob], &daemon);
    assert_hidden(&alice, &[&bob], false);
    let hold = |m: &SipMessage| {
        m.is_request("INVITE") && String::from_utf8_lossy(&m.body).contains("a=sendonly")
    };
    assert_relayed_as_is("re-INVITE", &bob, hold, &alice, hold);
    let held = |m: &SipMessage| {
        m.is_response(200, "INVITE") && String::from_utf8_lossy(&m.body).contains("a=recvonly")
    };
    assert_relayed_as_is("200 for the re-INVITE", &alice, held, &bob, held);
    assert_all_ended(&daemon);
}

/// Flow 6: parallel ringing. Bob and carol ring at once; carol answers (after ringing
/// half a second); bob gets a CANCEL saying "Call completed elsewhere" (RFC 3326); A gets
/// carol's SDP; A's BYE reaches carol.
#[test]
fn parallel_ring_first_answer_wins() {
    let test = "b2b-parallel";
    let (bob_port, carol_port) = (free_port_on(BOB), free_port_on(CAROL));
    let daemon = tandem(
        test,
        &bridge_route(
            "both",
            "ring = \"parallel\"",
            "",
            &[
                target("bob", BOB, bob_port),
                target("carol", CAROL, carol_port),
            ],
        ),
    );
    let bob = Party::callee(test, "bob", (BOB, bob_port), "callee_rings_loses.xml", &[]);
    let carol = Party::callee(
        test,
        "carol",
        (CAROL, carol_port),
        "callee_answers.xml",
        &[
            "-key", "callee", "carol", "-key", "sess", "3333", "-d", "500",
        ],
    );
    let alice = Party::caller(test, &daemon, "caller_gets_carol.xml", "both");
    let (bob, carol) = (bob.finish(), carol.finish());
    assert_succeeded(&[&alice, &bob, &carol], &daemon);
    assert_hidden(&alice, &[&bob, &carol], false);
    // Both rang at once; bob was cancelled once carol answered.
    let bob_invite = bob.find("INVITE", |m| !m.sent && m.is_request("INVITE"));
    let carol_invite = carol.find("INVITE", |m| !m.sent && m.is_request("INVITE"));
    assert!(
        (bob_invite.at - carol_invite.at).abs() < 0.4,
        "rung at once: bob at {}, carol at {}",
        bob_invite.at,
        carol_invite.at
    );
    let answer = carol.find("200", |m| m.sent && m.is_response(200, "INVITE"));
    let cancel = bob.find("CANCEL", |m| !m.sent && m.is_request("CANCEL"));
    assert!(
        cancel.at >= answer.at,
        "bob was cancelled before carol answered"
    );
    assert_relayed_as_is(
        "INVITE",
        &alice,
        |m| m.is_request("INVITE"),
        &carol,
        |m| m.is_request("INVITE"),
    );
    assert_relayed_as_is(
        "200 for the INVITE",
        &carol,
        |m| m.is_response(200, "INVITE"),
        &alice,
        |m| m.is_response(200, "INVITE"),
    );
    carol.find("BYE", |m| !m.sent && m.is_request("BYE"));
    assert_all_ended(&daemon);
}

/// Flow 7: sequential ringing with a per-target timeout: bob rings for its `timeout_s =
/// 2` and is cancelled, then carol rings and answers.
#[test]
fn sequential_ring_moves_on_after_the_target_timeout() {
    let test = "b2b-sequential";
    let (bob_port, carol_port) = (free_port_on(BOB), free_port_on(CAROL));
    let daemon = tandem(
        test,
        &bridge_route(
            "next",
            "ring = \"sequential\"",
            "",
            &[
                format!("{}\ntimeout_s = 2", target("bob", BOB, bob_port)),
                target("carol", CAROL, carol_port),
            ],
        ),
    );
    let bob = Party::callee(
        test,
        "bob",
        (BOB, bob_port),
        "callee_rings_cancelled.xml",
        &[],
    );
    let carol = Party::callee(
        test,
        "carol",
        (CAROL, carol_port),
        "callee_answers.xml",
        &["-key", "callee", "carol", "-key", "sess", "3333"],
    );
    let alice = Party::caller(test, &daemon, "caller_gets_carol.xml", "next");
    let (bob, carol) = (bob.finish(), carol.finish());
    assert_succeeded(&[&alice, &bob, &carol], &daemon);
    assert_hidden(&alice, &[&bob, &carol], false);
    let bob_invite = bob.find("INVITE", |m| !m.sent && m.is_request("INVITE"));
    let cancel = bob.find("CANCEL", |m| !m.sent && m.is_request("CANCEL"));
    let rang = cancel.at - bob_invite.at;
    assert!(
        (1.8..4.0).contains(&rang),
        "bob rang {rang:.2} s, not its timeout_s = 2"
    );
    let carol_invite = carol.find("INVITE", |m| !m.sent && m.is_request("INVITE"));
    assert!(
        carol_invite.at - bob_invite.at >= 1.8,
        "carol rang before bob's time was up"
    );
    assert_relayed_as_is(
        "200 for the INVITE",
        &carol,
        |m| m.is_response(200, "INVITE"),
        &alice,
        |m| m.is_response(200, "INVITE"),
    );
    carol.find("BYE", |m| !m.sent && m.is_request("BYE"));
    assert_all_ended(&daemon);
}

/// The transfer flows' routes: `bob` bridged to bob, and `carol` (the Refer-To target,
/// at Tandem) bridged to carol passing what the transfer put on the new INVITE; both
/// routes with `keys` (`media`).
fn transfer_routes(keys: &str, bob_port: u16, carol_port: u16) -> String {
    format!(
        "{}\n{}",
        bridge_route("bob", keys, "", &[target("bob", BOB, bob_port)]),
        bridge_route(
            "carol",
            &format!("{keys}\npass_headers = [\"Referred-By\", \"User-to-User\", \"X-Case\"]"),
            "",
            &[target("carol", CAROL, carol_port)],
        )
    )
}

/// The transfer's progress as the transferor got it (RFC 3515 §2.4.5): each NOTIFY's
/// sipfrag status line and Subscription-State, in order. Every one is of the `refer`
/// event package, its `id` (if any) the REFER's CSeq number (RFC 3515 §2.4.6), with a
/// `message/sipfrag` body.
fn notified(transferor: &Finished) -> Vec<(String, String)> {
    let refer = transferor.find("REFER", |m| m.sent && m.is_request("REFER"));
    let refer_seq = refer
        .header("CSeq")
        .and_then(|c| c.split_whitespace().next())
        .unwrap_or_default();
    transferor
        .received()
        .filter(|m| m.is_request("NOTIFY"))
        .map(|m| {
            let event = m.header("Event").unwrap_or_default();
            let mut params = event.split(';').map(str::trim);
            assert_eq!(params.next(), Some("refer"), "{:?}", m.headers);
            for param in params {
                if let Some(id) = param.strip_prefix("id=") {
                    assert_eq!(id, refer_seq, "{:?}", m.headers);
                }
            }
            assert!(
                m.header("Content-Type")
                    .is_some_and(|t| t.starts_with("message/sipfrag")),
                "{:?}",
                m.headers
            );
            let frag = String::from_utf8_lossy(&m.body);
            (
                frag.lines().next().unwrap_or_default().trim().to_owned(),
                m.header("Subscription-State")
                    .unwrap_or_default()
                    .to_owned(),
            )
        })
        .collect()
}

/// The last NOTIFY the transferor got.
fn final_notify(transferor: &Finished) -> &SipMessage {
    transferor
        .messages
        .iter()
        .rev()
        .find(|m| !m.sent && m.is_request("NOTIFY"))
        .unwrap_or_else(|| panic!("no NOTIFY\n{}", transferor.report()))
}

/// Topology hiding across a transfer: as [`assert_hidden`] for all three, and carol saw
/// nothing of bob's address either, but in the Referred-By bob wrote himself (RFC 3892:
/// the referrer's identity, passed on as it is; it may be signed).
#[track_caller]
fn assert_transfer_hidden(alice: &Finished, bob: &Finished, carol: &Finished, bodies_too: bool) {
    assert_hidden(alice, &[bob, carol], bodies_too);
    let leaked = leaks(carol, &[BOB], bodies_too, &["Referred-By", "b"]);
    assert!(leaked.is_empty(), "carol saw bob's address: {leaked:#?}");
    for id in carol.call_ids() {
        assert!(!bob.call_ids().contains(&id), "bob and carol share {id}");
    }
}

/// What the transfer put on carol's INVITE (RFC 3892, RFC 7433, RFC 3261 §19.1.5).
#[track_caller]
fn assert_referred(carol: &Finished) {
    let invite = carol.find("INVITE", |m| !m.sent && m.is_request("INVITE"));
    assert_eq!(
        invite.header("Referred-By"),
        Some(format!("<sip:bob@{BOB}>").as_str())
    );
    assert_eq!(invite.header("X-Case"), Some("blind"));
    assert!(
        invite
            .header("User-to-User")
            .is_some_and(|u| u.starts_with("56a390f3d2b7310023a2")),
        "{:?}",
        invite.headers
    );
}

/// Flow 8: blind transfer, signalling-only (RFC 3515, RFC 5589 §6). Bob REFERs the
/// caller to carol (routed through Tandem); bob gets 202 and NOTIFYs 100, 180, 200 (the
/// last ends the subscription), then hangs up. Carol's INVITE carries Referred-By,
/// User-to-User and X-Case, and A's SDP as A wrote it; A is re-INVITEd in its own dialog
/// with carol's SDP, its origin line continued from bob's (o=bob 2222, version 2,
/// RFC 3264 §8). A's BYE then reaches carol.
#[test]
fn blind_transfer_signalling_only() {
    let test = "b2b-transfer-signalling";
    let (bob_port, carol_port) = (free_port_on(BOB), free_port_on(CAROL));
    let daemon = tandem(test, &transfer_routes("", bob_port, carol_port));
    let carol = Party::callee(
        test,
        "carol",
        (CAROL, carol_port),
        "transfer_target_answers.xml",
        &[],
    );
    let bob = Party::callee(
        test,
        "bob",
        (BOB, bob_port),
        "callee_refers.xml",
        &["-key", "tandem", &tandem_address(&daemon)],
    );
    let alice = Party::caller(test, &daemon, "caller_transferred.xml", "bob");
    let (bob, carol) = (bob.finish(), carol.finish());
    assert_succeeded(&[&alice, &bob, &carol], &daemon);
    assert_transfer_hidden(&alice, &bob, &carol, false);
    let progress = notified(&bob);
    let statuses: Vec<&str> = progress.iter().map(|(s, _)| s.as_str()).collect();
    assert_eq!(
        statuses,
        [
            "SIP/2.0 100 Trying",
            "SIP/2.0 180 Ringing",
            "SIP/2.0 200 OK"
        ]
    );
    assert!(progress[..2].iter().all(|(_, s)| s.starts_with("active")));
    assert!(
        progress[2].1.starts_with("terminated") && progress[2].1.contains("reason=noresource"),
        "{progress:?}"
    );
    // Bob left once told the transfer succeeded.
    let done = final_notify(&bob);
    let left = bob.find("BYE", |m| m.sent && m.is_request("BYE"));
    assert!(left.at >= done.at, "bob hung up before the final NOTIFY");
    assert_referred(&carol);
    // Carol got the SDP A had offered, as it was.
    assert_relayed_as_is(
        "INVITE",
        &alice,
        |m| m.is_request("INVITE"),
        &carol,
        |m| m.is_request("INVITE"),
    );
    // A's re-INVITE is carol's answer, with the origin of the session A had with bob.
    let bob_sdp = String::from_utf8_lossy(
        &bob.find("200", |m| m.sent && m.is_response(200, "INVITE"))
            .body,
    )
    .into_owned();
    let carol_sdp = String::from_utf8_lossy(
        &carol
            .find("200", |m| m.sent && m.is_response(200, "INVITE"))
            .body,
    )
    .into_owned();
    let bob_origin = format!("o=bob 2222 1 IN IP4 {BOB}");
    let carol_origin = format!("o=carol 3333 1 IN IP4 {CAROL}");
    assert!(bob_sdp.contains(&bob_origin), "{bob_sdp}");
    assert!(carol_sdp.contains(&carol_origin), "{carol_sdp}");
    let reoffer = alice.find("re-INVITE", |m| !m.sent && m.is_request("INVITE"));
    assert_eq!(
        String::from_utf8_lossy(&reoffer.body),
        carol_sdp.replace(&carol_origin, &format!("o=bob 2222 2 IN IP4 {BOB}")),
        "A's new SDP is carol's with the origin line continued"
    );
    assert!(
        reoffer.at
            >= carol
                .find("200", |m| m.sent && m.is_response(200, "INVITE"))
                .at
    );
    // A's hang-up reached carol.
    let hung_up = alice.find("BYE", |m| m.sent && m.is_request("BYE"));
    let bye = carol.find("BYE", |m| !m.sent && m.is_request("BYE"));
    assert!(bye.at >= hung_up.at);
    assert_all_ended(&daemon);
}

/// Flow 9: blind transfer, media anchored (RFC 7092 §3.1.3). As flow 8, but A hears
/// nothing of it (the relay is re-joined; no re-INVITE, which would fail A's scenario),
/// and carol's INVITE has Tandem's SDP, not A's. A hangs up after the transfer; its BYE
/// reaches carol.
#[test]
fn blind_transfer_media_anchored() {
    let test = "b2b-transfer-anchored";
    let (bob_port, carol_port) = (free_port_on(BOB), free_port_on(CAROL));
    let daemon = tandem(
        test,
        &transfer_routes("media = \"anchored\"", bob_port, carol_port),
    );
    let carol = Party::callee(
        test,
        "carol",
        (CAROL, carol_port),
        "transfer_target_answers.xml",
        &[],
    );
    let bob = Party::callee(
        test,
        "bob",
        (BOB, bob_port),
        "callee_refers.xml",
        &["-key", "tandem", &tandem_address(&daemon)],
    );
    let alice = Party::caller_with(
        test,
        &daemon,
        "caller_waits_hangs_up.xml",
        "bob",
        &["-d", "1500"],
    );
    let (bob, carol) = (bob.finish(), carol.finish());
    assert_succeeded(&[&alice, &bob, &carol], &daemon);
    assert_transfer_hidden(&alice, &bob, &carol, true);
    let statuses: Vec<String> = notified(&bob).into_iter().map(|(s, _)| s).collect();
    assert_eq!(
        statuses,
        [
            "SIP/2.0 100 Trying",
            "SIP/2.0 180 Ringing",
            "SIP/2.0 200 OK"
        ]
    );
    assert_referred(&carol);
    let invite = carol.find("INVITE", |m| !m.sent && m.is_request("INVITE"));
    let sdp = String::from_utf8_lossy(&invite.body);
    assert!(sdp.contains(&format!("c=IN IP4 {TANDEM}")), "{sdp}");
    assert!(!sdp.contains("o=alice") && !sdp.contains("o=bob"), "{sdp}");
    assert!(
        !alice.received().any(|m| m.is_request("INVITE")),
        "A was re-INVITEd"
    );
    // The transfer was over before A hung up (else this flow tested something else).
    let hung_up = alice.find("BYE", |m| m.sent && m.is_request("BYE"));
    assert!(final_notify(&bob).at <= hung_up.at, "A hung up too early");
    let bye = carol.find("BYE", |m| !m.sent && m.is_request("BYE"));
    assert!(bye.at >= hung_up.at);
    assert_all_ended(&daemon);
}

/// Flow 10: a transfer to a busy target (RFC 3515 §2.4.5). Carol answers 486; bob's
/// final NOTIFY says `SIP/2.0 486 Busy Here`; bob stays, and A stays bridged to bob: A's
/// BYE reaches bob. A is never re-INVITEd.
#[test]
fn transfer_to_a_busy_target_keeps_the_bridge() {
    let test = "b2b-transfer-busy";
    let (bob_port, carol_port) = (free_port_on(BOB), free_port_on(CAROL));
    let daemon = tandem(test, &transfer_routes("", bob_port, carol_port));
    let carol = Party::callee(
        test,
        "carol",
        (CAROL, carol_port),
        "transfer_target_busy.xml",
        &[],
    );
    let bob = Party::callee(
        test,
        "bob",
        (BOB, bob_port),
        "callee_refers_target_busy.xml",
        &["-key", "tandem", &tandem_address(&daemon)],
    );
    let alice = Party::caller_with(
        test,
        &daemon,
        "caller_waits_hangs_up.xml",
        "bob",
        &["-d", "1500"],
    );
    let (bob, carol) = (bob.finish(), carol.finish());
    assert_succeeded(&[&alice, &bob, &carol], &daemon);
    assert_transfer_hidden(&alice, &bob, &carol, false);
    let progress = notified(&bob);
    let statuses: Vec<&str> = progress.iter().map(|(s, _)| s.as_str()).collect();
    assert_eq!(statuses, ["SIP/2.0 100 Trying", "SIP/2.0 486 Busy Here"]);
    assert!(progress[1].1.starts_with("terminated"), "{progress:?}");
    assert_referred(&carol);
    assert!(
        !bob.messages.iter().any(|m| m.sent && m.is_request("BYE")),
        "bob hung up"
    );
    assert!(
        !alice.received().any(|m| m.is_request("INVITE")),
        "A was re-INVITEd"
    );
    let hung_up = alice.find("BYE", |m| m.sent && m.is_request("BYE"));
    assert!(final_notify(&bob).at <= hung_up.at, "A hung up too early");
    let bye = bob.find("BYE", |m| !m.sent && m.is_request("BYE"));
    assert!(bye.at >= hung_up.at, "bob's leg ended before A hung up");
    assert_all_ended(&daemon);
}
