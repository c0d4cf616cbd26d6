//! The relay benchmark's logic on a small load (benches/relay.rs runs it at scale): every
//! scheduled packet sent, relayed and received. Counts only, never speed.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

#[path = "../benches/support/relay_load.rs"]
mod relay_load;

use std::time::Duration;

use media_transport::PortRange;
use relay_load::{RelayThread, StepConfig, expected_packets};

#[test]
fn expected_packets_follow_the_schedule() {
    // One call, 1 s: 50 packets each way.
    assert_eq!(expected_packets(1, Duration::from_secs(1)), 100);
    // Four calls offset by 5 ms within each 20 ms: still 50 rounds each in 1 s.
    assert_eq!(expected_packets(4, Duration::from_secs(1)), 400);
    // 30 ms, offsets 0 and 10 ms: the first call sends at 0 and 20 ms, the second at
    // 10 ms only (30 ms is the end).
    assert_eq!(expected_packets(2, Duration::from_millis(30)), 6);
    assert_eq!(expected_packets(2, Duration::from_millis(10)), 2);
}

#[test]
fn bench_step_relays_every_packet() {
    let relays = RelayThread::start(PortRange {
        first: 22000,
        last: 22199,
    })
    .unwrap();
    let config = StepConfig {
        streams: 10,
        duration: Duration::from_secs(1),
    };
    let result = relay_load::run_step(&relays, &config).unwrap();
    assert_eq!(result.scheduled, 1000);
    assert_eq!(result.sent + result.send_failed, result.scheduled);
    assert!(result.sent > 0);
    assert_eq!(
        result.relay_received, result.sent,
        "every packet reached the relay"
    );
    assert_eq!(result.relay_forwarded, result.sent, "and was forwarded");
    assert_eq!(result.received, result.sent, "and reached its phone");
    assert!(result.late <= result.received);
    assert!(result.wall >= Duration::from_millis(900));
    assert_eq!(result.lost_percent(), 0.0);
    assert!((0.0..=100.0).contains(&result.late_percent()));
    assert!(result.relayed_per_second() > 0.0);
    assert!(result.relay_cpu_percent() >= 0.0);
    assert!(relay_load::machine_description().starts_with("nproc "));
    // A second step on the same relay thread, with fresh ports.
    let again = relay_load::run_step(
        &relays,
        &StepConfig {
            streams: 3,
            duration: Duration::from_millis(200),
        },
    )
    .unwrap();
    assert_eq!(
        again.sent + again.send_failed,
        expected_packets(3, Duration::from_millis(200))
    );
    assert_eq!(again.received, again.sent);
}
