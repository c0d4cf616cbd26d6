//! ReceiverStats against RFC 3550 A.1 (validity, probation, cycles), A.3 (loss) and A.8
//! (jitter) on a virtual clock.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::time::{Duration, Instant};

use rtp_session::{ReceiverStats, RtpHeader};

const SSRC: u32 = 0x5eed_0001;

fn header(ssrc: u32, sequence: u16, timestamp: u32) -> RtpHeader {
    RtpHeader {
        marker: false,
        payload_type: 0,
        sequence,
        timestamp,
        ssrc,
    }
}

/// A 20 ms, 8 kHz stream: packet `i` arrives at t0 + 20 ms × i (+ `offset(i)`).
fn feed(
    stats: &mut ReceiverStats,
    t0: Instant,
    first_seq: u16,
    indices: impl IntoIterator<Item = u32>,
    offset: impl Fn(u32) -> Duration,
) -> Vec<bool> {
    indices
        .into_iter()
        .map(|i| {
            let now = t0 + Duration::from_millis(20) * i + offset(i);
            let h = header(
                SSRC,
                first_seq.wrapping_add(i as u16),
                1_000u32.wrapping_add(160 * i),
            );
            stats.record(now, &h)
        })
        .collect()
}

#[test]
fn loss_of_every_tenth_packet_is_counted() {
    let t0 = Instant::now();
    let mut stats = ReceiverStats::new(8000);
    assert_eq!(
        stats.report_block(t0, None),
        None,
        "no report before any packet"
    );
    let valid = feed(
        &mut stats,
        t0,
        100,
        (0..1000).filter(|i| i % 10 != 5),
        |_| Duration::ZERO,
    );
    // The first packet is the probation packet (A.1: MIN_SEQUENTIAL = 2).
    assert!(!valid[0]);
    assert!(valid[1..].iter().all(|v| *v));
    let s = stats.snapshot();
    // base_seq is the second packet's: expected = 999, received = 999 − 100.
    assert_eq!(s.packets_expected, 999);
    assert_eq!(s.packets_received, 899);
    assert_eq!(s.packets_lost, 100);
    assert_eq!(s.highest_sequence, 100 + 999);
    assert_eq!(s.duplicates_or_late, 0);

    let block = stats
        .report_block(t0 + Duration::from_secs(20), None)
        .unwrap();
    assert_eq!(block.ssrc, SSRC);
    assert_eq!(block.total_lost, 100);
    // A.3: (100 << 8) / 999 = 25.
    assert_eq!(block.fraction_lost, 25);
    assert_eq!(block.last_sequence_number, 1099);
    assert_eq!((block.last_sender_report, block.delay), (0, 0));
    assert_eq!(stats.snapshot().fraction_lost, 25);

    // The next interval has no loss: fraction 0, the cumulative loss stays.
    feed(&mut stats, t0, 100, 1000..1100, |_| Duration::ZERO);
    let block = stats
        .report_block(t0 + Duration::from_secs(22), None)
        .unwrap();
    assert_eq!(block.fraction_lost, 0);
    assert_eq!(block.total_lost, 100);
    // Every other packet of the next interval lost: 50 of 101 (1100..=1200),
    // (50 << 8) / 101 = 126.
    feed(
        &mut stats,
        t0,
        100,
        (1100..1200).filter(|i| i % 2 == 0),
        |_| Duration::ZERO,
    );
    feed(&mut stats, t0, 100, [1200], |_| Duration::ZERO);
    let block = stats
        .report_block(t0 + Duration::from_secs(25), None)
        .unwrap();
    assert_eq!(block.fraction_lost, 126);
    assert_eq!(block.total_lost, 150);
}

#[test]
fn reordering_and_duplicates() {
    let t0 = Instant::now();
    let mut stats = ReceiverStats::new(8000);
    feed(&mut stats, t0, 0, 0..=50, |_| Duration::ZERO);
    // 52 before 51, then 51 again, then 53.
    let valid = feed(&mut stats, t0, 0, [52, 51, 51, 53], |_| Duration::ZERO);
    assert_eq!(valid, vec![true, true, true, true]);
    let s = stats.snapshot();
    assert_eq!(s.highest_sequence, 53);
    assert_eq!(s.packets_expected, 53); // base 1 .. 53
    assert_eq!(s.packets_received, 54);
    assert_eq!(s.packets_lost, -1, "a duplicate makes the loss negative");
    assert_eq!(s.duplicates_or_late, 2);
    let block = stats.report_block(t0, None).unwrap();
    // §6.4.1: −1 as a signed 24-bit number.
    assert_eq!(block.total_lost, 0x00ff_ffff);
    assert_eq!(block.fraction_lost, 0);
}

#[test]
fn sequence_numbers_wrap_into_cycles() {
    let t0 = Instant::now();
    let mut stats = ReceiverStats::new(8000);
    // 65500 + 39 = 65539: just past the wrap.
    feed(&mut stats, t0, 65_500, 0..40, |_| Duration::ZERO);
    assert_eq!(stats.snapshot().highest_sequence, 65_539);
    // A late packet from before the wrap (65530) is not a new cycle.
    assert!(feed(&mut stats, t0, 65_500, [30], |_| Duration::ZERO)[0]);
    assert_eq!(stats.snapshot().highest_sequence, 65_539);
    assert_eq!(stats.snapshot().duplicates_or_late, 1);
    let valid = feed(&mut stats, t0, 65_500, 40..200, |_| Duration::ZERO);
    assert!(valid.iter().all(|v| *v));
    let s = stats.snapshot();
    // 65500 + 199 = 65699 = one cycle (65536) + 163.
    assert_eq!(s.highest_sequence, 65_699);
    assert_eq!(s.packets_expected, 199);
    assert_eq!(s.packets_received, 200);
    assert_eq!(s.packets_lost, -1);
    assert_eq!(
        stats.report_block(t0, None).unwrap().last_sequence_number,
        65_699
    );
}

#[test]
fn probation_and_bad_jumps() {
    let t0 = Instant::now();
    let mut stats = ReceiverStats::new(8000);
    let rec = |stats: &mut ReceiverStats, seq: u16| stats.record(t0, &header(SSRC, seq, 0));
    assert!(!rec(&mut stats, 10));
    // Out of sequence during probation: probation starts over from 12.
    assert!(!rec(&mut stats, 12));
    assert_eq!(stats.snapshot().packets_received, 0);
    assert_eq!(stats.report_block(t0, None), None);
    assert!(rec(&mut stats, 13));
    assert_eq!(stats.snapshot().packets_received, 1);
    assert_eq!(stats.snapshot().packets_expected, 1);
    assert!(rec(&mut stats, 14));
    // A jump beyond MAX_DROPOUT (3000) is refused once...
    assert!(!rec(&mut stats, 9000));
    assert_eq!(stats.snapshot().highest_sequence, 14);
    // ...and the next in sequence after it re-syncs the source (A.1 init_seq).
    assert!(rec(&mut stats, 9001));
    let s = stats.snapshot();
    assert_eq!(
        (s.packets_received, s.packets_expected, s.highest_sequence),
        (1, 1, 9001)
    );
    // A jump within MAX_DROPOUT is loss, not a restart.
    assert!(rec(&mut stats, 9001 + 2999));
    assert_eq!(stats.snapshot().packets_lost, 2998);
}

#[test]
fn a_new_ssrc_restarts_the_statistics() {
    let t0 = Instant::now();
    let mut stats = ReceiverStats::new(8000);
    assert_eq!(stats.ssrc(), None);
    feed(&mut stats, t0, 0, (0..100).filter(|i| i % 3 != 1), |_| {
        Duration::ZERO
    });
    assert_eq!(stats.ssrc(), Some(SSRC));
    assert!(stats.snapshot().packets_lost > 0);
    let other = 0x0bad_cafe;
    assert!(!stats.record(t0, &header(other, 5000, 0)));
    assert_eq!(stats.ssrc(), Some(other));
    assert_eq!(stats.snapshot().packets_received, 0);
    assert_eq!(stats.report_block(t0, None), None);
    assert!(stats.record(t0, &header(other, 5001, 160)));
    let s = stats.snapshot();
    assert_eq!(
        (
            s.packets_received,
            s.packets_expected,
            s.packets_lost,
            s.highest_sequence
        ),
        (1, 1, 0, 5001)
    );
    assert_eq!(stats.report_block(t0, None).unwrap().ssrc, other);
}

#[test]
fn jitter_is_zero_for_a_steady_stream() {
    let t0 = Instant::now();
    let mut stats = ReceiverStats::new(8000);
    // A constant network delay is no jitter.
    feed(&mut stats, t0, 0, 0..500, |_| Duration::from_millis(37));
    let s = stats.snapshot();
    assert_eq!(s.jitter, 0);
    assert_eq!(s.jitter_ms, 0.0);
}

#[test]
fn jitter_converges_to_the_alternating_offset() {
    let t0 = Instant::now();
    let mut stats = ReceiverStats::new(8000);
    // Every other packet 5 ms late: |D| = 5 ms = 40 units for every pair, so
    // A.8's J += (|D| − J)/16 converges to 40.
    feed(&mut stats, t0, 0, 0..600, |i| {
        Duration::from_millis(if i % 2 == 0 { 0 } else { 5 })
    });
    let s = stats.snapshot();
    assert!((39..=40).contains(&s.jitter), "jitter {}", s.jitter);
    assert!(
        (s.jitter_ms - 5.0).abs() < 0.01,
        "jitter_ms {}",
        s.jitter_ms
    );
    let block = stats.report_block(t0, None).unwrap();
    assert_eq!(block.jitter, s.jitter);
    // After 16 packets J = 40 × (1 − (15/16)^15), the A.8 recurrence from its first D.
    let mut early = ReceiverStats::new(8000);
    feed(&mut early, t0, 0, 0..17, |i| {
        Duration::from_millis(if i % 2 == 0 { 0 } else { 5 })
    });
    // 17 packets: probation eats one, 16 valid, 15 differences.
    let expected = 40.0 * (1.0 - (15.0f64 / 16.0).powi(15));
    assert_eq!(early.snapshot().jitter, expected as u32);
}

#[test]
fn dlsr_counts_from_the_sender_report() {
    let t0 = Instant::now();
    let mut stats = ReceiverStats::new(8000);
    feed(&mut stats, t0, 0, 0..10, |_| Duration::ZERO);
    let block = stats
        .report_block(
            t0 + Duration::from_millis(1500),
            Some((0x1234_5678, t0 + Duration::from_millis(250))),
        )
        .unwrap();
    assert_eq!(block.last_sender_report, 0x1234_5678);
    // 1.25 s in 1/65536 s.
    assert_eq!(block.delay, 81_920);
}
