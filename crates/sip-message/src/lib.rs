//! `sip-message`: Tandem's SIP message parser and printer (RFC 3261 §7, §19, §20, §25).
#![forbid(unsafe_code)]

pub mod transport;

pub use transport::Transport;
