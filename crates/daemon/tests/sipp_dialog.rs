//! SIPp conformance of the dialog layer against the real daemon on loopback: re-INVITE hold
//! and resume (RFC 3261 §14, RFC 3264 §8.4), UPDATE (RFC 3311), reliable provisionals and
//! PRACK (RFC 3262), session timers (RFC 4028: negotiation, refresh, expiry, 422), re-INVITE
//! glare (RFC 3261 §14.1), 481 outside any dialog (§12.2.2) and a 2xx never acknowledged
//! (§13.3.1.4). Each test asserts SIPp's exit code and call counts, what SIPp's message trace
//! shows where timing matters (its `-trace_msg` file, on SIPp's clock, with loose bounds:
//! this is conformance, not a benchmark), and the daemon's stats afterwards. The scenarios
//! are in `tests/sipp/`; each one's comment says what it checks.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use common::{Daemon, SippRun, Stats, scratch_dir, sipp};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

/// One message of SIPp's `-trace_msg` file, which logs every message sent or received as
/// `----- <date> <time>`, `UDP message sent (n bytes):` or `UDP message received [n] bytes :`,
/// a blank line, then the message.
#[derive(Debug, Clone)]
struct Message {
    /// Seconds on SIPp's wall clock (only differences are used).
    at: f64,
    /// SIPp sent it (else it received it).
    sent: bool,
    call_id: String,
    /// The CSeq value: `1 INVITE`.
    cseq: String,
    /// The request line or status line.
    first_line: String,
}

impl Message {
    fn is_response(&self, status: u16, cseq: &str) -> bool {
        self.first_line.starts_with(&format!("SIP/2.0 {status} ")) && self.cseq == cseq
    }

    fn is_request(&self, method: &str) -> bool {
        self.first_line.starts_with(&format!("{method} "))
    }
}

/// A SIPp run with its message traces.
#[derive(Debug)]
struct Run {
    sipp: SippRun,
    dir: PathBuf,
    messages: Vec<Message>,
}

impl Run {
    /// The messages of each call, by Call-ID, in order.
    fn calls(&self) -> BTreeMap<String, Vec<Message>> {
        let mut calls: BTreeMap<String, Vec<Message>> = BTreeMap::new();
        for m in &self.messages {
            calls.entry(m.call_id.clone()).or_default().push(m.clone());
        }
        calls
    }

    /// What to print when an assertion fails: SIPp's output, its error log and the end of
    /// its full message trace.
    fn report(&self) -> String {
        let read = |file: &str| std::fs::read_to_string(self.dir.join(file)).unwrap_or_default();
        let messages = read("messages.log");
        let tail: Vec<&str> = messages.lines().rev().take(150).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        format!(
            "SIPp: exit {} successful {} failed {}\nstdout:\n{}\nstderr:\n{}\nerrors.log:\n{}\n\
             end of messages.log ({}):\n{}",
            self.sipp.exit_code,
            self.sipp.successful,
            self.sipp.failed,
            self.sipp.stdout,
            self.sipp.stderr,
            read("errors.log"),
            self.dir.join("messages.log").display(),
            tail.join("\n")
        )
    }

    #[track_caller]
    fn assert_all_succeeded(&self, calls: u64) {
        assert!(
            self.sipp.exit_code == 0 && self.sipp.successful == calls && self.sipp.failed == 0,
            "want {calls} successful calls\n{}",
            self.report()
        );
        assert_eq!(self.calls().len() as u64, calls, "{}", self.report());
    }
}

/// Runs SIPp with its message trace (`-trace_msg`) and error log on, both in the run's
/// scratch directory.
fn sipp_traced(name: &str, daemon: &Daemon, args: &[&str]) -> Run {
    let dir = scratch_dir(name);
    let file = |f: &str| dir.join(f).to_string_lossy().into_owned();
    let (messages, errors) = (file("messages.log"), file("errors.log"));
    for f in [&messages, &errors] {
        let _ = std::fs::remove_file(f);
    }
    let mut all: Vec<&str> = args.to_vec();
    all.extend([
        "-trace_msg",
        "-message_file",
        &messages,
        "-trace_err",
        "-error_file",
        &errors,
    ]);
    let run = sipp(name, daemon, &all);
    let messages = parse_trace(&std::fs::read_to_string(&messages).unwrap_or_default());
    Run {
        sipp: run,
        dir,
        messages,
    }
}

/// Runs `scenario` against `echo` once, then five calls at 10 per second; both must
/// succeed completely.
fn one_then_five(daemon: &Daemon, name: &str, scenario: &str) -> (Run, Run) {
    let args = ["-sf", scenario, "-s", "echo"];
    let one = sipp_traced(
        &format!("{name}-1"),
        daemon,
        &[&args[..], &["-m", "1"]].concat(),
    );
    one.assert_all_succeeded(1);
    let five = sipp_traced(
        &format!("{name}-5"),
        daemon,
        &[&args[..], &["-m", "5", "-r", "10"]].concat(),
    );
    five.assert_all_succeeded(5);
    (one, five)
}

/// The messages of a `-trace_msg` file, in order. (SIPp's `-trace_shortmsg` file would be
/// simpler to read, but SIPp 3.6 leaves messages out of it.)
fn parse_trace(text: &str) -> Vec<Message> {
    let mut messages = Vec::new();
    for block in text
        .split("-----------------------------------------------")
        .skip(1)
    {
        let mut lines = block.lines();
        let Some(at) = lines.next().and_then(|l| parse_timestamp(l.trim())) else {
            continue;
        };
        let sent = match lines.next().map(str::trim) {
            Some(l) if l.contains(" message sent ") => true,
            Some(l) if l.contains(" message received ") && !l.starts_with("Unexpected") => false,
            _ => continue,
        };
        let mut lines = lines
            .map(|l| l.trim_end_matches('\r'))
            .skip_while(|l| l.is_empty());
        let Some(first_line) = lines.next() else {
            continue;
        };
        let mut call_id = String::new();
        let mut cseq = String::new();
        for line in lines.take_while(|l| !l.is_empty()) {
            let Some((name, value)) = line.split_once(':') else {
                continue;
            };
            match name.trim().to_ascii_lowercase().as_str() {
                "call-id" | "i" => call_id = value.trim().to_owned(),
                "cseq" => cseq = value.split_whitespace().collect::<Vec<_>>().join(" "),
                _ => {}
            }
        }
        messages.push(Message {
            at,
            sent,
            call_id,
            cseq,
            first_line: first_line.to_owned(),
        });
    }
    messages
}

/// `2026-11-21 12:25:46.949063` as seconds since 1970 (the civil-from-days algorithm; the
/// time zone does not matter, only differences are used).
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

/// Runs two SIPp instances at once against the same daemon: the scenario's single call, and
/// a few more at once. The scenarios that wait on Tandem's timers run both in the time of one.
fn sipp_twice_at_once(name: &str, daemon: &Daemon, args: &[&str], calls: &str) -> (Run, Run) {
    std::thread::scope(|scope| {
        let one = scope.spawn(|| {
            let mut args = args.to_vec();
            args.extend(["-m", "1"]);
            sipp_traced(&format!("{name}-1"), daemon, &args)
        });
        let many = scope.spawn(|| {
            let mut args = args.to_vec();
            args.extend(["-m", calls, "-r", "10"]);
            sipp_traced(&format!("{name}-{calls}"), daemon, &args)
        });
        (one.join().unwrap(), many.join().unwrap())
    })
}

/// Waits until every dialog is gone, then checks the calls the daemon answered.
#[track_caller]
fn assert_calls_answered_and_dialogs_gone(daemon: &Daemon, answered: u64) -> Stats {
    let stats = daemon.wait_for_stats(Duration::from_secs(10), |s| s.get("dialogs") == 0);
    assert_eq!(stats.get("dialogs"), 0, "{stats:?}");
    assert_eq!(stats.get("calls_answered"), answered, "{stats:?}");
    stats
}

/// How many calls the daemon logged as ended for `reason` (an `EndReason`).
fn calls_ended(daemon: &Daemon, reason: &str) -> usize {
    daemon
        .lines()
        .iter()
        .filter(|l| l.contains("call ended") && l.contains(&format!("reason={reason}")))
        .count()
}

/// When the first message of `call` that `pick` accepts was sent or received.
#[track_caller]
fn time_of(call: &[Message], what: &str, pick: impl Fn(&Message) -> bool) -> f64 {
    call.iter()
        .find(|m| pick(m))
        .map(|m| m.at)
        .unwrap_or_else(|| panic!("no {what} in {call:#?}"))
}

// ---- 1. re-INVITE hold and resume

#[test]
fn reinvite_hold_is_answered_recvonly_and_resume_sendrecv_with_new_versions() {
    let daemon = Daemon::start("hold", "");
    one_then_five(&daemon, "hold", "reinvite_hold_resume.xml");
    let stats = assert_calls_answered_and_dialogs_gone(&daemon, 6);
    // A re-INVITE is no new call.
    assert_eq!(stats.get("invites_new"), 6, "{stats:?}");
    assert_eq!(calls_ended(&daemon, "RemoteTerminated"), 6);
}

// ---- 2. UPDATE

#[test]
fn update_with_an_offer_is_answered_and_a_bodiless_update_refreshes_the_session() {
    let daemon = Daemon::start("update", "");
    one_then_five(&daemon, "update", "update_offer_and_refresh.xml");
    let stats = assert_calls_answered_and_dialogs_gone(&daemon, 6);
    assert_eq!(stats.get("invites_new"), 6, "{stats:?}");
    assert_eq!(calls_ended(&daemon, "RemoteTerminated"), 6);
}

// ---- 3. 100rel and PRACK

/// `echo` answers at once: with `Require: 100rel` its 180 goes reliably and its 200 follows
/// without waiting for the PRACK, which RFC 3262 §3 allows as the 180 has no SDP. The PRACK,
/// crossing the 200, must still be matched and answered 200.
#[test]
fn reliable_180_carries_rseq_and_its_prack_gets_200() {
    let daemon = Daemon::start("prack", "");
    let (one, five) = one_then_five(&daemon, "prack", "prack_100rel.xml");
    for run in [&one, &five] {
        for (call_id, call) in run.calls() {
            let prack_ok = call.iter().filter(|m| m.is_response(200, "2 PRACK"));
            assert_eq!(prack_ok.count(), 1, "{call_id}: {call:#?}");
        }
    }
    assert_calls_answered_and_dialogs_gone(&daemon, 6);
    assert_eq!(calls_ended(&daemon, "RemoteTerminated"), 6);
}

// ---- 4. Session timer refreshed by the UAC

#[test]
fn session_timer_is_negotiated_and_refreshed_by_update_and_reinvite() {
    let daemon = Daemon::start("refresh", "");
    let args = [
        "-sf",
        "session_timer_refresh.xml",
        "-s",
        "echo",
        "-d",
        "3000",
    ];
    let one = sipp_traced("refresh-1", &daemon, &[&args[..], &["-m", "1"]].concat());
    one.assert_all_succeeded(1);
    let three = sipp_traced(
        "refresh-3",
        &daemon,
        &[&args[..], &["-m", "3", "-r", "10"]].concat(),
    );
    three.assert_all_succeeded(3);
    let stats = assert_calls_answered_and_dialogs_gone(&daemon, 4);
    assert_eq!(stats.get("invites_new"), 4, "{stats:?}");
    assert_eq!(calls_ended(&daemon, "RemoteTerminated"), 4);
}

/// The same scenario with 32 s pauses: the UPDATE refresh at 32 s must restart Tandem's timer,
/// or it would send BYE at 60 s (90 - 30), before our re-INVITE at 64 s. SIPp sends no RTP:
/// the media timeout (60 s by default) is off, or it would end the calls at 60 s.
#[test]
fn a_refresh_restarts_the_session_timer() {
    let daemon = Daemon::start_with("refresh-restarts", "", "[media]\ntimeout_s = 0\n");
    let (one, three) = sipp_twice_at_once(
        "refresh-restarts",
        &daemon,
        &[
            "-sf",
            "session_timer_refresh.xml",
            "-s",
            "echo",
            "-d",
            "32000",
        ],
        "3",
    );
    one.assert_all_succeeded(1);
    three.assert_all_succeeded(3);
    for run in [&one, &three] {
        for (call_id, call) in run.calls() {
            let ok = time_of(&call, "200 to the INVITE", |m| {
                m.is_response(200, "1 INVITE")
            });
            let reinvite = time_of(&call, "re-INVITE", |m| m.sent && m.cseq == "3 INVITE");
            assert!(
                reinvite - ok > 62.0,
                "{call_id}: the re-INVITE went {:.1} s after the 200, not past the 60 s mark",
                reinvite - ok
            );
            assert!(
                !call.iter().any(|m| !m.sent && m.is_request("BYE")),
                "{call_id}: Tandem sent BYE\n{}",
                run.report()
            );
        }
    }
    assert_calls_answered_and_dialogs_gone(&daemon, 4);
    assert_eq!(calls_ended(&daemon, "RemoteTerminated"), 4);
    assert_eq!(calls_ended(&daemon, "SessionExpired"), 0);
}

// ---- 5. Session timer expiry

#[test]
fn session_expires_without_a_refresh_and_tandem_sends_bye_before_the_interval_ends() {
    // SIPp sends no RTP: the media timeout (60 s by default) is off, or it would race the
    // session timer's BYE at 60 s.
    let daemon = Daemon::start_with("expiry", "", "[media]\ntimeout_s = 0\n");
    let (one, three) = sipp_twice_at_once(
        "expiry",
        &daemon,
        &["-sf", "session_timer_expiry.xml", "-s", "echo"],
        "3",
    );
    one.assert_all_succeeded(1);
    three.assert_all_succeeded(3);
    for run in [&one, &three] {
        for (call_id, call) in run.calls() {
            let ok = time_of(&call, "200 to the INVITE", |m| {
                m.is_response(200, "1 INVITE")
            });
            let bye = time_of(&call, "BYE from Tandem", |m| !m.sent && m.is_request("BYE"));
            // RFC 4028 §10: 90 - min(32, 90 / 3) = 60 s; anything from 55 s to the end of
            // the interval passes.
            let after = bye - ok;
            assert!(
                (55.0..90.0).contains(&after),
                "{call_id}: BYE {after:.1} s after the 200\n{}",
                run.report()
            );
        }
    }
    assert_calls_answered_and_dialogs_gone(&daemon, 4);
    assert_eq!(calls_ended(&daemon, "SessionExpired"), 4);
}

// ---- 6. 422 Session Interval Too Small

#[test]
fn session_interval_below_min_se_gets_422_and_the_retry_is_answered() {
    let daemon = Daemon::start("too-small", "");
    let (one, five) = one_then_five(&daemon, "too-small", "session_timer_422.xml");
    for run in [&one, &five] {
        for (call_id, call) in run.calls() {
            // The 422 comes before any ringing: the request is refused on arrival.
            let first: Vec<&str> = call
                .iter()
                .filter(|m| !m.sent && m.cseq == "1 INVITE")
                .map(|m| m.first_line.as_str())
                .filter(|l| !l.starts_with("SIP/2.0 100 "))
                .collect();
            // Once: the ACK on the INVITE's branch stopped its retransmissions (the scenario
            // waits 700 ms after it).
            assert_eq!(
                first,
                ["SIP/2.0 422 Session Interval Too Small"],
                "{call_id}\n{}",
                run.report()
            );
        }
    }
    let stats = assert_calls_answered_and_dialogs_gone(&daemon, 6);
    // Only the retries reached the `echo` user.
    assert_eq!(stats.get("invites_new"), 6, "{stats:?}");
    assert_eq!(calls_ended(&daemon, "RemoteTerminated"), 6);
}

// ---- 7. Glare

#[test]
fn glare_on_a_session_refresh_gets_491_and_tandem_retries_within_2_s() {
    let daemon = Daemon::start("glare", "");
    let (one, three) = sipp_twice_at_once(
        "glare",
        &daemon,
        &["-sf", "glare_reinvite.xml", "-s", "echo"],
        "3",
    );
    one.assert_all_succeeded(1);
    three.assert_all_succeeded(3);
    for run in [&one, &three] {
        for (call_id, call) in run.calls() {
            let ok = time_of(&call, "200 to the INVITE", |m| {
                m.is_response(200, "1 INVITE")
            });
            let refresh = time_of(&call, "Tandem's refresh", |m| {
                !m.sent && m.is_request("INVITE")
            });
            // RFC 4028 §10: the refresher refreshes at half the interval.
            assert!(
                (40.0..50.0).contains(&(refresh - ok)),
                "{call_id}: refresh {:.1} s after the 200\n{}",
                refresh - ok,
                run.report()
            );
            let ours_491 = time_of(&call, "our 491", |m| {
                m.sent && m.first_line.starts_with("SIP/2.0 491 ")
            });
            let retry = call
                .iter()
                .filter(|m| !m.sent && m.is_request("INVITE"))
                .nth(1)
                .map(|m| m.at)
                .unwrap_or_else(|| panic!("{call_id}: no retry\n{}", run.report()));
            // RFC 3261 §14.1: the UAS of the dialog waits 0 to 2 s; a little slack for the
            // scheduler.
            let wait = retry - ours_491;
            assert!(
                (0.0..2.25).contains(&wait),
                "{call_id}: the retry came {wait:.2} s after our 491\n{}",
                run.report()
            );
            // Tandem's 491 to our re-INVITE came once: our ACK on its branch matched (the
            // scenario waits a second before hanging up).
            let tandem_491 = call
                .iter()
                .filter(|m| !m.sent && m.is_response(491, "2 INVITE"))
                .count();
            assert_eq!(tandem_491, 1, "{call_id}\n{}", run.report());
        }
    }
    let stats = assert_calls_answered_and_dialogs_gone(&daemon, 4);
    assert_eq!(stats.get("invites_new"), 4, "{stats:?}");
    assert_eq!(calls_ended(&daemon, "RemoteTerminated"), 4);
}

// ---- 8. 481 for an unknown dialog

#[test]
fn requests_in_an_unknown_dialog_get_481() {
    let daemon = Daemon::start("no-dialog", "");
    one_then_five(&daemon, "no-dialog", "unknown_dialog_481.xml");
    let stats = assert_calls_answered_and_dialogs_gone(&daemon, 0);
    assert_eq!(stats.get("invites_new"), 0, "{stats:?}");
    // Each BYE, INFO and UPDATE reached the daemon (SIPp may retransmit one under load) and
    // was answered; none was dropped.
    assert!(stats.get("requests_in") >= 18, "{stats:?}");
    assert_eq!(stats.get("dropped"), 0, "{stats:?}");
}

// ---- 9. A 2xx never acknowledged

#[test]
fn unacknowledged_200_is_retransmitted_then_bye_after_64_t1() {
    let daemon = Daemon::start("no-ack", "");
    let (one, two) = sipp_twice_at_once(
        "no-ack",
        &daemon,
        &["-sf", "ack_never_sent.xml", "-s", "echo"],
        "2",
    );
    one.assert_all_succeeded(1);
    two.assert_all_succeeded(2);
    for run in [&one, &two] {
        for (call_id, call) in run.calls() {
            let oks: Vec<f64> = call
                .iter()
                .filter(|m| !m.sent && m.is_response(200, "1 INVITE"))
                .map(|m| m.at)
                .collect();
            let bye = time_of(&call, "BYE from Tandem", |m| !m.sent && m.is_request("BYE"));
            let report = || format!("{call_id}: 200s at {oks:?}, BYE at {bye}\n{}", run.report());
            // §13.3.1.4: at T1 = 0.5 s, then doubling up to T2 = 4 s, for 64·T1 = 32 s: 0.5,
            // 1.5, 3.5, 7.5, then every 4 s: 10 retransmissions. Loosely: at least 8.
            assert!(oks.len() >= 9, "{}", report());
            let gaps: Vec<f64> = oks.windows(2).map(|w| w[1] - w[0]).collect();
            assert!((0.3..1.0).contains(&gaps[0]), "{}", report());
            assert!(gaps.iter().all(|g| *g < 4.5), "{}", report());
            assert!(gaps.iter().any(|g| *g > 3.5), "{}", report());
            let after = bye - oks[0];
            assert!((30.0..36.0).contains(&after), "{}", report());
            assert!(oks.iter().all(|at| *at < bye), "{}", report());
        }
    }
    assert_calls_answered_and_dialogs_gone(&daemon, 3);
    assert_eq!(calls_ended(&daemon, "Timeout"), 3);
}

// ---- the trace reader itself

#[test]
fn trace_reader_reads_sipp_message_log() {
    let log = "----------------------------------------------- 2026-11-21 23:59:59.750000\n\
               UDP message sent (100 bytes):\n\n\
               INVITE sip:echo@127.0.0.1:5060 SIP/2.0\r\n\
               Call-ID: 1-42@127.0.0.1\r\n\
               CSeq:   1   INVITE\r\n\r\n\
               v=0\r\n\n\
               ----------------------------------------------- 2026-11-22 00:00:01.000000\n\
               UDP message received [90] bytes :\n\n\
               SIP/2.0 200 OK\r\n\
               Call-ID: 1-42@127.0.0.1\r\n\
               CSeq: 1 INVITE\r\n\r\n\n\
               ----------------------------------------------- 2026-11-22 00:00:01.000000\n\
               Unexpected UDP message received:\n\n\
               SIP/2.0 200 OK\r\n\
               Call-ID: 1-42@127.0.0.1\r\n\n";
    let messages = parse_trace(log);
    assert_eq!(messages.len(), 2, "{messages:#?}");
    assert!(messages[0].sent && messages[0].is_request("INVITE"));
    assert_eq!(messages[0].call_id, "1-42@127.0.0.1");
    assert!(!messages[1].sent && messages[1].is_response(200, "1 INVITE"));
    // Across midnight: 1.25 s.
    assert!((messages[1].at - messages[0].at - 1.25).abs() < 1e-6);
    assert_eq!(
        parse_timestamp("1970-01-02 00:00:00.5"),
        Some(86_400.5),
        "days since the epoch"
    );
}
