//! Prometheus metrics of the log, registered in the default registry.

use std::sync::LazyLock;

use prometheus::{Histogram, HistogramOpts, IntCounter, IntGauge, Opts};

fn counter(name: &str, help: &str) -> IntCounter {
    let c = IntCounter::with_opts(Opts::new(name, help)).unwrap_or_else(|_| unreachable_metric());
    let _ = prometheus::default_registry().register(Box::new(c.clone()));
    c
}

fn gauge(name: &str, help: &str) -> IntGauge {
    let g = IntGauge::with_opts(Opts::new(name, help)).unwrap_or_else(|_| unreachable_metric());
    let _ = prometheus::default_registry().register(Box::new(g.clone()));
    g
}

fn histogram(name: &str, help: &str, buckets: Vec<f64>) -> Histogram {
    let h = Histogram::with_opts(HistogramOpts::new(name, help).buckets(buckets))
        .unwrap_or_else(|_| unreachable_metric());
    let _ = prometheus::default_registry().register(Box::new(h.clone()));
    h
}

/// Metric options above are constants that always validate.
fn unreachable_metric() -> ! {
    unreachable!("metric options are valid constants")
}

pub(crate) static COMMITS: LazyLock<IntCounter> = LazyLock::new(|| {
    counter(
        "strata_log_commits_total",
        "Journal commits (one write each).",
    )
});
pub(crate) static COMMIT_BYTES: LazyLock<Histogram> = LazyLock::new(|| {
    histogram(
        "strata_log_commit_bytes",
        "Bytes written per journal commit.",
        prometheus::exponential_buckets(1024.0, 4.0, 9).unwrap_or_default(),
    )
});
pub(crate) static COMMIT_APPENDS: LazyLock<Histogram> = LazyLock::new(|| {
    histogram(
        "strata_log_commit_appends",
        "Appends coalesced into one journal commit.",
        prometheus::exponential_buckets(1.0, 2.0, 12).unwrap_or_default(),
    )
});
pub(crate) static FSYNC_SECONDS: LazyLock<Histogram> = LazyLock::new(|| {
    histogram(
        "strata_log_fsync_seconds",
        "Latency of journal fdatasync calls.",
        prometheus::exponential_buckets(0.000_05, 2.0, 16).unwrap_or_default(),
    )
});
pub(crate) static WRITE_SECONDS: LazyLock<Histogram> = LazyLock::new(|| {
    histogram(
        "strata_log_write_seconds",
        "Latency of journal write calls.",
        prometheus::exponential_buckets(0.000_01, 2.0, 16).unwrap_or_default(),
    )
});
pub(crate) static APPENDED_BYTES: LazyLock<IntCounter> = LazyLock::new(|| {
    counter(
        "strata_log_appended_bytes_total",
        "Record batch bytes appended.",
    )
});
pub(crate) static READ_BYTES: LazyLock<IntCounter> = LazyLock::new(|| {
    counter(
        "strata_log_read_bytes_total",
        "Record batch bytes read from the journal.",
    )
});
pub(crate) static JOURNAL_FILES: LazyLock<IntGauge> =
    LazyLock::new(|| gauge("strata_log_journal_files", "Journal files on disk."));
pub(crate) static DISK_FULL: LazyLock<IntCounter> = LazyLock::new(|| {
    counter(
        "strata_log_disk_full_total",
        "Commits that failed because the disk was full.",
    )
});
pub(crate) static RECOVERY_SECONDS: LazyLock<Histogram> = LazyLock::new(|| {
    histogram(
        "strata_log_recovery_seconds",
        "Time to open the log, recovery included.",
        prometheus::exponential_buckets(0.001, 4.0, 10).unwrap_or_default(),
    )
});
pub(crate) static TAIL_CACHE_BYTES: LazyLock<IntGauge> = LazyLock::new(|| {
    gauge(
        "strata_log_tail_cache_bytes",
        "Bytes of journal frames accounted to the in-memory tail cache.",
    )
});
pub(crate) static TAIL_CACHE_READS: LazyLock<IntCounter> = LazyLock::new(|| {
    counter(
        "strata_log_tail_cache_reads_total",
        "Reads served entirely from the in-memory tail cache.",
    )
});
