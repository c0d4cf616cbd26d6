//! An outgoing instant messaging call: an INVITE with an `m=message` SDP (as Lync
//! does), one message and its delivery result, the echo coming back, hang up.
//!
//! ```sh
//! cargo run --release -p tandem -- run          # the daemon, with its demo user `echo`
//! cargo run -p runtime --example im_call -- sip:echo@127.0.0.1:5060
//! ```

use runtime::RuntimeConfig;
use runtime::app::InstantMessagingCall;
use runtime::calls::{
    ApplicationEndpointSettings, CallEstablishOptions, CallEvent, CallTerminateOptions,
    ConversationSettings, DeliveryResult, EngineConfig, InstantMessage, MessageOptions, Priority,
};
use runtime::sip_transport::TransportConfig;
use std::time::Duration;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let target = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "sip:echo@127.0.0.1:5060".into());
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
            subject: Some("Where is my order?".into()),
            priority: Priority::Normal,
            impersonation: None,
        })
        .await?;
    let (call, mut events) = InstantMessagingCall::new(&conversation).await?;
    call.establish(
        &target,
        CallEstablishOptions::new().first_message(InstantMessage::text("Hello!")),
    )
    .await?;
    println!("IM call established");

    let result = call
        .send_instant_message(
            InstantMessage::text("Is anyone there?"),
            MessageOptions::default(),
        )
        .await?;
    match result {
        DeliveryResult::Delivered => println!("message delivered"),
        DeliveryResult::Failed { status } => println!("message not delivered: {status}"),
    }

    // Wait (a little) for the echo.
    let echo = tokio::time::timeout(Duration::from_secs(5), async {
        while let Some(event) = events.next().await {
            if let CallEvent::MessageReceived {
                content_type, body, ..
            } = event
            {
                return Some((content_type, body));
            }
        }
        None
    })
    .await;
    match echo {
        Ok(Some((content_type, body))) => println!(
            "message received ({content_type}): {}",
            String::from_utf8_lossy(&body)
        ),
        _ => println!("no message came back"),
    }
    call.terminate(CallTerminateOptions::new()).await?;
    while let Some(event) = events.next().await {
        if let CallEvent::StateChanged { state, reason, .. } = event {
            println!("call state: {state} ({reason:?})");
        }
    }
    running.stop().await?;
    Ok(())
}
