//! Message bodies: the SDP and the custom MIME parts beside it (RFC 5621).

use crate::options::{CustomMimePart, SignalingHeader};
use bytes::Bytes;
use sip_dialog::Body;
use sip_message::{HeaderName, Headers, MediaType, multipart};

/// A body split into its SDP and its other parts.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Split {
    pub sdp: Option<Bytes>,
    pub parts: Vec<CustomMimePart>,
}

/// Splits a message body: `application/sdp`, or `multipart/mixed|alternative` holding
/// one SDP part and others. Any other body is one custom part.
pub(crate) fn split(headers: &Headers, body: &Bytes) -> Result<Split, String> {
    if body.is_empty() {
        return Ok(Split::default());
    }
    let content_type = match headers.content_type() {
        Ok(Some(ct)) => ct,
        Ok(None) => return Err("a body without Content-Type".into()),
        Err(e) => return Err(e.reason_phrase().into_owned()),
    };
    if content_type.is("application", "sdp") {
        return Ok(Split {
            sdp: Some(body.clone()),
            parts: Vec::new(),
        });
    }
    if content_type.kind.eq_ignore_ascii_case(b"multipart") {
        let parts = multipart::parse(&content_type, body).map_err(|e| e.reason_phrase())?;
        let mut split = Split::default();
        for part in parts {
            match part.content_type() {
                Ok(Some(ct)) if ct.is("application", "sdp") && split.sdp.is_none() => {
                    split.sdp = Some(part.body);
                }
                _ => split.parts.push(custom_part(&part)),
            }
        }
        return Ok(split);
    }
    Ok(Split {
        sdp: None,
        parts: vec![CustomMimePart {
            content_type: String::from_utf8_lossy(&content_type.to_bytes()).into_owned(),
            content_disposition: headers
                .get(&HeaderName::ContentDisposition)
                .map(|v| String::from_utf8_lossy(v).into_owned()),
            headers: Vec::new(),
            body: body.clone(),
        }],
    })
}

fn custom_part(part: &multipart::Part) -> CustomMimePart {
    let mut out = CustomMimePart {
        content_type: "text/plain".into(),
        content_disposition: None,
        headers: Vec::new(),
        body: part.body.clone(),
    };
    for header in part.headers.iter() {
        let value = text(&header.value);
        match header.name {
            HeaderName::ContentType => out.content_type = value,
            HeaderName::ContentDisposition => out.content_disposition = Some(value),
            _ => out
                .headers
                .push(SignalingHeader::new(header.name.as_str(), value)),
        }
    }
    out
}

/// The body of a request we send: the SDP alone, or `multipart/mixed` with the SDP
/// first and then each custom part (RFC 5621 §3).
pub(crate) fn build(sdp: Option<Bytes>, parts: &[CustomMimePart]) -> Option<Body> {
    if parts.is_empty() {
        return sdp.map(Body::sdp);
    }
    let mut all = Vec::with_capacity(parts.len() + 1);
    if let Some(sdp) = sdp {
        all.push(multipart::Part::new("application/sdp", sdp));
    }
    for part in parts {
        let mut p = multipart::Part::new(&part.content_type, part.body.clone());
        if let Some(disposition) = &part.content_disposition {
            p.headers.push(
                HeaderName::ContentDisposition,
                Bytes::copy_from_slice(disposition.as_bytes()),
            );
        }
        for h in &part.headers {
            p.headers.push(
                HeaderName::parse(h.name.as_bytes()),
                Bytes::copy_from_slice(h.value.as_bytes()),
            );
        }
        all.push(p);
    }
    let (content_type, data) = multipart::build("mixed", &all);
    Some(Body::new(content_type.to_bytes(), data))
}

/// Every header of a message, as the application sees them.
pub(crate) fn headers_of(headers: &Headers) -> Vec<SignalingHeader> {
    headers
        .iter()
        .map(|h| SignalingHeader::new(h.name.as_str(), text(&h.value)))
        .collect()
}

/// A content type's `type/subtype`, lower-case, without parameters.
pub(crate) fn essence(content_type: &str) -> String {
    content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase()
}

/// Whether a content type is among `accepted` (each `type/subtype` or `type/*` or `*`).
pub(crate) fn accepted(content_type: &str, accepted: &[String]) -> bool {
    let essence = essence(content_type);
    let kind = essence.split('/').next().unwrap_or_default();
    accepted.iter().any(|a| {
        let a = a.trim().to_ascii_lowercase();
        a == essence || a == "*" || a == "*/*" || a.strip_suffix("/*") == Some(kind)
    })
}

/// Parses a Content-Type value, for checks.
pub(crate) fn media_type(value: &str) -> Option<MediaType> {
    MediaType::parse(value.as_bytes()).ok()
}

/// Bytes as text, invalid UTF-8 replaced (as `String::from_utf8_lossy`), with the
/// validator's word-at-a-time ASCII path for the usual valid text.
pub(crate) fn text(bytes: &[u8]) -> String {
    match std::str::from_utf8(bytes) {
        Ok(s) => s.to_owned(),
        Err(_) => String::from_utf8_lossy(bytes).into_owned(),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    #[test]
    fn multipart_round_trip() {
        let sdp = Bytes::from_static(b"v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n");
        let part = CustomMimePart::new("application/vnd.case+json", r#"{"case":42}"#)
            .with_disposition("render;handling=optional");
        let body = build(Some(sdp.clone()), std::slice::from_ref(&part)).unwrap();
        let mut headers = Headers::new();
        headers.push(HeaderName::ContentType, body.content_type.clone());
        let split = split(&headers, &body.data).unwrap();
        assert_eq!(split.sdp, Some(sdp));
        assert_eq!(split.parts, vec![part]);
    }

    #[test]
    fn accept_types() {
        let list = vec!["text/plain".to_owned(), "text/html".to_owned()];
        assert!(accepted("text/plain;charset=UTF-8", &list));
        assert!(accepted("TEXT/HTML", &list));
        assert!(!accepted("application/json", &list));
        assert!(accepted("application/json", &["application/*".to_owned()]));
    }

    #[test]
    fn text_is_from_utf8_lossy() {
        for bytes in [
            &b"Alice <sip:a@b>"[..],
            b"",
            b"caf\xc3\xa9",
            b"bad \xff\xfe byte",
        ] {
            assert_eq!(text(bytes), String::from_utf8_lossy(bytes));
        }
    }
}
