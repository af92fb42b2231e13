//! Tiered storage, the broker's side: sealed segments are uploaded to the
//! bucket, committed to their partition's manifest in the metadata store,
//! and only then released from local disk; reads below a partition's local
//! copy are served from the bucket, through a block cache (memory and local
//! disk) with read-ahead; orphaned objects are collected.
//!
//! The order is what makes it crash-safe (see docs/tiered-storage.md):
//! an object is written under a key no one else uses (its upload id), then
//! named by the manifest, then the local copy may go. A crash before the
//! manifest commit leaves an orphan that no reader can reach and the
//! collector deletes; a crash after it leaves a segment in both tiers,
//! which the next pass notices (the manifest already names it) and only
//! marks as offloaded.

mod gc;
mod offload;
pub(crate) mod policy;
mod read;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use strata_log::Log;
use strata_tier::store::ObjectStoreHandle;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::debug;

use crate::config::TierConfig;
use crate::metadata::MetadataStore;

pub(crate) use gc::collect_orphans;
pub(crate) use offload::{account, offload_pass};

/// Segment objects kept open (their index in memory) for reads.
const OPEN_SEGMENTS: usize = 1024;

/// The bucket and what the broker keeps about it.
pub(crate) struct Tier {
    pub handle: ObjectStoreHandle,
    pub config: TierConfig,
    /// Opened segment objects by key (their header and index, fetched
    /// once), reading blocks through the block cache.
    segments: read::Segments,
    /// Bytes on local disk not yet in the bucket, as of the last offload pass.
    pending_bytes: AtomicU64,
}

impl Tier {
    /// The bucket behind `handle`, and the block cache `config` sizes (its
    /// disk tier under `data_dir`, emptied at start).
    pub async fn open(
        handle: ObjectStoreHandle,
        config: TierConfig,
        data_dir: &std::path::Path,
    ) -> Tier {
        let cache = read::open_cache(&config, data_dir).await;
        Tier {
            segments: read::Segments::new(handle.store().clone(), cache),
            handle,
            config,
            pending_bytes: AtomicU64::new(0),
        }
    }

    /// Bytes waiting for upload, as of the last offload pass.
    pub fn pending_bytes(&self) -> u64 {
        self.pending_bytes.load(Ordering::Relaxed)
    }

    /// Measures the offload backlog (see [`account`]).
    pub fn update_backlog(&self, log: &Log) {
        let (bytes, lag_ms) = account(log);
        self.pending_bytes.store(bytes, Ordering::Relaxed);
        crate::metrics::OFFLOAD_PENDING_BYTES.set(i64::try_from(bytes).unwrap_or(i64::MAX));
        crate::metrics::OFFLOAD_LAG_SECONDS.set(lag_ms as f64 / 1000.0);
    }

    /// Forgets opened segments and their cached blocks (after retention
    /// deleted objects).
    pub fn forget(&self, keys: &[String]) {
        self.segments.forget(keys);
    }
}

/// Runs offload every `offload_interval` and the orphan collector every
/// `gc_interval` until `stop` turns true; and, on a task of its own so a
/// slow bucket cannot stall it, the backlog measurement.
pub(crate) fn spawn(
    log: Arc<Log>,
    meta: Arc<dyn MetadataStore>,
    tier: Arc<Tier>,
    stop: watch::Receiver<bool>,
) -> Vec<JoinHandle<()>> {
    let interval = tier.config.offload_interval.max(Duration::from_millis(10));
    let gc_every = tier.config.gc_interval.max(interval);
    let backlog = {
        let (log, tier, mut stop) = (log.clone(), tier.clone(), stop.clone());
        tokio::spawn(async move {
            loop {
                tier.update_backlog(&log);
                if !sleep_or_stop(interval, &mut stop).await {
                    break;
                }
            }
        })
    };
    let mut stop = stop;
    let offload = tokio::spawn(async move {
        // Collect once at start: a crash may have left an orphan behind.
        let mut last_gc: Option<tokio::time::Instant> = None;
        loop {
            if *stop.borrow() {
                break;
            }
            offload_pass(&log, meta.as_ref(), &tier, &stop).await;
            tier.update_backlog(&log);
            if last_gc.is_none_or(|t| t.elapsed() >= gc_every) {
                collect_orphans(meta.as_ref(), &tier).await;
                last_gc = Some(tokio::time::Instant::now());
            }
            if !sleep_or_stop(interval, &mut stop).await {
                break;
            }
        }
        debug!("tiering task stopped");
    });
    vec![backlog, offload]
}

/// Sleeps `interval`; `false` once `stop` turns true (or its sender is gone).
async fn sleep_or_stop(interval: Duration, stop: &mut watch::Receiver<bool>) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(interval) => !*stop.borrow(),
        changed = stop.changed() => changed.is_ok() && !*stop.borrow(),
    }
}
