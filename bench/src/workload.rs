//! Workload definitions, one TOML file each (`bench/workloads/`), the same
//! for every system, and their expansion into the cases a suite runs.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;

use crate::driver::System;

/// Why a workload file was refused.
#[derive(Debug, thiserror::Error)]
pub enum WorkloadError {
    #[error("workload file {path}: {message}")]
    Invalid { path: String, message: String },
    #[error("workload file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
}

/// One workload, as written in its file.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Workload {
    /// `W1` ... `W7`, as in `targets.md`.
    pub name: String,
    pub description: String,
    /// Part of the standard set the suite runs by default.
    #[serde(default)]
    pub standard: bool,
    /// Partition counts: one case per count.
    pub partitions: Vec<u32>,
    /// Bytes per record value (at least 8: each value starts with its due time).
    pub record_size: usize,
    /// Producer connections.
    pub producers: u32,
    /// Consumer connections tailing the topic (0: produce only).
    pub consumers: u32,
    /// Records per produce request.
    pub batch_records: u32,
    /// Requests in flight per producer when sending flat out.
    #[serde(default = "default_window")]
    pub window: u32,
    #[serde(with = "humantime_serde_compat")]
    pub duration: Duration,
    #[serde(with = "humantime_serde_compat")]
    pub warmup: Duration,
    /// A fixed rate in records/s over all producers; without it and without
    /// `load`, producers send flat out.
    pub rate: Option<f64>,
    /// Load levels: fractions of the reference system's maximum in the
    /// workload named by `load_of`, in the same durability class. Every
    /// system runs the same absolute rates, so latencies compare directly.
    #[serde(default)]
    pub load: Vec<f64>,
    pub load_of: Option<String>,
    /// Bytes to produce flat out before measuring, which the consumers then
    /// read from the start while producers go on at the rate (catch-up).
    pub backlog_bytes: Option<u64>,
    /// Only these systems run it (others are reported absent with the reason).
    pub systems: Option<Vec<System>>,
    /// Why the other systems do not run it.
    pub systems_reason: Option<String>,
    /// Strata with sealed segments offloaded to an S3-compatible server
    /// behind this much injected latency per direction.
    pub tiered_latency_ms: Option<u64>,
    /// Topic settings, as Strata names them (`segment_bytes`, `retention_ms`,
    /// ...); systems without them are reported absent.
    #[serde(default)]
    pub topic_config: BTreeMap<String, i64>,
}

fn default_window() -> u32 {
    32
}

/// `"30s"`, `"2m"`: durations as people write them.
mod humantime_serde_compat {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer};

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let s = String::deserialize(d)?;
        humantime::parse_duration(&s).map_err(serde::de::Error::custom)
    }
}

/// How fast a case sends.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum CaseRate {
    Max,
    Fixed(f64),
    /// A fraction of the reference maximum, known once that ran.
    Load(f64),
}

/// One run of a workload: a partition count and a rate.
#[derive(Debug, Clone, PartialEq)]
pub struct Case {
    pub workload: String,
    /// Distinguishes the cases of one workload in the report.
    pub label: String,
    pub partitions: u32,
    pub rate: CaseRate,
}

impl Workload {
    pub fn parse(text: &str, path: &str) -> Result<Workload, WorkloadError> {
        let w: Workload = toml::from_str(text).map_err(|e| WorkloadError::Invalid {
            path: path.into(),
            message: e.to_string(),
        })?;
        w.validate().map_err(|message| WorkloadError::Invalid {
            path: path.into(),
            message,
        })?;
        Ok(w)
    }

    pub fn load_file(path: &std::path::Path) -> Result<Workload, WorkloadError> {
        let name = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| WorkloadError::Read {
            path: name.clone(),
            source,
        })?;
        Workload::parse(&text, &name)
    }

    fn validate(&self) -> Result<(), String> {
        if self.name.is_empty() || !self.name.chars().all(|c| c.is_ascii_alphanumeric()) {
            return Err(format!("name {:?} must be letters and digits", self.name));
        }
        if self.partitions.is_empty() || self.partitions.iter().any(|&p| p == 0 || p > 4096) {
            return Err("partitions must list counts from 1 to 4096".into());
        }
        if !(8..=16 << 20).contains(&self.record_size) {
            return Err(format!(
                "record_size {} must be 8 bytes (the due time) to 16 MiB",
                self.record_size
            ));
        }
        if self.producers == 0 || self.producers > 1024 {
            return Err("producers must be 1 to 1024".into());
        }
        if self.consumers > 1024 {
            return Err("consumers must be at most 1024".into());
        }
        if self.batch_records == 0 || self.batch_records > 100_000 {
            return Err("batch_records must be 1 to 100000".into());
        }
        if self.window == 0 || self.window > 4096 {
            return Err("window must be 1 to 4096".into());
        }
        if self.duration.is_zero() {
            return Err("duration must be positive".into());
        }
        if let Some(r) = self.rate
            && !(r > 0.0 && r.is_finite())
        {
            return Err(format!("rate {r} must be a positive number of records/s"));
        }
        if self.rate.is_some() && !self.load.is_empty() {
            return Err("give either rate or load, not both".into());
        }
        if !self.load.is_empty() && self.load_of.is_none() {
            return Err(
                "load needs load_of: the workload whose maximum it is a fraction of".into(),
            );
        }
        if let Some(bad) = self.load.iter().find(|l| !(**l > 0.0 && **l <= 2.0)) {
            return Err(format!("load {bad} must be a fraction in (0, 2]"));
        }
        if self.backlog_bytes.is_some() && self.consumers == 0 {
            return Err("a backlog needs consumers to read it".into());
        }
        Ok(())
    }

    /// The cases to run, in order.
    pub fn cases(&self) -> Vec<Case> {
        let mut cases = Vec::new();
        let many = self.partitions.len() > 1;
        for &partitions in &self.partitions {
            let prefix = if many {
                format!("{partitions} partitions, ")
            } else {
                String::new()
            };
            let rates: Vec<(String, CaseRate)> = if !self.load.is_empty() {
                self.load
                    .iter()
                    .map(|&l| (format!("load {}%", pct(l)), CaseRate::Load(l)))
                    .collect()
            } else if let Some(r) = self.rate {
                vec![(format!("{r} records/s"), CaseRate::Fixed(r))]
            } else {
                vec![("max".to_string(), CaseRate::Max)]
            };
            for (label, rate) in rates {
                cases.push(Case {
                    workload: self.name.clone(),
                    label: format!("{prefix}{label}"),
                    partitions,
                    rate,
                });
            }
        }
        cases
    }

    /// Whether `system` runs this workload.
    pub fn runs_on(&self, system: System) -> bool {
        self.systems.as_ref().is_none_or(|s| s.contains(&system))
    }
}

/// A load fraction as a percentage label (0.1 → "10").
fn pct(l: f64) -> String {
    let p = l * 100.0;
    if (p - p.round()).abs() < 1e-9 {
        format!("{}", p.round() as i64)
    } else {
        format!("{p:.1}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const W2: &str = r#"
name = "W2"
description = "W1 at fractions of its maximum"
standard = true
partitions = [16]
record_size = 1024
producers = 1
consumers = 1
batch_records = 16
duration = "10s"
warmup = "2s"
load = [0.1, 0.25, 0.5, 0.75]
load_of = "W1"
"#;

    #[test]
    fn load_levels_expand_into_cases() {
        let w = Workload::parse(W2, "w2.toml").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(w.window, 32);
        assert_eq!(w.duration, Duration::from_secs(10));
        let cases = w.cases();
        let labels: Vec<_> = cases.iter().map(|c| c.label.as_str()).collect();
        assert_eq!(labels, ["load 10%", "load 25%", "load 50%", "load 75%"]);
        assert_eq!(cases[2].rate, CaseRate::Load(0.5));
        assert!(w.runs_on(System::Redis));
    }

    #[test]
    fn partition_counts_expand_into_cases() {
        let text = W2
            .replace("partitions = [16]", "partitions = [1, 6]")
            .replace("load = [0.1, 0.25, 0.5, 0.75]\nload_of = \"W1\"", "")
            + "systems = [\"strata-grpc\"]\n";
        let w = Workload::parse(&text, "w3.toml").unwrap_or_else(|e| panic!("{e}"));
        let labels: Vec<_> = w.cases().into_iter().map(|c| c.label).collect();
        assert_eq!(labels, ["1 partitions, max", "6 partitions, max"]);
        assert!(w.runs_on(System::StrataGrpc));
        assert!(!w.runs_on(System::Nats));
    }

    #[test]
    fn bad_files_are_refused_with_the_reason() {
        let cases = [
            (
                W2.replace("record_size = 1024", "record_size = 4"),
                "record_size",
            ),
            (
                W2.replace("partitions = [16]", "partitions = []"),
                "partitions",
            ),
            (W2.replace("load_of = \"W1\"", ""), "load_of"),
            (W2.replace("0.75]", "3.0]"), "load 3"),
            (W2.replace("\"10s\"", "\"ten\""), "duration"),
            (W2.replace("producers = 1", "producers = 0"), "producers"),
            (W2.to_owned() + "rate = 100.0\n", "either rate or load"),
            (W2.to_owned() + "colour = \"red\"\n", "unknown field"),
            (W2.replace("name = \"W2\"", "name = \"W 2\""), "letters"),
        ];
        for (text, needle) in cases {
            match Workload::parse(&text, "w.toml") {
                Ok(w) => panic!("accepted {w:?}, wanted an error about {needle}"),
                Err(e) => assert!(e.to_string().contains(needle), "{e} lacks {needle}"),
            }
        }
    }

    #[test]
    fn the_shipped_workloads_parse() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("workloads");
        let mut names = Vec::new();
        for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{e}")) {
            let path = entry.unwrap_or_else(|e| panic!("{e}")).path();
            let w = Workload::load_file(&path).unwrap_or_else(|e| panic!("{e}"));
            names.push((w.name.clone(), w.standard));
        }
        names.sort();
        let all: Vec<_> = names.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(all, ["W1", "W2", "W3", "W4", "W5", "W6", "W7"]);
        let standard: Vec<_> = names
            .iter()
            .filter(|(_, s)| *s)
            .map(|(n, _)| n.as_str())
            .collect();
        assert_eq!(standard, ["W1", "W2", "W3", "W6"]);
    }
}
