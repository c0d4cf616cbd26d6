//! Several SIPp parties on their own loopback addresses around one daemon on 127.0.0.10
//! (Tandem), each with its message trace read back for the test to check: A (alice) on
//! 127.0.0.11, B (bob) on 127.0.0.12, C (carol) on 127.0.0.13. The harness of
//! `sipp_b2bua.rs`, shared so that other three-party suites (`sipp_park.rs`) use the same
//! one; scenarios are named from `tests/sipp/` (`park/callee_parks.xml`).

use super::{Daemon, repo_root, scratch_dir};
use std::net::{SocketAddr, UdpSocket};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

pub const TANDEM: &str = "127.0.0.10";
pub const ALICE: &str = "127.0.0.11";
pub const BOB: &str = "127.0.0.12";
pub const CAROL: &str = "127.0.0.13";

/// Bounds every SIPp run: a scenario stuck on a message that never comes fails in this
/// time instead of hanging the test.
pub const SIPP_TIMEOUT: &str = "20s";

/// A's Call-ID (SIPp's `-cid_str`); A's From tag has `secret` too (in the scenarios).
pub const ALICE_CALL_ID: &str = "alice-%u-%p-secret@%s";

/// A port free for UDP on `ip` at the time of the call.
pub fn free_port_on(ip: &str) -> u16 {
    UdpSocket::bind((ip, 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Tandem's SIP address, `127.0.0.10:PORT`.
pub fn tandem_address(daemon: &Daemon) -> String {
    SocketAddr::new(TANDEM.parse().unwrap(), daemon.port).to_string()
}

/// How far two SIPp processes' trace stamps may disagree about the order of events
/// that happened in order. Each SIPp stamps a message when it gets round to logging it:
/// a SIPp descheduled between its `sendto` and its trace line stamps a request after the
/// peer (through Tandem, a fraction of a millisecond away) stamped what it caused. On two
/// loaded cores that is a few milliseconds; a real ordering bug is a protocol step apart.
pub const TRACE_SKEW: f64 = 0.02;

/// `later` came after `earlier`, as two SIPp traces can tell (see [`TRACE_SKEW`]). An
/// inversion within the skew is printed.
pub fn in_order(earlier: &SipMessage, later: &SipMessage) -> bool {
    if later.at < earlier.at {
        eprintln!(
            "trace stamps inverted by {:.6} s: {:?} at {:.6}, then {:?} at {:.6}",
            earlier.at - later.at,
            earlier.first_line,
            earlier.at,
            later.first_line,
            later.at
        );
    }
    later.at >= earlier.at - TRACE_SKEW
}

/// One message of a SIPp `-trace_msg` file.
#[derive(Debug, Clone)]
pub struct SipMessage {
    /// Seconds on the wall clock (only differences are used; every SIPp runs on this
    /// machine's clock).
    pub at: f64,
    /// SIPp sent it (else it received it).
    pub sent: bool,
    pub first_line: String,
    /// Header lines as written.
    pub headers: Vec<String>,
    pub body: Vec<u8>,
}

impl SipMessage {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find_map(|h| {
            let (n, v) = h.split_once(':')?;
            n.trim().eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }

    pub fn is_request(&self, method: &str) -> bool {
        self.first_line.starts_with(&format!("{method} "))
    }

    /// A response with `status` to a `method` request.
    pub fn is_response(&self, status: u16, method: &str) -> bool {
        self.first_line.starts_with(&format!("SIP/2.0 {status} "))
            && self
                .header("CSeq")
                .is_some_and(|c| c.split_whitespace().nth(1) == Some(method))
    }

    pub fn body_text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn summary(&self) -> String {
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
pub fn parse_trace(text: &str) -> Vec<SipMessage> {
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
pub struct Party {
    role: String,
    child: Child,
    dir: PathBuf,
}

/// One SIPp party, done.
pub struct Finished {
    pub role: String,
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
    pub errors: String,
    pub messages: Vec<SipMessage>,
    pub trace: PathBuf,
}

impl Party {
    /// Starts SIPp as `role` on `ip:port` with `scenario` (a path under `tests/sipp/`; SIPp
    /// works in its directory), one call, its message trace and error log in a scratch
    /// directory.
    pub fn spawn(
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
        let scenario = repo_root().join("tests/sipp").join(scenario);
        let cwd = scenario.parent().unwrap().to_owned();
        let child = Command::new("sipp")
            .arg("-sf")
            .arg(&scenario)
            .args(["-i", ip, "-p", &port.to_string(), "-m", "1"])
            .args(["-nostdin", "-timeout", SIPP_TIMEOUT, "-timeout_error"])
            .args(["-trace_msg", "-message_file"])
            .arg(dir.join("messages.log"))
            .args(["-trace_err", "-error_file"])
            .arg(dir.join("errors.log"))
            .args(args)
            .current_dir(cwd)
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
    pub fn callee(
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

    /// A UAC as `role` on `ip` (a free port) that sends to Tandem for `user` (`-s`);
    /// started, not waited for.
    pub fn dialer(
        test: &str,
        role: &str,
        daemon: &Daemon,
        ip: &str,
        scenario: &str,
        user: &str,
        args: &[&str],
    ) -> Party {
        let remote = tandem_address(daemon);
        let mut all = vec![remote.as_str(), "-s", user];
        all.extend_from_slice(args);
        Party::spawn(test, role, (ip, free_port_on(ip)), scenario, &all)
    }

    /// The caller (UAC) A on 127.0.0.11, calling `user` at Tandem with A's Call-ID;
    /// started, not waited for (more SIPp arguments in `args`: `-d MS` for a `<pause/>`).
    pub fn calling(
        test: &str,
        daemon: &Daemon,
        scenario: &str,
        user: &str,
        args: &[&str],
    ) -> Party {
        let mut all = vec!["-cid_str", ALICE_CALL_ID];
        all.extend_from_slice(args);
        Party::dialer(test, "alice", daemon, ALICE, scenario, user, &all)
    }

    /// The caller (UAC) A on 127.0.0.11: calls `user` at Tandem, runs to its end.
    pub fn caller(test: &str, daemon: &Daemon, scenario: &str, user: &str) -> Finished {
        Party::caller_with(test, daemon, scenario, user, &[])
    }

    /// [`caller`](Self::caller) with more SIPp arguments (`-d MS` for a `<pause/>`).
    pub fn caller_with(
        test: &str,
        daemon: &Daemon,
        scenario: &str,
        user: &str,
        args: &[&str],
    ) -> Finished {
        Party::calling(test, daemon, scenario, user, args).finish()
    }

    /// The messages traced so far (SIPp writes its trace as it goes).
    pub fn messages(&self) -> Vec<SipMessage> {
        parse_trace(&std::fs::read_to_string(self.dir.join("messages.log")).unwrap_or_default())
    }

    /// Waits until a traced message matches `which` (for a test to start the next party
    /// only once this one got somewhere); panics after `timeout` or if SIPp exits first.
    #[track_caller]
    pub fn wait_for(
        &mut self,
        what: &str,
        timeout: Duration,
        which: impl Fn(&SipMessage) -> bool,
    ) -> SipMessage {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(m) = self.messages().into_iter().find(|m| which(m)) {
                return m;
            }
            let exited = self.child.try_wait().unwrap();
            if exited.is_some() || Instant::now() > deadline {
                if exited.is_none() {
                    let _ = self.child.kill();
                }
                let status = self.child.wait().unwrap();
                let errors =
                    std::fs::read_to_string(self.dir.join("errors.log")).unwrap_or_default();
                panic!(
                    "{} got no {what} (SIPp {status}); messages:\n  {}\nerrors.log:\n{errors}",
                    self.role,
                    self.messages()
                        .iter()
                        .map(SipMessage::summary)
                        .collect::<Vec<_>>()
                        .join("\n  ")
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits for SIPp's exit (its `-timeout` bounds it).
    pub fn finish(self) -> Finished {
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
    pub fn report(&self) -> String {
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
    pub fn find(&self, what: &str, which: impl Fn(&SipMessage) -> bool) -> &SipMessage {
        self.messages
            .iter()
            .find(|m| which(m))
            .unwrap_or_else(|| panic!("{} has no {what}\n{}", self.role, self.report()))
    }

    pub fn received(&self) -> impl Iterator<Item = &SipMessage> {
        self.messages.iter().filter(|m| !m.sent)
    }

    /// Call-IDs of the messages this party sent or got.
    pub fn call_ids(&self) -> Vec<&str> {
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
pub fn assert_succeeded(parties: &[&Finished], daemon: &Daemon) {
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
pub fn leaks(party: &Finished, needles: &[&str], bodies_too: bool, except: &[&str]) -> Vec<String> {
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

/// Tandem ends every leg: no call, no dialog left.
#[track_caller]
pub fn assert_all_ended(daemon: &Daemon) {
    let stats = daemon.wait_for_stats(Duration::from_secs(5), |s| {
        s.get("calls") == 0 && s.get("dialogs") == 0
    });
    assert_eq!(
        (stats.get("calls"), stats.get("dialogs")),
        (0, 0),
        "calls or dialogs left: {stats:?}"
    );
}
