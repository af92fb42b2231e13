//! SIGKILL crash test.
//!
//! A child process (this test binary, re-executed) appends durably to many
//! partitions from many concurrent tasks and reports every acknowledged
//! append on stdout. The parent kills it with SIGKILL at a random moment
//! while appends are in flight, reopens the log and checks that every
//! acknowledged record is there exactly once, in order, at its acknowledged
//! offset, with its value; then it appends itself and starts the next round
//! on the same directory, so recovered logs are recovered again.
//!
//! Replay a failure with `STRATA_CRASH_SEED=<seed>` (printed at the start);
//! `STRATA_CRASH_ROUNDS` changes the number of rounds and
//! `STRATA_CRASH_KEEP_DIR=1` keeps the data directory for inspection.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use strata_log::batch::{BatchBuilder, Compression, decode_records};
use strata_log::{AppendOptions, Log, LogConfig};

const CHILD_DIR_ENV: &str = "STRATA_CRASH_CHILD_DIR";
const CHILD_ROUND_ENV: &str = "STRATA_CRASH_CHILD_ROUND";
const CHILD_SEED_ENV: &str = "STRATA_CRASH_CHILD_SEED";
const CHILD_FILE_BYTES_ENV: &str = "STRATA_CRASH_CHILD_FILE_BYTES";
const CHILD_TEST: &str = "crash_child_writer";

const PARTITIONS: usize = 32;
const MAX_RECORDS_PER_APPEND: u64 = 10;
const DEFAULT_ROUNDS: usize = 24;
/// A child the parent forgot stops by itself after this long.
const CHILD_LIFETIME: Duration = Duration::from_secs(30);

fn config(journal_file_bytes: u64) -> LogConfig {
    LogConfig {
        journal_file_bytes,
        // Small commits keep the torn-tail bound of recovery tight.
        max_commit_bytes: 64 << 10,
        max_batch_bytes: 64 << 10,
        ..LogConfig::default()
    }
}

fn key(p: usize) -> String {
    format!("crash/{p:02}")
}

/// A record value: sorts by (round, writer, sequence) within a partition.
/// `writer` is 'c' for the child and 'p' for the parent's appends after recovery.
fn value(p: usize, round: usize, writer: char, seq: u64, pad: usize) -> String {
    format!("p{p:02}.r{round:03}.{writer}.s{seq:07}.{}", "x".repeat(pad))
}

fn build_batch(values: &[String]) -> Bytes {
    let mut b = BatchBuilder::new(Compression::None);
    for (i, v) in values.iter().enumerate() {
        b.push(
            Some(Bytes::from(format!("k{i}"))),
            Some(Bytes::from(v.clone())),
            vec![],
            1_700_000_000_000 + i as i64,
        );
    }
    b.build().unwrap()
}

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

    fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo + 1)
    }
}

fn env_parse<T: std::str::FromStr>(name: &str) -> Option<T> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

// ---------------------------------------------------------------------------
// The child: appends until killed.

#[test]
#[ignore = "the writer process of crash_recovery_keeps_every_acknowledged_append"]
fn crash_child_writer() {
    let Ok(dir) = std::env::var(CHILD_DIR_ENV) else {
        return;
    };
    let round: usize = env_parse(CHILD_ROUND_ENV).expect("round");
    let seed: u64 = env_parse(CHILD_SEED_ENV).expect("seed");
    let file_bytes: u64 = env_parse(CHILD_FILE_BYTES_ENV).expect("file bytes");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let log = Log::open(&dir, config(file_bytes)).expect("child: open");
        let deadline = Instant::now() + CHILD_LIFETIME;
        let mut tasks = Vec::new();
        for p in 0..PARTITIONS {
            let partition = log.partition(&key(p)).expect("child: partition");
            let mut rng = Rng(seed ^ (p as u64).wrapping_mul(0x1234_5678_9ABC_DEF1));
            tasks.push(tokio::spawn(async move {
                let mut seq = 0u64;
                while Instant::now() < deadline {
                    let n = rng.range(1, MAX_RECORDS_PER_APPEND);
                    let values: Vec<String> = (0..n)
                        .map(|i| value(p, round, 'c', seq + i, rng.range(0, 60) as usize))
                        .collect();
                    let appended = partition
                        .append(build_batch(&values).as_ref(), AppendOptions::default())
                        .await;
                    let line = match appended {
                        Ok(a) => format!(
                            "ACK {} {} {} {}\n",
                            p,
                            a.base_offset,
                            a.next_offset,
                            values.join(" ")
                        ),
                        Err(e) => format!("ERR {p} {e}\n"),
                    };
                    {
                        let mut out = std::io::stdout().lock();
                        out.write_all(line.as_bytes()).unwrap();
                        out.flush().unwrap();
                    }
                    if line.starts_with("ERR") {
                        return;
                    }
                    seq += n;
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
    });
    // Reached only if the parent never killed us.
    eprintln!("crash child: lifetime over without being killed");
}

// ---------------------------------------------------------------------------
// The parent.

/// Kills the child if the parent fails before it does.
struct ChildGuard(Option<Child>);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if let Some(child) = self.0.as_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// One acknowledged append as the child reported it.
#[derive(Debug)]
struct Ack {
    partition: usize,
    base: u64,
    next: u64,
    values: Vec<String>,
}

fn parse_ack(line: &str) -> Ack {
    let mut it = line.trim_end_matches('\n').split(' ');
    assert_eq!(it.next(), Some("ACK"), "{line}");
    let mut num = || it.next().unwrap().parse::<u64>().unwrap();
    let partition = num() as usize;
    let base = num();
    let next = num();
    let values: Vec<String> = it.map(str::to_string).collect();
    assert_eq!(values.len() as u64, next - base, "{line}");
    Ack {
        partition,
        base,
        next,
        values,
    }
}

struct RoundStats {
    acks: usize,
    unreported: u64,
    killed_after: Duration,
}

fn run_child_round(
    dir: &Path,
    round: usize,
    file_bytes: u64,
    child_seed: u64,
    delay: Duration,
) -> (Vec<Ack>, RoundStats) {
    let exe = std::env::current_exe().unwrap();
    let child = Command::new(exe)
        .args(["--exact", CHILD_TEST, "--nocapture", "--include-ignored"])
        .env(CHILD_DIR_ENV, dir)
        .env(CHILD_ROUND_ENV, round.to_string())
        .env(CHILD_SEED_ENV, child_seed.to_string())
        .env(CHILD_FILE_BYTES_ENV, file_bytes.to_string())
        .env("RUST_BACKTRACE", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawning the child");
    let mut guard = ChildGuard(Some(child));
    let child = guard.0.as_mut().unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let err_reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    let (tx, rx) = mpsc::channel::<String>();
    let out_reader = std::thread::spawn(move || {
        let mut r = BufReader::new(stdout);
        let mut partial = 0usize;
        loop {
            let mut buf = Vec::new();
            match r.read_until(b'\n', &mut buf) {
                Ok(0) | Err(_) => break,
                Ok(_) if buf.ends_with(b"\n") => {
                    let _ = tx.send(String::from_utf8(buf).unwrap());
                }
                // The last line, cut by the kill: its append is simply unreported.
                Ok(_) => partial += 1,
            }
        }
        partial
    });

    let mut lines = Vec::new();
    // Wait until appends are being acknowledged, so the kill lands while writing.
    loop {
        match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(line) => {
                let is_ack = line.starts_with("ACK ");
                lines.push(line);
                if is_ack {
                    break;
                }
            }
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "round {round}: the child acknowledged nothing within 30 s; stdout {lines:?}, stderr:\n{}",
                    err_reader.join().unwrap()
                );
            }
        }
    }
    let first_ack = Instant::now();
    std::thread::sleep(delay);
    if let Some(status) = child.try_wait().unwrap() {
        panic!(
            "round {round}: the child exited ({status}) before the kill; stderr:\n{}",
            err_reader.join().unwrap()
        );
    }
    child.kill().unwrap(); // SIGKILL
    let status = child.wait().unwrap();
    let killed_after = first_ack.elapsed();
    guard.0 = None;
    {
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(
            status.signal(),
            Some(libc::SIGKILL),
            "round {round}: {status}"
        );
    }
    let partial = out_reader.join().unwrap();
    lines.extend(rx.try_iter());
    let stderr = err_reader.join().unwrap();
    let mut acks = Vec::new();
    for line in &lines {
        if line.starts_with("ACK ") {
            acks.push(parse_ack(line));
        } else if line.starts_with("ERR ") {
            panic!("round {round}: an append failed in the child: {line}\nstderr:\n{stderr}");
        }
    }
    let stats = RoundStats {
        acks: acks.len(),
        unreported: partial as u64,
        killed_after,
    };
    (acks, stats)
}

/// Reads a partition from offset `from` to its end: its record values,
/// checking that offsets are `from`, `from + 1`, ...
fn read_partition(log: &Log, key: &str, from: u64, what: &str) -> Vec<String> {
    let p = log.partition(key).unwrap_or_else(|e| panic!("{what}: {e}"));
    let offsets = p.offsets();
    assert_eq!(
        (offsets.log_start, offsets.local_start),
        (0, 0),
        "{what}: {key}"
    );
    let mut values = Vec::with_capacity(offsets.end.saturating_sub(from) as usize);
    let mut o = from;
    while o < offsets.end {
        let read = p
            .read_blocking(o, 1 << 20)
            .unwrap_or_else(|e| panic!("{what}: {key}: read at offset {o} failed: {e}"));
        assert!(read.next_offset > o, "{what}: {key}: no progress at {o}");
        for b in read.batches() {
            for r in decode_records(&b, 1 << 20)
                .unwrap_or_else(|e| panic!("{what}: {key}: bad batch near {o}: {e}"))
            {
                if (r.offset as u64) < from {
                    continue; // the batch holding `from` starts before it
                }
                assert_eq!(
                    r.offset as u64,
                    from + values.len() as u64,
                    "{what}: {key}: offsets are not contiguous"
                );
                values.push(String::from_utf8(r.value.unwrap().to_vec()).unwrap());
            }
        }
        assert_eq!(
            from + values.len() as u64,
            read.next_offset,
            "{what}: {key}"
        );
        o = read.next_offset;
    }
    values
}

/// Checks the recovered log against everything known, updates `model`, and
/// appends a little from the parent.
fn verify_and_extend(
    dir: &Path,
    round: usize,
    file_bytes: u64,
    acks: &[Ack],
    model: &mut BTreeMap<usize, Vec<String>>,
    rng: &mut Rng,
) -> u64 {
    let what = format!("round {round}");
    let log = Log::open(dir, config(file_bytes))
        .unwrap_or_else(|e| panic!("{what}: reopening after the kill failed: {e:?}"));
    assert_eq!(
        log.partition_keys(),
        (0..PARTITIONS).map(key).collect::<Vec<_>>(),
        "{what}"
    );
    let mut unacked_total = 0;
    for p in 0..PARTITIONS {
        let key = key(p);
        let before = model.get(&p).cloned().unwrap_or_default();
        let values = read_partition(&log, &key, 0, &what);
        // Everything known before this round is still there, unchanged.
        assert!(
            values.len() >= before.len(),
            "{what}: {key} lost records: {} < {}",
            values.len(),
            before.len()
        );
        assert!(
            values[..before.len()] == before[..],
            "{what}: {key}: earlier records changed"
        );
        // Every acknowledged append at its offsets, contiguous from the start of the round.
        let mut expected_base = before.len() as u64;
        for a in acks.iter().filter(|a| a.partition == p) {
            assert_eq!(
                a.base, expected_base,
                "{what}: {key}: acknowledged appends are not contiguous"
            );
            assert!(
                a.next as usize <= values.len(),
                "{what}: {key}: ACKNOWLEDGED offsets [{}, {}) missing after recovery (end {})",
                a.base,
                a.next,
                values.len()
            );
            assert_eq!(
                &values[a.base as usize..a.next as usize],
                &a.values[..],
                "{what}: {key}: acknowledged records differ at [{}, {})",
                a.base,
                a.next
            );
            expected_base = a.next;
        }
        // At most one append per partition was in flight or unreported.
        let extra = values.len() as u64 - expected_base;
        assert!(
            extra <= MAX_RECORDS_PER_APPEND,
            "{what}: {key}: {extra} records past the last acknowledged offset {expected_base}"
        );
        unacked_total += extra;
        // Exactly once and in order: values strictly increase, all of this partition.
        let prefix = format!("p{p:02}.");
        for (i, v) in values.iter().enumerate() {
            assert!(
                v.starts_with(&prefix),
                "{what}: {key}: foreign record {v:?} at {i}"
            );
            if i > 0 {
                assert!(
                    values[i - 1] < *v,
                    "{what}: {key}: records out of order or duplicated at offset {i}: {:?} then {v:?}",
                    values[i - 1]
                );
            }
        }
        model.insert(p, values);
    }
    // The recovered log takes appends at the next offsets.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut handles = Vec::new();
        for p in 0..PARTITIONS {
            if rng.range(0, 2) == 0 {
                continue;
            }
            let partition = log.partition(&key(p)).unwrap();
            let n = rng.range(1, 3);
            let values: Vec<String> = (0..n)
                .map(|i| value(p, round, 'p', i, rng.range(0, 20) as usize))
                .collect();
            handles.push(tokio::spawn(async move {
                let r = partition
                    .append(build_batch(&values).as_ref(), AppendOptions::default())
                    .await;
                (p, values, r)
            }));
        }
        for h in handles {
            let (p, values, r) = h.await.unwrap();
            let a = r.unwrap_or_else(|e| panic!("{what}: append after recovery failed: {e}"));
            let known = model.get_mut(&p).unwrap();
            assert_eq!(
                (a.base_offset, a.next_offset),
                (known.len() as u64, (known.len() + values.len()) as u64),
                "{what}: p{p}: append after recovery at the wrong offsets"
            );
            known.extend(values);
        }
    });
    for p in 0..PARTITIONS {
        let from = model[&p].len().saturating_sub(3);
        let values = read_partition(&log, &key(p), from as u64, &what);
        assert_eq!(values, model[&p][from..], "{what}: p{p} after appending");
    }
    log.close();
    unacked_total
}

#[test]
fn crash_recovery_keeps_every_acknowledged_append() {
    let seed: u64 = env_parse("STRATA_CRASH_SEED").unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64
    });
    let rounds: usize = env_parse("STRATA_CRASH_ROUNDS").unwrap_or(DEFAULT_ROUNDS);
    eprintln!("crash test seed {seed} (replay with STRATA_CRASH_SEED={seed}), {rounds} rounds");
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    if std::env::var("STRATA_CRASH_KEEP_DIR").is_ok() {
        eprintln!("keeping {}", tmp.path().display());
        let _ = tmp.keep();
    }
    let mut rng = Rng(seed);
    {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let log = Log::open(&dir, config(64 << 10)).unwrap();
        rt.block_on(async {
            for p in 0..PARTITIONS {
                log.create_partition(&key(p), None).await.unwrap();
            }
        });
        log.close();
    }
    let started = Instant::now();
    let mut model: BTreeMap<usize, Vec<String>> = BTreeMap::new();
    for round in 0..rounds {
        // Small journal files in most rounds, so kills land in rolls and footers.
        let file_bytes = match rng.range(0, 3) {
            0 => 1 << 20,
            1 => 256 << 10,
            _ => 64 << 10,
        };
        let delay = Duration::from_millis(rng.range(20, 400));
        let child_seed = rng.next();
        let round_started = Instant::now();
        let (acks, stats) = run_child_round(&dir, round, file_bytes, child_seed, delay);
        let unacked = verify_and_extend(&dir, round, file_bytes, &acks, &mut model, &mut rng);
        let records: usize = model.values().map(Vec::len).sum();
        let files = std::fs::read_dir(dir.join("journal")).unwrap().count();
        eprintln!(
            "round {round:2}: files of {:4} KiB, killed {:3} ms after the first ack, {:5} acks, \
             {} cut lines, {unacked:3} unacknowledged records kept; {records} records in {files} journal files ({} ms)",
            file_bytes >> 10,
            stats.killed_after.as_millis(),
            stats.acks,
            stats.unreported,
            round_started.elapsed().as_millis(),
        );
        assert!(stats.acks > 0);
    }
    eprintln!("crash test: {rounds} rounds in {:?}", started.elapsed());
}
