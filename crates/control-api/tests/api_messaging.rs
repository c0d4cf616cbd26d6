//! Messaging in the style of UCWA over real sockets: start messaging to B's `echo`
//! (Connecting → Connected; text/plain and text/html messages completed and echoed
//! back; typing reaches the peer; stop → deleted); a start to `busy` (Failed 486) and
//! to `ring` with a short invitation timeout (Failed, timeout); an incoming IM call to
//! the application accepted (messages and typing both ways, the peer hangs up) and one
//! through a `webhook` route declined busy; bad input answered with problem+json and
//! nothing changed.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod api_support;

use api_support::{Published, RawPeer, Rig};
use runtime::app::{CallEvents, EndpointNotice, InstantMessagingCall};
use runtime::calls::{
    ApplicationEndpointSettings, CallAcceptOptions, CallEstablishOptions, CallEvent, CallKind,
    CallReceived, CallState, CallTerminateOptions, ConversationSettings, EstablishFailure,
    InstantMessage, MessageOptions, Priority,
};
use serde_json::{Value, json};
use std::time::Duration;
use tokio::sync::mpsc::{self, UnboundedReceiver};

/// The events of one conversation, in order, as (type, data.type).
fn sequence(rig: &Rig, id: &str) -> Vec<(String, String)> {
    of_conversation(rig, id)
        .into_iter()
        .map(|e| {
            (
                e.event_type,
                e.data["type"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

fn of_conversation(rig: &Rig, id: &str) -> Vec<Published> {
    rig.events
        .all()
        .into_iter()
        .filter(|e| e.data["conversationId"] == json!(id))
        .collect()
}

fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
        .collect()
}

/// A peer that reports: dave on B answers IM calls and hands the test each
/// invitation, the call and its events.
type DaveCall = (Box<CallReceived>, InstantMessagingCall, CallEvents);

async fn dave(rig: &Rig) -> (String, UnboundedReceiver<DaveCall>) {
    let uri = format!("sip:dave@{}", rig.b_addr);
    let mut endpoint = rig
        .b
        .tandem
        .add_application_endpoint(ApplicationEndpointSettings::new(uri.clone()))
        .await
        .unwrap();
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Some(notice) = endpoint.next_event().await {
            let EndpointNotice::CallReceived(incoming) = notice else {
                continue;
            };
            let Some(call) = InstantMessagingCall::from_incoming(incoming.call) else {
                continue;
            };
            call.accept(CallAcceptOptions::new()).await.unwrap();
            let _ = tx.send((incoming.info, call, incoming.events));
        }
    });
    (uri, rx)
}

/// Waits for an event of a B-side call (carol's, dave's) that `matches`.
async fn carol_waits(events: &mut CallEvents, matches: impl Fn(&CallEvent) -> bool) -> CallEvent {
    let found = tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(event) = events.next().await {
            if matches(&event) {
                return Some(event);
            }
        }
        None
    })
    .await;
    match found {
        Ok(Some(event)) => event,
        _ => panic!("carol's call: no such event within 10 s"),
    }
}

async fn start(rig: &Rig, body: Value) -> String {
    let (status, created) = rig.post("/v1/conversations:startMessaging", body).await;
    assert_eq!(status, 201, "{created}");
    created["conversationId"].as_str().unwrap().to_owned()
}

async fn connected_to_echo(rig: &Rig) -> String {
    let id = start(
        rig,
        json!({ "application": "app", "to": { "sipUri": rig.demo_b("echo") } }),
    )
    .await;
    rig.events
        .wait("messagingInvitation", |d| {
            d["conversationId"] == json!(id) && d["state"] == "Connected"
        })
        .await;
    id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messaging_with_the_echo_user() {
    let rig = Rig::start("messaging_with_the_echo_user").await;
    let (status, created) = rig
        .post(
            "/v1/conversations:startMessaging",
            json!({
                "application": "app",
                "to": { "sipUri": rig.demo_b("echo") },
                "subject": "Order 42",
                "importance": "high",
                "threadId": "thread-42",
                "message": { "contentType": "text/plain", "content": "first words" },
                "operationContext": "start-1",
                "operationCallbackUri": "http://127.0.0.1:9/msg-hook"
            }),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    let id = created["conversationId"].as_str().unwrap().to_owned();
    assert_eq!(created["state"], "Connecting");
    assert_eq!(created["direction"], "Outgoing");
    assert_eq!(created["subject"], "Order 42");
    assert_eq!(created["importance"], "high");
    assert_eq!(created["threadId"], "thread-42");
    assert_eq!(created["participants"], json!([]));

    let connected = rig
        .events
        .wait("messagingInvitation", |d| {
            d["conversationId"] == json!(id) && d["type"] == "completed"
        })
        .await;
    assert_eq!(connected.data["state"], "Connected");
    assert_eq!(connected.data["status"], "Success");
    assert_eq!(connected.data["operationContext"], "start-1");
    assert_eq!(
        connected.callback.as_deref(),
        Some("http://127.0.0.1:9/msg-hook"),
        "the operation's callback wins"
    );
    assert_eq!(
        connected.subject.as_deref(),
        Some(format!("messaging/conversations/{id}").as_str())
    );
    rig.events
        .wait("conversation", |d| {
            d["conversationId"] == json!(id) && d["type"] == "updated"
        })
        .await;
    assert_eq!(
        sequence(&rig, &id),
        pairs(&[
            ("conversation", "added"),
            ("messaging", "added"),
            ("messagingInvitation", "started"),
            ("messagingInvitation", "completed"),
            ("participant", "added"),
            ("messaging", "updated"),
            ("conversation", "updated"),
        ])
    );
    let started = &of_conversation(&rig, &id)[2];
    assert_eq!(started.data["state"], "Connecting");
    assert_eq!(started.data["message"]["content"], "first words");

    // The reads.
    let (status, read) = rig.get(&format!("/v1/conversations/{id}")).await;
    assert_eq!(status, 200, "{read}");
    assert_eq!(read["state"], "Connected");
    assert_eq!(read["messaging"]["state"], "Connected");
    assert_eq!(read["subject"], "Order 42");
    assert_eq!(read["importance"], "high");
    assert_eq!(read["threadId"], "thread-42");
    assert_eq!(
        read["participants"][0]["identifier"]["sipUri"],
        rig.demo_b("echo")
    );
    assert!(
        read["correlationId"]
            .as_str()
            .is_some_and(|c| !c.is_empty())
    );
    let (status, list) = rig.get("/v1/conversations").await;
    assert_eq!(status, 200);
    assert_eq!(list["value"].as_array().unwrap().len(), 1);
    assert_eq!(list["value"][0]["conversationId"], json!(id));

    // Messages: completed, and the echo comes back as an incoming message.
    for (content_type, content, context) in [
        ("text/plain", "hello echo", "m-1"),
        ("text/html", "<b>bold</b> move", "m-2"),
    ] {
        let sent = rig.accepted(&format!("/v1/conversations/{id}/messaging:sendMessage"),
                json!({ "contentType": content_type, "content": content, "operationContext": context })).await;
        assert_eq!(sent["operationContext"], context);
        let message_id = sent["messageId"].as_str().unwrap().to_owned();
        let done = rig
            .events
            .wait("messageCompleted", |d| d["messageId"] == json!(message_id))
            .await;
        assert_eq!(done.data["operationContext"], context);
        assert_eq!(done.data["resultInformation"]["code"], 200);
        assert_eq!(done.data["conversationId"], json!(id));
        let echoed = rig
            .events
            .wait("message", |d| {
                d["conversationId"] == json!(id) && d["content"] == content
            })
            .await;
        assert_eq!(echoed.data["direction"], "Incoming");
        assert_eq!(echoed.data["contentType"], content_type);
    }

    // Typing: on the books (the echo user's side is checked with dave, below: a demo
    // user's events never leave B's engine).
    let (status, body) = rig
        .post(
            &format!("/v1/conversations/{id}/messaging:setIsTyping"),
            json!({ "isTyping": true }),
        )
        .await;
    assert_eq!(status, 204, "{body}");
    let (_, read) = rig.get(&format!("/v1/conversations/{id}")).await;
    assert_eq!(read["messaging"]["isTyping"], true);

    // Stop: the participant, messaging and the conversation are deleted.
    let (status, body) = rig
        .post(
            &format!("/v1/conversations/{id}/messaging:stopMessaging"),
            json!({ "operationContext": "stop-1" }),
        )
        .await;
    assert_eq!(status, 204, "{body}");
    let deleted = rig
        .events
        .wait("conversation", |d| {
            d["conversationId"] == json!(id) && d["type"] == "deleted"
        })
        .await;
    assert_eq!(deleted.data["operationContext"], "stop-1");
    let tail: Vec<(String, String)> = sequence(&rig, &id)
        .into_iter()
        .filter(|(t, _)| t != "message" && t != "messageCompleted")
        .skip(7)
        .collect();
    assert_eq!(
        tail,
        pairs(&[
            ("participant", "deleted"),
            ("messaging", "deleted"),
            ("conversation", "deleted"),
        ])
    );
    let (status, gone) = rig.get(&format!("/v1/conversations/{id}")).await;
    assert_eq!(status, 404, "{gone}");
    assert_eq!(gone["type"], "urn:tandem:problem:conversation-not-found");
    let (_, list) = rig.get("/v1/conversations").await;
    assert_eq!(list["value"], json!([]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_peer_sees_the_invitation_typing_messages_and_the_end() {
    let rig = Rig::start("the_peer_sees_the_invitation_typing_messages_and_the_end").await;
    let (dave_uri, mut dave_calls) = dave(&rig).await;
    let id = start(
        &rig,
        json!({
            "application": "app",
            "to": { "sipUri": dave_uri },
            "subject": "Order 43",
            "importance": "low",
            "threadId": "thread-43",
            "message": { "contentType": "text/html", "content": "<p>first</p>" }
        }),
    )
    .await;
    let (info, call, mut events) = tokio::time::timeout(Duration::from_secs(10), dave_calls.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(info.kind, CallKind::InstantMessaging);
    assert_eq!(info.subject.as_deref(), Some("Order 43"));
    assert_eq!(info.priority, Priority::NonUrgent);
    let first = info.first_message.as_ref().unwrap();
    assert_eq!(&first.body[..], b"<p>first</p>");
    assert!(first.content_type.starts_with("text/html"), "{first:?}");
    assert!(
        info.headers
            .iter()
            .any(|h| h.name.eq_ignore_ascii_case("Ms-Conversation-ID") && h.value == "thread-43"),
        "{:?}",
        info.headers
    );
    rig.events
        .wait("messagingInvitation", |d| {
            d["conversationId"] == json!(id) && d["state"] == "Connected"
        })
        .await;
    let typing = format!("/v1/conversations/{id}/messaging:setIsTyping");

    // RFC 3994: active, then idle.
    let (status, _) = rig.post(&typing, json!({ "isTyping": true })).await;
    assert_eq!(status, 204);
    carol_waits(&mut events, |e| {
        matches!(e, CallEvent::RemoteComposingChanged { composing: true })
    })
    .await;
    let (status, _) = rig.post(&typing, json!({ "isTyping": false })).await;
    assert_eq!(status, 204);
    carol_waits(&mut events, |e| {
        matches!(e, CallEvent::RemoteComposingChanged { composing: false })
    })
    .await;

    // Typing, then a message: the message ends composing (RFC 3994 §3.2).
    let (status, _) = rig.post(&typing, json!({ "isTyping": true })).await;
    assert_eq!(status, 204);
    let sent = rig
        .accepted(
            &format!("/v1/conversations/{id}/messaging:sendMessage"),
            json!({ "contentType": "text/plain", "content": "to dave" }),
        )
        .await;
    let got = carol_waits(&mut events, |e| {
        matches!(e, CallEvent::MessageReceived { .. })
    })
    .await;
    let CallEvent::MessageReceived {
        content_type, body, ..
    } = got
    else {
        unreachable!()
    };
    assert!(content_type.starts_with("text/plain"), "{content_type}");
    assert_eq!(&body[..], b"to dave");
    rig.events
        .wait("messageCompleted", |d| d["messageId"] == sent["messageId"])
        .await;
    let (_, read) = rig.get(&format!("/v1/conversations/{id}")).await;
    assert_eq!(read["messaging"]["isTyping"], false);

    // Dave answers.
    let delivered = call
        .send_instant_message(InstantMessage::text("hello app"), MessageOptions::default())
        .await
        .unwrap();
    assert_eq!(delivered, runtime::calls::DeliveryResult::Delivered);
    let incoming = rig
        .events
        .wait("message", |d| d["conversationId"] == json!(id))
        .await;
    assert_eq!(incoming.data["content"], "hello app");
    assert_eq!(
        incoming.data["participant"]["identifier"]["sipUri"],
        json!(dave_uri)
    );

    // Stop: dave's call ends (BYE).
    let (status, _) = rig
        .post(
            &format!("/v1/conversations/{id}/messaging:stopMessaging"),
            json!({}),
        )
        .await;
    assert_eq!(status, 204);
    carol_waits(&mut events, |e| {
        matches!(
            e,
            CallEvent::StateChanged {
                state: CallState::Terminated,
                ..
            }
        )
    })
    .await;
    rig.events
        .wait("conversation", |d| {
            d["conversationId"] == json!(id) && d["type"] == "deleted"
        })
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messaging_to_busy_fails_with_the_status() {
    let rig = Rig::start("messaging_to_busy_fails_with_the_status").await;
    let id = start(
        &rig,
        json!({
            "application": "app",
            "to": { "sipUri": rig.demo_b("busy") },
            "operationContext": "busy-1"
        }),
    )
    .await;
    let failed = rig
        .events
        .wait("messagingInvitation", |d| {
            d["conversationId"] == json!(id) && d["type"] == "completed"
        })
        .await;
    assert_eq!(failed.data["state"], "Failed");
    assert_eq!(failed.data["status"], "Failure");
    assert_eq!(failed.data["reason"]["sipStatus"], 486);
    assert_eq!(failed.data["reason"]["code"], "busy");
    assert!(
        failed.data["reason"]["message"]
            .as_str()
            .unwrap()
            .contains("Busy"),
        "{}",
        failed.data
    );
    assert_eq!(failed.data["resultInformation"]["code"], 486);
    assert_eq!(failed.data["operationContext"], "busy-1");
    rig.events
        .wait("conversation", |d| {
            d["conversationId"] == json!(id) && d["type"] == "deleted"
        })
        .await;
    assert_eq!(
        sequence(&rig, &id),
        pairs(&[
            ("conversation", "added"),
            ("messaging", "added"),
            ("messagingInvitation", "started"),
            ("messagingInvitation", "completed"),
            ("messaging", "deleted"),
            ("conversation", "deleted"),
        ]),
        "no participant ever joined"
    );
    let (status, _) = rig.get(&format!("/v1/conversations/{id}")).await;
    assert_eq!(status, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unanswered_invitation_times_out() {
    let rig = Rig::with("an_unanswered_invitation_times_out", |c| {
        c.messaging_invitation_timeout = Duration::from_millis(800);
    })
    .await;
    let id = start(
        &rig,
        json!({ "application": "app", "to": { "sipUri": rig.demo_b("ring") } }),
    )
    .await;
    let failed = rig
        .events
        .wait("messagingInvitation", |d| {
            d["conversationId"] == json!(id) && d["type"] == "completed"
        })
        .await;
    assert_eq!(failed.data["state"], "Failed");
    assert_eq!(failed.data["reason"]["code"], "timeout");
    assert_eq!(failed.data["reason"]["sipStatus"], 408);
    rig.events
        .wait("conversation", |d| {
            d["conversationId"] == json!(id) && d["type"] == "deleted"
        })
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_incoming_invitation_accepted_then_the_peer_hangs_up() {
    let rig = Rig::start("an_incoming_invitation_accepted_then_the_peer_hangs_up").await;
    let conversation = rig
        .carol
        .new_conversation(ConversationSettings {
            subject: Some("Need help".into()),
            priority: Priority::Urgent,
            ..ConversationSettings::default()
        })
        .await
        .unwrap();
    let (carol, mut carol_events) = InstantMessagingCall::new(&conversation).await.unwrap();
    let target = rig.demo_a("app");
    let options = CallEstablishOptions::new()
        .header("Ms-Conversation-ID", "t-7")
        .first_message(InstantMessage::text("hi app"));
    let placing = {
        let carol = carol.clone();
        tokio::spawn(async move { carol.establish(&target, options).await })
    };

    let invitation = rig
        .events
        .wait("messagingInvitation", |d| d["direction"] == "Incoming")
        .await;
    let d = &invitation.data;
    assert_eq!(d["type"], "started");
    assert_eq!(d["state"], "Connecting");
    assert!(
        d["from"]["identifier"]["sipUri"]
            .as_str()
            .unwrap()
            .starts_with("sip:carol@"),
        "{d}"
    );
    assert_eq!(d["subject"], "Need help");
    assert_eq!(d["importance"], "high");
    assert_eq!(d["threadId"], "t-7");
    assert_eq!(d["message"]["contentType"], "text/plain");
    assert_eq!(d["message"]["content"], "hi app");
    assert!(d["correlationId"].as_str().is_some());
    assert_eq!(invitation.application, "app");
    let context = d["invitationContext"].as_str().unwrap().to_owned();
    assert_eq!(
        rig.events
            .types()
            .iter()
            .filter(|t| *t == "IncomingCall")
            .count(),
        0,
        "an IM call is an invitation, not an IncomingCall"
    );

    let (status, accepted) = rig
        .post(
            "/v1/conversations:acceptMessaging",
            json!({ "invitationContext": context, "operationContext": "accept-1" }),
        )
        .await;
    assert_eq!(status, 200, "{accepted}");
    assert_eq!(accepted["direction"], "Incoming");
    assert_eq!(accepted["subject"], "Need help");
    assert_eq!(accepted["threadId"], "t-7");
    let id = accepted["conversationId"].as_str().unwrap().to_owned();
    let result = tokio::time::timeout(Duration::from_secs(10), placing)
        .await
        .unwrap()
        .unwrap();
    assert!(result.is_ok(), "{result:?}");
    let connected = rig
        .events
        .wait("messagingInvitation", |d| {
            d["conversationId"] == json!(id) && d["type"] == "completed"
        })
        .await;
    assert_eq!(connected.data["state"], "Connected");
    assert_eq!(connected.data["invitationContext"], json!(context));
    assert_eq!(connected.data["operationContext"], "accept-1");
    let (status, again) = rig
        .post(
            "/v1/conversations:acceptMessaging",
            json!({ "invitationContext": context }),
        )
        .await;
    assert_eq!(status, 409, "{again}");

    // Carol → the application.
    let delivered = carol
        .send_instant_message(
            InstantMessage::text("from carol"),
            MessageOptions::default(),
        )
        .await
        .unwrap();
    assert_eq!(delivered, runtime::calls::DeliveryResult::Delivered);
    let message = rig
        .events
        .wait("message", |d| d["conversationId"] == json!(id))
        .await;
    assert_eq!(message.data["content"], "from carol");
    assert_eq!(message.data["direction"], "Incoming");
    assert_eq!(message.data["contentType"], "text/plain");

    // The application → carol.
    let sent = rig
        .accepted(
            &format!("/v1/conversations/{id}/messaging:sendMessage"),
            json!({ "contentType": "text/html", "content": "<i>from app</i>" }),
        )
        .await;
    rig.events
        .wait("messageCompleted", |d| d["messageId"] == sent["messageId"])
        .await;
    let got = carol_waits(&mut carol_events, |e| {
        matches!(e, CallEvent::MessageReceived { .. })
    })
    .await;
    let CallEvent::MessageReceived {
        content_type, body, ..
    } = got
    else {
        unreachable!()
    };
    assert!(content_type.starts_with("text/html"), "{content_type}");
    assert_eq!(&body[..], b"<i>from app</i>");

    // Typing both ways.
    carol.set_composing(true).await.unwrap();
    let typing = rig
        .events
        .wait("typing", |d| d["conversationId"] == json!(id))
        .await;
    assert_eq!(typing.data["isTyping"], true);
    let (_, read) = rig.get(&format!("/v1/conversations/{id}")).await;
    assert_eq!(read["messaging"]["remoteIsTyping"], true);
    let (status, _) = rig
        .post(
            &format!("/v1/conversations/{id}/messaging:setIsTyping"),
            json!({ "isTyping": true }),
        )
        .await;
    assert_eq!(status, 204);
    carol_waits(&mut carol_events, |e| {
        matches!(e, CallEvent::RemoteComposingChanged { composing: true })
    })
    .await;

    // Carol hangs up.
    carol.terminate(CallTerminateOptions::new()).await.unwrap();
    let deleted = rig
        .events
        .wait("conversation", |d| {
            d["conversationId"] == json!(id) && d["type"] == "deleted"
        })
        .await;
    assert_eq!(deleted.data["reason"]["code"], "ended");
    let kinds: Vec<(String, String)> = sequence(&rig, &id)
        .into_iter()
        .filter(|(t, _)| t == "participant" || t == "messaging" || t == "conversation")
        .collect();
    assert_eq!(
        kinds,
        pairs(&[
            ("conversation", "added"),
            ("messaging", "added"),
            ("participant", "added"),
            ("messaging", "updated"),
            ("conversation", "updated"),
            ("participant", "deleted"),
            ("messaging", "deleted"),
            ("conversation", "deleted"),
        ])
    );
    let (status, _) = rig.get(&format!("/v1/conversations/{id}")).await;
    assert_eq!(status, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invitation_through_a_webhook_route_declined_busy() {
    let rig = Rig::start("an_invitation_through_a_webhook_route_declined_busy").await;
    let conversation = rig
        .carol
        .new_conversation(ConversationSettings::default())
        .await
        .unwrap();
    let (carol, _events) = InstantMessagingCall::new(&conversation).await.unwrap();
    let target = rig.demo_a("support");
    let placing =
        tokio::spawn(async move { carol.establish(&target, CallEstablishOptions::new()).await });
    let invitation = rig
        .events
        .wait("messagingInvitation", |d| d["direction"] == "Incoming")
        .await;
    assert_eq!(invitation.application, "app", "the webhook route names app");
    let context = invitation.data["invitationContext"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        invitation.data["to"]["sipUri"]
            .as_str()
            .unwrap()
            .starts_with("sip:support@")
    );
    let (status, body) = rig
        .post(
            "/v1/conversations:declineMessaging",
            json!({
                "invitationContext": context,
                "reason": "busy",
                "operationContext": "no",
                "operationCallbackUri": "http://127.0.0.1:9/decline-hook"
            }),
        )
        .await;
    assert_eq!(status, 204, "{body}");
    let result = tokio::time::timeout(Duration::from_secs(10), placing)
        .await
        .unwrap()
        .unwrap();
    match result {
        Err(runtime::app::Error::Establish(EstablishFailure::Refused { status, .. })) => {
            assert_eq!(status, 486)
        }
        other => panic!("{other:?}"),
    }
    let over = rig
        .events
        .wait("messagingInvitation", |d| {
            d["invitationContext"] == json!(context) && d["type"] == "completed"
        })
        .await;
    assert_eq!(over.data["state"], "Failed");
    assert_eq!(over.data["reason"]["sipStatus"], 486);
    assert_eq!(over.data["operationContext"], "no");
    assert_eq!(
        over.callback.as_deref(),
        Some("http://127.0.0.1:9/decline-hook")
    );
    let (status, again) = rig
        .post(
            "/v1/conversations:acceptMessaging",
            json!({ "invitationContext": context }),
        )
        .await;
    assert_eq!(status, 409, "{again}");
    let (_, list) = rig.get("/v1/conversations").await;
    assert_eq!(list["value"], json!([]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_changes_nothing() {
    let rig = Rig::start("bad_input_changes_nothing").await;
    // One conversation that stays Connecting (ring never answers).
    let ringing = start(
        &rig,
        json!({ "application": "app", "to": { "sipUri": rig.demo_b("ring") } }),
    )
    .await;
    let connected = connected_to_echo(&rig).await;
    // Let the setup's events settle.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let before_events = rig.events.all().len();
    let (_, before_list) = rig.get("/v1/conversations").await;

    let echo = rig.demo_b("echo");
    let send = format!("/v1/conversations/{connected}/messaging:sendMessage");
    let oversize = "x".repeat(4097);
    let cases: Vec<(String, Value, u16, Option<&str>)> = vec![
        (
            "/v1/conversations:startMessaging".into(),
            json!({ "application": "app", "to": { "sipUri": echo }, "bogus": 1 }),
            400,
            Some("bogus"),
        ),
        (
            "/v1/conversations:startMessaging".into(),
            json!({ "application": "app", "to": { "sipUri": echo },
                    "message": { "contentType": "text/xml", "content": "<a/>" } }),
            400,
            Some("message.contentType"),
        ),
        (
            "/v1/conversations:startMessaging".into(),
            json!({ "application": "app", "to": { "sipUri": echo }, "subject": "a\r\nVia: evil" }),
            400,
            Some("subject"),
        ),
        (
            "/v1/conversations:startMessaging".into(),
            json!({ "application": "app", "to": { "sipUri": echo }, "threadId": "a b" }),
            400,
            Some("threadId"),
        ),
        (
            "/v1/conversations:startMessaging".into(),
            json!({ "application": "app", "to": { "sipUri": echo }, "importance": "urgent" }),
            400,
            Some("importance"),
        ),
        (
            "/v1/conversations:startMessaging".into(),
            json!({ "application": "app", "to": { "sipUri": echo },
                    "message": { "contentType": "text/plain", "content": oversize } }),
            400,
            Some("message.content"),
        ),
        (
            "/v1/conversations:startMessaging".into(),
            json!({ "application": "nobody", "to": { "sipUri": echo } }),
            422,
            Some("application"),
        ),
        (
            "/v1/conversations:startMessaging".into(),
            json!({ "application": "app", "to": { "sipUri": "http://example.com" } }),
            422,
            Some("to.sipUri"),
        ),
        (
            send.clone(),
            json!({ "contentType": "application/json", "content": "{}" }),
            400,
            Some("contentType"),
        ),
        (
            send.clone(),
            json!({ "contentType": "text/plain", "content": oversize }),
            400,
            Some("content"),
        ),
        (
            send.clone(),
            json!({ "contentType": "text/plain", "content": "" }),
            400,
            Some("content"),
        ),
        (
            send.clone(),
            json!({ "contentType": "text/plain", "content": "x", "extra": true }),
            400,
            Some("extra"),
        ),
        (
            format!("/v1/conversations/{connected}/messaging:setIsTyping"),
            json!({ "isTyping": "yes" }),
            400,
            Some("isTyping"),
        ),
        (
            send.clone(),
            json!(["text/plain", "fields in order"]),
            400,
            None,
        ),
        (
            format!("/v1/conversations/{connected}/messaging:stopMessaging"),
            json!([null, null]),
            400,
            None,
        ),
        (
            "/v1/conversations/no-such-id/messaging:sendMessage".into(),
            json!({ "contentType": "text/plain", "content": "x" }),
            404,
            None,
        ),
        (
            "/v1/conversations/no-such-id/messaging:setIsTyping".into(),
            json!({ "isTyping": true }),
            404,
            None,
        ),
        (
            "/v1/conversations/no-such-id/messaging:stopMessaging".into(),
            json!({}),
            404,
            None,
        ),
        (
            format!("/v1/conversations/{connected}/messaging:dance"),
            json!({}),
            404,
            None,
        ),
        (
            "/v1/conversations:acceptMessaging".into(),
            json!({ "invitationContext": "not-a-context" }),
            404,
            Some("invitationContext"),
        ),
        (
            "/v1/conversations:declineMessaging".into(),
            json!({ "invitationContext": "not-a-context", "reason": "maybe" }),
            400,
            Some("reason"),
        ),
        (
            format!("/v1/conversations/{ringing}/messaging:sendMessage"),
            json!({ "contentType": "text/plain", "content": "too early" }),
            409,
            None,
        ),
        (
            format!("/v1/conversations/{ringing}/messaging:setIsTyping"),
            json!({ "isTyping": true }),
            409,
            None,
        ),
    ];
    for (path, body, status, field) in cases {
        let (got, problem) = rig.post(&path, body.clone()).await;
        assert_eq!(got, status, "{path} {body}: {problem}");
        assert_eq!(problem["status"], status, "{problem}");
        assert!(
            problem["type"]
                .as_str()
                .unwrap()
                .starts_with("urn:tandem:problem:"),
            "{problem}"
        );
        assert_eq!(problem["field"].as_str(), field, "{path} {body}: {problem}");
    }
    // Not JSON: 415; GET of an action: 405 with Allow POST; POST of a conversation: 405.
    let response = rig
        .client
        .post(rig.url(&send))
        .bearer_auth(api_support::TOKEN)
        .header("content-type", "text/plain")
        .body("hello")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 415);
    let response = rig
        .client
        .get(rig.url(&send))
        .bearer_auth(api_support::TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 405);
    assert_eq!(response.headers()["allow"], "POST");
    let response = rig
        .client
        .post(rig.url(&format!("/v1/conversations/{connected}")))
        .bearer_auth(api_support::TOKEN)
        .header("content-type", "application/json")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 405);
    assert_eq!(response.headers()["allow"], "GET,HEAD");
    // Larger than the body limit: 413.
    let huge = format!(
        "{{\"contentType\":\"text/plain\",\"content\":\"{}\"}}",
        "y".repeat(70 * 1024)
    );
    // (A client of its own: the server closes the connection without reading the body.)
    let response = reqwest::Client::new()
        .post(rig.url(&send))
        .bearer_auth(api_support::TOKEN)
        .header("content-type", "application/json")
        .body(huge)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 413);
    assert_eq!(
        response.headers()["content-type"],
        control_api::PROBLEM_JSON
    );
    // No token: 401.
    let response = rig
        .client
        .get(rig.url("/v1/conversations"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);

    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        rig.events.all().len(),
        before_events,
        "no event came of bad input: {:#?}",
        &rig.events.all()[before_events..]
    );
    let (_, after_list) = rig.get("/v1/conversations").await;
    assert_eq!(after_list, before_list);

    // Stop takes an empty body; stopping the connecting one cancels its invitation.
    let response = rig
        .client
        .post(rig.url(&format!(
            "/v1/conversations/{ringing}/messaging:stopMessaging"
        )))
        .bearer_auth(api_support::TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 204);
    let cancelled = rig
        .events
        .wait("messagingInvitation", |d| {
            d["conversationId"] == json!(ringing) && d["type"] == "completed"
        })
        .await;
    assert_eq!(cancelled.data["state"], "Failed");
    assert_eq!(cancelled.data["reason"]["code"], "cancelled");
    rig.events
        .wait("conversation", |d| {
            d["conversationId"] == json!(ringing) && d["type"] == "deleted"
        })
        .await;
    // `null` is an absent body.
    let (status, again) = rig
        .post(
            &format!("/v1/conversations/{connected}/messaging:stopMessaging"),
            Value::Null,
        )
        .await;
    assert_eq!(status, 204, "{again}");
    let (status, twice) = rig
        .post(
            &format!("/v1/conversations/{connected}/messaging:stopMessaging"),
            json!({}),
        )
        .await;
    assert!(status == 409 || status == 404, "{status} {twice}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_document_describes_messaging() {
    let rig = Rig::start("the_document_describes_messaging").await;
    let (status, doc) = rig.get("/v1/openapi.json").await;
    assert_eq!(status, 200);
    std::fs::write(
        std::env::temp_dir().join("tandem-api-messaging-openapi.json"),
        serde_json::to_vec_pretty(&doc).unwrap(),
    )
    .unwrap();
    let schemas = &doc["components"]["schemas"];
    assert_eq!(
        schemas["StartMessagingRequest"]["properties"]["application"]["enum"],
        json!(["app", "slow"])
    );
    assert_eq!(
        schemas["StartMessagingRequest"]["additionalProperties"],
        Value::Bool(false)
    );
    assert_eq!(
        schemas["MessageContentType"]["enum"],
        json!(["text/plain", "text/html"])
    );
    assert_eq!(
        schemas["SendMessageRequest"]["properties"]["content"]["maxLength"],
        4096
    );
    let tag = doc["tags"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "messaging")
        .unwrap();
    let described = tag["description"].as_str().unwrap();
    for event in [
        "messagingInvitation",
        "messageCompleted",
        "messageFailed",
        "typing",
        "participant",
    ] {
        assert!(described.contains(event), "{event} is not described");
    }
    assert_eq!(
        doc["paths"]["/v1/conversations/{conversationId}/messaging:sendMessage"]["post"]["security"],
        Value::Null,
        "the document-wide bearer requirement applies"
    );
    assert_eq!(doc["security"], json!([{ "bearer": [] }]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_the_peer_refuses_fails_with_its_status() {
    let rig = Rig::start("a_message_the_peer_refuses").await;
    // A bare peer: it takes the IM call, then refuses the MESSAGE with 488.
    let peer = RawPeer::bind("127.0.0.75").await;
    let id = start(
        &rig,
        json!({ "application": "app", "to": { "sipUri": peer.uri("erin") } }),
    )
    .await;
    let (invite, from) = peer.recv("INVITE").await;
    let offer = invite.split("\r\n\r\n").nth(1).unwrap();
    let m_line = offer
        .lines()
        .find(|l| l.starts_with("m=message"))
        .unwrap_or_else(|| panic!("an m=message offer: {offer}"));
    let ip = peer.addr.ip();
    let answer = format!(
        "v=0\r\no=- 1 1 IN IP4 {ip}\r\ns=-\r\nc=IN IP4 {ip}\r\nt=0 0\r\n{m_line}\r\n\
         a=accept-types:text/plain text/html\r\n"
    );
    peer.respond_with(
        &invite,
        200,
        "OK",
        "erin",
        from,
        Some(("application/sdp", &answer)),
    )
    .await;
    peer.recv("ACK").await;
    rig.events
        .wait("messagingInvitation", |d| {
            d["conversationId"] == json!(id) && d["state"] == "Connected"
        })
        .await;
    let sent = rig
        .accepted(
            &format!("/v1/conversations/{id}/messaging:sendMessage"),
            json!({
                "contentType": "text/plain",
                "content": "refused",
                "operationContext": "msg-1"
            }),
        )
        .await;
    let (message, from) = peer.recv("MESSAGE").await;
    assert!(message.ends_with("refused"), "{message}");
    peer.respond(&message, 488, "Not Acceptable Here", "erin", from)
        .await;
    let failed = rig
        .events
        .wait("messageFailed", |d| d["messageId"] == sent["messageId"])
        .await;
    assert_eq!(failed.data["sipStatus"], 488);
    assert_eq!(failed.data["status"], "Failure");
    assert_eq!(failed.data["resultInformation"]["code"], 488);
    assert_eq!(failed.data["operationContext"], "msg-1");
    assert!(
        !rig.events.types().iter().any(|t| t == "messageCompleted"),
        "{:?}",
        rig.events.types()
    );
}
