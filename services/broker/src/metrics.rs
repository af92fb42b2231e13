//! Prometheus metrics of the broker, per tenant, in the default registry.

use std::sync::LazyLock;

use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts};

fn counter(name: &str, help: &str) -> IntCounterVec {
    match IntCounterVec::new(Opts::new(name, help), &["tenant"]) {
        Ok(c) => {
            let _ = prometheus::default_registry().register(Box::new(c.clone()));
            c
        }
        Err(e) => unreachable!("constant metric options are valid: {e}"),
    }
}

pub(crate) static PRODUCED_RECORDS: LazyLock<IntCounterVec> =
    LazyLock::new(|| counter("strata_broker_produced_records_total", "Records produced."));
pub(crate) static PRODUCED_BYTES: LazyLock<IntCounterVec> = LazyLock::new(|| {
    counter(
        "strata_broker_produced_bytes_total",
        "Bytes of records produced (keys, values and headers).",
    )
});
pub(crate) static READ_RECORDS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    counter(
        "strata_broker_read_records_total",
        "Records returned by reads.",
    )
});
pub(crate) static READ_BYTES: LazyLock<IntCounterVec> = LazyLock::new(|| {
    counter(
        "strata_broker_read_bytes_total",
        "Bytes of record batches read from the log for reads.",
    )
});
pub(crate) static PRODUCE_SECONDS: LazyLock<HistogramVec> = LazyLock::new(|| {
    let buckets = prometheus::exponential_buckets(0.000_1, 2.0, 16).unwrap_or_default();
    let opts = HistogramOpts::new(
        "strata_broker_produce_seconds",
        "Latency of produce and append calls, until acknowledged.",
    )
    .buckets(buckets);
    match HistogramVec::new(opts, &["tenant"]) {
        Ok(h) => {
            let _ = prometheus::default_registry().register(Box::new(h.clone()));
            h
        }
        Err(e) => unreachable!("constant metric options are valid: {e}"),
    }
});

/// Counts a successful produce or append.
pub(crate) fn produced(tenant: &str, records: usize, bytes: u64, started: std::time::Instant) {
    PRODUCED_RECORDS
        .with_label_values(&[tenant])
        .inc_by(records as u64);
    PRODUCED_BYTES.with_label_values(&[tenant]).inc_by(bytes);
    PRODUCE_SECONDS
        .with_label_values(&[tenant])
        .observe(started.elapsed().as_secs_f64());
}

/// Counts a read.
pub(crate) fn read(tenant: &str, records: usize, bytes: usize) {
    READ_RECORDS
        .with_label_values(&[tenant])
        .inc_by(records as u64);
    READ_BYTES.with_label_values(&[tenant]).inc_by(bytes as u64);
}

fn partition_gauge(name: &str, help: &str) -> IntGaugeVec {
    match IntGaugeVec::new(Opts::new(name, help), &["tenant", "topic", "partition"]) {
        Ok(g) => {
            let _ = prometheus::default_registry().register(Box::new(g.clone()));
            g
        }
        Err(e) => unreachable!("constant metric options are valid: {e}"),
    }
}

pub(crate) static PARTITION_START: LazyLock<IntGaugeVec> = LazyLock::new(|| {
    partition_gauge(
        "strata_partition_start_offset",
        "First offset of each partition.",
    )
});
pub(crate) static PARTITION_END: LazyLock<IntGaugeVec> = LazyLock::new(|| {
    partition_gauge(
        "strata_partition_end_offset",
        "End offset (next offset) of each partition.",
    )
});

/// Registers a metric in the default registry (once; a second registration
/// of the same name is ignored, as in tests that open several brokers).
fn registered<M: prometheus::core::Collector + Clone + 'static>(m: M) -> M {
    let _ = prometheus::default_registry().register(Box::new(m.clone()));
    m
}

fn int_counter(name: &str, help: &str) -> prometheus::IntCounter {
    match prometheus::IntCounter::new(name, help) {
        Ok(c) => registered(c),
        Err(e) => unreachable!("constant metric options are valid: {e}"),
    }
}

pub(crate) static OFFLOAD_PENDING_BYTES: LazyLock<prometheus::IntGauge> = LazyLock::new(|| {
    match prometheus::IntGauge::new(
        "strata_tier_offload_lag_bytes",
        "Bytes on local disk not yet in the bucket (offload lag), as of the last offload pass.",
    ) {
        Ok(g) => registered(g),
        Err(e) => unreachable!("constant metric options are valid: {e}"),
    }
});
pub(crate) static OFFLOAD_LAG_SECONDS: LazyLock<prometheus::Gauge> = LazyLock::new(|| {
    match prometheus::Gauge::new(
        "strata_tier_offload_lag_seconds",
        "Age of the oldest sealed segment not yet in the bucket.",
    ) {
        Ok(g) => registered(g),
        Err(e) => unreachable!("constant metric options are valid: {e}"),
    }
});
pub(crate) static OFFLOADED_BYTES: LazyLock<prometheus::IntCounter> = LazyLock::new(|| {
    int_counter(
        "strata_tier_offloaded_bytes_total",
        "Bytes of segment objects uploaded and committed.",
    )
});
pub(crate) static OFFLOADED_SEGMENTS: LazyLock<prometheus::IntCounter> = LazyLock::new(|| {
    int_counter(
        "strata_tier_offloaded_segments_total",
        "Segment objects uploaded and committed.",
    )
});
pub(crate) static UPLOAD_ERRORS: LazyLock<prometheus::IntCounter> = LazyLock::new(|| {
    int_counter(
        "strata_tier_upload_errors_total",
        "Segment uploads that failed (after the store's retries).",
    )
});
pub(crate) static UPLOAD_SECONDS: LazyLock<prometheus::Histogram> = LazyLock::new(|| {
    let buckets = prometheus::exponential_buckets(0.001, 2.0, 16).unwrap_or_default();
    match prometheus::Histogram::with_opts(
        HistogramOpts::new(
            "strata_tier_upload_seconds",
            "Time to build, upload and commit one segment object.",
        )
        .buckets(buckets),
    ) {
        Ok(h) => registered(h),
        Err(e) => unreachable!("constant metric options are valid: {e}"),
    }
});
pub(crate) static REMOTE_READ_BYTES: LazyLock<prometheus::IntCounter> = LazyLock::new(|| {
    int_counter(
        "strata_tier_read_bytes_total",
        "Bytes of record batches served from segment objects.",
    )
});
pub(crate) static REMOTE_READ_ERRORS: LazyLock<prometheus::IntCounter> = LazyLock::new(|| {
    int_counter(
        "strata_tier_read_errors_total",
        "Reads of segment objects that failed for a reason other than an unreachable store (corruption).",
    )
});
pub(crate) static ORPHANS_DELETED: LazyLock<prometheus::IntCounter> = LazyLock::new(|| {
    int_counter(
        "strata_tier_orphans_deleted_total",
        "Objects no manifest named, deleted by the orphan collector.",
    )
});
