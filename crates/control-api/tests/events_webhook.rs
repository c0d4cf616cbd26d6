//! Webhook delivery against real receivers on 127.0.0.1: retries with backoff, Standard
//! Webhooks signatures, order per destination, and isolation from slow or dead receivers.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod events_support;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use control_api::events::CloudEvent;
use control_api::hub::{EventHub, HubConfig, HubStats, RetryPolicy};
use control_api::webhook;
use events_support::{call_event, config, serve};

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

/// What a receiver saw.
#[derive(Default)]
struct Seen {
    /// Attempts per webhook-id.
    attempts: HashMap<String, u32>,
    /// Accepted deliveries, in arrival order.
    delivered: Vec<(HeaderMap, Bytes)>,
    /// The timestamps of every attempt per webhook-id.
    timestamps: HashMap<String, Vec<String>>,
}

#[derive(Clone)]
struct Receiver {
    seen: Arc<Mutex<Seen>>,
    /// The first `fail` attempts of every event answer 500.
    fail: u32,
}

async fn receive(State(receiver): State<Receiver>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let mut seen = receiver.seen.lock().unwrap();
    let id = headers
        .get("webhook-id")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let timestamp = headers
        .get("webhook-timestamp")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    seen.timestamps
        .entry(id.clone())
        .or_default()
        .push(timestamp);
    let attempts = seen.attempts.entry(id).or_default();
    *attempts += 1;
    if *attempts <= receiver.fail {
        return StatusCode::INTERNAL_SERVER_ERROR;
    }
    seen.delivered.push((headers, body));
    StatusCode::NO_CONTENT
}

async fn receiver(fail: u32) -> (SocketAddr, Arc<Mutex<Seen>>) {
    let seen = Arc::new(Mutex::new(Seen::default()));
    let router = Router::new()
        .route("/hook", post(receive))
        .with_state(Receiver {
            seen: Arc::clone(&seen),
            fail,
        });
    (serve(router).await, seen)
}

/// A receiver that never answers.
async fn black_hole() -> SocketAddr {
    let router = Router::new().route(
        "/hook",
        post(|| async {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            StatusCode::OK
        }),
    );
    serve(router).await
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

async fn wait_for(what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < limit, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_failing_twice_gets_the_event_on_the_third_try_signed() {
    let (addr, seen) = receiver(2).await;
    let secret = webhook::parse_secret(SECRET).unwrap();
    let hub = EventHub::new(HubConfig {
        webhook_secret: Some(secret.clone()),
        ..config()
    });
    let uri = format!("http://{addr}/hook");
    hub.publish("app", Some(&uri), call_event(1));

    wait_for("the delivery", Duration::from_secs(5), || {
        hub.stats().delivered == 1
    })
    .await;
    let stats = hub.stats();
    assert_eq!(stats.retries, 2);
    assert_eq!(stats.failed, 0);

    let seen = seen.lock().unwrap();
    assert_eq!(seen.delivered.len(), 1);
    let (headers, body) = &seen.delivered[0];
    let id = headers["webhook-id"].to_str().unwrap();
    assert_eq!(seen.attempts[id], 3, "two failures, then the delivery");
    assert_eq!(headers["content-type"], "application/cloudevents+json");

    // The signature verifies; the timestamp is now-ish.
    assert!(
        headers["webhook-signature"]
            .to_str()
            .unwrap()
            .starts_with("v1,")
    );
    assert!(webhook::verify(
        &secret,
        headers,
        body,
        Duration::from_secs(60),
        unix_now()
    ));
    assert!(!webhook::verify(
        b"wrong secret",
        headers,
        body,
        Duration::from_secs(60),
        unix_now()
    ));
    let mut tampered = body.to_vec();
    tampered.push(b' ');
    assert!(!webhook::verify(
        &secret,
        headers,
        &tampered,
        Duration::from_secs(60),
        unix_now()
    ));
    // Out of tolerance: a replay an hour later is refused.
    assert!(!webhook::verify(
        &secret,
        headers,
        body,
        Duration::from_secs(300),
        unix_now() + 3600
    ));
    for timestamp in &seen.timestamps[id] {
        let timestamp: u64 = timestamp.parse().unwrap();
        assert!(
            timestamp.abs_diff(unix_now()) <= 60,
            "timestamp {timestamp} not current"
        );
    }

    // The body is the CloudEvent, the webhook-id its id.
    let event: CloudEvent = serde_json::from_slice(body).unwrap();
    assert_eq!(event.id, id);
    assert_eq!(event.specversion, "1.0");
    assert_eq!(event.sequence, "1");
    assert_eq!(event.data["callConnectionId"], "call-1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_reach_a_destination_in_order_despite_retries() {
    let (addr, seen) = receiver(1).await;
    let hub = EventHub::new(config());
    let uri = format!("http://{addr}/hook");
    for n in 1..=30 {
        hub.publish("app", Some(&uri), call_event(n));
    }
    wait_for("30 deliveries", Duration::from_secs(20), || {
        hub.stats().delivered == 30
    })
    .await;
    let seen = seen.lock().unwrap();
    let order: Vec<u64> = seen
        .delivered
        .iter()
        .map(|(_, body)| {
            serde_json::from_slice::<CloudEvent>(body)
                .unwrap()
                .sequence_number()
        })
        .collect();
    assert_eq!(order, (1..=30).collect::<Vec<_>>());
    // Unsigned without a secret, but still identified and timestamped.
    let (headers, _) = &seen.delivered[0];
    assert!(headers.get("webhook-signature").is_none());
    assert!(headers.get("webhook-timestamp").is_some());
    assert_eq!(hub.stats().retries, 30);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_receiver_delays_neither_publish_nor_other_destinations() {
    let slow = format!("http://{}/hook", black_hole().await);
    let (fast_addr, fast_seen) = receiver(0).await;
    let fast = format!("http://{fast_addr}/hook");
    let hub = EventHub::new(HubConfig {
        retry: RetryPolicy {
            timeout: Duration::from_secs(30),
            ..config().retry
        },
        ..config()
    });

    let start = Instant::now();
    for n in 1..=1000u64 {
        let callback = if n % 2 == 0 { &fast } else { &slow };
        hub.publish("app", Some(callback), call_event(n));
    }
    let elapsed = start.elapsed();
    println!(
        "publish with a webhook: {:.1} µs per call on average over 1000 (total {:?})",
        elapsed.as_secs_f64() * 1e6 / 1000.0,
        elapsed
    );
    // Not a timing assertion: a sanity bound far above the expected microseconds.
    assert!(
        elapsed < Duration::from_secs(5),
        "publish took {elapsed:?} for 1000 events"
    );

    wait_for(
        "the fast destination's 500 events",
        Duration::from_secs(5),
        || fast_seen.lock().unwrap().delivered.len() == 500,
    )
    .await;
    let order: Vec<u64> = fast_seen
        .lock()
        .unwrap()
        .delivered
        .iter()
        .map(|(_, body)| {
            serde_json::from_slice::<CloudEvent>(body)
                .unwrap()
                .sequence_number()
        })
        .collect();
    assert_eq!(order, (1..=500).map(|n| n * 2).collect::<Vec<_>>());
    let stats = hub.stats();
    assert_eq!(stats.delivered, 500);
    assert_eq!(
        stats.failed, 0,
        "the dead one is still on its first attempt"
    );
    // The stream still has all of them.
    assert_eq!(hub.last_sequence("app"), 1000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_destination_queue_drops_its_oldest() {
    let slow = format!("http://{}/hook", black_hole().await);
    let hub = EventHub::new(HubConfig {
        retry: RetryPolicy {
            timeout: Duration::from_secs(30),
            ..config().retry
        },
        ..config()
    });
    let extra = 5;
    let total = control_api::hub::DESTINATION_QUEUE_LIMIT as u64 + extra;
    for n in 1..=total {
        hub.publish("app", Some(&slow), call_event(n));
    }
    let dropped = hub.stats().webhook_dropped;
    // One event may already be in flight, outside the queue.
    assert!(
        dropped == extra || dropped == extra - 1,
        "dropped {dropped}, expected {} or {extra}",
        extra - 1
    );
    assert_eq!(hub.stats().published, total);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn undeliverable_events_are_counted_and_stay_in_the_log() {
    // A port with nothing listening: connection refused on every attempt.
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap()
    };
    let hub = EventHub::new(HubConfig {
        retry: RetryPolicy {
            first: Duration::from_millis(5),
            max: Duration::from_millis(20),
            attempts: 3,
            timeout: Duration::from_secs(1),
        },
        ..config()
    });
    hub.publish("app", Some(&format!("http://{closed}/hook")), call_event(1));
    wait_for("the failure", Duration::from_secs(5), || {
        hub.stats().failed == 1
    })
    .await;
    let stats = hub.stats();
    assert_eq!((stats.delivered, stats.retries), (0, 2));

    // https:// (no TLS stack) and unparsable URIs are refused at once.
    hub.publish("app", Some("https://example.com/hook"), call_event(2));
    hub.publish("app", Some("not a uri"), call_event(3));
    hub.publish("app", Some("ftp://example.com/hook"), call_event(4));
    assert_eq!(hub.stats().failed, 4);

    // All of them are still there for the stream.
    let mut subscription = hub.subscribe("app", 0).unwrap();
    for n in 1..=4u64 {
        let event = subscription.next().await.unwrap();
        assert_eq!(event.sequence_number(), n);
    }
    let HubStats { published, .. } = hub.stats();
    assert_eq!(published, 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redirects_are_not_followed() {
    let (target, target_seen) = receiver(0).await;
    let redirect = Router::new().route(
        "/hook",
        post(move || async move {
            (
                StatusCode::TEMPORARY_REDIRECT,
                [("location", format!("http://{target}/hook"))],
            )
        }),
    );
    let redirect = serve(redirect).await;
    let hub = EventHub::new(HubConfig {
        retry: RetryPolicy {
            attempts: 2,
            ..config().retry
        },
        ..config()
    });
    hub.publish(
        "app",
        Some(&format!("http://{redirect}/hook")),
        call_event(1),
    );
    wait_for("the failure", Duration::from_secs(5), || {
        hub.stats().failed == 1
    })
    .await;
    assert_eq!(hub.stats().retries, 1);
    assert!(
        target_seen.lock().unwrap().attempts.is_empty(),
        "the redirect was followed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_from_a_plain_thread_delivers() {
    let (addr, seen) = receiver(0).await;
    let hub = EventHub::new(config());
    let uri = format!("http://{addr}/hook");
    let publisher = {
        let hub = hub.clone();
        std::thread::spawn(move || {
            for n in 1..=3 {
                hub.publish("app", Some(&uri), call_event(n));
            }
        })
    };
    publisher.join().unwrap();
    wait_for("3 deliveries", Duration::from_secs(5), || {
        seen.lock().unwrap().delivered.len() == 3
    })
    .await;
    assert_eq!(hub.stats().delivered, 3);
}

#[test]
fn a_hub_outside_a_runtime_counts_webhooks_as_failed() {
    let hub = EventHub::new(config());
    assert_eq!(
        hub.publish("app", Some("http://127.0.0.1:9/hook"), call_event(1)),
        1
    );
    let stats = hub.stats();
    assert_eq!((stats.published, stats.failed, stats.delivered), (1, 1, 0));
    assert_eq!(hub.last_sequence("app"), 1);
}
