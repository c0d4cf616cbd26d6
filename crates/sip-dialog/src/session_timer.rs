//! TEMPORARY stand-in until the real RFC 4028 module lands.
use sip_message::{Headers, Request, Response};
use std::time::{Duration, Instant};
#[derive(Debug, Clone, Copy)]
pub struct SessionTimerConfig {
    pub enabled: bool,
    pub session_expires: Duration,
    pub min_se: Duration,
}
impl Default for SessionTimerConfig {
    fn default() -> Self {
        SessionTimerConfig {
            enabled: false,
            session_expires: Duration::from_secs(1800),
            min_se: Duration::from_secs(90),
        }
    }
}
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refresher {
    Uac,
    Uas,
}
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Negotiated {
    pub interval: Duration,
    pub refresher: Refresher,
    pub we_refresh: bool,
}
pub fn add_request_headers(
    _c: &SessionTimerConfig,
    _h: &mut Headers,
    _cur: Option<&Negotiated>,
    _f: Option<Duration>,
) {
}
pub fn check_request(_c: &SessionTimerConfig, _r: &Request) -> Result<(), Duration> {
    Ok(())
}
pub fn answer(_c: &SessionTimerConfig, _r: &Request, _h: &mut Headers) -> Option<Negotiated> {
    None
}
pub fn on_response(_c: &SessionTimerConfig, _r: &Request, _s: &Response) -> Option<Negotiated> {
    None
}
pub fn on_422(_r: &Response) -> Option<Duration> {
    None
}
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionTimerAction {
    Refresh,
    Expire,
}
#[derive(Debug)]
pub struct SessionTimer {
    n: Negotiated,
}
impl SessionTimer {
    pub fn new(_now: Instant, n: Negotiated) -> Self {
        SessionTimer { n }
    }
    pub fn negotiated(&self) -> Negotiated {
        self.n
    }
    pub fn poll_timeout(&self) -> Option<Instant> {
        None
    }
    pub fn handle_timeout(&mut self, _now: Instant) -> Option<SessionTimerAction> {
        None
    }
    pub fn restart(&mut self, _now: Instant, n: Negotiated) {
        self.n = n
    }
}
