//! The resilience layer's prometheus metrics, in the default registry.

use std::sync::LazyLock;

use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, Opts};
use tokio::time::Instant;

use super::is_transient;
use crate::store::StoreError;

fn counter(name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    match IntCounterVec::new(Opts::new(name, help), labels) {
        Ok(c) => {
            let _ = prometheus::default_registry().register(Box::new(c.clone()));
            c
        }
        Err(e) => unreachable!("constant metric options are valid: {e}"),
    }
}

pub(super) static REQUESTS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    counter(
        "strata_tier_store_requests_total",
        "Object store calls by outcome (ok, not_found, error, transient, aborted), after retries.",
        &["op", "outcome"],
    )
});
pub(super) static RETRIES: LazyLock<IntCounterVec> = LazyLock::new(|| {
    counter(
        "strata_tier_store_retries_total",
        "Object store attempts after the first of a call.",
        &["op"],
    )
});
pub(super) static SECONDS: LazyLock<HistogramVec> = LazyLock::new(|| {
    let buckets = prometheus::exponential_buckets(0.001, 2.0, 18).unwrap_or_default();
    let opts = HistogramOpts::new(
        "strata_tier_store_request_seconds",
        "Duration of object store calls, retries and backoff included.",
    )
    .buckets(buckets);
    match HistogramVec::new(opts, &["op"]) {
        Ok(h) => {
            let _ = prometheus::default_registry().register(Box::new(h.clone()));
            h
        }
        Err(e) => unreachable!("constant metric options are valid: {e}"),
    }
});

pub(super) fn record<T>(op: &'static str, result: &object_store::Result<T>, started: Instant) {
    let outcome = match result {
        Ok(_) => "ok",
        Err(object_store::Error::NotFound { .. }) => "not_found",
        Err(e) if is_transient(e) => "transient",
        Err(object_store::Error::Generic { source, .. })
            if matches!(
                source.downcast_ref::<StoreError>(),
                Some(StoreError::Aborted { .. })
            ) =>
        {
            "aborted"
        }
        Err(_) => "error",
    };
    REQUESTS.with_label_values(&[op, outcome]).inc();
    SECONDS
        .with_label_values(&[op])
        .observe(started.elapsed().as_secs_f64());
}
