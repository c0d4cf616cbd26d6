//! The ring of recent calls behind the daemon's call ladder page: the SIP messages of
//! the last calls (by Call-ID), as they were received and sent, in memory and bounded.

use bytes::Bytes;
use sip_message::Transport;
use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::SystemTime;

/// Received or sent by us.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    In,
    Out,
}

/// One message of a call, as it crossed the socket.
#[derive(Debug, Clone)]
pub struct CapturedMessage {
    pub at: SystemTime,
    pub direction: Direction,
    pub transport: Transport,
    pub src: SocketAddr,
    pub dst: SocketAddr,
    /// The method, or the status code and reason phrase.
    pub label: String,
    /// The whole message as it was on the wire.
    pub payload: Bytes,
}

/// A recent call.
#[derive(Debug, Clone)]
pub struct CallRecord {
    pub call_id: String,
    pub started: SystemTime,
    /// The From and To header fields of its first INVITE, as written.
    pub from: String,
    pub to: String,
    /// How the first INVITE ended (`answered`, `busy`...), once it has.
    pub outcome: Option<&'static str>,
    /// Received or sent first.
    pub direction: Direction,
    pub messages: Vec<CapturedMessage>,
    /// Messages not kept because the call had its fill.
    pub messages_dropped: usize,
    /// The Call-IDs of the other legs of the same back-to-back call.
    pub related: Vec<String>,
}

#[derive(Debug)]
struct Ring {
    max_calls: usize,
    max_messages: usize,
    calls: HashMap<String, CallRecord>,
    order: VecDeque<String>,
    /// The bytes of the messages and Call-IDs kept (bounded by [`MAX_BYTES`]).
    bytes: usize,
}

/// The most bytes of messages the ring keeps: beyond it the oldest calls go, whatever
/// the counts (a peer sending 64 KB datagrams must not fill gigabytes).
pub const MAX_BYTES: usize = 64 * 1024 * 1024;

/// A message kept is cut to this many bytes (a ladder shows headers; a huge body is
/// noted as cut).
pub const MAX_MESSAGE_BYTES: usize = 16 * 1024;

/// What a call's record weighs in the ring.
fn weight(call: &CallRecord) -> usize {
    call.call_id.len()
        + call.from.len()
        + call.to.len()
        + call
            .messages
            .iter()
            .map(|m| m.payload.len() + m.label.len())
            .sum::<usize>()
}

/// A shared handle on the ring: the driver writes, the admin page reads.
#[derive(Debug, Clone)]
pub struct Ladder {
    inner: Arc<Mutex<Ring>>,
}

impl Default for Ladder {
    fn default() -> Self {
        Ladder::new(200, 200)
    }
}

impl Ladder {
    /// Keeps the last `max_calls` calls, up to `max_messages` messages each.
    pub fn new(max_calls: usize, max_messages: usize) -> Ladder {
        Ladder {
            inner: Arc::new(Mutex::new(Ring {
                max_calls: max_calls.max(1),
                max_messages: max_messages.max(1),
                calls: HashMap::new(),
                order: VecDeque::new(),
                bytes: 0,
            })),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Ring> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The calls kept, newest first, without their messages (built field by field: the
    /// driver waits on this lock, so nothing is copied that is thrown away).
    pub fn recent(&self) -> Vec<CallRecord> {
        let ring = self.lock();
        ring.order
            .iter()
            .rev()
            .filter_map(|id| ring.calls.get(id))
            .map(|c| CallRecord {
                call_id: c.call_id.clone(),
                started: c.started,
                from: c.from.clone(),
                to: c.to.clone(),
                outcome: c.outcome,
                direction: c.direction,
                messages: Vec::new(),
                messages_dropped: c.messages_dropped,
                related: c.related.clone(),
            })
            .collect()
    }

    /// A call with its messages.
    pub fn call(&self, call_id: &str) -> Option<CallRecord> {
        self.lock().calls.get(call_id).cloned()
    }

    /// Adds a message; `start` (an INVITE outside a dialog) opens a record for a Call-ID
    /// not yet kept, else a message of an unknown Call-ID is not kept.
    pub(crate) fn record(
        &self,
        call_id: &str,
        start: Option<(&str, &str)>,
        message: CapturedMessage,
    ) {
        let mut message = message;
        if message.payload.len() > MAX_MESSAGE_BYTES {
            // A copy: a slice would keep the whole datagram's buffer alive.
            message.payload = Bytes::copy_from_slice(
                message.payload.get(..MAX_MESSAGE_BYTES).unwrap_or_default(),
            );
            message.label.push_str(" (cut)");
        }
        let added = message.payload.len() + message.label.len();
        let mut ring = self.lock();
        let max_messages = ring.max_messages;
        if let Some(call) = ring.calls.get_mut(call_id) {
            if call.messages.len() < max_messages {
                call.messages.push(message);
                ring.bytes += added;
                ring.evict(Some(call_id));
            } else {
                call.messages_dropped += 1;
            }
            return;
        }
        let Some((from, to)) = start else { return };
        while ring.order.len() >= ring.max_calls {
            if !ring.evict_oldest() {
                break;
            }
        }
        ring.bytes += added + call_id.len() + from.len() + to.len();
        ring.order.push_back(call_id.to_owned());
        ring.calls.insert(
            call_id.to_owned(),
            CallRecord {
                call_id: call_id.to_owned(),
                started: message.at,
                from: from.to_owned(),
                to: to.to_owned(),
                outcome: None,
                direction: message.direction,
                messages: vec![message],
                messages_dropped: 0,
                related: Vec::new(),
            },
        );
        ring.evict(Some(call_id));
    }

    pub(crate) fn set_outcome(&self, call_id: &str, outcome: &'static str) {
        if let Some(call) = self.lock().calls.get_mut(call_id) {
            call.outcome.get_or_insert(outcome);
        }
    }

    /// Notes that two Call-IDs are the legs of one back-to-back call.
    pub(crate) fn link(&self, a: &str, b: &str) {
        let mut ring = self.lock();
        for (this, other) in [(a, b), (b, a)] {
            if let Some(call) = ring.calls.get_mut(this)
                && !call.related.iter().any(|r| r == other)
            {
                call.related.push(other.to_owned());
            }
        }
    }
}

impl Ring {
    /// Drops the oldest call; whether there was one.
    fn evict_oldest(&mut self) -> bool {
        let Some(old) = self.order.pop_front() else {
            return false;
        };
        if let Some(call) = self.calls.remove(&old) {
            self.bytes = self.bytes.saturating_sub(weight(&call));
        }
        true
    }

    /// Drops the oldest calls while the ring weighs more than [`MAX_BYTES`], never
    /// `keep` (the call just written).
    fn evict(&mut self, keep: Option<&str>) {
        while self.bytes > MAX_BYTES {
            if self.order.front().map(String::as_str) == keep || !self.evict_oldest() {
                break;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing
    )]
    use super::*;

    fn message(label: &str) -> CapturedMessage {
        CapturedMessage {
            at: SystemTime::now(),
            direction: Direction::In,
            transport: Transport::Udp,
            src: "127.0.0.1:1".parse().unwrap(),
            dst: "127.0.0.1:2".parse().unwrap(),
            label: label.to_owned(),
            payload: Bytes::from_static(b"x"),
        }
    }

    #[test]
    fn bounded_in_bytes_and_large_messages_are_cut() {
        let ladder = Ladder::new(10_000, 10);
        let big = Bytes::from(vec![b'x'; 60_000]);
        for n in 0..10_000 {
            let mut m = message("INVITE");
            m.payload = big.clone();
            ladder.record(&format!("call-{n}"), Some(("f", "t")), m);
        }
        let kept = ladder.recent();
        // Each message cut to 16 KiB: at most 64 MiB of them, the newest kept.
        assert!(kept.len() < 10_000 && kept.len() >= 4000, "{}", kept.len());
        assert_eq!(kept[0].call_id, "call-9999");
        let last = ladder.call("call-9999").unwrap();
        assert_eq!(last.messages[0].payload.len(), MAX_MESSAGE_BYTES);
        assert!(last.messages[0].label.ends_with("(cut)"));
        let ring = ladder.lock();
        assert!(ring.bytes <= MAX_BYTES, "{}", ring.bytes);
        let counted: usize = ring.calls.values().map(weight).sum();
        assert_eq!(ring.bytes, counted, "the running total is the sum");
    }

    #[test]
    fn bounded_in_calls_and_messages() {
        let ladder = Ladder::new(2, 3);
        ladder.record("a", None, message("INVITE"));
        assert!(ladder.call("a").is_none(), "no record without a start");
        for id in ["a", "b", "c"] {
            ladder.record(id, Some(("f", "t")), message("INVITE"));
        }
        let ids: Vec<String> = ladder.recent().into_iter().map(|c| c.call_id).collect();
        assert_eq!(ids, ["c", "b"], "newest first, the oldest evicted");
        for label in ["100", "200", "ACK", "BYE"] {
            ladder.record("c", None, message(label));
        }
        let c = ladder.call("c").unwrap();
        let labels: Vec<&str> = c.messages.iter().map(|m| m.label.as_str()).collect();
        assert_eq!(labels, ["INVITE", "100", "200"]);
        assert_eq!(c.messages_dropped, 2);
        ladder.set_outcome("c", "answered");
        ladder.set_outcome("c", "failed");
        ladder.link("b", "c");
        let c = ladder.call("c").unwrap();
        assert_eq!(c.outcome, Some("answered"));
        assert_eq!(c.related, ["b"]);
        assert_eq!(ladder.call("b").unwrap().related, ["c"]);
    }
}
