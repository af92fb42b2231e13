//! Model-based property test: random operation sequences over several
//! partitions of one log, checked after every step against a plain
//! in-memory model of what the log must hold.
//!
//! The model keeps, per partition, every record at its offset (with key,
//! value, timestamp and leader epoch), the batch boundaries, the start
//! offsets, the segments and the leader-epoch lineage. After every operation
//! the whole observable state of the log (offsets, segments, a full read of
//! every partition, epoch lookups) must equal the model; an operation the
//! model says must fail has to fail and leave everything as it was; a
//! reopen must reproduce the exact same state.

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;
use strata_log::batch::{self, BatchBuilder, Compression, decode_records};
use strata_log::{
    AppendOptions, Durability, Log, LogConfig, LogError, ManualClock, Partition, PartitionOffsets,
    SegmentConfig, SegmentInfo,
};

const KEYS: [&str; 5] = [
    "default/orders/0",
    "default/orders/1",
    "payments/0",
    "audit/7",
    "x",
];
/// The log's clock never moves: segments never age, append times are this.
const NOW_MS: i64 = 1_700_000_000_000;
const SEGMENT_BYTES: u64 = 500;
const JOURNAL_FILE_BYTES: u64 = 2 * 1024;
const MAX_UNCOMPRESSED: usize = 1 << 20;

type R<T = ()> = Result<T, TestCaseError>;

fn fail<T>(msg: impl Into<String>) -> R<T> {
    Err(TestCaseError::fail(msg.into()))
}

fn ok<T>(r: Result<T, LogError>, what: impl std::fmt::Display) -> R<T> {
    r.map_err(|e| TestCaseError::fail(format!("{what}: unexpected error {e:?}")))
}

// ---------------------------------------------------------------------------
// Operations
// ---------------------------------------------------------------------------

/// One record to append: key, value length (`None` = null value), timestamp.
/// Values are made unique by the harness (`r<n>-` and poorly compressible filler).
#[derive(Debug, Clone)]
struct Rec {
    key: Option<String>,
    value_len: Option<u16>,
    ts: i64,
}

#[derive(Debug, Clone, Copy)]
enum Expect {
    Unset,
    Right,
    /// A wrong expected end offset (above or below the real one).
    Wrong(u8),
}

/// Which segment an offload or release names.
#[derive(Debug, Clone, Copy)]
enum Pick {
    /// Offload: the oldest sealed segment not yet offloaded. Release: everything allowed.
    Next,
    /// A segment (for offload: a sealed one), by index.
    Segment(u32),
    /// Any offset in `[local_start - 2, end + 2]`.
    Any(u32),
}

#[derive(Debug, Clone, Copy)]
enum Epoch {
    Unset,
    Current,
    /// current + 1 + n % 3
    Bump(u8),
    /// current - 1 - n % 2 (stale)
    Stale(u8),
}

/// Offsets are chosen as `at` mapped into `[local_start - 2, end + 2]`, so
/// most are valid and some are just outside.
#[derive(Debug, Clone)]
enum Op {
    Create(usize),
    Delete(usize),
    Append {
        p: usize,
        batches: Vec<Vec<Rec>>,
        codec: u8,
        expect: Expect,
        epoch: Epoch,
        write_only: bool,
    },
    Read {
        p: usize,
        at: u32,
        max_bytes: usize,
        high_watermark: Option<u32>,
    },
    ReadTimestamp {
        p: usize,
        ts: i64,
    },
    Truncate {
        p: usize,
        at: u32,
    },
    AdvanceStart {
        p: usize,
        at: u32,
    },
    Seal(usize),
    MarkOffloaded {
        p: usize,
        pick: Pick,
    },
    ReleaseLocal {
        p: usize,
        pick: Pick,
    },
    ReadSegment {
        p: usize,
        pick: u32,
    },
    Reopen,
}

fn rec_strategy() -> impl Strategy<Value = Rec> {
    (
        proptest::option::weighted(0.8, "[a-c]{1,2}"),
        proptest::option::weighted(0.9, 0u16..160),
        0i64..1000,
    )
        .prop_map(|(key, value_len, ts)| Rec { key, value_len, ts })
}

fn op_strategy() -> impl Strategy<Value = Op> {
    // Partitions 0 and 1 see most of the traffic, so that they build up history.
    let p = prop_oneof![3 => Just(0usize), 2 => Just(1usize), 2 => 0usize..5];
    let batches = prop_oneof![
        4 => proptest::collection::vec(proptest::collection::vec(rec_strategy(), 1..=5), 1..=1),
        1 => proptest::collection::vec(proptest::collection::vec(rec_strategy(), 1..=5), 2..=3),
    ];
    let expect = prop_oneof![
        6 => Just(Expect::Unset),
        2 => Just(Expect::Right),
        1 => any::<u8>().prop_map(Expect::Wrong),
    ];
    let epoch = prop_oneof![
        6 => Just(Epoch::Unset),
        2 => Just(Epoch::Current),
        2 => any::<u8>().prop_map(Epoch::Bump),
        1 => any::<u8>().prop_map(Epoch::Stale),
    ];
    let append = (
        p.clone(),
        batches,
        0u8..5,
        expect,
        epoch,
        proptest::bool::weighted(0.2),
    )
        .prop_map(
            |(p, batches, codec, expect, epoch, write_only)| Op::Append {
                p,
                batches,
                codec,
                expect,
                epoch,
                write_only,
            },
        );
    let pick = prop_oneof![
        4 => Just(Pick::Next),
        2 => any::<u32>().prop_map(Pick::Segment),
        1 => any::<u32>().prop_map(Pick::Any),
    ];
    prop_oneof![
        2 => p.clone().prop_map(Op::Create),
        1 => p.clone().prop_map(Op::Delete),
        16 => append,
        4 => (p.clone(), any::<u32>(), prop_oneof![1usize..200, 200usize..3000], proptest::option::weighted(0.2, any::<u32>()))
            .prop_map(|(p, at, max_bytes, high_watermark)| Op::Read { p, at, max_bytes, high_watermark }),
        2 => (p.clone(), -5i64..1010).prop_map(|(p, ts)| Op::ReadTimestamp { p, ts }),
        3 => (p.clone(), any::<u32>()).prop_map(|(p, at)| Op::Truncate { p, at }),
        2 => (p.clone(), any::<u32>()).prop_map(|(p, at)| Op::AdvanceStart { p, at }),
        3 => p.clone().prop_map(Op::Seal),
        3 => (p.clone(), pick.clone()).prop_map(|(p, pick)| Op::MarkOffloaded { p, pick }),
        2 => (p.clone(), pick).prop_map(|(p, pick)| Op::ReleaseLocal { p, pick }),
        2 => (p.clone(), any::<u32>()).prop_map(|(p, pick)| Op::ReadSegment { p, pick }),
        1 => Just(Op::Reopen),
    ]
}

fn codec(c: u8) -> Compression {
    match c % 5 {
        0 => Compression::None,
        1 => Compression::Gzip,
        2 => Compression::Snappy,
        3 => Compression::Lz4,
        _ => Compression::Zstd,
    }
}

// ---------------------------------------------------------------------------
// Model
// ---------------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq, Eq)]
struct MRec {
    key: Option<Bytes>,
    value: Option<Bytes>,
    ts: i64,
    epoch: i32,
    /// Base offset of the batch holding the record.
    batch_base: u64,
}

#[derive(Debug, Clone)]
struct MBatch {
    base: u64,
    /// One past the batch's last offset, as appended.
    next: u64,
    bytes: u64,
}

/// The observable part of a segment the model predicts.
#[derive(Debug, Clone, PartialEq, Eq)]
struct MSeg {
    base: u64,
    end: u64,
    bytes: u64,
    max_ts: i64,
    sealed: bool,
    offloaded: bool,
}

impl MSeg {
    fn empty_at(offset: u64) -> Self {
        MSeg {
            base: offset,
            end: offset,
            bytes: 0,
            max_ts: -1,
            sealed: false,
            offloaded: false,
        }
    }

    fn of(s: &SegmentInfo) -> Self {
        MSeg {
            base: s.base_offset,
            end: s.end_offset,
            bytes: s.bytes,
            max_ts: s.max_timestamp,
            sealed: s.sealed,
            offloaded: s.offloaded,
        }
    }
}

/// A batch as appended: its encoded size and its records (key, value, timestamp).
type BuiltBatch = (u64, Vec<(Option<Bytes>, Option<Bytes>, i64)>);

#[derive(Debug, Clone)]
struct MPart {
    /// Every record below the end offset, indexed by offset (those below
    /// `local_start` are kept to check batches that straddle it).
    records: Vec<MRec>,
    /// Batches with a base below the end offset.
    batches: Vec<MBatch>,
    log_start: u64,
    local_start: u64,
    segments: Vec<MSeg>,
    /// Leader-epoch lineage: (epoch, start offset), epochs increasing. It covers
    /// `[log_start, end)`: retention forgets epochs that ended before the log start.
    epochs: Vec<(i32, u64)>,
}

impl MPart {
    fn new() -> Self {
        MPart {
            records: Vec::new(),
            batches: Vec::new(),
            log_start: 0,
            local_start: 0,
            segments: vec![MSeg::empty_at(0)],
            epochs: Vec::new(),
        }
    }

    fn end(&self) -> u64 {
        self.records.len() as u64
    }

    fn offsets(&self) -> PartitionOffsets {
        PartitionOffsets {
            log_start: self.log_start,
            local_start: self.local_start,
            end: self.end(),
            // The model is never replicated: what is written is visible.
            high_watermark: self.end(),
        }
    }

    fn current_epoch(&self) -> i32 {
        self.epochs.last().map_or(0, |e| e.0)
    }

    /// Maps a random number into `[local_start - 2, end + 2]`.
    fn pick_offset(&self, at: u32) -> u64 {
        let lo = self.local_start.saturating_sub(2);
        let hi = self.end() + 2;
        lo + u64::from(at) % (hi - lo + 1)
    }

    /// As [`MPart::pick_offset`], but half the time within the last few offsets.
    fn pick_offset_near_end(&self, at: u32) -> u64 {
        if at.is_multiple_of(2) {
            return self.pick_offset(at / 2);
        }
        let lo = self.local_start.saturating_sub(2);
        let hi = self.end() + 2;
        hi - u64::from(at / 2) % (hi - lo + 1).min(6)
    }

    fn active(&mut self) -> &mut MSeg {
        self.segments
            .last_mut()
            .expect("the model always has an active segment")
    }

    /// Appends batches (each: encoded size, records) stamped with `epoch`.
    fn append(&mut self, batches: Vec<BuiltBatch>, epoch: i32) {
        let end = self.end();
        {
            let active = self.active();
            // A full active segment is sealed before the next append goes in.
            if active.bytes >= SEGMENT_BYTES {
                active.sealed = true;
                self.segments.push(MSeg::empty_at(end));
            }
        }
        if self.epochs.last().map(|e| e.0) != Some(epoch) {
            self.epochs.push((epoch, end));
        }
        let mut total = 0;
        let mut max_ts = -1;
        for (bytes, recs) in batches {
            let base = self.end();
            for (key, value, ts) in recs {
                max_ts = max_ts.max(ts);
                self.records.push(MRec {
                    key,
                    value,
                    ts,
                    epoch,
                    batch_base: base,
                });
            }
            self.batches.push(MBatch {
                base,
                next: self.end(),
                bytes,
            });
            total += bytes;
        }
        let new_end = self.end();
        let active = self.active();
        active.end = new_end;
        active.bytes += total;
        active.max_ts = active.max_ts.max(max_ts);
    }

    fn truncate_valid(&self, offset: u64) -> bool {
        offset >= self.local_start
            && offset <= self.end()
            && !self.segments.iter().any(|s| s.offloaded && s.end > offset)
    }

    fn truncate(&mut self, offset: u64) {
        self.records.truncate(offset as usize);
        self.batches.retain(|b| b.base < offset);
        while self.segments.last().is_some_and(|s| s.base >= offset) {
            self.segments.pop();
        }
        if let Some(last) = self.segments.last()
            && last.end > offset
        {
            let base = last.base;
            let bytes = self
                .batches
                .iter()
                .filter(|b| b.base >= base && b.base < offset)
                .map(|b| b.bytes)
                .sum();
            let mut max_ts = self.records[base as usize..offset as usize]
                .iter()
                .map(|r| r.ts)
                .max()
                .unwrap_or(-1);
            // The log no longer has the records below its local start, so a
            // segment partly below it keeps its old maximum (an upper bound).
            if base < self.local_start {
                max_ts = max_ts.max(self.segments.last().map_or(-1, |s| s.max_ts));
            }
            let last = self.segments.last_mut().expect("checked above");
            last.end = offset;
            last.bytes = bytes;
            last.max_ts = max_ts;
        }
        if self.segments.last().is_none_or(|s| s.sealed) {
            self.segments.push(MSeg::empty_at(offset));
        }
        // Only segments holding local data are listed.
        let local_start = self.local_start;
        self.segments.retain(|s| !s.sealed || s.end > local_start);
        self.epochs.retain(|e| e.1 < offset);
        // Cut to the local start, nothing local is left: as after retention.
        self.drop_local_below(local_start);
    }

    /// Local data below `offset` goes: sealed segments wholly below it are
    /// forgotten; an active segment with nothing left starts again there.
    fn drop_local_below(&mut self, offset: u64) {
        self.local_start = self.local_start.max(offset);
        let start = self.local_start;
        self.segments.retain(|s| !s.sealed || s.end > start);
        match self.segments.last_mut() {
            Some(active) if active.end <= start => *active = MSeg::empty_at(start),
            Some(_) => {}
            None => self.segments.push(MSeg::empty_at(start)),
        }
    }

    /// Retention: the log starts at `offset`; the lineage forgets epochs that
    /// ended at or before it, keeping the one holding it.
    fn advance_start(&mut self, offset: u64) {
        self.log_start = self.log_start.max(offset);
        self.drop_local_below(offset);
        let start = self.log_start;
        while self.epochs.len() >= 2 && self.epochs[1].1 <= start {
            self.epochs.remove(0);
        }
    }

    fn seal(&mut self) {
        let end = self.end();
        let active = self.active();
        if active.end > active.base {
            active.sealed = true;
            self.segments.push(MSeg::empty_at(end));
        }
    }

    fn releasable(&self) -> u64 {
        let mut upto = self.local_start;
        for s in &self.segments {
            if !(s.sealed && s.offloaded) {
                break;
            }
            upto = upto.max(s.end);
        }
        upto
    }

    fn release_local(&mut self, up_to: u64) {
        let offset = up_to.min(self.releasable());
        if offset > self.local_start {
            self.drop_local_below(offset);
        }
    }

    fn offset_for_timestamp(&self, ts: i64) -> Option<u64> {
        let start = self.local_start.max(self.log_start);
        (start..self.end()).find(|&o| self.records[o as usize].ts >= ts)
    }

    fn end_offset_for_epoch(&self, epoch: i32) -> Option<(i32, u64)> {
        let idx = self.epochs.iter().take_while(|e| e.0 <= epoch).count();
        let found = self.epochs.get(idx.checked_sub(1)?)?;
        let end = self.epochs.get(idx).map_or(self.end(), |e| e.1);
        Some((found.0, end))
    }
}

// ---------------------------------------------------------------------------
// Checks
// ---------------------------------------------------------------------------

/// One batch as read back: its header fields that matter and its bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
struct ReadBatch {
    base: u64,
    next: u64,
    bytes: Bytes,
}

/// Splits a chunk into whole batches; the chunk must be nothing but whole, valid batches.
fn split_chunk(chunk: &Bytes, out: &mut Vec<ReadBatch>, what: &str) -> R {
    let mut covered = 0;
    for item in batch::batches(chunk) {
        let (h, range) =
            item.map_err(|e| TestCaseError::fail(format!("{what}: chunk holds a bad batch: {e}")))?;
        prop_assert_eq!(
            range.start,
            covered,
            "{}: batches in a chunk must be contiguous",
            what
        );
        covered = range.end;
        let bytes = chunk.slice(range);
        batch::verify_batch_crc(&bytes)
            .map_err(|e| TestCaseError::fail(format!("{what}: batch CRC: {e}")))?;
        prop_assert!(h.base_offset >= 0, "{}: negative base offset", what);
        out.push(ReadBatch {
            base: h.base_offset as u64,
            next: h.next_offset() as u64,
            bytes,
        });
    }
    prop_assert_eq!(
        covered,
        chunk.len(),
        "{}: chunk is not made of whole batches",
        what
    );
    prop_assert!(!chunk.is_empty(), "{}: empty chunk", what);
    Ok(())
}

/// Checks one batch's records and epoch against the model; every record must exist (be below `limit`).
fn check_batch(m: &MPart, b: &ReadBatch, limit: u64, what: &str) -> R {
    let h = batch::BatchHeader::parse(&b.bytes)
        .map_err(|e| TestCaseError::fail(format!("{what}: {e}")))?;
    prop_assert!(
        b.base < limit && b.next <= limit,
        "{}: batch [{}, {}) reaches past offset {} (model end {}): offsets at or after it do not exist",
        what,
        b.base,
        b.next,
        limit,
        m.end()
    );
    let first = &m.records[b.base as usize];
    prop_assert_eq!(
        first.batch_base,
        b.base,
        "{}: batch at {} does not start where a batch was appended",
        what,
        b.base
    );
    let records = decode_records(&b.bytes, MAX_UNCOMPRESSED)
        .map_err(|e| TestCaseError::fail(format!("{what}: decode: {e}")))?;
    prop_assert_eq!(
        records.len() as u64,
        b.next - b.base,
        "{}: record count of batch at {}",
        what,
        b.base
    );
    for r in &records {
        let o = r.offset as u64;
        let expected = &m.records[o as usize];
        prop_assert_eq!(
            expected.batch_base,
            b.base,
            "{}: offset {} is in another batch",
            what,
            o
        );
        prop_assert_eq!(&r.key, &expected.key, "{}: key at {}", what, o);
        prop_assert_eq!(&r.value, &expected.value, "{}: value at {}", what, o);
        prop_assert_eq!(r.timestamp, expected.ts, "{}: timestamp at {}", what, o);
        prop_assert_eq!(
            h.partition_leader_epoch,
            expected.epoch,
            "{}: leader epoch of batch at {}",
            what,
            b.base
        );
    }
    Ok(())
}

/// Reads the whole local log of a partition; checks it batch by batch; returns the batches.
async fn scan(p: &Partition, m: &MPart, what: &str) -> R<Vec<ReadBatch>> {
    let end = m.end();
    let mut at = m.local_start;
    let mut all: Vec<ReadBatch> = Vec::new();
    while at < end {
        let r = ok(p.read(at, 1 << 20).await, format!("{what}: read({at})"))?;
        prop_assert_eq!(r.end_offset, end, "{}: end offset of read({})", what, at);
        prop_assert_eq!(
            r.log_start,
            m.log_start,
            "{}: log start of read({})",
            what,
            at
        );
        prop_assert!(
            !r.is_empty(),
            "{}: read({}) returned nothing below the end {}",
            what,
            at,
            end
        );
        let mut got = Vec::new();
        for c in &r.chunks {
            split_chunk(c, &mut got, what)?;
        }
        prop_assert!(
            got[0].base <= at && at < got[0].next,
            "{}: read({}) starts with batch [{}, {})",
            what,
            at,
            got[0].base,
            got[0].next
        );
        prop_assert_eq!(
            r.next_offset,
            got.last().map_or(at, |b| b.next),
            "{}: next offset of read({})",
            what,
            at
        );
        for b in got {
            if let Some(prev) = all.last() {
                prop_assert_eq!(
                    b.base,
                    prev.next,
                    "{}: gap or overlap between batches",
                    what
                );
            }
            check_batch(m, &b, end, what)?;
            all.push(b);
        }
        prop_assert!(
            r.next_offset > at,
            "{}: read({}) made no progress",
            what,
            at
        );
        at = r.next_offset;
    }
    prop_assert_eq!(at, end, "{}: scan ended at {} instead of the end", what, at);
    // Reading at the end: nothing, but not an error.
    let r = ok(
        p.read(end, 1 << 20).await,
        format!("{what}: read at end {end}"),
    )?;
    prop_assert!(
        r.is_empty() && r.next_offset == end,
        "{}: read at the end returned data",
        what
    );
    Ok(all)
}

fn check_meta(p: &Partition, m: &MPart, what: &str) -> R {
    prop_assert_eq!(p.offsets(), m.offsets(), "{}: offsets", what);
    let segments = p.segments();
    let got: Vec<MSeg> = segments.iter().map(MSeg::of).collect();
    prop_assert_eq!(&got, &m.segments, "{}: segments", what);
    for s in &segments {
        let expected_ms = (s.end_offset > s.base_offset).then_some(NOW_MS);
        prop_assert_eq!(
            s.first_append_ms,
            expected_ms,
            "{}: first append time of {:?}",
            what,
            s
        );
        prop_assert_eq!(
            s.last_append_ms,
            expected_ms,
            "{}: last append time of {:?}",
            what,
            s
        );
    }
    let to_offload: Vec<MSeg> = p.segments_to_offload().iter().map(MSeg::of).collect();
    let expected: Vec<MSeg> = m
        .segments
        .iter()
        .filter(|s| s.sealed && !s.offloaded)
        .cloned()
        .collect();
    prop_assert_eq!(to_offload, expected, "{}: segments to offload", what);
    // Leader epochs: known for every offset that exists, local or offloaded.
    for o in m.log_start.saturating_sub(1)..=m.end() + 1 {
        let expected = (o >= m.log_start && o < m.end()).then(|| m.records[o as usize].epoch);
        prop_assert_eq!(p.epoch_at(o), expected, "{}: epoch_at({})", what, o);
    }
    let max_epoch = m.epochs.iter().map(|e| e.0).max().unwrap_or(0);
    for e in -1..=max_epoch + 1 {
        prop_assert_eq!(
            p.end_offset_for_epoch(e),
            m.end_offset_for_epoch(e),
            "{}: end_offset_for_epoch({})",
            what,
            e
        );
    }
    Ok(())
}

/// What must survive a reopen unchanged.
#[derive(Debug, PartialEq, Eq)]
struct Fingerprint {
    keys: Vec<String>,
    partitions: Vec<PartitionFingerprint>,
}

#[derive(Debug, PartialEq, Eq)]
struct PartitionFingerprint {
    offsets: PartitionOffsets,
    segments: Vec<SegmentInfo>,
    batches: Vec<ReadBatch>,
    epochs: Vec<Option<(i32, u64)>>,
}

// ---------------------------------------------------------------------------
// Harness
// ---------------------------------------------------------------------------

struct Harness {
    dir: tempfile::TempDir,
    config: LogConfig,
    clock: ManualClock,
    log: Option<Log>,
    keys: Vec<&'static str>,
    model: BTreeMap<&'static str, MPart>,
    /// Makes every record value unique.
    seq: u64,
}

impl Harness {
    fn new(nkeys: usize) -> R<Self> {
        let dir = tempfile::tempdir().map_err(|e| TestCaseError::fail(e.to_string()))?;
        let config = LogConfig {
            journal_file_bytes: JOURNAL_FILE_BYTES,
            default_segment: SegmentConfig {
                segment_bytes: SEGMENT_BYTES,
                segment_ms: i64::MAX / 4,
            },
            housekeeping_interval: std::time::Duration::from_millis(20),
            ..LogConfig::default()
        };
        let clock = ManualClock::new(NOW_MS);
        let log = ok(
            Log::open_with_clock(dir.path(), config.clone(), Arc::new(clock.clone())),
            "open",
        )?;
        Ok(Harness {
            dir,
            config,
            clock,
            log: Some(log),
            keys: KEYS[..nkeys].to_vec(),
            model: BTreeMap::new(),
            seq: 0,
        })
    }

    fn log(&self) -> &Log {
        self.log.as_ref().expect("the log is open")
    }

    fn key(&self, p: usize) -> &'static str {
        self.keys[p % self.keys.len()]
    }

    /// The partition handle and model, or a check that the log agrees it does not exist.
    fn target(&self, p: usize) -> R<Option<(Partition, MPart)>> {
        let key = self.key(p);
        match (self.model.get(key), self.log().partition(key)) {
            (Some(m), Ok(part)) => Ok(Some((part, m.clone()))),
            (None, Err(LogError::UnknownPartition(k))) if k == key => Ok(None),
            (Some(_), Err(e)) => fail(format!("partition {key}: {e:?}, but it exists")),
            (None, Ok(_)) => fail(format!("partition {key} exists after being deleted")),
            (None, Err(e)) => fail(format!(
                "partition {key}: expected UnknownPartition, got {e:?}"
            )),
        }
    }

    async fn check_all(&self, what: &str) -> R {
        let mut keys: Vec<String> = self.model.keys().map(|k| k.to_string()).collect();
        keys.sort();
        prop_assert_eq!(
            self.log().partition_keys(),
            keys,
            "{}: partition keys",
            what
        );
        for p in 0..self.keys.len() {
            if let Some((part, m)) = self.target(p)? {
                let what = format!("{what} [{}]", part.key());
                check_meta(&part, &m, &what)?;
                scan(&part, &m, &what).await?;
            }
        }
        Ok(())
    }

    async fn fingerprint(&self) -> R<Fingerprint> {
        let log = self.log();
        let mut partitions = Vec::new();
        for key in log.partition_keys() {
            let part = ok(log.partition(&key), "partition")?;
            let m = self
                .model
                .get(key.as_str())
                .cloned()
                .unwrap_or_else(MPart::new);
            let batches = scan(&part, &m, "fingerprint").await?;
            let epochs = (-1..=m.current_epoch() + 1)
                .map(|e| part.end_offset_for_epoch(e))
                .collect();
            partitions.push(PartitionFingerprint {
                offsets: part.offsets(),
                segments: part.segments(),
                batches,
                epochs,
            });
        }
        Ok(Fingerprint {
            keys: log.partition_keys(),
            partitions,
        })
    }

    fn reopen(&mut self) -> R {
        drop(self.log.take());
        let log = ok(
            Log::open_with_clock(
                self.dir.path(),
                self.config.clone(),
                Arc::new(self.clock.clone()),
            ),
            "reopen",
        )?;
        self.log = Some(log);
        Ok(())
    }

    /// Journal files must be reclaimed once no partition holds local data:
    /// at once by a delete or a retention move, at the latest by housekeeping.
    async fn check_journal_reclaimed(&self, what: &str, wait: bool) -> R {
        if !self.model.values().all(|m| m.local_start == m.end()) {
            return Ok(());
        }
        let patience = if wait { 2000 } else { 0 };
        let deadline = std::time::Instant::now() + std::time::Duration::from_millis(patience);
        loop {
            let files = self.log().journal_files();
            if files.len() <= 2 {
                return Ok(());
            }
            if std::time::Instant::now() >= deadline {
                return fail(format!(
                    "{what}: no partition holds local data, yet journal files {files:?} remain"
                ));
            }
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
    }

    /// Checks that a failed operation left the partition as it was.
    fn unchanged(part: &Partition, before: &(PartitionOffsets, Vec<SegmentInfo>), what: &str) -> R {
        prop_assert_eq!(
            part.offsets(),
            before.0,
            "{}: a failed operation changed the offsets",
            what
        );
        prop_assert_eq!(
            &part.segments(),
            &before.1,
            "{}: a failed operation changed the segments",
            what
        );
        Ok(())
    }

    async fn apply(&mut self, op: &Op) -> R {
        let what = format!("{op:?}");
        match op {
            Op::Create(p) => {
                let key = self.key(*p);
                let exists = self.model.contains_key(key);
                let r = self.log().create_partition(key, None).await;
                match (exists, r) {
                    (true, Err(LogError::PartitionExists(k))) if k == key => {}
                    (false, Ok(part)) => {
                        prop_assert_eq!(part.key(), key);
                        self.model.insert(key, MPart::new());
                    }
                    (exists, r) => {
                        return fail(format!("{what}: exists={exists}, got {:?}", r.map(|_| ())));
                    }
                }
            }
            Op::Delete(p) => {
                let key = self.key(*p);
                let Some((part, _)) = self.target(*p)? else {
                    let r = self.log().delete_partition(key).await;
                    prop_assert!(
                        matches!(r, Err(LogError::UnknownPartition(_))),
                        "{}: got {:?}",
                        what,
                        r
                    );
                    return Ok(());
                };
                ok(self.log().delete_partition(key).await, &what)?;
                self.model.remove(key);
                self.check_journal_reclaimed(&what, false).await?;
                // A handle taken before the delete is dead.
                let r = part
                    .append(&one_batch()[..], AppendOptions::default())
                    .await;
                prop_assert!(
                    matches!(r, Err(LogError::UnknownPartition(_))),
                    "{}: append on a deleted handle: {:?}",
                    what,
                    r
                );
                let r = part.read(0, 1 << 20).await;
                prop_assert!(
                    matches!(r, Err(LogError::UnknownPartition(_))),
                    "{}: read on a deleted handle: {:?}",
                    what,
                    r
                );
            }
            Op::Append {
                p,
                batches,
                codec: c,
                expect,
                epoch,
                write_only,
            } => {
                let Some((part, m)) = self.target(*p)? else {
                    return Ok(());
                };
                let end = m.end();
                let current = m.current_epoch();
                let expected_offset = match *expect {
                    Expect::Unset => None,
                    Expect::Right => Some(end),
                    Expect::Wrong(d) => {
                        let d = u64::from(d);
                        Some(if d.is_multiple_of(2) || end <= d / 2 {
                            end + 1 + d / 2
                        } else {
                            end - 1 - d / 2
                        })
                    }
                };
                let leader_epoch = match *epoch {
                    Epoch::Unset => None,
                    Epoch::Current => Some(current),
                    Epoch::Bump(n) => Some(current + 1 + i32::from(n % 3)),
                    Epoch::Stale(n) => Some(current - 1 - i32::from(n % 2)),
                };
                let mut buf = Vec::new();
                let mut built = Vec::new();
                let mut max_ts = -1;
                let mut count = 0;
                for recs in batches {
                    let mut b = BatchBuilder::new(codec(*c));
                    let mut model_recs = Vec::new();
                    for r in recs {
                        self.seq += 1;
                        let key = r.key.clone().map(Bytes::from);
                        let value = r
                            .value_len
                            .map(|len| Bytes::from(value(self.seq, len as usize)));
                        b.push(key.clone(), value.clone(), vec![], r.ts);
                        model_recs.push((key, value, r.ts));
                        max_ts = max_ts.max(r.ts);
                        count += 1;
                    }
                    let bytes = b.build().map_err(|e| TestCaseError::fail(e.to_string()))?;
                    buf.extend_from_slice(&bytes);
                    built.push((bytes.len() as u64, model_recs));
                }
                let before = (part.offsets(), part.segments());
                let options = AppendOptions {
                    leader_epoch,
                    expected_offset,
                    durability: write_only.then_some(Durability::Write),
                };
                let r = part.append(&buf[..], options).await;
                let stamped = leader_epoch.unwrap_or(current);
                match expected_offset {
                    Some(e) if e != end => {
                        prop_assert!(
                            matches!(r, Err(LogError::OffsetMismatch { expected, actual }) if expected == e && actual == end),
                            "{}: expected OffsetMismatch, got {:?}",
                            what,
                            r
                        );
                        Self::unchanged(&part, &before, &what)?;
                    }
                    _ if stamped < current => {
                        prop_assert!(
                            matches!(r, Err(LogError::StaleEpoch { got, current: c }) if got == stamped && c == current),
                            "{}: expected StaleEpoch, got {:?}",
                            what,
                            r
                        );
                        Self::unchanged(&part, &before, &what)?;
                    }
                    _ => {
                        let a = ok(r, &what)?;
                        prop_assert_eq!(
                            (a.base_offset, a.next_offset, a.max_timestamp),
                            (end, end + count, max_ts),
                            "{}: appended",
                            what
                        );
                        self.model
                            .get_mut(self.key(*p))
                            .expect("exists")
                            .append(built, stamped);
                    }
                }
            }
            Op::Read {
                p,
                at,
                max_bytes,
                high_watermark,
            } => {
                let Some((part, m)) = self.target(*p)? else {
                    return Ok(());
                };
                let offset = m.pick_offset(*at);
                let hw = high_watermark.map(|h| m.pick_offset(h));
                let r = match hw {
                    None => part.read(offset, *max_bytes).await,
                    Some(hw) => {
                        let part = part.clone();
                        let max_bytes = *max_bytes;
                        tokio::task::spawn_blocking(move || {
                            part.read_up_to_blocking(offset, max_bytes, hw)
                        })
                        .await
                        .map_err(|e| TestCaseError::fail(e.to_string()))?
                    }
                };
                if offset < m.local_start || offset > m.end() {
                    prop_assert!(
                        matches!(r, Err(LogError::OffsetOutOfRange { offset: o, start, end })
                            if o == offset && start == m.local_start && end == m.end()),
                        "{}: read({}) expected OffsetOutOfRange, got {:?}",
                        what,
                        offset,
                        r.map(|r| r.next_offset)
                    );
                    return Ok(());
                }
                let r = ok(r, &what)?;
                prop_assert_eq!(r.end_offset, m.end(), "{}: end offset", what);
                prop_assert_eq!(r.log_start, m.log_start, "{}: log start", what);
                let upper = hw.map_or(m.end(), |h| h.min(m.end()));
                let mut got = Vec::new();
                for c in &r.chunks {
                    split_chunk(c, &mut got, &what)?;
                }
                // Below a high watermark only whole batches that end at or below it are served.
                let holding_next = m
                    .batches
                    .iter()
                    .find(|b| b.base <= offset && offset < b.next)
                    .map_or(u64::MAX, |b| b.next);
                if offset >= upper || (hw.is_some() && holding_next > upper) {
                    prop_assert!(
                        got.is_empty(),
                        "{}: data at or past the limit {}",
                        what,
                        upper
                    );
                    prop_assert_eq!(
                        r.next_offset,
                        offset,
                        "{}: next offset of an empty read",
                        what
                    );
                    return Ok(());
                }
                prop_assert!(
                    !got.is_empty(),
                    "{}: nothing read at {} below {}",
                    what,
                    offset,
                    upper
                );
                prop_assert!(
                    got[0].base <= offset && offset < got[0].next,
                    "{}: first batch [{}, {}) does not hold offset {}",
                    what,
                    got[0].base,
                    got[0].next,
                    offset
                );
                let total: usize = got.iter().map(|b| b.bytes.len()).sum();
                prop_assert!(
                    got.len() == 1 || total <= *max_bytes,
                    "{}: {} batches, {} bytes, over max_bytes {}",
                    what,
                    got.len(),
                    total,
                    max_bytes
                );
                for (i, b) in got.iter().enumerate() {
                    if i > 0 {
                        prop_assert_eq!(
                            b.base,
                            got[i - 1].next,
                            "{}: batches not contiguous",
                            what
                        );
                    }
                    prop_assert!(
                        b.next <= upper,
                        "{}: batch [{}, {}) reaches past the limit {}",
                        what,
                        b.base,
                        b.next,
                        upper
                    );
                    check_batch(&m, b, m.end(), &what)?;
                }
                prop_assert_eq!(
                    r.next_offset,
                    got.last().map_or(offset, |b| b.next),
                    "{}: next offset",
                    what
                );
            }
            Op::ReadTimestamp { p, ts } => {
                let Some((part, m)) = self.target(*p)? else {
                    return Ok(());
                };
                let got = ok(part.offset_for_timestamp(*ts).await, &what)?;
                prop_assert_eq!(
                    got,
                    m.offset_for_timestamp(*ts),
                    "{}: offset for timestamp {}",
                    what,
                    ts
                );
            }
            Op::Truncate { p, at } => {
                let Some((part, m)) = self.target(*p)? else {
                    return Ok(());
                };
                let offset = m.pick_offset_near_end(*at);
                let before = (part.offsets(), part.segments());
                let r = part.truncate(offset).await;
                let mid_batch = offset < m.end() && m.records[offset as usize].batch_base != offset;
                match r {
                    Ok(()) if m.truncate_valid(offset) => {
                        self.model
                            .get_mut(self.key(*p))
                            .expect("exists")
                            .truncate(offset);
                    }
                    Err(LogError::InvalidOperation(_))
                        if !m.truncate_valid(offset) || mid_batch =>
                    {
                        // Refusing to cut a batch in two is fine too.
                        Self::unchanged(&part, &before, &what)?;
                    }
                    r => {
                        return fail(format!(
                            "{what}: truncate({offset}) with offsets {:?}, valid={}: got {r:?}",
                            m.offsets(),
                            m.truncate_valid(offset)
                        ));
                    }
                }
            }
            Op::AdvanceStart { p, at } => {
                let Some((part, m)) = self.target(*p)? else {
                    return Ok(());
                };
                let offset = m.pick_offset(*at);
                let before = (part.offsets(), part.segments());
                let r = part.advance_start_offset(offset).await;
                if offset > m.end() {
                    prop_assert!(
                        matches!(r, Err(LogError::InvalidOperation(_))),
                        "{}: advance to {}: {:?}",
                        what,
                        offset,
                        r
                    );
                    Self::unchanged(&part, &before, &what)?;
                } else {
                    ok(r, &what)?;
                    self.model
                        .get_mut(self.key(*p))
                        .expect("exists")
                        .advance_start(offset);
                    self.check_journal_reclaimed(&what, false).await?;
                }
            }
            Op::Seal(p) => {
                let Some((part, _)) = self.target(*p)? else {
                    return Ok(());
                };
                ok(part.seal_active_segment().await, &what)?;
                self.model.get_mut(self.key(*p)).expect("exists").seal();
            }
            Op::MarkOffloaded { p, pick } => {
                let Some((part, m)) = self.target(*p)? else {
                    return Ok(());
                };
                let sealed: Vec<u64> = m
                    .segments
                    .iter()
                    .filter(|s| s.sealed)
                    .map(|s| s.base)
                    .collect();
                let next = m
                    .segments
                    .iter()
                    .find(|s| s.sealed && !s.offloaded)
                    .map(|s| s.base);
                let base = match (*pick, next) {
                    (Pick::Next, Some(base)) => base,
                    (Pick::Segment(i), _) if !sealed.is_empty() => {
                        sealed[i as usize % sealed.len()]
                    }
                    (Pick::Any(at) | Pick::Segment(at), _) => m.pick_offset(at),
                    (Pick::Next, None) => m.end(),
                };
                let before = (part.offsets(), part.segments());
                let r = part.mark_offloaded(base).await;
                if sealed.contains(&base) {
                    ok(r, &what)?;
                    let m = self.model.get_mut(self.key(*p)).expect("exists");
                    let s = m
                        .segments
                        .iter_mut()
                        .find(|s| s.base == base)
                        .expect("sealed");
                    s.offloaded = true;
                } else {
                    prop_assert!(
                        matches!(r, Err(LogError::InvalidOperation(_))),
                        "{}: offload {}: {:?}",
                        what,
                        base,
                        r
                    );
                    Self::unchanged(&part, &before, &what)?;
                }
            }
            Op::ReleaseLocal { p, pick } => {
                let Some((part, m)) = self.target(*p)? else {
                    return Ok(());
                };
                let up_to = match *pick {
                    Pick::Next => u64::MAX,
                    Pick::Segment(i) => m.segments[i as usize % m.segments.len()].end,
                    Pick::Any(at) => m.pick_offset(at),
                };
                ok(part.release_local(up_to).await, &what)?;
                self.model
                    .get_mut(self.key(*p))
                    .expect("exists")
                    .release_local(up_to);
            }
            Op::ReadSegment { p, pick } => {
                let Some((part, m)) = self.target(*p)? else {
                    return Ok(());
                };
                let sealed: Vec<&MSeg> = m.segments.iter().filter(|s| s.sealed).collect();
                if sealed.is_empty() {
                    let active = m.segments.last().expect("active").base;
                    let r = part.segment_reader(active).map(|_| ());
                    prop_assert!(
                        matches!(r, Err(LogError::InvalidOperation(_))),
                        "{}: reader of the active segment: {:?}",
                        what,
                        r
                    );
                    return Ok(());
                }
                let seg = sealed[*pick as usize % sealed.len()].clone();
                let mut reader = ok(part.segment_reader(seg.base), &what)?;
                prop_assert_eq!(&MSeg::of(reader.info()), &seg, "{}: reader info", what);
                let got = tokio::task::spawn_blocking(move || {
                    let mut chunks = Vec::new();
                    while let Some(c) = reader.next_chunk()? {
                        chunks.push(c);
                    }
                    Ok::<_, LogError>(chunks)
                })
                .await
                .map_err(|e| TestCaseError::fail(e.to_string()))?;
                let chunks = ok(got, &what)?;
                let mut batches = Vec::new();
                for c in &chunks {
                    split_chunk(c, &mut batches, &what)?;
                }
                let from = seg.base.max(m.local_start);
                prop_assert!(
                    !batches.is_empty(),
                    "{}: sealed segment {:?} read back empty",
                    what,
                    seg
                );
                prop_assert!(
                    batches[0].base >= seg.base && batches[0].base <= from,
                    "{}: segment {:?} (local from {}) starts with batch [{}, {})",
                    what,
                    seg,
                    from,
                    batches[0].base,
                    batches[0].next
                );
                if seg.base >= m.local_start {
                    prop_assert_eq!(
                        batches[0].base,
                        seg.base,
                        "{}: segment must start at its base",
                        what
                    );
                }
                for (i, b) in batches.iter().enumerate() {
                    if i > 0 {
                        prop_assert_eq!(
                            b.base,
                            batches[i - 1].next,
                            "{}: segment batches not contiguous",
                            what
                        );
                    }
                    check_batch(&m, b, seg.end, &what)?;
                }
                prop_assert_eq!(
                    batches.last().map(|b| b.next),
                    Some(seg.end),
                    "{}: segment must end at its end",
                    what
                );
            }
            Op::Reopen => {
                let before = self.fingerprint().await?;
                self.reopen()?;
                let after = self.fingerprint().await?;
                prop_assert_eq!(before, after, "state changed across a reopen");
            }
        }
        Ok(())
    }

    /// Retention takes everything: the journal must shrink to its current file.
    async fn finish(&mut self) -> R {
        for p in 0..self.keys.len() {
            if let Some((part, m)) = self.target(p)? {
                ok(part.advance_start_offset(m.end()).await, "final advance")?;
                self.model
                    .get_mut(self.key(p))
                    .expect("exists")
                    .advance_start(m.end());
            }
        }
        self.check_journal_reclaimed("after advancing every partition to its end", false)
            .await?;
        self.check_all("after advancing every partition to its end")
            .await?;
        self.reopen()?;
        self.check_all("after the final reopen").await
    }
}

/// A unique, poorly compressible record value.
fn value(seq: u64, len: usize) -> String {
    let mut x = seq.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut v = format!("r{seq}-");
    while v.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v.push(char::from(
            b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"[(x % 62) as usize],
        ));
    }
    v
}

/// A valid one-record batch.
fn one_batch() -> Bytes {
    let mut b = BatchBuilder::new(Compression::None);
    b.push(None, Some(Bytes::from_static(b"x")), vec![], 1);
    b.build().expect("one record")
}

fn run_case(nkeys: usize, ops: &[Op]) -> R {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| TestCaseError::fail(e.to_string()))?;
    runtime.block_on(async {
        let mut h = Harness::new(nkeys)?;
        for i in 0..nkeys {
            h.apply(&Op::Create(i)).await?;
        }
        h.check_all("after creating the partitions").await?;
        for (i, op) in ops.iter().enumerate() {
            h.apply(op)
                .await
                .map_err(|e| TestCaseError::fail(format!("op #{i}: {e}")))?;
            let what = format!("after op #{i} {op:?}");
            h.check_all(&what)
                .await
                .map_err(|e| TestCaseError::fail(format!("op #{i}: {e}")))?;
            h.check_journal_reclaimed(&what, true)
                .await
                .map_err(|e| TestCaseError::fail(format!("op #{i}: {e}")))?;
        }
        h.finish().await
    })
}

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(128)
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: cases(),
        // Only this file may be written: no regression files next to it.
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn log_matches_model(nkeys in 3usize..=5, ops in proptest::collection::vec(op_strategy(), 1..60)) {
        run_case(nkeys, &ops)?;
    }
}
