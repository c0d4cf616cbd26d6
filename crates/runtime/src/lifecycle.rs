//! The driver's side of a daemon's lifecycle: a reload applied between two inputs, the
//! status the watchdog tick asks for, and the drain of a graceful shutdown.
//!
//! Everything here runs on the driver task, in its loop: a status answer proves the loop
//! turns (systemd's watchdog is fed only from it), and a reload is applied between two
//! messages, so no message sees half of the old configuration and half of the new.

use calls::routing::RouteTable;
use calls::{DemoBehaviour, Engine, ParkSettings};
use sip_core::{InboundConfig, RegistrationState, TrunkConfig};
use sip_transport::Transports;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::oneshot;
use tracing::info;

/// The parts of a new configuration that can change while calls go on. `None`: leave
/// as it is.
#[derive(Debug, Default)]
#[non_exhaustive]
pub struct Reload {
    pub routes: Option<RouteTable>,
    pub trunks: Option<Vec<TrunkConfig>>,
    pub inbound: Option<InboundConfig>,
    pub demo_users: Option<Vec<(String, DemoBehaviour)>>,
    pub park: Option<ParkSettings>,
    /// `[limits]` and `[security]`: the guard's settings (live calls, bans and counters
    /// are kept).
    pub guard: Option<calls::sip_core::GuardConfig>,
    /// What the TLS and WSS listeners present from now on.
    pub tls_server: Option<Arc<sip_transport::rustls::ServerConfig>>,
    /// Where the driver says what it applied.
    pub reply: Option<oneshot::Sender<Vec<String>>>,
}

/// A snapshot for systemd's STATUS= line and the watchdog.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Status {
    /// Calls the engine holds.
    pub calls: usize,
    /// Configured trunks: name and a word for their state ("registered", "up",
    /// "down", "failed", "idle"...).
    pub trunks: Vec<(String, &'static str)>,
    /// Draining: new calls are refused.
    pub draining: bool,
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.draining {
            write!(f, "draining; ")?;
        }
        write!(f, "{} active calls", self.calls)?;
        if !self.trunks.is_empty() {
            write!(f, "; trunks:")?;
            for (name, state) in &self.trunks {
                write!(f, " {name}={state}")?;
            }
        }
        Ok(())
    }
}

pub(crate) fn status(engine: &Engine) -> Status {
    let trunks = engine
        .core_ref()
        .trunk_states()
        .into_iter()
        .map(|(name, registration, up)| {
            let word = match (registration, up) {
                (RegistrationState::Registered { .. }, _) => "registered",
                (RegistrationState::Failed { .. }, _) => "failed",
                (RegistrationState::Registering, _) => "registering",
                (RegistrationState::Unregistering | RegistrationState::Unregistered, _) => {
                    "unregistered"
                }
                (_, Some(true)) => "up",
                (_, Some(false)) => "down",
                _ => "idle",
            };
            (name, word)
        })
        .collect();
    Status {
        calls: engine.call_count(),
        trunks,
        draining: engine.core_ref().draining(),
    }
}

/// Applies a reload on the engine and the transports; returns what changed, in words
/// for the log and the API ("routes", "trunk added: b", ...).
pub(crate) fn apply(
    engine: &mut Engine,
    transports: &Transports,
    now: Instant,
    reload: Reload,
) -> (Vec<String>, Option<oneshot::Sender<Vec<String>>>) {
    let mut applied = Vec::new();
    if let Some(routes) = reload.routes {
        engine.set_routes(routes);
        applied.push("routes".to_owned());
    }
    if let Some(trunks) = reload.trunks {
        let changes = engine.core().reconfigure_trunks(now, trunks);
        applied.extend(changes.added.iter().map(|t| format!("trunk added: {t}")));
        applied.extend(
            changes
                .removed
                .iter()
                .map(|t| format!("trunk removed: {t}")),
        );
        applied.extend(
            changes
                .changed
                .iter()
                .map(|t| format!("trunk changed: {t}")),
        );
    }
    if let Some(inbound) = reload.inbound {
        engine.core().set_inbound(inbound);
        applied.push("inbound".to_owned());
    }
    if let Some(users) = reload.demo_users {
        for user in engine.set_demo_users(users) {
            applied.push(format!("user: {user}"));
        }
    }
    if let Some(park) = reload.park {
        engine.set_park_settings(park);
        applied.push("park".to_owned());
    }
    if let Some(guard) = reload.guard {
        engine.core().set_guard_config(guard);
        applied.push("limits and security".to_owned());
    }
    if let Some(server) = reload.tls_server
        && transports.set_tls_server(server)
    {
        applied.push("tls certificate".to_owned());
    }
    (applied, reload.reply)
}

/// A drain in progress: new requests get 503; at `deadline` the calls left get BYE.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Drain {
    pub deadline: tokio::time::Instant,
    /// The calls left were told to end at the deadline; the next deadline is the last
    /// wait for their BYEs' answers.
    pub ended: bool,
}

/// How long the calls' BYEs may take to be answered after the grace period.
pub(crate) const BYE_GRACE: Duration = Duration::from_secs(2);

impl Drain {
    pub(crate) fn start(engine: &mut Engine, grace: Duration, retry_after: u32) -> Drain {
        engine.core().set_draining(Some(retry_after));
        info!(
            calls = engine.call_count(),
            grace_s = grace.as_secs(),
            retry_after,
            "draining: new calls get 503; calls in progress go on"
        );
        Drain {
            deadline: tokio::time::Instant::now() + grace,
            ended: false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Status;

    /// What systemd shows (`STATUS=`): the calls, each trunk's state, and a drain first.
    #[test]
    fn status_reads_as_calls_trunks_and_draining() {
        assert_eq!(Status::default().to_string(), "0 active calls");
        let mut status = Status {
            calls: 3,
            trunks: vec![
                ("carrier".to_owned(), "registered"),
                ("backup".to_owned(), "down"),
            ],
            draining: false,
        };
        assert_eq!(
            status.to_string(),
            "3 active calls; trunks: carrier=registered backup=down"
        );
        status.draining = true;
        assert_eq!(
            status.to_string(),
            "draining; 3 active calls; trunks: carrier=registered backup=down"
        );
        status.trunks.clear();
        status.calls = 1;
        assert_eq!(status.to_string(), "draining; 1 active calls");
    }
}
