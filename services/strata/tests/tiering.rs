//! Tiered storage through the real binary, against a real S3-compatible
//! server (moto, installed by scripts/test.sh) and against a local
//! directory: offload, reads from the bucket through HTTP, gRPC and Kafka,
//! a restart without the local journal, a bucket outage with back-pressure,
//! a crash between upload and manifest commit, retention across tiers, and
//! a corrupted object.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::Server;
use serde_json::{Value, json};
use strata_api::proto::{self, read_request::Start, strata_client::StrataClient};
use strata_test_support::MotoServer;

const TOPIC: &str = "history";
const PARTITIONS: u32 = 2;
const RECORDS: usize = 600;

/// Flags that make segments small and move them to the bucket at once.
const FAST: &[&str] = &[
    "--offload-interval",
    "100ms",
    "--retention-interval",
    "200ms",
    "--local-retention-ms",
    "0",
    "--local-retention-bytes",
    "0",
];

/// Where the bucket is: a directory under the data dir, or a moto bucket.
enum Bucket {
    Local,
    S3(MotoServer),
}

impl Bucket {
    fn s3() -> Option<Bucket> {
        if !MotoServer::available() {
            assert!(
                std::env::var("CI").map_or(true, |v| v != "true"),
                "moto_server is missing (scripts/test.sh installs it)"
            );
            eprintln!("!!! SKIPPED: moto_server is not installed (scripts/test.sh installs it)");
            return None;
        }
        let mut moto = MotoServer::start();
        moto.create_bucket("strata");
        Some(Bucket::S3(moto))
    }

    fn args(&self) -> Vec<String> {
        match self {
            Bucket::Local => Vec::new(),
            Bucket::S3(_) => vec!["--object-store".into(), "s3://strata/tiering-test".into()],
        }
    }

    fn env(&self) -> Vec<(String, String)> {
        match self {
            Bucket::Local => Vec::new(),
            Bucket::S3(moto) => moto.env().into_iter().collect(),
        }
    }
}

struct Node {
    server: Option<Server>,
    dir: PathBuf,
    bucket: Bucket,
    extra: Vec<String>,
    env: Vec<(String, String)>,
}

impl Node {
    fn start(dir: &Path, bucket: Bucket, extra: &[&str]) -> Node {
        let mut node = Node {
            server: None,
            dir: dir.to_path_buf(),
            bucket,
            extra: extra.iter().map(|s| s.to_string()).collect(),
            env: Vec::new(),
        };
        node.restart();
        node
    }

    fn restart(&mut self) {
        if let Some(s) = self.server.take() {
            assert!(s.terminate(), "the server did not stop cleanly");
        }
        // FAST's flags, unless `extra` sets them itself.
        let mut args: Vec<String> = Vec::new();
        for pair in FAST.chunks(2) {
            if !self.extra.iter().any(|e| e == pair[0]) {
                args.extend(pair.iter().map(|s| s.to_string()));
            }
        }
        args.extend(self.bucket.args());
        args.extend(self.extra.iter().cloned());
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let mut env = self.bucket.env();
        env.extend(self.env.iter().cloned());
        self.server = Some(Server::start_with_env(
            "127.0.0.1:0",
            &self.dir,
            &args,
            &env,
        ));
    }

    fn server(&self) -> &Server {
        self.server.as_ref().expect("running")
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.server().url())
    }
}

fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("client")
}

async fn create_topic(node: &Node, config: Value) {
    let r = http()
        .post(node.url("/v1/tenants/default/topics"))
        .json(&json!({"name": TOPIC, "partitions": PARTITIONS, "config": config}))
        .send()
        .await
        .expect("create topic");
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap_or_default());
}

/// Produces `count` records to partition `i % PARTITIONS`, 25 per request;
/// returns what each partition should hold, in order.
async fn produce(node: &Node, first: usize, count: usize) -> Vec<Vec<(String, String)>> {
    let mut want = vec![Vec::new(); PARTITIONS as usize];
    let client = http();
    for chunk in (first..first + count).collect::<Vec<_>>().chunks(25) {
        let records: Vec<Value> = chunk
            .iter()
            .map(|i| {
                json!({
                    "key": format!("key-{i}"),
                    "value": format!("value {i} {}", "x".repeat(80)),
                    "partition": *i as u32 % PARTITIONS,
                })
            })
            .collect();
        let r = client
            .post(node.url(&format!("/v1/tenants/default/topics/{TOPIC}/records")))
            .json(&json!({ "records": records }))
            .send()
            .await
            .expect("produce");
        assert_eq!(r.status(), 200, "{}", r.text().await.unwrap_or_default());
        for i in chunk {
            want[(*i as u32 % PARTITIONS) as usize]
                .push((format!("key-{i}"), format!("value {i} {}", "x".repeat(80))));
        }
    }
    want
}

async fn describe(node: &Node) -> Value {
    http()
        .get(node.url(&format!("/v1/tenants/default/topics/{TOPIC}")))
        .send()
        .await
        .expect("describe")
        .json()
        .await
        .expect("json")
}

/// Waits (bounded) until every partition's records are all in the bucket
/// (the idle active segment seals after `segment_ms`) and its local copy
/// starts past offset 0.
async fn wait_offloaded(node: &Node) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let d = describe(node).await;
        let parts = d["partition_info"].as_array().cloned().unwrap_or_default();
        let done = !parts.is_empty()
            && parts.iter().all(|p| {
                p["offload_lag_bytes"].as_u64() == Some(0)
                    && p["remote_segments"].as_u64().unwrap_or(0) >= 2
                    && p["local_start_offset"].as_u64().unwrap_or(0) > 0
                    && p["remote_end_offset"] == p["end_offset"]
            });
        if done {
            return d;
        }
        assert!(
            Instant::now() < deadline,
            "not offloaded within 60 s: {d:#}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Every record of a partition over HTTP from `from`: (offset, key, value).
async fn read_http(
    node: &Node,
    partition: u32,
    from: u64,
) -> Result<Vec<(u64, String, String)>, (u16, String)> {
    let mut out = Vec::new();
    let mut offset = from;
    loop {
        let r = http()
            .get(node.url(&format!(
                "/v1/tenants/default/topics/{TOPIC}/partitions/{partition}/records?offset={offset}&max_records=100"
            )))
            .send()
            .await
            .expect("read");
        let status = r.status().as_u16();
        let body: Value = r.json().await.expect("json");
        if status != 200 {
            return Err((status, body.to_string()));
        }
        let records = body["records"].as_array().cloned().unwrap_or_default();
        if records.is_empty() {
            if std::env::var_os("TIERING_DEBUG").is_some() {
                eprintln!("empty page at {offset}: {body}");
            }
            return Ok(out);
        }
        for rec in records {
            let o = rec["offset"].as_u64().expect("offset");
            out.push((
                o,
                rec["key"].as_str().unwrap_or_default().to_string(),
                rec["value"].as_str().unwrap_or_default().to_string(),
            ));
            offset = o + 1;
        }
    }
}

async fn read_grpc(node: &Node, partition: u32) -> Vec<(u64, String, String)> {
    let mut grpc = StrataClient::connect(node.server().url())
        .await
        .expect("grpc");
    let mut out = Vec::new();
    let mut offset = 0;
    loop {
        let resp = grpc
            .read(proto::ReadRequest {
                tenant: "default".into(),
                topic: TOPIC.into(),
                partition,
                start: Some(Start::Offset(offset)),
                max_records: 100,
                max_bytes: 0,
                wait_ms: 0,
            })
            .await
            .expect("gRPC read")
            .into_inner();
        if resp.records.is_empty() {
            return out;
        }
        for r in resp.records {
            out.push((
                r.offset,
                String::from_utf8(r.key.map(|k| k.to_vec()).unwrap_or_default()).unwrap(),
                String::from_utf8(r.value.map(|v| v.to_vec()).unwrap_or_default()).unwrap(),
            ));
            offset = r.offset + 1;
        }
    }
}

/// Checks every partition holds exactly `want` from offset 0, over HTTP and gRPC.
async fn check_all(node: &Node, want: &[Vec<(String, String)>]) {
    for p in 0..PARTITIONS {
        let expected: Vec<(u64, String, String)> = want[p as usize]
            .iter()
            .enumerate()
            .map(|(i, (k, v))| (i as u64, k.clone(), v.clone()))
            .collect();
        let got = read_http(node, p, 0).await.expect("HTTP read");
        assert_eq!(got.len(), expected.len(), "partition {p} over HTTP");
        assert!(got == expected, "partition {p} over HTTP differs");
        let got = read_grpc(node, p).await;
        assert!(got == expected, "partition {p} over gRPC differs");
    }
}

fn merge(a: &mut [Vec<(String, String)>], b: Vec<Vec<(String, String)>>) {
    for (x, y) in a.iter_mut().zip(b) {
        x.extend(y);
    }
}

/// Segments of 4 KiB, sealed after 300 ms idle, leaving local disk at once.
fn small_segments() -> Value {
    json!({"segment_bytes": 4096, "segment_ms": 300, "local_retention_ms": 0, "local_retention_bytes": 0})
}

/// Segment objects in a local-directory bucket.
fn local_objects(data: &Path) -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(&p, out);
            } else if p.extension().is_some_and(|x| x == "seg") {
                out.push(p);
            }
        }
    }
    let mut out = Vec::new();
    walk(&data.join("objects"), &mut out);
    out.sort();
    out
}

async fn offload_and_read_back(bucket: Bucket) {
    let dir = tempfile::tempdir().unwrap();
    let mut node = Node::start(dir.path(), bucket, &[]);
    create_topic(&node, small_segments()).await;
    let want = produce(&node, 0, RECORDS).await;
    let d = wait_offloaded(&node).await;
    for p in d["partition_info"].as_array().unwrap() {
        // Only the tail is local: most bytes are in the bucket.
        assert!(
            p["remote_bytes"].as_u64().unwrap() > p["local_bytes"].as_u64().unwrap(),
            "{p}"
        );
        assert_eq!(p["start_offset"].as_u64(), Some(0));
    }
    check_all(&node, &want).await;

    // The journal and the partitions' local copies are gone; the metadata
    // (manifests) and the bucket stay: history comes from the bucket alone.
    assert!(node.server.take().unwrap().terminate());
    std::fs::remove_dir_all(dir.path().join("log")).unwrap();
    node.restart();
    check_all(&node, &want).await;
    // New records continue the offsets after the bucket's.
    let mut want = want;
    let more = produce(&node, RECORDS, 50).await;
    merge(&mut want, more);
    check_all(&node, &want).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offload_to_a_local_directory_and_read_back() {
    offload_and_read_back(Bucket::Local).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offload_to_s3_and_read_back() {
    let Some(bucket) = Bucket::s3() else { return };
    offload_and_read_back(bucket).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_consumers_read_history_from_the_bucket() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(dir.path(), Bucket::Local, &[]);
    create_topic(&node, small_segments()).await;
    let want = produce(&node, 0, RECORDS).await;
    wait_offloaded(&node).await;
    let kafka = node.server().kafka_addr.clone().expect("kafka listener");
    for p in 0..PARTITIONS {
        let out = common::run_bounded(
            std::process::Command::new("kcat").args([
                "-b",
                &kafka,
                "-C",
                "-t",
                TOPIC,
                "-p",
                &p.to_string(),
                "-o",
                "beginning",
                "-e",
                "-q",
                "-f",
                "%o %k %s\n",
            ]),
            Duration::from_secs(60),
        );
        assert!(out.success(), "kcat failed: {}", out.stderr);
        let got: Vec<String> = out.stdout.lines().map(str::to_string).collect();
        let expected: Vec<String> = want[p as usize]
            .iter()
            .enumerate()
            .map(|(i, (k, v))| format!("{i} {k} {v}"))
            .collect();
        assert!(
            got == expected,
            "partition {p} over Kafka differs ({} vs {} records)",
            got.len(),
            expected.len()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bucket_outage_applies_back_pressure_and_loses_nothing() {
    let Some(bucket) = Bucket::s3() else { return };
    let dir = tempfile::tempdir().unwrap();
    let mut node = Node::start(dir.path(), bucket, &["--local-disk-budget-bytes", "40000"]);
    create_topic(&node, small_segments()).await;
    let mut want = produce(&node, 0, 200).await;
    wait_offloaded(&node).await;

    // The bucket stops answering (SIGSTOP: requests hang, as with a network
    // partition; its data stays).
    let Bucket::S3(moto) = &mut node.bucket else {
        unreachable!()
    };
    moto.pause();
    // Producing goes on while the budget lasts, then gets a retryable 503.
    let client = http();
    let mut next = 200;
    let deadline = Instant::now() + Duration::from_secs(60);
    let refused = loop {
        let p = next as u32 % PARTITIONS;
        let r = client
            .post(node.url(&format!("/v1/tenants/default/topics/{TOPIC}/records")))
            .json(&json!({"records": [{"key": format!("key-{next}"), "value": format!("value {next} {}", "x".repeat(80)), "partition": p}]}))
            .send()
            .await
            .expect("produce");
        let status = r.status().as_u16();
        let body: Value = r.json().await.expect("json");
        if status == 503 {
            assert_eq!(body["error"]["code"], "unavailable", "{body}");
            break body["error"].clone();
        }
        assert_eq!(status, 200, "{body}");
        want[p as usize].push((
            format!("key-{next}"),
            format!("value {next} {}", "x".repeat(80)),
        ));
        next += 1;
        assert!(
            Instant::now() < deadline,
            "never refused while the bucket was down"
        );
        if next % 50 == 0 {
            // Let the offload pass notice the backlog.
            tokio::time::sleep(Duration::from_millis(150)).await;
        }
    };
    assert!(
        refused["message"]
            .as_str()
            .unwrap_or_default()
            .contains("waiting for upload"),
        "{refused}"
    );
    assert!(next > 200, "the budget allowed no produce at all");

    // The bucket returns: offload catches up on its own, producing resumes.
    let Bucket::S3(moto) = &mut node.bucket else {
        unreachable!()
    };
    moto.resume();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let d = describe(&node).await;
        if d["partition_info"]
            .as_array()
            .unwrap()
            .iter()
            .all(|p| p["offload_lag_bytes"].as_u64() == Some(0))
        {
            break;
        }
        assert!(Instant::now() < deadline, "offload did not catch up: {d:#}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let more = produce(&node, 10_000, 50).await;
    merge(&mut want, more);
    check_all(&node, &want).await;
    node.restart();
    check_all(&node, &want).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_between_upload_and_commit_leaves_no_duplicate_gap_or_orphan() {
    let dir = tempfile::tempdir().unwrap();
    // Records first, with offload held back (an hour between passes).
    let mut node = Node::start(
        dir.path(),
        Bucket::Local,
        &[
            "--orphan-grace",
            "0s",
            "--gc-interval",
            "100ms",
            "--offload-interval",
            "1h",
        ],
    );
    create_topic(&node, small_segments()).await;
    let want = produce(&node, 0, RECORDS).await;
    // Then offload with the fault hook: the first upload aborts the process
    // before its manifest commit (it may do so before it even listens).
    assert!(node.server.take().unwrap().terminate());
    let mut child = std::process::Command::new(common::BIN)
        .args([
            "server",
            "--listen",
            "127.0.0.1:0",
            "--kafka-listen",
            "off",
            "--data-dir",
        ])
        .arg(dir.path())
        .args(["--offload-interval", "100ms"])
        .env("STRATA_FAULT_CRASH_AFTER_UPLOAD", "1")
        .env("RUST_LOG", "error")
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("start strata");
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the fault hook never fired");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(!status.success(), "the server should have aborted");
    let orphans = local_objects(dir.path());
    // Uploads run concurrently: one or more finished before the abort, and
    // no manifest names any of them.
    assert!(!orphans.is_empty(), "no upload happened before the abort");

    node.extra = vec![
        "--orphan-grace".into(),
        "0s".into(),
        "--gc-interval".into(),
        "100ms".into(),
    ];
    node.restart();
    let d = wait_offloaded(&node).await;
    check_all(&node, &want).await;
    // The orphan is collected; every object left is named by a manifest.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let objects = local_objects(dir.path());
        let named: u64 = describe(&node).await["partition_info"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["remote_segments"].as_u64().unwrap())
            .sum();
        if !orphans.iter().any(|o| objects.contains(o)) && objects.len() as u64 == named {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "orphan not collected: {objects:?}, {d:#}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_deletes_objects_and_advances_the_start_offset() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(dir.path(), Bucket::Local, &[]);
    create_topic(&node, small_segments()).await;
    let want = produce(&node, 0, RECORDS).await;
    wait_offloaded(&node).await;
    let before = local_objects(dir.path()).len();

    // By size: each partition keeps about 8 KiB.
    let r = http()
        .patch(node.url(&format!("/v1/tenants/default/topics/{TOPIC}")))
        .json(&json!({"config": {"retention_bytes": 8192}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let deadline = Instant::now() + Duration::from_secs(30);
    let d = loop {
        let d = describe(&node).await;
        if d["partition_info"]
            .as_array()
            .unwrap()
            .iter()
            .all(|p| p["start_offset"].as_u64().unwrap() > 0)
        {
            break d;
        }
        assert!(
            Instant::now() < deadline,
            "size retention did not advance: {d:#}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let after_size = local_objects(dir.path()).len();
    assert!(after_size < before, "{after_size} objects, {before} before");
    for p in d["partition_info"].as_array().unwrap() {
        let n = p["partition"].as_u64().unwrap() as u32;
        let start = p["start_offset"].as_u64().unwrap();
        // Below the start: out of range; from it: the records, in order.
        let (status, body) = read_http(&node, n, 0).await.expect_err("offset 0 is gone");
        assert_eq!(status, 416, "{body}");
        let got = read_http(&node, n, start)
            .await
            .expect("read from the new start");
        let expected: Vec<(u64, String, String)> = want[n as usize]
            .iter()
            .enumerate()
            .skip(start as usize)
            .map(|(i, (k, v))| (i as u64, k.clone(), v.clone()))
            .collect();
        assert!(got == expected, "partition {n} after size retention");
    }

    // By time: everything sealed is older than 1 ms.
    let r = http()
        .patch(node.url(&format!("/v1/tenants/default/topics/{TOPIC}")))
        .json(&json!({"config": {"retention_ms": 1, "retention_bytes": -1}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let d = describe(&node).await;
        let gone = d["partition_info"]
            .as_array()
            .unwrap()
            .iter()
            .all(|p| p["remote_segments"].as_u64() == Some(0));
        if gone && local_objects(dir.path()).is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "time retention did not delete the objects: {d:#}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupted_object_is_reported_not_served() {
    let dir = tempfile::tempdir().unwrap();
    let mut node = Node::start(dir.path(), Bucket::Local, &[]);
    create_topic(&node, small_segments()).await;
    let want = produce(&node, 0, RECORDS).await;
    wait_offloaded(&node).await;
    assert!(node.server.take().unwrap().terminate());
    // Flip a byte in the middle of partition 0's first object (in its batches).
    let first = local_objects(dir.path())
        .into_iter()
        .find(|p| {
            p.to_string_lossy().contains(&format!("/{}/", 0))
                && p.file_name()
                    .unwrap()
                    .to_string_lossy()
                    .starts_with("00000000000000000000-")
        })
        .expect("partition 0's first object");
    let mut bytes = std::fs::read(&first).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x40;
    std::fs::write(&first, bytes).unwrap();
    node.restart();

    let (status, body) = read_http(&node, 0, 0)
        .await
        .expect_err("corrupt data must not be served");
    assert_eq!(status, 500, "{body}");
    assert!(
        body.contains("corrupt") || body.contains("checksum") || body.contains("CRC"),
        "{body}"
    );
    // Other segments still serve.
    let later = read_http(&node, 1, 0).await.expect("partition 1 is intact");
    assert_eq!(later.len(), want[1].len());
}

/// A counter's value in `/metrics` (0 when absent).
async fn metric(node: &Node, name: &str) -> f64 {
    let text = http()
        .get(node.url("/metrics"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("metrics text");
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
        .unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readers_of_the_same_history_share_bucket_fetches_and_read_ahead() {
    let dir = tempfile::tempdir().unwrap();
    let mut node = Node::start(dir.path(), Bucket::Local, &["--tier-block-bytes", "65536"]);
    // Segments of about three 64 KiB blocks.
    let config = json!({"segment_bytes": 196_608, "segment_ms": 300, "local_retention_ms": 0, "local_retention_bytes": 0});
    create_topic(&node, config).await;
    let want = produce(&node, 0, 4_000).await;
    let d = wait_offloaded(&node).await;
    let remote_bytes = |p: u64| {
        d["partition_info"]
            .as_array()
            .unwrap()
            .iter()
            .find(|i| i["partition"].as_u64() == Some(p))
            .and_then(|i| i["remote_bytes"].as_u64())
            .expect("remote bytes") as f64
    };
    let expected = |p: usize| -> Vec<(u64, String, String)> {
        want[p]
            .iter()
            .enumerate()
            .map(|(i, (k, v))| (i as u64, k.clone(), v.clone()))
            .collect()
    };
    // After a restart the block cache is empty (and the metrics are zero).
    node.restart();
    assert_eq!(
        metric(&node, "strata_tier_bucket_read_bytes_total").await,
        0.0
    );

    // Two readers of the same history at once: about one fetch per block.
    let (a, b) = tokio::join!(read_http(&node, 0, 0), read_http(&node, 0, 0));
    assert!(a.expect("reader a") == expected(0), "reader a differs");
    assert!(b.expect("reader b") == expected(0), "reader b differs");
    let fetched = metric(&node, "strata_tier_bucket_read_bytes_total").await;
    let one_pass = remote_bytes(0);
    assert!(
        fetched >= 0.9 * one_pass && fetched <= 1.3 * one_pass,
        "{fetched} bytes fetched from the bucket for two readers of {one_pass} bytes of objects"
    );

    // One sequential reader catching up: read-ahead fetches before it asks.
    let ahead = metric(&node, "strata_tier_read_ahead_blocks_total").await;
    let hits = metric(&node, "strata_tier_cache_hits_total").await;
    let got = read_http(&node, 1, 0).await.expect("catch-up read");
    assert!(got == expected(1), "partition 1 differs");
    assert!(
        metric(&node, "strata_tier_read_ahead_blocks_total").await > ahead,
        "no read-ahead"
    );
    assert!(metric(&node, "strata_tier_cache_hits_total").await > hits);
    let fetched = metric(&node, "strata_tier_bucket_read_bytes_total").await;
    let both = remote_bytes(0) + remote_bytes(1);
    assert!(fetched <= 1.3 * both, "{fetched} bytes fetched for {both}");
}
