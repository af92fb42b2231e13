//! The syncer: the second stage of the journal's write path.
//!
//! The committer writes commits to the OS and hands them here; the syncer
//! makes them durable with one `fdatasync` for everything written since its
//! last one, then publishes their runs to readers and acknowledges their
//! appends, in journal order. While it waits on the disk, the committer is
//! already writing the next commits, so "written" runs ahead of "flushed"
//! and neither stage idles while the other works.
//!
//! An `fdatasync` that fails leaves the journal's durable contents unknowable
//! (the kernel may have dropped the dirty pages), so the log stops accepting
//! writes until it is reopened and recovered.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError};
use tokio::sync::oneshot;
use tracing::error;

use crate::config::Durability;
use crate::error::{LogError, Result};
use crate::frame::ControlOp;
use crate::journal::{Appended, PartitionShared, Shared, TailCache};
use crate::metrics;
use crate::state::AppendedRun;

/// A change to one partition, published once durable.
pub(crate) enum Event {
    Run(AppendedRun),
    Control(ControlOp),
}

pub(crate) type PartitionEvents = Vec<(Arc<PartitionShared>, Vec<Event>)>;

/// Flushed journal bytes handed back to the kernel at a time.
const DROP_PAGES_STEP: u64 = 4 << 20;

/// One written commit on its way to durability.
pub(crate) struct Commit {
    pub file: Arc<File>,
    /// Position in `file` just past this commit.
    pub end: u64,
    /// Some append in it waits for fdatasync.
    pub durable: bool,
    pub events: PartitionEvents,
    pub replies: Vec<(oneshot::Sender<Result<Appended>>, Result<Appended>)>,
}

pub(crate) enum SyncMsg {
    Commit(Commit),
    /// Make everything written so far durable.
    Flush {
        file: Arc<File>,
        end: u64,
        reply: oneshot::Sender<Result<()>>,
    },
    /// Answered once every message sent before it is fully handled.
    Barrier(crossbeam_channel::Sender<()>),
}

pub(crate) struct Syncer {
    shared: Arc<Shared>,
    rx: Receiver<SyncMsg>,
    /// The file and position written but not yet flushed, if any.
    unflushed: Option<(Arc<File>, u64)>,
    /// The file and position up to which flushed pages were handed back.
    advised: Option<(Arc<File>, u64)>,
    last_flush: Instant,
}

impl Syncer {
    pub fn new(shared: Arc<Shared>, rx: Receiver<SyncMsg>) -> Self {
        Syncer {
            shared,
            rx,
            unflushed: None,
            advised: None,
            last_flush: Instant::now(),
        }
    }

    pub fn run(mut self) {
        let interval = self
            .shared
            .config
            .flush_interval
            .max(Duration::from_millis(1));
        loop {
            let first = match self.rx.recv_timeout(interval) {
                Ok(m) => m,
                Err(RecvTimeoutError::Timeout) => {
                    self.flush_if_due(interval);
                    continue;
                }
                Err(RecvTimeoutError::Disconnected) => break,
            };
            let mut group = Vec::new();
            let mut after = None;
            match first {
                SyncMsg::Commit(c) => group.push(c),
                other => after = Some(other),
            }
            // Everything already written joins this fdatasync.
            while after.is_none() {
                match self.rx.try_recv() {
                    Ok(SyncMsg::Commit(c)) => group.push(c),
                    Ok(other) => after = Some(other),
                    Err(_) => break,
                }
            }
            if !group.is_empty() {
                self.complete(group);
            }
            match after {
                Some(SyncMsg::Flush { file, end, reply }) => {
                    self.note_written(&file, end);
                    let _ = reply.send(self.flush());
                }
                Some(SyncMsg::Barrier(done)) => {
                    let _ = done.send(());
                }
                Some(SyncMsg::Commit(_)) | None => {}
            }
            self.flush_if_due(interval);
        }
        if let Err(e) = self.flush() {
            error!(error = %e, "final journal flush failed");
        }
    }

    fn complete(&mut self, group: Vec<Commit>) {
        for c in &group {
            self.note_written(&c.file, c.end);
        }
        let durable = group.iter().any(|c| c.durable);
        let outcome = if durable { self.flush() } else { Ok(()) };
        for commit in group {
            match &outcome {
                Ok(()) => {
                    publish(&self.shared.tail_cache, commit.events);
                    for (reply, result) in commit.replies {
                        let _ = reply.send(result);
                    }
                }
                Err(e) => {
                    for (reply, _) in commit.replies {
                        let _ = reply.send(Err(LogError::Closed(e.to_string())));
                    }
                }
            }
        }
    }

    fn note_written(&mut self, file: &Arc<File>, end: u64) {
        match &mut self.unflushed {
            Some((f, e)) if Arc::ptr_eq(f, file) => *e = (*e).max(end),
            _ => {
                // A new file starts only after a barrier, so the old one is flushed already.
                self.unflushed = Some((file.clone(), end));
            }
        }
    }

    fn flush_if_due(&mut self, interval: Duration) {
        let write_mode = self.shared.config.durability == Durability::Write;
        if self.unflushed.is_some() && (!write_mode || self.last_flush.elapsed() >= interval) {
            let _ = self.flush();
        }
    }

    fn flush(&mut self) -> Result<()> {
        if let Some(reason) = self.shared.failure() {
            return Err(LogError::Closed(reason));
        }
        let Some((file, end)) = self.unflushed.take() else {
            return Ok(());
        };
        let started = Instant::now();
        let synced = file.sync_data();
        metrics::FSYNC_SECONDS.observe(started.elapsed().as_secs_f64());
        if let Err(e) = synced {
            let reason = format!("fdatasync of the journal failed: {e}");
            self.shared.fail(reason.clone());
            return Err(LogError::Closed(reason));
        }
        self.last_flush = Instant::now();
        self.shared.positions.flushed.store(end, Ordering::Release);
        if self.shared.config.drop_flushed_pages {
            self.drop_pages(&file, end);
        }
        Ok(())
    }

    /// Tells the kernel it may drop the page-cache pages of the journal just
    /// made durable (they are clean now). The tail cache serves recent reads
    /// from memory already; without this the page cache keeps growing into
    /// memory never touched before, which on a VM costs a host page fault per
    /// page and halves write throughput, while dropped pages are reused warm.
    fn drop_pages(&mut self, file: &Arc<File>, end: u64) {
        let from = match &self.advised {
            Some((f, at)) if Arc::ptr_eq(f, file) => *at,
            _ => 0,
        };
        // In steps of at least 4 MiB: one call per small commit would cost
        // more than the pages it frees.
        if end < from + DROP_PAGES_STEP {
            return;
        }
        {
            let len = (end - from) as libc::off_t;
            // SAFETY: an advisory call on a file descriptor we own; no memory is involved.
            let rc = unsafe {
                libc::posix_fadvise(
                    file.as_raw_fd(),
                    from as libc::off_t,
                    len,
                    libc::POSIX_FADV_DONTNEED,
                )
            };
            if rc != 0 {
                tracing::debug!(rc, "posix_fadvise(DONTNEED) on the journal failed");
            }
        }
        self.advised = Some((file.clone(), end));
    }
}

/// Makes committed changes visible to readers, in journal order. Frames of
/// new runs go into their partition's tail cache, within `cache`'s budget.
pub(crate) fn publish(cache: &TailCache, events: PartitionEvents) {
    let mut cached = Vec::new();
    for (partition, events) in events {
        let mut state = partition.state.write();
        for event in events {
            let applied = match event {
                Event::Run(mut run) => {
                    metrics::APPENDED_BYTES.inc_by(run.batch_bytes);
                    let frame = run.frame.take();
                    let applied = state.apply_run(run);
                    if let (Ok(()), Some(frame)) = (&applied, frame)
                        && let Some(seq) = cache.admit(frame.len())
                    {
                        cached.push((Arc::downgrade(&partition), seq, frame.len()));
                        state.cache_frame(seq, frame);
                    }
                    applied
                }
                Event::Control(op) => state.apply_control(&op),
            };
            if let Err(e) = applied {
                // The committer computed these from the same state: a bug, not bad input.
                error!(partition = %partition.key, error = %e, "committed change did not apply");
            }
        }
        partition.publish_end(state.meta.next_offset);
    }
    cache.account(cached);
}
