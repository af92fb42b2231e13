//! The goals of issue 8, judged from a suite's numbers alone: Strata's
//! durable W1 throughput against factors of the peers', and its W2 produce
//! p99 at half load against each peer's at the same absolute rate.

use crate::driver::{Durability, System};
use crate::report::{CLASSES, PEERS, absent_of, missing, runs_of, sig, times};
use crate::results::{RunResult, SuiteResults};

/// Goals (a)–(c): Strata's fsync-class W1 throughput against a factor of a
/// peer's in a class.
const THROUGHPUT_GOALS: [(&str, System, Durability, f64); 3] = [
    (
        "(a) Strata's fsync-class W1 throughput ≥ 2× NATS JetStream's (fsync)",
        System::Nats,
        Durability::Fsync,
        2.0,
    ),
    (
        "(b) Strata's fsync-class W1 throughput ≥ 5× Redis Streams' (fsync, appendfsync always)",
        System::Redis,
        Durability::Fsync,
        5.0,
    ),
    (
        "(c) Strata's fsync-class W1 throughput ≥ Redis Streams' memory-class W1",
        System::Redis,
        Durability::Memory,
        1.0,
    ),
];
/// The W2 load level goal (d) is judged at.
const GOAL_LOAD_CASE: &str = "load 50%";

/// How a goal came out.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    Met,
    NotMet,
    /// The numbers to judge it are not there (a system absent, no run, rates
    /// that differ); the reason says which.
    NotComparable(String),
}

/// One goal, judged from the results.
#[derive(Debug, Clone, PartialEq)]
pub struct Goal {
    /// `(a)` ... `(d)` and what it asks.
    pub label: String,
    pub verdict: Verdict,
    /// The numbers behind a met or not met verdict.
    pub detail: String,
}

impl Goal {
    fn judged(label: String, met: bool, detail: String) -> Goal {
        let verdict = if met { Verdict::Met } else { Verdict::NotMet };
        Goal {
            label,
            verdict,
            detail,
        }
    }

    fn not_comparable(label: String, why: String) -> Goal {
        let verdict = Verdict::NotComparable(why);
        Goal {
            label,
            verdict,
            detail: String::new(),
        }
    }
}

/// Goals (a)–(d) of issue 8, judged from the numbers.
pub fn goals(results: &SuiteResults) -> Vec<Goal> {
    let mut goals: Vec<Goal> = THROUGHPUT_GOALS
        .iter()
        .map(|&(label, peer, class, factor)| throughput_goal(results, label, peer, class, factor))
        .collect();
    let classes: Vec<Durability> = CLASSES
        .into_iter()
        .filter(|&c| {
            runs_of(results, "W2", c).next().is_some()
                || absent_of(results, "W2", c).next().is_some()
        })
        .collect();
    if classes.is_empty() {
        let label =
            format!("(d) Strata's W2 produce p99 at `{GOAL_LOAD_CASE}` lower than each peer's");
        goals.push(Goal::not_comparable(label, "no W2 runs".into()));
    }
    for class in classes {
        goals.extend(PEERS.map(|peer| latency_goal(results, class, peer)));
    }
    goals
}

/// Strata's W1 flat-out rate in the fsync class against `factor` × `peer`'s in `class`.
fn throughput_goal(
    results: &SuiteResults,
    label: &str,
    peer: System,
    class: Durability,
    factor: f64,
) -> Goal {
    let label = label.to_string();
    let pair = max_run(results, "W1", Durability::Fsync, System::StrataGrpc)
        .and_then(|ours| Ok((ours, max_run(results, "W1", class, peer)?)));
    let (ours, theirs) = match pair {
        Ok(p) => p,
        Err(why) => return Goal::not_comparable(label, why),
    };
    let (a, b) = (ours.record_size, theirs.record_size);
    if a != b {
        return Goal::not_comparable(label, format!("record sizes differ ({a} vs {b} bytes)"));
    }
    let ratio = ours.records_per_s / theirs.records_per_s;
    let (o, t, p, c) = (
        sig(ours.records_per_s),
        sig(theirs.records_per_s),
        peer.as_str(),
        class.as_str(),
    );
    let detail = format!(
        "strata-grpc {o} records/s vs {p} {t} records/s ({c}): {} (goal ≥ {})",
        times(ratio),
        times(factor)
    );
    Goal::judged(label, ratio >= factor, detail)
}

/// Strata's W2 produce p99 at the goal load level against `peer`'s, same class and rate.
fn latency_goal(results: &SuiteResults, class: Durability, peer: System) -> Goal {
    let (p, c) = (peer.as_str(), class.as_str());
    let label = format!(
        "(d) Strata's W2 produce p99 at `{GOAL_LOAD_CASE}` lower than {p} at the same rate, {c} class"
    );
    let run = |s: System| {
        runs_of(results, "W2", class)
            .find(|r| r.system == s && r.case == GOAL_LOAD_CASE)
            .ok_or_else(|| missing(results, "W2", class, s))
    };
    let (ours, theirs) = match run(System::StrataGrpc).and_then(|o| Ok((o, run(peer)?))) {
        Ok(pair) => pair,
        Err(why) => return Goal::not_comparable(label, why),
    };
    // Latencies compare only at the same absolute rate.
    let rate = match (ours.target_rate, theirs.target_rate) {
        (Some(a), Some(b)) if same_rate(a, b) => a,
        (a, b) => {
            let (a, b) = (
                a.map_or_else(|| "flat out".into(), sig),
                b.map_or_else(|| "flat out".into(), sig),
            );
            return Goal::not_comparable(
                label,
                format!("not the same rate ({a} vs {b} records/s)"),
            );
        }
    };
    let Some(o) = ours.produce else {
        return Goal::not_comparable(label, "no produce latency of strata-grpc recorded".into());
    };
    let Some(t) = theirs.produce else {
        // Nothing due in the window came back: a peer so far behind the rate
        // that its p99 is beyond the whole run, which any latency beats.
        if theirs.unsent > 0 && ours.unsent == 0 {
            let (r, ot, u) = (sig(rate), sig(o.p99_ms), sig(theirs.unsent as f64));
            let detail = format!(
                "at {r} records/s: strata-grpc {ot} ms; {p} acknowledged none of the records due \
                 in the window ({u} never sent): it did not sustain the rate"
            );
            return Goal::judged(label, true, detail);
        }
        return Goal::not_comparable(label, format!("no produce latency of {p} recorded"));
    };
    let (r, ot, tt) = (sig(rate), sig(o.p99_ms), sig(t.p99_ms));
    let detail = format!("at {r} records/s: strata-grpc {ot} ms vs {p} {tt} ms");
    Goal::judged(label, o.p99_ms < t.p99_ms, detail)
}

/// Whether two target rates are the same one (as written to JSON and read back).
pub(crate) fn same_rate(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-6 * a.abs().max(b.abs())
}

/// The flat-out run of `system` in `workload` and `class` that acknowledged something.
fn max_run<'a>(
    results: &'a SuiteResults,
    workload: &'a str,
    class: Durability,
    system: System,
) -> Result<&'a RunResult, String> {
    let run = runs_of(results, workload, class)
        .find(|r| r.system == system && r.target_rate.is_none())
        .ok_or_else(|| missing(results, workload, class, system))?;
    if run.records_per_s > 0.0 && run.records_per_s.is_finite() {
        Ok(run)
    } else {
        let (s, c) = (system.as_str(), class.as_str());
        Err(format!("{s} acknowledged no records in {workload} ({c})"))
    }
}
