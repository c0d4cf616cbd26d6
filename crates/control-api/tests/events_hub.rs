//! The event hub: sequence numbers, subscriptions (backlog, live, lagging), retention,
//! and the CloudEvent shape.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod events_support;

use std::time::Duration;

use control_api::events::{ApiEvent, CallEventData, CloudEvent, ResultInformation, event_type};
use control_api::hub::{EventHub, Gap, HubConfig};
use events_support::{call_event, config, publish_range};

async fn next(subscription: &mut control_api::hub::Subscription) -> CloudEvent {
    tokio::time::timeout(Duration::from_secs(10), subscription.next())
        .await
        .expect("no event within 10 s")
        .expect("subscription ended")
}

#[tokio::test]
async fn sequence_numbers_per_application() {
    let hub = EventHub::new(config());
    assert_eq!(hub.last_sequence("a"), 0);
    assert_eq!(hub.publish("a", None, call_event(1)), 1);
    assert_eq!(hub.publish("a", None, call_event(2)), 2);
    assert_eq!(hub.publish("b", None, call_event(3)), 1);
    assert_eq!(hub.publish("a", None, call_event(4)), 3);
    assert_eq!(hub.publish("b", None, call_event(5)), 2);
    assert_eq!(hub.last_sequence("a"), 3);
    assert_eq!(hub.last_sequence("b"), 2);
    assert_eq!(hub.last_sequence("c"), 0);
    assert_eq!(hub.stats().published, 5);

    // Each application's log holds its own events only, with its own numbers.
    let mut a = hub.subscribe("a", 0).unwrap();
    let seen: Vec<(u64, u64)> = [next(&mut a).await, next(&mut a).await, next(&mut a).await]
        .iter()
        .map(|e| (e.sequence_number(), e.data["n"].as_u64().unwrap()))
        .collect();
    assert_eq!(seen, vec![(1, 1), (2, 2), (3, 4)]);
    let mut b = hub.subscribe("b", 1).unwrap();
    let e = next(&mut b).await;
    assert_eq!((e.sequence_number(), e.data["n"].as_u64().unwrap()), (2, 5));
    assert_eq!(e.application, "b");

    // Event ids are unique across applications.
    let ids: std::collections::HashSet<String> = {
        let mut all = hub.subscribe("a", 0).unwrap();
        let mut ids = Vec::new();
        for _ in 0..3 {
            ids.push(next(&mut all).await.id);
        }
        let mut b = hub.subscribe("b", 0).unwrap();
        for _ in 0..2 {
            ids.push(next(&mut b).await.id);
        }
        ids.into_iter().collect()
    };
    assert_eq!(ids.len(), 5);
}

#[tokio::test]
async fn backlog_then_live_in_order() {
    let hub = EventHub::new(config());
    publish_range(&hub, "app", 1, 5);
    let mut subscription = hub.subscribe("app", 2).unwrap();
    assert_eq!(hub.stats().stream_clients, 1);
    let publisher = {
        let hub = hub.clone();
        tokio::spawn(async move {
            for n in 6..=20 {
                tokio::time::sleep(Duration::from_millis(2)).await;
                hub.publish("app", None, call_event(n));
            }
        })
    };
    let mut seen = Vec::new();
    for _ in 3..=20 {
        seen.push(next(&mut subscription).await.sequence_number());
    }
    assert_eq!(seen, (3..=20).collect::<Vec<_>>());
    publisher.await.unwrap();
    // Live only: starts with the next event published.
    let mut live = hub.subscribe_live("app");
    hub.publish("app", None, call_event(21));
    assert_eq!(next(&mut live).await.sequence_number(), 21);
    drop(subscription);
    drop(live);
    assert_eq!(hub.stats().stream_clients, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lagging_subscriber_gets_every_event_in_order() {
    let hub = EventHub::new(config());
    let mut subscription = hub.subscribe("app", 0).unwrap();
    let publisher = {
        let hub = hub.clone();
        tokio::spawn(async move {
            for n in 1..=10_000u64 {
                hub.publish("app", None, call_event(n));
                if n % 500 == 0 {
                    tokio::task::yield_now().await;
                }
            }
        })
    };
    // The reader starts late: thousands of events are waiting by then.
    tokio::time::sleep(Duration::from_millis(50)).await;
    let mut expected = 1;
    while expected <= 10_000 {
        let event = next(&mut subscription).await;
        assert_eq!(event.sequence_number(), expected);
        assert_eq!(event.data["n"], expected);
        if expected % 1000 == 0 {
            // The slow reader.
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        expected += 1;
    }
    publisher.await.unwrap();
    assert_eq!(hub.last_sequence("app"), 10_000);
}

#[tokio::test]
async fn retention_by_count_and_age_gives_a_gap() {
    let hub = EventHub::new(HubConfig {
        max_events: 10,
        ..config()
    });
    publish_range(&hub, "app", 1, 25);
    assert_eq!(hub.stats().dropped_by_retention, 15);
    match hub.subscribe("app", 3) {
        Err(gap) => assert_eq!(
            gap,
            Gap {
                oldest: 16,
                last: 25,
                after: 3
            }
        ),
        Ok(_) => panic!("resuming after 3 must be a gap"),
    }
    // The oldest kept minus one is still a complete resume point.
    let mut subscription = hub.subscribe("app", 15).unwrap();
    assert_eq!(next(&mut subscription).await.sequence_number(), 16);
    // Beyond the last published (e.g. a client of an earlier run) is a gap too.
    assert!(matches!(
        hub.subscribe("app", 26),
        Err(Gap { last: 25, .. })
    ));

    // A subscriber that falls behind what is kept is ended, never silently skipped.
    let mut lagging = hub.subscribe("app", 20).unwrap();
    publish_range(&hub, "app", 26, 40);
    let ended = tokio::time::timeout(Duration::from_secs(5), lagging.next())
        .await
        .unwrap();
    assert!(
        ended.is_none(),
        "a subscriber behind the retention must end, got {ended:?}"
    );

    // By age.
    let hub = EventHub::new(HubConfig {
        retention: Duration::from_millis(200),
        ..config()
    });
    publish_range(&hub, "app", 1, 3);
    assert!(hub.subscribe("app", 0).is_ok());
    tokio::time::sleep(Duration::from_millis(300)).await;
    match hub.subscribe("app", 0) {
        Err(gap) => assert_eq!((gap.oldest, gap.last), (4, 3)),
        Ok(_) => panic!("events older than the retention must be gone"),
    }
    // Up to date is fine, and numbering continues.
    assert!(hub.subscribe("app", 3).is_ok());
    assert_eq!(hub.publish("app", None, call_event(4)), 4);
}

#[tokio::test]
async fn cloud_event_shape() {
    let hub = EventHub::new(config());
    let mut extra = serde_json::Map::new();
    extra.insert("sipStatus".to_owned(), 200.into());
    let event = ApiEvent::call(
        event_type::CALL_CONNECTED,
        CallEventData {
            call_connection_id: "c-42".to_owned(),
            correlation_id: "a84b4c76e66710@pc33.example.com".to_owned(),
            operation_context: Some("my-context".to_owned()),
            result_information: Some(ResultInformation {
                code: 200,
                sub_code: 0,
                message: "Call connected".to_owned(),
            }),
            extra,
        },
    );
    hub.publish("app", None, event);
    let mut subscription = hub.subscribe("app", 0).unwrap();
    let cloud = next(&mut subscription).await;
    let json = serde_json::to_value(&cloud).unwrap();

    assert_eq!(json["specversion"], "1.0");
    for attribute in [
        "id",
        "source",
        "type",
        "subject",
        "time",
        "datacontenttype",
        "sequence",
        "application",
    ] {
        assert!(
            json[attribute].is_string(),
            "{attribute} missing or not a string in {json}"
        );
    }
    assert!(!json["id"].as_str().unwrap().is_empty());
    assert_eq!(json["source"], "/tandem/test");
    assert_eq!(json["type"], "CallConnected");
    assert_eq!(json["subject"], "calling/callConnections/c-42");
    assert_eq!(json["datacontenttype"], "application/json");
    assert_eq!(json["sequence"], "1");
    assert_eq!(json["application"], "app");
    // RFC 3339, UTC: 2025-01-31T23:59:59.123Z
    let time = json["time"].as_str().unwrap();
    assert_eq!(time.len(), 24, "{time}");
    assert_eq!(&time[4..5], "-");
    assert_eq!(&time[10..11], "T");
    assert!(time.ends_with('Z'));
    assert!(time.starts_with("20"), "{time}");

    let data = &json["data"];
    assert_eq!(data["callConnectionId"], "c-42");
    assert_eq!(data["correlationId"], "a84b4c76e66710@pc33.example.com");
    assert_eq!(data["operationContext"], "my-context");
    assert_eq!(data["resultInformation"]["code"], 200);
    assert_eq!(data["resultInformation"]["subCode"], 0);
    assert_eq!(data["resultInformation"]["message"], "Call connected");
    assert_eq!(data["sipStatus"], 200);

    // A receiver reads it back.
    let parsed: CloudEvent = serde_json::from_value(json).unwrap();
    assert_eq!(parsed, cloud);

    // An event without a subject leaves the attribute out (attributes are never null).
    hub.publish(
        "app",
        None,
        ApiEvent::new("Custom", None, serde_json::json!({"x": 1})),
    );
    let json = serde_json::to_value(next(&mut subscription).await).unwrap();
    assert!(json.get("subject").is_none(), "{json}");
    assert_eq!(json["sequence"], "2");
}

/// The stream lag (for the daemon's `tandem_event_stream_lag_events`): the events the
/// slowest open subscription has yet to read; closed subscriptions no longer count.
#[tokio::test]
async fn stream_lag_is_the_slowest_open_subscription() {
    let hub = EventHub::new(config());
    assert_eq!(hub.stream_lag(), 0, "no subscription");
    publish_range(&hub, "a", 1, 5);
    let mut fast = hub.subscribe("a", 0).unwrap();
    let slow = hub.subscribe("a", 2).unwrap();
    assert_eq!(hub.stream_lag(), 5);
    for _ in 0..5 {
        next(&mut fast).await;
    }
    assert_eq!(hub.stream_lag(), 3, "the slow one read up to 2 of 5");
    drop(slow);
    assert_eq!(hub.stream_lag(), 0);
    hub.publish("a", None, call_event(6));
    assert_eq!(hub.stream_lag(), 1);
    next(&mut fast).await;
    assert_eq!(hub.stream_lag(), 0);
}
