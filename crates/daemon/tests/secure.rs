//! The daemon over TLS, WebSocket and secure WebSocket, driven by Rust clients on
//! loopback: OPTIONS, and a whole INVITE/ACK/BYE call to the `echo` user. The test CA
//! and certificate are made at test time. Also: the start is refused, naming the key, for
//! a TLS listener without `[sip.tls]` and for a certificate that does not load.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use bytes::Bytes;
use common::{Daemon, TestPki};
use futures_util::{SinkExt, StreamExt};
use runtime::sip_transport::rustls::RootCertStore;
use rustls_pki_types::ServerName;
use rustls_pki_types::pem::PemObject;
use sip_message::{Frame, HeaderName, Limits, Message, Response, StreamFramer};
use std::net::SocketAddr;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::{WebSocketStream, client_async};

const WAIT: Duration = Duration::from_secs(5);

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// A SIP client over one connection.
enum Conn {
    Tls {
        stream: Box<TlsStream<TcpStream>>,
        framer: StreamFramer,
    },
    Ws(Box<WebSocketStream<Box<dyn Io>>>),
}

struct Client {
    conn: Conn,
    /// Via transport token: TLS, WS or WSS.
    token: &'static str,
    /// Via sent-by: our address, or an `.invalid` name as browsers write (RFC 7118 §5.2).
    sent_by: String,
    /// The daemon's listener.
    server: SocketAddr,
    /// The URI `transport` parameter for this transport.
    uri_transport: &'static str,
}

fn connector(pki: &TestPki) -> TlsConnector {
    let mut roots = RootCertStore::empty();
    let pem = std::fs::read(&pki.ca).unwrap();
    for cert in rustls_pki_types::CertificateDer::pem_slice_iter(&pem) {
        roots.add(cert.unwrap()).unwrap();
    }
    let config = runtime::sip_transport::client_config(roots).unwrap();
    TlsConnector::from(Arc::new(config))
}

async fn tls_connect(pki: &TestPki, server: SocketAddr) -> TlsStream<TcpStream> {
    let tcp = TcpStream::connect(server).await.unwrap();
    let name = ServerName::try_from("sip.test").unwrap();
    timeout(WAIT, connector(pki).connect(name, tcp))
        .await
        .unwrap()
        .expect("TLS handshake with the daemon")
}

async fn ws_connect(stream: Box<dyn Io>, server: SocketAddr, secure: bool) -> Conn {
    let scheme = if secure { "wss" } else { "ws" };
    let mut request = format!("{scheme}://{server}/")
        .into_client_request()
        .unwrap();
    request
        .headers_mut()
        .insert("Sec-WebSocket-Protocol", "sip".parse().unwrap());
    let (ws, response) = timeout(WAIT, client_async(request, stream))
        .await
        .unwrap()
        .expect("WebSocket upgrade");
    assert_eq!(
        response.headers().get("Sec-WebSocket-Protocol").unwrap(),
        "sip"
    );
    Conn::Ws(Box::new(ws))
}

impl Client {
    async fn tls(pki: &TestPki, daemon: &Daemon) -> Client {
        let server = daemon.addr("tls");
        let stream = tls_connect(pki, server).await;
        let local = stream.get_ref().0.local_addr().unwrap();
        Client {
            conn: Conn::Tls {
                stream: Box::new(stream),
                framer: StreamFramer::new(Limits::default()),
            },
            token: "TLS",
            sent_by: local.to_string(),
            server,
            uri_transport: "tls",
        }
    }

    async fn ws(daemon: &Daemon) -> Client {
        let server = daemon.addr("ws");
        let tcp: Box<dyn Io> = Box::new(TcpStream::connect(server).await.unwrap());
        Client {
            conn: ws_connect(tcp, server, false).await,
            token: "WS",
            sent_by: "df7jal23ls0d.invalid".into(),
            server,
            // RFC 7118 §5.2.2: the URI transport parameter is "ws" for WS and WSS alike.
            uri_transport: "ws",
        }
    }

    async fn wss(pki: &TestPki, daemon: &Daemon) -> Client {
        let server = daemon.addr("wss");
        let tls: Box<dyn Io> = Box::new(tls_connect(pki, server).await);
        Client {
            conn: ws_connect(tls, server, true).await,
            token: "WSS",
            sent_by: "k3jd9s0a2mn1.invalid".into(),
            server,
            uri_transport: "ws",
        }
    }

    async fn send(&mut self, text: &str) {
        match &mut self.conn {
            Conn::Tls { stream, .. } => stream.write_all(text.as_bytes()).await.unwrap(),
            Conn::Ws(ws) => ws.send(WsMessage::text(text)).await.unwrap(),
        }
    }

    /// The next message the daemon sent on this connection.
    async fn recv(&mut self) -> Message {
        let data = timeout(WAIT, async {
            match &mut self.conn {
                Conn::Tls { stream, framer } => loop {
                    match framer.next_frame().unwrap() {
                        Some(Frame::Message(data)) => break data,
                        Some(_) => continue,
                        None => {}
                    }
                    let mut buf = [0u8; 4096];
                    let n = stream.read(&mut buf).await.unwrap();
                    assert!(n > 0, "the daemon closed the TLS connection");
                    framer.push(&buf[..n]);
                },
                Conn::Ws(ws) => loop {
                    match ws.next().await.expect("WebSocket ended").unwrap() {
                        WsMessage::Text(text) => break Bytes::from(text),
                        WsMessage::Binary(data) => break data,
                        _ => continue,
                    }
                },
            }
        })
        .await
        .expect("timed out waiting for the daemon");
        Message::parse(data).unwrap()
    }

    async fn response(&mut self) -> Response {
        match self.recv().await {
            Message::Response(r) => r,
            Message::Request(r) => panic!("expected a response, got {r:?}"),
        }
    }

    /// The final response, past any provisional ones.
    async fn final_response(&mut self) -> Response {
        loop {
            let r = self.response().await;
            if r.status >= 200 {
                return r;
            }
        }
    }

    fn request(
        &self,
        method: &str,
        uri: &str,
        call: &str,
        cseq: u32,
        to_tag: Option<&str>,
        body: &str,
    ) -> String {
        let to_tag = to_tag.map(|t| format!(";tag={t}")).unwrap_or_default();
        let content_type = if body.is_empty() {
            ""
        } else {
            "Content-Type: application/sdp\r\n"
        };
        let cseq_method = if method == "ACK" { "ACK" } else { method };
        format!(
            "{method} {uri} SIP/2.0\r\n\
             Via: SIP/2.0/{} {};branch=z9hG4bK-{call}-{cseq}-{method};rport\r\n\
             Max-Forwards: 70\r\n\
             From: <sip:tester@sip.test>;tag=from-{call}\r\n\
             To: <sip:echo@sip.test>{to_tag}\r\n\
             Call-ID: {call}\r\n\
             CSeq: {cseq} {cseq_method}\r\n\
             Contact: <sip:tester@{};transport={}>\r\n\
             {content_type}Content-Length: {}\r\n\r\n{body}",
            self.token,
            self.sent_by,
            self.sent_by,
            self.uri_transport,
            body.len()
        )
    }

    fn echo_uri(&self) -> String {
        format!("sip:echo@{};transport={}", self.server, self.uri_transport)
    }
}

fn header(response: &Response, name: HeaderName) -> String {
    let value = response
        .headers
        .get(&name)
        .unwrap_or_else(|| panic!("no {name:?} in {response:?}"));
    String::from_utf8_lossy(value).into_owned()
}

const OFFER: &str = "v=0\r\no=tester 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\n\
                     t=0 0\r\nm=audio 40000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n";

/// OPTIONS, then INVITE/ACK/BYE to `echo`, all on the client's one connection.
async fn options_and_a_call(client: &mut Client, tag: &str) {
    let uri = client.echo_uri();
    let options = client.request("OPTIONS", &uri, &format!("{tag}-options"), 1, None, "");
    client.send(&options).await;
    let ok = client.final_response().await;
    assert_eq!(ok.status, 200, "{ok:?}");
    let via = header(&ok, HeaderName::Via);
    assert!(
        via.starts_with(&format!("SIP/2.0/{} {}", client.token, client.sent_by)),
        "{via}"
    );
    // RFC 3581 §4 / RFC 7118 §5.2.3: the real source is recorded in `received`.
    assert!(via.contains("received=127.0.0.1"), "{via}");

    let call = format!("{tag}-call");
    let invite = client.request("INVITE", &uri, &call, 1, None, OFFER);
    client.send(&invite).await;
    let answer = client.final_response().await;
    assert_eq!(answer.status, 200, "{answer:?}");
    assert!(!answer.body.is_empty(), "the 200 carries an SDP answer");
    let contact = header(&answer, HeaderName::Contact);
    assert!(
        contact.contains(&format!(";transport={}>", client.uri_transport))
            && contact.contains(&format!(":{}", client.server.port())),
        "Contact {contact} names the listener and the transport"
    );
    let to_tag = answer
        .headers
        .to()
        .unwrap()
        .tag()
        .map(|t| String::from_utf8_lossy(t).into_owned())
        .expect("a To tag on the 200");
    let target = contact
        .trim_start_matches('<')
        .trim_end_matches('>')
        .to_owned();
    let ack = client.request("ACK", &target, &call, 1, Some(&to_tag), "");
    client.send(&ack).await;
    let bye = client.request("BYE", &target, &call, 2, Some(&to_tag), "");
    client.send(&bye).await;
    let bye_ok = client.final_response().await;
    assert_eq!(bye_ok.status, 200, "{bye_ok:?}");
    assert!(header(&bye_ok, HeaderName::CSeq).contains("BYE"));
}

fn assert_answered_and_ended(daemon: &Daemon, calls: u64) {
    let stats = daemon.wait_for_stats(WAIT, |s| {
        s.get("calls_answered") >= calls && s.get("dialogs") == 0
    });
    assert!(stats.get("calls_answered") >= calls, "{stats:?}");
    assert_eq!(stats.get("dialogs"), 0, "{stats:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn options_and_a_call_over_tls() {
    let pki = TestPki::new("daemon-tls");
    let daemon = Daemon::start_listening("tls", &["udp", "tls"], &pki.config_table());
    let mut client = Client::tls(&pki, &daemon).await;
    options_and_a_call(&mut client, "tls").await;
    assert_answered_and_ended(&daemon, 1);
    let stats = daemon.stats();
    assert_eq!(stats.get("tls_open"), 1, "{stats:?}");
    assert_eq!(stats.get("tls_handshakes"), 1, "{stats:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn options_and_a_call_over_websocket() {
    let daemon = Daemon::start_listening("ws", &["udp", "ws"], "");
    let mut client = Client::ws(&daemon).await;
    options_and_a_call(&mut client, "ws").await;
    assert_answered_and_ended(&daemon, 1);
    let stats = daemon.stats();
    assert_eq!(stats.get("ws_open"), 1, "{stats:?}");
    assert_eq!(stats.get("ws_upgrades"), 1, "{stats:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn options_and_a_call_over_secure_websocket() {
    let pki = TestPki::new("daemon-wss");
    let daemon = Daemon::start_listening(
        "wss",
        &["udp", "tcp", "tls", "ws", "wss"],
        &pki.config_table(),
    );
    // The ready line lists every listener, each on its own port.
    let transports: Vec<&str> = daemon.listening.iter().map(|(t, _)| t.as_str()).collect();
    assert_eq!(transports, ["udp", "tcp", "tls", "ws", "wss"]);
    let mut client = Client::wss(&pki, &daemon).await;
    options_and_a_call(&mut client, "wss").await;
    assert_answered_and_ended(&daemon, 1);
    assert_eq!(daemon.stats().get("wss_open"), 1);
}

#[test]
fn a_tls_listener_without_the_tls_table_is_refused_naming_the_key() {
    let dir = common::scratch_dir("no-tls-table");
    let path = dir.join("tandem.toml");
    std::fs::write(&path, "[sip]\nlisten = [\"tls:127.0.0.1:0\"]\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_tandem"))
        .args(["run", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("key `sip.tls`") && stderr.contains("tls:127.0.0.1:0"),
        "{stderr}"
    );
}

#[test]
fn a_certificate_that_does_not_load_is_refused_naming_the_file_and_the_reason() {
    let pki = TestPki::new("bad-cert");
    let dir = common::scratch_dir("bad-cert");
    let broken = dir.join("broken.pem");
    std::fs::write(&broken, "-----BEGIN CERTIFICATE-----\nnot base64!\n").unwrap();
    for (certificate, key_named, reason) in [
        (
            dir.join("missing.pem"),
            "sip.tls.certificate",
            "cannot read",
        ),
        (broken.clone(), "sip.tls.certificate", "bad PEM"),
        // The CA's certificate does not go with the server's key.
        (pki.ca.clone(), "sip.tls.private_key", "does not go"),
    ] {
        let path = dir.join("tandem.toml");
        std::fs::write(
            &path,
            format!(
                "[sip]\nlisten = [\"wss:127.0.0.1:0\"]\n[sip.tls]\ncertificate = {certificate:?}\n\
                 private_key = {:?}\n",
                pki.private_key
            ),
        )
        .unwrap();
        for args in [&["run", "--config"][..], &["check-config"][..]] {
            let out = Command::new(env!("CARGO_BIN_EXE_tandem"))
                .args(args)
                .arg(&path)
                .output()
                .unwrap();
            assert_eq!(out.status.code(), Some(1), "{args:?}");
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert!(stderr.contains(&format!("key `{key_named}`")), "{stderr}");
            let file = if key_named == "sip.tls.private_key" {
                pki.private_key.display().to_string()
            } else {
                certificate.display().to_string()
            };
            assert!(
                stderr.contains(&file) && stderr.contains(reason),
                "{stderr}"
            );
        }
    }
}
