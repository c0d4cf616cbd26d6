//! The control API served by the daemon, end to end: the CLI creates a call to the
//! daemon's own echo user, lists it and hangs it up; the event stream shows
//! CallConnected then CallDisconnected; without the token, 401 problem+json.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use common::Daemon;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::Command;
use std::time::{Duration, Instant};

const TOKEN: &str = "api-test-token-0123456789";

fn cli(api: SocketAddr, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_tandem"))
        .args(args)
        .env("TANDEM_API_URL", format!("http://{api}"))
        .env("TANDEM_API_TOKEN", TOKEN)
        .output()
        .unwrap()
}

/// A raw HTTP/1.1 GET; returns what arrived until `until` is in it or `limit` passes.
fn get(api: SocketAddr, path: &str, token: Option<&str>, until: &str, limit: Duration) -> String {
    let mut stream = TcpStream::connect(api).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let auth = token.map_or(String::new(), |t| format!("authorization: Bearer {t}\r\n"));
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nhost: {api}\r\n{auth}accept: text/event-stream\r\n\r\n"
    )
    .unwrap();
    let deadline = Instant::now() + limit;
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while Instant::now() < deadline {
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(_) => {}
        }
        if String::from_utf8_lossy(&got).contains(until) {
            break;
        }
    }
    String::from_utf8_lossy(&got).into_owned()
}

#[test]
fn the_daemon_serves_the_control_api_and_the_cli_drives_it() {
    let daemon = Daemon::start_with(
        "api",
        "",
        &format!(
            "[api]\nlisten = \"127.0.0.1:0\"\ntoken = \"{TOKEN}\"\n\n\
             [[api.applications]]\nname = \"demo\"\nowner_uri = \"sip:demo@127.0.0.1\"\n"
        ),
    );
    let line = daemon.wait_for_line("control API serving", Duration::from_secs(10));
    let api: SocketAddr = line
        .split_whitespace()
        .find_map(|w| w.strip_prefix("api="))
        .unwrap()
        .parse()
        .unwrap();
    // No token: 401 as problem+json, and nothing happens.
    let refused = get(api, "/v1/calls", None, "\r\n\r\n{", Duration::from_secs(3));
    assert!(refused.starts_with("HTTP/1.1 401"), "{refused}");
    assert!(refused.contains("application/problem+json"), "{refused}");

    let target = format!("sip:echo@127.0.0.1:{}", daemon.port);
    let created = cli(
        api,
        &["call", "create", "--application", "demo", "--to", &target],
    );
    assert!(created.status.success(), "{created:?}");
    let answer: serde_json::Value = serde_json::from_slice(&created.stdout).unwrap();
    let id = answer["callConnectionId"].as_str().unwrap().to_owned();

    // The stream from the start: CallConnected for this call.
    let path = "/v1/events?application=demo&after=0";
    let events = get(
        api,
        path,
        Some(TOKEN),
        "CallConnected",
        Duration::from_secs(10),
    );
    assert!(events.contains("CallConnected"), "{events}");
    assert!(events.contains(&id), "{events}");

    let listed = cli(api, &["calls", "list"]);
    assert!(listed.status.success(), "{listed:?}");
    assert!(String::from_utf8_lossy(&listed.stdout).contains(&id));

    let hung = cli(api, &["call", "hangup", &id, "--for-everyone"]);
    assert!(hung.status.success(), "{hung:?}");
    let events = get(
        api,
        path,
        Some(TOKEN),
        "CallDisconnected",
        Duration::from_secs(10),
    );
    assert!(events.contains("CallDisconnected"), "{events}");
    // Ids are sequence numbers, in order, each once.
    let ids: Vec<u64> = events
        .lines()
        .filter_map(|l| l.strip_prefix("id:"))
        .map(|v| v.trim().parse().unwrap())
        .collect();
    eprintln!("events seen: {ids:?}");
    assert!(!ids.is_empty());
    assert!(ids.windows(2).all(|w| w[1] == w[0] + 1), "{ids:?}");
    // An unknown call: 404 problem, exit 1.
    let unknown = cli(api, &["call", "hangup", "nope"]);
    assert_eq!(unknown.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("404"));
    daemon.stop();
}
