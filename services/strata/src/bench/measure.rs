//! What `strata bench` measures, apart from the network: the send schedule,
//! latency histograms, and the report. Pure, so it is tested on its own.

use std::time::Duration;

use bytes::Bytes;
use hdrhistogram::Histogram;
use serde_json::{Value, json};

/// Highest latency recorded exactly (1 hour, in µs); slower ones count as this.
const MAX_LATENCY_US: u64 = 3_600_000_000;

/// When each request of one producer is due, for a constant rate shared by
/// all producers. Latency is measured from these times, not from when a
/// request actually went out, so a stalled server is charged for the
/// requests it kept from being sent (no coordinated omission).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Schedule {
    /// Between two requests of this producer.
    pub interval: Duration,
    /// This producer's offset from the common start, so producers interleave.
    pub phase: Duration,
}

impl Schedule {
    /// `rate` records/s over `producers` producers sending `batch` records per request.
    pub fn new(rate: f64, batch: u32, producers: u32, index: u32) -> Option<Schedule> {
        if !(rate > 0.0 && rate.is_finite()) || batch == 0 || producers == 0 {
            return None;
        }
        let requests_per_s = rate / f64::from(batch);
        let interval = Duration::try_from_secs_f64(f64::from(producers) / requests_per_s).ok()?;
        let phase = interval.mul_f64(f64::from(index % producers) / f64::from(producers));
        Some(Schedule { interval, phase })
    }

    /// The due time of request `i`, from the common start.
    pub fn offset(&self, i: u64) -> Duration {
        // In nanoseconds, so long runs don't accumulate rounding.
        let nanos = self.phase.as_nanos() + self.interval.as_nanos() * u128::from(i);
        Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
    }
}

/// The partition of request `i` of producer `index`: producers interleave so
/// every partition gets an equal share.
pub fn partition_for(i: u64, index: u32, producers: u32, partitions: u32) -> u32 {
    let slot = i * u64::from(producers.max(1)) + u64::from(index);
    (slot % u64::from(partitions.max(1))) as u32
}

/// The same bytes for every record, not all zeroes so the value is not
/// trivially compressible.
pub fn payload(size: usize) -> Bytes {
    let mut x: u32 = 0x9e37_79b9;
    (0..size)
        .map(|_| {
            // xorshift32
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            b'a' + (x % 26) as u8
        })
        .collect::<Vec<u8>>()
        .into()
}

/// The header carrying a record's due time (µs since the Unix epoch) for end-to-end latency.
pub const SENT_HEADER: &str = "strata-bench-sent-us";

pub fn encode_sent(us: u64) -> Bytes {
    Bytes::copy_from_slice(&us.to_be_bytes())
}

pub fn decode_sent(b: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(b.try_into().ok()?))
}

/// A latency histogram in microseconds.
#[derive(Debug, Clone)]
pub struct Latencies {
    hist: Histogram<u64>,
}

impl Default for Latencies {
    fn default() -> Self {
        Latencies::new()
    }
}

impl Latencies {
    pub fn new() -> Self {
        // Constant bounds that hdrhistogram accepts: this cannot fail.
        let hist =
            Histogram::new_with_bounds(1, MAX_LATENCY_US, 3).expect("valid histogram bounds");
        Latencies { hist }
    }

    /// `count` records that took `latency` (a request's latency counts for each of its records).
    pub fn record(&mut self, latency: Duration, count: u64) {
        let us = u64::try_from(latency.as_micros())
            .unwrap_or(u64::MAX)
            .clamp(1, MAX_LATENCY_US);
        self.hist.saturating_record_n(us, count);
    }

    pub fn merge(&mut self, other: &Latencies) {
        // Same bounds on both sides, so adding cannot fail.
        let _ = self.hist.add(&other.hist);
    }

    #[cfg(test)]
    pub fn count(&self) -> u64 {
        self.hist.len()
    }

    pub fn summary(&self) -> Option<LatencySummary> {
        if self.hist.is_empty() {
            return None;
        }
        let ms = |us: u64| us as f64 / 1000.0;
        Some(LatencySummary {
            p50_ms: ms(self.hist.value_at_quantile(0.50)),
            p99_ms: ms(self.hist.value_at_quantile(0.99)),
            p999_ms: ms(self.hist.value_at_quantile(0.999)),
            max_ms: ms(self.hist.max()),
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LatencySummary {
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
}

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
    fn schedule_spreads_the_rate_over_producers() {
        // 1000 records/s in requests of 10 over 2 producers: each sends every 20 ms,
        // the second 10 ms after the first.
        let a = Schedule::new(1000.0, 10, 2, 0).unwrap_or_else(|| panic!("no schedule"));
        let b = Schedule::new(1000.0, 10, 2, 1).unwrap_or_else(|| panic!("no schedule"));
        assert_eq!(a.interval, Duration::from_millis(20));
        assert_eq!(a.offset(0), Duration::ZERO);
        assert_eq!(a.offset(3), Duration::from_millis(60));
        assert_eq!(b.offset(0), Duration::from_millis(10));
        assert_eq!(b.offset(2), Duration::from_millis(50));
        // Over one second the producers together are due 100 requests of 10 records.
        let due = [a, b]
            .iter()
            .map(|s| {
                (0..)
                    .take_while(|&i| s.offset(i) < Duration::from_secs(1))
                    .count()
            })
            .sum::<usize>();
        assert_eq!(due, 100);
        assert_eq!(Schedule::new(0.0, 10, 2, 0), None);
        assert_eq!(Schedule::new(f64::NAN, 10, 2, 0), None);
    }

    #[test]
    fn partitions_are_shared_evenly() {
        let mut counts = [0u32; 4];
        for index in 0..3 {
            for i in 0..40 {
                counts[partition_for(i, index, 3, 4) as usize] += 1;
            }
        }
        assert_eq!(counts, [30, 30, 30, 30]);
    }

    #[test]
    fn percentiles_from_known_samples() {
        let mut l = Latencies::new();
        for ms in 1..=1000u64 {
            l.record(Duration::from_millis(ms), 1);
        }
        let s = l.summary().unwrap_or_else(|| panic!("empty"));
        let close = |a: f64, b: f64| (a - b).abs() <= b * 0.001 + 0.001;
        assert!(close(s.p50_ms, 500.0), "{s:?}");
        assert!(close(s.p99_ms, 990.0), "{s:?}");
        assert!(close(s.p999_ms, 999.0), "{s:?}");
        assert!(close(s.max_ms, 1000.0), "{s:?}");
        assert!(Latencies::new().summary().is_none());
    }

    #[test]
    fn counts_weight_and_merge() {
        let mut a = Latencies::new();
        a.record(Duration::from_millis(1), 99);
        let mut b = Latencies::new();
        b.record(Duration::from_millis(100), 1);
        b.record(Duration::from_secs(100_000), 1); // clamped, not lost
        a.merge(&b);
        assert_eq!(a.count(), 101);
        let s = a.summary().unwrap_or_else(|| panic!("empty"));
        assert!((s.p50_ms - 1.0).abs() < 0.01, "{s:?}");
        assert!(s.max_ms >= 3_599_000.0, "{s:?}");
    }

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

    #[test]
    fn sent_times_round_trip() {
        assert_eq!(
            decode_sent(&encode_sent(1_700_000_000_123_456)),
            Some(1_700_000_000_123_456)
        );
        assert_eq!(decode_sent(b"short"), None);
        let p = payload(64);
        assert_eq!(p.len(), 64);
        assert!(p.iter().all(u8::is_ascii_lowercase));
    }
}
