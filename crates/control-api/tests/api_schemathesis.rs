//! schemathesis (PyPI; the version `.ci/run` and `scripts/test` install, in
//! [`PINNED`]) against the live API, as the daemon serves it (`control_api::router`:
//! the actions and the event stream behind the token), for a bounded number of
//! examples per operation. It must exit 0: no 5xx, no status, content type, header or
//! body the document does not declare, no schema-invalid request accepted, a 405 with
//! the right `Allow`, a 401 without the token.
//!
//! Half the time a `{callConnectionId}` is one of live calls made first (a call to bob,
//! a group call of two), so the actions meet real calls, not only 404s; its HAR log
//! (`--report har`) must show at least one action on a live call answered with a 2xx.
//!
//! Left out: `GET /v1/events` (an endless SSE stream by design: no response ever ends),
//! and the `positive_data_acceptance` check (a schema cannot say everything the API
//! refuses with a 422: a host name the engine cannot route, a phone number without a
//! trunk, an unknown participant...).
//!
//! The calls schemathesis places go to whatever SIP URIs it makes up: runtime A is bound
//! to 127.0.0.1, from where no packet can leave the host (the kernel refuses a loopback
//! source toward another interface).
//!
//! schemathesis is found as `$SCHEMATHESIS`, else `schemathesis` on the `PATH`; missing,
//! the test fails (it is never skipped).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod api_support;

use api_support::{Rig, TOKEN};
use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The schemathesis version CI installs.
const PINNED: &str = "4.32.5";
/// Examples per operation (`SCHEMATHESIS_MAX_EXAMPLES` overrides it for a deeper run).
const MAX_EXAMPLES: &str = "30";
/// The whole run's bound (`SCHEMATHESIS_BOUND_SECS` overrides it).
const BOUND: Duration = Duration::from_secs(150);

fn bound() -> Duration {
    std::env::var("SCHEMATHESIS_BOUND_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .map_or(BOUND, Duration::from_secs)
}

/// Runs `command` to its end or `BOUND`; its status (None: killed) and its output.
fn run_bounded(mut command: Command) -> (Option<std::process::ExitStatus>, String) {
    let program = command.get_program().to_string_lossy().into_owned();
    let mut child = match command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    {
        Ok(child) => child,
        Err(error) => panic!(
            "schemathesis cannot be started as `{program}` ({error}): install it with \
             `python3 -m pip install schemathesis=={PINNED}` (scripts/test does) or set \
             SCHEMATHESIS to its path"
        ),
    };
    let mut stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let out = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stdout.read_to_string(&mut text);
        text
    });
    let err = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });
    let deadline = Instant::now() + bound();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let text = format!(
        "{}\n{}",
        out.join().unwrap_or_default(),
        err.join().unwrap_or_default()
    );
    (status, text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schemathesis_finds_nothing_wrong() {
    let rig = Rig::start("schemathesis_finds_nothing_wrong").await;
    let program = std::env::var("SCHEMATHESIS").unwrap_or_else(|_| "schemathesis".to_owned());

    // The version is the one CI pins (a newer one may check differently).
    let mut version = Command::new(&program);
    version.arg("--version");
    let (status, text) = tokio::task::spawn_blocking(move || run_bounded(version))
        .await
        .unwrap();
    assert!(status.is_some_and(|s| s.success()), "{text}");
    assert!(
        text.contains(PINNED),
        "schemathesis {PINNED} expected: {text}"
    );

    // Live calls for the actions: schemathesis picks their ids half the time.
    let mut ids = vec![rig.connected_call(&rig.bob(), "one").await];
    let (status, group) = rig
        .post(
            "/v1/calls",
            serde_json::json!({
                "application": "app",
                "targets": [{ "sipUri": rig.bob() }, { "sipUri": rig.demo_b("echo") }],
            }),
        )
        .await;
    assert_eq!(status, 201, "{group}");
    let group = group["callConnectionId"].as_str().unwrap().to_owned();
    rig.events
        .wait("ParticipantsUpdated", |d| {
            d["callConnectionId"] == serde_json::json!(group)
                && d["participants"].as_array().unwrap().len() == 2
        })
        .await;
    ids.push(group);
    let config =
        std::env::temp_dir().join(format!("tandem-schemathesis-{}.toml", std::process::id()));
    // Hang-ups end calls for good: they get a call of their own.
    let doomed = rig.connected_call(&rig.bob(), "doomed").await;
    let quoted = |ids: &[String]| {
        ids.iter()
            .map(|id| format!("\"{id}\""))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let toml = format!(
        r#"[dictionaries.calls]
values = [{calls}]

[dictionaries.doomed]
values = [{doomed}]

[parameters]
"path.callConnectionId" = {{ dictionary = "calls", probability = 0.5 }}

[[operations]]
include-path = "/v1/calls/{{callConnectionId}}:hangup"
parameters = {{ "path.callConnectionId" = {{ dictionary = "doomed", probability = 0.5 }} }}
"#,
        calls = quoted(&ids),
        doomed = quoted(std::slice::from_ref(&doomed)),
    );
    std::fs::write(&config, toml).unwrap();

    // Its working directory (where it keeps a cache of crashes) outside the repository.
    let workdir = std::env::temp_dir().join(format!("tandem-schemathesis-{}", std::process::id()));
    std::fs::create_dir_all(&workdir).unwrap();
    // Every request and its response, to see that live ids were acted on.
    let har = workdir.join("run.har");
    let mut command = Command::new(&program);
    command
        .current_dir(&workdir)
        .arg("--config-file")
        .arg(&config)
        .arg("run")
        .arg(rig.url("/v1/openapi.json"))
        .args([
            "--checks",
            "all",
            "--exclude-checks",
            "positive_data_acceptance",
            "--exclude-path",
            "/v1/events",
            "--max-examples",
            &std::env::var("SCHEMATHESIS_MAX_EXAMPLES").unwrap_or_else(|_| MAX_EXAMPLES.to_owned()),
            "--workers",
            "2",
            "--request-timeout",
            "10",
            "--generation-database",
            "none",
            "--no-color",
            "--report",
            "har",
            "--report-har-path",
        ])
        .arg(&har)
        .arg("--header")
        .arg(format!("Authorization: Bearer {TOKEN}"))
        .env("PYTHONUNBUFFERED", "1");
    let started = Instant::now();
    let (status, text) = tokio::task::spawn_blocking(move || run_bounded(command))
        .await
        .unwrap();
    std::fs::remove_file(&config).ok();
    let log = std::fs::read_to_string(workdir.join("run.har"));
    std::fs::remove_dir_all(&workdir).ok();
    let Some(status) = status else {
        panic!("schemathesis ran past {:?}:\n{text}", bound());
    };
    assert!(status.success(), "schemathesis found problems:\n{text}");
    // The live ids were used: some action on one of them succeeded (a 2xx).
    let log: serde_json::Value =
        serde_json::from_str(&log.expect("schemathesis wrote its HAR log"))
            .expect("the HAR log is JSON");
    let mut live = ids.clone();
    live.push(doomed.clone());
    let acted: Vec<String> = log["log"]["entries"]
        .as_array()
        .expect("HAR entries")
        .iter()
        .filter(|e| e["request"]["method"] == "POST")
        .filter(|e| (200..300).contains(&e["response"]["status"].as_u64().unwrap_or(0)))
        .filter_map(|e| e["request"]["url"].as_str())
        .filter(|url| {
            live.iter()
                .any(|id| url.contains(&format!("/v1/calls/{id}")))
        })
        .map(str::to_owned)
        .collect();
    assert!(
        !acted.is_empty(),
        "no action on a live call got a 2xx: schemathesis never met a real call"
    );
    eprintln!(
        "{} actions on live calls got a 2xx, e.g. {:?}",
        acted.len(),
        acted.iter().take(5).collect::<Vec<_>>()
    );
    // It really ran the operations.
    assert!(
        text.contains("/v1/calls") && text.contains("passed"),
        "no operation ran:\n{text}"
    );
    eprintln!(
        "schemathesis passed in {:?}:\n{}",
        started.elapsed(),
        text.lines()
            .rev()
            .take(60)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect::<Vec<_>>()
            .join("\n")
    );
}
