//! Message framing on stream transports (RFC 3261 §18.3) with CRLF keep-alives
//! (RFC 5626 §3.5.1).

use crate::HeaderName;
use crate::scan::{parse_u64, range, trim_lws_range};
use bytes::{Buf, Bytes, BytesMut};
use memchr::memchr;

/// Size limits of the stream framer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Bytes of start line plus headers, including the blank line (default 16384).
    pub max_header_bytes: usize,
    /// Header lines (default 128).
    pub max_headers: usize,
    /// Body bytes (default 1 MiB).
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

/// What the framer found on the stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Frame {
    /// One whole message, start line to the end of its body.
    Message(Bytes),
    /// CRLFCRLF keep-alive: answer with a CRLF pong (RFC 5626 §3.5.1).
    Ping,
    /// A lone CRLF (the pong, RFC 5626 §3.5.1).
    Pong,
}

/// Why the stream must be closed (RFC 3261 §18.3).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FramingError {
    #[error("header section exceeds the limit")]
    HeaderTooLarge,
    #[error("too many header lines")]
    TooManyHeaders,
    #[error("body exceeds the limit")]
    BodyTooLarge,
    /// Content-Length is mandatory on streams (RFC 3261 §18.3, §20.14).
    #[error("Content-Length missing on a stream transport")]
    MissingContentLength,
    #[error("malformed Content-Length")]
    BadContentLength,
}

impl From<FramingError> for crate::ParseError {
    /// Maps a framing failure to the error a UAS would report (513 for oversized
    /// headers, 413 for an oversized body, 400 otherwise).
    fn from(e: FramingError) -> Self {
        use crate::ParseError as P;
        match e {
            FramingError::HeaderTooLarge => P::TooLarge {
                what: "header section",
                limit: 0,
            },
            FramingError::TooManyHeaders => P::TooLarge {
                what: "header count",
                limit: 0,
            },
            FramingError::BodyTooLarge => P::TooLarge {
                what: "body",
                limit: 0,
            },
            FramingError::MissingContentLength => P::MissingHeader(HeaderName::ContentLength),
            FramingError::BadContentLength => P::BadHeader {
                name: HeaderName::ContentLength,
            },
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum State {
    /// Looking for the end of the header section; `scanned` bytes hold no end.
    Head { scanned: usize },
    /// Header section is `head` bytes; waiting for `head + body` bytes.
    Body { total: usize },
}

/// Splits a TCP/TLS byte stream into messages and keep-alives. Push bytes in any chunk
/// sizes, then call [`StreamFramer::next_frame`] until it returns `Ok(None)`.
///
/// Keep-alives (RFC 5626 §3.5.1): between messages, CRLFCRLF is a [`Frame::Ping`] and a
/// lone CRLF a [`Frame::Pong`]. A lone CRLF at the end of the buffered data is reported as
/// a Pong at once (a client must not wait for more data to see its pong); if the next two
/// bytes turn out to be CRLF, the pair is reported as a Ping, so a ping split across
/// segments is still answered.
#[derive(Debug)]
pub struct StreamFramer {
    limits: Limits,
    buf: BytesMut,
    state: State,
    /// A lone CRLF was just reported as Pong and nothing followed yet.
    after_pong: bool,
}

impl StreamFramer {
    /// A framer with the given limits.
    pub fn new(limits: Limits) -> Self {
        StreamFramer {
            limits,
            buf: BytesMut::with_capacity(4096),
            state: State::Head { scanned: 0 },
            after_pong: false,
        }
    }

    /// Appends received bytes.
    pub fn push(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
    }

    /// Bytes held, not yet returned in a frame.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// Next complete frame, `Ok(None)` if more bytes are needed, `Err` when the stream must
    /// be closed (the framer is then in an undefined state).
    pub fn next_frame(&mut self) -> Result<Option<Frame>, FramingError> {
        loop {
            match self.state {
                State::Head { scanned } => {
                    if scanned == 0 {
                        // keep-alives between messages
                        match (self.buf.first(), self.buf.get(1)) {
                            (None, _) | (Some(b'\r'), None) => return Ok(None),
                            (Some(b'\r'), Some(b'\n')) => {
                                if self.after_pong {
                                    self.after_pong = false;
                                    self.buf.advance(2);
                                    return Ok(Some(Frame::Ping));
                                }
                                match (self.buf.get(2), self.buf.get(3)) {
                                    (Some(b'\r'), Some(b'\n')) => {
                                        self.buf.advance(4);
                                        return Ok(Some(Frame::Ping));
                                    }
                                    (Some(b'\r'), None) => return Ok(None),
                                    (None, _) => {
                                        self.buf.advance(2);
                                        self.after_pong = true;
                                        return Ok(Some(Frame::Pong));
                                    }
                                    _ => {
                                        self.buf.advance(2);
                                        return Ok(Some(Frame::Pong));
                                    }
                                }
                            }
                            (Some(b'\n'), _) => {
                                // a bare LF between messages: skip it
                                self.buf.advance(1);
                                continue;
                            }
                            _ => {}
                        }
                        self.after_pong = false;
                    }
                    let Some(head) = find_head_end(&self.buf, scanned) else {
                        if self.buf.len() > self.limits.max_header_bytes {
                            return Err(FramingError::HeaderTooLarge);
                        }
                        // re-scan the last 3 bytes next time: the end may straddle pushes
                        self.state = State::Head {
                            scanned: self.buf.len().saturating_sub(3).max(1),
                        };
                        return Ok(None);
                    };
                    if head > self.limits.max_header_bytes {
                        return Err(FramingError::HeaderTooLarge);
                    }
                    let body = self.content_length(head)?;
                    if body > self.limits.max_body_bytes {
                        return Err(FramingError::BodyTooLarge);
                    }
                    self.state = State::Body { total: head + body };
                }
                State::Body { total } => {
                    if self.buf.len() < total {
                        return Ok(None);
                    }
                    self.state = State::Head { scanned: 0 };
                    let frame = self.buf.split_to(total).freeze();
                    return Ok(Some(Frame::Message(frame)));
                }
            }
        }
    }

    /// Counts header lines and finds the one Content-Length in `buf[..head]`.
    fn content_length(&self, head: usize) -> Result<usize, FramingError> {
        let b = range(&self.buf, 0, head);
        let mut pos = match memchr(b'\n', b) {
            Some(i) => i + 1,
            None => return Err(FramingError::MissingContentLength),
        };
        let mut lines = 0usize;
        let mut found: Option<usize> = None;
        while pos < b.len() {
            let end = memchr(b'\n', range(b, pos, b.len())).map_or(b.len(), |i| pos + i);
            let line = range(b, pos, end);
            pos = end + 1;
            match line.first() {
                None | Some(b'\r') => break,
                Some(b' ' | b'\t') => continue,
                _ => {}
            }
            lines += 1;
            if lines > self.limits.max_headers {
                return Err(FramingError::TooManyHeaders);
            }
            let Some(colon) = memchr(b':', line) else {
                continue;
            };
            let (ns, ne) = trim_lws_range(line, 0, colon);
            if HeaderName::classify(range(line, ns, ne)) != Some(HeaderName::ContentLength) {
                continue;
            }
            // the value may be folded onto the next lines
            let mut vend = end;
            while matches!(b.get(vend + 1), Some(b' ' | b'\t')) {
                vend = memchr(b'\n', range(b, vend + 1, b.len())).map_or(b.len(), |i| vend + 1 + i);
            }
            let vstart = pos - line.len() - 1 + colon + 1;
            let (vs, ve) = trim_lws_range(b, vstart, vend);
            let n = parse_u64(range(b, vs, ve))
                .and_then(|n| usize::try_from(n).ok())
                .ok_or(FramingError::BadContentLength)?;
            if found.is_some_and(|f| f != n) {
                return Err(FramingError::BadContentLength);
            }
            found = Some(n);
        }
        found.ok_or(FramingError::MissingContentLength)
    }
}

/// Index just past the blank line ending the header section (CRLFCRLF, or LFLF), looking
/// from `from`.
fn find_head_end(b: &[u8], from: usize) -> Option<usize> {
    let mut i = from;
    loop {
        let lf = i + memchr(b'\n', b.get(i..)?)?;
        match b.get(lf + 1) {
            Some(b'\n') => return Some(lf + 2),
            Some(b'\r') if b.get(lf + 2) == Some(&b'\n') => return Some(lf + 3),
            _ => i = lf + 1,
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic)]
mod tests {
    use super::*;

    const MSG: &[u8] = b"OPTIONS sip:a@b SIP/2.0\r\nVia: SIP/2.0/TCP h\r\nl: 5\r\n\r\nhello";
    const MSG2: &[u8] = b"SIP/2.0 200 OK\r\nContent-Length:\r\n 0\r\n\r\n";

    fn drain(f: &mut StreamFramer) -> Vec<Frame> {
        let mut out = Vec::new();
        while let Some(fr) = f.next_frame().unwrap() {
            out.push(fr);
        }
        out
    }

    fn stream() -> Vec<u8> {
        let mut s = Vec::new();
        s.extend_from_slice(b"\r\n\r\n");
        s.extend_from_slice(MSG);
        s.extend_from_slice(MSG2);
        s.extend_from_slice(b"\r\n\r\n");
        s.extend_from_slice(MSG);
        s
    }

    #[test]
    fn whole_stream_at_once() {
        let mut f = StreamFramer::new(Limits::default());
        f.push(&stream());
        assert_eq!(
            drain(&mut f),
            [
                Frame::Ping,
                Frame::Message(Bytes::from_static(MSG)),
                Frame::Message(Bytes::from_static(MSG2)),
                Frame::Ping,
                Frame::Message(Bytes::from_static(MSG)),
            ]
        );
        assert_eq!(f.buffered(), 0);
    }

    #[test]
    fn byte_by_byte_and_every_chunk_size() {
        let s = stream();
        for chunk in 1..=s.len() {
            let mut f = StreamFramer::new(Limits::default());
            let mut frames = Vec::new();
            for c in s.chunks(chunk) {
                f.push(c);
                frames.extend(drain(&mut f));
            }
            let msgs: Vec<_> = frames
                .iter()
                .filter(|f| matches!(f, Frame::Message(_)))
                .collect();
            assert_eq!(msgs.len(), 3, "chunk {chunk}");
            // a ping split between pushes shows as Pong then Ping; it is always answered
            let pings = frames.iter().filter(|f| **f == Frame::Ping).count();
            assert_eq!(pings, 2, "chunk {chunk}: {frames:?}");
            assert_eq!(f.buffered(), 0);
        }
    }

    #[test]
    fn keep_alives() {
        let mut f = StreamFramer::new(Limits::default());
        f.push(b"\r\n");
        assert_eq!(f.next_frame().unwrap(), Some(Frame::Pong));
        assert_eq!(f.next_frame().unwrap(), None);
        // the next CRLF completes a ping split across segments
        f.push(b"\r\n");
        assert_eq!(drain(&mut f), [Frame::Ping]);
        f.push(b"\r\n\r\n\r\n");
        assert_eq!(drain(&mut f), [Frame::Ping, Frame::Pong]);
        f.push(b"OPT");
        assert_eq!(drain(&mut f), []);
        f.push(b"IONS sip:a@b SIP/2.0\r\nContent-Length: 0\r\n\r\n");
        assert!(matches!(drain(&mut f).as_slice(), [Frame::Message(_)]));
        f.push(b"\r\nOPTIONS sip:a@b SIP/2.0\r\nl: 0\r\n\r\n");
        assert!(matches!(
            drain(&mut f).as_slice(),
            [Frame::Pong, Frame::Message(_)]
        ));
        f.push(b"\r");
        assert_eq!(f.next_frame().unwrap(), None);
        f.push(b"\n\r\n");
        assert_eq!(drain(&mut f), [Frame::Ping]);
    }

    #[test]
    fn limits_and_errors() {
        let lim = Limits {
            max_header_bytes: 64,
            max_headers: 2,
            max_body_bytes: 10,
        };
        let mut f = StreamFramer::new(lim);
        f.push(&[b'a'; 65]);
        assert_eq!(f.next_frame(), Err(FramingError::HeaderTooLarge));

        let mut f = StreamFramer::new(lim);
        f.push(b"A s SIP/2.0\r\na: 1\r\nb: 2\r\nc: 3\r\n\r\n");
        assert_eq!(f.next_frame(), Err(FramingError::TooManyHeaders));

        let mut f = StreamFramer::new(lim);
        f.push(b"A s SIP/2.0\r\nl: 11\r\n\r\n");
        assert_eq!(f.next_frame(), Err(FramingError::BodyTooLarge));
        assert_eq!(
            crate::ParseError::from(FramingError::BodyTooLarge).status_code(),
            413
        );
        assert_eq!(
            crate::ParseError::from(FramingError::HeaderTooLarge).status_code(),
            513
        );

        let mut f = StreamFramer::new(lim);
        f.push(b"A s SIP/2.0\r\nX: 1\r\n\r\n");
        assert_eq!(f.next_frame(), Err(FramingError::MissingContentLength));

        let mut f = StreamFramer::new(lim);
        f.push(b"A s SIP/2.0\r\nl: -1\r\n\r\n");
        assert_eq!(f.next_frame(), Err(FramingError::BadContentLength));

        let mut f = StreamFramer::new(lim);
        f.push(b"A s SIP/2.0\r\nl: 1\r\nl: 2\r\n\r\n");
        assert_eq!(f.next_frame(), Err(FramingError::BadContentLength));

        // a body that never completes waits; the caller's idle timer closes the stream
        let mut f = StreamFramer::new(Limits::default());
        f.push(b"A s SIP/2.0\r\nl: 5\r\n\r\nabc");
        assert_eq!(f.next_frame(), Ok(None));
        assert_eq!(f.buffered(), 24);
    }
}
