//! The `tandem` command line: configuration refused with file, line and key; check-config
//! exit codes; usage errors.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::process::Command;

fn tandem(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_tandem"))
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn bad_config_is_refused_at_start_naming_line_and_key() {
    let dir = common::scratch_dir("cli-bad");
    let path = dir.join("bad.toml");
    std::fs::write(
        &path,
        "[sip]\nlisten = [\"udp:127.0.0.1:0\"]\nuser_agnet = \"typo\"\n",
    )
    .unwrap();
    let out = tandem(&["run", "--config", path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("bad.toml"), "{stderr}");
    assert!(stderr.contains("line 3"), "{stderr}");
    assert!(stderr.contains("user_agnet"), "{stderr}");
}

#[test]
fn check_config_exit_codes() {
    let dir = common::scratch_dir("cli-check");
    let good = dir.join("good.toml");
    std::fs::write(&good, "[sip]\nlisten = [\"udp:127.0.0.1:5060\"]\n").unwrap();
    assert_eq!(
        tandem(&["check-config", good.to_str().unwrap()])
            .status
            .code(),
        Some(0)
    );
    let bad = dir.join("bad.toml");
    std::fs::write(&bad, "[log]\nlevel = 3\n").unwrap();
    let out = tandem(&["check-config", bad.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("line 2"));
    let example = common::repo_root().join("config/tandem.example.toml");
    assert_eq!(
        tandem(&["check-config", example.to_str().unwrap()])
            .status
            .code(),
        Some(0)
    );
    let missing = tandem(&["check-config", "/nonexistent/tandem.toml"]);
    assert_eq!(missing.status.code(), Some(1));
}

#[test]
fn usage_errors_exit_2() {
    assert_eq!(tandem(&["frobnicate"]).status.code(), Some(2));
    assert_eq!(tandem(&["run", "--config"]).status.code(), Some(2));
    assert_eq!(tandem(&[]).status.code(), Some(2));
    let version = tandem(&["--version"]);
    assert!(String::from_utf8_lossy(&version.stdout).starts_with("tandem "));
}

#[test]
fn sigint_and_sigterm_stop_the_daemon_cleanly() {
    for signal in ["-INT", "-TERM"] {
        let daemon = common::Daemon::start(&format!("signal{signal}"), "");
        let status = daemon.signal_and_wait(signal);
        assert!(status.success(), "{signal}: {status:?}");
    }
}

const ROUTES: &str = "\
[[route]]
name = \"to-bob\"
action = \"bridge\"
ring = \"parallel\"
[route.match]
user = '^bob$'
[[route.targets]]
uri = \"sip:${user}@127.0.0.1:5070\"
timeout_s = 20
headers = { \"X-Routed-By\" = \"tandem\" }

[[route]]
name = \"closed\"
action = \"decline\"
status = 480
";

#[test]
fn check_config_takes_good_routes_and_refuses_bad_ones_naming_line_and_key() {
    let dir = common::scratch_dir("cli-routes");
    let good = dir.join("good.toml");
    std::fs::write(&good, ROUTES).unwrap();
    let out = tandem(&["check-config", good.to_str().unwrap()]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for (text, line, key) in [
        (
            ROUTES.replace("'^bob$'", "'^(bob$'"),
            6,
            "route[0].match.user",
        ),
        (ROUTES.replace("480", "200"), 15, "route[1].status"),
        (
            ROUTES.replace("${user}@", "${usr}@"),
            8,
            "route[0].targets[0].uri",
        ),
        (
            ROUTES.replace("[route.match]", "[route.match]\ntrunk = \"carrier\""),
            6,
            "route[0].match.trunk",
        ),
    ] {
        let bad = dir.join("bad.toml");
        std::fs::write(&bad, &text).unwrap();
        let out = tandem(&["check-config", bad.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(1), "{text}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("bad.toml"), "{stderr}");
        assert!(stderr.contains(&format!("line {line}:")), "{stderr}");
        assert!(stderr.contains(&format!("key `{key}`")), "{stderr}");
    }
}

#[test]
fn the_daemon_starts_and_stops_with_routes() {
    let daemon = common::Daemon::start_with("routes", "", ROUTES);
    let status = daemon.signal_and_wait("-TERM");
    assert!(status.success(), "{status:?}");
}

/// A one-request HTTP server: answers `status` with `body`, returns the request it got.
fn one_shot_http(status: &str, body: &'static str) -> (String, std::thread::JoinHandle<String>) {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let status = status.to_owned();
    let handle = std::thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        stream
            .set_read_timeout(Some(std::time::Duration::from_secs(5)))
            .unwrap();
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            let n = stream.read(&mut buf).unwrap_or(0);
            got.extend_from_slice(&buf[..n]);
            let text = String::from_utf8_lossy(&got);
            if let Some(end) = text.find("\r\n\r\n") {
                let length = text
                    .lines()
                    .find_map(|l| {
                        l.to_ascii_lowercase()
                            .strip_prefix("content-length:")
                            .map(|v| v.trim().parse::<usize>().unwrap())
                    })
                    .unwrap_or(0);
                if got.len() >= end + 4 + length {
                    break;
                }
            }
            if n == 0 {
                break;
            }
        }
        let reply = format!(
            "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        );
        stream.write_all(reply.as_bytes()).unwrap();
        String::from_utf8_lossy(&got).into_owned()
    });
    (url, handle)
}

#[test]
fn the_api_client_sends_the_token_and_prints_the_answer_or_the_problem() {
    let (url, server) = one_shot_http("201 Created", r#"{"callConnectionId":"c-1"}"#);
    let out = Command::new(env!("CARGO_BIN_EXE_tandem"))
        .args([
            "call",
            "create",
            "--application",
            "sales",
            "--to",
            "sip:bob@127.0.0.1",
        ])
        .env("TANDEM_API_URL", &url)
        .env("TANDEM_API_TOKEN", "secret-token-0123")
        .output()
        .unwrap();
    let request = server.join().unwrap();
    assert!(out.status.success(), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("\"callConnectionId\": \"c-1\""));
    assert!(request.starts_with("POST /v1/calls HTTP/1.1"), "{request}");
    assert!(
        request
            .to_ascii_lowercase()
            .contains("authorization: bearer secret-token-0123"),
        "{request}"
    );
    assert!(
        request.contains(r#""sipUri":"sip:bob@127.0.0.1""#),
        "{request}"
    );

    let (url, server) = one_shot_http(
        "404 Not Found",
        r#"{"type":"about:blank","title":"Not Found","status":404,"detail":"no call c-9"}"#,
    );
    let out = tandem(&["call", "hangup", "c-9", "--api", &url]);
    let request = server.join().unwrap();
    assert!(
        request.starts_with("POST /v1/calls/c-9:hangup"),
        "{request}"
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("404: no call c-9"));

    // Nobody listening: says so, exit 1.
    let port = common::free_port();
    let out = tandem(&[
        "calls",
        "list",
        "--api",
        &format!("http://127.0.0.1:{port}"),
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot reach the API"));
}

/// `tandem run` with no `--config`: the embedded default, which listens on
/// 127.0.0.1:5060 (UDP and TCP). The daemon runs in a network namespace of its own
/// (`unshare --net`, util-linux, as root; its loopback brought up with `ip link set lo
/// up`, iproute2), so that port is its own and nothing else on the machine sees it. SIPp
/// in the same namespace (`nsenter --net`) gets 200 to an OPTIONS; SIGTERM ends it with 0.
/// Without unshare, nsenter, ip or the right to make a namespace the test fails.
#[test]
fn run_without_config_serves_the_embedded_default_in_a_network_namespace() {
    use std::io::BufRead;
    use std::process::Stdio;
    use std::sync::{Arc, Mutex};
    use std::time::{Duration, Instant};
    let mut child = Command::new("unshare")
        .args([
            "--net",
            "--",
            "sh",
            "-c",
            "ip link set lo up && exec \"$0\" run",
            env!("CARGO_BIN_EXE_tandem"),
        ])
        .env_remove("RUST_LOG")
        .env_remove("NOTIFY_SOCKET")
        .env("NO_COLOR", "1")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("unshare runs (Debian package util-linux)");
    // Killed if the test fails half way.
    struct Reaped(std::process::Child);
    impl Drop for Reaped {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let stderr = child.stderr.take().unwrap();
    let mut child = Reaped(child);
    let lines = Arc::new(Mutex::new(Vec::<String>::new()));
    let sink = lines.clone();
    let reader = std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            sink.lock().unwrap().push(line);
        }
    });
    let log = || lines.lock().unwrap().join("\n");
    let deadline = Instant::now() + Duration::from_secs(30);
    let ready = loop {
        if let Some(line) = lines.lock().unwrap().iter().find(|l| l.contains("ready")) {
            break line.clone();
        }
        if let Some(status) = child.0.try_wait().unwrap() {
            panic!(
                "exited {status} before it was ready (unshare --net needs root; ip is \
                 Debian's iproute2):\n{}",
                log()
            );
        }
        assert!(Instant::now() < deadline, "not ready in 30 s:\n{}", log());
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(
        ready.contains("udp:127.0.0.1:5060") && ready.contains("tcp:127.0.0.1:5060"),
        "{ready}"
    );
    // The shell exec'd the daemon: the child is the daemon, in a namespace of its own.
    let pid = child.0.id();
    let theirs = std::fs::read_link(format!("/proc/{pid}/ns/net")).unwrap();
    let ours = std::fs::read_link("/proc/self/ns/net").unwrap();
    assert_ne!(
        theirs, ours,
        "the daemon must not run in the test's network namespace"
    );
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap();
    assert_eq!(comm.trim(), "tandem");
    let sipp = Command::new("nsenter")
        .arg(format!("--net=/proc/{pid}/ns/net"))
        .args([
            "--",
            "sipp",
            "127.0.0.1:5060",
            "-i",
            "127.0.0.1",
            "-p",
            "5080",
        ])
        .arg("-sf")
        .arg(common::repo_root().join("tests/sipp/options.xml"))
        .args(["-m", "1", "-nostdin", "-timeout", "30s", "-timeout_error"])
        .output()
        .expect("nsenter runs (Debian package util-linux)");
    assert!(
        sipp.status.success(),
        "OPTIONS to the embedded default: {}\n{}\n{}\ndaemon:\n{}",
        sipp.status,
        String::from_utf8_lossy(&sipp.stdout),
        String::from_utf8_lossy(&sipp.stderr),
        log()
    );
    let kill = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = child.0.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "no exit in 60 s:\n{}", log());
        std::thread::sleep(Duration::from_millis(20));
    };
    let _ = reader.join();
    assert_eq!(status.code(), Some(0), "{}", log());
    eprintln!("embedded default: {ready}");
}
