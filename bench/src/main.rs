//! `strata-bench`: Strata side by side with peers.
//!
//! * `suite` measures the machine, starts every system on loopback, runs the
//!   workloads against each in each durability class, writes the results
//!   JSON and regenerates the report in `docs/benchmarks.md` with its plots.
//! * `run` runs one workload file against one system already running.
//! * `report` regenerates the report from a results file.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context as _, bail};
use clap::{Parser, Subcommand};
use strata_bench::driver::{self, Durability, System, Target};
use strata_bench::results::SuiteResults;
use strata_bench::runner::{self, Plan};
use strata_bench::suite::{self, SuiteOptions};
use strata_bench::workload::{CaseRate, Workload};

#[derive(Parser)]
#[command(version, about = "Benchmarks of Strata side by side with peers")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Measure the machine, run the workloads against every system, write the report.
    Suite(SuiteArgs),
    /// Run one workload against one running system; prints each case's result as JSON.
    Run(RunArgs),
    /// Regenerate the report and plots from a results file.
    Report(ReportArgs),
}

#[derive(clap::Args)]
struct SuiteArgs {
    /// Directory of workload files.
    #[arg(long, default_value = "bench/workloads")]
    workloads: PathBuf,
    /// Only these workloads (names, e.g. W1,W2); default: the standard set.
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
    /// Systems to run (default: every one this build has a driver for).
    #[arg(long, value_delimiter = ',', value_enum)]
    systems: Vec<System>,
    #[arg(long, value_delimiter = ',', value_enum, default_values = ["fsync", "memory"])]
    classes: Vec<Durability>,
    /// The strata binary to start.
    #[arg(long, default_value = "target/release/strata")]
    strata: PathBuf,
    /// The nats-server program to start (NATS before 2.10 cannot run the fsync class).
    #[arg(long, default_value = "nats-server")]
    nats_server: PathBuf,
    /// Where the results JSON goes.
    #[arg(long, default_value = "target/bench/results.json")]
    out: PathBuf,
    /// The Markdown file whose peers section is regenerated (none: no report).
    #[arg(long)]
    report: Option<PathBuf>,
    /// Where the PNG plots go (with --report).
    #[arg(long, default_value = "docs/figures")]
    figures: PathBuf,
    /// Override every workload's duration (quick checks).
    #[arg(long, value_parser = humantime::parse_duration)]
    duration: Option<Duration>,
    #[arg(long, value_parser = humantime::parse_duration)]
    warmup: Option<Duration>,
    /// How long fio and iperf3 measure each.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    machine_runtime: Duration,
    /// Where the servers keep their data (default: the system's temp dir).
    #[arg(long)]
    work_dir: Option<PathBuf>,
}

#[derive(clap::Args)]
struct RunArgs {
    #[arg(long)]
    workload: PathBuf,
    #[arg(long, value_enum)]
    system: System,
    /// `host:port` (`http://host:port` also for Strata).
    #[arg(long)]
    address: String,
    #[arg(long, value_enum, default_value_t = Durability::Fsync)]
    durability: Durability,
    /// Records/s of a load level of 100 % (needed by workloads with `load`).
    #[arg(long)]
    reference_rate: Option<f64>,
    /// Processes of the system, for CPU and memory.
    #[arg(long)]
    pid: Vec<u32>,
    #[arg(long, default_value = "bench")]
    topic: String,
    #[arg(long, value_parser = humantime::parse_duration)]
    duration: Option<Duration>,
    #[arg(long, value_parser = humantime::parse_duration)]
    warmup: Option<Duration>,
}

#[derive(clap::Args)]
struct ReportArgs {
    #[arg(long, default_value = "target/bench/results.json")]
    results: PathBuf,
    #[arg(long, default_value = "docs/benchmarks.md")]
    report: PathBuf,
    #[arg(long, default_value = "docs/figures")]
    figures: PathBuf,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Suite(a) => suite_command(a).await,
        Command::Run(a) => run_command(a).await,
        Command::Report(a) => {
            let text = std::fs::read(&a.results)
                .with_context(|| format!("read {}", a.results.display()))?;
            let results: SuiteResults = serde_json::from_slice(&text)
                .with_context(|| format!("parse {}", a.results.display()))?;
            write_report(&results, &a.report, &a.figures)
        }
    }
}

fn all_systems() -> Vec<System> {
    let mut s = vec![System::StrataGrpc, System::StrataHttp];
    if cfg!(feature = "kafka") {
        s.push(System::Kafka);
    }
    if cfg!(feature = "nats") {
        s.push(System::Nats);
    }
    if cfg!(feature = "redis") {
        s.push(System::Redis);
    }
    s
}

fn load_workloads(dir: &Path, only: &[String]) -> anyhow::Result<Vec<Workload>> {
    let mut all = Vec::new();
    for entry in std::fs::read_dir(dir).with_context(|| format!("read {}", dir.display()))? {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "toml") {
            all.push(Workload::load_file(&path)?);
        }
    }
    all.sort_by(|a, b| a.name.cmp(&b.name));
    let picked: Vec<Workload> = if only.is_empty() {
        all.into_iter().filter(|w| w.standard).collect()
    } else {
        for name in only {
            if !all.iter().any(|w| &w.name == name) {
                bail!("no workload named {name} in {}", dir.display());
            }
        }
        all.into_iter().filter(|w| only.contains(&w.name)).collect()
    };
    Ok(picked)
}

async fn suite_command(a: SuiteArgs) -> anyhow::Result<()> {
    let workloads = load_workloads(&a.workloads, &a.only)?;
    if !a.strata.exists() {
        bail!(
            "no strata binary at {} (build it with `cargo build --release -p strata`)",
            a.strata.display()
        );
    }
    let work_dir = strata_bench::systems::work_dir(a.work_dir.as_deref())?;
    let opts = SuiteOptions {
        workloads,
        systems: if a.systems.is_empty() {
            all_systems()
        } else {
            a.systems
        },
        classes: a.classes,
        strata_bin: a.strata,
        nats_server: a.nats_server,
        work_dir: work_dir.clone(),
        machine_runtime: a.machine_runtime,
        duration: a.duration,
        warmup: a.warmup,
        command: std::env::args().collect::<Vec<_>>().join(" "),
    };
    // Interrupted, the suite's future is dropped, and with it every server it
    // started (each is killed with its process group when dropped).
    let results = tokio::select! {
        r = suite::run(&opts) => r,
        signal = interrupted() => {
            let _ = std::fs::remove_dir_all(&work_dir);
            bail!("stopped by {signal}; every server the suite started is stopped");
        }
    };
    let _ = std::fs::remove_dir_all(&work_dir);
    let results = results?;
    if let Some(dir) = a.out.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(&a.out, serde_json::to_vec_pretty(&results)?)
        .with_context(|| format!("write {}", a.out.display()))?;
    eprintln!("results in {}", a.out.display());
    if let Some(report) = &a.report {
        write_report(&results, report, &a.figures)?;
    }
    Ok(())
}

/// The first of SIGINT and SIGTERM (never, if they cannot be caught).
async fn interrupted() -> &'static str {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        eprintln!("warning: cannot catch SIGINT and SIGTERM: servers outlive an interrupted suite");
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
    }
}

async fn run_command(a: RunArgs) -> anyhow::Result<()> {
    let mut w = Workload::load_file(&a.workload)?;
    if let Some(d) = a.duration {
        w.duration = d;
    }
    if let Some(d) = a.warmup {
        w.warmup = d;
    }
    let target = Target {
        system: a.system,
        address: a.address,
        durability: a.durability,
    };
    let driver = driver::open(&target).await?;
    for case in w.cases() {
        let (rate, load) = match case.rate {
            CaseRate::Max => (None, None),
            CaseRate::Fixed(r) => (Some(r), None),
            CaseRate::Load(l) => {
                let Some(reference) = a.reference_rate else {
                    bail!("workload {} has load levels: give --reference-rate", w.name);
                };
                (Some(reference * l), Some(l))
            }
        };
        let plan = Plan {
            workload: &w,
            case: &case,
            rate,
            load,
            durability: a.durability,
            topic: a.topic.clone(),
            pids: a.pid.clone(),
            quiet: a.pid.clone(),
        };
        let result = runner::run(&*driver, &plan).await?;
        println!("{}", serde_json::to_string(&result)?);
    }
    Ok(())
}

/// Draws the plots (in a build with `plots`), then regenerates the peers
/// section of `report` between its markers, leaving the rest as it is.
fn write_report(results: &SuiteResults, report: &Path, figures: &Path) -> anyhow::Result<()> {
    let drawn = draw_figures(results, figures)?;
    let base = report.parent().unwrap_or(Path::new(""));
    let links: Vec<String> = drawn
        .iter()
        .map(|p| relative_link(base, p))
        .collect::<anyhow::Result<_>>()?;
    let doc = match std::fs::read_to_string(report) {
        Ok(doc) => doc,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(e).with_context(|| format!("read {}", report.display())),
    };
    let section = strata_bench::report::render(results, &links);
    std::fs::write(report, strata_bench::report::splice(&doc, &section))
        .with_context(|| format!("write {}", report.display()))?;
    for goal in strata_bench::report::goals(results) {
        eprintln!("{}: {:?} {}", goal.label, goal.verdict, goal.detail);
    }
    eprintln!("report in {}", report.display());
    Ok(())
}

#[cfg(feature = "plots")]
fn draw_figures(results: &SuiteResults, dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    Ok(strata_bench::plot::draw(results, dir)?)
}

#[cfg(not(feature = "plots"))]
fn draw_figures(_results: &SuiteResults, _dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    eprintln!("no plots: this strata-bench was built without the `plots` feature");
    Ok(Vec::new())
}

/// `path` as a Markdown link relative to the directory `base` the document is
/// in; both are made absolute first so `docs/x.md` and `docs/figures` agree.
fn relative_link(base: &Path, path: &Path) -> anyhow::Result<String> {
    let cwd = std::env::current_dir()?;
    let base = cwd.join(base);
    let path = cwd.join(path);
    let rel = path.strip_prefix(&base).with_context(|| {
        format!(
            "the figures ({}) must be under the report's directory ({})",
            path.display(),
            base.display()
        )
    })?;
    Ok(rel
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join("/"))
}
