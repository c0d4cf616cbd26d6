//! The conference benchmark's logic on a small load (benches/conference.rs runs it at
//! scale): every phone's frame sent and read by its conference, every mixed frame of the
//! window received. Counts only, never speed.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

#[path = "../benches/support/conference_load.rs"]
mod conference_load;
#[path = "../benches/support/relay_load.rs"]
mod relay_load;

use std::time::Duration;

use conference_load::{ConferenceThread, PARTIES, StepConfig, frames, origin_offset, phone_offset};
use media_transport::PortRange;

#[test]
fn the_schedule_spreads_conferences_and_phones_over_the_period() {
    assert_eq!(frames(Duration::from_secs(1)), 50);
    assert_eq!(frames(Duration::from_millis(30)), 2);
    assert_eq!(frames(Duration::from_millis(40)), 2);
    assert_eq!(origin_offset(0, 4), Duration::ZERO);
    assert_eq!(origin_offset(2, 4), Duration::from_millis(10));
    // Phone j of a conference a third of a period after phone j − 1.
    assert_eq!(phone_offset(2, 0, 4), Duration::from_millis(10));
    let third = phone_offset(0, 1, 4);
    assert!(third > Duration::from_micros(6666) && third < Duration::from_micros(6668));
    assert!(phone_offset(3, 2, 4) < Duration::from_millis(30));
}

#[test]
fn bench_step_mixes_every_frame_back_to_every_phone() {
    let conferences = ConferenceThread::start(PortRange {
        first: 22400,
        last: 22599,
    })
    .unwrap();
    let config = StepConfig {
        conferences: 4,
        duration: Duration::from_secs(1),
    };
    let result = conference_load::run_step(&conferences, &config).unwrap();
    // 4 conferences × 3 phones × 50 frames, each way.
    assert_eq!(result.scheduled, 600);
    assert_eq!(result.expected, 600);
    assert_eq!(result.sent + result.send_failed, result.scheduled);
    assert!(result.sent > 0);
    assert_eq!(
        result.conference_received, result.sent,
        "every phone frame reached its conference"
    );
    assert_eq!(
        result.received, result.expected,
        "every mixed frame came back"
    );
    assert_eq!(result.lost_percent(), 0.0);
    // The conferences ran on after the window (until stopped), and sent each frame once.
    assert!(result.conference_sent >= result.expected);
    assert!(result.mixed_in_window > 0 && result.mixed_in_window <= result.conference_sent);
    assert_eq!(result.conference_send_dropped, 0);
    assert!(result.late <= result.received);
    assert!((0.0..=100.0).contains(&result.late_percent()));
    assert!(result.delay_p99 <= result.delay_max + Duration::from_millis(1));
    assert!(result.wall >= Duration::from_millis(900));
    assert!(result.conference_cpu_percent() >= 0.0);
    assert!(result.mixed_per_second() > 0.0);
    // A second step on the same thread, with fresh ports.
    let again = conference_load::run_step(
        &conferences,
        &StepConfig {
            conferences: 2,
            duration: Duration::from_millis(200),
        },
    )
    .unwrap();
    assert_eq!(again.expected, (2 * PARTIES * 10) as u64);
    assert_eq!(again.sent + again.send_failed, again.expected);
    assert_eq!(again.received, again.expected);
}
