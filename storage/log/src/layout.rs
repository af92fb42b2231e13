//! Laying out one commit: offsets assigned, batches rewritten and copied into
//! the commit buffer, each partition's batches contiguous in one frame.
//! Pure computation over the buffer; the committer does the I/O.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::BytesMut;

use crate::batch::{BatchHeader, set_base_offset, set_partition_leader_epoch};
use crate::config::SegmentConfig;
use crate::error::{LogError, Result};
use crate::frame::{
    self, BATCHES_PAYLOAD_START, ControlOp, FooterRun, FrameKind, begin_frame, finish_frame,
};
use crate::journal::{AppendMode, AppendRequest, Appended, PartitionShared};
use crate::state::{AppendedRun, EpochStart, PartitionMeta, Run};
use crate::syncer::{Event, PartitionEvents};

/// A partition as of everything written (not necessarily durable yet): what
/// the next append must continue from.
#[derive(Debug, Clone, Copy)]
pub(crate) struct WrittenView {
    pub next_offset: u64,
    pub last_epoch: Option<i32>,
    pub segment_bytes: u64,
    pub segment_first_ms: Option<i64>,
    pub config: SegmentConfig,
}

impl WrittenView {
    pub fn of(meta: &PartitionMeta) -> Self {
        let active = meta.active();
        WrittenView {
            next_offset: meta.next_offset,
            last_epoch: meta.last_epoch(),
            segment_bytes: active.bytes,
            segment_first_ms: active.first_append_ms,
            config: meta.config,
        }
    }
}

/// What laying out a commit produced.
pub(crate) struct LaidOut {
    pub events: PartitionEvents,
    /// One per request, in request order.
    pub outcomes: Vec<Result<Appended>>,
    /// Views after this commit, to keep once it is written.
    pub views: Vec<(u64, WrittenView)>,
    pub footer: Vec<FooterRun>,
}

/// Where the commit goes: file `seq`, starting at byte `position`.
pub(crate) struct Target {
    pub seq: u64,
    pub position: u64,
    pub now_ms: i64,
}

pub(crate) fn lay_out_commit(
    buf: &mut BytesMut,
    target: &Target,
    requests: &mut [AppendRequest],
    views: &HashMap<u64, WrittenView>,
) -> LaidOut {
    let mut outcomes: Vec<Option<Result<Appended>>> = (0..requests.len()).map(|_| None).collect();
    let mut out = LaidOut {
        events: Vec::new(),
        outcomes: Vec::new(),
        views: Vec::new(),
        footer: Vec::new(),
    };
    for (partition, indices) in group_by_partition(requests) {
        if let Err(e) = partition.check_live() {
            for &i in &indices {
                outcomes[i] = Some(Err(LogError::UnknownPartition(partition.key.clone())));
            }
            drop(e);
            continue;
        }
        let view = match views.get(&partition.id) {
            Some(v) => *v,
            None => WrittenView::of(&partition.state.read().meta),
        };
        let mut p = PartitionLayout {
            buf: &mut *buf,
            target,
            id: partition.id,
            view,
            open: None,
            events: Vec::new(),
        };
        for &i in &indices {
            outcomes[i] = Some(p.append(&mut requests[i]));
        }
        p.close_open();
        let (view, events) = (p.view, p.events);
        for e in &events {
            if let Event::Run(r) = e {
                out.footer.push(FooterRun {
                    partition: partition.id,
                    base_offset: r.run.base_offset,
                    next_offset: r.run.next_offset,
                    max_timestamp: r.run.max_timestamp,
                    position: r.run.position,
                    frame_len: r.run.frame_len,
                });
            }
        }
        if !events.is_empty() {
            out.views.push((partition.id, view));
            out.events.push((partition, events));
        }
    }
    out.outcomes = outcomes
        .into_iter()
        .map(|o| o.unwrap_or_else(|| Err(LogError::Closed("append was not processed".into()))))
        .collect();
    out
}

/// A `Batches` frame being filled for one partition.
struct OpenFrame {
    start: usize,
    base_offset: u64,
    max_timestamp: i64,
    batch_bytes: u64,
    epoch_changes: Vec<EpochStart>,
}

struct PartitionLayout<'a> {
    buf: &'a mut BytesMut,
    target: &'a Target,
    id: u64,
    view: WrittenView,
    open: Option<OpenFrame>,
    events: Vec<Event>,
}

impl PartitionLayout<'_> {
    fn append(&mut self, request: &mut AppendRequest) -> Result<Appended> {
        let epoch = check_append(
            request.mode,
            self.view.next_offset,
            self.view.last_epoch,
            &request.headers,
        )?;
        let now = self.target.now_ms;
        let v = &self.view;
        let due_by_size = v.segment_bytes >= v.config.segment_bytes;
        let due_by_age = v
            .segment_first_ms
            .is_some_and(|first| now.saturating_sub(first) >= v.config.segment_ms);
        if v.segment_bytes > 0 && (due_by_size || due_by_age) {
            self.close_open();
            let op = ControlOp::Seal {
                offset: self.view.next_offset,
            };
            frame::encode_control(self.buf, self.id, &op);
            self.events.push(Event::Control(op));
            self.view.segment_bytes = 0;
            self.view.segment_first_ms = None;
        }
        if self.open.is_none() {
            let start = begin_frame(self.buf, FrameKind::Batches, self.id);
            self.buf.extend_from_slice(&now.to_be_bytes());
            debug_assert_eq!(self.buf.len() - start, BATCHES_PAYLOAD_START);
            self.open = Some(OpenFrame {
                start,
                base_offset: self.view.next_offset,
                max_timestamp: -1,
                batch_bytes: 0,
                epoch_changes: Vec::new(),
            });
        }
        let base = self.view.next_offset;
        let mut next = base;
        let mut max_timestamp = -1;
        let mut at = 0usize;
        let mut epoch_changes = Vec::new();
        let mut last_epoch = 0;
        for h in &request.headers {
            let len = h.total_len();
            let first = next;
            let batch_epoch = match epoch {
                Some(e) => {
                    if let Some(slice) = request.batches.get_mut(at..at + len) {
                        // Lengths were verified before queueing, so these cannot fail.
                        let _ = set_base_offset(slice, first as i64);
                        let _ = set_partition_leader_epoch(slice, e);
                    }
                    e
                }
                None => h.partition_leader_epoch,
            };
            next = first + h.last_offset_delta as u64 + 1;
            last_epoch = batch_epoch;
            if self.view.last_epoch != Some(batch_epoch) {
                epoch_changes.push(EpochStart {
                    epoch: batch_epoch,
                    start_offset: first,
                });
                self.view.last_epoch = Some(batch_epoch);
            }
            max_timestamp = max_timestamp.max(h.max_timestamp);
            at += len;
        }
        self.buf.extend_from_slice(&request.batches);
        let bytes = request.batches.len() as u64;
        if let Some(f) = self.open.as_mut() {
            f.max_timestamp = f.max_timestamp.max(max_timestamp);
            f.batch_bytes += bytes;
            f.epoch_changes.extend(epoch_changes);
        }
        self.view.next_offset = next;
        self.view.segment_bytes += bytes;
        self.view.segment_first_ms.get_or_insert(now);
        Ok(Appended {
            base_offset: base,
            next_offset: next,
            max_timestamp,
            leader_epoch: last_epoch,
        })
    }

    fn close_open(&mut self) {
        let Some(f) = self.open.take() else { return };
        finish_frame(self.buf, f.start);
        let frame_len = (self.buf.len() - f.start) as u32;
        self.events.push(Event::Run(AppendedRun {
            run: Run {
                base_offset: f.base_offset,
                next_offset: self.view.next_offset,
                max_timestamp: f.max_timestamp,
                cum_max_timestamp: f.max_timestamp,
                file: self.target.seq,
                position: self.target.position + f.start as u64,
                frame_len,
            },
            append_ms: self.target.now_ms,
            batch_bytes: f.batch_bytes,
            epoch_changes: f.epoch_changes,
            // Filled in by the committer once the commit is written.
            frame: None,
        }));
    }
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
        AppendMode::Leader {
            epoch,
            expected_offset,
        } => {
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
                return Err(LogError::StaleEpoch {
                    got: epoch,
                    current,
                });
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
            if let (Some(current), Some(min)) = (
                last_epoch,
                headers.iter().map(|h| h.partition_leader_epoch).min(),
            ) && min < current
            {
                return Err(LogError::StaleEpoch { got: min, current });
            }
            Ok(None)
        }
    }
}
