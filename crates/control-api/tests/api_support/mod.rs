//! The rig of the API tests: runtime A (127.0.0.1) runs the control API over real
//! loopback sockets, served by axum on 127.0.0.1:0; runtime B (127.0.0.2) is the far
//! end: `bob` answers every call (and accepts transfers), `carol` places calls to the
//! API's applications, and the demo users `echo`, `ring` and `busy` of B are targets.
//! A recording [`EventSink`] keeps every event the API publishes, and hands each to an
//! event hub too: the rig serves what the daemon serves, `control_api::router` (the
//! actions and the event stream, behind the token).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    dead_code
)]

use control_api::{ApiConfig, ApplicationConfig, ControlApi, EventSink};
use runtime::app::{ApplicationEndpoint, AudioVideoCall, EndpointNotice};
use runtime::calls::routing::{Action, Match, RouteTable, Rule, Target, regex};
use runtime::calls::{
    ApplicationEndpointSettings, BridgeMode, CallAcceptOptions, CallEstablishOptions, CallEvent,
    ConversationSettings, EngineConfig, MediaSettings, RingStrategy, SignalingHeader,
};
use runtime::sip_transport::TransportConfig;
use runtime::{Running, RuntimeConfig};
use serde_json::{Value, json};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{Notify, mpsc};

pub const TOKEN: &str = "test-token-0123456789";

/// One published event.
#[derive(Debug, Clone)]
pub struct Published {
    pub application: String,
    pub callback: Option<String>,
    pub event_type: String,
    pub subject: Option<String>,
    pub data: Value,
}

/// An [`EventSink`] that keeps everything.
#[derive(Debug, Default)]
pub struct Recorder {
    events: Mutex<Vec<Published>>,
    changed: Notify,
}

impl EventSink for Recorder {
    fn publish(
        &self,
        application: &str,
        callback: Option<&str>,
        event_type: &str,
        subject: Option<String>,
        data: Value,
    ) -> u64 {
        let mut events = self.events.lock().unwrap();
        events.push(Published {
            application: application.to_owned(),
            callback: callback.map(str::to_owned),
            event_type: event_type.to_owned(),
            subject,
            data,
        });
        self.changed.notify_waiters();
        events.len() as u64
    }
}

/// The recorder and the hub (whose stream the router serves; no webhooks are sent).
struct Tee {
    recorder: Arc<Recorder>,
    hub: control_api::hub::EventHub,
}

impl EventSink for Tee {
    fn publish(
        &self,
        application: &str,
        callback: Option<&str>,
        event_type: &str,
        subject: Option<String>,
        data: Value,
    ) -> u64 {
        let event = control_api::events::ApiEvent::new(event_type, subject.clone(), data.clone());
        self.hub.publish(application, None, event);
        self.recorder
            .publish(application, callback, event_type, subject, data)
    }
}

impl Recorder {
    pub fn all(&self) -> Vec<Published> {
        self.events.lock().unwrap().clone()
    }

    pub fn types(&self) -> Vec<String> {
        self.all().into_iter().map(|e| e.event_type).collect()
    }

    /// The first event of `event_type` for the call connection `id` (waits up to 10 s).
    pub async fn wait_call(
        &self,
        event_type: &str,
        id: &(impl serde::Serialize + ?Sized),
    ) -> Published {
        let id = serde_json::json!(id);
        self.wait(event_type, |d| d["callConnectionId"] == id).await
    }

    /// The first event of `event_type` that `matches` (waits up to 10 s).
    pub async fn wait(&self, event_type: &str, matches: impl Fn(&Value) -> bool) -> Published {
        let found = tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                let notified = self.changed.notified();
                tokio::pin!(notified);
                notified.as_mut().enable();
                if let Some(event) = self
                    .all()
                    .into_iter()
                    .find(|e| e.event_type == event_type && matches(&e.data))
                {
                    return event;
                }
                notified.await;
            }
        })
        .await;
        match found {
            Ok(event) => event,
            Err(_) => panic!(
                "no {event_type} event within 10 s; events: {:#?}",
                self.all()
            ),
        }
    }

    /// The events of one call connection, in order.
    pub fn of_call(&self, id: &str) -> Vec<Published> {
        self.all()
            .into_iter()
            .filter(|e| e.data["callConnectionId"] == json!(id))
            .collect()
    }
}

/// A runtime on `ip` with its own RTP range.
async fn runtime_on(ip: &str, first_port: u16, routes: RouteTable) -> Running {
    let engine = EngineConfig {
        media: MediaSettings {
            first_port,
            last_port: first_port + 199,
            ..MediaSettings::default()
        },
        routes,
        ..EngineConfig::default()
    };
    let config = RuntimeConfig {
        transport: TransportConfig::new(vec![format!("{ip}:0").parse().unwrap()], vec![]),
        engine,
        dns_servers: Vec::new(),
        media_address: Some(ip.parse().unwrap()),
    };
    runtime::start(config).await.unwrap()
}

/// What bob's side saw of a call.
#[derive(Debug)]
pub struct BobCall {
    pub call: AudioVideoCall,
    pub headers: Vec<SignalingHeader>,
    pub events: mpsc::UnboundedReceiver<CallEvent>,
}

pub struct Rig {
    pub a: Running,
    pub b: Running,
    pub api: ControlApi,
    pub events: Arc<Recorder>,
    pub hub: control_api::hub::EventHub,
    pub base: String,
    pub client: reqwest::Client,
    pub a_addr: std::net::SocketAddr,
    pub b_addr: std::net::SocketAddr,
    /// Every call bob answered.
    pub bob_calls: mpsc::UnboundedReceiver<BobCall>,
    /// Carol places calls from B.
    pub carol: ApplicationEndpoint,
}

/// A port range per test name, so parallel tests rarely meet (and the media plane
/// skips ports another holds).
fn ports_for(name: &str) -> u16 {
    let h = name
        .bytes()
        .fold(17u32, |h, b| h.wrapping_mul(31).wrapping_add(u32::from(b)));
    20000 + (h % 90) as u16 * 400
}

impl Rig {
    /// Applications: `app` (owner `sip:app@A`, 10 s to answer) and `slow` (owner
    /// `sip:slow@A`, 700 ms to answer); a `webhook` route hands calls to user `support`
    /// to `app`; a `bridge` route bridges calls to user `relay` to bob.
    pub async fn start(name: &str) -> Rig {
        Rig::with(name, |_| {}).await
    }

    pub async fn with(name: &str, configure: impl FnOnce(&mut ApiConfig)) -> Rig {
        let base_port = ports_for(name);
        let route = Rule::new(
            "support",
            Match {
                user: Some(regex("^support$").unwrap()),
                ..Match::default()
            },
            Action::Webhook {
                application: "app".into(),
            },
        )
        .unwrap();
        let b = runtime_on("127.0.0.2", base_port + 200, RouteTable::default()).await;
        let b_addr = b.local_addrs[0].1;
        // Calls to `relay` are bridged to bob by a route, media-anchored: calls of
        // Tandem's that no application has (for `connect`).
        let relay = Rule::new(
            "relay",
            Match {
                user: Some(regex("^relay$").unwrap()),
                ..Match::default()
            },
            Action::Bridge {
                targets: vec![Target::new(format!("sip:bob@{b_addr}"))],
                ring: RingStrategy::Sequential,
                mode: BridgeMode::MediaAnchored,
                pass_headers: Vec::new(),
            },
        )
        .unwrap();
        let a = runtime_on("127.0.0.1", base_port, RouteTable::new(vec![route, relay])).await;
        let a_addr = a.local_addrs[0].1;

        let mut app = ApplicationConfig::new("app", format!("sip:app@{a_addr}"));
        app.callback_uri = Some("http://127.0.0.1:9/app-hook".into());
        app.answer_timeout = Duration::from_secs(10);
        let mut slow = ApplicationConfig::new("slow", format!("sip:slow@{a_addr}"));
        slow.answer_timeout = Duration::from_millis(700);
        let mut config = ApiConfig {
            token: Some(TOKEN.into()),
            applications: vec![app, slow],
            ..ApiConfig::default()
        };
        configure(&mut config);
        let events = Arc::new(Recorder::default());
        let hub = control_api::hub::EventHub::new(control_api::hub::HubConfig::default());
        let token = config.token.clone();
        let tee = Arc::new(Tee {
            recorder: events.clone(),
            hub: hub.clone(),
        });
        let api = control_api::start(a.tandem.clone(), config, tee)
            .await
            .unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let router = control_api::router(&api, hub.clone(), token);
        tokio::spawn(async move { axum::serve(listener, router).await });

        let bob = b
            .tandem
            .add_application_endpoint(ApplicationEndpointSettings::new(format!(
                "sip:bob@{b_addr}"
            )))
            .await
            .unwrap();
        let (bob_tx, bob_calls) = mpsc::unbounded_channel();
        tokio::spawn(answer_everything(b.tandem.clone(), bob, bob_tx));
        let carol = b
            .tandem
            .add_application_endpoint(ApplicationEndpointSettings::new(format!(
                "sip:carol@{b_addr}"
            )))
            .await
            .unwrap();
        Rig {
            a,
            b,
            api,
            events,
            hub,
            base,
            client: reqwest::Client::new(),
            a_addr,
            b_addr,
            bob_calls,
            carol,
        }
    }

    pub fn bob(&self) -> String {
        format!("sip:bob@{}", self.b_addr)
    }

    /// A demo user of B (`echo`, `ring`, `busy`).
    pub fn demo_b(&self, user: &str) -> String {
        format!("sip:{user}@{}", self.b_addr)
    }

    pub fn demo_a(&self, user: &str) -> String {
        format!("sip:{user}@{}", self.a_addr)
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// POSTs an action and asserts it was accepted (202); its answer.
    pub async fn accepted(&self, path: &str, body: Value) -> Value {
        let (status, answer) = self.post(path, body).await;
        assert_eq!(status, 202, "{path}: {answer}");
        answer
    }

    /// POST `body` as JSON with the token; the status and the JSON answer (`Null`
    /// when empty).
    pub async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        let response = self
            .client
            .post(self.url(path))
            .bearer_auth(TOKEN)
            .json(&body)
            .send()
            .await
            .unwrap();
        answer(response).await
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        let response = self
            .client
            .get(self.url(path))
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap();
        answer(response).await
    }

    /// Creates a call from `app` to `target` and waits for `CallConnected` (and its
    /// `ParticipantsUpdated`).
    pub async fn connected_call(&self, target: &str, context: &str) -> String {
        let (status, body) = self
            .post(
                "/v1/calls",
                json!({
                    "application": "app",
                    "targets": [{ "sipUri": target }],
                    "operationContext": context,
                }),
            )
            .await;
        assert_eq!(status, 201, "{body}");
        let id = body["callConnectionId"].as_str().unwrap().to_owned();
        self.events
            .wait("CallConnected", |d| d["callConnectionId"] == json!(id))
            .await;
        // And the ParticipantsUpdated published with it, so that a test counting events
        // from here sees none of the connect's.
        self.events
            .wait("ParticipantsUpdated", |d| {
                d["callConnectionId"] == json!(id)
            })
            .await;
        id
    }

    /// Carol calls `user` at A; the call's result when it ends being set up.
    pub async fn carol_calls(
        &self,
        user: &str,
        headers: &[(&str, &str)],
    ) -> tokio::task::JoinHandle<(
        Result<runtime::calls::EstablishSucceeded, runtime::app::Error>,
        AudioVideoCall,
        runtime::app::CallEvents,
    )> {
        let conversation = self
            .carol
            .new_conversation(ConversationSettings::default())
            .await
            .unwrap();
        let target = format!("sip:{user}@{}", self.a_addr);
        let mut options = CallEstablishOptions::new();
        for (n, v) in headers {
            options = options.header(*n, *v);
        }
        tokio::spawn(async move {
            let (call, events) = AudioVideoCall::new(&conversation).await.unwrap();
            let result = call.establish(&target, options).await;
            (result, call, events)
        })
    }

    /// The call list's ids.
    pub async fn call_ids(&self) -> Vec<String> {
        let (status, body) = self.get("/v1/calls").await;
        assert_eq!(status, 200, "{body}");
        body["value"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["callConnectionId"].as_str().unwrap().to_owned())
            .collect()
    }
}

pub async fn answer(response: reqwest::Response) -> (u16, Value) {
    let status = response.status().as_u16();
    let bytes = response.bytes().await.unwrap();
    let value = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()))
    };
    (status, value)
}

/// Bob: answers every call, accepts every transfer (placing the new call himself),
/// and hands the test each call with its INVITE's headers and its events.
async fn answer_everything(
    tandem: runtime::Tandem,
    mut bob: ApplicationEndpoint,
    calls: mpsc::UnboundedSender<BobCall>,
) {
    while let Some(notice) = bob.next_event().await {
        let EndpointNotice::CallReceived(incoming) = notice else {
            continue;
        };
        let headers = incoming.info.headers.clone();
        let mut call_events = incoming.events;
        let Some(call) = AudioVideoCall::from_incoming(incoming.call) else {
            continue;
        };
        let (tx, rx) = mpsc::unbounded_channel();
        let tandem = tandem.clone();
        let handle = call.handle();
        tokio::spawn(async move {
            while let Some(event) = call_events.next().await {
                if let CallEvent::TransferReceived { transfer, .. } = &event {
                    let transfer = *transfer;
                    let accepted = tandem
                        .with_engine(move |engine, now| {
                            engine.accept_transfer(
                                now,
                                handle,
                                transfer,
                                CallEstablishOptions::new(),
                            )
                        })
                        .await;
                    assert!(matches!(accepted, Ok(Ok(_))), "{accepted:?}");
                }
                let _ = tx.send(event);
            }
        });
        call.accept(CallAcceptOptions::new()).await.unwrap();
        let _ = calls.send(BobCall {
            call,
            headers,
            events: rx,
        });
    }
}

/// Waits for a call event of bob's call.
pub async fn bob_waits(call: &mut BobCall, done: impl Fn(&CallEvent) -> bool) -> CallEvent {
    let found = tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(event) = call.events.recv().await {
            if done(&event) {
                return Some(event);
            }
        }
        None
    })
    .await;
    match found {
        Ok(Some(event)) => event,
        _ => panic!("bob's call: no such event within 10 s"),
    }
}

/// A WAV file (8 kHz mono 16-bit) of `seconds` of 1 kHz.
pub fn write_wav(name: &str, seconds: f64) -> std::path::PathBuf {
    let count = (8000.0 * seconds) as u32;
    let mut data = Vec::with_capacity(count as usize * 2);
    for n in 0..count {
        let x = (2.0 * std::f64::consts::PI * 1000.0 * f64::from(n) / 8000.0).sin();
        data.extend_from_slice(&((x * 8000.0) as i16).to_le_bytes());
    }
    let mut wav = Vec::new();
    wav.extend_from_slice(b"RIFF");
    wav.extend_from_slice(&(36 + data.len() as u32).to_le_bytes());
    wav.extend_from_slice(b"WAVEfmt ");
    wav.extend_from_slice(&16u32.to_le_bytes());
    wav.extend_from_slice(&1u16.to_le_bytes());
    wav.extend_from_slice(&1u16.to_le_bytes());
    wav.extend_from_slice(&8000u32.to_le_bytes());
    wav.extend_from_slice(&16000u32.to_le_bytes());
    wav.extend_from_slice(&2u16.to_le_bytes());
    wav.extend_from_slice(&16u16.to_le_bytes());
    wav.extend_from_slice(b"data");
    wav.extend_from_slice(&(data.len() as u32).to_le_bytes());
    wav.extend_from_slice(&data);
    let path = std::env::temp_dir().join(format!("tandem-api-{}-{name}.wav", std::process::id()));
    std::fs::write(&path, wav).unwrap();
    path
}

/// A bare SIP peer on a UDP socket of its own (127.0.0.70-79): the test reads what
/// Tandem sends it and writes what it answers, so it can do what a well-behaved user
/// agent never does (never answer, hang up before its ACK).
pub struct RawPeer {
    pub socket: tokio::net::UdpSocket,
    pub addr: std::net::SocketAddr,
}

impl RawPeer {
    pub async fn bind(ip: &str) -> RawPeer {
        let socket = tokio::net::UdpSocket::bind(format!("{ip}:0"))
            .await
            .unwrap();
        let addr = socket.local_addr().unwrap();
        RawPeer { socket, addr }
    }

    /// `sip:user@<this peer>`.
    pub fn uri(&self, user: &str) -> String {
        format!("sip:{user}@{}", self.addr)
    }

    /// The next message whose first line starts with `start` (others are skipped),
    /// within 10 s.
    pub async fn recv(&self, start: &str) -> (String, std::net::SocketAddr) {
        let found = tokio::time::timeout(Duration::from_secs(10), async {
            let mut buf = vec![0u8; 65536];
            loop {
                let (n, from) = self.socket.recv_from(&mut buf).await.unwrap();
                let text = String::from_utf8_lossy(&buf[..n]).into_owned();
                if text.starts_with(start) {
                    return (text, from);
                }
            }
        })
        .await;
        found.unwrap_or_else(|_| panic!("{}: no `{start}` within 10 s", self.addr))
    }

    /// Answers `request` (from `to`) with `status reason`, its To tagged `tag`.
    pub async fn respond(
        &self,
        request: &str,
        status: u16,
        reason: &str,
        tag: &str,
        to: std::net::SocketAddr,
    ) {
        self.respond_with(request, status, reason, tag, to, None)
            .await;
    }

    /// [`RawPeer::respond`] with a body: `(content type, body)`.
    pub async fn respond_with(
        &self,
        request: &str,
        status: u16,
        reason: &str,
        tag: &str,
        to: std::net::SocketAddr,
        body: Option<(&str, &str)>,
    ) {
        let mut response = format!("SIP/2.0 {status} {reason}\r\n");
        for name in ["Via", "From", "Call-ID", "CSeq"] {
            for line in request.split("\r\n\r\n").next().unwrap().lines().skip(1) {
                if let Some((n, _)) = line.split_once(':')
                    && n.trim().eq_ignore_ascii_case(name)
                {
                    response.push_str(line);
                    response.push_str("\r\n");
                }
            }
        }
        let to_header = header(request, "To").unwrap();
        if to_header.contains(";tag=") {
            response.push_str(&format!("To: {to_header}\r\n"));
        } else {
            response.push_str(&format!("To: {to_header};tag={tag}\r\n"));
        }
        response.push_str(&format!("Contact: <sip:raw@{}>\r\n", self.addr));
        match body {
            None => response.push_str("Content-Length: 0\r\n\r\n"),
            Some((content_type, body)) => response.push_str(&format!(
                "Content-Type: {content_type}\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            )),
        }
        self.send(&response, to).await;
    }

    pub async fn send(&self, text: &str, to: std::net::SocketAddr) {
        self.socket.send_to(text.as_bytes(), to).await.unwrap();
    }
}

/// The value of header `name` in a SIP message's text (the first one).
pub fn header(message: &str, name: &str) -> Option<String> {
    message
        .split("\r\n\r\n")
        .next()
        .unwrap_or_default()
        .lines()
        .skip(1)
        .find_map(|line| {
            let (n, v) = line.split_once(':')?;
            n.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_owned())
        })
}

/// One event off the SSE stream: its id (the sequence), its type, its CloudEvent.
#[derive(Debug, Clone)]
pub struct StreamEvent {
    pub id: u64,
    pub event_type: String,
    pub cloud_event: Value,
}

/// A minimal SSE reader of `GET /v1/events` (WHATWG HTML §9.2.6), with the token.
pub struct EventStream {
    response: reqwest::Response,
    buffer: String,
}

impl EventStream {
    /// Opens `GET /v1/events?{query}`, with `Last-Event-ID` when given.
    pub async fn open(rig: &Rig, query: &str, last_event_id: Option<u64>) -> EventStream {
        let mut request = rig
            .client
            .get(rig.url(&format!("/v1/events?{query}")))
            .bearer_auth(TOKEN)
            .header("accept", "text/event-stream");
        if let Some(id) = last_event_id {
            request = request.header("last-event-id", id.to_string());
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 200, "the stream was refused");
        EventStream {
            response,
            buffer: String::new(),
        }
    }

    /// The next event (comments skipped); panics after 10 s without one.
    pub async fn next(&mut self) -> StreamEvent {
        let next = tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                while let Some(end) = self.buffer.find("\n\n") {
                    let block: String = self.buffer.drain(..end + 2).collect();
                    let (mut id, mut event_type, mut data) = (None, None, String::new());
                    for line in block.lines() {
                        let (field, value) = line.split_once(':').unwrap_or((line, ""));
                        let value = value.strip_prefix(' ').unwrap_or(value);
                        match field {
                            "id" => id = Some(value.parse::<u64>().unwrap()),
                            "event" => event_type = Some(value.to_owned()),
                            "data" => data.push_str(value),
                            _ => {}
                        }
                    }
                    if let (Some(id), Some(event_type)) = (id, event_type) {
                        return StreamEvent {
                            id,
                            event_type,
                            cloud_event: serde_json::from_str(&data).unwrap(),
                        };
                    }
                }
                let chunk = self
                    .response
                    .chunk()
                    .await
                    .unwrap()
                    .expect("the stream ended");
                self.buffer.push_str(std::str::from_utf8(&chunk).unwrap());
            }
        })
        .await;
        next.expect("no event on the stream within 10 s")
    }
}
