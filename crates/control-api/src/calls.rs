//! The call actions: create, answer, reject, redirect, hang up, transfer, add / cancel /
//! remove participants, park and retrieve, play and DTMF, and the reads.
//!
//! Every command runs in one `with_engine` job that also writes the books, so the
//! engine's first event of a new call finds it there. The outcome of an action that
//! takes time comes as an event (see [`crate::follow`]).

use crate::error::{ApiResult, Problem};
use crate::json::ApiJson;
use crate::model::*;
use crate::state::{
    CallDirection, Connection, ConnectionState, HoldOp, Op, Outbox, Participant, ParticipantState,
    Role, Settled, Shared, Tracked, TransferOp, failed, new_id,
};
use crate::validate;
use axum::Json;
use axum::extract::{FromRequest, Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use calls::{
    BridgeTarget, CallAcceptOptions, CallDeclineOptions, CallEstablishOptions, CallForwardOptions,
    CallHandle, CallKind, CallState, CallTerminateOptions, CallTransferOptions,
    ConversationSettings, Engine, HoldType, Identity,
};
use std::sync::Arc;
use std::time::Instant;

/// The longest caller display name, in bytes.
const MAX_DISPLAY_NAME: usize = 128;
/// How long an added participant rings by default.
const DEFAULT_INVITATION_TIMEOUT: u32 = 60;
/// The most targets of a group call (`POST /v1/calls`).
const MAX_GROUP_TARGETS: usize = 8;
/// The most participants of a call connection (ringing ones included).
const MAX_PARTICIPANTS: usize = 16;

/// Runs `f` on the engine's driver; a stopped runtime is a 503.
async fn on_engine<T: Send + 'static>(
    shared: &Arc<Shared>,
    f: impl FnOnce(&mut Engine, Instant) -> ApiResult<T> + Send + 'static,
) -> ApiResult<T> {
    shared
        .tandem
        .with_engine(f)
        .await
        .map_err(|_| Problem::unavailable("the Tandem runtime has stopped"))?
}

fn call_not_found(id: &str) -> Problem {
    Problem::not_found(
        "call-not-found",
        format!("no call connection has the id `{id}`"),
    )
}

/// 405 with the methods the path takes (RFC 9110 §15.5.6).
fn method_not_allowed(allow: &'static str) -> Response {
    let mut response = Problem::method_not_allowed().into_response();
    response
        .headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static(allow));
    response
}

/// Splits `abc:verb` into the id and the verb.
fn split_action(segment: &str) -> Option<(&str, &str)> {
    let (id, verb) = segment.rsplit_once(':')?;
    (!id.is_empty() && !verb.is_empty()).then_some((id, verb))
}

// ---- routing of the `{id}:verb` paths

/// `POST /v1/calls/{callConnectionId}:<verb>`.
pub(crate) async fn call_action(
    State(shared): State<Arc<Shared>>,
    Path(segment): Path<String>,
    request: Request,
) -> Response {
    let Some((id, verb)) = split_action(&segment) else {
        // `POST /v1/calls/{id}`: the path is a call's, which takes GET only.
        return method_not_allowed("GET,HEAD");
    };
    let id = id.to_owned();
    let result = match verb {
        "hangup" => with_body(request, shared, id, hangup).await,
        "transferToParticipant" => with_body(request, shared, id, transfer).await,
        "park" => with_body(request, shared, id, park).await,
        "play" => with_body(request, shared, id, play).await,
        "sendDtmf" => with_body(request, shared, id, send_dtmf).await,
        _ => Err(Problem::not_found(
            "no-such-action",
            format!("`{verb}` is not an action of a call"),
        )),
    };
    result.unwrap_or_else(IntoResponse::into_response)
}

/// `GET /v1/calls/{callConnectionId}/participants` and
/// `POST /v1/calls/{callConnectionId}/participants:<verb>`.
pub(crate) async fn participants_action(
    State(shared): State<Arc<Shared>>,
    Path((id, segment)): Path<(String, String)>,
    request: Request,
) -> Response {
    let verb = match segment.strip_prefix("participants:") {
        Some(verb) => verb,
        None if segment == "participants" => return method_not_allowed("GET,HEAD"),
        None => {
            return Problem::not_found("no-such-route", "no such path").into_response();
        }
    };
    let result = match verb {
        "add" => with_body(request, shared, id, add_participant).await,
        "remove" => with_body(request, shared, id, remove_participant).await,
        "cancelAddParticipant" => with_body(request, shared, id, cancel_add_participant).await,
        "hold" => with_body(request, shared, id, hold).await,
        "unhold" => with_body(request, shared, id, unhold).await,
        "mute" => with_body(request, shared, id, mute_participants).await,
        "unmute" => with_body(request, shared, id, unmute_participants).await,
        _ => Err(Problem::not_found(
            "no-such-action",
            format!("`{verb}` is not an action on participants"),
        )),
    };
    result.unwrap_or_else(IntoResponse::into_response)
}

pub(crate) async fn participants_get(
    State(shared): State<Arc<Shared>>,
    Path((id, segment)): Path<(String, String)>,
) -> Response {
    if segment != "participants" {
        return Problem::not_found("no-such-route", "no such path").into_response();
    }
    list_participants(shared, id)
        .await
        .map(IntoResponse::into_response)
        .unwrap_or_else(IntoResponse::into_response)
}

/// Runs the action `action` of call `id` on the request's JSON body (read as the
/// action's request type).
async fn with_body<T, R, F, Fut>(
    request: Request,
    shared: Arc<Shared>,
    id: String,
    action: F,
) -> ApiResult<Response>
where
    T: serde::de::DeserializeOwned,
    R: IntoResponse,
    F: FnOnce(Arc<Shared>, String, T) -> Fut,
    Fut: std::future::Future<Output = ApiResult<R>>,
{
    let body = body::<T>(request, &shared).await?;
    action(shared, id, body)
        .await
        .map(IntoResponse::into_response)
}

async fn body<T: serde::de::DeserializeOwned>(
    request: Request,
    shared: &Arc<Shared>,
) -> ApiResult<T> {
    ApiJson::<T>::from_request(request, shared)
        .await
        .map(|ApiJson(b)| b)
}

// ---- create and the reads

fn caller_identity(
    shared: &Shared,
    application: &str,
    caller_id: Option<&Identifier>,
    field: &str,
    display: Option<&String>,
    display_field: &str,
) -> ApiResult<Option<Identity>> {
    if let Some(display) = display
        && (display.len() > MAX_DISPLAY_NAME || display.chars().any(char::is_control))
    {
        return Err(Problem::invalid_field(
            display_field,
            format!("at most {MAX_DISPLAY_NAME} bytes, no control characters"),
        ));
    }
    let owner = shared
        .applications
        .get(application)
        .map(|a| a.owner_uri.clone())
        .unwrap_or_default();
    let uri = match caller_id {
        None => None,
        Some(id) => {
            let uri = validate::uri_of(id, field)?;
            match uri.strip_prefix("tel:") {
                // A number as the user part at the application's host.
                Some(number) => {
                    let host = sip_message::Uri::parse(owner.as_bytes())
                        .ok()
                        .and_then(|u| u.as_sip().map(|s| s.host.to_string()))
                        .unwrap_or_else(|| "localhost".into());
                    Some(format!("sip:{number}@{host}"))
                }
                None => Some(uri),
            }
        }
    };
    if uri.is_none() && display.is_none() {
        return Ok(None);
    }
    Ok(Some(Identity {
        uri: uri.unwrap_or(owner),
        display_name: display.cloned(),
    }))
}

/// Places `call` (Idle) to `dial`; on failure the call is forgotten.
fn establish(
    engine: &mut Engine,
    now: Instant,
    call: CallHandle,
    dial: &validate::Dial,
    options: CallEstablishOptions,
    field: &str,
) -> ApiResult<()> {
    let mut options = options;
    options.trunk = dial.trunk.clone();
    if let Err(error) = engine.establish(now, call, &dial.target, options) {
        if let Err(e) = engine.terminate(now, call, CallTerminateOptions::new()) {
            tracing::debug!(error = %e, "unplaced call not cleaned up");
        }
        return Err(Problem::from_call_error(&error, Some(field)));
    }
    Ok(())
}

/// Create a call.
#[utoipa::path(
    post,
    path = "/v1/calls",
    tag = "calls",
    request_body = CreateCallRequest,
    responses(
        (status = 201, description = "The call is being placed: `CallConnected` or `CreateCallFailed` follows", body = CallConnectionProperties),
        (status = 400, description = "Malformed JSON, an unknown field, a wrong type, a custom context limit", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No or a wrong bearer token", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "The body is too large", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "The body is not application/json", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "An unknown application, a bad target (the field names which), more than 8 targets", body = Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn create_call(
    State(shared): State<Arc<Shared>>,
    ApiJson(body): ApiJson<CreateCallRequest>,
) -> ApiResult<Response> {
    validate::operation(
        body.operation_context.as_ref(),
        body.operation_callback_uri.as_ref(),
    )?;
    let Some(app) = shared.applications.get(&body.application).cloned() else {
        return Err(Problem::unprocessable(
            Some("application"),
            format!("no application is configured as `{}`", body.application),
        ));
    };
    if body.targets.is_empty() {
        return Err(Problem::unprocessable(
            Some("targets"),
            "one target is needed",
        ));
    }
    if body.targets.len() > MAX_GROUP_TARGETS {
        return Err(Problem::unprocessable(
            Some("targets"),
            format!("a group call has at most {MAX_GROUP_TARGETS} targets"),
        ));
    }
    let mut dials = Vec::with_capacity(body.targets.len());
    for (i, target) in body.targets.iter().enumerate() {
        dials.push(validate::dial(
            target,
            &format!("targets[{i}]"),
            &shared.config,
        )?);
    }
    let headers = validate::custom_context(
        body.custom_context.as_ref(),
        "customContext",
        &shared.config,
    )?;
    let timeout = validate::seconds(
        body.invitation_timeout_in_seconds,
        "invitationTimeoutInSeconds",
        600,
    )?;
    let impersonation = caller_identity(
        &shared,
        &app.name,
        body.caller_id.as_ref(),
        "callerId",
        body.caller_display_name.as_ref(),
        "callerDisplayName",
    )?;
    let mut options = CallEstablishOptions::new();
    options.headers = headers;
    options.max_establish_time = timeout;
    let op = Op::new(body.operation_context, body.operation_callback_uri);
    let targets = body.targets;
    let books = shared.clone();
    let view = on_engine(&shared, move |engine, now| {
        let group = targets.len() > 1;
        // On the books before the INVITEs go: their events follow this job.
        let mut book = books.book();
        let mut connection =
            Connection::new(new_id(), app.name.clone(), CallDirection::Outbound, op);
        connection.group = group;
        let role = if group { Role::Target } else { Role::Initial };
        for (i, (target, dial)) in targets.into_iter().zip(&dials).enumerate() {
            let placed = (|| {
                let settings = ConversationSettings {
                    impersonation: impersonation.clone(),
                    ..ConversationSettings::default()
                };
                let conversation = engine
                    .new_conversation(app.endpoint, settings)
                    .map_err(|e| Problem::from_call_error(&e, None))?;
                let call = engine
                    .new_call(conversation, CallKind::AudioVideo)
                    .map_err(|e| Problem::from_call_error(&e, None))?;
                establish(
                    engine,
                    now,
                    call,
                    dial,
                    options.clone(),
                    &format!("targets[{i}]"),
                )?;
                Ok(call)
            })();
            let call = match placed {
                Ok(call) => call,
                Err(problem) => {
                    // All or nothing: the targets already called are hung up, unseen.
                    for p in &connection.participants {
                        book.by_call.remove(&p.call);
                        if let Err(e) = engine.terminate(now, p.call, CallTerminateOptions::new()) {
                            tracing::debug!(error = %e, "unplaced call not cleaned up");
                        }
                    }
                    return Err(problem);
                }
            };
            let mut participant = Participant::new(call, target, role.clone());
            participant.sip_call_id = engine.sip_call_id(call);
            if connection.correlation_id.is_none() {
                connection.correlation_id = participant.sip_call_id.clone();
            }
            book.by_call.insert(
                call,
                Tracked::Participant {
                    connection: connection.id.clone(),
                    participant: participant.id.clone(),
                },
            );
            connection.participants.push(participant);
        }
        if group {
            // The room is there from the start: each target joins it as it answers.
            connection.room = Some(engine.new_room());
        }
        let view = connection.view();
        book.connections.insert(connection.id.clone(), connection);
        Ok(view)
    })
    .await?;
    let mut headers = HeaderMap::new();
    if let Ok(location) = HeaderValue::from_str(&format!("/v1/calls/{}", view.call_connection_id)) {
        headers.insert(header::LOCATION, location);
    }
    Ok((StatusCode::CREATED, headers, Json(view)).into_response())
}

/// List the call connections.
#[utoipa::path(
    get,
    path = "/v1/calls",
    tag = "calls",
    responses(
        (status = 200, description = "Every call connection of every application", body = CallConnectionList),
        (status = 401, description = "No or a wrong bearer token", body = Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn list_calls(State(shared): State<Arc<Shared>>) -> Json<CallConnectionList> {
    let book = shared.book();
    let mut value: Vec<CallConnectionProperties> = book
        .connections
        .values()
        .filter(|c| !c.detached)
        .map(Connection::view)
        .collect();
    value.sort_by(|a, b| {
        a.created_at
            .cmp(&b.created_at)
            .then(a.call_connection_id.cmp(&b.call_connection_id))
    });
    Json(CallConnectionList { value })
}

/// Get a call connection's properties.
#[utoipa::path(
    get,
    path = "/v1/calls/{callConnectionId}",
    tag = "calls",
    params(("callConnectionId" = String, Path, description = "The call connection")),
    responses(
        (status = 200, description = "State, participants, the SIP Call-ID as correlationId, createdAt", body = CallConnectionProperties),
        (status = 401, description = "No or a wrong bearer token", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such call connection", body = Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn get_call(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<String>,
) -> Response {
    let book = shared.book();
    match book.visible(&id) {
        Some(connection) => Json(connection.view()).into_response(),
        None => call_not_found(&id).into_response(),
    }
}

/// List a call's participants.
#[utoipa::path(
    get,
    path = "/v1/calls/{callConnectionId}/participants",
    tag = "participants",
    params(("callConnectionId" = String, Path, description = "The call connection")),
    responses(
        (status = 200, description = "The participants, invitations still ringing among them", body = ParticipantList),
        (status = 401, description = "No or a wrong bearer token", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such call connection", body = Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn list_participants(
    shared: Arc<Shared>,
    id: String,
) -> ApiResult<Json<ParticipantList>> {
    let book = shared.book();
    let connection = book.visible(&id).ok_or_else(|| call_not_found(&id))?;
    Ok(Json(ParticipantList {
        value: connection
            .participants
            .iter()
            .map(Participant::view)
            .collect(),
    }))
}

/// Get a participant.
#[utoipa::path(
    get,
    path = "/v1/calls/{callConnectionId}/participants/{participantId}",
    tag = "participants",
    params(
        ("callConnectionId" = String, Path, description = "The call connection"),
        ("participantId" = String, Path, description = "The participant"),
    ),
    responses(
        (status = 200, description = "The participant", body = CallParticipant),
        (status = 401, description = "No or a wrong bearer token", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such call connection or participant", body = Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn get_participant(
    State(shared): State<Arc<Shared>>,
    Path((id, participant)): Path<(String, String)>,
) -> Response {
    let book = shared.book();
    let Some(connection) = book.visible(&id) else {
        return call_not_found(&id).into_response();
    };
    match connection.participant(&participant) {
        Some(p) => Json(p.view()).into_response(),
        None => Problem::not_found(
            "participant-not-found",
            format!("the call has no participant `{participant}`"),
        )
        .into_response(),
    }
}

// ---- incoming calls

/// The incoming call behind a context, or why there is none (404 unknown, 409 settled).
fn pending_incoming(book: &crate::state::Book, token: &str) -> ApiResult<crate::state::Incoming> {
    if let Some(incoming) = book.incoming.get(token) {
        return Ok(incoming.clone());
    }
    Err(match book.settled.get(token) {
        Some(how) => Problem::conflict(how.describe()),
        None => Problem::not_found(
            "incoming-call-not-found",
            "no incoming call has this incomingCallContext",
        )
        .with_field("incomingCallContext"),
    })
}

/// Answer an incoming call.
#[utoipa::path(
    post,
    path = "/v1/calls:answer",
    tag = "incoming calls",
    request_body = AnswerCallRequest,
    responses(
        (status = 200, description = "Answered (200 OK sent): `CallConnected` follows at the ACK, or `AnswerFailed`", body = CallConnectionProperties),
        (status = 400, description = "Malformed JSON, an unknown field, a wrong type", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No or a wrong bearer token", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No incoming call has this context", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Already answered, rejected, redirected, timed out or ended", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "The body is too large", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "The body is not application/json", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Semantically invalid (the field is named)", body = Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn answer(
    State(shared): State<Arc<Shared>>,
    ApiJson(body): ApiJson<AnswerCallRequest>,
) -> ApiResult<Json<CallConnectionProperties>> {
    validate::operation(
        body.operation_context.as_ref(),
        body.operation_callback_uri.as_ref(),
    )?;
    let op = Op::new(body.operation_context, body.operation_callback_uri);
    let token = body.incoming_call_context;
    let books = shared.clone();
    let view = on_engine(&shared, move |engine, now| {
        let mut book = books.book();
        let incoming = pending_incoming(&book, &token)?;
        engine
            .accept(now, incoming.call, CallAcceptOptions::new())
            .map_err(|e| Problem::from_call_error(&e, None))?;
        book.incoming.remove(&token);
        book.settle(token, Settled::Answered);
        let mut connection =
            Connection::new(new_id(), incoming.application, CallDirection::Inbound, op);
        let mut participant = Participant::new(incoming.call, incoming.from, Role::Initial);
        participant.sip_call_id = incoming.sip_call_id.clone();
        connection.correlation_id = incoming.sip_call_id;
        book.by_call.insert(
            incoming.call,
            Tracked::Participant {
                connection: connection.id.clone(),
                participant: participant.id.clone(),
            },
        );
        connection.participants.push(participant);
        let view = connection.view();
        book.connections.insert(connection.id.clone(), connection);
        Ok(view)
    })
    .await?;
    Ok(Json(view))
}

/// Reject an incoming call.
#[utoipa::path(
    post,
    path = "/v1/calls:reject",
    tag = "incoming calls",
    request_body = RejectCallRequest,
    responses(
        (status = 204, description = "Rejected: `none` 603, `busy` 486, `forbidden` 403, or `sipStatus`"),
        (status = 400, description = "Malformed JSON, an unknown field, a wrong type", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No or a wrong bearer token", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No incoming call has this context", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Already answered, rejected, redirected, timed out or ended", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "A status outside 400-699, or both a reason and a status", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "The body is larger than the configured limit", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "The body is not application/json", body = Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn reject(
    State(shared): State<Arc<Shared>>,
    ApiJson(body): ApiJson<RejectCallRequest>,
) -> ApiResult<StatusCode> {
    validate::operation_context(body.operation_context.as_ref())?;
    let status = match (body.call_reject_reason, body.sip_status) {
        (Some(_), Some(_)) => {
            return Err(Problem::unprocessable(
                Some("sipStatus"),
                "give callRejectReason or sipStatus, not both",
            ));
        }
        (Some(CallRejectReason::Busy), None) => 486,
        (Some(CallRejectReason::Forbidden), None) => 403,
        (Some(CallRejectReason::None) | None, None) => 603,
        (None, Some(status)) if (400..=699).contains(&status) => status,
        (None, Some(status)) => {
            return Err(Problem::unprocessable(
                Some("sipStatus"),
                format!("{status} is not a final 4xx-6xx status"),
            ));
        }
    };
    let token = body.incoming_call_context;
    let books = shared.clone();
    on_engine(&shared, move |engine, now| {
        let mut book = books.book();
        let incoming = pending_incoming(&book, &token)?;
        engine
            .decline(now, incoming.call, CallDeclineOptions::new(status))
            .map_err(|e| Problem::from_call_error(&e, Some("sipStatus")))?;
        book.incoming.remove(&token);
        book.by_call.remove(&incoming.call);
        book.settle(token, Settled::Rejected);
        Ok(())
    })
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Redirect an incoming call.
#[utoipa::path(
    post,
    path = "/v1/calls:redirect",
    tag = "incoming calls",
    request_body = RedirectCallRequest,
    responses(
        (status = 204, description = "Redirected: 302 with the target as Contact (a number as a tel: URI)"),
        (status = 400, description = "Malformed JSON, an unknown field, a wrong type", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No or a wrong bearer token", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No incoming call has this context", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Already answered, rejected, redirected, timed out or ended", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "A bad target", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "The body is larger than the configured limit", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "The body is not application/json", body = Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn redirect(
    State(shared): State<Arc<Shared>>,
    ApiJson(body): ApiJson<RedirectCallRequest>,
) -> ApiResult<StatusCode> {
    validate::operation_context(body.operation_context.as_ref())?;
    let target = validate::uri_of(&body.target, "target")?;
    let token = body.incoming_call_context;
    let books = shared.clone();
    on_engine(&shared, move |engine, now| {
        let mut book = books.book();
        let incoming = pending_incoming(&book, &token)?;
        engine
            .forward(now, incoming.call, &target, CallForwardOptions::new())
            .map_err(|e| Problem::from_call_error(&e, Some("target")))?;
        book.incoming.remove(&token);
        book.by_call.remove(&incoming.call);
        book.settle(token, Settled::Redirected);
        Ok(())
    })
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

// ---- actions on a call

/// Hang up.
#[utoipa::path(
    post,
    path = "/v1/calls/{callConnectionId}:hangup",
    tag = "calls",
    params(("callConnectionId" = String, Path, description = "The call connection")),
    request_body = HangupRequest,
    responses(
        (status = 204, description = "Hanging up: `CallDisconnected` follows"),
        (status = 400, description = "Malformed JSON, an unknown field, a wrong type", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No or a wrong bearer token", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such call connection", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Already hanging up", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "The body is larger than the configured limit", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "The body is not application/json", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Semantically invalid (the field is named)", body = Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn hangup(
    shared: Arc<Shared>,
    id: String,
    body: HangupRequest,
) -> ApiResult<StatusCode> {
    validate::operation(
        body.operation_context.as_ref(),
        body.operation_callback_uri.as_ref(),
    )?;
    let op = Op::new(body.operation_context, body.operation_callback_uri);
    let books = shared.clone();
    on_engine(&shared, move |engine, now| {
        let mut book = books.book();
        let connection = book.visible_mut(&id).ok_or_else(|| call_not_found(&id))?;
        if connection.state == ConnectionState::Disconnecting {
            return Err(Problem::conflict("the call is already being hung up"));
        }
        let mut outbox = Outbox::default();
        let talking = connection
            .participants
            .iter()
            .filter(|p| p.ever_connected)
            .count();
        let mut ending: Vec<CallHandle> = Vec::new();
        if !body.for_everyone && talking >= 2 {
            // The application leaves; the two go on until one hangs up.
            connection.detached = true;
            ending.extend(
                connection
                    .participants
                    .iter()
                    .filter(|p| !p.ever_connected)
                    .map(|p| p.call),
            );
            outbox.call_event(
                connection,
                &op,
                "CallDisconnected",
                crate::state::ok("the application left the call"),
                serde_json::json!({}),
            );
        } else {
            connection.state = ConnectionState::Disconnecting;
            connection.hangup = Some(op);
            ending.extend(connection.participants.iter().map(|p| p.call));
        }
        for call in ending {
            if let Err(error) = engine.terminate(now, call, CallTerminateOptions::new()) {
                tracing::info!(%error, %call, "hang-up refused");
            }
        }
        // Published under the book's lock: in order with the follower's events.
        books.publish(outbox);
        Ok(())
    })
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Transfer to a participant.
#[utoipa::path(
    post,
    path = "/v1/calls/{callConnectionId}:transferToParticipant",
    tag = "calls",
    params(("callConnectionId" = String, Path, description = "The call connection")),
    request_body = TransferToParticipantRequest,
    responses(
        (status = 202, description = "The REFER is out: `CallTransferAccepted` or `CallTransferFailed` follows, with the target's final SIP status", body = OperationAccepted),
        (status = 400, description = "Malformed JSON, an unknown field, a wrong type, a custom context limit", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No or a wrong bearer token", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such call connection", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "A transfer is in progress, or the participant is not connected", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "A bad target, or no such transferee", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "The body is larger than the configured limit", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "The body is not application/json", body = Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn transfer(
    shared: Arc<Shared>,
    id: String,
    body: TransferToParticipantRequest,
) -> ApiResult<(StatusCode, Json<OperationAccepted>)> {
    validate::operation(
        body.operation_context.as_ref(),
        body.operation_callback_uri.as_ref(),
    )?;
    let target = validate::uri_of(&body.target_participant, "targetParticipant")?;
    if let Some(transferee) = &body.transferee {
        validate::identifier(transferee, "transferee")?;
    }
    let headers = validate::custom_context(
        body.custom_context.as_ref(),
        "customContext",
        &shared.config,
    )?;
    let mut options = CallTransferOptions::new();
    for h in headers {
        if h.name == "User-to-User" {
            options.user_to_user = Some(h.value);
        } else {
            options.headers.push(h);
        }
    }
    let op = Op::new(body.operation_context.clone(), body.operation_callback_uri);
    let books = shared.clone();
    on_engine(&shared, move |engine, now| {
        let mut book = books.book();
        let connection = book.visible_mut(&id).ok_or_else(|| call_not_found(&id))?;
        if connection.transfer.is_some() {
            return Err(Problem::conflict("a transfer of this call is in progress"));
        }
        if connection.state == ConnectionState::Disconnecting {
            return Err(Problem::conflict("the call is being hung up"));
        }
        let participant = connection
            .choose(body.transferee.as_ref())
            .map_err(|problem| Problem::unprocessable(Some("transferee"), problem))?;
        if participant.state != ParticipantState::Connected {
            return Err(Problem::conflict(format!(
                "the participant is not connected (it is {})",
                participant.view().state
            )));
        }
        let (call, pid) = (participant.call, participant.id.clone());
        let transfer = engine
            .transfer(now, call, &target, options)
            .map_err(|e| Problem::from_call_error(&e, Some("targetParticipant")))?;
        connection.transfer = Some(TransferOp {
            id: transfer,
            participant: pid.clone(),
            target: body.target_participant,
            op,
        });
        connection.state = ConnectionState::Transferring;
        if let Some(p) = connection.participant_mut(&pid) {
            p.state = ParticipantState::Transferring;
        }
        Ok(())
    })
    .await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(OperationAccepted {
            operation_context: body.operation_context,
        }),
    ))
}

/// Add a participant.
#[utoipa::path(
    post,
    path = "/v1/calls/{callConnectionId}/participants:add",
    tag = "participants",
    params(("callConnectionId" = String, Path, description = "The call connection")),
    request_body = AddParticipantRequest,
    responses(
        (status = 202, description = "The new participant is being called; once it answers it joins the call's conference room with the others (the room is made when the call had one participant): `AddParticipantSucceeded` or `AddParticipantFailed`, then `ParticipantsUpdated`", body = AddParticipantResponse),
        (status = 400, description = "Malformed JSON, an unknown field, a wrong type, a custom context limit", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No or a wrong bearer token", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such call connection", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The call is not connected", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "A bad participant, or more than 16 participants", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "The body is larger than the configured limit", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "The body is not application/json", body = Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn add_participant(
    shared: Arc<Shared>,
    id: String,
    body: AddParticipantRequest,
) -> ApiResult<(StatusCode, Json<AddParticipantResponse>)> {
    validate::operation(
        body.operation_context.as_ref(),
        body.operation_callback_uri.as_ref(),
    )?;
    let dial = validate::dial(&body.participant_to_add, "participantToAdd", &shared.config)?;
    let headers = validate::custom_context(
        body.custom_context.as_ref(),
        "customContext",
        &shared.config,
    )?;
    let timeout = validate::seconds(
        Some(
            body.invitation_timeout_in_seconds
                .unwrap_or(DEFAULT_INVITATION_TIMEOUT),
        ),
        "invitationTimeoutInSeconds",
        180,
    )?;
    let application = {
        let book = shared.book();
        book.visible(&id)
            .map(|c| c.application.clone())
            .ok_or_else(|| call_not_found(&id))?
    };
    let Some(app) = shared.applications.get(&application).cloned() else {
        return Err(call_not_found(&id));
    };
    let impersonation = caller_identity(
        &shared,
        &application,
        body.source_caller_id_number.as_ref(),
        "sourceCallerIdNumber",
        body.source_display_name.as_ref(),
        "sourceDisplayName",
    )?;
    let mut options = CallEstablishOptions::new();
    options.headers = headers;
    options.max_establish_time = timeout;
    let op = Op::new(body.operation_context.clone(), body.operation_callback_uri);
    let identifier = body.participant_to_add;
    let context = body.operation_context;
    let books = shared.clone();
    let answer = on_engine(&shared, move |engine, now| {
        let mut book = books.book();
        let connection = book.visible_mut(&id).ok_or_else(|| call_not_found(&id))?;
        if connection.state != ConnectionState::Connected {
            return Err(Problem::conflict(
                "participants can be added to a connected call only",
            ));
        }
        if connection.participants.len() >= MAX_PARTICIPANTS {
            return Err(Problem::unprocessable(
                Some("participantToAdd"),
                format!("a call has at most {MAX_PARTICIPANTS} participants"),
            ));
        }
        if !connection
            .participants
            .iter()
            .any(|p| p.state == ParticipantState::Connected)
        {
            return Err(Problem::conflict("no participant of the call is connected"));
        }
        let settings = ConversationSettings {
            impersonation,
            ..ConversationSettings::default()
        };
        let conversation = engine
            .new_conversation(app.endpoint, settings)
            .map_err(|e| Problem::from_call_error(&e, None))?;
        let call = engine
            .new_call(conversation, CallKind::AudioVideo)
            .map_err(|e| Problem::from_call_error(&e, None))?;
        establish(engine, now, call, &dial, options, "participantToAdd")?;
        let invitation = new_id();
        let mut participant = Participant::new(
            call,
            identifier,
            Role::Invited {
                invitation: invitation.clone(),
                op,
                cancel: None,
            },
        );
        participant.sip_call_id = engine.sip_call_id(call);
        let view = participant.view();
        let tracked = Tracked::Participant {
            connection: connection.id.clone(),
            participant: participant.id.clone(),
        };
        connection.participants.push(participant);
        book.by_call.insert(call, tracked);
        Ok(AddParticipantResponse {
            participant: view,
            invitation_id: invitation,
            operation_context: context,
        })
    })
    .await?;
    Ok((StatusCode::ACCEPTED, Json(answer)))
}

/// Cancel adding a participant.
#[utoipa::path(
    post,
    path = "/v1/calls/{callConnectionId}/participants:cancelAddParticipant",
    tag = "participants",
    params(("callConnectionId" = String, Path, description = "The call connection")),
    request_body = CancelAddParticipantRequest,
    responses(
        (status = 202, description = "Cancelling (CANCEL sent): `CancelAddParticipantSucceeded`, or `CancelAddParticipantFailed` when the invitation was already over", body = CancelAddParticipantResponse),
        (status = 400, description = "Malformed JSON, an unknown field, a wrong type", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No or a wrong bearer token", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such call connection or invitation", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "A cancel of this invitation is in progress", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "The body is larger than the configured limit", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "The body is not application/json", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Semantically invalid (the field is named)", body = Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn cancel_add_participant(
    shared: Arc<Shared>,
    id: String,
    body: CancelAddParticipantRequest,
) -> ApiResult<(StatusCode, Json<CancelAddParticipantResponse>)> {
    validate::operation(
        body.operation_context.as_ref(),
        body.operation_callback_uri.as_ref(),
    )?;
    let op = Op::new(body.operation_context.clone(), body.operation_callback_uri);
    let invitation = body.invitation_id.clone();
    let books = shared.clone();
    on_engine(&shared, move |engine, now| {
        let mut book = books.book();
        let connection = book.visible_mut(&id).ok_or_else(|| call_not_found(&id))?;
        let mut outbox = Outbox::default();
        let ringing = connection
            .participants
            .iter_mut()
            .find(|p| matches!(&p.role, Role::Invited { invitation: i, .. } if *i == invitation));
        match ringing {
            // Its failure already reported (the call is ending): nothing left to cancel.
            Some(p) if !p.ever_connected && !p.failure_reported => {
                let call = p.call;
                if let Role::Invited { cancel, .. } = &mut p.role {
                    if cancel.is_some() {
                        return Err(Problem::conflict(
                            "this invitation is already being cancelled",
                        ));
                    }
                    *cancel = Some(op.clone());
                }
                if let Err(error) = engine.terminate(now, call, CallTerminateOptions::new()) {
                    // Already ending on its own: it will not end by this cancel.
                    tracing::info!(%error, %call, "cancel refused");
                    if let Role::Invited { cancel, .. } = &mut p.role {
                        *cancel = None;
                    }
                    outbox.call_event(
                        connection,
                        &op,
                        "CancelAddParticipantFailed",
                        failed(409, "the invitation is already over"),
                        serde_json::json!({ "invitationId": invitation }),
                    );
                }
            }
            Some(p) if !p.ever_connected => outbox.call_event(
                connection,
                &op,
                "CancelAddParticipantFailed",
                failed(409, "the invitation is already over"),
                serde_json::json!({ "invitationId": invitation }),
            ),
            Some(_) => outbox.call_event(
                connection,
                &op,
                "CancelAddParticipantFailed",
                failed(409, "the invitation was already answered"),
                serde_json::json!({ "invitationId": invitation }),
            ),
            None if connection.finished_invitations.contains(&invitation) => outbox.call_event(
                connection,
                &op,
                "CancelAddParticipantFailed",
                failed(409, "the invitation is already over"),
                serde_json::json!({ "invitationId": invitation }),
            ),
            None => {
                return Err(Problem::not_found(
                    "invitation-not-found",
                    format!("the call has no invitation `{invitation}`"),
                )
                .with_field("invitationId"));
            }
        }
        // Published under the book's lock: in order with the follower's events.
        books.publish(outbox);
        Ok(())
    })
    .await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(CancelAddParticipantResponse {
            invitation_id: body.invitation_id,
            operation_context: body.operation_context,
        }),
    ))
}

/// Remove a participant.
#[utoipa::path(
    post,
    path = "/v1/calls/{callConnectionId}/participants:remove",
    tag = "participants",
    params(("callConnectionId" = String, Path, description = "The call connection")),
    request_body = RemoveParticipantRequest,
    responses(
        (status = 202, description = "Hanging up the participant: `RemoveParticipantSucceeded` follows, then `ParticipantsUpdated` (or `CallDisconnected` for the last one); `RemoveParticipantFailed` when its call was already ending (its own hang-up, a cancel, a transfer) or ended otherwise than by the remove", body = OperationAccepted),
        (status = 400, description = "Malformed JSON, an unknown field, a wrong type", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No or a wrong bearer token", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such call connection", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The participant is already being removed", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "No participant has this identifier", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "The body is larger than the configured limit", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "The body is not application/json", body = Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn remove_participant(
    shared: Arc<Shared>,
    id: String,
    body: RemoveParticipantRequest,
) -> ApiResult<(StatusCode, Json<OperationAccepted>)> {
    validate::operation(
        body.operation_context.as_ref(),
        body.operation_callback_uri.as_ref(),
    )?;
    validate::identifier(&body.participant_to_remove, "participantToRemove")?;
    let op = Op::new(body.operation_context.clone(), body.operation_callback_uri);
    let who = body.participant_to_remove;
    let books = shared.clone();
    on_engine(&shared, move |engine, now| {
        let mut book = books.book();
        let connection = book.visible_mut(&id).ok_or_else(|| call_not_found(&id))?;
        let Some(p) = connection
            .participants
            .iter_mut()
            .find(|p| p.identifier == who)
        else {
            return Err(Problem::unprocessable(
                Some("participantToRemove"),
                "no participant of the call has this identifier",
            ));
        };
        if p.removing.is_some() {
            return Err(Problem::conflict(
                "the participant is already being removed",
            ));
        }
        // The participant's call already ending (its BYE came in, a cancel or a
        // transfer is ending it) or gone, and the books not there yet: the remove
        // cannot do it, and says so (RemoveParticipantFailed).
        let ending = match engine.call_state(p.call) {
            None => Some("the participant's call is already over"),
            Some(CallState::Terminating | CallState::Terminated) => {
                Some("the participant's call is already ending")
            }
            Some(_) => None,
        };
        if let Some(why) = ending {
            let view = p.view();
            let mut outbox = Outbox::default();
            outbox.call_event(
                connection,
                &op,
                "RemoveParticipantFailed",
                failed(487, why),
                serde_json::json!({ "participant": view }),
            );
            books.publish(outbox);
            return Ok(());
        }
        // Out of the room at once: the others stop hearing it before its BYE is done.
        if engine.room_of(p.call).is_some()
            && let Err(error) = engine.leave_room(now, p.call)
        {
            tracing::debug!(%error, "the removed participant did not leave the room");
        }
        engine
            .terminate(now, p.call, CallTerminateOptions::new())
            .map_err(|e| Problem::from_call_error(&e, None))?;
        p.removing = Some(op);
        p.state = ParticipantState::Disconnecting;
        Ok(())
    })
    .await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(OperationAccepted {
            operation_context: body.operation_context,
        }),
    ))
}

/// Hold a participant.
#[utoipa::path(
    post,
    path = "/v1/calls/{callConnectionId}/participants:hold",
    tag = "participants",
    params(("callConnectionId" = String, Path, description = "The call connection")),
    request_body = HoldRequest,
    responses(
        (status = 202, description = "The participant left the call's room and a re-INVITE with a=sendonly is out: `HoldSucceeded` (then `ParticipantsUpdated`, `isOnHold`) or `HoldFailed` (the participant is back in the room)", body = OperationAccepted),
        (status = 400, description = "Malformed JSON, an unknown field, a wrong type", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No or a wrong bearer token", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such call connection", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The participant is not connected, already held, or a hold, unhold or other re-INVITE is in progress", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "No such participant, or a file that cannot be read as WAV", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "The body is larger than the configured limit", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "The body is not application/json", body = Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn hold(
    shared: Arc<Shared>,
    id: String,
    body: HoldRequest,
) -> ApiResult<(StatusCode, Json<OperationAccepted>)> {
    validate::operation(
        body.operation_context.as_ref(),
        body.operation_callback_uri.as_ref(),
    )?;
    validate::identifier(&body.target_participant, "targetParticipant")?;
    let music: Option<Arc<[i16]>> = match &body.file {
        None => None,
        Some(file) => {
            let path = validate::media_file(file, &shared.config)?;
            Some(load_media(path).await?)
        }
    };
    let op = Op::new(body.operation_context.clone(), body.operation_callback_uri);
    let who = body.target_participant;
    let books = shared.clone();
    let call = on_engine(&shared, move |engine, now| {
        let mut book = books.book();
        let connection = book.visible_mut(&id).ok_or_else(|| call_not_found(&id))?;
        let p = connection
            .choose(Some(&who))
            .map_err(|problem| Problem::unprocessable(Some("targetParticipant"), problem))?;
        if p.state != ParticipantState::Connected {
            return Err(Problem::conflict("the participant is not connected"));
        }
        if p.held || p.hold_op.is_some() {
            return Err(Problem::conflict(
                "the participant is on hold, or a hold or unhold of it is in progress",
            ));
        }
        let (call, pid) = (p.call, p.id.clone());
        engine
            .hold(now, call, HoldType::SendOnly)
            .map_err(|e| Problem::from_call_error(&e, Some("targetParticipant")))?;
        if engine.room_of(call).is_some()
            && let Err(error) = engine.leave_room(now, call)
        {
            tracing::debug!(%error, %call, "the held participant did not leave the room");
        }
        if let Some(p) = connection.participant_mut(&pid) {
            p.held = true;
            p.hold_op = Some(HoldOp { op, hold: true });
        }
        Ok(call)
    })
    .await?;
    if let Some(samples) = music
        && let Some(flow) = flow_of(&shared, call)
    {
        if let Err(error) = flow.play(samples, true).await {
            tracing::info!(%error, %call, "no music on hold");
        }
        // The hold may have failed meanwhile (the follower stopped the music before it
        // started): no music for a participant that is not held.
        let still_held = shared
            .book()
            .participant_by_call(call)
            .is_some_and(|p| p.held);
        if !still_held {
            let _ = flow.stop_playing().await;
        }
    }
    Ok((
        StatusCode::ACCEPTED,
        Json(OperationAccepted {
            operation_context: body.operation_context,
        }),
    ))
}

/// Take a participant off hold.
#[utoipa::path(
    post,
    path = "/v1/calls/{callConnectionId}/participants:unhold",
    tag = "participants",
    params(("callConnectionId" = String, Path, description = "The call connection")),
    request_body = UnholdRequest,
    responses(
        (status = 202, description = "A re-INVITE with a=sendrecv is out: `UnholdSucceeded` (the participant is back in the call's room; `ParticipantsUpdated`) or `UnholdFailed` (it stays held)", body = OperationAccepted),
        (status = 400, description = "Malformed JSON, an unknown field, a wrong type", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No or a wrong bearer token", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such call connection", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The participant is not held by the application, or a hold or unhold is in progress", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "No such participant", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "The body is larger than the configured limit", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "The body is not application/json", body = Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn unhold(
    shared: Arc<Shared>,
    id: String,
    body: UnholdRequest,
) -> ApiResult<(StatusCode, Json<OperationAccepted>)> {
    validate::operation(
        body.operation_context.as_ref(),
        body.operation_callback_uri.as_ref(),
    )?;
    validate::identifier(&body.target_participant, "targetParticipant")?;
    let op = Op::new(body.operation_context.clone(), body.operation_callback_uri);
    let who = body.target_participant;
    let books = shared.clone();
    on_engine(&shared, move |engine, now| {
        let mut book = books.book();
        let connection = book.visible_mut(&id).ok_or_else(|| call_not_found(&id))?;
        let p = connection
            .choose(Some(&who))
            .map_err(|problem| Problem::unprocessable(Some("targetParticipant"), problem))?;
        if !p.held || p.hold_op.is_some() {
            return Err(Problem::conflict(
                "the participant is not held by the application, or a hold or unhold of it is in progress",
            ));
        }
        let (call, pid) = (p.call, p.id.clone());
        engine
            .retrieve(now, call)
            .map_err(|e| Problem::from_call_error(&e, Some("targetParticipant")))?;
        if let Some(p) = connection.participant_mut(&pid) {
            p.hold_op = Some(HoldOp { op, hold: false });
        }
        Ok(())
    })
    .await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(OperationAccepted {
            operation_context: body.operation_context,
        }),
    ))
}

/// Mute participants.
#[utoipa::path(
    post,
    path = "/v1/calls/{callConnectionId}/participants:mute",
    tag = "participants",
    params(("callConnectionId" = String, Path, description = "The call connection")),
    request_body = MuteParticipantsRequest,
    responses(
        (status = 200, description = "Muted: the others in the call's room no longer hear them (they still hear the others); `ParticipantsUpdated` with `isMuted` follows when anything changed. Muting a muted participant changes nothing", body = MuteParticipantsResponse),
        (status = 400, description = "Malformed JSON, an unknown field, a wrong type, no target or more than 16", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No or a wrong bearer token", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such call connection", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The call has no conference room (one participant, never added to), or a participant is not connected; nobody's mute changed", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "No such participant, or one named twice; nobody's mute changed", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "The body is larger than the configured limit", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "The body is not application/json", body = Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn mute_participants(
    shared: Arc<Shared>,
    id: String,
    body: MuteParticipantsRequest,
) -> ApiResult<Json<MuteParticipantsResponse>> {
    mute(shared, id, body, true).await
}

/// Unmute participants.
#[utoipa::path(
    post,
    path = "/v1/calls/{callConnectionId}/participants:unmute",
    tag = "participants",
    params(("callConnectionId" = String, Path, description = "The call connection")),
    request_body = MuteParticipantsRequest,
    responses(
        (status = 200, description = "Unmuted: the others hear them again; `ParticipantsUpdated` with `isMuted` follows when anything changed", body = MuteParticipantsResponse),
        (status = 400, description = "Malformed JSON, an unknown field, a wrong type, no target or more than 16", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No or a wrong bearer token", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such call connection", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The call has no conference room, or a participant is not connected; nobody's mute changed", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "No such participant, or one named twice; nobody's mute changed", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "The body is larger than the configured limit", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "The body is not application/json", body = Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn unmute_participants(
    shared: Arc<Shared>,
    id: String,
    body: MuteParticipantsRequest,
) -> ApiResult<Json<MuteParticipantsResponse>> {
    mute(shared, id, body, false).await
}

/// `participants:mute` (`muted`) and `participants:unmute`: all the targets or none.
async fn mute(
    shared: Arc<Shared>,
    id: String,
    body: MuteParticipantsRequest,
    muted: bool,
) -> ApiResult<Json<MuteParticipantsResponse>> {
    validate::operation(
        body.operation_context.as_ref(),
        body.operation_callback_uri.as_ref(),
    )?;
    let op = Op::new(
        body.operation_context.clone(),
        body.operation_callback_uri.clone(),
    );
    if body.target_participants.is_empty() || body.target_participants.len() > 16 {
        return Err(Problem::invalid_field(
            "targetParticipants",
            "name one to 16 participants",
        ));
    }
    for (i, who) in body.target_participants.iter().enumerate() {
        validate::identifier(who, &format!("targetParticipants[{i}]"))?;
    }
    let targets = body.target_participants;
    let books = shared.clone();
    on_engine(&shared, move |engine, _| {
        let mut book = books.book();
        let connection = book.visible_mut(&id).ok_or_else(|| call_not_found(&id))?;
        if connection.room.is_none() {
            return Err(Problem::conflict(
                "the call has no conference room to mute in: mute applies to group calls and \
                 calls a participant was added to",
            ));
        }
        // Every target is checked before anything changes.
        let mut chosen: Vec<(String, CallHandle)> = Vec::with_capacity(targets.len());
        for (i, who) in targets.iter().enumerate() {
            let field = format!("targetParticipants[{i}]");
            let p = connection
                .choose(Some(who))
                .map_err(|problem| Problem::unprocessable(Some(&field), problem))?;
            if chosen.iter().any(|(pid, _)| *pid == p.id) {
                return Err(Problem::unprocessable(
                    Some(&field),
                    "the participant is named twice",
                ));
            }
            if p.state != ParticipantState::Connected {
                return Err(Problem::conflict(format!(
                    "the participant {field} names is not connected"
                )));
            }
            chosen.push((p.id.clone(), p.call));
        }
        let mut changed = false;
        for (pid, call) in chosen {
            engine
                .set_muted(call, muted)
                .map_err(|e| Problem::from_call_error(&e, Some("targetParticipants")))?;
            if let Some(p) = connection.participant_mut(&pid)
                && p.muted != muted
            {
                p.muted = muted;
                changed = true;
            }
        }
        let mut outbox = Outbox::default();
        if changed {
            outbox.participants_updated_by(connection, &op);
        }
        // Published under the book's lock: in order with the follower's events.
        books.publish(outbox);
        Ok(())
    })
    .await?;
    Ok(Json(MuteParticipantsResponse {
        operation_context: body.operation_context,
    }))
}

/// Connect to an existing call.
#[utoipa::path(
    post,
    path = "/v1/calls:connect",
    tag = "calls",
    request_body = ConnectRequest,
    responses(
        (status = 200, description = "The application has the call: its events go to it from now on (`CallConnected` at once when the call is connected, else when it connects; `ConnectFailed` if it never does). An application that had the call gets `CallDisconnected` (the call goes on)", body = CallConnectionProperties),
        (status = 400, description = "Malformed JSON, an unknown field, a wrong type", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No or a wrong bearer token", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such call (`ConnectFailed` is raised too)", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The call is an incoming call waiting for an answer, or it is being hung up", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "An unknown application, not exactly one of callConnectionId and serverCallId, or an instant messaging call (the conversations API has those)", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "The body is larger than the configured limit", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "The body is not application/json", body = Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn connect(
    State(shared): State<Arc<Shared>>,
    ApiJson(body): ApiJson<ConnectRequest>,
) -> ApiResult<Json<CallConnectionProperties>> {
    validate::operation(
        body.operation_context.as_ref(),
        body.operation_callback_uri.as_ref(),
    )?;
    let Some(app) = shared.applications.get(&body.application).cloned() else {
        return Err(Problem::unprocessable(
            Some("application"),
            format!("no application is configured as `{}`", body.application),
        ));
    };
    let key = match (body.call_connection_id, body.server_call_id) {
        (Some(id), None) => ConnectKey::Connection(id),
        (None, Some(call_id)) => ConnectKey::Server(call_id),
        _ => {
            return Err(Problem::unprocessable(
                Some("callConnectionId"),
                "give exactly one of callConnectionId and serverCallId",
            ));
        }
    };
    let op = Op::new(body.operation_context, body.operation_callback_uri);
    let books = shared.clone();
    let failed_key = key.clone();
    let failed_op = op.clone();
    let result = on_engine(&shared, move |engine, _| {
        let mut book = books.book();
        let (view, outbox) = adopt(engine, &mut book, &app.name, &key, op)?;
        books.publish(outbox);
        Ok(view)
    })
    .await;
    match result {
        Ok(view) => Ok(Json(view)),
        Err(problem) => {
            if problem.status() == StatusCode::NOT_FOUND {
                let (subject, data) = match &failed_key {
                    ConnectKey::Connection(id) => (
                        Some(format!("calling/callConnections/{id}")),
                        serde_json::json!({ "callConnectionId": id, "correlationId": null }),
                    ),
                    ConnectKey::Server(call_id) => (
                        None,
                        serde_json::json!({ "callConnectionId": null, "correlationId": call_id }),
                    ),
                };
                let mut data = data;
                if let Some(map) = data.as_object_mut() {
                    map.insert(
                        "operationContext".into(),
                        serde_json::json!(failed_op.context),
                    );
                    map.insert(
                        "resultInformation".into(),
                        serde_json::json!(failed(404, "no such call")),
                    );
                }
                let mut outbox = Outbox::default();
                outbox.events.push(crate::state::Outgoing {
                    application: body.application,
                    callback: failed_op.callback,
                    event_type: "ConnectFailed",
                    subject,
                    data,
                });
                shared.publish(outbox);
            }
            Err(problem)
        }
    }
}

/// How `connect` names the call.
#[derive(Debug, Clone)]
enum ConnectKey {
    Connection(String),
    Server(String),
}

/// `connect`'s work on the engine: the call connection `key` names (or that holds the
/// call it names) goes to `application`; a call of Tandem's the API did not know (with
/// both legs of its bridge) becomes a new call connection of it.
fn adopt(
    engine: &Engine,
    book: &mut crate::state::Book,
    application: &str,
    key: &ConnectKey,
    op: Op,
) -> ApiResult<(CallConnectionProperties, Outbox)> {
    let not_found = || {
        Problem::not_found("call-not-found", "no call has this id").with_field(match key {
            ConnectKey::Connection(_) => "callConnectionId",
            ConnectKey::Server(_) => "serverCallId",
        })
    };
    let mut outbox = Outbox::default();
    // The engine's call(s), when the key is a SIP Call-ID.
    let mut legs = Vec::new();
    let existing = match key {
        ConnectKey::Connection(id) => {
            Some(id.clone()).filter(|id| book.connections.contains_key(id))
        }
        ConnectKey::Server(call_id) => {
            let call = engine.call_by_sip_call_id(call_id).ok_or_else(not_found)?;
            if engine.call_kind(call) != Some(CallKind::AudioVideo) {
                return Err(Problem::unprocessable(
                    Some("serverCallId"),
                    "the call is an instant messaging conversation: the conversations API \
                     handles it",
                ));
            }
            legs.push(call);
            // A bridge is one call of two legs.
            if let Some((bridge, _)) = engine.bridge_of(call)
                && let Some((a, b)) = engine.bridge_legs(bridge)
            {
                legs = vec![a, b];
            }
            let mut owner = None;
            for leg in &legs {
                match book.by_call.get(leg) {
                    Some(Tracked::Incoming(_)) => {
                        return Err(Problem::conflict(
                            "the call is an incoming call waiting for an application: answer it",
                        ));
                    }
                    Some(Tracked::Participant { connection, .. }) => {
                        owner = Some(connection.clone());
                    }
                    None => {}
                }
            }
            owner
        }
    };
    if let Some(id) = existing {
        let connection = book.connections.get_mut(&id).ok_or_else(not_found)?;
        if connection.state == ConnectionState::Disconnecting {
            return Err(Problem::conflict("the call is being hung up"));
        }
        if connection.application != application && !connection.detached {
            outbox.call_event(
                connection,
                &Op::default(),
                "CallDisconnected",
                crate::state::ok(&format!(
                    "the call was connected to application `{application}`"
                )),
                serde_json::json!({}),
            );
        }
        application.clone_into(&mut connection.application);
        connection.detached = false;
        connection.start_op = op.clone();
        // Legs of the call the connection did not have yet join it.
        let tracked: Vec<CallHandle> = legs
            .into_iter()
            .filter(|leg| !book.by_call.contains_key(leg))
            .collect();
        let Some(connection) = book.connections.get_mut(&id) else {
            return Err(not_found());
        };
        for leg in tracked {
            let participant = adopted(engine, leg);
            book.by_call.insert(
                leg,
                Tracked::Participant {
                    connection: id.clone(),
                    participant: participant.id.clone(),
                },
            );
            connection.participants.push(participant);
        }
        if connection.connected {
            outbox.call_event(
                connection,
                &op,
                "CallConnected",
                crate::state::ok("connected"),
                serde_json::json!({}),
            );
            outbox.participants_updated(connection);
        }
        return Ok((connection.view(), outbox));
    }
    if legs.is_empty() {
        return Err(not_found());
    }
    let mut connection = Connection::new(
        new_id(),
        application.to_owned(),
        CallDirection::Inbound,
        op.clone(),
    );
    if let ConnectKey::Server(call_id) = key {
        connection.correlation_id = Some(call_id.clone());
    }
    for leg in legs {
        let participant = adopted(engine, leg);
        book.by_call.insert(
            leg,
            Tracked::Participant {
                connection: connection.id.clone(),
                participant: participant.id.clone(),
            },
        );
        connection.participants.push(participant);
    }
    if connection.participants.iter().any(|p| p.ever_connected) {
        connection.connected = true;
        connection.state = ConnectionState::Connected;
        outbox.call_event(
            &connection,
            &op,
            "CallConnected",
            crate::state::ok("connected"),
            serde_json::json!({}),
        );
        outbox.participants_updated(&mut connection);
    }
    let view = connection.view();
    book.connections.insert(connection.id.clone(), connection);
    Ok((view, outbox))
}

/// A participant for a call `connect` takes over.
fn adopted(engine: &Engine, call: CallHandle) -> Participant {
    // The peer as its INVITE named it; an anonymous URI (RFC 3261 §8.1.1.3) if unknown.
    let identifier = engine
        .remote_party(call)
        .map(|party| crate::follow::identifier_of(&party).0)
        .unwrap_or_else(|| Identifier {
            sip_uri: Some("sip:anonymous@anonymous.invalid".to_owned()),
            phone_number: None,
        });
    let mut participant = Participant::new(call, identifier, Role::Adopted);
    participant.sip_call_id = engine.sip_call_id(call);
    if engine.call_state(call) == Some(calls::CallState::Established) {
        participant.state = ParticipantState::Connected;
        participant.ever_connected = true;
    }
    participant
}

/// Park a participant.
#[utoipa::path(
    post,
    path = "/v1/calls/{callConnectionId}:park",
    tag = "park",
    params(("callConnectionId" = String, Path, description = "The call connection")),
    request_body = ParkRequest,
    responses(
        (status = 200, description = "Parked: the participant hears music on hold; `CallParked` follows", body = ParkResponse),
        (status = 400, description = "Malformed JSON, an unknown field, a wrong type", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No or a wrong bearer token", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such call connection", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The participant is not connected", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "No such participant", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Every park orbit is taken", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "The body is larger than the configured limit", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "The body is not application/json", body = Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn park(
    shared: Arc<Shared>,
    id: String,
    body: ParkRequest,
) -> ApiResult<Json<ParkResponse>> {
    validate::operation(
        body.operation_context.as_ref(),
        body.operation_callback_uri.as_ref(),
    )?;
    if let Some(who) = &body.participant {
        validate::identifier(who, "participant")?;
    }
    let op = Op::new(body.operation_context.clone(), body.operation_callback_uri);
    let context = body.operation_context;
    let who = body.participant;
    let books = shared.clone();
    let answer = on_engine(&shared, move |engine, now| {
        let mut book = books.book();
        let connection = book.visible_mut(&id).ok_or_else(|| call_not_found(&id))?;
        let participant = connection
            .choose(who.as_ref())
            .map_err(|problem| Problem::unprocessable(Some("participant"), problem))?;
        if participant.state != ParticipantState::Connected {
            return Err(Problem::conflict("the participant is not connected"));
        }
        let (call, pid) = (participant.call, participant.id.clone());
        // A member of the call's room leaves it as it is parked.
        let orbit = engine
            .park(now, call)
            .map_err(|e| Problem::from_call_error(&e, Some("participant")))?;
        if let Some(p) = connection.participant_mut(&pid) {
            p.park = Some(op);
        }
        Ok(ParkResponse {
            orbit: orbit.number,
            uri: orbit.uri,
            operation_context: context,
        })
    })
    .await?;
    Ok(Json(answer))
}

/// Retrieve a parked call.
#[utoipa::path(
    post,
    path = "/v1/calls:retrieve",
    tag = "park",
    request_body = RetrieveRequest,
    responses(
        (status = 202, description = "The target is being called; once it answers it is joined to the parked call (`RetrieveSucceeded`, then `ParticipantsUpdated` on the parked call's connection); `RetrieveFailed` (the target's status) when it does not answer, and the call stays parked. Both only for a call the API parked (`callConnectionId` in the answer)", body = RetrieveResponse),
        (status = 400, description = "Malformed JSON, an unknown field, a wrong type", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No or a wrong bearer token", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No call is parked in this orbit", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "A bad target (retrieval dials a SIP URI), or an operationCallbackUri that is not an absolute http URL", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "The body is larger than the configured limit", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "The body is not application/json", body = Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn retrieve(
    State(shared): State<Arc<Shared>>,
    ApiJson(body): ApiJson<RetrieveRequest>,
) -> ApiResult<(StatusCode, Json<RetrieveResponse>)> {
    validate::operation(
        body.operation_context.as_ref(),
        body.operation_callback_uri.as_ref(),
    )?;
    if body.target.phone_number.is_some() {
        return Err(Problem::unprocessable(
            Some("target.phoneNumber"),
            "retrieval dials a SIP URI",
        ));
    }
    let dial = validate::dial(&body.target, "target", &shared.config)?;
    let timeout = validate::seconds(
        body.invitation_timeout_in_seconds,
        "invitationTimeoutInSeconds",
        600,
    )?;
    let orbit = body.orbit;
    let identifier = body.target;
    let context = body.operation_context;
    let op = Op::new(context.clone(), body.operation_callback_uri);
    let books = shared.clone();
    let answer = on_engine(&shared, move |engine, now| {
        let Some(parked) = engine.parked_call(orbit) else {
            return Err(Problem::not_found(
                "orbit-empty",
                format!("no call is parked in orbit {orbit}"),
            )
            .with_field("orbit"));
        };
        let mut target = BridgeTarget::new(dial.target.clone());
        target.timeout = timeout;
        let leg = engine
            .retrieve_parked(now, orbit, target)
            .map_err(|e| Problem::from_call_error(&e, Some("target")))?;
        let mut book = books.book();
        let owner = match book.by_call.get(&parked) {
            Some(Tracked::Participant { connection, .. }) => Some(connection.clone()),
            _ => None,
        };
        let connection_id = owner.and_then(|owner| {
            let connection = book.connections.get_mut(&owner)?;
            let mut participant = Participant::new(leg, identifier, Role::Retriever { orbit, op });
            participant.sip_call_id = engine.sip_call_id(leg);
            let tracked = Tracked::Participant {
                connection: owner.clone(),
                participant: participant.id.clone(),
            };
            connection.participants.push(participant);
            book.by_call.insert(leg, tracked);
            Some(owner)
        });
        Ok(RetrieveResponse {
            call_connection_id: connection_id,
            operation_context: context,
        })
    })
    .await?;
    Ok((StatusCode::ACCEPTED, Json(answer)))
}

/// The participants an action on media names (all connected ones by default). One in
/// the call's room hears what plays to it alone over the room.
fn media_targets(
    connection: &Connection,
    who: Option<&[Identifier]>,
    field: &str,
) -> ApiResult<Vec<CallHandle>> {
    let calls: Vec<CallHandle> = match who {
        None => connection
            .participants
            .iter()
            .filter(|p| p.state == ParticipantState::Connected)
            .map(|p| p.call)
            .collect(),
        Some(list) => {
            let mut calls = Vec::new();
            for (i, id) in list.iter().enumerate() {
                let at = format!("{field}[{i}]");
                validate::identifier(id, &at)?;
                let p = connection
                    .choose(Some(id))
                    .map_err(|problem| Problem::unprocessable(Some(&at), problem))?;
                if p.state != ParticipantState::Connected {
                    return Err(Problem::conflict(format!(
                        "{at}: the participant is not connected"
                    )));
                }
                calls.push(p.call);
            }
            calls
        }
    };
    if calls.is_empty() {
        return Err(Problem::conflict("no participant is connected"));
    }
    Ok(calls)
}

/// Play a file.
#[utoipa::path(
    post,
    path = "/v1/calls/{callConnectionId}:play",
    tag = "media",
    params(("callConnectionId" = String, Path, description = "The call connection")),
    request_body = PlayRequest,
    responses(
        (status = 202, description = "Playing: to everyone in the call's conference room (a group call) unless `playTo` names participants, who hear it alone (over the room). `PlayCompleted` at the end (never for a loop), `PlayCanceled` when a later play replaces it (or the participant joins the room), `PlayFailed` when the call ends first", body = OperationAccepted),
        (status = 400, description = "Malformed JSON, an unknown field, a wrong type", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No or a wrong bearer token", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such call connection", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "No participant is connected (or in the call's room), or no target's media is running", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "The file cannot be read as a WAV file, is not a regular file, is larger than 32 MiB, or is outside the media directory", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "The body is larger than the configured limit", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "The body is not application/json", body = Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn play(
    shared: Arc<Shared>,
    id: String,
    body: PlayRequest,
) -> ApiResult<(StatusCode, Json<OperationAccepted>)> {
    validate::operation(
        body.operation_context.as_ref(),
        body.operation_callback_uri.as_ref(),
    )?;
    let path = validate::media_file(&body.file, &shared.config)?;
    let to_room = {
        let book = shared.book();
        let connection = book.visible(&id).ok_or_else(|| call_not_found(&id))?;
        match (connection.room, &body.play_to) {
            (Some(_), None) => true,
            _ => {
                media_targets(connection, body.play_to.as_deref(), "playTo")?;
                false
            }
        }
    };
    let samples = load_media(path.clone()).await?;
    if to_room {
        let op = Op::new(body.operation_context.clone(), body.operation_callback_uri);
        play_to_room(shared, id, &path, samples.len(), body.looped, op).await?;
        return Ok((
            StatusCode::ACCEPTED,
            Json(OperationAccepted {
                operation_context: body.operation_context,
            }),
        ));
    }
    let op = Op::new(body.operation_context.clone(), body.operation_callback_uri);
    let connection_id = id.clone();
    // Registered before the first command, so no PlayCompleted can come first.
    let (number, targets) = {
        let mut book = shared.book();
        let number = book.next_play;
        book.next_play += 1;
        let connection = book.visible_mut(&id).ok_or_else(|| call_not_found(&id))?;
        let targets = media_targets(connection, body.play_to.as_deref(), "playTo")?;
        let mut outbox = Outbox::default();
        // A call plays one thing at a time: an earlier play of it is replaced.
        let mut canceled = Vec::new();
        for (n, (_, calls)) in connection.plays.iter_mut() {
            calls.retain(|c| !targets.contains(c));
            if calls.is_empty() {
                canceled.push(*n);
            }
        }
        for n in canceled {
            if let Some((earlier, _)) = connection.plays.remove(&n) {
                outbox.call_event(
                    connection,
                    &earlier,
                    "PlayCanceled",
                    failed(487, "replaced by a later play"),
                    serde_json::json!({}),
                );
            }
        }
        connection.plays.insert(number, (op, targets.clone()));
        shared.publish(outbox);
        (number, targets)
    };
    let mut refused = Vec::new();
    for &call in &targets {
        let played = match flow_of(&shared, call) {
            Some(flow) => flow.play(samples.clone(), body.looped).await,
            None => Err(runtime::app::Error::NoFlow),
        };
        if let Err(error) = played {
            tracing::info!(%error, %call, "play refused");
            refused.push(call);
        }
    }
    if !refused.is_empty() {
        // A target whose media refused the play will never complete it: the play goes
        // on for the others; refused by all, it is no play (409, no event).
        let mut book = shared.book();
        if let Some(connection) = book.connections.get_mut(&connection_id)
            && let Some((_, calls)) = connection.plays.get_mut(&number)
        {
            calls.retain(|c| !refused.contains(c));
            if calls.is_empty() {
                connection.plays.remove(&number);
                return Err(Problem::conflict(
                    "the media of the call is not running (not yet answered, or on hold \
                     elsewhere): nothing was played",
                ));
            }
        }
    }
    Ok((
        StatusCode::ACCEPTED,
        Json(OperationAccepted {
            operation_context: body.operation_context,
        }),
    ))
}

/// The largest media file `play` and `hold` read (32 MiB: over half an hour of 8 kHz
/// 16-bit audio).
const MAX_MEDIA_FILE_BYTES: u64 = 32 * 1024 * 1024;

/// Reads a WAV file for `play` or `hold`, off the async threads: a regular file (not a
/// FIFO or device, which could block or never end) of at most [`MAX_MEDIA_FILE_BYTES`].
async fn load_media(path: std::path::PathBuf) -> ApiResult<Arc<[i16]>> {
    tokio::task::spawn_blocking(move || {
        let meta = std::fs::metadata(&path)
            .map_err(|e| Problem::unprocessable(Some("file"), format!("cannot be read: {e}")))?;
        if !meta.is_file() {
            return Err(Problem::unprocessable(Some("file"), "not a regular file"));
        }
        if meta.len() > MAX_MEDIA_FILE_BYTES {
            return Err(Problem::unprocessable(
                Some("file"),
                format!("larger than {MAX_MEDIA_FILE_BYTES} bytes"),
            ));
        }
        runtime::media::load_wav_file(&path)
            .map(Arc::from)
            .map_err(|e| Problem::unprocessable(Some("file"), e.to_string()))
    })
    .await
    .map_err(|_| Problem::internal("the file could not be read"))?
}

/// A play to everyone in the call's room (the application speaks in the conference):
/// [`Engine::play_to_room`]. The media layer reports no end of a room's announcement, so
/// `PlayCompleted` comes when the file's length has passed (8 kHz samples), unless a
/// later play replaced it (`PlayCanceled`) or the call ended (`PlayFailed`).
async fn play_to_room(
    shared: Arc<Shared>,
    id: String,
    path: &std::path::Path,
    samples: usize,
    looped: bool,
    op: Op,
) -> ApiResult<()> {
    let Some(file) = path.to_str().map(str::to_owned) else {
        return Err(Problem::unprocessable(
            Some("file"),
            "the path is not valid UTF-8",
        ));
    };
    let books = shared.clone();
    let connection_id = id.clone();
    let number = on_engine(&shared, move |engine, _| {
        let mut book = books.book();
        let number = book.next_play;
        book.next_play += 1;
        let connection = book.visible_mut(&id).ok_or_else(|| call_not_found(&id))?;
        let Some(room) = connection.room else {
            return Err(Problem::conflict("the call has no conference room"));
        };
        engine
            .play_to_room(room, Some(file), looped)
            .map_err(|_| Problem::conflict("no participant is in the call's room"))?;
        let mut outbox = Outbox::default();
        if let Some((_, earlier)) = connection.room_play.replace((number, op)) {
            outbox.call_event(
                connection,
                &earlier,
                "PlayCanceled",
                failed(487, "replaced by a later play"),
                serde_json::json!({}),
            );
        }
        books.publish(outbox);
        Ok(number)
    })
    .await?;
    if !looped {
        let length = std::time::Duration::from_millis((samples as u64).saturating_mul(1000) / 8000);
        tokio::spawn(async move {
            tokio::time::sleep(length).await;
            let mut outbox = Outbox::default();
            {
                let mut book = shared.book();
                if let Some(connection) = book.connections.get_mut(&connection_id)
                    && let Some((_, op)) = connection.room_play.take_if(|(n, _)| *n == number)
                {
                    outbox.call_event(
                        connection,
                        &op,
                        "PlayCompleted",
                        crate::state::ok("played to the end"),
                        serde_json::json!({}),
                    );
                }
                shared.publish(outbox);
            }
        });
    }
    Ok(())
}

/// The media flow of a participant's call (every participant is an audio/video call).
pub(crate) fn flow_of(shared: &Shared, call: CallHandle) -> Option<runtime::app::AudioVideoFlow> {
    runtime::app::AudioVideoCall::from_incoming(shared.tandem.call(call, CallKind::AudioVideo))
        .map(|av| av.flow())
}

/// Send DTMF.
#[utoipa::path(
    post,
    path = "/v1/calls/{callConnectionId}:sendDtmf",
    tag = "media",
    params(("callConnectionId" = String, Path, description = "The call connection")),
    request_body = SendDtmfRequest,
    responses(
        (status = 202, description = "Sending RFC 4733 events, 100 ms each with 60 ms between: `SendDtmfTonesCompleted` when all went out, `SendDtmfTonesFailed` when the call ends first", body = OperationAccepted),
        (status = 400, description = "Malformed JSON, an unknown field, a wrong type", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No or a wrong bearer token", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such call connection", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The participant's media has not started, or a sendDtmf is in progress", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Not DTMF tones, no such participant, or the peer did not negotiate telephone-event", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "The body is larger than the configured limit", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "The body is not application/json", body = Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn send_dtmf(
    shared: Arc<Shared>,
    id: String,
    body: SendDtmfRequest,
) -> ApiResult<(StatusCode, Json<OperationAccepted>)> {
    validate::operation(
        body.operation_context.as_ref(),
        body.operation_callback_uri.as_ref(),
    )?;
    validate::tones(&body.tones)?;
    let op = Op::new(body.operation_context.clone(), body.operation_callback_uri);
    let call = {
        let mut book = shared.book();
        let connection = book.visible_mut(&id).ok_or_else(|| call_not_found(&id))?;
        let who = body.target_participant.clone().map(|p| vec![p]);
        let targets = media_targets(connection, who.as_deref(), "targetParticipant")?;
        let call = match targets.as_slice() {
            [one] => *one,
            _ => {
                return Err(Problem::unprocessable(
                    Some("targetParticipant"),
                    "the call has several participants: name one",
                ));
            }
        };
        let Some(p) = connection.participants.iter_mut().find(|p| p.call == call) else {
            return Err(call_not_found(&id));
        };
        if p.dtmf.is_some() {
            return Err(Problem::conflict(
                "a sendDtmf of this participant is in progress",
            ));
        }
        // Registered before the tones go, so `DtmfSent` finds it.
        p.dtmf = Some(op);
        call
    };
    let sent = match flow_of(&shared, call) {
        Some(flow) => flow
            .send_dtmf(&body.tones.to_ascii_uppercase())
            .await
            .map_err(|e| Problem::from_runtime(&e, Some("tones"))),
        None => Err(Problem::conflict("the call has no media flow")),
    };
    if let Err(problem) = sent {
        let mut book = shared.book();
        if let Some(Tracked::Participant {
            connection,
            participant,
        }) = book.by_call.get(&call).cloned()
            && let Some(p) = book
                .connections
                .get_mut(&connection)
                .and_then(|c| c.participant_mut(&participant))
        {
            p.dtmf = None;
        }
        return Err(problem);
    }
    Ok((
        StatusCode::ACCEPTED,
        Json(OperationAccepted {
            operation_context: body.operation_context,
        }),
    ))
}
