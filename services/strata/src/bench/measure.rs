//! The report of a `strata bench` run; the schedule and the histograms it
//! measures with come from `strata-loadgen`.

use std::time::Duration;

use serde_json::{Value, json};
pub use strata_loadgen::{
    Latencies, LatencySummary, SENT_HEADER, Schedule, decode_sent, encode_sent, partition_for,
    payload,
};

#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    pub mode: &'static str,
    pub records: u64,
    pub bytes: u64,
    pub duration: Duration,
    pub errors: u64,
    /// Produce latency (produce and e2e).
    pub latency: Option<LatencySummary>,
    /// End-to-end latency, due time to consumed (e2e).
    pub e2e: Option<LatencySummary>,
    /// Records the e2e consumer saw in the measured window.
    pub consumed: Option<u64>,
}

impl Report {
    pub fn duration_s(&self) -> f64 {
        self.duration.as_secs_f64()
    }

    pub fn records_per_s(&self) -> f64 {
        per_second(self.records as f64, self.duration_s())
    }

    /// Megabytes (10^6 bytes) per second.
    pub fn mb_per_s(&self) -> f64 {
        per_second(self.bytes as f64 / 1e6, self.duration_s())
    }

    pub fn to_json(&self) -> Value {
        let lat = self.latency;
        let mut v = json!({
            "mode": self.mode,
            "records": self.records,
            "bytes": self.bytes,
            "duration_s": round3(self.duration_s()),
            "records_per_s": round3(self.records_per_s()),
            "mb_per_s": round3(self.mb_per_s()),
            "p50_ms": lat.map(|l| l.p50_ms),
            "p99_ms": lat.map(|l| l.p99_ms),
            "p999_ms": lat.map(|l| l.p999_ms),
            "max_ms": lat.map(|l| l.max_ms),
            "errors": self.errors,
        });
        if let Some(o) = v.as_object_mut() {
            if self.mode == "e2e" {
                let e2e = self.e2e;
                o.insert("e2e_p50_ms".into(), json!(e2e.map(|l| l.p50_ms)));
                o.insert("e2e_p99_ms".into(), json!(e2e.map(|l| l.p99_ms)));
                o.insert("e2e_p999_ms".into(), json!(e2e.map(|l| l.p999_ms)));
                o.insert("e2e_max_ms".into(), json!(e2e.map(|l| l.max_ms)));
            }
            if let Some(c) = self.consumed {
                o.insert("consumed".into(), json!(c));
            }
        }
        v
    }

    pub fn to_human(&self) -> String {
        let mut lines = vec![
            format!(
                "{}: {} records, {} bytes in {:.1} s",
                self.mode,
                self.records,
                self.bytes,
                self.duration_s()
            ),
            format!(
                "throughput: {:.1} records/s, {:.2} MB/s",
                self.records_per_s(),
                self.mb_per_s()
            ),
        ];
        if let Some(l) = self.latency {
            lines.push(format!("produce latency (ms): {}", latency_line(l)));
        }
        if self.mode == "e2e" {
            match self.e2e {
                Some(l) => lines.push(format!("end-to-end latency (ms): {}", latency_line(l))),
                None => lines.push("end-to-end latency: no records consumed".into()),
            }
        }
        if let Some(c) = self.consumed {
            lines.push(format!("consumed: {c} records"));
        }
        lines.push(format!("errors: {}", self.errors));
        lines.join("\n")
    }
}

fn latency_line(l: LatencySummary) -> String {
    format!(
        "p50 {:.3}  p99 {:.3}  p99.9 {:.3}  max {:.3}",
        l.p50_ms, l.p99_ms, l.p999_ms, l.max_ms
    )
}

fn per_second(amount: f64, seconds: f64) -> f64 {
    if seconds > 0.0 { amount / seconds } else { 0.0 }
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_json_has_the_documented_fields() {
        let r = Report {
            mode: "produce",
            records: 1000,
            bytes: 2_000_000,
            duration: Duration::from_secs(2),
            errors: 1,
            latency: Some(LatencySummary {
                p50_ms: 1.0,
                p99_ms: 2.0,
                p999_ms: 3.0,
                max_ms: 4.0,
                samples: 1000,
            }),
            e2e: None,
            consumed: None,
        };
        let v = r.to_json();
        assert_eq!(
            v,
            json!({
                "mode": "produce", "records": 1000, "bytes": 2_000_000, "duration_s": 2.0,
                "records_per_s": 500.0, "mb_per_s": 1.0, "p50_ms": 1.0, "p99_ms": 2.0,
                "p999_ms": 3.0, "max_ms": 4.0, "errors": 1,
            })
        );
        let human = r.to_human();
        assert!(human.contains("500.0 records/s, 1.00 MB/s"), "{human}");
        assert!(
            human.contains("p50 1.000  p99 2.000  p99.9 3.000  max 4.000"),
            "{human}"
        );
    }

    #[test]
    fn consume_and_e2e_reports() {
        let mut r = Report {
            mode: "consume",
            records: 10,
            bytes: 10,
            duration: Duration::ZERO,
            errors: 0,
            latency: None,
            e2e: None,
            consumed: None,
        };
        assert_eq!(r.to_json()["p99_ms"], Value::Null);
        assert_eq!(r.records_per_s(), 0.0);
        r.mode = "e2e";
        r.consumed = Some(9);
        let v = r.to_json();
        assert_eq!(v["e2e_p99_ms"], Value::Null);
        assert_eq!(v["consumed"], json!(9));
    }
}
