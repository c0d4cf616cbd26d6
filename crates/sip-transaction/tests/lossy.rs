//! Two transaction layers, a UAC and a UAS with minimal TUs, joined by a
//! simulated link that drops, duplicates and reorders datagrams, on a
//! virtual clock. Hundreds of transactions over many seeds: every client
//! transaction must end with the right final response or with a timeout the
//! losses explain; the UAS must see each request once; both layers must be
//! empty at the end.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::large_enum_variant
)]

mod common;

use bytes::Bytes;
use common::*;
use sip_message::{HeaderName, Message, Method, Request, Response, Transport};
use sip_transaction::{
    RequestOutcome, ResponseOutcome, Timer, TimerConfig, TransactionEvent, TransactionKey,
    TransactionLayer, Transmit,
};
use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// xorshift64*: a tiny deterministic PRNG.
struct XorShift(u64);

impl XorShift {
    fn new(seed: u64) -> XorShift {
        XorShift(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

struct Datagram {
    at: Instant,
    seq: u64,
    to_uas: bool,
    payload: Bytes,
}

/// The network: each copy is dropped with `loss`%, duplicated with `dup`%,
/// and delayed 1..=`max_delay` ms independently (so copies reorder).
struct Link {
    rng: XorShift,
    loss: u64,
    dup: u64,
    max_delay: u64,
    queue: Vec<Datagram>,
    seq: u64,
    sent: u64,
    dropped: u64,
}

impl Link {
    fn send(&mut self, now: Instant, t: Transmit) {
        let to_uas = t.flow.remote == addr(UAS);
        let copies = if self.rng.chance(self.dup) { 2 } else { 1 };
        for _ in 0..copies {
            self.sent += 1;
            if self.rng.chance(self.loss) {
                self.dropped += 1;
                continue;
            }
            let delay = ms(1 + self.rng.below(self.max_delay));
            self.seq += 1;
            self.queue.push(Datagram {
                at: now + delay,
                seq: self.seq,
                to_uas,
                payload: t.payload.clone(),
            });
        }
    }
    fn next_at(&self) -> Option<Instant> {
        self.queue.iter().map(|d| d.at).min()
    }
    fn pop_due(&mut self, now: Instant) -> Option<Datagram> {
        let i = self
            .queue
            .iter()
            .enumerate()
            .filter(|(_, d)| d.at <= now)
            .min_by_key(|(_, d)| (d.at, d.seq))
            .map(|(i, _)| i)?;
        Some(self.queue.swap_remove(i))
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum End {
    Final(u16),
    Timeout(Timer),
    /// The UAC TU gave up on an INVITE stuck in Proceeding (RFC 3261 §9.1).
    Abandoned,
}

struct Plan {
    start: Instant,
    method: &'static str,
    branch: String,
    call_id: String,
    expected: u16,
    key: Option<TransactionKey>,
    end: Option<End>,
    terminated: bool,
    /// Responses of this transaction delivered to the UAC (status codes).
    delivered: Vec<u16>,
    /// The 2xx To header, to build ACKs.
    to_2xx: Option<Bytes>,
}

/// The UAS answers per call: INVITE → 180 then 200 (or 486 when the call
/// number is a multiple of 3); other requests → 200.
fn uas_status(call_id: &str) -> u16 {
    let n: u64 = call_id
        .rsplit('-')
        .next()
        .and_then(|s| s.parse().ok())
        .unwrap();
    if n.is_multiple_of(3) { 486 } else { 200 }
}

enum UasAction {
    Respond {
        key: TransactionKey,
        response: Response,
    },
    Retransmit2xx {
        call_id: String,
    },
}

struct Uas {
    layer: TransactionLayer,
    transport: Transport,
    actions: Vec<(Instant, UasAction)>,
    /// How many times each (Call-ID, method) came up as New.
    news: HashMap<(String, Method), usize>,
    /// 2xx the TU retransmits until the ACK (RFC 3261 §13.3.1.4).
    pending_2xx: HashMap<String, (TransactionKey, Response, Duration)>,
    /// Branches whose ACK (for a non-2xx) reached the UAS.
    acked: HashSet<String>,
    h_timeouts: usize,
    /// Requests absorbed as retransmissions.
    absorbed: usize,
}

fn call_id_of(headers: &sip_message::Headers) -> String {
    String::from_utf8_lossy(headers.get(&HeaderName::CallId).unwrap()).into_owned()
}

fn branch_of(headers: &sip_message::Headers) -> String {
    String::from_utf8_lossy(headers.top_via().unwrap().branch().unwrap()).into_owned()
}

impl Uas {
    fn on_request(&mut self, now: Instant, rng: &mut XorShift, request: Request) {
        let branch = branch_of(&request.headers);
        let is_ack = request.method == Method::Ack;
        match self
            .layer
            .handle_request(now, request, from_uac(self.transport))
        {
            RequestOutcome::New { key, request } => {
                let call_id = call_id_of(&request.headers);
                *self
                    .news
                    .entry((call_id.clone(), request.method.clone()))
                    .or_default() += 1;
                let tag = format!("uas-{call_id}");
                if request.method == Method::Invite {
                    let ringing = Response::from_request(&request, 180, Some(&tag));
                    self.actions.push((
                        now + ms(10 + rng.below(40)),
                        UasAction::Respond {
                            key: key.clone(),
                            response: ringing,
                        },
                    ));
                    let fin = Response::from_request(&request, uas_status(&call_id), Some(&tag));
                    self.actions.push((
                        now + ms(100 + rng.below(400)),
                        UasAction::Respond { key, response: fin },
                    ));
                } else {
                    let ok = Response::from_request(&request, 200, Some(&tag));
                    self.actions.push((
                        now + ms(rng.below(700)),
                        UasAction::Respond { key, response: ok },
                    ));
                }
            }
            RequestOutcome::Ack(ack) => {
                // The ACK for a 2xx: stop retransmitting it.
                self.pending_2xx.remove(&call_id_of(&ack.headers));
            }
            RequestOutcome::AckForTransaction { .. } => {
                assert!(is_ack);
                self.acked.insert(branch);
            }
            RequestOutcome::Retransmission { .. } => self.absorbed += 1,
            other => panic!("unexpected {other:?}"),
        }
    }

    fn run_due(&mut self, now: Instant, config: &TimerConfig) {
        while let Some(i) = self
            .actions
            .iter()
            .enumerate()
            .filter(|(_, (at, _))| *at <= now)
            .min_by_key(|(_, (at, _))| *at)
            .map(|(i, _)| i)
        {
            let (_, action) = self.actions.swap_remove(i);
            match action {
                UasAction::Respond { key, response } => {
                    let is_2xx = response.status / 100 == 2 && key.method() == &Method::Invite;
                    let call_id = call_id_of(&response.headers);
                    self.layer
                        .send_response(now, &key, response.clone())
                        .unwrap();
                    if is_2xx {
                        self.pending_2xx
                            .insert(call_id.clone(), (key, response, config.t1));
                        self.actions
                            .push((now + config.t1, UasAction::Retransmit2xx { call_id }));
                    }
                }
                UasAction::Retransmit2xx { call_id } => {
                    let Some((key, response, interval)) = self.pending_2xx.get_mut(&call_id) else {
                        continue; // ACKed
                    };
                    if self
                        .layer
                        .send_response(now, key, response.clone())
                        .is_err()
                    {
                        // Timer L ended the transaction: 64·T1 are over.
                        self.pending_2xx.remove(&call_id);
                        continue;
                    }
                    *interval = (*interval * 2).min(config.t2);
                    let next = now + *interval;
                    self.actions
                        .push((next, UasAction::Retransmit2xx { call_id }));
                }
            }
        }
    }

    fn next_at(&self) -> Option<Instant> {
        self.actions.iter().map(|(at, _)| *at).min()
    }
}

struct Uac {
    layer: TransactionLayer,
    transport: Transport,
    plans: Vec<Plan>,
    by_key: HashMap<TransactionKey, usize>,
    by_call: HashMap<String, usize>,
    /// When the TU gives up on an INVITE stuck in Proceeding.
    give_up_after: Duration,
}

impl Uac {
    fn next_at(&self) -> Option<Instant> {
        self.plans
            .iter()
            .filter_map(|p| match &p.key {
                None => Some(p.start),
                Some(_) if p.end.is_none() && p.method == "INVITE" => {
                    Some(p.start + self.give_up_after)
                }
                _ => None,
            })
            .min()
    }

    fn run_due(&mut self, now: Instant) {
        for i in 0..self.plans.len() {
            let p = &mut self.plans[i];
            if p.key.is_none() && p.start <= now {
                let req = request(self.transport, p.method, &p.branch, &p.call_id, 1);
                let key = self
                    .layer
                    .send_request(now, req, to_uas(self.transport))
                    .unwrap();
                p.key = Some(key.clone());
                self.by_key.insert(key, i);
            } else if p.end.is_none()
                && p.method == "INVITE"
                && p.key.is_some()
                && now >= p.start + self.give_up_after
            {
                // RFC 3261 §9.1: destroy it. Allowed only if the final
                // response never made it.
                p.end = Some(End::Abandoned);
                let key = p.key.clone().unwrap();
                self.layer.terminate(now, &key).unwrap();
            }
        }
    }

    fn send_2xx_ack(&mut self, now: Instant, i: usize) {
        let p = &self.plans[i];
        let mut ack = request(
            self.transport,
            "ACK",
            &format!("z9hG4bK-ack-{}", p.call_id),
            &p.call_id,
            1,
        );
        ack.headers.set(HeaderName::To, p.to_2xx.clone().unwrap());
        self.layer
            .send_ack(now, ack, to_uas(self.transport))
            .unwrap();
    }

    fn on_response(&mut self, now: Instant, response: Response) {
        let branch = branch_of(&response.headers);
        let call_id = call_id_of(&response.headers);
        let status = response.status;
        // Count what reached the transaction while it was alive.
        if let Some(&i) = self.by_call.get(&call_id) {
            let p = &mut self.plans[i];
            let alive = p
                .key
                .as_ref()
                .is_some_and(|k| self.layer.state(k).is_some());
            if p.branch == branch && alive {
                p.delivered.push(status);
            }
        }
        match self
            .layer
            .handle_response(now, response.clone(), to_uas(self.transport))
        {
            ResponseOutcome::Matched { .. } | ResponseOutcome::Absorbed { .. } => {}
            ResponseOutcome::Stray(r) => {
                // A 2xx retransmission after Timer M: the dialog re-ACKs.
                let i = self.by_call[&call_id];
                if r.status / 100 == 2 && self.plans[i].to_2xx.is_some() {
                    self.send_2xx_ack(now, i);
                }
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    fn on_event(&mut self, now: Instant, event: TransactionEvent) {
        match event {
            TransactionEvent::Response { key, response } => {
                let i = self.by_key[&key];
                let status = response.status;
                if status >= 200 {
                    let p = &mut self.plans[i];
                    match &p.end {
                        None => p.end = Some(End::Final(status)),
                        Some(End::Final(s)) => assert_eq!(*s, status),
                        Some(e) => panic!("final after {e:?}"),
                    }
                    if status < 300 && key.method() == &Method::Invite {
                        p.to_2xx = response.headers.get(&HeaderName::To).cloned();
                        self.send_2xx_ack(now, i);
                    }
                }
            }
            TransactionEvent::Timeout { key, timer } => {
                let p = &mut self.plans[self.by_key[&key]];
                assert!(p.end.is_none(), "timeout after {:?}", p.end);
                p.end = Some(End::Timeout(timer));
            }
            TransactionEvent::Terminated { key } => {
                self.plans[self.by_key[&key]].terminated = true;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
}

struct Outcome {
    finals: usize,
    timeouts: usize,
    abandoned: usize,
    sent: u64,
    dropped: u64,
}

fn simulate(seed: u64, transactions: usize, loss: u64, transport: Transport) -> Outcome {
    let reliable = transport.is_reliable();
    let start = Instant::now();
    let config = TimerConfig::default();
    let mut rng = XorShift::new(seed);
    let mut link = Link {
        rng: XorShift::new(seed ^ 0xABCD),
        loss: if reliable { 0 } else { loss },
        dup: if reliable { 0 } else { 10 },
        max_delay: 150,
        queue: Vec::new(),
        seq: 0,
        sent: 0,
        dropped: 0,
    };
    let mut uac = Uac {
        layer: TransactionLayer::new(config),
        transport,
        plans: Vec::new(),
        by_key: HashMap::new(),
        by_call: HashMap::new(),
        give_up_after: config.t1_x64() * 3,
    };
    let mut uas = Uas {
        layer: TransactionLayer::new(config),
        transport,
        actions: Vec::new(),
        news: HashMap::new(),
        pending_2xx: HashMap::new(),
        acked: HashSet::new(),
        h_timeouts: 0,
        absorbed: 0,
    };
    for n in 0..transactions {
        let method = match n % 4 {
            0 | 2 => "INVITE",
            1 => "OPTIONS",
            _ => "MESSAGE",
        };
        let call_id = format!("call-{seed}-{n}");
        let expected = if method == "INVITE" {
            uas_status(&call_id)
        } else {
            200
        };
        uac.by_call.insert(call_id.clone(), n);
        uac.plans.push(Plan {
            start: start + ms(rng.below(20_000)),
            method,
            branch: format!("z9hG4bK-{seed}-{n}"),
            call_id,
            expected,
            key: None,
            end: None,
            terminated: false,
            delivered: Vec::new(),
            to_2xx: None,
        });
    }

    let mut now = start;
    let mut steps = 0u64;
    loop {
        steps += 1;
        assert!(steps < 10_000_000, "simulation does not converge");
        let next = [
            uac.layer.poll_timeout(),
            uas.layer.poll_timeout(),
            link.next_at(),
            uac.next_at(),
            uas.next_at(),
        ]
        .into_iter()
        .flatten()
        .min();
        let Some(next) = next else { break };
        assert!(next >= now, "time runs forward");
        now = next;

        uac.layer.handle_timeout(now);
        uas.layer.handle_timeout(now);
        while let Some(d) = link.pop_due(now) {
            match Message::parse(d.payload).unwrap() {
                Message::Request(r) => {
                    assert!(d.to_uas);
                    uas.on_request(now, &mut rng, r);
                }
                Message::Response(r) => {
                    assert!(!d.to_uas);
                    uac.on_response(now, r);
                }
            }
        }
        uac.run_due(now);
        uas.run_due(now, &config);
        // Drain until quiet: events may make the TUs send.
        loop {
            let mut busy = false;
            while let Some(e) = uac.layer.poll_event() {
                busy = true;
                uac.on_event(now, e);
            }
            while let Some(e) = uas.layer.poll_event() {
                busy = true;
                match e {
                    TransactionEvent::Timeout { key, timer } => {
                        assert_eq!(timer, Timer::H);
                        // Explained only if no ACK for it arrived.
                        assert!(!uas.acked.contains(
                            &String::from_utf8_lossy(key.branch().unwrap()).into_owned()
                        ));
                        uas.h_timeouts += 1;
                    }
                    TransactionEvent::Terminated { .. } => {}
                    other => panic!("unexpected UAS event {other:?}"),
                }
            }
            for layer in [&mut uac.layer, &mut uas.layer] {
                while let Some(t) = layer.poll_transmit() {
                    busy = true;
                    link.send(now, t);
                }
            }
            if !busy {
                break;
            }
        }
    }

    // Both layers are empty once D, J, K, L, M (and I) have run.
    assert!(uac.layer.is_empty(), "UAC left {:?}", uac.layer.stats());
    assert!(uas.layer.is_empty(), "UAS left {:?}", uas.layer.stats());
    assert_eq!(uac.layer.stats().total(), 0);
    assert_eq!(uas.layer.stats().total(), 0);
    assert!(uas.pending_2xx.is_empty());
    if !reliable && loss > 0 {
        assert!(
            uas.absorbed > 0,
            "retransmissions reached the UAS and were absorbed"
        );
    }

    let mut out = Outcome {
        finals: 0,
        timeouts: 0,
        abandoned: 0,
        sent: link.sent,
        dropped: link.dropped,
    };
    for p in &uac.plans {
        assert!(p.terminated, "{} never terminated", p.branch);
        let method = Method::parse(p.method.as_bytes()).unwrap();
        let news = uas
            .news
            .get(&(p.call_id.clone(), method))
            .copied()
            .unwrap_or(0);
        assert!(
            news <= 1,
            "{}: UAS saw the request {news} times as new",
            p.branch
        );
        match p.end.clone().unwrap() {
            End::Final(status) => {
                assert_eq!(status, p.expected, "{}", p.branch);
                assert_eq!(news, 1, "{}: a final without the UAS seeing it", p.branch);
                out.finals += 1;
            }
            End::Timeout(Timer::B) => {
                assert_eq!(p.method, "INVITE");
                // Timer B only runs in Calling: no response at all arrived.
                assert!(
                    p.delivered.is_empty(),
                    "{}: B after {:?}",
                    p.branch,
                    p.delivered
                );
                out.timeouts += 1;
            }
            End::Timeout(Timer::F) => {
                assert_ne!(p.method, "INVITE");
                assert!(
                    p.delivered.iter().all(|s| *s < 200),
                    "{}: F after {:?}",
                    p.branch,
                    p.delivered
                );
                out.timeouts += 1;
            }
            End::Abandoned => {
                assert!(
                    p.delivered.iter().all(|s| *s < 200),
                    "{}: abandoned after {:?}",
                    p.branch,
                    p.delivered
                );
                out.abandoned += 1;
            }
            End::Timeout(t) => panic!("client timeout by Timer {t:?}"),
        }
    }
    out
}

#[test]
fn lossy_udp_many_seeds() {
    let (mut finals, mut timeouts, mut abandoned, mut total) = (0, 0, 0, 0);
    let (mut sent, mut dropped) = (0, 0);
    for seed in 1..=40 {
        let o = simulate(seed, 30, 20, Transport::Udp);
        finals += o.finals;
        timeouts += o.timeouts;
        abandoned += o.abandoned;
        total += 30;
        sent += o.sent;
        dropped += o.dropped;
    }
    println!(
        "20% loss: {finals} finals, {timeouts} timeouts, {abandoned} abandoned of {total}; {dropped}/{sent} datagrams dropped"
    );
    assert_eq!(finals + timeouts + abandoned, total);
    // At 20 % loss a transaction almost never loses every retransmission.
    assert!(finals * 100 >= total * 99, "{finals}/{total} finals");
    assert!(
        dropped * 100 >= sent * 15,
        "the link did drop: {dropped}/{sent}"
    );
}

#[test]
fn very_lossy_udp_timeouts_are_explained() {
    let (mut finals, mut failed, mut total) = (0, 0, 0);
    for seed in 100..=115 {
        let o = simulate(seed, 30, 60, Transport::Udp);
        finals += o.finals;
        failed += o.timeouts + o.abandoned;
        total += 30;
    }
    println!("60% loss: {finals} finals, {failed} timeouts or abandoned of {total}");
    assert_eq!(finals + failed, total);
    assert!(finals > 0);
    assert!(failed > 0, "60 % loss should defeat some transaction");
}

#[test]
fn reliable_transport_run() {
    // No loss and no duplicates (a stream), only delays: every transaction
    // ends with its final response and D, I, J, K are zero.
    for seed in 200..=205 {
        let o = simulate(seed, 40, 0, Transport::Tcp);
        assert_eq!(o.finals, 40);
    }
}
