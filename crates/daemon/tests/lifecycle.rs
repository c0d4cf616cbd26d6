//! The daemon's lifecycle, on the real binary: the systemd unit (`systemd-analyze
//! verify`), the sd_notify protocol against a socket the test binds (`NOTIFY_SOCKET`),
//! reload on SIGHUP under 20 live SIPp calls, and the graceful drain on SIGTERM.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use common::{SippRun, answering_registrar, repo_root, scratch_dir, sipp_at};
use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, UdpSocket};
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The daemon started on a config file the test owns (so it can rewrite it and
/// SIGHUP), with extra environment, without RUST_LOG (the file's level applies).
struct Proc {
    child: Child,
    config: PathBuf,
    lines: Arc<Mutex<Vec<String>>>,
    reader: Option<std::thread::JoinHandle<()>>,
    udp: SocketAddr,
}

const USERS: &str = "[[users]]\nname = \"echo\"\nbehaviour = \"echo\"\n";

/// A config listening on UDP and TCP port 0 with the echo user; `rest` after it.
fn config_text(rest: &str) -> String {
    format!("[sip]\nlisten = [\"udp:127.0.0.1:0\", \"tcp:127.0.0.1:0\"]\n\n{USERS}\n{rest}\n")
}

impl Proc {
    fn start(name: &str, config: &str, env: &[(&str, &str)]) -> Proc {
        let dir = scratch_dir(name);
        let path = dir.join("tandem.toml");
        std::fs::write(&path, config).unwrap();
        let mut command = Command::new(env!("CARGO_BIN_EXE_tandem"));
        command
            .args(["run", "--config"])
            .arg(&path)
            .env_remove("RUST_LOG")
            .env_remove("NOTIFY_SOCKET")
            .env_remove("WATCHDOG_USEC")
            .env_remove("WATCHDOG_PID")
            .env("NO_COLOR", "1")
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for (k, v) in env {
            command.env(k, v);
        }
        let mut child = command.spawn().unwrap();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = lines.clone();
        let stderr = child.stderr.take().unwrap();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                sink.lock().unwrap().push(line);
            }
        });
        let mut proc = Proc {
            child,
            config: path,
            lines,
            reader: Some(reader),
            udp: SocketAddr::from(([127, 0, 0, 1], 0)),
        };
        let ready = proc.wait_for(0, "ready", Duration::from_secs(20));
        proc.udp = ready
            .split_whitespace()
            .find_map(|w| w.trim_start_matches("listen=").strip_prefix("udp:"))
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("no udp address in {ready:?}"));
        proc
    }

    fn lines(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }

    fn wait_for(&self, from: usize, needle: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(line) = self.lines().iter().skip(from).find(|l| l.contains(needle)) {
                return line.clone();
            }
            assert!(
                Instant::now() < deadline,
                "no log line with {needle:?} within {timeout:?}; log:\n{}",
                self.lines().join("\n")
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([signal, &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Waits for the exit (up to `timeout`); the status and the whole log.
    fn wait_exit(&mut self, timeout: Duration) -> (ExitStatus, Vec<String>) {
        let deadline = Instant::now() + timeout;
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            assert!(
                Instant::now() < deadline,
                "the daemon did not exit within {timeout:?}; log:\n{}",
                self.lines().join("\n")
            );
            std::thread::sleep(Duration::from_millis(10));
        };
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
        (status, self.lines())
    }

    /// Waits (asking for a stats line, SIGUSR1, every 100 ms) until the engine holds at
    /// least `calls` calls.
    fn wait_calls(&self, calls: u64, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            let from = self.lines().len();
            self.signal("-USR1");
            let line = self.wait_for(from, "stats", timeout);
            let now: u64 = line
                .split_whitespace()
                .find_map(|w| w.strip_prefix("calls="))
                .and_then(|n| n.parse().ok())
                .unwrap_or_else(|| panic!("no calls= in {line:?}"));
            if now >= calls {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{now} calls, not {calls}, within {timeout:?}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn rewrite(&self, config: &str) {
        std::fs::write(&self.config, config).unwrap();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn sipp(name: &str, proc: &Proc, args: &[&str]) -> SippRun {
    sipp_at(name, proc.udp, args)
}

fn scenario(name: &str) -> String {
    repo_root()
        .join("tests/sipp/lifecycle")
        .join(name)
        .display()
        .to_string()
}

/// Sends one SIP request over UDP and returns the first line of the answer.
fn udp_request(to: SocketAddr, method: &str, user: &str) -> String {
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(3)))
        .unwrap();
    let local = socket.local_addr().unwrap();
    let request = format!(
        "{method} sip:{user}@{to} SIP/2.0\r\n\
         Via: SIP/2.0/UDP {local};branch=z9hG4bK-{method}-{}\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:test@{local}>;tag=t1\r\n\
         To: <sip:{user}@{to}>\r\n\
         Call-ID: {method}-{}@test\r\n\
         CSeq: 1 {method}\r\n\
         Content-Length: 0\r\n\r\n",
        std::process::id(),
        Instant::now().elapsed().as_nanos()
    );
    socket.send_to(request.as_bytes(), to).unwrap();
    let mut buf = [0u8; 4096];
    let n = socket.recv(&mut buf).unwrap();
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

// ---- the unit file

#[test]
fn the_unit_file_passes_systemd_analyze_verify() {
    let unit = std::fs::read_to_string(repo_root().join("config/tandem.service")).unwrap();
    for needed in [
        "Type=notify",
        "WatchdogSec=",
        "ExecReload=/bin/kill -HUP $MAINPID",
        "DynamicUser=yes",
        "ProtectSystem=strict",
        "ProtectHome=yes",
        "PrivateTmp=yes",
        "NoNewPrivileges=yes",
        "CapabilityBoundingSet=CAP_NET_BIND_SERVICE",
        "AmbientCapabilities=CAP_NET_BIND_SERVICE",
        "RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX",
        "SystemCallFilter=@system-service",
        "LimitNOFILE=",
        "ExecStart=/usr/bin/tandem run --config /etc/tandem/tandem.toml",
    ] {
        assert!(unit.contains(needed), "the unit lacks {needed}");
    }
    // verify needs ExecStart's binary to exist: the built one stands in for /usr/bin.
    let dir = scratch_dir("unit");
    let copy = dir.join("tandem.service");
    std::fs::write(
        &copy,
        unit.replace("/usr/bin/tandem", env!("CARGO_BIN_EXE_tandem")),
    )
    .unwrap();
    let verify = |path: &Path| {
        Command::new("systemd-analyze")
            .arg("verify")
            .arg(path)
            .output()
            .expect("systemd-analyze runs (Debian package systemd)")
    };
    let out = verify(&copy);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "verify failed: {stderr}");
    assert!(
        !stderr.contains("tandem.service"),
        "verify warned about the unit: {stderr}"
    );
    // And verify does catch a broken unit (the check above can fail).
    let broken = dir.join("broken.service");
    std::fs::write(
        &broken,
        unit.replace("/usr/bin/tandem", env!("CARGO_BIN_EXE_tandem"))
            .replace("Type=notify", "Type=notfy\nProtectSystm=strict"),
    )
    .unwrap();
    let out = verify(&broken);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("notfy") && stderr.contains("ProtectSystm"),
        "verify missed the broken unit: {stderr}"
    );
}

// ---- sd_notify

/// Collects the datagrams sent to a socket, with their arrival times.
struct NotifySocket {
    path: PathBuf,
    got: Arc<Mutex<Vec<(Instant, String)>>>,
}

impl NotifySocket {
    fn bind(name: &str) -> NotifySocket {
        let path = scratch_dir(name).join("notify.sock");
        let _ = std::fs::remove_file(&path);
        let socket = UnixDatagram::bind(&path).unwrap();
        let got = Arc::new(Mutex::new(Vec::new()));
        let sink = got.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = socket.recv(&mut buf) {
                let text = String::from_utf8_lossy(&buf[..n]).into_owned();
                sink.lock().unwrap().push((Instant::now(), text));
            }
        });
        NotifySocket { path, got }
    }

    fn messages(&self) -> Vec<String> {
        self.got
            .lock()
            .unwrap()
            .iter()
            .map(|(_, m)| m.clone())
            .collect()
    }

    /// Waits until `count` messages contain `needle`; the index of the last of them.
    fn wait_for_count(&self, needle: &str, count: usize, timeout: Duration) -> usize {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some((i, _)) = self
                .messages()
                .iter()
                .enumerate()
                .filter(|(_, m)| m.contains(needle))
                .nth(count - 1)
            {
                return i;
            }
            assert!(
                Instant::now() < deadline,
                "not {count} notifications with {needle:?} in {timeout:?}: {:?}",
                self.messages()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Waits for a message containing `needle` at index `from` or later; its index.
    fn wait_for(&self, from: usize, needle: &str, timeout: Duration) -> usize {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(i) = self
                .messages()
                .iter()
                .enumerate()
                .skip(from)
                .find(|(_, m)| m.contains(needle))
                .map(|(i, _)| i)
            {
                return i;
            }
            assert!(
                Instant::now() < deadline,
                "no notification with {needle:?} in {timeout:?}: {:?}",
                self.messages()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

#[test]
fn sd_notify_ready_watchdog_status_reloading_stopping() {
    let notify = NotifySocket::bind("notify");
    let (registrar, _) = answering_registrar();
    let started = Instant::now();
    let mut proc = Proc::start(
        "notify",
        &config_text(&format!(
            "[daemon]\ndrain_grace_s = 30\n\n{}",
            trunk(600, registrar)
        )),
        &[
            ("NOTIFY_SOCKET", notify.path.to_str().unwrap()),
            // Pings every 200 ms.
            ("WATCHDOG_USEC", "400000"),
            ("TANDEM_TEST_TRUNK_PASSWORD", "s3cret"),
        ],
    );
    // READY=1 once, after the sockets are bound: the SIP socket answers at once.
    let ready = notify.wait_for(0, "READY=1", Duration::from_secs(20));
    let options = udp_request(proc.udp, "OPTIONS", "echo");
    assert!(options.starts_with("SIP/2.0 200"), "{options}");
    // WATCHDOG=1 repeatedly, from the loop (at least two, whatever the machine's load).
    let second = notify.wait_for_count("WATCHDOG=1", 2, Duration::from_secs(30));
    assert!(second > ready, "{:?}", notify.messages());
    let pinged = started.elapsed();
    // STATUS= with the calls and the trunk's state once it registered.
    notify.wait_for(0, "STATUS=0 active calls", Duration::from_secs(30));
    let trunk_status = notify.wait_for(
        0,
        "0 active calls; trunks: carrier=registered",
        Duration::from_secs(30),
    );
    assert!(
        notify.messages()[trunk_status].contains("STATUS="),
        "{:?}",
        notify.messages()
    );
    // A status with a call in progress counts it.
    let call = {
        let udp = proc.udp;
        std::thread::spawn(move || {
            sipp_at(
                "notify-call",
                udp,
                &["-sn", "uac", "-s", "echo", "-d", "3000", "-m", "1"],
            )
        })
    };
    let from = notify.messages().len();
    notify.wait_for(from, "STATUS=1 active calls", Duration::from_secs(30));
    let run = call.join().unwrap();
    assert_eq!((run.successful, run.failed), (1, 0), "{}", run.stdout);
    // SIGHUP: RELOADING=1, then READY=1.
    let from = notify.messages().len();
    proc.signal("-HUP");
    let reloading = notify.wait_for(from, "RELOADING=1", Duration::from_secs(20));
    notify.wait_for(reloading + 1, "READY=1", Duration::from_secs(20));
    assert!(ready < reloading);
    // SIGTERM with a call up: STOPPING=1, then a status that says draining and still
    // counts the call, which finishes (the grace is longer than it); exit 0.
    let call = {
        let udp = proc.udp;
        std::thread::spawn(move || {
            sipp_at(
                "notify-drain-call",
                udp,
                &["-sn", "uac", "-s", "echo", "-d", "4000", "-m", "1"],
            )
        })
    };
    let from = notify.messages().len();
    notify.wait_for(from, "STATUS=1 active calls", Duration::from_secs(30));
    let from = notify.messages().len();
    proc.signal("-TERM");
    let stopping = notify.wait_for(from, "STOPPING=1", Duration::from_secs(20));
    let draining = notify.wait_for(
        from,
        "STATUS=draining; 1 active calls; trunks: carrier=",
        Duration::from_secs(20),
    );
    assert!(stopping <= draining, "{:?}", notify.messages());
    let run = call.join().unwrap();
    assert_eq!((run.successful, run.failed), (1, 0), "{}", run.stdout);
    let (status, _) = proc.wait_exit(Duration::from_secs(60));
    assert!(status.success(), "{status:?}");
    eprintln!(
        "sd_notify: second WATCHDOG=1 {pinged:?} after the start; {} notifications; \
         draining status: {:?}",
        notify.messages().len(),
        notify.messages()[draining]
    );
}

// ---- reload

fn trunk(expires: u64, registrar: SocketAddr) -> String {
    format!(
        "[[trunks]]\nname = \"carrier\"\nproxy = \"sip:{registrar}\"\nusername = \"tandem\"\n\
         password_env = \"TANDEM_TEST_TRUNK_PASSWORD\"\nregister = true\n\
         register_expires_s = {expires}\n"
    )
}

const ROUTE_486: &str = "[[route]]\nname = \"closed\"\naction = \"decline\"\nstatus = 486\n\
                         [route.match]\nuser = '^closed$'\n";

#[test]
fn reload_under_20_live_sipp_calls_drops_none() {
    let (registrar, registers) = answering_registrar();
    let env = [("TANDEM_TEST_TRUNK_PASSWORD", "s3cret")];
    let before = config_text(&format!(
        "[log]\nlevel = \"info\"\n\n{}",
        trunk(3600, registrar)
    ));
    let mut proc = Proc::start("reload", &before, &env);
    // The route is not there yet: `closed` is unknown (404), the 486 scenario fails.
    let run = sipp(
        "reload-before",
        &proc,
        &[
            "-sf",
            &scenario("uac_route_486.xml"),
            "-s",
            "closed",
            "-m",
            "1",
        ],
    );
    assert_eq!(run.successful, 0, "{}", run.stdout);
    let deadline = Instant::now() + Duration::from_secs(20);
    while !registers
        .lock()
        .unwrap()
        .iter()
        .any(|r| r.contains("Expires: 3600"))
    {
        assert!(Instant::now() < deadline, "the trunk never registered");
        std::thread::sleep(Duration::from_millis(20));
    }

    // 20 calls of 8 s, all up within a second.
    let udp = proc.udp;
    let calls = std::thread::spawn(move || {
        sipp_at(
            "reload-calls",
            udp,
            &[
                "-sn", "uac", "-s", "echo", "-d", "8000", "-m", "20", "-l", "20", "-r", "20",
            ],
        )
    });
    proc.wait_calls(20, Duration::from_secs(30));
    // Mid-call: a route added, the trunk changed, the log level raised; a listen
    // address changed too (needs a restart: reported, not applied).
    let after = config_text(&format!(
        "[log]\nlevel = \"debug\"\n\n{}\n{ROUTE_486}",
        trunk(1800, registrar)
    ))
    .replace("tcp:127.0.0.1:0", "tcp:127.0.0.1:1");
    proc.rewrite(&after);
    let from = proc.lines().len();
    let hup = Instant::now();
    proc.signal("-HUP");
    let reloaded = proc.wait_for(from, "configuration reloaded", Duration::from_secs(20));
    let reload_took = hup.elapsed();
    for applied in ["routes", "trunk changed: carrier", "log.level"] {
        assert!(reloaded.contains(applied), "{applied} not in {reloaded}");
    }
    assert!(reloaded.contains("sip.listen"), "{reloaded}");
    proc.wait_for(from, "needs a restart", Duration::from_secs(20));
    let run = calls.join().unwrap();
    assert_eq!(
        (run.successful, run.failed),
        (20, 0),
        "calls dropped by the reload:\n{}\n{}",
        run.stdout,
        run.stderr
    );
    // The changed trunk registered again with its new expiry.
    assert!(
        registers
            .lock()
            .unwrap()
            .iter()
            .any(|r| r.contains("Expires: 1800")),
        "no REGISTER with the new settings"
    );
    // The debug level is in force.
    assert!(
        proc.lines().iter().skip(from).any(|l| l.contains("DEBUG")),
        "no DEBUG line after the reload"
    );
    // The new route works.
    let run = sipp(
        "reload-route",
        &proc,
        &[
            "-sf",
            &scenario("uac_route_486.xml"),
            "-s",
            "closed",
            "-m",
            "1",
        ],
    );
    assert_eq!((run.successful, run.failed), (1, 0), "{}", run.stdout);

    // A bad file is refused with its line and key; the old configuration serves on.
    let bad = format!("{after}\n[daemon]\ndrain_grace_s = 5\nbogus_key = 1\n");
    let bad_line = bad
        .lines()
        .position(|l| l.starts_with("bogus_key"))
        .unwrap()
        + 1;
    proc.rewrite(&bad);
    let from = proc.lines().len();
    proc.signal("-HUP");
    let refused = proc.wait_for(from, "configuration refused", Duration::from_secs(20));
    assert!(
        refused.contains(&format!("line {bad_line}")) && refused.contains("bogus_key"),
        "{refused}"
    );
    assert!(refused.contains("tandem.toml"), "{refused}");
    let run = sipp(
        "reload-after-bad",
        &proc,
        &[
            "-sf",
            &scenario("uac_route_486.xml"),
            "-s",
            "closed",
            "-m",
            "1",
        ],
    );
    assert_eq!((run.successful, run.failed), (1, 0), "{}", run.stdout);
    let run = sipp(
        "reload-echo",
        &proc,
        &["-sn", "uac", "-s", "echo", "-m", "3"],
    );
    assert_eq!((run.successful, run.failed), (3, 0), "{}", run.stdout);
    eprintln!("reload: 20/20 calls completed across the SIGHUP; applied in {reload_took:?}");
    proc.signal("-TERM");
    let (status, _) = proc.wait_exit(Duration::from_secs(60));
    assert!(status.success());
}

// ---- drain

#[test]
fn drain_lets_10_calls_finish_refuses_new_ones_and_exits_0() {
    let (registrar, registers) = answering_registrar();
    let mut proc = Proc::start(
        "drain",
        &config_text(&format!(
            "[daemon]\ndrain_grace_s = 20\nretry_after_s = 7\n\n{}",
            trunk(600, registrar)
        )),
        &[("TANDEM_TEST_TRUNK_PASSWORD", "s3cret")],
    );
    proc.wait_for(0, "registered", Duration::from_secs(20));
    let udp = proc.udp;
    let started = Instant::now();
    let calls = std::thread::spawn(move || {
        let run = sipp_at(
            "drain-calls",
            udp,
            &[
                "-sn", "uac", "-s", "echo", "-d", "5000", "-m", "10", "-l", "10", "-r", "10",
            ],
        );
        (run, Instant::now())
    });
    proc.wait_calls(10, Duration::from_secs(30));
    let term = Instant::now();
    proc.signal("-TERM");
    proc.wait_for(0, "draining", Duration::from_secs(20));
    // New calls: 503 with Retry-After; OPTIONS too.
    let run = sipp(
        "drain-new",
        &proc,
        &[
            "-sf",
            &scenario("uac_drain_503.xml"),
            "-s",
            "echo",
            "-m",
            "1",
        ],
    );
    assert_eq!((run.successful, run.failed), (1, 0), "{}", run.stdout);
    let options = udp_request(proc.udp, "OPTIONS", "echo");
    assert!(options.starts_with("SIP/2.0 503"), "{options}");
    assert!(options.contains("Retry-After: 7"), "{options}");
    let (run, calls_done) = calls.join().unwrap();
    assert_eq!(
        (run.successful, run.failed),
        (10, 0),
        "calls cut by the drain:\n{}",
        run.stdout
    );
    let (status, log) = proc.wait_exit(Duration::from_secs(60));
    let exited = Instant::now();
    assert!(status.success(), "{status:?}");
    assert!(
        log.iter().any(|l| l.contains("drain: no call left")),
        "{}",
        log.join("\n")
    );
    assert!(
        !log.iter().any(|l| l.contains("grace period over")),
        "{}",
        log.join("\n")
    );
    // Then the trunk un-REGISTERed (Expires: 0), answered before the exit.
    let unregisters = registers
        .lock()
        .unwrap()
        .iter()
        .filter(|r| r.contains("Expires: 0"))
        .count();
    assert_eq!(unregisters, 1, "{:?}", registers.lock().unwrap());
    assert!(
        log.iter().any(|l| l.contains("Unregistered")),
        "{}",
        log.join("\n")
    );
    let after_last = exited.saturating_duration_since(calls_done);
    eprintln!(
        "drain: 10/10 calls finished; SIGTERM at {:?}, last call done {:?} later, exit {:?} \
         after the last call ({:?} after SIGTERM)",
        term - started,
        calls_done.saturating_duration_since(term),
        after_last,
        exited - term
    );
}

#[test]
fn drain_ends_a_call_longer_than_the_grace_with_bye() {
    let mut proc = Proc::start(
        "drain-grace",
        &config_text("[daemon]\ndrain_grace_s = 2\n\n[log]\nlevel = \"debug\"\n"),
        &[],
    );
    let udp = proc.udp;
    let call = std::thread::spawn(move || {
        sipp_at(
            "drain-grace-call",
            udp,
            &[
                "-sf",
                &scenario("uac_wait_bye_late_200.xml"),
                "-s",
                "echo",
                "-m",
                "1",
            ],
        )
    });
    // The call is up (answered).
    proc.wait_for(0, "media task started", Duration::from_secs(30));
    let term = Instant::now();
    proc.signal("-TERM");
    let (status, log) = proc.wait_exit(Duration::from_secs(60));
    let took = term.elapsed();
    assert!(status.success(), "{status:?}");
    let run = call.join().unwrap();
    // The scenario succeeds only when the BYE came and was answered.
    assert_eq!((run.successful, run.failed), (1, 0), "{}", run.stdout);
    // In the daemon's log: draining, then the grace period over, then the BYE sent,
    // then its 200 received, then the exit.
    let position = |from: usize, what: &str, line: &dyn Fn(&str) -> bool| {
        log.iter()
            .skip(from)
            .position(|l| line(l))
            .map(|i| i + from)
            .unwrap_or_else(|| panic!("no {what} after line {from}:\n{}", log.join("\n")))
    };
    let draining = position(0, "drain", &|l| l.contains("draining: new calls get 503"));
    let grace = position(draining, "grace line", &|l| l.contains("grace period over"));
    let bye = position(grace, "BYE sent", &bye_sent);
    let ended = position(bye, "call ended", &|l| l.contains("call ended"));
    // The last stats line, at the exit: the 200 to the BYE (SIPp answers it a second
    // late) came before it.
    let stats = position(ended, "stats", &|l| l.contains("responses_in="));
    assert!(
        responses_in(&log[stats]) >= 1,
        "exited before the BYE was answered: {}",
        log[stats]
    );
    let last = position(stats, "transports shut", &|l| {
        l.contains("transport layer shut down")
    });
    eprintln!(
        "drain grace: the BYE after the grace line, its 200 a second late, exit {took:?} after SIGTERM (grace 2 s; \
         log lines {draining} < {grace} < {bye} < {ended} < {stats} < {last})"
    );
}

#[test]
fn sigint_ends_calls_with_bye_and_stops_at_once() {
    let mut proc = Proc::start(
        "sigint",
        &config_text("[daemon]\ndrain_grace_s = 300\n\n[log]\nlevel = \"debug\"\n"),
        &[],
    );
    let udp = proc.udp;
    let call = std::thread::spawn(move || {
        sipp_at(
            "sigint-call",
            udp,
            &[
                "-sf",
                &scenario("uac_wait_bye_late_200.xml"),
                "-s",
                "echo",
                "-m",
                "1",
            ],
        )
    });
    proc.wait_for(0, "media task started", Duration::from_secs(30));
    let int = Instant::now();
    proc.signal("-INT");
    // At once: no drain (its grace is 300 s), the call gets BYE, then the exit.
    let (status, log) = proc.wait_exit(Duration::from_secs(60));
    let took = int.elapsed();
    assert!(status.success(), "{status:?}");
    let run = call.join().unwrap();
    assert_eq!((run.successful, run.failed), (1, 0), "{}", run.stdout);
    let position = |from: usize, what: &str, line: &dyn Fn(&str) -> bool| {
        log.iter()
            .skip(from)
            .position(|l| line(l))
            .map(|i| i + from)
            .unwrap_or_else(|| panic!("no {what} after line {from}:\n{}", log.join("\n")))
    };
    let stop = position(0, "SIGINT", &|l| l.contains("SIGINT: stopping now"));
    let bye = position(stop, "BYE sent", &bye_sent);
    let stats = position(bye, "stats", &|l| l.contains("responses_in="));
    assert!(
        responses_in(&log[stats]) >= 1,
        "exited before the BYE was answered: {}",
        log[stats]
    );
    let last = position(stats, "transports shut", &|l| {
        l.contains("transport layer shut down")
    });
    assert!(
        !log.iter().any(|l| l.contains("draining")),
        "SIGINT does not drain:\n{}",
        log.join("\n")
    );
    eprintln!(
        "SIGINT: BYE, its 200 a second late, then exit {took:?} after the signal \
         (log lines {stop} < {bye} < {stats} < {last})"
    );
}

#[test]
fn check_config_names_file_line_and_key() {
    let dir = scratch_dir("check");
    let path = dir.join("bad.toml");
    std::fs::write(
        &path,
        "[daemon]\ndrain_grace_s = 5\nretry_after_s = \"soon\"\n",
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_tandem"))
        .arg("check-config")
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("bad.toml")
            && stderr.contains("line 3")
            && stderr.contains("retry_after_s"),
        "{stderr}"
    );
    // password_env naming an unset variable.
    std::fs::write(
        &path,
        "[[inbound.users]]\nname = \"alice\"\npassword_env = \"TANDEM_TEST_UNSET_VARIABLE\"\n",
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_tandem"))
        .arg("check-config")
        .arg(&path)
        .env_remove("TANDEM_TEST_UNSET_VARIABLE")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("line 3") && stderr.contains("inbound.users[0].password_env"),
        "{stderr}"
    );
    let out = Command::new(env!("CARGO_BIN_EXE_tandem"))
        .arg("check-config")
        .arg(&path)
        .env("TANDEM_TEST_UNSET_VARIABLE", "pw")
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

// ---- reload through the control API

/// One HTTP/1.1 request; the status and the body.
fn http(addr: SocketAddr, method: &str, path: &str, token: Option<&str>) -> (u16, String) {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\n{auth}Content-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap();
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

#[test]
fn reload_through_the_control_api() {
    let api = SocketAddr::from(([127, 0, 0, 1], common::free_port()));
    let token = "reload-test-token-0123456789";
    let api_section = format!("[api]\nlisten = \"{api}\"\ntoken = \"{token}\"\n");
    let proc = Proc::start("api-reload", &config_text(&api_section), &[]);
    proc.wait_for(0, "control API serving", Duration::from_secs(10));
    let (status, _) = http(api, "POST", "/v1/daemon:reload", None);
    assert_eq!(status, 401);
    // Unchanged file: 200, nothing applied.
    let (status, body) = http(api, "POST", "/v1/daemon:reload", Some(token));
    assert_eq!(status, 200, "{body}");
    let summary: serde_json::Value = serde_json::from_str(body.trim()).unwrap();
    assert_eq!(summary["applied"], serde_json::json!([]), "{body}");
    // A route added and the RTP range changed: the route applied, media needs a restart.
    proc.rewrite(&config_text(&format!(
        "{api_section}\n[media]\nrtp_port_first = 20000\nrtp_port_last = 20100\n\n{ROUTE_486}"
    )));
    let (status, body) = http(api, "POST", "/v1/daemon:reload", Some(token));
    assert_eq!(status, 200, "{body}");
    let summary: serde_json::Value = serde_json::from_str(body.trim()).unwrap();
    assert_eq!(summary["applied"], serde_json::json!(["routes"]), "{body}");
    assert_eq!(
        summary["needsRestart"],
        serde_json::json!(["media"]),
        "{body}"
    );
    let run = sipp(
        "api-reload-route",
        &proc,
        &[
            "-sf",
            &scenario("uac_route_486.xml"),
            "-s",
            "closed",
            "-m",
            "1",
        ],
    );
    assert_eq!((run.successful, run.failed), (1, 0), "{}", run.stdout);
    // A bad file: 422 naming the file, the line and the key.
    let bad = config_text(&format!("{api_section}\n[park]\ntimeout_s = \"long\"\n"));
    let line = bad
        .lines()
        .position(|l| l.starts_with("timeout_s"))
        .unwrap()
        + 1;
    proc.rewrite(&bad);
    let (status, body) = http(api, "POST", "/v1/daemon:reload", Some(token));
    assert_eq!(status, 422, "{body}");
    let problem: serde_json::Value = serde_json::from_str(body.trim()).unwrap();
    let detail = problem["detail"].as_str().unwrap();
    assert!(
        detail.contains("tandem.toml") && detail.contains(&format!("line {line}")),
        "{detail}"
    );
    assert!(detail.contains("timeout_s"), "{detail}");
}

// ---- TLS certificate reload

/// A TLS handshake with `server` trusting `ca` only; the stream when it succeeds.
async fn tls_handshake(
    ca: &Path,
    server: SocketAddr,
) -> Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>, std::io::Error> {
    use runtime::sip_transport::rustls::RootCertStore;
    use rustls_pki_types::pem::PemObject;
    let mut roots = RootCertStore::empty();
    let pem = std::fs::read(ca).unwrap();
    for cert in rustls_pki_types::CertificateDer::pem_slice_iter(&pem) {
        roots.add(cert.unwrap()).unwrap();
    }
    let config = runtime::sip_transport::client_config(roots).unwrap();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(server).await?;
    let name = rustls_pki_types::ServerName::try_from("sip.test").unwrap();
    tokio::time::timeout(Duration::from_secs(5), connector.connect(name, tcp))
        .await
        .map_err(|_| std::io::Error::other("handshake timed out"))?
}

/// An OPTIONS over an open TLS connection; the status line of the answer.
async fn options_over(
    stream: &mut tokio_rustls::client::TlsStream<tokio::net::TcpStream>,
    server: SocketAddr,
    n: u32,
) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let request = format!(
        "OPTIONS sip:echo@{server};transport=tls SIP/2.0\r\n\
         Via: SIP/2.0/TLS client.invalid;branch=z9hG4bK-tls-{n}\r\n\
         Max-Forwards: 70\r\nFrom: <sip:test@client.invalid>;tag=t{n}\r\n\
         To: <sip:echo@{server}>\r\nCall-ID: tls-{n}@test\r\nCSeq: 1 OPTIONS\r\n\
         Content-Length: 0\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf))
        .await
        .unwrap()
        .unwrap();
    String::from_utf8_lossy(&buf[..n])
        .lines()
        .next()
        .unwrap_or_default()
        .to_owned()
}

#[test]
fn reload_swaps_the_tls_certificate_for_new_handshakes_only() {
    let first = common::TestPki::new("reload-tls-1");
    let second = common::TestPki::new("reload-tls-2");
    let dir = scratch_dir("reload-tls-files");
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::copy(&first.certificate, &cert).unwrap();
    std::fs::copy(&first.private_key, &key).unwrap();
    let config = format!(
        "[sip]\nlisten = [\"udp:127.0.0.1:0\", \"tls:127.0.0.1:0\"]\n\
         [sip.tls]\ncertificate = {cert:?}\nprivate_key = {key:?}\n\n{USERS}"
    );
    let proc = Proc::start("reload-tls", &config, &[]);
    let ready = proc.wait_for(0, "ready", Duration::from_secs(20));
    let tls: SocketAddr = ready
        .split_whitespace()
        .find_map(|w| w.trim_start_matches("listen=").strip_prefix("tls:"))
        .and_then(|a| a.parse().ok())
        .unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut open = tls_handshake(&first.ca, tls)
            .await
            .expect("the first certificate");
        assert!(
            options_over(&mut open, tls, 1)
                .await
                .starts_with("SIP/2.0 200")
        );
        assert!(
            tls_handshake(&second.ca, tls).await.is_err(),
            "not the second yet"
        );
        // Renewed files, then SIGHUP.
        std::fs::copy(&second.certificate, &cert).unwrap();
        std::fs::copy(&second.private_key, &key).unwrap();
        let from = proc.lines().len();
        proc.signal("-HUP");
        let reloaded = proc.wait_for(from, "configuration reloaded", Duration::from_secs(20));
        assert!(reloaded.contains("tls certificate"), "{reloaded}");
        // New handshakes present the new certificate; the open connection goes on.
        let mut renewed = tls_handshake(&second.ca, tls)
            .await
            .expect("the new certificate");
        assert!(
            options_over(&mut renewed, tls, 2)
                .await
                .starts_with("SIP/2.0 200")
        );
        assert!(
            tls_handshake(&first.ca, tls).await.is_err(),
            "the old one is gone"
        );
        assert!(
            options_over(&mut open, tls, 3)
                .await
                .starts_with("SIP/2.0 200")
        );
    });
}

/// `responses_in=` of a stats line.
fn responses_in(line: &str) -> u64 {
    line.split_whitespace()
        .find_map(|w| w.strip_prefix("responses_in="))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no responses_in= in {line:?}"))
}

/// A debug line of the daemon saying a BYE left (its client transaction was made).
fn bye_sent(line: &str) -> bool {
    line.contains("method=BYE") && line.contains("new client transaction")
}

// ---- credentials reload

/// tests/sipp/uac_digest.xml (a call challenged 401, re-sent with credentials as user
/// `sipp`) with `password`, written in the test's directory; its path.
fn digest_scenario(name: &str, password: &str) -> String {
    let text = std::fs::read_to_string(repo_root().join("tests/sipp/uac_digest.xml")).unwrap();
    assert!(text.contains("username=sipp password=secret"));
    let path = scratch_dir(name).join(format!("uac_digest_{password}.xml"));
    std::fs::write(
        &path,
        text.replace("password=secret", &format!("password={password}")),
    )
    .unwrap();
    path.display().to_string()
}

/// `[[inbound.users]]` changed on reload: the old password is refused (403, and a
/// security line) and the new one answered, with SIGHUP and then through
/// `POST /v1/daemon:reload`.
#[test]
fn reload_changes_the_inbound_accounts() {
    let api = SocketAddr::from(([127, 0, 0, 1], common::free_port()));
    let token = "reload-accounts-token-0123456789";
    let config = |password: &str| {
        config_text(&format!(
            "[api]\nlisten = \"{api}\"\ntoken = \"{token}\"\n\n\
             [inbound]\naccept = \"trusted\"\nalgorithms = [\"MD5\"]\n\
             [[inbound.users]]\nname = \"sipp\"\npassword = \"{password}\"\n"
        ))
    };
    let proc = Proc::start("reload-accounts", &config("first-pw"), &[]);
    // Calls with credentials (run 1 call each; `-recv_timeout` bounds a refused one).
    let call = |tag: &str, password: &str| {
        sipp(
            &format!("reload-accounts-{tag}"),
            &proc,
            &[
                "-sf",
                &digest_scenario("reload-accounts", password),
                "-m",
                "1",
                "-recv_timeout",
                "5000",
            ],
        )
    };
    let refused = |tag: &str, password: &str, from: usize| {
        let run = call(tag, password);
        assert_eq!(
            (run.successful, run.failed),
            (0, 1),
            "{password} must be refused: {}",
            run.stdout
        );
        proc.wait_for(
            from,
            "security: auth-failed src=127.0.0.1 user=sipp",
            Duration::from_secs(10),
        );
    };
    let answered = |tag: &str, password: &str| {
        let run = call(tag, password);
        assert_eq!(
            (run.successful, run.failed),
            (1, 0),
            "{password} must be answered: {}",
            run.stdout
        );
    };
    answered("first", "first-pw");
    // Not every password passes: the refusal check can fail.
    refused("wrong", "second-pw", 0);

    // SIGHUP with a new password.
    proc.rewrite(&config("second-pw"));
    let from = proc.lines().len();
    proc.signal("-HUP");
    let reloaded = proc.wait_for(from, "configuration reloaded", Duration::from_secs(20));
    assert!(reloaded.contains("inbound"), "{reloaded}");
    refused("first-after-hup", "first-pw", from);
    answered("second-after-hup", "second-pw");

    // Through the control API.
    proc.rewrite(&config("third-pw"));
    let (status, body) = http(api, "POST", "/v1/daemon:reload", Some(token));
    assert_eq!(status, 200, "{body}");
    let summary: serde_json::Value = serde_json::from_str(body.trim()).unwrap();
    assert_eq!(summary["applied"], serde_json::json!(["inbound"]), "{body}");
    let from = proc.lines().len();
    refused("second-after-api", "second-pw", from);
    answered("third-after-api", "third-pw");
}
