//! A partition's state and every change to it, as pure functions.
//!
//! The committer applies a change after the journal holds it, and recovery
//! replays the same changes from the journal, through the same functions:
//! what a reader saw before a crash is what it sees after.

use std::collections::VecDeque;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::config::SegmentConfig;
use crate::frame::{ControlOp, CutSegment};

/// A segment of a partition: a range of offsets sealed by size or age, the
/// unit that tiering uploads.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SegmentInfo {
    pub base_offset: u64,
    /// One past the last offset of the segment.
    pub end_offset: u64,
    /// Bytes of record batches in the segment.
    pub bytes: u64,
    /// Wall-clock time of the first and last append, in ms.
    pub first_append_ms: Option<i64>,
    pub last_append_ms: Option<i64>,
    /// Largest record timestamp in the segment, -1 when empty.
    pub max_timestamp: i64,
    pub sealed: bool,
    pub offloaded: bool,
}

impl SegmentInfo {
    fn empty_at(offset: u64) -> Self {
        SegmentInfo {
            base_offset: offset,
            end_offset: offset,
            bytes: 0,
            first_append_ms: None,
            last_append_ms: None,
            max_timestamp: -1,
            sealed: false,
            offloaded: false,
        }
    }
}

/// From `start_offset` on, batches carry leader epoch `epoch`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct EpochStart {
    pub epoch: i32,
    pub start_offset: u64,
}

/// Everything about a partition except where its bytes are: journaled in snapshots.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct PartitionMeta {
    pub id: u64,
    pub key: String,
    pub config: SegmentConfig,
    /// First offset that exists at all (retention moves it).
    pub log_start: u64,
    /// First offset held on local disk (offloaded segments released move it).
    pub local_start: u64,
    /// One past the last offset.
    pub next_offset: u64,
    /// Local segments in offset order; the last one is the active (unsealed) one.
    pub segments: Vec<SegmentInfo>,
    pub epochs: Vec<EpochStart>,
}

impl PartitionMeta {
    #[cfg(test)]
    pub fn new(id: u64, key: String, config: SegmentConfig) -> Self {
        Self::starting_at(id, key, config, 0, 0)
    }

    /// A partition whose first local offset is `start` (nothing below it
    /// exists locally; from `log_start` up to it, another tier holds the data).
    pub fn starting_at(
        id: u64,
        key: String,
        config: SegmentConfig,
        log_start: u64,
        start: u64,
    ) -> Self {
        PartitionMeta {
            id,
            key,
            config,
            log_start: log_start.min(start),
            local_start: start,
            next_offset: start,
            segments: vec![SegmentInfo::empty_at(start)],
            epochs: Vec::new(),
        }
    }

    pub fn active(&self) -> &SegmentInfo {
        // There is always an active segment; the fallback only keeps this panic-free.
        self.segments.last().unwrap_or(&EMPTY_SEGMENT)
    }

    pub fn last_epoch(&self) -> Option<i32> {
        self.epochs.last().map(|e| e.epoch)
    }

    fn active_mut(&mut self) -> &mut SegmentInfo {
        if self.segments.last().is_none_or(|s| s.sealed) {
            let at = self.next_offset;
            self.segments.push(SegmentInfo::empty_at(at));
        }
        let last = self.segments.len() - 1;
        &mut self.segments[last]
    }
}

static EMPTY_SEGMENT: SegmentInfo = SegmentInfo {
    base_offset: 0,
    end_offset: 0,
    bytes: 0,
    first_append_ms: None,
    last_append_ms: None,
    max_timestamp: -1,
    sealed: false,
    offloaded: false,
};

/// Where one run of batches lies in the journal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Run {
    pub base_offset: u64,
    /// One past the last offset served from this run (lowered by truncation).
    pub next_offset: u64,
    pub max_timestamp: i64,
    /// Largest timestamp of this run and every run before it: monotonic, so
    /// a time lookup is a binary search.
    pub cum_max_timestamp: i64,
    pub file: u64,
    pub position: u64,
    pub frame_len: u32,
}

/// What a committed batches frame adds to a partition.
#[derive(Debug, Clone)]
pub(crate) struct AppendedRun {
    pub run: Run,
    pub append_ms: i64,
    pub batch_bytes: u64,
    /// (epoch, first offset) of each batch whose epoch differs from the one before it.
    pub epoch_changes: Vec<EpochStart>,
    /// The run's whole frame exactly as written to the journal, when the
    /// committer has it (never for recovered runs): what the tail cache keeps.
    pub frame: Option<Bytes>,
}

/// A run's frame kept in memory (the tail cache): the bytes the committer
/// wrote for it, so reads of the recent tail need no disk read and no CRC pass.
#[derive(Debug, Clone)]
pub(crate) struct CachedFrame {
    pub base_offset: u64,
    /// Position in the log-wide eviction queue (`journal::TailCache`); increasing.
    pub seq: u64,
    pub frame: Bytes,
}

#[derive(Debug)]
pub(crate) struct PartitionState {
    pub meta: PartitionMeta,
    pub runs: VecDeque<Run>,
    /// Frames of some of the latest runs, in run order, each matching a run
    /// of `runs` by base offset. Trimmed with `runs` (truncation, retention,
    /// release) and evicted oldest first across the log.
    pub tail: VecDeque<CachedFrame>,
}

impl PartitionState {
    pub fn new(meta: PartitionMeta) -> Self {
        PartitionState {
            meta,
            runs: VecDeque::new(),
            tail: VecDeque::new(),
        }
    }

    /// Keeps the frame of the run just applied (the last one) in memory.
    pub fn cache_frame(&mut self, seq: u64, frame: Bytes) {
        if let Some(run) = self.runs.back()
            && frame.len() == run.frame_len as usize
            && self
                .tail
                .back()
                .is_none_or(|c| c.base_offset < run.base_offset)
        {
            self.tail.push_back(CachedFrame {
                base_offset: run.base_offset,
                seq,
                frame,
            });
        }
    }

    /// The in-memory frame of `run`, if it is cached.
    pub fn cached_frame(&self, run: &Run) -> Option<Bytes> {
        let i = self
            .tail
            .binary_search_by_key(&run.base_offset, |c| c.base_offset)
            .ok()?;
        let c = &self.tail[i];
        (c.frame.len() == run.frame_len as usize).then(|| c.frame.clone())
    }

    /// Drops the cached frame with eviction number `seq`, if still here;
    /// returns its length.
    pub fn evict_cached(&mut self, seq: u64) -> usize {
        // Eviction goes oldest first, so this is nearly always the front.
        match self.tail.iter().position(|c| c.seq == seq) {
            Some(i) => self.tail.remove(i).map_or(0, |c| c.frame.len()),
            None => 0,
        }
    }

    /// Adds a committed run. It must start at the partition's end offset.
    pub fn apply_run(&mut self, appended: AppendedRun) -> Result<(), String> {
        let mut run = appended.run;
        if run.base_offset != self.meta.next_offset || run.next_offset < run.base_offset {
            return Err(format!(
                "run [{}, {}) does not continue the partition at {}",
                run.base_offset, run.next_offset, self.meta.next_offset
            ));
        }
        let prev_max = self.runs.back().map_or(i64::MIN, |r| r.cum_max_timestamp);
        run.cum_max_timestamp = prev_max.max(run.max_timestamp);
        self.runs.push_back(run);
        self.meta.next_offset = run.next_offset;
        for change in appended.epoch_changes {
            if self.meta.last_epoch().is_none_or(|e| change.epoch > e) {
                self.meta.epochs.push(change);
            }
        }
        let next = self.meta.next_offset;
        let segment = self.meta.active_mut();
        segment.end_offset = next;
        segment.bytes += appended.batch_bytes;
        segment.first_append_ms.get_or_insert(appended.append_ms);
        segment.last_append_ms = Some(appended.append_ms);
        segment.max_timestamp = segment.max_timestamp.max(run.max_timestamp);
        Ok(())
    }

    /// Applies a journaled metadata change. Ops are validated before they are
    /// journaled ([`PartitionState::validate`]); this only fails on a journal
    /// that contradicts itself.
    pub fn apply_control(&mut self, op: &ControlOp) -> Result<(), String> {
        self.validate(op)?;
        match *op {
            ControlOp::Create { .. } | ControlOp::Delete => {}
            ControlOp::Truncate {
                offset,
                cut_segment,
            } => self.truncate(offset, cut_segment),
            ControlOp::AdvanceStart { offset } => {
                self.meta.log_start = self.meta.log_start.max(offset);
                self.drop_local_below(offset);
                self.trim_epochs();
            }
            ControlOp::Seal { offset } => {
                let active = self.meta.active_mut();
                if active.end_offset == offset && active.end_offset > active.base_offset {
                    active.sealed = true;
                    self.meta.segments.push(SegmentInfo::empty_at(offset));
                }
            }
            ControlOp::Offloaded { base_offset } => {
                if let Some(s) = self
                    .meta
                    .segments
                    .iter_mut()
                    .find(|s| s.base_offset == base_offset)
                {
                    s.offloaded = true;
                }
            }
            ControlOp::ReleaseLocal { offset } => self.drop_local_below(offset),
            ControlOp::SetConfig { config } => self.meta.config = config,
            ControlOp::BeginEpoch { epoch, offset } => {
                if self.meta.last_epoch().is_none_or(|e| epoch > e) {
                    self.meta.epochs.push(EpochStart {
                        epoch,
                        start_offset: offset,
                    });
                }
            }
        }
        Ok(())
    }

    /// Checks that `op` may be applied now; the same check runs before
    /// journaling and on replay.
    pub fn validate(&self, op: &ControlOp) -> Result<(), String> {
        let m = &self.meta;
        match *op {
            ControlOp::Truncate { offset, .. } => {
                if offset < m.local_start || offset > m.next_offset {
                    return Err(format!(
                        "cannot truncate to {offset}: local offsets are [{}, {}]",
                        m.local_start, m.next_offset
                    ));
                }
                if let Some(s) = m
                    .segments
                    .iter()
                    .find(|s| s.offloaded && s.end_offset > offset)
                {
                    return Err(format!(
                        "cannot truncate to {offset}: segment at {} is already offloaded",
                        s.base_offset
                    ));
                }
            }
            ControlOp::AdvanceStart { offset } if offset > m.next_offset => {
                return Err(format!(
                    "cannot move the start offset to {offset}, past the end offset {}",
                    m.next_offset
                ));
            }
            ControlOp::Seal { offset } if offset != m.next_offset => {
                return Err(format!(
                    "seal at {offset} is not the end offset {}",
                    m.next_offset
                ));
            }
            ControlOp::Offloaded { base_offset }
                if !m
                    .segments
                    .iter()
                    .any(|s| s.base_offset == base_offset && s.sealed) =>
            {
                return Err(format!("no sealed segment starts at offset {base_offset}"));
            }
            ControlOp::BeginEpoch { epoch, offset } => {
                if offset != m.next_offset {
                    return Err(format!(
                        "epoch {epoch} must begin at the end offset {}, not {offset}",
                        m.next_offset
                    ));
                }
                if let Some(last) = m.last_epoch()
                    && epoch < last
                {
                    return Err(format!(
                        "epoch {epoch} is older than the partition's epoch {last}"
                    ));
                }
            }
            ControlOp::ReleaseLocal { offset } => {
                let releasable = self.releasable_up_to();
                if offset > releasable {
                    return Err(format!(
                        "cannot release local data below {offset}: only offloaded segments up to {releasable} may go"
                    ));
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// End of the leading run of sealed, offloaded segments: local data below it may go.
    pub fn releasable_up_to(&self) -> u64 {
        let mut upto = self.meta.local_start;
        for s in &self.meta.segments {
            if !(s.sealed && s.offloaded) {
                break;
            }
            upto = upto.max(s.end_offset);
        }
        upto
    }

    fn truncate(&mut self, offset: u64, cut: Option<CutSegment>) {
        while self.runs.back().is_some_and(|r| r.base_offset >= offset) {
            self.runs.pop_back();
        }
        // A run cut short keeps its frame (as on disk, where its batches past
        // the cut stay too); reads stop at the run's lowered end.
        while self.tail.back().is_some_and(|c| c.base_offset >= offset) {
            self.tail.pop_back();
        }
        if let Some(last) = self.runs.back_mut() {
            last.next_offset = last.next_offset.min(offset);
        }
        self.meta.next_offset = offset;
        let local_start = self.meta.local_start;
        let segments = &mut self.meta.segments;
        while segments.last().is_some_and(|s| s.base_offset >= offset) {
            segments.pop();
        }
        if let Some(last) = segments.last_mut()
            && last.end_offset > offset
        {
            last.end_offset = offset;
            if let Some(cut) = cut {
                last.bytes = cut.bytes;
                last.max_timestamp = cut.max_timestamp;
            }
        }
        // A sealed segment left with nothing local is gone, as after retention.
        segments.retain(|s| !s.sealed || s.end_offset > local_start);
        self.meta.active_mut();
        self.meta.epochs.retain(|e| e.start_offset < offset);
        // A cut at the local start leaves a run that holds nothing local; it
        // must not keep its journal file alive.
        self.drop_local_below(local_start);
    }

    /// The segment a truncation to `offset` cuts (not at its boundaries), if any.
    pub fn segment_cut_by(&self, offset: u64) -> Option<&SegmentInfo> {
        self.meta
            .segments
            .iter()
            .find(|s| s.base_offset < offset && offset < s.end_offset)
    }

    fn drop_local_below(&mut self, offset: u64) {
        let m = &mut self.meta;
        m.local_start = m.local_start.max(offset);
        let start = m.local_start;
        while self.runs.front().is_some_and(|r| r.next_offset <= start) {
            self.runs.pop_front();
        }
        let first = self.runs.front().map_or(u64::MAX, |r| r.base_offset);
        while self.tail.front().is_some_and(|c| c.base_offset < first) {
            self.tail.pop_front();
        }
        m.segments.retain(|s| !s.sealed || s.end_offset > start);
        match m.segments.last_mut() {
            // All of the active segment's data is gone: it starts again at the start offset.
            Some(active) if active.end_offset <= start => *active = SegmentInfo::empty_at(start),
            Some(_) => {}
            None => m.segments.push(SegmentInfo::empty_at(start)),
        }
    }

    /// Forgets epochs that ended before the log start offset, keeping the one holding it.
    fn trim_epochs(&mut self) {
        let start = self.meta.log_start;
        let epochs = &mut self.meta.epochs;
        let superseded = epochs
            .partition_point(|e| e.start_offset <= start)
            .saturating_sub(1);
        epochs.drain(..superseded);
    }

    /// Leader epoch of the batch holding `offset`.
    pub fn epoch_at(&self, offset: u64) -> Option<i32> {
        if offset < self.meta.log_start || offset >= self.meta.next_offset {
            return None;
        }
        let idx = self
            .meta
            .epochs
            .partition_point(|e| e.start_offset <= offset);
        idx.checked_sub(1).map(|i| self.meta.epochs[i].epoch)
    }

    /// Kafka's OffsetsForLeaderEpoch: the largest epoch at or below `epoch`
    /// and the offset where it ended (the next epoch's start, or the end offset).
    pub fn end_offset_for_epoch(&self, epoch: i32) -> Option<(i32, u64)> {
        let epochs = &self.meta.epochs;
        let idx = epochs.partition_point(|e| e.epoch <= epoch);
        let found = epochs.get(idx.checked_sub(1)?)?;
        let end = epochs
            .get(idx)
            .map_or(self.meta.next_offset, |e| e.start_offset);
        Some((found.epoch, end))
    }

    /// Index of the run holding `offset`.
    pub fn run_index_for(&self, offset: u64) -> Option<usize> {
        let idx = self
            .runs
            .partition_point(|r| r.base_offset <= offset)
            .checked_sub(1)?;
        (self.runs[idx].next_offset > offset).then_some(idx)
    }

    /// Index of the first run that holds a timestamp at or after `ts`.
    pub fn run_index_for_timestamp(&self, ts: i64) -> Option<usize> {
        let idx = self.runs.partition_point(|r| r.cum_max_timestamp < ts);
        (idx < self.runs.len()).then_some(idx)
    }

    /// Checks that the runs cover `[local_start, next_offset)` without gaps.
    pub fn check_contiguous(&self) -> Result<(), String> {
        let m = &self.meta;
        if m.local_start == m.next_offset {
            return Ok(());
        }
        let mut expect = None;
        for r in &self.runs {
            if let Some(e) = expect
                && r.base_offset != e
            {
                return Err(format!(
                    "gap in the journal between offsets {e} and {}",
                    r.base_offset
                ));
            }
            expect = Some(r.next_offset);
        }
        match (self.runs.front(), self.runs.back()) {
            (Some(f), Some(b))
                if f.base_offset <= m.local_start && b.next_offset == m.next_offset =>
            {
                Ok(())
            }
            _ => Err(format!(
                "journal runs do not cover offsets [{}, {})",
                m.local_start, m.next_offset
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(base: u64, next: u64, ts: i64) -> AppendedRun {
        AppendedRun {
            run: Run {
                base_offset: base,
                next_offset: next,
                max_timestamp: ts,
                cum_max_timestamp: 0,
                file: 1,
                position: base * 100,
                frame_len: 100,
            },
            append_ms: 1000 + base as i64,
            batch_bytes: 80,
            epoch_changes: vec![EpochStart {
                epoch: (base / 10) as i32,
                start_offset: base,
            }],
            frame: None,
        }
    }

    fn partition() -> PartitionState {
        PartitionState::new(PartitionMeta::new(1, "p".into(), SegmentConfig::default()))
    }

    #[test]
    fn runs_must_be_contiguous() {
        let mut p = partition();
        p.apply_run(run(0, 5, 10)).unwrap();
        assert!(p.apply_run(run(6, 8, 10)).is_err());
        p.apply_run(run(5, 8, 3)).unwrap();
        assert_eq!(p.meta.next_offset, 8);
        assert_eq!(p.runs[1].cum_max_timestamp, 10);
        p.check_contiguous().unwrap();
    }

    #[test]
    fn truncate_trims_runs_segments_and_epochs() {
        let mut p = partition();
        p.apply_run(run(0, 5, 1)).unwrap();
        p.apply_control(&ControlOp::Seal { offset: 5 }).unwrap();
        p.apply_run(run(5, 12, 2)).unwrap();
        p.apply_run(run(12, 20, 3)).unwrap();
        assert_eq!(p.meta.epochs.len(), 2);
        p.apply_control(&ControlOp::Truncate {
            offset: 9,
            cut_segment: None,
        })
        .unwrap();
        assert_eq!(p.meta.next_offset, 9);
        assert_eq!(p.runs.len(), 2);
        assert_eq!(p.runs[1].next_offset, 9);
        assert_eq!(p.meta.segments.len(), 2);
        assert_eq!(p.meta.segments[1].end_offset, 9);
        assert_eq!(p.end_offset_for_epoch(0), Some((0, 9)));
        assert_eq!(p.epoch_at(8), Some(0));
        p.check_contiguous().unwrap();
        // Truncating into an offloaded segment is refused.
        p.apply_control(&ControlOp::Offloaded { base_offset: 0 })
            .unwrap();
        assert!(
            p.validate(&ControlOp::Truncate {
                offset: 3,
                cut_segment: None
            })
            .is_err()
        );
    }

    #[test]
    fn truncate_to_local_start_keeps_no_run() {
        let mut p = partition();
        p.apply_run(run(0, 5, 1)).unwrap();
        p.apply_run(run(5, 12, 2)).unwrap();
        p.apply_control(&ControlOp::AdvanceStart { offset: 8 })
            .unwrap();
        assert_eq!(p.runs.len(), 1, "the run holding offsets 8..12 stays");
        p.apply_control(&ControlOp::Truncate {
            offset: 8,
            cut_segment: None,
        })
        .unwrap();
        assert_eq!(p.meta.next_offset, 8);
        assert!(
            p.runs.is_empty(),
            "a run cut down to nothing local pins its journal file"
        );
        assert!(p.tail.is_empty());
        assert_eq!(p.meta.segments.len(), 1);
        assert_eq!(p.meta.segments[0].base_offset, 8);
        p.check_contiguous().unwrap();
    }

    #[test]
    fn release_only_offloaded_prefix() {
        let mut p = partition();
        p.apply_run(run(0, 5, 1)).unwrap();
        p.apply_control(&ControlOp::Seal { offset: 5 }).unwrap();
        p.apply_run(run(5, 9, 1)).unwrap();
        p.apply_control(&ControlOp::Seal { offset: 9 }).unwrap();
        assert!(p.validate(&ControlOp::ReleaseLocal { offset: 5 }).is_err());
        p.apply_control(&ControlOp::Offloaded { base_offset: 5 })
            .unwrap();
        assert_eq!(
            p.releasable_up_to(),
            0,
            "the first segment is not offloaded"
        );
        p.apply_control(&ControlOp::Offloaded { base_offset: 0 })
            .unwrap();
        assert_eq!(p.releasable_up_to(), 9);
        p.apply_control(&ControlOp::ReleaseLocal { offset: 9 })
            .unwrap();
        assert_eq!(p.meta.local_start, 9);
        assert_eq!(p.meta.log_start, 0);
        assert!(p.runs.is_empty());
        assert_eq!(p.meta.segments.len(), 1);
        p.check_contiguous().unwrap();
    }

    #[test]
    fn timestamp_lookup_uses_running_max() {
        let mut p = partition();
        p.apply_run(run(0, 5, 100)).unwrap();
        p.apply_run(run(5, 9, 50)).unwrap();
        p.apply_run(run(9, 12, 300)).unwrap();
        assert_eq!(p.run_index_for_timestamp(40), Some(0));
        assert_eq!(p.run_index_for_timestamp(101), Some(2));
        assert_eq!(p.run_index_for_timestamp(301), None);
        assert_eq!(p.run_index_for(4), Some(0));
        assert_eq!(p.run_index_for(9), Some(2));
        assert_eq!(p.run_index_for(12), None);
    }
}
