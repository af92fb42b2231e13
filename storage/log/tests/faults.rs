//! Fault injection on the journal: bit flips in every kind of on-disk
//! region, torn tails, mid-log corruption of the current file, and a full
//! disk. Whatever the damage, the log must either report it as
//! `LogError::Corrupt` naming the file and a position, or repair it without
//! changing a single acknowledged record; it must never serve wrong data.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use strata_log::batch::{self, BatchBuilder, Compression, decode_records};
use strata_log::{AppendOptions, Log, LogConfig, LogError, Partition};

// The on-disk format (src/frame.rs), restated so the test can aim its damage.
const FILE_HEADER_LEN: usize = 16;
const FRAME_HEADER_LEN: usize = 8;
/// Frame header, kind, partition id, append time.
const BATCHES_PAYLOAD_START: usize = 25;
const TRAILER_LEN: usize = 16;
const KIND_BATCHES: u8 = 1;
const KIND_CONTROL: u8 = 2;
const KIND_SNAPSHOT: u8 = 3;
const KIND_FOOTER: u8 = 4;

/// Small commits and batches so that "more than one commit's worth" is small.
fn config(journal_file_bytes: u64) -> LogConfig {
    LogConfig {
        max_commit_bytes: 64 << 10,
        max_batch_bytes: 64 << 10,
        journal_file_bytes,
        ..LogConfig::default()
    }
}

/// How far past a bad frame a torn commit can reach (the bound recovery documents).
fn torn_tail_bound(c: &LogConfig) -> usize {
    c.max_commit_bytes + 2 * c.max_batch_bytes + 64 * 1024
}

// ---------------------------------------------------------------------------
// Deterministic randomness.

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        // splitmix64
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.below(hi - lo + 1)
    }
}

// ---------------------------------------------------------------------------
// Writing a log and remembering what it holds.

/// Every acknowledged record, by partition key and offset.
#[derive(Clone, Debug, Default, PartialEq)]
struct Model {
    parts: BTreeMap<String, Vec<String>>,
}

impl Model {
    fn ends(&self) -> BTreeMap<String, u64> {
        self.parts
            .iter()
            .map(|(k, v)| (k.clone(), v.len() as u64))
            .collect()
    }
}

fn record_value(key: &str, offset: u64, pad: usize) -> String {
    format!("{key}@{offset}:{}", "x".repeat(pad))
}

/// The partition key a record value was written for.
fn key_of(value: &str) -> &str {
    value.split('@').next().unwrap_or_default()
}

fn build_batch(values: &[String], ts: i64) -> Bytes {
    let mut b = BatchBuilder::new(Compression::None);
    for (i, v) in values.iter().enumerate() {
        b.push(
            Some(Bytes::from(format!("k{i}"))),
            Some(Bytes::from(v.clone())),
            vec![],
            ts + i as i64,
        );
    }
    b.build().unwrap()
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// One round: every partition gets one append of 1..=`max_records` records,
/// all submitted concurrently so they share commits. Updates `model`.
async fn append_round(
    parts: &[Partition],
    model: &mut Model,
    rng: &mut Rng,
    max_records: u64,
    max_pad: u64,
) {
    let mut handles = Vec::new();
    for p in parts {
        let values_so_far = model.parts.entry(p.key().to_string()).or_default();
        let base = values_so_far.len() as u64;
        let n = rng.range(1, max_records);
        let values: Vec<String> = (0..n)
            .map(|i| record_value(p.key(), base + i, rng.below(max_pad + 1) as usize))
            .collect();
        let p = p.clone();
        handles.push(tokio::spawn(async move {
            let appended = p
                .append(
                    build_batch(&values, 1_000 + base as i64).as_ref(),
                    AppendOptions::default(),
                )
                .await;
            (p.key().to_string(), base, values, appended)
        }));
    }
    for h in handles {
        let (key, base, values, appended) = h.await.unwrap();
        let appended = appended.unwrap_or_else(|e| panic!("append to {key} failed: {e}"));
        assert_eq!(appended.base_offset, base, "{key}");
        assert_eq!(appended.next_offset, base + values.len() as u64, "{key}");
        model.parts.get_mut(&key).unwrap().extend(values);
    }
}

// ---------------------------------------------------------------------------
// Reading a log back and comparing it with the model.

/// What reading a whole log back found.
#[derive(Debug, Default)]
struct ReadBack {
    ends: BTreeMap<String, u64>,
    /// Reads that failed with `Corrupt`: (key, offset, location file, position).
    corrupt: Vec<(String, u64, PathBuf, u64)>,
}

/// Reads every offset of every partition. Every record served must equal the
/// model's record at its offset; `Corrupt` errors are collected; any other
/// error fails the test.
fn read_back(log: &Log, model: &Model, what: &str) -> ReadBack {
    let mut out = ReadBack::default();
    assert_eq!(
        log.partition_keys(),
        model.parts.keys().cloned().collect::<Vec<_>>(),
        "{what}: partition set changed"
    );
    for (key, expected) in &model.parts {
        let p = log.partition(key).unwrap();
        let offsets = p.offsets();
        assert_eq!(offsets.log_start, 0, "{what}: {key}");
        let end = offsets.end;
        assert!(
            end <= expected.len() as u64,
            "{what}: {key} ends at {end}, but only {} records were ever written",
            expected.len()
        );
        out.ends.insert(key.clone(), end);
        let mut o = 0u64;
        while o < end {
            match p.read_blocking(o, 16 << 10) {
                Ok(read) => {
                    assert!(
                        read.next_offset > o,
                        "{what}: {key}: read at {o} made no progress"
                    );
                    assert!(read.next_offset <= end, "{what}: {key}: read past the end");
                    let mut expect_offset = None;
                    for b in read.batches() {
                        let records = decode_records(&b, 1 << 20).unwrap_or_else(|e| {
                            panic!("{what}: {key}: served batch at {o} does not decode: {e}")
                        });
                        for r in records {
                            let off = u64::try_from(r.offset).unwrap();
                            if let Some(e) = expect_offset {
                                assert_eq!(off, e, "{what}: {key}: served offsets not contiguous");
                            }
                            expect_offset = Some(off + 1);
                            let value = String::from_utf8(r.value.unwrap().to_vec()).unwrap();
                            assert_eq!(
                                Some(&value),
                                expected.get(off as usize),
                                "{what}: {key}: WRONG DATA served at offset {off}"
                            );
                        }
                    }
                    assert_eq!(
                        expect_offset,
                        Some(read.next_offset),
                        "{what}: {key}: read at {o} ends where next_offset does not say"
                    );
                    assert!(expect_offset.is_some_and(|e| e > o));
                    o = read.next_offset;
                }
                Err(LogError::Corrupt { location, .. }) => {
                    out.corrupt
                        .push((key.clone(), o, location.file, location.position));
                    o += 1;
                }
                Err(e) => {
                    panic!("{what}: {key}: read at {o} failed with a non-corruption error: {e:?}")
                }
            }
        }
    }
    out
}

/// Reads everything and requires it to equal the model exactly.
fn assert_identical(log: &Log, model: &Model, what: &str) {
    let r = read_back(log, model, what);
    assert!(
        r.corrupt.is_empty(),
        "{what}: reads failed: {:?}",
        r.corrupt
    );
    assert_eq!(r.ends, model.ends(), "{what}: end offsets");
}

// ---------------------------------------------------------------------------
// Parsing the journal files, to know where each region is.

#[derive(Clone, Debug)]
struct FrameInfo {
    pos: usize,
    len: usize,
    kind: u8,
    /// For a batches frame: the partition key and offsets it holds.
    run: Option<(String, u64, u64)>,
}

#[derive(Clone, Debug)]
struct FileLayout {
    name: String,
    len: usize,
    frames: Vec<FrameInfo>,
    trailer: Option<usize>,
}

impl FileLayout {
    fn frame_at(&self, pos: usize) -> Option<usize> {
        self.frames
            .iter()
            .position(|f| f.pos <= pos && pos < f.pos + f.len)
    }
}

fn journal_dir(dir: &Path) -> PathBuf {
    dir.join("journal")
}

fn journal_files(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(journal_dir(dir))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".wal"))
        .collect();
    names.sort();
    names
}

fn be_u32(b: &[u8]) -> u32 {
    u32::from_be_bytes(b[..4].try_into().unwrap())
}

fn parse_file(path: &Path) -> FileLayout {
    let bytes = std::fs::read(path).unwrap();
    assert_eq!(&bytes[..8], b"STRATAJ1", "{}", path.display());
    let mut frames = Vec::new();
    let mut pos = FILE_HEADER_LEN;
    let mut trailer = None;
    while pos < bytes.len() {
        let body_len = be_u32(&bytes[pos..]) as usize;
        let len = FRAME_HEADER_LEN + body_len;
        assert!(
            pos + len <= bytes.len(),
            "{}: frame at {pos}",
            path.display()
        );
        let kind = bytes[pos + FRAME_HEADER_LEN];
        let run = (kind == KIND_BATCHES).then(|| {
            let payload = &bytes[pos + BATCHES_PAYLOAD_START..pos + len];
            let mut first = None;
            let mut next = 0;
            let mut key = String::new();
            for item in batch::batches(payload) {
                let (h, range) = item.unwrap();
                first.get_or_insert(h.base_offset as u64);
                next = h.next_offset() as u64;
                let records = decode_records(&payload[range], 1 << 20).unwrap();
                let v = records[0].value.as_ref().unwrap();
                key = key_of(std::str::from_utf8(v).unwrap()).to_string();
            }
            (key, first.unwrap(), next)
        });
        frames.push(FrameInfo {
            pos,
            len,
            kind,
            run,
        });
        pos += len;
        if kind == KIND_FOOTER {
            assert_eq!(pos + TRAILER_LEN, bytes.len(), "{}", path.display());
            assert_eq!(&bytes[pos + 8..], b"STRATAFT");
            trailer = Some(pos);
            break;
        }
    }
    assert_eq!(frames.first().map(|f| f.kind), Some(KIND_SNAPSHOT));
    FileLayout {
        name: path.file_name().unwrap().to_str().unwrap().to_string(),
        len: bytes.len(),
        frames,
        trailer,
    }
}

fn parse_journal(dir: &Path) -> Vec<FileLayout> {
    journal_files(dir)
        .iter()
        .map(|n| parse_file(&journal_dir(dir).join(n)))
        .collect()
}

/// The end offsets a log has if the last file is cut just before frame `from`
/// (everything from that frame on is dropped).
fn ends_cut_at(model: &Model, last: &FileLayout, from: usize) -> BTreeMap<String, u64> {
    let mut ends = model.ends();
    for f in &last.frames[from..] {
        if let Some((key, base, _)) = &f.run {
            let e = ends.get_mut(key).unwrap();
            *e = (*e).min(*base);
        }
    }
    ends
}

/// Copies a data directory's journal into a fresh temporary directory.
fn copy_data_dir(src: &Path) -> tempfile::TempDir {
    let dst = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(journal_dir(dst.path())).unwrap();
    for name in journal_files(src) {
        std::fs::copy(
            journal_dir(src).join(&name),
            journal_dir(dst.path()).join(&name),
        )
        .unwrap();
    }
    dst
}

fn flip_byte(path: &Path, pos: usize, mask: u8) {
    let mut bytes = std::fs::read(path).unwrap();
    bytes[pos] ^= mask;
    std::fs::write(path, bytes).unwrap();
}

/// Writes a log with several partitions spanning several journal files.
/// Returns the model and the config used.
fn write_multi_file_log(dir: &Path, seed: u64) -> (Model, LogConfig) {
    let cfg = config(64 << 10);
    let mut rng = Rng(seed);
    let mut model = Model::default();
    rt().block_on(async {
        let log = Log::open(dir, cfg.clone()).unwrap();
        let mut parts = Vec::new();
        for i in 0..5 {
            let p = log.create_partition(&format!("t/{i}"), None).await.unwrap();
            model.parts.insert(p.key().to_string(), Vec::new());
            parts.push(p);
        }
        let mut round = 0;
        loop {
            append_round(&parts, &mut model, &mut rng, 6, 120).await;
            round += 1;
            if round % 17 == 0 {
                // Control frames in the journal too.
                parts[round % parts.len()]
                    .seal_active_segment()
                    .await
                    .unwrap();
            }
            let pos = log.journal_position();
            // At least 6 files, and the last one well filled but not closed.
            if log.journal_files().len() >= 6 && pos.written > 40 << 10 {
                break;
            }
            assert!(round < 10_000);
        }
        log.close();
    });
    (model, cfg)
}

// ---------------------------------------------------------------------------
// 1a. Bit flips in every kind of region.

#[derive(Clone, Debug)]
struct Flip {
    file: usize,
    pos: usize,
    mask: u8,
    region: String,
}

fn flip_targets(layouts: &[FileLayout], rng: &mut Rng) -> Vec<Flip> {
    let last = layouts.len() - 1;
    let chosen = [0, layouts.len() / 2, last - 1, last];
    let mut flips = Vec::new();
    let mut add = |file: usize, pos: usize, region: String| {
        for mask in [0x01u8, 0x80, 0xFF] {
            flips.push(Flip {
                file,
                pos,
                mask,
                region: region.clone(),
            });
        }
    };
    for &fi in &chosen {
        let l = &layouts[fi];
        let which = if fi == last { "current" } else { "closed" };
        add(fi, 0, format!("{which} file header magic"));
        add(fi, 15, format!("{which} file header sequence"));
        let snap = &l.frames[0];
        add(fi, snap.pos, format!("{which} snapshot length (high byte)"));
        add(
            fi,
            snap.pos + 3,
            format!("{which} snapshot length (low byte)"),
        );
        add(fi, snap.pos + 5, format!("{which} snapshot crc"));
        add(fi, snap.pos + 8, format!("{which} snapshot kind"));
        add(
            fi,
            snap.pos + 9 + rng.below((snap.len - 9) as u64) as usize,
            format!("{which} snapshot body"),
        );
        let batches: Vec<&FrameInfo> = l.frames.iter().filter(|f| f.kind == KIND_BATCHES).collect();
        let picks = [0, batches.len() / 2, batches.len() - 1];
        for (n, &bi) in picks.iter().enumerate() {
            let f = batches[bi];
            let tag = ["first", "middle", "last"][n];
            let p = f.pos;
            let b = p + BATCHES_PAYLOAD_START;
            let mut add_b = |off: usize, what: &str| {
                add(fi, off, format!("{which} {tag} batches frame: {what}"));
            };
            add_b(p, "frame length (high byte)");
            add_b(p + 3, "frame length (low byte)");
            add_b(p + 6, "frame crc");
            add_b(p + 8, "frame kind");
            add_b(p + 16, "partition id");
            add_b(p + 20, "append time");
            add_b(b + 7, "batch base offset");
            add_b(b + 11, "batch length");
            add_b(b + 15, "batch leader epoch");
            add_b(b + 16, "batch magic");
            add_b(b + 18, "batch crc");
            add_b(b + 26, "batch last offset delta");
            add_b(b + 60, "batch record count");
            add_b(
                b + 61 + rng.below((f.pos + f.len - b - 61) as u64) as usize,
                "batch records",
            );
            add_b(p + f.len - 1, "last byte");
        }
        if let Some(c) = l.frames.iter().find(|f| f.kind == KIND_CONTROL) {
            add(fi, c.pos + 3, format!("{which} control frame length"));
            add(fi, c.pos + c.len - 2, format!("{which} control frame body"));
        }
        if let Some(t) = l.trailer {
            let footer = l.frames.last().unwrap();
            assert_eq!(footer.kind, KIND_FOOTER);
            add(fi, footer.pos + 3, format!("{which} footer length"));
            add(fi, footer.pos + 4, format!("{which} footer crc"));
            add(fi, footer.pos + 9 + 7, format!("{which} footer run count"));
            for k in 0..3 {
                add(
                    fi,
                    footer.pos + 9 + 8 + rng.below((footer.len - 17) as u64) as usize,
                    format!("{which} footer runs #{k}"),
                );
            }
            add(fi, t + 7, format!("{which} trailer footer position"));
            add(fi, t + 2, format!("{which} trailer footer position (high)"));
            add(fi, t + 8, format!("{which} trailer magic"));
            add(fi, t + 15, format!("{which} trailer magic end"));
        }
    }
    flips
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Outcome {
    DetectedAtOpen,
    DetectedOnRead,
    Harmless,
    TornTailCut,
}

fn run_flip_case(
    src: &Path,
    layouts: &[FileLayout],
    model: &Model,
    cfg: &LogConfig,
    flip: &Flip,
) -> Outcome {
    let copy = copy_data_dir(src);
    let layout = &layouts[flip.file];
    let path = journal_dir(copy.path()).join(&layout.name);
    flip_byte(&path, flip.pos, flip.mask);
    let what = format!(
        "flip {:#04x} at byte {} of {} ({})",
        flip.mask, flip.pos, layout.name, flip.region
    );
    let check_location = |file: &Path, position: u64, context: &str| {
        assert_eq!(
            file, path,
            "{what}: {context}: Corrupt names the wrong file"
        );
        assert!(
            position <= flip.pos as u64,
            "{what}: {context}: Corrupt names byte {position}, after the damage"
        );
        if let Some(fi) = layout.frame_at(flip.pos)
            && fi > 0
        {
            // Damage inside a frame after the snapshot: the report points into that frame.
            let f = &layout.frames[fi];
            assert!(
                position >= f.pos as u64,
                "{what}: {context}: Corrupt names byte {position}, before the damaged frame at {}",
                f.pos
            );
        }
    };
    let log = match Log::open(copy.path(), cfg.clone()) {
        Err(LogError::Corrupt { location, reason }) => {
            check_location(&location.file, location.position, "open");
            eprintln!("    {what}: open failed: {reason}");
            return Outcome::DetectedAtOpen;
        }
        Err(e) => panic!("{what}: open failed with a non-corruption error: {e:?}"),
        Ok(log) => log,
    };
    let r = read_back(&log, model, &what);
    for (key, offset, file, position) in &r.corrupt {
        check_location(file, *position, &format!("read of {key} at {offset}"));
    }
    if r.ends == model.ends() {
        return if r.corrupt.is_empty() {
            Outcome::Harmless
        } else {
            Outcome::DetectedOnRead
        };
    }
    // Acknowledged data is missing. The only case where that is by design:
    // damage in a frame of the current file close enough to its end that it
    // could be the torn last commit (src/recovery.rs, step 4).
    let last = layouts.len() - 1;
    let frame = layout.frame_at(flip.pos);
    let bound = torn_tail_bound(cfg);
    let torn_tail_like = flip.file == last
        && frame.is_some_and(|fi| {
            fi > 0
                && !layout
                    .frames
                    .iter()
                    .any(|f| f.pos >= layout.frames[fi].pos + bound)
        });
    assert!(
        torn_tail_like,
        "{what}: ACKNOWLEDGED DATA LOST without an error: ends {:?}, expected {:?}",
        r.ends,
        model.ends()
    );
    let fi = frame.unwrap();
    assert!(r.corrupt.is_empty(), "{what}: {:?}", r.corrupt);
    assert_eq!(
        r.ends,
        ends_cut_at(model, layout, fi),
        "{what}: the torn tail was not cut exactly at the damaged frame"
    );
    // Appends continue right at the cut.
    rt().block_on(async {
        for (key, end) in &r.ends {
            let p = log.partition(key).unwrap();
            let v = vec![record_value(key, *end, 3)];
            let a = p
                .append(build_batch(&v, 5).as_ref(), AppendOptions::default())
                .await
                .unwrap();
            assert_eq!(a.base_offset, *end, "{what}: append after the cut");
        }
    });
    Outcome::TornTailCut
}

/// Flips bytes in every kind of region of closed files and of the current
/// file. Accepted outcomes: `Corrupt` at open or on the read of the damaged
/// data (naming the damaged file and a position at or before the damage), or
/// no effect at all; and, only for a frame after the snapshot of the current
/// file with no frame starting `torn_tail_bound` or more past it, a cut at
/// exactly that frame (indistinguishable from a torn last commit). Anything
/// served must equal what was written; acknowledged data must never vanish
/// otherwise.
///
/// Known failure (library bug): a flip in the high byte of the current file's
/// snapshot length makes recovery take the file for a torn roll and delete it.
#[test]
fn bit_flips_are_detected_or_harmless_never_wrong_data() {
    let dir = tempfile::tempdir().unwrap();
    let (model, cfg) = write_multi_file_log(dir.path(), 0x5EED_0001);
    let layouts = parse_journal(dir.path());
    assert!(layouts.len() >= 6, "{} journal files", layouts.len());
    assert!(
        layouts[..layouts.len() - 1]
            .iter()
            .all(|l| l.trailer.is_some())
    );
    assert!(layouts.last().unwrap().trailer.is_none());
    // Sanity: the undamaged log reads back exactly.
    {
        let copy = copy_data_dir(dir.path());
        let log = Log::open(copy.path(), cfg.clone()).unwrap();
        assert_identical(&log, &model, "undamaged copy");
    }
    let mut rng = Rng(0xF11F);
    let flips = flip_targets(&layouts, &mut rng);
    let mut summary: BTreeMap<String, BTreeMap<Outcome, usize>> = BTreeMap::new();
    let mut failures = Vec::new();
    for flip in &flips {
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            run_flip_case(dir.path(), &layouts, &model, &cfg, flip)
        }));
        match outcome {
            Ok(o) => {
                *summary
                    .entry(flip.region.clone())
                    .or_default()
                    .entry(o)
                    .or_default() += 1
            }
            Err(e) => {
                let msg = e
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default();
                failures.push(msg);
            }
        }
    }
    eprintln!("bit flip outcomes ({} cases):", flips.len());
    for (region, outcomes) in &summary {
        eprintln!("  {region:<60} {outcomes:?}");
    }
    assert!(
        failures.is_empty(),
        "{} of {} bit flip cases failed:\n{}",
        failures.len(),
        flips.len(),
        failures.join("\n")
    );
    // Damage to stored batches of closed files is always caught on read.
    for (region, outcomes) in &summary {
        if region.starts_with("closed") && region.contains("batches frame") {
            assert_eq!(
                outcomes.keys().copied().collect::<Vec<_>>(),
                vec![Outcome::DetectedOnRead],
                "{region}"
            );
        }
    }
}

// ---------------------------------------------------------------------------
// 1b. Torn tails: the last file cut at many lengths.

#[test]
fn torn_tail_of_last_file_is_cut_at_a_whole_frame() {
    let dir = tempfile::tempdir().unwrap();
    let (model, cfg) = write_multi_file_log(dir.path(), 0x5EED_0002);
    let layouts = parse_journal(dir.path());
    let last = layouts.last().unwrap().clone();
    let snapshot_end = last.frames[0].pos + last.frames[0].len;
    let mut cuts = vec![0, 1, 15, 16, 17, 24, snapshot_end - 1, snapshot_end];
    for f in last.frames.iter().skip(1).take(4) {
        for d in [1usize, 8, 17, 30] {
            cuts.push(f.pos + d);
        }
        cuts.push(f.pos + f.len - 1);
        cuts.push(f.pos + f.len);
    }
    let mut rng = Rng(0x7042);
    for _ in 0..25 {
        cuts.push(rng.range(snapshot_end as u64, last.len as u64 - 1) as usize);
    }
    cuts.push(last.len - 1);
    cuts.sort_unstable();
    cuts.dedup();
    for cut in cuts {
        let what = format!("{} cut to {cut} of {} bytes", last.name, last.len);
        let copy = copy_data_dir(dir.path());
        let path = journal_dir(copy.path()).join(&last.name);
        std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len(cut as u64)
            .unwrap();
        // Everything from the first frame not wholly before the cut is gone;
        // a cut inside the snapshot leaves the state as of the file's start.
        let first_lost = last
            .frames
            .iter()
            .position(|f| f.pos + f.len > cut)
            .unwrap_or(last.frames.len());
        let expected_ends = ends_cut_at(&model, &last, first_lost);
        let mut expected = model.clone();
        for (key, end) in &expected_ends {
            expected.parts.get_mut(key).unwrap().truncate(*end as usize);
        }
        {
            let log = Log::open(copy.path(), cfg.clone())
                .unwrap_or_else(|e| panic!("{what}: open failed: {e:?}"));
            assert_identical(&log, &expected, &what);
            rt().block_on(async {
                for (key, values) in expected.parts.iter_mut() {
                    let p = log.partition(key).unwrap();
                    let end = values.len() as u64;
                    let v = vec![record_value(key, end, 5), record_value(key, end + 1, 0)];
                    let a = p
                        .append(build_batch(&v, 9).as_ref(), AppendOptions::default())
                        .await
                        .unwrap_or_else(|e| panic!("{what}: append after recovery: {e}"));
                    assert_eq!((a.base_offset, a.next_offset), (end, end + 2), "{what}");
                    values.extend(v);
                }
            });
            assert_identical(&log, &expected, &format!("{what}, after appending"));
        }
        let log = Log::open(copy.path(), cfg.clone())
            .unwrap_or_else(|e| panic!("{what}: second open failed: {e:?}"));
        assert_identical(&log, &expected, &format!("{what}, reopened"));
    }
}

/// A closed file whose footer write was cut short (a crash or a full disk
/// while rolling: the next file already exists, see `Committer::roll`, which
/// says "Recovery scans a file without a footer instead; nothing is lost").
///
/// Known failure (library bug): recovery's scan of the footer-less file fails
/// on the torn footer frame itself, so `Log::open` returns `Corrupt`.
#[test]
fn torn_footer_of_closed_file_is_scanned() {
    let dir = tempfile::tempdir().unwrap();
    let (model, cfg) = write_multi_file_log(dir.path(), 0x5EED_0003);
    let layouts = parse_journal(dir.path());
    let victim = &layouts[layouts.len() - 2];
    let footer = victim.frames.last().unwrap();
    assert_eq!(footer.kind, KIND_FOOTER);
    let mut failures = Vec::new();
    for cut in [
        footer.pos + 1,
        footer.pos + 8,
        footer.pos + footer.len / 2,
        footer.pos + footer.len,
        victim.len - 1,
    ] {
        let what = format!(
            "{} (footer at {}, {} bytes) cut to {cut}",
            victim.name, footer.pos, footer.len
        );
        let copy = copy_data_dir(dir.path());
        let path = journal_dir(copy.path()).join(&victim.name);
        std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len(cut as u64)
            .unwrap();
        match Log::open(copy.path(), cfg.clone()) {
            Ok(log) => assert_identical(&log, &model, &what),
            Err(e) => failures.push(format!("{what}: open failed: {e}")),
        }
    }
    assert!(
        failures.is_empty(),
        "a closed file with a torn footer (its data frames all intact) must be scanned, \
         not make the log unopenable:\n{}",
        failures.join("\n")
    );
}

// ---------------------------------------------------------------------------
// 2. Corruption in the middle of the current file, followed by more than one
//    commit's worth of valid frames, is corruption, not a torn tail.

#[test]
fn mid_log_corruption_in_current_file_fails_open() {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = Rng(0x3141);
    let mut model = Model::default();
    // A few closed files first, then one big current file.
    let small = config(64 << 10);
    let big = config(64 << 20);
    let bound = torn_tail_bound(&big);
    rt().block_on(async {
        let log = Log::open(dir.path(), small.clone()).unwrap();
        let mut parts = Vec::new();
        for i in 0..4 {
            parts.push(log.create_partition(&format!("m/{i}"), None).await.unwrap());
            model.parts.insert(format!("m/{i}"), Vec::new());
        }
        while log.journal_files().len() < 3 {
            append_round(&parts, &mut model, &mut rng, 8, 200).await;
        }
        drop(parts);
        log.close();
        drop(log);
        let log = Log::open(dir.path(), big.clone()).unwrap();
        let parts: Vec<Partition> = log
            .partition_keys()
            .iter()
            .map(|k| log.partition(k).unwrap())
            .collect();
        let start_file = log.journal_position().file;
        while log.journal_position().written < (3 * bound) as u64 {
            append_round(&parts, &mut model, &mut rng, 10, 400).await;
        }
        assert_eq!(log.journal_position().file, start_file, "no roll expected");
        log.close();
    });
    let layouts = parse_journal(dir.path());
    let last = layouts.last().unwrap();
    assert!(last.len > 3 * bound);
    // Frames far enough from the end that valid frames follow beyond the bound.
    let candidates: Vec<&FrameInfo> = last
        .frames
        .iter()
        .filter(|f| f.kind == KIND_BATCHES && f.pos + f.len + bound + (64 << 10) < last.len)
        .collect();
    assert!(candidates.len() > 10);
    let picks = [
        candidates[0],
        candidates[candidates.len() / 3],
        candidates[candidates.len() - 1],
    ];
    let mut cases: Vec<(usize, usize, u8, &str)> = Vec::new();
    for f in picks {
        let b = f.pos + BATCHES_PAYLOAD_START;
        cases.push((f.pos, f.pos, 0x80, "frame length high bit"));
        cases.push((f.pos, f.pos + 3, 0x04, "frame length low byte"));
        cases.push((f.pos, f.pos + 5, 0x01, "frame crc"));
        cases.push((f.pos, f.pos + 8, 0xFF, "frame kind"));
        cases.push((f.pos, f.pos + 16, 0x01, "partition id"));
        cases.push((f.pos, b + 7, 0x01, "batch base offset"));
        cases.push((f.pos, b + 70, 0x20, "record bytes"));
        cases.push((f.pos, f.pos + f.len - 1, 0x01, "last byte of frame"));
    }
    let mut failures = Vec::new();
    for (frame_pos, pos, mask, region) in cases {
        let what = format!(
            "{}: flip {mask:#04x} at byte {pos} ({region}) of the frame at {frame_pos}; file is {} bytes",
            last.name, last.len
        );
        let copy = copy_data_dir(dir.path());
        let path = journal_dir(copy.path()).join(&last.name);
        flip_byte(&path, pos, mask);
        let damaged = std::fs::read(&path).unwrap();
        for attempt in 0..2 {
            match Log::open(copy.path(), big.clone()) {
                Err(LogError::Corrupt { location, reason }) => {
                    if location.file != path || location.position != frame_pos as u64 {
                        failures.push(format!(
                            "{what}: Corrupt names {location}, expected {} at byte {frame_pos} ({reason})",
                            path.display()
                        ));
                    }
                }
                Err(e) => failures.push(format!("{what}: open failed with {e:?}, not Corrupt")),
                Ok(log) => {
                    let ends = log
                        .partition_keys()
                        .iter()
                        .map(|k| (k.clone(), log.partition(k).unwrap().offsets().end))
                        .collect::<BTreeMap<_, _>>();
                    failures.push(format!(
                        "{what}: open (attempt {attempt}) SUCCEEDED and silently dropped acknowledged data: \
                         ends {ends:?}, acknowledged {:?}",
                        model.ends()
                    ));
                    break;
                }
            }
            assert_eq!(
                std::fs::read(&path).unwrap(),
                damaged,
                "{what}: a failed open modified the journal file"
            );
        }
    }
    // A zeroed 4 KiB page (a lost write) in the middle of the file.
    {
        let f = candidates[candidates.len() / 2];
        let copy = copy_data_dir(dir.path());
        let path = journal_dir(copy.path()).join(&last.name);
        let mut bytes = std::fs::read(&path).unwrap();
        let page = (f.pos / 4096 + 1) * 4096;
        bytes[page..page + 4096].fill(0);
        std::fs::write(&path, &bytes).unwrap();
        let hit = last.frame_at(page).unwrap();
        let what = format!("{}: page at {page} zeroed", last.name);
        match Log::open(copy.path(), big.clone()) {
            Err(LogError::Corrupt { location, .. }) => {
                assert_eq!(location.file, path, "{what}");
                assert_eq!(location.position, last.frames[hit].pos as u64, "{what}");
            }
            Err(e) => failures.push(format!("{what}: open failed with {e:?}, not Corrupt")),
            Ok(_) => failures.push(format!(
                "{what}: open SUCCEEDED, dropping acknowledged data"
            )),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    // The undamaged log is still fine.
    let log = Log::open(dir.path(), big).unwrap();
    assert_identical(&log, &model, "undamaged");
}

// ---------------------------------------------------------------------------
// 3. A full disk.

/// A small tmpfs mounted for the test; unmounted on drop, also on failure.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    fn mount(size: &str) -> Result<Tmpfs, String> {
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let out = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .output()
            .map_err(|e| format!("could not run mount: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "mount -t tmpfs failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        Ok(Tmpfs { dir })
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let ok = std::process::Command::new("umount")
            .arg(self.dir.path())
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            // Something still holds it open; detach it so nothing leaks.
            let _ = std::process::Command::new("umount")
                .arg("-l")
                .arg(self.dir.path())
                .status();
        }
    }
}

/// Writes `path` until the file system is full (or `limit` bytes).
fn fill(path: &Path, limit: usize) -> usize {
    use std::io::Write;
    let mut f = std::fs::File::create(path).unwrap();
    let chunk = vec![0xA5u8; 4096];
    let mut written = 0;
    while written < limit {
        match f.write(&chunk) {
            Ok(0) => break,
            Ok(n) => written += n,
            Err(e) if e.raw_os_error() == Some(libc::ENOSPC) => break,
            Err(e) => panic!("filling {}: {e}", path.display()),
        }
    }
    written
}

#[test]
fn disk_full_is_retryable_and_leaves_no_gap() {
    let fs = match Tmpfs::mount("2m") {
        Ok(fs) => fs,
        Err(reason) => {
            if std::env::var("CI").is_ok_and(|v| v == "true") {
                panic!("disk-full test needs a tmpfs mount (root) and CI=true: {reason}");
            }
            eprintln!(
                "\n!!!!!!!!\nSKIPPED: disk_full_is_retryable_and_leaves_no_gap: {reason}\n!!!!!!!!\n"
            );
            return;
        }
    };
    let data = fs.path().join("data");
    let filler = fs.path().join("filler");
    let cfg = config(128 << 10);
    let mut rng = Rng(0xD15C);
    let mut model = Model::default();
    rt().block_on(async {
        let log = Log::open(&data, cfg.clone()).unwrap();
        let mut parts = Vec::new();
        for i in 0..4 {
            parts.push(log.create_partition(&format!("f/{i}"), None).await.unwrap());
            model.parts.insert(format!("f/{i}"), Vec::new());
        }
        // Leave room for a few journal files only.
        fill(&filler, 1200 << 10);
        let mut full_errors = 0;
        let mut attempts = 0;
        while full_errors < 40 {
            attempts += 1;
            assert!(attempts < 100_000, "the disk never filled up");
            // Concurrent appends, so that failing commits hold several appends.
            let mut handles = Vec::new();
            for p in &parts {
                let key = p.key().to_string();
                let base = model.parts[&key].len() as u64;
                let n = rng.range(1, 10);
                let values: Vec<String> = (0..n)
                    .map(|i| record_value(&key, base + i, rng.range(50, 400) as usize))
                    .collect();
                let p = p.clone();
                handles.push(tokio::spawn(async move {
                    let r = p
                        .append(build_batch(&values, 7).as_ref(), AppendOptions::default())
                        .await;
                    (key, base, values, r)
                }));
            }
            for h in handles {
                let (key, base, values, r) = h.await.unwrap();
                match r {
                    Ok(a) => {
                        assert_eq!(
                            (a.base_offset, a.next_offset),
                            (base, base + values.len() as u64),
                            "{key}: offsets must stay contiguous across failed appends"
                        );
                        model.parts.get_mut(&key).unwrap().extend(values);
                    }
                    Err(e) => {
                        assert!(
                            matches!(e, LogError::DiskFull),
                            "{key}: expected DiskFull, got {e:?}"
                        );
                        assert!(e.is_retryable());
                        full_errors += 1;
                        // Nothing of a failed append is visible.
                        assert_eq!(log.partition(&key).unwrap().offsets().end, base);
                    }
                }
            }
        }
        let acked: usize = model.parts.values().map(Vec::len).sum();
        eprintln!(
            "disk full after {acked} acknowledged records, {} journal files, {full_errors} DiskFull errors",
            log.journal_files().len()
        );
        assert!(acked > 0);
        // Everything acknowledged still reads back, and nothing else.
        assert_identical(&log, &model, "while the disk is full");
        // Free the space: appends succeed again, at the next offsets.
        std::fs::remove_file(&filler).unwrap();
        for _ in 0..3 {
            append_round(&parts, &mut model, &mut rng, 10, 300).await;
        }
        assert_identical(&log, &model, "after freeing space");
        drop(parts);
        log.close();
    });
    {
        let log = Log::open(&data, cfg.clone())
            .unwrap_or_else(|e| panic!("reopening after the disk was full: {e:?}"));
        assert_identical(&log, &model, "reopened after disk full");
    }
    drop(fs);
}

/// A journal file roll while the disk is nearly full: the next file may be
/// created and the old file's footer then fail part-way. Nothing acknowledged
/// may be lost, and the log must reopen.
///
/// Known failure (library bug): `Committer::roll` leaves the partial footer in
/// place, and reopening fails as in `torn_footer_of_closed_file_is_scanned`.
#[test]
fn disk_full_during_roll_keeps_log_openable() {
    let fs = match Tmpfs::mount("2m") {
        Ok(fs) => fs,
        Err(reason) => {
            if std::env::var("CI").is_ok_and(|v| v == "true") {
                panic!("disk-full test needs a tmpfs mount (root) and CI=true: {reason}");
            }
            eprintln!(
                "\n!!!!!!!!\nSKIPPED: disk_full_during_roll_keeps_log_openable: {reason}\n!!!!!!!!\n"
            );
            return;
        }
    };
    let filler = fs.path().join("filler");
    let cfg = config(64 << 10);
    let mut failures = Vec::new();
    for free_pages in 0..10u64 {
        let data = fs.path().join(format!("data{free_pages}"));
        let mut rng = Rng(0xF00 + free_pages);
        let mut model = Model::default();
        let what = format!("{free_pages} free pages at the roll");
        let rolled = rt().block_on(async {
            let log = Log::open(&data, cfg.clone()).unwrap();
            let mut parts = Vec::new();
            for i in 0..8 {
                parts.push(log.create_partition(&format!("r/{i}"), None).await.unwrap());
                model.parts.insert(format!("r/{i}"), Vec::new());
            }
            // Many small runs, so that the footer spans several pages.
            while log.journal_position().written < (64 << 10) - 6000 {
                append_round(&parts, &mut model, &mut rng, 2, 10).await;
            }
            let files_before = log.journal_files().len();
            let len = fill(&filler, usize::MAX);
            std::fs::OpenOptions::new()
                .write(true)
                .open(&filler)
                .unwrap()
                .set_len((len as u64).saturating_sub(free_pages * 4096))
                .unwrap();
            // Push the file past its limit with small appends, one at a time.
            let p = &parts[0];
            for _ in 0..40 {
                let key = p.key().to_string();
                let base = model.parts[&key].len() as u64;
                let v = vec![record_value(&key, base, 400)];
                match p
                    .append(build_batch(&v, 3).as_ref(), AppendOptions::default())
                    .await
                {
                    Ok(a) => {
                        assert_eq!(a.base_offset, base, "{what}");
                        model.parts.get_mut(&key).unwrap().extend(v);
                    }
                    Err(LogError::DiskFull) => {}
                    Err(e) => panic!("{what}: {e:?}"),
                }
                if log.journal_files().len() > files_before {
                    break;
                }
            }
            let rolled = log.journal_files().len() > files_before;
            assert_identical(&log, &model, &what);
            drop(parts);
            log.close();
            rolled
        });
        std::fs::remove_file(&filler).unwrap();
        match Log::open(&data, cfg.clone()) {
            Ok(log) => assert_identical(&log, &model, &format!("{what}, reopened")),
            Err(e) => failures.push(format!("{what} (rolled: {rolled}): reopen failed: {e}")),
        }
        std::fs::remove_dir_all(&data).unwrap();
    }
    assert!(
        failures.is_empty(),
        "the log cannot be reopened after a roll on a full disk:\n{}",
        failures.join("\n")
    );
    drop(fs);
}
