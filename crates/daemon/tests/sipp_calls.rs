//! SIPp conformance of the call model (crates/calls) and its examples (examples/):
//!
//! - the `av_call` example calls a SIPp UAS that checks its custom header and its
//!   `multipart/mixed` body with the SDP and a custom part (`uas_custom_parts.xml`);
//! - SIPp places a Lync-style IM call to the daemon's `echo` and gets three messages
//!   echoed in the dialog (`uac_im_echo.xml`);
//! - the `av_call` and `im_call` examples call the daemon's `echo`.
//!
//! The examples are built by `cargo build -p runtime --examples` (scripts/test does it
//! before the tests); a missing example binary fails the test, it is never skipped.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use common::{Daemon, SippRun, free_port, repo_root, scratch_dir, sipp};
use std::net::UdpSocket;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long an example may run.
const EXAMPLE_TIMEOUT: Duration = Duration::from_secs(30);

/// The path of an example binary of the `runtime` package. Test binaries are
/// `<target>/<profile>/deps/<name>-<hash>`; examples are `<target>/<profile>/examples/<name>`.
fn example(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let profile_dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("the test binary is in <target>/<profile>/deps");
    let path = profile_dir.join("examples").join(name);
    assert!(
        path.is_file(),
        "the example binary {} is missing: build the examples first with \
         `cargo build -p runtime --examples` (scripts/test does)",
        path.display()
    );
    path
}

/// What an example printed and how it ended.
struct ExampleRun {
    success: bool,
    status: String,
    stdout: String,
    stderr: String,
}

impl ExampleRun {
    fn report(&self) -> String {
        format!(
            "example: {}\nstdout:\n{}\nstderr:\n{}",
            self.status, self.stdout, self.stderr
        )
    }

    #[track_caller]
    fn assert_printed(&self, needle: &str) {
        assert!(
            self.stdout.lines().any(|l| l.contains(needle)),
            "the example did not print {needle:?}\n{}",
            self.report()
        );
    }
}

/// Runs example `name` with `target` as its argument, killing it after
/// [`EXAMPLE_TIMEOUT`].
fn run_example(name: &str, target: &str) -> ExampleRun {
    let mut child = Command::new(example(name))
        .arg(target)
        .env("NO_COLOR", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("example {name} does not start: {e}"));
    let deadline = Instant::now() + EXAMPLE_TIMEOUT;
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let output = child.wait_with_output().unwrap();
    ExampleRun {
        success: output.status.success(),
        status: output.status.to_string(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// A SIPp UAS on a free port, once it has bound it.
struct SippServer {
    child: Child,
    port: u16,
    errors: PathBuf,
}

impl SippServer {
    fn start(name: &str, scenario: &str) -> SippServer {
        let port = free_port();
        let errors = scratch_dir(name).join("errors.log");
        let _ = std::fs::remove_file(&errors);
        let mut child = Command::new("sipp")
            .args(["-sf", scenario, "-i", "127.0.0.1", "-p", &port.to_string()])
            .args(["-m", "1", "-nostdin", "-timeout", "30s", "-timeout_error"])
            .args(["-trace_err", "-error_file"])
            .arg(&errors)
            .current_dir(repo_root().join("tests/sipp"))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("sipp runs (Debian package sip-tester)");
        let deadline = Instant::now() + Duration::from_secs(10);
        // Bound when we can no longer bind it ourselves.
        while UdpSocket::bind(("127.0.0.1", port)).is_ok() {
            if let Some(status) = child.try_wait().unwrap() {
                panic!("SIPp exited before binding port {port}: {status}");
            }
            assert!(Instant::now() < deadline, "SIPp did not bind port {port}");
            std::thread::sleep(Duration::from_millis(20));
        }
        SippServer {
            child,
            port,
            errors,
        }
    }

    /// Waits for SIPp's exit (its `-timeout` bounds it): (success, report).
    fn finish(self) -> (bool, String) {
        let output = self.child.wait_with_output().unwrap();
        let report = format!(
            "SIPp: {}\nstdout:\n{}\nstderr:\n{}\nerrors:\n{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr),
            std::fs::read_to_string(&self.errors).unwrap_or_default()
        );
        (output.status.success(), report)
    }
}

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

/// The `av_call` example's INVITE, as SIPp sees it: `X-Case-Id: 1234`, a
/// `multipart/mixed` body whose boundary matches, the SDP part offering audio, and the
/// `application/vnd.tandem.case+json` part with its disposition and JSON (check_it in
/// `uas_custom_parts.xml`). SIPp answers; the example prints each state and hangs up.
#[test]
fn av_call_example_sends_custom_header_and_mime_part_that_sipp_checks() {
    let server = SippServer::start("av-call-custom-parts", "uas_custom_parts.xml");
    let target = format!("sip:service@127.0.0.1:{}", server.port);
    let run = run_example("av_call", &target);
    let (sipp_ok, report) = server.finish();
    assert!(sipp_ok, "{report}\n{}", run.report());
    assert!(run.success, "{}\n{report}", run.report());
    run.assert_printed("call state: Idle -> Establishing");
    run.assert_printed("provisional: 180 Ringing");
    run.assert_printed("call state: Establishing -> Established");
    run.assert_printed("established (");
    run.assert_printed("-> Terminated");
}

/// An IM call from SIPp (Lync-style `m=message` SDP) to `echo`: the answer is an
/// `m=message` session and each of three messages comes back in the dialog.
#[test]
fn im_call_from_sipp_gets_three_messages_echoed() {
    let daemon = Daemon::start("im-echo", "");
    let run = sipp(
        "im-echo",
        &daemon,
        &["-sf", "uac_im_echo.xml", "-s", "echo", "-m", "3", "-r", "5"],
    );
    assert_all_succeeded(&run, 3);
    let stats = daemon.wait_for_stats(Duration::from_secs(10), |s| s.get("dialogs") == 0);
    assert_eq!(stats.get("dialogs"), 0, "{stats:?}");
    assert!(stats.get("calls_answered") >= 3, "{stats:?}");
    let status = daemon.stop();
    assert!(status.success(), "daemon exit after SIGTERM: {status:?}");
}

/// The README's examples against the daemon's `echo`: an AV call established and hung
/// up, an IM call whose message is delivered and echoed back.
#[test]
fn examples_call_the_daemon_echo_user() {
    let daemon = Daemon::start("examples", "");
    let target = format!("sip:echo@{}", daemon.addr("udp"));

    let av = run_example("av_call", &target);
    assert!(
        av.success,
        "{}\ndaemon log:\n{}",
        av.report(),
        daemon.lines().join("\n")
    );
    av.assert_printed("call state: Establishing -> Established");
    av.assert_printed("established (");
    av.assert_printed("-> Terminated");

    let im = run_example("im_call", &target);
    assert!(
        im.success,
        "{}\ndaemon log:\n{}",
        im.report(),
        daemon.lines().join("\n")
    );
    im.assert_printed("IM call established");
    im.assert_printed("message delivered");
    im.assert_printed("message received (text/plain;charset=UTF-8): Is anyone there?");
    im.assert_printed("Terminated");

    let stats = daemon.wait_for_stats(Duration::from_secs(10), |s| {
        s.get("dialogs") == 0 && s.get("calls_answered") >= 2
    });
    assert!(stats.get("calls_answered") >= 2, "{stats:?}");
    assert_eq!(stats.get("dialogs"), 0, "{stats:?}");
    let status = daemon.stop();
    assert!(status.success(), "daemon exit after SIGTERM: {status:?}");
}
