//! Errors: the crate's own ([`ApiError`], for `start`) and the HTTP API's problem
//! details ([`Problem`], RFC 9457 `application/problem+json`).

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use calls::CallError;
use serde::Serialize;
use utoipa::ToSchema;

/// Why the control API could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ApiError {
    /// The configuration is unusable (`what` names the setting).
    #[error("control API configuration: {what}: {problem}")]
    Config { what: String, problem: String },
    /// The runtime refused (an application's user already has an endpoint...) or stopped.
    #[error("application {application}: {source}")]
    Runtime {
        application: String,
        #[source]
        source: runtime::app::Error,
    },
    /// The runtime stopped before the API could follow it.
    #[error("the Tandem runtime has stopped")]
    Stopped,
}

/// The media type of every error body (RFC 9457 §3).
pub const PROBLEM_JSON: &str = "application/problem+json";

/// A problem detail (RFC 9457): what every error response of the API carries, as
/// `application/problem+json`. `field` names the offending request field (a path such
/// as `targets[0].sipUri` or `customContext.sipHeaders.X-Foo`) on 400 and 422.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Problem {
    /// A URI naming the kind of problem (RFC 9457 §3.1.1), `urn:tandem:problem:<slug>`.
    #[serde(rename = "type")]
    pub kind: String,
    /// A short summary of the kind of problem.
    pub title: String,
    /// The HTTP status code.
    pub status: u16,
    /// What went wrong with this request.
    pub detail: String,
    /// The request field at fault, when there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

impl Problem {
    pub fn new(status: StatusCode, slug: &str, title: &str, detail: impl Into<String>) -> Problem {
        Problem {
            kind: format!("urn:tandem:problem:{slug}"),
            title: title.to_owned(),
            status: status.as_u16(),
            detail: detail.into(),
            field: None,
        }
    }

    pub fn with_field(mut self, field: impl Into<String>) -> Problem {
        self.field = Some(field.into());
        self
    }

    /// 400: the body is not valid JSON, or not the request's shape.
    pub fn bad_request(slug: &str, detail: impl Into<String>) -> Problem {
        Problem::new(StatusCode::BAD_REQUEST, slug, "Bad request", detail)
    }

    /// 400 naming the field: a custom-context limit, a missing or unknown field.
    pub fn invalid_field(field: impl Into<String>, detail: impl Into<String>) -> Problem {
        Problem::bad_request("invalid-field", detail).with_field(field)
    }

    /// 401: no bearer token, or not the configured one.
    pub fn unauthorized() -> Problem {
        Problem::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "Unauthorized",
            "a valid bearer token is required (Authorization: Bearer <token>)",
        )
    }

    /// 404: no such call connection, participant, invitation or route.
    pub fn not_found(slug: &str, detail: impl Into<String>) -> Problem {
        Problem::new(StatusCode::NOT_FOUND, slug, "Not found", detail)
    }

    /// 405.
    pub fn method_not_allowed() -> Problem {
        Problem::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "method-not-allowed",
            "Method not allowed",
            "this path does not take this method",
        )
    }

    /// 409: the call (or incoming call) is not in a state that allows the action.
    pub fn conflict(detail: impl Into<String>) -> Problem {
        Problem::new(StatusCode::CONFLICT, "wrong-state", "Conflict", detail)
    }

    /// 413: the body is larger than the configured limit.
    pub fn too_large(limit: usize) -> Problem {
        Problem::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body-too-large",
            "Payload too large",
            format!("the request body is larger than {limit} bytes"),
        )
    }

    /// 415: the body is not `application/json`.
    pub fn unsupported_media_type(found: Option<&str>) -> Problem {
        Problem::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported-media-type",
            "Unsupported media type",
            match found {
                Some(found) => format!("the body must be application/json, not `{found}`"),
                None => "the body must be application/json (no Content-Type was given)".into(),
            },
        )
    }

    /// 422: well-formed, but not something that can be done (a bad SIP URI, an unknown
    /// application, a group call).
    pub fn unprocessable(field: Option<&str>, detail: impl Into<String>) -> Problem {
        let problem = Problem::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "unprocessable",
            "Unprocessable request",
            detail,
        );
        match field {
            Some(field) => problem.with_field(field),
            None => problem,
        }
    }

    /// 500: the runtime stopped, or something unexpected.
    pub fn internal(detail: impl Into<String>) -> Problem {
        Problem::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "Internal error",
            detail,
        )
    }

    /// 503: a resource ran out (media ports, park orbits).
    pub fn unavailable(detail: impl Into<String>) -> Problem {
        Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "Service unavailable",
            detail,
        )
    }

    pub fn status(&self) -> StatusCode {
        StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }

    /// The engine refused a command: its error as a problem. `field` names the request
    /// field the command took its argument from, for 422s.
    pub fn from_call_error(error: &CallError, field: Option<&str>) -> Problem {
        match error {
            CallError::NoSuchCall(_) => Problem::not_found("call-not-found", "the call has ended"),
            CallError::InvalidState { .. } | CallError::OperationPending { .. } => {
                Problem::conflict(error.to_string())
            }
            CallError::NoParkedCall(_) => {
                Problem::not_found("orbit-empty", error.to_string()).with_field("orbit")
            }
            CallError::NoMediaPort { .. } | CallError::NoFreeOrbit { .. } => {
                Problem::unavailable(error.to_string())
            }
            CallError::InvalidHeader { name, .. }
            | CallError::ForbiddenHeader { name }
            | CallError::HeaderNotPassable { name, .. } => Problem::invalid_field(
                format!("customContext.sipHeaders.{name}"),
                error.to_string(),
            ),
            CallError::Leg { source, .. } => Problem::from_call_error(source, field),
            CallError::NoSuchRoom(_) | CallError::NotInRoom(_) => {
                Problem::conflict(error.to_string())
            }
            CallError::NoOwnMedia { .. } => Problem::unprocessable(field, error.to_string()),
            CallError::InvalidArgument { .. }
            | CallError::Unroutable { .. }
            | CallError::WrongCallType { .. }
            | CallError::ContentTypeNotAccepted { .. }
            | CallError::Sdp(_) => Problem::unprocessable(field, error.to_string()),
            other => Problem::internal(other.to_string()),
        }
    }

    /// A façade error (the runtime's) as a problem.
    pub fn from_runtime(error: &runtime::app::Error, field: Option<&str>) -> Problem {
        use runtime::app::Error as E;
        match error {
            E::Call(error) => Problem::from_call_error(error, field),
            E::NoFlow => Problem::conflict("the call has no media flow (it has ended)"),
            E::MediaNotStarted => Problem::conflict("the call's media has not started yet"),
            E::Media(error) => Problem::unprocessable(field, error.to_string()),
            other => Problem::internal(other.to_string()),
        }
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let status = self.status();
        let body = serde_json::to_vec(&self).unwrap_or_default();
        let mut response = (status, body).into_response();
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
        if status == StatusCode::UNAUTHORIZED {
            headers.insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"tandem\""),
            );
        }
        response
    }
}

/// What handlers return on error.
pub type ApiResult<T> = Result<T, Problem>;
