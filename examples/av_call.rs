//! An outgoing audio/video call, as in UCMA's "establishing an outgoing call" sample:
//! register for the call's events before `establish`, attach a tone to the flow, establish
//! with custom headers and a custom MIME part, print every state and flow change and the
//! media statistics, hang up.
//!
//! ```sh
//! cargo run --release -p tandem -- run          # the daemon, with its demo user `echo`
//! cargo run -p runtime --example av_call -- sip:echo@127.0.0.1:5060
//! ```

use runtime::RuntimeConfig;
use runtime::app::{AudioVideoCall, Error};
use runtime::calls::{
    ApplicationEndpointSettings, CallEstablishOptions, CallEvent, CallTerminateOptions,
    ConversationSettings, CustomMimePart, EngineConfig, Priority,
};
use runtime::media::ToneSpec;
use runtime::sip_transport::TransportConfig;
use std::time::Duration;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let target = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "sip:echo@127.0.0.1:5060".into());

    // Our own SIP stack, on a free loopback port, with no demo users of its own.
    let config = RuntimeConfig {
        transport: TransportConfig::new(vec!["127.0.0.1:0".parse()?], vec![]),
        engine: EngineConfig {
            demo_users: Vec::new(),
            ..EngineConfig::default()
        },
        dns_servers: Vec::new(),
        media_address: None,
    };
    let running = runtime::start(config).await?;
    let tandem = running.tandem.clone();

    let endpoint = tandem
        .add_application_endpoint(ApplicationEndpointSettings::new("sip:alice@127.0.0.1"))
        .await?;
    let conversation = endpoint
        .new_conversation(ConversationSettings {
            subject: Some("Order 1234".into()),
            priority: Priority::Urgent,
            impersonation: None,
        })
        .await?;

    // The call and its event stream come together: no event can be missed.
    let (call, mut events) = AudioVideoCall::new(&conversation).await?;
    // The flow can be configured before media starts: a 440 Hz tone at -16 dBm0 plays as
    // soon as RTP flows.
    call.flow()
        .play_tone(ToneSpec::single(440.0, -16.0, None))
        .await?;
    let printer = tokio::spawn(async move {
        while let Some(event) = events.next().await {
            print_event(&event);
        }
    });

    let options = CallEstablishOptions::new()
        .header("X-Case-Id", "1234")
        .mime_part(
            CustomMimePart::new(
                "application/vnd.tandem.case+json",
                r#"{"case":1234,"queue":"billing"}"#,
            )
            .with_disposition("render;handling=optional"),
        )
        .max_establish_time(Duration::from_secs(30));
    match call.establish(&target, options).await {
        Ok(answer) => {
            println!("established ({} headers in the 200)", answer.headers.len());
            tokio::time::sleep(Duration::from_secs(1)).await;
            match call.flow().stats().await {
                Ok(stats) => println!(
                    "media: {} packets sent, {} received, {} lost, jitter {:.1} ms",
                    stats.packets_sent,
                    stats.received.packets_received,
                    stats.received.packets_lost,
                    stats.received.jitter_ms
                ),
                Err(error) => println!("media: {error}"),
            }
            call.terminate(CallTerminateOptions::new()).await?;
        }
        Err(Error::Establish(failure)) if failure.is_refusal() => {
            println!("the remote side refused: {failure:?}");
        }
        Err(Error::Establish(failure)) => println!("network or media failure: {failure:?}"),
        Err(other) => return Err(other.into()),
    }
    // The stream ends after `Terminated`.
    printer.await?;
    running.stop().await?;
    Ok(())
}

fn print_event(event: &CallEvent) {
    match event {
        CallEvent::StateChanged {
            previous,
            state,
            reason,
        } => println!("call state: {previous} -> {state} ({reason:?})"),
        CallEvent::ProvisionalResponseReceived {
            status,
            reason_phrase,
            ..
        } => println!("provisional: {status} {reason_phrase}"),
        CallEvent::FlowConfigurationRequested { kind } => {
            println!("flow configuration requested ({kind:?})");
        }
        CallEvent::FlowStateChanged { previous, state } => {
            println!("flow state: {previous:?} -> {state:?}");
        }
        CallEvent::FlowConfigurationChanged { configuration } => {
            println!("flow configuration: {configuration:?}");
        }
        CallEvent::EstablishCompleted { result } => match result {
            Ok(_) => println!("establish completed"),
            Err(failure) => println!("establish failed: {failure:?}"),
        },
        other => println!("{other:?}"),
    }
}
