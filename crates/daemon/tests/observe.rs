//! Observability of the daemon, end to end: Prometheus metrics after a known SIPp run,
//! HEPv3 export decoded by a collector socket (and read by sngrep), `call_id` on every
//! JSON log line of a call, and the call ladder page rendered by headless Chromium.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use common::{Daemon, admin_addr, http_get, metric, scratch_dir, sipp, try_metric};
use runtime::observe::hep;
use std::io::{BufRead, BufReader, Read};
use std::net::{SocketAddr, UdpSocket};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

fn with_admin() -> &'static str {
    "[admin]\nlisten = \"127.0.0.1:0\"\n"
}

#[test]
fn metrics_count_a_known_sipp_run_exactly() {
    let daemon = Daemon::start_with("obs-metrics", "", with_admin());
    let admin = admin_addr(&daemon);
    let echo = sipp(
        "obs-metrics-echo",
        &daemon,
        // -nr: SIPp does not retransmit, so the counts are exact even on a loaded machine.
        &["-sn", "uac", "-s", "echo", "-m", "20", "-r", "20", "-nr"],
    );
    assert_eq!((echo.successful, echo.failed), (20, 0), "{echo:?}");
    let busy = sipp(
        "obs-metrics-busy",
        &daemon,
        &["-sn", "uac", "-s", "busy", "-m", "5", "-r", "10", "-nr"],
    );
    assert_eq!((busy.successful, busy.failed), (0, 5), "{busy:?}");
    // The last BYE's call leaves the engine at once; give the scrape a moment.
    let deadline = Instant::now() + Duration::from_secs(10);
    let text = loop {
        let (status, text) = http_get(admin, "/metrics", None);
        assert_eq!(status, 200, "{text}");
        if metric(&text, "tandem_calls_active") == 0.0 || Instant::now() > deadline {
            break text;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let expect = [
        (
            "tandem_calls_total{direction=\"in\",outcome=\"answered\"}",
            20.0,
        ),
        ("tandem_calls_total{direction=\"in\",outcome=\"busy\"}", 5.0),
        ("tandem_call_attempts_total{direction=\"in\"}", 25.0),
        ("tandem_call_attempts_pending", 0.0),
        ("tandem_requests_in_total{method=\"INVITE\"}", 25.0),
        ("tandem_requests_in_total{method=\"BYE\"}", 20.0),
        ("tandem_invites_new_total", 25.0),
        ("tandem_calls_answered_total", 20.0),
        ("tandem_calls_active", 0.0),
        ("tandem_dialogs_active", 0.0),
        ("tandem_messages_dropped_total", 0.0),
        ("tandem_invite_first_response_seconds_count", 25.0),
        ("tandem_invite_final_response_seconds_count", 25.0),
    ];
    let wrong: Vec<String> = expect
        .iter()
        .filter(|(series, want)| metric(&text, series) != *want)
        .map(|(series, want)| format!("{series}: {} (want {want})", metric(&text, series)))
        .collect();
    assert!(wrong.is_empty(), "{wrong:#?}\n{text}");
    // No call failed: the series of that outcome was never written.
    assert_eq!(
        try_metric(
            &text,
            "tandem_calls_total{direction=\"in\",outcome=\"failed\"}"
        ),
        None,
        "{text}"
    );
    // 200 to the INVITE and to the BYE of each echo call (and a 200 again if an ACK was
    // late on a loaded machine: counted as a retransmission).
    let retransmitted = metric(&text, "tandem_retransmissions_sent_total");
    assert_eq!(
        metric(&text, "tandem_responses_out_total{class=\"2xx\"}") - retransmitted,
        40.0,
        "{text}"
    );
    assert!(retransmitted <= 2.0, "{text}");
    // 1xx went out for every INVITE (100 and 180 for echo), 486 for each busy call.
    assert!(
        metric(&text, "tandem_responses_out_total{class=\"1xx\"}") >= 25.0,
        "{text}"
    );
    assert!(
        metric(&text, "tandem_responses_out_total{class=\"4xx\"}") >= 5.0,
        "{text}"
    );
    assert!(
        metric(&text, "tandem_requests_in_total{method=\"ACK\"}") >= 20.0,
        "{text}"
    );
    assert!(
        metric(&text, "tandem_driver_batch_seconds_count") >= 25.0,
        "{text}"
    );
    // INVITE, ACK and BYE of each call, and nothing else.
    assert_eq!(
        metric(&text, "tandem_transport_datagrams_in_total"),
        70.0,
        "{text}"
    );
    // Histograms are real Prometheus histograms with buckets, and typed.
    assert!(
        text.contains("tandem_invite_final_response_seconds_bucket{le=\"0.01\"}"),
        "{text}"
    );
    assert!(text.contains("# TYPE tandem_calls_total counter"), "{text}");
    assert!(text.contains("# TYPE tandem_calls_active gauge"), "{text}");
    assert!(
        text.contains("# TYPE tandem_invite_first_response_seconds histogram"),
        "{text}"
    );
    assert!(text.contains("# HELP tandem_calls_total "), "{text}");
    // Series without labels are there from the start, even at 0.
    for series in [
        "tandem_retransmissions_sent_total",
        "tandem_hep_dropped_total",
    ] {
        assert!(text.contains(&format!("\n{series} ")), "{series}: {text}");
    }
    let status = daemon.stop();
    assert!(status.success(), "{status:?}");
}

#[test]
fn the_admin_token_is_required_when_set() {
    let daemon = Daemon::start_with(
        "obs-token",
        "",
        "[admin]\nlisten = \"127.0.0.1:0\"\ntoken = \"admin-token-0123456789\"\n",
    );
    let admin = admin_addr(&daemon);
    for path in ["/metrics", "/calls", "/calls/x"] {
        assert_eq!(http_get(admin, path, None).0, 401, "{path}");
        assert_eq!(
            http_get(admin, path, Some("wrong-token-0123456789")).0,
            401,
            "{path}"
        );
    }
    let (status, text) = http_get(admin, "/metrics", Some("admin-token-0123456789"));
    assert_eq!(status, 200);
    assert!(text.contains("tandem_calls_active"), "{text}");
    assert_eq!(
        http_get(admin, "/calls/unknown", Some("admin-token-0123456789")).0,
        404
    );
}

/// The labels of a decoded SIP payload's start line: the method or the status code.
fn label(payload: &[u8]) -> String {
    let text = String::from_utf8_lossy(payload);
    let first = text.lines().next().unwrap_or_default().to_owned();
    match first.strip_prefix("SIP/2.0 ") {
        Some(status) => status.split(' ').next().unwrap().to_owned(),
        None => first.split(' ').next().unwrap().to_owned(),
    }
}

fn call_id_of(payload: &[u8]) -> Option<String> {
    String::from_utf8_lossy(payload).lines().find_map(|l| {
        let (name, value) = l.split_once(':')?;
        (name.eq_ignore_ascii_case("call-id") || name == "i").then(|| value.trim().to_owned())
    })
}

#[test]
fn hep_export_of_a_sipp_call_decodes_with_addresses_and_order() {
    let collector = UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = collector.local_addr().unwrap().port();
    let daemon = Daemon::start_with(
        "obs-hep",
        "",
        &format!(
            "[hep]\ncollector = \"udp:127.0.0.1:{port}\"\ncapture_id = 4242\npassword = \"hep-secret\"\n"
        ),
    );
    let started = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let run = sipp("obs-hep", &daemon, &["-sn", "uac", "-s", "echo", "-m", "1"]);
    assert_eq!(run.successful, 1, "{run:?}");
    let ended = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    collector
        .set_read_timeout(Some(Duration::from_millis(1500)))
        .unwrap();
    let mut packets = Vec::new();
    let mut buf = vec![0u8; 70_000];
    while let Ok(n) = collector.recv(&mut buf) {
        packets.push(hep::decode_fields(&buf[..n]).unwrap());
    }
    let ours = daemon.addr("udp");
    let invite = packets
        .iter()
        .find(|p| label(&p.payload) == "INVITE")
        .unwrap_or_else(|| panic!("no INVITE among {} packets", packets.len()));
    let call_id = call_id_of(&invite.payload).unwrap();
    let sipp_addr = invite.src.unwrap();
    assert_ne!(sipp_addr, ours);
    let call: Vec<&hep::Decoded> = packets
        .iter()
        .filter(|p| call_id_of(&p.payload).as_deref() == Some(call_id.as_str()))
        .collect();
    let flow: Vec<(String, bool)> = call
        .iter()
        .map(|p| (label(&p.payload), p.src == Some(sipp_addr)))
        .collect();
    let expected: Vec<(String, bool)> = [
        ("INVITE", true),
        ("100", false),
        ("180", false),
        ("200", false),
        ("ACK", true),
        ("BYE", true),
        ("200", false),
    ]
    .iter()
    .map(|(l, inbound)| ((*l).to_owned(), *inbound))
    .collect();
    assert_eq!(
        flow, expected,
        "the call's messages in order, (label, from SIPp)"
    );
    let mut last = (0, 0);
    for p in &call {
        let (src, dst) = (p.src.unwrap(), p.dst.unwrap());
        if src == sipp_addr {
            assert_eq!(dst, ours, "received on our socket");
        } else {
            assert_eq!(
                (src, dst),
                (ours, sipp_addr),
                "sent from our socket to SIPp"
            );
        }
        assert_eq!((p.family, p.ip_protocol, p.protocol_type), (2, 17, 1));
        assert_eq!(p.capture_id, 4242);
        assert_eq!(p.auth_key.as_deref(), Some("hep-secret"));
        assert_eq!(p.correlation_id.as_deref(), Some(call_id.as_str()));
        assert!((started..=ended).contains(&u64::from(p.seconds)), "{p:?}");
        assert!(p.micros < 1_000_000);
        assert!((p.seconds, p.micros) >= last, "timestamps in order");
        last = (p.seconds, p.micros);
    }
    let status = daemon.stop();
    assert!(status.success(), "{status:?}");
}

/// sngrep, a real HEP collector (`-L`), reads the export and writes the SIP messages to a
/// pcap file that tshark reads back.
#[test]
fn sngrep_reads_the_hep_export() {
    let port = common::free_port();
    let dir = scratch_dir("obs-sngrep");
    let pcap = dir.join("capture.pcap");
    let _ = std::fs::remove_file(&pcap);
    let mut sngrep = Command::new("sngrep")
        .args([
            "-N",
            "-q",
            "-F",
            "-L",
            &format!("udp:127.0.0.1:{port}"),
            "-O",
        ])
        .arg(&pcap)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("sngrep runs (Debian package sngrep)");
    std::thread::sleep(Duration::from_millis(500));
    let daemon = Daemon::start_with(
        "obs-sngrep",
        "",
        &format!("[hep]\ncollector = \"udp:127.0.0.1:{port}\"\n"),
    );
    let run = sipp(
        "obs-sngrep",
        &daemon,
        &["-sn", "uac", "-s", "echo", "-m", "1"],
    );
    assert_eq!(run.successful, 1, "{run:?}");
    std::thread::sleep(Duration::from_millis(1000));
    let _ = Command::new("kill")
        .args(["-TERM", &sngrep.id().to_string()])
        .status();
    let deadline = Instant::now() + Duration::from_secs(10);
    while sngrep.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = sngrep.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut err = String::new();
    if let Some(mut stderr) = sngrep.stderr.take() {
        let _ = stderr.read_to_string(&mut err);
    }
    let out = Command::new("tshark")
        .args(["-r"])
        .arg(&pcap)
        .args([
            "-Y",
            "sip",
            "-T",
            "fields",
            "-e",
            "sip.Method",
            "-e",
            "sip.Status-Code",
        ])
        .output()
        .expect("tshark runs");
    let text = String::from_utf8_lossy(&out.stdout);
    let seen: Vec<String> = text
        .lines()
        .map(|l| {
            l.split('\t')
                .filter(|f| !f.is_empty())
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect();
    for wanted in ["INVITE", "100", "180", "200", "ACK", "BYE"] {
        assert!(
            seen.iter().any(|s| s.split(' ').any(|w| w == wanted)),
            "{wanted} not in sngrep's capture: {seen:?}; sngrep: {err}; tshark: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// A child process, killed and reaped when dropped.
struct Reaped(std::process::Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A daemon with JSON logs at debug level (the harness's runs at info, as text).
fn start_json_daemon(name: &str) -> (Reaped, SocketAddr, std::sync::mpsc::Receiver<String>) {
    let dir = scratch_dir(name);
    let config = dir.join("tandem.toml");
    std::fs::write(
        &config,
        "[sip]\nlisten = [\"udp:127.0.0.1:0\"]\nring_timeout_s = 1\nmax_call_duration_s = 1\n\
         [log]\nlevel = \"debug\"\nformat = \"json\"\n\
         [[users]]\nname = \"echo\"\nbehaviour = \"echo\"\n\
         [[users]]\nname = \"ring\"\nbehaviour = \"ring\"\n",
    )
    .unwrap();
    let mut child = Reaped(
        Command::new(env!("CARGO_BIN_EXE_tandem"))
            .args(["run", "--config"])
            .arg(&config)
            .env_remove("RUST_LOG")
            .env("NO_COLOR", "1")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let stderr = child.0.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let line = rx.recv_timeout(Duration::from_secs(20)).unwrap();
        if line.contains("\"ready\"") {
            let v: serde_json::Value = serde_json::from_str(&line).unwrap();
            let listen = v["fields"]["listen"].as_str().unwrap();
            let addr = listen.trim_start_matches("udp:").parse().unwrap();
            return (child, addr, rx);
        }
        assert!(Instant::now() < deadline, "no ready line");
    }
}

/// The `call_id` a JSON log line carries, in its current span or any span around it.
fn line_call_id(v: &serde_json::Value) -> Option<String> {
    let from_span = |s: &serde_json::Value| s["call_id"].as_str().map(str::to_owned);
    from_span(&v["span"])
        .or_else(|| v["spans"].as_array()?.iter().find_map(from_span))
        .or_else(|| v["fields"]["call_id"].as_str().map(str::to_owned))
}

/// Three calls: one to `echo` (answered, hung up by SIPp's BYE), one to `ring` (480 after
/// `ring_timeout_s`), one to `echo` that SIPp holds for 2 s, ended by the engine's own
/// timer with a BYE after `max_call_duration_s`: both the message-driven and the
/// timer-driven work of each call log with its `call_id`.
#[test]
fn json_logs_carry_the_call_id_on_every_line_of_a_call() {
    let (mut child, addr, rx) = start_json_daemon("obs-json");
    let run = common::sipp_at("obs-json", addr, &["-sn", "uac", "-s", "echo", "-m", "1"]);
    assert_eq!(run.successful, 1, "{run:?}");
    let run = common::sipp_at(
        "obs-json-ring",
        addr,
        &["-sn", "uac", "-s", "ring", "-m", "1"],
    );
    assert_eq!(
        (run.successful, run.failed),
        (0, 1),
        "480 after the ring timeout: {run:?}"
    );
    let run = common::sipp_at(
        "obs-json-long",
        addr,
        &["-sn", "uac", "-s", "echo", "-m", "1", "-d", "2000"],
    );
    assert_eq!(
        (run.successful, run.failed),
        (0, 1),
        "our BYE after 1 s: {run:?}"
    );
    std::thread::sleep(Duration::from_millis(500));
    let _ = Command::new("kill")
        .args(["-TERM", &child.0.id().to_string()])
        .status();
    let _ = child.0.wait();
    let lines: Vec<String> = rx.try_iter().collect();
    let parsed: Vec<serde_json::Value> = lines
        .iter()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let ids: std::collections::BTreeSet<String> = parsed.iter().filter_map(line_call_id).collect();
    assert_eq!(ids.len(), 3, "three calls, three Call-IDs: {ids:?}");
    for call_id in &ids {
        let tagged = parsed
            .iter()
            .filter(|v| line_call_id(v).as_deref() == Some(call_id.as_str()))
            .count();
        assert!(
            tagged >= 4,
            "only {tagged} lines carry {call_id}:\n{}",
            lines.join("\n")
        );
        // Every line that names the call's Call-ID anywhere carries it as `call_id`.
        let untagged: Vec<&String> = lines
            .iter()
            .zip(&parsed)
            .filter(|(line, v)| line.contains(call_id.as_str()) && line_call_id(v).is_none())
            .map(|(line, _)| line)
            .collect();
        assert!(
            untagged.is_empty(),
            "lines about the call without call_id: {untagged:#?}"
        );
    }
    // Every line of the engine (call layer, endpoint, dialogs, transactions) was logged
    // while handling one of the calls: all carry a call_id.
    let engine_lines_untagged: Vec<&String> = lines
        .iter()
        .zip(&parsed)
        .filter(|(_, v)| {
            let target = v["target"].as_str().unwrap_or_default();
            ["calls", "sip_core", "sip_dialog", "sip_transaction"]
                .iter()
                .any(|t| target == *t || target.starts_with(&format!("{t}::")))
                && line_call_id(v).is_none()
        })
        .map(|(line, _)| line)
        .collect();
    assert!(
        engine_lines_untagged.is_empty(),
        "engine lines without call_id: {engine_lines_untagged:#?}"
    );
    // Every call ended with a line that says so, with its call_id.
    let ended: std::collections::BTreeSet<String> = parsed
        .iter()
        .filter(|v| v["fields"]["message"] == "call ended")
        .filter_map(line_call_id)
        .collect();
    assert_eq!(ended, ids, "{}", lines.join("\n"));
    // The BYE the engine's max-duration timer sent (a new client transaction) was made
    // inside the call's `sip` span (the engine enters it around a call's timer work).
    let bye = parsed
        .iter()
        .find(|v| v["fields"]["message"] == "new client transaction")
        .unwrap_or_else(|| panic!("no BYE of ours:\n{}", lines.join("\n")));
    let in_call_span = bye["spans"].as_array().is_some_and(|spans| {
        spans
            .iter()
            .any(|s| s["name"] == "sip" && s["call_id"].as_str().is_some())
    });
    assert!(in_call_span, "{bye}");
    // The echo calls' media tasks and flows log in their spans too.
    for message in [
        "media task started",
        "media task stopped",
        "media flow ended",
    ] {
        let line = parsed
            .iter()
            .find(|v| v["fields"]["message"] == message)
            .unwrap_or_else(|| panic!("no {message:?} line:\n{}", lines.join("\n")));
        assert!(line_call_id(line).is_some(), "{line}");
    }
}

/// Runs chromium headless with `args` and a bounded time; its stdout.
fn chromium(dir: &std::path::Path, args: &[&str]) -> String {
    let mut child = Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--hide-scrollbars",
        ])
        .arg(format!("--user-data-dir={}", dir.join("profile").display()))
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("chromium runs (Debian package chromium)");
    let mut stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut out = String::new();
        let _ = stdout.read_to_string(&mut out);
        out
    });
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            assert!(status.success(), "chromium {args:?}: {status:?}");
            break;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("chromium {args:?} did not finish within 90 s");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    reader.join().unwrap()
}

#[test]
fn the_ladder_of_a_sipp_call_renders_in_chromium() {
    let daemon = Daemon::start_with("obs-ladder", "", with_admin());
    let admin = admin_addr(&daemon);
    let run = sipp(
        "obs-ladder",
        &daemon,
        &["-sn", "uac", "-s", "echo", "-m", "1"],
    );
    assert_eq!(run.successful, 1, "{run:?}");
    std::thread::sleep(Duration::from_millis(300));
    let (status, list) = http_get(admin, "/calls", None);
    assert_eq!(status, 200);
    let link = list
        .split("href=\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .unwrap_or_else(|| panic!("no call in {list}"));
    assert!(link.starts_with("/calls/"), "{link}");
    assert!(list.contains("answered"), "{list}");
    let url = format!("http://{admin}{link}");
    let dir = scratch_dir("obs-ladder-chromium");
    let dom = chromium(&dir, &["--dump-dom", &url]);
    let labels: Vec<&str> = dom
        .split("<text class=\"label\"")
        .skip(1)
        .filter_map(|t| t.split_once('>')?.1.split_once('<').map(|(l, _)| l))
        .collect();
    assert_eq!(
        labels,
        [
            "INVITE",
            "100 Trying",
            "180 Ringing",
            "200 OK",
            "ACK",
            "BYE",
            "200 OK"
        ],
        "the arrows' labels in the DOM Chromium built"
    );
    let shot = dir.join("ladder.png");
    let _ = std::fs::remove_file(&shot);
    chromium(
        &dir,
        &[
            &format!("--screenshot={}", shot.display()),
            "--window-size=1200,900",
            &url,
        ],
    );
    let decoder = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(&shot).unwrap()));
    let mut reader = decoder.read_info().unwrap();
    let mut pixels = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut pixels).unwrap();
    assert_eq!((info.width, info.height), (1200, 900));
    let channels = info.color_type.samples();
    let colours: std::collections::HashSet<&[u8]> =
        pixels[..info.buffer_size()].chunks(channels).collect();
    assert!(
        colours.len() > 3,
        "the screenshot is blank: {} colours",
        colours.len()
    );
    let status = daemon.stop();
    assert!(status.success(), "{status:?}");
}

/// A bridged call (A → Tandem → B): both legs are on the ladder, each page links to the
/// other, the leg B INVITE latency is measured, and each leg's outcome is counted in its
/// direction.
#[test]
fn a_b2bua_call_shows_both_legs_linked() {
    use common::parties::{BOB, Party, TANDEM, assert_succeeded, free_port_on};
    let test = "obs-b2b";
    let bob_port = free_port_on(BOB);
    let daemon = Daemon::start_on(
        test,
        TANDEM,
        "",
        &format!(
            "[media]\naddress = \"{TANDEM}\"\ntimeout_s = 0\n\n{}\
             [[route]]\nname = \"bob\"\naction = \"bridge\"\n[route.match]\nuser = '^bob$'\n\
             [[route.targets]]\nuri = \"sip:bob@{BOB}:{bob_port}\"\n",
            with_admin()
        ),
    );
    let admin = admin_addr(&daemon);
    let bob = Party::callee(
        test,
        "bob",
        (BOB, bob_port),
        "b2bua/callee_answers.xml",
        &["-key", "callee", "bob", "-key", "sess", "2222"],
    );
    let alice = Party::caller(test, &daemon, "b2bua/caller_hangs_up.xml", "bob");
    let bob = bob.finish();
    assert_succeeded(&[&alice, &bob], &daemon);
    let a_leg = alice.call_ids()[0].to_owned();
    let b_leg = bob.call_ids()[0].to_owned();
    let (status, list) = http_get(admin, "/calls", None);
    assert_eq!(status, 200);
    let a_path = format!("/calls/{}", percent(&a_leg));
    let b_path = format!("/calls/{}", percent(&b_leg));
    assert!(list.contains(&a_path) && list.contains(&b_path), "{list}");
    let (_, a_page) = http_get(admin, &a_path, None);
    assert!(
        a_page.contains(&format!("class=\"leg\" href=\"{b_path}\"")),
        "{a_page}"
    );
    let (_, b_page) = http_get(admin, &b_path, None);
    assert!(
        b_page.contains(&format!("class=\"leg\" href=\"{a_path}\"")),
        "{b_page}"
    );
    // Leg B's ladder: from Tandem to bob.
    assert!(
        b_page.contains(&format!("{TANDEM}:")) && b_page.contains(&format!("{BOB}:{bob_port}"))
    );
    let (_, text) = http_get(admin, "/metrics", None);
    for (series, want) in [
        ("tandem_b2bua_leg_b_invite_seconds_count", 1.0),
        (
            "tandem_calls_total{direction=\"in\",outcome=\"answered\"}",
            1.0,
        ),
        (
            "tandem_calls_total{direction=\"out\",outcome=\"answered\"}",
            1.0,
        ),
        ("tandem_call_attempts_total{direction=\"out\"}", 1.0),
        ("tandem_requests_out_total{method=\"INVITE\"}", 1.0),
    ] {
        assert_eq!(metric(&text, series), want, "{series}\n{text}");
    }
}

/// Percent-encodes as the ladder's links do (RFC 3986 unreserved characters stay).
fn percent(text: &str) -> String {
    text.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// Trunk gauges: a trunk whose proxy (another Tandem) answers the OPTIONS keepalive is
/// up, one whose proxy is not there goes down (Timer F, 64·T1 with T1 = 50 ms); neither
/// registers.
#[test]
fn trunk_gauges_follow_the_options_keepalive() {
    let peer = Daemon::start("obs-trunk-peer", "");
    let dead = common::free_port();
    let daemon = Daemon::start_with(
        "obs-trunk",
        "",
        &format!(
            "{}\n[sip.timers]\nt1_ms = 50\n\n\
             [[trunks]]\nname = \"alive\"\nproxy = \"sip:127.0.0.1:{}\"\noptions_interval_s = 1\n\n\
             [[trunks]]\nname = \"dead\"\nproxy = \"sip:127.0.0.1:{dead}\"\noptions_interval_s = 1\n",
            with_admin(),
            peer.port
        ),
    );
    let admin = admin_addr(&daemon);
    let up =
        |text: &str, trunk: &str| metric(text, &format!("tandem_trunk_up{{trunk=\"{trunk}\"}}"));
    let deadline = Instant::now() + Duration::from_secs(15);
    let text = loop {
        let (_, text) = http_get(admin, "/metrics", None);
        let settled = text.contains("tandem_trunk_up{trunk=\"dead\"}")
            && up(&text, "alive") == 1.0
            && up(&text, "dead") == 0.0;
        if settled || Instant::now() > deadline {
            break text;
        }
        std::thread::sleep(Duration::from_millis(250));
    };
    assert_eq!(up(&text, "alive"), 1.0, "{text}");
    assert_eq!(up(&text, "dead"), 0.0, "{text}");
    for trunk in ["alive", "dead"] {
        let series = format!("tandem_trunk_registered{{trunk=\"{trunk}\"}}");
        assert!(text.contains(&series), "{text}");
        assert_eq!(metric(&text, &series), 0.0, "{text}");
    }
    // The keepalives were sent and the live trunk's were answered.
    assert!(
        metric(&text, "tandem_requests_out_total{method=\"OPTIONS\"}") >= 2.0,
        "{text}"
    );
    assert!(
        metric(&text, "tandem_responses_in_total{class=\"2xx\"}") >= 1.0,
        "{text}"
    );
}

/// Scrapes `/metrics` until `done` holds (or `timeout` passes); the last scrape.
fn scrape_until(admin: SocketAddr, timeout: Duration, done: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + timeout;
    loop {
        let (status, text) = http_get(admin, "/metrics", None);
        assert_eq!(status, 200, "{text}");
        if done(&text) || Instant::now() > deadline {
            return text;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The gauges of live work read at `/metrics` while it is live: three calls SIPp holds
/// for 3 s (calls, dialogs, the server INVITE transactions in RFC 6026's Accepted), a
/// trunk registered with a registrar that answers 200, and a 200 whose ACK comes 1.5 s
/// late (re-sent at T1 and 2·T1: retransmissions).
#[test]
fn live_gauges_are_non_zero_while_calls_are_held() {
    let (registrar, registers) = common::answering_registrar();
    let daemon = Daemon::start_with(
        "obs-live",
        "",
        &format!(
            "{}\n[[trunks]]\nname = \"carrier\"\nproxy = \"sip:{registrar}\"\n\
             username = \"tandem\"\npassword = \"s3cret\"\nregister = true\n\
             register_expires_s = 600\n",
            with_admin()
        ),
    );
    let admin = admin_addr(&daemon);
    let registered = "tandem_trunk_registered{trunk=\"carrier\"}";
    let text = scrape_until(admin, Duration::from_secs(20), |t| {
        try_metric(t, registered) == Some(1.0)
    });
    assert_eq!(metric(&text, registered), 1.0, "{text}");
    assert_eq!(
        metric(&text, "tandem_trunk_up{trunk=\"carrier\"}"),
        1.0,
        "{text}"
    );
    assert!(!registers.lock().unwrap().is_empty());
    // Nothing live yet.
    assert_eq!(metric(&text, "tandem_calls_active"), 0.0, "{text}");

    let port = daemon.port;
    let held = std::thread::spawn(move || {
        common::sipp_at(
            "obs-live-held",
            SocketAddr::from(([127, 0, 0, 1], port)),
            &[
                "-sn", "uac", "-s", "echo", "-d", "3000", "-m", "3", "-l", "3", "-r", "10",
            ],
        )
    });
    let text = scrape_until(admin, Duration::from_secs(20), |t| {
        try_metric(t, "tandem_calls_active").unwrap_or(0.0) >= 3.0
    });
    let live = [
        "tandem_calls_active",
        "tandem_dialogs_active",
        "tandem_transactions_active{kind=\"server_invite\"}",
    ];
    for series in live {
        assert!(metric(&text, series) >= 1.0, "{series}\n{text}");
    }
    eprintln!(
        "held: {}",
        live.iter()
            .map(|s| format!("{s}={}", metric(&text, s)))
            .collect::<Vec<_>>()
            .join(" ")
    );
    // Every kind is exported, live or not.
    for kind in [
        "client_invite",
        "client_non_invite",
        "server_invite",
        "server_non_invite",
    ] {
        let series = format!("tandem_transactions_active{{kind=\"{kind}\"}}");
        assert!(try_metric(&text, &series).is_some(), "{series}\n{text}");
    }
    let run = held.join().unwrap();
    assert_eq!((run.successful, run.failed), (3, 0), "{run:?}");
    // The calls ended: the gauges fall back to 0.
    let text = scrape_until(admin, Duration::from_secs(20), |t| {
        try_metric(t, "tandem_calls_active") == Some(0.0)
            && try_metric(t, "tandem_dialogs_active") == Some(0.0)
    });
    assert_eq!(metric(&text, "tandem_calls_active"), 0.0, "{text}");
    assert_eq!(metric(&text, "tandem_dialogs_active"), 0.0, "{text}");

    let before = metric(&text, "tandem_retransmissions_sent_total");
    let run = sipp(
        "obs-live-late-ack",
        &daemon,
        &["-sf", "uac_late_ack.xml", "-s", "echo", "-m", "1"],
    );
    assert_eq!((run.successful, run.failed), (1, 0), "{run:?}");
    let text = scrape_until(admin, Duration::from_secs(10), |t| {
        try_metric(t, "tandem_retransmissions_sent_total").unwrap_or(0.0) > before
    });
    let after = metric(&text, "tandem_retransmissions_sent_total");
    assert!(
        after >= before + 1.0,
        "the unacknowledged 200 was not re-sent: {before} -> {after}\n{text}"
    );
    eprintln!("late ACK: retransmissions {before} -> {after}");
    let status = daemon.stop();
    assert!(status.success(), "{status:?}");
}

/// The control API's metrics as the admin listener exports them: an application whose
/// callback is a closed loopback port (one attempt per webhook) gets an `IncomingCall`
/// that cannot be delivered, counted as failed; the event still reaches the one event
/// stream (SSE) open, counted as a client.
#[test]
fn webhook_failures_and_event_stream_clients_are_exported() {
    use std::io::Write;
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap()
    };
    let token = "obs-webhook-token-0123456789";
    let daemon = Daemon::start_with(
        "obs-webhook",
        "",
        &format!(
            "{}\n[api]\nlisten = \"127.0.0.1:0\"\ntoken = \"{token}\"\nwebhook_attempts = 1\n\n\
             [[api.applications]]\nname = \"app\"\ncallback_uri = \"http://{closed}/events\"\n\
             owner_uri = \"sip:app@127.0.0.1\"\nanswer_timeout_s = 1\n\n\
             [[route]]\nname = \"to-app\"\naction = \"webhook\"\napplication = \"app\"\n\
             [route.match]\nuser = '^app$'\n",
            with_admin()
        ),
    );
    let admin = admin_addr(&daemon);
    let line = daemon.wait_for_line("control API serving", Duration::from_secs(10));
    let api: SocketAddr = line
        .split_whitespace()
        .find_map(|w| w.strip_prefix("api="))
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("no api address in {line:?}"));
    // Nothing failed, nobody listens yet.
    let text = scrape_until(admin, Duration::from_secs(5), |_| true);
    assert_eq!(
        metric(&text, "tandem_webhook_deliveries_failed_total"),
        0.0,
        "{text}"
    );
    assert_eq!(metric(&text, "tandem_event_stream_clients"), 0.0, "{text}");

    // One SSE stream of the application's events.
    let mut sse = std::net::TcpStream::connect(api).unwrap();
    sse.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    write!(
        sse,
        "GET /v1/events?application=app HTTP/1.1\r\nHost: {api}\r\n\
         Authorization: Bearer {token}\r\nAccept: text/event-stream\r\n\r\n"
    )
    .unwrap();
    let mut reader = BufReader::new(sse.try_clone().unwrap());
    let mut status = String::new();
    reader.read_line(&mut status).unwrap();
    assert!(status.starts_with("HTTP/1.1 200"), "{status}");
    let text = scrape_until(admin, Duration::from_secs(10), |t| {
        try_metric(t, "tandem_event_stream_clients") == Some(1.0)
    });
    assert_eq!(metric(&text, "tandem_event_stream_clients"), 1.0, "{text}");

    // A call handed to the application: IncomingCall, POSTed to nobody. The application
    // never answers: the call ends at its answer timeout.
    let run = sipp(
        "obs-webhook-call",
        &daemon,
        &["-sn", "uac", "-s", "app", "-m", "1"],
    );
    assert_eq!((run.successful, run.failed), (0, 1), "{run:?}");
    let text = scrape_until(admin, Duration::from_secs(20), |t| {
        try_metric(t, "tandem_webhook_deliveries_failed_total").unwrap_or(0.0) >= 1.0
    });
    let failed = metric(&text, "tandem_webhook_deliveries_failed_total");
    assert!(failed >= 1.0, "{text}");
    assert_eq!(
        metric(&text, "tandem_webhook_deliveries_total"),
        0.0,
        "{text}"
    );
    assert!(
        metric(&text, "tandem_events_published_total") >= 1.0,
        "{text}"
    );
    assert_eq!(metric(&text, "tandem_event_stream_clients"), 1.0, "{text}");
    let lag = metric(&text, "tandem_event_stream_lag_events");
    daemon.wait_for_line("webhook delivery failed", Duration::from_secs(5));
    // The event the webhook could not deliver is on the stream.
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut seen = String::new();
    while !seen.contains("event: IncomingCall") {
        assert!(
            Instant::now() < deadline,
            "no IncomingCall on the stream:\n{seen}"
        );
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap() == 0 {
            panic!("the stream closed:\n{seen}");
        }
        seen.push_str(&line);
    }
    eprintln!("webhook: failed={failed}; event stream: clients=1 lag={lag}");
    drop(reader);
    drop(sse);
    let status = daemon.stop();
    assert!(status.success(), "{status:?}");
}
