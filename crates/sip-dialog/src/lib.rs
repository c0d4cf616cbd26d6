//! `sip-dialog`: Tandem's sans-IO dialog layer and user agent core.
//!
//! - [`dialog`]: one dialog (RFC 3261 §12): identifier, route set, remote target,
//!   CSeq rules, and how requests inside it are built.
//! - [`UserAgent`]: owns the transaction layer (`sip-transaction`) and every INVITE
//!   session (RFC 3261 §13-15), as UAC and UAS: forked early dialogs and a second 2xx
//!   answered with ACK then BYE (§13.2.2.4), the 2xx retransmitted until the ACK and
//!   BYE after 64·T1 without one (§13.3.1.4), the ACK for a 2xx re-sent on each
//!   retransmission, re-INVITE and UPDATE (RFC 3311) with 491 glare and the §14.1
//!   randomized retry, CANCEL, BYE, the Reason header (RFC 3326), reliable
//!   provisionals and PRACK ([`reliable`], RFC 3262), and session timers
//!   ([`session_timer`], RFC 4028).
//!
//! Like every core machine it is sans-IO: `handle_message(now, bytes, flow)`,
//! `handle_timeout(now)`, `handle_transport_error(now, flow)`, drained with
//! `poll_transmit()`, `poll_timeout()` and `poll_event()` until `None`. The application
//! answers indications ([`Event::IncomingCall`], [`Event::Modify`], [`Event::Request`])
//! with [`UserAgent::respond`] and acts with [`UserAgent::invite`],
//! [`UserAgent::reinvite`], [`UserAgent::update`], [`UserAgent::request`] and
//! [`UserAgent::hangup`].
#![forbid(unsafe_code)]

pub mod dialog;
pub mod ids;
pub mod reliable;
pub mod session_timer;
mod types;
mod ua;

pub use dialog::{Dialog, DialogId, DialogState};
pub use types::{
    Body, EndCause, Error, Event, Invite, Reply, Role, SessionId, Side, Termination, UaStats,
    UserAgentConfig, glare_backoff,
};
pub use ua::{ALLOW, SUPPORTED, UserAgent};
