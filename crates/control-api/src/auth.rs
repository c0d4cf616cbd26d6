//! Bearer-token authentication (RFC 6750 §2.1) as a tower layer, so every router the
//! daemon serves (these routes, the event stream's) is guarded the same way.

use crate::error::Problem;
use axum::http::{Request, header};
use axum::response::{IntoResponse, Response};
use futures_util::future::Either;
use sha2::{Digest, Sha256};
use std::sync::Arc;
use std::task::{Context, Poll};
use tower::{Layer, Service};

/// The layer [`require_token`] makes: requests without `Authorization: Bearer <token>`
/// naming the configured token get 401 problem+json; with no token configured every
/// request passes.
#[derive(Debug, Clone)]
pub struct RequireToken {
    /// SHA-256 of the token: requests are compared digest to digest, in constant time,
    /// so neither the token's bytes nor its length leak through timing.
    digest: Option<Arc<[u8; 32]>>,
}

/// A layer that lets only requests bearing `token` through; `None`: no authentication.
/// Apply it with `Router::route_layer`, so unknown paths still get 404.
pub fn require_token(token: Option<String>) -> RequireToken {
    RequireToken {
        digest: token.map(|t| Arc::new(sha256(t.as_bytes()))),
    }
}

fn sha256(data: &[u8]) -> [u8; 32] {
    Sha256::digest(data).into()
}

/// Equal in time independent of where the first difference is.
fn constant_time_eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.iter()
        .zip(b.iter())
        .fold(0u8, |acc, (x, y)| acc | (x ^ y))
        == 0
}

impl RequireToken {
    /// Whether the request's `Authorization` header carries the token.
    pub fn allows(&self, authorization: Option<&[u8]>) -> bool {
        let Some(expected) = &self.digest else {
            return true;
        };
        let Some(value) = authorization else {
            return false;
        };
        // RFC 6750 §2.1: `Bearer` (case-insensitive scheme, RFC 9110 §11.1) SP token.
        let Some((scheme, token)) = split_once(value, b' ') else {
            return false;
        };
        if !scheme.eq_ignore_ascii_case(b"bearer") {
            return false;
        }
        let token = trim(token);
        constant_time_eq(&sha256(token), expected)
    }
}

fn split_once(value: &[u8], at: u8) -> Option<(&[u8], &[u8])> {
    let i = value.iter().position(|&b| b == at)?;
    Some((value.get(..i)?, value.get(i + 1..)?))
}

fn trim(value: &[u8]) -> &[u8] {
    let start = value.iter().position(|b| *b != b' ').unwrap_or(value.len());
    let end = value
        .iter()
        .rposition(|b| *b != b' ')
        .map_or(start, |e| e + 1);
    value.get(start..end).unwrap_or_default()
}

impl<S> Layer<S> for RequireToken {
    type Service = RequireTokenService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RequireTokenService {
            inner,
            check: self.clone(),
        }
    }
}

/// The service of [`RequireToken`].
#[derive(Debug, Clone)]
pub struct RequireTokenService<S> {
    inner: S,
    check: RequireToken,
}

impl<S, B> Service<Request<B>> for RequireTokenService<S>
where
    S: Service<Request<B>, Response = Response>,
{
    type Response = Response;
    type Error = S::Error;
    type Future = Either<S::Future, std::future::Ready<Result<Response, S::Error>>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let authorization = request
            .headers()
            .get(header::AUTHORIZATION)
            .map(|v| v.as_bytes());
        if self.check.allows(authorization) {
            Either::Left(self.inner.call(request))
        } else {
            Either::Right(std::future::ready(Ok(
                Problem::unauthorized().into_response()
            )))
        }
    }
}

#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]
mod tests {
    use super::*;

    #[test]
    fn only_the_configured_bearer_token_passes() {
        let check = require_token(Some("s3cret".into()));
        assert!(check.allows(Some(b"Bearer s3cret")));
        assert!(check.allows(Some(b"bearer s3cret")));
        assert!(!check.allows(Some(b"Bearer s3cre")));
        assert!(!check.allows(Some(b"Bearer s3cret2")));
        assert!(!check.allows(Some(b"Basic s3cret")));
        assert!(!check.allows(Some(b"s3cret")));
        assert!(!check.allows(Some(b"")));
        assert!(!check.allows(None));
        let open = require_token(None);
        assert!(open.allows(None));
        assert!(open.allows(Some(b"Bearer anything")));
    }
}
