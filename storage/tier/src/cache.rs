//! The block cache: segment blocks read from the bucket, kept in memory and
//! on local disk, with read-ahead for sequential readers.
//!
//! [`BlockCache`] is a `foyer` hybrid cache keyed by (object key, block
//! index). A block enters it only after its CRC and index entry were checked
//! (a corrupt block is never cached), and a block served from the disk tier
//! is checked against its CRC again. The cache is lossy and never a source
//! of truth: an error of the cache itself (a full disk, an I/O error) is
//! logged and the block is fetched from the bucket instead.
//!
//! Concurrent misses for one block share one GET (foyer's `get_or_fetch`
//! runs one fetch per key and hands its result, or its error, to every
//! waiter), so many consumers reading the same old range cost one fetch
//! from the bucket per block.
//!
//! Read-ahead: the cache remembers, per partition, where the blocks read
//! recently end. A read of a block that starts where one of them ends is a
//! sequential reader moving on (block `i` then `i + 1`, or the last block of
//! one segment object then the first of the next); the next
//! `read_ahead_blocks` blocks (at most [`READ_AHEAD_MAX_BYTES`]) are then
//! fetched into the cache in the background, continuing into the following
//! segment objects through a [`NextSegment`] hook when the reader's segment
//! ends. Blocks already cached or already being fetched are skipped; at most
//! [`PREFETCH_TASKS`] prefetches run at once across the cache (beyond that,
//! read-ahead is skipped, never queued). Prefetches run on tasks of their
//! own: a reader that goes away leaves at most the fetches already started.
//!
//! Metrics, in the default prometheus registry:
//! `strata_tier_cache_hits_total` and `strata_tier_cache_misses_total`
//! (block reads served from the cache, or that waited for the bucket),
//! `strata_tier_bucket_read_bytes_total` (bytes fetched from the bucket by
//! segment reads: blocks, read-ahead, headers, indexes and trailers) and
//! `strata_tier_read_ahead_blocks_total` (blocks fetched by read-ahead).

use std::collections::{HashMap, HashSet, VecDeque};
use std::fmt;
use std::io::{Read, Write};
use std::ops::Range;
use std::path::PathBuf;
use std::sync::{Arc, LazyLock};

use bytes::Bytes;
use foyer::{
    BlockEngineConfig, Code, DeviceBuilder, FsDeviceBuilder, HybridCache, HybridCacheBuilder,
    HybridCachePolicy, RecoverMode, Source,
};
use futures::future::BoxFuture;
use object_store::ObjectStore;
use object_store::path::Path;
use parking_lot::Mutex;
use prometheus::IntCounter;
use tokio::sync::Semaphore;
use tracing::{debug, warn};

use crate::error::{FormatError, TierError};
use crate::remote::RemoteSegment;
use crate::segment::{IndexEntry, verify_block};

/// Most bytes one read-ahead asks for, whatever `read_ahead_blocks` says.
pub const READ_AHEAD_MAX_BYTES: u64 = 16 * 1024 * 1024;
/// Prefetches (and walks into following segment objects) running at once.
pub const PREFETCH_TASKS: usize = 64;
/// Memory tier size used when a smaller one is configured.
pub const MIN_MEMORY_BYTES: u64 = 1024 * 1024;
/// A disk tier smaller than this is not used (memory only).
pub const MIN_DISK_BYTES: u64 = 8 * 1024 * 1024;
/// Largest disk-tier block (foyer's unit of eviction, and the largest entry
/// the disk tier holds).
const MAX_DISK_BLOCK: usize = 16 * 1024 * 1024;
/// Partitions whose recent reads are remembered for read-ahead.
const STREAMS: usize = 4096;
/// Positions remembered per partition (about one per concurrent reader).
const HEADS: usize = 16;

fn counter(name: &str, help: &str) -> IntCounter {
    match IntCounter::new(name, help) {
        Ok(c) => {
            let _ = prometheus::default_registry().register(Box::new(c.clone()));
            c
        }
        Err(e) => unreachable!("constant metric options are valid: {e}"),
    }
}

static HITS: LazyLock<IntCounter> = LazyLock::new(|| {
    counter(
        "strata_tier_cache_hits_total",
        "Block reads of segment objects served from the block cache (memory or disk).",
    )
});
static MISSES: LazyLock<IntCounter> = LazyLock::new(|| {
    counter(
        "strata_tier_cache_misses_total",
        "Block reads of segment objects that waited for the bucket.",
    )
});
pub(crate) static BUCKET_READ_BYTES: LazyLock<IntCounter> = LazyLock::new(|| {
    counter(
        "strata_tier_bucket_read_bytes_total",
        "Bytes fetched from the bucket by segment reads (blocks, read-ahead, headers, indexes, trailers).",
    )
});
static READ_AHEAD_BLOCKS: LazyLock<IntCounter> = LazyLock::new(|| {
    counter(
        "strata_tier_read_ahead_blocks_total",
        "Segment blocks fetched from the bucket by read-ahead.",
    )
});

/// Opens the segment object of the same partition that starts at the given
/// offset, if there is one: how read-ahead continues past the end of a
/// segment object (the caller knows the partition's manifest).
pub type NextSegment =
    Arc<dyn Fn(u64) -> BoxFuture<'static, Option<Arc<RemoteSegment>>> + Send + Sync>;

/// Sizes of a [`BlockCache`].
#[derive(Debug, Clone, Default)]
pub struct BlockCacheConfig {
    /// Bytes of blocks kept in memory (at least [`MIN_MEMORY_BYTES`]).
    pub memory_bytes: u64,
    /// Bytes of blocks kept on local disk, in `disk_dir`; below
    /// [`MIN_DISK_BYTES`] (or without a directory) the cache is memory only.
    pub disk_bytes: u64,
    /// The disk tier's directory, which the cache owns.
    pub disk_dir: Option<PathBuf>,
    /// Blocks fetched ahead of a sequential reader; 0 turns read-ahead off.
    pub read_ahead_blocks: usize,
}

/// A cache key: a block of a segment object.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct BlockKey {
    object: String,
    block: u64,
}

/// A verified block, as cached.
#[derive(Debug, Clone)]
struct CachedBlock(Bytes);

fn io_error(e: std::io::Error) -> foyer::Error {
    foyer::Error::io_error(e)
}

fn parse_error(what: &str) -> foyer::Error {
    foyer::Error::new(foyer::ErrorKind::Parse, format!("bad cached {what}"))
}

fn read_u32(r: &mut impl Read) -> foyer::Result<u32> {
    let mut b = [0u8; 4];
    r.read_exact(&mut b).map_err(io_error)?;
    Ok(u32::from_le_bytes(b))
}

impl Code for BlockKey {
    fn encode(&self, w: &mut impl Write) -> foyer::Result<()> {
        let len = u32::try_from(self.object.len()).map_err(|_| parse_error("key"))?;
        w.write_all(&len.to_le_bytes()).map_err(io_error)?;
        w.write_all(self.object.as_bytes()).map_err(io_error)?;
        w.write_all(&self.block.to_le_bytes()).map_err(io_error)
    }

    fn decode(r: &mut impl Read) -> foyer::Result<Self> {
        let len = read_u32(r)? as usize;
        if len > u16::MAX as usize * 8 {
            return Err(parse_error("key"));
        }
        let mut object = vec![0u8; len];
        r.read_exact(&mut object).map_err(io_error)?;
        let object = String::from_utf8(object).map_err(|_| parse_error("key"))?;
        let mut block = [0u8; 8];
        r.read_exact(&mut block).map_err(io_error)?;
        Ok(BlockKey {
            object,
            block: u64::from_le_bytes(block),
        })
    }

    fn estimated_size(&self) -> usize {
        4 + self.object.len() + 8
    }
}

impl Code for CachedBlock {
    fn encode(&self, w: &mut impl Write) -> foyer::Result<()> {
        let len = u32::try_from(self.0.len()).map_err(|_| parse_error("block"))?;
        w.write_all(&len.to_le_bytes()).map_err(io_error)?;
        w.write_all(&self.0).map_err(io_error)
    }

    fn decode(r: &mut impl Read) -> foyer::Result<Self> {
        let len = read_u32(r)? as usize;
        if len > MAX_DISK_BLOCK {
            return Err(parse_error("block"));
        }
        let mut bytes = vec![0u8; len];
        r.read_exact(&mut bytes).map_err(io_error)?;
        Ok(CachedBlock(Bytes::from(bytes)))
    }

    fn estimated_size(&self) -> usize {
        4 + self.0.len()
    }
}

/// What fetching and checking one block takes.
#[derive(Debug, Clone)]
pub(crate) struct BlockFetch {
    pub store: Arc<dyn ObjectStore>,
    pub key: Path,
    pub block: usize,
    pub entry: IndexEntry,
    /// The block's byte range in the object.
    pub range: Range<u64>,
}

impl BlockFetch {
    /// One ranged GET, then the block's CRC and index entry are checked.
    pub async fn fetch(&self) -> Result<Bytes, TierError> {
        let region = self.entry.region();
        let bytes =
            crate::remote::fetch(&self.store, &self.key, self.range.clone(), region).await?;
        verify_block(&bytes, &self.entry).map_err(|e| TierError::corrupt(&self.key, e))?;
        Ok(bytes)
    }

    fn cache_key(&self) -> BlockKey {
        BlockKey {
            object: self.key.to_string(),
            block: self.block as u64,
        }
    }

    /// The fetch foyer runs for a miss: its error is shared by every waiter.
    async fn into_fetch(self, read_ahead: bool) -> Result<CachedBlock, Arc<TierError>> {
        let bytes = self.fetch().await.map_err(Arc::new)?;
        if read_ahead {
            READ_AHEAD_BLOCKS.inc();
        }
        Ok(CachedBlock(bytes))
    }
}

/// Whether a block from the cache is still the block the index describes
/// (length and CRC; the rest was checked when it was fetched).
fn intact(bytes: &[u8], entry: &IndexEntry) -> bool {
    let region = entry.region();
    FormatError::check_len(region, u64::from(entry.len), bytes.len() as u64).is_ok()
        && FormatError::check_crc(region, bytes, entry.crc).is_ok()
}

/// A store error shared by the waiters of one fetch: shows, and is
/// classified (transient or not), as the error it wraps.
#[derive(Debug)]
struct Shared(Arc<TierError>);

impl fmt::Display for Shared {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &*self.0 {
            TierError::Store(e) => e.fmt(f),
            e => e.fmt(f),
        }
    }
}

impl std::error::Error for Shared {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match &*self.0 {
            TierError::Store(e) => Some(e),
            _ => None,
        }
    }
}

/// An owned copy of a fetch's shared error: the same variant and fields,
/// a store error wrapped so it is still classified as it was.
fn unshare(e: &Arc<TierError>) -> TierError {
    match &**e {
        TierError::Store(_) => TierError::Store(object_store::Error::Generic {
            store: crate::store::STORE,
            source: Box::new(Shared(e.clone())),
        }),
        TierError::NotFound { key } => TierError::NotFound { key: key.clone() },
        TierError::Format(f) => TierError::Format(f.clone()),
        TierError::Corrupt { key, detail } => TierError::Corrupt {
            key: key.clone(),
            detail: detail.clone(),
        },
        TierError::NoSuchBlock { key, block, blocks } => TierError::NoSuchBlock {
            key: key.clone(),
            block: *block,
            blocks: *blocks,
        },
        TierError::OffsetOutOfRange {
            key,
            offset,
            start,
            end,
        } => TierError::OffsetOutOfRange {
            key: key.clone(),
            offset: *offset,
            start: *start,
            end: *end,
        },
    }
}

/// Where the blocks read recently end, per partition: a read of a block
/// starting at one of these continues a sequential reader.
#[derive(Debug, Default)]
struct Streams {
    map: HashMap<String, VecDeque<u64>>,
}

impl Streams {
    /// Notes a read of the block holding offsets `block` of `stream`; true
    /// when it starts where a block read before ends (sequential).
    fn note(&mut self, stream: &str, block: Range<u64>) -> bool {
        if !self.map.contains_key(stream) && self.map.len() >= STREAMS {
            // Crude but bounded: start over rather than track recency.
            self.map.clear();
        }
        if !self.map.contains_key(stream) {
            self.map.insert(stream.to_string(), VecDeque::new());
        }
        let Some(heads) = self.map.get_mut(stream) else {
            return false;
        };
        let sequential = if let Some(p) = heads.iter().position(|&e| e == block.start) {
            heads.remove(p);
            true
        } else {
            if let Some(p) = heads.iter().position(|&e| e == block.end) {
                heads.remove(p);
            }
            false
        };
        heads.push_back(block.end);
        if heads.len() > HEADS {
            heads.pop_front();
        }
        sequential
    }
}

/// How much one read-ahead may still ask for.
#[derive(Debug, Clone, Copy)]
struct Budget {
    blocks: usize,
    bytes: u64,
}

impl Budget {
    fn take(&mut self, len: u32) -> bool {
        if self.blocks == 0 || u64::from(len) > self.bytes {
            return false;
        }
        self.blocks -= 1;
        self.bytes -= u64::from(len);
        true
    }
}

/// A block a prefetch task is fetching, until the task ends (or is dropped).
struct Inflight {
    set: Arc<Mutex<HashSet<BlockKey>>>,
    key: BlockKey,
}

impl Drop for Inflight {
    fn drop(&mut self) {
        self.set.lock().remove(&self.key);
    }
}

/// Runs prefetches: a handle the background tasks share.
#[derive(Clone)]
struct Prefetcher {
    cache: HybridCache<BlockKey, CachedBlock>,
    /// Blocks a prefetch task is fetching.
    inflight: Arc<Mutex<HashSet<BlockKey>>>,
    permits: Arc<Semaphore>,
}

impl Prefetcher {
    /// Prefetches blocks of `seg` from `from` while the budget lasts.
    fn blocks_of(&self, seg: &RemoteSegment, from: usize, budget: &mut Budget) {
        for i in from..seg.index().len() {
            let Some(f) = seg.block_fetch(i) else { break };
            if !budget.take(f.entry.len) {
                budget.blocks = 0;
                break;
            }
            self.prefetch(f);
        }
    }

    /// Fetches a block into the cache on a task of its own, unless it is
    /// cached, already being prefetched, or too many prefetches run.
    fn prefetch(&self, f: BlockFetch) {
        let key = f.cache_key();
        if self.cache.contains(&key) {
            return;
        }
        let Ok(permit) = self.permits.clone().try_acquire_owned() else {
            return;
        };
        if !self.inflight.lock().insert(key.clone()) {
            return;
        }
        let cache = self.cache.clone();
        let guard = Inflight {
            set: self.inflight.clone(),
            key,
        };
        tokio::spawn(async move {
            let (_permit, key) = (permit, &guard.key);
            if let Err(e) = cache.get_or_fetch(key, || f.into_fetch(true)).await {
                debug!(object = %key.object, block = key.block, error = %e, "read-ahead failed");
            }
        });
    }

    /// Continues a read-ahead into the segment objects from offset `from`.
    fn following(&self, next: NextSegment, from: u64, mut budget: Budget) {
        let Ok(permit) = self.permits.clone().try_acquire_owned() else {
            return;
        };
        let this = self.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let mut at = from;
            while budget.blocks > 0 {
                let Some(seg) = next(at).await else { break };
                this.blocks_of(&seg, 0, &mut budget);
                let end = seg.meta().end_offset;
                if end <= at {
                    break;
                }
                at = end;
            }
        });
    }
}

/// The cache of verified segment blocks; see the module documentation.
pub struct BlockCache {
    prefetcher: Prefetcher,
    read_ahead_blocks: usize,
    streams: Mutex<Streams>,
}

impl fmt::Debug for BlockCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BlockCache")
            .field("hybrid", &self.is_hybrid())
            .field("read_ahead_blocks", &self.read_ahead_blocks)
            .finish_non_exhaustive()
    }
}

impl BlockCache {
    /// Opens the cache: memory and, with a directory and at least
    /// [`MIN_DISK_BYTES`], local disk. Must run inside a tokio runtime (the
    /// cache's background work runs on it). The disk tier starts empty.
    pub async fn open(config: BlockCacheConfig) -> Result<BlockCache, foyer::Error> {
        // Registered now, so they show (as zero) before the first read.
        for c in [&HITS, &MISSES, &BUCKET_READ_BYTES, &READ_AHEAD_BLOCKS] {
            LazyLock::force(c);
        }
        let memory =
            usize::try_from(config.memory_bytes.max(MIN_MEMORY_BYTES)).unwrap_or(usize::MAX);
        let builder = HybridCacheBuilder::new()
            .with_name("strata_tier_blocks")
            .with_policy(HybridCachePolicy::WriteOnEviction)
            .with_flush_on_close(false)
            .memory(memory)
            .with_weighter(|k: &BlockKey, v: &CachedBlock| k.object.len() + 8 + v.0.len())
            .storage();
        let cache = match &config.disk_dir {
            Some(dir) if config.disk_bytes >= MIN_DISK_BYTES => {
                let capacity = usize::try_from(config.disk_bytes).unwrap_or(usize::MAX);
                let block_size = (capacity / 16).clamp(1024 * 1024, MAX_DISK_BLOCK);
                let device = FsDeviceBuilder::new(dir).with_capacity(capacity).build()?;
                builder
                    .with_engine_config(BlockEngineConfig::new(device).with_block_size(block_size))
                    .with_recover_mode(RecoverMode::None)
                    .build()
                    .await?
            }
            _ => builder.build().await?,
        };
        Ok(BlockCache {
            prefetcher: Prefetcher {
                cache,
                inflight: Arc::default(),
                permits: Arc::new(Semaphore::new(PREFETCH_TASKS)),
            },
            read_ahead_blocks: config.read_ahead_blocks,
            streams: Mutex::default(),
        })
    }

    /// Whether blocks also go to local disk.
    pub fn is_hybrid(&self) -> bool {
        self.prefetcher.cache.is_hybrid()
    }

    /// Blocks fetched ahead of a sequential reader.
    pub fn read_ahead_blocks(&self) -> usize {
        self.read_ahead_blocks
    }

    /// Drops the cached blocks `0..blocks` of the object at `key` (after the
    /// object was deleted).
    pub fn remove(&self, key: &str, blocks: usize) {
        for block in 0..blocks as u64 {
            self.prefetcher.cache.remove(&BlockKey {
                object: key.to_string(),
                block,
            });
        }
    }

    /// Block `f`, from the cache or (one GET shared by concurrent misses)
    /// from the bucket.
    pub(crate) async fn get(&self, f: &BlockFetch) -> Result<Bytes, TierError> {
        let key = f.cache_key();
        let cache = &self.prefetcher.cache;
        match cache
            .get_or_fetch(&key, || f.clone().into_fetch(false))
            .await
        {
            Ok(entry) => {
                let bytes = entry.value().0.clone();
                let source = entry.source();
                drop(entry);
                match source {
                    Source::Outer => {
                        MISSES.inc();
                        return Ok(bytes);
                    }
                    Source::Memory | Source::Disk if intact(&bytes, &f.entry) => {
                        HITS.inc();
                        return Ok(bytes);
                    }
                    Source::Memory | Source::Disk => {
                        warn!(object = %key.object, block = key.block, "a cached block fails its check; dropped");
                        cache.remove(&key);
                    }
                }
            }
            Err(e) => {
                if let Some(shared) = e.downcast_ref::<Arc<TierError>>() {
                    MISSES.inc();
                    return Err(unshare(shared));
                }
                warn!(object = %key.object, block = key.block, error = %e, "block cache failed; reading the bucket");
            }
        }
        MISSES.inc();
        f.fetch().await
    }

    /// Notes that a reader reads block `i` of `seg`; when that continues a
    /// sequential reader, prefetches the blocks after it (into the
    /// following segment objects through `next`).
    pub(crate) fn read_ahead(&self, seg: &RemoteSegment, i: usize, next: Option<&NextSegment>) {
        if self.read_ahead_blocks == 0 {
            return;
        }
        let Some(offsets) = seg.block_offsets(i) else {
            return;
        };
        if !self.streams.lock().note(seg.stream(), offsets) {
            return;
        }
        let mut budget = Budget {
            blocks: self.read_ahead_blocks,
            bytes: READ_AHEAD_MAX_BYTES,
        };
        self.prefetcher.blocks_of(seg, i + 1, &mut budget);
        if let Some(next) = next
            && budget.blocks > 0
        {
            self.prefetcher
                .following(next.clone(), seg.meta().end_offset, budget);
        }
    }
}

#[cfg(test)]
mod tests;
