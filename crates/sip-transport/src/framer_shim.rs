//! TEMPORARY stand-in for `sip_message::StreamFramer` (same contract), until
//! the real one lands in sip-message. Deleted then.

use bytes::{Buf, Bytes, BytesMut};

#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub max_header_bytes: usize,
    pub max_headers: usize,
    pub max_body_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_header_bytes: 16384,
            max_headers: 128,
            max_body_bytes: 1 << 20,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Frame {
    Message(Bytes),
    Ping,
    Pong,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FramingError {
    #[error("header too large")]
    HeaderTooLarge,
    #[error("too many headers")]
    TooManyHeaders,
    #[error("body too large")]
    BodyTooLarge,
    #[error("missing Content-Length")]
    MissingContentLength,
    #[error("bad Content-Length")]
    BadContentLength,
}

#[derive(Debug)]
pub struct StreamFramer {
    limits: Limits,
    buf: BytesMut,
}

impl StreamFramer {
    pub fn new(limits: Limits) -> Self {
        StreamFramer {
            limits,
            buf: BytesMut::new(),
        }
    }

    pub fn push(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
    }

    #[allow(dead_code)]
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    pub fn next_frame(&mut self) -> Result<Option<Frame>, FramingError> {
        if self.buf.starts_with(b"\r\n\r\n") {
            self.buf.advance(4);
            return Ok(Some(Frame::Ping));
        }
        if self.buf.starts_with(b"\r\n") {
            if self.buf.len() == 2 || self.buf.get(2) != Some(&b'\r') {
                self.buf.advance(2);
                return Ok(Some(Frame::Pong));
            }
            return Ok(None);
        }
        let Some(end) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") else {
            if self.buf.len() > self.limits.max_header_bytes {
                return Err(FramingError::HeaderTooLarge);
            }
            return Ok(None);
        };
        if end > self.limits.max_header_bytes {
            return Err(FramingError::HeaderTooLarge);
        }
        let head = self.buf.get(..end).unwrap_or_default();
        let mut len = None;
        for line in head.split(|b| *b == b'\n') {
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            let Some(colon) = line.iter().position(|b| *b == b':') else {
                continue;
            };
            let name = line.get(..colon).unwrap_or_default().trim_ascii();
            if name.eq_ignore_ascii_case(b"content-length") || name.eq_ignore_ascii_case(b"l") {
                let v = line.get(colon + 1..).unwrap_or_default().trim_ascii();
                let v = std::str::from_utf8(v)
                    .ok()
                    .and_then(|s| s.parse::<usize>().ok())
                    .ok_or(FramingError::BadContentLength)?;
                len = Some(v);
            }
        }
        let len = len.ok_or(FramingError::MissingContentLength)?;
        if len > self.limits.max_body_bytes {
            return Err(FramingError::BodyTooLarge);
        }
        let total = end + 4 + len;
        if self.buf.len() < total {
            return Ok(None);
        }
        Ok(Some(Frame::Message(self.buf.split_to(total).freeze())))
    }
}
