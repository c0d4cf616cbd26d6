//! Routing rules at work: an incoming INVITE for no endpoint's user is matched against
//! the configured [`RouteTable`](crate::routing::RouteTable), and the first matching
//! rule's action is carried out on the new call (bridge, forward, decline, echo).

use super::{DemoBehaviour, Engine, Reason};
use crate::options::{CallAcceptOptions, CallDeclineOptions, CallForwardOptions};
use crate::routing::{RouteFacts, Routed, RoutedAction};
use crate::types::{CallHandle, CallReceived, EndpointHandle, Identity};
use crate::{BridgeOptions, BridgeTarget};
use sip_message::Request;
use sip_transaction::TransactionKey;
use std::time::Instant;

impl Engine {
    /// The rule for an incoming INVITE no endpoint owns, and the endpoint its call
    /// belongs to; `None`: no rule matches (404).
    pub(super) fn route_incoming(
        &self,
        tx: &TransactionKey,
        request: &Request,
        user: Option<&str>,
    ) -> Option<(EndpointHandle, Option<Routed>)> {
        let endpoint = self.route_endpoint?;
        let uri = request.uri_ref().ok();
        let host = uri
            .as_ref()
            .and_then(|u| u.as_sip().map(|s| s.host.to_string()))
            .unwrap_or_default();
        let request_uri = crate::body::text(&request.uri);
        let from = request
            .headers
            .get(&sip_message::HeaderName::From)
            .map(|v| crate::body::text(v))
            .unwrap_or_default();
        // Two strings per header line, built only when a rule looks at them.
        let headers: Vec<(String, String)> = if self.config.routes.matches_headers() {
            request
                .headers
                .iter()
                .map(|h| (h.name.as_str().to_owned(), crate::body::text(&h.value)))
                .collect()
        } else {
            Vec::new()
        };
        let source = self
            .core
            .user_agent_ref()
            .transaction_flow(tx)
            .map(|f| f.remote);
        let trunk = source.and_then(|s| self.core.trunk_of_source(s.ip()));
        let facts = RouteFacts {
            request_uri: &request_uri,
            user,
            host: &host,
            from: &from,
            headers: &headers,
            source_trunk: trunk.as_deref(),
        };
        let routed = self.config.routes.route(&facts)?;
        tracing::debug!(rule = %routed.rule, "routed");
        Some((endpoint, Some(routed)))
    }

    /// Carries out a rule's action on the call it took.
    pub(super) fn apply_route(
        &mut self,
        now: Instant,
        call: CallHandle,
        routed: Routed,
        mut received: CallReceived,
        request: &sip_message::Request,
    ) {
        let rule = routed.rule;
        let result = match routed.action {
            RoutedAction::Bridge {
                targets,
                ring,
                mode,
                pass_headers,
            } => {
                let targets = targets
                    .into_iter()
                    .map(|t| {
                        let mut target = BridgeTarget::new(t.uri);
                        target.timeout = t.timeout;
                        target.trunk = t.trunk;
                        target.headers = t
                            .headers
                            .into_iter()
                            .map(|(n, v)| crate::options::SignalingHeader::new(n, v))
                            .collect();
                        target
                    })
                    .collect();
                let mut options = BridgeOptions::new().mode(mode).ring(ring);
                options.pass_headers = pass_headers;
                options.caller = caller_of(&received, request);
                self.bridge_targets(now, call, targets, options).map(drop)
            }
            RoutedAction::Forward { target } => {
                self.forward(now, call, &target, CallForwardOptions::default())
            }
            RoutedAction::Decline { status, reason } => {
                let mut options = CallDeclineOptions::new(status);
                options.reason_phrase = reason;
                self.decline(now, call, options)
            }
            RoutedAction::Echo => {
                self.demo_calls.insert(call, DemoBehaviour::Echo);
                self.accept(now, call, CallAcceptOptions::new())
            }
            // The caller is answered with Tandem's own media and parked once the ACK
            // comes (it hears music on hold); with every orbit taken, 480.
            RoutedAction::Park => self.park_on_answer(now, call),
            // Handed to the application registered under that name (the control API
            // posts it to the application's webhook): the call becomes its endpoint's,
            // raised as `CallReceived`, and waits `unanswered_timeout` for an answer.
            // No application by that name: 480, naming it.
            RoutedAction::Webhook { application } => {
                match self.applications.get(&application).copied() {
                    Some(endpoint) if self.endpoints.contains_key(&endpoint) => {
                        received.headers = crate::body::headers_of(&request.headers);
                        self.hand_to_application(call, endpoint, received);
                        Ok(())
                    }
                    _ => {
                        let mut options = CallDeclineOptions::new(480);
                        options.reason = Some(format!(
                            "SIP;cause=480;text=\"application {} is not connected\"",
                            application.replace('"', "'")
                        ));
                        self.decline(now, call, options)
                    }
                }
            }
        };
        if let Err(error) = result {
            tracing::info!(%error, %rule, %call, "route failed");
            let mut options = CallDeclineOptions::new(500);
            options.reason = Some(format!(
                "SIP;cause=500;text=\"{}\"",
                error.to_string().replace('"', "'")
            ));
            if self.decline(now, call, options).is_err() {
                self.finish(call, Reason::LocalTerminated, None);
            }
        }
    }
}

impl Engine {
    /// Calls a `webhook` route names `application` go to `endpoint` (an application
    /// endpoint of the control API's) from now on.
    pub fn set_application(&mut self, application: &str, endpoint: EndpointHandle) {
        self.applications.insert(application.to_owned(), endpoint);
    }

    /// `webhook` routes naming `application` answer 480 from now on.
    pub fn remove_application(&mut self, application: &str) {
        self.applications.remove(application);
    }

    fn hand_to_application(
        &mut self,
        call: CallHandle,
        endpoint: EndpointHandle,
        received: CallReceived,
    ) {
        let conversation = received.conversation;
        if let Some(c) = self.calls.get_mut(&call) {
            c.endpoint = endpoint;
        }
        if let Some(entry) = self.conversations.get_mut(&conversation) {
            entry.endpoint = endpoint;
        }
        self.events.push_back(crate::types::Event::Endpoint {
            endpoint,
            event: crate::types::EndpointEvent::CallReceived(Box::new(received)),
        });
    }
}

/// Leg B's caller: the caller's own identity (display name and user), at our host
/// (the Request-URI's), so its address stays hidden (topology hiding) while the
/// number still shows.
///
/// The INVITE's From and Request-URI were parsed (and kept) when it was validated: they
/// are taken from `request` when the text the application sees is the same bytes.
fn caller_of(received: &CallReceived, request: &sip_message::Request) -> Option<Identity> {
    let same_from = request
        .headers
        .get(&sip_message::HeaderName::From)
        .is_some_and(|v| v.as_ref() == received.from.as_bytes());
    let from = match request.headers.from_ref() {
        Ok(from) if same_from => Some(from),
        _ => sip_message::NameAddr::parse(&bytes::Bytes::copy_from_slice(received.from.as_bytes()))
            .map(std::borrow::Cow::Owned),
    };
    let (display, user) = match &from {
        Some(f) => (
            f.display_name.clone(),
            f.uri
                .as_sip()
                .and_then(|s| s.user_unescaped().map(|u| crate::body::text(&u))),
        ),
        None => (None, None),
    };
    let user = user?;
    let same_uri = request.uri.as_ref() == received.request_uri.as_bytes();
    let uri = match request.uri_ref() {
        Ok(uri) if same_uri => Some(uri),
        _ => sip_message::Uri::parse(received.request_uri.as_bytes())
            .ok()
            .map(std::borrow::Cow::Owned),
    };
    let host = uri.and_then(|u| u.as_sip().map(|s| s.host.to_string()))?;
    let escaped: String = user
        .chars()
        .filter(|c| {
            c.is_ascii_alphanumeric()
                || matches!(
                    c,
                    '-' | '_'
                        | '.'
                        | '!'
                        | '~'
                        | '*'
                        | '\''
                        | '('
                        | ')'
                        | '&'
                        | '='
                        | '+'
                        | '$'
                        | ','
                        | ';'
                        | '?'
                        | '/'
                )
        })
        .collect();
    if escaped.is_empty() {
        return None;
    }
    let mut uri = String::with_capacity(5 + escaped.len() + host.len());
    uri.push_str("sip:");
    uri.push_str(&escaped);
    uri.push('@');
    uri.push_str(&host);
    Some(Identity {
        uri,
        display_name: display.filter(|d| !d.is_empty()),
    })
}
