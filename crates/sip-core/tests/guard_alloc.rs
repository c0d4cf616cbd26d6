//! The scanner check allocates nothing per request (its own test binary: it installs a
//! counting global allocator; what the harness's other threads allocate meanwhile is
//! tolerated, far below one allocation per check).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use sip_core::GuardConfig;
use sip_core::guard::Guard;
use stats_alloc::{INSTRUMENTED_SYSTEM, Region, StatsAlloc};
use std::alloc::System;

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

#[test]
fn the_scanner_check_allocates_nothing() {
    let guard = Guard::new(GuardConfig::default(), "Tandem", 1);
    let values: [&[u8]; 6] = [
        b"SIPVicious 0.3.8",
        b"Linphone/5.2.0 (belle-sip/5.2.0)",
        b"FRIENDLY-SCANNER",
        b"Zoiper \xff\xfe v5",
        b"the VaxSIPUserAgent/3.1",
        b"",
    ];
    let region = Region::new(GLOBAL);
    let mut hits = 0;
    for _ in 0..1000 {
        for value in values {
            hits += usize::from(guard.is_scanner(value));
        }
    }
    let change = region.change();
    assert_eq!(hits, 3000);
    // The counting allocator is the process's: the test harness's own threads may
    // allocate a few times meanwhile. An allocation per check would be 6,000.
    assert!(change.allocations + change.reallocations < 60, "{change:?}");
}
