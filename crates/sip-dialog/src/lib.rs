//! `sip-dialog`: RFC 3261 §12-15 dialogs and the INVITE session usage (placeholder root;
//! the lead's `lib.rs` replaces this one at merge).
#![forbid(unsafe_code)]

pub mod reliable;
pub mod session_timer;
