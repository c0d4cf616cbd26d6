//! Group calls, connect and hold through the control API over real sockets.
//!
//! - A group call of three peers (endpoints of runtime B, each answering, playing its
//!   own tone and recording what it hears): all answer and join the call's conference
//!   room (`ParticipantsUpdated` 1, 2, 3 in order); a play to the call is heard by all;
//!   each hears the other two and never itself; one is removed and the other two go on
//!   hearing each other; one held is heard no more until it is taken off hold; the last
//!   one leaving ends the call (`CallDisconnected`). Who heard what is read from the
//!   peers' recordings with Goertzel, at windows placed by the wall clock.
//! - A group call whose targets fail: `AddParticipantFailed` for each,
//!   `CreateCallFailed` only when none answered.
//! - Connect: a call a route bridged (no application had it) is taken over by its SIP
//!   Call-ID with both legs, then moved to another application by its id; its events
//!   follow it to the end. An unknown call: 404 and `ConnectFailed`.
//! - Hold and unhold of a one-participant call: the re-INVITEs (bob sees sendonly, then
//!   sendrecv), the music on hold, `isOnHold`, 409s for a second hold or unhold.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod api_support;

use api_support::{Rig, bob_waits, write_wav};
use runtime::app::{AudioVideoCall, CallEvents, EndpointNotice};
use runtime::calls::{
    ApplicationEndpointSettings, CallAcceptOptions, CallEstablishOptions, CallEvent, CallState,
    CallTerminateOptions, Direction,
};
use runtime::media::{ToneSpec, tone_level_dbm0};
use serde_json::{Value, json};
use std::path::PathBuf;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

const FA: f64 = 500.0;
const FB: f64 = 700.0;
const FC: f64 = 900.0;
/// The tone of `write_wav` files (what the application plays).
const PLAYED: f64 = 1000.0;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// A peer on runtime B: answers every call, plays its tone on it and records what it
/// hears to `wav`.
struct Peer {
    uri: String,
    wav: PathBuf,
    calls: mpsc::UnboundedReceiver<(AudioVideoCall, CallEvents)>,
}

async fn peer(rig: &Rig, user: &str, frequency: f64) -> Peer {
    let uri = format!("sip:{user}@{}", rig.b_addr);
    let mut endpoint = rig
        .b
        .tandem
        .add_application_endpoint(ApplicationEndpointSettings::new(uri.clone()))
        .await
        .unwrap();
    let wav = std::env::temp_dir().join(format!(
        "tandem-api-group-{}-{user}.wav",
        std::process::id()
    ));
    let (tx, calls) = mpsc::unbounded_channel();
    let path = wav.clone();
    tokio::spawn(async move {
        while let Some(notice) = endpoint.next_event().await {
            let EndpointNotice::CallReceived(incoming) = notice else {
                continue;
            };
            let events = incoming.events;
            let Some(call) = AudioVideoCall::from_incoming(incoming.call) else {
                continue;
            };
            call.flow()
                .play_tone(ToneSpec::single(frequency, -10.0, None))
                .await
                .unwrap();
            call.flow().record_to(&path).await.unwrap();
            call.accept(CallAcceptOptions::new()).await.unwrap();
            let _ = tx.send((call, events));
        }
    });
    Peer { uri, wav, calls }
}

async fn until_terminated(events: &mut CallEvents) {
    let ended = tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(event) = events.next().await {
            if matches!(
                event,
                CallEvent::StateChanged {
                    state: CallState::Terminated,
                    ..
                }
            ) {
                return;
            }
        }
    })
    .await;
    assert!(ended.is_ok(), "the call did not end");
}

/// A finished recording (the file is complete once the call's flow is closed).
async fn recording(path: &std::path::Path) -> Vec<i16> {
    let mut last = 0;
    for _ in 0..60 {
        tokio::time::sleep(ms(50)).await;
        if let Ok(samples) = runtime::media::load_wav_file(path) {
            if samples.len() > 8000 && samples.len() == last {
                return samples;
            }
            last = samples.len();
        }
    }
    panic!("{} not finished ({last} samples)", path.display());
}

/// The samples a recording that ended at `end` holds for the wall-clock span
/// `from..to` (8 kHz).
fn window(samples: &[i16], end: Instant, from: Instant, to: Instant) -> &[i16] {
    let back = |t: Instant| (end.saturating_duration_since(t).as_secs_f64() * 8000.0) as usize;
    let start = samples.len().saturating_sub(back(from));
    let stop = samples.len().saturating_sub(back(to));
    assert!(stop > start + 2000, "window too short: {start}..{stop}");
    &samples[start..stop]
}

/// Hears each of `present` (above -25 dBm0) and none of `absent` (below -45 dBm0).
fn assert_hears(who: &str, samples: &[i16], present: &[f64], absent: &[f64]) {
    for &f in present {
        let level = tone_level_dbm0(samples, f);
        assert!(level > -25.0, "{who} hears {f} Hz at {level:.1} dBm0 only");
    }
    for &f in absent {
        let level = tone_level_dbm0(samples, f);
        assert!(level < -45.0, "{who} hears {f} Hz at {level:.1} dBm0");
    }
}

fn connected(data: &Value) -> usize {
    data["participants"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["state"] == "connected")
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_call_of_three_in_a_room() {
    let rig = Rig::start("a_group_call_of_three_in_a_room").await;
    let mut peers = [
        peer(&rig, "p1", FA).await,
        peer(&rig, "p2", FB).await,
        peer(&rig, "p3", FC).await,
    ];
    let (status, created) = rig
        .post(
            "/v1/calls",
            json!({
                "application": "app",
                "targets": peers.iter().map(|p| json!({ "sipUri": p.uri })).collect::<Vec<_>>(),
                "operationContext": "group",
            }),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    let id = created["callConnectionId"].as_str().unwrap().to_owned();
    assert_eq!(created["participants"].as_array().unwrap().len(), 3);
    let connected_event = rig.events.wait_call("CallConnected", &id).await;
    assert_eq!(connected_event.data["operationContext"], "group");
    rig.events
        .wait("ParticipantsUpdated", |d| {
            d["callConnectionId"] == json!(id) && connected(d) == 3
        })
        .await;
    // One update per answer, in order, each with one more participant.
    let updates: Vec<(u64, usize)> = rig
        .events
        .of_call(&id)
        .into_iter()
        .filter(|e| e.event_type == "ParticipantsUpdated")
        .map(|e| {
            (
                e.data["sequenceNumber"].as_u64().unwrap(),
                connected(&e.data),
            )
        })
        .collect();
    assert_eq!(updates, vec![(1, 1), (2, 2), (3, 3)]);
    let mut calls = Vec::new();
    for p in &mut peers {
        calls.push(p.calls.recv().await.unwrap());
    }
    let t_all = Instant::now();

    // Everyone talks; p3 is muted for a while (it hears the others, they not it).
    tokio::time::sleep(ms(1000)).await;
    let t_mute = Instant::now();
    let (status, body) = rig
        .post(
            &format!("/v1/calls/{id}/participants:mute"),
            json!({
                "targetParticipants": [{ "sipUri": peers[2].uri }],
                "operationContext": "mute-p3",
                "operationCallbackUri": "http://127.0.0.1:9/mute-hook"
            }),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["operationContext"], "mute-p3");
    let muted = rig
        .events
        .wait("ParticipantsUpdated", |d| {
            d["callConnectionId"] == json!(id) && d["sequenceNumber"] == 4
        })
        .await;
    // The mute's result: its context, to its callback.
    assert_eq!(muted.data["operationContext"], "mute-p3");
    assert_eq!(
        muted.callback.as_deref(),
        Some("http://127.0.0.1:9/mute-hook")
    );
    let is_muted = |data: &Value, uri: &str| {
        data["participants"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["identifier"]["sipUri"] == uri)
            .map(|p| p["isMuted"] == true)
            .unwrap()
    };
    assert!(is_muted(&muted.data, &peers[2].uri), "{}", muted.data);
    assert!(!is_muted(&muted.data, &peers[0].uri), "{}", muted.data);
    let (_, listed) = rig.get(&format!("/v1/calls/{id}/participants")).await;
    assert!(listed.to_string().contains("\"isMuted\":true"), "{listed}");
    // Muting again changes nothing: no event. A stranger, or a participant named
    // twice, is refused and nobody's mute changes.
    let (status, _) = rig
        .post(
            &format!("/v1/calls/{id}/participants:mute"),
            json!({ "targetParticipants": [{ "sipUri": peers[2].uri }] }),
        )
        .await;
    assert_eq!(status, 200);
    let (status, problem) = rig
        .post(
            &format!("/v1/calls/{id}/participants:mute"),
            json!({ "targetParticipants": [{ "sipUri": peers[0].uri }, { "sipUri": "sip:nobody@127.0.0.1" }] }),
        )
        .await;
    assert_eq!(status, 422, "{problem}");
    assert_eq!(problem["field"], "targetParticipants[1]", "{problem}");
    let (status, problem) = rig
        .post(
            &format!("/v1/calls/{id}/participants:mute"),
            json!({ "targetParticipants": [] }),
        )
        .await;
    assert_eq!(status, 400, "{problem}");
    assert_eq!(problem["field"], "targetParticipants", "{problem}");
    tokio::time::sleep(ms(1200)).await;
    let t_unmute = Instant::now();
    let (status, body) = rig
        .post(
            &format!("/v1/calls/{id}/participants:unmute"),
            json!({ "targetParticipants": [{ "sipUri": peers[2].uri }] }),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let unmuted = rig
        .events
        .wait("ParticipantsUpdated", |d| {
            d["callConnectionId"] == json!(id) && d["sequenceNumber"] == 5
        })
        .await;
    assert!(!is_muted(&unmuted.data, &peers[2].uri), "{}", unmuted.data);
    assert!(!is_muted(&unmuted.data, &peers[0].uri), "{}", unmuted.data);
    tokio::time::sleep(ms(700)).await;

    // Then the application plays to the call: all hear it.
    let wav = write_wav("to-the-group", 1.5);
    let t_play = Instant::now();
    rig.accepted(
        &format!("/v1/calls/{id}:play"),
        json!({ "file": wav.display().to_string(), "operationContext": "to-all" }),
    )
    .await;
    rig.events
        .wait("PlayCompleted", |d| d["operationContext"] == "to-all")
        .await;
    // Once, and in order: after the unmute's update (sequence 5), with no PlayCanceled or
    // PlayFailed (what it was heard as is read from the recordings below).
    let order: Vec<Value> = rig
        .events
        .of_call(&id)
        .into_iter()
        .map(|e| json!({ "type": e.event_type, "data": e.data }))
        .collect();
    let unmute_at = order
        .iter()
        .position(|e| e["type"] == "ParticipantsUpdated" && e["data"]["sequenceNumber"] == 5)
        .unwrap();
    let plays: Vec<(usize, &Value)> = order
        .iter()
        .enumerate()
        .filter(|(_, e)| {
            e["type"].as_str().unwrap().starts_with("Play")
                && e["data"]["operationContext"] == "to-all"
        })
        .collect();
    assert_eq!(plays.len(), 1, "{order:?}");
    assert_eq!(plays[0].1["type"], "PlayCompleted");
    assert!(plays[0].0 > unmute_at, "{order:?}");

    // p3 is removed: it leaves the room and its call ends.
    rig.accepted(
        &format!("/v1/calls/{id}/participants:remove"),
        json!({ "participantToRemove": { "sipUri": peers[2].uri } }),
    )
    .await;
    rig.events
        .wait_call("RemoveParticipantSucceeded", &id)
        .await;
    until_terminated(&mut calls[2].1).await;
    let t3_end = Instant::now();
    let two = rig
        .events
        .wait("ParticipantsUpdated", |d| {
            d["callConnectionId"] == json!(id) && d["sequenceNumber"] == 6
        })
        .await;
    assert_eq!(connected(&two.data), 2, "{}", two.data);

    // p1 and p2 go on; then p2 is held (out of the room) and taken off hold.
    tokio::time::sleep(ms(1200)).await;
    let t_hold = Instant::now();
    rig.accepted(
        &format!("/v1/calls/{id}/participants:hold"),
        json!({
            "targetParticipant": { "sipUri": peers[1].uri },
            "file": write_wav("p2-music", 3.0).display().to_string(),
            "operationContext": "hold-p2"
        }),
    )
    .await;
    let held = rig
        .events
        .wait("HoldSucceeded", |d| d["operationContext"] == "hold-p2")
        .await;
    assert_eq!(held.data["participant"]["isOnHold"], true);
    tokio::time::sleep(ms(1200)).await;
    let t_unhold = Instant::now();
    rig.accepted(
        &format!("/v1/calls/{id}/participants:unhold"),
        json!({ "targetParticipant": { "sipUri": peers[1].uri }, "operationContext": "unhold-p2" }),
    )
    .await;
    let back = rig
        .events
        .wait("UnholdSucceeded", |d| d["operationContext"] == "unhold-p2")
        .await;
    assert_eq!(back.data["participant"]["isOnHold"], false);
    let t_back = Instant::now();
    tokio::time::sleep(ms(1200)).await;

    // p1 hangs up, then p2, the last: the call is over.
    calls[0]
        .0
        .terminate(CallTerminateOptions::new())
        .await
        .unwrap();
    until_terminated(&mut calls[0].1).await;
    let t1_end = Instant::now();
    rig.events
        .wait("ParticipantsUpdated", |d| {
            d["callConnectionId"] == json!(id) && connected(d) == 1
        })
        .await;
    tokio::time::sleep(ms(300)).await;
    assert!(
        !rig.events.types().contains(&"CallDisconnected".to_owned()),
        "one participant left: the call goes on"
    );
    calls[1]
        .0
        .terminate(CallTerminateOptions::new())
        .await
        .unwrap();
    until_terminated(&mut calls[1].1).await;
    let t2_end = Instant::now();
    let disconnected = rig.events.wait_call("CallDisconnected", &id).await;
    assert_eq!(disconnected.data["resultInformation"]["code"], 200);
    let (status, _) = rig.get(&format!("/v1/calls/{id}")).await;
    assert_eq!(status, 404);
    let sequences: Vec<u64> = rig
        .events
        .of_call(&id)
        .into_iter()
        .filter(|e| e.event_type == "ParticipantsUpdated")
        .map(|e| e.data["sequenceNumber"].as_u64().unwrap())
        .collect();
    assert!(
        sequences.windows(2).all(|w| w[0] + 1 == w[1]),
        "{sequences:?}"
    );

    // Who heard whom.
    let [a, b, c] = [FA, FB, FC];
    let p1 = recording(&peers[0].wav).await;
    let p2 = recording(&peers[1].wav).await;
    let p3 = recording(&peers[2].wav).await;
    let during_play = |s, end| window(s, end, t_play + ms(400), t_play + ms(1100));
    assert_hears(
        "p1, all three and the play",
        during_play(&p1, t1_end),
        &[b, c, PLAYED],
        &[a],
    );
    assert_hears(
        "p2, all three and the play",
        during_play(&p2, t2_end),
        &[a, c, PLAYED],
        &[b],
    );
    assert_hears(
        "p3, all three and the play",
        during_play(&p3, t3_end),
        &[a, b, PLAYED],
        &[c],
    );
    let before_play = window(&p3, t3_end, t_all + ms(300), t_mute);
    assert_hears("p3, before the play", before_play, &[a, b], &[c, PLAYED]);
    // p3 muted: it hears both others; they hear only each other.
    let during_mute = |s, end| window(s, end, t_mute + ms(400), t_unmute - ms(100));
    assert_hears(
        "p1, p3 muted",
        during_mute(&p1, t1_end),
        &[b],
        &[a, c, PLAYED],
    );
    assert_hears(
        "p2, p3 muted",
        during_mute(&p2, t2_end),
        &[a],
        &[b, c, PLAYED],
    );
    assert_hears("p3, muted", during_mute(&p3, t3_end), &[a, b], &[c, PLAYED]);
    let unmuted = |s, end| window(s, end, t_unmute + ms(400), t_play);
    assert_hears(
        "p1, p3 unmuted",
        unmuted(&p1, t1_end),
        &[b, c],
        &[a, PLAYED],
    );
    let after_removal = |s, end| window(s, end, t3_end + ms(400), t_hold - ms(100));
    assert_hears(
        "p1, with p2",
        after_removal(&p1, t1_end),
        &[b],
        &[a, c, PLAYED],
    );
    assert_hears(
        "p2, with p1",
        after_removal(&p2, t2_end),
        &[a],
        &[b, c, PLAYED],
    );
    // Held, p2 is out of the room: it hears its music and not p1; p1 hears neither.
    let p2_held = window(&p1, t1_end, t_hold + ms(500), t_unhold - ms(100));
    assert_hears("p1, p2 held", p2_held, &[], &[a, b, c, PLAYED]);
    let held_p2 = window(&p2, t2_end, t_hold + ms(500), t_unhold - ms(100));
    assert_hears("p2, held", held_p2, &[PLAYED], &[a, b, c]);
    let p2_back = window(&p1, t1_end, t_back + ms(400), t1_end - ms(300));
    assert_hears("p1, p2 back", p2_back, &[b], &[a, c, PLAYED]);
    let back_p2 = window(&p2, t2_end, t_back + ms(400), t1_end - ms(300));
    assert_hears("p2, back", back_p2, &[a], &[b, c, PLAYED]);
    for p in &peers {
        std::fs::remove_file(&p.wav).ok();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_call_whose_targets_fail() {
    let rig = Rig::start("a_group_call_whose_targets_fail").await;
    let mut p1 = peer(&rig, "p1", FA).await;
    // One answers, one is busy: the call goes on with the one.
    let (status, created) = rig
        .post(
            "/v1/calls",
            json!({
                "application": "app",
                "targets": [{ "sipUri": p1.uri }, { "sipUri": rig.demo_b("busy") }],
                "operationContext": "half",
            }),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    let id = created["callConnectionId"].as_str().unwrap().to_owned();
    let busy = rig.events.wait_call("AddParticipantFailed", &id).await;
    assert_eq!(busy.data["resultInformation"]["code"], 486);
    assert_eq!(busy.data["operationContext"], "half");
    assert_eq!(
        busy.data["participant"]["identifier"]["sipUri"],
        json!(rig.demo_b("busy"))
    );
    rig.events.wait_call("CallConnected", &id).await;
    let (call, mut events) = p1.calls.recv().await.unwrap();
    // The busy target is gone once its call has ended.
    let mut props = json!(null);
    for _ in 0..40 {
        let (status, body) = rig.get(&format!("/v1/calls/{id}")).await;
        assert_eq!(status, 200, "{body}");
        props = body;
        if props["participants"].as_array().unwrap().len() == 1 {
            break;
        }
        tokio::time::sleep(ms(50)).await;
    }
    assert_eq!(
        props["participants"].as_array().unwrap().len(),
        1,
        "{props}"
    );
    assert_eq!(props["participants"][0]["state"], "connected");
    assert!(
        !rig.events
            .of_call(&id)
            .iter()
            .any(|e| e.event_type == "CreateCallFailed")
    );
    // Alone in the room, it still hears what the application plays to the call.
    let wav = write_wav("to-one", 0.3);
    let (status, _) = rig
        .post(
            &format!("/v1/calls/{id}:play"),
            json!({ "file": wav.display().to_string(), "operationContext": "alone" }),
        )
        .await;
    assert_eq!(status, 202);
    rig.events
        .wait("PlayCompleted", |d| d["operationContext"] == "alone")
        .await;
    call.terminate(CallTerminateOptions::new()).await.unwrap();
    until_terminated(&mut events).await;
    rig.events.wait_call("CallDisconnected", &id).await;

    // Nobody answers: each target fails, then the call.
    let (status, created) = rig
        .post(
            "/v1/calls",
            json!({
                "application": "app",
                "targets": [{ "sipUri": rig.demo_b("busy") }, { "sipUri": rig.demo_b("busy") }],
                "operationContext": "none",
            }),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    let id = created["callConnectionId"].as_str().unwrap().to_owned();
    let failed = rig.events.wait_call("CreateCallFailed", &id).await;
    assert_eq!(failed.data["operationContext"], "none");
    let types: Vec<String> = rig
        .events
        .of_call(&id)
        .into_iter()
        .map(|e| e.event_type)
        .collect();
    assert_eq!(
        types,
        vec![
            "AddParticipantFailed",
            "AddParticipantFailed",
            "CreateCallFailed"
        ]
    );
    let (status, _) = rig.get(&format!("/v1/calls/{id}")).await;
    assert_eq!(status, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_takes_over_a_call_a_route_bridged() {
    let mut rig = Rig::start("connect_takes_over_a_call_a_route_bridged").await;
    // Carol calls `relay` at A; a route bridges her to bob. No application has the call.
    let carol = rig.carol_calls("relay", &[]).await;
    let (result, carol_call, mut carol_events) = carol.await.unwrap();
    result.unwrap();
    let _bob = rig.bob_calls.recv().await.unwrap();
    let handle = carol_call.handle();
    let call_id = rig
        .b
        .tandem
        .with_engine(move |engine, _| engine.sip_call_id(handle))
        .await
        .unwrap()
        .unwrap();
    assert!(rig.call_ids().await.is_empty());

    // By its SIP Call-ID, with both legs.
    let (status, taken) = rig
        .post(
            "/v1/calls:connect",
            json!({ "application": "app", "serverCallId": call_id, "operationContext": "adopt" }),
        )
        .await;
    assert_eq!(status, 200, "{taken}");
    let id = taken["callConnectionId"].as_str().unwrap().to_owned();
    assert_eq!(taken["callConnectionState"], "connected");
    assert_eq!(taken["correlationId"], json!(call_id));
    let parties: Vec<String> = taken["participants"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["identifier"]["sipUri"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(parties.len(), 2, "{taken}");
    assert!(parties.iter().any(|p| p.contains("carol")), "{parties:?}");
    assert!(parties.iter().any(|p| p.contains("bob")), "{parties:?}");
    let connected_event = rig.events.wait_call("CallConnected", &id).await;
    assert_eq!(connected_event.application, "app");
    assert_eq!(connected_event.data["operationContext"], "adopt");
    assert_eq!(rig.call_ids().await, vec![id.clone()]);

    // By its id, to another application: the first one is told it has gone.
    let (status, moved) = rig
        .post(
            "/v1/calls:connect",
            json!({ "application": "slow", "callConnectionId": id, "operationContext": "move" }),
        )
        .await;
    assert_eq!(status, 200, "{moved}");
    assert_eq!(moved["application"], "slow");
    let left = rig.events.wait_call("CallDisconnected", &id).await;
    assert_eq!(left.application, "app");
    let to_slow = rig
        .events
        .wait("CallConnected", |d| d["operationContext"] == "move")
        .await;
    assert_eq!(to_slow.application, "slow");

    // Unknown calls and bad requests.
    let (status, problem) = rig
        .post(
            "/v1/calls:connect",
            json!({ "application": "app", "serverCallId": "no-such@call", "operationContext": "ghost" }),
        )
        .await;
    assert_eq!(status, 404, "{problem}");
    assert_eq!(problem["field"], "serverCallId");
    let ghost = rig
        .events
        .wait("ConnectFailed", |d| d["operationContext"] == "ghost")
        .await;
    assert_eq!(ghost.application, "app");
    assert_eq!(ghost.data["correlationId"], "no-such@call");
    assert_eq!(ghost.data["resultInformation"]["code"], 404);
    let (status, problem) = rig
        .post(
            "/v1/calls:connect",
            json!({ "application": "app", "serverCallId": call_id, "callConnectionId": id }),
        )
        .await;
    assert_eq!(status, 422, "{problem}");
    let (status, problem) = rig
        .post(
            "/v1/calls:connect",
            json!({ "application": "nobody", "callConnectionId": id }),
        )
        .await;
    assert_eq!(
        (status, problem["field"].clone()),
        (422, json!("application"))
    );

    // The call's events go to `slow` to its end: carol hangs up.
    carol_call
        .terminate(CallTerminateOptions::new())
        .await
        .unwrap();
    until_terminated(&mut carol_events).await;
    let ended = rig
        .events
        .wait("CallDisconnected", |d| {
            d["callConnectionId"] == json!(id)
                && d["resultInformation"]["message"] != left.data["resultInformation"]["message"]
        })
        .await;
    assert_eq!(ended.application, "slow");
    assert!(rig.call_ids().await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hold_and_unhold_a_participant() {
    let mut rig = Rig::start("hold_and_unhold_a_participant").await;
    let id = rig.connected_call(&rig.bob(), "to-bob").await;
    let mut bob = rig.bob_calls.recv().await.unwrap();
    let flow = bob.call.flow();
    // A call of one participant has no room to mute in.
    let (status, problem) = rig
        .post(
            &format!("/v1/calls/{id}/participants:mute"),
            json!({ "targetParticipants": [{ "sipUri": rig.bob() }] }),
        )
        .await;
    assert_eq!(status, 409, "{problem}");
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("no conference room"),
        "{problem}"
    );
    let recorded =
        std::env::temp_dir().join(format!("tandem-api-{}-held-hears.wav", std::process::id()));
    let music = write_wav("music", 2.0);

    rig.accepted(
        &format!("/v1/calls/{id}/participants:hold"),
        json!({
            "targetParticipant": { "sipUri": rig.bob() },
            "file": music.display().to_string(),
            "operationContext": "hold"
        }),
    )
    .await;
    let held = rig
        .events
        .wait("HoldSucceeded", |d| d["operationContext"] == "hold")
        .await;
    assert_eq!(held.data["participant"]["isOnHold"], true);
    // Bob was told: we only send.
    bob_waits(&mut bob, |e| {
        matches!(e, CallEvent::FlowConfigurationChanged { configuration }
            if configuration.remote_direction == Direction::SendOnly)
    })
    .await;
    let (_, list) = rig.get(&format!("/v1/calls/{id}/participants")).await;
    assert_eq!(list["value"][0]["isOnHold"], true, "{list}");
    // He hears the music.
    flow.record_to(&recorded).await.unwrap();
    tokio::time::sleep(ms(900)).await;
    flow.stop_recording().await.unwrap();
    let heard = runtime::media::load_wav_file(&recorded).unwrap();
    assert!(heard.len() >= 4000, "{} samples", heard.len());
    let level = tone_level_dbm0(&heard[heard.len() - 4000..], PLAYED);
    assert!(
        level > -30.0,
        "bob hears the music on hold: {level:.1} dBm0"
    );
    // Held already.
    let (status, _) = rig
        .post(
            &format!("/v1/calls/{id}/participants:hold"),
            json!({ "targetParticipant": { "sipUri": rig.bob() } }),
        )
        .await;
    assert_eq!(status, 409);

    rig.accepted(
        &format!("/v1/calls/{id}/participants:unhold"),
        json!({ "targetParticipant": { "sipUri": rig.bob() }, "operationContext": "unhold" }),
    )
    .await;
    let back = rig
        .events
        .wait("UnholdSucceeded", |d| d["operationContext"] == "unhold")
        .await;
    assert_eq!(back.data["participant"]["isOnHold"], false);
    bob_waits(&mut bob, |e| {
        matches!(e, CallEvent::FlowConfigurationChanged { configuration }
            if configuration.remote_direction == Direction::SendRecv)
    })
    .await;
    // The music stopped.
    tokio::time::sleep(ms(200)).await;
    flow.record_to(&recorded).await.unwrap();
    tokio::time::sleep(ms(800)).await;
    flow.stop_recording().await.unwrap();
    let heard = runtime::media::load_wav_file(&recorded).unwrap();
    let level = tone_level_dbm0(&heard[heard.len() - 4000..], PLAYED);
    assert!(level < -45.0, "the music stopped: {level:.1} dBm0");
    let (status, _) = rig
        .post(
            &format!("/v1/calls/{id}/participants:unhold"),
            json!({ "targetParticipant": { "sipUri": rig.bob() } }),
        )
        .await;
    assert_eq!(status, 409);
    // A participant the call does not have.
    let (status, problem) = rig
        .post(
            &format!("/v1/calls/{id}/participants:hold"),
            json!({ "targetParticipant": { "sipUri": "sip:nobody@127.0.0.2" } }),
        )
        .await;
    assert_eq!(
        (status, problem["field"].clone()),
        (422, json!("targetParticipant"))
    );
    let sequences: Vec<u64> = rig
        .events
        .of_call(&id)
        .into_iter()
        .filter(|e| e.event_type == "ParticipantsUpdated")
        .map(|e| e.data["sequenceNumber"].as_u64().unwrap())
        .collect();
    assert_eq!(sequences, vec![1, 2, 3], "connected, held, back");
    std::fs::remove_file(&recorded).ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transfer_in_a_group_call_names_its_transferee() {
    let rig = Rig::start("a_transfer_in_a_group_call").await;
    let mut p1 = peer(&rig, "p1", FA).await;
    let mut p2 = peer(&rig, "p2", FB).await;
    let (status, created) = rig
        .post(
            "/v1/calls",
            json!({
                "application": "app",
                "targets": [{ "sipUri": p1.uri }, { "sipUri": p2.uri }],
            }),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    let id = created["callConnectionId"].as_str().unwrap().to_owned();
    let both = rig
        .events
        .wait("ParticipantsUpdated", |d| {
            d["callConnectionId"] == json!(id) && connected(d) == 2
        })
        .await;
    let both = both.data["sequenceNumber"].as_u64().unwrap();
    let (c1, mut e1) = p1.calls.recv().await.unwrap();
    let (c2, mut e2) = p2.calls.recv().await.unwrap();
    let target = rig.demo_b("echo");

    // Two participants and no transferee: which one?
    let before = rig.events.all().len();
    let (status, problem) = rig
        .post(
            &format!("/v1/calls/{id}:transferToParticipant"),
            json!({ "targetParticipant": { "sipUri": target } }),
        )
        .await;
    assert_eq!(status, 422, "{problem}");
    assert_eq!(problem["field"], "transferee", "{problem}");
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("several participants: name one"),
        "{problem}"
    );
    assert_eq!(rig.events.all().len(), before, "nothing happened");

    // p2 named: the REFER goes to p2 (who accepts it), p1 stays.
    rig.accepted(
        &format!("/v1/calls/{id}:transferToParticipant"),
        json!({
            "targetParticipant": { "sipUri": target },
            "transferee": { "sipUri": p2.uri },
            "operationContext": "xfer-p2"
        }),
    )
    .await;
    let handle = c2.handle();
    let transfer = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match e2.next().await {
                Some(CallEvent::TransferReceived { transfer, .. }) => return transfer,
                Some(_) => {}
                None => panic!("p2's call ended without a REFER"),
            }
        }
    })
    .await
    .expect("p2 gets the REFER");
    let accepted = rig
        .b
        .tandem
        .with_engine(move |engine, now| {
            engine.accept_transfer(now, handle, transfer, CallEstablishOptions::new())
        })
        .await;
    assert!(matches!(accepted, Ok(Ok(_))), "{accepted:?}");
    let accepted = rig.events.wait_call("CallTransferAccepted", &id).await;
    assert_eq!(accepted.data["operationContext"], "xfer-p2");
    assert_eq!(accepted.data["sipStatus"], 200);
    assert_eq!(
        accepted.data["transferee"]["identifier"]["sipUri"],
        json!(p2.uri)
    );
    // p2's leg ends (RFC 5589 §6); p1 is the one left, still connected.
    until_terminated(&mut e2).await;
    let left = rig
        .events
        .wait("ParticipantsUpdated", |d| {
            d["callConnectionId"] == json!(id)
                && d["sequenceNumber"].as_u64().unwrap() > both
                && d["participants"].as_array().unwrap().len() == 1
        })
        .await;
    assert_eq!(
        left.data["participants"][0]["identifier"]["sipUri"],
        json!(p1.uri)
    );
    assert_eq!(left.data["participants"][0]["state"], "connected");
    let (_, props) = rig.get(&format!("/v1/calls/{id}")).await;
    assert_eq!(props["callConnectionState"], "connected");
    c1.terminate(CallTerminateOptions::new()).await.unwrap();
    until_terminated(&mut e1).await;
    rig.events.wait_call("CallDisconnected", &id).await;
    drop(c2);
}
