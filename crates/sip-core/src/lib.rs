//! `sip-core`: Tandem's sans-IO SIP endpoint.
//!
//! The [`Endpoint`] takes what the network delivered and the current time and hands it
//! to the user agent core (`sip-dialog`: transactions, dialogs, INVITE sessions). On top
//! it admits requests from outside a dialog (trusted networks, digest), runs the §8.2
//! checks, answers OPTIONS, runs the trunks, and hands the rest to the call layer
//! (crate `calls`) as [`EndpointEvent::Session`]. Its verbs:
//!
//! - `handle_message(now, bytes, flow)`, `handle_timeout(now)`,
//!   `handle_transport_error(now, flow)`;
//! - `poll_transmit()`, `poll_timeout()`, `poll_event()`, drained until `None`.
//!
//! It never reads the clock, never sleeps and never touches a socket.
#![forbid(unsafe_code)]

pub mod inspect;
pub mod sdp;

mod endpoint;
pub mod guard;
pub mod trunk;

pub use endpoint::{
    CallError, Endpoint, EndpointConfig, EndpointEvent, InboundConfig, SessionTimerConfig, Stats,
    TrunkChanges, TrunkRoute,
};
pub use guard::{GuardConfig, GuardStats, RateLimit};
pub use inspect::{Rejection, Target};
pub use sip_dialog::{self, ids};
pub use sip_transaction::{ConnectionId, Flow, TimerConfig, Transmit};
pub use trunk::{Cidr, RegistrationState, TrunkConfig, TrunkEvent, TrunkTarget};
