//! The public handle: open a log, create partitions, append and read.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use bytes::BytesMut;
use parking_lot::Mutex;
use tokio::sync::{oneshot, watch};
use tracing::info;

use crate::batch::{self, BatchError, BatchHeader};
use crate::clock::{Clock, SystemClock};
use crate::committer::{Committer, CommitterStart};
use crate::config::{Durability, LogConfig, SegmentConfig};
use crate::error::{LogError, Result};
use crate::frame::ControlOp;
use crate::journal::{
    AppendMode, AppendRequest, Appended, ControlTarget, Files, PartitionShared, Positions, Request,
    Shared, await_reply,
};
use crate::read::{self, ReadBatches, SegmentReader};
use crate::recovery;
use crate::state::SegmentInfo;
use crate::syncer::Syncer;

/// Longest partition key accepted.
pub const MAX_PARTITION_KEY_LEN: usize = 512;

/// A broker's local write-ahead log: one journal shared by all its partitions.
pub struct Log {
    shared: Arc<Shared>,
    committer: Mutex<Option<std::thread::JoinHandle<()>>>,
    _lock: File,
}

/// Where the journal's write end is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JournalPosition {
    pub file: u64,
    /// Bytes of the current file handed to the OS.
    pub written: u64,
    /// Bytes of the current file known durable.
    pub flushed: u64,
}

/// A partition's offsets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartitionOffsets {
    /// First offset that exists (retention moves it).
    pub log_start: u64,
    /// First offset held locally; below it (and at or above `log_start`) data is in object storage.
    pub local_start: u64,
    /// One past the last offset.
    pub end: u64,
    /// One past the last offset readers may see: `end`, unless the
    /// partition is replicated (then what a majority of replicas hold).
    pub high_watermark: u64,
}

/// Options of a leader append.
#[derive(Debug, Clone, Copy, Default)]
pub struct AppendOptions {
    /// Leader epoch stamped on the batches; defaults to the partition's latest.
    pub leader_epoch: Option<i32>,
    /// Append only if the partition currently ends at this offset.
    pub expected_offset: Option<u64>,
    /// When to acknowledge; defaults to the log's configured durability.
    pub durability: Option<Durability>,
}

impl Log {
    /// Opens (or creates) the log in `dir`, recovering after a crash if needed.
    /// Blocking: call it before starting to serve, or from a blocking thread.
    pub fn open(dir: impl AsRef<Path>, config: LogConfig) -> Result<Log> {
        Self::open_with_clock(dir, config, Arc::new(SystemClock))
    }

    pub fn open_with_clock(
        dir: impl AsRef<Path>,
        config: LogConfig,
        clock: Arc<dyn Clock>,
    ) -> Result<Log> {
        let started = std::time::Instant::now();
        let dir = dir.as_ref();
        let journal_dir = dir.join("journal");
        std::fs::create_dir_all(&journal_dir).map_err(|e| LogError::io(&journal_dir, e))?;
        let lock = lock_dir(dir)?;
        let recovered = recovery::recover(&journal_dir, &config)?;
        let files = Files::new(journal_dir);
        for (seq, file) in &recovered.older {
            files.insert(*seq, file.clone());
        }
        files.insert(recovered.seq, recovered.current.clone());
        let partitions = recovered
            .partitions
            .values()
            .map(|p| (p.key.clone(), p.clone()))
            .collect();
        let (tx, rx) = crossbeam_channel::unbounded();
        let tail_cache = crate::journal::TailCache::new(config.tail_cache_bytes);
        let shared = Arc::new(Shared {
            config,
            clock,
            files,
            partitions: parking_lot::RwLock::new(partitions),
            tx,
            positions: Positions::default(),
            failed: parking_lot::Mutex::new(None),
            tail_cache,
        });
        let start = CommitterStart {
            file: recovered.current,
            seq: recovered.seq,
            written: recovered.written,
            footer: recovered.footer,
            by_id: recovered.partitions,
            next_partition_id: recovered.next_partition_id,
        };
        let (sync_tx, sync_rx) = crossbeam_channel::unbounded();
        let syncer = Syncer::new(shared.clone(), sync_rx);
        let syncer = std::thread::Builder::new()
            .name("strata-log-syncer".into())
            .spawn(move || syncer.run())
            .map_err(|e| LogError::io(dir, e))?;
        let committer = Committer::new(shared.clone(), rx, sync_tx, syncer, start);
        let handle = std::thread::Builder::new()
            .name("strata-log-committer".into())
            .spawn(move || committer.run())
            .map_err(|e| LogError::io(dir, e))?;
        crate::metrics::RECOVERY_SECONDS.observe(started.elapsed().as_secs_f64());
        info!(dir = %dir.display(), elapsed_ms = started.elapsed().as_millis() as u64, "log opened");
        Ok(Log {
            shared,
            committer: Mutex::new(Some(handle)),
            _lock: lock,
        })
    }

    pub fn config(&self) -> &LogConfig {
        &self.shared.config
    }

    /// Keys of all partitions, sorted.
    pub fn partition_keys(&self) -> Vec<String> {
        let mut keys: Vec<String> = self.shared.partitions.read().keys().cloned().collect();
        keys.sort();
        keys
    }

    pub fn partition(&self, key: &str) -> Result<Partition> {
        Ok(Partition {
            shared: self.shared.clone(),
            inner: self.shared.partition(key)?,
        })
    }

    /// Creates a partition; `config` defaults to the log's segment settings.
    pub async fn create_partition(
        &self,
        key: &str,
        config: Option<SegmentConfig>,
    ) -> Result<Partition> {
        self.create_partition_at(key, config, 0, 0).await
    }

    /// Creates a partition whose first local offset (and next offset) is
    /// `start_offset` and whose log start offset is `log_start` (at most
    /// `start_offset`): the local log of a partition whose history from
    /// `log_start` up to `start_offset` lives in object storage.
    pub async fn create_partition_at(
        &self,
        key: &str,
        config: Option<SegmentConfig>,
        log_start: u64,
        start_offset: u64,
    ) -> Result<Partition> {
        validate_key(key)?;
        let config = config.unwrap_or(self.shared.config.default_segment);
        validate_segment_config(&config)?;
        let op = ControlOp::Create {
            key: key.to_string(),
            config,
            start_offset,
            log_start: log_start.min(start_offset),
        };
        self.control(
            ControlTarget::New {
                key: key.to_string(),
            },
            op,
        )
        .await?;
        self.partition(key)
    }

    /// Deletes a partition; its journal space is released once no other
    /// partition's data shares the same journal files.
    pub async fn delete_partition(&self, key: &str) -> Result<()> {
        let p = self.shared.partition(key)?;
        self.control(ControlTarget::Existing(p), ControlOp::Delete)
            .await
    }

    /// Makes everything written so far durable.
    pub async fn flush(&self) -> Result<()> {
        let (reply, rx) = oneshot::channel();
        self.shared.send(Request::Flush { reply })?;
        await_reply(rx).await
    }

    pub fn journal_position(&self) -> JournalPosition {
        let p = &self.shared.positions;
        JournalPosition {
            file: p.file.load(Ordering::Acquire),
            written: p.written.load(Ordering::Acquire),
            flushed: p.flushed.load(Ordering::Acquire),
        }
    }

    /// Journal files on disk, by sequence number.
    pub fn journal_files(&self) -> Vec<u64> {
        self.shared.files.seqs()
    }

    /// Stops the committer after it has written and flushed everything queued before this call.
    pub fn close(&self) {
        if let Some(handle) = self.committer.lock().take() {
            let _ = self.shared.tx.send(Request::Shutdown);
            let _ = handle.join();
        }
    }

    async fn control(&self, target: ControlTarget, op: ControlOp) -> Result<()> {
        control(&self.shared, target, op).await
    }

    /// Applies offload bookkeeping for many partitions with one journal
    /// write and one fdatasync; one result per operation, in order.
    pub async fn apply_offload_ops(
        &self,
        ops: &[(Partition, OffloadOp)],
    ) -> Result<Vec<Result<()>>> {
        if ops.is_empty() {
            return Ok(Vec::new());
        }
        let ops = ops
            .iter()
            .map(|(p, op)| {
                let op = match *op {
                    OffloadOp::Offloaded { base_offset } => ControlOp::Offloaded { base_offset },
                    OffloadOp::ReleaseLocal { up_to } => ControlOp::ReleaseLocal { offset: up_to },
                };
                (p.inner.clone(), op)
            })
            .collect();
        let (reply, rx) = oneshot::channel();
        self.shared.send(Request::ControlBatch { ops, reply })?;
        rx.await
            .map_err(|_| LogError::Closed("the committer stopped before answering".into()))
    }
}

impl Drop for Log {
    fn drop(&mut self) {
        self.close();
    }
}

/// Offload bookkeeping for one partition, applied in a batch with
/// [`Log::apply_offload_ops`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OffloadOp {
    /// As [`Partition::mark_offloaded`].
    Offloaded { base_offset: u64 },
    /// As [`Partition::release_local`].
    ReleaseLocal { up_to: u64 },
}

async fn control(shared: &Shared, target: ControlTarget, op: ControlOp) -> Result<()> {
    let (reply, rx) = oneshot::channel();
    shared.send(Request::Control { target, op, reply })?;
    await_reply(rx).await
}

/// One partition of the log. Cheap to clone.
#[derive(Clone)]
pub struct Partition {
    shared: Arc<Shared>,
    inner: Arc<PartitionShared>,
}

impl std::fmt::Debug for Partition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Partition")
            .field("key", &self.inner.key)
            .finish()
    }
}

impl Partition {
    pub fn key(&self) -> &str {
        &self.inner.key
    }

    pub fn offsets(&self) -> PartitionOffsets {
        // Never hold the watch's lock and the state's together: the
        // publisher takes the state's, then the watch's.
        let high_watermark = self.high_watermark();
        let state = self.inner.state.read();
        PartitionOffsets {
            log_start: state.meta.log_start,
            local_start: state.meta.local_start,
            end: state.meta.next_offset,
            high_watermark: high_watermark.min(state.meta.next_offset),
        }
    }

    /// One past the last offset readers may see (see [`PartitionOffsets::high_watermark`]).
    pub fn high_watermark(&self) -> u64 {
        *self.inner.high_watermark.borrow()
    }

    /// Follows the high watermark: wakes readers when more becomes visible.
    /// A value borrowed from the receiver holds the watch's lock, which the
    /// log's publisher takes while it holds the partition's state: copy it
    /// out before calling anything else on the partition.
    pub fn watch_high_watermark(&self) -> watch::Receiver<u64> {
        self.inner.high_watermark.subscribe()
    }

    /// Makes the high watermark independent of the end offset (the partition
    /// has other replicas) or ties it to the end again (it has none).
    ///
    /// Becoming replicated drops the high watermark to the local start: what
    /// is on local disk past it may never have reached a majority (a replica
    /// reopened after a crash knows its end, not what was committed), and
    /// only the partition's leader, counting its replicas, may move it up
    /// again. Below the local start the data is in object storage, where
    /// only committed data goes.
    pub fn set_replicated(&self, replicated: bool) {
        let was = self.inner.replicated.swap(replicated, Ordering::AcqRel);
        if !replicated {
            let end = self.offsets().end;
            self.inner.publish_end(end);
        } else if !was {
            let local_start = self.offsets().local_start;
            self.inner.high_watermark.send_if_modified(|hw| {
                let down = *hw > local_start;
                if down {
                    *hw = local_start;
                }
                down
            });
        }
    }

    pub fn is_replicated(&self) -> bool {
        self.inner.replicated.load(Ordering::Acquire)
    }

    /// Moves the high watermark of a replicated partition up to `offset`
    /// (never back, never past the end offset). Returns the new value.
    pub fn advance_high_watermark(&self, offset: u64) -> u64 {
        let end = self.offsets().end;
        let target = offset.min(end);
        self.inner.high_watermark.send_if_modified(|hw| {
            let up = target > *hw;
            if up {
                *hw = target;
            }
            up
        });
        self.high_watermark()
    }

    /// Holds this partition as a follower replica (leader appends fail with
    /// [`LogError::NotLeader`]) or as its leader again.
    pub fn set_follower(&self, follower: bool) {
        self.inner.follower.store(follower, Ordering::Release);
    }

    pub fn is_follower(&self) -> bool {
        self.inner.follower.load(Ordering::Acquire)
    }

    /// The newest leader epoch the partition has seen (batches, or an epoch begun empty).
    pub fn last_epoch(&self) -> Option<i32> {
        self.inner.state.read().meta.last_epoch()
    }

    /// Records, durably, that leader epoch `epoch` starts at the current
    /// end offset, before any batch of it. A no-op if the partition already
    /// has this epoch or a newer one. Replication compares replicas by
    /// (last epoch, end offset); beginning the epoch empty is what Raft's
    /// no-op entry at the start of a term does, without taking an offset.
    pub async fn begin_epoch(&self, epoch: i32) -> Result<()> {
        self.control(ControlOp::BeginEpoch { epoch, offset: 0 })
            .await
    }

    pub fn segment_config(&self) -> SegmentConfig {
        self.inner.state.read().meta.config
    }

    /// Appends one or more whole record batches as a leader: the log assigns
    /// offsets and the leader epoch by rewriting those header fields; the
    /// batches are otherwise stored exactly as given.
    pub async fn append(
        &self,
        batches: impl Into<BytesMut>,
        options: AppendOptions,
    ) -> Result<Appended> {
        let mode = AppendMode::Leader {
            epoch: options.leader_epoch,
            expected_offset: options.expected_offset,
        };
        self.submit(batches.into(), mode, options.durability).await
    }

    /// As [`Partition::append`], but the batches are queued for the committer
    /// before this returns: appends enqueued one after another from one task
    /// land in that order. The returned future resolves when the append is
    /// acknowledged (durable, or written, per the durability). A front end
    /// that answers pipelined requests in order queues each request's append
    /// in turn and waits for all of them together.
    pub fn enqueue_append(
        &self,
        batches: impl Into<BytesMut>,
        options: AppendOptions,
    ) -> Result<impl std::future::Future<Output = Result<Appended>> + Send + 'static> {
        let mode = AppendMode::Leader {
            epoch: options.leader_epoch,
            expected_offset: options.expected_offset,
        };
        let rx = self.enqueue(batches.into(), mode, options.durability)?;
        Ok(await_reply(rx))
    }

    /// Appends batches whose offsets and epochs a leader assigned; they must
    /// continue this partition exactly.
    pub async fn append_replicated(&self, batches: impl Into<BytesMut>) -> Result<Appended> {
        self.submit(batches.into(), AppendMode::Replica, None).await
    }

    async fn submit(
        &self,
        batches: BytesMut,
        mode: AppendMode,
        durability: Option<Durability>,
    ) -> Result<Appended> {
        let rx = self.enqueue(batches, mode, durability)?;
        await_reply(rx).await
    }

    /// Verifies the batches and hands them to the committer; the receiver
    /// gets the committer's answer.
    fn enqueue(
        &self,
        batches: BytesMut,
        mode: AppendMode,
        durability: Option<Durability>,
    ) -> Result<oneshot::Receiver<Result<Appended>>> {
        self.inner.check_live()?;
        if matches!(mode, AppendMode::Leader { .. }) && self.is_follower() {
            return Err(LogError::NotLeader(self.inner.key.clone()));
        }
        let headers = self.verify(&batches, matches!(mode, AppendMode::Replica))?;
        let durable = durability.unwrap_or(self.shared.config.durability) == Durability::Fsync;
        let (reply, rx) = oneshot::channel();
        self.shared.send(Request::Append(AppendRequest {
            partition: self.inner.clone(),
            batches,
            headers,
            mode,
            durable,
            reply,
        }))?;
        Ok(rx)
    }

    fn verify(&self, buf: &[u8], replicated: bool) -> Result<Vec<BatchHeader>> {
        let config = &self.shared.config;
        if buf.len() > config.max_batch_bytes {
            return Err(LogError::BatchTooLarge {
                size: buf.len(),
                limit: config.max_batch_bytes,
            });
        }
        if buf.is_empty() {
            return Err(LogError::InvalidBatch(BatchError::Truncated {
                needed: batch::HEADER_LEN,
                available: 0,
            }));
        }
        let mut headers: Vec<BatchHeader> = Vec::with_capacity(1);
        for item in batch::batches(buf) {
            let (_, range) = item?;
            let h = batch::verify_batch(&buf[range], config.max_uncompressed_batch_bytes)?;
            if replicated {
                if h.base_offset < 0 {
                    return Err(LogError::InvalidOperation(format!(
                        "negative base offset {}",
                        h.base_offset
                    )));
                }
                if let Some(prev) = headers.last()
                    && prev.next_offset() != h.base_offset
                {
                    return Err(LogError::NonContiguous {
                        expected: prev.next_offset() as u64,
                        got: h.base_offset as u64,
                    });
                }
            }
            headers.push(h);
        }
        Ok(headers)
    }

    /// Removes every offset at and after `offset` (a divergent suffix after a
    /// leader change). `offset` must be a batch boundary: records of one
    /// batch are never split.
    pub async fn truncate(&self, offset: u64) -> Result<()> {
        self.control(ControlOp::Truncate {
            offset,
            cut_segment: None,
        })
        .await
    }

    /// Moves the log start offset forward (retention, DeleteRecords); the
    /// space of data below it is reclaimed.
    pub async fn advance_start_offset(&self, offset: u64) -> Result<()> {
        self.control(ControlOp::AdvanceStart { offset }).await
    }

    pub async fn set_segment_config(&self, config: SegmentConfig) -> Result<()> {
        validate_segment_config(&config)?;
        self.control(ControlOp::SetConfig { config }).await
    }

    /// Seals the active segment now, if it holds anything.
    pub async fn seal_active_segment(&self) -> Result<()> {
        self.control(ControlOp::Seal { offset: 0 }).await
    }

    /// Local segments in offset order; the last is the active one.
    pub fn segments(&self) -> Vec<SegmentInfo> {
        self.inner.state.read().meta.segments.clone()
    }

    /// Sealed segments not yet in object storage, oldest first.
    pub fn segments_to_offload(&self) -> Vec<SegmentInfo> {
        let state = self.inner.state.read();
        state
            .meta
            .segments
            .iter()
            .filter(|s| s.sealed && !s.offloaded)
            .cloned()
            .collect()
    }

    /// The batches of a sealed segment, as a stream of chunks.
    pub fn segment_reader(&self, base_offset: u64) -> Result<SegmentReader> {
        SegmentReader::new(self.shared.clone(), &self.inner, base_offset)
    }

    /// Records that the sealed segment starting at `base_offset` is safely in object storage.
    pub async fn mark_offloaded(&self, base_offset: u64) -> Result<()> {
        self.control(ControlOp::Offloaded { base_offset }).await
    }

    /// Releases the local copies of offloaded segments that end at or below
    /// `up_to` (never anything not yet offloaded).
    pub async fn release_local(&self, up_to: u64) -> Result<()> {
        self.control(ControlOp::ReleaseLocal { offset: up_to })
            .await
    }

    /// Reads whole batches from the one holding `offset`, up to `max_bytes`
    /// (at least one batch). Blocking disk reads: use [`Partition::read`] from async code.
    pub fn read_blocking(&self, offset: u64, max_bytes: usize) -> Result<ReadBatches> {
        read::read(&self.shared.files, &self.inner, offset, max_bytes, None)
    }

    /// As [`Partition::read_blocking`], never returning batches at or past `max_offset`
    /// (a high watermark).
    pub fn read_up_to_blocking(
        &self,
        offset: u64,
        max_bytes: usize,
        max_offset: u64,
    ) -> Result<ReadBatches> {
        read::read(
            &self.shared.files,
            &self.inner,
            offset,
            max_bytes,
            Some(max_offset),
        )
    }

    /// As [`Partition::read`], never returning batches at or past `max_offset`
    /// (a high watermark).
    pub async fn read_up_to(
        &self,
        offset: u64,
        max_bytes: usize,
        max_offset: u64,
    ) -> Result<ReadBatches> {
        self.read_bounded(offset, max_bytes, Some(max_offset)).await
    }

    /// As [`Partition::read_blocking`]. A read the tail cache holds entirely
    /// (the recent tail, see [`LogConfig::tail_cache_bytes`]) is served right
    /// here; any other goes to a blocking thread for its disk reads.
    pub async fn read(&self, offset: u64, max_bytes: usize) -> Result<ReadBatches> {
        self.read_bounded(offset, max_bytes, None).await
    }

    async fn read_bounded(
        &self,
        offset: u64,
        max_bytes: usize,
        max_offset: Option<u64>,
    ) -> Result<ReadBatches> {
        let plan = read::plan_read(
            &self.shared.files,
            &self.inner,
            offset,
            max_bytes,
            max_offset,
        )?;
        if plan.in_memory() {
            return read::execute_read(&self.shared.files, &self.inner, plan);
        }
        let this = self.clone();
        tokio::task::spawn_blocking(move || {
            read::execute_read(&this.shared.files, &this.inner, plan)
        })
        .await
        .map_err(|e| LogError::Closed(format!("read task failed: {e}")))?
    }

    /// The offset of the first record with a timestamp at or after `timestamp_ms`.
    pub async fn offset_for_timestamp(&self, timestamp_ms: i64) -> Result<Option<u64>> {
        let this = self.clone();
        tokio::task::spawn_blocking(move || this.offset_for_timestamp_blocking(timestamp_ms))
            .await
            .map_err(|e| LogError::Closed(format!("read task failed: {e}")))?
    }

    pub fn offset_for_timestamp_blocking(&self, timestamp_ms: i64) -> Result<Option<u64>> {
        let max = self.shared.config.max_uncompressed_batch_bytes;
        read::offset_for_timestamp(&self.shared.files, &self.inner, timestamp_ms, max)
    }

    /// Leader epoch of the batch holding `offset`.
    pub fn epoch_at(&self, offset: u64) -> Option<i32> {
        self.inner.state.read().epoch_at(offset)
    }

    /// The largest epoch at or below `epoch` and the offset where it ends
    /// (Kafka's OffsetsForLeaderEpoch).
    pub fn end_offset_for_epoch(&self, epoch: i32) -> Option<(i32, u64)> {
        self.inner.state.read().end_offset_for_epoch(epoch)
    }

    /// Follows the partition's end offset: wakes readers waiting for new data.
    pub fn watch_end(&self) -> watch::Receiver<u64> {
        self.inner.end.subscribe()
    }

    async fn control(&self, op: ControlOp) -> Result<()> {
        control(
            &self.shared,
            ControlTarget::Existing(self.inner.clone()),
            op,
        )
        .await
    }
}

fn validate_key(key: &str) -> Result<()> {
    if key.is_empty() {
        return Err(LogError::InvalidPartitionKey(key.into(), "empty"));
    }
    if key.len() > MAX_PARTITION_KEY_LEN {
        return Err(LogError::InvalidPartitionKey(
            key.into(),
            "longer than 512 bytes",
        ));
    }
    if key.chars().any(char::is_control) {
        return Err(LogError::InvalidPartitionKey(
            key.into(),
            "contains control characters",
        ));
    }
    Ok(())
}

fn validate_segment_config(config: &SegmentConfig) -> Result<()> {
    if config.segment_bytes == 0 || config.segment_ms <= 0 {
        return Err(LogError::InvalidOperation(
            "segment_bytes and segment_ms must be positive".into(),
        ));
    }
    Ok(())
}

/// Takes an exclusive lock on the data directory: two processes writing
/// one journal would destroy it.
fn lock_dir(dir: &Path) -> Result<File> {
    let path = dir.join("LOCK");
    let file = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| LogError::io(&path, e))?;
    // SAFETY: flock on a file descriptor we own; no memory is involved.
    let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if rc != 0 {
        let e = std::io::Error::last_os_error();
        if e.raw_os_error() == Some(libc::EWOULDBLOCK) {
            return Err(LogError::InvalidOperation(format!(
                "data directory {} is in use by another log (locked {})",
                dir.display(),
                path.display()
            )));
        }
        return Err(LogError::io(&path, e));
    }
    Ok(file)
}

#[cfg(test)]
mod tail_cache_tests {
    use std::sync::atomic::Ordering::Relaxed;

    use bytes::Bytes;

    use super::*;
    use crate::batch::{BatchBuilder, Compression, decode_records};

    fn batch(values: &[&str]) -> Bytes {
        let mut b = BatchBuilder::new(Compression::None);
        for v in values {
            b.push(
                None,
                Some(Bytes::copy_from_slice(v.as_bytes())),
                vec![],
                1000,
            );
        }
        b.build().unwrap()
    }

    fn values(read: &ReadBatches) -> Vec<(i64, String)> {
        read.batches()
            .flat_map(|b| decode_records(&b, 1 << 20).unwrap())
            .map(|r| {
                (
                    r.offset,
                    String::from_utf8(r.value.unwrap().to_vec()).unwrap(),
                )
            })
            .collect()
    }

    fn disk_reads(p: &Partition) -> u64 {
        p.inner.disk_run_reads.load(Relaxed)
    }

    fn cached_bytes(p: &Partition) -> usize {
        p.inner
            .state
            .read()
            .tail
            .iter()
            .map(|c| c.frame.len())
            .sum()
    }

    async fn append(p: &Partition, values: &[&str]) -> Appended {
        p.append(batch(values).as_ref(), AppendOptions::default())
            .await
            .unwrap()
    }

    /// Everything readable, read with small and large limits, as values.
    async fn read_all(p: &Partition) -> Vec<Vec<(i64, String)>> {
        let end = p.offsets().end;
        let mut out = Vec::new();
        for max_bytes in [1, 1 << 20] {
            for offset in p.offsets().local_start..=end {
                out.push(values(&p.read(offset, max_bytes).await.unwrap()));
                let blocking = p.read_blocking(offset, max_bytes).unwrap();
                out.push(values(&blocking));
                let bounded = p.read_up_to_blocking(offset, max_bytes, end.saturating_sub(1));
                out.push(values(&bounded.unwrap()));
            }
        }
        out
    }

    #[tokio::test]
    async fn tail_reads_come_from_memory_and_match_disk() {
        let dir = tempfile::tempdir().unwrap();
        let log = Log::open(dir.path(), LogConfig::default()).unwrap();
        let p = log.create_partition("p", None).await.unwrap();
        let q = log.create_partition("q", None).await.unwrap();
        append(&p, &["a", "b"]).await;
        // Two partitions in what is likely one commit: each run gets its own frame.
        let (x, y) = tokio::join!(append(&p, &["c"]), append(&q, &["x", "y", "z"]));
        assert_eq!((x.base_offset, y.base_offset), (2, 0));
        let mut twice = BytesMut::from(batch(&["d"]).as_ref());
        twice.extend_from_slice(&batch(&["e", "f"]));
        p.append(twice, AppendOptions::default()).await.unwrap();

        let read = p.read(3, 1 << 20).await.unwrap();
        assert_eq!(
            values(&read),
            vec![(3, "d".into()), (4, "e".into()), (5, "f".into())]
        );
        let from_memory = (read_all(&p).await, read_all(&q).await);
        assert_eq!(
            (disk_reads(&p), disk_reads(&q)),
            (0, 0),
            "served from memory"
        );
        assert!(cached_bytes(&p) > 0);

        // After reopening, the cache is empty: the same reads come from disk.
        drop((p, q));
        drop(log);
        let log = Log::open(dir.path(), LogConfig::default()).unwrap();
        let (p, q) = (log.partition("p").unwrap(), log.partition("q").unwrap());
        assert_eq!(cached_bytes(&p), 0);
        let from_disk = (read_all(&p).await, read_all(&q).await);
        assert!(disk_reads(&p) > 0 && disk_reads(&q) > 0);
        assert_eq!(from_memory, from_disk);
    }

    #[tokio::test]
    async fn eviction_under_a_small_budget_falls_back_to_disk() {
        let dir = tempfile::tempdir().unwrap();
        let value = "v".repeat(1000);
        let frame_len = {
            // One run's frame: the batch plus the frame header and append time.
            batch(&[&value]).len() + crate::frame::BATCHES_PAYLOAD_START
        };
        let config = LogConfig {
            tail_cache_bytes: 3 * frame_len,
            ..LogConfig::default()
        };
        let log = Log::open(dir.path(), config.clone()).unwrap();
        let p = log.create_partition("p", None).await.unwrap();
        let q = log.create_partition("q", None).await.unwrap();
        for _ in 0..4 {
            append(&p, &[&value]).await;
            append(&q, &[&value]).await;
        }
        // The budget is log-wide: the three latest frames, whichever partition.
        assert_eq!(cached_bytes(&p) + cached_bytes(&q), 3 * frame_len);
        assert_eq!(p.inner.state.read().tail.front().unwrap().base_offset, 3);
        assert_eq!(q.inner.state.read().tail.front().unwrap().base_offset, 2);

        let last = p.read(3, 1 << 20).await.unwrap();
        assert_eq!(disk_reads(&p), 0);
        let first = p.read(0, 1 << 20).await.unwrap();
        assert_eq!(disk_reads(&p), 3, "runs 0..3 evicted, run 3 cached");
        assert_eq!(values(&first).len(), 4);
        assert_eq!(values(&last), vec![(3, value.clone())]);

        let before = (read_all(&p).await, read_all(&q).await);
        drop((p, q));
        drop(log);
        let log = Log::open(dir.path(), config).unwrap();
        let (p, q) = (log.partition("p").unwrap(), log.partition("q").unwrap());
        assert_eq!(before, (read_all(&p).await, read_all(&q).await));

        // Disabled: nothing is cached.
        drop((p, q));
        drop(log);
        let config = LogConfig {
            tail_cache_bytes: 0,
            ..LogConfig::default()
        };
        let log = Log::open(dir.path(), config).unwrap();
        let p = log.partition("p").unwrap();
        append(&p, &["w"]).await;
        assert_eq!(cached_bytes(&p), 0);
        assert_eq!(
            values(&p.read(4, 1 << 20).await.unwrap()),
            vec![(4, "w".into())]
        );
        assert_eq!(disk_reads(&p), 1);
    }

    #[tokio::test]
    async fn truncation_drops_cached_frames_past_the_cut() {
        let dir = tempfile::tempdir().unwrap();
        let log = Log::open(dir.path(), LogConfig::default()).unwrap();
        let p = log.create_partition("p", None).await.unwrap();
        append(&p, &["a"]).await; // run [0, 1)
        let mut two = BytesMut::from(batch(&["b"]).as_ref());
        two.extend_from_slice(&batch(&["c", "d"]));
        p.append(two, AppendOptions::default()).await.unwrap(); // run [1, 4): batches 1, [2, 4)
        append(&p, &["e"]).await; // run [4, 5)
        append(&p, &["f"]).await; // run [5, 6)
        assert_eq!(p.inner.state.read().tail.len(), 4);

        // Cutting inside the second run keeps its frame (the run now ends at 2)
        // and drops the frames of the runs after it.
        p.truncate(2).await.unwrap();
        let bases: Vec<u64> = p
            .inner
            .state
            .read()
            .tail
            .iter()
            .map(|c| c.base_offset)
            .collect();
        assert_eq!(bases, vec![0, 1]);
        let read = p.read(0, 1 << 20).await.unwrap();
        assert_eq!(values(&read), vec![(0, "a".into()), (1, "b".into())]);
        assert_eq!(read.next_offset, 2);

        // New data at the cut is what is read, from memory.
        append(&p, &["X", "Y"]).await;
        // As on disk, a read stops at the end of a cut run.
        let read = p.read(1, 1 << 20).await.unwrap();
        assert_eq!(
            (values(&read), read.next_offset),
            (vec![(1, "b".into())], 2)
        );
        let read = p.read(2, 1 << 20).await.unwrap();
        assert_eq!(values(&read), vec![(2, "X".into()), (3, "Y".into())]);
        assert_eq!(disk_reads(&p), 0);
        let from_memory = read_all(&p).await;

        // Truncating to the start of a run drops its frame too.
        p.truncate(1).await.unwrap();
        let bases: Vec<u64> = p
            .inner
            .state
            .read()
            .tail
            .iter()
            .map(|c| c.base_offset)
            .collect();
        assert_eq!(bases, vec![0]);
        append(&p, &["B"]).await;
        assert_eq!(
            values(&p.read(0, 1 << 20).await.unwrap()),
            vec![(0, "a".into()), (1, "B".into())]
        );
        assert_eq!(disk_reads(&p), 0);

        // Retention drops frames below the new start.
        p.advance_start_offset(1).await.unwrap();
        p.seal_active_segment().await.unwrap();
        let bases: Vec<u64> = p
            .inner
            .state
            .read()
            .tail
            .iter()
            .map(|c| c.base_offset)
            .collect();
        assert_eq!(bases, vec![1]);
        let before = read_all(&p).await;
        assert_eq!(disk_reads(&p), 0);

        // What was served from memory is what the disk holds.
        drop(p);
        drop(log);
        let log = Log::open(dir.path(), LogConfig::default()).unwrap();
        let p = log.partition("p").unwrap();
        let after = read_all(&p).await;
        assert!(disk_reads(&p) > 0);
        assert_eq!(before, after);
        drop(from_memory);
    }
}
