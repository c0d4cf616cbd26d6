//! `sip-transaction`: the RFC 3261 §17 transaction layer, sans-IO.
#![forbid(unsafe_code)]

pub mod flow;

pub use flow::{ConnectionId, Flow, Transmit};
