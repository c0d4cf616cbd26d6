//! SIP over WebSocket (RFC 7118): the server side of the opening handshake
//! (RFC 6455 §4.2, with the `sip` subprotocol of RFC 7118 §4.1), and the
//! connection halves that carry one SIP message per WebSocket message
//! (RFC 7118 §5.1).
//!
//! The HTTP Upgrade is read here rather than by tungstenite so that its size
//! is bounded, and so that every refused upgrade gets an HTTP answer (400, or
//! 426 for an unsupported WebSocket version, RFC 6455 §4.4) before the socket
//! closes.

use crate::framing::{FramingError, Limits};
use crate::layer::CloseReason;
use crate::stream::{MessageRead, MessageWrite, Received};
use bytes::Bytes;
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use std::fmt;
use std::io;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::{self, Message, Utf8Bytes};

/// The WebSocket subprotocol of SIP (RFC 7118 §4.1, §9.1).
pub const SUBPROTOCOL: &str = "sip";

/// Header lines accepted in the Upgrade request.
const MAX_UPGRADE_HEADERS: usize = 64;
/// Largest Upgrade request head when the configured header limit is smaller.
const MIN_UPGRADE_BYTES: usize = 4096;

/// Why an upgrade did not happen.
#[derive(Debug)]
pub(crate) enum UpgradeError {
    /// Reading or writing the socket failed, or the client closed it.
    Io(io::Error),
    /// The request was answered with this HTTP status and the socket closed.
    Refused { status: u16, reason: &'static str },
}

impl fmt::Display for UpgradeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UpgradeError::Io(e) => write!(f, "{e}"),
            UpgradeError::Refused { status, reason } => write!(f, "answered {status}: {reason}"),
        }
    }
}

/// A refused request: the status and the reason sent as the body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Refusal {
    status: u16,
    reason: &'static str,
}

const fn bad(reason: &'static str) -> Refusal {
    Refusal {
        status: 400,
        reason,
    }
}

/// Answers the client's opening handshake on `stream` and returns the
/// WebSocket. The request must be a `GET` Upgrade to `websocket`, version 13,
/// with a valid key and `sip` among its `Sec-WebSocket-Protocol` values; the
/// answer names `sip` (RFC 7118 §4.1). Anything else is answered 400 (426 for
/// another version) and the socket is shut down.
pub(crate) async fn upgrade<S>(
    mut stream: S,
    limits: &Limits,
) -> Result<WebSocketStream<S>, UpgradeError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let max = limits.max_header_bytes.max(MIN_UPGRADE_BYTES);
    let mut head = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    let checked = loop {
        let n = stream.read(&mut chunk).await.map_err(UpgradeError::Io)?;
        if n == 0 {
            return Err(UpgradeError::Io(io::ErrorKind::UnexpectedEof.into()));
        }
        head.extend_from_slice(chunk.get(..n).unwrap_or_default());
        match check_request(&head) {
            Ok(None) if head.len() < max => continue,
            Ok(None) => break Err(bad("request head too large")),
            Ok(Some(key)) => break Ok(key),
            Err(refusal) => break Err(refusal),
        }
    };
    match checked {
        Ok(key) => {
            let response = format!(
                "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
                 Sec-WebSocket-Accept: {}\r\nSec-WebSocket-Protocol: {SUBPROTOCOL}\r\n\r\n",
                derive_accept_key(key.as_bytes())
            );
            stream
                .write_all(response.as_bytes())
                .await
                .map_err(UpgradeError::Io)?;
            stream.flush().await.map_err(UpgradeError::Io)?;
            Ok(WebSocketStream::from_raw_socket(stream, Role::Server, Some(config(limits))).await)
        }
        Err(refusal) => {
            let response = refusal_response(refusal);
            // The socket closes whatever the peer does with the answer.
            let _ = stream.write_all(response.as_bytes()).await;
            let _ = stream.shutdown().await;
            Err(UpgradeError::Refused {
                status: refusal.status,
                reason: refusal.reason,
            })
        }
    }
}

fn refusal_response(refusal: Refusal) -> String {
    let (phrase, extra) = match refusal.status {
        426 => ("Upgrade Required", "Sec-WebSocket-Version: 13\r\n"),
        _ => ("Bad Request", ""),
    };
    format!(
        "HTTP/1.1 {} {phrase}\r\nConnection: close\r\n{extra}Content-Type: text/plain\r\n\
         Content-Length: {}\r\n\r\n{}\n",
        refusal.status,
        refusal.reason.len() + 1,
        refusal.reason
    )
}

/// The tungstenite limits: no message or frame larger than a SIP message may be.
fn config(limits: &Limits) -> WebSocketConfig {
    let max = limits
        .max_header_bytes
        .saturating_add(limits.max_body_bytes);
    WebSocketConfig::default()
        .max_message_size(Some(max))
        .max_frame_size(Some(max))
}

/// Checks an Upgrade request head. `Ok(None)`: incomplete; `Ok(Some(key))`:
/// complete and acceptable, with its `Sec-WebSocket-Key`.
fn check_request(buf: &[u8]) -> Result<Option<String>, Refusal> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_UPGRADE_HEADERS];
    let mut request = httparse::Request::new(&mut headers);
    let len = match request.parse(buf) {
        Ok(httparse::Status::Partial) => return Ok(None),
        Ok(httparse::Status::Complete(len)) => len,
        Err(httparse::Error::TooManyHeaders) => return Err(bad("too many header lines")),
        Err(_) => return Err(bad("not an HTTP request")),
    };
    if len != buf.len() {
        // RFC 6455 §4.1: the client waits for our answer before sending more.
        return Err(bad("data after the Upgrade request"));
    }
    if request.method != Some("GET") {
        return Err(bad("the Upgrade request must be GET"));
    }
    if request.version != Some(1) {
        return Err(bad("the Upgrade request must be HTTP/1.1"));
    }
    let values = |name: &'static str| {
        request
            .headers
            .iter()
            .filter(move |h| h.name.eq_ignore_ascii_case(name))
            .map(|h| std::str::from_utf8(h.value).unwrap_or_default())
    };
    let has_token = |name: &'static str, token: &str| {
        values(name)
            .flat_map(|v| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case(token))
    };
    if !has_token("upgrade", "websocket") {
        return Err(bad("not a WebSocket Upgrade request"));
    }
    if !has_token("connection", "upgrade") {
        return Err(bad("Connection: Upgrade is missing"));
    }
    if !values("sec-websocket-version").any(|v| v.trim() == "13") {
        return Err(Refusal {
            status: 426,
            reason: "only WebSocket version 13 is supported",
        });
    }
    let mut keys = values("sec-websocket-key");
    let key = match (keys.next(), keys.next()) {
        (Some(key), None) if is_valid_key(key.trim()) => key.trim().to_owned(),
        _ => return Err(bad("bad Sec-WebSocket-Key")),
    };
    if !has_token("sec-websocket-protocol", SUBPROTOCOL) {
        return Err(bad("the sip WebSocket subprotocol (RFC 7118) is required"));
    }
    Ok(Some(key))
}

/// RFC 6455 §4.1: the key is 16 random bytes in base64, 24 characters.
fn is_valid_key(key: &str) -> bool {
    let bytes = key.as_bytes();
    bytes.len() == 24
        && bytes.ends_with(b"==")
        && bytes
            .iter()
            .take(22)
            .all(|b| b.is_ascii_alphanumeric() || *b == b'+' || *b == b'/')
}

/// RFC 7118 §5.1: a WebSocket message carries one whole SIP message, so
/// there is nothing to frame, but the header and body limits still hold.
fn check_size(data: &[u8], limits: &Limits) -> Result<(), FramingError> {
    let header_len = data
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map_or(data.len(), |i| i + 4);
    if header_len > limits.max_header_bytes {
        return Err(FramingError::HeaderTooLarge);
    }
    let lines = data
        .get(..header_len)
        .unwrap_or_default()
        .windows(2)
        .filter(|w| *w == b"\r\n")
        .count();
    // The start line and the blank line are no header lines.
    if lines.saturating_sub(2) > limits.max_headers {
        return Err(FramingError::TooManyHeaders);
    }
    if data.len() - header_len > limits.max_body_bytes {
        return Err(FramingError::BodyTooLarge);
    }
    Ok(())
}

/// The receiving half of a SIP WebSocket connection.
pub(crate) struct WsReader<S> {
    stream: SplitStream<WebSocketStream<S>>,
    limits: Limits,
}

/// The sending half of a SIP WebSocket connection.
pub(crate) struct WsWriter<S> {
    sink: SplitSink<WebSocketStream<S>, Message>,
}

/// Splits an upgraded WebSocket into the layer's connection halves.
pub(crate) fn halves<S>(ws: WebSocketStream<S>, limits: Limits) -> (WsReader<S>, WsWriter<S>)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let (sink, stream) = ws.split();
    (WsReader { stream, limits }, WsWriter { sink })
}

impl<S> WsReader<S> {
    fn message(&self, data: Bytes) -> Result<Received, CloseReason> {
        let wire = data.len();
        if data.iter().all(|b| b.is_ascii_whitespace()) {
            // Nothing to hand up (an empty or CRLF-only message).
            return Ok(Received::Other { wire });
        }
        check_size(&data, &self.limits).map_err(CloseReason::Framing)?;
        Ok(Received::Message { data, wire })
    }
}

impl<S> MessageRead for WsReader<S>
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    async fn next(&mut self) -> Result<Received, CloseReason> {
        match self.stream.next().await {
            None => Err(CloseReason::PeerClosed),
            Some(Ok(Message::Text(text))) => self.message(Bytes::from(text)),
            Some(Ok(Message::Binary(data))) => self.message(data),
            // tungstenite queues the pong; the writer flushes it out.
            Some(Ok(Message::Ping(data))) => Ok(Received::Ping { wire: data.len() }),
            Some(Ok(Message::Pong(data))) => Ok(Received::Other { wire: data.len() }),
            Some(Ok(Message::Frame(_))) => Ok(Received::Other { wire: 0 }),
            // tungstenite answers the Close itself (RFC 6455 §5.5.1).
            Some(Ok(Message::Close(_))) => Err(CloseReason::PeerClosed),
            Some(Err(e)) => Err(close_reason(e)),
        }
    }
}

fn close_reason(error: tungstenite::Error) -> CloseReason {
    use tungstenite::error::ProtocolError;
    match error {
        tungstenite::Error::ConnectionClosed
        | tungstenite::Error::AlreadyClosed
        | tungstenite::Error::Protocol(ProtocolError::ResetWithoutClosingHandshake) => {
            CloseReason::PeerClosed
        }
        // A frame or message over `max_message_size`.
        tungstenite::Error::Capacity(_) => CloseReason::Framing(FramingError::BodyTooLarge),
        tungstenite::Error::Io(e) => CloseReason::Io(e.kind()),
        _ => CloseReason::Io(io::ErrorKind::InvalidData),
    }
}

fn to_io(error: tungstenite::Error) -> io::Error {
    match error {
        tungstenite::Error::Io(e) => e,
        other => io::Error::other(other),
    }
}

impl<S> MessageWrite for WsWriter<S>
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    async fn write_message(&mut self, payload: Bytes) -> io::Result<()> {
        // Text when it is text (what browsers' SIP stacks expect), else binary
        // (RFC 7118 §4.2 allows both).
        let message = if std::str::from_utf8(&payload).is_ok() {
            match Utf8Bytes::try_from(payload) {
                Ok(text) => Message::Text(text),
                Err(_) => return Err(io::ErrorKind::InvalidData.into()),
            }
        } else {
            Message::Binary(payload)
        };
        self.sink.feed(message).await.map_err(to_io)
    }

    async fn pong(&mut self) -> io::Result<usize> {
        self.sink.flush().await.map_err(to_io).map(|()| 0)
    }

    async fn flush(&mut self) -> io::Result<()> {
        self.sink.flush().await.map_err(to_io)
    }

    async fn close(&mut self, reason: Option<&CloseReason>) {
        let code = match reason {
            Some(CloseReason::Framing(
                FramingError::HeaderTooLarge
                | FramingError::BodyTooLarge
                | FramingError::TooManyHeaders,
            )) => CloseCode::Size,
            Some(CloseReason::Framing(_)) => CloseCode::Protocol,
            Some(CloseReason::Idle | CloseReason::Shutdown) => CloseCode::Away,
            _ => CloseCode::Normal,
        };
        let frame = CloseFrame {
            code,
            reason: Utf8Bytes::from_static(""),
        };
        // After the peer's own Close these fail; nothing is left to do then.
        let _ = self.sink.send(Message::Close(Some(frame))).await;
        let _ = self.sink.close().await;
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";

    fn request(extra: &str) -> String {
        format!(
            "GET / HTTP/1.1\r\nHost: sip.test\r\nUpgrade: websocket\r\nConnection: keep-alive, Upgrade\r\n\
             Sec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\n{extra}\r\n"
        )
    }

    #[test]
    fn accepts_an_upgrade_offering_sip() {
        let req = request("Sec-WebSocket-Protocol: chat, sip\r\n");
        assert_eq!(check_request(req.as_bytes()), Ok(Some(KEY.to_owned())));
        // Offered on a second header line.
        let req = request("Sec-WebSocket-Protocol: chat\r\nSec-WebSocket-Protocol: sip\r\n");
        assert_eq!(check_request(req.as_bytes()), Ok(Some(KEY.to_owned())));
    }

    #[test]
    fn incomplete_head_asks_for_more() {
        let req = request("Sec-WebSocket-Protocol: sip\r\n");
        let cut = req.get(..req.len() - 2).unwrap();
        assert_eq!(check_request(cut.as_bytes()), Ok(None));
    }

    #[test]
    fn refuses_what_is_not_a_sip_upgrade() {
        let status = |req: &str| check_request(req.as_bytes()).unwrap_err().status;
        assert_eq!(status(&request("")), 400, "no subprotocol");
        assert_eq!(status(&request("Sec-WebSocket-Protocol: chat\r\n")), 400);
        assert_eq!(
            status("GET / HTTP/1.1\r\nHost: x\r\n\r\n"),
            400,
            "plain GET"
        );
        assert_eq!(status("HELLO\r\n\r\n"), 400, "not HTTP");
        let post = request("Sec-WebSocket-Protocol: sip\r\n").replacen("GET", "POST", 1);
        assert_eq!(status(&post), 400);
        let v8 = request("Sec-WebSocket-Protocol: sip\r\n").replace("Version: 13", "Version: 8");
        assert_eq!(status(&v8), 426);
        let bad_key = request("Sec-WebSocket-Protocol: sip\r\n").replace(KEY, "short");
        assert_eq!(status(&bad_key), 400);
        let trailing = format!("{}junk", request("Sec-WebSocket-Protocol: sip\r\n"));
        assert_eq!(status(&trailing), 400, "data after the head");
    }

    #[test]
    fn refusal_is_a_complete_http_response() {
        let text = refusal_response(bad("no"));
        assert!(text.starts_with("HTTP/1.1 400 Bad Request\r\n"), "{text}");
        assert!(text.ends_with("\r\n\r\nno\n"), "{text}");
        assert!(text.contains("Content-Length: 3\r\n"), "{text}");
        let text = refusal_response(Refusal {
            status: 426,
            reason: "v",
        });
        assert!(text.contains("Sec-WebSocket-Version: 13\r\n"), "{text}");
    }

    #[test]
    fn size_limits_apply_to_each_message() {
        let limits = Limits {
            max_header_bytes: 64,
            max_headers: 2,
            max_body_bytes: 10,
        };
        let ok = b"OPTIONS sip:a SIP/2.0\r\nA: 1\r\n\r\n0123456789";
        assert_eq!(check_size(ok, &limits), Ok(()));
        let body = b"OPTIONS sip:a SIP/2.0\r\nA: 1\r\n\r\n0123456789X";
        assert_eq!(check_size(body, &limits), Err(FramingError::BodyTooLarge));
        let many = b"OPTIONS sip:a SIP/2.0\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n";
        assert_eq!(check_size(many, &limits), Err(FramingError::TooManyHeaders));
        let long = format!("OPTIONS sip:a SIP/2.0\r\nA: {}\r\n\r\n", "x".repeat(64));
        assert_eq!(
            check_size(long.as_bytes(), &limits),
            Err(FramingError::HeaderTooLarge)
        );
        // No blank line: all of it is header section.
        let headless = "x".repeat(65);
        assert_eq!(
            check_size(headless.as_bytes(), &limits),
            Err(FramingError::HeaderTooLarge)
        );
    }
}
