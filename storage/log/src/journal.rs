//! What the committer thread and the readers share: the journal files, the
//! partitions, and the queue into the committer.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Weak};

use bytes::BytesMut;
use parking_lot::RwLock;
use tokio::sync::{oneshot, watch};

use crate::batch::BatchHeader;
use crate::clock::Clock;
use crate::config::LogConfig;
use crate::error::{LogError, Result};
use crate::frame::ControlOp;
use crate::state::PartitionState;

pub(crate) struct PartitionShared {
    pub id: u64,
    pub key: String,
    pub state: RwLock<PartitionState>,
    pub deleted: AtomicBool,
    /// The partition's end offset as published (durable, or written under
    /// write durability), for readers that wait for new data.
    pub end: watch::Sender<u64>,
    /// What readers may see: `end`, unless the partition is replicated, when
    /// the leader moves it as a majority of replicas confirm (and a follower
    /// as its leader tells it).
    pub high_watermark: watch::Sender<u64>,
    pub replicated: AtomicBool,
    /// A follower replica takes only replicated appends, never leader ones.
    pub follower: AtomicBool,
    /// Runs that reads fetched from disk (not from the tail cache).
    #[cfg(test)]
    pub disk_run_reads: AtomicU64,
}

impl PartitionShared {
    pub fn new(state: PartitionState) -> Arc<Self> {
        let (end, _) = watch::channel(state.meta.next_offset);
        let (high_watermark, _) = watch::channel(state.meta.next_offset);
        Arc::new(PartitionShared {
            id: state.meta.id,
            key: state.meta.key.clone(),
            state: RwLock::new(state),
            deleted: AtomicBool::new(false),
            end,
            high_watermark,
            replicated: AtomicBool::new(false),
            follower: AtomicBool::new(false),
            #[cfg(test)]
            disk_run_reads: AtomicU64::new(0),
        })
    }

    /// Publishes a new end offset; the high watermark follows it unless the
    /// partition is replicated (then it only drops, after a truncation).
    pub fn publish_end(&self, end: u64) {
        self.end.send_replace(end);
        if self.replicated.load(Ordering::Acquire) {
            self.high_watermark.send_if_modified(|hw| {
                let over = *hw > end;
                if over {
                    *hw = end;
                }
                over
            });
        } else {
            self.high_watermark.send_if_modified(|hw| {
                let changed = *hw != end;
                *hw = end;
                changed
            });
        }
    }

    pub fn check_live(&self) -> Result<()> {
        if self.deleted.load(Ordering::Acquire) {
            return Err(LogError::UnknownPartition(self.key.clone()));
        }
        Ok(())
    }
}

/// How an append's offsets are decided.
#[derive(Debug, Clone, Copy)]
pub(crate) enum AppendMode {
    /// The log assigns offsets (and the epoch) as a leader does.
    Leader {
        epoch: Option<i32>,
        expected_offset: Option<u64>,
    },
    /// Offsets and epochs were assigned by a leader; they must continue the log.
    Replica,
}

/// Result of a successful append.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Appended {
    pub base_offset: u64,
    /// One past the last offset appended.
    pub next_offset: u64,
    /// Largest record timestamp among the appended batches.
    pub max_timestamp: i64,
    /// The leader epoch the (last) appended batch carries: what a leader
    /// checks later to tell its write from another leader's at the same offsets.
    pub leader_epoch: i32,
}

pub(crate) struct AppendRequest {
    pub partition: Arc<PartitionShared>,
    /// One or more whole, verified batches.
    pub batches: BytesMut,
    pub headers: Vec<BatchHeader>,
    pub mode: AppendMode,
    /// Acknowledge only after fdatasync.
    pub durable: bool,
    pub reply: oneshot::Sender<Result<Appended>>,
}

pub(crate) enum ControlTarget {
    New { key: String },
    Existing(Arc<PartitionShared>),
}

pub(crate) enum Request {
    Append(AppendRequest),
    Control {
        target: ControlTarget,
        op: ControlOp,
        reply: oneshot::Sender<Result<()>>,
    },
    /// Several operations on existing partitions, made durable by one write
    /// and one fdatasync; one result per operation, in order.
    ControlBatch {
        ops: Vec<(Arc<PartitionShared>, ControlOp)>,
        reply: oneshot::Sender<Vec<Result<()>>>,
    },
    /// Make everything written so far durable.
    Flush {
        reply: oneshot::Sender<Result<()>>,
    },
    Shutdown,
}

/// Open journal files by sequence number.
pub(crate) struct Files {
    dir: PathBuf,
    open: RwLock<BTreeMap<u64, Arc<File>>>,
}

impl Files {
    pub fn new(dir: PathBuf) -> Self {
        Files {
            dir,
            open: RwLock::new(BTreeMap::new()),
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn path(&self, seq: u64) -> PathBuf {
        journal_path(&self.dir, seq)
    }

    pub fn get(&self, seq: u64) -> Option<Arc<File>> {
        self.open.read().get(&seq).cloned()
    }

    pub fn insert(&self, seq: u64, file: Arc<File>) {
        self.open.write().insert(seq, file);
        crate::metrics::JOURNAL_FILES.set(self.open.read().len() as i64);
    }

    pub fn seqs(&self) -> Vec<u64> {
        self.open.read().keys().copied().collect()
    }

    /// Forgets and unlinks a file. Readers holding it keep reading their copy.
    pub fn remove(&self, seq: u64) -> Result<()> {
        self.open.write().remove(&seq);
        crate::metrics::JOURNAL_FILES.set(self.open.read().len() as i64);
        let path = self.path(seq);
        match std::fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(LogError::io(path, e)),
        }
    }
}

pub(crate) fn journal_path(dir: &Path, seq: u64) -> PathBuf {
    dir.join(format!("{seq:020}.wal"))
}

/// Parses a journal file name back into its sequence number.
pub(crate) fn parse_journal_name(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(".wal")?;
    (digits.len() == 20 && digits.bytes().all(|b| b.is_ascii_digit()))
        .then(|| digits.parse().ok())
        .flatten()
}

/// Journal positions: how far the committer has written, and how far fdatasync has made durable.
#[derive(Debug, Default)]
pub(crate) struct Positions {
    pub file: AtomicU64,
    pub written: AtomicU64,
    pub flushed: AtomicU64,
}

pub(crate) struct Shared {
    pub config: LogConfig,
    pub clock: Arc<dyn Clock>,
    pub files: Files,
    pub partitions: RwLock<HashMap<String, Arc<PartitionShared>>>,
    pub tx: crossbeam_channel::Sender<Request>,
    pub positions: Positions,
    /// Why the journal stopped accepting writes, after a failed fdatasync.
    pub failed: parking_lot::Mutex<Option<String>>,
    pub tail_cache: TailCache,
}

/// The log-wide bound on frames kept in partitions' tail caches
/// ([`LogConfig::tail_cache_bytes`]).
///
/// Every frame cached is queued here, in publish order, with its length; once
/// the queued lengths add up to more than the budget, the oldest are evicted
/// from their partitions, whichever they are. A frame a partition dropped on
/// its own (truncation, retention, deletion) stays queued, and counted, until
/// its turn comes, so the bytes the partitions hold never exceed the queued
/// total, which never exceeds the budget once a publish has finished.
pub(crate) struct TailCache {
    budget: usize,
    next_seq: AtomicU64,
    queue: parking_lot::Mutex<TailQueue>,
}

#[derive(Default)]
struct TailQueue {
    entries: VecDeque<(Weak<PartitionShared>, u64, usize)>,
    bytes: usize,
}

impl TailCache {
    pub fn new(budget: usize) -> Self {
        TailCache {
            budget,
            next_seq: AtomicU64::new(0),
            queue: parking_lot::Mutex::new(TailQueue::default()),
        }
    }

    /// Whether a frame of `len` bytes may be cached at all; if so, its
    /// eviction number.
    pub fn admit(&self, len: usize) -> Option<u64> {
        (len > 0 && len <= self.budget).then(|| self.next_seq.fetch_add(1, Ordering::Relaxed))
    }

    /// Queues frames just cached (`(partition, seq, len)`), then evicts the
    /// oldest until the total fits the budget. Call it holding no partition lock.
    pub fn account(&self, cached: Vec<(Weak<PartitionShared>, u64, usize)>) {
        if cached.is_empty() {
            return;
        }
        let mut victims = Vec::new();
        {
            let mut q = self.queue.lock();
            for entry in cached {
                q.bytes += entry.2;
                q.entries.push_back(entry);
            }
            while q.bytes > self.budget {
                let Some(entry) = q.entries.pop_front() else {
                    break;
                };
                q.bytes -= entry.2;
                victims.push(entry);
            }
            crate::metrics::TAIL_CACHE_BYTES.set(q.bytes as i64);
        }
        for (partition, seq, _) in victims {
            if let Some(p) = partition.upgrade() {
                p.state.write().evict_cached(seq);
            }
        }
    }
}

impl Shared {
    pub fn partition(&self, key: &str) -> Result<Arc<PartitionShared>> {
        self.partitions
            .read()
            .get(key)
            .cloned()
            .ok_or_else(|| LogError::UnknownPartition(key.to_string()))
    }

    pub fn failure(&self) -> Option<String> {
        self.failed.lock().clone()
    }

    pub fn fail(&self, reason: String) {
        tracing::error!(%reason, "journal failed; no further writes are accepted until it is reopened");
        self.failed.lock().get_or_insert(reason);
    }

    pub fn send(&self, request: Request) -> Result<()> {
        self.tx
            .send(request)
            .map_err(|_| LogError::Closed("the committer has stopped".into()))
    }
}

/// Waits for the committer's answer; a dropped reply means it stopped.
pub(crate) async fn await_reply<T>(rx: oneshot::Receiver<Result<T>>) -> Result<T> {
    rx.await.unwrap_or_else(|_| {
        Err(LogError::Closed(
            "the committer stopped before answering".into(),
        ))
    })
}
