//! The call ladder pages of the admin listener: the list of recent calls and one call's
//! SIP messages as a ladder diagram (inline SVG, no script). Everything that came from
//! the network (addresses aside: headers, labels, payloads) is HTML-escaped.

use runtime::observe::ladder::{CallRecord, CapturedMessage, Direction};
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::time::{SystemTime, UNIX_EPOCH};

/// Escapes text for HTML element content and quoted attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c if c.is_control() && c != '\n' && c != '\r' && c != '\t' => {
                let _ = write!(out, "&#{};", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out
}

/// Percent-encodes a path segment (RFC 3986 §2.1): unreserved characters stay.
pub fn path_segment(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// `YYYY-MM-DD HH:MM:SS.mmm` UTC.
pub fn utc(at: SystemTime) -> String {
    let since = at.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Civil from days (Howard Hinnant's algorithm), for 1970 onwards.
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}.{:03}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        since.subsec_millis()
    )
}

const STYLE: &str = "body{font-family:sans-serif;margin:1em;color:#222;background:#fff}\
table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:2px 8px;text-align:left}\
pre{background:#f4f4f4;padding:6px;border-left:4px solid #4a7;white-space:pre-wrap;word-break:break-all}\
pre:target{border-left-color:#e60;background:#fff3e0}\
.lane{stroke:#888;stroke-dasharray:4 3}.arrow{stroke:#2a5db0;stroke-width:2}\
.out .arrow{stroke:#2a8a3a}.label{font:13px monospace;fill:#111}\
.time{font:11px monospace;fill:#666}.addr{font:12px monospace;fill:#000}";

fn page(title: &str, body: &str) -> String {
    format!(
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>{}</title>\
         <style>{STYLE}</style></head><body>\n{body}</body></html>\n",
        escape(title)
    )
}

/// `GET /calls`: the recent calls, newest first.
pub fn calls_page(calls: &[CallRecord]) -> String {
    let mut body = String::from(
        "<h1>Recent calls</h1>\n<table>\n<tr><th>time (UTC)</th><th>direction</th><th>from</th><th>to</th><th>outcome</th><th>call</th></tr>\n",
    );
    for call in calls {
        let _ = writeln!(
            body,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td><a href=\"/calls/{}\">{}</a></td></tr>",
            utc(call.started),
            if call.direction == Direction::In {
                "in"
            } else {
                "out"
            },
            escape(&call.from),
            escape(&call.to),
            call.outcome.unwrap_or("…"),
            path_segment(&call.call_id),
            escape(&call.call_id),
        );
    }
    body.push_str("</table>\n");
    if calls.is_empty() {
        body.push_str("<p>No calls yet.</p>\n");
    }
    page("Tandem: recent calls", &body)
}

const LANE: usize = 240;
const MARGIN: usize = 130;
const TOP: usize = 60;
const STEP: usize = 44;

/// `GET /calls/{call_id}`: the ladder. One lane per address, in order of appearance; one
/// arrow per message, labelled with its method or status and its time since the first;
/// hovering shows the message, clicking jumps to it below the diagram.
pub fn ladder_page(call: &CallRecord) -> String {
    let mut lanes: Vec<SocketAddr> = Vec::new();
    for m in &call.messages {
        for a in [m.src, m.dst] {
            if !lanes.contains(&a) {
                lanes.push(a);
            }
        }
    }
    let x = |a: SocketAddr| MARGIN + LANE * lanes.iter().position(|l| *l == a).unwrap_or(0);
    let width = MARGIN * 2 + LANE * lanes.len().saturating_sub(1).max(1);
    let height = TOP + STEP * (call.messages.len() + 1);
    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{height}\" \
         viewBox=\"0 0 {width} {height}\" role=\"img\" aria-label=\"SIP ladder\">\n\
         <defs><marker id=\"head\" viewBox=\"0 0 10 10\" refX=\"10\" refY=\"5\" markerWidth=\"8\" \
         markerHeight=\"8\" orient=\"auto-start-reverse\"><path d=\"M0,0 L10,5 L0,10 z\" fill=\"#333\"/></marker></defs>\n"
    );
    for lane in &lanes {
        let lx = x(*lane);
        let _ = writeln!(
            svg,
            "<text class=\"addr\" x=\"{lx}\" y=\"24\" text-anchor=\"middle\">{}</text>\
             <line class=\"lane\" x1=\"{lx}\" y1=\"34\" x2=\"{lx}\" y2=\"{}\"/>",
            escape(&lane.to_string()),
            height - 10
        );
    }
    let first = call.messages.first().map_or(call.started, |m| m.at);
    for (i, m) in call.messages.iter().enumerate() {
        let y = TOP + STEP * i + STEP / 2;
        let (x1, x2) = (x(m.src), x(m.dst));
        let offset = m.at.duration_since(first).unwrap_or_default().as_secs_f64();
        let class = if m.direction == Direction::In {
            "msg in"
        } else {
            "msg out"
        };
        let mid = (x1 + x2) / 2;
        let _ = writeln!(
            svg,
            "<a href=\"#m{i}\"><g class=\"{class}\"><title>{}</title>\
             <line class=\"arrow\" x1=\"{x1}\" y1=\"{y}\" x2=\"{x2}\" y2=\"{y}\" marker-end=\"url(#head)\"/>\
             <text class=\"label\" x=\"{mid}\" y=\"{}\" text-anchor=\"middle\">{}</text>\
             <text class=\"time\" x=\"6\" y=\"{}\">+{offset:.3}s</text></g></a>",
            escape(&String::from_utf8_lossy(&m.payload)),
            y - 6,
            escape(&m.label),
            y + 4,
        );
    }
    svg.push_str("</svg>\n");
    let mut body = format!(
        "<h1>Call {}</h1>\n<p><a href=\"/calls\">all calls</a> · from {} to {} · {} · outcome: {}</p>\n",
        escape(&call.call_id),
        escape(&call.from),
        escape(&call.to),
        utc(call.started),
        call.outcome.unwrap_or("…"),
    );
    if !call.related.is_empty() {
        body.push_str("<p>Other legs of this back-to-back call:");
        for other in &call.related {
            let _ = write!(
                body,
                " <a class=\"leg\" href=\"/calls/{}\">{}</a>",
                path_segment(other),
                escape(other)
            );
        }
        body.push_str("</p>\n");
    }
    body.push_str(&svg);
    if call.messages_dropped > 0 {
        let _ = writeln!(
            body,
            "<p>{} later messages were not kept.</p>",
            call.messages_dropped
        );
    }
    body.push_str("<h2>Messages</h2>\n");
    for (i, m) in call.messages.iter().enumerate() {
        let _ = writeln!(body, "{}", message_block(i, m));
    }
    page(&format!("Tandem: call {}", call.call_id), &body)
}

fn message_block(i: usize, m: &CapturedMessage) -> String {
    format!(
        "<pre id=\"m{i}\">{} {} {} → {} ({})\n\n{}</pre>",
        utc(m.at),
        m.transport.as_str(),
        m.src,
        m.dst,
        escape(&m.label),
        escape(&String::from_utf8_lossy(&m.payload)),
    )
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
    use bytes::Bytes;
    use std::time::Duration;

    fn message(label: &str, src: &str, dst: &str, payload: &str, ms: u64) -> CapturedMessage {
        CapturedMessage {
            at: UNIX_EPOCH + Duration::from_millis(1_700_000_000_000 + ms),
            direction: if src.ends_with(":5060") {
                Direction::Out
            } else {
                Direction::In
            },
            transport: sip_message::Transport::Udp,
            src: src.parse().unwrap(),
            dst: dst.parse().unwrap(),
            label: label.to_owned(),
            payload: Bytes::from(payload.to_owned()),
        }
    }

    fn call() -> CallRecord {
        let (a, b) = ("127.0.0.1:5070", "127.0.0.1:5060");
        CallRecord {
            call_id: "x<script>@h".to_owned(),
            started: UNIX_EPOCH + Duration::from_secs(1_700_000_000),
            from: "\"Eve <img src=x onerror=alert(1)>\" <sip:eve@h>".to_owned(),
            to: "<sip:echo@h>".to_owned(),
            outcome: Some("answered"),
            direction: Direction::In,
            messages: vec![
                message(
                    "INVITE",
                    a,
                    b,
                    "INVITE sip:echo@h SIP/2.0\r\nSubject: </pre><script>x</script>",
                    0,
                ),
                message("100 Trying", b, a, "SIP/2.0 100 Trying", 1),
                message("180 Ringing", b, a, "SIP/2.0 180 Ringing", 2),
                message("200 OK", b, a, "SIP/2.0 200 OK", 1003),
                message("ACK", a, b, "ACK", 1010),
                message("BYE", a, b, "BYE", 2000),
                message("200 <b>OK</b>", b, a, "SIP/2.0 200 OK", 2001),
            ],
            messages_dropped: 0,
            related: vec!["leg b&1".to_owned()],
        }
    }

    #[test]
    fn nothing_from_the_network_is_markup() {
        let html = ladder_page(&call());
        assert!(!html.contains("<script"), "{html}");
        assert!(!html.contains("<img"), "{html}");
        assert!(!html.contains("<b>"), "{html}");
        assert!(html.contains("&lt;/pre&gt;&lt;script&gt;x&lt;/script&gt;"));
        assert!(html.contains("x&lt;script&gt;@h"));
        assert!(html.contains("href=\"/calls/leg%20b%261\""));
        assert!(html.contains(">leg b&amp;1</a>"));
        let list = calls_page(&[call()]);
        assert!(
            !list.contains("<script") && !list.contains("<img"),
            "{list}"
        );
        assert!(list.contains("href=\"/calls/x%3Cscript%3E%40h\""));
    }

    #[test]
    fn arrows_in_order_between_the_lanes() {
        let html = ladder_page(&call());
        let labels: Vec<&str> = html
            .split("<text class=\"label\"")
            .skip(1)
            .map(|t| t.split_once('>').unwrap().1.split_once('<').unwrap().0)
            .collect();
        assert_eq!(
            labels,
            [
                "INVITE",
                "100 Trying",
                "180 Ringing",
                "200 OK",
                "ACK",
                "BYE",
                "200 &lt;b&gt;OK&lt;/b&gt;"
            ]
        );
        // Two lanes; the INVITE goes left to right (first address first), the 100 back.
        assert_eq!(html.matches("<line class=\"lane\"").count(), 2);
        assert!(
            html.contains("x1=\"130\" y1=\"82\" x2=\"370\" y2=\"82\""),
            "{html}"
        );
        assert!(
            html.contains("x1=\"370\" y1=\"126\" x2=\"130\" y2=\"126\""),
            "{html}"
        );
        assert!(html.contains("+1.003s"));
        assert_eq!(html.matches("<pre id=\"m").count(), 7);
        assert_eq!(
            utc(UNIX_EPOCH + Duration::from_millis(1_700_000_000_123)),
            "2023-11-14 22:13:20.123"
        );
    }
}
