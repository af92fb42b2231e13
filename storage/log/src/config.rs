//! Settings of the log. The broker maps each to a flag, a `STRATA_*`
//! variable and a config-file key; here they are plain typed values with
//! defaults.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// When an append is acknowledged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Durability {
    /// After the commit holding it is fdatasync'ed (the default).
    #[default]
    Fsync,
    /// After the commit holding it is written to the OS; flushed every `flush_interval`.
    Write,
}

/// Per-partition segment settings: Kafka's `segment.bytes` and `segment.ms`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SegmentConfig {
    pub segment_bytes: u64,
    pub segment_ms: i64,
}

impl Default for SegmentConfig {
    fn default() -> Self {
        SegmentConfig {
            segment_bytes: 64 * 1024 * 1024,
            segment_ms: 10 * 60 * 1000,
        }
    }
}

#[derive(Debug, Clone)]
pub struct LogConfig {
    /// Default acknowledgement point of appends.
    pub durability: Durability,
    /// How long the committer waits for more appends before writing a commit.
    /// Zero means "no artificial wait": commits still coalesce every append
    /// that arrives while the previous fdatasync runs, which is where group
    /// commit gets most of its gain.
    pub max_commit_delay: Duration,
    /// A commit stops taking appends once it holds this many bytes.
    pub max_commit_bytes: usize,
    /// A journal file is closed (footer written) and a new one started past this size.
    /// Recovery after a crash scans at most one journal file, so this bounds recovery time.
    pub journal_file_bytes: u64,
    /// In `Durability::Write` mode, how often written data is fdatasync'ed anyway.
    pub flush_interval: Duration,
    /// Largest batch accepted, compressed or not (Kafka's `message.max.bytes`).
    pub max_batch_bytes: usize,
    /// Largest a batch may become once decompressed for verification.
    pub max_uncompressed_batch_bytes: usize,
    /// Segment settings of partitions created without their own.
    pub default_segment: SegmentConfig,
    /// How often the committer checks segment ages and reclaimable journal files when idle.
    pub housekeeping_interval: Duration,
    /// Bytes of recently committed frames kept in memory across all
    /// partitions (the tail cache), so that reads of the recent tail are
    /// served without a disk read, a CRC pass or a blocking-thread hop.
    /// The oldest frames, log-wide, are evicted first; reads of evicted
    /// data go to disk as before. The frames are slices of the committer's
    /// write buffers, which are allocated in chunks of several MiB, so a few
    /// partially cached chunks may stay allocated beyond this budget.
    /// 0 disables the cache.
    pub tail_cache_bytes: usize,
    /// Hand the page-cache pages of durable journal data back to the kernel
    /// after each fdatasync. Recent reads come from the tail cache, older ones
    /// from disk; the page cache then stops growing with the journal, which
    /// keeps writes on warm memory (on VMs, memory touched for the first time
    /// costs a host fault per page).
    pub drop_flushed_pages: bool,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            durability: Durability::Fsync,
            max_commit_delay: Duration::ZERO,
            max_commit_bytes: 4 * 1024 * 1024,
            journal_file_bytes: 64 * 1024 * 1024,
            flush_interval: Duration::from_millis(200),
            max_batch_bytes: 8 * 1024 * 1024,
            max_uncompressed_batch_bytes: 64 * 1024 * 1024,
            default_segment: SegmentConfig::default(),
            housekeeping_interval: Duration::from_millis(500),
            tail_cache_bytes: 64 * 1024 * 1024,
            drop_flushed_pages: true,
        }
    }
}
