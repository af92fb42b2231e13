//! Quorum replication under faults, checked the way Jepsen checks: a
//! 3-node cluster of real `strata` processes (one S3-compatible server,
//! moto) with every partition on all three, writers over HTTP, gRPC and an
//! idempotent librdkafka producer (acks=all), and a nemesis that SIGKILLs
//! leaders and followers, freezes leaders (SIGSTOP/SIGCONT), stalls the
//! bucket and cuts leaders and followers off the network for a few seconds.
//! At the end: every acknowledged record is there, once, at the offset it
//! was acknowledged at; every node serves the same records at the same
//! offsets with no gap, to consumers over HTTP and gRPC alike, and a Kafka
//! consumer (kcat) reads the same; no high watermark ever went back.
//!
//! For the network cuts, each node of the nemesis's cluster runs in a
//! network namespace the test creates (`strata_test_support::Netns`: a
//! bridge, a veth per node; a cut sets the node's bridge port down), on
//! `10.77.X.i`, and moto listens on the bridge's address. That needs root:
//! with `CI=true` a failure to create the namespaces fails the test;
//! elsewhere the cluster runs on loopback without that fault, saying
//! `!!! SKIPPED`. The writers stay in the root namespace and keep writing
//! to a cut node too: those writes fail or time out, and count as
//! indeterminate, like writes to a killed or frozen one.
//!
//! The nemesis runs every fault once per cycle, in a seeded order, so the
//! default 6 rounds (the test command's) run each one. A run prints its seed
//! and its schedule; `STRATA_NEMESIS_SEED=N` replays one,
//! `STRATA_NEMESIS_ROUNDS=N` makes it longer (the soak mode, see
//! docs/operations.md), `STRATA_TEST_LOG=info` shows the nodes' logs.

mod common;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{moto, moto_on};
use serde_json::{Value, json};
use strata_test_support::{Cluster, Netns};

const BIN: &str = common::BIN;
const TOPIC: &str = "jepsen";
const PARTITIONS: u32 = 3;
/// How long a final reader may go without a new record before it fails.
const READ_STALL: Duration = Duration::from_secs(60);

/// Namespaces for the nemesis's three nodes, or `None` (the network cut is
/// skipped, loudly) where they cannot be made, except with `CI=true`, where
/// that fails the test.
fn namespaces() -> Option<Netns> {
    match Netns::create(3) {
        Ok(netns) => Some(netns),
        Err(e) => {
            assert!(
                std::env::var("CI").map_or(true, |v| v != "true"),
                "cannot create network namespaces for the network cut (the test needs root): {e}"
            );
            eprintln!(
                "!!! SKIPPED the network cut: cannot create network namespaces \
                 (the test needs root): {e}; the nodes run on loopback"
            );
            None
        }
    }
}

/// What the nemesis does in one round.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Fault {
    KillLeader,
    KillFollower,
    PauseLeader,
    StallBucket,
    CutLeader,
    CutFollower,
}

impl Fault {
    /// Every fault; the cuts only for a cluster in namespaces.
    fn all(cuts: bool) -> Vec<Fault> {
        let mut all = vec![
            Fault::KillLeader,
            Fault::KillFollower,
            Fault::PauseLeader,
            Fault::StallBucket,
        ];
        if cuts {
            all.extend([Fault::CutLeader, Fault::CutFollower]);
        }
        all
    }
}

/// A small deterministic generator (xorshift64*), so a seed replays a schedule.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    /// `items` in a random order (Fisher-Yates).
    fn shuffle<T>(&mut self, mut items: Vec<T>) -> Vec<T> {
        for i in (1..items.len()).rev() {
            items.swap(i, self.below(i as u64 + 1) as usize);
        }
        items
    }
}

/// What clients were told was written: value → (partition, offset).
#[derive(Default)]
struct Ledger {
    acked: HashMap<String, (u32, u64)>,
    /// Writes that failed or timed out: they may or may not be in the log.
    indeterminate: usize,
}

impl Ledger {
    /// Records a write's outcome: acknowledged at `offset`, or indeterminate.
    /// Returns whether it was acknowledged.
    fn note(&mut self, value: String, partition: u32, offset: Option<u64>) -> bool {
        match offset {
            Some(o) => {
                self.acked.insert(value, (partition, o));
                true
            }
            None => {
                self.indeterminate += 1;
                false
            }
        }
    }
}

/// The cluster status as node `addr` sees it.
async fn status(http: &reqwest::Client, addr: &str) -> Option<Value> {
    http.get(format!("http://{addr}/v1/cluster"))
        .timeout(Duration::from_secs(2))
        .send()
        .await
        .ok()?
        .json()
        .await
        .ok()
}

/// `(leader, replicas, isr)` of partition `p` of the topic, as `addr` sees it.
async fn assignment(
    http: &reqwest::Client,
    addr: &str,
    p: u32,
) -> Option<(u64, Vec<u64>, Vec<u64>)> {
    let s = status(http, addr).await?;
    let ids = |v: &Value| -> Vec<u64> {
        v.as_array()
            .map(|a| a.iter().filter_map(Value::as_u64).collect())
            .unwrap_or_default()
    };
    s["partitions"].as_array()?.iter().find_map(|e| {
        let key = e["partition"].as_str()?;
        (key.starts_with(&format!("default/{TOPIC}/")) && key.ends_with(&format!("/{p}"))).then(
            || {
                (
                    e["leader"].as_u64().unwrap_or(0),
                    ids(&e["replicas"]),
                    ids(&e["isr"]),
                )
            },
        )
    })
}

/// Shared view of where the nodes listen now (ports change on restart).
type Addrs = Arc<Mutex<Vec<String>>>;

fn addrs_of(cluster: &Cluster) -> Vec<String> {
    cluster
        .running()
        .iter()
        .map(|id| cluster.node(*id).api_addr.clone())
        .collect()
}

/// Appends one record per request over HTTP, cycling partitions and nodes,
/// until `stop`. A write is never retried (its value could land twice):
/// a failed one is counted as indeterminate.
async fn http_writer(
    id: usize,
    http: reqwest::Client,
    addrs: Addrs,
    ledger: Arc<Mutex<Ledger>>,
    stop: Arc<AtomicBool>,
) {
    let mut i = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let p = (i % u64::from(PARTITIONS)) as u32;
        let value = format!("h{id}-{i}");
        let addr = {
            let a = addrs.lock().unwrap();
            a[(i as usize + id) % a.len()].clone()
        };
        let resp = http
            .post(format!(
                "http://{addr}/v1/tenants/default/topics/{TOPIC}/partitions/{p}/records"
            ))
            .json(&json!({ "records": [{ "value": value }] }))
            .timeout(Duration::from_secs(8))
            .send()
            .await;
        let offset = match resp {
            Ok(r) if r.status().is_success() => r
                .json::<Value>()
                .await
                .ok()
                .and_then(|b| b["base_offset"].as_u64()),
            _ => None,
        };
        if !ledger.lock().unwrap().note(value, p, offset) {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        i += 1;
    }
}

/// The same over gRPC (unary Append), values `g-N`.
async fn grpc_writer(addrs: Addrs, ledger: Arc<Mutex<Ledger>>, stop: Arc<AtomicBool>) {
    use strata_api::proto::{self, strata_client::StrataClient};
    let mut i = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let p = (i % u64::from(PARTITIONS)) as u32;
        let value = format!("g-{i}");
        let addr = {
            let a = addrs.lock().unwrap();
            a[i as usize % a.len()].clone()
        };
        let attempt = async {
            let mut client = StrataClient::connect(format!("http://{addr}")).await.ok()?;
            let resp = client
                .append(proto::AppendRequest {
                    tenant: "default".into(),
                    topic: TOPIC.into(),
                    partition: Some(p),
                    records: vec![proto::Record {
                        value: Some(value.clone().into_bytes().into()),
                        ..Default::default()
                    }],
                    ..Default::default()
                })
                .await
                .ok()?;
            resp.into_inner().offsets.first().map(|o| o.offset)
        };
        let offset = tokio::time::timeout(Duration::from_secs(8), attempt)
            .await
            .ok()
            .flatten();
        if !ledger.lock().unwrap().note(value, p, offset) {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        i += 1;
    }
}

/// Follows every partition's high watermark through every node (the topic
/// description) and records any that went back.
async fn watermark_monitor(
    http: reqwest::Client,
    addrs: Addrs,
    stop: Arc<AtomicBool>,
) -> (usize, Vec<String>) {
    let mut highest = [0u64; PARTITIONS as usize];
    let (mut samples, mut regressions) = (0usize, Vec::new());
    while !stop.load(Ordering::Relaxed) {
        let list = addrs.lock().unwrap().clone();
        for addr in list {
            let Ok(Ok(body)) = tokio::time::timeout(Duration::from_secs(2), async {
                http.get(format!("http://{addr}/v1/tenants/default/topics/{TOPIC}"))
                    .send()
                    .await?
                    .json::<Value>()
                    .await
            })
            .await
            else {
                continue;
            };
            for entry in body["partition_info"].as_array().into_iter().flatten() {
                let (Some(p), Some(end)) =
                    (entry["partition"].as_u64(), entry["end_offset"].as_u64())
                else {
                    continue;
                };
                let slot = &mut highest[p as usize];
                samples += 1;
                if end < *slot {
                    regressions.push(format!("partition {p}: {end} after {slot} (via {addr})"));
                }
                *slot = (*slot).max(end);
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    (samples, regressions)
}

/// Every record of partition `p` through node `addr`: (offset, value).
async fn read_partition(http: &reqwest::Client, addr: &str, p: u32) -> Vec<(u64, String)> {
    let mut out = Vec::new();
    let mut offset = 0u64;
    // A soak's log is long (and mostly in the bucket): the reader must keep
    // moving, not finish within a fixed time.
    let mut deadline = Instant::now() + READ_STALL;
    loop {
        assert!(
            Instant::now() < deadline,
            "reading partition {p} via {addr} made no progress for {READ_STALL:?} (at offset {offset})"
        );
        let resp = http
            .get(format!(
                "http://{addr}/v1/tenants/default/topics/{TOPIC}/partitions/{p}/records?offset={offset}&max_records=1000"
            ))
            .timeout(Duration::from_secs(10))
            .send()
            .await;
        let Ok(resp) = resp else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        if !resp.status().is_success() {
            // A leader still confirming its log: retry.
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        }
        let body: Value = resp.json().await.expect("read body");
        let records = body["records"].as_array().cloned().unwrap_or_default();
        if records.is_empty() {
            return out;
        }
        for r in records {
            let o = r["offset"].as_u64().expect("offset");
            out.push((o, r["value"].as_str().unwrap_or_default().to_string()));
            offset = o + 1;
        }
        deadline = Instant::now() + READ_STALL;
    }
}

/// Partition `p` as a gRPC consumer reads it through `addr` (Read, paged).
async fn read_partition_grpc(addr: &str, p: u32) -> Vec<(u64, String)> {
    use strata_api::proto::{self, read_request::Start, strata_client::StrataClient};
    let mut out = Vec::new();
    let mut offset = 0u64;
    let mut deadline = Instant::now() + READ_STALL;
    loop {
        assert!(
            Instant::now() < deadline,
            "reading partition {p} over gRPC via {addr} made no progress for {READ_STALL:?} (at offset {offset})"
        );
        let attempt = async {
            let mut client = StrataClient::connect(format!("http://{addr}")).await.ok()?;
            let request = proto::ReadRequest {
                tenant: "default".into(),
                topic: TOPIC.into(),
                partition: p,
                start: Some(Start::Offset(offset)),
                max_records: 1000,
                ..Default::default()
            };
            client.read(request).await.ok()
        };
        let Some(resp) = tokio::time::timeout(Duration::from_secs(10), attempt)
            .await
            .ok()
            .flatten()
        else {
            // A leader still confirming its log: retry.
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        let records = resp.into_inner().records;
        if records.is_empty() {
            return out;
        }
        for r in records {
            let value = r.value.as_deref().unwrap_or_default();
            out.push((r.offset, String::from_utf8_lossy(value).into_owned()));
            offset = r.offset + 1;
        }
        deadline = Instant::now() + READ_STALL;
    }
}

/// Partition `p` as a Kafka consumer reads it from the beginning to its end
/// (kcat, bootstrapping from `bootstrap`; it fetches from the leader).
async fn read_partition_kafka(bootstrap: String, p: u32) -> Vec<(u64, String)> {
    let out = tokio::task::spawn_blocking(move || {
        common::run_bounded(
            Command::new("kcat").args([
                "-C",
                "-b",
                &bootstrap,
                "-t",
                TOPIC,
                "-p",
                &p.to_string(),
                "-o",
                "beginning",
                "-e",
                "-q",
                "-f",
                "%o %s\\n",
            ]),
            // One process for the whole partition: bounded for a soak's log.
            Duration::from_secs(900),
        )
    })
    .await
    .expect("kcat task");
    assert!(
        out.success(),
        "kcat reading partition {p}: {:?} {}",
        out.status,
        out.stderr
    );
    out.stdout
        .lines()
        .map(|line| {
            let (offset, value) = line.split_once(' ').unwrap_or((line, ""));
            let offset = offset
                .parse()
                .unwrap_or_else(|_| panic!("kcat printed {line:?}"));
            (offset, value.to_string())
        })
        .collect()
}

/// Waits until every partition has all three replicas in sync, as the
/// metadata leader's status says; bounded.
async fn wait_fully_replicated(http: &reqwest::Client, cluster: &Cluster) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let addr = cluster.node(cluster.running()[0]).api_addr.clone();
        let mut full = 0;
        for p in 0..PARTITIONS {
            if let Some((_, replicas, isr)) = assignment(http, &addr, p).await
                && replicas.len() == 3
                && isr.len() == 3
            {
                full += 1;
            }
        }
        if full == PARTITIONS {
            return;
        }
        if Instant::now() >= deadline {
            let mut seen = Vec::new();
            for p in 0..PARTITIONS {
                seen.push(assignment(http, &addr, p).await);
            }
            panic!("partitions never got three in-sync replicas: {seen:?}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Node ids by role for partition `p`: (leader, a follower).
async fn roles(http: &reqwest::Client, cluster: &Cluster, p: u32) -> Option<(u64, u64)> {
    for id in cluster.running() {
        if let Some((leader, replicas, _)) = assignment(http, &cluster.node(id).api_addr, p).await
            && let Some(follower) = replicas.iter().copied().find(|r| *r != leader)
        {
            return Some((leader, follower));
        }
    }
    None
}

/// How long, after `since`, until an HTTP write to partition `p` through a
/// surviving node is acknowledged. A probe starts every 50 ms, each through
/// the next node, without waiting for the ones still in flight: one stuck
/// behind the old leader (until its 2 s timeout) must not hide the moment the
/// new leader takes writes. Its values, `probe-<round>-<i>`, are unique
/// across rounds (the log may hold each only once).
async fn first_ack_after(
    http: &reqwest::Client,
    addrs: &[String],
    p: u32,
    since: Instant,
    round: usize,
) -> Duration {
    let deadline = since + Duration::from_secs(30);
    let mut in_flight = tokio::task::JoinSet::new();
    let mut tick = tokio::time::interval(Duration::from_millis(50));
    let mut i = 0usize;
    loop {
        assert!(
            Instant::now() < deadline,
            "no write to partition {p} acknowledged within 30 s"
        );
        tokio::select! {
            _ = tick.tick() => {
                let addr = addrs[i % addrs.len()].clone();
                i += 1;
                let request = http
                    .post(format!(
                        "http://{addr}/v1/tenants/default/topics/{TOPIC}/partitions/{p}/records"
                    ))
                    .json(&json!({ "records": [{ "value": format!("probe-{round}-{i}") }] }))
                    .timeout(Duration::from_secs(2));
                in_flight.spawn(async move {
                    // The old leader's address, a leader still taking over:
                    // not acknowledged, the next probe tries again.
                    let acked = matches!(request.send().await, Ok(r) if r.status().is_success());
                    acked.then(Instant::now)
                });
            }
            Some(done) = in_flight.join_next(), if !in_flight.is_empty() => {
                if let Some(at) = done.expect("a probe task") {
                    // The probes still in flight may be acknowledged too:
                    // their values are unique, so the log may hold them.
                    in_flight.detach_all();
                    return at.duration_since(since);
                }
            }
        }
    }
}

/// Waits until all three brokers registered, so placement gives every
/// partition three replicas.
async fn wait_registered(http: &reqwest::Client, cluster: &Cluster) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while status(http, &cluster.node(1).api_addr)
        .await
        .map_or(0, |s| s["brokers"].as_array().map_or(0, Vec::len))
        < 3
    {
        assert!(Instant::now() < deadline, "brokers never registered");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Batches larger than a gRPC message's default limit (4 MiB) replicate:
/// an acks=all append of one 5.4 MB batch is acknowledged, and every node
/// serves it after its leader is gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_batches_replicate() {
    let Some(moto) = moto() else { return };
    let root = tempfile::tempdir().unwrap();
    let args = ["--object-store", "s3://strata/replication-large"];
    let mut cluster = Cluster::start(Path::new(BIN), root.path(), 3, &args, moto.env());
    let http = reqwest::Client::new();
    wait_registered(&http, &cluster).await;
    let addr = cluster.node(1).api_addr.clone();
    let resp = http
        .post(format!("http://{addr}/v1/tenants/default/topics"))
        .json(&json!({ "name": "big", "partitions": 1 }))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 201);
    let value = "v".repeat(900_000);
    let records: Vec<Value> = (0..6).map(|_| json!({ "value": value })).collect();
    let resp = http
        .post(format!(
            "http://{addr}/v1/tenants/default/topics/big/partitions/0/records"
        ))
        .json(&json!({ "records": records }))
        .timeout(Duration::from_secs(30))
        .send()
        .await
        .unwrap();
    let status_code = resp.status().as_u16();
    assert_eq!(status_code, 200, "{:?}", resp.text().await);
    let s = status(&http, &addr).await.unwrap();
    let leader = s["partitions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| {
            p["partition"]
                .as_str()
                .unwrap_or("")
                .starts_with("default/big/")
        })
        .and_then(|p| p["leader"].as_u64())
        .expect("the partition's leader");
    cluster.kill(leader);
    let survivor = cluster.node(cluster.running()[0]).api_addr.clone();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let resp = http
            .get(format!("http://{survivor}/v1/tenants/default/topics/big/partitions/0/records?offset=0&max_bytes=10000000"))
            .timeout(Duration::from_secs(5))
            .send()
            .await;
        if let Ok(r) = resp
            && r.status().is_success()
        {
            let body: Value = r.json().await.unwrap();
            let got = body["records"].as_array().map_or(0, Vec::len);
            if got == 6 {
                break;
            }
        }
        assert!(
            Instant::now() < deadline,
            "the large batch is not served after failover"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Prints a line of the schedule as it happens and keeps it for the summary.
fn note(schedule: &mut Vec<String>, line: String) {
    eprintln!("{line}");
    schedule.push(line);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn acknowledged_records_survive_a_nemesis() {
    let netns = namespaces();
    let moto = match &netns {
        Some(netns) => moto_on(netns.bridge_addr()),
        None => moto(),
    };
    let Some(moto) = moto else { return };
    let kafka = common::confluent_kafka("the Kafka producer");
    let seed: u64 = std::env::var("STRATA_NEMESIS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos() as u64)
                | 1
        });
    let rounds: usize = std::env::var("STRATA_NEMESIS_ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(6);
    eprintln!("nemesis seed {seed} ({rounds} rounds; replay with STRATA_NEMESIS_SEED={seed})");
    let mut rng = Rng(seed);

    let root = tempfile::tempdir().unwrap();
    let args = [
        "--object-store",
        "s3://strata/replication-test",
        "--offload-interval",
        "500ms",
    ];
    let cuts = netns.is_some();
    let mut cluster = match netns {
        Some(netns) => {
            eprintln!(
                "nodes in network namespaces, at {}, {}, {}; moto at {}",
                netns.host(1),
                netns.host(2),
                netns.host(3),
                moto.endpoint()
            );
            Cluster::start_in(Path::new(BIN), root.path(), netns, &args, moto.env())
        }
        None => Cluster::start(Path::new(BIN), root.path(), 3, &args, moto.env()),
    };
    let http = reqwest::Client::new();
    wait_registered(&http, &cluster).await;
    // Small segments with a short local retention: offload and local
    // release run on leaders and followers throughout.
    let resp = http
        .post(format!(
            "http://{}/v1/tenants/default/topics",
            cluster.node(1).api_addr
        ))
        .json(&json!({
            "name": TOPIC,
            "partitions": PARTITIONS,
            "config": { "segment_bytes": 16384, "local_retention_ms": 2000 }
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 201, "{:?}", resp.text().await);
    wait_fully_replicated(&http, &cluster).await;

    let addrs: Addrs = Arc::new(Mutex::new(addrs_of(&cluster)));
    let ledger = Arc::new(Mutex::new(Ledger::default()));
    let stop = Arc::new(AtomicBool::new(false));
    let mut writers = Vec::new();
    for id in 0..2 {
        writers.push(tokio::spawn(http_writer(
            id,
            http.clone(),
            addrs.clone(),
            ledger.clone(),
            stop.clone(),
        )));
    }
    writers.push(tokio::spawn(grpc_writer(
        addrs.clone(),
        ledger.clone(),
        stop.clone(),
    )));
    let monitor = tokio::spawn(watermark_monitor(http.clone(), addrs.clone(), stop.clone()));

    // The idempotent librdkafka producer: its own acknowledgements, in its own ledger.
    let mut producer = kafka.then(|| {
        let bootstrap: Vec<String> = cluster
            .nodes
            .iter()
            .filter_map(|n| n.kafka_addr.clone())
            .collect();
        let program = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../tests/kafka-clients/crash_producer.py");
        // An upper bound: the producer is stopped once the faults are over.
        let count = 150 * (rounds as u32 * 10 + 60);
        let mut child = Command::new("python3")
            .arg(program)
            .args([
                &bootstrap.join(","),
                TOPIC,
                &PARTITIONS.to_string(),
                &count.to_string(),
                "150",
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start the Kafka producer");
        let (stdout, stderr) = (
            child.stdout.take().expect("stdout"),
            child.stderr.take().expect("stderr"),
        );
        let (tx, rx) = std::sync::mpsc::channel::<String>();
        let errors = tx.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let _ = errors.send(format!("STDERR {line}"));
            }
        });
        (child, rx)
    });

    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut schedule = Vec::new();
    let mut failovers = Vec::new();
    let mut faults = 0usize;
    // Every fault once per cycle, in a seeded order.
    let mut deck: Vec<Fault> = Vec::new();
    for round in 0..rounds {
        if deck.is_empty() {
            deck = rng.shuffle(Fault::all(cuts));
        }
        let Some(fault) = deck.pop() else {
            unreachable!("a refilled deck is not empty")
        };
        let p = rng.below(u64::from(PARTITIONS)) as u32;
        let Some((leader, follower)) = roles(&http, &cluster, p).await else {
            panic!("round {round}: no assignment for partition {p}");
        };
        let started = Instant::now();
        match fault {
            Fault::KillLeader => {
                note(
                    &mut schedule,
                    format!("round {round}: SIGKILL leader {leader} of partition {p}"),
                );
                cluster.kill(leader);
                *addrs.lock().unwrap() = addrs_of(&cluster);
                let survivors = addrs_of(&cluster);
                let took = first_ack_after(&http, &survivors, p, started, round).await;
                failovers.push(took);
                note(
                    &mut schedule,
                    format!("  first acknowledged write on the new leader after {took:?}"),
                );
                tokio::time::sleep(Duration::from_millis(500 + rng.below(1500))).await;
                cluster.restart(leader);
            }
            Fault::KillFollower => {
                note(
                    &mut schedule,
                    format!("round {round}: SIGKILL follower {follower} of partition {p}"),
                );
                cluster.kill(follower);
                *addrs.lock().unwrap() = addrs_of(&cluster);
                tokio::time::sleep(Duration::from_millis(1000 + rng.below(2000))).await;
                cluster.restart(follower);
            }
            Fault::PauseLeader => {
                let pause = Duration::from_millis(2500 + rng.below(1500));
                note(
                    &mut schedule,
                    format!(
                        "round {round}: SIGSTOP leader {leader} of partition {p} for {pause:?}"
                    ),
                );
                cluster.pause(leader);
                {
                    let paused = cluster.node(leader).api_addr.clone();
                    addrs.lock().unwrap().retain(|a| *a != paused);
                }
                tokio::time::sleep(pause).await;
                cluster.resume(leader);
            }
            Fault::StallBucket => {
                let stall = Duration::from_millis(1500 + rng.below(1500));
                note(
                    &mut schedule,
                    format!("round {round}: stall the bucket for {stall:?}"),
                );
                moto.pause();
                tokio::time::sleep(stall).await;
                moto.resume();
            }
            Fault::CutLeader | Fault::CutFollower => {
                let (target, role) = if fault == Fault::CutLeader {
                    (leader, "leader")
                } else {
                    (follower, "follower")
                };
                let cut = Duration::from_millis(3000 + rng.below(3000));
                note(
                    &mut schedule,
                    format!(
                        "round {round}: cut {role} {target} of partition {p} off the network for {cut:?}"
                    ),
                );
                // The writers keep it in their list: a client on the far
                // side of a partition, its writes there indeterminate.
                cluster.cut(target);
                if fault == Fault::CutLeader {
                    let majority: Vec<String> = cluster
                        .running()
                        .into_iter()
                        .filter(|id| *id != target)
                        .map(|id| cluster.node(id).api_addr.clone())
                        .collect();
                    let took = first_ack_after(&http, &majority, p, started, round).await;
                    failovers.push(took);
                    note(
                        &mut schedule,
                        format!("  first acknowledged write on the majority side after {took:?}"),
                    );
                }
                tokio::time::sleep(cut.saturating_sub(started.elapsed())).await;
                cluster.heal(target);
            }
        }
        faults += 1;
        *addrs.lock().unwrap() = addrs_of(&cluster);
        // Let the cluster heal before the next fault: one node down at a time.
        wait_fully_replicated(&http, &cluster).await;
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    stop.store(true, Ordering::Relaxed);
    for w in writers {
        w.await.unwrap();
    }
    let (samples, regressions) = monitor.await.unwrap();

    let mut kafka_acked: BTreeMap<(u32, u64), String> = BTreeMap::new();
    // Acknowledged without an offset: librdkafka acknowledges a batch whose
    // response was lost once a later batch of the same producer succeeds
    // (an implicit ack, reported with offset -1).
    let mut kafka_acked_somewhere: Vec<(u32, String)> = Vec::new();
    let mut producer_failure = None;
    // Everything the Kafka producer printed, to explain a duplicate.
    let mut producer_lines: Vec<String> = Vec::new();
    if let Some((mut child, rx)) = producer.take() {
        // The faults are over: the producer stops and flushes what it sent.
        common::sigterm(child.id());
        let deadline = Instant::now() + Duration::from_secs(180);
        let status = loop {
            if let Some(status) = child.try_wait().expect("producer status") {
                break status;
            }
            assert!(
                Instant::now() < deadline,
                "the Kafka producer did not finish"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        let lines: Vec<String> = rx.try_iter().collect();
        producer_lines.clone_from(&lines);
        if !status.success() {
            let tail: Vec<&String> = lines
                .iter()
                .filter(|l| !l.starts_with("ACK"))
                .rev()
                .take(20)
                .collect();
            // All of it, for the librdkafka log before the tail.
            let saved = std::env::temp_dir().join(format!("nemesis-{seed}-kafka-producer.log"));
            let _ = std::fs::write(&saved, lines.join("\n"));
            // Checked last: first see whether what it was told is in the log.
            producer_failure = Some(format!(
                "Kafka producer failed ({status}; its whole output is in {}): {tail:?}",
                saved.display()
            ));
        }
        for line in &lines {
            let parts: Vec<&str> = line.split(' ').collect();
            if let ["ACK", p, o, v] = parts.as_slice() {
                // (FAIL lines: not acknowledged, nothing to check.)
                let p: u32 = p.parse().expect("an ACK line's partition");
                let o: i64 = o.parse().expect("an ACK line's offset");
                let Ok(o) = u64::try_from(o) else {
                    kafka_acked_somewhere.push((p, v.to_string()));
                    continue;
                };
                let previous = kafka_acked.insert((p, o), v.to_string());
                assert!(
                    previous.is_none(),
                    "two acknowledgements for one offset: {line}"
                );
            }
        }
    }

    wait_fully_replicated(&http, &cluster).await;
    let ledger = std::mem::take(&mut *ledger.lock().unwrap());
    let mut all_acked: HashMap<String, (u32, u64)> = ledger.acked.clone();
    for ((p, o), v) in &kafka_acked {
        all_acked.insert(v.clone(), (*p, *o));
    }
    // Every node serves the same log: read each partition through each node.
    let mut reference: Vec<Vec<(u64, String)>> = Vec::new();
    for p in 0..PARTITIONS {
        let via_first = read_partition(&http, &cluster.node(1).api_addr, p).await;
        for id in [2u64, 3] {
            let other = read_partition(&http, &cluster.node(id).api_addr, p).await;
            assert_eq!(
                other, via_first,
                "partition {p}: node {id} serves another log than node 1"
            );
        }
        reference.push(via_first);
    }
    // Consumers over gRPC (through each node) and over Kafka (kcat) read
    // that same log.
    let kafka_bootstrap = cluster.node(1).kafka_addr.clone();
    let kcat = kafka && common::kcat("the Kafka consumer");
    for p in 0..PARTITIONS {
        for id in [1u64, 2, 3] {
            let via_grpc = read_partition_grpc(&cluster.node(id).api_addr, p).await;
            assert_eq!(
                via_grpc, reference[p as usize],
                "partition {p}: a gRPC consumer through node {id} reads another log"
            );
        }
        if let (true, Some(bootstrap)) = (kcat, &kafka_bootstrap) {
            let via_kafka = read_partition_kafka(bootstrap.clone(), p).await;
            assert_eq!(
                via_kafka, reference[p as usize],
                "partition {p}: a Kafka consumer reads another log"
            );
        }
    }
    let mut checked = 0usize;
    let mut seen = HashSet::new();
    for (p, log) in reference.iter().enumerate() {
        for pair in log.windows(2) {
            assert_eq!(
                pair[1].0,
                pair[0].0 + 1,
                "partition {p}: a gap after offset {}",
                pair[0].0
            );
        }
        for (offset, value) in log {
            if seen.contains(value) {
                let first = log.iter().find(|(_, v)| v == value).map(|(o, _)| *o);
                eprintln!("{value} first at offset {first:?} of partition {p}");
                // What the Kafka producer was told about it, and every error
                // it reported: a retry, or a resend under a bumped epoch?
                for line in producer_lines
                    .iter()
                    .filter(|l| !l.starts_with("ACK") || l.split(' ').any(|w| w == value.as_str()))
                {
                    eprintln!("  producer: {line}");
                }
            }
            assert!(
                seen.insert(value.clone()),
                "{value} is in the log twice (partition {p}, offset {offset})"
            );
        }
    }
    for (p, value) in &kafka_acked_somewhere {
        assert!(
            reference[*p as usize].iter().any(|(_, v)| v == value),
            "{value}, acknowledged (without an offset) in partition {p}, is not there"
        );
        checked += 1;
    }
    let at: HashMap<(u32, u64), &String> = reference
        .iter()
        .enumerate()
        .flat_map(|(p, log)| log.iter().map(move |(o, v)| ((p as u32, *o), v)))
        .collect();
    for (value, (p, offset)) in &all_acked {
        if at.get(&(*p, *offset)).map(|v| v.as_str()) != Some(value.as_str()) {
            let same: Vec<&String> = all_acked
                .iter()
                .filter(|(_, po)| **po == (*p, *offset))
                .map(|(v, _)| v)
                .collect();
            let near: Vec<_> = reference[*p as usize]
                .iter()
                .filter(|(o, _)| o + 3 >= *offset && *o <= offset + 3)
                .collect();
            eprintln!(
                "acknowledged at {p}/{offset}: {same:?}; the log there: {near:?}; where else: {:?}",
                reference
                    .iter()
                    .enumerate()
                    .flat_map(|(q, l)| l
                        .iter()
                        .filter(|(_, v)| v == value)
                        .map(move |(o, _)| (q, *o)))
                    .collect::<Vec<_>>()
            );
        }
        assert_eq!(
            at.get(&(*p, *offset)).map(|v| v.as_str()),
            Some(value.as_str()),
            "acknowledged {value} at partition {p} offset {offset} is not there"
        );
        checked += 1;
    }
    assert!(
        regressions.is_empty(),
        "high watermarks went back: {regressions:?}"
    );
    if let Some(failure) = producer_failure {
        // The log as it ended, to hold the producer's sequence numbers against.
        let saved = std::env::temp_dir().join(format!("nemesis-{seed}-log.txt"));
        let text: String = reference
            .iter()
            .enumerate()
            .flat_map(|(p, log)| log.iter().map(move |(o, v)| format!("{p} {o} {v}\n")))
            .collect();
        let _ = std::fs::write(&saved, text);
        panic!("{failure} (the log read back is in {})", saved.display());
    }
    assert!(
        checked > 100,
        "only {checked} acknowledged records: the writers barely ran"
    );
    let records: usize = reference.iter().map(Vec::len).sum();
    eprintln!(
        "nemesis seed {seed}: {faults} faults, {checked} acknowledged records checked \
         ({} HTTP/gRPC, {} Kafka, {} of them without an offset; {} indeterminate writes), {records} records in the log \
         read alike over HTTP and gRPC through every node{}, \
         {samples} high-watermark samples, failovers {failovers:?}; 0 anomalies",
        ledger.acked.len(),
        kafka_acked.len() + kafka_acked_somewhere.len(),
        kafka_acked_somewhere.len(),
        ledger.indeterminate,
        if kcat { " and over Kafka" } else { "" },
    );
    for line in &schedule {
        eprintln!("  {line}");
    }
}
