//! Shared harness for the loopback tests: start the real `tandem` binary on free ports,
//! run SIPp against it, read back SIPp's statistics and the daemon's stats log line.
#![allow(
    dead_code,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// A port free on 127.0.0.1 for both UDP and TCP at the time of the call.
pub fn free_port() -> u16 {
    loop {
        let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = udp.local_addr().unwrap().port();
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

pub fn scratch_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("tandem-test-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The daemon under test. Killed on drop.
#[derive(Debug)]
pub struct Daemon {
    child: Child,
    /// The UDP port it bound (port 0 in its config: no race with other tests).
    pub port: u16,
    /// The TCP port it bound.
    pub tcp_port: u16,
    /// Every socket of the ready line, as ("udp", addr), ("tls", addr), ...
    pub listening: Vec<(String, SocketAddr)>,
    lines: Arc<Mutex<Vec<String>>>,
    /// The thread that collects its stderr.
    reader: Option<std::thread::JoinHandle<()>>,
}

impl Daemon {
    /// Starts `tandem run` with the demo users on a free port; `extra` is appended to the
    /// config file.
    pub fn start(name: &str, extra: &str) -> Daemon {
        Daemon::start_listening(name, &["udp", "tcp"], extra)
    }

    /// Like [`start`](Self::start), listening on 127.0.0.1 port 0 for each of
    /// `transports` ("udp", "tcp", "tls", "ws", "wss"). `extra` goes in the `[sip]`
    /// table and may open others (`[sip.tls]`).
    pub fn start_listening(name: &str, transports: &[&str], extra: &str) -> Daemon {
        Daemon::start_full(name, "127.0.0.1", transports, extra, "")
    }

    /// Like [`start`](Self::start), with `sip_extra` in the `[sip]` table and
    /// `other_sections` (whole tables, such as `[media]`) after it.
    pub fn start_with(name: &str, sip_extra: &str, other_sections: &str) -> Daemon {
        Daemon::start_full(
            name,
            "127.0.0.1",
            &["udp", "tcp"],
            sip_extra,
            other_sections,
        )
    }

    /// Like [`start_with`](Self::start_with), listening (UDP and TCP, port 0) on `host`,
    /// another loopback address such as 127.0.0.10.
    pub fn start_on(name: &str, host: &str, sip_extra: &str, other_sections: &str) -> Daemon {
        Daemon::start_full(name, host, &["udp", "tcp"], sip_extra, other_sections)
    }

    fn start_full(name: &str, host: &str, transports: &[&str], extra: &str, other: &str) -> Daemon {
        let dir = scratch_dir(name);
        let config = dir.join("tandem.toml");
        let listen: Vec<String> = transports
            .iter()
            .map(|t| format!("\"{t}:{host}:0\""))
            .collect();
        std::fs::write(
            &config,
            format!(
                "[sip]\nlisten = [{}]\n{extra}\n{other}\n\
                 [log]\nlevel = \"info\"\n\
                 [daemon]\ndrain_grace_s = 3\n\
                 [[users]]\nname = \"echo\"\nbehaviour = \"echo\"\n\
                 [[users]]\nname = \"ring\"\nbehaviour = \"ring\"\n\
                 [[users]]\nname = \"busy\"\nbehaviour = \"busy\"\n",
                listen.join(", ")
            ),
        )
        .unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_tandem"))
            .args(["run", "--config"])
            .arg(&config)
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let stderr = child.stderr.take().unwrap();
        let sink = lines.clone();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                sink.lock().unwrap().push(line);
            }
        });
        let mut daemon = Daemon {
            child,
            reader: Some(reader),
            port: 0,
            tcp_port: 0,
            listening: Vec::new(),
            lines,
        };
        // "ready listen=udp:127.0.0.1:41234 tcp:127.0.0.1:40121 tls:127.0.0.1:40122"
        let ready = daemon.wait_for_line("ready", Duration::from_secs(20));
        daemon.listening = ready
            .split_whitespace()
            .map(|w| w.trim_start_matches("listen="))
            .filter_map(|w| {
                let (transport, addr) = w.split_once(':')?;
                Some((transport.to_owned(), addr.parse::<SocketAddr>().ok()?))
            })
            .collect();
        for transport in transports {
            assert!(
                daemon.listening.iter().any(|(t, _)| t == transport),
                "no {transport} address in {ready:?}"
            );
        }
        daemon.port = daemon.try_addr("udp").map_or(0, |a| a.port());
        daemon.tcp_port = daemon.try_addr("tcp").map_or(0, |a| a.port());
        daemon
    }

    /// The address of the first listener of `transport` ("udp", "tls", "ws", ...).
    pub fn try_addr(&self, transport: &str) -> Option<SocketAddr> {
        self.listening
            .iter()
            .find(|(t, _)| t == transport)
            .map(|(_, a)| *a)
    }

    /// The address of the first listener of `transport`; panics if there is none.
    pub fn addr(&self, transport: &str) -> SocketAddr {
        self.try_addr(transport)
            .unwrap_or_else(|| panic!("the daemon does not listen on {transport}"))
    }

    pub fn lines(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }

    /// Waits for a log line containing `needle` that was not there before the call started
    /// counting from `from`; returns it.
    pub fn wait_for_line_after(&self, from: usize, needle: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(line) = self.lines().iter().skip(from).find(|l| l.contains(needle)) {
                return line.clone();
            }
            if Instant::now() > deadline {
                panic!(
                    "no log line with {needle:?} within {timeout:?}; log:\n{}",
                    self.lines().join("\n")
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn wait_for_line(&self, needle: &str, timeout: Duration) -> String {
        self.wait_for_line_after(0, needle, timeout)
    }

    /// Asks for a stats line (SIGUSR1) and parses its `key=value` fields.
    pub fn stats(&self) -> Stats {
        let from = self.lines().len();
        let status = Command::new("kill")
            .args(["-USR1", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        let line = self.wait_for_line_after(from, "stats", Duration::from_secs(5));
        Stats::parse(&line)
    }

    /// Polls the stats until `done` holds or the timeout passes; returns the last stats.
    pub fn wait_for_stats(&self, timeout: Duration, done: impl Fn(&Stats) -> bool) -> Stats {
        let deadline = Instant::now() + timeout;
        loop {
            let stats = self.stats();
            if done(&stats) || Instant::now() > deadline {
                return stats;
            }
            std::thread::sleep(Duration::from_millis(500));
        }
    }

    /// SIGTERM (a drain: calls still up get BYE after the harness's 3 s grace), then
    /// waits for a clean exit.
    pub fn stop(self) -> std::process::ExitStatus {
        self.signal_and_wait("-TERM")
    }

    /// SIGTERM, waits for the exit, then for the rest of its log (what it wrote while
    /// stopping); returns both.
    pub fn stop_with_log(mut self) -> (std::process::ExitStatus, Vec<String>) {
        let lines = self.lines.clone();
        let reader = self.reader.take();
        let status = self.signal_and_wait("-TERM");
        // The pipe closes at the exit: the reader ends with the last line.
        if let Some(reader) = reader {
            let _ = reader.join();
        }
        let log = lines.lock().unwrap().clone();
        (status, log)
    }

    /// Sends `signal` (e.g. "-INT") and waits up to 60 s for the exit (a liveness bound).
    pub fn signal_and_wait(mut self, signal: &str) -> std::process::ExitStatus {
        let _ = Command::new("kill")
            .args([signal, &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            if Instant::now() > deadline {
                panic!("daemon did not exit within 60 s of {signal}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The daemon's `stats` log line, as key=value pairs.
#[derive(Debug, Clone, Default)]
pub struct Stats(pub Vec<(String, u64)>);

impl Stats {
    fn parse(line: &str) -> Stats {
        Stats(
            line.split_whitespace()
                .filter_map(|field| {
                    let (k, v) = field.split_once('=')?;
                    Some((k.to_owned(), v.trim_matches('"').parse().ok()?))
                })
                .collect(),
        )
    }

    pub fn get(&self, key: &str) -> u64 {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| *v)
            .unwrap_or_else(|| panic!("no `{key}` in stats {:?}", self.0))
    }
}

/// What a SIPp run ended with.
#[derive(Debug)]
pub struct SippRun {
    pub exit_code: i32,
    pub successful: u64,
    pub failed: u64,
    pub stdout: String,
    pub stderr: String,
}

/// Runs SIPp against the daemon. `args` are the scenario and rate options.
pub fn sipp(name: &str, daemon: &Daemon, args: &[&str]) -> SippRun {
    let tcp = args
        .windows(2)
        .any(|w| w[0] == "-t" && w[1].starts_with('t'));
    let port = if tcp { daemon.tcp_port } else { daemon.port };
    sipp_at(name, SocketAddr::from(([127, 0, 0, 1], port)), args)
}

/// Runs SIPp against `remote` (the daemon, or a proxy in front of it), from 127.0.0.1.
pub fn sipp_at(name: &str, remote: SocketAddr, args: &[&str]) -> SippRun {
    sipp_at_in(name, remote, &repo_root().join("tests/sipp"), args)
}

/// Like [`sipp_at`], with SIPp working in `cwd` (where a scenario finds the files it
/// names, such as the pcap of `play_pcap_audio`; give it the scenario by absolute path).
pub fn sipp_at_in(name: &str, remote: SocketAddr, cwd: &Path, args: &[&str]) -> SippRun {
    let dir = scratch_dir(name);
    let stats = dir.join("stats.csv");
    let _ = std::fs::remove_file(&stats);
    let local_port = free_port();
    let output = Command::new("sipp")
        .arg(remote.to_string())
        .args(["-i", "127.0.0.1", "-p", &local_port.to_string()])
        .args(["-nostdin", "-timeout", "120s", "-timeout_error"])
        .args(["-trace_stat", "-fd", "1", "-stf"])
        .arg(&stats)
        .args(args)
        .current_dir(cwd)
        .output()
        .expect("sipp runs (Debian package sip-tester)");
    let csv = std::fs::read_to_string(&stats).unwrap_or_default();
    let (successful, failed) = final_counts(&csv);
    SippRun {
        exit_code: output.status.code().unwrap_or(-1),
        successful,
        failed,
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// SuccessfulCall(C) and FailedCall(C) of the last row of SIPp's `-trace_stat` file.
fn final_counts(csv: &str) -> (u64, u64) {
    let mut lines = csv.lines().filter(|l| !l.trim().is_empty());
    let Some(header) = lines.next() else {
        return (0, 0);
    };
    let Some(last) = lines.next_back() else {
        return (0, 0);
    };
    let columns: Vec<&str> = header.split(';').collect();
    let values: Vec<&str> = last.split(';').collect();
    let get = |name: &str| {
        columns
            .iter()
            .position(|c| *c == name)
            .and_then(|i| values.get(i))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0)
    };
    (get("SuccessfulCall(C)"), get("FailedCall(C)"))
}

#[path = "../../../sip-transport/tests/support/pki.rs"]
mod pki;
pub use pki::TestPki;

impl TestPki {
    /// A test CA and a server certificate for `sip.test` and 127.0.0.1, made now.
    pub fn new(name: &str) -> TestPki {
        TestPki::generate(&scratch_dir(&format!("pki-{name}")))
    }

    /// The `[sip.tls]` table naming these files.
    pub fn config_table(&self) -> String {
        format!(
            "[sip.tls]\ncertificate = {:?}\nprivate_key = {:?}\nca_file = {:?}\n",
            self.certificate, self.private_key, self.ca
        )
    }
}
pub mod parties;

/// GET over HTTP/1.1 with `Connection: close`; the status and the body.
pub fn http_get(addr: SocketAddr, path: &str, token: Option<&str>) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\n{auth}Connection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let status = response[9..12].parse().unwrap();
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

/// The admin listener's address, from its log line.
pub fn admin_addr(daemon: &Daemon) -> SocketAddr {
    let line = daemon.wait_for_line("admin listener serving", Duration::from_secs(10));
    line.split_whitespace()
        .find_map(|w| w.strip_prefix("admin="))
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("no admin address in {line:?}"))
}

/// A sample's value: `series` is the name with its labels as rendered
/// (`tandem_calls_total{direction="in",outcome="answered"}`); `None` when the scrape
/// does not have it.
pub fn try_metric(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .map(|v| v.trim().parse().unwrap())
}

/// A sample's value, as [`try_metric`]; panics when the series is missing (a metric
/// renamed or never exported must not read as 0).
pub fn metric(text: &str, series: &str) -> f64 {
    try_metric(text, series).unwrap_or_else(|| panic!("no series {series} in the scrape:\n{text}"))
}

/// A registrar that answers every REGISTER 200 (granting what was asked), on
/// 127.0.0.1 port 0; its address and the REGISTERs it received, as text.
pub fn answering_registrar() -> (SocketAddr, Arc<Mutex<Vec<String>>>) {
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = socket.local_addr().unwrap();
    let got = Arc::new(Mutex::new(Vec::new()));
    let sink = got.clone();
    std::thread::spawn(move || {
        let mut buf = [0u8; 8192];
        while let Ok((n, from)) = socket.recv_from(&mut buf) {
            let text = String::from_utf8_lossy(&buf[..n]).into_owned();
            if !text.starts_with("REGISTER ") {
                continue;
            }
            let header = |name: &str| {
                text.lines()
                    .filter(|l| {
                        l.split_once(':')
                            .is_some_and(|(n, _)| n.trim().eq_ignore_ascii_case(name))
                    })
                    .map(|l| format!("{l}\r\n"))
                    .collect::<String>()
            };
            let to = header("To").trim_end().to_owned();
            let response = format!(
                "SIP/2.0 200 OK\r\n{}{}{to};tag=reg\r\n{}{}{}{}Content-Length: 0\r\n\r\n",
                header("Via"),
                header("From"),
                header("Call-ID"),
                header("CSeq"),
                header("Contact"),
                header("Expires"),
            );
            let _ = socket.send_to(response.as_bytes(), from);
            sink.lock().unwrap().push(text);
        }
    });
    (addr, got)
}
