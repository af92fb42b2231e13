//! `strata bench`: a constant-rate load generator over gRPC sessions.
//!
//! `produce` drives append sessions (one HTTP/2 connection each) at a fixed
//! rate or flat out, `consume` reads a topic from the beginning, and `e2e`
//! produces at a rate while tailing every partition to measure the time from
//! a record's due time to its delivery. The measuring itself lives in
//! [`measure`]; this module and its siblings do the I/O.

mod consume;
mod measure;
mod produce;

use std::io::IsTerminal as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use clap::Subcommand;
use indicatif::{ProgressBar, ProgressStyle};
use strata_api::proto;
use strata_api::{ApiError, ErrorCode};
use tokio::time::Instant;

use crate::cli::produce::AcksArg;
use crate::cli::{Client, Output, connect, status_error};
use measure::Report;

#[derive(clap::Args)]
pub struct BenchArgs {
    #[command(subcommand)]
    pub mode: BenchMode,
}

#[derive(Subcommand)]
pub enum BenchMode {
    /// Produce records and report throughput and produce latency.
    Produce(BenchOpts),
    /// Read the topic from the beginning and report throughput.
    Consume(BenchOpts),
    /// Produce at a rate while tailing every partition: end-to-end latency.
    E2e(BenchOpts),
}

#[derive(clap::Args, Clone, Debug)]
pub struct BenchOpts {
    /// The server's gRPC address.
    #[arg(long, env = "STRATA_SERVER", default_value = "http://127.0.0.1:7070")]
    pub server: String,
    #[arg(long, env = "STRATA_TENANT", default_value = "default")]
    pub tenant: String,
    /// The topic to use; created when missing.
    #[arg(long, default_value = "bench")]
    pub topic: String,
    /// Partitions of the topic when it is created.
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..))]
    pub partitions: u32,
    /// Bytes of each record's value.
    #[arg(long, default_value_t = 1024)]
    pub record_size: usize,
    /// How long to measure, after the warm-up.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    pub duration: Duration,
    /// Run this long before measuring (not counted).
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    pub warmup: Duration,
    /// Concurrent append sessions, each over its own connection.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..))]
    pub producers: u32,
    /// Connections the consumers use (one read session per partition).
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..))]
    pub consumers: u32,
    /// Records per second over all producers (default: as fast as possible).
    #[arg(long)]
    pub rate: Option<f64>,
    /// When the server acknowledges (default: the server's, fsync).
    #[arg(long, value_enum)]
    pub acks: Option<AcksArg>,
    /// Records per append request.
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..))]
    pub batch_records: u32,
    /// Requests in flight per session when not rate-limited.
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u32).range(1..))]
    pub window: u32,
    #[arg(long, value_enum, default_value_t = Output::Human)]
    pub output: Output,
}

pub async fn run(args: BenchArgs) -> anyhow::Result<()> {
    let (mode, opts) = match args.mode {
        BenchMode::Produce(o) => ("produce", o),
        BenchMode::Consume(o) => ("consume", o),
        BenchMode::E2e(o) => ("e2e", o),
    };
    if let Some(rate) = opts.rate
        && !(rate > 0.0 && rate.is_finite())
    {
        anyhow::bail!("bad_request: --rate must be a positive number of records per second");
    }
    let mut client = connect(&opts.server).await?;
    let partitions = ensure_topic(&mut client, &opts).await?;
    let report = match mode {
        "produce" => produce::run(&opts, &partitions, mode).await?,
        "consume" => consume::run(&opts, &partitions).await?,
        _ => consume::e2e(&opts, &partitions).await?,
    };
    match opts.output {
        Output::Json => println!("{}", report.to_json()),
        Output::Human => println!("{}", report.to_human()),
    }
    Ok(())
}

/// The topic's partitions, creating the topic when it does not exist.
async fn ensure_topic(
    client: &mut Client,
    opts: &BenchOpts,
) -> anyhow::Result<Vec<proto::PartitionInfo>> {
    let describe = proto::DescribeTopicRequest {
        tenant: opts.tenant.clone(),
        topic: opts.topic.clone(),
    };
    match client.describe_topic(describe.clone()).await {
        Ok(t) => return Ok(t.into_inner().partition_info),
        Err(s) if ApiError::from_status(&s).code == ErrorCode::TopicNotFound => {}
        Err(s) => return Err(status_error(s)),
    }
    let create = proto::CreateTopicRequest {
        tenant: opts.tenant.clone(),
        name: opts.topic.clone(),
        partitions: opts.partitions,
        config: None,
        replication_factor: None,
    };
    match client.create_topic(create).await {
        Ok(_) => {}
        // Another bench created it meanwhile.
        Err(s) if ApiError::from_status(&s).code == ErrorCode::TopicAlreadyExists => {}
        Err(s) => return Err(status_error(s)),
    }
    let t = client
        .describe_topic(describe)
        .await
        .map_err(status_error)?;
    Ok(t.into_inner().partition_info)
}

/// The run's clock: warm-up from `start` to `measure_start`, measured until `end`.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    pub start: Instant,
    pub measure_start: Instant,
    pub end: Instant,
    /// Wall-clock time at `start`, in µs since the epoch, for due times in records.
    pub wall_start_us: u64,
}

impl Timing {
    pub fn new(warmup: Duration, duration: Duration) -> Timing {
        let start = Instant::now();
        let wall_start_us = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
            .unwrap_or(0);
        Timing {
            start,
            measure_start: start + warmup,
            end: start + warmup + duration,
            wall_start_us,
        }
    }

    /// An instant of this run as wall-clock µs since the epoch.
    pub fn wall_us(&self, at: Instant) -> u64 {
        let since =
            u64::try_from(at.saturating_duration_since(self.start).as_micros()).unwrap_or(u64::MAX);
        self.wall_start_us.saturating_add(since)
    }
}

/// Now, in wall-clock µs since the epoch.
pub fn now_wall_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// Live totals shown by the progress bar (warm-up included).
#[derive(Default)]
pub struct Counters {
    pub records: AtomicU64,
    pub bytes: AtomicU64,
    pub errors: AtomicU64,
}

impl Counters {
    pub fn add(&self, records: u64, bytes: u64) {
        self.records.fetch_add(records, Ordering::Relaxed);
        self.bytes.fetch_add(bytes, Ordering::Relaxed);
    }
}

/// A progress bar on stderr, updated from the counters until dropped; hidden
/// for JSON output and when stderr is not a terminal.
pub struct Progress {
    bar: ProgressBar,
    ticker: tokio::task::JoinHandle<()>,
}

impl Progress {
    pub fn start(
        opts: &BenchOpts,
        timing: Timing,
        label: &'static str,
        counters: Arc<Counters>,
    ) -> Progress {
        let total = timing.end.saturating_duration_since(timing.start);
        let bar = if opts.output == Output::Json || !std::io::stderr().is_terminal() {
            ProgressBar::hidden()
        } else {
            let bar = ProgressBar::new(total.as_secs().max(1));
            if let Ok(style) =
                ProgressStyle::with_template("{prefix} [{elapsed_precise}] {wide_bar} {msg}")
            {
                bar.set_style(style);
            }
            bar
        };
        bar.set_prefix(label);
        let ticker_bar = bar.clone();
        let ticker = tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(500));
            let mut last = (Instant::now(), 0u64, 0u64);
            loop {
                tick.tick().await;
                let now = Instant::now();
                let records = counters.records.load(Ordering::Relaxed);
                let bytes = counters.bytes.load(Ordering::Relaxed);
                let secs = now
                    .saturating_duration_since(last.0)
                    .as_secs_f64()
                    .max(1e-3);
                let phase = if now < timing.measure_start {
                    "warm-up "
                } else {
                    ""
                };
                ticker_bar.set_message(format!(
                    "{phase}{:.0} records/s {:.2} MB/s errors {}",
                    (records - last.1) as f64 / secs,
                    (bytes - last.2) as f64 / 1e6 / secs,
                    counters.errors.load(Ordering::Relaxed),
                ));
                ticker_bar.set_position(now.saturating_duration_since(timing.start).as_secs());
                last = (now, records, bytes);
            }
        });
        Progress { bar, ticker }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.ticker.abort();
        self.bar.finish_and_clear();
    }
}

/// Connections for `n` workers, each its own HTTP/2 connection.
pub async fn connections(server: &str, n: u32) -> anyhow::Result<Vec<Client>> {
    let mut clients = Vec::new();
    for i in 0..n {
        clients.push(
            connect(server)
                .await
                .with_context(|| format!("connection {i}"))?,
        );
    }
    Ok(clients)
}

/// The report of a produce-side run.
pub fn produce_report(mode: &'static str, results: &produce::Totals, opts: &BenchOpts) -> Report {
    Report {
        mode,
        records: results.records,
        bytes: results.bytes,
        duration: opts.duration,
        errors: results.errors,
        latency: results.latency.summary(),
        e2e: None,
        consumed: None,
    }
}
