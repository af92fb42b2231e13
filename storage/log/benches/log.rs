//! Throughput of the log: durable appends of 1 KiB records across 1, 16 and
//! 1,000 partitions, and reads.
//!
//! Appends are issued by 128 concurrent tasks (`STRATA_BENCH_IN_FLIGHT`), as a broker serving many
//! producers would; each append is one batch of `RECORDS_PER_BATCH` records
//! of 1 KiB (a Kafka producer with the default 16 KiB `batch.size`). Every
//! append is acknowledged only after fdatasync. After each case the bench
//! prints the average bytes per journal write and per fdatasync, so the
//! disk's own durable bandwidth can be measured with fio at the same size
//! (`scripts/bench-log.sh` does both in one run).

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use strata_log::batch::{BatchBuilder, Compression};
use strata_log::{AppendOptions, Log, LogConfig, Partition};

const RECORD_BYTES: usize = 1024;
const RECORDS_PER_BATCH: usize = 16;

fn make_batch(records: usize) -> Bytes {
    let mut b = BatchBuilder::new(Compression::None);
    let value = Bytes::from(vec![b'x'; RECORD_BYTES]);
    for i in 0..records {
        b.push(
            None,
            Some(value.clone()),
            vec![],
            1_700_000_000_000 + i as i64,
        );
    }
    b.build().expect("batch builds")
}

/// A fresh directory on the disk under test: `STRATA_BENCH_DIR`, or the target directory.
fn bench_dir() -> tempfile::TempDir {
    let base =
        std::env::var("STRATA_BENCH_DIR").unwrap_or_else(|_| env!("CARGO_TARGET_TMPDIR").into());
    std::fs::create_dir_all(&base).expect("bench dir");
    tempfile::tempdir_in(base).expect("tempdir")
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

/// Sum and count of a histogram in the default Prometheus registry.
fn histogram_totals(name: &str) -> (f64, u64) {
    for family in prometheus::gather() {
        if family.name() == name
            && let Some(m) = family.get_metric().first()
        {
            let h = m.get_histogram();
            return (h.get_sample_sum(), h.get_sample_count());
        }
    }
    (0.0, 0)
}

async fn open_partitions(log: &Log, count: usize) -> Vec<Partition> {
    let mut parts = Vec::with_capacity(count);
    for i in 0..count {
        parts.push(
            log.create_partition(&format!("bench/t/{i}"), None)
                .await
                .expect("create"),
        );
    }
    parts
}

/// Concurrent appends: `STRATA_BENCH_IN_FLIGHT`, default 128.
fn in_flight() -> usize {
    std::env::var("STRATA_BENCH_IN_FLIGHT")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(128)
}

/// Appends `total` batches from `in_flight()` tasks spread over `parts`.
async fn append_all(parts: Arc<Vec<Partition>>, batch: Bytes, total: u64) -> Duration {
    let in_flight = in_flight();
    let start = Instant::now();
    let per_task = total.div_ceil(in_flight as u64);
    let mut tasks = Vec::with_capacity(in_flight);
    for t in 0..in_flight {
        let parts = parts.clone();
        let batch = batch.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..per_task {
                let p = &parts[(t + i as usize * in_flight) % parts.len()];
                p.append(batch.as_ref(), AppendOptions::default())
                    .await
                    .expect("append");
            }
        }));
    }
    for t in tasks {
        t.await.expect("task");
    }
    start.elapsed()
}

fn durable_append(c: &mut Criterion) {
    let rt = runtime();
    let mut group = c.benchmark_group("durable_append_1KiB");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(10));
    for (partitions, records) in [
        (1usize, RECORDS_PER_BATCH),
        (16, RECORDS_PER_BATCH),
        (1000, RECORDS_PER_BATCH),
        (16, 1),
    ] {
        let dir = bench_dir();
        let log = Log::open(dir.path(), LogConfig::default()).expect("open");
        let parts = Arc::new(rt.block_on(open_partitions(&log, partitions)));
        let batch = make_batch(records);
        group.throughput(Throughput::Bytes((records * RECORD_BYTES) as u64));
        let (bytes0, commits0) = histogram_totals("strata_log_commit_bytes");
        let (_, syncs0) = histogram_totals("strata_log_fsync_seconds");
        let id = BenchmarkId::new(
            format!("{records}_records_per_batch"),
            format!("{partitions}_partitions"),
        );
        group.bench_function(id, |b| {
            b.iter_custom(|iters| rt.block_on(append_all(parts.clone(), batch.clone(), iters)))
        });
        let (bytes1, commits1) = histogram_totals("strata_log_commit_bytes");
        let (_, syncs1) = histogram_totals("strata_log_fsync_seconds");
        let bytes = bytes1 - bytes0;
        // One fdatasync covers every commit written since the previous one:
        // bytes per fdatasync is the write size to compare the disk at.
        eprintln!(
            "journal: partitions={partitions} records_per_batch={records} avg_write_bytes={:.0} avg_fsync_bytes={:.0}",
            bytes / commits1.saturating_sub(commits0).max(1) as f64,
            bytes / syncs1.saturating_sub(syncs0).max(1) as f64,
        );
        drop(log);
    }
    group.finish();
}

fn read_throughput(c: &mut Criterion) {
    // From the tail cache (the default: recent data stays in memory), and
    // with the cache off (every read a verified pread of the journal).
    for (name, tail_cache_bytes) in [
        ("tail_cache", LogConfig::default().tail_cache_bytes),
        ("journal", 0),
    ] {
        read_case(c, name, tail_cache_bytes);
    }
}

fn read_case(c: &mut Criterion, name: &str, tail_cache_bytes: usize) {
    let rt = runtime();
    let dir = bench_dir();
    let config = LogConfig {
        tail_cache_bytes,
        drop_flushed_pages: false,
        ..LogConfig::default()
    };
    let log = Log::open(dir.path(), config).expect("open");
    let parts = Arc::new(rt.block_on(open_partitions(&log, 16)));
    let batch = make_batch(RECORDS_PER_BATCH);
    // 16 partitions x 4 MiB each.
    rt.block_on(append_all(parts.clone(), batch.clone(), 16 * 256));
    let bytes_per_partition: u64 = parts[0].offsets().end * RECORD_BYTES as u64;
    let mut group = c.benchmark_group("read_1KiB");
    group.sample_size(10);
    group.throughput(Throughput::Bytes(bytes_per_partition * parts.len() as u64));
    group.bench_function(
        format!("sequential_16_partitions_1MiB_reads_from_{name}"),
        |b| {
            b.iter(|| {
                for p in parts.iter() {
                    let end = p.offsets().end;
                    let mut next = 0;
                    while next < end {
                        let r = p.read_blocking(next, 1 << 20).expect("read");
                        next = r.next_offset;
                    }
                }
            })
        },
    );
    group.finish();
}

criterion_group!(benches, durable_append, read_throughput);
criterion_main!(benches);
