//! Runs one case of a workload against one driver: producers at a constant
//! rate (or flat out), consumers tailing from the start, latencies measured
//! from each request's due time, so a stalled system is charged for the
//! requests it kept from being sent (no coordinated omission).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::driver::{Driver, DriverError, Durability, Producer};
use crate::measure::{Latencies, Schedule, decode_sent, partition_for, payload};
use crate::procstat;
use crate::results::RunResult;
use crate::workload::{Case, Workload};

/// Requests in flight per producer at a fixed rate: enough for any system
/// that keeps up, a bound on memory for one that does not (the latency of
/// requests held back still counts from their due time).
const RATE_WINDOW: usize = 1024;
/// At a fixed rate, how long after the end a producer still sends requests
/// that fell due in the run: a system far behind the rate would otherwise
/// keep the run going until it has worked off the whole schedule. What is
/// still unsent then is counted as `unsent`, never as sent.
const SEND_GRACE: Duration = Duration::from_secs(5);
/// After the producers stop, how long consumers may take to catch up.
const DRAIN: Duration = Duration::from_secs(15);
/// How long acknowledgements still in flight at the end may take.
const SETTLE: Duration = Duration::from_secs(30);
/// Longest a case waits for the system to finish work a case before it left
/// behind (deleting the old topic, sealing and offloading segments, AOF
/// rewrites), so that no case pays for another's.
const QUIESCE_LIMIT: Duration = Duration::from_secs(20);
/// Idle: below this many cores of CPU over one sample.
const IDLE_CORES: f64 = 0.05;
const QUIESCE_SAMPLE: Duration = Duration::from_millis(500);
/// Longest the backlog phase of a catch-up workload may take.
const BACKLOG_LIMIT: Duration = Duration::from_secs(3600);

/// What to run: a case of a workload, at a resolved rate.
#[derive(Debug, Clone)]
pub struct Plan<'a> {
    pub workload: &'a Workload,
    pub case: &'a Case,
    /// Records/s over all producers; `None` sends flat out.
    pub rate: Option<f64>,
    /// The load fraction `rate` stands for, for the report.
    pub load: Option<f64>,
    pub durability: Durability,
    pub topic: String,
    /// The processes of the system under test, for CPU and memory.
    pub pids: Vec<u32>,
    /// Processes that must be idle before the case starts: the system's and
    /// any other server running beside it.
    pub quiet: Vec<u32>,
}

/// The run's clock: warm-up from `start` to `measure_start`, measured until `end`.
#[derive(Debug, Clone, Copy)]
struct Timing {
    start: Instant,
    measure_start: Instant,
    end: Instant,
    wall_start_us: u64,
}

impl Timing {
    fn new(warmup: Duration, duration: Duration) -> Timing {
        // A moment to get every task going before the first due time.
        let start = Instant::now() + Duration::from_millis(50);
        let wall_start_us = now_wall_us() + 50_000;
        Timing {
            start,
            measure_start: start + warmup,
            end: start + warmup + duration,
            wall_start_us,
        }
    }

    fn wall_us(&self, at: Instant) -> u64 {
        let since = at.saturating_duration_since(self.start).as_micros();
        self.wall_start_us + u64::try_from(since).unwrap_or(u64::MAX / 2)
    }

    fn measured(&self, due: Instant) -> bool {
        due >= self.measure_start && due < self.end
    }

    /// Requests `from` onwards of `schedule` that are due in the measured
    /// window (at most the window's requests: the schedule is finite there).
    fn unsent_from(&self, schedule: &Schedule, from: u64) -> u64 {
        (from..)
            .map(|n| self.start + schedule.offset(n))
            .take_while(|&due| due < self.end)
            .filter(|&due| self.measured(due))
            .count() as u64
    }
}

pub fn now_wall_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// What the producers saw.
#[derive(Default)]
struct ProduceStats {
    records: u64,
    bytes: u64,
    errors: u64,
    latency: Latencies,
    /// Every record acknowledged, warm-up and backlog included.
    acked_total: u64,
    /// Records due in the measured window never sent (see [`SEND_GRACE`]).
    unsent: u64,
    last_error: Option<String>,
}

/// What the consumers saw.
#[derive(Default)]
struct ConsumeStats {
    /// Records due in the measured window.
    measured: u64,
    latency: Latencies,
    total: u64,
    error: Option<String>,
}

/// Runs `plan` on `driver` and measures it.
pub async fn run(driver: &dyn Driver, plan: &Plan<'_>) -> Result<RunResult, DriverError> {
    let w = plan.workload;
    let partitions = plan.case.partitions;
    driver
        .prepare_configured(&plan.topic, partitions, &w.topic_config)
        .await?;
    quiesce(&plan.quiet).await;
    let mut producers: Vec<Arc<dyn Producer>> = Vec::new();
    for _ in 0..w.producers {
        producers.push(Arc::from(driver.producer(&plan.topic).await?));
    }
    let produced = Arc::new(Mutex::new(ProduceStats::default()));
    if let Some(backlog) = w.backlog_bytes {
        fill_backlog(&producers, w, partitions, backlog, &produced).await?;
    }
    let consumed = Arc::new(Mutex::new(ConsumeStats::default()));
    let timing = Timing::new(w.warmup, w.duration);
    let stopped = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut consumers = JoinSet::new();
    let readers = w.consumers.min(partitions);
    for c in 0..readers {
        let mine: Vec<u32> = (0..partitions).filter(|p| p % readers == c).collect();
        let mut consumer = driver.consumer(&plan.topic, &mine).await?;
        let (consumed, stopped) = (consumed.clone(), stopped.clone());
        consumers.spawn(async move {
            while !stopped.load(std::sync::atomic::Ordering::Relaxed) {
                let values = match consumer.poll(Duration::from_millis(200)).await {
                    Ok(v) => v,
                    Err(e) => {
                        lock(&consumed).error = Some(e.to_string());
                        return;
                    }
                };
                let now = now_wall_us();
                let mut s = lock(&consumed);
                s.total += values.len() as u64;
                let window = timing.wall_us(timing.measure_start)..timing.wall_us(timing.end);
                for v in &values {
                    if let Some(due) = v.get(..8).and_then(decode_sent)
                        && window.contains(&due)
                    {
                        s.measured += 1;
                        s.latency
                            .record(Duration::from_micros(now.saturating_sub(due)), 1);
                    }
                }
            }
        });
    }
    let cpu_at_start = {
        let pids = plan.pids.clone();
        tokio::spawn(async move {
            tokio::time::sleep_until(timing.measure_start).await;
            cpu_of(&pids)
        })
    };
    let mut tasks = JoinSet::new();
    for (index, producer) in producers.iter().enumerate() {
        let index = index as u32;
        let schedule = plan
            .rate
            .and_then(|r| Schedule::new(r, w.batch_records, w.producers, index));
        let job = ProducerJob {
            producer: producer.clone(),
            index,
            producers: w.producers,
            partitions,
            batch: w.batch_records,
            value: payload(w.record_size.saturating_sub(8)),
            window: if schedule.is_some() {
                RATE_WINDOW
            } else {
                w.window as usize
            },
            schedule,
            timing,
            stats: produced.clone(),
        };
        tasks.spawn(job.run());
    }
    while tasks.join_next().await.is_some() {}
    let cpu_at_end = cpu_of(&plan.pids);
    let cpu_at_start = cpu_at_start.await.ok().flatten();
    // Let the consumers catch up with everything acknowledged, within bounds.
    let acked = lock(&produced).acked_total;
    let drain_until = Instant::now() + DRAIN;
    while readers > 0 && lock(&consumed).total < acked && Instant::now() < drain_until {
        if lock(&consumed).error.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stopped.store(true, std::sync::atomic::Ordering::Relaxed);
    while consumers.join_next().await.is_some() {}
    let p = lock(&produced);
    let c = lock(&consumed);
    if let Some(e) = &c.error {
        return Err(DriverError::request(
            driver_name(driver),
            format!("consumer: {e}"),
        ));
    }
    if p.records == 0
        && let Some(e) = &p.last_error
    {
        return Err(DriverError::request(driver_name(driver), e));
    }
    let duration_s = w.duration.as_secs_f64();
    let cpu_s = match (cpu_at_start, cpu_at_end) {
        (Some(a), Some(b)) => Some((b - a).max(0.0)),
        _ => None,
    };
    let peak: Option<u64> = plan
        .pids
        .iter()
        .map(|&pid| procstat::peak_rss_bytes(pid))
        .sum();
    Ok(RunResult {
        workload: w.name.clone(),
        case: plan.case.label.clone(),
        system: driver.system(),
        durability: plan.durability,
        partitions,
        record_size: w.record_size,
        batch_records: w.batch_records,
        producers: w.producers,
        consumers: readers,
        target_rate: plan.rate,
        load: plan.load,
        duration_s,
        records: p.records,
        bytes: p.bytes,
        records_per_s: p.records as f64 / duration_s,
        mb_per_s: p.bytes as f64 / 1e6 / duration_s,
        errors: p.errors,
        unsent: p.unsent,
        produce: p.latency.summary(),
        e2e: c.latency.summary(),
        consumed: c.measured,
        cpu_s,
        cpu_s_per_gb: cpu_s
            .filter(|_| p.bytes > 0)
            .map(|s| s / (p.bytes as f64 / 1e9)),
        peak_rss_bytes: if plan.pids.is_empty() { None } else { peak },
    })
}

/// Flushes every dirty page of the machine (a case before may have left
/// writeback behind), then waits, bounded, until `pids` are idle; with no
/// processes known it only flushes.
async fn quiesce(pids: &[u32]) {
    // SAFETY: sync(2) takes no arguments and cannot fail.
    let _ = tokio::task::spawn_blocking(|| unsafe { libc::sync() }).await;
    let deadline = Instant::now() + QUIESCE_LIMIT;
    let Some(mut last) = cpu_of(pids) else {
        return;
    };
    while Instant::now() < deadline {
        tokio::time::sleep(QUIESCE_SAMPLE).await;
        let Some(now) = cpu_of(pids) else {
            return;
        };
        if (now - last) / QUIESCE_SAMPLE.as_secs_f64() < IDLE_CORES {
            return;
        }
        last = now;
    }
}

fn driver_name(d: &dyn Driver) -> &'static str {
    d.system().as_str()
}

fn cpu_of(pids: &[u32]) -> Option<f64> {
    if pids.is_empty() {
        return None;
    }
    pids.iter().map(|&p| procstat::cpu_seconds(p)).sum()
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// One producer's requests: the due-time prefix, then the shared payload.
fn values(due_us: u64, value: &Bytes, batch: u32) -> Vec<Bytes> {
    (0..batch)
        .map(|_| {
            let mut v = BytesMut::with_capacity(8 + value.len());
            v.put_u64(due_us);
            v.put_slice(value);
            v.freeze()
        })
        .collect()
}

struct ProducerJob {
    producer: Arc<dyn Producer>,
    index: u32,
    producers: u32,
    partitions: u32,
    batch: u32,
    value: Bytes,
    window: usize,
    schedule: Option<Schedule>,
    timing: Timing,
    stats: Arc<Mutex<ProduceStats>>,
}

impl ProducerJob {
    async fn run(self) {
        let permits = Arc::new(Semaphore::new(self.window));
        let mut inflight = JoinSet::new();
        let t = self.timing;
        let record_bytes = (8 + self.value.len()) as u64;
        for n in 0u64.. {
            let due = match self.schedule {
                Some(s) => {
                    let due = t.start + s.offset(n);
                    if due >= t.end {
                        break;
                    }
                    tokio::time::sleep_until(due).await;
                    due
                }
                None => t.start.max(Instant::now()),
            };
            let acquire = permits.clone().acquire_owned();
            let permit = match self.schedule {
                Some(s) => match tokio::time::timeout_at(t.end + SEND_GRACE, acquire).await {
                    Ok(Ok(permit)) => permit,
                    Ok(Err(_)) => break,
                    Err(_) => {
                        lock(&self.stats).unsent += t.unsent_from(&s, n) * u64::from(self.batch);
                        break;
                    }
                },
                None => match acquire.await {
                    Ok(permit) => permit,
                    Err(_) => break,
                },
            };
            // Flat out, a request is due when a slot frees up.
            let due = if self.schedule.is_none() {
                let now = t.start.max(Instant::now());
                if now >= t.end {
                    break;
                }
                if now < t.start {
                    tokio::time::sleep_until(t.start).await;
                }
                now
            } else {
                due
            };
            let partition = partition_for(n, self.index, self.producers, self.partitions);
            let ack = self
                .producer
                .send(partition, values(t.wall_us(due), &self.value, self.batch));
            let stats = self.stats.clone();
            let batch = u64::from(self.batch);
            inflight.spawn(async move {
                let outcome = ack.await;
                let done = Instant::now();
                drop(permit);
                let mut s = lock(&stats);
                match outcome {
                    Ok(()) => {
                        s.acked_total += batch;
                        if t.measured(due) {
                            s.records += batch;
                            s.bytes += batch * record_bytes;
                            s.latency.record(done.saturating_duration_since(due), batch);
                        }
                    }
                    Err(e) => {
                        if t.measured(due) {
                            s.errors += 1;
                        }
                        s.last_error = Some(e.to_string());
                    }
                }
            });
            // Reap finished ones so the set stays small.
            while inflight.try_join_next().is_some() {}
        }
        let settle = tokio::time::sleep(SETTLE);
        tokio::pin!(settle);
        loop {
            tokio::select! {
                next = inflight.join_next() => if next.is_none() { break },
                () = &mut settle => {
                    let mut s = lock(&self.stats);
                    s.errors += inflight.len() as u64;
                    s.last_error = Some(format!("{} requests unanswered {SETTLE:?} after the end", inflight.len()));
                    inflight.abort_all();
                    break;
                }
            }
        }
    }
}

/// Produces flat out until `backlog` bytes are acknowledged (catch-up workloads).
async fn fill_backlog(
    producers: &[Arc<dyn Producer>],
    w: &Workload,
    partitions: u32,
    backlog: u64,
    stats: &Arc<Mutex<ProduceStats>>,
) -> Result<(), DriverError> {
    let value = payload(w.record_size.saturating_sub(8));
    let per_request = u64::from(w.batch_records) * w.record_size as u64;
    let requests = backlog.div_ceil(per_request.max(1));
    let deadline = Instant::now() + BACKLOG_LIMIT;
    let permits = Arc::new(Semaphore::new(w.window as usize * producers.len()));
    let mut inflight = JoinSet::new();
    for n in 0..requests {
        if Instant::now() > deadline {
            return Err(DriverError::request(
                "runner",
                format!("the backlog took longer than {BACKLOG_LIMIT:?}"),
            ));
        }
        let Ok(permit) = permits.clone().acquire_owned().await else {
            break;
        };
        let index = (n % producers.len() as u64) as usize;
        let partition = partition_for(n, 0, 1, partitions);
        // Due long ago: backlog records never count as measured latencies.
        let ack = producers[index].send(partition, values(0, &value, w.batch_records));
        let stats = stats.clone();
        let batch = u64::from(w.batch_records);
        inflight.spawn(async move {
            let r = ack.await;
            drop(permit);
            if r.is_ok() {
                lock(&stats).acked_total += batch;
            }
            r
        });
        while let Some(done) = inflight.try_join_next() {
            if let Ok(Err(e)) = done {
                return Err(e);
            }
        }
    }
    while let Some(done) = inflight.join_next().await {
        if let Ok(Err(e)) = done {
            return Err(e);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::driver::{Consumer, SendFuture, System};
    use crate::workload::CaseRate;
    use async_trait::async_trait;

    /// A system that answers every request after `service`, except that it
    /// answers nothing between `stall_from` and `stall_until` after the run
    /// starts.
    struct Stalling {
        start: Instant,
        stall_from: Duration,
        stall_until: Duration,
        service: Duration,
    }

    impl Producer for Stalling {
        fn send(&self, _partition: u32, _values: Vec<Bytes>) -> SendFuture {
            let (from, until) = (self.start + self.stall_from, self.start + self.stall_until);
            let service = self.service;
            Box::pin(async move {
                let now = Instant::now();
                if now >= from && now < until {
                    tokio::time::sleep_until(until).await;
                } else if !service.is_zero() {
                    tokio::time::sleep(service).await;
                }
                Ok(())
            })
        }
    }

    /// Stall from, stall until, service time.
    struct StallingDriver(Duration, Duration, Duration);

    #[async_trait]
    impl Driver for StallingDriver {
        fn system(&self) -> System {
            System::StrataGrpc
        }
        async fn prepare(&self, _: &str, _: u32) -> Result<(), DriverError> {
            Ok(())
        }
        async fn producer(&self, _: &str) -> Result<Box<dyn Producer>, DriverError> {
            Ok(Box::new(Stalling {
                start: Instant::now(),
                stall_from: self.0,
                stall_until: self.1,
                service: self.2,
            }))
        }
        async fn consumer(&self, _: &str, _: &[u32]) -> Result<Box<dyn Consumer>, DriverError> {
            Err(DriverError::request("mock", "no consumers"))
        }
    }

    fn workload(rate: Option<f64>, window: u32) -> Workload {
        let text = format!(
            "name = \"T\"\ndescription = \"t\"\npartitions = [4]\nrecord_size = 64\n\
             producers = 1\nconsumers = 0\nbatch_records = 1\nwindow = {window}\n\
             duration = \"2s\"\nwarmup = \"0s\"\n{}",
            rate.map_or(String::new(), |r| format!("rate = {r}\n"))
        );
        Workload::parse(&text, "t.toml").unwrap_or_else(|e| panic!("{e}"))
    }

    async fn run_stalled(w: &Workload, service: Duration) -> RunResult {
        // The stall is half a second, a quarter of the measured window.
        let driver = StallingDriver(
            Duration::from_millis(1000),
            Duration::from_millis(1500),
            service,
        );
        let case = w.cases().remove(0);
        let plan = Plan {
            workload: w,
            case: &case,
            rate: match case.rate {
                CaseRate::Fixed(r) => Some(r),
                _ => None,
            },
            load: None,
            durability: Durability::Fsync,
            topic: "t".into(),
            pids: Vec::new(),
            quiet: Vec::new(),
        };
        run(&driver, &plan).await.unwrap_or_else(|e| panic!("{e}"))
    }

    #[tokio::test(start_paused = true)]
    async fn a_stall_is_charged_to_every_request_due_during_it() {
        let r = run_stalled(&workload(Some(1000.0), 32), Duration::ZERO).await;
        // Every request due went out and was answered: none was skipped
        // because the system stalled.
        assert_eq!(r.records, 2000, "{r:?}");
        assert_eq!(r.errors, 0);
        let l = r.produce.unwrap_or_else(|| panic!("no latencies"));
        // 500 of 2000 requests were due during the stall and waited for its
        // end: from 500 ms down to 0. A generator measuring from when it sent
        // (coordinated omission) would report one slow request, a p99 of ~0.
        assert!(l.p99_ms >= 480.0 && l.p99_ms <= 500.0, "{l:?}");
        assert!(l.max_ms >= 499.0, "{l:?}");
        assert!(l.p50_ms < 1.0, "{l:?}");
        assert_eq!(r.target_rate, Some(1000.0));
    }

    #[tokio::test(start_paused = true)]
    async fn a_system_far_behind_the_rate_ends_the_run_with_the_rest_unsent() {
        // It stops answering half a second in and never recovers: the window
        // of 1024 requests fills, the rest of the schedule cannot be sent.
        let w = workload(Some(1000.0), 32);
        let driver = StallingDriver(
            Duration::from_millis(500),
            Duration::from_secs(3600),
            Duration::ZERO,
        );
        let case = w.cases().remove(0);
        let plan = Plan {
            workload: &w,
            case: &case,
            rate: Some(1000.0),
            load: None,
            durability: Durability::Fsync,
            topic: "t".into(),
            pids: Vec::new(),
            quiet: Vec::new(),
        };
        let r = run(&driver, &plan).await.unwrap_or_else(|e| panic!("{e}"));
        // Every one of the 2000 requests (of one record) due is accounted
        // for once: answered, unanswered after the settle time, or unsent.
        assert_eq!(r.errors, RATE_WINDOW as u64, "{r:?}");
        assert!((400..=550).contains(&r.records), "{r:?}");
        assert_eq!(r.records + r.errors + r.unsent, 2000, "{r:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn flat_out_keeps_the_window_full() {
        // Flat out, a system answering at once would never let paused time
        // move: each request takes a millisecond.
        let r = run_stalled(&workload(None, 4), Duration::from_millis(1)).await;
        // Four in flight for 1.5 s outside the stall, a millisecond each: about
        // 6000 requests; the stall holds the window for its whole length.
        let l = r.produce.unwrap_or_else(|| panic!("no latencies"));
        assert!(l.max_ms >= 499.0, "{l:?}");
        assert!((5000..=6500).contains(&r.records), "{r:?}");
        assert_eq!(r.errors, 0);
        assert_eq!(r.target_rate, None);
    }

    #[test]
    fn values_carry_their_due_time_and_size() {
        let v = values(1_700_000_000_000_001, &payload(1016), 3);
        assert_eq!(v.len(), 3);
        assert!(v.iter().all(|v| v.len() == 1024));
        assert_eq!(decode_sent(&v[0][..8]), Some(1_700_000_000_000_001));
    }

    #[test]
    fn the_measured_window_excludes_warmup_and_the_end() {
        let t = Timing::new(Duration::from_secs(1), Duration::from_secs(2));
        assert!(!t.measured(t.start));
        assert!(t.measured(t.measure_start));
        assert!(t.measured(t.end - Duration::from_millis(1)));
        assert!(!t.measured(t.end));
        assert_eq!(
            t.wall_us(t.start + Duration::from_millis(3)),
            t.wall_start_us + 3000
        );
    }
}
