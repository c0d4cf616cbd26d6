//! The signalling-only B2BUA bridge, sans-IO: what `bench/run`'s "tandem-b2bua" setup
//! costs the engine alone, without sockets, threads, logging or metrics.
//!
//! A SIPp-like caller (its built-in `uac`: INVITE with SDP, ACK, BYE at once) and a
//! SIPp-like callee (`uas`: 180, 200 with SDP, 200 to BYE) are played by this program on
//! a virtual clock, one call per virtual millisecond (1,000 calls/s). It prints, per
//! bridged call: the engine's CPU time, heap allocations and bytes allocated; then, with
//! calls held (no BYE) past the INVITE transactions' Timer L/M, the heap each held
//! bridge keeps.
//!
//! Run: `cargo bench -p calls --bench bridge` (`-- 20000` for another call count,
//! `-- --flow-only` without the held calls).
//! Measured, never asserted (a test would be timing-dependent); instruction counts under
//! `valgrind --tool=callgrind` are the stable figure on a noisy machine.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use bytes::Bytes;
use calls::routing::{self, Action, Match, RingStrategy, RouteTable, Rule, Target};
use calls::sip_core::Flow;
use calls::{BridgeMode, Engine, EngineConfig};
use sip_message::Transport;
use stats_alloc::{INSTRUMENTED_SYSTEM, Region, StatsAlloc};
use std::alloc::System;
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

const TANDEM: &str = "127.0.0.4:5060";
const UAC: &str = "127.0.0.1:5061";
const UAS: &str = "127.0.0.2:5070";

const SDP: &str = "v=0\r\n\
o=user1 53655765 2353687637 IN IP4 127.0.0.1\r\n\
s=-\r\n\
c=IN IP4 127.0.0.1\r\n\
t=0 0\r\n\
m=audio 6000 RTP/AVP 0\r\n\
a=rtpmap:0 PCMU/8000\r\n";

fn engine() -> Engine {
    let mut config = EngineConfig {
        demo_users: vec![],
        ..EngineConfig::default()
    };
    config.endpoint.session_timer.enabled = false;
    let rule = Rule::new(
        "bench",
        Match {
            user: Some(routing::regex(".").unwrap()),
            ..Match::default()
        },
        Action::Bridge {
            targets: vec![Target::new("sip:${user}@127.0.0.2:5070")],
            ring: RingStrategy::Sequential,
            mode: BridgeMode::SignalingOnly,
            pass_headers: Vec::new(),
        },
    )
    .unwrap();
    config.routes = RouteTable::new(vec![rule]);
    let mut engine = Engine::new(config);
    engine
        .core()
        .set_local_addrs(vec![(Transport::Udp, TANDEM.parse().unwrap())]);
    engine
}

/// The header lines of `message` named `name` (full names only: ours and SIPp's).
fn headers<'a>(message: &'a str, name: &str) -> Vec<&'a str> {
    message
        .split("\r\n")
        .skip(1)
        .take_while(|l| !l.is_empty())
        .filter(|l| {
            l.split_once(':')
                .is_some_and(|(n, _)| n.trim().eq_ignore_ascii_case(name))
        })
        .collect()
}

fn header<'a>(message: &'a str, name: &str) -> &'a str {
    headers(message, name)
        .first()
        .copied()
        .unwrap_or_else(|| panic!("no {name} in\n{message}"))
}

fn value(line: &str) -> &str {
    line.split_once(':').map(|(_, v)| v.trim()).unwrap_or("")
}

/// A response to `request` as SIPp's uas builds it: Via, From, To (with our tag),
/// Call-ID and CSeq copied.
fn response(request: &str, status: &str, tag: &str, body: &str) -> String {
    let mut out = format!("SIP/2.0 {status}\r\n");
    for via in headers(request, "via") {
        out.push_str(via);
        out.push_str("\r\n");
    }
    out.push_str(header(request, "from"));
    out.push_str("\r\n");
    let to = header(request, "to");
    out.push_str(to);
    if !to.contains("tag=") {
        out.push_str(";tag=");
        out.push_str(tag);
    }
    out.push_str("\r\n");
    out.push_str(header(request, "call-id"));
    out.push_str("\r\n");
    out.push_str(header(request, "cseq"));
    out.push_str("\r\nContact: <sip:service@127.0.0.2:5070;transport=UDP>\r\n");
    if !body.is_empty() {
        out.push_str("Content-Type: application/sdp\r\n");
    }
    out.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
    out
}

fn invite(n: u64) -> String {
    format!(
        "INVITE sip:service@{TANDEM} SIP/2.0\r\n\
Via: SIP/2.0/UDP {UAC};branch=z9hG4bK-{n}-1-0\r\n\
From: sipp <sip:sipp@{UAC}>;tag={n}SIPpTag001\r\n\
To: service <sip:service@{TANDEM}>\r\n\
Call-ID: {n}-bench@127.0.0.1\r\n\
CSeq: 1 INVITE\r\n\
Contact: sip:sipp@{UAC}\r\n\
Max-Forwards: 70\r\n\
Subject: Performance Test\r\n\
Content-Type: application/sdp\r\n\
Content-Length: {}\r\n\r\n{SDP}",
        SDP.len()
    )
}

/// The caller's in-dialog request (ACK or BYE) after the 200 it got.
fn in_dialog(ok: &str, method: &str, cseq: u32, n: u64) -> String {
    let contact = value(header(ok, "contact"));
    let target = contact.trim_start_matches('<');
    let target = target.split('>').next().unwrap_or(target);
    format!(
        "{method} {target} SIP/2.0\r\n\
Via: SIP/2.0/UDP {UAC};branch=z9hG4bK-{n}-{cseq}-{method}\r\n\
{}\r\n{}\r\n{}\r\n\
CSeq: {cseq} {method}\r\n\
Contact: sip:sipp@{UAC}\r\n\
Max-Forwards: 70\r\n\
Content-Length: 0\r\n\r\n",
        header(ok, "from"),
        header(ok, "to"),
        header(ok, "call-id"),
    )
}

struct Run {
    engine: Engine,
    now: Instant,
    uac: SocketAddr,
    uas: SocketAddr,
    local: SocketAddr,
    /// Hang up as soon as the call is answered (SIPp `-d 0`), or hold it.
    hang_up: bool,
    completed: u64,
    answered: u64,
    /// Time and allocations inside the engine's calls only (not this program's SIPp).
    busy: Duration,
    allocations: usize,
    allocated: usize,
}

impl Run {
    fn new(hang_up: bool) -> Run {
        Run {
            engine: engine(),
            now: Instant::now(),
            uac: UAC.parse().unwrap(),
            uas: UAS.parse().unwrap(),
            local: TANDEM.parse().unwrap(),
            hang_up,
            completed: 0,
            answered: 0,
            busy: Duration::ZERO,
            allocations: 0,
            allocated: 0,
        }
    }

    fn deliver(&mut self, from: SocketAddr, text: String) {
        let flow = Flow {
            transport: Transport::Udp,
            local: self.local,
            remote: from,
            connection: None,
        };
        let data = Bytes::from(text.into_bytes());
        let now = self.now;
        self.measured(|engine| engine.handle_message(now, data, flow));
    }

    /// Runs `f` on the engine, counting its time and allocations.
    fn measured<T>(&mut self, f: impl FnOnce(&mut Engine) -> T) -> T {
        let region = Region::new(GLOBAL);
        let start = Instant::now();
        let out = f(&mut self.engine);
        self.busy += start.elapsed();
        let change = region.change();
        self.allocations += change.allocations;
        self.allocated += change.bytes_allocated;
        out
    }

    /// Plays both SIPp sides until nothing is left to send.
    fn settle(&mut self, n: u64) {
        let mut wire: VecDeque<(SocketAddr, Bytes)> = VecDeque::new();
        loop {
            self.measured(|engine| {
                while let Some(t) = engine.poll_transmit() {
                    wire.push_back((t.flow.remote, t.payload));
                }
                while engine.poll_event().is_some() {}
            });
            let Some((to, payload)) = wire.pop_front() else {
                break;
            };
            let text = String::from_utf8_lossy(&payload).into_owned();
            if to == self.uas {
                self.as_uas(&text, n);
            } else if to == self.uac {
                self.as_uac(&text, n);
            }
        }
    }

    fn as_uas(&mut self, text: &str, n: u64) {
        if text.starts_with("INVITE ") {
            let tag = format!("{n}SIPpTag012");
            let ringing = response(text, "180 Ringing", &tag, "");
            let ok = response(text, "200 OK", &tag, SDP);
            self.deliver(self.uas, ringing);
            self.deliver(self.uas, ok);
        } else if text.starts_with("BYE ") {
            let ok = response(text, "200 OK", "x", "");
            self.deliver(self.uas, ok);
        }
    }

    fn as_uac(&mut self, text: &str, n: u64) {
        let cseq = value(header(text, "cseq"));
        if text.starts_with("SIP/2.0 200") && cseq.ends_with("INVITE") {
            self.answered += 1;
            let ack = in_dialog(text, "ACK", 1, n);
            self.deliver(self.uac, ack);
            if self.hang_up {
                let bye = in_dialog(text, "BYE", 2, n);
                self.deliver(self.uac, bye);
            }
        } else if text.starts_with("SIP/2.0 200") && cseq.ends_with("BYE") {
            self.completed += 1;
        }
    }

    /// Calls `count` calls, one a millisecond.
    fn calls(&mut self, first: u64, count: u64) {
        for n in first..first + count {
            self.now += Duration::from_millis(1);
            self.timers();
            let invite = invite(n);
            self.deliver(self.uac, invite);
            self.settle(n);
        }
    }

    fn timers(&mut self) {
        while self
            .engine
            .poll_timeout()
            .is_some_and(|due| due <= self.now)
        {
            let now = self.now;
            self.measured(|engine| engine.handle_timeout(now));
            self.settle(0);
        }
    }

    /// Lets `span` of virtual time pass, firing every timer on the way.
    fn wait(&mut self, span: Duration) {
        let end = self.now + span;
        while let Some(due) = self.engine.poll_timeout()
            && due <= end
        {
            self.now = due.max(self.now);
            let now = self.now;
            self.measured(|engine| engine.handle_timeout(now));
            self.settle(0);
        }
        self.now = end;
    }

    fn live(&self) -> String {
        let s = self.engine.stats();
        let c = &s.core;
        format!(
            "calls {}, dialogs {}, transactions {}",
            s.calls,
            c.dialogs,
            c.client_invite + c.client_non_invite + c.server_invite + c.server_non_invite
        )
    }
}

fn main() {
    let count: u64 = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(20_000);

    // Warm up: the tables reach their working size.
    let mut run = Run::new(true);
    run.calls(0, 2_000);
    run.wait(Duration::from_secs(40));

    let (busy, allocations, allocated) = (run.busy, run.allocations, run.allocated);
    run.calls(1_000_000, count);
    let spent = run.busy - busy;
    let allocations = run.allocations - allocations;
    let allocated = run.allocated - allocated;
    run.wait(Duration::from_secs(64));
    assert_eq!(run.completed, count + 2_000, "every call completes");
    let per = count as f64;
    println!("signalling-only bridge, sans-IO, {count} calls (SIPp uac/uas flows, -d 0):");
    println!(
        "  engine CPU per call: {:.1} us ({:.3} s per 1,000 calls)",
        spent.as_secs_f64() * 1e6 / per,
        spent.as_secs_f64() * 1e3 / per
    );
    println!(
        "  allocations per call: {:.0} ({:.0} bytes)",
        allocations as f64 / per,
        allocated as f64 / per
    );
    println!("  after 64 s: {}", run.live());
    if std::env::args().any(|a| a == "--flow-only") {
        return;
    }

    // Held calls: RSS's lower bound is the heap they keep.
    let held: u64 = 10_000;
    drop(run);
    let mut run = Run::new(false);
    run.calls(0, 1_000);
    run.wait(Duration::from_secs(40));
    let region = Region::new(GLOBAL);
    run.calls(2_000_000, held);
    // The INVITE transactions end (Timer L/M 32 s, Timer D) and only the calls stay.
    run.wait(Duration::from_secs(40));
    let kept = region.change();
    // stats_alloc counts a realloc's growth in `bytes_allocated` already (and again in
    // `bytes_reallocated`, which is not added here).
    let net = kept.bytes_allocated as i64 - kept.bytes_deallocated as i64;
    let blocks = kept.allocations as i64 - kept.deallocations as i64;
    println!(
        "held bridges: {held} answered of {held}: {} ({})",
        run.answered - 1_000,
        run.live()
    );
    println!(
        "  heap kept per held bridge: {:.0} bytes in {:.1} blocks",
        net as f64 / held as f64,
        blocks as f64 / held as f64
    );
    if std::env::args().any(|a| a == "--leak-held") {
        // For heaptrack: what the held bridges keep shows as leaked, by call site.
        std::mem::forget(run);
    }
}
