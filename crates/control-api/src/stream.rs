//! The resumable event stream: every event of an application, in sequence order, over
//! Server-Sent Events or a WebSocket, resumed after a disconnect from the last sequence
//! number the client read, so no event is lost while it was away.
//!
//! - `GET /v1/events?application=NAME&after=SEQ`: SSE (WHATWG HTML §9.2): each event has
//!   `id:` = its sequence number, `event:` = its type, `data:` = the CloudEvent JSON; a
//!   `Last-Event-ID` header (what an `EventSource` sends when it reconnects) wins over
//!   `after`; a comment line every 15 s keeps idle connections alive.
//! - `GET /v1/events/ws?application=NAME&after=SEQ`: WebSocket (RFC 6455), one CloudEvent JSON
//!   per text message; a ping every 15 s.
//!
//! With neither `after` nor `Last-Event-ID` the stream starts with the next event published.
//! `after=0` asks for everything from the application's first event. Resuming from a point
//! the hub no longer keeps (older than the retention, or beyond the last event, e.g. after
//! a restart) is answered `410 Gone` with a problem+json (RFC 9457) naming the oldest
//! sequence kept: the client resynchronises through the REST API and starts again.

use std::convert::Infallible;
use std::time::Duration;

use axum::Router;
use axum::extract::rejection::QueryRejection;
use axum::extract::ws::{
    Message, WebSocket, WebSocketUpgrade, rejection::WebSocketUpgradeRejection,
};
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;

use crate::hub::{EventHub, Gap, Subscription};

/// How often an idle stream is kept alive (SSE comment, WebSocket ping).
pub const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// The `Last-Event-ID` request header of an `EventSource` reconnecting (WHATWG HTML §9.2.4).
pub const LAST_EVENT_ID: &str = "last-event-id";

/// The problem type of a resume point the hub no longer has (410).
pub const PROBLEM_EVENTS_GONE: &str = "/problems/events-gone";
/// The problem type of a missing or malformed query parameter or header (400).
pub const PROBLEM_INVALID_PARAMETER: &str = "/problems/invalid-parameter";
/// `type` of the 404 for a stream of an application that is not configured.
pub const PROBLEM_UNKNOWN_APPLICATION: &str = "/problems/unknown-application";

/// The query of both stream routes.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StreamQuery {
    /// The application whose events to stream.
    pub application: Option<String>,
    /// Resume after this sequence number.
    pub after: Option<String>,
}

/// The stream routes, `GET /v1/events` (SSE) and `GET /v1/events/ws` (WebSocket), over `hub`.
/// Authentication is the caller's: wrap the router in it.
pub fn router(hub: EventHub) -> Router {
    Router::new()
        .route("/v1/events", get(sse))
        .route("/v1/events/ws", get(websocket))
        .with_state(hub)
}

/// Why a stream request is refused.
#[derive(Debug)]
enum Refusal {
    /// 400: a parameter is missing or malformed; the text names it.
    Invalid(String),
    /// 410: the resume point is not available.
    Gone { application: String, gap: Gap },
    /// 404: no such application.
    Unknown(String),
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        let (status, kind, title, detail) = match self {
            Refusal::Invalid(detail) => (
                StatusCode::BAD_REQUEST,
                PROBLEM_INVALID_PARAMETER,
                "Invalid request parameter",
                detail,
            ),
            Refusal::Gone { application, gap } => (
                StatusCode::GONE,
                PROBLEM_EVENTS_GONE,
                "Events no longer available",
                gone_detail(&application, gap),
            ),
            Refusal::Unknown(application) => (
                StatusCode::NOT_FOUND,
                PROBLEM_UNKNOWN_APPLICATION,
                "No such application",
                format!("no application is named {application:?}"),
            ),
        };
        // A problem+json document (RFC 9457 §3).
        let mut body = serde_json::json!({
            "type": kind,
            "title": title,
            "status": status.as_u16(),
            "detail": detail,
        });
        if status == StatusCode::NOT_FOUND
            && let Some(body) = body.as_object_mut()
        {
            body.insert("field".into(), "application".into());
        }
        (
            status,
            [(header::CONTENT_TYPE, "application/problem+json")],
            body.to_string(),
        )
            .into_response()
    }
}

fn gone_detail(application: &str, gap: Gap) -> String {
    if gap.after > gap.last {
        format!(
            "application {application:?} has published up to sequence {} only, not {} (was the server restarted?); resynchronise, then resume after {}",
            gap.last, gap.after, gap.last
        )
    } else {
        format!(
            "the events of application {application:?} after sequence {} are no longer kept (past the retention, or of an earlier run of the server): the oldest sequence kept is {}; resynchronise, then resume after {}",
            gap.after, gap.oldest, gap.last
        )
    }
}

/// A sequence number as the document declares it: an integer in `0..=i64::MAX` (OpenAPI
/// `int64`, minimum 0; no hub gets near the top).
fn parse_sequence(name: &str, value: &str) -> Result<u64, Refusal> {
    value
        .trim()
        .parse::<i64>()
        .ok()
        .and_then(|n| u64::try_from(n).ok())
        .ok_or_else(|| {
            Refusal::Invalid(format!(
                "{name} must be a sequence number (an integer from 0 to {}), not {value:?}",
                i64::MAX
            ))
        })
}

/// The subscription a stream request asks for, or why not.
fn open(
    hub: &EventHub,
    headers: &HeaderMap,
    query: Result<Query<StreamQuery>, QueryRejection>,
) -> Result<Subscription, Refusal> {
    let Query(query) = query.map_err(|rejection| Refusal::Invalid(rejection.body_text()))?;
    let application = match query.application {
        Some(application) if !application.is_empty() => application,
        _ => {
            return Err(Refusal::Invalid(
                "the query parameter `application` is required: the application whose events to stream"
                    .to_owned(),
            ));
        }
    };
    if !hub.knows(&application) {
        return Err(Refusal::Unknown(application));
    }
    let last_event_id = match headers.get(LAST_EVENT_ID) {
        Some(value) => {
            let value = value.to_str().map_err(|_| {
                Refusal::Invalid("the Last-Event-ID header must be ASCII".to_owned())
            })?;
            Some(parse_sequence("the Last-Event-ID header", value)?)
        }
        None => None,
    };
    let after = match (last_event_id, query.after) {
        (Some(after), _) => Some(after),
        (None, Some(after)) => Some(parse_sequence("the query parameter `after`", &after)?),
        (None, None) => None,
    };
    match after {
        Some(after) => hub
            .subscribe(&application, after)
            .map_err(|gap| Refusal::Gone { application, gap }),
        None => Ok(hub.subscribe_live(&application)),
    }
}

/// `GET /v1/events`: the application's events as Server-Sent Events.
#[utoipa::path(
    get,
    path = "/v1/events",
    tag = "events",
    params(
        ("application" = String, Query, description = "The application whose events to stream"),
        ("after" = Option<u64>, Query, description = "Resume after this sequence number (0: from the first event); without it (and without Last-Event-ID) the stream starts with the next event"),
        ("Last-Event-ID" = Option<u64>, Header, description = "The last sequence number read, as an EventSource sends it when it reconnects; wins over `after`"),
    ),
    responses(
        (status = 200, description = "An endless SSE stream: per event `id:` its sequence number, `event:` its type, `data:` the CloudEvent JSON (schema CloudEvent); a comment every 15 s", content_type = "text/event-stream", body = String),
        (status = 400, description = "A missing or malformed parameter (problem+json naming it)", content_type = "application/problem+json", body = Object),
        (status = 401, description = "No or a wrong bearer token", content_type = "application/problem+json", body = Object),
        (status = 404, description = "No application of this name is configured (problem+json naming `application`)", content_type = "application/problem+json", body = Object),
        (status = 410, description = "The resume point is no longer kept (or was never published): resynchronise, then resume after the last sequence (problem+json naming the oldest kept)", content_type = "application/problem+json", body = Object),
    )
)]
pub async fn sse(
    State(hub): State<EventHub>,
    headers: HeaderMap,
    query: Result<Query<StreamQuery>, QueryRejection>,
) -> Response {
    let subscription = match open(&hub, &headers, query) {
        Ok(subscription) => subscription,
        Err(refusal) => return refusal.into_response(),
    };
    let events = futures_util::stream::unfold(subscription, |mut subscription| async move {
        let stored = subscription.next_stored().await?;
        let mut event = Event::default().id(stored.sequence.to_string());
        let kind = &stored.event.event_type;
        // An SSE field cannot hold a line break; such a type is left to the JSON.
        if !kind.is_empty() && !kind.contains(['\r', '\n']) {
            event = event.event(kind);
        }
        let event = event.data(&stored.json);
        Some((Ok::<_, Infallible>(event), subscription))
    });
    let mut response = Sse::new(events)
        .keep_alive(KeepAlive::new().interval(KEEP_ALIVE))
        .into_response();
    // Tells buffering reverse proxies (nginx) to pass each event on at once.
    response
        .headers_mut()
        .insert("x-accel-buffering", header::HeaderValue::from_static("no"));
    response
}

/// `GET /v1/events/ws`: the application's events over a WebSocket.
#[utoipa::path(
    get,
    path = "/v1/events/ws",
    tag = "events",
    params(
        ("application" = String, Query, description = "The application whose events to stream"),
        ("after" = Option<u64>, Query, description = "Resume after this sequence number (0: from this run's first event; numbers of an earlier run of the server get 410); without it the stream starts with the next event"),
    ),
    responses(
        (status = 101, description = "WebSocket (RFC 6455): one CloudEvent JSON per text message, in sequence order; a ping every 15 s; closed if the client falls behind the retention"),
        (status = 400, description = "A missing or malformed parameter (problem+json naming it), or not a WebSocket handshake (RFC 6455 §4.2.1)", content_type = "application/problem+json", body = Object),
        (status = 401, description = "No or a wrong bearer token", content_type = "application/problem+json", body = Object),
        (status = 404, description = "No application of this name is configured (problem+json naming `application`)", content_type = "application/problem+json", body = Object),
        (status = 410, description = "The resume point is no longer kept (or was never published) (problem+json naming the oldest kept)", content_type = "application/problem+json", body = Object),
        (status = 426, description = "The connection cannot be upgraded (problem+json)", content_type = "application/problem+json", body = Object),
    )
)]
pub async fn websocket(
    State(hub): State<EventHub>,
    headers: HeaderMap,
    query: Result<Query<StreamQuery>, QueryRejection>,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    let subscription = match open(&hub, &headers, query) {
        Ok(subscription) => subscription,
        Err(refusal) => return refusal.into_response(),
    };
    match upgrade {
        // The client sends nothing the stream needs: small frames only.
        Ok(upgrade) => upgrade
            .max_message_size(WS_MAX_INCOMING)
            .max_frame_size(WS_MAX_INCOMING)
            .on_upgrade(move |socket| pump(socket, subscription)),
        // Not a handshake: problem+json like every other refusal (RFC 9457).
        Err(rejection) => {
            let status = rejection.status();
            let body = serde_json::json!({
                "type": PROBLEM_INVALID_PARAMETER,
                "title": "Not a WebSocket handshake",
                "status": status.as_u16(),
                "detail": rejection.body_text(),
            });
            (
                status,
                [(header::CONTENT_TYPE, "application/problem+json")],
                body.to_string(),
            )
                .into_response()
        }
    }
}

/// The largest message or frame a stream client may send (it needs to send nothing).
const WS_MAX_INCOMING: usize = 4096;

/// How long one message may take to go out: a client that stops reading (a zero TCP
/// window) is dropped after this, not kept forever.
const WS_SEND_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// Sends `message`, within [`WS_SEND_TIMEOUT`]; whether it went.
async fn send(socket: &mut WebSocket, message: Message) -> bool {
    matches!(
        tokio::time::timeout(WS_SEND_TIMEOUT, socket.send(message)).await,
        Ok(Ok(()))
    )
}

/// Sends the subscription's events until either side ends.
async fn pump(mut socket: WebSocket, mut subscription: Subscription) {
    let mut keep_alive = tokio::time::interval(KEEP_ALIVE);
    keep_alive.reset();
    loop {
        tokio::select! {
            stored = subscription.next_stored() => {
                let Some(stored) = stored else { break };
                if !send(&mut socket, Message::Text(stored.json.as_str().into())).await {
                    return;
                }
            }
            received = socket.recv() => match received {
                // Pings are answered by the socket itself; text from the client is ignored.
                Some(Ok(Message::Close(_)) | Err(_)) | None => return,
                Some(Ok(_)) => {}
            },
            _ = keep_alive.tick() => {
                if !send(&mut socket, Message::Ping(Default::default())).await {
                    return;
                }
            }
        }
    }
    // The hub is gone or the client fell behind the retention: say so and close.
    let _ = send(&mut socket, Message::Close(None)).await;
}
