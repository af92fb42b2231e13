//! Prometheus metrics of the Kafka front end, in the default registry.

use std::sync::LazyLock;

use prometheus::{IntCounterVec, IntGauge, Opts};

fn counter(name: &str, help: &str, label: &str) -> IntCounterVec {
    match IntCounterVec::new(Opts::new(name, help), &[label]) {
        Ok(c) => {
            let _ = prometheus::default_registry().register(Box::new(c.clone()));
            c
        }
        Err(e) => unreachable!("constant metric options are valid: {e}"),
    }
}

pub(crate) static REQUESTS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    counter(
        "strata_kafka_requests_total",
        "Kafka requests decoded, by API.",
        "api",
    )
});

pub(crate) static REJECTED_FRAMES: LazyLock<IntCounterVec> = LazyLock::new(|| {
    counter(
        "strata_kafka_rejected_frames_total",
        "Kafka frames that closed their connection, by reason.",
        "reason",
    )
});

pub(crate) static CONNECTIONS: LazyLock<IntGauge> = LazyLock::new(|| {
    match IntGauge::new("strata_kafka_connections", "Open Kafka client connections.") {
        Ok(g) => {
            let _ = prometheus::default_registry().register(Box::new(g.clone()));
            g
        }
        Err(e) => unreachable!("constant metric options are valid: {e}"),
    }
});
