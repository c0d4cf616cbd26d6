//! One dialog (RFC 3261 §12): its identifier, state, route set, remote target and
//! sequence numbers, and how a request inside it is built (§12.2.1.1) and checked
//! (§12.2.2).

use bytes::Bytes;
use sip_message::{HeaderName, Host, Method, NameAddr, Request, Response, Transport, Uri};
use std::net::{IpAddr, SocketAddr};

/// RFC 3261 §12: a dialog is identified by Call-ID, local tag and remote tag.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DialogId {
    pub call_id: Bytes,
    pub local_tag: Bytes,
    pub remote_tag: Bytes,
}

/// RFC 3261 §12: early (made by a provisional response), confirmed (by a 2xx).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DialogState {
    Early,
    Confirmed,
}

/// The state of one dialog, from either side.
#[derive(Debug, Clone)]
pub struct Dialog {
    pub id: DialogId,
    pub state: DialogState,
    /// Our URI as a From/To header value, with our tag.
    local_uri: Bytes,
    /// Theirs, with their tag.
    remote_uri: Bytes,
    /// Where requests in the dialog go: the peer's Contact (§12.1.1, §12.1.2).
    pub remote_target: Bytes,
    /// Route set, in the order the Route header will carry it.
    pub route_set: Vec<Bytes>,
    /// Our CSeq for the next request (§12.2.1.1: incremented by one per request).
    local_cseq: u32,
    /// The highest CSeq received from the peer (§12.2.2); `None` before the first.
    remote_cseq: Option<u32>,
    /// A `sips:` Request-URI made this dialog secure (§12.1.1).
    pub secure: bool,
}

impl Dialog {
    /// UAS side (RFC 3261 §12.1.1): built from the request and the tag we give the
    /// dialog-creating response. `None` when the request lacks what a dialog needs
    /// (validate() already refused such requests).
    pub fn uas(request: &Request, local_tag: &Bytes) -> Option<Dialog> {
        let from = request.headers.from_ref().ok()?;
        let cseq = request.headers.cseq().ok()?;
        let call_id = Bytes::copy_from_slice(request.headers.call_id().ok()?.as_bytes());
        let remote_tag = Bytes::copy_from_slice(from.tag().unwrap_or_default());
        let to = request.headers.get(&HeaderName::To)?;
        Some(Dialog {
            id: DialogId {
                call_id,
                local_tag: local_tag.clone(),
                remote_tag,
            },
            state: DialogState::Early,
            local_uri: with_tag(to, local_tag),
            // Copied, as the route set: a slice would keep the peer's whole INVITE
            // datagram for the dialog's life.
            remote_uri: Bytes::copy_from_slice(request.headers.get(&HeaderName::From)?),
            remote_target: contact_uri(&request.headers).unwrap_or_else(|| from.uri.to_bytes()),
            // The Record-Route values in order (§12.1.1).
            route_set: request
                .headers
                .values(&HeaderName::RecordRoute)
                .map(|v| Bytes::copy_from_slice(&v))
                .collect(),
            // §12.1.1: the local sequence number is chosen by us; start low.
            local_cseq: 1,
            remote_cseq: Some(cseq.seq),
            secure: request_is_secure(request),
        })
    }

    /// UAC side (RFC 3261 §12.1.2): built from our request and a response with a To
    /// tag (a 1xx makes an early dialog, a 2xx a confirmed one).
    pub fn uac(request: &Request, response: &Response) -> Option<Dialog> {
        let from = request.headers.from_ref().ok()?;
        let local_tag = Bytes::copy_from_slice(from.tag()?);
        Dialog::uac_tagged(request, response, local_tag)
    }

    /// [`Dialog::uac`] for a request whose From tag, `local_tag`, we wrote ourselves:
    /// its From is not parsed again (a session's INVITE keeps no parsed values).
    pub fn uac_tagged(request: &Request, response: &Response, local_tag: Bytes) -> Option<Dialog> {
        let to = response.headers.to_ref().ok()?;
        let remote_tag = Bytes::copy_from_slice(to.tag()?);
        let cseq = request.headers.cseq().ok()?;
        let call_id = Bytes::copy_from_slice(request.headers.call_id().ok()?.as_bytes());
        // §12.1.2: the Record-Route values in reverse order. Copied, like the To value
        // below: a slice would keep the whole response's datagram for the dialog's life.
        let mut route_set: Vec<Bytes> = response
            .headers
            .values(&HeaderName::RecordRoute)
            .map(|v| Bytes::copy_from_slice(&v))
            .collect();
        route_set.reverse();
        let state = if response.status >= 200 {
            DialogState::Confirmed
        } else {
            DialogState::Early
        };
        Some(Dialog {
            id: DialogId {
                call_id,
                local_tag,
                remote_tag,
            },
            state,
            local_uri: request.headers.get(&HeaderName::From)?.clone(),
            remote_uri: Bytes::copy_from_slice(response.headers.get(&HeaderName::To)?),
            remote_target: contact_uri(&response.headers)
                .unwrap_or_else(|| Bytes::copy_from_slice(&request.uri)),
            route_set,
            local_cseq: cseq.seq.saturating_add(1),
            remote_cseq: None,
            secure: request_is_secure(request),
        })
    }

    /// The CSeq number the next request will carry, without taking it.
    pub fn peek_cseq(&self) -> u32 {
        self.local_cseq
    }

    /// Takes the next local CSeq number (§12.2.1.1).
    pub fn next_cseq(&mut self) -> u32 {
        let seq = self.local_cseq;
        self.local_cseq = self.local_cseq.saturating_add(1);
        seq
    }

    /// RFC 3261 §12.2.2: a request whose CSeq is lower than the last one received is
    /// out of order (answer 500); otherwise the number is remembered. A new request
    /// with the same number is refused too: each new request takes a higher one
    /// (§12.2.1.1), and retransmissions never get here (their transaction absorbs
    /// them). ACK and CANCEL carry the number of the request they belong to and are
    /// not checked here.
    pub fn accept_remote_cseq(&mut self, seq: u32) -> bool {
        match self.remote_cseq {
            Some(last) if seq <= last => false,
            _ => {
                self.remote_cseq = Some(seq);
                true
            }
        }
    }

    /// RFC 3261 §12.2: a target refresh request or its 2xx replaces the remote target
    /// with its Contact.
    pub fn refresh_target(&mut self, headers: &sip_message::Headers) {
        if let Some(uri) = contact_uri(headers) {
            self.remote_target = uri;
        }
    }

    /// Builds a request inside the dialog (RFC 3261 §12.2.1.1): To, From, Call-ID,
    /// CSeq `seq`, the Request-URI and Route from the route set (loose routing when
    /// the first route has `lr`, strict routing otherwise), and the top Via.
    pub fn request(&self, method: Method, seq: u32, via: Bytes) -> Request {
        let mut request = Request::with_raw_uri(method.clone(), Bytes::new());
        let first_is_loose = self
            .route_set
            .first()
            .and_then(NameAddr::parse)
            .map(|route| route.uri.as_sip().is_some_and(|u| u.param("lr").is_some()));
        request.headers.push(HeaderName::Via, via);
        request.headers.push(HeaderName::MaxForwards, "70");
        match first_is_loose {
            // No route set, or a loose router first: Request-URI = remote target.
            None | Some(true) => {
                request.uri = self.remote_target.clone();
                for route in &self.route_set {
                    request.headers.push(HeaderName::Route, route.clone());
                }
            }
            // A strict router: it takes the Request-URI; the remote target goes last.
            Some(false) => {
                let mut routes = self.route_set.iter();
                if let Some(first) = routes.next().and_then(NameAddr::parse) {
                    let mut uri = first.uri.clone();
                    if let Uri::Sip(sip) = &mut uri {
                        sip.headers.clear();
                        sip.params
                            .retain(|p| !p.name.eq_ignore_ascii_case(b"method"));
                    }
                    request.uri = uri.to_bytes();
                }
                for route in routes {
                    request.headers.push(HeaderName::Route, route.clone());
                }
                let mut target = b"<".to_vec();
                target.extend_from_slice(&self.remote_target);
                target.push(b'>');
                request.headers.push(HeaderName::Route, target);
            }
        }
        request
            .headers
            .push(HeaderName::From, self.local_uri.clone());
        request
            .headers
            .push(HeaderName::To, self.remote_uri.clone());
        request
            .headers
            .push(HeaderName::CallId, self.id.call_id.clone());
        let mut cseq = Vec::with_capacity(24);
        sip_message::ascii::push_u32(&mut cseq, seq);
        cseq.push(b' ');
        cseq.extend_from_slice(method.as_str().as_bytes());
        request.headers.push(HeaderName::CSeq, cseq);
        request
    }

    /// The address the next hop of an in-dialog request is at, when it can be known
    /// without DNS: the first route when there is a route set, else the remote target,
    /// if it names an IP address. `None`: send along the flow the dialog was made on.
    pub fn next_hop(&self, transport: Transport) -> Option<SocketAddr> {
        let uri = match self.route_set.first() {
            Some(route) => NameAddr::parse(route)?.uri,
            None => Uri::parse_bytes(&self.remote_target).ok()?,
        };
        let sip = uri.as_sip()?;
        let ip: IpAddr = match &sip.host {
            Host::Ipv4(a) => IpAddr::V4(*a),
            Host::Ipv6(a) => IpAddr::V6(*a),
            Host::Domain(_) => return None,
        };
        let default = if sip.secure || transport == Transport::Tls {
            5061
        } else {
            5060
        };
        Some(SocketAddr::new(ip, sip.port.unwrap_or(default)))
    }
}

/// The URI of the first Contact of a message, if it has one.
fn contact_uri(headers: &sip_message::Headers) -> Option<Bytes> {
    match headers.contacts_ref().ok()?.as_ref() {
        sip_message::Contacts::List(list) => list.first().map(|c| c.addr.uri.to_bytes()),
        _ => None,
    }
}

fn with_tag(value: &Bytes, tag: &Bytes) -> Bytes {
    let mut v = value.to_vec();
    v.extend_from_slice(b";tag=");
    v.extend_from_slice(tag);
    Bytes::from(v)
}

fn request_is_secure(request: &Request) -> bool {
    // only a sips: URI can be (a parse of any other gives false)
    if !request
        .uri
        .get(..5)
        .is_some_and(|s| s.eq_ignore_ascii_case(b"sips:"))
    {
        return false;
    }
    request
        .uri_ref()
        .ok()
        .and_then(|u| u.as_sip().map(|s| s.secure))
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
    use super::*;
    use sip_message::Message;

    fn invite_with_record_route(rr: &str) -> Request {
        let text = format!(
            "INVITE sip:bob@192.0.2.2 SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK1\r\n\
             Record-Route: {rr}\r\nFrom: <sip:alice@192.0.2.1>;tag=a\r\nTo: <sip:bob@192.0.2.2>\r\n\
             Call-ID: c1\r\nCSeq: 4 INVITE\r\nContact: <sip:alice@192.0.2.1:5070>\r\n\
             Max-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
        );
        match Message::parse(Bytes::from(text)).unwrap() {
            Message::Request(r) => r,
            _ => unreachable!(),
        }
    }

    /// RFC 3261 §12.2.1.1, loose routing: Request-URI is the remote target, the route
    /// set goes in Route as it is, and the next hop is the first route.
    #[test]
    fn loose_route_set() {
        let invite = invite_with_record_route("<sip:p1.test;lr>, <sip:192.0.2.9:5080;lr>");
        let mut dialog = Dialog::uas(&invite, &Bytes::from_static(b"b")).unwrap();
        let seq = dialog.next_cseq();
        let bye = dialog.request(
            Method::Bye,
            seq,
            Bytes::from_static(b"SIP/2.0/UDP x;branch=z9hG4bK2"),
        );
        assert_eq!(&bye.uri[..], b"sip:alice@192.0.2.1:5070");
        let routes: Vec<Bytes> = bye.headers.values(&HeaderName::Route).collect();
        assert_eq!(
            routes,
            [&b"<sip:p1.test;lr>"[..], &b"<sip:192.0.2.9:5080;lr>"[..]]
        );
        assert_eq!(
            &bye.headers.get(&HeaderName::To).unwrap()[..],
            b"<sip:alice@192.0.2.1>;tag=a"
        );
        assert_eq!(
            &bye.headers.get(&HeaderName::From).unwrap()[..],
            b"<sip:bob@192.0.2.2>;tag=b"
        );
        // The first route names a domain: no next hop without DNS.
        assert_eq!(dialog.next_hop(Transport::Udp), None);
        // CSeq: ours starts fresh; theirs must rise (§12.2.2).
        assert!(!dialog.accept_remote_cseq(4));
        assert!(dialog.accept_remote_cseq(5));
    }

    /// RFC 3261 §12.2.1.1, strict routing: the first route becomes the Request-URI and
    /// the remote target goes last in Route.
    #[test]
    fn strict_route_set() {
        let invite = invite_with_record_route("<sip:192.0.2.7:5062>");
        let dialog = Dialog::uas(&invite, &Bytes::from_static(b"b")).unwrap();
        let bye = dialog.request(
            Method::Bye,
            1,
            Bytes::from_static(b"SIP/2.0/UDP x;branch=z9hG4bK3"),
        );
        assert_eq!(&bye.uri[..], b"sip:192.0.2.7:5062");
        let routes: Vec<Bytes> = bye.headers.values(&HeaderName::Route).collect();
        assert_eq!(routes, [&b"<sip:alice@192.0.2.1:5070>"[..]]);
        assert_eq!(
            dialog.next_hop(Transport::Udp),
            Some("192.0.2.7:5062".parse().unwrap())
        );
    }

    /// §12.1.2: a UAC's route set is the 2xx's Record-Route reversed; a target refresh
    /// takes the new Contact.
    #[test]
    fn uac_route_set_is_reversed_and_target_refreshed() {
        let invite = invite_with_record_route("<sip:ignored;lr>");
        let text = "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK1\r\n\
            Record-Route: <sip:p2.test;lr>, <sip:p1.test;lr>\r\nFrom: <sip:alice@192.0.2.1>;tag=a\r\n\
            To: <sip:bob@192.0.2.2>;tag=z\r\nCall-ID: c1\r\nCSeq: 4 INVITE\r\n\
            Contact: <sip:bob@192.0.2.2:5090>\r\nContent-Length: 0\r\n\r\n";
        let Message::Response(ok) = Message::parse(Bytes::from(text)).unwrap() else {
            unreachable!()
        };
        let mut dialog = Dialog::uac(&invite, &ok).unwrap();
        assert_eq!(dialog.state, DialogState::Confirmed);
        assert_eq!(
            dialog.route_set,
            [&b"<sip:p1.test;lr>"[..], &b"<sip:p2.test;lr>"[..]]
        );
        assert_eq!(dialog.peek_cseq(), 5);
        let refresh = "INVITE sip:x SIP/2.0\r\nContact: <sip:bob@192.0.2.3:5091>\r\nContent-Length: 0\r\n\r\n";
        let Message::Request(r) = Message::parse(Bytes::from(refresh)).unwrap() else {
            unreachable!()
        };
        dialog.refresh_target(&r.headers);
        assert_eq!(&dialog.remote_target[..], b"sip:bob@192.0.2.3:5091");
    }
}
