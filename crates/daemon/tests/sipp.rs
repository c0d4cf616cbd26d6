//! SIPp conformance: SIPp's built-in and our own scenarios (tests/sipp/) against the real
//! daemon on loopback. Each test asserts SIPp's exit code and its call counts.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{Daemon, SippRun, sipp};
use std::time::Duration;

#[track_caller]
fn assert_all_succeeded(run: &SippRun, calls: u64) {
    assert!(
        run.exit_code == 0 && run.successful == calls && run.failed == 0,
        "SIPp: exit {} successful {} failed {} (want {calls} successful)\nstdout:\n{}\nstderr:\n{}",
        run.exit_code,
        run.successful,
        run.failed,
        run.stdout,
        run.stderr
    );
}

#[test]
fn builtin_uac_200_calls_at_50_cps_over_udp() {
    let daemon = Daemon::start("uac-udp", "");
    let run = sipp(
        "uac-udp",
        &daemon,
        &["-sn", "uac", "-s", "echo", "-m", "200", "-r", "50"],
    );
    assert_all_succeeded(&run, 200);
    let stats = daemon.wait_for_stats(Duration::from_secs(40), |s| s.get("dialogs") == 0);
    assert_eq!(stats.get("dialogs"), 0, "{stats:?}");
    assert!(stats.get("calls_answered") >= 200, "{stats:?}");
}

#[test]
fn builtin_uac_over_tcp() {
    let daemon = Daemon::start("uac-tcp", "");
    let run = sipp(
        "uac-tcp",
        &daemon,
        &[
            "-sn", "uac", "-s", "echo", "-m", "50", "-r", "50", "-t", "t1",
        ],
    );
    assert_all_succeeded(&run, 50);
}

#[test]
fn options_gets_200_with_allow_accept_supported() {
    let daemon = Daemon::start("options", "");
    let run = sipp("options", &daemon, &["-sf", "options.xml", "-m", "5"]);
    assert_all_succeeded(&run, 5);
}

#[test]
fn cancel_before_answer_gets_487() {
    let daemon = Daemon::start("cancel", "");
    let run = sipp(
        "cancel",
        &daemon,
        &["-sf", "cancel.xml", "-s", "ring", "-m", "10", "-r", "10"],
    );
    assert_all_succeeded(&run, 10);
    let stats = daemon.wait_for_stats(Duration::from_secs(5), |s| s.get("dialogs") == 0);
    assert_eq!(stats.get("dialogs"), 0, "{stats:?}");
}

#[test]
fn retransmitted_invite_is_absorbed() {
    let daemon = Daemon::start("retrans", "");
    let run = sipp(
        "retrans",
        &daemon,
        // -nr: see the scenario; SIPp's own retransmissions would ping-pong with ours.
        &[
            "-sf",
            "retransmitted_invite.xml",
            "-s",
            "ring",
            "-m",
            "5",
            "-r",
            "5",
            "-nr",
        ],
    );
    assert_all_succeeded(&run, 5);
    let stats = daemon.stats();
    // Each INVITE reached the user agent once: five calls, not ten.
    assert_eq!(stats.get("invites_new"), 5, "{stats:?}");
}

#[test]
fn unknown_method_gets_501() {
    let daemon = Daemon::start("unknown-method", "");
    let run = sipp(
        "unknown-method",
        &daemon,
        &["-sf", "unknown_method.xml", "-s", "echo", "-m", "3"],
    );
    assert_all_succeeded(&run, 3);
}

#[test]
fn unknown_user_gets_404() {
    let daemon = Daemon::start("unknown-user", "");
    let run = sipp(
        "unknown-user",
        &daemon,
        &["-sf", "unknown_user.xml", "-s", "nobody", "-m", "3"],
    );
    assert_all_succeeded(&run, 3);
}

#[test]
fn busy_user_declines_486() {
    let daemon = Daemon::start("busy", "");
    // SIPp's uac expects a 200: every call fails, on a 486, and SIPp says so.
    let run = sipp(
        "busy",
        &daemon,
        &["-sn", "uac", "-s", "busy", "-m", "3", "-r", "10"],
    );
    assert_eq!((run.successful, run.failed), (0, 3), "{run:?}");
    assert!(
        run.stdout.contains("486") || run.stderr.contains("486"),
        "{run:?}"
    );
}

/// 10 % of SIPp's packets, both ways, are lost. SIPp's built-in `uac` cannot be used
/// here: when its ACK and its BYE are both lost it takes our retransmitted INVITE 2xx as
/// the answer to its BYE and reports success while the dialog is still open on our side
/// (we then end it with BYE after 64·T1, as RFC 3261 §13.3.1.4 says). `uac_txn.xml` is the
/// same call with each response matched to its transaction.
#[test]
fn uac_200_calls_with_10_percent_loss_all_complete_and_nothing_leaks() {
    let daemon = Daemon::start("lossy", "");
    let run = sipp(
        "lossy",
        &daemon,
        &[
            "-sf",
            "uac_txn.xml",
            "-s",
            "echo",
            "-m",
            "200",
            "-r",
            "50",
            "-l",
            "200",
            "-lost",
            "10",
        ],
    );
    assert_all_succeeded(&run, 200);
    // Server transactions linger for Timer J/H/L (up to 64·T1 = 32 s); then nothing is left.
    let stats = daemon.wait_for_stats(Duration::from_secs(45), |s| {
        s.get("transactions") == 0 && s.get("dialogs") == 0
    });
    assert_eq!(stats.get("transactions"), 0, "{stats:?}");
    assert_eq!(stats.get("dialogs"), 0, "{stats:?}");
    // Every call was ended by SIPp's BYE, none by our ACK timeout.
    let ended_by_bye = daemon
        .lines()
        .iter()
        .filter(|l| l.contains("call ended") && l.contains("RemoteTerminated"))
        .count();
    assert_eq!(ended_by_bye, 200);
    let status = daemon.stop();
    assert!(status.success(), "daemon exit after SIGTERM: {status:?}");
}
