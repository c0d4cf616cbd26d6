//! A real registrar and proxy: Kamailio (Debian package `kamailio`) on loopback, as the
//! trunk of the daemon. Tandem registers `sip:tandem@tandem.test` with digest
//! authentication (RFC 3261 §10.2, §22.4), refreshes before expiry, receives a call that
//! SIPp sends through Kamailio to the address-of-record (location lookup, record-routed),
//! and un-REGISTERs on SIGTERM. Kamailio's view is checked too: its location table over
//! its control socket (`kamcmd ul.dump`) and the messages it saw (the `sipdump` module).
//! Never skipped: a missing Kamailio fails the test (CI installs it, see `.ci/run`).
//!
//! Kamailio needs no database: the password is a constant of its script
//! (`pv_auth_check`), the location table lives in memory (`usrloc` db_mode 0). It runs
//! in the foreground as the test's user, with its pid file, control socket, log and
//! trace in the test's scratch directory, in a process group of its own that the guard
//! ends (also when the test panics).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use common::{Daemon, scratch_dir, sipp_at};
use std::fs::File;
use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const DOMAIN: &str = "tandem.test";
const USER: &str = "tandem";
const PASSWORD: &str = "secret";
/// Short, so the refresh (at 15 s: 85 % of 20 s, and at least 5 s before expiry)
/// happens within the test.
const EXPIRES_S: u64 = 20;

/// A Debian tool in /usr/sbin, which is not on every user's PATH.
fn sbin(tool: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin".into(), "/usr/local/sbin".into()])
        .map(|dir| dir.join(tool))
        .find(|candidate| candidate.is_file())
        .unwrap_or_else(|| {
            panic!("{tool} not found: install the Debian package kamailio (scripts/test does)")
        })
}

/// The script: a registrar for `tandem.test` that challenges REGISTER, and a proxy that
/// routes an INVITE for a registered address-of-record to its contact, record-routing.
fn script(dir: &Path, port: u16, algorithm: &str) -> String {
    format!(
        r#"#!KAMAILIO
debug=2
log_stderror=yes
children=1
disable_tcp=yes
auto_aliases=no
dns=no
rev_dns=no
dns_try_ipv6=no
use_dns_cache=off
listen=udp:127.0.0.1:{port}
alias="{DOMAIN}"

loadmodule "kex.so"
loadmodule "corex.so"
loadmodule "tm.so"
loadmodule "sl.so"
loadmodule "rr.so"
loadmodule "pv.so"
loadmodule "maxfwd.so"
loadmodule "textops.so"
loadmodule "siputils.so"
loadmodule "xlog.so"
loadmodule "usrloc.so"
loadmodule "registrar.so"
loadmodule "auth.so"
loadmodule "ctl.so"
loadmodule "sipdump.so"

modparam("ctl", "binrpc", "unix:{dir}/kamailio_ctl")
# In memory only; the address-of-record keeps its domain (user@domain).
modparam("usrloc", "db_mode", 0)
modparam("usrloc", "use_domain", 1)
# Grant the short expiry the test asks for (the default minimum is 60 s).
modparam("registrar", "min_expires", 1)
modparam("auth", "algorithm", "{algorithm}")
# Nonce counts are checked: a replayed nc is refused.
modparam("auth", "nonce_count", 1)
# Every message in and out, as text files in the scratch directory.
modparam("sipdump", "enable", 1)
modparam("sipdump", "folder", "{dir}")
modparam("sipdump", "fprefix", "trace-")
modparam("sipdump", "wait", 10000)

request_route {{
    xlog("L_INFO", "$rm $ru from $si:$sp\n");
    if (!mf_process_maxfwd_header("10")) {{
        sl_send_reply("483", "Too Many Hops");
        exit;
    }}
    if (has_totag()) {{
        if (loose_route()) {{
            t_relay();
            exit;
        }}
        if (is_method("ACK")) {{
            if (t_check_trans()) {{
                t_relay();
            }}
            exit;
        }}
        sl_send_reply("404", "Not Here");
        exit;
    }}
    if (is_method("CANCEL")) {{
        if (t_check_trans()) {{
            t_relay();
        }}
        exit;
    }}
    if (is_method("REGISTER")) {{
        # The password for every user; the auth user must be the To user.
        if (!pv_auth_check("{DOMAIN}", "{PASSWORD}", "0", "1")) {{
            xlog("L_INFO", "REGISTER not authorized ($rc): challenging\n");
            www_challenge("{DOMAIN}", "1");
            exit;
        }}
        consume_credentials();
        if (!save("location")) {{
            sl_reply_error();
        }}
        exit;
    }}
    if (is_method("INVITE")) {{
        if (!lookup("location")) {{
            sl_send_reply("404", "Not Registered");
            exit;
        }}
        record_route();
        if (!t_relay()) {{
            sl_reply_error();
        }}
        exit;
    }}
    sl_send_reply("405", "Method Not Allowed");
}}
"#,
        dir = dir.display()
    )
}

/// One contact of Kamailio's location table.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Binding {
    aor: String,
    address: String,
    expires: i64,
    call_id: String,
    cseq: u64,
    user_agent: String,
}

/// Kamailio in the foreground, in its own process group; ended on drop.
struct Kamailio {
    child: Child,
    addr: SocketAddr,
    dir: PathBuf,
}

impl Kamailio {
    /// Starts Kamailio on a free UDP port of 127.0.0.1 (another port if that one was
    /// taken between the check and the bind) and waits until its control socket answers.
    fn start(name: &str, algorithm: &str) -> Kamailio {
        let dir = scratch_dir(name);
        let kamailio = sbin("kamailio");
        let mut failures = Vec::new();
        for _ in 0..5 {
            // What an earlier attempt left: its trace, log and control socket.
            for entry in std::fs::read_dir(&dir).unwrap() {
                let path = entry.unwrap().path();
                if !path.is_dir() {
                    let _ = std::fs::remove_file(&path);
                }
            }
            let port = common::free_port();
            let cfg = dir.join("kamailio.cfg");
            std::fs::write(&cfg, script(&dir, port, algorithm)).unwrap();
            let run = dir.join("run");
            std::fs::create_dir_all(&run).unwrap();
            let log = File::create(dir.join("kamailio.log")).unwrap();
            let child = Command::new(&kamailio)
                .arg("-f")
                .arg(&cfg)
                // Foreground, log to stderr, one worker, small memory pools.
                .args(["-DD", "-E", "-n", "1", "-m", "32", "-M", "8"])
                .arg("-Y")
                .arg(&run)
                .arg("-P")
                .arg(dir.join("kamailio.pid"))
                .arg("-w")
                .arg(&dir)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(log)
                .process_group(0)
                .spawn()
                .expect("kamailio runs (Debian package kamailio)");
            let mut kam = Kamailio {
                child,
                addr: SocketAddr::from(([127, 0, 0, 1], port)),
                dir: dir.clone(),
            };
            let deadline = Instant::now() + Duration::from_secs(15);
            loop {
                if let Some(status) = kam.child.try_wait().unwrap() {
                    let log = kam.log();
                    if log.contains("Address already in use") {
                        failures.push(format!("port {port} taken"));
                        break;
                    }
                    panic!("kamailio exited at start ({status}); its log:\n{log}");
                }
                if kam.try_rpc(&["core.uptime"]).is_some() {
                    return kam;
                }
                if Instant::now() > deadline {
                    panic!(
                        "kamailio's control socket did not answer within 15 s; its log:\n{}",
                        kam.log()
                    );
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        panic!("kamailio did not start: {failures:?}");
    }

    /// A `kamcmd` command over the control socket, at most 10 s; `None` if it failed.
    fn try_rpc(&self, args: &[&str]) -> Option<String> {
        let output = Command::new("timeout")
            .arg("10")
            .arg(sbin("kamcmd"))
            .arg("-s")
            .arg(format!("unix:{}/kamailio_ctl", self.dir.display()))
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("timeout (coreutils) runs");
        output
            .status
            .success()
            .then(|| String::from_utf8_lossy(&output.stdout).into_owned())
    }

    /// The contacts of the location table (`ul.dump`).
    fn bindings(&self) -> Vec<Binding> {
        let dump = self
            .try_rpc(&["ul.dump"])
            .unwrap_or_else(|| panic!("kamcmd ul.dump failed; {}", self.diagnostics()));
        let mut aor = String::new();
        let mut bindings: Vec<Binding> = Vec::new();
        for line in dump.lines() {
            let Some((key, value)) = line.trim().split_once(": ") else {
                continue;
            };
            let value = value.trim().to_owned();
            match (key, bindings.last_mut()) {
                ("AoR", _) => aor = value,
                ("Address", _) => bindings.push(Binding {
                    aor: aor.clone(),
                    address: value,
                    ..Binding::default()
                }),
                ("Expires", Some(b)) => b.expires = value.parse().unwrap_or(-1),
                ("Call-ID", Some(b)) => b.call_id = value,
                ("CSeq", Some(b)) => b.cseq = value.parse().unwrap_or(0),
                ("User-Agent", Some(b)) => b.user_agent = value,
                _ => {}
            }
        }
        bindings
    }

    /// Kamailio's own log (its stderr).
    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("kamailio.log")).unwrap_or_default()
    }

    /// Every message Kamailio received and sent, in order (the sipdump files).
    fn trace(&self) -> String {
        let mut files: Vec<PathBuf> = std::fs::read_dir(&self.dir)
            .map(|entries| {
                entries
                    .filter_map(|e| e.ok().map(|e| e.path()))
                    .filter(|p| p.extension().is_some_and(|x| x == "data"))
                    .collect()
            })
            .unwrap_or_default();
        files.sort();
        files
            .iter()
            .map(|f| std::fs::read_to_string(f).unwrap_or_default())
            .collect()
    }

    /// The trace and the log, for failure messages.
    fn diagnostics(&self) -> String {
        format!(
            "Kamailio's SIP trace:\n{}\nKamailio's log:\n{}",
            self.trace(),
            self.log()
        )
    }
}

impl Drop for Kamailio {
    fn drop(&mut self) {
        // SIGTERM to the group (the attendant and its workers), then SIGKILL to what is left.
        let group = format!("-{}", self.child.id());
        let _ = Command::new("kill").args(["-TERM", "--", &group]).status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = Command::new("kill")
            .args(["-KILL", "--", &group])
            .stderr(Stdio::null())
            .status();
        let _ = self.child.wait();
    }
}

/// Waits for a daemon log line containing `needle` after line `from`; returns its index.
/// The failure message carries both sides' logs and Kamailio's trace.
fn wait_for_log(
    daemon: &Daemon,
    kam: &Kamailio,
    from: usize,
    needle: &str,
    timeout: Duration,
) -> usize {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(index) = daemon
            .lines()
            .iter()
            .enumerate()
            .skip(from)
            .find(|(_, l)| l.contains(needle))
            .map(|(i, _)| i)
        {
            return index;
        }
        if Instant::now() > deadline {
            panic!(
                "no daemon log line with {needle:?} within {timeout:?}\nTandem's log:\n{}\n{}",
                daemon.lines().join("\n"),
                kam.diagnostics()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The one binding of our address-of-record; fails with the whole table and trace.
#[track_caller]
fn our_binding(kam: &Kamailio) -> Binding {
    let bindings = kam.bindings();
    let ours: Vec<&Binding> = bindings
        .iter()
        .filter(|b| b.aor == format!("{USER}@{DOMAIN}"))
        .collect();
    match ours.as_slice() {
        [one] => (*one).clone(),
        _ => panic!(
            "want exactly one binding of {USER}@{DOMAIN}, Kamailio has {bindings:?}\n{}",
            kam.diagnostics()
        ),
    }
}

fn trunk_config(kam: &Kamailio) -> String {
    format!(
        "[[trunks]]\n\
         name = \"kam\"\n\
         proxy = \"sip:{}\"\n\
         domain = \"{DOMAIN}\"\n\
         username = \"{USER}\"\n\
         password = \"{PASSWORD}\"\n\
         realm = \"{DOMAIN}\"\n\
         register = true\n\
         register_expires_s = {EXPIRES_S}\n\
         inbound = [\"127.0.0.1/32\"]\n\
         [inbound]\n\
         accept = \"trusted\"\n\
         [[users]]\n\
         name = \"{USER}\"\n\
         behaviour = \"echo\"\n",
        kam.addr
    )
}

/// The whole life of a registration against Kamailio with `algorithm` digests.
fn register_refresh_call_unregister(name: &str, algorithm: &str) {
    let kam = Kamailio::start(&format!("{name}-kamailio"), algorithm);
    let daemon = Daemon::start(name, &trunk_config(&kam));
    let contact = format!("sip:{USER}@127.0.0.1:{}", daemon.port);

    // 1. Registered: the 401 challenge answered, the expiry granted as asked.
    let first = wait_for_log(
        &daemon,
        &kam,
        0,
        &format!("trunk event=Registered {{ trunk: \"kam\", expires: {EXPIRES_S}s }}"),
        Duration::from_secs(10),
    );
    let registered_at = Instant::now();
    // Kamailio's sipdump file is written asynchronously: the answered REGISTER may reach
    // it a moment after Tandem logged the 200.
    let mut trace = kam.trace();
    let deadline = Instant::now() + Duration::from_secs(3);
    while !trace.contains("Authorization: Digest ") && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
        trace = kam.trace();
    }
    let answers: Vec<&str> = trace
        .lines()
        .filter(|l| l.starts_with("Authorization: Digest "))
        .collect();
    assert!(
        trace.contains("SIP/2.0 401 Unauthorized") && !answers.is_empty(),
        "the first REGISTER was challenged and answered with credentials:\n{trace}"
    );
    assert!(
        answers
            .iter()
            .all(|a| a.contains(&format!("algorithm={algorithm},")) && a.contains("qop=auth")),
        "Kamailio challenged with {algorithm} and qop=auth; Tandem answered {answers:#?}"
    );

    // 2. Kamailio holds the binding: our contact, the expiry, our User-Agent.
    let before = our_binding(&kam);
    assert_eq!(before.address, contact, "{before:?}");
    assert!(
        before.expires > 0 && before.expires <= EXPIRES_S as i64,
        "{before:?}"
    );
    assert!(before.user_agent.starts_with("Tandem/"), "{before:?}");
    assert!(
        before.cseq >= 2,
        "the challenged REGISTER was re-sent: {before:?}"
    );

    // 3. The refresh: before the binding expires, and not at once.
    wait_for_log(
        &daemon,
        &kam,
        first + 1,
        "trunk event=Registered { trunk: \"kam\"",
        Duration::from_secs(EXPIRES_S + 5),
    );
    let refreshed_after = registered_at.elapsed();
    assert!(
        refreshed_after >= Duration::from_secs(10)
            && refreshed_after < Duration::from_secs(EXPIRES_S),
        "refresh {refreshed_after:?} after the registration (want 85 % of {EXPIRES_S} s, \
         at least 5 s before expiry)\n{}",
        kam.diagnostics()
    );
    let after = our_binding(&kam);
    assert_eq!(after.address, contact, "{after:?}");
    assert_eq!(
        after.call_id, before.call_id,
        "one Call-ID for every REGISTER of the binding (RFC 3261 §10.2.4)"
    );
    assert!(
        after.cseq > before.cseq,
        "CSeq rises: {before:?} -> {after:?}"
    );
    assert!(after.expires > 10, "the expiry was renewed: {after:?}");

    // 4. A call to the address-of-record through Kamailio reaches Tandem's echo user.
    let messages = scratch_dir(name).join("sipp-messages.log");
    let run = sipp_at(
        &format!("{name}-sipp"),
        kam.addr,
        &[
            "-sf",
            "uac_via_proxy.xml",
            "-s",
            USER,
            "-key",
            "domain",
            DOMAIN,
            "-m",
            "1",
            "-trace_msg",
            "-message_file",
            messages.to_str().unwrap(),
        ],
    );
    assert!(
        run.exit_code == 0 && run.successful == 1 && run.failed == 0,
        "SIPp through Kamailio: exit {} successful {} failed {}\nstdout:\n{}\nstderr:\n{}\n\
         SIPp's messages:\n{}\n{}",
        run.exit_code,
        run.successful,
        run.failed,
        run.stdout,
        run.stderr,
        std::fs::read_to_string(&messages).unwrap_or_default(),
        kam.diagnostics()
    );
    let trace = kam.trace();
    assert!(
        trace.contains(&format!("INVITE {contact} SIP/2.0")),
        "Kamailio forwarded the INVITE to the registered contact:\n{trace}"
    );
    let stats = daemon.wait_for_stats(Duration::from_secs(10), |s| {
        s.get("calls_answered") >= 1 && s.get("dialogs") == 0
    });
    assert!(stats.get("calls_answered") >= 1, "{stats:?}");
    assert_eq!(stats.get("dialogs"), 0, "the BYE ended the call: {stats:?}");

    // 5. SIGTERM: un-REGISTER (Expires: 0) within the grace period; the binding is gone.
    let (status, log) = daemon.stop_with_log();
    assert!(status.success(), "{status:?}\n{}", log.join("\n"));
    assert!(
        log.iter()
            .any(|l| l.contains("trunk event=Unregistered { trunk: \"kam\" }")),
        "Tandem's log:\n{}\n{}",
        log.join("\n"),
        kam.diagnostics()
    );
    let bindings = kam.bindings();
    assert!(
        bindings.is_empty(),
        "the un-REGISTER removed the binding: {bindings:?}\n{}",
        kam.diagnostics()
    );
    assert!(kam.trace().contains("Expires: 0"), "{}", kam.diagnostics());
}

#[test]
fn registers_refreshes_takes_a_call_and_unregisters_md5() {
    register_refresh_call_unregister("kamailio-md5", "MD5");
}

#[test]
fn registers_refreshes_takes_a_call_and_unregisters_sha256() {
    register_refresh_call_unregister("kamailio-sha256", "SHA-256");
}
