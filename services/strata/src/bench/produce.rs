//! Producers: one append session per connection, at a schedule or flat out.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use strata_api::proto;
use tokio::sync::{Semaphore, mpsc};
use tokio::time::Instant;
use tokio_stream::wrappers::ReceiverStream;

use super::measure::{
    Latencies, Report, SENT_HEADER, Schedule, encode_sent, partition_for, payload,
};
use super::{BenchOpts, Counters, Progress, Timing, connections, produce_report};
use crate::cli::produce::AcksArg;
use crate::cli::{Client, status_error};

/// Pause before a producer opens a new session after a failed one.
const RETRY_PAUSE: Duration = Duration::from_millis(100);

/// What the producers measured (after the warm-up).
#[derive(Debug, Default)]
pub struct Totals {
    pub records: u64,
    pub bytes: u64,
    pub errors: u64,
    /// Records acknowledged, warm-up included.
    pub acked: u64,
    pub latency: Latencies,
    pub last_error: Option<String>,
}

impl Totals {
    fn merge(&mut self, other: Totals) {
        self.records += other.records;
        self.bytes += other.bytes;
        self.errors += other.errors;
        self.acked += other.acked;
        self.latency.merge(&other.latency);
        if other.last_error.is_some() {
            self.last_error = other.last_error;
        }
    }
}

pub async fn run(
    opts: &BenchOpts,
    partitions: &[proto::PartitionInfo],
    mode: &'static str,
) -> anyhow::Result<Report> {
    let clients = connections(&opts.server, opts.producers).await?;
    let counters = Arc::new(Counters::default());
    let timing = Timing::new(opts.warmup, opts.duration);
    let progress = Progress::start(opts, timing, "produce", counters.clone());
    let totals = produce_all(
        opts,
        partitions.len() as u32,
        clients,
        timing,
        counters,
        false,
    )
    .await;
    drop(progress);
    warn_errors(&totals);
    Ok(produce_report(mode, &totals, opts))
}

pub fn warn_errors(totals: &Totals) {
    if let Some(e) = &totals.last_error {
        eprintln!(
            "warning: {} failed sessions; the last error: {e}",
            totals.errors
        );
    }
}

/// Runs one producer per client until `timing.end`, then adds up what they measured.
pub async fn produce_all(
    opts: &BenchOpts,
    partitions: u32,
    clients: Vec<Client>,
    timing: Timing,
    counters: Arc<Counters>,
    e2e: bool,
) -> Totals {
    let value = payload(opts.record_size);
    let tasks: Vec<_> = clients
        .into_iter()
        .zip(0u32..)
        .map(|(client, index)| {
            let producer = Producer {
                index,
                client,
                schedule: opts
                    .rate
                    .and_then(|r| Schedule::new(r, opts.batch_records, opts.producers, index)),
                opts: opts.clone(),
                partitions,
                value: value.clone(),
                timing,
                counters: counters.clone(),
                e2e,
            };
            tokio::spawn(producer.run())
        })
        .collect();
    let mut totals = Totals::default();
    for task in tasks {
        match task.await {
            Ok(t) => totals.merge(t),
            Err(e) => {
                totals.errors += 1;
                totals.last_error = Some(format!("producer task failed: {e}"));
            }
        }
    }
    totals
}

struct Producer {
    index: u32,
    client: Client,
    /// `None`: unthrottled, `opts.window` requests in flight.
    schedule: Option<Schedule>,
    opts: BenchOpts,
    partitions: u32,
    value: Bytes,
    timing: Timing,
    counters: Arc<Counters>,
    /// Stamp each record with its due time for the end-to-end consumer.
    e2e: bool,
}

impl Producer {
    async fn run(mut self) -> Totals {
        let mut totals = Totals::default();
        // Request numbers go on across sessions, so a schedule stays a schedule.
        let mut next = 0u64;
        while Instant::now() < self.timing.end {
            if let Err(e) = self.session(&mut next, &mut totals).await {
                totals.errors += 1;
                totals.last_error = Some(format!("{e:#}"));
                self.counters.errors.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(RETRY_PAUSE).await;
            }
        }
        totals
    }

    /// One append session until the end of the run or its first error.
    async fn session(&mut self, next: &mut u64, totals: &mut Totals) -> anyhow::Result<()> {
        let window = self.opts.window as usize;
        let (req_tx, req_rx) = mpsc::channel::<proto::AppendRequest>(window);
        // Due times of the requests sent, in order: responses come back in the same order.
        let (due_tx, mut due_rx) = mpsc::unbounded_channel::<Instant>();
        let permits = &Semaphore::new(window);
        let mut responses = self
            .client
            .append_session(ReceiverStream::new(req_rx))
            .await
            .map_err(status_error)?
            .into_inner();
        let this = &*self;
        let sender = async move {
            loop {
                let due = match this.schedule {
                    Some(s) => {
                        let due = this.timing.start + s.offset(*next);
                        if due >= this.timing.end {
                            break;
                        }
                        tokio::time::sleep_until(due).await;
                        due
                    }
                    None => {
                        match permits.acquire().await {
                            Ok(p) => p.forget(),
                            Err(_) => break,
                        }
                        let now = Instant::now();
                        if now >= this.timing.end {
                            break;
                        }
                        now
                    }
                };
                let request = this.request(*next, due);
                *next += 1;
                if due_tx.send(due).is_err() || req_tx.send(request).await.is_err() {
                    break;
                }
            }
        };
        let receiver = async {
            let records = u64::from(this.opts.batch_records);
            let bytes = records * this.value.len() as u64;
            while let Some(response) = responses.message().await.map_err(status_error)? {
                let now = Instant::now();
                let Some(due) = due_rx.recv().await else {
                    anyhow::bail!("internal: a response to a request never sent");
                };
                if response.offsets.len() as u64 != records {
                    anyhow::bail!(
                        "internal: {} offsets for {records} records",
                        response.offsets.len()
                    );
                }
                if this.schedule.is_none() {
                    permits.add_permits(1);
                }
                this.counters.add(records, bytes);
                totals.acked += records;
                if due >= this.timing.measure_start {
                    totals
                        .latency
                        .record(now.saturating_duration_since(due), records);
                    totals.records += records;
                    totals.bytes += bytes;
                }
            }
            Ok(())
        };
        tokio::pin!(sender, receiver);
        let mut sending = true;
        loop {
            tokio::select! {
                () = &mut sender, if sending => sending = false,
                result = &mut receiver => return result,
            }
        }
    }

    fn request(&self, i: u64, due: Instant) -> proto::AppendRequest {
        let (headers, timestamp_ms) = if self.e2e {
            let due_us = self.timing.wall_us(due);
            let header = proto::Header {
                key: SENT_HEADER.into(),
                value: encode_sent(due_us),
            };
            (
                vec![header],
                Some(i64::try_from(due_us / 1000).unwrap_or(i64::MAX)),
            )
        } else {
            (Vec::new(), None)
        };
        let records = (0..self.opts.batch_records)
            .map(|_| proto::Record {
                key: None,
                value: Some(self.value.clone()),
                headers: headers.clone(),
                timestamp_ms,
                partition: None,
            })
            .collect();
        proto::AppendRequest {
            tenant: self.opts.tenant.clone(),
            topic: self.opts.topic.clone(),
            records,
            partition: Some(partition_for(
                i,
                self.index,
                self.opts.producers,
                self.partitions,
            )),
            expected_offset: None,
            acks: AcksArg::to_proto(self.opts.acks) as i32,
        }
    }
}
