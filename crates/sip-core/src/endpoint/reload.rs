//! Run-time changes of the endpoint's configuration (a daemon's reload) and the drain of
//! a graceful shutdown. Nothing here touches a dialog: calls in progress keep their
//! transactions, dialogs and flows.

use super::{Endpoint, InboundConfig};
use crate::trunk::{RegistrationState, Trunk, TrunkConfig};
use sip_auth::Credentials;
use sip_dialog::Reply;
use sip_message::{HeaderName, Transport};
use sip_transaction::TransactionKey;
use std::time::Instant;

/// What [`Endpoint::reconfigure_trunks`] did, by trunk name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrunkChanges {
    /// New trunks, started (registration and keepalive).
    pub added: Vec<String>,
    /// Trunks gone: un-REGISTERed, no longer offered for calls.
    pub removed: Vec<String>,
    /// Trunks whose settings changed: registered again with the new ones.
    pub changed: Vec<String>,
}

impl TrunkChanges {
    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.removed.is_empty() && self.changed.is_empty()
    }
}

/// The name a retired trunk is kept under: no configured name can contain a NUL, so no
/// call, route or lookup by name finds it, while the responses to its un-REGISTER still
/// reach it.
fn retired_name(name: &str) -> String {
    format!("\0retired\0{name}")
}

fn is_retired(trunk: &Trunk) -> bool {
    trunk.config.name.starts_with('\0')
}

impl Endpoint {
    /// Replaces the trunks with `configs` without touching a call in progress.
    ///
    /// - A trunk no longer configured is un-REGISTERed (RFC 3261 §10.2.2, Expires: 0)
    ///   and retired: calls and routes no longer find it, its requests outside a dialog
    ///   are no longer the trunk's. Calls placed through it go on.
    /// - A new trunk is started (REGISTER, OPTIONS keepalive).
    /// - A changed trunk registers again at once with its new settings. With the same
    ///   address of record and proxy it keeps its Call-ID and raises the CSeq, so the
    ///   registrar sees a refresh of the same binding (§10.2.4); when the address of
    ///   record or the proxy changed, the old binding is removed first and a new one is
    ///   made under a new Call-ID.
    ///
    /// Trunks named by a domain need [`set_trunk_targets`](Self::set_trunk_targets)
    /// again: the runtime resolves `trunk_proxies()` after a change.
    pub fn reconfigure_trunks(&mut self, now: Instant, configs: Vec<TrunkConfig>) -> TrunkChanges {
        let mut changes = TrunkChanges::default();
        let local = self.local_addrs.clone();
        let local = move |t: Transport| local.iter().find(|(tr, _)| *tr == t).map(|(_, a)| *a);
        // Removed: un-REGISTER and retire.
        for trunk in self.trunks.iter_mut().filter(|t| !is_retired(t)) {
            if !configs.iter().any(|c| c.name == trunk.config.name) {
                changes.removed.push(trunk.config.name.clone());
                trunk.shutdown(now, &mut self.ua, &local);
                trunk.config.inbound.clear();
                trunk.config.name = retired_name(&trunk.config.name);
            }
        }
        for config in configs {
            let existing = self
                .trunks
                .iter()
                .position(|t| !is_retired(t) && t.config.name == config.name);
            let Some(index) = existing else {
                changes.added.push(config.name.clone());
                let mut trunk = Trunk::new(config, &mut self.ua);
                trunk.start(now);
                self.trunks.push(trunk);
                continue;
            };
            let Some(trunk) = self.trunks.get_mut(index) else {
                continue;
            };
            if trunk.config == config {
                continue;
            }
            changes.changed.push(config.name.clone());
            let same_binding = trunk.config.aor() == config.aor()
                && trunk.config.proxy == config.proxy
                && trunk.config.domain == config.domain;
            if same_binding {
                trunk.reconfigure(now, config);
            } else {
                // A new binding: remove the old one, keep the old trunk (retired) for
                // the answer, start a new one.
                trunk.shutdown(now, &mut self.ua, &local);
                trunk.config.inbound.clear();
                trunk.config.name = retired_name(&trunk.config.name);
                let mut fresh = Trunk::new(config, &mut self.ua);
                fresh.start(now);
                self.trunks.push(fresh);
            }
        }
        self.config.trunks = self
            .trunks
            .iter()
            .filter(|t| !is_retired(t))
            .map(|t| t.config.clone())
            .collect();
        // The user agent answers challenges with the first credentials of a realm: they
        // are rebuilt from the trunks now configured, so a changed password is the one
        // used (and the list does not grow with every reload). Retired trunks keep
        // theirs for their un-REGISTER.
        let credentials = self
            .trunks
            .iter()
            .filter(|t| !is_retired(t))
            .chain(self.trunks.iter().filter(|t| is_retired(t)))
            .filter_map(|t| {
                let (user, password) = (t.config.username.as_ref()?, t.config.password.as_ref()?);
                let mut credentials = Credentials::new(user.clone(), password.clone());
                credentials.realm = t.config.realm.clone();
                Some(credentials)
            })
            .collect();
        self.ua.set_credentials(credentials);
        // Retired trunks whose un-REGISTER is answered (or that never registered) are
        // dropped, unless a call placed through them still refers to them by index.
        self.drop_finished_retired();
        self.drain(now);
        changes
    }

    /// Removes retired trunks that wait for nothing, when no call refers to trunks by
    /// an index behind them.
    fn drop_finished_retired(&mut self) {
        if !self.outbound.is_empty() {
            return;
        }
        self.trunks.retain(|t| !is_retired(t) || !t.is_quiet());
    }

    /// Replaces who may send requests outside a dialog: accept-any, the realm, the digest
    /// accounts, nonce lifetime and algorithms. Nonces already issued stay valid when the
    /// realm, lifetime and algorithms are the same; otherwise the next request is
    /// challenged afresh.
    pub fn set_inbound(&mut self, inbound: InboundConfig) {
        let old = &self.config.inbound;
        if old.realm != inbound.realm
            || old.nonce_ttl != inbound.nonce_ttl
            || old.algorithms != inbound.algorithms
        {
            self.digest = None;
        }
        self.config.inbound = inbound;
    }

    /// Starts (`Some(retry_after_s)`) or ends (`None`) draining. While draining, every
    /// new request outside a dialog (INVITE, OPTIONS, MESSAGE...) is answered
    /// 503 Service Unavailable with `Retry-After` (RFC 3261 §21.5.4, §20.33), so a peer
    /// sends its new calls elsewhere and a Kamailio dispatcher or FreeSWITCH gateway
    /// pinging us with OPTIONS marks us down; requests inside a dialog (BYE, re-INVITE,
    /// ACK, INFO) of calls in progress are served as before.
    pub fn set_draining(&mut self, retry_after: Option<u32>) {
        self.draining = retry_after;
    }

    /// Whether the endpoint is draining.
    pub fn draining(&self) -> bool {
        self.draining.is_some()
    }

    /// Answers 503 with Retry-After when draining; `true` if it did.
    pub(super) fn refuse_while_draining(&mut self, now: Instant, tx: &TransactionKey) -> bool {
        let Some(retry_after) = self.draining else {
            return false;
        };
        let reply = Reply::new(503).with_header(HeaderName::RetryAfter, retry_after.to_string());
        self.respond(now, tx, reply);
        true
    }

    /// The configured trunks (not the retired ones) with their registration state and
    /// keepalive verdict: for a status line.
    pub fn trunk_states(&self) -> Vec<(String, RegistrationState, Option<bool>)> {
        self.trunks
            .iter()
            .filter(|t| !is_retired(t))
            .map(|t| (t.config.name.clone(), t.registration, t.up))
            .collect()
    }
}
