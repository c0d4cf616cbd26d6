//! Messaging in the style of UCWA: conversations of one IM call each (an INVITE with an
//! `m=message` SDP, then MESSAGE in the dialog, RFC 3428; composing, RFC 3994).
//!
//! Actions: `conversations:startMessaging` (to, subject, importance, threadId, a first
//! message), `conversations:acceptMessaging` / `:declineMessaging` for an incoming
//! invitation, and under `conversations/{id}/messaging`: `sendMessage`, `setIsTyping`,
//! `stopMessaging`; the reads `GET /v1/conversations[/{id}]`.
//!
//! Events (the CloudEvent `type` is the UCWA resource; `data.type` says what happened to
//! it, as UCWA's event channel does): `conversation` (added / updated / deleted),
//! `messaging` (added / updated / deleted), `participant` (added / deleted),
//! `messagingInvitation` (started, then completed with state `Connected` or `Failed`
//! and a reason), `message` (an incoming message), `typing` (the remote party's
//! composing state), `messageCompleted` / `messageFailed` (how a sent message ended).
//!
//! The books are a lock of their own ([`Messaging`]), never held with the calls' books.
//! Handlers change them inside the engine job that runs the command, and events are
//! published while the lock is held, so the follower (which takes it too) can never
//! publish an event of a conversation before the events that announced it.

use crate::error::{ApiResult, Problem};
use crate::json::ApiJson;
use crate::messaging_model::*;
use crate::model::Identifier;
use crate::state::{Op, Outbox, Outgoing, Shared, failed, new_id, new_token, ok, rfc3339_now};
use crate::validate;
use axum::Json;
use axum::extract::{FromRequest as _, Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use calls::{
    CallDeclineOptions, CallEstablishOptions, CallEvent, CallHandle, CallKind, CallReceived,
    CallState, CallTerminateOptions, ConversationSettings, DeliveryResult, EndpointEvent, Engine,
    EstablishFailure, Event, InstantMessage, MessageId, MessageOptions, Priority, SignalingHeader,
};
use serde_json::{Map, Value, json};
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// The header that carries `threadId` (as Lync and Skype for Business carry a
/// conversation's thread).
pub const THREAD_ID_HEADER: &str = "Ms-Conversation-ID";

/// How many settled invitations are remembered (for a later accept's 409).
const SETTLED_KEPT: usize = 4096;

// ---- the books

/// The messaging books: conversations, incoming invitations, settled invitations.
#[derive(Debug, Default)]
pub(crate) struct Messaging {
    book: Mutex<Book>,
}

impl Messaging {
    /// The books; a poisoned lock is taken over.
    fn book(&self) -> MutexGuard<'_, Book> {
        self.book
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[derive(Debug, Default)]
struct Book {
    conversations: HashMap<String, Conversation>,
    /// The IM call of each conversation.
    by_call: HashMap<CallHandle, String>,
    /// Incoming invitations by `invitationContext`.
    invitations: HashMap<String, Invitation>,
    invitation_calls: HashMap<CallHandle, String>,
    settled: HashMap<String, Settled>,
    settled_order: VecDeque<String>,
}

impl Book {
    fn settle(&mut self, token: String, how: Settled) {
        if self.settled.insert(token.clone(), how).is_none() {
            self.settled_order.push_back(token);
        }
        while self.settled_order.len() > SETTLED_KEPT {
            if let Some(old) = self.settled_order.pop_front() {
                self.settled.remove(&old);
            }
        }
    }

    /// The pending invitation behind a context, or why there is none.
    fn pending(&self, token: &str) -> ApiResult<Invitation> {
        if let Some(invitation) = self.invitations.get(token) {
            return Ok(invitation.clone());
        }
        Err(match self.settled.get(token) {
            Some(how) => Problem::conflict(how.describe()),
            None => Problem::not_found(
                "invitation-not-found",
                "no messaging invitation has this invitationContext",
            )
            .with_field("invitationContext"),
        })
    }

    /// Removes a pending invitation (accepted, declined, timed out or ended).
    fn take(&mut self, token: &str, how: Settled) -> Option<Invitation> {
        let invitation = self.invitations.remove(token)?;
        self.invitation_calls.remove(&invitation.call);
        self.settle(token.to_owned(), how);
        Some(invitation)
    }
}

/// How an incoming invitation was settled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Settled {
    Accepted,
    Declined,
    TimedOut,
    Ended,
}

impl Settled {
    fn describe(self) -> &'static str {
        match self {
            Settled::Accepted => "the messaging invitation was already accepted",
            Settled::Declined => "the messaging invitation was already declined",
            Settled::TimedOut => "the messaging invitation was not accepted in time (480 sent)",
            Settled::Ended => "the messaging invitation has ended (the sender gave up)",
        }
    }
}

/// An incoming invitation waiting for accept or decline.
#[derive(Debug, Clone)]
struct Invitation {
    call: CallHandle,
    application: String,
    from: Identifier,
    display_name: Option<String>,
    subject: Option<String>,
    importance: Importance,
    thread_id: Option<String>,
    correlation_id: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Direction {
    Outgoing,
    Incoming,
}

impl Direction {
    fn as_str(self) -> &'static str {
        match self {
            Direction::Outgoing => "Outgoing",
            Direction::Incoming => "Incoming",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ConversationState {
    Connecting,
    Connected,
    Disconnecting,
}

impl ConversationState {
    fn as_str(self) -> &'static str {
        match self {
            ConversationState::Connecting => "Connecting",
            ConversationState::Connected => "Connected",
            ConversationState::Disconnecting => "Disconnecting",
        }
    }
}

/// A conversation: one IM call.
#[derive(Debug)]
struct Conversation {
    id: String,
    application: String,
    call: CallHandle,
    direction: Direction,
    state: ConversationState,
    subject: Option<String>,
    importance: Importance,
    thread_id: Option<String>,
    correlation_id: Option<String>,
    created_at: String,
    remote: ConversationParticipant,
    /// The incoming invitation it was accepted from.
    invitation: Option<String>,
    /// The call was established (`Connected` was raised).
    connected: bool,
    /// `messagingInvitation` completed was raised.
    invitation_reported: bool,
    /// startMessaging or acceptMessaging.
    start_op: Op,
    /// stopMessaging.
    stop_op: Option<Op>,
    /// Messages sent and not yet answered: the engine's id → ours and the operation.
    messages: HashMap<MessageId, (String, Op)>,
    is_typing: bool,
    remote_typing: bool,
}

impl Conversation {
    fn view(&self) -> ConversationProperties {
        ConversationProperties {
            conversation_id: self.id.clone(),
            application: self.application.clone(),
            state: self.state.as_str().to_owned(),
            direction: self.direction.as_str().to_owned(),
            subject: self.subject.clone(),
            importance: self.importance,
            thread_id: self.thread_id.clone(),
            correlation_id: self.correlation_id.clone(),
            created_at: self.created_at.clone(),
            participants: if self.connected {
                vec![self.remote.clone()]
            } else {
                Vec::new()
            },
            messaging: MessagingProperties {
                state: self.state.as_str().to_owned(),
                is_typing: self.is_typing,
                remote_is_typing: self.remote_typing,
            },
        }
    }

    /// An event of this conversation: `type` (what happened to the resource),
    /// `conversationId`, `href`, `correlationId`, `operationContext`, then `extra`.
    fn event(
        &self,
        outbox: &mut Outbox,
        op: &Op,
        event_type: &'static str,
        change: &str,
        extra: Value,
    ) {
        let mut data = Map::new();
        data.insert("type".into(), json!(change));
        data.insert("conversationId".into(), json!(self.id));
        data.insert(
            "href".into(),
            json!(format!("/v1/conversations/{}", self.id)),
        );
        data.insert("correlationId".into(), json!(self.correlation_id));
        data.insert("operationContext".into(), json!(op.context));
        if let Value::Object(extra) = extra {
            data.extend(extra);
        }
        outbox.events.push(Outgoing {
            application: self.application.clone(),
            callback: op.callback.clone(),
            event_type,
            subject: Some(format!("messaging/conversations/{}", self.id)),
            data: Value::Object(data),
        });
    }

    /// `conversation` added and `messaging` added (Connecting).
    fn added(&self, outbox: &mut Outbox) {
        let op = self.start_op.clone();
        self.event(
            outbox,
            &op,
            "conversation",
            "added",
            json!({ "conversation": self.view() }),
        );
        self.event(
            outbox,
            &op,
            "messaging",
            "added",
            json!({ "state": self.state.as_str() }),
        );
    }

    /// The call is established: the invitation completed (Connected), the participant
    /// joined, messaging and the conversation are Connected.
    fn connected(&mut self, outbox: &mut Outbox) {
        self.connected = true;
        self.state = ConversationState::Connected;
        self.invitation_reported = true;
        let op = self.start_op.clone();
        self.event(
            outbox,
            &op,
            "messagingInvitation",
            "completed",
            json!({
                "state": "Connected",
                "status": "Success",
                "direction": self.direction.as_str(),
                "invitationContext": self.invitation,
                "resultInformation": ok("connected"),
            }),
        );
        self.event(
            outbox,
            &op,
            "participant",
            "added",
            json!({ "participant": self.remote }),
        );
        self.event(
            outbox,
            &op,
            "messaging",
            "updated",
            json!({ "state": self.state.as_str() }),
        );
        self.event(
            outbox,
            &op,
            "conversation",
            "updated",
            json!({ "conversation": self.view() }),
        );
    }

    /// The invitation failed (`messagingInvitation` completed, state Failed).
    fn invitation_failed(&mut self, outbox: &mut Outbox, status: u16, code: &str, message: String) {
        if self.invitation_reported {
            return;
        }
        self.invitation_reported = true;
        let op = self.start_op.clone();
        self.event(
            outbox,
            &op,
            "messagingInvitation",
            "completed",
            json!({
                "state": "Failed",
                "status": "Failure",
                "direction": self.direction.as_str(),
                "invitationContext": self.invitation,
                "reason": { "code": code, "sipStatus": status, "message": message },
                "resultInformation": failed(status, message),
            }),
        );
    }

    /// The call ended: the participant left, messaging and the conversation are
    /// deleted.
    fn ended(&self, outbox: &mut Outbox, status: u16, message: &str) {
        let op = self.stop_op.clone().unwrap_or_default();
        let reason = json!({ "code": code_of(status), "sipStatus": status, "message": message });
        if self.connected {
            self.event(
                outbox,
                &op,
                "participant",
                "deleted",
                json!({ "participant": self.remote }),
            );
        }
        self.event(
            outbox,
            &op,
            "messaging",
            "deleted",
            json!({ "state": "Disconnected", "reason": reason }),
        );
        self.event(
            outbox,
            &op,
            "conversation",
            "deleted",
            json!({ "reason": reason }),
        );
    }
}

/// A reason's code word for a SIP status.
fn code_of(status: u16) -> &'static str {
    match status {
        200 => "ended",
        408 => "timeout",
        486 | 600 => "busy",
        403 | 603 => "declined",
        404 | 604 => "notFound",
        480 => "unavailable",
        487 => "cancelled",
        488 | 415 | 606 => "notAcceptable",
        503 => "unreachable",
        _ => "failed",
    }
}

fn priority_of(importance: Importance) -> Priority {
    match importance {
        Importance::Normal => Priority::Normal,
        Importance::High => Priority::Urgent,
        Importance::Low => Priority::NonUrgent,
    }
}

fn importance_of(priority: Priority) -> Importance {
    match priority {
        Priority::Emergency | Priority::Urgent => Importance::High,
        Priority::NonUrgent => Importance::Low,
        Priority::Normal => Importance::Normal,
    }
}

/// `text/plain` or `text/html` from a Content-Type (parameters dropped, lower case).
fn essence(content_type: &str) -> String {
    content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase()
}

// ---- validation

fn check_content(content: &str, field: &str) -> ApiResult<()> {
    let chars = content.chars().count();
    if chars == 0 || chars > MAX_MESSAGE_CHARS {
        return Err(Problem::invalid_field(
            field,
            format!("1 to {MAX_MESSAGE_CHARS} characters, not {chars}"),
        ));
    }
    Ok(())
}

fn check_subject(subject: Option<&String>) -> ApiResult<()> {
    let Some(subject) = subject else {
        return Ok(());
    };
    if subject.chars().count() > MAX_SUBJECT_CHARS {
        return Err(Problem::invalid_field(
            "subject",
            format!("at most {MAX_SUBJECT_CHARS} characters"),
        ));
    }
    if subject.chars().any(|c| c.is_ascii_control()) {
        return Err(Problem::invalid_field(
            "subject",
            "no control characters (CR, LF...): the subject is a SIP header",
        ));
    }
    Ok(())
}

fn check_thread_id(thread: Option<&String>) -> ApiResult<()> {
    match thread {
        Some(t)
            if t.is_empty()
                || t.len() > MAX_THREAD_ID_CHARS
                || !t.bytes().all(|b| b.is_ascii_graphic()) =>
        {
            Err(Problem::invalid_field(
                "threadId",
                format!("1 to {MAX_THREAD_ID_CHARS} visible ASCII characters"),
            ))
        }
        _ => Ok(()),
    }
}

// ---- the follower's part

/// Takes the engine events of messaging: an IM call to an application's endpoint (an
/// incoming invitation) and every event of a conversation's or an invitation's call.
/// Anything else is handed back for the calls' follower.
pub(crate) fn follow(shared: &Arc<Shared>, event: Event) -> Option<Event> {
    match &event {
        Event::Endpoint {
            endpoint,
            event: EndpointEvent::CallReceived(info),
        } if info.kind == CallKind::InstantMessaging => {
            let Some(app) = shared.application_of(*endpoint).cloned() else {
                return Some(event);
            };
            let token = {
                let mut book = shared.messaging.book();
                let mut outbox = Outbox::default();
                let token = invited(&mut book, &app.name, info, &mut outbox);
                shared.publish(outbox);
                token
            };
            expire(shared.clone(), token, app.answer_timeout);
            None
        }
        Event::Call { call, event: what } => {
            let mut book = shared.messaging.book();
            if let Some(id) = book.by_call.get(call).cloned() {
                let mut outbox = Outbox::default();
                let done = match book.conversations.get_mut(&id) {
                    Some(c) => conversation_event(c, what, &mut outbox),
                    None => true,
                };
                shared.publish(outbox);
                if done {
                    book.by_call.remove(call);
                    book.conversations.remove(&id);
                }
                return None;
            }
            if let Some(token) = book.invitation_calls.get(call).cloned() {
                if let CallEvent::StateChanged {
                    state: CallState::Terminated,
                    ..
                } = what
                    && let Some(invitation) = book.take(&token, Settled::Ended)
                {
                    let mut outbox = Outbox::default();
                    invitation_over(
                        &mut outbox,
                        &invitation,
                        &token,
                        &Op::default(),
                        487,
                        "the sender gave up".into(),
                    );
                    shared.publish(outbox);
                    tracing::info!(%call, "messaging invitation ended before the application accepted");
                }
                return None;
            }
            Some(event)
        }
        _ => Some(event),
    }
}

/// A new incoming invitation: on the books with a fresh context, and
/// `messagingInvitation` started published.
fn invited(book: &mut Book, application: &str, info: &CallReceived, outbox: &mut Outbox) -> String {
    let token = new_token();
    let (from, display_name) = crate::follow::identifier_of(&info.from);
    let (to, _) = crate::follow::identifier_of(&info.to);
    let header = |name: &str| {
        info.headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| h.value.trim().to_owned())
    };
    let correlation_id = header("Call-ID").or_else(|| header("i"));
    let thread_id = header(THREAD_ID_HEADER);
    let message = info.first_message.as_ref().map(|m| {
        json!({
            "contentType": essence(&m.content_type),
            "content": String::from_utf8_lossy(&m.body),
        })
    });
    let invitation = Invitation {
        call: info.call,
        application: application.to_owned(),
        from,
        display_name,
        subject: info.subject.clone(),
        importance: importance_of(info.priority),
        thread_id,
        correlation_id,
    };
    outbox.events.push(Outgoing {
        application: application.to_owned(),
        callback: None,
        event_type: "messagingInvitation",
        subject: Some(format!("messaging/invitations/{token}")),
        data: json!({
            "type": "started",
            "state": "Connecting",
            "direction": "Incoming",
            "conversationId": null,
            "correlationId": invitation.correlation_id,
            "operationContext": null,
            "from": { "identifier": invitation.from, "displayName": invitation.display_name },
            "to": to,
            "subject": invitation.subject,
            "importance": invitation.importance,
            "threadId": invitation.thread_id,
            "message": message,
            "invitationContext": token,
        }),
    });
    book.invitation_calls.insert(info.call, token.clone());
    book.invitations.insert(token.clone(), invitation);
    token
}

/// `messagingInvitation` completed (Failed) of an incoming invitation that was never
/// accepted.
fn invitation_over(
    outbox: &mut Outbox,
    invitation: &Invitation,
    token: &str,
    op: &Op,
    status: u16,
    message: String,
) {
    outbox.events.push(Outgoing {
        application: invitation.application.clone(),
        callback: op.callback.clone(),
        event_type: "messagingInvitation",
        subject: Some(format!("messaging/invitations/{token}")),
        data: json!({
            "type": "completed",
            "state": "Failed",
            "status": "Failure",
            "direction": "Incoming",
            "conversationId": null,
            "correlationId": invitation.correlation_id,
            "operationContext": op.context,
            "invitationContext": token,
            "reason": { "code": code_of(status), "sipStatus": status, "message": message },
            "resultInformation": failed(status, message),
        }),
    });
}

/// Declines an invitation with 480 unless it is settled by then.
fn expire(shared: Arc<Shared>, token: String, after: Duration) {
    tokio::spawn(async move {
        tokio::time::sleep(after).await;
        let books = shared.clone();
        let expired = shared
            .tandem
            .with_engine(move |engine, now| {
                let mut book = books.messaging.book();
                let invitation = book.take(&token, Settled::TimedOut)?;
                let options = CallDeclineOptions::new(480)
                    .reason("SIP;cause=480;text=\"not accepted by the application\"");
                if let Err(error) = engine.decline(now, invitation.call, options) {
                    tracing::debug!(%error, "unaccepted invitation already gone");
                }
                let mut outbox = Outbox::default();
                invitation_over(
                    &mut outbox,
                    &invitation,
                    &token,
                    &Op::default(),
                    480,
                    "not accepted in time".into(),
                );
                books.publish(outbox);
                Some(invitation.call)
            })
            .await;
        if let Ok(Some(call)) = expired {
            tracing::info!(%call, after_ms = after.as_millis() as u64, "messaging invitation not accepted in time: 480");
        }
    });
}

/// An event of a conversation's call. Returns whether the conversation is over.
fn conversation_event(c: &mut Conversation, event: &CallEvent, outbox: &mut Outbox) -> bool {
    match event {
        CallEvent::StateChanged { state, reason, .. } => match state {
            CallState::Established if !c.connected => c.connected(outbox),
            CallState::Terminating => c.state = ConversationState::Disconnecting,
            CallState::Terminated => {
                let (status, message) = crate::follow::end_status(reason);
                if !c.connected {
                    let status = if status == 200 { 487 } else { status };
                    c.invitation_failed(outbox, status, code_of(status), message.clone());
                }
                c.ended(outbox, status, &message);
                return true;
            }
            _ => {}
        },
        CallEvent::EstablishCompleted {
            result: Err(failure),
        } => {
            let (status, message) = crate::follow::failure_status(failure);
            let code = match failure {
                EstablishFailure::Timeout => "timeout",
                EstablishFailure::TransportError => "unreachable",
                EstablishFailure::Cancelled => "cancelled",
                EstablishFailure::Redirected { .. } => "redirected",
                _ => code_of(status),
            };
            c.invitation_failed(outbox, status, code, message);
        }
        CallEvent::MessageReceived {
            content_type, body, ..
        } => {
            let op = Op::default();
            c.event(
                outbox,
                &op,
                "message",
                "added",
                json!({
                    "messageId": new_id(),
                    "direction": "Incoming",
                    "contentType": essence(content_type),
                    "content": String::from_utf8_lossy(body),
                    "participant": c.remote,
                }),
            );
        }
        CallEvent::MessageDelivered { id, result } => {
            let Some((message_id, op)) = c.messages.remove(id) else {
                return false;
            };
            match result {
                DeliveryResult::Delivered => c.event(
                    outbox,
                    &op,
                    "messageCompleted",
                    "completed",
                    json!({
                        "messageId": message_id,
                        "status": "Success",
                        "resultInformation": ok("delivered"),
                    }),
                ),
                DeliveryResult::Failed { status } => c.event(
                    outbox,
                    &op,
                    "messageFailed",
                    "completed",
                    json!({
                        "messageId": message_id,
                        "status": "Failure",
                        "sipStatus": status,
                        "resultInformation": failed(*status, format!("the peer answered {status}")),
                    }),
                ),
            }
        }
        CallEvent::RemoteComposingChanged { composing } => {
            c.remote_typing = *composing;
            let op = Op::default();
            c.event(
                outbox,
                &op,
                "typing",
                "updated",
                json!({ "isTyping": composing, "participant": c.remote }),
            );
        }
        _ => {}
    }
    false
}

// ---- handlers

/// The messaging routes (the caller adds authentication, limits and the state).
pub(crate) fn routes() -> axum::Router<Arc<Shared>> {
    use axum::routing::{get, post};
    axum::Router::new()
        .route("/v1/conversations", get(list_conversations))
        .route("/v1/conversations:startMessaging", post(start_messaging))
        .route("/v1/conversations:acceptMessaging", post(accept_messaging))
        .route(
            "/v1/conversations:declineMessaging",
            post(decline_messaging),
        )
        .route("/v1/conversations/{conversation}", get(get_conversation))
        .route(
            "/v1/conversations/{conversation}/{segment}",
            post(conversation_action).get(conversation_get),
        )
}

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

fn not_found(id: &str) -> Problem {
    Problem::not_found(
        "conversation-not-found",
        format!("no conversation has the id `{id}`"),
    )
}

fn problem_response(problem: Problem) -> Response {
    problem.into_response()
}

const P400: &str =
    "Malformed JSON, an unknown field, a wrong type, a limit broken (the field is named)";

/// Start messaging.
#[utoipa::path(
    post,
    path = "/v1/conversations:startMessaging",
    tag = "messaging",
    request_body = StartMessagingRequest,
    responses(
        (status = 201, description = "The invitation is out: `conversation` added, `messaging` added and `messagingInvitation` started now; `messagingInvitation` completed with state `Connected` (then `participant` added, `messaging` and `conversation` updated) or `Failed` with a reason (the SIP status and phrase; `timeout` after the invitation timeout, 30 s by default; then `messaging` and `conversation` deleted)", body = ConversationProperties),
        (status = 400, description = P400, body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No or a wrong bearer token", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "The body is too large", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "The body is not application/json", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "An unknown application, a bad `to`", body = Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn start_messaging(
    State(shared): State<Arc<Shared>>,
    ApiJson(body): ApiJson<StartMessagingRequest>,
) -> ApiResult<Response> {
    validate::operation(
        body.operation_context.as_ref(),
        body.operation_callback_uri.as_ref(),
    )?;
    check_subject(body.subject.as_ref())?;
    check_thread_id(body.thread_id.as_ref())?;
    if let Some(message) = &body.message {
        check_content(&message.content, "message.content")?;
    }
    let Some(app) = shared.applications.get(&body.application).cloned() else {
        return Err(Problem::unprocessable(
            Some("application"),
            format!("no application is configured as `{}`", body.application),
        ));
    };
    let dial = validate::dial(&body.to, "to", &shared.config)?;
    let importance = body.importance.unwrap_or_default();
    let mut options = CallEstablishOptions::new();
    options.max_establish_time = Some(shared.config.messaging_invitation_timeout);
    options.trunk = dial.trunk.clone();
    if let Some(thread) = &body.thread_id {
        options
            .headers
            .push(SignalingHeader::new(THREAD_ID_HEADER, thread.clone()));
    }
    options.first_message = body.message.as_ref().map(|m| InstantMessage {
        content_type: m.content_type.wire().to_owned(),
        body: Bytes::from(m.content.clone()),
    });
    let first = body.message.clone();
    let op = Op::new(body.operation_context, body.operation_callback_uri);
    let subject = body.subject;
    let thread_id = body.thread_id;
    let to = body.to;
    let books = shared.clone();
    let view = on_engine(&shared, move |engine, now| {
        let settings = ConversationSettings {
            subject: subject.clone(),
            priority: priority_of(importance),
            ..ConversationSettings::default()
        };
        let conversation = engine
            .new_conversation(app.endpoint, settings)
            .map_err(|e| Problem::from_call_error(&e, None))?;
        let call = engine
            .new_call(conversation, CallKind::InstantMessaging)
            .map_err(|e| Problem::from_call_error(&e, None))?;
        // On the books before the INVITE goes: its events follow this job.
        let mut book = books.messaging.book();
        if let Err(error) = engine.establish(now, call, &dial.target, options) {
            if let Err(e) = engine.terminate(now, call, CallTerminateOptions::new()) {
                tracing::debug!(error = %e, "unplaced IM call not cleaned up");
            }
            return Err(Problem::from_call_error(&error, Some("to")));
        }
        let c = Conversation {
            id: new_id(),
            application: app.name.clone(),
            call,
            direction: Direction::Outgoing,
            state: ConversationState::Connecting,
            subject,
            importance,
            thread_id,
            correlation_id: engine.sip_call_id(call),
            created_at: rfc3339_now(),
            remote: ConversationParticipant {
                participant_id: new_id(),
                identifier: to.clone(),
                display_name: None,
            },
            invitation: None,
            connected: false,
            invitation_reported: false,
            start_op: op.clone(),
            stop_op: None,
            messages: HashMap::new(),
            is_typing: false,
            remote_typing: false,
        };
        let mut outbox = Outbox::default();
        c.added(&mut outbox);
        c.event(
            &mut outbox,
            &op,
            "messagingInvitation",
            "started",
            json!({
                "state": "Connecting",
                "direction": "Outgoing",
                "to": to,
                "subject": c.subject,
                "importance": c.importance,
                "threadId": c.thread_id,
                "message": first,
            }),
        );
        let view = c.view();
        book.by_call.insert(call, c.id.clone());
        book.conversations.insert(c.id.clone(), c);
        books.publish(outbox);
        Ok(view)
    })
    .await?;
    let mut headers = HeaderMap::new();
    if let Ok(location) =
        HeaderValue::from_str(&format!("/v1/conversations/{}", view.conversation_id))
    {
        headers.insert(header::LOCATION, location);
    }
    Ok((StatusCode::CREATED, headers, Json(view)).into_response())
}

/// List the conversations.
#[utoipa::path(
    get,
    path = "/v1/conversations",
    tag = "messaging",
    responses(
        (status = 200, description = "Every conversation of every application, oldest first", body = ConversationList),
        (status = 401, description = "No or a wrong bearer token", body = Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn list_conversations(
    State(shared): State<Arc<Shared>>,
) -> Json<ConversationList> {
    let book = shared.messaging.book();
    let mut value: Vec<ConversationProperties> = book
        .conversations
        .values()
        .map(Conversation::view)
        .collect();
    value.sort_by(|a, b| {
        a.created_at
            .cmp(&b.created_at)
            .then(a.conversation_id.cmp(&b.conversation_id))
    });
    Json(ConversationList { value })
}

/// Get a conversation.
#[utoipa::path(
    get,
    path = "/v1/conversations/{conversationId}",
    tag = "messaging",
    params(("conversationId" = String, Path, description = "The conversation")),
    responses(
        (status = 200, description = "State, subject, importance, threadId, the participant, messaging", body = ConversationProperties),
        (status = 401, description = "No or a wrong bearer token", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such conversation", body = Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn get_conversation(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<String>,
) -> Response {
    let book = shared.messaging.book();
    match book.conversations.get(&id) {
        Some(c) => Json(c.view()).into_response(),
        None => not_found(&id).into_response(),
    }
}

/// Accept an incoming messaging invitation.
#[utoipa::path(
    post,
    path = "/v1/conversations:acceptMessaging",
    tag = "messaging",
    request_body = AcceptMessagingRequest,
    responses(
        (status = 200, description = "Accepted (200 OK sent): `conversation` added and `messaging` added now, `messagingInvitation` completed (Connected) at the ACK", body = ConversationProperties),
        (status = 400, description = P400, body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No or a wrong bearer token", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No invitation has this context", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Already accepted, declined, timed out or ended", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "The body is too large", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "The body is not application/json", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Semantically invalid (the field is named)", body = Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn accept_messaging(
    State(shared): State<Arc<Shared>>,
    ApiJson(body): ApiJson<AcceptMessagingRequest>,
) -> ApiResult<Json<ConversationProperties>> {
    validate::operation(
        body.operation_context.as_ref(),
        body.operation_callback_uri.as_ref(),
    )?;
    let op = Op::new(body.operation_context, body.operation_callback_uri);
    let token = body.invitation_context;
    let books = shared.clone();
    let view = on_engine(&shared, move |engine, now| {
        let mut book = books.messaging.book();
        let invitation = book.pending(&token)?;
        engine
            .accept(now, invitation.call, calls::CallAcceptOptions::new())
            .map_err(|e| Problem::from_call_error(&e, None))?;
        book.take(&token, Settled::Accepted);
        let c = Conversation {
            id: new_id(),
            application: invitation.application,
            call: invitation.call,
            direction: Direction::Incoming,
            state: ConversationState::Connecting,
            subject: invitation.subject,
            importance: invitation.importance,
            thread_id: invitation.thread_id,
            correlation_id: invitation.correlation_id,
            created_at: rfc3339_now(),
            remote: ConversationParticipant {
                participant_id: new_id(),
                identifier: invitation.from,
                display_name: invitation.display_name,
            },
            invitation: Some(token),
            connected: false,
            invitation_reported: false,
            start_op: op,
            stop_op: None,
            messages: HashMap::new(),
            is_typing: false,
            remote_typing: false,
        };
        let mut outbox = Outbox::default();
        c.added(&mut outbox);
        let view = c.view();
        book.by_call.insert(c.call, c.id.clone());
        book.conversations.insert(c.id.clone(), c);
        books.publish(outbox);
        Ok(view)
    })
    .await?;
    Ok(Json(view))
}

/// Decline an incoming messaging invitation.
#[utoipa::path(
    post,
    path = "/v1/conversations:declineMessaging",
    tag = "messaging",
    request_body = DeclineMessagingRequest,
    responses(
        (status = 204, description = "Declined: `declined` 603 (the default), `busy` 486, `forbidden` 403, `unavailable` 480; `messagingInvitation` completed (Failed) follows, with the operation's context, to its callback"),
        (status = 400, description = P400, body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No or a wrong bearer token", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No invitation has this context", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Already accepted, declined, timed out or ended", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "The body is too large", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "The body is not application/json", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Semantically invalid (the field is named): an operationCallbackUri that is not an absolute http URL", body = Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn decline_messaging(
    State(shared): State<Arc<Shared>>,
    ApiJson(body): ApiJson<DeclineMessagingRequest>,
) -> ApiResult<StatusCode> {
    validate::operation(
        body.operation_context.as_ref(),
        body.operation_callback_uri.as_ref(),
    )?;
    let status = body.reason.unwrap_or_default().status();
    let op = Op::new(body.operation_context, body.operation_callback_uri);
    let token = body.invitation_context;
    let books = shared.clone();
    on_engine(&shared, move |engine, now| {
        let mut book = books.messaging.book();
        let invitation = book.pending(&token)?;
        engine
            .decline(now, invitation.call, CallDeclineOptions::new(status))
            .map_err(|e| Problem::from_call_error(&e, None))?;
        book.take(&token, Settled::Declined);
        let mut outbox = Outbox::default();
        invitation_over(
            &mut outbox,
            &invitation,
            &token,
            &op,
            status,
            "declined by the application".into(),
        );
        books.publish(outbox);
        Ok(())
    })
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /v1/conversations/{conversationId}/messaging:<verb>`.
pub(crate) async fn conversation_action(
    State(shared): State<Arc<Shared>>,
    Path((id, segment)): Path<(String, String)>,
    request: Request,
) -> Response {
    let Some(verb) = segment.strip_prefix("messaging:") else {
        return problem_response(Problem::not_found("no-such-route", "no such path"));
    };
    let result = match verb {
        "sendMessage" => {
            match ApiJson::<SendMessageRequest>::from_request(request, &shared).await {
                Ok(ApiJson(b)) => send_message(shared, id, b)
                    .await
                    .map(IntoResponse::into_response),
                Err(p) => Err(p),
            }
        }
        "setIsTyping" => {
            match ApiJson::<SetIsTypingRequest>::from_request(request, &shared).await {
                Ok(ApiJson(b)) => set_is_typing(shared, id, b)
                    .await
                    .map(IntoResponse::into_response),
                Err(p) => Err(p),
            }
        }
        "stopMessaging" => match optional_body::<StopMessagingRequest>(request, &shared).await {
            Ok(b) => stop_messaging(shared, id, b)
                .await
                .map(IntoResponse::into_response),
            Err(p) => Err(p),
        },
        _ => Err(Problem::not_found(
            "no-such-action",
            format!("`{verb}` is not an action of messaging"),
        )),
    };
    result.unwrap_or_else(IntoResponse::into_response)
}

/// `GET /v1/conversations/{conversationId}/<segment>`: the actions take POST only.
pub(crate) async fn conversation_get(Path((_, segment)): Path<(String, String)>) -> Response {
    if segment.starts_with("messaging:") {
        let mut response = Problem::method_not_allowed().into_response();
        response
            .headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("POST"));
        return response;
    }
    problem_response(Problem::not_found("no-such-route", "no such path"))
}

/// A JSON body that may be absent (no body and no Content-Type, or `null`): the
/// default.
async fn optional_body<T: serde::de::DeserializeOwned + Default>(
    request: Request,
    shared: &Arc<Shared>,
) -> ApiResult<T> {
    let empty = !request.headers().contains_key(header::CONTENT_TYPE)
        && request
            .headers()
            .get(header::CONTENT_LENGTH)
            .is_none_or(|v| v.as_bytes() == b"0");
    if empty {
        let bytes = axum::body::to_bytes(request.into_body(), 1)
            .await
            .map_err(|_| Problem::unsupported_media_type(None))?;
        if bytes.is_empty() {
            return Ok(T::default());
        }
        return Err(Problem::unsupported_media_type(None));
    }
    // `null` is the absent body too.
    ApiJson::<Option<T>>::from_request(request, shared)
        .await
        .map(|ApiJson(b)| b.unwrap_or_default())
}

/// The conversation `id` in the books, connected (else 404 / 409).
fn connected<'a>(book: &'a mut Book, id: &str) -> ApiResult<&'a mut Conversation> {
    let c = book
        .conversations
        .get_mut(id)
        .ok_or_else(|| not_found(id))?;
    match c.state {
        ConversationState::Connected => Ok(c),
        ConversationState::Connecting => Err(Problem::conflict(
            "messaging is not connected yet (wait for messagingInvitation Connected)",
        )),
        ConversationState::Disconnecting => Err(Problem::conflict("messaging is stopping")),
    }
}

/// Send a message.
#[utoipa::path(
    post,
    path = "/v1/conversations/{conversationId}/messaging:sendMessage",
    tag = "messaging",
    params(("conversationId" = String, Path, description = "The conversation")),
    request_body = SendMessageRequest,
    responses(
        (status = 202, description = "The MESSAGE is out: `messageCompleted` (2xx) or `messageFailed` (with the SIP status) follows", body = SendMessageResponse),
        (status = 400, description = P400, body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No or a wrong bearer token", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such conversation", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Messaging is not connected (yet, or any more)", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "The body is too large", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "The body is not application/json", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "The peer does not accept this content type (its SDP's accept-types)", body = Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn send_message(
    shared: Arc<Shared>,
    id: String,
    body: SendMessageRequest,
) -> ApiResult<(StatusCode, Json<SendMessageResponse>)> {
    validate::operation(
        body.operation_context.as_ref(),
        body.operation_callback_uri.as_ref(),
    )?;
    check_content(&body.content, "content")?;
    let op = Op::new(body.operation_context.clone(), body.operation_callback_uri);
    let message = InstantMessage {
        content_type: body.content_type.wire().to_owned(),
        body: Bytes::from(body.content),
    };
    let books = shared.clone();
    let message_id = on_engine(&shared, move |engine, now| {
        let mut book = books.messaging.book();
        let c = connected(&mut book, &id)?;
        let sent = engine
            .send_instant_message(now, c.call, message, MessageOptions::default())
            .map_err(|e| Problem::from_call_error(&e, Some("contentType")))?;
        let message_id = new_id();
        c.messages.insert(sent, (message_id.clone(), op));
        // RFC 3994 §3.2: sending ends composing.
        c.is_typing = false;
        Ok(message_id)
    })
    .await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(SendMessageResponse {
            message_id,
            operation_context: body.operation_context,
        }),
    ))
}

/// Say whether we are typing.
#[utoipa::path(
    post,
    path = "/v1/conversations/{conversationId}/messaging:setIsTyping",
    tag = "messaging",
    params(("conversationId" = String, Path, description = "The conversation")),
    request_body = SetIsTypingRequest,
    responses(
        (status = 204, description = "Sent (RFC 3994 `active` or `idle`; nothing when unchanged)"),
        (status = 400, description = P400, body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No or a wrong bearer token", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such conversation", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Messaging is not connected", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "The body is too large", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "The body is not application/json", body = Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn set_is_typing(
    shared: Arc<Shared>,
    id: String,
    body: SetIsTypingRequest,
) -> ApiResult<StatusCode> {
    let books = shared.clone();
    on_engine(&shared, move |engine, now| {
        let mut book = books.messaging.book();
        let c = connected(&mut book, &id)?;
        engine
            .set_composing(now, c.call, body.is_typing)
            .map_err(|e| Problem::from_call_error(&e, Some("isTyping")))?;
        c.is_typing = body.is_typing;
        Ok(())
    })
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Stop messaging.
#[utoipa::path(
    post,
    path = "/v1/conversations/{conversationId}/messaging:stopMessaging",
    tag = "messaging",
    params(("conversationId" = String, Path, description = "The conversation")),
    request_body(content = Option<StopMessagingRequest>, description = "Optional: the body may be empty"),
    responses(
        (status = 204, description = "Ending the IM call (BYE, or CANCEL while connecting): `participant` deleted, `messaging` deleted and `conversation` deleted follow"),
        (status = 400, description = P400, body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No or a wrong bearer token", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such conversation", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Already stopping", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "The body is too large", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "A body that is not application/json", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Semantically invalid (the field is named)", body = Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn stop_messaging(
    shared: Arc<Shared>,
    id: String,
    body: StopMessagingRequest,
) -> ApiResult<StatusCode> {
    validate::operation(
        body.operation_context.as_ref(),
        body.operation_callback_uri.as_ref(),
    )?;
    let op = Op::new(body.operation_context, body.operation_callback_uri);
    let books = shared.clone();
    on_engine(&shared, move |engine, now| {
        let mut book = books.messaging.book();
        let c = book
            .conversations
            .get_mut(&id)
            .ok_or_else(|| not_found(&id))?;
        if c.state == ConversationState::Disconnecting {
            return Err(Problem::conflict("messaging is already stopping"));
        }
        engine
            .terminate(now, c.call, CallTerminateOptions::new())
            .map_err(|e| Problem::from_call_error(&e, None))?;
        c.state = ConversationState::Disconnecting;
        c.stop_op = Some(op);
        Ok(())
    })
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The messaging part of the OpenAPI document (merged into the API's).
#[derive(utoipa::OpenApi)]
#[openapi(
    paths(
        start_messaging,
        list_conversations,
        get_conversation,
        accept_messaging,
        decline_messaging,
        send_message,
        set_is_typing,
        stop_messaging,
    ),
    components(schemas(
        MessageContentType,
        Importance,
        MessageContent,
        StartMessagingRequest,
        SendMessageRequest,
        SendMessageResponse,
        SetIsTypingRequest,
        StopMessagingRequest,
        AcceptMessagingRequest,
        DeclineReason,
        DeclineMessagingRequest,
        ConversationParticipant,
        MessagingProperties,
        ConversationProperties,
        ConversationList,
    )),
    tags(
        (name = "messaging", description = "Messaging in the style of UCWA: one IM call (RFC 3428 MESSAGE in an INVITE dialog with an `m=message` SDP) per conversation. Events (the CloudEvent `type` is the resource; `data.type` what happened to it; each carries `conversationId`, `href`, `correlationId` (the SIP Call-ID) and `operationContext`): `conversation` added / updated / deleted; `messaging` added / updated / deleted (`state`); `participant` added / deleted; `messagingInvitation` started (an incoming one carries `from`, `subject`, `importance`, `threadId`, the first `message` and the `invitationContext` that `acceptMessaging` and `declineMessaging` take) and completed (`state` `Connected`, or `Failed` with `reason { code, sipStatus, message }`: `timeout`, `busy`, `declined`, `notFound`, `unavailable`, `cancelled`...); `message` (incoming: `direction`, `contentType`, `content`); `typing` (`isTyping` of the remote party); `messageCompleted` / `messageFailed` (`messageId`, `sipStatus`). An incoming invitation not accepted within the application's answer timeout is declined with 480. Limits: content 1-4096 characters, `text/plain` or `text/html`; subject at most 256 characters without control characters; threadId 1-128 visible ASCII characters."),
    )
)]
pub(crate) struct MessagingDoc;

#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]
mod tests {
    use super::*;

    #[test]
    fn limits_count_characters_and_name_the_field() {
        assert!(check_content("x", "content").is_ok());
        assert!(check_content(&"é".repeat(MAX_MESSAGE_CHARS), "content").is_ok());
        let p = check_content(&"x".repeat(MAX_MESSAGE_CHARS + 1), "message.content").unwrap_err();
        assert_eq!(
            (p.status, p.field.as_deref()),
            (400, Some("message.content"))
        );
        assert_eq!(check_content("", "content").unwrap_err().status, 400);

        assert!(check_subject(None).is_ok());
        assert!(check_subject(Some(&"ü".repeat(MAX_SUBJECT_CHARS))).is_ok());
        for bad in ["a\r\nVia: x", "tab\there", "del\u{7f}"] {
            let p = check_subject(Some(&bad.to_owned())).unwrap_err();
            assert_eq!(p.field.as_deref(), Some("subject"), "{bad:?}");
        }
        assert!(check_subject(Some(&"s".repeat(MAX_SUBJECT_CHARS + 1))).is_err());

        assert!(check_thread_id(Some(&"AbC+/=_-1".to_owned())).is_ok());
        for bad in ["", "a b", "ü", &"t".repeat(MAX_THREAD_ID_CHARS + 1)] {
            let p = check_thread_id(Some(&bad.to_owned())).unwrap_err();
            assert_eq!(p.field.as_deref(), Some("threadId"), "{bad:?}");
        }
    }

    #[test]
    fn importance_and_priority() {
        for importance in [Importance::Normal, Importance::High, Importance::Low] {
            assert_eq!(importance_of(priority_of(importance)), importance);
        }
        assert_eq!(priority_of(Importance::High), Priority::Urgent);
        assert_eq!(priority_of(Importance::Low), Priority::NonUrgent);
        assert_eq!(importance_of(Priority::Emergency), Importance::High);
    }

    #[test]
    fn reasons_and_content_types() {
        assert_eq!(code_of(486), "busy");
        assert_eq!(code_of(408), "timeout");
        assert_eq!(code_of(603), "declined");
        assert_eq!(code_of(487), "cancelled");
        assert_eq!(code_of(500), "failed");
        assert_eq!(essence("Text/HTML; charset=UTF-8"), "text/html");
        assert_eq!(essence("text/plain"), "text/plain");
        assert_eq!(
            MessageContentType::TextHtml.wire(),
            "text/html;charset=UTF-8"
        );
    }

    #[test]
    fn invitations_settle_once() {
        let mut book = Book::default();
        let p = book.pending("nope").unwrap_err();
        assert_eq!(
            (p.status, p.field.as_deref()),
            (404, Some("invitationContext"))
        );
        book.settle("t".into(), Settled::Declined);
        let p = book.pending("t").unwrap_err();
        assert_eq!(p.status, 409);
        assert!(p.detail.contains("declined"), "{}", p.detail);
        for n in 0..SETTLED_KEPT + 10 {
            book.settle(format!("x{n}"), Settled::Ended);
        }
        assert_eq!(book.settled.len(), SETTLED_KEPT);
        assert_eq!(book.pending("t").unwrap_err().status, 404, "forgotten");
    }
}
