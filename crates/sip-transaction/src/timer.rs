//! Transaction timers as an enum plus a table of deadlines (RFC 3261 §17,
//! Table 4 in Appendix A; RFC 6026 §8.4 and §8.11 for Timers L and M).
//!
//! Nothing here sleeps or reads the clock: a machine arms a timer by storing
//! the `Instant` it is due, and its owner asks for the earliest deadline
//! (`next_timeout`) and reports when it has come (`expired`).

use std::time::{Duration, Instant};

/// The base intervals every transaction timer is derived from
/// (RFC 3261 §17.1.1.1 and Appendix A). The defaults are the RFC's; a
/// deployment may raise T1 on high-latency links (§17.1.1.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TimerConfig {
    /// RTT estimate (default 500 ms).
    pub t1: Duration,
    /// Maximum retransmit interval for non-INVITE requests and INVITE
    /// responses (default 4 s).
    pub t2: Duration,
    /// Maximum duration a message remains in the network (default 5 s).
    pub t4: Duration,
}

impl Default for TimerConfig {
    fn default() -> Self {
        TimerConfig {
            t1: Duration::from_millis(500),
            t2: Duration::from_secs(4),
            t4: Duration::from_secs(5),
        }
    }
}

/// RFC 3261 §17.1.1.2: Timer D is "at least 32 seconds" on unreliable transports.
const TIMER_D_MIN: Duration = Duration::from_secs(32);

impl TimerConfig {
    /// `64·T1`: Timers B, F, H (RFC 3261 §17), J on unreliable transports
    /// (§17.2.2), and L, M (RFC 6026 §8.4, §8.11).
    pub fn t1_x64(&self) -> Duration {
        self.t1.saturating_mul(64)
    }

    /// The `n`-th retransmit interval of a doubling timer capped at T2:
    /// `min(T1·2ⁿ, T2)`. Timer E in the Trying state (RFC 3261 §17.1.2.2) and
    /// Timer G (§17.2.1) follow this schedule.
    pub fn capped_interval(&self, n: u32) -> Duration {
        self.doubling_interval(n).min(self.t2)
    }

    /// The `n`-th retransmit interval of Timer A: `T1·2ⁿ`, not capped
    /// (RFC 3261 §17.1.1.2); Timer B ends the series.
    pub fn doubling_interval(&self, n: u32) -> Duration {
        match 2u32.checked_pow(n) {
            Some(factor) => self.t1.saturating_mul(factor),
            None => Duration::MAX,
        }
    }

    /// The interval a timer is first armed with, or `None` when the timer is
    /// not used on that kind of transport (retransmission timers A, E and G
    /// on reliable transports, RFC 3261 §17.1.1.2, §17.1.2.2, §17.2.1).
    pub fn initial(&self, timer: Timer, reliable: bool) -> Option<Duration> {
        let zero = Duration::ZERO;
        match timer {
            Timer::A | Timer::E | Timer::G => (!reliable).then_some(self.t1),
            Timer::B | Timer::F | Timer::H | Timer::L | Timer::M => Some(self.t1_x64()),
            Timer::D => Some(if reliable {
                zero
            } else {
                self.t1_x64().max(TIMER_D_MIN)
            }),
            Timer::I | Timer::K => Some(if reliable { zero } else { self.t4 }),
            Timer::J => Some(if reliable { zero } else { self.t1_x64() }),
        }
    }
}

/// The transaction timers of RFC 3261 §17 (A–K) and RFC 6026 (L, M).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Timer {
    /// INVITE request retransmit interval, doubling (RFC 3261 §17.1.1.2).
    A,
    /// INVITE transaction timeout, 64·T1 (RFC 3261 §17.1.1.2).
    B,
    /// Wait time for response retransmits in Completed (RFC 3261 §17.1.1.2).
    D,
    /// Non-INVITE request retransmit interval (RFC 3261 §17.1.2.2).
    E,
    /// Non-INVITE transaction timeout, 64·T1 (RFC 3261 §17.1.2.2).
    F,
    /// INVITE response retransmit interval (RFC 3261 §17.2.1).
    G,
    /// Wait time for ACK receipt, 64·T1 (RFC 3261 §17.2.1).
    H,
    /// Wait time for ACK retransmits in Confirmed (RFC 3261 §17.2.1).
    I,
    /// Wait time for non-INVITE request retransmits (RFC 3261 §17.2.2).
    J,
    /// Wait time for non-INVITE response retransmits (RFC 3261 §17.1.2.2).
    K,
    /// Server INVITE: wait time for INVITE retransmits in Accepted (RFC 6026 §8.7).
    L,
    /// Client INVITE: wait time for 2xx retransmits in Accepted (RFC 6026 §8.4).
    M,
}

impl Timer {
    /// Every timer, in table order.
    pub const ALL: [Timer; 12] = [
        Timer::A,
        Timer::B,
        Timer::D,
        Timer::E,
        Timer::F,
        Timer::G,
        Timer::H,
        Timer::I,
        Timer::J,
        Timer::K,
        Timer::L,
        Timer::M,
    ];

    fn index(self) -> usize {
        self as usize
    }
}

/// One deadline slot per [`Timer`]: the per-transaction timer table.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TimerTable {
    deadlines: [Option<Instant>; Timer::ALL.len()],
}

impl TimerTable {
    /// When `timer` is due, if it is armed.
    pub fn get(&self, timer: Timer) -> Option<Instant> {
        self.deadlines.get(timer.index()).copied().flatten()
    }

    /// Arms (or re-arms) `timer` to fire at `at`.
    pub fn set(&mut self, timer: Timer, at: Instant) {
        if let Some(slot) = self.deadlines.get_mut(timer.index()) {
            *slot = Some(at);
        }
    }

    /// Disarms `timer`.
    pub fn stop(&mut self, timer: Timer) {
        if let Some(slot) = self.deadlines.get_mut(timer.index()) {
            *slot = None;
        }
    }

    /// Disarms every timer.
    pub fn stop_all(&mut self) {
        self.deadlines = Default::default();
    }

    /// True if `timer` is armed.
    pub fn is_armed(&self, timer: Timer) -> bool {
        self.get(timer).is_some()
    }

    /// The earliest armed deadline.
    pub fn next_timeout(&self) -> Option<Instant> {
        self.deadlines.iter().flatten().min().copied()
    }

    /// The armed timers with their deadlines, in table order.
    pub fn iter(&self) -> impl Iterator<Item = (Timer, Instant)> + '_ {
        Timer::ALL
            .into_iter()
            .zip(self.deadlines.iter())
            .filter_map(|(t, d)| d.map(|d| (t, d)))
    }

    /// The timer with the earliest deadline that is due at `now`. Ties go to
    /// the timer last in table order, so a timeout (B, F, H) due at the same
    /// instant as a retransmission (A, E, G) wins and nothing is re-sent.
    /// It stays armed: the caller disarms it.
    pub fn expired(&self, now: Instant) -> Option<Timer> {
        self.iter()
            .filter(|&(_, at)| at <= now)
            .min_by(|a, b| a.1.cmp(&b.1).then(b.0.cmp(&a.0)))
            .map(|(t, _)| t)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_rfc_values() {
        let c = TimerConfig::default();
        assert_eq!(c.t1, Duration::from_millis(500));
        assert_eq!(c.t2, Duration::from_secs(4));
        assert_eq!(c.t4, Duration::from_secs(5));
        assert_eq!(c.t1_x64(), Duration::from_secs(32));
    }

    #[test]
    fn initial_values_per_transport() {
        let c = TimerConfig::default();
        let s = Duration::from_secs;
        for t in [Timer::A, Timer::E, Timer::G] {
            assert_eq!(c.initial(t, false), Some(c.t1));
            assert_eq!(c.initial(t, true), None);
        }
        for t in [Timer::B, Timer::F, Timer::H, Timer::L, Timer::M] {
            assert_eq!(c.initial(t, false), Some(s(32)));
            assert_eq!(c.initial(t, true), Some(s(32)));
        }
        assert_eq!(c.initial(Timer::D, false), Some(s(32)));
        assert_eq!(c.initial(Timer::D, true), Some(Duration::ZERO));
        assert_eq!(c.initial(Timer::I, false), Some(s(5)));
        assert_eq!(c.initial(Timer::I, true), Some(Duration::ZERO));
        assert_eq!(c.initial(Timer::J, false), Some(s(32)));
        assert_eq!(c.initial(Timer::J, true), Some(Duration::ZERO));
        assert_eq!(c.initial(Timer::K, false), Some(s(5)));
        assert_eq!(c.initial(Timer::K, true), Some(Duration::ZERO));
        // Timer D is never below 32 s, even with a small T1.
        let fast = TimerConfig {
            t1: Duration::from_millis(100),
            ..c
        };
        assert_eq!(fast.initial(Timer::D, false), Some(s(32)));
    }

    #[test]
    fn table_earliest_and_expired() {
        let start = Instant::now();
        let mut t = TimerTable::default();
        assert_eq!(t.next_timeout(), None);
        assert_eq!(t.expired(start + Duration::from_secs(100)), None);
        t.set(Timer::B, start + Duration::from_secs(32));
        t.set(Timer::A, start + Duration::from_millis(500));
        assert_eq!(t.next_timeout(), Some(start + Duration::from_millis(500)));
        assert_eq!(t.expired(start), None);
        assert_eq!(t.expired(start + Duration::from_secs(40)), Some(Timer::A));
        t.stop(Timer::A);
        assert_eq!(t.expired(start + Duration::from_secs(40)), Some(Timer::B));
        assert!(t.is_armed(Timer::B));
        t.stop_all();
        assert_eq!(t.iter().count(), 0);
    }

    #[test]
    fn timeout_wins_a_tie_with_retransmission() {
        let start = Instant::now();
        let mut t = TimerTable::default();
        t.set(Timer::E, start);
        t.set(Timer::F, start);
        assert_eq!(t.expired(start), Some(Timer::F));
    }

    #[test]
    fn intervals_saturate() {
        let c = TimerConfig::default();
        assert_eq!(c.doubling_interval(0), c.t1);
        assert_eq!(c.doubling_interval(3), Duration::from_secs(4));
        assert_eq!(c.capped_interval(40), c.t2);
        let _ = c.doubling_interval(200);
    }

    mod prop {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            #[test]
            fn capped_interval_is_min_t1_pow2_t2(t1_ms in 1u64..5_000, t2_ms in 1u64..60_000, n in 0u32..40) {
                let c = TimerConfig {
                    t1: Duration::from_millis(t1_ms),
                    t2: Duration::from_millis(t2_ms),
                    t4: Duration::from_secs(5),
                };
                let expected = Duration::from_millis(t1_ms.saturating_mul(1u64 << n)).min(Duration::from_millis(t2_ms));
                prop_assert_eq!(c.capped_interval(n), expected);
                // monotone, never above T2
                prop_assert!(c.capped_interval(n + 1) >= c.capped_interval(n));
                prop_assert!(c.capped_interval(n) <= c.t2);
            }
        }
    }
}
