//! Operations: `/healthz`, `/metrics`, and the middleware that counts every
//! request and turns a handler panic into a JSON 500 instead of a dropped
//! connection.

use std::panic::AssertUnwindSafe;
use std::sync::LazyLock;
use std::time::Instant;

use axum::Json;
use axum::extract::State;
use axum::extract::{MatchedPath, Request};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use futures::FutureExt;
use prometheus::{Encoder, HistogramOpts, HistogramVec, IntCounterVec, Opts, TextEncoder};
use serde::{Deserialize, Serialize};
use strata_api::ErrorCode;

use crate::state::AppState;
use utoipa::ToSchema;

use super::error::HttpError;

struct HttpMetrics {
    requests: IntCounterVec,
    seconds: HistogramVec,
}

static METRICS: LazyLock<Option<HttpMetrics>> = LazyLock::new(|| {
    let requests = IntCounterVec::new(
        Opts::new(
            "strata_http_requests_total",
            "HTTP requests by method, route and status",
        ),
        &["method", "route", "status"],
    )
    .ok()?;
    let seconds = HistogramVec::new(
        HistogramOpts::new(
            "strata_http_request_duration_seconds",
            "Time to the HTTP response head, by method and route",
        ),
        &["method", "route"],
    )
    .ok()?;
    // Registering twice (several routers in one process) is harmless.
    let _ = prometheus::register(Box::new(requests.clone()));
    let _ = prometheus::register(Box::new(seconds.clone()));
    Some(HttpMetrics { requests, seconds })
});

/// Counts requests by route and status; a panic becomes a JSON 500.
pub async fn track(req: Request, next: Next) -> Response {
    let method = req.method().as_str().to_owned();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", |p| p.as_str())
        .to_owned();
    let started = Instant::now();
    let response = match AssertUnwindSafe(next.run(req)).catch_unwind().await {
        Ok(r) => r,
        Err(_) => {
            tracing::error!(%method, %route, "handler panicked");
            HttpError::new(
                ErrorCode::Internal,
                "the server hit an unexpected condition",
            )
            .into_response()
        }
    };
    if let Some(m) = METRICS.as_ref() {
        m.requests
            .with_label_values(&[method.as_str(), route.as_str(), response.status().as_str()])
            .inc();
        m.seconds
            .with_label_values(&[method.as_str(), route.as_str()])
            .observe(started.elapsed().as_secs_f64());
    }
    response
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Health {
    /// `ok`
    pub status: String,
}

/// Liveness.
#[utoipa::path(
    get,
    path = "/healthz",
    tag = "ops",
    responses((status = 200, description = "The server is up", body = Health))
)]
pub async fn healthz() -> Json<Health> {
    Json(Health {
        status: "ok".into(),
    })
}

/// Prometheus metrics in the text exposition format.
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "ops",
    responses((status = 200, description = "Prometheus text format", body = String, content_type = "text/plain"))
)]
pub async fn metrics(State(state): State<AppState>) -> Response {
    LazyLock::force(&METRICS);
    if let Err(e) = state.broker.refresh_partition_metrics().await {
        tracing::warn!(error = %e, "cannot refresh partition offset metrics");
    }
    let encoder = TextEncoder::new();
    let mut buf = Vec::new();
    if let Err(e) = encoder.encode(&prometheus::gather(), &mut buf) {
        return HttpError::new(ErrorCode::Internal, format!("cannot encode metrics: {e}"))
            .into_response();
    }
    (
        [(header::CONTENT_TYPE, encoder.format_type().to_owned())],
        buf,
    )
        .into_response()
}
