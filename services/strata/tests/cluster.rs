//! A 3-node cluster of real `strata` processes sharing an S3-compatible
//! server (moto): the metadata group survives a SIGKILLed Raft leader while
//! topics are created and offsets committed (nothing acknowledged lost,
//! nothing applied twice), a full restart, a node joining and leaving, and a
//! restore of a new cluster from the bucket alone.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::moto;
use serde_json::{Value, json};
use strata_test_support::{Cluster, MotoServer};

const BIN: &str = common::BIN;
const PREFIX: &str = "s3://strata/cluster-test";

fn common_args() -> Vec<&'static str> {
    vec!["--object-store", PREFIX, "--meta-snapshot-every", "5"]
}

async fn status(http: &reqwest::Client, addr: &str) -> Option<Value> {
    let resp = http
        .get(format!("http://{addr}/v1/cluster"))
        .timeout(Duration::from_secs(2))
        .send()
        .await
        .ok()?;
    resp.json().await.ok()
}

/// Polls the given nodes until all name the same leader (other than
/// `not`); bounded.
async fn agreed_leader(http: &reqwest::Client, addrs: &[String], not: Option<u64>) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let mut leaders = BTreeSet::new();
        for addr in addrs {
            let leader = status(http, addr)
                .await
                .and_then(|s| s["raft"]["leader"].as_u64());
            leaders.insert(leader);
        }
        if leaders.len() == 1
            && let Some(Some(l)) = leaders.first()
            && Some(*l) != not
        {
            return *l;
        }
        assert!(Instant::now() < deadline, "no agreed leader: {leaders:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// What the writer had acknowledged.
#[derive(Default, Clone)]
struct Acked {
    topics: Vec<String>,
    /// The last committed offset of group `g` on `t0/0` that was acknowledged.
    offset: Option<u64>,
}

fn snapshot(acked: &Mutex<Acked>) -> Acked {
    acked.lock().unwrap().clone()
}

/// Creates topics `{prefix}{i}` and commits offsets, rotating over
/// `addrs` and moving on from a node that fails; returns when `count` are
/// acknowledged.
async fn write(
    http: reqwest::Client,
    addrs: Vec<String>,
    prefix: &str,
    count: usize,
    acked: Arc<Mutex<Acked>>,
) {
    let mut next = 0usize;
    for i in 0..count {
        let name = format!("{prefix}{i}");
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            assert!(
                Instant::now() < deadline,
                "cannot create {name} through any node"
            );
            let addr = &addrs[next % addrs.len()];
            next += 1;
            let resp = http
                .post(format!("http://{addr}/v1/tenants/default/topics"))
                .json(&json!({ "name": name, "partitions": 1 }))
                .timeout(Duration::from_secs(15))
                .send()
                .await;
            match resp.map(|r| r.status().as_u16()) {
                // 409: an earlier attempt whose answer was lost did create it.
                Ok(201) | Ok(409) => break,
                _ => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
        acked.lock().unwrap().topics.push(name);
        if prefix == "t" {
            let offset = i as u64;
            loop {
                let addr = &addrs[next % addrs.len()];
                next += 1;
                let resp = http
                    .put(format!("http://{addr}/v1/tenants/default/groups/g/offsets"))
                    .json(&json!({ "offsets": [{ "topic": "t0", "partition": 0, "offset": offset }] }))
                    .timeout(Duration::from_secs(15))
                    .send()
                    .await;
                if resp.is_ok_and(|r| r.status().is_success()) {
                    acked.lock().unwrap().offset = Some(offset);
                    break;
                }
                assert!(Instant::now() < deadline, "cannot commit offset {offset}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// Topic name → id as node `addr` lists them (after its read barrier).
async fn topics(http: &reqwest::Client, addr: &str) -> BTreeMap<String, u64> {
    let body: Value = http
        .get(format!("http://{addr}/v1/tenants/default/topics"))
        .send()
        .await
        .expect("list topics")
        .json()
        .await
        .expect("topic list");
    let list = body["topics"].as_array().expect("topics");
    let map: BTreeMap<String, u64> = list
        .iter()
        .map(|t| {
            (
                t["name"].as_str().unwrap().to_string(),
                t["id"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(map.len(), list.len(), "a topic is listed twice on {addr}");
    map
}

async fn group_offset(http: &reqwest::Client, addr: &str) -> Option<u64> {
    let body: Value = http
        .get(format!("http://{addr}/v1/tenants/default/groups/g/offsets"))
        .send()
        .await
        .ok()?
        .json()
        .await
        .ok()?;
    body["offsets"][0]["offset"].as_u64()
}

/// Every running node lists exactly the same topics, including every
/// acknowledged one, and the last acknowledged offset.
async fn check_everywhere(
    http: &reqwest::Client,
    cluster: &Cluster,
    acked: &Acked,
) -> BTreeMap<String, u64> {
    let mut first: Option<BTreeMap<String, u64>> = None;
    for id in cluster.running() {
        let addr = &cluster.node(id).api_addr;
        let seen = topics(http, addr).await;
        for name in &acked.topics {
            assert!(
                seen.contains_key(name),
                "node {id} lost acknowledged topic {name}"
            );
        }
        if let Some(first) = &first {
            assert_eq!(first, &seen, "node {id} disagrees");
        }
        assert_eq!(
            group_offset(http, addr).await,
            acked.offset,
            "offset on node {id}"
        );
        first = Some(seen);
    }
    first.unwrap_or_default()
}

fn addrs(cluster: &Cluster) -> Vec<String> {
    cluster
        .running()
        .into_iter()
        .map(|id| cluster.node(id).api_addr.clone())
        .collect()
}

/// Restores the newest bucket snapshot into `dir`; returns its log index.
fn restore(env: &std::collections::HashMap<String, String>, dir: &Path) -> u64 {
    let out = std::process::Command::new(BIN)
        .args(["meta", "restore", "--object-store", PREFIX, "--data-dir"])
        .arg(dir)
        .envs(env)
        .output()
        .expect("run strata meta restore");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "restore failed: {stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
        .split("log index ")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .expect("restore prints the index")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metadata_group_survives_failures_membership_changes_and_restore() {
    let Some(moto) = moto() else { return };
    let root = tempfile::tempdir().unwrap();
    let env = moto.env();
    let mut cluster = Cluster::start(Path::new(BIN), root.path(), 3, &common_args(), env.clone());
    let http = reqwest::Client::new();

    // The leader is killed while a writer creates topics and commits offsets.
    let leader = agreed_leader(&http, &addrs(&cluster), None).await;
    let acked = Arc::new(Mutex::new(Acked::default()));
    let writer = tokio::spawn(write(http.clone(), addrs(&cluster), "t", 30, acked.clone()));
    let start = Instant::now();
    while acked.lock().unwrap().topics.len() < 8 {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "writer made no progress"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    cluster.kill(leader);
    let killed_at = Instant::now();
    let new_leader = agreed_leader(&http, &addrs(&cluster), Some(leader)).await;
    eprintln!(
        "node {leader} (leader) SIGKILLed; node {new_leader} leads after {} ms",
        killed_at.elapsed().as_millis()
    );
    writer.await.unwrap();
    let before_restart = {
        let acked = snapshot(&acked);
        assert_eq!(acked.topics.len(), 30);
        assert_eq!(acked.offset, Some(29));
        check_everywhere(&http, &cluster, &acked).await
    };

    // The killed node comes back and catches up.
    cluster.restart(leader);
    let after = check_everywhere(&http, &cluster, &snapshot(&acked)).await;
    assert_eq!(after, before_restart, "a topic changed or appeared twice");

    // A fourth node joins as a voter while clients keep working, then leaves.
    let writer = tokio::spawn(write(http.clone(), addrs(&cluster), "j", 10, acked.clone()));
    cluster.join(4, 1, "meta,broker");
    let status = status(&http, &cluster.node(4).api_addr)
        .await
        .expect("status from node 4");
    writer.await.unwrap();
    let voters = |s: &Value| -> Vec<u64> {
        s["raft"]["voters"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap())
            .collect()
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut s = status;
    while voters(&s) != [1, 2, 3, 4] {
        assert!(
            Instant::now() < deadline,
            "node 4 never became a voter: {s}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
        s = self::status(&http, &cluster.node(1).api_addr)
            .await
            .unwrap();
    }
    check_everywhere(&http, &cluster, &snapshot(&acked)).await;
    // Clients keep working while node 4 leaves (requests it was serving
    // move on to the other nodes).
    let writer = tokio::spawn(write(http.clone(), addrs(&cluster), "l", 10, acked.clone()));
    let resp = http
        .delete(format!(
            "http://{}/v1/cluster/nodes/4",
            cluster.node(2).api_addr
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 204, "{:?}", resp.text().await);
    cluster.forget(4);
    writer.await.unwrap();
    let s = self::status(&http, &cluster.node(1).api_addr)
        .await
        .unwrap();
    assert_eq!(voters(&s), [1, 2, 3], "{s}");
    assert!(
        s["brokers"]
            .as_array()
            .unwrap()
            .iter()
            .all(|b| b["node_id"] != 4),
        "{s}"
    );

    // Every node SIGKILLed, then all restarted: the state is intact.
    let final_topics = check_everywhere(&http, &cluster, &snapshot(&acked)).await;
    for id in [1, 2, 3] {
        cluster.kill(id);
    }
    cluster.restart_all();
    agreed_leader(&http, &addrs(&cluster), None).await;
    assert_eq!(
        check_everywhere(&http, &cluster, &snapshot(&acked)).await,
        final_topics
    );

    // A snapshot covering everything reaches the bucket (heartbeats keep
    // the log moving, so one is written every few seconds).
    let commit = self::status(&http, &cluster.node(1).api_addr)
        .await
        .unwrap()["raft"]["commit_index"]
        .as_u64()
        .unwrap();
    let probe = tempfile::tempdir().unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let _ = std::fs::remove_file(probe.path().join("metadata.json"));
        if restore(&env, probe.path()) >= commit {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no snapshot at or past {commit} in the bucket"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    drop(cluster);

    // A new cluster restored from the bucket alone serves the old topics and offsets.
    let fresh = tempfile::tempdir().unwrap();
    restore(&env, &fresh.path().join("node1"));
    let restored = Cluster::start(Path::new(BIN), fresh.path(), 3, &common_args(), env.clone());
    agreed_leader(&http, &addrs(&restored), None).await;
    // The restored topics get leaders among the new brokers (none is served
    // by every node at once).
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let s = self::status(&http, &restored.node(1).api_addr)
            .await
            .unwrap();
        let placed = s["partitions"].as_array().map_or(0, Vec::len);
        if placed == final_topics.len() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "restored partitions never placed: {s}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(
        check_everywhere(&http, &restored, &snapshot(&acked)).await,
        final_topics
    );
}

/// `(partition, offset, key, value)` of every record of `topic`, read
/// through node `addr` over HTTP.
async fn read_all_http(
    http: &reqwest::Client,
    addr: &str,
    topic: &str,
    partitions: u32,
) -> Vec<(u32, u64, String, String)> {
    let mut out = Vec::new();
    for p in 0..partitions {
        let mut offset = 0;
        loop {
            let body: Value = http
                .get(format!(
                    "http://{addr}/v1/tenants/default/topics/{topic}/partitions/{p}/records?offset={offset}&max_records=500"
                ))
                .send()
                .await
                .expect("read")
                .json()
                .await
                .expect("read body");
            let records = body["records"].as_array().cloned().unwrap_or_default();
            if records.is_empty() {
                break;
            }
            for r in records {
                offset = r["offset"].as_u64().unwrap() + 1;
                out.push((
                    p,
                    offset - 1,
                    r["key"].as_str().unwrap_or("").to_string(),
                    r["value"].as_str().unwrap_or("").to_string(),
                ));
            }
        }
    }
    out
}

async fn read_all_grpc(
    addr: &str,
    topic: &str,
    partitions: u32,
) -> Vec<(u32, u64, String, String)> {
    use strata_api::proto::{self, read_request::Start, strata_client::StrataClient};
    let mut grpc = StrataClient::connect(format!("http://{addr}"))
        .await
        .expect("grpc");
    let mut out = Vec::new();
    for partition in 0..partitions {
        let mut offset = 0;
        loop {
            let resp = grpc
                .read(proto::ReadRequest {
                    tenant: "default".into(),
                    topic: topic.into(),
                    partition,
                    start: Some(Start::Offset(offset)),
                    max_records: 500,
                    max_bytes: 0,
                    wait_ms: 0,
                })
                .await
                .expect("gRPC read")
                .into_inner();
            if resp.records.is_empty() {
                break;
            }
            for r in resp.records {
                let text = |b: Option<bytes::Bytes>| {
                    String::from_utf8(b.map(|b| b.to_vec()).unwrap_or_default()).unwrap()
                };
                out.push((partition, r.offset, text(r.key), text(r.value)));
                offset = r.offset + 1;
            }
        }
    }
    out
}

/// A 3-node cluster with a leader and all three brokers registered, so
/// placement sees them all.
async fn three_brokers(moto: &MotoServer, root: &Path) -> (Cluster, reqwest::Client) {
    let cluster = Cluster::start(Path::new(BIN), root, 3, &common_args(), moto.env());
    let http = reqwest::Client::new();
    agreed_leader(&http, &addrs(&cluster), None).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while status(&http, &cluster.node(1).api_addr)
        .await
        .map_or(0, |s| s["brokers"].as_array().map_or(0, Vec::len))
        < 3
    {
        assert!(Instant::now() < deadline, "brokers never registered");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    (cluster, http)
}

/// Creates topic `name` through the node at `addr`.
async fn create_topic(http: &reqwest::Client, addr: &str, name: &str, partitions: u32) {
    let resp = http
        .post(format!("http://{addr}/v1/tenants/default/topics"))
        .json(&json!({ "name": name, "partitions": partitions }))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 201, "{:?}", resp.text().await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn any_node_serves_every_partition_over_http_and_grpc() {
    let Some(moto) = moto() else { return };
    let root = tempfile::tempdir().unwrap();
    let (cluster, http) = three_brokers(&moto, root.path()).await;
    const PARTITIONS: u32 = 6;
    create_topic(&http, &cluster.node(1).api_addr, "orders", PARTITIONS).await;
    // The partitions are spread over all three brokers.
    // `/v1/cluster` shows a node's own view (it answers without a quorum);
    // a topic listing first brings node 2 up to date with the leader.
    topics(&http, &cluster.node(2).api_addr).await;
    let s = status(&http, &cluster.node(2).api_addr).await.unwrap();
    let leaders: BTreeSet<u64> = s["partitions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| {
            p["partition"]
                .as_str()
                .unwrap()
                .starts_with("default/orders/")
        })
        .map(|p| p["leader"].as_u64().unwrap())
        .collect();
    assert_eq!(leaders, BTreeSet::from([1, 2, 3]), "{s}");

    // The CLI shows the same: every broker alive, the metadata leader, and
    // the leader of every partition.
    topics(&http, &cluster.node(3).api_addr).await;
    let out = common::run_bounded(
        std::process::Command::new(BIN).args([
            "cluster",
            "status",
            "--server",
            &cluster.node(3).api_addr,
        ]),
        Duration::from_secs(30),
    );
    assert!(out.success(), "{}", out.stderr);
    assert!(
        out.stdout.contains("metadata leader: node"),
        "{}",
        out.stdout
    );
    assert_eq!(out.stdout.matches(" yes ").count(), 3, "{}", out.stdout);
    assert_eq!(
        out.stdout.matches("default/orders/").count(),
        PARTITIONS as usize,
        "{}",
        out.stdout
    );

    // Keyed records produced through every node, over HTTP.
    for (round, id) in [1u64, 2, 3].into_iter().enumerate() {
        let records: Vec<Value> = (0..30)
            .map(|i| json!({ "key": format!("k{i}"), "value": format!("r{round}-{i}") }))
            .collect();
        let resp = http
            .post(format!(
                "http://{}/v1/tenants/default/topics/orders/records",
                cluster.node(id).api_addr
            ))
            .json(&json!({ "records": records }))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), 200, "{:?}", resp.text().await);
    }
    // A conditional append through a node that does not lead the partition.
    let s = status(&http, &cluster.node(1).api_addr).await.unwrap();
    let (partition, leader) = s["partitions"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|p| {
            let key = p["partition"].as_str()?.strip_prefix("default/orders/")?;
            let partition = key.rsplit('/').next()?.parse::<u32>().ok()?;
            Some((partition, p["leader"].as_u64()?))
        })
        .next()
        .unwrap();
    let other = [1u64, 2, 3].into_iter().find(|n| *n != leader).unwrap();
    let end = read_all_http(&http, &cluster.node(leader).api_addr, "orders", PARTITIONS)
        .await
        .iter()
        .filter(|r| r.0 == partition)
        .count();
    let append = |expected: usize| {
        http.post(format!(
            "http://{}/v1/tenants/default/topics/orders/partitions/{partition}/records",
            cluster.node(other).api_addr
        ))
        .json(&json!({ "records": [{ "key": "cas", "value": "x" }], "expected_offset": expected }))
        .send()
    };
    assert_eq!(append(end).await.unwrap().status().as_u16(), 200);
    assert_eq!(
        append(end).await.unwrap().status().as_u16(),
        412,
        "a stale expected offset is refused"
    );

    // Every node returns the same records at the same offsets, over HTTP and gRPC.
    let reference = read_all_http(&http, &cluster.node(1).api_addr, "orders", PARTITIONS).await;
    assert_eq!(reference.len(), 91);
    for id in [1u64, 2, 3] {
        let addr = &cluster.node(id).api_addr;
        assert_eq!(
            read_all_http(&http, addr, "orders", PARTITIONS).await,
            reference,
            "HTTP via node {id}"
        );
        assert_eq!(
            read_all_grpc(addr, "orders", PARTITIONS).await,
            reference,
            "gRPC via node {id}"
        );
        // Describe through any node reports every partition's end from its leader.
        let d: Value = http
            .get(format!("http://{addr}/v1/tenants/default/topics/orders"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let total: u64 = d["partition_info"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["end_offset"].as_u64().unwrap())
            .sum();
        assert_eq!(total, 91, "describe via node {id}: {d}");
    }
}

/// Runs kcat with `args`; its stdout. `None` (a skip) when kcat is not
/// installed, except with `CI=true`.
fn kcat(args: &[&str]) -> Option<String> {
    let found = std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join("kcat").is_file()));
    if !found {
        assert!(
            std::env::var("CI").map_or(true, |v| v != "true"),
            "kcat is missing; scripts/test.sh installs it"
        );
        eprintln!("!!! SKIPPED: kcat is not installed; scripts/test.sh installs it");
        return None;
    }
    let out = common::run_bounded(
        std::process::Command::new("kcat").args(args),
        Duration::from_secs(60),
    );
    assert!(out.success(), "kcat {args:?} failed: {}", out.stderr);
    Some(out.stdout)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_clients_find_partition_leaders_through_any_node() {
    let Some(moto) = moto() else { return };
    let root = tempfile::tempdir().unwrap();
    let (cluster, http) = three_brokers(&moto, root.path()).await;
    const PARTITIONS: u32 = 6;
    create_topic(&http, &cluster.node(1).api_addr, "kt", PARTITIONS).await;
    let kafka = |id: u64| cluster.node(id).kafka_addr.clone().expect("kafka listener");
    for id in [2, 3] {
        // Up to date with the leader before a client asks it.
        topics(&http, &cluster.node(id).api_addr).await;
    }

    // Metadata through one node lists all three brokers.
    let Some(listing) = kcat(&["-b", &kafka(1), "-L", "-t", "kt"]) else {
        return;
    };
    assert!(listing.contains("3 brokers"), "{listing}");

    // Produce through node 2: the client sends each partition to its leader.
    let input: String = (0..60).map(|i| format!("k{i}:v{i}\n")).collect();
    let file = root.path().join("records.txt");
    std::fs::write(&file, input).unwrap();
    let file = file.to_str().unwrap();
    kcat(&[
        "-b",
        &kafka(2),
        "-P",
        "-t",
        "kt",
        "-K:",
        "-X",
        "topic.partitioner=murmur2_random",
        // Retries (a replication timeout on a loaded machine) must not
        // write a record twice: the count is checked exactly below.
        "-X",
        "enable.idempotence=true",
        "-l",
        file,
    ])
    .unwrap();

    // Consume everything through node 3 and compare with HTTP through node 1.
    let consumed = kcat(&[
        "-b",
        &kafka(3),
        "-C",
        "-t",
        "kt",
        "-o",
        "beginning",
        "-e",
        "-q",
        "-f",
        "%p %o %k %s\n",
    ])
    .unwrap();
    let mut from_kafka: Vec<(u32, u64, String, String)> = consumed
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            (
                f[0].parse().unwrap(),
                f[1].parse().unwrap(),
                f[2].to_string(),
                f[3].to_string(),
            )
        })
        .collect();
    from_kafka.sort();
    let from_http = read_all_http(&http, &cluster.node(1).api_addr, "kt", PARTITIONS).await;
    assert_eq!(from_kafka.len(), 60);
    assert_eq!(from_kafka, from_http);
    // Keys went where Kafka's default partitioner puts them.
    for (partition, _, key, _) in &from_http {
        let expected = strata_broker::partition_for_key(key.as_bytes(), PARTITIONS);
        assert_eq!(*partition, expected, "{key}");
    }
}

/// `(leader, replicas)` of partition `p` of `topic` as node `addr` sees it.
async fn placement_of(
    http: &reqwest::Client,
    addr: &str,
    topic: &str,
    p: u32,
) -> Option<(u64, Vec<u64>)> {
    let s = status(http, addr).await?;
    s["partitions"].as_array()?.iter().find_map(|e| {
        let key = e["partition"].as_str()?;
        let ours = key.starts_with(&format!("default/{topic}/")) && key.ends_with(&format!("/{p}"));
        ours.then(|| {
            let replicas = e["replicas"]
                .as_array()
                .map(|a| a.iter().filter_map(Value::as_u64).collect())
                .unwrap_or_default();
            (e["leader"].as_u64().unwrap_or(0), replicas)
        })
    })
}

/// One record to partition 0 of `topic` through `addr`: the status and the
/// error code, if any.
async fn append_one(
    http: &reqwest::Client,
    addr: &str,
    topic: &str,
    acks: &str,
) -> (u16, Option<String>) {
    let resp = http
        .post(format!(
            "http://{addr}/v1/tenants/default/topics/{topic}/partitions/0/records"
        ))
        .json(&json!({ "records": [{ "value": "v" }], "acks": acks }))
        .timeout(Duration::from_secs(15))
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let body: Value = resp.json().await.unwrap_or_default();
    let code = body["error"]["code"].as_str().map(str::to_string);
    (status, code)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topics_choose_their_replication_factor_and_min_insync_replicas() {
    let Some(moto) = moto() else { return };
    let root = tempfile::tempdir().unwrap();
    let (mut cluster, http) = three_brokers(&moto, root.path()).await;
    let addr = cluster.node(1).api_addr.clone();
    let create = |body: Value| {
        let (http, addr) = (http.clone(), addr.clone());
        async move {
            let resp = http
                .post(format!("http://{addr}/v1/tenants/default/topics"))
                .json(&body)
                .send()
                .await
                .unwrap();
            let status = resp.status().as_u16();
            (status, resp.json::<Value>().await.unwrap())
        }
    };

    // A replication factor per topic, each replica on its own broker.
    let (code, two) =
        create(json!({"name": "two", "partitions": 3, "replication_factor": 2})).await;
    assert_eq!(code, 201, "{two}");
    assert_eq!(two["replication_factor"], json!(2));
    let (code, dflt) = create(json!({"name": "dflt", "partitions": 1})).await;
    assert_eq!(code, 201, "{dflt}");
    assert_eq!(
        dflt["replication_factor"],
        json!(3),
        "the default with 3 brokers"
    );
    for p in 0..3 {
        let (leader, replicas) = placement_of(&http, &addr, "two", p).await.unwrap();
        assert_eq!(replicas.len(), 2, "partition {p}: {replicas:?}");
        assert_ne!(replicas[0], replicas[1]);
        assert_eq!(replicas[0], leader);
    }
    let (_, replicas) = placement_of(&http, &addr, "dflt", 0).await.unwrap();
    assert_eq!(replicas.len(), 3);
    // More replicas than brokers, or a min_insync_replicas no write could
    // meet: refused, and nothing is created.
    let (code, body) = create(json!({"name": "four", "replication_factor": 4})).await;
    assert_eq!(code, 400, "{body}");
    assert_eq!(body["error"]["code"], json!("invalid_replication_factor"));
    assert_eq!(body["error"]["details"]["live_brokers"], json!(3));
    let (code, body) = create(json!({
        "name": "four", "replication_factor": 2, "config": {"min_insync_replicas": 3}
    }))
    .await;
    assert_eq!(code, 400, "{body}");
    assert_eq!(body["error"]["code"], json!("invalid_config"));
    assert!(!topics(&http, &addr).await.contains_key("four"));
    // The same through gRPC.
    {
        use strata_api::proto::{self, strata_client::StrataClient};
        let mut client = StrataClient::connect(format!("http://{addr}"))
            .await
            .unwrap();
        let one = client
            .create_topic(proto::CreateTopicRequest {
                name: "one".into(),
                partitions: 1,
                replication_factor: Some(1),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(one.replication_factor, 1);
        let refused = client
            .create_topic(proto::CreateTopicRequest {
                name: "five".into(),
                partitions: 1,
                replication_factor: Some(5),
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(refused.code(), tonic::Code::InvalidArgument);
    }
    let (_, replicas) = placement_of(&http, &addr, "one", 0).await.unwrap();
    assert_eq!(replicas.len(), 1);

    // min_insync_replicas 3 of 3: acks=all needs every replica; the default
    // (a majority) goes on without one.
    let strict = json!({"name": "strict", "config": {"min_insync_replicas": 3}});
    let (code, body) = create(strict).await;
    assert_eq!(code, 201, "{body}");
    assert_eq!(body["config"]["min_insync_replicas"], json!(3));
    let (strict_leader, _) = placement_of(&http, &addr, "strict", 0).await.unwrap();
    let (dflt_leader, _) = placement_of(&http, &addr, "dflt", 0).await.unwrap();
    let api_addrs: Vec<String> = (1..=3)
        .map(|id| cluster.node(id).api_addr.clone())
        .collect();
    let leader_addr = |id: u64| api_addrs[id as usize - 1].clone();
    let ok_within = |topic: &'static str, leader: u64| {
        let (http, addr) = (http.clone(), leader_addr(leader));
        async move {
            let deadline = Instant::now() + Duration::from_secs(30);
            loop {
                let (status, code) = append_one(&http, &addr, topic, "fsync").await;
                if status == 200 {
                    return;
                }
                assert!(
                    Instant::now() < deadline,
                    "{topic}: acks=all never succeeded: {status} {code:?}"
                );
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    };
    ok_within("strict", strict_leader).await;
    // Freeze a replica that leads neither partition.
    let frozen = (1..=3)
        .find(|id| *id != strict_leader && *id != dflt_leader)
        .unwrap();
    eprintln!("strict led by {strict_leader}, dflt by {dflt_leader}; freezing node {frozen}");
    cluster.pause(frozen);
    let deadline = Instant::now() + Duration::from_secs(40);
    loop {
        let (status, code) =
            append_one(&http, &leader_addr(strict_leader), "strict", "fsync").await;
        assert_ne!(
            status, 200,
            "an acks=all write with a replica frozen was acknowledged"
        );
        // First the write waits for the third copy and times out; once the
        // frozen replica falls out of sync, writes are refused up front.
        if code.as_deref() == Some("not_enough_replicas") {
            assert_eq!(status, 503);
            break;
        }
        assert_eq!(code.as_deref(), Some("replication_timeout"), "{status}");
        assert!(
            Instant::now() < deadline,
            "the frozen replica never fell out of sync"
        );
    }
    // acks=write does not wait for replicas; the default topic needs only a majority.
    let (status, code) = append_one(&http, &leader_addr(strict_leader), "strict", "write").await;
    assert_eq!(status, 200, "{code:?}");
    ok_within("dflt", dflt_leader).await;
    cluster.resume(frozen);
    ok_within("strict", strict_leader).await;

    // A Kafka admin client sees and sets the same.
    let kafka = cluster.node(1).kafka_addr.clone().expect("kafka listener");
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/kafka-clients/replication_admin.py"
    );
    if !common::confluent_kafka("the Kafka admin part") {
        return;
    }
    // The resumed broker renews its lease within a heartbeat or two; until
    // then placement counts two live brokers, so a first try may be early.
    let mut attempt = 0;
    let out = loop {
        attempt += 1;
        let out = common::run_bounded(
            std::process::Command::new("python3").args([
                script,
                "--bootstrap",
                &kafka,
                "--brokers",
                "3",
            ]),
            Duration::from_secs(120),
        );
        if out.success() || !out.stderr.contains("live broker(s)") || attempt == 5 {
            break out;
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    };
    assert!(out.success(), "{}\n{}", out.stdout, out.stderr);
}

/// Every partition's `(leader, replicas)` of `topic` as node `addr` sees it.
async fn placements(
    http: &reqwest::Client,
    addr: &str,
    topic: &str,
    partitions: u32,
) -> Option<Vec<(u64, Vec<u64>)>> {
    let mut out = Vec::new();
    for p in 0..partitions {
        out.push(placement_of(http, addr, topic, p).await?);
    }
    Some(out)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_joining_broker_takes_replicas_and_leaderships_while_clients_write() {
    let Some(moto) = moto() else { return };
    let root = tempfile::tempdir().unwrap();
    let (mut cluster, http) = three_brokers(&moto, root.path()).await;
    const PARTITIONS: u32 = 6;
    let addr = cluster.node(1).api_addr.clone();
    create_topic(&http, &addr, "grow", PARTITIONS).await;

    // A writer appends through node 1 (forwarded to each leader) until told
    // to stop; only acknowledged records are expected back.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let (http, addr, stop) = (http.clone(), addr.clone(), stop.clone());
        tokio::spawn(async move {
            let mut acked: Vec<(u32, u64, String)> = Vec::new();
            let mut i = 0u64;
            let deadline = Instant::now() + Duration::from_secs(180);
            while !stop.load(std::sync::atomic::Ordering::Relaxed) && Instant::now() < deadline {
                let p = (i % u64::from(PARTITIONS)) as u32;
                let value = format!("w{i}");
                let resp = http
                    .post(format!(
                        "http://{addr}/v1/tenants/default/topics/grow/partitions/{p}/records"
                    ))
                    .json(&json!({ "records": [{ "value": value }] }))
                    .timeout(Duration::from_secs(10))
                    .send()
                    .await;
                if let Ok(r) = resp
                    && r.status().is_success()
                    && let Ok(body) = r.json::<Value>().await
                    && let Some(offset) = body["base_offset"].as_u64()
                {
                    acked.push((p, offset, value));
                } else {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                i += 1;
            }
            (acked, i)
        })
    };
    tokio::time::sleep(Duration::from_secs(1)).await;
    let joined = Instant::now();
    cluster.join(4, 1, "broker");

    // The new broker gets its share: replicas (18 over 4 brokers: 4 or 5
    // each) and leaderships (6 over 4: 1 or 2 each), every partition back at
    // three replicas.
    let deadline = Instant::now() + Duration::from_secs(120);
    let settled = loop {
        let now = placements(&http, &addr, "grow", PARTITIONS).await;
        if let Some(now) = &now {
            let holds = |n: u64| now.iter().filter(|(_, r)| r.contains(&n)).count();
            let leads = |n: u64| now.iter().filter(|(l, _)| *l == n).count();
            let three = now.iter().all(|(_, r)| r.len() == 3);
            if three && (1..=4).all(|n| holds(n) >= 4 && leads(n) >= 1) {
                break now.clone();
            }
        }
        assert!(Instant::now() < deadline, "never rebalanced: {now:?}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    eprintln!(
        "rebalanced onto node 4 {:.1} s after it joined: {settled:?}",
        joined.elapsed().as_secs_f64()
    );
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (acked, attempts) = writer.await.unwrap();
    assert!(
        acked.len() > 20,
        "too few writes went through: {} of {attempts}",
        acked.len()
    );

    // Every acknowledged record is there, once, at its offset, read
    // through the new broker and through an old one alike.
    for id in [4, 2] {
        let all = read_all_http(&http, &cluster.node(id).api_addr, "grow", PARTITIONS).await;
        let found: BTreeMap<(u32, u64), String> = all
            .iter()
            .map(|(p, o, _, v)| ((*p, *o), v.clone()))
            .collect();
        assert_eq!(found.len(), all.len(), "an offset twice through node {id}");
        let mut values = BTreeSet::new();
        for (_, _, _, v) in &all {
            assert!(values.insert(v.clone()), "{v} twice through node {id}");
        }
        for (p, o, v) in &acked {
            assert_eq!(
                found.get(&(*p, *o)),
                Some(v),
                "acknowledged {v} at {p}/{o} via node {id}"
            );
        }
    }
}
