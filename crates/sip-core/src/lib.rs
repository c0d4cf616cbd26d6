//! `sip-core`: Tandem's sans-IO SIP endpoint.
//!
//! The [`Endpoint`] takes what the network delivered and the current time, routes each
//! message to its transaction (`sip-transaction`) and, for new requests, to the user
//! agent core. This first UAS serves the demo users of DESIGN.md (`echo` answers, `ring`
//! rings, `busy` declines) with real dialogs: 2xx retransmission until the ACK
//! (RFC 3261 §13.3.1.4), CANCEL (§9.2), BYE (§15.1.2), and the §8.2 request checks.
//! The dialog and call layers of later work replace the UAS; the endpoint's verbs stay:
//!
//! - `handle_message(now, bytes, flow)`, `handle_timeout(now)`,
//!   `handle_transport_error(now, flow)`;
//! - `poll_transmit()`, `poll_timeout()`, `poll_event()`, drained until `None`.
//!
//! It never reads the clock, never sleeps and never touches a socket.
#![forbid(unsafe_code)]

pub mod ids;
pub mod inspect;
pub mod sdp;

mod uas;

pub use inspect::{Behaviour, Rejection, Target};
pub use sip_transaction::{ConnectionId, Flow, TimerConfig, Transmit};
pub use uas::{EndReason, Endpoint, EndpointConfig, EndpointEvent, Stats};
