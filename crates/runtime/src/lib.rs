//! `runtime`: the tokio driver of Tandem's sans-IO core.
//!
//! One task owns the call [`Engine`] (the protocol core, which never reads the clock or
//! touches a socket) and the [`Transports`]. It feeds the core what arrives and the
//! time it asked to be woken at, and sends what the core hands back. Shutdown is an
//! input: [`run`] returns when the `shutdown` future completes.
//!
//! Applications use the core through the async façade in [`app`]: a [`Tandem`] handle,
//! endpoints, conversations and calls whose event streams exist from construction.
#![forbid(unsafe_code)]

pub mod app;
pub mod lifecycle;
/// The driver's media plane. Public for the crate's tests only: not a stable API.
#[doc(hidden)]
pub mod media_plane;
pub mod observe;

use app::{ApiReceiver, AppState};
use calls::{Engine, EngineConfig, Event};
use sip_core::{EndpointEvent, TrunkTarget};
use sip_resolve::{HickoryLookup, ResolveConfig};
use sip_transport::{Inbound, TransportConfig, TransportError, Transports};
use std::future::Future;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot};
use tracing::{debug, info, warn};

pub use app::Tandem;
pub use calls;
pub use media;
pub use sip_core;
pub use sip_transport;

/// What the driver needs to start.
#[derive(Debug, Clone)]
pub struct RuntimeConfig {
    pub transport: TransportConfig,
    pub engine: EngineConfig,
    /// DNS servers for RFC 3263 lookups of trunk proxies; empty: the system's
    /// (/etc/resolv.conf).
    pub dns_servers: Vec<SocketAddr>,
    /// The address RTP sockets bind to; `None`: every address (0.0.0.0). The port range
    /// is the engine's (`engine.media`).
    pub media_address: Option<std::net::IpAddr>,
}

/// How often a trunk proxy's name is looked up again.
const RESOLVE_EVERY: Duration = Duration::from_secs(300);
/// How long shutdown waits for its last requests (un-REGISTERs, the BYEs of the calls
/// it ended) to be answered, re-sending them on their timers meanwhile.
const UNREGISTER_GRACE: Duration = Duration::from_secs(2);

/// Nothing left to wait for at a shutdown: no un-REGISTER, and no request of ours (a
/// BYE) without its final response.
fn settled(endpoint: &Engine) -> bool {
    let core = endpoint.core_ref();
    !core.unregistering() && core.requests_awaiting_answer() == 0
}

/// Requests from the process around the driver (signals, later the control API).
#[derive(Debug)]
#[non_exhaustive]
pub enum Control {
    /// Apply the changeable parts of a new configuration between two inputs; the
    /// reload's `reply` gets what changed.
    Reload(Box<lifecycle::Reload>),
    /// Answer with the driver's status: the daemon's watchdog tick (answered from the
    /// loop itself, so a stuck loop stops the watchdog) and its STATUS= line.
    Status(oneshot::Sender<lifecycle::Status>),
    /// Graceful shutdown: new requests outside a dialog get 503 with `Retry-After:
    /// retry_after` seconds; calls in progress go on until they end or `grace` is over
    /// (then they get BYE); then trunks un-REGISTER and the driver returns.
    Drain { grace: Duration, retry_after: u32 },
    /// Log a `stats` line.
    LogStats,
    /// Place a call to `to` through trunk `trunk` (with our SDP offer): the seam the
    /// control API will use.
    Call { trunk: String, to: String },
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RuntimeError {
    #[error("cannot bind the SIP sockets: {0}")]
    Bind(#[from] TransportError),
    #[error("media: {0}")]
    Media(#[from] media_transport::TransportError),
    #[error("the driver task stopped")]
    Stopped,
}

/// Messages drained from the inbound queue per wake-up before the core's output is
/// flushed: bounds latency while letting a burst be handled in one pass.
const INBOUND_BATCH: usize = 64;

/// The tokio clock as the core's `now`. Under `tokio::time::pause` it is virtual.
fn now() -> Instant {
    tokio::time::Instant::now().into_std()
}

/// Binds the sockets, then drives the core until `shutdown` completes. `ready` is
/// called once every socket is bound, with their addresses (the daemon logs them and
/// tells systemd).
pub async fn run(
    config: RuntimeConfig,
    control: mpsc::Receiver<Control>,
    shutdown: impl Future<Output = ()>,
    ready: impl FnOnce(&[(sip_message::Transport, SocketAddr)]),
) -> Result<(), RuntimeError> {
    let (_tandem, api) = app::channel();
    run_with_api(config, control, api, shutdown, ready).await
}

/// [`run`], serving applications through the [`Tandem`] handle made with
/// [`app::channel`].
pub async fn run_with_api(
    config: RuntimeConfig,
    control: mpsc::Receiver<Control>,
    api: ApiReceiver,
    shutdown: impl Future<Output = ()>,
    ready: impl FnOnce(&[(sip_message::Transport, SocketAddr)]),
) -> Result<(), RuntimeError> {
    let observe = observe::Observe::default();
    run_observed(config, observe, control, api, shutdown, ready).await
}

/// [`run_with_api`] with a tap on every message: metrics, HEP export, the ladder ring
/// (see [`observe`]).
pub async fn run_observed(
    config: RuntimeConfig,
    mut observe: observe::Observe,
    mut control: mpsc::Receiver<Control>,
    mut api: ApiReceiver,
    shutdown: impl Future<Output = ()>,
    ready: impl FnOnce(&[(sip_message::Transport, SocketAddr)]),
) -> Result<(), RuntimeError> {
    let (transports, mut inbound) = Transports::bind(config.transport).await?;
    ready(&transports.local_addrs());
    observe.bound(&transports);
    let mut engine_config = config.engine;
    // Tags, branches and Call-IDs come from the seed: two processes with the same seed
    // would write the same ones (and a peer would take the second for a merged request).
    if engine_config.endpoint.seed == 0 {
        engine_config.endpoint.seed = entropy();
    }
    let media_ports = (
        engine_config.media.first_port,
        engine_config.media.last_port,
    );
    let media_seed = engine_config.endpoint.seed;
    let mut endpoint = Engine::new(engine_config);
    let media_ip = config
        .media_address
        .unwrap_or(std::net::IpAddr::from([0, 0, 0, 0]));
    let (plane, ports, mut media_events) =
        media_plane::MediaPlane::new(media_ip, media_ports, media_seed)?;
    endpoint.set_port_source(Box::new(ports));
    endpoint.core().set_local_addrs(transports.local_addrs());
    endpoint.core().start(now());
    let mut app = AppState::new(api.tandem(), plane);
    let (resolved_tx, mut resolved) = mpsc::channel(16);
    let dns_servers = config.dns_servers;
    let mut resolver = tokio::spawn(resolve_trunks(
        endpoint.core().trunk_proxies(),
        dns_servers.clone(),
        resolved_tx.clone(),
    ));
    tokio::pin!(shutdown);
    let mut control_open = true;
    let mut grace: Option<tokio::time::Instant> = None;
    let mut drain: Option<lifecycle::Drain> = None;
    loop {
        let mut batch = None;
        let deadline = endpoint.poll_timeout().map(tokio::time::Instant::from_std);
        let shutting_down = grace.is_some();
        let grace_over = async {
            match grace {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        let drain_over = sleep_until(drain.map(|d| d.deadline).filter(|_| !shutting_down));
        tokio::select! {
            biased;
            () = &mut shutdown, if !shutting_down => {
                // Calls get BYE; un-REGISTER, then keep running briefly so the answers
                // arrive.
                let ended = endpoint.terminate_all(now());
                if ended > 0 {
                    info!(calls = ended, "stopping: calls ended");
                }
                endpoint.core().shutdown(now());
                grace = Some(tokio::time::Instant::now() + UNREGISTER_GRACE);
            }
            () = drain_over => {
                if let Some(d) = drain.as_mut() {
                    if d.ended {
                        // The BYEs had their time: stop.
                        endpoint.core().shutdown(now());
                        grace = Some(tokio::time::Instant::now() + UNREGISTER_GRACE);
                    } else {
                        // Said before the BYEs go, so the log reads in order.
                        info!(
                            calls = endpoint.call_count(),
                            "drain: grace period over, calls ended with BYE"
                        );
                        endpoint.terminate_all(now());
                        d.ended = true;
                        d.deadline = tokio::time::Instant::now() + lifecycle::BYE_GRACE;
                    }
                }
            }
            () = grace_over => break,
            Some((trunk, targets)) = resolved.recv() => {
                endpoint.core().set_trunk_targets(now(), &trunk, targets);
            }
            Some(job) = api.recv() => job(&mut app, &mut endpoint, now()),
            Some((call, event)) = media_events.recv() => {
                if let Some(indication) = media_plane::indication(event) {
                    endpoint.handle_media(now(), call, indication);
                }
            }
            item = control.recv(), if control_open => match item {
                Some(Control::LogStats) => log_stats(&endpoint, &transports),
                Some(Control::Status(reply)) => {
                    let _ = reply.send(lifecycle::status(&endpoint));
                }
                Some(Control::Reload(reload)) => {
                    let trunks_changed = reload.trunks.is_some();
                    let (applied, reply) =
                        lifecycle::apply(&mut endpoint, &transports, now(), *reload);
                    if let Some(reply) = reply {
                        let _ = reply.send(applied);
                    }
                    if trunks_changed {
                        // Trunks named by a domain are looked up again.
                        resolver.abort();
                        resolver = tokio::spawn(resolve_trunks(
                            endpoint.core().trunk_proxies(),
                            dns_servers.clone(),
                            resolved_tx.clone(),
                        ));
                    }
                }
                Some(Control::Drain { grace: period, retry_after }) => {
                    if drain.is_none() && !shutting_down {
                        drain = Some(lifecycle::Drain::start(&mut endpoint, period, retry_after));
                    }
                }
                Some(Control::Call { trunk, to }) => {
                    match endpoint.core().call(now(), &trunk, &to, None) {
                        Ok(session) => info!(%trunk, %to, %session, "call placed"),
                        Err(error) => warn!(%trunk, %to, %error, "call not placed"),
                    }
                }
                None => control_open = false,
            },
            item = inbound.recv() => {
                let Some(item) = item else { break };
                let now = now();
                batch = Some(Instant::now());
                feed(&mut endpoint, &mut observe, now, item);
                for _ in 1..INBOUND_BATCH {
                    match inbound.try_recv() {
                        Ok(item) => feed(&mut endpoint, &mut observe, now, item),
                        Err(_) => break,
                    }
                }
                // `biased` polls input before the timer: under a sustained flood the
                // timer branch would never run, so retransmissions and the removal of
                // finished transactions would stop. Fire what is due after each batch.
                if endpoint.poll_timeout().is_some_and(|due| due <= now) {
                    endpoint.handle_timeout(now);
                }
            }
            () = sleep_until(deadline) => endpoint.handle_timeout(now()),
        }
        flush(&mut endpoint, &mut app, &transports, &mut observe).await;
        observe.end_turn(batch);
        if grace.is_some() && settled(&endpoint) {
            break;
        }
        if drain.is_some() && grace.is_none() && endpoint.call_count() == 0 {
            info!("drain: no call left");
            endpoint.core().shutdown(now());
            grace = Some(tokio::time::Instant::now() + UNREGISTER_GRACE);
            // The un-REGISTERs leave now, not at the next wake-up.
            flush(&mut endpoint, &mut app, &transports, &mut observe).await;
            if settled(&endpoint) {
                break;
            }
        }
    }
    resolver.abort();
    log_stats(&endpoint, &transports);
    transports.shutdown().await;
    Ok(())
}

/// RFC 3263: looks up each trunk proxy named by a domain (NAPTR, SRV, A/AAAA) and
/// sends the targets, in failover order, to the driver; again every few minutes.
async fn resolve_trunks(
    proxies: Vec<(String, String)>,
    servers: Vec<SocketAddr>,
    out: mpsc::Sender<(String, Vec<TrunkTarget>)>,
) {
    let named: Vec<(String, sip_message::SipUri)> = proxies
        .into_iter()
        .filter_map(|(name, proxy)| {
            let uri = sip_message::Uri::parse(proxy.as_bytes()).ok()?;
            let sip = uri.as_sip()?.clone();
            matches!(sip.host, sip_message::Host::Domain(_)).then_some((name, sip))
        })
        .collect();
    if named.is_empty() {
        return;
    }
    let lookup = if servers.is_empty() {
        HickoryLookup::from_system_conf()
    } else {
        HickoryLookup::with_servers(&servers)
    };
    let lookup = match lookup {
        Ok(lookup) => lookup,
        Err(error) => {
            warn!(%error, "no DNS resolver: trunks named by a domain cannot be reached");
            return;
        }
    };
    let config = ResolveConfig {
        transports: vec![
            sip_message::Transport::Udp,
            sip_message::Transport::Tcp,
            sip_message::Transport::Tls,
        ],
        prefer_ipv6: false,
    };
    let mut seed = std::process::id();
    let mut random = move || {
        seed ^= seed << 13;
        seed ^= seed >> 17;
        seed ^= seed << 5;
        seed
    };
    loop {
        for (name, uri) in &named {
            match sip_resolve::resolve(&lookup, uri, &config, &mut random).await {
                Ok(targets) => {
                    let targets: Vec<TrunkTarget> = targets
                        .into_iter()
                        .map(|t| TrunkTarget {
                            transport: t.transport,
                            addr: t.addr,
                        })
                        .collect();
                    info!(trunk = %name, targets = targets.len(), "trunk proxy resolved");
                    if out.send((name.clone(), targets)).await.is_err() {
                        return;
                    }
                }
                Err(error) => warn!(trunk = %name, %error, "trunk proxy not resolved"),
            }
        }
        tokio::time::sleep(RESOLVE_EVERY).await;
    }
}

/// A seed from the clock, the process id and std's per-process hasher keys.
fn entropy() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default(),
    );
    hasher.write_u32(std::process::id());
    hasher.finish() | 1
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

fn feed(endpoint: &mut Engine, observe: &mut observe::Observe, now: Instant, item: Inbound) {
    match item {
        Inbound::Message { flow, data } => {
            // The core's work on this message logs inside a span with its Call-ID.
            let _call = observe.received(&flow, &data);
            endpoint.handle_message(now, data, flow);
        }
        Inbound::TransportError { flow, error } => {
            debug!(remote = %flow.remote, transport = %flow.transport, %error, "transport error");
            endpoint.handle_transport_error(now, flow);
        }
        Inbound::ConnectionClosed { flow, reason } => {
            debug!(remote = %flow.remote, ?reason, "connection closed");
        }
        _ => {}
    }
}

/// Sends everything the core queued, routes call events to their applications and logs
/// the rest.
async fn flush(
    endpoint: &mut Engine,
    app: &mut AppState,
    transports: &Transports,
    observe: &mut observe::Observe,
) {
    while let Some(transmit) = endpoint.poll_transmit() {
        let flow = transmit.flow;
        observe.sent(&transmit);
        if let Err(error) = transports.send(transmit).await {
            debug!(remote = %flow.remote, transport = %flow.transport, %error, "send failed");
            endpoint.handle_transport_error(now(), flow);
        }
    }
    while let Some(event) = endpoint.poll_event() {
        let _call = observe::event_span(endpoint, &event);
        if let Event::Bridge { bridge, event } = &event
            && matches!(
                event,
                calls::B2bEvent::StateChanged {
                    previous: calls::B2bState::Idle,
                    ..
                } | calls::B2bEvent::Rebridged { .. }
            )
            && let Some((a, b)) = endpoint.bridge_legs(*bridge)
            && let (Some(a), Some(b)) = (endpoint.sip_call_id(a), endpoint.sip_call_id(b))
        {
            // The legs of one call, as the engine knows them (not guessed from the wire).
            observe.bridged(&a, &b);
        }
        match event {
            Event::Core(event) => log_event(&event),
            Event::Media { call, instruction } => {
                app.media.instruct(endpoint, now(), call, instruction);
            }
            other => app.route(other),
        }
    }
}

fn log_event(event: &EndpointEvent) {
    match event {
        EndpointEvent::Dropped { reason, remote } => {
            debug!(%remote, %reason, "message dropped");
        }
        EndpointEvent::Trunk(event) => info!(?event, "trunk"),
        other => debug!(event = ?other, "endpoint"),
    }
}

fn log_stats(endpoint: &Engine, transports: &Transports) {
    let e = endpoint.stats();
    let s = e.core;
    let t = transports.stats();
    info!(
        transactions = s.transactions,
        client_invite = s.client_invite,
        client_non_invite = s.client_non_invite,
        server_invite = s.server_invite,
        server_non_invite = s.server_non_invite,
        dialogs = s.dialogs,
        requests_in = s.requests_in,
        responses_in = s.responses_in,
        invites_new = s.invites_new,
        calls_answered = e.calls_answered,
        calls = e.calls,
        rejected_400 = s.rejected_invalid,
        dropped = s.dropped,
        rate_limited = s.rate_limited,
        banned_sources = s.banned_sources,
        scanner_dropped = s.scanner_dropped,
        over_capacity = s.over_capacity,
        auth_failed = s.auth_failed,
        udp_in = t.datagrams_in,
        udp_out = t.datagrams_out,
        tcp_open = t.tcp_open,
        tls_open = t.tls_open,
        ws_open = t.ws_open,
        wss_open = t.wss_open,
        tls_handshakes = t.tls_handshakes,
        ws_upgrades = t.ws_upgrades,
        "stats"
    );
    if s.dropped > 0 {
        warn!(
            dropped = s.dropped,
            "messages dropped since start (malformed or stray)"
        );
    }
}

/// A Tandem driver running in a task of its own, for applications that embed it.
#[derive(Debug)]
pub struct Running {
    /// The handle applications use.
    pub tandem: Tandem,
    /// The bound sockets.
    pub local_addrs: Vec<(sip_message::Transport, SocketAddr)>,
    stop: oneshot::Sender<()>,
    task: tokio::task::JoinHandle<Result<(), RuntimeError>>,
}

/// Binds the sockets and runs the driver in a task; returns once every socket is bound.
pub async fn start(config: RuntimeConfig) -> Result<Running, RuntimeError> {
    let (tandem, api) = app::channel();
    let (_control, control) = mpsc::channel::<Control>(1);
    let (stop, stopped) = oneshot::channel::<()>();
    let (ready_tx, ready) = oneshot::channel();
    let mut task = tokio::spawn(run_with_api(
        config,
        control,
        api,
        async {
            let _ = stopped.await;
        },
        move |addrs| {
            let _ = ready_tx.send(addrs.to_vec());
        },
    ));
    tokio::select! {
        Ok(local_addrs) = ready => Ok(Running { tandem, local_addrs, stop, task }),
        result = &mut task => match result {
            Ok(Err(error)) => Err(error),
            _ => Err(RuntimeError::Stopped),
        },
    }
}

impl Running {
    /// Stops the driver (un-REGISTERs first, as at any shutdown) and waits for it.
    pub async fn stop(self) -> Result<(), RuntimeError> {
        let _ = self.stop.send(());
        self.task.await.map_err(|_| RuntimeError::Stopped)?
    }
}
