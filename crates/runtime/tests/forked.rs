//! RFC 3261 §13.2.2.4 on real sockets: a call placed through a trunk is answered by two
//! forks (SIPp, tests/sipp/uas_forked_2xx.xml); the second 2xx is acknowledged and
//! ended with BYE, and the first dialog carries on until SIPp's BYE.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use runtime::sip_core::{EndpointConfig, TrunkConfig};
use runtime::sip_transport::TransportConfig;
use runtime::{Control, RuntimeConfig};
use std::net::{SocketAddr, UdpSocket};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

fn free_udp_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn second_2xx_from_another_fork_gets_ack_then_bye() {
    let port = free_udp_port();
    let scenarios = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/sipp");
    let dir = std::env::temp_dir().join(format!("tandem-forked-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut sipp = Command::new("sipp")
        .args([
            "-sf",
            "uas_forked_2xx.xml",
            "-i",
            "127.0.0.1",
            "-p",
            &port.to_string(),
        ])
        .args(["-m", "1", "-nostdin", "-timeout", "20s", "-timeout_error"])
        .args(["-trace_msg", "-message_file"])
        .arg(dir.join("messages.log"))
        .current_dir(&scenarios)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("sipp runs (Debian package sip-tester)");
    std::thread::sleep(Duration::from_millis(300));

    let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let trunk = TrunkConfig::new("sipp", &format!("sip:127.0.0.1:{port}"), "fork.test");
    let config = RuntimeConfig {
        dns_servers: Vec::new(),
        media_address: None,
        transport: TransportConfig::new(vec![any], vec![]),
        engine: runtime::calls::EngineConfig {
            endpoint: EndpointConfig {
                trunks: vec![trunk],
                ..EndpointConfig::default()
            },
            ..runtime::calls::EngineConfig::default()
        },
    };
    let (control, control_rx) = mpsc::channel::<Control>(4);
    let (stop, stopped) = oneshot::channel::<()>();
    let (ready_tx, ready_rx) = oneshot::channel();
    let driver = tokio::spawn(runtime::run(
        config,
        control_rx,
        async {
            let _ = stopped.await;
        },
        move |addrs| {
            let _ = ready_tx.send(addrs.to_vec());
        },
    ));
    ready_rx.await.unwrap();
    control
        .send(Control::Call {
            trunk: "sipp".into(),
            to: "bob".into(),
        })
        .await
        .unwrap();

    let status = tokio::task::spawn_blocking(move || {
        let deadline = std::time::Instant::now() + Duration::from_secs(25);
        loop {
            if let Some(status) = sipp.try_wait().unwrap() {
                return status;
            }
            if std::time::Instant::now() > deadline {
                let _ = sipp.kill();
                panic!("SIPp did not finish");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    })
    .await
    .unwrap();
    let trace = std::fs::read_to_string(dir.join("messages.log")).unwrap_or_default();
    assert!(status.success(), "SIPp: {status}\n{trace}");
    // What Tandem sent: two ACKs (one per tag), one BYE, to the second fork only.
    let sent_by_tandem: Vec<&str> = trace
        .split("-----------------------------------------------")
        .filter(|block| block.contains("message received"))
        .collect();
    let acks = sent_by_tandem
        .iter()
        .filter(|b| b.contains("\nACK "))
        .count();
    let byes: Vec<_> = sent_by_tandem
        .iter()
        .filter(|b| b.contains("\nBYE "))
        .collect();
    assert_eq!(acks, 2, "{trace}");
    assert_eq!(byes.len(), 1, "{trace}");
    assert!(byes[0].contains("tag=forkB"), "{trace}");
    let _ = stop.send(());
    driver.await.unwrap().unwrap();
}
