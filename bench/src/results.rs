//! What a suite run records: the machine's own limits, every run's numbers,
//! the systems and classes that could not run, and how it was all started.
//! Written as JSON by the runner; the report is generated from it alone.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::driver::{Durability, System};
use crate::measure::LatencySummary;

/// One workload case against one system in one durability class.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunResult {
    /// The workload's name, `W1` ... `W7`.
    pub workload: String,
    /// What varies within the workload: `max`, `load 50%`, `6 partitions`...
    pub case: String,
    pub system: System,
    pub durability: Durability,
    pub partitions: u32,
    pub record_size: usize,
    /// Records per produce request.
    #[serde(default)]
    pub batch_records: u32,
    pub producers: u32,
    pub consumers: u32,
    /// Records/s asked for; `None` when sending flat out.
    pub target_rate: Option<f64>,
    /// For load levels: the fraction of the reference maximum `target_rate` is.
    pub load: Option<f64>,
    /// The measured window (the warm-up is not counted).
    pub duration_s: f64,
    /// Records acknowledged in the measured window.
    pub records: u64,
    pub bytes: u64,
    pub records_per_s: f64,
    pub mb_per_s: f64,
    /// Requests that failed in the measured window.
    pub errors: u64,
    /// Records due in the measured window that were never sent: at a fixed
    /// rate the system was so far behind that the run stopped sending 5 s
    /// after its end. Not 0 means it did not sustain the rate.
    #[serde(default)]
    pub unsent: u64,
    /// Produce latency, from each request's due time to its acknowledgement.
    pub produce: Option<LatencySummary>,
    /// End-to-end latency, from a record's due time to its delivery to a consumer.
    pub e2e: Option<LatencySummary>,
    /// Records the consumers received that were due in the measured window.
    pub consumed: u64,
    /// CPU seconds (user + system) of the system's processes in the measured window.
    pub cpu_s: Option<f64>,
    /// `cpu_s` per GB (10^9 bytes) produced.
    pub cpu_s_per_gb: Option<f64>,
    /// The system's peak resident memory since it started.
    pub peak_rss_bytes: Option<u64>,
}

/// A system that did not run a workload in a class, and why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Absent {
    pub workload: String,
    pub system: System,
    pub durability: Durability,
    pub reason: String,
}

/// fio's durable sequential write at one write size.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DiskLimit {
    pub write_size: u64,
    pub mb_per_s: f64,
    pub fdatasync_p50_us: Option<f64>,
    pub fdatasync_p99_us: Option<f64>,
}

/// The machine's own limits, measured before the workloads.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Machine {
    pub cores: usize,
    pub memory_bytes: Option<u64>,
    pub kernel: Option<String>,
    pub disk: Vec<DiskLimit>,
    /// iperf3 over 127.0.0.1.
    pub loopback_gbit_s: Option<f64>,
}

/// Everything one suite run produced.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SuiteResults {
    /// When the run started (RFC 3339, UTC).
    pub started: String,
    pub machine: Machine,
    /// Version of each system and tool, as it printed it.
    pub versions: BTreeMap<String, String>,
    /// How each system was started (command lines and settings).
    pub setups: BTreeMap<String, String>,
    /// The command that ran the suite.
    pub command: String,
    pub runs: Vec<RunResult>,
    pub absent: Vec<Absent>,
}
