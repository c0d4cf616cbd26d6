//! `HickoryLookup` against a real DNS server: a small authoritative UDP responder,
//! written here with hickory's message types, on a port-0 loopback socket. Nothing
//! leaves the machine; the addresses in the zone are documentation ranges that are
//! never contacted.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use hickory_resolver::proto::op::{Message, ResponseCode};
use hickory_resolver::proto::rr::rdata::{A, AAAA, NAPTR, SRV};
use hickory_resolver::proto::rr::{Name, RData, Record};
use sip_message::{Transport, Uri};
use sip_resolve::{
    DnsLookup, HickoryLookup, Naptr, RecordKind, ResolveConfig, ResolveError, Srv, Target, resolve,
};
use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::net::UdpSocket;

fn name(s: &str) -> Name {
    Name::from_ascii(s).unwrap()
}

fn naptr(order: u16, preference: u16, flags: &str, service: &str, replacement: &str) -> RData {
    RData::NAPTR(NAPTR::new(
        order,
        preference,
        flags.as_bytes().into(),
        service.as_bytes().into(),
        Box::default(),
        name(replacement),
    ))
}

fn srv(priority: u16, weight: u16, port: u16, target: &str) -> RData {
    RData::SRV(SRV::new(priority, weight, port, name(target)))
}

fn a(ip: &str) -> RData {
    RData::A(A(ip.parse().unwrap()))
}

fn aaaa(ip: &str) -> RData {
    RData::AAAA(AAAA(ip.parse().unwrap()))
}

/// The test zone: `(owner, data)`. A name listed here answers NOERROR (with or
/// without records of the type asked); any other name answers NXDOMAIN, except
/// `broken.test.`, which answers SERVFAIL.
fn zone() -> Vec<(&'static str, RData)> {
    vec![
        (
            "example.test.",
            naptr(20, 10, "s", "SIP+D2U", "_sip._udp.example.test."),
        ),
        (
            "example.test.",
            naptr(10, 10, "s", "SIPS+D2T", "_sips._tcp.example.test."),
        ),
        (
            "example.test.",
            naptr(10, 20, "s", "SIP+D2X", "_sip._x.example.test."),
        ),
        (
            "_sips._tcp.example.test.",
            srv(0, 5, 5061, "tls1.example.test."),
        ),
        (
            "_sip._udp.example.test.",
            srv(20, 0, 5080, "udp2.example.test."),
        ),
        (
            "_sip._udp.example.test.",
            srv(10, 0, 5070, "udp1.example.test."),
        ),
        ("tls1.example.test.", a("192.0.2.11")),
        ("udp1.example.test.", aaaa("2001:db8::21")),
        ("udp1.example.test.", a("192.0.2.21")),
        ("udp2.example.test.", a("192.0.2.22")),
        ("srvonly.test.", a("192.0.2.99")),
        (
            "_sip._tcp.srvonly.test.",
            srv(0, 0, 5090, "tcp1.srvonly.test."),
        ),
        ("tcp1.srvonly.test.", a("198.51.100.1")),
        ("plain.test.", a("203.0.113.5")),
        ("plain.test.", aaaa("2001:db8::5")),
    ]
}

/// Answers every query on `socket` from [`zone`] until the test's runtime stops.
async fn serve(socket: UdpSocket) {
    let zone = zone();
    let mut buf = vec![0u8; 4096];
    loop {
        let Ok((n, from)) = socket.recv_from(&mut buf).await else {
            continue;
        };
        let Ok(query) = Message::from_vec(&buf[..n]) else {
            continue;
        };
        let mut response = Message::response(query.metadata.id, query.metadata.op_code);
        response.metadata.recursion_desired = query.metadata.recursion_desired;
        response.metadata.recursion_available = true;
        response.metadata.authoritative = true;
        response.add_queries(query.queries.clone());
        for q in &query.queries {
            let owner = q.name().to_ascii().to_ascii_lowercase();
            if owner == "broken.test." {
                response.metadata.response_code = ResponseCode::ServFail;
                continue;
            }
            let mut known = false;
            for (zone_owner, data) in &zone {
                if *zone_owner == owner {
                    known = true;
                    if data.record_type() == q.query_type() {
                        response.add_answer(Record::from_rdata(q.name().clone(), 60, data.clone()));
                    }
                }
            }
            if !known {
                response.metadata.response_code = ResponseCode::NXDomain;
            }
        }
        if let Ok(bytes) = response.to_vec() {
            let _ = socket.send_to(&bytes, from).await;
        }
    }
}

/// Starts the responder on 127.0.0.1:0 and returns a lookup that asks only it.
async fn start() -> HickoryLookup {
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr: SocketAddr = socket.local_addr().unwrap();
    tokio::spawn(serve(socket));
    HickoryLookup::with_servers(&[addr]).unwrap()
}

/// Every test is bounded in time.
async fn bounded<T>(f: impl Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(20), f)
        .await
        .expect("the test took too long")
}

#[tokio::test]
async fn naptr_srv_and_addresses_come_back_as_served() {
    bounded(async {
        let dns = start().await;
        let mut got = dns.naptr("example.test").await.unwrap();
        got.sort_by_key(|n| (n.order, n.preference));
        assert_eq!(
            got,
            [
                Naptr {
                    order: 10,
                    preference: 10,
                    flags: "s".into(),
                    service: "SIPS+D2T".into(),
                    replacement: "_sips._tcp.example.test.".into(),
                },
                Naptr {
                    order: 10,
                    preference: 20,
                    flags: "s".into(),
                    service: "SIP+D2X".into(),
                    replacement: "_sip._x.example.test.".into(),
                },
                Naptr {
                    order: 20,
                    preference: 10,
                    flags: "s".into(),
                    service: "SIP+D2U".into(),
                    replacement: "_sip._udp.example.test.".into(),
                },
            ]
        );

        let mut got = dns.srv("_sip._udp.example.test").await.unwrap();
        got.sort_by_key(|s| s.priority);
        assert_eq!(
            got,
            [
                Srv {
                    priority: 10,
                    weight: 0,
                    port: 5070,
                    target: "udp1.example.test.".into(),
                },
                Srv {
                    priority: 20,
                    weight: 0,
                    port: 5080,
                    target: "udp2.example.test.".into(),
                },
            ]
        );

        let mut got = dns.ip("udp1.example.test").await.unwrap();
        got.sort();
        assert_eq!(
            got,
            [
                "192.0.2.21".parse::<std::net::IpAddr>().unwrap(),
                "2001:db8::21".parse().unwrap(),
            ]
        );
    })
    .await;
}

#[tokio::test]
async fn no_data_and_no_such_name_are_empty_answers() {
    bounded(async {
        let dns = start().await;
        // the name exists, without NAPTR
        assert!(dns.naptr("plain.test").await.unwrap().is_empty());
        // NXDOMAIN
        assert!(dns.srv("_sip._udp.missing.test").await.unwrap().is_empty());
        assert!(dns.ip("missing.test").await.unwrap().is_empty());
    })
    .await;
}

#[tokio::test]
async fn servfail_is_a_lookup_error() {
    bounded(async {
        let dns = start().await;
        let err = dns.naptr("broken.test").await.unwrap_err();
        assert!(
            matches!(&err, ResolveError::Lookup { name, record: RecordKind::Naptr, .. } if name == "broken.test"),
            "{err:?}"
        );
    })
    .await;
}

fn sip_uri(s: &str) -> sip_message::SipUri {
    match Uri::parse(s.as_bytes()).unwrap() {
        Uri::Sip(u) => u,
        other => panic!("not a SIP URI: {other:?}"),
    }
}

/// Runs `resolve` in a spawned task, as the runtime will.
async fn resolve_spawned(dns: &HickoryLookup, uri: &str) -> Result<Vec<Target>, ResolveError> {
    let dns = dns.clone();
    let uri = sip_uri(uri);
    tokio::spawn(async move {
        let mut random = || 0u32;
        resolve(&dns, &uri, &ResolveConfig::default(), &mut random).await
    })
    .await
    .unwrap()
}

fn target(transport: Transport, addr: &str, server_name: &str) -> Target {
    Target {
        transport,
        addr: addr.parse().unwrap(),
        server_name: Some(server_name.to_owned()),
    }
}

#[tokio::test]
async fn resolve_follows_naptr_then_srv_then_addresses() {
    bounded(async {
        let dns = start().await;
        let got = resolve_spawned(&dns, "sip:alice@example.test")
            .await
            .unwrap();
        assert_eq!(
            got,
            [
                target(Transport::Tls, "192.0.2.11:5061", "example.test"),
                target(Transport::Udp, "192.0.2.21:5070", "example.test"),
                target(Transport::Udp, "[2001:db8::21]:5070", "example.test"),
                target(Transport::Udp, "192.0.2.22:5080", "example.test"),
            ]
        );
    })
    .await;
}

#[tokio::test]
async fn resolve_falls_back_to_srv_and_to_addresses() {
    bounded(async {
        let dns = start().await;
        let got = resolve_spawned(&dns, "sip:srvonly.test").await.unwrap();
        assert_eq!(
            got,
            [target(Transport::Tcp, "198.51.100.1:5090", "srvonly.test")]
        );

        let got = resolve_spawned(&dns, "sip:plain.test").await.unwrap();
        assert_eq!(
            got,
            [
                target(Transport::Udp, "203.0.113.5:5060", "plain.test"),
                target(Transport::Udp, "[2001:db8::5]:5060", "plain.test"),
            ]
        );
    })
    .await;
}

#[tokio::test]
async fn resolve_reports_missing_and_failing_names() {
    bounded(async {
        let dns = start().await;
        let err = resolve_spawned(&dns, "sip:missing.test").await.unwrap_err();
        assert!(
            matches!(&err, ResolveError::NotFound { name } if name == "missing.test"),
            "{err:?}"
        );
        let err = resolve_spawned(&dns, "sip:broken.test").await.unwrap_err();
        assert!(
            matches!(&err, ResolveError::Lookup { name, .. } if name == "broken.test"),
            "{err:?}"
        );
    })
    .await;
}

#[tokio::test]
async fn the_system_configuration_builds_a_resolver() {
    // Reads /etc/resolv.conf only; the URI is numeric, so nothing is queried.
    let dns = HickoryLookup::from_system_conf().unwrap();
    let got = resolve_spawned(&dns, "sip:192.0.2.1;transport=tcp")
        .await
        .unwrap();
    assert_eq!(
        got,
        [Target {
            transport: Transport::Tcp,
            addr: "192.0.2.1:5060".parse().unwrap(),
            server_name: None,
        }]
    );
}
