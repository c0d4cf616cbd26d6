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
