//! The daemon's lifecycle around the driver: signals, reload, drain and systemd.
//!
//! - SIGHUP: reload the file given with `--config` (checked completely, TLS files
//!   included; a bad file is refused, logged with its line and key, and the old
//!   configuration goes on). What can change live is applied between two inputs of the
//!   driver; what cannot (listen addresses, RTP ports, the API listener...) is logged as
//!   "needs a restart" and left as it was, never half-applied.
//! - SIGTERM: drain (`[daemon] drain_grace_s`, `retry_after_s`). A second SIGTERM, or
//!   SIGINT, stops at once: calls get BYE, trunks un-REGISTER, exit.
//! - systemd: READY/RELOADING/STOPPING/WATCHDOG/STATUS through [`crate::systemd`].

use crate::config::Config;
use crate::systemd::{self, Notifier};
use runtime::Control;
use runtime::lifecycle::{Reload, Status};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use tracing::{error, info, warn};
use tracing_subscriber::{EnvFilter, Registry, reload};

/// The log filter, changeable at run time.
#[derive(Clone)]
pub struct LogLevel {
    pub handle: reload::Handle<EnvFilter, Registry>,
    /// RUST_LOG was set: it wins over the file, at start and at reload.
    pub from_env: bool,
}

/// What a reload did (the body of `POST /v1/daemon:reload`'s 200).
pub use control_api::ReloadSummary;

/// The state reloads work on, shared by the signal task and the control API.
pub struct Lifecycle {
    /// The file given with `--config`; `None`: the embedded default (it cannot change).
    pub path: Option<PathBuf>,
    /// The configuration in force.
    pub current: Mutex<Config>,
    pub log: LogLevel,
    pub control: mpsc::Sender<Control>,
    pub notifier: Arc<Notifier>,
    /// One reload at a time.
    pub reloading: tokio::sync::Mutex<()>,
}

/// The filter text for a level of the file.
pub fn filter_text(level: &str) -> String {
    // webrtc-sdp warns through `log` about every SDP attribute it does not model.
    format!("{level},webrtc_sdp=error")
}

impl Lifecycle {
    /// Re-reads and checks the file, then applies what can change live. `Err`: the file
    /// was refused (the message names the file, line and key); nothing changed.
    pub async fn reload(&self) -> Result<ReloadSummary, String> {
        let _one = self.reloading.lock().await;
        let Some(path) = &self.path else {
            return Err(
                "running on the embedded default: there is no file to reload \
                 (start with --config FILE)"
                    .into(),
            );
        };
        let source = path.display().to_string();
        let new = Config::load(path).map_err(|e| e.to_string())?;
        let tls = new.load_tls(&source).map_err(|e| e.to_string())?;
        // No MONOTONIC_USEC: systemd 252 (Debian 12) does not read it (only
        // Type=notify-reload, from 253, does), and std exposes no CLOCK_MONOTONIC value.
        self.notifier.notify("RELOADING=1");
        let old = self
            .current
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let (mut effective, mut summary) = plan(&old, new);
        // The log level.
        if old.log.level != effective.log.level {
            if self.log.from_env {
                summary
                    .needs_restart
                    .push("log.level (RUST_LOG is set and wins)".into());
                effective.log.level = old.log.level.clone();
            } else {
                match EnvFilter::try_new(filter_text(&effective.log.level)) {
                    Ok(filter) => match self.log.handle.reload(filter) {
                        Ok(()) => summary.applied.push("log.level".into()),
                        Err(e) => {
                            warn!(error = %e, "log level not changed");
                            effective.log.level = old.log.level.clone();
                        }
                    },
                    Err(e) => {
                        warn!(error = %e, "log level not changed");
                        effective.log.level = old.log.level.clone();
                    }
                }
            }
        }
        let mut reload = build(&old, &effective, tls);
        let (reply, answer) = oneshot::channel();
        reload.reply = Some(reply);
        let sent = self.control.send(Control::Reload(Box::new(reload))).await;
        let applied = match sent {
            Ok(()) => answer.await.unwrap_or_default(),
            Err(_) => Vec::new(),
        };
        summary.applied.extend(applied);
        if old.daemon != effective.daemon {
            summary.applied.push("daemon".into());
        }
        *self.current.lock().unwrap_or_else(|e| e.into_inner()) = effective;
        self.notifier.notify("READY=1");
        Ok(summary)
    }

    /// [`reload`](Self::reload), logged: what a SIGHUP does.
    pub async fn reload_logged(&self) -> Result<ReloadSummary, String> {
        let result = self.reload().await;
        match &result {
            Ok(summary) => {
                info!(
                    applied = %summary.applied.join(", "),
                    needs_restart = %summary.needs_restart.join(", "),
                    "configuration reloaded"
                );
                for key in &summary.needs_restart {
                    warn!(%key, "changed, needs a restart: left as it was");
                }
            }
            Err(e) => error!(error = %e, "configuration refused: the old one stays in force"),
        }
        result
    }

    fn drain_settings(&self) -> (Duration, u32) {
        let current = self.current.lock().unwrap_or_else(|e| e.into_inner());
        (
            Duration::from_secs(current.daemon.drain_grace_s),
            current.daemon.retry_after_s,
        )
    }
}

/// The effective configuration after a reload (the new one, with what cannot change
/// live kept as it was) and the keys that need a restart.
fn plan(old: &Config, new: Config) -> (Config, ReloadSummary) {
    let mut effective = new;
    let mut summary = ReloadSummary::default();
    let mut keep = |name: &str, changed: bool| {
        if changed {
            summary.needs_restart.push(name.to_owned());
        }
    };
    // [sip]: everything but the TLS files is bound into sockets and the user agent.
    let mut sip_new = effective.sip.clone();
    sip_new.tls = old.sip.tls.clone();
    keep("sip.listen", sip_new.listen != old.sip.listen);
    let mut sip_rest = sip_new.clone();
    sip_rest.listen = old.sip.listen.clone();
    keep("sip (timers, user_agent, limits)", sip_rest != old.sip);
    let tls = effective.sip.tls.clone();
    effective.sip = old.sip.clone();
    effective.sip.tls = match (&old.sip.tls, tls) {
        // TLS files can change (new handshakes use them); TLS cannot be switched on/off.
        (Some(_), Some(tls)) => Some(tls),
        (old_tls, new_tls) => {
            keep("sip.tls", old_tls.is_some() != new_tls.is_some());
            old_tls.clone()
        }
    };
    keep("media", effective.media != old.media);
    effective.media = old.media.clone();
    keep("dns", effective.dns != old.dns);
    effective.dns = old.dns.clone();
    keep("api", effective.api != old.api);
    effective.api = old.api.clone();
    effective.api_settings = old.api_settings.clone();
    keep("log.format", effective.log.format != old.log.format);
    effective.log.format = old.log.format;
    // The admin listener is bound and the metrics recorder installed once per process;
    // the HEP sender is set up at start.
    keep("admin", effective.admin != old.admin);
    effective.admin = old.admin.clone();
    keep("hep", effective.hep != old.hep);
    effective.hep = old.hep.clone();
    effective.observe_settings = old.observe_settings.clone();
    (effective, summary)
}

/// The parts of the driver's configuration that changed.
fn build(old: &Config, new: &Config, tls: Option<sip_transport::TlsConfig>) -> Reload {
    let mut reload = Reload::default();
    if new.route_table != old.route_table {
        reload.routes = Some(new.route_table.clone());
    }
    if new.trunks != old.trunks {
        reload.trunks = Some(new.trunks.iter().map(crate::trunk_config).collect());
    }
    if new.inbound != old.inbound {
        reload.inbound = Some(crate::inbound_config(new));
    }
    if new.users != old.users {
        reload.demo_users = Some(crate::demo_users(new));
    }
    if new.park_settings != old.park_settings {
        reload.park = Some(new.park_settings.clone());
    }
    if new.guard_settings != old.guard_settings {
        reload.guard = Some(new.guard_settings.clone());
    }
    if new.sip.tls.is_some() {
        reload.tls_server = tls.map(|t| t.server);
    }
    reload
}

/// Signals: SIGHUP reloads, SIGTERM drains (a second one stops), SIGINT stops. The
/// future ends when the driver must stop at once. The handlers are registered by this
/// call, not when the future is first polled: a signal that comes between the two must
/// not meet the default action (which kills the process).
pub fn signals(lifecycle: Arc<Lifecycle>) -> impl std::future::Future<Output = ()> {
    use tokio::signal::unix::{SignalKind, signal};
    let hup = signal(SignalKind::hangup()).ok();
    let term = signal(SignalKind::terminate()).ok();
    let interrupt = signal(SignalKind::interrupt()).ok();
    handle_signals(lifecycle, hup, term, interrupt)
}

async fn handle_signals(
    lifecycle: Arc<Lifecycle>,
    mut hup: Option<tokio::signal::unix::Signal>,
    mut term: Option<tokio::signal::unix::Signal>,
    mut interrupt: Option<tokio::signal::unix::Signal>,
) {
    let mut draining = false;
    loop {
        let interrupt_recv = async {
            match interrupt.as_mut() {
                Some(s) => s.recv().await,
                None => std::future::pending().await,
            }
        };
        let hup_recv = async {
            match hup.as_mut() {
                Some(s) => s.recv().await,
                None => std::future::pending().await,
            }
        };
        let term_recv = async {
            match term.as_mut() {
                Some(s) => s.recv().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = interrupt_recv => {
                info!("SIGINT: stopping now");
                lifecycle.notifier.notify("STOPPING=1");
                return;
            }
            _ = term_recv => {
                if draining {
                    info!("SIGTERM again: stopping now");
                    return;
                }
                draining = true;
                let (grace, retry_after) = lifecycle.drain_settings();
                info!(grace_s = grace.as_secs(), "SIGTERM: draining");
                lifecycle.notifier.notify("STOPPING=1\nSTATUS=draining");
                if lifecycle.control.send(Control::Drain { grace, retry_after }).await.is_err() {
                    return;
                }
            }
            _ = hup_recv => {
                info!("SIGHUP: reloading the configuration");
                let _ = lifecycle.reload_logged().await;
            }
        }
    }
}

/// Every `interval`: asks the driver's loop for its status; when it answers, sends
/// `WATCHDOG=1` (if the watchdog is on) and a STATUS= line when it changed or every
/// `status_every`. A loop that does not answer within the interval gets no ping.
pub async fn watchdog(
    notifier: Arc<Notifier>,
    control: mpsc::Sender<Control>,
    watchdog: Option<Duration>,
) {
    if !notifier.enabled() {
        return;
    }
    let status_every = Duration::from_secs(5);
    let interval = watchdog.map_or(status_every, |w| w.min(status_every));
    let mut last: Option<(Status, tokio::time::Instant)> = None;
    // A tick every `interval` whatever the loop's answer took (a slow answer must not
    // stretch the gap between pings towards WatchdogSec); the loop gets half of it.
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let (reply, answer) = oneshot::channel();
        if control.send(Control::Status(reply)).await.is_err() {
            return;
        }
        let answered = tokio::time::timeout(interval / 2, answer).await;
        if let Ok(Ok(status)) = answered {
            let mut message = String::new();
            if watchdog.is_some() {
                message.push_str("WATCHDOG=1\n");
            }
            let stale = last
                .as_ref()
                .is_none_or(|(s, at)| *s != status || at.elapsed() >= status_every);
            if stale {
                message.push_str(&systemd::status_line(&status.to_string()));
                last = Some((status, tokio::time::Instant::now()));
            }
            if !message.is_empty() {
                notifier.notify(message.trim_end());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
    use super::*;

    /// `[limits]`/`[security]` changes are applied live (the guard's new settings go to
    /// the driver); `[admin]` and `[hep]` need a restart and are kept as they were.
    #[test]
    fn a_reload_applies_the_guard_and_keeps_admin_and_hep() {
        let old = Config::parse("[limits]\nmax_calls = 5\n", "t.toml").unwrap();
        let new = Config::parse(
            "[limits]\nmax_calls = 9\n\n[admin]\nlisten = \"127.0.0.1:9091\"\n\n\
             [hep]\ncollector = \"udp:127.0.0.1:9060\"\n",
            "t.toml",
        )
        .unwrap();
        let (effective, summary) = plan(&old, new);
        assert!(
            summary.needs_restart.contains(&"admin".to_owned()),
            "{summary:?}"
        );
        assert!(
            summary.needs_restart.contains(&"hep".to_owned()),
            "{summary:?}"
        );
        assert_eq!(effective.admin, old.admin);
        assert_eq!(effective.hep, old.hep);
        let reload = build(&old, &effective, None);
        assert_eq!(reload.guard.and_then(|g| g.max_calls), Some(9));
        // Nothing changed: nothing sent.
        let same = build(&old, &old, None);
        assert!(same.guard.is_none() && same.routes.is_none() && same.trunks.is_none());
    }

    /// The watchdog pings only while the driver's loop answers: a loop that stops
    /// answering (stuck) stops the pings, and systemd would restart the service.
    #[tokio::test]
    async fn a_loop_that_stops_answering_stops_the_watchdog() {
        let dir = std::env::temp_dir().join(format!("tandem-wd-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("notify");
        let _ = std::fs::remove_file(&path);
        let listener = std::os::unix::net::UnixDatagram::bind(&path).unwrap();
        listener.set_nonblocking(true).unwrap();
        let notifier = Arc::new(Notifier::to(path.to_str().unwrap()).unwrap());
        let (control, mut requests) = mpsc::channel(8);
        let answering = Arc::new(std::sync::atomic::AtomicBool::new(true));
        let flag = answering.clone();
        // The "driver loop": answers status requests while `answering`, then holds them
        // unanswered (a stuck loop keeps its channel but never replies).
        tokio::spawn(async move {
            let mut held = Vec::new();
            while let Some(request) = requests.recv().await {
                match request {
                    Control::Status(reply) if flag.load(std::sync::atomic::Ordering::SeqCst) => {
                        let _ = reply.send(Status::default());
                    }
                    other => held.push(other),
                }
            }
        });
        let pinger = tokio::spawn(watchdog(notifier, control, Some(Duration::from_millis(50))));
        let count = |listener: &std::os::unix::net::UnixDatagram| {
            let mut buf = [0u8; 512];
            let mut pings = 0;
            while let Ok(n) = listener.recv(&mut buf) {
                if String::from_utf8_lossy(&buf[..n]).contains("WATCHDOG=1") {
                    pings += 1;
                }
            }
            pings
        };
        // Pings while the loop answers: at least two, however slow the machine.
        let mut live = 0;
        for _ in 0..600 {
            tokio::time::sleep(Duration::from_millis(50)).await;
            live += count(&listener);
            if live >= 2 {
                break;
            }
        }
        assert!(live >= 2, "{live} pings in 30 s while the loop answers");
        answering.store(false, std::sync::atomic::Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(150)).await;
        count(&listener);
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert_eq!(count(&listener), 0, "pings while the loop is stuck");
        pinger.abort();
    }
}
