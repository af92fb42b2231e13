//! The committer: one thread that owns the journal's write end.
//!
//! Appends from every partition queue up while the previous commit's
//! fdatasync runs; the committer then takes them all, assigns offsets, lays
//! each partition's batches out contiguously (one frame, one index entry per
//! partition per commit), writes the lot with one `pwrite` and makes it
//! durable with one `fdatasync`. Only then are the new runs published to
//! readers and the appends acknowledged. Offsets are assigned here, on one
//! thread, so a failed write (a full disk) leaves no gap: nothing is
//! published, the file is cut back to where it was, and the appends fail.
//!
//! It is a plain thread, not a task: `fdatasync` blocks for milliseconds and
//! must never sit on the async runtime's threads.

use std::collections::HashMap;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, TryRecvError};
use tracing::{error, info, warn};

use crate::batch::{BatchHeader, set_base_offset, set_partition_leader_epoch};
use crate::config::Durability;
use crate::error::{LogError, Result};
use crate::frame::{
    self, BATCHES_PAYLOAD_START, ControlOp, FooterRun, FrameKind, Snapshot, begin_frame, finish_frame,
};
use crate::journal::{AppendMode, AppendRequest, Appended, ControlTarget, PartitionShared, Request, Shared};
use crate::metrics;
use crate::recovery::create_journal_file;
use crate::state::{AppendedRun, EpochStart, PartitionMeta, PartitionState, Run};

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
    file: Arc<File>,
    seq: u64,
    written: u64,
    flushed: u64,
    /// Runs written to the current file, for its footer.
    footer: Vec<FooterRun>,
    by_id: HashMap<u64, Arc<PartitionShared>>,
    next_partition_id: u64,
    buf: Vec<u8>,
    /// A non-append request met while gathering a commit, handled right after it.
    pending: Option<Request>,
    /// Set after an fdatasync failure: what reached the disk is unknowable, so stop.
    failed: Option<String>,
    last_housekeeping: Instant,
    last_flush: Instant,
}

/// A `Batches` frame being filled for one partition within a commit.
struct OpenFrame {
    start: usize,
    base_offset: u64,
    max_timestamp: i64,
    batch_bytes: u64,
    epoch_changes: Vec<EpochStart>,
}

enum Event {
    Run(AppendedRun),
    Control(ControlOp),
}

impl Committer {
    pub fn new(shared: Arc<Shared>, rx: Receiver<Request>, start: CommitterStart) -> Self {
        shared.positions.file.store(start.seq, Ordering::Release);
        shared.positions.written.store(start.written, Ordering::Release);
        shared.positions.flushed.store(start.written, Ordering::Release);
        Committer {
            shared,
            rx,
            file: start.file,
            seq: start.seq,
            written: start.written,
            flushed: start.written,
            footer: start.footer,
            by_id: start.by_id,
            next_partition_id: start.next_partition_id,
            buf: Vec::with_capacity(1 << 20),
            pending: None,
            failed: None,
            last_housekeeping: Instant::now(),
            last_flush: Instant::now(),
        }
    }

    pub fn run(mut self) {
        let tick = self.shared.config.housekeeping_interval.max(Duration::from_millis(1));
        loop {
            let request = match self.pending.take() {
                Some(r) => r,
                None => match self.rx.recv_timeout(self.next_wakeup(tick)) {
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
                Request::Flush { reply } => {
                    let result = self.sync();
                    let _ = reply.send(result);
                }
                Request::Shutdown => break,
            }
            if self.last_housekeeping.elapsed() >= tick {
                self.housekeeping();
            }
        }
        if let Err(e) = self.sync() {
            warn!(error = %e, "final journal flush failed");
        }
        info!(file = self.seq, position = self.written, "journal committer stopped");
    }

    fn next_wakeup(&self, tick: Duration) -> Duration {
        if self.written > self.flushed {
            let due = self.shared.config.flush_interval.saturating_sub(self.last_flush.elapsed());
            return due.min(tick).max(Duration::from_millis(1));
        }
        tick
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
        if let Some(reason) = &self.failed {
            for r in requests {
                let _ = r.reply.send(Err(LogError::Closed(reason.clone())));
            }
            return;
        }
        let now = self.shared.clock.now_ms();
        self.buf.clear();
        let mut outcomes: Vec<Option<Result<Appended>>> = (0..requests.len()).map(|_| None).collect();
        let mut events: Vec<(Arc<PartitionShared>, Vec<Event>)> = Vec::new();
        for (partition, indices) in group_by_partition(&requests) {
            let partition_events = self.lay_out(&partition, &indices, &mut requests, &mut outcomes, now);
            if !partition_events.is_empty() {
                events.push((partition, partition_events));
            }
        }
        metrics::COMMIT_APPENDS.observe(requests.len() as f64);
        let durable = requests.iter().any(|r| r.durable);
        let result = if self.buf.is_empty() { Ok(()) } else { self.write_commit(durable) };
        match result {
            Ok(()) => self.publish(events),
            Err(e) => {
                for outcome in outcomes.iter_mut() {
                    if matches!(outcome, Some(Ok(_))) {
                        *outcome = Some(Err(clone_error(&e)));
                    }
                }
            }
        }
        for (request, outcome) in requests.into_iter().zip(outcomes) {
            let outcome = outcome.unwrap_or_else(|| Err(LogError::Closed("append was not processed".into())));
            let _ = request.reply.send(outcome);
        }
        self.roll_if_full();
    }

    /// Assigns offsets to one partition's appends of this commit and copies
    /// them into the commit buffer, sealing the active segment where it is due.
    fn lay_out(
        &mut self,
        partition: &Arc<PartitionShared>,
        indices: &[usize],
        requests: &mut [AppendRequest],
        outcomes: &mut [Option<Result<Appended>>],
        now: i64,
    ) -> Vec<Event> {
        let mut events = Vec::new();
        if let Err(e) = partition.check_live() {
            for &i in indices {
                outcomes[i] = Some(Err(clone_error(&e)));
            }
            return events;
        }
        let (config, mut next, mut last_epoch, mut segment_bytes, mut segment_first) = {
            let state = partition.state.read();
            let active = state.meta.active();
            (
                state.meta.config,
                state.meta.next_offset,
                state.meta.last_epoch(),
                active.bytes,
                active.first_append_ms,
            )
        };
        let mut open: Option<OpenFrame> = None;
        for &i in indices {
            let request = &mut requests[i];
            let epoch = match check_append(request.mode, next, last_epoch, &request.headers) {
                Ok(epoch) => epoch,
                Err(e) => {
                    outcomes[i] = Some(Err(e));
                    continue;
                }
            };
            let due_by_size = segment_bytes >= config.segment_bytes;
            let due_by_age = segment_first.is_some_and(|first| now.saturating_sub(first) >= config.segment_ms);
            if segment_bytes > 0 && (due_by_size || due_by_age) {
                if let Some(f) = open.take() {
                    events.push(Event::Run(self.close_frame(f, next, now)));
                }
                let op = ControlOp::Seal { offset: next };
                frame::encode_control(&mut self.buf, partition.id, &op);
                events.push(Event::Control(op));
                segment_bytes = 0;
                segment_first = None;
            }
            let f = open.get_or_insert_with(|| OpenFrame {
                start: open_batches_frame(&mut self.buf, partition.id, now),
                base_offset: next,
                max_timestamp: -1,
                batch_bytes: 0,
                epoch_changes: Vec::new(),
            });
            let base = next;
            let mut max_timestamp = -1;
            let mut at = 0usize;
            for h in &request.headers {
                let len = h.total_len();
                let batch_epoch = match epoch {
                    Some(e) => {
                        let slice = &mut request.batches[at..at + len];
                        // Lengths were verified before queueing, so these cannot fail.
                        let _ = set_base_offset(slice, next as i64);
                        let _ = set_partition_leader_epoch(slice, e);
                        next += h.last_offset_delta as u64 + 1;
                        e
                    }
                    None => {
                        next = h.next_offset() as u64;
                        h.partition_leader_epoch
                    }
                };
                if last_epoch != Some(batch_epoch) {
                    f.epoch_changes.push(EpochStart {
                        epoch: batch_epoch,
                        start_offset: next - (h.last_offset_delta as u64 + 1),
                    });
                    last_epoch = Some(batch_epoch);
                }
                max_timestamp = max_timestamp.max(h.max_timestamp);
                at += len;
            }
            self.buf.extend_from_slice(&request.batches);
            f.max_timestamp = f.max_timestamp.max(max_timestamp);
            f.batch_bytes += request.batches.len() as u64;
            segment_bytes += request.batches.len() as u64;
            segment_first.get_or_insert(now);
            outcomes[i] = Some(Ok(Appended {
                base_offset: base,
                next_offset: next,
                max_timestamp,
            }));
        }
        if let Some(f) = open.take() {
            events.push(Event::Run(self.close_frame(f, next, now)));
        }
        events
    }

    fn close_frame(&mut self, f: OpenFrame, next_offset: u64, now: i64) -> AppendedRun {
        finish_frame(&mut self.buf, f.start);
        let frame_len = (self.buf.len() - f.start) as u32;
        AppendedRun {
            run: Run {
                base_offset: f.base_offset,
                next_offset,
                max_timestamp: f.max_timestamp,
                cum_max_timestamp: f.max_timestamp,
                file: self.seq,
                position: self.written + f.start as u64,
                frame_len,
            },
            append_ms: now,
            batch_bytes: f.batch_bytes,
            epoch_changes: f.epoch_changes,
        }
    }

    /// Writes the commit buffer at the end of the current file and, when
    /// `durable`, fdatasyncs it. On failure the file is cut back so the next
    /// commit starts where this one did.
    fn write_commit(&mut self, durable: bool) -> Result<()> {
        let started = Instant::now();
        let wrote = self.file.write_all_at(&self.buf, self.written);
        metrics::WRITE_SECONDS.observe(started.elapsed().as_secs_f64());
        if let Err(e) = wrote {
            return Err(self.undo_write(e));
        }
        if durable {
            let started = Instant::now();
            let synced = self.file.sync_data();
            metrics::FSYNC_SECONDS.observe(started.elapsed().as_secs_f64());
            if let Err(e) = synced {
                if e.raw_os_error() == Some(libc::ENOSPC) {
                    return Err(self.undo_write(e));
                }
                return Err(self.fail(format!("fdatasync of the journal failed: {e}")));
            }
        }
        metrics::COMMITS.inc();
        metrics::COMMIT_BYTES.observe(self.buf.len() as f64);
        self.written += self.buf.len() as u64;
        self.shared.positions.written.store(self.written, Ordering::Release);
        if durable {
            self.mark_flushed();
        }
        Ok(())
    }

    fn undo_write(&mut self, e: std::io::Error) -> LogError {
        if let Err(cut) = self.file.set_len(self.written) {
            return self.fail(format!("could not cut the journal back after a failed write ({e}): {cut}"));
        }
        let err = LogError::io(self.shared.files.path(self.seq), e);
        if matches!(err, LogError::DiskFull) {
            metrics::DISK_FULL.inc();
            warn!("journal write failed: disk full");
        }
        err
    }

    fn fail(&mut self, reason: String) -> LogError {
        error!(%reason, "journal failed; no further writes are accepted until it is reopened");
        self.failed = Some(reason.clone());
        LogError::Closed(reason)
    }

    fn mark_flushed(&mut self) {
        self.flushed = self.written;
        self.last_flush = Instant::now();
        self.shared.positions.flushed.store(self.flushed, Ordering::Release);
    }

    fn sync(&mut self) -> Result<()> {
        if let Some(reason) = &self.failed {
            return Err(LogError::Closed(reason.clone()));
        }
        if self.flushed < self.written {
            let started = Instant::now();
            let synced = self.file.sync_data();
            metrics::FSYNC_SECONDS.observe(started.elapsed().as_secs_f64());
            if let Err(e) = synced {
                return Err(self.fail(format!("fdatasync of the journal failed: {e}")));
            }
            self.mark_flushed();
        }
        Ok(())
    }

    /// Makes committed changes visible to readers, in journal order.
    fn publish(&mut self, events: Vec<(Arc<PartitionShared>, Vec<Event>)>) {
        for (partition, events) in events {
            let mut state = partition.state.write();
            for event in events {
                let applied = match event {
                    Event::Run(run) => {
                        self.footer.push(FooterRun {
                            partition: partition.id,
                            base_offset: run.run.base_offset,
                            next_offset: run.run.next_offset,
                            max_timestamp: run.run.max_timestamp,
                            position: run.run.position,
                            frame_len: run.run.frame_len,
                        });
                        metrics::APPENDED_BYTES.inc_by(run.batch_bytes);
                        state.apply_run(run)
                    }
                    Event::Control(op) => state.apply_control(&op),
                };
                if let Err(e) = applied {
                    // The committer computed these from the same state: a bug, not bad input.
                    error!(partition = %partition.key, error = %e, "committed change did not apply");
                }
            }
            partition.end.send_replace(state.meta.next_offset);
        }
    }

    fn control(&mut self, target: ControlTarget, op: ControlOp) -> Result<()> {
        if let Some(reason) = &self.failed {
            return Err(LogError::Closed(reason.clone()));
        }
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
                ControlOp::Seal { offset: state.meta.next_offset }
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
            p.state.read().validate(&op).map_err(LogError::InvalidOperation)?;
        }
        self.buf.clear();
        frame::encode_control(&mut self.buf, id, &op);
        self.write_commit(true)?;
        match (existing, &op) {
            (None, ControlOp::Create { key, config }) => {
                let meta = PartitionMeta::new(id, key.clone(), *config);
                let partition = PartitionShared::new(PartitionState::new(meta));
                self.next_partition_id += 1;
                self.by_id.insert(id, partition.clone());
                self.shared.partitions.write().insert(key.clone(), partition);
            }
            (Some(p), ControlOp::Delete) => {
                p.deleted.store(true, Ordering::Release);
                self.by_id.remove(&p.id);
                self.shared.partitions.write().remove(&p.key);
                self.reclaim_files();
            }
            (Some(p), op) => {
                let mut state = p.state.write();
                if let Err(e) = state.apply_control(op) {
                    error!(partition = %p.key, error = %e, "validated change did not apply");
                }
                p.end.send_replace(state.meta.next_offset);
                drop(state);
                if matches!(op, ControlOp::AdvanceStart { .. } | ControlOp::ReleaseLocal { .. }) {
                    self.reclaim_files();
                }
            }
            (None, _) => {}
        }
        self.roll_if_full();
        Ok(())
    }

    /// Periodic work: seal segments that aged out, flush in write mode,
    /// delete journal files nothing refers to.
    fn housekeeping(&mut self) {
        self.last_housekeeping = Instant::now();
        if self.failed.is_some() {
            return;
        }
        if let Err(e) = self.seal_aged_segments() {
            warn!(error = %e, "sealing aged segments failed");
        }
        let durability = self.shared.config.durability;
        if self.written > self.flushed
            && (durability == Durability::Fsync || self.last_flush.elapsed() >= self.shared.config.flush_interval)
            && let Err(e) = self.sync()
        {
            warn!(error = %e, "periodic journal flush failed");
        }
        self.reclaim_files();
    }

    fn seal_aged_segments(&mut self) -> Result<()> {
        let now = self.shared.clock.now_ms();
        let mut due = Vec::new();
        self.buf.clear();
        for p in self.by_id.values() {
            let state = p.state.read();
            let active = state.meta.active();
            let aged = active
                .first_append_ms
                .is_some_and(|first| now.saturating_sub(first) >= state.meta.config.segment_ms);
            if aged && active.end_offset > active.base_offset {
                let op = ControlOp::Seal { offset: state.meta.next_offset };
                frame::encode_control(&mut self.buf, p.id, &op);
                due.push((p.clone(), op));
            }
        }
        if due.is_empty() {
            return Ok(());
        }
        self.write_commit(true)?;
        let events = due.into_iter().map(|(p, op)| (p, vec![Event::Control(op)])).collect();
        self.publish(events);
        self.roll_if_full();
        Ok(())
    }

    /// Deletes journal files older than every run still in use. The current
    /// file always stays: its snapshot is where recovery starts.
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
        if self.written < self.shared.config.journal_file_bytes || self.failed.is_some() {
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
            // Recovery scans a file without a footer instead; nothing is lost.
            warn!(file = self.seq, error = %e, "could not write the journal file footer");
        }
        self.shared.files.insert(seq, file.clone());
        self.file = file;
        self.seq = seq;
        self.written = head_len;
        self.footer.clear();
        self.shared.positions.file.store(seq, Ordering::Release);
        self.shared.positions.written.store(self.written, Ordering::Release);
        self.mark_flushed();
        Ok(())
    }

    fn snapshot(&self) -> Snapshot {
        let mut partitions: Vec<PartitionMeta> = self.by_id.values().map(|p| p.state.read().meta.clone()).collect();
        partitions.sort_by_key(|m| m.id);
        Snapshot {
            next_partition_id: self.next_partition_id,
            partitions,
        }
    }
}

fn open_batches_frame(buf: &mut Vec<u8>, partition: u64, now: i64) -> usize {
    let start = begin_frame(buf, FrameKind::Batches, partition);
    buf.extend_from_slice(&now.to_be_bytes());
    debug_assert_eq!(buf.len() - start, BATCHES_PAYLOAD_START);
    start
}

/// Groups request indices by partition, keeping each partition's order.
fn group_by_partition(requests: &[AppendRequest]) -> Vec<(Arc<PartitionShared>, Vec<usize>)> {
    let mut groups: Vec<(Arc<PartitionShared>, Vec<usize>)> = Vec::new();
    let mut index: HashMap<u64, usize> = HashMap::new();
    for (i, r) in requests.iter().enumerate() {
        match index.get(&r.partition.id) {
            Some(&g) => groups[g].1.push(i),
            None => {
                index.insert(r.partition.id, groups.len());
                groups.push((r.partition.clone(), vec![i]));
            }
        }
    }
    groups
}

/// Checks an append against the partition's end; returns the epoch the
/// log stamps on leader appends (`None` for replicated batches, which keep theirs).
fn check_append(
    mode: AppendMode,
    next_offset: u64,
    last_epoch: Option<i32>,
    headers: &[BatchHeader],
) -> Result<Option<i32>> {
    match mode {
        AppendMode::Leader { epoch, expected_offset } => {
            if let Some(expected) = expected_offset
                && expected != next_offset
            {
                return Err(LogError::OffsetMismatch {
                    expected,
                    actual: next_offset,
                });
            }
            let current = last_epoch.unwrap_or(0);
            let epoch = epoch.unwrap_or(current);
            if epoch < current {
                return Err(LogError::StaleEpoch { got: epoch, current });
            }
            Ok(Some(epoch))
        }
        AppendMode::Replica => {
            let first = headers.first().map_or(0, |h| h.base_offset);
            if u64::try_from(first).ok() != Some(next_offset) {
                return Err(LogError::NonContiguous {
                    expected: next_offset,
                    got: first.max(0) as u64,
                });
            }
            if let (Some(current), Some(min)) = (last_epoch, headers.iter().map(|h| h.partition_leader_epoch).min())
                && min < current
            {
                return Err(LogError::StaleEpoch { got: min, current });
            }
            Ok(None)
        }
    }
}

/// Errors are reported to every append of a failed commit.
fn clone_error(e: &LogError) -> LogError {
    match e {
        LogError::DiskFull => LogError::DiskFull,
        LogError::Closed(r) => LogError::Closed(r.clone()),
        LogError::UnknownPartition(k) => LogError::UnknownPartition(k.clone()),
        LogError::Io { path, source } => LogError::Io {
            path: path.clone(),
            source: std::io::Error::new(source.kind(), source.to_string()),
        },
        other => LogError::InvalidOperation(other.to_string()),
    }
}
