//! `control-api`: Tandem's control API, in the style of Azure Communication Services
//! Call Automation, served by the daemon over HTTP under `/v1`.
//!
//! [`start`] gives each configured application an endpoint (calls to its user, and
//! calls a `webhook` route names it for, come to it as `IncomingCall` events), follows
//! every call of the runtime, and returns a [`ControlApi`] whose
//! [`router`](ControlApi::router) serves the actions: create (one target, or a group
//! call whose participants talk in a conference room Tandem mixes), answer, reject,
//! redirect, connect to an existing call, hang up, transfer, add / cancel / remove / hold /
//! unhold participants, park and retrieve, play and DTMF. Outcomes come as events through an [`EventSink`]. Errors are RFC 9457 problem
//! details; the OpenAPI document is at `GET /v1/openapi.json`.
//!
//! Messaging, in the style of UCWA, lives under `/v1/conversations`: an IM call per
//! conversation (start, accept or decline an invitation, send messages, typing, stop),
//! with UCWA's resource events (`conversation`, `messaging`, `participant`,
//! `messagingInvitation`, `message`, `typing`, `messageCompleted` / `messageFailed`).
#![forbid(unsafe_code)]

mod auth;
mod calls;
mod daemon;
mod error;
mod follow;
mod json;
mod messaging;
mod messaging_model;
mod model;
mod server;
mod state;
mod validate;

pub use auth::{RequireToken, RequireTokenService, require_token};
pub use daemon::{ReloadFuture, ReloadHook, ReloadSummary};
pub use error::{ApiError, PROBLEM_JSON, Problem};
pub use messaging::THREAD_ID_HEADER;
pub use messaging_model::*;
pub use model::*;
pub use server::{
    ApiConfig, ApplicationConfig, ControlApi, EventSink, ROUTES, openapi, start,
    with_problem_fallbacks,
};
pub use validate::{MAX_CALLBACK_URI, MAX_OPERATION_CONTEXT, MAX_TONES};

pub mod events;
pub mod hub;
pub mod stream;
pub mod webhook;

/// The event hub is the API's event sink: every event is stored with its sequence
/// number for the stream and queued for the webhook.
impl EventSink for hub::EventHub {
    fn publish(
        &self,
        application: &str,
        callback: Option<&str>,
        event_type: &str,
        subject: Option<String>,
        data: serde_json::Value,
    ) -> u64 {
        hub::EventHub::publish(
            self,
            application,
            callback,
            events::ApiEvent::new(event_type, subject, data),
        )
    }
}

/// Everything the daemon serves: the actions and the event stream (both behind the
/// bearer token), with problem+json for unknown paths and methods.
pub fn router(api: &ControlApi, hub: hub::EventHub, token: Option<String>) -> axum::Router {
    // Streams of the configured applications only.
    hub.restrict_to(api.application_names());
    let stream = stream::router(hub).route_layer(require_token(token));
    with_problem_fallbacks(api.routes().merge(stream))
}
