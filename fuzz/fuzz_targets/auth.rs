//! sip-auth: Challenge / Authorization parse, print -> re-parse, and DigestServer::verify.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sip_auth::{Authorization, Challenge, DigestServer, ServerConfig, Verdict};
use std::time::{Duration, Instant};

fuzz_target!(|data: &[u8]| {
    if let Ok(c) = Challenge::parse(data) {
        let printed = c.to_header_value();
        let again = Challenge::parse(printed.as_bytes()).expect("printed challenge re-parses");
        assert_eq!(again, c);
    }
    if let Ok(a) = Authorization::parse(data) {
        let printed = a.to_header_value();
        let again =
            Authorization::parse(printed.as_bytes()).expect("printed credentials re-parse");
        assert_eq!(again, a);
    }
    let t0 = Instant::now();
    let mut server = DigestServer::new(ServerConfig::new("r", [9; 32]), t0);
    let verdict = server.verify(t0 + Duration::from_secs(1), "INVITE", data, data, &|_| {
        Some("pw".to_string())
    });
    // No input carries a nonce signed with this key.
    assert!(!matches!(
        verdict,
        Verdict::Authorized { .. } | Verdict::Stale | Verdict::Replay
    ));
});
