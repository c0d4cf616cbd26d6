//! TEMPORARY stand-in until the real RFC 3262 module lands.
use sip_message::{Headers, Method, Response};
use std::time::{Duration, Instant};
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RAck {
    pub rseq: u32,
    pub cseq: u32,
    pub method: Method,
}
impl RAck {
    pub fn parse(_b: &[u8]) -> Result<RAck, ()> {
        Err(())
    }
}
impl std::fmt::Display for RAck {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {} {}", self.rseq, self.cseq, self.method)
    }
}
#[derive(Debug)]
pub struct ReliableProvisionals;
pub enum PrackMatch {
    Matched {
        acknowledged: Response,
        next: Option<Response>,
    },
    NoMatch,
}
pub enum ReliableAction {
    Retransmit(Response),
    GiveUp,
}
impl ReliableProvisionals {
    pub fn new(_t1: Duration, _f: u32) -> Self {
        ReliableProvisionals
    }
    pub fn send(&mut self, _now: Instant, r: Response) -> Option<Response> {
        Some(r)
    }
    pub fn on_prack(&mut self, _now: Instant, _r: &RAck) -> PrackMatch {
        PrackMatch::NoMatch
    }
    pub fn poll_timeout(&self) -> Option<Instant> {
        None
    }
    pub fn handle_timeout(&mut self, _now: Instant) -> Option<ReliableAction> {
        None
    }
    pub fn on_final(&mut self) {}
}
#[derive(Debug)]
pub struct ReliableReceiver;
pub enum Receipt {
    Prack(RAck),
    Retransmission,
    OutOfOrder,
    Unreliable,
}
impl ReliableReceiver {
    pub fn new() -> Self {
        ReliableReceiver
    }
    pub fn on_provisional(&mut self, _r: &Response) -> Receipt {
        Receipt::Unreliable
    }
}
pub fn requires_100rel(_h: &Headers) -> bool {
    false
}
pub fn supports_100rel(_h: &Headers) -> bool {
    false
}
