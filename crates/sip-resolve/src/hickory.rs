//! [`DnsLookup`] over hickory-resolver's tokio resolver.

use crate::{DnsLookup, Naptr, RecordKind, ResolveError, Srv};
use hickory_resolver::TokioResolver;
use hickory_resolver::config::{
    ConnectionConfig, LookupIpStrategy, NameServerConfig, ResolveHosts, ResolverConfig,
    ResolverOpts,
};
use hickory_resolver::net::NetError;
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::proto::rr::{RData, RecordType};
use std::net::{IpAddr, SocketAddr};

/// DNS lookups through a caching hickory resolver, on tokio. Cheap to clone: clones
/// share the cache and the connections.
#[derive(Clone, Debug)]
pub struct HickoryLookup {
    resolver: TokioResolver,
}

impl HickoryLookup {
    /// A resolver configured like the system's (`/etc/resolv.conf`, and the hosts
    /// file for A/AAAA), querying A and AAAA together.
    pub fn from_system_conf() -> Result<Self, ResolveError> {
        let system = |e: NetError| ResolveError::SystemConfig {
            source: Box::new(e),
        };
        let mut builder = TokioResolver::builder_tokio().map_err(system)?;
        builder.options_mut().ip_strategy = LookupIpStrategy::Ipv4AndIpv6;
        let resolver = builder.build().map_err(system)?;
        Ok(HickoryLookup { resolver })
    }

    /// A resolver that asks only `servers` (UDP, then TCP for truncated answers), with
    /// no search domains and no hosts file: for tests and for deployments that name
    /// their DNS servers.
    ///
    /// Fails only if hickory cannot build a resolver, which with the features we
    /// enable does not happen; the `Result` keeps a panic out of this path.
    pub fn with_servers(servers: &[SocketAddr]) -> Result<Self, ResolveError> {
        let name_servers = servers
            .iter()
            .map(|s| {
                let mut udp = ConnectionConfig::udp();
                udp.port = s.port();
                let mut tcp = ConnectionConfig::tcp();
                tcp.port = s.port();
                NameServerConfig::new(s.ip(), true, vec![udp, tcp])
            })
            .collect();
        let mut options = ResolverOpts::default();
        options.ip_strategy = LookupIpStrategy::Ipv4AndIpv6;
        options.use_hosts_file = ResolveHosts::Never;
        let resolver = TokioResolver::builder_with_config(
            ResolverConfig::from_name_servers(name_servers),
            TokioRuntimeProvider::default(),
        )
        .with_options(options)
        .build()
        .map_err(|e| ResolveError::SystemConfig {
            source: Box::new(e),
        })?;
        Ok(HickoryLookup { resolver })
    }

    /// The hickory resolver underneath, for lookups this crate does not make.
    pub fn resolver(&self) -> &TokioResolver {
        &self.resolver
    }

    async fn records(
        &self,
        name: &str,
        record_type: RecordType,
        kind: RecordKind,
    ) -> Result<Vec<RData>, ResolveError> {
        match self.resolver.lookup(absolute(name), record_type).await {
            Ok(lookup) => Ok(lookup.answers().iter().map(|r| r.data.clone()).collect()),
            Err(e) => empty_or_error(e, name, kind),
        }
    }
}

/// The name with a trailing dot, so that no search domain is appended.
fn absolute(name: &str) -> String {
    if name.ends_with('.') {
        name.to_owned()
    } else {
        format!("{name}.")
    }
}

/// "No such record" and "no such name" are empty answers; the rest are errors.
fn empty_or_error<T>(e: NetError, name: &str, record: RecordKind) -> Result<Vec<T>, ResolveError> {
    if e.is_no_records_found() {
        Ok(Vec::new())
    } else {
        Err(ResolveError::Lookup {
            name: name.to_owned(),
            record,
            source: Box::new(e),
        })
    }
}

impl DnsLookup for HickoryLookup {
    async fn naptr(&self, name: &str) -> Result<Vec<Naptr>, ResolveError> {
        let records = self
            .records(name, RecordType::NAPTR, RecordKind::Naptr)
            .await?;
        Ok(records
            .into_iter()
            .filter_map(|r| match r {
                RData::NAPTR(n) => Some(Naptr {
                    order: n.order,
                    preference: n.preference,
                    flags: String::from_utf8_lossy(&n.flags).into_owned(),
                    service: String::from_utf8_lossy(&n.services).into_owned(),
                    replacement: n.replacement.to_ascii(),
                }),
                _ => None,
            })
            .collect())
    }

    async fn srv(&self, name: &str) -> Result<Vec<Srv>, ResolveError> {
        let records = self.records(name, RecordType::SRV, RecordKind::Srv).await?;
        Ok(records
            .into_iter()
            .filter_map(|r| match r {
                RData::SRV(s) => Some(Srv {
                    priority: s.priority,
                    weight: s.weight,
                    port: s.port,
                    target: s.target.to_ascii(),
                }),
                _ => None,
            })
            .collect())
    }

    async fn ip(&self, name: &str) -> Result<Vec<IpAddr>, ResolveError> {
        match self.resolver.lookup_ip(absolute(name)).await {
            Ok(lookup) => Ok(lookup.iter().collect()),
            Err(e) => empty_or_error(e, name, RecordKind::Ip),
        }
    }
}
