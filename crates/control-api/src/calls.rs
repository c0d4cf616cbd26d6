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
    CallDirection, Connection, ConnectionState, Op, Outbox, Participant, ParticipantState, Role,
    Settled, Shared, Tracked, TransferOp, failed, new_id,
};
use crate::validate;
use axum::Json;
use axum::extract::{FromRequest, Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use calls::{
    BridgeTarget, CallAcceptOptions, CallDeclineOptions, CallEstablishOptions, CallForwardOptions,
    CallHandle, CallKind, CallTerminateOptions, CallTransferOptions, ConversationSettings, Engine,
    Identity,
};
use std::sync::Arc;
use std::time::Instant;

/// The longest caller display name, in bytes.
const MAX_DISPLAY_NAME: usize = 128;
/// How long an added participant rings by default.
const DEFAULT_INVITATION_TIMEOUT: u32 = 60;

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
        "hangup" => match body(request, &shared).await {
            Ok(b) => hangup(shared, id, b).await.map(IntoResponse::into_response),
            Err(p) => Err(p),
        },
        "transferToParticipant" => match body(request, &shared).await {
            Ok(b) => transfer(shared, id, b)
                .await
                .map(IntoResponse::into_response),
            Err(p) => Err(p),
        },
        "park" => match body(request, &shared).await {
            Ok(b) => park(shared, id, b).await.map(IntoResponse::into_response),
            Err(p) => Err(p),
        },
        "play" => match body(request, &shared).await {
            Ok(b) => play(shared, id, b).await.map(IntoResponse::into_response),
            Err(p) => Err(p),
        },
        "sendDtmf" => match body(request, &shared).await {
            Ok(b) => send_dtmf(shared, id, b)
                .await
                .map(IntoResponse::into_response),
            Err(p) => Err(p),
        },
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
        "add" => match body(request, &shared).await {
            Ok(b) => add_participant(shared, id, b)
                .await
                .map(IntoResponse::into_response),
            Err(p) => Err(p),
        },
        "remove" => match body(request, &shared).await {
            Ok(b) => remove_participant(shared, id, b)
                .await
                .map(IntoResponse::into_response),
            Err(p) => Err(p),
        },
        "cancelAddParticipant" => match body(request, &shared).await {
            Ok(b) => cancel_add_participant(shared, id, b)
                .await
                .map(IntoResponse::into_response),
            Err(p) => Err(p),
        },
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
        (status = 422, description = "An unknown application, a bad target, several targets (a group call needs the media mixer)", body = Problem, content_type = "application/problem+json"),
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
    let target = match body.targets.as_slice() {
        [one] => one.clone(),
        [] => {
            return Err(Problem::unprocessable(
                Some("targets"),
                "one target is needed",
            ));
        }
        _ => {
            return Err(Problem::unprocessable(
                Some("targets"),
                "group calls need the mixer: call one target, then add participants",
            ));
        }
    };
    let dial = validate::dial(&target, "targets[0]", &shared.config)?;
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
    let books = shared.clone();
    let view = on_engine(&shared, move |engine, now| {
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
        // On the books before the INVITE goes: its events follow this job.
        let mut book = books.book();
        establish(engine, now, call, &dial, options, "targets[0]")?;
        let mut connection = Connection::new(new_id(), app.name, CallDirection::Outbound, op);
        let mut participant = Participant::new(call, target, Role::Initial);
        participant.sip_call_id = engine.sip_call_id(call);
        connection.correlation_id = participant.sip_call_id.clone();
        book.by_call.insert(
            call,
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
    let outbox = on_engine(&shared, move |engine, now| {
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
        Ok(outbox)
    })
    .await?;
    shared.publish(outbox);
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
        (status = 202, description = "The new participant is being called; once it answers its media is joined with the participant's (a three-party call with the application): `AddParticipantSucceeded` or `AddParticipantFailed`, then `ParticipantsUpdated`", body = AddParticipantResponse),
        (status = 400, description = "Malformed JSON, an unknown field, a wrong type, a custom context limit", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No or a wrong bearer token", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such call connection", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The call is not connected", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "A bad participant, or a fourth party (needs the media mixer)", body = Problem, content_type = "application/problem+json"),
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
        if connection.participants.len() >= 2 {
            return Err(Problem::unprocessable(
                Some("participantToAdd"),
                "a call of more than two participants (and the application) needs the mixer",
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
    let outbox = on_engine(&shared, move |engine, now| {
        let mut book = books.book();
        let connection = book.visible_mut(&id).ok_or_else(|| call_not_found(&id))?;
        let mut outbox = Outbox::default();
        let ringing = connection
            .participants
            .iter_mut()
            .find(|p| matches!(&p.role, Role::Invited { invitation: i, .. } if *i == invitation));
        match ringing {
            Some(p) if !p.ever_connected => {
                let call = p.call;
                if let Role::Invited { cancel, .. } = &mut p.role {
                    if cancel.is_some() {
                        return Err(Problem::conflict(
                            "this invitation is already being cancelled",
                        ));
                    }
                    *cancel = Some(op);
                }
                if let Err(error) = engine.terminate(now, call, CallTerminateOptions::new()) {
                    tracing::info!(%error, %call, "cancel refused");
                }
            }
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
        Ok(outbox)
    })
    .await?;
    shared.publish(outbox);
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
        (status = 202, description = "Hanging up the participant: `RemoveParticipantSucceeded` follows, then `ParticipantsUpdated` (or `CallDisconnected` for the last one)", body = OperationAccepted),
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
        let joined = connection.joined.filter(|(a, b)| *a == call || *b == call);
        if let Some((a, b)) = joined
            && engine.unjoin_media(a, b).is_ok()
        {
            connection.joined = None;
        }
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
        (status = 202, description = "The target is being called; once it answers it is joined to the parked call (`ParticipantsUpdated` on the parked call's connection)", body = RetrieveResponse),
        (status = 400, description = "Malformed JSON, an unknown field, a wrong type", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No or a wrong bearer token", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No call is parked in this orbit", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "A bad target (retrieval dials a SIP URI)", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "The body is larger than the configured limit", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "The body is not application/json", body = Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn retrieve(
    State(shared): State<Arc<Shared>>,
    ApiJson(body): ApiJson<RetrieveRequest>,
) -> ApiResult<(StatusCode, Json<RetrieveResponse>)> {
    validate::operation_context(body.operation_context.as_ref())?;
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
            let mut participant = Participant::new(leg, identifier, Role::Retriever);
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

/// The participants an action on media names (all connected ones by default); a call
/// whose participants' media is joined cannot be played to without the mixer.
fn media_targets(
    connection: &Connection,
    who: Option<&[Identifier]>,
    field: &str,
) -> ApiResult<Vec<CallHandle>> {
    if connection.joined.is_some() {
        return Err(Problem::conflict(
            "the participants' media is joined: playing to them needs the mixer",
        ));
    }
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
        (status = 202, description = "Playing: `PlayCompleted` at the end (never for a loop), `PlayCanceled` when a later play replaces it, `PlayFailed` when the call ends first", body = OperationAccepted),
        (status = 400, description = "Malformed JSON, an unknown field, a wrong type", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No or a wrong bearer token", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such call connection", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "No participant is connected, or their media is joined", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "The file cannot be read as a WAV file, or is outside the media directory", body = Problem, content_type = "application/problem+json"),
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
    {
        let book = shared.book();
        let connection = book.visible(&id).ok_or_else(|| call_not_found(&id))?;
        media_targets(connection, body.play_to.as_deref(), "playTo")?;
    }
    let samples: Arc<[i16]> =
        tokio::task::spawn_blocking(move || runtime::media::load_wav_file(&path))
            .await
            .map_err(|_| Problem::internal("the file could not be read"))?
            .map_err(|e| Problem::unprocessable(Some("file"), e.to_string()))?
            .into();
    let op = Op::new(body.operation_context.clone(), body.operation_callback_uri);
    // Registered before the first command, so no PlayCompleted can come first.
    let (targets, outbox) = {
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
        (targets, outbox)
    };
    shared.publish(outbox);
    for call in targets {
        let played = match flow_of(&shared, call) {
            Some(flow) => flow.play(samples.clone(), body.looped).await,
            None => Err(runtime::app::Error::NoFlow),
        };
        if let Err(error) = played {
            tracing::info!(%error, %call, "play refused");
        }
    }
    Ok((
        StatusCode::ACCEPTED,
        Json(OperationAccepted {
            operation_context: body.operation_context,
        }),
    ))
}

/// The media flow of a participant's call (every participant is an audio/video call).
fn flow_of(shared: &Shared, call: CallHandle) -> Option<runtime::app::AudioVideoFlow> {
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
        (status = 409, description = "The participant's media has not started, a sendDtmf is in progress, or the participants' media is joined", body = Problem, content_type = "application/problem+json"),
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
