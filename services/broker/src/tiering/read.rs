//! Reads below a partition's local copy, served from segment objects
//! through the block cache (with read-ahead for sequential readers, which
//! continues into the following objects of the partition's manifest).

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use object_store::ObjectStore;
use parking_lot::Mutex;
use strata_api::{ApiError, ErrorCode};
use strata_tier::cache::{BlockCache, BlockCacheConfig, NextSegment};
use strata_tier::error::TierError;
use strata_tier::remote::RemoteSegment;
use tracing::{info, warn};

use super::{OPEN_SEGMENTS, Tier};
use crate::config::TierConfig;
use crate::metadata::RemoteSegmentRef;
use crate::metrics;

/// Opened segment objects (their header and index, fetched once), reading
/// blocks through the cache. Cheap to clone: read-ahead opens the next
/// objects of a partition on tasks of its own.
#[derive(Clone)]
pub(crate) struct Segments {
    store: Arc<dyn ObjectStore>,
    cache: Option<Arc<BlockCache>>,
    open: Arc<Mutex<HashMap<String, Arc<RemoteSegment>>>>,
}

impl Segments {
    pub fn new(store: Arc<dyn ObjectStore>, cache: Option<Arc<BlockCache>>) -> Segments {
        Segments {
            store,
            cache,
            open: Arc::default(),
        }
    }

    async fn open(&self, entry: &RemoteSegmentRef) -> Result<Arc<RemoteSegment>, TierError> {
        if let Some(s) = self.open.lock().get(&entry.key) {
            return Ok(s.clone());
        }
        let path = object_store::path::Path::from(entry.key.as_str());
        let mut segment = RemoteSegment::open(self.store.clone(), path, entry.size).await?;
        if let Some(cache) = &self.cache {
            segment = segment.with_cache(cache.clone());
        }
        let segment = Arc::new(segment);
        let mut open = self.open.lock();
        if open.len() >= OPEN_SEGMENTS {
            // Crude but bounded: start over rather than track recency.
            open.clear();
        }
        open.insert(entry.key.clone(), segment.clone());
        Ok(segment)
    }

    /// Forgets opened segments and drops their cached blocks (their objects
    /// were deleted).
    pub fn forget(&self, keys: &[String]) {
        let mut open = self.open.lock();
        for k in keys {
            if let (Some(s), Some(cache)) = (open.remove(k), &self.cache) {
                cache.remove(k, s.index().len());
            }
        }
    }

    /// How read-ahead opens the objects after the one being read: any of
    /// the next `following` manifest entries (a few: read-ahead never goes
    /// further than `read_ahead_blocks` blocks).
    fn next_hook(&self, following: &[RemoteSegmentRef]) -> Option<NextSegment> {
        let ahead = self.cache.as_ref()?.read_ahead_blocks();
        if ahead == 0 || following.is_empty() {
            return None;
        }
        let following: Vec<RemoteSegmentRef> = following.iter().take(ahead).cloned().collect();
        let segments = self.clone();
        Some(Arc::new(move |offset| {
            let entry = following.iter().find(|e| e.base_offset == offset).cloned();
            let segments = segments.clone();
            Box::pin(async move { segments.open(&entry?).await.ok() })
        }))
    }
}

/// The block cache as `config` sizes it, its disk tier in `<data_dir>/cache`
/// (emptied first: the cache is lossy). When the disk tier cannot be set up
/// the cache is memory only; when even that fails, reads are uncached.
pub(crate) async fn open_cache(config: &TierConfig, data_dir: &Path) -> Option<Arc<BlockCache>> {
    let dir = data_dir.join("cache");
    if let Err(e) = std::fs::remove_dir_all(&dir)
        && e.kind() != std::io::ErrorKind::NotFound
    {
        warn!(dir = %dir.display(), error = %e, "cannot empty the block cache directory");
    }
    let mut cache_config = BlockCacheConfig {
        memory_bytes: config.cache_memory_bytes,
        disk_bytes: config.cache_disk_bytes,
        disk_dir: Some(dir.clone()),
        read_ahead_blocks: config.read_ahead_blocks,
    };
    let cache = match BlockCache::open(cache_config.clone()).await {
        Err(e) if cache_config.disk_bytes > 0 => {
            warn!(dir = %dir.display(), error = %e, "no disk tier for the block cache: memory only");
            cache_config.disk_bytes = 0;
            BlockCache::open(cache_config).await
        }
        other => other,
    };
    match cache {
        Ok(cache) => {
            info!(
                memory_bytes = config.cache_memory_bytes,
                disk = cache.is_hybrid(),
                read_ahead_blocks = config.read_ahead_blocks,
                "block cache ready"
            );
            Some(Arc::new(cache))
        }
        Err(e) => {
            warn!(error = %e, "no block cache: reads from the bucket are uncached");
            None
        }
    }
}

impl Tier {
    /// Whole batches from the segment object holding `offset`, up to
    /// `max_bytes` (at least one batch); with the offset to read next.
    pub async fn read(
        &self,
        manifest: &[RemoteSegmentRef],
        offset: u64,
        max_bytes: usize,
    ) -> Result<(Vec<Bytes>, u64), ApiError> {
        let Some(at) = manifest
            .iter()
            .position(|m| m.base_offset <= offset && offset < m.end_offset)
        else {
            return Err(ApiError::new(
                ErrorCode::Internal,
                format!("offset {offset} is below the local log but in no segment object"),
            ));
        };
        let entry = &manifest[at];
        let segment = self
            .segments
            .open(entry)
            .await
            .map_err(|e| tier_error(&entry.key, e))?;
        let next = self.segments.next_hook(&manifest[at + 1..]);
        let (chunks, next) = segment
            .read_from_with(offset, max_bytes, next)
            .await
            .map_err(|e| tier_error(&entry.key, e))?;
        let bytes: usize = chunks.iter().map(Bytes::len).sum();
        metrics::REMOTE_READ_BYTES.inc_by(bytes as u64);
        Ok((chunks, next))
    }
}

/// A bucket failure as clients see it: retryable when the store is
/// unreachable, internal (and loud) when an object is corrupt.
fn tier_error(key: &str, e: TierError) -> ApiError {
    if e.retryable() {
        ApiError::new(
            ErrorCode::Unavailable,
            format!("object storage is unavailable reading {key}: {e}"),
        )
    } else {
        tracing::error!(key, error = %e, "cannot serve a segment object");
        metrics::REMOTE_READ_ERRORS.inc();
        ApiError::new(ErrorCode::Internal, format!("cannot read {key}: {e}"))
    }
}
