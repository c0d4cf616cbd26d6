//! A real peer over TLS: baresip (Debian package `baresip-core`) calls `echo` at the
//! daemon over SIP/TLS on loopback, trusting the test CA, and hangs up when it quits.
//! Never skipped: a missing baresip fails the test (CI installs it, see `.ci/run`).
//!
//! baresip 1.0 (Debian 12) loads the CA (`sip_cafile`) but has no option to enforce
//! server certificate verification; the Rust clients of `secure.rs` and the
//! sip-transport tests check verification.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use common::{Daemon, TestPki};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Ten seconds of 8 kHz 16-bit mono silence: baresip's audio source (its sine source
/// runs at 48 kHz only, which PCMU cannot take).
fn write_silence(path: &Path) {
    let samples: u32 = 8000 * 10;
    let data_len = samples * 2;
    let mut wav = Vec::with_capacity(44 + data_len as usize);
    wav.extend_from_slice(b"RIFF");
    wav.extend_from_slice(&(36 + data_len).to_le_bytes());
    wav.extend_from_slice(b"WAVEfmt ");
    wav.extend_from_slice(&16u32.to_le_bytes()); // fmt chunk size
    wav.extend_from_slice(&1u16.to_le_bytes()); // PCM
    wav.extend_from_slice(&1u16.to_le_bytes()); // mono
    wav.extend_from_slice(&8000u32.to_le_bytes()); // sample rate
    wav.extend_from_slice(&16000u32.to_le_bytes()); // byte rate
    wav.extend_from_slice(&2u16.to_le_bytes()); // block align
    wav.extend_from_slice(&16u16.to_le_bytes()); // bits per sample
    wav.extend_from_slice(b"data");
    wav.extend_from_slice(&data_len.to_le_bytes());
    wav.resize(44 + data_len as usize, 0);
    std::fs::write(path, wav).unwrap();
}

#[test]
fn baresip_calls_echo_over_tls_and_the_call_is_answered() {
    let pki = TestPki::new("baresip");
    let daemon = Daemon::start_listening("baresip", &["udp", "tls"], &pki.config_table());
    let tls = daemon.addr("tls");

    let dir = common::scratch_dir("baresip-home");
    let silence = dir.join("silence.wav");
    write_silence(&silence);
    std::fs::write(
        dir.join("config"),
        format!(
            "poll_method\tepoll\n\
             sip_listen\t127.0.0.1:0\n\
             sip_cafile\t{}\n\
             audio_source\taufile,{}\n\
             module_path\t/usr/lib/baresip/modules\n\
             module\tg711.so\n\
             module\taufile.so\n\
             module_app\taccount.so\n\
             module_app\tmenu.so\n",
            pki.ca.display(),
            silence.display()
        ),
    )
    .unwrap();
    // No registration; every call of this account goes over TLS.
    std::fs::write(
        dir.join("accounts"),
        "<sip:tester@127.0.0.1;transport=tls>;regint=0\n",
    )
    .unwrap();

    // -n 127.0.0.1: loopback only, for SIP and for the SDP/RTP addresses too.
    // -t 4: quit (and hang up with BYE) after four seconds.
    let mut child = Command::new("baresip")
        .arg("-f")
        .arg(&dir)
        .args(["-n", "127.0.0.1", "-t", "4"])
        .arg("-e")
        .arg(format!("/dial sip:echo@{tls}"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("baresip runs (Debian package baresip-core)");
    let deadline = Instant::now() + Duration::from_secs(30);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("baresip did not quit within 30 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "baresip: {:?}\n{stdout}\n{stderr}",
        out.status
    );
    assert!(
        stdout.contains(&format!("Call established: sip:echo@{tls};transport=tls")),
        "baresip output:\n{stdout}\n{stderr}"
    );

    let stats = daemon.wait_for_stats(Duration::from_secs(10), |s| {
        s.get("calls_answered") >= 1 && s.get("dialogs") == 0
    });
    assert!(stats.get("calls_answered") >= 1, "{stats:?}");
    assert_eq!(
        stats.get("dialogs"),
        0,
        "baresip's BYE ended the call: {stats:?}"
    );
    assert!(stats.get("tls_handshakes") >= 1, "{stats:?}");
    assert_eq!(
        stats.get("udp_in"),
        0,
        "all signalling went over TLS: {stats:?}"
    );
}
