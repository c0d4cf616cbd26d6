//! Shared helpers of the `events_*` tests: a live stream server, an SSE reader, hub configs.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::time::Duration;

use control_api::events::{ApiEvent, CallEventData, event_type};
use control_api::hub::{EventHub, HubConfig, RetryPolicy};

/// Serves `router` on 127.0.0.1:0; returns its address.
pub async fn serve(router: axum::Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(listener, router).await.unwrap();
    });
    addr
}

/// A hub with quick retries, for tests.
pub fn config() -> HubConfig {
    HubConfig {
        retention: Duration::from_secs(600),
        max_events: 100_000,
        webhook_secret: None,
        retry: RetryPolicy {
            first: Duration::from_millis(20),
            max: Duration::from_millis(200),
            attempts: 5,
            timeout: Duration::from_secs(1),
        },
        source: "/tandem/test".to_owned(),
        // Numbered from 1, as the tests count.
        sequence_base: Some(0),
    }
}

/// A call event numbered `n`, so the tests can check which event arrived.
pub fn call_event(n: u64) -> ApiEvent {
    let mut extra = serde_json::Map::new();
    extra.insert("n".to_owned(), n.into());
    ApiEvent::call(
        event_type::PARTICIPANTS_UPDATED,
        CallEventData {
            call_connection_id: format!("call-{n}"),
            correlation_id: format!("{n}@test"),
            operation_context: Some("ctx".to_owned()),
            result_information: None,
            extra,
        },
    )
}

/// Publishes events `from ..= to` (numbered by `n`) to `application`, no callback.
pub fn publish_range(hub: &EventHub, application: &str, from: u64, to: u64) {
    for n in from..=to {
        hub.publish(application, None, call_event(n));
    }
}

/// One SSE event as read off the wire.
#[derive(Debug, Clone)]
pub struct SseEvent {
    pub id: Option<String>,
    pub event: Option<String>,
    pub data: String,
}

impl SseEvent {
    pub fn sequence(&self) -> u64 {
        self.id.as_deref().unwrap().parse().unwrap()
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.data).unwrap()
    }
}

/// A minimal SSE reader over a streaming reqwest response (WHATWG HTML §9.2.6).
pub struct SseClient {
    response: reqwest::Response,
    buffer: String,
    /// Comment lines (keep-alives) seen.
    pub comments: usize,
}

impl SseClient {
    /// `GET /v1/events?{query}` with an optional `Last-Event-ID`; the raw response.
    pub async fn request(
        addr: SocketAddr,
        query: &str,
        last_event_id: Option<&str>,
    ) -> reqwest::Response {
        let mut request = reqwest::Client::new()
            .get(format!("http://{addr}/v1/events?{query}"))
            .header("accept", "text/event-stream");
        if let Some(id) = last_event_id {
            request = request.header("last-event-id", id);
        }
        request.send().await.unwrap()
    }

    /// Connects and checks the stream was opened.
    pub async fn connect(addr: SocketAddr, query: &str, last_event_id: Option<&str>) -> SseClient {
        let response = SseClient::request(addr, query, last_event_id).await;
        assert_eq!(response.status(), 200, "stream refused");
        assert_eq!(
            response.headers()["content-type"].to_str().unwrap(),
            "text/event-stream"
        );
        SseClient {
            response,
            buffer: String::new(),
            comments: 0,
        }
    }

    /// The next event (skipping comments); panics after 10 s without one.
    pub async fn next(&mut self) -> SseEvent {
        tokio::time::timeout(Duration::from_secs(10), self.next_inner())
            .await
            .expect("no SSE event within 10 s")
            .expect("SSE stream ended")
    }

    /// The next event, or `None` if the stream ends.
    pub async fn next_inner(&mut self) -> Option<SseEvent> {
        loop {
            while let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                let mut event = SseEvent {
                    id: None,
                    event: None,
                    data: String::new(),
                };
                let mut has_data = false;
                for line in block.lines() {
                    if line.starts_with(':') {
                        self.comments += 1;
                        continue;
                    }
                    let (field, value) = line.split_once(':').unwrap_or((line, ""));
                    let value = value.strip_prefix(' ').unwrap_or(value);
                    match field {
                        "id" => event.id = Some(value.to_owned()),
                        "event" => event.event = Some(value.to_owned()),
                        "data" => {
                            if has_data {
                                event.data.push('\n');
                            }
                            event.data.push_str(value);
                            has_data = true;
                        }
                        _ => {}
                    }
                }
                if has_data {
                    return Some(event);
                }
            }
            let chunk = self.response.chunk().await.unwrap()?;
            self.buffer.push_str(std::str::from_utf8(&chunk).unwrap());
        }
    }
}
