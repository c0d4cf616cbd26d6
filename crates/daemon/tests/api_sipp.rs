//! The control API served by the daemon, driven over HTTP with SIPp peers and a real
//! webhook receiver (a small axum server in the test that checks every delivery's
//! Standard Webhooks signature): Tandem on 127.0.0.10, alice (a caller) on .11, bob on
//! .12, carol on .13. Scenarios in `tests/sipp/api/` (each one's comment says what it
//! checks).
//!
//! - create a call to bob with custom context → `CallConnected` → transfer him to carol
//!   → `CallTransferAccepted` with the target's final SIP status and Reason text →
//!   `CallDisconnected`;
//! - create a call, add carol (she rings), cancel the invitation →
//!   `CancelAddParticipantSucceeded`; hang up for everyone;
//! - incoming calls handed to the application by a `webhook` route (`IncomingCall` with
//!   the caller's X- header): rejected busy (alice gets 486), redirected (302 to dave),
//!   answered (`CallConnected`; alice hangs up → `CallDisconnected`).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use common::Daemon;
use common::parties::{ALICE, BOB, CAROL, Party, TANDEM, assert_succeeded, free_port_on};
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const TOKEN: &str = "api-sipp-token-0123456789";
/// `whsec_` + base64 of 24 bytes.
const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

/// The webhook receiver: every CloudEvent POSTed to it, and how many failed the
/// signature check.
#[derive(Clone, Default)]
struct Received {
    events: Arc<Mutex<Vec<Value>>>,
    bad_signatures: Arc<Mutex<u32>>,
}

impl Received {
    /// Starts the receiver on 127.0.0.1 in a thread of its own; its address.
    fn start(&self) -> SocketAddr {
        use axum::body::Bytes;
        use axum::http::{HeaderMap, StatusCode};
        let secret = {
            use base64::Engine as _;
            base64::engine::general_purpose::STANDARD
                .decode(SECRET.trim_start_matches("whsec_"))
                .unwrap()
        };
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let me = self.clone();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let app = axum::Router::new().route(
                    "/events",
                    axum::routing::post(move |headers: HeaderMap, body: Bytes| {
                        let me = me.clone();
                        let secret = secret.clone();
                        async move {
                            let now = SystemTime::now()
                                .duration_since(UNIX_EPOCH)
                                .unwrap()
                                .as_secs();
                            let signed = control_api::webhook::verify(
                                &secret,
                                &headers,
                                &body,
                                Duration::from_secs(300),
                                now,
                            );
                            if !signed {
                                *me.bad_signatures.lock().unwrap() += 1;
                                return StatusCode::UNAUTHORIZED;
                            }
                            let event: Value = serde_json::from_slice(&body).unwrap();
                            me.events.lock().unwrap().push(event);
                            StatusCode::NO_CONTENT
                        }
                    }),
                );
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                axum::serve(listener, app).await.unwrap();
            });
        });
        addr
    }

    /// The first event of `event_type` whose data matches `which`, waiting up to 15 s.
    #[track_caller]
    fn wait(&self, event_type: &str, which: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Some(event) = self
                .events
                .lock()
                .unwrap()
                .iter()
                .find(|e| e["type"] == event_type && which(&e["data"]))
            {
                return event.clone();
            }
            assert!(
                Instant::now() < deadline,
                "no {event_type}; received: {:#?}",
                self.types()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn types(&self) -> Vec<String> {
        self.events
            .lock()
            .unwrap()
            .iter()
            .map(|e| format!("{} {}", e["type"], e["data"]["callConnectionId"]))
            .collect()
    }

    /// The event types of call connection `id`, in the order they arrived.
    fn of_call(&self, id: &str) -> Vec<String> {
        self.events
            .lock()
            .unwrap()
            .iter()
            .filter(|e| e["data"]["callConnectionId"] == id)
            .map(|e| e["type"].as_str().unwrap().to_owned())
            .collect()
    }
}

/// The daemon with the API, application `app` (its events to the receiver) and a route
/// handing calls to `app` to it.
struct Rig {
    daemon: Daemon,
    api: SocketAddr,
    received: Received,
    http: reqwest::Client,
    rt: tokio::runtime::Runtime,
}

impl Rig {
    fn start(name: &str) -> Rig {
        let received = Received::default();
        let receiver = received.start();
        let daemon = Daemon::start_on(
            name,
            TANDEM,
            "",
            &format!(
                "[api]\nlisten = \"{TANDEM}:0\"\ntoken = \"{TOKEN}\"\nwebhook_secret = \"{SECRET}\"\n\n\
                 [[api.applications]]\nname = \"app\"\n\
                 callback_uri = \"http://{receiver}/events\"\n\
                 owner_uri = \"sip:app@{TANDEM}\"\nanswer_timeout_s = 10\n\n\
                 [[route]]\nname = \"to-app\"\naction = \"webhook\"\napplication = \"app\"\n\
                 [route.match]\nuser = '^app$'\n"
            ),
        );
        let line = daemon.wait_for_line("control API serving", Duration::from_secs(10));
        let api: SocketAddr = line
            .split_whitespace()
            .find_map(|w| w.strip_prefix("api="))
            .unwrap()
            .parse()
            .unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        Rig {
            daemon,
            api,
            received,
            http: reqwest::Client::new(),
            rt,
        }
    }

    /// POSTs `body` to `path`: the status and the JSON answer (Null if none).
    fn post(&self, path: &str, body: Value) -> (u16, Value) {
        self.rt.block_on(async {
            let response = self
                .http
                .post(format!("http://{}{path}", self.api))
                .bearer_auth(TOKEN)
                .json(&body)
                .send()
                .await
                .unwrap();
            let status = response.status().as_u16();
            let bytes = response.bytes().await.unwrap();
            (
                status,
                serde_json::from_slice(&bytes).unwrap_or(Value::Null),
            )
        })
    }

    fn get(&self, path: &str) -> (u16, Value) {
        self.rt.block_on(async {
            let response = self
                .http
                .get(format!("http://{}{path}", self.api))
                .bearer_auth(TOKEN)
                .send()
                .await
                .unwrap();
            let status = response.status().as_u16();
            let bytes = response.bytes().await.unwrap();
            (
                status,
                serde_json::from_slice(&bytes).unwrap_or(Value::Null),
            )
        })
    }

    /// A call from `app` to `target` with `extra` fields; waits for `CallConnected`.
    fn connected_call(&self, target: &str, context: &str, extra: Value) -> String {
        let mut body = json!({
            "application": "app",
            "targets": [{ "sipUri": target }],
            "operationContext": context,
        });
        if let (Some(body), Some(extra)) = (body.as_object_mut(), extra.as_object()) {
            body.extend(extra.clone());
        }
        let (status, created) = self.post("/v1/calls", body);
        assert_eq!(status, 201, "{created}");
        let id = created["callConnectionId"].as_str().unwrap().to_owned();
        let connected = self
            .received
            .wait("CallConnected", |d| d["callConnectionId"] == id);
        assert_eq!(connected["data"]["operationContext"], context);
        id
    }

    /// The `IncomingCall` event for alice's call (with her X-Case header).
    fn incoming(&self) -> String {
        let deadline = Instant::now() + Duration::from_secs(15);
        while !self
            .received
            .types()
            .iter()
            .any(|t| t.contains("IncomingCall"))
        {
            assert!(
                Instant::now() < deadline,
                "no IncomingCall; daemon log:\n{}",
                self.daemon.lines().join("\n")
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        let event = self.received.wait("IncomingCall", |_| true);
        let data = &event["data"];
        assert!(
            data["from"].to_string().contains("sip:alice@127.0.0.11"),
            "{data}"
        );
        assert!(data["to"].to_string().contains("sip:app@"), "{data}");
        assert_eq!(
            data["customContext"]["sipHeaders"]["X-Case"], "incoming",
            "{data}"
        );
        data["incomingCallContext"].as_str().unwrap().to_owned()
    }

    fn finish(self) {
        assert_eq!(*self.received.bad_signatures.lock().unwrap(), 0);
        let _ = self.daemon.stop();
    }
}

fn bob_uri(port: u16) -> String {
    format!("sip:bob@{BOB}:{port}")
}

#[test]
fn create_then_transfer_reports_the_targets_status() {
    let test = "api_sipp_transfer";
    let rig = Rig::start(test);
    let port = free_port_on(BOB);
    let bob = Party::callee(test, "bob", (BOB, port), "api/transferee.xml", &[]);
    let id = rig.connected_call(
        &bob_uri(port),
        "create",
        json!({ "customContext": { "sipHeaders": { "X-Case": "create" }, "userToUser": "0a0b0c;encoding=hex" } }),
    );
    let (status, call) = rig.get(&format!("/v1/calls/{id}"));
    assert_eq!(status, 200, "{call}");
    assert_eq!(call["callConnectionState"], "connected", "{call}");

    let (status, body) = rig.post(
        &format!("/v1/calls/{id}:transferToParticipant"),
        json!({
            "targetParticipant": { "sipUri": format!("sip:carol@{CAROL}:5060") },
            "customContext": { "sipHeaders": { "X-Transfer": "yes" } },
            "operationContext": "xfer",
        }),
    );
    assert_eq!(status, 202, "{body}");
    let accepted = rig
        .received
        .wait("CallTransferAccepted", |d| d["callConnectionId"] == id);
    let data = &accepted["data"];
    assert_eq!(data["operationContext"], "xfer", "{data}");
    assert_eq!(data["sipStatus"], 200, "{data}");
    assert_eq!(data["resultInformation"]["code"], 200, "{data}");
    // The Reason text of the final NOTIFY's sipfrag (RFC 3326) wins over its phrase.
    assert_eq!(
        data["resultInformation"]["message"], "200 Carol took it",
        "{data}"
    );
    assert!(data["correlationId"].is_string(), "{data}");
    rig.received
        .wait("CallDisconnected", |d| d["callConnectionId"] == id);
    let bob = bob.finish();
    assert_succeeded(&[&bob], &rig.daemon);
    let order = rig.received.of_call(&id);
    let position = |t: &str| order.iter().position(|e| e == t).unwrap();
    assert!(
        position("CallConnected") < position("CallTransferAccepted")
            && position("CallTransferAccepted") < position("CallDisconnected"),
        "{order:?}"
    );
    rig.finish();
}

#[test]
fn add_participant_then_cancel_it() {
    let test = "api_sipp_add_cancel";
    let rig = Rig::start(test);
    let bob_port = free_port_on(BOB);
    let bob = Party::callee(
        test,
        "bob",
        (BOB, bob_port),
        "api/answers_until_bye.xml",
        &[],
    );
    let carol_port = free_port_on(CAROL);
    let mut carol = Party::callee(
        test,
        "carol",
        (CAROL, carol_port),
        "b2bua/callee_rings_cancelled.xml",
        &[],
    );
    let id = rig.connected_call(&bob_uri(bob_port), "with-bob", json!({}));
    let (status, added) = rig.post(
        &format!("/v1/calls/{id}/participants:add"),
        json!({
            "participantToAdd": { "sipUri": format!("sip:carol@{CAROL}:{carol_port}") },
            "invitationTimeoutInSeconds": 30,
            "operationContext": "add-carol",
        }),
    );
    assert_eq!(status, 202, "{added}");
    let invitation = added["invitationId"].as_str().unwrap().to_owned();
    // Carol rings; then the application changes its mind.
    carol.wait_for("the INVITE", Duration::from_secs(10), |m| {
        !m.sent && m.is_request("INVITE")
    });
    let (status, body) = rig.post(
        &format!("/v1/calls/{id}/participants:cancelAddParticipant"),
        json!({ "invitationId": invitation, "operationContext": "cancel-carol" }),
    );
    assert_eq!(status, 202, "{body}");
    let cancelled = rig.received.wait("CancelAddParticipantSucceeded", |d| {
        d["callConnectionId"] == id
    });
    assert_eq!(cancelled["data"]["invitationId"], invitation.as_str());
    assert_eq!(cancelled["data"]["operationContext"], "cancel-carol");
    let carol = carol.finish();
    // The cancelled invitation is no failure of the add, and bob is still the one
    // participant.
    assert!(
        !rig.received
            .of_call(&id)
            .contains(&"AddParticipantFailed".to_owned()),
        "{:?}",
        rig.received.of_call(&id)
    );
    let (status, participants) = rig.get(&format!("/v1/calls/{id}/participants"));
    assert_eq!(status, 200);
    let list = participants["value"].as_array().unwrap();
    assert_eq!(list.len(), 1, "{participants}");
    assert!(list[0].to_string().contains("sip:bob@"), "{participants}");

    let (status, body) = rig.post(
        &format!("/v1/calls/{id}:hangup"),
        json!({ "forEveryone": true }),
    );
    assert_eq!(status, 204, "{body}");
    rig.received
        .wait("CallDisconnected", |d| d["callConnectionId"] == id);
    let bob = bob.finish();
    assert_succeeded(&[&bob, &carol], &rig.daemon);
    rig.finish();
}

#[test]
fn incoming_calls_rejected_busy_redirected_and_answered() {
    let test = "api_sipp_incoming";
    let rig = Rig::start(test);

    // Rejected busy.
    let alice = Party::dialer(
        test,
        "alice-busy",
        &rig.daemon,
        ALICE,
        "api/caller_rejected_busy.xml",
        "app",
        &[],
    );
    let context = rig.incoming();
    let (status, body) = rig.post(
        "/v1/calls:reject",
        json!({ "incomingCallContext": context, "callRejectReason": "busy" }),
    );
    assert_eq!(status, 204, "{body}");
    let alice = alice.finish();
    assert_succeeded(&[&alice], &rig.daemon);
    let busy = alice.find("the 486", |m| !m.sent && m.first_line.contains(" 486 "));
    assert!(
        busy.first_line.starts_with("SIP/2.0 486"),
        "{}",
        busy.first_line
    );
    // Answering it now is too late: 409, and nothing happens.
    let (status, problem) = rig.post(
        "/v1/calls:answer",
        json!({ "incomingCallContext": context }),
    );
    assert_eq!(status, 409, "{problem}");
    rig.received.events.lock().unwrap().clear();

    // Redirected to dave.
    let alice = Party::dialer(
        test,
        "alice-redirect",
        &rig.daemon,
        ALICE,
        "api/caller_redirected.xml",
        "app",
        &[],
    );
    let context = rig.incoming();
    let (status, body) = rig.post(
        "/v1/calls:redirect",
        json!({ "incomingCallContext": context, "target": { "sipUri": "sip:dave@127.0.0.14" } }),
    );
    assert_eq!(status, 204, "{body}");
    let alice = alice.finish();
    assert_succeeded(&[&alice], &rig.daemon);
    rig.received.events.lock().unwrap().clear();

    // Answered: CallConnected; alice hangs up: CallDisconnected.
    let alice = Party::dialer(
        test,
        "alice-answer",
        &rig.daemon,
        ALICE,
        "api/caller_answered.xml",
        "app",
        &[],
    );
    let context = rig.incoming();
    let (status, answered) = rig.post(
        "/v1/calls:answer",
        json!({ "incomingCallContext": context, "operationContext": "answer" }),
    );
    assert_eq!(status, 200, "{answered}");
    let id = answered["callConnectionId"].as_str().unwrap().to_owned();
    let connected = rig
        .received
        .wait("CallConnected", |d| d["callConnectionId"] == id);
    assert_eq!(connected["data"]["operationContext"], "answer");
    let alice = alice.finish();
    assert_succeeded(&[&alice], &rig.daemon);
    rig.received
        .wait("CallDisconnected", |d| d["callConnectionId"] == id);
    rig.finish();
}
