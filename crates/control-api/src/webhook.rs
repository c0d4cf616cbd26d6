//! Webhook signatures in the Standard Webhooks style (standardwebhooks.com, spec
//! "Signature scheme"): three headers on every POST,
//!
//! - `webhook-id`: the CloudEvent `id`, the same on every retry (receivers deduplicate on it);
//! - `webhook-timestamp`: the Unix time of this attempt, in seconds;
//! - `webhook-signature`: `v1,` then the base64 of HMAC-SHA256 (RFC 2104, FIPS 180-4) keyed
//!   with the secret over `{id}.{timestamp}.{body}`; several space-separated signatures may
//!   be given (key rotation), one matching is enough.
//!
//! The secret is configured as `whsec_` followed by the base64 of its bytes
//! ([`parse_secret`]). The body is the CloudEvent in structured mode,
//! `content-type: application/cloudevents+json`.

use std::time::Duration;

use axum::http::HeaderMap;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

/// The header carrying the message id.
pub const WEBHOOK_ID: &str = "webhook-id";
/// The header carrying the Unix timestamp of the attempt.
pub const WEBHOOK_TIMESTAMP: &str = "webhook-timestamp";
/// The header carrying the signatures.
pub const WEBHOOK_SIGNATURE: &str = "webhook-signature";

type HmacSha256 = Hmac<Sha256>;

fn mac(secret: &[u8], id: &str, timestamp: u64, body: &[u8]) -> Option<HmacSha256> {
    // HMAC takes keys of any length (RFC 2104 §2); the error is unreachable.
    let mut mac = HmacSha256::new_from_slice(secret).ok()?;
    mac.update(id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    Some(mac)
}

/// The `webhook-signature` value for a message: `v1,` + base64(HMAC-SHA256(secret,
/// `{id}.{timestamp}.{body}`)).
pub fn sign(secret: &[u8], id: &str, timestamp: u64, body: &[u8]) -> String {
    let code = mac(secret, id, timestamp, body)
        .map(|mac| STANDARD.encode(mac.finalize().into_bytes()))
        .unwrap_or_default();
    format!("v1,{code}")
}

/// Checks a received webhook: the three headers are present, the timestamp is within
/// `tolerance` of `now_unix` (either way, against replays), and one of the `v1` signatures
/// matches (compared in constant time).
pub fn verify(
    secret: &[u8],
    headers: &HeaderMap,
    body: &[u8],
    tolerance: Duration,
    now_unix: u64,
) -> bool {
    let header = |name: &str| headers.get(name).and_then(|value| value.to_str().ok());
    let (Some(id), Some(timestamp), Some(signatures)) = (
        header(WEBHOOK_ID),
        header(WEBHOOK_TIMESTAMP),
        header(WEBHOOK_SIGNATURE),
    ) else {
        return false;
    };
    let Ok(timestamp) = timestamp.trim().parse::<u64>() else {
        return false;
    };
    if timestamp.abs_diff(now_unix) > tolerance.as_secs() {
        return false;
    }
    signatures.split(' ').any(|signature| {
        let Some(encoded) = signature.strip_prefix("v1,") else {
            return false;
        };
        let Ok(code) = STANDARD.decode(encoded) else {
            return false;
        };
        mac(secret, id, timestamp, body).is_some_and(|mac| mac.verify_slice(&code).is_ok())
    })
}

/// The secret bytes of a Standard Webhooks secret `whsec_<base64>` (the prefix is optional);
/// `None` if it is not base64 or empty.
pub fn parse_secret(secret: &str) -> Option<Vec<u8>> {
    let encoded = secret.strip_prefix("whsec_").unwrap_or(secret);
    STANDARD
        .decode(encoded)
        .ok()
        .filter(|bytes| !bytes.is_empty())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use axum::http::HeaderValue;

    /// The example of the Standard Webhooks reference libraries (standard-webhooks
    /// `libraries/python/standardwebhooks/tests.py` and the JavaScript tests).
    #[test]
    fn standard_webhooks_vector() {
        let secret = parse_secret("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let body = br#"{"test": 2432232314}"#;
        let signature = sign(&secret, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1_614_265_330, body);
        assert_eq!(signature, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");

        let mut headers = HeaderMap::new();
        headers.insert(
            WEBHOOK_ID,
            HeaderValue::from_static("msg_p5jXN8AQM9LWM0D4loKWxJek"),
        );
        headers.insert(WEBHOOK_TIMESTAMP, HeaderValue::from_static("1614265330"));
        headers.insert(
            WEBHOOK_SIGNATURE,
            HeaderValue::from_str(&format!("v1,bm90IGl0 {signature}")).unwrap(),
        );
        let tolerance = Duration::from_secs(300);
        assert!(verify(&secret, &headers, body, tolerance, 1_614_265_330));
        assert!(verify(
            &secret,
            &headers,
            body,
            tolerance,
            1_614_265_330 + 300
        ));
        assert!(!verify(
            &secret,
            &headers,
            body,
            tolerance,
            1_614_265_330 + 301
        ));
        assert!(!verify(
            &secret,
            &headers,
            body,
            tolerance,
            1_614_265_330 - 301
        ));
        assert!(!verify(
            &secret,
            &headers,
            b"{\"test\": 2432232315}",
            tolerance,
            1_614_265_330
        ));
        assert!(!verify(b"other", &headers, body, tolerance, 1_614_265_330));
        headers.remove(WEBHOOK_ID);
        assert!(!verify(&secret, &headers, body, tolerance, 1_614_265_330));
    }

    #[test]
    fn secrets() {
        assert_eq!(parse_secret("whsec_aGVsbG8="), Some(b"hello".to_vec()));
        assert_eq!(parse_secret("aGVsbG8="), Some(b"hello".to_vec()));
        assert_eq!(parse_secret("whsec_"), None);
        assert_eq!(parse_secret("whsec_!!"), None);
    }
}
