//! The follower: one task reading every engine event (`Tandem::tap`) in order, turning
//! what happens to the API's calls into API events (`CallConnected`, `CreateCallFailed`,
//! `ParticipantsUpdated`, `CallTransferAccepted`...), and handing incoming calls of the
//! applications to them (`IncomingCall`, then 480 when nobody answers in time).

use crate::model::Identifier;
use crate::model::ResultInformation;
use crate::state::{
    Book, CallDirection, Connection, ConnectionState, Incoming, Op, Outbox, Participant,
    ParticipantState, Role, Settled, Shared, Tracked, failed, new_token, ok,
};
use calls::{
    CallDeclineOptions, CallEvent, CallHandle, CallReceived, CallState, CallStateTransitionReason,
    CallTerminateOptions, Direction, EndpointEvent, Engine, EstablishFailure, Event, Operation,
    OperationFailure, RoomId, TransferOutcome,
};
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;
use std::time::Instant;
use tokio::sync::mpsc;

/// Work for after the lock: engine commands the events call for.
#[derive(Debug)]
enum Then {
    /// Put the connection's connected participants in its room (made when there is
    /// none and two are connected): a participant answered, or came off hold.
    SyncRoom(String),
    /// The connection is over: close its room.
    CloseRoom(RoomId),
    /// A participant came off hold outside a room: stop its music.
    StopPlaying(CallHandle),
    /// Hang up the last participant of a call the application left.
    Hangup(CallHandle),
    /// Decline an incoming call with 480 unless it is settled by then.
    Expire { token: String, after: Duration },
}

/// Follows the engine until the runtime stops.
pub(crate) async fn follow(shared: Arc<Shared>, mut tap: mpsc::UnboundedReceiver<Event>) {
    while let Some(event) = tap.recv().await {
        // IM calls of the applications are messaging's (UCWA style).
        let Some(event) = crate::messaging::follow(&shared, event) else {
            continue;
        };
        let mut outbox = Outbox::default();
        let mut then = Vec::new();
        {
            let mut book = shared.book();
            handle(&shared, &mut book, event, &mut outbox, &mut then);
            // Under the book's lock: in order with the actions' events.
            shared.publish(outbox);
        }
        for work in then {
            run(&shared, work).await;
        }
    }
    tracing::debug!("the runtime stopped: the control API follows no more calls");
}

async fn run(shared: &Arc<Shared>, work: Then) {
    match work {
        Then::SyncRoom(connection) => {
            let books = shared.clone();
            let synced = shared
                .tandem
                .with_engine(move |engine, now| {
                    let mut book = books.book();
                    let mut outbox = Outbox::default();
                    if let Some(connection) = book.connections.get_mut(&connection) {
                        sync_room(engine, now, connection, &mut outbox);
                    }
                    books.publish(outbox);
                })
                .await;
            if synced.is_err() {
                tracing::debug!("the runtime stopped: no room to join");
            }
        }
        Then::CloseRoom(room) => {
            let closed = shared
                .tandem
                .with_engine(move |engine, now| engine.close_room(now, room))
                .await;
            if !matches!(closed, Ok(Ok(_))) {
                tracing::debug!(%room, ?closed, "the room was not closed");
            }
        }
        Then::StopPlaying(call) => {
            if let Some(flow) = crate::calls::flow_of(shared, call)
                && let Err(error) = flow.stop_playing().await
            {
                tracing::debug!(%error, %call, "nothing stopped");
            }
        }
        Then::Hangup(call) => {
            let ended = shared
                .tandem
                .with_engine(move |engine, now| {
                    engine.terminate(now, call, CallTerminateOptions::new())
                })
                .await;
            if !matches!(ended, Ok(Ok(()))) {
                tracing::info!(%call, ?ended, "the last participant could not be hung up");
            }
        }
        Then::Expire { token, after } => {
            let shared = shared.clone();
            tokio::spawn(async move {
                tokio::time::sleep(after).await;
                let books = shared.clone();
                let expired = shared
                    .tandem
                    .with_engine(move |engine, now| {
                        let mut book = books.book();
                        let incoming = book.incoming.remove(&token)?;
                        book.by_call.remove(&incoming.call);
                        book.settle(token, Settled::TimedOut);
                        let options = CallDeclineOptions::new(480)
                            .reason("SIP;cause=480;text=\"not answered by the application\"");
                        if let Err(error) = engine.decline(now, incoming.call, options) {
                            tracing::debug!(%error, "unanswered call already gone");
                        }
                        Some(incoming)
                    })
                    .await;
                if let Ok(Some(incoming)) = expired {
                    tracing::info!(
                        application = %incoming.application,
                        call = %incoming.call,
                        after_ms = after.as_millis() as u64,
                        "incoming call not answered by the application in time: 480"
                    );
                }
            });
        }
    }
}

fn handle(
    shared: &Shared,
    book: &mut Book,
    event: Event,
    outbox: &mut Outbox,
    then: &mut Vec<Then>,
) {
    match event {
        Event::Endpoint {
            endpoint,
            event: EndpointEvent::CallReceived(info),
        } => {
            if let Some(app) = shared.application_of(endpoint) {
                let token = incoming(book, &app.name, &info, outbox);
                then.push(Then::Expire {
                    token,
                    after: app.answer_timeout,
                });
            }
        }
        Event::Call { call, event } => match book.by_call.get(&call).cloned() {
            Some(Tracked::Incoming(token)) => {
                if matches!(
                    event,
                    CallEvent::StateChanged {
                        state: CallState::Terminated,
                        ..
                    }
                ) {
                    book.by_call.remove(&call);
                    if book.incoming.remove(&token).is_some() {
                        book.settle(token, Settled::Ended);
                        tracing::info!(%call, "incoming call ended before the application answered");
                    }
                }
            }
            Some(Tracked::Participant {
                connection,
                participant,
            }) => {
                let (done, empty) = match book.connections.get_mut(&connection) {
                    Some(c) => {
                        let done = participant_event(c, &participant, call, event, outbox, then);
                        (done, c.participants.is_empty())
                    }
                    None => (true, false),
                };
                if done {
                    book.by_call.remove(&call);
                }
                if empty
                    && let Some(room) = book.connections.remove(&connection).and_then(|c| c.room)
                {
                    then.push(Then::CloseRoom(room));
                }
            }
            None => {}
        },
        _ => {}
    }
}

/// The URI of a From or To header value, as an identifier (`tel:` as a number).
pub(crate) fn identifier_of(header: &str) -> (Identifier, Option<String>) {
    let parsed = sip_message::NameAddr::parse(&bytes::Bytes::copy_from_slice(header.as_bytes()));
    match parsed {
        Some(name_addr) => {
            let identifier = match &name_addr.uri {
                sip_message::Uri::Tel(tel) => Identifier {
                    sip_uri: None,
                    phone_number: Some(String::from_utf8_lossy(&tel.number).into_owned()),
                },
                uri => Identifier {
                    sip_uri: Some(uri.to_string()),
                    phone_number: None,
                },
            };
            (identifier, name_addr.display_name.filter(|d| !d.is_empty()))
        }
        None => (
            Identifier {
                sip_uri: Some(header.trim().to_owned()),
                phone_number: None,
            },
            None,
        ),
    }
}

/// A new incoming call of `application`: on the books with a fresh context, and
/// `IncomingCall` published. Returns the context.
fn incoming(
    book: &mut Book,
    application: &str,
    info: &CallReceived,
    outbox: &mut Outbox,
) -> String {
    let token = new_token();
    let (from, display) = identifier_of(&info.from);
    let (to, _) = identifier_of(&info.to);
    let mut headers = serde_json::Map::new();
    let mut user_to_user = None;
    let mut call_id = None;
    for h in &info.headers {
        let name = h.name.as_str();
        if name.len() > 2 && name.get(..2).is_some_and(|p| p.eq_ignore_ascii_case("x-")) {
            headers
                .entry(name.to_owned())
                .or_insert_with(|| json!(h.value));
        } else if name.eq_ignore_ascii_case("user-to-user") && user_to_user.is_none() {
            user_to_user = Some(h.value.clone());
        } else if (name.eq_ignore_ascii_case("call-id") || name.eq_ignore_ascii_case("i"))
            && call_id.is_none()
        {
            call_id = Some(h.value.trim().to_owned());
        }
    }
    book.incoming.insert(
        token.clone(),
        Incoming {
            call: info.call,
            application: application.to_owned(),
            from: from.clone(),
            sip_call_id: call_id.clone(),
        },
    );
    book.by_call
        .insert(info.call, Tracked::Incoming(token.clone()));
    outbox.events.push(crate::state::Outgoing {
        application: application.to_owned(),
        callback: None,
        event_type: "IncomingCall",
        subject: call_id
            .as_ref()
            .map(|id| format!("calling/incomingCalls/{id}")),
        data: json!({
            "callConnectionId": null,
            "correlationId": call_id,
            "operationContext": null,
            "resultInformation": ok("incoming call"),
            "to": to,
            "from": from,
            "callerDisplayName": display,
            "requestUri": info.request_uri,
            "customContext": {
                "sipHeaders": headers,
                "userToUser": user_to_user,
            },
            "incomingCallContext": token,
        }),
    });
    token
}

/// What a failed establish says, as a SIP status and a message.
pub(crate) fn failure_status(failure: &EstablishFailure) -> (u16, String) {
    match failure {
        EstablishFailure::Refused {
            status,
            reason_phrase,
            reason,
            ..
        } => (
            *status,
            match reason {
                Some(reason) => format!("{reason_phrase} ({reason})"),
                None => reason_phrase.clone(),
            },
        ),
        EstablishFailure::Redirected { status, targets } => {
            (*status, format!("redirected to {}", targets.join(", ")))
        }
        EstablishFailure::Timeout => (408, "no answer in time".into()),
        EstablishFailure::TransportError => (503, "the peer could not be reached".into()),
        EstablishFailure::Media { reason } => (488, format!("unusable media: {reason}")),
        EstablishFailure::Cancelled => (487, "cancelled".into()),
        EstablishFailure::Ended { reason } => (487, format!("ended: {}", describe(reason))),
        _ => (500, format!("{failure:?}")),
    }
}

/// Why a call ended, in words, with the SIP status closest to it.
pub(crate) fn end_status(reason: &CallStateTransitionReason) -> (u16, String) {
    use CallStateTransitionReason as R;
    let status = match reason {
        R::RemoteDeclined { status, .. } | R::LocalDeclined { status } => *status,
        R::Timeout => 408,
        R::TransportError => 503,
        R::RemoteCancelled => 487,
        R::MediaFailure { .. } => 488,
        R::DialogFailed { status } => *status,
        _ => 200,
    };
    (status, describe(reason))
}

fn describe(reason: &CallStateTransitionReason) -> String {
    use CallStateTransitionReason as R;
    match reason {
        R::LocalTerminated => "hung up by the application".into(),
        R::RemoteTerminated => "the participant hung up".into(),
        R::RemoteCancelled => "the caller cancelled".into(),
        R::Timeout => "timed out".into(),
        R::TransportError => "transport error".into(),
        R::Transferred => "transferred".into(),
        R::Replaced => "replaced by another call".into(),
        R::MediaTimeout => "no media".into(),
        R::SessionExpired => "the session timer expired".into(),
        R::MaxDurationReached => "the maximum call duration was reached".into(),
        R::RemoteDeclined {
            status,
            reason_phrase,
        } => format!("{status} {reason_phrase}"),
        other => format!("{other:?}"),
    }
}

/// An event of participant `pid`'s call. Returns whether the participant is gone.
fn participant_event(
    connection: &mut Connection,
    pid: &str,
    call: CallHandle,
    event: CallEvent,
    outbox: &mut Outbox,
    then: &mut Vec<Then>,
) -> bool {
    match event {
        CallEvent::StateChanged { state, reason, .. } => match state {
            CallState::Established => established(connection, pid, outbox, then),
            CallState::Transferring => set_state(connection, pid, ParticipantState::Transferring),
            CallState::Parking => set_state(connection, pid, ParticipantState::Parked),
            CallState::Terminating => set_state(connection, pid, ParticipantState::Disconnecting),
            CallState::Terminated => {
                terminated(connection, pid, call, &reason, outbox, then);
                return true;
            }
            _ => {}
        },
        CallEvent::EstablishCompleted {
            result: Err(failure),
        } => {
            establish_failed(connection, pid, &failure, outbox);
        }
        CallEvent::FlowConfigurationChanged { configuration } => {
            if let Some(p) = connection.participant_mut(pid) {
                p.on_hold = matches!(
                    configuration.remote_direction,
                    Direction::SendOnly | Direction::Inactive
                );
            }
        }
        CallEvent::ToneReceived { tone, duration } => {
            let participant = connection.participant(pid).map(Participant::view);
            outbox.call_event(
                connection,
                &Op::default(),
                "ToneReceived",
                ok("tone received"),
                json!({
                    "tone": tone.to_string(),
                    "durationMs": duration.as_millis() as u64,
                    "participant": participant,
                }),
            );
        }
        CallEvent::PlayCompleted => {
            let mut finished = Vec::new();
            for (n, (_, calls)) in connection.plays.iter_mut() {
                let before = calls.len();
                calls.retain(|c| *c != call);
                if calls.is_empty() && before > 0 {
                    finished.push(*n);
                }
            }
            finished.sort_unstable();
            for n in finished {
                if let Some((op, _)) = connection.plays.remove(&n) {
                    outbox.call_event(
                        connection,
                        &op,
                        "PlayCompleted",
                        ok("played to the end"),
                        json!({}),
                    );
                }
            }
        }
        CallEvent::OperationCompleted {
            operation: operation @ (Operation::Hold | Operation::Retrieve),
            result,
        } => hold_completed(
            connection,
            pid,
            call,
            operation == Operation::Hold,
            &result,
            outbox,
            then,
        ),
        CallEvent::DtmfSent => {
            if let Some(op) = connection.participant_mut(pid).and_then(|p| p.dtmf.take()) {
                outbox.call_event(
                    connection,
                    &op,
                    "SendDtmfTonesCompleted",
                    ok("every tone was sent"),
                    json!({}),
                );
            }
        }
        CallEvent::TransferCompleted {
            transfer,
            final_status,
            reason,
            reason_phrase,
        } => {
            let Some(pending) = connection.transfer.take_if(|t| t.id == transfer) else {
                return false;
            };
            if connection.state == ConnectionState::Transferring {
                connection.state = ConnectionState::Connected;
            }
            // A failed transfer leaves the transferee where it was (the engine's own
            // state change may come after this event).
            if reason != TransferOutcome::Accepted
                && let Some(p) = connection.participant_mut(&pending.participant)
                && p.state == ParticipantState::Transferring
            {
                p.state = ParticipantState::Connected;
            }
            let transferee = connection
                .participant(&pending.participant)
                .map(Participant::view);
            let extra = json!({
                "sipStatus": final_status,
                "transferTarget": pending.target,
                "transferee": transferee,
            });
            if reason == TransferOutcome::Accepted {
                outbox.call_event(
                    connection,
                    &pending.op,
                    "CallTransferAccepted",
                    ok(&transfer_message(final_status, reason_phrase)),
                    extra,
                );
            } else {
                outbox.call_event(
                    connection,
                    &pending.op,
                    "CallTransferFailed",
                    failed(final_status, transfer_message(final_status, reason_phrase)),
                    extra,
                );
            }
        }
        CallEvent::Parked { orbit } => {
            let op = connection
                .participant_mut(pid)
                .map(|p| {
                    p.state = ParticipantState::Parked;
                    p.park.take().unwrap_or_default()
                })
                .unwrap_or_default();
            let participant = connection.participant(pid).map(Participant::view);
            outbox.call_event(
                connection,
                &op,
                "CallParked",
                ok("parked"),
                json!({ "orbit": orbit.number, "uri": orbit.uri, "participant": participant }),
            );
        }
        CallEvent::Retrieved { by, .. } => {
            set_state(connection, pid, ParticipantState::Connected);
            let retriever = connection
                .participants
                .iter()
                .find(|p| p.call == by)
                .map(|p| (p.role.clone(), p.view()));
            match retriever {
                Some((Role::Retriever { orbit, op }, view)) => outbox.call_event(
                    connection,
                    &op,
                    "RetrieveSucceeded",
                    ok("the parked participant was retrieved"),
                    json!({ "orbit": orbit, "participant": view }),
                ),
                Some(_) => {}
                None => {
                    tracing::info!(%call, %by, "a parked participant was retrieved by a call the API did not place");
                }
            }
            if connection.connected && !connection.detached {
                outbox.participants_updated(connection);
            }
        }
        _ => {}
    }
    false
}

fn set_state(connection: &mut Connection, pid: &str, state: ParticipantState) {
    if let Some(p) = connection.participant_mut(pid) {
        p.state = state;
    }
}

fn established(connection: &mut Connection, pid: &str, outbox: &mut Outbox, then: &mut Vec<Then>) {
    let Some(p) = connection.participant_mut(pid) else {
        return;
    };
    p.state = ParticipantState::Connected;
    if p.ever_connected {
        // Back from a transfer that failed, or a park that was retrieved.
        return;
    }
    p.ever_connected = true;
    let role = p.role.clone();
    let view = p.view();
    match role {
        Role::Initial => {
            if !connection.connected {
                connection.connected = true;
                if connection.state == ConnectionState::Connecting {
                    connection.state = ConnectionState::Connected;
                }
                let op = connection.start_op.clone();
                outbox.call_event(connection, &op, "CallConnected", ok("connected"), json!({}));
                outbox.participants_updated(connection);
            }
        }
        Role::Invited {
            cancel: Some(_), ..
        } => {
            // Answered while being cancelled: it is being hung up.
        }
        Role::Invited { invitation, op, .. } => {
            outbox.call_event(
                connection,
                &op,
                "AddParticipantSucceeded",
                ok("the participant answered"),
                json!({ "participant": view, "invitationId": invitation }),
            );
            outbox.participants_updated(connection);
            then.push(Then::SyncRoom(connection.id.clone()));
        }
        Role::Target | Role::Adopted => {
            if !connection.connected {
                connection.connected = true;
                if connection.state == ConnectionState::Connecting {
                    connection.state = ConnectionState::Connected;
                }
                let op = connection.start_op.clone();
                outbox.call_event(connection, &op, "CallConnected", ok("connected"), json!({}));
            }
            if !connection.detached {
                outbox.participants_updated(connection);
            }
            if role == Role::Target {
                then.push(Then::SyncRoom(connection.id.clone()));
            }
        }
        Role::Retriever { .. } => {
            if connection.connected && !connection.detached {
                outbox.participants_updated(connection);
            }
        }
    }
}

fn establish_failed(
    connection: &mut Connection,
    pid: &str,
    failure: &EstablishFailure,
    outbox: &mut Outbox,
) {
    let (code, message) = failure_status(failure);
    let Some(p) = connection.participant_mut(pid) else {
        return;
    };
    if p.failure_reported {
        return;
    }
    p.failure_reported = true;
    let role = p.role.clone();
    let view = p.view();
    match role {
        Role::Initial if connection.direction == CallDirection::Outbound => {
            let op = connection.start_op.clone();
            outbox.call_event(
                connection,
                &op,
                "CreateCallFailed",
                failed(code, message),
                json!({ "participant": view }),
            );
        }
        Role::Initial => {}
        Role::Invited {
            invitation,
            cancel: Some(cancel),
            ..
        } => outbox.call_event(
            connection,
            &cancel,
            "CancelAddParticipantSucceeded",
            ok("the invitation was cancelled"),
            json!({ "invitationId": invitation }),
        ),
        Role::Invited { invitation, op, .. } => outbox.call_event(
            connection,
            &op,
            "AddParticipantFailed",
            failed(code, message),
            json!({ "participant": view, "invitationId": invitation }),
        ),
        Role::Retriever { orbit, op } => {
            tracing::info!(code, %message, "the retrieving call failed: the call stays parked");
            outbox.call_event(
                connection,
                &op,
                "RetrieveFailed",
                failed(code, message),
                json!({ "orbit": orbit, "participant": view }),
            );
        }
        Role::Target => target_failed(connection, &view, code, message, outbox),
        Role::Adopted => {
            let op = connection.start_op.clone();
            outbox.call_event(
                connection,
                &op,
                "ConnectFailed",
                failed(code, message),
                json!({ "participant": view }),
            );
        }
    }
}

/// A group call's target did not answer: `AddParticipantFailed` for it (the
/// connection's `CreateCallFailed` comes when the last one is gone and none answered).
fn target_failed(
    connection: &Connection,
    view: &crate::model::CallParticipant,
    code: u16,
    message: String,
    outbox: &mut Outbox,
) {
    let op = connection.start_op.clone();
    outbox.call_event(
        connection,
        &op,
        "AddParticipantFailed",
        failed(code, message),
        json!({ "participant": view }),
    );
}

fn terminated(
    connection: &mut Connection,
    pid: &str,
    call: CallHandle,
    reason: &CallStateTransitionReason,
    outbox: &mut Outbox,
    then: &mut Vec<Then>,
) {
    let Some(index) = connection.participants.iter().position(|p| p.id == pid) else {
        return;
    };
    let p = connection.participants.remove(index);
    let view = p.view();
    let (code, message) = end_status(reason);
    if !p.ever_connected && !p.failure_reported {
        match &p.role {
            Role::Initial if connection.direction == CallDirection::Outbound => {
                let op = connection.start_op.clone();
                outbox.call_event(
                    connection,
                    &op,
                    "CreateCallFailed",
                    failed(code, message.clone()),
                    json!({ "participant": view }),
                );
            }
            Role::Initial => {
                let op = connection.start_op.clone();
                outbox.call_event(
                    connection,
                    &op,
                    "AnswerFailed",
                    failed(if code == 200 { 500 } else { code }, message.clone()),
                    json!({ "participant": view }),
                );
            }
            Role::Invited {
                invitation,
                cancel: Some(cancel),
                ..
            } => outbox.call_event(
                connection,
                cancel,
                "CancelAddParticipantSucceeded",
                ok("the invitation was cancelled"),
                json!({ "invitationId": invitation }),
            ),
            Role::Invited { invitation, op, .. } => outbox.call_event(
                connection,
                op,
                "AddParticipantFailed",
                failed(code, message.clone()),
                json!({ "participant": view, "invitationId": invitation }),
            ),
            Role::Retriever { orbit, op } => outbox.call_event(
                connection,
                op,
                "RetrieveFailed",
                failed(if code == 200 { 487 } else { code }, message.clone()),
                json!({ "orbit": orbit, "participant": view }),
            ),
            Role::Target => target_failed(connection, &view, code, message.clone(), outbox),
            Role::Adopted => {
                let op = connection.start_op.clone();
                outbox.call_event(
                    connection,
                    &op,
                    "ConnectFailed",
                    failed(if code == 200 { 487 } else { code }, message.clone()),
                    json!({ "participant": view }),
                );
            }
        }
    } else if let Role::Invited {
        invitation,
        cancel: Some(cancel),
        ..
    } = &p.role
        && p.ever_connected
    {
        // Answered as the CANCEL crossed it, then hung up: cancelled all the same.
        outbox.call_event(
            connection,
            cancel,
            "CancelAddParticipantSucceeded",
            ok("the invitation was cancelled"),
            json!({ "invitationId": invitation }),
        );
    }
    if let Role::Invited { invitation, .. } = &p.role {
        connection.finished_invitations.push(invitation.clone());
    }
    if let Some(op) = &p.removing {
        // Ended by our hang-up (its BYE or CANCEL), or otherwise first: the remove did
        // not do it (the participant's own BYE, a timeout, a transport error).
        if *reason == CallStateTransitionReason::LocalTerminated {
            outbox.call_event(
                connection,
                op,
                "RemoveParticipantSucceeded",
                ok("the participant was removed"),
                json!({ "participant": view }),
            );
        } else {
            outbox.call_event(
                connection,
                op,
                "RemoveParticipantFailed",
                failed(
                    if code == 200 { 487 } else { code },
                    format!("the participant's call ended first: {message}"),
                ),
                json!({ "participant": view }),
            );
        }
    }
    if let Some(op) = &p.dtmf {
        outbox.call_event(
            connection,
            op,
            "SendDtmfTonesFailed",
            failed(487, "the participant's call ended"),
            json!({}),
        );
    }
    end_plays(
        connection,
        &[call],
        "PlayFailed",
        &failed(487, "the participant's call ended"),
        outbox,
    );
    if let Some(pending) = connection.transfer.take_if(|t| t.participant == p.id) {
        // The transfer's own result normally comes first; this is its end regardless.
        outbox.call_event(
            connection,
            &pending.op,
            "CallTransferFailed",
            failed(487, "the transferee's call ended first"),
            json!({ "sipStatus": 487, "transferTarget": pending.target, "transferee": view }),
        );
    }
    let remaining = connection.participants.len();
    if remaining == 0 {
        if let Some((_, op)) = connection.room_play.take() {
            outbox.call_event(
                connection,
                &op,
                "PlayFailed",
                failed(487, "the call ended"),
                json!({}),
            );
        }
        if connection.group && !connection.connected {
            let op = connection.start_op.clone();
            outbox.call_event(
                connection,
                &op,
                "CreateCallFailed",
                failed(if code == 200 { 487 } else { code }, "no target answered"),
                json!({}),
            );
        }
        // A hang-up always gets its CallDisconnected (after the CreateCallFailed or
        // AnswerFailed of a call that never connected).
        if (connection.connected || connection.hangup.is_some()) && !connection.detached {
            let op = connection.hangup.clone().unwrap_or_default();
            outbox.call_event(
                connection,
                &op,
                "CallDisconnected",
                crate::model::ResultInformation {
                    code: 200,
                    sub_code: 0,
                    message,
                },
                json!({}),
            );
        }
        return;
    }
    if connection.detached {
        if let [last] = connection.participants.as_slice() {
            then.push(Then::Hangup(last.call));
        }
    } else if connection.connected && p.ever_connected {
        outbox.participants_updated(connection);
    }
}

/// Ends the plays of `calls` (the calls no longer play them): each play none of whose
/// calls plays any more raises `event_type` (`PlayFailed`, `PlayCanceled`).
pub(crate) fn end_plays(
    connection: &mut Connection,
    calls: &[CallHandle],
    event_type: &'static str,
    result: &ResultInformation,
    outbox: &mut Outbox,
) {
    let mut ended = Vec::new();
    for (n, (_, playing)) in connection.plays.iter_mut() {
        let before = playing.len();
        playing.retain(|c| !calls.contains(c));
        if playing.is_empty() && before > 0 {
            ended.push(*n);
        }
    }
    ended.sort_unstable();
    for n in ended {
        if let Some((op, _)) = connection.plays.remove(&n) {
            outbox.call_event(connection, &op, event_type, result.clone(), json!({}));
        }
    }
}

/// Puts the connection's connected participants that are not held in its conference
/// room, making the room when there is none and two are ready (a call of one
/// participant needs none). A participant that joins stops hearing what played to it
/// alone: those plays are cancelled.
pub(crate) fn sync_room(
    engine: &mut Engine,
    now: Instant,
    connection: &mut Connection,
    outbox: &mut Outbox,
) {
    let ready: Vec<CallHandle> = connection
        .participants
        .iter()
        .filter(|p| {
            p.state == ParticipantState::Connected
                && !p.held
                && p.hold_op.is_none()
                && engine.call_state(p.call) == Some(CallState::Established)
        })
        .map(|p| p.call)
        .collect();
    let room = match connection.room {
        Some(room) => room,
        None if ready.len() >= 2 => {
            let room = engine.new_room();
            connection.room = Some(room);
            room
        }
        None => return,
    };
    let mut joined = Vec::new();
    for call in ready {
        if engine.room_of(call) == Some(room) {
            continue;
        }
        match engine.join_room(now, call, room) {
            Ok(()) => joined.push(call),
            Err(error) => {
                tracing::warn!(%call, %room, %error, "a participant could not join the call's room");
            }
        }
    }
    end_plays(
        connection,
        &joined,
        "PlayCanceled",
        &failed(487, "the participant joined the call's room"),
        outbox,
    );
}

/// How a `participants:hold` or `participants:unhold` ended (its re-INVITE answered).
fn hold_completed(
    connection: &mut Connection,
    pid: &str,
    call: CallHandle,
    hold: bool,
    result: &Result<(), OperationFailure>,
    outbox: &mut Outbox,
    then: &mut Vec<Then>,
) {
    let Some(p) = connection.participant_mut(pid) else {
        return;
    };
    let Some(pending) = p.hold_op.take_if(|h| h.hold == hold) else {
        return;
    };
    match result {
        Ok(()) => p.held = hold,
        // A hold refused leaves the participant as it was: back in the room.
        Err(_) if hold => p.held = false,
        Err(_) => {}
    }
    let view = p.view();
    let back = !p.held;
    let (name, outcome) = match (hold, result) {
        (true, Ok(())) => ("HoldSucceeded", ok("the participant is on hold")),
        (false, Ok(())) => ("UnholdSucceeded", ok("the participant is off hold")),
        (true, Err(failure)) => ("HoldFailed", hold_failure(failure)),
        (false, Err(failure)) => ("UnholdFailed", hold_failure(failure)),
    };
    outbox.call_event(
        connection,
        &pending.op,
        name,
        outcome,
        json!({ "participant": view }),
    );
    if result.is_ok() && connection.connected && !connection.detached {
        outbox.participants_updated(connection);
    }
    if back {
        if connection.room.is_some() {
            then.push(Then::SyncRoom(connection.id.clone()));
        } else {
            then.push(Then::StopPlaying(call));
        }
    }
}

fn hold_failure(failure: &OperationFailure) -> ResultInformation {
    match failure {
        OperationFailure::Refused { status } => failed(
            *status,
            format!("the participant refused the re-INVITE with {status}"),
        ),
        OperationFailure::Media { reason } => failed(488, format!("unusable answer: {reason}")),
        OperationFailure::CallEnded => failed(487, "the participant's call ended first"),
        other => failed(500, format!("{other:?}")),
    }
}

/// `resultInformation.message` of a transfer's end: the target's final status and what
/// it said (its `Reason` text or reason phrase, from the final NOTIFY's sipfrag), e.g.
/// `486 Busy Here`; without a message that said it, why there was none.
fn transfer_message(status: u16, reason_phrase: Option<String>) -> String {
    match (reason_phrase, status) {
        (Some(phrase), _) => format!("{status} {phrase}"),
        (None, 408) => "408 no final status from the transferee".to_owned(),
        (None, 487) => "487 the call or the transfer's subscription ended first".to_owned(),
        (None, _) => format!("{status} {}", sip_message::default_reason_phrase(status)),
    }
}
