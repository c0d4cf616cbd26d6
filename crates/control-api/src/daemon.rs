//! `POST /v1/daemon:reload`: the daemon re-reads its configuration file, as on SIGHUP.
//! The API only carries the request: the daemon gives the work as a [`ReloadHook`] in
//! [`ApiConfig::reload`](crate::ApiConfig); without one (an embedding application) the
//! route answers 404 (`no-daemon`).

use crate::error::Problem;
use crate::state::Shared;
use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

/// What a reload did: what was applied, and what changed in the file but needs a
/// restart (left as it was).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReloadSummary {
    /// What changed and is in force now ("routes", "trunk changed: carrier",
    /// "log.level", "tls certificate"...).
    pub applied: Vec<String>,
    /// What changed in the file but cannot change while running ("sip.listen",
    /// "media"...): left as it was until a restart.
    pub needs_restart: Vec<String>,
}

/// The daemon's reload: `Err` carries why the file was refused (file, line and key).
pub type ReloadFuture = Pin<Box<dyn Future<Output = Result<ReloadSummary, String>> + Send>>;

/// The daemon's reload, as the API calls it.
#[derive(Clone)]
pub struct ReloadHook(pub Arc<dyn Fn() -> ReloadFuture + Send + Sync>);

impl fmt::Debug for ReloadHook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ReloadHook")
    }
}

/// Re-reads the daemon's configuration file.
#[utoipa::path(
    post,
    path = "/v1/daemon:reload",
    tag = "daemon",
    responses(
        (status = 200, description = "The file was good: what changed is applied (calls in progress go on); `needsRestart` lists what changed but needs a restart (left as it was)", body = ReloadSummary),
        (status = 401, description = "No or a wrong bearer token", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "The file was refused (`detail` names the file, the line and the key); the configuration in force stays", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No daemon behind this API (an embedding application): no configuration file to reload", body = Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn reload(State(shared): State<Arc<Shared>>) -> Response {
    let Some(hook) = shared.config.reload.clone() else {
        return Problem::not_found(
            "no-daemon",
            "no daemon behind this API: there is no configuration file to reload",
        )
        .into_response();
    };
    match (hook.0)().await {
        Ok(summary) => Json(summary).into_response(),
        Err(error) => Problem::unprocessable(None, error).into_response(),
    }
}

#[derive(utoipa::OpenApi)]
#[openapi(
    paths(reload),
    components(schemas(ReloadSummary)),
    tags((name = "daemon", description = "The daemon itself: reload its configuration file (as SIGHUP does)"))
)]
pub(crate) struct DaemonDoc;
