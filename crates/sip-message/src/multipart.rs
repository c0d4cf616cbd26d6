//! Multipart MIME bodies (RFC 2046 §5.1, RFC 5621).

use crate::headers::Headers;
use crate::message::parse_header_block;
use crate::scan::{range, sub};
use crate::{HeaderName, MediaType, ParseError};
use bytes::{Bytes, BytesMut};
use memchr::memmem;

/// One body part: its MIME headers and its content.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Part {
    pub headers: Headers,
    pub body: Bytes,
}

impl Part {
    /// A part with a Content-Type header.
    pub fn new(content_type: &str, body: impl Into<Bytes>) -> Part {
        let mut headers = Headers::with_capacity(2);
        headers.push(
            HeaderName::ContentType,
            Bytes::copy_from_slice(content_type.as_bytes()),
        );
        Part {
            headers,
            body: body.into(),
        }
    }

    /// The part's Content-Type (RFC 2045 §5; absent means text/plain, RFC 2046 §5.1).
    pub fn content_type(&self) -> Result<Option<MediaType>, ParseError> {
        self.headers.content_type()
    }
}

fn bad(reason: &'static str) -> ParseError {
    ParseError::BadMultipart { reason }
}

/// Splits a multipart body into parts (RFC 2046 §5.1.1). Needs the `boundary` parameter.
/// The preamble before the first delimiter and the epilogue after the close delimiter are
/// ignored; the CRLF before each delimiter belongs to the delimiter.
pub fn parse(content_type: &MediaType, body: &Bytes) -> Result<Vec<Part>, ParseError> {
    let boundary = content_type
        .param("boundary")
        .ok_or(bad("missing boundary parameter"))?;
    if boundary.is_empty() || boundary.len() > 70 {
        return Err(bad("bad boundary parameter"));
    }
    let mut dash = Vec::with_capacity(boundary.len() + 4);
    dash.extend_from_slice(b"\r\n--");
    dash.extend_from_slice(&boundary);
    let b: &[u8] = body;
    let finder = memmem::Finder::new(&dash);
    // Finds the next delimiter line at or after `from`: returns (start of CRLF, end of
    // "--boundary"). The first delimiter may start the body without a CRLF.
    let find = |from: usize, first: bool| -> Option<(usize, usize)> {
        if first
            && b.starts_with(dash.get(2..).unwrap_or_default())
            && is_delim_end(b, dash.len() - 2)
        {
            return Some((0, dash.len() - 2));
        }
        let mut i = from;
        loop {
            let at = i + finder.find(b.get(i..)?)?;
            let end = at + dash.len();
            if is_delim_end(b, end) {
                return Some((at, end));
            }
            i = at + 1;
        }
    };
    let (_, mut pos) = find(0, true).ok_or(bad("no delimiter"))?;
    let mut parts = Vec::new();
    loop {
        if range(b, pos, pos + 2) == b"--" {
            return if parts.is_empty() {
                Err(bad("no body part"))
            } else {
                Ok(parts)
            };
        }
        // transport padding, then CRLF
        while matches!(b.get(pos), Some(b' ' | b'\t')) {
            pos += 1;
        }
        if range(b, pos, pos + 2) == b"\r\n" {
            pos += 2;
        } else if b.get(pos) == Some(&b'\n') {
            pos += 1;
        } else {
            return Err(bad("bad delimiter line"));
        }
        let (next_start, next_end) = find(pos, false).ok_or(bad("missing close delimiter"))?;
        let part = sub(body, pos, next_start);
        let mut headers = Headers::new();
        let mut cl = None;
        let body_start = parse_header_block(&part, 0, &mut headers, &mut cl)
            .map_err(|_| bad("bad part header"))?;
        parts.push(Part {
            headers,
            body: sub(&part, body_start, part.len()),
        });
        pos = next_end;
    }
}

fn is_delim_end(b: &[u8], end: usize) -> bool {
    matches!(b.get(end), None | Some(b'-' | b'\r' | b'\n' | b' ' | b'\t'))
}

/// Builds a multipart body (RFC 2046 §5.1.1) with a boundary found in no part
/// (deterministic, no RNG). Returns the Content-Type (`multipart/<subtype>;boundary=...`)
/// and the body.
pub fn build(subtype: &str, parts: &[Part]) -> (MediaType, Bytes) {
    let mut n: u64 = 0;
    let boundary = loop {
        let cand = format!("tandem-boundary-{n:x}");
        let c = cand.as_bytes();
        let used = parts.iter().any(|p| {
            memmem::find(&p.body, c).is_some()
                || p.headers
                    .iter()
                    .any(|h| memmem::find(&h.value, c).is_some())
        });
        if !used {
            break cand;
        }
        n += 1;
    };
    let mut out = BytesMut::new();
    for p in parts {
        out.extend_from_slice(b"--");
        out.extend_from_slice(boundary.as_bytes());
        out.extend_from_slice(b"\r\n");
        for h in p.headers.iter() {
            out.extend_from_slice(h.name.as_str().as_bytes());
            out.extend_from_slice(b": ");
            out.extend_from_slice(&h.value);
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(&p.body);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"--");
    out.extend_from_slice(boundary.as_bytes());
    out.extend_from_slice(b"--\r\n");
    let mut mt = MediaType::new("multipart", subtype);
    mt.params.push(crate::Param {
        name: Bytes::from_static(b"boundary"),
        value: Some(Bytes::from(boundary)),
    });
    (mt, out.freeze())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic, clippy::indexing_slicing)]
mod tests {
    use super::*;

    #[test]
    fn parse_with_preamble_and_epilogue() {
        let ct = MediaType::parse(b"multipart/alternative; boundary=\"b1\"").unwrap();
        let body = Bytes::from_static(
            b"preamble\r\n--b1\r\nContent-Type: text/plain\r\n\r\nhello\r\n\r\n--b1 \r\n\r\nno headers\r\n--b1--\r\nepilogue --b1\r\n",
        );
        let parts = parse(&ct, &body).unwrap();
        assert_eq!(parts.len(), 2);
        assert_eq!(&parts[0].body[..], b"hello\r\n");
        assert!(
            parts[0]
                .content_type()
                .unwrap()
                .unwrap()
                .is("text", "plain")
        );
        assert!(parts[1].headers.is_empty());
        assert_eq!(&parts[1].body[..], b"no headers");
    }

    #[test]
    fn boundary_must_start_a_line_and_end_cleanly() {
        let ct = MediaType::parse(b"multipart/mixed;boundary=xx").unwrap();
        let body = Bytes::from_static(b"--xx\r\n\r\na--xx\r\n--xxy\r\n--xx--");
        let parts = parse(&ct, &body).unwrap();
        assert_eq!(parts.len(), 1);
        assert_eq!(&parts[0].body[..], b"a--xx\r\n--xxy");
        for bad in [
            &b"--xx\r\n\r\nnever closed"[..],
            b"no delimiter",
            b"--xx--",
            b"--xxjunk",
        ] {
            assert!(parse(&ct, &Bytes::copy_from_slice(bad)).is_err());
        }
        let no_boundary = MediaType::parse(b"multipart/mixed").unwrap();
        assert!(parse(&no_boundary, &body).is_err());
    }

    #[test]
    fn build_round_trip() {
        let parts = vec![
            Part::new("application/sdp", Bytes::from_static(b"v=0\r\n")),
            Part::new(
                "text/plain",
                Bytes::from_static(b"contains --tandem-boundary-0 inside"),
            ),
            Part::new(
                "application/octet-stream",
                Bytes::from_static(b"\r\n\r\n--\r\n"),
            ),
        ];
        let (ct, body) = build("mixed", &parts);
        assert!(ct.is("multipart", "mixed"));
        assert_eq!(&ct.param("boundary").unwrap()[..], b"tandem-boundary-1");
        let back = parse(&MediaType::parse(&ct.to_bytes()).unwrap(), &body).unwrap();
        assert_eq!(back, parts);
        let (ct2, body2) = build("mixed", &parts);
        assert_eq!((ct2, body2), (ct, body), "deterministic");
    }
}
