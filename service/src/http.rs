//! The HTTP side, on its own port: Prometheus metrics and health for operators and
//! orchestrators. It shares the gRPC side's [`Pipeline`].

use std::sync::Arc;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use metrics_exporter_prometheus::PrometheusHandle;

use crate::pipeline::Pipeline;
use crate::security::Token;

#[derive(Clone)]
pub struct HttpState {
    pub pipeline: Arc<Pipeline>,
    pub metrics: PrometheusHandle,
    pub auth: HttpAuth,
}

/// The token each group of endpoints asks for (open when `auth.protect_*` is off).
#[derive(Clone, Default)]
pub struct HttpAuth {
    pub api: Token,
    pub health: Token,
    pub metrics: Token,
}

pub fn router(state: HttpState) -> Router {
    let health = Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz));
    let metrics = Router::new().route("/metrics", get(metrics));
    Router::new()
        .merge(guarded(health, state.auth.health.clone()))
        .merge(guarded(metrics, state.auth.metrics.clone()))
        .with_state(state)
}

/// Requires the bearer token on every route of `routes`.
fn guarded(routes: Router<HttpState>, token: Token) -> Router<HttpState> {
    if !token.enabled() {
        return routes;
    }
    routes.route_layer(axum::middleware::from_fn(
        move |request: Request, next: Next| {
            let token = token.clone();
            async move {
                let given = request
                    .headers()
                    .get(header::AUTHORIZATION)
                    .map(|v| v.as_bytes());
                if token.admits(given) {
                    next.run(request).await
                } else {
                    crate::metrics::record_unauthenticated();
                    unauthorized()
                }
            }
        },
    ))
}

fn unauthorized() -> Response {
    (
        StatusCode::UNAUTHORIZED,
        [(header::WWW_AUTHENTICATE, "Bearer")],
        axum::Json(serde_json::json!({
            "error": "missing or wrong bearer token (Authorization: Bearer <token>)"
        })),
    )
        .into_response()
}

async fn metrics(State(state): State<HttpState>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        state.metrics.render(),
    )
}

/// Live: the process answers.
async fn healthz() -> &'static str {
    "ok\n"
}

/// Ready: the model and index are loaded.
async fn readyz(State(state): State<HttpState>) -> (StatusCode, &'static str) {
    if state.pipeline.is_ready() {
        (StatusCode::OK, "ready\n")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "loading\n")
    }
}
