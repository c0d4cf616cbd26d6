//! The JSON body extractor: 415 unless the body is `application/json`, 413 past the
//! size limit, 400 naming the position of malformed JSON or the field at fault (an
//! unknown field, a missing one, a wrong type), all as problem+json.

use crate::error::Problem;
use crate::state::Shared;
use axum::extract::{FromRequest, Request};
use axum::http::header;
use serde::de::DeserializeOwned;
use std::sync::Arc;

/// A request body parsed as `T`.
#[derive(Debug)]
pub(crate) struct ApiJson<T>(pub T);

impl<T: DeserializeOwned> FromRequest<Arc<Shared>> for ApiJson<T> {
    type Rejection = Problem;

    async fn from_request(request: Request, state: &Arc<Shared>) -> Result<Self, Problem> {
        let content_type = request
            .headers()
            .get(header::CONTENT_TYPE)
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
        match content_type.as_deref() {
            Some(value) if is_json(value) => {}
            other => return Err(Problem::unsupported_media_type(other)),
        }
        let limit = state.config.max_body_bytes;
        let bytes = axum::body::to_bytes(request.into_body(), limit)
            .await
            .map_err(|error| {
                if is_length_limit(&error) {
                    Problem::too_large(limit)
                } else {
                    Problem::bad_request(
                        "unreadable-body",
                        format!("the body could not be read: {error}"),
                    )
                }
            })?;
        parse(&bytes).map(ApiJson)
    }
}

/// `application/json`, or any `application/*+json` (RFC 6839 §3.1), parameters aside.
fn is_json(content_type: &str) -> bool {
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
}

fn is_length_limit(error: &axum::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(e) = source {
        if e.is::<http_body_util::LengthLimitError>() {
            return true;
        }
        source = e.source();
    }
    false
}

/// Parses `bytes` as `T`; the error names the position or the field.
pub(crate) fn parse<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, Problem> {
    // serde reads a struct from an array of its fields in order too: every body is an
    // object (or `null` where the body is optional).
    if bytes.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'[') {
        return Err(Problem::bad_request(
            "malformed-json",
            "the body must be a JSON object, not an array",
        ));
    }
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let value: T = serde_path_to_error::deserialize(&mut deserializer).map_err(|error| {
        let path = error.path().to_string();
        let inner = error.into_inner();
        problem_of(&inner, &path)
    })?;
    deserializer
        .end()
        .map_err(|error| problem_of(&error, "."))?;
    Ok(value)
}

fn problem_of(error: &serde_json::Error, path: &str) -> Problem {
    use serde_json::error::Category;
    let position = format!("line {} column {}", error.line(), error.column());
    match error.classify() {
        Category::Syntax | Category::Eof | Category::Io => Problem::bad_request(
            "malformed-json",
            format!("the body is not valid JSON at {position}: {error}"),
        ),
        Category::Data => {
            let message = error.to_string();
            // serde's messages name the offending key between backticks.
            let named = |prefix: &str| {
                message
                    .strip_prefix(prefix)
                    .and_then(|rest| rest.split('`').next())
                    .map(str::to_owned)
            };
            // The path already ends with an unknown key; a missing one is below it.
            let field = if let Some(unknown) = named("unknown field `")
                && (path.is_empty() || path == ".")
            {
                unknown
            } else if let Some(missing) = named("missing field `") {
                join(path, &missing)
            } else {
                path.to_owned()
            };
            let detail = message
                .split(" at line ")
                .next()
                .unwrap_or(&message)
                .to_owned();
            Problem::invalid_field(
                field.clone(),
                format!("`{field}`: {detail} (at {position})"),
            )
        }
    }
}

/// `parent.child`, where serde_path_to_error writes the root as `.`.
fn join(parent: &str, child: &str) -> String {
    if parent.is_empty() || parent == "." {
        child.to_owned()
    } else {
        format!("{parent}.{child}")
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
    use crate::model::CreateCallRequest;

    fn field_of(body: &str) -> (u16, Option<String>, String) {
        let problem = parse::<CreateCallRequest>(body.as_bytes()).unwrap_err();
        (problem.status, problem.field, problem.detail)
    }

    #[test]
    fn errors_name_the_field_or_the_position() {
        let (status, field, detail) = field_of(r#"{"application": "a", "targets": [}"#);
        assert_eq!((status, field), (400, None));
        assert!(detail.contains("line 1 column"), "{detail}");

        let (status, field, _) = field_of(r#"{"application": "a", "targets": [], "bogus": 1}"#);
        assert_eq!((status, field.as_deref()), (400, Some("bogus")));

        let (_, field, _) =
            field_of(r#"{"application": "a", "targets": [{"sipUri": "sip:a@1.2.3.4", "x": 1}]}"#);
        assert_eq!(field.as_deref(), Some("targets[0].x"));

        let (_, field, _) = field_of(r#"{"application": 7, "targets": []}"#);
        assert_eq!(field.as_deref(), Some("application"));

        let (_, field, _) = field_of(r#"{"targets": []}"#);
        assert_eq!(field.as_deref(), Some("application"));

        let (_, field, _) = field_of(
            r#"{"application": "a", "targets": [], "customContext": {"sipHeaders": {"X-A": 5}}}"#,
        );
        assert_eq!(field.as_deref(), Some("customContext.sipHeaders.X-A"));

        let (status, field, _) = field_of(r#"{"application": "a", "targets": []} trailing"#);
        assert_eq!((status, field), (400, None));

        let (status, field, detail) = field_of(r#" ["a", []]"#);
        assert_eq!((status, field), (400, None));
        assert!(detail.contains("object"), "{detail}");
    }

    #[test]
    fn json_media_types() {
        assert!(is_json("application/json"));
        assert!(is_json("Application/JSON; charset=utf-8"));
        assert!(is_json("application/merge-patch+json"));
        assert!(!is_json("text/json"));
        assert!(!is_json("application/x-www-form-urlencoded"));
        assert!(!is_json(""));
    }
}
