//! The HTTP API (axum, JSON, SSE) under `/v1/tenants/{tenant}`.
//!
//! One file per resource: [`tenants`], [`topics`], [`records`] (produce,
//! conditional append, read), [`stream`] (tailing with Server-Sent Events),
//! [`groups`], [`ops`] (health, metrics, request accounting), [`openapi`].
//! [`error`] turns every failure, including axum's extractor rejections,
//! unknown routes and oversized bodies, into the one JSON error model;
//! [`codec`] handles the UTF-8 / base64 encoding of keys and values.
//!
//! The route table [`routes`] is the single source of truth: the router is
//! built from it and a test checks that the OpenAPI document covers it
//! exactly.

mod cluster;
mod codec;
mod error;
mod groups;
mod openapi;
mod ops;
mod records;
mod stream;
mod tenants;
mod topics;

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_errors;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::handler::Handler;
use axum::http::Method;
use axum::routing::{MethodFilter, MethodRouter};

use crate::state::AppState;

type Route = (Method, &'static str, MethodRouter<AppState>);

fn on<H, T>(method: Method, path: &'static str, handler: H) -> Route
where
    H: Handler<T, AppState>,
    T: 'static,
{
    let router = match MethodFilter::try_from(method.clone()) {
        Ok(filter) => axum::routing::on(filter, handler),
        // Not reachable with the methods below; the OpenAPI test would notice.
        Err(_) => MethodRouter::new(),
    };
    (method, path, router)
}

/// Every route: method, path, handler.
fn routes() -> Vec<Route> {
    const TENANT: &str = "/v1/tenants/{tenant}";
    const TOPICS: &str = "/v1/tenants/{tenant}/topics";
    const TOPIC: &str = "/v1/tenants/{tenant}/topics/{topic}";
    const PARTITION: &str = "/v1/tenants/{tenant}/topics/{topic}/partitions/{partition}";
    const PARTITION_RECORDS: &str =
        "/v1/tenants/{tenant}/topics/{topic}/partitions/{partition}/records";
    const GROUP_OFFSETS: &str = "/v1/tenants/{tenant}/groups/{group}/offsets";
    vec![
        on(Method::GET, "/healthz", ops::healthz),
        on(Method::GET, "/metrics", ops::metrics),
        on(Method::GET, "/v1/openapi.json", openapi::document),
        on(Method::GET, "/v1/cluster", cluster::status),
        on(
            Method::DELETE,
            "/v1/cluster/nodes/{node}",
            cluster::remove_node,
        ),
        on(Method::GET, "/v1/tenants", tenants::list),
        on(Method::PUT, TENANT, tenants::create),
        on(Method::GET, TOPICS, topics::list),
        on(Method::POST, TOPICS, topics::create),
        on(Method::GET, TOPIC, topics::describe),
        on(Method::PATCH, TOPIC, topics::alter),
        on(Method::DELETE, TOPIC, topics::delete),
        on(
            Method::POST,
            "/v1/tenants/{tenant}/topics/{topic}/records",
            records::produce,
        ),
        on(Method::GET, PARTITION, records::partition),
        on(Method::POST, PARTITION_RECORDS, records::append),
        on(Method::GET, PARTITION_RECORDS, records::read),
        on(Method::PUT, GROUP_OFFSETS, groups::commit),
        on(Method::GET, GROUP_OFFSETS, groups::fetch),
    ]
}

/// Every HTTP route: the API, `/healthz`, `/metrics`, `/v1/openapi.json`.
///
/// Request bodies are limited to the broker's `max_request_bytes`
/// (413 `request_too_large` beyond it).
pub fn router(state: AppState) -> Router {
    let limit = usize::try_from(state.broker.config().max_request_bytes).unwrap_or(usize::MAX);
    let mut router = Router::new();
    for (_, path, method_router) in routes() {
        router = router.route(path, method_router);
    }
    router
        .fallback(error::not_found)
        .method_not_allowed_fallback(error::method_not_allowed)
        .layer(DefaultBodyLimit::max(limit))
        .layer(axum::middleware::from_fn(ops::track))
        .with_state(state)
}
