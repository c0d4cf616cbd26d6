//! The tap's metrics, call following and HEP queue, with a Prometheus recorder local to
//! each test.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use super::*;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusRecorder};

const PEER: &str = "127.0.0.1:5070";
const US: &str = "127.0.0.1:5060";

fn flow() -> Flow {
    Flow {
        transport: Transport::Udp,
        local: US.parse().unwrap(),
        remote: PEER.parse().unwrap(),
        connection: None,
    }
}

fn invite(call_id: &str, cseq: u32) -> Bytes {
    Bytes::from(format!(
        "INVITE sip:echo@{US} SIP/2.0\r\nVia: SIP/2.0/UDP {PEER};branch=z9hG4bK{cseq}\r\n\
         From: <sip:a@{PEER}>;tag=a\r\nTo: <sip:echo@{US}>\r\nCall-ID: {call_id}\r\n\
         CSeq: {cseq} INVITE\r\nContent-Length: 0\r\n\r\n"
    ))
}

fn response(call_id: &str, cseq: u32, status: u16, method: &str) -> Transmit {
    Transmit {
        flow: flow(),
        payload: Bytes::from(format!(
            "SIP/2.0 {status} Whatever\r\nVia: SIP/2.0/UDP {PEER};branch=z9hG4bK{cseq}\r\n\
             From: <sip:a@{PEER}>;tag=a\r\nTo: <sip:echo@{US}>;tag=b\r\nCall-ID: {call_id}\r\n\
             CSeq: {cseq} {method}\r\nContent-Length: 0\r\n\r\n"
        )),
    }
}

fn value(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .map_or(0.0, |v| v.trim().parse().unwrap())
}

fn recorder() -> PrometheusRecorder {
    PrometheusBuilder::new().build_recorder()
}

#[test]
fn outcomes_of_answered_busy_cancelled_and_challenged_calls() {
    let recorder = recorder();
    metrics::with_local_recorder(&recorder, || {
        let mut tap = Observe::default();
        // answered, with a retransmitted 200 (the core counts retransmissions; the tap
        // just does not take the second 200 for another call)
        tap.received(&flow(), &invite("a", 1));
        tap.sent(&response("a", 1, 100, "INVITE"));
        tap.sent(&response("a", 1, 200, "INVITE"));
        tap.sent(&response("a", 1, 200, "INVITE"));
        // busy; its 486 was lost: the INVITE again, the 486 again: still one busy call
        tap.received(&flow(), &invite("b", 1));
        tap.sent(&response("b", 1, 486, "INVITE"));
        tap.received(&flow(), &invite("b", 1));
        tap.sent(&response("b", 1, 486, "INVITE"));
        // cancelled: the 200 to the CANCEL does not end the call, the 487 does
        tap.received(&flow(), &invite("c", 1));
        tap.sent(&response("c", 1, 200, "CANCEL"));
        tap.sent(&response("c", 1, 487, "INVITE"));
        // challenged, then the INVITE again with credentials, answered: one attempt
        tap.received(&flow(), &invite("d", 1));
        tap.sent(&response("d", 1, 401, "INVITE"));
        tap.received(&flow(), &invite("d", 2));
        tap.sent(&response("d", 2, 200, "INVITE"));
        // a retransmitted INVITE is no new attempt; still pending
        tap.received(&flow(), &invite("e", 1));
        tap.received(&flow(), &invite("e", 1));
    });
    let text = recorder.handle().render();
    for (series, want) in [
        (
            "tandem_calls_total{direction=\"in\",outcome=\"answered\"}",
            2.0,
        ),
        ("tandem_calls_total{direction=\"in\",outcome=\"busy\"}", 1.0),
        (
            "tandem_calls_total{direction=\"in\",outcome=\"cancelled\"}",
            1.0,
        ),
        (
            "tandem_calls_total{direction=\"in\",outcome=\"unauthorized\"}",
            0.0,
        ),
        ("tandem_call_attempts_total{direction=\"in\"}", 5.0),
        ("tandem_call_attempts_pending", 1.0),
        ("tandem_requests_in_total{method=\"INVITE\"}", 8.0),
        ("tandem_responses_out_total{class=\"2xx\"}", 4.0),
        ("tandem_responses_out_total{class=\"4xx\"}", 4.0),
        ("tandem_invite_first_response_seconds_count", 4.0),
        // a, b, c, d's 401 and d's 200
        ("tandem_invite_final_response_seconds_count", 5.0),
    ] {
        assert_eq!(value(&text, series), want, "{series}\n{text}");
    }
}

#[test]
fn attempts_without_response_end_as_timeout_and_unanswered_challenges_as_unauthorized() {
    let recorder = recorder();
    metrics::with_local_recorder(&recorder, || {
        let mut tap = Observe::default();
        let out = Transmit {
            flow: flow(),
            payload: invite("out-1", 1),
        };
        tap.sent(&out);
        tap.received(&flow(), &invite("in-1", 1));
        tap.sent(&response("in-1", 1, 407, "INVITE"));
        // Both older than the 40 s the tap waits.
        for p in tap.pending.values_mut() {
            p.started -= Duration::from_secs(41);
            if let Some(at) = p.challenged.as_mut() {
                *at -= Duration::from_secs(41);
            }
        }
        tap.end_turn(None);
    });
    let text = recorder.handle().render();
    assert_eq!(
        value(
            &text,
            "tandem_calls_total{direction=\"out\",outcome=\"timeout\"}"
        ),
        1.0,
        "{text}"
    );
    assert_eq!(
        value(
            &text,
            "tandem_calls_total{direction=\"in\",outcome=\"unauthorized\"}"
        ),
        1.0,
        "{text}"
    );
    assert_eq!(value(&text, "tandem_call_attempts_pending"), 0.0, "{text}");
    assert_eq!(
        value(&text, "tandem_call_attempts_total{direction=\"out\"}"),
        1.0,
        "{text}"
    );
}

#[test]
fn hep_queue_is_bounded_and_never_waits() {
    let recorder = recorder();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let collector = rt
        .block_on(tokio::net::UdpSocket::bind("127.0.0.1:0"))
        .unwrap();
    let ladder = Ladder::new(10, 10);
    let mut tap = {
        let _enter = rt.enter();
        Observe::new(ObserveConfig {
            hep: Some(HepConfig {
                collector: collector.local_addr().unwrap(),
                capture_id: 9,
                auth_key: None,
                queue: 3,
            }),
            ladder: Some(ladder.clone()),
        })
    };
    // The sender task cannot run while we do not yield: the queue fills, the rest is
    // dropped and counted, and `received` returns at once.
    metrics::with_local_recorder(&recorder, || {
        for i in 0..10 {
            tap.received(&flow(), &invite(&format!("h{i}"), 1));
        }
    });
    let text = recorder.handle().render();
    assert_eq!(value(&text, "tandem_hep_queued_total"), 3.0, "{text}");
    assert_eq!(value(&text, "tandem_hep_dropped_total"), 7.0, "{text}");
    let received = rt.block_on(async {
        let mut buf = vec![0; 4096];
        let mut n = 0;
        while let Ok(Ok(len)) =
            tokio::time::timeout(Duration::from_millis(500), collector.recv(&mut buf)).await
        {
            let d = hep::decode_fields(&buf[..len]).unwrap();
            assert_eq!(d.correlation_id, Some(format!("h{n}")));
            assert_eq!(d.capture_id, 9);
            n += 1;
        }
        n
    });
    assert_eq!(received, 3);
    // The ladder kept every call all the same.
    assert_eq!(ladder.recent().len(), 10);
    drop(tap);
}
