//! The committer: one thread that owns the journal's write end.
//!
//! Appends from every partition queue up while earlier commits are being
//! made durable; the committer takes them all, assigns offsets, lays each
//! partition's batches out contiguously (one frame, one index entry per
//! partition per commit) and writes the lot with one `pwrite`. The syncer
//! thread then makes it durable with one `fdatasync`, publishes the new
//! runs and acknowledges the appends (see `syncer.rs`). Offsets are
//! assigned here, on one thread, so a failed write (a full disk) leaves no
//! gap: nothing of it is published, the file is cut back to where it was,
//! and its appends fail.
//!
//! Rare operations that change a partition's metadata (create, delete,
//! truncate, seal, retention, offload marks) and file rolls first wait for
//! the syncer to finish everything in flight, then run on their own.
//!
//! These are plain threads, not tasks: `fdatasync` blocks for milliseconds
//! and must never sit on the async runtime's threads.

use std::collections::HashMap;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, TryRecvError};
use tracing::{info, warn};

use crate::error::{LogError, Result};
use crate::frame::{self, ControlOp, FooterRun, Snapshot};
use crate::journal::{AppendRequest, ControlTarget, PartitionShared, Request, Shared};
use crate::layout::{self, Target, WrittenView};
use crate::metrics;
use crate::recovery::create_journal_file;
use crate::state::{PartitionMeta, PartitionState};
use crate::syncer::{self, Commit, Event, PartitionEvents, SyncMsg};

/// The commit buffer grows by at least this much when it runs short.
const COMMIT_BUF_CHUNK: usize = 8 << 20;

/// What recovery hands to the committer.
pub(crate) struct CommitterStart {
    pub file: Arc<File>,
    pub seq: u64,
    pub written: u64,
    pub footer: Vec<FooterRun>,
    pub by_id: HashMap<u64, Arc<PartitionShared>>,
    pub next_partition_id: u64,
}

pub(crate) struct Committer {
    shared: Arc<Shared>,
    rx: Receiver<Request>,
    sync_tx: Sender<SyncMsg>,
    syncer: Option<std::thread::JoinHandle<()>>,
    file: Arc<File>,
    seq: u64,
    written: u64,
    /// Runs written to the current file, for its footer.
    footer: Vec<FooterRun>,
    by_id: HashMap<u64, Arc<PartitionShared>>,
    /// Partitions as of commits written but maybe not yet published.
    views: HashMap<u64, WrittenView>,
    next_partition_id: u64,
    /// The commit being built. Commits are split off it and frozen once
    /// written, so their runs' frames can be shared with the tail cache; it
    /// is reserved in chunks of [`COMMIT_BUF_CHUNK`], so in the steady state
    /// a commit allocates nothing.
    buf: BytesMut,
    /// A non-append request met while gathering a commit, handled right after it.
    pending: Option<Request>,
    last_housekeeping: Instant,
}

impl Committer {
    pub fn new(
        shared: Arc<Shared>,
        rx: Receiver<Request>,
        sync_tx: Sender<SyncMsg>,
        syncer: std::thread::JoinHandle<()>,
        start: CommitterStart,
    ) -> Self {
        shared.positions.file.store(start.seq, Ordering::Release);
        shared
            .positions
            .written
            .store(start.written, Ordering::Release);
        shared
            .positions
            .flushed
            .store(start.written, Ordering::Release);
        Committer {
            shared,
            rx,
            sync_tx,
            syncer: Some(syncer),
            file: start.file,
            seq: start.seq,
            written: start.written,
            footer: start.footer,
            by_id: start.by_id,
            views: HashMap::new(),
            next_partition_id: start.next_partition_id,
            buf: BytesMut::with_capacity(COMMIT_BUF_CHUNK),
            pending: None,
            last_housekeeping: Instant::now(),
        }
    }

    pub fn run(mut self) {
        let tick = self
            .shared
            .config
            .housekeeping_interval
            .max(Duration::from_millis(1));
        loop {
            let request = match self.pending.take() {
                Some(r) => r,
                None => match self.rx.recv_timeout(tick) {
                    Ok(r) => r,
                    Err(RecvTimeoutError::Timeout) => {
                        self.housekeeping();
                        continue;
                    }
                    Err(RecvTimeoutError::Disconnected) => break,
                },
            };
            match request {
                Request::Append(first) => {
                    let group = self.gather(first);
                    self.commit_appends(group);
                }
                Request::Control { target, op, reply } => {
                    let result = self.control(target, op);
                    let _ = reply.send(result);
                }
                Request::ControlBatch { ops, reply } => {
                    let results = self.control_batch(ops);
                    let _ = reply.send(results);
                }
                Request::Flush { reply } => {
                    let msg = SyncMsg::Flush {
                        file: self.file.clone(),
                        end: self.written,
                        reply,
                    };
                    if let Err(crossbeam_channel::SendError(SyncMsg::Flush { reply, .. })) =
                        self.sync_tx.send(msg)
                    {
                        let _ = reply.send(Err(LogError::Closed("the syncer has stopped".into())));
                    }
                }
                Request::Shutdown => break,
            }
            if self.last_housekeeping.elapsed() >= tick {
                self.housekeeping();
            }
        }
        self.barrier();
        let (tx, _) = crossbeam_channel::bounded(1);
        drop(std::mem::replace(&mut self.sync_tx, tx));
        if let Some(handle) = self.syncer.take() {
            let _ = handle.join();
        }
        info!(
            file = self.seq,
            position = self.written,
            "journal committer stopped"
        );
    }

    /// Takes every append already queued (and, with a commit delay, those
    /// arriving within it) up to the commit size.
    fn gather(&mut self, first: AppendRequest) -> Vec<AppendRequest> {
        let config = &self.shared.config;
        let deadline = Instant::now() + config.max_commit_delay;
        let mut bytes = first.batches.len();
        let mut group = vec![first];
        while bytes < config.max_commit_bytes {
            let next = match self.rx.try_recv() {
                Ok(r) => r,
                Err(TryRecvError::Disconnected) => break,
                Err(TryRecvError::Empty) => {
                    let now = Instant::now();
                    if now >= deadline {
                        break;
                    }
                    match self.rx.recv_timeout(deadline - now) {
                        Ok(r) => r,
                        Err(_) => break,
                    }
                }
            };
            match next {
                Request::Append(a) => {
                    bytes += a.batches.len();
                    group.push(a);
                }
                other => {
                    self.pending = Some(other);
                    break;
                }
            }
        }
        group
    }

    fn commit_appends(&mut self, mut requests: Vec<AppendRequest>) {
        if let Some(reason) = self.shared.failure() {
            for r in requests {
                let _ = r.reply.send(Err(LogError::Closed(reason.clone())));
            }
            return;
        }
        self.buf.clear();
        // Room for the whole commit (frame headers and seal frames included),
        // so laying it out does not reallocate; a short estimate only costs a copy.
        let needed: usize = requests.iter().map(|r| r.batches.len() + 256).sum();
        if self.buf.capacity() < needed {
            self.buf.reserve(needed.max(COMMIT_BUF_CHUNK));
        }
        let target = Target {
            seq: self.seq,
            position: self.written,
            now_ms: self.shared.clock.now_ms(),
        };
        let mut laid = layout::lay_out_commit(&mut self.buf, &target, &mut requests, &self.views);
        metrics::COMMIT_APPENDS.observe(requests.len() as f64);
        let durable = requests.iter().any(|r| r.durable);
        let written = if self.buf.is_empty() {
            Ok(())
        } else {
            self.write_buf()
        };
        let replies: Vec<_> = requests
            .into_iter()
            .map(|r| r.reply)
            .zip(laid.outcomes)
            .collect();
        match written {
            Ok(()) => {
                if self.shared.config.tail_cache_bytes > 0 {
                    attach_frames(&mut laid.events, self.buf.split().freeze(), target.position);
                }
                self.views.extend(laid.views);
                self.footer.extend(laid.footer);
                let commit = Commit {
                    file: self.file.clone(),
                    end: self.written,
                    durable,
                    events: laid.events,
                    replies,
                };
                if let Err(crossbeam_channel::SendError(SyncMsg::Commit(c))) =
                    self.sync_tx.send(SyncMsg::Commit(commit))
                {
                    for (reply, _) in c.replies {
                        let _ = reply.send(Err(LogError::Closed("the syncer has stopped".into())));
                    }
                }
            }
            Err(e) => {
                for (reply, outcome) in replies {
                    let _ = reply.send(outcome.and(Err(clone_error(&e))));
                }
            }
        }
        self.roll_if_full();
    }

    /// Writes the commit buffer at the end of the current file. On failure
    /// the file is cut back so the next commit starts where this one did.
    fn write_buf(&mut self) -> Result<()> {
        let started = Instant::now();
        let wrote = self.file.write_all_at(&self.buf, self.written);
        metrics::WRITE_SECONDS.observe(started.elapsed().as_secs_f64());
        if let Err(e) = wrote {
            if let Err(cut) = self.file.set_len(self.written) {
                let reason =
                    format!("could not cut the journal back after a failed write ({e}): {cut}");
                self.shared.fail(reason.clone());
                return Err(LogError::Closed(reason));
            }
            let err = LogError::io(self.shared.files.path(self.seq), e);
            if matches!(err, LogError::DiskFull) {
                metrics::DISK_FULL.inc();
                warn!("journal write failed: disk full");
            }
            return Err(err);
        }
        metrics::COMMITS.inc();
        metrics::COMMIT_BYTES.observe(self.buf.len() as f64);
        self.written += self.buf.len() as u64;
        self.shared
            .positions
            .written
            .store(self.written, Ordering::Release);
        Ok(())
    }

    /// Writes the buffer and makes it durable right here: for metadata
    /// changes, run only with nothing in flight.
    fn write_durably(&mut self) -> Result<()> {
        self.write_buf()?;
        let started = Instant::now();
        let synced = self.file.sync_data();
        metrics::FSYNC_SECONDS.observe(started.elapsed().as_secs_f64());
        if let Err(e) = synced {
            let reason = format!("fdatasync of the journal failed: {e}");
            self.shared.fail(reason.clone());
            return Err(LogError::Closed(reason));
        }
        self.shared
            .positions
            .flushed
            .store(self.written, Ordering::Release);
        Ok(())
    }

    /// Waits until the syncer has published every commit sent so far; the
    /// published state is then the written state.
    fn barrier(&mut self) {
        let (done, wait) = crossbeam_channel::bounded(1);
        if self.sync_tx.send(SyncMsg::Barrier(done)).is_ok() {
            let _ = wait.recv();
        }
        self.views.clear();
    }

    fn control(&mut self, target: ControlTarget, op: ControlOp) -> Result<()> {
        if let Some(reason) = self.shared.failure() {
            return Err(LogError::Closed(reason));
        }
        self.barrier();
        let (id, existing) = match target {
            ControlTarget::New { key } => {
                if self.shared.partitions.read().contains_key(&key) {
                    return Err(LogError::PartitionExists(key));
                }
                (self.next_partition_id, None)
            }
            ControlTarget::Existing(p) => {
                p.check_live()?;
                (p.id, Some(p))
            }
        };
        // Ops whose exact value only the committer knows are completed here.
        let op = match (&existing, op) {
            (Some(p), ControlOp::Seal { .. }) => {
                let state = p.state.read();
                if state.meta.active().end_offset == state.meta.active().base_offset {
                    return Ok(()); // nothing to seal
                }
                ControlOp::Seal {
                    offset: state.meta.next_offset,
                }
            }
            (Some(p), ControlOp::BeginEpoch { epoch, .. }) => {
                let state = p.state.read();
                if state.meta.last_epoch().is_some_and(|e| e >= epoch) {
                    return Ok(()); // begun already (or superseded)
                }
                ControlOp::BeginEpoch {
                    epoch,
                    offset: state.meta.next_offset,
                }
            }
            (Some(p), ControlOp::ReleaseLocal { offset }) => {
                let state = p.state.read();
                let offset = offset.min(state.releasable_up_to());
                if offset <= state.meta.local_start {
                    return Ok(());
                }
                ControlOp::ReleaseLocal { offset }
            }
            (_, op) => op,
        };
        if let Some(p) = &existing {
            p.state
                .read()
                .validate(&op)
                .map_err(LogError::InvalidOperation)?;
        }
        let op = match (&existing, op) {
            (Some(p), ControlOp::Truncate { offset, .. }) => ControlOp::Truncate {
                offset,
                cut_segment: crate::read::plan_truncation(&self.shared.files, p, offset)?,
            },
            (_, op) => op,
        };
        self.buf.clear();
        frame::encode_control(&mut self.buf, id, &op);
        self.write_durably()?;
        match (existing, op) {
            (
                None,
                ControlOp::Create {
                    key,
                    config,
                    start_offset,
                    log_start,
                },
            ) => {
                let meta =
                    PartitionMeta::starting_at(id, key.clone(), config, log_start, start_offset);
                let partition = PartitionShared::new(PartitionState::new(meta));
                self.next_partition_id += 1;
                self.by_id.insert(id, partition.clone());
                self.shared.partitions.write().insert(key, partition);
            }
            (Some(p), ControlOp::Delete) => {
                p.deleted.store(true, Ordering::Release);
                p.state.write().tail.clear();
                self.by_id.remove(&p.id);
                self.shared.partitions.write().remove(&p.key);
                self.reclaim_files();
            }
            (Some(p), op) => {
                let reclaims = matches!(
                    op,
                    ControlOp::AdvanceStart { .. } | ControlOp::ReleaseLocal { .. }
                );
                syncer::publish(&self.shared.tail_cache, vec![(p, vec![Event::Control(op)])]);
                if reclaims {
                    self.reclaim_files();
                }
            }
            (None, _) => {}
        }
        self.roll_if_full();
        Ok(())
    }

    /// Offload bookkeeping (segments offloaded, local copies released) for
    /// many partitions at once: one barrier, one write and one fdatasync
    /// instead of one each, so appends wait behind the committer once per
    /// batch rather than once per segment.
    fn control_batch(&mut self, ops: Vec<(Arc<PartitionShared>, ControlOp)>) -> Vec<Result<()>> {
        // Marks first, then releases: a release can only let go of what is
        // already marked, including segments marked in this batch.
        let (marks, rest): (Vec<_>, Vec<_>) = ops
            .into_iter()
            .enumerate()
            .partition(|(_, (_, op))| matches!(op, ControlOp::Offloaded { .. }));
        let mut results: Vec<(usize, Result<()>)> = Vec::new();
        for group in [marks, rest] {
            let (indices, ops): (Vec<usize>, Vec<_>) = group.into_iter().unzip();
            results.extend(indices.into_iter().zip(self.control_group(ops)));
        }
        results.sort_by_key(|(i, _)| *i);
        results.into_iter().map(|(_, r)| r).collect()
    }

    /// One write and one fdatasync for `ops`.
    fn control_group(&mut self, ops: Vec<(Arc<PartitionShared>, ControlOp)>) -> Vec<Result<()>> {
        if ops.is_empty() {
            return Vec::new();
        }
        if let Some(reason) = self.shared.failure() {
            return ops
                .iter()
                .map(|_| Err(LogError::Closed(reason.clone())))
                .collect();
        }
        self.barrier();
        self.buf.clear();
        let mut results = Vec::with_capacity(ops.len());
        let mut written = Vec::new();
        for (p, op) in ops {
            let prepared = (|| -> Result<Option<ControlOp>> {
                p.check_live()?;
                let op = match op {
                    ControlOp::ReleaseLocal { offset } => {
                        let state = p.state.read();
                        let offset = offset.min(state.releasable_up_to());
                        if offset <= state.meta.local_start {
                            return Ok(None);
                        }
                        ControlOp::ReleaseLocal { offset }
                    }
                    op @ ControlOp::Offloaded { .. } => op,
                    other => {
                        return Err(LogError::InvalidOperation(format!(
                            "{other:?} cannot be batched"
                        )));
                    }
                };
                p.state
                    .read()
                    .validate(&op)
                    .map_err(LogError::InvalidOperation)?;
                Ok(Some(op))
            })();
            match prepared {
                Ok(Some(op)) => {
                    frame::encode_control(&mut self.buf, p.id, &op);
                    results.push(Ok(()));
                    written.push((results.len() - 1, p, op));
                }
                Ok(None) => results.push(Ok(())),
                Err(e) => results.push(Err(e)),
            }
        }
        if written.is_empty() {
            return results;
        }
        if let Err(e) = self.write_durably() {
            for (i, _, _) in &written {
                results[*i] = Err(LogError::Closed(e.to_string()));
            }
            return results;
        }
        let mut reclaims = false;
        let mut events = Vec::with_capacity(written.len());
        for (_, p, op) in written {
            reclaims |= matches!(op, ControlOp::ReleaseLocal { .. });
            events.push((p, vec![Event::Control(op)]));
        }
        syncer::publish(&self.shared.tail_cache, events);
        if reclaims {
            self.reclaim_files();
        }
        self.roll_if_full();
        results
    }

    /// Periodic work: seal segments that aged out, delete journal files
    /// nothing refers to.
    fn housekeeping(&mut self) {
        self.last_housekeeping = Instant::now();
        if self.shared.failure().is_some() {
            return;
        }
        if let Err(e) = self.seal_aged_segments() {
            warn!(error = %e, "sealing aged segments failed");
        }
        self.reclaim_files();
    }

    fn aged_segments(&self) -> Vec<(Arc<PartitionShared>, ControlOp)> {
        let now = self.shared.clock.now_ms();
        self.by_id
            .values()
            .filter_map(|p| {
                let state = p.state.read();
                let active = state.meta.active();
                let aged = active
                    .first_append_ms
                    .is_some_and(|first| now.saturating_sub(first) >= state.meta.config.segment_ms);
                (aged && active.end_offset > active.base_offset).then(|| {
                    let op = ControlOp::Seal {
                        offset: state.meta.next_offset,
                    };
                    (p.clone(), op)
                })
            })
            .collect()
    }

    fn seal_aged_segments(&mut self) -> Result<()> {
        if self.aged_segments().is_empty() {
            return Ok(());
        }
        self.barrier();
        let due = self.aged_segments();
        self.buf.clear();
        for (p, op) in &due {
            frame::encode_control(&mut self.buf, p.id, op);
        }
        self.write_durably()?;
        syncer::publish(
            &self.shared.tail_cache,
            due.into_iter()
                .map(|(p, op)| (p, vec![Event::Control(op)]))
                .collect(),
        );
        self.roll_if_full();
        Ok(())
    }

    /// Deletes journal files older than every run still in use. The current
    /// file always stays: its snapshot is where recovery starts. Runs of
    /// commits not yet published are all in the current file.
    fn reclaim_files(&mut self) {
        let oldest_needed = self
            .by_id
            .values()
            .filter_map(|p| p.state.read().runs.front().map(|r| r.file))
            .min()
            .unwrap_or(self.seq)
            .min(self.seq);
        for seq in self.shared.files.seqs() {
            if seq >= oldest_needed {
                break;
            }
            match self.shared.files.remove(seq) {
                Ok(()) => info!(file = seq, "deleted journal file no longer needed"),
                Err(e) => warn!(file = seq, error = %e, "could not delete journal file"),
            }
        }
    }

    fn roll_if_full(&mut self) {
        if self.written < self.shared.config.journal_file_bytes || self.shared.failure().is_some() {
            return;
        }
        if let Err(e) = self.roll() {
            // Keep appending to the current file; the roll is retried after the next commit.
            warn!(error = %e, "could not start a new journal file");
        }
    }

    /// Starts the next journal file (header and snapshot first, made durable),
    /// then closes the current one with its footer.
    fn roll(&mut self) -> Result<()> {
        self.barrier();
        let seq = self.seq + 1;
        let (file, head_len) = create_journal_file(self.shared.files.dir(), seq, &self.snapshot())?;
        let file = Arc::new(file);
        let mut footer = Vec::new();
        frame::encode_footer(&mut footer, self.written, &self.footer);
        let closed = self
            .file
            .write_all_at(&footer, self.written)
            .and_then(|()| self.file.sync_data());
        if let Err(e) = closed {
            // The footer is only an index: recovery scans a file without one.
            // Cut a partial footer off so the scan ends at the last data frame.
            warn!(file = self.seq, error = %e, "could not write the journal file footer");
            let _ = self.file.set_len(self.written);
        }
        self.shared.files.insert(seq, file.clone());
        self.file = file;
        self.seq = seq;
        self.written = head_len;
        self.footer.clear();
        let positions = &self.shared.positions;
        positions.file.store(seq, Ordering::Release);
        positions.written.store(head_len, Ordering::Release);
        positions.flushed.store(head_len, Ordering::Release);
        Ok(())
    }

    fn snapshot(&self) -> Snapshot {
        let mut partitions: Vec<PartitionMeta> = self
            .by_id
            .values()
            .map(|p| p.state.read().meta.clone())
            .collect();
        partitions.sort_by_key(|m| m.id);
        Snapshot {
            next_partition_id: self.next_partition_id,
            partitions,
        }
    }
}

/// Gives each run of a written commit the slice of `commit` holding its
/// frame; `commit` starts at file position `start`.
fn attach_frames(events: &mut PartitionEvents, commit: bytes::Bytes, start: u64) {
    for (_, events) in events {
        for event in events {
            if let Event::Run(r) = event {
                let from = (r.run.position - start) as usize;
                let to = from + r.run.frame_len as usize;
                r.frame = commit.get(from..to).map(|_| commit.slice(from..to));
            }
        }
    }
}

/// The error of a failed commit, for each of its appends.
fn clone_error(e: &LogError) -> LogError {
    match e {
        LogError::DiskFull => LogError::DiskFull,
        LogError::Closed(r) => LogError::Closed(r.clone()),
        LogError::Io { path, source } => LogError::Io {
            path: path.clone(),
            source: std::io::Error::new(source.kind(), source.to_string()),
        },
        other => LogError::Closed(other.to_string()),
    }
}
