//! Tandem's media sockets on tokio: RTP/RTCP port pairs bound from a configured range, and
//! the task that drives a sans-IO [`rtp_session::MediaMachine`] (a flow, a relay, a
//! conference) over them.
#![forbid(unsafe_code)]
