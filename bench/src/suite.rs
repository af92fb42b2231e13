//! A whole comparison: the machine's limits first, then every workload case
//! against every system in every durability class, in one run, with the
//! servers this suite started itself (and stops when it ends).

use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::driver::{self, DriverError, Durability, System, Target};
use crate::machine;
use crate::results::{Absent, RunResult, SuiteResults};
use crate::runner::{self, Plan};
use crate::systems::{self, Server, Strata};
use crate::workload::{CaseRate, Workload};

/// What to run and where.
#[derive(Debug, Clone)]
pub struct SuiteOptions {
    pub workloads: Vec<Workload>,
    pub systems: Vec<System>,
    pub classes: Vec<Durability>,
    pub strata_bin: PathBuf,
    /// The nats-server program to start.
    pub nats_server: PathBuf,
    pub work_dir: PathBuf,
    /// How long fio and iperf3 run per measurement.
    pub machine_runtime: Duration,
    /// Overrides of every workload's duration and warm-up (quick checks).
    pub duration: Option<Duration>,
    pub warmup: Option<Duration>,
    /// The command line, for the report.
    pub command: String,
}

/// The system whose maximum load levels are fractions of.
pub const REFERENCE: System = System::StrataGrpc;
/// Bucket of the tiered workloads' Strata.
const TIER_BUCKET: &str = "strata-bench";

#[derive(Debug, thiserror::Error)]
pub enum SuiteError {
    #[error("cannot start {what}: {message}")]
    Start { what: String, message: String },
}

/// The servers of one suite run.
#[derive(Default)]
struct Servers {
    strata: Option<Strata>,
    /// Strata offloading to moto behind a latency proxy, per injected latency.
    tiered: HashMap<u64, TieredStrata>,
    /// Per class; a server that could not start in a class says why.
    nats: HashMap<Durability, Result<(Server, SocketAddr), String>>,
    redis: HashMap<Durability, (Server, SocketAddr)>,
}

impl Servers {
    /// Every process the suite started: each case waits until all are idle.
    fn pids(&self) -> Vec<u32> {
        let mut pids: Vec<u32> = self.strata.iter().map(|s| s.server.pid()).collect();
        pids.extend(self.tiered.values().map(|t| t.strata.server.pid()));
        pids.extend(self.nats.values().flatten().map(|(s, _)| s.pid()));
        pids.extend(self.redis.values().map(|(s, _)| s.pid()));
        pids
    }
}

struct TieredStrata {
    strata: Strata,
    // Dropped after Strata (field order): it must not lose its bucket first.
    _proxy: strata_test_support::LatencyProxy,
    _moto: strata_test_support::MotoServer,
}

pub async fn run(opts: &SuiteOptions) -> Result<SuiteResults, SuiteError> {
    let mut results = SuiteResults {
        started: humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string(),
        command: opts.command.clone(),
        ..SuiteResults::default()
    };
    let sizes: BTreeSet<u64> = opts
        .workloads
        .iter()
        .map(|w| w.record_size as u64 * u64::from(w.batch_records))
        .chain([256 * 1024])
        .collect();
    eprintln!("measuring the machine: fio at {sizes:?} bytes, iperf3");
    let (machine, notes) = machine::measure(
        &opts.work_dir,
        &sizes.into_iter().collect::<Vec<_>>(),
        opts.machine_runtime,
    );
    for n in notes {
        eprintln!("warning: {n}");
    }
    results.machine = machine;
    record_versions(&mut results, opts);
    let mut servers = Servers::default();
    start_servers(opts, &mut servers, &mut results)?;
    let mut absent_seen = BTreeSet::new();
    let mut absent =
        |results: &mut SuiteResults, w: &str, s: System, d: Durability, why: String| {
            if absent_seen.insert((w.to_string(), s.as_str(), d.as_str())) {
                eprintln!("  {w} {} {}: absent: {why}", s.as_str(), d.as_str());
                results.absent.push(Absent {
                    workload: w.to_string(),
                    system: s,
                    durability: d,
                    reason: why,
                });
            }
        };
    for &class in &opts.classes {
        for w in &opts.workloads {
            let mut w = w.clone();
            if let Some(d) = opts.duration {
                w.duration = d;
            }
            if let Some(d) = opts.warmup {
                w.warmup = d;
            }
            for case in w.cases() {
                let (rate, load) = match case.rate {
                    CaseRate::Max => (None, None),
                    CaseRate::Fixed(r) => (Some(r), None),
                    CaseRate::Load(l) => {
                        match reference_max(&results.runs, w.load_of.as_deref(), class) {
                            Some(max) => (Some(max * l), Some(l)),
                            None => {
                                for &s in &opts.systems {
                                    absent(
                                        &mut results,
                                        &w.name,
                                        s,
                                        class,
                                        format!(
                                            "no maximum of {} in {} to take a load level of",
                                            REFERENCE.as_str(),
                                            w.load_of.as_deref().unwrap_or("?")
                                        ),
                                    );
                                }
                                continue;
                            }
                        }
                    }
                };
                for &system in &opts.systems {
                    if !w.runs_on(system) {
                        let why = w
                            .systems_reason
                            .clone()
                            .unwrap_or_else(|| "not part of this workload".into());
                        absent(&mut results, &w.name, system, class, why);
                        continue;
                    }
                    let (address, pids) = match locate(&servers, system, class, &w) {
                        Ok(found) => found,
                        Err(why) => {
                            absent(&mut results, &w.name, system, class, why);
                            continue;
                        }
                    };
                    let target = Target {
                        system,
                        address,
                        durability: class,
                    };
                    let plan = Plan {
                        workload: &w,
                        case: &case,
                        rate,
                        load,
                        durability: class,
                        topic: format!("bench-{}", w.name.to_lowercase()),
                        pids,
                        quiet: servers.pids(),
                    };
                    match run_one(&target, &plan).await {
                        Ok(r) => {
                            eprintln!("  {}", summary(&r));
                            results.runs.push(r);
                        }
                        Err(e @ DriverError::Unsupported { .. }) => {
                            absent(&mut results, &w.name, system, class, e.to_string())
                        }
                        Err(e) => {
                            absent(&mut results, &w.name, system, class, format!("failed: {e}"))
                        }
                    }
                }
            }
        }
    }
    drop(servers);
    Ok(results)
}

async fn run_one(target: &Target, plan: &Plan<'_>) -> Result<RunResult, DriverError> {
    eprintln!(
        "{} {} {} {}: {}",
        plan.workload.name,
        plan.case.label,
        target.system.as_str(),
        target.durability.as_str(),
        plan.rate
            .map_or_else(|| "flat out".to_string(), |r| format!("{r:.0} records/s"))
    );
    let driver = driver::open(target).await?;
    runner::run(&*driver, plan).await
}

fn summary(r: &RunResult) -> String {
    let p99 = |l: Option<crate::measure::LatencySummary>| {
        l.map_or_else(|| "-".to_string(), |l| format!("{:.2}", l.p99_ms))
    };
    format!(
        "{:.0} records/s, {:.1} MB/s, produce p99 {} ms, e2e p99 {} ms, {} errors, {} unsent",
        r.records_per_s,
        r.mb_per_s,
        p99(r.produce),
        p99(r.e2e),
        r.errors,
        r.unsent
    )
}

/// The reference system's flat-out rate in `workload`, in `class`.
fn reference_max(runs: &[RunResult], workload: Option<&str>, class: Durability) -> Option<f64> {
    let workload = workload?;
    runs.iter()
        .find(|r| {
            r.workload == workload
                && r.system == REFERENCE
                && r.durability == class
                && r.target_rate.is_none()
                && r.records > 0
        })
        .map(|r| r.records_per_s)
}

/// Where `system` listens for this workload, and its processes.
fn locate(
    servers: &Servers,
    system: System,
    class: Durability,
    w: &Workload,
) -> Result<(String, Vec<u32>), String> {
    let strata = |s: &Strata, kafka: bool| {
        let addr = if kafka { s.kafka } else { s.api };
        (addr.to_string(), vec![s.server.pid()])
    };
    if let Some(latency) = w.tiered_latency_ms {
        let t = servers
            .tiered
            .get(&latency)
            .ok_or("Strata with tiered storage did not start (is moto installed?)")?;
        return match system {
            System::StrataGrpc | System::StrataHttp => Ok(strata(&t.strata, false)),
            System::Kafka => Ok(strata(&t.strata, true)),
            _ => Err("no tiered storage".into()),
        };
    }
    match system {
        System::StrataGrpc | System::StrataHttp | System::Kafka => servers
            .strata
            .as_ref()
            .map(|s| strata(s, system == System::Kafka))
            .ok_or_else(|| "strata did not start".into()),
        System::Nats => match servers.nats.get(&class) {
            Some(Ok((s, a))) => Ok((a.to_string(), vec![s.pid()])),
            Some(Err(why)) => Err(why.clone()),
            None => Err("nats-server did not start".into()),
        },
        System::Redis => servers
            .redis
            .get(&class)
            .map(|(s, a)| (a.to_string(), vec![s.pid()]))
            .ok_or_else(|| "redis-server did not start".into()),
    }
}

fn start_servers(
    opts: &SuiteOptions,
    servers: &mut Servers,
    results: &mut SuiteResults,
) -> Result<(), SuiteError> {
    let err = |what: &str| {
        let what = what.to_string();
        move |message: String| SuiteError::Start { what, message }
    };
    let wants = |s: System| opts.systems.contains(&s);
    if wants(System::StrataGrpc) || wants(System::StrataHttp) || wants(System::Kafka) {
        let dir = opts.work_dir.join("strata");
        let s = systems::start_strata(&opts.strata_bin, &dir, &[], &HashMap::new())
            .map_err(err("strata"))?;
        results.setups.insert(
            "strata".into(),
            format!(
                "`{}` (defaults: fdatasync before acks=fsync / Kafka acks=all; acks=write / Kafka acks=1 after the write to the OS)",
                s.server.setup
            ),
        );
        servers.strata = Some(s);
    }
    for latency in opts
        .workloads
        .iter()
        .filter_map(|w| w.tiered_latency_ms)
        .collect::<BTreeSet<_>>()
    {
        if !wants(System::StrataGrpc) || !strata_test_support::MotoServer::available() {
            continue;
        }
        let mut moto = strata_test_support::MotoServer::start();
        moto.create_bucket(TIER_BUCKET);
        let proxy =
            strata_test_support::LatencyProxy::start(moto.addr(), Duration::from_millis(latency));
        let env = strata_test_support::MotoServer::env_for(&proxy.endpoint());
        let extra: Vec<String> = [
            "--object-store",
            &format!("s3://{TIER_BUCKET}/tiered-{latency}"),
            "--offload-interval",
            "200ms",
        ]
        .map(String::from)
        .to_vec();
        let dir = opts.work_dir.join(format!("strata-tiered-{latency}"));
        let s = systems::start_strata(&opts.strata_bin, &dir, &extra, &env)
            .map_err(err("strata with tiered storage"))?;
        results.setups.insert(
            format!("strata, tiered ({latency} ms)"),
            format!(
                "`{}` with moto's S3 server behind a proxy adding {latency} ms each way",
                s.server.setup
            ),
        );
        servers.tiered.insert(
            latency,
            TieredStrata {
                strata: s,
                _proxy: proxy,
                _moto: moto,
            },
        );
    }
    if wants(System::Nats) {
        for &class in &opts.classes {
            // An old nats-server cannot fsync every write: the fsync class is
            // then absent, not a reason to stop the suite.
            let started =
                systems::start_nats(&opts.nats_server, &opts.work_dir, class).map_err(|e| {
                    format!(
                        "nats-server did not start in the {} class: {e}",
                        class.as_str()
                    )
                });
            if let Ok((s, _)) = &started {
                results.setups.insert(
                    format!("nats ({})", class.as_str()),
                    format!("`{}`", s.setup),
                );
            }
            servers.nats.insert(class, started);
        }
    }
    if wants(System::Redis) {
        for &class in &opts.classes {
            let (s, a) =
                systems::start_redis(&opts.work_dir, class).map_err(err("redis-server"))?;
            results.setups.insert(
                format!("redis ({})", class.as_str()),
                format!("`{}`", s.setup),
            );
            servers.redis.insert(class, (s, a));
        }
    }
    Ok(())
}

fn record_versions(results: &mut SuiteResults, opts: &SuiteOptions) {
    let bin = opts.strata_bin.display().to_string();
    let mut put = |name: &str, v: Option<String>| {
        if let Some(v) = v {
            results.versions.insert(name.into(), v);
        }
    };
    put("strata", systems::version_of(&bin, &["--version"]));
    put(
        "nats-server",
        systems::version_of(&opts.nats_server.display().to_string(), &["--version"]),
    );
    put(
        "redis-server",
        systems::version_of("redis-server", &["--version"]),
    );
    put("fio", systems::version_of("fio", &["--version"]));
    put("iperf3", systems::version_of("iperf3", &["--version"]));
    put(
        "strata-bench",
        Some(format!("strata-bench {}", env!("CARGO_PKG_VERSION"))),
    );
    #[cfg(feature = "kafka")]
    put(
        "librdkafka",
        Some(format!(
            "librdkafka {} (the Kafka driver)",
            rdkafka::util::get_rdkafka_version().1
        )),
    );
}
