//! The four transaction state machines of RFC 3261 §17 (with the RFC 6026
//! `Accepted` state), message-agnostic: they see response *classes* and the
//! fact that a request or ACK arrived, and answer with what the owner must do
//! (transmit, pass to the TU, report a timeout). The owner
//! ([`TransactionLayer`](crate::TransactionLayer)) holds the messages.
//!
//! Every machine is driven the same way: inputs take `now`, `poll_timeout`
//! gives the earliest deadline, and `handle_timeout(now)` fires at most one
//! due timer per call (call it until it returns `None`).

use crate::timer::{Timer, TimerConfig, TimerTable};
use std::fmt;
use std::time::{Duration, Instant};

/// Transaction states (RFC 3261 §17.1.1, §17.1.2, §17.2.1, §17.2.2, and
/// `Accepted` from RFC 6026 §7.1 and §7.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum State {
    /// Client INVITE: request sent, no response yet (§17.1.1.2).
    Calling,
    /// Client or server non-INVITE: no provisional response yet (§17.1.2.2, §17.2.2).
    Trying,
    /// A provisional response was received or sent.
    Proceeding,
    /// A final response (non-2xx for INVITE) was received or sent.
    Completed,
    /// Server INVITE: the ACK for a non-2xx final response arrived (§17.2.1).
    Confirmed,
    /// INVITE after a 2xx (RFC 6026 §7.1, §7.2).
    Accepted,
    /// Done; the owner removes the transaction.
    Terminated,
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// The class of a response status code, all a machine needs to know about it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ResponseClass {
    /// 1xx.
    Provisional,
    /// 2xx.
    Success,
    /// 3xx–6xx.
    Failure,
}

impl ResponseClass {
    /// Classifies a status code; `None` outside 100..=699.
    pub fn of(status: u16) -> Option<ResponseClass> {
        match status {
            100..=199 => Some(ResponseClass::Provisional),
            200..=299 => Some(ResponseClass::Success),
            300..=699 => Some(ResponseClass::Failure),
            _ => None,
        }
    }

    /// True for 2xx–6xx.
    pub fn is_final(self) -> bool {
        !matches!(self, ResponseClass::Provisional)
    }
}

/// What a due timer asks the owner to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TimerAction {
    /// Client: re-send the request (Timers A, E). Server INVITE: re-send the
    /// final response (Timer G).
    Retransmit(Timer),
    /// Report a timeout to the TU (Timers B, F, H); the machine is Terminated.
    Timeout(Timer),
    /// A wait state ended (Timers D, I, J, K, L, M); the machine is Terminated.
    Terminate(Timer),
}

/// What a client machine does with a received response.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ClientAction {
    /// Absorb it (a retransmission the TU has already seen).
    Discard,
    /// Pass it to the TU.
    PassToTu,
    /// Pass it to the TU and send the ACK for the non-2xx final response
    /// (RFC 3261 §17.1.1.2).
    PassToTuAndAck,
    /// A retransmitted non-2xx final in Completed: re-send the ACK, do not
    /// pass it up (§17.1.1.2).
    ResendAck,
}

/// What a server machine does with a retransmitted request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ServerAction {
    /// Absorb it silently.
    Absorb,
    /// Re-send the most recent response (RFC 3261 §17.2.1, §17.2.2).
    ResendResponse,
}

/// What a server INVITE machine does with an ACK that matched it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AckAction {
    /// Absorb it (Proceeding, or a retransmitted ACK in Confirmed).
    Absorb,
    /// The ACK for the non-2xx final: now Confirmed (RFC 3261 §17.2.1).
    Confirmed,
    /// An ACK in Accepted goes to the TU (RFC 6026 §8.7).
    PassToTu,
}

/// The TU asked a server machine to send a response its state does not allow.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct InvalidState {
    /// The machine's state.
    pub state: State,
    /// The class of the rejected response.
    pub class: ResponseClass,
}

/// State, timers and transport kind shared by the four machines.
#[derive(Clone, Debug)]
struct Core {
    state: State,
    timers: TimerTable,
    config: TimerConfig,
    reliable: bool,
    /// How many times the current doubling timer (A, E or G) has fired.
    fired: u32,
}

impl Core {
    fn new(state: State, config: TimerConfig, reliable: bool) -> Core {
        Core {
            state,
            timers: TimerTable::default(),
            config,
            reliable,
            fired: 0,
        }
    }

    /// Arms `timer` with its initial value, if it applies to this transport.
    fn arm(&mut self, timer: Timer, now: Instant) {
        if let Some(d) = self.config.initial(timer, self.reliable) {
            self.timers.set(timer, now + d);
        }
    }

    fn terminate(&mut self) {
        self.state = State::Terminated;
        self.timers.stop_all();
    }

    /// Re-arms a retransmission timer. The interval is at least 1 ms: a
    /// zero T1 or T2 from a bad configuration must not make a timer fire
    /// forever at one instant.
    fn rearm(&mut self, timer: Timer, now: Instant, interval: Duration) {
        self.timers
            .set(timer, now + interval.max(Duration::from_millis(1)));
    }

    /// The earliest due timer, disarmed.
    fn take_expired(&mut self, now: Instant) -> Option<Timer> {
        let timer = self.timers.expired(now)?;
        self.timers.stop(timer);
        Some(timer)
    }
}

macro_rules! common_accessors {
    () => {
        /// The current state.
        pub fn state(&self) -> State {
            self.core.state
        }

        /// The timer table (for inspection and tests).
        pub fn timers(&self) -> &TimerTable {
            &self.core.timers
        }

        /// The earliest armed deadline.
        pub fn poll_timeout(&self) -> Option<Instant> {
            self.core.timers.next_timeout()
        }

        /// True once the machine has reached `Terminated`.
        pub fn is_terminated(&self) -> bool {
            self.core.state == State::Terminated
        }

        /// A transport error was reported for this transaction: it terminates
        /// and the owner informs the TU (RFC 3261 §17.1.1.2, §17.1.2.2,
        /// §17.2.1, §17.2.2; RFC 6026 §7.1, §7.2).
        pub fn on_transport_error(&mut self) {
            self.core.terminate();
        }
    };
}

/// Client INVITE transaction (RFC 3261 §17.1.1, Figure 5 as updated by
/// RFC 6026 §7.2).
#[derive(Clone, Debug)]
pub struct ClientInvite {
    core: Core,
}

impl ClientInvite {
    /// The request has just been handed to the transport: `Calling`, Timer A
    /// armed on unreliable transports, Timer B always (§17.1.1.2).
    pub fn new(now: Instant, config: TimerConfig, reliable: bool) -> ClientInvite {
        let mut core = Core::new(State::Calling, config, reliable);
        core.arm(Timer::A, now);
        core.arm(Timer::B, now);
        ClientInvite { core }
    }

    common_accessors!();

    /// A response matched this transaction (§17.1.1.2; RFC 6026 §8.4).
    pub fn on_response(&mut self, now: Instant, class: ResponseClass) -> ClientAction {
        let core = &mut self.core;
        match (core.state, class) {
            (State::Calling | State::Proceeding, ResponseClass::Provisional) => {
                // No more retransmissions; Timer B only applies in Calling.
                core.timers.stop(Timer::A);
                core.timers.stop(Timer::B);
                core.state = State::Proceeding;
                ClientAction::PassToTu
            }
            (State::Calling | State::Proceeding, ResponseClass::Success) => {
                core.timers.stop_all();
                core.state = State::Accepted;
                core.arm(Timer::M, now);
                ClientAction::PassToTu
            }
            (State::Calling | State::Proceeding, ResponseClass::Failure) => {
                core.timers.stop_all();
                core.state = State::Completed;
                core.arm(Timer::D, now);
                ClientAction::PassToTuAndAck
            }
            (State::Accepted, ResponseClass::Success) => ClientAction::PassToTu,
            (State::Completed, ResponseClass::Failure) => ClientAction::ResendAck,
            _ => ClientAction::Discard,
        }
    }

    /// Fires the earliest due timer, if any.
    pub fn handle_timeout(&mut self, now: Instant) -> Option<TimerAction> {
        let core = &mut self.core;
        let timer = core.take_expired(now)?;
        Some(match timer {
            Timer::A => {
                // §17.1.1.2: "reset the timer with a value of 2*T1", doubling
                // on every firing, not capped.
                core.fired = core.fired.saturating_add(1);
                let next = core.config.doubling_interval(core.fired);
                core.rearm(Timer::A, now, next);
                TimerAction::Retransmit(Timer::A)
            }
            Timer::B => {
                core.terminate();
                TimerAction::Timeout(Timer::B)
            }
            other => {
                core.terminate();
                TimerAction::Terminate(other)
            }
        })
    }
}

/// Client non-INVITE transaction (RFC 3261 §17.1.2, Figure 6).
#[derive(Clone, Debug)]
pub struct ClientNonInvite {
    core: Core,
}

impl ClientNonInvite {
    /// The request has just been handed to the transport: `Trying`, Timer E
    /// armed on unreliable transports, Timer F always (§17.1.2.2).
    pub fn new(now: Instant, config: TimerConfig, reliable: bool) -> ClientNonInvite {
        let mut core = Core::new(State::Trying, config, reliable);
        core.arm(Timer::E, now);
        core.arm(Timer::F, now);
        ClientNonInvite { core }
    }

    common_accessors!();

    /// A response matched this transaction (§17.1.2.2).
    pub fn on_response(&mut self, now: Instant, class: ResponseClass) -> ClientAction {
        let core = &mut self.core;
        match (core.state, class) {
            (State::Trying | State::Proceeding, ResponseClass::Provisional) => {
                core.state = State::Proceeding;
                ClientAction::PassToTu
            }
            (State::Trying | State::Proceeding, _) => {
                core.timers.stop_all();
                core.state = State::Completed;
                core.arm(Timer::K, now);
                ClientAction::PassToTu
            }
            _ => ClientAction::Discard,
        }
    }

    /// Fires the earliest due timer, if any.
    pub fn handle_timeout(&mut self, now: Instant) -> Option<TimerAction> {
        let core = &mut self.core;
        let timer = core.take_expired(now)?;
        Some(match timer {
            Timer::E => {
                // §17.1.2.2: in Trying the interval doubles up to T2; in
                // Proceeding it is reset to T2.
                core.fired = core.fired.saturating_add(1);
                let next = if core.state == State::Proceeding {
                    core.config.t2
                } else {
                    core.config.capped_interval(core.fired)
                };
                core.rearm(Timer::E, now, next);
                TimerAction::Retransmit(Timer::E)
            }
            Timer::F => {
                core.terminate();
                TimerAction::Timeout(Timer::F)
            }
            other => {
                core.terminate();
                TimerAction::Terminate(other)
            }
        })
    }
}

/// Server INVITE transaction (RFC 3261 §17.2.1, Figure 7 as updated by
/// RFC 6026 §7.1).
#[derive(Clone, Debug)]
pub struct ServerInvite {
    core: Core,
}

impl ServerInvite {
    /// An INVITE created the transaction: `Proceeding`, no timers (§17.2.1).
    pub fn new(_now: Instant, config: TimerConfig, reliable: bool) -> ServerInvite {
        ServerInvite {
            core: Core::new(State::Proceeding, config, reliable),
        }
    }

    common_accessors!();

    /// An INVITE retransmission matched (§17.2.1; RFC 6026 §8.7: absorbed in
    /// Accepted). In Proceeding the owner re-sends the last provisional, if
    /// it has sent one.
    pub fn on_request(&mut self, _now: Instant) -> ServerAction {
        match self.core.state {
            State::Proceeding | State::Completed => ServerAction::ResendResponse,
            _ => ServerAction::Absorb,
        }
    }

    /// An ACK matched (§17.2.1; RFC 6026 §8.7).
    pub fn on_ack(&mut self, now: Instant) -> AckAction {
        let core = &mut self.core;
        match core.state {
            State::Completed => {
                core.timers.stop_all();
                core.state = State::Confirmed;
                core.arm(Timer::I, now);
                AckAction::Confirmed
            }
            State::Accepted => AckAction::PassToTu,
            _ => AckAction::Absorb,
        }
    }

    /// The TU sends a response; on `Ok` the owner transmits it (§17.2.1;
    /// RFC 6026 §8.5 and §8.6: 2xx moves to Accepted, and 2xx
    /// retransmissions from the TU are sent while Accepted).
    pub fn send_response(
        &mut self,
        now: Instant,
        class: ResponseClass,
    ) -> Result<(), InvalidState> {
        let core = &mut self.core;
        match (core.state, class) {
            (State::Proceeding, ResponseClass::Provisional) => {}
            (State::Proceeding, ResponseClass::Success) => {
                core.state = State::Accepted;
                core.arm(Timer::L, now);
            }
            (State::Proceeding, ResponseClass::Failure) => {
                core.state = State::Completed;
                core.fired = 0;
                core.arm(Timer::G, now);
                core.arm(Timer::H, now);
            }
            (State::Accepted, ResponseClass::Success) => {}
            (state, class) => return Err(InvalidState { state, class }),
        }
        Ok(())
    }

    /// Fires the earliest due timer, if any.
    pub fn handle_timeout(&mut self, now: Instant) -> Option<TimerAction> {
        let core = &mut self.core;
        let timer = core.take_expired(now)?;
        Some(match timer {
            Timer::G => {
                // §17.2.1: doubling, capped at T2.
                core.fired = core.fired.saturating_add(1);
                let next = core.config.capped_interval(core.fired);
                core.rearm(Timer::G, now, next);
                TimerAction::Retransmit(Timer::G)
            }
            Timer::H => {
                core.terminate();
                TimerAction::Timeout(Timer::H)
            }
            other => {
                core.terminate();
                TimerAction::Terminate(other)
            }
        })
    }
}

/// Server non-INVITE transaction (RFC 3261 §17.2.2, Figure 8).
#[derive(Clone, Debug)]
pub struct ServerNonInvite {
    core: Core,
}

impl ServerNonInvite {
    /// A request created the transaction: `Trying`, no timers (§17.2.2).
    pub fn new(_now: Instant, config: TimerConfig, reliable: bool) -> ServerNonInvite {
        ServerNonInvite {
            core: Core::new(State::Trying, config, reliable),
        }
    }

    common_accessors!();

    /// A request retransmission matched: absorbed in Trying, the last
    /// response re-sent in Proceeding and Completed (§17.2.2).
    pub fn on_request(&mut self, _now: Instant) -> ServerAction {
        match self.core.state {
            State::Proceeding | State::Completed => ServerAction::ResendResponse,
            _ => ServerAction::Absorb,
        }
    }

    /// The TU sends a response; on `Ok` the owner transmits it (§17.2.2).
    pub fn send_response(
        &mut self,
        now: Instant,
        class: ResponseClass,
    ) -> Result<(), InvalidState> {
        let core = &mut self.core;
        match (core.state, class) {
            (State::Trying | State::Proceeding, ResponseClass::Provisional) => {
                core.state = State::Proceeding;
            }
            (State::Trying | State::Proceeding, _) => {
                core.state = State::Completed;
                core.arm(Timer::J, now);
            }
            (state, class) => return Err(InvalidState { state, class }),
        }
        Ok(())
    }

    /// Fires the earliest due timer, if any.
    pub fn handle_timeout(&mut self, now: Instant) -> Option<TimerAction> {
        let core = &mut self.core;
        let timer = core.take_expired(now)?;
        core.terminate();
        Some(TimerAction::Terminate(timer))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// Drives a machine's timers on a virtual clock, jumping to each deadline,
    /// until `end` or termination; returns (offset, action) pairs.
    fn run(
        start: Instant,
        end: Duration,
        mut poll: impl FnMut() -> Option<Instant>,
        mut fire: impl FnMut(Instant) -> Option<TimerAction>,
    ) -> Vec<(Duration, TimerAction)> {
        let mut out = Vec::new();
        while let Some(at) = poll() {
            if at > start + end {
                break;
            }
            while let Some(a) = fire(at) {
                out.push((at - start, a));
            }
        }
        out
    }

    fn udp() -> (TimerConfig, bool) {
        (TimerConfig::default(), false)
    }

    #[test]
    fn client_invite_timer_a_doubles_until_b() {
        let start = Instant::now();
        let (c, r) = udp();
        let mut m = ClientInvite::new(start, c, r);
        assert_eq!(m.state(), State::Calling);
        assert_eq!(m.timers().get(Timer::A), Some(start + ms(500)));
        assert_eq!(m.timers().get(Timer::B), Some(start + ms(32_000)));
        let mm = std::cell::RefCell::new(m.clone());
        let got = run(
            start,
            ms(100_000),
            || mm.borrow().poll_timeout(),
            |now| mm.borrow_mut().handle_timeout(now),
        );
        let mut expected: Vec<_> = [500, 1500, 3500, 7500, 15500, 31500]
            .into_iter()
            .map(|t| (ms(t), TimerAction::Retransmit(Timer::A)))
            .collect();
        expected.push((ms(32_000), TimerAction::Timeout(Timer::B)));
        assert_eq!(got, expected);
        m = mm.into_inner();
        assert!(m.is_terminated());
        assert_eq!(m.poll_timeout(), None);
    }

    #[test]
    fn client_invite_reliable_has_no_timer_a() {
        let start = Instant::now();
        let mut m = ClientInvite::new(start, TimerConfig::default(), true);
        assert!(!m.timers().is_armed(Timer::A));
        assert_eq!(m.poll_timeout(), Some(start + ms(32_000)));
        assert_eq!(m.handle_timeout(start + ms(31_999)), None);
        assert_eq!(
            m.handle_timeout(start + ms(32_000)),
            Some(TimerAction::Timeout(Timer::B))
        );
        assert!(m.is_terminated());
    }

    #[test]
    fn client_invite_provisional_stops_retransmissions() {
        let start = Instant::now();
        let (c, r) = udp();
        let mut m = ClientInvite::new(start, c, r);
        assert_eq!(
            m.on_response(start + ms(100), ResponseClass::Provisional),
            ClientAction::PassToTu
        );
        assert_eq!(m.state(), State::Proceeding);
        assert_eq!(m.poll_timeout(), None);
        assert_eq!(
            m.on_response(start + ms(200), ResponseClass::Provisional),
            ClientAction::PassToTu
        );
    }

    #[test]
    fn client_invite_failure_acks_and_waits_timer_d() {
        for (reliable, d) in [(false, ms(32_000)), (true, Duration::ZERO)] {
            let start = Instant::now();
            let mut m = ClientInvite::new(start, TimerConfig::default(), reliable);
            let t = start + ms(700);
            assert_eq!(
                m.on_response(t, ResponseClass::Failure),
                ClientAction::PassToTuAndAck
            );
            assert_eq!(m.state(), State::Completed);
            assert_eq!(m.timers().get(Timer::D), Some(t + d));
            assert_eq!(m.timers().iter().count(), 1);
            assert_eq!(
                m.on_response(t, ResponseClass::Failure),
                ClientAction::ResendAck
            );
            assert_eq!(
                m.on_response(t, ResponseClass::Provisional),
                ClientAction::Discard
            );
            assert_eq!(
                m.on_response(t, ResponseClass::Success),
                ClientAction::Discard
            );
            assert_eq!(
                m.handle_timeout(t + d),
                Some(TimerAction::Terminate(Timer::D))
            );
            assert!(m.is_terminated());
        }
    }

    #[test]
    fn client_invite_2xx_accepted_until_timer_m() {
        let start = Instant::now();
        let (c, r) = udp();
        let mut m = ClientInvite::new(start, c, r);
        m.on_response(start, ResponseClass::Provisional);
        let t = start + ms(2_000);
        assert_eq!(
            m.on_response(t, ResponseClass::Success),
            ClientAction::PassToTu
        );
        assert_eq!(m.state(), State::Accepted);
        assert_eq!(m.poll_timeout(), Some(t + ms(32_000)));
        // RFC 6026 §8.4: further 2xx go to the TU.
        assert_eq!(
            m.on_response(t, ResponseClass::Success),
            ClientAction::PassToTu
        );
        assert_eq!(
            m.on_response(t, ResponseClass::Failure),
            ClientAction::Discard
        );
        assert_eq!(
            m.handle_timeout(t + ms(32_000)),
            Some(TimerAction::Terminate(Timer::M))
        );
        assert!(m.is_terminated());
        assert_eq!(
            m.on_response(t, ResponseClass::Success),
            ClientAction::Discard
        );
    }

    #[test]
    fn client_non_invite_timer_e_doubles_capped_at_t2_until_f() {
        let start = Instant::now();
        let (c, r) = udp();
        let m = std::cell::RefCell::new(ClientNonInvite::new(start, c, r));
        let got = run(
            start,
            ms(100_000),
            || m.borrow().poll_timeout(),
            |now| m.borrow_mut().handle_timeout(now),
        );
        let mut expected: Vec<_> = [
            500, 1500, 3500, 7500, 11500, 15500, 19500, 23500, 27500, 31500,
        ]
        .into_iter()
        .map(|t| (ms(t), TimerAction::Retransmit(Timer::E)))
        .collect();
        expected.push((ms(32_000), TimerAction::Timeout(Timer::F)));
        assert_eq!(got, expected);
        assert!(m.borrow().is_terminated());
    }

    #[test]
    fn client_non_invite_timer_e_is_t2_once_proceeding() {
        let start = Instant::now();
        let (c, r) = udp();
        let m = std::cell::RefCell::new(ClientNonInvite::new(start, c, r));
        assert_eq!(
            m.borrow_mut()
                .on_response(start + ms(200), ResponseClass::Provisional),
            ClientAction::PassToTu
        );
        assert_eq!(m.borrow().state(), State::Proceeding);
        let got = run(
            start,
            ms(100_000),
            || m.borrow().poll_timeout(),
            |now| m.borrow_mut().handle_timeout(now),
        );
        // The already-armed firing at T1, then every T2.
        let mut expected: Vec<_> = [500, 4500, 8500, 12500, 16500, 20500, 24500, 28500]
            .into_iter()
            .map(|t| (ms(t), TimerAction::Retransmit(Timer::E)))
            .collect();
        expected.push((ms(32_000), TimerAction::Timeout(Timer::F)));
        assert_eq!(got, expected);
    }

    #[test]
    fn client_non_invite_timer_e_jumps_to_t2_when_proceeding_midway() {
        let start = Instant::now();
        let (c, r) = udp();
        let mut m = ClientNonInvite::new(start, c, r);
        for t in [500, 1500] {
            assert_eq!(
                m.handle_timeout(start + ms(t)),
                Some(TimerAction::Retransmit(Timer::E))
            );
        }
        // Next firing would be 3.5 s (interval 2 s) in Trying.
        assert_eq!(m.timers().get(Timer::E), Some(start + ms(3500)));
        m.on_response(start + ms(2000), ResponseClass::Provisional);
        assert_eq!(
            m.handle_timeout(start + ms(3500)),
            Some(TimerAction::Retransmit(Timer::E))
        );
        assert_eq!(m.timers().get(Timer::E), Some(start + ms(7500)));
    }

    #[test]
    fn client_non_invite_final_timer_k() {
        for (reliable, k) in [(false, ms(5_000)), (true, Duration::ZERO)] {
            let start = Instant::now();
            let mut m = ClientNonInvite::new(start, TimerConfig::default(), reliable);
            assert_eq!(m.timers().is_armed(Timer::E), !reliable);
            let t = start + ms(300);
            assert_eq!(
                m.on_response(t, ResponseClass::Success),
                ClientAction::PassToTu
            );
            assert_eq!(m.state(), State::Completed);
            assert_eq!(m.timers().get(Timer::K), Some(t + k));
            assert_eq!(m.timers().iter().count(), 1);
            assert_eq!(
                m.on_response(t, ResponseClass::Success),
                ClientAction::Discard
            );
            assert_eq!(
                m.handle_timeout(t + k),
                Some(TimerAction::Terminate(Timer::K))
            );
            assert!(m.is_terminated());
        }
    }

    #[test]
    fn client_non_invite_reliable_times_out_with_f_only() {
        let start = Instant::now();
        let mut m = ClientNonInvite::new(start, TimerConfig::default(), true);
        assert_eq!(m.poll_timeout(), Some(start + ms(32_000)));
        assert_eq!(
            m.handle_timeout(start + ms(32_000)),
            Some(TimerAction::Timeout(Timer::F))
        );
    }

    #[test]
    fn server_invite_timer_g_doubles_capped_until_h() {
        let start = Instant::now();
        let (c, r) = udp();
        let mut m = ServerInvite::new(start, c, r);
        assert_eq!(m.state(), State::Proceeding);
        assert_eq!(m.poll_timeout(), None);
        m.send_response(start, ResponseClass::Provisional).unwrap();
        assert_eq!(m.on_request(start), ServerAction::ResendResponse);
        m.send_response(start, ResponseClass::Failure).unwrap();
        assert_eq!(m.state(), State::Completed);
        assert_eq!(m.on_request(start), ServerAction::ResendResponse);
        let m = std::cell::RefCell::new(m);
        let got = run(
            start,
            ms(100_000),
            || m.borrow().poll_timeout(),
            |now| m.borrow_mut().handle_timeout(now),
        );
        let mut expected: Vec<_> = [
            500, 1500, 3500, 7500, 11500, 15500, 19500, 23500, 27500, 31500,
        ]
        .into_iter()
        .map(|t| (ms(t), TimerAction::Retransmit(Timer::G)))
        .collect();
        expected.push((ms(32_000), TimerAction::Timeout(Timer::H)));
        assert_eq!(got, expected);
        assert!(m.borrow().is_terminated());
    }

    #[test]
    fn server_invite_ack_confirms_and_timer_i() {
        for (reliable, i) in [(false, ms(5_000)), (true, Duration::ZERO)] {
            let start = Instant::now();
            let mut m = ServerInvite::new(start, TimerConfig::default(), reliable);
            assert_eq!(m.on_ack(start), AckAction::Absorb);
            m.send_response(start, ResponseClass::Failure).unwrap();
            assert_eq!(m.timers().is_armed(Timer::G), !reliable);
            assert_eq!(m.timers().get(Timer::H), Some(start + ms(32_000)));
            let t = start + ms(600);
            assert_eq!(m.on_ack(t), AckAction::Confirmed);
            assert_eq!(m.state(), State::Confirmed);
            assert_eq!(m.timers().get(Timer::I), Some(t + i));
            assert_eq!(m.timers().iter().count(), 1);
            assert_eq!(m.on_ack(t), AckAction::Absorb);
            assert_eq!(m.on_request(t), ServerAction::Absorb);
            assert!(m.send_response(t, ResponseClass::Failure).is_err());
            assert_eq!(
                m.handle_timeout(t + i),
                Some(TimerAction::Terminate(Timer::I))
            );
            assert!(m.is_terminated());
        }
    }

    #[test]
    fn server_invite_2xx_accepted_until_timer_l() {
        let start = Instant::now();
        let (c, r) = udp();
        let mut m = ServerInvite::new(start, c, r);
        m.send_response(start, ResponseClass::Success).unwrap();
        assert_eq!(m.state(), State::Accepted);
        assert_eq!(m.poll_timeout(), Some(start + ms(32_000)));
        assert_eq!(m.on_request(start), ServerAction::Absorb);
        assert_eq!(m.on_ack(start), AckAction::PassToTu);
        m.send_response(start, ResponseClass::Success).unwrap();
        assert_eq!(
            m.send_response(start, ResponseClass::Failure),
            Err(InvalidState {
                state: State::Accepted,
                class: ResponseClass::Failure
            })
        );
        assert_eq!(
            m.handle_timeout(start + ms(32_000)),
            Some(TimerAction::Terminate(Timer::L))
        );
    }

    #[test]
    fn server_non_invite_flow_and_timer_j() {
        for (reliable, j) in [(false, ms(32_000)), (true, Duration::ZERO)] {
            let start = Instant::now();
            let mut m = ServerNonInvite::new(start, TimerConfig::default(), reliable);
            assert_eq!(m.state(), State::Trying);
            assert_eq!(m.on_request(start), ServerAction::Absorb);
            m.send_response(start, ResponseClass::Provisional).unwrap();
            assert_eq!(m.state(), State::Proceeding);
            assert_eq!(m.on_request(start), ServerAction::ResendResponse);
            let t = start + ms(100);
            m.send_response(t, ResponseClass::Success).unwrap();
            assert_eq!(m.state(), State::Completed);
            assert_eq!(m.timers().get(Timer::J), Some(t + j));
            assert_eq!(m.on_request(t), ServerAction::ResendResponse);
            assert!(m.send_response(t, ResponseClass::Success).is_err());
            assert_eq!(
                m.handle_timeout(t + j),
                Some(TimerAction::Terminate(Timer::J))
            );
            assert!(m.is_terminated());
        }
    }

    #[test]
    fn transport_error_terminates_every_machine() {
        let start = Instant::now();
        let c = TimerConfig::default();
        let mut a = ClientInvite::new(start, c, false);
        let mut b = ClientNonInvite::new(start, c, false);
        let mut s = ServerInvite::new(start, c, false);
        let mut n = ServerNonInvite::new(start, c, false);
        a.on_transport_error();
        b.on_transport_error();
        s.on_transport_error();
        n.on_transport_error();
        assert!(a.is_terminated() && b.is_terminated() && s.is_terminated() && n.is_terminated());
        assert_eq!(a.poll_timeout(), None);
        assert_eq!(b.poll_timeout(), None);
    }

    #[test]
    fn zero_t2_does_not_spin() {
        let start = Instant::now();
        let c = TimerConfig {
            t2: Duration::ZERO,
            ..TimerConfig::default()
        };
        let mut m = ClientNonInvite::new(start, c, false);
        let mut fired = 0;
        while let Some(at) = m.poll_timeout() {
            if m.handle_timeout(at).is_some() {
                fired += 1;
            }
            assert!(fired < 100_000);
        }
        assert!(m.is_terminated());
    }

    #[test]
    fn response_classes() {
        assert_eq!(ResponseClass::of(99), None);
        assert_eq!(ResponseClass::of(100), Some(ResponseClass::Provisional));
        assert_eq!(ResponseClass::of(199), Some(ResponseClass::Provisional));
        assert_eq!(ResponseClass::of(200), Some(ResponseClass::Success));
        assert_eq!(ResponseClass::of(300), Some(ResponseClass::Failure));
        assert_eq!(ResponseClass::of(699), Some(ResponseClass::Failure));
        assert_eq!(ResponseClass::of(700), None);
    }

    mod prop {
        use super::*;
        use proptest::prelude::*;

        /// The gaps between successive firings of a doubling timer.
        fn gaps(firings: &[Duration]) -> Vec<Duration> {
            let mut prev = Duration::ZERO;
            firings
                .iter()
                .map(|&t| {
                    let g = t - prev;
                    prev = t;
                    g
                })
                .collect()
        }

        proptest! {
            /// Timers E (Trying) and G fire at intervals min(T1·2ⁿ, T2) until
            /// 64·T1; Timer A at T1·2ⁿ until 64·T1.
            #[test]
            fn retransmit_intervals(t1_ms in 10u64..2_000, t2_factor in 1u32..16) {
                let c = TimerConfig {
                    t1: ms(t1_ms),
                    t2: ms(t1_ms) * t2_factor,
                    t4: ms(5_000),
                };
                let start = Instant::now();
                let end = c.t1_x64();

                let e = std::cell::RefCell::new(ClientNonInvite::new(start, c, false));
                let fe: Vec<_> = run(start, end * 2, || e.borrow().poll_timeout(), |now| e.borrow_mut().handle_timeout(now))
                    .into_iter().filter(|(_, a)| *a == TimerAction::Retransmit(Timer::E)).map(|(t, _)| t).collect();

                let mut g_m = ServerInvite::new(start, c, false);
                g_m.send_response(start, ResponseClass::Failure).unwrap();
                let g = std::cell::RefCell::new(g_m);
                let fg: Vec<_> = run(start, end * 2, || g.borrow().poll_timeout(), |now| g.borrow_mut().handle_timeout(now))
                    .into_iter().filter(|(_, a)| *a == TimerAction::Retransmit(Timer::G)).map(|(t, _)| t).collect();

                let a = std::cell::RefCell::new(ClientInvite::new(start, c, false));
                let fa: Vec<_> = run(start, end * 2, || a.borrow().poll_timeout(), |now| a.borrow_mut().handle_timeout(now))
                    .into_iter().filter(|(_, x)| *x == TimerAction::Retransmit(Timer::A)).map(|(t, _)| t).collect();

                for firings in [&fe, &fg] {
                    prop_assert!(!firings.is_empty());
                    for (n, gap) in gaps(firings).into_iter().enumerate() {
                        prop_assert_eq!(gap, c.capped_interval(n as u32));
                        prop_assert_eq!(gap, ms(t1_ms.saturating_mul(2u64.saturating_pow(n as u32))).min(c.t2));
                    }
                    // Every firing is before the 64·T1 timeout, and the next one would not be.
                    let last = *firings.last().unwrap();
                    prop_assert!(last < end);
                    prop_assert!(last + c.capped_interval(firings.len() as u32) >= end);
                }
                for (n, gap) in gaps(&fa).into_iter().enumerate() {
                    prop_assert_eq!(gap, c.t1 * 2u32.pow(n as u32));
                }
                prop_assert_eq!(fa.len(), 6, "Timer A fires six times before Timer B");
            }
        }
    }
}
