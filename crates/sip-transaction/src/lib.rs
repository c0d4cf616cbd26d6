//! `sip-transaction`: the RFC 3261 §17 transaction layer, sans-IO.
//!
//! - [`machine`]: the four state machines (`ClientInvite`, `ClientNonInvite`,
//!   `ServerInvite`, `ServerNonInvite`, with RFC 6026's `Accepted`), which
//!   see response classes, not messages.
//! - [`timer`]: Timers A–M as an enum and a per-transaction deadline table.
//! - [`TransactionKey`]: matching per RFC 3261 §17.1.3 and §17.2.3, with the
//!   RFC 2543 fallback, and CANCEL targeting per §9.2.
//! - [`TransactionLayer`]: owns every transaction; `handle_*` inputs,
//!   `poll_transmit` / `poll_timeout` / `poll_event` outputs. It never reads
//!   the clock: every entry point takes `now`.
#![forbid(unsafe_code)]

pub mod error;
pub mod flow;
pub mod key;
pub mod layer;
pub mod machine;
pub mod timer;

pub use error::Error;
pub use flow::{ConnectionId, Flow, Transmit};
pub use key::{MAGIC_COOKIE, Role, TransactionKey};
pub use layer::{
    RequestOutcome, ResponseOutcome, TransactionEvent, TransactionLayer, TransactionStats,
};
pub use machine::{
    AckAction, ClientAction, ClientInvite, ClientNonInvite, InvalidState, ResponseClass,
    ServerAction, ServerInvite, ServerNonInvite, State, TimerAction,
};
pub use timer::{Timer, TimerConfig, TimerTable};
