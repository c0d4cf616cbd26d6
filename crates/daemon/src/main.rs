//! `tandem`: the Tandem SIP user agent and B2BUA daemon.
//!
//! ```text
//! tandem run [--config FILE]
//! tandem check-config FILE
//! tandem calls list | call create ... | call hangup ID    (clients of the control API)
//! ```

mod admin;
mod cli;
mod config;
mod ladder_html;
mod lifecycle;
mod observe_config;
mod systemd;

use config::{Behaviour, Config, LogFormat};
use runtime::calls::{DemoBehaviour, EngineConfig};
use runtime::sip_core::{self, EndpointConfig};
use runtime::sip_transport::TlsConfig;
use runtime::{Control, RuntimeConfig};
use sip_message::Transport;
use sip_transaction::TimerConfig;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;
use tokio::sync::mpsc;
use tracing::{error, info};

const USAGE: &str = "\
usage: tandem run [--config FILE]     start the daemon (embedded default config without --config)
       tandem check-config FILE       check a configuration file: exit 0 if good, 1 if refused
       tandem --version";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("run") => run(args.get(1..).unwrap_or_default()),
        Some("check-config") => check_config(args.get(1..).unwrap_or_default()),
        Some("calls" | "call") => cli::run(&args),
        Some("--version" | "-V" | "version") => {
            println!("tandem {}", env!("CARGO_PKG_VERSION"));
            ExitCode::SUCCESS
        }
        Some("--help" | "-h" | "help") => {
            println!("{USAGE}\n{}", cli::USAGE);
            ExitCode::SUCCESS
        }
        _ => {
            eprintln!("{USAGE}\n{}", cli::USAGE);
            ExitCode::from(2)
        }
    }
}

fn check_config(args: &[String]) -> ExitCode {
    let [path] = args else {
        eprintln!("{USAGE}");
        return ExitCode::from(2);
    };
    match Config::load(&PathBuf::from(path)).and_then(|c| c.load_tls(path).map(drop)) {
        Ok(()) => {
            println!("{path}: ok");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("tandem: configuration refused: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: &[String]) -> ExitCode {
    let (config, source) = match args {
        [] => (Config::embedded(), "embedded default"),
        [flag, path] if flag == "--config" || flag == "-c" => {
            (Config::load(&PathBuf::from(path)), path.as_str())
        }
        _ => {
            eprintln!("{USAGE}\n{}", cli::USAGE);
            return ExitCode::from(2);
        }
    };
    // The TLS files are read before anything starts: a bad certificate or key
    // refuses the start, naming the key, the file and the reason.
    let loaded = config.and_then(|config| {
        let tls = config.load_tls(source)?;
        Ok((config, tls))
    });
    let (config, tls) = match loaded {
        Ok(loaded) => loaded,
        Err(e) => {
            eprintln!("tandem: configuration refused: {e}");
            return ExitCode::FAILURE;
        }
    };
    let log = init_logging(&config);
    let path = (source != "embedded default").then(|| PathBuf::from(source));
    let tokio = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            error!(error = %e, "cannot start the async runtime");
            return ExitCode::FAILURE;
        }
    };
    // The daemon runs as a task on a worker, not as this thread's `block_on` future:
    // the driver then runs where the receive tasks woke it, not on a thread of its own
    // that a worker had to wake. The receive tasks stay tasks of their own: reading
    // the sockets beside the driver keeps both cores busy at saturation (the driver
    // reading them itself measured 3,500 clean calls/s against 4,500).
    let served = tokio.block_on(async { tokio::spawn(serve(config, tls, path, log)).await });
    match served {
        Ok(Ok(())) => ExitCode::SUCCESS,
        Ok(Err(e)) => {
            error!(error = %e, "stopped");
            ExitCode::FAILURE
        }
        Err(e) => {
            error!(error = %e, "the daemon's task failed");
            ExitCode::FAILURE
        }
    }
}

/// Logging to stderr with a filter a reload can change (`[log] level`; RUST_LOG wins).
fn init_logging(config: &Config) -> lifecycle::LogLevel {
    use tracing_subscriber::prelude::*;
    use tracing_subscriber::{EnvFilter, fmt, reload};
    // webrtc-sdp warns through `log` about every SDP attribute it does not model
    // (a=crypto, a=rtcp-xr...); sdp-offer-answer keeps and reports those itself.
    let from_env = std::env::var_os("RUST_LOG").is_some();
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(lifecycle::filter_text(&config.log.level)))
        .unwrap_or_else(|_| EnvFilter::new(lifecycle::filter_text("info")));
    let (filter, handle) = reload::Layer::new(filter);
    let layer = fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(std::env::var_os("NO_COLOR").is_none() && std::io::stderr().is_terminal());
    let registry = tracing_subscriber::registry().with(filter);
    match config.log.format {
        LogFormat::Text => registry.with(layer).init(),
        LogFormat::Json => registry.with(layer.json()).init(),
    }
    lifecycle::LogLevel { handle, from_env }
}

fn runtime_config(config: &Config, tls: Option<TlsConfig>) -> RuntimeConfig {
    let addrs = |transport| {
        config
            .sip
            .listen
            .iter()
            .filter(|l| l.transport == transport)
            .map(|l| l.addr)
            .collect::<Vec<_>>()
    };
    let mut transport =
        runtime::sip_transport::TransportConfig::new(addrs(Transport::Udp), addrs(Transport::Tcp));
    transport.tls_listen = addrs(Transport::Tls);
    transport.ws = addrs(Transport::Ws);
    transport.wss = addrs(Transport::Wss);
    transport.tls = tls;
    transport.advertised_host = config.sip.advertised_address.map(|a| a.to_string());
    transport.limits.max_header_bytes = config.sip.max_header_bytes;
    transport.limits.max_body_bytes = config.sip.max_body_bytes;
    let timers = &config.sip.timers;
    let endpoint = EndpointConfig {
        timers: TimerConfig {
            t1: timers.t1(),
            t2: timers.t2(),
            t4: timers.t4(),
        },
        user_agent: config.sip.user_agent.clone(),
        advertised_address: config.sip.advertised_address,
        seed: seed(),
        session_timer: sip_core::SessionTimerConfig {
            enabled: config.sip.session_timer.enabled,
            session_expires: Duration::from_secs(config.sip.session_timer.session_expires_s),
            min_se: Duration::from_secs(config.sip.session_timer.min_se_s),
        },
        trunks: config.trunks.iter().map(trunk_config).collect(),
        inbound: inbound_config(config),
        guard: config.guard_settings.clone(),
    };
    let engine = EngineConfig {
        endpoint,
        demo_users: demo_users(config),
        ring_timeout: Duration::from_secs(config.sip.ring_timeout_s),
        max_call_duration: Duration::from_secs(config.sip.max_call_duration_s),
        media: runtime::calls::MediaSettings {
            first_port: config.media.rtp_port_first,
            last_port: config.media.rtp_port_last,
            timeout: (config.media.timeout_s > 0)
                .then(|| Duration::from_secs(config.media.timeout_s)),
            hangup_on_timeout: config.media.hangup_on_timeout,
        },
        routes: config.route_table.clone(),
        park: config.park_settings.clone(),
        ..EngineConfig::default()
    };
    RuntimeConfig {
        transport,
        engine,
        dns_servers: config.dns.servers.clone(),
        media_address: config.media.address,
    }
}

/// `POST /v1/daemon:reload`: what SIGHUP does, answered with its summary.
fn reload_hook(lifecycle: std::sync::Arc<lifecycle::Lifecycle>) -> control_api::ReloadHook {
    control_api::ReloadHook(std::sync::Arc::new(move || {
        let lifecycle = lifecycle.clone();
        Box::pin(async move {
            info!("reload asked through the control API");
            lifecycle.reload_logged().await
        })
    }))
}

fn inbound_config(config: &Config) -> sip_core::InboundConfig {
    sip_core::InboundConfig {
        accept_any: config.inbound.accept == config::Accept::Any,
        realm: config.inbound.realm.clone(),
        users: config
            .inbound
            .users
            .iter()
            .map(|u| (u.name.clone(), u.password.clone()))
            .collect(),
        nonce_ttl: Duration::from_secs(config.inbound.nonce_ttl_s),
        algorithms: config.inbound.algorithms.iter().map(|a| a.0).collect(),
    }
}

fn demo_users(config: &Config) -> Vec<(String, DemoBehaviour)> {
    config
        .users
        .iter()
        .map(|u| {
            let behaviour = match u.behaviour {
                Behaviour::Echo => DemoBehaviour::Echo,
                Behaviour::Ring => DemoBehaviour::Ring,
                Behaviour::Busy => DemoBehaviour::Busy,
                Behaviour::Answer => DemoBehaviour::Answer,
            };
            (u.name.clone(), behaviour)
        })
        .collect()
}

fn trunk_config(t: &config::TrunkSection) -> sip_core::TrunkConfig {
    let domain = t.domain.clone().unwrap_or_else(|| {
        sip_message::Uri::parse(t.proxy.0.as_bytes())
            .ok()
            .and_then(|u| u.as_sip().map(|s| s.host.to_string()))
            .unwrap_or_default()
    });
    let mut trunk = sip_core::TrunkConfig::new(&t.name, &t.proxy.0, &domain);
    trunk.username = t.username.clone();
    trunk.password = t.password.clone();
    trunk.realm = t.realm.clone();
    trunk.register = t.register;
    trunk.register_expires = Duration::from_secs(t.register_expires_s);
    trunk.options_interval = t.options_interval_s.map(Duration::from_secs);
    trunk.inbound = t.inbound.iter().map(|c| c.0).collect();
    trunk.caller_id = t.caller_id.clone();
    trunk.asserted_identity = t.asserted_identity.clone();
    trunk
}

/// Seeds tag and branch generation: different on every start (RFC 3261 §19.3 wants
/// tags globally unique), from the std hasher's per-process random keys and the time.
fn seed() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default(),
    );
    hasher.write_u32(std::process::id());
    hasher.finish()
}

async fn serve(
    config: Config,
    tls: Option<TlsConfig>,
    path: Option<PathBuf>,
    log: lifecycle::LogLevel,
) -> Result<(), String> {
    use tokio::signal::unix::{SignalKind, signal};
    let (control_tx, control_rx) = mpsc::channel(8);
    let notifier = std::sync::Arc::new(systemd::Notifier::from_env());
    let lifecycle = std::sync::Arc::new(lifecycle::Lifecycle {
        path,
        current: std::sync::Mutex::new(config.clone()),
        log,
        control: control_tx.clone(),
        notifier: notifier.clone(),
        reloading: tokio::sync::Mutex::new(()),
    });
    let mut usr1 = signal(SignalKind::user_defined1()).ok();
    let usr1_tx = control_tx.clone();
    tokio::spawn(async move {
        if let Some(usr1) = usr1.as_mut() {
            while usr1.recv().await.is_some() {
                if usr1_tx.send(Control::LogStats).await.is_err() {
                    break;
                }
            }
        }
    });
    // SIGHUP reloads, SIGTERM drains; SIGINT (or a second SIGTERM) ends this future:
    // stop at once. The handlers are registered now, before any socket is bound and
    // "ready" is said: a signal right after that must find them (not the default
    // action, which kills).
    let shutdown = lifecycle::signals(lifecycle.clone());
    // The control API, when `[api] listen` is set: bound before anything starts (a
    // taken port refuses the start), served beside the driver.
    let (tandem, api_rx) = runtime::app::channel();
    let api = &config.api_settings;
    let mut admin_hub = None;
    if let Some(listen) = api.listen {
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .map_err(|e| format!("cannot bind the control API on {listen}: {e}"))?;
        let bound = listener.local_addr().map_err(|e| e.to_string())?;
        if api.token.is_none() {
            tracing::warn!(%bound, "the control API has no token: anyone who reaches it controls calls");
        }
        let hub = control_api::hub::EventHub::new(control_api::hub::HubConfig {
            retention: api.event_retention,
            webhook_secret: api.webhook_secret.clone(),
            source: format!("/tandem/{bound}"),
            retry: control_api::hub::RetryPolicy {
                attempts: api.webhook_attempts,
                ..control_api::hub::RetryPolicy::default()
            },
            ..control_api::hub::HubConfig::default()
        });
        let api_config = control_api::ApiConfig {
            token: api.token.clone(),
            max_body_bytes: api.max_body_bytes,
            default_trunk: api.default_trunk.clone(),
            messaging_invitation_timeout: api.messaging_invitation_timeout,
            media_dir: api.media_dir.clone(),
            applications: api
                .applications
                .iter()
                .map(|a| {
                    let mut app = control_api::ApplicationConfig::new(&a.name, &a.owner_uri);
                    app.callback_uri = a.callback_uri.clone();
                    app.answer_timeout = a.answer_timeout;
                    app
                })
                .collect(),
            reload: Some(reload_hook(lifecycle.clone())),
            ..control_api::ApiConfig::default()
        };
        admin_hub = Some(hub.clone());
        let token = api.token.clone();
        let tandem = tandem.clone();
        tokio::spawn(async move {
            let api = match control_api::start(tandem, api_config, std::sync::Arc::new(hub.clone()))
                .await
            {
                Ok(api) => api,
                Err(e) => {
                    // A daemon that says it serves the API must: refuse to run without it.
                    error!(error = %e, "the control API did not start: stopping");
                    std::process::exit(1);
                }
            };
            info!(api = %bound, "control API serving");
            let router = control_api::router(&api, hub, token);
            if let Err(e) = axum::serve(listener, router).await {
                error!(error = %e, "the control API stopped");
            }
        });
    }
    let observe = admin::start(&config.observe_settings, tandem.clone(), admin_hub).await?;
    runtime::run_observed(
        runtime_config(&config, tls),
        observe,
        control_rx,
        api_rx,
        shutdown,
        |addrs| {
            let listening: Vec<String> = addrs
                .iter()
                .map(|(t, a)| format!("{}:{a}", t.as_str().to_ascii_lowercase()))
                .collect();
            info!(listen = %listening.join(" "), "ready");
            // Every socket is bound (the control API's before the driver started).
            notifier.notify("READY=1\nSTATUS=0 active calls");
            tokio::spawn(lifecycle::watchdog(
                notifier.clone(),
                control_tx.clone(),
                systemd::watchdog_interval(),
            ));
        },
    )
    .await
    .map_err(|e| e.to_string())
}
