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

/// Parses `bytes` as `T`; the error names the position or the field. Objects must be
/// JSON objects: serde would also take a struct from an array of its fields in order
/// (`[null, null]`), which no schema of the API allows.
pub(crate) fn parse<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, Problem> {
    let value: serde_json::Value =
        serde_json::from_slice(bytes).map_err(|error| problem_of(&error, "."))?;
    serde_path_to_error::deserialize(Strict(&value)).map_err(|error| {
        let path = error.path().to_string();
        let inner = error.into_inner();
        problem_of(&inner, &path)
    })
}

/// A JSON value that gives structs only from objects (see [`parse`]); everything else
/// as `serde_json::Value` gives it.
struct Strict<'a>(&'a serde_json::Value);

impl<'de> serde::Deserializer<'de> for Strict<'de> {
    type Error = serde_json::Error;

    fn deserialize_any<V: serde::de::Visitor<'de>>(
        self,
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        use serde::de::IntoDeserializer;
        match self.0 {
            serde_json::Value::Object(map) => visitor.visit_map(StrictMap {
                entries: map.iter(),
                value: None,
            }),
            serde_json::Value::Array(items) => visitor.visit_seq(StrictSeq(items.iter())),
            other => other.into_deserializer().deserialize_any(visitor),
        }
    }

    fn deserialize_struct<V: serde::de::Visitor<'de>>(
        self,
        _name: &'static str,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        match self.0 {
            serde_json::Value::Object(_) => self.deserialize_any(visitor),
            serde_json::Value::Array(_) => Err(serde::de::Error::invalid_type(
                serde::de::Unexpected::Seq,
                &visitor,
            )),
            other => {
                use serde::de::IntoDeserializer;
                other.into_deserializer().deserialize_any(visitor)
            }
        }
    }

    fn deserialize_option<V: serde::de::Visitor<'de>>(
        self,
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        match self.0 {
            serde_json::Value::Null => visitor.visit_none(),
            _ => visitor.visit_some(self),
        }
    }

    fn deserialize_enum<V: serde::de::Visitor<'de>>(
        self,
        name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        use serde::de::IntoDeserializer;
        self.0
            .into_deserializer()
            .deserialize_enum(name, variants, visitor)
    }

    fn deserialize_newtype_struct<V: serde::de::Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_ignored_any<V: serde::de::Visitor<'de>>(
        self,
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        visitor.visit_unit()
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
        unit unit_struct seq tuple tuple_struct map identifier
    }
}

struct StrictMap<'a> {
    entries: serde_json::map::Iter<'a>,
    value: Option<&'a serde_json::Value>,
}

impl<'de> serde::de::MapAccess<'de> for StrictMap<'de> {
    type Error = serde_json::Error;

    fn next_key_seed<K: serde::de::DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, Self::Error> {
        use serde::de::IntoDeserializer;
        match self.entries.next() {
            Some((key, value)) => {
                self.value = Some(value);
                let key: serde::de::value::StrDeserializer<'_, serde_json::Error> =
                    key.as_str().into_deserializer();
                seed.deserialize(key).map(Some)
            }
            None => Ok(None),
        }
    }

    fn next_value_seed<V: serde::de::DeserializeSeed<'de>>(
        &mut self,
        seed: V,
    ) -> Result<V::Value, Self::Error> {
        match self.value.take() {
            Some(value) => seed.deserialize(Strict(value)),
            None => Err(serde::de::Error::custom("a value without a key")),
        }
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.entries.len())
    }
}

struct StrictSeq<'a>(std::slice::Iter<'a, serde_json::Value>);

impl<'de> serde::de::SeqAccess<'de> for StrictSeq<'de> {
    type Error = serde_json::Error;

    fn next_element_seed<T: serde::de::DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, Self::Error> {
        self.0
            .next()
            .map(|value| seed.deserialize(Strict(value)))
            .transpose()
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.0.len())
    }
}

fn problem_of(error: &serde_json::Error, path: &str) -> Problem {
    use serde_json::error::Category;
    let position = format!("line {} column {}", error.line(), error.column());
    let at = if error.line() == 0 {
        String::new()
    } else {
        format!(" (at {position})")
    };
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
            if field.is_empty() || field == "." {
                // The body as a whole (e.g. an array, not an object).
                Problem::bad_request("invalid-body", format!("the body: {detail}{at}"))
            } else {
                Problem::invalid_field(field.clone(), format!("`{field}`: {detail}{at}"))
            }
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

        // Objects only: serde would take a struct from an array of its fields.
        let (status, field, detail) = field_of(r#"["a", []]"#);
        assert_eq!((status, field), (400, None), "{detail}");
        assert!(detail.contains("expected struct"), "{detail}");
        let (status, field, _) =
            field_of(r#"{"application": "a", "targets": [["sip:a@1.2.3.4", null]]}"#);
        assert_eq!((status, field.as_deref()), (400, Some("targets[0]")));
        let (status, field, _) =
            field_of(r#"{"application": "a", "targets": [], "customContext": [{}, null]}"#);
        assert_eq!((status, field.as_deref()), (400, Some("customContext")));
        // Numbers, enums and maps come through as before.
        let request = parse::<CreateCallRequest>(
            br#"{"application": "a", "targets": [{"sipUri": "sip:a@1.2.3.4"}], "invitationTimeoutInSeconds": 30.0, "customContext": {"sipHeaders": {"X-A": "1"}}}"#,
        )
        .unwrap();
        assert_eq!(request.invitation_timeout_in_seconds, Some(30));
        assert_eq!(request.custom_context.unwrap().sip_headers.len(), 1);
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
