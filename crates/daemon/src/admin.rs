//! The admin HTTP listener (`[admin] listen`): Prometheus metrics at `GET /metrics`, the
//! recent calls at `GET /calls` and a call's ladder diagram at `GET /calls/{call_id}`.
//! With `[admin] token`, every request must carry `Authorization: Bearer <token>`.

use axum::Router;
use axum::extract::{Path, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use runtime::Tandem;
use runtime::observe::ladder::Ladder;
use std::sync::Arc;
use std::time::Duration;
use tracing::info;

/// Histogram buckets of every `*_seconds` metric: 100 µs to 10 s.
const BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];

/// Installs the Prometheus recorder as the process's `metrics` recorder (once, before the
/// driver starts) and describes the metrics.
pub fn install_metrics() -> Result<PrometheusHandle, String> {
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_seconds".to_owned()), BUCKETS)
        .and_then(PrometheusBuilder::install_recorder)
        .map_err(|e| format!("cannot install the metrics recorder: {e}"))?;
    runtime::observe::describe();
    metrics::describe_counter!(
        "tandem_webhook_deliveries_failed_total",
        "Webhook deliveries given up (attempts exhausted or undeliverable URI)."
    );
    metrics::describe_counter!(
        "tandem_webhook_deliveries_dropped_total",
        "Webhook deliveries dropped because their destination's queue was full."
    );
    metrics::describe_counter!(
        "tandem_webhook_deliveries_total",
        "Webhook deliveries answered with a 2xx."
    );
    metrics::describe_counter!(
        "tandem_events_published_total",
        "Control API events published."
    );
    metrics::describe_gauge!(
        "tandem_event_stream_clients",
        "Event stream subscriptions open now."
    );
    metrics::describe_gauge!(
        "tandem_event_stream_lag_events",
        "Events the slowest event stream subscription has yet to read."
    );
    Ok(handle)
}

/// What the admin routes read.
#[derive(Debug, Clone)]
pub struct Admin {
    pub tandem: Tandem,
    pub metrics: PrometheusHandle,
    pub ladder: Ladder,
    pub hub: Option<control_api::hub::EventHub>,
    pub token: Option<String>,
    pub transports: runtime::observe::TransportProbe,
}

/// The routes.
pub fn router(admin: Admin) -> Router {
    // The control API's check: SHA-256 digests compared in constant time.
    let auth = Arc::new(control_api::require_token(admin.token.clone()));
    let admin = Arc::new(admin);
    Router::new()
        .route("/metrics", get(metrics_text))
        .route("/calls", get(calls))
        .route("/calls/{call_id}", get(call))
        .layer(middleware::from_fn_with_state(auth, bearer))
        .with_state(admin)
}

async fn bearer(
    State(auth): State<Arc<control_api::RequireToken>>,
    request: Request,
    next: Next,
) -> Response {
    let given = request
        .headers()
        .get(header::AUTHORIZATION)
        .map(|v| v.as_bytes());
    if !auth.allows(given) {
        return (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Bearer")],
            "a bearer token is required\n",
        )
            .into_response();
    }
    next.run(request).await
}

async fn metrics_text(State(admin): State<Arc<Admin>>) -> Response {
    // Gauges the engine keeps are read now, on the driver (bounded: a stuck driver
    // still gets the rest rendered).
    let snapshot = admin
        .tandem
        .with_engine(|engine, _| runtime::observe::engine_snapshot(engine));
    if let Ok(Ok((stats, trunks))) = tokio::time::timeout(Duration::from_secs(2), snapshot).await {
        runtime::observe::export_engine(&stats, &trunks);
    }
    admin.transports.export();
    if let Some(hub) = &admin.hub {
        let s = hub.stats();
        metrics::counter!("tandem_webhook_deliveries_failed_total").absolute(s.failed);
        metrics::counter!("tandem_webhook_deliveries_dropped_total").absolute(s.webhook_dropped);
        metrics::counter!("tandem_webhook_deliveries_total").absolute(s.delivered);
        metrics::counter!("tandem_events_published_total").absolute(s.published);
        metrics::gauge!("tandem_event_stream_clients").set(s.stream_clients as f64);
        metrics::gauge!("tandem_event_stream_lag_events").set(hub.stream_lag() as f64);
    }
    admin.metrics.run_upkeep();
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        admin.metrics.render(),
    )
        .into_response()
}

async fn calls(State(admin): State<Arc<Admin>>) -> Html<String> {
    Html(crate::ladder_html::calls_page(&admin.ladder.recent()))
}

async fn call(State(admin): State<Arc<Admin>>, Path(call_id): Path<String>) -> Response {
    match admin.ladder.call(&call_id) {
        Some(record) => Html(crate::ladder_html::ladder_page(&record)).into_response(),
        None => (
            StatusCode::NOT_FOUND,
            "no such call among the recent ones\n",
        )
            .into_response(),
    }
}

/// Starts what `[admin]` and `[hep]` configure: installs the metrics recorder, binds the
/// admin listener (a taken port refuses the start) and serves it beside the driver;
/// returns the driver's tap (HEP export, the ladder ring).
pub async fn start(
    settings: &crate::observe_config::ObserveSettings,
    tandem: Tandem,
    hub: Option<control_api::hub::EventHub>,
) -> Result<runtime::observe::Observe, String> {
    let mut config = runtime::observe::ObserveConfig {
        hep: settings.hep.clone(),
        ladder: None,
    };
    if let Some(hep) = &settings.hep {
        tracing::info!(collector = %hep.collector, capture_id = hep.capture_id, "HEP export on");
    }
    if let Some(listen) = settings.admin_listen {
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .map_err(|e| format!("cannot bind the admin listener on {listen}: {e}"))?;
        let bound = listener.local_addr().map_err(|e| e.to_string())?;
        let metrics = install_metrics()?;
        let ladder = Ladder::new(settings.ladder_calls, settings.ladder_messages);
        config.ladder = Some(ladder.clone());
        if settings.admin_token.is_none() && !bound.ip().is_loopback() {
            tracing::warn!(%bound, "the admin listener has no token: anyone who reaches it reads the calls' messages");
        }
        let observe = runtime::observe::Observe::new(config);
        let router = router(Admin {
            tandem,
            metrics,
            ladder,
            hub,
            token: settings.admin_token.clone(),
            transports: observe.transport_probe(),
        });
        tokio::spawn(async move {
            info!(admin = %bound, "admin listener serving /metrics and /calls");
            if let Err(e) = axum::serve(listener, router).await {
                tracing::error!(error = %e, "the admin listener stopped");
            }
        });
        return Ok(observe);
    }
    Ok(runtime::observe::Observe::new(config))
}
