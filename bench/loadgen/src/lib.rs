//! What every benchmark measures, apart from the network: the send schedule,
//! latency histograms and the payload. Pure, so it is tested on its own.

use std::time::Duration;

use bytes::Bytes;
use hdrhistogram::Histogram;

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
            samples: self.hist.len(),
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct LatencySummary {
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
    /// How many records the percentiles are over.
    #[serde(default)]
    pub samples: u64,
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
