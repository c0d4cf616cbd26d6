//! Call flows through the control API over real sockets: create → CallConnected →
//! hangup → CallDisconnected; a refused create; incoming calls answered (also through a
//! `webhook` route), rejected busy, redirected, left to time out; a blind transfer the
//! peer accepts (CallTransferAccepted with the target's 200); add participant then
//! cancel, add then remove; park and retrieve; play and DTMF both ways.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod api_support;

use api_support::{EventStream, RawPeer, Rig, bob_waits, header, write_wav};
use runtime::calls::{CallEvent, CallState, EstablishFailure, MediaFlowState};
use serde_json::json;

fn is_flow_active(e: &CallEvent) -> bool {
    matches!(
        e,
        CallEvent::FlowStateChanged {
            state: MediaFlowState::Active,
            ..
        }
    )
}

fn is_terminated(e: &CallEvent) -> bool {
    matches!(
        e,
        CallEvent::StateChanged {
            state: CallState::Terminated,
            ..
        }
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_connect_read_and_hang_up() {
    let mut rig = Rig::start("create_connect_read_and_hang_up").await;
    let (status, created) = rig
        .post(
            "/v1/calls",
            json!({
                "application": "app",
                "targets": [{ "sipUri": rig.bob() }],
                "callerDisplayName": "The App",
                "customContext": {
                    "sipHeaders": { "X-Ticket": "T-42" },
                    "userToUser": "56a390f3d2b7310023a2;encoding=hex"
                },
                "operationContext": "create-1",
                "operationCallbackUri": "http://127.0.0.1:9/create-hook"
            }),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    let id = created["callConnectionId"].as_str().unwrap().to_owned();
    assert_eq!(created["callConnectionState"], "connecting");
    assert_eq!(
        created["participants"][0]["identifier"]["sipUri"],
        rig.bob()
    );

    let connected = rig.events.wait_call("CallConnected", &id).await;
    assert_eq!(connected.data["operationContext"], "create-1");
    assert_eq!(connected.data["resultInformation"]["code"], 200);
    assert_eq!(
        connected.callback.as_deref(),
        Some("http://127.0.0.1:9/create-hook"),
        "the operation's callback wins"
    );
    assert_eq!(
        connected.subject.as_deref(),
        Some(format!("calling/callConnections/{id}").as_str())
    );
    let correlation = connected.data["correlationId"].as_str().unwrap().to_owned();
    assert!(!correlation.is_empty());

    // Bob got the custom context.
    let bob = rig.bob_calls.recv().await.unwrap();
    let header = |name: &str| {
        bob.headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| h.value.clone())
    };
    assert_eq!(header("X-Ticket").as_deref(), Some("T-42"));
    assert_eq!(
        header("User-to-User").as_deref(),
        Some("56a390f3d2b7310023a2;encoding=hex")
    );
    assert!(
        header("From").unwrap().contains("The App"),
        "{:?}",
        header("From")
    );

    let (status, props) = rig.get(&format!("/v1/calls/{id}")).await;
    assert_eq!(status, 200);
    assert_eq!(props["callConnectionState"], "connected");
    assert_eq!(props["correlationId"], json!(correlation));
    assert_eq!(props["direction"], "outbound");
    assert!(props["createdAt"].as_str().unwrap().ends_with('Z'));
    let participant = props["participants"][0].clone();
    assert_eq!(participant["state"], "connected");
    let pid = participant["participantId"].as_str().unwrap();
    let (status, one) = rig.get(&format!("/v1/calls/{id}/participants/{pid}")).await;
    assert_eq!((status, one), (200, participant));
    let (status, list) = rig.get(&format!("/v1/calls/{id}/participants")).await;
    assert_eq!(status, 200);
    assert_eq!(list["value"].as_array().unwrap().len(), 1);
    assert_eq!(rig.call_ids().await, vec![id.clone()]);
    let updated = rig.events.wait_call("ParticipantsUpdated", &id).await;
    assert_eq!(updated.data["sequenceNumber"], 1);

    let (status, _) = rig
        .post(
            &format!("/v1/calls/{id}:hangup"),
            json!({ "forEveryone": true, "operationContext": "bye" }),
        )
        .await;
    assert_eq!(status, 204);
    let disconnected = rig.events.wait_call("CallDisconnected", &id).await;
    assert_eq!(disconnected.data["operationContext"], "bye");
    assert_eq!(
        disconnected.callback.as_deref(),
        Some("http://127.0.0.1:9/app-hook"),
        "without an operation callback, the application's"
    );
    let mut bob = bob;
    bob_waits(&mut bob, is_terminated).await;
    let (status, gone) = rig.get(&format!("/v1/calls/{id}")).await;
    assert_eq!(status, 404, "{gone}");
    assert!(rig.call_ids().await.is_empty());
    let types: Vec<String> = rig
        .events
        .of_call(&id)
        .into_iter()
        .map(|e| e.event_type)
        .collect();
    assert_eq!(
        types,
        ["CallConnected", "ParticipantsUpdated", "CallDisconnected"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hanging_up_a_call_still_ringing_gets_its_call_disconnected() {
    let rig = Rig::start("hanging_up_a_call_still_ringing").await;
    let (status, created) = rig
        .post(
            "/v1/calls",
            json!({
                "application": "app",
                "targets": [{ "sipUri": rig.demo_b("ring") }],
                "operationContext": "ringing"
            }),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    let id = created["callConnectionId"].as_str().unwrap().to_owned();
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let (status, body) = rig
        .post(
            &format!("/v1/calls/{id}:hangup"),
            json!({ "forEveryone": true, "operationContext": "give-up" }),
        )
        .await;
    assert_eq!(status, 204, "{body}");
    let gone = rig.events.wait_call("CallDisconnected", &id).await;
    assert_eq!(gone.data["operationContext"], "give-up");
    let types: Vec<String> = rig
        .events
        .of_call(&id)
        .into_iter()
        .map(|e| e.event_type)
        .collect();
    assert_eq!(types, ["CreateCallFailed", "CallDisconnected"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_create_raises_create_call_failed_with_the_status() {
    let rig = Rig::start("a_refused_create_raises_create_call_failed").await;
    let (status, created) = rig
        .post(
            "/v1/calls",
            json!({
                "application": "app",
                "targets": [{ "sipUri": rig.demo_b("busy") }],
                "operationContext": "doomed"
            }),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    let id = created["callConnectionId"].as_str().unwrap().to_owned();
    let failed = rig.events.wait_call("CreateCallFailed", &id).await;
    assert_eq!(failed.data["resultInformation"]["code"], 486);
    assert_eq!(failed.data["operationContext"], "doomed");
    assert!(
        failed.data["resultInformation"]["message"]
            .as_str()
            .unwrap()
            .contains("Busy"),
        "{}",
        failed.data
    );
    // Gone, and no CallConnected/CallDisconnected for it.
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    assert!(rig.call_ids().await.is_empty());
    let types: Vec<String> = rig
        .events
        .of_call(&id)
        .into_iter()
        .map(|e| e.event_type)
        .collect();
    assert_eq!(types, ["CreateCallFailed"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_incoming_call_through_a_webhook_route_is_answered() {
    let rig = Rig::start("an_incoming_call_through_a_webhook_route").await;
    let carol = rig
        .carol_calls("support", &[("X-Case", "7"), ("User-to-User", "abcd")])
        .await;
    let incoming = rig.events.wait("IncomingCall", |_| true).await;
    assert_eq!(incoming.application, "app");
    let data = &incoming.data;
    assert_eq!(data["customContext"]["sipHeaders"]["X-Case"], "7");
    assert_eq!(data["customContext"]["userToUser"], "abcd");
    assert!(
        data["from"]["sipUri"]
            .as_str()
            .unwrap()
            .starts_with("sip:carol@"),
        "{data}"
    );
    assert!(data["to"]["sipUri"].as_str().unwrap().contains("support"));
    let context = data["incomingCallContext"].as_str().unwrap().to_owned();
    assert!(context.len() >= 43, "an unguessable token: {context}");

    let (status, answered) = rig
        .post(
            "/v1/calls:answer",
            json!({ "incomingCallContext": context, "operationContext": "answer-1" }),
        )
        .await;
    assert_eq!(status, 200, "{answered}");
    assert_eq!(answered["direction"], "inbound");
    let id = answered["callConnectionId"].as_str().unwrap().to_owned();
    let (result, call, mut events) = carol.await.unwrap();
    assert!(result.is_ok(), "{result:?}");
    let connected = rig.events.wait_call("CallConnected", &id).await;
    assert_eq!(connected.data["operationContext"], "answer-1");
    assert_eq!(connected.data["correlationId"], data["correlationId"]);

    // Answering twice is a conflict.
    let (status, problem) = rig
        .post(
            "/v1/calls:answer",
            json!({ "incomingCallContext": context }),
        )
        .await;
    assert_eq!(status, 409, "{problem}");
    assert_eq!(problem["type"], "urn:tandem:problem:wrong-state");

    // Carol hangs up: CallDisconnected.
    call.terminate(Default::default()).await.unwrap();
    while let Some(e) = events.next().await {
        if is_terminated(&e) {
            break;
        }
    }
    let disconnected = rig.events.wait_call("CallDisconnected", &id).await;
    assert_eq!(disconnected.data["resultInformation"]["code"], 200);
    assert!(rig.call_ids().await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reject_busy_redirect_and_a_timeout() {
    let rig = Rig::start("reject_busy_redirect_and_a_timeout").await;

    // Reject, busy: carol gets 486.
    let carol = rig.carol_calls("app", &[]).await;
    let incoming = rig.events.wait("IncomingCall", |_| true).await;
    let context = incoming.data["incomingCallContext"]
        .as_str()
        .unwrap()
        .to_owned();
    let (status, body) = rig
        .post(
            "/v1/calls:reject",
            json!({ "incomingCallContext": context, "callRejectReason": "busy" }),
        )
        .await;
    assert_eq!(status, 204, "{body}");
    let (result, _, _) = carol.await.unwrap();
    match result {
        Err(runtime::app::Error::Establish(EstablishFailure::Refused { status, .. })) => {
            assert_eq!(status, 486)
        }
        other => panic!("{other:?}"),
    }
    let (status, _) = rig
        .post(
            "/v1/calls:answer",
            json!({ "incomingCallContext": context }),
        )
        .await;
    assert_eq!(status, 409, "answering a rejected call");

    // Any status: 606.
    let carol = rig.carol_calls("app", &[]).await;
    let second = rig
        .events
        .wait("IncomingCall", |d| {
            d["incomingCallContext"] != json!(context)
        })
        .await;
    let context2 = second.data["incomingCallContext"]
        .as_str()
        .unwrap()
        .to_owned();
    let (status, _) = rig
        .post(
            "/v1/calls:reject",
            json!({ "incomingCallContext": context2, "sipStatus": 606 }),
        )
        .await;
    assert_eq!(status, 204);
    let (result, _, _) = carol.await.unwrap();
    assert!(
        matches!(
            result,
            Err(runtime::app::Error::Establish(EstablishFailure::Refused {
                status: 606,
                ..
            }))
        ),
        "{result:?}"
    );

    // Redirect: 302 with the target as Contact.
    let carol = rig.carol_calls("app", &[]).await;
    let third = rig
        .events
        .wait("IncomingCall", |d| {
            d["incomingCallContext"] != json!(context)
                && d["incomingCallContext"] != json!(context2)
        })
        .await;
    let context3 = third.data["incomingCallContext"]
        .as_str()
        .unwrap()
        .to_owned();
    let target = rig.demo_b("echo");
    let (status, body) = rig
        .post(
            "/v1/calls:redirect",
            json!({ "incomingCallContext": context3, "target": { "sipUri": target } }),
        )
        .await;
    assert_eq!(status, 204, "{body}");
    let (result, _, _) = carol.await.unwrap();
    match result {
        Err(runtime::app::Error::Establish(EstablishFailure::Redirected { status, targets })) => {
            assert_eq!(status, 302);
            assert!(targets.iter().any(|t| t.contains(&target)), "{targets:?}");
        }
        other => panic!("{other:?}"),
    }

    // Nobody answers `slow` in its 700 ms: 480, and a late answer is a conflict.
    let carol = rig.carol_calls("slow", &[]).await;
    let late = rig
        .events
        .wait("IncomingCall", |d| {
            d["to"]["sipUri"]
                .as_str()
                .is_some_and(|to| to.contains("slow@"))
        })
        .await;
    assert_eq!(late.application, "slow");
    let late_context = late.data["incomingCallContext"]
        .as_str()
        .unwrap()
        .to_owned();
    let (result, _, _) = carol.await.unwrap();
    assert!(
        matches!(
            result,
            Err(runtime::app::Error::Establish(EstablishFailure::Refused {
                status: 480,
                ..
            }))
        ),
        "{result:?}"
    );
    let (status, problem) = rig
        .post(
            "/v1/calls:answer",
            json!({ "incomingCallContext": late_context }),
        )
        .await;
    assert_eq!(status, 409, "{problem}");
    assert!(problem["detail"].as_str().unwrap().contains("in time"));
    assert!(rig.call_ids().await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blind_transfer_the_peer_accepts() {
    let mut rig = Rig::start("a_blind_transfer_the_peer_accepts").await;
    let id = rig.connected_call(&rig.bob(), "to-bob").await;
    let _bob = rig.bob_calls.recv().await.unwrap();
    let target = rig.demo_a("echo");
    let body = rig
        .accepted(
            &format!("/v1/calls/{id}:transferToParticipant"),
            json!({
                "targetParticipant": { "sipUri": target },
                "customContext": { "sipHeaders": { "X-Transfer": "yes" } },
                "operationContext": "xfer"
            }),
        )
        .await;
    assert_eq!(body["operationContext"], "xfer");
    let accepted = rig.events.wait_call("CallTransferAccepted", &id).await;
    assert_eq!(accepted.data["sipStatus"], 200);
    assert_eq!(accepted.data["resultInformation"]["message"], "200 OK");
    assert_eq!(accepted.data["operationContext"], "xfer");
    assert_eq!(accepted.data["transferTarget"]["sipUri"], json!(target));
    assert_eq!(
        accepted.data["transferee"]["identifier"]["sipUri"],
        rig.bob()
    );
    // RFC 5589 §6: our leg ends after a successful transfer.
    rig.events.wait_call("CallDisconnected", &id).await;
    let types: Vec<String> = rig
        .events
        .of_call(&id)
        .into_iter()
        .map(|e| e.event_type)
        .collect();
    assert_eq!(
        types,
        [
            "CallConnected",
            "ParticipantsUpdated",
            "CallTransferAccepted",
            "CallDisconnected"
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transfer_to_a_busy_target_fails_with_its_status() {
    let mut rig = Rig::start("a_transfer_to_a_busy_target_fails").await;
    let id = rig.connected_call(&rig.bob(), "to-bob").await;
    let _bob = rig.bob_calls.recv().await.unwrap();
    rig.accepted(
        &format!("/v1/calls/{id}:transferToParticipant"),
        json!({ "targetParticipant": { "sipUri": rig.demo_a("busy") } }),
    )
    .await;
    let failed = rig.events.wait_call("CallTransferFailed", &id).await;
    assert_eq!(failed.data["sipStatus"], 486);
    assert_eq!(failed.data["resultInformation"]["code"], 486);
    // The target's own words, from the NOTIFY's sipfrag status line.
    assert_eq!(failed.data["resultInformation"]["message"], "486 Busy Here");
    // The call stays.
    let (status, props) = rig.get(&format!("/v1/calls/{id}")).await;
    assert_eq!(status, 200);
    assert_eq!(props["callConnectionState"], "connected");
    assert_eq!(props["participants"][0]["state"], "connected");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn add_participant_then_cancel_and_add_then_remove() {
    let mut rig = Rig::start("add_participant_then_cancel").await;
    let id = rig.connected_call(&rig.bob(), "to-bob").await;
    let bob = rig.bob_calls.recv().await.unwrap();

    // `ring` never answers: cancel it.
    let added = rig
        .accepted(
            &format!("/v1/calls/{id}/participants:add"),
            json!({
                "participantToAdd": { "sipUri": rig.demo_b("ring") },
                "invitationTimeoutInSeconds": 30,
                "operationContext": "add-ring"
            }),
        )
        .await;
    let invitation = added["invitationId"].as_str().unwrap().to_owned();
    assert_eq!(added["participant"]["state"], "connecting");
    let (_, list) = rig.get(&format!("/v1/calls/{id}/participants")).await;
    assert_eq!(list["value"].as_array().unwrap().len(), 2);
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    rig.accepted(
        &format!("/v1/calls/{id}/participants:cancelAddParticipant"),
        json!({ "invitationId": invitation, "operationContext": "cancel-ring" }),
    )
    .await;
    let cancelled = rig
        .events
        .wait_call("CancelAddParticipantSucceeded", &id)
        .await;
    assert_eq!(cancelled.data["invitationId"], json!(invitation));
    assert_eq!(cancelled.data["operationContext"], "cancel-ring");
    // The cancelled call is gone once its CANCEL is through (it may still be
    // `disconnecting` when the event comes).
    let mut list = json!(null);
    for _ in 0..40 {
        list = rig.get(&format!("/v1/calls/{id}/participants")).await.1;
        if list["value"].as_array().unwrap().len() == 1 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(list["value"].as_array().unwrap().len(), 1, "{list}");
    // A second cancel: the invitation is over.
    let (status, _) = rig
        .post(
            &format!("/v1/calls/{id}/participants:cancelAddParticipant"),
            json!({ "invitationId": invitation }),
        )
        .await;
    assert_eq!(status, 202);
    rig.events
        .wait("CancelAddParticipantFailed", |d| {
            d["invitationId"] == json!(invitation)
        })
        .await;
    assert!(
        !rig.events
            .types()
            .contains(&"AddParticipantFailed".to_owned()),
        "a cancelled invitation does not also fail"
    );

    // `echo` answers: a three-party call.
    let echo = rig.demo_b("echo");
    let added = rig
        .accepted(
            &format!("/v1/calls/{id}/participants:add"),
            json!({ "participantToAdd": { "sipUri": echo }, "operationContext": "add-echo" }),
        )
        .await;
    let succeeded = rig.events.wait_call("AddParticipantSucceeded", &id).await;
    assert_eq!(succeeded.data["operationContext"], "add-echo");
    assert_eq!(succeeded.data["invitationId"], added["invitationId"]);
    let three = rig
        .events
        .wait("ParticipantsUpdated", |d| {
            d["callConnectionId"] == json!(id) && d["participants"].as_array().unwrap().len() == 2
        })
        .await;
    let seq = three.data["sequenceNumber"].as_u64().unwrap();
    assert!(seq >= 2, "{}", three.data);
    // Bob and echo are in the call's room: what bob plays comes back to him from echo
    // (before he heard only the API's silence).
    let mut bob = bob;
    bob_waits(&mut bob, is_flow_active).await;
    let recording = std::env::temp_dir().join(format!(
        "tandem-api-{}-joined-hears.wav",
        std::process::id()
    ));
    let tone = write_wav("bob-says", 1.5);
    let flow = bob.call.flow();
    flow.record_to(&recording).await.unwrap();
    flow.play_file(&tone, false).await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(1200)).await;
    flow.stop_recording().await.unwrap();
    let heard = runtime::media::load_wav_file(&recording).unwrap();
    assert!(heard.len() >= 8000, "{} samples", heard.len());
    let late = &heard[heard.len() - 4000..];
    let level = runtime::media::tone_level_dbm0(late, 1000.0);
    assert!(
        level > -30.0,
        "bob hears his own 1 kHz back through echo: {level} dBm0"
    );
    // Bob and echo talk in the call's room: a play to the call goes to the room.
    let wav = write_wav("joined", 0.2);
    rig.accepted(
        &format!("/v1/calls/{id}:play"),
        json!({ "file": wav.display().to_string(), "operationContext": "to-room" }),
    )
    .await;
    let played = rig
        .events
        .wait("PlayCompleted", |d| d["operationContext"] == "to-room")
        .await;
    assert_eq!(played.data["callConnectionId"], json!(id));
    // A fourth party is welcome in a room: it rings, and is cancelled.
    let fourth = rig
        .accepted(
            &format!("/v1/calls/{id}/participants:add"),
            json!({ "participantToAdd": { "sipUri": rig.demo_b("ring") } }),
        )
        .await;
    let (status, _) = rig
        .post(
            &format!("/v1/calls/{id}/participants:cancelAddParticipant"),
            json!({ "invitationId": fourth["invitationId"] }),
        )
        .await;
    assert_eq!(status, 202);
    rig.events
        .wait("CancelAddParticipantSucceeded", |d| {
            d["invitationId"] == fourth["invitationId"]
        })
        .await;

    rig.accepted(
        &format!("/v1/calls/{id}/participants:remove"),
        json!({ "participantToRemove": { "sipUri": echo }, "operationContext": "rm" }),
    )
    .await;
    let removed = rig
        .events
        .wait_call("RemoveParticipantSucceeded", &id)
        .await;
    assert_eq!(removed.data["operationContext"], "rm");
    assert_eq!(
        removed.data["participant"]["identifier"]["sipUri"],
        json!(echo)
    );
    let two = rig
        .events
        .wait("ParticipantsUpdated", |d| {
            d["callConnectionId"] == json!(id) && d["sequenceNumber"].as_u64().unwrap() > seq
        })
        .await;
    assert_eq!(two.data["participants"].as_array().unwrap().len(), 1);
    let (status, props) = rig.get(&format!("/v1/calls/{id}")).await;
    assert_eq!(status, 200);
    assert_eq!(props["participants"].as_array().unwrap().len(), 1);
    // Sequence numbers only grow.
    let sequences: Vec<u64> = rig
        .events
        .of_call(&id)
        .into_iter()
        .filter(|e| e.event_type == "ParticipantsUpdated")
        .map(|e| e.data["sequenceNumber"].as_u64().unwrap())
        .collect();
    assert!(sequences.windows(2).all(|w| w[0] < w[1]), "{sequences:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn park_and_retrieve() {
    let mut rig = Rig::start("park_and_retrieve").await;
    let id = rig.connected_call(&rig.bob(), "to-bob").await;
    let _bob = rig.bob_calls.recv().await.unwrap();
    let (status, parked) = rig
        .post(
            &format!("/v1/calls/{id}:park"),
            json!({ "operationContext": "park-1" }),
        )
        .await;
    assert_eq!(status, 200, "{parked}");
    let orbit = parked["orbit"].as_u64().unwrap();
    assert!((701..=720).contains(&orbit));
    let event = rig.events.wait_call("CallParked", &id).await;
    assert_eq!(event.data["orbit"], orbit);
    assert_eq!(event.data["operationContext"], "park-1");
    let (_, props) = rig.get(&format!("/v1/calls/{id}")).await;
    assert_eq!(props["participants"][0]["state"], "parked");

    // A retriever that is busy: RetrieveFailed with its status, to the operation's
    // callback, and the call stays parked.
    rig.accepted(
        "/v1/calls:retrieve",
        json!({
            "orbit": orbit,
            "target": { "sipUri": rig.demo_b("busy") },
            "operationContext": "retrieve-busy",
            "operationCallbackUri": "http://127.0.0.1:9/retrieve-hook"
        }),
    )
    .await;
    let failed = rig.events.wait_call("RetrieveFailed", &id).await;
    assert_eq!(failed.data["operationContext"], "retrieve-busy");
    assert_eq!(failed.data["resultInformation"]["code"], 486);
    assert_eq!(failed.data["orbit"], orbit);
    assert_eq!(
        failed.callback.as_deref(),
        Some("http://127.0.0.1:9/retrieve-hook")
    );
    let mut props = json!(null);
    for _ in 0..40 {
        props = rig.get(&format!("/v1/calls/{id}")).await.1;
        if props["participants"].as_array().unwrap().len() == 1 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(
        props["participants"].as_array().unwrap().len(),
        1,
        "{props}"
    );
    assert_eq!(props["participants"][0]["state"], "parked");

    let retrieved = rig
        .accepted(
            "/v1/calls:retrieve",
            json!({
                "orbit": orbit,
                "target": { "sipUri": rig.demo_b("echo") },
                "operationContext": "retrieve-echo"
            }),
        )
        .await;
    assert_eq!(retrieved["callConnectionId"], json!(id));
    let succeeded = rig.events.wait_call("RetrieveSucceeded", &id).await;
    assert_eq!(succeeded.data["operationContext"], "retrieve-echo");
    let updated = rig
        .events
        .wait("ParticipantsUpdated", |d| {
            d["callConnectionId"] == json!(id)
                && d["participants"].as_array().unwrap().len() == 2
                && d["participants"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .all(|p| p["state"] == "connected")
        })
        .await;
    assert!(updated.data["sequenceNumber"].as_u64().unwrap() >= 2);
    // An empty orbit.
    let (status, problem) = rig
        .post(
            "/v1/calls:retrieve",
            json!({ "orbit": 720, "target": { "sipUri": rig.demo_b("echo") } }),
        )
        .await;
    assert_eq!((status, problem["field"].clone()), (404, json!("orbit")));

    let (status, _) = rig
        .post(
            &format!("/v1/calls/{id}:hangup"),
            json!({ "forEveryone": true }),
        )
        .await;
    assert_eq!(status, 204);
    rig.events.wait_call("CallDisconnected", &id).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn play_and_dtmf_both_ways() {
    let mut rig = Rig::start("play_and_dtmf_both_ways").await;
    let id = rig.connected_call(&rig.bob(), "to-bob").await;
    let mut bob = rig.bob_calls.recv().await.unwrap();
    bob_waits(&mut bob, is_flow_active).await;

    let wav = write_wav("prompt", 0.3);
    rig.accepted(
        &format!("/v1/calls/{id}:play"),
        json!({ "file": wav.display().to_string(), "operationContext": "prompt" }),
    )
    .await;
    let played = rig.events.wait_call("PlayCompleted", &id).await;
    assert_eq!(played.data["operationContext"], "prompt");

    let (status, problem) = rig
        .post(
            &format!("/v1/calls/{id}:play"),
            json!({ "file": "/nonexistent/file.wav" }),
        )
        .await;
    assert_eq!((status, problem["field"].clone()), (422, json!("file")));

    // Our DTMF: the media may still be starting on our side; 409 until it runs.
    let mut sent = None;
    for _ in 0..50 {
        let (status, body) = rig
            .post(
                &format!("/v1/calls/{id}:sendDtmf"),
                json!({ "tones": "12#", "operationContext": "dtmf" }),
            )
            .await;
        if status == 409 {
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            continue;
        }
        sent = Some((status, body));
        break;
    }
    let (status, body) = sent.expect("the media started");
    assert_eq!(status, 202, "{body}");
    rig.events
        .wait("SendDtmfTonesCompleted", |d| {
            d["operationContext"] == "dtmf"
        })
        .await;
    let mut heard = Vec::new();
    while heard.len() < 3 {
        if let CallEvent::ToneReceived { tone, .. } =
            bob_waits(&mut bob, |e| matches!(e, CallEvent::ToneReceived { .. })).await
        {
            heard.push(tone);
        }
    }
    assert_eq!(heard, ['1', '2', '#']);

    // Bob's DTMF: ToneReceived events.
    bob.call.flow().send_dtmf("7").await.unwrap();
    let tone = rig.events.wait_call("ToneReceived", &id).await;
    assert_eq!(tone.data["tone"], "7");
    assert_eq!(tone.data["participant"]["identifier"]["sipUri"], rig.bob());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_application_leaves_a_three_party_call() {
    let mut rig = Rig::start("the_application_leaves_a_three_party_call").await;
    let id = rig.connected_call(&rig.bob(), "to-bob").await;
    let mut bob = rig.bob_calls.recv().await.unwrap();
    let (status, _) = rig
        .post(
            &format!("/v1/calls/{id}/participants:add"),
            json!({ "participantToAdd": { "sipUri": rig.demo_b("echo") } }),
        )
        .await;
    assert_eq!(status, 202);
    rig.events.wait_call("AddParticipantSucceeded", &id).await;
    // Without forEveryone the application leaves; bob and echo stay together.
    let (status, _) = rig
        .post(
            &format!("/v1/calls/{id}:hangup"),
            json!({ "forEveryone": false, "operationContext": "leave" }),
        )
        .await;
    assert_eq!(status, 204);
    let left = rig.events.wait_call("CallDisconnected", &id).await;
    assert_eq!(left.data["operationContext"], "leave");
    assert!(rig.call_ids().await.is_empty());
    assert_eq!(rig.get(&format!("/v1/calls/{id}")).await.0, 404);
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let alive = rig
        .a
        .tandem
        .with_engine(|engine, _| engine.stats().calls)
        .await
        .unwrap();
    assert_eq!(alive, 2, "bob's and echo's calls go on");
    // Bob hangs up: echo's call is ended too, and no further event comes.
    let events_before = rig.events.all().len();
    bob.call.terminate(Default::default()).await.unwrap();
    bob_waits(&mut bob, is_terminated).await;
    let mut left_over = usize::MAX;
    for _ in 0..50 {
        left_over = rig
            .a
            .tandem
            .with_engine(|engine, _| engine.stats().calls)
            .await
            .unwrap();
        if left_over == 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(left_over, 0, "the last participant was hung up");
    assert_eq!(rig.events.all().len(), events_before);
}

/// An INVITE from `peer` to `user` at A with an audio offer; its Call-ID.
async fn raw_invite(rig: &Rig, peer: &RawPeer, user: &str, call_id: &str) {
    let me = peer.addr;
    let ip = me.ip();
    let a = rig.a_addr;
    let sdp = format!(
        "v=0\r\no=- 1 1 IN IP4 {ip}\r\ns=-\r\nc=IN IP4 {ip}\r\nt=0 0\r\n\
         m=audio 40000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na=sendrecv\r\n"
    );
    let invite = format!(
        "INVITE sip:{user}@{a} SIP/2.0\r\n\
         Via: SIP/2.0/UDP {me};branch=z9hG4bK-{call_id}-1;rport\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:raw@{me}>;tag=raw-{call_id}\r\n\
         To: <sip:{user}@{a}>\r\n\
         Call-ID: {call_id}\r\n\
         CSeq: 1 INVITE\r\n\
         Contact: <sip:raw@{me}>\r\n\
         Content-Type: application/sdp\r\n\
         Content-Length: {}\r\n\r\n{sdp}",
        sdp.len()
    );
    peer.send(&invite, a).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_caller_that_hangs_up_before_its_ack_fails_the_answer() {
    let rig = Rig::start("a_caller_that_hangs_up_before_its_ack").await;
    let caller = RawPeer::bind("127.0.0.71").await;
    let call_id = format!("answer-failed-{}", std::process::id());
    raw_invite(&rig, &caller, "support", &call_id).await;
    let incoming = rig
        .events
        .wait("IncomingCall", |d| d["correlationId"] == json!(call_id))
        .await;
    let context = incoming.data["incomingCallContext"]
        .as_str()
        .unwrap()
        .to_owned();
    let (status, answered) = rig
        .post(
            "/v1/calls:answer",
            json!({ "incomingCallContext": context, "operationContext": "answer-af" }),
        )
        .await;
    assert_eq!(status, 200, "{answered}");
    let id = answered["callConnectionId"].as_str().unwrap().to_owned();
    // The 200 comes; the caller sends no ACK but a BYE (the dialog is up, RFC 3261
    // §12.1.1): the call never connects.
    let (ok, from) = caller.recv("SIP/2.0 200").await;
    assert!(header(&ok, "CSeq").unwrap().ends_with("INVITE"), "{ok}");
    let to = header(&ok, "To").unwrap();
    let contact = header(&ok, "Contact").unwrap();
    let target = contact
        .trim_start_matches('<')
        .split('>')
        .next()
        .unwrap()
        .to_owned();
    let me = caller.addr;
    let bye = format!(
        "BYE {target} SIP/2.0\r\n\
         Via: SIP/2.0/UDP {me};branch=z9hG4bK-{call_id}-2;rport\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:raw@{me}>;tag=raw-{call_id}\r\n\
         To: {to}\r\n\
         Call-ID: {call_id}\r\n\
         CSeq: 2 BYE\r\n\
         Content-Length: 0\r\n\r\n"
    );
    caller.send(&bye, from).await;
    let failed = rig.events.wait_call("AnswerFailed", &id).await;
    assert_eq!(failed.data["operationContext"], "answer-af");
    assert_ne!(failed.data["resultInformation"]["code"], 200);
    let types: Vec<String> = rig
        .events
        .of_call(&id)
        .into_iter()
        .map(|e| e.event_type)
        .collect();
    assert_eq!(types, ["AnswerFailed"]);
    assert_eq!(rig.get(&format!("/v1/calls/{id}")).await.0, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_remove_of_a_participant_already_leaving_fails() {
    let mut rig = Rig::start("a_remove_of_a_participant_already_leaving").await;
    let id = rig.connected_call(&rig.bob(), "to-bob").await;
    let _bob = rig.bob_calls.recv().await.unwrap();
    // A peer that never answers: the invitation's CANCEL waits for a provisional
    // response (RFC 3261 §9.1), so the participant's call stays ending.
    let silent = RawPeer::bind("127.0.0.72").await;
    let dave = silent.uri("dave");
    let added = rig
        .accepted(
            &format!("/v1/calls/{id}/participants:add"),
            json!({ "participantToAdd": { "sipUri": dave }, "invitationTimeoutInSeconds": 60 }),
        )
        .await;
    let invitation = added["invitationId"].as_str().unwrap().to_owned();
    silent.recv("INVITE").await;
    rig.accepted(
        &format!("/v1/calls/{id}/participants:cancelAddParticipant"),
        json!({ "invitationId": invitation }),
    )
    .await;
    rig.accepted(
        &format!("/v1/calls/{id}/participants:remove"),
        json!({ "participantToRemove": { "sipUri": dave }, "operationContext": "remove-dave" }),
    )
    .await;
    let failed = rig.events.wait_call("RemoveParticipantFailed", &id).await;
    assert_eq!(failed.data["operationContext"], "remove-dave");
    assert_eq!(failed.data["resultInformation"]["code"], 487);
    assert_eq!(
        failed.data["participant"]["identifier"]["sipUri"],
        json!(dave)
    );
    assert!(
        !rig.events
            .types()
            .iter()
            .any(|t| t == "RemoveParticipantSucceeded")
    );
    // Bob's call goes on.
    let (_, props) = rig.get(&format!("/v1/calls/{id}")).await;
    assert_eq!(props["callConnectionState"], "connected");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invitation_that_times_out_fails_the_add_with_its_caller_id_and_context() {
    let mut rig = Rig::start("an_invitation_that_times_out").await;
    let id = rig.connected_call(&rig.bob(), "to-bob").await;
    let _bob = rig.bob_calls.recv().await.unwrap();
    let ringing = RawPeer::bind("127.0.0.73").await;
    let dave = ringing.uri("dave");
    let added = rig
        .accepted(
            &format!("/v1/calls/{id}/participants:add"),
            json!({
                "participantToAdd": { "sipUri": dave },
                "invitationTimeoutInSeconds": 1,
                "sourceCallerIdNumber": { "phoneNumber": "+15551234567" },
                "sourceDisplayName": "Front Desk",
                "customContext": {
                    "sipHeaders": { "X-Ticket": "42" },
                    "userToUser": "c0ffee"
                },
                "operationContext": "add-dave"
            }),
        )
        .await;
    let invitation = added["invitationId"].as_str().unwrap().to_owned();
    // Dave sees the caller ID, the display name and the custom context.
    let (invite, from) = ringing.recv("INVITE").await;
    let from_header = header(&invite, "From").unwrap();
    assert!(from_header.contains("\"Front Desk\""), "{from_header}");
    assert!(from_header.contains("sip:+15551234567@"), "{from_header}");
    assert_eq!(
        header(&invite, "X-Ticket").as_deref(),
        Some("42"),
        "{invite}"
    );
    assert!(
        header(&invite, "User-to-User")
            .unwrap()
            .to_ascii_lowercase()
            .starts_with("c0ffee"),
        "{invite}"
    );
    // It rings and never answers: cancelled at the invitation's timeout.
    ringing.respond(&invite, 180, "Ringing", "dave", from).await;
    let (cancel, from) = ringing.recv("CANCEL").await;
    ringing.respond(&cancel, 200, "OK", "dave", from).await;
    ringing
        .respond(&invite, 487, "Request Terminated", "dave", from)
        .await;
    let failed = rig.events.wait_call("AddParticipantFailed", &id).await;
    assert_eq!(failed.data["invitationId"], json!(invitation));
    assert_eq!(failed.data["operationContext"], "add-dave");
    assert_eq!(
        failed.data["resultInformation"]["code"], 408,
        "{:?}",
        failed.data
    );
    let (_, props) = rig.get(&format!("/v1/calls/{id}")).await;
    assert_eq!(props["participants"].as_array().unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_with_a_caller_id_shows_it_in_the_from() {
    let rig = Rig::start("create_with_a_caller_id").await;
    let peer = RawPeer::bind("127.0.0.74").await;
    for (caller_id, expected) in [
        (
            json!({ "sipUri": "sip:sales@example.com" }),
            "<sip:sales@example.com>",
        ),
        (
            json!({ "phoneNumber": "+441632960001" }),
            "sip:+441632960001@",
        ),
    ] {
        let (status, body) = rig
            .post(
                "/v1/calls",
                json!({
                    "application": "app",
                    "targets": [{ "sipUri": peer.uri("erin") }],
                    "callerId": caller_id,
                    "callerDisplayName": "Sales",
                }),
            )
            .await;
        assert_eq!(status, 201, "{body}");
        let id = body["callConnectionId"].as_str().unwrap().to_owned();
        let (invite, from) = peer.recv("INVITE").await;
        let from_header = header(&invite, "From").unwrap();
        assert!(from_header.contains(expected), "{from_header}");
        assert!(from_header.contains("\"Sales\""), "{from_header}");
        peer.respond(&invite, 486, "Busy Here", "erin", from).await;
        let failed = rig.events.wait_call("CreateCallFailed", &id).await;
        assert_eq!(failed.data["resultInformation"]["code"], 486);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reject_none_and_forbidden_and_not_both() {
    let rig = Rig::start("reject_none_and_forbidden").await;
    for (reason, expected) in [("none", 603), ("forbidden", 403)] {
        let before = incoming_calls(&rig).len();
        let carol = rig.carol_calls("app", &[]).await;
        let mut context = None;
        for _ in 0..200 {
            let all = incoming_calls(&rig);
            if all.len() > before {
                context = all.last().cloned();
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(25)).await;
        }
        let context = context.expect("an IncomingCall");
        // Both a reason and a status: refused, nothing changes.
        let (status, problem) = rig
            .post(
                "/v1/calls:reject",
                json!({
                    "incomingCallContext": context,
                    "callRejectReason": reason,
                    "sipStatus": 486
                }),
            )
            .await;
        assert_eq!(status, 422, "{problem}");
        assert!(
            problem["detail"].as_str().unwrap().contains("not both"),
            "{problem}"
        );
        let (status, body) = rig
            .post(
                "/v1/calls:reject",
                json!({ "incomingCallContext": context, "callRejectReason": reason }),
            )
            .await;
        assert_eq!(status, 204, "{body}");
        let (result, _, _) = carol.await.unwrap();
        match result {
            Err(runtime::app::Error::Establish(EstablishFailure::Refused { status, .. })) => {
                assert_eq!(status, expected, "{reason}")
            }
            other => panic!("{reason}: {other:?}"),
        }
    }
}

/// The `incomingCallContext` of every IncomingCall so far, in order.
fn incoming_calls(rig: &Rig) -> Vec<String> {
    rig.events
        .all()
        .into_iter()
        .filter(|e| e.event_type == "IncomingCall")
        .map(|e| e.data["incomingCallContext"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_event_stream_resumes_mid_call_with_last_event_id() {
    let mut rig = Rig::start("the_event_stream_resumes_mid_call").await;
    let mut stream = EventStream::open(&rig, "application=app&after=0", None).await;
    let (status, created) = rig
        .post(
            "/v1/calls",
            json!({ "application": "app", "targets": [{ "sipUri": rig.bob() }] }),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    let id = created["callConnectionId"].as_str().unwrap().to_owned();
    // Read up to CallConnected, then drop the connection.
    let mut seen = Vec::new();
    loop {
        let event = stream.next().await;
        let is_connected = event.event_type == "CallConnected"
            && event.cloud_event["data"]["callConnectionId"] == json!(id);
        seen.push(event);
        if is_connected {
            break;
        }
    }
    drop(stream);
    let last = seen.last().unwrap().id;
    let mut bob = rig.bob_calls.recv().await.unwrap();

    // While nobody listens: the call is hung up.
    let (status, _) = rig
        .post(
            &format!("/v1/calls/{id}:hangup"),
            json!({ "forEveryone": true }),
        )
        .await;
    assert_eq!(status, 204);
    bob_waits(&mut bob, is_terminated).await;
    rig.events.wait_call("CallDisconnected", &id).await;

    // Resumed from the last id received: what followed it, once each, in order, and the
    // CallDisconnected among it.
    let mut stream = EventStream::open(&rig, "application=app", Some(last)).await;
    let mut resumed = Vec::new();
    loop {
        let event = stream.next().await;
        let is_disconnected = event.event_type == "CallDisconnected"
            && event.cloud_event["data"]["callConnectionId"] == json!(id);
        resumed.push(event);
        if is_disconnected {
            break;
        }
    }
    let ids: Vec<u64> = resumed.iter().map(|e| e.id).collect();
    let expected: Vec<u64> = (last + 1..=last + ids.len() as u64).collect();
    assert_eq!(ids, expected, "consecutive after {last}, none repeated");
    for e in &resumed {
        assert_eq!(e.cloud_event["sequence"], e.id.to_string());
        assert_eq!(e.cloud_event["type"], json!(e.event_type));
    }
    // Exactly what was published after the last one received, in order.
    let published: Vec<String> = rig
        .events
        .all()
        .into_iter()
        .filter(|e| e.application == "app")
        .map(|e| e.event_type)
        .collect();
    let before: Vec<String> = seen.iter().map(|e| e.event_type.clone()).collect();
    let after: Vec<String> = resumed.iter().map(|e| e.event_type.clone()).collect();
    assert_eq!(published[..before.len()], before[..]);
    assert_eq!(published[before.len()..], after[..]);
}
