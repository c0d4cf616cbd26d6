//! The application façade (`runtime::app`) on real sockets, with SIPp as the other party
//! checking what goes on the wire (scenarios in `tests/sipp/`; each one's comment says what
//! it checks, and any failed check makes SIPp exit non-zero):
//!
//! - an outgoing call with a custom header and a custom MIME part beside the SDP
//!   (`uas_custom_parts.xml`), and the call's typed events;
//! - an outgoing call refused with 486 and a Reason header (`uas_decline_486.xml`): a
//!   refusal, with the status, phrase, Reason and headers of the response;
//! - incoming calls declined with a chosen status, reason phrase and header
//!   (`uac_decline_603.xml`), with `CallDeclineOptions::new(486)` and a Reason
//!   (`uac_decline_486.xml`), and forwarded with a 302 (`uac_forward_302.xml`).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use runtime::app::{
    self, ApplicationEndpoint, AudioVideoCall, CallEvents, EndpointNotice, Error, Tandem,
};
use runtime::calls::{
    ApplicationEndpointSettings, CallDeclineOptions, CallEstablishOptions, CallEvent,
    CallForwardOptions, CallKind, CallState, CallStateTransitionReason, CallTerminateOptions,
    ConversationSettings, CustomMimePart, EngineConfig, EstablishFailure,
};
use runtime::sip_transport::TransportConfig;
use runtime::{Control, RuntimeConfig, RuntimeError};
use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

/// How long any one step may take before the test gives up.
const STEP: Duration = Duration::from_secs(20);

fn scenarios() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/sipp")
}

fn scratch_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("tandem-app-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A port free on 127.0.0.1 for both UDP and TCP at the time of the call.
fn free_port() -> u16 {
    loop {
        let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = udp.local_addr().unwrap().port();
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// Our stack, on a free loopback UDP port, with no demo users.
struct Stack {
    tandem: Tandem,
    addr: SocketAddr,
    stop: oneshot::Sender<()>,
    driver: JoinHandle<Result<(), RuntimeError>>,
}

impl Stack {
    async fn start() -> Stack {
        let config = RuntimeConfig {
            transport: TransportConfig::new(vec!["127.0.0.1:0".parse().unwrap()], vec![]),
            engine: EngineConfig {
                demo_users: Vec::new(),
                ..EngineConfig::default()
            },
            dns_servers: Vec::new(),
            media_address: None,
        };
        let (tandem, api) = app::channel();
        let (_control, control) = mpsc::channel::<Control>(1);
        let (stop, stopped) = oneshot::channel::<()>();
        let (ready_tx, ready_rx) = oneshot::channel();
        let driver = tokio::spawn(runtime::run_with_api(
            config,
            control,
            api,
            async {
                let _ = stopped.await;
            },
            move |addrs| {
                let _ = ready_tx.send(addrs.to_vec());
            },
        ));
        let addrs = tokio::time::timeout(STEP, ready_rx).await.unwrap().unwrap();
        // One socket: the UDP one of the config.
        assert_eq!(addrs.len(), 1, "{addrs:?}");
        let addr = addrs[0].1;
        Stack {
            tandem,
            addr,
            stop,
            driver,
        }
    }

    async fn endpoint(&self, uri: &str) -> ApplicationEndpoint {
        self.tandem
            .add_application_endpoint(ApplicationEndpointSettings::new(uri))
            .await
            .unwrap()
    }

    async fn shutdown(self) {
        let _ = self.stop.send(());
        tokio::time::timeout(STEP, self.driver)
            .await
            .expect("the driver stops")
            .unwrap()
            .unwrap();
    }
}

/// A SIPp process and where its error log goes.
struct Sipp {
    child: Child,
    errors: PathBuf,
}

/// What SIPp ended with, and everything to print when it failed.
struct SippDone {
    output: Output,
    errors: String,
}

impl SippDone {
    fn success(&self) -> bool {
        self.output.status.success()
    }

    fn report(&self) -> String {
        format!(
            "SIPp: {}\nstdout:\n{}\nstderr:\n{}\nerrors:\n{}",
            self.output.status,
            String::from_utf8_lossy(&self.output.stdout),
            String::from_utf8_lossy(&self.output.stderr),
            self.errors
        )
    }
}

impl Sipp {
    /// Starts SIPp with `scenario` on `port`; `args` add the remote address (for a UAC)
    /// and the call count.
    fn spawn(name: &str, scenario: &str, port: u16, args: &[&str]) -> Sipp {
        let errors = scratch_dir(name).join("errors.log");
        let _ = std::fs::remove_file(&errors);
        let child = Command::new("sipp")
            .args(args)
            .args(["-sf", scenario, "-i", "127.0.0.1", "-p", &port.to_string()])
            .args(["-nostdin", "-timeout", "20s", "-timeout_error"])
            .args(["-trace_err", "-error_file"])
            .arg(&errors)
            .current_dir(scenarios())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("sipp runs (Debian package sip-tester)");
        Sipp { child, errors }
    }

    /// A SIPp UAS on a free port, once it has bound it.
    fn uas(name: &str, scenario: &str) -> (Sipp, u16) {
        let port = free_port();
        let mut sipp = Sipp::spawn(name, scenario, port, &["-m", "1"]);
        let deadline = Instant::now() + STEP;
        // Bound when we can no longer bind it ourselves.
        while UdpSocket::bind(("127.0.0.1", port)).is_ok() {
            if let Some(status) = sipp.child.try_wait().unwrap() {
                panic!("SIPp exited before binding port {port}: {status}");
            }
            assert!(Instant::now() < deadline, "SIPp did not bind port {port}");
            std::thread::sleep(Duration::from_millis(20));
        }
        (sipp, port)
    }

    /// Waits for the exit (SIPp's own `-timeout` bounds it).
    async fn done(self) -> SippDone {
        let Sipp { child, errors } = self;
        let output = tokio::task::spawn_blocking(move || child.wait_with_output().unwrap())
            .await
            .unwrap();
        SippDone {
            output,
            errors: std::fs::read_to_string(&errors).unwrap_or_default(),
        }
    }
}

/// Every event of a call until its stream ends (after `Terminated`).
async fn all_events(mut events: CallEvents) -> Vec<CallEvent> {
    let mut all = Vec::new();
    let collect = async {
        while let Some(event) = events.next().await {
            all.push(event);
        }
    };
    if tokio::time::timeout(STEP, collect).await.is_err() {
        panic!("the call's events did not end with Terminated: {all:?}");
    }
    all
}

/// The state changes among `events`: (state, reason).
fn states(events: &[CallEvent]) -> Vec<(CallState, CallStateTransitionReason)> {
    events
        .iter()
        .filter_map(|e| match e {
            CallEvent::StateChanged { state, reason, .. } => Some((*state, reason.clone())),
            _ => None,
        })
        .collect()
}

fn header<'a>(headers: &'a [runtime::calls::SignalingHeader], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case(name))
        .map(|h| h.value.as_str())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn custom_header_and_mime_part_reach_the_callee_as_sipp_checks_them() {
    let (sipp, port) = Sipp::uas("app-custom-parts", "uas_custom_parts.xml");
    let stack = Stack::start().await;
    let endpoint = stack.endpoint("sip:alice@127.0.0.1").await;
    let conversation = endpoint
        .new_conversation(ConversationSettings::default())
        .await
        .unwrap();
    let (call, events) = AudioVideoCall::new(&conversation).await.unwrap();
    let options = CallEstablishOptions::new()
        .header("X-Case-Id", "1234")
        .mime_part(
            CustomMimePart::new(
                "application/vnd.tandem.case+json",
                r#"{"case":1234,"queue":"billing"}"#,
            )
            .with_disposition("render;handling=optional"),
        );
    let target = format!("sip:service@127.0.0.1:{port}");
    let answered = tokio::time::timeout(STEP, call.establish(&target, options)).await;
    let answered = answered.expect("establish completes");
    if let Err(error) = &answered {
        let report = sipp.done().await.report();
        panic!("establish failed: {error:?}\n{report}");
    }
    assert_eq!(call.state().await.unwrap(), CallState::Established);
    call.terminate(CallTerminateOptions::new()).await.unwrap();
    let events = all_events(events).await;
    let done = sipp.done().await;
    assert!(done.success(), "{}", done.report());

    assert_eq!(
        states(&events),
        vec![
            (
                CallState::Establishing,
                CallStateTransitionReason::Establishing
            ),
            (
                CallState::Established,
                CallStateTransitionReason::LocalEstablished
            ),
            (
                CallState::Terminating,
                CallStateTransitionReason::LocalTerminated
            ),
            (
                CallState::Terminated,
                CallStateTransitionReason::LocalTerminated
            ),
        ],
        "{events:?}"
    );
    assert!(
        events.iter().any(|e| matches!(
            e,
            CallEvent::ProvisionalResponseReceived { status: 180, .. }
        )),
        "{events:?}"
    );
    // The flow is offered for configuration before it starts and ends with the call. SIPp
    // sends no RTP here, so the flow never becomes Active (Active: RTP arrives and we send;
    // crates/runtime/tests/media.rs and crates/daemon/tests/sipp_media.rs cover that).
    let flow: Vec<String> = events
        .iter()
        .filter_map(|e| match e {
            CallEvent::FlowConfigurationRequested { kind } => Some(format!("requested {kind:?}")),
            CallEvent::FlowStateChanged { state, .. } => Some(format!("{state:?}")),
            _ => None,
        })
        .collect();
    assert_eq!(flow, ["requested AudioVideo", "Terminated"], "{events:?}");
    assert!(
        events
            .iter()
            .any(|e| matches!(e, CallEvent::EstablishCompleted { result: Ok(_) })),
        "{events:?}"
    );
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn establish_refused_with_486_is_a_refusal_with_the_response_details() {
    let (sipp, port) = Sipp::uas("app-refused", "uas_decline_486.xml");
    let stack = Stack::start().await;
    let endpoint = stack.endpoint("sip:alice@127.0.0.1").await;
    let conversation = endpoint
        .new_conversation(ConversationSettings::default())
        .await
        .unwrap();
    let (call, events) = AudioVideoCall::new(&conversation).await.unwrap();
    let target = format!("sip:service@127.0.0.1:{port}");
    let result = tokio::time::timeout(STEP, call.establish(&target, CallEstablishOptions::new()))
        .await
        .expect("establish completes");
    let events = all_events(events).await;
    let done = sipp.done().await;
    assert!(done.success(), "{}", done.report());

    let failure = match result {
        Err(Error::Establish(failure)) => failure,
        other => panic!("want a refusal, got {other:?}"),
    };
    assert!(failure.is_refusal(), "{failure:?}");
    let EstablishFailure::Refused {
        status,
        reason_phrase,
        reason,
        headers,
    } = &failure
    else {
        panic!("want Refused, got {failure:?}");
    };
    assert_eq!(*status, 486);
    assert_eq!(reason_phrase, "Busy Here");
    assert_eq!(
        reason.as_deref(),
        Some(r#"SIP;cause=486;text="All agents busy""#)
    );
    assert_eq!(
        header(headers, "X-Busy-Until"),
        Some("17:00"),
        "{headers:?}"
    );
    assert_eq!(
        states(&events).last(),
        Some(&(
            CallState::Terminated,
            CallStateTransitionReason::RemoteDeclined {
                status: 486,
                reason_phrase: "Busy Here".into()
            }
        )),
        "{events:?}"
    );
    assert!(
        events.iter().any(|e| matches!(
            e,
            CallEvent::EstablishCompleted {
                result: Err(EstablishFailure::Refused { status: 486, .. })
            }
        )),
        "{events:?}"
    );
    stack.shutdown().await;
}

/// What the application does with each incoming call.
#[derive(Clone)]
enum Answer {
    Decline(CallDeclineOptions),
    Forward(&'static str),
}

/// Runs a SIPp UAC scenario of `calls` calls to `sip:desk@…` while the application
/// answers each incoming call with `answer`; returns each call's events.
async fn incoming_calls(
    name: &str,
    scenario: &str,
    calls: usize,
    answer: Answer,
) -> Vec<Vec<CallEvent>> {
    let stack = Stack::start().await;
    let mut endpoint = stack.endpoint("sip:desk@127.0.0.1").await;
    let app = tokio::spawn(async move {
        let mut collectors = Vec::new();
        for _ in 0..calls {
            let notice = tokio::time::timeout(STEP, endpoint.next_event())
                .await
                .expect("an incoming call");
            let Some(EndpointNotice::CallReceived(incoming)) = notice else {
                panic!("want an incoming call, got {notice:?}");
            };
            assert_eq!(incoming.info.kind, CallKind::AudioVideo);
            assert!(incoming.info.offer.is_some(), "{:?}", incoming.info);
            assert_eq!(incoming.call.state().await.unwrap(), CallState::Incoming);
            match &answer {
                Answer::Decline(options) => incoming.call.decline(options.clone()).await,
                Answer::Forward(target) => {
                    incoming
                        .call
                        .forward(target, CallForwardOptions::new())
                        .await
                }
            }
            .unwrap();
            collectors.push(tokio::spawn(all_events(incoming.events)));
        }
        let mut all = Vec::new();
        for collector in collectors {
            all.push(collector.await.unwrap());
        }
        all
    });
    let port = free_port();
    let remote = stack.addr.to_string();
    let calls_text = calls.to_string();
    let sipp = Sipp::spawn(
        name,
        scenario,
        port,
        &[&remote, "-s", "desk", "-m", &calls_text, "-r", "10"],
    );
    let done = sipp.done().await;
    assert!(done.success(), "{}", done.report());
    let events = tokio::time::timeout(STEP, app)
        .await
        .expect("the application saw every call end")
        .unwrap();
    stack.shutdown().await;
    events
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn decline_with_603_a_reason_phrase_and_a_header() {
    let options = CallDeclineOptions::new(603)
        .reason_phrase("Not Today")
        .header("X-Desk-State", "closed");
    let calls = incoming_calls(
        "app-decline-603",
        "uac_decline_603.xml",
        2,
        Answer::Decline(options),
    )
    .await;
    assert_eq!(calls.len(), 2);
    for events in calls {
        assert_eq!(
            states(&events),
            vec![
                (CallState::Incoming, CallStateTransitionReason::Incoming),
                (
                    CallState::Terminated,
                    CallStateTransitionReason::LocalDeclined { status: 603 }
                ),
            ],
            "{events:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn decline_with_486_and_a_reason_header() {
    let mut options = CallDeclineOptions::new(486);
    options.reason = Some(r#"SIP;cause=486;text="Agent busy""#.into());
    let calls = incoming_calls(
        "app-decline-486",
        "uac_decline_486.xml",
        1,
        Answer::Decline(options),
    )
    .await;
    assert_eq!(
        states(&calls[0]).last(),
        Some(&(
            CallState::Terminated,
            CallStateTransitionReason::LocalDeclined { status: 486 }
        )),
        "{calls:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forward_answers_302_with_the_target_as_contact() {
    let calls = incoming_calls(
        "app-forward-302",
        "uac_forward_302.xml",
        1,
        Answer::Forward("sip:other@127.0.0.1:5999"),
    )
    .await;
    assert_eq!(
        states(&calls[0]).last(),
        Some(&(
            CallState::Terminated,
            CallStateTransitionReason::LocalForwarded { status: 302 }
        )),
        "{calls:?}"
    );
}
