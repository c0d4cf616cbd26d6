//! Run-time changes of the engine's configuration (a daemon's reload) and the end of
//! every call (the end of a drain). A change applies to what comes next: calls in
//! progress keep the routes, demo behaviour and park settings they started with.

use super::{
    CallHandle, CallTerminateOptions, DemoBehaviour, EndpointEntry, EndpointHandle, Engine,
    Identity, ParkSettings,
};
use crate::routing::RouteTable;
use std::time::Instant;

impl Engine {
    /// Replaces the routing rules of incoming INVITEs. The next INVITE outside a dialog
    /// is routed by the new rules; bridged calls in progress are not touched.
    pub fn set_routes(&mut self, routes: RouteTable) {
        let any = !routes.is_empty();
        self.config.routes = routes;
        self.core.set_accept_any_user(any);
        if any && self.route_endpoint.is_none() {
            let handle = EndpointHandle(self.next());
            self.endpoints.insert(
                handle,
                EndpointEntry {
                    owner: Identity::new("sip:tandem@localhost"),
                    user: "tandem".into(),
                    demo: None,
                    trunk: None,
                },
            );
            self.route_endpoint = Some(handle);
        }
    }

    /// Replaces the demo users: users gone get 404 from now on, new ones answer, a user
    /// whose behaviour changed behaves the new way on its next call. Their calls in
    /// progress go on. Returns the users added, removed and changed (by name).
    pub fn set_demo_users(&mut self, users: Vec<(String, DemoBehaviour)>) -> Vec<String> {
        let mut touched = Vec::new();
        let old = std::mem::take(&mut self.config.demo_users);
        for (user, behaviour) in &old {
            if users.iter().any(|(u, b)| u == user && b == behaviour) {
                continue;
            }
            if let Some(handle) = self.by_user.get(user).copied()
                && self
                    .endpoints
                    .get(&handle)
                    .is_some_and(|e| e.demo.is_some())
            {
                self.remove_endpoint(handle);
            }
            touched.push(user.clone());
        }
        for (user, behaviour) in &users {
            if old.iter().any(|(u, b)| u == user && b == behaviour) {
                continue;
            }
            let owner = Identity::new(format!("sip:{user}@localhost"));
            match self.add_endpoint_for(user.clone(), owner, Some(*behaviour), None) {
                Ok(_) => {
                    if !touched.contains(user) {
                        touched.push(user.clone());
                    }
                }
                Err(error) => tracing::warn!(%error, %user, "demo user not added"),
            }
        }
        self.config.demo_users = users;
        touched
    }

    /// Replaces the park settings (orbits, timeout, music, fallback, park number).
    /// Calls parked now stay in their orbits (and can be retrieved) even when the new
    /// range leaves those orbits out; new parks use the new settings.
    pub fn set_park_settings(&mut self, park: ParkSettings) {
        let old = std::mem::replace(&mut self.config.park, park);
        for number in old.first_orbit..=old.last_orbit {
            let user = number.to_string();
            if !self.config.park.is_orbit(number) && !self.by_user.contains_key(&user) {
                self.core.remove_user(&user);
            }
        }
        self.init_park();
    }

    /// The calls the engine holds (incoming, establishing, established, ending).
    pub fn call_count(&self) -> usize {
        self.calls.len()
    }

    /// Ends every call: BYE to established ones, CANCEL or a final response to those
    /// not yet answered (the end of a drain's grace period, or an immediate stop).
    /// Returns how many calls were asked to end.
    pub fn terminate_all(&mut self, now: Instant) -> usize {
        let calls: Vec<CallHandle> = self.calls.keys().copied().collect();
        let mut ended = 0;
        for call in calls {
            match self.terminate(now, call, CallTerminateOptions::default()) {
                Ok(()) => ended += 1,
                Err(error) => tracing::debug!(%error, ?call, "call not terminated"),
            }
        }
        ended
    }
}
