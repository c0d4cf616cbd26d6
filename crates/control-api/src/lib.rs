//! `control-api`: Tandem's control API, in the style of Azure Communication Services
//! Call Automation, served by the daemon over HTTP under `/v1`.
#![forbid(unsafe_code)]

pub mod events;
pub mod hub;
pub mod stream;
pub mod webhook;
