//! Starting the API ([`start`]) and its HTTP surface ([`ControlApi::router`]): the
//! routes under `/v1`, bearer-token authentication, body limits, problem+json for
//! every error, and the OpenAPI document.

use crate::auth::require_token;
use crate::calls;
use crate::error::{ApiError, Problem};
use crate::state::{Application, Shared};
use axum::Router;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use utoipa::OpenApi;

/// What the API needs (the daemon's `[api]`).
#[derive(Debug, Clone)]
pub struct ApiConfig {
    /// The bearer token every request must carry (RFC 6750); `None`: no authentication
    /// (a warning is logged at start).
    pub token: Option<String>,
    /// The largest request body, in bytes (64 KiB by default): larger gets 413.
    pub max_body_bytes: usize,
    pub applications: Vec<ApplicationConfig>,
    /// Phone-number targets are placed through this configured trunk.
    pub default_trunk: Option<String>,
    /// Custom context limits (400 naming the header when broken): how many `X-`
    /// headers, how long each value, how long the User-to-User value.
    pub max_custom_headers: usize,
    pub max_header_value: usize,
    pub max_uui_bytes: usize,
    /// Files `play` names are relative to this directory (no `..`); `None`: any path
    /// the daemon can read.
    pub media_dir: Option<PathBuf>,
    /// A messaging invitation (`conversations:startMessaging`) unanswered this long is
    /// cancelled and fails with reason `timeout` (30 s by default).
    pub messaging_invitation_timeout: Duration,
    /// The daemon's reload, behind `POST /v1/daemon:reload`; `None`: 404 `no-daemon`.
    pub reload: Option<crate::daemon::ReloadHook>,
}

impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig {
            token: None,
            max_body_bytes: 64 * 1024,
            applications: Vec::new(),
            default_trunk: None,
            max_custom_headers: 10,
            max_header_value: 256,
            max_uui_bytes: 128,
            media_dir: None,
            messaging_invitation_timeout: Duration::from_secs(30),
            reload: None,
        }
    }
}

/// An application that steers calls through the API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApplicationConfig {
    /// Its name: in `POST /v1/calls` and in `webhook` routes.
    pub name: String,
    /// Where its events are POSTed (an operation's `operationCallbackUri` wins).
    pub callback_uri: Option<String>,
    /// Its endpoint's identity, e.g. `sip:app@192.0.2.1`: calls to this user come to
    /// the application, and it is the caller of the calls it places.
    pub owner_uri: String,
    /// An incoming call waits this long for answer, reject or redirect, then gets 480.
    pub answer_timeout: Duration,
}

impl ApplicationConfig {
    pub fn new(name: impl Into<String>, owner_uri: impl Into<String>) -> ApplicationConfig {
        ApplicationConfig {
            name: name.into(),
            callback_uri: None,
            owner_uri: owner_uri.into(),
            answer_timeout: Duration::from_secs(30),
        }
    }
}

/// Where the API's events go (the event hub: webhooks and the event stream).
pub trait EventSink: Send + Sync + 'static {
    /// Publishes an event of `application`: to `callback` (the operation's callback, or
    /// the application's), and to the application's stream. `event_type` is the
    /// Call Automation name (`CallConnected`...); `subject` the CloudEvents subject
    /// (`calling/callConnections/<id>`); `data` the event's body. Returns the event's
    /// sequence number.
    fn publish(
        &self,
        application: &str,
        callback: Option<&str>,
        event_type: &str,
        subject: Option<String>,
        data: serde_json::Value,
    ) -> u64;
}

/// The running API: serve [`router`](Self::router).
#[derive(Debug, Clone)]
pub struct ControlApi {
    shared: Arc<Shared>,
}

/// Registers an application endpoint per configured application (and names it for
/// `webhook` routes), follows every call of the runtime, and returns the API.
pub async fn start(
    tandem: runtime::Tandem,
    config: ApiConfig,
    events: Arc<dyn EventSink>,
) -> Result<ControlApi, ApiError> {
    check(&config)?;
    if config.token.is_none() {
        tracing::warn!("the control API has no token: anyone who reaches it can steer calls");
    }
    // Tapped before any endpoint exists: no call of theirs can be missed.
    let tap = tandem.tap().await.map_err(|_| ApiError::Stopped)?;
    let mut applications = HashMap::new();
    for app in &config.applications {
        let settings = ::calls::ApplicationEndpointSettings::new(app.owner_uri.clone());
        let mut endpoint = tandem
            .add_application_endpoint(settings)
            .await
            .map_err(|source| ApiError::Runtime {
                application: app.name.clone(),
                source,
            })?;
        let handle = endpoint.handle();
        let name = app.name.clone();
        tandem
            .with_engine(move |engine, _| engine.set_application(&name, handle))
            .await
            .map_err(|_| ApiError::Stopped)?;
        // The follower sees the endpoint's calls on the tap; its own notices are
        // drained so they do not pile up.
        tokio::spawn(async move { while endpoint.next_event().await.is_some() {} });
        applications.insert(
            app.name.clone(),
            Application {
                name: app.name.clone(),
                endpoint: handle,
                callback: app.callback_uri.clone(),
                owner_uri: app.owner_uri.clone(),
                answer_timeout: app.answer_timeout,
            },
        );
        tracing::info!(application = %app.name, owner = %app.owner_uri, "application ready");
    }
    let shared = Arc::new(Shared::new(tandem, config, events, applications));
    tokio::spawn(crate::follow::follow(shared.clone(), tap));
    Ok(ControlApi { shared })
}

fn check(config: &ApiConfig) -> Result<(), ApiError> {
    let bad = |what: String, problem: &str| ApiError::Config {
        what,
        problem: problem.to_owned(),
    };
    if config.max_body_bytes == 0 {
        return Err(bad("max_body_bytes".into(), "must be more than 0"));
    }
    if config.messaging_invitation_timeout.is_zero() {
        return Err(bad(
            "messaging_invitation_timeout".into(),
            "must be more than 0",
        ));
    }
    let mut seen = std::collections::HashSet::new();
    for app in &config.applications {
        let what = format!("application `{}`", app.name);
        if app.name.is_empty() || !seen.insert(app.name.as_str()) {
            return Err(bad(what, "names must be unique and not empty"));
        }
        let sip = sip_message::Uri::parse(app.owner_uri.as_bytes())
            .ok()
            .and_then(|u| u.as_sip().and_then(|s| s.user.clone()));
        if sip.is_none() {
            return Err(bad(what, "owner_uri must be a sip: URI with a user part"));
        }
        if crate::validate::callback_uri(app.callback_uri.as_ref()).is_err() {
            return Err(bad(what, "callback_uri must be an http:// URL"));
        }
        if app.answer_timeout.is_zero() {
            return Err(bad(what, "answer_timeout must be more than 0"));
        }
    }
    Ok(())
}

/// Every route the API serves: (method, path as in the OpenAPI document).
pub const ROUTES: &[(&str, &str)] = &[
    ("get", "/v1/openapi.json"),
    ("post", "/v1/calls"),
    ("get", "/v1/calls"),
    ("post", "/v1/calls:answer"),
    ("post", "/v1/calls:reject"),
    ("post", "/v1/calls:redirect"),
    ("post", "/v1/calls:retrieve"),
    ("post", "/v1/calls:connect"),
    ("get", "/v1/calls/{callConnectionId}"),
    ("post", "/v1/calls/{callConnectionId}:hangup"),
    ("post", "/v1/calls/{callConnectionId}:transferToParticipant"),
    ("post", "/v1/calls/{callConnectionId}:park"),
    ("post", "/v1/calls/{callConnectionId}:play"),
    ("post", "/v1/calls/{callConnectionId}:sendDtmf"),
    ("get", "/v1/calls/{callConnectionId}/participants"),
    ("post", "/v1/calls/{callConnectionId}/participants:add"),
    ("post", "/v1/calls/{callConnectionId}/participants:remove"),
    (
        "post",
        "/v1/calls/{callConnectionId}/participants:cancelAddParticipant",
    ),
    ("post", "/v1/calls/{callConnectionId}/participants:hold"),
    ("post", "/v1/calls/{callConnectionId}/participants:unhold"),
    ("post", "/v1/calls/{callConnectionId}/participants:mute"),
    ("post", "/v1/calls/{callConnectionId}/participants:unmute"),
    (
        "get",
        "/v1/calls/{callConnectionId}/participants/{participantId}",
    ),
    ("post", "/v1/conversations:startMessaging"),
    ("post", "/v1/conversations:acceptMessaging"),
    ("post", "/v1/conversations:declineMessaging"),
    ("get", "/v1/conversations"),
    ("get", "/v1/conversations/{conversationId}"),
    (
        "post",
        "/v1/conversations/{conversationId}/messaging:sendMessage",
    ),
    (
        "post",
        "/v1/conversations/{conversationId}/messaging:setIsTyping",
    ),
    (
        "post",
        "/v1/conversations/{conversationId}/messaging:stopMessaging",
    ),
    ("post", "/v1/daemon:reload"),
    // Served by `control_api::router` (the event stream), not by `ControlApi::routes`.
    ("get", "/v1/events"),
    ("get", "/v1/events/ws"),
];

impl ControlApi {
    /// The configured applications' names.
    pub fn application_names(&self) -> Vec<String> {
        self.shared.applications.keys().cloned().collect()
    }

    /// The API's routes with authentication and body limits, without fallbacks, to
    /// merge with other routers (the event stream's); give the merged router
    /// [`with_problem_fallbacks`]. `GET /v1/openapi.json` needs no token.
    pub fn routes(&self) -> Router {
        let limit = self.shared.config.max_body_bytes;
        let guarded = Router::new()
            .route("/v1/calls", post(calls::create_call).get(calls::list_calls))
            .route("/v1/calls:answer", post(calls::answer))
            .route("/v1/calls:reject", post(calls::reject))
            .route("/v1/calls:redirect", post(calls::redirect))
            .route("/v1/calls:retrieve", post(calls::retrieve))
            .route("/v1/calls:connect", post(calls::connect))
            .route(
                "/v1/calls/{call}",
                get(calls::get_call).post(calls::call_action),
            )
            .route(
                "/v1/calls/{call}/{segment}",
                get(calls::participants_get).post(calls::participants_action),
            )
            .route(
                "/v1/calls/{call}/participants/{participant}",
                get(calls::get_participant),
            )
            .merge(crate::messaging::routes())
            .route("/v1/daemon:reload", post(crate::daemon::reload))
            .route_layer(tower_http::limit::RequestBodyLimitLayer::new(limit))
            .route_layer(axum::middleware::map_response_with_state(
                limit,
                problem_for_limit,
            ))
            .route_layer(require_token(self.shared.config.token.clone()))
            .with_state(self.shared.clone());
        let open = Router::new()
            .route("/v1/openapi.json", get(openapi_json))
            .with_state(self.shared.clone());
        guarded.merge(open)
    }

    /// Everything the API serves, unknown paths and methods answered with
    /// problem+json: what the daemon serves when nothing is merged in.
    pub fn router(&self) -> Router {
        with_problem_fallbacks(self.routes())
    }
}

/// Answers unknown paths (404) and methods (405, with `Allow` as documented) with
/// problem+json.
pub fn with_problem_fallbacks(router: Router) -> Router {
    router
        .fallback(|| async {
            Problem::not_found("no-such-route", "no such path under /v1").into_response()
        })
        .method_not_allowed_fallback(|| async { Problem::method_not_allowed().into_response() })
        .layer(axum::middleware::from_fn(allow_by_path))
        .layer(axum::middleware::map_response(problem_for_plain_errors))
}

/// An extractor's own refusal (a path segment that is not UTF-8, `/v1/calls/%FF`; a
/// query that does not parse) is axum's plain-text 400: give it the API's shape, its
/// text as the detail (RFC 9457).
async fn problem_for_plain_errors(response: Response) -> Response {
    let plain = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"text/plain"));
    let status = response.status();
    if !(plain && status.is_client_error()) {
        return response;
    }
    let body = axum::body::to_bytes(response.into_body(), 4096)
        .await
        .unwrap_or_default();
    let detail = String::from_utf8_lossy(&body).into_owned();
    let title = status.canonical_reason().unwrap_or("Client error");
    Problem::new(status, "invalid-request", title, detail).into_response()
}

/// tower-http refuses an oversize body with a bare 413: give it the API's shape.
async fn problem_for_limit(
    axum::extract::State(limit): axum::extract::State<usize>,
    response: Response,
) -> Response {
    let problem_already = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes() == crate::error::PROBLEM_JSON.as_bytes());
    if response.status() == StatusCode::PAYLOAD_TOO_LARGE && !problem_already {
        return Problem::too_large(limit).into_response();
    }
    response
}

/// The OpenAPI document.
#[utoipa::path(
    get,
    path = "/v1/openapi.json",
    tag = "meta",
    security(()),
    responses((status = 200, description = "This document (no token needed)", content_type = "application/json"))
)]
pub(crate) async fn openapi_json(
    axum::extract::State(shared): axum::extract::State<Arc<Shared>>,
) -> Response {
    let mut names: Vec<&str> = shared.applications.keys().map(String::as_str).collect();
    names.sort_unstable();
    match served(&names).to_json() {
        Ok(json) => ([(header::CONTENT_TYPE, "application/json")], json).into_response(),
        Err(error) => Problem::internal(error.to_string()).into_response(),
    }
}

/// The document as served: `application` lists the configured applications.
fn served(applications: &[&str]) -> utoipa::openapi::OpenApi {
    use utoipa::openapi::{RefOr, schema::Schema};
    let mut doc = openapi();
    for name in ["CreateCallRequest", "StartMessagingRequest"] {
        let schema = doc
            .components
            .as_mut()
            .and_then(|c| c.schemas.get_mut(name));
        if let Some(RefOr::T(Schema::Object(request))) = schema
            && let Some(RefOr::T(Schema::Object(application))) =
                request.properties.get_mut("application")
        {
            application.enum_values = Some(
                applications
                    .iter()
                    .map(|name| serde_json::Value::from(*name))
                    .collect(),
            );
        }
    }
    doc
}

/// The `{id}:verb` paths share axum routes with the reads: a 405 names the methods of
/// the path as documented (RFC 9110 §10.2.1), not of the route behind it.
async fn allow_by_path(request: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let path = request.uri().path();
    let under_call = path.starts_with("/v1/calls/") || path.starts_with("/v1/conversations/");
    let action = request
        .uri()
        .path()
        .rsplit('/')
        .next()
        .is_some_and(|last| last.contains(':'));
    let mut response = next.run(request).await;
    if under_call && response.status() == StatusCode::METHOD_NOT_ALLOWED {
        let allow = if action { "POST" } else { "GET,HEAD" };
        response
            .headers_mut()
            .insert(header::ALLOW, axum::http::HeaderValue::from_static(allow));
    }
    response
}

/// The OpenAPI document of the API, generated from the code.
pub fn openapi() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
        .merge_from(crate::messaging::MessagingDoc::openapi())
        .merge_from(crate::daemon::DaemonDoc::openapi())
}

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Tandem control API",
        description = "Call Automation-style control of Tandem's calls. Every action accepts `operationContext` (at most 1024 bytes, echoed in the events it raises) and `operationCallbackUri` (where those events go instead of the application's callback). Errors are RFC 9457 problem details (`application/problem+json`); 400s and 422s name the field. Every route but this document needs `Authorization: Bearer <token>` when a token is configured. Request bodies are limited to the configured size (64 KiB by default; 413 beyond).\n\nEvents carry `callConnectionId`, `correlationId` (the SIP Call-ID), `operationContext` and `resultInformation { code, subCode, message }` (code 200 on success, else the SIP status): IncomingCall, CallConnected, CallDisconnected, CreateCallFailed, AnswerFailed, ConnectFailed, ParticipantsUpdated (sequenceNumber), AddParticipantSucceeded/Failed, CancelAddParticipantSucceeded/Failed, RemoveParticipantSucceeded/Failed, RetrieveSucceeded/Failed, HoldSucceeded/Failed, UnholdSucceeded/Failed, CallTransferAccepted/Failed (sipStatus; the message carries the target's status and reason, e.g. `486 Busy Here`), CallParked, PlayCompleted/Failed/Canceled, SendDtmfTonesCompleted/Failed, ToneReceived.\n\nA call created with several targets is a group call: the participants talk in a conference room that Tandem mixes, and a play without `playTo` is heard by everyone in it. `participants:mute` mutes participants in the room: they still hear the others, the others stop hearing them (`isMuted`).",
        version = "1"
    ),
    paths(
        openapi_json,
        calls::create_call,
        calls::list_calls,
        calls::answer,
        calls::reject,
        calls::redirect,
        calls::retrieve,
        calls::connect,
        calls::get_call,
        calls::hangup,
        calls::transfer,
        calls::park,
        calls::play,
        calls::send_dtmf,
        calls::list_participants,
        calls::add_participant,
        calls::remove_participant,
        calls::cancel_add_participant,
        calls::hold,
        calls::unhold,
        calls::mute_participants,
        calls::unmute_participants,
        calls::get_participant,
        crate::stream::sse,
        crate::stream::websocket,
    ),
    components(schemas(
        crate::error::Problem,
        crate::model::Identifier,
        crate::model::CustomContext,
        crate::model::CreateCallRequest,
        crate::model::CallParticipant,
        crate::model::CallConnectionProperties,
        crate::model::CallConnectionList,
        crate::model::ParticipantList,
        crate::model::AnswerCallRequest,
        crate::model::CallRejectReason,
        crate::model::RejectCallRequest,
        crate::model::RedirectCallRequest,
        crate::model::HangupRequest,
        crate::model::TransferToParticipantRequest,
        crate::model::OperationAccepted,
        crate::model::AddParticipantRequest,
        crate::model::AddParticipantResponse,
        crate::model::CancelAddParticipantRequest,
        crate::model::CancelAddParticipantResponse,
        crate::model::RemoveParticipantRequest,
        crate::model::ParkRequest,
        crate::model::ParkResponse,
        crate::model::RetrieveRequest,
        crate::model::RetrieveResponse,
        crate::model::PlayRequest,
        crate::model::SendDtmfRequest,
        crate::model::ConnectRequest,
        crate::model::HoldRequest,
        crate::model::UnholdRequest,
        crate::model::MuteParticipantsRequest,
        crate::model::MuteParticipantsResponse,
        crate::events::ResultInformation,
        crate::events::CallEventData,
        crate::events::CloudEvent,
    )),
    modifiers(&BearerAuth),
    security(("bearer" = [])),
    tags(
        (name = "calls", description = "Create, read, hang up and transfer calls"),
        (name = "incoming calls", description = "Answer, reject or redirect a call an `IncomingCall` event announced"),
        (name = "participants", description = "Add (the participants talk in the call's conference room), cancel, remove, hold, unhold and read participants"),
        (name = "park", description = "Park a participant in an orbit and retrieve it"),
        (name = "media", description = "Play a file, send DTMF"),
        (name = "events", description = "The application's events (CloudEvent JSON, schema CloudEvent; `data` as CallEventData) over Server-Sent Events or a WebSocket, resumable by sequence number"),
        (name = "meta", description = "This document"),
    )
)]
struct ApiDoc;
