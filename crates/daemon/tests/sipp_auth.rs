//! Digest authentication against SIPp: Tandem's trunk answering a registrar's 401 (MD5
//! and SHA-256), and Tandem challenging a peer it does not know.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{Daemon, free_port, repo_root, scratch_dir, sipp};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// SIPp as a registrar on a free port, challenging with `scenario`; Tandem's trunk
/// registers with it. SIPp exits 0 only if the answer passed its checks and it sent 200.
fn register_against(name: &str, scenario: &str) {
    let port = free_port();
    let dir = scratch_dir(name);
    let mut registrar = Command::new("sipp")
        .args(["-sf", scenario, "-i", "127.0.0.1", "-p", &port.to_string()])
        .args(["-m", "1", "-nostdin", "-timeout", "30s", "-timeout_error"])
        .args(["-trace_msg", "-message_file"])
        .arg(dir.join("messages.log"))
        .current_dir(repo_root().join("tests/sipp"))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("sipp runs (Debian package sip-tester)");
    std::thread::sleep(Duration::from_millis(300));
    let daemon = Daemon::start(
        name,
        &format!(
            "[[trunks]]\nname = \"sipp\"\nproxy = \"sip:127.0.0.1:{port}\"\n\
             domain = \"sipp.test\"\nusername = \"tandem\"\npassword = \"secret\"\n\
             register = true\nregister_expires_s = 300\n"
        ),
    );
    let line = daemon.wait_for_line("Registered", Duration::from_secs(20));
    assert!(line.contains("sipp") && line.contains("300s"), "{line}");
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = registrar.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "SIPp registrar did not finish");
        std::thread::sleep(Duration::from_millis(50));
    };
    let trace = std::fs::read_to_string(dir.join("messages.log")).unwrap_or_default();
    assert!(status.success(), "SIPp registrar failed: {status}\n{trace}");
    assert!(trace.contains("Authorization: Digest"), "{trace}");
}

#[test]
fn trunk_answers_a_401_with_md5() {
    register_against("reg-md5", "registrar_md5.xml");
}

#[test]
fn trunk_answers_a_401_with_sha_256() {
    register_against("reg-sha256", "registrar_sha256.xml");
}

/// `[inbound] accept = "trusted"`: an unknown peer's INVITE gets 401; the INVITE with
/// credentials is answered; the call completes.
#[test]
fn daemon_challenges_an_unknown_peer() {
    let daemon = Daemon::start(
        "challenge",
        "[inbound]\naccept = \"trusted\"\nalgorithms = [\"MD5\"]\n\
         [[inbound.users]]\nname = \"sipp\"\npassword = \"secret\"\n",
    );
    let run = sipp("challenge", &daemon, &["-sf", "uac_digest.xml", "-m", "3"]);
    assert!(
        run.exit_code == 0 && run.successful == 3 && run.failed == 0,
        "exit {} ok {} failed {}\n{}\n{}",
        run.exit_code,
        run.successful,
        run.failed,
        run.stdout,
        run.stderr
    );
    let stats = daemon.wait_for_stats(Duration::from_secs(10), |s| s.get("calls_answered") >= 3);
    assert_eq!(stats.get("calls_answered"), 3, "{stats:?}");
    // Without credentials: 403 is not given while accounts exist, the challenge is.
    let refused = sipp(
        "challenge-none",
        &daemon,
        &["-sn", "uac", "-s", "echo", "-m", "1"],
    );
    assert_eq!(
        refused.successful, 0,
        "an unauthenticated call must not succeed"
    );
}
