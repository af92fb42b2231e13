//! The check every driver's test runs against its real system: what the
//! producers acknowledged, the consumers deliver, each partition in order.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes, BytesMut};

use super::{Driver, DriverError};

/// Sends `batches` batches of `per_batch` records to each of `partitions`
/// partitions of a fresh `topic` (some requests in flight at once), then reads
/// every partition back with one consumer per two partitions. Fails unless
/// each partition delivers exactly what was acknowledged, in order.
pub async fn round_trip(
    driver: &dyn Driver,
    topic: &str,
    partitions: u32,
    batches: u32,
    per_batch: u32,
) -> Result<(), String> {
    driver
        .prepare(topic, partitions)
        .await
        .map_err(|e| format!("prepare: {e}"))?;
    // Twice, as a rerun of a benchmark would: the second starts empty.
    driver
        .prepare(topic, partitions)
        .await
        .map_err(|e| format!("prepare again: {e}"))?;
    let producer = driver
        .producer(topic)
        .await
        .map_err(|e| format!("producer: {e}"))?;
    let mut expected: BTreeMap<u32, Vec<Bytes>> = BTreeMap::new();
    let mut pending = Vec::new();
    for b in 0..batches {
        for p in 0..partitions {
            let values: Vec<Bytes> = (0..per_batch).map(|i| value(p, b, i)).collect();
            expected
                .entry(p)
                .or_default()
                .extend(values.iter().cloned());
            pending.push(producer.send(p, values));
        }
        // Keep several in flight, but let each partition's batches go in order.
        if pending.len() >= 8 {
            for f in pending.drain(..) {
                f.await.map_err(|e| format!("send: {e}"))?;
            }
        }
    }
    for f in pending {
        f.await.map_err(|e| format!("send: {e}"))?;
    }
    let all: Vec<u32> = (0..partitions).collect();
    for group in all.chunks(2) {
        let mut consumer = driver
            .consumer(topic, group)
            .await
            .map_err(|e| format!("consumer of {group:?}: {e}"))?;
        let want: usize = group.iter().map(|p| expected[p].len()).sum();
        let mut got: BTreeMap<u32, Vec<Bytes>> = BTreeMap::new();
        let mut n = 0;
        let deadline = Instant::now() + Duration::from_secs(30);
        while n < want {
            if Instant::now() > deadline {
                return Err(format!(
                    "partitions {group:?}: {n} of {want} records delivered in 30 s"
                ));
            }
            let values = consumer
                .poll(Duration::from_millis(500))
                .await
                .map_err(|e: DriverError| format!("poll: {e}"))?;
            for v in values {
                let p = partition_of(&v).ok_or_else(|| format!("foreign record {v:?}"))?;
                got.entry(p).or_default().push(v);
                n += 1;
            }
        }
        // Nothing more may come.
        let extra = consumer
            .poll(Duration::from_millis(300))
            .await
            .map_err(|e| format!("poll: {e}"))?;
        if !extra.is_empty() {
            return Err(format!(
                "partitions {group:?}: {} records more than were sent",
                extra.len()
            ));
        }
        for p in group {
            if got.get(p) != expected.get(p) {
                return Err(format!(
                    "partition {p}: delivered {} records, not the {} acknowledged in order",
                    got.get(p).map_or(0, Vec::len),
                    expected[p].len()
                ));
            }
        }
    }
    Ok(())
}

/// A value that says where it belongs: 8 bytes of (fake) due time, then the
/// partition, batch and index.
fn value(p: u32, b: u32, i: u32) -> Bytes {
    let mut v = BytesMut::with_capacity(20 + 16);
    v.put_u64(1_700_000_000_000_000 + u64::from(b));
    v.put_u32(p);
    v.put_u32(b);
    v.put_u32(i);
    v.put_slice(b"0123456789abcdef");
    v.freeze()
}

fn partition_of(v: &[u8]) -> Option<u32> {
    Some(u32::from_be_bytes(v.get(8..12)?.try_into().ok()?))
}
