//! Retention enforcement, across both tiers.
//!
//! As Kafka, retention deletes whole sealed segments only, oldest first, by
//! moving the partition's start offset to the end of the last segment that
//! goes: the active segment is never deleted, so a partition that is
//! written to slowly keeps its newest data however old it gets. The
//! segments considered are the bucket's (below the local copy) and the
//! local ones: the start offset advances first (readers see the new range
//! at once), then the expired segments leave the manifest, then the bucket.

use std::sync::Arc;
use std::time::Duration;

use strata_log::{Log, LogError, SegmentInfo};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::{debug, info, warn};

use crate::broker::{now_ms, partition_key};
use crate::config::TopicConfig;
use crate::metadata::MetadataStore;
use crate::tiering::Tier;
use crate::tiering::policy::whole_log;
use object_store::ObjectStoreExt;

/// What retention deletes from one partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Plan {
    /// The new log start offset: the end of the last segment deleted.
    pub new_start: u64,
    /// Segments deleted, and of those, how many because of their age and size.
    pub segments: usize,
    pub by_time: usize,
    pub by_size: usize,
    pub bytes: u64,
}

/// Decides what retention deletes from a partition with these `segments`
/// (offset order, the last one active) at `now_ms`; `None` when nothing.
///
/// * Time: a sealed segment goes when both its largest record timestamp and
///   its last append are older than `now - retention_ms`. The append time
///   matters because producers may set old timestamps (a replay of history):
///   such data is kept for `retention_ms` after it arrived.
/// * Size: the oldest sealed segment goes while the partition would still
///   hold at least `retention_bytes` without it.
pub(crate) fn plan(
    segments: &[SegmentInfo],
    log_start: u64,
    config: &TopicConfig,
    now_ms: i64,
) -> Option<Plan> {
    let sealed: Vec<&SegmentInfo> = segments
        .iter()
        .take_while(|s| s.sealed)
        .filter(|s| s.end_offset > log_start)
        .collect();

    let by_time = if config.retention_ms >= 0 {
        let cutoff = now_ms.saturating_sub(config.retention_ms);
        sealed
            .iter()
            .take_while(|s| s.max_timestamp < cutoff && s.last_append_ms.is_none_or(|t| t < cutoff))
            .count()
    } else {
        0
    };

    let by_size = if config.retention_bytes >= 0 {
        let limit = config.retention_bytes.unsigned_abs();
        let mut total: u64 = segments.iter().map(|s| s.bytes).sum();
        let mut n = 0;
        for s in &sealed {
            let without = total.saturating_sub(s.bytes);
            if without < limit {
                break;
            }
            total = without;
            n += 1;
        }
        n
    } else {
        0
    };

    let n = by_time.max(by_size);
    let last = sealed.get(n.checked_sub(1)?)?;
    (last.end_offset > log_start).then(|| Plan {
        new_start: last.end_offset,
        segments: n,
        by_time,
        by_size,
        bytes: sealed.iter().take(n).map(|s| s.bytes).sum(),
    })
}

/// Runs retention every `interval` until `stop` turns true (or its sender goes away).
pub(crate) fn spawn(
    log: Arc<Log>,
    meta: Arc<dyn MetadataStore>,
    tier: Arc<Tier>,
    interval: Duration,
    mut stop: watch::Receiver<bool>,
) -> JoinHandle<()> {
    // A zero interval would spin; nothing needs retention more often than this.
    let interval = interval.max(Duration::from_millis(10));
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = tokio::time::sleep(interval) => {}
                changed = stop.changed() => {
                    if changed.is_err() || *stop.borrow() {
                        break;
                    }
                }
            }
            if *stop.borrow() {
                break;
            }
            enforce(&log, meta.as_ref(), &tier, &stop).await;
        }
        debug!("retention task stopped");
    })
}

/// One pass over every partition of every topic; ends early once `stop` turns true.
pub(crate) async fn enforce(
    log: &Log,
    meta: &dyn MetadataStore,
    tier: &Tier,
    stop: &watch::Receiver<bool>,
) {
    let tenants = match meta.tenants().await {
        Ok(t) => t,
        Err(e) => {
            warn!(error = %e, "retention: cannot list tenants");
            return;
        }
    };
    for tenant in tenants {
        let topics = match meta.topics(&tenant).await {
            Ok(t) => t,
            Err(e) => {
                warn!(tenant, error = %e, "retention: cannot list topics");
                continue;
            }
        };
        for topic in topics {
            if *stop.borrow() {
                return;
            }
            for partition in 0..topic.partitions {
                let key = partition_key(&topic, partition);
                // A topic being created or deleted may lack its partitions for a moment.
                let Ok(p) = log.partition(&key) else { continue };
                let offsets = p.offsets();
                let start = offsets.log_start;
                let manifest = match meta.manifest(&key).await {
                    Ok(m) => m,
                    Err(e) => {
                        warn!(partition = key, error = %e, "retention: cannot read the manifest");
                        continue;
                    }
                };
                // A crash between advancing the start offset and trimming the
                // manifest leaves entries below the start: finish the job.
                delete_remote_below(meta, tier, &key, start).await;
                let segments = whole_log(&manifest, &p.segments(), offsets.local_start);
                let Some(plan) = plan(&segments, start, &topic.config, now_ms()) else {
                    continue;
                };
                let advanced = p.advance_start_offset(plan.new_start).await;
                if advanced.is_ok() {
                    if let Err(e) = meta.advance_log_start(&key, plan.new_start).await {
                        // The next pass records it again.
                        warn!(partition = key, error = %e.message, "retention: cannot record the start offset");
                    }
                    delete_remote_below(meta, tier, &key, plan.new_start).await;
                }
                match advanced {
                    Ok(()) => info!(
                        tenant,
                        topic = topic.name,
                        partition,
                        old_start = start,
                        new_start = plan.new_start,
                        segments = plan.segments,
                        by_time = plan.by_time,
                        by_size = plan.by_size,
                        bytes = plan.bytes,
                        "retention deleted segments"
                    ),
                    Err(LogError::UnknownPartition(_)) => {}
                    Err(e) => {
                        warn!(tenant, topic = topic.name, partition, error = %e, "retention failed")
                    }
                }
            }
        }
    }
}

/// Removes the manifest entries that end at or below `offset`, then their objects.
async fn delete_remote_below(meta: &dyn MetadataStore, tier: &Tier, key: &str, offset: u64) {
    let removed = match meta.remove_segments_below(key, offset).await {
        Ok(r) => r,
        Err(e) => {
            warn!(partition = key, error = %e, "retention: cannot trim the manifest");
            return;
        }
    };
    if removed.is_empty() {
        return;
    }
    let keys: Vec<String> = removed.iter().map(|r| r.key.clone()).collect();
    tier.forget(&keys);
    let store = tier.handle.store();
    for k in &keys {
        let path = object_store::path::Path::from(k.as_str());
        match store.delete(&path).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => {
                debug!(key = k, "retention deleted a segment object")
            }
            // The orphan collector gets it later.
            Err(e) => warn!(key = k, error = %e, "retention: cannot delete a segment object"),
        }
    }
    info!(
        partition = key,
        objects = keys.len(),
        below = offset,
        "retention deleted segment objects"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seg(
        base: u64,
        end: u64,
        bytes: u64,
        max_ts: i64,
        last_append: i64,
        sealed: bool,
    ) -> SegmentInfo {
        SegmentInfo {
            base_offset: base,
            end_offset: end,
            bytes,
            first_append_ms: Some(last_append - 10),
            last_append_ms: Some(last_append),
            max_timestamp: max_ts,
            sealed,
            offloaded: false,
        }
    }

    fn config(retention_ms: i64, retention_bytes: i64) -> TopicConfig {
        TopicConfig {
            retention_ms,
            retention_bytes,
            ..TopicConfig::default()
        }
    }

    /// Three sealed segments written at t=100, 200, 300 and an active one at 400.
    fn segments() -> Vec<SegmentInfo> {
        vec![
            seg(0, 10, 1000, 100, 100, true),
            seg(10, 20, 1000, 200, 200, true),
            seg(20, 30, 1000, 300, 300, true),
            seg(30, 35, 500, 400, 400, false),
        ]
    }

    #[test]
    fn nothing_to_do() {
        assert_eq!(plan(&segments(), 0, &config(-1, -1), 1_000), None);
        assert_eq!(plan(&segments(), 0, &config(10_000, 10_000), 1_000), None);
        assert_eq!(plan(&[], 0, &config(0, 0), 1_000), None);
    }

    #[test]
    fn time_deletes_old_sealed_segments_only() {
        // now - retention = 250: the segments at 100 and 200 are older.
        let p = plan(&segments(), 0, &config(750, -1), 1_000).unwrap();
        assert_eq!(
            (p.new_start, p.segments, p.by_time, p.by_size, p.bytes),
            (20, 2, 2, 0, 2000)
        );
        // Everything is old, but the active segment stays.
        let p = plan(&segments(), 0, &config(0, -1), 10_000).unwrap();
        assert_eq!(p.new_start, 30);
        // A cutoff exactly at a timestamp keeps that segment (strictly older only).
        let p = plan(&segments(), 0, &config(800, -1), 1_000).unwrap();
        assert_eq!(p.new_start, 10);
    }

    #[test]
    fn time_needs_old_appends_too() {
        // Old record timestamps (a replay), appended recently: kept.
        let mut s = segments();
        s[0].last_append_ms = Some(900);
        assert_eq!(plan(&s, 0, &config(500, -1), 1_000), None);
    }

    #[test]
    fn size_keeps_at_least_retention_bytes() {
        // Total 3500. Without the first: 2500 ≥ 2000, go; without the second: 1500 < 2000, stop.
        let p = plan(&segments(), 0, &config(-1, 2000), 1_000).unwrap();
        assert_eq!((p.new_start, p.by_size, p.by_time), (10, 1, 0));
        // Exactly equal still deletes (Kafka: size - segment >= retention).
        let p = plan(&segments(), 0, &config(-1, 1500), 1_000).unwrap();
        assert_eq!(p.new_start, 20);
        let p = plan(&segments(), 0, &config(-1, 0), 1_000).unwrap();
        assert_eq!(p.new_start, 30);
    }

    #[test]
    fn larger_of_the_two_wins() {
        let p = plan(&segments(), 0, &config(850, 500), 1_000).unwrap();
        assert_eq!((p.new_start, p.by_time, p.by_size), (30, 1, 3));
    }

    #[test]
    fn already_deleted_segments_are_skipped() {
        let p = plan(&segments(), 10, &config(750, -1), 1_000).unwrap();
        assert_eq!((p.new_start, p.segments), (20, 1));
        assert_eq!(plan(&segments(), 20, &config(750, -1), 1_000), None);
    }

    #[test]
    fn stops_at_the_first_unsealed_segment() {
        let mut s = segments();
        s[1].sealed = false;
        let p = plan(&s, 0, &config(0, -1), 10_000).unwrap();
        assert_eq!(p.new_start, 10);
    }
}
