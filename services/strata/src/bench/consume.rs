//! Consumers: one read session per partition, spread over a few connections.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use strata_api::proto::{self, read_request::Start, read_session_response::Event};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::measure::{Latencies, Report, SENT_HEADER, decode_sent};
use super::produce::{produce_all, warn_errors};
use super::{BenchOpts, Counters, Progress, Timing, connections, now_wall_us};
use crate::cli::{Client, status_error};

/// After the producers stop, how long e2e waits for the consumers to catch up.
const DRAIN: Duration = Duration::from_secs(10);

/// What one partition's reader saw.
#[derive(Debug, Default)]
struct ReaderTotals {
    records: u64,
    bytes: u64,
    /// e2e: records due in the measured window, and their latencies.
    measured: u64,
    latency: Latencies,
}

struct Reader {
    client: Client,
    opts: Arc<BenchOpts>,
    partition: u32,
    start: u64,
    /// Stop once this offset is reached (`consume`); `None` follows until stopped.
    until: Option<u64>,
    counters: Arc<Counters>,
    stop: CancellationToken,
    /// e2e: the run's clock, to keep warm-up records out of the latencies.
    timing: Option<Timing>,
}

impl Reader {
    async fn run(mut self) -> anyhow::Result<ReaderTotals> {
        let mut totals = ReaderTotals::default();
        let req = proto::ReadRequest {
            tenant: self.opts.tenant.clone(),
            topic: self.opts.topic.clone(),
            partition: self.partition,
            start: Some(Start::Offset(self.start)),
            ..Default::default()
        };
        let mut stream = tokio::select! {
            s = self.client.read_session(req) => s.map_err(status_error)?.into_inner(),
            () = self.stop.cancelled() => return Ok(totals),
        };
        let measure_from = self.timing.map(|t| t.wall_us(t.measure_start));
        loop {
            let message = tokio::select! {
                m = stream.message() => m.map_err(status_error)?,
                () = self.stop.cancelled() => return Ok(totals),
            };
            let Some(message) = message else {
                anyhow::bail!(
                    "unavailable: the server ended the read session of partition {}",
                    self.partition
                );
            };
            let Some(Event::Batch(batch)) = message.event else {
                continue;
            };
            let now_us = now_wall_us();
            let mut bytes = 0;
            for r in &batch.records {
                bytes += r.value.as_ref().map_or(0, |v| v.len()) as u64;
                let due = r
                    .headers
                    .iter()
                    .find(|h| h.key == SENT_HEADER)
                    .and_then(|h| decode_sent(&h.value));
                if let (Some(from), Some(due)) = (measure_from, due)
                    && due >= from
                {
                    totals.measured += 1;
                    totals
                        .latency
                        .record(Duration::from_micros(now_us.saturating_sub(due)), 1);
                }
            }
            totals.records += batch.records.len() as u64;
            totals.bytes += bytes;
            self.counters.add(batch.records.len() as u64, bytes);
            if self.until.is_some_and(|u| batch.next_offset >= u) {
                return Ok(totals);
            }
        }
    }
}

/// One reader task per partition, from `start_of(partition)`.
async fn start_readers(
    opts: &BenchOpts,
    partitions: &[proto::PartitionInfo],
    counters: &Arc<Counters>,
    stop: &CancellationToken,
    timing: Option<Timing>,
) -> anyhow::Result<Vec<tokio::task::JoinHandle<anyhow::Result<ReaderTotals>>>> {
    let n = opts.consumers.min(partitions.len().max(1) as u32);
    let clients = connections(&opts.server, n).await?;
    let opts = Arc::new(opts.clone());
    let mut tasks = Vec::new();
    for (i, info) in partitions.iter().enumerate() {
        let (start, until) = match timing {
            // e2e: only what is produced from now on.
            Some(_) => (info.end_offset, None),
            None => (info.start_offset, Some(info.end_offset)),
        };
        if until.is_some_and(|u| start >= u) {
            continue;
        }
        let reader = Reader {
            client: clients[i % clients.len()].clone(),
            opts: opts.clone(),
            partition: info.partition,
            start,
            until,
            counters: counters.clone(),
            stop: stop.clone(),
            timing,
        };
        tasks.push(tokio::spawn(reader.run()));
    }
    Ok(tasks)
}

/// Adds up the readers; errors are counted, the last one kept.
fn collect(
    results: Vec<Result<anyhow::Result<ReaderTotals>, tokio::task::JoinError>>,
) -> (ReaderTotals, u64) {
    let mut all = ReaderTotals::default();
    let mut errors = 0;
    for result in results {
        match result {
            Ok(Ok(t)) => {
                all.records += t.records;
                all.bytes += t.bytes;
                all.measured += t.measured;
                all.latency.merge(&t.latency);
            }
            Ok(Err(e)) => {
                errors += 1;
                eprintln!("warning: consumer failed: {e:#}");
            }
            Err(e) => {
                errors += 1;
                eprintln!("warning: consumer task failed: {e}");
            }
        }
    }
    (all, errors)
}

/// `bench consume`: reads everything there was at start, or until the duration is up.
pub async fn run(opts: &BenchOpts, partitions: &[proto::PartitionInfo]) -> anyhow::Result<Report> {
    let counters = Arc::new(Counters::default());
    let stop = CancellationToken::new();
    let tasks = start_readers(opts, partitions, &counters, &stop, None).await?;
    // Reading starts at once: a warm-up would only eat into the backlog.
    let timing = Timing::new(Duration::ZERO, opts.duration);
    let progress = Progress::start(opts, timing, "consume", counters.clone());
    let all_done = futures::future::join_all(tasks);
    tokio::pin!(all_done);
    let results = tokio::select! {
        r = &mut all_done => r,
        () = tokio::time::sleep_until(timing.end) => {
            stop.cancel();
            all_done.await
        }
    };
    let elapsed = timing.start.elapsed();
    drop(progress);
    let (totals, errors) = collect(results);
    Ok(Report {
        mode: "consume",
        records: totals.records,
        bytes: totals.bytes,
        duration: elapsed,
        errors,
        latency: None,
        e2e: None,
        consumed: None,
    })
}

/// `bench e2e`: producers at the rate, readers tailing every partition.
pub async fn e2e(opts: &BenchOpts, partitions: &[proto::PartitionInfo]) -> anyhow::Result<Report> {
    let producers = connections(&opts.server, opts.producers).await?;
    let produced = Arc::new(Counters::default());
    let consumed = Arc::new(Counters::default());
    let stop = CancellationToken::new();
    let timing = Timing::new(opts.warmup, opts.duration);
    let readers = start_readers(opts, partitions, &consumed, &stop, Some(timing)).await?;
    let progress = Progress::start(opts, timing, "e2e", produced.clone());
    let totals = produce_all(
        opts,
        partitions.len() as u32,
        producers,
        timing,
        produced,
        true,
    )
    .await;
    drop(progress);
    // Let the readers see everything that was acknowledged.
    let deadline = Instant::now() + DRAIN;
    while consumed.records.load(Ordering::Relaxed) < totals.acked && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop.cancel();
    let (read, consumer_errors) = collect(futures::future::join_all(readers).await);
    warn_errors(&totals);
    let missing = totals
        .acked
        .saturating_sub(consumed.records.load(Ordering::Relaxed));
    if missing > 0 {
        eprintln!("warning: {missing} acknowledged records were not consumed within {DRAIN:?}");
    }
    Ok(Report {
        mode: "e2e",
        records: totals.records,
        bytes: totals.bytes,
        duration: opts.duration,
        errors: totals.errors + consumer_errors,
        latency: totals.latency.summary(),
        e2e: read.latency.summary(),
        consumed: Some(read.measured),
    })
}
