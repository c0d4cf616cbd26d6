//! The event stream over HTTP: SSE and WebSocket clients that disconnect and resume from
//! their last sequence number get every event exactly once and in order.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod events_support;

use std::net::SocketAddr;
use std::time::Duration;

use control_api::hub::{EventHub, HubConfig};
use control_api::stream;
use events_support::{SseClient, config, publish_range, serve};
use futures_util::StreamExt;
use tokio_tungstenite::tungstenite;

async fn start(config: HubConfig) -> (EventHub, SocketAddr) {
    let hub = EventHub::new(config);
    let addr = serve(stream::router(hub.clone())).await;
    (hub, addr)
}

/// Checks an SSE event: its id is the sequence, its type the CloudEvent type, its data the
/// CloudEvent of that sequence; returns the sequence.
fn check(event: &events_support::SseEvent) -> u64 {
    let json = event.json();
    let sequence = event.sequence();
    assert_eq!(json["sequence"], sequence.to_string());
    assert_eq!(event.event.as_deref(), json["type"].as_str());
    // The tests number their events like the sequence.
    assert_eq!(json["data"]["n"], sequence);
    sequence
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sse_resumes_with_last_event_id_and_after() {
    let (hub, addr) = start(config()).await;
    publish_range(&hub, "app", 1, 5);
    publish_range(&hub, "other", 1, 3);
    let mut received = Vec::new();

    // First connection: from the start, reads 3 events and drops mid-stream.
    let mut client = SseClient::connect(addr, "application=app&after=0", None).await;
    for _ in 0..3 {
        received.push(check(&client.next().await));
    }
    drop(client);

    // Published while the client is away.
    publish_range(&hub, "app", 6, 8);

    // Reconnect with Last-Event-ID (an EventSource does this); it wins over `after=0`.
    let last = received.last().unwrap().to_string();
    let mut client = SseClient::connect(addr, "application=app&after=0", Some(&last)).await;
    for _ in 0..5 {
        received.push(check(&client.next().await));
    }
    // Live events on the same connection.
    let publisher = {
        let hub = hub.clone();
        tokio::spawn(async move {
            for n in 9..=12 {
                tokio::time::sleep(Duration::from_millis(5)).await;
                publish_range(&hub, "app", n, n);
            }
        })
    };
    for _ in 0..2 {
        received.push(check(&client.next().await));
    }
    drop(client);
    publisher.await.unwrap();
    publish_range(&hub, "app", 13, 15);

    // Reconnect with `after=` only.
    let after = received.last().unwrap();
    let mut client =
        SseClient::connect(addr, &format!("application=app&after={after}"), None).await;
    while *received.last().unwrap() < 15 {
        received.push(check(&client.next().await));
    }
    assert_eq!(
        received,
        (1..=15).collect::<Vec<_>>(),
        "every event once, in order"
    );

    // The other application's stream is its own.
    let mut other = SseClient::connect(addr, "application=other&after=1", None).await;
    let event = other.next().await;
    assert_eq!(event.sequence(), 2);
    assert_eq!(event.json()["application"], "other");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sse_without_a_resume_point_starts_live() {
    let (hub, addr) = start(config()).await;
    publish_range(&hub, "app", 1, 3);
    let response = SseClient::request(addr, "application=app", None).await;
    assert_eq!(response.headers()["cache-control"], "no-cache");
    assert_eq!(response.headers()["x-accel-buffering"], "no");
    drop(response);
    let mut client = SseClient::connect(addr, "application=app", None).await;
    // The subscription exists once the response headers are in.
    publish_range(&hub, "app", 4, 4);
    assert_eq!(client.next().await.sequence(), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sse_reconnect_older_than_retention_is_gone() {
    let (hub, addr) = start(HubConfig {
        retention: Duration::from_millis(300),
        ..config()
    })
    .await;
    publish_range(&hub, "app", 1, 4);
    let mut client = SseClient::connect(addr, "application=app&after=0", None).await;
    assert_eq!(client.next().await.sequence(), 1);
    drop(client);
    tokio::time::sleep(Duration::from_millis(400)).await;
    publish_range(&hub, "app", 5, 5);

    let response = SseClient::request(addr, "application=app", Some("1")).await;
    assert_eq!(response.status(), 410);
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json"
    );
    let problem: serde_json::Value = response.json().await.unwrap();
    assert_eq!(problem["status"], 410);
    assert_eq!(problem["type"], stream::PROBLEM_EVENTS_GONE);
    assert!(problem["title"].is_string());
    let detail = problem["detail"].as_str().unwrap();
    assert!(detail.contains("oldest sequence kept is 5"), "{detail}");

    // A resume point beyond what was ever published (an earlier run's) is gone too.
    let response = SseClient::request(addr, "application=app&after=99", None).await;
    assert_eq!(response.status(), 410);
    let problem: serde_json::Value = response.json().await.unwrap();
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("up to sequence 5"),
        "{problem}"
    );

    // Resuming from the last published still works.
    let mut client = SseClient::connect(addr, "application=app&after=4", None).await;
    assert_eq!(client.next().await.sequence(), 5);
}

#[tokio::test]
async fn bad_requests_are_problems_naming_the_field() {
    let (_hub, addr) = start(config()).await;
    for (query, last_event_id, names) in [
        ("after=3", None, "application"),
        ("application=", None, "application"),
        ("application=app&after=x", None, "after"),
        ("application=app&after=-1", None, "after"),
        // Past the documented int64.
        ("application=app&after=9999999999999999999", None, "after"),
        ("application=app", Some("seven"), "Last-Event-ID"),
        ("application=app&bogus=1", None, "bogus"),
    ] {
        let response = SseClient::request(addr, query, last_event_id).await;
        assert_eq!(response.status(), 400, "{query}");
        assert_eq!(
            response.headers()["content-type"],
            "application/problem+json"
        );
        let problem: serde_json::Value = response.json().await.unwrap();
        assert_eq!(problem["status"], 400);
        assert_eq!(problem["type"], stream::PROBLEM_INVALID_PARAMETER);
        let detail = problem["detail"].as_str().unwrap();
        assert!(detail.contains(names), "{query}: {detail}");
    }
    let response = reqwest::get(format!("http://{addr}/v1/events/ws?after=1"))
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let problem: serde_json::Value = response.json().await.unwrap();
    assert!(problem["detail"].as_str().unwrap().contains("application"));
    // A plain GET (no WebSocket handshake) is refused with a problem too.
    let response = reqwest::get(format!("http://{addr}/v1/events/ws?application=app"))
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json"
    );
}

type Ws = tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>;

async fn ws_connect(addr: SocketAddr, query: &str) -> Result<Ws, tungstenite::Error> {
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    tokio_tungstenite::client_async(format!("ws://{addr}/v1/events/ws?{query}"), tcp)
        .await
        .map(|(ws, _)| ws)
}

/// The next CloudEvent text message (pings are skipped).
async fn ws_next(ws: &mut Ws) -> serde_json::Value {
    loop {
        let message = tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .expect("no WebSocket message within 10 s")
            .expect("WebSocket ended")
            .unwrap();
        match message {
            tungstenite::Message::Text(text) => {
                return serde_json::from_str(text.as_str()).unwrap();
            }
            tungstenite::Message::Ping(_) | tungstenite::Message::Pong(_) => {}
            other => panic!("unexpected message {other:?}"),
        }
    }
}

fn ws_sequence(event: &serde_json::Value) -> u64 {
    let sequence: u64 = event["sequence"].as_str().unwrap().parse().unwrap();
    assert_eq!(event["data"]["n"], sequence);
    sequence
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_resumes_after_a_disconnect() {
    let (hub, addr) = start(HubConfig {
        max_events: 20,
        ..config()
    })
    .await;
    publish_range(&hub, "app", 1, 4);
    let mut received = Vec::new();

    let mut ws = ws_connect(addr, "application=app&after=0").await.unwrap();
    for _ in 0..2 {
        received.push(ws_sequence(&ws_next(&mut ws).await));
    }
    ws.close(None).await.unwrap();
    drop(ws);

    publish_range(&hub, "app", 5, 7);
    let after = received.last().unwrap();
    let mut ws = ws_connect(addr, &format!("application=app&after={after}"))
        .await
        .unwrap();
    for _ in 0..5 {
        received.push(ws_sequence(&ws_next(&mut ws).await));
    }
    // Live events.
    publish_range(&hub, "app", 8, 10);
    for _ in 0..3 {
        received.push(ws_sequence(&ws_next(&mut ws).await));
    }
    // An abrupt disconnect (no close frame), events meanwhile, then resume.
    drop(ws);
    publish_range(&hub, "app", 11, 12);
    let after = received.last().unwrap();
    let mut ws = ws_connect(addr, &format!("application=app&after={after}"))
        .await
        .unwrap();
    for _ in 0..2 {
        received.push(ws_sequence(&ws_next(&mut ws).await));
    }
    assert_eq!(
        received,
        (1..=12).collect::<Vec<_>>(),
        "every event once, in order"
    );
    let event = {
        publish_range(&hub, "app", 13, 13);
        ws_next(&mut ws).await
    };
    assert_eq!(event["specversion"], "1.0");
    assert_eq!(event["type"], "ParticipantsUpdated");

    // Past the retention (20 events kept): 410 at the handshake.
    publish_range(&hub, "app", 14, 40);
    match ws_connect(addr, "application=app&after=5").await {
        Err(tungstenite::Error::Http(response)) => {
            assert_eq!(response.status(), 410);
            let body: serde_json::Value =
                serde_json::from_slice(response.body().as_deref().unwrap()).unwrap();
            assert!(
                body["detail"]
                    .as_str()
                    .unwrap()
                    .contains("oldest sequence kept is 21"),
                "{body}"
            );
        }
        Err(other) => panic!("expected 410, got {other}"),
        Ok(_) => panic!("expected 410, the stream opened"),
    }
    // The open client either kept up with those 27 events (the server read them as they
    // were published) or fell behind the 20 kept and was closed: never skipped ahead.
    let mut rest = Vec::new();
    let outcome = tokio::time::timeout(Duration::from_secs(5), async {
        while let Some(message) = ws.next().await {
            match message {
                Ok(tungstenite::Message::Text(text)) => {
                    rest.push(serde_json::from_str::<serde_json::Value>(text.as_str()).unwrap());
                    if rest.len() == 27 {
                        return "kept up";
                    }
                }
                Ok(tungstenite::Message::Close(_)) | Err(_) => return "closed",
                Ok(_) => {}
            }
        }
        "closed"
    })
    .await
    .expect("the client neither got its events nor was closed");
    for (i, event) in rest.iter().enumerate() {
        assert_eq!(
            ws_sequence(event),
            14 + i as u64,
            "{outcome}: events skipped"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sse_lagging_client_gets_ten_thousand_events_in_order() {
    let (hub, addr) = start(config()).await;
    let mut client = SseClient::connect(addr, "application=app&after=0", None).await;
    let publisher = {
        let hub = hub.clone();
        tokio::spawn(async move {
            for n in 1..=10_000u64 {
                hub.publish("app", None, events_support::call_event(n));
                if n % 1000 == 0 {
                    tokio::task::yield_now().await;
                }
            }
        })
    };
    for expected in 1..=10_000u64 {
        let event = client.next().await;
        assert_eq!(check(&event), expected);
        if expected % 2000 == 0 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    publisher.await.unwrap();
    assert_eq!(hub.stats().published, 10_000);
}

#[test]
fn stream_routes_are_documented() {
    #[derive(utoipa::OpenApi)]
    #[openapi(
        paths(stream::sse, stream::websocket),
        components(schemas(control_api::events::CloudEvent))
    )]
    struct Doc;
    let doc = serde_json::to_value(<Doc as utoipa::OpenApi>::openapi()).unwrap();
    let sse = &doc["paths"]["/v1/events"]["get"];
    assert!(
        sse["responses"]["200"]["content"]["text/event-stream"].is_object(),
        "{sse}"
    );
    assert!(
        sse["responses"]["410"]["content"]["application/problem+json"].is_object(),
        "{sse}"
    );
    let params: Vec<&str> = sse["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(params, ["application", "after", "Last-Event-ID"]);
    assert!(doc["paths"]["/v1/events/ws"]["get"]["responses"]["101"].is_object());
    let cloud = &doc["components"]["schemas"]["CloudEvent"];
    assert!(
        cloud["required"]
            .as_array()
            .unwrap()
            .contains(&"specversion".into()),
        "{cloud}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resume_point_of_an_earlier_run_is_gone_and_unknown_applications_are_404() {
    // An earlier run published up to 40 of its numbers; the daemon restarted.
    let (earlier, _) = start(HubConfig {
        sequence_base: None,
        ..config()
    })
    .await;
    let first = earlier.publish("app", None, events_support::call_event(1));
    tokio::time::sleep(Duration::from_millis(5)).await;
    let (hub, addr) = start(HubConfig {
        sequence_base: None,
        ..config()
    })
    .await;
    hub.restrict_to(["app".to_owned()]);
    // The new run has published more events than the client had seen.
    for n in 1..=50 {
        hub.publish("app", None, events_support::call_event(n));
    }
    let resumed = SseClient::request(addr, "application=app", Some(&first.to_string())).await;
    assert_eq!(resumed.status(), 410, "{first}");
    let problem: serde_json::Value = resumed.json().await.unwrap();
    assert!(
        problem["detail"].as_str().unwrap().contains("earlier run"),
        "{problem}"
    );
    // `after=0` is this run's first event.
    let mut client = SseClient::connect(addr, "application=app&after=0", None).await;
    let event = client.next().await;
    assert_eq!(event.json()["data"]["n"], 1);
    assert!(event.sequence() > first, "{} > {first}", event.sequence());

    // A stream of an application that is not configured: 404 naming it, no log made.
    let unknown = SseClient::request(addr, "application=nobody&after=0", None).await;
    assert_eq!(unknown.status(), 404);
    let problem: serde_json::Value = unknown.json().await.unwrap();
    assert_eq!(problem["field"], "application");
    assert!(!hub.knows("nobody"));
}
