//! RFC 3263 §4 on an in-memory DNS: every branch of `resolve`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use sip_message::{SipUri, Transport, Uri};
use sip_resolve::{
    DnsLookup, Naptr, RecordKind, ResolveConfig, ResolveError, Srv, Target, resolve,
};
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;

enum Answer<T> {
    Records(Vec<T>),
    Fail,
}

/// A zone in memory. Names not listed have no records. Every query is logged as
/// `"TYPE name"`.
#[derive(Default)]
struct Fake {
    naptr: HashMap<String, Answer<Naptr>>,
    srv: HashMap<String, Answer<Srv>>,
    ip: HashMap<String, Answer<IpAddr>>,
    log: Mutex<Vec<String>>,
}

impl Fake {
    fn with_naptr(mut self, name: &str, records: &[(u16, u16, &str, &str, &str)]) -> Self {
        let records = records
            .iter()
            .map(|&(order, preference, flags, service, replacement)| Naptr {
                order,
                preference,
                flags: flags.to_owned(),
                service: service.to_owned(),
                replacement: replacement.to_owned(),
            })
            .collect();
        self.naptr.insert(name.to_owned(), Answer::Records(records));
        self
    }

    fn with_srv(mut self, name: &str, records: &[(u16, u16, u16, &str)]) -> Self {
        let records = records
            .iter()
            .map(|&(priority, weight, port, target)| Srv {
                priority,
                weight,
                port,
                target: target.to_owned(),
            })
            .collect();
        self.srv.insert(name.to_owned(), Answer::Records(records));
        self
    }

    fn with_ip(mut self, name: &str, ips: &[&str]) -> Self {
        let ips = ips.iter().map(|s| s.parse().unwrap()).collect();
        self.ip.insert(name.to_owned(), Answer::Records(ips));
        self
    }

    fn failing(mut self, record: RecordKind, name: &str) -> Self {
        match record {
            RecordKind::Naptr => self.naptr.insert(name.to_owned(), Answer::Fail).is_none(),
            RecordKind::Srv => self.srv.insert(name.to_owned(), Answer::Fail).is_none(),
            _ => self.ip.insert(name.to_owned(), Answer::Fail).is_none(),
        };
        self
    }

    fn queries(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }

    fn answer<T: Clone>(
        &self,
        table: &HashMap<String, Answer<T>>,
        record: RecordKind,
        name: &str,
    ) -> Result<Vec<T>, ResolveError> {
        self.log.lock().unwrap().push(format!("{record} {name}"));
        match table.get(name) {
            None => Ok(Vec::new()),
            Some(Answer::Records(v)) => Ok(v.clone()),
            Some(Answer::Fail) => Err(ResolveError::Lookup {
                name: name.to_owned(),
                record,
                source: Box::new(std::io::Error::other("SERVFAIL")),
            }),
        }
    }
}

impl DnsLookup for Fake {
    async fn naptr(&self, name: &str) -> Result<Vec<Naptr>, ResolveError> {
        self.answer(&self.naptr, RecordKind::Naptr, name)
    }
    async fn srv(&self, name: &str) -> Result<Vec<Srv>, ResolveError> {
        self.answer(&self.srv, RecordKind::Srv, name)
    }
    async fn ip(&self, name: &str) -> Result<Vec<IpAddr>, ResolveError> {
        self.answer(&self.ip, RecordKind::Ip, name)
    }
}

fn uri(s: &str) -> SipUri {
    match Uri::parse(s.as_bytes()).unwrap() {
        Uri::Sip(u) => u,
        other => panic!("not a SIP URI: {other:?}"),
    }
}

fn config(transports: &[Transport]) -> ResolveConfig {
    ResolveConfig {
        transports: transports.to_vec(),
        prefer_ipv6: false,
    }
}

fn all() -> ResolveConfig {
    config(&[Transport::Udp, Transport::Tcp, Transport::Tls])
}

/// Resolves with a randomness source that always returns `r`.
async fn run(
    fake: &Fake,
    u: &str,
    cfg: &ResolveConfig,
    r: u32,
) -> Result<Vec<Target>, ResolveError> {
    let mut random = move || r;
    resolve(fake, &uri(u), cfg, &mut random).await
}

/// `(transport, "ip:port")` of each target, for short assertions.
fn short(targets: &[Target]) -> Vec<(Transport, String)> {
    targets
        .iter()
        .map(|t| (t.transport, t.addr.to_string()))
        .collect()
}

fn t(transport: Transport, addr: &str) -> (Transport, String) {
    (transport, addr.to_owned())
}

use Transport::{Sctp, Tcp, Tls, Udp, Ws, Wss};

// ---- numeric IP hosts: no DNS at all (RFC 3263 §4.1, §4.2)

#[tokio::test]
async fn numeric_ipv4_is_udp_on_5060_without_dns() {
    let fake = Fake::default();
    let got = run(&fake, "sip:alice@192.0.2.10", &all(), 0).await.unwrap();
    assert_eq!(
        got,
        [Target {
            transport: Udp,
            addr: "192.0.2.10:5060".parse().unwrap(),
            server_name: None,
        }]
    );
    assert!(fake.queries().is_empty(), "{:?}", fake.queries());
}

#[tokio::test]
async fn numeric_ipv6_takes_port_and_transport_from_the_uri() {
    let fake = Fake::default();
    let got = run(&fake, "sip:[2001:db8::7]:5070;transport=tcp", &all(), 0)
        .await
        .unwrap();
    assert_eq!(short(&got), [t(Tcp, "[2001:db8::7]:5070")]);
    assert_eq!(got[0].server_name, None);
    assert!(fake.queries().is_empty());
}

#[tokio::test]
async fn numeric_sips_is_tls_on_5061() {
    let fake = Fake::default();
    let got = run(&fake, "sips:192.0.2.10", &all(), 0).await.unwrap();
    assert_eq!(short(&got), [t(Tls, "192.0.2.10:5061")]);
    // sips;transport=tcp means TLS over TCP
    let got = run(&fake, "sips:192.0.2.10:6000;transport=tcp", &all(), 0)
        .await
        .unwrap();
    assert_eq!(short(&got), [t(Tls, "192.0.2.10:6000")]);
    // the legacy transport=tls on a sip URI
    let got = run(&fake, "sip:192.0.2.10;transport=TLS", &all(), 0)
        .await
        .unwrap();
    assert_eq!(short(&got), [t(Tls, "192.0.2.10:5061")]);
}

#[tokio::test]
async fn numeric_without_udp_configured_uses_the_first_enabled_transport() {
    let fake = Fake::default();
    let got = run(&fake, "sip:192.0.2.10", &config(&[Tcp, Tls]), 0)
        .await
        .unwrap();
    assert_eq!(short(&got), [t(Tcp, "192.0.2.10:5060")]);
    let err = run(&fake, "sips:192.0.2.10", &config(&[Udp, Tcp]), 0)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, ResolveError::UnsupportedTransport { transport } if transport == "TLS"),
        "{err:?}"
    );
}

// ---- transport parameter checks

#[tokio::test]
async fn unusable_transport_parameters_are_errors() {
    let fake = Fake::default();
    for (u, cfg, want) in [
        ("sip:192.0.2.1;transport=foo", all(), "foo"),
        ("sip:example.com;transport=sctp", all(), "sctp"),
        ("sips:example.com;transport=udp", all(), "udp"),
        ("sip:example.com;transport=tls", config(&[Udp, Tcp]), "tls"),
    ] {
        let err = run(&fake, u, &cfg, 0).await.unwrap_err();
        assert!(
            matches!(&err, ResolveError::UnsupportedTransport { transport } if transport == want),
            "{u}: {err:?}"
        );
    }
    assert!(fake.queries().is_empty(), "{:?}", fake.queries());
}

// ---- maddr

#[tokio::test]
async fn maddr_numeric_replaces_the_host() {
    let fake = Fake::default().with_ip("example.com", &["192.0.2.1"]);
    let got = run(
        &fake,
        "sip:bob@example.com:5080;maddr=198.51.100.4;transport=tcp",
        &all(),
        0,
    )
    .await
    .unwrap();
    assert_eq!(short(&got), [t(Tcp, "198.51.100.4:5080")]);
    assert_eq!(got[0].server_name, None);
    assert!(fake.queries().is_empty(), "{:?}", fake.queries());
}

#[tokio::test]
async fn maddr_domain_is_the_name_resolved() {
    let fake = Fake::default()
        .with_srv("_sip._udp.example.com", &[(0, 0, 5060, "a.example.com")])
        .with_ip("a.example.com", &["192.0.2.1"])
        .with_srv(
            "_sip._udp.proxy.example.net",
            &[(0, 0, 5062, "p1.example.net")],
        )
        .with_ip("p1.example.net", &["203.0.113.9"]);
    let got = run(
        &fake,
        "sip:bob@example.com;maddr=proxy.example.net",
        &all(),
        0,
    )
    .await
    .unwrap();
    assert_eq!(short(&got), [t(Udp, "203.0.113.9:5062")]);
    assert_eq!(got[0].server_name.as_deref(), Some("proxy.example.net"));
    assert!(fake.queries().iter().all(|q| !q.contains("example.com")));
}

#[tokio::test]
async fn invalid_maddr_is_an_error() {
    let fake = Fake::default();
    let err = run(&fake, "sip:example.com;maddr=a..b", &all(), 0)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, ResolveError::InvalidMaddr { maddr } if maddr == "a..b"),
        "{err:?}"
    );
}

// ---- explicit port: A/AAAA only

#[tokio::test]
async fn explicit_port_skips_naptr_and_srv() {
    let fake = Fake::default()
        .with_naptr(
            "example.com",
            &[(10, 10, "s", "SIP+D2T", "_sip._tcp.example.com")],
        )
        .with_srv("_sip._tcp.example.com", &[(0, 0, 5060, "tcp.example.com")])
        .with_ip("tcp.example.com", &["192.0.2.99"])
        .with_ip("example.com", &["2001:db8::1", "192.0.2.1"]);
    let got = run(&fake, "sip:example.com:5080", &all(), 0).await.unwrap();
    assert_eq!(
        short(&got),
        [t(Udp, "192.0.2.1:5080"), t(Udp, "[2001:db8::1]:5080")]
    );
    assert!(
        got.iter()
            .all(|t| t.server_name.as_deref() == Some("example.com"))
    );
    assert_eq!(fake.queries(), ["A/AAAA example.com"]);

    let got = run(&fake, "sips:Example.COM:5081", &all(), 0)
        .await
        .unwrap();
    assert_eq!(short(&got)[0], t(Tls, "192.0.2.1:5081"));
    assert_eq!(got[0].server_name.as_deref(), Some("example.com"));
}

#[tokio::test]
async fn explicit_port_on_a_name_without_addresses_is_not_found() {
    let fake = Fake::default();
    let err = run(&fake, "sip:nowhere.example:5060", &all(), 0)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, ResolveError::NotFound { name } if name == "nowhere.example"),
        "{err:?}"
    );
}

// ---- NAPTR (§4.1)

fn naptr_zone() -> Fake {
    Fake::default()
        .with_srv("_sip._udp.example.com", &[(0, 0, 5060, "udp.example.com")])
        .with_srv("_sip._tcp.example.com", &[(0, 0, 5060, "tcp.example.com")])
        .with_srv("_sips._tcp.example.com", &[(0, 0, 5061, "tls.example.com")])
        .with_srv(
            "_sip._sctp.example.com",
            &[(0, 0, 5060, "sctp.example.com")],
        )
        .with_srv("_sip._ws.example.com", &[(0, 0, 80, "ws.example.com")])
        .with_srv("_sips._ws.example.com", &[(0, 0, 443, "wss.example.com")])
        .with_ip("udp.example.com", &["192.0.2.1"])
        .with_ip("tcp.example.com", &["192.0.2.2"])
        .with_ip("tls.example.com", &["192.0.2.3"])
        .with_ip("sctp.example.com", &["192.0.2.4"])
        .with_ip("ws.example.com", &["192.0.2.5"])
        .with_ip("wss.example.com", &["192.0.2.6"])
}

#[tokio::test]
async fn naptr_orders_by_order_then_preference() {
    let fake = naptr_zone().with_naptr(
        "example.com",
        &[
            (20, 10, "s", "SIP+D2U", "_sip._udp.example.com."),
            (10, 50, "S", "SIP+D2T", "_sip._tcp.example.com."),
            (10, 10, "s", "SIPS+D2T", "_sips._tcp.example.com."),
        ],
    );
    let got = run(&fake, "sip:example.com", &all(), 0).await.unwrap();
    assert_eq!(
        short(&got),
        [
            t(Tls, "192.0.2.3:5061"),
            t(Tcp, "192.0.2.2:5060"),
            t(Udp, "192.0.2.1:5060"),
        ]
    );
    assert!(
        got.iter()
            .all(|t| t.server_name.as_deref() == Some("example.com"))
    );
    // one NAPTR, one SRV per record, one A/AAAA per target: no fallback queries
    assert_eq!(fake.queries().len(), 1 + 3 + 3, "{:?}", fake.queries());
}

#[tokio::test]
async fn naptr_keeps_only_services_we_support() {
    let fake = naptr_zone().with_naptr(
        "example.com",
        &[
            (10, 1, "s", "SIP+D2S", "_sip._sctp.example.com."), // SCTP not enabled
            (10, 2, "u", "E2U+sip", "!^.*$!sip:info@example.com!"), // ENUM, not ours
            (10, 3, "a", "SIP+D2U", "udp.example.com."),        // flag A: not an SRV name
            (10, 4, "s", "SIP+D2X", "_sip._x.example.com."),    // unknown service
            (10, 5, "s", "SIP+D2W", "_sip._ws.example.com."),   // WS not enabled
            (10, 6, "s", "SIPS+D2T", "_sips._tcp.example.com."), // TLS not enabled
            (10, 7, "s", "SIP+D2T", "."),                       // no replacement
            (10, 8, "s", "sip+d2t", "_sip._tcp.example.com."),  // case-insensitive
        ],
    );
    let got = run(&fake, "sip:example.com", &config(&[Udp, Tcp]), 0)
        .await
        .unwrap();
    assert_eq!(short(&got), [t(Tcp, "192.0.2.2:5060")]);
    assert!(
        !fake
            .queries()
            .iter()
            .any(|q| q.starts_with("SRV _sip._udp"))
    );
}

#[tokio::test]
async fn naptr_offers_websocket_and_sctp_when_enabled() {
    let fake = naptr_zone().with_naptr(
        "example.com",
        &[
            (10, 1, "s", "SIPS+D2W", "_sips._ws.example.com"),
            (10, 2, "s", "SIP+D2W", "_sip._ws.example.com"),
            (10, 3, "s", "SIP+D2S", "_sip._sctp.example.com"),
        ],
    );
    let got = run(&fake, "sip:example.com", &config(&[Ws, Wss, Sctp]), 0)
        .await
        .unwrap();
    assert_eq!(
        short(&got),
        [
            t(Wss, "192.0.2.6:443"),
            t(Ws, "192.0.2.5:80"),
            t(Sctp, "192.0.2.4:5060"),
        ]
    );
    let got = run(&fake, "sips:example.com", &config(&[Ws, Wss, Sctp]), 0)
        .await
        .unwrap();
    assert_eq!(short(&got), [t(Wss, "192.0.2.6:443")]);
}

#[tokio::test]
async fn naptr_without_usable_records_falls_back_to_srv() {
    let fake = naptr_zone().with_naptr(
        "example.com",
        &[(10, 10, "s", "SIP+D2S", "_sip._sctp.example.com")],
    );
    let got = run(&fake, "sip:example.com", &all(), 0).await.unwrap();
    assert_eq!(
        short(&got),
        [
            t(Udp, "192.0.2.1:5060"),
            t(Tcp, "192.0.2.2:5060"),
            t(Tls, "192.0.2.3:5061"),
        ]
    );
}

#[tokio::test]
async fn naptr_pointing_at_empty_srv_falls_back_to_srv_names() {
    let fake = naptr_zone().with_naptr(
        "example.com",
        &[(10, 10, "s", "SIP+D2T", "_sip._tcp.broken.example.com")],
    );
    let got = run(&fake, "sip:example.com", &config(&[Tcp]), 0)
        .await
        .unwrap();
    assert_eq!(short(&got), [t(Tcp, "192.0.2.2:5060")]);
}

// ---- SRV (§4.1, RFC 2782)

#[tokio::test]
async fn srv_orders_by_priority_then_weight() {
    let fake = Fake::default()
        .with_srv(
            "_sip._udp.example.com",
            &[
                (20, 0, 5060, "c.example.com"),
                (10, 60, 5060, "a.example.com"),
                (10, 40, 5062, "b.example.com"),
            ],
        )
        .with_ip("a.example.com", &["192.0.2.1"])
        .with_ip("b.example.com", &["192.0.2.2"])
        .with_ip("c.example.com", &["192.0.2.3"]);
    let cfg = config(&[Udp]);
    // running sums a=60, b=100: 70 picks b, then a; priority 20 last
    let got = run(&fake, "sip:example.com", &cfg, 70).await.unwrap();
    assert_eq!(
        short(&got),
        [
            t(Udp, "192.0.2.2:5062"),
            t(Udp, "192.0.2.1:5060"),
            t(Udp, "192.0.2.3:5060"),
        ]
    );
    // 10 picks a first
    let got = run(&fake, "sip:example.com", &cfg, 10).await.unwrap();
    assert_eq!(
        short(&got),
        [
            t(Udp, "192.0.2.1:5060"),
            t(Udp, "192.0.2.2:5062"),
            t(Udp, "192.0.2.3:5060"),
        ]
    );
}

#[tokio::test]
async fn srv_fallback_follows_the_configured_order() {
    let fake = naptr_zone();
    let got = run(&fake, "sip:example.com", &config(&[Tls, Udp]), 0)
        .await
        .unwrap();
    assert_eq!(
        short(&got),
        [t(Tls, "192.0.2.3:5061"), t(Udp, "192.0.2.1:5060")]
    );
    let srv: Vec<String> = fake
        .queries()
        .into_iter()
        .filter(|q| q.starts_with("SRV"))
        .collect();
    assert_eq!(
        srv,
        ["SRV _sips._tcp.example.com", "SRV _sip._udp.example.com"]
    );
}

#[tokio::test]
async fn srv_target_expands_to_ipv4_first_unless_ipv6_preferred() {
    let fake = Fake::default()
        .with_srv(
            "_sip._udp.example.com",
            &[(0, 0, 5070, "dual.example.com.")],
        )
        .with_ip(
            "dual.example.com",
            &["2001:db8::1", "192.0.2.1", "2001:db8::2", "192.0.2.2"],
        );
    let mut cfg = config(&[Udp]);
    let got = run(&fake, "sip:example.com", &cfg, 0).await.unwrap();
    assert_eq!(
        short(&got),
        [
            t(Udp, "192.0.2.1:5070"),
            t(Udp, "192.0.2.2:5070"),
            t(Udp, "[2001:db8::1]:5070"),
            t(Udp, "[2001:db8::2]:5070"),
        ]
    );
    cfg.prefer_ipv6 = true;
    let got = run(&fake, "sip:example.com", &cfg, 0).await.unwrap();
    assert_eq!(
        short(&got),
        [
            t(Udp, "[2001:db8::1]:5070"),
            t(Udp, "[2001:db8::2]:5070"),
            t(Udp, "192.0.2.1:5070"),
            t(Udp, "192.0.2.2:5070"),
        ]
    );
}

#[tokio::test]
async fn srv_target_dot_means_no_service_and_stops_the_fallback() {
    let fake = Fake::default()
        .with_srv("_sip._udp.example.com", &[(0, 0, 0, ".")])
        .with_ip("example.com", &["192.0.2.1"]);
    let err = run(&fake, "sip:example.com", &config(&[Udp]), 0)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, ResolveError::NotFound { name } if name == "example.com"),
        "{err:?}"
    );
    assert!(!fake.queries().contains(&"A/AAAA example.com".to_owned()));
}

// ---- A/AAAA fallback (§4.2)

#[tokio::test]
async fn no_srv_falls_back_to_addresses_on_the_default_port() {
    let fake = Fake::default().with_ip("example.com", &["2001:db8::1", "192.0.2.1"]);
    let got = run(&fake, "sip:example.com", &all(), 0).await.unwrap();
    assert_eq!(
        short(&got),
        [t(Udp, "192.0.2.1:5060"), t(Udp, "[2001:db8::1]:5060")]
    );
    assert_eq!(
        fake.queries(),
        [
            "NAPTR example.com",
            "SRV _sip._udp.example.com",
            "SRV _sip._tcp.example.com",
            "SRV _sips._tcp.example.com",
            "A/AAAA example.com",
        ]
    );
    let got = run(&fake, "sip:example.com;transport=tcp", &all(), 0)
        .await
        .unwrap();
    assert_eq!(short(&got)[0], t(Tcp, "192.0.2.1:5060"));
}

// ---- sips (§4.1: only secure services)

#[tokio::test]
async fn sips_uses_only_tls() {
    let fake = naptr_zone().with_naptr(
        "example.com",
        &[
            (10, 1, "s", "SIP+D2U", "_sip._udp.example.com"),
            (10, 2, "s", "SIPS+D2T", "_sips._tcp.example.com"),
        ],
    );
    let got = run(&fake, "sips:example.com", &all(), 0).await.unwrap();
    assert_eq!(short(&got), [t(Tls, "192.0.2.3:5061")]);

    let fake = naptr_zone();
    let got = run(&fake, "sips:example.com", &all(), 0).await.unwrap();
    assert_eq!(short(&got), [t(Tls, "192.0.2.3:5061")]);
    let srv: Vec<String> = fake
        .queries()
        .into_iter()
        .filter(|q| q.starts_with("SRV"))
        .collect();
    assert_eq!(srv, ["SRV _sips._tcp.example.com"]);

    let fake = Fake::default().with_ip("example.com", &["192.0.2.1"]);
    let got = run(&fake, "sips:example.com", &all(), 0).await.unwrap();
    assert_eq!(short(&got), [t(Tls, "192.0.2.1:5061")]);
    assert_eq!(got[0].server_name.as_deref(), Some("example.com"));
}

// ---- transport parameter restricts NAPTR and SRV

#[tokio::test]
async fn transport_parameter_restricts_naptr_and_srv() {
    let fake = naptr_zone().with_naptr(
        "example.com",
        &[
            (10, 1, "s", "SIP+D2U", "_sip._udp.example.com"),
            (10, 2, "s", "SIP+D2T", "_sip._tcp.example.com"),
            (10, 3, "s", "SIPS+D2T", "_sips._tcp.example.com"),
        ],
    );
    let got = run(&fake, "sip:example.com;transport=tcp", &all(), 0)
        .await
        .unwrap();
    assert_eq!(short(&got), [t(Tcp, "192.0.2.2:5060")]);
    let got = run(&fake, "sips:example.com;transport=tcp", &all(), 0)
        .await
        .unwrap();
    assert_eq!(short(&got), [t(Tls, "192.0.2.3:5061")]);

    let fake = naptr_zone();
    let got = run(&fake, "sip:example.com;transport=udp", &all(), 0)
        .await
        .unwrap();
    assert_eq!(short(&got), [t(Udp, "192.0.2.1:5060")]);
    let srv: Vec<String> = fake
        .queries()
        .into_iter()
        .filter(|q| q.starts_with("SRV"))
        .collect();
    assert_eq!(srv, ["SRV _sip._udp.example.com"]);
}

// ---- deduplication

#[tokio::test]
async fn duplicates_are_removed_keeping_the_first() {
    let fake = Fake::default()
        .with_naptr(
            "example.com",
            &[
                (10, 1, "s", "SIP+D2U", "_sip._udp.example.com"),
                (10, 2, "s", "SIP+D2U", "_sip._udp.example.com"), // same name twice
                (10, 3, "s", "SIP+D2T", "_sip._tcp.example.com"),
            ],
        )
        .with_srv(
            "_sip._udp.example.com",
            &[
                (10, 0, 5060, "a.example.com"),
                (20, 0, 5060, "b.example.com"), // same address as a
                (30, 0, 5060, "a.example.com"), // same target again
            ],
        )
        .with_srv("_sip._tcp.example.com", &[(10, 0, 5060, "a.example.com")])
        .with_ip("a.example.com", &["192.0.2.1"])
        .with_ip("b.example.com", &["192.0.2.1", "192.0.2.2"]);
    let got = run(&fake, "sip:example.com", &all(), 0).await.unwrap();
    assert_eq!(
        short(&got),
        [
            t(Udp, "192.0.2.1:5060"),
            t(Udp, "192.0.2.2:5060"),
            t(Tcp, "192.0.2.1:5060"),
        ]
    );
    // each name is queried once
    let queries = fake.queries();
    let count = |q: &str| queries.iter().filter(|x| x.as_str() == q).count();
    assert_eq!(count("SRV _sip._udp.example.com"), 1);
    assert_eq!(count("A/AAAA a.example.com"), 1);
}

// ---- not found, and failed lookups

#[tokio::test]
async fn a_name_without_records_is_not_found() {
    let fake = Fake::default();
    let err = run(&fake, "sip:nowhere.example", &all(), 0)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, ResolveError::NotFound { name } if name == "nowhere.example"),
        "{err:?}"
    );
    assert_eq!(fake.queries().len(), 1 + 3 + 1);
}

#[tokio::test]
async fn a_failed_naptr_lookup_does_not_stop_srv() {
    let fake = naptr_zone().failing(RecordKind::Naptr, "example.com");
    let got = run(&fake, "sip:example.com", &config(&[Udp]), 0)
        .await
        .unwrap();
    assert_eq!(short(&got), [t(Udp, "192.0.2.1:5060")]);
}

#[tokio::test]
async fn failed_lookups_of_some_names_leave_the_others() {
    let fake = Fake::default()
        .failing(RecordKind::Srv, "_sip._udp.example.com")
        .with_srv(
            "_sip._tcp.example.com",
            &[
                (10, 0, 5060, "down.example.com"),
                (20, 0, 5060, "up.example.com"),
            ],
        )
        .failing(RecordKind::Ip, "down.example.com")
        .with_ip("up.example.com", &["192.0.2.7"]);
    let got = run(&fake, "sip:example.com", &all(), 0).await.unwrap();
    assert_eq!(short(&got), [t(Tcp, "192.0.2.7:5060")]);
}

#[tokio::test]
async fn when_everything_fails_the_first_failure_is_returned() {
    let fake = Fake::default()
        .failing(RecordKind::Naptr, "example.com")
        .failing(RecordKind::Srv, "_sip._udp.example.com");
    let err = run(&fake, "sip:example.com", &config(&[Udp]), 0)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, ResolveError::Lookup { name, record: RecordKind::Naptr, .. } if name == "example.com"),
        "{err:?}"
    );
    // and the A/AAAA fallback was still tried
    assert!(fake.queries().contains(&"A/AAAA example.com".to_owned()));
}

// ---- the future can be spawned

#[tokio::test]
async fn resolution_runs_in_a_spawned_task() {
    let fake = std::sync::Arc::new(Fake::default().with_ip("example.com", &["192.0.2.1"]));
    let task = tokio::spawn({
        let fake = fake.clone();
        async move {
            let mut random = || 0u32;
            resolve(
                &*fake,
                &uri("sip:example.com"),
                &ResolveConfig::default(),
                &mut random,
            )
            .await
        }
    });
    let got = task.await.unwrap().unwrap();
    assert_eq!(got[0].addr, SocketAddr::from(([192, 0, 2, 1], 5060)));
}
