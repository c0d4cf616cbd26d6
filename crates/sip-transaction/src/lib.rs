//! `sip-transaction`: the RFC 3261 §17 transaction layer, sans-IO.
#![forbid(unsafe_code)]

pub mod flow;
pub mod machine;
pub mod timer;

pub use flow::{ConnectionId, Flow, Transmit};
pub use machine::{
    AckAction, ClientAction, ClientInvite, ClientNonInvite, InvalidState, ResponseClass,
    ServerAction, ServerInvite, ServerNonInvite, State, TimerAction,
};
pub use timer::{Timer, TimerConfig, TimerTable};
